//! Arithmetic with PG's exact semantics: checked integers, IEEE floats with PG's overflow and
//! underflow errors, exact decimal `+ - * /` on numeric, float8 `^` and `|/`, and `@`.
//! numeric `^` lives in [`super::numeric_pow`].
//!
//! Invariants:
//! * Every operation PG would raise on (integer out of range, division by zero, float
//!   overflow/underflow, numeric beyond its format) is an [`EvalError`], never a wrapped,
//!   saturated or rounded value: the row is then "not included" (spec 3.4-c).
//! * numeric never goes through `f64`; results are normalised [`NumOwned`] values, so they
//!   compare and index exactly like parsed ones.
//! * Every numeric result carries PG's display scale: `+ -` the larger of the operands',
//!   `*` their sum, `/` the scale `select_div_scale` picks (the quotient rounded half away
//!   from zero at that scale, which is what PG's exact `div_var` gives).
//! * float4 arithmetic is done in `f32` (PG's `float4pl` etc.), float8 in `f64`.

use super::eval::EvalError;
use super::values::{Num, NumOwned, Value, num_view, parse_float4, parse_float8, parse_numeric};

/// Arithmetic operand/result types (both operands are coerced to one of these first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NumKind {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
}

impl NumKind {
    fn int_range(self) -> Option<(i64, i64, &'static str)> {
        match self {
            NumKind::Int2 => Some((i64::from(i16::MIN), i64::from(i16::MAX), "smallint")),
            NumKind::Int4 => Some((i64::from(i32::MIN), i64::from(i32::MAX), "integer")),
            NumKind::Int8 => Some((i64::MIN, i64::MAX, "bigint")),
            _ => None,
        }
    }

    pub fn is_int(self) -> bool {
        self.int_range().is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    BitAnd,
    BitOr,
    BitXor,
    /// `^` on float8 and on numeric.
    Pow,
}

impl ArithOp {
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::BitAnd => "&",
            ArithOp::BitOr => "|",
            ArithOp::BitXor => "#",
            ArithOp::Pow => "^",
        }
    }
}

fn out_of_range(kind: &'static str) -> EvalError {
    EvalError::OutOfRange { type_name: kind }
}

fn check_int(v: Option<i64>, kind: NumKind) -> Result<Value<'static>, EvalError> {
    let (min, max, name) = kind.int_range().ok_or(EvalError::TypeMismatch)?;
    match v {
        Some(v) if (min..=max).contains(&v) => Ok(Value::Int(v)),
        _ => Err(out_of_range(name)),
    }
}

/// PG's `check_float8_val` / `check_float4_val`.
fn check_float(result: f64, inf_ok: bool, zero_ok: bool) -> Result<f64, EvalError> {
    if result.is_infinite() && !inf_ok {
        return Err(EvalError::FloatOverflow);
    }
    if result == 0.0 && !zero_ok {
        return Err(EvalError::FloatUnderflow);
    }
    Ok(result)
}

fn float_op(op: ArithOp, a: f64, b: f64, single: bool) -> Result<f64, EvalError> {
    let round = |x: f64| if single { f64::from(x as f32) } else { x };
    let any_inf = a.is_infinite() || b.is_infinite();
    match op {
        ArithOp::Add => check_float(round(a + b), any_inf, true),
        ArithOp::Sub => check_float(round(a - b), any_inf, true),
        ArithOp::Mul => check_float(round(a * b), any_inf, a == 0.0 || b == 0.0),
        ArithOp::Div => {
            if b == 0.0 && !a.is_nan() {
                return Err(EvalError::DivisionByZero);
            }
            check_float(round(a / b), a.is_infinite(), a == 0.0 || b.is_infinite())
        }
        ArithOp::Pow if !single => pow(a, b),
        _ => Err(EvalError::TypeMismatch),
    }
}

