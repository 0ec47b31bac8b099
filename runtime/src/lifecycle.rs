//! Starting and stopping containers: the state directory, the `/etc` files, the spec, the
//! shim, and what the shim says back. Blocking calls; the daemon runs them off its async
//! workers.

use crate::shim::{self, LogConfig, ShimArgs};
use crate::spec::{self, EtcFiles, SpecError, SpecInput, UserError};
use crate::Container;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Errors starting or signalling a container.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    User(#[from] UserError),
    /// The runtime could not create the container: its message, worded as dockerd 20.10.
    #[error("failed to create shim task: OCI runtime create failed: {0}: unknown")]
    Create(String),
    /// The runtime could not start an exec process (dockerd 20.10's wording).
    #[error("OCI runtime exec failed: {0}: unknown")]
    Exec(String),
    /// Another refusal of the runtime or the shim.
    #[error("{0}")]
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
    /// The binary to re-execute as `strata shim`.
    pub shim_exe: PathBuf,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i64,
    pub finished_at: String,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

impl Exit {
    /// An exit whose record was lost (shown as 255, as dockerd does).
    pub fn unknown() -> Exit {
        Exit {
            code: 255,
            finished_at: strata_graph::time::rfc3339_now(),
            oom_killed: false,
        }
    }
}

/// The first `name` in `$PATH` (the runtime, the init).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The cgroup of a container.
pub fn cgroup_path(id: &str) -> String {
    format!("/strata/{id}")
}

/// What a container is created with, besides its record.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The OCI runtime binary for this container.
    pub runtime: PathBuf,
    /// Its global options.
    pub runtime_args: Vec<String>,
    /// Its network namespace.
    pub network: spec::network::NetworkNs,
    /// The state directory of the container whose network it joins: its `/etc/hosts`,
    /// `/etc/hostname` and `/etc/resolv.conf` are shared (`--network container:X`).
    pub etc_from: Option<PathBuf>,
    /// `/etc/hosts` and `/etc/resolv.conf` as its networks make them (else the minimal
    /// ones, or the host's on the host's network).
    pub hosts: Option<String>,
    pub resolv: Option<String>,
    pub log: LogConfig,
}

/// Writes a container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: the host's
/// hosts file on the host's network (as dockerd copies it), a minimal one otherwise.
fn write_etc_files(etc: &EtcFiles, host: &str, o: &CreateOptions) -> Result<(), RunError> {
    std::fs::write(&etc.hostname, format!("{host}\n")).map_err(io_ctx("writing hostname"))?;
    let hosts = match (&o.network, &o.hosts) {
        (_, Some(h)) => h.clone().into_bytes(),
        (spec::network::NetworkNs::Host, None) => std::fs::read("/etc/hosts").unwrap_or_default(),
        _ => format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{host}\n"
        )
        .into_bytes(),
    };
    std::fs::write(&etc.hosts, hosts).map_err(io_ctx("writing hosts"))?;
    let resolv = match &o.resolv {
        Some(r) => r.clone().into_bytes(),
        None => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(&etc.resolv_conf, resolv).map_err(io_ctx("writing resolv.conf"))
}

/// The attach flags of the shim protocol: `i`, `o`, `e`.
pub fn attach_flags(stdin: bool, stdout: bool, stderr: bool) -> String {
    let mut f = String::from("-");
    for (on, c) in [(stdin, 'i'), (stdout, 'o'), (stderr, 'e')] {
        if on {
            f.push(c);
        }
    }
    f
}

impl Runtime {
    /// The state directory of a container.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }

    fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runc")
    }

    /// Creates `c` (not started) with its root filesystem at `rootfs`: the state directory,
    /// the `/etc` files, the spec, and its shim; returns the init's PID. Send
    /// [`Runtime::start`] next, after attaching what must see all of its output.
    pub fn create(&self, c: &Container, rootfs: &Path, o: &CreateOptions) -> Result<i32, RunError> {
        let dir = self.state_dir(&c.id);
        if dir.exists() {
            strata_graph::fsutil::remove_tree(&dir)
                .map_err(io_ctx(format!("clearing {}", dir.display())))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        std::fs::create_dir_all(self.runtime_root())
            .map_err(io_ctx("creating the runtime root"))?;
        let etc = match &o.etc_from {
            Some(other) => EtcFiles {
                hosts: other.join("hosts"),
                hostname: other.join("hostname"),
                resolv_conf: other.join("resolv.conf"),
            },
            None => {
                let etc = EtcFiles {
                    hosts: dir.join("hosts"),
                    hostname: dir.join("hostname"),
                    resolv_conf: dir.join("resolv.conf"),
                };
                write_etc_files(&etc, &c.config.hostname, o)?;
                etc
            }
        };
        let user = spec::resolve_user(rootfs, &c.config.user)?;
        let init = if c.host_config["Init"].as_bool() == Some(true) {
            Some(spec::mounts::find_init().ok_or_else(|| {
                RunError::Spec(SpecError::Invalid {
                    field: "Init",
                    reason: "docker-init binary not found (install tini)".into(),
                })
            })?)
        } else {
            None
        };
        let s = spec::build(&SpecInput {
            container: c,
            rootfs,
            user: &user,
            etc: Some(&etc),
            cgroup_path: cgroup_path(&c.id),
            init: init.as_deref(),
            network: &o.network,
        })?;
        let data = serde_json::to_vec(&s)
            .map_err(|e| io_ctx("encoding the spec")(std::io::Error::other(e)))?;
        std::fs::write(dir.join("config.json"), data).map_err(io_ctx("writing the spec"))?;
        shim::spawn(
            &self.shim_exe,
            &dir,
            &ShimArgs {
                id: c.id.clone(),
                runtime: o.runtime.clone(),
                runtime_root: self.runtime_root(),
                runtime_args: o.runtime_args.clone(),
                log: o.log.clone(),
                tty: c.config.tty,
                open_stdin: c.config.open_stdin,
                stdin_once: c.config.stdin_once,
            },
        )
        .map_err(|e| RunError::Create(runtime_message(&e)))
    }

    /// Sends a request whose answer is `ok` or `err MESSAGE` to the container's shim; a shim
    /// that cannot be reached is `unreachable`'s error.
    fn ask(
        &self,
        id: &str,
        req: &str,
        unreachable: impl FnOnce(std::io::Error) -> RunError,
    ) -> Result<(), RunError> {
        match shim::request(&self.state_dir(id), req) {
            Ok(r) if r == "ok" => Ok(()),
            Ok(r) => Err(RunError::Runtime(r.trim_start_matches("err ").to_string())),
            Err(e) => Err(unreachable(e)),
        }
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) -> Result<(), RunError> {
        self.ask(id, "start", |e| {
            RunError::Runtime(format!("the shim did not answer: {e}"))
        })
    }

    /// Attaches to a process of the container (`target` `-` for the init, or an exec's ID):
    /// the connection then carries [`shim::frame`]s out and the input in.
    pub fn attach(&self, id: &str, target: &str, flags: &str) -> Result<UnixStream, RunError> {
        shim::open_stream(&self.state_dir(id), &format!("attach {target} {flags}"))
            .map(|(_, s)| s)
            .map_err(|_| RunError::NotRunning(id.to_string()))
    }

    /// Sets the terminal size of a process of the container.
    pub fn resize(&self, id: &str, target: &str, cols: u16, rows: u16) -> Result<(), RunError> {
        self.ask(id, &format!("resize {target} {cols} {rows}"), |_| {
            RunError::NotRunning(id.to_string())
        })
    }

    /// Runs an exec process in the container: `process` is its OCI process; `flags` as the
    /// shim takes them (`t`, `i`, `d`). Returns its PID and, unless detached, the connection
    /// carrying its frames.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        flags: &str,
    ) -> Result<(i32, UnixStream), RunError> {
        let dir = self.state_dir(id);
        let data = serde_json::to_vec(process)
            .map_err(|e| io_ctx("encoding the process")(std::io::Error::other(e)))?;
        std::fs::write(dir.join(format!("exec-{exec_id}.json")), data)
            .map_err(io_ctx("writing the exec process"))?;
        let (pid, s) =
            shim::open_stream(&dir, &format!("exec {exec_id} -{flags}")).map_err(|e| {
                if self.alive(id) {
                    RunError::Exec(runtime_message(&e.to_string()))
                } else {
                    RunError::NotRunning(id.to_string())
                }
            })?;
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| RunError::Runtime(format!("the shim answered {pid:?}")))?;
        Ok((pid, s))
    }

    /// Removes the files of an exec whose result was read (health probes).
    pub fn exec_forget(&self, id: &str, exec_id: &str) {
        let dir = self.state_dir(id);
        for ext in ["json", "exit", "pid"] {
            let _ = std::fs::remove_file(dir.join(format!("exec-{exec_id}.{ext}")));
        }
    }

    /// The exit code of an exec, once it has exited.
    pub fn exec_exit(&self, id: &str, exec_id: &str) -> Option<i64> {
        shim::exec_exit(&self.state_dir(id), exec_id)
    }

    /// The container's spec as it was written at create.
    pub fn spec(&self, id: &str) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.state_dir(id).join("config.json")).ok()?).ok()
    }

    fn shim_args(&self, id: &str) -> Option<ShimArgs> {
        serde_json::from_slice(&std::fs::read(self.state_dir(id).join(shim::ARGS_FILE)).ok()?).ok()
    }

    /// Runs the container's OCI runtime with `args` (then the container ID); its stdout.
    fn runtime_cmd(
        &self,
        id: &str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, RunError> {
        let a = self
            .shim_args(id)
            .ok_or_else(|| RunError::NotRunning(id.to_string()))?;
        let mut cmd = std::process::Command::new(&a.runtime);
        cmd.args(&a.runtime_args)
            .arg("--root")
            .arg(&a.runtime_root)
            .args(args)
            .arg(id);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .stdin(if input.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            });
        let mut child = cmd.spawn().map_err(io_ctx("running the runtime"))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin
                .write_all(data)
                .map_err(io_ctx("writing to the runtime"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(io_ctx("running the runtime"))?;
        if !out.status.success() {
            return Err(RunError::Runtime(runtime_message(
                &String::from_utf8_lossy(&out.stderr),
            )));
        }
        Ok(out.stdout)
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<(), RunError> {
        self.runtime_cmd(id, &["pause"], None).map(drop)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), RunError> {
        self.runtime_cmd(id, &["resume"], None).map(drop)
    }

    /// Changes the resources of a running container (`linux.resources` JSON).
    pub fn update(&self, id: &str, resources: &serde_json::Value) -> Result<(), RunError> {
        let data = resources.to_string();
        self.runtime_cmd(id, &["update", "-r", "-"], Some(data.as_bytes()))
            .map(drop)
    }

    /// The PIDs of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, RunError> {
        let out = self.runtime_cmd(id, &["ps", "--format", "json"], None)?;
        serde_json::from_slice::<Option<Vec<i32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| RunError::Runtime(format!("reading the runtime's process list: {e}")))
    }

    /// Sends a signal to the container's processes (through its shim).
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), RunError> {
        self.ask(id, &format!("kill {signal}"), |_| {
            RunError::NotRunning(id.to_string())
        })
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
            oom_killed: v["OOMKilled"].as_bool().unwrap_or(false),
        })
    }

    /// Whether the container's shim still answers.
    pub fn alive(&self, id: &str) -> bool {
        shim::short_path(&self.state_dir(id), shim::SOCKET)
            .is_ok_and(|(_fd, p)| UnixStream::connect(p).is_ok())
    }

    /// Removes what a finished container left in the exec root.
    pub fn cleanup(&self, id: &str) {
        let _ = strata_graph::fsutil::remove_tree(&self.state_dir(id));
    }
}

