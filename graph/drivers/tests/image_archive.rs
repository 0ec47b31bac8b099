//! `load` and `save`: round trips keep digests; bad archives leave nothing behind.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use strata_graph::archive::tar::{Header, Kind, TarReader, TarWriter};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::image::ImageStore;
use strata_graph::{Digest, LayerStore, StorageOpts};

struct Env {
    dir: tempfile::TempDir,
    images: ImageStore,
    layers: Arc<LayerStore>,
}

impl Env {
    fn new(driver: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-load-")
            .tempdir()
            .expect("tempdir");
        let d = strata_drivers::open(driver, dir.path(), &StorageOpts::default()).expect("driver");
        let (layers, _) = LayerStore::open(&dir.path().join("layers"), d).expect("layers");
        let layers = Arc::new(layers);
        let (images, problems) =
            ImageStore::open(&dir.path().join("images"), layers.clone()).expect("images");
        assert!(problems.is_empty(), "{problems:?}");
        Env {
            dir,
            images,
            layers,
        }
    }

    fn assert_empty(&self, case: &str) {
        assert!(self.images.list().is_empty(), "{case}: an image was left");
        assert!(
            self.layers.list().is_empty(),
            "{case}: layers were left: {:?}",
            self.layers.list()
        );
        assert_eq!(
            std::fs::read_dir(self.dir.path().join("images/tmp"))
                .expect("tmp")
                .count(),
            0,
            "{case}: spool left"
        );
        assert!(
            self.layers.driver().list().expect("list").is_empty(),
            "{case}: driver data left"
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.layers.cleanup();
    }
}

/// Builds an archive from (path, content) files and (path, target) symlinks.
fn archive(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    let h = |path: &str, kind: Kind, size: u64| Header::new(path, kind, size);
    for (p, data) in files {
        w.append(
            &h(p, Kind::Regular, data.len() as u64),
            Some(&mut &data[..]),
        )
        .expect("append");
    }
    for (p, t) in links {
        let mut l = h(p, Kind::Symlink, 0);
        l.link = t.as_bytes().to_vec();
        w.append(&l, None).expect("append");
    }
    w.finish().expect("finish")
}

fn untar(bytes: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut r = TarReader::new(bytes, false);
    let mut out = HashMap::new();
    while let Some(e) = r.next_entry().expect("entry") {
        let data = r.read_payload_to_vec().expect("payload");
        if e.kind == Kind::Regular {
            out.insert(e.display(), data);
        }
    }
    out
}

fn config(diff_ids: &[Digest]) -> Vec<u8> {
    strata_graph::graphtest::tars::image_config("/bin/app", diff_ids)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).expect("gzip");
    g.finish().expect("gzip")
}

fn layers() -> (Vec<u8>, Vec<u8>) {
    let l0 = TarBuilder::new()
        .dir("etc")
        .file("etc/os-release", b"ID=strata\n")
        .dir("bin")
        .build();
    let l1 = TarBuilder::new()
        .dir("bin")
        .file_mode("bin/app", &vec![0x7f; 40_000], 0o755, 0, 0)
        .whiteout("etc/os-release")
        .build();
    (l0, l1)
}

fn docker_archive(l0: &[u8], l1: &[u8], cfg: &[u8], tags: &str) -> Vec<u8> {
    let cfg_name = format!("{}.json", Digest::of(cfg).hex());
    let manifest = format!(
        r#"[{{"Config":"{cfg_name}","RepoTags":{tags},"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#
    );
    // docker save writes manifest.json last; the second layer is compressed.
    archive(
        &[
            (&cfg_name, cfg),
            ("aaa/layer.tar", l0),
            ("bbb/layer.tar", &gzip(l1)),
            ("manifest.json", manifest.as_bytes()),
        ],
        &[],
    )
}

