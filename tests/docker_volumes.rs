//! Volumes through the real docker CLI and the strata CLI (issue #5): named volumes keep
//! data across containers, the image's content is copied into a new volume, anonymous
//! volumes from `-v /path` and the image's `VOLUME` go with `rm -v` and `--rm`,
//! `--volumes-from`, `--mount`, the local driver's tmpfs option, prune, `system df`, events,
//! and dockerd's errors (checked against dockerd 20.10).

mod common;
use common::*;

const IMG: &str = "test/busybox:1";

/// An image with `VOLUME /data` whose /data holds a file owned by nobody, mode 0750.
fn volume_image(d: &Daemon) -> &'static str {
    d.ok(&[
        "run",
        "--name",
        "seed",
        IMG,
        "sh",
        "-c",
        "mkdir /data && echo seeded > /data/seed && chown -R 65534:65534 /data && chmod 750 /data",
    ]);
    d.ok(&["commit", "--change", "VOLUME /data", "seed", "test/vol:1"]);
    d.ok(&["rm", "seed"]);
    "test/vol:1"
}

fn volumes(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn named_volumes_keep_data_and_get_the_image_content() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let img = volume_image(&d);
    assert_eq!(
        d.ok(&["volume", "create", "--label", "team=a", "keep"])
            .trim(),
        "keep"
    );
    let v = d.ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Driver}} {{.Labels.team}} {{.Mountpoint}}",
        "keep",
    ]);
    let mountpoint = d.root().join("volumes/keep/_data");
    assert_eq!(v.trim(), format!("local a {}", mountpoint.display()));
    // Data written by one container is there for the next; the image's content was
    // copied into the new, empty volume with its owner and mode.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        img,
        "sh",
        "-c",
        "echo mine > /data/mine",
    ]);
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data:ro",
        img,
        "sh",
        "-c",
        "cat /data/seed /data/mine; stat -c '%u %a' /data 2>/dev/null || ls -ldn /data",
    ]);
    assert!(out.starts_with("seeded\nmine\n"), "{out}");
    assert!(out.contains("65534"), "owner copied: {out}");
    assert!(
        out.contains("drwxr-x---") || out.contains("65534 750"),
        "mode copied: {out}"
    );
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "-v",
        "keep:/data:ro",
        IMG,
        "sh",
        "-c",
        "echo x > /data/y",
    ]);
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    // nocopy: a new volume stays empty.
    let out = d.ok(&[
        "run",
        "--rm",
        "-v",
        "empty:/data:nocopy",
        img,
        "ls",
        "-A",
        "/data",
    ]);
    assert_eq!(out, "");
    // In use: not removable, with dockerd's text; removable once the container is gone.
    let id = d.ok(&["create", "-v", "keep:/k", IMG, "true"]);
    let id = id.trim();
    let (ok, _, err) = d.try_docker(&["volume", "rm", "keep"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("remove keep: volume is in use - [{id}]")),
        "{err}"
    );
    let mounts = d.ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}} {{.Mode}} {{.RW}}{{end}}",
        id,
    ]);
    assert_eq!(mounts.trim(), "volume keep /k z true");
    // The volume survives a daemon restart, and so does its reference.
    let mut d = d;
    d.restart();
    let (ok, _, _) = d.try_docker(&["volume", "rm", "keep"]);
    assert!(!ok, "still in use after a restart");
    d.ok(&["rm", id]);
    d.ok(&["volume", "rm", "keep", "empty"]);
    assert!(!mountpoint.exists());
    // dockerd's errors.
    for (args, want) in [
        (
            vec!["volume", "inspect", "nope"],
            "get nope: no such volume",
        ),
        (vec!["volume", "rm", "nope"], "get nope: no such volume"),
        (
            vec!["volume", "create", "x"],
            "create x: volume name is too short",
        ),
        (
            vec!["volume", "create", "a/b"],
            "includes invalid characters for a local volume name",
        ),
        (
            vec!["volume", "create", "-o", "type=tmpfs", "t1"],
            "create t1: missing required option: \"device\"",
        ),
        (
            vec!["volume", "create", "-o", "bogus=1", "t1"],
            "create t1: invalid option: \"bogus\"",
        ),
        (
            vec!["volume", "create", "-d", "nfsplugin", "t1"],
            "plugin \"nfsplugin\" not found",
        ),
        (
            vec!["run", "--rm", "-v", "aa:/y", "-v", "bb:/y", IMG, "true"],
            "Duplicate mount point: /y",
        ),
        (
            vec!["run", "--rm", "--volumes-from", "nope", IMG, "true"],
            "No such container: nope",
        ),
        (
            vec!["run", "--rm", "-v", "aa:/y:bogus", IMG, "true"],
            "invalid mode: bogus",
        ),
    ] {
        let (ok, _, err) = d.try_docker(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(
        d.try_docker(&["volume", "rm", "-f", "nope"]).0,
        "-f: missing is fine"
    );
    assert!(
        volumes(&d).is_empty(),
        "failed creates leave no volume: {:?}",
        volumes(&d)
    );
}

#[test]
fn anonymous_volumes_volumes_from_mounts_and_prune() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    let img = volume_image(&d);
    // The image's VOLUME and `-v /path` make anonymous volumes, filled from the image.
    d.ok(&[
        "run", "-d", "--name", "holder", "-v", "/extra", img, "sleep", "100",
    ]);
    let anon = volumes(&d);
    assert_eq!(anon.len(), 2, "{anon:?}");
    assert!(anon.iter().all(|n| n.len() == 64));
    let labels = d.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon[0]]);
    assert!(labels.contains("com.docker.volume.anonymous"), "{labels}");
    d.ok(&["exec", "holder", "sh", "-c", "echo shared > /extra/f"]);
    // --volumes-from sees the same data; :ro makes it read-only.
    let out = d.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "holder",
        IMG,
        "cat",
        "/data/seed",
        "/extra/f",
    ]);
    assert_eq!(out, "seeded\nshared\n");
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--volumes-from",
        "holder:ro",
        IMG,
        "sh",
        "-c",
        "echo x > /extra/g",
    ]);
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    // --mount: volume with a label, tmpfs with a size, bind.
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("h"), "from host\n").expect("write");
    let mount_bind = format!("type=bind,src={},dst=/h,readonly", host.path().display());
    let out = d.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=mvol,dst=/m,volume-label=k=v",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        "--mount",
        &mount_bind,
        IMG,
        "sh",
        "-c",
        "cat /h/h; grep ' /t ' /proc/mounts; echo m > /m/m",
    ]);
    assert!(out.starts_with("from host\ntmpfs /t tmpfs"), "{out}");
    assert!(out.contains("size=1024k"), "{out}");
    assert_eq!(
        d.ok(&["volume", "inspect", "-f", "{{.Labels.k}}", "mvol"])
            .trim(),
        "v"
    );
    // --rm removed no named volume; rm -v removes the anonymous ones only.
    d.ok(&["rm", "-f", "-v", "holder"]);
    assert_eq!(volumes(&d), ["mvol"]);
    // --rm removes the anonymous volumes of its container.
    d.ok(&["run", "--rm", "-v", "/gone", IMG, "true"]);
    assert_eq!(volumes(&d), ["mvol"]);
    // Prune: anonymous unused ones by default (API 1.42+), all with --all.
    d.ok(&["create", "--name", "keeper", "-v", "/kept", IMG, "true"]);
    d.ok(&["rm", "keeper"]);
    assert_eq!(volumes(&d).len(), 2);
    let out = d.ok(&["volume", "prune", "-f"]);
    assert!(out.contains("Deleted Volumes:"), "{out}");
    assert_eq!(volumes(&d), ["mvol"]);
    d.ok(&["create", "--name", "user", "-v", "mvol:/m", IMG, "true"]);
    d.ok(&["volume", "prune", "-af"]);
    assert_eq!(volumes(&d), ["mvol"], "a used volume is not pruned");
    let df = d.ok(&["system", "df", "-v"]);
    assert!(df.contains("mvol"), "{df}");
    d.ok(&["rm", "user"]);
    let out = d.ok(&["volume", "prune", "-af"]);
    assert!(out.contains("mvol"), "{out}");
    assert!(volumes(&d).is_empty());
    // Events: create, mount, unmount, destroy.
    let ev = d.events_so_far("type=volume", "{{.Action}} {{.Actor.ID}}");
    for want in ["create mvol", "mount mvol", "unmount mvol", "destroy mvol"] {
        assert!(ev.lines().any(|l| l == want), "{want} in {ev}");
    }
}