/// The message of a runtime's error output: runc logs `time=... level=error msg="..."`; the
/// `msg` values, unquoted, or the text as it is.
pub fn runtime_message(raw: &str) -> String {
    let mut msgs = Vec::new();
    for line in raw.lines() {
        let Some(i) = line.find("msg=\"") else {
            continue;
        };
        let mut out = String::new();
        let mut chars = line[i + 5..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => break,
                c => out.push(c),
            }
        }
        msgs.push(out);
    }
    if msgs.is_empty() {
        raw.trim().to_string()
    } else {
        msgs.join(": ")
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
    fn runtime_messages() {
        let raw = r#"time="2026-11-23T15:01:19Z" level=error msg="runc create failed: exec: \"nosuch\": executable file not found in $PATH""#;
        assert_eq!(
            super::runtime_message(raw),
            r#"runc create failed: exec: "nosuch": executable file not found in $PATH"#
        );
        assert_eq!(super::runtime_message(" plain\n"), "plain");
    }

    #[test]
    fn signals() {
        assert_eq!(super::parse_signal("SIGTERM"), Some(15));
        assert_eq!(super::parse_signal("kill"), Some(9));
        assert_eq!(super::parse_signal("3"), Some(3));
        assert_eq!(super::parse_signal("SIGBOGUS"), None);
        assert_eq!(super::parse_signal("0"), None);
    }
}
