//! Routing keys: the conditions a router can index a shape under.
//!
//! Invariant (the router's safety): [`entries`] returns a *necessary* condition. If the
//! clause is TRUE for a row, then at least one entry `e` has
//! `e.may_match(row[e.column])`. It may over-approximate, never miss.
//!
//! Conditions: equality (`col = c`, `IN`, OR of those), ranges (`< <= > >=`, `BETWEEN`,
//! intersected within an AND) on numbers, dates, times and text, `LIKE 'prefix…'` (also
//! `LIKE ANY/ALL` over constant patterns), and `IS NULL`. Range keys ([`RangeKey`]) are
//! order-preserving images of the values: exact for integers, floats, dates, times and text;
//! numeric goes through `f64`, whose rounding is monotone, so numeric bounds are always made
//! inclusive (an over-approximation). Computed operands (`AT TIME ZONE`, arithmetic, json
//! paths other than `->…->>`) are never indexed.
//!
//! Equality entries are only produced for `column = constant` (or `IN`) where the
//! column read is a plain parse of the row text (`KeyType` says which parse), and keys are
//! canonical in the comparison type: two values compare equal under PG's `=` iff their keys
//! are equal (float -0 = 0 and one NaN, numeric without trailing zeros, timestamptz as UTC
//! µs, uuid as bytes, bpchar without trailing blanks). A value that does not parse has no
//! key; the router must then treat the row as a possible match.

use std::collections::HashSet;

use super::eval::{ArrayPredOp, CmpOp, ColumnRead, Const, Node, Post, TextPre};
use super::types::{CmpType, SqlType};
use super::values::{
    OwnedValue, parse_bool, parse_bytea, parse_date, parse_float4, parse_float8, parse_int,
    parse_numeric, parse_time, parse_timestamp, parse_uuid, strip_bpchar,
};

/// How a row's text is decoded into a key: the comparison type chosen by overload
/// resolution, plus the column's own text form where it matters (float4 widened to float8,
/// bpchar blanks, timestamptz offsets).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum KeyType {
    Int,
    /// float4 text, widened to float8 (PG's float4 → float8 cast).
    Float4,
    Float8,
    Numeric,
    Text,
    /// Text with trailing blanks ignored.
    Bpchar,
    Bool,
    Uuid,
    /// bytea, keyed by its lower-case hex digits (whose order is the bytes' order).
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    /// Enum label, compared as its text.
    Enum,
    /// Normalised span (PG's interval comparison).
    Interval,
}

/// A canonical value in one comparison type.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum IndexKey {
    Int(i64),
    /// f64 bits, with -0 as 0 and every NaN as one NaN.
    Float(u64),
    /// Normalised decimal (`0.<digits>e<point>`, `0`, `NaN`, `±Infinity`).
    Numeric(String),
    Text(String),
    Bool(bool),
    Uuid([u8; 16]),
    /// bytea as lower-case hex digits.
    Bytea(String),
    /// Days since 2000-01-01 (±infinity at the extremes).
    Date(i64),
    /// µs since midnight.
    Time(i64),
    /// µs since 2000-01-01 (UTC for timestamptz).
    Timestamp(i64),
    /// An interval's span in µs (1 month = 30 days, 1 day = 24 h).
    Interval(i128),
}

/// An order-preserving key for range conditions. `Min`/`Max` are the open ends.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum RangeKey {
    Min,
    Num(i64),
    Text(String),
    Max,
}

/// What a shape requires of one column.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Condition {
    /// `index_key(key_type, value) == key`.
    Eq(IndexKey),
    /// `lo <= range_key(key_type, value) <= hi` (bounds inclusive: strict bounds are widened).
    Range { lo: RangeKey, hi: RangeKey },
    /// The raw value text starts with this (bytewise).
    Prefix(String),
    /// The value is NULL (`key_type` is then irrelevant).
    IsNull,
    /// `column ->…->> path = value` on a json (`jsonb: false`) or jsonb column: the text at
    /// the path equals `value`.
    JsonPath {
        jsonb: bool,
        path: Vec<super::json::Step>,
        value: String,
    },
    /// The column is an array holding a non-NULL element equal to each of these keys
    /// (`key_type` is the element's); never empty.
    Contains(Vec<IndexKey>),
    /// The raw value text contains `fragment` (never empty), comparing ASCII letters without
    /// case when `case_insensitive` (exactly how `like.rs` folds for ILIKE). Every match of a
    /// `LIKE`/`ILIKE` pattern contains each literal run of the pattern, so this is a necessary
    /// condition; it is what makes `title ILIKE '%needle%'` routable without evaluating every
    /// such shape per change.
    Substring {
        fragment: String,
        case_insensitive: bool,
    },
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IndexEntry {
    pub column: usize,
    pub key_type: KeyType,
    pub cond: Condition,
}

