//! `strata storage check`, `repair` and `migrate` on real data roots made by a real daemon
//! through the docker CLI: each way of breaking a store is found and fixed; migrations keep
//! image IDs, `save` output and container contents; an interrupted migration resumes or is
//! undone.

mod common;

use common::storage_cli::*;
use common::Daemon;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use strata_graph::digest::Digest;

/// A daemon on `driver` with the busybox image, a container `c1` holding `/note.txt`, and
/// `test/committed:1` made from it; stopped.
fn prepared_store(driver: &str) -> Daemon {
    let mut d = Daemon::start(driver);
    d.load_busybox();
    common::cp_diff_commit_export_save(&d, "kept\n");
    d.stop();
    d
}

/// Each layer record: (chainID hex, record).
fn layer_records(root: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<(String, serde_json::Value)> = std::fs::read_dir(root.join("layers/sha256"))
        .expect("layers")
        .map(|e| {
            let e = e.expect("entry");
            let rec: serde_json::Value = serde_json::from_slice(
                &std::fs::read(e.path().join("layer.json")).expect("layer.json"),
            )
            .expect("json");
            (e.file_name().to_string_lossy().into_owned(), rec)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The record of the layer whose chain has `n` layers (1 = a base layer).
fn layer_at_depth(root: &Path, n: usize) -> (String, serde_json::Value) {
    let recs = layer_records(root);
    let depth = |mut c: String| {
        let mut k = 1;
        while let Some(p) = recs
            .iter()
            .find(|(h, _)| *h == c)
            .and_then(|(_, r)| r["parent"].as_str())
        {
            c = p.trim_start_matches("sha256:").to_string();
            k += 1;
        }
        k
    };
    recs.iter()
        .find(|(h, _)| depth(h.clone()) == n)
        .cloned()
        .expect("a layer at that depth")
}

fn skip_without_docker() -> bool {
    if !common::docker_available() {
        eprintln!("SKIPPED: needs the docker CLI");
        return true;
    }
    false
}

#[test]
fn a_healthy_store_checks_clean_offline_and_through_the_daemon() {
    if skip_without_docker() {
        return;
    }
    let mut d = prepared_store("vfs");
    let (code, r) = check(&d.root(), &["--full"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["mode"], "offline");
    assert_eq!(r["layers"], 3, "{r:#}");
    assert_eq!(r["verified"], 3, "{r:#}");
    assert_eq!(r["images"], 2, "{r:#}");
    assert_eq!(r["container_layers"], 1, "{r:#}");
    // Through the running daemon; a direct look at its data root is refused.
    d.restart();
    let o = storage(&["check", "--full"], Some(&d.sock));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("(vfs, daemon)") && out.contains("No problems found"),
        "{out}"
    );
    let o = storage(
        &["check", "--data-root", d.root().to_str().expect("utf-8")],
        None,
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("without --data-root"), "{}", text(&o));
    // Driver data no layer owns, made while the daemon runs: found through the daemon.
    let orphan = d
        .root()
        .join("vfs/dir")
        .join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&orphan).expect("orphan");
    let o = storage(&["check", "--json"], Some(&d.sock));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(kinds(&r), ["orphan-driver-data"], "{r:#}");
    // The daemon itself removes it at its next start (it reconciles the store).
    d.restart();
    assert!(!orphan.exists());
}

#[test]
fn each_kind_of_damage_is_found_and_repaired() {
    if skip_without_docker() {
        return;
    }
    // A deleted layer directory: the layer and what is built on it are set aside, the images
    // that need them are listed, and loading the image again makes the store whole.
    {
        let mut d = prepared_store("vfs");
        let (_, rec) = layer_at_depth(&d.root(), 2);
        let cache = rec["cache_id"].as_str().expect("cache id");
        std::fs::remove_dir_all(d.root().join("vfs/dir").join(cache)).expect("delete");
        let (code, r) = check(&d.root(), &[]);
        assert_eq!(code, 1);
        let k = kinds(&r);
        assert!(k.contains(&"driver-data-missing".to_string()), "{r:#}");
        let (code, rep) = repair(&d.root(), &[]);
        // What repair cannot do is left to the user, and the exit status says so.
        assert_eq!(code, 1, "{rep:#}");
        assert_eq!(kinds(&rep["after"]), ["container-layer-missing"], "{rep:#}");
        assert_eq!(
            rep["quarantined_layers"].as_array().map(|a| a.len()),
            Some(3),
            "{rep:#}"
        );
        let lost: Vec<&str> = rep["images_to_pull"]
            .as_array()
            .expect("images")
            .iter()
            .flat_map(|i| i["references"].as_array().into_iter().flatten())
            .filter_map(|r| r.as_str())
            .collect();
        assert!(lost.contains(&"docker.io/test/busybox:1"), "{rep:#}");
        assert!(lost.contains(&"docker.io/test/committed:1"), "{rep:#}");
        assert!(
            rep["broken_containers"]
                .as_array()
                .is_some_and(|a| a.len() == 1),
            "c1's layer was built on the lost layer: {rep:#}"
        );
        d.restart();
        d.ok(&["rm", "c1"]);
        d.load_busybox();
        d.ok(&["image", "inspect", "test/busybox:1"]);
        d.stop();
        let (code, r) = check(&d.root(), &["--full"]);
        assert_eq!(code, 0, "{r:#}");
        assert!(r["notes"].to_string().contains("quarantine"), "{r:#}");
    }
    // A file changed inside a layer: found by re-export, quarantined, never deleted.
    {
        let d = prepared_store("vfs");
        let (chain, rec) = layer_at_depth(&d.root(), 2);
        let motd = d
            .root()
            .join("vfs/dir")
            .join(rec["cache_id"].as_str().expect("cache"))
            .join("etc/motd");
        let before = std::fs::read(&motd).expect("motd");
        let mut changed = before.clone();
        changed[0] ^= 0x20;
        std::fs::write(&motd, &changed).expect("corrupt");
        let (code, r) = check(&d.root(), &["--full"]);
        assert_eq!(code, 1);
        assert_eq!(kinds(&r), ["content-mismatch"], "{r:#}");
        assert!(
            r["problems"][0]["subject"]
                .as_str()
                .unwrap_or("")
                .contains(&chain),
            "{r:#}"
        );
        let (code, rep) = repair(&d.root(), &["--full"]);
        assert_eq!(code, 1, "c1 was built on the damaged layer: {rep:#}");
        assert_eq!(kinds(&rep["after"]), ["container-layer-missing"], "{rep:#}");
        assert!(
            rep["quarantined_layers"].to_string().contains(&chain),
            "{rep:#}"
        );
        // Kept: the record is in quarantine and its data is still there.
        assert!(motd.exists(), "the damaged layer's data is kept");
        let q: Vec<String> = std::fs::read_dir(d.root().join("layers/quarantine"))
            .expect("quarantine")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(q.iter().any(|n| n.starts_with(&chain)), "{q:?}");
    }
    // An interrupted registration, an orphan, a wrong reference count.
    {
        let d = prepared_store("vfs");
        let tmp = d.root().join("layers/tmp/feedfacefeedfacefeedfacefeedface");
        std::fs::create_dir_all(&tmp).expect("tmp");
        std::fs::write(tmp.join("tar-split.zst"), b"partial").expect("partial");
        std::fs::create_dir_all(
            d.root()
                .join("vfs/dir/feedfacefeedfacefeedfacefeedface/etc"),
        )
        .expect("its data");
        let orphan = d.root().join("vfs/dir/00112233445566778899aabbccddeeff");
        std::fs::create_dir_all(&orphan).expect("orphan");
        let (chain, mut rec) = layer_at_depth(&d.root(), 2);
        rec["references"] = serde_json::json!(7);
        let path = d
            .root()
            .join("layers/sha256")
            .join(&chain)
            .join("layer.json");
        std::fs::write(&path, serde_json::to_vec(&rec).expect("json")).expect("write");
        let (code, r) = check(&d.root(), &[]);
        assert_eq!(code, 1);
        let mut k = kinds(&r);
        k.sort();
        assert_eq!(
            k,
            ["interrupted", "orphan-driver-data", "reference-count"],
            "{r:#}"
        );
        let (code, rep) = repair(&d.root(), &[]);
        assert_eq!(code, 0, "{rep:#}");
        assert!(!tmp.exists() && !orphan.exists());
        assert!(!d
            .root()
            .join("vfs/dir/feedfacefeedfacefeedfacefeedface")
            .exists());
        let fixed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(fixed["references"], 1, "one image has this layer on top");
        assert!(
            rep["images_to_pull"]
                .as_array()
                .is_some_and(|a| a.is_empty()),
            "{rep:#}"
        );
    }
}

/// The container layers' records in a data root (their names).
fn container_layers(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("layers/mounts"))
        .expect("mounts")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(String::from)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn wrong_size_counts_are_found_and_dropped() {
    if skip_without_docker() {
        return;
    }
    let mut d = prepared_store("vfs");
    let layers = container_layers(&d.root());
    assert_eq!(layers.len(), 1, "{layers:?}");
    let c1 = &layers[0];
    let count = d.root().join(format!("layers/mounts/{c1}.size"));
    std::fs::write(&count, "999999").expect("a wrong count");
    let gone = d.root().join("layers/mounts/0123456789abcdef.size");
    std::fs::write(&gone, "12").expect("a count without a layer");
    // A count is only compared with the layer by a full check; the stray one is always seen.
    let (code, r) = check(&d.root(), &[]);
    assert_eq!(code, 1);
    assert_eq!(kinds(&r), ["interrupted"], "{r:#}");
    let (code, r) = check(&d.root(), &["--full"]);
    assert_eq!(code, 1);
    let mut k = kinds(&r);
    k.sort();
    assert_eq!(k, ["interrupted", "size-count"], "{r:#}");
    assert!(r.to_string().contains("counted 999999 bytes"), "{r:#}");
    let (code, rep) = repair(&d.root(), &["--full"]);
    assert_eq!(code, 0, "{rep:#}");
    assert!(!gone.exists() && !count.exists(), "{rep:#}");
    // The daemon measures the layer again.
    d.restart();
    let size: i64 = d
        .ok(&["inspect", "-s", "-f", "{{.SizeRw}}", "c1"])
        .trim()
        .parse()
        .expect("SizeRw");
    assert!((1..999_999).contains(&size), "SizeRw {size}");
    d.stop();
    let (code, r) = check(&d.root(), &["--full"]);
    assert_eq!(code, 0, "{r:#}");
}

#[test]
fn a_stale_mount_is_found_and_unmounted() {
    if skip_without_docker() {
        return;
    }
    let d = prepared_store("overlay2");
    let rw: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(d.root().join("layers/mounts"))
                .expect("mounts")
                .map(|e| e.expect("e").path())
                .find(|p| p.extension().is_some_and(|x| x == "json"))
                .expect("a container layer"),
        )
        .expect("read"),
    )
    .expect("json");
    let merged = d
        .root()
        .join("overlay2")
        .join(rw["cache_id"].as_str().expect("cache"))
        .join("merged");
    std::fs::create_dir_all(&merged).expect("merged");
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "stale", merged.to_str().expect("utf-8")])
        .output()
        .expect("mount");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(merged.to_str().expect("utf-8"))
    };
    assert!(mounted());
    let (code, r) = check(&d.root(), &[]);
    assert_eq!(code, 1);
    assert_eq!(kinds(&r), ["stray-mount"], "{r:#}");
    let (code, rep) = repair(&d.root(), &[]);
    assert_eq!(code, 0, "{rep:#}");
    assert!(!mounted(), "repair unmounted it");
}

