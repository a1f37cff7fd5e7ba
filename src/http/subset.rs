//! Subset snapshots (http-protocol.md §12): `subset__*` query parameters on GET, or a JSON body
//! on POST, answered with a one-off filtered query over the shape instead of the log.
//!
//! The subset `where` goes through the same compiler as shape where clauses and `order_by` is
//! parsed into column references and regenerated, so no client text reaches Postgres.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use serde_json::Value;

use super::params::{RawQuery, ShapeParams, parse_identifier};
use super::response::{self, JSON, set, with_body};
use crate::engine::Engine;
use crate::offset::RequestOffset;
use crate::pg::snapshot;
use crate::shape::definition::ShapeDef;
use crate::shape::json;
use crate::shape::registry::Shape;
use crate::shape::table::quote_ident;
use crate::shape::where_clause::WhereClause;
use crate::storage::log::{self, ReadPlan};

/// Raw subset parameters, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subset {
    pub where_text: Option<String>,
    pub params: BTreeMap<String, String>,
    pub params_error: Option<&'static str>,
    pub order_by: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// Collects `subset__*` query parameters; `None` when there are none.
pub fn from_query(raw: &RawQuery) -> Option<Subset> {
    let mut sub = Subset::default();
    let mut any = false;
    for (k, v) in &raw.fields {
        let Some(name) = k.strip_prefix("subset__") else {
            continue;
        };
        any = true;
        match name {
            "where" => sub.where_text = Some(v.clone()).filter(|s| !s.trim().is_empty()),
            "order_by" => sub.order_by = Some(v.clone()).filter(|s| !s.trim().is_empty()),
            "limit" => sub.limit = Some(v.clone()),
            "offset" => sub.offset = Some(v.clone()),
            "params" => match serde_json::from_str::<Value>(v) {
                Ok(Value::Object(m)) => sub.params = stringify(&m),
                Ok(_) => sub.params_error = Some("params must be a JSON object"),
                Err(_) => sub.params_error = Some("params must be valid JSON"),
            },
            other => {
                if let Some(n) = other
                    .strip_prefix("params[")
                    .and_then(|r| r.strip_suffix(']'))
                {
                    sub.params.insert(n.to_owned(), v.clone());
                }
            }
        }
    }
    any.then_some(sub)
}

fn stringify(m: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Applies a POST body: subset keys become subset parameters (merged over the query's), other
/// keys override query parameters. Errors are Electric's `{"error": …}` bodies.
pub fn apply_body(
    body: &[u8],
    raw: &mut RawQuery,
    sub: &mut Option<Subset>,
) -> Result<(), Box<Response<Body>>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let body =
            serde_json::json!({"error": "Invalid JSON in request body", "details": e.to_string()});
        with_body(StatusCode::BAD_REQUEST, Some(JSON), body.to_string())
    })?;
    let Value::Object(obj) = v else {
        return Err(Box::new(with_body(
            StatusCode::BAD_REQUEST,
            Some(JSON),
            r#"{"error":"Request body must be a JSON object"}"#,
        )));
    };
    let (subset_obj, rest): (
        serde_json::Map<String, Value>,
        serde_json::Map<String, Value>,
    ) = match obj.get("subset") {
        Some(Value::Object(s)) => {
            let mut rest = obj.clone();
            rest.remove("subset");
            (s.clone(), rest)
        }
        _ => {
            let keys = [
                "where",
                "order_by",
                "limit",
                "offset",
                "params",
                "where_expr",
                "order_by_expr",
            ];
            let mut s = serde_json::Map::new();
            let mut rest = serde_json::Map::new();
            for (k, v) in obj {
                if keys.contains(&k.as_str()) {
                    s.insert(k, v);
                } else {
                    rest.insert(k, v);
                }
            }
            (s, rest)
        }
    };
    for (k, v) in &rest {
        if let Some(s) = value_string(v) {
            raw.fields.insert(k.clone(), s);
        }
    }
    if subset_obj.is_empty() {
        return Ok(());
    }
    let s = sub.get_or_insert_with(Subset::default);
    for (k, v) in &subset_obj {
        match k.as_str() {
            "where" => s.where_text = value_string(v).filter(|w| !w.trim().is_empty()),
            "order_by" => s.order_by = value_string(v).filter(|w| !w.trim().is_empty()),
            "limit" => s.limit = value_string(v),
            "offset" => s.offset = value_string(v),
            "params" => match v {
                Value::Object(m) => s.params = stringify(m),
                Value::Null => {}
                _ => s.params_error = Some("params must be a JSON object"),
            },
            _ => {}
        }
    }
    Ok(())
}

fn subset_error(field: &str, msg: &str) -> Response<Body> {
    let body =
        serde_json::json!({"message": "Invalid request", "errors": {"subset": {field: [msg]}}});
    let mut r = with_body(StatusCode::BAD_REQUEST, Some(JSON), body.to_string());
    response::no_store(r.headers_mut());
    r
}

