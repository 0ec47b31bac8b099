//! `exec`: create (`POST /containers/{id}/exec`), start (`POST /exec/{id}/start`, attached
//! through an HTTP upgrade or detached), inspect and resize. The shim runs the process; exec
//! records live in memory until their container stops, as dockerd keeps them.

use crate::attach::{bridge, switching};
use crate::body::{json, read_json, text, Query, Resp};
use crate::containers::{emit, find, require_running};
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json as j, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use strata_runtime::spec::{console_size, exec_process, resolve_user, ExecSpec};
use tokio::io::AsyncWriteExt;

/// One exec.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub tty: bool,
    pub privileged: bool,
    /// stdin, stdout, stderr.
    pub attach: [bool; 3],
    pub console_size: Option<(u16, u16)>,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    /// As given at create (`DetachKeys`); empty: Docker's default.
    pub detach_keys: String,
}

/// The execs the daemon knows, by ID.
#[derive(Default)]
pub struct Execs(Mutex<HashMap<String, ExecRecord>>);

impl Execs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecRecord>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Result<ExecRecord, ApiError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ExecRecord)) {
        if let Some(r) = self.lock().get_mut(id) {
            f(r);
        }
    }

    /// The IDs of a container's running execs (`ExecIDs` in inspect).
    pub fn of_container(&self, container: &str) -> Vec<String> {
        self.lock()
            .values()
            .filter(|r| r.container == container)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Forgets a container's execs (it stopped or went away).
    pub fn forget_container(&self, container: &str) {
        self.lock().retain(|_, r| r.container != container);
    }
}

fn strings(v: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid JSON: {field} must be a list of strings"
                    ))
                })
            })
            .collect(),
        Value::String(s) if field == "Cmd" => Ok(vec![s.clone()]),
        _ => Err(ApiError::bad_request(format!(
            "invalid JSON: {field} must be a list of strings"
        ))),
    }
}

/// `POST /containers/{id}/exec`.
pub async fn create(d: &Arc<Daemon>, key: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let c = find(d, key)?;
    let body = read_json(req.into_body(), 1 << 20)
        .await?
        .unwrap_or(Value::Null);
    require_running(&c)?;
    if c.state.paused {
        return Err(ApiError::conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id
        )));
    }
    let cmd = strings(&body["Cmd"], "Cmd")?;
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let text_field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let working_dir = text_field("WorkingDir");
    if !working_dir.is_empty() && !working_dir.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )));
    }
    let detach_keys = text_field("DetachKeys");
    if !detach_keys.is_empty() {
        crate::attach::parse_detach_keys(&detach_keys)?;
    }
    let rec = ExecRecord {
        detach_keys,
        id: strata_graph::fsutil::random_id(32),
        container: c.id.clone(),
        cmd,
        env: strings(&body["Env"], "Env")?,
        user: text_field("User"),
        working_dir,
        tty: body["Tty"].as_bool().unwrap_or(false),
        privileged: body["Privileged"].as_bool().unwrap_or(false),
        attach: [
            body["AttachStdin"].as_bool().unwrap_or(false),
            body["AttachStdout"].as_bool().unwrap_or(false),
            body["AttachStderr"].as_bool().unwrap_or(false),
        ],
        console_size: console_size(&body["ConsoleSize"]),
        started: false,
        running: false,
        exit_code: None,
        pid: 0,
    };
    let id = rec.id.clone();
    emit(
        d,
        &c,
        &format!("exec_create: {}", rec.cmd.join(" ")),
        &[("execID", id.clone())],
    );
    d.execs.lock().insert(id.clone(), rec);
    Ok(json(StatusCode::CREATED, &j!({ "Id": id })))
}

/// The process of an exec, from its container's spec.
fn process(d: &Daemon, rec: &ExecRecord) -> Result<Value, ApiError> {
    let spec = d
        .runtime
        .spec(&rec.container)
        .ok_or_else(|| ApiError::conflict(format!("Container {} is not running", rec.container)))?;
    let user = if rec.user.is_empty() {
        None
    } else {
        let root = spec["root"]["path"].as_str().unwrap_or("/");
        Some(
            resolve_user(std::path::Path::new(root), &rec.user)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        )
    };
    Ok(exec_process(
        &spec["process"],
        &ExecSpec {
            cmd: rec.cmd.clone(),
            env: rec.env.clone(),
            user,
            working_dir: rec.working_dir.clone(),
            tty: rec.tty,
            privileged: rec.privileged,
            console_size: rec.console_size,
        },
    ))
}

/// Records an exec's end and says so in the events.
fn ended(d: &Daemon, rec: &ExecRecord, code: i64) {
    d.execs.update(&rec.id, |r| {
        r.running = false;
        r.exit_code = Some(code);
        r.pid = 0;
    });
    if let Ok(c) = d.containers.get(&rec.container) {
        emit(
            d,
            &c,
            "exec_die",
            &[("execID", rec.id.clone()), ("exitCode", code.to_string())],
        );
    }
}

