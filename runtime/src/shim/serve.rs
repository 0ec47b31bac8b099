//! The shim after its fork: create the container, then one poll loop over the signalfd
//! (SIGCHLD), the control socket, every process's output, input waiting to be written, and the
//! input of attachers, until the init has exited and its output is drained.

use super::{fdio, frame, short_path, LogWriter, ShimArgs, EXIT_FILE, PID_FILE, SOCKET};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long output is still read after a process exited (its children may hold the pipes).
const DRAIN: Duration = Duration::from_secs(2);
/// A container the daemon does not start within this time is deleted (the daemon died
/// between create and start).
const START_WITHIN: Duration = Duration::from_secs(60);
/// A stalled attacher is dropped after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that receives a process's output and may feed its input.
struct Attacher {
    sock: UnixStream,
    /// Its input is still read.
    input: bool,
    /// Wants stdout, stderr.
    want: [bool; 2],
    dead: bool,
}

/// The stdio the shim holds for a process.
#[derive(Default)]
struct ProcIo {
    /// The terminal's master: output and input.
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    out: [Option<OwnedFd>; 2],
}

/// The init or an exec.
struct Proc {
    exec_id: Option<String>,
    pid: i32,
    io: ProcIo,
    /// Close stdin when an attacher's input ends.
    stdin_once: bool,
    /// Input ended: close stdin once `pending` is written.
    stdin_eof: bool,
    pending: Vec<u8>,
    attachers: Vec<Attacher>,
    exit: Option<i32>,
    drain_until: Option<Instant>,
}

impl Proc {
    fn new(exec_id: Option<String>, pid: i32, io: ProcIo, stdin_once: bool) -> Proc {
        Proc {
            exec_id,
            pid,
            io,
            stdin_once,
            stdin_eof: false,
            pending: Vec::new(),
            attachers: Vec::new(),
            exit: None,
            drain_until: None,
        }
    }

    fn output_fd(&self, s: usize) -> Option<RawFd> {
        match (&self.io.master, s) {
            (Some(m), 0) => Some(m.as_raw_fd()),
            (Some(_), _) => None,
            (None, _) => self.io.out[s].as_ref().map(AsRawFd::as_raw_fd),
        }
    }

    fn input_fd(&self) -> Option<RawFd> {
        self.io
            .master
            .as_ref()
            .or(self.io.stdin.as_ref())
            .map(AsRawFd::as_raw_fd)
    }

    fn close_output(&mut self, s: usize) {
        if self.io.master.is_some() {
            self.io.master = None;
        } else {
            self.io.out[s] = None;
        }
    }

    fn done(&self, now: Instant) -> bool {
        let open = self.io.master.is_some() || self.io.out.iter().any(Option::is_some);
        self.exit.is_some() && (!open || self.drain_until.is_some_and(|d| now >= d))
    }

    /// Sends output to the attachers that want it.
    fn broadcast(&mut self, stream: usize, data: &[u8]) {
        let f = frame::encode(
            if stream == 0 {
                frame::STDOUT
            } else {
                frame::STDERR
            },
            data,
        );
        for a in self
            .attachers
            .iter_mut()
            .filter(|a| a.want[stream] && !a.dead)
        {
            if a.sock.write_all(&f).is_err() {
                a.dead = true;
            }
        }
    }

    fn maybe_close_stdin(&mut self) {
        if self.stdin_eof && self.pending.is_empty() && self.io.master.is_none() {
            self.io.stdin = None;
        }
    }

    /// Ends every attacher's stream with the exit code.
    fn finish(&mut self, code: i32) {
        let f = frame::encode(frame::EXIT, code.to_string().as_bytes());
        for mut a in self.attachers.drain(..) {
            let _ = a.sock.write_all(&f);
            let _ = a.sock.shutdown(Shutdown::Both);
        }
    }
}

