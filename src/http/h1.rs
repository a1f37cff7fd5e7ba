//! HTTP/1.1 message framing: request heads in, response heads out, chunked bodies decoded.
//!
//! Pure and total: no I/O, no panics on any input (property-tested below), every limit checked
//! before anything is allocated for it. [`super::server`] owns the sockets and calls in here.
//!
//! Why our own framing rather than hyper's server: hyper allocates two fixed 8 KiB buffers for
//! every connection and keeps them for its whole life, so 10k parked long-polls cost 16 KiB each
//! before any request state. Here a parked connection holds no buffer at all: the head is parsed
//! from a stack buffer into an owned [`http::Request`], and the read buffer exists only while a
//! head or body is arriving.
//!
//! Rules kept (RFC 9112): `Transfer-Encoding` must end in `chunked` and may not come with
//! `Content-Length` (a request smuggling vector), `Content-Length` must be one decimal value,
//! HTTP/1.0 closes unless it asks for keep-alive, `Connection: close` closes after the response.

use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

/// Most header lines a request may carry (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// Why a request head was refused; each maps to the status the client gets before we close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request header fields too large")]
    TooLarge,
    #[error("request URI too long")]
    UriTooLong,
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            HeadError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub request: Request<()>,
    pub framing: BodyFraming,
    /// The client may send more requests on this connection after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for our go-ahead before sending the body.
    pub expect_continue: bool,
}

/// Parses one request head from the front of `buf`: `Ok(None)` while it is incomplete,
/// `Ok(Some((head, consumed)))` once the blank line is in.
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed("invalid request head")),
    };
    let method = req
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(HeadError::Malformed("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let target = req.path.unwrap_or("");
    // `http::Uri` holds at most u16::MAX - 1 bytes; longer targets are refused as such.
    if target.len() >= usize::from(u16::MAX) {
        return Err(HeadError::UriTooLong);
    }
    let uri: Uri = target
        .parse()
        .map_err(|_| HeadError::Malformed("invalid request target"))?;

    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        if name == CONTENT_LENGTH {
            let n = parse_length(h.value).ok_or(HeadError::Malformed("invalid content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting content-length"));
            }
            length = Some(n);
        } else if name == TRANSFER_ENCODING {
            transfer_coding = true;
            // Only the last coding decides the framing, and it must be `chunked`.
            chunked = last_token(h.value).is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name == CONNECTION {
            for t in tokens(h.value) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == axum::http::header::EXPECT {
            expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    let framing = match (transfer_coding, length) {
        (true, Some(_)) => {
            return Err(HeadError::Malformed(
                "both transfer-encoding and content-length",
            ));
        }
        (true, None) if chunked && version == Version::HTTP_11 => BodyFraming::Chunked,
        (true, None) => return Err(HeadError::UnsupportedCoding),
        (false, Some(0) | None) => BodyFraming::None,
        (false, Some(n)) => BodyFraming::Length(n),
    };
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive_token);
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some((
        RequestHead {
            request,
            framing,
            keep_alive,
            expect_continue: expect_continue && framing != BodyFraming::None,
        },
        consumed,
    )))
}

/// A `Content-Length` value: ASCII digits only (no sign, no spaces inside), no overflow.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Comma-separated tokens of a header value, trimmed.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn last_token(v: &[u8]) -> Option<&[u8]> {
    tokens(v).last()
}

/// Incremental `chunked` body decoder: feed it bytes as they arrive.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line (parsed whole by httparse once its CRLF is in).
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to the empty line.
    Trailers,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunked body")]
    Malformed,
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

