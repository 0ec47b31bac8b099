//! `info`, `version`, `events`, `system df|info|events`.

use super::{filters_json, out};
use crate::format::{human_size, print_rows, Tmpl};
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::BufRead;
use strata_api::client::{Body, Client};

#[derive(Args, Debug)]
pub struct FormatArg {
    /// Format output using a Go template, or `json`.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp.
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided.
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Show detailed information on space usage.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show docker disk usage.
    Df(DfArgs),
    /// Display system-wide information.
    Info(FormatArg),
    /// Get real time events from the server.
    Events(EventsArgs),
}

pub fn system(c: &Client, cmd: SystemCommand) -> Result<(), CliError> {
    match cmd {
        SystemCommand::Df(a) => df(c, a),
        SystemCommand::Info(a) => info(c, a),
        SystemCommand::Events(a) => events(c, a),
    }
}

fn templated(v: &Value, format: Option<&str>) -> Result<bool, CliError> {
    match format.filter(|f| !f.is_empty()) {
        None => Ok(false),
        Some("json") => out(&format!("{v}\n")).map(|_| true),
        Some(f) => out(&format!("{}\n", Tmpl::parse(f)?.render(v)?)).map(|_| true),
    }
}

pub fn info(c: &Client, a: FormatArg) -> Result<(), CliError> {
    let v = c.json("GET", "/info", &[], Body::None)?;
    if templated(&v, a.format.as_deref())? {
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut t = String::new();
    t.push_str(&format!(
        "Client:\n Version:    {}\n Context:    default\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    t.push_str("Server:\n");
    t.push_str(&format!(" Containers: {}\n", s("Containers")));
    t.push_str(&format!("  Running: {}\n", s("ContainersRunning")));
    t.push_str(&format!("  Paused: {}\n", s("ContainersPaused")));
    t.push_str(&format!("  Stopped: {}\n", s("ContainersStopped")));
    t.push_str(&format!(" Images: {}\n", s("Images")));
    t.push_str(&format!(" Server Version: {}\n", s("ServerVersion")));
    t.push_str(&format!(" Storage Driver: {}\n", s("Driver")));
    for pair in v["DriverStatus"].as_array().into_iter().flatten() {
        if let (Some(k), Some(val)) = (pair[0].as_str(), pair[1].as_str()) {
            t.push_str(&format!("  {k}: {val}\n"));
        }
    }
    t.push_str(&format!(" Logging Driver: {}\n", s("LoggingDriver")));
    t.push_str(&format!(" Cgroup Driver: {}\n", s("CgroupDriver")));
    t.push_str(&format!(" Cgroup Version: {}\n", s("CgroupVersion")));
    t.push_str(&format!(" Kernel Version: {}\n", s("KernelVersion")));
    t.push_str(&format!(" Operating System: {}\n", s("OperatingSystem")));
    t.push_str(&format!(" OSType: {}\n", s("OSType")));
    t.push_str(&format!(" Architecture: {}\n", s("Architecture")));
    t.push_str(&format!(" CPUs: {}\n", s("NCPU")));
    t.push_str(&format!(
        " Total Memory: {}\n",
        human_size(v["MemTotal"].as_f64().unwrap_or(0.0))
    ));
    t.push_str(&format!(" Name: {}\n", s("Name")));
    t.push_str(&format!(" Docker Root Dir: {}\n", s("DockerRootDir")));
    t.push_str(&format!(" Debug Mode: {}\n", s("Debug")));
    let labels: Vec<String> = v["Labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    if !labels.is_empty() {
        t.push_str(" Labels:\n");
        for l in labels {
            t.push_str(&format!("  {l}\n"));
        }
    }
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
    }
    out(&t)
}

pub fn version(c: &Client, a: FormatArg) -> Result<(), CliError> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": strata_api::API_VERSION,
        "Os": "linux",
        "Arch": strata_runtime::commit::go_arch(),
    });
    let server = c.json("GET", "/version", &[], Body::None);
    let v = json!({ "Client": client, "Server": server.as_ref().ok() });
    if templated(&v, a.format.as_deref())? {
        return server.map(|_| ()).map_err(Into::into);
    }
    let mut t = format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}\n",
        client["Version"].as_str().unwrap_or(""),
        strata_api::API_VERSION,
        client["Arch"].as_str().unwrap_or("")
    );
    let server = server?;
    t.push_str(&format!(
        "\nServer: {}\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel Version:   {}\n",
        server["Platform"]["Name"].as_str().unwrap_or("Strata"),
        server["Version"].as_str().unwrap_or(""),
        server["ApiVersion"].as_str().unwrap_or(""),
        server["MinAPIVersion"].as_str().unwrap_or(""),
        server["Os"].as_str().unwrap_or(""),
        server["Arch"].as_str().unwrap_or(""),
        server["KernelVersion"].as_str().unwrap_or(""),
    ));
    out(&t)
}

