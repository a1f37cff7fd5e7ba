//! A minimal HTTP/1.1 client for the shape API: `GET` only, keep-alive, bodies framed by
//! `content-length` or `chunked`. The package's only full HTTP client (reqwest) is a
//! dev-dependency, which a binary cannot use, and the bench needs no more than this.
//!
//! Invariants: every call is bounded by the caller's timeout; a connection whose response was not
//! read to its end is dropped, never reused.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest response body the bench accepts (a chunk is 10 MiB by default).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Longest status or header line.
const MAX_LINE: usize = 64 * 1024;

/// One response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response's last message is `up-to-date`.
    pub fn up_to_date(&self) -> bool {
        let tail = &self.body[self.body.len().saturating_sub(512)..];
        memchr::memmem::find(tail, b"\"control\":\"up-to-date\"").is_some()
    }

    /// The response carries at least one row change.
    pub fn has_change(&self) -> bool {
        memchr::memmem::find(&self.body, b"\"operation\"").is_some()
    }
}

/// Percent-encodes a query-parameter value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A keep-alive connection to one server (reconnects when the server closed it).
pub struct Conn {
    addr: SocketAddr,
    buffer: usize,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn::with_buffer(addr, 64 * 1024)
    }

    /// A connection with a read buffer of `buffer` bytes (small for thousands of parked ones).
    pub fn with_buffer(addr: SocketAddr, buffer: usize) -> Conn {
        Conn {
            addr,
            buffer,
            stream: None,
        }
    }

    /// Writes a `GET` request (connecting first if needed); read the answer with [`Conn::recv`].
    pub async fn send(&mut self, path: &str) -> anyhow::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::with_capacity(self.buffer, s));
        }
        let req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.addr);
        let Some(s) = self.stream.as_mut() else {
            bail!("no connection")
        };
        if let Err(e) = s.get_mut().write_all(req.as_bytes()).await {
            self.stream = None;
            return Err(e.into());
        }
        Ok(())
    }

    /// Reads one response to the request sent last.
    pub async fn recv(&mut self) -> anyhow::Result<Resp> {
        let Some(s) = self.stream.as_mut() else {
            bail!("no request in flight")
        };
        match read_response(s).await {
            Ok((resp, keep)) => {
                if !keep {
                    self.stream = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// `send` + `recv` within `limit`; a stale keep-alive connection is retried once.
    pub async fn get(&mut self, path: &str, limit: Duration) -> anyhow::Result<Resp> {
        let reused = self.stream.is_some();
        let first = tokio::time::timeout(limit, async {
            self.send(path).await?;
            self.recv().await
        })
        .await;
        match first {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) if reused => {
                self.stream = None;
                tokio::time::timeout(limit, async {
                    self.send(path).await?;
                    self.recv().await
                })
                .await
                .with_context(|| format!("GET {path} timed out after {limit:?}"))?
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.stream = None;
                bail!("GET {path} timed out after {limit:?}")
            }
        }
    }
}

async fn read_line(s: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = (&mut *s).take(MAX_LINE as u64).read_line(&mut line).await?;
    if n == 0 {
        bail!("connection closed by the server");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Parses one response; the flag says whether the connection may be reused.
async fn read_response(s: &mut BufReader<TcpStream>) -> anyhow::Result<(Resp, bool)> {
    let status_line = read_line(s).await?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(s).await?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        if headers.len() > 200 {
            bail!("too many headers");
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut keep = !get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size_line = read_line(s).await?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(s).await?.is_empty() {}
                break;
            }
            if body.len() + size > MAX_BODY {
                bail!("response body over {MAX_BODY} bytes");
            }
            let start = body.len();
            body.resize(start + size, 0);
            s.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            s.read_exact(&mut crlf).await?;
        }
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        if len > MAX_BODY {
            bail!("response body over {MAX_BODY} bytes");
        }
        body.resize(len, 0);
        s.read_exact(&mut body).await?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        (&mut *s)
            .take(MAX_BODY as u64)
            .read_to_end(&mut body)
            .await?;
        keep = false;
    }
    Ok((
        Resp {
            status,
            headers,
            body,
        },
        keep,
    ))
}
