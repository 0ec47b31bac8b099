//! overlay2-specific behaviour: mount APIs, very deep chains, project quotas on xfs, options.

use std::path::{Path, PathBuf};
use std::process::Command;
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::graphtest::vm;
use strata_graph::{CreateOpts, Driver, StorageOpts};
use strata_overlay::{MountApi, OverlayDriver};

fn opts(items: &[&str]) -> StorageOpts {
    StorageOpts::parse(items).expect("options")
}

fn tempdir() -> tempfile::TempDir {
    strata_graph::graphtest::scratch_dir("strata-overlay-")
}

/// Unmounts everything under a directory when dropped (also when a test fails).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = strata_graph::fsutil::unmount_all_under(&self.0);
    }
}

fn chain(d: &OverlayDriver, n: usize) -> String {
    for i in 0..n {
        let id = format!("l{i}");
        let parent = if i == 0 {
            None
        } else {
            Some(format!("l{}", i - 1))
        };
        d.create(&id, parent.as_deref(), &CreateOpts::default())
            .expect("create");
        let tar = TarBuilder::new()
            .file(&format!("layer-{i}"), format!("{i}").as_bytes())
            .build();
        d.apply_diff(&id, parent.as_deref(), &mut &tar[..])
            .expect("apply");
    }
    format!("l{}", n - 1)
}

#[test]
fn new_mount_api_mounts_400_layers() {
    let dir = tempdir();
    let _u = Unmount(dir.path().to_path_buf());
    let d = OverlayDriver::new(&dir.path().join("home"), &opts(&[])).expect("driver");
    if d.mount_api() != MountApi::New {
        eprintln!("SKIPPED: this kernel has no overlay lowerdir+ (Linux 6.8+)");
        return;
    }
    assert!(d
        .status()
        .iter()
        .any(|(k, v)| k == "Mount API" && v.starts_with("new")));
    let top = chain(&d, 400);
    let p = d.get(&top, "").expect("mount 400 layers");
    assert_eq!(std::fs::read(p.join("layer-0")).expect("bottom"), b"0");
    assert_eq!(std::fs::read(p.join("layer-399")).expect("top"), b"399");
    assert_eq!(std::fs::read_dir(&p).expect("list").count(), 400);
    d.put(&top).expect("put");
    d.cleanup().expect("cleanup");
}

#[test]
fn legacy_mount_api_uses_short_relative_paths_and_refuses_too_many() {
    let dir = tempdir();
    let _u = Unmount(dir.path().to_path_buf());
    let d = OverlayDriver::new(
        &dir.path().join("home"),
        &opts(&["overlay2.mount_api=legacy"]),
    )
    .expect("driver");
    assert_eq!(d.mount_api(), MountApi::Legacy);
    // 120 layers: absolute paths exceed a page, the short relative ones fit.
    let top = chain(&d, 120);
    let p = d.get(&top, "").expect("mount 120 layers with mount(2)");
    assert_eq!(std::fs::read(p.join("layer-0")).expect("bottom"), b"0");
    d.put(&top).expect("put");
    // Beyond a page even with short paths: a clear error naming the reason.
    let mut id = top;
    for i in 120..160 {
        let next = format!("l{i}");
        d.create(&next, Some(&id), &CreateOpts::default())
            .expect("create");
        id = next;
    }
    let err = d
        .get(&id, "")
        .expect_err("160 layers cannot be mounted with mount(2)")
        .to_string();
    assert!(
        err.contains("lowerdir+") && err.contains("159 lower layers"),
        "{err}"
    );
    d.cleanup().expect("cleanup");
}

#[test]
fn options_are_validated() {
    let dir = tempdir();
    let err = OverlayDriver::new(&dir.path().join("home"), &opts(&["overlay2.bogus=1"]))
        .err()
        .expect("unknown key")
        .to_string();
    assert!(
        err.contains("overlay2.bogus") && err.contains("overlay2.size"),
        "{err}"
    );
    let err = OverlayDriver::new(
        &dir.path().join("home"),
        &opts(&["overlay2.mount_api=fast"]),
    )
    .err()
    .expect("bad value")
    .to_string();
    assert!(err.contains("fast") && err.contains("legacy"), "{err}");
    let err = OverlayDriver::new(&dir.path().join("home"), &opts(&["overlay2.size=lots"]))
        .err()
        .expect("bad size")
        .to_string();
    assert!(err.contains("overlay2.size"), "{err}");
}

