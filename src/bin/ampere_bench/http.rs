//! A minimal HTTP/1.1 client for the shape API: `GET` only, keep-alive, bodies framed by
//! `content-length` or `chunked`. The package's only full HTTP client (reqwest) is a
//! dev-dependency, which a binary cannot use, and the bench needs no more than this.
//!
//! The client is part of what the fan-out workload measures, so it is cheap: a response is read
//! into one buffer and framed by pure functions over bytes ([`parse_head`], [`next_chunk`]), with
//! no allocation per header line; a parked connection holds no read buffer until it reads.
//!
//! Invariants: every call is bounded by the caller's timeout; a connection whose response was not
//! read to its end is dropped, never reused; bytes read past one response are kept for the next.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body the bench accepts (a chunk is 10 MiB by default).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Longest status line plus headers.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4 * 1024;
/// Most header lines in one response.
const MAX_HEADERS: usize = 200;

/// One response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// The header lines (the status line and the final empty line excluded), `\r\n`-separated.
    headers: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_lines(&self.headers)
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The response's last message is `up-to-date`.
    pub fn up_to_date(&self) -> bool {
        let tail = &self.body[self.body.len().saturating_sub(512)..];
        memchr::memmem::find(tail, b"\"control\":\"up-to-date\"").is_some()
    }

    /// The response carries at least one row change.
    pub fn has_change(&self) -> bool {
        carries_change(&self.body)
    }
}

/// Whether a response body holds at least one row change (a message with an `operation`).
fn carries_change(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"operation\"").is_some()
}

