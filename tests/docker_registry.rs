//! Pull, push, login and search through the real docker CLI, against Debian's
//! `docker-registry` started in the test daemon's network namespace (loopback there, or the
//! daemon's bridge address for a registry that must not count as insecure).

mod common;

use common::certs::{make_certs, run};
use common::registry::{have, registry_available, Registry};
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
    d.docker_env(
        args,
        &[("DOCKER_CONFIG", &d.dir.path().join("docker-config"))],
    )
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    common::succeeded(docker(d, args), "docker", args)
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

/// A daemon with a plain registry in its namespace and the busybox test image loaded;
/// returns them with the image's ID.
fn daemon_with_registry() -> (Daemon, Registry, String) {
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    (d, reg, id)
}

#[test]
fn push_rmi_pull_gives_the_same_image() {
    if !registry_available() {
        return;
    }
    let (d, reg, id) = daemon_with_registry();
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

    // A push without X-Registry-Auth and without a body: dockerd 20.10's 400.
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST", "--unix-socket"])
        .arg(&d.sock)
        .arg(format!("http://strata/images/{name}/push?tag=1"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("Bad parameters and missing X-Registry-Auth: EOF") && text.ends_with("400"),
        "{text}"
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
    let (mut d, reg, id) = daemon_with_registry();
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

/// The default bridge's gateway: an address of the daemon's namespace that is not loopback,
/// so a registry there is not insecure by default.
fn bridge_ip(d: &Daemon) -> String {
    ok(
        d,
        &[
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn tls_client_certificates_and_login() {
    if !registry_available() || !have("openssl") || !have("htpasswd") {
        eprintln!("SKIPPED: needs openssl and htpasswd (apache2-utils) too");
        return;
    }
    let certs_d = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start_with(
        "overlay2",
        &[
            "--registry-certs-dir",
            certs_d.path().to_str().expect("utf-8"),
        ],
    );
    let ip = bridge_ip(&d);
    let rdir = d.dir.path().join("registry");
    std::fs::create_dir_all(&rdir).expect("dir");
    make_certs(&rdir, &ip);
    run("htpasswd", &["-Bbc", "htpasswd", "ann", "s3cret"], &rdir);
    let extra = format!(
        "  tls:\n    certificate: {d}/srv.crt\n    key: {d}/srv.key\n    clientcas:\n      - {d}/ca.crt\nauth:\n  htpasswd:\n    realm: strata-test\n    path: {d}/htpasswd\n",
        d = rdir.display()
    );
    let reg = Registry::start(&d.netns(), &rdir, &ip, &extra);
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    let name = format!("{}/test/busybox:1", reg.host);
    ok(&d, &["tag", "test/busybox:1", &name]);
    let login = |pw: &str| docker(&d, &["login", "-u", "ann", "-p", pw, &reg.host]);

    // Not insecure: the certificate must be trusted.
    let o = login("s3cret");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("UnknownIssuer"),
        "{err}"
    );
    // The CA in certs.d; the registry also wants a client certificate.
    let host_dir = certs_d.path().join(&reg.host);
    std::fs::create_dir_all(&host_dir).expect("certs.d");
    std::fs::copy(rdir.join("ca.crt"), host_dir.join("ca.crt")).expect("ca");
    let o = login("s3cret");
    assert!(!o.status.success(), "no client certificate yet");
    std::fs::copy(rdir.join("client.cert"), host_dir.join("client.cert")).expect("cert");
    std::fs::copy(rdir.join("client.key"), host_dir.join("client.key")).expect("key");

    // Wrong password, as dockerd says it; then the right one.
    let o = login("wrong");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "login attempt to https://{}/v2/ failed with status: 401 Unauthorized",
            reg.host
        )),
        "{err}"
    );
    let o = login("s3cret");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Login Succeeded"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let cfg = std::fs::read_to_string(d.dir.path().join("docker-config/config.json"))
        .expect("the CLI stored the credentials");
    assert!(cfg.contains(&reg.host), "{cfg}");

    // The CLI sends them with push and pull.
    ok(&d, &["push", &name]);
    ok(&d, &["rmi", &name, "test/busybox:1"]);
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id);
    ok(&d, &["logout", &reg.host]);
    ok(&d, &["rmi", &name]);
    let err = fails(&d, &["pull", &name]);
    // dockerd 20.10 says `Head "…/manifests/1": no basic auth credentials` (it asks with HEAD
    // first); Strata asks with GET.
    assert!(
        err.contains(&format!(
            "Get \"https://{}/v2/test/busybox/manifests/1\": no basic auth credentials",
            reg.host
        )),
        "{err}"
    );
    assert!(ok(&d, &["images", "-q"]).trim().is_empty());
}

/// The layer blobs of `repo:tag` in the registry (bottom first), read from inside the
/// daemon's namespace.
fn layer_blobs(d: &Daemon, reg: &Registry, repo: &str, tag: &str) -> Vec<(Digest, u64)> {
    let c = reg.client();
    let (repo, tag) = (repo.to_string(), tag.to_string());
    common::in_netns(&d.netns(), move || {
        match c.manifest(&repo, &tag).expect("manifest").0 {
            strata_registry::manifest::Fetched::Manifest(m) => {
                m.layers.iter().map(|l| (l.digest, l.size)).collect()
            }
            _ => panic!("a manifest"),
        }
    })
}

#[test]
fn a_tampered_or_missing_blob_is_refused_and_nothing_is_left() {
    if !registry_available() {
        return;
    }
    let (d, reg, id) = daemon_with_registry();
    let name = format!("{}/test/busybox:1", reg.host);
    ok(&d, &["tag", "test/busybox:1", &name]);
    ok(&d, &["push", &name]);
    ok(&d, &["rmi", &name, "test/busybox:1"]);
    assert_eq!(layer_count(&d), 0);
    let blobs = layer_blobs(&d, &reg, "test/busybox", "1");
    let (big, _) = *blobs.iter().max_by_key(|b| b.1).expect("layers");
    let path = reg.blob_path(&big);
    let original = std::fs::read(&path).expect("blob");
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).expect("tamper");

    let err = fails(&d, &["pull", &name]);
    assert!(
        err.contains(&format!(
            "filesystem layer verification failed for digest {big}"
        )),
        "{err}"
    );
    assert!(
        ok(&d, &["images", "-q"]).trim().is_empty(),
        "no partial image"
    );
    assert_eq!(layer_count(&d), 0, "no layer left behind");

    // Missing: the manifest names a blob the registry does not have.
    std::fs::remove_file(&path).expect("remove blob");
    let err = fails(&d, &["pull", &name]);
    assert!(err.contains(&big.to_string()), "{err}");
    assert_eq!(layer_count(&d), 0);

    // Put back, the next pull succeeds.
    std::fs::write(&path, &original).expect("restore");
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id);
}

