//! `/networks/...`: the network records and their containers, through the network manager
//! (`strata-netd`): list, inspect, create, remove, connect, disconnect, prune.

use crate::body::{json, read_json, Query, Resp};
use crate::containers::find;
use crate::events::parse_filters;
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json as j, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_netd::store::IpamConfig;
use strata_netd::Network;
use strata_runtime::spec::network::NetworkMode;

const BODY_LIMIT: usize = 1 << 20;

fn matches(d: &Daemon, n: &Network, filters: &[(String, Vec<String>)]) -> Result<bool, ApiError> {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.contains(&n.driver),
            "scope" => vals.iter().any(|v| v == "local"),
            "type" => vals.iter().any(|v| match v.as_str() {
                "builtin" => n.predefined(),
                "custom" => !n.predefined(),
                _ => false,
            }),
            "label" => vals.iter().all(|f| label_hit(n, f)),
            "dangling" => {
                let dangling = !n.predefined() && users(d, n).is_empty();
                vals.iter().any(|v| (v == "true" || v == "1") == dangling)
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `c`'s network mode names `n` (by name or ID; the default bridge by its aliases).
fn by_mode(c: &strata_runtime::Container, n: &Network) -> bool {
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
    mode == n.name
        || mode == n.id
        || (n.name == "bridge" && NetworkMode::parse(mode) == NetworkMode::Bridge)
}

/// Whether `c` was connected to `n` (`network connect`).
fn by_connect(c: &strata_runtime::Container, n: &Network) -> bool {
    c.networking_config["EndpointsConfig"]
        .get(&n.name)
        .is_some()
}

/// The containers that name a network (running or not).
fn users(d: &Daemon, n: &Network) -> Vec<strata_runtime::Container> {
    d.containers
        .list()
        .into_iter()
        .filter(|c| by_mode(c, n) || by_connect(c, n))
        .collect()
}

/// Whether a network's labels match a `label` filter value.
fn label_hit(n: &Network, f: &str) -> bool {
    crate::events::label_matches(f, |k| n.labels.get(k).map(|s| Some(s.as_str())))
}

/// Sends a network event (`container`: the one connected or disconnected).
fn event(d: &Daemon, action: &str, n: &Network, container: Option<&str>) {
    let mut attrs = j!({ "name": n.name, "type": n.driver });
    if let Some(c) = container {
        attrs["container"] = j!(c);
    }
    d.events.emit("network", action, &n.id, attrs);
}

/// `Containers` of a network's inspect: its running endpoints.
fn containers_json(d: &Daemon, n: &Network) -> Value {
    let mut m = Map::new();
    for (cid, e, running) in d.net.endpoints_on(&n.id) {
        if !running {
            continue;
        }
        let name = d.containers.get(&cid).map(|c| c.name).unwrap_or_default();
        m.insert(
            cid,
            j!({
                "Name": name, "EndpointID": e.endpoint_id, "MacAddress": e.mac,
                "IPv4Address": format!("{}/{}", e.ip, e.prefix),
                "IPv6Address": e.ip6.map(|ip| format!("{ip}/{}", e.prefix6)).unwrap_or_default(),
            }),
        );
    }
    Value::Object(m)
}

/// `GET /networks`.
pub fn list(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    let mut out = Vec::new();
    for n in d.net.networks() {
        if matches(d, &n, &filters)? {
            out.push(n.json(containers_json(d, &n)));
        }
    }
    Ok(json(StatusCode::OK, &Value::Array(out)))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), String::from),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn body(req: Request<Incoming>) -> Result<Value, ApiError> {
    read_json(req.into_body(), BODY_LIMIT)
        .await?
        .ok_or_else(|| ApiError::bad_request("invalid JSON: got EOF while reading request body"))
}

/// `/networks/{id}` and its actions.
pub async fn route_named(
    d: &Arc<Daemon>,
    method: &Method,
    rest: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let (key, action) = rest.split_once('/').unwrap_or((rest, ""));
    let key = crate::body::decode_path(key);
    match (method, action) {
        (&Method::GET, "") => {
            let n = d.net.network(&key)?;
            Ok(json(StatusCode::OK, &n.json(containers_json(d, &n))))
        }
        (&Method::DELETE, "") => {
            let d2 = d.clone();
            let n = tokio::task::spawn_blocking(move || d2.net.remove_network(&key)).await??;
            event(d, "destroy", &n, None);
            Ok(crate::body::text(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        (&Method::POST, "connect") => {
            let n = d.net.network(&key)?;
            let b = body(req).await?;
            connect(d, &n, &b).await
        }
        (&Method::POST, "disconnect") => {
            let n = d.net.network(&key)?;
            let b = body(req).await?;
            disconnect(d, &n, &b).await
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

async fn connect(d: &Arc<Daemon>, n: &Network, b: &Value) -> Result<Resp, ApiError> {
    let key = b["Container"].as_str().unwrap_or("");
    let c = find(d, key)?;
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
    let shared = matches!(
        NetworkMode::parse(mode),
        NetworkMode::Host | NetworkMode::None | NetworkMode::Container(_)
    );
    if shared || n.driver != "bridge" {
        return Err(ApiError::bad_request(format!(
            "container cannot be disconnected from host network or connected to host network (network mode {mode}, network {})",
            n.name
        )));
    }
    if by_mode(&c, n) || by_connect(&c, n) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            ),
        ));
    }
    let cfg = b["EndpointConfig"].clone();
    let req = crate::sandbox::endpoint_request(&n.name, &cfg)?;
    if c.state.running {
        let (d2, id) = (d.clone(), c.id.clone());
        tokio::task::spawn_blocking(move || d2.net.connect(&id, &req)).await??;
    }
    let name = n.name.clone();
    d.containers.update(&c.id, |x| {
        if !x.networking_config["EndpointsConfig"].is_object() {
            x.networking_config = j!({ "EndpointsConfig": {} });
        }
        x.networking_config["EndpointsConfig"][&name] =
            if cfg.is_object() { cfg.clone() } else { j!({}) };
    })?;
    event(d, "connect", n, Some(&c.id));
    Ok(crate::body::text(StatusCode::OK, "text/plain", ""))
}

async fn disconnect(d: &Arc<Daemon>, n: &Network, b: &Value) -> Result<Resp, ApiError> {
    let key = b["Container"].as_str().unwrap_or("");
    let c = find(d, key)?;
    let by_mode = by_mode(&c, n);
    if !by_mode && !by_connect(&c, n) {
        // dockerd 20.10 answers 500 here.
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container {} is not connected to network {}", c.id, n.name),
        ));
    }
    let (d2, id, nid) = (d.clone(), c.id.clone(), n.id.clone());
    tokio::task::spawn_blocking(move || d2.net.disconnect(&id, &nid)).await??;
    let name = n.name.clone();
    d.containers.update(&c.id, |x| {
        if let Some(m) = x.networking_config["EndpointsConfig"].as_object_mut() {
            m.remove(&name);
        }
        if by_mode {
            // dockerd leaves the container on no network: mode "none" in effect.
            x.host_config["NetworkMode"] = j!("none");
        }
    })?;
    event(d, "disconnect", n, Some(&c.id));
    Ok(crate::body::text(StatusCode::OK, "text/plain", ""))
}

/// `POST /networks/create`.
pub async fn create(d: &Arc<Daemon>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let b = body(req).await?;
    let name = b["Name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("network name must not be empty"));
    }
    if matches!(name.as_str(), "host" | "none" | "bridge" | "default") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{name} is a pre-defined network and cannot be created"),
        ));
    }
    let driver = b["Driver"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("bridge")
        .to_string();
    let mut ipam = Vec::new();
    for c in b["IPAM"]["Config"].as_array().cloned().unwrap_or_default() {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        if s("Subnet").is_empty() && !(s("Gateway").is_empty() && s("IPRange").is_empty()) {
            return Err(ApiError::bad_request(
                "a gateway or ip-range needs a subnet",
            ));
        }
        ipam.push(IpamConfig {
            subnet: s("Subnet"),
            gateway: s("Gateway"),
            ip_range: s("IPRange"),
            aux: string_map(&c["AuxiliaryAddresses"]),
        });
    }
    let internal = b["Internal"].as_bool() == Some(true);
    let ipv6 = b["EnableIPv6"].as_bool() == Some(true);
    let attachable = b["Attachable"].as_bool() == Some(true);
    let labels = string_map(&b["Labels"]);
    let options = string_map(&b["Options"]);
    let d2 = d.clone();
    let spec = strata_netd::NetworkSpec {
        name,
        driver,
        ipam,
        internal,
        enable_ipv6: ipv6,
        attachable,
        labels,
        options,
    };
    let n = tokio::task::spawn_blocking(move || d2.net.create_network(spec)).await??;
    event(d, "create", &n, None);
    Ok(json(
        StatusCode::CREATED,
        &j!({ "Id": n.id, "Warning": "" }),
    ))
}

/// `POST /networks/prune`: removes user-defined networks no container names.
pub async fn prune(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    let mut gone = Vec::new();
    for n in d.net.networks() {
        if n.predefined() || !users(d, &n).is_empty() {
            continue;
        }
        let keep = filters.iter().any(|(k, vals)| match k.as_str() {
            "label" => !vals.iter().all(|f| label_hit(&n, f)),
            "label!" => vals.iter().any(|f| label_hit(&n, f)),
            _ => false,
        });
        if keep {
            continue;
        }
        let (d2, id) = (d.clone(), n.id.clone());
        match tokio::task::spawn_blocking(move || d2.net.remove_network(&id)).await? {
            Ok(n) => {
                event(d, "destroy", &n, None);
                gone.push(n.name);
            }
            Err(e) => tracing::warn!(network = %n.name, "prune: {e}"),
        }
    }
    d.events
        .emit("network", "prune", "", j!({ "reclaimed": "0" }));
    Ok(json(
        StatusCode::OK,
        &j!({ "NetworksDeleted": if gone.is_empty() { Value::Null } else { j!(gone) } }),
    ))
}
