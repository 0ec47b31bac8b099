//! A real registry for the distribution tests: Debian's `docker-registry` (distribution 2.8)
//! started inside a test daemon's network namespace on 127.0.0.1 (the daemon's loopback),
//! stopped by PID when dropped; optionally with TLS and htpasswd auth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_registry::client::{RegistryClient, Scheme};
use strata_registry::credentials::AuthConfig;

/// A registry process.
pub struct Registry {
    pub child: Child,
    /// `127.0.0.1:PORT` (inside the namespace).
    pub host: String,
    /// Its storage root.
    pub root: PathBuf,
    pub port: u16,
    config: PathBuf,
    netns: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether the registry tests can run here; says why not.
pub fn registry_available() -> bool {
    if !have("docker-registry") || !super::docker_available() {
        eprintln!("SKIPPED: needs docker-registry (Debian package) and the docker CLI");
        return false;
    }
    true
}

/// A free TCP port inside the namespace.
fn free_port(netns: &Path) -> u16 {
    super::in_netns(netns, || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    })
}

fn spawn(netns: &Path, config: &Path) -> Child {
    let mut cmd = Command::new("docker-registry");
    super::enter_netns(&mut cmd, netns).expect("the daemon's namespace");
    cmd.arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry")
}

impl Registry {
    /// A registry in `netns` on `ip` storing under `dir`; `extra` is more of its YAML config.
    /// Ready when its port accepts connections.
    pub fn start(netns: &Path, dir: &Path, ip: &str, extra: &str) -> Registry {
        std::fs::create_dir_all(dir).expect("registry dir");
        let port = free_port(netns);
        let root = dir.join("data");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {ip}:{port}\n{extra}",
                root.display()
            ),
        )
        .expect("config");
        let mut r = Registry {
            child: spawn(netns, &config),
            host: format!("{ip}:{port}"),
            root,
            port,
            config,
            netns: netns.to_path_buf(),
        };
        r.wait_ready();
        r
    }

    /// A plain HTTP registry without auth on the namespace's 127.0.0.1.
    pub fn plain(netns: &Path, dir: &Path) -> Registry {
        Registry::start(netns, dir, "127.0.0.1", "")
    }

    fn wait_ready(&mut self) {
        let host = self.host.clone();
        let ok = super::in_netns(&self.netns, move || {
            let t = Instant::now();
            while std::net::TcpStream::connect(&host).is_err() {
                if t.elapsed() > Duration::from_secs(20) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            true
        });
        assert!(ok, "the registry did not start");
    }

    /// Stops the registry (by PID).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.netns, &self.config);
        self.wait_ready();
    }

    /// The data file of blob `digest` in the registry's storage.
    pub fn blob_path(&self, digest: &strata_graph::Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }

    /// A client of it, used from inside the namespace (see [`super::in_netns`]).
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.host, Scheme::Http, AuthConfig::default())
    }
}
