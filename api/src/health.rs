//! Health checks (`--health-*`, the image's `HEALTHCHECK`): a probe run as an exec in the
//! container every interval, its result kept in `State.Health`, as dockerd does: `starting`
//! until the first success, `unhealthy` after `Retries` failures in a row outside the start
//! period, and `unhealthy` once the container stops. Events `health_status: ...` on change.

use crate::containers::emit;
use crate::{ApiError, Daemon};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata_runtime::container::record::{Health, HealthLog};
use strata_runtime::shim::frame;
use strata_runtime::Container;

/// dockerd's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Output kept per probe, and probes kept in the log.
const MAX_OUTPUT: usize = 4096;
const MAX_LOG: usize = 5;

/// The running probe loops, by container.
#[derive(Default)]
pub struct Monitors(Mutex<HashMap<String, tokio::task::AbortHandle>>);

impl Monitors {
    fn set(&self, id: &str, h: tokio::task::AbortHandle) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = m.insert(id.to_string(), h) {
            old.abort();
        }
    }

    fn take(&self, id: &str) -> Option<tokio::task::AbortHandle> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }
}

/// A container's check, from its config's `Healthcheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn nanos(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or(0)
}

/// Checks a `Healthcheck` as dockerd does at create.
pub fn validate(hc: &Value) -> Result<(), ApiError> {
    if hc.is_null() {
        return Ok(());
    }
    for (k, name) in [
        ("Interval", "Interval"),
        ("Timeout", "Timeout"),
        ("StartPeriod", "StartPeriod"),
        ("StartInterval", "StartInterval"),
    ] {
        let n = nanos(hc, k);
        if n != 0 && n < 1_000_000 {
            return Err(ApiError::bad_request(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if nanos(hc, "Retries") < 0 {
        return Err(ApiError::bad_request(
            "Retries in Healthcheck cannot be negative",
        ));
    }
    Ok(())
}

/// The check a container runs, if any (`NONE` and an empty test disable it).
pub fn check(c: &Container) -> Option<Check> {
    let hc = c.config.healthcheck.as_ref()?;
    let test: Vec<String> = hc["Test"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let cmd = match test.split_first() {
        Some((k, rest)) if k == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
            let mut sh = c
                .config
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            sh.push(rest.join(" "));
            sh
        }
        _ => return None,
    };
    let dur = |k: &str, default: Duration| match nanos(hc, k) {
        n if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    };
    let interval = dur("Interval", DEFAULT_INTERVAL);
    Some(Check {
        cmd,
        interval,
        timeout: dur("Timeout", DEFAULT_TIMEOUT),
        start_period: dur("StartPeriod", Duration::ZERO),
        start_interval: dur("StartInterval", interval),
        retries: match nanos(hc, "Retries") {
            n if n > 0 => n,
            _ => DEFAULT_RETRIES,
        },
    })
}

/// Runs the probe once in the container (blocking): exit code and output; -1 with dockerd's
/// text when it outlives the timeout.
fn probe(d: &Daemon, c: &Container, chk: &Check) -> (i64, String) {
    let Some(spec) = d.runtime.spec(&c.id) else {
        return (-1, "the container's spec is gone".into());
    };
    let process = strata_runtime::spec::exec::exec_process(
        &spec["process"],
        &strata_runtime::spec::exec::ExecSpec {
            cmd: chk.cmd.clone(),
            ..Default::default()
        },
    );
    let eid = format!("health{}", strata_graph::fsutil::random_id(16));
    let started = d.runtime.exec(&c.id, &eid, &process, "");
    let (pid, mut s) = match started {
        Ok(x) => x,
        Err(e) => {
            d.runtime.exec_forget(&c.id, &eid);
            return (-1, e.to_string());
        }
    };
    let deadline = Instant::now() + chk.timeout;
    let mut out = Vec::new();
    let mut code = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match frame::read(&mut s) {
            Ok(Some((frame::EXIT, p))) => {
                code = String::from_utf8_lossy(&p).trim().parse().ok();
                break;
            }
            Ok(Some((_, p))) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&p[..p.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let result = match code {
        Some(c) => (c, String::from_utf8_lossy(&out).into_owned()),
        None => {
            // SAFETY: kill only sends a signal to the probe's process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Let the shim see it go, so its record is complete before it is removed.
            let mut rest = Vec::new();
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read_to_end(&mut rest);
            (
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    go_duration(chk.timeout)
                ),
            )
        }
    };
    d.runtime.exec_forget(&c.id, &eid);
    result
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`).
fn go_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 {
            format!("{}s", s as u64)
        } else {
            format!("{s}s")
        }
    }
}

/// Starts the probe loop of a container that just started (`fresh`: its health begins as
/// `starting`) or was found running by a restarted daemon (its last result stays).
pub fn start(d: &Arc<Daemon>, c: &Container, fresh: bool) {
    let Some(chk) = check(c) else { return };
    let _ = d.containers.update(&c.id, |x| {
        if fresh || x.state.health.is_none() {
            x.state.health = Some(Health {
                status: "starting".into(),
                failing_streak: 0,
                log: Vec::new(),
            });
        }
    });
    let daemon = d.clone();
    let id = c.id.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        loop {
            let in_start = started.elapsed() < chk.start_period;
            let wait = if in_start {
                chk.start_interval
            } else {
                chk.interval
            };
            tokio::time::sleep(wait).await;
            let Ok(c) = daemon.containers.get(&id) else {
                return;
            };
            if !c.state.running {
                return;
            }
            if c.state.paused {
                continue;
            }
            let cmdline = chk.cmd.join(" ");
            let exec_attrs = [("execID", String::new())];
            emit(&daemon, &c, &format!("exec_create: {cmdline}"), &exec_attrs);
            emit(&daemon, &c, &format!("exec_start: {cmdline}"), &exec_attrs);
            let start_time = strata_graph::time::rfc3339_now();
            let (d2, c2, k2) = (daemon.clone(), c.clone(), chk.clone());
            let (code, output) = tokio::task::spawn_blocking(move || probe(&d2, &c2, &k2))
                .await
                .unwrap_or((-1, "the probe failed".into()));
            emit(
                &daemon,
                &c,
                "exec_die",
                &[("execID", String::new()), ("exitCode", code.to_string())],
            );
            let entry = HealthLog {
                start: start_time,
                end: strata_graph::time::rfc3339_now(),
                exit_code: code,
                output,
            };
            let counts = started.elapsed() >= chk.start_period;
            let changed = daemon.containers.update(&id, |x| {
                let h = x.state.health.get_or_insert_with(Default::default);
                let before = h.status.clone();
                if code == 0 {
                    h.status = "healthy".into();
                    h.failing_streak = 0;
                } else if counts || h.status != "starting" {
                    h.failing_streak += 1;
                    if h.failing_streak >= chk.retries {
                        h.status = "unhealthy".into();
                    }
                }
                h.log.push(entry);
                if h.log.len() > MAX_LOG {
                    let extra = h.log.len() - MAX_LOG;
                    h.log.drain(..extra);
                }
                (before != h.status).then(|| h.status.clone())
            });
            if let Ok(Some(status)) = changed {
                emit(&daemon, &c, &format!("health_status: {status}"), &[]);
            }
        }
    });
    d.health.set(&c.id, task.abort_handle());
}

/// Stops the probe loop of a container that stopped; its health shows `unhealthy`, as
/// dockerd's does.
pub fn stop(d: &Daemon, id: &str) {
    if let Some(h) = d.health.take(id) {
        h.abort();
    }
    let _ = d.containers.update(id, |x| {
        if let Some(h) = x.state.health.as_mut() {
            h.status = "unhealthy".into();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
    }

    #[test]
    fn validation() {
        assert!(validate(&Value::Null).is_ok());
        assert!(validate(&serde_json::json!({"Interval": 1_000_000})).is_ok());
        assert_eq!(
            validate(&serde_json::json!({"Interval": 10}))
                .unwrap_err()
                .message,
            "Interval in Healthcheck cannot be less than 1ms"
        );
        assert!(validate(&serde_json::json!({"Retries": -1})).is_err());
    }
}
