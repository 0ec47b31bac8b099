//! `network ls|inspect|create|rm|prune`.

use super::{confirm, each, filters_json, out};
use crate::format::print_rows;
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_api::client::{escape, Body, Client};

/// `network ...`.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Create a network.
    Create(CreateArgs),
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm(NamesArg),
    /// Remove all unused networks.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Provide filter values (e.g. `driver=bridge`).
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, `table`, or `json`.
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub networks: Vec<String>,
    /// Format output using a Go template or `json`.
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the network.
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Set metadata on a network.
    #[arg(long)]
    pub label: Vec<String>,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct NamesArg {
    #[arg(required = true)]
    pub networks: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

pub fn network(c: &Client, cmd: NetworkCommand) -> Result<(), CliError> {
    match cmd {
        NetworkCommand::Ls(a) => ls(c, a),
        NetworkCommand::Inspect(a) => inspect(c, a),
        NetworkCommand::Create(a) => create(c, a),
        NetworkCommand::Rm(a) => each(&a.networks, |n| {
            c.call(
                "DELETE",
                &format!("/networks/{}", escape(n)),
                &[],
                Body::None,
            )?;
            out(&format!("{n}\n"))
        }),
        NetworkCommand::Prune(a) => {
            if !a.force
                && !confirm("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?")
            {
                return Ok(());
            }
            let v = c.json("POST", "/networks/prune", &[], Body::None)?;
            let mut text = String::new();
            if let Some(names) = v["NetworksDeleted"].as_array().filter(|n| !n.is_empty()) {
                text.push_str("Deleted Networks:\n");
                for n in names {
                    text.push_str(&format!("{}\n", n.as_str().unwrap_or("")));
                }
            }
            out(&text)
        }
    }
}

fn ls(c: &Client, a: LsArgs) -> Result<(), CliError> {
    let mut q = vec![];
    if let Some(f) = filters_json(&a.filter)? {
        q.push(("filters", f));
    }
    let v = c.json("GET", "/networks", &q, Body::None)?;
    let mut rows: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    rows.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|n| {
            let id = n["Id"].as_str().unwrap_or("");
            let id = if a.no_trunc {
                id
            } else {
                &id[..id.len().min(12)]
            };
            json!({ "ID": id, "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"] })
        })
        .collect();
    if a.quiet {
        let mut s = String::new();
        for r in &rows {
            s.push_str(&format!("{}\n", r["ID"].as_str().unwrap_or("")));
        }
        return out(&s);
    }
    print_rows(
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
        ],
        &rows,
    )
}

fn inspect(c: &Client, a: InspectArgs) -> Result<(), CliError> {
    super::inspect_each(c, "/networks", &a.networks, a.format.as_deref())
}

fn create(c: &Client, a: CreateArgs) -> Result<(), CliError> {
    let mut labels = serde_json::Map::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), json!(v));
    }
    let body = json!({ "Name": a.name, "Driver": a.driver, "Labels": labels });
    let v = c.json("POST", "/networks/create", &[], Body::Json(body))?;
    out(&format!("{}\n", v["Id"].as_str().unwrap_or("")))
}
