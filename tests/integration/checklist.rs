//! One protocol test per item of the compatibility checklist (http-protocol.md §19), against
//! the running server. Test names carry the item numbers; items sharing a server are grouped in
//! one test (`c08_to_c18_…`) with a comment per item.
//!
//! Items 57–60 are client end-to-end tests with the published clients (`tests/e2e/`):
//! - 57 (`ShapeStream` reaches up-to-date, live write within one long-poll):
//!   `shape_live.test.mjs`, `protocol_smoke.test.mjs`, `client_modes.test.mjs`.
//! - 58 (CORS, no `MissingHeadersError`): the server side (every required header present and
//!   listed in `access-control-expose-headers`, on every response kind) is asserted in
//!   `c01_to_c07_routing_auth_cors` here; the client side runs in Node (`shape_live.test.mjs`,
//!   `client_modes.test.mjs`, `nginx_cache.test.mjs`), not in a browser.
//! - 59 (pglite-sync, multi-shape atomic commit): `pglite_sync.test.mjs`.
//! - 60 (must-refetch after a server-side DELETE, resync under a new handle, no loop):
//!   `shape_live.test.mjs`, `client_modes.test.mjs`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ampere::config::Config;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::*;

const EXPOSE: &str = "electric-cursor,electric-handle,electric-has-data,electric-offset,electric-schema,electric-up-to-date,electric-internal-known-error,retry-after";
const SHAPE_METHODS: &str = "GET, POST, HEAD, DELETE, OPTIONS";
const JSON_CT: &str = "application/json; charset=utf-8";
const CC_INITIAL: &str = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746";
const CC_NON_LIVE: &str = "public, max-age=60, stale-while-revalidate=300";
const CC_LIVE: &str = "public, max-age=5, stale-while-revalidate=5";
const CC_409: &str = "public, max-age=60, must-revalidate";
const MUST_REFETCH: &str = r#"[{"headers":{"control":"must-refetch"}}]"#;
/// Seconds between the Unix epoch and 2024-10-09T00:00:00Z (the cursor epoch, §7.3).
const CURSOR_EPOCH: u64 = 1_728_432_000;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Any method, any path on the main port.
async fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let http = reqwest::Client::new();
    let mut req = http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
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

/// A request to make and the status it must get: method, URL, headers, body, status.
type Case<'a> = (
    &'a str,
    String,
    Vec<(&'a str, &'a str)>,
    Option<&'a str>,
    u16,
);

/// A 400 validation error with exactly these errors (the checklist's validation preamble).
#[track_caller]
fn assert_invalid(r: &Resp, errors: Value) {
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"message": "Invalid request", "errors": errors}),
        "{}",
        r.text
    );
    assert_eq!(r.h("cache-control"), Some("no-store"));
    assert_eq!(r.h("surrogate-control"), Some("no-store"));
    for h in [
        "electric-handle",
        "etag",
        "electric-offset",
        "electric-has-data",
        "electric-cursor",
    ] {
        assert_eq!(r.h(h), None, "{h} on a 400");
    }
}

#[track_caller]
fn handle_of(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text);
    r.h("electric-handle").expect("electric-handle").to_owned()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[track_caller]
fn assert_digits(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("{v} is not a string"));
    assert!(is_digits(s), "{s:?} is not a decimal string");
    s.parse().unwrap()
}

/// The body is exactly one up-to-date message; returns its `global_last_seen_lsn`.
#[track_caller]
fn assert_only_up_to_date(r: &Resp) -> u64 {
    let msgs = r.messages();
    assert_eq!(msgs.len(), 1, "{}", r.text);
    let h = msgs[0]["headers"].as_object().unwrap();
    assert_eq!(msgs[0].as_object().unwrap().len(), 1, "{}", r.text);
    assert_eq!(h.len(), 2, "{}", r.text);
    assert_eq!(h["control"], "up-to-date");
    assert_digits(&h["global_last_seen_lsn"])
}

fn changes(r: &Resp) -> Vec<Value> {
    r.messages()
        .iter()
        .filter(|m| m.get("key").is_some())
        .cloned()
        .collect()
}

fn offset_tx(offset: &str) -> u64 {
    offset.split('_').next().unwrap().parse().unwrap()
}

fn cursor_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - CURSOR_EPOCH
}

/// A shape followed request by request: handle and next offset.
struct Cur {
    q: String,
    handle: String,
    offset: String,
}

impl Cur {
    async fn start(base: &str, q: &str) -> Cur {
        let mut f = Follower::new(q);
        f.sync(base).await;
        Cur {
            q: q.to_owned(),
            handle: f.handle.unwrap(),
            offset: f.offset,
        }
    }

    fn url(&self, extra: &str) -> String {
        format!(
            "{}&offset={}&handle={}{extra}",
            self.q, self.offset, self.handle
        )
    }