#[test]
fn concurrent_pulls_download_and_extract_shared_layers_once() {
    if !registry_available() {
        return;
    }
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    let base = layer("base", &noise(24 << 20, 7));
    let a_top = layer("a", b"first image\n");
    let b_top = layer("b", b"second image\n");
    let a = load_image(&d, &[&base, &a_top], "amd64", "test/a:1");
    let b = load_image(&d, &[&base, &b_top], "amd64", "test/b:1");
    let (na, nb) = (
        format!("{}/test/a:1", reg.host),
        format!("{}/test/b:1", reg.host),
    );
    ok(&d, &["tag", "test/a:1", &na]);
    ok(&d, &["tag", "test/b:1", &nb]);
    ok(&d, &["push", &na]);
    let out = ok(&d, &["push", &nb]);
    assert!(
        out.contains("Mounted from test/a"),
        "the shared layer is mounted: {out}"
    );
    ok(&d, &["rmi", &na, &nb, "test/a:1", "test/b:1"]);
    assert_eq!(layer_count(&d), 0);
    let log_before = daemon_log(&d).len();

    let pulls: Vec<_> = [na.clone(), nb.clone()]
        .into_iter()
        .map(|n| {
            let sock = d.sock.clone();
            std::thread::spawn(move || {
                Command::new("docker")
                    .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                    .args(["pull", &n])
                    .output()
                    .expect("docker pull")
            })
        })
        .collect();
    for p in pulls {
        let o = p.join().expect("pull thread");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(inspect(&d, &na, "{{.Id}}"), a.to_string());
    assert_eq!(inspect(&d, &nb, "{{.Id}}"), b.to_string());
    let log = daemon_log(&d)[log_before..].to_string();
    let base_diff = Digest::of(&base).to_string();
    let extracted = log
        .lines()
        .filter(|l| l.contains("layer registered") && l.contains(&base_diff))
        .count();
    assert_eq!(extracted, 1, "the shared layer is extracted once:\n{log}");
    let blobs = layer_blobs(&d, &reg, "test/a", "1");
    let downloads = log
        .lines()
        .filter(|l| l.contains("starting a download") && l.contains(&blobs[0].0.to_string()))
        .count();
    assert_eq!(downloads, 1, "the shared blob is downloaded once:\n{log}");
    // 3 layers in all (the base and two tops).
    assert_eq!(layer_count(&d), 3);
}

/// A TCP relay inside the daemon's namespace from `127.0.0.1:port` to `upstream`; it cuts
/// the first response longer than `cut_after` bytes at that point (when set), and records
/// every request head.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    heads: Arc<Mutex<Vec<String>>>,
    relayed: Arc<AtomicU64>,
}

