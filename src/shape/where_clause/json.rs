//! `json`/`jsonb`: PG's JSON grammar, jsonb normalisation and output, and the operators
//! `->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?` and jsonb's btree order (`= <> < > <= >=`).
//!
//! Invariants:
//! * Values travel as text (the row's text, or a constant's canonical text); operators parse
//!   on demand. A `json` value keeps its source text: `->` returns the sub-value's exact
//!   source slice and `->>` a non-string's source slice, as PG does.
//! * jsonb normalisation is PG's: object keys sorted by length then bytes, the last of
//!   duplicate keys wins, numbers keep their numeric display scale (`1.50`), output uses
//!   `", "` and `": "` separators.
//! * jsonb ordering is PG's `compareJsonbContainers`: object > array > boolean > number >
//!   string > null; arrays by element count, then elements; objects by pair count, then
//!   key, value, key, … in storage order (keys sorted by length, then bytes). A top-level
//!   scalar is stored as a one-element "raw scalar" array: it sorts below an array of one
//!   element but above the empty array. Strings compare bytewise, which is PG's order under
//!   a C/POSIX database collation (jsonb ignores expression collations, so `sql()` cannot
//!   pin it; callers see such clauses through `needs_text_ordering`).
//! * The parser is PG's strict grammar (no NaN, no trailing commas, no control characters in
//!   strings, `\u0000` refused by jsonb); nesting deeper than [`MAX_DEPTH`] is refused (as
//!   a decode failure), so recursion is bounded.

use std::cmp::Ordering;

use super::values::{NumOwned, parse_numeric};

pub(super) const MAX_DEPTH: usize = 256;

#[derive(Clone, Debug)]
pub(super) enum Json {
    Null,
    Bool(bool),
    /// numeric_out text (display scale kept) and the value.
    Number(String, NumOwned),
    String(String),
    Array(Vec<JNode>),
    Object(Vec<(String, JNode)>),
}

/// A parsed value and its byte span in the source text.
#[derive(Clone, Debug)]
pub(super) struct JNode {
    pub value: Json,
    pub start: usize,
    pub end: usize,
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    jsonb: bool,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<JNode> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let start = self.pos;
        let value = match *self.s.get(self.pos)? {
            b'{' => {
                self.pos += 1;
                let mut fields: Vec<(String, JNode)> = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        if self.s.get(self.pos) != Some(&b'"') {
                            return None;
                        }
                        let key = self.string()?;
                        self.ws();
                        if self.s.get(self.pos) != Some(&b':') {
                            return None;
                        }
                        self.pos += 1;
                        let v = self.value(depth + 1)?;
                        fields.push((key, v));
                        self.ws();
                        match self.s.get(self.pos)? {
                            b',' => self.pos += 1,
                            b'}' => {
                                self.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                if self.jsonb {
                    normalise(&mut fields);
                }
                Json::Object(fields)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.s.get(self.pos)? {
                            b',' => self.pos += 1,
                            b']' => {
                                self.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Json::Array(items)
            }
            b'"' => Json::String(self.string()?),
            b't' => self.word("true", Json::Bool(true))?,
            b'f' => self.word("false", Json::Bool(false))?,
            b'n' => self.word("null", Json::Null)?,
            _ => self.number()?,
        };
        Some(JNode {
            value,
            start,
            end: self.pos,
        })
    }

    fn word(&mut self, w: &str, v: Json) -> Option<Json> {
        let end = self.pos + w.len();
        if self.s.get(self.pos..end)? != w.as_bytes() {
            return None;
        }
        // A keyword must not run into more letters (`truex`).
        if self
            .s
            .get(end)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return None;
        }
        self.pos = end;
        Some(v)
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while p.s.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - s
        };
        if self.s.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return None;
        }
        if self.s.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        if self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return None;
        }
        let text = self.text.get(start..self.pos)?;
        let value = parse_numeric(text)?.to_owned_num();
        Some(Json::Number(numeric_out(text)?, value))
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.text.get(self.pos..self.pos + 4)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(h, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = self.text.get(self.pos..)?;
            let c = rest.chars().next()?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Some(out),
                '\\' => {
                    let e = *self.s.get(self.pos)?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.text.get(self.pos..self.pos + 2)? != "\\u" {
                                    return None;
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return None;
                            } else {
                                hi
                            };
                            if code == 0 {
                                // jsonb cannot store it; json keeps the escape as text.
                                if self.jsonb {
                                    return None;
                                }
                                out.push_str("\\u0000");
                            } else {
                                out.push(char::from_u32(code)?);
                            }
                        }
                        _ => return None,
                    }
                }
                c if (c as u32) < 0x20 => return None,
                c => out.push(c),
            }
        }
    }
}

