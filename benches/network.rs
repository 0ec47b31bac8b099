//! Container networking against dockerd 20.10, in the same run (issue #6): what the network
//! adds to `run --rm IMG /bin/true` (bridge minus none, medians of 50 interleaved runs), and
//! HTTP through a published port (`wrk`, one new connection per request as busybox httpd
//! serves them) with the userland proxy (the default of both) and without it (NAT only),
//! and direct to the container's address for reference.
//!
//! `cargo bench --bench network` (root, runc, `wrk` from Debian's package; dockerd from
//! Debian's `docker.io` when installed). Each daemon runs in a scratch network namespace of
//! its own with its default bridge and firewall rules, so the host is not touched; `wrk` runs
//! in that namespace as the host's client. Results print as a Markdown table for
//! benches/README.md.

#[path = "engines.rs"]
mod engines;
use engines::{json_request, median, Engine, Netns};

use std::path::Path;
use std::time::Duration;

const IMAGE: &str = "bench/web:1";
const RUNS: usize = 50;
const PORT: u16 = 18500;

fn run_rm(e: &Engine, mode: &str) -> Duration {
    engines::run_rm(e, IMAGE, mode)
}

/// `wrk` inside `ns` against `url` for 8 s.
fn wrk(ns: &Netns, url: &str) -> Option<Rate> {
    let out = ns
        .command("wrk")
        .args(["-t2", "-c16", "-d8s", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let rps: f64 = field("Requests/sec:")?.parse().ok()?;
    let transfer = field("Transfer/sec:")?;
    let mb = if let Some(v) = transfer.strip_suffix("MB") {
        v.parse::<f64>().ok()?
    } else if let Some(v) = transfer.strip_suffix("KB") {
        v.parse::<f64>().ok()? / 1024.0
    } else if let Some(v) = transfer.strip_suffix("GB") {
        v.parse::<f64>().ok()? * 1024.0
    } else {
        transfer.trim_end_matches('B').parse::<f64>().ok()? / 1048576.0
    };
    let errors = text.contains("Non-2xx") || text.contains("Socket errors");
    if errors {
        eprintln!("wrk {url}: {text}");
    }
    Some((rps, mb))
}

/// One wrk result: (requests/s, MB/s).
type Rate = (f64, f64);

#[derive(Default)]
struct Figures {
    none: Duration,
    bridge: Duration,
    /// (path, via the published port, direct to the container)
    http: Vec<(String, Rate, Rate)>,
}

fn measure(e: &Engine, ns: &Netns, image: &Path, latency: bool) -> Figures {
    engines::load_image(e, image);
    let mut f = Figures::default();
    if latency {
        for _ in 0..3 {
            run_rm(e, "none");
            run_rm(e, "bridge");
        }
        let (mut none, mut bridge) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            none.push(run_rm(e, "none"));
            bridge.push(run_rm(e, "bridge"));
        }
        f.none = median(none);
        f.bridge = median(bridge);
        eprintln!(
            "{}: run --rm none {:.1} ms, bridge {:.1} ms",
            e.name,
            f.none.as_secs_f64() * 1e3,
            f.bridge.as_secs_f64() * 1e3
        );
    }
    let web = engines::create_with(
        e,
        &serde_json::json!({ "Image": IMAGE,
            "Cmd": ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
            "ExposedPorts": { "80/tcp": {} },
            "HostConfig": { "PortBindings": { "80/tcp": [{ "HostPort": PORT.to_string() }] } } }),
    );
    engines::start(e, &web);
    let (_, b) = json_request(e, "GET", &format!("/containers/{web}/json"), "");
    let v: serde_json::Value = serde_json::from_slice(&b).expect("inspect");
    let ip = v["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or("")
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    for path in ["1k", "256k"] {
        let published = wrk(ns, &format!("http://127.0.0.1:{PORT}/{path}"));
        let direct = wrk(ns, &format!("http://{ip}:80/{path}"));
        if let (Some(p), Some(d)) = (published, direct) {
            eprintln!(
                "{}: /{path}: published {:.0} req/s {:.1} MB/s, direct {:.0} req/s {:.1} MB/s",
                e.name, p.0, p.1, d.0, d.1
            );
            f.http.push((path.to_string(), p, d));
        }
    }
    let _ = json_request(e, "DELETE", &format!("/containers/{web}?force=1"), "");
    f
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("network: bench");
        return;
    }
    if !engines::can_run_containers("network") {
        return;
    }
    let have_wrk = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    if !have_wrk {
        eprintln!("SKIPPED (HTTP part): wrk is not installed (apt-get install wrk)");
    }
    let dir = engines::scratch_dir("network");
    let image = engines::busybox_image(
        dir.path(),
        IMAGE,
        &[
            ("www/1k", vec![b'x'; 1024]),
            ("www/256k", vec![b'y'; 256 << 10]),
        ],
    );
    let run = |engine: &str, proxy: bool, latency: bool| -> Option<Figures> {
        let d = dir.path().join(format!("{engine}-{proxy}"));
        std::fs::create_dir_all(&d).expect("dir");
        let ns = Netns::new(&format!("sbn-{engine}"));
        let flag = format!("--userland-proxy={proxy}");
        let e = if engine == "strata" {
            engines::start_strata_with(&d, Some(&ns.path()), &[&flag])
        } else {
            engines::start_dockerd_with(&d, Some(&ns.path()), &[&flag])?
        };
        let f = measure(&e, &ns, &image, latency);
        drop(e);
        Some(f)
    };
    let strata = run("strata", true, true).expect("strata");
    let docker = run("dockerd", true, true);
    let (strata_nat, docker_nat) = if have_wrk {
        (run("strata", false, false), run("dockerd", false, false))
    } else {
        (None, None)
    };
    let ms = |x: Duration| format!("{:.1} ms", x.as_secs_f64() * 1e3);
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    println!("\n| what | dockerd 20.10 | Strata | ratio |\n|---|---|---|---|");
    let d = docker.as_ref();
    let na = || "not installed".to_string();
    for (what, s, t) in [
        (
            "`run --rm` with `--network none` (median of 50)",
            strata.none,
            d.map(|d| d.none),
        ),
        (
            "`run --rm` on the default bridge (median of 50)",
            strata.bridge,
            d.map(|d| d.bridge),
        ),
        (
            "the bridge's share: bridge − none",
            strata.bridge.saturating_sub(strata.none),
            d.map(|d| d.bridge.saturating_sub(d.none)),
        ),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            t.map(ms).unwrap_or_else(na),
            ms(s),
            t.map(|t| ratio(t.as_secs_f64(), s.as_secs_f64()))
                .unwrap_or_default()
        );
    }
    for (label, s, d) in [
        ("userland proxy", Some(&strata), docker.as_ref()),
        ("NAT only", strata_nat.as_ref(), docker_nat.as_ref()),
    ] {
        let Some(s) = s else { continue };
        for (path, p, direct) in &s.http {
            let theirs = d.and_then(|d| d.http.iter().find(|h| &h.0 == path));
            println!(
                "| GET /{path} through the published port ({label}), req/s | {} | {:.0} | {} |",
                theirs.map(|t| format!("{:.0}", t.1 .0)).unwrap_or_else(na),
                p.0,
                theirs.map(|t| ratio(p.0, t.1 .0)).unwrap_or_default()
            );
            println!(
                "| GET /{path} through the published port ({label}), MB/s | {} | {:.1} | {} |",
                theirs.map(|t| format!("{:.1}", t.1 .1)).unwrap_or_else(na),
                p.1,
                theirs.map(|t| ratio(p.1, t.1 .1)).unwrap_or_default()
            );
            println!(
                "| GET /{path} direct to the container's address ({label} run, for reference), req/s | {} | {:.0} | {} |",
                theirs.map(|t| format!("{:.0}", t.2 .0)).unwrap_or_else(na),
                direct.0,
                theirs.map(|t| ratio(direct.0, t.2 .0)).unwrap_or_default()
            );
        }
    }
    println!("\nratio: dockerd's time / Strata's, or Strata's rate / dockerd's (above 1: Strata is faster).");
}
