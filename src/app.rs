//! Wiring: storage recovery, the HTTP server, and the replication supervisor, under one shutdown
//! signal. `run` takes a bound listener so tests run the real server in-process on port 0.
//!
//! The supervisor loop (operations.md §4.1): every failed attempt is classified
//! ([`crate::pg::failure`]). Transient ones are retried after a backoff that starts at 1 s and
//! doubles to 10 s (reset after 5 s of healthy streaming), with one log line per attempt naming
//! the next delay; configuration errors end `run` with [`AppError::Fatal`] (the binary exits
//! non-zero) before the service ever reports `active`; continuity breaks purge every shape.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{Engine, Health, ShapeMeta};
use crate::pg::connection::PgUrl;
use crate::pg::local_cluster::{ClusterOptions, LocalCluster};
use crate::pg::{failure, replication};
use crate::pipeline::{Command, PREFETCH_BYTES, Pipeline, Prefetched, prefetch};
use crate::shape::definition::ShapeDef;
use crate::shape::registry::{Registry, Shape};
use crate::storage::log::{LogView, LogWriter};
use crate::storage::view::ViewCell;
use crate::storage::{Storage, meta};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("storage")]
    Storage(#[from] crate::storage::StorageError),
    #[error("database URL")]
    Url(#[from] crate::pg::connection::ConnectError),
    #[error("starting the local development Postgres")]
    DevCluster(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Retrying cannot help: the message says what to change.
    #[error("cannot replicate from Postgres: {0}")]
    Fatal(String),
}

/// Reconnect backoff bounds, and how long streaming must last to count as healthy again.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(5);
/// How long a graceful stop waits for in-flight HTTP responses (Electric's bound).
const DRAIN_BOUND: Duration = Duration::from_secs(10);
/// How often the replication slot's lag is sampled for the metrics (one query on the admin
/// connection, whatever the scrape rate).
const SLOT_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Runs Ampere until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    run_with_metrics(listener, None, config, shutdown).await
}

/// [`run`], also serving Prometheus scrapes on `metrics_listener` (`ELECTRIC_PROMETHEUS_PORT`).
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    crate::http::shape::clear_tail_cache();
    let fs = config.storage_fs.clone();
    fs.create_dir_all(&config.storage_dir)
        .map_err(|e| AppError::Storage(crate::storage::io_at(&config.storage_dir)(e)))?;
    let storage = Storage::open(&config.storage_dir, fs)?;

    // Dev mode: no DATABASE_URL → a persistent local cluster inside the storage dir.
    let mut dev_cluster: Option<LocalCluster> = None;
    // (held until shutdown; stopped below)
    let database_url = match &config.database_url {
        Some(u) => u.clone(),
        None => {
            let data_dir = config.storage_dir.join("pgdata");
            let cluster = tokio::task::spawn_blocking(move || {
                LocalCluster::start(ClusterOptions {
                    data_dir: Some(data_dir),
                    port: None,
                    high_lsn_and_xid_epoch: false,
                    ..ClusterOptions::default()
                })
            })
            .await
            .map_err(|e| AppError::DevCluster(Box::new(e)))?
            .map_err(|e| AppError::DevCluster(Box::new(e)))?;
            let url = cluster.url();
            tracing::info!(database_url = %url, "no DATABASE_URL: started a local development Postgres");
            dev_cluster = Some(cluster);
            url
        }
    };
    let url = PgUrl::parse(&database_url)?.with_overrides(&config.connection);
    let query_url = match &config.pooled_database_url {
        Some(u) => Some(PgUrl::parse(u)?.with_overrides(&config.connection)),
        None => None,
    };

    // A global state file that does not check out says nothing about which cluster, timeline or
    // slot the stored shapes came from: they are dropped (clients refetch) rather than trusted.
    // An I/O error (say, an unreadable storage root) stays fatal.
    let (global, global_lost) = match storage.read_global() {
        Ok(g) => (g, false),
        Err(crate::storage::StorageError::Meta(
            e @ (meta::MetaError::Corrupt(_) | meta::MetaError::Json { .. }),
        )) => {
            tracing::error!(error = %e, "global state unreadable: every stored shape will be dropped");
            (crate::storage::GlobalState::default(), true)
        }
        Err(e) => return Err(e.into()),
    };
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(1024);
    let registry = Registry::new(global.handle_high_water);
    let engine = Arc::new(Engine::new(
        config.clone(),
        url.clone(),
        query_url,
        storage.clone(),
        registry,
        cmd_tx,
    ));
    let mut pipeline = Pipeline::new(engine.clone());
    // Shapes are loaded only once this instance holds the replication lock: another instance
    // sharing the storage may be writing them until then, and nothing stale is served.
    let mut restored = false;

    {
        let engine = engine.clone();
        let mut s = shutdown.clone();
        tokio::spawn(async move {
            let _ = s.wait_for(|v| *v).await;
            engine.stop();
        });
    }
    {
        let engine = engine.clone();
        let mut s = shutdown.clone();
        let every = config.schema_reconciler_period;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if engine.health() == Health::Active {
                            engine.reconcile_tables().await;
                        }
                    }
                    () = crate::engine::stopped(&mut s) => return,
                }
            }
        });
    }
    if config.max_shapes.is_some() {
        let engine = engine.clone();
        let mut s = shutdown.clone();
        let every = config.eviction_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => engine.enforce_max_shapes().await,
                    () = crate::engine::stopped(&mut s) => return,
                }
            }
        });
    }
    {
        // Sampled when streaming starts and then periodically, never per scrape.
        let engine = engine.clone();
        let mut s = shutdown.clone();
        let mut health = engine.health.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SLOT_SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    r = health.changed() => if r.is_err() { return },
                    () = crate::engine::stopped(&mut s) => return,
                }
                if matches!(engine.health(), Health::Active | Health::Degraded) {
                    engine.sample_slot().await;
                }
            }
        });
    }
    let metrics_server = metrics_listener.map(|l| {
        tokio::spawn(crate::http::metrics::serve(
            l,
            engine.clone(),
            shutdown.clone(),
        ))
    });
    let http_shutdown = shutdown.clone();
    let app = crate::http::App::new(engine.clone());
    let server = tokio::spawn(crate::http::server::serve(
        listener,
        app,
        http_shutdown,
        config.http,
    ));

    let slot = config.slot_name();
    let publication = config.publication_name();
    let mut backoff = BACKOFF_FIRST;
    let mut attempt: u64 = 0;
    let mut fatal: Option<String> = None;
    while !*shutdown.borrow() {
        attempt += 1;
        let waiting = {
            let e = engine.clone();
            move || {
                let _ = e.health.send_replace(Health::Waiting);
            }
        };
        let connect = replication::connect(&url, &slot, &publication, waiting);
        let connected = tokio::select! {
            r = connect => Some(r),
            _ = shutdown.wait_for(|v| *v) => None,
        };
        let Some(connected) = connected else { break };
        match connected {
            Ok((mut client, start)) => {
                *engine.stream_progress.lock() = Some(client.metrics());
                engine.forget_publishable();
                let mut prefetched = Prefetched::default();
                if !restored {
                    if global_lost && let Err(e) = engine.storage.remove_all_shapes() {
                        tracing::error!(error = %e, "cannot drop the stored shapes");
                    }
                    prefetched = restore_while_prefetching(
                        &engine,
                        &mut pipeline,
                        &mut client,
                        start.start_lsn,
                    );
                    pipeline.rebuild_dependencies().await;
                    restored = true;
                }
                check_continuity(&engine, &mut pipeline, &start);
                engine
                    .global_lsn
                    .fetch_max(start.start_lsn, std::sync::atomic::Ordering::AcqRel);
                engine.metrics.acknowledged(start.start_lsn);
                let _ = engine.health.send_replace(Health::Active);
                tracing::info!(event = "replication_streaming", slot = %slot, lsn = start.start_lsn, attempt, "replication streaming");
                let streaming_since = tokio::time::Instant::now();
                let result = pipeline
                    .run(&mut client, prefetched, &mut cmd_rx, &mut shutdown)
                    .await;
                let _ = engine.health.send_replace(Health::Starting);
                client.stop();
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        if streaming_since.elapsed() >= HEALTHY_AFTER {
                            backoff = BACKOFF_FIRST;
                        }
                        tracing::warn!(
                            event = "replication_failed",
                            attempt,
                            retry_in_ms = backoff.as_millis() as u64,
                            error = %failure::Chain(&e),
                            "replication stream failed; reconnecting"
                        );
                    }
                }
            }
            Err(e) => match failure::classify(&e) {
                failure::Disposition::Fatal(message) => {
                    tracing::error!(event = "replication_fatal", attempt, error = %message, "cannot replicate from Postgres; stopping (retrying cannot fix this)");
                    fatal = Some(message);
                    break;
                }
                failure::Disposition::Retry => {
                    tracing::warn!(
                        event = "replication_failed",
                        attempt,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %failure::Chain(&e),
                        "cannot start replication; retrying"
                    );
                }
            },
        }
        // Back off, still serving commands (e.g. DELETE) meanwhile.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(c) => pipeline.on_idle_command(c),
                    None => break,
                },
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    if let Some(message) = fatal {
        // Nothing was served from this database: stop answering at once.
        server.abort();
        if let Some(m) = &metrics_server {
            m.abort();
        }
        engine.stop();
        if let Some(cluster) = dev_cluster {
            let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
        }
        return Err(AppError::Fatal(message));
    }
    // Graceful stop: parked long-polls wake at once (`stopping`), in-flight responses finish —
    // but a client that stopped reading must not hold the process forever.
    let mut server = server;
    if tokio::time::timeout(DRAIN_BOUND, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(
            bound_s = DRAIN_BOUND.as_secs(),
            "HTTP connections still open after the drain bound; closing them"
        );
        server.abort();
    }
    if let Some(cluster) = dev_cluster {
        // Stopping runs pg_ctl: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    }
    Ok(())
}