/// jsonb key order: by length, then bytes; the last of duplicate keys wins.
fn normalise(fields: &mut Vec<(String, JNode)>) {
    // Stable sort keeps input order among duplicates, so the last one is last.
    fields.sort_by(|a, b| key_cmp(&a.0, &b.0));
    let mut out: Vec<(String, JNode)> = Vec::with_capacity(fields.len());
    for f in fields.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == f.0 => *last = f,
            _ => out.push(f),
        }
    }
    *fields = out;
}

fn key_cmp(a: &str, b: &str) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Parses JSON text (`jsonb`: normalised objects, `\u0000` refused).
pub(super) fn parse(text: &str, jsonb: bool) -> Option<JNode> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        jsonb,
    };
    let v = p.value(0)?;
    p.ws();
    (p.pos == p.s.len()).then_some(v)
}

/// PG's numeric_out text of a JSON number (the display scale of its input kept).
fn numeric_out(text: &str) -> Option<String> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    let frac_len = i64::try_from(frac.len()).ok()?;
    if exp.abs() > 100_000 {
        return None;
    }
    let scale = (frac_len - exp).max(0);
    // value = digits × 10^(exp - frac_len); print with `scale` decimals.
    let shift = exp - frac_len + scale; // ≥ 0: zeros appended to the digits
    let mut all = digits;
    all.push_str(&"0".repeat(usize::try_from(shift).ok()?));
    let scale = usize::try_from(scale).ok()?;
    while all.len() <= scale {
        all.insert(0, '0');
    }
    let (i, f) = all.split_at(all.len() - scale);
    let i = i.trim_start_matches('0');
    let i = if i.is_empty() { "0" } else { i };
    let zero = i == "0" && f.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if neg && !zero {
        out.push('-');
    }
    out.push_str(i);
    if !f.is_empty() {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// jsonb_out.
pub(super) fn jsonb_text(v: &Json) -> String {
    let mut out = String::new();
    write(&mut out, v);
    out
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(t, _) => out.push_str(t),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, &item.value);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write(out, &item.value);
            }
            out.push('}');
        }
    }
}

/// A path step of `->`/`->>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(i64),
}

/// `v -> step` (json: the last of duplicate keys, as PG). A jsonb scalar is a one-element
/// array for `-> 0` and `-> -1` (PG stores it as a "raw scalar" array).
pub(super) fn get<'n>(v: &'n JNode, step: &Step, jsonb: bool) -> Option<&'n JNode> {
    match (&v.value, step) {
        (Json::Object(_) | Json::Array(_), _) => {}
        (_, Step::Index(0 | -1)) if jsonb => return Some(v),
        _ => return None,
    }
    match (&v.value, step) {
        (Json::Object(fields), Step::Key(k)) => {
            fields.iter().rev().find(|(f, _)| f == k).map(|f| &f.1)
        }
        (Json::Array(items), Step::Index(i)) => {
            let len = i64::try_from(items.len()).ok()?;
            let i = if *i < 0 { len + i } else { *i };
            items.get(usize::try_from(i).ok()?)
        }
        _ => None,
    }
}

/// The result of `->` as text of the result type (json: the source slice).
pub(super) fn node_text(source: &str, n: &JNode, jsonb: bool) -> String {
    if jsonb {
        jsonb_text(&n.value)
    } else {
        source.get(n.start..n.end).unwrap_or("").to_owned()
    }
}

