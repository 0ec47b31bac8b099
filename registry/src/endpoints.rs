//! Which endpoints serve a registry, as dockerd chooses them: `--registry-mirror`s first for
//! Docker Hub; for an insecure registry (`--insecure-registry` host:port or CIDR, and
//! 127.0.0.0/8 always) TLS without verification first, then plain HTTP; otherwise TLS
//! verified against the system's roots plus `certs.d/<host:port>/*.crt`, with the client
//! certificate `*.cert` + `*.key` of that directory.

use crate::client::Scheme;
use crate::tls::{self, TlsError};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Docker Hub's index name, as references carry it.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is served.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
/// Where the system's CA bundle is on Debian.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Errors of the registry settings, worded as dockerd's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("insecure registry {0} is not valid: insecure registries should not contain a scheme, and must be host[:port] or a CIDR")]
    Insecure(String),
    #[error("invalid mirror: unsupported scheme {0:?} in {1:?}")]
    MirrorScheme(String, String),
    #[error("invalid mirror: path, query, or fragment at end of the URI {0:?}")]
    MirrorPath(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("certs.d/{host}: {reason}")]
    CertsDir { host: String, reason: String },
}

/// An IP network (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let bits = |ip: &IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u32::from(*v) as u128, 32),
                IpAddr::V6(v) => (u128::from(*v), 128),
            }
        };
        let (net, width) = bits(&self.addr);
        let (x, w) = bits(ip);
        if w != width {
            return false;
        }
        let shift = width - self.prefix as u32;
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (x >> shift)
    }
}

/// The registry settings of the daemon (reloadable on SIGHUP).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    /// `--insecure-registry`: host[:port] names, and CIDRs.
    pub insecure_hosts: Vec<String>,
    pub insecure_cidrs: Vec<Cidr>,
    /// `--registry-mirror`: base URLs, normalised with a trailing `/`.
    pub mirrors: Vec<String>,
    /// Where `<host:port>/ca.crt`, `client.cert`, `client.key` are looked up.
    pub certs_dir: PathBuf,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_hosts: Vec::new(),
            insecure_cidrs: vec![Cidr::parse("127.0.0.0/8").expect("a valid CIDR")],
            mirrors: Vec::new(),
            certs_dir: PathBuf::from("/etc/strata/certs.d"),
        }
    }
}

/// One place to talk to for a registry.
#[derive(Clone)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    pub scheme: Scheme,
    /// A mirror of Docker Hub (pull only; failures fall back to the next endpoint).
    pub mirror: bool,
    /// Plain HTTP or unverified TLS.
    pub insecure: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl Endpoint {
    /// `https://host` or `http://host`.
    pub fn url(&self) -> String {
        match self.scheme {
            Scheme::Http => format!("http://{}", self.host),
            Scheme::Https(_) => format!("https://{}", self.host),
        }
    }
}

impl RegistryConfig {
    /// Settings from `--insecure-registry` and `--registry-mirror` values, checked as dockerd
    /// checks them.
    pub fn new(
        insecure: &[String],
        mirrors: &[String],
        certs_dir: &Path,
    ) -> Result<RegistryConfig, ConfigError> {
        let mut cfg = RegistryConfig {
            certs_dir: certs_dir.to_path_buf(),
            ..Default::default()
        };
        for i in insecure {
            if i.contains("://") || i.is_empty() {
                return Err(ConfigError::Insecure(i.clone()));
            }
            if i.contains('/') {
                let c = Cidr::parse(i).ok_or_else(|| ConfigError::Insecure(i.clone()))?;
                if !cfg.insecure_cidrs.contains(&c) {
                    cfg.insecure_cidrs.push(c);
                }
            } else {
                cfg.insecure_hosts.push(i.clone());
            }
        }
        for m in mirrors {
            cfg.mirrors.push(normalize_mirror(m)?);
        }
        Ok(cfg)
    }

