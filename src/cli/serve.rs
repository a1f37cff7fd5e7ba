//! `ampere` / `ampere serve` / `ampere dev`: validate the configuration, set up logging, bind
//! the port, run until SIGINT/SIGTERM.
//!
//! `dev` is `serve` with development defaults: no authentication unless `ELECTRIC_SECRET` is
//! set, a Postgres cluster inside the storage directory unless `DATABASE_URL` is (the same one
//! `serve` starts implicitly without `DATABASE_URL`, so both modes share its data), and the URLs
//! to try printed on stdout once the port is bound.

use std::process::ExitCode;

use crate::config::Cli as ServiceArgs;
use crate::pg::local_cluster::{ClusterOptions, LocalCluster};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Dev,
}

/// Runs the service on a multi-threaded runtime (the pipeline needs one) and returns the
/// process status: 2 for a configuration error, 1 for a fatal one.
pub fn serve(mut args: ServiceArgs, mode: Mode) -> ExitCode {
    if mode == Mode::Dev && args.secret.as_deref().is_none_or(str::is_empty) {
        args.insecure = "true".into();
    }
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ampere: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ampere: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(config, mode))
}

async fn run(mut config: crate::config::Config, mode: Mode) -> ExitCode {
    crate::telemetry::init(&config.log_level, config.log_json);
    if config.secret.is_none() {
        tracing::warn!("ELECTRIC_INSECURE=true: the API is served without authentication");
    }
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ampere: fatal: cannot bind port {}: {e}", config.port);
            return ExitCode::FAILURE;
        }
    };
    let metrics_listener = match config.prometheus_port {
        Some(p) => match tokio::net::TcpListener::bind(("0.0.0.0", p)).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("ampere: fatal: cannot bind ELECTRIC_PROMETHEUS_PORT {p}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let port = listener.local_addr().map_or(config.port, |a| a.port());
    tracing::info!(event = "service_starting", port, prometheus_port = config.prometheus_port, storage_dir = %config.storage_dir.display(), "ampere starting");

    let mut dev_cluster = None;
    if mode == Mode::Dev {
        if config.database_url.is_none() {
            match start_dev_cluster(&config.storage_dir).await {
                Ok(cluster) => {
                    config.database_url = Some(cluster.url());
                    dev_cluster = Some(cluster);
                }
                Err(e) => {
                    eprintln!("ampere: fatal: starting the local development Postgres: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        print!(
            "{}",
            dev_banner(
                config.database_url.as_deref().unwrap_or(""),
                port,
                &config.storage_dir,
                config.secret.is_some(),
            )
        );
    }

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            tracing::error!("cannot install the SIGTERM handler");
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!(event = "service_stopping", "shutting down");
        let _ = tx.send(true);
    });
    let result = crate::app::run_with_metrics(listener, metrics_listener, config, rx).await;
    if let Some(cluster) = dev_cluster {
        // Stopping runs pg_ctl: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    }
    if let Err(e) = result {
        // One line that says what to fix (no credentials: see pg::failure).
        let line = crate::pg::failure::Chain(&e).to_string();
        tracing::error!(event = "service_failed", error = %line, "ampere stopped");
        eprintln!("ampere: fatal: {line}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The cluster `app::run` would start without `DATABASE_URL` (same data directory).
async fn start_dev_cluster(
    storage_dir: &std::path::Path,
) -> Result<LocalCluster, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(storage_dir)?;
    let data_dir = storage_dir.join("pgdata");
    let cluster = tokio::task::spawn_blocking(move || {
        LocalCluster::start(ClusterOptions {
            data_dir: Some(data_dir),
            ..ClusterOptions::default()
        })
    })
    .await??;
    Ok(cluster)
}

/// The database URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// What `ampere dev` prints once it listens.
pub fn dev_banner(
    database_url: &str,
    port: u16,
    storage_dir: &std::path::Path,
    secret: bool,
) -> String {
    let db = redact(database_url);
    let base = format!("http://localhost:{port}");
    let auth = if secret {
        "ELECTRIC_SECRET is set: add &secret=… to shape requests"
    } else {
        "none (development only: anyone who can reach the port can read every table)"
    };
    format!(
        "\n\
         Ampere dev mode\n\
         \x20 database   {db}\n\
         \x20 storage    {storage}\n\
         \x20 auth       {auth}\n\
         \x20 shape API  {base}/v1/shape\n\
         \n\
         Try it:\n\
         \x20 psql '{db}' -c 'CREATE TABLE items (id int PRIMARY KEY, title text)'\n\
         \x20 curl -i '{base}/v1/shape?table=items&offset=-1'\n\
         \x20 ampere shapes list --url {base}\n\
         \n",
        storage = storage_dir.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_banner_shows_where_things_are_without_passwords() {
        let b = dev_banner(
            "postgres://app:hunter2@db:5432/app",
            3000,
            std::path::Path::new("./persistent"),
            false,
        );
        assert!(!b.contains("hunter2"), "{b}");
        assert!(b.contains("postgres://app:****@db:5432/app"));
        assert!(b.contains("curl -i 'http://localhost:3000/v1/shape?table=items&offset=-1'"));
        assert!(b.contains("storage    ./persistent"));
        assert!(b.contains("auth       none"));
    }
}