/// The result of `->>`: strings unescaped, JSON null as SQL NULL, anything else as `->`.
pub(super) fn node_as_text(source: &str, n: &JNode, jsonb: bool) -> Option<String> {
    match &n.value {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        _ => Some(node_text(source, n, jsonb)),
    }
}

/// jsonb equality (numbers by value).
pub(super) fn equal(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Null, Json::Null) => true,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Number(_, x), Json::Number(_, y)) => x.view().cmp_num(&y.view()) == Ordering::Equal,
        (Json::String(x), Json::String(y)) => x == y,
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(&p.value, &q.value))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| p.0 == q.0 && equal(&p.1.value, &q.1.value))
        }
        _ => false,
    }
}

/// PG's `JsonbValue.type` order: null < string < numeric < bool < array < object.
fn type_rank(v: &Json) -> u8 {
    match v {
        Json::Null => 0,
        Json::String(_) => 1,
        Json::Number(..) => 2,
        Json::Bool(_) => 3,
        Json::Array(_) => 0x10,
        Json::Object(_) => 0x11,
    }
}

fn cmp_scalars(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::String(x), Json::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Json::Number(_, x), Json::Number(_, y)) => x.view().cmp_num(&y.view()),
        (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// jsonb btree order of two documents (PG's `compareJsonbContainers` over the roots).
pub(super) fn cmp_jsonb(a: &Json, b: &Json) -> Ordering {
    let is_container = |v: &Json| matches!(v, Json::Array(_) | Json::Object(_));
    match (is_container(a), is_container(b)) {
        // Both raw scalars: equal headers, then the one element each.
        (false, false) => cmp_nested(a, b),
        // A raw scalar against an array: the raw flag, overridden by the element counts.
        (false, true) | (true, false) => match (a, b) {
            (_, Json::Array(items)) => match 1usize.cmp(&items.len()) {
                Ordering::Equal => Ordering::Less,
                o => o,
            },
            (Json::Array(items), _) => match items.len().cmp(&1) {
                Ordering::Equal => Ordering::Greater,
                o => o,
            },
            // A raw scalar (an array) against an object.
            (Json::Object(_), _) => Ordering::Greater,
            _ => Ordering::Less,
        },
        (true, true) => cmp_nested(a, b),
    }
}

/// Two values met at the same position of the lockstep token walk.
fn cmp_nested(a: &Json, b: &Json) -> Ordering {
    match (a, b) {
        (Json::Array(x), Json::Array(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter()
                .zip(y)
                .map(|(p, q)| cmp_nested(&p.value, &q.value))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        (Json::Object(x), Json::Object(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter()
                .zip(y)
                .map(|((ka, va), (kb, vb))| {
                    ka.as_bytes()
                        .cmp(kb.as_bytes())
                        .then_with(|| cmp_nested(&va.value, &vb.value))
                })
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        _ if type_rank(a) != type_rank(b) => type_rank(a).cmp(&type_rank(b)),
        _ => cmp_scalars(a, b),
    }
}

/// An array subscript in a `#>` path: C `strtol` (leading blanks, a sign, digits, nothing
/// after), within int4; anything else never matches.
fn path_index(step: &str) -> Option<i64> {
    let t = step.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..)?),
        Some(b'+') => (false, t.get(1..)?),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits.bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i32::try_from(v).ok().map(i64::from)
}

/// `doc #> path` (PG's `jsonb_get_element` / json's `get_path_all`): the node at `path`.
/// Objects take the step as a key, arrays as an index (negative from the end); a scalar has
/// no children, a top-level jsonb scalar included (unlike `-> 0`). json keeps duplicate keys:
/// the last match in document order wins, as PG's streaming search does.
pub(super) fn get_path<'n>(doc: &'n JNode, path: &[&str]) -> Option<&'n JNode> {
    let Some((step, rest)) = path.split_first() else {
        return Some(doc);
    };
    match &doc.value {
        Json::Object(fields) => fields
            .iter()
            .rev()
            .filter(|(k, _)| k == step)
            .find_map(|(_, v)| get_path(v, rest)),
        Json::Array(items) => {
            let i = path_index(step)?;
            let len = i64::try_from(items.len()).ok()?;
            let i = if i < 0 { len + i } else { i };
            get_path(items.get(usize::try_from(i).ok()?)?, rest)
        }
        _ => None,
    }
}

/// jsonb `a @> b` (PG's JsonbDeepContains, with the top-level array-contains-scalar rule).
pub(super) fn contains(a: &Json, b: &Json, top: bool) -> bool {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => y.iter().all(|(k, bv)| {
            x.iter()
                .find(|(ak, _)| ak == k)
                .is_some_and(|(_, av)| match (&av.value, &bv.value) {
                    (Json::Object(_), _) | (Json::Array(_), _) => {
                        contains(&av.value, &bv.value, false)
                    }
                    (av, bv) => equal(av, bv),
                })
        }),
        (Json::Array(x), Json::Array(y)) => y.iter().all(|bv| match &bv.value {
            Json::Object(_) | Json::Array(_) => x.iter().any(|av| {
                std::mem::discriminant(&av.value) == std::mem::discriminant(&bv.value)
                    && contains(&av.value, &bv.value, false)
            }),
            scalar => x.iter().any(|av| equal(&av.value, scalar)),
        }),
        (Json::Array(x), scalar) if top && !matches!(scalar, Json::Object(_)) => {
            x.iter().any(|av| equal(&av.value, scalar))
        }
        (Json::Object(_), _) | (_, Json::Object(_)) | (Json::Array(_), _) | (_, Json::Array(_)) => {
            false
        }
        (x, y) => equal(x, y),
    }
}

