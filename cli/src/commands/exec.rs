//! `exec`, `pause`, `unpause`, `top`, `stats` and `update`: working with running containers.

use super::session::{isatty, session, term_size};
use super::{each, out};
use crate::format::{align, human_size, print_rows, short_id};
use crate::CliError;
use clap::Args;
use serde_json::{json, Value};
use strata_api::client::{escape, Body, Client};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set environment variables.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command.
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn exec(c: &Client, a: ExecArgs) -> Result<(), CliError> {
    let mut cfg = json!({
        "Cmd": a.command, "Tty": a.tty, "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach, "AttachStderr": !a.detach, "Privileged": a.privileged,
        "Env": a.env,
    });
    if let Some(u) = &a.user {
        cfg["User"] = json!(u);
    }
    if let Some(w) = &a.workdir {
        cfg["WorkingDir"] = json!(w);
    }
    if a.tty {
        if let Some((w, h)) = term_size(1) {
            cfg["ConsoleSize"] = json!([h, w]);
        }
    }
    let v = c.json(
        "POST",
        &format!("/containers/{}/exec", escape(&a.container)),
        &[],
        Body::Json(cfg),
    )?;
    let id = v["Id"].as_str().unwrap_or_default().to_string();
    let path = format!("/exec/{id}/start");
    if a.detach {
        c.call(
            "POST",
            &path,
            &[],
            Body::Json(json!({ "Detach": true, "Tty": a.tty })),
        )?;
        return Ok(());
    }
    let mut resp = c.upgrade(
        "POST",
        &path,
        &[],
        Body::Json(json!({ "Detach": false, "Tty": a.tty })),
    )?;
    let resizer = {
        let c = c.clone();
        let id = id.clone();
        Box::new(move |w: u16, h: u16| {
            let _ = c.call(
                "POST",
                &format!("/exec/{id}/resize"),
                &[("h", h.to_string()), ("w", w.to_string())],
                Body::None,
            );
        })
    };
    session(
        &mut resp,
        a.tty,
        a.interactive && (isatty(0) || !a.tty),
        Some(resizer),
        false,
    )?;
    let info = c.json("GET", &format!("/exec/{id}/json"), &[], Body::None)?;
    match info["ExitCode"].as_i64().unwrap_or(0) {
        0 => Ok(()),
        code => Err(CliError::Exit(code as i32)),
    }
}

