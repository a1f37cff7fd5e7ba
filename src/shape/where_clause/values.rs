//! Runtime values and the PG text input/output rules of every supported type.
//!
//! Role: decode a column's PG text output (or a literal/parameter) into a [`Value`], compare
//! two values with PG's btree semantics, and print constants back in a canonical text form
//! that PG's input function reads to the same value.
//!
//! Invariants:
//! * Every parser is total: it returns `None` on anything it does not accept, never panics,
//!   and uses checked arithmetic on the digits it reads.
//! * Decoding a row value never allocates: text and numeric values borrow the row's text.
//! * numeric is exact (digit-string comparison, never `f64`); floats order NaN above every
//!   number and treat -0 as 0, as PG does.
//! * Dates and timestamps use PG's own epoch (2000-01-01) and range limits; ±infinity are
//!   the `i64` extremes, which no finite value can reach.
//! * We accept a documented subset of PG's input grammar: unambiguous ISO forms. Inputs PG
//!   would read differently depending on session settings (`DateStyle`, time zone names,
//!   `'now'`) are rejected rather than guessed.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::Write as _;

use super::array::ArrayVal;
use super::interval::Interval;
use super::types::{CmpType, SqlType};

/// A value during evaluation. Borrowed from the row text or from the compiled constants;
/// computed values (arithmetic, `lower`, `||`) are owned.
#[derive(Clone, Debug)]
pub(super) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// float4 values are stored widened, as PG widens them for float8 comparisons.
    Float(f64),
    Numeric(Num<'a>),
    /// A computed numeric.
    NumericOwned(NumOwned),
    /// Text-family values; bpchar keeps its padding (stripped only when compared).
    Text(Cow<'a, str>),
    Uuid([u8; 16]),
    /// bytea as its lower-case hex digits without the `\x` prefix (borrowed from the row's
    /// hex output when it is already canonical). Comparing the digit strings bytewise is
    /// PG's `byteacmp` (memcmp, then length).
    Bytea(Cow<'a, str>),
    /// Days since 2000-01-01; `i64::MIN`/`MAX` are -infinity/infinity.
    Date(i64),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 2000-01-01 00:00 (UTC for timestamptz); extremes are ±infinity.
    Timestamp(i64),
    /// Label position in the enum's sort order.
    Enum(u32),
    Array(Cow<'a, ArrayVal>),
    Interval(Interval),
    /// A value of a type we cannot decode; only `IS NULL` looks at it.
    Opaque,
}

/// An exact decimal: `0.d₁d₂… × 10^point`, digits = `hi ++ lo`, no leading or trailing zero
/// digit, empty digits = zero (never negative).
///
/// `dscale` is PG's display scale: the number of digits after the point the value carries
/// (`1.50` has 2, `3` has 0), always at least the number of significant fractional digits.
/// It never takes part in comparisons (`1.50 = 1.5`), only in the result scale of `/` and
/// `^` and in the text we send back to PG.
#[derive(Clone, Copy, Debug)]
pub(super) enum Num<'a> {
    NaN,
    PosInf,
    NegInf,
    Finite {
        neg: bool,
        hi: &'a str,
        lo: &'a str,
        point: i64,
        dscale: u16,
    },
}

/// An owned, normalised numeric (for constants and computed values); see [`Num`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NumOwned {
    NaN,
    PosInf,
    NegInf,
    Finite {
        neg: bool,
        digits: String,
        point: i64,
        dscale: u16,
    },
}

/// PG's `NUMERIC_DSCALE_MAX`: a larger display scale does not fit the on-disk header
/// ("value overflows numeric format").
pub(super) const NUMERIC_DSCALE_MAX: i64 = 0x3FFF;

/// An owned constant value.
#[derive(Clone, Debug)]
pub(super) enum OwnedValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(NumOwned),
    Text(Box<str>),
    Uuid([u8; 16]),
    /// Lower-case hex digits, as in [`Value::Bytea`].
    Bytea(Box<str>),
    Date(i64),
    Time(i64),
    Timestamp(i64),
    Enum(u32),
    Array(Box<ArrayVal>),
    Interval(Interval),
}