/// Runs the shim: creates the container, says `ok PID` (or `err ...`) on `ready`, then serves
/// until the container has exited.
pub fn run(state: &Path, args: ShimArgs, mut ready: std::fs::File) -> i32 {
    match setup(state, &args) {
        Err(msg) => {
            let _ = writeln!(ready, "err {}", msg.replace('\n', " "));
            1
        }
        Ok((listener, sfd, log, init)) => {
            let _ = writeln!(ready, "ok {}", init.pid);
            // Closing our end tells the waiting parent (and so the daemon) it is created.
            drop(ready);
            let mut shim = Shim {
                state: state.to_path_buf(),
                args,
                log,
                procs: vec![init],
                started: false,
                created_at: Instant::now(),
                waiters: Vec::new(),
            };
            shim.serve(&listener, &sfd);
            let _ = std::fs::remove_file(state.join(SOCKET));
            0
        }
    }
}

fn runtime(a: &ShimArgs) -> Command {
    let mut c = Command::new(&a.runtime);
    c.args(&a.runtime_args).arg("--root").arg(&a.runtime_root);
    c
}

/// What is in a pipe now, without waiting.
fn drain_now(fd: &OwnedFd) -> String {
    fdio::set_nonblocking(fd.as_raw_fd());
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = fdio::read(fd.as_raw_fd(), &mut buf) {
        msg.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&msg).trim().to_string()
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    fdio::pipe().map_err(|e| format!("creating a pipe: {e}"))
}

/// Runs a runtime command to its end, then closes our copies of the pipe ends it was given;
/// on failure, what it wrote to `err` is the error.
fn run_runtime(mut cmd: Command, err: &OwnedFd) -> Result<(), String> {
    let status = cmd.status();
    drop(cmd);
    if matches!(status, Ok(s) if s.success()) {
        return Ok(());
    }
    let text = drain_now(err);
    Err(if text.is_empty() {
        format!("the runtime failed: {status:?}")
    } else {
        text
    })
}

