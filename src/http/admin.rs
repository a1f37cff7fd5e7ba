//! The admin API (an Ampere extension; Electric has none): `GET /v1/admin/shapes`,
//! `DELETE /v1/admin/shapes/{handle}`, `GET /v1/admin/replication`. The `ampere` operator
//! subcommands are its client, so they work from another host and never touch the storage
//! directory the running service writes.
//!
//! Invariants: every admin route is authenticated with the shape API's secret (the `secret`
//! query parameter or `Authorization: Bearer`), before the path is even looked at, so an
//! unknown admin path answers 401 rather than revealing what exists; the route is matched on the
//! normalised path (see [`super::route_of`]), so no spelling of the path skips the check.
//! Responses are JSON and never cached. Listing walks the registry and reads each shape's
//! published view (plus one `stat` of its log): nothing here adds work to the change path.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::params;
use super::response::{JSON, no_store, set, with_body};
use crate::engine::{Engine, Health};

/// Path prefix of every admin route.
pub const PREFIX: &str = "/v1/admin";

/// Bound on the Postgres queries of the replication status: a status request must answer even
/// while the database does not (it then reports the error next to the service's own positions).
const PG_QUERY_BOUND: Duration = Duration::from_secs(5);

/// `GET /v1/admin/shapes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShapeList {
    /// The service's clock (Unix seconds), so clients compute ages without clock skew.
    pub now: u64,
    /// The service's durable position: the commit LSN of the last transaction made durable in
    /// every shape it touched (Postgres notation), `null` before the first one.
    pub durable_lsn: Option<String>,
    pub shapes: Vec<ShapeInfo>,
}

/// One shape of [`ShapeList`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShapeInfo {
    pub handle: String,
    pub schema: String,
    pub table: String,
    /// The where clause as requested (`null`: every row).
    #[serde(rename = "where")]
    pub where_clause: Option<String>,
    /// Values of `$1`, `$2`, … in the where clause.
    #[serde(default)]
    pub params: Vec<String>,
    /// The requested column list (`null`: every column).
    pub columns: Option<Vec<String>>,
    /// `default` or `full`.
    pub replica: String,
    /// `full` or `changes_only`.
    pub log: String,
    /// `snapshotting`, `ready` or `failed`.
    pub status: String,
    /// Bytes of the log readers may read (everything durable).
    pub log_bytes: u64,
    /// Closed chunks of the log (cacheable response units).
    pub chunks: u64,
    /// Offset of the last durable entry (wire notation, e.g. `0_inf`, `24312616_4`).
    pub latest_offset: String,
    /// Commit LSN of the last change in the log (`null`: none since the snapshot).
    pub last_change_lsn: Option<String>,
    /// WAL bytes between `last_change_lsn` and `durable_lsn`: how much WAL the service made
    /// durable since this shape last changed. Not a backlog: every shape is complete up to
    /// `durable_lsn`; a large value only says its rows have been quiet.
    pub lag_bytes: Option<u64>,
    /// When the log was last written (a change or the snapshot), Unix seconds.
    pub last_change_at: Option<u64>,
    /// When a request last read the shape (or it was created), Unix seconds.
    pub last_read_at: Option<u64>,
}

/// `GET /v1/admin/replication`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicationStatus {
    pub slot: String,
    pub publication: String,
    /// Replication-lock holder state: `starting`, `waiting` (another instance holds the lock),
    /// `active`, or `degraded` (streaming while storage fails).
    pub state: String,
    /// The server's WAL end as last reported on the stream.
    pub received_lsn: Option<String>,
    /// Commit LSN of the last transaction durable in every shape ([`ShapeList::durable_lsn`]).
    pub durable_lsn: Option<String>,
    /// Last position confirmed to Postgres (the slot's `confirmed_flush_lsn` follows it).
    pub acknowledged_lsn: Option<String>,
    /// What Postgres says; `null` when it could not be asked (see `postgres_error`).
    pub postgres: Option<PgReplication>,
    pub postgres_error: Option<String>,
}