/// Parses `order_by`: comma-separated column references with optional direction and NULLS
/// placement, regenerated as quoted SQL.
pub fn parse_order_by(text: &str, def: &ShapeDef) -> Result<String, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let mut tokens = item.split_whitespace();
        let col = tokens.next().ok_or("order_by has an empty item")?;
        let name = parse_identifier(col)?;
        if def.table.column_index(&name).is_none() {
            return Err(format!("unknown column {name} in order_by"));
        }
        let mut sql = quote_ident(&name);
        let rest: Vec<String> = tokens.map(str::to_ascii_uppercase).collect();
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let (dir, nulls) = match rest.as_slice() {
            [] => ("", ""),
            ["ASC"] => (" ASC", ""),
            ["DESC"] => (" DESC", ""),
            ["NULLS", "FIRST"] => ("", " NULLS FIRST"),
            ["NULLS", "LAST"] => ("", " NULLS LAST"),
            ["ASC" | "DESC", "NULLS", "FIRST" | "LAST"] => (
                if rest[0] == "ASC" { " ASC" } else { " DESC" },
                if rest[2] == "FIRST" {
                    " NULLS FIRST"
                } else {
                    " NULLS LAST"
                },
            ),
            _ => return Err(format!("invalid order_by item: {}", item.trim())),
        };
        if matches!(
            def.table.columns[def.table.column_index(&name).unwrap_or(0)]
                .type_name
                .as_str(),
            "text" | "varchar" | "bpchar" | "name"
        ) {
            // Deterministic byte order, as the where clause compares text.
            sql.push_str(" COLLATE \"C\"");
        }
        sql.push_str(dir);
        sql.push_str(nulls);
        out.push(sql);
    }
    Ok(out.join(", "))
}

fn parse_count(v: &str) -> Option<i64> {
    v.trim().parse::<i64>().ok()
}

/// Runs a subset request against a resolved shape.
pub async fn serve(engine: &Engine, p: &ShapeParams, shape: &Shape, sub: Subset) -> Response<Body> {
    let def = &shape.def;
    if let Some(e) = sub.params_error {
        return subset_error("params", e);
    }
    let limit = match sub.limit.as_deref().map(parse_count) {
        None => None,
        Some(Some(n)) if n > 0 => u64::try_from(n).ok(),
        Some(_) => return subset_error("limit", "must be greater than 0"),
    };
    let offset = match sub.offset.as_deref().map(parse_count) {
        None => None,
        Some(Some(n)) if n >= 0 => u64::try_from(n).ok(),
        Some(_) => return subset_error("offset", "must be greater than or equal to 0"),
    };
    if (limit.is_some() || offset.is_some()) && sub.order_by.is_none() {
        return subset_error(
            "order_by",
            "order_by is required when limit or offset is present",
        );
    }
    let order_by = match sub.order_by.as_deref().map(|o| parse_order_by(o, def)) {
        None => None,
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => return subset_error("order_by", &e),
    };
    let params = match super::params::ordered_params(Some(&sub.params)) {
        Ok(p) => p,
        Err(e) => return subset_error("params", e),
    };
    let extra = match sub.where_text.as_deref() {
        None => None,
        Some(w) => match WhereClause::compile(w, &params, &def.table.where_schema()) {
            Ok(c) => Some(c),
            Err(e) => return subset_error("where", &e.to_string()),
        },
    };
    // The same collation rule as shape where clauses: jsonb ordering only on a bytewise database.
    if let Some(w) = &extra {
        match engine.check_where_collation(w).await {
            Ok(()) => {}
            Err(crate::engine::EngineError::Definition(e)) => {
                return subset_error("where", &e.to_string());
            }
            Err(_) => {
                return response::unavailable("Database unavailable; retry", 5);
            }
        }
    }
    let mark: u32 = rand::random_range(0..(1u32 << 31));
    let _slot = engine.snapshot_slots.acquire().await;
    let result = snapshot::run_subset(
        &engine.query,
        def,
        extra.as_ref().map(WhereClause::sql),
        order_by.as_deref(),
        limit,
        offset,
        mark,
    )
    .await;
    let result = match result {
        Ok(r) => r,
        Err(snapshot::SnapshotError::Db(e)) if e.as_db_error().is_some() => {
            let msg = e
                .as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default();
            let body = serde_json::json!({"message": "Invalid request", "errors": {"subset": {"where": msg}}});
            let mut r = with_body(StatusCode::BAD_REQUEST, Some(JSON), body.to_string());
            response::no_store(r.headers_mut());
            return r;
        }
        Err(e) => {
            tracing::error!(error = %e, "subset query failed");
            return response::message(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}"));
        }
    };
    let mut out = Vec::with_capacity(256 + result.rows.iter().map(Vec::len).sum::<usize>());
    out.extend_from_slice(br#"{"metadata":{"xmin":""#);
    json::write_u64(&mut out, result.snapshot.xmin);
    out.extend_from_slice(br#"","xmax":""#);
    json::write_u64(&mut out, result.snapshot.xmax);
    out.extend_from_slice(br#"","xip_list":["#);
    for (i, x) in result.snapshot.xip.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        json::write_u64(&mut out, *x);
        out.push(b'"');
    }
    out.extend_from_slice(br#"],"snapshot_mark":"#);
    json::write_u64(&mut out, u64::from(mark));
    out.extend_from_slice(br#","database_lsn":""#);
    json::write_u64(&mut out, result.database_lsn);
    out.extend_from_slice(br#""},"data":["#);
    for (i, r) in result.rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r);
    }
    out.extend_from_slice(b"]}");
    let view = shape.view.get();
    let offset = match log::plan_read(&view, p.offset) {
        ReadPlan::Range { response, .. } | ReadPlan::AtEnd { response } => response,
        _ => view.latest,
    };
    let offset = if p.offset == RequestOffset::Now {
        view.latest
    } else {
        offset
    };
    let mut r = with_body(StatusCode::OK, Some(JSON), out);
    let h = r.headers_mut();
    set(h, "cache-control", "no-cache");
    set(h, "electric-snapshot", "true");
    set(h, "electric-handle", &shape.handle);
    set(h, "electric-offset", &offset.to_string());
    set(h, "electric-schema", &def.schema_header);
    r
}
