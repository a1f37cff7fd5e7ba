//! Parse a where clause once per *template*: clauses that differ only in their constants
//! (`tenant = 1`, `tenant = 2`, `title = 'a'`) share one sqlparser tree.
//!
//! Restoring 100k shapes recompiles 100k where clauses, most of them one or a few templates;
//! tokenizing and parsing with sqlparser (and dropping its tree) was a third of that time.
//! Here a cheap lexer splits the text into a template key (the text with each number and
//! single-quoted string replaced by a marker) and the constants. The first clause of a
//! template is parsed in full and its tree kept; a later one clones that tree, writes its own
//! constants into the literal leaves, and runs the *same* typing pass ([`Parsed::convert`])
//! on it, so folding, coercion, overload resolution and literal errors are those of a full
//! compile by construction: only tokenizing and parsing are skipped.
//!
//! Invariants:
//! * The result is the full compile's: a clause is templated only when the lexer is sure of
//!   how sqlparser tokenizes it (no comments, dollar quotes, prefixed strings (`E'…'`),
//!   numbers touching identifier characters, …; see [`lex`]), and a template is kept only
//!   when every constant of its first clause is exactly one literal leaf of the parsed tree,
//!   at the constant's byte span and with the value the lexer decodes (see
//!   [`Template::build`]). Two texts with one key then tokenize to the same tokens except
//!   the constants, so they parse to the same tree except those leaves.
//! * The substituted tree keeps the first clause's spans, which only locate errors (see
//!   [`Parsed::convert`]): any error on that path is discarded and the clause compiled in
//!   full, so errors (and their locations) are exactly the full compile's.
//! * Only parsing is shared, so the key does not involve the table, its columns or the
//!   parameters: typing runs on every compile against the caller's schema.
//! * The cache is bounded: at most 2 × [`GENERATION`] templates and 2 × [`GENERATION_BYTES`]
//!   of template text. Nothing here panics on any input.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sqlparser::ast::{
    AccessExpr, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Subscript,
    Value as SqlValue, ValueWithSpan,
};
use sqlparser::tokenizer::Location;

use super::Schema;
use super::WhereError;
use super::eval::Node;
use super::parse::{self, MAX_DEPTH, Parsed, Positions};
use super::subquery::InnerTable;

/// Longest clause that is templated: longer ones are rarely shared (and one template may
/// take at most this share of [`GENERATION_BYTES`]).
const MAX_TEMPLATE_BYTES: usize = 2_048;
/// Templates kept per generation (see [`Cache`]).
const GENERATION: usize = 512;
/// Template text kept per generation. A sqlparser tree takes ~100 bytes per byte of text
/// (328-byte `Expr` nodes), so this bounds the cache to ~15 MB of trees.
const GENERATION_BYTES: usize = 64 * 1024;
/// Deepest template tree kept (the typing pass refuses deeper ones anyway): cloning and
/// dropping a template's copy recurse, so this bounds that recursion.
const MAX_TEMPLATE_DEPTH: usize = 2 * MAX_DEPTH;

/// Compiles through the process-wide template cache; same result as [`parse::compile`].
pub(super) fn compile(
    text: &str,
    params: &[String],
    schema: &Schema,
    tables: &[InnerTable],
) -> Result<Node, WhereError> {
    static CACHE: Mutex<Cache> = Mutex::new(Cache::new());
    compile_in(&CACHE, text, params, schema, tables).0
}

/// Which way a compile went (for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    /// The lexer was not sure of the text: full compile, nothing cached.
    Untemplated,
    /// First clause of its template: full compile (the template is kept if it qualifies and
    /// the clause compiled).
    Miss,
    /// The template's tree with this clause's constants.
    Hit,
    /// A hit whose typing failed: compiled in full for the exact error.
    FellBack,
    /// The template does not qualify (see [`Template::build`]): full compile.
    Uncacheable,
}

