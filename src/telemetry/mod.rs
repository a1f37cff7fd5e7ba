//! Telemetry: logging setup (here), Prometheus metrics ([`metrics`], rendered by
//! [`exposition`], with [`process`] figures), and snapshot progress reporting ([`progress`]).
//!
//! Logs are structured: key events carry a fixed `event` field (`shape_created`,
//! `replication_streaming`, `snapshot_progress`, …) and fixed field names (`handle`, `table`,
//! `lsn`, `rows`, `bytes`, `elapsed_ms`, `error`), documented in `docs/observability.md`. Never
//! row values or secrets. Text by default, JSON lines with `AMPERE_LOG_JSON=true` (fields at
//! the top level of each object). The level comes from `ELECTRIC_LOG_LEVEL`; `RUST_LOG`, when
//! set, overrides it with a full filter.

pub mod exposition;
pub mod metrics;
pub mod process;
pub mod progress;

use tracing_subscriber::EnvFilter;

/// Electric's level names to tracing's (`warning` and syslog-style names included).
fn level_name(level: &str) -> &str {
    match level.trim() {
        "warning" => "warn",
        "notice" => "info",
        "critical" | "alert" | "emergency" => "error",
        other => other,
    }
}

/// Installs the global subscriber (idempotent: a second call is ignored).
pub fn init(level: &str, json: bool) {
    let level = level_name(level);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::try_new(format!(
            "{level},tokio_postgres=warn,pgwire_replication=warn"
        ))
        // An unknown level must not silence the service.
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,pgwire_replication=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file must stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn electric_level_names() {
        assert_eq!(super::level_name("warning"), "warn");
        assert_eq!(super::level_name("debug"), "debug");
        assert_eq!(super::level_name("critical"), "error");
        assert_eq!(super::level_name(" info "), "info");
    }
}
