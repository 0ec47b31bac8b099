//! Pull and push against dockerd 20.10, in the same run (issue #7): a ~300 MB image of 8
//! gzip layers in Debian's `docker-registry` on the loopback of a scratch network namespace;
//! time until the image is ready (`POST /images/create` answered to the end), median of 3
//! interleaved runs with the image removed in between; the serial baseline (every blob
//! downloaded one after the other, then every layer unpacked one after the other into a
//! layer store of its own); and the push of the same image to an empty registry.
//!
//! `cargo bench --bench distribution` (root, docker-registry and skopeo from Debian; dockerd
//! from Debian's `docker.io` when installed). Results print as a Markdown table for
//! benches/README.md.

#[path = "engines.rs"]
mod engines;
use engines::{median, Engine, Netns};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::{Digest, StorageOpts};

const LAYERS: usize = 8;
const FILES_PER_LAYER: usize = 160;
const FILE_BYTES: usize = 240 << 10;
const RUNS: usize = 3;

/// Half noise, half text: layers compress to about 60 % as real ones do.
fn content(layer: usize, file: usize) -> Vec<u8> {
    let mut x = (layer as u64 * 1_000_003 + file as u64) | 1;
    let mut v = Vec::with_capacity(FILE_BYTES + 8);
    if file.is_multiple_of(2) {
        while v.len() < FILE_BYTES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
    } else {
        let mut n = 0u64;
        while v.len() < FILE_BYTES {
            n += 1;
            v.extend_from_slice(
                format!("line {n} of file {file} in layer {layer}: some text\n").as_bytes(),
            );
        }
    }
    v.truncate(FILE_BYTES);
    v
}

/// A `docker save` archive of the image, and its total uncompressed size.
fn image(dir: &Path) -> (PathBuf, u64) {
    let mut layers = Vec::new();
    for l in 0..LAYERS {
        let mut t = TarBuilder::new().dir("data").dir(&format!("data/{l}"));
        for f in 0..FILES_PER_LAYER {
            t = t.file_mode(&format!("data/{l}/{f}"), &content(l, f), 0o644, 0, 0);
        }
        layers.push(t.build());
    }
    let total = layers.iter().map(|l| l.len() as u64).sum();
    let ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let cfg = strata_graph::graphtest::tars::image_config("sh", &ids);
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let archive = strata_graph::graphtest::tars::save_archive(&cfg, &refs, &["bench/big:1"]);
    let path = dir.join("big.tar");
    std::fs::write(&path, archive).expect("write the archive");
    (path, total)
}

