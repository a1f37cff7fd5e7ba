//! Publication membership, managed on demand (operations.md §2.3, §2.6).
//!
//! A table joins the publication in one transaction that also takes `LOCK TABLE … IN SHARE MODE`
//! (waiting out every open writer and holding back new ones until the change commits) and sets
//! `REPLICA IDENTITY FULL`. Without that barrier, a writer that touched the table before the
//! table was published and commits after the shape's snapshot would be in neither the snapshot
//! nor the stream (Electric issue #4773).

use tokio_postgres::Client;

use super::connection::sqlstate;
use crate::shape::table::{TableInfo, quote_ident};

#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error("could not add table {table} to publication {publication}")]
    Add {
        table: String,
        publication: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("publication query failed")]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "publication {publication:?} does not exist and the DATABASE_URL role may not create it: \
         grant it CREATE on the database, or create the publication as its owner"
    )]
    Missing {
        publication: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "publication {publication:?} does not publish all required operations: INSERT, UPDATE, \
         DELETE, TRUNCATE"
    )]
    MissingOperations { publication: String },
}

impl PublicationError {
    /// Errors that no retry can fix.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            PublicationError::Missing { .. } | PublicationError::MissingOperations { .. }
        )
    }
}

/// Creates the publication. Returns true if it was created now (so the slot must be recreated
/// and every shape purged: a slot that predates a recreated publication streams nothing).
pub async fn ensure_publication(
    client: &Client,
    publication: &str,
) -> Result<bool, PublicationError> {
    match client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} WITH (publish_via_partition_root = true)",
            quote_ident(publication)
        ))
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if sqlstate(&e) == Some("42710") => {
            // Changes to partitions are published as their partitioned root, where shapes live.
            let sql = format!(
                "ALTER PUBLICATION {} SET (publish_via_partition_root = true)",
                quote_ident(publication)
            );
            if let Err(e) = client.batch_execute(&sql).await {
                tracing::warn!(error = %e, "cannot set publish_via_partition_root on the publication");
            }
            Ok(false)
        }
        // Not allowed to create it: a publication made by its owner will do, if complete.
        Err(e) if sqlstate(&e) == Some("42501") => {
            let complete: Option<bool> = client
                .query_opt(
                    "SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate \
                     FROM pg_publication WHERE pubname = $1",
                    &[&publication],
                )
                .await?
                .map(|r| r.get(0));
            match complete {
                None => Err(PublicationError::Missing {
                    publication: publication.to_owned(),
                    source: e,
                }),
                Some(false) => Err(PublicationError::MissingOperations {
                    publication: publication.to_owned(),
                }),
                Some(true) => Ok(false),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds `table` to the publication with the writer barrier and `REPLICA IDENTITY FULL`.
pub async fn add_table(
    client: &Client,
    publication: &str,
    table: &TableInfo,
) -> Result<(), PublicationError> {
    let name = table.sql_name();
    let wrap = |source| PublicationError::Add {
        table: name.clone(),
        publication: publication.to_owned(),
        source,
    };
    // One round trip for the common case (already published, already FULL): shape creation
    // runs this for every new shape.
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p \
               ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2), \
             ARRAY(SELECT format('%I.%I', n.nspname, c.relname) FROM (SELECT $2::oid AS relid \
               UNION SELECT relid FROM pg_partition_tree($2::oid)) t \
               JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.relkind IN ('r', 'p') AND c.relreplident <> 'f')",
            &[&publication, &table.oid],
        )
        .await
        .map_err(wrap)?;
    let in_pub: bool = row.get(0);
    // Old rows come from the published relation and its leaves: for a partitioned table the
    // root and every partition need FULL.
    let not_full: Vec<String> = row.get(1);
    if in_pub && not_full.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("BEGIN; SET LOCAL lock_timeout = '5s'; ");
    sql.push_str(&format!("LOCK TABLE {name} IN SHARE MODE; "));
    if !in_pub {
        sql.push_str(&format!(
            "ALTER PUBLICATION {} ADD TABLE {name}; ",
            quote_ident(publication)
        ));
    }
    for leaf in &not_full {
        sql.push_str(&format!("ALTER TABLE {leaf} REPLICA IDENTITY FULL; "));
    }
    sql.push_str("COMMIT;");
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        // Another instance (or a concurrent request) added it first: fine.
        if sqlstate(&e) != Some("42710") {
            return Err(wrap(e));
        }
    }
    Ok(())
}
