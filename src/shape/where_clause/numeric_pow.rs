//! `numeric ^ numeric` as PG 15's `numeric_power` computes it.
//!
//! PG raises to an integer power by repeated squaring in its base-10000 `NumericVar` format,
//! and each `mul_var` on the way *truncates* its work at a scale chosen from a floating-point
//! estimate of the result's size, then rounds. The last digit of the answer depends on those
//! truncations, so this module mirrors them: [`Var`] is a `NumericVar`, [`mul_var`] and
//! [`round_var`] are ports of PG 15's, and [`power_var_int`] follows PG step by step.
//!
//! Invariants:
//! * Results match PG 15 digit for digit and in display scale for every input: NaN and
//!   infinity operands (POSIX `pow` rules as PG spells them out), integer exponents in `i32`
//!   range ([`power_var_int`], negative ones finished by PG's approximate [`div_var_fast`]),
//!   and all other exponents through PG's `power_var` ([`ln_var`], [`exp_var`],
//!   [`estimate_ln_dweight`], same scales, same truncations). `sqrt_var`, `div_var_int` and
//!   `div_var(.., round)` are exact-then-rounded in PG, so they are computed exactly here.
//! * PG's errors (zero to a negative power, a negative number to a non-integer power,
//!   overflow) are the same [`EvalError`]s PG raises.
//! * Work is bounded by PG's own limits: result scale ≤ 1000, and `exp × ln(base)` is
//!   checked at low precision (|x| > 6020 overflows or underflows) before the real work.
//!   Integer powers are also checked up front against numeric's range (10^131072), which PG
//!   only finds out after the multiplications; the largest in-range result (131072 digits)
//!   still costs what it costs PG, a few hundred million digit products.

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

/// PG 15's `DIV_GUARD_DIGITS`.
const DIV_GUARD_DIGITS: i64 = 4;
/// PG's `NUMERIC_MAX_RESULT_SCALE` (`NUMERIC_MAX_PRECISION * 2`).
const NUMERIC_MAX_RESULT_SCALE: i64 = 2000;
// PG's own spellings of log10(e), log10(2) and ln(10): their last bits decide scales.
#[allow(clippy::approx_constant)]
const PG_LOG10_E: f64 = 0.434294481903252;
#[allow(clippy::approx_constant)]
const PG_LOG10_2: f64 = 0.301029995663981;
#[allow(clippy::approx_constant)]
const PG_LN_10: f64 = 2.302585092994046;

impl Var {
    fn int(v: i64) -> Var {
        let mut digits = Vec::new();
        let mut m = v.unsigned_abs();
        let mut weight = -1;
        while m > 0 {
            digits.insert(0, i64::try_from(m % 10_000).unwrap_or(0));
            m /= 10_000;
            weight += 1;
        }
        let mut r = Var {
            neg: v < 0,
            weight: weight.max(0),
            digits,
            dscale: 0,
        };
        r.strip();
        r
    }

    /// A constant with one fractional decimal digit (0.9, 1.1).
    fn tenths(v: i64) -> Var {
        let mut r = Var::from_dec(&Dec {
            neg: false,
            digits: vec![
                u8::try_from(v / 10).unwrap_or(0),
                u8::try_from(v % 10).unwrap_or(0),
            ],
            exp: -1,
            dscale: 1,
        });
        r.dscale = 1;
        r
    }

    fn negated(&self) -> Var {
        let mut r = self.clone();
        r.neg = !r.neg && !r.digits.is_empty();
        r
    }
}

/// Compare magnitudes.
fn cmp_abs(a: &Var, b: &Var) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.digits.is_empty(), b.digits.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    if a.weight != b.weight {
        return a.weight.cmp(&b.weight);
    }
    let n = a.digits.len().max(b.digits.len());
    for i in 0..n {
        let x = a.digits.get(i).copied().unwrap_or(0);
        let y = b.digits.get(i).copied().unwrap_or(0);
        if x != y {
            return x.cmp(&y);
        }
    }
    Ordering::Equal
}

