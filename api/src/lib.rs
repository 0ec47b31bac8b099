#![recursion_limit = "256"]
//! The Docker Engine API server (spec: shared/spec/docker-engine-api-v1.47.yaml).
//!
//! Requests are routed by hand: image names contain `/`, so `/images/{name}/json` cannot be
//! matched segment by segment. Store calls are blocking and run on the blocking pool; request
//! and response bodies cross into them through channels, so `load` and `save` stream.

pub mod attach;
mod body;
mod build;
pub mod client;
mod containers;
mod df;
pub mod distribution;
mod error;
pub mod events;
pub mod exec;
pub mod health;
mod images;
pub mod networks;
pub mod resources;
pub mod restart;
pub mod run;
pub mod runtimes;
pub mod sandbox;
mod storage;
mod system;
pub mod tls;
pub mod volumes;

use body::Resp;
pub use error::ApiError;
use hyper::body::Incoming;
use hyper::{Method, Request};
use std::path::PathBuf;
use std::sync::Arc;
use strata_graph::image::ImageStore;
use strata_graph::LayerStore;

/// The newest API version served.
pub const API_VERSION: &str = "1.47";
/// The oldest API version served.
pub const MIN_API_VERSION: &str = "1.24";

/// What the handlers work on.
pub struct Daemon {
    pub images: Arc<ImageStore>,
    pub layers: Arc<LayerStore>,
    pub containers: Arc<strata_runtime::ContainerStore>,
    pub data_root: PathBuf,
    /// Reloadable on SIGHUP.
    pub labels: std::sync::RwLock<Vec<String>>,
    /// Reloadable on SIGHUP.
    pub debug: std::sync::atomic::AtomicBool,
    /// What happened, for `/events`.
    pub events: events::Events,
    /// How containers are run.
    pub runtime: strata_runtime::lifecycle::Runtime,
    /// Exits and removals, for waiters.
    pub changes: tokio::sync::broadcast::Sender<run::Change>,
    /// `--live-restore`: containers keep running when the daemon stops (reloadable).
    pub live_restore: std::sync::atomic::AtomicBool,
    /// Attachers waiting for their containers to start.
    pub attach: attach::Pending,
    /// Exec instances.
    pub execs: exec::Execs,
    /// `--log-driver` and `--log-opt`: what containers without a LogConfig get (reloadable).
    pub log_default: std::sync::RwLock<run::LogDefault>,
    /// Delays before restarts (restart policies).
    pub restarts: restart::Backoff,
    /// Set when the daemon begins to shut down: exits then start nothing again.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// The OCI runtimes and the default one (reloadable).
    pub runtimes: std::sync::RwLock<runtimes::Runtimes>,
    /// `--default-ulimit`: ulimits of containers that do not set them (reloadable).
    pub default_ulimits: std::sync::RwLock<Vec<serde_json::Value>>,
    /// Health-check loops of running containers.
    pub health: health::Monitors,
    /// The networks: records, bridges, addresses, sandboxes, rules.
    pub net: Arc<strata_netd::Manager>,
    /// Named and anonymous volumes.
    pub volumes: Arc<strata_runtime::volume::VolumeStore>,
    /// Pull, push, login, search.
    pub distribution: Arc<strata_registry::service::Distribution>,
}

/// A parsed `-H` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
    /// A listening socket passed by the service manager (systemd socket activation).
    Fd(i32),
}

/// Listening sockets passed the systemd way (`LISTEN_PID` = us, `LISTEN_FDS` = n, fds 3..3+n).
/// Reads the environment once and clears it, as `sd_listen_fds(1)` does; call it before any
/// thread starts.
pub fn activation_fds() -> Vec<i32> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !ours || n <= 0 {
        return Vec::new();
    }
    (3..3 + n).collect()
}

/// Expands `-H` values into hosts; `fd://` takes every activation socket, `fd://N` one of them.
/// A TCP address without a port gets 2376 with TLS, 2375 without.
pub fn resolve_hosts(values: &[String], activated: &[i32], tls: bool) -> Result<Vec<Host>, String> {
    let mut out = Vec::new();
    for v in values {
        if let Some(rest) = v.strip_prefix("fd://") {
            if activated.is_empty() {
                return Err(format!(
                    "{v}: no sockets were passed by the service manager (LISTEN_FDS/LISTEN_PID)"
                ));
            }
            if rest.is_empty() {
                out.extend(activated.iter().map(|fd| Host::Fd(*fd)));
            } else {
                let fd: i32 = rest.parse().map_err(|_| format!("{v}: expected fd://N"))?;
                if !activated.contains(&fd) {
                    return Err(format!(
                        "{v}: fd {fd} was not passed by the service manager"
                    ));
                }
                out.push(Host::Fd(fd));
            }
        } else {
            out.push(Host::parse_port(v, if tls { 2376 } else { 2375 })?);
        }
    }
    Ok(out)
}

