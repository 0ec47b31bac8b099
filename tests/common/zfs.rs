//! ZFS for the tests that run where it is (the VM, with `tests/vm/with-zfs.sh`'s pool): the
//! `zfs` command, and a daemon whose data root is a dataset of its own.

use super::Daemon;
use std::path::Path;
use std::process::Command;

/// Why ZFS tests cannot run here, if they cannot.
pub fn no_zfs() -> Option<String> {
    if !Path::new("/dev/zfs").exists() {
        return Some("this kernel has no ZFS; `in_the_vm` runs this test in the VM".into());
    }
    if std::env::var_os("STRATA_ZFS_POOL").is_none() {
        return Some("set STRATA_ZFS_POOL to a pool this test may use".into());
    }
    None
}

/// Runs `zfs ARGS`, which must succeed; returns its output.
pub fn zfs(args: &[&str]) -> String {
    let out = Command::new("zfs").args(args).output().expect("zfs");
    assert!(
        out.status.success(),
        "zfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon on the zfs driver whose data root is a new dataset `<pool>/<name><pid>`
/// (mounted there; the daemon's clean-up unmounts it), with `flags`. Returns the dataset too,
/// for the test to destroy at its end.
pub fn daemon_on_dataset(name: &str, flags: &[&str]) -> (Daemon, String) {
    let fs = format!(
        "{}/{name}{}",
        std::env::var("STRATA_ZFS_POOL").expect("STRATA_ZFS_POOL"),
        std::process::id()
    );
    zfs(&["create", "-o", "mountpoint=legacy", &fs]);
    let d = Daemon::start_prepared("zfs", flags, &[], |dir| {
        let root = dir.join("root");
        std::fs::create_dir_all(&root).expect("root");
        strata_graph::sys::mount(fs.as_bytes(), &root, b"zfs", 0, None).expect("mount");
    });
    (d, fs)
}