#[test]
fn migrating_vfs_overlay2_btrfs_and_back_keeps_everything() {
    if skip_without_docker() {
        return;
    }
    let mut missing = None;
    let mut d = Daemon::start_prepared("vfs", &[], &[], |dir| {
        missing = common::btrfs_data_root(dir);
    });
    if let Some(t) = missing {
        eprintln!("SKIPPED: {t} is not installed (Debian package btrfs-progs)");
        return;
    }
    d.load_busybox();
    common::cp_diff_commit_export_save(&d, "migrated\n");
    let want = facts(&d);
    d.stop();
    let root = d.root();

    // vfs → overlay2, the vfs data kept.
    let out = migrate(&root, &["--to", "overlay2"]);
    assert!(
        out.contains("3 layer(s)") && out.contains("1 container layer(s)"),
        "{out}"
    );
    assert!(root.join("layers.vfs").is_dir() && root.join("vfs/dir").is_dir());
    assert_eq!(check(&root, &["--full"]).0, 0);
    with_driver(&mut d, "overlay2");
    d.restart();
    assert_eq!(facts(&d), want);
    assert_eq!(
        d.ok(&["container", "inspect", "-f", "{{.GraphDriver.Name}}", "c1"])
            .trim(),
        "overlay2"
    );
    d.stop();

    // overlay2 → btrfs, the overlay2 data removed.
    migrate(&root, &["--to", "btrfs", "--remove-old"]);
    assert!(!root.join("overlay2").exists() && !root.join("layers.overlay2").exists());
    // Without --storage-driver the daemon follows the layer store.
    let i = d
        .args
        .iter()
        .position(|a| a == "--storage-driver")
        .expect("flag");
    d.args.drain(i..i + 2);
    d.restart();
    assert_eq!(d.ok(&["info", "--format", "{{.Driver}}"]).trim(), "btrfs");
    assert_eq!(facts(&d), want);
    d.stop();

    // Back to vfs: refused while the old vfs data is kept, then done.
    let said = migrate_refused(&root, "vfs");
    assert!(said.contains("--remove-old"), "{said}");
    migrate(&root, &["--remove-old"]);
    assert!(!root.join("layers.vfs").exists() && !root.join("vfs").exists());
    migrate(&root, &["--to", "vfs", "--remove-old"]);
    assert!(!root.join("btrfs").exists());
    assert_eq!(check(&root, &["--full"]).0, 0);
    d.restart();
    assert_eq!(d.ok(&["info", "--format", "{{.Driver}}"]).trim(), "vfs");
    assert_eq!(facts(&d), want);
    d.stop();
}

