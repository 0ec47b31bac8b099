//! Running containers through the real docker CLI (issue #5, first part): run with output and
//! exit codes, --rm, a missing command (127), -d with logs, stop with the stop signal and
//! after the timeout, kill, and the daemon stopped or killed while containers run or exit.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn run_output_exit_codes_and_rm() {
    if !can_run_containers() {
        return;
    }
    let mut d = Daemon::start("overlay2");
    d.load_busybox();
    assert_eq!(
        d.ok(&["run", "--rm", "test/busybox:1", "echo", "hi"]),
        "hi\n"
    );
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "", "--rm left the container");
    let o = d.docker(&[
        "run",
        "--name",
        "three",
        "test/busybox:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    let st = d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "three",
    ]);
    assert_eq!(st.trim(), "exited 3");
    let ps = d.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited (3) "), "{ps}");
    // The image's environment and the container's hostname are in place.
    let out = d.ok(&[
        "run",
        "--rm",
        "-e",
        "X=y",
        "--hostname",
        "box",
        "test/busybox:1",
        "sh",
        "-c",
        "echo $PATH $X $(busybox hostname) $(busybox cat /etc/hostname)",
    ]);
    assert_eq!(out, "/bin y box box\n");
    // A command that does not exist: dockerd's 127.
    let o = d.docker(&["run", "--rm", "test/busybox:1", "nosuchcommand"]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("executable file not found"));
    d.ok(&["rm", "three"]);
    let ev = d.events_so_far("type=container", "{{.Action}}");
    for want in ["create", "start", "die", "destroy"] {
        assert!(ev.lines().any(|l| l == want), "{want} not in {ev}");
    }
    // Without --live-restore the daemon stops its containers when it stops (after their stop
    // timeout: sh as PID 1 ignores SIGTERM), and they are found exited after a restart.
    assert_eq!(
        d.ok(&["info", "-f", "{{.LiveRestoreEnabled}}"]).trim(),
        "false"
    );
    d.ok(&[
        "run",
        "-d",
        "--stop-timeout",
        "1",
        "--name",
        "bye",
        "test/busybox:1",
        "sh",
        "-c",
        "while true; do busybox sleep 0.1; done",
    ]);
    assert_eq!(d.stop().code(), Some(0));
    d.restart();
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "bye"
        ])
        .trim(),
        "exited 137"
    );
    d.ok(&["rm", "bye"]);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn detached_logs_stop_kill_and_restarts() {
    if !can_run_containers() {
        return;
    }
    let mut d = Daemon::start_with("overlay2", &["--live-restore"]);
    d.load_busybox();
    assert_eq!(
        d.ok(&["info", "-f", "{{.LiveRestoreEnabled}}"]).trim(),
        "true"
    );
    let trap =
        "trap 'echo got TERM; exit 0' TERM; echo started; while true; do busybox sleep 0.1; done";
    d.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "test/busybox:1",
        "sh",
        "-c",
        trap,
    ]);
    let t = Instant::now();
    while !d.ok(&["logs", "polite"]).contains("started") {
        assert!(t.elapsed() < Duration::from_secs(10), "no output");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .contains("polite Up "));
    let t = Instant::now();
    d.ok(&["stop", "polite"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(d.ok(&["logs", "polite"]), "started\ngot TERM\n");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "polite"])
            .trim(),
        "0"
    );
    // One that ignores TERM is killed after the timeout.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "test/busybox:1",
        "sh",
        "-c",
        "trap '' TERM; while true; do busybox sleep 0.1; done",
    ]);
    let t = Instant::now();
    d.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.ExitCode}}", "stubborn"])
            .trim(),
        "137"
    );
    // kill, start again, wait.
    d.ok(&["start", "stubborn"]);
    d.ok(&["kill", "stubborn"]);
    assert_eq!(d.ok(&["wait", "stubborn"]).trim(), "137");
    let (ok, _, err) = d.try_docker(&["kill", "stubborn"]);
    assert!(!ok && err.contains("is not running"), "{err}");

    // With --live-restore the daemon stops and the container keeps running; the next daemon
    // follows it.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "test/busybox:1",
        "sh",
        "-c",
        "echo one; trap 'echo two; exit 0' TERM; while true; do busybox sleep 0.1; done",
    ]);
    d.restart();
    assert!(d.ok(&["ps", "--format", "{{.Names}}"]).contains("survivor"));
    // exec, logs -f and stop work on the container the new daemon found.
    assert_eq!(
        d.ok(&["exec", "survivor", "echo", "via-exec"]),
        "via-exec\n"
    );
    let follower = std::process::Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
        .args(["logs", "-f", "survivor"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    d.ok(&["stop", "-t", "5", "survivor"]);
    let followed = follower.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "one\ntwo\n");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "survivor"
        ])
        .trim(),
        "exited 0"
    );
    assert_eq!(d.ok(&["logs", "survivor"]), "one\ntwo\n");

    // A kill -9 of the daemon while a container exits: its exit code is not lost.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "quick",
        "test/busybox:1",
        "sh",
        "-c",
        "busybox sleep 1; exit 7",
    ]);
    // SAFETY: killing our own child by PID.
    unsafe { libc::kill(d.child.pid() as i32, libc::SIGKILL) };
    let _ = d.child.0.wait();
    std::thread::sleep(Duration::from_millis(1500));
    d.restart();
    let st = d.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "quick",
    ]);
    assert_eq!(st.trim(), "exited 7");
    d.ok(&["rm", "-f", "polite", "stubborn", "survivor", "quick"]);
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(d.stop().code(), Some(0));
}

