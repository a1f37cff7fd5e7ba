//! The `ampere` command line: the service (`ampere`, `ampere serve`, `ampere dev`) and the
//! operator subcommands (`shapes`, `replication`, `health`), which are clients of the running
//! service's admin API ([`crate::http::admin`]) over HTTP.
//!
//! Invariants: `ampere` with no subcommand parses exactly the service flags and environment it
//! always did (a container whose entrypoint is `ampere` with `ELECTRIC_*` variables is
//! unaffected); the operator subcommands never open the storage directory or the database, so
//! they cannot race the running writer; their exit status is 0 on success and 1 on any failure
//! (Docker's `HEALTHCHECK` treats every other code as reserved), 2 only for usage errors.

pub mod client;
pub mod format;
mod serve;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hyper::Method;

use crate::config::Cli as ServiceArgs;
use crate::http::admin::{Deleted, ReplicationStatus, ShapeList};
use client::{Client, ClientError};
use format::SortKey;

const ABOUT: &str = "Electric-compatible Postgres sync service";

const LONG_ABOUT: &str = "\
Ampere is a drop-in replacement for the ElectricSQL sync service: it follows a Postgres \
database through logical replication, keeps each shape (a table, optionally filtered by a where \
clause and narrowed to some columns) as a durable log, and serves Electric's HTTP API \
(GET /v1/shape) to Electric's clients unchanged. It reads Electric's environment variables, so \
an existing deployment swaps its image without other changes. Run without a subcommand (or with \
`serve`) it is the service; `dev` runs it for local development, with its own Postgres when \
DATABASE_URL is unset; the other subcommands inspect and operate a running service over its \
admin API.";

const AFTER_HELP: &str = "\
Every option can also be set through the environment variable shown next to it.
Operator subcommands reach the service at --url (AMPERE_URL), by default \
http://127.0.0.1:$ELECTRIC_PORT, authenticated with ELECTRIC_SECRET.";

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "ampere",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_help_heading = "Commands",
    disable_help_subcommand = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The service's flags, for `ampere` without a subcommand.
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sync service (what `ampere` alone does)
    #[command(after_help = AFTER_HELP)]
    Serve(Box<ServiceArgs>),
    /// Run the service for local development (own Postgres, no secret, URLs printed)
    ///
    /// Like `serve`, with development defaults: without DATABASE_URL a Postgres cluster is
    /// started inside the storage directory (the one `serve` would start, same data); without
    /// ELECTRIC_SECRET no authentication is required; the database URL and a shape URL to curl
    /// are printed at start.
    #[command(after_help = AFTER_HELP)]
    Dev(Box<ServiceArgs>),
    /// Inspect or remove the shapes of a running service
    #[command(subcommand)]
    Shapes(ShapesCommand),
    /// Replication state of a running service
    #[command(subcommand)]
    Replication(ReplicationCommand),
    /// Check a running service: prints its status, exits 0 only when it is active
    Health(HealthArgs),
}