/// Purges every shape when WAL continuity with stored shapes is broken (new slot or publication,
/// another cluster, another timeline), then records the new identity.
fn check_continuity(engine: &Engine, pipeline: &mut Pipeline, start: &replication::StreamStart) {
    // Unreadable state was dealt with at startup (shapes dropped): start it afresh.
    let mut global = engine.storage.read_global().unwrap_or_default();
    let identity_changed = global
        .system_id
        .as_ref()
        .is_some_and(|s| s != &start.system_id)
        || global.timeline.is_some_and(|t| t != start.timeline);
    if (start.continuity_broken || identity_changed) && !engine.registry.is_empty() {
        tracing::warn!(
            new_slot = start.continuity_broken,
            identity_changed,
            "WAL continuity broken: purging every shape (clients will refetch)"
        );
        pipeline.purge();
    }
    global.system_id = Some(start.system_id.clone());
    global.timeline = Some(start.timeline);
    global.slot = Some(engine.config.slot_name());
    global.handle_high_water = global.handle_high_water.max(engine.registry.high_water());
    if let Err(e) = engine.storage.write_global(&global) {
        tracing::error!(error = %e, "cannot persist global state");
    }
}

/// [`restore_shapes`] while another thread reads the already started stream into memory
/// (bounded by [`PREFETCH_BYTES`]): Postgres decodes the WAL backlog during the restore
/// instead of after it. Returns what was read, for the pipeline to handle first.
fn restore_while_prefetching(
    engine: &Arc<Engine>,
    pipeline: &mut Pipeline,
    client: &mut pgwire_replication::ReplicationClient,
    acknowledged_lsn: u64,
) -> Prefetched {
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let reader = std::thread::Builder::new()
                .name("ampere-prefetch".into())
                .spawn_scoped(scope, move || {
                    runtime.block_on(prefetch(client, done_rx, PREFETCH_BYTES))
                });
            restore_shapes(engine, pipeline, acknowledged_lsn);
            let _ = done_tx.send(());
            match reader {
                Ok(reader) => {
                    let prefetched = reader.join().unwrap_or_else(|_| {
                        // Events it took from the stream are gone: restart the stream.
                        Prefetched::failed("the prefetching thread failed")
                    });
                    if !prefetched.is_empty() {
                        tracing::info!(
                            event = "replication_prefetched",
                            events = prefetched.len(),
                            "stream events read while shapes were restored"
                        );
                    }
                    prefetched
                }
                // Nothing was read: the pipeline reads the stream itself.
                Err(_) => Prefetched::default(),
            }
        })
    })
}