impl OwnedValue {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Bool(b) => Value::Bool(*b),
            OwnedValue::Int(i) => Value::Int(*i),
            OwnedValue::Float(f) => Value::Float(*f),
            OwnedValue::Numeric(n) => Value::Numeric(n.view()),
            OwnedValue::Text(t) => Value::Text(Cow::Borrowed(t)),
            OwnedValue::Uuid(u) => Value::Uuid(*u),
            OwnedValue::Bytea(h) => Value::Bytea(Cow::Borrowed(h)),
            OwnedValue::Date(d) => Value::Date(*d),
            OwnedValue::Time(t) => Value::Time(*t),
            OwnedValue::Timestamp(t) => Value::Timestamp(*t),
            OwnedValue::Enum(e) => Value::Enum(*e),
            OwnedValue::Array(a) => Value::Array(Cow::Borrowed(a)),
            OwnedValue::Interval(v) => Value::Interval(*v),
        }
    }

    /// The value as an owned evaluation value.
    pub fn into_value(self) -> Value<'static> {
        match self {
            OwnedValue::Bool(b) => Value::Bool(b),
            OwnedValue::Int(i) => Value::Int(i),
            OwnedValue::Float(f) => Value::Float(f),
            OwnedValue::Numeric(n) => Value::NumericOwned(n),
            OwnedValue::Text(t) => Value::Text(Cow::Owned(t.into_string())),
            OwnedValue::Uuid(u) => Value::Uuid(u),
            OwnedValue::Bytea(h) => Value::Bytea(Cow::Owned(h.into_string())),
            OwnedValue::Date(d) => Value::Date(d),
            OwnedValue::Time(t) => Value::Time(t),
            OwnedValue::Timestamp(t) => Value::Timestamp(t),
            OwnedValue::Enum(e) => Value::Enum(e),
            OwnedValue::Array(a) => Value::Array(Cow::Owned(*a)),
            OwnedValue::Interval(v) => Value::Interval(v),
        }
    }

    /// `None` for NULL and for opaque values (which constants never are).
    pub fn from_value(value: Value<'_>) -> Option<OwnedValue> {
        Some(match value {
            Value::Null | Value::Opaque => return None,
            Value::Bool(b) => OwnedValue::Bool(b),
            Value::Int(i) => OwnedValue::Int(i),
            Value::Float(f) => OwnedValue::Float(f),
            Value::Numeric(n) => OwnedValue::Numeric(n.to_owned_num()),
            Value::NumericOwned(n) => OwnedValue::Numeric(n),
            Value::Text(t) => OwnedValue::Text(t.into_owned().into_boxed_str()),
            Value::Uuid(u) => OwnedValue::Uuid(u),
            Value::Bytea(h) => OwnedValue::Bytea(h.into_owned().into_boxed_str()),
            Value::Date(d) => OwnedValue::Date(d),
            Value::Time(t) => OwnedValue::Time(t),
            Value::Timestamp(t) => OwnedValue::Timestamp(t),
            Value::Enum(e) => OwnedValue::Enum(e),
            Value::Array(a) => OwnedValue::Array(Box::new(a.into_owned())),
            Value::Interval(v) => OwnedValue::Interval(v),
        })
    }

    /// Canonical PG input text of this value as type `ty` (enums print their label).
    pub fn canonical_text(&self, ty: &SqlType) -> String {
        match self {
            OwnedValue::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
            OwnedValue::Int(i) => i.to_string(),
            OwnedValue::Float(f) => format_float(*f, matches!(ty, SqlType::Float4)),
            OwnedValue::Numeric(n) => n.canonical_text(),
            OwnedValue::Text(t) => t.to_string(),
            OwnedValue::Uuid(u) => format_uuid(u),
            OwnedValue::Bytea(h) => format!("\\x{h}"),
            OwnedValue::Date(d) => format_date(*d),
            OwnedValue::Time(t) => format_time(*t),
            OwnedValue::Timestamp(t) => format_timestamp(*t, matches!(ty, SqlType::Timestamptz)),
            OwnedValue::Enum(e) => match ty {
                SqlType::Enum(def) => usize::try_from(*e)
                    .ok()
                    .and_then(|i| def.labels.get(i))
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            },
            OwnedValue::Interval(v) => v.canonical_text(),
            OwnedValue::Array(a) => match ty {
                SqlType::Array(elem) => super::array::canonical_text(a, elem),
                _ => String::new(),
            },
        }
    }
}

