//! What is particular to btrfs: snapshots and read-only layers, qgroup size limits (EDQUOT at
//! the limit), nested subvolumes removed with their layer, `btrfs.min_space`, and a data root
//! that is not on btrfs. On a loop-mounted btrfs made by the test.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use strata_btrfs::{ioctl, BtrfsDriver};
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
use strata_graph::{CreateOpts, Driver, StorageOpts};

/// A btrfs for one test (unmounted when dropped), or `None`, saying why, without mkfs.btrfs.
fn btrfs(dir: &Path) -> Option<LoopFs> {
    match LoopFs::new(dir, &["mkfs.btrfs", "-q"], 512 << 20, "") {
        Ok(fs) => Some(fs),
        Err(LoopFsError::NoTool(t)) => {
            eprintln!("SKIPPED: {t} is not installed (Debian package btrfs-progs)");
            None
        }
        Err(LoopFsError::Mount(why)) => panic!("mounting btrfs: {why}"),
    }
}

fn tempdir() -> tempfile::TempDir {
    let base = std::env::var_os("STRATA_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("strata-btrfs-")
        .tempdir_in(base)
        .expect("tempdir")
}

fn sized(size: &str) -> CreateOpts {
    CreateOpts {
        storage_opt: StorageOpts::parse(&[format!("size={size}")]).expect("opts"),
        ..Default::default()
    }
}

#[test]
fn layers_are_subvolumes_and_snapshots() {
    let d = tempdir();
    let Some(fs) = btrfs(d.path()) else { return };
    let drv = BtrfsDriver::new(&fs.mnt.join("home"), &StorageOpts::default()).expect("driver");
    drv.create("base", None, &CreateOpts::default())
        .expect("base");
    let tar = strata_graph::graphtest::tars::TarBuilder::new()
        .file("big", &vec![3u8; 4 << 20])
        .build();
    drv.apply_diff("base", None, &mut &tar[..]).expect("apply");
    let base = drv.get("base", "").expect("get");
    let fd = strata_graph::sys::open(&base, libc::O_RDONLY | libc::O_DIRECTORY, 0).expect("open");
    assert!(
        ioctl::is_readonly(fd.as_fd()).expect("flags"),
        "an image layer is read-only"
    );
    assert!(std::fs::write(base.join("x"), "no").is_err());
    drv.put("base").expect("put");
    drv.create_rw("c", Some("base"), &CreateOpts::default())
        .expect("container");
    let c = drv.get("c", "").expect("get");
    let cfd = strata_graph::sys::open(&c, libc::O_RDONLY | libc::O_DIRECTORY, 0).expect("open");
    assert!(
        !ioctl::is_readonly(cfd.as_fd()).expect("flags"),
        "a container layer is writable"
    );
    assert_eq!(
        std::fs::metadata(c.join("big")).expect("inherited").len(),
        4 << 20
    );
    let ids = (
        ioctl::subvol_id(fd.as_fd()).expect("id"),
        ioctl::subvol_id(cfd.as_fd()).expect("id"),
    );
    assert_ne!(ids.0, ids.1, "a snapshot is a subvolume of its own");
    let md = drv.metadata("c").expect("metadata");
    assert_eq!(md["Subvolume"], c.display().to_string());
    drv.put("c").expect("put");
    drop((fd, cfd));
    drv.remove("c").expect("remove");
    drv.remove("base").expect("remove");
    assert!(drv.list().expect("list").is_empty());
}

#[test]
fn size_limits_are_qgroups_and_nested_subvolumes_go_with_their_layer() {
    let d = tempdir();
    let Some(fs) = btrfs(d.path()) else { return };
    let home = fs.mnt.join("home");
    let drv = BtrfsDriver::new(
        &home,
        &StorageOpts::parse(&["btrfs.min_space=8M"]).expect("opts"),
    )
    .expect("driver");
    let e = drv
        .create_rw("tiny", None, &sized("4M"))
        .expect_err("below min_space");
    assert!(e.to_string().contains("min_space"), "{e}");
    drv.create_rw("q", None, &sized("16M")).expect("limited");
    assert!(drv
        .status()
        .iter()
        .any(|(k, v)| k == "Quotas" && v == "enabled"));
    let dir = drv.get("q", "").expect("get");
    let mut f = std::fs::File::create(dir.join("fill")).expect("create");
    let chunk = vec![0x5au8; 1 << 20];
    let mut written = 0usize;
    let err = loop {
        match f.write_all(&chunk).and_then(|_| f.sync_all()) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "the limit did not hold");
    };
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    assert!((8 << 20..=16 << 20).contains(&written), "{written}");
    drop(f);
    std::fs::remove_file(dir.join("fill")).expect("rm");
    strata_graph::fsutil::syncfs_path(&dir).expect("sync: the qgroup sees the space back");
    // A container makes a subvolume inside itself (btrfs subvolume create in a container).
    let qfd = strata_graph::sys::open(&dir, libc::O_RDONLY | libc::O_DIRECTORY, 0).expect("open");
    ioctl::subvol_create(qfd.as_fd(), "inner").expect("nested");
    let innerfd =
        strata_graph::sys::open(&dir.join("inner"), libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .expect("open");
    ioctl::subvol_create(innerfd.as_fd(), "deeper").expect("nested twice");
    drop((qfd, innerfd));
    drv.put("q").expect("put");
    drv.remove("q").expect("remove with nested subvolumes");
    assert!(!dir.exists());
    // The removed subvolume's space is back: a new limited layer can be filled again.
    drv.create_rw("q2", None, &sized("16M")).expect("again");
    drv.remove("q2").expect("remove");
}

#[test]
fn a_home_not_on_btrfs_is_refused_naming_its_filesystem() {
    let d = tempdir();
    let Some(_fs) = btrfs(d.path()) else { return };
    let e = BtrfsDriver::new(&d.path().join("elsewhere"), &StorageOpts::default())
        .err()
        .expect("not btrfs");
    let m = e.to_string();
    assert!(m.contains("not btrfs") && m.contains("elsewhere"), "{m}");
}
