//! Shared helpers: a throwaway Postgres per test, Ampere in-process on port 0 (or as the real
//! binary for crash tests), and an HTTP client that speaks the shape protocol.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ampere::config::Config;
use ampere::pg::local_cluster::LocalCluster;
use serde_json::Value;
use tokio::sync::watch;

/// A throwaway cluster and a query connection to it.
pub struct Pg {
    pub cluster: LocalCluster,
    pub client: tokio_postgres::Client,
}

impl Pg {
    pub async fn start() -> Pg {
        let cluster = tokio::task::spawn_blocking(LocalCluster::start_temp)
            .await
            .unwrap()
            .expect("start a throwaway Postgres");
        let client = connect(&cluster.url()).await;
        Pg { cluster, client }
    }

    /// A throwaway cluster with options (high LSN and xid epoch always on).
    pub async fn start_with(opts: ampere::pg::local_cluster::ClusterOptions) -> Pg {
        let opts = ampere::pg::local_cluster::ClusterOptions {
            high_lsn_and_xid_epoch: true,
            ..opts
        };
        let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(opts))
            .await
            .unwrap()
            .expect("start a throwaway Postgres");
        let client = connect(&cluster.url()).await;
        Pg { cluster, client }
    }

    pub fn url(&self) -> String {
        self.cluster.url()
    }

    /// The URL of a role on the `postgres` database, with optional password and query string.
    pub fn url_as(&self, user: &str, password: Option<&str>, query: &str) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_owned(),
        };
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!(
            "postgres://{auth}@127.0.0.1:{}/postgres{q}",
            self.cluster.port()
        )
    }

    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Rows of a query as text (`None` = NULL), rendered with the display settings.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let msgs = self
            .client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("SET DateStyle='ISO, DMY'; SET TimeZone='UTC'; SET extra_float_digits=1; SET IntervalStyle='iso_8601'; SET bytea_output='hex'")
        .await
        .unwrap();
    client
}

/// Ampere running in this process.
pub struct Server {
    pub base: String,
    pub storage: PathBuf,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub fn test_config(pg: &Pg, storage: &Path) -> Config {
    let mut c = Config::for_tests(pg.url(), storage.to_path_buf(), "test");
    c.long_poll_timeout = Duration::from_secs(3);
    c
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let s = Server::spawn(config).await;
        s.wait_active().await;
        s
    }

    /// Starts Ampere without waiting for it to become active.
    pub async fn spawn(config: Config) -> Server {
        ampere::telemetry::init("info", false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let storage = config.storage_dir.clone();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            ampere::app::run(listener, config, rx)
                .await
                .expect("ampere runs");
        });
        Server {
            base,
            storage,
            shutdown: tx,
            task,
        }
    }

    pub async fn wait_active(&self) {
        wait_active(&self.base).await;
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("graceful stop")
            .unwrap();
    }
}

pub async fn wait_active(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/v1/health")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became active");
}

/// The real binary, for crash tests.
pub struct Binary {
    pub base: String,
    child: Child,
    pub log: PathBuf,
}

impl Binary {
    pub async fn start(pg_url: &str, storage: &Path, port: u16) -> Binary {
        let b = Binary::spawn(pg_url, storage, port);
        wait_active(&b.base).await;
        b
    }

    /// Starts the binary without waiting for it to become active.
    pub fn spawn(pg_url: &str, storage: &Path, port: u16) -> Binary {
        Binary::spawn_with(pg_url, storage, port, &[])
    }

