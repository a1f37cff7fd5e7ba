//! `numeric ^ numeric` as PG 15's `numeric_power` computes it.
//!
//! PG raises to an integer power by repeated squaring in its base-10000 `NumericVar` format,
//! and each `mul_var` on the way *truncates* its work at a scale chosen from a floating-point
//! estimate of the result's size, then rounds. The last digit of the answer depends on those
//! truncations, so this module mirrors them: [`Var`] is a `NumericVar`, [`mul_var`] and
//! [`round_var`] are ports of PG 15's, and [`power_var_int`] follows PG step by step.
//!
//! Invariants:
//! * Results match PG 15 digit for digit and in display scale for: NaN and infinity operands
//!   (POSIX `pow` rules as PG spells them out), integer exponents from -1 up to `i32::MAX`,
//!   and zero bases.
//! * Everything else PG computes through `ln`/`exp` (non-integer exponents, and exponents
//!   below -1, which PG finishes with its approximate `div_var_fast`). Those give
//!   [`EvalError::Message`] "not supported"; the compiler refuses such clauses up front
//!   (see `parse.rs`), so a row is never silently dropped for it.
//! * PG's errors (zero to a negative power, a negative number to a non-integer power,
//!   overflow) are the same [`EvalError`]s PG raises.

use super::arith::{
    DEC_DIGITS, Dec, NUMERIC_MAX_DISPLAY_SCALE, NUMERIC_MIN_SIG_DIGITS, div_dec, from_dec, sign_of,
    to_dec,
};
use super::eval::EvalError;
use super::values::{Num, NumOwned};

const NBASE: i64 = 10_000;
const HALF_NBASE: i64 = 5_000;
/// PG 15's `MUL_GUARD_DIGITS` (base-10000 digits kept beyond the wanted scale).
const MUL_GUARD_DIGITS: i64 = 2;
/// PG's `SHRT_MAX`, the largest weight a numeric can have.
const SHRT_MAX: i64 = 32_767;

/// The message for the exponents PG evaluates through `ln`/`exp`.
pub(super) const UNSUPPORTED_EXPONENT: &str = "numeric ^ numeric is only supported with an integer exponent from -1 to 2147483647 (cast an operand to float8)";

/// PG's `NumericVar`: value = Σ digits[i] × 10000^(weight - i), each digit in 0..10000.
#[derive(Clone, Debug)]
struct Var {
    neg: bool,
    weight: i64,
    digits: Vec<i64>,
    dscale: i64,
}

impl Var {
    fn one() -> Var {
        Var {
            neg: false,
            weight: 0,
            digits: vec![1],
            dscale: 0,
        }
    }

    fn zero(dscale: i64) -> Var {
        Var {
            neg: false,
            weight: 0,
            digits: Vec::new(),
            dscale,
        }
    }

    fn from_dec(d: &Dec) -> Var {
        let Some(first) = d.digits.iter().position(|&x| x != 0) else {
            return Var::zero(d.dscale);
        };
        let digits = &d.digits[first..];
        let len = i64::try_from(digits.len()).unwrap_or(0);
        // Decimal exponent of the leading digit; pad it to the top of its base-10000 digit.
        let lead = d.exp + len - 1;
        let weight = lead.div_euclid(DEC_DIGITS);
        let left = usize::try_from(weight * DEC_DIGITS + DEC_DIGITS - 1 - lead).unwrap_or(0);
        let mut padded: Vec<u8> = std::iter::repeat_n(0, left)
            .chain(digits.iter().copied())
            .collect();
        while !padded.len().is_multiple_of(4) {
            padded.push(0);
        }
        let mut v = Var {
            neg: d.neg,
            weight,
            digits: padded
                .chunks(4)
                .map(|c| c.iter().fold(0, |acc, &x| acc * 10 + i64::from(x)))
                .collect(),
            dscale: d.dscale,
        };
        v.strip();
        v
    }

    fn to_dec(&self) -> Dec {
        let mut digits = Vec::with_capacity(self.digits.len() * 4);
        for &g in &self.digits {
            for p in [1000, 100, 10, 1] {
                digits.push(u8::try_from((g / p) % 10).unwrap_or(0));
            }
        }
        let n = i64::try_from(self.digits.len()).unwrap_or(0);
        Dec {
            neg: self.neg,
            digits,
            exp: (self.weight - n + 1) * DEC_DIGITS,
            dscale: self.dscale,
        }
    }