/// The same through the `strata` CLI.
#[test]
fn strata_cli_runs_containers() {
    if !runc_available() {
        eprintln!("SKIPPED: needs runc");
        return;
    }
    let mut d = Daemon::start("overlay2");
    let (archive, _, _) = d.busybox();
    let strata = |args: &[&str]| d.strata(args);
    assert!(strata(&["load", "-q", "-i", archive.to_str().unwrap()])
        .status
        .success());
    let o = strata(&["run", "--rm", "test/busybox:1", "echo", "hi"]);
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(0), "hi\n")
    );
    let o = strata(&[
        "run",
        "--rm",
        "test/busybox:1",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    let o = strata(&["run", "--rm", "test/busybox:1", "nosuchcommand"]);
    assert_eq!(o.status.code(), Some(127));
    let o = strata(&[
        "run",
        "-d",
        "--name",
        "bg",
        "test/busybox:1",
        "sh",
        "-c",
        "echo a; while true; do busybox sleep 0.1; done",
    ]);
    assert!(o.status.success());
    let t = Instant::now();
    while !String::from_utf8_lossy(&strata(&["logs", "bg"]).stdout).contains('a') {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(strata(&["stop", "-t", "0", "bg"]).status.success());
    assert_eq!(
        String::from_utf8_lossy(&strata(&["wait", "bg"]).stdout).trim(),
        "137"
    );
    assert!(strata(&["start", "bg"]).status.success());
    assert!(strata(&["kill", "-s", "KILL", "bg"]).status.success());
    assert_eq!(
        String::from_utf8_lossy(&strata(&["wait", "bg"]).stdout).trim(),
        "137"
    );
    assert!(strata(&["rm", "bg"]).status.success());
    assert_eq!(
        String::from_utf8_lossy(&strata(&["ps", "-aq"]).stdout).trim(),
        ""
    );
    assert_eq!(d.stop().code(), Some(0));
}

/// The cgroup file of a container's v1 controller, or its v2 file.
fn cgroup_value(id: &str, v1: &str, v2: &str) -> String {
    let p = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        format!("/sys/fs/cgroup/strata/{id}/{v2}")
    } else {
        format!("/sys/fs/cgroup/{v1}").replace("{id}", id)
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn run_flags() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    const IMG: &str = "test/busybox:1";
    // --env-file (comments and blank lines skipped, a bare name taken from the client's
    // environment), -e over it, --entrypoint, -w.
    let env = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(env.path(), "# settings\nA=from-file\n\nB=b\nHOME\n").expect("write");
    let envf = env.path().display().to_string();
    let out = d.ok(&[
        "run",
        "--rm",
        "--env-file",
        &envf,
        "-e",
        "B=flag",
        "-w",
        "/tmp",
        "--entrypoint",
        "sh",
        IMG,
        "-c",
        "echo $A $B $HOME; pwd",
    ]);
    assert_eq!(
        out,
        format!(
            "from-file flag {}\n/tmp\n",
            std::env::var("HOME").unwrap_or_default()
        )
    );
    // --cap-drop: chown needs CAP_CHOWN.
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        IMG,
        "chown",
        "65534",
        "/tmp",
    ]);
    assert!(!ok && err.contains("Operation not permitted"), "{err}");
    d.ok(&["run", "--rm", IMG, "chown", "65534", "/tmp"]);
    // --stop-signal: `stop` sends it; the container's trap sees it and exits.
    let id = d.ok(&[
        "run",
        "-d",
        "--stop-signal",
        "USR1",
        IMG,
        "sh",
        "-c",
        "trap 'echo got USR1; exit 0' USR1; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    d.ok(&["stop", "-t", "5", id]);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "stopped by its signal, not the timeout"
    );
    assert_eq!(d.ok(&["logs", id]), "got USR1\n");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.Config.StopSignal}} {{.State.ExitCode}}",
            id
        ])
        .trim(),
        "USR1 0"
    );
    d.ok(&["rm", id]);
    // --cpuset-cpus and --cpu-shares in the container's cgroup.
    let id = d.ok(&[
        "run",
        "-d",
        "--cpuset-cpus",
        "0",
        "--cpu-shares",
        "512",
        IMG,
        "sleep",
        "30",
    ]);
    let id = id.trim();
    assert_eq!(
        cgroup_value(id, "cpuset/strata/{id}/cpuset.cpus", "cpuset.cpus"),
        "0"
    );
    let shares = cgroup_value(id, "cpu/strata/{id}/cpu.shares", "cpu.weight");
    assert!(
        shares == "512" || shares == "20",
        "cpu.shares 512 (v1) or its v2 weight: {shares}"
    );
    d.ok(&["rm", "-f", id]);
    // --blkio-weight where the kernel cannot weigh I/O: dockerd's warning, the weight dropped.
    if !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
        && !std::path::Path::new("/sys/fs/cgroup/blkio/blkio.bfq.weight").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        let (ok, _, err) = d.try_docker(&["run", "--rm", "--blkio-weight", "300", IMG, "true"]);
        assert!(ok, "{err}");
        assert!(
            err.contains("Your kernel does not support Block I/O weight"),
            "{err}"
        );
    }
    // wait conditions: next-exit waits for the next exit of a stopped container.
    let id = d.ok(&["create", IMG, "sh", "-c", "exit 4"]);
    let id = id.trim().to_string();
    let sock = d.sock.clone();
    let waiter = std::thread::spawn(move || {
        std::process::Command::new("curl")
            .args(["-s", "-X", "POST", "--unix-socket"])
            .arg(&sock)
            .arg(format!("http://x/containers/{id}/wait?condition=next-exit"))
            .output()
            .expect("curl")
    });
    std::thread::sleep(Duration::from_millis(300));
    let id2 = d.ok(&["ps", "-aq", "--no-trunc"]);
    d.ok(&["start", id2.trim()]);
    let o = waiter.join().expect("waiter");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"StatusCode\":4"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// The interface names of a `/proc/net/dev`.
