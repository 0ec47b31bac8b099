//! `create`, `ps`, `inspect`, `diff`, `export`, `commit`, `rename`, `rm`, `container ...`.

use super::images::{image_json, print_inspect, split_tag};
use super::{confirm, each, filters_json, out, output};
use crate::format::{ago, ellipsis, go_time, human_size, print_rows, short_id};
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_api::client::{escape, Body, Client, ClientError};

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (`-h` is the host name, as with docker).
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Set meta data on a container.
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Storage driver options for the container.
    #[arg(long = "storage-opt")]
    pub storage_opt: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long)]
    pub read_only: bool,
    /// Signal to stop the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Expose a port or a range of ports.
    #[arg(long)]
    pub expose: Vec<String>,
    /// Bind mount a volume.
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,...).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s).
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Connect a container to a network.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Publish a container's port(s) to the host (`[ip:][hostPort:]containerPort[/proto]`).
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33).
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long, alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33).
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Set custom DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long, alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Container NIS domain name.
    #[arg(long)]
    pub domainname: Option<String>,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Restart policy to apply when a container exits.
    #[arg(long)]
    pub restart: Option<String>,
    #[command(flatten)]
    pub resources: super::exec::ResourceArgs,
    /// Ulimit options (name=soft[:hard]).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Mount a tmpfs directory (PATH[:OPTIONS]).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMISSIONS]]).
    #[arg(long)]
    pub device: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Command to run to check health.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h).
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h).
    #[arg(long)]
    pub health_start_interval: Option<String>,
    /// Cgroup namespace to use (host|private).
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Security options.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Logging driver for the container.
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options.
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long)]
    pub env_file: Vec<String>,
    /// Runtime to use for this container.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Size of /dev/shm.
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Pull image before creating ("missing", "never"); pulling comes with the registry issue.
    #[arg(long)]
    pub pull: Option<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Display total file sizes.
    #[arg(short, long)]
    pub size: bool,
    /// Filter output based on conditions provided.
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long)]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states).
    #[arg(short, long)]
    pub latest: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Format output using a Go template.
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only this type of object (container, image).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Display total file sizes.
    #[arg(short, long)]
    pub size: bool,
}

#[derive(Args, Debug)]
pub struct IdArg {
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    pub container: String,
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    pub output: Option<String>,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    pub container: String,
    pub reference: Option<String>,
    /// Author.
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Force the removal of a running container.
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    pub volumes: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. `until=<timestamp>`).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers.
    #[command(visible_aliases = ["list", "ps"])]
    Ls(PsArgs),
    /// Create a new container.
    Create(Box<CreateArgs>),
    /// Display detailed information on one or more containers.
    Inspect(InspectArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(IdArg),
    /// Export a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Create a new image from a container's changes.
    Commit(CommitArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Remove one or more containers.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(super::cp::CpArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
}

pub fn container(c: &Client, cmd: ContainerCommand) -> Result<(), CliError> {
    match cmd {
        ContainerCommand::Ls(a) => ps(c, a),
        ContainerCommand::Create(a) => create(c, *a),
        ContainerCommand::Inspect(mut a) => {
            a.kind = Some("container".into());
            inspect(c, a)
        }
        ContainerCommand::Diff(a) => diff(c, a),
        ContainerCommand::Export(a) => export(c, a),
        ContainerCommand::Commit(a) => commit(c, a),
        ContainerCommand::Rename(a) => rename(c, a),
        ContainerCommand::Rm(a) => rm(c, a),
        ContainerCommand::Cp(a) => super::cp::cp(c, a),
        ContainerCommand::Prune(a) => prune(c, a),
    }
}

fn cpath(name: &str) -> String {
    escape(name)
}

/// `KEY=VALUE` flags as a map.
fn kv_map(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (i.clone(), json!("")),
        })
        .collect()
}

pub fn create(c: &Client, a: CreateArgs) -> Result<(), CliError> {
    let id = create_container(c, a)?;
    out(&format!("{id}\n"))
}

