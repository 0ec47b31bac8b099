//! The real `docker` CLI against a real `strata daemon` on a temporary socket and data root:
//! version, info, load, images, tag, inspect, history, save (same layer digests), rmi.

use std::process::Command;
use std::time::{Duration, Instant};
use strata_graph::archive::tar::TarReader;
use strata_graph::graphtest::tars::TarBuilder;
use strata_graph::Digest;

mod common;
use common::*;

#[test]
fn docker_cli_manages_images() {
    if !docker_available() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    }
    let mut d = Daemon::start("overlay2");
    let v = d.ok(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(
        v.trim(),
        format!("{} 1.47 linux", env!("CARGO_PKG_VERSION"))
    );
    let info = d.ok(&[
        "info",
        "--format",
        "{{.Driver}}|{{json .Labels}}|{{.Images}}",
    ]);
    assert_eq!(info.trim(), "overlay2|[\"test=yes\"]|0");
    let plain_info = d.ok(&["info"]);
    assert!(
        plain_info.contains("Storage Driver: overlay2")
            && plain_info.contains("Native Overlay Diff: true"),
        "{plain_info}"
    );

    let work = tempfile::tempdir().expect("tempdir");
    let (archive, diff_ids, id) = busybox_archive(work.path());
    let stamp = || {
        format!(
            "{:.3}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs_f64()
        )
    };
    let t0 = stamp();
    let out = d.ok(&["load", "-i", archive.to_str().expect("path")]);
    assert!(out.contains("Loaded image: test/busybox:1"), "{out}");
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(images.trim(), format!("test/busybox:1 {}", &id.hex()[..12]));

    d.ok(&["tag", "test/busybox:1", "localhost:5000/other:2"]);
    let inspect = d.ok(&["image", "inspect", "localhost:5000/other:2", "--format", "{{.Id}} {{.GraphDriver.Name}} {{len .RootFS.Layers}} {{index .Config.Labels \"org.test\"}}"]);
    assert_eq!(inspect.trim(), format!("{id} overlay2 2 1"));
    let hist = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "test/busybox:1",
    ]);
    assert_eq!(
        hist.lines().collect::<Vec<_>>(),
        vec!["CMD [\"sh\"]", "ADD motd", "ADD busybox"]
    );

    // save: the layers come back with the digests they were loaded with.
    let saved = work.path().join("saved.tar");
    d.ok(&[
        "save",
        "-o",
        saved.to_str().expect("path"),
        "localhost:5000/other:2",
    ]);
    let bytes = std::fs::read(&saved).expect("read saved");
    let mut r = TarReader::new(&bytes[..], false);
    let mut layer_digests = Vec::new();
    while let Some(e) = r.next_entry().expect("entry") {
        let data = r.read_payload_to_vec().expect("payload");
        if e.display().ends_with("/layer.tar") {
            layer_digests.push(Digest::of(&data));
        }
    }
    layer_digests.sort();
    let mut want = diff_ids.clone();
    want.sort();
    assert_eq!(
        layer_digests, want,
        "save reproduces the loaded layers' digests"
    );

    // rmi: untag first, then delete with the layers.
    let o = d.ok(&["rmi", "localhost:5000/other:2"]);
    assert_eq!(o.trim(), "Untagged: localhost:5000/other:2");
    let o = d.ok(&["rmi", "test/busybox:1"]);
    assert!(
        o.contains("Untagged: test/busybox:1") && o.contains(&format!("Deleted: {id}")),
        "{o}"
    );
    assert_eq!(
        o.matches("Deleted:").count(),
        3,
        "the image and its two layers: {o}"
    );
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");

    // Events: everything above, replayed between two times, and filtered.
    let t1 = stamp();
    let fmt = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let ev = d.ok(&["events", "--since", &t0, "--until", &t1, "--format", fmt]);
    let want = [
        "image load test/busybox:1".to_string(),
        "image tag localhost:5000/other:2".into(),
        "image save localhost:5000/other:2".into(),
        "image untag localhost:5000/other:2".into(),
        "image untag test/busybox:1".into(),
        format!("image delete {id}"),
    ];
    assert_eq!(
        ev.lines().collect::<Vec<_>>(),
        want.iter().map(|s| s.as_str()).collect::<Vec<_>>()
    );
    let ev = d.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "event=untag",
        "--format",
        fmt,
    ]);
    assert_eq!(ev.lines().count(), 2, "{ev}");

    // Errors come back as dockerd's (texts and codes compared with dockerd 20.10.24 side by
    // side: rmi/tag of a missing image name it with its tag, 409 for an ID with several tags).
    let o = d.docker(&["rmi", "nosuch"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch:latest"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = d.docker(&["image", "inspect", "nosuch:1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch:1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bad = work.path().join("bad.tar");
    std::fs::write(&bad, &std::fs::read(&archive).expect("read")[..3000]).expect("write");
    let o = d.docker(&["load", "-i", bad.to_str().expect("path")]);
    assert!(!o.status.success(), "a truncated archive is refused");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid archive"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(d.ok(&["images", "-q"]).trim(), "", "nothing partial left");

    // SIGTERM stops the daemon cleanly and removes its socket.
    let status = d.stop();
    assert!(status.success(), "daemon exit: {status}");
    assert!(!d.sock.exists());
}

#[test]
fn a_second_daemon_is_refused_and_other_drivers_layers_are_not_abandoned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let mut a =
        spawn(&p.join("root"), &p.join("a.pid"), &p.join("a.sock"), &[]).expect("first daemon");
    let a_pid = a.pid().to_string();
    assert_eq!(
        std::fs::read_to_string(p.join("a.pid"))
            .expect("pidfile")
            .trim(),
        a_pid
    );
    // Same data root, another pidfile.
    let err = spawn(&p.join("root"), &p.join("b.pid"), &p.join("b.sock"), &[])
        .expect_err("same data root");
    assert!(
        err.contains("data root lock") && err.contains(&a_pid),
        "{err}"
    );
    // Same pidfile, another data root.
    let err = spawn(&p.join("root2"), &p.join("a.pid"), &p.join("c.sock"), &[])
        .expect_err("same pidfile");
    assert!(err.contains("pidfile") && err.contains(&a_pid), "{err}");
    assert!(a.stop().0.success());
    assert!(
        !p.join("a.pid").exists(),
        "the pidfile goes with the daemon"
    );
    // A data root holding vfs layers is not silently opened with overlay2.
    let root = p.join("root3");
    std::fs::create_dir_all(root.join("vfs/dir/some-layer")).expect("mkdir");
    let err =
        spawn(&root, &p.join("d.pid"), &p.join("d.sock"), &[]).expect_err("other driver's layers");
    assert!(
        err.contains("vfs") && err.contains("overlay2") && err.contains("--storage-driver vfs"),
        "{err}"
    );
    let mut d = spawn(
        &root,
        &p.join("d.pid"),
        &p.join("d.sock"),
        &["--storage-driver", "vfs"],
    )
    .expect("explicit driver starts");
    assert!(d.stop().0.success());
    // A driver this kernel lacks is refused with the reason, as dockerd refuses it.
    if strata_aufs::unavailable().is_some() {
        let err = spawn(
            &p.join("root4"),
            &p.join("e.pid"),
            &p.join("e.sock"),
            &["--storage-driver", "aufs"],
        )
        .expect_err("no aufs here");
        assert!(
            err.contains("aufs is not supported on this host") && err.contains("/proc/filesystems"),
            "{err}"
        );
    }
}

