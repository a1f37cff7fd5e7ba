//! `interval`: PG's input forms, a canonical input text, normalised comparison, the
//! `justify_*` functions, and date/time arithmetic (`± interval`, `interval * / float8`).
//!
//! Invariants:
//! * An interval is PG's triple (months, days, µs), each kept separately (`'1 day'` and
//!   `'24 hours'` are different values that compare equal).
//! * Comparison is PG's `interval_cmp`: on the span `µs + days·24h + months·30·24h`, as i128.
//! * Input accepted: ISO 8601 designators (`P1Y2M3DT4H5M6.5S`, the output form of
//!   `IntervalStyle=iso_8601`, negative components included), PG's verbose form (`1 year 2
//!   mons -3 days 04:05:06.5`, `@ … ago`, unit abbreviations) and the SQL-standard
//!   `Y-M` / `D H:M:S` fields. Fractions are accepted on seconds (and in `H:M:S`) only; PG's
//!   fractional spill of other units (`1.5 days`) is refused rather than approximated.
//! * Every step is checked: a component out of range is `None` (PG: "interval out of range").
//! * `interval * float8` and `interval / float8` replay PG 15's floating-point steps in the
//!   same order (see [`scale`]), so the rounding of the cascaded fractions is PG's.

use std::cmp::Ordering;

use super::eval::EvalError;
use super::values::{
    END_DATE, END_TIMESTAMP, MIN_DATE, MIN_TIMESTAMP, UNIX_TO_PG_DAYS, civil_from_days,
    days_from_civil, days_in_month,
};

pub(super) const USECS_PER_DAY: i64 = 86_400_000_000;
const DAYS_PER_MONTH: i64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(super) struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Interval {
    /// PG's comparison span in µs.
    pub fn span(&self) -> i128 {
        i128::from(self.micros)
            + i128::from(self.days) * i128::from(USECS_PER_DAY)
            + i128::from(self.months) * i128::from(DAYS_PER_MONTH) * i128::from(USECS_PER_DAY)
    }

    pub fn cmp_span(&self, other: &Interval) -> Ordering {
        self.span().cmp(&other.span())
    }

    /// ISO 8601 text PG reads back as exactly this triple.
    pub fn canonical_text(&self) -> String {
        let mut out = format!("P{}M{}D", self.months, self.days);
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        let (secs, frac) = (abs / 1_000_000, abs % 1_000_000);
        out.push_str(&format!("T{sign}{secs}"));
        if frac != 0 {
            let f = format!("{frac:06}");
            out.push('.');
            out.push_str(f.trim_end_matches('0'));
        }
        out.push('S');
        out
    }
}

#[derive(Default)]
struct Acc {
    months: i64,
    days: i64,
    micros: i64,
}

impl Acc {
    fn add_months(&mut self, v: i64) -> Option<()> {
        self.months = self.months.checked_add(v)?;
        Some(())
    }
    fn add_days(&mut self, v: i64) -> Option<()> {
        self.days = self.days.checked_add(v)?;
        Some(())
    }
    fn add_micros(&mut self, v: i64) -> Option<()> {
        self.micros = self.micros.checked_add(v)?;
        Some(())
    }
    fn finish(self, negate: bool) -> Option<Interval> {
        let (m, d, u) = if negate {
            (
                self.months.checked_neg()?,
                self.days.checked_neg()?,
                self.micros.checked_neg()?,
            )
        } else {
            (self.months, self.days, self.micros)
        };
        Some(Interval {
            months: i32::try_from(m).ok()?,
            days: i32::try_from(d).ok()?,
            micros: u,
        })
    }
}

/// A signed decimal: integer part, and the fraction in µs (only where allowed).
fn number(s: &str) -> Option<(bool, i64, i64)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f_us = 0i64;
    if let Some(f) = frac {
        if !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // PG rounds the fraction to µs (rint: half to even on the 7th digit onward).
        let digits: Vec<i64> = f.bytes().map(|b| i64::from(b - b'0')).collect();
        for k in 0..6 {
            f_us = f_us * 10 + digits.get(k).copied().unwrap_or(0);
        }
        let rest = &digits[digits.len().min(6)..];
        let round_up = match rest.first() {
            Some(&d) if d > 5 => true,
            Some(&5) => rest[1..].iter().any(|&d| d != 0) || f_us % 2 == 1,
            _ => false,
        };
        if round_up {
            f_us += 1;
        }
    }
    Some((neg, i, f_us))
}