/// Runs a runtime command that starts a process (`create`, `exec --detach`) for container
/// `id` with stdio the shim keeps: a terminal through a console socket named `console` in
/// `state`, or pipes.
fn launch(
    mut cmd: Command,
    id: &str,
    state: &Path,
    console: &str,
    tty: bool,
    input: bool,
) -> Result<ProcIo, String> {
    let (err_r, err_w) = pipe()?;
    if tty {
        let sock = state.join(console);
        let (dir_fd, listener) = bind(state, console)?;
        // The runtime reaches the socket through a descriptor it inherits (the full path may
        // be longer than a socket address allows).
        // SAFETY: F_DUPFD returns a new descriptor without close-on-exec, which we own.
        let dir = unsafe { libc::fcntl(dir_fd.as_raw_fd(), libc::F_DUPFD, 3) };
        if dir < 0 {
            return Err(format!(
                "duplicating a descriptor: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: dir is the descriptor F_DUPFD just returned.
        let dir = unsafe { OwnedFd::from_raw_fd(dir) };
        cmd.arg("--console-socket")
            .arg(format!("/proc/self/fd/{}/{console}", dir.as_raw_fd()))
            .arg(id);
        let err_w2 = err_w
            .try_clone()
            .map_err(|e| format!("duplicating a pipe: {e}"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(err_w2))
            .stderr(Stdio::from(err_w));
        let ran = run_runtime(cmd, &err_r);
        drop(dir);
        let _ = std::fs::remove_file(&sock);
        ran?;
        let _ = listener.set_nonblocking(true);
        let (conn, _) = listener
            .accept()
            .map_err(|e| format!("the runtime sent no terminal: {e}"))?;
        let master = fdio::recv_fd(&conn).map_err(|e| format!("receiving the terminal: {e}"))?;
        fdio::set_nonblocking(master.as_raw_fd());
        Ok(ProcIo {
            master: Some(master),
            ..Default::default()
        })
    } else {
        let (out_r, out_w) = pipe()?;
        cmd.arg(id);
        let stdin = if input {
            let (r, w) = pipe()?;
            cmd.stdin(Stdio::from(r));
            fdio::set_nonblocking(w.as_raw_fd());
            Some(w)
        } else {
            cmd.stdin(Stdio::null());
            None
        };
        cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
        // The runtime's complaint goes to the process's stderr pipe.
        run_runtime(cmd, &err_r)?;
        Ok(ProcIo {
            master: None,
            stdin,
            out: [Some(out_r), Some(err_r)],
        })
    }
}

/// Binds a fresh unix socket `name` in `dir` (through a held directory descriptor, whose
/// path is short enough for a socket address).
fn bind(dir: &Path, name: &str) -> Result<(OwnedFd, UnixListener), String> {
    let _ = std::fs::remove_file(dir.join(name));
    let (fd, short) =
        short_path(dir, name).map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let l = UnixListener::bind(&short)
        .map_err(|e| format!("binding {}: {e}", dir.join(name).display()))?;
    Ok((fd, l))
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

type Setup = (UnixListener, OwnedFd, LogWriter, Proc);

fn setup(state: &Path, a: &ShimArgs) -> Result<Setup, String> {
    let log = LogWriter::open(a.log.clone())
        .map_err(|e| format!("opening the log {}: {e}", a.log.path.display()))?;
    let (_dir_fd, listener) = bind(state, SOCKET)?;
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
        return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: signalfd returned a descriptor we own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    let pid_file = state.join(PID_FILE);
    let mut cmd = runtime(a);
    cmd.arg("create")
        .arg("--bundle")
        .arg(state)
        .arg("--pid-file")
        .arg(&pid_file);
    let io = launch(cmd, &a.id, state, "console.sock", a.tty, a.open_stdin);
    let io = match io {
        Ok(io) => io,
        Err(msg) => {
            let _ = runtime(a).args(["delete", "-f", &a.id]).output();
            return Err(msg);
        }
    };
    let pid = read_pid(&pid_file).ok_or("the runtime wrote no init PID")?;
    Ok((listener, sfd, log, Proc::new(None, pid, io, a.stdin_once)))
}

struct Shim {
    state: PathBuf,
    args: ShimArgs,
    log: LogWriter,
    /// `procs[0]` is the init.
    procs: Vec<Proc>,
    started: bool,
    created_at: Instant,
    waiters: Vec<UnixStream>,
}

/// What a pollfd stands for.
enum Target {
    Signal,
    Listener,
    Output(usize, usize),
    Feed(usize),
    Input(usize, usize),
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

impl Shim {
    fn runtime(&self) -> Command {
        runtime(&self.args)
    }

    fn serve(&mut self, listener: &UnixListener, sfd: &OwnedFd) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let now = Instant::now();
            for p in &mut self.procs {
                p.attachers.retain(|a| !a.dead);
            }
            let mut i = 1;
            while i < self.procs.len() {
                if self.procs[i].done(now) {
                    let p = self.procs.remove(i);
                    self.end_exec(p);
                } else {
                    i += 1;
                }
            }
            if self.procs[0].done(now) {
                break;
            }
            if !self.started && now.duration_since(self.created_at) > START_WITHIN {
                tracing::warn!("the container was not started in time; deleting it");
                let _ = self
                    .runtime()
                    .args(["delete", "-f", &self.args.id])
                    .output();
                self.started = true;
            }
            let mut fds = vec![
                fdio::pollfd(sfd.as_raw_fd(), libc::POLLIN),
                fdio::pollfd(listener.as_raw_fd(), libc::POLLIN),
            ];
            let mut targets = vec![Target::Signal, Target::Listener];
            let mut waiting = !self.started;
            for (pi, p) in self.procs.iter().enumerate() {
                waiting |= p.exit.is_some();
                for s in 0..2 {
                    if let Some(fd) = p.output_fd(s) {
                        fds.push(fdio::pollfd(fd, libc::POLLIN));
                        targets.push(Target::Output(pi, s));
                    }
                }
                if !p.pending.is_empty() {
                    if let Some(fd) = p.input_fd() {
                        fds.push(fdio::pollfd(fd, libc::POLLOUT));
                        targets.push(Target::Feed(pi));
                    }
                } else {
                    for (ai, a) in p.attachers.iter().enumerate() {
                        if a.input {
                            fds.push(fdio::pollfd(a.sock.as_raw_fd(), libc::POLLIN));
                            targets.push(Target::Input(pi, ai));
                        }
                    }
                }
            }
            if fdio::poll(&mut fds, if waiting { 100 } else { -1 }) < 0 {
                continue;
            }
            for (pfd, t) in fds.iter().zip(targets) {
                if pfd.revents == 0 {
                    continue;
                }
                match t {
                    Target::Signal => self.reap(sfd),
                    Target::Listener => {
                        while let Ok((s, _)) = listener.accept() {
                            self.request(s);
                        }
                    }
                    Target::Output(pi, s) => self.output(pi, s, &mut buf),
                    Target::Feed(pi) => self.feed(pi),
                    Target::Input(pi, ai) => self.input(pi, ai, &mut buf),
                }
            }
        }
        self.finish();
    }

    fn output(&mut self, pi: usize, s: usize, buf: &mut [u8]) {
        let p = &mut self.procs[pi];
        let Some(fd) = p.output_fd(s) else { return };
        match fdio::read(fd, buf) {
            Ok(0) => p.close_output(s),
            Ok(n) => {
                if pi == 0 {
                    self.log.write(s, &buf[..n]);
                }
                p.broadcast(s, &buf[..n]);
            }
            Err(e) if is_transient(&e) => {}
            Err(_) => p.close_output(s),
        }
    }

    fn feed(&mut self, pi: usize) {
        let p = &mut self.procs[pi];
        let Some(fd) = p.input_fd() else {
            p.pending.clear();
            return;
        };
        match fdio::write(fd, &p.pending) {
            Ok(n) => {
                p.pending.drain(..n);
            }
            Err(e) if is_transient(&e) => {}
            Err(_) => {
                p.pending.clear();
                if p.io.master.is_none() {
                    p.io.stdin = None;
                }
            }
        }
        p.maybe_close_stdin();
    }

    fn input(&mut self, pi: usize, ai: usize, buf: &mut [u8]) {
        let p = &mut self.procs[pi];
        let Some(a) = p.attachers.get_mut(ai) else {
            return;
        };
        match a.sock.read(buf) {
            Ok(0) => {
                a.input = false;
                if p.stdin_once {
                    p.stdin_eof = true;
                    p.maybe_close_stdin();
                }
            }
            Ok(n) => {
                if p.input_fd().is_some() {
                    p.pending.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(_) => a.dead = true,
        }
    }

    fn reap(&mut self, sfd: &OwnedFd) {
        let mut info = [0u8; 128];
        while matches!(fdio::read(sfd.as_raw_fd(), &mut info), Ok(1..)) {}
        loop {
            let mut status = 0;
            // SAFETY: reaping our children (the container's processes are ours as subreaper).
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
            if let Some(p) = self
                .procs
                .iter_mut()
                .find(|p| p.pid == pid && p.exit.is_none())
            {
                p.exit = Some(code);
                p.drain_until = Some(Instant::now() + DRAIN);
            }
        }
    }

    fn find(&mut self, target: &str) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| match &p.exec_id {
            None => target == "-",
            Some(e) => e == target,
        })
    }

    fn request(&mut self, mut s: UnixStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
        let mut line = String::new();
        let mut b = [0u8; 1];
        while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' && line.len() < 512 {
            line.push(b[0] as char);
        }
        let _ = s.set_read_timeout(None);
        let words: Vec<&str> = line.split_whitespace().collect();
        let reply = match words.as_slice() {
            ["start"] => self.start(),
            ["kill", sig] => self.run_runtime(&["kill", &self.args.id.clone(), sig]),
            ["wait"] => {
                self.waiters.push(s);
                return;
            }
            ["attach", target, flags] => {
                let Some(p) = self.find(target) else {
                    let _ = s.write_all(b"err no such process\n");
                    return;
                };
                if s.write_all(b"ok\n").is_ok() {
                    let input = flags.contains('i') && p.input_fd().is_some();
                    p.attachers.push(Attacher {
                        sock: s,
                        input,
                        want: [flags.contains('o'), flags.contains('e')],
                        dead: false,
                    });
                }
                return;
            }
            ["resize", target, cols, rows] => match (self.find(target), cols.parse(), rows.parse())
            {
                (Some(p), Ok(c), Ok(r)) => match &p.io.master {
                    Some(m) => match fdio::set_winsize(m.as_raw_fd(), c, r) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("err {e}"),
                    },
                    None => "err the process has no terminal".to_string(),
                },
                (None, _, _) => "err no such process".to_string(),
                _ => "err bad size".to_string(),
            },
            ["exec", id, flags] => {
                self.exec(id, flags, s);
                return;
            }
            _ => format!("err unknown request {line:?}"),
        };
        let _ = writeln!(s, "{reply}");
    }

    fn run_runtime(&self, args: &[&str]) -> String {
        match self.runtime().args(args).output() {
            Ok(o) if o.status.success() => "ok".into(),
            Ok(o) => format!(
                "err {}",
                String::from_utf8_lossy(&o.stderr).trim().replace('\n', " ")
            ),
            Err(e) => format!("err {e}"),
        }
    }

    fn start(&mut self) -> String {
        if self.started {
            return "err already started".into();
        }
        self.started = true;
        let id = self.args.id.clone();
        let r = self.run_runtime(&["start", &id]);
        if r != "ok" {
            let _ = self.runtime().args(["delete", "-f", &id]).output();
        }
        r
    }

    fn exec(&mut self, id: &str, flags: &str, mut s: UnixStream) {
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid || self.find(id).is_some() {
            let _ = s.write_all(b"err bad exec ID\n");
            return;
        }
        let (tty, input, detach) = (
            flags.contains('t'),
            flags.contains('i'),
            flags.contains('d'),
        );
        let pid_file = self.state.join(format!("exec-{id}.pid"));
        let mut cmd = self.runtime();
        cmd.arg("exec")
            .arg("--detach")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--process")
            .arg(self.state.join(format!("exec-{id}.json")));
        let io = launch(
            cmd,
            &self.args.id,
            &self.state,
            &format!("c-{id}.sock"),
            tty,
            input,
        );
        let io = match io {
            Ok(io) => io,
            Err(msg) => {
                let _ = writeln!(s, "err {}", msg.replace('\n', " "));
                return;
            }
        };
        let Some(pid) = read_pid(&pid_file) else {
            let _ = s.write_all(b"err the runtime wrote no exec PID\n");
            return;
        };
        let mut p = Proc::new(Some(id.to_string()), pid, io, true);
        if writeln!(s, "ok {pid}").is_ok() && !detach {
            p.attachers.push(Attacher {
                sock: s,
                input,
                want: [true, true],
                dead: false,
            });
        }
        self.procs.push(p);
    }

    fn end_exec(&mut self, mut p: Proc) {
        let code = p.exit.unwrap_or(137);
        if let Some(id) = &p.exec_id {
            let rec = serde_json::json!({ "ExitCode": code });
            let _ = strata_graph::fsutil::atomic_write(
                &self.state.join(format!("exec-{id}.exit")),
                rec.to_string().as_bytes(),
            );
        }
        p.finish(code);
    }

    fn finish(&mut self) {
        self.log.flush();
        let code = self.procs[0].exit.unwrap_or(255);
        // Read before the runtime deletes the cgroup.
        let oom = crate::cgroups::Cgroup::of(&crate::lifecycle::cgroup_path(&self.args.id))
            .oom_kills()
            .is_some_and(|n| n > 0);
        let rec = serde_json::json!({
            "ExitCode": code,
            "OOMKilled": oom,
            "FinishedAt": strata_graph::time::rfc3339_now(),
        });
        let _ = strata_graph::fsutil::atomic_write(
            &self.state.join(EXIT_FILE),
            rec.to_string().as_bytes(),
        );
        let _ = self
            .runtime()
            .args(["delete", "-f", &self.args.id])
            .output();
        for p in self.procs.drain(1..).collect::<Vec<_>>() {
            self.end_exec(p);
        }
        self.procs[0].finish(code);
        for mut w in std::mem::take(&mut self.waiters) {
            let _ = writeln!(w, "exit {code}");
        }
    }
}
