//! The daemon against dockerd 20.10, in the same run: API round trips per second (parallel
//! keep-alive clients, unix socket and TCP), idle RSS, `load`/`save` of a ~300 MB
//! multi-layer image, and `system df` with 100 images and 100 containers.
//!
//! `cargo bench --bench daemon` (root; dockerd from Debian's `docker.io` when installed, else
//! Strata alone). Each daemon gets its own data root (a fresh loop-mounted ext4) and sockets
//! and is stopped by PID. The results are printed as a Markdown table for benches/README.md.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use strata_graph::archive::tar::{Header, Kind, TarWriter};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;

#[path = "engines.rs"]
mod engines;
use engines::{connect, json_request, read_response, request, start_dockerd, start_strata, Engine};

const CLIENTS: usize = 4;
const RATE_SECS: f64 = 3.0;

/// The fields of `/proc/PID/stat` after the command name (field 3, the state, first).
fn stat_fields(pid: &str) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The direct children of a process (dockerd's containerd).
fn children(pid: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .filter(|n| stat_fields(n).get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid))
        .collect()
}

/// CPU seconds (user + system) used so far by a process and its direct children.
fn cpu_secs(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let of = |p: &str| -> f64 {
        let f = stat_fields(p);
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        (num(11) + num(12)) / tick
    };
    of(&pid.to_string()) + children(pid).iter().map(|c| of(c)).sum::<f64>()
}

/// Round trips per second of `GET path`, `CLIENTS` keep-alive connections in parallel, and
/// round trips per CPU-second the engine spent (the client shares the 2 cores, so the first
/// figure is capped by the client for both engines; the second is not).
fn rate(e: &Engine, path: &str, tcp: bool) -> (f64, f64) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    // Warm up.
    {
        let mut r = BufReader::new(connect(e, tcp));
        for _ in 0..200 {
            r.get_mut().write_all(req.as_bytes()).unwrap();
            assert_eq!(read_response(&mut r).0, 200, "{} {path}", e.name);
        }
    }
    let cpu0 = cpu_secs(e.child.id());
    let deadline = Instant::now() + Duration::from_secs_f64(RATE_SECS);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let req = req.clone();
                s.spawn(move || {
                    let mut r = BufReader::new(connect(e, tcp));
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        r.get_mut().write_all(req.as_bytes()).unwrap();
                        read_response(&mut r);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let cpu = (cpu_secs(e.child.id()) - cpu0).max(0.01);
    (total as f64 / RATE_SECS, total as f64 / cpu)
}

/// RSS of a process and its direct children (dockerd's containerd), in MB.
fn rss_mb(pid: u32) -> (f64, f64) {
    let rss = |p: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1000.0
    };
    let own = rss(&pid.to_string());
    let children = children(pid).iter().map(|c| rss(c)).sum();
    (own, children)
}

/// A docker-archive of `layers` random layers of `mib_each` MiB, tagged `tag`.
fn image_archive(dir: &Path, name: &str, tag: &str, layers: usize, mib_each: usize) -> PathBuf {
    use rand::RngCore;
    let mut rng = rand::rng();
    let path = dir.join(name);
    let mut w = TarWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    let mut diff_ids = Vec::new();
    let mut names = Vec::new();
    for i in 0..layers {
        let mut b = TarBuilder::new().dir(&format!("l{i}"));
        let mut chunk = vec![0u8; 4 << 20];
        for j in 0..mib_each.div_ceil(4) {
            rng.fill_bytes(&mut chunk);
            b = b.file(&format!("l{i}/f{j}"), &chunk);
        }
        let data = b.build();
        diff_ids.push(Digest::of(&data));
        let n = format!("{i}/layer.tar");
        let h = Header::new(n.as_str(), Kind::Regular, data.len() as u64);
        w.append(&h, Some(&mut &data[..])).unwrap();
        names.push(format!("\"{n}\""));
    }
    let cfg = strata_graph::graphtest::tars::image_config("sh", &diff_ids);
    let h = Header::new("config.json", Kind::Regular, cfg.len() as u64);
    w.append(&h, Some(&mut &cfg[..])).unwrap();
    let m = format!(
        r#"[{{"Config":"config.json","RepoTags":["{tag}"],"Layers":[{}]}}]"#,
        names.join(",")
    );
    let h = Header::new("manifest.json", Kind::Regular, m.len() as u64);
    w.append(&h, Some(&mut m.as_bytes())).unwrap();
    w.finish().unwrap();
    path
}