/// Creates a container from `create`/`run` flags; returns its ID.
pub fn create_container(c: &Client, a: CreateArgs) -> Result<String, CliError> {
    let mut cfg = json!({ "Image": a.image, "Tty": a.tty, "OpenStdin": a.interactive,
        "AttachStdin": a.interactive, "AttachStdout": true, "AttachStderr": true });
    if !a.command.is_empty() {
        cfg["Cmd"] = json!(a.command);
    }
    if let Some(e) = &a.entrypoint {
        cfg["Entrypoint"] = if e.is_empty() { json!([]) } else { json!([e]) };
    }
    let mut env_lines: Vec<String> = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| CliError::Io {
            context: format!("reading {f}"),
            source: e,
        })?;
        env_lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env_lines.extend(a.env.iter().cloned());
    if !env_lines.is_empty() {
        let env: Vec<String> = env_lines
            .iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e.clone())
                } else {
                    // `-e NAME` takes the value from this environment, as docker does.
                    std::env::var(e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect();
        cfg["Env"] = json!(env);
    }
    if !a.label.is_empty() {
        cfg["Labels"] = Value::Object(kv_map(&a.label));
    }
    for (k, v) in [
        ("WorkingDir", &a.workdir),
        ("User", &a.user),
        ("Hostname", &a.hostname),
        ("Domainname", &a.domainname),
        ("StopSignal", &a.stop_signal),
    ] {
        if let Some(v) = v {
            cfg[k] = json!(v);
        }
    }
    if !a.expose.is_empty() {
        let ports: serde_json::Map<String, Value> = a
            .expose
            .iter()
            .map(|p| {
                let p = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                (p, json!({}))
            })
            .collect();
        cfg["ExposedPorts"] = Value::Object(ports);
    }
    if let Some(t) = a.stop_timeout {
        cfg["StopTimeout"] = json!(t);
    }
    let mut hc = json!({ "ReadonlyRootfs": a.read_only, "AutoRemove": a.rm,
        "Privileged": a.privileged });
    a.resources.apply(&mut hc)?;
    if let Some(v) = &a.shm_size {
        hc["ShmSize"] = json!(super::exec::ram_in_bytes(v)?);
    }
    let security_opt = security_opts(&a.security_opt)?;
    for (k, v) in [
        ("CapAdd", &a.cap_add),
        ("CapDrop", &a.cap_drop),
        ("SecurityOpt", &security_opt),
    ] {
        if !v.is_empty() {
            hc[k] = json!(v);
        }
    }
    if !a.ulimit.is_empty() {
        let mut list = Vec::new();
        for u in &a.ulimit {
            list.push(strata_runtime::spec::ulimit::parse(u).map_err(CliError::Usage)?);
        }
        hc["Ulimits"] = json!(list);
    }
    if !a.tmpfs.is_empty() {
        let m: serde_json::Map<String, Value> = a
            .tmpfs
            .iter()
            .map(|t| {
                let (p, o) = t.split_once(':').unwrap_or((t, ""));
                (p.to_string(), json!(o))
            })
            .collect();
        hc["Tmpfs"] = Value::Object(m);
    }
    if !a.device.is_empty() {
        let list: Vec<Value> = a
            .device
            .iter()
            .map(|d| {
                let mut f = d.splitn(3, ':');
                let host = f.next().unwrap_or_default();
                let ctr = f.next().filter(|x| !x.is_empty()).unwrap_or(host);
                let perms = f.next().unwrap_or("rwm");
                json!({ "PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms })
            })
            .collect();
        hc["Devices"] = json!(list);
    }
    if a.init {
        hc["Init"] = json!(true);
    }
    if let Some(m) = &a.cgroupns {
        hc["CgroupnsMode"] = json!(m);
    }
    if let Some(h) = healthcheck(&a)? {
        cfg["Healthcheck"] = h;
    }
    if let Some(r) = &a.runtime {
        hc["Runtime"] = json!(r);
    }
    if a.log_driver.is_some() || !a.log_opt.is_empty() {
        hc["LogConfig"] = json!({
            "Type": a.log_driver.clone().unwrap_or_default(),
            "Config": kv_map(&a.log_opt),
        });
    }
    if a.tty {
        if let Some((w, h)) = super::session::term_size(1) {
            hc["ConsoleSize"] = json!([h, w]);
        }
    }
    if !a.storage_opt.is_empty() {
        hc["StorageOpt"] = Value::Object(kv_map(&a.storage_opt));
    }
    // `-v /path` is an anonymous volume (the config's Volumes), as the docker CLI sends it.
    let (binds, anon): (Vec<&String>, Vec<&String>) =
        a.volume.iter().partition(|v| v.contains(':'));
    if !binds.is_empty() {
        hc["Binds"] = json!(binds);
    }
    if !anon.is_empty() {
        let m: serde_json::Map<String, Value> =
            anon.iter().map(|p| (p.to_string(), json!({}))).collect();
        cfg["Volumes"] = Value::Object(m);
    }
    if !a.mount.is_empty() {
        hc["Mounts"] = Value::Array(
            a.mount
                .iter()
                .map(|m| parse_mount_flag(m))
                .collect::<Result<_, _>>()?,
        );
    }
    if !a.volumes_from.is_empty() {
        hc["VolumesFrom"] = json!(a.volumes_from);
    }
    super::ports::apply_publish(&a.publish, &mut cfg, &mut hc)?;
    if a.publish_all {
        hc["PublishAllPorts"] = json!(true);
    }
    for (k, v) in [
        ("Dns", &a.dns),
        ("DnsSearch", &a.dns_search),
        ("DnsOptions", &a.dns_option),
        ("ExtraHosts", &a.add_host),
    ] {
        if !v.is_empty() {
            hc[k] = json!(v);
        }
    }
    let network = a.network.clone().unwrap_or_else(|| "default".into());
    hc["NetworkMode"] = json!(network);
    let endpoint = endpoint_config(&a)?;
    if endpoint != json!({}) {
        let mut eps = serde_json::Map::new();
        eps.insert(network, endpoint);
        cfg["NetworkingConfig"] = json!({ "EndpointsConfig": eps });
    }
    if let Some(r) = &a.restart {
        hc["RestartPolicy"] = super::exec::restart_policy(r);
    }
    cfg["HostConfig"] = hc;
    let mut q = vec![];
    if let Some(n) = &a.name {
        q.push(("name", n.clone()));
    }
    let v = c.json("POST", "/containers/create", &q, Body::Json(cfg))?;
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
    }
    Ok(v["Id"].as_str().unwrap_or("").to_string())
}

/// The endpoint settings of `--ip`, `--ip6`, `--network-alias` and `--mac-address`, as
/// the docker CLI sends them (`{}` when none is given).
fn endpoint_config(a: &CreateArgs) -> Result<Value, CliError> {
    let mut e = json!({});
    let mut ipam = json!({});
    if let Some(ip) = &a.ip {
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(CliError::Usage(format!("invalid IPv4 address: {ip}")));
        }
        ipam["IPv4Address"] = json!(ip);
    }
    if let Some(ip) = &a.ip6 {
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(CliError::Usage(format!("invalid IPv6 address: {ip}")));
        }
        ipam["IPv6Address"] = json!(ip);
    }
    if ipam != json!({}) {
        e["IPAMConfig"] = ipam;
    }
    if !a.network_alias.is_empty() {
        e["Aliases"] = json!(a.network_alias);
    }
    if let Some(m) = &a.mac_address {
        e["MacAddress"] = json!(m);
    }
    Ok(e)
}

