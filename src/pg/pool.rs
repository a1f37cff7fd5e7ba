//! Reused query connections for snapshots, subsets and subquery loads.
//!
//! Opening a Postgres connection costs a backend fork and authentication (milliseconds of CPU
//! on both sides); creating 100k shapes must not pay that 100k times. A connection goes back to
//! the pool only after its transaction ended cleanly (`give_back` after `COMMIT`); any error
//! drops it, so a pooled connection never carries an open transaction or a broken protocol
//! state. The session settings of [`DISPLAY_SQL`](super::connection::DISPLAY_SQL) are re-applied
//! per use, so nothing depends on what a previous user did.
//!
//! Concurrency is bounded by the caller (the engine's snapshot semaphore); the pool only keeps
//! up to `max_idle` idle connections.

use parking_lot::Mutex;
use tokio_postgres::Client;

use super::connection::{ConnectError, PgUrl};

pub struct QueryPool {
    url: PgUrl,
    idle: Mutex<Vec<Client>>,
    max_idle: usize,
}

/// A connection taken from the pool; `reused` says whether it served someone before (a
/// reused connection can have died while idle, so its first failure is retried on a new one).
pub struct Pooled {
    pub client: Client,
    pub reused: bool,
}

impl QueryPool {
    pub fn new(url: PgUrl, max_idle: usize) -> QueryPool {
        QueryPool {
            url,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// An idle connection that is still open, or a new one.
    pub async fn get(&self) -> Result<Pooled, ConnectError> {
        loop {
            let Some(client) = self.idle.lock().pop() else {
                break;
            };
            if !client.is_closed() {
                return Ok(Pooled {
                    client,
                    reused: true,
                });
            }
        }
        Ok(Pooled {
            client: self.url.connect().await?,
            reused: false,
        })
    }

    /// A new connection, bypassing the idle list (after a reused one failed).
    pub async fn fresh(&self) -> Result<Pooled, ConnectError> {
        Ok(Pooled {
            client: self.url.connect().await?,
            reused: false,
        })
    }

    /// Returns a connection whose transaction ended cleanly.
    pub fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(client);
        }
    }

    /// Closes every idle connection (shutdown, or the database went away).
    pub fn clear(&self) {
        self.idle.lock().clear();
    }
}