fn signed(neg: bool, v: i64) -> Option<i64> {
    if neg { v.checked_neg() } else { Some(v) }
}

/// `[-+]h:m[:s[.f]]` as µs.
fn clock(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let parts: Vec<&str> = body.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let int = |p: &str| -> Option<i64> {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()
        } else {
            None
        }
    };
    let h = int(parts[0])?;
    let m = int(parts[1])?;
    if m > 59 {
        return None;
    }
    let mut us = h.checked_mul(3_600_000_000)?.checked_add(m * 60_000_000)?;
    if let Some(sec) = parts.get(2) {
        let (sneg, s, f) = number(sec)?;
        if sneg || s > 60 || sec.starts_with('+') {
            return None;
        }
        us = us.checked_add(s * 1_000_000 + f)?;
    }
    signed(neg, us)
}

/// µs per unit for the time units, months/days for the others.
enum Unit {
    Micros(i64),
    Days(i64),
    Months(i64),
}

fn unit(word: &str) -> Option<Unit> {
    Some(match word.to_ascii_lowercase().as_str() {
        "microsecond" | "microseconds" | "microsecon" | "us" | "usec" | "usecs" | "useconds" => {
            Unit::Micros(1)
        }
        "millisecond" | "milliseconds" | "millisecon" | "ms" | "msec" | "msecs" | "mseconds" => {
            Unit::Micros(1_000)
        }
        "second" | "seconds" | "s" | "sec" | "secs" => Unit::Micros(1_000_000),
        "minute" | "minutes" | "m" | "min" | "mins" => Unit::Micros(60_000_000),
        "hour" | "hours" | "h" | "hr" | "hrs" => Unit::Micros(3_600_000_000),
        "day" | "days" | "d" => Unit::Days(1),
        "week" | "weeks" | "w" => Unit::Days(7),
        "month" | "months" | "mon" | "mons" => Unit::Months(1),
        "year" | "years" | "y" | "yr" | "yrs" => Unit::Months(12),
        "decade" | "decades" | "dec" | "decs" => Unit::Months(120),
        "century" | "centuries" | "c" | "cent" => Unit::Months(1200),
        "millennium" | "millennia" | "mil" | "mils" | "millenniums" => Unit::Months(12_000),
        _ => return None,
    })
}

fn add_unit(acc: &mut Acc, neg: bool, int: i64, frac_us: i64, u: &Unit) -> Option<()> {
    match *u {
        Unit::Micros(scale) => {
            if frac_us != 0 && scale != 1_000_000 {
                return None;
            }
            let v = int.checked_mul(scale)?.checked_add(frac_us)?;
            acc.add_micros(signed(neg, v)?)
        }
        Unit::Days(k) if frac_us == 0 => acc.add_days(signed(neg, int.checked_mul(k)?)?),
        Unit::Months(k) if frac_us == 0 => acc.add_months(signed(neg, int.checked_mul(k)?)?),
        _ => None,
    }
}

fn parse_iso(body: &str) -> Option<Interval> {
    let mut acc = Acc::default();
    let mut in_time = false;
    let mut rest = body;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('T') {
            if in_time || r.is_empty() {
                return None;
            }
            in_time = true;
            rest = r;
            continue;
        }
        let end = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .filter(|&i| i > 0)?;
        let (num, tail) = rest.split_at(end);
        let designator = tail.chars().next()?;
        rest = &tail[designator.len_utf8()..];
        let (neg, int, frac) = number(num)?;
        let u = match (in_time, designator) {
            (false, 'Y') => Unit::Months(12),
            (false, 'M') => Unit::Months(1),
            (false, 'W') => Unit::Days(7),
            (false, 'D') => Unit::Days(1),
            (true, 'H') => Unit::Micros(3_600_000_000),
            (true, 'M') => Unit::Micros(60_000_000),
            (true, 'S') => Unit::Micros(1_000_000),
            _ => return None,
        };
        add_unit(&mut acc, neg, int, frac, &u)?;
    }
    acc.finish(false)
}

