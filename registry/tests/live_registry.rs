//! The client against a real registry: Debian's `docker-registry` (distribution 2.8) started
//! on 127.0.0.1 for the test, an image pushed into it with `skopeo` from a `docker save`
//! archive built here. Skipped, saying so, where either program is missing.

#[path = "../../tests/common/certs.rs"]
mod certs;
use certs::{make_certs, run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;
use strata_registry::client::{RegistryClient, RegistryError, Scheme};
use strata_registry::credentials::AuthConfig;
use strata_registry::manifest::{Compression, Fetched};

/// A registry process, stopped by PID when dropped.
struct Registry {
    child: Child,
    host: String,
    root: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A registry on a free loopback port, storing under `dir`; `extra` is more of its YAML
/// config (TLS, auth). It is ready when a client with `scheme` and `auth` reaches it.
fn start_registry_with(dir: &Path, extra: &str, scheme: Scheme, auth: AuthConfig) -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let root = dir.join("data");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
            root.display()
        ),
    )
    .expect("config");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let r = Registry {
        child,
        host: format!("127.0.0.1:{port}"),
        root,
    };
    let c = RegistryClient::new(&r.host, scheme, auth);
    let t = Instant::now();
    while c.ping().is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    r
}

fn start_registry(dir: &Path) -> Registry {
    start_registry_with(dir, "", Scheme::Http, AuthConfig::default())
}

/// A one-layer `docker save` archive of `name`: (archive, config bytes, layer tar).
fn image_archive(dir: &Path, name: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let layer = TarBuilder::new()
        .dir("data")
        .file_mode("data/payload", &payload, 0o644, 0, 0)
        .build();
    let diff = Digest::of(&layer);
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    )
    .into_bytes();
    let path = dir.join("image.tar");
    let archive = strata_graph::graphtest::tars::save_archive(&cfg, &[&layer], &[name]);
    std::fs::write(&path, archive).expect("write");
    (path, cfg, layer)
}

