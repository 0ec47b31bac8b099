//! The spec builder's output run by the real runc (Debian `runc`): a busybox rootfs, a
//! command's output and exit code, a user from the image's /etc/passwd, a pids limit, and the
//! cgroup at the explicit path.

use std::path::Path;
use std::process::Command;
use strata_runtime::container::{ContainerConfig, State};
use strata_runtime::spec::{build, resolve_user, SpecInput};
use strata_runtime::Container;

fn runc_available() -> bool {
    Command::new("runc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn rootfs(dir: &Path) {
    let bb = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("bin/busybox"), bb).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for l in ["sh", "id", "cat", "echo", "hostname", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(l)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
}

/// Runs `args` in a container made from `hc` and `user`; returns (exit code, stdout, stderr).
fn run(id: &str, args: &[&str], user: &str, hc: serde_json::Value) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    rootfs(&root);
    let c = Container {
        id: id.into(),
        name: id.into(),
        created: String::new(),
        image: String::new(),
        path: args[0].into(),
        args: args[1..].iter().map(|s| s.to_string()).collect(),
        config: ContainerConfig {
            hostname: "testhost".into(),
            user: user.into(),
            ..Default::default()
        },
        host_config: hc,
        networking_config: serde_json::Value::Null,
        driver: "vfs".into(),
        state: State::created(),
        restart_count: 0,
        manually_stopped: false,
        mount_points: Vec::new(),
    };
    let u = resolve_user(&root, user).unwrap();
    let spec = build(&SpecInput {
        container: &c,
        rootfs: &root,
        user: &u,
        etc: None,
        cgroup_path: format!("/strata-test/{id}"),
        init: None,
        network: &strata_runtime::spec::network::NetworkNs::New,
    })
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let o = Command::new("runc")
        .args([
            "--root",
            dir.path().join("state").to_str().unwrap(),
            "run",
            "--bundle",
        ])
        .arg(dir.path())
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc")
        .args([
            "--root",
            dir.path().join("state").to_str().unwrap(),
            "delete",
            "-f",
            id,
        ])
        .output();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cleanup_cgroups() {
    for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let _ = std::fs::remove_dir(Path::new(base).join("strata-test"));
    }
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(e.path().join("strata-test"));
    }
}

#[test]
fn runc_runs_the_spec() {
    if !runc_available() {
        eprintln!("SKIPPED: runc is not installed (Debian package runc)");
        return;
    }
    let (code, out, err) = run(
        "strata-spec-echo",
        &["sh", "-c", "echo hi; hostname; exit 3"],
        "",
        serde_json::json!({}),
    );
    assert_eq!((code, out.as_str()), (3, "hi\ntesthost\n"), "{err}");
    let (code, out, err) = run("strata-spec-user", &["id"], "app", serde_json::json!({}));
    assert_eq!(code, 0, "{err}");
    // Supplementary groups are the ones listing the user (as runc's GetExecUser finds them).
    assert_eq!(out.trim(), "uid=1000(app) gid=1000(app) groups=2000(extra)");
    // A read-only root, and the pids limit in the container's own cgroup.
    let (code, _, err) = run(
        "strata-spec-ro",
        &["sh", "-c", "echo x > /x"],
        "",
        serde_json::json!({"ReadonlyRootfs": true}),
    );
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    let (code, out, err) = run(
        "strata-spec-pids",
        &["sh", "-c", "echo started; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"],
        "",
        serde_json::json!({"PidsLimit": 8}),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("started") && out.trim_end().ends_with('8'),
        "{out}"
    );
    cleanup_cgroups();
}
