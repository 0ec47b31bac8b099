//! The daemon on a btrfs data root (`--storage-driver btrfs`), driven by the docker CLI:
//! load, run, commit, export, save, inspect; on a loop-mounted btrfs made by the test.

mod common;

use common::Daemon;
use strata_graph::graphtest::loopfs::{LoopFs, LoopFsError};

#[test]
fn the_daemon_works_on_btrfs() {
    if !common::docker_available() {
        eprintln!("SKIPPED: needs the docker CLI");
        return;
    }
    let mut missing = None;
    let d = Daemon::start_prepared("btrfs", &[], &[], |dir| {
        let fsdir = dir.join("btrfs");
        std::fs::create_dir_all(&fsdir).expect("dir");
        match LoopFs::new(&fsdir, &["mkfs.btrfs", "-q"], 1 << 30, "") {
            Ok(fs) => {
                // The data root is the btrfs itself; the daemon's clean-up unmounts it.
                let root = dir.join("root");
                std::fs::create_dir_all(&root).expect("root");
                let o = std::process::Command::new("mount")
                    .args(["--bind"])
                    .arg(&fs.mnt)
                    .arg(&root)
                    .output()
                    .expect("mount");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                std::mem::forget(fs);
            }
            Err(LoopFsError::NoTool(t)) => missing = Some(t),
            Err(LoopFsError::Mount(why)) => panic!("mounting btrfs: {why}"),
        }
    });
    if let Some(t) = missing {
        eprintln!("SKIPPED: {t} is not installed (Debian package btrfs-progs)");
        return;
    }
    d.load_busybox();
    let info = d.ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(info.starts_with("btrfs "), "{info}");
    assert!(info.contains("Library Version"), "{info}");
    let graph = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .GraphDriver}}",
        "test/busybox:1",
    ]);
    assert!(
        graph.contains("\"Name\":\"btrfs\"") && graph.contains("Subvolume"),
        "{graph}"
    );
    // A file into the container (docker cp), committed and exported; `docker diff` finds it
    // by the driver's change tracking (the container is a tracked snapshot).
    common::cp_diff_commit_export_save(&d, "on btrfs\n");
    if common::runc_available() {
        assert_eq!(
            d.ok(&["run", "--rm", "test/committed:1", "cat", "/note.txt"]),
            "on btrfs\n"
        );
        // A size limit is a qgroup limit.
        let out = d.docker(&[
            "run",
            "--rm",
            "--storage-opt",
            "size=16M",
            "test/busybox:1",
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=64 2>&1; echo rc=$?",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("quota") || text.contains("rc=1"), "{text}");
    }
    d.ok(&["rm", "c1"]);
    d.ok(&["rmi", "test/committed:1", "test/busybox:1"]);
    assert!(d.ok(&["images", "-q"]).trim().is_empty());
}
