//! Interactive containers and work on running ones, through the real docker CLI and the
//! strata CLI (issue #5): stdin, `-it` under a pseudo-terminal, exec in its forms, pause,
//! top, stats, update, OOM kills, the pids limit, restart policies, log rotation, binds and
//! `--init`.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn loaded() -> Daemon {
    let d = Daemon::start("overlay2");
    d.load_busybox();
    d
}

const IMG: &str = "test/busybox:1";

/// The cgroup file of a container's controller, v1 or v2.
fn cgroup_file(id: &str, v1_controller: &str, v1: &str, v2: &str) -> std::path::PathBuf {
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if unified {
        std::path::PathBuf::from(format!("/sys/fs/cgroup/strata/{id}/{v2}"))
    } else {
        std::path::PathBuf::from(format!("/sys/fs/cgroup/{v1_controller}/strata/{id}/{v1}"))
    }
}

#[test]
fn stdin_and_terminals() {
    if !can_run_containers() {
        return;
    }
    let d = loaded();
    // Piped stdin reaches the container and its end ends the container's input.
    let o = d.docker_input(&["run", "--rm", "-i", IMG, "cat"], b"line one\nline two\n");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "line one\nline two\n");
    // -it under a pseudo-terminal: a terminal inside, its size from ours, input echoed back,
    // and the exit code.
    let (out, code) = d.under_pty(
        &format!("stty cols 91 rows 27; docker run --rm -it {IMG} sh -c 'tty; stty size; read x; echo got:$x; exit 4'"),
        &["hello\n"],
    );
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("27 91"), "{out}");
    assert!(
        out.contains("hello"),
        "typed input is echoed by the terminal: {out}"
    );
    assert!(out.contains("got:hello"), "{out}");
    assert_eq!(code, Some(4), "{out}");
    // The same through the strata CLI.
    let strata = env!("CARGO_BIN_EXE_strata");
    let (out, code) = d.under_pty(
        &format!("{strata} run --rm -it {IMG} sh -c 'read x; echo strata-got:$x; exit 6'"),
        &["abc\n"],
    );
    assert!(out.contains("strata-got:abc"), "{out}");
    assert_eq!(code, Some(6), "{out}");
    assert_eq!(d.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn exec_pause_top_stats_update() {
    if !can_run_containers() {
        return;
    }
    let d = loaded();
    let id = d
        .ok(&[
            "run", "-d", "--name", "box", "--memory", "64m", IMG, "sleep", "300",
        ])
        .trim()
        .to_string();
    assert_eq!(d.ok(&["exec", "box", "echo", "from-exec"]), "from-exec\n");
    let o = d.docker(&["exec", "box", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    let out = d.ok(&[
        "exec",
        "-u",
        "nobody",
        "-e",
        "FOO=bar",
        "-w",
        "/etc",
        "box",
        "sh",
        "-c",
        "id; echo $FOO; pwd",
    ]);
    assert_eq!(out, "uid=65534(nobody) gid=65534(nogroup)\nbar\n/etc\n");
    let o = d.docker_input(&["exec", "-i", "box", "cat"], b"piped\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped\n");
    // A missing command: dockerd 20.10's message and exit code 126.
    let o = d.docker(&["exec", "box", "nosuch"]);
    assert_eq!(o.status.code(), Some(126));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("executable file not found"),
        "{o:?}"
    );
    let (out, code) = d.under_pty(
        "docker exec -it box sh -c 'tty; read x; echo exec-got:$x'",
        &["typed\n"],
    );
    assert!(
        out.contains("/dev/pts/") && out.contains("exec-got:typed"),
        "{out}"
    );
    assert_eq!(code, Some(0));
    d.ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d"]);
    let t = Instant::now();
    while !d
        .try_docker(&["exec", "box", "cat", "/tmp/d"])
        .1
        .contains("detached")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "detached exec did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // top lists the container's processes only.
    let top = d.ok(&["top", "box"]);
    assert!(top.starts_with("UID") && top.contains("sleep 300"), "{top}");
    assert_eq!(top.lines().count(), 2, "{top}");
    // pause freezes: status, refused exec, and back.
    d.ok(&["pause", "box"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "box"]).trim(),
        "paused"
    );
    let (ok, _, err) = d.try_docker(&["exec", "box", "true"]);
    assert!(
        !ok && err.contains("is paused, unpause the container before exec"),
        "{err}"
    );
    d.ok(&["unpause", "box"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}}", "box"]).trim(),
        "running"
    );
    // stats from the cgroup, and update changes the limit of the running container.
    let st = d.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}} {{.PIDs}}",
        "box",
    ]);
    assert!(st.starts_with("box ") && st.contains("/ 64MiB"), "{st}");
    d.ok(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "192m",
        "--pids-limit",
        "40",
        "box",
    ]);
    let lim = std::fs::read_to_string(cgroup_file(
        &id,
        "memory",
        "memory.limit_in_bytes",
        "memory.max",
    ))
    .unwrap();
    assert_eq!(lim.trim(), (96u64 << 20).to_string());
    let pids = std::fs::read_to_string(cgroup_file(&id, "pids", "pids.max", "pids.max")).unwrap();
    assert_eq!(pids.trim(), "40");
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            "box"
        ])
        .trim(),
        format!("{} 40", 96u64 << 20)
    );
    // The strata CLI does the same.
    let strata = |args: &[&str]| d.strata(args);
    let o = strata(&["exec", "box", "sh", "-c", "echo s-exec; exit 3"]);
    assert_eq!(
        (o.status.code(), String::from_utf8_lossy(&o.stdout).as_ref()),
        (Some(3), "s-exec\n")
    );
    assert!(strata(&["pause", "box"]).status.success());
    assert!(strata(&["unpause", "box"]).status.success());
    assert!(String::from_utf8_lossy(&strata(&["top", "box"]).stdout).contains("sleep 300"));
    assert!(strata(&["update", "--pids-limit", "50", "box"])
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(cgroup_file(&id, "pids", "pids.max", "pids.max"))
            .unwrap()
            .trim(),
        "50"
    );
    let st = String::from_utf8_lossy(&strata(&["stats", "--no-stream", "box"]).stdout).into_owned();
    assert!(st.starts_with("CONTAINER ID") && st.contains("box"), "{st}");
    let events = d.events_so_far("container=box", "{{.Action}}");
    for want in [
        "exec_create: echo from-exec",
        "exec_start: echo from-exec",
        "exec_die",
        "pause",
        "unpause",
        "update",
    ] {
        assert!(
            events
                .lines()
                .any(|l| l == want || (want == "exec_die" && l.starts_with("exec_die"))),
            "{want} missing: {events}"
        );
    }
    d.ok(&["rm", "-f", "box"]);
    assert!(
        !cgroup_file(&id, "pids", "", "").exists(),
        "the cgroup is removed"
    );
}

