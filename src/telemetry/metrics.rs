//! Prometheus metrics: every metric name (in [`names`]), the registry ([`Metrics`], one per
//! running service, held by the engine) and its rendering in the text exposition format.
//!
//! Why hand-written rather than the `prometheus` or `metrics` crates: the set of metrics is
//! small and fixed, so a struct of atomics is the whole registry — no name lookups, no locks,
//! no global state (tests run several services in one process and each scrapes its own), and
//! no dependency tree. Rendering a scrape is a few hundred lines of text.
//!
//! Invariants:
//! - Hot-path cost is at most one relaxed atomic operation per transaction, flush, request or
//!   snapshot progress tick. Per-change and per-delivery counts are tallied in plain integers by
//!   the single pipeline task ([`StreamTally`]) and published once per flush.
//! - Labels are low-cardinality and fixed: `route` (4 values), `status` (an HTTP status code),
//!   `state` (4 health states), `version`. A shape handle or a table name is never a label.
//! - Units are in the names (`_bytes`, `_seconds`, `_total` for counters). Histograms observe
//!   integers in a base unit (microseconds, bytes, changes) and are exposed in the named unit.
//! - Values that are not known yet (no slot sample so far) are left out of the scrape rather
//!   than reported as zero, so `absent()` alerts work.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::exposition::{Exposition, Kind};

/// Every metric name, in one place (see `docs/observability.md`).
pub mod names {
    pub const BUILD_INFO: &str = "ampere_build_info";
    pub const HEALTH_STATE: &str = "ampere_health_state";

    pub const REPLICATION_RECEIVED_BYTES: &str = "ampere_replication_received_bytes_total";
    pub const REPLICATION_CHANGES: &str = "ampere_replication_changes_total";
    pub const REPLICATION_TRANSACTIONS: &str = "ampere_replication_transactions_total";
    pub const REPLICATION_ROUTED_CHANGES: &str = "ampere_replication_routed_changes_total";
    pub const REPLICATION_LAG_BYTES: &str = "ampere_replication_lag_bytes";
    pub const REPLICATION_LAG_SECONDS: &str = "ampere_replication_lag_seconds";
    pub const REPLICATION_LAST_COMMIT_TIMESTAMP: &str =
        "ampere_replication_last_durable_commit_timestamp_seconds";
    pub const SLOT_CONFIRMED_LAG_BYTES: &str = "ampere_replication_slot_confirmed_lag_bytes";
    pub const SLOT_RETAINED_WAL_BYTES: &str = "ampere_replication_slot_retained_wal_bytes";

    pub const FLUSH_DURATION: &str = "ampere_flush_duration_seconds";
    pub const FLUSH_CHANGES: &str = "ampere_flush_changes";
    pub const FLUSH_BYTES: &str = "ampere_flush_bytes";

    pub const SHAPES_ACTIVE: &str = "ampere_shapes_active";
    pub const SHAPES_CREATED: &str = "ampere_shapes_created_total";
    pub const SNAPSHOTS_IN_PROGRESS: &str = "ampere_snapshots_in_progress";
    pub const SNAPSHOT_ROWS: &str = "ampere_snapshot_rows_total";
    pub const SNAPSHOT_BYTES: &str = "ampere_snapshot_bytes_total";
    pub const SNAPSHOT_DURATION: &str = "ampere_snapshot_duration_seconds";
    pub const STORAGE_LOG_BYTES: &str = "ampere_storage_log_bytes";

    pub const HTTP_REQUESTS: &str = "ampere_http_requests_total";
    pub const HTTP_RESPONSE_BYTES: &str = "ampere_http_response_body_bytes_total";
    pub const HTTP_LIVE_PARKED: &str = "ampere_http_live_requests_parked";
    pub const HTTP_SSE_OPEN: &str = "ampere_http_sse_streams_open";

    pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
    pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
    pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
    pub const PROCESS_MAX_FDS: &str = "process_max_fds";
    pub const PROCESS_START_TIME: &str = "process_start_time_seconds";
    pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Relaxed);
        }
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        if n != 0 {
            self.0.fetch_add(n, Relaxed);
        }
    }

    pub fn add_u64(&self, n: u64) {
        self.add(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn sub_u64(&self, n: u64) {
        self.add(-i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// Fixed-bucket histogram over integer observations in a base unit.
#[derive(Debug)]
pub struct Histogram {
    /// Inclusive upper bounds in the base unit, ascending.
    bounds: &'static [u64],
    /// Base units per exposition unit (1e6 for microseconds shown as seconds). A division by an
    /// exact power of ten gives the shortest decimal (`0.0025`, not `0.0025000000000000005`).
    divisor: f64,
    /// One count per bound plus the overflow bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64], divisor: f64) -> Histogram {
        Histogram {
            bounds,
            divisor,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(v, Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn render(&self, e: &mut Exposition, name: &str, help: &str) {
        let bounds: Vec<f64> = self
            .bounds
            .iter()
            .map(|&b| b as f64 / self.divisor)
            .collect();
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        e.histogram(
            name,
            help,
            &bounds,
            &counts,
            self.sum.load(Relaxed) as f64 / self.divisor,
        );
    }
}

/// Microseconds per second.
const MICROS: f64 = 1e6;
/// Flush latency, µs: 100 µs … 10 s.
const FLUSH_DURATION_BUCKETS: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const FLUSH_CHANGES_BUCKETS: &[u64] = &[
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000,
];
const FLUSH_BYTES_BUCKETS: &[u64] = &[
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
];
/// Snapshot duration, µs: 10 ms … 1 h.
const SNAPSHOT_DURATION_BUCKETS: &[u64] = &[
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
    3_600_000_000,
];

/// The `route` label of HTTP metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    Shape,
    Health,
    Root,
    Other,
    Admin,
}

impl HttpRoute {
    const ALL: [HttpRoute; 5] = [
        HttpRoute::Shape,
        HttpRoute::Health,
        HttpRoute::Root,
        HttpRoute::Other,
        HttpRoute::Admin,
    ];

    fn label(self) -> &'static str {
        match self {
            HttpRoute::Shape => "shape",
            HttpRoute::Health => "health",
            HttpRoute::Root => "root",
            HttpRoute::Other => "other",
            HttpRoute::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes 100..=599 have a counter each per route.
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500;

/// Health states, in the order of the `state` label values.
pub const HEALTH_STATES: [&str; 4] = ["starting", "waiting", "active", "degraded"];

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Counts the pipeline task keeps in plain integers between flushes (it is the only writer;
/// publishing them costs a handful of atomic adds per flush instead of one per change).
#[derive(Debug, Default)]
pub struct StreamTally {
    /// pgoutput bytes received.
    pub wal_bytes: u64,
    /// Change messages of committed transactions.
    pub changes: u64,
    pub transactions: u64,
    /// Deliveries of a change to a shape (one change routed to three shapes counts three).
    pub routed: u64,
    /// Commit timestamp (µs since 2000-01-01) of the last transaction committed, not yet durable.
    pub committed_at: Option<i64>,
}

impl StreamTally {
    /// Size of a pgoutput Begin message (the replication client decodes it for us).
    pub const BEGIN_BYTES: u64 = 21;
    /// Size of a pgoutput Commit message.
    pub const COMMIT_BYTES: u64 = 26;
}

/// Values read from the rest of the service at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    pub shapes_active: usize,
    /// Index into [`HEALTH_STATES`].
    pub health: usize,
}

/// The registry of one running service.
#[derive(Debug)]
pub struct Metrics {
    received_bytes: Counter,
    changes: Counter,
    transactions: Counter,
    routed: Counter,
    /// Server WAL end last seen on the stream.
    received_lsn: AtomicU64,
    /// Last position acknowledged to Postgres (durable).
    acknowledged_lsn: AtomicU64,
    /// Commit time of the last durable transaction, µs since the Unix epoch (`i64::MIN`: none).
    durable_commit_unix_micros: AtomicI64,
    /// Wall clock minus that commit time, measured when it became durable, µs.
    lag_micros: AtomicI64,
    /// Sampled from `pg_replication_slots` (-1: not known).
    slot_confirmed_lag: AtomicI64,
    slot_retained_wal: AtomicI64,

    flush_duration: Histogram,
    flush_changes: Histogram,
    flush_bytes: Histogram,

    pub shapes_created: Counter,
    snapshots_in_progress: Gauge,
    snapshot_rows: Counter,
    snapshot_bytes: Counter,
    snapshot_duration: Histogram,
    /// Durable bytes in shape logs (maintained by the pipeline and snapshot tasks).
    pub storage_log_bytes: Gauge,

    http_requests: Box<[AtomicU64]>,
    http_bytes: [Counter; HttpRoute::ALL.len()],
    live_parked: Gauge,
    sse_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            received_bytes: Counter::default(),
            changes: Counter::default(),
            transactions: Counter::default(),
            routed: Counter::default(),
            received_lsn: AtomicU64::new(0),
            acknowledged_lsn: AtomicU64::new(0),
            durable_commit_unix_micros: AtomicI64::new(i64::MIN),
            lag_micros: AtomicI64::new(0),
            slot_confirmed_lag: AtomicI64::new(-1),
            slot_retained_wal: AtomicI64::new(-1),
            flush_duration: Histogram::new(FLUSH_DURATION_BUCKETS, MICROS),
            flush_changes: Histogram::new(FLUSH_CHANGES_BUCKETS, 1.0),
            flush_bytes: Histogram::new(FLUSH_BYTES_BUCKETS, 1.0),
            shapes_created: Counter::default(),
            snapshots_in_progress: Gauge::default(),
            snapshot_rows: Counter::default(),
            snapshot_bytes: Counter::default(),
            snapshot_duration: Histogram::new(SNAPSHOT_DURATION_BUCKETS, MICROS),
            storage_log_bytes: Gauge::default(),
            http_requests: (0..HttpRoute::ALL.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            http_bytes: Default::default(),
            live_parked: Gauge::default(),
            sse_open: Gauge::default(),
        }
    }

    // ---- replication (pipeline task) ----

    /// The server's WAL end as last reported on the stream.
    pub fn wal_received(&self, lsn: u64) {
        if lsn > 0 {
            self.received_lsn.store(lsn, Relaxed);
        }
    }

    /// A position acknowledged to Postgres.
    pub fn acknowledged(&self, lsn: u64) {
        self.acknowledged_lsn.store(lsn, Relaxed);
        // An acknowledgement at the server's end means we are caught up.
        if self.received_lsn.load(Relaxed) < lsn {
            self.received_lsn.store(lsn, Relaxed);
        }
    }

    /// A flush succeeded: publishes the tally, and — when the flush wrote anything — its latency
    /// (`took`), the deliveries it made durable and the log bytes it published.
    pub fn flushed(&self, tally: &mut StreamTally, took: Option<Duration>, bytes: u64) {
        let t = std::mem::take(tally);
        self.received_bytes.add(t.wal_bytes);
        self.changes.add(t.changes);
        self.transactions.add(t.transactions);
        self.routed.add(t.routed);
        if let Some(took) = took {
            self.flush_duration.observe_duration(took);
            self.flush_changes.observe(t.routed);
            self.flush_bytes.observe(bytes);
        }
        if let Some(pg_micros) = t.committed_at {
            let commit = pg_micros.saturating_add(PG_EPOCH_UNIX_MICROS);
            self.durable_commit_unix_micros.store(commit, Relaxed);
            let lag = unix_micros_now().saturating_sub(commit).max(0);
            self.lag_micros.store(lag, Relaxed);
        }
    }

    /// A sample of our slot: `(current − confirmed_flush, current − restart)` in bytes, or
    /// `None` when it could not be taken (the gauges then disappear until the next sample).
    pub fn slot_sampled(&self, sample: Option<(i64, i64)>) {
        let (confirmed, retained) = sample.unwrap_or((-1, -1));
        self.slot_confirmed_lag.store(confirmed.max(-1), Relaxed);
        self.slot_retained_wal.store(retained.max(-1), Relaxed);
    }

    // ---- snapshots ----

    pub(crate) fn snapshot_started(&self) {
        self.snapshots_in_progress.add(1);
    }

    pub(crate) fn snapshot_ended(&self, rows: u64, bytes: u64, took: Option<Duration>) {
        self.snapshots_in_progress.add(-1);
        self.snapshot_rows.add(rows);
        self.snapshot_bytes.add(bytes);
        if let Some(took) = took {
            self.snapshot_duration.observe_duration(took);
        }
    }

    // ---- HTTP ----

    /// One answered request on the main port.
    pub fn http_response(&self, route: HttpRoute, status: u16, body_bytes: Option<u64>) {
        if let Some(i) = status
            .checked_sub(STATUS_MIN)
            .map(usize::from)
            .filter(|&i| i < STATUS_SLOTS)
            && let Some(c) = self.http_requests.get(route.index() * STATUS_SLOTS + i)
        {
            c.fetch_add(1, Relaxed);
        }
        if let Some(n) = body_bytes
            && let Some(c) = self.http_bytes.get(route.index())
        {
            c.add(n);
        }
    }

    /// Body bytes streamed after the response started (SSE events).
    pub fn http_streamed(&self, route: HttpRoute, n: u64) {
        if let Some(c) = self.http_bytes.get(route.index()) {
            c.add(n);
        }
    }

    /// Counts a parked long-poll until the guard drops.
    pub fn track_live_parked(self: &Arc<Self>) -> Tracked {
        Tracked::new(self.clone(), |m| &m.live_parked)
    }

    /// Counts an open SSE stream until the guard drops.
    pub fn track_sse_open(self: &Arc<Self>) -> Tracked {
        Tracked::new(self.clone(), |m| &m.sse_open)
    }

    /// Requests counted so far for a route and status (tests, admin tools).
    pub fn http_requests(&self, route: HttpRoute, status: u16) -> u64 {
        status
            .checked_sub(STATUS_MIN)
            .map(usize::from)
            .and_then(|i| self.http_requests.get(route.index() * STATUS_SLOTS + i))
            .map_or(0, |c| c.load(Relaxed))
    }

    // ---- rendering ----

    /// The scrape body.
    pub fn render(&self, live: Live) -> String {
        let mut e = Exposition::new();
        e.family(
            names::BUILD_INFO,
            Kind::Gauge,
            "Always 1; the version label says which Ampere is running.",
        );
        e.sample(
            names::BUILD_INFO,
            &[("version", env!("CARGO_PKG_VERSION"))],
            1u64,
        );
        e.family(
            names::HEALTH_STATE,
            Kind::Gauge,
            "1 for the state /v1/health reports (starting, waiting, active, degraded), 0 for the others.",
        );
        for (i, state) in HEALTH_STATES.iter().enumerate() {
            e.sample(
                names::HEALTH_STATE,
                &[("state", state)],
                u64::from(i == live.health),
            );
        }

        e.single(
            names::REPLICATION_RECEIVED_BYTES,
            Kind::Counter,
            "pgoutput message bytes received on the replication stream.",
            self.received_bytes.get(),
        );
        e.single(
            names::REPLICATION_CHANGES,
            Kind::Counter,
            "Change messages (insert, update, delete, truncate) of committed transactions received.",
            self.changes.get(),
        );
        e.single(
            names::REPLICATION_TRANSACTIONS,
            Kind::Counter,
            "Committed transactions received.",
            self.transactions.get(),
        );
        e.single(
            names::REPLICATION_ROUTED_CHANGES,
            Kind::Counter,
            "Change deliveries to shapes (a change that lands in three shapes counts three).",
            self.routed.get(),
        );
        let received = self.received_lsn.load(Relaxed);
        let acknowledged = self.acknowledged_lsn.load(Relaxed);
        e.single(
            names::REPLICATION_LAG_BYTES,
            Kind::Gauge,
            "Server WAL end last seen on the stream minus the position acknowledged as durable.",
            received.saturating_sub(acknowledged),
        );
        let commit = self.durable_commit_unix_micros.load(Relaxed);
        if commit != i64::MIN {
            e.single(
                names::REPLICATION_LAG_SECONDS,
                Kind::Gauge,
                "When the last durable transaction became durable: wall clock minus its commit timestamp.",
                self.lag_micros.load(Relaxed) as f64 / MICROS,
            );
            e.single(
                names::REPLICATION_LAST_COMMIT_TIMESTAMP,
                Kind::Gauge,
                "Commit timestamp (Unix seconds) of the last transaction made durable.",
                commit as f64 / MICROS,
            );
        }
        let confirmed = self.slot_confirmed_lag.load(Relaxed);
        if confirmed >= 0 {
            e.single(
                names::SLOT_CONFIRMED_LAG_BYTES,
                Kind::Gauge,
                "Sampled: pg_current_wal_lsn() minus the slot's confirmed_flush_lsn.",
                confirmed,
            );
        }
        let retained = self.slot_retained_wal.load(Relaxed);
        if retained >= 0 {
            e.single(
                names::SLOT_RETAINED_WAL_BYTES,
                Kind::Gauge,
                "Sampled: WAL the slot keeps on the server, pg_current_wal_lsn() minus restart_lsn.",
                retained,
            );
        }

        self.flush_duration.render(
            &mut e,
            names::FLUSH_DURATION,
            "Time to write, sync and seal one batch of shape logs.",
        );
        self.flush_changes.render(
            &mut e,
            names::FLUSH_CHANGES,
            "Change deliveries made durable per flush.",
        );
        self.flush_bytes.render(
            &mut e,
            names::FLUSH_BYTES,
            "Shape log bytes published per flush.",
        );

        e.single(
            names::SHAPES_ACTIVE,
            Kind::Gauge,
            "Shapes registered (including those still taking their snapshot).",
            live.shapes_active as u64,
        );
        e.single(
            names::SHAPES_CREATED,
            Kind::Counter,
            "Shapes created since the service started.",
            self.shapes_created.get(),
        );
        e.single(
            names::SNAPSHOTS_IN_PROGRESS,
            Kind::Gauge,
            "Initial shape snapshots running.",
            self.snapshots_in_progress.get(),
        );
        e.single(
            names::SNAPSHOT_ROWS,
            Kind::Counter,
            "Rows copied by initial shape snapshots.",
            self.snapshot_rows.get(),
        );
        e.single(
            names::SNAPSHOT_BYTES,
            Kind::Counter,
            "Log entry bytes produced by initial shape snapshots.",
            self.snapshot_bytes.get(),
        );
        self.snapshot_duration.render(
            &mut e,
            names::SNAPSHOT_DURATION,
            "Duration of completed initial shape snapshots.",
        );
        e.single(
            names::STORAGE_LOG_BYTES,
            Kind::Gauge,
            "Durable bytes in shape logs on disk.",
            self.storage_log_bytes.get().max(0),
        );

        e.family(
            names::HTTP_REQUESTS,
            Kind::Counter,
            "Requests answered on the main port, by route and status code.",
        );
        for route in HttpRoute::ALL {
            for i in 0..STATUS_SLOTS {
                let n = self.http_requests[route.index() * STATUS_SLOTS + i].load(Relaxed);
                if n > 0 {
                    let status = (usize::from(STATUS_MIN) + i).to_string();
                    e.sample(
                        names::HTTP_REQUESTS,
                        &[("route", route.label()), ("status", &status)],
                        n,
                    );
                }
            }
        }
        e.family(
            names::HTTP_RESPONSE_BYTES,
            Kind::Counter,
            "Response body bytes sent on the main port, by route (SSE events included).",
        );
        for route in HttpRoute::ALL {
            e.sample(
                names::HTTP_RESPONSE_BYTES,
                &[("route", route.label())],
                self.http_bytes.get(route.index()).map_or(0, Counter::get),
            );
        }
        e.single(
            names::HTTP_LIVE_PARKED,
            Kind::Gauge,
            "Live long-poll requests waiting for new data.",
            self.live_parked.get(),
        );
        e.single(
            names::HTTP_SSE_OPEN,
            Kind::Gauge,
            "Open server-sent-event live streams.",
            self.sse_open.get(),
        );

        if let Some(p) = super::process::sample() {
            p.render(&mut e);
        }
        e.finish()
    }
}

/// Keeps a gauge incremented while alive.
#[derive(Debug)]
pub struct Tracked {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &Gauge,
}

impl Tracked {
    fn new(metrics: Arc<Metrics>, gauge: fn(&Metrics) -> &Gauge) -> Tracked {
        gauge(&metrics).add(1);
        Tracked { metrics, gauge }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).add(-1);
    }
}

fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        Live {
            shapes_active: 2,
            health: 2,
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| &l[prefix.len() + 1..])
    }

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        let h = Histogram::new(&[10, 20], 1.0);
        for v in [0, 10, 11, 20, 21, 1000] {
            h.observe(v);
        }
        let counts: Vec<u64> = h.counts.iter().map(|c| c.load(Relaxed)).collect();
        assert_eq!(counts, vec![2, 2, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum.load(Relaxed), 1062);
    }

    #[test]
    fn flush_publishes_the_tally_once() {
        let m = Metrics::new();
        let mut t = StreamTally {
            wal_bytes: 100,
            changes: 7,
            transactions: 2,
            routed: 9,
            committed_at: Some(0),
        };
        m.flushed(&mut t, Some(Duration::from_millis(3)), 4096);
        assert_eq!(t.changes, 0, "the tally is reset");
        m.flushed(&mut t, None, 0);
        let text = m.render(live());
        assert_eq!(line(&text, names::REPLICATION_CHANGES), Some("7"));
        assert_eq!(line(&text, names::REPLICATION_ROUTED_CHANGES), Some("9"));
        assert_eq!(line(&text, names::REPLICATION_TRANSACTIONS), Some("2"));
        assert_eq!(line(&text, names::REPLICATION_RECEIVED_BYTES), Some("100"));
        assert_eq!(line(&text, "ampere_flush_changes_count"), Some("1"));
        assert_eq!(line(&text, "ampere_flush_changes_sum"), Some("9"));
        assert_eq!(
            line(&text, "ampere_flush_bytes_bucket{le=\"4096\"}"),
            Some("1")
        );
        assert_eq!(
            line(&text, "ampere_flush_duration_seconds_bucket{le=\"0.0025\"}"),
            Some("0")
        );
        assert_eq!(
            line(&text, "ampere_flush_duration_seconds_bucket{le=\"0.005\"}"),
            Some("1")
        );
        // Commit at the Postgres epoch.
        assert_eq!(
            line(&text, names::REPLICATION_LAST_COMMIT_TIMESTAMP),
            Some("946684800")
        );
        assert!(line(&text, names::REPLICATION_LAG_SECONDS).is_some());
        assert_eq!(line(&text, names::SHAPES_ACTIVE), Some("2"));
        assert_eq!(
            line(&text, "ampere_health_state{state=\"active\"}"),
            Some("1")
        );
        assert_eq!(
            line(&text, "ampere_health_state{state=\"waiting\"}"),
            Some("0")
        );
    }

    #[test]
    fn unknown_values_are_left_out() {
        let m = Metrics::new();
        let text = m.render(live());
        assert!(!text.contains(names::SLOT_CONFIRMED_LAG_BYTES));
        assert!(!text.contains(names::REPLICATION_LAG_SECONDS));
        m.slot_sampled(Some((5, 70)));
        let text = m.render(live());
        assert_eq!(line(&text, names::SLOT_CONFIRMED_LAG_BYTES), Some("5"));
        assert_eq!(line(&text, names::SLOT_RETAINED_WAL_BYTES), Some("70"));
        m.slot_sampled(None);
        assert!(!m.render(live()).contains(names::SLOT_RETAINED_WAL_BYTES));
    }

    #[test]
    fn lag_bytes_is_received_minus_acknowledged() {
        let m = Metrics::new();
        m.acknowledged(1000);
        m.wal_received(1500);
        assert_eq!(
            line(&m.render(live()), names::REPLICATION_LAG_BYTES),
            Some("500")
        );
        m.acknowledged(1600);
        assert_eq!(
            line(&m.render(live()), names::REPLICATION_LAG_BYTES),
            Some("0")
        );
    }

    #[test]
    fn http_counters_by_route_and_status() {
        let m = Arc::new(Metrics::new());
        m.http_response(HttpRoute::Shape, 400, Some(10));
        m.http_response(HttpRoute::Shape, 400, None);
        m.http_response(HttpRoute::Health, 200, Some(19));
        m.http_response(HttpRoute::Other, 999, Some(1));
        m.http_streamed(HttpRoute::Shape, 5);
        let parked = m.track_live_parked();
        let text = m.render(live());
        assert_eq!(
            line(
                &text,
                "ampere_http_requests_total{route=\"shape\",status=\"400\"}"
            ),
            Some("2")
        );
        assert_eq!(
            line(
                &text,
                "ampere_http_requests_total{route=\"health\",status=\"200\"}"
            ),
            Some("1")
        );
        assert!(!text.contains("status=\"999\""));
        assert_eq!(
            line(
                &text,
                "ampere_http_response_body_bytes_total{route=\"shape\"}"
            ),
            Some("15")
        );
        assert_eq!(line(&text, names::HTTP_LIVE_PARKED), Some("1"));
        drop(parked);
        assert_eq!(line(&m.render(live()), names::HTTP_LIVE_PARKED), Some("0"));
        assert_eq!(m.http_requests(HttpRoute::Shape, 400), 2);
    }

    #[test]
    fn every_family_is_announced_once_before_its_samples() {
        let m = Metrics::new();
        m.http_response(HttpRoute::Root, 200, Some(0));
        m.slot_sampled(Some((1, 2)));
        let text = m.render(live());
        let mut declared: Vec<&str> = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name), "{name} declared twice");
                declared.push(name);
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let family = declared.last().copied().unwrap_or("");
                assert!(
                    name == family
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(family)),
                    "{name} outside its family ({family})"
                );
            }
        }
    }
}
