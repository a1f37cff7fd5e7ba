//! `ampere-bench`: the workloads of issue 6 against their physical limits, measured in one run.
//!
//! Starts a throwaway Postgres (`LocalCluster`) and Ampere in-process (`ampere::app::run`), runs
//! each workload next to its baseline in the same run (`pg_recvlogical` draining the same WAL,
//! `COPY (SELECT row_to_json(t) …)` of the same rows, a raw tokio server writing Ampere's live
//! response to the same parked clients), and writes a JSON and a markdown report with the
//! figures, the ratios, the machine and the commit. `docs/performance.md` explains the method and
//! the latest figures.
//!
//! Every wait is bounded and every loop ends by itself; everything listens on 127.0.0.1.

#[path = "ampere_bench/env.rs"]
mod env;
#[path = "ampere_bench/http.rs"]
mod http;
#[path = "ampere_bench/report.rs"]
mod report;
#[path = "ampere_bench/workloads.rs"]
mod workloads;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

use env::{Ampere, Pg};
use http::Conn;
use workloads::{create_shapes, create_table, follow};

/// Benchmarks Ampere against Postgres's own limits (issue 6) and writes a JSON + markdown report.
#[derive(Debug, Clone, Parser)]
#[command(name = "ampere-bench")]
pub struct Opts {
    /// The sizes: 1M changes, shape counts 1/1k/10k/100k, a 1M-row initial sync,
    /// 10k parked requests (bounded by the open-files limit). Explicit flags still win.
    #[arg(long)]
    full: bool,
    /// Workloads to run (comma-separated): ingest (with irrelevant changes, latency and
    /// footprint), ilike, sync, fanout.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,ilike,sync,fanout"
    )]
    only: Vec<String>,
    /// Shape counts of the ingest / irrelevant / latency / footprint scenarios
    /// [default: 1,1000; --full: 1,1000,10000,100000].
    #[arg(long, value_delimiter = ',')]
    shapes: Option<Vec<usize>>,
    /// Row changes per ingest run [default: 200000; --full: 1000000].
    #[arg(long)]
    changes: Option<usize>,
    /// How Ampere meets the ingest WAL: `backlog` (stopped during the inserts, then restarted
    /// and timed draining the backlog, exactly like the `pg_recvlogical` baseline) or `live`
    /// (consuming while the inserts run, timed from the first insert).
    #[arg(long, default_value = "backlog", value_parser = ["backlog", "live"])]
    ingest_mode: String,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    txn_rows: usize,
    /// Shape counts of the non-indexable (`title ILIKE '%…%'`) scenario.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    ilike_shapes: Vec<usize>,
    /// Row changes per ILIKE run [default: 20000; --full: 100000].
    #[arg(long)]
    ilike_changes: Option<usize>,
    /// Commit → live response samples per shape count.
    #[arg(long, default_value_t = 100)]
    latency_samples: usize,
    /// Rows of the initial-sync shape [default: 200000; --full: 1000000].
    #[arg(long)]
    sync_rows: Option<usize>,
    /// Parked live requests in the fan-out scenario [default: 1000; --full: 10000, capped by
    /// the open-files limit since both ends live in this process].
    #[arg(long)]
    fanout_clients: Option<usize>,
    /// Concurrent HTTP clients creating shapes.
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Postgres `fsync` (Ampere always syncs its own logs).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pg_fsync: String,
    /// Where the reports go (`ampere-bench-<unix time>.{json,md}`).
    #[arg(long, default_value = "target/ampere-bench")]
    out_dir: PathBuf,
    /// Log level of the in-process Ampere (RUST_LOG wins).
    #[arg(long, default_value = "warn")]
    log_level: String,
    /// Runs every selected workload this many times; the report shows the median of each
    /// figure (footprint: the first run's, the only one measured on a fresh heap) and the JSON
    /// keeps every run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    repeat: u32,
}

impl Opts {
    fn runs(&self, w: &str) -> bool {
        self.only.iter().any(|o| o == w)
    }
    fn backlog(&self) -> bool {
        self.ingest_mode == "backlog"
    }
    fn shape_counts(&self) -> Vec<usize> {
        self.shapes.clone().unwrap_or_else(|| {
            if self.full {
                vec![1, 1000, 10_000, 100_000]
            } else {
                vec![1, 1000]
            }
        })
    }
    fn changes(&self) -> usize {
        self.changes
            .unwrap_or(if self.full { 1_000_000 } else { 200_000 })
    }
    fn ilike_changes(&self) -> usize {
        self.ilike_changes
            .unwrap_or(if self.full { 100_000 } else { 20_000 })
    }
    fn sync_rows(&self) -> usize {
        self.sync_rows
            .unwrap_or(if self.full { 1_000_000 } else { 200_000 })
    }
    fn fanout_clients(&self) -> usize {
        self.fanout_clients
            .unwrap_or(if self.full { 10_000 } else { 1000 })
    }
}

