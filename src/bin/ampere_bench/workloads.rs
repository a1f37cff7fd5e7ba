//! The workloads of issue 6, each measured against its baseline in the same run.
//!
//! Every loop has a fixed bound and every wait a deadline ([`LONG_WAIT`] at most), so a stuck
//! server fails the bench instead of hanging it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::env::{self, Ampere, Pg};
use super::http::{Conn, Resp, enc};

/// Upper bound of any single wait (an ingest drain, a snapshot, a pg_recvlogical run).
pub const LONG_WAIT: Duration = Duration::from_secs(15 * 60);
/// Bound of one plain HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Most requests a shape fetch may take before the bench gives up.
const MAX_CHUNKS: usize = 100_000;
/// The tenant of the marker row that ends every ingest run (no workload shape matches it).
const MARKER_TENANT: i32 = -1;
/// The tenant of irrelevant changes (matches no shape at all).
pub const IRRELEVANT_TENANT: i32 = -2;

/// Creates the table every scenario writes to.
pub async fn create_table(pg: &Pg, table: &str) -> anyhow::Result<()> {
    // A repeated run (`--repeat`) meets the previous run's table: start from an empty one.
    pg.exec(&format!("DROP TABLE IF EXISTS {table}")).await?;
    pg.exec(&format!(
        "CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         tenant int NOT NULL, title text NOT NULL, value int NOT NULL)"
    ))
    .await
}

fn shape_path(table: &str, where_: Option<&str>, offset: &str, handle: Option<&str>) -> String {
    let mut p = format!("/v1/shape?table={table}&offset={}", enc(offset));
    if let Some(w) = where_ {
        p.push_str("&where=");
        p.push_str(&enc(w));
    }
    if let Some(h) = handle {
        p.push_str("&handle=");
        p.push_str(&enc(h));
    }
    p
}

/// A shape the bench follows: where it is, and what fetching it cost.
#[derive(Debug, Clone)]
pub struct Followed {
    pub table: String,
    pub where_: Option<String>,
    pub handle: String,
    pub offset: String,
}

impl Followed {
    fn live_path(&self) -> String {
        shape_path(
            &self.table,
            self.where_.as_deref(),
            &self.offset,
            Some(&self.handle),
        ) + "&live=true"
    }

    /// Moves to the offset a response ends at.
    fn advance(&mut self, r: &Resp) {
        if let Some(o) = r.header("electric-offset") {
            self.offset = o.to_owned();
        }
        if let Some(h) = r.header("electric-handle") {
            self.handle = h.to_owned();
        }
    }
}

