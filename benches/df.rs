//! `system df` with a generated store, against dockerd 20.10 in the same run (issue #13).
//!
//! Each engine gets a data root of its own on a fresh loop-mounted ext4 and the same store:
//! 1,000 images (a shared busybox layer and a layer of their own, loaded from one archive)
//! and 1,000 containers, one per image, of which 100 ran and wrote 64 KiB each (overlay2 on
//! both sides). Then, through the API:
//!
//! - `GET /system/df` (what `docker system df` and `-v` call): median of 10, warm;
//! - the same, first call after a restart of the daemon (once it lists its containers) with
//!   the page cache dropped (cold);
//! - `GET /containers/json?all=1&size=1` (`docker ps -as`): median of 10.
//!
//! The answers are checked: every image and container listed, the containers that ran
//! counted at 64 KiB or more. `cargo bench --bench df` (root, runc; dockerd from Debian's
//! `docker.io` when installed, else Strata alone); `STRATA_BENCH_DF_N` changes the 1,000,
//! `STRATA_BENCH_DF_SAMPLES` the 10, and `STRATA_BENCH_DF_STRATA_ONLY=1` leaves dockerd out
//! (to profile Strata).
//! Results print as a Markdown table for benches/README.md.

#[path = "engines.rs"]
mod engines;
use engines::{json_request, median, start, Engine};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_graph::graphtest::tars::{image_config, save_archive_of, SavedImage, TarBuilder};
use strata_graph::Digest;

/// Containers that run (and write) before the store is measured.
const RAN: usize = 100;
/// What each of them writes.
const WRITTEN: usize = 64 << 10;
/// Samples of each warm measurement (`STRATA_BENCH_DF_SAMPLES`, for profiling).
fn samples() -> usize {
    std::env::var("STRATA_BENCH_DF_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// One archive of `n` images `df/img<i>:1`, each a shared busybox layer and one of its own.
fn archive(dir: &Path, n: usize) -> PathBuf {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let base = TarBuilder::new()
        .dir("bin")
        .file_mode("bin/busybox", &bb, 0o755, 0, 0)
        .symlink("bin/sh", "busybox")
        .symlink("bin/head", "busybox")
        .dir("tmp")
        .build();
    let own: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            TarBuilder::new()
                .dir("etc")
                .file("etc/image", format!("image {i}\n").as_bytes())
                .build()
        })
        .collect();
    let images: Vec<SavedImage<'_>> = own
        .iter()
        .enumerate()
        .map(|(i, l)| SavedImage {
            config: image_config("sh", &[Digest::of(&base), Digest::of(l)]),
            layers: vec![&base[..], &l[..]],
            tags: vec![format!("df/img{i}:1")],
        })
        .collect();
    let path = dir.join("images.tar");
    std::fs::write(&path, save_archive_of(&images)).expect("write the archive");
    path
}

