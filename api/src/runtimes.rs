//! The OCI runtimes a daemon knows (`runc`, plus `--add-runtime` / daemon.json `runtimes`)
//! and which is the default (`--default-runtime`); reloadable on SIGHUP as dockerd's.

use crate::ApiError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The built-in runtime's name.
pub const RUNC: &str = "runc";

/// One runtime: a binary (a path, or a name looked up in `PATH` when used) and its global
/// options.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSpec {
    pub path: String,
    pub args: Vec<String>,
}

/// The runtimes by name, and the default one's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Runtimes {
    pub default: String,
    pub map: BTreeMap<String, RuntimeSpec>,
}

impl Runtimes {
    /// `runc` plus `extra`, checked as dockerd checks them: `runc` is reserved and the
    /// default must exist.
    pub fn new(default: &str, extra: BTreeMap<String, RuntimeSpec>) -> Result<Runtimes, String> {
        let mut map = BTreeMap::new();
        map.insert(
            RUNC.to_string(),
            RuntimeSpec {
                path: RUNC.into(),
                args: Vec::new(),
            },
        );
        for (name, spec) in extra {
            if name == RUNC {
                return Err(format!("runtime name '{RUNC}' is reserved"));
            }
            if spec.path.is_empty() {
                return Err(format!("runtime {name}: a path is required"));
            }
            map.insert(name, spec);
        }
        let default = if default.is_empty() { RUNC } else { default };
        if !map.contains_key(default) {
            return Err(format!(
                "specified default runtime '{default}' does not exist"
            ));
        }
        Ok(Runtimes {
            default: default.to_string(),
            map,
        })
    }

    /// The name a container records: its own choice, checked, or the default.
    pub fn name_for(&self, asked: Option<&str>) -> Result<String, ApiError> {
        match asked.filter(|n| !n.is_empty()) {
            None => Ok(self.default.clone()),
            Some(n) if self.map.contains_key(n) => Ok(n.to_string()),
            Some(n) => Err(ApiError::bad_request(format!(
                "Unknown runtime specified {n}"
            ))),
        }
    }

    /// The binary and global options of a runtime.
    pub fn resolve(&self, name: &str) -> Result<(PathBuf, Vec<String>), ApiError> {
        let spec = self
            .map
            .get(name)
            .ok_or_else(|| ApiError::bad_request(format!("Unknown runtime specified {name}")))?;
        let path = if spec.path.contains('/') {
            PathBuf::from(&spec.path)
        } else {
            strata_runtime::lifecycle::find_in_path(&spec.path).ok_or_else(|| {
                ApiError::internal(format!(
                    "runtime {name}: {:?} not found in $PATH",
                    spec.path
                ))
            })?
        };
        Ok((path, spec.args.clone()))
    }

    /// `info`'s `Runtimes`.
    pub fn info(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.map {
            let mut e = json!({ "path": v.path });
            if !v.args.is_empty() {
                e["runtimeArgs"] = json!(v.args);
            }
            m.insert(k.clone(), e);
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str) -> RuntimeSpec {
        RuntimeSpec {
            path: p.into(),
            args: vec![],
        }
    }

    #[test]
    fn checks_as_dockerd() {
        let r = Runtimes::new("", BTreeMap::new()).unwrap();
        assert_eq!(r.default, "runc");
        assert_eq!(r.name_for(None).unwrap(), "runc");
        assert_eq!(
            r.name_for(Some("nope")).unwrap_err().message,
            "Unknown runtime specified nope"
        );
        let extra = BTreeMap::from([("runc".to_string(), spec("/x"))]);
        assert_eq!(
            Runtimes::new("", extra).unwrap_err(),
            "runtime name 'runc' is reserved"
        );
        assert!(Runtimes::new("other", BTreeMap::new())
            .unwrap_err()
            .contains("does not exist"));
        let extra = BTreeMap::from([("mine".to_string(), spec("/bin/true"))]);
        let r = Runtimes::new("mine", extra).unwrap();
        assert_eq!(r.name_for(Some("")).unwrap(), "mine");
        assert_eq!(r.resolve("mine").unwrap().0, PathBuf::from("/bin/true"));
        assert_eq!(r.info()["mine"]["path"], "/bin/true");
    }
}