fn interfaces(dev: &str) -> Vec<String> {
    let mut v: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn network_modes() {
    if !can_run_containers() {
        return;
    }
    let d = Daemon::start("overlay2");
    d.load_busybox();
    const IMG: &str = "test/busybox:1";
    // none: a namespace with only lo; bridge: lo and eth0.
    for (mode, want) in [("none", vec!["lo"]), ("bridge", vec!["eth0", "lo"])] {
        let out = d.ok(&[
            "run",
            "--rm",
            "--network",
            mode,
            IMG,
            "cat",
            "/proc/net/dev",
        ]);
        let mut got = interfaces(&out);
        got.sort();
        assert_eq!(got, want, "{mode}: {out}");
    }
    // host: the host's interfaces, name and hosts file (as dockerd gives them); the test
    // daemon's "host" network is its own namespace.
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMG,
        "sh",
        "-c",
        "hostname; cat /proc/net/dev",
    ]);
    let (name, dev) = out.split_once('\n').expect("two parts");
    let host_dev = common::in_netns(&d.netns(), || {
        std::fs::read_to_string("/proc/thread-self/net/dev").expect("host /proc/net/dev")
    });
    assert_eq!(interfaces(dev), interfaces(&host_dev));
    assert_eq!(
        name,
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("hostname")
            .trim()
    );
    // container:X: X's namespace, host name and /etc files.
    let x = d.ok(&[
        "run",
        "-d",
        "--name",
        "netowner",
        "--hostname",
        "owner",
        IMG,
        "sleep",
        "60",
    ]);
    let x = x.trim();
    let theirs = d.ok(&["exec", x, "readlink", "/proc/1/ns/net"]);
    let out = d.ok(&[
        "run",
        "--rm",
        "--network",
        "container:netowner",
        IMG,
        "sh",
        "-c",
        "readlink /proc/self/ns/net; hostname; cat /etc/hostname",
    ]);
    assert_eq!(out, format!("{}owner\nowner\n", theirs), "{out}");
    // dockerd's errors (checked against 20.10).
    for (args, want) in [
        (
            vec!["run", "--rm", "--network", "nope", IMG, "true"],
            "network nope not found",
        ),
        (
            vec!["run", "--rm", "--network", "container:nope", IMG, "true"],
            "No such container: nope",
        ),
        (
            vec![
                "run",
                "--rm",
                "-h",
                "x",
                "--network",
                "container:netowner",
                IMG,
                "true",
            ],
            "conflicting options: hostname and the network mode",
        ),
    ] {
        let (ok, _, err) = d.try_docker(&args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        d.ok(&["ps", "-aq"]).lines().count(),
        1,
        "failed --rm runs leave nothing behind"
    );
    d.ok(&["create", "--name", "stopped", IMG, "true"]);
    let (ok, _, err) =
        d.try_docker(&["run", "--rm", "--network", "container:stopped", IMG, "true"]);
    assert!(
        !ok && err.contains("cannot join network of a non running container"),
        "{err}"
    );
    d.ok(&["rm", "-f", "netowner", "stopped"]);
}

