//! The Prometheus listener (`ELECTRIC_PROMETHEUS_PORT`, http-protocol.md §1): `GET /metrics`
//! answers the text exposition of [`crate::telemetry::metrics`]; every other path or method is
//! `404 Not found`. A separate port, so the API port can be public while metrics stay internal.
//!
//! It shares the main accept loop ([`super::server::serve`]: connection cap, header deadline,
//! graceful stop) with small limits of its own. A scrape reads atomics and `/proc/self`: it
//! never touches Postgres or the shape logs.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::response::{set, with_body};
use crate::engine::{Engine, Health};
use crate::telemetry::exposition::CONTENT_TYPE;
use crate::telemetry::metrics::Live;

/// Connections a scraper (or a few) needs.
const LIMITS: super::server::Limits = super::server::Limits {
    max_connections: 64,
    header_read_timeout: Duration::from_secs(10),
    send_timeout: Duration::from_secs(30),
};

/// Serves scrapes on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, engine: Arc<Engine>, shutdown: watch::Receiver<bool>) {
    let app = Router::new().fallback(handle).with_state(engine);
    super::server::serve(listener, app, shutdown, LIMITS).await;
}

async fn handle(State(engine): State<Arc<Engine>>, req: Request) -> Response<Body> {
    let method = req.method().clone();
    if req.uri().path() != "/metrics" || !matches!(method, Method::GET | Method::HEAD) {
        return with_body(
            StatusCode::NOT_FOUND,
            Some("text/plain; charset=utf-8"),
            "Not found",
        );
    }
    let text = render(&engine);
    let mut r = with_body(StatusCode::OK, Some(CONTENT_TYPE), text);
    set(r.headers_mut(), "cache-control", "no-store");
    if method == Method::HEAD {
        *r.body_mut() = Body::empty();
    }
    r
}

/// The scrape body of a running service.
pub fn render(engine: &Engine) -> String {
    let health = match engine.health() {
        Health::Starting => 0,
        Health::Waiting => 1,
        Health::Active => 2,
        Health::Degraded => 3,
    };
    engine.metrics.render(Live {
        shapes_active: engine.registry.len(),
        health,
    })
}