/// An image of `n` small layers, loaded into `d`.
fn load_layers(d: &Daemon, n: usize) {
    let path = layers_archive(d, n, "test/many:1");
    d.ok(&["load", "-q", "-i", path.to_str().expect("utf-8")]);
}

/// A `docker save` archive of an image `tag` of `n` small layers.
fn layers_archive(d: &Daemon, n: usize, tag: &str) -> PathBuf {
    use strata_graph::graphtest::tars::{save_archive, TarBuilder};
    let layers: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            TarBuilder::new()
                .dir("data")
                .file(
                    &format!("data/f{i}"),
                    format!("layer {i}\n").repeat(1000).as_bytes(),
                )
                .build()
        })
        .collect();
    let ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", Digest::of(l)))
        .collect();
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    );
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let archive = save_archive(cfg.as_bytes(), &refs, &[tag]);
    let path = d.dir.path().join(format!("{n}-layers.tar"));
    std::fs::write(&path, archive).expect("write");
    path
}

/// Starts a migration that stalls after `after` layers and kills it there.
fn kill_midway(root: &Path, after: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "storage",
            "migrate",
            "--data-root",
            root.to_str().expect("utf-8"),
            "--to",
            "overlay2",
        ])
        .env("STRATA_TEST_MIGRATE_STALL", after.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).expect("read");
        assert!(n > 0, "the migration ended before stalling: {seen}");
        seen.push_str(&line);
        if line.contains("stalled after") {
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn a_killed_migration_resumes_or_is_undone() {
    if skip_without_docker() {
        return;
    }
    let mut d = Daemon::start("vfs");
    load_layers(&d, 6);
    let id = d.ok(&["image", "inspect", "-f", "{{.Id}}", "test/many:1"]);
    let save = Digest::of(&d.docker(&["save", "test/many:1"]).stdout);
    d.stop();
    let root: PathBuf = d.root();

    // A driver that cannot work here is refused before anything is recorded.
    let said = migrate_refused(&root, "btrfs");
    assert!(said.contains("btrfs"), "{said}");
    assert!(
        !root.join("migration").exists(),
        "a refused migration left state behind"
    );

    // Killed after 3 of 6 layers: the store says so, the daemon will not start on it.
    kill_midway(&root, 3);
    let (code, r) = check(&root, &[]);
    assert_eq!(code, 1);
    assert!(
        kinds(&r).contains(&"migration-pending".to_string()),
        "{r:#}"
    );
    let spawn = common::spawn(
        &root,
        &d.dir.path().join("x.pid"),
        &d.dir.path().join("x.sock"),
        &["--storage-driver", "vfs"],
    );
    assert!(
        spawn.is_err(),
        "the daemon started in the middle of a migration"
    );
    // Undone: back to vfs, the overlay2 data gone, the image as it was.
    let o = storage(
        &[
            "migrate",
            "--abort",
            "--data-root",
            root.to_str().expect("utf-8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!root.join("overlay2").exists() && !root.join("migration").exists());
    assert_eq!(check(&root, &["--full"]).0, 0);

    // Killed again, then resumed: only the rest is copied.
    kill_midway(&root, 2);
    let out = migrate(&root, &["--to", "overlay2"]);
    assert!(
        out.contains("resuming") && out.contains("6 layer(s) (4 copied now)"),
        "{out}"
    );
    assert_eq!(check(&root, &["--full"]).0, 0);
    with_driver(&mut d, "overlay2");
    d.restart();
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "test/many:1"]),
        id
    );
    assert_eq!(Digest::of(&d.docker(&["save", "test/many:1"]).stdout), save);
    d.stop();
}

#[test]
fn chains_deeper_than_dockers_limit_work_where_the_driver_can_mount_them() {
    if skip_without_docker() {
        return;
    }
    for (driver, limit) in [("overlay2", "500"), ("vfs", "unlimited")] {
        let d = Daemon::start(driver);
        let status = d.ok(&["info", "--format", "{{json .DriverStatus}}"]);
        assert!(
            status.contains(&format!("[\"Max Layer Depth\",\"{limit}\"]")),
            "{driver}: {status}"
        );
        // 200 layers: Docker refuses more than 125.
        load_layers(&d, 200);
        d.ok(&["create", "--name", "deep", "test/many:1", "x"]);
        for i in [0, 199] {
            let out = d.docker(&["cp", &format!("deep:/data/f{i}"), "-"]);
            assert!(out.status.success(), "{driver}: cp f{i}");
            let body = String::from_utf8_lossy(&out.stdout);
            assert!(body.contains(&format!("layer {i}\n")), "{driver}: f{i}");
        }
        let layers = d.ok(&[
            "image",
            "inspect",
            "-f",
            "{{len .RootFS.Layers}}",
            "test/many:1",
        ]);
        assert_eq!(layers.trim(), "200");
        if driver == "overlay2" {
            // One layer more than the driver can mount is refused, and the store stays whole.
            let path = layers_archive(&d, 501, "test/toodeep:1");
            let (ok, _, err) = d.try_docker(&["load", "-q", "-i", path.to_str().expect("utf-8")]);
            assert!(!ok && err.contains("max depth exceeded"), "{err}");
            assert!(err.contains("501") && err.contains("(500)"), "{err}");
            assert!(!d.try_docker(&["image", "inspect", "test/toodeep:1"]).0);
        }
        let mut d = d;
        d.stop();
        let (code, r) = check(&d.root(), &[]);
        assert_eq!(code, 0, "{driver}: {r:#}");
    }
}