pub(super) fn compile_in(
    cache: &Mutex<Cache>,
    text: &str,
    params: &[String],
    schema: &Schema,
    tables: &[InnerTable],
) -> (Result<Node, WhereError>, Path) {
    let Some(lexed) = lex(text) else {
        return (
            parse::compile(text, params, schema, tables),
            Path::Untemplated,
        );
    };
    let found = cache.lock().get(&lexed.key);
    match found {
        Some(Entry::Template(template)) => {
            if let Some(parsed) = template.instantiate(&lexed)
                && let Ok(node) = parsed.convert(params, schema, tables)
            {
                return (Ok(node), Path::Hit);
            }
            (parse::compile(text, params, schema, tables), Path::FellBack)
        }
        Some(Entry::Uncacheable) => (
            parse::compile(text, params, schema, tables),
            Path::Uncacheable,
        ),
        None => {
            let parsed = match parse::parse(text) {
                Ok(parsed) => parsed,
                Err(e) => return (Err(e), Path::Miss),
            };
            let result = parsed.convert(params, schema, tables);
            // A clause that does not compile may be a bad constant in a good template; the
            // next clause of the template tries again.
            if result.is_ok() {
                let entry = Template::build(&parsed, &lexed)
                    .map_or(Entry::Uncacheable, |t| Entry::Template(Arc::new(t)));
                cache.lock().insert(lexed.key.into_boxed_str(), entry);
            }
            (result, Path::Miss)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lexer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    /// `[0-9]+` or `[0-9]+.[0-9]+`.
    Number,
    /// `'…'` with `''` for a quote (the PostgreSQL dialect has no backslash escapes here).
    String,
}

/// One constant of a clause: `text[start..end]`.
#[derive(Debug)]
struct Slot<'t> {
    kind: SlotKind,
    start: usize,
    end: usize,
    text: &'t str,
}

impl Slot<'_> {
    /// The value sqlparser gives this token.
    fn value(&self) -> SqlValue {
        match self.kind {
            SlotKind::Number => SqlValue::Number(self.text.to_owned(), false),
            SlotKind::String => {
                let inner = self
                    .text
                    .get(1..self.text.len().saturating_sub(1))
                    .unwrap_or("");
                SqlValue::SingleQuotedString(inner.replace("''", "'"))
            }
        }
    }
}

/// A clause split into its template key and constants.
#[derive(Debug)]
struct Lexed<'t> {
    /// The text with every constant replaced by NUL and a kind letter (a templated text has
    /// no NUL of its own, so the key determines the text between constants).
    key: String,
    /// In text order.
    slots: Vec<Slot<'t>>,
}

/// Characters after which a constant may start: ends of tokens that never look at a digit or
/// a quote after them (unlike `.`, `:`, `@`, `?`, `$`, `&`, quotes and identifier characters,
/// which make numbers, placeholders, prefixed strings or words with what follows).
fn may_precede(b: Option<u8>) -> bool {
    matches!(
        b,
        None | Some(
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b'('
                | b','
                | b'='
                | b'<'
                | b'>'
                | b'|'
                | b'['
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
        )
    )
}

/// Characters that may follow a constant: they end its token whatever its content (a number
/// continues into `.`, `e`, `L`, `_` and identifier characters; a string into a quote).
fn may_follow(b: Option<u8>) -> bool {
    matches!(
        b,
        None | Some(
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b')'
                | b','
                | b'='
                | b'<'
                | b'>'
                | b'!'
                | b'|'
                | b']'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'~'
                | b'^'
                | b'#'
                | b'?'
                | b':'
                | b';'
                | b'&'
        )
    )
}

