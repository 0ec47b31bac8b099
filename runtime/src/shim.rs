//! The per-container shim: `strata shim`, one small single-threaded process per running
//! container. It detaches from the daemon (so it outlives it), becomes the subreaper of the
//! container's init, starts it through the OCI runtime, copies its output into the log
//! (Docker's json-file format), answers `kill` and `wait` on a unix socket, and writes the exit
//! status atomically into the state directory before it goes.
//!
//! ```text
//! <state>/config.json    the bundle (written by the daemon)
//! <state>/shim.sock      kill SIG | wait
//! <state>/init.pid       the container's init (runc --pid-file)
//! <state>/exit.json      {"ExitCode": n, "FinishedAt": "..."} once it has exited
//! ```
//!
//! Never call this from a multithreaded process: it forks.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the shim is told.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    pub id: String,
    /// The bundle and state directory.
    pub state: PathBuf,
    /// The OCI runtime binary (runc).
    pub runtime: PathBuf,
    /// The runtime's own state root (`runc --root`).
    pub runtime_root: PathBuf,
    /// The json-file log.
    pub log: PathBuf,
}

/// The exit record.
pub const EXIT_FILE: &str = "exit.json";
/// The control socket.
pub const SOCKET: &str = "shim.sock";
/// The init's PID as the runtime wrote it.
pub const PID_FILE: &str = "init.pid";

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A short name for `dir/name` (unix socket paths are limited to 108 bytes): the directory
/// held open, named through /proc. Keep the descriptor while the path is used.
pub fn short_path(dir: &Path, name: &str) -> std::io::Result<(OwnedFd, PathBuf)> {
    let fd = strata_graph::sys::open(dir, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", fd.as_raw_fd()));
    Ok((fd, p))
}

/// Starts a shim for a container and returns the container's init PID once it runs, or the
/// runtime's error. Blocks until the container is started; the shim itself stays behind.
pub fn spawn(exe: &Path, a: &ShimArgs) -> Result<i32, String> {
    let out = Command::new(exe)
        .arg("shim")
        .arg("--id")
        .arg(&a.id)
        .arg("--state")
        .arg(&a.state)
        .arg("--runtime")
        .arg(&a.runtime)
        .arg("--runtime-root")
        .arg(&a.runtime_root)
        .arg("--log")
        .arg(&a.log)
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

/// The shim's entry point (`strata shim ...`); returns the process exit code.
pub fn main(a: ShimArgs) -> i32 {
    let (ready_r, ready_w) = match pipe() {
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
            let ready = std::fs::File::from(ready_w);
            let code = run(&a, ready);
            std::process::exit(code);
        }
        _ => {
            drop(ready_w);
            let mut msg = String::new();
            let _ = std::fs::File::from(ready_r).read_to_string(&mut msg);
            if msg.is_empty() {
                msg = "err the shim exited before starting the container\n".into();
            }
            print!("{msg}");
            let _ = std::io::stdout().flush();
            i32::from(!msg.starts_with("ok "))
        }
    }
}

/// Docker's json-file log writer: one JSON object per line of output.
struct JsonLog {
    file: std::fs::File,
    partial: [Vec<u8>; 2],
}

impl JsonLog {
    fn write(&mut self, stream: usize, data: &[u8]) {
        self.partial[stream].extend_from_slice(data);
        while let Some(i) = self.partial[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[stream].drain(..=i).collect();
            self.emit(stream, &line);
        }
        if self.partial[stream].len() >= 16 * 1024 {
            let line = std::mem::take(&mut self.partial[stream]);
            self.emit(stream, &line);
        }
    }
    fn flush(&mut self) {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                let line = std::mem::take(&mut self.partial[s]);
                self.emit(s, &line);
            }
        }
    }
    fn emit(&mut self, stream: usize, line: &[u8]) {
        let rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 0 { "stdout" } else { "stderr" },
            "time": strata_graph::time::rfc3339_now(),
        });
        let _ = writeln!(self.file, "{rec}");
    }
}

fn runtime(a: &ShimArgs) -> Command {
    let mut c = Command::new(&a.runtime);
    c.arg("--root").arg(&a.runtime_root);
    c
}

fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> i32 {
    // SAFETY: fds is a valid slice of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: buf is valid for its length.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

fn run(a: &ShimArgs, mut ready_file: std::fs::File) -> i32 {
    let ready = &mut ready_file;
    let fail = |ready: &mut std::fs::File, msg: String| {
        let _ = writeln!(ready, "err {}", msg.replace('\n', " "));
        1
    };
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.log)
    {
        Ok(f) => f,
        Err(e) => return fail(ready, format!("opening the log {}: {e}", a.log.display())),
    };
    let mut log = JsonLog {
        file: log,
        partial: [Vec::new(), Vec::new()],
    };
    let (Ok((out_r, out_w)), Ok((err_r, err_w))) = (pipe(), pipe()) else {
        return fail(ready, "creating pipes".into());
    };
    let sock_path = a.state.join(SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let (_dir_fd, short) = match short_path(&a.state, SOCKET) {
        Ok(x) => x,
        Err(e) => return fail(ready, format!("opening {}: {e}", a.state.display())),
    };
    let listener = match UnixListener::bind(&short) {
        Ok(l) => l,
        Err(e) => return fail(ready, format!("binding {}: {e}", sock_path.display())),
    };
    let _ = listener.set_nonblocking(true);
    // SIGCHLD through a signalfd, so one poll loop sees output, requests and exits.
    // SAFETY: sigset operations on a local set; blocking SIGCHLD in this single thread.
    let sfd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        return fail(
            ready,
            format!("signalfd: {}", std::io::Error::last_os_error()),
        );
    }
    // SAFETY: signalfd returned a descriptor we own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let pid_file = a.state.join(PID_FILE);
    let created = runtime(a)
        .arg("create")
        .arg("--bundle")
        .arg(&a.state)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&a.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status();
    let ok = matches!(created, Ok(s) if s.success());
    if !ok {
        // The runtime's complaint went to the container's stderr pipe: read what is there.
        let mut msg = Vec::new();
        let mut buf = [0u8; 4096];
        let mut fds = [libc::pollfd {
            fd: err_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        while poll_fds(&mut fds, 0) > 0 {
            let n = read_some(err_r.as_raw_fd(), &mut buf);
            if n <= 0 {
                break;
            }
            msg.extend_from_slice(&buf[..n as usize]);
        }
        let _ = runtime(a).args(["delete", "-f", &a.id]).output();
        let text = String::from_utf8_lossy(&msg).trim().to_string();
        return fail(
            ready,
            if text.is_empty() {
                format!("the runtime failed to create the container: {created:?}")
            } else {
                text
            },
        );
    }
    let init: i32 = match std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(p) => p,
        None => return fail(ready, "the runtime wrote no init PID".into()),
    };
    match runtime(a).args(["start", &a.id]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = runtime(a).args(["delete", "-f", &a.id]).output();
            return fail(ready, String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        Err(e) => return fail(ready, format!("running the runtime: {e}")),
    }
    let _ = writeln!(ready, "ok {init}");
    // Closing our end tells the waiting parent (and so the daemon) that the container runs.
    drop(ready_file);
    let code = supervise(a, init, &listener, sfd, [out_r, err_r], &mut log);
    let _ = std::fs::remove_file(&sock_path);
    code
}

/// Waits for the init to exit while copying output and serving requests; then records the
/// exit and removes the runtime's container.
fn supervise(
    a: &ShimArgs,
    init: i32,
    listener: &UnixListener,
    sfd: OwnedFd,
    pipes: [OwnedFd; 2],
    log: &mut JsonLog,
) -> i32 {
    let mut waiters: Vec<UnixStream> = Vec::new();
    let mut open = [true, true];
    let mut exit: Option<i32> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut drain_deadline: Option<std::time::Instant> = None;
    loop {
        if exit.is_some()
            && (!open[0] && !open[1]
                || drain_deadline.is_some_and(|d| std::time::Instant::now() > d))
        {
            break;
        }
        let mut fds = vec![
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        for (i, p) in pipes.iter().enumerate() {
            fds.push(libc::pollfd {
                fd: if open[i] { p.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if poll_fds(&mut fds, if exit.is_some() { 100 } else { -1 }) < 0 {
            continue;
        }
        for i in 0..2 {
            if fds[2 + i].revents != 0 {
                let n = read_some(pipes[i].as_raw_fd(), &mut buf);
                if n <= 0 {
                    open[i] = false;
                } else {
                    log.write(i, &buf[..n as usize]);
                }
            }
        }
        if fds[0].revents != 0 {
            let mut info = [0u8; 128];
            while read_some(sfd.as_raw_fd(), &mut info) > 0 {}
            loop {
                let mut status = 0;
                // SAFETY: reaping our children (the init is ours as subreaper).
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == init {
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                    exit = Some(code);
                    drain_deadline =
                        Some(std::time::Instant::now() + std::time::Duration::from_secs(2));
                }
            }
        }
        if fds[1].revents != 0 {
            while let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut line = String::new();
                let mut b = [0u8; 1];
                while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' && line.len() < 64 {
                    line.push(b[0] as char);
                }
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("kill") => {
                        let sig = words.next().unwrap_or("15").to_string();
                        let r = runtime(a).args(["kill", &a.id, &sig]).output();
                        let reply = match r {
                            Ok(o) if o.status.success() => "ok\n".to_string(),
                            Ok(o) => format!("err {}\n", String::from_utf8_lossy(&o.stderr).trim()),
                            Err(e) => format!("err {e}\n"),
                        };
                        let _ = s.write_all(reply.as_bytes());
                    }
                    Some("wait") => match exit {
                        Some(c) => {
                            let _ = writeln!(s, "exit {c}");
                        }
                        None => waiters.push(s),
                    },
                    _ => {
                        let _ = s.write_all(b"err unknown request\n");
                    }
                }
            }
        }
    }
    log.flush();
    let code = exit.unwrap_or(255);
    let rec = serde_json::json!({
        "ExitCode": code,
        "FinishedAt": strata_graph::time::rfc3339_now(),
    });
    let _ =
        strata_graph::fsutil::atomic_write(&a.state.join(EXIT_FILE), rec.to_string().as_bytes());
    let _ = runtime(a).args(["delete", "-f", &a.id]).output();
    for mut w in waiters {
        let _ = writeln!(w, "exit {code}");
    }
    0
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
