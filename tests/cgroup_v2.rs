//! Containers on a pure cgroup v2 host (issue #5: "work on this host's hybrid layout and on
//! pure v2"). This host is hybrid, so the test re-runs itself in the VM of `shared/vm/`
//! (Debian's 6.1 kernel), where it mounts only the unified hierarchy at /sys/fs/cgroup; then
//! limits, `update`, `stats`, pause (cgroup.freeze), the OOM kill record and the private
//! cgroup namespace dockerd gives on v2 are checked through the docker CLI.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata_graph::graphtest::vm;

const IMG: &str = "test/busybox:1";

fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// In the VM: the unified hierarchy alone at /sys/fs/cgroup.
fn mount_v2_in_vm() {
    if pure_v2() {
        return;
    }
    let ok = Command::new("mount")
        .args(["-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"])
        .status()
        .expect("mount")
        .success();
    assert!(ok && pure_v2(), "mounting cgroup2 in the VM");
}

#[test]
fn containers_on_pure_cgroup_v2() {
    if !can_run_containers() {
        return;
    }
    let in_vm = vm::inside();
    if !in_vm && !pure_v2() {
        if !vm::rerun("containers_on_pure_cgroup_v2", &[("VM_TIMEOUT", "900")]) {
            eprintln!(
                "SKIPPED: this host is not pure cgroup v2 and the VM runner is not available"
            );
        }
        return;
    }
    if in_vm {
        mount_v2_in_vm();
    }
    // The VM's kernel has no bridge driver: containers get only lo, as with dockerd -b none.
    let d = Daemon::start_with("overlay2", &["--bridge", "none"]);
    d.load_busybox();
    assert_eq!(
        d.ok(&["info", "--format", "{{.CgroupVersion}}"]).trim(),
        "2"
    );
    // Limits land in the container's own v2 cgroup; inside, its cgroup is the root of a
    // private cgroup namespace (dockerd's default on v2).
    let id = d.ok(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        IMG,
        "sleep",
        "60",
    ]);
    let id = id.trim();
    let inside = d.ok(&["exec", id, "cat", "/proc/self/cgroup"]);
    assert_eq!(inside, "0::/\n");
    let host = PathBuf::from(format!("/sys/fs/cgroup/strata/{id}"));
    let read = |f: &str| {
        std::fs::read_to_string(host.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory.max"), "67108864");
    assert_eq!(read("pids.max"), "50");
    assert_eq!(read("cpu.max"), "50000 100000");
    // update, stats, pause.
    d.ok(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "-1",
        "--pids-limit",
        "60",
        id,
    ]);
    assert_eq!(read("memory.max"), "100663296");
    assert_eq!(read("pids.max"), "60");
    let stats = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}} {{.PIDs}}",
        id,
    ]);
    assert!(
        stats.contains("96MiB") && stats.trim().ends_with(" 1"),
        "{stats}"
    );
    d.ok(&["pause", id]);
    assert_eq!(read("cgroup.freeze"), "1");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", id]).trim(),
        "paused"
    );
    d.ok(&["unpause", id]);
    d.ok(&["rm", "-f", id]);
    assert!(!host.exists(), "the cgroup goes with the container");
    // An OOM kill is recorded from memory.events.
    let (ok, _, _) = d.try_docker(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        IMG,
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert!(!ok);
    let st = d.ok(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hog",
    ]);
    assert_eq!(st.trim(), "true 137");
    d.ok(&["rm", "hog"]);
    // --cgroupns host shows the whole hierarchy.
    let out = d.ok(&[
        "run",
        "--rm",
        "--cgroupns",
        "host",
        IMG,
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(out.contains("0::/strata/"), "{out}");
}
