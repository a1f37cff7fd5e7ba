//! Connection settings: one parsed `DATABASE_URL` turned into a query connection
//! (tokio-postgres) or a replication connection (pgwire-replication), with the display settings
//! every session must share so snapshot values and replicated values are byte-identical.
//!
//! Both kinds share the URL's TLS settings (libpq's `sslmode`, `sslrootcert`; see [`super::tls`]),
//! TCP keepalive (`keepalives`, `keepalives_idle`, `keepalives_interval`, `keepalives_count`,
//! `tcp_user_timeout`; on by default with a 10 s idle time, so a dead peer is noticed in about
//! 25 s instead of the kernel's two hours) and a bound on the whole connection handshake
//! (`connect_timeout`, default 10 s: a server that accepts TCP but never answers must not hang a
//! reconnect forever). Invariant: the password never appears in `Debug` output or errors.

use std::path::PathBuf;
use std::time::Duration;

use pgwire_replication::ReplicationConfig;
use pgwire_replication::config::TcpKeepaliveConfig;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};

use super::tls::{self, SslMode};

/// The five display settings of `operations.md` §1.1 as a startup `options` string.
pub const DISPLAY_OPTIONS: &str = "-c bytea_output=hex -c DateStyle=ISO,DMY -c TimeZone=UTC \
     -c extra_float_digits=1 -c IntervalStyle=iso_8601";

/// The same settings as SQL, for sessions that cannot take startup options.
pub const DISPLAY_SQL: &str = "SET bytea_output = 'hex'; SET DateStyle = 'ISO, DMY'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET IntervalStyle = 'iso_8601'";

const DEFAULT_KEEPALIVE: Keepalive = Keepalive {
    idle: Duration::from_secs(10),
    interval: Duration::from_secs(5),
    count: 3,
};
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("cannot connect to Postgres")]
    Db(#[from] tokio_postgres::Error),
    #[error("TLS settings of the database URL")]
    Tls(#[from] tls::TlsError),
    #[error("no answer from Postgres within the connect timeout ({} s)", .0.as_secs())]
    Timeout(Duration),
}

/// TCP keepalive parameters (libpq's `keepalives_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    /// How long a silent peer survives: the first probe after `idle`, then `count` probes.
    pub fn budget(&self) -> Duration {
        self.idle + self.interval * self.count
    }
}

