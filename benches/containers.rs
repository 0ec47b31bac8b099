//! Containers against dockerd 20.10, in the same run (issue #5): `run --rm IMG /bin/true`
//! latency (median of 100), `create`+`start`+`wait`+`rm` throughput with 1 and 4 clients,
//! and `exec` latency (median of 100) in a running container.
//!
//! `cargo bench --bench containers` (root, runc; dockerd from Debian's `docker.io` when
//! installed, else Strata alone). Both engines get the same busybox image, a data root of
//! their own on a fresh loop-mounted ext4, and `NetworkMode: none` (both daemons run with
//! `--bridge=none --iptables=false`). The calls are the ones the docker CLI
//! makes: `run --rm` is create, wait (`condition=removed`, sent before the start), start,
//! and the wait's answer. Results print as a Markdown table for benches/README.md.

#[path = "engines.rs"]
mod engines;
use engines::{
    connect, json_request, median, send_wait, start, start_dockerd, start_strata, Engine,
};

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const IMAGE: &str = "bench/busybox:1";
const RUNS: usize = 100;

fn create(e: &Engine, cmd: &[&str], auto_remove: bool) -> String {
    engines::create_with(
        e,
        &serde_json::json!({
            "Image": IMAGE, "Cmd": cmd,
            "HostConfig": { "NetworkMode": "none", "AutoRemove": auto_remove },
        }),
    )
}

/// `docker run --rm IMG /bin/true`.
fn run_rm(e: &Engine) -> Duration {
    engines::run_rm(e, IMAGE, "none")
}

/// create + start + wait + rm.
fn cycle(e: &Engine) {
    let id = create(e, &["/bin/true"], false);
    start(e, &id);
    engines::wait_answered(e, send_wait(e, &id, "not-running"));
    let (status, b) = json_request(e, "DELETE", &format!("/containers/{id}"), "");
    assert_eq!(
        status,
        204,
        "{}: rm: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
}

/// Containers per second through `cycle` with `clients` in parallel, `each` cycles per client.
fn throughput(e: &Engine, clients: usize, each: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                for _ in 0..each {
                    cycle(e);
                }
            });
        }
    });
    (clients * each) as f64 / t.elapsed().as_secs_f64()
}

/// `docker exec CTR /bin/true`: exec create, then an attached start read to its end.
fn exec(e: &Engine, ctr: &str) -> Duration {
    let t = Instant::now();
    let body = r#"{"Cmd":["/bin/true"],"AttachStdout":true,"AttachStderr":true}"#;
    let (status, b) = json_request(e, "POST", &format!("/containers/{ctr}/exec"), body);
    assert_eq!(
        status,
        201,
        "{}: exec create: {}",
        e.name,
        String::from_utf8_lossy(&b)
    );
    let eid = engines::id_of(&b);
    let mut c = connect(e, false);
    let start = r#"{"Detach":false,"Tty":false}"#;
    write!(
        c,
        "POST /exec/{eid}/start HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{start}",
        start.len()
    )
    .expect("exec start");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("exec stream");
    assert!(
        rest.starts_with(b"HTTP/1.1 101") || rest.starts_with(b"HTTP/1.1 200"),
        "{}: exec start: {}",
        e.name,
        String::from_utf8_lossy(&rest)
    );
    t.elapsed()
}

struct Figures {
    run_rm: Duration,
    one: f64,
    four: f64,
    exec: Duration,
}

fn measure(e: &Engine, image: &Path) -> Figures {
    engines::load_image(e, image);
    // Warm up: first runs pay for caches on both sides.
    for _ in 0..3 {
        run_rm(e);
    }
    let runs: Vec<Duration> = (0..RUNS).map(|_| run_rm(e)).collect();
    let run_rm = median(runs);
    eprintln!(
        "{}: run --rm median {:.1} ms",
        e.name,
        run_rm.as_secs_f64() * 1e3
    );
    let one = throughput(e, 1, 40);
    let four = throughput(e, 4, 20);
    eprintln!(
        "{}: create+start+wait+rm {one:.1}/s (1 client), {four:.1}/s (4 clients)",
        e.name
    );
    let ctr = create(e, &["sleep", "1000"], false);
    start(e, &ctr);
    for _ in 0..3 {
        exec(e, &ctr);
    }
    let exec_lat = median((0..RUNS).map(|_| exec(e, &ctr)).collect());
    eprintln!(
        "{}: exec median {:.1} ms",
        e.name,
        exec_lat.as_secs_f64() * 1e3
    );
    let _ = json_request(e, "DELETE", &format!("/containers/{ctr}?force=1"), "");
    Figures {
        run_rm,
        one,
        four,
        exec: exec_lat,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("containers: bench");
        return;
    }
    if !engines::can_run_containers("container") {
        return;
    }
    let dir = engines::scratch_dir("containers");
    let image = engines::busybox_image(dir.path(), IMAGE, &[]);
    let fresh_fs = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        strata_graph::graphtest::loopfs::LoopFs::new(&d, &["mkfs.ext4", "-q", "-F"], 2 << 30, "")
            .unwrap_or_else(|e| panic!("loop ext4: {e:?}"))
    };
    let strata = {
        let fs = fresh_fs("strata");
        let e = start_strata(&fs.mnt);
        let f = measure(&e, &image);
        drop(e);
        f
    };
    let docker = {
        let fs = fresh_fs("docker");
        start_dockerd(&fs.mnt).map(|e| {
            let f = measure(&e, &image);
            drop(e);
            f
        })
    };
    let d = docker.as_ref();
    let cell = |v: Option<String>| v.unwrap_or_else(|| "not installed".into());
    let ms = |x: Duration| format!("{:.1} ms", x.as_secs_f64() * 1e3);
    println!("\n| what | dockerd 20.10 | Strata | ratio |\n|---|---|---|---|");
    for (what, s, t) in [
        (
            "`run --rm IMG /bin/true` latency (median of 100)",
            strata.run_rm,
            d.map(|d| d.run_rm),
        ),
        (
            "`exec CTR /bin/true` latency (median of 100)",
            strata.exec,
            d.map(|d| d.exec),
        ),
    ] {
        println!(
            "| {what} | {} | {} | {} |",
            cell(t.map(ms)),
            ms(s),
            cell(t.map(|t| format!("{:.2}× the time", s.as_secs_f64() / t.as_secs_f64())))
        );
    }
    for (what, s, t) in [
        (
            "`create`+`start`+`wait`+`rm`, 1 client",
            strata.one,
            d.map(|d| d.one),
        ),
        (
            "`create`+`start`+`wait`+`rm`, 4 clients",
            strata.four,
            d.map(|d| d.four),
        ),
    ] {
        println!(
            "| {what} | {} | {s:.1} containers/s | {} |",
            cell(t.map(|t| format!("{t:.1} containers/s"))),
            cell(t.map(|t| format!("{:.2}×", s / t)))
        );
    }
}
