//! Configuration: command-line flags that read Electric's environment variable names.
//!
//! An existing Electric deployment swaps its image for ours without touching its env, so every
//! essential variable of `operations.md` §1 keeps its name, default and value syntax here.
//! Validation that spans several settings (secret xor insecure) happens in [`Config::validate`],
//! which returns a message that says exactly why the service refuses to start.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Raw flags as parsed by clap. Use [`Config`] (via [`Cli::into_config`]) everywhere else.
/// `Debug` hides the secret and the database passwords (see [`Redacted`]).
#[derive(Clone, Parser)]
#[command(
    name = "ampere",
    version,
    about = "Electric-compatible Postgres sync service"
)]
pub struct Cli {
    /// Postgres connection URL (needs REPLICATION). Without it, a local dev cluster is started
    /// inside the storage directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Connection for snapshot queries (same instance as DATABASE_URL).
    #[arg(long, env = "ELECTRIC_POOLED_DATABASE_URL")]
    pub pooled_database_url: Option<String>,

    /// Deprecated alias of ELECTRIC_POOLED_DATABASE_URL.
    #[arg(long, env = "ELECTRIC_QUERY_DATABASE_URL", hide = true)]
    pub query_database_url: Option<String>,

    /// HTTP port.
    #[arg(long, env = "ELECTRIC_PORT", default_value_t = 3000)]
    pub port: u16,

    /// Root of all persistent state.
    #[arg(long, env = "ELECTRIC_STORAGE_DIR", default_value = "./persistent")]
    pub storage_dir: PathBuf,

    /// Shared secret required as the `secret` query parameter.
    #[arg(long, env = "ELECTRIC_SECRET")]
    pub secret: Option<String>,

    /// Run without a secret.
    #[arg(long, env = "ELECTRIC_INSECURE", default_value = "false")]
    pub insecure: String,

