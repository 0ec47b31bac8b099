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
    /// Present when the container has a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// A container's health, as `State.Health` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthLog>,
}

/// One probe's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
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
            health: None,
        }
    }

    /// The health part of `ps`'s status: ` (healthy)`, ` (health: starting)`.
    fn health_suffix(&self) -> String {
        match self.health.as_ref().map(|h| h.status.as_str()) {
            Some("starting") => " (health: starting)".into(),
            Some(s) if !s.is_empty() => format!(" ({s})"),
            _ => String::new(),
        }
    }

    /// The `Status` column of `docker ps` ("Created", "Up 3 minutes", "Exited (0) 3 minutes
    /// ago"), at Unix time `now`.
    pub fn human(&self, now: i64) -> String {
        let since = |t: &str| {
            let secs = strata_graph::time::rfc3339_secs(t).unwrap_or(now);
            human_duration(now - secs)
        };
        match self.status.as_str() {
            "created" => "Created".into(),
            "dead" => "Dead".into(),
            "removing" => "Removal In Progress".into(),
            "running" => format!("Up {}{}", since(&self.started_at), self.health_suffix()),
            "paused" => format!("Up {} (Paused)", since(&self.started_at)),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.exit_code,
                since(&self.finished_at)
            ),
            "exited" => format!(
                "Exited ({}) {} ago",
                self.exit_code,
                since(&self.finished_at)
            ),
            other => other.to_string(),
        }
    }
}

/// A duration as docker words it in `ps` ("Less than a second", "About a minute", "3 hours").
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
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
    /// Stopped by `stop` or `kill`: its restart policy does not start it again
    /// (dockerd's HasBeenManuallyStopped).
    #[serde(default)]
    pub manually_stopped: bool,
    /// Its binds, volumes and tmpfs mounts, resolved at create.
    #[serde(default)]
    pub mount_points: Vec<crate::volume::mount_point::MountPoint>,
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