impl Host {
    /// Parses `unix://PATH` or `tcp://HOST:PORT` (dockerd's forms; port 2375 by default).
    pub fn parse(s: &str) -> Result<Host, String> {
        Self::parse_port(s, 2375)
    }

    /// As `parse`, with the port a TCP address without one gets.
    pub fn parse_port(s: &str, default_port: u16) -> Result<Host, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            return if p.is_empty() {
                Ok(Host::Unix(PathBuf::from("/run/strata.sock")))
            } else {
                Ok(Host::Unix(PathBuf::from(p)))
            };
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            return match a.rsplit_once(':') {
                Some((h, p)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => Ok(
                    Host::Tcp(format!("{}:{p}", if h.is_empty() { "0.0.0.0" } else { h })),
                ),
                Some(_) => Err(format!("invalid tcp address {s:?}")),
                None => Ok(Host::Tcp(format!(
                    "{}:{default_port}",
                    if a.is_empty() { "0.0.0.0" } else { a }
                ))),
            };
        }
        Err(format!(
            "{s}: unsupported address (unix://PATH, tcp://HOST:PORT or fd://)"
        ))
    }
}

enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

fn spawn_connection<S>(stream: S, d: Arc<Daemon>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req| {
            let d = d.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(d, req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .with_upgrades()
            .await
        {
            tracing::debug!("connection: {e}");
        }
    });
}

/// How the daemon's sockets are set up.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// TLS on TCP sockets (`--tls`/`--tlsverify`); plain TCP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Client certificates are verified (`--tlsverify`).
    pub verify: bool,
    /// Group owning unix sockets (`--group`).
    pub socket_gid: Option<u32>,
}

/// Serves the API on `host` until `shutdown` resolves; TCP sockets use TLS when configured.
pub async fn serve(
    host: &Host,
    daemon: Arc<Daemon>,
    security: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = match host {
        Host::Unix(path) => {
            let _ = std::fs::remove_file(path);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            let l = tokio::net::UnixListener::bind(path)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            if let Some(gid) = security.socket_gid {
                std::os::unix::fs::chown(path, None, Some(gid))?;
            }
            tracing::info!(socket = %path.display(), "API listening");
            Listener::Unix(l)
        }
        Host::Fd(fd) => {
            use std::os::fd::FromRawFd;
            // SAFETY: a zeroed sockaddr_storage is a valid out-buffer.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: valid buffer and length for getsockname.
            if unsafe { libc::getsockname(*fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) }
                != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            tracing::info!(
                fd,
                "API listening on a socket passed by the service manager"
            );
            if ss.ss_family as i32 == libc::AF_UNIX {
                // SAFETY: the fd was passed to us for this purpose and is used once.
                let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(*fd) };
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?)
            } else {
                // SAFETY: as above.
                let l = unsafe { std::net::TcpListener::from_raw_fd(*fd) };
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
        }
        Host::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr).await?;
            if !security.verify {
                tracing::warn!(
                    address = %addr,
                    "Binding to an IP address without --tlsverify is insecure and gives root access on this machine to everyone who has access to your network"
                );
            }
            tracing::info!(address = %addr, tls = security.tls.is_some(), verify = security.verify, "API listening");
            Listener::Tcp(l)
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = async {
                match &listener {
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| spawn_connection(s, daemon.clone())),
                    Listener::Tcp(l) => l.accept().await.map(|(s, peer)| match &security.tls {
                        None => spawn_connection(s, daemon.clone()),
                        Some(cfg) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                            let d = daemon.clone();
                            // The handshake runs in its own task, so a slow client cannot stall
                            // the accept loop.
                            tokio::spawn(async move {
                                match tokio::time::timeout(std::time::Duration::from_secs(30), acceptor.accept(s)).await {
                                    Ok(Ok(tls)) => spawn_connection(tls, d),
                                    Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
                                    Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                                }
                            });
                        }
                    }),
                }
            } => {
                if let Err(e) = r {
                    tracing::warn!("accept: {e}");
                }
            }
        }
    }
    if let Host::Unix(path) = host {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Splits an optional `/vX.Y` prefix off the path and checks the version.
fn strip_version(path: &str) -> Result<&str, ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => return Ok(path),
    };
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (a, b) = v.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let Some(v) = parse(ver) else { return Ok(path) };
    let max = parse(API_VERSION).unwrap_or((1, 47));
    let min = parse(MIN_API_VERSION).unwrap_or((1, 24));
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if v < min {
        return Err(ApiError::bad_request(format!("client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version")));
    }
    Ok(tail)
}