/// Parses PG interval input (see the module invariants for the accepted forms).
pub(super) fn parse_interval(text: &str) -> Option<Interval> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if let Some(body) = t.strip_prefix('P') {
        return parse_iso(body);
    }
    let mut tokens: Vec<&str> = t.split_ascii_whitespace().collect();
    if tokens.first() == Some(&"@") {
        tokens.remove(0);
    } else if let Some(first) = tokens.first_mut()
        && let Some(r) = first.strip_prefix('@')
    {
        *first = r;
    }
    let mut negate = false;
    if tokens.last().is_some_and(|w| w.eq_ignore_ascii_case("ago")) {
        tokens.pop();
        negate = true;
    }
    if tokens.is_empty() {
        return None;
    }
    let mut acc = Acc::default();
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i];
        i += 1;
        if tok.contains(':') {
            acc.add_micros(clock(tok)?)?;
            continue;
        }
        // SQL-standard year-month: `[-+]Y-M`.
        let body = tok.trim_start_matches(['-', '+']);
        if let Some((y, m)) = body.split_once('-')
            && !y.is_empty()
            && y.bytes().all(|b| b.is_ascii_digit())
            && m.bytes().all(|b| b.is_ascii_digit())
            && !m.is_empty()
        {
            let neg = tok.starts_with('-');
            let m: i64 = m.parse().ok()?;
            if m > 11 {
                return None;
            }
            let months = y.parse::<i64>().ok()?.checked_mul(12)?.checked_add(m)?;
            acc.add_months(signed(neg, months)?)?;
            continue;
        }
        // A number with its unit attached (`3days`) or in the next token.
        let split = tok
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(tok.len());
        let (num, attached) = tok.split_at(split);
        let (neg, int, frac) = number(num)?;
        let u = if !attached.is_empty() {
            unit(attached)?
        } else if let Some(u) = tokens.get(i).and_then(|w| unit(w)) {
            i += 1;
            u
        } else if tokens.get(i).is_some_and(|w| w.contains(':')) {
            // SQL-standard `D H:M:S`.
            Unit::Days(1)
        } else if i == tokens.len() {
            // A bare trailing number is seconds.
            Unit::Micros(1_000_000)
        } else {
            return None;
        };
        add_unit(&mut acc, neg, int, frac, &u)?;
    }
    acc.finish(negate)
}

fn out_of_range() -> EvalError {
    EvalError::OutOfRange {
        type_name: "interval",
    }
}

fn fit(months: i64, days: i64, micros: i64) -> Result<Interval, EvalError> {
    Ok(Interval {
        months: i32::try_from(months).map_err(|_| out_of_range())?,
        days: i32::try_from(days).map_err(|_| out_of_range())?,
        micros,
    })
}

/// `justify_hours`: whole days out of the µs.
pub(super) fn justify_hours(v: Interval) -> Result<Interval, EvalError> {
    let mut days = i64::from(v.days) + v.micros / USECS_PER_DAY;
    let mut micros = v.micros % USECS_PER_DAY;
    if days > 0 && micros < 0 {
        micros += USECS_PER_DAY;
        days -= 1;
    } else if days < 0 && micros > 0 {
        micros -= USECS_PER_DAY;
        days += 1;
    }
    fit(i64::from(v.months), days, micros)
}

/// `justify_days`: whole 30-day months out of the days.
pub(super) fn justify_days(v: Interval) -> Result<Interval, EvalError> {
    let mut months = i64::from(v.months) + i64::from(v.days) / DAYS_PER_MONTH;
    let mut days = i64::from(v.days) % DAYS_PER_MONTH;
    if months > 0 && days < 0 {
        days += DAYS_PER_MONTH;
        months -= 1;
    } else if months < 0 && days > 0 {
        days -= DAYS_PER_MONTH;
        months += 1;
    }
    fit(months, days, v.micros)
}

