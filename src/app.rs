//! Wiring: storage recovery, the HTTP server, and the replication supervisor, under one shutdown
//! signal. `run` takes a bound listener so tests run the real server in-process on port 0.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::engine::{Engine, Health, ShapeMeta};
use crate::pg::connection::PgUrl;
use crate::pg::local_cluster::{ClusterOptions, LocalCluster};
use crate::pg::replication;
use crate::pipeline::{Command, Pipeline};
use crate::shape::definition::ShapeDef;
use crate::shape::registry::{Registry, Shape};
use crate::storage::log::{LogView, LogWriter};
use crate::storage::{Storage, meta};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("storage")]
    Storage(#[from] crate::storage::StorageError),
    #[error("database URL")]
    Url(#[from] crate::pg::connection::ConnectError),
    #[error("starting the local development Postgres")]
    DevCluster(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("HTTP server")]
    Http(#[source] std::io::Error),
}

/// Runs Ampere until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    config: Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
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
                    extra_settings: Vec::new(),
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
    let url = PgUrl::parse(&database_url)?;
    let query_url = match &config.pooled_database_url {
        Some(u) => Some(PgUrl::parse(u)?),
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
            engine.stopping.send_replace(true);
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
    let http_shutdown = shutdown.clone();
    let app = crate::http::router(engine.clone());
    let server = tokio::spawn(async move {
        let mut s = http_shutdown;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = s.wait_for(|v| *v).await;
            })
            .await
    });

    let slot = config.slot_name();
    let publication = config.publication_name();
    let mut backoff = Duration::from_secs(1);
    while !*shutdown.borrow() {
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
                if !restored {
                    if global_lost && let Err(e) = engine.storage.remove_all_shapes() {
                        tracing::error!(error = %e, "cannot drop the stored shapes");
                    }
                    restore_shapes(&engine, &mut pipeline, start.start_lsn);
                    restored = true;
                }
                check_continuity(&engine, &mut pipeline, &start);
                engine
                    .global_lsn
                    .fetch_max(start.start_lsn, std::sync::atomic::Ordering::AcqRel);
                let _ = engine.health.send_replace(Health::Active);
                tracing::info!(slot = %slot, start_lsn = start.start_lsn, "replication streaming");
                let result = pipeline.run(&mut client, &mut cmd_rx, &mut shutdown).await;
                let _ = engine.health.send_replace(Health::Starting);
                client.stop();
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "replication stream failed; reconnecting");
                        backoff = Duration::from_secs(1);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), retry_in_ms = backoff.as_millis() as u64, "cannot start replication; retrying");
            }
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
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    let _ = server.await;
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

/// Loads every complete shape from storage; incomplete, unreadable or damaged ones are removed
/// (`acknowledged_lsn`: the slot's confirmed position, which replay will not go below).
fn restore_shapes(engine: &Arc<Engine>, pipeline: &mut Pipeline, acknowledged_lsn: u64) {
    let handles = match engine.storage.list_shapes() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot list stored shapes");
            return;
        }
    };
    // This instance owns the storage now: temp files of interrupted metadata writes are orphans.
    engine.storage.remove_temp_files(&handles);
    let (mut ok, mut dropped) = (0usize, 0usize);
    for handle in handles {
        let dir = engine.storage.shape_dir(&handle);
        let restored = (|| -> Option<(Arc<Shape>, LogWriter, ShapeMeta)> {
            let m: ShapeMeta = match engine.storage.read_shape_meta(&handle) {
                Ok(Some(m)) => m,
                // No metadata: a shape whose snapshot never completed (or a stray directory).
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(handle = %handle, error = %e, source = ?std::error::Error::source(&e), "shape metadata unreadable: shape dropped");
                    return None;
                }
            };
            if !m.complete || m.handle != handle {
                return None;
            }
            let def = ShapeDef::compile(m.request.clone(), Arc::new(m.table.clone())).ok()?;
            let view = Arc::new(watch::channel(LogView::empty()).0);
            let log_path = dir.join("log");
            let writer = match LogWriter::recover(
                engine.storage.fs(),
                log_path.clone(),
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
            let shape = Arc::new(Shape::new(handle.clone(), Arc::new(def), log_path, view));
            Some((shape, writer, m))
        })();
        match restored {
            Some((shape, writer, m)) => {
                engine.registry.insert(shape.clone());
                pipeline.restore(shape, writer, m.snapshot);
                ok += 1;
            }
            None => {
                engine.storage.remove_shape(&handle);
                dropped += 1;
            }
        }
    }
    if ok + dropped > 0 {
        tracing::info!(restored = ok, dropped, "shapes recovered from storage");
    }
}