    /// Whether `host` (`host[:port]`) is insecure: named, or resolving into an insecure CIDR.
    pub fn is_insecure(&self, host: &str) -> bool {
        if self.insecure_hosts.iter().any(|h| h == host) {
            return true;
        }
        let name = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
            _ => host,
        };
        let name = name.trim_matches(['[', ']']);
        let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (name, 0)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default(),
        };
        ips.iter()
            .any(|ip| self.insecure_cidrs.iter().any(|c| c.contains(ip)))
    }

    /// The TLS settings for `host`: verified (system roots and certs.d CAs) or not, with the
    /// client certificate of certs.d when there is one.
    pub fn tls_for(
        &self,
        host: &str,
        verify: bool,
    ) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
        let dir = self.certs_dir.join(host);
        let mut cas = Vec::new();
        let mut client_certs = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            names.sort();
            for p in names {
                match p.extension().and_then(|e| e.to_str()) {
                    Some("crt") => cas.push(p),
                    Some("cert") => {
                        let key = p.with_extension("key");
                        if !key.exists() {
                            return Err(ConfigError::CertsDir {
                                host: host.into(),
                                reason: format!(
                                    "missing key {} for client certificate {}. CA certificates must use the extension .crt",
                                    key.display(),
                                    p.display()
                                ),
                            });
                        }
                        client_certs.push((p, key));
                    }
                    Some("key") if !p.with_extension("cert").exists() => {
                        return Err(ConfigError::CertsDir {
                            host: host.into(),
                            reason: format!(
                                "missing client certificate {} for key {}",
                                p.with_extension("cert").display(),
                                p.display()
                            ),
                        });
                    }
                    _ => {}
                }
            }
        }
        let b = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let b = if verify {
            let mut roots = rustls::RootCertStore::empty();
            if Path::new(SYSTEM_ROOTS).exists() {
                for c in tls::certs(Path::new(SYSTEM_ROOTS))? {
                    let _ = roots.add(c); // a bundle may hold certificates rustls refuses
                }
            }
            for ca in &cas {
                for c in tls::certs(ca)? {
                    roots.add(c).map_err(|e| TlsError::Certs {
                        path: ca.clone(),
                        reason: e.to_string(),
                    })?;
                }
            }
            b.with_root_certificates(roots)
        } else {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(tls::AnyServer(tls::provider())))
        };
        let cfg = match client_certs.first() {
            Some((c, k)) => b
                .with_client_auth_cert(tls::certs(c)?, tls::key(k)?)
                .map_err(|e| TlsError::Config(e.to_string()))?,
            None => b.with_no_client_auth(),
        };
        Ok(Arc::new(cfg))
    }

    /// The endpoints for a push (`push` true: no mirrors) or pull from the registry `domain`,
    /// in the order to try them.
    pub fn endpoints(&self, domain: &str, push: bool) -> Result<Vec<Endpoint>, ConfigError> {
        let mut out = Vec::new();
        let host = if domain == DOCKER_HUB {
            if !push {
                for m in &self.mirrors {
                    let (tls, rest) = match m.strip_prefix("https://") {
                        Some(r) => (true, r),
                        None => (false, m.strip_prefix("http://").unwrap_or(m)),
                    };
                    let h = rest.trim_end_matches('/').to_string();
                    let insecure = self.is_insecure(&h);
                    let scheme = if tls {
                        Scheme::Https(self.tls_for(&h, !insecure)?)
                    } else {
                        Scheme::Http
                    };
                    out.push(Endpoint {
                        host: h,
                        scheme,
                        mirror: true,
                        insecure: insecure || !tls,
                    });
                }
            }
            DOCKER_HUB_REGISTRY
        } else {
            domain
        };
        let insecure = self.is_insecure(domain) || self.is_insecure(host);
        out.push(Endpoint {
            host: host.to_string(),
            scheme: Scheme::Https(self.tls_for(domain, !insecure)?),
            mirror: false,
            insecure,
        });
        if insecure {
            out.push(Endpoint {
                host: host.to_string(),
                scheme: Scheme::Http,
                mirror: false,
                insecure,
            });
        }
        Ok(out)
    }

    /// `RegistryConfig` of `/info`, as dockerd reports it.
    pub fn info(&self) -> serde_json::Value {
        let mut cidrs: Vec<String> = self
            .insecure_cidrs
            .iter()
            .map(|c| format!("{}/{}", c.addr, c.prefix))
            .collect();
        cidrs.sort();
        let mut index = serde_json::Map::new();
        index.insert(
            DOCKER_HUB.into(),
            serde_json::json!({ "Name": DOCKER_HUB, "Mirrors": self.mirrors, "Secure": true, "Official": true }),
        );
        for h in &self.insecure_hosts {
            index.insert(
                h.clone(),
                serde_json::json!({ "Name": h, "Mirrors": [], "Secure": false, "Official": false }),
            );
        }
        serde_json::json!({
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": cidrs,
            "IndexConfigs": index,
            "Mirrors": self.mirrors,
        })
    }
}