/// Decodes `text` with the input rules of `ty`. `None` = not valid input for the type.
pub(super) fn parse_as<'a>(ty: &SqlType, text: &'a str) -> Option<Value<'a>> {
    Some(match ty {
        SqlType::Bool => Value::Bool(parse_bool(text)?),
        SqlType::Int2 => Value::Int(parse_int(text, i64::from(i16::MIN), i64::from(i16::MAX))?),
        SqlType::Int4 => Value::Int(parse_int(text, i64::from(i32::MIN), i64::from(i32::MAX))?),
        SqlType::Int8 => Value::Int(parse_int(text, i64::MIN, i64::MAX)?),
        SqlType::Numeric => Value::Numeric(parse_numeric(text)?),
        SqlType::Float4 => Value::Float(parse_float4(text)?),
        SqlType::Float8 => Value::Float(parse_float8(text)?),
        SqlType::Text | SqlType::Varchar | SqlType::Name | SqlType::Bpchar | SqlType::Unknown => {
            Value::Text(Cow::Borrowed(text))
        }
        SqlType::Uuid => Value::Uuid(parse_uuid(text)?),
        SqlType::Bytea => Value::Bytea(parse_bytea(text)?),
        SqlType::Date => Value::Date(parse_date(text)?),
        SqlType::Time => Value::Time(parse_time(text)?),
        SqlType::Timestamp => Value::Timestamp(parse_timestamp(text, false)?),
        SqlType::Timestamptz => Value::Timestamp(parse_timestamp(text, true)?),
        SqlType::Enum(def) => Value::Enum(def.position(text)?),
        SqlType::Json => {
            super::json::parse(text, false)?;
            Value::Text(Cow::Borrowed(text))
        }
        SqlType::Jsonb => {
            let v = super::json::parse(text, true)?;
            let canonical = super::json::jsonb_text(&v.value);
            if canonical == text {
                Value::Text(Cow::Borrowed(text))
            } else {
                Value::Text(Cow::Owned(canonical))
            }
        }
        SqlType::Interval => Value::Interval(super::interval::parse_interval(text)?),
        SqlType::Array(elem) => Value::Array(Cow::Owned(super::array::parse_array(elem, text)?)),
        SqlType::Other(_) => Value::Opaque,
    })
}

