//! `GET`/`HEAD`/`POST /v1/shape` and `DELETE /v1/shape`: resolve the shape, seek in its log,
//! and answer with a chunk, a long-poll result, or an error in Electric's format.
//!
//! Readers only ever look at published [`LogView`]s, so they never see a change before it is
//! durable; a live request parks on the shape's watch channel until a new view, rotation or the
//! long-poll timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Response, StatusCode};
use tokio::time::Instant;

use super::h1::{Encoded, Frozen};
use super::params::{self, RawQuery, ShapeParams};
use super::response::{self, Headers, JSON, set, set_static, with_body};
use super::server::{Answer, Reply};
use super::sse;
use super::subset;
use crate::engine::{Admission, Engine, EngineError, Permit};
use crate::offset::{LogOffset, RequestOffset};
use crate::shape::definition::DefinitionError;
use crate::shape::json;
use crate::shape::registry::Shape;
use crate::storage::log::{self, LogView, ReadPlan};
use crate::storage::view::ViewWatch;

/// Largest accepted POST body (Electric's framework default).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// How long a request waits for a snapshot to produce the chunk it asks for.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(60);

fn engine_error(e: EngineError, p: &ShapeParams) -> Response<Body> {
    match e {
        EngineError::TableNotFound => table_missing(p),
        EngineError::Definition(DefinitionError::Columns(m)) => {
            response::invalid_one("columns", &m)
        }
        EngineError::Definition(
            DefinitionError::Where(m) | DefinitionError::MissingTable { message: m, .. },
        ) => response::invalid_one("where", &m),
        EngineError::Unavailable(err) => {
            tracing::warn!(error = %err, "database unavailable while validating a shape");
            response::unavailable(
                "Cannot connect to the database to verify the shape. Please try again later.",
                1,
            )
        }
        EngineError::Create(err) => {
            tracing::error!(error = ?err, "shape creation failed");
            response::unavailable("Failed to create shape, please retry", 1)
        }
        EngineError::NotReady => {
            response::unavailable("Timeout waiting for replication client to be ready", 5)
        }
        EngineError::Permission(m) => {
            tracing::warn!(error = %m, "shape refused: missing privilege");
            response::unavailable(&m, 5)
        }
    }
}

fn table_missing(p: &ShapeParams) -> Response<Body> {
    response::invalid_one(
        "table",
        &format!(
            "Table \"{}\".\"{}\" does not exist. If the table name contains capitals or special characters you must quote it.",
            p.request.schema, p.request.table
        ),
    )
}

/// Serves a shape log request: a response now, or a parked long-poll ([`LivePoll`]).
pub async fn serve(engine: &Arc<Engine>, raw: RawQuery, req: Request) -> Reply {
    // Resolved in its own future, so the raw query, the request and the body are all freed
    // before a long-poll parks.
    let (p, shape, permit, sub) = match resolve(engine, raw, req).await {
        Ok(r) => r,
        Err(r) => return Reply::now(r),
    };
    if let Some(sub) = sub {
        return Reply::now(Box::pin(serve_subset(engine, &p, &shape, sub)).await);
    }
    serve_shape(engine, p, shape, permit, None).await
}

