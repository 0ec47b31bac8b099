//! `network ls|inspect|create|rm|prune|connect|disconnect`.

use super::{confirm, each, filters_json, out};
use crate::format::print_rows;
use crate::CliError;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};
use strata_api::client::{escape, Body, Client};
use strata_netd::ipam::{Family, Subnet};

/// `network ...`.
#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Create a network.
    Create(Box<CreateArgs>),
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm(NamesArg),
    /// Remove all unused networks.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
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
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 gateway for the master subnet.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container IP from a sub-range.
    #[arg(long)]
    pub ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by the network driver (name=ip).
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Enable IPv6 networking.
    #[arg(long)]
    pub ipv6: bool,
    /// Enable manual container attachment.
    #[arg(long)]
    pub attachable: bool,
    /// Set driver specific options.
    #[arg(short, long)]
    pub opt: Vec<String>,
    /// Set IPAM driver specific options.
    #[arg(long)]
    pub ipam_opt: Vec<String>,
    /// IP Address Management Driver.
    #[arg(long, default_value = "default")]
    pub ipam_driver: String,
    pub name: String,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., 172.30.100.104).
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33).
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long)]
    pub alias: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network.
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
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
        NetworkCommand::Create(a) => create(c, *a),
        NetworkCommand::Rm(a) => each(&a.networks, |n| {
            c.call(
                "DELETE",
                &format!("/networks/{}", escape(n)),
                &[],
                Body::None,
            )?;
            out(&format!("{n}\n"))
        }),
        NetworkCommand::Connect(a) => connect(c, a),
        NetworkCommand::Disconnect(a) => {
            let body = json!({ "Container": a.container, "Force": a.force });
            c.call(
                "POST",
                &format!("/networks/{}/disconnect", escape(&a.network)),
                &[],
                Body::Json(body),
            )?;
            Ok(())
        }
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
    let labels = kv(&a.label);
    let body = json!({
        "Name": a.name, "Driver": a.driver, "Labels": labels, "Options": kv(&a.opt),
        "Internal": a.internal, "EnableIPv6": a.ipv6, "Attachable": a.attachable,
        "CheckDuplicate": true,
        "IPAM": {
            "Driver": a.ipam_driver,
            "Config": ipam_config(&a.subnet, &a.ip_range, &a.gateway, &a.aux_address)?,
            "Options": kv(&a.ipam_opt),
        },
    });
    let v = c.json("POST", "/networks/create", &[], Body::Json(body))?;
    out(&format!("{}\n", v["Id"].as_str().unwrap_or("")))
}

fn connect(c: &Client, a: ConnectArgs) -> Result<(), CliError> {
    let mut ipam = json!({});
    if let Some(ip) = &a.ip {
        ipam["IPv4Address"] = json!(ip);
    }
    if let Some(ip) = &a.ip6 {
        ipam["IPv6Address"] = json!(ip);
    }
    let body = json!({
        "Container": a.container,
        "EndpointConfig": { "IPAMConfig": ipam, "Aliases": a.alias },
    });
    c.call(
        "POST",
        &format!("/networks/{}/connect", escape(&a.network)),
        &[],
        Body::Json(body),
    )?;
    Ok(())
}

/// `KEY=VALUE` flags as a JSON object.
fn kv(items: &[String]) -> serde_json::Map<String, Value> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), json!(v))
        })
        .collect()
}

/// Whether `addr` (an address or a network) lies within the network `subnet`, either family.
fn subnet_contains(subnet: &str, addr: &str) -> bool {
    fn within<A: Family>(subnet: &str, addr: &str) -> Option<bool> {
        let s = Subnet::<A>::parse(subnet).ok()?;
        let a = if addr.contains('/') {
            Subnet::<A>::parse(addr).ok()?
        } else {
            Subnet {
                addr: addr.parse::<A>().ok()?,
                prefix: A::BITS,
            }
        };
        Some(a.prefix >= s.prefix && s.contains(a.addr))
    }
    within::<Ipv4Addr>(subnet, addr)
        .or_else(|| within::<Ipv6Addr>(subnet, addr))
        .unwrap_or(false)
}

