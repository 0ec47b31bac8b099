//! Health checks through the real docker CLI (issue #5): `--health-cmd` and the image's
//! `HEALTHCHECK` (here from `commit --change`), the states dockerd shows (starting, healthy,
//! unhealthy after the retries, unhealthy once stopped; checked against dockerd 20.10), the
//! probe timeout, `ps` status and filter, `--no-healthcheck`, events, bad values.

mod common;
use common::*;
use std::time::{Duration, Instant};

const IMG: &str = "test/busybox:1";

fn health(d: &Daemon, name: &str) -> serde_json::Value {
    let out = d.ok(&["inspect", "-f", "{{json .State.Health}}", name]);
    serde_json::from_str(out.trim()).expect("health JSON")
}

/// Waits up to `secs` for the container's health status to become `want`.
fn wait_status(d: &Daemon, name: &str, want: &str, secs: u64) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let h = health(d, name);
        if h["Status"] == want || Instant::now() > end {
            return h;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_checks() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    // Healthy: starting first, then healthy with the probe's output logged.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "echo fine",
        "--health-interval",
        "300ms",
        IMG,
        "sleep",
        "60",
    ]);
    let h = health(&d, "good");
    assert_eq!(h["Status"], "starting", "{h}");
    let ps = d.ok(&["ps", "--filter", "name=good", "--format", "{{.Status}}"]);
    assert!(ps.contains("(health: starting)"), "{ps}");
    let h = wait_status(&d, "good", "healthy", 10);
    assert_eq!(h["Status"], "healthy", "{h}");
    assert_eq!(h["FailingStreak"], 0);
    assert_eq!(h["Log"][0]["ExitCode"], 0);
    assert_eq!(h["Log"][0]["Output"], "fine\n");
    let ps = d.ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("good Up") && ps.contains("(healthy)"),
        "{ps}"
    );
    // Unhealthy after 2 failures in a row; a probe that outlives its timeout fails with
    // dockerd's text.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "200ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "2",
        IMG,
        "sleep",
        "60",
    ]);
    let h = wait_status(&d, "slow", "unhealthy", 15);
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(h["FailingStreak"].as_i64() >= Some(2), "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    assert_eq!(
        h["Log"][0]["Output"],
        "Health check exceeded timeout (300ms)"
    );
    // Failures inside the start period do not count.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "booting",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "--health-start-period",
        "30s",
        IMG,
        "sleep",
        "60",
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    let h = health(&d, "booting");
    assert_eq!(h["Status"], "starting", "{h}");
    assert!(
        h["Log"].as_array().is_some_and(|l| !l.is_empty()),
        "probes ran: {h}"
    );
    // The image's HEALTHCHECK, and --no-healthcheck turning it off.
    d.ok(&["run", "--name", "base", IMG, "true"]);
    d.ok(&[
        "commit",
        "--change",
        "HEALTHCHECK --interval=200ms --retries=1 CMD [\"sh\", \"-c\", \"exit 3\"]",
        "base",
        "test/hc:1",
    ]);
    let cfg = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck.Test}}",
        "test/hc:1",
    ]);
    assert_eq!(cfg.trim(), r#"["CMD","sh","-c","exit 3"]"#);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "fromimage",
        "test/hc:1",
        "sleep",
        "60",
    ]);
    let h = wait_status(&d, "fromimage", "unhealthy", 10);
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert_eq!(h["Log"][0]["ExitCode"], 3);
    d.ok(&[
        "run",
        "-d",
        "--name",
        "nocheck",
        "--no-healthcheck",
        "test/hc:1",
        "sleep",
        "60",
    ]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .State.Health}}", "nocheck"])
            .trim(),
        "null"
    );
    // Once stopped, dockerd shows unhealthy; events report the changes.
    d.ok(&["kill", "good"]);
    d.ok(&["wait", "good"]);
    assert_eq!(health(&d, "good")["Status"], "unhealthy");
    let ev = d.events_so_far("container=good", "{{.Action}}");
    assert!(ev.lines().any(|l| l == "health_status: healthy"), "{ev}");
    assert!(
        ev.lines()
            .any(|l| l.starts_with("exec_start: /bin/sh -c echo fine")),
        "{ev}"
    );
    // Bad values are the create's 400, with dockerd's text.
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--health-cmd",
        "true",
        "--health-interval",
        "10us",
        IMG,
        "true",
    ]);
    assert!(
        !ok && err.contains("Interval in Healthcheck cannot be less than 1ms"),
        "{err}"
    );
    // (the docker CLI refuses a negative retry count itself; the strata CLI leaves it to the
    // daemon)
    let o = d.strata(&[
        "run",
        "--rm",
        "--health-cmd",
        "true",
        "--health-retries=-1",
        IMG,
        "true",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Retries in Healthcheck cannot be negative"),
        "{err}"
    );
    // Probes leave no exec records behind in the container's state directory.
    let id = d.ok(&["inspect", "-f", "{{.Id}}", "slow"]);
    let dir = d
        .root()
        .parent()
        .expect("dir")
        .join("exec/containers")
        .join(id.trim());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(
        leftovers.is_empty() || leftovers.len() <= 3,
        "{leftovers:?}"
    );
    d.ok(&[
        "rm",
        "-f",
        "slow",
        "booting",
        "fromimage",
        "nocheck",
        "good",
        "base",
    ]);
}

#[test]
fn health_survives_a_live_restore() {
    if !can_run_containers() {
        return;
    }
    let mut d = Daemon::start_with("overlay2", &["--live-restore"]);
    d.load_busybox();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "kept",
        "--health-cmd",
        "true",
        "--health-interval",
        "3s",
        IMG,
        "sleep",
        "60",
    ]);
    let h = wait_status(&d, "kept", "healthy", 10);
    assert_eq!(h["Status"], "healthy", "{h}");
    // A restarted daemon keeps the last result (as dockerd) instead of starting over; the
    // next probe comes an interval later.
    d.restart();
    let h = health(&d, "kept");
    assert_eq!(h["Status"], "healthy", "{h}");
    assert!(h["Log"].as_array().is_some_and(|l| !l.is_empty()), "{h}");
    d.ok(&["rm", "-f", "kept"]);
}