/// Parses and validates the request, admits it and finds (or creates) its shape.
async fn resolve(
    engine: &Engine,
    mut raw: RawQuery,
    req: Request,
) -> Result<(ShapeParams, Arc<Shape>, Permit, Option<subset::Subset>), Response<Body>> {
    let mut sub = subset::from_query(&raw);
    let if_none_match: Vec<String> = req
        .headers()
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect();
    if req.method() == axum::http::Method::POST {
        let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return Err(with_body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(JSON),
                    r#"{"error":"Request body too large"}"#,
                ));
            }
        };
        if let Err(r) = subset::apply_body(&body, &mut raw, &mut sub) {
            return Err(*r);
        }
    }
    let mut p = params::validate(&raw).map_err(|errors| response::invalid(&errors))?;
    drop(raw);
    p.if_none_match = if_none_match;
    let kind = match &p.handle {
        Some(h) if engine.registry.get(h).is_some() => Admission::Existing,
        _ => Admission::Initial,
    };
    let Some(permit) = engine.admit(kind) else {
        return Err(over_limit(engine, kind));
    };
    let map_err = |e: EngineError| engine_error(e, &p);
    let shape = match (&p.handle, p.offset) {
        (Some(handle), RequestOffset::At(_)) => match engine.shape_for_handle(handle, &p.request) {
            Some(s) => s,
            // Unknown, rotated, or a different definition: 409 with the current handle.
            None => match Box::pin(engine.get_or_create(&p.request)).await {
                Ok(s) if *s.handle != **handle => {
                    return Err(response::must_refetch(Some(&s.handle)));
                }
                Ok(s) => s,
                Err(e) => return Err(map_err(e)),
            },
        },
        _ => match Box::pin(engine.get_or_create(&p.request)).await {
            Ok(s) => s,
            Err(e) => return Err(map_err(e)),
        },
    };
    shape.touch();
    Ok((p, shape, permit, sub))
}

/// Answers from the shape's log, waiting inline for a snapshot or an out-of-bounds offset; a
/// live request at the end of the log parks as a [`LivePoll`] instead. `live_since`: when this
/// request first parked (a woken [`LivePoll`] passes it on, so its deadline stays put).
pub(crate) async fn serve_shape(
    engine: &Arc<Engine>,
    p: ShapeParams,
    shape: Arc<Shape>,
    permit: Permit,
    live_since: Option<Instant>,
) -> Reply {
    let mut rx = shape.subscribe();
    let mut stopping = engine.stopping.subscribe();
    let start = Instant::now();
    let long_poll = engine.config.long_poll_timeout;
    let mut oob_wait_started: Option<Instant> = None;
    loop {
        let view: LogView = rx.borrow_and_update();
        if view.failed {
            let mut r = response::unavailable("Unexpected error while creating snapshot", 10);
            set(r.headers_mut(), "electric-internal-known-error", "true");
            return Reply::now(r);
        }
        if view.gone {
            return Reply::now(Box::pin(rotated(engine, &p)).await);
        }
        let plan = log::plan_read(&view, p.offset);
        if p.live_sse
            && let (ReadPlan::AtEnd { response }, RequestOffset::At(_)) = (&plan, p.offset)
        {
            return Reply::now(sse::stream(engine, &p, shape.clone(), *response));
        }
        let deadline = match &plan {
            ReadPlan::NotReady => start + SNAPSHOT_WAIT,
            ReadPlan::OutOfBounds => {
                *oob_wait_started.get_or_insert_with(Instant::now) + long_poll / 2
            }
            ReadPlan::AtEnd { .. } if p.live => {
                let since = live_since.unwrap_or_else(Instant::now);
                let parked = LivePoll {
                    since,
                    engine: engine.clone(),
                    _parked: engine.metrics.track_live_parked(),
                    p,
                    shape,
                    rx,
                    _permit: permit,
                };
                return Reply::Later(Box::pin(parked.wait()));
            }
            _ => return Reply::Now(respond(engine, &p, &shape, &view, plan).await),
        };
        tokio::select! {
            () = rx.changed() => {}
            () = crate::engine::stopped(&mut stopping) => {
                return Reply::now(response::unavailable("The service is shutting down", 5));
            }
            () = tokio::time::sleep_until(deadline) => {
                return Reply::now(match plan {
                    ReadPlan::NotReady => response::unavailable("Timeout waiting for shape data to be loaded", 5),
                    _ => response::invalid_one("offset", "out of bounds for this shape"),
                });
            }
        }
    }
}

/// A live request parked at the end of its shape's log: all a long-poll keeps while it waits
/// (its handler has returned; the request, raw query and body are gone). Holds the admission
/// permit and the parked gauge until the response is built.
pub(crate) struct LivePoll {
    engine: Arc<Engine>,
    p: ShapeParams,
    shape: Arc<Shape>,
    /// The shape's view: also what wakes the request when the service stops ([`Engine::stop`]).
    rx: ViewWatch,
    /// When the request first parked; its deadline is this plus the long-poll timeout.
    since: Instant,
    _permit: Permit,
    _parked: crate::telemetry::metrics::Tracked,
}

