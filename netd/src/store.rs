//! The network records, found by name, ID or ID prefix.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of the network store.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// dockerd's 404.
    #[error("network {0} not found")]
    NotFound(String),
    /// dockerd's 403 for `host`, `none` and `bridge`.
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    /// dockerd's 409.
    #[error("network with name {0} already exists")]
    NameTaken(String),
    /// dockerd's 400 for bad options, subnets and addresses.
    #[error("{0}")]
    Invalid(String),
    /// dockerd's 403: overlapping pools, a network still in use.
    #[error("{0}")]
    Forbidden(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// One network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `host`, `null`, `bridge`.
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The address pools (`IPAM.Config`): subnet, gateway, ip-range; at most one IPv4 and
    /// one IPv6 (used when `enable_ipv6`).
    #[serde(default)]
    pub ipam: Vec<IpamConfig>,
    /// `--internal`: no traffic leaves the bridge.
    #[serde(default)]
    pub internal: bool,
    /// `--ipv6`.
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub attachable: bool,
}

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    /// `--aux-address name=ip`: addresses kept from containers.
    #[serde(default)]
    pub aux: BTreeMap<String, String>,
}

/// The bridge option naming the link (`-o com.docker.network.bridge.name=...`).
pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

impl Network {
    /// One of the networks every daemon has.
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "host" | "none" | "bridge")
    }

    /// The IPv4 pool's configuration.
    pub fn ipam_v4(&self) -> Option<&IpamConfig> {
        self.ipam.iter().find(|c| !c.subnet.contains(':'))
    }

    /// The IPv6 pool's configuration, when the network has IPv6.
    pub fn ipam_v6(&self) -> Option<&IpamConfig> {
        self.ipam
            .iter()
            .find(|c| c.subnet.contains(':'))
            .filter(|_| self.enable_ipv6)
    }

    /// The link of a bridge network: its `bridge.name` option, else `br-` and its short ID.
    pub fn bridge_name(&self) -> Option<String> {
        (self.driver == "bridge").then(|| {
            self.options
                .get(BRIDGE_NAME)
                .cloned()
                .unwrap_or_else(|| format!("br-{}", &self.id[..12.min(self.id.len())]))
        })
    }

    /// As `GET /networks/{id}` shows it (dockerd's shape), with `containers` its endpoints.
    pub fn json(&self, containers: Value) -> Value {
        let config: Vec<Value> = self
            .ipam
            .iter()
            .map(|c| {
                let mut m = serde_json::Map::new();
                m.insert("Subnet".into(), json!(c.subnet));
                if !c.ip_range.is_empty() {
                    m.insert("IPRange".into(), json!(c.ip_range));
                }
                if !c.gateway.is_empty() {
                    m.insert("Gateway".into(), json!(c.gateway));
                }
                if !c.aux.is_empty() {
                    m.insert("AuxiliaryAddresses".into(), json!(c.aux));
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
            "Driver": self.driver, "EnableIPv6": self.enable_ipv6,
            "IPAM": { "Driver": "default", "Options": if self.driver == "bridge" && !self.predefined() { json!({}) } else { Value::Null }, "Config": config },
            "Internal": self.internal, "Attachable": self.attachable, "Ingress": false,
            "ConfigFrom": { "Network": "" }, "ConfigOnly": false,
            "Containers": containers, "Options": self.options, "Labels": self.labels,
        })
    }
}

/// The networks of one data root.
pub struct NetworkStore {
    file: PathBuf,
    nets: Vec<Network>,
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let context = context.into();
    move |source| NetworkError::Io { context, source }
}

