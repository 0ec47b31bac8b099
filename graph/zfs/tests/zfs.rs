//! What is particular to zfs, checked from outside with the `zfs` command: datasets, clones
//! and shared snapshots; quotas for `size=` (EDQUOT at the limit); nothing leaks after 100
//! create/remove cycles; a removed parent waits for its clones; interrupted creates are
//! finished at start; the default dataset is the data root's; status; native changes equal
//! the full comparison.
//!
//! This kernel has no ZFS: here every test says SKIPPED and `in_the_vm` runs them in the VM
//! (see `conformance.rs`).

mod support;

use std::io::Write;
use std::path::Path;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::{CreateOpts, Driver, DriverError, StorageOpts};
use strata_zfs::ZfsDriver;
use support::{all_under, zfs};

macro_rules! need_zfs {
    () => {
        if let Some(why) = support::no_zfs() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

fn tempdir() -> tempfile::TempDir {
    strata_graph::graphtest::scratch_dir("strata-zfs-")
}

/// A driver on a dataset of its own; the dataset is destroyed when the guard drops.
struct TestDriver {
    drv: ZfsDriver,
    fs: String,
    _dir: tempfile::TempDir,
}

impl Drop for TestDriver {
    fn drop(&mut self) {
        let _ = self.drv.cleanup();
        let _ = support::try_zfs(&["destroy", "-r", "-f", &self.fs]);
    }
}

fn driver() -> TestDriver {
    let dir = tempdir();
    let home = dir.path().join("home");
    let fs = support::dataset_for(&home);
    let opts = StorageOpts::parse(&[format!("zfs.fsname={fs}")]).expect("opts");
    TestDriver {
        drv: ZfsDriver::new(&home, &opts).expect("driver"),
        fs,
        _dir: dir,
    }
}

fn layer(d: &ZfsDriver, id: &str, parent: Option<&str>, files: &[(&str, &str)]) {
    d.create(id, parent, &CreateOpts::default())
        .expect("create");
    let mut t = TarBuilder::new();
    for (p, c) in files {
        t = t.file(p, c.as_bytes());
    }
    d.apply_diff(id, parent, &mut &t.build()[..])
        .expect("apply");
}

fn sized(size: &str) -> CreateOpts {
    CreateOpts {
        storage_opt: StorageOpts::parse(&[format!("size={size}")]).expect("opts"),
        ..Default::default()
    }
}

fn prop(ds: &str, p: &str) -> String {
    zfs(&["get", "-H", "-p", "-o", "value", p, ds])
        .trim()
        .to_string()
}

#[test]
fn layers_are_datasets_and_children_clones_sharing_a_snapshot() {
    need_zfs!();
    let t = driver();
    let d = &t.drv;
    layer(d, "img", None, &[("etc/os", "base")]);
    assert_eq!(prop(&format!("{}/img", t.fs), "mountpoint"), "legacy");
    d.create_rw("c1", Some("img"), &CreateOpts::default())
        .expect("c1");
    d.create_rw("c2", Some("img"), &CreateOpts::default())
        .expect("c2");
    let snap = format!("{}/img@c1", t.fs);
    assert_eq!(prop(&format!("{}/c1", t.fs), "origin"), snap);
    assert_eq!(
        prop(&format!("{}/c2", t.fs), "origin"),
        snap,
        "the second child shares the first one's snapshot"
    );
    assert_eq!(prop(&snap, "defer_destroy"), "on");
    let root = d.get("c1", "").expect("get");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/os")).expect("read"),
        "base"
    );
    std::fs::write(root.join("mine"), "c1").expect("write");
    d.put("c1").expect("put");
    // A mounted parent gets a snapshot of its own for its next child.
    let img = d.get("img", "").expect("get img");
    std::fs::write(img.join("later"), "x").expect("write img");
    d.put("img").expect("put img");
    d.create_rw("c3", Some("img"), &CreateOpts::default())
        .expect("c3");
    assert_eq!(
        prop(&format!("{}/c3", t.fs), "origin"),
        format!("{}/img@c3", t.fs)
    );
    let r3 = d.get("c3", "").expect("get c3");
    assert!(r3.join("later").exists() && !r3.join("mine").exists());
    d.put("c3").expect("put");
    let md = d.metadata("c3").expect("metadata");
    assert_eq!(md["Dataset"], format!("{}/c3", t.fs));
    // Removing the clones takes their snapshots with them.
    for c in ["c1", "c2", "c3"] {
        d.remove(c).expect("remove");
    }
    assert_eq!(all_under(&t.fs), vec![format!("{}/img", t.fs)]);
    d.remove("img").expect("remove img");
    assert!(all_under(&t.fs).is_empty());
}

#[test]
fn size_is_a_quota_that_stops_writes() {
    need_zfs!();
    let t = driver();
    let d = &t.drv;
    layer(d, "img", None, &[("a", "a")]);
    let e = d.create("bad", Some("img"), &sized("16M")).unwrap_err();
    assert!(
        e.to_string().contains("only supported for container"),
        "{e}"
    );
    d.create_rw("c", Some("img"), &sized("16M")).expect("c");
    assert_eq!(
        prop(&format!("{}/c", t.fs), "quota"),
        (16u64 << 20).to_string()
    );
    let root = d.get("c", "").expect("get");
    let mut f = std::fs::File::create(root.join("big")).expect("create");
    // Incompressible (the pool has lz4): xorshift bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut written = 0u64;
    let err = loop {
        let c: Vec<u8> = (0..1 << 17)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        match f.write_all(&c).and_then(|_| f.sync_data()) {
            Ok(()) => written += 1 << 20,
            Err(e) => break e,
        }
        assert!(written <= 64 << 20, "wrote 64 MiB past a 16 MiB quota");
    };
    drop(f);
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    assert!(written >= 8 << 20, "stopped early, at {written}");
    d.put("c").expect("put");
    d.remove("c").expect("remove");
    d.remove("img").expect("remove");
}

#[test]
fn no_dataset_or_snapshot_leaks_after_100_create_remove_cycles() {
    need_zfs!();
    let t = driver();
    let d = &t.drv;
    layer(d, "img", None, &[("etc/os", "base")]);
    let before = all_under(&t.fs);
    for i in 0..100 {
        // Every tenth cycle an image layer in between; every cycle a container that writes.
        let parent = if i % 10 == 0 {
            layer(d, "mid", Some("img"), &[("mid", "m")]);
            "mid"
        } else {
            "img"
        };
        let id = format!("c{i}");
        d.create_rw(&id, Some(parent), &CreateOpts::default())
            .expect("create");
        if i % 10 == 0 {
            let r = d.get(&id, "").expect("get");
            std::fs::write(r.join("w"), "w").expect("write");
            d.put(&id).expect("put");
        }
        d.remove(&id).expect("remove");
        if parent == "mid" {
            d.remove("mid").expect("remove mid");
        }
    }
    assert_eq!(all_under(&t.fs), before);
    assert!(
        d.home()
            .join("graph")
            .read_dir()
            .expect("graph")
            .all(|e| e.expect("entry").file_name() == "img"),
        "mount points of removed layers are gone"
    );
    d.remove("img").expect("remove img");
    assert!(all_under(&t.fs).is_empty());
}

#[test]
fn a_removed_parent_waits_for_its_clones() {
    need_zfs!();
    let t = driver();
    let d = &t.drv;
    layer(d, "p", None, &[("f", "p")]);
    d.create_rw("kid", Some("p"), &CreateOpts::default())
        .expect("kid");
    d.remove("p").expect("remove p while a clone depends on it");
    assert!(!d.exists("p") && !d.list().expect("list").contains(&"p".to_string()));
    let aside = format!("{}/p:removed", t.fs);
    assert!(all_under(&t.fs).contains(&aside), "{:?}", all_under(&t.fs));
    let r = d.get("kid", "").expect("kid still works");
    assert_eq!(std::fs::read_to_string(r.join("f")).expect("read"), "p");
    d.put("kid").expect("put");
    assert!(matches!(d.remove("p"), Err(DriverError::NotFound { .. })));
    d.remove("kid").expect("remove kid");
    assert!(all_under(&t.fs).is_empty(), "{:?}", all_under(&t.fs));
}

#[test]
fn interrupted_creates_are_finished_when_the_driver_starts() {
    need_zfs!();
    let t = driver();
    layer(&t.drv, "p", None, &[("f", "p")]);
    let p = format!("{}/p", t.fs);
    // Killed after the snapshot: no clone. Killed after the clone: not marked.
    zfs(&["snapshot", &format!("{p}@orphan")]);
    zfs(&["snapshot", &format!("{p}@kid")]);
    zfs(&[
        "clone",
        "-o",
        "mountpoint=legacy",
        &format!("{p}@kid"),
        &format!("{}/kid", t.fs),
    ]);
    let home = t.drv.home().to_path_buf();
    let opts = StorageOpts::parse(&[format!("zfs.fsname={}", t.fs)]).expect("opts");
    let again = ZfsDriver::new(&home, &opts).expect("reopen");
    let all = all_under(&t.fs);
    assert!(!all.contains(&format!("{p}@orphan")), "{all:?}");
    assert_eq!(prop(&format!("{p}@kid"), "defer_destroy"), "on");
    assert!(again.exists("kid") && again.exists("p"));
    again.remove("kid").expect("remove kid");
    again.remove("p").expect("remove p");
    assert!(all_under(&t.fs).is_empty(), "{:?}", all_under(&t.fs));
}

#[test]
fn the_default_dataset_is_the_data_roots_and_status_describes_it() {
    need_zfs!();
    let dir = tempdir();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    let fs = format!("{}/dataroot{}", support::pool(), std::process::id());
    zfs(&["create", "-o", "mountpoint=legacy", &fs]);
    struct Cleanup<'a>(&'a Path, &'a str);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = strata_graph::fsutil::unmount_all_under(self.0);
            let _ = support::try_zfs(&["destroy", "-r", self.1]);
        }
    }
    let _c = Cleanup(dir.path(), &fs);
    strata_graph::sys::mount(fs.as_bytes(), &root, b"zfs", 0, None).expect("mount");
    let d = ZfsDriver::new(&root.join("zfs"), &StorageOpts::default()).expect("driver");
    assert_eq!(d.fsname(), fs);
    layer(&d, "l", None, &[("x", "y")]);
    assert!(all_under(&fs).contains(&format!("{fs}/l")));
    let status: std::collections::HashMap<String, String> = d.status().into_iter().collect();
    assert_eq!(status["Zpool"], support::pool());
    assert_eq!(status["Zpool Health"], "ONLINE");
    assert_eq!(status["Parent Dataset"], fs);
    assert_eq!(status["Compression"], "lz4", "inherited from the pool");
    assert_eq!(status["Parent Quota"], "no");
    assert!(
        status["Space Used By Parent"]
            .parse::<u64>()
            .expect("bytes")
            > 0
    );
    assert!(status["Space Available"].parse::<u64>().expect("bytes") > 0);
    zfs(&["set", "quota=1G", &fs]);
    let status: std::collections::HashMap<String, String> = d.status().into_iter().collect();
    assert_eq!(status["Parent Quota"], (1u64 << 30).to_string());
    d.remove("l").expect("remove");
    d.cleanup().expect("cleanup");
    // Not on ZFS, and no zfs.fsname: refused, saying what to do.
    let e = ZfsDriver::new(&dir.path().join("elsewhere"), &StorageOpts::default())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("not ZFS") && e.contains("zfs.fsname"), "{e}");
    let e = ZfsDriver::new(
        &dir.path().join("x"),
        &StorageOpts::parse(&[format!("zfs.fsname={}/nonexistent", support::pool())]).expect("o"),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("no such dataset"), "{e}");
    let e = ZfsDriver::new(
        &dir.path().join("x"),
        &StorageOpts::parse(&["zfs.bogus=1"]).expect("o"),
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("zfs.bogus"), "{e}");
}