impl LivePoll {
    /// Waits for the log to move past the request's offset (or the shape to go), the long-poll
    /// timeout, or shutdown; then answers.
    ///
    /// Not an `async fn`: its arguments would be stored twice in the future (once as the
    /// argument, once as the binding), and this future is what a parked request costs.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn wait(mut self) -> impl std::future::Future<Output = Answer> + Send {
        async move {
            if let Some(r) = self.park().await {
                return r;
            }
            if let Some(r) = self.answer_now() {
                return r;
            }
            match self.resume().await {
                Reply::Now(r) => r,
                Reply::Later(wait) => wait.await,
            }
        }
    }

    /// Parks until there is something to answer: `Some` for a timeout or shutdown (answered
    /// here), `None` when the log moved on or the shape changed state.
    async fn park(&mut self) -> Option<Answer> {
        loop {
            // Checked before each wait: `Engine::stop` sets the flag before it bumps the view's
            // version, so a stop after this check ends the wait at once.
            if self.engine.is_stopping() {
                return Some(self.no_change());
            }
            tokio::select! {
                () = self.rx.changed() => {}
                () = tokio::time::sleep_until(self.since + self.engine.config.long_poll_timeout) => {
                    return Some(self.no_change());
                }
            }
            let view = self.rx.borrow_and_update();
            let still_at_end = !view.failed
                && !view.gone
                && matches!(log::plan_read(&view, self.p.offset), ReadPlan::AtEnd { .. });
            if !still_at_end {
                return None;
            }
        }
    }

    /// The answer once the log has moved past the request's offset, built here without
    /// waiting (a small range: every woken long-poll of a fan-out). `None` for everything else
    /// (a failed or gone shape, a large range), which [`Self::resume`] answers.
    fn answer_now(&mut self) -> Option<Answer> {
        let view = self.rx.borrow_and_update();
        if view.failed || view.gone {
            return None;
        }
        let plan = log::plan_read(&view, self.p.offset);
        if !matches!(plan, ReadPlan::Range { .. }) {
            return None;
        }
        respond_now(&self.engine, &self.p, &self.shape, &view, plan).ok()
    }

    /// [`serve_shape`] again, once the wait is over. Boxed: the full handler must not size the
    /// wait (it runs in its own allocation, briefly); not `async`, so that the fields moved out
    /// here take no room in [`LivePoll::wait`]'s state, and named, which breaks the type cycle
    /// between the two futures.
    fn resume(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>> {
        let LivePoll {
            engine,
            p,
            shape,
            since,
            _permit: permit,
            ..
        } = self;
        Box::pin(async move { serve_shape(&engine, p, shape, permit, Some(since)).await })
    }

    fn no_change(&mut self) -> Answer {
        let view = self.rx.borrow_and_update();
        no_change(&self.engine, &self.p, &self.shape, &view)
    }
}

/// 503 when a request pool is full (admission control).
fn over_limit(engine: &Engine, kind: Admission) -> Response<Body> {
    let limit = match kind {
        Admission::Initial => engine.config.max_initial_requests,
        Admission::Existing => engine.config.max_existing_requests,
    };
    let body = serde_json::json!({
        "code": "concurrent_request_limit_exceeded",
        "message": format!("Concurrent {} request limit exceeded (limit: {limit}), please retry", kind.name()),
    });
    let mut r = with_body(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(JSON),
        body.to_string(),
    );
    let h = r.headers_mut();
    response::no_store(h);
    set(h, "retry-after", &rand::random_range(5..=10u32).to_string());
    set_static(h, "electric-internal-known-error", "true");
    r
}