/// A mirror URL as dockerd keeps it: scheme required (http or https), no path, ending in `/`.
fn normalize_mirror(m: &str) -> Result<String, ConfigError> {
    let m = m.trim_end_matches('/');
    let rest = match m.split_once("://") {
        Some(("http" | "https", r)) => r,
        Some((s, _)) => return Err(ConfigError::MirrorScheme(s.to_string(), m.to_string())),
        None => return Err(ConfigError::MirrorScheme(String::new(), m.to_string())),
    };
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        return Err(ConfigError::MirrorPath(m.to_string()));
    }
    Ok(format!("{m}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains(&"10.1.200.3".parse().expect("ip")));
        assert!(!c.contains(&"10.2.0.1".parse().expect("ip")));
        assert!(!c.contains(&"::1".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("cidr");
        assert!(all.contains(&"8.8.8.8".parse().expect("ip")));
        let v6 = Cidr::parse("fd00::/8").expect("cidr");
        assert!(v6.contains(&"fd12::1".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0").is_none());
    }

    #[test]
    fn insecure_registries() {
        let c = RegistryConfig::new(
            &["myreg:5000".into(), "192.168.0.0/16".into()],
            &[],
            Path::new("/nonexistent"),
        )
        .expect("config");
        assert!(c.is_insecure("myreg:5000"));
        assert!(
            c.is_insecure("127.0.0.1:5000"),
            "loopback is insecure by default"
        );
        assert!(c.is_insecure("192.168.3.4"));
        assert!(!c.is_insecure("10.0.0.1:5000"));
        assert!(RegistryConfig::new(&["http://x".into()], &[], Path::new("/")).is_err());
        assert!(RegistryConfig::new(&["10.0.0.0/99".into()], &[], Path::new("/")).is_err());
    }

    #[test]
    fn endpoints_in_order() {
        let c = RegistryConfig::new(
            &[],
            &["http://127.0.0.1:5000".into()],
            Path::new("/nonexistent"),
        )
        .expect("config");
        let e = c.endpoints("docker.io", false).expect("endpoints");
        assert_eq!(
            format!("{e:?}"),
            "[http://127.0.0.1:5000, https://registry-1.docker.io]"
        );
        assert!(e[0].mirror && !e[1].mirror);
        let e = c.endpoints("docker.io", true).expect("endpoints");
        assert_eq!(format!("{e:?}"), "[https://registry-1.docker.io]");
        let e = c.endpoints("127.0.0.1:5000", false).expect("endpoints");
        assert_eq!(
            format!("{e:?}"),
            "[https://127.0.0.1:5000, http://127.0.0.1:5000]"
        );
        assert!(e.iter().all(|x| x.insecure));
    }

    #[test]
    fn mirrors_are_checked() {
        assert_eq!(
            normalize_mirror("https://mirror.example:5000").expect("ok"),
            "https://mirror.example:5000/"
        );
        assert!(normalize_mirror("mirror.example").is_err());
        assert!(normalize_mirror("ftp://m").is_err());
        assert!(normalize_mirror("https://m/path").is_err());
    }
}
