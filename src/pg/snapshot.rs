//! The initial snapshot of a shape (shape-semantics.md §6.2): a REPEATABLE READ READ ONLY
//! transaction whose first statement fixes the snapshot and reads `pg_current_snapshot()`, then a
//! `COPY` of the shape's rows streamed straight into the shape log's snapshot chunks.
//!
//! The where clause sent to Postgres is regenerated from our parsed tree; the user's text never
//! reaches Postgres.

use futures::StreamExt;

use super::connection::DISPLAY_SQL;
use super::copy_text;
use super::pool::QueryPool;
use crate::shape::convert;
use crate::shape::definition::ShapeDef;
use crate::shape::table::quote_ident;
use crate::shape::where_clause::{Members, Subquery};
use crate::storage::log::LogWriter;
use crate::telemetry::progress::SnapshotProgress;

/// A Postgres snapshot as `pg_current_snapshot()` reports it (64-bit xid8 values).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgSnapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl PgSnapshot {
    /// Parses `xmin:xmax:xip1,xip2`.
    pub fn parse(s: &str) -> Option<PgSnapshot> {
        let mut it = s.split(':');
        let xmin = it.next()?.parse().ok()?;
        let xmax = it.next()?.parse().ok()?;
        let xip_s = it.next()?;
        if it.next().is_some() {
            return None;
        }
        let xip = if xip_s.is_empty() {
            Vec::new()
        } else {
            xip_s
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?
        };
        Some(PgSnapshot { xmin, xmax, xip })
    }

    /// Widens a 32-bit WAL xid to the xid8 congruent to it mod 2^32 that lies in
    /// `[xmax - 2^31, xmax + 2^31)`; after that every comparison is a plain 64-bit one. This is
    /// what keeps in-progress transactions from looking visible once the xid epoch is ≥ 1.
    pub fn widen(&self, xid: u32) -> u64 {
        let base = self.xmax;
        let low = u64::from(xid);
        let candidate = (base & !0xffff_ffff) | low;
        let half = 1u64 << 31;
        if candidate >= base.saturating_add(half) {
            candidate.saturating_sub(1 << 32)
        } else if candidate.saturating_add(half) < base {
            candidate.saturating_add(1 << 32)
        } else {
            candidate
        }
    }

    /// Whether a transaction's effects are already in this snapshot (§6.3).
    pub fn visible(&self, xid: u32) -> bool {
        let x = self.widen(xid);
        x < self.xmin || (x < self.xmax && !self.xip.contains(&x))
    }

    /// Whether a transaction started after the snapshot (then filtering can stop for good).
    pub fn after(&self, xid: u32) -> bool {
        self.widen(xid) >= self.xmax
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot query failed: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot connect for the snapshot")]
    Connect(#[from] super::connection::ConnectError),
    #[error("unexpected snapshot value {0:?}")]
    BadSnapshot(String),
    #[error("snapshot row")]
    Copy(#[from] copy_text::CopyError),
    #[error("writing the snapshot")]
    Io(#[from] std::io::Error),
}

/// Opens the snapshot transaction on a pooled connection in one round trip: `BEGIN` REPEATABLE
/// READ, the `SELECT` whose evaluation fixes the transaction's snapshot (the `SET`s of
/// `DISPLAY_SQL` after it take none), and the session's display settings. Returns the
/// connection, the transaction's snapshot and the text values of `also` (extra columns
/// selected in the same statement). A reused connection that fails is retried once on a new
/// one (it may have died while idle).
async fn begin(
    pool: &QueryPool,
    also: &str,
) -> Result<(tokio_postgres::Client, PgSnapshot, Vec<String>), SnapshotError> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
         SELECT pg_current_snapshot()::text{also}; {DISPLAY_SQL}"
    );
    let mut conn = pool.get().await?;
    loop {
        match conn.client.simple_query(&sql).await {
            Ok(messages) => {
                let values = messages
                    .iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                            (0..r.len())
                                .map(|i| r.get(i).unwrap_or_default().to_owned())
                                .collect::<Vec<_>>(),
                        ),
                        _ => None,
                    })
                    .ok_or_else(|| SnapshotError::BadSnapshot("no snapshot row".into()))?;
                let mut values = values.into_iter();
                let text = values.next().unwrap_or_default();
                let snapshot = PgSnapshot::parse(&text).ok_or(SnapshotError::BadSnapshot(text))?;
                return Ok((conn.client, snapshot, values.collect()));
            }
            Err(_) if conn.reused => conn = pool.fresh().await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ends the snapshot transaction and returns the connection to the pool.
async fn commit(pool: &QueryPool, client: tokio_postgres::Client) -> Result<(), SnapshotError> {
    client.batch_execute("COMMIT").await?;
    pool.give_back(client);
    Ok(())
}

/// Runs the snapshot for `def` into `writer`: rows into snapshot chunks (each closed chunk is made
/// durable and published as it completes), then the snapshot-end message, written and synced but
/// not published: the pipeline publishes the completed snapshot once its buffered transactions
/// are durable too. `progress` hears of every row and durable chunk (it logs every few seconds).
pub async fn run(
    pool: &QueryPool,
    def: &ShapeDef,
    writer: &mut LogWriter,
    progress: &mut SnapshotProgress,
) -> Result<PgSnapshot, SnapshotError> {
    let (client, snapshot, _) = begin(pool, "").await?;

    if !def.request.changes_only {
        let sql = copy_sql(def, &[], None, None, None);
        let mut json = Vec::with_capacity(256);
        copy_rows(
            &client,
            &sql,
            &def.selected,
            def.table.columns.len(),
            |row| {
                json.clear();
                convert::snapshot_row(def, row, &mut json);
                progress.row(json.len());
                if writer.append_snapshot_row(&json) {
                    flush_chunk(writer)?;
                    progress.durable(writer.synced_len());
                }
                Ok(())
            },
        )
        .await?;
    }
    commit(pool, client).await?;
    writer.finish_snapshot(&crate::shape::json::snapshot_end(
        snapshot.xmin,
        snapshot.xmax,
        &snapshot.xip,
    ));
    // Written, not synced: the pipeline syncs it in the flush that seals the shape, together
    // with every other log and shape of that flush (one syncfs for many new shapes).
    writer.write_pending()?;
    progress.durable(writer.synced_len());
    Ok(snapshot)
}

/// A subquery dependency's snapshot: `COPY (SELECT cols FROM t WHERE w) TO STDOUT` (the SQL
/// regenerated from our tree) in a REPEATABLE READ transaction whose snapshot is returned with
/// the multiset of selected tuples.
pub async fn run_dependency(
    pool: &QueryPool,
    sub: &Subquery,
) -> Result<(PgSnapshot, Members), SnapshotError> {
    let (client, snapshot, _) = begin(pool, "").await?;
    let mut members = Members::default();
    let sql = format!("COPY ({}) TO STDOUT", sub.sql());
    copy_rows(
        &client,
        &sql,
        &sub.columns,
        sub.table.columns.columns.len(),
        |row| {
            let tuple = sub
                .tuple_of(row)
                .map_err(|_| SnapshotError::BadSnapshot("undecodable subquery value".into()))?;
            members.add(&tuple);
            Ok(())
        },
    )
    .await?;
    commit(pool, client).await?;
    Ok((snapshot, members))
}

/// `COPY (SELECT <selected> FROM <table> WHERE <shape where> AND <extra> …) TO STDOUT`, every
/// fragment from our own trees. COPY's text output uses each type's output function: the same
/// text pgoutput sends, so snapshot and stream values are byte-identical.
fn copy_sql(
    def: &ShapeDef,
    extra_where: &[&str],
    order_by: Option<&str>,
    limit: Option<u64>,
    offset: Option<u64>,
) -> String {
    let cols: Vec<String> = def
        .selected
        .iter()
        .map(|&i| quote_ident(&def.table.columns[i].name))
        .collect();
    let mut sql = format!(
        "COPY (SELECT {} FROM {}",
        cols.join(", "),
        def.table.sql_name()
    );
    let conds: Vec<&str> = def
        .where_clause
        .as_ref()
        .map(|w| w.sql())
        .into_iter()
        .chain(extra_where.iter().copied())
        .collect();
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(
            &conds
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        );
    }
    if let Some(o) = order_by {
        sql.push_str(" ORDER BY ");
        sql.push_str(o);
    }
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    if let Some(o) = offset {
        sql.push_str(&format!(" OFFSET {o}"));
    }
    sql.push_str(") TO STDOUT");
    sql
}

