//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`), as dockerd applies
//! them: after an exit the container is started again after a delay that doubles from 100 ms
//! up to a minute (back to 100 ms after a run of 10 s or more), unless it was stopped by hand;
//! at daemon start, the containers whose policy says so are started.

use crate::{ApiError, Daemon};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_runtime::Container;

/// A restart policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `no`, `always`, `unless-stopped` or `on-failure`.
    pub name: String,
    /// on-failure's maximum retry count; 0 is unlimited.
    pub max: i64,
}

impl Policy {
    /// Reads and checks a HostConfig `RestartPolicy`; messages as dockerd's.
    pub fn parse(v: &Value) -> Result<Policy, ApiError> {
        let name = match &v["Name"] {
            Value::Null => "",
            Value::String(s) => s.as_str(),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid JSON: RestartPolicy.Name must be a string",
                ))
            }
        };
        let max = match &v["MaximumRetryCount"] {
            Value::Null => 0,
            n => n.as_i64().ok_or_else(|| {
                ApiError::bad_request(
                    "invalid JSON: RestartPolicy.MaximumRetryCount must be an integer",
                )
            })?,
        };
        let name = if name.is_empty() { "no" } else { name };
        match name {
            "no" | "always" | "unless-stopped" if max != 0 => Err(ApiError::bad_request(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            ))),
            "on-failure" if max < 0 => Err(ApiError::bad_request(
                "maximum retry count cannot be negative",
            )),
            "no" | "always" | "unless-stopped" | "on-failure" => Ok(Policy {
                name: name.to_string(),
                max,
            }),
            other => Err(ApiError::bad_request(format!(
                "invalid restart policy '{other}'"
            ))),
        }
    }

    /// The policy of a container (`no` when it has none or a broken one).
    pub fn of(c: &Container) -> Policy {
        Self::parse(&c.host_config["RestartPolicy"]).unwrap_or(Policy {
            name: "no".into(),
            max: 0,
        })
    }

    /// Whether a container that exited with `code` is started again.
    pub fn restarts(&self, c: &Container, code: i64) -> bool {
        if c.manually_stopped {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (self.max == 0 || (c.restart_count as i64) < self.max),
            _ => false,
        }
    }
}

/// The current delay before each container's next restart.
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, Duration>>);

impl Backoff {
    /// The delay before restarting a container that ran `ran`; doubles each time.
    fn next(&self, id: &str, ran: Duration) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let d = match m.get(id) {
            Some(prev) if ran < Duration::from_secs(10) => (*prev * 2).min(Duration::from_secs(60)),
            _ => Duration::from_millis(100),
        };
        m.insert(id.to_string(), d);
        d
    }

    /// Forgets a container.
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// After an exit was recorded: schedules the restart the policy asks for. Returns whether it
/// did (the container is then `restarting`).
pub fn after_exit(d: &Arc<Daemon>, c: &Container, code: i64) -> bool {
    if d.shutting_down.load(std::sync::atomic::Ordering::Relaxed)
        || !Policy::of(c).restarts(c, code)
    {
        return false;
    }
    let started = strata_graph::time::rfc3339_secs(&c.state.started_at).unwrap_or(0);
    let ran = Duration::from_secs((strata_graph::time::now_secs() - started).max(0) as u64);
    let delay = d.restarts.next(&c.id, ran);
    // Checked again on the record itself: a stop may have come since `c` was read.
    let marked = d.containers.update(&c.id, |x| {
        if x.manually_stopped {
            return false;
        }
        x.state.status = "restarting".into();
        x.state.restarting = true;
        true
    });
    if !matches!(marked, Ok(true)) {
        return false;
    }
    let d = d.clone();
    let id = c.id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // Stopped or removed meanwhile: nothing to do.
        let go = d.containers.update(&id, |x| {
            let go = x.state.restarting && !x.manually_stopped;
            if go {
                x.restart_count += 1;
            } else if x.state.restarting {
                // Stopped while waiting: it stays stopped.
                x.state.restarting = false;
                x.state.status = "exited".into();
            }
            go
        });
        if !matches!(go, Ok(true)) || d.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Err(e) = crate::run::start_with(&d, &id, true).await {
            tracing::warn!(container = %id, "restarting: {}", e.message);
            let _ = d.containers.update(&id, |x| {
                x.state.restarting = false;
                x.state.status = "exited".into();
            });
            return;
        }
        // A stop that came while it started: stop it again.
        if let Ok(c) = d.containers.get(&id) {
            if c.manually_stopped && c.state.running {
                let _ = crate::run::stop_container(&d, &c, None, true).await;
            }
        }
    });
    true
}

/// At daemon start: starts the containers that are not running and whose policy restarts
/// them (`always`; `unless-stopped` and `on-failure` unless stopped by hand).
pub async fn at_daemon_start(d: &Arc<Daemon>) {
    for c in d.containers.list() {
        if c.state.running {
            continue;
        }
        let p = Policy::of(&c);
        let go = match p.name.as_str() {
            "always" => true,
            "unless-stopped" => !c.manually_stopped,
            "on-failure" => p.restarts(&c, c.state.exit_code) && c.state.status != "created",
            _ => false,
        };
        if go {
            tracing::info!(container = %c.id, policy = %p.name, "starting (restart policy)");
            if let Err(e) = crate::run::start(d, &c.id).await {
                tracing::warn!(container = %c.id, "restart policy: {}", e.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_as_dockerd() {
        assert_eq!(Policy::parse(&json!({})).unwrap().name, "no");
        assert_eq!(
            Policy::parse(&json!({"Name": "on-failure", "MaximumRetryCount": 3})).unwrap(),
            Policy {
                name: "on-failure".into(),
                max: 3
            }
        );
        assert!(Policy::parse(&json!({"Name": "always", "MaximumRetryCount": 3})).is_err());
        assert!(Policy::parse(&json!({"Name": "sometimes"}))
            .unwrap_err()
            .to_string()
            .contains("invalid restart policy 'sometimes'"));
        assert!(Policy::parse(&json!({"Name": "on-failure", "MaximumRetryCount": -1})).is_err());
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let b = Backoff::default();
        let short = Duration::from_secs(1);
        assert_eq!(b.next("a", short), Duration::from_millis(100));
        assert_eq!(b.next("a", short), Duration::from_millis(200));
        assert_eq!(b.next("a", short), Duration::from_millis(400));
        assert_eq!(
            b.next("a", Duration::from_secs(11)),
            Duration::from_millis(100)
        );
        for _ in 0..20 {
            b.next("a", short);
        }
        assert_eq!(b.next("a", short), Duration::from_secs(60));
    }
}
