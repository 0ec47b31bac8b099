//! The daemon on zfs (`--storage-driver zfs`), driven by the docker CLI, with its data root on
//! a ZFS dataset, so the driver finds its parent dataset by itself: info with the pool's
//! status, load, create, cp, diff, commit, export, save, `--storage-opt size=` as a quota that
//! stops writes, run, a restart, and after rm/rmi not one dataset or snapshot left.
//!
//! Runs where ZFS is (the VM, through `in_the_vm`, with the pool of `tests/vm/with-zfs.sh`);
//! here it says SKIPPED.

mod common;

use common::zfs::{daemon_on_dataset, no_zfs, zfs};
use strata_graph::graphtest::vm;

/// Everything under `fs` (itself left out).
fn all_under(fs: &str) -> Vec<String> {
    zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", fs])
        .lines()
        .filter(|l| *l != fs)
        .map(str::to_string)
        .collect()
}

/// No bridge: the VM's kernel loads modules on demand only.
const FLAGS: &[&str] = &["--bridge", "none", "--iptables=false"];

#[test]
fn the_daemon_works_on_zfs() {
    if let Some(why) = no_zfs() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    assert!(common::docker_available(), "the docker CLI is missing");
    let (mut d, fs) = daemon_on_dataset("daemon", FLAGS);
    d.load_busybox();
    let info = d.ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(info.starts_with("zfs "), "{info}");
    for key in [
        "\"Zpool\"",
        "\"Zpool Health\",\"ONLINE\"",
        &format!("\"Parent Dataset\",\"{fs}\""),
        "Space Used By Parent",
        "Space Available",
        "Parent Quota",
        "Compression",
    ] {
        assert!(info.contains(key), "{key} missing: {info}");
    }
    let graph = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .GraphDriver}}",
        "test/busybox:1",
    ]);
    assert!(
        graph.contains("\"Name\":\"zfs\"") && graph.contains(&format!("\"Dataset\":\"{fs}/")),
        "{graph}"
    );

    common::cp_diff_commit_export_save(&d, "in a clone\n");

    // size= is the container dataset's quota.
    d.ok(&[
        "create",
        "--name",
        "small",
        "--storage-opt",
        "size=32M",
        "test/busybox:1",
        "sh",
    ]);
    let ds = d.ok(&[
        "container",
        "inspect",
        "-f",
        "{{.GraphDriver.Data.Dataset}}",
        "small",
    ]);
    assert_eq!(
        zfs(&["get", "-H", "-p", "-o", "value", "quota", ds.trim()]).trim(),
        (32u64 << 20).to_string()
    );

    if common::runc_available() {
        assert_eq!(
            d.ok(&[
                "run",
                "--rm",
                "--network",
                "none",
                "test/committed:1",
                "cat",
                "/note.txt"
            ]),
            "in a clone\n"
        );
        // Random data (the pool compresses): the quota stops it.
        let (ok, _, err) = d.try_docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--storage-opt",
            "size=32M",
            "test/busybox:1",
            "busybox",
            "dd",
            "if=/dev/urandom",
            "of=/big",
            "bs=1M",
            "count=64",
        ]);
        assert!(!ok && err.contains("quota"), "{err}");
    }

    // The layers outlive a restart.
    common::restart_keeps_c1(&mut d, "zfs", "in a clone\n");
    d.ok(&["rm", "c1", "small"]);
    d.ok(&["rmi", "test/committed:1", "test/busybox:1"]);
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
    // Not one layer dataset or snapshot is left.
    assert!(all_under(&fs).is_empty(), "{:?}", all_under(&fs));
    d.stop();
    drop(d);
    zfs(&["destroy", "-r", &fs]);
}

#[test]
fn in_the_vm() {
    if no_zfs().is_none() {
        println!("ZFS is here: the test ran directly");
        return;
    }
    assert!(!vm::inside(), "inside the VM without ZFS");
    if !vm::run_suite_with_zfs("in_the_vm", 1) {
        eprintln!("SKIPPED: no ZFS here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