/// Waits for the shape's snapshot, then answers the subset query.
async fn serve_subset(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    sub: subset::Subset,
) -> Response<Body> {
    let mut rx = shape.subscribe();
    let wait = rx.wait_for(|v| v.snapshot_complete || v.gone || v.failed);
    let ready = matches!(tokio::time::timeout(SNAPSHOT_WAIT, wait).await, Ok(ref v) if v.snapshot_complete && !v.gone);
    if !ready {
        return response::unavailable("Timeout waiting for shape data to be loaded", 5);
    }
    subset::serve(engine, p, shape, sub).await
}

/// The shape disappeared (deleted, truncated, schema change): 409 with the current handle.
async fn rotated(engine: &Engine, p: &ShapeParams) -> Response<Body> {
    match engine.get_or_create(&p.request).await {
        Ok(s) => response::must_refetch(Some(&s.handle)),
        Err(_) => response::must_refetch(None),
    }
}

/// Sets the ETag of a log response, `"handle:request offset:response offset"`.
pub(super) fn set_etag(h: &mut impl Headers, handle: &str, req: RequestOffset, resp: LogOffset) {
    response::set_fmt(h, "etag", format_args!("\"{handle}:{req}:{resp}\""));
}

/// Whether `If-None-Match` (its values unquoted) names the ETag of `handle:req:resp`, with no
/// ETag built: a woken long-poll asks this of every response, and usually has no values.
fn etag_matches(values: &[String], handle: &str, req: RequestOffset, resp: LogOffset) -> bool {
    values
        .iter()
        .any(|v| fmt_eq(v, format_args!("{handle}:{req}:{resp}")))
}

/// Whether `s` is exactly what `args` formats to, without allocating.
fn fmt_eq(s: &str, args: std::fmt::Arguments<'_>) -> bool {
    struct Eq<'a>(&'a str);
    impl std::fmt::Write for Eq<'_> {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            match self.0.strip_prefix(piece) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(())
                }
                None => Err(std::fmt::Error),
            }
        }
    }
    let mut rest = Eq(s);
    std::fmt::write(&mut rest, args).is_ok() && rest.0.is_empty()
}

/// Adds the headers of a successful log response.
pub(super) fn log_headers(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    r: &mut Response<Body>,
    offset: LogOffset,
    up_to_date: bool,
    has_data: bool,
) {
    let ok = r.status() == StatusCode::OK;
    let cursor = live_cursor(engine, p);
    write_log_headers(
        engine,
        p,
        shape,
        r.headers_mut(),
        ok,
        offset,
        up_to_date,
        has_data,
        cursor,
    );
}

/// The `electric-cursor` a live response to `p` carries (§7.3).
fn live_cursor(engine: &Engine, p: &ShapeParams) -> u64 {
    response::cursor(
        engine.config.long_poll_timeout.as_secs(),
        p.cursor.as_deref(),
    )
}

/// [`log_headers`] into any [`Headers`]; `ok`: the status is 200; `cursor`: the
/// `electric-cursor` of a live response ([`live_cursor`]).
#[allow(clippy::too_many_arguments)]
fn write_log_headers(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    h: &mut impl Headers,
    ok: bool,
    offset: LogOffset,
    up_to_date: bool,
    has_data: bool,
    cursor: u64,
) {
    set(h, "electric-handle", &shape.handle);
    response::set_fmt(h, "electric-offset", format_args!("{offset}"));
    set_static(
        h,
        "electric-has-data",
        if has_data { "true" } else { "false" },
    );
    if up_to_date {
        set_static(h, "electric-up-to-date", "");
    }
    if p.live {
        response::set_fmt(h, "electric-cursor", format_args!("{cursor}"));
    } else if ok {
        set(h, "electric-schema", &shape.def.schema_header);
    }
    match p.offset {
        RequestOffset::Initial => set_static(
            h,
            "cache-control",
            "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746",
        ),
        _ if p.live && p.live_sse => set_static(h, "cache-control", "public, max-age=59"),
        _ if p.live => set_static(
            h,
            "cache-control",
            "public, max-age=5, stale-while-revalidate=5",
        ),
        _ => set(
            h,
            "cache-control",
            &format!(
                "public, max-age={}, stale-while-revalidate={}",
                engine.config.cache_max_age, engine.config.cache_stale_age
            ),
        ),
    }
}