impl Relay {
    /// `slow`: a pause after each 64 KiB relayed (about 30 MB/s), so a test can act
    /// mid-download.
    fn start(d: &Daemon, upstream: String, port: u16, cut_after: Option<u64>, slow: bool) -> Relay {
        let stop = Arc::new(AtomicBool::new(false));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let relayed = Arc::new(AtomicU64::new(0));
        let (s, h, r) = (stop.clone(), heads.clone(), relayed.clone());
        let port = common::in_netns(&d.netns(), move || {
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind relay");
            let port = l.local_addr().expect("addr").port();
            // Threads started here stay in the namespace.
            std::thread::spawn(move || {
                let cut_done = Arc::new(AtomicBool::new(cut_after.is_none()));
                for c in l.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut down) = c else { continue };
                    let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                        continue;
                    };
                    let (h, r, s, cut_done) = (h.clone(), r.clone(), s.clone(), cut_done.clone());
                    std::thread::spawn(move || {
                        let mut d2 = down.try_clone().expect("clone");
                        let mut u2 = up.try_clone().expect("clone");
                        let heads = h.clone();
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 65536];
                            while let Ok(n) = d2.read(&mut buf) {
                                if n == 0 || u2.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                if let Ok(mut v) = heads.lock() {
                                    v.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                                }
                            }
                            let _ = u2.shutdown(std::net::Shutdown::Write);
                        });
                        let mut buf = [0u8; 65536];
                        let mut n_conn = 0u64;
                        while let Ok(n) = up.read(&mut buf) {
                            if n == 0 || s.load(Ordering::SeqCst) {
                                break;
                            }
                            n_conn += n as u64;
                            if let Some(limit) = cut_after {
                                if n_conn > limit && !cut_done.swap(true, Ordering::SeqCst) {
                                    break;
                                }
                            }
                            if down.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            r.fetch_add(n as u64, Ordering::SeqCst);
                            if slow {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                        let _ = down.shutdown(std::net::Shutdown::Both);
                        let _ = up.shutdown(std::net::Shutdown::Both);
                    });
                }
            });
            port
        });
        Relay {
            port,
            stop,
            heads,
            relayed,
        }
    }

    /// Stops accepting and cuts every connection (the registry "goes away").
    fn stop(&self, d: &Daemon) {
        self.stop.store(true, Ordering::SeqCst);
        let port = self.port;
        common::in_netns(&d.netns(), move || {
            let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        });
    }
}

