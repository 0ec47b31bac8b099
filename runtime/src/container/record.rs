//! What the engine keeps of a container.

use super::config::ContainerConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_graph::time::ZERO_TIME;

/// A container's state, as `inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// created, running, paused, restarting, removing, exited or dead.
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
}

impl State {
    /// A container that was created and never started.
    pub fn created() -> State {
        State {
            status: "created".into(),
            running: false,
            paused: false,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
        }
    }

    /// The `Status` column of `docker ps` ("Created", "Exited (0) 3 minutes ago", ...).
    pub fn human(&self) -> String {
        match self.status.as_str() {
            "created" => "Created".into(),
            "dead" => "Dead".into(),
            "removing" => "Removal In Progress".into(),
            "exited" => format!("Exited ({})", self.exit_code),
            other => {
                let mut s = other.to_string();
                if let Some(f) = s.get_mut(0..1) {
                    f.make_ascii_uppercase();
                }
                s
            }
        }
    }
}

/// A container: its identity, config and state. Stored as `<root>/<id>/config.v2.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without the leading `/` that the API shows.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// The image's ID (`sha256:…`).
    pub image: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: Value,
    #[serde(default)]
    pub networking_config: Value,
    /// The graph driver holding its layer.
    pub driver: String,
    pub state: State,
    #[serde(default)]
    pub restart_count: u64,
}

impl Container {
    /// `Path` and `Args` as one command line, as dockerd lists it: arguments with a space
    /// in single quotes.
    pub fn command(&self) -> String {
        let mut out = self.path.clone();
        for a in &self.args {
            out.push(' ');
            if a.contains(' ') {
                out.push_str(&format!("'{a}'"));
            } else {
                out.push_str(a);
            }
        }
        out
    }

    /// The name of its layer in the layer store.
    pub fn layer_name(&self) -> &str {
        &self.id
    }
}