/// PG's `cmp_var`.
fn cmp_var(a: &Var, b: &Var) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let sign = |v: &Var| {
        if v.digits.is_empty() {
            0
        } else if v.neg {
            -1
        } else {
            1
        }
    };
    match sign(a).cmp(&sign(b)) {
        Ordering::Equal => {}
        o => return o,
    }
    if a.neg { cmp_abs(b, a) } else { cmp_abs(a, b) }
}

/// PG's `add_var` (exact; display scale is the larger of the two).
fn add_var(a: &Var, b: &Var) -> Var {
    let dscale = a.dscale.max(b.dscale);
    if a.digits.is_empty() {
        let mut r = b.clone();
        r.dscale = dscale;
        return r;
    }
    if b.digits.is_empty() {
        let mut r = a.clone();
        r.dscale = dscale;
        return r;
    }
    let last = |v: &Var| v.weight - i64::try_from(v.digits.len()).unwrap_or(0) + 1;
    let lo = last(a).min(last(b));
    let hi = a.weight.max(b.weight) + 1;
    let n = usize::try_from(hi - lo + 1).unwrap_or(0);
    let mut acc = vec![0i64; n];
    let (big, small, neg) = if a.neg == b.neg || cmp_abs(a, b) != std::cmp::Ordering::Less {
        (a, b, a.neg)
    } else {
        (b, a, b.neg)
    };
    let sub = big.neg != small.neg;
    for (v, sign) in [(big, 1), (small, if sub { -1 } else { 1 })] {
        for (i, &d) in v.digits.iter().enumerate() {
            let pos = v.weight - i64::try_from(i).unwrap_or(0);
            let idx = usize::try_from(hi - pos).unwrap_or(0);
            acc[idx] += sign * d;
        }
    }
    let mut carry = 0;
    for d in acc.iter_mut().rev() {
        let mut v = *d + carry;
        carry = 0;
        if v < 0 {
            v += NBASE;
            carry = -1;
        } else if v >= NBASE {
            v -= NBASE;
            carry = 1;
        }
        *d = v;
    }
    let mut r = Var {
        neg,
        weight: hi,
        digits: acc,
        dscale,
    };
    r.strip();
    r
}

fn sub_var(a: &Var, b: &Var) -> Var {
    add_var(a, &b.negated())
}

/// `a / b` rounded half away from zero at `rscale`, exactly: PG's `div_var(.., true)` and
/// `div_var_int(.., true)` (which computes one digit beyond `rscale` exactly, then rounds).
fn div_round(a: &Var, b: &Var, rscale: i64) -> Result<Var, EvalError> {
    if b.digits.is_empty() {
        return Err(EvalError::DivisionByZero);
    }
    if b.digits.len() <= 2 {
        let mut ival = b.digits[0];
        let mut ival_weight = b.weight;
        if let Some(&d) = b.digits.get(1) {
            ival = ival * NBASE + d;
            ival_weight -= 1;
        }
        return Ok(div_var_int(a, ival, b.neg, ival_weight, rscale));
    }
    let mut r = Var::from_dec(&div_dec(&a.to_dec(), &b.to_dec(), rscale)?);
    r.dscale = rscale;
    Ok(r)
}

/// PG's `div_var_int(var, ival, ival_weight, result, rscale, true)`: short division, one
/// base-10000 digit beyond `rscale`, then rounded (so the correctly rounded quotient).
fn div_var_int(var: &Var, ival: i64, ival_neg: bool, ival_weight: i64, rscale: i64) -> Var {
    if var.digits.is_empty() || ival == 0 {
        return Var::zero(rscale);
    }
    let res_weight = var.weight - ival_weight;
    let res_ndigits = (res_weight + 1 + (rscale + DEC_DIGITS - 1) / DEC_DIGITS).max(1) + 1;
    let n = usize::try_from(res_ndigits).unwrap_or(1);
    let mut digits = Vec::with_capacity(n);
    let mut carry: i64 = 0;
    for i in 0..n {
        carry = carry * NBASE + var.digits.get(i).copied().unwrap_or(0);
        digits.push(carry / ival);
        carry %= ival;
    }
    let mut r = Var {
        neg: var.neg != ival_neg,
        weight: res_weight,
        digits,
        dscale: rscale,
    };
    round_var(&mut r, rscale);
    r.strip();
    r
}