/// RSS growth of registering idle shapes.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Footprint {
    pub shapes: usize,
    pub create_secs: f64,
    pub shapes_created_per_sec: f64,
    pub rss_before: u64,
    pub rss_after: u64,
    pub bytes_per_shape: f64,
    /// Growth of the allocator's bytes in use per shape (no page or fragmentation overhead):
    /// what the shapes themselves hold.
    #[serde(default)]
    pub heap_bytes_per_shape: f64,
}

/// Everything one run measured.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct Results {
    pub ingest: Vec<workloads::Ingest>,
    pub latency: Vec<workloads::Latency>,
    pub footprint: Vec<Footprint>,
    pub initial_sync: Option<workloads::InitialSync>,
    pub fanout: Option<workloads::Fanout>,
    pub errors: Vec<String>,
}

fn tenant_where(i: usize) -> String {
    format!("tenant = {i}")
}

fn ilike_where(i: usize) -> String {
    format!("title ILIKE '%k{i}z%'")
}

/// Ingest, irrelevant changes, latency and footprint with `n` `tenant = i` shapes.
async fn tenant_scenario(
    pg: &Pg,
    opts: &Opts,
    root: &std::path::Path,
    n: usize,
    res: &mut Results,
) -> anyhow::Result<()> {
    let id = format!("eq{n}");
    let table = format!("bench_eq{n}");
    create_table(pg, &table).await?;
    let mut amp = Ampere::start(pg, root, &id).await?;
    let out = async {
        let mut conn = Conn::new(amp.addr);
        let (mut marker, _, _) = follow(&mut conn, &table, Some("tenant = -1")).await?;
        drop(conn);

        let rss_before = env::rss_bytes();
        let heap_before = env::heap_in_use();
        let took = create_shapes(&amp, &table, n, opts.create_concurrency, tenant_where).await?;
        let rss_after = env::rss_bytes();
        let heap_after = env::heap_in_use();
        let fp = Footprint {
            shapes: n,
            create_secs: took.as_secs_f64(),
            shapes_created_per_sec: n as f64 / took.as_secs_f64(),
            rss_before,
            rss_after,
            bytes_per_shape: rss_after.saturating_sub(rss_before) as f64 / n as f64,
            heap_bytes_per_shape: heap_after.saturating_sub(heap_before) as f64 / n as f64,
        };
        eprintln!("  footprint: {fp:?}");
        res.footprint.push(fp);

        let relevant = move |j: usize| (i32::try_from(j % n).unwrap_or(0), "row ".to_owned());
        let ing = workloads::ingest(
            pg,
            &mut amp,
            "ingest",
            n,
            &mut marker,
            opts.changes(),
            opts.txn_rows,
            &relevant,
            opts.backlog(),
        )
        .await?;
        eprintln!("  ingest: {ing:?}");
        res.ingest.push(ing);

        let irr = workloads::ingest(
            pg,
            &mut amp,
            "irrelevant",
            n,
            &mut marker,
            opts.changes(),
            opts.txn_rows,
            &|_| (workloads::IRRELEVANT_TENANT, "row ".to_owned()),
            opts.backlog(),
        )
        .await?;
        eprintln!("  irrelevant: {irr:?}");
        res.ingest.push(irr);

        let mut conn = Conn::new(amp.addr);
        let (mut shape, _, _) = follow(&mut conn, &table, Some("tenant = 0")).await?;
        let lat = workloads::latency(pg, &amp, n, &mut shape, 0, opts.latency_samples).await?;
        eprintln!("  latency: {lat:?}");
        res.latency.push(lat);
        anyhow::Ok(())
    }
    .await;
    // The scenario's own error first: it is the one that explains a failed stop.
    let stopped = amp.stop(pg).await;
    out.and(stopped)
}

/// Non-indexable shapes: `title ILIKE '%k<i>z%'`, each transaction matching one of them.
async fn ilike_scenario(
    pg: &Pg,
    opts: &Opts,
    root: &std::path::Path,
    n: usize,
    res: &mut Results,
) -> anyhow::Result<()> {
    let id = format!("like{n}");
    let table = format!("bench_like{n}");
    create_table(pg, &table).await?;
    let mut amp = Ampere::start(pg, root, &id).await?;
    let out = async {
        let mut conn = Conn::new(amp.addr);
        let (mut marker, _, _) = follow(&mut conn, &table, Some("tenant = -1")).await?;
        create_shapes(&amp, &table, n, opts.create_concurrency, ilike_where).await?;
        let rows_for = move |j: usize| (0, format!("x k{}z row ", j % n));
        let ing = workloads::ingest(
            pg,
            &mut amp,
            "ilike",
            n,
            &mut marker,
            opts.ilike_changes(),
            opts.txn_rows,
            &rows_for,
            opts.backlog(),
        )
        .await?;
        eprintln!("  ilike: {ing:?}");
        res.ingest.push(ing);
        anyhow::Ok(())
    }
    .await;
    // The scenario's own error first: it is the one that explains a failed stop.
    let stopped = amp.stop(pg).await;
    out.and(stopped)
}