/// `--security-opt` values as the docker CLI sends them: a seccomp profile file is read and
/// sent as its content.
fn security_opts(opts: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for o in opts {
        if o == "no-new-privileges" || o == "disable" {
            out.push(o.clone());
            continue;
        }
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .ok_or_else(|| CliError::Usage(format!("Invalid --security-opt: {o:?}")))?;
        if k == "seccomp" && v != "unconfined" && v != "builtin" {
            let data = std::fs::read_to_string(v).map_err(|e| {
                CliError::Usage(format!("opening seccomp profile ({v}) failed: {e}"))
            })?;
            let compact: Value = serde_json::from_str(&data).map_err(|e| {
                CliError::Usage(format!(
                    "compacting json for seccomp profile ({v}) failed: {e}"
                ))
            })?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(o.clone());
        }
    }
    Ok(out)
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub fn go_duration_nanos(s: &str) -> Result<i64, CliError> {
    strata_graph::time::go_duration_nanos(s)
        .ok_or_else(|| CliError::Usage(format!("time: invalid duration \"{s}\"")))
}

/// `Healthcheck` from the `--health-*` flags, as the docker CLI builds it.
fn healthcheck(a: &CreateArgs) -> Result<Option<Value>, CliError> {
    let any = a.health_cmd.is_some()
        || a.health_interval.is_some()
        || a.health_timeout.is_some()
        || a.health_retries.is_some()
        || a.health_start_period.is_some()
        || a.health_start_interval.is_some();
    if a.no_healthcheck {
        if any {
            return Err(CliError::Usage(
                "--no-healthcheck conflicts with --health-* options".into(),
            ));
        }
        return Ok(Some(json!({ "Test": ["NONE"] })));
    }
    if !any {
        return Ok(None);
    }
    let dur = |v: &Option<String>, what: &str| -> Result<i64, CliError> {
        match v {
            None => Ok(0),
            Some(s) => {
                let n = go_duration_nanos(s)?;
                if n < 0 {
                    return Err(CliError::Usage(format!("--{what} cannot be negative")));
                }
                Ok(n)
            }
        }
    };
    let mut h = json!({
        "Interval": dur(&a.health_interval, "health-interval")?,
        "Timeout": dur(&a.health_timeout, "health-timeout")?,
        "StartPeriod": dur(&a.health_start_period, "health-start-period")?,
        "StartInterval": dur(&a.health_start_interval, "health-start-interval")?,
        "Retries": a.health_retries.unwrap_or(0),
    });
    if let Some(cmd) = &a.health_cmd {
        h["Test"] = json!(["CMD-SHELL", cmd]);
    }
    Ok(Some(h))
}

/// A `--mount` flag (`type=volume,source=x,target=/d,readonly,...`) as a `Mounts` entry.
pub fn parse_mount_flag(s: &str) -> Result<Value, CliError> {
    let bad = |m: String| {
        CliError::Usage(format!(
            "invalid argument \"{s}\" for \"--mount\" flag: {m}"
        ))
    };
    let mut m = json!({ "Type": "volume" });
    let truthy = |v: Option<&str>| -> Result<bool, CliError> {
        match v {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(o) => Err(bad(format!("invalid value {o:?}"))),
        }
    };
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let val = || {
            v.map(str::to_string)
                .ok_or_else(|| bad(format!("invalid field '{field}' must be a key=value pair")))
        };
        match k.as_str() {
            "type" => m["Type"] = json!(val()?),
            "source" | "src" => m["Source"] = json!(val()?),
            "target" | "destination" | "dst" => m["Target"] = json!(val()?),
            "readonly" | "ro" => m["ReadOnly"] = json!(truthy(v)?),
            "bind-propagation" => m["BindOptions"]["Propagation"] = json!(val()?),
            "volume-nocopy" => m["VolumeOptions"]["NoCopy"] = json!(truthy(v)?),
            "volume-driver" => m["VolumeOptions"]["DriverConfig"]["Name"] = json!(val()?),
            "volume-label" => {
                let kv = val()?;
                let (lk, lv) = kv.split_once('=').unwrap_or((&kv, ""));
                m["VolumeOptions"]["Labels"][lk] = json!(lv);
            }
            "volume-opt" => {
                let kv = val()?;
                let (ok, ov) = kv.split_once('=').unwrap_or((&kv, ""));
                m["VolumeOptions"]["DriverConfig"]["Options"][ok] = json!(ov);
            }
            "tmpfs-size" => {
                let bytes = super::exec::ram_in_bytes(&val()?).map_err(|e| bad(e.to_string()))?;
                m["TmpfsOptions"]["SizeBytes"] = json!(bytes);
            }
            "tmpfs-mode" => {
                let mode = u32::from_str_radix(&val()?, 8).map_err(|e| bad(e.to_string()))?;
                m["TmpfsOptions"]["Mode"] = json!(mode);
            }
            other => return Err(bad(format!("unexpected key '{other}' in '{field}'"))),
        }
    }
    if m["Target"].is_null() {
        return Err(bad("target is required".into()));
    }
    Ok(m)
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("State", "STATE"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

pub fn ps(c: &Client, a: PsArgs) -> Result<(), CliError> {
    let mut q = vec![];
    if a.all {
        q.push(("all", "1".into()));
    }
    if a.size {
        q.push(("size", "1".into()));
    }
    let limit = if a.latest { Some(1) } else { a.last };
    if let Some(n) = limit {
        q.push(("limit", n.to_string()));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let list = c.json("GET", "/containers/json", &q, Body::None)?;
    let list = list.as_array().cloned().unwrap_or_default();
    let id = |v: &Value| {
        let id = v["Id"].as_str().unwrap_or("");
        if a.no_trunc {
            id.to_string()
        } else {
            short_id(id)
        }
    };
    if a.quiet {
        return out(&list
            .iter()
            .map(|v| format!("{}\n", id(v)))
            .collect::<String>());
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|v| {
            let cmd = v["Command"].as_str().unwrap_or("");
            let command = if a.no_trunc {
                cmd.to_string()
            } else {
                ellipsis(cmd, 20)
            };
            let created = v["Created"].as_i64().unwrap_or(0);
            let labels: Vec<String> = v["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            let names: Vec<String> = v["Names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(|s| s.trim_start_matches('/').to_string()))
                .collect();
            // The daemon leaves a size of 0 out, as dockerd does.
            let size = if a.size {
                let rw = v["SizeRw"].as_f64().unwrap_or(0.0);
                let root = v["SizeRootFs"].as_f64().unwrap_or(0.0);
                format!("{} (virtual {})", human_size(rw), human_size(root))
            } else {
                String::new()
            };
            json!({
                "ID": id(v),
                "Image": v["Image"],
                "Command": format!("{command:?}"),
                "CreatedAt": go_time(created),
                "RunningFor": ago(created),
                "Status": v["Status"],
                "State": v["State"],
                "Ports": "",
                "Names": names.join(","),
                "Labels": labels.join(","),
                "Size": size,
                "Mounts": "",
                "Networks": v["HostConfig"]["NetworkMode"],
            })
        })
        .collect();
    let default = if a.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    print_rows(a.format.as_deref(), default, PS_HEADERS, &rows)
}

pub fn inspect(c: &Client, a: InspectArgs) -> Result<(), CliError> {
    let mut found = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let container = || -> Result<Value, CliError> {
            let q = if a.size {
                vec![("size", "1".to_string())]
            } else {
                vec![]
            };
            Ok(c.json(
                "GET",
                &format!("/containers/{}/json", cpath(n)),
                &q,
                Body::None,
            )?)
        };
        let res = match a.kind.as_deref() {
            Some("container") => container(),
            Some("image") => image_json(c, n),
            Some(other) => {
                return Err(CliError::Usage(format!(
                    "\"{other}\" is not a valid value for --type"
                )))
            }
            None => match container() {
                Err(CliError::Client(ClientError::Daemon { status: 404, .. })) => image_json(c, n)
                    .map_err(|_| CliError::Usage(format!("Error: No such object: {n}"))),
                other => other,
            },
        };
        match res {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    print_inspect(&found, a.format.as_deref())?;
    if failed {
        return Err(CliError::Usage(String::new()));
    }
    Ok(())
}

pub fn diff(c: &Client, a: IdArg) -> Result<(), CliError> {
    let v = c.json(
        "GET",
        &format!("/containers/{}/changes", cpath(&a.container)),
        &[],
        Body::None,
    )?;
    let mut text = String::new();
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_i64() {
            Some(0) => "C",
            Some(1) => "A",
            Some(2) => "D",
            _ => "?",
        };
        text.push_str(&format!("{k} {}\n", ch["Path"].as_str().unwrap_or("")));
    }
    out(&text)
}

pub fn export(c: &Client, a: ExportArgs) -> Result<(), CliError> {
    let mut w = output(&a.output, "the export")?;
    let mut resp = c.call(
        "GET",
        &format!("/containers/{}/export", cpath(&a.container)),
        &[],
        Body::None,
    )?;
    std::io::copy(resp.reader(), &mut w).map_err(|e| CliError::Io {
        context: "exporting".into(),
        source: e,
    })?;
    w.flush().map_err(CliError::Stdout)
}

use std::io::Write as _;

pub fn commit(c: &Client, a: CommitArgs) -> Result<(), CliError> {
    let mut q = vec![("container", a.container.clone())];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push(("repo", repo));
        q.push(("tag", tag));
    }
    if let Some(m) = &a.message {
        q.push(("comment", m.clone()));
    }
    if let Some(au) = &a.author {
        q.push(("author", au.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    q.push(("pause", if a.pause { "1" } else { "0" }.into()));
    let v = c.json("POST", "/commit", &q, Body::None)?;
    out(&format!("{}\n", v["Id"].as_str().unwrap_or("")))
}

pub fn rename(c: &Client, a: RenameArgs) -> Result<(), CliError> {
    c.call(
        "POST",
        &format!("/containers/{}/rename", cpath(&a.container)),
        &[("name", a.new_name.clone())],
        Body::None,
    )?;
    Ok(())
}

pub fn rm(c: &Client, a: RmArgs) -> Result<(), CliError> {
    each(&a.containers, |n| {
        let mut q = vec![];
        if a.force {
            q.push(("force", "1".into()));
        }
        if a.volumes {
            q.push(("v", "1".into()));
        }
        c.call(
            "DELETE",
            &format!("/containers/{}", cpath(n)),
            &q,
            Body::None,
        )?;
        out(&format!("{n}\n"))
    })
}

pub fn prune(c: &Client, a: PruneArgs) -> Result<(), CliError> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )
    {
        return Ok(());
    }
    let mut q = vec![];
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let v = c.json("POST", "/containers/prune", &q, Body::None)?;
    super::print_pruned(&v, "ContainersDeleted", "Deleted Containers")
}
