//! What the zfs test binaries share: whether ZFS is here, a dataset per test home under the
//! pool the VM wrapper made (`tests/vm/with-zfs.sh`, `STRATA_ZFS_POOL`), the `zfs` command
//! to check the driver from outside, and the hop into the VM.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;
use strata_graph::graphtest::vm;

/// Why the zfs tests cannot run here, if they cannot.
pub fn no_zfs() -> Option<String> {
    if let Some(why) = strata_zfs::unavailable() {
        return Some(format!("{why}; `in_the_vm` runs these tests in the VM"));
    }
    if std::env::var_os("STRATA_ZFS_POOL").is_none() {
        return Some("set STRATA_ZFS_POOL to a pool these tests may use".into());
    }
    None
}

/// The pool the tests may use.
pub fn pool() -> String {
    std::env::var("STRATA_ZFS_POOL").expect("STRATA_ZFS_POOL")
}

/// Runs `zfs args`; its stdout, or stderr as the error.
pub fn try_zfs(args: &[&str]) -> Result<String, String> {
    let out = Command::new("zfs").args(args).output().expect("zfs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `zfs args`, which must succeed.
pub fn zfs(args: &[&str]) -> String {
    try_zfs(args).unwrap_or_else(|e| panic!("zfs {args:?}: {e}"))
}

/// A dataset of its own for the driver at `home` (made on first use), named from the path.
pub fn dataset_for(home: &Path) -> String {
    let mut h = DefaultHasher::new();
    home.hash(&mut h);
    let fs = format!("{}/t{:016x}", pool(), h.finish());
    if try_zfs(&["list", "-H", "-o", "name", &fs]).is_err() {
        zfs(&["create", "-p", "-o", "mountpoint=none", &fs]);
    }
    fs
}

/// Every dataset and snapshot under `fs`, itself left out.
pub fn all_under(fs: &str) -> Vec<String> {
    let text = zfs(&["list", "-H", "-p", "-o", "name", "-t", "all", "-r", fs]);
    text.lines()
        .filter(|l| *l != fs)
        .map(str::to_string)
        .collect()
}

/// The body of each binary's `in_the_vm` test: on a host without ZFS, runs the binary's other
/// tests in the VM with the OpenZFS modules loaded and a pool made (at least `min_passed`).
pub fn in_the_vm(min_passed: usize) {
    let Some(why) = no_zfs() else {
        println!("ZFS is here: the tests ran directly");
        return;
    };
    if vm::inside() {
        panic!("inside the VM without ZFS: {why}");
    }
    if !vm::run_suite_with_zfs("in_the_vm", min_passed) {
        eprintln!("SKIPPED: no ZFS here and no VM runner (../shared/vm/run-in-vm.sh)");
    }
}