/// `justify_interval` (PG's algorithm, step by step).
pub(super) fn justify_interval(v: Interval) -> Result<Interval, EvalError> {
    let (mut month, mut day, mut time) = (i64::from(v.months), i64::from(v.days), v.micros);
    if (day > 0 && time > 0) || (day < 0 && time < 0) {
        let whole = day / DAYS_PER_MONTH;
        day -= whole * DAYS_PER_MONTH;
        month += whole;
    }
    let whole_day = time / USECS_PER_DAY;
    time -= whole_day * USECS_PER_DAY;
    day += whole_day;
    let whole = day / DAYS_PER_MONTH;
    day -= whole * DAYS_PER_MONTH;
    month += whole;
    if month > 0 && (day < 0 || (day == 0 && time < 0)) {
        day += DAYS_PER_MONTH;
        month -= 1;
    } else if month < 0 && (day > 0 || (day == 0 && time > 0)) {
        day -= DAYS_PER_MONTH;
        month += 1;
    }
    if day > 0 && time < 0 {
        time += USECS_PER_DAY;
        day -= 1;
    } else if day < 0 && time > 0 {
        time -= USECS_PER_DAY;
        day += 1;
    }
    fit(month, day, time)
}

/// `interval ± interval`, component-wise with PG's overflow errors.
pub(super) fn add(a: Interval, b: Interval, subtract: bool) -> Result<Interval, EvalError> {
    let s = if subtract { -1 } else { 1 };
    let months = i64::from(a.months) + s * i64::from(b.months);
    let days = i64::from(a.days) + s * i64::from(b.days);
    let micros = if subtract {
        a.micros.checked_sub(b.micros)
    } else {
        a.micros.checked_add(b.micros)
    }
    .ok_or_else(out_of_range)?;
    fit(months, days, micros)
}

fn ts_out_of_range() -> EvalError {
    EvalError::OutOfRange {
        type_name: "timestamp",
    }
}

fn valid_ts(ts: i64) -> Result<i64, EvalError> {
    if (MIN_TIMESTAMP..END_TIMESTAMP).contains(&ts) {
        Ok(ts)
    } else {
        Err(ts_out_of_range())
    }
}

fn is_infinite(v: i64) -> bool {
    v == i64::MIN || v == i64::MAX
}

/// PG's `interval_um` (unary minus), with its overflow error.
pub(super) fn negate(v: Interval) -> Result<Interval, EvalError> {
    Ok(Interval {
        months: v.months.checked_neg().ok_or_else(out_of_range)?,
        days: v.days.checked_neg().ok_or_else(out_of_range)?,
        micros: v.micros.checked_neg().ok_or_else(out_of_range)?,
    })
}

/// PG's `TSROUND`: round to the microsecond (`rint`, ties to even, like the C default mode).
fn tsround(x: f64) -> f64 {
    (x * 1_000_000.0).round_ties_even() / 1_000_000.0
}

/// A double that PG's range checks let through to an `(int32)` cast: its truncation.
fn to_i32(x: f64) -> Result<i32, EvalError> {
    if x.is_nan() || x > f64::from(i32::MAX) || x < f64::from(i32::MIN) {
        return Err(out_of_range());
    }
    // In range (after truncation toward zero, which `as` does), so `as` is exact here.
    Ok(x as i32)
}

