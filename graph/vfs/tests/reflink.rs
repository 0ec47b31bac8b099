//! vfs shares file data between a layer and its copy with reflinks where the filesystem can.

use std::process::Command;
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
use strata_graph::{CreateOpts, Driver, StorageOpts};

#[test]
fn copies_share_extents_on_btrfs() {
    let dir = strata_graph::graphtest::scratch_dir("strata-vfs-");
    let fs = match LoopFs::new(dir.path(), &["mkfs.btrfs", "-q"], 256 << 20, "") {
        Ok(fs) => fs,
        Err(LoopFsError::NoTool(t)) => {
            eprintln!("SKIPPED: {t} is not installed (Debian package btrfs-progs)");
            return;
        }
        Err(LoopFsError::Mount(why)) => panic!("mounting btrfs: {why}"),
    };
    let mnt = fs.mnt.clone();
    let d = strata_vfs::VfsDriver::new(&mnt.join("vfs"), &StorageOpts::default()).expect("vfs");
    d.create("base", None, &CreateOpts::default())
        .expect("base");
    let tar = strata_graph::graphtest::tars::TarBuilder::new()
        .file("big", &vec![7u8; 8 << 20])
        .build();
    d.apply_diff("base", None, &mut &tar[..]).expect("apply");
    let fs_used = || {
        let st = strata_graph::sys::statvfs(&mnt).expect("statvfs");
        (st.f_blocks - st.f_bfree) * st.f_frsize
    };
    strata_graph::fsutil::syncfs_path(&mnt).expect("sync");
    let before = fs_used();
    for i in 0..4 {
        d.create(&format!("child{i}"), Some("base"), &CreateOpts::default())
            .expect("child");
    }
    strata_graph::fsutil::syncfs_path(&mnt).expect("sync");
    let grown = fs_used().saturating_sub(before);
    let child = d.get("child3", "").expect("get");
    assert_eq!(
        std::fs::read(child.join("big")).expect("read"),
        vec![7u8; 8 << 20]
    );
    d.put("child3").expect("put");
    let filefrag = Command::new("filefrag")
        .arg("-v")
        .arg(mnt.join("vfs/dir/child3/big"))
        .output();
    if let Ok(o) = filefrag {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("shared"),
            "extents of the copy are shared: {text}"
        );
    }
    assert!(
        grown < 4 << 20,
        "four 8 MiB copies took {grown} bytes: they share their data"
    );
}