/// An archive holding `n` small images, each with its own layer.
fn many_images(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("many.tar");
    let mut w = TarWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    let bb = std::fs::read("/bin/busybox").unwrap_or_else(|_| b"busybox".to_vec());
    let mut manifest = Vec::new();
    for i in 0..n {
        let data = TarBuilder::new()
            .dir("bin")
            .file_mode("bin/sh", &bb, 0o755, 0, 0)
            .file("id", format!("{i}").as_bytes())
            .build();
        let lname = format!("l{i}/layer.tar");
        let h = Header::new(lname.as_str(), Kind::Regular, data.len() as u64);
        w.append(&h, Some(&mut &data[..])).unwrap();
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:{:02}Z","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            i % 60,
            Digest::of(&data)
        );
        let cname = format!("c{i}.json");
        let h = Header::new(cname.as_str(), Kind::Regular, cfg.len() as u64);
        w.append(&h, Some(&mut cfg.as_bytes())).unwrap();
        manifest.push(format!(
            r#"{{"Config":"{cname}","RepoTags":["bench/many:{i}"],"Layers":["{lname}"]}}"#
        ));
    }
    let m = format!("[{}]", manifest.join(","));
    let h = Header::new("manifest.json", Kind::Regular, m.len() as u64);
    w.append(&h, Some(&mut m.as_bytes())).unwrap();
    w.finish().unwrap();
    path
}

fn best_of<T: PartialOrd + Copy>(n: usize, mut f: impl FnMut() -> T) -> T {
    let mut best = f();
    for _ in 1..n {
        let v = f();
        if v < best {
            best = v;
        }
    }
    best
}

fn drop_caches() {
    let _ = Command::new("sync").status();
}

struct Figures {
    rss: (f64, f64),
    rates: Vec<(String, (f64, f64))>,
    load: f64,
    save: f64,
    df: f64,
}