#[test]
fn size_is_a_clear_error_without_project_quota() {
    let dir = tempdir();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let fs = strata_graph::sys::fs_name(strata_graph::sys::statfs_type(&home).expect("statfs"));
    if fs == "xfs" {
        eprintln!("SKIPPED: the test directory is on xfs, which may have quotas");
        return;
    }
    let err = OverlayDriver::new(&home, &opts(&["overlay2.size=10M"]))
        .err()
        .expect("no quota here")
        .to_string();
    assert!(err.contains("pquota") && err.contains(fs), "{err}");
    let d = OverlayDriver::new(&home, &opts(&[])).expect("driver");
    d.create("base", None, &CreateOpts::default())
        .expect("base");
    let err = d
        .create_rw(
            "c",
            Some("base"),
            &CreateOpts {
                storage_opt: opts(&["size=10M"]),
                ..Default::default()
            },
        )
        .expect_err("no quota")
        .to_string();
    assert!(err.contains("pquota"), "{err}");
    assert!(!d.exists("c"), "a refused layer leaves nothing");
    let err = d
        .create_rw(
            "c",
            Some("base"),
            &CreateOpts {
                storage_opt: opts(&["color=blue"]),
                ..Default::default()
            },
        )
        .expect_err("bad opt")
        .to_string();
    assert!(err.contains("color") && err.contains("size"), "{err}");
}

enum Xfs {
    Mounted(LoopFs),
    /// mkfs.xfs is not installed.
    NoTools,
    /// The kernel mounts xfs but has no quota support (CONFIG_XFS_QUOTA off).
    NoQuota,
}

/// xfs with project quotas on a loop device.
fn xfs_with_pquota(dir: &Path) -> Xfs {
    match LoopFs::new(dir, &["mkfs.xfs", "-q", "-f"], 512 << 20, "pquota") {
        Ok(fs) => Xfs::Mounted(fs),
        Err(LoopFsError::NoTool(_)) => Xfs::NoTools,
        Err(LoopFsError::Mount(why)) => {
            // Mountable without quotas? Then it is the kernel that lacks them.
            let image = dir.join("mkfs.xfs.img");
            let plain = Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir.join("mnt"))
                .output()
                .expect("mount");
            assert!(plain.status.success(), "mount xfs: {why}");
            let _ = strata_graph::fsutil::unmount_all_under(&dir.join("mnt"));
            Xfs::NoQuota
        }
    }
}

fn write_until_error(path: &Path, max: usize) -> Result<usize, std::io::Error> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let chunk = vec![0xabu8; 1 << 20];
    let mut written = 0;
    while written < max {
        f.write_all(&chunk)?;
        f.sync_data()?;
        written += chunk.len();
    }
    Ok(written)
}

