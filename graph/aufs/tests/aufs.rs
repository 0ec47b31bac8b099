//! aufs at the mount level: a 200-layer image mounted (the first mount with what fits in a
//! page, the rest appended by remounts), every layer's file visible, whiteouts and opaque
//! directories of middle layers honoured, writes landing in the read-write branch. Runs only
//! where `/proc/filesystems` lists aufs; elsewhere it says SKIPPED with the reason.

use strata_aufs::AufsDriver;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::{CreateOpts, Driver, StorageOpts};

#[test]
fn a_200_layer_image_mounts_with_appended_branches() {
    if let Some(why) = strata_aufs::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = strata_graph::graphtest::scratch_dir("strata-aufs-");
    let d = AufsDriver::new(&dir.path().join("home"), &StorageOpts::default()).expect("driver");
    let mut parent: Option<String> = None;
    for i in 0..200 {
        let id = format!("{i:064x}");
        d.create(&id, parent.as_deref(), &CreateOpts::default())
            .expect("create");
        let mut t = TarBuilder::new()
            .dir("l")
            .file(&format!("l/{i}"), i.to_string().as_bytes());
        if i == 100 {
            t = t.whiteout("l/5").dir("o").opaque("o");
        }
        if i < 100 {
            t = t.dir("o").file(&format!("o/{i}"), b"hidden later");
        }
        d.apply_diff(&id, parent.as_deref(), &mut &t.build()[..])
            .expect("apply");
        parent = Some(id);
    }
    d.create_rw("top", parent.as_deref(), &CreateOpts::default())
        .expect("rw");
    let root = d.get("top", "").expect("mount 200 branches");
    for i in (0..200).filter(|i| *i != 5) {
        assert_eq!(
            std::fs::read_to_string(root.join(format!("l/{i}"))).expect("layer file"),
            i.to_string()
        );
    }
    assert!(!root.join("l/5").exists(), "whited out in layer 100");
    assert_eq!(
        std::fs::read_dir(root.join("o")).expect("o").count(),
        0,
        "opaque in layer 100"
    );
    std::fs::write(root.join("new"), "rw").expect("write");
    d.put("top").expect("put");
    let changes = d.changes("top", parent.as_deref()).expect("changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    d.remove("top").expect("remove");
    d.cleanup().expect("cleanup");
}