    /// Suffix of the slot and publication names, and the advisory-lock key.
    #[arg(
        long,
        env = "ELECTRIC_REPLICATION_STREAM_ID",
        default_value = "default"
    )]
    pub replication_stream_id: String,

    /// Maximum hold time of a live request (duration; bare number = milliseconds).
    #[arg(long, env = "ELECTRIC_LONG_POLL_TIMEOUT", default_value = "20000")]
    pub long_poll_timeout: String,

    /// `max-age` (seconds) of non-live responses.
    #[arg(long, env = "ELECTRIC_CACHE_MAX_AGE", default_value_t = 60)]
    pub cache_max_age: u64,

    /// `stale-while-revalidate` (seconds) of non-live responses.
    #[arg(long, env = "ELECTRIC_CACHE_STALE_AGE", default_value_t = 300)]
    pub cache_stale_age: u64,

    /// Bytes per log chunk (a cacheable response unit).
    #[arg(
        long,
        env = "ELECTRIC_SHAPE_CHUNK_BYTES_THRESHOLD",
        default_value = "10485760"
    )]
    pub chunk_bytes_threshold: String,

    /// Enables `DELETE /v1/shape`.
    #[arg(
        long,
        env = "ELECTRIC_ENABLE_INTEGRATION_TESTING",
        default_value = "false"
    )]
    pub enable_integration_testing: String,

    /// Total Postgres connections for queries (admin + snapshots).
    #[arg(long, env = "ELECTRIC_DB_POOL_SIZE", default_value_t = 20)]
    pub db_pool_size: usize,

    /// Admission control: `{"initial": N, "existing": M}` concurrent requests.
    #[arg(
        long,
        env = "ELECTRIC_MAX_CONCURRENT_REQUESTS",
        default_value = r#"{"initial":300,"existing":10000}"#
    )]
    pub max_concurrent_requests: String,

    /// Cap on the number of shapes; the least recently read beyond it are evicted.
    #[arg(long, env = "ELECTRIC_MAX_SHAPES")]
    pub max_shapes: Option<String>,

    /// Deprecated alias of ELECTRIC_MAX_SHAPES.
    #[arg(long, env = "ELECTRIC_EXPERIMENTAL_MAX_SHAPES", hide = true)]
    pub experimental_max_shapes: Option<String>,

    /// How often shapes are checked against the catalog (dropped or renamed tables).
    #[arg(
        long,
        env = "ELECTRIC_TWEAKS_SCHEMA_RECONCILER_PERIOD",
        default_value = "60s"
    )]
    pub schema_reconciler_period: String,

    /// CA bundle for the database connections: TLS with full verification becomes mandatory.
    #[arg(long, env = "ELECTRIC_DATABASE_CA_CERTIFICATE_FILE")]
    pub database_ca_certificate_file: Option<PathBuf>,

    /// TCP keepalive idle time for database connections (duration; whole seconds, min 1).
    #[arg(long, env = "ELECTRIC_DATABASE_TCP_KEEPALIVE_IDLE")]
    pub database_tcp_keepalive_idle: Option<String>,

    /// TCP keepalive probe interval for database connections (duration).
    #[arg(long, env = "ELECTRIC_DATABASE_TCP_KEEPALIVE_INTERVAL")]
    pub database_tcp_keepalive_interval: Option<String>,

    /// TCP keepalive probe count for database connections.
    #[arg(long, env = "ELECTRIC_DATABASE_TCP_KEEPALIVE_COUNT")]
    pub database_tcp_keepalive_count: Option<String>,

    /// Linux TCP_USER_TIMEOUT for database connections (duration).
    #[arg(long, env = "ELECTRIC_DATABASE_TCP_USER_TIMEOUT")]
    pub database_tcp_user_timeout: Option<String>,

    /// Log level (error, warning, info, debug). RUST_LOG wins when set.
    #[arg(long, env = "ELECTRIC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Port of a second HTTP listener serving Prometheus metrics at `GET /metrics` (text
    /// exposition format; every other path is 404). Unset: no metrics listener. Keep it off
    /// the public network: it is served without authentication.
    #[arg(long, env = "ELECTRIC_PROMETHEUS_PORT")]
    pub prometheus_port: Option<String>,

    /// Emit logs as JSON lines.
    #[arg(long, env = "AMPERE_LOG_JSON", default_value = "false")]
    pub log_json: String,

    /// Open HTTP connections allowed at once; above it new connections are closed. Default:
    /// twice the admission caps (so requests above them get their 503), within the descriptor
    /// limit.
    #[arg(long, env = "AMPERE_MAX_CONNECTIONS")]
    pub max_connections: Option<String>,

    /// How long a client may take to send a request's headers (slow-loris bound).
    #[arg(long, env = "AMPERE_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,

    /// How long one write to a client may wait for the client to read (a client that stops
    /// reading is disconnected after it, and the response it held is freed).
    #[arg(long, env = "ELECTRIC_TCP_SEND_TIMEOUT", default_value = "30s")]
    pub tcp_send_timeout: String,
}

/// Validated configuration used by the whole service. `Debug` hides the secret and the database
/// passwords (see [`Redacted`]).
#[derive(Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub pooled_database_url: Option<String>,
    pub port: u16,
    pub storage_dir: PathBuf,
    pub secret: Option<String>,
    pub stream_id: String,
    pub long_poll_timeout: Duration,
    pub cache_max_age: u64,
    pub cache_stale_age: u64,
    pub chunk_bytes_threshold: u64,
    pub enable_integration_testing: bool,
    /// Concurrent snapshot/subset queries (the pool minus the admin share, as Electric splits it).
    pub snapshot_connections: usize,
    /// Concurrent request caps (initial = no or unknown handle; existing = a known handle).
    pub max_initial_requests: usize,
    pub max_existing_requests: usize,
    /// Shape cap (None = unlimited) and how often it is enforced.
    pub max_shapes: Option<usize>,
    pub eviction_interval: Duration,
    /// Period of the catalog check that removes shapes of dropped or renamed tables.
    pub schema_reconciler_period: Duration,
    pub log_level: String,
    pub log_json: bool,
    /// Port of the Prometheus metrics listener (`None`: not served).
    pub prometheus_port: Option<u16>,
    /// Database connection settings given outside the URLs (CA file, keepalive).
    pub connection: crate::pg::connection::ConnectionOverrides,
    /// SSE response lifetime (not configurable in Electric).
    pub sse_timeout: Duration,
    /// SSE keep-alive comment interval (not configurable in Electric).
    pub sse_keepalive: Duration,
    /// Connection cap and header deadline of the HTTP listener.
    pub http: crate::http::server::Limits,
    /// The file system storage goes through (the real one; tests put failpoints and a
    /// crash-consistency recorder here).
    pub storage_fs: crate::storage::io::Fs,
}