/// `(name, value)` of each header line, both trimmed.
fn header_lines(headers: &str) -> impl Iterator<Item = (&str, &str)> {
    headers
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// Percent-encodes a query-parameter value.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A keep-alive connection to one server (reconnects when the server closed it).
pub struct Conn {
    addr: SocketAddr,
    /// How much to grow the read buffer by at a time.
    buffer: usize,
    stream: Option<TcpStream>,
    /// Bytes read past the last response (empty and unallocated between requests, normally).
    pending: Vec<u8>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn::with_buffer(addr, 64 * 1024)
    }

    /// A connection reading `buffer` bytes at a time (small for thousands of parked ones).
    pub fn with_buffer(addr: SocketAddr, buffer: usize) -> Conn {
        Conn {
            addr,
            buffer: buffer.max(1024),
            stream: None,
            pending: Vec::new(),
        }
    }

    /// Writes a `GET` request (connecting first if needed); read the answer with [`Conn::recv`].
    pub async fn send(&mut self, path: &str) -> anyhow::Result<()> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
            self.pending = Vec::new();
        }
        let req = format!("GET {path} HTTP/1.1\r\nhost: {}\r\n\r\n", self.addr);
        let Some(s) = self.stream.as_mut() else {
            bail!("no connection")
        };
        if let Err(e) = s.write_all(req.as_bytes()).await {
            self.stream = None;
            return Err(e.into());
        }
        Ok(())
    }

    /// Reads one response to the request sent last.
    pub async fn recv(&mut self) -> anyhow::Result<Resp> {
        Ok(self.read(false).await?.0)
    }

    /// Like [`Conn::recv`], also returning the response exactly as it came off the wire (status
    /// line, headers, framed body).
    pub async fn recv_wire(&mut self) -> anyhow::Result<(Resp, Vec<u8>)> {
        let (resp, wire) = self.read(true).await?;
        Ok((resp, wire.unwrap_or_default()))
    }

    /// Reads one response and says whether it is a `200` carrying a change, which is all the
    /// fan-out's readers need. A response that arrives whole in one read of at most
    /// [`QUICK_READ`] bytes (a live response, normally) is judged from a stack buffer: no heap
    /// allocation, so 10k readers do not time the allocator growing a fresh heap for their
    /// buffers inside the window they measure. Anything else goes through [`Conn::recv`].
    pub async fn recv_delivery(&mut self) -> anyhow::Result<bool> {
        if self.pending.is_empty() {
            let Some(s) = self.stream.as_ref() else {
                bail!("no request in flight")
            };
            let quick = loop {
                s.readable().await?;
                match quick_read(s) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        self.stream = None;
                        return Err(e.into());
                    }
                    Ok(q) => break q,
                }
            };
            match quick {
                Quick::Whole { delivered } => return Ok(delivered),
                Quick::Closed => {
                    self.stream = None;
                    bail!("connection closed by the server");
                }
                // Larger or split: the bytes so far start the general path.
                Quick::Part(bytes) => self.pending = bytes,
            }
        }
        let r = self.recv().await?;
        Ok(r.status == 200 && r.has_change())
    }

    async fn read(&mut self, wire: bool) -> anyhow::Result<(Resp, Option<Vec<u8>>)> {
        let Some(s) = self.stream.as_mut() else {
            bail!("no request in flight")
        };
        match read_response(s, std::mem::take(&mut self.pending), self.buffer, wire).await {
            Ok(r) => {
                if r.keep {
                    self.pending = r.rest;
                } else {
                    self.stream = None;
                }
                Ok((r.resp, r.wire))
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

/// Bytes [`Conn::recv_delivery`] reads on the stack.
const QUICK_READ: usize = 4096;

/// What one stack-buffer read found.
enum Quick {
    /// One whole `content-length` response and nothing after it: whether it is a `200` with a
    /// change.
    Whole {
        delivered: bool,
    },
    /// Anything else; the bytes read.
    Part(Vec<u8>),
    Closed,
}

/// One non-blocking read into a stack buffer. Not async, so the buffer is never part of a
/// reader's future.
fn quick_read(s: &TcpStream) -> std::io::Result<Quick> {
    let mut chunk = [0u8; QUICK_READ];
    let n = s.try_read(&mut chunk)?;
    let bytes = &chunk[..n];
    if n == 0 {
        return Ok(Quick::Closed);
    }
    Ok(match whole_delivery(bytes) {
        Some(delivered) => Quick::Whole { delivered },
        None => Quick::Part(bytes.to_vec()),
    })
}

/// When `bytes` are exactly one keep-alive `content-length` response: whether it is a `200`
/// carrying a change. `None` for anything else (incomplete, chunked, followed by more bytes).
fn whole_delivery(bytes: &[u8]) -> Option<bool> {
    let head = parse_head(bytes).ok()??;
    let Framing::Length(len) = head.framing else {
        return None;
    };
    if !head.keep || head.len.checked_add(len) != Some(bytes.len()) {
        return None;
    }
    let body = &bytes[head.len..];
    Some(head.status == 200 && carries_change(body))
}

/// One response read off a connection.
struct Read {
    resp: Resp,
    /// Whether the connection may be reused.
    keep: bool,
    /// Bytes read past the response.
    rest: Vec<u8>,
    /// The response's own bytes, when asked for.
    wire: Option<Vec<u8>>,
}

/// Appends at least one byte read from `s` to `buf`, growing it by `step` when it is nearly full.
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, step: usize) -> anyhow::Result<()> {
    if buf.capacity() - buf.len() < step / 4 {
        buf.reserve(step);
    }
    if s.read_buf(buf).await? == 0 {
        bail!("connection closed by the server");
    }
    Ok(())
}

/// Reads one response; `buf` holds the bytes already read past the previous one.
async fn read_response(
    s: &mut TcpStream,
    mut buf: Vec<u8>,
    step: usize,
    wire: bool,
) -> anyhow::Result<Read> {
    let head = loop {
        if let Some(h) = parse_head(&buf)? {
            break h;
        }
        fill(s, &mut buf, step).await?;
    };
    // `buf` keeps the head; the body is read into `rest`, which ends up holding what follows.
    let mut rest = buf.split_off(head.len);
    let mut keep = head.keep;
    let (body, end) = match head.framing {
        Framing::Length(len) => {
            if len > MAX_BODY {
                bail!("response body over {MAX_BODY} bytes");
            }
            rest.reserve(len.saturating_sub(rest.len()));
            while rest.len() < len {
                fill(s, &mut rest, step).await?;
            }
            let after = rest.split_off(len);
            (std::mem::replace(&mut rest, after), len)
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            let mut at = 0;
            loop {
                match next_chunk(&rest[at..])? {
                    Chunk::Incomplete => fill(s, &mut rest, step).await?,
                    Chunk::Data { start, len } => {
                        if body.len() + len > MAX_BODY {
                            bail!("response body over {MAX_BODY} bytes");
                        }
                        body.extend_from_slice(&rest[at + start..at + start + len]);
                        at += start + len + 2;
                    }
                    Chunk::Last { len } => {
                        at += len;
                        break;
                    }
                }
            }
            (body, at)
        }
        Framing::UntilClose => {
            keep = false;
            while s.read_buf(&mut rest).await? > 0 {
                if rest.len() > MAX_BODY {
                    bail!("response body over {MAX_BODY} bytes");
                }
                if rest.capacity() - rest.len() < step / 4 {
                    rest.reserve(step);
                }
            }
            let len = rest.len();
            (std::mem::take(&mut rest), len)
        }
        Framing::Empty => (Vec::new(), 0),
    };
    let wire = wire.then(|| {
        let mut w = buf.clone();
        match head.framing {
            // `rest` was split from the body or drained into it: rebuild from the framing.
            Framing::Length(_) | Framing::UntilClose => w.extend_from_slice(&body),
            Framing::Chunked => w.extend_from_slice(&rest[..end]),
            Framing::Empty => {}
        }
        w
    });
    if matches!(head.framing, Framing::Chunked) {
        rest.drain(..end);
    }
    let headers = String::from_utf8(buf[head.status_line..head.len - 4].to_vec())
        .context("response headers are not UTF-8")?;
    Ok(Read {
        resp: Resp {
            status: head.status,
            headers,
            body,
        },
        keep,
        rest,
        wire,
    })
}

/// How a response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body runs to the end of the connection.
    UntilClose,
    /// 1xx, 204 and 304 have no body.
    Empty,
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the status line with its `\r\n`.
    status_line: usize,
    /// Bytes of the whole head, up to and including the empty line.
    len: usize,
    framing: Framing,
    keep: bool,
}

/// Parses the head at the start of `buf`; `None` until its empty line has arrived.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            bail!("response head over {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    if end + 4 > MAX_HEAD {
        bail!("response head over {MAX_HEAD} bytes");
    }
    let text = std::str::from_utf8(&buf[..end]).context("response head is not UTF-8")?;
    let (status_line, headers) = text.split_once("\r\n").unwrap_or((text, ""));
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut keep = true;
    let mut chunked = false;
    let mut length = None;
    for (i, (k, v)) in header_lines(headers).enumerate() {
        if i >= MAX_HEADERS {
            bail!("too many headers");
        }
        if k.eq_ignore_ascii_case("connection") {
            keep = !v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().context("bad content-length")?);
        }
    }
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        status_line: if headers.is_empty() {
            end
        } else {
            status_line.len() + 2
        },
        len: end + 4,
        framing,
        keep,
    }))
}