#[test]
fn docker_archive_round_trip_keeps_every_digest() {
    for driver in ["overlay2", "vfs"] {
        let env = Env::new(driver);
        let (l0, l1) = layers();
        let diff_ids = [Digest::of(&l0), Digest::of(&l1)];
        let cfg = config(&diff_ids);
        let tar = docker_archive(&l0, &l1, &cfg, r#"["app:1","localhost:5000/team/app:2"]"#);
        let said = std::sync::Mutex::new(Vec::new());
        let cb = |p: strata_graph::image::LoadProgress<'_>| {
            let line = match p {
                strata_graph::image::LoadProgress::Layer {
                    diff_id,
                    current,
                    total,
                } => format!("layer {diff_id} {current}/{total}"),
                strata_graph::image::LoadProgress::Loaded { id } => {
                    format!("Loaded image ID: {id}")
                }
            };
            said.lock().expect("lock").push(line);
        };
        let loaded = env.images.load(&tar[..], Some(&cb)).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            loaded[0].id,
            Digest::of(&cfg),
            "{driver}: image ID is the config digest"
        );
        assert_eq!(loaded[0].tags, vec!["app:1", "localhost:5000/team/app:2"]);
        let said = said.lock().expect("lock").clone();
        assert!(
            said.iter()
                .any(|m| m.starts_with("Loaded image ID: sha256:")),
            "{said:?}"
        );
        for (d, size) in [(&diff_ids[0], l0.len()), (&diff_ids[1], gzip(&l1).len())] {
            assert!(
                said.contains(&format!("layer {d} 0/{size}"))
                    && said.contains(&format!("layer {d} {size}/{size}")),
                "{said:?}"
            );
        }
        // The image's filesystem is what the layers say.
        let rw = env
            .layers
            .create_rw(
                "c",
                env.images.get("app:1").expect("get").top_layer.as_ref(),
                &Default::default(),
            )
            .expect("rw");
        let root = env.layers.mount_rw(&rw.name, "").expect("mount");
        assert!(root.join("bin/app").exists() && !root.join("etc/os-release").exists());
        env.layers.unmount_rw(&rw.name).expect("unmount");
        env.layers.remove_rw(&rw.name).expect("remove");
        // Save reproduces the layers byte for byte (the compressed one as its uncompressed tar).
        let saved = env.images.save(&["app:1"], Vec::new()).expect("save");
        let files = untar(&saved);
        let manifest: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest");
        assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["app:1"]));
        let paths: Vec<String> = manifest[0]["Layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|v| v.as_str().expect("str").to_string())
            .collect();
        assert_eq!(
            files[&paths[0]], l0,
            "{driver}: layer 0 re-exported exactly"
        );
        assert_eq!(
            files[&paths[1]], l1,
            "{driver}: layer 1 re-exported exactly"
        );
        assert_eq!(files[manifest[0]["Config"].as_str().expect("config")], cfg);
        // And a fresh store loads the saved archive to the same image.
        let other = Env::new(driver);
        let again = other.images.load(&saved[..], None).expect("load saved");
        assert_eq!(again[0].id, loaded[0].id);
        assert_eq!(other.images.get("app:1").expect("tag").id, loaded[0].id);
    }
}

#[test]
fn oci_layouts_and_docker25_symlinks_load() {
    let env = Env::new("overlay2");
    let (l0, l1) = layers();
    let cfg = config(&[Digest::of(&l0), Digest::of(&l1)]);
    let z1 = zstd::encode_all(&l1[..], 3).expect("zstd");
    let (d0, d1, dc) = (Digest::of(&l0), Digest::of(&z1), Digest::of(&cfg));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{dc}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d0}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{d1}","size":{}}}]}}"#,
        cfg.len(),
        l0.len(),
        z1.len()
    );
    let dm = Digest::of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{dm}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/oci:v1","org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
        manifest.len()
    );
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let tar = archive(
        &[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            (&blob(&dc), &cfg),
            (&blob(&d0), &l0),
            (&blob(&d1), &z1),
            (&blob(&dm), manifest.as_bytes()),
            ("index.json", index.as_bytes()),
        ],
        &[],
    );
    let loaded = env.images.load(&tar[..], None).expect("load OCI layout");
    assert_eq!(loaded[0].id, dc);
    assert_eq!(loaded[0].tags, vec!["oci:v1"]);
    // Docker 25: manifest.json whose layer paths are symlinks into blobs/.
    let other = Env::new("vfs");
    let m = format!(
        r#"[{{"Config":"{}","RepoTags":["sym:1"],"Layers":["x/layer.tar","y/layer.tar"]}}]"#,
        blob(&dc)
    );
    let tar = archive(
        &[
            (&blob(&dc), &cfg),
            (&blob(&d0), &l0),
            (&blob(&d1), &z1),
            ("manifest.json", m.as_bytes()),
        ],
        &[
            ("x/layer.tar", &format!("../{}", blob(&d0))),
            ("y/layer.tar", &format!("../{}", blob(&d1))),
        ],
    );
    assert_eq!(
        other
            .images
            .load(&tar[..], None)
            .expect("load docker 25 archive")[0]
            .id,
        dc
    );
}