/// A 200 log response with a JSON body, its head written as it is built ([`Encoded`]): every
/// log response a client reads, and the one a write sends to each of thousands of long-polls.
/// The caller adds the ETag.
fn log_response(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    body: Vec<u8>,
    offset: LogOffset,
    up_to_date: bool,
    has_data: bool,
) -> Encoded {
    let cursor = live_cursor(engine, p);
    log_response_with(engine, p, shape, body, offset, up_to_date, has_data, cursor)
}

/// [`log_response`] with the live `cursor` chosen by the caller.
#[allow(clippy::too_many_arguments)]
fn log_response_with(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    body: Vec<u8>,
    offset: LogOffset,
    up_to_date: bool,
    has_data: bool,
    cursor: u64,
) -> Encoded {
    let mut r = Encoded::new(StatusCode::OK, body.into());
    set_static(&mut r, "content-type", JSON);
    write_log_headers(
        engine, p, shape, &mut r, true, offset, up_to_date, has_data, cursor,
    );
    r
}

/// Answers from the log (see [`respond_now`]); a range too large to read on the async worker is
/// read on the blocking pool first.
async fn respond(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    view: &LogView,
    plan: ReadPlan,
) -> Answer {
    match respond_now(engine, p, shape, view, plan) {
        Ok(r) => r,
        Err(Blocking { up_to_date }) => {
            let ReadPlan::Range { start, end, .. } = plan else {
                return internal_error();
            };
            let path = shape.log_path();
            let fs = engine.storage.fs().clone();
            let read = tokio::task::spawn_blocking(move || {
                log::read_range(&fs, &path, start, end).map(std::sync::Arc::from)
            })
            .await;
            match read {
                Ok(buf) => range_response(engine, p, shape, plan, up_to_date, buf),
                Err(_) => internal_error(),
            }
        }
    }
}

/// A log range [`respond_now`] leaves to the blocking pool (larger than [`INLINE_READ_MAX`]),
/// with what it decided before reading.
struct Blocking {
    up_to_date: bool,
}

/// Answers from the log without waiting, which is every answer but a range larger than
/// [`INLINE_READ_MAX`] (`Err`). Synchronous, so that a woken long-poll answers in its own
/// future ([`LivePoll::wait`]) instead of a boxed handler.
fn respond_now(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    view: &LogView,
    plan: ReadPlan,
) -> Result<Answer, Blocking> {
    let latest = view.latest;
    let g = engine.global_lsn();
    match plan {
        ReadPlan::AtEnd { response } => {
            if p.offset == RequestOffset::Now {
                let body = up_to_date_body(if g > 0 { g } else { latest.tx });
                let mut r = log_response(engine, p, shape, body, response, true, false);
                let unique = unique_suffix();
                let etag = format_args!("\"{}:now:{response}:{unique}\"", shape.handle);
                response::set_fmt(&mut r, "etag", etag);
                return Ok(r.into());
            }
            if let Some(r) = not_modified(engine, p, shape, response, true) {
                return Ok(r.into());
            }
            let lsn = if p.live {
                response.tx
            } else {
                g.max(response.tx)
            };
            let body = up_to_date_body(lsn);
            let mut r = log_response(engine, p, shape, body, response, true, true);
            set_etag(&mut r, &shape.handle, p.offset, response);
            Ok(r.into())
        }
        ReadPlan::Range {
            start,
            end,
            response,
            ..
        } => {
            let req_off = match p.offset {
                RequestOffset::At(o) => o,
                _ => LogOffset::new(0, 0),
            };
            // Mid-snapshot the log has no end yet: never up-to-date.
            let up_to_date = view.snapshot_complete
                && p.offset != RequestOffset::Initial
                && response >= latest.max(req_off);
            // Before reading: a 304 needs none of the bytes.
            if let Some(r) = not_modified(engine, p, shape, response, up_to_date) {
                return Ok(r.into());
            }
            if let Some(key) = LiveKey::of(engine, p, shape, plan, up_to_date)
                && let Some(shared) = LiveKey::shared(&key)
            {
                return Ok(Encoded::from_shared(&shared).into());
            }
            if end.saturating_sub(start) > INLINE_READ_MAX {
                return Err(Blocking { up_to_date });
            }
            let buf = read_log_inline(engine.storage.fs(), shape, start, end);
            Ok(range_response(engine, p, shape, plan, up_to_date, buf))
        }
        ReadPlan::NotReady | ReadPlan::OutOfBounds => Ok(internal_error()),
    }
}

