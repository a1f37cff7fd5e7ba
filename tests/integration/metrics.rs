//! Prometheus metrics (`ELECTRIC_PROMETHEUS_PORT`): the real server in-process with a metrics
//! listener does real work (rows inserted in Postgres, shapes created, a 400, a parked
//! long-poll, an SSE stream, a delete) and every scrape is parsed by a strict exposition parser
//! before its numbers are checked. The real binary is checked for the port wiring.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;

use crate::support::*;

/// Ampere in-process with a metrics listener.
struct MetricsServer {
    base: String,
    metrics: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    async fn start(config: ampere::config::Config) -> MetricsServer {
        ampere::telemetry::init("info", false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metrics_base = format!("http://{}", metrics.local_addr().unwrap());
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            ampere::app::run_with_metrics(listener, Some(metrics), config, rx)
                .await
                .expect("ampere runs");
        });
        wait_active(&base).await;
        MetricsServer {
            base,
            metrics: metrics_base,
            shutdown: tx,
            task,
        }
    }

    async fn scrape(&self) -> Scrape {
        scrape(&self.metrics).await
    }

    /// Scrapes until `cond` holds (bounded), returning that scrape.
    async fn scrape_until(&self, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
        let mut last = None;
        for _ in 0..400 {
            let s = self.scrape().await;
            if cond(&s) {
                return s;
            }
            last = Some(s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for: {what}\n{}", last.unwrap().text);
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("graceful stop")
            .unwrap();
    }
}

/// A parsed scrape: series (`name{label="v",…}` with labels sorted) to values.
#[derive(Debug)]
struct Scrape {
    text: String,
    series: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of a series; labels in any order.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&series_key(name, labels)).copied()
    }

    /// The value of a series that must be present.
    fn v(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing from the scrape:\n{}", self.text))
    }
}

fn series_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<(&str, &str)> = labels.to_vec();
    labels.sort();
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

async fn scrape(base: &str) -> Scrape {
    let r = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    parse_exposition(&text).unwrap_or_else(|e| panic!("bad exposition: {e}\n{text}"))
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;

/// `{k="v",…}` → pairs (escapes `\\`, `\"`, `\n` undone); returns the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("unquoted label value")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.to_owned(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A strict reading of the text format: HELP then TYPE once per family, before its samples;
/// every sample belongs to the family declared last (histograms: `_bucket`, `_sum`, `_count`);
/// no series twice; counters end in `_total`; histogram buckets ascend, are cumulative, end in
/// `+Inf`, and that bucket equals `_count`.
fn parse_exposition(text: &str) -> Result<Scrape, String> {
    let mut series = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: Vec<String> = Vec::new();
    let mut current: Option<(String, String)> = None;
    // Histogram bookkeeping for the current family: (le, cumulative) in order, sum, count.
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut hist_sum: Option<f64> = None;
    let mut hist_count: Option<f64> = None;
    let check_histogram = |name: &str,
                           buckets: &[(f64, f64)],
                           sum: Option<f64>,
                           count: Option<f64>|
     -> Result<(), String> {
        let last = buckets.last().ok_or(format!("{name}: no buckets"))?;
        if last.0 != f64::INFINITY {
            return Err(format!("{name}: last bucket is not +Inf"));
        }
        for w in buckets.windows(2) {
            if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                return Err(format!("{name}: buckets not ascending and cumulative"));
            }
        }
        if count != Some(last.1) {
            return Err(format!(
                "{name}: +Inf bucket {} != _count {count:?}",
                last.1
            ));
        }
        if sum.is_none() {
            return Err(format!("{name}: no _sum"));
        }
        Ok(())
    };
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for line in text.lines() {
        if line.is_empty() {
            return Err("empty line".into());
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name) || helped.iter().any(|h| h == name) {
                return Err(format!("bad or repeated HELP for {name:?}"));
            }
            helped.push(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if parts.next().is_some() || !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(format!("bad TYPE line {line:?}"));
            }
            if helped.last().map(String::as_str) != Some(name) || types.contains_key(name) {
                return Err(format!(
                    "TYPE of {name} not right after its HELP, or repeated"
                ));
            }
            if let Some((prev, "histogram")) = current.as_ref().map(|(n, k)| (n, k.as_str())) {
                check_histogram(prev, &buckets, hist_sum, hist_count)?;
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(format!("counter {name} does not end in _total"));
            }
            types.insert(name.to_owned(), kind.to_owned());
            current = Some((name.to_owned(), kind.to_owned()));
            buckets.clear();
            hist_sum = None;
            hist_count = None;
            continue;
        }
        if line.starts_with('#') {
            return Err(format!("unexpected comment {line:?}"));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("bad sample {line:?}"))?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value_text = rest
            .strip_prefix(' ')
            .ok_or(format!("bad sample {line:?}"))?;
        if value_text.contains(' ') {
            return Err(format!("timestamps are not expected: {line:?}"));
        }
        let value = parse_value(value_text)?;
        let (family, kind) = current
            .as_ref()
            .ok_or(format!("sample before any TYPE: {line:?}"))?;
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(family.as_str())),
            _ => name == family,
        };
        if !belongs {
            return Err(format!("{name} sampled outside its family ({family})"));
        }
        if kind == "histogram" {
            if name.ends_with("_bucket") {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or(format!("bucket without le: {line:?}"))?;
                buckets.push((parse_value(&le.1)?, value));
            } else if name.ends_with("_sum") {
                hist_sum = Some(value);
            } else {
                hist_count = Some(value);
            }
        }
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if series.insert(series_key(name, &pairs), value).is_some() {
            return Err(format!("series repeated: {line:?}"));
        }
    }
    if let Some((prev, kind)) = &current
        && kind == "histogram"
    {
        check_histogram(prev, &buckets, hist_sum, hist_count)?;
    }
    if helped.len() != types.len() {
        return Err("a HELP without TYPE".into());
    }
    Ok(Scrape {
        text: text.to_owned(),
        series,
        types,
    })
}