#[test]
fn bad_archives_are_refused_and_leave_nothing() {
    let env = Env::new("overlay2");
    let (l0, l1) = layers();
    let good_cfg = config(&[Digest::of(&l0), Digest::of(&l1)]);
    let good = docker_archive(&l0, &l1, &good_cfg, r#"["app:1"]"#);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated archive",
            good[..good.len() / 2].to_vec(),
            "invalid archive",
        ),
        (
            "config renamed to another digest",
            {
                let wrong = format!("{}.json", "0".repeat(64));
                let m = format!(
                    r#"[{{"Config":"{wrong}","RepoTags":[],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#
                );
                archive(
                    &[
                        (&wrong, &good_cfg),
                        ("aaa/layer.tar", &l0),
                        ("bbb/layer.tar", &l1),
                        ("manifest.json", m.as_bytes()),
                    ],
                    &[],
                )
            },
            "does not match its digest",
        ),
        (
            "second layer has other content than the config says",
            {
                let other = TarBuilder::new().file("x", b"y").build();
                docker_archive(&l0, &other, &good_cfg, "[]")
            },
            "digest mismatch",
        ),
        (
            "layer escaping its root",
            {
                let evil = strata_graph::graphtest::tars::raw_tar(&[(
                    strata_graph::graphtest::tars::raw_header(b"../../escape", b'0', 1, b""),
                    b"x",
                )]);
                let cfg = config(&[Digest::of(&l0), Digest::of(&evil)]);
                docker_archive(&l0, &evil, &cfg, "[]")
            },
            "'..'",
        ),
        (
            "malformed manifest.json",
            archive(&[("manifest.json", b"[{\"Config\": ")], &[]),
            "manifest.json",
        ),
        (
            "archive entry outside",
            archive(&[("../evil", b"x")], &[]),
            "'..'",
        ),
        (
            "manifest names a missing layer",
            {
                let name = format!("{}.json", Digest::of(&good_cfg).hex());
                let m = format!(
                    r#"[{{"Config":"{name}","Layers":["aaa/layer.tar","nope/layer.tar"]}}]"#
                );
                archive(
                    &[
                        (&name, &good_cfg),
                        ("aaa/layer.tar", &l0),
                        ("manifest.json", m.as_bytes()),
                    ],
                    &[],
                )
            },
            "no file",
        ),
        (
            "symlink out of the archive",
            archive(&[("manifest.json", b"[]")], &[("x", "../../etc/passwd")]),
            "outside",
        ),
        (
            "bad tag",
            docker_archive(&l0, &l1, &good_cfg, r#"["Bad:Tag!"]"#),
            "invalid reference format",
        ),
        (
            "empty archive",
            archive(&[], &[]),
            "neither manifest.json nor index.json",
        ),
    ];
    for (name, tar, want) in cases {
        let err = env.images.load(&tar[..], None).expect_err(name).to_string();
        assert!(err.contains(want), "{name}: {err:?} should say {want:?}");
        env.assert_empty(name);
    }
    // The good one still loads afterwards.
    env.images.load(&good[..], None).expect("good archive");
}

#[test]
fn an_interrupted_load_leaves_nothing_after_reopen() {
    let env = Env::new("vfs");
    let (l0, _) = layers();
    // What a load killed after its first layer leaves: a layer with a reference and no image,
    // and a spool directory.
    env.layers
        .register(None, &l0[..], Default::default())
        .expect("register");
    std::fs::create_dir_all(env.dir.path().join("images/tmp/load-interrupted/aaa")).expect("spool");
    let (images, problems) =
        ImageStore::open(&env.dir.path().join("images"), env.layers.clone()).expect("reopen");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("belonged to no image"));
    assert!(images.list().is_empty());
    env.assert_empty("after reopen");
}