    /// Starts the binary with extra environment variables, without waiting.
    pub fn spawn_with(pg_url: &str, storage: &Path, port: u16, env: &[(&str, &str)]) -> Binary {
        let log = storage.with_extension(format!("{port}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ampere"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", pg_url)
            .env("ELECTRIC_PORT", port.to_string())
            .env("ELECTRIC_STORAGE_DIR", storage)
            .env("ELECTRIC_INSECURE", "true")
            .env("ELECTRIC_LONG_POLL_TIMEOUT", "2000")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn ampere");
        let base = format!("http://127.0.0.1:{port}");
        Binary { base, child, log }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// `GET /v1/health` status code, if the server answers.
    pub async fn health(&self) -> Option<u16> {
        reqwest::get(format!("{}/v1/health", self.base))
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The binary's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends a signal (SIGSTOP, SIGCONT, SIGTERM, …).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits (bounded) for the process to exit by itself; `None` if it is still running.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits up to `bound` for a clean exit; SIGKILL if it did not come (and then
    /// `None`).
    pub async fn terminate(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(bound).await;
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // A stopped process must be continued before it can die of SIGKILL promptly.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        }
        self.kill9();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP response of the shape API.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn messages(&self) -> &[Value] {
        self.body.as_array().map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn up_to_date(&self) -> bool {
        self.messages()
            .last()
            .is_some_and(|m| m["headers"]["control"] == "up-to-date")
    }
}

pub async fn get(base: &str, query: &str) -> Resp {
    get_with(base, query, &[]).await
}

pub async fn get_with(base: &str, query: &str, headers: &[(&str, &str)]) -> Resp {
    let http = reqwest::Client::new();
    let mut req = http.get(format!("{base}/v1/shape?{query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

/// Follows a shape like the TS client: initial sync until up-to-date, applying messages to a
/// map keyed by `key`; checks well-formedness (no insert of a present key, no update or delete
/// of an absent one). Returns the rows and the (handle, offset) to continue from.
#[derive(Debug, Default, Clone)]
pub struct Follower {
    pub query: String,
    pub handle: Option<String>,
    pub offset: String,
    pub rows: std::collections::BTreeMap<String, serde_json::Map<String, Value>>,
    pub refetches: usize,
    pub last_lsn: String,
}

impl Follower {
    pub fn new(query: &str) -> Follower {
        Follower {
            query: query.to_owned(),
            offset: "-1".into(),
            ..Default::default()
        }
    }

    fn url(&self, live: bool) -> String {
        let mut q = format!("{}&offset={}", self.query, self.offset);
        if let Some(h) = &self.handle {
            q.push_str(&format!("&handle={h}"));
        }
        // After a 409 the follower starts over at -1, where a live request is invalid: like the
        // TS client, it catches up first.
        if live && self.offset != "-1" {
            q.push_str("&live=true");
        }
        q
    }

    /// One request; returns whether the response ended with up-to-date.
    pub async fn step(&mut self, base: &str, live: bool) -> bool {
        let r = get(base, &self.url(live)).await;
        match r.status {
            200 => {}
            409 => {
                self.refetches += 1;
                self.handle = r.h("electric-handle").map(str::to_owned);
                self.offset = "-1".into();
                self.rows.clear();
                return false;
            }
            s => panic!("unexpected status {s}: {}", r.text),
        }
        self.handle = Some(r.h("electric-handle").expect("handle header").to_owned());
        self.offset = r.h("electric-offset").expect("offset header").to_owned();
        for m in r.messages() {
            if let Some(key) = m.get("key").and_then(Value::as_str) {
                let op = m["headers"]["operation"].as_str().unwrap();
                let value = m["value"].as_object().cloned().unwrap_or_default();
                match op {
                    "insert" => {
                        assert!(
                            self.rows.insert(key.to_owned(), value).is_none(),
                            "insert of a present key {key}"
                        );
                    }
                    "update" => {
                        let row = self
                            .rows
                            .get_mut(key)
                            .unwrap_or_else(|| panic!("update of an absent key {key}"));
                        for (k, v) in value {
                            row.insert(k, v);
                        }
                    }
                    "delete" => {
                        assert!(
                            self.rows.remove(key).is_some(),
                            "delete of an absent key {key}"
                        );
                    }
                    other => panic!("unknown operation {other}"),
                }
            } else if m["headers"]["control"] == "up-to-date" {
                self.last_lsn = m["headers"]["global_last_seen_lsn"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
        }
        r.up_to_date()
    }

    /// Catches up (non-live) until up-to-date.
    pub async fn sync(&mut self, base: &str) {
        for _ in 0..10_000 {
            if self.step(base, false).await {
                return;
            }
        }
        panic!("never up to date");
    }

    /// Follows live until `cond` holds on the rows (bounded).
    pub async fn until(&mut self, base: &str, what: &str, cond: impl Fn(&Self) -> bool) {
        self.sync(base).await;
        for _ in 0..200 {
            if cond(self) {
                return;
            }
            self.step(base, true).await;
        }
        panic!("timed out waiting for: {what}; rows = {:?}", self.rows);
    }

    /// Rows as sorted vectors of the given columns' values.
    pub fn table(&self, cols: &[&str]) -> Vec<Vec<Option<String>>> {
        let mut v: Vec<Vec<Option<String>>> = self
            .rows
            .values()
            .map(|r| {
                cols.iter()
                    .map(|c| r.get(*c).and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .collect();
        v.sort();
        v
    }
}

pub fn sorted(mut v: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    v.sort();
    v
}

pub type Shared<T> = Arc<T>;

/// Whether the server closes `s` (EOF or reset) within a generous bound, without us sending more.
pub async fn closed_by_server(s: &mut tokio::net::TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match tokio::io::AsyncReadExt::read(s, &mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.unwrap_or(false)
}
