//! The compiled expression tree and its three-valued evaluation over PG text rows.
//!
//! Invariants:
//! * The tree is fully typed: every operator node carries the comparison family chosen at
//!   compile time, and every column read says exactly how the row text becomes a value
//!   (casts applied to a column are fused into its read, see [`ColumnRead`]).
//! * Evaluation follows PG's three-valued logic: strict operators give NULL on a NULL input;
//!   AND/OR short-circuit left to right like PG's executor; `IN` is an OR of `=`.
//! * Comparisons and column reads do not allocate: row text is borrowed. Only computed
//!   values (numeric arithmetic, `lower`/`upper`, `||`, `concat`) allocate.
//! * Evaluation errors are PG's runtime errors (overflow, division by zero, bad input): the
//!   row is then not included.
//! * Tree depth is bounded by the parser, so the recursion here is bounded too.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::arith::{self, ArithOp, NumKind};
use super::array::{self, ArrayVal};
use super::interval;
use super::json;
use super::like;
use super::types::{CmpType, SqlType};
use super::values::{OwnedValue, Value, parse_as, parse_bool};

/// Why a row could not be evaluated (PG would have raised an error); the row is then
/// treated as not included. Messages never contain row values.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum EvalError {
    #[error("column {column}: value is not valid input for type {type_name}")]
    Decode { column: usize, type_name: String },
    #[error("column {column} is missing from the row")]
    MissingColumn { column: usize },
    #[error("LIKE pattern must not end with escape character")]
    LikeEscape,
    #[error("internal error: operands of different types")]
    TypeMismatch,
    #[error("{type_name} out of range")]
    OutOfRange { type_name: &'static str },
    #[error("division by zero")]
    DivisionByZero,
    #[error("value out of range: overflow")]
    FloatOverflow,
    #[error("value out of range: underflow")]
    FloatUnderflow,
    #[error("value overflows numeric format")]
    NumericOverflow,
    #[error("{0}")]
    Message(&'static str),
}

/// A text transformation applied to the raw column text before its input function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextPre {
    Identity,
    /// bpchar → text: PG's cast removes trailing blanks.
    StripBlanks,
    /// bool → text: PG's cast gives `true`/`false`, not the `t`/`f` output form.
    BoolWord,
}

/// A value conversion applied after the input function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Post {
    None,
    BoolToInt,
    IntToBool,
}

/// How one column's row text becomes a value: `post(parse_as(parse, pre(text)))`.
///
/// Casts on a column are fused into this read when they are *reparses*: the cast's result
/// equals parsing the text with the target type's input function (int text read as numeric,
/// numeric text read as float8 — PG's numeric→float8 goes through text too —, date text read
/// as timestamp, any output text read as text, …). `parse.rs` only builds reads for which
/// that holds.
#[derive(Clone, Debug)]
pub(super) struct ColumnRead {
    pub index: usize,
    pub pre: TextPre,
    pub parse: SqlType,
    pub post: Post,
    /// Type of the value produced.
    pub ty: SqlType,
    /// Whether `pre(text)` is the PG output text of the produced value (so a further cast
    /// to text, or a further reparse, is exact).
    pub text_is_output: bool,
    /// Cast targets applied to the column, for the SQL rendering.
    pub casts: Vec<SqlType>,
}

impl ColumnRead {
    pub fn raw(index: usize, column_type: SqlType) -> ColumnRead {
        ColumnRead {
            index,
            pre: TextPre::Identity,
            parse: column_type.clone(),
            post: Post::None,
            ty: column_type,
            text_is_output: true,
            casts: Vec::new(),
        }
    }

    pub fn is_raw(&self) -> bool {
        self.casts.is_empty()
    }