/// Streams a COPY of `columns` (table column indexes, in COPY order), calling `on_row` with
/// each row as a full `width`-wide row (other columns `None`).
async fn copy_rows(
    client: &tokio_postgres::Client,
    sql: &str,
    columns: &[usize],
    width: usize,
    mut on_row: impl FnMut(&[Option<&str>]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let stream = client.copy_out(sql).await?;
    futures::pin_mut!(stream);
    let ncols = columns.len();
    let mut fields: Vec<Option<String>> = Vec::with_capacity(ncols);
    let mut carry: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        carry.extend_from_slice(&chunk?);
        let mut consumed = 0;
        while let Some(nl) = memchr::memchr(b'\n', &carry[consumed..]) {
            let line = &carry[consumed..consumed + nl];
            consumed += nl + 1;
            copy_text::decode_line(line, ncols, &mut fields)?;
            let mut row: Vec<Option<&str>> = vec![None; width];
            for (slot, &i) in columns.iter().enumerate() {
                if let Some(cell) = row.get_mut(i) {
                    *cell = fields.get(slot).and_then(|f| f.as_deref());
                }
            }
            on_row(&row)?;
        }
        carry.drain(..consumed);
    }
    Ok(())
}

fn flush_chunk(writer: &mut LogWriter) -> std::io::Result<()> {
    writer.write_and_sync()?;
    writer.publish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies_visibility() {
        let s = PgSnapshot::parse("100:105:101,103").unwrap();
        assert_eq!(s.xip, vec![101, 103]);
        assert!(s.visible(99));
        assert!(s.visible(102));
        assert!(!s.visible(101));
        assert!(!s.visible(105));
        assert!(s.after(105) && !s.after(104));
        assert_eq!(PgSnapshot::parse("5:5:").unwrap().xip, Vec::<u64>::new());
        assert!(PgSnapshot::parse("x:1:").is_none());
    }

    #[test]
    fn the_xid_epoch_does_not_make_in_progress_transactions_visible() {
        // Epoch 1: xid8 = 2^32 + low.
        let e = 1u64 << 32;
        let s = PgSnapshot {
            xmin: e + 10,
            xmax: e + 20,
            xip: vec![e + 12],
        };
        assert!(!s.visible(12), "in progress at snapshot time");
        assert!(s.visible(11));
        assert!(!s.visible(25));
        // Wraparound: xmax just past an epoch boundary, xid from the previous epoch.
        let s = PgSnapshot {
            xmin: e - 5,
            xmax: e + 3,
            xip: vec![e - 2],
        };
        assert!(s.visible(u32::MAX - 5));
        assert!(!s.visible(u32::MAX - 1));
        assert!(s.visible(1));
        assert!(!s.visible(4));
    }
}

