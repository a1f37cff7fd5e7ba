//! A small TCP fault proxy between Ampere and Postgres (operations.md §7.1): every connection
//! (replication, admin, snapshot) goes through it, and the test switches its mode at any time.
//!
//! Modes: pass-through, added latency per forwarded read, *blackhole* (sockets stay open,
//! nothing is forwarded in either direction, new connections are accepted but not connected
//! upstream), and *reset* (every open connection is closed with an RST on both sides; new
//! connections pass).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Blackhole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: Mode,
    /// Bumped by `reset`: connections opened under an older generation are torn down.
    generation: u64,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (random port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (state, rx) = watch::channel(State {
            mode: Mode::Pass,
            generation: 0,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((down, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(down, upstream, rx.clone()));
            }
        });
        FaultProxy { addr, state, task }
    }

    /// A Postgres URL for the same database through the proxy.
    pub fn url(&self, pg_url: &str) -> String {
        let mut u = url::Url::parse(pg_url).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }

    pub fn set(&self, mode: Mode) {
        self.state.send_modify(|s| s.mode = mode);
    }

    /// Closes every open connection with an RST on both sides.
    pub fn reset(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset();
    }
}

async fn serve(down: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let generation = state.borrow().generation;
    // Blackholed: the client's connect succeeds, then nothing happens.
    if state
        .wait_for(|s| s.mode != Mode::Blackhole || s.generation != generation)
        .await
        .is_err()
        || state.borrow().generation != generation
    {
        abort(down);
        return;
    }
    let Ok(up) = TcpStream::connect(upstream).await else {
        abort(down);
        return;
    };
    // Linger 0: dropping a socket sends an RST (a normal close still goes through `shutdown`).
    for s in [&down, &up] {
        let _ = s.set_nodelay(true);
        set_linger_zero(s);
    }
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    let a = tokio::spawn(pump(dr, uw, state.clone(), generation));
    let b = tokio::spawn(pump(ur, dw, state.clone(), generation));
    let _ = (a.await, b.await);
}

/// Copies one direction until a close or a reset (then dropping the halves sends the RST).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    enum Got {
        Bytes(usize),
        Closed,
        Reset,
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let got = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => Got::Closed,
                Ok(n) => Got::Bytes(n),
            },
            _ = state.wait_for(|s| s.generation != generation) => Got::Reset,
        };
        // Hold whatever happened while blackholed (a blackhole forwards nothing, not even a
        // close); a reset meanwhile wins.
        let now = match state
            .wait_for(|s| s.mode != Mode::Blackhole || s.generation != generation)
            .await
        {
            Ok(s) => *s,
            Err(_) => return,
        };
        if now.generation != generation {
            return;
        }
        let n = match got {
            Got::Reset => return,
            Got::Closed => {
                let _ = to.shutdown().await;
                return;
            }
            Got::Bytes(n) => n,
        };
        if let Mode::Delay(d) = now.mode {
            tokio::time::sleep(d).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Closes with an RST (linger 0) rather than a FIN.
fn abort(s: TcpStream) {
    set_linger_zero(&s);
    drop(s);
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized `linger` struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::linger>()).unwrap_or(8),
        );
    }
}
