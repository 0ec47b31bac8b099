//! Reading a container's cgroup (`/strata/<id>`): the figures of `docker stats` and the OOM
//! kill count. Works on the hybrid layout (v1 controllers under `/sys/fs/cgroup/<controller>`,
//! the unified hierarchy at `/sys/fs/cgroup/unified`), where runc puts the limits in v1, and
//! on a pure v2 host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A container's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The cgroup path (`/strata/<id>`).
    path: String,
    /// `/sys/fs/cgroup` (or another mount point, for tests).
    mount: PathBuf,
    v2: bool,
}

/// What `docker stats` shows of a container, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// CPU time used, nanoseconds.
    pub cpu_total: u64,
    pub cpu_user: u64,
    pub cpu_kernel: u64,
    /// Per CPU, nanoseconds (v1 only).
    pub cpu_percpu: Vec<u64>,
    pub throttle_periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    pub mem_usage: u64,
    /// Highest usage (v1 only).
    pub mem_max_usage: Option<u64>,
    /// The limit; `None` when unlimited.
    pub mem_limit: Option<u64>,
    pub mem_failcnt: Option<u64>,
    pub mem_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    /// `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// (major, minor, op, bytes): Read, Write.
    pub io_bytes: Vec<(u64, u64, String, u64)>,
    /// Whether the cgroup was there at all.
    pub present: bool,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines.
fn kv(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

/// A limit file: a number, or `max` / a v1 "unlimited" huge value.
fn limit(p: &Path) -> Option<u64> {
    let t = read(p)?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    let n: u64 = t.parse().ok()?;
    (n < (1u64 << 62)).then_some(n)
}

impl Cgroup {
    /// The cgroup at `path` on this host.
    pub fn of(path: &str) -> Cgroup {
        Self::at(Path::new("/sys/fs/cgroup"), path)
    }

    /// The cgroup at `path` under the cgroup mount `mount`.
    pub fn at(mount: &Path, path: &str) -> Cgroup {
        Cgroup {
            path: path.trim_start_matches('/').to_string(),
            mount: mount.to_path_buf(),
            v2: mount.join("cgroup.controllers").exists(),
        }
    }

    fn v1(&self, controller: &str, file: &str) -> PathBuf {
        self.mount.join(controller).join(&self.path).join(file)
    }

    fn v2(&self, file: &str) -> PathBuf {
        self.mount.join(&self.path).join(file)
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = if self.v2 {
            read(&self.v2("memory.events"))?
        } else {
            read(&self.v1("memory", "memory.oom_control"))?
        };
        kv(&text).get("oom_kill").copied()
    }

    /// Reads the figures now.
    pub fn sample(&self) -> Sample {
        if self.v2 {
            self.sample_v2()
        } else {
            self.sample_v1()
        }
    }

    fn sample_v1(&self) -> Sample {
        let tick_ns = 1_000_000_000 / clock_ticks();
        let cpuacct = kv(&read(&self.v1("cpuacct", "cpuacct.stat")).unwrap_or_default());
        let throttle = kv(&read(&self.v1("cpu", "cpu.stat")).unwrap_or_default());
        let mut io_bytes = Vec::new();
        for l in read(&self.v1("blkio", "blkio.throttle.io_service_bytes"))
            .unwrap_or_default()
            .lines()
        {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let [dev, op @ ("Read" | "Write"), n] = w.as_slice() {
                if let (Some((ma, mi)), Ok(n)) = (dev.split_once(':'), n.parse()) {
                    if let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) {
                        io_bytes.push((ma, mi, op.to_string(), n));
                    }
                }
            }
        }
        Sample {
            present: self.v1("memory", "").exists() || self.v1("pids", "").exists(),
            cpu_total: num(&self.v1("cpuacct", "cpuacct.usage")).unwrap_or(0),
            cpu_user: cpuacct.get("user").copied().unwrap_or(0) * tick_ns,
            cpu_kernel: cpuacct.get("system").copied().unwrap_or(0) * tick_ns,
            cpu_percpu: read(&self.v1("cpuacct", "cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect(),
            throttle_periods: throttle.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: throttle.get("throttled_time").copied().unwrap_or(0),
            mem_usage: num(&self.v1("memory", "memory.usage_in_bytes")).unwrap_or(0),
            mem_max_usage: num(&self.v1("memory", "memory.max_usage_in_bytes")),
            mem_limit: limit(&self.v1("memory", "memory.limit_in_bytes")),
            mem_failcnt: num(&self.v1("memory", "memory.failcnt")),
            mem_stat: kv(&read(&self.v1("memory", "memory.stat")).unwrap_or_default()),
            pids_current: num(&self.v1("pids", "pids.current")).unwrap_or(0),
            pids_limit: limit(&self.v1("pids", "pids.max")),
            io_bytes,
        }
    }

    fn sample_v2(&self) -> Sample {
        let cpu = kv(&read(&self.v2("cpu.stat")).unwrap_or_default());
        let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
        let mut io_bytes = Vec::new();
        for l in read(&self.v2("io.stat")).unwrap_or_default().lines() {
            let mut w = l.split_whitespace();
            let Some((ma, mi)) = w.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
                continue;
            };
            for f in w {
                match f.split_once('=') {
                    Some(("rbytes", n)) => {
                        io_bytes.push((ma, mi, "read".into(), n.parse().unwrap_or(0)))
                    }
                    Some(("wbytes", n)) => {
                        io_bytes.push((ma, mi, "write".into(), n.parse().unwrap_or(0)))
                    }
                    _ => {}
                }
            }
        }
        Sample {
            present: self.v2("").exists(),
            cpu_total: us("usage_usec"),
            cpu_user: us("user_usec"),
            cpu_kernel: us("system_usec"),
            cpu_percpu: Vec::new(),
            throttle_periods: cpu.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: us("throttled_usec"),
            mem_usage: num(&self.v2("memory.current")).unwrap_or(0),
            mem_max_usage: None,
            mem_limit: limit(&self.v2("memory.max")),
            mem_failcnt: None,
            mem_stat: kv(&read(&self.v2("memory.stat")).unwrap_or_default()),
            pids_current: num(&self.v2("pids.current")).unwrap_or(0),
            pids_limit: limit(&self.v2("pids.max")),
            io_bytes,
        }
    }

    /// Whether this is the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        self.v2
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Whether the host's cgroups can weigh block I/O (`blkio.weight` in v1, `io` in v2, or the
/// BFQ form); dockerd discards `--blkio-weight` with a warning where not.
pub fn blkio_weight_supported() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        // On v2 the root lists the controllers; their files show in child cgroups only.
        let ctrls = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        return ctrls.split_whitespace().any(|c| c == "io");
    }
    ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .any(|n| root.join("blkio").join(n).exists())
}

