//! `/volumes/...`, and what containers do with volumes: references at create, mounts and
//! the image's content copied in at start, anonymous volumes removed with `rm -v`.

use crate::body::{json, read_json, text, Query, Resp};
use crate::events::parse_filters;
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json as j, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use strata_runtime::volume::mount_point::{MountError, MountPoint};
use strata_runtime::volume::{Volume, VolumeError, VolumeSpec};
use strata_runtime::Container;

impl From<VolumeError> for ApiError {
    fn from(e: VolumeError) -> Self {
        let status = match &e {
            VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
            VolumeError::InUse { .. } => StatusCode::CONFLICT,
            VolumeError::BadName(_) | VolumeError::Invalid(_) => StatusCode::BAD_REQUEST,
            VolumeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<MountError> for ApiError {
    fn from(e: MountError) -> Self {
        match e {
            MountError::Invalid(m) => ApiError::bad_request(m),
            MountError::Volume(v) => v.into(),
        }
    }
}

/// A volume as the API shows it.
fn volume_json(d: &Daemon, v: &Volume) -> Value {
    let options = if v.options.is_empty() {
        Value::Null
    } else {
        j!(v.options)
    };
    // No labels is `null`, as dockerd answers (checked against 20.10).
    let labels = if v.labels.is_empty() {
        Value::Null
    } else {
        j!(v.labels)
    };
    j!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": labels,
        "Mountpoint": d.volumes.data_path(&v.name).display().to_string(),
        "Name": v.name,
        "Options": options,
        "Scope": "local",
    })
}

fn emit(d: &Daemon, name: &str, action: &str, extra: &[(&str, String)]) {
    let mut a = serde_json::Map::new();
    a.insert("driver".into(), j!("local"));
    for (k, v) in extra {
        a.insert(k.to_string(), j!(v));
    }
    d.events.emit("volume", action, name, Value::Object(a));
}

/// Events for volumes made for a container.
pub(crate) fn created(d: &Daemon, names: &[String]) {
    for n in names {
        emit(d, n, "create", &[]);
    }
}

fn string_map(v: &Value, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(format!(
                    "invalid JSON: {what} values must be strings"
                ))),
            })
            .collect(),
        _ => Err(ApiError::bad_request(format!(
            "invalid JSON: {what} must be an object"
        ))),
    }
}

/// `POST /volumes/create`.
pub async fn create(d: &Arc<Daemon>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body = read_json(req.into_body(), 1 << 20).await?.unwrap_or(j!({}));
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON: the volume config must be an object",
        ));
    }
    let spec = VolumeSpec {
        name: body["Name"].as_str().unwrap_or("").to_string(),
        driver: body["Driver"].as_str().unwrap_or("").to_string(),
        options: string_map(&body["DriverOpts"], "DriverOpts")?,
        labels: string_map(&body["Labels"], "Labels")?,
    };
    let daemon = d.clone();
    let (v, made) = tokio::task::spawn_blocking(move || daemon.volumes.create(&spec)).await??;
    if made {
        emit(d, &v.name, "create", &[]);
    }
    Ok(json(StatusCode::CREATED, &volume_json(d, &v)))
}

