//! The `strata` client against a real daemon: every command the daemon issue lists, host
//! selection (-H, STRATA_HOST, DOCKER_HOST), an unreachable daemon, and TCP with
//! `--tlsverify` and client certificates generated here (both the strata and docker CLIs).

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};
use strata_graph::archive::tar::TarReader;

fn strata(host: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_HOST").env_remove("DOCKER_HOST");
    if let Some(h) = host {
        c.env("STRATA_HOST", h);
    }
    c.args(args).output().expect("run strata")
}

fn ok(host: &str, args: &[&str]) -> String {
    let o = strata(Some(host), args);
    assert!(
        o.status.success(),
        "strata {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(host: &str, args: &[&str]) -> String {
    let o = strata(Some(host), args);
    assert!(!o.status.success(), "strata {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn layer_digests(tar: &[u8]) -> Vec<String> {
    let mut r = TarReader::new(tar, false);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        let name = e.display();
        if name.ends_with("layer.tar") || name.starts_with("blobs/sha256/") {
            let data = r.read_payload_to_vec().unwrap();
            out.push(strata_graph::Digest::of(&data).to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn strata_cli_manages_images_and_containers() {
    let mut d = Daemon::start("overlay2");
    let h = format!("unix://{}", d.sock.display());
    let h = h.as_str();
    let (archive, diff_ids, image_id) = d.busybox();
    let work = d.dir.path().join("work");

    assert!(ok(h, &["version"]).contains("API version:       1.47"));
    assert_eq!(
        ok(h, &["version", "--format", "{{.Server.ApiVersion}}"]).trim(),
        "1.47"
    );
    let info = ok(h, &["info"]);
    assert!(info.contains("Storage Driver: overlay2"), "{info}");
    assert!(info.contains("test=yes"), "{info}");
    assert_eq!(
        ok(h, &["info", "--format", "{{.Driver}}"]).trim(),
        "overlay2"
    );

    let loaded = ok(h, &["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: test/busybox:1"), "{loaded}");
    let images = ok(h, &["images"]);
    let mut lines = images.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY     TAG       IMAGE ID       CREATED"),
        "{header}"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("test/busybox   1         "),
        "{images}"
    );
    assert_eq!(ok(h, &["images", "-q"]).trim(), &image_id.hex()[..12]);
    assert_eq!(
        ok(h, &["images", "-q", "--no-trunc"]).trim(),
        image_id.to_string()
    );
    ok(h, &["tag", "test/busybox:1", "localhost:5000/bb:two"]);
    let f = ok(
        h,
        &[
            "image",
            "ls",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=localhost:5000/*",
        ],
    );
    assert_eq!(f.trim(), "localhost:5000/bb:two");
    assert_eq!(
        ok(h, &["images", "--filter", "label=org.test=1", "-q"])
            .lines()
            .count(),
        1
    );
    assert_eq!(
        ok(h, &["images", "--filter", "label=org.test=2", "-q"]).trim(),
        ""
    );
    let hist = ok(h, &["history", "test/busybox:1"]);
    assert!(hist.starts_with("IMAGE          CREATED"), "{hist}");
    assert!(hist.contains("ADD motd"), "{hist}");
    let insp = ok(
        h,
        &[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            "test/busybox:1",
        ],
    );
    let want: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        serde_json::from_str::<Vec<String>>(insp.trim()).unwrap(),
        want
    );
    let saved = work.join("saved.tar");
    ok(
        h,
        &["save", "-o", saved.to_str().unwrap(), "test/busybox:1"],
    );
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(layer_digests(&std::fs::read(&saved).unwrap()), sorted);
    let e = fails(h, &["inspect", "nosuch"]);
    assert!(e.contains("No such object: nosuch"), "{e}");

    // import a tarball, with a message.
    let rootfs = strata_graph::graphtest::tars::TarBuilder::new()
        .file("hello", b"imported\n")
        .build();
    let tarball = work.join("rootfs.tar");
    std::fs::write(&tarball, &rootfs).unwrap();
    let id = ok(
        h,
        &[
            "import",
            "-m",
            "from a file",
            tarball.to_str().unwrap(),
            "imported:v1",
        ],
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert!(ok(h, &["history", "--format", "{{.Comment}}", "imported:v1"]).contains("from a file"));

    // Containers.
    let cid = ok(
        h,
        &[
            "create",
            "--name",
            "box",
            "-e",
            "X=1",
            "test/busybox:1",
            "sh",
            "-c",
            "true",
        ],
    );
    let cid = cid.trim();
    let ps = ok(h, &["ps", "-a"]);
    assert!(
        ps.starts_with("CONTAINER ID   IMAGE            COMMAND"),
        "{ps}"
    );
    assert!(
        ps.contains("\"sh -c true\"") && ps.contains("Created") && ps.contains("box"),
        "{ps}"
    );
    assert_eq!(ok(h, &["ps", "-aq", "--no-trunc"]).trim(), cid);
    assert_eq!(ok(h, &["ps", "-q"]).trim(), "");
    assert_eq!(
        ok(
            h,
            &["inspect", "--format", "{{.State.Status}} {{.Name}}", "box"]
        )
        .trim(),
        "created /box"
    );
    assert_eq!(
        ok(
            h,
            &[
                "container",
                "inspect",
                "-f",
                "{{index .Config.Env 0}}",
                &cid[..6]
            ]
        )
        .trim(),
        "X=1"
    );
    let local = work.join("in.txt");
    std::fs::write(&local, b"in\n").unwrap();
    ok(h, &["cp", local.to_str().unwrap(), "box:/etc/renamed.txt"]);
    ok(h, &["cp", local.to_str().unwrap(), "box:/"]);
    let back = work.join("back.txt");
    ok(h, &["cp", "box:/etc/renamed.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), b"in\n");
    let etc = work.join("etc-copy");
    ok(h, &["cp", "box:/etc", etc.to_str().unwrap()]);
    assert!(etc.join("motd").exists() && etc.join("renamed.txt").exists());
    let e = fails(h, &["cp", "box:/nosuch", work.to_str().unwrap()]);
    assert!(e.contains("Could not find the file /nosuch"), "{e}");
    let diff = ok(h, &["diff", "box"]);
    assert_eq!(diff, "C /etc\nA /etc/renamed.txt\nA /in.txt\n");
    let exported = work.join("box.tar");
    ok(h, &["export", "-o", exported.to_str().unwrap(), "box"]);
    let names = tar_names(std::fs::File::open(&exported).unwrap());
    assert!(
        names.contains(&"in.txt".to_string()) && names.contains(&"bin/busybox".to_string()),
        "{names:?}"
    );
    let new = ok(h, &["commit", "-c", "ENV Y=2", "box", "committed:1"]);
    assert!(new.trim().starts_with("sha256:"));
    assert!(ok(
        h,
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Env}}",
            "committed:1"
        ]
    )
    .contains("Y=2"));
    ok(h, &["rename", "box", "crate"]);
    // The first reference is untagged; the last one is refused while a container uses it.
    let o = strata(Some(h), &["rmi", "test/busybox:1", "localhost:5000/bb:two"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Untagged: test/busybox:1\n"
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("conflict: unable to remove repository reference \"localhost:5000/bb:two\" (must force)"), "{e}");
    let df = ok(h, &["system", "df"]);
    assert!(
        df.starts_with("TYPE            TOTAL     ACTIVE    SIZE"),
        "{df}"
    );
    assert!(
        df.lines()
            .any(|l| l.starts_with("Containers      1         0")),
        "{df}"
    );
    let ev = ok(
        h,
        &[
            "events",
            "--since",
            "0",
            "--until",
            &soon(),
            "--filter",
            "type=container",
        ],
    );
    assert!(
        ev.contains("container create") && ev.contains("container rename"),
        "{ev}"
    );
    let ev = ok(
        h,
        &[
            "system",
            "events",
            "--since",
            "0",
            "--until",
            &soon(),
            "--format",
            "{{.Type}} {{.Action}}",
            "--filter",
            "event=tag",
        ],
    );
    assert!(
        ev.lines().all(|l| l == "image tag") && ev.lines().count() >= 1,
        "{ev}"
    );
    assert_eq!(ok(h, &["rm", "crate"]).trim(), "crate");
    let e = fails(h, &["rm", "crate"]);
    assert!(e.contains("No such container: crate"), "{e}");
    let rmi = ok(h, &["rmi", "committed:1"]);
    assert!(
        rmi.contains("Untagged: committed:1") && rmi.contains("Deleted: sha256:"),
        "{rmi}"
    );
    let pruned = ok(h, &["image", "prune", "-a", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(ok(h, &["images", "-q"]).trim(), "");
    d.stop();
}

#[test]
fn host_selection_and_unreachable_daemon() {
    let d = Daemon::start("vfs");
    let good = format!("unix://{}", d.sock.display());
    let bad = "unix:///nonexistent/strata.sock";
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.env_remove("STRATA_HOST").env_remove("DOCKER_HOST");
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };
    // -H beats STRATA_HOST, which beats DOCKER_HOST.
    assert!(run(&[("STRATA_HOST", bad)], &["-H", &good, "version"])
        .status
        .success());
    assert!(run(
        &[("STRATA_HOST", &good), ("DOCKER_HOST", bad)],
        &["version"]
    )
    .status
    .success());
    assert!(run(&[("DOCKER_HOST", &good)], &["version"])
        .status
        .success());
    let o = run(&[("STRATA_HOST", bad), ("DOCKER_HOST", &good)], &["ps"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Cannot connect to the Strata daemon at unix:///nonexistent/strata.sock"),
        "{err}"
    );
}

/// Writes a CA, a server certificate for 127.0.0.1, and a client certificate, with openssl.
fn make_certs(dir: &Path, ca_name: &str) {
    let sh = |args: &str| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN={ca_name} -keyout ca-key.pem -out ca.pem 2>/dev/null"));
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server-key.pem -out server.csr 2>/dev/null");
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server-cert.pem 2>/dev/null");
    sh("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=client -keyout key.pem -out client.csr 2>/dev/null");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    sh("openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out cert.pem 2>/dev/null");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_with_tlsverify_and_client_certificates() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed (Debian package openssl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&certs, "strata-test-ca");
    make_certs(&other, "another-ca");
    let port = free_port();
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let root = dir.path().join("root");
    let sock = dir.path().join("s.sock");
    let tcp = format!("tcp://127.0.0.1:{port}");
    let _daemon = spawn(
        &root,
        &dir.path().join("pid"),
        &sock,
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &c("ca.pem"),
            "--tlscert",
            &c("server-cert.pem"),
            "--tlskey",
            &c("server-key.pem"),
            "-s",
            "vfs",
        ],
    )
    .expect("daemon with TLS");
    // Wait for the TCP listener too.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let strata_tls = |cert_dir: &Path, extra: &[&str]| {
        let f = |n: &str| cert_dir.join(n).to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "-H".into(),
            tcp.clone(),
            "--tlsverify".into(),
            "--tlscacert".into(),
            c("ca.pem"),
            "--tlscert".into(),
            f("cert.pem"),
            "--tlskey".into(),
            f("key.pem"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .env_remove("DOCKER_HOST")
            .env_remove("STRATA_HOST")
            .args(&args)
            .output()
            .unwrap()
    };
    let o = strata_tls(&certs, &["version", "--format", "{{.Server.ApiVersion}}"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.47");
    // A client certificate from another CA is refused.
    let o = strata_tls(&other, &["version"]);
    assert!(!o.status.success());
    // DOCKER_TLS_VERIFY + DOCKER_CERT_PATH, as docker reads them.
    std::fs::copy(certs.join("ca.pem"), other.join("ca.pem")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .env("DOCKER_HOST", &tcp)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &certs)
        .env_remove("STRATA_HOST")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "vfs");
    // Plain HTTP to the TLS port gets nothing useful.
    let o = Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/_ping")])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&o.stdout), "OK");
    if docker_available() {
        let docker = |cert_dir: &Path| {
            let f = |n: &str| cert_dir.join(n).to_string_lossy().into_owned();
            Command::new("docker")
                .args([
                    "-H",
                    &tcp,
                    "--tlsverify",
                    "--tlscacert",
                    &c("ca.pem"),
                    "--tlscert",
                    &f("cert.pem"),
                    "--tlskey",
                    &f("key.pem"),
                    "version",
                    "--format",
                    "{{.Server.APIVersion}}",
                ])
                .output()
                .unwrap()
        };
        let o = docker(&certs);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.47");
        assert!(!docker(&other).status.success());
    } else {
        eprintln!("SKIPPED (docker part): the docker CLI is not installed");
    }
}