#[test]
fn network_records() {
    if !docker_available() {
        eprintln!("SKIPPED: needs the docker CLI");
        return;
    }
    let mut d = Daemon::start("overlay2");
    // As dockerd lists them: the default bridge, host and none.
    let ls = d.ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]);
    let mut rows: Vec<&str> = ls.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        ["bridge bridge local", "host host local", "none null local"]
    );
    let id = d.ok(&["network", "inspect", "-f", "{{.Id}}", "host"]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{.Name}}", &id[..12]])
            .trim(),
        "host"
    );
    let filtered = d.ok(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        "driver=host",
    ]);
    assert_eq!(filtered.trim(), id);
    // dockerd's errors: 403 for a predefined network, 404 for an unknown one.
    let (ok, _, err) = d.try_docker(&["network", "rm", "host"]);
    assert!(
        !ok && err.contains("host is a pre-defined network and cannot be removed"),
        "{err}"
    );
    let (ok, _, err) = d.try_docker(&["network", "inspect", "nope"]);
    assert!(!ok && err.contains("network nope not found"), "{err}");
    // The IDs are kept across restarts; the strata CLI lists the same.
    d.restart();
    assert_eq!(
        d.ok(&["network", "inspect", "-f", "{{.Id}}", "host"])
            .trim(),
        id
    );
    let o = d.strata(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "bridge\nhost\nnone\n");
}