#[derive(Args, Debug)]
pub struct NamesArg {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `pause` or `unpause`.
pub fn pause(c: &Client, a: NamesArg, action: &str) -> Result<(), CliError> {
    each(&a.containers, |n| {
        c.call(
            "POST",
            &format!("/containers/{}/{action}", escape(n)),
            &[],
            Body::None,
        )?;
        out(&format!("{n}\n"))
    })
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// Options for ps.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn top(c: &Client, a: TopArgs) -> Result<(), CliError> {
    let mut q = vec![];
    if !a.ps_args.is_empty() {
        q.push(("ps_args", a.ps_args.join(" ")));
    }
    let v = c.json(
        "GET",
        &format!("/containers/{}/top", escape(&a.container)),
        &q,
        Body::None,
    )?;
    let row = |r: &Value| {
        r.as_array()
            .into_iter()
            .flatten()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\t")
    };
    let mut lines = vec![row(&v["Titles"])];
    lines.extend(v["Processes"].as_array().into_iter().flatten().map(row));
    // docker's top pads every column to the widest cell plus its tabwriter's padding.
    out(&align(&lines))
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    pub no_stream: bool,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

/// Binary sizes as docker's stats prints memory (`1.762MiB`).
fn binary_size(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut i) = (b, 0);
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    // Go's %.4g: four significant digits, trailing zeros dropped.
    let int_digits = if v < 1.0 {
        1
    } else {
        v.log10().floor() as usize + 1
    };
    let dec = 4usize.saturating_sub(int_digits);
    let s = format!("{v:.dec$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// The row of one stats record, as docker's stats command computes it.
fn stats_row(v: &Value, no_trunc: bool) -> Value {
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let cpu_delta =
        f("/cpu_stats/cpu_usage/total_usage") - f("/precpu_stats/cpu_usage/total_usage");
    let sys_delta = f("/cpu_stats/system_cpu_usage") - f("/precpu_stats/system_cpu_usage");
    let ncpu = f("/cpu_stats/online_cpus").max(1.0);
    let cpu = if cpu_delta > 0.0 && sys_delta > 0.0 {
        cpu_delta / sys_delta * ncpu * 100.0
    } else {
        0.0
    };
    let stats = &v["memory_stats"]["stats"];
    let inactive = stats["total_inactive_file"]
        .as_f64()
        .or_else(|| stats["inactive_file"].as_f64())
        .unwrap_or(0.0);
    let usage = (f("/memory_stats/usage") - inactive).max(0.0);
    let limit = f("/memory_stats/limit");
    let (mut read, mut write) = (0.0, 0.0);
    for e in v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let n = e["value"].as_f64().unwrap_or(0.0);
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => read += n,
            Some("write") => write += n,
            _ => {}
        }
    }
    let id = v["id"].as_str().unwrap_or_default();
    json!({
        "Container": id,
        "ID": if no_trunc { id.to_string() } else { short_id(id) },
        "Name": v["name"].as_str().unwrap_or_default().trim_start_matches('/'),
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", binary_size(usage), binary_size(limit)),
        "MemPerc": format!("{:.2}%", if limit > 0.0 { usage / limit * 100.0 } else { 0.0 }),
        "NetIO": "0B / 0B",
        "BlockIO": format!("{} / {}", human_size(read), human_size(write)),
        "PIDs": v["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
const STATS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

pub fn stats(c: &Client, a: StatsArgs) -> Result<(), CliError> {
    let names: Vec<String> = if a.containers.is_empty() {
        let q = if a.all {
            vec![("all", "1".to_string())]
        } else {
            vec![]
        };
        c.json("GET", "/containers/json", &q, Body::None)?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["Id"].as_str().map(String::from))
            .collect()
    } else {
        a.containers.clone()
    };
    loop {
        // One sample per container, taken side by side (each takes a second).
        let handles: Vec<_> = names
            .iter()
            .map(|n| {
                let c = c.clone();
                let n = n.clone();
                std::thread::spawn(move || {
                    c.json(
                        "GET",
                        &format!("/containers/{}/stats", escape(&n)),
                        &[("stream", "0".to_string())],
                        Body::None,
                    )
                })
            })
            .collect();
        let mut rows = Vec::new();
        for h in handles {
            let v = h
                .join()
                .map_err(|_| CliError::Usage("a stats request failed".into()))??;
            rows.push(stats_row(&v, a.no_trunc));
        }
        if !a.no_stream {
            out("\x1b[2J\x1b[H")?;
        }
        print_rows(a.format.as_deref(), STATS_TABLE, STATS_HEADERS, &rows)?;
        if a.no_stream {
            return Ok(());
        }
    }
}

/// The resource flags `create`, `run` and `update` share.
#[derive(Args, Debug, Default)]
pub struct ResourceArgs {
    /// Memory limit.
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap.
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000.
    #[arg(long)]
    pub blkio_weight: Option<i64>,
}

impl ResourceArgs {
    /// Sets the HostConfig fields of the flags given.
    pub fn apply(&self, hc: &mut Value) -> Result<(), CliError> {
        for (k, v) in [("Memory", &self.memory), ("MemorySwap", &self.memory_swap)] {
            if let Some(v) = v {
                hc[k] = json!(ram_in_bytes(v)?);
            }
        }
        if let Some(n) = self.cpus {
            hc["NanoCpus"] = json!((n * 1e9) as i64);
        }
        for (k, v) in [
            ("CpuShares", self.cpu_shares),
            ("PidsLimit", self.pids_limit),
            ("BlkioWeight", self.blkio_weight),
        ] {
            if let Some(v) = v {
                hc[k] = json!(v);
            }
        }
        if let Some(s) = &self.cpuset_cpus {
            hc["CpusetCpus"] = json!(s);
        }
        Ok(())
    }
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Restart policy to apply when a container exits.
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// A size as docker's `RAMInBytes` reads it (`32m`, `1.5g`, `512k`, `1024`); -1 passes.
pub fn ram_in_bytes(s: &str) -> Result<i64, CliError> {
    let bad = || CliError::Usage(format!("invalid size: '{s}'"));
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

/// A `--restart` value as the API's RestartPolicy.
pub fn restart_policy(r: &str) -> Value {
    let (name, count) = r.split_once(':').unwrap_or((r, "0"));
    json!({ "Name": name, "MaximumRetryCount": count.parse::<i64>().unwrap_or(0) })
}

pub fn update(c: &Client, a: UpdateArgs) -> Result<(), CliError> {
    let mut body = json!({});
    a.resources.apply(&mut body)?;
    if let Some(r) = &a.restart {
        body["RestartPolicy"] = restart_policy(r);
    }
    each(&a.containers, |n| {
        c.call(
            "POST",
            &format!("/containers/{}/update", escape(n)),
            &[],
            Body::Json(body.clone()),
        )?;
        out(&format!("{n}\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(ram_in_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(ram_in_bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("-1").unwrap(), -1);
        assert!(ram_in_bytes("lots").is_err());
        assert_eq!(binary_size(1847296.0), "1.762MiB");
        assert_eq!(binary_size(67108864.0), "64MiB");
        assert_eq!(binary_size(0.0), "0B");
    }

    #[test]
    fn stats_figures() {
        let v = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000}, "system_cpu_usage": 20_000_000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
            "memory_stats": {"usage": 2097152, "limit": 4194304, "stats": {"total_inactive_file": 1048576}},
            "pids_stats": {"current": 3},
        });
        let r = stats_row(&v, false);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "1MiB / 4MiB");
        assert_eq!(r["MemPerc"], "25.00%");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["PIDs"], "3");
    }
}
