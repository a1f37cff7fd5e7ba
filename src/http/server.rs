//! The accept loop and the HTTP/1.1 connection loop, with the limits a public endpoint needs.
//!
//! Framing is ours ([`super::h1`]); requests go to a [`Handler`] as plain `http` values, and
//! answers come back as `http` responses or, for shape log responses, as heads the handler wrote
//! as it built them ([`Answer`], [`h1::Encoded`]: no `HeaderMap` per response on the fan-out
//! path).
//!
//! A connection holds no buffer while its request is being handled: a parked long-poll costs the
//! socket, this task and the handler's own state (hyper's server kept 16 KiB of buffers per
//! connection for its whole life, which dominated the memory of 10k parked long-polls).
//!
//! Limits (a plain accept loop has none, so one client could hold thousands of sockets or dribble
//! header bytes forever):
//!
//! * at most `max_connections` open connections; a connection accepted above the cap is closed at
//!   once (the kernel backlog is not left to fill, so well-behaved clients keep getting through
//!   as soon as a slot frees);
//! * a request's head must arrive within `header_read_timeout` of the connection starting to wait
//!   for it (this also bounds how long an idle keep-alive connection stays open), and its body
//!   within [`BODY_READ_TIMEOUT`], or the connection is closed;
//! * the head may be at most `MAX_HEAD_BYTES` (431 above it), a body at most [`MAX_BODY_BYTES`]
//!   (413). URIs longer than [`MAX_URI_BYTES`] get our 414 (see `http::handle`);
//! * a write the client leaves blocked for `send_timeout` (it stopped reading) closes the
//!   connection, freeing the response it held.
//!
//! A client that closes its socket while its request is being handled (a parked long-poll, most
//! often) cancels the handler: its future is dropped and its slot freed at once.
//!
//! Shutdown: stop accepting, close idle connections, let every in-flight request finish and close
//! after its response (long-polls end early because the handlers watch the same shutdown), then
//! wait for all of them.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::h1::{self, BodyFraming, HeadError, ResponseFraming};

/// The largest request head (request line plus headers) we read, in bytes.
pub const MAX_HEAD_BYTES: usize = 96 * 1024;
/// The longest request target we serve; longer ones get 414. Long where clauses belong in a
/// POST body (the client's `subsetMethod: 'POST'`), as with Electric.
pub const MAX_URI_BYTES: usize = 32 * 1024;
/// The largest request body we read (a POSTed subset query); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long a request body may take to arrive once its head is in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read per `read` call; the buffer lives on the stack for the call only.
const READ_CHUNK: usize = 16 * 1024;
/// After an error response, how long and how much of the client's unread input we drain before
/// closing (closing with unread input makes the kernel send a reset, which can destroy the
/// response before the client reads it).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// What a handler answers: a response now, or a parked request's wait.
pub enum Reply {
    Now(Answer),
    /// A request that parks (a long-poll). The handler has returned and its state is gone; the
    /// connection keeps only this future, which should hold no more than the wait needs.
    Later(Pin<Box<dyn Future<Output = Answer> + Send>>),
}

impl Reply {
    pub fn now(answer: impl Into<Answer>) -> Reply {
        Reply::Now(answer.into())
    }
}

/// A response: an `http` one, or one whose head the handler wrote as it built it
/// ([`h1::Encoded`], the shape log's responses).
#[derive(Debug)]
pub enum Answer {
    Response(Response<Body>),
    Encoded(h1::Encoded),
}

impl From<Response<Body>> for Answer {
    fn from(r: Response<Body>) -> Answer {
        Answer::Response(r)
    }
}

impl From<h1::Encoded> for Answer {
    fn from(e: h1::Encoded) -> Answer {
        Answer::Encoded(e)
    }
}

impl Answer {
    /// As an `http` response (tests, and the rare paths that edit headers).
    pub fn into_response(self) -> Response<Body> {
        match self {
            Answer::Response(r) => r,
            Answer::Encoded(e) => e.into_response(),
        }
    }
}

/// The application a connection hands its requests to.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Boxed so a connection's own future is not sized for the largest handler (most of a
    /// connection's life is spent waiting for a head or parked, not in the handler).
    fn call(&self, request: Request<Body>) -> Pin<Box<dyn Future<Output = Reply> + Send>>;
}

