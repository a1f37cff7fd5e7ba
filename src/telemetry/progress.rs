//! Progress of one initial shape snapshot: a log line every [`REPORT_EVERY`] while rows are
//! copied, one line when it completes or fails, and the snapshot metrics.
//!
//! Invariants: never a line per row (the clock is read once per [`CHECK_EVERY_ROWS`] rows);
//! lines carry counts, sizes, the handle and the table name — never row values. While alive the
//! tracker counts one snapshot in progress and the log bytes this snapshot made durable in the
//! storage gauge; dropping it (whatever the outcome) takes both back out, since the pipeline
//! accounts a completed shape's bytes itself when it takes over the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::metrics::Metrics;

/// How often a running snapshot reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Rows between two looks at the clock.
const CHECK_EVERY_ROWS: u64 = 256;

/// Tracks one snapshot; see the module header.
#[derive(Debug)]
pub struct SnapshotProgress {
    metrics: Arc<Metrics>,
    handle: String,
    table: String,
    started: Instant,
    last_report: Instant,
    rows: u64,
    bytes: u64,
    /// Log bytes made durable by this snapshot and counted in the storage gauge.
    durable: u64,
    completed: bool,
}

impl SnapshotProgress {
    pub fn start(metrics: Arc<Metrics>, handle: &str, table: &str) -> SnapshotProgress {
        metrics.snapshot_started();
        let now = Instant::now();
        tracing::debug!(
            event = "snapshot_started",
            handle,
            table,
            "snapshot started"
        );
        SnapshotProgress {
            metrics,
            handle: handle.to_owned(),
            table: table.to_owned(),
            started: now,
            last_report: now,
            rows: 0,
            bytes: 0,
            durable: 0,
            completed: false,
        }
    }

    /// One row copied, `bytes` of log entry produced for it.
    pub fn row(&mut self, bytes: usize) {
        self.rows += 1;
        self.bytes += bytes as u64;
        if self.rows.is_multiple_of(CHECK_EVERY_ROWS) {
            self.tick(Instant::now());
        }
    }

    /// Logs a progress line if one is due at `now`; returns whether it did.
    fn tick(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_report) < REPORT_EVERY {
            return false;
        }
        self.last_report = now;
        let elapsed = now.saturating_duration_since(self.started);
        tracing::info!(
            event = "snapshot_progress",
            handle = %self.handle,
            table = %self.table,
            rows = self.rows,
            bytes = self.bytes,
            elapsed_ms = millis(elapsed),
            rows_per_s = per_second(self.rows, elapsed),
            "snapshot in progress"
        );
        true
    }

    /// The snapshot's log is durable up to `len` bytes (its synced length).
    pub fn durable(&mut self, len: u64) {
        if len > self.durable {
            self.metrics.storage_log_bytes.add_u64(len - self.durable);
            self.durable = len;
        }
    }

    /// The snapshot completed: one summary line.
    pub fn complete(mut self) {
        self.completed = true;
        let elapsed = self.started.elapsed();
        tracing::info!(
            event = "snapshot_complete",
            handle = %self.handle,
            table = %self.table,
            rows = self.rows,
            bytes = self.bytes,
            elapsed_ms = millis(elapsed),
            rows_per_s = per_second(self.rows, elapsed),
            "snapshot complete"
        );
    }

    /// The snapshot failed: one line saying how far it got (the error comes from the caller).
    pub fn failed(self, error: &dyn std::fmt::Display) {
        tracing::error!(
            event = "snapshot_failed",
            handle = %self.handle,
            table = %self.table,
            rows = self.rows,
            elapsed_ms = millis(self.started.elapsed()),
            error = %error,
            "snapshot failed"
        );
    }
}

impl Drop for SnapshotProgress {
    fn drop(&mut self) {
        let took = self.completed.then(|| self.started.elapsed());
        self.metrics.snapshot_ended(self.rows, self.bytes, took);
        self.metrics.storage_log_bytes.sub_u64(self.durable);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whole units per second (0 before a millisecond has passed).
fn per_second(n: u64, elapsed: Duration) -> u64 {
    let ms = millis(elapsed);
    if ms == 0 {
        return 0;
    }
    u64::try_from(u128::from(n) * 1000 / u128::from(ms)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_at_most_once_per_interval() {
        let m = Arc::new(Metrics::new());
        let mut p = SnapshotProgress::start(m.clone(), "1-2", "public.items");
        let t0 = p.started;
        assert!(!p.tick(t0 + Duration::from_secs(1)));
        assert!(p.tick(t0 + REPORT_EVERY));
        assert!(!p.tick(t0 + REPORT_EVERY + Duration::from_secs(4)));
        assert!(p.tick(t0 + REPORT_EVERY * 2));
    }

    #[test]
    fn rates() {
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000);
        assert_eq!(per_second(5, Duration::ZERO), 0);
        assert_eq!(per_second(7, Duration::from_secs(2)), 3);
    }

    #[test]
    fn gauges_are_taken_back_when_dropped() {
        let m = Arc::new(Metrics::new());
        let mut p = SnapshotProgress::start(m.clone(), "1-2", "public.items");
        for _ in 0..1000 {
            p.row(10);
        }
        p.durable(4096);
        p.durable(1000); // never backwards
        assert_eq!(m.storage_log_bytes.get(), 4096);
        p.complete();
        assert_eq!(m.storage_log_bytes.get(), 0);
        let text = m.render(super::super::metrics::Live {
            shapes_active: 0,
            health: 0,
        });
        assert!(text.contains("\nampere_snapshot_rows_total 1000\n"));
        assert!(text.contains("\nampere_snapshot_bytes_total 10000\n"));
        assert!(text.contains("\nampere_snapshots_in_progress 0\n"));
        assert!(text.contains("\nampere_snapshot_duration_seconds_count 1\n"));
    }
}