/// Fetches a shape from `offset=-1` through all its chunks until `up-to-date`; returns the shape
/// and the body bytes and requests it took.
pub async fn follow(
    conn: &mut Conn,
    table: &str,
    where_: Option<&str>,
) -> anyhow::Result<(Followed, u64, usize)> {
    let mut path = shape_path(table, where_, "-1", None);
    let mut bytes = 0u64;
    let deadline = Instant::now() + LONG_WAIT;
    for requests in 1..=MAX_CHUNKS {
        let r = conn.get(&path, REQUEST_TIMEOUT).await?;
        if r.status != 200 {
            bail!(
                "GET {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        bytes += r.body.len() as u64;
        let handle = r.header("electric-handle").context("no electric-handle")?;
        let offset = r.header("electric-offset").context("no electric-offset")?;
        if r.up_to_date() {
            let f = Followed {
                table: table.to_owned(),
                where_: where_.map(str::to_owned),
                handle: handle.to_owned(),
                offset: offset.to_owned(),
            };
            return Ok((f, bytes, requests));
        }
        if Instant::now() > deadline {
            bail!("{table} not up to date within {LONG_WAIT:?}");
        }
        path = shape_path(table, where_, offset, Some(handle));
    }
    bail!("{table} not up to date after {MAX_CHUNKS} requests")
}

/// Creates `n` shapes (`make_where(i)` for i in 0..n) with `concurrency` parallel clients.
/// Keeps nothing per shape, so the bench's own memory does not grow with `n`.
pub async fn create_shapes(
    amp: &Ampere,
    table: &str,
    n: usize,
    concurrency: usize,
    make_where: fn(usize) -> String,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let next = next.clone();
        let table = table.to_owned();
        let mut conn = Conn::with_buffer(amp.addr, 16 * 1024);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let path = shape_path(&table, Some(&make_where(i)), "-1", None);
                let mut attempt = 0u64;
                loop {
                    let r = conn.get(&path, REQUEST_TIMEOUT).await?;
                    if r.status == 200 {
                        break;
                    }
                    attempt += 1;
                    if r.status != 503 || attempt > 5 {
                        bail!(
                            "creating shape {i}: {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

/// Issues live requests on `shape` until one carries a change; returns when it arrived.
async fn wait_for_change(
    mut shape: Followed,
    mut conn: Conn,
) -> anyhow::Result<(Instant, Followed)> {
    let deadline = Instant::now() + LONG_WAIT;
    loop {
        let r = conn.get(&shape.live_path(), REQUEST_TIMEOUT).await?;
        let at = Instant::now();
        if r.status != 200 {
            bail!(
                "live request: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        shape.advance(&r);
        if r.has_change() {
            return Ok((at, shape));
        }
        if at > deadline {
            bail!("no change on the marker shape within {LONG_WAIT:?}");
        }
    }
}

/// What the rows of transaction `j` look like: (tenant, title prefix).
pub type RowsFor<'a> = &'a (dyn Fn(usize) -> (i32, String) + Sync);

/// One ingest run and its `pg_recvlogical` baseline.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ingest {
    pub workload: String,
    pub shapes: usize,
    pub changes: usize,
    pub txn_rows: usize,
    /// `backlog`: Ampere was stopped during the inserts and drains the WAL they left, like the
    /// baseline; `live`: Ampere consumed while the inserts ran.
    pub mode: String,
    /// First insert → last commit returned.
    pub insert_secs: f64,
    /// Backlog mode: Ampere start → `/v1/health` active (restoring the shapes), part of the
    /// figures below.
    pub restart_secs: f64,
    /// Backlog mode: WAL bytes before the workload that Ampere's walsender had to decode again
    /// (its slot's restart_lsn lagged); 0 = the same WAL as the baseline.
    pub redecoded_wal_bytes: i64,
    /// Clock start (backlog: Ampere start; live: first insert) → Ampere's slot
    /// `confirmed_flush_lsn` ≥ the WAL position after the last commit.
    pub ampere_ack_secs: f64,
    /// Clock start → a marker row committed after the workload reached a live client.
    pub ampere_visible_secs: f64,
    pub ampere_changes_per_sec: f64,
    /// Changes / `ampere_visible_secs` (free of the 1 s status-update interval of the slot).
    pub ampere_visible_changes_per_sec: f64,
    /// `pg_recvlogical` start → exit at the same end position, draining the same WAL backlog.
    pub baseline_secs: f64,
    pub baseline_changes_per_sec: f64,
    pub ratio: f64,
    pub disk_bytes_per_change: f64,
    pub loadavg: String,
}

/// Inserts `changes` rows in transactions of `txn_rows`, each transaction's rows given by
/// `rows_for(j)`, and times Ampere and `pg_recvlogical` draining them.
#[allow(clippy::too_many_arguments)]
pub async fn ingest(
    pg: &Pg,
    amp: &mut Ampere,
    workload: &str,
    shapes: usize,
    marker: &mut Followed,
    changes: usize,
    txn_rows: usize,
    rows_for: RowsFor<'_>,
    backlog: bool,
) -> anyhow::Result<Ingest> {
    let table = marker.table.clone();
    let s2 = format!("bench_s2_{}", amp.slot.trim_start_matches("electric_slot_"));
    recvlogical(
        &pg.url(),
        &["--slot", &s2, "--create-slot", "-P", "pgoutput"],
        Duration::from_secs(60),
    )
    .await
    .context("pg_recvlogical --create-slot")?;
    let du_before = env::du_bytes(&amp.storage);

    let mut waiter = None;
    let mut redecode = 0i64;
    if backlog {
        // A restarted walsender decodes again from the slot's restart_lsn. Move it up to here
        // (a checkpoint logs the running-xacts record it advances on), so Ampere's drain covers
        // the same WAL as the baseline's fresh slot; what is left is reported.
        let here = pg.current_lsn().await?;
        pg.exec("CHECKPOINT").await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            redecode = pg
                .client
                .query_one(
                    "SELECT coalesce(greatest($1::text::pg_lsn - restart_lsn, 0), 0)::bigint \
                     FROM pg_replication_slots WHERE slot_name = $2",
                    &[&here, &amp.slot],
                )
                .await?
                .get(0);
            if redecode == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        amp.pause().await?;
    } else {
        waiter = Some(tokio::spawn(wait_for_change(
            marker.clone(),
            Conn::new(amp.addr),
        )));
        // Let the marker's live request park before the clock starts.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stmt = pg
        .client
        .prepare(&format!(
            "INSERT INTO {table} (tenant, title, value) \
             SELECT $1::int, $2::text || g, g FROM generate_series(1, $3::int) g"
        ))
        .await?;
    let txns = changes.div_ceil(txn_rows.max(1));
    let t_insert = Instant::now();
    for j in 0..txns {
        let rows = txn_rows.min(changes - j * txn_rows);
        let (tenant, title) = rows_for(j);
        let rows = i32::try_from(rows)?;
        pg.client.execute(&stmt, &[&tenant, &title, &rows]).await?;
    }
    let end_lsn = pg.current_lsn().await?;
    let insert = t_insert.elapsed();
    pg.client
        .execute(
            &format!("INSERT INTO {table} (tenant, title, value) VALUES ($1, 'marker', 0)"),
            &[&MARKER_TENANT],
        )
        .await?;

    // Live: the clock started at the first insert. Backlog: it starts when Ampere starts again.
    let t0 = if backlog { Instant::now() } else { t_insert };
    let mut restart = Duration::ZERO;
    if backlog {
        amp.resume().await?;
        restart = t0.elapsed();
        waiter = Some(tokio::spawn(wait_for_change(
            marker.clone(),
            Conn::new(amp.addr),
        )));
    }
    let waiter = waiter.context("no marker waiter")?;
    let acked = pg.wait_confirmed(&amp.slot, &end_lsn, LONG_WAIT).await? - t0;
    let (seen, moved) = tokio::time::timeout(LONG_WAIT, waiter)
        .await
        .context("marker wait")???;
    *marker = moved;
    let visible = seen - t0;
    let du_after = env::du_bytes(&amp.storage);

    let publication = format!("publication_names={}", amp.publication);
    let end = end_lsn.clone();
    let baseline = recvlogical(
        &pg.url(),
        &[
            "--slot",
            &s2,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            &publication,
            "-E",
            &end,
            "-f",
            "/dev/null",
        ],
        LONG_WAIT,
    )
    .await
    .context("pg_recvlogical --start")?;
    pg.drop_slot(&s2).await?;

    let n = changes as f64;
    let ampere_rate = n / acked.as_secs_f64();
    let baseline_rate = n / baseline.as_secs_f64();
    Ok(Ingest {
        workload: workload.to_owned(),
        shapes,
        changes,
        txn_rows,
        mode: if backlog { "backlog" } else { "live" }.to_owned(),
        insert_secs: insert.as_secs_f64(),
        restart_secs: restart.as_secs_f64(),
        redecoded_wal_bytes: redecode,
        ampere_ack_secs: acked.as_secs_f64(),
        ampere_visible_secs: visible.as_secs_f64(),
        ampere_changes_per_sec: ampere_rate,
        ampere_visible_changes_per_sec: n / visible.as_secs_f64(),
        baseline_secs: baseline.as_secs_f64(),
        baseline_changes_per_sec: baseline_rate,
        ratio: ampere_rate / baseline_rate,
        disk_bytes_per_change: du_after.saturating_sub(du_before) as f64 / n,
        loadavg: env::loadavg(),
    })
}

/// Runs `pg_recvlogical -d <url> <args>` to completion within `limit`; returns how long it took.
async fn recvlogical(url: &str, args: &[&str], limit: Duration) -> anyhow::Result<Duration> {
    let mut cmd = tokio::process::Command::new("pg_recvlogical");
    cmd.arg("-d")
        .arg(url)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .context("spawn pg_recvlogical (is it on PATH?)")?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("pg_recvlogical did not finish within {limit:?}"))??;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "pg_recvlogical {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

/// Commit → live response delay of a long-polling client.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Latency {
    pub shapes: usize,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// How long the writer's own `INSERT` (autocommit) took, median.
    pub commit_p50_ms: f64,
    pub loadavg: String,
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `samples` times: park a live request on `shape`, commit one row into it, and time from the
/// commit returning to the response arriving.
pub async fn latency(
    pg: &Pg,
    amp: &Ampere,
    shapes: usize,
    shape: &mut Followed,
    tenant: i32,
    samples: usize,
) -> anyhow::Result<Latency> {
    let stmt = pg
        .client
        .prepare(&format!(
            "INSERT INTO {} (tenant, title, value) VALUES ($1, 'latency', 0)",
            shape.table
        ))
        .await?;
    let mut conn = Conn::new(amp.addr);
    let mut lat = Vec::with_capacity(samples);
    let mut commits = Vec::with_capacity(samples);
    for _ in 0..samples * 2 {
        if lat.len() == samples {
            break;
        }
        conn.send(&shape.live_path()).await?;
        // Let the request park, as a client that has been waiting would be.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = Instant::now();
        pg.client.execute(&stmt, &[&tenant]).await?;
        let committed = Instant::now();
        let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.recv())
            .await
            .context("live response")??;
        let arrived = Instant::now();
        if r.status != 200 {
            bail!("live: {} {}", r.status, String::from_utf8_lossy(&r.body));
        }
        shape.advance(&r);
        if r.has_change() {
            lat.push((arrived - committed).as_secs_f64() * 1e3);
            commits.push((committed - before).as_secs_f64() * 1e3);
        }
    }
    if lat.len() < samples {
        bail!("only {} of {samples} latency samples", lat.len());
    }
    lat.sort_by(f64::total_cmp);
    commits.sort_by(f64::total_cmp);
    Ok(Latency {
        shapes,
        samples,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        commit_p50_ms: percentile(&commits, 0.5),
        loadavg: env::loadavg(),
    })
}

/// Initial sync of one big shape against `COPY (SELECT row_to_json(t) …)`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InitialSync {
    pub rows: usize,
    pub copy_secs: f64,
    pub copy_bytes: u64,
    pub fetch_secs: f64,
    pub fetch_bytes: u64,
    pub fetch_requests: usize,
    pub ratio: f64,
    pub refetch_secs: f64,
    pub refetch_ratio: f64,
    pub loadavg: String,
}

pub async fn initial_sync(pg: &Pg, amp: &Ampere, rows: usize) -> anyhow::Result<InitialSync> {
    let table = "bench_sync";
    create_table(pg, table).await?;
    pg.exec(&format!(
        "INSERT INTO {table} (tenant, title, value) \
         SELECT g % 1000, 'title of row ' || g, g FROM generate_series(1, {rows}) g"
    ))
    .await?;
    pg.exec(&format!("VACUUM ANALYZE {table}")).await?;

    // Best of two, so both sides read a warm table.
    let mut copy = Duration::MAX;
    let mut copy_bytes = 0u64;
    for _ in 0..2 {
        let start = Instant::now();
        let stream = pg
            .client
            .copy_out(&format!(
                "COPY (SELECT row_to_json(t) FROM {table} t) TO STDOUT"
            ))
            .await?;
        let mut stream = std::pin::pin!(stream);
        let mut bytes = 0u64;
        while let Some(chunk) = tokio::time::timeout(REQUEST_TIMEOUT, stream.next())
            .await
            .context("COPY stalled")?
        {
            bytes += chunk?.len() as u64;
        }
        copy = copy.min(start.elapsed());
        copy_bytes = bytes;
    }

    let mut conn = Conn::new(amp.addr);
    let start = Instant::now();
    let (_, fetch_bytes, fetch_requests) = follow(&mut conn, table, None).await?;
    let fetch = start.elapsed();
    let start = Instant::now();
    let _ = follow(&mut conn, table, None).await?;
    let refetch = start.elapsed();
    Ok(InitialSync {
        rows,
        copy_secs: copy.as_secs_f64(),
        copy_bytes,
        fetch_secs: fetch.as_secs_f64(),
        fetch_bytes,
        fetch_requests,
        ratio: fetch.as_secs_f64() / copy.as_secs_f64(),
        refetch_secs: refetch.as_secs_f64(),
        refetch_ratio: refetch.as_secs_f64() / copy.as_secs_f64(),
        loadavg: env::loadavg(),
    })
}

/// Many clients parked on one shape, one write; next to it, the same clients parked on a raw
/// tokio server that writes the same response bytes on one signal (the floor of this machine).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fanout {
    pub clients: usize,
    pub delivered: usize,
    /// The first response's delivery time: how long the write took to reach the long-polls at
    /// all, before the fan-out itself (absent in older reports).
    #[serde(default)]
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// RSS growth while the requests are parked, minus the bench's client-side state, per request.
    pub bytes_per_parked_request: f64,
    /// The same from the allocator's bytes in use (absent in older reports).
    #[serde(default)]
    pub heap_bytes_per_parked_request: f64,
    pub loadavg: String,
    /// Bytes of the live response Ampere sent (status line, headers, body): what the raw
    /// baseline writes to each of its clients.
    #[serde(default)]
    pub response_bytes: usize,
    /// The same clients, parked the same way, on the raw tokio server (absent in older reports).
    #[serde(default)]
    pub baseline: Option<Delivery>,
    /// Ampere's p99 over the raw baseline's.
    #[serde(default)]
    pub p99_ratio: Option<f64>,
    /// Process CPU time (server and clients) from the write to the last delivery, per
    /// delivery: the cost of a delivery, which run-to-run scheduling noise does not move the way
    /// it moves the percentiles (absent in older reports).
    #[serde(default)]
    pub cpu_us_per_delivery: f64,
}

impl Fanout {
    pub fn set_baseline(&mut self, b: Delivery) {
        self.p99_ratio = Some(self.p99_ms / b.p99_ms);
        self.baseline = Some(b);
    }
}

/// One delivery round: how many of the parked requests got their response, how fast, and what
/// parking them cost.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Delivery {
    pub delivered: usize,
    /// The first response's delivery time (absent in older reports).
    #[serde(default)]
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// RSS growth while the requests are parked, minus the bench's client-side state, per request.
    pub bytes_per_parked_request: f64,
    /// The same from the allocator's bytes in use.
    pub heap_bytes_per_parked_request: f64,
    /// Process CPU time from the write to the last delivery, per delivery (absent in older
    /// reports).
    #[serde(default)]
    pub cpu_us_per_delivery: f64,
}

impl Delivery {
    /// From the delivery times (ms) and CPU time, and the (RSS, heap) growth per parked request.
    fn new(Arrivals { mut lat, cpu }: Arrivals, (rss, heap): (f64, f64)) -> Delivery {
        lat.sort_by(f64::total_cmp);
        Delivery {
            delivered: lat.len(),
            first_ms: lat.first().copied().unwrap_or(f64::NAN),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            bytes_per_parked_request: rss,
            heap_bytes_per_parked_request: heap,
            cpu_us_per_delivery: cpu.as_secs_f64() * 1e6 / lat.len().max(1) as f64,
        }
    }
}

/// What the raw baseline replays: the live request the clients send and the response Ampere
/// answered it with, byte for byte.
pub struct Replay {
    path: String,
    response: Arc<[u8]>,
}

/// Growth step of a fan-out connection's read buffer (allocated when it first reads, after the
/// memory figure is taken).
const FANOUT_BUFFER: usize = 4096;

pub async fn fanout(pg: &Pg, amp: &Ampere, clients: usize) -> anyhow::Result<(Fanout, Replay)> {
    let table = "bench_fanout";
    create_table(pg, table).await?;
    let mut conn = Conn::new(amp.addr);
    let (shape, _, _) = follow(&mut conn, table, Some("tenant = 0")).await?;
    let path = shape.live_path();

    // One more live request, parked first and read last: its bytes are what the baseline replays.
    let mut probe = Conn::new(amp.addr);
    probe.send(&path).await?;
    let parked = park(amp.addr, &path, clients).await?;
    let memory = (parked.rss_per_request, parked.heap_per_request);
    let lat = deliver(parked.conns, async {
        pg.client
            .execute(
                &format!("INSERT INTO {table} (tenant, title, value) VALUES (0, 'fanout', 0)"),
                &[],
            )
            .await?;
        Ok(Instant::now())
    })
    .await?;
    let (resp, wire) = tokio::time::timeout(REQUEST_TIMEOUT, probe.recv_wire())
        .await
        .context("the probe's live response timed out")??;
    if !(resp.status == 200 && resp.has_change()) {
        bail!(
            "the probe's live response is a {} without a change",
            resp.status
        );
    }
    let d = Delivery::new(lat, memory);
    let f = Fanout {
        clients,
        delivered: d.delivered,
        first_ms: d.first_ms,
        p50_ms: d.p50_ms,
        p99_ms: d.p99_ms,
        max_ms: d.max_ms,
        bytes_per_parked_request: d.bytes_per_parked_request,
        heap_bytes_per_parked_request: d.heap_bytes_per_parked_request,
        loadavg: env::loadavg(),
        response_bytes: wire.len(),
        baseline: None,
        p99_ratio: None,
        cpu_us_per_delivery: d.cpu_us_per_delivery,
    };
    let replay = Replay {
        path,
        response: wire.into(),
    };
    Ok((f, replay))
}

/// The fan-out's floor: a raw tokio server on 127.0.0.1 whose connection tasks read the request
/// head, wait for one shared signal, write `replay.response` and keep the connection open. The
/// same client code parks `clients` requests on it and times delivery from the signal.
pub async fn raw_fanout(replay: &Replay, clients: usize) -> anyhow::Result<Delivery> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (go, ready) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(raw_serve(listener, replay.response.clone(), ready));
    let out = async {
        let parked = park(addr, &replay.path, clients).await?;
        let memory = (parked.rss_per_request, parked.heap_per_request);
        let lat = deliver(parked.conns, async {
            let fired = Instant::now();
            go.send_replace(true);
            Ok(fired)
        })
        .await?;
        anyhow::Ok(Delivery::new(lat, memory))
    }
    .await;
    // The connection tasks end by themselves: at the client's close, or when `go` is dropped.
    server.abort();
    out
}

async fn raw_serve(
    listener: tokio::net::TcpListener,
    response: Arc<[u8]>,
    ready: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(raw_connection(stream, response.clone(), ready.clone()));
    }
}

async fn raw_connection(
    mut stream: tokio::net::TcpStream,
    response: Arc<[u8]>,
    mut ready: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::AsyncWriteExt;
    if read_request_head(&stream).await.is_err() || ready.wait_for(|&go| go).await.is_err() {
        return;
    }
    if stream.write_all(&response).await.is_err() {
        return;
    }
    // Keep-alive, like a real server: wait for a next request (the client closes instead).
    let _ = read_request_head(&stream).await;
}

/// Reads up to the end of one request head; an error at EOF. The read buffer lives on the stack
/// between awaits, so a parked connection's task holds no buffer.
async fn read_request_head(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    // How much of "\r\n\r\n" the bytes so far end with.
    let mut matched = 0u8;
    loop {
        stream.readable().await?;
        let mut buf = [0u8; 1024];
        let n = match stream.try_read(&mut buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            matched = match (matched, b) {
                (0 | 2, b'\r') | (1 | 3, b'\n') => matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if matched == 4 {
                return Ok(());
            }
        }
    }
}

/// Parked requests and what parking them cost the process, per request.
struct Parked {
    conns: Vec<Conn>,
    /// RSS growth minus the bench's own `Conn`s.
    rss_per_request: f64,
    /// Growth of the allocator's bytes in use minus the bench's own `Conn`s: steadier than RSS
    /// when the heap holds memory an earlier measurement freed.
    heap_per_request: f64,
}

/// Connects `clients` connections to `addr`, sends each the live request `path` and lets them
/// park. The client side of the memory figures is the `Conn`s, subtracted, and each client
/// socket's tokio registration, counted (it is the same for every server measured).
async fn park(addr: SocketAddr, path: &str, clients: usize) -> anyhow::Result<Parked> {
    let rss_before = env::rss_bytes();
    let heap_before = env::heap_in_use();
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = Conn::with_buffer(addr, FANOUT_BUFFER);
        c.send(path).await?;
        conns.push(c);
    }
    // Let every request reach the server and park (bounded: 1 s + 1 s per 2,000 clients).
    tokio::time::sleep(Duration::from_millis(1000 + clients as u64 / 2)).await;
    let rss_parked = env::rss_bytes();
    let heap_parked = env::heap_in_use();
    let client_side = (clients * std::mem::size_of::<Conn>()) as f64;
    let per_request = |before: u64, after: u64| {
        ((after as f64 - before as f64 - client_side) / clients.max(1) as f64).max(0.0)
    };
    Ok(Parked {
        conns,
        rss_per_request: per_request(rss_before, rss_parked),
        heap_per_request: per_request(heap_before, heap_parked),
    })
}

/// Counts tasks down to zero; only the last one wakes the waiter.
struct Countdown {
    left: AtomicUsize,
    zero: Notify,
}

impl Countdown {
    fn new(n: usize) -> Countdown {
        Countdown {
            left: AtomicUsize::new(n),
            zero: Notify::new(),
        }
    }

    fn count_down(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Stores a permit if `zero` is not awaited yet.
            self.zero.notify_one();
        }
    }

    /// Resolves once the count is zero (at once if it already is).
    async fn zero(&self) {
        if self.remaining() > 0 {
            self.zero.notified().await;
        }
    }

    fn remaining(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

/// What one delivery round measured: the delivery times (ms) of the 200s carrying a change, from
/// the instant `fire` returns, and the process CPU time from just before `fire` to the last
/// delivery.
struct Arrivals {
    lat: Vec<f64>,
    cpu: Duration,
}

/// Reads every parked connection's response in its own task and returns [`Arrivals`].
///
/// The client must not perturb what it measures: each task stamps its arrival into its own slot
/// once the whole response is read and keeps its connection open (a close would make the server
/// tear the connection down while other deliveries are pending); only the last arrival wakes
/// this task; the connections close after the measurement.
async fn deliver(
    conns: Vec<Conn>,
    fire: impl Future<Output = anyhow::Result<Instant>>,
) -> anyhow::Result<Arrivals> {
    const NOT_DELIVERED: u64 = u64::MAX;
    let base = Instant::now();
    let arrivals: Arc<[AtomicU64]> = conns
        .iter()
        .map(|_| AtomicU64::new(NOT_DELIVERED))
        .collect();
    let waiting = Arc::new(Countdown::new(conns.len()));
    let left = Arc::new(Countdown::new(conns.len()));
    let mut readers = Vec::with_capacity(conns.len());
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (arrivals, waiting, left) = (arrivals.clone(), waiting.clone(), left.clone());
        readers.push(tokio::spawn(async move {
            // In the same poll as the first read, which registers the socket's waker.
            waiting.count_down();
            let delivered = conn.recv_delivery().await;
            let at = base.elapsed();
            if delivered.is_ok_and(|d| d) {
                let at = u64::try_from(at.as_nanos()).unwrap_or(NOT_DELIVERED - 1);
                arrivals[i].store(at, Ordering::Relaxed);
            }
            left.count_down();
            conn
        }));
    }
    // Every reader waits on its socket before the response is released.
    let mut cpu_before = Duration::ZERO;
    let fired = match tokio::time::timeout(REQUEST_TIMEOUT, waiting.zero()).await {
        Ok(()) => {
            cpu_before = env::process_cpu();
            fire.await
        }
        Err(_) => Err(anyhow::anyhow!(
            "readers not started within {REQUEST_TIMEOUT:?}"
        )),
    };
    let all_in = match &fired {
        Ok(_) => tokio::time::timeout(REQUEST_TIMEOUT, left.zero())
            .await
            .is_ok(),
        Err(_) => false,
    };
    let cpu = env::process_cpu().saturating_sub(cpu_before);
    // Synchronises with every reader's count-down: their stamps are visible from here on.
    let left = left.remaining();
    // Measurement over: stop the readers still waiting, close every connection.
    for r in &readers {
        r.abort();
    }
    drop(readers);
    let fired = fired?.saturating_duration_since(base);
    if !all_in {
        eprintln!("  {left} responses still missing after {REQUEST_TIMEOUT:?}");
    }
    let fired = u64::try_from(fired.as_nanos()).unwrap_or(0);
    let lat = arrivals
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .filter(|&a| a != NOT_DELIVERED)
        .map(|a| a.saturating_sub(fired) as f64 / 1e6)
        .collect();
    Ok(Arrivals { lat, cpu })
}