impl IndexEntry {
    /// The equality key, for equality entries.
    pub fn eq_key(&self) -> Option<&IndexKey> {
        match &self.cond {
            Condition::Eq(k) => Some(k),
            _ => None,
        }
    }

    /// Whether a row whose column holds `value` may satisfy this entry (a value that does
    /// not decode may).
    pub fn may_match(&self, value: Option<&str>) -> bool {
        let Some(text) = value else {
            return self.cond == Condition::IsNull;
        };
        match &self.cond {
            Condition::IsNull => false,
            Condition::Eq(key) => index_key(self.key_type, text).is_none_or(|k| k == *key),
            Condition::Range { lo, hi } => {
                range_key(self.key_type, text).is_none_or(|k| *lo <= k && k <= *hi)
            }
            Condition::Prefix(p) => text.starts_with(p.as_str()),
            Condition::Substring {
                fragment,
                case_insensitive,
            } => contains_fragment(text, fragment, *case_insensitive),
            Condition::Contains(keys) => array_keys(self.key_type, text)
                .is_none_or(|found| keys.iter().all(|k| found.contains(k))),
            Condition::JsonPath { jsonb, path, value } => {
                match json_path_text(*jsonb, path, text) {
                    Ok(found) => found.as_deref() == Some(value.as_str()),
                    Err(Undecodable) => true,
                }
            }
        }
    }
}

/// Whether `text` contains `fragment`, ASCII letters folded when `case_insensitive`.
pub fn contains_fragment(text: &str, fragment: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        let f = fragment.as_bytes();
        f.is_empty()
            || text
                .as_bytes()
                .windows(f.len())
                .any(|w| w.eq_ignore_ascii_case(f))
    } else {
        memchr::memmem::find(text.as_bytes(), fragment.as_bytes()).is_some()
    }
}

/// A row value that is not valid input for its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Undecodable;

