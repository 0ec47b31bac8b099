//! Re-running a test inside the VM of `shared/vm/` (Debian's kernel, with what this one
//! lacks: device-mapper, xfs quotas, a pure cgroup v2 mount, ...). The test binary runs there
//! unchanged with `STRATA_IN_VM=1` set, so it can tell where it is.

use std::path::PathBuf;
use std::process::Command;

/// The VM runner, when `shared/` is there beside the project.
pub fn runner() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vm/run-in-vm.sh");
    p.exists().then_some(p)
}

/// Whether this test runs inside the VM.
pub fn inside() -> bool {
    std::env::var_os("STRATA_IN_VM").is_some()
}

/// Runs the test `test` of the current test binary in the VM, with `env` for the runner
/// (`VM_PRELOAD`, `VM_TIMEOUT`, ...), and asserts that it passed there. `false` when there
/// is no runner (the caller reports the skip).
pub fn rerun(test: &str, env: &[(&str, &str)]) -> bool {
    let Some(runner) = runner() else {
        return false;
    };
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(runner)
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("STRATA_IN_VM", "1")
        .env("VM_ENV", "STRATA_IN_VM")
        .envs(env.iter().copied())
        .output()
        .expect("run-in-vm.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- in the VM ---\n{stdout}\n{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} failed in the VM (exit {:?})",
        out.status.code()
    );
    true
}

/// The project's VM entry point, `tests/vm/run.sh` (it installs what the guest needs and
/// calls `shared/vm/run-in-vm.sh`), when the runner beside the project is there.
pub fn project_runner() -> Option<PathBuf> {
    runner()?;
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/run.sh");
    p.exists().then_some(p)
}

/// Runs every test of the current test binary but `skip` in the VM, one at a time, on a
/// scratch ext4 disk there (`tests/vm/with-scratch.sh`, `STRATA_TEST_DIR`), and
/// returns its combined output after asserting that all passed there (at least
/// `min_passed`). `None` when there is no VM runner (the caller reports the skip).
pub fn run_suite(skip: &str, min_passed: usize, env: &[(&str, &str)]) -> Option<String> {
    run_suite_wrapped(skip, min_passed, env, &[])
}

/// As [`run_suite`], with more `tests/vm/` wrapper scripts between the scratch disk's and
/// the test binary (e.g. `with-zfs.sh`).
pub fn run_suite_wrapped(
    skip: &str,
    min_passed: usize,
    env: &[(&str, &str)],
    wrappers: &[&str],
) -> Option<String> {
    let out = run_exe(
        &["--skip", skip, "--test-threads=1", "--color", "never"],
        env,
        wrappers,
    )?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- in the VM ---\n{text}");
    let passed = text
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum::<usize>();
    assert!(
        out.status.success() && passed >= min_passed && !text.contains("SKIPPED"),
        "the suite failed in the VM (exit {:?}, {passed} passed, at least {min_passed} expected)",
        out.status.code()
    );
    Some(text)
}

/// Runs the current executable with `args` in the VM, on the scratch disk
/// (`tests/vm/with-scratch.sh`) and under the `tests/vm/` `wrappers`, with `env` for the
/// runner (`VM_DISK` 8G and merged output unless `env` says otherwise). `None` when there is
/// no VM runner.
pub fn run_exe(
    args: &[&str],
    env: &[(&str, &str)],
    wrappers: &[&str],
) -> Option<std::process::Output> {
    let runner = project_runner()?;
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(&runner);
    cmd.arg(runner.with_file_name("with-scratch.sh"));
    for w in wrappers {
        cmd.arg(runner.with_file_name(w));
    }
    let out = cmd
        .arg(exe)
        .args(args)
        .env("STRATA_IN_VM", "1")
        .env(
            "VM_ENV",
            "STRATA_IN_VM STRATA_TEST_DIR STRATA_ZFS_MODULES STRATA_ZFS_POOL STRATA_ZFS_POOL_SIZE",
        )
        .env("VM_STDERR", "merge")
        .env("VM_DISK", "8G")
        .envs(env.iter().copied())
        .output()
        .expect("tests/vm/run.sh");
    Some(out)
}

/// Runs the current benchmark binary (`--bench`) in the VM as [`run_exe`] does, prints what
/// it printed there and asserts that it succeeded. `false` when there is no VM runner.
pub fn rerun_bench(env: &[(&str, &str)], wrappers: &[&str]) -> bool {
    let Some(out) = run_exe(&["--bench"], env, wrappers) else {
        return false;
    };
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the benchmark failed in the VM: {:?}",
        out.status
    );
    true
}

/// The OpenZFS modules for the VM's kernel: `shared/vm/build-zfs-module.sh` builds them the
/// first time (a few minutes; it also installs `zfsutils-linux` here, whose commands the
/// guest runs) and prints their directory. `None` when there is no VM runner; a failed build
/// panics with its output.
pub fn zfs_modules() -> Option<PathBuf> {
    let script = runner()?.with_file_name("build-zfs-module.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("build-zfs-module.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "building the zfs modules failed ({:?}): {stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    assert!(
        dir.join("zfs.ko").is_file(),
        "no zfs.ko in {}",
        dir.display()
    );
    Some(dir)
}

/// Runs every test of the current test binary but `skip` in the VM with ZFS: the OpenZFS
/// modules loaded and the pool of `tests/vm/with-zfs.sh` made (`STRATA_ZFS_POOL`); asserts
/// that at least `min_passed` passed there. `false` when there is no VM runner (the caller
/// reports the skip).
pub fn run_suite_with_zfs(skip: &str, min_passed: usize) -> bool {
    let Some(modules) = zfs_modules() else {
        return false;
    };
    let modules = modules.display().to_string();
    run_suite_wrapped(
        skip,
        min_passed,
        &[("STRATA_ZFS_MODULES", &modules)],
        &["with-zfs.sh"],
    )
    .is_some()
}