/// PG 15's `float8pow`: POSIX's NaN and infinity cases spelled out, its two domain errors,
/// then the C library's `pow` (the same libm as PG's on the same platform), with PG's
/// overflow/underflow checks.
fn pow(x: f64, y: f64) -> Result<f64, EvalError> {
    if x.is_nan() {
        return Ok(if y.is_nan() || y != 0.0 {
            f64::NAN
        } else {
            1.0
        });
    }
    if y.is_nan() {
        return Ok(if x != 1.0 { f64::NAN } else { 1.0 });
    }
    if x == 0.0 && y < 0.0 {
        return Err(EvalError::Message(
            "zero raised to a negative power is undefined",
        ));
    }
    if x < 0.0 && y.floor() != y {
        return Err(EvalError::Message(
            "a negative number raised to a non-integer power yields a complex result",
        ));
    }
    if y.is_infinite() {
        let ax = x.abs();
        return Ok(if ax == 1.0 {
            1.0
        } else if y > 0.0 {
            if ax > 1.0 { y } else { 0.0 }
        } else if ax > 1.0 {
            0.0
        } else {
            -y
        });
    }
    if x.is_infinite() {
        if y == 0.0 {
            return Ok(1.0);
        }
        if x > 0.0 {
            return Ok(if y > 0.0 { x } else { 0.0 });
        }
        let half = y / 2.0;
        let odd = half.floor() != half;
        return Ok(if y > 0.0 {
            if odd { x } else { -x }
        } else if odd {
            -0.0
        } else {
            0.0
        });
    }
    let r = x.powf(y);
    if r.is_nan() {
        // Only old glibc on huge |y|; PG's fallback.
        if x == 0.0 {
            return Ok(0.0);
        }
        let ax = x.abs();
        return if ax == 1.0 {
            Ok(1.0)
        } else if if y >= 0.0 { ax > 1.0 } else { ax < 1.0 } {
            Err(EvalError::FloatOverflow)
        } else {
            Err(EvalError::FloatUnderflow)
        };
    }
    if r.is_infinite() {
        return Err(EvalError::FloatOverflow);
    }
    if r == 0.0 && x != 0.0 {
        return Err(EvalError::FloatUnderflow);
    }
    Ok(r)
}