/// A registry inside `ns`, stopped by PID when dropped.
struct Registry {
    child: Child,
    host: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(ns: &Netns, dir: &Path, port: u16) -> Registry {
    std::fs::create_dir_all(dir).expect("dir");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .expect("config");
    let child = ns
        .command("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    // Stopped by PID when dropped, also if it never answers.
    let reg = Registry {
        child,
        host: format!("127.0.0.1:{port}"),
    };
    let t = Instant::now();
    loop {
        let up = ns
            .command("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if up {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    reg
}

/// A streamed API call read to its end; panics on an error in the stream.
fn call_to_end(e: &Engine, method: &str, path: &str) -> Duration {
    let t = Instant::now();
    let (status, body) = engines::request(e, method, path, None);
    let text = String::from_utf8_lossy(&body);
    assert!(
        status == 200 && !text.contains("\"error\""),
        "{}: {method} {path}: {status} {text}",
        e.name
    );
    t.elapsed()
}

fn pull_time(e: &Engine, host: &str) -> Duration {
    let d = call_to_end(
        e,
        "POST",
        &format!("/images/create?fromImage={host}/bench/big&tag=1"),
    );
    let (status, _) = engines::request(
        e,
        "DELETE",
        &format!("/images/{host}/bench/big:1?force=1"),
        None,
    );
    assert_eq!(status, 200, "{}: rmi", e.name);
    d
}

fn push_time(e: &Engine, from: &str, to: &str) -> Duration {
    call_to_end(
        e,
        "POST",
        &format!("/images/create?fromImage={from}/bench/big&tag=1"),
    );
    let (status, _) = engines::request(
        e,
        "POST",
        &format!("/images/{from}/bench/big:1/tag?repo={to}/bench/pushed&tag=1"),
        None,
    );
    assert_eq!(status, 201, "{}: tag", e.name);
    call_to_end(e, "POST", &format!("/images/{to}/bench/pushed/push?tag=1"))
}

/// Every blob downloaded in turn, then every layer unpacked in turn.
fn serial_baseline(ns: &Netns, host: &str, dir: &Path) -> (Duration, Duration) {
    use strata_registry::client::{RegistryClient, Scheme};
    use strata_registry::manifest::Fetched;
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).expect("dir");
    let (h, b) = (host.to_string(), blobs.clone());
    let ns_path = ns.path();
    let download = std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).expect("netns");
        // SAFETY: setns on this thread only.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns");
        let c = RegistryClient::new(&h, Scheme::Http, Default::default());
        let Fetched::Manifest(m) = c.manifest("bench/big", "1").expect("manifest").0 else {
            panic!("a manifest")
        };
        let t = Instant::now();
        let mut files = Vec::new();
        for l in &m.layers {
            let p = b.join(l.digest.hex());
            let mut out = std::fs::File::create(&p).expect("blob file");
            c.blob_to("bench/big", &l.digest, 0, &mut out)
                .expect("blob");
            files.push(p);
        }
        (t.elapsed(), files)
    });
    let (dl, files) = download.join().expect("download thread");
    let home = dir.join("store");
    std::fs::create_dir_all(&home).expect("dir");
    let driver: Arc<dyn strata_graph::Driver> = Arc::new(
        strata_overlay::OverlayDriver::new(&home.join("overlay2"), &StorageOpts::default())
            .expect("overlay2"),
    );
    let (store, _) =
        strata_graph::LayerStore::open(&home.join("layers"), driver).expect("layer store");
    let t = Instant::now();
    let mut parent = None;
    for f in files {
        let l = store
            .register(
                parent.as_ref(),
                std::fs::File::open(&f).expect("blob"),
                Default::default(),
            )
            .expect("register");
        parent = Some(l.chain_id);
    }
    let ex = t.elapsed();
    let _ = store.cleanup();
    (dl, ex)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("distribution: bench");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let have = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !root || !have("docker-registry") || !have("skopeo") {
        eprintln!("SKIPPED: the distribution benchmark needs root, docker-registry and skopeo");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-dist-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let (archive, total) = image(dir.path());
    let ns = Netns::new("sbd");
    let port = 15000 + (std::process::id() % 1000) as u16;
    let reg = registry(&ns, &dir.path().join("reg"), port);
    let o = ns
        .command("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{}/bench/big:1", reg.host))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let compressed: u64 =
        std::fs::read_dir(dir.path().join("reg/data/docker/registry/v2/blobs/sha256"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .filter_map(|b| std::fs::metadata(b.path().join("data")).ok())
            .map(|m| m.len())
            .sum();
    eprintln!(
        "image: {LAYERS} layers, {:.0} MB uncompressed, {:.0} MB in the registry",
        total as f64 / 1e6,
        compressed as f64 / 1e6
    );
    let (dl, ex) = serial_baseline(&ns, &reg.host, dir.path());
    eprintln!(
        "serial: download {:.2} s + extract {:.2} s",
        dl.as_secs_f64(),
        ex.as_secs_f64()
    );
    let args = ["--bridge=none", "--iptables=false"];
    let sdir = dir.path().join("strata");
    let ddir = dir.path().join("dockerd");
    std::fs::create_dir_all(&sdir).expect("dir");
    std::fs::create_dir_all(&ddir).expect("dir");
    let strata = engines::start_strata_with(&sdir, Some(&ns.path()), &args);
    let docker = engines::start_dockerd_with(
        &ddir,
        Some(&ns.path()),
        &["--iptables=false", "--ip6tables=false", "--bridge=none"],
    );
    let (mut s, mut d) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        s.push(pull_time(&strata, &reg.host));
        if let Some(e) = &docker {
            d.push(pull_time(e, &reg.host));
        }
        eprintln!("run {i}: Strata {:?}, dockerd {:?}", s.last(), d.last());
    }
    let pull_s = median(s);
    let pull_d = (!d.is_empty()).then(|| median(d));
    // Pushes go to empty registries: every layer is compressed and sent.
    let reg_s = registry(&ns, &dir.path().join("reg-s"), port + 1);
    let reg_d = registry(&ns, &dir.path().join("reg-d"), port + 2);
    let push_s = push_time(&strata, &reg.host, &reg_s.host);
    let push_d = docker
        .as_ref()
        .map(|e| push_time(e, &reg.host, &reg_d.host));
    drop(strata);
    drop(docker);
    let secs = |x: Duration| format!("{:.2} s", x.as_secs_f64());
    let ratio = |a: Duration, b: Option<Duration>| match b {
        Some(b) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    };
    let na = || "not installed".to_string();
    println!("\n| what | dockerd 20.10 | Strata | ratio |\n|---|---|---|---|");
    println!(
        "| pull, image ready (median of {RUNS}) | {} | {} | {} |",
        pull_d.map(secs).unwrap_or_else(na),
        secs(pull_s),
        ratio(pull_s, pull_d)
    );
    println!(
        "| serial baseline: download {} + extract {} | | {} | {} |",
        secs(dl),
        secs(ex),
        secs(dl + ex),
        ratio(pull_s, Some(dl + ex))
    );
    println!(
        "| push to an empty registry | {} | {} | {} |",
        push_d.map(secs).unwrap_or_else(na),
        secs(push_s),
        ratio(push_s, push_d)
    );
}