#[test]
fn native_changes_equal_the_full_comparison() {
    need_zfs!();
    use strata_graph::graphtest::native;
    let t = driver();
    let d = &t.drv;
    native::create_layers(d);
    assert!(d.native_diff());
    // The scenario's 1,000 files are below the default threshold: ask `zfs diff` anyway.
    d.set_diff_min_objects(0);
    assert!(d.changes("c", Some("base")).expect("changes").is_empty());
    let root = d.get("c", "").expect("get");
    native::change(&root);
    d.put("c").expect("put");
    let dirs = d
        .changed_dirs("c", "base")
        .expect("zfs diff")
        .expect("a clone");
    for dir in native::CHANGED_DIRS {
        assert!(dirs.contains(dir.as_bytes()), "{dir} missing from {dirs:?}");
    }
    for dir in native::UNCHANGED_DIRS {
        assert!(
            !dirs.contains(dir.as_bytes()),
            "{dir} read although unchanged: {:?}",
            dirs.iter()
                .map(|d| String::from_utf8_lossy(d))
                .collect::<Vec<_>>()
        );
    }
    native::assert_native_matches_full(d);
}

#[test]
fn small_parents_are_compared_whole_and_large_ones_through_zfs_diff() {
    need_zfs!();
    use strata_graph::graphtest::native;
    let t = driver();
    let d = &t.drv;
    native::create_layers(d);
    let root = d.get("c", "").expect("get");
    native::change(&root);
    d.put("c").expect("put");
    let full = strata_graph::driver::naive::changes(d, "c", Some("base")).expect("full");
    for min in [u64::MAX, 0] {
        d.set_diff_min_objects(min);
        assert_eq!(
            d.changes("c", Some("base")).expect("changes"),
            full,
            "threshold {min}"
        );
    }
    d.remove("c").expect("remove");
    d.remove("base").expect("remove");
}

#[test]
fn in_the_vm() {
    support::in_the_vm(8);
}