fn matches(d: &Daemon, v: &Volume, filters: &[(String, Vec<String>)]) -> Result<bool, ApiError> {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|f| v.name.contains(f.as_str())),
            "driver" => vals.contains(&v.driver),
            "label" => vals.iter().all(|f| {
                crate::events::label_matches(f, |k| v.labels.get(k).map(|s| Some(s.as_str())))
            }),
            "label!" => vals.iter().all(|f| {
                !crate::events::label_matches(f, |k| v.labels.get(k).map(|s| Some(s.as_str())))
            }),
            "dangling" => {
                let unused = d.volumes.users(&v.name).is_empty();
                vals.iter().any(|f| match f.as_str() {
                    "true" | "1" => unused,
                    "false" | "0" => !unused,
                    _ => false,
                })
            }
            "all" => true,
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn check_dangling(filters: &[(String, Vec<String>)]) -> Result<(), ApiError> {
    for (k, vals) in filters {
        if k == "dangling" {
            for v in vals {
                if !["true", "false", "1", "0"].contains(&v.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter 'dangling={v}'"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// `GET /volumes`.
pub async fn list(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    check_dangling(&filters)?;
    let mut out = Vec::new();
    for v in d.volumes.list() {
        if matches(d, &v, &filters)? {
            out.push(volume_json(d, &v));
        }
    }
    Ok(json(
        StatusCode::OK,
        &j!({ "Volumes": out, "Warnings": null }),
    ))
}

/// `POST /volumes/prune`: unused anonymous volumes, or with `all=true` (or an API version
/// before 1.42, as dockerd) every unused volume.
pub async fn prune(d: &Arc<Daemon>, q: &Query, version: (u32, u32)) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    for (k, _) in &filters {
        if !["label", "label!", "all"].contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let all = version < (1, 42)
        || filters
            .iter()
            .any(|(k, v)| k == "all" && v.iter().any(|x| x == "true" || x == "1"));
    let mut deleted = Vec::new();
    let mut reclaimed = 0i64;
    for v in d.volumes.list() {
        if !d.volumes.users(&v.name).is_empty() || (!all && !v.is_anonymous()) {
            continue;
        }
        if !matches(d, &v, &filters)? {
            continue;
        }
        let daemon = d.clone();
        let name = v.name.clone();
        let size = tokio::task::spawn_blocking(move || -> Result<i64, VolumeError> {
            let size = daemon.volumes.size(&name);
            daemon.volumes.remove(&name)?;
            Ok(size)
        })
        .await?;
        match size {
            Ok(s) => {
                reclaimed += s;
                emit(d, &v.name, "destroy", &[]);
                deleted.push(v.name);
            }
            // Taken by a container meanwhile: not unused any more.
            Err(VolumeError::InUse { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(crate::events::pruned(
        d,
        "volume",
        "VolumesDeleted",
        deleted,
        reclaimed,
    ))
}

/// `/volumes/{name}`.
pub async fn route_named(
    d: &Arc<Daemon>,
    method: &Method,
    name: &str,
    q: &Query,
) -> Result<Resp, ApiError> {
    let name = crate::body::decode_path(name);
    match *method {
        Method::GET => {
            let v = d.volumes.get(&name)?;
            Ok(json(StatusCode::OK, &volume_json(d, &v)))
        }
        Method::DELETE => {
            let daemon = d.clone();
            let n = name.clone();
            let res = tokio::task::spawn_blocking(move || daemon.volumes.remove(&n)).await?;
            match res {
                Ok(()) => emit(d, &name, "destroy", &[]),
                // `-f`: a missing volume is no error.
                Err(VolumeError::NotFound(_)) if q.bool("force") => {}
                Err(e) => return Err(e.into()),
            }
            Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// The mount points of the container `key` for `--volumes-from`.
pub(crate) fn volumes_from(d: &Daemon, key: &str) -> Result<Vec<MountPoint>, MountError> {
    let c = d
        .containers
        .get(key)
        // A 400, as dockerd answers (checked against 20.10).
        .map_err(|e| MountError::Invalid(e.to_string()))?;
    Ok(c.mount_points
        .into_iter()
        .filter(|m| m.kind != "tmpfs")
        .collect())
}

/// Before a container runs: mounts its volumes that have a filesystem of their own, and
/// fills new, empty volumes with the image's content at their destination (blocking).
pub(crate) fn prepare(d: &Daemon, c: &Container, rootfs: &std::path::Path) -> Result<(), ApiError> {
    for (i, m) in c.mount_points.iter().enumerate() {
        if m.kind != "volume" {
            continue;
        }
        let path = match d.volumes.mount(&m.name, &c.id) {
            Ok(p) => p,
            Err(e) => {
                release_mounts(d, &c.mount_points[..i], &c.id);
                return Err(e.into());
            }
        };
        if m.copy_data && d.volumes.is_empty(&m.name) {
            if let Err(e) = strata_runtime::copy::copy_dir_out(rootfs, &m.destination, &c.id, &path)
            {
                release_mounts(d, &c.mount_points[..=i], &c.id);
                return Err(ApiError::internal(format!(
                    "copying the image's {} into volume {}: {e}",
                    m.destination, m.name
                )));
            }
        }
    }
    Ok(())
}

fn release_mounts(d: &Daemon, mounts: &[MountPoint], id: &str) {
    for m in mounts.iter().filter(|m| m.kind == "volume") {
        d.volumes.unmount(&m.name, id);
    }
}

fn mount_attrs(c: &Container, m: &MountPoint) -> Vec<(&'static str, String)> {
    vec![
        ("container", c.id.clone()),
        ("destination", m.destination.clone()),
        ("propagation", m.propagation.clone()),
        ("read/write", m.rw.to_string()),
    ]
}

/// `volume mount` events of a started container.
pub(crate) fn mounted(d: &Daemon, c: &Container) {
    for m in c.mount_points.iter().filter(|m| m.kind == "volume") {
        emit(d, &m.name, "mount", &mount_attrs(c, m));
    }
}

/// After a container stopped: its volumes' own mounts are released (blocking).
pub(crate) fn stopped(d: &Daemon, c: &Container) {
    release_mounts(d, &c.mount_points, &c.id);
}

/// `volume unmount` events of a stopped container.
pub(crate) fn unmounted(d: &Daemon, c: &Container) {
    for m in c.mount_points.iter().filter(|m| m.kind == "volume") {
        emit(d, &m.name, "unmount", &[("container", c.id.clone())]);
    }
}

/// A removed container lets go of its volumes; with `remove_anonymous` (`rm -v`, `--rm`)
/// its anonymous volumes that nothing else uses go too (blocking).
pub(crate) fn container_removed(d: &Daemon, c: &Container, remove_anonymous: bool) -> Vec<String> {
    d.volumes.release(&c.id);
    let mut gone = Vec::new();
    if !remove_anonymous {
        return gone;
    }
    for m in c.mount_points.iter().filter(|m| m.kind == "volume") {
        let anonymous = d.volumes.get(&m.name).is_ok_and(|v| v.is_anonymous());
        if !anonymous {
            continue;
        }
        match d.volumes.remove(&m.name) {
            Ok(()) => gone.push(m.name.clone()),
            Err(VolumeError::InUse { .. } | VolumeError::NotFound(_)) => {}
            Err(e) => tracing::warn!(volume = %m.name, "removing an anonymous volume: {e}"),
        }
    }
    gone
}

/// `volume destroy` events.
pub(crate) fn destroyed(d: &Daemon, names: &[String]) {
    for n in names {
        emit(d, n, "destroy", &[]);
    }
}

/// At daemon start: references from every container's record, and the mounts of volumes
/// used by containers still running (live-restore).
pub fn restore(d: &Daemon) {
    for c in d.containers.list() {
        for m in c.mount_points.iter().filter(|m| m.kind == "volume") {
            d.volumes.add_ref(&m.name, &c.id);
            if c.state.running {
                if let Err(e) = d.volumes.mount(&m.name, &c.id) {
                    tracing::warn!(volume = %m.name, container = %c.id, "{e}");
                }
            }
        }
    }
}

/// `UsageData` of every volume for `/system/df` (blocking).
pub(crate) fn df_rows(d: &Daemon) -> Vec<Value> {
    d.volumes
        .list()
        .iter()
        .map(|v| {
            let mut row = volume_json(d, v);
            row["UsageData"] = j!({
                "Size": d.volumes.size(&v.name),
                "RefCount": d.volumes.users(&v.name).len(),
            });
            row
        })
        .collect()
}
