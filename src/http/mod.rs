//! The HTTP API: routing, authentication and the common headers, over our own request handling
//! and our own connection loop ([`server`]); axum supplies the `Body` type here (and the
//! metrics port's router).
//!
//! Routing is done on the decoded, normalised path (`/v1/shape/`, `/v1//shape`, `/v1/%73hape`
//! all reach the shape handler) and authentication is keyed on the matched route, so no path
//! variant bypasses the secret check. Every response gets the common headers in one place.

pub mod admin;
pub mod h1;
pub mod metrics;
pub mod params;
pub mod response;
pub mod server;
pub mod shape;
mod sse;
mod subset;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::engine::{Engine, Health};
use response::{JSON, common_headers, set, set_static, with_body};
use server::{Answer, Reply};

/// The application: every request of the main port goes to [`handle`].
#[derive(Clone)]
pub struct App(Arc<Engine>);

impl App {
    pub fn new(engine: Arc<Engine>) -> App {
        App(engine)
    }
}

impl server::Handler for App {
    fn call(&self, request: Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
        Box::pin(handle(self.0.clone(), request))
    }
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Root,
    Health,
    Shape,
    /// Anything under `/v1/admin` (an Ampere extension, see [`admin`]).
    Admin,
    NotFound,
}

/// Percent-decodes the path, collapses repeated slashes and drops a trailing slash.
fn normalise(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let parts: Vec<&str> = decoded.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

impl Route {
    fn metric(self) -> crate::telemetry::metrics::HttpRoute {
        use crate::telemetry::metrics::HttpRoute;
        match self {
            Route::Root => HttpRoute::Root,
            Route::Health => HttpRoute::Health,
            Route::Shape => HttpRoute::Shape,
            Route::Admin => HttpRoute::Admin,
            Route::NotFound => HttpRoute::Other,
        }
    }
}

fn route_of(path: &str) -> Route {
    match normalise(path).as_str() {
        "/" => Route::Root,
        "/v1/health" => Route::Health,
        "/v1/shape" => Route::Shape,
        p if p == admin::PREFIX || p.starts_with("/v1/admin/") => Route::Admin,
        _ => Route::NotFound,
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || {
                format!(
                    "amp-{:x}-{:x}",
                    std::process::id(),
                    REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
                )
            },
            str::to_owned,
        )
}

pub(crate) async fn handle(engine: Arc<Engine>, req: Request) -> Reply {
    let route = route_of(req.uri().path());
    let origins: Vec<&str> = req
        .headers()
        .get_all("origin")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let origin = if origins.len() == 1 {
        Some(origins[0].to_owned())
    } else {
        None
    };
    let rid = request_id(req.headers());
    let method = req.method().clone();
    let too_long = req
        .uri()
        .path_and_query()
        .is_some_and(|pq| pq.as_str().len() > server::MAX_URI_BYTES);
    let reply = match (route, &method) {
        _ if too_long => Reply::now(response::message(
            StatusCode::URI_TOO_LONG,
            "The request URI is too long: send long where clauses and params in a POST body",
        )),
        (Route::Root, &Method::GET | &Method::HEAD) => {
            Reply::now(with_body(StatusCode::OK, None, Body::empty()))
        }
        (Route::Health, &Method::GET | &Method::HEAD) => Reply::now(health(&engine)),
        (Route::Shape, &Method::OPTIONS) => Reply::now(options(req.headers())),
        (Route::Shape, &Method::GET | &Method::HEAD | &Method::POST | &Method::DELETE) => {
            let query = req.uri().query().unwrap_or("").to_owned();
            let raw = params::parse_query(&query);
            if !authorised(&engine, &raw) {
                Reply::now(response::unauthorized())
            } else if method == Method::DELETE {
                Reply::now(Box::pin(shape::delete(&engine, &raw)).await)
            } else {
                shape::serve(&engine, raw, req).await
            }
        }
        (Route::Admin, _) => {
            let path = normalise(req.uri().path());
            let query = req.uri().query().unwrap_or("");
            // Boxed: its future is large, and every request's future (a parked long-poll's
            // included) would otherwise be sized for it.
            Reply::now(Box::pin(admin::handle(&engine, &path, &method, req.headers(), query)).await)
        }
        _ => Reply::now(response::not_found()),
    };
    let done = Finish {
        route,
        method,
        origin,
        rid,
    };
    match reply {
        Reply::Now(answer) => Reply::Now(done.apply(&engine, answer)),
        Reply::Later(wait) => Reply::Later(Box::pin(async move {
            let answer = wait.await;
            done.apply(&engine, answer)
        })),
    }
}

/// What every response needs from its request once the handler is done (a parked long-poll's
/// response is finished long after the request itself was freed).
struct Finish {
    route: Route,
    method: Method,
    origin: Option<String>,
    rid: String,
}

impl Finish {
    fn apply(self, engine: &Engine, answer: Answer) -> Answer {
        match answer {
            // A shape log response to a GET needs only the common headers, written onto its
            // head (it has its own `cache-control`); anything that edits headers takes the
            // `Response` path.
            Answer::Encoded(mut e) if self.method == Method::GET && self.route == Route::Shape => {
                common_headers(&mut e, self.origin.as_deref(), true, &self.rid);
                engine.metrics.http_response(
                    self.route.metric(),
                    e.status().as_u16(),
                    Some(e.body_len()),
                );
                Answer::Encoded(e)
            }
            other => Answer::Response(self.apply_response(engine, other.into_response())),
        }
    }

    fn apply_response(self, engine: &Engine, mut resp: Response<Body>) -> Response<Body> {
        let Finish {
            route,
            method,
            origin,
            rid,
        } = self;
        if matches!(method, Method::POST | Method::DELETE) && route == Route::Shape {
            set(resp.headers_mut(), "cache-control", "no-cache");
        }
        common_headers(
            resp.headers_mut(),
            origin.as_deref(),
            route == Route::Shape,
            &rid,
        );
        response::default_cache_control(resp.headers_mut());
        if route == Route::Admin {
            // Not an API for browsers: no CORS grant, so a page cannot read or drive it.
            let h = resp.headers_mut();
            for name in [
                "access-control-allow-origin",
                "access-control-expose-headers",
                "access-control-allow-methods",
                "vary",
            ] {
                h.remove(name);
            }
        }
        if method == Method::OPTIONS && route == Route::Shape {
            // Pre-flight responses carry no cache-control.
            resp.headers_mut().remove("cache-control");
        }
        if method == Method::HEAD {
            *resp.body_mut() = Body::empty();
        }
        engine.metrics.http_response(
            route.metric(),
            resp.status().as_u16(),
            http_body::Body::size_hint(resp.body()).exact(),
        );
        resp
    }
}

/// Constant-time comparison of the `secret` (or legacy `api_secret`) parameter.
fn authorised(engine: &Engine, raw: &params::RawQuery) -> bool {
    let Some(secret) = engine.config.secret.as_deref() else {
        return true;
    };
    let given = raw
        .get("secret")
        .or_else(|| raw.get("api_secret"))
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(secret.as_bytes()))
}