/// `|/ x` (PG's `dsqrt`).
pub(super) fn sqrt(a: &Value<'_>) -> Result<Value<'static>, EvalError> {
    let Value::Float(x) = a else {
        return Err(EvalError::TypeMismatch);
    };
    if *x < 0.0 {
        return Err(EvalError::Message(
            "cannot take square root of a negative number",
        ));
    }
    // sqrt is exact (correctly rounded) everywhere; inputs ≥ 0 cannot overflow or underflow.
    Ok(Value::Float(x.sqrt()))
}

/// `@ x` (PG's `int*abs`, `float*abs`, `numeric_abs`).
pub(super) fn abs(kind: NumKind, a: &Value<'_>) -> Result<Value<'static>, EvalError> {
    match (kind, a) {
        (k, Value::Int(x)) if k.is_int() => check_int(x.checked_abs(), k),
        (NumKind::Float4 | NumKind::Float8, Value::Float(x)) => Ok(Value::Float(x.abs())),
        (NumKind::Numeric, v) => {
            let n = num_view(v).ok_or(EvalError::TypeMismatch)?;
            Ok(Value::NumericOwned(match n.to_owned_num() {
                NumOwned::NaN => NumOwned::NaN,
                NumOwned::PosInf | NumOwned::NegInf => NumOwned::PosInf,
                NumOwned::Finite {
                    digits,
                    point,
                    dscale,
                    ..
                } => NumOwned::Finite {
                    neg: false,
                    digits,
                    point,
                    dscale,
                },
            }))
        }
        _ => Err(EvalError::TypeMismatch),
    }
}

/// `a op b` on two non-NULL values of `kind`.
pub(super) fn apply(
    op: ArithOp,
    kind: NumKind,
    a: &Value<'_>,
    b: &Value<'_>,
) -> Result<Value<'static>, EvalError> {
    match kind {
        NumKind::Int2 | NumKind::Int4 | NumKind::Int8 => {
            let (Value::Int(x), Value::Int(y)) = (a, b) else {
                return Err(EvalError::TypeMismatch);
            };
            let (x, y) = (*x, *y);
            let r = match op {
                ArithOp::Add => x.checked_add(y),
                ArithOp::Sub => x.checked_sub(y),
                ArithOp::Mul => x.checked_mul(y),
                ArithOp::Div => {
                    if y == 0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    x.checked_div(y)
                }
                ArithOp::BitAnd => Some(x & y),
                ArithOp::BitOr => Some(x | y),
                ArithOp::BitXor => Some(x ^ y),
                ArithOp::Pow => return Err(EvalError::TypeMismatch),
            };
            check_int(r, kind)
        }
        NumKind::Float4 | NumKind::Float8 => {
            let (Value::Float(x), Value::Float(y)) = (a, b) else {
                return Err(EvalError::TypeMismatch);
            };
            Ok(Value::Float(float_op(op, *x, *y, kind == NumKind::Float4)?))
        }
        NumKind::Numeric => {
            let (Some(x), Some(y)) = (num_view(a), num_view(b)) else {
                return Err(EvalError::TypeMismatch);
            };
            Ok(Value::NumericOwned(numeric_op(op, x, y)?))
        }
    }
}

/// Unary minus.
pub(super) fn negate(kind: NumKind, a: &Value<'_>) -> Result<Value<'static>, EvalError> {
    match (kind, a) {
        (k, Value::Int(x)) if k.is_int() => check_int(x.checked_neg(), k),
        (NumKind::Float4 | NumKind::Float8, Value::Float(x)) => Ok(Value::Float(-x)),
        (NumKind::Numeric, v) => {
            let n = num_view(v).ok_or(EvalError::TypeMismatch)?;
            Ok(Value::NumericOwned(match n.to_owned_num() {
                NumOwned::NaN => NumOwned::NaN,
                NumOwned::PosInf => NumOwned::NegInf,
                NumOwned::NegInf => NumOwned::PosInf,
                NumOwned::Finite {
                    neg,
                    digits,
                    point,
                    dscale,
                } => NumOwned::Finite {
                    neg: !neg && !digits.is_empty(),
                    digits,
                    point,
                    dscale,
                },
            }))
        }
        _ => Err(EvalError::TypeMismatch),
    }
}

/// Bitwise NOT on integers.
pub(super) fn bit_not(kind: NumKind, a: &Value<'_>) -> Result<Value<'static>, EvalError> {
    match a {
        Value::Int(x) if kind.is_int() => check_int(Some(!x), kind),
        _ => Err(EvalError::TypeMismatch),
    }
}

/// Runtime conversion along PG's implicit numeric ladder (int → wider int, numeric,
/// float4, float8; numeric → float; float4 → float8). PG's numeric → float casts go through
/// the numeric's text, which is what we do.
pub(super) fn convert(
    from: NumKind,
    to: NumKind,
    a: &Value<'_>,
) -> Result<Value<'static>, EvalError> {
    let float = |text: &str, single: bool| {
        let f = if single {
            parse_float4(text)
        } else {
            parse_float8(text)
        };
        f.map(Value::Float).ok_or(EvalError::FloatOverflow)
    };
    match (from, a) {
        (f, Value::Int(x)) if f.is_int() => match to {
            t if t.is_int() => check_int(Some(*x), t),
            NumKind::Numeric => Ok(Value::NumericOwned(
                parse_numeric(&x.to_string())
                    .ok_or(EvalError::TypeMismatch)?
                    .to_owned_num(),
            )),
            NumKind::Float4 => Ok(Value::Float(f64::from(*x as f32))),
            NumKind::Float8 => Ok(Value::Float(*x as f64)),
            _ => Err(EvalError::TypeMismatch),
        },
        (NumKind::Numeric, v) => {
            let text = num_view(v).ok_or(EvalError::TypeMismatch)?.to_owned_num();
            match to {
                NumKind::Numeric => Ok(Value::NumericOwned(text)),
                NumKind::Float4 => float(&text.canonical_text(), true),
                NumKind::Float8 => float(&text.canonical_text(), false),
                _ => Err(EvalError::TypeMismatch),
            }
        }
        (NumKind::Float4, Value::Float(x)) if to == NumKind::Float8 => Ok(Value::Float(*x)),
        _ => Err(EvalError::TypeMismatch),
    }
}

// ---------------------------------------------------------------------------------------------
// Exact decimal arithmetic.

/// Largest digit count we materialise (PG's numeric holds at most 131072 digits before and
/// 16383 after the point, so a real value never needs more).
const MAX_DIGITS: i64 = 200_000;
/// Most digits before the point of a numeric PG can store (weight ≤ 32767 in base 10000).
const MAX_INTEGER_DIGITS: i64 = 131_072;

/// `(negative, digits most significant first, exponent, display scale)`:
/// value = digits × 10^exponent.
pub(super) struct Dec {
    pub neg: bool,
    pub digits: Vec<u8>,
    pub exp: i64,
    pub dscale: i64,
}

pub(super) fn to_dec(n: Num<'_>) -> Option<Dec> {
    match n {
        Num::Finite {
            neg,
            hi,
            lo,
            point,
            dscale,
        } => {
            let digits: Vec<u8> = hi.bytes().chain(lo.bytes()).map(|b| b - b'0').collect();
            let len = i64::try_from(digits.len()).ok()?;
            Some(Dec {
                neg,
                digits,
                exp: point - len,
                dscale: i64::from(dscale),
            })
        }
        _ => None,
    }
}

pub(super) fn from_dec(d: Dec) -> Result<NumOwned, EvalError> {
    // PG's make_result: a display scale beyond the header's 14 bits overflows.
    let dscale = u16::try_from(d.dscale)
        .ok()
        .filter(|&s| i64::from(s) <= super::values::NUMERIC_DSCALE_MAX)
        .ok_or(EvalError::NumericOverflow)?;
    let first = d.digits.iter().position(|&x| x != 0);
    let Some(first) = first else {
        return Ok(NumOwned::Finite {
            neg: false,
            digits: String::new(),
            point: 0,
            dscale,
        });
    };
    let last = d.digits.iter().rposition(|&x| x != 0).unwrap_or(first);
    let trailing =
        i64::try_from(d.digits.len() - 1 - last).map_err(|_| EvalError::NumericOverflow)?;
    let kept = &d.digits[first..=last];
    let len = i64::try_from(kept.len()).map_err(|_| EvalError::NumericOverflow)?;
    let point = d.exp + trailing + len;
    // PG's make_result: a base-10000 weight above `SHRT_MAX` (a leading digit at 10^131072
    // or beyond) does not fit the header either.
    if point > MAX_INTEGER_DIGITS || point.abs() > MAX_DIGITS {
        return Err(EvalError::NumericOverflow);
    }
    Ok(NumOwned::Finite {
        neg: d.neg,
        digits: kept.iter().map(|&x| char::from(b'0' + x)).collect(),
        point,
        dscale,
    })
}

/// Digits of `d` shifted so that its exponent is `exp` (≤ d.exp).
fn aligned(d: &Dec, exp: i64) -> Result<Vec<u8>, EvalError> {
    let shift = d.exp - exp;
    if shift > MAX_DIGITS {
        return Err(EvalError::NumericOverflow);
    }
    let mut v = d.digits.clone();
    v.extend(std::iter::repeat_n(0, usize::try_from(shift).unwrap_or(0)));
    Ok(v)
}

pub(super) fn cmp_mag(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let a = &a[a.iter().position(|&x| x != 0).unwrap_or(a.len())..];
    let b = &b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

pub(super) fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len()) + 1;
    let mut out = vec![0u8; n];
    let mut carry = 0u8;
    for i in 0..n {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = x + y + carry;
        out[n - 1 - i] = s % 10;
        carry = s / 10;
    }
    out
}

/// |a| - |b| for |a| ≥ |b|.
pub(super) fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len());
    let mut out = vec![0u8; n];
    let mut borrow = 0i8;
    for i in 0..n {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 } as i8;
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 } as i8;
        let mut s = x - y - borrow;
        borrow = 0;
        if s < 0 {
            s += 10;
            borrow = 1;
        }
        out[n - 1 - i] = s.unsigned_abs();
    }
    out
}