#[test]
fn tcp_import_and_system_df() {
    if !docker_available() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let sock = p.join("s.sock");
    let mut child = spawn(&p.join("root"), &p.join("pid"), &sock, &["-H", &tcp]).expect("daemon");
    let t = Instant::now();
    let docker = |args: &[&str]| -> String {
        let o = Command::new("docker")
            .env("DOCKER_HOST", &tcp)
            .args(args)
            .output()
            .expect("docker");
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    while Command::new("docker")
        .env("DOCKER_HOST", &tcp)
        .arg("version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "TCP listener never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        docker(&["version", "--format", "{{.Server.APIVersion}}"]).trim(),
        "1.47"
    );
    let log = std::fs::read_to_string(sock.with_extension("log")).expect("log");
    assert!(
        log.contains("without --tlsverify is insecure"),
        "a loud warning for plain TCP: {log}"
    );
    // docker import of a compressed tarball.
    let rootfs = TarBuilder::new()
        .dir("etc")
        .file("etc/hostname", b"imported\n")
        .build();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &rootfs).expect("gzip");
    let tarball = p.join("rootfs.tar.gz");
    std::fs::write(&tarball, gz.finish().expect("gzip")).expect("write");
    let out = docker(&["import", tarball.to_str().expect("path"), "imp/one:v1"]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    assert_eq!(
        docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).trim(),
        "imp/one:v1"
    );
    let inspect = docker(&[
        "image",
        "inspect",
        "imp/one:v1",
        "--format",
        "{{index .RootFS.Layers 0}}",
    ]);
    assert_eq!(
        inspect.trim(),
        Digest::of(&rootfs).to_string(),
        "the layer is the uncompressed tarball"
    );
    assert_eq!(
        docker(&["history", "--format", "{{.Comment}}", "imp/one:v1"]).trim(),
        "Imported from -"
    );
    let df = docker(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.lines().any(|l| l == "Images 1"), "{df}");
    let (status, took) = child.stop();
    assert!(
        status.success() && took < Duration::from_secs(5),
        "{status} after {took:?}"
    );
}

