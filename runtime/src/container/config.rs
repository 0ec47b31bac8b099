//! A container's config (the API's `ContainerConfig`) and how an image's config fills it in.
//!
//! The fields the engine reads are typed, so a wrong type is refused with the field named;
//! everything else is kept as it came and handed back by `inspect`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A command: the API accepts a string (one word) or an array of strings.
fn str_slice<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// `ContainerConfig` as the API defines it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub domainname: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default, deserialize_with = "str_slice")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default, deserialize_with = "str_slice")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub on_build: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields the engine does not read, kept as given.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map(|(k, _)| k).unwrap_or(e)
}

impl ContainerConfig {
    /// Fills what the user left out from the image's config, as dockerd merges them: user,
    /// working dir, stop signal, healthcheck and the command come from the image when not
    /// given; environment variables, labels, exposed ports and volumes are combined, the
    /// user's winning.
    pub fn merge_image(&mut self, image: &ContainerConfig) {
        if self.user.is_empty() {
            self.user = image.user.clone();
        }
        if let Some(ports) = &image.exposed_ports {
            let mine = self.exposed_ports.get_or_insert_with(BTreeMap::new);
            for (k, v) in ports {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        match (&mut self.env, &image.env) {
            (None, Some(ie)) => self.env = Some(ie.clone()),
            (Some(ue), Some(ie)) if ue.is_empty() => *ue = ie.clone(),
            (Some(ue), Some(ie)) => {
                for e in ie {
                    if !ue.iter().any(|u| env_key(u) == env_key(e)) {
                        ue.push(e.clone());
                    }
                }
            }
            _ => {}
        }
        if let Some(il) = &image.labels {
            let mine = self.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in il {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if self.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
            if self.cmd.as_ref().is_none_or(|c| c.is_empty()) {
                self.cmd = image.cmd.clone();
                self.args_escaped = image.args_escaped;
            }
            if self.entrypoint.is_none() {
                self.entrypoint = image.entrypoint.clone();
            }
        }
        if self.healthcheck.is_none() {
            self.healthcheck = image.healthcheck.clone();
        }
        if self.working_dir.is_empty() {
            self.working_dir = image.working_dir.clone();
        }
        if let Some(iv) = &image.volumes {
            let mine = self.volumes.get_or_insert_with(BTreeMap::new);
            for (k, v) in iv {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if self.stop_signal.is_none() {
            self.stop_signal = image.stop_signal.clone();
        }
        if self.shell.is_none() {
            self.shell = image.shell.clone();
        }
        if self.on_build.is_none() {
            self.on_build = image.on_build.clone();
        }
    }

    /// The process to run: entrypoint then command; `None` when there is neither.
    pub fn process(&self) -> Option<(String, Vec<String>)> {
        let mut all: Vec<String> = self.entrypoint.clone().unwrap_or_default();
        all.extend(self.cmd.clone().unwrap_or_default());
        if all.is_empty() {
            return None;
        }
        let path = all.remove(0);
        Some((path, all))
    }

    /// The value of an environment variable.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .as_ref()?
            .iter()
            .rev()
            .find(|e| env_key(e) == key)
            .map(|e| e.split_once('=').map(|(_, v)| v).unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> ContainerConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn merge_follows_dockerd() {
        let image = cfg(serde_json::json!({
            "Env": ["PATH=/bin", "A=image"],
            "Cmd": ["sh"],
            "WorkingDir": "/srv",
            "Labels": {"a": "image", "b": "image"},
            "ExposedPorts": {"80/tcp": {}},
            "User": "nobody",
        }));
        let mut user = cfg(serde_json::json!({
            "Env": ["A=user"],
            "Labels": {"a": "user"},
            "ExposedPorts": {"443/tcp": {}},
            "Image": "busybox",
        }));
        user.merge_image(&image);
        assert_eq!(user.env.as_deref().unwrap(), ["A=user", "PATH=/bin"]);
        assert_eq!(user.cmd.as_deref().unwrap(), ["sh"]);
        assert_eq!(user.working_dir, "/srv");
        assert_eq!(user.user, "nobody");
        let labels = user.labels.as_ref().unwrap();
        assert_eq!(labels["a"], "user");
        assert_eq!(labels["b"], "image");
        assert_eq!(user.exposed_ports.as_ref().unwrap().len(), 2);
        assert_eq!(user.process(), Some(("sh".into(), vec![])));
    }

    #[test]
    fn a_user_entrypoint_drops_the_image_cmd() {
        let image = cfg(serde_json::json!({"Entrypoint": ["/init"], "Cmd": ["serve"]}));
        let mut user = cfg(serde_json::json!({"Entrypoint": "echo"}));
        user.merge_image(&image);
        assert_eq!(user.process(), Some(("echo".into(), vec![])));
        let mut user = cfg(serde_json::json!({"Cmd": ["x", "y"]}));
        user.merge_image(&image);
        assert_eq!(
            user.process(),
            Some(("/init".into(), vec!["x".into(), "y".into()]))
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = serde_json::from_value::<ContainerConfig>(serde_json::json!({"Env": "A=1"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let c = cfg(serde_json::json!({"Cmd": null, "Unknown": {"kept": 1}}));
        assert_eq!(c.cmd, None);
        assert_eq!(serde_json::to_value(&c).unwrap()["Unknown"]["kept"], 1);
    }
}