fn add_dec(a: &Dec, b: &Dec, negate_b: bool) -> Result<Dec, EvalError> {
    let exp = a.exp.min(b.exp);
    let (x, y) = (aligned(a, exp)?, aligned(b, exp)?);
    let b_neg = b.neg != negate_b;
    let dscale = a.dscale.max(b.dscale);
    Ok(if a.neg == b_neg {
        Dec {
            neg: a.neg,
            digits: add_mag(&x, &y),
            exp,
            dscale,
        }
    } else if cmp_mag(&x, &y) != std::cmp::Ordering::Less {
        Dec {
            neg: a.neg,
            digits: sub_mag(&x, &y),
            exp,
            dscale,
        }
    } else {
        Dec {
            neg: b_neg,
            digits: sub_mag(&y, &x),
            exp,
            dscale,
        }
    })
}

pub(super) fn mul_dec(a: &Dec, b: &Dec) -> Result<Dec, EvalError> {
    let (la, lb) = (a.digits.len(), b.digits.len());
    if i64::try_from(la + lb).unwrap_or(i64::MAX) > MAX_DIGITS {
        return Err(EvalError::NumericOverflow);
    }
    let mut acc = vec![0u32; la + lb];
    for (i, &x) in a.digits.iter().enumerate().rev() {
        for (j, &y) in b.digits.iter().enumerate().rev() {
            acc[i + j + 1] += u32::from(x) * u32::from(y);
        }
        // Propagate now and then to keep the accumulators small.
        if i % 64 == 0 {
            propagate(&mut acc);
        }
    }
    propagate(&mut acc);
    Ok(Dec {
        neg: a.neg != b.neg,
        digits: acc
            .into_iter()
            .map(|d| u8::try_from(d).unwrap_or(0))
            .collect(),
        exp: a.exp + b.exp,
        dscale: a.dscale + b.dscale,
    })
}

