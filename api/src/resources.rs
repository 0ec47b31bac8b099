//! What a running container uses and may use: `top` (its processes, through the host's `ps`),
//! `stats` (one-shot and streaming, from its cgroup files) and `update` (its limits, applied
//! through the runtime while it runs).

use crate::body::{json, read_json, stream, Query, Resp};
use crate::containers::{emit, find, require_running};
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json as j, Value};
use std::sync::Arc;
use std::time::Duration;
use strata_graph::time::{rfc3339_now, ZERO_TIME};
use strata_runtime::cgroups::{host_memory, system_cpu_usage, Cgroup, Sample};
use strata_runtime::Container;

/// `GET /containers/{id}/top`.
pub async fn top(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    require_running(&c)?;
    let args: Vec<String> = q
        .get("ps_args")
        .filter(|a| !a.is_empty())
        .unwrap_or("-ef")
        .split_whitespace()
        .map(String::from)
        .collect();
    let rt = d.runtime.clone();
    let id = c.id.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let pids = rt.pids(&id)?;
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| ApiError::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(ApiError::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    })
    .await??;
    Ok(json(StatusCode::OK, &res))
}

/// dockerd's reading of `ps` output: the titles, then the lines whose PID column is one of
/// `pids` (the last column may contain spaces).
fn parse_ps(out: &str, pids: &[i32]) -> Result<Value, ApiError> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<&str> = header.split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for l in lines {
        if l.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = l.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let n = titles.len();
        let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
        row.push(fields.get(n - 1..).map(|r| r.join(" ")).unwrap_or_default());
        procs.push(row);
    }
    Ok(j!({ "Titles": titles, "Processes": procs }))
}