/// PG 15's `div_var_fast(var1, var2, result, rscale, true)`: one- and two-digit divisors go
/// to the exact `div_var_int`; longer ones use PG's floating-point quotient estimates, whose
/// last digits can differ from a correctly rounded quotient.
fn div_var_fast(v1: &Var, v2: &Var, rscale: i64) -> Result<Var, EvalError> {
    if v2.digits.is_empty() {
        return Err(EvalError::DivisionByZero);
    }
    if v2.digits.len() <= 2 {
        return div_round(v1, v2, rscale);
    }
    if v1.digits.is_empty() {
        return Ok(Var::zero(rscale));
    }
    let res_weight = v1.weight - v2.weight + 1;
    let div_ndigits = (res_weight + 1 + (rscale + DEC_DIGITS - 1) / DEC_DIGITS + DIV_GUARD_DIGITS)
        .max(DIV_GUARD_DIGITS);
    let Ok(n) = usize::try_from(div_ndigits) else {
        return Ok(Var::zero(rscale));
    };
    let nbase = NBASE as f64;
    let mut div = vec![0i64; n + 1];
    for (i, &d) in v1.digits.iter().take(n).enumerate() {
        div[i + 1] = d;
    }
    let v2d = &v2.digits;
    let v2n = v2d.len();
    let mut fdivisor = v2d[0] as f64;
    for i in 1..4 {
        fdivisor *= nbase;
        if let Some(&d) = v2d.get(i) {
            fdivisor += d as f64;
        }
    }
    let inverse = 1.0 / fdivisor;
    let estimate = |div: &[i64], qi: usize| -> i64 {
        let mut fdividend = div[qi] as f64;
        for i in 1..4 {
            fdividend *= nbase;
            if qi + i <= n {
                fdividend += div[qi + i] as f64;
            }
        }
        let fq = fdividend * inverse;
        // C's (int) truncates; PG then rounds towards minus infinity.
        if fq >= 0.0 { fq as i64 } else { fq as i64 - 1 }
    };
    let normalise = |newdig: i64| -> (i64, i64) {
        if newdig < 0 {
            let carry = -((-newdig - 1) / NBASE) - 1;
            (newdig - carry * NBASE, carry)
        } else if newdig >= NBASE {
            let carry = newdig / NBASE;
            (newdig - carry * NBASE, carry)
        } else {
            (newdig, 0)
        }
    };
    const INT_MAX: i64 = i32::MAX as i64;
    let mut maxdiv: i64 = 1;
    for qi in 0..n {
        let mut qdigit = estimate(&div, qi);
        if qdigit != 0 {
            maxdiv += qdigit.abs();
            if maxdiv > (INT_MAX - INT_MAX / NBASE - 1) / (NBASE - 1) {
                let mut carry = 0;
                let mut i = (qi + v2n - 2).min(n);
                while i > qi {
                    let (d, c) = normalise(div[i] + carry);
                    div[i] = d;
                    carry = c;
                    i -= 1;
                }
                div[qi] += carry;
                maxdiv = 1;
                qdigit = estimate(&div, qi);
                maxdiv += qdigit.abs();
            }
            if qdigit != 0 {
                let istop = v2n.min(n - qi + 1);
                for i in 0..istop {
                    div[qi + i] -= qdigit * v2d[i];
                }
            }
        }
        div[qi + 1] += div[qi] * NBASE;
        div[qi] = qdigit;
    }
    let mut fdividend = div[n] as f64;
    for _ in 1..4 {
        fdividend *= nbase;
    }
    let fq = fdividend * inverse;
    div[n] = if fq >= 0.0 { fq as i64 } else { fq as i64 - 1 };
    let mut carry = 0;
    for d in div.iter_mut().rev() {
        let (v, c) = normalise(*d + carry);
        *d = v;
        carry = c;
    }
    let mut result = Var {
        neg: v1.neg != v2.neg,
        weight: res_weight,
        digits: div,
        dscale: rscale,
    };
    round_var(&mut result, rscale);
    result.strip();
    Ok(result)
}

