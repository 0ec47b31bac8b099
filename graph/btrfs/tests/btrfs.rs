//! What is particular to btrfs: snapshots and read-only layers, qgroup size limits (EDQUOT at
//! the limit), nested subvolumes removed with their layer, `btrfs.min_space`, a data root
//! that is not on btrfs, and changes found from generation numbers equal to a full comparison.
//! On a loop-mounted btrfs made by the test.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
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
    strata_graph::graphtest::scratch_dir("strata-btrfs-")
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

#[test]
fn native_changes_equal_the_full_comparison() {
    use strata_graph::graphtest::native;
    let d = tempdir();
    let Some(fs) = btrfs(d.path()) else { return };
    let drv = BtrfsDriver::new(&fs.mnt.join("home"), &StorageOpts::default()).expect("driver");
    native::create_layers(&drv);
    assert!(drv.native_diff());
    let root = drv.get("c", "").expect("get");
    // The snapshot's creating transaction is known without a commit of its own.
    let fd = std::fs::File::open(&root).expect("open");
    let created = ioctl::created_transid(fd.as_fd()).expect("GET_SUBVOL_INFO");
    let base = std::fs::File::open(fs.mnt.join("home/subvolumes/base")).expect("open base");
    assert!(created > ioctl::created_transid(base.as_fd()).expect("base"));
    // Nothing changed yet.
    assert!(drv.changes("c", Some("base")).expect("changes").is_empty());
    native::change(&root);
    drv.put("c").expect("put");
    // Only the changed directories and their ancestors are read.
    let dirs = drv.changed_dirs("c", "base").expect("tracked");
    for d in native::CHANGED_DIRS {
        assert!(dirs.contains(d.as_bytes()), "{d} missing from {dirs:?}");
    }
    for d in native::UNCHANGED_DIRS {
        assert!(!dirs.contains(d.as_bytes()), "{d} read although unchanged");
    }
    native::assert_native_matches_full(&drv);
}

/// The subvolumes btrfs itself lists under `mnt` (`btrfs subvolume list`).
fn subvolume_list(mnt: &Path) -> String {
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(mnt)
        .output()
        .expect("btrfs subvolume list (btrfs-progs)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn subvolumes_of_interrupted_creates_are_removed_when_the_store_reopens() {
    use strata_graph::{LayerStore, RegisterOpts};
    let d = tempdir();
    let Some(fs) = btrfs(d.path()) else { return };
    let home = fs.mnt.join("home");
    let open = || -> std::sync::Arc<dyn Driver> {
        std::sync::Arc::new(BtrfsDriver::new(&home, &StorageOpts::default()).expect("driver"))
    };
    let kept = {
        let (store, _) = LayerStore::open(&fs.mnt.join("layers"), open()).expect("store");
        store
            .register(
                None,
                &strata_graph::graphtest::tars::TarBuilder::new()
                    .file("kept", b"k")
                    .build()[..],
                RegisterOpts::default(),
            )
            .expect("register")
    };
    // What a daemon killed mid-create leaves, with no record owning it: an image layer made
    // read-only after its apply, a writable snapshot of it with a size limit and a nested
    // subvolume inside, and a bare subvolume.
    let drv = open();
    drv.create("orphan-image", Some(&kept.cache_id), &CreateOpts::default())
        .expect("create");
    drv.apply_diff(
        "orphan-image",
        Some(&kept.cache_id),
        &mut &strata_graph::graphtest::tars::TarBuilder::new()
            .file("half", b"h")
            .build()[..],
    )
    .expect("apply");
    drv.release_apply_target("orphan-image").expect("read-only");
    drv.create_rw("orphan-rw", Some("orphan-image"), &sized("32M"))
        .expect("rw");
    let rw = drv.get("orphan-rw", "").expect("get");
    let fd = std::fs::File::open(&rw).expect("open");
    ioctl::subvol_create(fd.as_fd(), "nested").expect("nested");
    drop(fd);
    drv.put("orphan-rw").expect("put");
    let subs = std::fs::File::open(home.join("subvolumes")).expect("open");
    ioctl::subvol_create(subs.as_fd(), "orphan-bare").expect("bare");
    drop((subs, drv));
    // A tracking record whose layer's removal was cut short.
    std::fs::write(home.join("origins/gone"), "orphan-image 1\n").expect("stale record");
    let listed = subvolume_list(&fs.mnt);
    for name in [
        "orphan-image",
        "orphan-rw",
        "orphan-rw/nested",
        "orphan-bare",
    ] {
        assert!(listed.contains(name), "{name} not made: {listed}");
    }
    // The daemon restarts.
    let (store, report) = LayerStore::open(&fs.mnt.join("layers"), open()).expect("reopen");
    let mut removed = report.orphans_removed.clone();
    removed.sort();
    assert_eq!(removed, ["orphan-bare", "orphan-image", "orphan-rw"]);
    let listed = subvolume_list(&fs.mnt);
    assert!(!listed.contains("orphan"), "left behind: {listed}");
    assert!(listed.contains(&kept.cache_id), "{listed}");
    assert!(!home.join("origins/orphan-rw").exists());
    assert!(!home.join("origins/gone").exists());
    store
        .verify(&kept.chain_id)
        .expect("the kept layer is whole");
    store.release(&kept.chain_id).expect("release");
    assert!(!subvolume_list(&fs.mnt).contains("subvolumes/"));
}
