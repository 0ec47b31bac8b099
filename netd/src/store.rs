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
    /// What issue #6 brings.
    #[error("{0} is not implemented yet in this Strata (container networking: issue #6)")]
    NotImplemented(&'static str),
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
}

impl Network {
    /// One of the networks every daemon has.
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "host" | "none" | "bridge")
    }

    /// As `GET /networks/{id}` shows it (dockerd's shape).
    pub fn json(&self) -> Value {
        json!({
            "Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
            "Driver": self.driver, "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Options": null, "Config": [] },
            "Internal": false, "Attachable": false, "Ingress": false,
            "ConfigFrom": { "Network": "" }, "ConfigOnly": false,
            "Containers": {}, "Options": self.options, "Labels": self.labels,
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

    /// Removes a user-defined network (there are none yet: issue #6).
    pub fn remove(&self, key: &str) -> Result<(), NetworkError> {
        let n = self.get(key)?;
        if n.predefined() {
            return Err(NetworkError::Predefined(n.name));
        }
        Err(NetworkError::NotImplemented(
            "removing user-defined networks",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predefined_networks_keep_their_ids() {
        let t = tempfile::tempdir().unwrap();
        let s = NetworkStore::open(t.path()).unwrap();
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
        assert_eq!(host.json()["Driver"], "host");
    }
}