async fn sync_scenario(
    pg: &Pg,
    opts: &Opts,
    root: &std::path::Path,
    res: &mut Results,
) -> anyhow::Result<()> {
    let amp = Ampere::start(pg, root, "sync").await?;
    let out = workloads::initial_sync(pg, &amp, opts.sync_rows()).await;
    let stopped = amp.stop(pg).await;
    let s = out?;
    stopped?;
    eprintln!("  initial sync: {s:?}");
    res.initial_sync = Some(s);
    Ok(())
}

async fn fanout_scenario(
    pg: &Pg,
    opts: &Opts,
    root: &std::path::Path,
    res: &mut Results,
) -> anyhow::Result<()> {
    // Both ends of every connection are in this process: two descriptors per client.
    let limit = ampere::http::server::raise_fd_limit();
    let cap = limit.saturating_sub(512) / 2;
    let clients = opts.fanout_clients().min(cap);
    if clients < opts.fanout_clients() {
        eprintln!(
            "  fan-out: {clients} clients (open-files limit {limit}, two descriptors per client)"
        );
    }
    let amp = Ampere::start(pg, root, "fanout").await?;
    let out = workloads::fanout(pg, &amp, clients).await;
    let stopped = amp.stop(pg).await;
    let (mut f, replay) = out?;
    stopped?;
    // After Ampere is gone, so the floor is measured on a quiet process with free descriptors.
    let out = match workloads::raw_fanout(&replay, clients).await {
        Ok(b) => {
            f.set_baseline(b);
            Ok(())
        }
        Err(e) => Err(e.context("raw tokio baseline")),
    };
    eprintln!("  fan-out: {f:?}");
    res.fanout = Some(f);
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    ampere::telemetry::init(&opts.log_level, false);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let load_start = env::loadavg();
    let clock = Instant::now();

    eprintln!("starting Postgres (fsync {})", opts.pg_fsync);
    let pg = Pg::start(opts.pg_fsync == "on").await?;
    let pg_version = pg.text("SHOW server_version").await?;
    let root = tempfile_dir()?;
    let mut runs: Vec<Results> = Vec::new();
    for run in 1..=opts.repeat {
        if opts.repeat > 1 {
            eprintln!("run {run} of {}", opts.repeat);
        }
        let mut res = Results::default();
        // Each run's instances get fresh storage directories.
        let root = root.join(format!("run{run}"));
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;

        if opts.runs("ingest") {
            // Largest first: its footprint is measured before earlier scenarios fragment the heap
            // (memory they freed is reused without growing RSS, hiding the new shapes' cost).
            let mut counts: Vec<usize> =
                opts.shape_counts().into_iter().filter(|&n| n > 0).collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            for n in counts {
                eprintln!("ingest / irrelevant / latency / footprint with {n} shapes");
                if let Err(e) = tenant_scenario(&pg, &opts, &root, n, &mut res).await {
                    eprintln!("  failed: {e:#}");
                    res.errors
                        .push(format!("tenant scenario, {n} shapes: {e:#}"));
                }
            }
        }
        if opts.runs("ilike") {
            for &n in opts.ilike_shapes.iter().filter(|&&n| n > 0) {
                eprintln!("non-indexable shapes: {n}");
                if let Err(e) = ilike_scenario(&pg, &opts, &root, n, &mut res).await {
                    eprintln!("  failed: {e:#}");
                    res.errors
                        .push(format!("ilike scenario, {n} shapes: {e:#}"));
                }
            }
        }
        if opts.runs("sync") {
            eprintln!("initial sync of {} rows", opts.sync_rows());
            if let Err(e) = sync_scenario(&pg, &opts, &root, &mut res).await {
                eprintln!("  failed: {e:#}");
                res.errors.push(format!("initial sync: {e:#}"));
            }
        }
        if opts.runs("fanout") {
            eprintln!("fan-out");
            if let Err(e) = fanout_scenario(&pg, &opts, &root, &mut res).await {
                eprintln!("  failed: {e:#}");
                res.errors.push(format!("fan-out: {e:#}"));
            }
        }
        runs.push(res);
    }
    let res = report::median(&runs)?;
    let _ = std::fs::remove_dir_all(&root);
    let fsync = pg.fsync;
    drop(pg);

    let meta = report::Meta {
        command,
        runs: runs.len(),
        started_unix: started,
        duration_secs: clock.elapsed().as_secs_f64(),
        loadavg_start: load_start,
        loadavg_end: env::loadavg(),
        machine: env::machine(&pg_version, fsync),
    };
    let (json_path, md_path) = report::write(&opts.out_dir, &meta, &res, &runs)
        .with_context(|| format!("writing the report into {}", opts.out_dir.display()))?;
    println!("{}", report::markdown(&meta, &res));
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    if res.errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} scenario(s) failed", res.errors.len())
    }
}

/// A fresh directory for the instances' storage (removed at the end of the run).
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "ampere-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}
