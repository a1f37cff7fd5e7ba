//! The replication connection: advisory lock, publication, slot, identity check, and the start of
//! streaming (operations.md §2.2). Knows nothing about shapes: it hands the pipeline a started
//! [`ReplicationClient`] and the facts the pipeline needs to decide whether stored shapes are
//! still valid.
//!
//! Invariants: configuration problems (`wal_level`, the role's REPLICATION right, a publication
//! it may not create) are found before anything is created and reported as errors
//! [`ReplicationError::is_configuration`] marks; the slot is touched only while holding the
//! advisory lock; an invalidated slot (`wal_status = 'lost'`) is dropped and recreated, which
//! reports `continuity_broken` (the app purges); only the handshake is time-bounded, never the
//! lock or slot-creation waits.

use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient};

use super::connection::PgUrl;
use super::publication;

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("replication connection")]
    Wire(#[from] pgwire_replication::PgWireError),
    #[error("admin query")]
    Db(#[from] tokio_postgres::Error),
    #[error("connect")]
    Connect(#[from] super::connection::ConnectError),
    #[error("publication")]
    Publication(#[from] publication::PublicationError),
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error(
        "wal_level is {0:?}, but Ampere requires wal_level = logical: set it in postgresql.conf \
         and restart Postgres"
    )]
    WalLevel(String),
    #[error(
        "role {0:?} may not stream changes: it needs the REPLICATION attribute \
         (ALTER ROLE ... WITH REPLICATION) or superuser"
    )]
    NotReplicationRole(String),
    #[error("the replication connection did not finish its handshake within {} s", .0.as_secs())]
    HandshakeTimeout(Duration),
}

impl ReplicationError {
    /// Errors that no retry can fix: the database or the role must be changed first.
    pub fn is_configuration(&self) -> bool {
        match self {
            ReplicationError::WalLevel(_) | ReplicationError::NotReplicationRole(_) => true,
            ReplicationError::Publication(p) => p.is_configuration(),
            _ => false,
        }
    }
}

/// What the connection learned while starting.
#[derive(Debug, Clone)]
pub struct StreamStart {
    pub system_id: String,
    pub timeline: u32,
    /// The slot or publication was (re)created now: WAL continuity with stored shapes is broken.
    pub continuity_broken: bool,
    /// Where streaming resumes (the slot's confirmed flush position).
    pub start_lsn: u64,
}

/// First warning while slot creation waits for older transactions, then every
/// [`SLOT_WAIT_REPEAT`].
const SLOT_WAIT_FIRST: Duration = Duration::from_secs(2);
const SLOT_WAIT_REPEAT: Duration = Duration::from_secs(10);

