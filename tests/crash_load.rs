//! A `kill -9` of the daemon in the middle of `docker load`: after a restart no image, layer
//! or driver directory of the interrupted load is left, and the same load then succeeds.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata_graph::archive::tar::{Header, Kind, TarWriter};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;

/// A three-layer docker-archive whose middle layer is large (`mib` MiB of random data).
fn big_archive(dir: &Path, mib: usize) -> (std::path::PathBuf, Digest) {
    use rand::RngCore;
    let l0 = TarBuilder::new().file("first", b"1").build();
    let mut b = TarBuilder::new().dir("big");
    let mut rng = rand::rng();
    let mut chunk = vec![0u8; 8 << 20];
    for i in 0..mib / 8 {
        rng.fill_bytes(&mut chunk);
        b = b.file(&format!("big/{i}"), &chunk);
    }
    let l1 = b.build();
    let l2 = TarBuilder::new().file("last", b"3").build();
    let layers = [l0, l1, l2];
    let ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let cfg = strata_graph::graphtest::tars::image_config("x", &ids);
    let id = Digest::of(&cfg);
    let manifest = r#"[{"Config":"c.json","RepoTags":["crash/big:1"],"Layers":["0/layer.tar","1/layer.tar","2/layer.tar"]}]"#;
    let path = dir.join("big.tar");
    let mut w = TarWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    let mut add = |p: &str, data: &[u8]| {
        let h = Header::new(p, Kind::Regular, data.len() as u64);
        w.append(&h, Some(&mut &data[..])).unwrap();
    };
    add("c.json", &cfg);
    for (i, l) in layers.iter().enumerate() {
        add(&format!("{i}/layer.tar"), l);
    }
    add("manifest.json", manifest.as_bytes());
    w.finish().unwrap();
    (path, id)
}

fn entries(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_9_during_load_leaves_no_partial_image() {
    if !docker_available() {
        eprintln!("SKIPPED: the docker CLI is not installed");
        return;
    }
    let mut d = Daemon::start("overlay2");
    let (archive, id) = big_archive(d.dir.path(), 256);
    let layers = d.root().join("layers");
    let mut load = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .args(["load", "-q", "-i", archive.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first layer is committed and the big one is being unpacked.
    let t = Instant::now();
    loop {
        let committed = entries(&layers.join("sha256")).len();
        let in_progress = entries(&layers.join("tmp")).len();
        if committed >= 1 && in_progress >= 1 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the load never reached its second layer"
        );
        assert!(
            load.try_wait().unwrap().is_none(),
            "the load ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: killing our own child by PID.
    unsafe { libc::kill(d.child.pid() as i32, libc::SIGKILL) };
    let _ = d.child.0.wait();
    let status = load.wait().unwrap();
    assert!(
        !status.success(),
        "docker load must fail when the daemon dies"
    );
    // Mounts the dead daemon left are the restart's to clean; the data is what counts.
    d.restart();
    assert_eq!(
        d.ok(&["images", "-q"]).trim(),
        "",
        "a partial image survived"
    );
    assert_eq!(
        entries(&layers.join("sha256")),
        Vec::<String>::new(),
        "layers survived"
    );
    assert_eq!(entries(&layers.join("tmp")), Vec::<String>::new());
    let driver: Vec<String> = entries(&d.root().join("overlay2"))
        .into_iter()
        .filter(|e| e != "l")
        .collect();
    assert_eq!(driver, Vec::<String>::new(), "driver data survived");
    // The same load now succeeds whole.
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: crash/big:1"), "{out}");
    let got = d.ok(&["image", "inspect", "--format", "{{.Id}}", "crash/big:1"]);
    assert_eq!(got.trim(), id.to_string());
    assert_eq!(entries(&layers.join("sha256")).len(), 3);
    d.stop();
}
