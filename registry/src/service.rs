//! The daemon's distribution service: registry settings (reloadable), the shared downloads,
//! the layer metadata, and the image store it pulls into and pushes from. Pull, push, login
//! and search are in their own modules; this one finds the endpoint that answers.

use crate::client::{RegistryClient, RegistryError};
use crate::credentials::AuthConfig;
use crate::endpoints::{ConfigError, Endpoint, RegistryConfig};
use crate::manifest::ManifestError;
use crate::metadata::Metadata;
use crate::proxy::Proxy;
use crate::transfers::Transfers;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use strata_graph::image::{ImageError, ImageStore};
use strata_graph::LayerError;

/// Errors of pull, push, login and search, worded as dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The repository or tag is not in the registry.
    #[error("manifest for {0} not found: manifest unknown: manifest unknown")]
    NotFound(String),
    #[error("pull access denied for {0}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied")]
    PullDenied(String),
    #[error("no matching manifest for {0} in the manifest list entries")]
    NoPlatform(String),
    #[error("image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}")]
    WrongPlatform {
        reference: String,
        wanted: String,
        actual: String,
    },
    #[error("{0}")]
    Blob(String),
    #[error("{0}")]
    Invalid(String),
    #[error("An image does not exist locally with the tag: {0}")]
    NoLocalImage(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl DistributionError {
    /// The HTTP status dockerd answers with before any output was written.
    pub fn status(&self) -> u16 {
        match self {
            DistributionError::NotFound(_)
            | DistributionError::PullDenied(_)
            | DistributionError::NoLocalImage(_) => 404,
            DistributionError::Registry(RegistryError::Unauthorized) => 401,
            DistributionError::Invalid(_) | DistributionError::Config(_) => 400,
            _ => 500,
        }
    }
}

/// Settings that change on SIGHUP.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub registries: RegistryConfig,
    pub max_downloads: usize,
    pub max_uploads: usize,
}

/// Pull, push, login and search for the daemon.
pub struct Distribution {
    pub images: Arc<ImageStore>,
    pub transfers: Arc<Transfers>,
    pub metadata: Metadata,
    registries: RwLock<RegistryConfig>,
    max_uploads: AtomicUsize,
    proxy: Proxy,
}

impl Distribution {
    /// The service over `images`, its state under `dir` (downloads, metadata); the proxy
    /// settings are read from the environment once, as dockerd does.
    pub fn open(
        dir: &Path,
        images: Arc<ImageStore>,
        settings: Settings,
    ) -> std::io::Result<Distribution> {
        Ok(Distribution {
            images,
            transfers: Arc::new(Transfers::open(
                &dir.join("downloads"),
                settings.max_downloads,
            )?),
            metadata: Metadata::open(&dir.join("v2metadata"))?,
            registries: RwLock::new(settings.registries),
            max_uploads: AtomicUsize::new(settings.max_uploads),
            proxy: Proxy::from_env(),
        })
    }

    /// Applies reloaded settings.
    pub fn reload(&self, s: &Settings) {
        *self.registries.write().unwrap_or_else(|p| p.into_inner()) = s.registries.clone();
        self.transfers.set_limit(s.max_downloads);
        self.max_uploads.store(s.max_uploads, Ordering::Relaxed);
    }

    /// The registry settings now.
    pub fn registries(&self) -> RegistryConfig {
        self.registries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn max_uploads(&self) -> usize {
        self.max_uploads.load(Ordering::Relaxed).max(1)
    }

    /// A client of `endpoint` with `auth`.
    pub(crate) fn client(&self, endpoint: &Endpoint, auth: &AuthConfig) -> RegistryClient {
        RegistryClient::new(&endpoint.host, endpoint.scheme.clone(), auth.clone())
            .with_proxy(self.proxy.clone())
    }

    /// Tries the endpoints of `domain` in order with `attempt`; moves on from one that cannot
    /// be reached (and from a mirror on any error). Returns the first success, else the error
    /// of the last endpoint that is not a mirror.
    pub(crate) fn with_endpoint<T>(
        &self,
        domain: &str,
        push: bool,
        auth: &AuthConfig,
        mut attempt: impl FnMut(&Endpoint, Arc<RegistryClient>) -> Result<T, DistributionError>,
    ) -> Result<T, DistributionError> {
        let endpoints = self.registries().endpoints(domain, push)?;
        let mut last: Option<DistributionError> = None;
        for ep in &endpoints {
            let client = Arc::new(self.client(ep, auth));
            match attempt(ep, client) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let reachable = !matches!(
                        e,
                        DistributionError::Registry(RegistryError::Connect { .. })
                            | DistributionError::Registry(RegistryError::Io { .. })
                    );
                    tracing::info!(endpoint = ?ep, "registry endpoint failed: {e}");
                    if ep.mirror {
                        continue;
                    }
                    if reachable {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            DistributionError::Invalid(format!("no endpoint for registry {domain}"))
        }))
    }

    /// `POST /auth`: checks the credentials against the registry (`serveraddress`, Docker
    /// Hub when empty). Returns the status to show.
    pub fn login(&self, auth: &AuthConfig) -> Result<String, DistributionError> {
        let server = auth.server_address.trim();
        let domain = login_domain(server);
        self.with_endpoint(&domain, true, auth, |ep, client| {
            client.ping().map_err(|e| match e {
                RegistryError::Unauthorized => DistributionError::Registry(RegistryError::Status {
                    url: format!("{}/v2/", ep.url()),
                    status: 401,
                    body: String::new(),
                }),
                other => other.into(),
            })
        })
        .map_err(|e| match e {
            DistributionError::Registry(RegistryError::Status {
                url, status: 401, ..
            }) => DistributionError::Registry(RegistryError::LoginFailed(url)),
            other => other,
        })?;
        Ok("Login Succeeded".to_string())
    }
}

impl Distribution {
    /// Downloads `url` (http or https, through the daemon's proxy; TLS verified unless the
    /// host is an insecure registry) into `out` (ADD from a URL). Returns the bytes written.
    pub fn fetch_url(
        &self,
        url: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, DistributionError> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(r) => (true, r),
            None => (
                false,
                url.strip_prefix("http://")
                    .ok_or_else(|| DistributionError::Invalid(format!("unsupported URL {url}")))?,
            ),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let regs = self.registries();
        let scheme = if tls {
            crate::client::Scheme::Https(regs.tls_for(host, !regs.is_insecure(host))?)
        } else {
            crate::client::Scheme::Http
        };
        let client =
            RegistryClient::new(host, scheme, AuthConfig::default()).with_proxy(self.proxy.clone());
        let mut resp = client.request("GET", path, &[])?;
        if !(200..300).contains(&resp.head.status) {
            return Err(DistributionError::Invalid(format!(
                "failed to GET {url} with status {}",
                resp.head.status
            )));
        }
        std::io::copy(&mut resp.body, out).map_err(DistributionError::Io)
    }
}

/// The registry a login's server address names: `https://host:port/v1/` → `host:port`;
/// empty or Docker Hub's index URL → `docker.io`.
pub fn login_domain(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
            crate::endpoints::DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn login_domains() {
        assert_eq!(super::login_domain(""), "docker.io");
        assert_eq!(
            super::login_domain("https://index.docker.io/v1/"),
            "docker.io"
        );
        assert_eq!(super::login_domain("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            super::login_domain("https://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
    }
}
