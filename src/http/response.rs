//! Response building: the headers every response carries, cache-control per response kind,
//! cursors, ETags, and Electric's error bodies — all in one place (http-protocol.md §1.1, §7.3,
//! §11, §14).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::h1::Encoded;

/// `electric-server` value.
pub const SERVER: &str = concat!(
    "ElectricSQL/1.7.12 (ampere ",
    env!("CARGO_PKG_VERSION"),
    ")"
);
/// The exact expose list clients depend on.
pub const EXPOSE: &str = "electric-cursor,electric-handle,electric-has-data,electric-offset,electric-schema,electric-up-to-date,electric-internal-known-error,retry-after";
pub const JSON: &str = "application/json; charset=utf-8";

/// Seconds between the Unix epoch and 2024-10-09T00:00:00Z (the cursor epoch).
const CURSOR_EPOCH: u64 = 1_728_432_000;

/// The cursor the clock gives now: the end of the current long-poll interval since the epoch.
/// [`cursor`] answers it unless the request's own cursor is not behind it.
pub fn clock_cursor(long_poll_secs: u64) -> u64 {
    if long_poll_secs == 0 {
        return 0;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let since = now.saturating_sub(CURSOR_EPOCH);
    since.div_ceil(long_poll_secs) * long_poll_secs
}

/// The next `electric-cursor` value (§7.3).
pub fn cursor(long_poll_secs: u64, prev: Option<&str>) -> u64 {
    if long_poll_secs == 0 {
        return 0;
    }
    let next = clock_cursor(long_poll_secs);
    let prev: u64 = prev.and_then(|p| p.trim().parse().ok()).unwrap_or(0);
    if next > prev {
        next
    } else {
        prev + rand::random_range(1..=3600)
    }
}

/// Where a response's headers are written: a `HeaderMap`, or straight into the head of an
/// [`Encoded`] response (the woken long-poll's path). Header-setting code is written once, over
/// this, so both kinds of response carry the same headers by construction.
///
/// Names are lower-case constants. A value with a control byte other than tab is dropped, the
/// rule of `HeaderValue::from_str`, so no value can break the head it is written into. Each
/// name is set at most once per response (an `Encoded` head appends; it cannot replace).
pub trait Headers {
    fn put(&mut self, name: &'static str, value: &str);
    /// [`Self::put`] for a constant value: a `HeaderMap` keeps it without copying.
    fn put_static(&mut self, name: &'static str, value: &'static str);
}

impl Headers for HeaderMap {
    fn put(&mut self, name: &'static str, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.insert(HeaderName::from_static(name), v);
        }
    }

    fn put_static(&mut self, name: &'static str, value: &'static str) {
        self.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

impl Headers for Encoded {
    fn put(&mut self, name: &'static str, value: &str) {
        self.header(name, value.as_bytes());
    }

    fn put_static(&mut self, name: &'static str, value: &'static str) {
        self.put(name, value);
    }
}

/// Sets a header whose value is a constant: no copy of the value is made (a response carries a
/// dozen of these, and one write may wake thousands of long-polls).
pub fn set_static(h: &mut impl Headers, name: &'static str, value: &'static str) {
    h.put_static(name, value);
}

pub fn set(h: &mut impl Headers, name: &'static str, value: &str) {
    h.put(name, value);
}

/// [`set`] with a formatted value, formatted on the stack: one allocation (the value's own)
/// rather than two, for the offsets, cursors and ETags every log response carries.
pub fn set_fmt(h: &mut impl Headers, name: &'static str, value: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut buf = [0u8; 256];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if cursor.write_fmt(value).is_ok() {
        let n = usize::try_from(cursor.position()).unwrap_or(0);
        // Formatting writes UTF-8; a value that is not (it cannot be) is dropped like any other
        // invalid value.
        if let Ok(text) = std::str::from_utf8(&buf[..n]) {
            h.put(name, text);
        }
    } else {
        // Longer than the stack buffer (a long handle in an ETag): format on the heap.
        h.put(name, &value.to_string());
    }
}

/// Adds the headers every response of the main port carries (and see [`default_cache_control`]).
pub fn common_headers(
    h: &mut impl Headers,
    origin: Option<&str>,
    shape_route: bool,
    request_id: &str,
) {
    set_static(h, "electric-server", SERVER);
    set(h, "x-request-id", request_id);
    match origin {
        Some(o) => {
            set(h, "access-control-allow-origin", o);
            set_static(h, "vary", "Origin");
        }
        None => set_static(h, "access-control-allow-origin", "*"),
    }
    set_static(h, "access-control-expose-headers", EXPOSE);
    set(
        h,
        "access-control-allow-methods",
        if shape_route {
            "GET, POST, HEAD, DELETE, OPTIONS"
        } else {
            "GET, HEAD"
        },
    );
}

/// The `cache-control` of a response that set none (every shape log response sets its own).
pub fn default_cache_control(h: &mut HeaderMap) {
    if !h.contains_key("cache-control") {
        set_static(h, "cache-control", "max-age=0, private, must-revalidate");
    }
}

/// Headers a live log response carries (log headers, ETag, CORS, server, request id).
const RESPONSE_HEADERS: usize = 16;

pub fn with_body(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    // Room for a log response's headers and the common ones: an empty map would grow (and
    // rehash) twice on the way.
    *r.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADERS);
    if let Some(ct) = content_type {
        set_static(r.headers_mut(), "content-type", ct);
    }
    r
}

/// `400 {"message":"Invalid request","errors":{…}}` with no-store caching.
pub fn invalid(errors: &BTreeMap<String, Vec<String>>) -> Response<Body> {
    let body = serde_json::json!({ "message": "Invalid request", "errors": errors });
    let mut r = with_body(StatusCode::BAD_REQUEST, Some(JSON), body.to_string());
    no_store(r.headers_mut());
    r
}

/// A 400 with one error under one key.
pub fn invalid_one(key: &str, msg: &str) -> Response<Body> {
    invalid(&BTreeMap::from([(key.to_owned(), vec![msg.to_owned()])]))
}

pub fn no_store(h: &mut HeaderMap) {
    set_static(h, "cache-control", "no-store");
    set_static(h, "surrogate-control", "no-store");
}

/// `{"message": …}` with a status.
pub fn message(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = with_body(
        status,
        Some(JSON),
        serde_json::json!({ "message": msg }).to_string(),
    );
    if status.as_u16() >= 400 && status != StatusCode::CONFLICT {
        no_store(r.headers_mut());
    }
    r
}

/// A 503 with `retry-after`.
pub fn unavailable(msg: &str, retry_after: u32) -> Response<Body> {
    let mut r = message(StatusCode::SERVICE_UNAVAILABLE, msg);
    set(r.headers_mut(), "retry-after", &retry_after.to_string());
    r
}

/// 409 must-refetch, with the current handle when known.
pub fn must_refetch(handle: Option<&str>) -> Response<Body> {
    let mut r = with_body(
        StatusCode::CONFLICT,
        Some(JSON),
        crate::shape::json::MUST_REFETCH,
    );
    let h = r.headers_mut();
    match handle {
        Some(handle) => {
            set(h, "electric-handle", handle);
            set_static(h, "cache-control", "public, max-age=60, must-revalidate");
        }
        None => set_static(h, "cache-control", "public, max-age=1, must-revalidate"),
    }
    r
}

pub fn unauthorized() -> Response<Body> {
    with_body(
        StatusCode::UNAUTHORIZED,
        Some(JSON),
        r#"{"message":"Unauthorized - Invalid API secret"}"#,
    )
}

pub fn not_found() -> Response<Body> {
    with_body(StatusCode::NOT_FOUND, None, "Not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same header calls on a `HeaderMap` and on an `Encoded` head give the same headers,
    /// invalid values dropped from both.
    #[test]
    fn both_header_sinks_keep_the_same_headers() {
        fn write(h: &mut impl Headers) {
            set_static(h, "content-type", JSON);
            set(h, "electric-handle", "123-456");
            set_fmt(h, "electric-offset", format_args!("{}_{}", 7, 0));
            set(h, "x-bad", "line\r\nbreak");
            set(h, "x-high", "caf\u{e9}");
            set_fmt(h, "etag", format_args!("\"{}\"", "h".repeat(300)));
            common_headers(h, Some("https://app.example"), true, "rid-1");
        }
        let mut map = HeaderMap::new();
        write(&mut map);
        let mut encoded = Encoded::new(StatusCode::OK, bytes::Bytes::new());
        write(&mut encoded);
        let from_encoded = encoded.into_response();
        assert_eq!(from_encoded.headers(), &map);
        assert!(!map.contains_key("x-bad"));
        assert_eq!(map["x-high"].as_bytes(), "caf\u{e9}".as_bytes());
        assert_eq!(map["etag"].len(), 302);
        assert!(!map.contains_key("cache-control"));
    }

    #[test]
    fn cursor_is_a_multiple_of_the_timeout_and_always_moves_forward() {
        let c = cursor(20, None);
        assert_eq!(c % 20, 0);
        assert!(c > 0);
        let bumped = cursor(20, Some(&c.to_string()));
        assert!(bumped > c && bumped <= c + 3600);
        assert_eq!(cursor(0, None), 0);
        assert_eq!(cursor(20, Some("garbage")), c);
    }
}