/// The Postgres side of [`ReplicationStatus`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PgReplication {
    /// `pg_current_wal_lsn()`.
    pub current_wal_lsn: String,
    /// The slot exists (it is created on the first connect).
    pub slot_exists: bool,
    /// A walsender is streaming from the slot.
    pub slot_active: bool,
    pub slot_active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<String>,
    pub restart_lsn: Option<String>,
    /// `reserved`, `extended`, `unreserved` or `lost` (see `pg_replication_slots`).
    pub wal_status: Option<String>,
    /// `current_wal_lsn − confirmed_flush_lsn`: WAL not yet acknowledged.
    pub lag_bytes: Option<u64>,
    /// `current_wal_lsn − restart_lsn`: WAL Postgres keeps on disk for this slot.
    pub retained_wal_bytes: Option<u64>,
    /// Tables in the publication, `schema.table`.
    pub tables: Vec<String>,
}

/// `DELETE /v1/admin/shapes/{handle}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: String,
}

/// An LSN in Postgres notation (`16/B374D848`).
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses Postgres notation; `None` for anything else.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let ok = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

fn nonzero_lsn(lsn: u64) -> Option<String> {
    (lsn > 0).then(|| format_lsn(lsn))
}

pub fn health_name(h: Health) -> &'static str {
    match h {
        Health::Starting => "starting",
        Health::Waiting => "waiting",
        Health::Active => "active",
        Health::Degraded => "degraded",
    }
}

/// Answers one admin request (`path` is the normalised path, under [`PREFIX`]).
pub async fn handle(
    engine: &Engine,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
) -> Response<Body> {
    let mut r = if !authorised(engine, headers, query) {
        super::response::unauthorized()
    } else {
        let segments: Vec<&str> = path
            .strip_prefix(PREFIX)
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, ["shapes"]) => json(StatusCode::OK, &list(engine)),
            (&Method::DELETE, ["shapes", handle]) => delete(engine, handle).await,
            (&Method::GET | &Method::HEAD, ["replication"]) => {
                json(StatusCode::OK, &replication(engine).await)
            }
            (_, ["shapes"] | ["replication"]) => not_allowed("GET, HEAD"),
            (_, ["shapes", _]) => not_allowed("DELETE"),
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    };
    no_store(r.headers_mut());
    r
}

/// The shape API's secret, from the `secret` (or legacy `api_secret`) parameter or an
/// `Authorization: Bearer` header (which keeps it out of proxy access logs). Open in insecure
/// mode, like the shape API.
fn authorised(engine: &Engine, headers: &HeaderMap, query: &str) -> bool {
    let Some(secret) = engine.config.secret.as_deref() else {
        return true;
    };
    let bearer = headers
        .get_all("authorization")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        })
        .any(|token| bool::from(token.as_bytes().ct_eq(secret.as_bytes())));
    bearer || super::authorised(engine, &params::parse_query(query))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => with_body(status, Some(JSON), body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    with_body(
        status,
        Some(JSON),
        serde_json::json!({ "message": message }).to_string(),
    )
}

fn not_allowed(allow: &str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    set(r.headers_mut(), "allow", allow);
    r
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every registered shape, from its published view (what readers see).
fn list(engine: &Engine) -> ShapeList {
    let durable = engine.global_lsn();
    let mut shapes: Vec<ShapeInfo> = engine
        .registry
        .all()
        .iter()
        .map(|s| {
            let (durable_len, latest, chunks, complete, failed) = {
                let v = s.view.get();
                (
                    v.durable_len,
                    v.latest,
                    v.chunks.len() as u64,
                    v.snapshot_complete,
                    v.failed,
                )
            };
            let req = &s.def.request;
            let last_change_lsn = latest.tx;
            // The log file's mtime is the time of the last change without any bookkeeping on
            // the change path (an observation: the storage seam is for writes).
            let last_change_at = std::fs::metadata(s.log_path())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            let last_read = s.last_read.load(Ordering::Relaxed);
            ShapeInfo {
                handle: s.handle.to_string(),
                schema: s.def.table.schema.clone(),
                table: s.def.table.name.clone(),
                where_clause: req.where_text.clone(),
                params: req.params.clone(),
                columns: req.columns.clone(),
                replica: if req.replica_full { "full" } else { "default" }.into(),
                log: if req.changes_only {
                    "changes_only"
                } else {
                    "full"
                }
                .into(),
                status: if failed {
                    "failed"
                } else if complete {
                    "ready"
                } else {
                    "snapshotting"
                }
                .into(),
                log_bytes: durable_len,
                chunks,
                latest_offset: latest.to_string(),
                last_change_lsn: nonzero_lsn(last_change_lsn),
                lag_bytes: (last_change_lsn > 0).then(|| durable.saturating_sub(last_change_lsn)),
                last_change_at,
                last_read_at: (last_read > 0).then_some(last_read),
            }
        })
        .collect();
    shapes.sort_by(|a, b| a.handle.cmp(&b.handle));
    ShapeList {
        now: unix_now(),
        durable_lsn: nonzero_lsn(durable),
        shapes,
    }
}

/// Removes a shape exactly as `DELETE /v1/shape` does: its readers get 409 must-refetch.
async fn delete(engine: &Engine, handle: &str) -> Response<Body> {
    if engine.delete(handle).await {
        tracing::info!(handle, "shape deleted through the admin API");
        json(
            StatusCode::OK,
            &Deleted {
                deleted: handle.to_owned(),
            },
        )
    } else {
        error(StatusCode::NOT_FOUND, "no shape with this handle")
    }
}

async fn replication(engine: &Engine) -> ReplicationStatus {
    let slot = engine.config.slot_name();
    let publication = engine.config.publication_name();
    let (received, acknowledged) = engine.stream_progress.lock().as_ref().map_or((0, 0), |m| {
        (m.last_wal_end().as_u64(), m.last_applied_lsn().as_u64())
    });
    let pg = tokio::time::timeout(PG_QUERY_BOUND, pg_replication(engine, &slot, &publication))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "Postgres did not answer within {} s",
                PG_QUERY_BOUND.as_secs()
            ))
        });
    let (postgres, postgres_error) = match pg {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e)),
    };
    ReplicationStatus {
        slot,
        publication,
        state: health_name(engine.health()).into(),
        received_lsn: nonzero_lsn(received),
        durable_lsn: nonzero_lsn(engine.global_lsn()),
        acknowledged_lsn: nonzero_lsn(acknowledged),
        postgres,
        postgres_error,
    }
}

