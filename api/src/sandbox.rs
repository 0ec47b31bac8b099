//! A container's networking as the API sees it: the sandbox request made from its
//! HostConfig, Config and NetworkingConfig at start, and the `NetworkSettings`, `Ports` and
//! `port` views of what the network manager set up.

use crate::{ApiError, Daemon};
use serde_json::{json as j, Map, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use strata_netd::firewall::Proto;
use strata_netd::sandbox::Sandbox;
use strata_netd::{EndpointRequest, NetError, PortRequest, SandboxRequest};
use strata_runtime::spec::network::NetworkMode;
use strata_runtime::Container;

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        use hyper::StatusCode as S;
        use strata_netd::ipam::IpamError as I;
        use strata_netd::NetworkError as N;
        let status = match &e {
            NetError::Store(N::NotFound(_)) => S::NOT_FOUND,
            NetError::Store(N::NameTaken(_)) => S::CONFLICT,
            NetError::Store(N::Predefined(_) | N::Forbidden(_)) => S::FORBIDDEN,
            NetError::Store(N::Invalid(_)) | NetError::Invalid(_) => S::BAD_REQUEST,
            // dockerd 20.10: a taken --ip is 403, one outside the subnets 500, and
            // --ipv6 without an IPv6 pool 404.
            NetError::Ipam(I::InUse(_)) => S::FORBIDDEN,
            NetError::Ipam(I::Io(_) | I::Outside(_)) => S::INTERNAL_SERVER_ERROR,
            NetError::Ipam(_) => S::BAD_REQUEST,
            NetError::NoIpv6Pool => S::NOT_FOUND,
            _ => S::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The endpoint asked for on `network` in a NetworkingConfig `EndpointsConfig` entry.
pub fn endpoint_request(network: &str, cfg: &Value) -> Result<EndpointRequest, ApiError> {
    let ip = match cfg["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))?,
        ),
        None => None,
    };
    let ip6 = match cfg["IPAMConfig"]["IPv6Address"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(s) => Some(
            s.parse::<Ipv6Addr>()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv6 address: {s}")))?,
        ),
        None => None,
    };
    Ok(EndpointRequest {
        network: network.to_string(),
        ip,
        ip6,
        aliases: strings(&cfg["Aliases"]),
        mac: cfg["MacAddress"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
    })
}

/// `80/tcp` → (80, tcp).
fn parse_port(key: &str) -> Result<(u16, Proto), ApiError> {
    let (p, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let port = p
        .parse::<u16>()
        .map_err(|_| ApiError::bad_request(format!("invalid port specification: \"{p}\"")))?;
    let proto = Proto::parse(proto)
        .ok_or_else(|| ApiError::bad_request(format!("invalid proto: {proto}")))?;
    Ok((port, proto))
}

/// A binding's `HostPort`: empty (ephemeral), `8080`, or a range `8000-8010`.
fn host_ports(hp: &str) -> Result<(Option<u16>, Option<u16>), ApiError> {
    if hp.is_empty() {
        return Ok((None, None));
    }
    let bad = || ApiError::bad_request(format!("invalid port specification: \"{hp}\""));
    let (a, b) = hp.split_once('-').unwrap_or((hp, hp));
    let a = a.parse::<u16>().map_err(|_| bad())?;
    let b = b.parse::<u16>().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((Some(a), Some(b)))
}

/// Checks a create's `PortBindings` (dockerd refuses a bad one at create, 400).
pub fn check_port_bindings(host_config: &Value) -> Result<(), ApiError> {
    for (key, list) in host_config["PortBindings"]
        .as_object()
        .into_iter()
        .flatten()
    {
        parse_port(key)?;
        for b in list.as_array().into_iter().flatten() {
            host_ports(b["HostPort"].as_str().unwrap_or(""))?;
        }
    }
    Ok(())
}

/// The ports a container publishes: its `PortBindings` of exposed ports (dockerd publishes
/// only those; the docker CLI exposes every `-p` port), and with `PublishAllPorts` every
/// exposed port not bound otherwise, on an ephemeral host port.
pub fn port_requests(c: &Container) -> Result<Vec<PortRequest>, ApiError> {
    let exposed: Vec<&String> = c
        .config
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys())
        .collect();
    let is_exposed = |port: u16, proto: Proto| {
        exposed
            .iter()
            .any(|k| parse_port(k).is_ok_and(|e| e == (port, proto)))
    };
    let mut out = Vec::new();
    if let Some(b) = c.host_config["PortBindings"].as_object() {
        for (key, list) in b {
            let (port, proto) = parse_port(key)?;
            if !is_exposed(port, proto) {
                continue;
            }
            let list = list.as_array().cloned().unwrap_or_default();
            for binding in if list.is_empty() {
                vec![Value::Null]
            } else {
                list
            } {
                let host_ip = match binding["HostIp"].as_str().filter(|s| !s.is_empty()) {
                    Some(ip) => Some(
                        ip.parse::<IpAddr>()
                            .map_err(|_| ApiError::bad_request(format!("invalid host IP {ip}")))?,
                    ),
                    None => None,
                };
                let (host_port, host_port_last) =
                    host_ports(binding["HostPort"].as_str().unwrap_or(""))?;
                out.push(PortRequest {
                    proto,
                    container_port: port,
                    host_ip,
                    host_port: host_port.filter(|p| *p != 0),
                    host_port_last,
                });
            }
        }
    }
    if c.host_config["PublishAllPorts"].as_bool() == Some(true) {
        for key in &exposed {
            let (port, proto) = parse_port(key)?;
            if !out
                .iter()
                .any(|r| r.container_port == port && r.proto == proto)
            {
                out.push(PortRequest {
                    proto,
                    container_port: port,
                    host_ip: None,
                    host_port: None,
                    host_port_last: None,
                });
            }
        }
    }
    Ok(out)
}

/// The networks a container of network mode `mode` is on, in order: its mode's network
/// first, then those it was connected to.
fn endpoint_requests(
    d: &Daemon,
    c: &Container,
    mode: &str,
) -> Result<Vec<EndpointRequest>, ApiError> {
    let cfgs = c.networking_config["EndpointsConfig"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    // The docker CLI names the default network `default` when no --network is given.
    let own = cfgs
        .get(mode)
        .or_else(|| cfgs.get("default").filter(|_| mode == "bridge"));
    let mut first = endpoint_request(mode, own.unwrap_or(&Value::Null))?;
    if first.mac.is_none() {
        first.mac = c.config.mac_address.clone().filter(|m| !m.is_empty());
    }
    out.push(first);
    for (name, cfg) in &cfgs {
        if name != mode && d.net.network(name).is_ok() {
            out.push(endpoint_request(name, cfg)?);
        }
    }
    Ok(out)
}

/// What the network manager sets up for `c`, or `None` when the container gets a bare
/// namespace (`none`, or the default network with `--bridge=none`).
pub fn request_for(d: &Daemon, c: &Container) -> Result<Option<SandboxRequest>, ApiError> {
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
    let name = match NetworkMode::parse(mode) {
        NetworkMode::Bridge if d.net.network("bridge").is_ok() => "bridge".to_string(),
        NetworkMode::Named(n) => {
            // A missing network is the start's 404, as with dockerd.
            d.net.network(&n)?;
            n
        }
        _ => return Ok(None),
    };
    let hc = &c.host_config;
    Ok(Some(SandboxRequest {
        id: c.id.clone(),
        name: c.name.clone(),
        hostname: c.config.hostname.clone(),
        domainname: c.config.domainname.clone(),
        endpoints: endpoint_requests(d, c, &name)?,
        ports: port_requests(c)?,
        dns: strings(&hc["Dns"]),
        dns_search: strings(&hc["DnsSearch"]),
        dns_opt: strings(&hc["DnsOptions"]),
        extra_hosts: strings(&hc["ExtraHosts"]),
    }))
}

/// `NetworkSettings.Ports` (inspect) of a running container: every exposed or published
/// port, with its host bindings (null when not published).
fn ports_map(c: &Container, sb: Option<&Sandbox>) -> Value {
    let mut m = Map::new();
    if !c.state.running {
        return Value::Object(m);
    }
    let mode = NetworkMode::parse(c.host_config["NetworkMode"].as_str().unwrap_or(""));
    if matches!(
        mode,
        NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_)
    ) {
        return Value::Object(m);
    }
    for key in c.config.exposed_ports.iter().flat_map(|e| e.keys()) {
        m.insert(key.clone(), Value::Null);
    }
    if let Some(sb) = sb {
        for p in &sb.ports {
            let key = format!("{}/{}", p.container_port, p.proto.name());
            let entry = m.entry(key).or_insert_with(|| j!([]));
            if !entry.is_array() {
                *entry = j!([]);
            }
            if let Some(a) = entry.as_array_mut() {
                a.push(
                    j!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }),
                );
            }
        }
    }
    Value::Object(m)
}

