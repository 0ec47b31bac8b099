//! `strata storage` from the tests: check, repair and migrate on a stopped daemon's data
//! root, their JSON reports, and the facts a migration must keep.

use super::Daemon;
use std::path::Path;
use std::process::{Command, Output};
use strata_graph::digest::Digest;

/// Runs `strata storage ARGS` (no daemon reachable unless `host` is given).
pub fn storage(args: &[&str], host: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.arg("storage").args(args).env_remove("DOCKER_HOST");
    match host {
        Some(sock) => c.env("STRATA_HOST", format!("unix://{}", sock.display())),
        None => c.env("STRATA_HOST", "unix:///nonexistent/strata.sock"),
    };
    c.output().expect("run strata storage")
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `strata storage CMD --json` on a stopped daemon's data root: (exit code, report).
pub fn run_json(cmd: &str, root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec![cmd, "--json", "--data-root", root.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    let o = storage(&args, None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{cmd} printed no JSON ({e}): {}", text(&o)));
    (o.status.code().unwrap_or(-1), v)
}

/// `check --json` of a stopped daemon's data root.
pub fn check(root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    run_json("check", root, extra)
}

pub fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["kind"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `repair --json` of a stopped daemon's data root.
pub fn repair(root: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    run_json("repair", root, extra)
}

pub fn with_driver(d: &mut Daemon, driver: &str) {
    let i = d
        .args
        .iter()
        .position(|a| a == "--storage-driver")
        .expect("driver flag");
    d.args[i + 1] = driver.to_string();
}

/// What must not change across a migration: image IDs, `docker save` digests, the
/// container's files and changes.
pub fn facts(d: &Daemon) -> Vec<String> {
    let mut v = vec![d.ok(&[
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ])];
    for img in ["test/busybox:1", "test/committed:1"] {
        let save = d.docker(&["save", img]);
        assert!(save.status.success());
        v.push(format!("{img} save {}", Digest::of(&save.stdout)));
    }
    v.push(d.ok(&["diff", "c1"]));
    let export = d.docker(&["export", "c1"]);
    assert!(export.status.success());
    let mut names = super::tar_names(&export.stdout[..]);
    names.sort();
    v.push(names.join(","));
    let back = d.dir.path().join("back.txt");
    d.ok(&["cp", "c1:/note.txt", back.to_str().expect("utf-8")]);
    v.push(std::fs::read_to_string(&back).expect("read"));
    v
}

/// A migration that must be refused; returns what it said.
pub fn migrate_refused(root: &Path, to: &str) -> String {
    let o = storage(
        &[
            "migrate",
            "--data-root",
            root.to_str().expect("utf-8"),
            "--to",
            to,
        ],
        None,
    );
    assert!(!o.status.success(), "migrating to {to} was not refused");
    text(&o)
}

pub fn migrate(root: &Path, args: &[&str]) -> String {
    let mut a = vec!["migrate", "--data-root", root.to_str().expect("utf-8")];
    a.extend_from_slice(args);
    let o = storage(&a, None);
    assert!(o.status.success(), "migrate {args:?}: {}", text(&o));
    text(&o)
}
