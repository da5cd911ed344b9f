//! TLS setup with rustls: the acceptor for clients and the connector settings for backends.
//!
//! The switch to TLS happens inside the MySQL handshake
//! (<https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_ssl_request.html>);
//! this module only builds the rustls configurations from the config file's paths.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{BackendTlsConfig, ServerTlsConfig};
use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no PEM certificate found", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).map_err(|e| Error::Tls(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no PEM private key found", path.display())))
}

/// The acceptor for client connections that send an SSLRequest.
pub fn acceptor(cfg: &ServerTlsConfig) -> Result<tokio_rustls::TlsAcceptor> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(read_certs(&cfg.cert)?, read_key(&cfg.key)?)
        .map_err(|e| Error::Tls(format!("{} / {}: {e}", cfg.cert.display(), cfg.key.display())))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Client-side TLS settings for backend connections.
#[derive(Clone)]
pub struct BackendTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: Option<String>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl BackendTls {
    pub fn from_config(cfg: &BackendTlsConfig) -> Result<Self> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let config = if cfg.verify {
            let mut roots = rustls::RootCertStore::empty();
            let ca = cfg.ca.as_ref().ok_or_else(|| Error::Tls("backend.tls.ca is required to verify".into()))?;
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider()))).with_no_client_auth()
        };
        Ok(BackendTls { config: Arc::new(config), server_name: cfg.server_name.clone() })
    }

    /// The name to verify for a node at `addr` (`host:port`).
    pub fn name_for(&self, addr: &str) -> Result<ServerName<'static>> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr).trim_matches(['[', ']']).to_string(),
        };
        ServerName::try_from(host.clone()).map_err(|e| Error::Tls(format!("bad server name {host:?}: {e}")))
    }
}

/// Accepts any server certificate (encryption without authentication). Only reachable
/// through `backend.tls.verify = false`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