/// A setting as `Debug` may show it: the API secret as `***`, a database URL with its password
/// (in the authority or a `password` parameter) replaced by `***`. A configuration ends up in
/// panic messages and test failures, and those end up in logs and CI output.
enum Redacted<'a> {
    Secret(&'a Option<String>),
    Url(&'a Option<String>),
}

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redacted::Secret(None) | Redacted::Url(None) => f.write_str("None"),
            Redacted::Secret(Some(_)) => f.write_str("Some(\"***\")"),
            Redacted::Url(Some(u)) => write!(f, "Some({:?})", redact_url(u)),
        }
    }
}

/// `u` with any password replaced by `***`; a URL that does not parse is hidden whole (it
/// could hold a password anywhere).
fn redact_url(u: &str) -> String {
    let Ok(mut url) = url::Url::parse(u) else {
        return "<unparsable URL>".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

impl std::fmt::Debug for Cli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured without `..`: a new field fails to compile until it is listed here.
        let Cli {
            database_url,
            pooled_database_url,
            query_database_url,
            port,
            storage_dir,
            secret,
            insecure,
            replication_stream_id,
            long_poll_timeout,
            cache_max_age,
            cache_stale_age,
            chunk_bytes_threshold,
            enable_integration_testing,
            db_pool_size,
            max_concurrent_requests,
            max_shapes,
            experimental_max_shapes,
            schema_reconciler_period,
            database_ca_certificate_file,
            database_tcp_keepalive_idle,
            database_tcp_keepalive_interval,
            database_tcp_keepalive_count,
            database_tcp_user_timeout,
            log_level,
            prometheus_port,
            log_json,
            max_connections,
            header_read_timeout,
            tcp_send_timeout,
        } = self;
        f.debug_struct("Cli")
            .field("database_url", &Redacted::Url(database_url))
            .field("pooled_database_url", &Redacted::Url(pooled_database_url))
            .field("query_database_url", &Redacted::Url(query_database_url))
            .field("port", port)
            .field("storage_dir", storage_dir)
            .field("secret", &Redacted::Secret(secret))
            .field("insecure", insecure)
            .field("replication_stream_id", replication_stream_id)
            .field("long_poll_timeout", long_poll_timeout)
            .field("cache_max_age", cache_max_age)
            .field("cache_stale_age", cache_stale_age)
            .field("chunk_bytes_threshold", chunk_bytes_threshold)
            .field("enable_integration_testing", enable_integration_testing)
            .field("db_pool_size", db_pool_size)
            .field("max_concurrent_requests", max_concurrent_requests)
            .field("max_shapes", max_shapes)
            .field("experimental_max_shapes", experimental_max_shapes)
            .field("schema_reconciler_period", schema_reconciler_period)
            .field("database_ca_certificate_file", database_ca_certificate_file)
            .field("database_tcp_keepalive_idle", database_tcp_keepalive_idle)
            .field(
                "database_tcp_keepalive_interval",
                database_tcp_keepalive_interval,
            )
            .field("database_tcp_keepalive_count", database_tcp_keepalive_count)
            .field("database_tcp_user_timeout", database_tcp_user_timeout)
            .field("log_level", log_level)
            .field("prometheus_port", prometheus_port)
            .field("log_json", log_json)
            .field("max_connections", max_connections)
            .field("header_read_timeout", header_read_timeout)
            .field("tcp_send_timeout", tcp_send_timeout)
            .finish()
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured without `..`: a new field fails to compile until it is listed here.
        let Config {
            database_url,
            pooled_database_url,
            port,
            storage_dir,
            secret,
            stream_id,
            long_poll_timeout,
            cache_max_age,
            cache_stale_age,
            chunk_bytes_threshold,
            enable_integration_testing,
            snapshot_connections,
            max_initial_requests,
            max_existing_requests,
            max_shapes,
            eviction_interval,
            schema_reconciler_period,
            log_level,
            log_json,
            prometheus_port,
            connection,
            sse_timeout,
            sse_keepalive,
            http,
            storage_fs,
        } = self;
        f.debug_struct("Config")
            .field("database_url", &Redacted::Url(database_url))
            .field("pooled_database_url", &Redacted::Url(pooled_database_url))
            .field("port", port)
            .field("storage_dir", storage_dir)
            .field("secret", &Redacted::Secret(secret))
            .field("stream_id", stream_id)
            .field("long_poll_timeout", long_poll_timeout)
            .field("cache_max_age", cache_max_age)
            .field("cache_stale_age", cache_stale_age)
            .field("chunk_bytes_threshold", chunk_bytes_threshold)
            .field("enable_integration_testing", enable_integration_testing)
            .field("snapshot_connections", snapshot_connections)
            .field("max_initial_requests", max_initial_requests)
            .field("max_existing_requests", max_existing_requests)
            .field("max_shapes", max_shapes)
            .field("eviction_interval", eviction_interval)
            .field("schema_reconciler_period", schema_reconciler_period)
            .field("log_level", log_level)
            .field("log_json", log_json)
            .field("prometheus_port", prometheus_port)
            .field("connection", connection)
            .field("sse_timeout", sse_timeout)
            .field("sse_keepalive", sse_keepalive)
            .field("http", http)
            .field("storage_fs", storage_fs)
            .finish()
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "You must set exactly one of ELECTRIC_SECRET or ELECTRIC_INSECURE=true. Neither is set: \
         set ELECTRIC_SECRET to protect the API, or ELECTRIC_INSECURE=true to run without \
         authentication (development only)"
    )]
    NoSecretNorInsecure,
    #[error(
        "You must set exactly one of ELECTRIC_SECRET or ELECTRIC_INSECURE=true, not both: \
         unset ELECTRIC_INSECURE to require the secret"
    )]
    SecretAndInsecure,
    #[error("{name}: invalid boolean {value:?} (expected true or false)")]
    Bool { name: &'static str, value: String },
    #[error("{name}: invalid duration {value:?} (a positive number with optional unit ms, s, m)")]
    Duration { name: &'static str, value: String },
    #[error(
        "{name}: invalid size {value:?} (a positive number with optional unit KB, KiB, MB, MiB, GB, GiB)"
    )]
    Size { name: &'static str, value: String },
    #[error(
        "ELECTRIC_REPLICATION_STREAM_ID: {0:?} is not a valid unquoted Postgres identifier \
         (a letter or _ first, then letters, digits, _ or $)"
    )]
    StreamId(String),
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(String),
    #[error(
        "ELECTRIC_MAX_CONCURRENT_REQUESTS: {0:?} must be JSON like {{\"initial\":300,\"existing\":10000}} with positive integers"
    )]
    RequestLimits(String),
    #[error("ELECTRIC_MAX_SHAPES: {0:?} must be a positive integer")]
    MaxShapes(String),
    #[error("AMPERE_MAX_CONNECTIONS: {0:?} must be a positive integer")]
    MaxConnections(String),
    #[error("ELECTRIC_DATABASE_TCP_KEEPALIVE_COUNT: {0:?} must be a positive integer")]
    KeepaliveCount(String),
    #[error("ELECTRIC_PROMETHEUS_PORT: {0:?} must be a port number (0-65535)")]
    PrometheusPort(String),
    #[error(
        "ELECTRIC_DATABASE_CA_CERTIFICATE_FILE is set but a database URL has sslmode=disable: \
         a CA file requires TLS"
    )]
    CaWithoutTls,
}