#[derive(Debug, Subcommand)]
pub enum ShapesCommand {
    /// List every shape: definition, log size, latest offset, lag and last activity
    List(ListArgs),
    /// Delete shapes: their clients get 409 must-refetch and resync from a new handle
    Delete(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReplicationCommand {
    /// Slot, publication and positions: ours and Postgres'
    Status(StatusArgs),
}

/// How to reach the running service.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Connection")]
pub struct ClientArgs {
    /// Base URL of the running service [default: http://127.0.0.1:$ELECTRIC_PORT, or port 3000]
    #[arg(long, env = "AMPERE_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The service's secret (sent as `Authorization: Bearer`)
    #[arg(long, env = "ELECTRIC_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Give up after this long (e.g. 500ms, 10s)
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub timeout: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the admin API's JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Order of the table (and of the JSON's `shapes`)
    #[arg(long, value_enum, default_value = "table")]
    pub sort: SortKey,
    /// Reverse the order
    #[arg(long)]
    pub reverse: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Handles of the shapes to delete
    #[arg(
        value_name = "HANDLE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub handles: Vec<String>,
    /// Delete every shape (each client resyncs from scratch)
    #[arg(long)]
    pub all: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the admin API's JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Print the service's JSON answer
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Help sections of the service flags, by argument id (`config::Cli` field names). A flag that
/// is not listed appears under "Options".
const HEADINGS: &[(&str, &[&str])] = &[
    (
        "Database",
        &[
            "database_url",
            "pooled_database_url",
            "query_database_url",
            "db_pool_size",
            "replication_stream_id",
            "database_ca_certificate_file",
            "database_tcp_keepalive_idle",
            "database_tcp_keepalive_interval",
            "database_tcp_keepalive_count",
            "database_tcp_user_timeout",
        ],
    ),
    ("Security", &["secret", "insecure"]),
    (
        "HTTP",
        &[
            "port",
            "long_poll_timeout",
            "cache_max_age",
            "cache_stale_age",
            "max_concurrent_requests",
            "max_connections",
            "header_read_timeout",
            "tcp_send_timeout",
            "enable_integration_testing",
        ],
    ),
    (
        "Storage and shapes",
        &[
            "storage_dir",
            "chunk_bytes_threshold",
            "max_shapes",
            "experimental_max_shapes",
            "schema_reconciler_period",
        ],
    ),
    ("Logging", &["log_level", "log_json"]),
];

/// Flags whose environment values must never be echoed by `--help` (credentials).
const SECRET_VALUED: &[&str] = &[
    "database_url",
    "pooled_database_url",
    "query_database_url",
    "secret",
];

/// Groups the service flags of `cmd` under [`HEADINGS`] and hides credential values.
fn arrange_service_flags(mut cmd: clap::Command) -> clap::Command {
    let present: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .collect();
    let has = |id: &str| present.iter().any(|p| p == id);
    for (heading, ids) in HEADINGS {
        for id in ids.iter().filter(|id| has(id)) {
            cmd = cmd.mut_arg(*id, |a| a.help_heading(*heading));
        }
    }
    for id in SECRET_VALUED.iter().filter(|id| has(id)) {
        cmd = cmd.mut_arg(*id, |a| a.hide_env_values(true));
    }
    cmd
}

/// The clap command with help sections arranged (for parsing and for tests).
pub fn command() -> clap::Command {
    let cmd = arrange_service_flags(Args::command());
    cmd.mut_subcommand("serve", arrange_service_flags)
        .mut_subcommand("dev", arrange_service_flags)
}

/// Parses the process's arguments (exits with clap's message and status 2 on a usage error).
pub fn parse() -> Args {
    let matches = command().get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs what the command line asks for.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        None => serve::serve(args.service, serve::Mode::Serve),
        Some(Command::Serve(service)) => serve::serve(*service, serve::Mode::Serve),
        Some(Command::Dev(service)) => serve::serve(*service, serve::Mode::Dev),
        Some(command) => {
            // One request or a few: a single-threaded runtime is plenty.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("ampere: cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(operate(command)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("ampere: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Why an operator subcommand failed (one line on stderr, exit status 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--timeout: {0}")]
    Timeout(#[from] crate::config::ConfigError),
    #[error("cannot write the output: {0}")]
    Output(#[from] serde_json::Error),
}

fn connect(args: &ClientArgs) -> Result<Client, CliError> {
    let timeout: Duration = crate::config::parse_duration("--timeout", &args.timeout)?;
    let url = match &args.url {
        Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
        _ => client::default_url(std::env::var("ELECTRIC_PORT").ok().as_deref()),
    };
    Ok(Client::new(&url, args.secret.clone(), timeout)?)
}

async fn operate(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Shapes(ShapesCommand::List(a)) => {
            let client = connect(&a.client)?;
            let mut list: ShapeList = client.expect_json(Method::GET, "/v1/admin/shapes").await?;
            format::sort_shapes(&mut list.shapes, a.sort, a.reverse);
            if a.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", format::shapes_table(&list));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Shapes(ShapesCommand::Delete(a)) => delete(a).await,
        Command::Replication(ReplicationCommand::Status(a)) => {
            let client = connect(&a.client)?;
            let status: ReplicationStatus = client
                .expect_json(Method::GET, "/v1/admin/replication")
                .await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", format::replication_text(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Health(a) => {
            let client = connect(&a.client)?;
            let reply = client.request(Method::GET, "/v1/health").await?;
            let status = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
            if a.json {
                println!("{}", String::from_utf8_lossy(&reply.body).trim());
            } else {
                match &status {
                    Some(s) => println!("{}", format::clean(s)),
                    None => println!("unexpected answer: HTTP {}", reply.status),
                }
            }
            let active = reply.status.is_success() && status.as_deref() == Some("active");
            Ok(if active {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve(_) | Command::Dev(_) => Ok(ExitCode::FAILURE),
    }
}

/// `shapes delete`: every handle is tried; the status is 1 if any was not deleted.
async fn delete(a: DeleteArgs) -> Result<ExitCode, CliError> {
    let client = connect(&a.client)?;
    let handles = if a.all {
        let list: ShapeList = client.expect_json(Method::GET, "/v1/admin/shapes").await?;
        list.shapes.into_iter().map(|s| s.handle).collect()
    } else {
        a.handles
    };
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for handle in handles {
        // The handle is a path segment: anything but the handle alphabet is refused here
        // rather than sent (the service would answer 404 anyway).
        if handle.is_empty()
            || !handle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            failed.push((handle, "not a shape handle".to_owned()));
            continue;
        }
        let path = format!("/v1/admin/shapes/{handle}");
        match client.expect_json::<Deleted>(Method::DELETE, &path).await {
            Ok(d) => deleted.push(d.deleted),
            Err(ClientError::Status { status, .. }) if status == hyper::StatusCode::NOT_FOUND => {
                failed.push((handle, "no such shape".to_owned()));
            }
            Err(e @ (ClientError::Unreachable { .. } | ClientError::Timeout { .. })) => {
                return Err(e.into());
            }
            Err(e) => failed.push((handle, e.to_string())),
        }
    }
    if a.json {
        let failed_json: Vec<_> = failed
            .iter()
            .map(|(h, why)| serde_json::json!({ "handle": h, "error": why }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "deleted": deleted, "failed": failed_json })
            )?
        );
    } else {
        for h in &deleted {
            println!("deleted {h}");
        }
        if a.all && deleted.is_empty() && failed.is_empty() {
            println!("no shapes");
        }
        for (h, why) in &failed {
            eprintln!("ampere: {}: {why}", format::clean(h));
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let matches = command().try_get_matches_from(args)?;
        Args::from_arg_matches(&matches)
    }

    #[test]
    fn the_command_definition_is_consistent() {
        command().debug_assert();
        let known: Vec<String> = ServiceArgs::command()
            .get_arguments()
            .map(|a| a.get_id().as_str().to_owned())
            .collect();
        for id in HEADINGS
            .iter()
            .flat_map(|(_, ids)| ids.iter())
            .chain(SECRET_VALUED)
        {
            assert!(known.iter().any(|k| k == id), "{id} is not a service flag");
        }
    }

    #[test]
    fn no_subcommand_is_the_service() {
        let a = parse(&["ampere", "--port", "4000", "--insecure", "true"]).unwrap();
        assert!(a.command.is_none());
        assert_eq!(a.service.port, 4000);
        let a = parse(&["ampere", "serve", "--port", "4001"]).unwrap();
        assert!(matches!(a.command, Some(Command::Serve(s)) if s.port == 4001));
        // A service flag before a subcommand would silently not apply to it.
        assert!(parse(&["ampere", "--port", "4000", "serve"]).is_err());
    }

    #[test]
    fn operator_subcommands_parse() {
        let a = parse(&[
            "ampere",
            "shapes",
            "list",
            "--json",
            "--sort",
            "size",
            "--url",
            "http://h:1",
        ])
        .unwrap();
        let Some(Command::Shapes(ShapesCommand::List(l))) = a.command else {
            panic!("shapes list");
        };
        assert!(l.json && l.sort == SortKey::Size);
        assert_eq!(l.client.url.as_deref(), Some("http://h:1"));
        assert!(
            parse(&["ampere", "shapes", "delete"]).is_err(),
            "a handle or --all"
        );
        assert!(parse(&["ampere", "shapes", "delete", "1-2", "--all"]).is_err());
        assert!(parse(&["ampere", "shapes", "delete", "1-2", "3-4"]).is_ok());
        assert!(parse(&["ampere", "replication", "status"]).is_ok());
        assert!(parse(&["ampere", "health", "--timeout", "2s"]).is_ok());
    }

    #[test]
    fn help_groups_flags_and_lists_subcommands() {
        let help = command().render_long_help().to_string();
        for needle in [
            "Commands:",
            "serve",
            "dev",
            "shapes",
            "replication",
            "health",
            "Database:",
            "Security:",
            "HTTP:",
            "Logging:",
            "ELECTRIC_PORT",
        ] {
            assert!(help.contains(needle), "{needle} missing from:\n{help}");
        }
    }
}
