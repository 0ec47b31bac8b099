//! `docker build` (the classic builder: `DOCKER_BUILDKIT=0`, and what `/_ping` advertises)
//! against Strata: instructions, stages, the cache, `.dockerignore`, build args, errors.

mod common;

use common::Daemon;
use std::path::Path;
use std::process::{Command, Output};

fn build(d: &Daemon, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .args(args)
        .output()
        .expect("docker build")
}

fn built(d: &Daemon, args: &[&str]) -> String {
    let o = build(d, args);
    assert!(
        o.status.success(),
        "docker build {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("dirs");
    }
    std::fs::write(p, text).expect("write");
}

const DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=test/busybox:1
FROM ${BASE} AS base
ARG GREETING=hello
ENV APP=/app \
    GREETING=$GREETING
WORKDIR $APP
COPY files/ ./
COPY --chmod=0755 run.sh /usr/local/bin/
RUN echo "$GREETING from build" > /app/built.txt && cat /app/built.txt
LABEL org.test.built=yes
EXPOSE 8080
VOLUME /data
USER nobody
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD true
CMD ["cat", "/app/built.txt"]

FROM base AS unused
RUN exit 1

FROM test/busybox:1
COPY --from=base /app/built.txt /copied.txt
COPY --from=base /app/ /app-copy/
"#;