/// A `--since`/`--until` value as the API wants it: Unix seconds (a timestamp, an RFC 3339
/// time, or a duration before now such as `10m`).
fn time_arg(v: &str) -> Result<String, CliError> {
    strata_graph::time::parse_time_arg(v, crate::format::now())
        .map(|t| t.to_string())
        .ok_or_else(|| CliError::Usage(format!("invalid time {v:?}")))
}

pub fn events(c: &Client, a: EventsArgs) -> Result<(), CliError> {
    let mut q = vec![];
    if let Some(s) = &a.since {
        q.push(("since", time_arg(s)?));
    }
    if let Some(u) = &a.until {
        q.push(("until", time_arg(u)?));
    }
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let tmpl = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(Tmpl::parse(f)?),
    };
    let mut resp = c.call("GET", "/events", &q, Body::None)?;
    for line in std::io::BufReader::new(resp.reader()).lines() {
        let line = line.map_err(|e| CliError::Io {
            context: "reading events".into(),
            source: e,
        })?;
        let Ok(e) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let text = match (&tmpl, a.format.as_deref()) {
            (Some(t), _) => t.render(&e)?,
            (None, Some("json")) => e.to_string(),
            _ => {
                let nanos = e["timeNano"].as_i64().unwrap_or(0);
                let t =
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos.max(0) as u64);
                let mut attrs: Vec<String> = e["Actor"]["Attributes"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect()
                    })
                    .unwrap_or_default();
                attrs.sort();
                format!(
                    "{} {} {} {} ({})",
                    strata_graph::time::rfc3339(t),
                    e["Type"].as_str().unwrap_or(""),
                    e["Action"].as_str().unwrap_or(""),
                    e["Actor"]["ID"].as_str().unwrap_or(""),
                    attrs.join(", ")
                )
            }
        };
        out(&format!("{text}\n"))?;
    }
    Ok(())
}

/// `system df -v`: every image, container and volume with its space, as docker prints it.
fn df_verbose(v: &Value) -> Result<(), CliError> {
    use crate::format::{ago, ellipsis, short_id};
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut images = Vec::new();
    for i in list("Images") {
        let size = i["Size"].as_f64().unwrap_or(0.0);
        let shared = i["SharedSize"].as_f64().unwrap_or(0.0).max(0.0);
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(String::from))
            .collect();
        let tags = if tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            tags
        };
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((&t, "<none>"));
            images.push(json!({
                "Repository": repo, "Tag": tag,
                "ID": short_id(i["Id"].as_str().unwrap_or("")),
                "CreatedSince": ago(i["Created"].as_i64().unwrap_or(0)),
                // The docker CLI prints the shared size with 4 digits, the others with 3.
                "Size": human_size(size),
                "SharedSize": strata_graph::options::human_size(shared, 4),
                "UniqueSize": human_size(size - shared),
                "Containers": i["Containers"].as_i64().unwrap_or(0).to_string(),
            }));
        }
    }
    let containers: Vec<Value> = list("Containers")
        .iter()
        .map(|c| {
            let volumes = c["Mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["Type"] == "volume")
                .count();
            let name = c["Names"][0].as_str().unwrap_or("").trim_start_matches('/');
            json!({
                "ID": short_id(c["Id"].as_str().unwrap_or("")),
                "Image": c["Image"],
                "Command": format!("\"{}\"", ellipsis(c["Command"].as_str().unwrap_or(""), 20)),
                "LocalVolumes": volumes.to_string(),
                "Size": human_size(c["SizeRw"].as_f64().unwrap_or(0.0).max(0.0)),
                "RunningFor": ago(c["Created"].as_i64().unwrap_or(0)),
                "Status": c["Status"], "Names": name,
            })
        })
        .collect();
    let volumes: Vec<Value> = list("Volumes")
        .iter()
        .map(|vol| {
            json!({
                "Name": vol["Name"],
                "Links": vol["UsageData"]["RefCount"].as_i64().unwrap_or(0).to_string(),
                "Size": human_size(vol["UsageData"]["Size"].as_f64().unwrap_or(0.0).max(0.0)),
            })
        })
        .collect();
    out("Images space usage:\n\n")?;
    print_rows(
        None,
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        &[
            ("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"), ("Size", "SIZE"), ("SharedSize", "SHARED SIZE"),
            ("UniqueSize", "UNIQUE SIZE"), ("Containers", "CONTAINERS"),
        ],
        &images,
    )?;
    out("\nContainers space usage:\n\n")?;
    print_rows(
        None,
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        &[
            ("ID", "CONTAINER ID"), ("Image", "IMAGE"), ("Command", "COMMAND"),
            ("LocalVolumes", "LOCAL VOLUMES"), ("Size", "SIZE"), ("RunningFor", "CREATED"),
            ("Status", "STATUS"), ("Names", "NAMES"),
        ],
        &containers,
    )?;
    out("\nLocal Volumes space usage:\n\n")?;
    print_rows(
        None,
        "table {{.Name}}\t{{.Links}}\t{{.Size}}",
        &[
            ("Name", "VOLUME NAME"),
            ("Links", "LINKS"),
            ("Size", "SIZE"),
        ],
        &volumes,
    )?;
    // No build cache: its table is empty, as the docker CLI prints it.
    out("\nBuild cache usage: 0B\n\n")?;
    print_rows(
        None,
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
        &[
            ("ID", "CACHE ID"),
            ("CacheType", "CACHE TYPE"),
            ("Size", "SIZE"),
            ("CreatedSince", "CREATED"),
            ("LastUsedSince", "LAST USED"),
            ("UsageCount", "USAGE"),
            ("Shared", "SHARED"),
        ],
        &[],
    )
}

