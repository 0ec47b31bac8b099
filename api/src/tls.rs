//! TLS for the API, as dockerd and the docker CLI configure it: `--tls` (encrypt, no client
//! check), `--tlsverify` (client certificates signed by `--tlscacert` required), and the
//! client's side of both. rustls with the ring provider; PEM files read with
//! `rustls-pki-types`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors setting up TLS; each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read TLS certificates from {path}: {reason}")]
    Certs { path: PathBuf, reason: String },
    #[error("could not read the TLS key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The files of one side of a TLS connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs {
        path: path.to_path_buf(),
        reason,
    };
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if v.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(v)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(ca)? {
        store.add(c).map_err(|e| TlsError::Certs {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str) -> Result<&'a Path, TlsError> {
    p.as_deref()
        .ok_or_else(|| TlsError::Config(format!("{what} is required")))
}

/// The daemon's TLS: its certificate and key; with `verify`, clients must present a
/// certificate signed by the CA.
pub fn server_config(
    files: &TlsFiles,
    verify: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let b = if verify {
        let ca = need(&files.ca, "--tlscacert")?;
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(ca)?),
            provider(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        b.with_client_cert_verifier(v)
    } else {
        b.with_no_client_auth()
    };
    let cfg = b
        .with_single_cert(
            certs(need(&files.cert, "--tlscert")?)?,
            key(need(&files.key, "--tlskey")?)?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Accepts any server certificate: the docker CLI's `--tls` without `--tlsverify`.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client's TLS: with `verify`, the server must present a certificate signed by the CA;
/// a client certificate is sent when both cert and key are given.
pub fn client_config(
    files: &TlsFiles,
    verify: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let b = if verify {
        b.with_root_certificates(roots(need(&files.ca, "--tlscacert")?)?)
    } else {
        b.dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
    };
    let cfg = match (&files.cert, &files.key) {
        (Some(c), Some(k)) if c.exists() || k.exists() => b
            .with_client_auth_cert(certs(c)?, key(k)?)
            .map_err(|e| TlsError::Config(e.to_string()))?,
        _ => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}