#[test]
fn an_interrupted_pull_resumes() {
    if !registry_available() {
        return;
    }
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    let big = layer("big", &noise(32 << 20, 11));
    let id = load_image(&d, &[&big], "amd64", "test/big:1");
    ok(
        &d,
        &["tag", "test/big:1", &format!("{}/test/big:1", reg.host)],
    );
    ok(&d, &["push", &format!("{}/test/big:1", reg.host)]);
    ok(
        &d,
        &["rmi", &format!("{}/test/big:1", reg.host), "test/big:1"],
    );
    let (blob, size) = layer_blobs(&d, &reg, "test/big", "1")[0];

    // A connection cut mid-blob: the pull itself carries on from where it was (Range).
    let relay = Relay::start(&d, reg.host.clone(), 0, Some(8 << 20), false);
    let name = format!("127.0.0.1:{}/test/big:1", relay.port);
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id.to_string());
    let heads = relay.heads.lock().expect("heads").join("\n");
    assert!(
        heads.contains("Range: bytes="),
        "the retry asked for the rest: {heads}"
    );
    relay.stop(&d);
    ok(&d, &["rmi", &name]);

    // The registry goes away mid-pull: a clear error, no image; the partial download stays
    // and the next pull only fetches the rest.
    let relay = Relay::start(&d, reg.host.clone(), 0, None, true);
    let name = format!("127.0.0.1:{}/test/big:1", relay.port);
    let port = relay.port;
    let partial = d
        .root()
        .join(format!("distribution/downloads/{}.partial", blob.hex()));
    let sock = d.sock.clone();
    let pulling = std::thread::spawn(move || {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .args(["pull", &name])
            .output()
            .expect("docker pull")
    });
    let t = std::time::Instant::now();
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < (4 << 20) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the download did not start"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    relay.stop(&d);
    let o = pulling.join().expect("pull");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "the pull should fail when the registry goes away"
    );
    assert!(err.contains("127.0.0.1"), "a clear error: {err}");
    let kept = std::fs::metadata(&partial)
        .expect("the partial download is kept")
        .len();
    assert!(kept > 0 && kept < size, "{kept} of {size}");
    let name = format!("127.0.0.1:{port}/test/big:1");
    assert!(
        ok(&d, &["images", "-q"]).trim().is_empty(),
        "no partial image"
    );
    let relay = Relay::start(&d, reg.host.clone(), port, None, false);
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id.to_string());
    let heads = relay.heads.lock().expect("heads").join("\n");
    assert!(
        heads.contains(&format!("Range: bytes={kept}-")),
        "resumed at {kept}: {heads}"
    );
    assert!(
        relay.relayed.load(Ordering::SeqCst) < size,
        "only the rest was fetched"
    );
    assert!(!partial.exists(), "the finished download is cleaned up");
    relay.stop(&d);
}

#[test]
fn a_multi_platform_index_gives_the_right_image() {
    if !registry_available() {
        return;
    }
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    let amd = load_image(&d, &[&layer("arch", b"amd64\n")], "amd64", "test/amd:1");
    let arm = load_image(&d, &[&layer("arch", b"arm64\n")], "arm64", "test/arm:1");
    let mut entries = Vec::new();
    for (local, arch) in [("test/amd:1", "amd64"), ("test/arm:1", "arm64")] {
        let name = format!("{}/test/multi:{arch}", reg.host);
        ok(&d, &["tag", local, &name]);
        let out = ok(&d, &["push", &name]);
        let digest = pushed_digest(&out, arch);
        let size: u64 = out
            .lines()
            .find(|l| l.starts_with(&format!("{arch}: digest:")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("size");
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":{size},"digest":"{digest}","platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{}]}}"#,
        entries.join(",")
    );
    let c = reg.client();
    common::in_netns(&d.netns(), move || {
        c.put_manifest(
            "test/multi",
            "all",
            strata_registry::manifest::DOCKER_LIST,
            index.as_bytes(),
        )
        .expect("put the index")
    });
    ok(&d, &["rmi", "-f", &amd.to_string(), &arm.to_string()]);
    let name = format!("{}/test/multi:all", reg.host);
    let host = ok(&d, &["version", "-f", "{{.Server.Arch}}"])
        .trim()
        .to_string();
    ok(&d, &["pull", &name]);
    let want = if host == "arm64" { arm } else { amd };
    assert_eq!(inspect(&d, &name, "{{.Id}}"), want.to_string());
    ok(&d, &["pull", "--platform", "linux/arm64", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), arm.to_string());
    assert_eq!(inspect(&d, &name, "{{.Architecture}}"), "arm64");
    let err = fails(&d, &["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{err}"
    );
}

