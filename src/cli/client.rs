//! A small HTTP/1.1 client for the operator subcommands: one request per connection to the
//! running service's admin API (or `/v1/health`), bounded by a timeout, failing with one line
//! that says what went wrong and where ("cannot reach Ampere at …: connection refused").
//!
//! Plain `http://` only: the admin API is meant for the service's own network (behind a TLS
//! proxy, point `--url` at the service directly). The secret travels as `Authorization: Bearer`,
//! never in the URL.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Answers larger than this are refused (a shape list is ~400 bytes per shape).
const MAX_BODY: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid service URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach Ampere at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Ampere at {url} did not answer within {}", humantime(*.timeout))]
    Timeout { url: String, timeout: Duration },
    #[error("Ampere at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Body { url: String, reason: String },
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Where the service is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Scheme, host and port, with any path prefix (no trailing slash).
    base: url::Url,
    secret: Option<String>,
    timeout: Duration,
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Client {
    pub fn new(
        base: &str,
        secret: Option<String>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let bad = |reason: &str| ClientError::Url {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "https is not supported: use the service's http address",
                ));
            }
            _ => return Err(bad("expected http://host:port")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("missing host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment expected"));
        }
        Ok(Client {
            base: url,
            secret: secret.filter(|s| !s.is_empty()),
            timeout,
        })
    }

    /// The base URL as given (for messages).
    pub fn base(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// `path` (absolute, e.g. `/v1/admin/shapes`) under the base URL's path.
    fn target(&self, path: &str) -> String {
        format!("{}{path}", self.base.path().trim_end_matches('/'))
    }

    /// One request; any status is returned (see [`Client::expect_json`] for the usual checks).
    pub async fn request(&self, method: Method, path: &str) -> Result<Reply, ClientError> {
        let url = format!("{}{path}", self.base());
        match tokio::time::timeout(self.timeout, self.exchange(method, path, &url)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                url,
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(&self, method: Method, path: &str, url: &str) -> Result<Reply, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: self.base(),
            reason,
        };
        let host = self.base.host_str().unwrap_or("localhost");
        // IPv6 literals come bracketed from the URL; the socket API wants them bare.
        let connect_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.base.port_or_known_default().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((connect_host, port))
            .await
            .map_err(|e| unreachable(io_reason(&e)))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let authority = match self.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(self.target(path))
            .header("host", authority)
            .header("accept", "application/json")
            .header(
                "user-agent",
                concat!("ampere-cli/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &self.secret {
            req = req.header("authorization", format!("Bearer {secret}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Url {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(hyper_reason(&e)))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Body {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// A request whose answer must be `2xx` with a JSON body of type `T`. Other statuses become
    /// [`ClientError::Status`] with the service's message (or a hint for 401/404).
    pub async fn expect_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base());
        let reply = self.request(method, path).await?;
        if !reply.status.is_success() {
            return Err(ClientError::Status {
                url,
                status: reply.status,
                message: status_message(reply.status, &reply.body, self.secret.is_some()),
            });
        }
        serde_json::from_slice(&reply.body).map_err(|e| ClientError::Body {
            url,
            reason: e.to_string(),
        })
    }
}

/// The service's `message`, else the body's first line, with a hint for common mistakes.
fn status_message(status: StatusCode, body: &[u8], sent_secret: bool) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body)
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect()
        });
    let hint = match status {
        StatusCode::UNAUTHORIZED if !sent_secret => " (set --secret or ELECTRIC_SECRET)",
        StatusCode::UNAUTHORIZED => " (the secret does not match the service's ELECTRIC_SECRET)",
        StatusCode::NOT_FOUND if text == "Not found" => {
            " (is this an Ampere service? the admin API is an Ampere extension)"
        }
        _ => "",
    };
    format!("{text}{hint}")
}

/// "connection refused" rather than "Connection refused (os error 111)".
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::TimedOut => "connection timed out".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => {
            let text = e.to_string();
            // Resolver failures ("failed to lookup address information: …").
            match text.split_once(" (os error") {
                Some((msg, _)) => msg.to_owned(),
                None => text,
            }
        }
    }
}

fn hyper_reason(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_closed() {
        "the connection closed before an answer".into()
    } else {
        e.to_string()
    }
}

/// The default service URL: `http://127.0.0.1:$ELECTRIC_PORT`, port 3000 when unset.
pub fn default_url(electric_port: Option<&str>) -> String {
    let port = electric_port
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(3000);
    format!("http://127.0.0.1:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_up_front() {
        let t = Duration::from_secs(1);
        assert!(Client::new("http://127.0.0.1:3000", None, t).is_ok());
        let c = Client::new("http://host:1/electric/", None, t).unwrap();
        assert_eq!(c.target("/v1/health"), "/electric/v1/health");
        assert_eq!(c.base(), "http://host:1/electric");
        for bad in [
            "127.0.0.1:3000",
            "https://h",
            "ftp://h",
            "http://h/?x=1",
            "nope",
        ] {
            let e = Client::new(bad, None, t).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid service URL"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn default_url_follows_electric_port() {
        assert_eq!(default_url(None), "http://127.0.0.1:3000");
        assert_eq!(default_url(Some("4100")), "http://127.0.0.1:4100");
        assert_eq!(default_url(Some("nonsense")), "http://127.0.0.1:3000");
    }

    #[test]
    fn status_messages_carry_a_hint() {
        let body = br#"{"message":"Unauthorized - Invalid API secret"}"#;
        assert_eq!(
            status_message(StatusCode::UNAUTHORIZED, body, false),
            "Unauthorized - Invalid API secret (set --secret or ELECTRIC_SECRET)"
        );
        assert!(status_message(StatusCode::NOT_FOUND, b"Not found", false).contains("Ampere"));
        assert_eq!(
            status_message(StatusCode::BAD_GATEWAY, b"<html>\nbad", false),
            "<html>"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_one_clear_line() {
        // Bind then drop: the port is (almost certainly) closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let e = c.request(Method::GET, "/v1/health").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot reach Ampere at http://127.0.0.1:{port}: connection refused")
        );
    }
}
