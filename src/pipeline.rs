//! The pipeline: the single task that turns the replication stream into durable shape logs and
//! acknowledges what is durable.
//!
//! ```text
//! ReplicationClient ─events─▶ decode ─▶ route (Router) ─▶ convert ─▶ LogWriter (pending)
//!                                                                     │ flush: write, sync
//! update_applied_lsn(commit end) ◀── publish views, advance G ◀───────┘
//! ```
//!
//! Invariants:
//! - Readers see a transaction only after every log it touched is synced ("durable before
//!   visible"); the LSN acknowledged to Postgres is the end of the last transaction whose
//!   effects on every complete shape are durable, and it never moves backwards.
//! - Per shape, a transaction is applied at most once: after a restart or reconnect, transactions
//!   at or below the shape's last stored commit are skipped; transactions visible in its
//!   snapshot are skipped (epoch-aware xid comparison).
//! - Commands that change the shape set run between transactions, never inside one.
//! - A shape whose snapshot has not completed does not survive a restart, so transactions it
//!   buffers in memory may be acknowledged before it completes.
//! - Storage failures (ENOSPC, EIO) stop the pipeline where it is: nothing more is read from the
//!   stream (the replication client keeps answering keepalives), published or acknowledged, and
//!   the failed step is retried with backoff. A failed write leaves its bytes pending and is
//!   simply retried. A failed sync is never retried ("fsyncgate": the kernel may have dropped
//!   the dirty pages): every log it covered is cut back to its last durable length and the
//!   stream restarts from the acknowledged position, so Postgres resends exactly what was lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{Engine, ShapeMeta};
use crate::offset::LogOffset;
use crate::pg::pgoutput::{self, LogicalMessage, Tuple, TupleValue};
use crate::pg::snapshot::PgSnapshot;
use crate::shape::convert::{self, OpenEntry, RowChange, TxnInfo};
use crate::shape::dependency::{DepId, Dependencies, DependencyError, Dependent, Effect, Ensured};
use crate::shape::registry::Shape;
use crate::shape::router::{Router, ShapeId};
use crate::shape::table::TableInfo;
use crate::shape::where_clause::{Members, Subquery};
use crate::storage::io::FsFile;
use crate::storage::log::{LogWriter, RecoverError};
use crate::telemetry::metrics::StreamTally;

/// Requests to the pipeline from other tasks.
pub enum Command {
    /// A new shape whose snapshot is about to start: buffer its transactions from now on.
    Register {
        shape: Arc<Shape>,
        reply: oneshot::Sender<()>,
    },
    /// The snapshot finished: take over its log writer.
    SnapshotDone {
        handle: String,
        writer: Box<LogWriter>,
        snapshot: PgSnapshot,
    },
    /// Remove a shape (DELETE, failed snapshot).
    Remove {
        handle: String,
        reply: Option<oneshot::Sender<()>>,
    },
    /// Find or register the dependency of a subquery (pinned until its shape registers).
    EnsureDependency {
        sub: Arc<Subquery>,
        table: Arc<TableInfo>,
        reply: oneshot::Sender<Result<Ensured, DependencyError>>,
    },
    /// A new dependency's snapshot: load it and apply what it buffered.
    DependencySnapshot {
        id: DepId,
        members: Members,
        snapshot: PgSnapshot,
        reply: oneshot::Sender<Result<(), DependencyError>>,
    },
    /// A creation failed: release its dependency pins (and drop a dependency still loading).
    ReleaseDependencies {
        identities: Vec<String>,
        abandoned: Option<DepId>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("replication stream")]
    Stream(#[from] pgwire_replication::PgWireError),
    #[error("replication stream ended")]
    Ended,
    #[error("undecodable replication message")]
    Decode(#[source] pgoutput::DecodeError),
    #[error(
        "a storage sync failed: logs were cut back to their durable length; the stream restarts \
         from the acknowledged position"
    )]
    StorageRewound,
}

