//! TLS for the API, as dockerd and the docker CLI configure it: `--tls` (encrypt, no client
//! check), `--tlsverify` (client certificates signed by `--tlscacert` required), and the
//! client's side of both. rustls with the ring provider; PEM files read with
//! `rustls-pki-types`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use strata_registry::tls::TlsError;
use strata_registry::tls::{certs, key, provider, roots, AnyServer};

/// The files of one side of a TLS connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
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
