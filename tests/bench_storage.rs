//! `strata bench storage` end to end (issue #12): a short run on vfs and overlay2 that
//! must produce every workload's samples in the JSON and a plot per workload and leave no
//! mounts, loop devices or directories behind; the automatic choice of drivers with the
//! reasons for skips; bad input; a full disk part-way; `--compare` against another
//! Docker-API engine.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The tests look at /var/tmp and the loop devices as a whole: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["bench", "storage"])
        .args(args)
        .output()
        .expect("run strata bench")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What the harness may leave behind: its directories, their mounts, loop devices on files
/// in them.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["/var/tmp", "/tmp"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("strata-bench-") {
                found.push(format!("{dir}/{n}"));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains("strata-bench-"))
            .map(|l| format!("mount: {l}")),
    );
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let f = e.path().join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(&f) {
            if b.contains("strata-bench-") {
                found.push(format!(
                    "loop device {}: {}",
                    e.file_name().to_string_lossy(),
                    b.trim()
                ));
            }
        }
    }
    found
}

fn json(path: &Path) -> Value {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&data).expect("valid JSON")
}

fn driver<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["drivers"]
        .as_array()
        .expect("drivers")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {}", report["drivers"]))
}

/// The workload names `strata bench storage --list-workloads` prints (first column).
fn workload_names() -> Vec<String> {
    let o = bench(&["--list-workloads"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.contains("--compare"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn short_run_on_vfs_and_overlay2_has_every_workload_and_plots_and_leaves_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "left by something before"
    );
    let out = tempfile::tempdir().unwrap();
    let (j, plots) = (out.path().join("r.json"), out.path().join("plots"));
    let o = bench(&[
        "--driver",
        "vfs",
        "--driver",
        "overlay2",
        "--runs",
        "1",
        "--size",
        "small",
        "--json",
        j.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // The table: a header and rows of both drivers.
    assert!(
        t.contains("workload") && t.contains("median") && t.contains("p95"),
        "{t}"
    );
    let report = json(&j);
    assert_eq!(report["complete"], true);
    assert!(report["host"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    assert!(report["host"]["cpu"].is_string() && report["host"]["strata_version"].is_string());
    let names = workload_names();
    assert_eq!(names.len(), 12, "{names:?}");
    for d in ["vfs", "overlay2"] {
        let dr = driver(&report, d);
        assert_eq!(dr["state"], "measured", "{dr}");
        assert!(dr["backing"].is_string(), "{dr}");
        for w in &names {
            let series: Vec<&Value> = report["results"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["driver"] == d && s["workload"] == w.as_str())
                .collect();
            assert!(!series.is_empty(), "{d}: no samples of {w}");
            for s in series {
                let runs = s["runs"].as_array().unwrap();
                assert_eq!(runs.len(), 1, "{s}");
                let samples = runs[0].as_array().unwrap();
                assert!(!samples.is_empty(), "{s}");
                assert!(
                    samples
                        .iter()
                        .all(|v| v.as_f64().is_some_and(f64::is_finite)),
                    "{s}"
                );
                assert!(s["summary"]["median"].is_number(), "{s}");
            }
        }
    }
    // The two sweeps are curves: every depth and every size of the small sizes.
    let xs = |w: &str, d: &str| -> Vec<f64> {
        let mut v: Vec<f64> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["workload"] == w && s["driver"] == d)
            .filter_map(|s| s["x"].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    assert_eq!(xs("mount-depth", "overlay2"), vec![1.0, 10.0]);
    assert_eq!(xs("apply-size", "vfs").len(), 2);
    // Counts that follow from the workload definitions.
    let median = |w: &str, m: &str, d: &str| -> f64 {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["workload"] == w && s["metric"] == m && s["driver"] == d)
            .and_then(|s| s["summary"]["median"].as_f64())
            .unwrap_or_else(|| panic!("{d} {w} {m}"))
    };
    // 200 changed files in directories d000 and d001 (+ the two directories and usr).
    assert!(median("diff-commit", "changed paths", "overlay2") >= 200.0);
    // vfs copies the parent into every child; overlay2 does not.
    assert!(
        median("disk-space", "child layer", "vfs")
            > 2.0 * median("disk-space", "child layer", "overlay2"),
        "{report}"
    );
    for w in &names {
        let p = plots.join(format!("{w}.svg"));
        let svg = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            svg.starts_with("<svg") && svg.contains(">vfs") && svg.contains(">overlay2"),
            "{w}"
        );
    }
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn every_driver_by_default_with_the_reasons_for_skips() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let j = out.path().join("r.json");
    let o = bench(&[
        "--workload",
        "layer-create",
        "--workload",
        "container-cycle",
        "--runs",
        "2",
        "--size",
        "small",
        "--json",
        j.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let report = json(&j);
    assert_eq!(
        report["drivers"].as_array().unwrap().len(),
        6,
        "{}",
        report["drivers"]
    );
    for d in ["overlay2", "vfs", "btrfs"] {
        assert_eq!(driver(&report, d)["state"], "measured", "{t}");
    }
    // btrfs ran on a loop-mounted btrfs made for the run.
    assert!(
        driver(&report, "btrfs")["backing"]
            .as_str()
            .unwrap()
            .contains("btrfs on a"),
        "{t}"
    );
    let skipped = |d: &str, why: &str| {
        let dr = driver(&report, d);
        assert_eq!(dr["state"], "skipped", "{dr}");
        assert!(dr["reason"].as_str().unwrap().contains(why), "{dr}");
        assert!(t.contains(&format!("skipped {d}")), "{t}");
    };
    if !Path::new("/dev/mapper/control").exists() {
        skipped("devicemapper", "no device-mapper in this kernel");
    }
    if !Path::new("/dev/zfs").exists() {
        skipped("zfs", "no ZFS in this kernel");
    }
    if !std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .contains("aufs")
    {
        skipped("aufs", "aufs is not in /proc/filesystems");
    }
    // Two runs: the variance across runs is known.
    let s = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["driver"] == "btrfs")
        .unwrap();
    assert!(s["summary"]["run_cv"].is_number(), "{s}");
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn bad_input_is_refused_before_anything_is_made() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for (args, want) in [
        (vec!["--driver", "ext9"], "unknown storage driver \"ext9\""),
        (vec!["--workload", "warp"], "unknown workload \"warp\""),
        (vec!["--runs", "0"], "--runs must be at least 1"),
        (vec!["--storage-opt", "novalue"], "novalue"),
        (
            vec!["--workload", "api-lifecycle"],
            "give --compare DOCKER_HOST",
        ),
        (
            vec!["--compare", "unix:///nonexistent.sock"],
            "nonexistent.sock",
        ),
    ] {
        let o = bench(&args);
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    assert_eq!(leftovers(), Vec::<String>::new());
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let d = tempfile::tempdir().unwrap();
        let mnt = d.path().join("t");
        std::fs::create_dir(&mnt).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Tmpfs(mnt, d)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_root_on_the_wrong_filesystem_is_refused_with_partial_results_written() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Tmpfs::new("64m");
    let out = tempfile::tempdir().unwrap();
    let j = out.path().join("r.json");
    let o = bench(&[
        "--driver",
        "vfs",
        "--driver",
        "btrfs",
        "--root",
        t.0.to_str().unwrap(),
        "--workload",
        "layer-create",
        "--runs",
        "1",
        "--size",
        "small",
        "--json",
        j.to_str().unwrap(),
    ]);
    let txt = text(&o);
    assert!(!o.status.success(), "{txt}");
    assert!(
        txt.contains(&format!("btrfs: cannot run on --root {}", t.0.display())),
        "{txt}"
    );
    let report = json(&j);
    assert_eq!(driver(&report, "vfs")["state"], "measured");
    assert_eq!(driver(&report, "btrfs")["state"], "failed");
    assert!(report["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["driver"] == "vfs"));
    assert_eq!(
        std::fs::read_dir(&t.0).unwrap().count(),
        0,
        "left in --root"
    );
}

#[test]
fn a_full_disk_part_way_is_reported_cleaned_up_and_the_rest_written() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The small first-write needs an 8 MiB lower file: a 6 MiB tmpfs fills up.
    let t = Tmpfs::new("6m");
    let out = tempfile::tempdir().unwrap();
    let j = out.path().join("r.json");
    let o = bench(&[
        "--driver",
        "vfs",
        "--root",
        t.0.to_str().unwrap(),
        "--workload",
        "layer-create",
        "--workload",
        "first-write",
        "--workload",
        "export",
        "--runs",
        "1",
        "--size",
        "small",
        "--json",
        j.to_str().unwrap(),
    ]);
    let txt = text(&o);
    assert!(!o.status.success(), "{txt}");
    assert!(
        txt.contains("No space left on device") && txt.contains("is full"),
        "{txt}"
    );
    let report = json(&j);
    assert_eq!(report["complete"], true);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    // What ran before the disk filled is kept; what came after was not attempted.
    let workloads: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["workload"].as_str().unwrap())
        .collect();
    assert!(
        workloads.contains(&"layer-create") && !workloads.contains(&"export"),
        "{workloads:?}"
    );
    assert_eq!(
        std::fs::read_dir(&t.0).unwrap().count(),
        0,
        "left in --root"
    );
}

#[test]
fn compare_puts_another_engine_beside_strata() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !common::runc_available() || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: --compare starts containers: needs runc and /bin/busybox");
        return;
    }
    // The other engine: a Strata daemon of the test's own on overlay2 (dockerd 20.10 is
    // compared the same way in benches/README.md).
    let other = common::Daemon::start("overlay2");
    let host = format!("unix://{}", other.sock.display());
    let out = tempfile::tempdir().unwrap();
    let j = out.path().join("r.json");
    let o = bench(&[
        "--driver",
        "vfs",
        "--workload",
        "api-lifecycle",
        "--compare",
        &host,
        "--runs",
        "2",
        "--size",
        "small",
        "--json",
        j.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let report = json(&j);
    let series = report["results"].as_array().unwrap();
    let metrics = |engine_is_strata: bool| -> Vec<String> {
        series
            .iter()
            .filter(|s| (s["engine"] == "strata") == engine_is_strata)
            .map(|s| {
                format!(
                    "{}/{}",
                    s["driver"].as_str().unwrap(),
                    s["metric"].as_str().unwrap()
                )
            })
            .collect()
    };
    for m in [
        "load",
        "create",
        "start",
        "start to exit",
        "diff",
        "commit",
        "export",
        "rm",
    ] {
        assert!(
            metrics(true).contains(&format!("vfs/{m}")),
            "strata vfs {m}: {t}"
        );
        assert!(
            metrics(false).contains(&format!("overlay2/{m}")),
            "other {m}: {t}"
        );
    }
    let other_engine = series.iter().find(|s| s["engine"] != "strata").unwrap();
    assert!(
        other_engine["engine"].as_str().unwrap().contains(&host),
        "{other_engine}"
    );
    assert_eq!(other_engine["runs"].as_array().unwrap().len(), 2);
    // The bench images are gone from the other engine.
    let images = other.ok(&["images", "-q", "strata-bench/*"]);
    assert_eq!(images.trim(), "", "{images}");
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn an_interrupted_run_cleans_up_and_writes_what_it_measured() {
    use std::io::BufRead;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let j = out.path().join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "bench", "storage", "--driver", "overlay2", "--driver", "vfs", "--size", "small",
        ])
        .args(["--runs", "20", "--json", j.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    // In the middle of overlay2's first workload, with its loop filesystem mounted.
    for line in lines.by_ref() {
        if line.unwrap().contains("overlay2 · apply · run 2/") {
            break;
        }
    }
    // SAFETY: signalling our own child by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    let report = json(&j);
    assert_eq!(report["complete"], false);
    let series = report["results"].as_array().unwrap();
    assert!(series
        .iter()
        .any(|s| s["workload"] == "apply" && s["driver"] == "overlay2"));
    // vfs never started.
    assert!(series.iter().all(|s| s["driver"] == "overlay2"));
    assert_eq!(leftovers(), Vec::<String>::new());
}