    fn read<'a>(&'a self, row: &[Option<&'a str>]) -> Result<Value<'a>, EvalError> {
        let Some(cell) = row.get(self.index) else {
            return Err(EvalError::MissingColumn { column: self.index });
        };
        let Some(raw) = *cell else {
            return Ok(Value::Null);
        };
        let text = match self.pre {
            TextPre::Identity => raw,
            TextPre::StripBlanks => raw.trim_end_matches(' '),
            TextPre::BoolWord => match parse_bool(raw) {
                Some(true) => "true",
                Some(false) => "false",
                None => return Err(self.decode_error()),
            },
        };
        let value = parse_as(&self.parse, text).ok_or_else(|| self.decode_error())?;
        Ok(match (self.post, value) {
            (Post::None, v) => v,
            (Post::BoolToInt, Value::Bool(b)) => Value::Int(i64::from(b)),
            (Post::IntToBool, Value::Int(i)) => Value::Bool(i != 0),
            _ => return Err(EvalError::TypeMismatch),
        })
    }

    fn decode_error(&self) -> EvalError {
        EvalError::Decode {
            column: self.index,
            type_name: self.parse.pg_name(),
        }
    }
}

/// A typed constant; `value: None` is a typed NULL.
#[derive(Clone, Debug)]
pub(super) struct Const {
    pub ty: SqlType,
    pub value: Option<OwnedValue>,
}

impl Const {
    pub fn null(ty: SqlType) -> Const {
        Const { ty, value: None }
    }
    pub fn bool(b: Option<bool>) -> Const {
        Const {
            ty: SqlType::Bool,
            value: b.map(OwnedValue::Bool),
        }
    }
    fn value(&self) -> Value<'_> {
        self.value
            .as_ref()
            .map_or(Value::Null, OwnedValue::as_value)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

/// `@>`, `<@`, `&&`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArrayPredOp {
    Contains,
    ContainedBy,
    Overlaps,
}

impl ArrayPredOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArrayPredOp::Contains => "@>",
            ArrayPredOp::ContainedBy => "<@",
            ArrayPredOp::Overlaps => "&&",
        }
    }
}

/// The `||` family on arrays (non-strict: a NULL operand is a no-op).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CatKind {
    /// array || array (`array_cat`).
    Cat,
    /// array || element (`array_append`).
    Append,
    /// element || array (`array_prepend`).
    Prepend,
}

/// jsonb `@>`, `<@`, `?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JsonPredOp {
    Contains,
    ContainedBy,
    Exists,
}

impl JsonPredOp {
    pub fn symbol(self) -> &'static str {
        match self {
            JsonPredOp::Contains => "@>",
            JsonPredOp::ContainedBy => "<@",
            JsonPredOp::Exists => "?",
        }
    }
}

/// Date/time arithmetic of the catalogue, by operand types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DateOp {
    DatePlusInt,
    IntPlusDate,
    DateMinusInt,
    DateMinusDate,
    DatePlusTime,
    TimePlusDate,
    /// timestamp or timestamptz ± interval.
    TsPlusInterval,
    IntervalPlusTs,
    TsMinusInterval,
    TsMinusTs,
    TimePlusInterval,
    IntervalPlusTime,
    TimeMinusInterval,
    TimeMinusTime,
    IntervalPlus,
    IntervalMinus,
    /// `interval * float8`.
    IntervalMulFloat,
    /// `float8 * interval`.
    FloatMulInterval,
    /// `interval / float8`.
    IntervalDivFloat,
}

impl DateOp {
    pub fn symbol(self) -> &'static str {
        match self {
            DateOp::DateMinusInt
            | DateOp::DateMinusDate
            | DateOp::TsMinusInterval
            | DateOp::TsMinusTs
            | DateOp::TimeMinusInterval
            | DateOp::TimeMinusTime
            | DateOp::IntervalMinus => "-",
            DateOp::IntervalMulFloat | DateOp::FloatMulInterval => "*",
            DateOp::IntervalDivFloat => "/",
            _ => "+",
        }
    }
}

/// `justify_hours`, `justify_days`, `justify_interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Justify {
    Hours,
    Days,
    Interval,
}

impl Justify {
    pub fn name(self) -> &'static str {
        match self {
            Justify::Hours => "justify_hours",
            Justify::Days => "justify_days",
            Justify::Interval => "justify_interval",
        }
    }
}

/// `IS [NOT] TRUE/FALSE/UNKNOWN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BoolTest {
    True,
    NotTrue,
    False,
    NotFalse,
    Unknown,
    NotUnknown,
}