fn measure(e: &Engine, big: &Path, many: &Path) -> Figures {
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_mb(e.child.id());
    eprintln!(
        "{}: RSS {:.1} MB (+{:.1} MB children)",
        e.name, rss.0, rss.1
    );
    // load / save of the big image: best of 3 (the image removed in between).
    let load = best_of(3, || {
        drop_caches();
        let t = Instant::now();
        let (st, body) = request(e, "POST", "/images/load?quiet=1", Some(big));
        let took = t.elapsed().as_secs_f64();
        assert!(
            st == 200 && !String::from_utf8_lossy(&body).contains("\"error\""),
            "{} load: {st} {}",
            e.name,
            String::from_utf8_lossy(&body)
        );
        let (st, _) = request(e, "DELETE", "/images/bench/big:1", None);
        assert_eq!(st, 200, "{} rmi", e.name);
        took
    });
    let (st, _) = request(e, "POST", "/images/load?quiet=1", Some(big));
    assert_eq!(st, 200);
    let save = best_of(3, || {
        let t = Instant::now();
        let (st, body) = request(e, "GET", "/images/bench/big:1/get", None);
        assert!(st == 200 && body.len() > 300 << 20, "{} save", e.name);
        t.elapsed().as_secs_f64()
    });
    eprintln!("{}: load {load:.2} s, save {save:.2} s", e.name);
    // 100 images, 100 containers.
    let (st, _) = request(e, "POST", "/images/load?quiet=1", Some(many));
    assert_eq!(st, 200);
    for i in 0..100 {
        let (st, body) = json_request(
            e,
            "POST",
            &format!("/containers/create?name=bench{i}"),
            &format!(r#"{{"Image":"bench/many:{i}"}}"#),
        );
        assert_eq!(
            st,
            201,
            "{} create: {}",
            e.name,
            String::from_utf8_lossy(&body)
        );
    }
    let df = best_of(5, || {
        let t = Instant::now();
        let (st, _) = request(e, "GET", "/system/df", None);
        assert_eq!(st, 200);
        t.elapsed().as_secs_f64()
    });
    eprintln!("{}: system df {:.1} ms", e.name, df * 1000.0);
    let mut rates = Vec::new();
    for (path, tcp) in [
        ("/_ping", false),
        ("/_ping", true),
        ("/containers/json?all=1", false),
        ("/containers/json?all=1", true),
        ("/images/json", false),
        ("/images/json", true),
    ] {
        let r = rate(e, path, tcp);
        let label = format!("`GET {path}` {}", if tcp { "TCP" } else { "unix" });
        eprintln!(
            "{}: {label} {:.0} req/s, {:.0} req per CPU-s",
            e.name, r.0, r.1
        );
        rates.push((label, r));
    }
    Figures {
        rss,
        rates,
        load,
        save,
        df,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("daemon: bench");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the daemon benchmark needs root (mounts)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("strata-bench-daemon-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    eprintln!("building images in {} ...", dir.path().display());
    let big = image_archive(dir.path(), "big.tar", "bench/big:1", 5, 64);
    let many = many_images(dir.path(), 100);
    let big_mb = std::fs::metadata(&big).unwrap().len() as f64 / 1e6;
    // Each engine's data root on a fresh loop-mounted ext4 of its own: the host's root
    // filesystem (ext4 with `discard`) slows down after large deletions, which made `load`
    // times depend on what ran before.
    let fresh_fs = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let fs = strata_graph::graphtest::loopfs::LoopFs::new(
            &d,
            &["mkfs.ext4", "-q", "-F"],
            4 << 30,
            "",
        )
        .unwrap_or_else(|e| panic!("loop ext4: {e:?}"));
        (fs, d)
    };
    let strata = {
        let (fs, _) = fresh_fs("strata");
        let e = start_strata(&fs.mnt);
        let f = measure(&e, &big, &many);
        drop(e);
        f
    };
    let docker = {
        let (fs, _) = fresh_fs("docker");
        start_dockerd(&fs.mnt).map(|e| {
            let f = measure(&e, &big, &many);
            drop(e);
            f
        })
    };
    println!("\n| what | dockerd 20.10 | Strata | ratio |\n|---|---|---|---|");
    let d = docker.as_ref();
    let cell = |v: Option<String>| v.unwrap_or_else(|| "not installed".into());
    println!(
        "| idle RSS | {} | {:.1} MB | {} |",
        cell(d.map(|d| format!("{:.1} MB (+ {:.1} MB containerd)", d.rss.0, d.rss.1))),
        strata.rss.0,
        cell(d.map(|d| format!(
            "1/{:.1} (1/{:.1} with containerd)",
            d.rss.0 / strata.rss.0,
            (d.rss.0 + d.rss.1) / strata.rss.0
        )))
    );
    for (i, (label, (r, per_cpu))) in strata.rates.iter().enumerate() {
        let theirs = d.map(|d| d.rates[i].1);
        println!(
            "| {label}, {CLIENTS} keep-alive clients | {} | {r:.0} req/s | {} |",
            cell(theirs.map(|t| format!("{:.0} req/s", t.0))),
            cell(theirs.map(|t| format!("{:.2}×", r / t.0)))
        );
        println!(
            "| {label}, round trips per engine CPU-second | {} | {per_cpu:.0} | {} |",
            cell(theirs.map(|t| format!("{:.0}", t.1))),
            cell(theirs.map(|t| format!("{:.2}×", per_cpu / t.1)))
        );
    }
    for (what, s, t) in [
        (
            format!("`load` of a {big_mb:.0} MB 5-layer image (best of 3)"),
            strata.load,
            d.map(|d| d.load),
        ),
        (
            "`save` of the same image (best of 3)".to_string(),
            strata.save,
            d.map(|d| d.save),
        ),
        (
            "`GET /system/df`, 100 images + 100 containers (best of 5)".to_string(),
            strata.df,
            d.map(|d| d.df),
        ),
    ] {
        println!(
            "| {what} | {} | {:.3} s | {} |",
            cell(t.map(|t| format!("{t:.3} s"))),
            s,
            cell(t.map(|t| format!("{:.2}× the time", s / t)))
        );
    }
}