async fn pg_replication(
    engine: &Engine,
    slot: &str,
    publication: &str,
) -> Result<PgReplication, String> {
    let describe = |e: crate::engine::EngineError| crate::pg::failure::Chain(&e).to_string();
    // One row even when the slot does not exist yet.
    let rows = engine
        .admin_query(
            "SELECT pg_current_wal_lsn()::text, s.slot_name IS NOT NULL, \
             coalesce(s.active, false), s.active_pid, s.confirmed_flush_lsn::text, \
             s.restart_lsn::text, s.wal_status \
             FROM (SELECT 1) one LEFT JOIN pg_replication_slots s ON s.slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(describe)?;
    let row = rows.first().ok_or("no answer from pg_replication_slots")?;
    let get_text = |i: usize| row.try_get::<_, Option<String>>(i).ok().flatten();
    let current = get_text(0).unwrap_or_default();
    let confirmed = get_text(4);
    let restart = get_text(5);
    let current_lsn = parse_lsn(&current);
    let diff =
        |other: &Option<String>| Some(current_lsn?.saturating_sub(parse_lsn(other.as_deref()?)?));
    let tables = engine
        .admin_query(
            "SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&publication],
        )
        .await
        .map_err(describe)?
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    Ok(PgReplication {
        lag_bytes: diff(&confirmed),
        retained_wal_bytes: diff(&restart),
        current_wal_lsn: current,
        slot_exists: row.try_get(1).unwrap_or(false),
        slot_active: row.try_get(2).unwrap_or(false),
        slot_active_pid: row.try_get::<_, Option<i32>>(3).ok().flatten(),
        confirmed_flush_lsn: confirmed,
        restart_lsn: restart,
        wal_status: get_text(6),
        tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip_in_postgres_notation() {
        for lsn in [0u64, 1, 0x16_B374_D848, u64::MAX, 1 << 32] {
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B_3748));
        for bad in [
            "",
            "/",
            "0/",
            "/1",
            "x/1",
            "1/2/3",
            "123456789/0",
            "+1/0",
            "1",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }

    #[test]
    fn shape_info_uses_where_as_the_json_key() {
        let info = ShapeInfo {
            handle: "1-2".into(),
            schema: "public".into(),
            table: "items".into(),
            where_clause: Some("id > 1".into()),
            params: vec![],
            columns: None,
            replica: "default".into(),
            log: "full".into(),
            status: "ready".into(),
            log_bytes: 10,
            chunks: 0,
            latest_offset: "0_inf".into(),
            last_change_lsn: None,
            lag_bytes: None,
            last_change_at: None,
            last_read_at: Some(5),
        };
        let v = serde_json::to_value(&info).unwrap();
        assert_eq!(v["where"], "id > 1");
        let back: ShapeInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, info);
    }
}