#[test]
fn zstd_layers_pull_and_push_back_without_recompression() {
    if !registry_available() || !have("skopeo") || !have("nsenter") {
        eprintln!("SKIPPED: needs skopeo and nsenter too");
        return;
    }
    let d = Daemon::start("overlay2");
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    let (archive, _, _) = d.busybox();
    let o = Command::new("nsenter")
        .arg(format!("--net={}", d.netns().display()))
        .args([
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "zstd",
        ])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{}/test/zs:1", reg.host))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = reg.client();
    let m = common::in_netns(&d.netns(), move || {
        match c.manifest("test/zs", "1").expect("manifest").0 {
            strata_registry::manifest::Fetched::Manifest(m) => m,
            _ => panic!("a manifest"),
        }
    });
    assert!(
        m.layers.iter().all(|l| l.media_type.ends_with("+zstd")),
        "skopeo pushed zstd layers: {m:?}"
    );
    let name = format!("{}/test/zs:1", reg.host);
    ok(&d, &["pull", &name]);
    // skopeo wrote an OCI config for the OCI manifest zstd needs: that is the image ID.
    assert_eq!(inspect(&d, &name, "{{.Id}}"), m.config.digest.to_string());
    if common::runc_available() {
        assert_eq!(
            ok(&d, &["run", "--rm", &name, "cat", "/etc/motd"]),
            "hello from strata\n"
        );
    }
    // Pushed to another repository of the registry: the zstd blobs are mounted as they are.
    let copy = format!("{}/test/zs-copy:1", reg.host);
    ok(&d, &["tag", &name, &copy]);
    let out = ok(&d, &["push", &copy]);
    assert!(out.contains("Mounted from test/zs"), "{out}");
    assert!(!out.contains("Pushed"), "nothing compressed again: {out}");
    let c = reg.client();
    let m2 = common::in_netns(&d.netns(), move || {
        match c.manifest("test/zs-copy", "1").expect("manifest").0 {
            strata_registry::manifest::Fetched::Manifest(m) => m,
            _ => panic!("a manifest"),
        }
    });
    let digests = |m: &strata_registry::manifest::Manifest| {
        m.layers.iter().map(|l| l.digest).collect::<Vec<_>>()
    };
    assert_eq!(digests(&m2), digests(&m), "the same blobs");
    assert_eq!(m2.config.digest, m.config.digest);
}

/// The strata CLI with its own credentials file.
fn strata(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("STRATA_HOST", format!("unix://{}", d.sock.display()))
        .env("STRATA_CONFIG", d.dir.path().join("strata-config"))
        .env_remove("DOCKER_HOST")
        .args(args)
        .output()
        .expect("run strata")
}

fn strata_ok(d: &Daemon, args: &[&str]) -> String {
    common::succeeded(strata(d, args), "strata", args)
}

