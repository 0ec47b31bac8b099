//! The daemon on a btrfs data root (`--storage-driver btrfs`), driven by the docker CLI:
//! load, run, commit, export, save, inspect; on a loop-mounted btrfs made by the test.

mod common;

use common::Daemon;

#[test]
fn the_daemon_works_on_btrfs() {
    if !common::docker_available() {
        eprintln!("SKIPPED: needs the docker CLI");
        return;
    }
    let mut missing = None;
    let d = Daemon::start_prepared("btrfs", &[], &[], |dir| {
        missing = common::btrfs_data_root(dir);
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