/// `POST /exec/{id}/start`.
pub async fn start(
    d: &Arc<Daemon>,
    id: &str,
    mut req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let upgrade = hyper::upgrade::on(&mut req);
    let body = read_json(req.into_body(), 1 << 20)
        .await?
        .unwrap_or(Value::Null);
    let rec = d.execs.get(id)?;
    if rec.started {
        return Err(ApiError::conflict(format!(
            "Error: Exec command {id} is already running"
        )));
    }
    let c = find(d, &rec.container)?;
    require_running(&c)?;
    let detach = body["Detach"].as_bool().unwrap_or(false);
    let mut rec = rec;
    if let Some(t) = body["Tty"].as_bool() {
        rec.tty = rec.tty || t;
    }
    if let Some(s) = console_size(&body["ConsoleSize"]) {
        rec.console_size = Some(s);
    }
    d.execs.update(id, |r| r.started = true);
    let proc = process(d, &rec)?;
    let mut flags = String::new();
    if rec.tty {
        flags.push('t');
    }
    if rec.attach[0] && !detach {
        flags.push('i');
    }
    let rt = d.runtime.clone();
    let (cid, eid) = (rec.container.clone(), rec.id.clone());
    let started = tokio::task::spawn_blocking(move || rt.exec(&cid, &eid, &proc, &flags)).await?;
    let (pid, shim) = match started {
        Ok(x) => x,
        Err(e) => {
            // dockerd 20.10: exit code 126 whatever the cause; a detached start answers the
            // error, an attached one gets it on the stream it asked for.
            ended(d, &rec, 126);
            if detach {
                return Err(e.into());
            }
            let mut msg = e.to_string().into_bytes();
            msg.extend_from_slice(b"\r\n");
            let out = if rec.tty {
                msg
            } else {
                strata_runtime::shim::frame::encode(strata_runtime::shim::frame::STDOUT, &msg)
            };
            tokio::spawn(async move {
                let Ok(io) = upgrade.await else { return };
                let mut io = hyper_util::rt::TokioIo::new(io);
                let _ = io.write_all(&out).await;
                let _ = io.shutdown().await;
            });
            return Ok(switching(rec.tty));
        }
    };
    d.execs.update(id, |r| {
        r.running = true;
        r.pid = pid as i64;
    });
    emit(
        d,
        &c,
        &format!("exec_start: {}", rec.cmd.join(" ")),
        &[("execID", rec.id.clone())],
    );
    let daemon = d.clone();
    if detach {
        // Output is discarded; the stream is read to its end for the exit code.
        tokio::spawn(async move {
            let (code, _) = bridge(
                tokio::io::join(tokio::io::empty(), tokio::io::sink()),
                shim,
                false,
                false,
                &[],
            )
            .await;
            ended(&daemon, &rec, code.unwrap_or(137));
        });
        return Ok(text(StatusCode::OK, "text/plain", ""));
    }
    let tty = rec.tty;
    let input = rec.attach[0];
    let keys = if rec.detach_keys.is_empty() {
        crate::attach::DEFAULT_DETACH_KEYS.to_vec()
    } else {
        crate::attach::parse_detach_keys(&rec.detach_keys)?
    };
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(io);
        let (code, mut w) = bridge(io, shim, tty, input, &keys).await;
        match code {
            // Recorded before the connection ends: the client asks for the exit code next.
            Some(code) => ended(&daemon, &rec, code),
            // Detached (or the stream broke): the process may run on; its exit is
            // recorded when the shim has it.
            None => follow_detached(daemon, rec),
        }
        let _ = w.shutdown().await;
    });
    Ok(switching(tty))
}

/// Records the exit of an exec whose stream ended before it did (detach keys), from the
/// shim's record; 137 if its container stops first without one.
fn follow_detached(d: Arc<Daemon>, rec: ExecRecord) {
    tokio::spawn(async move {
        loop {
            if let Some(code) = d.runtime.exec_exit(&rec.container, &rec.id) {
                ended(&d, &rec, code);
                return;
            }
            let running = d
                .containers
                .get(&rec.container)
                .is_ok_and(|c| c.state.running);
            if !running {
                ended(&d, &rec, 137);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
}

/// `GET /exec/{id}/json`.
pub fn inspect(d: &Daemon, id: &str) -> Result<Resp, ApiError> {
    let r = d.execs.get(id)?;
    let (entrypoint, args) = r
        .cmd
        .split_first()
        .map_or(("", &[][..]), |(a, b)| (a.as_str(), b));
    Ok(json(
        StatusCode::OK,
        &j!({
            "ID": r.id,
            "Running": r.running,
            "ExitCode": r.exit_code,
            "ProcessConfig": {
                "tty": r.tty, "entrypoint": entrypoint, "arguments": args,
                "privileged": r.privileged, "user": r.user,
            },
            "OpenStdin": r.attach[0],
            "OpenStderr": r.attach[2],
            "OpenStdout": r.attach[1],
            "CanRemove": false,
            "ContainerID": r.container,
            "DetachKeys": r.detach_keys,
            "Pid": r.pid,
        }),
    ))
}

/// `POST /exec/{id}/resize`.
pub async fn resize(d: &Arc<Daemon>, id: &str, q: &Query) -> Result<Resp, ApiError> {
    let r = d.execs.get(id)?;
    let (w, h) = crate::attach::size(q)?;
    if !r.running {
        return Err(ApiError::conflict(format!("Exec {id} is not running")));
    }
    let rt = d.runtime.clone();
    tokio::task::spawn_blocking(move || rt.resize(&r.container, &r.id, w, h)).await??;
    Ok(text(StatusCode::OK, "text/plain", ""))
}

/// Routes `/exec/{id}/...`.
pub async fn route(
    d: &Arc<Daemon>,
    method: &Method,
    rest: &str,
    req: Request<Incoming>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, action) {
        (&Method::POST, "start") => start(d, id, req).await,
        (&Method::GET, "json") => inspect(d, id),
        (&Method::POST, "resize") => resize(d, id, q).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}
