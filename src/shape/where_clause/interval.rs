//! `interval`: PG's input forms, a canonical input text, normalised comparison and the
//! `justify_*` functions.
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

/// PG's `interval_um`.
fn negate(v: Interval) -> Result<Interval, EvalError> {
    Ok(Interval {
        months: v.months.checked_neg().ok_or_else(out_of_range)?,
        days: v.days.checked_neg().ok_or_else(out_of_range)?,
        micros: v.micros.checked_neg().ok_or_else(out_of_range)?,
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
            ts.checked_add(i64::from(v.days) * USECS_PER_DAY)
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
    let m = if subtract { -v.micros } else { v.micros };
    (time + m % USECS_PER_DAY).rem_euclid(USECS_PER_DAY)
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
}