/// Whole seconds, at least one (keepalive timers have a one-second resolution).
fn parse_seconds(name: &'static str, value: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_duration(name, v).map(|d| Duration::from_secs(d.as_secs().max(1))))
        .transpose()
}

fn parse_request_limits(value: &str) -> Result<(usize, usize), ConfigError> {
    let err = || ConfigError::RequestLimits(value.to_owned());
    let v: serde_json::Value = serde_json::from_str(value).map_err(|_| err())?;
    let get = |k: &str, default: usize| -> Result<usize, ConfigError> {
        match v.get(k) {
            None => Ok(default),
            Some(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(err),
        }
    };
    if !v.is_object() {
        return Err(err());
    }
    Ok((get("initial", 300)?, get("existing", 10_000)?))
}

impl Cli {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let insecure = parse_bool("ELECTRIC_INSECURE", &self.insecure)?;
        let secret = self.secret.filter(|s| !s.is_empty());
        match (&secret, insecure) {
            (None, false) => return Err(ConfigError::NoSecretNorInsecure),
            (Some(_), true) => return Err(ConfigError::SecretAndInsecure),
            _ => {}
        }
        let stream_id = parse_stream_id(&self.replication_stream_id)?;
        let long_poll_timeout =
            parse_duration("ELECTRIC_LONG_POLL_TIMEOUT", &self.long_poll_timeout)?;
        let chunk_bytes_threshold = parse_size(
            "ELECTRIC_SHAPE_CHUNK_BYTES_THRESHOLD",
            &self.chunk_bytes_threshold,
        )?;
        let (max_initial_requests, max_existing_requests) =
            parse_request_limits(&self.max_concurrent_requests)?;
        let max_shapes = match self
            .max_shapes
            .or(self.experimental_max_shapes)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(ConfigError::MaxShapes(v))?,
            ),
        };
        let database_url = self.database_url.filter(|s| !s.is_empty());
        if let Some(url) = &database_url {
            validate_database_url(url)?;
        }
        let pooled = self
            .pooled_database_url
            .or(self.query_database_url)
            .filter(|s| !s.is_empty());
        if let Some(url) = &pooled {
            validate_database_url(url)?;
        }
        let connection = crate::pg::connection::ConnectionOverrides {
            ca_certificate_file: self
                .database_ca_certificate_file
                .filter(|p| !p.as_os_str().is_empty()),
            keepalive_idle: parse_seconds(
                "ELECTRIC_DATABASE_TCP_KEEPALIVE_IDLE",
                self.database_tcp_keepalive_idle.as_deref(),
            )?,
            keepalive_interval: parse_seconds(
                "ELECTRIC_DATABASE_TCP_KEEPALIVE_INTERVAL",
                self.database_tcp_keepalive_interval.as_deref(),
            )?,
            keepalive_count: match self.database_tcp_keepalive_count.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| ConfigError::KeepaliveCount(v.to_owned()))?,
                ),
            },
            tcp_user_timeout: self
                .database_tcp_user_timeout
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse_duration("ELECTRIC_DATABASE_TCP_USER_TIMEOUT", v))
                .transpose()?,
        };
        if connection.ca_certificate_file.is_some()
            && [&database_url, &pooled].into_iter().flatten().any(|u| {
                url::Url::parse(u).is_ok_and(|u| {
                    u.query_pairs()
                        .any(|(k, v)| k == "sslmode" && v == "disable")
                })
            })
        {
            return Err(ConfigError::CaWithoutTls);
        }
        Ok(Config {
            database_url,
            pooled_database_url: pooled,
            port: self.port,
            storage_dir: self.storage_dir,
            secret,
            stream_id,
            long_poll_timeout,
            cache_max_age: self.cache_max_age,
            cache_stale_age: self.cache_stale_age,
            chunk_bytes_threshold,
            enable_integration_testing: parse_bool(
                "ELECTRIC_ENABLE_INTEGRATION_TESTING",
                &self.enable_integration_testing,
            )?,
            snapshot_connections: {
                let admin = (self.db_pool_size / 4).clamp(1, 4);
                self.db_pool_size.saturating_sub(admin).max(1)
            },
            max_initial_requests,
            max_existing_requests,
            max_shapes,
            eviction_interval: Duration::from_secs(60),
            schema_reconciler_period: parse_duration(
                "ELECTRIC_TWEAKS_SCHEMA_RECONCILER_PERIOD",
                &self.schema_reconciler_period,
            )?,
            log_level: self.log_level,
            log_json: parse_bool("AMPERE_LOG_JSON", &self.log_json)?,
            prometheus_port: match self.prometheus_port.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(v) => Some(
                    v.parse::<u16>()
                        .map_err(|_| ConfigError::PrometheusPort(v.to_owned()))?,
                ),
            },
            connection,
            sse_timeout: Duration::from_secs(60),
            sse_keepalive: Duration::from_secs(21),
            http: crate::http::server::Limits {
                max_connections: match self.max_connections.filter(|s| !s.trim().is_empty()) {
                    None => crate::http::server::default_max_connections(
                        max_initial_requests,
                        max_existing_requests,
                    ),
                    Some(v) => v
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(ConfigError::MaxConnections(v))?,
                },
                header_read_timeout: parse_duration(
                    "AMPERE_HEADER_READ_TIMEOUT",
                    &self.header_read_timeout,
                )?,
                send_timeout: parse_duration("ELECTRIC_TCP_SEND_TIMEOUT", &self.tcp_send_timeout)?,
            },
            storage_fs: crate::storage::io::Fs::real(),
        })
    }
}