/// A parsed database URL.
#[derive(Clone)]
pub struct PgUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    pub sslmode: SslMode,
    /// `sslrootcert`, or `ELECTRIC_DATABASE_CA_CERTIFICATE_FILE`.
    pub sslrootcert: Option<PathBuf>,
    /// `None`: keepalives off (`keepalives=0`).
    pub keepalive: Option<Keepalive>,
    /// Linux `TCP_USER_TIMEOUT`; defaults to the keepalive budget.
    pub tcp_user_timeout: Option<Duration>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PgUrl {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

impl PgUrl {
    pub fn parse(s: &str) -> Result<PgUrl, ConnectError> {
        let url = url::Url::parse(s).map_err(|e| ConnectError::Url(e.to_string()))?;
        let dec = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let user = dec(url.username());
        if user.is_empty() {
            return Err(ConnectError::Url("invalid or missing username".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ConnectError::Url("missing host".into()))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let dbname = url.path().trim_start_matches('/');
        let dbname = if dbname.is_empty() {
            user.clone()
        } else {
            dec(dbname)
        };
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let seconds = |name: &str| -> Result<Option<Duration>, ConnectError> {
            param(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|_| {
                            ConnectError::Url(format!("{name}: {v:?} is not a number of seconds"))
                        })
                })
                .transpose()
        };
        let sslmode = match param("sslmode") {
            None => SslMode::Prefer,
            Some(m) => SslMode::parse(&m)
                .ok_or_else(|| ConnectError::Url(format!("unknown sslmode {m:?}")))?,
        };
        let keepalive = if param("keepalives").is_some_and(|v| v.trim() == "0") {
            None
        } else {
            let count = match param("keepalives_count") {
                None => DEFAULT_KEEPALIVE.count,
                Some(v) => v.trim().parse().map_err(|_| {
                    ConnectError::Url(format!("keepalives_count: {v:?} is not a number"))
                })?,
            };
            Some(Keepalive {
                idle: seconds("keepalives_idle")?.unwrap_or(DEFAULT_KEEPALIVE.idle),
                interval: seconds("keepalives_interval")?.unwrap_or(DEFAULT_KEEPALIVE.interval),
                count,
            })
        };
        let tcp_user_timeout = match param("tcp_user_timeout") {
            // libpq: milliseconds; 0 = the OS default.
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    return Err(ConnectError::Url(format!(
                        "tcp_user_timeout: {v:?} is not a number of milliseconds"
                    )));
                }
            },
            None => keepalive.map(|k| k.budget()),
        };
        Ok(PgUrl {
            host,
            port: url.port().unwrap_or(5432),
            user,
            password: url.password().map(dec).unwrap_or_default(),
            dbname,
            sslmode,
            sslrootcert: param("sslrootcert").map(PathBuf::from),
            keepalive,
            tcp_user_timeout,
            connect_timeout: seconds("connect_timeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        })
    }

    /// Applies operator settings given outside the URL (`ELECTRIC_DATABASE_*`); they win over
    /// the URL's own parameters, as in Electric.
    pub fn with_overrides(mut self, o: &ConnectionOverrides) -> PgUrl {
        if let Some(ca) = &o.ca_certificate_file {
            self.sslrootcert = Some(ca.clone());
            // A CA file means full verification (Electric's rule).
            if !matches!(self.sslmode, SslMode::Disable) {
                self.sslmode = SslMode::VerifyFull;
            }
        }
        if o.keepalive_idle.is_some()
            || o.keepalive_interval.is_some()
            || o.keepalive_count.is_some()
        {
            let base = self.keepalive.unwrap_or(DEFAULT_KEEPALIVE);
            self.keepalive = Some(Keepalive {
                idle: o.keepalive_idle.unwrap_or(base.idle),
                interval: o.keepalive_interval.unwrap_or(base.interval),
                count: o.keepalive_count.unwrap_or(base.count),
            });
            self.tcp_user_timeout = self.keepalive.map(|k| k.budget());
        }
        if let Some(t) = o.tcp_user_timeout {
            self.tcp_user_timeout = Some(t);
        }
        self
    }

    fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("ampere")
            .options(DISPLAY_OPTIONS)
            .connect_timeout(self.connect_timeout)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        match self.keepalive {
            Some(k) => {
                c.keepalives(true)
                    .keepalives_idle(k.idle)
                    .keepalives_interval(k.interval)
                    .keepalives_retries(k.count);
            }
            None => {
                c.keepalives(false);
            }
        }
        if let Some(t) = self.tcp_user_timeout {
            c.tcp_user_timeout(t);
        }
        if !self.password.is_empty() {
            c.password(&self.password);
        }
        c
    }

    /// Opens a query connection; its driver task is spawned.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let config = self.pg_config();
        if self.sslmode == SslMode::Disable {
            self.open(config, NoTls).await
        } else {
            let tls = tls::client_config(self.sslmode, self.sslrootcert.as_deref())?;
            self.open(config, tls::MakeRustls::new(tls)).await
        }
    }

    async fn open<T>(&self, config: tokio_postgres::Config, tls: T) -> Result<Client, ConnectError>
    where
        T: MakeTlsConnect<Socket> + Send,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        // tokio-postgres bounds only the TCP connect; this bound covers TLS and authentication.
        let (client, conn) = tokio::time::timeout(self.connect_timeout, config.connect(tls))
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "query connection ended");
            }
        });
        Ok(client)
    }

    /// Replication connection settings for a slot and publication.
    pub fn replication_config(&self, slot: &str, publication: &str) -> ReplicationConfig {
        ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.clone(),
            self.dbname.clone(),
            slot.to_owned(),
            publication.to_owned(),
        )
        .with_port(self.port)
        .with_tls(tls::replication_tls(
            self.sslmode,
            self.sslrootcert.as_deref(),
            &self.host,
        ))
        .with_options(DISPLAY_OPTIONS)
        .with_application_name("ampere-replication")
        // Acknowledge durable progress promptly (the slot then releases WAL sooner).
        .with_status_interval(Duration::from_millis(100))
        .with_tcp_keepalive(self.keepalive.map(|k| TcpKeepaliveConfig {
            idle: k.idle,
            interval: k.interval,
            retries: k.count,
        }))
        .with_tcp_user_timeout(self.tcp_user_timeout)
        // The protocol-level twin of the keepalive: a partition that something on the path
        // still ACKs (a proxy, NAT, load balancer) is invisible to TCP keepalives.
        .with_receive_timeout(self.keepalive.map(|k| k.budget()))
    }
}

/// Connection settings given by environment rather than in the URL (operations.md §1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub ca_certificate_file: Option<PathBuf>,
    pub keepalive_idle: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_count: Option<u32>,
    pub tcp_user_timeout: Option<Duration>,
}

/// The SQLSTATE of an error, if it came from the server.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(tokio_postgres::error::SqlState::code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_the_password() {
        let u = PgUrl::parse("postgresql://us%40r:p%2Fw@db.example:6543/my%20db?sslmode=require")
            .unwrap();
        assert_eq!(u.user, "us@r");
        assert_eq!(u.password, "p/w");
        assert_eq!(u.dbname, "my db");
        assert_eq!(u.port, 6543);
        assert_eq!(u.sslmode, SslMode::Require);
        assert!(!format!("{u:?}").contains("p/w"));
        assert_eq!(u.keepalive, Some(DEFAULT_KEEPALIVE));
        assert_eq!(u.tcp_user_timeout, Some(Duration::from_secs(25)));
        let u = PgUrl::parse("postgres://postgres@127.0.0.1/").unwrap();
        assert_eq!(u.dbname, "postgres");
        assert_eq!(u.port, 5432);
        assert_eq!(u.sslmode, SslMode::Prefer);
        let u = PgUrl::parse(
            "postgres://u@h/d?sslmode=verify-full&sslrootcert=/ca.pem&keepalives_idle=2&keepalives_interval=1&keepalives_count=2&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(u.sslmode, SslMode::VerifyFull);
        assert_eq!(
            u.sslrootcert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(
            u.keepalive.map(|k| k.budget()),
            Some(Duration::from_secs(4))
        );
        assert_eq!(u.connect_timeout, Duration::from_secs(3));
        let u = PgUrl::parse("postgres://u@h/d?keepalives=0").unwrap();
        assert_eq!((u.keepalive, u.tcp_user_timeout), (None, None));
        assert!(PgUrl::parse("postgres://u@h/d?sslmode=bogus").is_err());
    }
}