    /// PG's `strip_var`: no leading or trailing zero digits; zero is positive, weight 0.
    fn strip(&mut self) {
        let lead = self
            .digits
            .iter()
            .position(|&x| x != 0)
            .unwrap_or(self.digits.len());
        self.digits.drain(..lead);
        self.weight -= i64::try_from(lead).unwrap_or(0);
        while self.digits.last() == Some(&0) {
            self.digits.pop();
        }
        if self.digits.is_empty() {
            self.weight = 0;
            self.neg = false;
        }
    }
}

/// PG's `round_var`: round half away from zero at `rscale` decimal places (negative =
/// before the point), setting the display scale.
fn round_var(var: &mut Var, rscale: i64) {
    var.dscale = rscale;
    let di = (var.weight + 1) * DEC_DIGITS + rscale;
    if di < 0 {
        var.digits.clear();
        var.weight = 0;
        var.neg = false;
        return;
    }
    let Ok(mut ndigits) = usize::try_from((di + DEC_DIGITS - 1) / DEC_DIGITS) else {
        return;
    };
    let di = di % DEC_DIGITS;
    if !(ndigits < var.digits.len() || (ndigits == var.digits.len() && di > 0)) {
        return;
    }
    let mut carry;
    if di == 0 {
        carry = i64::from(var.digits.get(ndigits).is_some_and(|&d| d >= HALF_NBASE));
        var.digits.truncate(ndigits);
    } else {
        var.digits.truncate(ndigits);
        let pow10 = [1, 1000, 100, 10][usize::try_from(di).unwrap_or(0)];
        ndigits -= 1;
        let extra = var.digits[ndigits] % pow10;
        var.digits[ndigits] -= extra;
        carry = 0;
        if extra >= pow10 / 2 {
            let mut bumped = pow10 + var.digits[ndigits];
            if bumped >= NBASE {
                bumped -= NBASE;
                carry = 1;
            }
            var.digits[ndigits] = bumped;
        }
    }
    while carry != 0 {
        if ndigits == 0 {
            // Carry out of the top digit: PG's spare leading digit becomes 1.
            var.digits.insert(0, 1);
            var.weight += 1;
            break;
        }
        ndigits -= 1;
        carry += var.digits[ndigits];
        if carry >= NBASE {
            var.digits[ndigits] = carry - NBASE;
            carry = 1;
        } else {
            var.digits[ndigits] = carry;
            carry = 0;
        }
    }
}

/// PG 15's `mul_var`: the product, computed only to `rscale` plus two guard base-10000
/// digits (later input digits are ignored), then rounded to `rscale`.
fn mul_var(a: &Var, b: &Var, rscale: i64) -> Var {
    let (v1, v2) = if a.digits.len() > b.digits.len() {
        (b, a)
    } else {
        (a, b)
    };
    if v1.digits.is_empty() || v2.digits.is_empty() {
        return Var::zero(rscale);
    }
    let res_weight = v1.weight + v2.weight + 2;
    let exact = i64::try_from(v1.digits.len() + v2.digits.len() + 1).unwrap_or(i64::MAX);
    let maxdigits = res_weight + 1 + (rscale + DEC_DIGITS - 1) / DEC_DIGITS + MUL_GUARD_DIGITS;
    let res_ndigits = exact.min(maxdigits);
    if res_ndigits < 3 {
        return Var::zero(rscale);
    }
    let Ok(n) = usize::try_from(res_ndigits) else {
        return Var::zero(rscale);
    };
    // i64 accumulators cannot overflow here (PG normalises its i32 ones now and then,
    // which does not change the sum).
    let mut dig = vec![0i64; n];
    for i1 in (0..v1.digits.len().min(n - 2)).rev() {
        let d1 = v1.digits[i1];
        if d1 == 0 {
            continue;
        }
        let limit = v2.digits.len().min(n - i1 - 2);
        for (i2, &d2) in v2.digits[..limit].iter().enumerate() {
            dig[i1 + i2 + 2] += d1 * d2;
        }
    }
    let mut carry = 0;
    for d in dig.iter_mut().rev() {
        let v = *d + carry;
        carry = v / NBASE;
        *d = v % NBASE;
    }
    let mut result = Var {
        neg: v1.neg != v2.neg,
        weight: res_weight,
        digits: dig,
        dscale: rscale,
    };
    round_var(&mut result, rscale);
    result.strip();
    result
}

