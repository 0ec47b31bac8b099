//! Starting and stopping containers: the state directory, the `/etc` files, the spec, the
//! shim, and what the shim says back. Blocking calls; the daemon runs them off its async
//! workers.

use crate::shim::{self, ShimArgs};
use crate::spec::{self, EtcFiles, SpecError, SpecInput, UserError};
use crate::Container;
use std::path::{Path, PathBuf};

/// Errors starting or signalling a container.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    User(#[from] UserError),
    /// The runtime refused: its message, as dockerd passes it on.
    #[error("failed to create task for container: {0}")]
    Runtime(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("container {0} is not running")]
    NotRunning(String),
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

/// How containers are run on this host.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `--exec-root`: state directories and the runtime's own state.
    pub exec_root: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// The binary to re-execute as `strata shim`.
    pub shim_exe: PathBuf,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i64,
    pub finished_at: String,
}

impl Runtime {
    /// The state directory of a container.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }

    fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runc")
    }

    /// Starts `c` with its root filesystem at `rootfs`, logging to `log`; returns the init's
    /// PID once it runs.
    pub fn start(&self, c: &Container, rootfs: &Path, log: &Path) -> Result<i32, RunError> {
        let dir = self.state_dir(&c.id);
        if dir.exists() {
            strata_graph::fsutil::remove_tree(&dir)
                .map_err(io_ctx(format!("clearing {}", dir.display())))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        std::fs::create_dir_all(self.runtime_root())
            .map_err(io_ctx("creating the runtime root"))?;
        let etc = EtcFiles {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
        };
        let host = &c.config.hostname;
        std::fs::write(&etc.hostname, format!("{host}\n")).map_err(io_ctx("writing hostname"))?;
        std::fs::write(
            &etc.hosts,
            format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n"),
        )
        .map_err(io_ctx("writing hosts"))?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&etc.resolv_conf, resolv).map_err(io_ctx("writing resolv.conf"))?;
        let user = spec::resolve_user(rootfs, &c.config.user)?;
        let s = spec::build(&SpecInput {
            container: c,
            rootfs,
            user: &user,
            etc: Some(&etc),
            cgroup_path: format!("/strata/{}", c.id),
        })?;
        let data = serde_json::to_vec(&s)
            .map_err(|e| io_ctx("encoding the spec")(std::io::Error::other(e)))?;
        std::fs::write(dir.join("config.json"), data).map_err(io_ctx("writing the spec"))?;
        shim::spawn(
            &self.shim_exe,
            &ShimArgs {
                id: c.id.clone(),
                state: dir.clone(),
                runtime: self.runtime.clone(),
                runtime_root: self.runtime_root(),
                log: log.to_path_buf(),
            },
        )
        .map_err(RunError::Runtime)
    }

    /// Sends a signal to the container's processes (through its shim).
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RunError> {
        let dir = self.state_dir(id);
        match shim::request(&dir, &format!("kill {signal}")) {
            Ok(r) if r == "ok" => Ok(()),
            Ok(r) => Err(RunError::Runtime(r.trim_start_matches("err ").to_string())),
            Err(_) => Err(RunError::NotRunning(id.to_string())),
        }
    }

    /// Blocks until the container exits (now or earlier) and returns how.
    pub fn wait(&self, id: &str) -> Result<Exit, RunError> {
        let dir = self.state_dir(id);
        let _ = shim::request(&dir, "wait");
        // The shim writes the record before it answers waiters.
        for _ in 0..200 {
            if let Some(e) = self.exit(id) {
                return Ok(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(RunError::NotRunning(id.to_string()))
    }

    /// The exit record, when the container has exited.
    pub fn exit(&self, id: &str) -> Option<Exit> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state_dir(id).join(shim::EXIT_FILE)).ok()?)
                .ok()?;
        Some(Exit {
            code: v["ExitCode"].as_i64()?,
            finished_at: v["FinishedAt"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Whether the container's shim still answers.
    pub fn alive(&self, id: &str) -> bool {
        shim::short_path(&self.state_dir(id), shim::SOCKET)
            .is_ok_and(|(_fd, p)| std::os::unix::net::UnixStream::connect(p).is_ok())
    }

    /// Removes what a finished container left in the exec root.
    pub fn cleanup(&self, id: &str) {
        let _ = strata_graph::fsutil::remove_tree(&self.state_dir(id));
    }
}

/// The exit code dockerd and the docker CLI give a start that failed because the command
/// cannot run: 127 when it is not found, 126 when it may not be executed; `None` otherwise.
pub fn command_failure_code(msg: &str) -> Option<i32> {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        Some(127)
    } else if msg.contains("permission denied") {
        Some(126)
    } else {
        None
    }
}

/// A signal by name or number (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        "WINCH" => libc::SIGWINCH,
        "PIPE" => libc::SIGPIPE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals() {
        assert_eq!(super::parse_signal("SIGTERM"), Some(15));
        assert_eq!(super::parse_signal("kill"), Some(9));
        assert_eq!(super::parse_signal("3"), Some(3));
        assert_eq!(super::parse_signal("SIGBOGUS"), None);
        assert_eq!(super::parse_signal("0"), None);
    }
}