#[cfg(test)]
mod conformance_d {
    //! Conformance cases D (shape-semantics.md): snapshot/stream consistency.
    use super::PgSnapshot;

    #[test]
    fn v01_to_v05() {
        let s = PgSnapshot {
            xmin: 100,
            xmax: 105,
            xip: vec![100, 103],
        };
        assert!(s.visible(99) && s.visible(101), "V01 skip");
        assert!(!s.visible(100), "V02 apply");
        assert!(!s.visible(103), "V03 apply");
        assert!(!s.visible(105) && s.after(105), "V04 apply, filtering off");
        let e = PgSnapshot {
            xmin: 4294967396,
            xmax: 4294967401,
            xip: vec![4294967396, 4294967399],
        };
        assert!(
            !e.visible(103),
            "V05: 103 ≡ 4294967399 is in progress: apply"
        );
        assert!(e.visible(101));
    }
}

/// The result of a subset query (http-protocol.md §12).
#[derive(Debug)]
pub struct SubsetResult {
    pub snapshot: PgSnapshot,
    /// `pg_current_wal_lsn()` in the query's transaction.
    pub database_lsn: u64,
    /// Insert messages of the matching rows, each with the `snapshot_mark` header.
    pub rows: Vec<Vec<u8>>,
}

/// A subset query: the shape's rows that also match `extra_where`, in `order_by` order, within
/// `limit`/`offset`, read in one REPEATABLE READ transaction whose snapshot is returned. Every SQL
/// fragment comes from our own parsed trees (`order_by` is regenerated by the HTTP layer).
pub async fn run_subset(
    pool: &QueryPool,
    def: &ShapeDef,
    extra_where: Option<&str>,
    order_by: Option<&str>,
    limit: Option<u64>,
    offset: Option<u64>,
    mark: u32,
) -> Result<SubsetResult, SnapshotError> {
    let (client, snapshot, values) =
        begin(pool, ", (pg_current_wal_lsn() - '0/0'::pg_lsn)::text").await?;
    let lsn_text = values.into_iter().next().unwrap_or_default();
    let database_lsn = lsn_text
        .parse()
        .map_err(|_| SnapshotError::BadSnapshot(lsn_text))?;
    let extra: Vec<&str> = extra_where.into_iter().collect();
    let sql = copy_sql(def, &extra, order_by, limit, offset);
    let mut rows = Vec::new();
    copy_rows(
        &client,
        &sql,
        &def.selected,
        def.table.columns.len(),
        |row| {
            let mut json = Vec::with_capacity(128);
            convert::snapshot_row(def, row, &mut json);
            // Close the headers with the mark instead of `}}`.
            json.truncate(json.len() - 2);
            json.extend_from_slice(format!(",\"snapshot_mark\":{mark}}}}}").as_bytes());
            rows.push(json);
            Ok(())
        },
    )
    .await?;
    commit(pool, client).await?;
    Ok(SubsetResult {
        snapshot,
        database_lsn,
        rows,
    })
}
