//! Server-sent events live mode (`live=true&live_sse=true`, http-protocol.md §7.4).
//!
//! Each message is `data: <single-line JSON>\n\n`; a batch that reaches the end of the log is
//! followed by an up-to-date event carrying the batch's LSN. The stream stays open up to the SSE
//! timeout, sends `: keep-alive` comments when idle, and simply ends on rotation or shutdown
//! (the client's next request gets the 409). Only durable data is ever sent: the stream reads the
//! same published views as long-polls.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Response, StatusCode};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::params::ShapeParams;
use super::response::set;
use super::shape::{log_headers, set_etag};
use crate::engine::Engine;
use crate::offset::{LogOffset, RequestOffset};
use crate::shape::json;
use crate::shape::registry::Shape;
use crate::storage::log::{self, ReadPlan};
use crate::telemetry::metrics::HttpRoute;

/// An SSE response around a body.
pub fn response(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    set(h, "content-type", "text/event-stream");
    set(h, "connection", "keep-alive");
    r
}

/// Appends the events of a read buffer, plus an up-to-date event when `up_to_date_lsn` is set.
pub fn encode_batch(
    buf: &[u8],
    after: Option<LogOffset>,
    up_to_date_lsn: Option<u64>,
    out: &mut Vec<u8>,
) {
    for payload in log::payloads(buf, after) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
    }
    if let Some(lsn) = up_to_date_lsn {
        out.extend_from_slice(b"data: ");
        json::up_to_date(out, lsn);
        out.extend_from_slice(b"\n\n");
    }
}

/// Opens a streaming SSE response at `at` (the end of the log when the request arrived).
pub fn stream(
    engine: &Engine,
    p: &ShapeParams,
    shape: Arc<Shape>,
    at: LogOffset,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let mut r = response(body);
    log_headers(engine, p, &shape, &mut r, at, true, true);
    set_etag(r.headers_mut(), &shape.handle, p.offset, at);
    let lifetime = engine.config.sse_timeout;
    let keepalive = engine.config.sse_keepalive;
    let mut stopping = engine.stopping.subscribe();
    let fs = engine.storage.fs().clone();
    let metrics = engine.metrics.clone();
    tokio::spawn(async move {
        let _open = metrics.track_sse_open();
        let mut views = shape.subscribe();
        let end = Instant::now() + lifetime;
        let mut at = at;
        let mut last_sent = Instant::now();
        loop {
            tokio::select! {
                () = views.changed() => {}
                () = tokio::time::sleep_until(last_sent + keepalive) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                    last_sent = Instant::now();
                    continue;
                }
                () = tokio::time::sleep_until(end) => return,
                () = crate::engine::stopped(&mut stopping) => return,
            }
            // Send everything new, chunk by chunk, until caught up.
            loop {
                let view = views.borrow_and_update().clone();
                if view.gone {
                    return;
                }
                let ReadPlan::Range {
                    start,
                    end: stop,
                    after,
                    response,
                } = log::plan_read(&view, RequestOffset::At(at))
                else {
                    break;
                };
                let path = shape.log_path();
                let fs = fs.clone();
                let Ok(Ok(buf)) =
                    tokio::task::spawn_blocking(move || log::read_range(&fs, &path, start, stop))
                        .await
                else {
                    return;
                };
                let up_to_date = response >= view.latest;
                let mut out = Vec::with_capacity(buf.len() + 96);
                encode_batch(&buf, after, up_to_date.then_some(response.tx), &mut out);
                metrics.http_streamed(HttpRoute::Shape, out.len() as u64);
                if tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
                at = response;
            }
        }
    });
    r
}
