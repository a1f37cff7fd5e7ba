//! Log offsets: positions in a shape log, as the wire protocol spells them (`http-protocol.md` §4).
//!
//! `tx = 0` is the virtual snapshot region, where `op` is a chunk index; `tx > 0` is a commit LSN
//! with `op` the change's position in its transaction (2n, 2n+1 for the insert half of a key
//! change). `op = u64::MAX` is `inf`. Ordering is the derived lexicographic `(tx, op)` order.
//! Parsing is total: every malformed input is an error, never a panic.

use std::fmt;

/// A position in a shape log (never `-1`/`now`; those are request-only, see [`RequestOffset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogOffset {
    pub tx: u64,
    pub op: u64,
}

impl LogOffset {
    /// `op` value printed as `inf`.
    pub const INF_OP: u64 = u64::MAX;
    /// `0_inf`: the whole snapshot, nothing replicated yet.
    pub const SNAPSHOT_END: LogOffset = LogOffset {
        tx: 0,
        op: u64::MAX,
    };

    pub const fn new(tx: u64, op: u64) -> LogOffset {
        LogOffset { tx, op }
    }
}

impl fmt::Display for LogOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Self::INF_OP {
            write!(f, "{}_inf", self.tx)
        } else {
            write!(f, "{}_{}", self.tx, self.op)
        }
    }
}

/// The `offset` request parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOffset {
    /// `-1`: before the start of the log.
    Initial,
    /// `now`: the current end, skipping history.
    Now,
    At(LogOffset),
}

impl fmt::Display for RequestOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestOffset::Initial => f.write_str("-1"),
            RequestOffset::Now => f.write_str("now"),
            RequestOffset::At(o) => o.fmt(f),
        }
    }
}

/// Parses a wire offset. Leading `+` and zeros are accepted, as Electric does; values that do not
/// fit a u64 are rejected rather than wrapped.
pub fn parse_offset(s: &str) -> Option<RequestOffset> {
    match s {
        "-1" | "-1_0" => return Some(RequestOffset::Initial),
        "now" => return Some(RequestOffset::Now),
        _ => {}
    }
    let (tx, op) = s.split_once('_')?;
    let tx = parse_u64(tx)?;
    let op = if op == "inf" {
        LogOffset::INF_OP
    } else {
        parse_u64(op)?
    };
    Some(RequestOffset::At(LogOffset { tx, op }))
}

fn parse_u64(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<u64>().ok()?;
    // u64::MAX is our `inf` marker; a literal value that large is not a real op.
    (n != u64::MAX).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_spec_examples() {
        assert_eq!(parse_offset("-1"), Some(RequestOffset::Initial));
        assert_eq!(parse_offset("-1_0"), Some(RequestOffset::Initial));
        assert_eq!(parse_offset("now"), Some(RequestOffset::Now));
        assert_eq!(
            parse_offset("0_0"),
            Some(RequestOffset::At(LogOffset::new(0, 0)))
        );
        assert_eq!(
            parse_offset("0_inf"),
            Some(RequestOffset::At(LogOffset::SNAPSHOT_END))
        );
        assert_eq!(
            parse_offset("0_02"),
            Some(RequestOffset::At(LogOffset::new(0, 2)))
        );
        assert_eq!(
            parse_offset("+5_1"),
            Some(RequestOffset::At(LogOffset::new(5, 1)))
        );
        for bad in [
            "abc", "0_-1", "1_2_3", "10", "", "_", "1_", "_1", " 1_2", "1.5_2", "-2",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
        assert_eq!(parse_offset("99999999999999999999_0"), None);
    }

    #[test]
    fn ordering_puts_snapshot_before_log() {
        assert!(LogOffset::new(0, 5) < LogOffset::SNAPSHOT_END);
        assert!(LogOffset::SNAPSHOT_END < LogOffset::new(1, 0));
        assert!(LogOffset::new(7, 4) < LogOffset::new(7, LogOffset::INF_OP));
        assert_eq!(LogOffset::SNAPSHOT_END.to_string(), "0_inf");
    }

    proptest! {
        #[test]
        fn display_round_trips(tx in any::<u64>(), op in any::<u64>()) {
            let o = LogOffset::new(tx, op);
            if tx != u64::MAX {
                prop_assert_eq!(parse_offset(&o.to_string()), Some(RequestOffset::At(o)));
            }
        }

        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_offset(&s);
        }
    }
}
