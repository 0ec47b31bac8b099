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

pub fn start_strata(dir: &Path) -> Engine {
    std::fs::write(dir.join("none.json"), "{}").expect("config file");
    let sock = dir.join("strata.sock");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("daemon")
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("strata.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("-H")
        .arg(format!("tcp://{tcp}"))
        .args(["-s", "overlay2", "--config-file"])
        .arg(dir.join("none.json"))
        // As dockerd below: no default bridge and no rules, so the host is not touched.
        .args(["--bridge=none", "--iptables=false"])
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata");
    wait_for(&sock, &mut child, "strata");
    Engine {
        name: "Strata",
        child,
        sock,
        tcp,
    }
}

pub fn start_dockerd(dir: &Path) -> Option<Engine> {
    if !Path::new("/usr/sbin/dockerd").exists() {
        return None;
    }
    std::fs::write(dir.join("none.json"), "{}").ok()?;
    let sock = dir.join("docker.sock");
    let port = free_port();
    let tcp = format!("127.0.0.1:{port}");
    let mut child = Command::new("/usr/sbin/dockerd")
        .arg("--data-root")
        .arg(dir.join("root"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .arg("-H")
        .arg(format!("tcp://{tcp}"))
        .args([
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver",
            "overlay2",
            "--config-file",
        ])
        .arg(dir.join("none.json"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dockerd.log")).ok()?)
        .spawn()
        .ok()?;
    wait_for(&sock, &mut child, "dockerd");
    Some(Engine {
        name: "dockerd 20.10",
        child,
        sock,
        tcp,
    })
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
                "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n"
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
