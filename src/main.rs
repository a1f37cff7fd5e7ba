//! The `ampere` binary: parse configuration (Electric's env names), set up logging, bind the
//! port (and the metrics port), run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = ampere::config::Cli::parse();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ampere: configuration error: {e}");
            std::process::exit(2);
        }
    };
    ampere::telemetry::init(&config.log_level, config.log_json);
    if config.secret.is_none() {
        tracing::warn!("ELECTRIC_INSECURE=true: the API is served without authentication");
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("cannot bind port {}", config.port))?;
    let metrics_listener = match config.prometheus_port {
        Some(port) => Some(
            tokio::net::TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("cannot bind ELECTRIC_PROMETHEUS_PORT {port}"))?,
        ),
        None => None,
    };
    tracing::info!(event = "service_starting", port = config.port, prometheus_port = config.prometheus_port, storage_dir = %config.storage_dir.display(), "ampere starting");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!(event = "service_stopping", "shutting down");
        let _ = tx.send(true);
    });
    if let Err(e) = ampere::app::run_with_metrics(listener, metrics_listener, config, rx).await {
        // One line that says what to fix (no credentials: see pg::failure).
        let line = ampere::pg::failure::Chain(&e).to_string();
        tracing::error!(event = "service_failed", error = %line, "ampere stopped");
        eprintln!("ampere: fatal: {line}");
        std::process::exit(1);
    }
    Ok(())
}