#[test]
fn the_strata_cli_logs_in_pushes_pulls_and_searches() {
    if !registry_available() || !have("htpasswd") {
        eprintln!("SKIPPED: needs htpasswd (apache2-utils) too");
        return;
    }
    let d = Daemon::start("overlay2");
    let rdir = d.dir.path().join("registry");
    std::fs::create_dir_all(&rdir).expect("dir");
    run("htpasswd", &["-Bbc", "htpasswd", "bob", "pw123"], &rdir);
    let reg = Registry::start(
        &d.netns(),
        &rdir,
        "127.0.0.1",
        &format!(
            "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}/htpasswd\n",
            rdir.display()
        ),
    );
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    let name = format!("{}/test/busybox:1", reg.host);
    strata_ok(&d, &["tag", "test/busybox:1", &name]);

    let o = strata(&d, &["push", &name]);
    assert!(!o.status.success(), "no credentials yet");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no basic auth credentials"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = strata(&d, &["login", "-u", "bob", "-p", "nope", &reg.host]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("401 Unauthorized"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = strata_ok(&d, &["login", "-u", "bob", "-p", "pw123", &reg.host]);
    assert_eq!(out, "Login Succeeded\n");
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.dir.path().join("strata-config/config.json")).expect("config.json"),
    )
    .expect("json");
    assert_eq!(
        cfg["auths"][&reg.host]["auth"], "Ym9iOnB3MTIz",
        "docker's layout"
    );

    let out = strata_ok(&d, &["push", &name]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    strata_ok(&d, &["rmi", &name, "test/busybox:1"]);
    let out = strata_ok(&d, &["pull", &name]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id);
    let out = strata_ok(&d, &["pull", "-q", &name]);
    assert_eq!(out.trim(), name);
    let out = strata_ok(
        &d,
        &[
            "search",
            "--format",
            "{{.Name}}",
            &format!("{}/test", reg.host),
        ],
    );
    assert_eq!(out.trim(), "test/busybox");
    let out = strata_ok(&d, &["logout", &reg.host]);
    assert_eq!(
        out.trim(),
        format!("Removing login credentials for {}", reg.host)
    );
    strata_ok(&d, &["rmi", &name]);
    let o = strata(&d, &["pull", &name]);
    assert!(!o.status.success(), "logged out");
    // --config names another directory.
    let other = d.dir.path().join("other-config");
    let other_s = other.to_str().expect("utf-8");
    strata_ok(
        &d,
        &[
            "--config", other_s, "login", "-u", "bob", "-p", "pw123", &reg.host,
        ],
    );
    assert!(other.join("config.json").exists());
    strata_ok(&d, &["--config", other_s, "pull", &name]);
}

/// An HTTP proxy inside the daemon's namespace that knows one name: every target it is asked
/// for (`CONNECT host:port`, or an absolute `http://host:port/...` URL) is reached at
/// `upstream`. Records the request lines it served.
struct Proxy {
    seen: Arc<Mutex<Vec<String>>>,
}

fn read_head(s: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    Some(head)
}

fn pipe(mut a: std::net::TcpStream, mut b: std::net::TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

impl Proxy {
    fn start_on(d: &Daemon, upstream: String, port: u16) -> Proxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        common::in_netns(&d.netns(), move || {
            let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind proxy");
            std::thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(mut c) = c else { continue };
                    let (s, upstream) = (s.clone(), upstream.clone());
                    std::thread::spawn(move || {
                        let Some(head) = read_head(&mut c) else {
                            return;
                        };
                        let text = String::from_utf8_lossy(&head).into_owned();
                        let line = text.lines().next().unwrap_or("").to_string();
                        s.lock().expect("lock").push(line.clone());
                        let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                            return;
                        };
                        if line.starts_with("CONNECT ") {
                            let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                        } else {
                            // Absolute form to origin form.
                            let mut parts = line.splitn(3, ' ');
                            let (m, url, v) = (
                                parts.next().unwrap_or(""),
                                parts.next().unwrap_or(""),
                                parts.next().unwrap_or(""),
                            );
                            let path = url
                                .strip_prefix("http://")
                                .and_then(|r| r.find('/').map(|i| &r[i..]))
                                .unwrap_or("/");
                            let rest = &text[line.len()..];
                            let _ = up.write_all(format!("{m} {path} {v}{rest}").as_bytes());
                        }
                        pipe(c, up);
                    });
                }
            });
        });
        Proxy { seen }
    }
}

