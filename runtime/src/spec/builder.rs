//! A container's OCI runtime spec (`config.json`), with dockerd's defaults: namespaces,
//! capabilities, mounts, masked paths, devices, and the resources of its HostConfig.
//!
//! The spec is assembled as JSON, then read into `oci_spec::runtime::Spec`, so a field of the
//! wrong shape fails here rather than in the runtime.

use super::defaults::{
    ALLOWED_DEVICES, ALL_CAPABILITIES, CAPABILITIES, MASKED_PATHS, READONLY_PATHS,
};
use super::user::ResolvedUser;
use crate::Container;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Errors building a spec; these are the user's (400) unless said otherwise.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Worded as dockerd's (the field is for logs).
    #[error("{reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("building the runtime spec: {0}")]
    Internal(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Files of the container's state directory bind-mounted into it.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

/// What a spec is made from.
pub struct SpecInput<'a> {
    pub container: &'a Container,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    pub etc: Option<&'a EtcFiles>,
    /// The cgroup path (`/strata/<id>`).
    pub cgroup_path: String,
    /// The init binary for `--init` (mounted at `/sbin/docker-init`).
    pub init: Option<&'a Path>,
    /// Its network namespace.
    pub network: &'a super::network::NetworkNs,
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// "All" capabilities: those of the daemon's own bounding set (a host may withhold some, and
/// a container cannot get what its runtime does not hold; dockerd asks for every one the
/// kernel knows and fails there).
pub fn all_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding.is_none_or(|b| b & (1u64 << bit) != 0))
        .map(|(_, s)| s.to_string())
        .collect()
}

/// The capability set from the defaults, `CapAdd`/`CapDrop` (`ALL` allowed) and
/// `Privileged`.
pub fn capabilities(hc: &Value) -> Result<Vec<String>, SpecError> {
    if hc["Privileged"].as_bool() == Some(true) {
        return Ok(all_capabilities());
    }
    let list = |k: &'static str| -> Result<Vec<String>, SpecError> {
        match &hc[k] {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(cap_name)
                        .ok_or_else(|| invalid(k, "must be a list of capability names"))
                })
                .collect(),
            _ => Err(invalid(k, "must be a list of capability names")),
        }
    };
    let (add, drop) = (list("CapAdd")?, list("CapDrop")?);
    for c in add.iter().chain(drop.iter()) {
        if c != "CAP_ALL" && !ALL_CAPABILITIES.contains(&c.as_str()) {
            return Err(invalid(
                "CapAdd/CapDrop",
                format!("unknown capability: {c:?}"),
            ));
        }
    }
    let mut caps: Vec<String> = if add.iter().any(|c| c == "CAP_ALL") {
        all_capabilities()
    } else {
        CAPABILITIES.iter().map(|s| s.to_string()).collect()
    };
    if drop.iter().any(|c| c == "CAP_ALL") {
        caps.clear();
    }
    for c in add.into_iter().filter(|c| c != "CAP_ALL") {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

fn i64_field(hc: &Value, k: &'static str) -> Result<Option<i64>, SpecError> {
    match &hc[k] {
        Value::Null => Ok(None),
        v => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(k, "must be an integer")),
    }
}