/// `Ports` and `NetworkSettings.Networks` of `/containers/json`.
pub fn summary(d: &Daemon, c: &Container) -> (Value, Map<String, Value>) {
    let sb = d.net.sandbox(&c.id);
    (ports_list(c, sb.as_ref()), networks_json(d, c, sb.as_ref()))
}

fn ports_list(c: &Container, sb: Option<&Sandbox>) -> Value {
    let mut out = Vec::new();
    if let Value::Object(m) = ports_map(c, sb) {
        for (key, bindings) in m {
            let Ok((port, proto)) = parse_port(&key) else {
                continue;
            };
            match bindings.as_array() {
                Some(list) => {
                    for b in list {
                        out.push(j!({
                            "IP": b["HostIp"], "PrivatePort": port,
                            "PublicPort": b["HostPort"].as_str().and_then(|s| s.parse::<u16>().ok()),
                            "Type": proto.name(),
                        }));
                    }
                }
                None => out.push(j!({ "PrivatePort": port, "Type": proto.name() })),
            }
        }
    }
    Value::Array(out)
}

/// One endpoint as `NetworkSettings.Networks.<name>` shows it.
fn endpoint_json(
    e: Option<&strata_netd::sandbox::Endpoint>,
    cfg: &Value,
    net_id: &str,
    c: &Container,
) -> Value {
    let ipam = match cfg["IPAMConfig"].as_object() {
        Some(m) if !m.is_empty() => Value::Object(m.clone()),
        _ => Value::Null,
    };
    let mut aliases: Vec<Value> = cfg["Aliases"].as_array().cloned().unwrap_or_default();
    let user_defined = e.is_some_and(|e| e.user_defined);
    if user_defined && !aliases.iter().any(|a| a == &j!(&c.id[..12])) {
        aliases.push(j!(&c.id[..12]));
    }
    let running = c.state.running;
    let e = e.filter(|_| running);
    j!({
        "IPAMConfig": ipam,
        "Links": null,
        "Aliases": if user_defined { Value::Array(aliases) } else { Value::Null },
        "MacAddress": e.map(|e| e.mac.clone()).unwrap_or_default(),
        "DriverOpts": null,
        "NetworkID": net_id,
        "EndpointID": e.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": e.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
        "IPAddress": e.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": e.map(|e| e.prefix).unwrap_or(0),
        "IPv6Gateway": e.and_then(|e| e.gateway6).map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": e.and_then(|e| e.ip6).map(|ip| ip.to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": e.filter(|e| e.ip6.is_some()).map(|e| e.prefix6).unwrap_or(0),
        "DNSNames": if user_defined { j!([c.name, &c.id[..12]]) } else { Value::Null },
    })
}