async fn handle(d: Arc<Daemon>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_string();
    tracing::debug!(%method, path = %raw_path, "request");
    let res = match strip_version(&raw_path) {
        Ok(path) => route(d, req, &method, path, request_version(&raw_path)).await,
        Err(e) => Err(e),
    };
    res.unwrap_or_else(|e| e.into_response())
}

/// The API version a request asks for (`/v1.41/...`), else the newest.
fn request_version(path: &str) -> (u32, u32) {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (a, b) = v.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    path.strip_prefix("/v")
        .and_then(|r| r.split('/').next())
        .and_then(parse)
        .or_else(|| parse(API_VERSION))
        .unwrap_or((1, 47))
}

async fn route(
    d: Arc<Daemon>,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
    version: (u32, u32),
) -> Result<Resp, ApiError> {
    let q = body::query(req.uri().query());
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/_ping") => Ok(system::ping(method == Method::HEAD)),
        (&Method::GET, "/version") => Ok(system::version()),
        (&Method::GET, "/info") => system::info(&d).await,
        (&Method::GET, "/images/json") => images::list(&d, &q).await,
        (&Method::POST, "/images/load") => images::load(&d, req, &q).await,
        (&Method::POST, "/images/create") if q.get("fromImage").is_some() => {
            distribution::pull(&d, req, &q).await
        }
        (&Method::POST, "/images/create") => images::create(&d, req, &q).await,
        (&Method::GET, "/images/search") => distribution::search(&d, req, &q).await,
        (&Method::POST, "/auth") => distribution::login(&d, req).await,
        (&Method::POST, "/build") => build::build(&d, req, &q).await,
        (&Method::GET, "/system/df") => df::system_df(&d, &q, version).await,
        (&Method::GET, "/storage/check") => storage::check(&d, &q).await,
        (&Method::GET, "/events") => events::get(&d.events, &q),
        (&Method::GET, "/images/get") => images::save(&d, q.all("names")).await,
        (&Method::POST, "/images/prune") => images::prune(&d, &q).await,
        (&Method::POST, "/containers/create") => containers::create(&d, req, &q).await,
        (&Method::GET, "/containers/json") => containers::list(&d, &q).await,
        (&Method::POST, "/containers/prune") => containers::prune(&d, &q).await,
        (&Method::POST, "/commit") => containers::commit(&d, req, &q).await,
        (&Method::GET, "/volumes") => volumes::list(&d, &q).await,
        (&Method::POST, "/volumes/create") => volumes::create(&d, req).await,
        (&Method::POST, "/volumes/prune") => volumes::prune(&d, &q, version).await,
        (&Method::GET, "/networks") => networks::list(&d, &q),
        (&Method::POST, "/networks/create") => networks::create(&d, req).await,
        (&Method::POST, "/networks/prune") => networks::prune(&d, &q).await,
        _ => {
            if let Some(rest) = path.strip_prefix("/containers/") {
                return containers::route_named(d.clone(), method, rest, req, &q).await;
            }
            if let Some(rest) = path.strip_prefix("/exec/") {
                return exec::route(&d, method, rest, req, &q).await;
            }
            if let Some(rest) = path.strip_prefix("/networks/") {
                return networks::route_named(&d, method, rest, req).await;
            }
            if let Some(name) = path.strip_prefix("/volumes/") {
                return volumes::route_named(&d, method, name, &q).await;
            }
            if let Some(rest) = path.strip_prefix("/images/") {
                if let (&Method::POST, Some(name)) = (method, rest.strip_suffix("/push")) {
                    let name = body::decode_path(name);
                    return distribution::push(&d, req, &name, &q).await;
                }
                return images::route_named(d, method, rest, &q).await;
            }
            Err(ApiError::not_found("page not found"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(strip_version("/v1.47/info").unwrap(), "/info");
        assert_eq!(strip_version("/v1.24/images/json").unwrap(), "/images/json");
        assert_eq!(strip_version("/info").unwrap(), "/info");
        assert_eq!(
            strip_version("/v1.48/info").unwrap_err().to_string(),
            "client version 1.48 is too new. Maximum supported API version is 1.47"
        );
        assert!(strip_version("/v1.12/info")
            .unwrap_err()
            .to_string()
            .contains("too old"));
    }
}
