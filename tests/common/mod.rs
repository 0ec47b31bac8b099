//! What the integration tests share: a daemon on a temporary socket and data root (stopped by
//! PID, also when a test fails), the docker CLI, and a busybox image built offline.
#![allow(dead_code)]

pub mod certs;
pub mod registry;
pub mod storage_cli;
pub mod zfs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};
use strata_graph::archive::tar::TarReader;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;

/// A daemon process, stopped by PID when dropped (also when a test fails).
#[derive(Debug)]
pub struct Running(pub Child);

impl Running {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then waits; SIGKILL after 10 s. Returns the exit status and how long it took.
    pub fn stop(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return (s, t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = self.0.kill();
                return (self.0.wait().expect("wait"), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// A daemon with its own data root and socket.
pub struct Daemon {
    pub child: Running,
    pub sock: PathBuf,
    pub dir: tempfile::TempDir,
    pub args: Vec<String>,
}

impl Daemon {
    pub fn start(driver: &str) -> Daemon {
        Self::start_with(driver, &[])
    }

    /// As `start`, with more daemon flags.
    pub fn start_with(driver: &str, extra: &[&str]) -> Daemon {
        Self::start_with_env(driver, extra, &[])
    }

    /// As `start_with`, with these environment variables too (not kept by `restart`).
    pub fn start_with_env(driver: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_prepared(driver, extra, env, |_| {})
    }

    /// As `start_with_env`, with `prepare` run on the daemon's directory first (a test mounts
    /// a filesystem at `<dir>/root` there; the daemon's clean-up unmounts it).
    pub fn start_prepared(
        driver: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("strata-daemon-")
            .tempdir()
            .expect("tempdir");
        prepare(dir.path());
        let root = dir.path().join("root");
        let pid = dir.path().join("strata.pid");
        let sock = dir.path().join("strata.sock");
        let mut args = vec!["--storage-driver", driver, "--label", "test=yes"];
        args.extend_from_slice(extra);
        // Each test daemon has a network namespace of its own: its bridge, addresses and
        // firewall table never meet the host's or another test's.
        let netns = netns_of(&sock);
        make_netns(&netns).unwrap_or_else(|e| panic!("no network namespace: {e}"));
        let child = spawn_in_env(Some(&netns), &root, &pid, &sock, &args, env)
            .unwrap_or_else(|e| panic!("daemon did not start: {e}"));
        Daemon {
            child,
            sock,
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The data root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Its network namespace (the "host" its containers see).
    pub fn netns(&self) -> PathBuf {
        netns_of(&self.sock)
    }

    /// Starts the daemon again on the same data root and socket (after `stop` or a kill).
    pub fn restart(&mut self) {
        if self.child.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.child = spawn_in(
            Some(&self.netns()),
            &self.root(),
            &self.dir.path().join("strata.pid"),
            &self.sock,
            &args,
        )
        .unwrap_or_else(|e| panic!("daemon did not restart: {e}"));
    }

    /// Restarts the daemon with `extra` flags added to those it was started with.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.restart();
    }

    /// Runs docker and returns (success, stdout, stderr).
    pub fn try_docker(&self, args: &[&str]) -> (bool, String, String) {
        let o = self.docker(args);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// The busybox test image (see [`busybox_archive`]) written in this daemon's directory.
    pub fn busybox(&self) -> (PathBuf, Vec<Digest>, Digest) {
        let work = self.dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        busybox_archive(&work)
    }

    /// Loads the busybox test image with docker.
    pub fn load_busybox(&self) {
        let (archive, _, _) = self.busybox();
        self.ok(&["load", "-q", "-i", archive.to_str().expect("utf-8 path")]);
    }

    /// Runs the strata CLI against this daemon (STRATA_HOST set, DOCKER_HOST removed).
    pub fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .env("STRATA_HOST", format!("unix://{}", self.sock.display()))
            .env_remove("DOCKER_HOST")
            .args(args)
            .output()
            .expect("run strata")
    }

    /// `docker events` from the start until now, filtered, formatted.
    pub fn events_so_far(&self, filter: &str, format: &str) -> String {
        self.ok(&[
            "events",
            "--since",
            "0",
            "--until",
            &soon(),
            "--filter",
            filter,
            "--format",
            format,
        ])
    }

    /// Runs docker with `input` on its stdin.
    pub fn docker_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run docker");
        if let Some(mut i) = child.stdin.take() {
            i.write_all(input).expect("write stdin");
        }
        child.wait_with_output().expect("wait for docker")
    }

    /// Runs a shell command line under a pseudo-terminal (`script`), with DOCKER_HOST and
    /// STRATA_HOST set, feeding `input` line by line, half a second apart; returns the
    /// terminal's output and the exit code.
    pub fn under_pty(&self, cmdline: &str, input: &[&str]) -> (String, Option<i32>) {
        let steps: Vec<(&str, &str)> = input.iter().map(|i| ("", *i)).collect();
        self.under_pty_when(cmdline, &steps)
    }

    /// Like `under_pty`, but each input waits (up to 30 s) until the output so far contains
    /// its marker: keys such as ctrl-p ctrl-q must reach the client after it has put the
    /// terminal in raw mode, or the terminal itself takes them.
    pub fn under_pty_when(&self, cmdline: &str, steps: &[(&str, &str)]) -> (String, Option<i32>) {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let mut child = Command::new("script")
            .args(["-qec", cmdline, "/dev/null"])
            // script runs the line with $SHELL; pin it so this machine and CI agree (bash
            // execs a lone command, dash forks it, and a `timeout` child then leaves the
            // terminal's foreground group unless given --foreground).
            .env("SHELL", "/bin/sh")
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("STRATA_HOST", format!("unix://{}", self.sock.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run script (util-linux)");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stdout.take().map(|mut o| {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = o.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = seen.lock() {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
            })
        });
        let contains = |marker: &str| {
            seen.lock()
                .map(|s| String::from_utf8_lossy(&s).contains(marker))
                .unwrap_or(false)
        };
        if let Some(mut i) = child.stdin.take() {
            for (marker, l) in steps {
                let t = Instant::now();
                while !contains(marker) && t.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(500));
                let _ = i.write_all(l.as_bytes());
                let _ = i.flush();
            }
            // Keep the input open a little: script ends when its input does.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let status = child.wait().expect("wait for script");
        if let Some(r) = reader {
            let _ = r.join();
        }
        let out = seen.lock().map(|s| s.clone()).unwrap_or_default();
        (String::from_utf8_lossy(&out).into_owned(), status.code())
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_env(args, &[])
    }

    /// Runs docker with more environment variables (`DOCKER_CONFIG`).
    pub fn docker_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("run docker")
    }

    /// Runs docker and returns stdout, failing the test with stderr on error.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(self.docker(args), "docker", args)
    }

