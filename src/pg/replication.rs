//! The replication connection: advisory lock, publication, slot, identity check, and the start of
//! streaming (operations.md §2.2). Knows nothing about shapes: it hands the pipeline a started
//! [`ReplicationClient`] and the facts the pipeline needs to decide whether stored shapes are
//! still valid.

use pgwire_replication::{Lsn, ReplicationClient};

use super::connection::{PgUrl, sqlstate};
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

/// Opens the replication session: takes the advisory lock (waiting while another instance holds
/// it), makes sure the publication and slot exist, then starts streaming from the slot's
/// confirmed position.
pub async fn connect(
    url: &PgUrl,
    slot: &str,
    publication_name: &str,
    on_waiting: impl Fn(),
) -> Result<(ReplicationClient, StreamStart), ReplicationError> {
    let admin = url.connect().await?;
    let publication_created = publication::ensure_publication(&admin, publication_name).await?;

    let cfg = url.replication_config(slot, publication_name);
    let mut client = ReplicationClient::connect_gated(cfg).await?;
    let system = client.identify_system().await?;

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
            slot,
            "waiting for the replication lock held by another instance"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }

    if publication_created {
        // A slot that predates a recreated publication keeps a stale reference.
        let _ = admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&slot],
            )
            .await;
    }
    let create = format!("CREATE_REPLICATION_SLOT \"{slot}\" LOGICAL pgoutput NOEXPORT_SNAPSHOT");
    let slot_created = match client.simple_query(&create).await {
        Ok(_) => true,
        Err(pgwire_replication::PgWireError::Server(msg)) if msg.contains("already exists") => {
            false
        }
        Err(e) => return Err(e.into()),
    };
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
    let _ = sqlstate;
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