/// Total size of the shape logs on disk.
fn log_bytes_on_disk(storage: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(storage.join("shapes")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::metadata(e.path().join("log")).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn the_test_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{route=\"x\\\"y\"} 3\n\
                # HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let s = parse_exposition(good).unwrap();
    assert_eq!(s.get("a_total", &[("route", "x\"y")]), Some(3.0));
    assert_eq!(s.types["h"], "histogram");
    for bad in [
        "a 1\n",                                                                       // no TYPE
        "# HELP a A.\n# TYPE a gauge\nb 1\n",   // outside family
        "# HELP a A.\n# TYPE a counter\na 1\n", // counter without _total
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n", // repeated series
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", // count mismatch
        "# HELP a A.\n# TYPE a gauge\na{x=\"1} 1\n", // unterminated label
        "# HELP a A.\n# TYPE a gauge\na 1",          // no final newline
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

const ROUTE_SHAPE: (&str, &str) = ("route", "shape");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_work() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); \
         INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 10) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = MetricsServer::start(test_config(&pg, dir.path())).await;
    let base = &server.base;

    // The listener itself: exact content type on /metrics, 404 text elsewhere.
    for path in ["/", "/metrics/", "/v1/shape", "/nope"] {
        let r = reqwest::get(format!("{}{path}", server.metrics))
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "{path}"
        );
        assert_eq!(r.text().await.unwrap(), "Not found");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "only GET and HEAD scrape");

    let s0 = server.scrape().await;
    assert_eq!(s0.v("ampere_health_state", &[("state", "active")]), 1.0);
    assert_eq!(s0.v("ampere_health_state", &[("state", "waiting")]), 0.0);
    assert_eq!(s0.v("ampere_shapes_active", &[]), 0.0);
    assert_eq!(s0.v("ampere_http_live_requests_parked", &[]), 0.0);
    assert!(s0.v("process_resident_memory_bytes", &[]) > 0.0);
    assert!(s0.v("process_open_fds", &[]) > 0.0);
    assert!(s0.v("process_start_time_seconds", &[]) > 1.6e9);
    assert_eq!(s0.types["ampere_flush_duration_seconds"], "histogram");
    assert_eq!(s0.types["ampere_replication_changes_total"], "counter");
    // The slot is sampled once streaming starts.
    let s0 = server
        .scrape_until("the slot lag sample", |s| {
            s.get("ampere_replication_slot_retained_wal_bytes", &[])
                .is_some()
        })
        .await;
    assert!(s0.v("ampere_replication_slot_confirmed_lag_bytes", &[]) >= 0.0);

    // Two shapes: every row, and the rows with id > 5.
    let mut all = Follower::new("table=items");
    all.sync(base).await;
    assert_eq!(all.rows.len(), 10);
    let mut some = Follower::new("table=items&where=id%20%3E%205");
    some.sync(base).await;
    assert_eq!(some.rows.len(), 5);
    let s1 = server
        .scrape_until("both snapshots done", |s| {
            s.get("ampere_snapshots_in_progress", &[]) == Some(0.0)
                && s.get("ampere_snapshot_duration_seconds_count", &[]) == Some(2.0)
        })
        .await;
    assert_eq!(s1.v("ampere_shapes_active", &[]), 2.0);
    assert_eq!(s1.v("ampere_shapes_created_total", &[]), 2.0);
    assert_eq!(s1.v("ampere_snapshot_rows_total", &[]), 15.0);
    assert!(s1.v("ampere_snapshot_bytes_total", &[]) > 0.0);

    // A 400 is counted under its route and status.
    let bad_before = s1
        .get(
            "ampere_http_requests_total",
            &[ROUTE_SHAPE, ("status", "400")],
        )
        .unwrap_or(0.0);
    let r = get(base, "table=items&offset=bogus").await;
    assert_eq!(r.status, 400);
    let s2 = server.scrape().await;
    assert_eq!(
        s2.v(
            "ampere_http_requests_total",
            &[ROUTE_SHAPE, ("status", "400")]
        ),
        bad_before + 1.0
    );
    assert!(
        s2.v(
            "ampere_http_requests_total",
            &[("route", "health"), ("status", "200")]
        ) >= 1.0,
        "wait_active's health checks"
    );
    assert!(
        s2.v(
            "ampere_http_response_body_bytes_total",
            &[("route", "shape")]
        ) > 0.0
    );

    // A live request parks: the gauge says 1 while it waits.
    let live_url = format!(
        "{base}/v1/shape?table=items&handle={}&offset={}&live=true",
        all.handle.clone().unwrap(),
        all.offset
    );
    let live = tokio::spawn(async move { reqwest::get(live_url).await.unwrap() });
    let before = server
        .scrape_until("the long-poll to park", |s| {
            s.get("ampere_http_live_requests_parked", &[]) == Some(1.0)
        })
        .await;

    // One transaction of 5 rows, all matching both shapes: 5 changes, 10 deliveries.
    pg.exec("INSERT INTO items SELECT g, 'new ' || g FROM generate_series(11, 15) g")
        .await;
    let r = live.await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("\"new 11\""));
    let c = |s: &Scrape, n: &str| s.v(n, &[]);
    let after = server
        .scrape_until("the transaction to be counted", |s| {
            c(s, "ampere_replication_transactions_total")
                == c(&before, "ampere_replication_transactions_total") + 1.0
        })
        .await;
    assert_eq!(c(&after, "ampere_http_live_requests_parked"), 0.0);
    assert_eq!(
        c(&after, "ampere_replication_changes_total"),
        c(&before, "ampere_replication_changes_total") + 5.0
    );
    assert_eq!(
        c(&after, "ampere_replication_routed_changes_total"),
        c(&before, "ampere_replication_routed_changes_total") + 10.0
    );
    assert_eq!(
        c(&after, "ampere_flush_changes_sum"),
        c(&before, "ampere_flush_changes_sum") + 10.0
    );
    assert!(
        c(&after, "ampere_flush_duration_seconds_count")
            > c(&before, "ampere_flush_duration_seconds_count")
    );
    assert!(
        c(&after, "ampere_replication_received_bytes_total")
            > c(&before, "ampere_replication_received_bytes_total")
    );
    assert!(
        c(&after, "ampere_flush_bytes_sum") > c(&before, "ampere_flush_bytes_sum"),
        "the flush published log bytes"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let commit = c(
        &after,
        "ampere_replication_last_durable_commit_timestamp_seconds",
    );
    assert!(
        (commit - now).abs() < 3600.0,
        "commit timestamp {commit} vs now {now}"
    );
    assert!(c(&after, "ampere_replication_lag_seconds") >= 0.0);

    // The storage gauge matches the logs on disk, before and after a delete.
    let storage = dir.path().to_path_buf();
    server
        .scrape_until("storage bytes to match the logs on disk", |s| {
            s.get("ampere_storage_log_bytes", &[]) == Some(log_bytes_on_disk(&storage) as f64)
        })
        .await;
    let r = reqwest::Client::new()
        .delete(format!(
            "{base}/v1/shape?table=items&where=id%20%3E%205&handle={}",
            some.handle.clone().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "delete: {}", r.status());
    let s3 = server
        .scrape_until("the deleted shape to leave the gauges", |s| {
            s.get("ampere_shapes_active", &[]) == Some(1.0)
                && s.get("ampere_storage_log_bytes", &[])
                    == Some(log_bytes_on_disk(&storage) as f64)
        })
        .await;
    assert!(c(&s3, "ampere_storage_log_bytes") > 0.0);

    // An open SSE stream is counted until it ends.
    all.sync(base).await;
    let sse_url = format!(
        "{base}/v1/shape?table=items&handle={}&offset={}&live=true&live_sse=true",
        all.handle.clone().unwrap(),
        all.offset
    );
    let sse = reqwest::get(sse_url).await.unwrap();
    assert_eq!(sse.status(), 200);
    server
        .scrape_until("the SSE stream to be counted", |s| {
            s.get("ampere_http_sse_streams_open", &[]) == Some(1.0)
        })
        .await;
    drop(sse);
    // The stream notices its client left when a write fails: give it something to write.
    let mut ended = false;
    for id in 16..116 {
        pg.exec(&format!("INSERT INTO items VALUES ({id}, 'wake')"))
            .await;
        if server
            .scrape()
            .await
            .get("ampere_http_sse_streams_open", &[])
            == Some(0.0)
        {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the SSE stream outlived its client");

    server.stop().await;
}

/// The binary binds `ELECTRIC_PROMETHEUS_PORT` and serves scrapes there; with
/// `AMPERE_LOG_JSON=true` every log line is a JSON object, key events carry their fixed fields,
/// and no row value reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_metrics_and_structured_logs() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE secrets (id int PRIMARY KEY, v text); \
         INSERT INTO secrets VALUES (1, 'row-value-never-logged')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let bin = Binary::spawn_with(
        &pg.url(),
        &dir.path().join("s"),
        free_port(),
        &[
            ("ELECTRIC_PROMETHEUS_PORT", &metrics_port.to_string()),
            ("AMPERE_LOG_JSON", "true"),
        ],
    );
    wait_active(&bin.base).await;
    let metrics = format!("http://127.0.0.1:{metrics_port}");
    let s = scrape(&metrics).await;
    assert_eq!(s.v("ampere_health_state", &[("state", "active")]), 1.0);
    assert!(s.v("process_resident_memory_bytes", &[]) > 0.0);
    let r = reqwest::get(format!("{metrics}/other")).await.unwrap();
    assert_eq!(r.status(), 404);
    // Not served on the API port.
    let r = reqwest::get(format!("{}/metrics", bin.base)).await.unwrap();
    assert_eq!(r.status(), 404);

    let r = get(&bin.base, "table=secrets&offset=-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let handle = r.h("electric-handle").unwrap().to_owned();
    let mut complete = None;
    for _ in 0..200 {
        complete = bin
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "snapshot_complete");
        if complete.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let complete = complete.expect("a snapshot_complete line");
    assert_eq!(complete["handle"], handle.as_str());
    assert_eq!(complete["table"], "\"public\".\"secrets\"");
    assert_eq!(complete["rows"], 1);
    assert_eq!(complete["level"], "INFO");
    assert!(complete["elapsed_ms"].is_u64() && complete["bytes"].is_u64());

    let log = bin.log_text();
    assert!(!log.contains("row-value-never-logged"), "{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
        })
        .collect();
    for e in &events {
        assert!(
            e["timestamp"].is_string() && e["level"].is_string() && e["message"].is_string(),
            "{e}"
        );
    }
    let has = |event: &str| events.iter().any(|e| e["event"] == event);
    assert!(has("service_starting") && has("replication_streaming") && has("shape_created"));
    let streaming = events
        .iter()
        .find(|e| e["event"] == "replication_streaming")
        .unwrap();
    assert!(streaming["lsn"].is_u64() && streaming["slot"].is_string());
}