fn propagate(acc: &mut [u32]) {
    let mut carry = 0u32;
    for d in acc.iter_mut().rev() {
        let s = *d + carry;
        *d = s % 10;
        carry = s / 10;
    }
}

pub(super) fn sign_of(n: Num<'_>) -> i8 {
    match n {
        Num::NegInf => -1,
        Num::PosInf => 1,
        Num::Finite { neg, hi, lo, .. } => {
            if hi.is_empty() && lo.is_empty() {
                0
            } else if neg {
                -1
            } else {
                1
            }
        }
        Num::NaN => 0,
    }
}

fn inf(sign: i8) -> NumOwned {
    if sign < 0 {
        NumOwned::NegInf
    } else {
        NumOwned::PosInf
    }
}

/// PG numeric `+ - * / ^` including NaN and ±Infinity rules.
fn numeric_op(op: ArithOp, a: Num<'_>, b: Num<'_>) -> Result<NumOwned, EvalError> {
    match op {
        ArithOp::Div => return numeric_div(a, b),
        ArithOp::Pow => return super::numeric_pow::numeric_power(a, b),
        _ => {}
    }
    if matches!(a, Num::NaN) || matches!(b, Num::NaN) {
        return Ok(NumOwned::NaN);
    }
    let a_inf = matches!(a, Num::PosInf | Num::NegInf);
    let b_inf = matches!(b, Num::PosInf | Num::NegInf);
    if a_inf || b_inf {
        let (sa, sb) = (sign_of(a), sign_of(b));
        return Ok(match op {
            ArithOp::Add if a_inf && b_inf => {
                if sa == sb {
                    inf(sa)
                } else {
                    NumOwned::NaN
                }
            }
            ArithOp::Sub if a_inf && b_inf => {
                if sa != sb {
                    inf(sa)
                } else {
                    NumOwned::NaN
                }
            }
            ArithOp::Add | ArithOp::Sub if a_inf => inf(sa),
            ArithOp::Add => inf(sb),
            ArithOp::Sub => inf(-sb),
            ArithOp::Mul if sa == 0 || sb == 0 => NumOwned::NaN,
            ArithOp::Mul => inf(sa * sb),
            _ => return Err(EvalError::TypeMismatch),
        });
    }
    let (Some(x), Some(y)) = (to_dec(a), to_dec(b)) else {
        return Err(EvalError::TypeMismatch);
    };
    let r = match op {
        ArithOp::Add => add_dec(&x, &y, false)?,
        ArithOp::Sub => add_dec(&x, &y, true)?,
        ArithOp::Mul => mul_dec(&x, &y)?,
        _ => return Err(EvalError::TypeMismatch),
    };
    from_dec(r)
}

