//! Builds against dockerd 20.10's classic builder, in the same run (issue #8): a 10-step
//! Dockerfile built cold (`nocache=1`) and fully cached, and a build whose context is 100 MB
//! in 10,000 files (`COPY . /ctx`), each timed from `POST /build` to the end of its stream;
//! medians of 3 interleaved runs. RUN steps use `networkmode=none` on both sides.
//!
//! `cargo bench --bench build` (root, runc; dockerd from Debian's `docker.io` when
//! installed). Results print as a Markdown table for benches/README.md.

#[path = "engines.rs"]
mod engines;
use engines::{median, Engine};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_graph::graphtest::tars::TarBuilder;

const RUNS: usize = 3;
const IMAGE: &str = "bench/busybox:1";

const TEN_STEPS: &str = "FROM bench/busybox:1\nENV APP=/app MODE=bench\nWORKDIR /app\nCOPY a.txt ./\nRUN echo one > /app/one\nRUN echo two > /app/two\nCOPY b.txt ./\nRUN cat /app/one /app/two > /app/both\nLABEL bench=yes\nCMD [\"cat\", \"/app/both\"]\n";

/// A context tar holding `files` (name, content) and the Dockerfile.
fn context(dir: &Path, name: &str, dockerfile: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    let mut t = TarBuilder::new().file_mode("Dockerfile", dockerfile.as_bytes(), 0o644, 0, 0);
    let mut dirs = std::collections::BTreeSet::new();
    for (n, _) in files {
        if let Some((d, _)) = n.rsplit_once('/') {
            if dirs.insert(d.to_string()) {
                t = t.dir(d);
            }
        }
    }
    for (n, data) in files {
        t = t.file_mode(n, data, 0o644, 0, 0);
    }
    let p = dir.join(name);
    std::fs::write(&p, t.build()).expect("write the context");
    p
}

fn build(e: &Engine, ctx: &Path, query: &str) -> Duration {
    let t = Instant::now();
    let (status, body) = engines::request(
        e,
        "POST",
        &format!("/build?networkmode=none&{query}"),
        Some(ctx),
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        status == 200 && text.contains("Successfully built") && !text.contains("\"error\""),
        "{}: build: {status} {text}",
        e.name
    );
    t.elapsed()
}

struct Figures {
    cold: Duration,
    cached: Duration,
    big: Duration,
}

fn measure(e: &Engine, small: &Path, big: &Path, image: &Path) -> Figures {
    engines::load_image(e, image);
    // Warm-up.
    build(e, small, "t=bench/ten:1");
    let (mut cold, mut cached, mut bigs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        cold.push(build(e, small, "t=bench/ten:1&nocache=1"));
        cached.push(build(e, small, "t=bench/ten:1"));
        bigs.push(build(e, big, "t=bench/big:1&nocache=1"));
    }
    let f = Figures {
        cold: median(cold),
        cached: median(cached),
        big: median(bigs),
    };
    eprintln!(
        "{}: cold {:?}, cached {:?}, 100 MB context {:?}",
        e.name, f.cold, f.cached, f.big
    );
    f
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("build: bench");
        return;
    }
    if !engines::can_run_containers("build") {
        return;
    }
    let dir = engines::scratch_dir("build");
    let image = engines::busybox_image(dir.path(), IMAGE, &[]);
    let small = context(
        dir.path(),
        "small.tar",
        TEN_STEPS,
        &[
            ("a.txt".into(), b"a\n".to_vec()),
            ("b.txt".into(), b"b\n".to_vec()),
        ],
    );
    let files: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|i| {
            let data: Vec<u8> = (0..10_000u32)
                .map(|k| ((k * 31 + i * 7) % 251) as u8)
                .collect();
            (format!("d{}/f{i}", i % 100), data)
        })
        .collect();
    let big = context(
        dir.path(),
        "big.tar",
        "FROM bench/busybox:1\nCOPY . /ctx\n",
        &files,
    );
    let sdir = dir.path().join("strata");
    let ddir = dir.path().join("dockerd");
    std::fs::create_dir_all(&sdir).expect("dir");
    std::fs::create_dir_all(&ddir).expect("dir");
    let strata = engines::start_strata(&sdir);
    let s = measure(&strata, &small, &big, &image);
    drop(strata);
    let d = engines::start_dockerd(&ddir).map(|e| {
        let f = measure(&e, &small, &big, &image);
        drop(e);
        f
    });
    let secs = |x: Duration| format!("{:.2} s", x.as_secs_f64());
    let ratio = |a: Duration, b: Option<Duration>| match b {
        Some(b) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    };
    let na = || "not installed".to_string();
    println!("\n| what | dockerd 20.10 | Strata | Strata's time ÷ dockerd's |\n|---|---|---|---|");
    for (what, sv, dv) in [
        (
            "10-step build, cold (median of 3)",
            s.cold,
            d.as_ref().map(|d| d.cold),
        ),
        (
            "10-step build, fully cached (median of 3)",
            s.cached,
            d.as_ref().map(|d| d.cached),
        ),
        (
            "`COPY .` of a 100 MB, 10,000-file context (median of 3)",
            s.big,
            d.as_ref().map(|d| d.big),
        ),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            dv.map(secs).unwrap_or_else(na),
            secs(sv),
            ratio(sv, dv)
        );
    }
}