/// Identifier characters of the PostgreSQL dialect (any non-ASCII byte counts).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The position just past the quoted token starting at `start` (its quote character doubled
/// stands for itself inside it); `None` when it is not closed.
fn past_quoted(b: &[u8], start: usize) -> Option<usize> {
    let quote = *b.get(start)?;
    let mut i = start + 1;
    loop {
        match *b.get(i)? {
            c if c == quote && b.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Splits `text` into template key and constants; `None` when the text is not one we are
/// sure sqlparser tokenizes the way this reads it (the clause is then compiled in full).
fn lex(text: &str) -> Option<Lexed<'_>> {
    if text.len() > MAX_TEMPLATE_BYTES || text.contains('\0') {
        return None;
    }
    let b = text.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let before = |i: usize| i.checked_sub(1).and_then(at);
    let mut key = String::with_capacity(text.len());
    let mut slots = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(c) = at(i) {
        let start = i;
        let kind = match c {
            b'\'' => {
                i = past_quoted(b, i)?;
                SlotKind::String
            }
            b'0'..=b'9' => {
                while at(i).is_some_and(|b| b.is_ascii_digit()) {
                    i += 1;
                }
                if at(i) == Some(b'.') {
                    i += 1;
                    if !at(i).is_some_and(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    while at(i).is_some_and(|b| b.is_ascii_digit()) {
                        i += 1;
                    }
                }
                SlotKind::Number
            }
            b'"' => {
                // A quoted identifier: part of the template.
                i = past_quoted(b, i)?;
                continue;
            }
            b'$' => {
                // `$n` parameters are part of the template; `$$`/`$tag$` quoting is not read.
                i += 1;
                if !at(i).is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
                while at(i).is_some_and(|b| b.is_ascii_digit()) {
                    i += 1;
                }
                continue;
            }
            // Comments.
            b'-' if at(i + 1) == Some(b'-') => return None,
            b'/' if at(i + 1) == Some(b'*') => return None,
            // `.5`, `x.1`: numbers we do not read.
            b'.' if at(i + 1).is_some_and(|b| b.is_ascii_digit()) => return None,
            c if is_word_byte(c) => {
                while at(i).is_some_and(is_word_byte) {
                    i += 1;
                }
                // `E'…'`, `X'…'`, `B'…'`, `N'…'`: prefixed strings.
                if at(i) == Some(b'\'') {
                    return None;
                }
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        if !may_precede(before(start)) || !may_follow(at(i)) {
            return None;
        }
        let slot_text = text.get(start..i)?;
        key.push_str(text.get(copied..start)?);
        key.push('\0');
        key.push(match kind {
            SlotKind::Number => 'n',
            SlotKind::String => 's',
        });
        copied = i;
        slots.push(Slot {
            kind,
            start,
            end: i,
            text: slot_text,
        });
    }
    key.push_str(text.get(copied..)?);
    Some(Lexed { key, slots })
}

// ---------------------------------------------------------------------------------------------
// templates

/// A parsed first clause of a template, with where its constants are in the tree.
struct Template {
    expr: Expr,
    /// The start of slot `k`'s literal leaf, in slot (text) order, strictly increasing.
    slot_starts: Vec<Location>,
    /// The first clause's `BETWEEN SYMMETRIC` lower bounds: consistent with `expr`'s spans.
    symmetric: Vec<Location>,
}

impl Drop for Template {
    fn drop(&mut self) {
        parse::dismantle(std::mem::replace(
            &mut self.expr,
            Expr::Value(SqlValue::Null.into()),
        ));
    }
}

fn location_key(l: Location) -> (u64, u64) {
    (l.line, l.column)
}

impl Template {
    /// A template from the first clause, if each of its constants is exactly one literal
    /// leaf of the tree: at the constant's byte span, with the value the lexer decodes.
    fn build(parsed: &Parsed, lexed: &Lexed<'_>) -> Option<Template> {
        let mut expr = parsed.expr.clone();
        let mut starts: Vec<Option<Location>> = vec![None; lexed.slots.len()];
        let positions = &parsed.positions;
        for leaf in value_leaves(&mut expr)? {
            let start = positions.offset(leaf.span.start);
            let Ok(k) = lexed.slots.binary_search_by_key(&start, |s| s.start) else {
                continue;
            };
            let slot = lexed.slots.get(k)?;
            let exact = leaf.span.start.line > 0
                && positions.offset(leaf.span.end) == slot.end
                && leaf.value == slot.value();
            let seen = starts.get_mut(k)?;
            if !exact || seen.is_some() {
                return None;
            }
            *seen = Some(leaf.span.start);
        }
        // A constant that is no leaf we reach (`varchar(10)`, inside a subquery, …).
        let slot_starts: Vec<Location> = starts.into_iter().collect::<Option<_>>()?;
        let increasing = slot_starts
            .windows(2)
            .all(|w| location_key(w[0]) < location_key(w[1]));
        increasing.then(|| Template {
            expr,
            slot_starts,
            symmetric: parsed.symmetric.clone(),
        })
    }

    /// This template's tree with `lexed`'s constants (a clause with the same key).
    fn instantiate(&self, lexed: &Lexed<'_>) -> Option<Parsed> {
        if lexed.slots.len() != self.slot_starts.len() {
            return None;
        }
        let mut parsed = Parsed {
            expr: self.expr.clone(),
            symmetric: self.symmetric.clone(),
            // Locations on this path are never reported (see the module invariants).
            positions: Positions::default(),
            landmarks: Vec::new(),
            // Cloned from a tree whose typing succeeded (so no deeper than `MAX_DEPTH` where
            // typing descends) and of at most `MAX_TEMPLATE_BYTES` of text.
            shallow: true,
        };
        let mut filled = 0;
        for leaf in value_leaves(&mut parsed.expr)? {
            let at = location_key(leaf.span.start);
            if let Ok(k) = self
                .slot_starts
                .binary_search_by(|l| location_key(*l).cmp(&at))
            {
                leaf.value = lexed.slots.get(k)?.value();
                filled += 1;
            }
        }
        (filled == self.slot_starts.len()).then_some(parsed)
    }
}

/// The literal leaves of `root` (iteratively; `None` past [`MAX_TEMPLATE_DEPTH`]). Parts of
/// the tree not descended into are copied as they are: a constant there is found by no leaf,
/// which [`Template::build`] refuses.
fn value_leaves(root: &mut Expr) -> Option<Vec<&mut ValueWithSpan>> {
    let mut leaves = Vec::new();
    let mut stack: Vec<(&mut Expr, usize)> = vec![(root, 0)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_TEMPLATE_DEPTH {
            return None;
        }
        let d = depth + 1;
        match e {
            Expr::Value(v) => leaves.push(v),
            Expr::TypedString(ts) => leaves.push(&mut ts.value),
            Expr::BinaryOp { left, right, .. }
            | Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. }
            | Expr::Like {
                expr: left,
                pattern: right,
                ..
            }
            | Expr::ILike {
                expr: left,
                pattern: right,
                ..
            }
            | Expr::AtTimeZone {
                timestamp: left,
                time_zone: right,
            } => {
                stack.push((left, d));
                stack.push((right, d));
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::Cast { expr, .. }
            | Expr::Collate { expr, .. }
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotFalse(expr)
            | Expr::IsUnknown(expr)
            | Expr::IsNotUnknown(expr) => stack.push((expr, d)),
            Expr::InList { expr, list, .. } => {
                stack.push((expr, d));
                stack.extend(list.iter_mut().map(|x| (x, d)));
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                stack.push((expr, d));
                stack.push((low, d));
                stack.push((high, d));
            }
            Expr::Array(a) => stack.extend(a.elem.iter_mut().map(|x| (x, d))),
            Expr::Interval(iv) => stack.push((&mut iv.value, d)),
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &mut f.args {
                    for arg in &mut list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = arg {
                            stack.push((x, d));
                        }
                    }
                }
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                stack.push((root, d));
                for access in access_chain {
                    match access {
                        AccessExpr::Dot(x)
                        | AccessExpr::Subscript(Subscript::Index { index: x }) => {
                            stack.push((x, d));
                        }
                        AccessExpr::Subscript(Subscript::Slice {
                            lower_bound,
                            upper_bound,
                            stride,
                        }) => {
                            for x in [lower_bound, upper_bound, stride].into_iter().flatten() {
                                stack.push((x, d));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Some(leaves)
}

// ---------------------------------------------------------------------------------------------
// cache

#[derive(Clone)]
enum Entry {
    Template(Arc<Template>),
    /// The template does not qualify: its clauses skip straight to the full compile.
    Uncacheable,
}

/// Two generations of templates: lookups promote from the old one, and when the young one
/// is full (in templates or in text) it becomes the old one, dropping the previous old one.
/// Templates in use stay; the cache never holds more than 2 × [`GENERATION`] templates and
/// 2 × [`GENERATION_BYTES`] of their text.
pub(super) struct Cache {
    young: Option<HashMap<Box<str>, Entry>>,
    /// Key bytes in `young`.
    young_bytes: usize,
    old: Option<HashMap<Box<str>, Entry>>,
}

impl Cache {
    pub(super) const fn new() -> Cache {
        Cache {
            young: None,
            young_bytes: 0,
            old: None,
        }
    }

    fn get(&mut self, key: &str) -> Option<Entry> {
        if let Some(entry) = self.young.as_ref().and_then(|m| m.get(key)) {
            return Some(entry.clone());
        }
        let (key, entry) = self.old.as_mut()?.remove_entry(key)?;
        self.insert(key, entry.clone());
        Some(entry)
    }

    fn insert(&mut self, key: Box<str>, entry: Entry) {
        let young = self.young.get_or_insert_with(HashMap::new);
        if let Some(slot) = young.get_mut(&key) {
            *slot = entry;
            return;
        }
        if young.len() >= GENERATION || self.young_bytes + key.len() > GENERATION_BYTES {
            self.old = self.young.take();
            self.young_bytes = 0;
        }
        self.young_bytes += key.len();
        self.young
            .get_or_insert_with(HashMap::new)
            .insert(key, entry);
    }

    #[cfg(test)]
    fn len_and_bytes(&self) -> (usize, usize) {
        [&self.young, &self.old]
            .into_iter()
            .flatten()
            .flat_map(HashMap::keys)
            .fold((0, 0), |(n, bytes), k| (n + 1, bytes + k.len()))
    }
}

/// The constants of `text` as (is a string, byte range), `None` when it is not templated.
#[cfg(test)]
pub(super) fn constant_spans(text: &str) -> Option<Vec<(bool, std::ops::Range<usize>)>> {
    let lexed = lex(text)?;
    Some(
        lexed
            .slots
            .iter()
            .map(|s| (s.kind == SlotKind::String, s.start..s.end))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<String> {
        lex(text).map(|l| l.key)
    }

    #[test]
    fn constants_become_markers() {
        let l = lex("tenant = 12 AND title = 'it''s' OR x IN (1.5, $1)").expect("templated");
        assert_eq!(l.key, "tenant = \0n AND title = \0s OR x IN (\0n, $1)");
        let values: Vec<SqlValue> = l.slots.iter().map(Slot::value).collect();
        assert_eq!(
            values,
            [
                SqlValue::Number("12".into(), false),
                SqlValue::SingleQuotedString("it's".into()),
                SqlValue::Number("1.5".into(), false),
            ]
        );
        assert_eq!(key("tenant = 1"), key("tenant = 2000"));
        assert_eq!(key("title = ''"), key("title = 'x''y'"));
        assert_ne!(key("tenant = 1"), key("tenant = '1'"));
        assert_ne!(key("id IN (1, 2)"), key("id IN (1, 2, 3)"));
        assert_ne!(key("tenant = 1"), key("tenant  = 1"));
        // Quoted identifiers and non-ASCII words are template text, digits in them too.
        assert_eq!(
            key(r#""a'1" = 1 AND é2 = 'x'"#).as_deref(),
            Some("\"a'1\" = \0n AND é2 = \0s")
        );
    }

    #[test]
    fn unsure_texts_are_not_templated() {
        for text in [
            "tenant = 1 -- one",
            "tenant = /* one */ 1",
            "title = E'a\\n'",
            "title = e'a'",
            "bin = X'00'",
            "title = N'a'",
            "title = U&'a'",
            "title = $$a$$",
            "title = $x$a$x$",
            "score = .5",
            "score = 1.",
            "score = 1e3",
            "score = 1E-3",
            "id = 1_000",
            "id = 1L",
            "id = 0x1F",
            "title = 'unterminated",
            "title = \"unterminated",
            "title = 'a'1",
            "title = 'a''",
            "title = 'a'b",
            "tags[1:2] = '{}'",
            "x = :1",
            "x = @1",
            "data ?'a'",
            "a.1 = 1",
            "nul = '\0'",
        ] {
            assert!(lex(text).is_none(), "{text:?} should not be templated");
        }
        assert!(lex(&format!("title = '{}'", "x".repeat(MAX_TEMPLATE_BYTES))).is_none());
    }

    #[test]
    fn lexing_never_panics() {
        let text = proptest::prop_oneof!["(?s).{0,64}", "[a-z0-9 '\"$.:@?&|()\\-/*eEL_]{0,40}",];
        proptest::proptest!(|(text in text)| {
            if let Some(l) = lex(&text) {
                // The key and the constants give back the text.
                let mut rebuilt = String::new();
                let mut rest = l.key.split('\0');
                rebuilt.push_str(rest.next().unwrap_or(""));
                for (slot, part) in l.slots.iter().zip(rest) {
                    rebuilt.push_str(slot.text);
                    rebuilt.push_str(part.get(1..).unwrap_or(""));
                }
                proptest::prop_assert_eq!(rebuilt, text);
            }
        });
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_templates_in_use() {
        let mut cache = Cache::new();
        cache.insert("kept".into(), Entry::Uncacheable);
        for i in 0..GENERATION * 5 {
            // Short keys fill a generation by count, long ones by bytes.
            let key = if i % 2 == 0 {
                format!("t{i}")
            } else {
                format!("{i:>width$}", width = MAX_TEMPLATE_BYTES)
            };
            cache.insert(key.into(), Entry::Uncacheable);
            assert!(cache.get("kept").is_some(), "evicted after {i}");
            let (n, bytes) = cache.len_and_bytes();
            assert!(n <= 2 * GENERATION, "{n} templates");
            assert!(bytes <= 2 * GENERATION_BYTES, "{bytes} bytes");
        }
        assert!(cache.get("t0").is_none());
    }
}