fn internal_error() -> Answer {
    response::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into()
}

/// The response to a [`ReadPlan::Range`] whose bytes `buf` holds (or failed to read).
fn range_response(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    plan: ReadPlan,
    up_to_date: bool,
    buf: std::io::Result<std::sync::Arc<[u8]>>,
) -> Answer {
    let ReadPlan::Range {
        after, response, ..
    } = plan
    else {
        return internal_error();
    };
    let buf = match buf {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, handle = %shape.handle, "reading a shape log failed");
            return response::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Unable to retrieve shape log: {e}"),
            )
            .into();
        }
    };
    let lsn = if p.live {
        response.tx
    } else {
        engine.global_lsn().max(response.tx)
    };
    if p.live_sse {
        // Pending data on an SSE request: the events, then the response ends.
        let mut out = Vec::with_capacity(buf.len() + 128);
        sse::encode_batch(&buf, after, up_to_date.then_some(lsn), &mut out);
        let mut r = sse::response(Body::from(out));
        log_headers(engine, p, shape, &mut r, response, up_to_date, true);
        set_etag(r.headers_mut(), &shape.handle, p.offset, response);
        return r.into();
    }
    let mut out = Vec::with_capacity(buf.len() + 128);
    out.push(b'[');
    log::append_payloads(&buf, after, &mut out);
    if up_to_date {
        if out.len() > 1 {
            out.push(b',');
        }
        json::up_to_date(&mut out, lsn);
    }
    out.push(b']');
    let key = LiveKey::of(engine, p, shape, plan, up_to_date);
    let cursor = key
        .as_ref()
        .map_or_else(|| live_cursor(engine, p), |k| k.cursor);
    let mut r = log_response_with(engine, p, shape, out, response, up_to_date, true, cursor);
    set_etag(&mut r, &shape.handle, p.offset, response);
    match key {
        Some(key) => Encoded::from_shared(&key.remember(r.freeze())).into(),
        None => r.into(),
    }
}

/// What makes two live range responses the same bytes, head and body: the same log range of
/// the same shape (a handle names one log for good, and bytes below `durable_len` never
/// change), the same request offset (the ETag names it), the same end of the range and
/// up-to-date flag, and the same cursor.
///
/// When a write wakes thousands of long-polls parked at the end of a shape, they all ask for
/// this: the first builds the response and the rest send its bytes with only their own
/// per-request headers added (request id, CORS), instead of each copying the body and writing
/// a dozen headers.
///
/// Fields compare in order: the handle last (an `Arc` of the same shape compares by pointer,
/// but another shape's compares its text).
#[derive(PartialEq, Eq)]
struct LiveKey {
    start: u64,
    end: u64,
    response: LogOffset,
    request: RequestOffset,
    up_to_date: bool,
    cursor: u64,
    handle: Arc<str>,
}

/// Recently built live responses (at most this many, each at most [`LIVE_SHARED_MAX`] bytes).
const LIVE_SHARED_ENTRIES: usize = 32;
const LIVE_SHARED_MAX: usize = 64 * 1024;

static LIVE_SHARED: std::sync::Mutex<Vec<(LiveKey, Arc<Frozen>)>> =
    std::sync::Mutex::new(Vec::new());