#[test]
fn registries_are_reached_through_the_daemons_proxy() {
    if !registry_available() {
        return;
    }
    // The daemon's namespace is new, so the proxy's port there is free whatever it is.
    let proxy_url = "http://127.0.0.1:3128";
    // A name only the proxy knows (127.0.0.1 and localhost are never proxied, as Go decides
    // for dockerd); the proxy sends every request to the registry.
    let host = "registry.strata.test:5000";
    let d = Daemon::start_with_env(
        "overlay2",
        &["--insecure-registry", host],
        &[
            ("HTTP_PROXY", proxy_url),
            ("HTTPS_PROXY", proxy_url),
            ("NO_PROXY", "example.internal"),
        ],
    );
    let reg = Registry::plain(&d.netns(), &d.dir.path().join("registry"));
    let proxy = Proxy::start_on(&d, reg.host.clone(), 3128);
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    let name = format!("{host}/test/busybox:1");
    ok(&d, &["tag", "test/busybox:1", &name]);
    ok(&d, &["push", &name]);
    ok(&d, &["rmi", &name, "test/busybox:1"]);
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id);
    let seen = proxy.seen.lock().expect("lock").join("\n");
    // TLS first through a tunnel (an insecure registry), then plain HTTP by absolute URL.
    assert!(seen.contains(&format!("CONNECT {host} HTTP/1.1")), "{seen}");
    assert!(
        seen.contains(&format!(
            "GET http://{host}/v2/test/busybox/manifests/1 HTTP/1.1"
        )),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("PUT http://{host}/v2/test/busybox/manifests/1")),
        "{seen}"
    );
    // Loopback registries are reached directly.
    let before = proxy.seen.lock().expect("lock").len();
    let direct = format!("{}/test/busybox:1", reg.host);
    ok(&d, &["tag", &name, &direct]);
    ok(&d, &["push", &direct]);
    assert_eq!(
        proxy.seen.lock().expect("lock").len(),
        before,
        "not proxied"
    );
}