/// PG's `numeric_div`: NaN and infinity rules, then [`div_dec`] at `select_div_scale`.
fn numeric_div(a: Num<'_>, b: Num<'_>) -> Result<NumOwned, EvalError> {
    if matches!(a, Num::NaN) || matches!(b, Num::NaN) {
        return Ok(NumOwned::NaN);
    }
    let a_inf = matches!(a, Num::PosInf | Num::NegInf);
    let b_inf = matches!(b, Num::PosInf | Num::NegInf);
    if a_inf {
        return match (b_inf, sign_of(a) * sign_of(b)) {
            (true, _) => Ok(NumOwned::NaN),
            (false, 0) => Err(EvalError::DivisionByZero),
            (false, s) => Ok(inf(s)),
        };
    }
    if b_inf {
        // PG: a finite number over an infinity is zero (no underflow in numeric).
        return Ok(NumOwned::Finite {
            neg: false,
            digits: String::new(),
            point: 0,
            dscale: 0,
        });
    }
    let (Some(x), Some(y)) = (to_dec(a), to_dec(b)) else {
        return Err(EvalError::TypeMismatch);
    };
    let rscale = select_div_scale(&x, &y);
    from_dec(div_dec(&x, &y, rscale)?)
}

/// PG's `NUMERIC_MIN_SIG_DIGITS`: a quotient gets at least this many significant digits.
pub(super) const NUMERIC_MIN_SIG_DIGITS: i64 = 16;
/// PG's `NUMERIC_MAX_DISPLAY_SCALE`: the most fractional digits an inexact result gets.
pub(super) const NUMERIC_MAX_DISPLAY_SCALE: i64 = 1000;
/// Decimal digits per base-10000 digit of PG's `NumericVar`.
pub(super) const DEC_DIGITS: i64 = 4;

/// The base-10000 weight and leading base-10000 digit PG sees for `d` (`(0, 0)` for zero):
/// PG estimates a quotient's magnitude from these, so the scale it picks depends on them.
fn nbase_head(d: &Dec) -> (i64, i64) {
    let Some(first) = d.digits.iter().position(|&x| x != 0) else {
        return (0, 0);
    };
    let after = i64::try_from(d.digits.len() - 1 - first).unwrap_or(0);
    // Decimal exponent of the leading digit, and the base-10000 digit holding it.
    let lead = d.exp + after;
    let weight = lead.div_euclid(DEC_DIGITS);
    let in_group = lead - weight * DEC_DIGITS + 1;
    let mut head = 0;
    for k in 0..usize::try_from(in_group).unwrap_or(0) {
        head = head * 10 + i64::from(d.digits.get(first + k).copied().unwrap_or(0));
    }
    (weight, head)
}

/// PG's `select_div_scale`: enough fractional digits for 16 significant ones, no fewer than
/// either operand's display scale, at most 1000.
fn select_div_scale(a: &Dec, b: &Dec) -> i64 {
    let (w1, f1) = nbase_head(a);
    let (w2, f2) = nbase_head(b);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    (NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS)
        .max(a.dscale)
        .max(b.dscale)
        .clamp(0, NUMERIC_MAX_DISPLAY_SCALE)
}

/// `a / b` to exactly `rscale` fractional digits, rounded half away from zero (PG's
/// `div_var(.., round = true)`, which is exact).
pub(super) fn div_dec(a: &Dec, b: &Dec, rscale: i64) -> Result<Dec, EvalError> {
    let strip = |d: &[u8]| d[d.iter().position(|&x| x != 0).unwrap_or(d.len())..].to_vec();
    let (mut num, mut den) = (strip(&a.digits), strip(&b.digits));
    if den.is_empty() {
        return Err(EvalError::DivisionByZero);
    }
    let zero = Dec {
        neg: false,
        digits: Vec::new(),
        exp: -rscale,
        dscale: rscale,
    };
    if num.is_empty() {
        return Ok(zero);
    }
    // a/b × 10^rscale = num × 10^shift / den.
    let shift = a.exp - b.exp + rscale;
    let pad = |v: &mut Vec<u8>, n: i64| -> Result<(), EvalError> {
        let total = i64::try_from(v.len()).unwrap_or(i64::MAX).saturating_add(n);
        if total > MAX_DIGITS {
            return Err(EvalError::NumericOverflow);
        }
        v.extend(std::iter::repeat_n(0, usize::try_from(n).unwrap_or(0)));
        Ok(())
    };
    if shift >= 0 {
        pad(&mut num, shift)?;
    } else {
        // The quotient is below one unit of the last place (or rounds to it): only the
        // digits of `num` that reach that place matter, so a huge divisor costs nothing.
        if -shift > i64::try_from(num.len()).unwrap_or(0) + 1 {
            return Ok(zero);
        }
        pad(&mut den, -shift)?;
    }
    let (mut quotient, remainder) = long_division(&num, &den);
    if cmp_mag(&add_mag(&remainder, &remainder), &den) != std::cmp::Ordering::Less {
        quotient = add_mag(&quotient, &[1]);
    }
    Ok(Dec {
        neg: a.neg != b.neg,
        digits: quotient,
        exp: -rscale,
        dscale: rscale,
    })
}