/// PG btree comparison of two non-NULL values of one comparison family.
/// `None` if the values are not of that family (a bug upstream, treated as an error).
pub(super) fn compare(a: &Value<'_>, b: &Value<'_>, cmp: CmpType) -> Option<Ordering> {
    Some(match (cmp, a, b) {
        (CmpType::Bool, Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (CmpType::Int, Value::Int(x), Value::Int(y)) => x.cmp(y),
        (CmpType::Float, Value::Float(x), Value::Float(y)) => float_cmp(*x, *y),
        (CmpType::Numeric, x, y) => num_view(x)?.cmp_num(&num_view(y)?),
        (CmpType::Text, Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (CmpType::Bpchar, Value::Text(x), Value::Text(y)) => {
            strip_bpchar(x).as_bytes().cmp(strip_bpchar(y).as_bytes())
        }
        (CmpType::Uuid, Value::Uuid(x), Value::Uuid(y)) => x.cmp(y),
        (CmpType::Bytea, Value::Bytea(x), Value::Bytea(y)) => x.as_bytes().cmp(y.as_bytes()),
        (CmpType::Date, Value::Date(x), Value::Date(y)) => x.cmp(y),
        (CmpType::Time, Value::Time(x), Value::Time(y)) => x.cmp(y),
        (CmpType::Timestamp, Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (CmpType::Enum, Value::Enum(x), Value::Enum(y)) => x.cmp(y),
        (CmpType::Interval, Value::Interval(x), Value::Interval(y)) => x.cmp_span(y),
        (CmpType::Jsonb, Value::Text(x), Value::Text(y)) => {
            let (a, b) = (super::json::parse(x, true)?, super::json::parse(y, true)?);
            super::json::cmp_jsonb(&a.value, &b.value)
        }
        (CmpType::Array(inner), Value::Array(x), Value::Array(y)) => {
            super::array::cmp_arrays(x, y, *inner)?
        }
        _ => return None,
    })
}

/// A numeric value's digits view, borrowed or computed.
pub(super) fn num_view<'b>(v: &'b Value<'_>) -> Option<Num<'b>> {
    match v {
        Value::Numeric(n) => Some(*n),
        Value::NumericOwned(n) => Some(n.view()),
        _ => None,
    }
}

/// bpchar semantics: trailing blanks are insignificant.
pub(super) fn strip_bpchar(s: &str) -> &str {
    s.trim_end_matches(' ')
}

/// PG's float order: NaN equals NaN and is above everything; -0 equals 0.
pub(super) fn float_cmp(x: f64, y: f64) -> Ordering {
    match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// The whitespace PG's input functions skip (`isspace` in the C locale).
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn trim_pg(s: &str) -> &str {
    s.trim_matches(is_pg_space)
}

// ---------------------------------------------------------------------------------------------
// bytea

/// PG `byteain` (15): `\x` then hex digit pairs of either case, blanks (space, tab, newline,
/// carriage return) allowed between pairs; otherwise the escape format, where `\\` is a
/// backslash, `\ooo` (first digit 0-3) an octal byte and any other byte itself. Returns the
/// lower-case hex digits, borrowed when `text` is already canonical (PG's hex output).
pub(super) fn parse_bytea(text: &str) -> Option<Cow<'_, str>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if let Some(digits) = text.strip_prefix("\\x") {
        if digits.len() % 2 == 0
            && digits
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Some(Cow::Borrowed(digits));
        }
        let mut out = String::with_capacity(digits.len());
        let mut bytes = digits.bytes();
        while let Some(b) = bytes.next() {
            if matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                continue;
            }
            let hi = hex_val(b)?;
            let lo = hex_val(bytes.next()?)?;
            out.push(char::from(HEX[usize::from(hi)]));
            out.push(char::from(HEX[usize::from(lo)]));
        }
        return Some(Cow::Owned(out));
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut push = |byte: u8| {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            push(b);
            i += 1;
            continue;
        }
        match (bytes.get(i + 1), bytes.get(i + 2), bytes.get(i + 3)) {
            (Some(b'\\'), _, _) => {
                push(b'\\');
                i += 2;
            }
            (Some(&a @ b'0'..=b'3'), Some(&m @ b'0'..=b'7'), Some(&z @ b'0'..=b'7')) => {
                push(((a - b'0') << 6) | ((m - b'0') << 3) | (z - b'0'));
                i += 4;
            }
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

// ---------------------------------------------------------------------------------------------
// bool, integers, uuid

/// PG `boolin`: unique prefixes of true/false/yes/no, on/off, 1/0, any case, blanks around.
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    let t = trim_pg(text);
    let prefix_of = |word: &str, min: usize| {
        t.len() >= min
            && t.len() <= word.len()
            && word.as_bytes()[..t.len()].eq_ignore_ascii_case(t.as_bytes())
    };
    if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || t == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// PG 15 integer input: blanks, optional sign, decimal digits, range-checked.
pub(super) fn parse_int(text: &str, min: i64, max: i64) -> Option<i64> {
    let t = trim_pg(text);
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulate negatively so that i64::MIN is representable.
    let mut acc: i64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    let value = if neg { acc } else { acc.checked_neg()? };
    (min..=max).contains(&value).then_some(value)
}

/// PG `uuid_in`: 32 hex digits, any case, optional braces, a hyphen allowed after any group
/// of four digits.
pub(super) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let mut s = text.as_bytes();
    if let [b'{', inner @ .., b'}'] = s {
        s = inner;
    }
    let mut out = [0u8; 16];
    let mut n = 0usize;
    let mut i = 0usize;
    while n < 32 {
        let c = *s.get(i)?;
        let v = hex_val(c)?;
        let byte = out.get_mut(n / 2)?;
        *byte = if n.is_multiple_of(2) {
            v << 4
        } else {
            *byte | v
        };
        n += 1;
        i += 1;
        if n.is_multiple_of(4) && n < 32 && s.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    (i == s.len()).then_some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(super) fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

// ---------------------------------------------------------------------------------------------
// floats

/// Checks PG's float syntax (strtod's decimal subset) and reports whether the mantissa has a
/// non-zero digit (to detect underflow to zero, which PG rejects).
fn float_syntax(t: &str) -> Option<bool> {
    let b = t.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    let mut nonzero = false;
    while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
        nonzero |= *c != b'0';
        digits += 1;
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            nonzero |= *c != b'0';
            digits += 1;
            i += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    (i == b.len()).then_some(nonzero)
}

fn special_float(t: &str) -> Option<f64> {
    let (neg, word) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if word.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if word.eq_ignore_ascii_case("infinity") || word.eq_ignore_ascii_case("inf") {
        Some(if neg {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        })
    } else {
        None
    }
}

/// PG `float8in`: decimal/exponent syntax, NaN/Infinity words; overflow and underflow to
/// zero are errors.
pub(super) fn parse_float8(text: &str) -> Option<f64> {
    let t = trim_pg(text);
    if let Some(v) = special_float(t) {
        return Some(v);
    }
    let nonzero = float_syntax(t)?;
    let v: f64 = t.parse().ok()?;
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return None;
    }
    Some(v)
}

/// PG `float4in`, widened to f64 (exact) as PG does when comparing with float8.
pub(super) fn parse_float4(text: &str) -> Option<f64> {
    let t = trim_pg(text);
    if let Some(v) = special_float(t) {
        return Some(v);
    }
    let nonzero = float_syntax(t)?;
    let v: f32 = t.parse().ok()?;
    if v.is_infinite() || (v == 0.0 && nonzero) {
        return None;
    }
    Some(f64::from(v))
}

fn format_float(f: f64, float4: bool) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if float4 {
        // Shortest text that reads back as the same float4 (the value is an exact widening).
        format!("{:e}", f as f32)
    } else {
        format!("{f:e}")
    }
}

// ---------------------------------------------------------------------------------------------
// numeric

/// The exponent bound we accept in numeric input; PG's own limits are of the same order
/// and this keeps `point` arithmetic far from overflow.
const MAX_NUMERIC_EXPONENT: i64 = 1_000_000;

/// PG `numeric_in`: blanks, sign, digits with an optional point, optional exponent,
/// NaN / ±Infinity words.
pub(super) fn parse_numeric(text: &str) -> Option<Num<'_>> {
    let t = trim_pg(text);
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.eq_ignore_ascii_case("nan") {
        return (body.len() == t.len()).then_some(Num::NaN);
    }
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
        return Some(if neg { Num::NegInf } else { Num::PosInf });
    }
    let b = body.as_bytes();
    let mut i = 0;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_part = &body[..i];
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &body[start..i];
    }
    if int_part.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exponent: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_neg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            exponent = exponent.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            if exponent > MAX_NUMERIC_EXPONENT {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_neg {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return None;
    }
    // PG's set_var_from_str: the digits written after the point, less the exponent.
    let written = i64::try_from(frac.len()).ok()?;
    let scale = written.saturating_sub(exponent).max(0);
    if scale > NUMERIC_DSCALE_MAX {
        return None;
    }
    let dscale = u16::try_from(scale).ok()?;
    Some(normalise_num(neg, int_part, frac, exponent, dscale))
}

