//! HTTP/1.1 framing of our own connection loop (`http::server`, `http::h1`), over raw TCP:
//! keep-alive and pipelining, request bodies (length, chunked, `Expect: 100-continue`),
//! HTTP/1.0, smuggling-shaped heads, and a client that hangs up while parked.
//!
//! Well-behaved clients (reqwest here, the Node clients in tests/e2e) cover the common path;
//! these cover what they never send. Every wait is bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Reads more bytes into `buf`; `None` on EOF, error or a stall.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = vec![0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

/// Reads one response (content-length or chunked) from `s`, keeping bytes past it in `buf`.
async fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Raw> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut raw = Raw {
        status,
        head,
        body: Vec::new(),
    };
    if status == 100 || status == 304 || status == 204 {
        return Some(raw);
    }
    if raw
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(s, buf).await?;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?, 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            raw.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                return Some(raw);
            }
        }
    }
    let len: usize = raw.header("content-length")?.parse().ok()?;
    while buf.len() < len {
        fill(s, buf).await?;
    }
    raw.body = buf.drain(..len).collect();
    Some(raw)
}

async fn setup() -> (Pg, tempfile::TempDir) {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items SELECT g, 't' || g FROM generate_series(1, 5) g")
        .await;
    (pg, tempfile::tempdir().unwrap())
}

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_pipelining_bodies_and_http10() {
    let (pg, dir) = setup().await;
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();

    // Three pipelined requests in one write: three responses, in order, on one connection.
    let mut s = connect(&base).await;
    s.write_all(
        b"GET /v1/health HTTP/1.1\r\nhost: a\r\n\r\n\
          GET /v1/shape?table=items&offset=-1 HTTP/1.1\r\nhost: a\r\n\r\n\
          HEAD /v1/shape?table=items&offset=-1 HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let health = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, br#"{"status":"active"}"#);
    assert!(health.header("date").is_some(), "{}", health.head);
    let shape = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(shape.status, 200, "{}", shape.head);
    let rows: serde_json::Value = serde_json::from_slice(&shape.body).unwrap();
    let inserts = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["headers"]["operation"] == "insert")
        .count();
    assert_eq!(inserts, 5, "{rows}");
    let head = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("electric-handle"),
        shape.header("electric-handle")
    );

    // A POSTed subset with a chunked body behind `Expect: 100-continue`, on the same connection.
    let body = r#"{"where":"id > $1","params":{"1":"3"},"order_by":"id"}"#;
    s.write_all(
        b"POST /v1/shape?table=items&offset=now&log=changes_only HTTP/1.1\r\nhost: a\r\n\
          content-type: application/json\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let go = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(go.status, 100, "{}", go.head);
    let (a, b) = body.split_at(10);
    s.write_all(
        format!(
            "{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let sub = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(sub.status, 200, "{}", String::from_utf8_lossy(&sub.body));
    let text = String::from_utf8_lossy(&sub.body);
    assert!(
        text.contains(r#""id":"4""#) && text.contains(r#""id":"5""#),
        "{text}"
    );
    assert!(!text.contains(r#""id":"3""#), "{text}");

    // `connection: close` is honoured after the response.
    s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(last.header("connection").as_deref(), Some("close"));
    assert!(closed_by_server(&mut s).await);

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut s = connect(&base).await;
    s.write_all(b"GET /v1/health HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = read_one(&mut s, &mut buf).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(closed_by_server(&mut s).await);

    // A head with both framings (a request-smuggling shape) is refused and the connection
    // closed; so is a body over the limit, before any of it is read.
    for raw in [
        &b"POST /v1/shape?table=items HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"[..],
        b"POST /v1/shape?table=items HTTP/1.1\r\nhost: a\r\ncontent-length: 999999999\r\n\r\n",
        b"POST /v1/shape?table=items HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut s = connect(&base).await;
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let r = read_one(&mut s, &mut buf).await.unwrap();
        assert!(
            matches!(r.status, 400 | 413),
            "{}: {}",
            String::from_utf8_lossy(raw),
            r.head
        );
        let msg: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(msg["message"].is_string(), "{msg}");
        assert!(closed_by_server(&mut s).await);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_while_parked_frees_its_slot() {
    let (pg, dir) = setup().await;
    let mut config = test_config(&pg, dir.path());
    config.max_existing_requests = 3;
    config.long_poll_timeout = Duration::from_secs(600);
    let server = Server::start(config).await;
    let base = server.base.clone();
    let mut f = Follower::new("table=items");
    f.sync(&base).await;
    let live = format!(
        "GET /v1/shape?table=items&handle={}&offset={}&live=true HTTP/1.1\r\nhost: a\r\n\r\n",
        f.handle.clone().unwrap(),
        f.offset
    );
    let status = |mut s: TcpStream| async move {
        let mut buf = Vec::new();
        read_one(&mut s, &mut buf).await.map(|r| r.status)
    };

    // Three parked long-polls fill the cap: a fourth is refused at once.
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&base).await;
        s.write_all(live.as_bytes()).await.unwrap();
        parked.push(s);
    }
    let mut refused = false;
    for _ in 0..600 {
        let mut s = connect(&base).await;
        s.write_all(live.as_bytes()).await.unwrap();
        // An admitted probe parks (no answer within the short wait); a refused one gets 503.
        let mut buf = Vec::new();
        if let Ok(Some(r)) =
            tokio::time::timeout(Duration::from_millis(300), read_one(&mut s, &mut buf)).await
        {
            assert_eq!(r.status, 503, "{}", r.head);
            refused = true;
            break;
        }
    }
    assert!(refused, "the fourth long-poll was never refused");

    // The parked clients hang up: their handlers are dropped and their slots freed, so new
    // long-polls are admitted again (they park, then get the next change).
    drop(parked);
    let mut admitted = Vec::new();
    for _ in 0..600 {
        let mut s = connect(&base).await;
        s.write_all(live.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        match tokio::time::timeout(Duration::from_millis(200), read_one(&mut s, &mut buf)).await {
            Err(_) => admitted.push(s),
            Ok(r) => assert_eq!(r.map(|r| r.status), Some(503)),
        }
        if admitted.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(admitted.len(), 3, "slots were not freed by the hang-ups");
    pg.exec("INSERT INTO items VALUES (6, 'wake')").await;
    for s in admitted {
        assert_eq!(status(s).await, Some(200));
    }
    server.stop().await;
}