/// PG's `div_var(1, base, rscale, round)`, exact.
fn reciprocal(base: &Var, rscale: i64) -> Result<Var, EvalError> {
    let one = Dec {
        neg: false,
        digits: vec![1],
        exp: 0,
        dscale: 0,
    };
    Ok(Var::from_dec(&div_dec(&one, &base.to_dec(), rscale)?))
}

/// PG 15's `power_var_int` for `exp >= -1`.
fn power_var_int(base: &Var, exp: i64, rscale: i64) -> Result<Var, EvalError> {
    match exp {
        0 => {
            let mut one = Var::one();
            one.dscale = rscale;
            return Ok(one);
        }
        1 => {
            let mut r = base.clone();
            round_var(&mut r, rscale);
            return Ok(r);
        }
        -1 => return reciprocal(base, rscale),
        2 => return Ok(mul_var(base, base, rscale)),
        e if e < 0 => return Err(EvalError::Message(UNSUPPORTED_EXPONENT)),
        _ => {}
    }
    if base.digits.is_empty() {
        return Ok(Var::zero(rscale));
    }
    // log10 of the result, from the leading 16 or so digits, as PG estimates it.
    let mut f = base.digits[0] as f64;
    let mut p = base.weight * DEC_DIGITS;
    for (i, &d) in base.digits.iter().enumerate().skip(1) {
        if i * 4 >= 16 {
            break;
        }
        f = f * NBASE as f64 + d as f64;
        p -= DEC_DIGITS;
    }
    let f = exp as f64 * (f.log10() + p as f64);
    if f > (3 * SHRT_MAX * DEC_DIGITS) as f64 {
        return Err(EvalError::NumericOverflow);
    }
    if f + 1.0 < -(rscale as f64) || f + 1.0 < -(NUMERIC_MAX_DISPLAY_SCALE as f64) {
        return Ok(Var::zero(rscale));
    }
    // C's `(int)` truncates toward zero, as `as` does.
    let sig_digits = 1 + rscale + f as i64 + (exp as f64).abs().ln() as i64 + 8;
    let mut mask = u64::try_from(exp).unwrap_or(0);
    let mut base_prod = base.clone();
    let mut result = if mask & 1 == 1 {
        base.clone()
    } else {
        Var::one()
    };
    loop {
        mask >>= 1;
        if mask == 0 {
            break;
        }
        let local = (sig_digits - 2 * base_prod.weight * DEC_DIGITS)
            .min(2 * base_prod.dscale)
            .max(0);
        base_prod = mul_var(&base_prod, &base_prod, local);
        if mask & 1 == 1 {
            let local = (sig_digits - (base_prod.weight + result.weight) * DEC_DIGITS)
                .min(base_prod.dscale + result.dscale)
                .max(0);
            result = mul_var(&base_prod, &result, local);
        }
        if base_prod.weight > SHRT_MAX || result.weight > SHRT_MAX {
            return Err(EvalError::NumericOverflow);
        }
    }
    round_var(&mut result, rscale);
    Ok(result)
}

/// Whether a finite numeric is an integer, and its value if it fits `i64`.
fn integral(d: &Dec) -> (bool, Option<i64>) {
    let Some(first) = d.digits.iter().position(|&x| x != 0) else {
        return (true, Some(0));
    };
    let last = d.digits.iter().rposition(|&x| x != 0).unwrap_or(first);
    let trailing = i64::try_from(d.digits.len() - 1 - last).unwrap_or(0);
    if d.exp + trailing < 0 {
        return (false, None);
    }
    let mut v: Option<i64> = Some(0);
    for &x in &d.digits[first..] {
        v = v.and_then(|v| v.checked_mul(10)?.checked_add(i64::from(x)));
    }
    for _ in 0..d.exp.max(0) {
        v = v.and_then(|v| v.checked_mul(10));
    }
    (true, v.map(|v| if d.neg { -v } else { v }))
}

fn one() -> NumOwned {
    NumOwned::Finite {
        neg: false,
        digits: "1".to_owned(),
        point: 1,
        dscale: 0,
    }
}