#[test]
fn limits_and_restart_policies() {
    if !can_run_containers() {
        return;
    }
    let d = loaded();
    // A memory hog under --memory 32m is killed by the kernel and shown so.
    let o = d.docker(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        IMG,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=200M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "{o:?}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"])
            .trim(),
        "true"
    );
    let ev = d.events_so_far("event=oom", "{{.Actor.Attributes.name}}");
    assert_eq!(ev.trim(), "hog");
    // --pids-limit holds a fork bomb: forks fail, and the cgroup never holds more.
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "bomb",
            "--pids-limit",
            "12",
            IMG,
            "sh",
            "-c",
            // The inner shell dies at its first failed fork; its sleeps stay.
            "sh -c 'for i in $(seq 1 40); do sleep 30 & done'; sleep 30",
        ])
        .trim()
        .to_string();
    let t = Instant::now();
    while !d.try_docker(&["logs", "bomb"]).2.contains("can't fork") {
        assert!(t.elapsed() < Duration::from_secs(10), "no fork failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let current =
        std::fs::read_to_string(cgroup_file(&id, "pids", "pids.current", "pids.current")).unwrap();
    let n: u32 = current.trim().parse().unwrap();
    assert!((2..=12).contains(&n), "{n} processes");
    d.ok(&["rm", "-f", "bomb"]);
    // Bad values are 400s with dockerd's texts.
    let (ok, _, err) = d.try_docker(&["run", "--rm", "--memory", "1k", IMG, "true"]);
    assert!(
        !ok && err.contains("Minimum memory limit allowed is 6MB"),
        "{err}"
    );
    let (ok, _, err) = d.try_docker(&["create", "--restart", "sometimes", IMG]);
    assert!(!ok && err.contains("invalid restart policy"), "{err}");
    let (ok, _, err) = d.try_docker(&["run", "--rm", "-u", "nosuchuser", IMG, "true"]);
    assert!(
        !ok && err.contains("unable to find user nosuchuser"),
        "{err}"
    );
    // --restart always restarts a crashing container until it is stopped by hand.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "crash",
        "--restart",
        "always",
        IMG,
        "sh",
        "-c",
        "echo up; exit 3",
    ]);
    let t = Instant::now();
    loop {
        let n: u64 = d
            .ok(&["inspect", "-f", "{{.RestartCount}}", "crash"])
            .trim()
            .parse()
            .unwrap();
        if n >= 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no restarts");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.ok(&["logs", "crash"])
            .lines()
            .filter(|l| *l == "up")
            .count()
            >= 2
    );
    d.ok(&["stop", "crash"]);
    let n1 = d.ok(&["inspect", "-f", "{{.RestartCount}}", "crash"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        d.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "crash"
        ])
        .trim(),
        format!("{} exited", n1.trim())
    );
    // on-failure:2 gives up after two restarts.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "twice",
        "--restart",
        "on-failure:2",
        IMG,
        "sh",
        "-c",
        "exit 1",
    ]);
    let t = Instant::now();
    loop {
        let s = d.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "twice",
        ]);
        if s.trim() == "2 exited" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "on-failure: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.ok(&["rm", "-f", "crash", "twice", "hog"]);
}

