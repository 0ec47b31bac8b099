//! `system df` answers from counted sizes: container layers' counters (0 when created,
//! measured once after each run or copy into them, kept across a restart), image layers'
//! sizes recorded at commit, `SharedSize` and `Containers` per image as dockerd counts them,
//! and `type=` to ask for part of the answer. Speed is measured in `benches/df.rs`.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn api_get(d: &Daemon, path: &str) -> (u16, Value) {
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.sock)
        .arg(format!("http://x{path}"))
        .output()
        .expect("curl");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').expect("status line");
    (
        code.parse().expect("status"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// `SizeRw` of container `id` in `/system/df` (left out when 0, as dockerd 20.10 does).
fn df_size_rw(d: &Daemon, id: &str) -> i64 {
    let (code, df) = api_get(d, "/system/df");
    assert_eq!(code, 200, "{df}");
    df["Containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["Id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {df}"))
        .get("SizeRw")
        .map_or(0, |s| s.as_i64().expect("SizeRw is a number"))
}

fn size_file(d: &Daemon, id: &str) -> PathBuf {
    d.root().join(format!("layers/mounts/{id}.size"))
}

/// Waits for the daemon's size worker to count container `id`'s layer; returns the count.
fn counted(d: &Daemon, id: &str) -> u64 {
    let path = size_file(d, id);
    let t = Instant::now();
    loop {
        if let Some(n) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} was not written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn upper_dir(d: &Daemon, id: &str) -> PathBuf {
    PathBuf::from(
        d.ok(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", id])
            .trim(),
    )
}

fn write_file(path: &Path, len: usize) {
    std::fs::write(path, vec![7u8; len]).expect("write");
}

#[test]
fn system_df_answers_from_counted_sizes() {
    if !docker_available() || !can_run_containers() {
        eprintln!("SKIPPED: needs the docker CLI, root and runc");
        return;
    }
    let mut d = Daemon::start("overlay2");
    d.load_busybox();

    // A created container is counted as empty, without being measured; inspect says 0, the
    // lists leave the 0 out (both as dockerd 20.10 does).
    let idle = d.ok(&["create", "test/busybox:1"]).trim().to_string();
    assert_eq!(df_size_rw(&d, &idle), 0);
    let (_, inspect) = api_get(&d, &format!("/containers/{idle}/json?size=1"));
    assert_eq!(inspect["SizeRw"], 0, "{inspect}");
    // Both CLIs read a left-out size as 0.
    let args = ["ps", "-a", "-s", "--format", "{{.Size}}"];
    let docker_ps = d.ok(&args);
    assert!(docker_ps.starts_with("0B (virtual "), "{docker_ps}");
    let strata_ps = d.strata(&args);
    assert!(strata_ps.status.success());
    assert_eq!(String::from_utf8_lossy(&strata_ps.stdout), docker_ps);

    // A run writes 100,000 bytes; after it exits, the worker counts them.
    let w = d
        .ok(&[
            "run",
            "-d",
            "test/busybox:1",
            "sh",
            "-c",
            "head -c 100000 /dev/zero > /big",
        ])
        .trim()
        .to_string();
    d.ok(&["wait", &w]);
    let n = counted(&d, &w);
    assert!((100_000..110_000).contains(&n), "counted {n}");
    assert_eq!(df_size_rw(&d, &w), n as i64);

    // The answer is the counter, not a walk: a file put into the layer behind the daemon's
    // back is not seen...
    write_file(&upper_dir(&d, &w).join("behind"), 50_000);
    assert_eq!(df_size_rw(&d, &w), n as i64);
    // ...until something mounts the layer again: a copy into the container makes it measure
    // the layer anew, which finds both.
    let src = d.dir.path().join("copied");
    write_file(&src, 20_000);
    d.ok(&["cp", src.to_str().expect("utf-8"), &format!("{w}:/copied")]);
    let again = counted(&d, &w);
    assert_eq!(again, n + 70_000, "re-measured after the copy");
    // ps -s and inspect --size use the same counter.
    let ps = d.ok(&[
        "ps",
        "-a",
        "-s",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Size}}",
    ]);
    assert!(ps.lines().any(|l| l.starts_with(&w)), "{ps}");
    let (code, inspect) = api_get(&d, &format!("/containers/{w}/json?size=1"));
    assert_eq!(code, 200);
    assert_eq!(inspect["SizeRw"].as_i64(), Some(again as i64), "{inspect}");

    // A running container's layer has no counter while it is mounted: it is measured live.
    let run = d
        .ok(&[
            "run",
            "-d",
            "test/busybox:1",
            "sh",
            "-c",
            "head -c 5000 /dev/zero > /f; sleep 60",
        ])
        .trim()
        .to_string();
    let t = Instant::now();
    while df_size_rw(&d, &run) < 5_000 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the running container's file never counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!size_file(&d, &run).exists(), "no counter while mounted");
    d.ok(&["rm", "-f", &run]);

    // Images: a committed image shares busybox's layer; each counts its containers.
    let derived = d.ok(&["commit", &w, "test/derived:1"]).trim().to_string();
    let (code, df) = api_get(&d, "/system/df");
    assert_eq!(code, 200);
    let image = |id: &str| -> Value {
        df["Images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["Id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {df}"))
    };
    let busybox_id = d.ok(&["inspect", "-f", "{{.Id}}", "test/busybox:1"]);
    let base = image(busybox_id.trim());
    let top = image(&derived);
    assert_eq!(base["Containers"], 2, "{base}");
    assert_eq!(top["Containers"], 0, "{top}");
    assert_eq!(
        base["SharedSize"], base["Size"],
        "its one layer is shared: {base}"
    );
    assert_eq!(top["SharedSize"], base["Size"], "{top}");
    assert_eq!(
        top["Size"].as_u64().expect("size"),
        base["Size"].as_u64().expect("size") + again,
        "{top}"
    );
    let layers_size = df["LayersSize"].as_u64().expect("LayersSize");
    assert_eq!(layers_size, top["Size"].as_u64().expect("size"));

    // type= asks for part of the answer (API 1.42 and later); an unknown type is refused.
    let (code, part) = api_get(&d, "/v1.47/system/df?type=container");
    assert_eq!(code, 200);
    assert!(
        part["Images"].is_null() && part["Volumes"].is_null(),
        "{part}"
    );
    assert_eq!(part["Containers"].as_array().map(Vec::len), Some(2));
    let (code, bad) = api_get(&d, "/v1.47/system/df?type=layers");
    assert_eq!(code, 400);
    assert_eq!(bad["message"], "unknown object type: layers");
    let (code, all) = api_get(&d, "/v1.41/system/df?type=container");
    assert_eq!(code, 200);
    assert!(
        all["Images"].is_array(),
        "before 1.42, type is ignored: {all}"
    );

    // The CLI's summary and -v render the counts.
    let summary = d.ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    assert!(summary.contains("Images 2 1"), "{summary}");
    assert!(summary.contains("Containers 2 0"), "{summary}");

    // Strata's CLI prints what the docker CLI prints, summary and -v.
    for args in [&["system", "df"][..], &["system", "df", "-v"][..]] {
        let strata = d.strata(args);
        assert!(strata.status.success());
        assert_eq!(
            String::from_utf8_lossy(&strata.stdout),
            d.ok(args),
            "strata {args:?} differs from docker's"
        );
    }

    // Counters are kept across a restart: nothing is measured again.
    d.restart();
    assert_eq!(df_size_rw(&d, &w), again as i64);
    assert_eq!(df_size_rw(&d, &idle), 0);
    assert_eq!(counted(&d, &w), again);

    // Removing the container removes its counter.
    d.ok(&["rm", &w]);
    assert!(!size_file(&d, &w).exists());
}