/// Truncate towards zero at `scale` fractional decimal digits (PG's `trunc_var`).
fn trunc_var(v: &Var, scale: i64) -> Var {
    let mut d = v.to_dec();
    let keep = i64::try_from(d.digits.len()).unwrap_or(0) + d.exp + scale;
    if keep < i64::try_from(d.digits.len()).unwrap_or(0) {
        let keep = usize::try_from(keep.max(0)).unwrap_or(0);
        let cut = d.digits.len() - keep;
        d.digits.truncate(keep);
        d.exp += i64::try_from(cut).unwrap_or(0);
    }
    let mut r = Var::from_dec(&d);
    r.dscale = scale;
    r
}

/// PG 15's `sqrt_var`: the exact square root truncated one decimal digit (at least) beyond
/// `rscale`, then rounded, which is the correctly rounded root (`rscale` may be negative).
/// Computed here by Newton's method, then made exact by comparing squares.
fn sqrt_var(x: &Var, rscale: i64) -> Var {
    if x.digits.is_empty() || x.neg {
        return Var::zero(rscale);
    }
    let grid = rscale + 1;
    // Start from a double estimate: x = m × 10000^w with m in [1, 10^8).
    let mut w = x.weight;
    let mut m = x.digits[0] as f64;
    if let Some(&d) = x.digits.get(1) {
        m += d as f64 / NBASE as f64;
    }
    if w.rem_euclid(2) != 0 {
        m *= NBASE as f64;
        w -= 1;
    }
    let est = format!("{:.17e}", m.sqrt());
    let (mant, e10) = est.split_once('e').unwrap_or(("1", "0"));
    let e10: i64 = e10.parse().unwrap_or(0);
    let mant_digits: Vec<u8> = mant
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let mant_len = i64::try_from(mant_digits.len()).unwrap_or(1);
    let mut y = Var::from_dec(&Dec {
        neg: false,
        digits: mant_digits,
        exp: e10 - (mant_len - 1) + (w / 2) * DEC_DIGITS,
        dscale: 0,
    });
    // Working precision: a few digits beyond the grid.
    let prec = grid + 8;
    let half = Var::from_dec(&Dec {
        neg: false,
        digits: vec![5],
        exp: -1,
        dscale: 1,
    });
    for _ in 0..64 {
        let Ok(q) = div_var_fast(x, &y, prec) else {
            break;
        };
        let next = mul_var(&add_var(&y, &q), &half, prec);
        let done = cmp_var(&next, &y) == std::cmp::Ordering::Equal;
        y = next;
        if done {
            break;
        }
        // Converged to within a few units of the working precision.
        let diff = sub_var(&y, &q);
        if diff.digits.is_empty() || (diff.weight + 1) * DEC_DIGITS < -prec + 4 {
            let q2 = div_var_fast(x, &y, prec).unwrap_or_else(|_| y.clone());
            y = mul_var(&add_var(&y, &q2), &half, prec);
            break;
        }
    }
    // t = the largest multiple of 10^-grid with t² ≤ x.
    let ulp = Var::from_dec(&Dec {
        neg: false,
        digits: vec![1],
        exp: -grid,
        dscale: grid.max(0),
    });
    let sq_scale = (2 * grid).max(0);
    let mut t = trunc_var(&y, grid);
    for _ in 0..64 {
        if cmp_var(&mul_var(&t, &t, sq_scale), x) == std::cmp::Ordering::Greater {
            t = sub_var(&t, &ulp);
        } else {
            break;
        }
    }
    for _ in 0..64 {
        let up = add_var(&t, &ulp);
        if cmp_var(&mul_var(&up, &up, sq_scale), x) != std::cmp::Ordering::Greater {
            t = up;
        } else {
            break;
        }
    }
    round_var(&mut t, rscale);
    t.dscale = rscale;
    t
}