pub fn df(c: &Client, a: DfArgs) -> Result<(), CliError> {
    let v = c.json("GET", "/system/df", &[], Body::None)?;
    if a.verbose {
        return df_verbose(&v);
    }
    // As the docker CLI counts (its formatter's disk usage contexts): sizes with 4 digits,
    // whole percentages, only when the total is not 0.
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let int = |x: &Value| x.as_i64().unwrap_or(0);
    let size = |n: i64| strata_graph::options::human_size(n as f64, 4);
    let reclaim = |r: i64, total: i64| {
        if total > 0 {
            format!("{} ({}%)", size(r), r * 100 / total)
        } else {
            size(r)
        }
    };
    let images = list("Images");
    let img_total = int(&v["LayersSize"]);
    let in_use = |i: &&Value| int(&i["Containers"]) != 0;
    // What images in use hold of their own (shared layers are not counted).
    let img_used: i64 = images
        .iter()
        .filter(in_use)
        .filter(|i| int(&i["Size"]) != -1 && int(&i["SharedSize"]) != -1)
        .map(|i| int(&i["Size"]) - int(&i["SharedSize"]))
        .sum();
    let containers = list("Containers");
    let active = |c: &Value| {
        let st = c["State"].as_str().unwrap_or("");
        ["running", "paused", "restarting"]
            .iter()
            .any(|a| st.contains(a))
    };
    let ct_total: i64 = containers.iter().map(|c| int(&c["SizeRw"])).sum();
    let ct_reclaim: i64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| int(&c["SizeRw"]))
        .sum();
    let volumes = list("Volumes");
    let vol_size = |x: &Value| int(&x["UsageData"]["Size"]);
    let vol_used = |x: &Value| int(&x["UsageData"]["RefCount"]) > 0;
    let vol_total: i64 = volumes.iter().map(vol_size).filter(|n| *n != -1).sum();
    let vol_reclaim: i64 = volumes
        .iter()
        .filter(|x| !vol_used(x))
        .map(vol_size)
        .filter(|n| *n != -1)
        .sum();
    let rows = vec![
        json!({ "Type": "Images", "TotalCount": images.len().to_string(),
            "Active": images.iter().filter(in_use).count().to_string(),
            "Size": size(img_total), "Reclaimable": reclaim(img_total - img_used, img_total) }),
        json!({ "Type": "Containers", "TotalCount": containers.len().to_string(),
            "Active": containers.iter().filter(|c| active(c)).count().to_string(),
            "Size": size(ct_total), "Reclaimable": reclaim(ct_reclaim, ct_total) }),
        json!({ "Type": "Local Volumes", "TotalCount": volumes.len().to_string(),
            "Active": volumes.iter().filter(|x| vol_used(x)).count().to_string(),
            "Size": size(vol_total), "Reclaimable": reclaim(vol_reclaim, vol_total) }),
        json!({ "Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B" }),
    ];
    print_rows(
        a.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &[
            ("Type", "TYPE"),
            ("TotalCount", "TOTAL"),
            ("Active", "ACTIVE"),
            ("Size", "SIZE"),
            ("Reclaimable", "RECLAIMABLE"),
        ],
        &rows,
    )
}
