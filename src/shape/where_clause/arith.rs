//! Arithmetic with PG's exact semantics: checked integers, IEEE floats with PG's overflow and
//! underflow errors, exact decimal `+ - *` on numeric, float8 `^` and `|/`, and `@`.
//!
//! Invariants:
//! * Every operation PG would raise on (integer out of range, division by zero, float
//!   overflow/underflow, numeric beyond its format) is an [`EvalError`], never a wrapped,
//!   saturated or rounded value: the row is then "not included" (spec 3.4-c).
//! * numeric never goes through `f64`; results are normalised [`NumOwned`] values, so they
//!   compare and index exactly like parsed ones.
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
    /// `^`, on float8 only (numeric `^` is not evaluated).
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
                NumOwned::Finite { digits, point, .. } => NumOwned::Finite {
                    neg: false,
                    digits,
                    point,
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
                NumOwned::Finite { neg, digits, point } => NumOwned::Finite {
                    neg: !neg && !digits.is_empty(),
                    digits,
                    point,
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

/// `(negative, digits most significant first, exponent)`: value = digits × 10^exponent.
struct Dec {
    neg: bool,
    digits: Vec<u8>,
    exp: i64,
}

fn to_dec(n: Num<'_>) -> Option<Dec> {
    match n {
        Num::Finite { neg, hi, lo, point } => {
            let digits: Vec<u8> = hi.bytes().chain(lo.bytes()).map(|b| b - b'0').collect();
            let len = i64::try_from(digits.len()).ok()?;
            Some(Dec {
                neg,
                digits,
                exp: point - len,
            })
        }
        _ => None,
    }
}

fn from_dec(d: Dec) -> Result<NumOwned, EvalError> {
    let first = d.digits.iter().position(|&x| x != 0);
    let Some(first) = first else {
        return Ok(NumOwned::Finite {
            neg: false,
            digits: String::new(),
            point: 0,
        });
    };
    let last = d.digits.iter().rposition(|&x| x != 0).unwrap_or(first);
    let trailing =
        i64::try_from(d.digits.len() - 1 - last).map_err(|_| EvalError::NumericOverflow)?;
    let kept = &d.digits[first..=last];
    let len = i64::try_from(kept.len()).map_err(|_| EvalError::NumericOverflow)?;
    let point = d.exp + trailing + len;
    if point.abs() > MAX_DIGITS {
        return Err(EvalError::NumericOverflow);
    }
    Ok(NumOwned::Finite {
        neg: d.neg,
        digits: kept.iter().map(|&x| char::from(b'0' + x)).collect(),
        point,
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

fn cmp_mag(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let a = &a[a.iter().position(|&x| x != 0).unwrap_or(a.len())..];
    let b = &b[b.iter().position(|&x| x != 0).unwrap_or(b.len())..];
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
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
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
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
    Ok(if a.neg == b_neg {
        Dec {
            neg: a.neg,
            digits: add_mag(&x, &y),
            exp,
        }
    } else if cmp_mag(&x, &y) != std::cmp::Ordering::Less {
        Dec {
            neg: a.neg,
            digits: sub_mag(&x, &y),
            exp,
        }
    } else {
        Dec {
            neg: b_neg,
            digits: sub_mag(&y, &x),
            exp,
        }
    })
}

fn mul_dec(a: &Dec, b: &Dec) -> Result<Dec, EvalError> {
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

fn sign_of(n: Num<'_>) -> i8 {
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

/// PG numeric `+ - *` including NaN and ±Infinity rules.
fn numeric_op(op: ArithOp, a: Num<'_>, b: Num<'_>) -> Result<NumOwned, EvalError> {
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
            (ArithOp::Sub, "5", "5.000", "0"),
            (ArithOp::Mul, "1.5", "-2", "-3"),
            (
                ArithOp::Mul,
                "12345678901234567.1",
                "10",
                "123456789012345671",
            ),
            (ArithOp::Add, "999.99", "0.01", "1000"),
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
