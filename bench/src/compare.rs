//! `--compare DOCKER_HOST`: the workloads the Docker API can express, run the same way
//! against any Docker-API engine (dockerd, Podman's service) and against Strata on each
//! benchmarked driver (a daemon the harness starts on that driver's backing store), so
//! that the figures sit side by side in one table.

use crate::data::{DataSet, TarMaker};
use crate::error::{BenchError, BenchResult, Context};
use crate::series::{Metric, Samples};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strata_api::client::{Body, Client};
use strata_graph::archive::tar::{Header, Kind, TarWriter};
use strata_graph::Digest;

/// An API workload.
pub struct ApiWorkload {
    pub name: &'static str,
    pub definition: &'static str,
}

/// The API workloads.
pub const WORKLOADS: &[ApiWorkload] = &[ApiWorkload {
    name: "api-lifecycle",
    definition: "Through the Engine API, one image's life: load a two-layer image (busybox and the small-files layer, docker save format, uncompressed); create a container (network none) whose command writes 500 files; start it and wait for its exit; list its changes (diff); commit it; export it (read to the end); remove the container; each call timed, from request to the end of the answer. The images are removed between runs, untimed.",
}];

/// The image the API workloads load.
pub const IMAGE: &str = "strata-bench/api:latest";
const COMMITTED: &str = "strata-bench/committed:latest";

/// A Docker-API engine under test.
pub struct Engine {
    pub client: Client,
    /// What it is, e.g. `docker 20.10.24` or `strata`.
    pub label: String,
    /// Its storage driver (from /info).
    pub driver: String,
}