    pub fn stop(&mut self) -> std::process::ExitStatus {
        let (status, took) = self.child.stop();
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        status
    }
}

impl Drop for Daemon {
    /// Also when a test fails: stops the daemon, then removes what may outlive it (containers
    /// under its exec root, so their shims end; mounts under its directory).
    fn drop(&mut self) {
        if self.child.0.try_wait().ok().flatten().is_none() {
            self.child.stop();
        }
        let runc_root = self.dir.path().join("exec/runc");
        if runc_root.exists() {
            let list = Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["list", "-q"])
                .output();
            if let Ok(o) = list {
                for id in String::from_utf8_lossy(&o.stdout).lines() {
                    let _ = Command::new("runc")
                        .arg("--root")
                        .arg(&runc_root)
                        .args(["delete", "-f", id.trim()])
                        .output();
                }
            }
        }
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        for m in mounts.iter().rev() {
            if let Ok(c) = std::ffi::CString::new(m.as_str()) {
                // SAFETY: a valid path; detaching our own test mounts.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        // Its network namespace (bridges, veths, rules) ends with its last user.
        strata_netd::netns::remove(&netns_of(&self.sock));
    }
}

/// The standard output of a command that must have succeeded; else the test fails with
/// both outputs.
pub fn succeeded(o: Output, program: &str, args: &[&str]) -> String {
    assert!(
        o.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The network namespace file of the test daemon listening on `sock`.
pub fn netns_of(sock: &Path) -> PathBuf {
    sock.with_file_name("netns")
}

/// Runs `f` on a thread inside the network namespace at `ns` (a test daemon's: its "host").
pub fn in_netns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    strata_netd::netns::run_in(Some(ns), f).expect("entering the daemon's namespace")
}

/// Starts `strata daemon` in the test process's own network namespace, the host's; returns
/// once its socket exists, or its error output if it exits. It runs with `--bridge none
/// --iptables=false`, so it makes no link and writes no rule there (for the daemons of
/// start-up, configuration and TCP tests; containers with networks use [`Daemon`]).
pub fn spawn(root: &Path, pid: &Path, sock: &Path, extra: &[&str]) -> Result<Running, String> {
    let mut args = vec!["--bridge", "none", "--iptables=false"];
    args.extend_from_slice(extra);
    spawn_in(None, root, pid, sock, &args)
}

/// Makes the network namespace of a test daemon, with its loopback up as a host's is.
pub fn make_netns(ns: &Path) -> Result<(), String> {
    strata_netd::netns::create(ns).map_err(|e| e.to_string())?;
    strata_netd::link::loopback_up(ns).map_err(|e| e.to_string())
}

/// Makes `cmd` enter the network namespace at `ns` before it runs.
pub fn enter_netns(cmd: &mut Command, ns: &Path) -> Result<(), String> {
    let ns_file = std::fs::File::open(ns).map_err(|e| format!("{}: {e}", ns.display()))?;
    // SAFETY: setns is async-signal-safe; the closure owns the (close-on-exec) fd.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::setns(
                std::os::fd::AsRawFd::as_raw_fd(&ns_file),
                libc::CLONE_NEWNET,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts `strata daemon` inside the network namespace at `netns` (`None`: ours); returns
/// once its socket exists, or its error output if it exits.
pub fn spawn_in(
    netns: Option<&Path>,
    root: &Path,
    pid: &Path,
    sock: &Path,
    extra: &[&str],
) -> Result<Running, String> {
    spawn_in_env(netns, root, pid, sock, extra, &[])
}

/// As `spawn_in`, with environment variables for the daemon.
pub fn spawn_in_env(
    netns: Option<&Path>,
    root: &Path,
    pid: &Path,
    sock: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Running, String> {
    let log = sock.with_extension("log");
    // A socket left by a killed daemon must not look like a ready one.
    let _ = std::fs::remove_file(sock);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    if let Some(ns) = netns {
        enter_netns(&mut cmd, ns)?;
    }
    let mut child = cmd
        .args(["daemon", "--data-root"])
        .arg(root)
        .arg("--pidfile")
        .arg(pid)
        .arg("--exec-root")
        .arg(pid.with_file_name("exec"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(extra)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start strata daemon");
    let t = Instant::now();
    while !sock.exists() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(format!(
                "exit {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the daemon did not create its socket in 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Running(child))
}

/// Whether the docker CLI and runc are here to run containers; says the test is skipped
/// when not.
pub fn can_run_containers() -> bool {
    if !docker_available() || !runc_available() {
        eprintln!("SKIPPED: needs the docker CLI and runc");
        return false;
    }
    true
}

/// Whether runc (Debian's package) is there to run containers.
/// The driver-independent part of the storage driver tests: a container `c1` of
/// test/busybox:1 gets `/note.txt` holding `text` through `docker cp`, which `docker diff`
/// shows; it is committed as test/committed:1, exported (the file is in the tar) and saved.
pub fn cp_diff_commit_export_save(d: &Daemon, text: &str) {
    d.ok(&["create", "--name", "c1", "test/busybox:1", "sh"]);
    let f = d.dir.path().join("note.txt");
    std::fs::write(&f, text).expect("write");
    d.ok(&["cp", f.to_str().expect("utf-8"), "c1:/note.txt"]);
    assert_eq!(d.ok(&["diff", "c1"]).trim(), "A /note.txt");
    let id = d.ok(&["commit", "c1", "test/committed:1"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let export = d.docker(&["export", "c1"]);
    assert!(export.status.success());
    let names = tar_names(&export.stdout[..]);
    assert!(names.iter().any(|n| n == "note.txt"), "{names:?}");
    let save = d.docker(&["save", "test/committed:1"]);
    assert!(save.status.success() && save.stdout.len() > 1000);
}

/// After `cp_diff_commit_export_save`: restarts the daemon, and container `c1` is still on
/// `driver` with the note `text` in it.
pub fn restart_keeps_c1(d: &mut Daemon, driver: &str, text: &str) {
    d.restart();
    assert_eq!(
        d.ok(&["container", "inspect", "-f", "{{.GraphDriver.Name}}", "c1"])
            .trim(),
        driver
    );
    let back = d.dir.path().join("back.txt");
    d.ok(&["cp", "c1:/note.txt", back.to_str().expect("utf-8")]);
    assert_eq!(std::fs::read_to_string(&back).expect("read"), text);
}

pub fn runc_available() -> bool {
    Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn docker_available() -> bool {
    Command::new("docker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A docker-archive of a two-layer busybox image (from Debian's busybox-static).
pub fn busybox_archive(dir: &Path) -> (PathBuf, Vec<Digest>, Digest) {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (Debian package busybox-static)");
    let l0 = TarBuilder::new()
        .dir("bin")
        .file_mode("bin/busybox", &bb, 0o755, 0, 0)
        .symlink("bin/sh", "busybox")
        .symlink("bin/echo", "busybox")
        .symlink("bin/cat", "busybox")
        .symlink("bin/sleep", "busybox")
        .symlink("bin/hostname", "busybox")
        .symlink("bin/id", "busybox")
        .symlink("bin/dd", "busybox")
        .symlink("bin/ps", "busybox")
        .symlink("bin/seq", "busybox")
        .symlink("bin/tty", "busybox")
        .symlink("bin/stty", "busybox")
        .symlink("bin/mount", "busybox")
        .symlink("bin/wc", "busybox")
        .symlink("bin/true", "busybox")
        .symlink("bin/grep", "busybox")
        .symlink("bin/ls", "busybox")
        .symlink("bin/mkdir", "busybox")
        .symlink("bin/chown", "busybox")
        .symlink("bin/chmod", "busybox")
        .symlink("bin/stat", "busybox")
        .symlink("bin/linux32", "busybox")
        .symlink("bin/unshare", "busybox")
        .symlink("bin/readlink", "busybox")
        .build();
    let l1 = TarBuilder::new()
        .dir("etc")
        .file("etc/motd", b"hello from strata\n")
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        )
        .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        .dir("tmp")
        .build();
    let diff_ids = vec![Digest::of(&l0), Digest::of(&l1)];
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z","config":{{"Cmd":["sh"],"Env":["PATH=/bin"],"Labels":{{"org.test":"1"}}}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[{{"created":"2024-01-02T03:04:05Z","created_by":"ADD busybox"}},{{"created":"2024-01-02T03:04:05Z","created_by":"ADD motd"}},{{"created":"2024-01-02T03:04:05Z","created_by":"CMD [\"sh\"]","empty_layer":true}}]}}"#,
        ids.join(",")
    )
    .into_bytes();
    let id = Digest::of(&cfg);
    let archive =
        strata_graph::graphtest::tars::save_archive(&cfg, &[&l0, &l1], &["test/busybox:1"]);
    let path = dir.join("busybox.tar");
    std::fs::write(&path, archive).expect("write");
    (path, diff_ids, id)
}

/// A second from now, as an `--until` that includes every event so far.
pub fn soon() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now + 1).to_string()
}

/// The entry names of a tar, in order.
pub fn tar_names(data: impl std::io::Read) -> Vec<String> {
    let mut r = TarReader::new(data, false);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().expect("tar entry") {
        out.push(e.display());
    }
    out
}

/// For `Daemon::start_prepared`: a loop-mounted btrfs as the data root `<dir>/root` (the
/// daemon's clean-up unmounts it). Returns the missing tool when mkfs.btrfs is not installed.
pub fn btrfs_data_root(dir: &Path) -> Option<String> {
    use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
    let fsdir = dir.join("btrfs");
    std::fs::create_dir_all(&fsdir).expect("dir");
    match LoopFs::new(&fsdir, &["mkfs.btrfs", "-q"], 1 << 30, "") {
        Ok(fs) => {
            let root = dir.join("root");
            std::fs::create_dir_all(&root).expect("root");
            let o = Command::new("mount")
                .arg("--bind")
                .arg(&fs.mnt)
                .arg(&root)
                .output()
                .expect("mount");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            std::mem::forget(fs);
            None
        }
        Err(LoopFsError::NoTool(t)) => Some(t.to_string()),
        Err(LoopFsError::Mount(why)) => panic!("mounting btrfs: {why}"),
    }
}
