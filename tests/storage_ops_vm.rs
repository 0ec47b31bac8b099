//! `strata storage check`, `repair` and `migrate` on the drivers this kernel lacks:
//! devicemapper (loop-lvm) and zfs. A store made by the daemon through the docker CLI checks
//! clean; what a daemon killed with a layer mounted leaves (a mount, and for devicemapper an
//! active thin device) is found and removed; an orphaned dataset is found and destroyed; the
//! store migrates away and back with image IDs, `save` output and container contents kept, and
//! no device, dataset or loop device is left.
//!
//! Runs where device-mapper and ZFS are (the VM, through `in_the_vm`, with the pool of
//! `tests/vm/with-zfs.sh`); here each test says SKIPPED.

mod common;

use common::storage_cli::*;
use common::zfs::{daemon_on_dataset, no_zfs, zfs};
use common::Daemon;
use std::path::Path;
use std::process::Command;
use strata_graph::graphtest::vm;

/// The devicemapper options the daemon runs with, as `--storage-opt` values.
const DM_OPTS: &[&str] = &[
    "dm.loopdatasize=3G",
    "dm.loopmetadatasize=64M",
    "dm.basesize=512M",
    "dm.fs=ext4",
];

/// `--storage-opt k=v` for each option.
fn opt_flags(flag: &str, opts: &[&str]) -> Vec<String> {
    opts.iter()
        .flat_map(|o| [flag.to_string(), o.to_string()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Device-mapper devices whose names start with `strata-`.
fn strata_devices() -> Vec<String> {
    let out = Command::new("dmsetup")
        .args(["ls"])
        .output()
        .expect("dmsetup ls");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("strata-"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Loop devices whose backing file is under `dir`.
fn loops_under(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["-n", "-O", "NAME,BACK-FILE"])
        .output()
        .expect("losetup");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .map(str::to_string)
        .collect()
}

/// The cache id of container `c1`'s layer in a stopped daemon's data root.
fn c1_cache_id(d: &Daemon, id: &str) -> String {
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.root().join(format!("layers/mounts/{id}.json"))).expect("record"),
    )
    .expect("record JSON");
    rec["cache_id"].as_str().expect("cache id").to_string()
}

/// What a daemon killed while it had `cache_id` mounted leaves: the driver, opened on the
/// data root, mounts the layer and is never cleaned up.
fn leave_mounted(root: &Path, driver: &str, opts: &[&str], cache_id: &str) {
    let raw: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    let opts = strata_graph::StorageOpts::parse(&raw).expect("options");
    let drv = strata_drivers::open(driver, root, &opts).expect("open the driver");
    drv.get(cache_id, "").expect("mount the layer");
    std::mem::forget(drv);
}

/// The daemon's flags for `driver` (devicemapper's options only on devicemapper).
fn daemon_args(driver: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "--storage-driver",
        driver,
        "--bridge",
        "none",
        "--iptables=false",
    ]
    .map(String::from)
    .to_vec();
    if driver == "devicemapper" {
        v.extend(opt_flags("--storage-opt", DM_OPTS));
    }
    v
}

#[test]
fn check_repair_and_migrate_on_devicemapper() {
    if !Path::new("/dev/mapper/control").exists() {
        eprintln!(
            "SKIPPED: this kernel has no device-mapper; `in_the_vm` runs this test in the VM"
        );
        return;
    }
    assert!(common::docker_available(), "the docker CLI is missing");
    let devices = strata_devices();
    let mut d = Daemon::start_with("devicemapper", &strs(&daemon_args("devicemapper")[2..]));
    d.load_busybox();
    common::cp_diff_commit_export_save(&d, "on a thin device\n");
    let want = facts(&d);
    let c1 = d.ok(&["inspect", "-f", "{{.Id}}", "c1"]).trim().to_string();
    d.stop();
    let root = d.root();
    let opts = opt_flags("--storage-opt", DM_OPTS);

    // Clean, and the check leaves no device active.
    let (code, r) = check(&root, &[&["--full"][..], &strs(&opts)].concat());
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["driver"], "devicemapper");
    assert_eq!(strata_devices(), devices, "the check left devices active");

    // A daemon killed with c1's layer mounted: a mount and an active thin device.
    leave_mounted(&root, "devicemapper", DM_OPTS, &c1_cache_id(&d, &c1));
    let (code, r) = check(&root, &strs(&opts));
    assert_eq!(code, 1);
    let mut k = kinds(&r);
    k.sort();
    k.dedup();
    assert_eq!(k, ["stray-device", "stray-mount"], "{r:#}");
    let (code, rep) = repair(&root, &strs(&opts));
    assert_eq!(code, 0, "{rep:#}");
    assert!(kinds(&rep["after"]).is_empty(), "{rep:#}");
    assert_eq!(strata_devices(), devices, "repair left devices active");

    // To overlay2 and back: everything kept, then nothing of the old driver left.
    let from = opt_flags("--from-storage-opt", DM_OPTS);
    let out = migrate(&root, &[&["--to", "overlay2"][..], &strs(&from)].concat());
    assert!(out.contains("overlay2"), "{out}");
    assert_eq!(
        strata_devices(),
        devices,
        "the migration left devices active"
    );
    d.args = daemon_args("overlay2");
    d.restart();
    assert_eq!(facts(&d), want, "devicemapper → overlay2");
    d.stop();
    // The old driver's data goes only when asked; then the way back is open.
    migrate(&root, &["--remove-old"]);
    assert!(!root.join("devicemapper").exists());
    assert!(loops_under(&root).is_empty(), "{:?}", loops_under(&root));
    let back = opt_flags("--storage-opt", DM_OPTS);
    migrate(
        &root,
        &[&["--to", "devicemapper", "--remove-old"][..], &strs(&back)].concat(),
    );
    assert!(!root.join("overlay2").exists());
    d.args = daemon_args("devicemapper");
    d.restart();
    assert_eq!(facts(&d), want, "overlay2 → devicemapper");
    d.stop();
    let (code, r) = check(&root, &[&["--full"][..], &strs(&opts)].concat());
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(strata_devices(), devices, "devices left at the end");
    assert!(loops_under(&root).is_empty(), "{:?}", loops_under(&root));
}