/// `interval * float8` (and `float8 * interval`) or `interval / float8`: PG 15's
/// `interval_mul` / `interval_div`, step by step in the same floating-point order. The
/// months and days are scaled separately; the fraction of the months cascades into days
/// (30 per month) and the fraction of the days into time (24 h per day), each rounded to the
/// microsecond, then the time is scaled and rounded. Overflow is PG's "interval out of
/// range"; dividing by zero is "division by zero".
pub(super) fn scale(v: Interval, factor: f64, divide: bool) -> Result<Interval, EvalError> {
    const SECS_PER_DAY: f64 = 86_400.0;
    if divide && factor == 0.0 {
        return Err(EvalError::DivisionByZero);
    }
    let apply = |x: f64| if divide { x / factor } else { x * factor };
    let month = to_i32(apply(f64::from(v.months)))?;
    let mut day = to_i32(apply(f64::from(v.days)))?;
    let month_remainder_days = tsround((apply(f64::from(v.months)) - f64::from(month)) * 30.0);
    // `(int) month_remainder_days`: |value| < 30, so the cast is a plain truncation.
    let whole_remainder_days = month_remainder_days as i32;
    let mut sec_remainder = tsround(
        (apply(f64::from(v.days)) - f64::from(day) + month_remainder_days
            - f64::from(whole_remainder_days))
            * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let extra = (sec_remainder / SECS_PER_DAY) as i32;
        day = day.checked_add(extra).ok_or_else(out_of_range)?;
        sec_remainder -= f64::from(extra) * SECS_PER_DAY;
    }
    day = day
        .checked_add(whole_remainder_days)
        .ok_or_else(out_of_range)?;
    let time = (apply(v.micros as f64) + sec_remainder * 1_000_000.0).round_ties_even();
    // FLOAT8_FITS_IN_INT64: [-2^63, 2^63), both bounds exact doubles.
    let limit = 2f64.powi(63);
    if time.is_nan() || !(-limit..limit).contains(&time) {
        return Err(out_of_range());
    }
    Ok(Interval {
        months: month,
        days: day,
        micros: time as i64,
    })
}

/// `timestamp ± interval` (also timestamptz, in UTC): months with the day clamped to the
/// month's length, then days, then µs, as PG's `timestamp_pl_interval`.
pub(super) fn ts_plus(ts: i64, v: Interval, subtract: bool) -> Result<i64, EvalError> {
    let v = if subtract { negate(v)? } else { v };
    if is_infinite(ts) {
        return Ok(ts);
    }
    let mut ts = ts;
    if v.months != 0 {
        let (days, time) = (ts.div_euclid(USECS_PER_DAY), ts.rem_euclid(USECS_PER_DAY));
        let (y, m, d) = civil_from_days(days + UNIX_TO_PG_DAYS);
        let total = y * 12 + (m - 1) + i64::from(v.months);
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let nd = d.min(days_in_month(ny, nm));
        let new_days = days_from_civil(ny, nm, nd) - UNIX_TO_PG_DAYS;
        ts = valid_ts(
            new_days
                .checked_mul(USECS_PER_DAY)
                .and_then(|x| x.checked_add(time))
                .ok_or_else(ts_out_of_range)?,
        )?;
    }
    if v.days != 0 {
        ts = valid_ts(
            i64::from(v.days)
                .checked_mul(USECS_PER_DAY)
                .and_then(|d| ts.checked_add(d))
                .ok_or_else(ts_out_of_range)?,
        )?;
    }
    valid_ts(ts.checked_add(v.micros).ok_or_else(ts_out_of_range)?)
}

/// `timestamp - timestamp` (PG justifies the hours of the result).
pub(super) fn ts_minus_ts(a: i64, b: i64) -> Result<Interval, EvalError> {
    if is_infinite(a) || is_infinite(b) {
        return Err(EvalError::Message("cannot subtract infinite timestamps"));
    }
    let micros = a.checked_sub(b).ok_or_else(out_of_range)?;
    justify_hours(Interval {
        months: 0,
        days: 0,
        micros,
    })
}

/// `date + integer` (infinite dates stay infinite).
pub(super) fn date_plus(date: i64, days: i64) -> Result<i64, EvalError> {
    if is_infinite(date) {
        return Ok(date);
    }
    date.checked_add(days)
        .filter(|d| (MIN_DATE..END_DATE).contains(d))
        .ok_or(EvalError::OutOfRange { type_name: "date" })
}

/// `date - date`, an int4 number of days.
pub(super) fn date_minus_date(a: i64, b: i64) -> Result<i64, EvalError> {
    if is_infinite(a) || is_infinite(b) {
        return Err(EvalError::Message("cannot subtract infinite dates"));
    }
    Ok(a - b)
}