/// PG's `numericvar_to_double_no_overflow` (the decimal text through `strtod`).
fn to_f64(v: &Var) -> f64 {
    let d = v.to_dec();
    let digits: String = d.digits.iter().map(|&x| char::from(b'0' + x)).collect();
    if digits.is_empty() {
        return 0.0;
    }
    let text = format!("{}{digits}e{}", if d.neg { "-" } else { "" }, d.exp);
    text.parse().unwrap_or(0.0)
}

/// PG 15's `estimate_ln_dweight`.
fn estimate_ln_dweight(v: &Var) -> i64 {
    use std::cmp::Ordering;
    if v.neg {
        return 0;
    }
    if cmp_var(v, &Var::tenths(9)) != Ordering::Less
        && cmp_var(v, &Var::tenths(11)) != Ordering::Greater
    {
        let x = sub_var(v, &Var::one());
        match x.digits.first() {
            Some(&d) => x.weight * DEC_DIGITS + (d as f64).log10() as i64,
            None => 0,
        }
    } else if let Some(&first) = v.digits.first() {
        let mut digits = first;
        let mut dweight = v.weight * DEC_DIGITS;
        if let Some(&second) = v.digits.get(1) {
            digits = digits * NBASE + second;
            dweight -= DEC_DIGITS;
        }
        let ln = (digits as f64).ln() + dweight as f64 * PG_LN_10;
        ln.abs().log10() as i64
    } else {
        0
    }
}

/// PG 15's `ln_var` for a positive argument.
fn ln_var(arg: &Var, rscale: i64) -> Result<Var, EvalError> {
    use std::cmp::Ordering;
    let mut x = arg.clone();
    let two = Var::int(2);
    let mut fact = two.clone();
    let mut nsqrt: i64 = 0;
    while cmp_var(&x, &Var::tenths(9)) != Ordering::Greater {
        let local = rscale - x.weight * DEC_DIGITS / 2 + 8;
        x = sqrt_var(&x, local);
        fact = mul_var(&fact, &two, 0);
        nsqrt += 1;
    }
    while cmp_var(&x, &Var::tenths(11)) != Ordering::Less {
        let local = rscale - x.weight * DEC_DIGITS / 2 + 8;
        x = sqrt_var(&x, local);
        fact = mul_var(&fact, &two, 0);
        nsqrt += 1;
    }
    let local = rscale + ((nsqrt + 1) as f64 * PG_LOG10_2) as i64 + 8;
    let mut result = div_var_fast(&sub_var(&x, &Var::one()), &add_var(&x, &Var::one()), local)?;
    let mut xx = result.clone();
    let x2 = mul_var(&result, &result, local);
    let mut ni = 1;
    loop {
        ni += 2;
        xx = mul_var(&xx, &x2, local);
        let elem = div_round(&xx, &Var::int(ni), local)?;
        if elem.digits.is_empty() {
            break;
        }
        result = add_var(&result, &elem);
        if elem.weight < result.weight - local * 2 / DEC_DIGITS {
            break;
        }
    }
    Ok(mul_var(&result, &fact, rscale))
}

/// PG 15's `exp_var`.
fn exp_var(arg: &Var, rscale: i64) -> Result<Var, EvalError> {
    let mut x = arg.clone();
    let val = to_f64(&x);
    if val.abs() >= (NUMERIC_MAX_RESULT_SCALE * 3) as f64 {
        if val > 0.0 {
            return Err(EvalError::NumericOverflow);
        }
        return Ok(Var::zero(rscale));
    }
    let dweight = (val * PG_LOG10_E) as i64;
    let mut ndiv2: i64 = 0;
    if val.abs() > 0.01 {
        ndiv2 = 1;
        let mut v = val / 2.0;
        while v.abs() > 0.01 {
            ndiv2 += 1;
            v /= 2.0;
        }
        let local = x.dscale + ndiv2;
        x = div_round(&x, &Var::int(1 << ndiv2), local)?;
    }
    let sig_digits = (1 + dweight + rscale + (ndiv2 as f64 * PG_LOG10_2) as i64).max(0) + 8;
    let local = sig_digits - 1;
    let mut result = add_var(&Var::one(), &x);
    let mut elem = mul_var(&x, &x, local);
    let mut ni = 2;
    elem = div_round(&elem, &Var::int(ni), local)?;
    while !elem.digits.is_empty() {
        result = add_var(&result, &elem);
        elem = mul_var(&elem, &x, local);
        ni += 1;
        elem = div_round(&elem, &Var::int(ni), local)?;
    }
    for _ in 0..ndiv2 {
        let local = (sig_digits - result.weight * 2 * DEC_DIGITS).max(0);
        result = mul_var(&result, &result, local);
    }
    round_var(&mut result, rscale);
    Ok(result)
}