/// The next piece of a chunked body.
#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    /// More bytes are needed.
    Incomplete,
    /// `len` data bytes at `start`, followed by `\r\n`.
    Data { start: usize, len: usize },
    /// The last chunk, its trailers and the empty line: `len` bytes in all.
    Last { len: usize },
}

/// Frames the chunk at the start of `buf` (a size line, data, `\r\n`; or the last chunk).
fn next_chunk(buf: &[u8]) -> anyhow::Result<Chunk> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        if buf.len() > MAX_LINE {
            bail!("chunk-size line over {MAX_LINE} bytes");
        }
        return Ok(Chunk::Incomplete);
    };
    let line = std::str::from_utf8(&buf[..eol]).unwrap_or("");
    let hex = line.split(';').next().unwrap_or("").trim();
    let len = usize::from_str_radix(hex, 16).with_context(|| format!("bad chunk size {line:?}"))?;
    let start = eol + 2;
    if len == 0 {
        // Trailer lines, then the empty line.
        let mut at = start;
        loop {
            let Some(n) = memchr::memmem::find(&buf[at..], b"\r\n") else {
                if buf.len() - at > MAX_LINE {
                    bail!("trailer line over {MAX_LINE} bytes");
                }
                return Ok(Chunk::Incomplete);
            };
            at += n + 2;
            if n == 0 {
                return Ok(Chunk::Last { len: at });
            }
        }
    }
    let Some(end) = start.checked_add(len).and_then(|e| e.checked_add(2)) else {
        bail!("bad chunk size {line:?}");
    };
    if buf.len() < end {
        return Ok(Chunk::Incomplete);
    }
    if &buf[end - 2..end] != b"\r\n" {
        bail!("chunk of {len} bytes not followed by CRLF");
    }
    Ok(Chunk::Data { start, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_judged_only_from_one_whole_response() {
        let change = b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n[{\"operation\":1}]";
        assert_eq!(whole_delivery(change), Some(true));
        let no_change = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(whole_delivery(no_change), Some(false));
        let conflict = b"HTTP/1.1 409 Conflict\r\ncontent-length: 17\r\n\r\n[{\"operation\":1}]";
        assert_eq!(whole_delivery(conflict), Some(false));
        // Short, long, chunked or closing: the general path reads it.
        assert_eq!(whole_delivery(&change[..change.len() - 1]), None);
        assert_eq!(whole_delivery(&[&change[..], b"H"].concat()), None);
        assert_eq!(
            whole_delivery(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"),
            None
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(whole_delivery(chunked), None);
        let closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n[]";
        assert_eq!(whole_delivery(closing), None);
    }

    #[test]
    fn a_head_is_framed_once_its_empty_line_arrives() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nElectric-Offset: 0_0\r\n\r\nhello";
        assert_eq!(parse_head(&r[..20]).unwrap(), None);
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep);
        assert_eq!(&r[h.len..], b"hello");
        assert_eq!(
            &r[h.status_line..h.len - 4],
            b"content-length: 5\r\nElectric-Offset: 0_0"
        );
    }

    #[test]
    fn a_head_without_length_runs_to_close_unless_it_has_no_body() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep);
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.status_line, h.len), (Framing::Empty, 23, 27));
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn chunks_are_framed_piece_by_piece() {
        let b = b"5;x=y\r\nhello\r\n0\r\ntrailer: 1\r\n\r\nNEXT";
        assert_eq!(next_chunk(&b[..3]).unwrap(), Chunk::Incomplete);
        assert_eq!(next_chunk(&b[..12]).unwrap(), Chunk::Incomplete);
        assert_eq!(next_chunk(b).unwrap(), Chunk::Data { start: 7, len: 5 });
        let last = &b[14..];
        assert_eq!(next_chunk(&last[..5]).unwrap(), Chunk::Incomplete);
        assert_eq!(next_chunk(last).unwrap(), Chunk::Last { len: 17 });
        assert!(next_chunk(b"zz\r\n").is_err());
        assert!(next_chunk(b"2\r\nabXY").is_err());
        assert!(next_chunk(b"ffffffffffffffff\r\n").is_err());
    }
}