fn zero(dscale: u16) -> NumOwned {
    NumOwned::Finite {
        neg: false,
        digits: String::new(),
        point: 0,
        dscale,
    }
}

fn is_one(n: Num<'_>) -> bool {
    matches!(n, Num::Finite { neg: false, hi, lo, point: 1, .. } if format!("{hi}{lo}") == "1")
}

fn is_minus_one(n: Num<'_>) -> bool {
    matches!(n, Num::Finite { neg: true, hi, lo, point: 1, .. } if format!("{hi}{lo}") == "1")
}

/// `|x| > 1` for a finite x.
fn abs_gt_one(n: Num<'_>) -> bool {
    match n {
        Num::Finite { hi, lo, point, .. } => {
            point > 1 || (point == 1 && format!("{hi}{lo}") != "1")
        }
        _ => true,
    }
}

/// PG 15's `numeric_power`.
pub(super) fn numeric_power(a: Num<'_>, b: Num<'_>) -> Result<NumOwned, EvalError> {
    let special = |n: Num<'_>| !matches!(n, Num::Finite { .. });
    // PG's numeric_is_integral: infinities count as integers, NaN does not.
    let integral_num = |n: Num<'_>| match n {
        Num::PosInf | Num::NegInf => true,
        _ => to_dec(n).is_some_and(|d| integral(&d).0),
    };
    let (sign1, sign2) = (sign_of(a), sign_of(b));
    if special(a) || special(b) {
        // POSIX: NaN ^ 0 = 1 and 1 ^ NaN = 1; any other NaN input gives NaN.
        if matches!(a, Num::NaN) {
            return Ok(if !special(b) && sign2 == 0 {
                one()
            } else {
                NumOwned::NaN
            });
        }
        if matches!(b, Num::NaN) {
            return Ok(if is_one(a) { one() } else { NumOwned::NaN });
        }
        if sign1 == 0 && sign2 < 0 {
            return Err(EvalError::Message(
                "zero raised to a negative power is undefined",
            ));
        }
        if sign1 < 0 && !integral_num(b) {
            return Err(EvalError::Message(
                "a negative number raised to a non-integer power yields a complex result",
            ));
        }
        if is_one(a) || sign2 == 0 {
            return Ok(one());
        }
        if sign1 == 0 && sign2 > 0 {
            return Ok(zero(0));
        }
        if matches!(b, Num::PosInf | Num::NegInf) {
            if is_minus_one(a) {
                return Ok(one());
            }
            return Ok(if abs_gt_one(a) == (sign2 > 0) {
                NumOwned::PosInf
            } else {
                zero(0)
            });
        }
        if matches!(a, Num::PosInf) {
            return Ok(if sign2 > 0 { NumOwned::PosInf } else { zero(0) });
        }
        // a = -Infinity, b finite and non-zero.
        if sign2 < 0 {
            return Ok(zero(0));
        }
        let odd = to_dec(b).is_some_and(|d| match integral(&d) {
            (true, Some(v)) => v % 2 != 0,
            (true, None) => d.digits.last().is_some_and(|&x| x % 2 == 1) && d.exp == 0,
            _ => false,
        });
        return Ok(if odd {
            NumOwned::NegInf
        } else {
            NumOwned::PosInf
        });
    }
    if sign1 == 0 && sign2 < 0 {
        return Err(EvalError::Message(
            "zero raised to a negative power is undefined",
        ));
    }
    let (Some(base), Some(exp)) = (to_dec(a), to_dec(b)) else {
        return Err(EvalError::TypeMismatch);
    };
    // PG's power_var.
    let (is_int, value) = integral(&exp);
    if is_int && let Some(e) = value.filter(|v| i32::try_from(*v).is_ok()) {
        let rscale = NUMERIC_MIN_SIG_DIGITS
            .max(base.dscale)
            .clamp(0, NUMERIC_MAX_DISPLAY_SCALE);
        let result = power_var_int(&Var::from_dec(&base), e, rscale)?;
        return from_dec(result.to_dec());
    }
    if sign1 == 0 {
        return Ok(zero(16));
    }
    if sign1 < 0 && !is_int {
        return Err(EvalError::Message(
            "a negative number raised to a non-integer power yields a complex result",
        ));
    }
    Err(EvalError::Message(UNSUPPORTED_EXPONENT))
}