impl Handler for Router {
    fn call(&self, request: Request<Body>) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
        use tower::ServiceExt;
        let router = self.clone();
        Box::pin(
            async move { Reply::now(router.oneshot(request).await.unwrap_or_else(|e| match e {})) },
        )
    }
}

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long one write may wait for the client to read (`ELECTRIC_TCP_SEND_TIMEOUT`).
    pub send_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    app: H,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let mut refused: u64 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|v| *v) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ECONNABORTED: not fatal. Pause briefly so a full descriptor table
                // does not turn this loop into a busy spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            // One line per 1,000 refusals: a flood must not also flood the log.
            if refused % 1000 == 1 {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused_total = refused,
                    "connection limit reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            stream,
            app: app.clone(),
            stop: shutdown.clone(),
            limits,
            pending: Vec::new(),
        };
        tracker.spawn(async move {
            conn.run().await;
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// One client connection: requests in, responses out, in order.
struct Connection<H> {
    stream: TcpStream,
    app: H,
    stop: watch::Receiver<bool>,
    limits: Limits,
    /// Bytes read past the current message (a pipelined request); empty, and unallocated, while
    /// a request is being handled unless the client pipelined.
    pending: Vec<u8>,
}

/// Why a connection stops.
enum Close {
    /// Closed quietly: EOF, timeout, shutdown while idle, or an I/O error.
    Quiet,
    /// The request was refused before reaching a handler: answer with this status, then close.
    Refuse(StatusCode, String),
}

/// What one [`Connection::fill`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Bytes appended (0 when readiness was stale).
    Read(usize),
    /// EOF, the deadline, or shutdown.
    Closed,
}

impl From<io::Error> for Close {
    fn from(_: io::Error) -> Close {
        Close::Quiet
    }
}

impl From<HeadError> for Close {
    fn from(e: HeadError) -> Close {
        Close::Refuse(e.status(), e.to_string())
    }
}

impl<H: Handler> Connection<H> {
    /// Serves requests until the connection closes. Not an `async fn`, which would store the
    /// connection twice in the task (argument and binding); the task's size is what every open
    /// connection costs.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> + Send {
        async move {
            loop {
                match self.exchange().await {
                    Ok(true) => {}
                    Ok(false) | Err(Close::Quiet) => break,
                    Err(Close::Refuse(status, message)) => {
                        let bytes =
                            with_http_date(|date| h1::error_response(status, &message, date));
                        if write_all(&self.stream, &[&bytes], self.limits.send_timeout)
                            .await
                            .is_ok()
                        {
                            Box::pin(self.linger()).await;
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Reads one request, has it handled and writes the response; `Ok(true)` to keep going.
    async fn exchange(&mut self) -> Result<bool, Close> {
        let Some(head) = self.read_head().await? else {
            return Ok(false);
        };
        let keep_alive = head.keep_alive;
        let method = head.request.method().clone();
        let version = head.request.version();
        // Boxed, here and below: the task is sized for its largest state, and these are brief.
        let request = match head.framing {
            BodyFraming::None => head.request.map(|()| Body::empty()),
            _ => Box::pin(self.with_body(head)).await?,
        };
        if self.pending.is_empty() {
            // Free the read buffer while the request is handled (a long-poll may park for a
            // long time).
            self.pending = Vec::new();
        }
        let work = self.app.call(request);
        let Some(response) = self.handle(work).await else {
            // The client went away: its handler has been dropped.
            return Ok(false);
        };
        let keep_alive = keep_alive && !*self.stop.borrow();
        Box::pin(self.write_response(&method, version, response, keep_alive)).await
    }

    /// Reads the body the head announces and attaches it.
    async fn with_body(&mut self, head: h1::RequestHead) -> Result<Request<Body>, Close> {
        let body = self.read_body(head.framing, head.expect_continue).await?;
        Ok(head.request.map(|()| Body::from(body)))
    }

    /// Waits for a complete request head; `None` when the connection should just close.
    async fn read_head(&mut self) -> Result<Option<h1::RequestHead>, Close> {
        let deadline = Instant::now() + self.limits.header_read_timeout;
        loop {
            if !self.pending.is_empty() {
                if let Some((head, used)) = h1::parse_request(&self.pending)? {
                    self.pending.drain(..used);
                    return Ok(Some(head));
                }
                if self.pending.len() > MAX_HEAD_BYTES {
                    return Err(HeadError::TooLarge.into());
                }
            }
            // An idle connection closes at once on shutdown; a head already arriving is still
            // read and answered.
            let idle = self.pending.is_empty();
            if self.fill(deadline, idle).await? == Fill::Closed {
                return Ok(None);
            }
        }
    }

    /// Waits for bytes until `deadline` (or shutdown, with `stop_when_idle`) and appends what
    /// one read returns to `pending`.
    async fn fill(&mut self, deadline: Instant, stop_when_idle: bool) -> io::Result<Fill> {
        tokio::select! {
            r = readable(&self.stream) => r?,
            () = tokio::time::sleep_until(deadline) => return Ok(Fill::Closed),
            () = stopped(&mut self.stop), if stop_when_idle => return Ok(Fill::Closed),
        }
        match read_some(&self.stream, &mut self.pending) {
            Ok(0) => Ok(Fill::Closed),
            Ok(n) => Ok(Fill::Read(n)),
            // Readiness was stale: the next wait re-arms it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::Read(0)),
            Err(e) => Err(e),
        }
    }

    /// Reads the request body (bounded in size and time).
    async fn read_body(
        &mut self,
        framing: BodyFraming,
        expect_continue: bool,
    ) -> Result<Vec<u8>, Close> {
        let too_large = || {
            Close::Refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large".to_owned(),
            )
        };
        let mut chunked = match framing {
            BodyFraming::None => return Ok(Vec::new()),
            BodyFraming::Length(n) if n > MAX_BODY_BYTES as u64 => return Err(too_large()),
            BodyFraming::Length(_) => None,
            BodyFraming::Chunked => Some(h1::ChunkedDecoder::new(MAX_BODY_BYTES)),
        };
        if expect_continue {
            write_all(
                &self.stream,
                &[b"HTTP/1.1 100 Continue\r\n\r\n"],
                self.limits.send_timeout,
            )
            .await?;
        }
        let deadline = Instant::now() + BODY_READ_TIMEOUT;
        let mut body = Vec::new();
        loop {
            match (&mut chunked, framing) {
                (Some(decoder), _) => {
                    let used = decoder
                        .feed(&self.pending, &mut body)
                        .map_err(|e| match e {
                            h1::ChunkError::TooLarge(_) => too_large(),
                            h1::ChunkError::Malformed => {
                                Close::Refuse(StatusCode::BAD_REQUEST, e.to_string())
                            }
                        })?;
                    self.pending.drain(..used);
                    if decoder.is_done() {
                        return Ok(body);
                    }
                }
                (None, BodyFraming::Length(n)) => {
                    let want = usize::try_from(n).unwrap_or(usize::MAX) - body.len();
                    let take = want.min(self.pending.len());
                    body.extend(self.pending.drain(..take));
                    if body.len() as u64 == n {
                        return Ok(body);
                    }
                }
                (None, _) => return Ok(body),
            }
            if self.fill(deadline, false).await? == Fill::Closed {
                return Err(Close::Quiet);
            }
        }
    }

    /// Runs the handler, then its parked wait if any; `None` if the client closed its end
    /// first (whatever was running is dropped, which cancels it).
    async fn handle(&self, work: Pin<Box<dyn Future<Output = Reply> + Send>>) -> Option<Answer> {
        match self.until_closed(work).await? {
            Reply::Now(response) => Some(response),
            Reply::Later(wait) => self.until_closed(wait).await,
        }
    }

    /// Runs `work` unless the client closes first. Polled by hand rather than with `select!`
    /// over a `peek` future: that future alone was 248 bytes of every parked request.
    async fn until_closed<F: Future + Unpin>(&self, mut work: F) -> Option<F::Output> {
        // Watch for EOF only while nothing else is waiting in the socket: pipelined bytes are
        // the next request, left in the kernel buffer for the next head read.
        let mut watch_eof = self.pending.is_empty();
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut work).poll(cx) {
                return Poll::Ready(Some(r));
            }
            if watch_eof {
                let mut probe = [0u8; 1];
                let mut probe = ReadBuf::new(&mut probe);
                match self.stream.poll_peek(cx, &mut probe) {
                    Poll::Ready(Ok(n)) if n > 0 => watch_eof = false,
                    Poll::Ready(_) => return Poll::Ready(None),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Writes the response; `Ok(true)` when the connection stays open for another request.
    async fn write_response(
        &mut self,
        method: &Method,
        version: Version,
        answer: Answer,
        keep_alive: bool,
    ) -> Result<bool, Close> {
        let response = match answer {
            Answer::Response(r) => r,
            Answer::Encoded(e) => {
                let wire = with_http_date(|date| e.into_wire(method, version, keep_alive, date));
                // The length is always known, so the framing is never `UntilClose` and the
                // connection stays as `keep_alive` says (the head already says so).
                let with_body =
                    *method != Method::HEAD && wire.framing != ResponseFraming::Bodiless;
                write_all(
                    &self.stream,
                    &wire.parts(with_body),
                    self.limits.send_timeout,
                )
                .await?;
                return Ok(keep_alive);
            }
        };
        let (parts, mut body) = response.into_parts();
        let exact = http_body::Body::size_hint(&body).exact();
        let framing = h1::response_framing(method, version, parts.status, exact);
        let handler_closes = parts
            .headers
            .get_all(axum::http::header::CONNECTION)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let keep_alive = keep_alive && !handler_closes && framing != ResponseFraming::UntilClose;
        let mut head = Vec::with_capacity(768);
        with_http_date(|date| {
            h1::encode_response_head(
                parts.status,
                &parts.headers,
                framing,
                keep_alive,
                date,
                &mut head,
            );
        });
        drop(parts);
        if *method == Method::HEAD || framing == ResponseFraming::Bodiless {
            write_all(&self.stream, &[&head], self.limits.send_timeout).await?;
            return Ok(keep_alive);
        }
        // The head goes out with the first frame in one write (most bodies are one frame).
        let mut head = Some(head);
        let mut written: u64 = 0;
        loop {
            let frame = match body.frame().await {
                None => break,
                Some(Ok(f)) => f,
                // A body that fails mid-way cannot be finished: the client sees a truncated
                // response and the connection closes.
                Some(Err(_)) => return Err(Close::Quiet),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let prefix = head.take().unwrap_or_default();
            match framing {
                ResponseFraming::Chunked => {
                    let mut size = prefix;
                    h1::chunk_head(data.len(), &mut size);
                    write_all(
                        &self.stream,
                        &[&size, &data, b"\r\n"],
                        self.limits.send_timeout,
                    )
                    .await?;
                }
                ResponseFraming::Length(n) => {
                    // Never more than announced; a body shorter than announced closes below.
                    let room = usize::try_from(n.saturating_sub(written)).unwrap_or(usize::MAX);
                    let data = &data[..data.len().min(room)];
                    write_all(&self.stream, &[&prefix, data], self.limits.send_timeout).await?;
                    written += data.len() as u64;
                }
                _ => write_all(&self.stream, &[&prefix, &data], self.limits.send_timeout).await?,
            }
        }
        let mut end: Vec<u8> = head.unwrap_or_default();
        match framing {
            ResponseFraming::Chunked => end.extend_from_slice(h1::LAST_CHUNK),
            ResponseFraming::Length(n) if written != n => {
                write_all(&self.stream, &[&end], self.limits.send_timeout).await?;
                return Ok(false);
            }
            _ => {}
        }
        if !end.is_empty() {
            write_all(&self.stream, &[&end], self.limits.send_timeout).await?;
        }
        Ok(keep_alive)
    }

    /// Stops writing, then reads and discards what the client still sends, briefly, so our
    /// last response is not destroyed by a reset.
    async fn linger(&mut self) {
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            self.pending.clear();
            match self.fill(deadline, false).await {
                Ok(Fill::Read(n)) => drained += n,
                Ok(Fill::Closed) | Err(_) => return,
            }
        }
    }
}

/// One non-blocking read appended to `buf`. Not async: the stack buffer never lives in a
/// connection's future, so a parked connection does not carry it.
fn read_some(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; READ_CHUNK];
    let n = stream.try_read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Resolves when the socket may have bytes to read (no future state beyond the reference).
fn readable(stream: &TcpStream) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(|cx| stream.poll_read_ready(cx))
}

/// Writes every slice, in order, with vectored writes. A write the client leaves blocked for
/// `stall` (it stopped reading) fails with `TimedOut`, which closes the connection: otherwise
/// the task, its socket and the response it holds (up to a 10 MiB chunk) would stay for as
/// long as the client keeps the connection open.
async fn write_all(stream: &TcpStream, parts: &[&[u8]], stall: Duration) -> io::Result<()> {
    let mut part = 0;
    let mut offset = 0;
    while part < parts.len() {
        if parts[part].len() == offset {
            part += 1;
            offset = 0;
            continue;
        }
        let mut n = match write_some(stream, &parts[part][offset..], &parts[part + 1..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Boxed: the timer exists only while a write is blocked, and a parked
                // connection's future is not sized for it.
                let blocked = Box::pin(tokio::time::sleep(stall));
                tokio::select! {
                    ready = std::future::poll_fn(|cx| stream.poll_write_ready(cx)) => ready?,
                    () = blocked => {
                        tracing::debug!(?stall, "client stopped reading: closing the connection");
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        // Advance past what was written.
        while n > 0 && part < parts.len() {
            let left = parts[part].len() - offset;
            if n >= left {
                n -= left;
                part += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// One vectored write of `first` and then `rest`, at most [`MAX_SLICES`] slices (every caller
/// has three or fewer). Not async, and the slices live on the stack: a response write costs
/// no allocation and a parked connection's future does not carry them.
fn write_some(stream: &TcpStream, first: &[u8], rest: &[&[u8]]) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_SLICES];
    let mut n = 0;
    for (slot, part) in slices
        .iter_mut()
        .zip(std::iter::once(first).chain(rest.iter().copied()))
    {
        *slot = IoSlice::new(part);
        n += 1;
    }
    // `sendmsg` rather than tokio's vectored write, which is `writev`: a socket send skips the
    // file layer `writev` goes through (descriptor position lock, fsnotify) on every response.
    // `try_io` clears the write readiness on `WouldBlock`, as `try_write_vectored` does.
    stream.try_io(tokio::io::Interest::WRITABLE, || {
        socket2::SockRef::from(stream).send_vectored_with_flags(&slices[..n], libc::MSG_NOSIGNAL)
    })
}

/// Most slices one [`write_some`] passes to the kernel; later ones go in the next write.
const MAX_SLICES: usize = 4;

/// The `date` header value, formatted once per second per thread.
fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        f(&c.1)
    })
}

/// Resolves when shutdown is requested (or its sender is gone); owns no guard, so it can sit in a
/// `select!` whose other arm keeps running.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

/// The connection cap when none is configured: room for every request the admission caps admit,
/// plus as many again so that requests above those caps still get their 503 rather than a reset,
/// within the process's descriptor limit (less a reserve for files and Postgres connections).
pub fn default_max_connections(max_initial: usize, max_existing: usize) -> usize {
    let wanted = max_initial.saturating_add(max_existing).saturating_mul(2);
    let fd_limit = raise_fd_limit();
    wanted.min(fd_limit.saturating_sub(512).max(64))
}

/// Raises the soft descriptor limit to the hard one (10k parked long-polls need 10k sockets; the
/// usual soft default is 1024) and returns the resulting soft limit.
pub fn raise_fd_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What a parked long-poll costs is these two futures (plus its socket and parameters).
    /// The request handler (over 2 KiB) must never be inlined into either: it runs boxed, and
    /// only until it parks. The bound has room for dependency upgrades, not for a handler.
    #[test]
    fn a_parked_request_keeps_only_small_futures() {
        let connection = future_size(Connection::<crate::http::App>::run);
        let parked = future_size(crate::http::shape::LivePoll::wait);
        let handler = future_size(|r| crate::http::handle(unreachable_engine(), r));
        assert!(
            connection <= 1536,
            "connection task future: {connection} bytes"
        );
        assert!(parked <= 1536, "parked long-poll future: {parked} bytes");
        assert!(
            handler > parked,
            "the handler ({handler} B) is the large one"
        );
    }

    /// Only for its type: the closure above is never called.
    fn unreachable_engine() -> Arc<crate::engine::Engine> {
        unreachable!()
    }
}
