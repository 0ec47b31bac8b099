//! `volume create|ls|inspect|rm|prune`.

use super::{confirm, each, filters_json, out};
use crate::format::print_rows;
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_api::client::{escape, Body, Client};

/// `volume ...`.
#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name.
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set driver specific options.
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata for a volume.
    #[arg(long)]
    pub label: Vec<String>,
    /// Specify volume name.
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. `dangling=true`).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub volumes: Vec<String>,
    /// Format output using a Go template or `json`.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub volumes: Vec<String>,
    /// Force the removal of one or more volumes.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. `label=<label>`).
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// `k=v` flags as a JSON object.
fn kv(list: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for s in list {
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

pub fn volume(c: &Client, cmd: VolumeCommand) -> Result<(), CliError> {
    match cmd {
        VolumeCommand::Create(a) => create(c, a),
        VolumeCommand::Ls(a) => ls(c, a),
        VolumeCommand::Inspect(a) => inspect(c, a),
        VolumeCommand::Rm(a) => rm(c, a),
        VolumeCommand::Prune(a) => prune(c, a),
    }
}

fn create(c: &Client, a: CreateArgs) -> Result<(), CliError> {
    if a.name.is_some() && a.name_flag.is_some() && a.name != a.name_flag {
        return Err(CliError::Usage(
            "conflicting options: either specify --name or provide positional arg, not both".into(),
        ));
    }
    let name = a.name.or(a.name_flag).unwrap_or_default();
    let body = json!({
        "Name": name, "Driver": a.driver, "DriverOpts": kv(&a.opt), "Labels": kv(&a.label),
    });
    let v = c.json("POST", "/volumes/create", &[], Body::Json(body))?;
    out(&format!("{}\n", v["Name"].as_str().unwrap_or("")))
}

const HEADERS: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Scope", "SCOPE"),
    ("Labels", "LABELS"),
];

fn ls(c: &Client, a: LsArgs) -> Result<(), CliError> {
    let mut q = vec![];
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let v = c.json("GET", "/volumes", &q, Body::None)?;
    let mut rows: Vec<Value> = v["Volumes"].as_array().cloned().unwrap_or_default();
    rows.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    if a.quiet {
        let mut s = String::new();
        for r in &rows {
            s.push_str(&format!("{}\n", r["Name"].as_str().unwrap_or("")));
        }
        return out(&s);
    }
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            let labels: Vec<String> = r["Labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            r["Labels"] = json!(labels.join(","));
            r
        })
        .collect();
    print_rows(
        a.format.as_deref(),
        "table {{.Driver}}\t{{.Name}}",
        HEADERS,
        &rows,
    )
}

fn inspect(c: &Client, a: InspectArgs) -> Result<(), CliError> {
    super::inspect_each(c, "/volumes", &a.volumes, a.format.as_deref())
}

fn rm(c: &Client, a: RmArgs) -> Result<(), CliError> {
    each(&a.volumes, |n| {
        let mut q = vec![];
        if a.force {
            q.push(("force", "1".into()));
        }
        c.call("DELETE", &format!("/volumes/{}", escape(n)), &q, Body::None)?;
        out(&format!("{n}\n"))
    })
}

fn prune(c: &Client, a: PruneArgs) -> Result<(), CliError> {
    let warning = if a.all {
        "WARNING! This will remove all local volumes not used by at least one container."
    } else {
        "WARNING! This will remove anonymous local volumes not used by at least one container."
    };
    if !a.force && !confirm(&format!("{warning}\nAre you sure you want to continue?")) {
        return Ok(());
    }
    let mut filters = a.filter.clone();
    if a.all {
        filters.push("all=true".into());
    }
    let mut q = vec![];
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    let v = c.json("POST", "/volumes/prune", &q, Body::None)?;
    super::print_pruned(&v, "VolumesDeleted", "Deleted Volumes")
}