/// The networks a container is on, by name: its mode's and those connected.
fn networks_json(d: &Daemon, c: &Container, sb: Option<&Sandbox>) -> Map<String, Value> {
    let mut out = Map::new();
    let cfgs = c.networking_config["EndpointsConfig"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
    let first = match NetworkMode::parse(mode) {
        NetworkMode::Bridge => "bridge".to_string(),
        NetworkMode::Container(_) => return out,
        _ => mode.to_string(),
    };
    let mut names = vec![first.clone()];
    names.extend(cfgs.keys().filter(|k| **k != first).cloned());
    for name in names {
        let Ok(n) = d.net.network(&name) else {
            continue;
        };
        let e = sb.and_then(|s| s.endpoints.iter().find(|e| e.network_id == n.id));
        out.insert(
            n.name.clone(),
            endpoint_json(e, cfgs.get(&name).unwrap_or(&Value::Null), &n.id, c),
        );
    }
    out
}

/// inspect's `NetworkSettings`.
pub fn settings_json(d: &Daemon, c: &Container) -> Value {
    let sandbox = d.net.sandbox(&c.id);
    let networks = networks_json(d, c, sandbox.as_ref());
    let bridge = networks.get("bridge").cloned().unwrap_or(Value::Null);
    let field = |k: &str, def: Value| {
        if bridge.is_null() {
            def
        } else {
            bridge[k].clone()
        }
    };
    let ports = ports_map(c, sandbox.as_ref());
    let sb = sandbox.filter(|s| s.running && c.state.running);
    j!({
        "Bridge": "",
        "SandboxID": if sb.is_some() { j!(c.id) } else { j!("") },
        "SandboxKey": sb.map(|s| s.netns.display().to_string()).unwrap_or_default(),
        "Ports": ports,
        "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": field("EndpointID", j!("")),
        "Gateway": field("Gateway", j!("")),
        "GlobalIPv6Address": field("GlobalIPv6Address", j!("")),
        "GlobalIPv6PrefixLen": field("GlobalIPv6PrefixLen", j!(0)),
        "IPAddress": field("IPAddress", j!("")),
        "IPPrefixLen": field("IPPrefixLen", j!(0)),
        "IPv6Gateway": field("IPv6Gateway", j!("")),
        "MacAddress": field("MacAddress", j!("")),
        "Networks": networks,
    })
}