/// One stats record: `cur` now, `pre` the sample before it.
fn record(c: &Container, cur: &Sample, pre: Option<&(Sample, u64, String)>, sys: u64) -> Value {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |s: &Sample, sys: u64| {
        let mut usage = j!({
            "total_usage": s.cpu_total,
            "usage_in_kernelmode": s.cpu_kernel,
            "usage_in_usermode": s.cpu_user,
        });
        if !s.cpu_percpu.is_empty() {
            usage["percpu_usage"] = j!(s.cpu_percpu);
        }
        j!({
            "cpu_usage": usage,
            "system_cpu_usage": sys,
            "online_cpus": ncpu,
            "throttling_data": {
                "periods": s.throttle_periods,
                "throttled_periods": s.throttled_periods,
                "throttled_time": s.throttled_time,
            },
        })
    };
    // Unlimited, or above what the host has: the host's memory, as docker shows it.
    let host = host_memory();
    let mut memory = j!({
        "usage": cur.mem_usage,
        "stats": cur.mem_stat,
        "limit": cur.mem_limit.unwrap_or(host).min(host.max(1)),
    });
    if let Some(m) = cur.mem_max_usage {
        memory["max_usage"] = j!(m);
    }
    if let Some(f) = cur.mem_failcnt {
        memory["failcnt"] = j!(f);
    }
    let io: Vec<Value> = cur
        .io_bytes
        .iter()
        .map(|(ma, mi, op, v)| j!({ "major": ma, "minor": mi, "op": op, "value": v }))
        .collect();
    let (precpu, preread) = match pre {
        Some((s, sys, at)) => (cpu(s, *sys), at.clone()),
        None => (
            j!({ "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
                "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 } }),
            ZERO_TIME.to_string(),
        ),
    };
    j!({
        "read": if cur.present { rfc3339_now() } else { ZERO_TIME.to_string() },
        "preread": preread,
        "pids_stats": if cur.present {
            let mut p = j!({ "current": cur.pids_current });
            if let Some(l) = cur.pids_limit { p["limit"] = j!(l); }
            p
        } else { j!({}) },
        "blkio_stats": {
            "io_service_bytes_recursive": if io.is_empty() { Value::Null } else { Value::Array(io) },
            "io_serviced_recursive": null, "io_queue_recursive": null,
            "io_service_time_recursive": null, "io_wait_time_recursive": null,
            "io_merged_recursive": null, "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": if cur.present { cpu(cur, sys) } else { cpu(&Sample::default(), 0) },
        "precpu_stats": precpu,
        "memory_stats": if cur.present { memory } else { j!({}) },
        "name": format!("/{}", c.name),
        "id": c.id,
    })
}

/// `GET /containers/{id}/stats`: a record a second while streaming; without `stream`, one
/// record a second after the first sample (so the CPU figures have a base), or at once with
/// `one-shot`.
pub async fn stats(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let streaming = q.get("stream").is_none_or(|v| v == "1" || v == "true");
    let one_shot = q.bool("one-shot");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let daemon = d.clone();
    tokio::spawn(async move {
        let cg = Cgroup::of(&strata_runtime::lifecycle::cgroup_path(&c.id));
        let mut pre: Option<(Sample, u64, String)> = None;
        loop {
            let running = daemon.containers.get(&c.id).is_ok_and(|x| x.state.running);
            let cg2 = cg.clone();
            let cur = tokio::task::spawn_blocking(move || {
                if running {
                    cg2.sample()
                } else {
                    Sample::default()
                }
            })
            .await
            .unwrap_or_default();
            let sys = system_cpu_usage();
            if !streaming && pre.is_none() && !one_shot && running {
                pre = Some((cur, sys, rfc3339_now()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let rec = record(&c, &cur, pre.as_ref(), sys);
            let line = format!("{rec}\n");
            if tx.send(Ok(bytes::Bytes::from(line))).await.is_err() || !streaming {
                return;
            }
            pre = Some((cur, sys, rfc3339_now()));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(stream(StatusCode::OK, "application/json", rx))
}

/// The HostConfig fields `update` may change.
const UPDATABLE: &[&str] = &[
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "KernelMemory",
    "NanoCpus",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "BlkioWeight",
    "RestartPolicy",
];

/// `POST /containers/{id}/update`.
pub async fn update(d: &Arc<Daemon>, key: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let body = read_json(req.into_body(), 1 << 20)
        .await?
        .unwrap_or(Value::Null);
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("invalid JSON: expected an object"));
    };
    let mut hc = c.host_config.clone();
    for (k, v) in &body {
        if !UPDATABLE.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        // Zero leaves a setting as it is (the CLI sends only what was given, as zero
        // otherwise), except for what can be reset.
        if v.as_i64() == Some(0) || v.as_str() == Some("") {
            continue;
        }
        if k == "Memory" {
            if let (Some(new), Some(swap)) = (v.as_i64(), hc["MemorySwap"].as_i64()) {
                if swap > 0 && new > swap && body.get("MemorySwap").is_none_or(Value::is_null) {
                    return Err(ApiError::bad_request("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"));
                }
            }
        }
        hc[k] = v.clone();
    }
    if let Some(p) = body.get("RestartPolicy").filter(|p| !p.is_null()) {
        crate::restart::Policy::parse(p)?;
        if c.host_config["AutoRemove"].as_bool() == Some(true)
            && p["Name"]
                .as_str()
                .is_some_and(|n| !n.is_empty() && n != "no")
        {
            return Err(ApiError::bad_request(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
    }
    let mut res = strata_runtime::spec::builder::resources(&hc)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if c.state.running {
        if let Some(o) = res.as_object_mut() {
            o.remove("devices");
        }
        let rt = d.runtime.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || rt.update(&id, &res))
            .await?
            .map_err(|e| ApiError::internal(format!("Cannot update container {}: {e}", c.id)))?;
    }
    d.containers.update(&c.id, |x| x.host_config = hc.clone())?;
    emit(d, &c, "update", &[]);
    Ok(json(StatusCode::OK, &j!({ "Warnings": [] })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ps_output() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 10:00 ?        00:00:01 /sbin/init splash\nroot          42       1  0 10:01 ?        00:00:00 sleep 100\n";
        let v = super::parse_ps(out, &[42]).unwrap();
        assert_eq!(v["Titles"][7], "CMD");
        assert_eq!(v["Processes"].as_array().unwrap().len(), 1);
        assert_eq!(v["Processes"][0][7], "sleep 100");
        assert!(super::parse_ps("USER COMMAND\nx y\n", &[1]).is_err());
    }
}