/// Loads every complete shape from storage; incomplete, unreadable or damaged ones are removed
/// (`acknowledged_lsn`: the slot's confirmed position, which replay will not go below).
///
/// Runs before the stream starts, so it is on the path of every restart: each shape's metadata
/// comes from the shape index (one file; its own `meta.bin` only when the index lacks it), and
/// decoding, compiling and recovering the shapes is spread over the cores (each worker with its
/// own table-sharing map); registering them stays sequential.
fn restore_shapes(engine: &Arc<Engine>, pipeline: &mut Pipeline, acknowledged_lsn: u64) {
    let started = std::time::Instant::now();
    let handles = match engine.storage.list_shapes() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot list stored shapes");
            return;
        }
    };
    // This instance owns the storage now: temp files of interrupted metadata writes are orphans.
    engine.storage.remove_temp_files();
    let index = engine.storage.read_index();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8);
    let per_worker = handles.len().div_ceil(workers).max(1);
    let index_ref = &index;
    let loaded: Vec<(String, Option<Restored>)> = std::thread::scope(|scope| {
        let tasks: Vec<_> = handles
            .chunks(per_worker)
            .map(|part| {
                let work = move || {
                    let mut tables = TableShare::new();
                    part.iter()
                        .map(|h| {
                            let r = restore_one(
                                engine,
                                h,
                                index_ref.get(h),
                                acknowledged_lsn,
                                &mut tables,
                            );
                            (h.clone(), r)
                        })
                        .collect::<Vec<_>>()
                };
                let spawned = std::thread::Builder::new()
                    .name("ampere-restore".into())
                    .spawn_scoped(scope, work);
                (part, spawned)
            })
            .collect();
        tasks
            .into_iter()
            .flat_map(|(part, t)| match t.map(|t| t.join()) {
                Ok(Ok(restored)) => restored,
                // A worker that could not start or panicked: its shapes are neither trusted
                // nor silently kept; they are dropped like unrecoverable ones (clients refetch).
                _ => {
                    tracing::error!(
                        shapes = part.len(),
                        "a restore worker failed: its shapes are dropped"
                    );
                    part.iter().map(|h| (h.clone(), None)).collect()
                }
            })
            .collect()
    });
    let read_secs = started.elapsed().as_secs_f64();
    let (mut ok, mut dropped, mut from_meta) = (0usize, 0usize, 0usize);
    // Every restored shape with the `meta.bin` payload read for it (`None`: the index has it).
    let mut live: Vec<(String, Option<Vec<u8>>)> = Vec::with_capacity(loaded.len());
    for (handle, restored) in loaded {
        match restored {
            Some(r) => {
                engine.registry.insert(r.shape.clone());
                pipeline.restore(r.shape, r.writer, r.snapshot);
                from_meta += usize::from(r.meta_payload.is_some());
                live.push((handle, r.meta_payload));
                ok += 1;
            }
            None => {
                engine.storage.remove_shape(&handle);
                dropped += 1;
            }
        }
    }
    let live_payloads: Vec<(&str, &[u8])> = live
        .iter()
        .filter_map(|(h, own)| Some((h.as_str(), own.as_deref().or_else(|| index.get(h))?)))
        .collect();
    engine.storage.resume_index(&index, &live_payloads);
    if ok + dropped > 0 {
        tracing::info!(
            event = "shapes_recovered",
            restored = ok,
            dropped,
            from_own_metadata = from_meta,
            read_ms = (read_secs * 1e3).round() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "shapes recovered from storage"
        );
    }
}

