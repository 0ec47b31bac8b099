//! The per-container shim: `strata shim --state DIR`, one small single-threaded process per
//! running container. It detaches from the daemon (so it outlives it), becomes the subreaper of
//! the container's processes, creates the container through the OCI runtime and starts it when
//! the daemon says so (after attaching what waits for its output), holds its stdio (pipes, or
//! the terminal's master that the runtime sends over a console socket), writes its output to
//! the log, runs `exec` processes, and writes the exit status atomically before it goes.
//!
//! ```text
//! <state>/shim.json      what the shim is told (ShimArgs, written by the daemon)
//! <state>/config.json    the bundle's spec (written by the daemon)
//! <state>/shim.sock      the control socket (one request line per connection, below)
//! <state>/init.pid       the container's init (runc --pid-file)
//! <state>/exit.json      {"ExitCode": n, "FinishedAt": "..."} once it has exited
//! <state>/exec-ID.json   an exec's process (written by the daemon)
//! <state>/exec-ID.exit   {"ExitCode": n} once that exec has exited
//! ```
//!
//! Requests: `start`; `kill SIG`; `wait` (answered `exit N` when the init exits); `attach
//! TARGET FLAGS` and `exec ID FLAGS`, after whose `ok` line the connection carries
//! [`frame`]s out and the process's input in; `resize TARGET COLS ROWS`. TARGET is `-` for the
//! init or an exec's ID; FLAGS letters: `i` input, `o` stdout, `e` stderr, `t` terminal,
//! `d` detached.
//!
//! Never call [`main`] from a multithreaded process: it forks.

pub mod fdio;
pub mod frame;
pub mod log;
mod serve;

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use log::{LogConfig, LogConfigError, LogWriter};

/// What the shim is told (`shim.json` in the state directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimArgs {
    pub id: String,
    /// The OCI runtime binary (runc).
    pub runtime: PathBuf,
    /// The runtime's own state root (`runc --root`).
    pub runtime_root: PathBuf,
    /// Global options of the runtime (daemon.json `runtimeArgs`), before its command.
    #[serde(default)]
    pub runtime_args: Vec<String>,
    /// Where the output goes.
    pub log: LogConfig,
    /// The init runs on a terminal.
    pub tty: bool,
    /// The init's stdin is kept open for attachers (`-i`).
    pub open_stdin: bool,
    /// The init's stdin is closed when the first attacher's input ends.
    pub stdin_once: bool,
}

/// The exit record.
pub const EXIT_FILE: &str = "exit.json";
/// The control socket.
pub const SOCKET: &str = "shim.sock";
/// The init's PID as the runtime wrote it.
pub const PID_FILE: &str = "init.pid";
/// The shim's arguments.
pub const ARGS_FILE: &str = "shim.json";

/// A short name for `dir/name` (unix socket paths are limited to 108 bytes): the directory
/// held open, named through /proc. Keep the descriptor while the path is used.
pub fn short_path(dir: &Path, name: &str) -> std::io::Result<(OwnedFd, PathBuf)> {
    let fd = strata_graph::sys::open(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
    Ok((fd, p))
}

/// Starts a shim for a container whose bundle is `state` and returns the container's init PID
/// once it is created (not started: send `start`), or the runtime's error.
pub fn spawn(exe: &Path, state: &Path, a: &ShimArgs) -> Result<i32, String> {
    let json = serde_json::to_vec(a).map_err(|e| e.to_string())?;
    strata_graph::fsutil::atomic_write(&state.join(ARGS_FILE), &json)
        .map_err(|e| format!("writing {ARGS_FILE}: {e}"))?;
    let out = Command::new(exe)
        .arg("shim")
        .arg("--state")
        .arg(state)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("starting the shim: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.split_once(' ') {
        Some(("ok", pid)) => pid
            .trim()
            .parse()
            .map_err(|_| format!("the shim answered {text:?}")),
        Some(("err", msg)) => Err(msg.trim().to_string()),
        _ => Err(format!(
            "the shim failed (exit {:?}) without saying why",
            out.status.code()
        )),
    }
}

/// The shim's entry point (`strata shim --state DIR`); returns the process exit code.
pub fn main(state: &Path) -> i32 {
    let args: ShimArgs = match std::fs::read(state.join(ARGS_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(a) => a,
        Err(e) => {
            println!("err reading {}: {e}", state.join(ARGS_FILE).display());
            return 1;
        }
    };
    let (ready_r, ready_w) = match fdio::pipe() {
        Ok(p) => p,
        Err(e) => {
            println!("err creating a pipe: {e}");
            return 1;
        }
    };
    // SAFETY: the shim is single-threaded here (no thread was started), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => {
            println!("err fork: {}", std::io::Error::last_os_error());
            1
        }
        0 => {
            drop(ready_r);
            // SAFETY: plain syscalls in the child, still single-threaded. Standard streams go
            // to /dev/null: whoever started us waits for our parent's output to end, and must
            // not wait for ours.
            unsafe {
                libc::setsid();
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            let code = serve::run(state, args, std::fs::File::from(ready_w));
            std::process::exit(code);
        }
        _ => {
            drop(ready_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
            if msg.is_empty() {
                msg = "err the shim exited before creating the container\n".into();
            }
            print!("{msg}");
            let _ = std::io::stdout().flush();
            i32::from(!msg.starts_with("ok "))
        }
    }
}

/// Sends a request to a container's shim and returns its one-line answer.
pub fn request(state: &Path, req: &str) -> std::io::Result<String> {
    let (_fd, short) = short_path(state, SOCKET)?;
    let mut s = UnixStream::connect(short)?;
    writeln!(s, "{req}")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim().to_string())
}

/// Sends a request whose answer is a stream (`attach`, `exec`): returns the rest of the `ok`
/// line and the connection, which then carries frames; an `err` answer is the error.
pub fn open_stream(state: &Path, req: &str) -> std::io::Result<(String, UnixStream)> {
    let (_fd, short) = short_path(state, SOCKET)?;
    let mut s = UnixStream::connect(short)?;
    writeln!(s, "{req}")?;
    // Read the answer line byte by byte: what follows it belongs to the caller.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b)? {
            0 => break,
            _ if b[0] == b'\n' => break,
            _ => line.push(b[0]),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    match line.split_once(' ').unwrap_or((&line, "")) {
        ("ok", rest) => Ok((rest.to_string(), s)),
        ("err", msg) => Err(std::io::Error::other(msg.to_string())),
        _ => Err(std::io::Error::other(format!(
            "the shim answered {line:?} to {req:?}"
        ))),
    }
}

/// Reads the answer of a shim that wrote `exec-ID.exit`.
pub fn exec_exit(state: &Path, exec_id: &str) -> Option<i64> {
    let b = std::fs::read(state.join(format!("exec-{exec_id}.exit"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
    v["ExitCode"].as_i64()
}
