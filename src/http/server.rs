//! The accept loop: HTTP/1.1 connections served by hyper, with the limits a public endpoint needs.
//!
//! `axum::serve` has no connection cap and no header-read deadline, so one client can hold
//! thousands of sockets open (connection flood) or dribble header bytes forever (slowloris). This
//! loop bounds both, and bounds the header block's size:
//!
//! * at most `max_connections` open connections; a connection accepted above the cap is closed at
//!   once (the kernel backlog is not left to fill, so well-behaved clients keep getting through
//!   as soon as a slot frees);
//! * a request's head must arrive within `header_read_timeout`, or the connection is closed;
//! * the head may be at most `MAX_HEAD_BYTES`; a larger one gets hyper's 431. URIs longer than
//!   [`MAX_URI_BYTES`] get our 414 (see `http::handle`).
//!
//! Shutdown: stop accepting, ask every connection to finish its in-flight request and close
//! (long-polls end early because the handlers watch the same shutdown), then wait for all of them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

/// The largest request head (request line plus headers) we read, in bytes.
pub const MAX_HEAD_BYTES: usize = 96 * 1024;
/// The longest request target we serve; longer ones get 414. Long where clauses belong in a
/// POST body (the client's `subsetMethod: 'POST'`), as with Electric.
pub const MAX_URI_BYTES: usize = 32 * 1024;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
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
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        tracker.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
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
