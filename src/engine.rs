//! The engine: state shared by the HTTP layer and the pipeline, and the shape lifecycle
//! operations requests trigger (find or create a shape, delete one).
//!
//! Creating a shape follows shape-semantics.md §6.1: validate, persist its metadata, make sure
//! its table is published (with the writer barrier), register it with the pipeline (from then
//! on the pipeline buffers every transaction touching it), then take the snapshot. Only then can
//! the buffered transactions be filtered against the snapshot and appended.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::pg::catalog::{self, CatalogError};
use crate::pg::connection::PgUrl;
use crate::pg::publication;
use crate::pg::snapshot::{self, PgSnapshot};
use crate::pipeline::Command;
use crate::shape::definition::{DefinitionError, ShapeDef, ShapeRequest};
use crate::shape::registry::{Registry, Shape};
use crate::shape::table::TableInfo;
use crate::storage::Storage;
use crate::storage::log::{LogView, LogWriter};
use crate::storage::view::ViewCell;

/// Service health as `/v1/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    /// Another instance holds the replication lock.
    Waiting,
    Active,
    /// Streaming, but storage is failing (disk full, I/O errors): existing shapes are served
    /// up to their durable data, nothing new is acknowledged or published, new shapes are
    /// refused (503) until it recovers.
    Degraded,
}

/// Which admission pool a request draws from (http-protocol.md §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// No handle, or one this node does not know.
    Initial,
    Existing,
}

impl Admission {
    pub fn name(self) -> &'static str {
        match self {
            Admission::Initial => "initial",
            Admission::Existing => "existing",
        }
    }
}

/// A held admission permit; released on drop. Owned, so a parked long-poll keeps its permit
/// after its handler has returned (see `http::shape::LivePoll`).
pub struct Permit {
    counter: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once the service is stopping (a `Send` wrapper around `wait_for`).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// What a shape's `meta.bin` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShapeMeta {
    pub handle: String,
    pub request: ShapeRequest,
    pub table: TableInfo,
    /// Tables read by the where clause's subqueries (recompiling needs them).
    #[serde(default)]
    pub inner_tables: Vec<TableInfo>,
    pub snapshot: Option<PgSnapshot>,
    pub complete: bool,
}

/// Errors of shape lookup and creation, as the HTTP layer maps them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("table does not exist")]
    TableNotFound,
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("cannot reach the database")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("could not create the shape")]
    Create(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the service is not ready")]
    NotReady,
    /// The role lacks a privilege the shape needs; the message says which (no retry helps
    /// until an operator grants it, but the request is valid, hence 503 like Electric).
    #[error("{0}")]
    Permission(String),
}

/// State shared by every task.
pub struct Engine {
    pub config: Config,
    pub url: PgUrl,
    /// Connection for snapshot and subset queries (`ELECTRIC_POOLED_DATABASE_URL`, else `url`).
    /// Connections for snapshots, subsets and subquery loads (pooled: `pg::pool`).
    pub query: Arc<crate::pg::pool::QueryPool>,
    pub storage: Storage,
    pub registry: Registry,
    /// The last commit LSN the pipeline made durable (`G` of http-protocol.md §8.3).
    pub global_lsn: AtomicU64,
    pub health: watch::Sender<Health>,
    /// Set by the pipeline while storage writes or syncs fail (see [`Health::Degraded`]).
    pub storage_failing: std::sync::atomic::AtomicBool,
    /// Turns true when the service shuts down: parked requests answer at once.
    pub stopping: watch::Sender<bool>,
    /// Progress counters of the current replication connection (received and acknowledged
    /// positions), for the admin API; set by the supervisor on each connect, read-only here.
    pub stream_progress: Mutex<Option<Arc<pgwire_replication::ReplicationMetrics>>>,
    /// Prometheus metrics of this service (scraped on `ELECTRIC_PROMETHEUS_PORT`).
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    pipeline: mpsc::Sender<Command>,
    /// Serialises catalog/publication work (one admin connection).
    admin: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Recently loaded table info, to resolve requests for existing shapes without a query.
    tables: Mutex<HashMap<(String, String), CachedTable>>,
    /// Tables whose SELECT privilege and publication membership were checked recently (oid →
    /// when): creating many shapes on one table checks it once per [`TABLE_CACHE_TTL`], not
    /// once per shape (each check is catalog queries Postgres parses and plans anew).
    publishable: Mutex<HashMap<u32, std::time::Instant>>,
    /// Creation of shapes with subqueries is exclusive (their dependencies are created under
    /// it); other shapes share it and only serialise per definition (`creating`), so one
    /// definition never gets two handles while different shapes are created concurrently.
    create_lock: tokio::sync::RwLock<()>,
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The database's default collation, looked up once (jsonb ordering depends on it).
    db_collation: tokio::sync::OnceCell<crate::pg::collation::DbCollation>,
    /// Bounds concurrent snapshot and subset queries (the snapshot pool).
    pub snapshot_slots: Arc<tokio::sync::Semaphore>,
    /// Handle stamps up to this value are covered by the persisted high-water mark.
    handles_reserved: Mutex<u64>,
    in_flight_initial: Arc<AtomicUsize>,
    in_flight_existing: Arc<AtomicUsize>,
}