/// `date + time` → timestamp.
pub(super) fn date_plus_time(date: i64, time: i64) -> Result<i64, EvalError> {
    let ts = super::values::date_to_timestamp(date)?;
    if is_infinite(ts) {
        return Ok(ts);
    }
    valid_ts(ts.checked_add(time).ok_or_else(ts_out_of_range)?)
}

/// `time ± interval`: the µs part, wrapped to a day.
pub(super) fn time_plus(time: i64, v: Interval, subtract: bool) -> i64 {
    // The µs part modulo a day first, so neither the negation nor the sum can overflow.
    let m = v.micros % USECS_PER_DAY;
    let m = if subtract { -m } else { m };
    (time + m).rem_euclid(USECS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> Option<Interval> {
        Some(Interval {
            months,
            days,
            micros,
        })
    }

    #[test]
    fn input_forms() {
        let h = 3_600_000_000;
        let cases = [
            (
                "P1Y2M3DT4H5M6.5S",
                iv(14, 3, 4 * h + 5 * 60_000_000 + 6_500_000),
            ),
            (
                "P-1Y-2M3DT-4H-5M-6S",
                iv(-14, 3, -(4 * h + 5 * 60_000_000 + 6_000_000)),
            ),
            ("PT0S", iv(0, 0, 0)),
            ("P7D", iv(0, 7, 0)),
            ("P1W", iv(0, 7, 0)),
            ("1 day", iv(0, 1, 0)),
            ("24 hours", iv(0, 0, 24 * h)),
            (
                "1 year 2 mons -3 days 04:05:06.5",
                iv(14, -3, 4 * h + 5 * 60_000_000 + 6_500_000),
            ),
            ("@ 1 hour ago", iv(0, 0, -h)),
            ("1 day ago", iv(0, -1, 0)),
            ("-1 day +02:03", iv(0, -1, 2 * h + 3 * 60_000_000)),
            ("1-2", iv(14, 0, 0)),
            ("3 4:05:06", iv(0, 3, 4 * h + 5 * 60_000_000 + 6_000_000)),
            ("1:30", iv(0, 0, h + 30 * 60_000_000)),
            ("5", iv(0, 0, 5_000_000)),
            ("2weeks", iv(0, 14, 0)),
            ("1.5 seconds", iv(0, 0, 1_500_000)),
            ("1.5 days", None),
            ("", None),
            ("1 fortnight", None),
            ("P", None),
            ("PT", None),
            ("P1H", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_interval(text), want, "{text}");
        }
    }

    #[test]
    fn canonical_text_round_trips_and_spans_compare() {
        for text in [
            "P1Y2M3DT4H5M6.5S",
            "P-1Y-2M3DT-4H-5M-6.000001S",
            "PT0S",
            "1 day ago",
        ] {
            let v = parse_interval(text).unwrap();
            assert_eq!(parse_interval(&v.canonical_text()), Some(v), "{text}");
        }
        let day = parse_interval("1 day").unwrap();
        let hours = parse_interval("24 hours").unwrap();
        assert_eq!(day.cmp_span(&hours), Ordering::Equal);
        assert_ne!(day, hours);
        let month = parse_interval("1 mon").unwrap();
        assert_eq!(
            month.cmp_span(&parse_interval("30 days").unwrap()),
            Ordering::Equal
        );
    }

    #[test]
    fn justify() {
        let v = parse_interval("1 mon -1 day").unwrap();
        assert_eq!(
            justify_interval(v).unwrap(),
            Interval {
                months: 0,
                days: 29,
                micros: 0
            }
        );
        let v = parse_interval("-1 day 25 hours").unwrap();
        assert_eq!(
            justify_hours(v).unwrap(),
            Interval {
                months: 0,
                days: 0,
                micros: 3_600_000_000
            }
        );
        let v = parse_interval("35 days").unwrap();
        assert_eq!(
            justify_days(v).unwrap(),
            Interval {
                months: 1,
                days: 5,
                micros: 0
            }
        );
    }

    /// `interval * float8` and `interval / float8`, checked against PG 15.18's output.
    #[test]
    fn scale_matches_pg() {
        let cases: &[(&str, f64, &str, &str)] = &[
            ("P1M3DT4H", 1.5, "P1M19DT18H", "P22DT2H40M"),
            ("P1M", 1.5, "P1M15D", "P20D"),
            (
                "P1Y1M1DT1.000001S",
                1.5,
                "P1Y7M16DT12H1.500002S",
                "P8M20DT16H0.666667S",
            ),
            (
                "P-7M3DT-0.5S",
                1.5,
                "P-10M-11DT11H59M59.25S",
                "P-4M-18DT-0.333333S",
            ),
            ("P1M3DT4H", 7.0, "P7M21DT28H", "P4DT17H42M51.403886S"),
            ("P1M", 7.0, "P7M", "P4DT6H51M25.6896S"),
            (
                "P1Y1M1DT1.000001S",
                7.0,
                "P7Y7M7DT7.000007S",
                "P1M25DT20H34M17.3104S",
            ),
            ("P-7M3DT-0.5S", 7.0, "P-4Y-1M21DT-3.5S", "P-1MT10H17M8.5S"),
            ("P1M3DT4H", 0.1, "P3DT7H36M", "P10M30DT40H"),
            ("P1M", 0.1, "P3D", "P10M"),
            (
                "P1Y1M1DT1.000001S",
                0.1,
                "P1M9DT2H24M0.1S",
                "P10Y10M10DT10.00001S",
            ),
            ("P-7M3DT-0.5S", 0.1, "P-21DT7H11M59.95S", "P-5Y-10M30DT-5S"),
            ("P1M3DT4H", -3.0, "P-3M-9DT-12H", "P-11DT-1H-20M"),
            ("P1M", -3.0, "P-3M", "P-10D"),
            (
                "P1Y1M1DT1.000001S",
                -3.0,
                "P-3Y-3M-3DT-3.000003S",
                "P-4M-10DT-8H-0.333334S",
            ),
            ("P-7M3DT-0.5S", -3.0, "P1Y9M-9DT1.5S", "P2M9DT0.166667S"),
            (
                "P1M3DT4H",
                1e-07,
                "PT0.28656S",
                "P833333Y4M30000000DT40000000H",
            ),
            ("P1M", 1e-07, "PT0.2592S", "P833333Y4M"),
            (
                "P1Y1M1DT1.000001S",
                1e-07,
                "PT3.37824S",
                "P10833333Y4M10000000DT2777H46M50S",
            ),
            (
                "P-7M3DT-0.5S",
                1e-07,
                "PT-1.78848S",
                "P-5833333Y-4M30000000DT-1388H-53M-20S",
            ),
            ("P1M3DT4H", 0.3333333333333333, "P11DT1H20M", "P3M9DT12H"),
            ("P1M", 0.3333333333333333, "P10D", "P3M"),
            (
                "P1Y1M1DT1.000001S",
                0.3333333333333333,
                "P4M10DT8H0.333334S",
                "P3Y3M3DT3.000003S",
            ),
            (
                "P-7M3DT-0.5S",
                0.3333333333333333,
                "P-2M-9DT-0.166667S",
                "P-1Y-9M9DT-1.5S",
            ),
        ];
        for (v, f, product, quotient) in cases {
            let v = parse_interval(v).expect("interval");
            assert_eq!(
                Some(scale(v, *f, false).expect("mul")),
                parse_interval(product),
                "{v:?} * {f}"
            );
            assert_eq!(
                Some(scale(v, *f, true).expect("div")),
                parse_interval(quotient),
                "{v:?} / {f}"
            );
        }
        let month = parse_interval("P1M").expect("interval");
        assert_eq!(scale(month, 0.0, true), Err(EvalError::DivisionByZero));
        assert!(scale(month, 1e-10, true).is_err());
        assert!(scale(month, f64::INFINITY, false).is_err());
        assert!(
            scale(
                parse_interval("PT1S").expect("interval"),
                f64::INFINITY,
                false
            )
            .is_err()
        );
        assert!(scale(month, f64::NAN, true).is_err());
        assert_eq!(
            negate(month),
            Ok(Interval {
                months: -1,
                days: 0,
                micros: 0
            })
        );
    }
}