/// The `->>` text at `path` of a json(b) value: `Ok(None)` when absent or JSON null,
/// `Err` when the text does not parse.
pub fn json_path_text(
    jsonb: bool,
    path: &[super::json::Step],
    column_text: &str,
) -> Result<Option<String>, Undecodable> {
    let doc = super::json::parse(column_text, jsonb).ok_or(Undecodable)?;
    let mut node = &doc;
    for step in path {
        match super::json::get(node, step, jsonb) {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    Ok(super::json::node_as_text(column_text, node, jsonb))
}

/// A `->…->>` chain over a raw json(b) column with constant steps.
fn json_path(node: &Node) -> Option<(usize, bool, Vec<super::json::Step>)> {
    let Node::JsonGet {
        as_text: true,
        mut arg,
        mut step,
        jsonb,
    } = node.clone()
    else {
        return None;
    };
    let mut path = Vec::new();
    loop {
        let s = match &step.as_const()?.value {
            Some(OwnedValue::Text(k)) => super::json::Step::Key(k.to_string()),
            Some(OwnedValue::Int(i)) => super::json::Step::Index(*i),
            _ => return None,
        };
        path.push(s);
        match *arg {
            Node::Column(read) if read.is_raw() => {
                path.reverse();
                return Some((read.index, jsonb, path));
            }
            Node::JsonGet {
                as_text: false,
                arg: inner,
                step: inner_step,
                ..
            } => {
                arg = inner;
                step = inner_step;
            }
            _ => return None,
        }
    }
}

/// The keys of the non-NULL elements of a row's array text (element key type `key_type`);
/// `None` when the text does not parse.
pub fn array_keys(key_type: KeyType, column_text: &str) -> Option<Vec<IndexKey>> {
    let raw = super::array::parse_raw(column_text)?;
    let mut out = Vec::with_capacity(raw.elems.len());
    for e in raw.elems.iter().flatten() {
        out.push(index_key(key_type, e)?);
    }
    Some(out)
}

/// Order-preserving image of an f64 (PG order: -0 = 0, NaN above everything).
fn float_range_key(f: f64) -> RangeKey {
    let f = if f == 0.0 { 0.0 } else { f };
    if f.is_nan() {
        return RangeKey::Num(i64::MAX);
    }
    let bits = i64::from_ne_bytes(f.to_bits().to_ne_bytes());
    let ordered = if bits < 0 { bits ^ i64::MAX } else { bits };
    // +Infinity's image is below i64::MAX, which is reserved for NaN.
    RangeKey::Num(ordered)
}

fn numeric_range_key(n: &super::values::NumOwned) -> RangeKey {
    use super::values::NumOwned;
    match n {
        NumOwned::NaN => float_range_key(f64::NAN),
        NumOwned::PosInf => float_range_key(f64::INFINITY),
        NumOwned::NegInf => float_range_key(f64::NEG_INFINITY),
        finite => float_range_key(finite.canonical_text().parse::<f64>().unwrap_or(f64::NAN)),
    }
}

/// The range key of a row value; `None` when the text does not parse, or the type has no
/// range keys.
pub fn range_key(key_type: KeyType, column_text: &str) -> Option<RangeKey> {
    let t = column_text;
    Some(match key_type {
        KeyType::Int => RangeKey::Num(parse_int(t, i64::MIN, i64::MAX)?),
        KeyType::Float4 => float_range_key(parse_float4(t)?),
        KeyType::Float8 => float_range_key(parse_float8(t)?),
        KeyType::Numeric => numeric_range_key(&parse_numeric(t)?.to_owned_num()),
        KeyType::Text => RangeKey::Text(t.to_owned()),
        KeyType::Bpchar => RangeKey::Text(strip_bpchar(t).to_owned()),
        KeyType::Date => RangeKey::Num(parse_date(t)?),
        KeyType::Time => RangeKey::Num(parse_time(t)?),
        KeyType::Timestamp => RangeKey::Num(parse_timestamp(t, false)?),
        KeyType::Timestamptz => RangeKey::Num(parse_timestamp(t, true)?),
        KeyType::Interval => interval_range_key(super::interval::parse_interval(t)?.span()),
        KeyType::Bytea => RangeKey::Text(parse_bytea(t)?.into_owned()),
        KeyType::Bool | KeyType::Uuid | KeyType::Enum => return None,
    })
}

fn const_range_key(c: &Const, cmp: CmpType) -> Option<RangeKey> {
    Some(match c.value.as_ref()? {
        OwnedValue::Int(i) => RangeKey::Num(*i),
        OwnedValue::Float(f) => float_range_key(*f),
        OwnedValue::Numeric(n) => numeric_range_key(n),
        OwnedValue::Text(t) if cmp == CmpType::Bpchar => RangeKey::Text(strip_bpchar(t).to_owned()),
        OwnedValue::Text(t) => RangeKey::Text(t.to_string()),
        OwnedValue::Date(d) => RangeKey::Num(*d),
        OwnedValue::Time(t) => RangeKey::Num(*t),
        OwnedValue::Timestamp(t) => RangeKey::Num(*t),
        OwnedValue::Interval(v) => interval_range_key(v.span()),
        OwnedValue::Bytea(h) => RangeKey::Text(h.to_string()),
        _ => return None,
    })
}

/// Spans beyond i64 saturate: monotone, so inclusive bounds still never miss.
fn interval_range_key(span: i128) -> RangeKey {
    RangeKey::Num(i64::try_from(span).unwrap_or(if span < 0 { i64::MIN } else { i64::MAX - 1 }))
}

fn float_key(f: f64) -> IndexKey {
    let canonical = if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    };
    IndexKey::Float(canonical.to_bits())
}

/// Canonical key of a row value; `None` when the text does not parse (possible match).
pub fn index_key(key_type: KeyType, column_text: &str) -> Option<IndexKey> {
    let t = column_text;
    Some(match key_type {
        KeyType::Int => IndexKey::Int(parse_int(t, i64::MIN, i64::MAX)?),
        KeyType::Float4 => float_key(parse_float4(t)?),
        KeyType::Float8 => float_key(parse_float8(t)?),
        KeyType::Numeric => IndexKey::Numeric(parse_numeric(t)?.to_owned_num().key()),
        KeyType::Text | KeyType::Enum => IndexKey::Text(t.to_owned()),
        KeyType::Bpchar => IndexKey::Text(strip_bpchar(t).to_owned()),
        KeyType::Bool => IndexKey::Bool(parse_bool(t)?),
        KeyType::Uuid => IndexKey::Uuid(parse_uuid(t)?),
        KeyType::Bytea => IndexKey::Bytea(parse_bytea(t)?.into_owned()),
        KeyType::Date => IndexKey::Date(parse_date(t)?),
        KeyType::Time => IndexKey::Time(parse_time(t)?),
        KeyType::Timestamp => IndexKey::Timestamp(parse_timestamp(t, false)?),
        KeyType::Timestamptz => IndexKey::Timestamp(parse_timestamp(t, true)?),
        KeyType::Interval => IndexKey::Interval(super::interval::parse_interval(t)?.span()),
    })
}

/// The key type matching a column read compared in `cmp`, if the read is a plain parse.
fn key_type(read: &ColumnRead, cmp: CmpType) -> Option<KeyType> {
    if read.post != Post::None {
        return None;
    }
    match (cmp, read.pre) {
        (CmpType::Bpchar, TextPre::Identity | TextPre::StripBlanks) => {
            return Some(KeyType::Bpchar);
        }
        (CmpType::Text, TextPre::StripBlanks) => return Some(KeyType::Bpchar),
        (CmpType::Text, TextPre::Identity) => return Some(KeyType::Text),
        (_, TextPre::Identity) => {}
        _ => return None,
    }
    scalar_key_type(&read.parse)
}

/// The key type of a scalar value parsed as `ty`, outside the text family.
pub(super) fn scalar_key_type(ty: &SqlType) -> Option<KeyType> {
    Some(match ty {
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => KeyType::Int,
        SqlType::Float4 => KeyType::Float4,
        SqlType::Float8 => KeyType::Float8,
        SqlType::Numeric => KeyType::Numeric,
        SqlType::Bool => KeyType::Bool,
        SqlType::Uuid => KeyType::Uuid,
        SqlType::Bytea => KeyType::Bytea,
        SqlType::Date => KeyType::Date,
        SqlType::Time => KeyType::Time,
        SqlType::Timestamp => KeyType::Timestamp,
        SqlType::Timestamptz => KeyType::Timestamptz,
        SqlType::Interval => KeyType::Interval,
        SqlType::Enum(_) => KeyType::Enum,
        _ => return None,
    })
}

/// The key of a constant in comparison type `cmp`; `None` for NULL.
fn const_key(c: &Const, cmp: CmpType) -> Option<IndexKey> {
    Some(match c.value.as_ref()? {
        OwnedValue::Int(i) => IndexKey::Int(*i),
        OwnedValue::Float(f) => float_key(*f),
        OwnedValue::Numeric(n) => IndexKey::Numeric(n.key()),
        OwnedValue::Text(t) if cmp == CmpType::Bpchar => IndexKey::Text(strip_bpchar(t).to_owned()),
        OwnedValue::Text(t) => IndexKey::Text(t.to_string()),
        OwnedValue::Bool(b) => IndexKey::Bool(*b),
        OwnedValue::Uuid(u) => IndexKey::Uuid(*u),
        OwnedValue::Bytea(h) => IndexKey::Bytea(h.to_string()),
        OwnedValue::Date(d) => IndexKey::Date(*d),
        OwnedValue::Time(t) => IndexKey::Time(*t),
        OwnedValue::Timestamp(t) => IndexKey::Timestamp(*t),
        v @ OwnedValue::Enum(_) => IndexKey::Text(v.canonical_text(&c.ty)),
        OwnedValue::Array(_) => return None,
        OwnedValue::Interval(v) => IndexKey::Interval(v.span()),
    })
}

/// The element key type of a raw read of an array column compared in `cmp`.
fn elem_key_type(read: &ColumnRead, cmp: CmpType) -> Option<KeyType> {
    if !read.is_raw() {
        return None;
    }
    let SqlType::Array(elem) = &read.parse else {
        return None;
    };
    match (cmp, elem.as_ref()) {
        (CmpType::Bpchar, SqlType::Bpchar) => Some(KeyType::Bpchar),
        (CmpType::Text, e) if e.is_string() && **elem != SqlType::Bpchar => Some(KeyType::Text),
        (CmpType::Text | CmpType::Bpchar, _) => None,
        (_, e) => scalar_key_type(e),
    }
}

/// The non-NULL element keys of a constant array; `None` if the array holds a NULL.
fn const_elem_keys(c: &Const, cmp: CmpType) -> Option<Vec<IndexKey>> {
    let Some(OwnedValue::Array(a)) = &c.value else {
        return Some(Vec::new());
    };
    let SqlType::Array(elem) = &c.ty else {
        return None;
    };
    let mut keys = Vec::with_capacity(a.elems.len());
    for e in &a.elems {
        let elem_const = Const {
            ty: (**elem).clone(),
            value: Some(e.clone()?),
        };
        let k = const_key(&elem_const, cmp)?;
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    Some(keys)
}

fn column_const<'a>(a: &'a Node, b: &'a Node) -> Option<(&'a ColumnRead, &'a Const)> {
    match (a, b) {
        (Node::Column(r), Node::Const(c)) | (Node::Const(c), Node::Column(r)) => Some((r, c)),
        _ => None,
    }
}

pub(super) fn entries(node: &Node) -> Option<Vec<IndexEntry>> {
    let mut found = collect(node)?;
    let mut seen = HashSet::new();
    found.retain(|e| seen.insert(e.clone()));
    Some(found)
}

fn collect(node: &Node) -> Option<Vec<IndexEntry>> {
    match node {
        // TRUE constrains nothing; FALSE/NULL never match, so no key is needed.
        Node::Const(c) => match c.value {
            Some(OwnedValue::Bool(true)) => None,
            _ => Some(Vec::new()),
        },
        Node::Cmp {
            op: CmpOp::Eq,
            cmp: CmpType::Text,
            left,
            right,
        } if matches!(
            (left.as_ref(), right.as_ref()),
            (Node::JsonGet { .. }, Node::Const(_)) | (Node::Const(_), Node::JsonGet { .. })
        ) =>
        {
            let (get, c) = match (left.as_ref(), right.as_ref()) {
                (g @ Node::JsonGet { .. }, Node::Const(c))
                | (Node::Const(c), g @ Node::JsonGet { .. }) => (g, c),
                _ => return None,
            };
            let (column, jsonb, path) = json_path(get)?;
            Some(match &c.value {
                Some(OwnedValue::Text(v)) => vec![IndexEntry {
                    column,
                    key_type: KeyType::Text,
                    cond: Condition::JsonPath {
                        jsonb,
                        path,
                        value: v.to_string(),
                    },
                }],
                _ => Vec::new(),
            })
        }
        Node::Cmp {
            op: super::eval::CmpOp::Eq,
            cmp,
            left,
            right,
        } => {
            let (read, c) = column_const(left, right)?;
            let key_type = key_type(read, *cmp)?;
            // A NULL constant makes `=` NULL: never matches.
            Some(
                const_key(c, *cmp)
                    .map(|key| IndexEntry {
                        column: read.index,
                        key_type,
                        cond: Condition::Eq(key),
                    })
                    .into_iter()
                    .collect(),
            )
        }
        Node::Cmp {
            op,
            cmp,
            left,
            right,
        } if op.is_ordering() => {
            let (read, c) = column_const(left, right)?;
            let key_type = key_type(read, *cmp)?;
            let Some(key) = const_range_key(c, *cmp) else {
                // NULL constant: never TRUE. Other types: not indexable.
                return c.value.is_none().then(Vec::new);
            };
            // `col op c`, or `c op col` (mirrored).
            let column_on_left = matches!(left.as_ref(), Node::Column(_));
            let lower_bound = matches!(
                (op, column_on_left),
                (CmpOp::Gt | CmpOp::Ge, true) | (CmpOp::Lt | CmpOp::Le, false)
            );
            let (lo, hi) = if lower_bound {
                (key, RangeKey::Max)
            } else {
                (RangeKey::Min, key)
            };
            Some(vec![IndexEntry {
                column: read.index,
                key_type,
                cond: Condition::Range { lo, hi },
            }])
        }
        Node::Like {
            negated: false,
            case_insensitive,
            text,
            pattern,
        } => {
            let Node::Column(read) = text.as_ref() else {
                return None;
            };
            if read.pre != TextPre::Identity || read.post != Post::None || !read.parse.is_string() {
                return None;
            }
            let Some(OwnedValue::Text(p)) = &pattern.as_const()?.value else {
                return pattern.as_const()?.value.is_none().then(Vec::new);
            };
            let prefix = like_prefix(p);
            let cond = if !*case_insensitive && !prefix.is_empty() {
                Condition::Prefix(prefix)
            } else {
                let fragment = like_longest_fragment(p);
                if fragment.is_empty() {
                    return None;
                }
                Condition::Substring {
                    // Folded once here so equal fragments share one automaton pattern.
                    fragment: if *case_insensitive {
                        fragment.to_ascii_lowercase()
                    } else {
                        fragment
                    },
                    case_insensitive: *case_insensitive,
                }
            };
            Some(vec![IndexEntry {
                column: read.index,
                key_type: KeyType::Text,
                cond,
            }])
        }
        // `col LIKE ANY (patterns)`: some pattern matched, so the text starts with that
        // pattern's literal prefix; `LIKE ALL`: every pattern matched, one prefix suffices.
        Node::LikeAnyAll {
            negated: false,
            case_insensitive: false,
            all,
            text,
            array,
        } => {
            let Node::Column(read) = text.as_ref() else {
                return None;
            };
            if read.pre != TextPre::Identity || read.post != Post::None || !read.parse.is_string() {
                return None;
            }
            let c = array.as_const()?;
            let Some(OwnedValue::Array(a)) = &c.value else {
                // NULL array: never TRUE.
                return Some(Vec::new());
            };
            if a.elems.is_empty() {
                // ANY of nothing is FALSE; ALL of nothing is TRUE (even for NULL text).
                return if *all { None } else { Some(Vec::new()) };
            }
            let mut prefixes = Vec::new();
            for e in a.elems.iter().flatten() {
                let OwnedValue::Text(p) = e else {
                    return None;
                };
                prefixes.push(like_prefix(p));
            }
            if *all {
                // A NULL element makes ALL at best NULL; otherwise the longest prefix.
                if prefixes.len() < a.elems.len() {
                    return Some(Vec::new());
                }
                prefixes.sort_by_key(String::len);
                prefixes = prefixes.pop().into_iter().collect();
            }
            if prefixes.iter().any(String::is_empty) {
                return None;
            }
            Some(
                prefixes
                    .into_iter()
                    .map(|prefix| IndexEntry {
                        column: read.index,
                        key_type: KeyType::Text,
                        cond: Condition::Prefix(prefix),
                    })
                    .collect(),
            )
        }
        Node::IsNull {
            negated: false,
            arg,
        } => match arg.as_ref() {
            Node::Column(read) => Some(vec![IndexEntry {
                column: read.index,
                key_type: KeyType::Text,
                cond: Condition::IsNull,
            }]),
            _ => None,
        },
        Node::In { cmp, lhs, items } => {
            let Node::Column(read) = lhs.as_ref() else {
                return None;
            };
            let key_type = key_type(read, *cmp)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // NULL items can only make the result NULL, never TRUE.
                if let Some(key) = const_key(item.as_const()?, *cmp) {
                    out.push(IndexEntry {
                        column: read.index,
                        key_type,
                        cond: Condition::Eq(key),
                    });
                }
            }
            Some(out)
        }
        // `c = ANY(array_col)`: the array must contain `c`.
        Node::AnyAll {
            op: CmpOp::Eq,
            cmp,
            all: false,
            lhs,
            array,
            elem_convert: None,
        } => match (lhs.as_ref(), array.as_ref()) {
            (Node::Const(c), Node::Column(read)) => {
                let key_type = elem_key_type(read, *cmp)?;
                Some(match const_key(c, *cmp) {
                    Some(key) => vec![IndexEntry {
                        column: read.index,
                        key_type,
                        cond: Condition::Contains(vec![key]),
                    }],
                    None => Vec::new(),
                })
            }
            // `col = ANY(const_array)`: an IN list.
            (Node::Column(read), Node::Const(c)) => {
                let key_type = key_type(read, *cmp)?;
                let Some(OwnedValue::Array(a)) = &c.value else {
                    return Some(Vec::new());
                };
                let SqlType::Array(elem) = &c.ty else {
                    return None;
                };
                let mut out = Vec::new();
                for e in a.elems.iter().flatten() {
                    let elem_const = Const {
                        ty: (**elem).clone(),
                        value: Some(e.clone()),
                    };
                    out.push(IndexEntry {
                        column: read.index,
                        key_type,
                        cond: Condition::Eq(const_key(&elem_const, *cmp)?),
                    });
                }
                Some(out)
            }
            _ => None,
        },
        // `col @> const`, `const <@ col`, `col && const`.
        Node::ArrayPred {
            op,
            cmp,
            left,
            right,
        } => {
            let (read, c, col_left) = match (left.as_ref(), right.as_ref()) {
                (Node::Column(r), Node::Const(c)) => (r, c, true),
                (Node::Const(c), Node::Column(r)) => (r, c, false),
                _ => return None,
            };
            let key_type = elem_key_type(read, *cmp)?;
            let contains = matches!(
                (op, col_left),
                (ArrayPredOp::Contains, true) | (ArrayPredOp::ContainedBy, false)
            );
            if contains {
                let Some(keys) = const_elem_keys(c, *cmp) else {
                    // A NULL element is never contained.
                    return Some(Vec::new());
                };
                if keys.is_empty() {
                    // NULL constant: never TRUE; empty array: TRUE for every non-NULL row.
                    return c.value.is_none().then(Vec::new);
                }
                return Some(vec![IndexEntry {
                    column: read.index,
                    key_type,
                    cond: Condition::Contains(keys),
                }]);
            }
            if *op != ArrayPredOp::Overlaps {
                return None;
            }
            // Overlap: the row holds one of the constant's non-NULL elements.
            let Some(OwnedValue::Array(a)) = &c.value else {
                return Some(Vec::new());
            };
            let SqlType::Array(elem) = &c.ty else {
                return None;
            };
            let mut out = Vec::new();
            for e in a.elems.iter().flatten() {
                let elem_const = Const {
                    ty: (**elem).clone(),
                    value: Some(e.clone()),
                };
                out.push(IndexEntry {
                    column: read.index,
                    key_type,
                    cond: Condition::Contains(vec![const_key(&elem_const, *cmp)?]),
                });
            }
            Some(out)
        }
        Node::And(args) => {
            let found: Vec<Vec<IndexEntry>> = args.iter().filter_map(collect).collect();
            // Prefer equality (hash lookups) over ranges and prefixes, those over substrings
            // (least selective, and a scan of the value), then fewer entries.
            let rank = |es: &Vec<IndexEntry>| {
                let class = es
                    .iter()
                    .map(|e| match e.cond {
                        Condition::Eq(_) => 0,
                        Condition::Substring { .. } => 2,
                        _ => 1,
                    })
                    .max()
                    .unwrap_or(0);
                (class, es.len())
            };
            let best = found.iter().min_by_key(|es| rank(es))?.clone();
            Some(intersect_ranges(best, &found))
        }
        Node::Or(args) => {
            let mut out = Vec::new();
            for arg in args {
                out.extend(collect(arg)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Narrows a single range entry by the other single-range conditions of an AND on the same
/// column and key type (`x >= a AND x <= b` becomes one interval).
fn intersect_ranges(best: Vec<IndexEntry>, siblings: &[Vec<IndexEntry>]) -> Vec<IndexEntry> {
    let [entry] = best.as_slice() else {
        return best;
    };
    let Condition::Range { lo, hi } = &entry.cond else {
        return best;
    };
    let (mut lo, mut hi) = (lo.clone(), hi.clone());
    for sibling in siblings {
        if let [
            IndexEntry {
                column,
                key_type,
                cond: Condition::Range { lo: l, hi: h },
            },
        ] = sibling.as_slice()
            && *column == entry.column
            && *key_type == entry.key_type
        {
            lo = lo.max(l.clone());
            hi = hi.min(h.clone());
        }
    }
    if lo > hi {
        // Contradictory bounds: the AND can never be TRUE.
        return Vec::new();
    }
    vec![IndexEntry {
        column: entry.column,
        key_type: entry.key_type,
        cond: Condition::Range { lo, hi },
    }]
}

/// The longest run of literal characters in a LIKE pattern (between wildcards, escapes
/// resolved): every match contains it.
fn like_longest_fragment(pattern: &str) -> String {
    let mut best = String::new();
    let mut cur = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => {
                if cur.len() > best.len() {
                    best = std::mem::take(&mut cur);
                } else {
                    cur.clear();
                }
            }
            '\\' => match chars.next() {
                Some(escaped) => cur.push(escaped),
                None => break,
            },
            c => cur.push(c),
        }
    }
    if cur.len() > best.len() { cur } else { best }
}

/// The literal text every match of a LIKE pattern starts with (up to the first wildcard).
fn like_prefix(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => break,
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}