fn health(engine: &Engine) -> Response<Body> {
    let (status, body) = match engine.health() {
        Health::Active => (StatusCode::OK, r#"{"status":"active"}"#),
        Health::Waiting => (StatusCode::ACCEPTED, r#"{"status":"waiting"}"#),
        Health::Starting => (StatusCode::ACCEPTED, r#"{"status":"starting"}"#),
        // Storage is failing: data is served, but nothing new arrives until it recovers.
        Health::Degraded => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"degraded"}"#),
    };
    let mut r = with_body(status, Some(JSON), body);
    set(
        r.headers_mut(),
        "cache-control",
        "no-cache, no-store, must-revalidate",
    );
    r
}

/// CORS pre-flight: 204, max-age a day; requested headers from an allow-list are granted.
fn options(headers: &HeaderMap) -> Response<Body> {
    let mut r = with_body(StatusCode::NO_CONTENT, None, Body::empty());
    let h = r.headers_mut();
    set_static(h, "access-control-max-age", "86400");
    set_static(h, "connection", "keep-alive");
    if let Some(req) = headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
    {
        let allowed: Vec<String> = req
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| matches!(s.as_str(), "if-none-match" | "traceparent" | "content-type"))
            .collect();
        if !allowed.is_empty() {
            set(h, "access-control-allow-headers", &allowed.join(","));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_variants_route_to_the_shape_handler() {
        for p in [
            "/v1/shape",
            "/v1/shape/",
            "/v1//shape",
            "/v1/shape//",
            "/v1/%73hape",
        ] {
            assert_eq!(route_of(p), Route::Shape, "{p}");
        }
        assert_eq!(route_of("/"), Route::Root);
        assert_eq!(route_of("/v1/health"), Route::Health);
        assert_eq!(route_of("/nope"), Route::NotFound);
        assert_eq!(route_of("/v1/shapes"), Route::NotFound);
        for p in [
            "/v1/admin/shapes",
            "/v1//admin/shapes",
            "//v1/admin//shapes/",
            "/v1/%61dmin/shapes",
            "/v1/admin",
            "/v1/admin/replication",
        ] {
            assert_eq!(route_of(p), Route::Admin, "{p}");
        }
        assert_eq!(route_of("/v1/administrator"), Route::NotFound);
    }
}
