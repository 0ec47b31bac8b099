//! One scenario for drivers with a native diff (btrfs, zfs): a base layer of 20 directories of
//! 50 files, a container layer on it that changes a little of everything, and the check that
//! the driver's changes, diff and diff size equal the full tree comparison's.

use super::tars::TarBuilder;
use crate::driver::naive;
use crate::{CreateOpts, Driver};
use std::path::Path;

/// Directories the scenario changes (an entry added, removed or changed in them), which a
/// native diff must read.
pub const CHANGED_DIRS: &[&str] = &["", "d2", "d3", "d9", "d11", "d12", "n1/n2/n3"];

/// Directories the scenario leaves alone, which a native diff need not read.
pub const UNCHANGED_DIRS: &[&str] = &["d0", "d13", "d19", "d16/sub"];

/// The base layer's tar.
pub fn base_tar() -> Vec<u8> {
    let mut t = TarBuilder::new();
    for dir in 0..20 {
        t = t.dir(&format!("d{dir}"));
        for f in 0..50 {
            t = t.file(&format!("d{dir}/f{f}"), format!("{dir}/{f}").as_bytes());
        }
    }
    t = t
        .dir("gone")
        .file("gone/x", b"x")
        .dir("gone/sub")
        .file("gone/sub/y", b"y")
        .file("top", b"top");
    for d in ["d15", "d16", "d17"] {
        t = t
            .dir(&format!("{d}/sub"))
            .file(&format!("{d}/sub/in-{d}"), d.as_bytes());
    }
    t.build()
}

/// Sets an extended attribute (panics on failure).
pub fn xattr_set(p: &Path, name: &str, value: &[u8]) {
    crate::sys::lsetxattr(p.as_os_str().as_encoded_bytes(), name.as_bytes(), value)
        .unwrap_or_else(|e| panic!("setxattr {}: {e}", p.display()));
}

/// Creates `base` from [`base_tar`] and the container layer `c` on it.
pub fn create_layers(drv: &dyn Driver) {
    drv.create("base", None, &CreateOpts::default())
        .expect("base");
    drv.apply_diff("base", None, &mut &base_tar()[..])
        .expect("apply");
    drv.create_rw("c", Some("base"), &CreateOpts::default())
        .expect("rw");
}

/// Changes the container layer mounted at `root`: add, modify, chmod, delete a file, delete a
/// tree, rename, hard link, a new nested tree, a directory replaced by a file and back,
/// directories moved over others, an extended attribute only.
pub fn change(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(root.join("d1/new"), "new").expect("add");
    std::fs::write(root.join("d2/f3"), "modified").expect("modify");
    std::fs::set_permissions(root.join("d3/f4"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::remove_file(root.join("d4/f5")).expect("rm");
    std::fs::remove_dir_all(root.join("gone")).expect("rm -r");
    std::fs::rename(root.join("d5/f6"), root.join("d6/moved")).expect("mv");
    std::fs::hard_link(root.join("d7/f7"), root.join("d8/link")).expect("ln");
    std::fs::create_dir_all(root.join("n1/n2/n3")).expect("mkdir -p");
    std::fs::write(root.join("n1/n2/n3/deep"), "deep").expect("deep");
    std::fs::write(root.join("top"), "top changed").expect("top");
    std::fs::write(root.join("d9/f9"), "deep change").expect("d9");
    std::fs::remove_dir_all(root.join("d10")).expect("rm d10");
    std::fs::write(root.join("d10"), "now a file").expect("d10 file");
    std::fs::remove_file(root.join("d11/f0")).expect("rm f0");
    std::fs::create_dir(root.join("d11/f0")).expect("f0 dir");
    std::fs::rename(root.join("d15"), root.join("renamed")).expect("mv d15");
    std::fs::remove_dir_all(root.join("d16")).expect("rm d16");
    std::fs::rename(root.join("d17"), root.join("d16")).expect("mv d17 d16");
    xattr_set(&root.join("d12/f1"), "user.k", b"v");
}

/// Asserts that `c`'s changes, diff and diff size against `base` equal the full comparison's,
/// also after one more change; then removes both layers.
pub fn assert_native_matches_full(drv: &dyn Driver) {
    let native = drv.changes("c", Some("base")).expect("native");
    let full = naive::changes(drv, "c", Some("base")).expect("full");
    assert_eq!(native, full);
    assert!(native.len() >= 20, "{native:?}");
    // Asked again after more changes, it sees those too.
    let root = drv.get("c", "").expect("get");
    std::fs::write(root.join("d14/later"), "later").expect("later");
    drv.put("c").expect("put");
    assert_eq!(
        drv.changes("c", Some("base")).expect("again"),
        naive::changes(drv, "c", Some("base")).expect("full")
    );
    let mut a = Vec::new();
    drv.diff("c", Some("base"), &mut a).expect("diff");
    let mut b = Vec::new();
    naive::diff(drv, "c", Some("base"), &mut b).expect("diff");
    assert_eq!(a, b);
    assert_eq!(
        drv.diff_size("c", Some("base")).expect("size"),
        naive::diff_size(drv, "c", Some("base")).expect("size")
    );
    drv.remove("c").expect("remove");
    drv.remove("base").expect("remove");
}