/// Loads the images and makes the containers; returns the IDs of those that ran.
fn populate(e: &Engine, archive: &Path, n: usize) -> Vec<String> {
    let t = Instant::now();
    engines::load_image(e, archive);
    eprintln!(
        "{}: {n} images loaded in {:.1} s",
        e.name,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut ran = Vec::new();
    for i in 0..n {
        let body = serde_json::json!({
            "Image": format!("df/img{i}:1"),
            "Cmd": ["sh", "-c", format!("head -c {WRITTEN} /bin/busybox > /tmp/written")],
            "HostConfig": { "NetworkMode": "none" },
        });
        let id = engines::create_with(e, &body);
        if i < RAN {
            start(e, &id);
            engines::wait_answered(e, engines::send_wait(e, &id, "not-running"));
            ran.push(id);
        }
        if (i + 1) % 200 == 0 {
            eprintln!("{}: {} containers", e.name, i + 1);
        }
    }
    eprintln!(
        "{}: {n} containers ({} ran) in {:.1} s",
        e.name,
        ran.len(),
        t.elapsed().as_secs_f64()
    );
    ran
}

/// One `GET /system/df`, checked.
fn df(e: &Engine, n: usize, ran: &[String]) -> Duration {
    let t = Instant::now();
    let (status, b) = json_request(e, "GET", "/system/df", "");
    let took = t.elapsed();
    assert_eq!(
        status,
        200,
        "{}: df: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
    let v: serde_json::Value = serde_json::from_slice(&b).expect("df JSON");
    let images = v["Images"].as_array().map_or(0, Vec::len);
    let containers = v["Containers"].as_array().expect("Containers");
    assert_eq!(images, n, "{}: images listed", e.name);
    assert_eq!(containers.len(), n, "{}: containers listed", e.name);
    let small = containers
        .iter()
        .filter(|c| ran.iter().any(|id| c["Id"] == id.as_str()))
        .filter(|c| c["SizeRw"].as_i64().unwrap_or(0) < WRITTEN as i64)
        .count();
    assert_eq!(
        small, 0,
        "{}: containers that ran counted too small",
        e.name
    );
    took
}

fn ps_size(e: &Engine, n: usize) -> Duration {
    let t = Instant::now();
    let (status, b) = json_request(e, "GET", "/containers/json?all=1&size=1", "");
    let took = t.elapsed();
    assert_eq!(
        status,
        200,
        "{}: ps: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
    let v: serde_json::Value = serde_json::from_slice(&b).expect("ps JSON");
    assert_eq!(v.as_array().map_or(0, Vec::len), n, "{}: ps -as", e.name);
    took
}

fn drop_caches() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

struct Figures {
    warm: Duration,
    cold: Duration,
    ps: Duration,
}

/// Populates a store with `start`, then measures it, restarting the engine once.
fn measure(
    dir: &Path,
    archive: &Path,
    n: usize,
    start: fn(&Path) -> Option<Engine>,
) -> Option<Figures> {
    let e = start(dir)?;
    let ran = populate(&e, archive, n);
    // Let Strata's size worker count the layers that ran, as it does right after they stop.
    std::thread::sleep(Duration::from_secs(2));
    df(&e, n, &ran);
    let warm = median((0..samples()).map(|_| df(&e, n, &ran)).collect());
    let ps = median((0..samples()).map(|_| ps_size(&e, n)).collect());
    drop(e);
    let e = start(dir)?;
    // Ready: the containers are listed (without sizes). Then the cache goes.
    let (status, _) = json_request(&e, "GET", "/containers/json?all=1", "");
    assert_eq!(status, 200, "{}: ps after the restart", e.name);
    drop_caches();
    let cold = df(&e, n, &ran);
    eprintln!(
        "{}: df warm {:.1} ms, cold {:.1} ms; ps -as {:.1} ms",
        e.name,
        warm.as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3,
        ps.as_secs_f64() * 1e3
    );
    drop(e);
    Some(Figures { warm, cold, ps })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("df: bench");
        return;
    }
    if !engines::can_run_containers("df") {
        return;
    }
    let n: usize = std::env::var("STRATA_BENCH_DF_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = engines::scratch_dir("df");
    let archive = archive(dir.path(), n);
    let fresh_fs = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        strata_graph::graphtest::loopfs::LoopFs::new(&d, &["mkfs.ext4", "-q", "-F"], 4 << 30, "")
            .unwrap_or_else(|e| panic!("loop ext4: {e:?}"))
    };
    let strata = {
        let fs = fresh_fs("strata");
        measure(&fs.mnt, &archive, n, |d| Some(engines::start_strata(d)))
            .expect("Strata always runs")
    };
    let strata_only = std::env::var_os("STRATA_BENCH_DF_STRATA_ONLY").is_some();
    let docker = if strata_only {
        None
    } else {
        let fs = fresh_fs("docker");
        measure(&fs.mnt, &archive, n, engines::start_dockerd)
    };
    let ms = |x: Duration| format!("{:.1} ms", x.as_secs_f64() * 1e3);
    println!(
        "\n{n} images, {n} containers ({} ran and wrote {} KiB each), overlay2 on ext4\n",
        RAN.min(n),
        WRITTEN >> 10
    );
    println!("| what | dockerd 20.10 | Strata | ratio |\n|---|---|---|---|");
    for (what, s, d) in [
        (
            format!("`GET /system/df` (median of {})", samples()),
            strata.warm,
            docker.as_ref().map(|d| d.warm),
        ),
        (
            "`GET /system/df`, first after a restart, page cache dropped".to_string(),
            strata.cold,
            docker.as_ref().map(|d| d.cold),
        ),
        (
            format!(
                "`GET /containers/json?all=1&size=1` (median of {})",
                samples()
            ),
            strata.ps,
            docker.as_ref().map(|d| d.ps),
        ),
    ] {
        match d {
            Some(d) => println!(
                "| {what} | {} | {} | {:.1}× faster |",
                ms(d),
                ms(s),
                d.as_secs_f64() / s.as_secs_f64()
            ),
            None if strata_only => println!("| {what} | left out | {} | |", ms(s)),
            None => println!("| {what} | not installed | {} | |", ms(s)),
        }
    }
}
