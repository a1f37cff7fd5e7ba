//! The bench's environment: one throwaway Postgres for the whole run, Ampere instances started
//! in-process (one per scenario, each with its own storage dir, slot and publication), and the
//! machine facts and process measurements the report needs.
//!
//! Invariants: everything listens on 127.0.0.1; every wait is bounded; an instance's slot is
//! dropped when it stops, so no slot of a finished scenario retains WAL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ampere::config::Config;
use ampere::pg::local_cluster::{ClusterOptions, LocalCluster};
use anyhow::{Context, bail};
use tokio::sync::watch;

use super::http::Conn;

/// How long an instance may take to report `active`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster and an admin connection to it.
pub struct Pg {
    pub cluster: LocalCluster,
    pub client: tokio_postgres::Client,
    pub fsync: bool,
}

impl Pg {
    pub async fn start(fsync: bool) -> anyhow::Result<Pg> {
        let opts = ClusterOptions {
            extra_settings: vec![
                ("fsync".into(), if fsync { "on" } else { "off" }.into()),
                // No checkpoint in the middle of a timed run.
                ("max_wal_size".into(), "8GB".into()),
                ("checkpoint_timeout".into(), "1h".into()),
            ],
            ..ClusterOptions::default()
        };
        let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(opts))
            .await?
            .context("start a throwaway Postgres")?;
        let client = connect(&cluster.url()).await?;
        Ok(Pg {
            cluster,
            client,
            fsync,
        })
    }

    pub fn url(&self) -> String {
        self.cluster.url()
    }

    pub async fn exec(&self, sql: &str) -> anyhow::Result<()> {
        self.client
            .batch_execute(sql)
            .await
            .with_context(|| sql.to_owned())
    }

    /// The first column of the first row, as text.
    pub async fn text(&self, sql: &str) -> anyhow::Result<String> {
        let msgs = self
            .client
            .simple_query(sql)
            .await
            .context(sql.to_owned())?;
        for m in msgs {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                return Ok(r.get(0).unwrap_or("").to_owned());
            }
        }
        bail!("{sql}: no row")
    }

    pub async fn current_lsn(&self) -> anyhow::Result<String> {
        self.text("SELECT pg_current_wal_lsn()::text").await
    }

    /// Waits until the slot's `confirmed_flush_lsn` is at or past `lsn`; returns when it saw it.
    pub async fn wait_confirmed(
        &self,
        slot: &str,
        lsn: &str,
        limit: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        let sql = "SELECT coalesce(confirmed_flush_lsn >= $1::text::pg_lsn, false) \
                   FROM pg_replication_slots WHERE slot_name = $2";
        loop {
            let row = self.client.query_one(sql, &[&lsn, &slot]).await?;
            if row.get::<_, bool>(0) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("slot {slot} did not confirm {lsn} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops a slot, waiting (bounded) for its walsender to let go of it.
    pub async fn drop_slot(&self, slot: &str) -> anyhow::Result<()> {
        for _ in 0..200 {
            let r = self
                .client
                .execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                     WHERE slot_name = $1 AND NOT active",
                    &[&slot],
                )
                .await?;
            let left = self
                .client
                .query_one(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await?
                .get::<_, i64>(0);
            if r > 0 || left == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("slot {slot} stayed active")
    }
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to {url}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// Ampere running in this process.
pub struct Ampere {
    pub addr: SocketAddr,
    pub storage: PathBuf,
    pub slot: String,
    pub publication: String,
    config: Config,
    shutdown: watch::Sender<bool>,
    /// The running instance; `None` while paused (its handle was awaited to completion, and a
    /// finished handle must not be polled again).
    task: Option<tokio::task::JoinHandle<Result<(), ampere::app::AppError>>>,
}

impl Ampere {
    pub async fn start(pg: &Pg, root: &Path, stream_id: &str) -> anyhow::Result<Ampere> {
        let storage = root.join(stream_id);
        let mut config = Config::for_tests(pg.url(), storage.clone(), stream_id);
        config.enable_integration_testing = false;
        config.max_initial_requests = 10_000;
        config.max_existing_requests = 100_000;
        let slot = config.slot_name();
        let publication = config.publication_name();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(ampere::app::run(listener, config.clone(), rx));
        let a = Ampere {
            addr,
            storage,
            slot,
            publication,
            config,
            shutdown: tx,
            task: Some(task),
        };
        a.wait_active().await?;
        Ok(a)
    }

    /// Stops the instance but keeps its slot and storage, so WAL piles up for [`Ampere::resume`].
    pub async fn pause(&mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(STOP_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(anyhow::Error::new(e).context("ampere stopped with")),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("ampere did not stop within {STOP_TIMEOUT:?}"),
        }
    }

    /// Starts a paused instance again on the same storage and slot (a new port); returns once
    /// it reports `active`.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        self.addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(false);
        self.shutdown = tx;
        self.task = Some(tokio::spawn(ampere::app::run(
            listener,
            self.config.clone(),
            rx,
        )));
        self.wait_active().await
    }

    async fn wait_active(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + ACTIVE_TIMEOUT;
        let mut conn = Conn::new(self.addr);
        loop {
            if let Ok(r) = conn.get("/v1/health", Duration::from_secs(5)).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline || self.task.as_ref().is_none_or(|t| t.is_finished()) {
                bail!("ampere at {} never became active", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the instance (unless a failed step left it paused) and drops its slot.
    pub async fn stop(mut self, pg: &Pg) -> anyhow::Result<()> {
        self.pause().await?;
        pg.drop_slot(&self.slot).await
    }
}

/// Resident set size of this process (Ampere and the bench), after returning freed heap pages to
/// the kernel so that memory the bench allocated and dropped does not count.
pub fn rss_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes the allocator has handed out and not had back (glibc `mallinfo2`; 0 elsewhere).
pub fn heap_in_use() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        (m.uordblks + m.hblkhd) as u64
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// Disk usage of a directory tree, like `du -s` (allocated blocks), in bytes.
pub fn du_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// The machine and build the figures come from.
pub fn machine(pg_version: &str, fsync: bool) -> serde_json::Value {
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu": cpu,
        "mem_total": mem_total,
        "kernel": kernel,
        "commit": git(&["rev-parse", "HEAD"]),
        "worktree_dirty": dirty,
        "postgres": pg_version,
        "postgres_fsync": fsync,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

/// CPU time this process has used so far, all threads (user and system).
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &raw mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
