//! TLS to Postgres, following libpq's `sslmode` (and `sslrootcert`), for both connection kinds:
//! query connections get a rustls [`MakeTlsConnect`] for tokio-postgres built here; the
//! replication connection gets the equivalent `pgwire_replication::TlsConfig` (that crate runs
//! its own rustls handshake).
//!
//! | sslmode | TLS | falls back to plain | chain verified | host name verified |
//! |---|---|---|---|---|
//! | `disable` | never | – | – | – |
//! | `allow`, `prefer` | if the server offers it | yes | no | no |
//! | `require` | always | no | only with `sslrootcert` (libpq) | no |
//! | `verify-ca` | always | no | yes | no |
//! | `verify-full` | always | no | yes | yes |
//!
//! Invariants: without `sslrootcert`, `verify-*` trust the Mozilla root set (webpki-roots);
//! the crypto provider is always `ring`, passed explicitly (both rustls providers are compiled
//! in, so the process-wide default would be ambiguous).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Whether a plain connection is acceptable when the server offers no TLS.
    pub fn allows_plain(self) -> bool {
        matches!(self, SslMode::Disable | SslMode::Allow | SslMode::Prefer)
    }
}

/// How the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

fn verify_policy(mode: SslMode, root_cert: Option<&Path>) -> Verify {
    match mode {
        SslMode::VerifyFull => Verify::ChainAndName,
        SslMode::VerifyCa => Verify::Chain,
        // libpq: `require` with a root certificate file behaves like `verify-ca`.
        SslMode::Require if root_cert.is_some() => Verify::Chain,
        _ => Verify::Nothing,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the root certificate file {}", .path.display())]
    RootCertRead {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the root certificate file {} holds no usable certificate", .path.display())]
    RootCertEmpty { path: PathBuf },
    #[error("TLS configuration")]
    Rustls(#[from] rustls::Error),
    #[error("TLS certificate verifier")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(root_cert: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let read_err = |source| TlsError::RootCertRead {
                path: path.to_path_buf(),
                source,
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(read_err)? {
                // A certificate the store cannot parse is skipped, like libpq's loader does.
                let _ = roots.add(cert.map_err(read_err)?);
            }
            if roots.is_empty() {
                return Err(TlsError::RootCertEmpty {
                    path: path.to_path_buf(),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// The rustls client configuration for a `sslmode` (not called for `disable`).
pub fn client_config(mode: SslMode, root_cert: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify_policy(mode, root_cert) {
        Verify::Nothing => Arc::new(NoVerification(provider)),
        policy => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(root_cert)?),
                provider,
            )
            .build()?;
            if policy == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `prefer`/`require` without a root certificate: encryption without authentication (libpq's
/// behaviour). Handshake signatures are still checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The equivalent settings for the replication connection.
pub fn replication_tls(
    mode: SslMode,
    root_cert: Option<&Path>,
    host: &str,
) -> pgwire_replication::TlsConfig {
    use pgwire_replication::{SslMode as Wire, TlsConfig};
    let ca = root_cert.map(Path::to_path_buf);
    let mut tls = match (mode, verify_policy(mode, root_cert)) {
        (SslMode::Disable, _) => TlsConfig::disabled(),
        (SslMode::Allow | SslMode::Prefer, _) => TlsConfig {
            mode: Wire::Prefer,
            ..TlsConfig::default()
        },
        (_, Verify::Nothing) => TlsConfig::require(),
        (_, Verify::Chain) => TlsConfig::verify_ca(ca),
        (_, Verify::ChainAndName) => TlsConfig::verify_full(ca),
    };
    // pgwire-replication refuses `verify-full` to an IP address unless the name to check is
    // given explicitly; rustls checks IP addresses against the certificate's IP SANs.
    if host.parse::<std::net::IpAddr>().is_ok() {
        tls = tls.with_sni_hostname(host);
    }
    tls
}

/// A tokio-postgres TLS connector over rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    pub fn new(config: ClientConfig) -> MakeRustls {
        MakeRustls {
            config: Arc::new(config),
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, std::io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
        })
    }
}

pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (the `-PLUS` variant would need the certificate hash).
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_map_to_libpq_verification() {
        let ca = Path::new("/ca.pem");
        assert_eq!(verify_policy(SslMode::Prefer, None), Verify::Nothing);
        assert_eq!(verify_policy(SslMode::Require, None), Verify::Nothing);
        assert_eq!(verify_policy(SslMode::Require, Some(ca)), Verify::Chain);
        assert_eq!(verify_policy(SslMode::VerifyCa, None), Verify::Chain);
        assert_eq!(
            verify_policy(SslMode::VerifyFull, Some(ca)),
            Verify::ChainAndName
        );
        assert!(SslMode::parse("verify-full").is_some() && SslMode::parse("bogus").is_none());
        for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
            assert!(client_config(mode, None).is_ok());
        }
        assert!(matches!(
            client_config(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))),
            Err(TlsError::RootCertRead { .. })
        ));
    }
}