impl Config {
    /// A configuration for tests: insecure, given database and storage, short timeouts.
    pub fn for_tests(database_url: String, storage_dir: PathBuf, stream_id: &str) -> Config {
        Config {
            database_url: Some(database_url),
            pooled_database_url: None,
            port: 0,
            storage_dir,
            secret: None,
            stream_id: stream_id.to_owned(),
            long_poll_timeout: Duration::from_secs(20),
            cache_max_age: 60,
            cache_stale_age: 300,
            chunk_bytes_threshold: 10 * 1024 * 1024,
            enable_integration_testing: true,
            snapshot_connections: 16,
            max_initial_requests: 300,
            max_existing_requests: 10_000,
            max_shapes: None,
            eviction_interval: Duration::from_secs(60),
            schema_reconciler_period: Duration::from_secs(60),
            log_level: "info".into(),
            log_json: false,
            prometheus_port: None,
            connection: Default::default(),
            sse_timeout: Duration::from_secs(60),
            sse_keepalive: Duration::from_secs(21),
            // The same default as the service (tests that exercise the cap set their own).
            http: crate::http::server::Limits {
                max_connections: crate::http::server::default_max_connections(300, 10_000),
                header_read_timeout: Duration::from_secs(10),
                send_timeout: Duration::from_secs(30),
            },
            storage_fs: crate::storage::io::Fs::real(),
        }
    }

