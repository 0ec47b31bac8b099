#![allow(dead_code)] // each benchmark uses part of it
//! The engines the daemon benchmarks compare: Strata and dockerd 20.10 (Debian's `docker.io`),
//! each started on its own data root and sockets and stopped by PID, and a minimal HTTP/1.1
//! client for their APIs (no client library: its own costs would blur the comparison).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon under test.
pub struct Engine {
    pub name: &'static str,
    pub child: Child,
    pub sock: PathBuf,
    pub tcp: String,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a container benchmark can run here (root, runc); says why not.
pub fn can_run_containers(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/sbin/runc").exists() {
        eprintln!("SKIPPED: the {what} benchmark needs root and runc");
        return false;
    }
    true
}

/// A scratch directory for benchmark `name` under /var/tmp (removed when dropped).
pub fn scratch_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("strata-bench-{name}-"))
        .tempdir_in("/var/tmp")
        .expect("tempdir")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_for(sock: &Path, child: &mut Child, what: &str) {
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if let Ok(Some(s)) = child.try_wait() {
            panic!("{what} exited: {s}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch network namespace (`ip netns add`), deleted when dropped: daemons that make
/// bridges and firewall rules run in one, so the host is not touched.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let name = format!("{name}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("ip")
                .args(["-n", &name, "link", "set", "lo", "up"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Makes `cmd` enter the network namespace at `ns` before it runs.
fn enter(cmd: &mut Command, ns: Option<&Path>) {
    use std::os::fd::IntoRawFd;
    use std::os::unix::process::CommandExt;
    let Some(ns) = ns else { return };
    let fd = std::fs::File::open(ns).expect("open netns").into_raw_fd();
    // SAFETY: setns on a descriptor opened above; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Strata with no default bridge and no rules, so the host is not touched.
pub fn start_strata(dir: &Path) -> Engine {
    start_strata_with(dir, None, &["--bridge=none", "--iptables=false"])
}

/// Strata inside the network namespace `ns` (if any) with `args` added.
pub fn start_strata_with(dir: &Path, ns: Option<&Path>, args: &[&str]) -> Engine {
    std::fs::write(dir.join("none.json"), "{}").expect("config file");
    let sock = dir.join("strata.sock");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("daemon")
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("strata.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(if ns.is_none() {
            vec!["-H".to_string(), format!("tcp://{tcp}")]
        } else {
            vec![]
        })
        .args(["-s", "overlay2", "--config-file"])
        .arg(dir.join("none.json"))
        .args(args)
        .stderr(Stdio::null());
    enter(&mut cmd, ns);
    let mut child = cmd.spawn().expect("start strata");
    wait_for(&sock, &mut child, "strata");
    Engine {
        name: "Strata",
        child,
        sock,
        tcp,
    }
}

/// dockerd with no default bridge and no rules.
pub fn start_dockerd(dir: &Path) -> Option<Engine> {
    start_dockerd_with(
        dir,
        None,
        &["--iptables=false", "--ip6tables=false", "--bridge=none"],
    )
}

/// dockerd inside the network namespace `ns` (if any) with `args` added; `None` when
/// Debian's docker.io is not installed.
pub fn start_dockerd_with(dir: &Path, ns: Option<&Path>, args: &[&str]) -> Option<Engine> {
    if !Path::new("/usr/sbin/dockerd").exists() {
        return None;
    }
    std::fs::write(dir.join("none.json"), "{}").ok()?;
    let sock = dir.join("docker.sock");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("/usr/sbin/dockerd");
    cmd.arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(if ns.is_none() {
            vec!["-H".to_string(), format!("tcp://{tcp}")]
        } else {
            vec![]
        })
        .args(["--storage-driver", "overlay2", "--config-file"])
        .arg(dir.join("none.json"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dockerd.log")).ok()?);
    enter(&mut cmd, ns);
    let mut child = cmd.spawn().ok()?;
    wait_for(&sock, &mut child, "dockerd");
    Some(Engine {
        name: "dockerd 20.10",
        child,
        sock,
        tcp,
    })
}

/// A one-layer busybox image named `name` as `docker save` writes it, with `extra` files
/// (path, content) in its layer.
pub fn busybox_image(dir: &Path, name: &str, extra: &[(&str, Vec<u8>)]) -> PathBuf {
    use strata_graph::graphtest::tars::TarBuilder;
    use strata_graph::Digest;
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut layer = TarBuilder::new()
        .dir("bin")
        .file_mode("bin/busybox", &bb, 0o755, 0, 0)
        .symlink("bin/sh", "busybox")
        .symlink("bin/true", "busybox")
        .symlink("bin/sleep", "busybox")
        .dir("tmp");
    let mut parents: Vec<&str> = extra
        .iter()
        .filter_map(|(p, _)| p.rsplit_once('/').map(|(d, _)| d))
        .collect();
    parents.dedup();
    for d in parents {
        layer = layer.dir(d);
    }
    for (path, data) in extra {
        layer = layer.file_mode(path, data, 0o644, 0, 0);
    }
    let layer = layer.build();
    let diff = Digest::of(&layer);
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"],"Env":["PATH=/bin"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    )
    .into_bytes();
    let path = dir.join("busybox.tar");
    let archive = strata_graph::graphtest::tars::save_archive(&cfg, &[&layer], &[name]);
    std::fs::write(&path, archive).expect("write");
    path
}

pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

pub fn connect(e: &Engine, tcp: bool) -> Box<dyn Conn> {
    if tcp {
        let s = std::net::TcpStream::connect(&e.tcp).expect("tcp connect");
        s.set_nodelay(true).ok();
        Box::new(s)
    } else {
        Box::new(std::os::unix::net::UnixStream::connect(&e.sock).expect("unix connect"))
    }
}

/// Reads one response (Content-Length or chunked); returns the status and body. Parses bytes
/// in place, so that the client spends as little CPU as it can on each round trip.
pub fn read_response(r: &mut BufReader<Box<dyn Conn>>) -> (u16, Vec<u8>) {
    let mut head = Vec::with_capacity(512);
    loop {
        let n = r.read_until(b'\n', &mut head).expect("response head");
        assert!(n > 0, "connection closed");
        if head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let status = std::str::from_utf8(&head[9..12.min(head.len())])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut len, mut chunked) = (None, false);
    for line in head.split(|b| *b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            len = std::str::from_utf8(&line[15..])
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if line.len() > 18
            && line[..18].eq_ignore_ascii_case(b"transfer-encoding:")
            && line.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked"))
        {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).expect("chunk size");
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).expect("body");
    }
    (status, body)
}

/// One request on a fresh connection, body streamed from a file; returns the response body.
pub fn request(e: &Engine, method: &str, path: &str, body: Option<&Path>) -> (u16, Vec<u8>) {
    let mut c = connect(e, false);
    match body {
        None => {
            write!(
                c,
                // Anonymous registry credentials (`{}`): dockerd wants the header on a push.
                "{method} {path} HTTP/1.1\r\nHost: bench\r\nX-Registry-Auth: e30=\r\nContent-Length: 0\r\n\r\n"
            )
            .unwrap();
        }
        Some(p) => {
            let len = std::fs::metadata(p).unwrap().len();
            write!(c, "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-tar\r\nContent-Length: {len}\r\n\r\n").unwrap();
            std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut c).unwrap();
        }
    }
    let mut r = BufReader::with_capacity(1 << 20, c);
    read_response(&mut r)
}

pub fn json_request(e: &Engine, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut c = connect(e, false);
    write!(c, "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut r = BufReader::new(c);
    read_response(&mut r)
}

/// A container's ID from a create's answer.
pub fn id_of(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    v["Id"].as_str().expect("an Id").to_string()
}

/// Creates a container from `body`; returns its ID.
pub fn create_with(e: &Engine, body: &serde_json::Value) -> String {
    let (status, b) = json_request(e, "POST", "/containers/create", &body.to_string());
    assert_eq!(
        status,
        201,
        "{}: create: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
    id_of(&b)
}

/// Starts a container.
pub fn start(e: &Engine, id: &str) {
    let (status, b) = json_request(e, "POST", &format!("/containers/{id}/start"), "");
    assert_eq!(
        status,
        204,
        "{}: start: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
}

/// Sends a wait request and returns the connection to read its answer from.
pub fn send_wait(e: &Engine, id: &str, condition: &str) -> BufReader<Box<dyn Conn>> {
    let mut c = connect(e, false);
    write!(
        c,
        "POST /containers/{id}/wait?condition={condition} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("wait request");
    BufReader::new(c)
}

/// `docker run --rm [--network MODE] IMAGE /bin/true`, as the CLI calls it (create, a wait
/// for `removed` sent before the start, start, the wait's answer), without attaching.
pub fn run_rm(e: &Engine, image: &str, mode: &str) -> Duration {
    let t = Instant::now();
    let id = create_with(
        e,
        &serde_json::json!({ "Image": image, "Cmd": ["/bin/true"],
            "HostConfig": { "NetworkMode": mode, "AutoRemove": true } }),
    );
    let wait = send_wait(e, &id, "removed");
    start(e, &id);
    wait_answered(e, wait);
    t.elapsed()
}

/// Reads a wait's answer; it must be a 200.
pub fn wait_answered(e: &Engine, mut wait: BufReader<Box<dyn Conn>>) {
    let (status, b) = read_response(&mut wait);
    assert_eq!(
        status,
        200,
        "{}: wait: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
}

/// Loads the image archive at `image` into the engine (`docker load`), asserting it worked.
pub fn load_image(e: &Engine, image: &Path) {
    let (status, b) = request(e, "POST", "/images/load?quiet=1", Some(image));
    assert_eq!(
        status,
        200,
        "{}: load: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
