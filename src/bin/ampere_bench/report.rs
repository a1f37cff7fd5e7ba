//! The report: one JSON document (every figure, the machine, the commit, the command) and a
//! markdown rendering of it with the issue-6 targets next to each figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Results;

/// Facts about the run itself.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub command: String,
    /// How many times every workload ran; figures are medians when above one.
    pub runs: usize,
    pub started_unix: u64,
    pub duration_secs: f64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub machine: serde_json::Value,
}

/// Writes `ampere-bench-<unix time>.json` and `.md` into `dir`.
pub fn write(
    dir: &Path,
    meta: &Meta,
    res: &Results,
    runs: &[Results],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let stem = format!("ampere-bench-{}", meta.started_unix);
    let json = dir.join(format!("{stem}.json"));
    let md = dir.join(format!("{stem}.md"));
    let doc = if runs.len() > 1 {
        serde_json::json!({ "meta": meta, "results": res, "runs": runs })
    } else {
        serde_json::json!({ "meta": meta, "results": res })
    };
    std::fs::write(&json, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::write(&md, markdown(meta, res))?;
    Ok((json, md))
}

/// The median run: every number is the median of that number across the runs (scenarios are
/// matched by position, which is the same in every run of one invocation); footprints are the
/// first run's (later runs reuse heap freed by earlier ones, so their RSS growth understates the
/// cost); errors are the union.
pub fn median(runs: &[Results]) -> anyhow::Result<Results> {
    let Some(first) = runs.first() else {
        return Ok(Results::default());
    };
    if runs.len() == 1 {
        return Ok(first.clone());
    }
    let values = runs
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let mut out: Results = serde_json::from_value(median_value(&values))?;
    out.footprint = first.footprint.clone();
    out.errors = runs.iter().flat_map(|r| r.errors.clone()).collect();
    Ok(out)
}

fn median_value(vs: &[serde_json::Value]) -> serde_json::Value {
    use serde_json::Value;
    match &vs[0] {
        Value::Number(n) if vs.iter().all(Value::is_number) => {
            let mut xs: Vec<f64> = vs.iter().filter_map(Value::as_f64).collect();
            xs.sort_by(f64::total_cmp);
            let mid = xs[xs.len() / 2];
            let m = if xs.len().is_multiple_of(2) {
                (xs[xs.len() / 2 - 1] + mid) / 2.0
            } else {
                mid
            };
            if n.is_f64() {
                serde_json::json!(m)
            } else {
                serde_json::json!(m.round() as u64)
            }
        }
        Value::Object(o) => Value::Object(
            o.keys()
                .map(|k| {
                    let parts: Vec<Value> = vs
                        .iter()
                        .map(|v| v.get(k).cloned().unwrap_or(Value::Null))
                        .collect();
                    (k.clone(), median_value(&parts))
                })
                .collect(),
        ),
        Value::Array(a)
            if vs
                .iter()
                .all(|v| v.as_array().is_some_and(|b| b.len() == a.len())) =>
        {
            Value::Array(
                (0..a.len())
                    .map(|i| {
                        let parts: Vec<Value> = vs.iter().map(|v| v[i].clone()).collect();
                        median_value(&parts)
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// `12345.6` → `12,346`.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let n = x.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn count(n: usize) -> String {
    thousands(n as f64)
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

pub fn markdown(meta: &Meta, res: &Results) -> String {
    let m = &meta.machine;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Commit `{}`{}, {} build, {} × {} cores, {} RAM, kernel {}, Postgres {} (fsync {}). \
         Load average {} at start, {} at end; {:.0} s in all.\n",
        m["commit"].as_str().unwrap_or("?"),
        if m["worktree_dirty"].as_bool().unwrap_or(false) {
            " (uncommitted changes)"
        } else {
            ""
        },
        m["profile"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["nproc"],
        m["mem_total"].as_str().unwrap_or("?"),
        m["kernel"].as_str().unwrap_or("?"),
        m["postgres"].as_str().unwrap_or("?"),
        if m["postgres_fsync"].as_bool().unwrap_or(false) {
            "on"
        } else {
            "off"
        },
        meta.loadavg_start,
        meta.loadavg_end,
        meta.duration_secs,
    );
    let _ = writeln!(o, "`{}`\n", meta.command);
    if meta.runs > 1 {
        let _ = writeln!(
            o,
            "Each figure is the median of {} runs (footprint: the first run's); the JSON report \
             keeps every run.\n",
            meta.runs
        );
    }
    let _ = writeln!(
        o,
        "| Workload | Shapes | Ampere | Baseline (same run) | Ratio | Target |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for i in &res.ingest {
        let target = match i.workload.as_str() {
            "ingest" => "≥ 0.8× (at 100k shapes)",
            "irrelevant" => "≥ 0.95×",
            "ilike" => "≥ 20,000/s at 1,000 shapes",
            _ => "",
        };
        let name = match i.workload.as_str() {
            "ingest" => "Ingest (each txn matches one shape)",
            "irrelevant" => "Irrelevant changes",
            "ilike" => "Non-indexable (`ILIKE '%…%'`)",
            other => other,
        };
        let _ = writeln!(
            o,
            "| {name}, {} changes | {} | {} changes/s (slot confirmed: {}) | {} changes/s (`pg_recvlogical`) | {:.2}× (slot: {:.2}×) | {target} |",
            count(i.changes),
            count(i.shapes),
            thousands(i.ampere_visible_changes_per_sec),
            thousands(i.ampere_changes_per_sec),
            thousands(i.baseline_changes_per_sec),
            i.ampere_visible_changes_per_sec / i.baseline_changes_per_sec,
            i.ratio,
        );
    }
    for l in &res.latency {
        let _ = writeln!(
            o,
            "| Latency commit → live response, p50 / p99 ({} samples) | {} | {:.2} / {:.2} ms (max {:.1}) | commit itself {:.2} ms (p50) | – | ≤ 1 / ≤ 5 ms, flat in shapes |",
            l.samples,
            count(l.shapes),
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.commit_p50_ms
        );
    }
    if let Some(s) = &res.initial_sync {
        let _ = writeln!(
            o,
            "| Initial sync, {} rows ({} in {} requests) | 1 | {:.2} s | {:.2} s (`COPY … row_to_json`, {}) | {:.2}× | ≤ 1.5× |",
            count(s.rows),
            bytes(s.fetch_bytes as f64),
            s.fetch_requests,
            s.fetch_secs,
            s.copy_secs,
            bytes(s.copy_bytes as f64),
            s.ratio
        );
        let _ = writeln!(
            o,
            "| Same fetch again, from the stored log | 1 | {:.2} s | {:.2} s | {:.2}× | – |",
            s.refetch_secs, s.copy_secs, s.refetch_ratio
        );
    }
    if let Some(f) = &res.fanout {
        let (baseline, ratio) = match (&f.baseline, f.p99_ratio) {
            (Some(b), Some(r)) => (
                format!(
                    "{:.1} / {:.1} ms ({} delivered, {:.1} µs CPU each); {} RSS, {} heap per \
                     parked request (raw tokio server writing Ampere's {}-byte response)",
                    b.p50_ms,
                    b.p99_ms,
                    count(b.delivered),
                    b.cpu_us_per_delivery,
                    bytes(b.bytes_per_parked_request),
                    bytes(b.heap_bytes_per_parked_request),
                    count(f.response_bytes)
                ),
                format!("p99: {r:.2}×"),
            ),
            _ => ("–".to_owned(), "–".to_owned()),
        };
        let _ = writeln!(
            o,
            "| Fan-out: one write to {} parked long-polls, delivery p50 / p99 (CPU per delivery: server and clients) | 1 | {:.1} / {:.1} ms ({} delivered, {:.1} µs CPU each); {} RSS, {} heap per parked request | {baseline} | {ratio} | p99 ≤ 100 ms, ≤ 4 KiB (at 10k) |",
            count(f.clients),
            f.p50_ms,
            f.p99_ms,
            count(f.delivered),
            f.cpu_us_per_delivery,
            bytes(f.bytes_per_parked_request),
            bytes(f.heap_bytes_per_parked_request)
        );
    }
    for f in &res.footprint {
        let _ = writeln!(
            o,
            "| Memory per idle shape (RSS growth / shapes; created at {}/s over HTTP; heap in use {}) | {} | {} | – | – | ≤ 2 KiB (at 100k) |",
            thousands(f.shapes_created_per_sec),
            bytes(f.heap_bytes_per_shape),
            count(f.shapes),
            bytes(f.bytes_per_shape)
        );
    }
    for i in res.ingest.iter().filter(|i| i.workload == "ingest") {
        let _ = writeln!(
            o,
            "| Disk per row change (`du` growth / changes) | {} | {} | – | – | – |",
            count(i.shapes),
            bytes(i.disk_bytes_per_change)
        );
    }
    if !res.ingest.is_empty() {
        let _ = writeln!(
            o,
            "\nIngest timings in seconds. `backlog`: Ampere is stopped during the inserts, the clock \
             starts when it starts again (restoring its shapes is included); `live`: Ampere consumes \
             during the inserts, the clock starts at the first insert. The baseline always drains \
             the same WAL backlog after the inserts, from process start to exit. \"Marker row \
             seen\" is when a row committed after the workload reached a live client: every \
             workload change was durable then. The slot's `confirmed_flush_lsn` moves with \
             Ampere's status updates (every 1 s), so \"slot confirmed\" is quantised to ~1 s.\n"
        );
        let _ = writeln!(
            o,
            "| Workload | Mode | Shapes | Changes | Inserts | Ampere restart | WAL re-decoded | Ampere slot confirmed | Marker row seen live | `pg_recvlogical` | Load |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
        for i in &res.ingest {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} |",
                i.workload,
                i.mode,
                count(i.shapes),
                count(i.changes),
                i.insert_secs,
                i.restart_secs,
                bytes(i.redecoded_wal_bytes as f64),
                i.ampere_ack_secs,
                i.ampere_visible_secs,
                i.baseline_secs,
                i.loadavg
            );
        }
    }
    if !res.errors.is_empty() {
        let _ = writeln!(o, "\nFailed scenarios:\n");
        for e in &res.errors {
            let _ = writeln!(o, "- {e}");
        }
    }
    o
}
