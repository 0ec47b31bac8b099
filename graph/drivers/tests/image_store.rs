//! The image store over a real layer store and driver.

use std::sync::Arc;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::image::{ImageError, ImageStore};
use strata_graph::{Digest, LayerStore, RegisterOpts, StorageOpts};

struct Env {
    dir: tempfile::TempDir,
    layers: Arc<LayerStore>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-images-")
            .tempdir()
            .expect("tempdir");
        let driver =
            strata_drivers::open("vfs", dir.path(), &StorageOpts::default()).expect("driver");
        let (layers, _) = LayerStore::open(&dir.path().join("layers"), driver).expect("layers");
        Env {
            dir,
            layers: Arc::new(layers),
        }
    }
    fn images(&self) -> (ImageStore, Vec<String>) {
        ImageStore::open(&self.dir.path().join("images"), self.layers.clone()).expect("images")
    }
}

fn config(diff_ids: &[Digest], cmd: &str) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["{cmd}"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}},"history":[]}}"#,
        ids.join(",")
    )
    .into_bytes()
}

#[test]
fn images_hold_their_layers_and_resolve_by_id_prefix_and_reference() {
    let env = Env::new();
    let (images, problems) = env.images();
    assert!(problems.is_empty());
    let l0 = env
        .layers
        .register(
            None,
            &TarBuilder::new().file("a", b"a").build()[..],
            RegisterOpts::default(),
        )
        .expect("l0");
    let l1 = env
        .layers
        .register(
            Some(&l0.chain_id),
            &TarBuilder::new().file("b", b"b").build()[..],
            RegisterOpts::default(),
        )
        .expect("l1");
    env.layers.release(&l0.chain_id).expect("release");
    let cfg = config(&[l0.diff_id, l1.diff_id], "sh");
    let img = images.create(&cfg).expect("create");
    assert_eq!(
        img.id,
        Digest::of(&cfg),
        "the image ID is the digest of the config bytes"
    );
    assert_eq!(img.top_layer, Some(l1.chain_id));
    env.layers
        .release(&l1.chain_id)
        .expect("release the registration's reference");
    assert_eq!(
        env.layers
            .get(&l1.chain_id)
            .expect("kept by the image")
            .references,
        1
    );
    assert_eq!(
        images.create(&cfg).expect("again").id,
        img.id,
        "creating twice is idempotent"
    );
    assert_eq!(env.layers.get(&l1.chain_id).expect("layer").references, 1);
    assert!(images.tag(&img.id, "busybox").expect("tag").is_none());
    images
        .tag(&img.id, "localhost:5000/tools/bb:1.0")
        .expect("tag");
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "localhost:5000/tools/bb:1.0",
        &img.id.to_string(),
        &img.id.hex()[..12],
    ] {
        assert_eq!(
            images
                .get(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .id,
            img.id
        );
    }
    let mut familiar: Vec<String> = images
        .references(&img.id)
        .iter()
        .map(|r| r.familiar())
        .collect();
    familiar.sort();
    assert_eq!(
        familiar,
        vec!["busybox:latest", "localhost:5000/tools/bb:1.0"]
    );
    assert!(matches!(
        images.get("busybox:2"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        images.get("Busybox"),
        Err(ImageError::NotFound(_))
    ));
    // A second image moves the tag; the old one stays, by ID.
    let cfg2 = config(&[l0.diff_id], "true");
    let img2 = images.create(&cfg2).expect("create");
    assert_eq!(images.tag(&img2.id, "busybox").expect("tag"), Some(img.id));
    assert_eq!(images.get("busybox").expect("get").id, img2.id);
    // Reopen: everything is back.
    drop(images);
    let (images, problems) = env.images();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(images.list().len(), 2);
    assert_eq!(
        images.get("localhost:5000/tools/bb:1.0").expect("get").id,
        img.id
    );
    // Delete releases the layers nobody else needs.
    assert_eq!(
        images
            .untag("localhost:5000/tools/bb")
            .err()
            .map(|e| e.to_string()),
        Some("No such image: localhost:5000/tools/bb".into())
    );
    assert_eq!(
        images.untag("localhost:5000/tools/bb:1.0").expect("untag"),
        img.id
    );
    let removed = images.delete(&img.id).expect("delete");
    assert_eq!(
        removed,
        vec![l1.chain_id],
        "l0 stays: the second image needs it"
    );
    let removed = images.delete(&img2.id).expect("delete");
    assert_eq!(removed, vec![l0.chain_id]);
    assert!(env.layers.list().is_empty());
    assert!(images.list().is_empty());
}

#[test]
fn bad_configs_and_missing_layers_are_refused_and_damage_is_reported() {
    let env = Env::new();
    let (images, _) = env.images();
    assert!(matches!(
        images.create(b"{not json"),
        Err(ImageError::BadConfig(_))
    ));
    assert!(matches!(
        images.create(br#"{"rootfs":{"type":"tarballs","diff_ids":[]}}"#),
        Err(ImageError::BadConfig(_))
    ));
    let missing = Digest::of(b"no such layer");
    let err = images
        .create(&config(&[missing], "sh"))
        .expect_err("missing layer");
    assert!(err.to_string().contains(&missing.to_string()), "{err}");
    assert!(images.list().is_empty());
    let l0 = env
        .layers
        .register(
            None,
            &TarBuilder::new().file("a", b"a").build()[..],
            RegisterOpts::default(),
        )
        .expect("l0");
    let img = images.create(&config(&[l0.diff_id], "sh")).expect("create");
    images.tag(&img.id, "app").expect("tag");
    drop(images);
    // Corrupt the stored config: it is left out on open, and its reference with it.
    let path = env
        .dir
        .path()
        .join("images/content/sha256")
        .join(img.id.hex());
    std::fs::write(&path, b"{}").expect("corrupt");
    let (images, problems) = env.images();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[2].contains("not rebuilt"), "{problems:?}");
    assert!(
        env.layers.get(&l0.chain_id).is_some(),
        "a damaged image's layers are kept"
    );
    assert!(
        problems[0].contains("does not match its digest"),
        "{problems:?}"
    );
    assert!(images.get("app").is_err());
}