impl BoolTest {
    pub fn sql(self) -> &'static str {
        match self {
            BoolTest::True => "IS TRUE",
            BoolTest::NotTrue => "IS NOT TRUE",
            BoolTest::False => "IS FALSE",
            BoolTest::NotFalse => "IS NOT FALSE",
            BoolTest::Unknown => "IS UNKNOWN",
            BoolTest::NotUnknown => "IS NOT UNKNOWN",
        }
    }
    fn test(self, v: Option<bool>) -> bool {
        match self {
            BoolTest::True => v == Some(true),
            BoolTest::NotTrue => v != Some(true),
            BoolTest::False => v == Some(false),
            BoolTest::NotFalse => v != Some(false),
            BoolTest::Unknown => v.is_none(),
            BoolTest::NotUnknown => v.is_some(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Node {
    Const(Const),
    Column(ColumnRead),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Cmp {
        op: CmpOp,
        cmp: CmpType,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `IS [NOT] DISTINCT FROM` (`negated` = `IS NOT DISTINCT FROM`).
    Distinct {
        negated: bool,
        cmp: CmpType,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `lhs IN (items)`; `NOT IN` is `Not(In)`. Every item is compared in `cmp`.
    In {
        cmp: CmpType,
        lhs: Box<Node>,
        items: Vec<Node>,
    },
    IsNull {
        negated: bool,
        arg: Box<Node>,
    },
    BoolTest {
        test: BoolTest,
        arg: Box<Node>,
    },
    Like {
        negated: bool,
        case_insensitive: bool,
        text: Box<Node>,
        pattern: Box<Node>,
    },
    /// Binary arithmetic; both operands have type `kind`, and so has the result.
    Arith {
        op: ArithOp,
        kind: NumKind,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// Unary minus.
    Neg {
        kind: NumKind,
        arg: Box<Node>,
    },
    /// `|/ x` on float8.
    Sqrt(Box<Node>),
    /// `@ x` in `kind`.
    Abs {
        kind: NumKind,
        arg: Box<Node>,
    },
    /// Bitwise NOT (`~`).
    BitNot {
        kind: NumKind,
        arg: Box<Node>,
    },
    /// A numeric-ladder cast of a computed value (column casts are fused into the read).
    Convert {
        from: NumKind,
        to: NumKind,
        arg: Box<Node>,
    },
    /// date → timestamp (midnight) of a computed value.
    DateToTimestamp(Box<Node>),
    /// `text || text` or `bytea || bytea` (strict).
    TextCat {
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `coalesce(...)`: first non-NULL argument, later ones not evaluated.
    Coalesce(Vec<Node>),
    /// `greatest(...)` / `least(...)`: NULLs ignored.
    Extreme {
        greatest: bool,
        cmp: CmpType,
        args: Vec<Node>,
    },
    /// `concat(...)`: NULLs skipped.
    Concat(Vec<Node>),
    /// `lower`/`upper` under the "C" collation (ASCII letters only; the SQL pins it).
    CaseMap {
        upper: bool,
        arg: Box<Node>,
    },
    /// `lhs op ANY (array)` / `ALL`; elements are converted by `elem_convert` (PG's
    /// array coercion), then compared with `lhs` in `cmp`.
    AnyAll {
        op: CmpOp,
        cmp: CmpType,
        all: bool,
        lhs: Box<Node>,
        array: Box<Node>,
        elem_convert: Option<(NumKind, NumKind)>,
    },
    /// `text [NOT] [I]LIKE ANY/ALL (array of patterns)`; `negated` applies per element.
    LikeAnyAll {
        negated: bool,
        case_insensitive: bool,
        all: bool,
        text: Box<Node>,
        array: Box<Node>,
    },
    /// `@>`, `<@`, `&&`; elements compared in `cmp`.
    ArrayPred {
        op: ArrayPredOp,
        cmp: CmpType,
        left: Box<Node>,
        right: Box<Node>,
    },
    ArrayCat {
        kind: CatKind,
        left: Box<Node>,
        right: Box<Node>,
    },
    ArrayNdims(Box<Node>),
    /// `a[i]…` (`slice: false`, `upper` holds the indexes) or `a[lo:hi]…`.
    Subscript {
        arg: Box<Node>,
        slice: bool,
        lower: Vec<Option<Node>>,
        upper: Vec<Option<Node>>,
    },
    /// Date/time arithmetic (strict).
    DateArith {
        op: DateOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    Justify {
        kind: Justify,
        arg: Box<Node>,
    },
    /// `arg AT TIME ZONE zone`: timestamptz → local timestamp (`to_local`) or timestamp →
    /// timestamptz. `zone_sql` is the constant printed in the SQL (text or interval).
    AtTimeZone {
        zone: super::tz::TimeZone,
        zone_sql: Const,
        to_local: bool,
        arg: Box<Node>,
    },
    /// Unary minus on an interval (`interval_um`).
    IntervalNeg(Box<Node>),
    /// `json(b) -> step` / `->>` (`step` is text or int4).
    JsonGet {
        jsonb: bool,
        as_text: bool,
        arg: Box<Node>,
        step: Box<Node>,
    },
    /// `json(b) #> path` / `#>>` (`path` is a text[]).
    JsonPath {
        jsonb: bool,
        as_text: bool,
        arg: Box<Node>,
        path: Box<Node>,
    },
    JsonPred {
        op: JsonPredOp,
        left: Box<Node>,
        right: Box<Node>,
    },
    /// `ARRAY[…]`: of scalars (`nested: false`) or of arrays (one more dimension).
    ArrayCtor {
        nested: bool,
        elems: Vec<Node>,
    },
    /// `lhs IN (SELECT …)`, looked up in the subquery's materialised set.
    InSubquery(Box<super::subquery::SubLink>),
}

fn date_arith(op: DateOp, l: &Value<'_>, r: &Value<'_>) -> Result<Value<'static>, EvalError> {
    use Value as V;
    Ok(match (op, l, r) {
        (DateOp::DatePlusInt, V::Date(d), V::Int(n))
        | (DateOp::IntPlusDate, V::Int(n), V::Date(d)) => V::Date(interval::date_plus(*d, *n)?),
        (DateOp::DateMinusInt, V::Date(d), V::Int(n)) => V::Date(interval::date_plus(*d, -*n)?),
        (DateOp::DateMinusDate, V::Date(a), V::Date(b)) => {
            V::Int(interval::date_minus_date(*a, *b)?)
        }
        (DateOp::DatePlusTime, V::Date(d), V::Time(t))
        | (DateOp::TimePlusDate, V::Time(t), V::Date(d)) => {
            V::Timestamp(interval::date_plus_time(*d, *t)?)
        }
        (DateOp::TsPlusInterval, V::Timestamp(t), V::Interval(v))
        | (DateOp::IntervalPlusTs, V::Interval(v), V::Timestamp(t)) => {
            V::Timestamp(interval::ts_plus(*t, *v, false)?)
        }
        (DateOp::TsMinusInterval, V::Timestamp(t), V::Interval(v)) => {
            V::Timestamp(interval::ts_plus(*t, *v, true)?)
        }
        (DateOp::TsMinusTs, V::Timestamp(a), V::Timestamp(b)) => {
            V::Interval(interval::ts_minus_ts(*a, *b)?)
        }
        (DateOp::TimePlusInterval, V::Time(t), V::Interval(v))
        | (DateOp::IntervalPlusTime, V::Interval(v), V::Time(t)) => {
            V::Time(interval::time_plus(*t, *v, false))
        }
        (DateOp::TimeMinusInterval, V::Time(t), V::Interval(v)) => {
            V::Time(interval::time_plus(*t, *v, true))
        }
        (DateOp::TimeMinusTime, V::Time(a), V::Time(b)) => V::Interval(interval::Interval {
            months: 0,
            days: 0,
            micros: a - b,
        }),
        (DateOp::IntervalPlus, V::Interval(a), V::Interval(b)) => {
            V::Interval(interval::add(*a, *b, false)?)
        }
        (DateOp::IntervalMinus, V::Interval(a), V::Interval(b)) => {
            V::Interval(interval::add(*a, *b, true)?)
        }
        (DateOp::IntervalMulFloat, V::Interval(v), V::Float(f))
        | (DateOp::FloatMulInterval, V::Float(f), V::Interval(v)) => {
            V::Interval(interval::scale(*v, *f, false)?)
        }
        (DateOp::IntervalDivFloat, V::Interval(v), V::Float(f)) => {
            V::Interval(interval::scale(*v, *f, true)?)
        }
        _ => return Err(EvalError::TypeMismatch),
    })
}

fn as_array(v: Value<'_>) -> Result<Option<ArrayVal>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Array(a) => Ok(Some(a.into_owned())),
        _ => Err(EvalError::TypeMismatch),
    }
}

fn array_value(a: Option<ArrayVal>) -> Value<'static> {
    a.map_or(Value::Null, |a| Value::Array(Cow::Owned(a)))
}

fn as_index(v: Value<'_>) -> Result<Option<i64>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) => Ok(Some(i)),
        _ => Err(EvalError::TypeMismatch),
    }
}

fn as_bool(v: Value<'_>) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Bool(b) => Ok(Some(b)),
        Value::Null => Ok(None),
        _ => Err(EvalError::TypeMismatch),
    }
}

fn bool_value(b: Option<bool>) -> Value<'static> {
    b.map_or(Value::Null, Value::Bool)
}

impl Node {
    pub fn eval_bool(&self, row: &[Option<&str>]) -> Result<Option<bool>, EvalError> {
        as_bool(self.eval(row)?)
    }

    pub fn eval<'a>(&'a self, row: &[Option<&'a str>]) -> Result<Value<'a>, EvalError> {
        Ok(match self {
            Node::Const(c) => c.value(),
            Node::Column(read) => read.read(row)?,
            Node::Not(arg) => bool_value(as_bool(arg.eval(row)?)?.map(|b| !b)),
            Node::And(args) => {
                let mut saw_null = false;
                for arg in args {
                    match as_bool(arg.eval(row)?)? {
                        Some(false) => return Ok(Value::Bool(false)),
                        None => saw_null = true,
                        Some(true) => {}
                    }
                }
                bool_value((!saw_null).then_some(true))
            }
            Node::Or(args) => {
                let mut saw_null = false;
                for arg in args {
                    match as_bool(arg.eval(row)?)? {
                        Some(true) => return Ok(Value::Bool(true)),
                        None => saw_null = true,
                        Some(false) => {}
                    }
                }
                bool_value((!saw_null).then_some(false))
            }
            Node::Cmp {
                op,
                cmp,
                left,
                right,
            } => {
                // PG evaluates every argument of a strict operator before its NULL check,
                // so an error on the right is raised even when the left is NULL.
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                if matches!(l, Value::Null) || matches!(r, Value::Null) {
                    return Ok(Value::Null);
                }
                let o = super::values::compare(&l, &r, *cmp).ok_or(EvalError::TypeMismatch)?;
                Value::Bool(op.test(o))
            }
            Node::Distinct {
                negated,
                cmp,
                left,
                right,
            } => {
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                let distinct = match (&l, &r) {
                    (Value::Null, Value::Null) => false,
                    (Value::Null, _) | (_, Value::Null) => true,
                    _ => {
                        super::values::compare(&l, &r, *cmp).ok_or(EvalError::TypeMismatch)?
                            != Ordering::Equal
                    }
                };
                Value::Bool(distinct != *negated)
            }
            Node::In { cmp, lhs, items } => {
                let l = lhs.eval(row)?;
                if matches!(l, Value::Null) {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in items {
                    let r = item.eval(row)?;
                    if matches!(r, Value::Null) {
                        saw_null = true;
                    } else if super::values::compare(&l, &r, *cmp).ok_or(EvalError::TypeMismatch)?
                        == Ordering::Equal
                    {
                        return Ok(Value::Bool(true));
                    }
                }
                bool_value((!saw_null).then_some(false))
            }
            Node::IsNull { negated, arg } => {
                let is_null = match arg.as_ref() {
                    // IS NULL needs no decoding, so it works on any column type.
                    Node::Column(read) if read.is_raw() => match row.get(read.index) {
                        Some(cell) => cell.is_none(),
                        None => return Err(EvalError::MissingColumn { column: read.index }),
                    },
                    other => matches!(other.eval(row)?, Value::Null),
                };
                Value::Bool(is_null != *negated)
            }
            Node::BoolTest { test, arg } => Value::Bool(test.test(as_bool(arg.eval(row)?)?)),
            Node::Like {
                negated,
                case_insensitive,
                text,
                pattern,
            } => {
                let t = text.eval(row)?;
                let p = pattern.eval(row)?;
                match (t, p) {
                    (Value::Null, _) | (_, Value::Null) => Value::Null,
                    (Value::Text(t), Value::Text(p)) => {
                        let m = like::like(&t, &p, *case_insensitive)
                            .map_err(|_| EvalError::LikeEscape)?;
                        Value::Bool(m != *negated)
                    }
                    _ => return Err(EvalError::TypeMismatch),
                }
            }
            Node::Arith {
                op,
                kind,
                left,
                right,
            } => {
                // PG evaluates every argument of a strict operator before its NULL check,
                // so an error on the right is raised even when the left is NULL.
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                if matches!(l, Value::Null) || matches!(r, Value::Null) {
                    return Ok(Value::Null);
                }
                arith::apply(*op, *kind, &l, &r)?
            }
            Node::Neg { kind, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                v => arith::negate(*kind, &v)?,
            },
            Node::Sqrt(arg) => match arg.eval(row)? {
                Value::Null => Value::Null,
                v => arith::sqrt(&v)?,
            },
            Node::Abs { kind, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                v => arith::abs(*kind, &v)?,
            },
            Node::BitNot { kind, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                v => arith::bit_not(*kind, &v)?,
            },
            Node::Convert { from, to, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                v => arith::convert(*from, *to, &v)?,
            },
            Node::DateToTimestamp(arg) => match arg.eval(row)? {
                Value::Null => Value::Null,
                Value::Date(d) => Value::Timestamp(super::values::date_to_timestamp(d)?),
                _ => return Err(EvalError::TypeMismatch),
            },
            Node::TextCat { left, right } => {
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                match (l, r) {
                    (Value::Null, _) | (_, Value::Null) => Value::Null,
                    (Value::Text(a), Value::Text(b)) => Value::Text(Cow::Owned(format!("{a}{b}"))),
                    (Value::Bytea(a), Value::Bytea(b)) => {
                        Value::Bytea(Cow::Owned(format!("{a}{b}")))
                    }
                    _ => return Err(EvalError::TypeMismatch),
                }
            }
            Node::Coalesce(args) => {
                for arg in args {
                    let v = arg.eval(row)?;
                    if !matches!(v, Value::Null) {
                        return Ok(v);
                    }
                }
                Value::Null
            }
            Node::Extreme {
                greatest,
                cmp,
                args,
            } => {
                let mut best = Value::Null;
                for arg in args {
                    let v = arg.eval(row)?;
                    if matches!(v, Value::Null) {
                        continue;
                    }
                    let better = match &best {
                        Value::Null => true,
                        b => {
                            let o = super::values::compare(&v, b, *cmp)
                                .ok_or(EvalError::TypeMismatch)?;
                            if *greatest {
                                o == Ordering::Greater
                            } else {
                                o == Ordering::Less
                            }
                        }
                    };
                    if better {
                        best = v;
                    }
                }
                best
            }
            Node::Concat(args) => {
                let mut out = String::new();
                for arg in args {
                    match arg.eval(row)? {
                        Value::Null => {}
                        Value::Text(t) => out.push_str(&t),
                        _ => return Err(EvalError::TypeMismatch),
                    }
                }
                Value::Text(Cow::Owned(out))
            }
            Node::CaseMap { upper, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                Value::Text(t) => Value::Text(Cow::Owned(if *upper {
                    t.to_ascii_uppercase()
                } else {
                    t.to_ascii_lowercase()
                })),
                _ => return Err(EvalError::TypeMismatch),
            },
            Node::AnyAll {
                op,
                cmp,
                all,
                lhs,
                array,
                elem_convert,
            } => {
                let l = lhs.eval(row)?;
                let Some(arr) = as_array(array.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                if arr.elems.is_empty() {
                    return Ok(Value::Bool(*all));
                }
                if matches!(l, Value::Null) {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for e in &arr.elems {
                    let Some(e) = e else {
                        saw_null = true;
                        continue;
                    };
                    let e = e.as_value();
                    let e = match elem_convert {
                        Some((from, to)) => arith::convert(*from, *to, &e)?,
                        None => e,
                    };
                    let o = super::values::compare(&l, &e, *cmp).ok_or(EvalError::TypeMismatch)?;
                    if op.test(o) != *all {
                        return Ok(Value::Bool(!*all));
                    }
                }
                bool_value((!saw_null).then_some(*all))
            }
            Node::LikeAnyAll {
                negated,
                case_insensitive,
                all,
                text,
                array,
            } => {
                // PG's ScalarArrayOpExpr: the empty array decides even for a NULL text;
                // elements are tried in order and the first decisive one ends the loop.
                let t = text.eval(row)?;
                let Some(arr) = as_array(array.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                if arr.elems.is_empty() {
                    return Ok(Value::Bool(*all));
                }
                let t = match t {
                    Value::Null => return Ok(Value::Null),
                    Value::Text(t) => t,
                    _ => return Err(EvalError::TypeMismatch),
                };
                let mut saw_null = false;
                for e in &arr.elems {
                    let p = match e {
                        None => {
                            saw_null = true;
                            continue;
                        }
                        Some(OwnedValue::Text(p)) => p,
                        Some(_) => return Err(EvalError::TypeMismatch),
                    };
                    let m =
                        like::like(&t, p, *case_insensitive).map_err(|_| EvalError::LikeEscape)?;
                    if (m != *negated) != *all {
                        return Ok(Value::Bool(!*all));
                    }
                }
                bool_value((!saw_null).then_some(*all))
            }
            Node::ArrayPred {
                op,
                cmp,
                left,
                right,
            } => {
                let Some(a) = as_array(left.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                let Some(b) = as_array(right.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                let r = match op {
                    ArrayPredOp::Contains => array::contains(&a, &b, *cmp),
                    ArrayPredOp::ContainedBy => array::contains(&b, &a, *cmp),
                    ArrayPredOp::Overlaps => array::overlaps(&a, &b, *cmp),
                };
                Value::Bool(r.ok_or(EvalError::TypeMismatch)?)
            }
            Node::ArrayCat { kind, left, right } => {
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                array_value(match kind {
                    CatKind::Cat => array::cat(as_array(l)?, as_array(r)?)?,
                    CatKind::Append => array::append(as_array(l)?, OwnedValue::from_value(r))?,
                    CatKind::Prepend => array::prepend(OwnedValue::from_value(l), as_array(r)?)?,
                })
            }
            Node::ArrayNdims(arg) => match as_array(arg.eval(row)?)? {
                Some(a) if a.ndims() > 0 => Value::Int(i64::try_from(a.ndims()).unwrap_or(0)),
                _ => Value::Null,
            },
            Node::Subscript {
                arg,
                slice,
                lower,
                upper,
            } => {
                let Some(a) = as_array(arg.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                let mut bounds = Vec::with_capacity(upper.len());
                for (lo, hi) in lower.iter().zip(upper) {
                    let get = |n: &Option<Node>| -> Result<Option<Option<i64>>, EvalError> {
                        match n {
                            None => Ok(Some(None)),
                            Some(n) => Ok(as_index(n.eval(row)?)?.map(Some)),
                        }
                    };
                    let (Some(lo), Some(hi)) = (get(lo)?, get(hi)?) else {
                        return Ok(Value::Null);
                    };
                    bounds.push((lo, hi));
                }
                if *slice {
                    Value::Array(Cow::Owned(array::slice(&a, &bounds)))
                } else {
                    let subs: Vec<i64> = bounds.iter().map(|(_, h)| h.unwrap_or(0)).collect();
                    array::element(&a, &subs).map_or(Value::Null, OwnedValue::into_value)
                }
            }
            Node::DateArith { op, left, right } => {
                // PG evaluates every argument of a strict operator before its NULL check,
                // so an error on the right is raised even when the left is NULL.
                let l = left.eval(row)?;
                let r = right.eval(row)?;
                if matches!(l, Value::Null) || matches!(r, Value::Null) {
                    return Ok(Value::Null);
                }
                date_arith(*op, &l, &r)?
            }
            Node::Justify { kind, arg } => match arg.eval(row)? {
                Value::Null => Value::Null,
                Value::Interval(v) => Value::Interval(match kind {
                    Justify::Hours => interval::justify_hours(v)?,
                    Justify::Days => interval::justify_days(v)?,
                    Justify::Interval => interval::justify_interval(v)?,
                }),
                _ => return Err(EvalError::TypeMismatch),
            },
            Node::AtTimeZone {
                zone,
                to_local,
                arg,
                ..
            } => match arg.eval(row)? {
                Value::Null => Value::Null,
                Value::Timestamp(us) if *to_local => Value::Timestamp(zone.to_local(us)?),
                Value::Timestamp(us) => Value::Timestamp(zone.to_utc(us)?),
                _ => return Err(EvalError::TypeMismatch),
            },
            Node::IntervalNeg(arg) => match arg.eval(row)? {
                Value::Null => Value::Null,
                Value::Interval(v) => Value::Interval(interval::negate(v)?),
                _ => return Err(EvalError::TypeMismatch),
            },
            Node::JsonGet {
                jsonb,
                as_text,
                arg,
                step,
            } => {
                let Value::Text(src) = arg.eval(row)? else {
                    return Ok(Value::Null);
                };
                let step = match step.eval(row)? {
                    Value::Null => return Ok(Value::Null),
                    Value::Text(k) => json::Step::Key(k.into_owned()),
                    Value::Int(i) => json::Step::Index(i),
                    _ => return Err(EvalError::TypeMismatch),
                };
                let Some(doc) = json::parse(&src, *jsonb) else {
                    return Err(EvalError::Message("invalid input syntax for type json"));
                };
                match json::get(&doc, &step, *jsonb) {
                    None => Value::Null,
                    Some(n) if *as_text => json::node_as_text(&src, n, *jsonb)
                        .map_or(Value::Null, |t| Value::Text(Cow::Owned(t))),
                    Some(n) => Value::Text(Cow::Owned(json::node_text(&src, n, *jsonb))),
                }
            }
            Node::JsonPath {
                jsonb,
                as_text,
                arg,
                path,
            } => {
                let src = arg.eval(row)?;
                let Some(path) = as_array(path.eval(row)?)? else {
                    return Ok(Value::Null);
                };
                let Value::Text(src) = src else {
                    return Ok(Value::Null);
                };
                // A NULL step makes the whole path NULL (PG: as for a chain of `->`).
                let mut steps = Vec::with_capacity(path.elems.len());
                for e in &path.elems {
                    match e {
                        Some(OwnedValue::Text(t)) => steps.push(t.as_ref()),
                        None => return Ok(Value::Null),
                        Some(_) => return Err(EvalError::TypeMismatch),
                    }
                }
                let Some(doc) = json::parse(&src, *jsonb) else {
                    return Err(EvalError::Message("invalid input syntax for type json"));
                };
                match json::get_path(&doc, &steps) {
                    None => Value::Null,
                    Some(n) if *as_text => json::node_as_text(&src, n, *jsonb)
                        .map_or(Value::Null, |t| Value::Text(Cow::Owned(t))),
                    Some(n) => Value::Text(Cow::Owned(json::node_text(&src, n, *jsonb))),
                }
            }
            Node::JsonPred { op, left, right } => {
                let Value::Text(l) = left.eval(row)? else {
                    return Ok(Value::Null);
                };
                let Value::Text(r) = right.eval(row)? else {
                    return Ok(Value::Null);
                };
                let Some(a) = json::parse(&l, true) else {
                    return Err(EvalError::Message("invalid input syntax for type json"));
                };
                Value::Bool(match op {
                    JsonPredOp::Exists => json::exists(&a.value, &r),
                    _ => {
                        let Some(b) = json::parse(&r, true) else {
                            return Err(EvalError::Message("invalid input syntax for type json"));
                        };
                        if *op == JsonPredOp::Contains {
                            json::contains(&a.value, &b.value, true)
                        } else {
                            json::contains(&b.value, &a.value, true)
                        }
                    }
                })
            }
            Node::ArrayCtor { nested, elems } => {
                if *nested {
                    let mut subs = Vec::with_capacity(elems.len());
                    for e in elems {
                        subs.push(as_array(e.eval(row)?)?);
                    }
                    Value::Array(Cow::Owned(array::stack(subs)?))
                } else {
                    let mut out = Vec::with_capacity(elems.len());
                    for e in elems {
                        out.push(OwnedValue::from_value(e.eval(row)?));
                    }
                    Value::Array(Cow::Owned(ArrayVal::one_dim(out)))
                }
            }
            Node::InSubquery(link) => bool_value(link.eval(row)?),
        })
    }

    /// The direct operands of this node.
    pub fn children(&self) -> Vec<&Node> {
        match self {
            Node::Const(_) | Node::Column(_) => Vec::new(),
            Node::Not(arg)
            | Node::IsNull { arg, .. }
            | Node::BoolTest { arg, .. }
            | Node::Neg { arg, .. }
            | Node::BitNot { arg, .. }
            | Node::Convert { arg, .. }
            | Node::DateToTimestamp(arg)
            | Node::CaseMap { arg, .. }
            | Node::ArrayNdims(arg)
            | Node::IntervalNeg(arg)
            | Node::Sqrt(arg)
            | Node::Abs { arg, .. }
            | Node::AtTimeZone { arg, .. }
            | Node::Justify { arg, .. } => vec![arg],
            Node::DateArith { left, right, .. } | Node::JsonPred { left, right, .. } => {
                vec![left, right]
            }
            Node::JsonGet { arg, step, .. } => vec![arg, step],
            Node::JsonPath { arg, path, .. } => vec![arg, path],
            Node::AnyAll { lhs, array, .. }
            | Node::LikeAnyAll {
                text: lhs, array, ..
            } => vec![lhs, array],
            Node::ArrayPred { left, right, .. } | Node::ArrayCat { left, right, .. } => {
                vec![left, right]
            }
            Node::Subscript {
                arg, lower, upper, ..
            } => std::iter::once(arg.as_ref())
                .chain(lower.iter().flatten())
                .chain(upper.iter().flatten())
                .collect(),
            Node::ArrayCtor { elems, .. } => elems.iter().collect(),
            Node::And(args)
            | Node::Or(args)
            | Node::Coalesce(args)
            | Node::Extreme { args, .. }
            | Node::Concat(args) => args.iter().collect(),
            Node::Cmp { left, right, .. }
            | Node::Distinct { left, right, .. }
            | Node::Arith { left, right, .. }
            | Node::TextCat { left, right } => vec![left, right],
            Node::Like { text, pattern, .. } => vec![text, pattern],
            Node::In { lhs, items, .. } => std::iter::once(lhs.as_ref()).chain(items).collect(),
            // The inner where clause reads another table: not a child of this tree.
            Node::InSubquery(link) => link.lhs.iter().collect(),
        }
    }

    pub fn collect_columns(&self, out: &mut Vec<usize>) {
        if let Node::Column(read) = self {
            out.push(read.index);
        }
        for child in self.children() {
            child.collect_columns(out);
        }
    }

    /// Whether evaluating the node depends on the text collation (text ordering or case
    /// mapping), which the SQL pins to "C".
    pub fn has_text_ordering(&self) -> bool {
        let ordered = |cmp: &CmpType| cmp.is_textual() || cmp.is_collation_bound();
        let own = match self {
            Node::Cmp { op, cmp, .. } => op.is_ordering() && ordered(cmp),
            Node::Extreme { cmp, .. } => ordered(cmp),
            Node::AnyAll { op, cmp, .. } => op.is_ordering() && ordered(cmp),
            Node::CaseMap { .. } => true,
            _ => false,
        };
        own || self.children().into_iter().any(Node::has_text_ordering)
    }

    /// Whether evaluating the node orders values by the database's default collation (jsonb
    /// ordering), which no `COLLATE` in the SQL can pin.
    pub fn has_collation_bound_ordering(&self) -> bool {
        let own = match self {
            Node::Cmp { op, cmp, .. } | Node::AnyAll { op, cmp, .. } => {
                op.is_ordering() && cmp.is_collation_bound()
            }
            Node::Extreme { cmp, .. } => cmp.is_collation_bound(),
            _ => false,
        };
        own || self
            .children()
            .into_iter()
            .any(Node::has_collation_bound_ordering)
    }

    pub fn as_const(&self) -> Option<&Const> {
        match self {
            Node::Const(c) => Some(c),
            _ => None,
        }
    }
}
