//! Routing keys: the equality conditions a router can index a shape under.
//!
//! Invariant (the router's safety): [`entries`] returns a *necessary* condition. If the
//! clause is TRUE for a row, then for at least one entry `e`,
//! `index_key(e.key_type, row[e.column]) == Some(e.key)`. It may over-approximate, never miss.
//!
//! This holds because an entry is only produced for `column = constant` (or `IN`) where the
//! column read is a plain parse of the row text (`KeyType` says which parse), and keys are
//! canonical in the comparison type: two values compare equal under PG's `=` iff their keys
//! are equal (float -0 = 0 and one NaN, numeric without trailing zeros, timestamptz as UTC
//! µs, uuid as bytes, bpchar without trailing blanks). A value that does not parse has no
//! key; the router must then treat the row as a possible match.

use std::collections::HashSet;

use super::eval::{ColumnRead, Const, Node, Post, TextPre};
use super::types::{CmpType, SqlType};
use super::values::{
    OwnedValue, parse_bool, parse_date, parse_float4, parse_float8, parse_int, parse_numeric,
    parse_time, parse_timestamp, parse_uuid, strip_bpchar,
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
    Date,
    Time,
    Timestamp,
    Timestamptz,
    /// Enum label, compared as its text.
    Enum,
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
    /// Days since 2000-01-01 (±infinity at the extremes).
    Date(i64),
    /// µs since midnight.
    Time(i64),
    /// µs since 2000-01-01 (UTC for timestamptz).
    Timestamp(i64),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IndexEntry {
    pub column: usize,
    pub key_type: KeyType,
    pub key: IndexKey,
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
        KeyType::Date => IndexKey::Date(parse_date(t)?),
        KeyType::Time => IndexKey::Time(parse_time(t)?),
        KeyType::Timestamp => IndexKey::Timestamp(parse_timestamp(t, false)?),
        KeyType::Timestamptz => IndexKey::Timestamp(parse_timestamp(t, true)?),
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
    Some(match read.parse {
        SqlType::Int2 | SqlType::Int4 | SqlType::Int8 => KeyType::Int,
        SqlType::Float4 => KeyType::Float4,
        SqlType::Float8 => KeyType::Float8,
        SqlType::Numeric => KeyType::Numeric,
        SqlType::Bool => KeyType::Bool,
        SqlType::Uuid => KeyType::Uuid,
        SqlType::Date => KeyType::Date,
        SqlType::Time => KeyType::Time,
        SqlType::Timestamp => KeyType::Timestamp,
        SqlType::Timestamptz => KeyType::Timestamptz,
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
        OwnedValue::Date(d) => IndexKey::Date(*d),
        OwnedValue::Time(t) => IndexKey::Time(*t),
        OwnedValue::Timestamp(t) => IndexKey::Timestamp(*t),
        v @ OwnedValue::Enum(_) => IndexKey::Text(v.canonical_text(&c.ty)),
    })
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
                        key,
                    })
                    .into_iter()
                    .collect(),
            )
        }
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
                        key,
                    });
                }
            }
            Some(out)
        }
        Node::And(args) => args.iter().filter_map(collect).min_by_key(Vec::len),
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
