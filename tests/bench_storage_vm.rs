//! `strata bench storage` on the drivers this kernel lacks (issue #12): devicemapper (its
//! loop-backed thin pool) and zfs (a pool on a file the harness makes), each with its own
//! backing store, in the VM (`in_the_vm`, with the zfs modules of `tests/vm/with-zfs.sh`).
//! Every workload has samples, and afterwards no pool, thin device or loop device of the
//! harness is left. Here it says SKIPPED.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use strata_graph::graphtest::vm;

fn missing() -> Option<String> {
    if !Path::new("/dev/zfs").exists() || !Path::new("/dev/mapper/control").exists() {
        return Some(
            "this kernel has neither ZFS nor device-mapper: `in_the_vm` runs the test in the VM"
                .into(),
        );
    }
    None
}

fn stdout(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn devicemapper_and_zfs_on_backing_stores_of_their_own() {
    if let Some(why) = missing() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = strata_graph::graphtest::scratch_dir("bench-vm-");
    let j = dir.path().join("r.json");
    let plots = dir.path().join("plots");
    let (dm_before, pools_before) = (
        stdout("dmsetup", &["ls"]),
        stdout("zpool", &["list", "-H", "-o", "name"]),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "bench",
            "storage",
            "--driver",
            "devicemapper",
            "--driver",
            "zfs",
        ])
        .args(["--runs", "1", "--size", "small", "--json"])
        .arg(&j)
        .arg("--plot")
        .arg(&plots)
        .output()
        .expect("strata bench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{text}");
    assert!(o.status.success(), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(&j).expect("json")).expect("JSON");
    let workloads: Vec<String> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(workloads.len(), 12);
    for (d, backing) in [
        ("devicemapper", "strata-bench-devicemapper-"),
        ("zfs", "a ZFS pool on a "),
    ] {
        let dr = report["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == d)
            .unwrap();
        assert_eq!(dr["state"], "measured", "{dr}");
        assert!(dr["backing"].as_str().unwrap().contains(backing), "{dr}");
        for w in &workloads {
            assert!(
                report["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["driver"] == d && s["workload"] == w.as_str()),
                "{d}: no samples of {w}"
            );
        }
    }
    // A plot per workload.
    assert!(plots.join("first-write.svg").is_file());
    assert_eq!(stdout("dmsetup", &["ls"]), dm_before, "thin devices left");
    assert_eq!(
        stdout("zpool", &["list", "-H", "-o", "name"]),
        pools_before,
        "a pool left"
    );
    let loops = stdout("losetup", &["-a"]);
    assert!(!loops.contains("strata-bench-"), "{loops}");
}

#[test]
fn in_the_vm() {
    if missing().is_none() {
        println!("ZFS and device-mapper are here: the test ran directly");
        return;
    }
    assert!(!vm::inside(), "inside the VM without ZFS or device-mapper");
    if !vm::run_suite_with_zfs("in_the_vm", 1) {
        eprintln!(
            "SKIPPED: no ZFS and device-mapper here and no VM runner (../shared/vm/run-in-vm.sh)"
        );
    }
}