/// The IPAM `Config` list of `network create`: one entry per subnet, each gateway, range
/// and auxiliary address placed under the subnet holding it, as the docker CLI pairs them
/// (with its error texts).
fn ipam_config(
    subnets: &[String],
    ranges: &[String],
    gateways: &[String],
    aux: &[String],
) -> Result<Vec<Value>, CliError> {
    if subnets.is_empty() && !(ranges.is_empty() && gateways.is_empty() && aux.is_empty()) {
        return Err(CliError::Usage(
            "every ip-range or gateway must have a corresponding subnet".into(),
        ));
    }
    let mut cfgs: Vec<Value> = Vec::new();
    for s in subnets {
        if let Some(o) = subnets
            .iter()
            .find(|o| *o != s && (subnet_contains(o, s) || subnet_contains(s, o)))
        {
            return Err(CliError::Usage(format!(
                "subnet {s} overlaps with subnet {o}"
            )));
        }
        cfgs.push(json!({ "Subnet": s }));
    }
    let place = |cfgs: &mut Vec<Value>, key: &str, what: &str, v: &str| {
        let i = subnets
            .iter()
            .position(|s| subnet_contains(s, v))
            .ok_or_else(|| CliError::Usage(format!("no matching subnet for {what} {v}")))?;
        if let Some(old) = cfgs[i][key].as_str() {
            return Err(CliError::Usage(format!(
                "cannot configure multiple {what}s ({old}, {v}) on the same subnet ({})",
                subnets[i]
            )));
        }
        cfgs[i][key] = json!(v);
        Ok(())
    };
    for r in ranges {
        place(&mut cfgs, "IPRange", "range", r)?;
    }
    for g in gateways {
        place(&mut cfgs, "Gateway", "gateway", g)?;
    }
    for a in aux {
        let (name, ip) = a
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("invalid aux-address: {a}")))?;
        let i = subnets
            .iter()
            .position(|s| subnet_contains(s, ip))
            .ok_or_else(|| CliError::Usage(format!("no matching subnet for aux-address {ip}")))?;
        cfgs[i]["AuxiliaryAddresses"][name] = json!(ip);
    }
    Ok(cfgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_flags_pair_with_their_subnets() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = ipam_config(
            &s(&["10.5.0.0/16", "fd00:5::/64"]),
            &s(&["10.5.1.0/24"]),
            &s(&["fd00:5::1", "10.5.0.254"]),
            &s(&["host=10.5.0.9"]),
        )
        .expect("config");
        assert_eq!(c[0]["Subnet"], "10.5.0.0/16");
        assert_eq!(c[0]["IPRange"], "10.5.1.0/24");
        assert_eq!(c[0]["Gateway"], "10.5.0.254");
        assert_eq!(c[0]["AuxiliaryAddresses"]["host"], "10.5.0.9");
        assert_eq!(c[1]["Gateway"], "fd00:5::1");
        let err = |r: Result<Vec<Value>, CliError>| r.expect_err("an error").to_string();
        assert!(err(ipam_config(&[], &[], &s(&["10.0.0.1"]), &[])).contains("corresponding"));
        assert!(err(ipam_config(
            &s(&["10.5.0.0/16"]),
            &[],
            &s(&["10.6.0.1"]),
            &[]
        ))
        .contains("no matching subnet for gateway 10.6.0.1"));
        assert!(err(ipam_config(
            &s(&["10.5.0.0/16"]),
            &[],
            &s(&["10.5.0.1", "10.5.0.2"]),
            &[]
        ))
        .contains("multiple gateways"));
        assert!(err(ipam_config(
            &s(&["10.0.0.0/8", "10.5.0.0/16"]),
            &[],
            &[],
            &[]
        ))
        .contains("overlaps"));
        assert!(ipam_config(&[], &[], &[], &[]).expect("none").is_empty());
    }
}