#[test]
fn registry_settings_reload_on_sighup() {
    if !registry_available() {
        return;
    }
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("daemon.json");
    std::fs::write(&cfg, r#"{"max-concurrent-downloads": 2}"#).expect("write");
    let d = Daemon::start_with("overlay2", &["--config-file", cfg.to_str().expect("utf-8")]);
    let info = |f: &str| ok(&d, &["info", "--format", f]).trim().to_string();
    assert_eq!(info("{{json .RegistryConfig.Mirrors}}"), "[]");
    std::fs::write(
        &cfg,
        r#"{"registry-mirrors": ["https://mirror.example:5000"], "insecure-registries": ["10.9.0.0/16", "myreg.example:5000"], "max-concurrent-downloads": 4}"#,
    )
    .expect("write");
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(d.child.pid() as i32, libc::SIGHUP) };
    let t = std::time::Instant::now();
    while info("{{json .RegistryConfig.Mirrors}}") == "[]" {
        assert!(t.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        info("{{json .RegistryConfig.Mirrors}}"),
        "[\"https://mirror.example:5000/\"]"
    );
    let cidrs = info("{{json .RegistryConfig.InsecureRegistryCIDRs}}");
    assert!(
        cidrs.contains("10.9.0.0/16") && cidrs.contains("127.0.0.0/8"),
        "{cidrs}"
    );
    assert!(
        info("{{json .RegistryConfig.IndexConfigs}}").contains("myreg.example:5000"),
        "named insecure registries are listed"
    );
    // A bad value is refused and the settings stay.
    std::fs::write(&cfg, r#"{"insecure-registries": ["http://bad"]}"#).expect("write");
    // SAFETY: as above.
    unsafe { libc::kill(d.child.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(info("{{json .RegistryConfig.Mirrors}}").contains("mirror.example"));
    assert!(daemon_log(&d).contains("insecure registry http://bad is not valid"));
}

/// Base64 (`url`: the URL-safe alphabet without padding, as JWTs use).
fn b64(data: &[u8], url: bool) -> String {
    let abc: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(abc[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            for _ in c.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// A token server (the distribution spec's Bearer flow) inside the daemon's namespace: it
/// checks Basic credentials `user:password` and answers a JWT (RS256, signed with openssl,
/// the certificate in `x5c`) granting the scopes asked for. Counts the tokens it gave.
fn token_server(d: &Daemon, dir: &Path, user_password: &str) -> (u16, Arc<AtomicU64>) {
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.crt",
            "-days",
            "1",
            "-subj",
            "/CN=strata-test-token",
        ],
        dir,
    );
    run(
        "openssl",
        &[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ],
        dir,
    );
    let der = std::fs::read(dir.join("token.der")).expect("der");
    let header = b64(
        format!(
            r#"{{"alg":"RS256","typ":"JWT","x5c":["{}"]}}"#,
            b64(&der, false)
        )
        .as_bytes(),
        true,
    );
    let want = format!("Basic {}", b64(user_password.as_bytes(), false));
    let given = Arc::new(AtomicU64::new(0));
    let (dir, g) = (dir.to_path_buf(), given.clone());
    let port = common::in_netns(&d.netns(), move || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { continue };
                let Some(head) = read_head(&mut c) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let authorized = text.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == want
                });
                if !authorized {
                    let _ = c.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let target = text.split_whitespace().nth(1).unwrap_or("");
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let mut access = Vec::new();
                for kv in query.split('&') {
                    if let Some(scope) = kv.strip_prefix("scope=") {
                        let scope = scope
                            .replace("%3A", ":")
                            .replace("%2C", ",")
                            .replace("%2F", "/");
                        let mut p = scope.splitn(3, ':');
                        let (t, name, actions) = (
                            p.next().unwrap_or(""),
                            p.next().unwrap_or(""),
                            p.next().unwrap_or(""),
                        );
                        let acts: Vec<String> =
                            actions.split(',').map(|a| format!("\"{a}\"")).collect();
                        access.push(format!(
                            r#"{{"type":"{t}","name":"{name}","actions":[{}]}}"#,
                            acts.join(",")
                        ));
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("time")
                    .as_secs();
                let claims = format!(
                    r#"{{"iss":"strata-test-issuer","sub":"ann","aud":"strata-registry","exp":{},"nbf":{},"iat":{now},"jti":"t{n}","access":[{}]}}"#,
                    now + 600,
                    now - 10,
                    access.join(",")
                );
                let input = format!("{header}.{}", b64(claims.as_bytes(), true));
                let ipath = dir.join(format!("input-{n}"));
                std::fs::write(&ipath, &input).expect("input");
                let sig = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(dir.join("token.key"))
                    .arg(&ipath)
                    .output()
                    .expect("openssl dgst");
                let token = format!("{input}.{}", b64(&sig.stdout, true));
                let body = format!(r#"{{"token":"{token}","expires_in":600}}"#);
                g.fetch_add(1, Ordering::SeqCst);
                let _ = c.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        port
    });
    (port, given)
}

#[test]
fn bearer_token_auth() {
    if !registry_available() || !have("openssl") {
        eprintln!("SKIPPED: needs openssl too");
        return;
    }
    let d = Daemon::start("overlay2");
    let rdir = d.dir.path().join("registry");
    std::fs::create_dir_all(&rdir).expect("dir");
    let (tport, given) = token_server(&d, &rdir, "ann:s3cret");
    let reg = Registry::start(
        &d.netns(),
        &rdir,
        "127.0.0.1",
        &format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: strata-registry\n    issuer: strata-test-issuer\n    rootcertbundle: {}/token.crt\n",
            rdir.display()
        ),
    );
    d.load_busybox();
    let id = inspect(&d, "test/busybox:1", "{{.Id}}");
    let name = format!("{}/test/busybox:1", reg.host);
    ok(&d, &["tag", "test/busybox:1", &name]);
    let err = fails(&d, &["login", "-u", "ann", "-p", "wrong", &reg.host]);
    assert!(err.contains("401 Unauthorized"), "{err}");
    let out = ok(&d, &["login", "-u", "ann", "-p", "s3cret", &reg.host]);
    assert!(out.contains("Login Succeeded"), "{out}");
    ok(&d, &["push", &name]);
    ok(&d, &["rmi", &name, "test/busybox:1"]);
    ok(&d, &["pull", &name]);
    assert_eq!(inspect(&d, &name, "{{.Id}}"), id);
    assert!(
        given.load(Ordering::SeqCst) >= 3,
        "tokens were asked for and used"
    );
    ok(&d, &["logout", &reg.host]);
    ok(&d, &["rmi", &name]);
    fails(&d, &["pull", &name]);
}