#[test]
fn size_limits_container_layers_on_xfs_with_pquota() {
    let dir = tempdir();
    let xfs = match xfs_with_pquota(dir.path()) {
        Xfs::Mounted(m) => m,
        Xfs::NoTools => {
            eprintln!("SKIPPED: mkfs.xfs is not installed (Debian package xfsprogs)");
            return;
        }
        Xfs::NoQuota => {
            assert!(!vm::inside(), "the VM kernel must have xfs quotas");
            // Loaded at boot: on-demand loading needs /lib/modules to exist on the host.
            if !vm::rerun(
                "size_limits_container_layers_on_xfs_with_pquota",
                &[("VM_PRELOAD", "xfs")],
            ) {
                eprintln!("SKIPPED: this kernel has no xfs quota support and the VM runner is not available");
            }
            return;
        }
    };
    let home = xfs.mnt.join("overlay2");
    let d = OverlayDriver::new(&home, &opts(&["overlay2.size=24M"])).expect("driver with quota");
    assert!(
        d.status()
            .contains(&("Project Quota".to_string(), "true".to_string())),
        "{:?}",
        d.status()
    );
    assert!(d
        .status()
        .contains(&("Backing Filesystem".to_string(), "xfs".to_string())));
    d.create("base", None, &CreateOpts::default())
        .expect("base");
    let tar = TarBuilder::new()
        .file("lower-file", &vec![1u8; 1 << 20])
        .build();
    d.apply_diff("base", None, &mut &tar[..]).expect("apply");
    // Per-container size.
    d.create_rw(
        "small",
        Some("base"),
        &CreateOpts {
            storage_opt: opts(&["size=8M"]),
            ..Default::default()
        },
    )
    .expect("create small");
    let p = d.get("small", "").expect("mount");
    let err = write_until_error(&p.join("big"), 64 << 20).expect_err("writing past 8M fails");
    assert!(
        matches!(err.raw_os_error(), Some(libc::EDQUOT) | Some(libc::ENOSPC)),
        "{err}"
    );
    let used = std::fs::metadata(p.join("big")).expect("stat").len();
    assert!(
        (4 << 20..=8 << 20).contains(&used),
        "stopped near the limit: {used}"
    );
    d.put("small").expect("put");
    // The driver-wide default.
    d.create_rw("dflt", Some("base"), &CreateOpts::default())
        .expect("create default");
    let p = d.get("dflt", "").expect("mount");
    assert_eq!(
        write_until_error(&p.join("ok"), 16 << 20).expect("16M fits in 24M"),
        16 << 20
    );
    assert!(
        write_until_error(&p.join("more"), 16 << 20).is_err(),
        "another 16M does not"
    );
    d.put("dflt").expect("put");
    d.cleanup().expect("cleanup");
    drop(d);
    // Without overlay2.size, layers on the same filesystem are unlimited.
    let d2 = OverlayDriver::new(&home, &opts(&[])).expect("driver without default");
    d2.create_rw("free", Some("base"), &CreateOpts::default())
        .expect("create");
    let p = d2.get("free", "").expect("mount");
    assert_eq!(
        write_until_error(&p.join("big"), 40 << 20).expect("no limit"),
        40 << 20
    );
    d2.put("free").expect("put");
    d2.cleanup().expect("cleanup");
    println!(
        "quota enforced on {}",
        strata_graph::sys::fs_name(strata_graph::sys::statfs_type(&home).expect("statfs"))
    );
}

#[test]
fn metadata_and_status_look_like_dockers() {
    let dir = tempdir();
    let _u = Unmount(dir.path().to_path_buf());
    let d = OverlayDriver::new(&dir.path().join("home"), &opts(&[])).expect("driver");
    let keys: Vec<String> = d.status().into_iter().map(|(k, _)| k).collect();
    for k in [
        "Backing Filesystem",
        "Supports d_type",
        "Native Overlay Diff",
        "Mount API",
    ] {
        assert!(keys.iter().any(|x| x == k), "status has {k}: {keys:?}");
    }
    assert!(d.native_diff());
    d.create("base", None, &CreateOpts::default())
        .expect("base");
    d.create_rw("c", Some("base"), &CreateOpts::default())
        .expect("c");
    let m = d.metadata("c").expect("metadata");
    for k in ["LowerDir", "MergedDir", "UpperDir", "WorkDir"] {
        assert!(m.contains_key(k), "{k} in {m:?}");
    }
    assert!(m["LowerDir"].ends_with("/base/diff"), "{m:?}");
    assert!(!d
        .metadata("base")
        .expect("metadata")
        .contains_key("LowerDir"));
}

#[test]
fn image_layers_mount_read_only_container_layers_writable() {
    let dir = tempdir();
    let _u = Unmount(dir.path().to_path_buf());
    let d = OverlayDriver::new(&dir.path().join("home"), &opts(&[])).expect("driver");
    let top = chain(&d, 3);
    d.create_rw("c", Some(&top), &CreateOpts::default())
        .expect("rw");
    let image = d.get(&top, "").expect("mount image layer");
    let container = d.get("c", "").expect("mount container layer");
    assert_eq!(std::fs::read(image.join("layer-2")).expect("read"), b"2");
    let err = std::fs::write(image.join("new"), b"x").expect_err("image layers are read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    std::fs::write(container.join("new"), b"x").expect("container layers are writable");
    assert!(!dir.path().join("home").join(&top).join("diff/new").exists());
    d.put("c").expect("put");
    d.put(&top).expect("put");
    d.cleanup().expect("cleanup");
}
