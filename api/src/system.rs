//! `/_ping`, `/version`, `/info`.

use crate::body::{json, text, Resp};
use crate::{ApiError, Daemon, API_VERSION, MIN_API_VERSION};
use hyper::header::HeaderValue;
use hyper::StatusCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn ping(head: bool) -> Resp {
    let mut r = text(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        if head { "" } else { "OK" },
    );
    let h = r.headers_mut();
    h.insert("API-Version", HeaderValue::from_static(API_VERSION));
    h.insert("OSType", HeaderValue::from_static("linux"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    r
}

fn uname() -> (String, String, String) {
    // SAFETY: zeroed utsname is a valid out-buffer for uname(2).
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), "unknown".into(), "unknown".into());
    }
    let field = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (field(&u.release), field(&u.machine), field(&u.nodename))
}

fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version() -> Resp {
    let (kernel, machine, _) = uname();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "Platform": { "Name": "Strata" },
            "Components": [{ "Name": "Engine", "Version": VERSION, "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                "Arch": go_arch(&machine), "KernelVersion": kernel, "GitCommit": "", "GoVersion": "", "BuildTime": "" } }],
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "",
            "GoVersion": "",
            "Os": "linux",
            "Arch": go_arch(&machine),
            "KernelVersion": kernel,
            "BuildTime": "",
        }),
    )
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

pub async fn info(d: &Daemon) -> Result<Resp, ApiError> {
    let (kernel, machine, host) = uname();
    let driver = d.layers.driver().clone();
    let images = d.images.list().len();
    let containers = d.containers.list();
    let running = containers.iter().filter(|c| c.state.running).count();
    let paused = containers.iter().filter(|c| c.state.paused).count();
    let (status, driver_warnings): (Vec<[String; 2]>, Vec<String>) =
        tokio::task::spawn_blocking(move || {
            let mut status: Vec<[String; 2]> =
                driver.status().into_iter().map(|(k, v)| [k, v]).collect();
            // How deep a chain of layers this driver can mount (Docker has 125 for all).
            status.push([
                "Max Layer Depth".into(),
                driver
                    .max_depth()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
            ]);
            (status, driver.warnings())
        })
        .await?;
    let (runtimes, default_runtime) = {
        let r = d.runtimes.read().unwrap_or_else(|p| p.into_inner());
        (r.info(), r.default.clone())
    };
    let log_driver = d
        .log_default
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .driver
        .clone();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    // The daemon's own network namespace's switches, warned about in dockerd's words.
    let on = |key: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/{key}")).is_ok_and(|v| v.trim() == "1")
    };
    let ip_forwarding = on("ipv4/ip_forward");
    let nf_iptables = on("bridge/bridge-nf-call-iptables");
    let nf_ip6tables = on("bridge/bridge-nf-call-ip6tables");
    let mut warnings: Vec<String> = driver_warnings;
    if !ip_forwarding {
        warnings.push("WARNING: IPv4 forwarding is disabled".into());
    }
    if !nf_iptables {
        warnings.push("WARNING: bridge-nf-call-iptables is disabled".into());
    }
    if !nf_ip6tables {
        warnings.push("WARNING: bridge-nf-call-ip6tables is disabled".into());
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "ID": "",
            "Containers": containers.len(), "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": d.layers.driver().name(),
            "DriverStatus": status,
            "Plugins": { "Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null,
                "Log": ["json-file", "local"] },
            "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
            "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": ip_forwarding,
            "BridgeNfIptables": nf_iptables, "BridgeNfIp6tables": nf_ip6tables,
            "Debug": d.debug.load(std::sync::atomic::Ordering::Relaxed),
            "NFd": 0, "NGoroutines": 0,
            "SystemTime": "",
            "LoggingDriver": log_driver,
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": cgroup_version,
            "NEventsListener": 0,
            "KernelVersion": kernel,
            "OperatingSystem": os_name(),
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": d.distribution.registries().info(),
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "DockerRootDir": d.data_root.display().to_string(),
            "Name": host,
            "Labels": *d.labels.read().unwrap_or_else(|p| p.into_inner()),
            "ExperimentalBuild": false,
            "ServerVersion": VERSION,
            "Runtimes": runtimes,
            "DefaultRuntime": default_runtime,
            "Swarm": { "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null, "NodeID": "", "NodeAddr": "" },
            "LiveRestoreEnabled": d.live_restore.load(std::sync::atomic::Ordering::Relaxed),
            "Isolation": "",
            "InitBinary": if strata_runtime::spec::mounts::find_init().is_some() { "docker-init" } else { "" },
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": warnings,
        }),
    ))
}
