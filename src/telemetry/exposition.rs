//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Invariants the writer keeps, so any Prometheus-compatible scraper parses the output:
//! - every family is announced by one `# HELP` and one `# TYPE` line before its samples, and no
//!   family is announced twice;
//! - help text escapes `\` and newlines, label values escape `\`, `"` and newlines;
//! - histogram buckets are cumulative, end with `le="+Inf"`, and that bucket equals `_count`;
//! - values are integers where the metric counts something, else shortest round-trip floats
//!   (`+Inf`, `-Inf`, `NaN` spelled as the format wants).

use std::fmt::Write as _;

/// `content-type` of a scrape response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Family types we expose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Uint(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// Accumulates one scrape's text.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(8 * 1024),
        }
    }

    /// Announces a family (`# HELP` then `# TYPE`).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample line: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value.into());
        self.out.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family from per-bucket (non-cumulative) counts. `bounds` are the upper bounds
    /// in exposition units, ascending; `counts` has one more entry (the overflow bucket).
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative: u64 = 0;
        let mut le = String::new();
        for (i, bound) in bounds.iter().enumerate() {
            cumulative = cumulative.saturating_add(counts.get(i).copied().unwrap_or(0));
            le.clear();
            write_value(&mut le, Value::Float(*bound));
            self.sample(&bucket, &[("le", &le)], cumulative);
        }
        for extra in counts.iter().skip(bounds.len()) {
            cumulative = cumulative.saturating_add(*extra);
        }
        self.sample(&bucket, &[("le", "+Inf")], cumulative);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], cumulative);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_value(out: &mut String, v: Value) {
    let _ = match v {
        Value::Int(i) => write!(out, "{i}"),
        Value::Uint(u) => write!(out, "{u}"),
        Value::Float(f) if f.is_nan() => write!(out, "NaN"),
        Value::Float(f) if f == f64::INFINITY => write!(out, "+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => write!(out, "-Inf"),
        // Rust's `Display` for f64 is the shortest string that round-trips, without an exponent.
        Value::Float(f) => write!(out, "{f}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family("a_total", Kind::Counter, "Line one\nback\\slash");
        e.sample("a_total", &[("route", "sh\"a\\pe\n")], 3u64);
        e.single("b_bytes", Kind::Gauge, "B.", -2i64);
        e.single("c_seconds", Kind::Gauge, "C.", 0.25f64);
        e.single("d", Kind::Gauge, "D.", f64::INFINITY);
        e.single("n", Kind::Gauge, "N.", f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP a_total Line one\\nback\\\\slash\n# TYPE a_total counter\n\
             a_total{route=\"sh\\\"a\\\\pe\\n\"} 3\n\
             # HELP b_bytes B.\n# TYPE b_bytes gauge\nb_bytes -2\n\
             # HELP c_seconds C.\n# TYPE c_seconds gauge\nc_seconds 0.25\n\
             # HELP d D.\n# TYPE d gauge\nd +Inf\n\
             # HELP n N.\n# TYPE n gauge\nn NaN\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut e = Exposition::new();
        e.histogram("h_seconds", "H.", &[0.001, 0.5, 1.0], &[2, 0, 3, 4], 7.5);
        assert_eq!(
            e.finish(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{le=\"0.001\"} 2\n\
             h_seconds_bucket{le=\"0.5\"} 2\n\
             h_seconds_bucket{le=\"1\"} 5\n\
             h_seconds_bucket{le=\"+Inf\"} 9\n\
             h_seconds_sum 7.5\n\
             h_seconds_count 9\n"
        );
    }
}
