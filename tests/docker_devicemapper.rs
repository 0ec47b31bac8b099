//! The daemon on devicemapper (`--storage-driver devicemapper`, loop-lvm), driven by the
//! docker CLI: info with the pool's status and the loop-lvm warning, load, create, cp, diff,
//! commit, export, save, `--storage-opt size=`, run, a restart, and a shutdown that leaves no
//! device behind.
//!
//! Runs where device-mapper is (the VM, through `in_the_vm`); here it says SKIPPED.

mod common;

use common::Daemon;
use std::path::Path;
use std::process::Command;
use strata_graph::graphtest::vm;

fn no_dm() -> Option<String> {
    (!Path::new("/dev/mapper/control").exists()).then(|| {
        "this kernel has no device-mapper; `in_the_vm` runs this test in the VM".to_string()
    })
}

/// Small loop files and base, no bridge (the VM's kernel loads modules on demand only).
const FLAGS: &[&str] = &[
    "--storage-opt",
    "dm.loopdatasize=3G",
    "--storage-opt",
    "dm.loopmetadatasize=64M",
    "--storage-opt",
    "dm.basesize=512M",
    "--storage-opt",
    "dm.fs=ext4",
    "--bridge",
    "none",
    "--iptables=false",
];

/// Device-mapper devices whose names start with `strata-`.
fn strata_devices() -> Vec<String> {
    let out = Command::new("dmsetup")
        .args(["ls"])
        .output()
        .expect("dmsetup ls");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("strata-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_daemon_works_on_devicemapper() {
    if let Some(why) = no_dm() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    assert!(common::docker_available(), "the docker CLI is missing");
    let before = strata_devices();
    let mut d = Daemon::start_with("devicemapper", FLAGS);
    d.load_busybox();
    let info = d.ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(info.starts_with("devicemapper "), "{info}");
    for key in [
        "Pool Name",
        "Data loop file",
        "Base Device Size",
        "Pool Mode",
    ] {
        assert!(info.contains(key), "{key} missing: {info}");
    }
    let warnings = d.ok(&["info", "--format", "{{json .Warnings}}"]);
    assert!(warnings.contains("loopback devices"), "{warnings}");
    let graph = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .GraphDriver}}",
        "test/busybox:1",
    ]);
    assert!(
        graph.contains("\"Name\":\"devicemapper\"")
            && graph.contains("DeviceId")
            && graph.contains("DeviceName"),
        "{graph}"
    );

    common::cp_diff_commit_export_save(&d, "on a thin device\n");

    // size= grows one container's device beyond the base; smaller is refused.
    d.ok(&[
        "create",
        "--name",
        "big",
        "--storage-opt",
        "size=1G",
        "test/busybox:1",
        "sh",
    ]);
    let size = d.ok(&[
        "container",
        "inspect",
        "-f",
        "{{.GraphDriver.Data.DeviceSize}}",
        "big",
    ]);
    assert_eq!(size.trim(), (1u64 << 30).to_string());
    let (ok, _, err) = d.try_docker(&[
        "create",
        "--storage-opt",
        "size=100M",
        "test/busybox:1",
        "sh",
    ]);
    assert!(!ok && err.contains("base device"), "{err}");

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
            "on a thin device\n"
        );
        // The container's root is the thin device's ext4, of dm.basesize.
        let df = d.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "test/busybox:1",
            "busybox",
            "df",
            "-k",
            "/",
        ]);
        let kb: u64 = df
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("df: {df}"));
        assert!((400 << 10..=512 << 10).contains(&kb), "{df}");
    }

    // The layers outlive a restart.
    common::restart_keeps_c1(&mut d, "devicemapper", "on a thin device\n");
    d.ok(&["rm", "c1", "big"]);
    d.ok(&["rmi", "test/committed:1", "test/busybox:1"]);
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
    // Shutdown deactivates every device it activated, the pool too.
    d.stop();
    assert_eq!(strata_devices(), before, "devices left after shutdown");
}

#[test]
fn in_the_vm() {
    if no_dm().is_none() {
        println!("device-mapper is here: the test ran directly");
        return;
    }
    assert!(!vm::inside(), "inside the VM without device-mapper");
    if vm::run_suite("in_the_vm", 1, &[]).is_none() {
        eprintln!("SKIPPED: no device-mapper here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