#[test]
fn local_driver_options_and_strata_cli() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    // A tmpfs volume: mounted while used, its size holds, unmounted after.
    let s = d.strata(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "small",
    ]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let o = d.strata(&[
        "run",
        "--rm",
        "-v",
        "small:/s",
        IMG,
        "sh",
        "-c",
        "grep ' /s ' /proc/mounts; dd if=/dev/zero of=/s/big bs=1k count=2048",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("tmpfs /s tmpfs"), "{out}{err}");
    assert!(!o.status.success(), "2 MiB do not fit in 1m: {err}");
    let data = d.root().join("volumes/small/_data");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&data.display().to_string()),
        "unmounted after the container"
    );
    let o = d.strata(&["volume", "inspect", "-f", "{{.Options.type}}", "small"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "tmpfs");
    // strata CLI: ls with a filter, rm; a volume with data through `-v` and `--volumes-from`.
    assert!(d
        .strata(&[
            "run",
            "--name",
            "writer",
            "-v",
            "cli:/c",
            IMG,
            "sh",
            "-c",
            "echo cli > /c/f"
        ])
        .status
        .success());
    let o = d.strata(&[
        "run",
        "--rm",
        "--volumes-from",
        "writer",
        IMG,
        "cat",
        "/c/f",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "cli\n");
    let o = d.strata(&["volume", "ls", "--filter", "dangling=false", "-q"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "cli\n");
    let o = d.strata(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "cli local\nsmall local\n"
    );
    let o = d.strata(&["system", "df", "-v"]);
    let df = String::from_utf8_lossy(&o.stdout);
    assert!(df.contains("Local Volumes space usage:"), "{df}");
    assert!(
        df.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["cli", "1", "4B"]),
        "the volume, its one user and its 4 bytes: {df}"
    );
    let o = d.strata(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Local Volumes 2 1"));
    assert!(d.strata(&["rm", "writer"]).status.success());
    let o = d.strata(&["volume", "rm", "cli", "small"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(volumes(&d).is_empty());
}