impl NetworkStore {
    /// Opens the store at `dir`, making the predefined networks on first use.
    pub fn open(dir: &Path) -> Result<NetworkStore, NetworkError> {
        std::fs::create_dir_all(dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let file = dir.join("networks.json");
        let mut nets: Vec<Network> = match std::fs::read(&file) {
            Ok(data) => serde_json::from_slice(&data).unwrap_or_else(|e| {
                tracing::error!(path = %file.display(), "unreadable network records, starting anew: {e}");
                Vec::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_ctx(format!("reading {}", file.display()))(e)),
        };
        let mut changed = false;
        for (name, driver) in [("none", "null"), ("host", "host")] {
            if !nets.iter().any(|n| n.name == name) {
                nets.push(Network {
                    id: strata_graph::fsutil::random_id(32),
                    name: name.into(),
                    driver: driver.into(),
                    created: strata_graph::time::rfc3339_now(),
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    ipam: Vec::new(),
                    internal: false,
                    enable_ipv6: false,
                    attachable: false,
                });
                changed = true;
            }
        }
        let store = NetworkStore { file, nets };
        if changed {
            store.save()?;
        }
        Ok(store)
    }

    fn save(&self) -> Result<(), NetworkError> {
        let data = serde_json::to_vec_pretty(&self.nets)
            .map_err(|e| io_ctx("encoding the network records")(std::io::Error::other(e)))?;
        strata_graph::fsutil::atomic_write(&self.file, &data)
            .map_err(io_ctx(format!("writing {}", self.file.display())))
    }

    /// Every network.
    pub fn list(&self) -> Vec<Network> {
        self.nets.clone()
    }

    /// A network by full name, full ID, or unique ID prefix (as dockerd looks them up).
    pub fn get(&self, key: &str) -> Result<Network, NetworkError> {
        if let Some(n) = self.nets.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let matches: Vec<&Network> = self
            .nets
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(NetworkError::NotFound(key.to_string())),
        }
    }

    /// Removes a user-defined network's record (the caller checks it has no endpoints).
    pub fn remove(&mut self, key: &str) -> Result<Network, NetworkError> {
        let n = self.get(key)?;
        if n.predefined() {
            return Err(NetworkError::Predefined(n.name));
        }
        self.nets.retain(|x| x.id != n.id);
        if let Err(e) = self.save() {
            self.nets.push(n);
            return Err(e);
        }
        Ok(n)
    }

    /// Adds a network's record; its name must be new (dockerd's 409 otherwise).
    pub fn add(&mut self, n: Network) -> Result<(), NetworkError> {
        if self.nets.iter().any(|x| x.name == n.name) {
            return Err(NetworkError::NameTaken(n.name));
        }
        self.nets.push(n);
        if let Err(e) = self.save() {
            self.nets.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Sets the predefined `bridge` network to `n` (keeping its ID), or removes it (`None`:
    /// `--bridge=none`).
    pub fn set_default_bridge(&mut self, n: Option<Network>) -> Result<(), NetworkError> {
        let old = self.nets.iter().position(|x| x.name == "bridge");
        match (old, n) {
            (Some(i), None) => {
                self.nets.remove(i);
            }
            (Some(i), Some(mut n)) => {
                n.id = self.nets[i].id.clone();
                n.created = self.nets[i].created.clone();
                if self.nets[i] == n {
                    return Ok(());
                }
                self.nets[i] = n;
            }
            (None, Some(n)) => self.nets.insert(0, n),
            (None, None) => return Ok(()),
        }
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_networks_keep_their_ids() {
        let t = tempfile::tempdir().unwrap();
        let mut s = NetworkStore::open(t.path()).unwrap();
        let names: Vec<String> = s.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["none", "host"]);
        let host = s.get("host").unwrap();
        assert_eq!(host.driver, "host");
        assert_eq!(s.get(&host.id[..8]).unwrap().name, "host");
        assert!(matches!(s.get("nope"), Err(NetworkError::NotFound(_))));
        assert_eq!(
            s.remove("host").unwrap_err().to_string(),
            "host is a pre-defined network and cannot be removed"
        );
        let again = NetworkStore::open(t.path()).unwrap();
        assert_eq!(
            again.get("host").unwrap().id,
            host.id,
            "kept across restarts"
        );
        assert_eq!(host.json(json!({}))["Driver"], "host");
    }
}
