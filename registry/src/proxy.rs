//! The daemon's HTTP proxy for registries, from `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`
//! (either case) as Go's `ProxyFromEnvironment` reads them for dockerd: `localhost` and
//! loopback addresses are never proxied; `NO_PROXY` holds `*`, host names (matching their
//! subdomains too, with or without a leading dot), `host:port`, IP addresses and CIDRs.

use crate::endpoints::Cidr;
use base64::Engine as _;
use std::net::IpAddr;

/// A proxy server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServer {
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value, from `user:password@` in the URL.
    pub authorization: Option<String>,
}

/// The proxy settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    http: Option<ProxyServer>,
    https: Option<ProxyServer>,
    no_proxy: Vec<String>,
}

fn env(upper: &str) -> Option<String> {
    std::env::var(upper)
        .ok()
        .or_else(|| std::env::var(upper.to_lowercase()).ok())
        .filter(|v| !v.trim().is_empty())
}

/// Parses `[http://][user:pass@]host[:port]` (a URL without scheme is taken as http://).
fn server(url: &str) -> Option<ProxyServer> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .or_else(|| url.trim().strip_prefix("https://"))
        .unwrap_or(url.trim());
    let authority = rest.split('/').next()?;
    let (auth, hostport) = match authority.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (hostport, 80),
    };
    if host.is_empty() {
        return None;
    }
    Some(ProxyServer {
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        authorization: auth.map(|a| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        }),
    })
}

impl Proxy {
    /// The settings of this process's environment.
    pub fn from_env() -> Proxy {
        Proxy::new(
            env("HTTP_PROXY").as_deref(),
            env("HTTPS_PROXY").as_deref(),
            env("NO_PROXY").as_deref(),
        )
    }

    /// Settings from the three values.
    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: Option<&str>) -> Proxy {
        Proxy {
            http: http.and_then(server),
            https: https.and_then(server),
            no_proxy: no_proxy
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// The proxy for a request to `host:port` (over TLS or not), if it goes through one.
    pub fn for_target(&self, tls: bool, host: &str, port: u16) -> Option<&ProxyServer> {
        let p = if tls { &self.https } else { &self.http }.as_ref()?;
        let host = host.trim_matches(['[', ']']).to_lowercase();
        if host == "localhost" {
            return None;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return None;
        }
        for rule in &self.no_proxy {
            if rule == "*" {
                return None;
            }
            if let Some(c) = Cidr::parse(rule) {
                if ip.is_some_and(|ip| c.contains(&ip)) {
                    return None;
                }
                continue;
            }
            if let Ok(r) = rule.parse::<IpAddr>() {
                if ip == Some(r) {
                    return None;
                }
                continue;
            }
            let (name, rport) = match rule.rsplit_once(':') {
                Some((n, p)) => (n, p.parse::<u16>().ok()),
                None => (rule.as_str(), None),
            };
            if rport.is_some_and(|rp| rp != port) {
                continue;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            if host == name || host.ends_with(&format!(".{name}")) {
                return None;
            }
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_as_go_chooses_them() {
        let p = Proxy::new(
            Some("http://user:pw@proxy.local:3128"),
            Some("proxy.local:3129"),
            Some("internal.example, .corp, 10.0.0.0/8, 192.168.1.2, reg.example:5000"),
        );
        let s = p
            .for_target(false, "registry.example", 80)
            .expect("proxied");
        assert_eq!((s.host.as_str(), s.port), ("proxy.local", 3128));
        assert_eq!(s.authorization.as_deref(), Some("Basic dXNlcjpwdw=="));
        assert_eq!(
            p.for_target(true, "registry.example", 443).map(|s| s.port),
            Some(3129)
        );
        assert!(p.for_target(true, "127.0.0.1", 5000).is_none(), "loopback");
        assert!(p.for_target(true, "localhost", 5000).is_none());
        assert!(p.for_target(true, "[::1]", 5000).is_none());
        assert!(p.for_target(true, "a.internal.example", 443).is_none());
        assert!(p.for_target(true, "x.corp", 443).is_none());
        assert!(p.for_target(true, "10.3.4.5", 443).is_none());
        assert!(p.for_target(true, "192.168.1.2", 443).is_none());
        assert!(p.for_target(true, "reg.example", 5000).is_none());
        assert!(p.for_target(true, "reg.example", 5001).is_some());
        assert!(Proxy::new(None, None, None)
            .for_target(true, "x.example", 443)
            .is_none());
        assert!(Proxy::new(Some("p:1"), Some("p:1"), Some("*"))
            .for_target(true, "x.example", 443)
            .is_none());
    }
}