/// Table info and when it was loaded.
type CachedTable = (Arc<TableInfo>, Instant);

const TABLE_CACHE_TTL: Duration = Duration::from_secs(5);

impl Engine {
    /// Stops serving: sets [`Self::stopping`], then wakes every shape's readers. A parked
    /// long-poll waits on its shape's view alone and checks [`Self::is_stopping`] whenever it
    /// wakes, so it registers one waiter, not a second one on `stopping` (10k parked requests
    /// would otherwise all queue on one `Notify`, and each wake would unlink from it).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
        for shape in self.registry.all() {
            shape.view.wake();
        }
    }

    /// Whether [`Self::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    pub fn new(
        config: Config,
        url: PgUrl,
        query_url: Option<PgUrl>,
        storage: Storage,
        registry: Registry,
        pipeline: mpsc::Sender<Command>,
    ) -> Engine {
        let snapshot_connections = config.snapshot_connections;
        Engine {
            config,
            query: Arc::new(crate::pg::pool::QueryPool::new(
                query_url.unwrap_or_else(|| url.clone()),
                snapshot_connections,
            )),
            url,
            storage,
            registry,
            global_lsn: AtomicU64::new(0),
            health: watch::channel(Health::Starting).0,
            storage_failing: std::sync::atomic::AtomicBool::new(false),
            stopping: watch::channel(false).0,
            stream_progress: Mutex::new(None),
            metrics: Arc::default(),
            pipeline,
            admin: tokio::sync::Mutex::new(None),
            tables: Mutex::new(HashMap::new()),
            publishable: Mutex::new(HashMap::new()),
            create_lock: tokio::sync::RwLock::new(()),
            creating: Mutex::new(HashMap::new()),
            db_collation: tokio::sync::OnceCell::new(),
            snapshot_slots: Arc::new(tokio::sync::Semaphore::new(snapshot_connections)),
            handles_reserved: Mutex::new(0),
            in_flight_initial: Arc::default(),
            in_flight_existing: Arc::default(),
        }
    }

    /// Takes an admission permit, or `None` when that pool is at its limit.
    pub fn admit(&self, kind: Admission) -> Option<Permit> {
        let (counter, limit) = match kind {
            Admission::Initial => (&self.in_flight_initial, self.config.max_initial_requests),
            Admission::Existing => (&self.in_flight_existing, self.config.max_existing_requests),
        };
        let prev = counter.fetch_add(1, Ordering::AcqRel);
        let permit = Permit {
            counter: counter.clone(),
        };
        (prev < limit).then_some(permit)
    }

    /// Removes shapes whose table was dropped or renamed: `DROP TABLE` is invisible in the
    /// replication stream, and such shapes would otherwise never answer 409.
    pub async fn reconcile_tables(&self) {
        let shapes = self.registry.all();
        if shapes.is_empty() {
            return;
        }
        let mut oids: Vec<u32> = shapes
            .iter()
            .flat_map(|s| {
                std::iter::once(s.def.table.oid).chain(s.def.inner_tables.iter().map(|t| t.oid))
            })
            .collect();
        oids.sort_unstable();
        oids.dedup();
        let live = self
            .with_admin(async |c| {
                c.query(
                    "SELECT c.oid, n.nspname::text, c.relname::text FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1)",
                    &[&oids],
                )
                .await
                .map_err(|e| EngineError::Unavailable(Box::new(e)))
            })
            .await;
        let Ok(rows) = live else { return };
        // Tables removed from the publication behind our back: their shapes would silently miss
        // every later change, so they are invalidated rather than quietly re-added.
        let publication = self.config.publication_name();
        let published: Option<Vec<u32>> = self
            .with_admin(async |c| {
                c.query(
                    "SELECT pr.prrelid FROM pg_publication_rel pr JOIN pg_publication p \
                     ON p.oid = pr.prpubid WHERE p.pubname = $1",
                    &[&publication],
                )
                .await
                .map(|rows| rows.iter().map(|r| r.get::<_, u32>(0)).collect())
                .map_err(|e| EngineError::Unavailable(Box::new(e)))
            })
            .await
            .ok();
        let live: HashMap<u32, (String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<_, u32>(0),
                    (r.get::<_, String>(1), r.get::<_, String>(2)),
                )
            })
            .collect();
        for s in shapes {
            let t = &s.def.table;
            // A subquery's table counts like the shape's own: without it the shape cannot
            // follow its rows.
            let same = std::iter::once(t)
                .chain(s.def.inner_tables.iter())
                .all(|t| {
                    live.get(&t.oid)
                        .is_some_and(|(sch, name)| sch == &t.schema && name == &t.name)
                        && published.as_ref().is_none_or(|p| p.contains(&t.oid))
                });
            if !same {
                tracing::info!(event = "shape_removed", reason = "table_gone", handle = %s.handle, table = %t.sql_name(), "table dropped or renamed: shape removed");
                self.forget_table(t.oid);
                self.delete(&s.handle).await;
            }
        }
    }

    /// Makes sure handle stamps up to `stamp` can never be issued again after a restart, even if
    /// the clock goes back: the persisted high-water mark is reserved ahead in windows, so this
    /// writes (and fsyncs) once per window rather than once per shape.
    fn reserve_handles(&self, stamp: u64) -> Result<(), crate::storage::StorageError> {
        const WINDOW_MICROS: u64 = 10 * 60 * 1_000_000;
        let mut reserved = self.handles_reserved.lock();
        if stamp <= *reserved {
            return Ok(());
        }
        let mut global = self.storage.read_global()?;
        global.handle_high_water = stamp
            .saturating_add(WINDOW_MICROS)
            .max(global.handle_high_water);
        self.storage.write_global(&global)?;
        *reserved = global.handle_high_water;
        Ok(())
    }

    /// Evicts the least recently read shapes beyond `ELECTRIC_MAX_SHAPES`.
    pub async fn enforce_max_shapes(&self) {
        let Some(max) = self.config.max_shapes else {
            return;
        };
        let mut shapes = self.registry.all();
        if shapes.len() <= max {
            return;
        }
        shapes.sort_by_key(|s| s.last_read.load(Ordering::Relaxed));
        let excess = shapes.len() - max;
        for s in shapes.into_iter().take(excess) {
            tracing::info!(event = "shape_removed", reason = "evicted", handle = %s.handle, "shape evicted (ELECTRIC_MAX_SHAPES)");
            self.delete(&s.handle).await;
        }
    }

    pub fn global_lsn(&self) -> u64 {
        self.global_lsn.load(Ordering::Acquire)
    }

    pub fn health(&self) -> Health {
        let h = *self.health.borrow();
        if h == Health::Active && self.storage_failing.load(Ordering::Acquire) {
            Health::Degraded
        } else {
            h
        }
    }

    /// Runs one read-only query on the admin connection (the admin API's replication status).
    pub async fn admin_query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, EngineError> {
        self.with_admin(async |c| {
            c.query(sql, params)
                .await
                .map_err(|e| EngineError::Unavailable(Box::new(e)))
        })
        .await
    }

    /// Forgets which tables were checked publishable (a new replication connection: the
    /// publication may have been dropped or changed meanwhile).
    pub fn forget_publishable(&self) {
        self.publishable.lock().clear();
    }

    /// Forgets cached table info (after DDL was seen).
    pub fn forget_table(&self, oid: u32) {
        self.publishable.lock().remove(&oid);
        self.tables.lock().retain(|_, (t, _)| t.oid != oid);
    }

    async fn with_admin<T, F>(&self, f: F) -> Result<T, EngineError>
    where
        F: for<'c> AsyncFnOnce(&'c tokio_postgres::Client) -> Result<T, EngineError>,
    {
        let mut guard = self.admin.lock().await;
        if guard.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            let c = self
                .url
                .connect()
                .await
                .map_err(|e| EngineError::Unavailable(Box::new(e)))?;
            *guard = Some(c);
        }
        let client = guard.as_ref().ok_or(EngineError::NotReady)?;
        f(client).await
    }

    async fn load_table(
        &self,
        schema: &str,
        name: &str,
        fresh: bool,
    ) -> Result<Arc<TableInfo>, EngineError> {
        let key = (schema.to_owned(), name.to_owned());
        if !fresh
            && let Some((t, at)) = self.tables.lock().get(&key)
            && at.elapsed() < TABLE_CACHE_TTL
        {
            return Ok(t.clone());
        }
        let t = self
            .with_admin(async |c| match catalog::load_table(c, schema, name).await {
                Ok(t) => Ok(t),
                Err(CatalogError::NotFound(..)) => Err(EngineError::TableNotFound),
                Err(CatalogError::Db(e)) => Err(EngineError::Unavailable(Box::new(e))),
            })
            .await?;
        let mut tables = self.tables.lock();
        // Unchanged table info is shared by every shape on the table (memory per shape).
        let t = match tables.get(&key) {
            Some((cached, _)) if **cached == *t => cached.clone(),
            _ => t,
        };
        tables.insert(key, (t.clone(), Instant::now()));
        Ok(t)
    }

    /// Compiles a request into a definition (loading table info as needed, including the
    /// tables its subqueries read: each missing one is loaded and the clause compiled again).
    pub async fn resolve(
        &self,
        request: &ShapeRequest,
        fresh: bool,
    ) -> Result<ShapeDef, EngineError> {
        let table = self
            .load_table(&request.schema, &request.table, fresh)
            .await?;
        let mut inner: Vec<Arc<TableInfo>> = Vec::new();
        loop {
            // Compiling outside input is bounded but not free: keep it off the async workers,
            // which also run the replication pipeline (a stalled worker could miss keepalives).
            let (request, table, tables) = (request.clone(), table.clone(), inner.clone());
            let compiled =
                tokio::task::spawn_blocking(move || ShapeDef::compile_with(request, table, tables))
                    .await
                    .map_err(|e| EngineError::Create(Box::new(e)))?;
            match compiled {
                Err(DefinitionError::MissingTable {
                    schema,
                    name,
                    message,
                }) => {
                    let known = inner.iter().any(|t| t.schema == schema && t.name == name);
                    // Bounded: every round adds a table the clause names.
                    let t = match self.load_table(&schema, &name, fresh).await {
                        Ok(t) if !known => t,
                        Ok(_) | Err(EngineError::TableNotFound) => {
                            return Err(EngineError::Definition(DefinitionError::Where(message)));
                        }
                        Err(e) => return Err(e),
                    };
                    inner.push(t);
                }
                Ok(def) => {
                    self.check_collation(&def).await?;
                    return Ok(def);
                }
                Err(e) => return Err(EngineError::from(e)),
            }
        }
    }

    /// Refuses (400 under `where`) a clause that orders jsonb when the database's default
    /// collation is not bytewise: PG would order the strings inside by that collation, which
    /// the snapshot SQL cannot pin and the live evaluator does not reproduce.
    async fn check_collation(&self, def: &ShapeDef) -> Result<(), EngineError> {
        match &def.where_clause {
            Some(w) => self.check_where_collation(w).await,
            None => Ok(()),
        }
    }

    /// [`Engine::check_collation`] for one clause (also used by subset queries).
    pub async fn check_where_collation(
        &self,
        w: &crate::shape::where_clause::WhereClause,
    ) -> Result<(), EngineError> {
        if !w.needs_bytewise_default_collation() {
            return Ok(());
        }
        let collation = self
            .db_collation
            .get_or_try_init(|| {
                self.with_admin(async |c| {
                    crate::pg::collation::DbCollation::fetch(c)
                        .await
                        .map_err(|e| EngineError::Unavailable(Box::new(e)))
                })
            })
            .await?;
        collation
            .check_bytewise(true)
            .map_err(|m| EngineError::Definition(DefinitionError::Where(m)))
    }

    /// Makes the dependencies of a clause's subqueries ready (innermost first): each inner
    /// table is published like a shape's, then the dependency is registered with the pipeline
    /// and, if new, loaded from its own snapshot. Every dependency ensured is pinned; the
    /// identities still pinned for the caller are appended to `pinned`.
    async fn ensure_dependencies(
        &self,
        w: &crate::shape::where_clause::WhereClause,
        tables: &[Arc<TableInfo>],
        pinned: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        let create_err = |m: &str| EngineError::Create(m.to_owned().into());
        for (sub, _) in w.subqueries() {
            if let Some(inner) = &sub.where_clause {
                Box::pin(self.ensure_dependencies(inner, tables, pinned)).await?;
            }
            let table = tables
                .iter()
                .find(|t| t.oid == sub.table.oid)
                .ok_or_else(|| create_err("subquery table not resolved"))?
                .clone();
            let publication = self.config.publication_name();
            self.with_admin(async |c| {
                publication::add_table(c, &publication, &table)
                    .await
                    .map_err(|e| EngineError::Create(Box::new(e)))
            })
            .await?;
            let (tx, rx) = oneshot::channel();
            self.pipeline
                .send(Command::EnsureDependency {
                    sub: sub.clone(),
                    table,
                    reply: tx,
                })
                .await
                .map_err(|_| EngineError::NotReady)?;
            let ensured = rx
                .await
                .map_err(|_| EngineError::NotReady)?
                .map_err(|e| EngineError::Create(Box::new(e)))?;
            // `sub` now holds its own subqueries' pins.
            if let Some(inner) = &sub.where_clause {
                for (s, _) in inner.subqueries() {
                    if let Some(i) = pinned.iter().position(|p| p == s.identity()) {
                        pinned.remove(i);
                    }
                }
            }
            pinned.push(sub.identity().to_owned());
            if !ensured.needs_snapshot {
                continue;
            }
            let loaded = {
                let _slot = self.snapshot_slots.acquire().await;
                snapshot::run_dependency(&self.query, &sub).await
            };
            let (snap, members) = match loaded {
                Ok(x) => x,
                Err(e) => {
                    pinned.pop();
                    let _ = self
                        .pipeline
                        .send(Command::ReleaseDependencies {
                            identities: Vec::new(),
                            abandoned: Some(ensured.id),
                        })
                        .await;
                    return Err(EngineError::Create(Box::new(e)));
                }
            };
            let (tx, rx) = oneshot::channel();
            self.pipeline
                .send(Command::DependencySnapshot {
                    id: ensured.id,
                    members,
                    snapshot: snap,
                    reply: tx,
                })
                .await
                .map_err(|_| EngineError::NotReady)?;
            if let Err(e) = rx.await.map_err(|_| EngineError::NotReady)? {
                pinned.pop();
                return Err(EngineError::Create(Box::new(e)));
            }
        }
        Ok(())
    }

    /// The live shape for a handle whose stored request equals `request` (the fast path of live
    /// requests: no catalog query, no compilation).
    pub fn shape_for_handle(&self, handle: &str, request: &ShapeRequest) -> Option<Arc<Shape>> {
        self.registry
            .get(handle)
            .filter(|s| &s.def.request == request)
    }

    /// Finds the shape for a definition, creating it if there is none.
    pub async fn get_or_create(&self, request: &ShapeRequest) -> Result<Arc<Shape>, EngineError> {
        let def = self.resolve(request, false).await?;
        if let Some(s) = self.registry.find(&def) {
            return Ok(s);
        }
        let has_subqueries = def
            .where_clause
            .as_ref()
            .is_some_and(|w| !w.subqueries().is_empty());
        let (_shared, _exclusive) = if has_subqueries {
            (None, Some(self.create_lock.write().await))
        } else {
            (Some(self.create_lock.read().await), None)
        };
        let _same_definition = self.lock_definition(&def.identity()).await;
        // Fresh catalog info for a new shape (the table may have been recreated).
        let def = self.resolve(request, true).await?;
        if let Some(s) = self.registry.find(&def) {
            return Ok(s);
        }
        if self.health() != Health::Active {
            return Err(EngineError::NotReady);
        }
        self.create(def).await
    }

    /// Holds the per-definition creation lock until the guard drops.
    async fn lock_definition(&self, identity: &str) -> DefinitionGuard<'_> {
        let lock = self
            .creating
            .lock()
            .entry(identity.to_owned())
            .or_default()
            .clone();
        let held = lock.clone().lock_owned().await;
        DefinitionGuard {
            engine: self,
            identity: identity.to_owned(),
            lock,
            held: Some(held),
        }
    }

    async fn create(&self, def: ShapeDef) -> Result<Arc<Shape>, EngineError> {
        let create_err = |e: Box<dyn std::error::Error + Send + Sync>| EngineError::Create(e);
        let (handle, stamp) = self.registry.new_handle(&def.identity());
        self.reserve_handles(stamp)
            .map_err(|e| create_err(Box::new(e)))?;
        // No fsync here: a shape becomes durable only when its completed snapshot's metadata is
        // written (pipeline flush); a crash before that leaves a directory without `meta.bin`,
        // which startup removes.
        self.storage
            .create_shape_dir(&handle)
            .map_err(|e| create_err(Box::new(e)))?;

        let table = def.table.clone();
        let publication = self.config.publication_name();
        let checked_recently = self
            .publishable
            .lock()
            .get(&table.oid)
            .is_some_and(|at| at.elapsed() < TABLE_CACHE_TTL);
        if !checked_recently {
            self.check_publishable(&handle, &table, &publication)
                .await?;
        }

        // Subquery dependencies are live before the shape registers, so its snapshot (taken
        // after registering) is later than theirs (shape-semantics.md §8).
        let mut pinned = Vec::new();
        if let Some(w) = &def.where_clause
            && let Err(e) = self
                .ensure_dependencies(w, &def.inner_tables, &mut pinned)
                .await
        {
            self.release_dependencies(pinned).await;
            self.storage.remove_shape(&handle);
            return Err(e);
        }

        let view = ViewCell::new(LogView::empty());
        let shared_handle: Arc<str> = Arc::from(handle.as_str());
        let writer = match LogWriter::create(
            self.storage.fs(),
            self.storage.log_path(shared_handle.clone()),
            self.config.chunk_bytes_threshold,
            view.clone(),
        ) {
            Ok(w) => w,
            Err(e) => {
                self.release_dependencies(pinned).await;
                self.storage.remove_shape(&handle);
                return Err(create_err(Box::new(e)));
            }
        };
        let shape = Arc::new(Shape::new(
            shared_handle,
            Arc::new(def),
            writer.log_path(),
            view,
        ));
        let (tx, rx) = oneshot::channel();
        if self
            .pipeline
            .send(Command::Register {
                shape: shape.clone(),
                reply: tx,
            })
            .await
            .is_err()
            || rx.await.is_err()
        {
            self.storage.remove_shape(&handle);
            return Err(EngineError::NotReady);
        }
        self.registry.insert(shape.clone());
        self.metrics.shapes_created.inc();
        tracing::info!(event = "shape_created", handle = %shape.handle, table = %shape.def.table.sql_name(), "shape created");

        let query = self.query.clone();
        let pipeline = self.pipeline.clone();
        let task_shape = shape.clone();
        let slots = self.snapshot_slots.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let mut writer = writer;
            let mut progress = crate::telemetry::progress::SnapshotProgress::start(
                metrics,
                &task_shape.handle,
                &task_shape.def.table.sql_name(),
            );
            let cmd = match snapshot::run(&query, &task_shape.def, &mut writer, &mut progress).await
            {
                Ok(snapshot) => {
                    progress.complete();
                    Command::SnapshotDone {
                        handle: task_shape.handle.to_string(),
                        writer: Box::new(writer),
                        snapshot,
                    }
                }
                Err(e) => {
                    progress.failed(&e);
                    task_shape.view.update(|v| v.failed = true);
                    Command::Remove {
                        handle: task_shape.handle.to_string(),
                        reply: None,
                    }
                }
            };
            let _ = pipeline.send(cmd).await;
        });
        Ok(shape)
    }

    /// The table is readable by our role and in our publication (added if missing). On
    /// failure the new shape's directory is removed.
    async fn check_publishable(
        &self,
        handle: &str,
        table: &Arc<TableInfo>,
        publication: &str,
    ) -> Result<(), EngineError> {
        let table = table.clone();
        self.with_admin(async |c| {
            // The snapshot would fail later with nothing but a generic error for the client.
            let can_select: bool = c
                .query_one(
                    "SELECT has_table_privilege($1::oid, 'SELECT')",
                    &[&table.oid],
                )
                .await
                .map_err(|e| EngineError::Unavailable(Box::new(e)))?
                .get(0);
            if !can_select {
                return Err(EngineError::Permission(format!(
                    "Unable to create initial snapshot: permission denied for table {}",
                    table.sql_name()
                )));
            }
            publication::add_table(c, publication, &table)
                .await
                .map_err(|e| match &e {
                    publication::PublicationError::Add { source, .. }
                        if crate::pg::connection::sqlstate(source) == Some("42501") =>
                    {
                        EngineError::Permission(format!(
                            "Database table {} is missing from the publication {publication} and \
                             Ampere lacks privileges to add it ({})",
                            table.sql_name(),
                            source
                                .as_db_error()
                                .map_or("permission denied", |d| d.message())
                        ))
                    }
                    _ => EngineError::Create(Box::new(e)),
                })
        })
        .await
        .inspect_err(|_| self.storage.remove_shape(handle))?;
        self.publishable
            .lock()
            .insert(table.oid, std::time::Instant::now());
        Ok(())
    }

    async fn release_dependencies(&self, identities: Vec<String>) {
        if identities.is_empty() {
            return;
        }
        let _ = self
            .pipeline
            .send(Command::ReleaseDependencies {
                identities,
                abandoned: None,
            })
            .await;
    }

    /// Samples our replication slot's lag for the metrics, on the admin connection:
    /// `pg_current_wal_lsn()` minus `confirmed_flush_lsn` (what Postgres still has to hear is
    /// durable) and minus `restart_lsn` (WAL the server must keep for us).
    pub async fn sample_slot(&self) {
        let slot = self.config.slot_name();
        let sample = self
            .with_admin(async |c| {
                c.query_opt(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8, \
                     pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 \
                     FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await
                .map_err(|e| EngineError::Unavailable(Box::new(e)))
            })
            .await;
        let values = match sample {
            Ok(Some(row)) => row
                .try_get::<_, Option<i64>>(0)
                .ok()
                .flatten()
                .zip(row.try_get::<_, Option<i64>>(1).ok().flatten()),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "slot lag sample failed");
                None
            }
        };
        self.metrics.slot_sampled(values);
    }

    /// Deletes a shape (its readers get 409 from now on).
    pub async fn delete(&self, handle: &str) -> bool {
        if self.registry.get(handle).is_none() {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        if self
            .pipeline
            .send(Command::Remove {
                handle: handle.to_owned(),
                reply: Some(tx),
            })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        true
    }
}

/// A held per-definition creation lock; the map entry goes when nobody else waits on it.
struct DefinitionGuard<'a> {
    engine: &'a Engine,
    identity: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for DefinitionGuard<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = self.engine.creating.lock();
        // Ours and the map's: nobody else is waiting for this definition.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.identity);
        }
    }
}