    /// `electric_slot_<stream id>`.
    pub fn slot_name(&self) -> String {
        format!("electric_slot_{}", self.stream_id)
    }

    /// `electric_publication_<stream id>`.
    pub fn publication_name(&self) -> String {
        format!("electric_publication_{}", self.stream_id)
    }
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(ConfigError::Bool {
            name,
            value: value.to_owned(),
        }),
    }
}

/// Electric's duration syntax: a positive number with an optional unit; bare = milliseconds.
pub fn parse_duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError::Duration {
        name,
        value: value.to_owned(),
    };
    let v = value.trim();
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let ms = match unit.trim() {
        "" | "ms" | "msec" => n,
        "s" | "sec" => n * 1000.0,
        "m" | "min" => n * 60_000.0,
        _ => return Err(err()),
    };
    if !(ms.is_finite() && ms > 0.0 && ms < 1e15) {
        return Err(err());
    }
    Ok(Duration::from_micros((ms * 1000.0).round() as u64))
}

/// Electric's size syntax: a number with an optional decimal or binary unit; bare = bytes.
pub fn parse_size(name: &'static str, value: &str) -> Result<u64, ConfigError> {
    let err = || ConfigError::Size {
        name,
        value: value.to_owned(),
    };
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim() {
        "" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(err()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(err)?;
    if bytes == 0 {
        return Err(err());
    }
    Ok(bytes)
}

fn parse_stream_id(value: &str) -> Result<String, ConfigError> {
    let mut chars = value.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_');
    let ok_rest = chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    if ok_first && ok_rest && value.len() <= 40 {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ConfigError::StreamId(value.to_owned()))
    }
}

fn validate_database_url(value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value).map_err(|e| ConfigError::DatabaseUrl(e.to_string()))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(ConfigError::DatabaseUrl(
            "scheme must be postgres:// or postgresql://".into(),
        ));
    }
    if url.username().is_empty() {
        return Err(ConfigError::DatabaseUrl(
            "invalid or missing username".into(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::DatabaseUrl("missing host".into()));
    }
    for (k, v) in url.query_pairs() {
        match (k.as_ref(), v.as_ref()) {
            (
                "sslmode",
                "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full",
            ) => {}
            ("sslmode", other) => {
                return Err(ConfigError::DatabaseUrl(format!(
                    "unknown sslmode {other:?}"
                )));
            }
            ("replication", _) => {
                return Err(ConfigError::DatabaseUrl(
                    "the replication parameter is not allowed".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_hides_the_secret_and_database_passwords() {
        let mut c = Cli::parse_from(["ampere", "--secret", "s3cr3t-value"]);
        c.database_url =
            Some("postgresql://app:pa%40ss-word@db:5432/app?sslmode=disable".to_owned());
        c.pooled_database_url =
            Some("postgresql://app@pool:6432/app?password=pool-pass&sslmode=require".to_owned());
        c.query_database_url = Some("not a url pw-inside".to_owned());
        let shown = format!("{c:?}");
        for hidden in [
            "s3cr3t-value",
            "pa%40ss-word",
            "pa@ss-word",
            "pool-pass",
            "pw-inside",
        ] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(
            shown.contains("app:***@db:5432/app?sslmode=disable"),
            "{shown}"
        );
        assert!(shown.contains("password=***"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
        let config = c.into_config().unwrap();
        let shown = format!("{config:?}");
        for hidden in ["s3cr3t-value", "pa%40ss-word", "pool-pass"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains(r#"secret: Some("***")"#), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
    }

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["ampere"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("flags parse")
    }

    #[test]
    fn secret_xor_insecure() {
        // Flags stand in for env here; clap reads env as a fallback for the same fields.
        let c = cli(&["--insecure", "false"]);
        if std::env::var("ELECTRIC_SECRET").is_err() && std::env::var("ELECTRIC_INSECURE").is_err()
        {
            assert_eq!(
                c.into_config().unwrap_err(),
                ConfigError::NoSecretNorInsecure
            );
        }
        let c = cli(&["--secret", "s", "--insecure", "true"]);
        assert_eq!(c.into_config().unwrap_err(), ConfigError::SecretAndInsecure);
        let c = cli(&["--secret", "s", "--insecure", "false"]);
        assert_eq!(c.into_config().unwrap().secret.as_deref(), Some("s"));
    }

    #[test]
    fn names_derive_from_stream_id() {
        let c = cli(&["--insecure", "true", "--replication-stream-id", "Blue_1"])
            .into_config()
            .unwrap();
        assert_eq!(c.slot_name(), "electric_slot_blue_1");
        assert_eq!(c.publication_name(), "electric_publication_blue_1");
        assert!(
            cli(&[
                "--insecure",
                "true",
                "--replication-stream-id",
                "deploy-blue"
            ])
            .into_config()
            .is_err()
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("x", "20000").unwrap(),
            Duration::from_secs(20)
        );
        assert_eq!(parse_duration("x", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("x", "5min").unwrap(),
            Duration::from_secs(300)
        );
        assert!(parse_duration("x", "0").is_err());
        assert!(parse_duration("x", "-1").is_err());
        assert!(parse_duration("x", "1h").is_err());
        assert_eq!(parse_size("x", "10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("x", "1KB").unwrap(), 1000);
        assert!(parse_size("x", "0").is_err());
        assert!(parse_size("x", "99999999999999999999GiB").is_err());
    }

    #[test]
    fn request_limits_and_max_shapes() {
        assert_eq!(
            parse_request_limits(r#"{"initial":3,"existing":7}"#),
            Ok((3, 7))
        );
        assert_eq!(parse_request_limits(r#"{"initial":3}"#), Ok((3, 10_000)));
        assert!(parse_request_limits("[1]").is_err());
        assert!(parse_request_limits(r#"{"initial":0}"#).is_err());
        let c = cli(&["--insecure", "true", "--max-shapes", "5"])
            .into_config()
            .unwrap();
        assert_eq!(c.max_shapes, Some(5));
        assert!(
            cli(&["--insecure", "true", "--max-shapes", "x"])
                .into_config()
                .is_err()
        );
    }

    #[test]
    fn prometheus_port() {
        let c = cli(&["--insecure", "true", "--prometheus-port", "9091"])
            .into_config()
            .unwrap();
        assert_eq!(c.prometheus_port, Some(9091));
        let c = cli(&["--insecure", "true", "--prometheus-port", ""])
            .into_config()
            .unwrap();
        assert_eq!(c.prometheus_port, None);
        assert_eq!(
            cli(&["--insecure", "true", "--prometheus-port", "70000"])
                .into_config()
                .unwrap_err(),
            ConfigError::PrometheusPort("70000".into())
        );
    }

    #[test]
    fn database_urls() {
        assert!(validate_database_url("postgresql://u:p@h:5432/db?sslmode=disable").is_ok());
        assert!(validate_database_url("mysql://u@h/db").is_err());
        assert!(validate_database_url("postgres://h/db").is_err());
        assert!(validate_database_url("postgres://u@h/db?sslmode=verify-full").is_ok());
        assert!(validate_database_url("postgres://u@h/db?sslmode=bogus").is_err());
        assert!(validate_database_url("postgres://u@h/db?replication=database").is_err());
    }

    /// The command line whose environment variables docs/configuration.md documents.
    fn documented_command_line() -> clap::Command {
        <crate::cli::Args as clap::CommandFactory>::command()
    }

    /// Variables documented ahead of the code that reads them. Once one is read by
    /// [`documented_command_line`], the test fails until it is removed here.
    const DOCUMENTED_AHEAD: &[&str] = &[];

    /// `(variable, flag, default cell)` of every row of the table under `heading` in
    /// docs/configuration.md; the first cell must be one backticked name per row.
    fn doc_table(doc: &str, heading: &str) -> Vec<(String, String, String)> {
        let start = doc
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}` section"));
        let section = &doc[start + heading.len() + 2..];
        let section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let mut rows = Vec::new();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let names: Vec<&str> = cells[0].split(", ").collect();
            for name in names {
                let name = name.trim_matches('`');
                assert!(
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                    "docs/configuration.md: `{name}` in `{line}` is not a variable name"
                );
                let cell = |i: usize| cells.get(i).copied().unwrap_or_default().to_owned();
                rows.push((name.to_owned(), cell(1), cell(2)));
            }
        }
        assert!(
            !rows.is_empty(),
            "docs/configuration.md: no rows under `{heading}`"
        );
        rows
    }

    #[test]
    fn docs_configuration_table_matches_the_cli() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
        )
        .expect("docs/configuration.md");
        // Every variable of the command line (subcommands included), with its flag and defaults.
        let mut code: std::collections::BTreeMap<String, (String, Vec<String>)> =
            Default::default();
        let mut stack = vec![documented_command_line()];
        while let Some(cmd) = stack.pop() {
            for arg in cmd.get_arguments() {
                if let Some(env) = arg.get_env() {
                    let flag = arg.get_long().map(|l| format!("--{l}")).unwrap_or_default();
                    let defaults = arg
                        .get_default_values()
                        .iter()
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect();
                    code.entry(env.to_string_lossy().into_owned())
                        .or_insert((flag, defaults));
                }
            }
            stack.extend(cmd.get_subcommands().cloned());
        }
        let table = doc_table(&doc, "## Options");
        let documented: std::collections::BTreeSet<&str> =
            table.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(documented.len(), table.len(), "a variable has two rows");
        for (env, (flag, defaults)) in &code {
            let row = table.iter().find(|(n, _, _)| n == env).unwrap_or_else(|| {
                panic!("{env} is read by the command line but has no row in docs/configuration.md")
            });
            assert_eq!(
                row.1,
                format!("`{flag}`"),
                "docs/configuration.md: flag of {env}"
            );
            for d in defaults {
                assert!(
                    row.2.contains(&format!("`{d}`")),
                    "docs/configuration.md: the default of {env} is `{d}`, the row says {}",
                    row.2
                );
            }
        }
        for name in &documented {
            if DOCUMENTED_AHEAD.contains(name) {
                assert!(
                    !code.contains_key(*name),
                    "{name} is read by the command line now: remove it from DOCUMENTED_AHEAD"
                );
            } else {
                assert!(
                    code.contains_key(*name),
                    "docs/configuration.md documents {name}, which the command line does not read"
                );
            }
        }
        // The variables documented as not read must indeed not be read.
        for (name, _, _) in doc_table(&doc, "## Electric options Ampere does not read") {
            assert!(
                !code.contains_key(&name),
                "{name} is read by the command line: move its row to the Options table"
            );
        }
    }
}
