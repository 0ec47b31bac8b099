//! Pull, push, login and search through the real docker CLI, against Debian's
//! `docker-registry` started in the test daemon's network namespace (loopback there, or the
//! daemon's bridge address for a registry that must not count as insecure).

mod common;

use common::registry::{have, make_certs, registry_available, run, Registry};
use common::Daemon;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;

/// docker with this test's own client configuration (credentials of `docker login`).
fn docker(d: &Daemon, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .args(args)
        .output()
        .expect("run docker")
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = docker(d, args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(d: &Daemon, args: &[&str]) -> String {
    let o = docker(d, args);
    assert!(
        !o.status.success(),
        "docker {args:?} should have failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    ok(d, &["image", "inspect", "-f", format, name])
        .trim()
        .to_string()
}

/// Bytes that do not compress (xorshift), so a layer keeps its size in the registry.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Loads a `docker save` archive of an image with these layers (bottom first) as `tag`;
/// returns the image ID.
fn load_image(d: &Daemon, layers: &[&[u8]], arch: &str, tag: &str) -> Digest {
    let ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", Digest::of(l)))
        .collect();
    let cfg = format!(
        r#"{{"architecture":"{arch}","os":"linux","created":"2024-01-02T03:04:05Z","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes();
    let archive = strata_graph::graphtest::tars::save_archive(&cfg, layers, &[tag]);
    let path = d.dir.path().join(format!("{}.tar", Digest::of(&cfg).hex()));
    std::fs::write(&path, archive).expect("write archive");
    ok(d, &["load", "-q", "-i", path.to_str().expect("utf-8")]);
    Digest::of(&cfg)
}

fn layer(name: &str, data: &[u8]) -> Vec<u8> {
    TarBuilder::new()
        .dir("data")
        .file_mode(&format!("data/{name}"), data, 0o644, 0, 0)
        .build()
}

/// The digest in push's last line (`TAG: digest: sha256:… size: N`).
fn pushed_digest(out: &str, tag: &str) -> Digest {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag}: digest: ")))
        .unwrap_or_else(|| panic!("no digest line for {tag} in {out}"));
    line.split_whitespace()
        .nth(2)
        .expect("digest")
        .parse()
        .expect("a digest")
}

fn daemon_log(d: &Daemon) -> String {
    std::fs::read_to_string(d.sock.with_extension("log")).unwrap_or_default()
}

/// Layer directories in the daemon's layer store.
fn layer_count(d: &Daemon) -> usize {
    d.images_layers().len()
}

trait Layers {
    fn images_layers(&self) -> Vec<PathBuf>;
}

impl Layers for Daemon {
    fn images_layers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("layers/sha256"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

#[test]
fn push_rmi_pull_gives_the_same_image() {
    if !registry_available() {
        return;
    }
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    let name = format!("{}/test/busybox", reg.host);
    ok(&d, &["tag", "test/busybox:1", &format!("{name}:1")]);
    ok(&d, &["tag", "test/busybox:1", &format!("{name}:2")]);

    // A tag, then all tags (the second push finds every layer there).
    let out = ok(&d, &["push", &format!("{name}:1")]);
    assert!(
        out.contains(&format!("The push refers to repository [{name}]")),
        "{out}"
    );
    assert!(out.contains("Pushed"), "{out}");
    let digest = pushed_digest(&out, "1");
    let out = ok(&d, &["push", "--all-tags", &name]);
    assert!(out.contains("Layer already exists"), "{out}");
    assert!(!out.contains("Pushed"), "nothing is sent twice: {out}");
    assert_eq!(
        pushed_digest(&out, "2"),
        digest,
        "same image, same manifest"
    );
    assert_eq!(
        inspect(&d, &format!("{name}:1"), "{{json .RepoDigests}}"),
        format!("[\"{name}@{digest}\"]")
    );

    // rmi, then pull: the same image ID and digest.
    ok(
        &d,
        &[
            "rmi",
            &format!("{name}:1"),
            &format!("{name}:2"),
            "test/busybox:1",
        ],
    );
    assert!(ok(&d, &["images", "-q"]).trim().is_empty());
    let out = ok(&d, &["pull", &format!("{name}:1")]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}:1")),
        "{out}"
    );
    assert_eq!(inspect(&d, &format!("{name}:1"), "{{.Id}}"), id);
    assert_eq!(
        inspect(&d, &format!("{name}:1"), "{{json .RepoDigests}}"),
        format!("[\"{name}@{digest}\"]")
    );
    let out = ok(&d, &["pull", &format!("{name}:1")]);
    assert!(
        out.contains(&format!("Status: Image is up to date for {name}:1")),
        "{out}"
    );

    // By digest, and every tag.
    ok(&d, &["rmi", &format!("{name}:1")]);
    assert!(
        ok(&d, &["images", "-q"]).trim().is_empty(),
        "the digest went with the last tag"
    );
    let out = ok(&d, &["pull", &format!("{name}@{digest}")]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(inspect(&d, &format!("{name}@{digest}"), "{{.Id}}"), id);
    let out = ok(
        &d,
        &[
            "images",
            "--digests",
            "--format",
            "{{.Repository}} {{.Tag}} {{.Digest}}",
        ],
    );
    assert_eq!(out.trim(), format!("{name} <none> {digest}"));
    let out = ok(&d, &["pull", "--all-tags", &name]);
    assert!(
        out.contains(&format!("{name}:1")) && out.contains(&format!("{name}:2")),
        "{out}"
    );
    let tags = inspect(&d, &id, "{{json .RepoTags}}");
    assert_eq!(tags, format!("[\"{name}:1\",\"{name}:2\"]"));

    // A container runs from the pulled image.
    if common::runc_available() {
        let out = ok(
            &d,
            &["run", "--rm", &format!("{name}:1"), "cat", "/etc/motd"],
        );
        assert_eq!(out, "hello from strata\n");
    }

    // Search (the distribution registry has no search API: its catalog is searched).
    let out = ok(
        &d,
        &[
            "search",
            "--format",
            "{{.Name}}",
            &format!("{}/busy", reg.host),
        ],
    );
    assert_eq!(out.trim(), "test/busybox");

    // Errors, worded as dockerd's.
    let err = fails(&d, &["pull", &format!("{}/test/nothing:1", reg.host)]);
    assert!(
        err.contains(&format!(
            "manifest for {}/test/nothing:1 not found: manifest unknown: manifest unknown",
            reg.host
        )),
        "{err}"
    );
    let err = fails(&d, &["push", &format!("{}/test/nothing:1", reg.host)]);
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {}/test/nothing",
            reg.host
        )),
        "{err}"
    );
    let err = fails(&d, &["pull", "127.0.0.1:1/test/x:1"]);
    assert!(
        err.contains("127.0.0.1:1") && err.contains("refused"),
        "{err}"
    );

    let events = d.events_so_far("type=image", "{{.Action}} {{.Actor.ID}}");
    assert!(events.contains(&format!("push {name}:1")), "{events}");
    assert!(events.contains(&format!("pull {name}:1")), "{events}");
}

#[test]
fn a_mirror_serves_docker_hub_images() {
    if !registry_available() {
        return;
    }
    let mut d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    ok(
        &d,
        &[
            "tag",
            "test/busybox:1",
            &format!("{}/library/busybox:1", reg.host),
        ],
    );
    ok(&d, &["push", &format!("{}/library/busybox:1", reg.host)]);
    d.restart_with(&["--registry-mirror", &format!("http://{}", reg.host)]);
    let info = ok(
        &d,
        &["info", "--format", "{{json .RegistryConfig.Mirrors}}"],
    );
    assert_eq!(info.trim(), format!("[\"http://{}/\"]", reg.host));
    ok(&d, &["rmi", "-f", &id]);
    // busybox is Docker Hub's library/busybox: the mirror answers (Docker Hub itself is not
    // reachable from here).
    let out = ok(&d, &["pull", "busybox:1"]);
    assert!(
        out.contains("Downloaded newer image for busybox:1"),
        "{out}"
    );
    assert_eq!(inspect(&d, "busybox:1", "{{.Id}}"), id);
}