#[test]
fn logs_binds_and_init() {
    if !can_run_containers() {
        return;
    }
    let d = loaded();
    // json-file rotation keeps max-file files of about max-size, and logs reads across them.
    d.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        IMG,
        "sh",
        "-c",
        "for i in $(seq 1 300); do echo line-$i; done",
    ]);
    let id = d
        .ok(&["inspect", "-f", "{{.Id}}", "chatty"])
        .trim()
        .to_string();
    let dir = d.root().join("containers").join(&id);
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    let out = d.ok(&["logs", "chatty"]);
    assert_eq!(out.lines().last(), Some("line-300"));
    assert!(
        !out.contains("line-1\n"),
        "the oldest lines were rotated away"
    );
    assert_eq!(
        d.ok(&["logs", "--tail", "2", "chatty"]),
        "line-299\nline-300\n"
    );
    // A tail reaching into the rotated files: the same lines as the end of the whole log.
    for n in [40, 90, 1000] {
        let all: Vec<&str> = out.lines().collect();
        let want = all[all.len().saturating_sub(n)..].join("\n") + "\n";
        assert_eq!(
            d.ok(&["logs", "--tail", &n.to_string(), "chatty"]),
            want,
            "--tail {n}"
        );
    }
    // --log-driver none keeps nothing and says so.
    d.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        IMG,
        "echo",
        "x",
    ]);
    let (ok, _, err) = d.try_docker(&["logs", "quiet"]);
    assert!(
        !ok && err.contains("configured logging driver does not support reading"),
        "{err}"
    );
    let (ok, _, err) = d.try_docker(&["create", "--log-opt", "bogus=1", IMG]);
    assert!(!ok && err.contains("unknown log opt 'bogus'"), "{err}");
    // -v binds (read-only too, and a missing source is created), --mount checks its source.
    let host = d.dir.path().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from-host\n").unwrap();
    let v = format!("{}:/data", host.display());
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "-v",
            &v,
            IMG,
            "sh",
            "-c",
            "cat /data/in; echo back > /data/out"
        ]),
        "from-host\n"
    );
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "back\n");
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{v}:ro"),
        IMG,
        "sh",
        "-c",
        "echo x > /data/out",
    ]);
    assert!(!ok && err.contains("Read-only file system"), "{err}");
    let fresh = d.dir.path().join("fresh");
    d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/f", fresh.display()),
        IMG,
        "true",
    ]);
    assert!(fresh.is_dir());
    let (ok, _, err) = d.try_docker(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/nonexistent/strata,target=/x",
        IMG,
        "true",
    ]);
    assert!(
        !ok && err.contains("bind source path does not exist"),
        "{err}"
    );
    // --init runs the command under an init as PID 1.
    let ps = d.ok(&["run", "--rm", "--init", IMG, "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim() == "1 /sbin/docker-init -- ps -o pid,args"),
        "{ps}"
    );
    // --device and --tmpfs.
    assert_eq!(
        d.ok(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/extra",
            "--tmpfs",
            "/scratch:size=1m",
            IMG,
            "sh",
            "-c",
            "echo x > /dev/extra && mount | grep -c ' /scratch '"
        ])
        .trim(),
        "1"
    );
    d.ok(&["rm", "chatty", "quiet"]);
}