#[test]
fn daemon_json_is_checked_and_reloaded_on_sighup() {
    if !docker_available() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let conf = p.join("daemon.json");
    let cf = conf.to_str().expect("path").to_string();
    // Refused at start: a setting both as flag and in the file, an unknown key, bad JSON.
    std::fs::write(&conf, r#"{"labels": ["from=file"]}"#).expect("write");
    let err = spawn(
        &p.join("root"),
        &p.join("pid"),
        &p.join("s.sock"),
        &["--config-file", &cf, "--label", "from=flag"],
    )
    .expect_err("conflict");
    assert!(
        err.contains("specified both as a flag and in the configuration file")
            && err.contains("labels"),
        "{err}"
    );
    std::fs::write(&conf, r#"{"labels": [], "bogus-key": 1}"#).expect("write");
    let err = spawn(
        &p.join("root"),
        &p.join("pid"),
        &p.join("s.sock"),
        &["--config-file", &cf],
    )
    .expect_err("unknown key");
    assert!(
        err.contains("don't match any configuration option: bogus-key"),
        "{err}"
    );
    std::fs::write(&conf, "{\n  \"labels\": [\"a=1\"],\n}").expect("write");
    let err = spawn(
        &p.join("root"),
        &p.join("pid"),
        &p.join("s.sock"),
        &["--config-file", &cf],
    )
    .expect_err("bad JSON");
    assert!(err.contains("line 3 column 1"), "{err}");
    // Started from the file; SIGHUP reloads labels.
    std::fs::write(&conf, r#"{"labels": ["a=1"], "debug": false}"#).expect("write");
    let sock = p.join("s.sock");
    let mut d = spawn(
        &p.join("root"),
        &p.join("pid"),
        &sock,
        &["--config-file", &cf],
    )
    .expect("daemon");
    let labels = || {
        let o = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .args(["info", "--format", "{{json .Labels}} {{.Debug}}"])
            .output()
            .expect("docker");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(labels(), r#"["a=1"] false"#);
    let hup_until = |want: &str| {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
        let t = Instant::now();
        while labels() != want {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "reload did not happen: {}",
                labels()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::fs::write(&conf, r#"{"labels": ["a=2", "b=3"], "debug": true}"#).expect("write");
    hup_until(r#"["a=2","b=3"] true"#);
    // An invalid file on reload keeps the old configuration, and says why.
    std::fs::write(&conf, r#"{"labels": ["c=4"], "nonsense": true}"#).expect("write");
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(labels(), r#"["a=2","b=3"] true"#);
    let log = std::fs::read_to_string(sock.with_extension("log")).expect("log");
    assert!(
        log.contains("keeping the current configuration") && log.contains("nonsense"),
        "{log}"
    );
    assert!(d.stop().0.success());
}

#[test]
fn fd_socket_activation() {
    if !docker_available() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    }
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let sock = p.join("activated.sock");
    // The service manager's side: a listening socket, passed as fd 3 with LISTEN_FDS=1 and
    // LISTEN_PID set to the daemon's PID (`exec` keeps the shell's PID).
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args([
            "daemon",
            "-H",
            "fd://",
            "--bridge",
            "none",
            "--iptables=false",
        ])
        .args(["--data-root"])
        .arg(p.join("root"))
        .arg("--pidfile")
        .arg(p.join("pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.join("log")).expect("log"));
    // SAFETY: only dup2 runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut d = Running(cmd.spawn().expect("spawn"));
    drop(listener);
    let t = Instant::now();
    loop {
        let o = Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .args(["version", "--format", "{{.Server.APIVersion}}"])
            .output()
            .expect("docker");
        if o.status.success() {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1.47");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no answer on the activated socket: {}",
            std::fs::read_to_string(p.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(p.join("log"))
        .expect("log")
        .contains("passed by the service manager"));
    assert!(d.stop().0.success());
    // Without passed sockets, fd:// is a clear error.
    let err = spawn(
        &p.join("root2"),
        &p.join("pid2"),
        &p.join("x.sock"),
        &["-H", "fd://"],
    )
    .expect_err("no sockets");
    assert!(err.contains("LISTEN_FDS"), "{err}");
}