impl Engine {
    /// Connects to the engine at `host` and asks what it is.
    pub fn connect(host: &str, label: Option<&str>) -> BenchResult<Engine> {
        let client = Client::new(host, None).ctx(|| format!("--compare {host}"))?;
        let version = client
            .json("GET", "/version", &[], Body::None)
            .ctx(|| format!("asking {host} for its version"))?;
        let info = client
            .json("GET", "/info", &[], Body::None)
            .ctx(|| format!("asking {host} for its info"))?;
        // "Strata", "Docker Engine - Community", "Podman Engine"; dockerd built by Debian
        // leaves it empty.
        let name = version["Platform"]["Name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or("docker")
            .to_lowercase();
        let label = match label {
            Some(l) => l.to_string(),
            None => format!(
                "{name} {} at {host}",
                version["Version"].as_str().unwrap_or("?")
            ),
        };
        Ok(Engine {
            client,
            label,
            driver: info["Driver"].as_str().unwrap_or("?").to_string(),
        })
    }
}

/// A `docker save` archive of busybox plus the small-files layer, tagged [`IMAGE`].
pub fn image_archive(data: &DataSet) -> BenchResult<Vec<u8>> {
    let bb_path = Path::new("/bin/busybox");
    let bb = std::fs::read(bb_path).ctx(|| {
        "the API workloads need a static /bin/busybox for their containers (Debian: busybox-static)"
            .into()
    })?;
    let mut t = TarMaker::default();
    t.dir("bin")?;
    t.file_mode("bin/busybox", &bb, 0o755)?;
    for n in ["sh", "mkdir", "echo"] {
        t.symlink(&format!("bin/{n}"), "busybox")?;
    }
    let base = t.finish()?;
    let layers: [&[u8]; 2] = [&base, &data.small_files()?.tar];
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let cfg_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest =
        serde_json::json!([{"Config": cfg_name, "RepoTags": [IMAGE], "Layers": names}]).to_string();
    let mut w = TarWriter::new(Vec::new());
    let mut entries: Vec<(&str, &[u8])> = vec![(&cfg_name, config.as_bytes())];
    entries.extend(names.iter().map(String::as_str).zip(layers));
    entries.push(("manifest.json", manifest.as_bytes()));
    for (p, data) in entries {
        let h = Header::new(p, Kind::Regular, data.len() as u64);
        w.append(&h, Some(&mut &data[..]))
            .ctx(|| format!("image archive entry {p}"))?;
    }
    w.finish().ctx(|| "image archive".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Removes the bench images, ignoring "no such image".
fn remove_images(c: &Client) {
    for img in [COMMITTED, IMAGE] {
        let _ = c.send(
            "DELETE",
            &format!("/images/{}", strata_api::client::escape(img)),
            &[("force", "1".into())],
            Body::None,
        );
    }
}

/// One run of `api-lifecycle` against `e`.
pub fn lifecycle(e: &Engine, archive: &[u8], out: &mut Samples) -> BenchResult<()> {
    let c = &e.client;
    remove_images(c);
    let what = |s: &str| format!("{} ({}): {s}", e.label, e.driver);
    let t = Instant::now();
    let mut input = archive;
    let mut r = c
        .call(
            "POST",
            "/images/load",
            &[("quiet", "1".into())],
            Body::Stream {
                content_type: "application/x-tar",
                reader: &mut input,
            },
        )
        .ctx(|| what("loading the image"))?;
    // The load is done when its answer has been read to the end.
    std::io::copy(r.reader(), &mut std::io::sink()).ctx(|| what("reading the load's answer"))?;
    out.push(Metric::ms("load"), ms(t.elapsed()));
    let script = "mkdir -p /w; i=0; while [ $i -lt 500 ]; do echo $i > /w/f$i; i=$((i+1)); done";
    let t = Instant::now();
    let created = c
        .json(
            "POST",
            "/containers/create",
            &[],
            Body::Json(serde_json::json!({
                "Image": IMAGE, "Cmd": ["sh", "-c", script],
                "HostConfig": {"NetworkMode": "none"},
            })),
        )
        .ctx(|| what("creating a container"))?;
    out.push(Metric::ms("create"), ms(t.elapsed()));
    let id = created["Id"]
        .as_str()
        .ok_or_else(|| BenchError::Engine(what("create answered no Id")))?
        .to_string();
    let result = container_steps(c, &id, &what, out);
    // The container goes, also when a step failed; its removal is the last timed step.
    let t = Instant::now();
    let rm = c
        .call(
            "DELETE",
            &format!("/containers/{id}"),
            &[("force", "1".into()), ("v", "1".into())],
            Body::None,
        )
        .map(drop)
        .ctx(|| what("removing the container"));
    if result.is_ok() && rm.is_ok() {
        out.push(Metric::ms("rm"), ms(t.elapsed()));
    }
    remove_images(c);
    result.and(rm)
}

fn container_steps(
    c: &Client,
    id: &str,
    what: &dyn Fn(&str) -> String,
    out: &mut Samples,
) -> BenchResult<()> {
    let t = Instant::now();
    c.call("POST", &format!("/containers/{id}/start"), &[], Body::None)
        .ctx(|| what("starting the container"))?;
    out.push(Metric::ms("start"), ms(t.elapsed()));
    let waited = c
        .json("POST", &format!("/containers/{id}/wait"), &[], Body::None)
        .ctx(|| what("waiting for the container"))?;
    out.push(Metric::ms("start to exit"), ms(t.elapsed()));
    if waited["StatusCode"].as_i64() != Some(0) {
        return Err(BenchError::Engine(what(&format!(
            "the container's command failed: {waited}"
        ))));
    }
    let t = Instant::now();
    let changes = c
        .json("GET", &format!("/containers/{id}/changes"), &[], Body::None)
        .ctx(|| what("listing changes"))?;
    out.push(Metric::ms("diff"), ms(t.elapsed()));
    let n = changes.as_array().map_or(0, |a| a.len());
    if n < 500 {
        return Err(BenchError::Engine(what(&format!(
            "the container's changes list {n} paths, not the 501 written"
        ))));
    }
    let t = Instant::now();
    c.call(
        "POST",
        "/commit",
        &[
            ("container", id.to_string()),
            ("repo", "strata-bench/committed".into()),
            ("tag", "latest".into()),
        ],
        Body::None,
    )
    .ctx(|| what("committing"))?;
    out.push(Metric::ms("commit"), ms(t.elapsed()));
    let t = Instant::now();
    let mut r = c
        .call("GET", &format!("/containers/{id}/export"), &[], Body::None)
        .ctx(|| what("exporting"))?;
    let bytes =
        std::io::copy(r.reader(), &mut std::io::sink()).ctx(|| what("reading the export"))?;
    let took = t.elapsed();
    out.push(Metric::ms("export"), ms(took));
    out.push(
        Metric::rate("export rate", "MB/s"),
        bytes as f64 / 1e6 / took.as_secs_f64(),
    );
    Ok(())
}

/// A Strata daemon the harness started on a driver's backing store; stopped by PID.
pub struct StrataDaemon {
    child: Child,
    pub host: String,
    run_dir: tempfile::TempDir,
}

impl StrataDaemon {
    /// Starts `exe daemon` with `driver` on the data root `data_root`.
    pub fn start(
        exe: &Path,
        data_root: &Path,
        driver: &str,
        opts: &[String],
    ) -> BenchResult<StrataDaemon> {
        let run_dir = tempfile::Builder::new()
            .prefix("strata-bench-api-")
            .tempdir_in("/tmp")
            .ctx(|| "a run directory in /tmp".into())?;
        let sock = run_dir.path().join("s.sock");
        let host = format!("unix://{}", sock.display());
        let log = std::fs::File::create(run_dir.path().join("daemon.log"))
            .ctx(|| "the daemon's log".into())?;
        // An empty configuration: the host's /etc/strata/daemon.json does not apply.
        let config = run_dir.path().join("daemon.json");
        std::fs::write(&config, "{}").ctx(|| "the daemon's configuration".into())?;
        let mut cmd = Command::new(exe);
        cmd.arg("daemon")
            .arg("--data-root")
            .arg(data_root)
            .arg("--exec-root")
            .arg(run_dir.path().join("exec"))
            .arg("--pidfile")
            .arg(run_dir.path().join("pid"))
            .args(["--host", &host, "--storage-driver", driver])
            .args(["--bridge", "none", "--iptables=false"])
            .arg("--config-file")
            .arg(&config);
        for o in opts {
            cmd.args(["--storage-opt", o]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx(|| format!("starting {} daemon", exe.display()))?;
        let mut d = StrataDaemon {
            child,
            host,
            run_dir,
        };
        let t = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(BenchError::Engine(format!(
                    "the Strata daemon on {driver} exited ({status}): {}",
                    d.log_tail()
                )));
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err(BenchError::Engine(format!(
                    "the Strata daemon on {driver} did not answer within 60 s: {}",
                    d.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.run_dir.path().join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The daemon's run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.run_dir.path().to_path_buf()
    }
}

impl Drop for StrataDaemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Sizes;

    #[test]
    fn the_image_archive_has_a_manifest_naming_its_layers() {
        if !Path::new("/bin/busybox").exists() {
            eprintln!("SKIPPED: /bin/busybox is missing");
            return;
        }
        let data = DataSet::new(Sizes::small());
        let a = image_archive(&data).unwrap();
        let mut r = strata_graph::archive::tar::TarReader::new(&a[..], false);
        let mut names = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            names.push(e.display());
        }
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(names.last().map(String::as_str), Some("manifest.json"));
    }
}