#[test]
fn detach_keys_leave_the_container_running() {
    if !can_run_containers() {
        return;
    }
    let d = loaded();
    // strata CLI: ctrl-p ctrl-q typed into `run -it`; the daemon ends the stream, the CLI
    // exits 0 and the container runs on, its input still open.
    let (out, code) = d.under_pty_when(
        &format!(
            "timeout --foreground 40 {} run -it --name dk {IMG} sh",
            env!("CARGO_BIN_EXE_strata")
        ),
        &[("/ # ", "echo typed-in\n"), ("\ntyped-in", "\x10\x11")],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("typed-in"), "{out}");
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]).trim(),
        "true"
    );
    // A custom sequence on the API, from a raw client: held-back bytes of a broken sequence
    // reach the container, the complete one detaches.
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        s,
        "POST /containers/dk/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-a,x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("attach");
    s.write_all(b"echo \x01y-after\n").expect("input");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"\x01x").expect("detach");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut all = Vec::new();
    let r = s.read_to_end(&mut all);
    assert!(r.is_ok(), "the daemon closed the stream: {r:?}");
    assert!(
        String::from_utf8_lossy(&all).contains("y-after"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Running}}", "dk"]).trim(),
        "true"
    );
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        s,
        "POST /containers/dk/attach?stream=1&stdin=1&detachKeys=ctrl-1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("attach");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(
        answer.starts_with("HTTP/1.1 400")
            && answer.contains("Invalid detach keys (ctrl-1) provided"),
        "{answer}"
    );
    // Exec with its own detach keys: the stream ends, the process runs on, and its exit is
    // recorded once it comes.
    let body = r#"{"Cmd":["sh","-c","read x; sleep 2; exit 5"],"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-e"}"#;
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    write!(
        s,
        "POST /containers/dk/exec HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("exec create");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let eid = answer
        .split("\"Id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an exec ID")
        .to_string();
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).expect("connect");
    let start = r#"{"Detach":false,"Tty":false}"#;
    write!(
        s,
        "POST /exec/{eid}/start HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {}\r\n\r\n{start}",
        start.len()
    )
    .expect("exec start");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"\x05").expect("detach");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert!(s.read_to_end(&mut rest).is_ok(), "the exec's stream ended");
    let exec_json = || -> serde_json::Value {
        let o = std::process::Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(&d.sock)
            .arg(format!("http://x/exec/{eid}/json"))
            .output()
            .expect("curl");
        serde_json::from_slice(&o.stdout).expect("exec JSON")
    };
    // The process runs on (its input closed, as dockerd closes an exec's stdin when its
    // attach ends), and its exit is recorded when it comes.
    let v = exec_json();
    assert_eq!(v["Running"], true, "{v}");
    assert_eq!(v["DetachKeys"], "ctrl-e");
    let t = Instant::now();
    while exec_json()["Running"] == true {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "the exec's end was not recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(exec_json()["ExitCode"], 5);
    d.ok(&["rm", "-f", "dk"]);
}
