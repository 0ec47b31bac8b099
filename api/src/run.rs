//! Running containers: start, wait, kill, stop, restart, logs, attach (output only), and the
//! monitor that records each exit.

use crate::body::{stream, text, Query, Resp};
use crate::containers::{emit, find, require_running};
use crate::{ApiError, Daemon};
use hyper::StatusCode;
use serde_json::json as j;
use std::io::{BufRead, Seek};
use std::sync::Arc;
use std::time::Duration;
use strata_graph::time::{rfc3339_now, ZERO_TIME};
use strata_runtime::lifecycle::{parse_signal, CreateOptions, RunError};
use strata_runtime::shim::{frame, LogConfig};
use strata_runtime::spec::network::{NetworkMode, NetworkNs};
use strata_runtime::Container;

impl From<RunError> for ApiError {
    fn from(e: RunError) -> Self {
        let status = match &e {
            RunError::Spec(strata_runtime::spec::SpecError::Invalid { .. })
            | RunError::User(_)
            | RunError::Create(_)
            | RunError::Exec(_)
            | RunError::Runtime(_) => StatusCode::BAD_REQUEST,
            RunError::NotRunning(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// What happened to a container, for waiters.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    /// "die" or "destroy".
    pub what: &'static str,
    pub code: i64,
}

/// The daemon's `--log-driver` and `--log-opt`.
#[derive(Debug, Clone)]
pub struct LogDefault {
    pub driver: String,
    pub opts: serde_json::Map<String, serde_json::Value>,
}

impl Default for LogDefault {
    fn default() -> Self {
        LogDefault {
            driver: "json-file".into(),
            opts: serde_json::Map::new(),
        }
    }
}

/// The log driver and options of a HostConfig: its own; dockerd gives an empty type the
/// daemon's, and empty options the daemon's too.
fn driver_and_opts(
    d: &Daemon,
    hc: &serde_json::Value,
) -> (String, serde_json::Map<String, serde_json::Value>) {
    let lc = &hc["LogConfig"];
    let def = d
        .log_default
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let driver = lc["Type"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map_or(def.driver, String::from);
    let opts = lc["Config"]
        .as_object()
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or(def.opts);
    (driver, opts)
}

/// The HostConfig `LogConfig` a new container gets, checked now, so a bad option is the
/// create's 400 and not a failed start.
pub fn resolve_log_config(
    d: &Daemon,
    hc: &serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let (driver, opts) = driver_and_opts(d, hc);
    LogConfig::new(&driver, &opts, std::path::Path::new("/"), "x")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(serde_json::json!({ "Type": driver, "Config": opts }))
}

/// Where and how a container's output is kept.
pub fn log_config(d: &Daemon, c: &Container) -> Result<LogConfig, ApiError> {
    let (driver, opts) = driver_and_opts(d, &c.host_config);
    LogConfig::new(&driver, &opts, &d.containers.dir(&c.id), &c.id)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `POST /containers/{id}/start`.
pub async fn start(d: &Arc<Daemon>, key: &str) -> Result<Resp, ApiError> {
    start_with(d, key, false).await
}

/// Starts a container; `auto` for a restart policy's start, which leaves the mark of a
/// manual stop alone (a stop that raced with it is honoured by the caller).
pub async fn start_with(d: &Arc<Daemon>, key: &str, auto: bool) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    if c.state.running {
        return Ok(text(StatusCode::NOT_MODIFIED, "text/plain", ""));
    }
    let daemon = d.clone();
    let mut c2 = c.clone();
    strata_runtime::spec::ulimit::merge_defaults(
        &mut c2.host_config,
        &d.default_ulimits.read().unwrap_or_else(|p| p.into_inner()),
    );
    let res = tokio::task::spawn_blocking(move || -> Result<i32, ApiError> {
        // Inside: a failure here is a failed start like the runtime's (recorded, waiters
        // told, `--rm` honoured), not a bare error.
        let (runtime, runtime_args) = {
            let r = daemon.runtimes.read().unwrap_or_else(|p| p.into_inner());
            let name = r.name_for(c2.host_config["Runtime"].as_str())?;
            r.resolve(&name)?
        };
        let (network, etc_from, net) = network_of(&daemon, &c2)?;
        let log = log_config(&daemon, &c2)?;
        let root = match daemon.layers.mount_rw(c2.layer_name(), "") {
            Ok(r) => r,
            Err(e) => {
                daemon.net.teardown(&c2.id);
                return Err(e.into());
            }
        };
        if let Err(e) = crate::volumes::prepare(&daemon, &c2, &root) {
            let _ = daemon.layers.unmount_rw(c2.layer_name());
            daemon.net.teardown(&c2.id);
            return Err(e);
        }
        let undo = |e: ApiError| {
            crate::volumes::stopped(&daemon, &c2);
            let _ = daemon.layers.unmount_rw(c2.layer_name());
            daemon.runtime.cleanup(&c2.id);
            daemon.net.teardown(&c2.id);
            e
        };
        let opts = CreateOptions {
            runtime,
            runtime_args,
            log,
            network,
            etc_from,
            hosts: net.as_ref().map(|p| p.hosts.clone()),
            resolv: net.as_ref().map(|p| p.resolv.clone()),
        };
        let pid = daemon
            .runtime
            .create(&c2, &root, &opts)
            .map_err(|e| undo(e.into()))?;
        // Attachers that waited for the container see all of its output.
        daemon.attach.connect(&daemon, &c2.id);
        if let Err(e) = daemon.runtime.start(&c2.id) {
            // The shim deleted the container; let it finish before cleaning up.
            let _ = daemon.runtime.wait(&c2.id);
            return Err(undo(e.into()));
        }
        Ok(pid)
    })
    .await?;
    let pid = match res {
        Ok(p) => p,
        Err(e) => {
            // Recorded as the container's exit code; 127 when the runtime gave no more detail.
            let code =
                strata_runtime::lifecycle::command_failure_code(&e.message).map_or(127, i64::from);
            let msg = e.message.clone();
            let _ = d.containers.update(&c.id, |x| {
                x.state.status = if x.state.started_at == ZERO_TIME {
                    "created".into()
                } else {
                    "exited".into()
                };
                x.state.exit_code = code;
                x.state.error = msg;
            });
            // Waiters (`docker run` waits before it starts) learn of the failure as an exit,
            // and `--rm` removes the container, as with dockerd.
            exited(d, &c.id, code, None).await;
            return Err(e);
        }
    };
    let now = rfc3339_now();
    d.containers.update(&c.id, |x| {
        x.state.status = "running".into();
        x.state.running = true;
        x.state.pid = pid as i64;
        x.state.exit_code = 0;
        x.state.oom_killed = false;
        x.state.restarting = false;
        if !auto {
            x.manually_stopped = false;
        }
        x.state.error = String::new();
        x.state.started_at = now.clone();
        x.state.finished_at = ZERO_TIME.into();
    })?;
    crate::volumes::mounted(d, &c);
    emit(d, &c, "start", &[]);
    crate::health::start(d, &c, true);
    monitor(d.clone(), c.id.clone());
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

/// The network namespace a container starts in, and whose `/etc` files it shares: another
/// container's for `container:<id>` (which must be running, dockerd's 409 otherwise); for
/// the bridge and user-defined networks, the sandbox the network manager sets up (its
/// namespace and `/etc` files).
fn network_of(
    d: &Daemon,
    c: &Container,
) -> Result<
    (
        NetworkNs,
        Option<std::path::PathBuf>,
        Option<strata_netd::Prepared>,
    ),
    ApiError,
> {
    let mode = c.host_config["NetworkMode"].as_str().unwrap_or("");
    match NetworkMode::parse(mode) {
        NetworkMode::Host => Ok((NetworkNs::Host, None, None)),
        NetworkMode::Container(other) => {
            let o = find(d, &other)?;
            if !o.state.running || o.state.pid <= 0 {
                return Err(ApiError::conflict(format!(
                    "cannot join network of a non running container: {}",
                    o.id
                )));
            }
            Ok((
                NetworkNs::Join(format!("/proc/{}/ns/net", o.state.pid).into()),
                Some(d.runtime.state_dir(&o.id)),
                None,
            ))
        }
        NetworkMode::Bridge | NetworkMode::Named(_) | NetworkMode::None => {
            match crate::sandbox::request_for(d, c)? {
                Some(req) => {
                    let p = d.net.setup(&req)?;
                    Ok((NetworkNs::Join(p.netns.clone()), None, Some(p)))
                }
                None => Ok((NetworkNs::New, None, None)),
            }
        }
    }
}

/// Waits in the background for a running container to exit, then records it.
pub fn monitor(d: Arc<Daemon>, id: String) {
    tokio::spawn(async move {
        let rt = d.runtime.clone();
        let id2 = id.clone();
        let exit = match tokio::task::spawn_blocking(move || rt.wait(&id2)).await {
            Ok(Ok(e)) => e,
            other => {
                tracing::error!(container = %id, "lost track of a container: {other:?}");
                strata_runtime::lifecycle::Exit::unknown()
            }
        };
        record_exit(&d, &id, exit).await;
    });
}

/// Records an exit: state, unmount, event, and `--rm`.
pub async fn record_exit(d: &Arc<Daemon>, id: &str, exit: strata_runtime::lifecycle::Exit) {
    crate::health::stop(d, id);
    let Ok(c) = d.containers.update(id, |x| {
        x.state.status = "exited".into();
        x.state.running = false;
        x.state.paused = false;
        x.state.pid = 0;
        x.state.exit_code = exit.code;
        x.state.oom_killed = exit.oom_killed;
        x.state.finished_at = exit.finished_at.clone();
        x.clone()
    }) else {
        return;
    };
    d.execs.forget_container(id);
    let daemon = d.clone();
    let layer = c.layer_name().to_string();
    let id2 = id.to_string();
    let c2 = c.clone();
    let _ = tokio::task::spawn_blocking(move || {
        crate::volumes::stopped(&daemon, &c2);
        let _ = daemon.layers.unmount_rw(&layer);
        daemon.runtime.cleanup(&id2);
        daemon.net.teardown(&id2);
    })
    .await;
    crate::volumes::unmounted(d, &c);
    if exit.oom_killed {
        emit(d, &c, "oom", &[]);
    }
    emit(d, &c, "die", &[("exitCode", exit.code.to_string())]);
    exited(d, id, exit.code, Some(&c)).await;
}

/// After a container stopped (or failed to start): waiters learn the code, then the restart
/// policy of `stopped` (none for a failed start) may start it again, else `--rm` removes it.
async fn exited(d: &Arc<Daemon>, id: &str, code: i64, stopped: Option<&Container>) {
    let _ = d.changes.send(Change {
        id: id.to_string(),
        what: "die",
        code,
    });
    if stopped.is_some_and(|c| crate::restart::after_exit(d, c, code)) {
        return;
    }
    let Ok(c) = find(d, id) else { return };
    if c.host_config["AutoRemove"].as_bool() == Some(true) {
        if let Err(e) = crate::containers::remove_container(d, &c, true).await {
            tracing::warn!(container = %id, "--rm: {}", e.message);
        }
    }
}

/// `POST /containers/{id}/wait`: headers at once, the status when the condition is met.
pub async fn wait(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let condition = q.get("condition").unwrap_or("not-running").to_string();
    if !matches!(
        condition.as_str(),
        "not-running" | "next-exit" | "removed" | ""
    ) {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let mut rx = d.changes.subscribe();
    let c = find(d, key)?;
    let (tx, body) = tokio::sync::mpsc::channel(1);
    let daemon = d.clone();
    tokio::spawn(async move {
        let done = |code: i64| {
            let _ = tx.try_send(Ok(bytes::Bytes::from(format!(
                "{}\n",
                j!({ "StatusCode": code, "Error": null })
            ))));
        };
        if condition != "removed" && condition != "next-exit" && !c.state.running {
            return done(c.state.exit_code);
        }
        let mut last = c.state.exit_code;
        loop {
            match rx.recv().await {
                Ok(ch) if ch.id == c.id => {
                    if ch.what == "die" {
                        last = ch.code;
                        if condition != "removed" {
                            return done(last);
                        }
                    } else if ch.what == "destroy" {
                        return done(last);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(now) = daemon.containers.get(&c.id) {
                        if !now.state.running && condition != "removed" {
                            return done(now.state.exit_code);
                        }
                    } else {
                        return done(last);
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok(stream(StatusCode::OK, "application/json", body))
}

/// `POST /containers/{id}/kill`.
pub async fn kill(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let sig_name = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .unwrap_or("SIGKILL");
    let sig = parse_signal(sig_name)
        .ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {sig_name}")))?;
    if !c.state.running {
        return Err(ApiError::conflict(format!(
            "Cannot kill container: {key}: Container {} is not running",
            c.id
        )));
    }
    mark_manual_stop(d, &c.id);
    send_signal(d, &c, sig).await?;
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

async fn send_signal(d: &Arc<Daemon>, c: &Container, sig: i32) -> Result<(), ApiError> {
    let rt = d.runtime.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || rt.kill(&id, sig)).await??;
    emit(d, c, "kill", &[("signal", sig.to_string())]);
    Ok(())
}

/// Waits up to `t` for the container to stop running.
async fn wait_stopped(d: &Arc<Daemon>, id: &str, t: Duration) -> bool {
    let mut rx = d.changes.subscribe();
    let check = || {
        d.containers
            .get(id)
            .map(|c| !c.state.running)
            .unwrap_or(true)
    };
    if check() {
        return true;
    }
    let deadline = tokio::time::Instant::now() + t;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(ch)) if ch.id == id && ch.what == "die" => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                if check() {
                    return true;
                }
            }
            Err(_) => return check(),
        }
    }
}

/// Marks a container as stopped by hand (its restart policy leaves it alone), unless the
/// daemon is shutting down.
fn mark_manual_stop(d: &Daemon, id: &str) {
    if !d.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
        let _ = d.containers.update(id, |x| x.manually_stopped = true);
    }
}

/// Stops a container as dockerd does: its stop signal, then SIGKILL after the timeout.
/// `manual`: asked for by a user (the restart policy then leaves it stopped).
pub async fn stop_container(
    d: &Arc<Daemon>,
    c: &Container,
    t: Option<i64>,
    manual: bool,
) -> Result<bool, ApiError> {
    if manual {
        mark_manual_stop(d, &c.id);
    }
    if c.state.restarting && !c.state.running {
        // Waiting for a restart: that restart is called off.
        d.containers.update(&c.id, |x| {
            x.state.restarting = false;
            x.state.status = "exited".into();
        })?;
        return Ok(true);
    }
    if !c.state.running {
        return Ok(false);
    }
    let sig = c
        .config
        .stop_signal
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(libc::SIGTERM);
    let t = t.or(c.config.stop_timeout).unwrap_or(10);
    if t >= 0 {
        let _ = send_signal(d, c, sig).await;
        if wait_stopped(d, &c.id, Duration::from_secs(t as u64)).await {
            emit(d, c, "stop", &[]);
            return Ok(true);
        }
    }
    let _ = send_signal(d, c, libc::SIGKILL).await;
    if !wait_stopped(d, &c.id, Duration::from_secs(30)).await {
        return Err(ApiError::internal(format!(
            "container {} did not exit after SIGKILL",
            &c.id[..12]
        )));
    }
    emit(d, c, "stop", &[]);
    Ok(true)
}

fn timeout_param(q: &Query) -> Result<Option<i64>, ApiError> {
    match q.get("t").or_else(|| q.get("timeout")) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid timeout {v:?}"))),
    }
}

/// `POST /containers/{id}/stop`.
pub async fn stop(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    if let Some(s) = q.get("signal").filter(|s| !s.is_empty()) {
        parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?;
    }
    if !stop_container(d, &c, timeout_param(q)?, true).await? {
        return Ok(text(StatusCode::NOT_MODIFIED, "text/plain", ""));
    }
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

/// `POST /containers/{id}/restart`.
pub async fn restart(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    stop_container(d, &c, timeout_param(q)?, false).await?;
    start(d, &c.id).await?;
    emit(d, &c, "restart", &[]);
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

/// What a log reader sends.
#[derive(Clone)]
struct LogOpts {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tty: bool,
    since: Option<i64>,
    until: Option<i64>,
}

fn render(line: &str, o: &LogOpts) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let is_err = v["stream"] == "stderr";
    if (is_err && !o.stderr) || (!is_err && !o.stdout) {
        return None;
    }
    let time = v["time"].as_str().unwrap_or("");
    let secs = strata_graph::time::rfc3339_secs(time).unwrap_or(0);
    if o.since.is_some_and(|s| secs < s) || o.until.is_some_and(|u| secs >= u) {
        return None;
    }
    let mut payload = Vec::new();
    if o.timestamps {
        payload.extend_from_slice(time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(v["log"].as_str().unwrap_or("").as_bytes());
    Some(if o.tty {
        payload
    } else {
        frame::encode(if is_err { frame::STDERR } else { frame::STDOUT }, &payload)
    })
}

/// Reads a container's log, oldest file first (the last `tail` lines when given), sending
/// rendered lines; with `follow`, keeps reading (across rotations) until the container is no
/// longer running and the log is drained. `from_end` skips what is there already.
#[allow(clippy::too_many_arguments)]
fn read_log(
    d: &Daemon,
    cfg: &LogConfig,
    id: &str,
    o: &LogOpts,
    tail: Option<usize>,
    follow: bool,
    from_end: bool,
    mut send: impl FnMut(Vec<u8>) -> bool,
) {
    let open = || loop {
        match std::fs::File::open(&cfg.path) {
            Ok(f) => return Some(f),
            Err(_) if follow && d.containers.get(id).is_ok_and(|c| may_run(&c)) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => return None,
        }
    };
    let mut tail_buf: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut take = |line: String, send: &mut dyn FnMut(Vec<u8>) -> bool| -> bool {
        match tail {
            Some(n) => {
                tail_buf.push_back(line);
                if tail_buf.len() > n {
                    tail_buf.pop_front();
                }
                true
            }
            None => render(&line, o).is_none_or(&mut *send),
        }
    };
    if !from_end {
        let files = cfg.files();
        // With --tail, rotated files older than the last N lines are not read at all.
        let first = match tail {
            Some(n) => first_file_for_tail(&files, n),
            None => 0,
        };
        for f in &files[first..files.len() - 1] {
            let Ok(file) = std::fs::File::open(f) else {
                continue;
            };
            for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                if !take(line + "\n", &mut send) {
                    return;
                }
            }
        }
    }
    let Some(mut file) = open() else { return };
    if from_end {
        let _ = file.seek(std::io::SeekFrom::End(0));
    }
    let mut r = std::io::BufReader::new(file);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
        if !take(std::mem::take(&mut line), &mut send) {
            return;
        }
    }
    for l in tail_buf.drain(..) {
        if render(&l, o).is_some_and(|b| !send(b)) {
            return;
        }
    }
    if !follow {
        return;
    }
    let mut idle_after_exit = 0;
    loop {
        let n = r.read_line(&mut line).unwrap_or(0);
        if n > 0 && line.ends_with('\n') {
            if render(&line, o).is_some_and(|b| !send(b)) {
                return;
            }
            line.clear();
            continue;
        }
        // Rotated: what was left in the old file has been read; go on with the new one.
        let rotated = match (std::fs::metadata(&cfg.path), r.get_ref().metadata()) {
            (Ok(now), Ok(ours)) => {
                use std::os::unix::fs::MetadataExt;
                now.ino() != ours.ino()
            }
            _ => false,
        };
        if rotated {
            if let Ok(f) = std::fs::File::open(&cfg.path) {
                r = std::io::BufReader::new(f);
                line.clear();
                continue;
            }
        }
        let running = d.containers.get(id).is_ok_and(|c| may_run(&c));
        if !running {
            idle_after_exit += 1;
            if idle_after_exit > 2 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The index of the oldest of `files` (oldest first) that holds any of their last `n` lines.
fn first_file_for_tail(files: &[std::path::PathBuf], n: usize) -> usize {
    let mut lines = 0;
    for (i, f) in files.iter().enumerate().rev() {
        let count = std::fs::read(f)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0);
        lines += count;
        if lines >= n {
            return i;
        }
    }
    0
}

/// Whether a container runs or may still start (created, and no failed start).
fn may_run(c: &Container) -> bool {
    c.state.running || (c.state.status == "created" && c.state.error.is_empty())
}

fn log_opts(c: &Container, q: &Query) -> Result<LogOpts, ApiError> {
    let now = strata_graph::time::now_secs();
    let time = |k: &str| -> Result<Option<i64>, ApiError> {
        match q.get(k).filter(|v| !v.is_empty() && *v != "0") {
            None => Ok(None),
            Some(v) => strata_graph::time::parse_time_arg(v, now)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid {k} {v:?}"))),
        }
    };
    Ok(LogOpts {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        timestamps: q.bool("timestamps"),
        tty: c.config.tty,
        since: time("since")?,
        until: time("until")?,
    })
}

/// The whole log as rendered frames (attach with `logs`).
pub fn log_reader(
    d: &Arc<Daemon>,
    c: &Container,
    q: &Query,
) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, ApiError> {
    let mut o = log_opts(c, q)?;
    (o.since, o.until) = (None, None);
    let cfg = log_config(d, c)?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let daemon = d.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || {
        if cfg.readable() {
            read_log(&daemon, &cfg, &id, &o, None, false, false, |b| {
                tx.blocking_send(b).is_ok()
            });
        }
    });
    Ok(rx)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(d: &Arc<Daemon>, key: &str, q: &Query) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let o = log_opts(&c, q)?;
    if !o.stdout && !o.stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    let cfg = log_config(d, &c)?;
    if !cfg.readable() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let tail = match q.get("tail") {
        None | Some("" | "all") => None,
        Some(t) => Some(
            t.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid tail {t:?}")))?,
        ),
    };
    let follow = q.bool("follow");
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let daemon = d.clone();
    tokio::task::spawn_blocking(move || {
        read_log(&daemon, &cfg, &c.id, &o, tail, follow, false, |b| {
            tx.blocking_send(Ok(bytes::Bytes::from(b))).is_ok()
        });
    });
    Ok(stream(
        StatusCode::OK,
        crate::attach::stream_type(c.config.tty),
        rx,
    ))
}

/// `POST /containers/{id}/pause` and `unpause`: the freezer, through the runtime.
pub async fn pause(d: &Arc<Daemon>, key: &str, pause: bool) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    require_running(&c)?;
    if pause && c.state.paused {
        return Err(ApiError::conflict(format!(
            "Container {} is already paused",
            c.id
        )));
    }
    if !pause && !c.state.paused {
        return Err(ApiError::conflict(format!(
            "Container {} is not paused",
            c.id
        )));
    }
    let rt = d.runtime.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || if pause { rt.pause(&id) } else { rt.resume(&id) })
        .await??;
    d.containers.update(&c.id, |x| {
        x.state.paused = pause;
        x.state.status = if pause { "paused" } else { "running" }.into();
    })?;
    emit(d, &c, if pause { "pause" } else { "unpause" }, &[]);
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

/// At shutdown without `--live-restore`: stops every running container (their stop signal,
/// then SIGKILL after their timeout), all at once.
pub async fn stop_all(d: &Arc<Daemon>) {
    let running: Vec<Container> = d
        .containers
        .list()
        .into_iter()
        .filter(|c| c.state.running)
        .collect();
    if running.is_empty() {
        return;
    }
    tracing::info!(
        count = running.len(),
        "stopping the running containers (no --live-restore)"
    );
    let mut tasks = Vec::new();
    for c in running {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = stop_container(&d, &c, None, false).await {
                tracing::warn!(container = %c.id, "stopping at shutdown: {}", e.message);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// At start: containers that were running when the daemon stopped are followed again if
/// their shim is alive, and get their recorded exit otherwise.
pub async fn adopt(d: &Arc<Daemon>) {
    for c in d.containers.list() {
        if !c.state.running {
            continue;
        }
        if d.runtime.alive(&c.id) {
            tracing::info!(container = %c.id, "following a container that kept running");
            // Its layer is still mounted by the shim's container; count our mount again.
            let daemon = d.clone();
            let layer = c.layer_name().to_string();
            let id = c.id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                daemon.net.restore(&id, true);
                daemon.layers.mount_rw(&layer, "")
            })
            .await;
            crate::health::start(d, &c, false);
            monitor(d.clone(), c.id.clone());
        } else {
            let exit = d
                .runtime
                .exit(&c.id)
                .unwrap_or_else(strata_runtime::lifecycle::Exit::unknown);
            tracing::info!(container = %c.id, code = exit.code, "recording an exit that happened while the daemon was down");
            let daemon = d.clone();
            let layer = c.layer_name().to_string();
            let _ = tokio::task::spawn_blocking(move || daemon.layers.mount_rw(&layer, "")).await;
            record_exit(d, &c.id, exit).await;
        }
    }
    // Sandboxes of containers that are gone go; the rules are written once, whole.
    let daemon = d.clone();
    let _ = tokio::task::spawn_blocking(move || {
        daemon
            .net
            .restored(&|id| daemon.containers.get(id).is_ok_and(|c| c.id == id))
    })
    .await;
}