impl LiveKey {
    /// The key of a live long-poll's range response; `None` for any other response, or when
    /// the cursor is not the clock's (a jittered cursor is one request's own, §7.3).
    fn of(
        engine: &Engine,
        p: &ShapeParams,
        shape: &Shape,
        plan: ReadPlan,
        up_to_date: bool,
    ) -> Option<LiveKey> {
        let ReadPlan::Range {
            start,
            end,
            response,
            ..
        } = plan
        else {
            return None;
        };
        if !p.live || p.live_sse {
            return None;
        }
        let cursor = live_cursor(engine, p);
        if cursor != response::clock_cursor(engine.config.long_poll_timeout.as_secs()) {
            return None;
        }
        Some(LiveKey {
            handle: shape.handle.clone(),
            request: p.offset,
            start,
            end,
            response,
            up_to_date,
            cursor,
        })
    }

    fn shared(key: &LiveKey) -> Option<Arc<Frozen>> {
        // A poisoned lock only means another request panicked mid-insert; the entries are whole.
        let cache = LIVE_SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.iter().find(|(k, _)| k == key).map(|(_, f)| f.clone())
    }

    /// Keeps `frozen` for the next request with this key (unless it is too large to keep);
    /// returns it.
    fn remember(self, frozen: Arc<Frozen>) -> Arc<Frozen> {
        if frozen.size() <= LIVE_SHARED_MAX {
            let mut cache = LIVE_SHARED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= LIVE_SHARED_ENTRIES {
                cache.remove(0);
            }
            cache.push((self, frozen.clone()));
        }
        frozen
    }
}

/// Reads at most this many bytes inline on the async worker (a page-cache read of a log tail
/// takes microseconds); larger reads go to the blocking pool.
const INLINE_READ_MAX: u64 = 256 * 1024;
/// Recently read small log ranges, shared by every request that reads the same range.
const TAIL_CACHE_ENTRIES: usize = 64;

/// One cached range: (shape handle, start, end) → bytes. Keyed by handle, not path: a handle
/// names one log for good, and comparing it needs no path built per request.
type TailEntry = (Arc<str>, u64, u64, std::sync::Arc<[u8]>);

/// When one write wakes thousands of long-polls on a shape, they all read the same new range
/// `[start, durable_len)`: the first reads it, the rest share its bytes, instead of each opening
/// the file on a blocking-pool thread (which spawned hundreds of threads on a 2-core machine).
/// Cached bytes never go stale: a range below `durable_len` is immutable (only undurable bytes
/// past it are ever cut), and log paths are unique per shape handle.
static TAIL_CACHE: std::sync::Mutex<Vec<TailEntry>> = std::sync::Mutex::new(Vec::new());

/// Empties [`TAIL_CACHE`]. Called when storage is opened: a restart in the same process (tests)
/// may recover a log whose torn tail is then rewritten with different bytes.
pub fn clear_tail_cache() {
    TAIL_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    LIVE_SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// Reads `[start, end)` of a shape log (at most [`INLINE_READ_MAX`] bytes) on this thread,
/// through [`TAIL_CACHE`].
fn read_log_inline(
    fs: &crate::storage::io::Fs,
    shape: &Shape,
    start: u64,
    end: u64,
) -> std::io::Result<std::sync::Arc<[u8]>> {
    // A poisoned lock only means another reader panicked mid-insert; the entries are whole.
    let mut cache = TAIL_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, _, bytes)) = cache
        .iter()
        .find(|(h, s, e, _)| *s == start && *e == end && *h == shape.handle)
    {
        return Ok(bytes.clone());
    }
    let bytes: std::sync::Arc<[u8]> = log::read_range(fs, &shape.log_path(), start, end)?.into();
    if cache.len() >= TAIL_CACHE_ENTRIES {
        cache.remove(0);
    }
    cache.push((shape.handle.clone(), start, end, bytes.clone()));
    Ok(bytes)
}

/// 304 when `If-None-Match` names the etag this response would carry (§11.3).
fn not_modified(
    engine: &Engine,
    p: &ShapeParams,
    shape: &Shape,
    response: LogOffset,
    up_to_date: bool,
) -> Option<Response<Body>> {
    if !etag_matches(&p.if_none_match, &shape.handle, p.offset, response) {
        return None;
    }
    let mut r = with_body(StatusCode::NOT_MODIFIED, None, Body::empty());
    log_headers(engine, p, shape, &mut r, response, up_to_date, true);
    set_etag(r.headers_mut(), &shape.handle, p.offset, response);
    Some(r)
}