/// PG 15's `power_var` past its integer shortcut: `exp(exp × ln(base))` for a positive
/// base, with PG's scale choices.
fn power_var_general(base: &Var, exp: &Var) -> Result<Var, EvalError> {
    let ln_dweight = estimate_ln_dweight(base);
    let local = (8 - ln_dweight).max(0);
    let ln_base = ln_var(base, local)?;
    let ln_num = mul_var(&ln_base, exp, local);
    let mut val = to_f64(&ln_num);
    if val.abs() > NUMERIC_MAX_RESULT_SCALE as f64 * 3.01 {
        if val > 0.0 {
            return Err(EvalError::NumericOverflow);
        }
        return Ok(Var::zero(NUMERIC_MAX_DISPLAY_SCALE));
    }
    val *= PG_LOG10_E;
    let rscale = (NUMERIC_MIN_SIG_DIGITS - val as i64)
        .max(base.dscale)
        .max(exp.dscale)
        .clamp(0, NUMERIC_MAX_DISPLAY_SCALE);
    let sig_digits = (rscale + val as i64).max(0);
    let local = (sig_digits - ln_dweight + 8).max(0);
    let ln_base = ln_var(base, local)?;
    let ln_num = mul_var(&ln_base, exp, local);
    exp_var(&ln_num, rscale)
}

/// PG 15's `power_var_int` (any `i32` exponent).
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
    // Not in PG, same outcome: a result of 10^131072 or more has a weight above SHRT_MAX,
    // which PG refuses (in the loop below or when it stores the result) only after computing
    // up to 2^17 digits, seconds of work per row here. `f` is within ~1e-6 of the result's
    // log10 (16 leading digits, |exp| < 2^31), so one digit of margin leaves every
    // representable result to the loop.
    if f > ((SHRT_MAX + 1) * DEC_DIGITS + 1) as f64 {
        return Err(EvalError::NumericOverflow);
    }
    if f + 1.0 < -(rscale as f64) || f + 1.0 < -(NUMERIC_MAX_DISPLAY_SCALE as f64) {
        return Ok(Var::zero(rscale));
    }
    // C's `(int)` truncates toward zero, as `as` does.
    let sig_digits = 1 + rscale + f as i64 + (exp as f64).abs().ln() as i64 + 8;
    let mut neg = exp < 0;
    let mut mask = exp.unsigned_abs();
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
            // Overflow, unless the exponent is negative: then the result is zero.
            if !neg {
                return Err(EvalError::NumericOverflow);
            }
            result = Var::zero(0);
            neg = false;
            break;
        }
    }
    if neg {
        return div_var_fast(&Var::one(), &result, rscale);
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
    // An odd integer exponent keeps a negative base's sign.
    let units = i64::try_from(exp.digits.len()).unwrap_or(0) - 1 + exp.exp.min(0);
    let odd = is_int
        && exp.exp <= 0
        && usize::try_from(units)
            .ok()
            .and_then(|i| exp.digits.get(i))
            .is_some_and(|&x| x % 2 == 1);
    let mut base_v = Var::from_dec(&base);
    base_v.neg = false;
    let mut result = power_var_general(&base_v, &Var::from_dec(&exp))?;
    result.neg = sign1 < 0 && odd && !result.digits.is_empty();
    from_dec(result.to_dec())
}