fn normalise_num<'a>(
    neg: bool,
    int_part: &'a str,
    frac: &'a str,
    exponent: i64,
    dscale: u16,
) -> Num<'a> {
    let ip = int_part.trim_start_matches('0');
    let len = |s: &str| i64::try_from(s.len()).unwrap_or(i64::MAX);
    let (mut hi, mut lo, point) = if ip.is_empty() {
        let fz = frac.trim_start_matches('0');
        ("", fz, exponent.saturating_sub(len(frac) - len(fz)))
    } else {
        (ip, frac, len(ip).saturating_add(exponent))
    };
    lo = lo.trim_end_matches('0');
    if lo.is_empty() {
        hi = hi.trim_end_matches('0');
    }
    if hi.is_empty() && lo.is_empty() {
        return Num::Finite {
            neg: false,
            hi: "",
            lo: "",
            point: 0,
            dscale,
        };
    }
    Num::Finite {
        neg,
        hi,
        lo,
        point,
        dscale,
    }
}

impl Num<'_> {
    fn rank(&self) -> u8 {
        match self {
            Num::NegInf => 0,
            Num::Finite { .. } => 1,
            Num::PosInf => 2,
            Num::NaN => 3,
        }
    }

    /// PG numeric order: -Infinity < finite < Infinity < NaN, NaN = NaN.
    pub fn cmp_num(&self, other: &Num<'_>) -> Ordering {
        match (self, other) {
            (
                Num::Finite {
                    neg: an,
                    hi: ah,
                    lo: al,
                    point: ap,
                    ..
                },
                Num::Finite {
                    neg: bn,
                    hi: bh,
                    lo: bl,
                    point: bp,
                    ..
                },
            ) => {
                let sign = |neg: bool, hi: &str, lo: &str| -> i8 {
                    if hi.is_empty() && lo.is_empty() {
                        0
                    } else if neg {
                        -1
                    } else {
                        1
                    }
                };
                let (sa, sb) = (sign(*an, ah, al), sign(*bn, bh, bl));
                if sa != sb || sa == 0 {
                    return sa.cmp(&sb);
                }
                let magnitude = ap.cmp(bp).then_with(|| {
                    ah.bytes()
                        .chain(al.bytes())
                        .cmp(bh.bytes().chain(bl.bytes()))
                });
                if sa < 0 {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
            _ => self.rank().cmp(&other.rank()),
        }
    }

    pub fn to_owned_num(self) -> NumOwned {
        match self {
            Num::NaN => NumOwned::NaN,
            Num::PosInf => NumOwned::PosInf,
            Num::NegInf => NumOwned::NegInf,
            Num::Finite {
                neg,
                hi,
                lo,
                point,
                dscale,
            } => NumOwned::Finite {
                neg,
                digits: format!("{hi}{lo}"),
                point,
                dscale,
            },
        }
    }
}

impl NumOwned {
    pub fn view(&self) -> Num<'_> {
        match self {
            NumOwned::NaN => Num::NaN,
            NumOwned::PosInf => Num::PosInf,
            NumOwned::NegInf => Num::NegInf,
            NumOwned::Finite {
                neg,
                digits,
                point,
                dscale,
            } => Num::Finite {
                neg: *neg,
                hi: digits,
                lo: "",
                point: *point,
                dscale: *dscale,
            },
        }
    }

    /// Canonical key text: equal values ⇔ equal strings.
    pub fn key(&self) -> String {
        match self {
            NumOwned::NaN => "NaN".to_owned(),
            NumOwned::PosInf => "Infinity".to_owned(),
            NumOwned::NegInf => "-Infinity".to_owned(),
            NumOwned::Finite { digits, .. } if digits.is_empty() => "0".to_owned(),
            NumOwned::Finite {
                neg, digits, point, ..
            } => {
                format!("{}0.{digits}e{point}", if *neg { "-" } else { "" })
            }
        }
    }

    /// PG numeric input text for this value that PG reads back with the same display scale
    /// (plain decimal when short, else exponent form).
    pub fn canonical_text(&self) -> String {
        let NumOwned::Finite {
            neg,
            digits,
            point,
            dscale,
        } = self
        else {
            return self.key();
        };
        let sign = if *neg { "-" } else { "" };
        let len = i64::try_from(digits.len()).unwrap_or(i64::MAX);
        let dscale = i64::from(*dscale);
        if (-40..=40).contains(point) {
            // Integer digits, then the fraction padded with zeros up to the display scale.
            let (int_part, frac) = match usize::try_from(*point) {
                Ok(p) if p >= digits.len() => (
                    format!("{digits}{}", "0".repeat(p - digits.len())),
                    String::new(),
                ),
                Ok(p) => (digits[..p].to_owned(), digits[p..].to_owned()),
                Err(_) => (
                    String::new(),
                    format!(
                        "{}{digits}",
                        "0".repeat(usize::try_from(-*point).unwrap_or(0))
                    ),
                ),
            };
            let int_part = if int_part.is_empty() {
                "0".to_owned()
            } else {
                int_part
            };
            let pad = usize::try_from(dscale - i64::try_from(frac.len()).unwrap_or(0)).unwrap_or(0);
            let frac = format!("{frac}{}", "0".repeat(pad));
            if frac.is_empty() {
                return format!("{sign}{int_part}");
            }
            return format!("{sign}{int_part}.{frac}");
        }
        if digits.is_empty() {
            return "0".to_owned();
        }
        // `0.DIGITS000eP` reads back with scale max(0, digits + zeros - P).
        let zeros = if dscale == 0 {
            0
        } else {
            usize::try_from(dscale + point - len).unwrap_or(0)
        };
        format!("{sign}0.{digits}{}e{point}", "0".repeat(zeros))
    }
}