fn up_to_date_body(lsn: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    out.push(b'[');
    json::up_to_date(&mut out, lsn);
    out.push(b']');
    out
}

fn unique_suffix() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(0));
    now.wrapping_add(SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A long-poll that timed out with nothing new: `[up-to-date]`, offset unchanged.
fn no_change(engine: &Engine, p: &ShapeParams, shape: &Shape, view: &LogView) -> Answer {
    let g = engine.global_lsn();
    let offset = match p.offset {
        RequestOffset::At(o) => o,
        _ => view.latest,
    };
    let body = up_to_date_body(if g > 0 { g } else { view.latest.tx });
    let mut r = log_response(engine, p, shape, body, offset, true, false);
    let unique = unique_suffix();
    let etag = format_args!("\"{}:{}:{offset}:{unique}\"", shape.handle, p.offset);
    response::set_fmt(&mut r, "etag", etag);
    r.into()
}

/// `DELETE /v1/shape` (only with `ELECTRIC_ENABLE_INTEGRATION_TESTING`).
pub async fn delete(engine: &Engine, raw: &RawQuery) -> Response<Body> {
    if !engine.config.enable_integration_testing {
        return response::message(StatusCode::METHOD_NOT_ALLOWED, "DELETE not allowed");
    }
    let handle = raw.non_empty("handle");
    let handle = match (raw.non_empty("table"), handle) {
        (None, None) => {
            return response::invalid_one(
                "handle",
                "can't be blank when shape definition is missing",
            );
        }
        (None, Some(h)) => h.to_owned(),
        (Some(_), h) => {
            // Validate the definition as a GET would (offset is irrelevant here).
            let mut raw2 = raw.clone();
            raw2.fields.insert("offset".into(), "-1".into());
            raw2.fields.remove("live");
            let p = match params::validate(&raw2) {
                Ok(p) => p,
                Err(errors) => return response::invalid(&errors),
            };
            let def = match engine.resolve(&p.request, false).await {
                Ok(d) => d,
                Err(e) => return engine_error(e, &p),
            };
            let Some(s) = engine.registry.find(&def) else {
                return response::message(StatusCode::NOT_FOUND, "No existing shape found");
            };
            if h.is_some_and(|h| h != &*s.handle) {
                return response::message(
                    StatusCode::BAD_REQUEST,
                    "The specified shape definition and handle do not match. Please ensure the shape definition is correct or omit the shape handle from the request to obtain a new one.",
                );
            }
            s.handle.to_string()
        }
    };
    if engine.delete(&handle).await {
        let mut r = with_body(StatusCode::ACCEPTED, None, Body::empty());
        set(r.headers_mut(), "electric-has-data", "true");
        r
    } else {
        response::message(StatusCode::NOT_FOUND, "No existing shape found")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_names_exactly_the_etag() {
        let req = RequestOffset::At(LogOffset::new(5, 2));
        let resp = LogOffset::new(7, 0);
        let exact = format!("h-1:{req}:{resp}");
        assert!(etag_matches(std::slice::from_ref(&exact), "h-1", req, resp));
        assert!(etag_matches(&["x".into(), exact.clone()], "h-1", req, resp));
        for other in [
            String::new(),
            "h-1".to_owned(),
            format!("h-1:{req}"),
            format!("{exact}0"),
            exact[..exact.len() - 1].to_owned(),
            format!("h-2:{req}:{resp}"),
            format!("h-1:-1:{resp}"),
        ] {
            assert!(
                !etag_matches(std::slice::from_ref(&other), "h-1", req, resp),
                "{other}"
            );
        }
        assert!(!etag_matches(&[], "h-1", req, resp));
        assert!(etag_matches(
            &[format!("h:-1:{resp}")],
            "h",
            RequestOffset::Initial,
            resp
        ));
    }
}