/// The host's CPU time (all CPUs, nanoseconds), as docker's `system_cpu_usage`.
pub fn system_cpu_usage() -> u64 {
    let stat = read(Path::new("/proc/stat")).unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks * (1_000_000_000 / clock_ticks())
}

/// The host's memory (bytes), the limit docker shows for an unlimited container.
pub fn host_memory() -> u64 {
    let info = read(Path::new("/proc/meminfo")).unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: PathBuf, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn v1_files() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path();
        let c = |ctrl: &str, f: &str| m.join(ctrl).join("strata/abc").join(f);
        write(c("cpuacct", "cpuacct.usage"), "5000\n");
        write(c("cpuacct", "cpuacct.usage_percpu"), "2000 3000 \n");
        write(c("memory", "memory.usage_in_bytes"), "4096\n");
        write(
            c("memory", "memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            c("memory", "memory.stat"),
            "cache 10\ntotal_inactive_file 7\n",
        );
        write(
            c("memory", "memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(c("pids", "pids.current"), "3\n");
        write(c("pids", "pids.max"), "64\n");
        write(
            c("blkio", "blkio.throttle.io_service_bytes"),
            "8:0 Read 100\n8:0 Write 50\n8:0 Total 150\nTotal 150\n",
        );
        let g = Cgroup::at(m, "/strata/abc");
        assert!(!g.is_v2());
        let s = g.sample();
        assert!(s.present);
        assert_eq!(s.cpu_total, 5000);
        assert_eq!(s.cpu_percpu, vec![2000, 3000]);
        assert_eq!(s.mem_usage, 4096);
        assert_eq!(s.mem_limit, None);
        assert_eq!(s.mem_stat["total_inactive_file"], 7);
        assert_eq!((s.pids_current, s.pids_limit), (3, Some(64)));
        assert_eq!(s.io_bytes.len(), 2);
        assert_eq!(g.oom_kills(), Some(2));
    }

    #[test]
    fn v2_files() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path();
        write(m.join("cgroup.controllers"), "cpu memory pids\n");
        let c = |f: &str| m.join("strata/abc").join(f);
        write(c("cpu.stat"), "usage_usec 7\nuser_usec 5\nsystem_usec 2\n");
        write(c("memory.current"), "8192\n");
        write(c("memory.max"), "33554432\n");
        write(
            c("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        write(c("pids.max"), "max\n");
        write(c("io.stat"), "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n");
        let g = Cgroup::at(m, "/strata/abc");
        assert!(g.is_v2());
        let s = g.sample();
        assert_eq!((s.cpu_total, s.cpu_user, s.cpu_kernel), (7000, 5000, 2000));
        assert_eq!(s.mem_limit, Some(33554432));
        assert_eq!(s.pids_limit, None);
        assert_eq!(s.io_bytes.len(), 2);
        assert_eq!(g.oom_kills(), Some(1));
        assert!(system_cpu_usage() > 0 && host_memory() > 0);
    }
}