/// Why making a batch durable failed.
#[derive(Debug, thiserror::Error)]
enum FlushFailure {
    #[error("shape log write failed")]
    Write(#[source] std::io::Error),
    #[error("shape log sync failed")]
    Sync(#[source] std::io::Error),
    #[error("shape metadata write failed")]
    Seal(#[source] crate::storage::StorageError),
    #[error("cutting a log back to its durable length failed")]
    Rewind(#[source] RecoverError),
}

/// A storage failure the pipeline is waiting out (see the module invariants).
struct StorageFault {
    /// A sync failed: unsynced log bytes are lost; rewind them, then restart the stream.
    rewind: bool,
    since: std::time::Instant,
    attempts: u32,
    backoff: Duration,
    retry_at: tokio::time::Instant,
    last_report: std::time::Instant,
}

/// Retry delays after a storage failure: doubling from the first to the cap.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While a failure lasts, a reminder is logged at most this often (one error line when it
/// starts, one info line when it ends: never a line per attempt).
const FAULT_REPORT_EVERY: Duration = Duration::from_secs(60);

struct BufferedTxn {
    xid: u32,
    entries: Vec<(LogOffset, Vec<u8>)>,
    truncate: bool,
}

struct Slot {
    shape: Arc<Shape>,
    oid: u32,
    writer: Option<LogWriter>,
    /// Commit LSN of the last transaction stored in the log (replay dedupe).
    latest_tx: u64,
    /// Boxed, like `buffer`: most slots never need it, and 100k idle slots would carry its
    /// inline size.
    filter: Option<Box<PgSnapshot>>,
    /// The transaction the skip decision below belongs to.
    txn_mark: u64,
    skip: bool,
    held: Option<OpenEntry>,
    /// Snapshot still running: transactions are buffered here.
    // Boxed on purpose: only a slot whose snapshot runs has a buffer, and `None` of a boxed
    // Vec is 8 bytes where an inline one is 24, in every idle slot.
    #[allow(clippy::box_collection)]
    buffer: Option<Box<Vec<BufferedTxn>>>,
    current: Vec<OpenEntry>,
    current_truncate: bool,
}

struct Txn {
    lsn: u64,
    xid: u32,
    n: u64,
    touched: Vec<ShapeId>,
    removals: Vec<ShapeId>,
}

/// Pending log bytes above which the pipeline writes them out (flushing between transactions,
/// spilling inside one).
const SPILL_BYTES: usize = 8 << 20;

pub struct Pipeline {
    engine: Arc<Engine>,
    router: Router,
    /// Materialised subquery results, maintained before the shapes see each change.
    deps: Dependencies,
    /// Boxed: a `Slot` is ~430 B, and a map of them inline would leave that much unused per
    /// empty bucket (a hash map runs 44–88% full).
    slots: HashMap<ShapeId, Box<Slot>>,
    /// The table descriptions the shapes were built with, per table (see [`Layouts`]).
    layouts: Layouts,
    ids: HashMap<Arc<str>, ShapeId>,
    next_id: ShapeId,
    txn: Option<Txn>,
    dirty: Vec<ShapeId>,
    completing: Vec<(ShapeId, PgSnapshot)>,
    /// Last commit seen but not yet made durable: (commit lsn, end lsn).
    unflushed: Option<(u64, u64)>,
    candidates: Vec<ShapeId>,
    entries: Vec<OpenEntry>,
    /// Approximate log bytes produced since the last write-out (keeps this O(1) per change).
    unwritten: usize,
    decode_error: Option<pgoutput::DecodeError>,
    fault: Option<StorageFault>,
    /// Stream counts since the last flush (published to the metrics by each flush).
    tally: StreamTally,
}

/// What [`ReplicationClient::recv`] returns, kept in order.
type StreamItem = Result<Option<ReplicationEvent>, pgwire_replication::PgWireError>;

/// Events read from the stream before the pipeline ran (see [`prefetch`]), in order; the last
/// may be the stream's end or error.
#[derive(Default)]
pub struct Prefetched {
    items: std::collections::VecDeque<StreamItem>,
}

impl Prefetched {
    /// A stream that failed (its events, if any were read, are lost with it): the pipeline
    /// reports the error and the stream is restarted from the acknowledged position.
    pub fn failed(why: &str) -> Prefetched {
        Prefetched {
            items: [Err(pgwire_replication::PgWireError::Task(why.to_owned()))].into(),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Bytes of events [`prefetch`] holds at most (then Postgres waits, as it would for the
/// pipeline).
pub const PREFETCH_BYTES: usize = 64 << 20;

/// Reads events from `client` into memory until `done` fires, the stream ends, or `limit`
/// bytes are held. Startup runs this while stored shapes are restored, so Postgres keeps
/// decoding the WAL backlog instead of waiting for the restore (issue 6: at 100k shapes the
/// restore is over a second the walsender would otherwise stand idle). Nothing read here is
/// acknowledged before the pipeline has made it durable, as for any event.
pub async fn prefetch(
    client: &mut ReplicationClient,
    mut done: oneshot::Receiver<()>,
    limit: usize,
) -> Prefetched {
    let mut items = std::collections::VecDeque::new();
    let mut bytes = 0usize;
    while bytes < limit {
        tokio::select! {
            biased;
            _ = &mut done => break,
            item = client.recv() => {
                let end = !matches!(item, Ok(Some(_)));
                // Per event: its data, plus the queue slot and the event's own fields.
                bytes += 64 + match &item {
                    Ok(Some(ReplicationEvent::XLogData { data, .. })) => data.len(),
                    _ => 0,
                };
                items.push_back(item);
                if end {
                    break;
                }
            }
        }
    }
    Prefetched { items }
}

/// The next event: prefetched ones first, then the stream's. Cancel-safe (it runs in a
/// `select!`): an event is taken only in the poll that returns it.
async fn next_event(prefetched: &mut Prefetched, client: &mut ReplicationClient) -> StreamItem {
    if prefetched.items.is_empty() {
        return client.recv().await;
    }
    // Always ready, unlike the channel: take part in tokio's budget as `recv` does, so a long
    // replay still yields to the runtime (and lets a due flush run). Before the pop, so a
    // cancelled wait loses nothing.
    tokio::task::consume_budget().await;
    match prefetched.items.pop_front() {
        Some(item) => item,
        None => client.recv().await,
    }
}

impl Pipeline {
    pub fn new(engine: Arc<Engine>) -> Pipeline {
        Pipeline {
            engine,
            router: Router::new(),
            deps: Dependencies::new(),
            slots: HashMap::new(),
            layouts: Layouts::default(),
            ids: HashMap::new(),
            next_id: 0,
            txn: None,
            dirty: Vec::new(),
            completing: Vec::new(),
            unflushed: None,
            candidates: Vec::new(),
            entries: Vec::new(),
            unwritten: 0,
            decode_error: None,
            fault: None,
            tally: StreamTally::default(),
        }
    }

    /// Adds a shape restored from storage (complete, with a recovered writer).
    pub fn restore(&mut self, shape: Arc<Shape>, writer: LogWriter, snapshot: Option<PgSnapshot>) {
        let id = self.alloc(&shape);
        let latest_tx = writer.latest().tx;
        let durable = shape.view.get().durable_len;
        self.engine.metrics.storage_log_bytes.add_u64(durable);
        let slot = Slot::new(shape, Some(writer), latest_tx, snapshot, None);
        self.insert_slot(id, slot);
    }

    /// Startup: rebuilds the subquery dependencies of the restored shapes from fresh snapshots,
    /// before the stream resumes (replayed changes visible in them are then skipped, with
    /// the conservative invalidation of the module `shape::dependency`). A shape whose
    /// dependencies cannot be rebuilt is removed (its clients refetch).
    pub async fn rebuild_dependencies(&mut self) {
        let mut with_subqueries: Vec<(ShapeId, Arc<Shape>)> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.shape
                    .def
                    .where_clause
                    .as_ref()
                    .is_some_and(|w| !w.subqueries().is_empty())
            })
            .map(|(&id, s)| (id, s.shape.clone()))
            .collect();
        with_subqueries.sort_by_key(|(id, _)| *id);
        for (id, shape) in with_subqueries {
            let Some(w) = shape.def.where_clause.as_ref() else {
                continue;
            };
            let ok = self.rebuild_clause(w, &shape.def.inner_tables).await
                && self.deps.attach(Dependent::Shape(id), w, false);
            if !ok {
                tracing::warn!(handle = %shape.handle, "subquery dependencies could not be rebuilt: shape removed");
                self.remove_now(id);
            }
        }
        self.deps.reset_pins();
    }

    async fn rebuild_clause(
        &mut self,
        w: &crate::shape::where_clause::WhereClause,
        tables: &[Arc<TableInfo>],
    ) -> bool {
        for (sub, _) in w.subqueries() {
            if let Some(inner) = &sub.where_clause
                && !Box::pin(self.rebuild_clause(inner, tables)).await
            {
                return false;
            }
            let Some(table) = tables.iter().find(|t| t.oid == sub.table.oid) else {
                return false;
            };
            let ensured = match self.deps.ensure(&sub, table.clone()) {
                Ok(e) => e,
                Err(_) => return false,
            };
            if !ensured.needs_snapshot {
                continue;
            }
            match crate::pg::snapshot::run_dependency(&self.engine.query, &sub).await {
                Ok((snapshot, members)) => {
                    if self.deps.load(ensured.id, members, snapshot, true).is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "subquery snapshot failed");
                    self.deps.abandon(ensured.id);
                    return false;
                }
            }
        }
        true
    }

    fn alloc(&mut self, shape: &Shape) -> ShapeId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(shape.handle.clone(), id);
        id
    }

    fn insert_slot(&mut self, id: ShapeId, slot: Slot) {
        let entries = slot
            .shape
            .def
            .where_clause
            .as_ref()
            .and_then(|w| w.index_entries());
        self.router.add(slot.oid, id, entries);
        self.layouts.add(slot.oid, &slot.shape.def.table);
        self.slots.insert(id, Box::new(slot));
    }

    /// Runs until shutdown or a stream error (the caller reconnects and calls `run` again).
    /// `prefetched`: events already taken from this `client` (see [`prefetch`]), handled
    /// first. Whatever of them is left when `run` returns is dropped: the next connection
    /// replays from the acknowledged position.
    pub async fn run(
        &mut self,
        client: &mut ReplicationClient,
        mut prefetched: Prefetched,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let result = self
            .run_inner(client, &mut prefetched, commands, shutdown)
            .await;
        // Whatever happens, complete transactions become durable; a partial one is dropped
        // (Postgres replays it).
        self.abort_txn();
        self.flush(Some(client));
        result
    }

    async fn run_inner(
        &mut self,
        client: &mut ReplicationClient,
        prefetched: &mut Prefetched,
        commands: &mut mpsc::Receiver<Command>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        loop {
            let in_txn = self.txn.is_some();
            // While storage fails, the stream is not read: the client's channel fills and it
            // keeps answering keepalives with the (unchanged) acknowledged position.
            let healthy = self.fault.is_none();
            let needs_flush =
                healthy && !in_txn && (self.unflushed.is_some() || !self.dirty.is_empty());
            let retry_at = self.fault.as_ref().map(|f| f.retry_at);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(tokio::time::Instant::now)),
                    if retry_at.is_some() => self.retry_storage(client)?,
                ev = next_event(prefetched, client), if healthy => match ev? {
                    Some(ev) => {
                        self.on_event(client, ev);
                        if let Some(e) = self.decode_error.take() {
                            return Err(PipelineError::Decode(e));
                        }
                    }
                    None => return Err(PipelineError::Ended),
                },
                cmd = commands.recv(), if !in_txn => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return Ok(()),
                },
                () = std::future::ready(()), if needs_flush => self.flush(Some(client)),
            }
            if self.fault.is_none() && self.unwritten > SPILL_BYTES {
                if self.txn.is_none() {
                    self.flush(Some(client));
                } else {
                    self.spill();
                }
            }
        }
    }

    /// Writes the pending bytes of a large transaction to the files without publishing or
    /// acknowledging anything, so a transaction of any size streams in bounded memory.
    fn spill(&mut self) {
        self.unwritten = 0;
        let dirty = self.dirty.clone();
        let touched = self
            .txn
            .as_ref()
            .map(|t| t.touched.clone())
            .unwrap_or_default();
        let written = tokio::task::block_in_place(|| {
            for id in dirty.iter().chain(touched.iter()) {
                let Some(w) = self.slots.get_mut(id).and_then(|s| s.writer.as_mut()) else {
                    continue;
                };
                w.write_pending()?;
            }
            Ok(())
        });
        // Written or not, these logs now hold unsynced or pending bytes the flush must cover.
        for id in touched {
            if !self.dirty.contains(&id) {
                self.dirty.push(id);
            }
        }
        match written {
            Ok(()) => self.storage_recovered(),
            Err(e) => self.storage_failed(FlushFailure::Write(e)),
        }
    }

    /// Handles commands while no stream is connected (e.g. waiting for the lock).
    pub fn on_idle_command(&mut self, cmd: Command) {
        self.on_command(cmd);
        if !self.completing.is_empty() {
            self.flush(None);
        }
    }

    fn on_event(&mut self, client: &ReplicationClient, ev: ReplicationEvent) {
        match ev {
            ReplicationEvent::Begin { final_lsn, xid, .. } => {
                self.tally.wal_bytes += StreamTally::BEGIN_BYTES;
                self.begin(final_lsn.0, xid);
            }
            ReplicationEvent::Commit {
                lsn,
                end_lsn,
                commit_time_micros,
            } => {
                self.tally.wal_bytes += StreamTally::COMMIT_BYTES;
                self.commit(lsn.0, end_lsn.0, commit_time_micros);
            }
            ReplicationEvent::XLogData { data, wal_end, .. } => {
                self.tally.wal_bytes += data.len() as u64;
                self.engine.metrics.wal_received(wal_end.0);
                self.on_data(&data);
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                self.engine.metrics.wal_received(wal_end.0);
                if self.txn.is_none() && self.unflushed.is_none() && self.dirty.is_empty() {
                    // Everything seen is durable: let the slot advance over WAL of tables we do
                    // not publish, so it is not retained forever.
                    client.update_applied_lsn(wal_end);
                    self.engine.metrics.acknowledged(wal_end.0);
                }
            }
            ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
        }
    }

    fn begin(&mut self, lsn: u64, xid: u32) {
        if self.txn.is_some() {
            tracing::warn!("Begin inside a transaction; dropping the partial one");
            self.abort_txn();
        }
        self.txn = Some(Txn {
            lsn,
            xid,
            n: 0,
            touched: Vec::new(),
            removals: Vec::new(),
        });
    }

    fn on_data(&mut self, data: &Bytes) {
        let msg = match pgoutput::decode(data) {
            Ok(m) => m,
            Err(e) => {
                // Skipping it could lose a change: stop here, acknowledge nothing past it, and
                // let the supervisor reconnect (Postgres resends from the acknowledged point).
                tracing::error!(error = %e, "undecodable pgoutput message: restarting the stream");
                self.decode_error = Some(e);
                return;
            }
        };
        match msg {
            LogicalMessage::Begin(b) => self.begin(b.final_lsn, b.xid),
            LogicalMessage::Commit(c) => self.commit(c.commit_lsn, c.end_lsn, c.commit_time),
            LogicalMessage::Relation(r) => self.on_relation(r),
            LogicalMessage::Insert(i) => self.on_change(i.relation_oid, None, Some(&i.new)),
            // Without the full old row (REPLICA IDENTITY not FULL) moves across the where
            // boundary cannot be computed: the table's shapes are invalidated, never guessed.
            LogicalMessage::Update(u) => match &u.old {
                Some(old) => self.on_change(u.relation_oid, Some(old), Some(&u.new)),
                None => {
                    self.count_change();
                    self.invalidate_table(u.relation_oid, "an update without the old row");
                }
            },
            LogicalMessage::Delete(d) => match &d.old {
                Some(old) => self.on_change(d.relation_oid, Some(old), None),
                None => {
                    self.count_change();
                    self.invalidate_table(d.relation_oid, "a delete without the old row");
                }
            },
            LogicalMessage::Truncate(t) => {
                for oid in t.relation_oids {
                    self.on_truncate(oid);
                }
                self.count_change();
            }
            LogicalMessage::Origin(_) | LogicalMessage::Type(_) | LogicalMessage::Message(_) => {}
        }
    }

    /// Every change message takes an op position, whether or not a shape uses it.
    fn count_change(&mut self) {
        if let Some(txn) = &mut self.txn {
            txn.n += 1;
        }
    }

    /// A relation message after DDL. Shapes whose columns are all intact carry on with the
    /// table's new layout; only shapes that use an added, dropped or altered column, select all
    /// columns, or lost their table name are invalidated (Electric rotates them all).
    fn on_relation(&mut self, r: pgoutput::Relation) {
        let mut changed = false;
        if self.deps.has_table(r.oid)
            && let Some(t) = self.deps.tables().into_iter().find(|t| t.oid == r.oid)
        {
            let same_layout = same_layout(&t, &r);
            if !same_layout {
                tracing::info!(
                    oid = r.oid,
                    "a subquery's table changed: its dependencies break"
                );
                let effects = self.deps.break_table(r.oid);
                self.apply_effects(effects);
                changed = true;
            }
        }
        // Usually every shape of the table was built with a description the message agrees
        // with (a reconnect, an autoanalyze): nothing to do, and no shape is visited.
        let shapes = if self.layouts.all_agree(&r) {
            Vec::new()
        } else {
            self.router.shapes_of(r.oid)
        };
        for id in shapes {
            let Some(slot) = self.slots.get(&id) else {
                continue;
            };
            let t = &slot.shape.def.table;
            let same_layout = same_layout(t, &r);
            if same_layout {
                continue;
            }
            changed = true;
            let relaid = if slot.buffer.is_none() {
                relayout(&slot.shape, &r).filter(|s| {
                    // The recompiled clause's subqueries read the same live sets.
                    s.def
                        .where_clause
                        .as_ref()
                        .is_none_or(|w| self.deps.bind_clause(w))
                })
            } else {
                None
            };
            match relaid {
                Some(shape) => {
                    tracing::info!(handle = %shape.handle, oid = r.oid, "table schema changed; shape unaffected");
                    self.router.remove(r.oid, id);
                    let entries = shape
                        .def
                        .where_clause
                        .as_ref()
                        .and_then(|w| w.index_entries());
                    self.router.add(r.oid, id, entries);
                    self.engine.registry.insert(shape.clone());
                    if let Some(slot) = self.slots.get_mut(&id) {
                        self.layouts.remove(r.oid, &slot.shape.def.table);
                        self.layouts.add(r.oid, &shape.def.table);
                        slot.shape = shape;
                    }
                }
                None => {
                    tracing::info!(event = "shape_removed", reason = "schema_changed", handle = %self.slots.get(&id).map_or("", |s| &*s.shape.handle), oid = r.oid, "table schema changed: shape invalidated");
                    self.remove_now(id);
                }
            }
        }
        if changed {
            self.engine.forget_table(r.oid);
        }
    }

    fn invalidate_table(&mut self, oid: u32, why: &str) {
        let effects = self.deps.break_table(oid);
        self.apply_effects(effects);
        let ids = self.router.shapes_of(oid);
        if !ids.is_empty() {
            tracing::error!(
                oid,
                why,
                "table is not REPLICA IDENTITY FULL: its shapes are invalidated"
            );
        }
        for id in ids {
            self.remove_now(id);
        }
    }

    fn on_truncate(&mut self, oid: u32) {
        if let Some(txn) = self.txn.as_ref() {
            let effects = self.deps.on_truncate(oid, (txn.lsn, txn.xid));
            self.apply_effects(effects);
        }
        for id in self.router.shapes_of(oid) {
            self.invalidate_in_txn(id);
        }
    }

    /// Applies what subquery dependencies ask of their shapes.
    fn apply_effects(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Invalidate(id) => self.invalidate_in_txn(id),
                Effect::Remove(id) => match self.txn.as_mut() {
                    Some(t) => {
                        if !t.removals.contains(&id) {
                            t.removals.push(id);
                        }
                    }
                    None => self.remove_now(id),
                },
            }
        }
    }

    /// TRUNCATE's rule: the shape is invalidated by the current transaction unless that
    /// transaction is visible in its snapshot (or already stored). A shape still taking its
    /// snapshot decides when the snapshot is known.
    fn invalidate_in_txn(&mut self, id: ShapeId) {
        let Some(txn) = self.txn.as_ref() else { return };
        let (lsn, xid) = (txn.lsn, txn.xid);
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.buffer.is_some() {
            slot.current_truncate = true;
            if let Some(t) = self.txn.as_mut()
                && !t.touched.contains(&id)
            {
                t.touched.push(id);
            }
        } else if !slot.decide(lsn, xid)
            && let Some(t) = self.txn.as_mut()
            && !t.removals.contains(&id)
        {
            t.removals.push(id);
        }
    }

    fn on_change(&mut self, oid: u32, old: Option<&Tuple>, new: Option<&Tuple>) {
        let Some(txn) = self.txn.as_mut() else { return };
        let n = txn.n;
        txn.n += 1;
        if !self.router.has_table(oid) && !self.deps.has_table(oid) {
            return;
        }
        let info = TxnInfo {
            lsn: txn.lsn,
            xid: txn.xid,
        };
        // A value that is not UTF-8 text cannot be served; rather than drop the change, the
        // table's shapes are invalidated (clients resync from a fresh snapshot).
        let old_row = match old.map(|t| row_of(t, None)) {
            Some(None) => return self.invalidate_table(oid, "a value that is not UTF-8 text"),
            o => o.flatten(),
        };
        let new_row = match new.map(|t| row_of(t, old_row.as_deref())) {
            Some(None) => return self.invalidate_table(oid, "a value that is not UTF-8 text"),
            n => n.flatten(),
        };
        let change = match (&old_row, &new_row) {
            (None, Some(n)) => RowChange::Insert { new: n },
            (Some(o), Some(n)) => RowChange::Update { old: o, new: n },
            (Some(o), None) => RowChange::Delete { old: o },
            (None, None) => return,
        };
        // Subquery sets first: the shapes' changes that follow are evaluated against the
        // set as of this point of the stream.
        if self.deps.has_table(oid) {
            let effects = self.deps.on_change(
                oid,
                (info.lsn, info.xid),
                old_row.as_deref(),
                new_row.as_deref(),
            );
            self.apply_effects(effects);
            if !self.router.has_table(oid) {
                return;
            }
        }
        let images: Vec<&[Option<&str>]> = [old_row.as_deref(), new_row.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let mut candidates = std::mem::take(&mut self.candidates);
        self.router.candidates(oid, &images, &mut candidates);
        for &id in &candidates {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if slot.buffer.is_none() && slot.decide(info.lsn, info.xid) {
                continue;
            }
            if slot.shape.def.table.columns.len() != images[0].len() {
                continue;
            }
            let mut entries = std::mem::take(&mut self.entries);
            entries.clear();
            convert::convert(&slot.shape.def, change, info, n, &mut entries);
            if !entries.is_empty() {
                self.tally.routed += 1;
                if let Some(t) = self.txn.as_mut()
                    && !t.touched.contains(&id)
                {
                    t.touched.push(id);
                }
                for e in entries.drain(..) {
                    self.unwritten += e.len();
                    slot.push(e);
                }
            }
            self.entries = entries;
        }
        self.candidates = candidates;
    }

    fn commit(&mut self, _lsn: u64, end_lsn: u64, commit_time_micros: i64) {
        let Some(txn) = self.txn.take() else { return };
        self.tally.transactions += 1;
        self.tally.changes += txn.n;
        self.tally.committed_at = Some(commit_time_micros);
        self.deps.commit(txn.lsn, txn.xid);
        for id in &txn.touched {
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            if let Some(buffer) = slot.buffer.as_mut() {
                let mut entries: Vec<(LogOffset, Vec<u8>)> = Vec::with_capacity(slot.current.len());
                let count = slot.current.len();
                for (i, e) in slot.current.drain(..).enumerate() {
                    entries.push(e.finish(i + 1 == count));
                }
                buffer.push(BufferedTxn {
                    xid: txn.xid,
                    entries,
                    truncate: slot.current_truncate,
                });
                slot.current_truncate = false;
            } else if let (Some(h), Some(w)) = (slot.held.take(), slot.writer.as_mut()) {
                let (off, json) = h.finish(true);
                w.append_entry(off, &json, true);
                slot.latest_tx = txn.lsn;
                if !self.dirty.contains(id) {
                    self.dirty.push(*id);
                }
            }
        }
        for id in txn.removals {
            tracing::info!(event = "shape_removed", reason = "truncated", handle = %self.slots.get(&id).map_or("", |s| &*s.shape.handle), "table truncated: shape invalidated");
            self.remove_now(id);
        }
        self.unflushed = Some((txn.lsn, end_lsn));
    }

    /// Drops a partially received transaction.
    fn abort_txn(&mut self) {
        let Some(txn) = self.txn.take() else { return };
        let effects = self.deps.abort();
        self.apply_effects(effects);
        for id in txn.touched {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.held = None;
                slot.current.clear();
                slot.current_truncate = false;
                slot.txn_mark = 0;
                if let Some(w) = slot.writer.as_mut() {
                    w.discard_uncommitted();
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Register { shape, reply } => {
                let id = self.alloc(&shape);
                // Its subqueries' dependencies were made ready (and pinned) by the engine.
                let attached = shape.def.where_clause.as_ref().is_none_or(|w| {
                    let bound = self.deps.bind_clause(w);
                    self.deps.attach(Dependent::Shape(id), w, true) && bound
                });
                let slot = Slot::new(shape, None, 0, None, Some(Vec::new()));
                self.insert_slot(id, slot);
                if attached {
                    let _ = reply.send(());
                } else {
                    // Dropping `reply` fails the creation.
                    self.remove_now(id);
                }
            }
            Command::EnsureDependency { sub, table, reply } => {
                let _ = reply.send(self.deps.ensure(&sub, table));
            }
            Command::DependencySnapshot {
                id,
                members,
                snapshot,
                reply,
            } => {
                let result = self.deps.load(id, members, snapshot, false);
                let _ = reply.send(result.map(|effects| self.apply_effects(effects)));
            }
            Command::ReleaseDependencies {
                identities,
                abandoned,
            } => {
                if let Some(id) = abandoned {
                    self.deps.abandon(id);
                }
                self.deps.unpin(&identities);
            }
            Command::SnapshotDone {
                handle,
                writer,
                snapshot,
            } => {
                let Some(&id) = self.ids.get(handle.as_str()) else {
                    return;
                };
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                // The pipeline owns the log's storage accounting from here on.
                let durable = slot.shape.view.get().durable_len;
                self.engine.metrics.storage_log_bytes.add_u64(durable);
                slot.writer = Some(*writer);
                slot.filter = Some(Box::new(snapshot.clone()));
                let buffered = slot.buffer.take().map(|b| *b).unwrap_or_default();
                let mut truncated = false;
                for t in buffered {
                    if slot.filter.as_ref().is_some_and(|f| f.visible(t.xid)) {
                        continue;
                    }
                    if slot.filter.as_ref().is_some_and(|f| f.after(t.xid)) {
                        slot.filter = None;
                    }
                    if t.truncate {
                        truncated = true;
                        break;
                    }
                    if let Some(w) = slot.writer.as_mut() {
                        for (i, (off, json)) in t.entries.iter().enumerate() {
                            w.append_entry(*off, json, i + 1 == t.entries.len());
                        }
                        slot.latest_tx = slot.latest_tx.max(w.latest().tx);
                    }
                }
                // The skip decision must be re-made for the current (next) transaction.
                slot.txn_mark = 0;
                if truncated {
                    self.remove_now(id);
                    return;
                }
                if !self.dirty.contains(&id) {
                    self.dirty.push(id);
                }
                self.completing.push((id, snapshot));
                // No flush here: the run loop flushes once the stream and the command queue
                // are momentarily empty, so snapshots finishing together are sealed by one
                // flush (one sync) instead of one each.
            }
            Command::Remove { handle, reply } => {
                if let Some(&id) = self.ids.get(handle.as_str()) {
                    self.remove_now(id);
                } else {
                    self.engine.registry.remove(&handle);
                    self.engine.storage.remove_shape(&handle);
                }
                if let Some(r) = reply {
                    let _ = r.send(());
                }
            }
        }
    }

    /// Removes every shape (WAL continuity broke).
    pub fn purge(&mut self) {
        self.engine.forget_publishable();
        let ids: Vec<ShapeId> = self.slots.keys().copied().collect();
        for id in ids {
            self.remove_now(id);
        }
        for s in self.engine.registry.all() {
            self.engine.registry.remove(&s.handle);
        }
        if let Err(e) = self.engine.storage.remove_all_shapes() {
            tracing::error!(error = %e, "purging shape storage failed");
        }
    }

    fn remove_now(&mut self, id: ShapeId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        self.router.remove(slot.oid, id);
        self.layouts.remove(slot.oid, &slot.shape.def.table);
        self.deps
            .detach_shape(id, slot.shape.def.where_clause.as_ref());
        self.ids.remove(&*slot.shape.handle);
        self.dirty.retain(|&d| d != id);
        self.completing.retain(|(d, _)| *d != id);
        if let Some(t) = self.txn.as_mut() {
            t.touched.retain(|&d| d != id);
        }
        self.engine.registry.remove(&slot.shape.handle);
        if slot.writer.is_some() {
            let durable = slot.shape.view.get().durable_len;
            self.engine.metrics.storage_log_bytes.sub_u64(durable);
        }
        slot.shape.view.update(|v| v.gone = true);
        self.engine.storage.remove_shape(&slot.shape.handle);
    }

    /// Writes and syncs every dirty log, marks completed snapshots durable, publishes the new
    /// views, advances `G`, and acknowledges the last commit. Skipped while storage is failing
    /// (the retry timer flushes then).
    fn flush(&mut self, client: Option<&ReplicationClient>) {
        if self.txn.is_some() || self.fault.is_some() {
            return;
        }
        self.try_flush(client);
    }

    fn try_flush(&mut self, client: Option<&ReplicationClient>) {
        self.unwritten = 0;
        let dirty = std::mem::take(&mut self.dirty);
        let completing = std::mem::take(&mut self.completing);
        let started = std::time::Instant::now();
        let durable = tokio::task::block_in_place(|| self.make_durable(&dirty, &completing));
        if let Err(failure) = durable {
            // Nothing was published or acknowledged: the whole batch is retried.
            self.dirty = dirty;
            self.completing = completing;
            self.storage_failed(failure);
            return;
        }
        if let Some((lsn, _)) = self.unflushed {
            self.engine.global_lsn.fetch_max(lsn, Ordering::AcqRel);
        }
        let took = started.elapsed();
        let mut published: u64 = 0;
        for id in dirty.iter().chain(completing.iter().map(|(id, _)| id)) {
            if let Some(slot) = self.slots.get_mut(id)
                && let Some(w) = slot.writer.as_mut()
            {
                let before = slot.shape.view.get().durable_len;
                w.publish();
                published += slot.shape.view.get().durable_len.saturating_sub(before);
            }
        }
        let metrics = &self.engine.metrics;
        metrics.storage_log_bytes.add_u64(published);
        let wrote = !dirty.is_empty() || !completing.is_empty();
        metrics.flushed(&mut self.tally, wrote.then_some(took), published);
        if let (Some((_, end)), Some(c)) = (self.unflushed.take(), client) {
            c.update_applied_lsn(Lsn(end));
            metrics.acknowledged(end);
        }
        self.storage_recovered();
    }

    /// Writes every dirty log, syncs them together, then seals completed snapshots. Stops at
    /// the first failure.
    fn make_durable(
        &mut self,
        dirty: &[ShapeId],
        completing: &[(ShapeId, PgSnapshot)],
    ) -> Result<(), FlushFailure> {
        for id in dirty {
            if let Some(w) = self.slots.get_mut(id).and_then(|s| s.writer.as_mut()) {
                w.write_pending().map_err(FlushFailure::Write)?;
            }
        }
        let files: Vec<&FsFile> = dirty
            .iter()
            .filter_map(|id| self.slots.get(id)?.writer.as_ref()?.unsynced_file())
            .collect();
        self.engine
            .storage
            .fs()
            .sync_files(&files)
            .map_err(FlushFailure::Sync)?;
        for id in dirty {
            if let Some(w) = self.slots.get_mut(id).and_then(|s| s.writer.as_mut()) {
                w.mark_synced();
            }
        }
        let metas: Vec<(&str, ShapeMeta)> = completing
            .iter()
            .filter_map(|(id, snapshot)| {
                let slot = self.slots.get(id)?;
                let def = &slot.shape.def;
                Some((
                    &*slot.shape.handle,
                    ShapeMeta {
                        handle: slot.shape.handle.to_string(),
                        request: def.request.clone(),
                        table: (*def.table).clone(),
                        inner_tables: def.inner_tables.iter().map(|t| (**t).clone()).collect(),
                        snapshot: Some(snapshot.clone()),
                        complete: true,
                    },
                ))
            })
            .collect();
        let refs: Vec<(&str, &ShapeMeta)> = metas.iter().map(|(h, m)| (*h, m)).collect();
        self.engine
            .storage
            .seal_shapes(&refs)
            .map_err(FlushFailure::Seal)?;
        Ok(())
    }

    /// Enters (or stays in) the storage-failure state and schedules the next attempt.
    fn storage_failed(&mut self, failure: FlushFailure) {
        let rewind = matches!(failure, FlushFailure::Sync(_));
        let now = std::time::Instant::now();
        match self.fault.as_mut() {
            None => {
                tracing::error!(
                    event = "storage_failing",
                    error = %failure,
                    source = ?std::error::Error::source(&failure),
                    "storage is failing: nothing more is acknowledged or published until it \
                     recovers; retrying with backoff"
                );
                self.engine.storage_failing.store(true, Ordering::Release);
                self.fault = Some(StorageFault {
                    rewind,
                    since: now,
                    attempts: 1,
                    backoff: RETRY_FIRST,
                    retry_at: tokio::time::Instant::now() + RETRY_FIRST,
                    last_report: now,
                });
            }
            Some(f) => {
                f.rewind |= rewind;
                f.attempts += 1;
                f.backoff = (f.backoff * 2).min(RETRY_MAX);
                f.retry_at = tokio::time::Instant::now() + f.backoff;
                if now.duration_since(f.last_report) >= FAULT_REPORT_EVERY {
                    f.last_report = now;
                    tracing::warn!(
                        error = %failure,
                        source = ?std::error::Error::source(&failure),
                        attempts = f.attempts,
                        failing_for_s = now.duration_since(f.since).as_secs(),
                        "storage still failing"
                    );
                } else {
                    tracing::debug!(error = %failure, attempts = f.attempts, "storage retry failed");
                }
            }
        }
    }

    fn storage_recovered(&mut self) {
        if let Some(f) = self.fault.take() {
            tracing::info!(
                event = "storage_recovered",
                attempts = f.attempts,
                failed_for_ms = u64::try_from(f.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "storage recovered"
            );
            self.engine.storage_failing.store(false, Ordering::Release);
        }
    }

    /// The retry timer fired: redo the failed step.
    fn retry_storage(&mut self, client: &ReplicationClient) -> Result<(), PipelineError> {
        let Some(fault) = self.fault.as_ref() else {
            return Ok(());
        };
        if fault.rewind {
            return match tokio::task::block_in_place(|| self.rewind_unsynced()) {
                Ok(()) => {
                    self.storage_recovered();
                    Err(PipelineError::StorageRewound)
                }
                Err(e) => {
                    self.storage_failed(FlushFailure::Rewind(e));
                    Ok(())
                }
            };
        }
        if self.txn.is_some() {
            self.spill();
        } else {
            self.try_flush(Some(client));
        }
        Ok(())
    }

    /// After a failed sync: cuts every log the sync covered back to its durable length and
    /// forgets the transactions received since the last acknowledgement (Postgres resends them
    /// when the stream restarts). Shapes still being created are removed instead (their
    /// clients refetch): the transactions buffered for them may lie below the acknowledged
    /// position, which Postgres would not resend.
    fn rewind_unsynced(&mut self) -> Result<(), RecoverError> {
        let creating: Vec<ShapeId> = self
            .slots
            .iter()
            .filter(|(_, s)| s.buffer.is_some())
            .map(|(id, _)| *id)
            .chain(self.completing.iter().map(|(id, _)| *id))
            .collect();
        for id in creating {
            tracing::warn!(handle = ?self.slots.get(&id).map(|s| s.shape.handle.clone()), "shape being created dropped after a storage sync failure");
            self.remove_now(id);
        }
        for id in self.dirty.clone() {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let Some(w) = slot.writer.as_mut() else {
                continue;
            };
            w.rewind()?;
            slot.latest_tx = w.latest().tx;
            slot.held = None;
            slot.current.clear();
            slot.current_truncate = false;
            slot.txn_mark = 0;
        }
        self.dirty.clear();
        self.unflushed = None;
        self.unwritten = 0;
        Ok(())
    }
}

impl Slot {
    fn new(
        shape: Arc<Shape>,
        writer: Option<LogWriter>,
        latest_tx: u64,
        filter: Option<PgSnapshot>,
        buffer: Option<Vec<BufferedTxn>>,
    ) -> Slot {
        Slot {
            oid: shape.def.table.oid,
            shape,
            writer,
            latest_tx,
            filter: filter.map(Box::new),
            txn_mark: 0,
            skip: false,
            held: None,
            buffer: buffer.map(Box::new),
            current: Vec::new(),
            current_truncate: false,
        }
    }

    /// Whether this (complete) shape skips the transaction: already stored, or visible in its
    /// snapshot. Decided once per transaction.
    fn decide(&mut self, lsn: u64, xid: u32) -> bool {
        // Checked before the cached decision: a transaction replayed after a reconnect has the
        // same LSN as its first delivery and must not be applied twice.
        if lsn <= self.latest_tx {
            return true;
        }
        if self.txn_mark != lsn {
            self.txn_mark = lsn;
            self.skip =
                lsn <= self.latest_tx || self.filter.as_ref().is_some_and(|f| f.visible(xid));
            if !self.skip && self.filter.as_ref().is_some_and(|f| f.after(xid)) {
                self.filter = None;
            }
        }
        self.skip
    }

    fn push(&mut self, e: OpenEntry) {
        if self.buffer.is_some() {
            self.current.push(e);
            return;
        }
        if let (Some(prev), Some(w)) = (self.held.take(), self.writer.as_mut()) {
            let (off, json) = prev.finish(false);
            w.append_entry(off, &json, false);
        }
        self.held = Some(e);
    }
}

/// Text values of a tuple as a row (`None` = NULL); unchanged TOAST values come from `old`.
/// `None` overall when a value is not valid UTF-8 text.
fn row_of<'a>(t: &'a Tuple, old: Option<&[Option<&'a str>]>) -> Option<Vec<Option<&'a str>>> {
    let mut row = Vec::with_capacity(t.0.len());
    for (i, v) in t.0.iter().enumerate() {
        row.push(match v {
            TupleValue::Null => None,
            TupleValue::Text(b) => Some(std::str::from_utf8(b).ok()?),
            TupleValue::UnchangedToast => old.and_then(|o| o.get(i).copied().flatten()),
            TupleValue::Binary(_) => return None,
        });
    }
    Some(row)
}

/// The shape rebuilt for a table's new column layout, or `None` when the change touches it: a
/// rename, a table without a primary key (its key is every column), a shape selecting every
/// column, or any change to a column it selects, filters on or keys by.
fn relayout(shape: &Shape, r: &pgoutput::Relation) -> Option<Arc<Shape>> {
    use crate::shape::table::{ColumnInfo, TableInfo};
    let old = &shape.def.table;
    if old.schema != r.namespace
        || old.name != r.name
        || !old.has_pk
        || shape.def.request.columns.is_none()
    {
        return None;
    }
    let columns: Vec<ColumnInfo> = r
        .columns
        .iter()
        .map(|rc| match old.columns.iter().find(|c| c.name == rc.name) {
            Some(c) if !type_differs(c, rc.type_oid) => c.clone(),
            // A column this shape does not use; its type name is not needed.
            _ => ColumnInfo {
                name: rc.name.clone(),
                type_name: "unknown".into(),
                type_oid: rc.type_oid,
                type_mod: rc.type_modifier,
                dims: 0,
                not_null: false,
                type_kind: "b".into(),
                enum_labels: None,
            },
        })
        .collect();
    let def = &shape.def;
    let used = def
        .selected
        .iter()
        .chain(
            def.where_clause
                .iter()
                .flat_map(|w| w.referenced_columns().iter()),
        )
        .chain(old.pk.iter());
    for &i in used {
        let c = &old.columns[i];
        if columns.iter().find(|n| n.name == c.name) != Some(c) {
            return None;
        }
    }
    let pk = old
        .pk
        .iter()
        .map(|&i| columns.iter().position(|c| c.name == old.columns[i].name))
        .collect::<Option<Vec<usize>>>()?;
    let table = TableInfo {
        oid: old.oid,
        schema: old.schema.clone(),
        name: old.name.clone(),
        columns,
        pk,
        has_pk: true,
        generated: old.generated.clone(),
    };
    let new_def = crate::shape::definition::ShapeDef::compile_with(
        def.request.clone(),
        Arc::new(table),
        def.inner_tables.clone(),
    )
    .ok()?;
    if new_def.identity() != def.identity() || new_def.schema_header != def.schema_header {
        return None;
    }
    Some(Arc::new(Shape::new(
        shape.handle.clone(),
        Arc::new(new_def),
        shape.log.clone(),
        shape.view.clone(),
    )))
}

/// The distinct table descriptions (by content) the shapes of each table were built with, and
/// how many shapes use each: one or two per table, whatever the number of shapes.
///
/// Postgres sends a relation message at the first change of a table after every reconnect and
/// after every relcache invalidation of it (each autoanalyze, for one). Checking the message
/// against every shape of the table cost ~50 ms of pipeline time at 100k shapes, a stall every
/// live client saw. Checked against these descriptions instead, the message visits the shapes
/// only when one of them disagrees (DDL), and then exactly as before.
///
/// Invariant: for each table oid, the counts sum to the number of slots registered under it,
/// and each slot's description equals (by content) one of the entries.
#[derive(Debug, Default)]
struct Layouts(HashMap<u32, Vec<(Arc<TableInfo>, usize)>>);

impl Layouts {
    fn add(&mut self, oid: u32, t: &Arc<TableInfo>) {
        let known = self.0.entry(oid).or_default();
        match known
            .iter_mut()
            .find(|(d, _)| Arc::ptr_eq(d, t) || **d == **t)
        {
            Some((_, n)) => *n += 1,
            None => known.push((t.clone(), 1)),
        }
    }

    fn remove(&mut self, oid: u32, t: &TableInfo) {
        let Some(known) = self.0.get_mut(&oid) else {
            return;
        };
        if let Some(i) = known
            .iter()
            .position(|(d, _)| std::ptr::eq(&**d, t) || **d == *t)
        {
            known[i].1 -= 1;
            if known[i].1 == 0 {
                known.swap_remove(i);
            }
        }
        if known.is_empty() {
            self.0.remove(&oid);
        }
    }

    /// Whether `r` describes its table the way every shape of it was built.
    fn all_agree(&self, r: &pgoutput::Relation) -> bool {
        self.0
            .get(&r.oid)
            .is_none_or(|known| known.iter().all(|(t, _)| same_layout(t, r)))
    }
}

/// Whether a relation message describes the table as `t` knows it: same name, and the same
/// column names and types in the same order.
fn same_layout(t: &TableInfo, r: &pgoutput::Relation) -> bool {
    t.schema == r.namespace
        && t.name == r.name
        && t.columns.len() == r.columns.len()
        && t.columns
            .iter()
            .zip(&r.columns)
            .all(|(c, rc)| c.name == rc.name && !type_differs(c, rc.type_oid))
}

/// True when the stream reports a different type for a column than the shape was built with.
/// Array columns store their element type, so only scalars are compared.
fn type_differs(c: &crate::shape::table::ColumnInfo, stream_type_oid: u32) -> bool {
    c.dims == 0 && c.type_oid != stream_type_oid
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::pgoutput::{Relation, RelationColumn};
    use crate::shape::table::ColumnInfo;

    fn table(cols: &[(&str, u32)]) -> TableInfo {
        TableInfo {
            oid: 7,
            schema: "public".into(),
            name: "items".into(),
            columns: cols
                .iter()
                .map(|&(name, type_oid)| ColumnInfo::scalar(name, "x", type_oid))
                .collect(),
            pk: vec![0],
            has_pk: true,
            generated: Vec::new(),
        }
    }

    fn relation(cols: &[(&str, u32)]) -> Relation {
        Relation {
            oid: 7,
            namespace: "public".into(),
            name: "items".into(),
            replica_identity: b'f',
            columns: cols
                .iter()
                .map(|&(name, type_oid)| RelationColumn {
                    flags: 0,
                    name: name.into(),
                    type_oid,
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn a_relation_message_visits_shapes_only_when_a_description_disagrees() {
        let old = [("id", 23), ("title", 25)];
        let new = [("id", 23), ("title", 25), ("done", 16)];
        let mut layouts = Layouts::default();
        // No shape of the table: nothing to check.
        assert!(layouts.all_agree(&relation(&new)));

        // 1,000 shapes sharing one description, and one more with an equal copy of it.
        let shared = Arc::new(table(&old));
        for _ in 0..1000 {
            layouts.add(7, &shared);
        }
        let copy = Arc::new(table(&old));
        layouts.add(7, &copy);
        assert_eq!(layouts.0[&7].len(), 1, "grouped by content: {layouts:?}");
        assert_eq!(layouts.0[&7][0].1, 1001);
        assert!(layouts.all_agree(&relation(&old)));
        assert!(!layouts.all_agree(&relation(&new)));
        assert!(!layouts.all_agree(&relation(&[("id", 20), ("title", 25)])));

        // A shape rebuilt for the new layout: both descriptions are in use, so neither message
        // agrees with every shape.
        let newer = Arc::new(table(&new));
        layouts.remove(7, &shared);
        layouts.add(7, &newer);
        assert!(!layouts.all_agree(&relation(&old)));
        assert!(!layouts.all_agree(&relation(&new)));

        // Once every old shape is gone, the new layout agrees; once every shape is, the table
        // is forgotten.
        for _ in 0..999 {
            layouts.remove(7, &shared);
        }
        layouts.remove(7, &copy);
        assert!(layouts.all_agree(&relation(&new)));
        assert!(!layouts.all_agree(&relation(&old)));
        layouts.remove(7, &newer);
        assert!(layouts.0.is_empty());
        // Removing what is not there changes nothing.
        layouts.remove(7, &newer);
        assert!(layouts.0.is_empty());
    }
}