fn push(archive: &Path, dest: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn manifests_and_blobs_from_a_real_registry() {
    if !have("docker-registry") || !have("skopeo") {
        eprintln!("SKIPPED: needs docker-registry and skopeo (Debian packages)");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let reg = start_registry(t.path());
    let (archive, cfg, _layer) = image_archive(t.path(), "test/bb:1");
    push(&archive, &format!("{}/test/bb:1", reg.host));
    let c = RegistryClient::new(&reg.host, Scheme::Http, AuthConfig::default());

    // By tag, then by the digest it had.
    let (fetched, digest, bytes) = c.manifest("test/bb", "1").expect("manifest");
    let Fetched::Manifest(m) = fetched else {
        panic!("a manifest, not an index");
    };
    assert_eq!(Digest::of(&bytes), digest);
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.layers[0].compression().ok(), Some(Compression::Gzip));
    assert_eq!(
        m.config.digest,
        Digest::of(&cfg),
        "the config is pushed as it was"
    );
    let (again, d2, _) = c
        .manifest("test/bb", &digest.to_string())
        .expect("by digest");
    assert_eq!(d2, digest);
    assert!(matches!(again, Fetched::Manifest(_)));

    // Blobs stream with their digest; a download resumes from an offset.
    let mut got = Vec::new();
    c.blob_to("test/bb", &m.config.digest, 0, &mut got)
        .expect("config blob");
    assert_eq!(got, cfg);
    let layer = &m.layers[0];
    let mut w = strata_graph::digest::DigestWriter::new(Vec::new());
    let n = c
        .blob_to("test/bb", &layer.digest, 0, &mut w)
        .expect("layer blob");
    assert_eq!((n, w.digest()), (layer.size, layer.digest));
    let whole = w.into_inner();
    let mut tail = Vec::new();
    c.blob_to("test/bb", &layer.digest, 100, &mut tail)
        .expect("resumed");
    assert_eq!(tail, whole[100..]);

    // Unknown names say so.
    assert!(matches!(
        c.manifest("test/bb", "nope"),
        Err(RegistryError::ManifestUnknown(_))
    ));
    let missing = Digest::of(b"not there");
    assert!(matches!(
        c.blob_to("test/bb", &missing, 0, &mut std::io::sink()),
        Err(RegistryError::BlobUnknown(_))
    ));
    let other_digest = "sha256:".to_string() + &"0".repeat(64);
    assert!(matches!(
        c.manifest("test/bb", &other_digest),
        Err(RegistryError::ManifestUnknown(_))
    ));

    // A blob tampered with in the registry's storage: its bytes no longer hash to the digest
    // the manifest names, which is what a pull checks while writing.
    let hex = layer.digest.hex();
    let data = reg
        .root
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .expect("the blob's file");
    f.write_all(b"tampered").expect("tamper");
    drop(f);
    let mut w = strata_graph::digest::DigestWriter::new(std::io::sink());
    c.blob_to("test/bb", &layer.digest, 0, &mut w)
        .expect("served anyway");
    assert_ne!(
        w.digest(),
        layer.digest,
        "the tampering shows in the digest"
    );
}

/// A rustls client config trusting the CA at `ca` (none: no roots at all).
fn tls_config(ca: Option<&Path>) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca.crt") {
            roots.add(c.expect("a certificate")).expect("a root");
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn ann() -> AuthConfig {
    AuthConfig {
        username: "ann".into(),
        password: "s3cret".into(),
        ..Default::default()
    }
}

#[test]
fn tls_and_basic_auth() {
    if !["docker-registry", "skopeo", "openssl", "htpasswd"]
        .iter()
        .all(|p| have(p))
    {
        eprintln!("SKIPPED: needs docker-registry, skopeo, openssl and htpasswd (apache2-utils)");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    make_certs(dir, "127.0.0.1");
    run("htpasswd", &["-Bbc", "htpasswd", "ann", "s3cret"], dir);
    let extra = format!(
        "  tls:\n    certificate: {d}/srv.crt\n    key: {d}/srv.key\nauth:\n  htpasswd:\n    realm: strata-test\n    path: {d}/htpasswd\n",
        d = dir.display()
    );
    let ca = dir.join("ca.crt");
    let reg = start_registry_with(dir, &extra, Scheme::Https(tls_config(Some(&ca))), ann());
    // skopeo pushes with the same credentials and CA (its cert dir holds ca.crt).
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::copy(&ca, certs.join("ca.crt")).expect("copy ca");
    let (archive, cfg, _) = image_archive(dir, "test/auth:1");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-creds", "ann:s3cret"])
        .arg(format!("--dest-cert-dir={}", certs.display()))
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{}/test/auth:1", reg.host))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let good = RegistryClient::new(&reg.host, Scheme::Https(tls_config(Some(&ca))), ann());
    let (fetched, _, _) = good.manifest("test/auth", "1").expect("manifest with auth");
    let Fetched::Manifest(m) = fetched else {
        panic!("a manifest");
    };
    let mut got = Vec::new();
    good.blob_to("test/auth", &m.config.digest, 0, &mut got)
        .expect("blob with auth");
    assert_eq!(got, cfg);
    // No credentials, or wrong ones: dockerd's words.
    let anon = RegistryClient::new(
        &reg.host,
        Scheme::Https(tls_config(Some(&ca))),
        AuthConfig::default(),
    );
    assert!(matches!(
        anon.ping(),
        Err(RegistryError::NoBasicCredentialsFor { .. })
    ));
    let wrong = AuthConfig {
        password: "nope".into(),
        ..ann()
    };
    let bad = RegistryClient::new(&reg.host, Scheme::Https(tls_config(Some(&ca))), wrong);
    assert!(matches!(
        bad.manifest("test/auth", "1"),
        Err(RegistryError::Unauthorized)
    ));
    // Without the CA the certificate is refused, and the error says why.
    let untrusting = RegistryClient::new(&reg.host, Scheme::Https(tls_config(None)), ann());
    match untrusting.ping() {
        Err(RegistryError::Connect { source, .. }) => {
            assert!(source.to_string().contains("UnknownIssuer"), "{source}")
        }
        other => panic!("expected a certificate error, got {:?}", other.err()),
    }
}
