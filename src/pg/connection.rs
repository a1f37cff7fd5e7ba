//! Connection settings: one parsed `DATABASE_URL` turned into a query connection
//! (tokio-postgres) or a replication connection (pgwire-replication), with the display settings
//! every session must share so snapshot values and replicated values are byte-identical.

use std::time::Duration;

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tokio_postgres::{Client, NoTls};

/// The five display settings of `operations.md` §1.1 as a startup `options` string.
pub const DISPLAY_OPTIONS: &str = "-c bytea_output=hex -c DateStyle=ISO,DMY -c TimeZone=UTC \
     -c extra_float_digits=1 -c IntervalStyle=iso_8601";

/// The same settings as SQL, for sessions that cannot take startup options.
pub const DISPLAY_SQL: &str = "SET bytea_output = 'hex'; SET DateStyle = 'ISO, DMY'; \
     SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET IntervalStyle = 'iso_8601'";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid database URL: {0}")]
    Url(String),
    #[error("cannot connect to Postgres")]
    Db(#[from] tokio_postgres::Error),
}

/// A parsed database URL.
#[derive(Clone)]
pub struct PgUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
    pub sslmode: String,
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
        let sslmode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map_or_else(|| "prefer".to_owned(), |(_, v)| v.into_owned());
        Ok(PgUrl {
            host,
            port: url.port().unwrap_or(5432),
            user,
            password: url.password().map(dec).unwrap_or_default(),
            dbname,
            sslmode,
        })
    }

    fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("ampere")
            .options(DISPLAY_OPTIONS)
            .connect_timeout(Duration::from_secs(10));
        if !self.password.is_empty() {
            c.password(&self.password);
        }
        c
    }

    /// Opens a query connection; its driver task is spawned.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (client, conn) = self.pg_config().connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "query connection ended");
            }
        });
        Ok(client)
    }

    /// Replication connection settings for a slot and publication.
    pub fn replication_config(&self, slot: &str, publication: &str) -> ReplicationConfig {
        let tls = match self.sslmode.as_str() {
            "require" => TlsConfig::require(),
            _ => TlsConfig::disabled(),
        };
        ReplicationConfig::new(
            self.host.clone(),
            self.user.clone(),
            self.password.clone(),
            self.dbname.clone(),
            slot.to_owned(),
            publication.to_owned(),
        )
        .with_port(self.port)
        .with_tls(tls)
        .with_options(DISPLAY_OPTIONS)
        .with_application_name("ampere-replication")
        // Acknowledge durable progress promptly (the slot then releases WAL sooner).
        .with_status_interval(Duration::from_millis(100))
    }
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
        assert!(!format!("{u:?}").contains("p/w"));
        let u = PgUrl::parse("postgres://postgres@127.0.0.1/").unwrap();
        assert_eq!(u.dbname, "postgres");
        assert_eq!(u.port, 5432);
    }
}