/// jsonb `v ? key`: a top-level key, a top-level string array element, or the string itself.
pub(super) fn exists(v: &Json, key: &str) -> bool {
    match v {
        Json::Object(fields) => fields.iter().any(|(k, _)| k == key),
        Json::Array(items) => items
            .iter()
            .any(|i| matches!(&i.value, Json::String(s) if s == key)),
        Json::String(s) => s == key,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(t: &str) -> Option<String> {
        parse(t, true).map(|n| jsonb_text(&n.value))
    }

    #[test]
    fn jsonb_normalisation() {
        assert_eq!(
            canon(r#"{"bb":1,"a":2,"c":[1.50,1e2,-0,2E-2],"a":3}"#).as_deref(),
            Some(r#"{"a": 3, "c": [1.50, 100, 0, 0.02], "bb": 1}"#)
        );
        assert_eq!(canon(" \"x\\u00e9\\n\" ").as_deref(), Some("\"xé\\n\""));
        for bad in [
            "",
            "{",
            "[1,]",
            "01",
            "1.",
            "NaN",
            "\"\\u0000\"",
            "tru",
            "{\"a\" 1}",
            "\"\t\"",
        ] {
            assert!(canon(bad).is_none(), "{bad}");
        }
        let deep = "[".repeat(MAX_DEPTH + 5);
        assert!(canon(&deep).is_none());
    }

    #[test]
    fn operators() {
        let j = |t: &str| parse(t, true).unwrap().value;
        assert!(contains(
            &j(r#"{"a":1,"b":{"c":[1,2]}}"#),
            &j(r#"{"b":{"c":[2]}}"#),
            true
        ));
        assert!(!contains(&j(r#"{"a":1}"#), &j(r#"{"a":1.0,"b":1}"#), true));
        assert!(contains(&j(r#"{"a":1}"#), &j(r#"{"a":1.0}"#), true));
        assert!(contains(&j("[1,2]"), &j("1"), true));
        assert!(!contains(&j("[[1,2]]"), &j("[1]"), true));
        assert!(contains(&j("[[1,2]]"), &j("[[1]]"), true));
        assert!(exists(&j(r#"["a",1]"#), "a"));
        assert!(!exists(&j(r#"{"x":"a"}"#), "a"));
        let src = r#"{"a": 1.50, "a": {"b" : 2}}"#;
        let n = parse(src, false).unwrap();
        let a = get(&n, &Step::Key("a".into()), false).unwrap();
        assert_eq!(node_text(src, a, false), r#"{"b" : 2}"#);
    }
}
