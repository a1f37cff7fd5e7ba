//! What to do about a failed connection or replication attempt (operations.md §4.1): retry with
//! backoff, or stop the service because retrying cannot help (the operator has to change the
//! configuration or the database). Continuity breaks (new slot, invalidated slot, new cluster)
//! are not errors here: the connection handles them and the app purges.
//!
//! Invariants: classification looks at the whole `source()` chain, by SQLSTATE where Postgres
//! gives one and by typed TLS errors otherwise; anything unrecognised is retryable (a transient
//! fault mistaken for fatal would take the service down); the operator message is built from
//! server messages and our own text only, never from the URL, so it carries no credentials.

use std::error::Error;
use std::fmt;

/// The verdict on one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: reconnect after the backoff delay.
    Retry,
    /// Retrying cannot fix it: stop with this message and a non-zero status.
    Fatal(String),
}

/// An error and its sources on one line: `a: b: c`. Repeated texts (wrappers that print their
/// source) are shown once.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = String::new();
        let mut first = true;
        let mut cur: Option<&(dyn Error + 'static)> = Some(self.0);
        while let Some(e) = cur {
            let text = e.to_string();
            if !text.is_empty() && !last.contains(&text) {
                if !first {
                    f.write_str(": ")?;
                }
                f.write_str(&text)?;
                first = false;
                last = text;
            }
            cur = e.source();
        }
        Ok(())
    }
}

/// Classifies a failed attempt.
pub fn classify(err: &(dyn Error + 'static)) -> Disposition {
    let chain = Chain(err).to_string();
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<super::replication::ReplicationError>()
            && r.is_configuration()
        {
            return Disposition::Fatal(chain);
        }
        if e.downcast_ref::<super::tls::TlsError>().is_some() {
            return Disposition::Fatal(chain);
        }
        // `io::Error::source` skips the error it wraps, so look inside explicitly (tokio-rustls
        // reports certificate failures as an `io::Error` around a `rustls::Error`).
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls_error) = rustls_error
            && tls_is_fatal(rustls_error)
        {
            return Disposition::Fatal(format!(
                "{chain} (the server's TLS certificate was rejected: check sslmode and sslrootcert)"
            ));
        }
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            if let Some(db) = pg.as_db_error()
                && let Some(hint) = fatal_sqlstate(db.code().code(), db.message())
            {
                return Disposition::Fatal(format!("{chain} ({hint})"));
            }
            // tokio-postgres reports a refused SSLRequest under `sslmode=require` as a bare
            // string error with no type to match.
            if chain.contains("server does not support TLS") {
                return Disposition::Fatal(format!(
                    "{chain} (sslmode requires TLS but the server does not offer it)"
                ));
            }
        }
        if let Some(w) = e.downcast_ref::<pgwire_replication::PgWireError>() {
            match w {
                pgwire_replication::PgWireError::Server(msg) => {
                    if let Some(hint) = wire_sqlstate(msg).and_then(|c| fatal_sqlstate(c, msg)) {
                        return Disposition::Fatal(format!("{chain} ({hint})"));
                    }
                }
                pgwire_replication::PgWireError::Auth(_) => {
                    return Disposition::Fatal(format!(
                        "{chain} (authentication failed: check the DATABASE_URL user and password)"
                    ));
                }
                // Handshake I/O failures (a reset mid-handshake) are transient; refusals of the
                // certificate, of TLS itself, or of our TLS settings are not.
                pgwire_replication::PgWireError::Tls(msg) if tls_text_is_fatal(msg) => {
                    return Disposition::Fatal(format!("{chain} (check sslmode and sslrootcert)"));
                }
                _ => {}
            }
        }
        cur = e.source();
    }
    Disposition::Retry
}

/// pgwire-replication renders server errors as `message (SQLSTATE XXXXX)`.
fn wire_sqlstate(msg: &str) -> Option<&str> {
    let start = msg.rfind("(SQLSTATE ")? + "(SQLSTATE ".len();
    msg.get(start..start + 5)
}

/// The operator hint for a SQLSTATE that retrying cannot fix, or `None` (retryable).
fn fatal_sqlstate(code: &str, message: &str) -> Option<&'static str> {
    Some(match code {
        // invalid_authorization_specification: pg_hba.conf has no entry or rejects us. Every
        // form is fatal, including an explicit `reject` line (Electric retries that one forever).
        "28000" if message.contains("no encryption") => {
            "pg_hba.conf accepts this client only over TLS: use sslmode=require or stronger"
        }
        "28000" => "pg_hba.conf does not let this user connect to this database from here",
        "28P01" => "authentication failed: check the DATABASE_URL user and password",
        "3D000" => "the database in DATABASE_URL does not exist",
        // insufficient_privilege at connection or replication setup.
        "42501" if message.contains("replication") || message.contains("WAL sender") => {
            "the DATABASE_URL role needs the REPLICATION attribute: ALTER ROLE … WITH REPLICATION"
        }
        "42501" => "the DATABASE_URL role lacks a privilege Ampere needs (see operations.md §2.2)",
        "55000" if message.contains("wal_level") => {
            "Ampere requires wal_level = logical: set it in postgresql.conf and restart Postgres"
        }
        _ => return None,
    })
}

/// pgwire-replication reports TLS problems as text only.
fn tls_text_is_fatal(msg: &str) -> bool {
    [
        "certificate",
        "does not support TLS",
        "config error",
        "UnknownIssuer",
        "invalid peer",
        "SNI",
        "AlertReceived",
    ]
    .iter()
    .any(|n| msg.contains(n))
}

fn tls_is_fatal(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType
            | rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified_by_sqlstate() {
        let wire = |m: &str| pgwire_replication::PgWireError::Server(m.to_owned());
        let fatal =
            |e: &pgwire_replication::PgWireError| matches!(classify(e), Disposition::Fatal(_));
        assert!(fatal(&wire(
            "must be superuser or replication role to start walsender (SQLSTATE 42501)"
        )));
        assert!(fatal(&wire(
            "logical decoding requires wal_level >= logical (SQLSTATE 55000)"
        )));
        assert!(fatal(&wire(
            "password authentication failed for user \"x\" (SQLSTATE 28P01)"
        )));
        assert!(!fatal(&wire(
            "terminating connection due to administrator command (SQLSTATE 57P01)"
        )));
        assert!(!fatal(&wire(
            "sorry, too many clients already (SQLSTATE 53300)"
        )));
        assert!(!fatal(&wire(
            "can no longer get changes from replication slot \"s\" (SQLSTATE 55000)"
        )));
        let io = pgwire_replication::PgWireError::Io(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(classify(&io), Disposition::Retry);
        let tls = |m: &str| classify(&pgwire_replication::PgWireError::Tls(m.to_owned()));
        assert_eq!(
            tls("TLS handshake failed: connection reset by peer"),
            Disposition::Retry
        );
        assert!(matches!(
            tls("TLS handshake failed: invalid peer certificate: UnknownIssuer"),
            Disposition::Fatal(_)
        ));
        assert!(matches!(
            tls("server does not support TLS (SSLRequest rejected)"),
            Disposition::Fatal(_)
        ));
    }

    #[test]
    fn the_chain_is_one_line_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }
}