#[test]
fn a_dockerfile_builds_caches_and_invalidates_from_the_right_step() {
    if !common::can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let ctx = d.dir.path().join("ctx");
    write(&ctx, "Dockerfile", DOCKERFILE);
    write(&ctx, "files/a.txt", "a\n");
    write(&ctx, "files/sub/b.txt", "b\n");
    write(&ctx, "files/skip.log", "excluded\n");
    write(&ctx, "files/keep.log", "re-included\n");
    write(&ctx, "run.sh", "#!/bin/sh\necho run\n");
    write(&ctx, ".dockerignore", "**/*.log\n!files/keep.log\n");
    let c = ctx.to_str().expect("utf-8");

    let out = built(&d, &["-t", "built:1", "--build-arg", "GREETING=hi", c]);
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("hi from build"), "RUN output is shown: {out}");
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    assert!(
        !out.contains("exit 1"),
        "the unused stage is skipped: {out}"
    );
    assert_eq!(
        d.ok(&["run", "--rm", "built:1", "cat", "/copied.txt"]),
        "hi from build\n"
    );
    let files = d.ok(&["run", "--rm", "built:1", "ls", "/app-copy"]);
    assert_eq!(
        files.split_whitespace().collect::<Vec<_>>(),
        ["a.txt", "built.txt", "keep.log", "sub"]
    );

    // The first stage's image carries the config.
    let base = built(
        &d,
        &[
            "-q",
            "--target",
            "base",
            "-t",
            "built:base",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    assert!(base.trim().starts_with("sha256:"), "{base}");
    let cfg = d.ok(&["image", "inspect", "-f", "{{json .Config}}", "built:base"]);
    let v: serde_json::Value = serde_json::from_str(&cfg).expect("config");
    assert_eq!(v["WorkingDir"], "/app");
    assert_eq!(v["User"], "nobody");
    assert_eq!(v["Labels"]["org.test.built"], "yes");
    assert!(v["ExposedPorts"]["8080/tcp"].is_object());
    assert!(v["Volumes"]["/data"].is_object());
    assert_eq!(v["StopSignal"], "SIGINT");
    assert_eq!(v["Cmd"], serde_json::json!(["cat", "/app/built.txt"]));
    assert!(v["Env"].to_string().contains("GREETING=hi"));
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--user",
            "0",
            "built:base",
            "stat",
            "-c",
            "%a %u",
            "/usr/local/bin/run.sh",
            "/app/a.txt"
        ]),
        "755 0\n644 0\n"
    );

    // Unchanged: every step from cache.
    let again = built(&d, &["-t", "built:1", "--build-arg", "GREETING=hi", c]);
    let steps = again.matches("Step ").count();
    let cached = again.matches("Using cache").count();
    let from_steps = again.matches(" : FROM ").count();
    // ARG changes no image: it shows the image it stays on.
    let arg_steps = again.matches(" : ARG ").count();
    assert_eq!(
        cached,
        steps - from_steps - arg_steps,
        "every other step cached: {again}"
    );
    // One file changed: the COPY of files/ and what follows run again, not what precedes.
    write(&ctx, "files/a.txt", "changed\n");
    let changed = built(&d, &["-t", "built:1", "--build-arg", "GREETING=hi", c]);
    let lines: Vec<&str> = changed.lines().collect();
    let copy_at = lines
        .iter()
        .position(|l| l.contains("COPY files/ ./"))
        .expect("the COPY step");
    assert!(
        lines[..copy_at].iter().any(|l| l.contains("Using cache")),
        "WORKDIR came from cache: {changed}"
    );
    assert!(
        !lines[copy_at + 1].contains("Using cache"),
        "the COPY ran again: {changed}"
    );
    // Another build arg: the RUN that sees it runs again.
    let other = built(&d, &["-t", "built:2", "--build-arg", "GREETING=ho", c]);
    assert!(other.contains("ho from build"), "{other}");
    assert_eq!(
        d.ok(&["run", "--rm", "built:2", "cat", "/copied.txt"]),
        "ho from build\n"
    );
    // --no-cache runs everything.
    let fresh = built(&d, &["--no-cache", "--build-arg", "GREETING=hi", c]);
    assert!(!fresh.contains("Using cache"), "{fresh}");
    // --cache-from: with the build cache gone, an image's history serves as the cache, and a
    // whole matching chain gives the same image.
    let first = built(
        &d,
        &[
            "-q",
            "--target",
            "base",
            "-t",
            "cf:1",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    std::fs::remove_file(d.root().join("builder/cache.json")).expect("drop the build cache");
    let no_cache_from = built(&d, &["--target", "base", "--build-arg", "GREETING=hi", c]);
    assert!(!no_cache_from.contains("Using cache"), "{no_cache_from}");
    std::fs::remove_file(d.root().join("builder/cache.json")).expect("drop the build cache");
    let again = built(
        &d,
        &[
            "--target",
            "base",
            "--cache-from",
            "cf:1",
            "-t",
            "cf:2",
            "--build-arg",
            "GREETING=hi",
            c,
        ],
    );
    let steps = again.matches("Step ").count();
    let plain = again.matches(" : FROM ").count() + again.matches(" : ARG ").count();
    assert_eq!(
        again.matches("Using cache").count(),
        steps - plain,
        "{again}"
    );
    assert_eq!(
        d.ok(&["image", "inspect", "-f", "{{.Id}}", "cf:2"]).trim(),
        first.trim()
    );

    // No build container is left behind.
    assert!(d.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn build_errors_are_clear_and_leave_nothing() {
    if !common::can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let ctx = d.dir.path().join("ctx");
    let c = ctx.to_str().expect("utf-8").to_string();
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nRUN true\nFOO bar\n",
    );
    let o = build(&d, &[&c]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("dockerfile parse error line 3: unknown instruction: FOO"),
        "{err}"
    );
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nRUN echo before && exit 3\n",
    );
    let o = build(&d, &[&c]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(
        all.contains("The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3"),
        "{all}"
    );
    assert!(
        d.ok(&["ps", "-aq"]).trim().is_empty(),
        "no dangling container"
    );
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nCOPY ../outside /x\n",
    );
    let o = build(&d, &[&c]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("forbidden path outside the build context"));
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nCOPY nothing-here /x\n",
    );
    let o = build(&d, &[&c]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing-here"));
}

#[test]
fn the_strata_cli_builds_with_add_shell_and_a_compressed_context() {
    if !common::can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let ctx = d.dir.path().join("ctx");
    // A tar ADD unpacks, made with tar(1) here.
    write(&ctx, "payload/inner.txt", "from the archive\n");
    let o = Command::new("tar")
        .args(["-C"])
        .arg(&ctx)
        .args(["-czf", "bundle.tar.gz", "payload"])
        .current_dir(&ctx)
        .output()
        .expect("tar");
    assert!(o.status.success());
    std::fs::remove_dir_all(ctx.join("payload")).expect("rm");
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nADD bundle.tar.gz /opt/\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nARG WHO\nRUN echo \"hello ${WHO:-nobody}\" > /hello\nCOPY secret* /\n",
    );
    write(&ctx, "secret.txt", "should not be sent\n");
    write(&ctx, ".dockerignore", "secret.txt\n");
    let c = ctx.to_str().expect("utf-8");
    let o = d.strata(&["build", "-t", "sb:1", "--build-arg", "WHO=strata", c]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The only COPY source is excluded, so the COPY finds nothing: dockerd's error.
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("secret*"), "{text}");
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nADD bundle.tar.gz /opt/\nSHELL [\"/bin/sh\", \"-e\", \"-c\"]\nARG WHO\nRUN echo \"hello ${WHO:-nobody}\" > /hello\n",
    );
    let o = d.strata(&["build", "-t", "sb:1", "--build-arg", "WHO=strata", c]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("Successfully tagged sb:1"), "{text}");
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "sb:1",
            "cat",
            "/opt/payload/inner.txt",
            "/hello"
        ]),
        "from the archive\nhello strata\n"
    );
    let shell = d.ok(&["image", "inspect", "-f", "{{json .Config.Shell}}", "sb:1"]);
    assert_eq!(shell.trim(), r#"["/bin/sh","-e","-c"]"#);
    // The default of the build arg; a failing RUN's code comes back as strata's.
    let o = d.strata(&["build", "-q", c]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        d.ok(&["run", "--rm", &id, "cat", "/hello"]),
        "hello nobody\n"
    );
    write(&ctx, "Dockerfile", "FROM test/busybox:1\nRUN exit 7\n");
    assert_eq!(d.strata(&["build", c]).status.code(), Some(7));

    // WORKDIR makes its directory; a RUN runs there.
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nWORKDIR /made/here\nRUN pwd > out\n",
    );
    assert!(d.strata(&["build", "-t", "wd:1", c]).status.success());
    assert_eq!(
        d.ok(&["run", "--rm", "wd:1", "cat", "/made/here/out"]),
        "/made/here\n"
    );
    // Also without a RUN: the image has the directory.
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nWORKDIR /only/dir\n",
    );
    assert!(d.strata(&["build", "-t", "wd:2", c]).status.success());
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-w",
            "/",
            "wd:2",
            "stat",
            "-c",
            "%F %a %u",
            "/only/dir"
        ]),
        "directory 755 0\n"
    );

    // --platform: the local amd64 base fits linux/amd64; for linux/arm64 it must be pulled
    // (from Docker Hub here, which this machine cannot reach).
    write(&ctx, "Dockerfile", "FROM test/busybox:1\nRUN true\n");
    if d.ok(&["version", "-f", "{{.Server.Arch}}"]).trim() == "amd64" {
        assert!(d
            .strata(&["build", "--platform", "linux/amd64", c])
            .status
            .success());
        let o = d.strata(&["build", "--platform", "linux/arm64", c]);
        assert!(!o.status.success(), "an arm64 base is not here");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("docker.io"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // ONBUILD triggers run in the build that uses the image, and are not inherited.
    write(
        &ctx,
        "Dockerfile",
        "FROM test/busybox:1\nONBUILD RUN echo triggered > /trig\n",
    );
    assert!(d.strata(&["build", "-t", "trig:1", c]).status.success());
    write(&ctx, "Dockerfile", "FROM trig:1\nRUN cat /trig\n");
    let o = d.strata(&["build", "-t", "child:1", c]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && text.contains("# Executing 1 build trigger"),
        "{text}"
    );
    assert!(text.contains("triggered"), "{text}");
    assert_eq!(
        d.ok(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.OnBuild}}",
            "child:1"
        ])
        .trim(),
        "null"
    );

    // Compressed contexts straight to the API: gzip and zstd.
    write(&ctx, "Dockerfile", "FROM test/busybox:1\nCOPY note /note\n");
    write(&ctx, "note", "compressed\n");
    for (flag, tag) in [("-z", "zipped:1"), ("--zstd", "zstd:1")] {
        let archive = d
            .dir
            .path()
            .join(format!("ctx-{}.tar", tag.replace(':', "-")));
        let o = Command::new("tar")
            .arg("-C")
            .arg(&ctx)
            .arg(flag)
            .arg("-cf")
            .arg(&archive)
            .args(["Dockerfile", "note"])
            .output()
            .expect("tar");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("curl")
            .args(["-s", "-X", "POST", "--data-binary"])
            .arg(format!("@{}", archive.display()))
            .args(["-H", "Content-Type: application/x-tar", "--unix-socket"])
            .arg(&d.sock)
            .arg(format!("http://strata/build?t={tag}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(&format!("Successfully tagged {tag}")),
            "{text}"
        );
        assert_eq!(d.ok(&["run", "--rm", tag, "cat", "/note"]), "compressed\n");
    }

    // A context whose .dockerignore excludes the Dockerfile still builds with it; COPY does
    // not see it.
    write(&ctx, "Dockerfile", "FROM test/busybox:1\nCOPY . /all/\n");
    write(&ctx, ".dockerignore", "Dockerfile\n*.tar\n*.gz\n");
    let plain = d.dir.path().join("ignored.tar");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&ctx)
        .arg("-cf")
        .arg(&plain)
        .args(["Dockerfile", ".dockerignore", "note"])
        .output()
        .expect("tar");
    assert!(o.status.success());
    let o = Command::new("curl")
        .args(["-s", "-X", "POST", "--data-binary"])
        .arg(format!("@{}", plain.display()))
        .args(["-H", "Content-Type: application/x-tar", "--unix-socket"])
        .arg(&d.sock)
        .arg("http://strata/build?t=ignored:1")
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Successfully tagged ignored:1"), "{text}");
    let listed = d.ok(&["run", "--rm", "ignored:1", "ls", "-A", "/all"]);
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        [".dockerignore", "note"]
    );
}