/// Schoolbook division of digit strings (`den` without leading zeros, not zero).
fn long_division(num: &[u8], den: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut quotient = Vec::with_capacity(num.len());
    let mut rem: Vec<u8> = Vec::with_capacity(den.len() + 1);
    for &digit in num {
        if !(rem.is_empty() && digit == 0) {
            rem.push(digit);
        }
        let mut q = 0u8;
        while cmp_mag(&rem, den) != std::cmp::Ordering::Less {
            rem = sub_mag(&rem, den);
            let lead = rem.iter().position(|&x| x != 0).unwrap_or(rem.len());
            rem.drain(..lead);
            q += 1;
        }
        quotient.push(q);
    }
    (quotient, rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Value<'_> {
        Value::Numeric(parse_numeric(s).unwrap())
    }

    fn text(v: Value<'_>) -> String {
        match v {
            Value::NumericOwned(n) => n.canonical_text(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn numeric_is_exact() {
        let cases = [
            (ArithOp::Add, "0.1", "0.2", "0.3"),
            (ArithOp::Sub, "0.1", "0.2", "-0.1"),
            (ArithOp::Sub, "5", "5.000", "0.000"),
            (ArithOp::Mul, "1.5", "-2", "-3.0"),
            (
                ArithOp::Mul,
                "12345678901234567.1",
                "10",
                "123456789012345671.0",
            ),
            (ArithOp::Add, "999.99", "0.01", "1000.00"),
            (ArithOp::Add, "Infinity", "-Infinity", "NaN"),
            (ArithOp::Mul, "Infinity", "0", "NaN"),
            (ArithOp::Sub, "-Infinity", "Infinity", "-Infinity"),
        ];
        for (op, a, b, expected) in cases {
            let r = apply(op, NumKind::Numeric, &num(a), &num(b)).unwrap();
            assert_eq!(text(r), expected, "{a} {op:?} {b}");
        }
    }

    #[test]
    fn integers_and_floats_raise_like_pg() {
        let int = |x| Value::Int(x);
        assert!(apply(ArithOp::Add, NumKind::Int4, &int(2_147_483_647), &int(1)).is_err());
        assert!(apply(ArithOp::Add, NumKind::Int2, &int(32_767), &int(1)).is_err());
        assert!(apply(ArithOp::Div, NumKind::Int8, &int(i64::MIN), &int(-1)).is_err());
        assert!(apply(ArithOp::Div, NumKind::Int4, &int(1), &int(0)).is_err());
        assert!(matches!(
            apply(ArithOp::Div, NumKind::Int4, &int(-7), &int(2)),
            Ok(Value::Int(-3))
        ));
        let f = |x| Value::Float(x);
        assert!(apply(ArithOp::Mul, NumKind::Float8, &f(1e308), &f(10.0)).is_err());
        assert!(apply(ArithOp::Mul, NumKind::Float8, &f(1e-308), &f(1e-308)).is_err());
        assert!(apply(ArithOp::Div, NumKind::Float8, &f(1.0), &f(0.0)).is_err());
        assert!(apply(ArithOp::Div, NumKind::Float8, &f(f64::NAN), &f(0.0)).is_ok());
        assert!(apply(ArithOp::Add, NumKind::Float8, &f(f64::INFINITY), &f(1.0)).is_ok());
    }
}