/// `linux.resources` from the HostConfig.
pub fn resources(hc: &Value) -> Result<Value, SpecError> {
    let mut r = json!({
        "devices": [{ "allow": false, "access": "rwm" }],
    });
    for (t, major, minor, access) in ALLOWED_DEVICES {
        let mut d = json!({ "allow": true, "type": t, "major": major, "access": access });
        if *minor >= 0 {
            d["minor"] = json!(minor);
        }
        if let Some(a) = r["devices"].as_array_mut() {
            a.push(d);
        }
    }
    let memory = i64_field(hc, "Memory")?.filter(|m| *m != 0);
    let swap = i64_field(hc, "MemorySwap")?.filter(|m| *m != 0);
    if let Some(m) = memory {
        if m < 6 * 1024 * 1024 {
            return Err(invalid("Memory", "Minimum memory limit allowed is 6MB"));
        }
        let mut mem = json!({ "limit": m });
        match swap {
            // dockerd: without --memory-swap, swap may be as large as the memory.
            None => mem["swap"] = json!(m * 2),
            Some(-1) => mem["swap"] = json!(-1),
            Some(s) if s < m => {
                return Err(invalid(
                    "MemorySwap",
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ))
            }
            Some(s) => mem["swap"] = json!(s),
        }
        r["memory"] = mem;
    } else if swap.is_some_and(|s| s > 0) {
        return Err(invalid(
            "MemorySwap",
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = i64_field(hc, "NanoCpus")?.filter(|n| *n != 0) {
        if n < 0 {
            return Err(invalid("NanoCpus", "must not be negative"));
        }
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        if n > ncpu * 1_000_000_000 {
            return Err(invalid(
                "NanoCpus",
                format!("Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"),
            ));
        }
        let period = 100_000i64;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
    }
    if let Some(q) = i64_field(hc, "CpuQuota")?.filter(|q| *q != 0) {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = i64_field(hc, "CpuPeriod")?.filter(|p| *p != 0) {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(s) = i64_field(hc, "CpuShares")?.filter(|s| *s != 0) {
        cpu.insert("shares".into(), json!(s.max(2)));
    }
    for (k, key) in [("CpusetCpus", "cpus"), ("CpusetMems", "mems")] {
        if let Some(v) = hc[k].as_str().filter(|v| !v.is_empty()) {
            cpu.insert(key.into(), json!(v));
        }
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = i64_field(hc, "PidsLimit")?.filter(|p| *p != 0) {
        r["pids"] = json!({ "limit": if p < 0 { -1 } else { p } });
    }
    if let Some(w) = i64_field(hc, "BlkioWeight")?.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return Err(invalid(
                "BlkioWeight",
                "Range of blkio weight is from 10 to 1000",
            ));
        }
        r["blockIO"] = json!({ "weight": w });
    }
    Ok(r)
}

/// Whether the container gets its own cgroup namespace: `CgroupnsMode` (`private`, `host`),
/// by default private on a pure cgroup v2 host and host on v1, as dockerd decides.
pub fn cgroupns_private(hc: &Value) -> Result<bool, SpecError> {
    match hc["CgroupnsMode"].as_str().unwrap_or("") {
        "private" => Ok(true),
        "host" => Ok(false),
        "" => Ok(std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()),
        other => Err(invalid(
            "CgroupnsMode",
            format!("invalid cgroup namespace mode: {other}"),
        )),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": typ, "source": source, "options": options })
}

/// The spec of a container.
pub fn build(input: &SpecInput<'_>) -> Result<oci_spec::runtime::Spec, SpecError> {
    let c = input.container;
    let hc = &c.host_config;
    let privileged = hc["Privileged"].as_bool() == Some(true);
    let caps = capabilities(hc)?;
    let mut env = c.config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", c.config.hostname));
    }
    if c.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", input.user.home));
    }
    let mut args = Vec::new();
    if let Some(_init) = input.init {
        args.extend([super::mounts::INIT_PATH.to_string(), "--".to_string()]);
    }
    args.push(c.path.clone());
    args.extend(c.args.iter().cloned());
    let cwd = if c.config.working_dir.is_empty() {
        "/".to_string()
    } else {
        c.config.working_dir.clone()
    };
    if !cwd.starts_with('/') {
        return Err(invalid(
            "WorkingDir",
            format!("the working directory '{cwd}' is invalid, it needs to be an absolute path"),
        ));
    }
    let security =
        super::seccomp::security_opts(hc).map_err(|e| invalid("SecurityOpt", e.to_string()))?;
    let no_new_privs = security.no_new_privileges;
    let mut rlimits = Vec::new();
    for u in hc["Ulimits"].as_array().into_iter().flatten() {
        let name = u["Name"]
            .as_str()
            .ok_or_else(|| invalid("Ulimits", "each needs a Name"))?;
        rlimits.push(json!({
            "type": format!("RLIMIT_{}", name.to_ascii_uppercase()),
            "soft": u["Soft"].as_i64().unwrap_or(0),
            "hard": u["Hard"].as_i64().unwrap_or(0),
        }));
    }
    let shm = i64_field(hc, "ShmSize")?
        .filter(|s| *s > 0)
        .unwrap_or(64 << 20);
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")] }),
    ];
    if let Some(etc) = input.etc {
        for (dest, src) in [
            ("/etc/resolv.conf", &etc.resolv_conf),
            ("/etc/hostname", &etc.hostname),
            ("/etc/hosts", &etc.hosts),
        ] {
            mounts.push(json!({ "destination": dest, "type": "bind",
                "source": src.display().to_string(), "options": ["rbind", "rprivate"] }));
        }
    }
    for (dest, opts) in hc["Tmpfs"].as_object().into_iter().flatten() {
        let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
        o.extend(
            opts.as_str()
                .unwrap_or("")
                .split(',')
                .filter(|x| !x.is_empty())
                .map(String::from),
        );
        mounts
            .push(json!({ "destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o }));
    }
    if let Some(init) = input.init {
        mounts.push(
            json!({ "destination": super::mounts::INIT_PATH, "type": "bind",
            "source": init.display().to_string(), "options": ["rbind", "rprivate", "ro"] }),
        );
    }
    for m in &c.mount_points {
        mounts.push(m.spec().map_err(|e| invalid("Mounts", e.to_string()))?);
    }
    let (mut devices, device_rules) = super::mounts::devices(hc)?;
    let mut resources = resources(hc)?;
    if privileged {
        // Every host device, and the device cgroup allows them all.
        let mut all = super::mounts::host_devices();
        all.retain(|d| !devices.iter().any(|x| x["path"] == d["path"]));
        devices.extend(all);
        resources["devices"] = json!([{ "allow": true, "access": "rwm" }]);
    } else if let Some(a) = resources["devices"].as_array_mut() {
        a.extend(device_rules);
    }
    let mut namespaces = vec![
        json!({ "type": "mount" }),
        json!({ "type": "uts" }),
        json!({ "type": "pid" }),
        json!({ "type": "ipc" }),
    ];
    match input.network {
        super::network::NetworkNs::New => namespaces.push(json!({ "type": "network" })),
        super::network::NetworkNs::Host => {}
        super::network::NetworkNs::Join(p) => {
            namespaces.push(json!({ "type": "network", "path": p.display().to_string() }))
        }
    }
    if cgroupns_private(hc)? {
        namespaces.push(json!({ "type": "cgroup" }));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": input.cgroup_path,
        "resources": resources,
        "devices": devices,
    });
    if let Some(sc) = super::seccomp::for_container(&security, &caps) {
        linux["seccomp"] = sc;
    }
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": c.config.tty,
            "user": {
                "uid": input.user.uid,
                "gid": input.user.gid,
                "additionalGids": input.user.additional_gids,
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": rlimits,
            "noNewPrivileges": no_new_privs,
            "oomScoreAdj": 0,
        },
        "root": {
            "path": input.rootfs.display().to_string(),
            "readonly": hc["ReadonlyRootfs"].as_bool().unwrap_or(false),
        },
        "hostname": c.config.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    if let Some((h, w)) = super::exec::console_size(&hc["ConsoleSize"]) {
        if c.config.tty && h > 0 && w > 0 {
            spec["process"]["consoleSize"] = json!({ "height": h, "width": w });
        }
    }
    serde_json::from_value(spec).map_err(|e| SpecError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{ContainerConfig, State};

    fn container(hc: Value) -> Container {
        Container {
            id: "c0ffee".into(),
            name: "t".into(),
            created: String::new(),
            image: String::new(),
            path: "sh".into(),
            args: vec!["-c".into(), "true".into()],
            config: ContainerConfig {
                hostname: "c0ffee".into(),
                env: Some(vec!["A=1".into()]),
                ..Default::default()
            },
            host_config: hc,
            networking_config: Value::Null,
            driver: "vfs".into(),
            state: State::created(),
            restart_count: 0,
            manually_stopped: false,
            mount_points: Vec::new(),
        }
    }

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        }
    }

    #[test]
    fn defaults_as_dockerd() {
        let c = container(json!({}));
        let u = user();
        let s = build(&SpecInput {
            container: &c,
            rootfs: Path::new("/x/rootfs"),
            user: &u,
            etc: None,
            cgroup_path: "/strata/c0ffee".into(),
            init: None,
            network: &crate::spec::network::NetworkNs::New,
        })
        .unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["process"]["args"], json!(["sh", "-c", "true"]));
        let env = v["process"]["env"].to_string();
        assert!(
            env.contains("PATH=/usr/local/sbin")
                && env.contains("A=1")
                && env.contains("HOME=/root"),
            "{env}"
        );
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(v["linux"]["cgroupsPath"], "/strata/c0ffee");
        assert!(v["linux"]["maskedPaths"]
            .to_string()
            .contains("/proc/kcore"));
        assert_eq!(v["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert_eq!(v["root"]["path"], "/x/rootfs");
        assert!(v["mounts"].to_string().contains("size=67108864"));
    }

    #[test]
    fn capabilities_and_resources() {
        let caps =
            capabilities(&json!({"CapAdd": ["sys_admin"], "CapDrop": ["NET_RAW", "CAP_KILL"]}))
                .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".into()));
        assert!(!caps.contains(&"CAP_NET_RAW".into()) && !caps.contains(&"CAP_KILL".into()));
        assert!(capabilities(&json!({"CapDrop": ["ALL"]}))
            .unwrap()
            .is_empty());
        // Privileged: what the bounding set holds (this host withholds CAP_SYS_RESOURCE).
        let all = capabilities(&json!({"Privileged": true})).unwrap();
        assert_eq!(all, all_capabilities());
        assert!(all.len() > 35 && all.len() <= ALL_CAPABILITIES.len());
        assert!(capabilities(&json!({"CapAdd": ["BOGUS"]})).is_err());
        let r = resources(
            &json!({"Memory": 33554432, "NanoCpus": 500000000, "PidsLimit": 64, "CpuShares": 512}),
        )
        .unwrap();
        assert_eq!(r["memory"]["limit"], 33554432);
        assert_eq!(r["memory"]["swap"], 67108864);
        assert_eq!(r["cpu"]["quota"], 50000);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["pids"]["limit"], 64);
        assert!(resources(&json!({"Memory": 1024}))
            .unwrap_err()
            .to_string()
            .contains("Minimum memory limit allowed is 6MB"));
        assert!(resources(&json!({"Memory": 33554432, "MemorySwap": 1024})).is_err());
        assert!(resources(&json!({"BlkioWeight": 5})).is_err());
        assert!(resources(&json!({"Memory": "lots"})).is_err());
    }
}