/// Serves `files` (path → content) over HTTP on the daemon namespace's loopback; returns the
/// port.
fn http_server(d: &Daemon, files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use std::io::{Read, Write};
    common::in_netns(&d.netns(), move || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).map(|n| n == 0).unwrap_or(true) {
                        break;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let _ = c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
                        let _ = c.write_all(body);
                    }
                    None => {
                        let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            }
        });
        port
    })
}

#[test]
fn add_downloads_urls_without_unpacking_them() {
    if !common::can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let mut gz = Vec::new();
    {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        e.write_all(b"not unpacked").expect("gzip");
        e.finish().expect("gzip");
    }
    let port = http_server(
        &d,
        vec![
            ("/files/note.txt", b"downloaded\n".to_vec()),
            ("/bundle.tgz", gz.clone()),
        ],
    );
    let ctx = d.dir.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        &format!("FROM test/busybox:1\nADD http://127.0.0.1:{port}/files/note.txt /dl/\nADD http://127.0.0.1:{port}/bundle.tgz /dl/\n"),
    );
    let c = ctx.to_str().expect("utf-8");
    let out = d.strata(&["build", "-t", "dl:1", c]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        d.ok(&["run", "--rm", "dl:1", "cat", "/dl/note.txt"]),
        "downloaded\n"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "dl:1",
            "stat",
            "-c",
            "%a %s",
            "/dl/note.txt",
            "/dl/bundle.tgz"
        ]),
        format!("600 11\n600 {}\n", gz.len())
    );
    write(
        &ctx,
        "Dockerfile",
        &format!("FROM test/busybox:1\nADD http://127.0.0.1:{port}/missing /x\n"),
    );
    let o = d.strata(&["build", c]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn scratch_wildcards_chown_entrypoint_exec_form_and_labels() {
    if !common::can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let ctx = d.dir.path().join("ctx");
    write(&ctx, "src/a.conf", "a\n");
    write(&ctx, "src/b.conf", "b\n");
    write(&ctx, "src/c.txt", "c\n");
    write(
        &ctx,
        "Dockerfile",
        "# escape=`\nFROM scratch AS files\nCOPY src/*.conf /conf/\n\nFROM test/busybox:1\nCOPY --from=files /conf/ /etc/app/\nCOPY --from=test/busybox:1 /etc/motd /motd.copy\nCOPY --chown=nobody:nogroup src/c.txt `\n     /home/c.txt\nENV A=1\nLABEL stage=final\nRUN [\"/bin/sh\", \"-c\", \"echo exec form > /exec\"]\nENTRYPOINT [\"/bin/cat\"]\n",
    );
    let c = ctx.to_str().expect("utf-8");
    let o = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "more:1", "--label", "from.request=yes", c])
        .output()
        .expect("docker build");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // ENTRYPOINT cat: the arguments are files to show.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "more:1",
            "/etc/app/a.conf",
            "/etc/app/b.conf",
            "/exec",
            "/motd.copy"
        ]),
        "a\nb\nexec form\nhello from strata\n"
    );
    assert!(
        !d.try_docker(&["run", "--rm", "more:1", "/etc/app/c.txt"]).0,
        "only *.conf was copied"
    );
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--entrypoint",
            "stat",
            "more:1",
            "-c",
            "%U:%G",
            "/home/c.txt"
        ]),
        "nobody:nogroup\n"
    );
    let labels = d.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Labels}}",
        "more:1",
    ]);
    assert!(
        labels.contains("\"stage\":\"final\"") && labels.contains("\"from.request\":\"yes\""),
        "{labels}"
    );
    // ENV, LABEL and ENTRYPOINT add no layer: busybox's 2, then 3 COPY and 1 RUN.
    let layers = d.ok(&["image", "inspect", "-f", "{{len .RootFS.Layers}}", "more:1"]);
    assert_eq!(layers.trim(), "6");
}