/// A shape read back from storage.
struct Restored {
    shape: Arc<Shape>,
    writer: LogWriter,
    snapshot: Option<crate::pg::snapshot::PgSnapshot>,
    /// Its `meta.bin` payload, when it was read from there (the shape index lacked it).
    meta_payload: Option<Vec<u8>>,
}

/// One `TableInfo` per distinct table description, shared by its shapes (each meta file
/// carries its own copy; ~0.5 KiB per shape otherwise).
type TableShare = std::collections::HashMap<u32, Vec<Arc<crate::shape::table::TableInfo>>>;

/// Reads, checks and recovers one stored shape; `None` when it must be dropped. `indexed` is
/// its metadata from the shape index, if there.
fn restore_one(
    engine: &Engine,
    handle: &str,
    indexed: Option<&[u8]>,
    acknowledged_lsn: u64,
    tables: &mut TableShare,
) -> Option<Restored> {
    let dir = engine.storage.shape_dir(handle);
    let meta_path = dir.join("meta.bin");
    let from_index = indexed
        .and_then(|p| crate::storage::meta::parse_payload::<ShapeMeta>(&meta_path, p).ok())
        .filter(|m| m.handle == handle);
    let (m, meta_payload) = match from_index {
        Some(m) => (m, None),
        None => {
            // The slow path also clears a temp file that a sealed shape's directory should never
            // hold (only an unsealed one's can, and that one is removed whole).
            let _ = engine.storage.fs().remove_file(&dir.join("meta.tmp"));
            let read = engine
                .storage
                .read_shape_meta_payload(handle)
                .and_then(|p| {
                    p.map(|p| {
                        crate::storage::meta::parse_payload::<ShapeMeta>(&meta_path, &p)
                            .map(|m| (m, Some(p)))
                    })
                    .transpose()
                    .map_err(crate::storage::StorageError::from)
                });
            match read {
                Ok(Some(found)) => found,
                // No metadata: a shape whose snapshot never completed (or a stray directory).
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(handle = %handle, error = %e, source = ?std::error::Error::source(&e), "shape metadata unreadable: shape dropped");
                    return None;
                }
            }
        }
    };
    if !m.complete || m.handle != handle {
        return None;
    }
    let same_oid = tables.entry(m.table.oid).or_default();
    let table = match same_oid.iter().find(|t| ***t == m.table) {
        Some(t) => t.clone(),
        None => {
            let t = Arc::new(m.table.clone());
            same_oid.push(t.clone());
            t
        }
    };
    let def = ShapeDef::compile_with(
        m.request.clone(),
        table,
        m.inner_tables.iter().cloned().map(Arc::new).collect(),
    )
    .ok()?;
    let view = ViewCell::new(LogView::empty());
    let shared_handle: Arc<str> = Arc::from(handle);
    let writer = match LogWriter::recover(
        engine.storage.fs(),
        engine.storage.log_path(shared_handle.clone()),
        engine.config.chunk_bytes_threshold,
        view.clone(),
        acknowledged_lsn,
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(handle = %handle, error = %e, "shape log not recoverable");
            return None;
        }
    };
    let shape = Arc::new(Shape::new(
        shared_handle,
        Arc::new(def),
        writer.log_path(),
        view,
    ));
    Some(Restored {
        shape,
        writer,
        snapshot: m.snapshot,
        meta_payload,
    })
}