    /// One live request from the current offset; advances the offset.
    async fn live(&mut self, base: &str) -> Resp {
        let r = get(base, &self.url("&live=true")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        self.offset = r.h("electric-offset").unwrap().to_owned();
        r
    }

    /// Live requests until the changes collected satisfy `done`; returns all changes seen.
    async fn live_until(&mut self, base: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut all = Vec::new();
        for _ in 0..20 {
            let r = self.live(base).await;
            all.extend(changes(&r));
            if done(&all) {
                return all;
            }
        }
        panic!("never saw the expected changes: {all:?}");
    }
}

/// Ampere in-process without waiting for it to become active (for health states and the
/// responses that need no database).
struct Bare {
    base: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bare {
    async fn start(config: Config) -> Bare {
        ampere::telemetry::init("info", false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            ampere::app::run(listener, config, rx)
                .await
                .expect("ampere runs");
        });
        Bare { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("graceful stop")
            .unwrap();
    }
}

/// A config whose database does not answer (nothing listens on its port).
fn no_database_config(storage: &Path) -> Config {
    let url = format!("postgresql://postgres@127.0.0.1:{}/postgres", free_port());
    Config::for_tests(url, storage.to_path_buf(), "test")
}

/// Polls `/v1/health` until it answers `status` with `body` (bounded).
async fn wait_health(base: &str, status: u16, body: &str) -> Resp {
    let mut last = None;
    for _ in 0..200 {
        let r = call("GET", &format!("{base}/v1/health"), &[], None).await;
        if r.status == status && r.text == body {
            return r;
        }
        last = Some((r.status, r.text));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never became {status} {body}: last {last:?}");
}

// ---------------------------------------------------------------------------------------------
// Routing, auth, CORS (1–7)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c01_to_c07_routing_auth_cors() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.secret = Some("s3cret".into());
    let server = Server::start(config).await;
    let base = server.base.as_str();
    let shape = |q: &str| format!("{base}/v1/shape?{q}");

    // 1. `GET /` → 200, empty body; `GET /nope` → 404 `Not found` (plain, no content-type);
    //    wrong methods on known paths too.
    for m in ["GET", "HEAD"] {
        let r = call(m, &format!("{base}/"), &[], None).await;
        assert_eq!(r.status, 200, "{m} /");
        assert_eq!(r.text, "");
    }
    for (m, path) in [
        ("GET", "/nope"),
        ("PUT", "/v1/shape"),
        ("POST", "/v1/health"),
    ] {
        let r = call(m, &format!("{base}{path}"), &[], None).await;
        assert_eq!(r.status, 404, "{m} {path}");
        assert_eq!(r.text, "Not found");
        assert_eq!(r.h("content-type"), None);
    }

    // 2. Health: 200 {"status":"active"}, no-cache, never needs the secret (starting/waiting:
    //    `c02_health_starting_and_waiting`).
    let r = call("GET", &format!("{base}/v1/health"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, r#"{"status":"active"}"#);
    assert_eq!(
        r.h("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );

    // 3. The secret: missing, wrong or empty → 401; `secret` or `api_secret` → normal; every
    //    path variant is authenticated; OPTIONS and health need none.
    let unauthorized = r#"{"message":"Unauthorized - Invalid API secret"}"#;
    for path in ["/v1/shape", "/v1/shape/", "/v1/%73hape", "/v1//shape"] {
        for q in [
            "table=items&offset=-1",
            "table=items&offset=-1&secret=wrong",
            "table=items&offset=-1&secret=",
            "table=items&offset=-1&api_secret=wrong",
        ] {
            let r = call("GET", &format!("{base}{path}?{q}"), &[], None).await;
            assert_eq!(r.status, 401, "{path}?{q}");
            assert_eq!(r.text, unauthorized);
        }
        for q in [
            "table=items&offset=-1&secret=s3cret",
            "table=items&offset=-1&api_secret=s3cret",
        ] {
            let r = call("GET", &format!("{base}{path}?{q}"), &[], None).await;
            assert_eq!(r.status, 200, "{path}?{q}: {}", r.text);
        }
    }
    for m in ["HEAD", "POST", "DELETE"] {
        let r = call(m, &shape("table=items&offset=-1"), &[], None).await;
        assert_eq!(r.status, 401, "{m} without the secret");
    }
    let r = call("OPTIONS", &shape(""), &[], None).await;
    assert_eq!(r.status, 204);
    let r = call("GET", &format!("{base}/v1/health"), &[], None).await;
    assert_eq!(r.status, 200);

    // 4. CORS on every /v1/shape response (except 401): allow-origin = the Origin (or `*`),
    //    the methods, and exactly the 8 exposed names. Server side of item 58: every 2xx
    //    carries the headers the TS client requires, all of them exposed.
    let initial = call(
        "GET",
        &shape("table=items&offset=-1&secret=s3cret"),
        &[],
        None,
    )
    .await;
    let h = handle_of(&initial);
    let caught_up_q = format!("table=items&offset=0_0&handle={h}&secret=s3cret");
    let caught_up = call("GET", &shape(&caught_up_q), &[], None).await;
    let etag = caught_up.h("etag").unwrap().to_owned();
    let origin = "https://app.example";
    let cases: Vec<Case> = vec![
        (
            "GET",
            shape("table=items&offset=-1&secret=s3cret"),
            vec![],
            None,
            200,
        ),
        ("GET", shape(&caught_up_q), vec![], None, 200),
        (
            "GET",
            shape(&caught_up_q),
            vec![("if-none-match", etag.as_str())],
            None,
            304,
        ),
        (
            "HEAD",
            shape("table=items&offset=-1&secret=s3cret"),
            vec![],
            None,
            200,
        ),
        ("GET", shape("table=items&secret=s3cret"), vec![], None, 400),
        (
            "GET",
            shape("table=items&offset=0_0&handle=1-2&secret=s3cret"),
            vec![],
            None,
            409,
        ),
        (
            "POST",
            shape("table=items&offset=now&log=changes_only&secret=s3cret"),
            vec![("content-type", "application/json")],
            Some(r#"{"where":"id > 0"}"#),
            200,
        ),
        (
            "DELETE",
            shape("handle=nope&secret=s3cret"),
            vec![],
            None,
            404,
        ),
        ("OPTIONS", shape(""), vec![], None, 204),
    ];
    for (m, url, headers, body, status) in &cases {
        for with_origin in [false, true] {
            let mut hs = headers.clone();
            if with_origin {
                hs.push(("origin", origin));
            }
            let r = call(m, url, &hs, *body).await;
            assert_eq!(r.status, *status, "{m} {url}: {}", r.text);
            let want_origin = if with_origin { origin } else { "*" };
            assert_eq!(
                r.h("access-control-allow-origin"),
                Some(want_origin),
                "{m} {url}"
            );
            assert_eq!(
                r.h("access-control-allow-methods"),
                Some(SHAPE_METHODS),
                "{m} {url}"
            );
            assert_eq!(
                r.h("access-control-expose-headers"),
                Some(EXPOSE),
                "{m} {url}"
            );
            if with_origin {
                // [REC] (issue 4): an echoed Origin comes with `Vary: Origin`.
                assert!(
                    r.h("vary")
                        .is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
                    "{m} {url}: vary {:?}",
                    r.h("vary")
                );
            }
            if (200..300).contains(status) && *m != "OPTIONS" && *m != "DELETE" {
                // What the TS client checks (§15.2), all of it exposed to browsers.
                let is_subset = body.is_some();
                let mut required = vec!["electric-offset", "electric-handle"];
                if !is_subset {
                    required.push("electric-schema");
                }
                for name in required {
                    assert!(r.h(name).is_some(), "{m} {url}: {name} missing");
                    assert!(EXPOSE.split(',').any(|e| e == name));
                }
            }
        }
    }
    // Two Origin headers → `*`.
    let mut two = reqwest::header::HeaderMap::new();
    two.append("origin", "https://a.example".parse().unwrap());
    two.append("origin", "https://b.example".parse().unwrap());
    let r = reqwest::Client::new()
        .get(shape("table=items&offset=-1&secret=s3cret"))
        .headers(two)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // [REC] (issue 4): CORS headers on 401 too.
    let r = call(
        "GET",
        &shape("table=items&offset=-1"),
        &[("origin", origin)],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.h("access-control-allow-origin"), Some(origin));
    assert_eq!(r.h("access-control-expose-headers"), Some(EXPOSE));

    // 5. OPTIONS → 204, max-age a day, no cache-control; a requested `if-none-match` header is
    //    granted.
    let r = call(
        "OPTIONS",
        &shape(""),
        &[
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "if-none-match"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.text, "");
    assert_eq!(r.h("access-control-max-age"), Some("86400"));
    assert_eq!(r.h("cache-control"), None);
    assert_eq!(r.h("access-control-allow-headers"), Some("if-none-match"));
    assert_eq!(r.h("access-control-allow-origin"), Some(origin));
    assert_eq!(r.h("access-control-allow-methods"), Some(SHAPE_METHODS));

    // 6. HEAD = GET without a body: same status, same headers.
    let ignore = [
        "date",
        "x-request-id",
        "content-length",
        "transfer-encoding",
    ];
    for q in [
        "table=items&offset=-1&secret=s3cret".to_owned(),
        caught_up_q.clone(),
        "table=items&offset=abc&secret=s3cret".to_owned(),
    ] {
        let g = call("GET", &shape(&q), &[], None).await;
        let hd = call("HEAD", &shape(&q), &[], None).await;
        assert_eq!(hd.status, g.status, "{q}");
        assert_eq!(hd.text, "", "{q}");
        assert!(!g.text.is_empty());
        let names = |r: &Resp| {
            let mut v: Vec<String> = r
                .headers
                .keys()
                .map(|k| k.as_str().to_owned())
                .filter(|k| !ignore.contains(&k.as_str()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&hd), names(&g), "{q}");
        for name in names(&g) {
            assert_eq!(hd.h(&name), g.h(&name), "{q}: header {name}");
        }
    }

    // 7. `electric-server: ElectricSQL/<version>` on every response.
    let responses = [
        call("GET", &format!("{base}/"), &[], None).await,
        call("GET", &format!("{base}/nope"), &[], None).await,
        call("GET", &format!("{base}/v1/health"), &[], None).await,
        call("OPTIONS", &shape(""), &[], None).await,
        call("GET", &shape("table=items&offset=-1"), &[], None).await, // 401
        call(
            "GET",
            &shape("table=items&offset=-1&secret=s3cret"),
            &[],
            None,
        )
        .await,
        call("GET", &shape("table=items&secret=s3cret"), &[], None).await, // 400
        call(
            "GET",
            &shape("table=items&offset=0_0&handle=1-2&secret=s3cret"),
            &[],
            None,
        )
        .await, // 409
        call(
            "GET",
            &shape(&caught_up_q),
            &[("if-none-match", etag.as_str())],
            None,
        )
        .await, // 304
    ];
    for r in &responses {
        let v = r.h("electric-server").expect("electric-server");
        let product = v.split_whitespace().next().unwrap();
        let version = product
            .strip_prefix("ElectricSQL/")
            .unwrap_or_else(|| panic!("{v:?} ({}) is not ElectricSQL/<version>", r.status));
        let parts: Vec<&str> = version.split('.').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| is_digits(p)),
            "{v:?}"
        );
    }
    server.stop().await;
}

/// 2. Health while starting (the database does not answer) and while waiting for the
///    replication lock held by another instance: 202 with the state, no-cache, no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c02_health_starting_and_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = no_database_config(&dir.path().join("a"));
    config.secret = Some("s3cret".into());
    let starting = Bare::start(config).await;
    let r = wait_health(&starting.base, 202, r#"{"status":"starting"}"#).await;
    assert_eq!(
        r.h("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    starting.stop().await;

    let pg = Pg::start().await;
    let lock = "hashtext('electric_slot_test')";
    pg.exec(&format!("SELECT pg_advisory_lock({lock})")).await;
    let waiting = Bare::start(test_config(&pg, &dir.path().join("b"))).await;
    let r = wait_health(&waiting.base, 202, r#"{"status":"waiting"}"#).await;
    assert_eq!(
        r.h("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    pg.exec(&format!("SELECT pg_advisory_unlock({lock})")).await;
    wait_health(&waiting.base, 200, r#"{"status":"active"}"#).await;
    waiting.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Validation (8–18)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c08_to_c18_validation() {
    let pg = Pg::start().await;
    pg.exec(
        r#"CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a');
           CREATE TABLE "Items" (id int PRIMARY KEY); INSERT INTO "Items" VALUES (7);
           CREATE SCHEMA s; CREATE TABLE s.t (id int PRIMARY KEY); INSERT INTO s.t VALUES (8);
           CREATE TABLE live_t (id int PRIMARY KEY)"#,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = server.base.as_str();
    let h = handle_of(&get(base, "table=items&offset=-1").await);

    // 8. No offset.
    assert_invalid(
        &get(base, "table=items").await,
        json!({"offset": ["can't be blank"]}),
    );
    assert_eq!(
        get(base, "table=items").await.h("content-type"),
        Some(JSON_CT)
    );

    // 9. Offset syntax.
    for bad in ["abc", "0_-1", "1_2_3", "10"] {
        assert_invalid(
            &get(base, &format!("table=items&offset={bad}&handle={h}")).await,
            json!({"offset": ["has invalid format"]}),
        );
    }
    for ok in ["-1", "now"] {
        let r = get(base, &format!("table=items&offset={ok}")).await;
        assert_eq!(r.status, 200, "offset={ok}: {}", r.text);
    }
    for ok in ["0_0", "0_inf"] {
        let r = get(base, &format!("table=items&offset={ok}&handle={h}")).await;
        assert_eq!(r.status, 200, "offset={ok}: {}", r.text);
    }
    for ok in ["0_0", "0_inf", "123_4"] {
        // Parsed: the request gets as far as the handle check (409 for an unknown one).
        let r = get(base, &format!("table=items&offset={ok}&handle=123-456")).await;
        assert_eq!(r.status, 409, "offset={ok}: {}", r.text);
    }

    // 10. A log offset needs a handle.
    for o in ["0_0", "0_inf", "123_4"] {
        assert_invalid(
            &get(base, &format!("table=items&offset={o}")).await,
            json!({"handle": ["can't be blank when offset != -1"]}),
        );
    }

    // 11. live with -1 / now.
    assert_invalid(
        &get(base, "table=items&offset=-1&live=true").await,
        json!({"live": ["can't be true when offset == -1"]}),
    );
    assert_invalid(
        &get(base, "table=items&offset=now&live=true").await,
        json!({"live": ["can't be true when offset is 'now'"]}),
    );

    // 12. live_sse without live.
    assert_invalid(
        &get(base, "table=items&offset=-1&live_sse=true").await,
        json!({"live_sse": ["can't be true unless live is also true"]}),
    );

    // 13. table.
    assert_invalid(
        &get(base, "offset=-1").await,
        json!({"table": ["can't be blank"]}),
    );
    assert_invalid(
        &get(base, "table=nonexistent&offset=-1").await,
        json!({"table": ["Table \"public\".\"nonexistent\" does not exist. If the table name contains capitals or special characters you must quote it."]}),
    );

    // 14. columns without the PK.
    assert_invalid(
        &get(base, "table=items&offset=-1&columns=title").await,
        json!({"columns": ["The list of columns must include all primary key columns, missing: id"]}),
    );

    // 15. replica / log.
    assert_invalid(
        &get(base, "table=items&offset=-1&replica=bogus").await,
        json!({"replica": ["is invalid"]}),
    );
    assert_invalid(
        &get(base, "table=items&offset=-1&log=bogus").await,
        json!({"log": ["is invalid"]}),
    );

    // 16. Unknown parameters: never a 400, same handle.
    let unknown = "cursor=123&cache-buster=abc&expired_handle=1-2&foo=bar";
    let r = get(base, &format!("table=items&offset=-1&{unknown}")).await;
    assert_eq!(handle_of(&r), h);
    let r = get(
        base,
        &format!("table=items&offset=0_0&handle={h}&{unknown}"),
    )
    .await;
    assert_eq!(handle_of(&r), h);

    // 17. `?live` (empty) and `live=1` are live; `live=false` is not.
    for live in ["live", "live=", "live=1"] {
        assert_invalid(
            &get(base, &format!("table=items&offset=-1&{live}")).await,
            json!({"live": ["can't be true when offset == -1"]}),
        );
    }
    let r = get(base, "table=items&offset=-1&live=false").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Positively: with data pending they answer at once as live responses (cursor, no schema).
    let mut cur = Cur::start(base, "table=live_t").await;
    pg.exec("INSERT INTO live_t VALUES (1)").await;
    cur.live_until(base, |c| c.len() == 1).await;
    let before = "0_inf";
    for live in ["&live", "&live=1"] {
        let r = get(
            base,
            &format!("table=live_t&offset={before}&handle={}{live}", cur.handle),
        )
        .await;
        assert_eq!(r.status, 200, "{live}: {}", r.text);
        assert!(r.h("electric-cursor").is_some(), "{live} is live");
        assert_eq!(r.h("electric-schema"), None, "{live} is live");
        assert_eq!(changes(&r).len(), 1);
    }
    let r = get(
        base,
        &format!(
            "table=live_t&offset={before}&handle={}&live=false",
            cur.handle
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("electric-cursor"), None, "live=false is not live");
    assert!(r.h("electric-schema").is_some());
    assert_eq!(r.h("cache-control"), Some(CC_NON_LIVE));

    // 18. Identifiers: unquoted is lowercased, quoted is exact, `s.t` is schema s.
    let r = get(base, "table=Items&offset=-1").await;
    assert_eq!(handle_of(&r), h);
    assert_eq!(
        r.messages()[0]["headers"]["relation"],
        json!(["public", "items"])
    );
    let r = get(base, "table=%22Items%22&offset=-1").await;
    assert_ne!(handle_of(&r), h);
    assert_eq!(
        r.messages()[0]["headers"]["relation"],
        json!(["public", "Items"])
    );
    assert_eq!(r.messages()[0]["key"], r#""public"."Items"/"7""#);
    let r = get(base, "table=s.t&offset=-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.messages()[0]["headers"]["relation"], json!(["s", "t"]));
    assert_eq!(r.messages()[0]["key"], r#""s"."t"/"8""#);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Initial sync and catch-up (19–27)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c19_to_c27_initial_sync_and_catch_up() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a');
         CREATE TABLE many (id int PRIMARY KEY, title text);
         INSERT INTO many SELECT g, repeat('x', 50) FROM generate_series(1, 40) g;
         CREATE TABLE other (id int PRIMARY KEY)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.chunk_bytes_threshold = 1000;
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = server.base.as_str();

    // 19. The first response of a fresh shape.
    let r = get(base, "table=items&offset=-1").await;
    let h = handle_of(&r);
    assert!(
        h.split_once('-')
            .is_some_and(|(a, b)| is_digits(a) && is_digits(b)),
        "{h}"
    );
    assert_eq!(r.h("electric-offset"), Some("0_0"));
    let schema: Value = serde_json::from_str(r.h("electric-schema").unwrap()).unwrap();
    assert_eq!(
        schema,
        json!({"id": {"type": "int4", "pk_index": 0, "not_null": true}, "title": {"type": "text"}})
    );
    assert_eq!(r.h("electric-has-data"), Some("true"));
    assert_eq!(r.h("etag"), Some(format!("\"{h}:-1:0_0\"").as_str()));
    assert_eq!(r.h("cache-control"), Some(CC_INITIAL));
    assert_eq!(r.h("electric-up-to-date"), None);
    assert_eq!(r.h("content-type"), Some(JSON_CT));

    // 20. Its body: the insert (headers exactly operation + relation), then snapshot-end; no
    //     up-to-date even for one row.
    let msgs = r.messages();
    assert_eq!(msgs.len(), 2, "{}", r.text);
    assert_eq!(
        msgs[0],
        json!({"key": "\"public\".\"items\"/\"1\"", "value": {"id": "1", "title": "a"},
               "headers": {"operation": "insert", "relation": ["public", "items"]}})
    );
    let end = msgs[1].as_object().unwrap();
    assert_eq!(end.len(), 1);
    let end = end["headers"].as_object().unwrap();
    let mut keys: Vec<&str> = end.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["control", "xip_list", "xmax", "xmin"]);
    assert_eq!(end["control"], "snapshot-end");
    let xmin = assert_digits(&end["xmin"]);
    let xmax = assert_digits(&end["xmax"]);
    assert!(xmin <= xmax);
    for x in end["xip_list"].as_array().unwrap() {
        assert_digits(x);
    }
    assert!(!r.up_to_date());

    // 21. Catch-up on a quiet shape: [up-to-date], 0_inf, the header, non-live caching.
    let r = get(base, &format!("table=items&offset=0_0&handle={h}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_only_up_to_date(&r);
    assert_eq!(r.h("electric-offset"), Some("0_inf"));
    assert_eq!(r.h("electric-up-to-date"), Some(""));
    assert_eq!(r.h("cache-control"), Some(CC_NON_LIVE));

    // 22. Shape identity: definition only, column order irrelevant.
    let def = "table=items&where=id%20%3E%200&replica=full&log=full";
    let a = handle_of(&get(base, &format!("{def}&columns=id,title&offset=-1")).await);
    let b = handle_of(
        &get(
            base,
            "offset=-1&log=full&columns=title,id&replica=full&where=id%20%3E%200&table=items",
        )
        .await,
    );
    assert_eq!(a, b);
    let mut seen = vec![a.clone()];
    for variant in [
        "table=items&where=id%20%3E%201&replica=full&log=full&columns=id,title",
        "table=items&where=id%20%3E%200&replica=full&log=full&columns=id",
        "table=items&where=id%20%3E%200&replica=default&log=full&columns=id,title",
        "table=items&where=id%20%3E%200&replica=full&log=changes_only&columns=id,title",
    ] {
        let v = handle_of(&get(base, &format!("{variant}&offset=-1")).await);
        assert!(!seen.contains(&v), "{variant} must be another shape");
        seen.push(v);
    }

    // 23. changes_only: the snapshot is exactly [snapshot-end].
    let r = get(base, "table=items&offset=-1&log=changes_only").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.messages().len(), 1, "{}", r.text);
    assert_eq!(r.messages()[0]["headers"]["control"], "snapshot-end");
    assert_eq!(r.messages()[0].as_object().unwrap().len(), 1);

    // 24. offset=now: a new shape → 0_inf; an existing one → its latest offset.
    let r = get(base, "table=items&where=id%20%3E%20100&offset=now").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_only_up_to_date(&r);
    assert_eq!(r.h("electric-offset"), Some("0_inf"));
    assert_eq!(r.h("electric-has-data"), Some("false"));
    assert_eq!(r.h("electric-up-to-date"), Some(""));
    assert!(r.h("electric-schema").is_some() && r.h("electric-handle").is_some());
    pg.exec("INSERT INTO items VALUES (2, 'b')").await;
    let mut items = Follower::new("table=items");
    items
        .until(base, "the insert arrives", |f| f.rows.len() == 2)
        .await;
    assert!(offset_tx(&items.offset) > 0);
    let r = get(base, "table=items&offset=now").await;
    assert_only_up_to_date(&r);
    assert_eq!(r.h("electric-handle"), Some(h.as_str()));
    assert_eq!(r.h("electric-offset"), Some(items.offset.as_str()));
    assert_eq!(r.h("electric-has-data"), Some("false"));
    assert_eq!(r.h("electric-up-to-date"), Some(""));
    assert!(r.h("electric-schema").is_some());

    // 25. Small chunks: 0_0, 0_1, … then log chunks; only the last response is up-to-date.
    let mut f = Follower::new("table=many");
    f.sync(base).await;
    let mut sql = String::from("BEGIN;");
    for i in 1..=40 {
        sql.push_str(&format!(
            "UPDATE many SET title = 'y{i}' || repeat('z', 50) WHERE id = {i};"
        ));
    }
    sql.push_str("COMMIT");
    pg.exec(&sql).await;
    let want = sorted(pg.rows("SELECT id::text, title FROM many").await);
    f.until(base, "the updates arrive", |f| {
        f.table(&["id", "title"]) == want
    })
    .await;
    let latest = f.offset.clone();
    let mut walk: Vec<Resp> = Vec::new();
    let (mut offset, mut handle) = ("-1".to_owned(), None::<String>);
    loop {
        let q = match &handle {
            Some(h) => format!("table=many&offset={offset}&handle={h}"),
            None => format!("table=many&offset={offset}"),
        };
        let r = get(base, &q).await;
        assert_eq!(r.status, 200, "{}", r.text);
        handle = r.h("electric-handle").map(str::to_owned);
        offset = r.h("electric-offset").unwrap().to_owned();
        let done = r.up_to_date();
        walk.push(r);
        if done {
            break;
        }
        assert!(walk.len() < 200, "the walk never ends");
    }
    let offsets: Vec<&str> = walk
        .iter()
        .map(|r| r.h("electric-offset").unwrap())
        .collect();
    let snapshot: Vec<&&str> = offsets.iter().filter(|o| o.starts_with("0_")).collect();
    assert!(snapshot.len() >= 3, "several snapshot chunks: {offsets:?}");
    for (k, o) in snapshot.iter().enumerate() {
        assert_eq!(**o, format!("0_{k}"), "{offsets:?}");
    }
    assert!(
        offsets.len() - snapshot.len() >= 2,
        "several log chunks: {offsets:?}"
    );
    assert_eq!(*offsets.last().unwrap(), latest.as_str());
    let (last, rest) = walk.split_last().unwrap();
    for r in rest {
        assert_eq!(r.h("electric-up-to-date"), None, "{}", r.text);
        assert!(
            r.messages()
                .iter()
                .all(|m| m["headers"]["control"] != "up-to-date"),
            "{}",
            r.text
        );
    }
    assert_eq!(last.h("electric-up-to-date"), Some(""));
    assert_eq!(
        last.messages()
            .iter()
            .filter(|m| m["headers"]["control"] == "up-to-date")
            .count(),
        1
    );
    let snapshot_ends: usize = walk
        .iter()
        .map(|r| {
            r.messages()
                .iter()
                .filter(|m| m["headers"]["control"] == "snapshot-end")
                .count()
        })
        .sum();
    assert_eq!(snapshot_ends, 1);
    assert_eq!(
        walk[snapshot.len() - 1].messages().last().unwrap()["headers"]["control"],
        "snapshot-end"
    );

    // 40 (chunk limit). A live request far behind answers at once with one chunk only.
    let first_log_chunk = offsets[snapshot.len()];
    let started = Instant::now();
    let r = get(
        base,
        &format!(
            "table=many&offset=0_inf&handle={}&live=true",
            f.handle.clone().unwrap()
        ),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.h("electric-offset"), Some(first_log_chunk));
    assert!(!changes(&r).is_empty());
    assert!(!r.up_to_date());
    assert_eq!(r.h("electric-up-to-date"), None);

    // 26. Non-live at the latest offset: [up-to-date] at once.
    let started = Instant::now();
    let r = get(
        base,
        &format!(
            "table=many&offset={latest}&handle={}",
            f.handle.clone().unwrap()
        ),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(r.status, 200);
    assert_only_up_to_date(&r);
    assert_eq!(r.h("electric-offset"), Some(latest.as_str()));

    // 27. global_last_seen_lsn of a non-live up-to-date covers a later commit on another table.
    let mut other = Cur::start(base, "table=other").await;
    pg.exec("INSERT INTO other VALUES (1)").await;
    let got = other.live_until(base, |c| c.len() == 1).await;
    let x = assert_digits(&got[0]["headers"]["lsn"]);
    assert!(x > offset_tx(&items.offset));
    let r = get(
        base,
        &format!("table=items&offset={}&handle={h}", items.offset),
    )
    .await;
    let g = assert_only_up_to_date(&r);
    assert!(g >= x, "global_last_seen_lsn {g} < {x}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Values, keys, schema (28–30)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c28_to_c30_values_keys_schema() {
    let pg = Pg::start().await;
    let values = r#"true, 2, 9007199254740993, 1.5, 123.4, 'he said "hi" / ok', 'x',
        '2024-01-31 12:34:56.123456', '2024-01-31 12:34:56+02', '2024-01-31', '{"a": 1}',
        '{"b":2, "a":1}', '\x0a0b', '{1,2}', '{{a,b},{c,"d e"}}',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '1 day 02:03:04', 'happy', NULL"#;
    pg.exec(&format!(
        r#"CREATE TYPE mood AS ENUM ('happy', 'sad');
           CREATE TABLE vals (id int PRIMARY KEY, b bool, i2 int2, i8 int8, f8 float8,
             n numeric(10,2), tx text, ch char(3), ts timestamp, tstz timestamptz, d date,
             j json, jb jsonb, ba bytea, arr int[], arr2 text[][], u uuid, iv interval,
             m mood, nul text);
           INSERT INTO vals VALUES (1, {values});
           CREATE TABLE comp (a text, b int, c text, PRIMARY KEY (c, a));
           INSERT INTO comp VALUES ('x/y', 1, 'z');
           CREATE TABLE nopk (a int, b text);
           INSERT INTO nopk VALUES (1, NULL), (2, 'q"x');
           CREATE TABLE sch (a int NOT NULL, b text, vc varchar(10), ch char(4),
             n numeric(8,3), n5 numeric(5), tstz timestamptz(3), iv interval day to second(2),
             iy interval year, arr int[] NOT NULL, arr2 text[][], m mood, PRIMARY KEY (b, a))"#
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.as_str();

    // 28. Values: PG text output as JSON strings; NULL is null; snapshot = replication.
    let mut f = Follower::new("table=vals");
    f.sync(base).await;
    pg.exec(&format!("INSERT INTO vals VALUES (2, {values})"))
        .await;
    f.until(base, "the replicated row", |f| f.rows.len() == 2)
        .await;
    let row1 = &f.rows[r#""public"."vals"/"1""#];
    let expected = json!({
        "id": "1", "b": "t", "i2": "2", "i8": "9007199254740993", "f8": "1.5", "n": "123.40",
        "tx": "he said \"hi\" / ok", "ch": "x  ", "ts": "2024-01-31 12:34:56.123456",
        "tstz": "2024-01-31 10:34:56+00", "d": "2024-01-31", "j": "{\"a\": 1}",
        "jb": "{\"a\": 1, \"b\": 2}", "ba": "\\x0a0b", "arr": "{1,2}",
        "arr2": "{{a,b},{c,\"d e\"}}", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "iv": "P1DT2H3M4S", "m": "happy", "nul": null
    });
    assert_eq!(Value::Object(row1.clone()), expected);
    // The same as Postgres' own text output, column by column.
    let cols: Vec<String> = pg
        .rows("SELECT attname FROM pg_attribute WHERE attrelid = 'vals'::regclass AND attnum > 0 ORDER BY attnum")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    let pg_row = &pg.rows("SELECT * FROM vals WHERE id = 1").await[0];
    for (c, v) in cols.iter().zip(pg_row) {
        assert_eq!(row1[c.as_str()].as_str(), v.as_deref(), "column {c}");
    }
    let mut row2 = f.rows[r#""public"."vals"/"2""#].clone();
    assert_eq!(row2.remove("id"), Some(json!("2")));
    let mut r1 = row1.clone();
    r1.remove("id");
    assert_eq!(
        row2, r1,
        "replicated values are byte-identical to snapshot values"
    );

    // 29. Keys: composite in PK order, `/` doubled, NULL → `_`, quotes not escaped.
    let mut comp = Follower::new("table=comp");
    comp.sync(base).await;
    let mut nopk = Follower::new("table=nopk");
    nopk.sync(base).await;
    pg.exec("INSERT INTO comp VALUES ('p', 2, 'q/r'); INSERT INTO nopk VALUES (3, NULL)")
        .await;
    comp.until(base, "replicated comp row", |f| f.rows.len() == 2)
        .await;
    nopk.until(base, "replicated nopk row", |f| f.rows.len() == 3)
        .await;
    assert_eq!(
        comp.rows.keys().cloned().collect::<Vec<_>>(),
        vec![
            r#""public"."comp"/"q//r"/"p""#.to_owned(),
            r#""public"."comp"/"z"/"x//y""#.to_owned()
        ]
    );
    assert_eq!(
        nopk.rows.keys().cloned().collect::<Vec<_>>(),
        vec![
            r#""public"."nopk"/"1"/_"#.to_owned(),
            r#""public"."nopk"/"2"/"q"x""#.to_owned(),
            r#""public"."nopk"/"3"/_"#.to_owned()
        ]
    );
    assert!(f.rows.contains_key(r#""public"."vals"/"1""#));

    // 30. electric-schema fields.
    let r = get(base, "table=sch&offset=-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let schema: Value = serde_json::from_str(r.h("electric-schema").unwrap()).unwrap();
    let want = json!({
        "a": {"type": "int4", "pk_index": 1, "not_null": true},
        "b": {"type": "text", "pk_index": 0, "not_null": true},
        "vc": {"type": "varchar", "max_length": 10},
        "ch": {"type": "bpchar", "length": 4},
        "n": {"type": "numeric", "precision": 8, "scale": 3},
        "n5": {"type": "numeric", "precision": 5, "scale": 0},
        "tstz": {"type": "timestamptz", "precision": 3},
        "iv": {"type": "interval", "precision": 2, "fields": "DAY TO SECOND"},
        "iy": {"type": "interval", "fields": "YEAR"},
        "arr": {"type": "int4", "dims": 1, "not_null": true},
        "arr2": {"type": "text", "dims": 2},
        "m": {"type": "mood"}
    });
    for (col, info) in want.as_object().unwrap() {
        assert_eq!(&schema[col], info, "schema of {col}: {schema}");
    }
    assert_eq!(schema, want);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Live long-poll (31–40) and out of bounds (45)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c31_to_c40_c45_live_and_out_of_bounds() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text, status text, note text);
         INSERT INTO items VALUES (1, 'a', 'done', 'n'), (2, 'b', 'done', 'n'),
           (10, 'j', 'open', 'n'), (11, 'k', 'done', 'n'), (12, 'l', 'open', 'n');
         CREATE TABLE other (id int PRIMARY KEY);
         CREATE TABLE quiet (id int PRIMARY KEY); INSERT INTO quiet VALUES (1);
         CREATE TABLE trunc (id int PRIMARY KEY); INSERT INTO trunc VALUES (1)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = server.base.clone();
    let base = base.as_str();

    // 31 and 45 wait out timers: started first, checked at the end.
    let quiet = Cur::start(base, "table=quiet").await;
    let idle_url = quiet.url("&live=true&cursor=");
    let b = base.to_owned();
    let idle = tokio::spawn(async move {
        let started = Instant::now();
        let before = cursor_now();
        let r = get(&b, &idle_url).await;
        (r, started.elapsed(), before, cursor_now())
    });
    let oob_url = format!(
        "table=quiet&offset=99999999999999_0&handle={}",
        quiet.handle
    );
    let b = base.to_owned();
    let oob = tokio::spawn(async move {
        let started = Instant::now();
        let r = get(&b, &oob_url).await;
        (r, started.elapsed())
    });

    let mut dflt = Cur::start(base, "table=items").await;
    let mut full = Cur::start(base, "table=items&replica=full").await;
    let _other = Cur::start(base, "table=other").await; // publishes `other`
    let behind = dflt.offset.clone();

    // 32. A live request returns promptly after a commit, with the change headers.
    let url = dflt.url("&live=true");
    let b = base.to_owned();
    let started = Instant::now();
    let parked = tokio::spawn(async move { get(&b, &url).await });
    let xid = pg
        .rows("BEGIN; INSERT INTO items VALUES (3, 'c', 'done', 'n'); SELECT pg_current_xact_id()::text; COMMIT")
        .await[0][0]
        .clone()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let r = parked.await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1900), "prompt");
    assert_eq!(r.status, 200, "{}", r.text);
    let msgs = r.messages();
    assert_eq!(msgs.len(), 2, "{}", r.text);
    let lsn = assert_digits(&msgs[0]["headers"]["lsn"]);
    assert_eq!(
        msgs[0],
        json!({"key": "\"public\".\"items\"/\"3\"",
               "value": {"id": "3", "title": "c", "status": "done", "note": "n"},
               "headers": {"operation": "insert", "relation": ["public", "items"],
                           "txids": [xid & 0xFFFF_FFFF], "lsn": lsn.to_string(),
                           "op_position": 0, "last": true}})
    );
    assert_eq!(
        msgs[1],
        json!({"headers": {"control": "up-to-date", "global_last_seen_lsn": lsn.to_string()}})
    );
    assert_eq!(r.h("electric-offset"), Some(format!("{lsn}_0").as_str()));
    dflt.offset = format!("{lsn}_0");
    full.live_until(base, |c| c.len() == 1).await;

    // 33. Live responses: no schema; a cursor (whole seconds since 2024-10-09, a multiple of
    //     the 2 s timeout), strictly larger than a request cursor at or past it.
    assert_eq!(r.h("electric-schema"), None);
    let now = cursor_now();
    let c = r.h("electric-cursor").unwrap().parse::<u64>().unwrap();
    assert_eq!(c % 2, 0);
    assert!(c + 4 >= now && c <= now + 2, "cursor {c} vs now {now}");
    for prev in [c, c + 1000] {
        let r = get(
            base,
            &format!(
                "table=items&offset={behind}&handle={}&live=true&cursor={prev}",
                dflt.handle
            ),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.h("electric-schema"), None);
        let next = r.h("electric-cursor").unwrap().parse::<u64>().unwrap();
        assert!(next > prev && next <= prev + 3600, "{next} after {prev}");
    }

    // 34. Op positions: 0, 2, 4 by change order, `last` only on the third; 2, 4, 6 after an
    //     unrelated change.
    for (sql, want) in [
        (
            "BEGIN; INSERT INTO items VALUES (20, 't', 'done', 'n'), (21, 't', 'done', 'n'), (22, 't', 'done', 'n'); COMMIT",
            [0, 2, 4],
        ),
        (
            "BEGIN; INSERT INTO other VALUES (1); INSERT INTO items VALUES (23, 't', 'done', 'n'), (24, 't', 'done', 'n'), (25, 't', 'done', 'n'); COMMIT",
            [2, 4, 6],
        ),
    ] {
        pg.exec(sql).await;
        let got = dflt.live_until(base, |c| c.len() == 3).await;
        let ops: Vec<u64> = got
            .iter()
            .map(|m| m["headers"]["op_position"].as_u64().unwrap())
            .collect();
        assert_eq!(ops, want);
        let lasts: Vec<Option<&Value>> = got.iter().map(|m| m["headers"].get("last")).collect();
        assert_eq!(lasts, vec![None, None, Some(&json!(true))]);
        full.live_until(base, |c| c.len() == 3).await;
    }

    // 35. UPDATE: default → PK + changed columns; full → whole row + old values of the changed.
    pg.exec("UPDATE items SET title = 'A' WHERE id = 1").await;
    let d = dflt.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["headers"]["operation"], "update");
    assert_eq!(d[0]["value"], json!({"id": "1", "title": "A"}));
    assert_eq!(d[0].get("old_value"), None);
    let f = full.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(
        f[0]["value"],
        json!({"id": "1", "title": "A", "status": "done", "note": "n"})
    );
    assert_eq!(f[0]["old_value"], json!({"title": "a"}));

    // 36. DELETE: default → PK only; full → the whole old row.
    pg.exec("DELETE FROM items WHERE id = 1").await;
    let d = dflt.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(d[0]["headers"]["operation"], "delete");
    assert_eq!(d[0]["value"], json!({"id": "1"}));
    let f = full.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(f[0]["headers"]["operation"], "delete");
    assert_eq!(
        f[0]["value"],
        json!({"id": "1", "title": "A", "status": "done", "note": "n"})
    );

    // 37. A PK change: delete(old key, key_change_to) at N, insert(new key, key_change_from) at
    //     N+1, `last` on the insert.
    pg.exec("UPDATE items SET id = 100 WHERE id = 2").await;
    let d = dflt.live_until(base, |c| c.len() >= 2).await;
    assert_eq!(d.len(), 2);
    let (old_key, new_key) = (r#""public"."items"/"2""#, r#""public"."items"/"100""#);
    assert_eq!(d[0]["key"], old_key);
    assert_eq!(d[0]["headers"]["operation"], "delete");
    assert_eq!(d[0]["headers"]["key_change_to"], new_key);
    assert_eq!(d[0]["headers"].get("last"), None);
    assert_eq!(d[1]["key"], new_key);
    assert_eq!(d[1]["headers"]["operation"], "insert");
    assert_eq!(d[1]["headers"]["key_change_from"], old_key);
    assert_eq!(d[1]["headers"]["last"], true);
    assert_eq!(
        d[1]["value"],
        json!({"id": "100", "title": "b", "status": "done", "note": "n"})
    );
    let n = d[0]["headers"]["op_position"].as_u64().unwrap();
    assert_eq!(d[1]["headers"]["op_position"], n + 1);
    assert_eq!(d[0]["headers"]["lsn"], d[1]["headers"]["lsn"]);
    full.live_until(base, |c| c.len() >= 2).await;

    // 38. Moves across the where boundary; a change of unselected columns only → nothing.
    let mut open = Cur::start(
        base,
        "table=items&where=status%20%3D%20%27open%27&columns=id,title,status",
    )
    .await;
    pg.exec("UPDATE items SET status = 'done' WHERE id = 10")
        .await;
    let m = open.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["key"], r#""public"."items"/"10""#);
    assert_eq!(m[0]["headers"]["operation"], "delete");
    pg.exec("UPDATE items SET status = 'open' WHERE id = 11")
        .await;
    let m = open.live_until(base, |c| !c.is_empty()).await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["headers"]["operation"], "insert");
    assert_eq!(
        m[0]["value"],
        json!({"id": "11", "title": "k", "status": "open"})
    );
    pg.exec("UPDATE items SET note = 'changed' WHERE id = 12")
        .await;
    pg.exec("UPDATE items SET title = 'L' WHERE id = 12").await;
    let m = open
        .live_until(base, |c| c.iter().any(|m| m["value"]["title"] == "L"))
        .await;
    assert_eq!(m.len(), 1, "the note-only update produced a message: {m:?}");
    assert_eq!(m[0]["value"], json!({"id": "12", "title": "L"}));

    // 39. TRUNCATE → the old handle gets 409.
    let mut t = Cur::start(base, "table=trunc").await;
    pg.exec("TRUNCATE trunc").await;
    let mut status = 200;
    for _ in 0..20 {
        let r = get(base, &t.url("&live=true")).await;
        status = r.status;
        if status == 409 {
            assert_ne!(r.h("electric-handle"), Some(t.handle.as_str()));
            break;
        }
        t.offset = r.h("electric-offset").unwrap().to_owned();
    }
    assert_eq!(status, 409, "TRUNCATE must rotate the shape");

    // 40. A live request behind the latest offset returns at once with data.
    let started = Instant::now();
    let r = get(
        base,
        &format!(
            "table=items&offset={behind}&handle={}&live=true",
            dflt.handle
        ),
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(r.status, 200);
    assert!(!changes(&r).is_empty());
    assert_eq!(r.h("electric-schema"), None);
    assert!(r.h("electric-cursor").is_some());

    // 45 (second half). Data reaching an out-of-bounds offset within the window is served.
    let now = get(base, "table=items&offset=now").await;
    let latest = now.h("electric-offset").unwrap();
    let ahead = format!("{}_0", offset_tx(latest) + 1);
    let url = format!("table=items&offset={ahead}&handle={}", dflt.handle);
    let b = base.to_owned();
    let waiting = tokio::spawn(async move { get(&b, &url).await });
    pg.exec("INSERT INTO items VALUES (30, 'z', 'done', 'n')")
        .await;
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let c = changes(&r);
    assert_eq!(c.len(), 1, "{}", r.text);
    assert_eq!(c[0]["key"], r#""public"."items"/"30""#);

    // 31. The idle live request: after the timeout, [up-to-date] with the no-change headers.
    let (r, took, before, after) = idle.await.unwrap();
    assert!(took >= Duration::from_millis(1900), "waited {took:?}");
    assert!(took < Duration::from_secs(5), "waited {took:?}");
    assert_eq!(r.status, 200);
    assert_only_up_to_date(&r);
    assert_eq!(r.h("electric-offset"), Some(quiet.offset.as_str()));
    assert_eq!(r.h("electric-has-data"), Some("false"));
    assert_eq!(r.h("electric-up-to-date"), Some(""));
    assert_eq!(r.h("cache-control"), Some(CC_LIVE));
    assert_eq!(r.h("electric-schema"), None); // 33
    let c = r.h("electric-cursor").unwrap().parse::<u64>().unwrap();
    assert_eq!(c % 2, 0);
    assert!(
        c >= before && c <= after + 2,
        "cursor {c} in [{before}, {after}+2]"
    );
    let etag = r.h("etag").unwrap();
    let parts: Vec<&str> = etag.trim_matches('"').split(':').collect();
    assert_eq!(parts.len(), 4, "{etag}");
    assert_eq!(
        parts[..3],
        [quiet.handle.as_str(), &quiet.offset, &quiet.offset]
    );

    // 45 (first half). An offset past the end: 400 after half the long-poll timeout.
    let (r, took) = oob.await.unwrap();
    assert!(took >= Duration::from_millis(900), "waited {took:?}");
    assert!(took < Duration::from_secs(4), "waited {took:?}");
    assert_invalid(&r, json!({"offset": ["out of bounds for this shape"]}));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 409 / rotation (41–44), DELETE (55)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c41_to_c44_c55_rotation_and_delete() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a'), (2, 'b')")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let h = handle_of(&get(&base, "table=items&offset=-1").await);

    // 41. Unknown handle → 409 must-refetch with the definition's current handle.
    let r = get(&base, "table=items&offset=0_0&handle=123-456").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, MUST_REFETCH);
    assert_eq!(r.h("content-type"), Some(JSON_CT));
    assert_eq!(r.h("electric-handle"), Some(h.as_str()));
    assert_eq!(r.h("cache-control"), Some(CC_409));
    for name in [
        "electric-offset",
        "electric-schema",
        "electric-cursor",
        "electric-up-to-date",
        "electric-has-data",
    ] {
        assert_eq!(r.h(name), None, "{name} on a 409");
    }

    // 42. A valid handle with another where → 409 with that definition's handle.
    let where_q = "table=items&where=id%20%3E%201";
    let r = get(&base, &format!("{where_q}&offset=0_0&handle={h}")).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, MUST_REFETCH);
    let hw = r.h("electric-handle").unwrap().to_owned();
    assert_ne!(hw, h);
    assert_eq!(
        handle_of(&get(&base, &format!("{where_q}&offset=-1")).await),
        hw
    );

    // 43. offset=-1 ignores the handle.
    let r = get(&base, "table=items&offset=-1&handle=garbage").await;
    assert_eq!(handle_of(&r), h);

    // 55 (enabled). DELETE: existing → 202 empty; unknown → 404.
    let r = call("DELETE", &format!("{base}/v1/shape?handle={h}"), &[], None).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.text, "");
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    for q in ["handle=nope", &format!("handle={h}")] {
        let r = call("DELETE", &format!("{base}/v1/shape?{q}"), &[], None).await;
        assert_eq!(r.status, 404, "{q}");
        assert_eq!(r.body, json!({"message": "No existing shape found"}));
    }
    let r = call("DELETE", &format!("{base}/v1/shape?{where_q}"), &[], None).await;
    assert_eq!(r.status, 202, "by definition: {}", r.text);
    let r = call("DELETE", &format!("{base}/v1/shape?{where_q}"), &[], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, json!({"message": "No existing shape found"}));

    // 44. After DELETE a new shape gets a new handle; never reused, also across a restart.
    let r = get(&base, &format!("table=items&offset=0_inf&handle={h}")).await;
    assert_eq!(r.status, 409);
    let h2 = handle_of(&get(&base, "table=items&offset=-1").await);
    assert_ne!(h2, h);
    assert_eq!(r.h("electric-handle"), Some(h2.as_str()));
    let r = call("DELETE", &format!("{base}/v1/shape?handle={h2}"), &[], None).await;
    assert_eq!(r.status, 202);
    server.stop().await;
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let h3 = handle_of(&get(&base, "table=items&offset=-1").await);
    assert!(h3 != h && h3 != h2 && h3 != hw, "{h3} reused");
    for old in [&h, &h2, &hw] {
        let r = get(&base, &format!("table=items&offset=0_inf&handle={old}")).await;
        assert_eq!(r.status, 409);
        assert_eq!(r.h("electric-handle"), Some(h3.as_str()));
    }
    server.stop().await;

    // 55 (disabled). DELETE → 405 (no database needed to say so).
    let mut config = no_database_config(&dir.path().join("disabled"));
    config.enable_integration_testing = false;
    let bare = Bare::start(config).await;
    for q in ["table=items", "handle=abc"] {
        let r = call("DELETE", &format!("{}/v1/shape?{q}", bare.base), &[], None).await;
        assert_eq!(r.status, 405, "{q}");
        assert_eq!(r.body, json!({"message": "DELETE not allowed"}));
        // Item 4 on a 405 too.
        assert_eq!(r.h("access-control-allow-origin"), Some("*"));
        assert_eq!(r.h("access-control-allow-methods"), Some(SHAPE_METHODS));
        assert_eq!(r.h("access-control-expose-headers"), Some(EXPOSE));
    }
    bare.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Caching (46–47)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c46_c47_etags_and_304() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = server.base.as_str();

    // 47. Data etags: "<handle>:<request offset>:<response offset>".
    let r0 = get(base, "table=items&offset=-1").await;
    let h = handle_of(&r0);
    assert_eq!(r0.h("etag"), Some(format!("\"{h}:-1:0_0\"").as_str()));
    let q1 = format!("table=items&offset=0_0&handle={h}");
    let r1 = get(base, &q1).await;
    assert_eq!(r1.h("etag"), Some(format!("\"{h}:0_0:0_inf\"").as_str()));
    // Two idle long-polls at once (no-change responses) on another shape, while data arrives.
    let hw = handle_of(&get(base, "table=items&where=id%20%3E%2010&offset=-1").await);
    let idle: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("table=items&where=id%20%3E%2010&offset=0_inf&handle={hw}&live=true");
            let b = base.to_owned();
            tokio::spawn(async move { get(&b, &url).await })
        })
        .collect();
    let mut cur = Cur::start(base, "table=items").await;
    pg.exec("INSERT INTO items VALUES (2, 'b')").await;
    let live = cur.live(base).await;
    let l = cur.offset.clone();
    assert!(offset_tx(&l) > 0);
    assert_eq!(changes(&live).len(), 1);
    assert_eq!(live.h("etag"), Some(format!("\"{h}:0_inf:{l}\"").as_str()));
    let q2 = format!("table=items&offset=0_inf&handle={h}");
    let r2 = get(base, &q2).await;
    assert_eq!(r2.h("etag"), Some(format!("\"{h}:0_inf:{l}\"").as_str()));
    // No-change etags differ on every response: offset=now and idle long-polls.
    let n1 = get(base, "table=items&offset=now").await;
    let n2 = get(base, "table=items&offset=now").await;
    let mut no_change = vec![
        n1.h("etag").unwrap().to_owned(),
        n2.h("etag").unwrap().to_owned(),
    ];
    for e in &no_change {
        let parts: Vec<&str> = e.trim_matches('"').split(':').collect();
        assert_eq!(parts.len(), 4, "{e}");
        assert_eq!(parts[..3], [h.as_str(), "now", l.as_str()]);
    }
    for t in idle {
        let r = t.await.unwrap();
        assert_eq!(r.h("electric-has-data"), Some("false"), "{}", r.text);
        let e = r.h("etag").unwrap().to_owned();
        let parts: Vec<&str> = e.trim_matches('"').split(':').collect();
        assert_eq!(parts.len(), 4, "{e}");
        assert_eq!(parts[..3], [hw.as_str(), "0_inf", "0_inf"]);
        no_change.push(e);
    }
    let mut unique = no_change.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), no_change.len(), "{no_change:?}");

    // 46. If-None-Match on a non-live request → 304, empty, same cache and electric headers,
    //     no schema.
    for q in ["table=items&offset=-1".to_owned(), q1, q2] {
        let orig = &get(base, &q).await;
        assert_eq!(orig.status, 200);
        let etag = orig.h("etag").unwrap();
        for inm in [etag.to_owned(), format!("\"nope\", {etag}")] {
            let r = get_with(base, &q, &[("if-none-match", &inm)]).await;
            assert_eq!(r.status, 304, "{q} with {inm}");
            assert_eq!(r.text, "");
            assert_eq!(r.h("electric-schema"), None);
            assert_eq!(r.h("electric-has-data"), Some("true"));
            for name in [
                "cache-control",
                "etag",
                "electric-handle",
                "electric-offset",
                "electric-up-to-date",
            ] {
                assert_eq!(r.h(name), orig.h(name), "{q}: {name}");
            }
        }
        let r = get_with(base, &q, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(r.status, 200);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// SSE (48–51)

/// Reads an SSE body until `until` holds on the text so far, or the stream ends.
async fn read_sse(resp: &mut reqwest::Response, text: &mut String, until: impl Fn(&str) -> bool) {
    while !until(text) {
        match tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("SSE stream stalled")
            .unwrap()
        {
            Some(c) => text.push_str(std::str::from_utf8(&c).unwrap()),
            None => return,
        }
    }
}

/// Splits SSE text into frames; every frame is a single-line `data: <json>` or `: keep-alive`.
#[track_caller]
fn sse_frames(text: &str) -> (Vec<Value>, usize) {
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    let (mut data, mut keepalives) = (Vec::new(), 0);
    for frame in text.split_terminator("\n\n") {
        if frame == ": keep-alive" {
            keepalives += 1;
        } else {
            let json = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"));
            assert!(!json.contains('\n'), "{frame:?}");
            data.push(serde_json::from_str(json).unwrap());
        }
    }
    (data, keepalives)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c48_to_c51_sse() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.long_poll_timeout = Duration::from_secs(2);
    config.sse_keepalive = Duration::from_millis(300);
    config.sse_timeout = Duration::from_secs(3);
    let server = Server::start(config).await;
    let base = server.base.as_str();
    let http = reqwest::Client::new();
    let cur = Cur::start(base, "table=items").await;
    let start = cur.offset.clone();

    // 48. At the latest offset: an open event stream; a commit arrives as data events then an
    //     up-to-date event; keep-alives when idle; the response ends at the SSE timeout.
    let opened = Instant::now();
    let mut resp = http
        .get(format!(
            "{base}/v1/shape?{}",
            cur.url("&live=true&live_sse=true&cursor=")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let hs = resp.headers().clone();
    assert_eq!(hs["content-type"], "text/event-stream");
    assert_eq!(hs["cache-control"], "public, max-age=59");
    assert!(is_digits(hs["electric-cursor"].to_str().unwrap()));
    assert_eq!(hs["electric-handle"], cur.handle.as_str());
    assert_eq!(hs["electric-offset"], start.as_str());
    assert!(hs.get("electric-schema").is_none());
    pg.exec("INSERT INTO items VALUES (2, 'b')").await;
    let mut text = String::new();
    read_sse(&mut resp, &mut text, |t| {
        t.contains("up-to-date") && t.ends_with("\n\n")
    })
    .await;
    let (events, _) = sse_frames(&text);
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["key"], r#""public"."items"/"2""#);
    assert_eq!(events[0]["headers"]["last"], true);
    let lsn = events[0]["headers"]["lsn"].as_str().unwrap().to_owned();
    assert_eq!(
        events[1],
        json!({"headers": {"control": "up-to-date", "global_last_seen_lsn": lsn}})
    );
    let mut rest = String::new();
    read_sse(&mut resp, &mut rest, |_| false).await;
    let lifetime = opened.elapsed();
    let (more, keepalives) = sse_frames(&rest);
    assert!(more.is_empty(), "{rest}");
    assert!(keepalives >= 1, "{rest:?}");
    assert!(
        lifetime >= Duration::from_millis(2800) && lifetime < Duration::from_secs(8),
        "ended after {lifetime:?}"
    );

    // 49. experimental_live_sse alone also selects SSE.
    let mut resp = http
        .get(format!(
            "{base}/v1/shape?table=items&offset={lsn}_0&handle={}&live=true&experimental_live_sse=true",
            cur.handle
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=59");
    pg.exec("INSERT INTO items VALUES (3, 'c')").await;
    let mut text = String::new();
    read_sse(&mut resp, &mut text, |t| {
        t.contains("up-to-date") && t.ends_with("\n\n")
    })
    .await;
    let (events, _) = sse_frames(&text);
    assert_eq!(events[0]["key"], r#""public"."items"/"3""#, "{text}");
    drop(resp);

    // 50. Pending data: the events (+ up-to-date), then the response ends at once.
    let started = Instant::now();
    let r = http
        .get(format!(
            "{base}/v1/shape?{}",
            cur.url("&live=true&live_sse=true")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = r.text().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let (events, _) = sse_frames(&body);
    let keys: Vec<&Value> = events.iter().filter_map(|e| e.get("key")).collect();
    assert_eq!(
        keys,
        vec![
            &json!(r#""public"."items"/"2""#),
            &json!(r#""public"."items"/"3""#)
        ]
    );
    assert_eq!(events.last().unwrap()["headers"]["control"], "up-to-date");

    // 51. A stale handle on an SSE request: a normal JSON 409.
    let r = get(
        base,
        "table=items&offset=0_inf&handle=123-456&live=true&live_sse=true",
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.h("content-type"), Some(JSON_CT));
    assert_eq!(r.text, MUST_REFETCH);
    assert_eq!(r.h("electric-handle"), Some(cur.handle.as_str()));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Subsets (52–54)

#[track_caller]
fn assert_subset(r: &Resp, want_ids: &[&str]) {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    assert_eq!(r.h("electric-snapshot"), Some("true"));
    for name in ["electric-handle", "electric-offset", "electric-schema"] {
        assert!(r.h(name).is_some(), "{name}");
    }
    let top = r.body.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = top.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "metadata"]);
    let meta = top["metadata"].as_object().unwrap();
    let mut keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["database_lsn", "snapshot_mark", "xip_list", "xmax", "xmin"]
    );
    for k in ["xmin", "xmax", "database_lsn"] {
        assert_digits(&meta[k]);
    }
    for x in meta["xip_list"].as_array().unwrap() {
        assert_digits(x);
    }
    let mark = meta["snapshot_mark"]
        .as_u64()
        .expect("integer snapshot_mark");
    assert!(mark < 1 << 31);
    let data = top["data"].as_array().unwrap();
    let ids: Vec<&str> = data
        .iter()
        .map(|m| m["value"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want_ids);
    for m in data {
        assert_eq!(
            m["headers"],
            json!({"operation": "insert", "relation": ["public", "items"], "snapshot_mark": mark})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c52_to_c54_subsets() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items SELECT g, 't' || g FROM generate_series(1, 5) g")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.as_str();
    let q = "table=items&offset=now&log=changes_only";

    // 52. GET subset.
    let r = get(
        base,
        &format!("{q}&subset__where=id%3E1&subset__order_by=id"),
    )
    .await;
    assert_subset(&r, &["2", "3", "4", "5"]);

    // 53. POST subset; body errors.
    let url = format!("{base}/v1/shape?{q}");
    let ct = [("content-type", "application/json")];
    let r = call(
        "POST",
        &url,
        &ct,
        Some(r#"{"where":"id > $1","params":{"1":"1"},"order_by":"id","limit":10}"#),
    )
    .await;
    assert_subset(&r, &["2", "3", "4", "5"]);
    let r = call("POST", &url, &ct, Some("[1]")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        json!({"error": "Request body must be a JSON object"})
    );
    let r = call("POST", &url, &ct, Some("{nope")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["error"], "Invalid JSON in request body",
        "{}",
        r.text
    );

    // 54. limit without order_by.
    assert_invalid(
        &get(base, &format!("{q}&subset__limit=10")).await,
        json!({"subset": {"order_by": ["order_by is required when limit or offset is present"]}}),
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Overload (56)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c56_admission_control() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.max_existing_requests = 1;
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = server.base.clone();
    let cur = Cur::start(&base, "table=items").await;
    // One idle long-poll holds the only "existing" permit for the timeout; requests meanwhile
    // are rejected (if a probe wins the permit first, the long-poll is the rejected one).
    let url = cur.url("&live=true");
    let b = base.clone();
    let parked = tokio::spawn(async move { get(&b, &url).await });
    let mut rejected = None;
    while !parked.is_finished() {
        let r = get(&base, &cur.url("")).await;
        if r.status == 503 {
            rejected = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let parked = parked.await.unwrap();
    let r = match rejected {
        Some(r) => {
            assert_eq!(parked.status, 200, "{}", parked.text);
            r
        }
        None => parked,
    };
    assert_eq!(r.status, 503, "{}", r.text);
    // Item 4 on a 503 too.
    assert_eq!(r.h("access-control-allow-origin"), Some("*"));
    assert_eq!(r.h("access-control-allow-methods"), Some(SHAPE_METHODS));
    assert_eq!(r.h("access-control-expose-headers"), Some(EXPOSE));
    assert_eq!(
        r.body,
        json!({"code": "concurrent_request_limit_exceeded",
               "message": "Concurrent existing request limit exceeded (limit: 1), please retry"})
    );
    assert_eq!(r.h("content-type"), Some(JSON_CT));
    let retry: u32 = r.h("retry-after").unwrap().parse().unwrap();
    assert!((5..=10).contains(&retry), "retry-after {retry}");
    assert_eq!(r.h("cache-control"), Some("no-store"));
    assert_eq!(r.h("surrogate-control"), Some("no-store"));
    assert_eq!(r.h("electric-internal-known-error"), Some("true"));
    // Once the permit is free again, requests pass.
    assert_eq!(get(&base, &cur.url("")).await.status, 200);
    server.stop().await;
}