/// Longest chunk-size or trailer line we wait for.
const MAX_CHUNK_LINE: usize = 4096;

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `limit` bytes.
    pub fn new(limit: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            limit,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input` into `out`; returns how many bytes of `input` were used. Bytes left
    /// over are an incomplete line (feed them again with more) or, once done, the next request.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, size))) => {
                        at += n;
                        self.state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            if (out.len() as u64).saturating_add(size) > self.limit as u64 {
                                return Err(ChunkError::TooLarge(self.limit));
                            }
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if rest.len() < MAX_CHUNK_LINE => return Ok(at),
                    _ => return Err(ChunkError::Malformed),
                },
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::Malformed);
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => match memchr::memmem::find(rest, b"\r\n") {
                    Some(0) => {
                        at += 2;
                        self.state = ChunkState::Done;
                    }
                    Some(n) => at += n + 2,
                    None if rest.len() < MAX_CHUNK_LINE => return Ok(at),
                    None => return Err(ChunkError::Malformed),
                },
            }
        }
    }
}

/// The response's body delimitation on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body may follow (1xx, 204, 304, a HEAD response): no length header is added unless the
    /// handler set one.
    Bodiless,
    Length(u64),
    Chunked,
    /// Length unknown and the client cannot take chunks (HTTP/1.0): the body ends at close.
    UntilClose,
}

/// Decides the framing of a response to `method` / `version` from its status and body size.
pub fn response_framing(
    method: &Method,
    version: Version,
    status: StatusCode,
    exact_len: Option<u64>,
) -> ResponseFraming {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return ResponseFraming::Bodiless;
    }
    match exact_len {
        // A HEAD response announces the length it would have had (ours empties the body).
        Some(n) => ResponseFraming::Length(n),
        None if *method == Method::HEAD => ResponseFraming::Bodiless,
        None if version == Version::HTTP_11 => ResponseFraming::Chunked,
        None => ResponseFraming::UntilClose,
    }
}

/// Appends a response head: status line, the handler's headers, then the framing, `date` and
/// `connection` headers the connection decides.
pub fn encode_response_head(
    status: StatusCode,
    headers: &HeaderMap,
    framing: ResponseFraming,
    keep_alive: bool,
    date: &str,
    out: &mut Vec<u8>,
) {
    status_line(status, out);
    for (name, value) in headers {
        // Framing is ours to decide; a handler's `connection` is kept unless we must close.
        if name == CONTENT_LENGTH
            || name == TRANSFER_ENCODING
            || (name == CONNECTION && !keep_alive)
        {
            continue;
        }
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let date = (!headers.contains_key(DATE)).then_some(date);
    end_head(framing, keep_alive, date, out);
}

fn status_line(status: StatusCode, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The headers the connection decides (framing, `date` unless the handler set one, `connection`),
/// then the blank line.
fn end_head(framing: ResponseFraming, keep_alive: bool, date: Option<&str>, out: &mut Vec<u8>) {
    match framing {
        ResponseFraming::Length(n) => {
            header(out, b"content-length", itoa_u64(n).as_bytes());
        }
        ResponseFraming::Chunked => header(out, b"transfer-encoding", b"chunked"),
        ResponseFraming::Bodiless | ResponseFraming::UntilClose => {}
    }
    if let Some(date) = date {
        header(out, b"date", date.as_bytes());
    }
    if !keep_alive {
        header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response whose head is written as HTTP/1.1 text while it is built: one buffer, where a
/// `HeaderMap` costs an allocation per dynamic value plus its tables. For the response one write
/// sends to each of thousands of woken long-polls. The handler writes the status line and its
/// headers; the connection appends framing, `date` and `connection` ([`Self::into_wire`]).
///
/// A response many requests get alike (one write's long-polls at the same offset) is built
/// once and [`Self::freeze`]d; each request then gets [`Self::from_shared`]: the frozen head and
/// body, shared, and a head of its own for the headers that differ per request (request id,
/// CORS origin), written after the shared lines.
#[derive(Debug)]
pub struct Encoded {
    status: StatusCode,
    /// The status line and the shared header lines, when built from a [`Frozen`] response.
    shared: Option<std::sync::Arc<Frozen>>,
    /// This response's own lines: the status line and every header, or (with `shared`) the
    /// header lines after the shared ones.
    head: Vec<u8>,
    body: bytes::Bytes,
}

/// A built [`Encoded`] response, kept to be sent to many requests ([`Encoded::from_shared`]).
#[derive(Debug)]
pub struct Frozen {
    status: StatusCode,
    /// The status line and header lines.
    head: Box<[u8]>,
    body: bytes::Bytes,
}

impl Frozen {
    /// Bytes held: what a cache of frozen responses counts against its budget.
    pub fn size(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

/// The response on the wire: up to three byte runs written in order (shared head lines, own
/// head lines with the connection's, body).
#[derive(Debug)]
pub struct Wire {
    shared: Option<std::sync::Arc<Frozen>>,
    head: Vec<u8>,
    body: bytes::Bytes,
    pub framing: ResponseFraming,
}

impl Wire {
    /// The byte runs to write, in order; the body only when `with_body`.
    pub fn parts(&self, with_body: bool) -> [&[u8]; 3] {
        let shared = self.shared.as_deref().map_or(&[][..], |f| &f.head[..]);
        let body = if with_body { &self.body[..] } else { &[] };
        [shared, &self.head, body]
    }

    /// The whole head (tests).
    #[cfg(test)]
    fn head(&self) -> Vec<u8> {
        let [shared, own, _] = self.parts(false);
        [shared, own].concat()
    }
}

/// Own head bytes an [`Encoded`] from a [`Frozen`] reserves: the per-request headers and the
/// connection's take about 300.
const OWN_HEAD: usize = 512;

/// Head bytes an [`Encoded`] reserves: a live log response's head is about 800 with the
/// connection's headers. At most glibc's per-thread cache limit (1,032): a larger block, or a
/// regrowth past it, goes to the shared heap, whose path also consolidates free chunks (seen
/// at several percent of a fan-out's CPU).
const ENCODED_HEAD: usize = 1024;

impl Encoded {
    pub fn new(status: StatusCode, body: bytes::Bytes) -> Encoded {
        let mut head = Vec::with_capacity(ENCODED_HEAD);
        status_line(status, &mut head);
        Encoded {
            status,
            shared: None,
            head,
            body,
        }
    }

    /// This response, kept to be sent again ([`Self::from_shared`]). The lines of a head that was
    /// itself shared are joined into one.
    pub fn freeze(self) -> std::sync::Arc<Frozen> {
        let Encoded {
            status,
            shared,
            head,
            body,
        } = self;
        let head = match shared {
            Some(f) => [&f.head[..], &head].concat().into_boxed_slice(),
            None => head.into_boxed_slice(),
        };
        std::sync::Arc::new(Frozen { status, head, body })
    }

    /// A response with `frozen`'s status, header lines and body (shared, not copied); headers
    /// added to it go after those lines, in its own head.
    pub fn from_shared(frozen: &std::sync::Arc<Frozen>) -> Encoded {
        Encoded {
            status: frozen.status,
            shared: Some(frozen.clone()),
            head: Vec::with_capacity(OWN_HEAD),
            body: frozen.body.clone(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn body_len(&self) -> u64 {
        self.body.len() as u64
    }

    /// Appends a header line. A value with a control byte other than tab (CR or LF would end
    /// the line) is dropped, `HeaderValue::from_str`'s rule; framing, `date` and `connection`
    /// are the connection's and are dropped, as [`encode_response_head`] drops them from a
    /// `HeaderMap`.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f))
        {
            return;
        }
        let owned = [CONTENT_LENGTH, TRANSFER_ENCODING, DATE, CONNECTION];
        // Lengths first: a response writes a dozen headers, and few names share a length.
        if owned
            .iter()
            .any(|o| o.as_str().len() == name.len() && o.as_str().eq_ignore_ascii_case(name))
        {
            return;
        }
        self.head.reserve(name.len() + value.len() + 4);
        header(&mut self.head, name.as_bytes(), value);
    }

    /// Whether a header line named `name` was written.
    #[cfg(test)]
    fn contains(&self, name: &str) -> bool {
        let shared = self.shared.as_deref().map_or(&[][..], |f| &f.head[..]);
        head_lines(&[shared, &self.head].concat())
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// The same response as a `Response` (the rare paths that edit headers, and tests).
    pub fn into_response(self) -> axum::http::Response<axum::body::Body> {
        let Encoded {
            status,
            shared,
            head,
            body,
        } = self;
        let lines = match shared {
            Some(f) => [&f.head[..], &head].concat(),
            None => head,
        };
        let mut r = axum::http::Response::new(axum::body::Body::from(body));
        *r.status_mut() = status;
        for (name, value) in head_lines(&lines) {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                r.headers_mut().append(n, v);
            }
        }
        r
    }

    /// The finished response to `method`/`version`.
    pub fn into_wire(
        self,
        method: &Method,
        version: Version,
        keep_alive: bool,
        date: &str,
    ) -> Wire {
        let Encoded {
            status,
            shared,
            mut head,
            body,
        } = self;
        let framing = response_framing(method, version, status, Some(body.len() as u64));
        end_head(framing, keep_alive, Some(date), &mut head);
        Wire {
            shared,
            head,
            body,
            framing,
        }
    }
}

/// The header lines of a head [`Encoded`] wrote (after its status line), as (name, value).
fn head_lines(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        Some((name, value.strip_prefix(b" ").unwrap_or(value)))
    })
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n` without a `String` allocation.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_u64(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// The head of a chunk of `len` bytes.
pub fn chunk_head(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
}

/// The last chunk (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A response the connection writes itself (the request never reached a handler): Electric's
/// error body shape, then close.
pub fn error_response(status: StatusCode, message: &str, date: &str) -> Vec<u8> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(super::response::JSON),
    );
    headers.insert(
        HeaderName::from_static("electric-server"),
        HeaderValue::from_static(super::response::SERVER),
    );
    let mut out = Vec::with_capacity(256 + body.len());
    encode_response_head(
        status,
        &headers,
        ResponseFraming::Length(body.len() as u64),
        false,
        date,
        &mut out,
    );
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(raw)
    }

    fn head(raw: &[u8]) -> RequestHead {
        parse(raw).unwrap().unwrap().0
    }

    #[test]
    fn a_simple_get_parses_with_keep_alive() {
        let raw = b"GET /v1/shape?table=items&offset=-1 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n\r\nGET /next";
        let (h, n) = parse(raw).unwrap().unwrap();
        assert_eq!(&raw[n..], b"GET /next");
        assert_eq!(h.request.method(), Method::GET);
        assert_eq!(h.request.uri().query(), Some("table=items&offset=-1"));
        assert_eq!(h.request.headers()["if-none-match"], "\"x\"");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        assert!(parse(b"GET / HTTP/1.1\r\nhost: a\r\n").unwrap().is_none());
        assert!(parse(b"").unwrap().is_none());
    }

    #[test]
    fn connection_rules() {
        assert!(!head(b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nconnection: upgrade, Close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing_rules() {
        let h = head(b"POST / HTTP/1.1\r\ncontent-length: 12\r\nexpect: 100-continue\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(12));
        assert!(h.expect_continue);
        let h = head(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        assert_eq!(
            head(b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n").framing,
            BodyFraming::Length(3)
        );
        for bad in [
            &b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ncontent-length: -3\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 3 4\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n").unwrap_err(),
            HeadError::UnsupportedCoding
        );
    }

    #[test]
    fn hostile_heads_get_their_statuses() {
        assert_eq!(
            parse(b"GET /\x01 HTTP/1.1\r\n\r\n").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many).unwrap_err(), HeadError::TooLarge);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000));
        assert_eq!(parse(long.as_bytes()).unwrap_err(), HeadError::UriTooLong);
        // Header values may carry obs-text; they are passed on, not refused.
        let h = head(b"GET / HTTP/1.1\r\nx-bad: \xff\xfe\r\n\r\n");
        assert_eq!(h.request.headers()["x-bad"].as_bytes(), b"\xff\xfe");
    }

    #[test]
    fn an_encoded_response_gets_the_same_framing_as_a_header_map_one() {
        let mut e = Encoded::new(StatusCode::OK, bytes::Bytes::from_static(b"[1,2]"));
        e.header("content-type", b"application/json");
        // The connection's headers are the connection's: a handler's copy is dropped.
        e.header("content-length", b"999");
        e.header("Connection", b"keep-alive");
        e.header("date", b"yesterday");
        e.header("electric-offset", b"0_0");
        e.header("x-split", b"a\r\nx-injected: 1");
        assert!(e.contains("electric-offset") && !e.contains("content-length"));
        let d = "Sat, 21 Nov 2026 10:00:00 GMT";
        let wire = e.into_wire(&Method::GET, Version::HTTP_11, true, d);
        let (head, framing) = (wire.head(), wire.framing);
        assert_eq!(framing, ResponseFraming::Length(5));
        assert_eq!(wire.parts(true)[2], b"[1,2]");
        assert!(wire.parts(false)[2].is_empty());
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("electric-offset", HeaderValue::from_static("0_0"));
        let mut expected = Vec::new();
        encode_response_head(StatusCode::OK, &h, framing, true, d, &mut expected);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            String::from_utf8(expected).unwrap()
        );

        let e = Encoded::new(StatusCode::OK, bytes::Bytes::new());
        let head = e
            .into_wire(&Method::GET, Version::HTTP_10, false, "d")
            .head();
        assert!(head.ends_with(b"content-length: 0\r\ndate: d\r\nconnection: close\r\n\r\n"));
    }

    #[test]
    fn an_encoded_response_converts_back_with_every_header() {
        let mut e = Encoded::new(StatusCode::OK, bytes::Bytes::from_static(b"[]"));
        e.header("electric-up-to-date", b"");
        e.header("etag", b"\"h:1_0:2_0\"");
        e.header("vary", b"Origin");
        e.header("vary", b"Accept");
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["electric-up-to-date"], "");
        assert_eq!(r.headers()["etag"], "\"h:1_0:2_0\"");
        let vary: Vec<_> = r.headers().get_all("vary").iter().collect();
        assert_eq!(vary, ["Origin", "Accept"]);
        assert_eq!(r.headers().len(), 4);
        assert_eq!(http_body::Body::size_hint(r.body()).exact(), Some(2));
    }

    #[test]
    fn a_shared_response_is_the_frozen_one_plus_its_own_headers() {
        let mut e = Encoded::new(StatusCode::OK, bytes::Bytes::from_static(b"[1]"));
        e.header("etag", b"\"h:1_0:2_0\"");
        let frozen = e.freeze();
        let mut a = Encoded::from_shared(&frozen);
        a.header("x-request-id", b"a");
        a.header("content-length", b"7");
        let mut b = Encoded::from_shared(&frozen);
        b.header("x-request-id", b"b");
        assert!(a.contains("etag") && a.contains("x-request-id") && !a.contains("content-length"));

        // On the wire: exactly what the same headers on one unshared head give.
        let mut whole = Encoded::new(StatusCode::OK, bytes::Bytes::from_static(b"[1]"));
        whole.header("etag", b"\"h:1_0:2_0\"");
        whole.header("x-request-id", b"a");
        let d = "Sun, 22 Nov 2026 10:00:00 GMT";
        let want = whole.into_wire(&Method::GET, Version::HTTP_11, true, d);
        let got = a.into_wire(&Method::GET, Version::HTTP_11, true, d);
        assert_eq!(got.head(), want.head());
        assert_eq!(got.framing, ResponseFraming::Length(3));
        assert_eq!(got.parts(true)[2], b"[1]");

        // Back to a `Response`, with every header; frozen again, one head.
        let r = Encoded::from_shared(&b.freeze()).into_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["etag"], "\"h:1_0:2_0\"");
        assert_eq!(r.headers()["x-request-id"], "b");
        assert_eq!(r.headers().len(), 2);
        assert_eq!(http_body::Body::size_hint(r.body()).exact(), Some(3));
    }

    #[test]
    fn response_heads_carry_framing_date_and_connection() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert("content-length", HeaderValue::from_static("999"));
        let mut out = Vec::new();
        encode_response_head(
            StatusCode::OK,
            &h,
            ResponseFraming::Length(5),
            true,
            "Sat, 21 Nov 2026 10:00:00 GMT",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\ndate: Sat, 21 Nov 2026 10:00:00 GMT\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_response_head(
            StatusCode::NOT_MODIFIED,
            &HeaderMap::new(),
            ResponseFraming::Bodiless,
            false,
            "d",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 304 Not Modified\r\ndate: d\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_status_method_and_version() {
        let f = |m: Method, v, s, n| response_framing(&m, v, s, n);
        use StatusCode as S;
        use Version as V;
        assert_eq!(
            f(Method::GET, V::HTTP_11, S::OK, Some(3)),
            ResponseFraming::Length(3)
        );
        assert_eq!(
            f(Method::GET, V::HTTP_11, S::OK, None),
            ResponseFraming::Chunked
        );
        assert_eq!(
            f(Method::GET, V::HTTP_10, S::OK, None),
            ResponseFraming::UntilClose
        );
        assert_eq!(
            f(Method::HEAD, V::HTTP_11, S::OK, Some(0)),
            ResponseFraming::Length(0)
        );
        assert_eq!(
            f(Method::GET, V::HTTP_11, S::NOT_MODIFIED, Some(0)),
            ResponseFraming::Bodiless
        );
        assert_eq!(
            f(Method::OPTIONS, V::HTTP_11, S::NO_CONTENT, Some(0)),
            ResponseFraming::Bodiless
        );
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let raw = b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: y\r\n\r\nNEXT";
        let mut d = ChunkedDecoder::new(100);
        let mut out = Vec::new();
        let n = d.feed(raw, &mut out).unwrap();
        assert!(d.is_done());
        assert_eq!(out, b"hello!");
        assert_eq!(&raw[n..], b"NEXT");
        let mut d = ChunkedDecoder::new(4);
        assert_eq!(
            d.feed(b"5\r\nhello\r\n0\r\n\r\n", &mut Vec::new()),
            Err(ChunkError::TooLarge(4))
        );
        let mut d = ChunkedDecoder::new(100);
        assert_eq!(
            d.feed(b"5\r\nhelloXX", &mut Vec::new()),
            Err(ChunkError::Malformed)
        );
        let mut d = ChunkedDecoder::new(100);
        assert_eq!(
            d.feed(b"zz\r\n", &mut Vec::new()),
            Err(ChunkError::Malformed)
        );
    }

    /// Encodes `body` as chunks of the given sizes (cycled).
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < body.len() {
            let n = sizes[i % sizes.len()].clamp(1, body.len() - at);
            chunk_head(n, &mut out);
            out.extend_from_slice(&body[at..at + n]);
            out.extend_from_slice(b"\r\n");
            at += n;
            i += 1;
        }
        out.extend_from_slice(LAST_CHUNK);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn request_parsing_is_total(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_request(&raw);
        }

        #[test]
        fn request_parsing_is_total_on_near_valid_heads(
            method in "(GET|POST|HEAD|DELETE|OPTIONS|BREW|get|)",
            target in "[ -~]{0,40}",
            version in "(HTTP/1\\.1|HTTP/1\\.0|HTTP/2|HTTP/1\\.1 |)",
            headers in proptest::collection::vec(("[!-~]{0,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut raw = format!("{method} {target} {version}\r\n").into_bytes();
            for (k, v) in &headers {
                raw.extend_from_slice(k.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(v);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            if let Ok(Some((_, n))) = parse_request(&raw) {
                prop_assert!(n <= raw.len());
            }
            let _ = parse_request(&raw[..cut.index(raw.len() + 1)]);
        }

        #[test]
        fn chunked_decoding_is_total(raw in proptest::collection::vec(any::<u8>(), 0..400), limit in 0usize..300) {
            let mut d = ChunkedDecoder::new(limit);
            let mut out = Vec::new();
            if let Ok(n) = d.feed(&raw, &mut out) {
                prop_assert!(n <= raw.len());
                prop_assert!(out.len() <= limit);
            }
        }

        #[test]
        fn chunked_round_trips_however_the_bytes_arrive(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            sizes in proptest::collection::vec(1usize..700, 1..5),
            splits in proptest::collection::vec(1usize..300, 1..20),
        ) {
            let wire = chunked(&body, &sizes);
            let mut d = ChunkedDecoder::new(body.len());
            let mut out = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while !d.is_done() {
                prop_assert!(at < wire.len() || !pending.is_empty(), "ran out of input");
                let n = splits[i % splits.len()].min(wire.len() - at);
                i += 1;
                pending.extend_from_slice(&wire[at..at + n]);
                at += n;
                let used = d.feed(&pending, &mut out).unwrap();
                pending.drain(..used);
                if n == 0 && used == 0 {
                    break;
                }
            }
            prop_assert!(d.is_done());
            prop_assert!(pending.is_empty() && at == wire.len());
            prop_assert_eq!(out, body);
        }
    }
}