/// The cache id of a base layer (one without a parent) in a stopped daemon's data root.
fn base_cache_id(root: &Path) -> String {
    for e in std::fs::read_dir(root.join("layers/sha256")).expect("layers") {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(e.expect("entry").path().join("layer.json")).expect("record"),
        )
        .expect("record JSON");
        if rec["parent"].is_null() {
            return rec["cache_id"].as_str().expect("cache id").to_string();
        }
    }
    panic!("no base layer in {}", root.display());
}

#[test]
fn check_repair_and_migrate_on_zfs() {
    if let Some(why) = no_zfs() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    assert!(common::docker_available(), "the docker CLI is missing");
    let (mut d, fs) = daemon_on_dataset("ops", &["--bridge", "none", "--iptables=false"]);
    d.load_busybox();
    common::cp_diff_commit_export_save(&d, "in a clone\n");
    let want = facts(&d);
    let c1 = d.ok(&["inspect", "-f", "{{.Id}}", "c1"]).trim().to_string();
    d.stop();
    let root = d.root();
    let datasets = || zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", &fs]);
    let before = datasets();

    let (code, r) = check(&root, &["--full"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["driver"], "zfs");

    // A killed daemon's mount, a dataset no layer owns, the snapshot of an interrupted
    // create and the dataset of an interrupted removal.
    leave_mounted(&root, "zfs", &[], &c1_cache_id(&d, &c1));
    let orphan = format!("{fs}/0123456789abcdef0123456789abcdef");
    zfs(&["create", "-o", "mountpoint=legacy", &orphan]);
    let snapshot = format!(
        "{fs}/{}@89abcdef0123456789abcdef01234567",
        base_cache_id(&root)
    );
    zfs(&["snapshot", &snapshot]);
    let removed = format!("{fs}/fedcba9876543210fedcba9876543210:removed");
    zfs(&["create", "-o", "mountpoint=legacy", &removed]);
    let (code, r) = check(&root, &[]);
    assert_eq!(code, 1);
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(
        k,
        [
            "orphan-driver-data",
            "stray-device",
            "stray-device",
            "stray-mount"
        ],
        "{r:#}"
    );
    assert!(
        r.to_string().contains(&snapshot) && r.to_string().contains(&removed),
        "{r:#}"
    );
    let (code, rep) = repair(&root, &[]);
    assert_eq!(code, 0, "{rep:#}");
    assert!(kinds(&rep["after"]).is_empty(), "{rep:#}");
    assert_eq!(
        datasets(),
        before,
        "the orphan dataset is destroyed, nothing else"
    );

    // To vfs and back.
    migrate(&root, &["--to", "vfs"]);
    with_driver(&mut d, "vfs");
    d.restart();
    assert_eq!(facts(&d), want, "zfs → vfs");
    d.stop();
    let listed = zfs(&[
        "list",
        "-H",
        "-o",
        "name,origin,clones",
        "-t",
        "all",
        "-r",
        &fs,
    ]);
    let said = migrate(&root, &["--remove-old"]);
    assert_eq!(
        zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", &fs]).trim(),
        fs,
        "the old driver's datasets are destroyed; before:\n{listed}\n{said}"
    );
    migrate(&root, &["--to", "zfs", "--remove-old"]);
    assert!(!root.join("vfs").exists());
    with_driver(&mut d, "zfs");
    d.restart();
    assert_eq!(facts(&d), want, "vfs → zfs");
    d.ok(&["rm", "c1"]);
    d.ok(&["rmi", "test/committed:1", "test/busybox:1"]);
    d.stop();
    let (code, r) = check(&root, &["--full"]);
    assert_eq!(code, 0, "{r:#}");
    drop(d);
    zfs(&["destroy", "-r", &fs]);
}

#[test]
fn in_the_vm() {
    let here = Path::new("/dev/mapper/control").exists() && Path::new("/dev/zfs").exists();
    if here {
        println!("device-mapper and ZFS are here: the tests ran directly");
        return;
    }
    assert!(!vm::inside(), "inside the VM without device-mapper or ZFS");
    if !vm::run_suite_with_zfs("in_the_vm", 2) {
        eprintln!(
            "SKIPPED: no device-mapper or ZFS here and no VM runner (../shared/vm/run-in-vm.sh)"
        );
    }
}