/// Opens the replication session: checks the server settings and the role, takes the advisory
/// lock (waiting while another instance holds it), makes sure the publication and slot exist
/// (an invalidated slot is dropped and recreated: continuity broken), then starts streaming
/// from the slot's confirmed position.
pub async fn connect(
    url: &PgUrl,
    slot: &str,
    publication_name: &str,
    on_waiting: impl Fn(),
) -> Result<(ReplicationClient, StreamStart), ReplicationError> {
    let admin = url.connect().await?;
    let server_version = preflight(&admin).await?;
    let publication_created = publication::ensure_publication(&admin, publication_name).await?;

    let cfg = url.replication_config(slot, publication_name);
    // The handshake is bounded (a server that accepts TCP but never answers must not hang the
    // reconnect loop); the waits that follow (lock, slot creation) are legitimate and are not.
    let (mut client, system) = tokio::time::timeout(url.connect_timeout, async {
        let mut client = ReplicationClient::connect_gated(cfg).await?;
        let system = client.identify_system().await?;
        Ok::<_, ReplicationError>((client, system))
    })
    .await
    .map_err(|_| ReplicationError::HandshakeTimeout(url.connect_timeout))??;

    // The same key Electric uses, so an Electric instance and ours exclude each other too.
    let lock_sql = format!(
        "SELECT pg_try_advisory_lock(hashtext('{}'))",
        slot.replace('\'', "''")
    );
    loop {
        let rows = client.simple_query(&lock_sql).await?;
        let got = rows
            .first()
            .and_then(|r| r.first())
            .and_then(|v| v.as_ref())
            .is_some_and(|v| v.as_ref() == b"t");
        if got {
            break;
        }
        on_waiting();
        tracing::info!(
            event = "replication_lock_waiting",
            slot,
            "waiting for the replication lock held by another instance"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }

    if publication_created {
        // A slot that predates a recreated publication keeps a stale reference.
        drop_inactive_slot(&admin, slot).await;
    }
    let status: Option<Option<String>> = admin
        .query_opt(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .map(|r| r.get(0));
    if let Some(Some(status)) = &status
        && status == "lost"
    {
        // Postgres removed WAL the slot still needed (max_slot_wal_keep_size): the changes in
        // between are gone for good, so every shape must be rebuilt from a new slot.
        tracing::error!(
            event = "replication_slot_lost",
            slot,
            "replication slot invalidated (wal_status = lost: it fell further behind than \
             max_slot_wal_keep_size allows); dropping and recreating it, every shape will be purged"
        );
        drop_inactive_slot(&admin, slot).await;
    }
    let slot_created = create_slot(&mut client, &admin, slot, server_version).await?;
    let row = admin
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let confirmed: Option<String> = row.get(0);
    let start_lsn = confirmed
        .as_deref()
        .and_then(|s| Lsn::parse(s).ok())
        .map_or(0, |l| l.0);
    client.start().await?;
    client.wait_started().await?;
    Ok((
        client,
        StreamStart {
            system_id: system.system_id.clone(),
            timeline: system.timeline,
            continuity_broken: publication_created || slot_created,
            start_lsn,
        },
    ))
}

/// Checks what no retry can fix before touching anything: `wal_level` and the role's right to
/// replicate. Returns `server_version_num`.
async fn preflight(admin: &tokio_postgres::Client) -> Result<i32, ReplicationError> {
    let row = admin
        .query_one(
            "SELECT current_setting('wal_level'), \
             COALESCE((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false), \
             current_user::text, current_setting('server_version_num')::int",
            &[],
        )
        .await?;
    let wal_level: String = row.get(0);
    if wal_level != "logical" {
        return Err(ReplicationError::WalLevel(wal_level));
    }
    let may_replicate: bool = row.get(1);
    if !may_replicate {
        return Err(ReplicationError::NotReplicationRole(row.get(2)));
    }
    Ok(row.get(3))
}

async fn drop_inactive_slot(admin: &tokio_postgres::Client, slot: &str) {
    if let Err(e) = admin
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1 AND NOT active",
            &[&slot],
        )
        .await
    {
        tracing::warn!(slot, error = %e, "cannot drop the replication slot");
    }
}

/// Creates the slot unless it exists; returns whether it was created. Creation waits for every
/// transaction open at that moment to finish (it needs a consistent starting point): while it
/// waits, a warning names the oldest open transaction, and on PG 16+ a standby snapshot is
/// logged so the wait ends as soon as those transactions do, even on an idle database.
async fn create_slot(
    client: &mut ReplicationClient,
    admin: &tokio_postgres::Client,
    slot: &str,
    server_version: i32,
) -> Result<bool, ReplicationError> {
    let create = format!("CREATE_REPLICATION_SLOT \"{slot}\" LOGICAL pgoutput NOEXPORT_SNAPSHOT");
    let creating = client.simple_query(&create);
    tokio::pin!(creating);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + SLOT_WAIT_FIRST,
        SLOT_WAIT_REPEAT,
    );
    let started = tokio::time::Instant::now();
    let result = loop {
        tokio::select! {
            r = &mut creating => break r,
            _ = tick.tick() => warn_slot_wait(admin, slot, started.elapsed(), server_version).await,
        }
    };
    match result {
        Ok(_) => {
            tracing::info!(
                event = "replication_slot_created",
                slot,
                "replication slot created"
            );
            Ok(true)
        }
        Err(pgwire_replication::PgWireError::Server(msg)) if msg.contains("already exists") => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

async fn warn_slot_wait(
    admin: &tokio_postgres::Client,
    slot: &str,
    waited: Duration,
    server_version: i32,
) {
    let oldest = admin
        .query_opt(
            "SELECT pid, EXTRACT(EPOCH FROM now() - xact_start)::bigint FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
             ORDER BY xact_start LIMIT 1",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| (r.get::<_, i32>(0), r.get::<_, Option<i64>>(1).unwrap_or(0)));
    tracing::warn!(
        slot,
        waited_s = waited.as_secs(),
        oldest_open_transaction_pid = oldest.map(|o| o.0),
        oldest_open_transaction_age_s = oldest.map(|o| o.1),
        "waiting for the replication slot to be created: Postgres waits for transactions that \
         were open when creation started to finish (check for long-running transactions)"
    );
    if server_version >= 160_000
        && let Err(e) = admin
            .batch_execute("SELECT pg_log_standby_snapshot()")
            .await
    {
        tracing::debug!(error = %e, "cannot log a standby snapshot");
    }
}
