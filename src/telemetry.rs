//! Logging setup. Logs are structured fields (never row values or secrets); `RUST_LOG` overrides
//! `ELECTRIC_LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (idempotent: a second call is ignored).
pub fn init(level: &str, json: bool) {
    let level = match level {
        "warning" => "warn",
        other => other,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},tokio_postgres=warn,pgwire_replication=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