// ---------------------------------------------------------------------------------------------
// dates and times

/// PG's date range, in days since 2000-01-01 (Julian day 0 up to, excluding, 5874898-01-01).
pub(super) const MIN_DATE: i64 = -2_451_545;
pub(super) const END_DATE: i64 = 2_145_031_949;
/// PG's timestamp range in µs since 2000-01-01 (4714-11-24 BC up to, excluding, 294277-01-01).
pub(super) const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
pub(super) const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
const USECS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub(super) const UNIX_TO_PG_DAYS: i64 = 10_957;

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year numbering).
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub(super) fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A tiny cursor over ASCII input.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            i: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn skip_spaces(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(|c| is_pg_space(char::from(c))) {
            self.i += 1;
        }
        self.i > start
    }
    /// Between `min` and `max` decimal digits; returns (value, count).
    fn digits(&mut self, min: usize, max: usize) -> Option<(i64, usize)> {
        let mut value: i64 = 0;
        let mut n = 0;
        while n < max {
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
                    n += 1;
                    self.i += 1;
                }
                _ => break,
            }
        }
        (n >= min).then_some((value, n))
    }
    fn eat_word_ci(&mut self, word: &str) -> bool {
        let end = self.i + word.len();
        match self.s.get(self.i..end) {
            Some(w) if w.eq_ignore_ascii_case(word.as_bytes()) => {
                self.i = end;
                true
            }
            _ => false,
        }
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

fn special_word(t: &str) -> Option<i64> {
    if t.eq_ignore_ascii_case("infinity") || t.eq_ignore_ascii_case("+infinity") {
        Some(i64::MAX)
    } else if t.eq_ignore_ascii_case("-infinity") {
        Some(i64::MIN)
    } else {
        None
    }
}

/// `Y-M-D`, returning (year, month, day) as written (year ≥ 1, era applied later).
fn date_fields(c: &mut Cursor<'_>) -> Option<(i64, i64, i64)> {
    let (y, _) = c.digits(1, 9)?;
    if !c.eat(b'-') {
        return None;
    }
    let (m, _) = c.digits(1, 2)?;
    if !c.eat(b'-') {
        return None;
    }
    let (d, _) = c.digits(1, 2)?;
    Some((y, m, d))
}

/// Optional trailing ` BC` / ` AD`; returns true for BC.
fn era(c: &mut Cursor<'_>) -> Option<bool> {
    let save = c.i;
    c.skip_spaces();
    if c.eat_word_ci("BC") {
        return Some(true);
    }
    if c.eat_word_ci("AD") {
        return Some(false);
    }
    c.i = save;
    Some(false)
}

/// Validates a written date and returns days since 2000-01-01.
fn date_days(y: i64, m: i64, d: i64, bc: bool) -> Option<i64> {
    if y < 1 || !(1..=12).contains(&m) {
        return None;
    }
    let astro = if bc { 1 - y } else { y };
    if d < 1 || d > days_in_month(astro, m) {
        return None;
    }
    let days = days_from_civil(astro, m, d) - UNIX_TO_PG_DAYS;
    (MIN_DATE..END_DATE).contains(&days).then_some(days)
}

/// PG `date_in` restricted to ISO `YYYY-MM-DD [BC|AD]`, `epoch`, `±infinity`.
pub(super) fn parse_date(text: &str) -> Option<i64> {
    let t = trim_pg(text);
    if let Some(v) = special_word(t) {
        return Some(v);
    }
    if t.eq_ignore_ascii_case("epoch") {
        return Some(-UNIX_TO_PG_DAYS);
    }
    let mut c = Cursor::new(t);
    let (y, m, d) = date_fields(&mut c)?;
    let bc = era(&mut c)?;
    c.done().then_some(())?;
    date_days(y, m, d, bc)
}

/// `H:MM[:SS[.ffffff]]` → µs since midnight (24:00:00 allowed, as in PG).
fn time_fields(c: &mut Cursor<'_>) -> Option<i64> {
    let (h, _) = c.digits(1, 2)?;
    if !c.eat(b':') {
        return None;
    }
    let (m, _) = c.digits(2, 2)?;
    let mut s = 0;
    let mut us = 0;
    if c.eat(b':') {
        s = c.digits(2, 2)?.0;
        if c.eat(b'.') {
            let (f, n) = c.digits(1, 6)?;
            if c.peek().is_some_and(|c| c.is_ascii_digit()) {
                // More than microsecond precision: PG rounds in floating point; refuse.
                return None;
            }
            let scale = [100_000, 10_000, 1_000, 100, 10, 1];
            us = f * scale.get(n - 1)?;
        }
    }
    if m > 59 || s > 59 || h > 24 || (h == 24 && (m, s, us) != (0, 0, 0)) {
        return None;
    }
    Some(((h * 60 + m) * 60 + s) * 1_000_000 + us)
}

/// PG `time_in` restricted to `HH:MM[:SS[.ffffff]]`.
pub(super) fn parse_time(text: &str) -> Option<i64> {
    let mut c = Cursor::new(trim_pg(text));
    let t = time_fields(&mut c)?;
    c.done().then_some(t)
}

/// `Z` or `±HH[[:]MM[[:]SS]]` → offset east of UTC in seconds.
fn offset_fields(c: &mut Cursor<'_>) -> Option<Option<i64>> {
    if c.eat(b'Z') || c.eat(b'z') {
        return Some(Some(0));
    }
    let neg = match c.peek() {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return Some(None),
    };
    c.i += 1;
    let (h, n) = c.digits(1, 4)?;
    let (h, mut m) = if n > 2 { (h / 100, h % 100) } else { (h, 0) };
    let mut s = 0;
    if n <= 2 && c.eat(b':') {
        m = c.digits(2, 2)?.0;
        if c.eat(b':') {
            s = c.digits(2, 2)?.0;
        }
    }
    if h > 15 || m > 59 || s > 59 {
        return None;
    }
    let secs = (h * 60 + m) * 60 + s;
    Some(Some(if neg { -secs } else { secs }))
}

/// PG `timestamp_in` / `timestamptz_in` restricted to ISO forms:
/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][offset][ BC|AD]`, `epoch`, `±infinity`.
/// timestamptz without an offset is read as UTC (our sessions run with `TimeZone=UTC`);
/// plain timestamp with an offset is refused (PG would silently ignore it).
pub(super) fn parse_timestamp(text: &str, with_tz: bool) -> Option<i64> {
    let t = trim_pg(text);
    if let Some(v) = special_word(t) {
        return Some(v);
    }
    if t.eq_ignore_ascii_case("epoch") {
        return Some(-UNIX_TO_PG_DAYS * USECS_PER_DAY);
    }
    let mut c = Cursor::new(t);
    let (y, m, d) = date_fields(&mut c)?;
    let mut time = 0;
    let save = c.i;
    if c.eat(b'T') || c.skip_spaces() {
        match time_fields(&mut c) {
            Some(us) => time = us,
            None => c.i = save,
        }
    }
    let mut offset = 0;
    if with_tz {
        c.skip_spaces();
        offset = offset_fields(&mut c)?.unwrap_or(0);
    } else {
        let before = c.i;
        c.skip_spaces();
        if offset_fields(&mut c)?.is_some() {
            return None;
        }
        c.i = before;
    }
    let bc = era(&mut c)?;
    c.skip_spaces();
    c.done().then_some(())?;
    let days = date_days(y, m, d, bc)?;
    let us = days
        .checked_mul(USECS_PER_DAY)?
        .checked_add(time)?
        .checked_sub(offset.checked_mul(1_000_000)?)?;
    (MIN_TIMESTAMP..END_TIMESTAMP).contains(&us).then_some(us)
}

fn write_ymd(s: &mut String, days: i64) -> bool {
    let (y, m, d) = civil_from_days(days + UNIX_TO_PG_DAYS);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    let _ = write!(s, "{year:04}-{m:02}-{d:02}");
    bc
}

fn write_hms(s: &mut String, us: i64) {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        let _ = write!(s, ".{}", f.trim_end_matches('0'));
    }
}

pub(super) fn format_date(days: i64) -> String {
    match days {
        i64::MAX => "infinity".to_owned(),
        i64::MIN => "-infinity".to_owned(),
        _ => {
            let mut s = String::new();
            if write_ymd(&mut s, days) {
                s.push_str(" BC");
            }
            s
        }
    }
}

pub(super) fn format_time(us: i64) -> String {
    let mut s = String::new();
    write_hms(&mut s, us);
    s
}

pub(super) fn format_timestamp(us: i64, with_tz: bool) -> String {
    match us {
        i64::MAX => "infinity".to_owned(),
        i64::MIN => "-infinity".to_owned(),
        _ => {
            let mut s = String::new();
            let bc = write_ymd(&mut s, us.div_euclid(USECS_PER_DAY));
            s.push(' ');
            write_hms(&mut s, us.rem_euclid(USECS_PER_DAY));
            if with_tz {
                s.push_str("+00");
            }
            if bc {
                s.push_str(" BC");
            }
            s
        }
    }
}

/// PG `date_timestamp`: midnight of the date; ±infinity stay infinite; out of range is an error.
pub(super) fn date_to_timestamp(days: i64) -> Result<i64, super::eval::EvalError> {
    match days {
        i64::MAX | i64::MIN => Ok(days),
        d => d
            .checked_mul(USECS_PER_DAY)
            .filter(|us| (MIN_TIMESTAMP..END_TIMESTAMP).contains(us))
            .ok_or(super::eval::EvalError::OutOfRange {
                type_name: "timestamp",
            }),
    }
}
