//! `/containers/...` and `/commit`: containers that are created and kept, not yet run.

use crate::body::{json, read_json, stream, text, BodyReader, ChannelWriter, Query, Resp};
use crate::events::parse_filters;
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json as j, Value};
use std::sync::Arc;
use strata_graph::time::{rfc3339_now, rfc3339_secs};
use strata_graph::{ChainId, CreateOpts, LayerStore, StorageOpts};
use strata_runtime::commit::{image_config, CommitError, CommitSpec};
use strata_runtime::container::ContainerError;
use strata_runtime::copy::CopyError;
use strata_runtime::{Container, ContainerConfig, State};

const BODY_LIMIT: usize = 4 << 20;

impl From<ContainerError> for ApiError {
    fn from(e: ContainerError) -> Self {
        let status = match &e {
            ContainerError::NotFound(_) => StatusCode::NOT_FOUND,
            ContainerError::Ambiguous(_) | ContainerError::BadName(_) => StatusCode::BAD_REQUEST,
            ContainerError::NameInUse { .. } => StatusCode::CONFLICT,
            ContainerError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<CopyError> for ApiError {
    fn from(e: CopyError) -> Self {
        let status = match &e {
            CopyError::NotFound(..) => StatusCode::NOT_FOUND,
            CopyError::NotADirectory | CopyError::Apply(_) => StatusCode::BAD_REQUEST,
            CopyError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl From<strata_graph::LayerError> for ApiError {
    fn from(e: strata_graph::LayerError) -> Self {
        strata_graph::image::ImageError::from(e).into()
    }
}

/// Attributes of a container's events: image, name and labels, as dockerd sends them.
fn attributes(c: &Container) -> Value {
    let mut a = serde_json::Map::new();
    for (k, v) in c.config.labels.iter().flatten() {
        a.insert(k.clone(), j!(v));
    }
    a.insert("image".into(), j!(c.config.image));
    a.insert("name".into(), j!(c.name));
    Value::Object(a)
}

pub(crate) fn emit(d: &Daemon, c: &Container, action: &str, extra: &[(&str, String)]) {
    let mut a = attributes(c);
    for (k, v) in extra {
        a[*k] = j!(v);
    }
    d.events.emit("container", action, &c.id, a);
}

pub(crate) fn find(d: &Daemon, key: &str) -> Result<Container, ApiError> {
    Ok(d.containers.get(key)?)
}

/// dockerd's 409 for what needs a running container.
pub(crate) fn require_running(c: &Container) -> Result<(), ApiError> {
    if c.state.running {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "Container {} is not running",
            c.id
        )))
    }
}

/// Size of an image layer chain.
fn chain_size(layers: &LayerStore, top: Option<ChainId>) -> u64 {
    let mut total = 0;
    let mut cur = top;
    while let Some(c) = cur {
        match layers.get(&c) {
            Some(l) => {
                total += l.size;
                cur = l.parent;
            }
            None => break,
        }
    }
    total
}

/// (SizeRw, SizeRootFs) of a container; blocking.
fn sizes(layers: &LayerStore, c: &Container) -> (i64, i64) {
    let rw = layers
        .rw_size(c.layer_name())
        .map(|s| s as i64)
        .unwrap_or(-1);
    let parent = layers.get_rw(c.layer_name()).and_then(|r| r.parent);
    (rw, rw.max(0) + chain_size(layers, parent) as i64)
}

fn network_mode(c: &Container) -> String {
    c.host_config["NetworkMode"]
        .as_str()
        .unwrap_or("bridge")
        .to_string()
}

fn mounts_json(c: &Container) -> Value {
    Value::Array(c.mount_points.iter().map(|m| m.inspect()).collect())
}

/// A container as `/containers/json` lists it.
pub(crate) fn summary(d: &Daemon, c: &Container, size: Option<(i64, i64)>) -> Value {
    let (ports, networks) = crate::sandbox::summary(d, c);
    let mut v = j!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.config.image,
        "ImageID": c.image,
        "Command": c.command(),
        "Created": rfc3339_secs(&c.created).unwrap_or(0),
        "Ports": ports,
        "Labels": c.config.labels.clone().unwrap_or_default(),
        "State": c.state.status,
        "Status": c.state.human(strata_graph::time::now_secs()),
        "HostConfig": { "NetworkMode": network_mode(c) },
        "NetworkSettings": { "Networks": networks },
        "Mounts": mounts_json(c),
    });
    // As dockerd lists them: a size of 0 is left out.
    if let Some((rw, root)) = size {
        if rw != 0 {
            v["SizeRw"] = j!(rw);
        }
        if root != 0 {
            v["SizeRootFs"] = j!(root);
        }
    }
    v
}

fn inspect(d: &Daemon, c: &Container, size: Option<(i64, i64)>) -> Value {
    let graph = d.layers.rw_metadata(c.layer_name()).unwrap_or_default();
    let mut v = j!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": c.state,
        "Image": c.image,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": "",
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": c.driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": c.host_config,
        "GraphDriver": { "Name": c.driver, "Data": graph },
        "Mounts": mounts_json(c),
        "Config": c.config,
        "NetworkSettings": crate::sandbox::settings_json(d, c),
    });
    if let Some((rw, root)) = size {
        v["SizeRw"] = j!(rw);
        v["SizeRootFs"] = j!(root);
    }
    v
}

/// `POST /containers/create`.
pub async fn create(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    let body = read_json(req.into_body(), BODY_LIMIT)
        .await?
        .ok_or_else(|| ApiError::bad_request("invalid JSON: got EOF while reading request body"))?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "invalid JSON: the container config must be an object",
        ));
    };
    let (id, warnings) = create_from(d, body, q.get("name").filter(|n| !n.is_empty())).await?;
    Ok(json(
        StatusCode::CREATED,
        &j!({ "Id": id, "Warnings": warnings }),
    ))
}

/// Creates a container from a create request's body (its config with `HostConfig` and
/// `NetworkingConfig`), named `name` or not; returns its ID and the warnings. The builder's
/// RUN steps create their containers through here too.
pub(crate) async fn create_from(
    d: &Arc<Daemon>,
    mut body: serde_json::Map<String, Value>,
    name: Option<&str>,
) -> Result<(String, Vec<String>), ApiError> {
    let host_config = match body.remove("HostConfig") {
        None | Some(Value::Null) => j!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid JSON: HostConfig must be an object",
            ))
        }
    };
    crate::sandbox::check_port_bindings(&host_config)?;
    let networking = body.remove("NetworkingConfig").unwrap_or(Value::Null);
    let mut config: ContainerConfig = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    if config.image.is_empty() {
        return Err(ApiError::bad_request(
            "No image specified: the config has no Image",
        ));
    }
    let img = crate::images::find_normalized(d, &config.image)?;
    let image_cfg: Value = serde_json::from_slice(&img.config).unwrap_or(Value::Null);
    let from_image: ContainerConfig = match &image_cfg["config"] {
        Value::Null => ContainerConfig::default(),
        v => serde_json::from_value(v.clone()).map_err(|e| {
            ApiError::internal(format!("image {} has an invalid config: {e}", img.id))
        })?,
    };
    config.merge_image(&from_image);
    crate::health::validate(config.healthcheck.as_ref().unwrap_or(&Value::Null))?;
    let (path, args) = config
        .process()
        .ok_or_else(|| ApiError::bad_request("No command specified"))?;
    let mut host_config = host_config;
    if matches!(
        host_config["NetworkMode"].as_str(),
        None | Some("" | "default")
    ) {
        host_config["NetworkMode"] = j!("bridge");
    }
    let hostname_for = network_checks(d, &host_config, &config)?;
    host_config["LogConfig"] = crate::run::resolve_log_config(d, &host_config)?;
    host_config["Runtime"] = j!(d
        .runtimes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .name_for(host_config["Runtime"].as_str())?);
    for u in host_config["Ulimits"].as_array().into_iter().flatten() {
        let ok = u["Name"].is_string() && u["Soft"].is_i64() && u["Hard"].is_i64();
        if !ok || u["Soft"].as_i64() > u["Hard"].as_i64() {
            return Err(ApiError::bad_request(format!("invalid ulimit: {u}")));
        }
    }
    let policy = crate::restart::Policy::parse(&host_config["RestartPolicy"])?;
    if policy.name != "no" && host_config["AutoRemove"].as_bool() == Some(true) {
        return Err(ApiError::bad_request(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    host_config["RestartPolicy"] = j!({ "Name": policy.name, "MaximumRetryCount": policy.max });
    let mut warnings: Vec<String> = Vec::new();
    if host_config["BlkioWeight"].as_i64().is_some_and(|w| w > 0)
        && !strata_runtime::cgroups::blkio_weight_supported()
    {
        // dockerd's words and behaviour (checked against 20.10 on this host).
        warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".into());
        host_config["BlkioWeight"] = j!(0);
    }
    // Resources and capabilities are checked now: a bad value is the create's 400.
    strata_runtime::spec::builder::resources(&host_config)
        .and_then(|_| strata_runtime::spec::builder::capabilities(&host_config))
        .and_then(|_| strata_runtime::spec::builder::cgroupns_private(&host_config))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    strata_runtime::volume::mount_point::check(&host_config)?;
    strata_runtime::spec::seccomp::security_opts(&host_config)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let storage_opt: Vec<String> = match &host_config["StorageOpt"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    let storage_opt =
        StorageOpts::parse(&storage_opt).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let r = d.containers.reserve(name)?;
    if config.hostname.is_empty() {
        config.hostname = hostname_for.unwrap_or_else(|| r.id[..12].to_string());
    }
    let config_volumes = serde_json::to_value(&config.volumes).unwrap_or(Value::Null);
    let resolved = {
        let daemon = d.clone();
        let hc = host_config.clone();
        let id = r.id.clone();
        tokio::task::spawn_blocking(move || {
            strata_runtime::volume::mount_point::resolve(
                &hc,
                &config_volumes,
                &daemon.volumes,
                &id,
                &|k| crate::volumes::volumes_from(&daemon, k),
            )
        })
        .await?
    };
    let resolved = match resolved {
        Ok(m) => m,
        Err(e) => {
            d.containers.cancel(r);
            return Err(e.into());
        }
    };
    let made_volumes = resolved.created;
    let c = Container {
        id: r.id.clone(),
        name: r.name.clone(),
        created: rfc3339_now(),
        image: img.id.to_string(),
        path,
        args,
        config,
        host_config,
        networking_config: networking,
        driver: d.layers.driver().name().to_string(),
        state: State::created(),
        restart_count: 0,
        manually_stopped: false,
        mount_points: resolved.mounts,
    };
    let daemon = d.clone();
    let top = img.top_layer;
    let c2 = c.clone();
    // The volumes made for it come back for their events.
    let res = tokio::task::spawn_blocking(move || -> Result<Vec<String>, ApiError> {
        let opts = CreateOpts {
            storage_opt,
            mount_label: String::new(),
        };
        let id = r.id.clone();
        let undo_volumes =
            || strata_runtime::volume::mount_point::undo(&daemon.volumes, &id, &made_volumes);
        if let Err(e) = daemon.layers.create_rw(&r.id, top.as_ref(), &opts) {
            daemon.containers.cancel(r);
            undo_volumes();
            return Err(e.into());
        }
        if let Err(e) = daemon.containers.commit(r, c2) {
            let _ = daemon.layers.remove_rw(&id);
            undo_volumes();
            return Err(e.into());
        }
        Ok(made_volumes)
    })
    .await?;
    crate::volumes::created(d, &res?);
    emit(d, &c, "create", &[]);
    Ok((c.id, warnings))
}

/// Checks the network mode as far as dockerd does at create; the host name a container gets when
/// it names none (the host's on `host`, the other container's on `container:X`).
fn network_checks(
    d: &Daemon,
    hc: &Value,
    config: &ContainerConfig,
) -> Result<Option<String>, ApiError> {
    use strata_runtime::spec::network::{host_name, NetworkMode};
    match NetworkMode::parse(hc["NetworkMode"].as_str().unwrap_or("")) {
        NetworkMode::Bridge | NetworkMode::None => Ok(None),
        NetworkMode::Host => Ok(Some(host_name())),
        NetworkMode::Container(other) => {
            if !config.hostname.is_empty() {
                return Err(ApiError::bad_request(
                    "conflicting options: hostname and the network mode",
                ));
            }
            // A container that is missing now is the start's error, as with dockerd.
            Ok(find(d, &other).ok().map(|o| o.config.hostname))
        }
        // Checked at start, as dockerd does (checked against 20.10: create answers 201).
        NetworkMode::Named(_) => Ok(None),
    }
}

fn label_match(labels: &Option<std::collections::BTreeMap<String, String>>, f: &str) -> bool {
    crate::events::label_matches(f, |k| {
        labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(|v| Some(v.as_str()))
    })
}

/// `GET /containers/json`.
pub async fn list(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    let limit: Option<usize> = match q.get("limit") {
        None | Some("") => None,
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit {n:?}"))),
        },
    };
    let all = q.bool("all") || limit.is_some();
    let mut before: Option<String> = None;
    let mut since: Option<String> = None;
    for (k, vals) in &filters {
        match k.as_str() {
            "before" | "since" => {
                let v = vals.first().map(String::as_str).unwrap_or("");
                let c = find(d, v)?;
                if k == "before" {
                    before = Some(c.created);
                } else {
                    since = Some(c.created);
                }
            }
            "id" | "name" | "label" | "status" | "ancestor" | "exited" | "health" => {}
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let ancestors: Vec<String> = filters
        .iter()
        .filter(|(k, _)| k == "ancestor")
        .flat_map(|(_, v)| v.iter())
        .filter_map(|a| d.images.get(a).ok().map(|i| i.id.to_string()))
        .collect();
    let want_ancestor = filters.iter().any(|(k, _)| k == "ancestor");
    let mut out = Vec::new();
    let size = q.bool("size");
    for c in d.containers.list() {
        if !all && !c.state.running {
            continue;
        }
        let ok = filters.iter().all(|(k, vals)| match k.as_str() {
            "id" => vals.iter().any(|v| c.id.starts_with(v.as_str())),
            "name" => vals
                .iter()
                .any(|v| c.name.contains(v.trim_start_matches('/'))),
            "label" => vals.iter().all(|v| label_match(&c.config.labels, v)),
            "status" => vals.contains(&c.state.status),
            "health" => {
                let h = c
                    .state
                    .health
                    .as_ref()
                    .map_or("none", |h| h.status.as_str());
                vals.iter().any(|v| v == h)
            }
            "exited" => {
                c.state.status == "exited"
                    && vals.iter().any(|v| v.parse() == Ok(c.state.exit_code))
            }
            _ => true,
        });
        if !ok || (want_ancestor && !ancestors.contains(&c.image)) {
            continue;
        }
        if before.as_ref().is_some_and(|b| c.created >= *b)
            || since.as_ref().is_some_and(|s| c.created <= *s)
        {
            continue;
        }
        out.push(c);
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    let layers = d.layers.clone();
    let d2 = d.clone();
    let rows = tokio::task::spawn_blocking(move || {
        out.iter()
            .map(|c| summary(&d2, c, size.then(|| sizes(&layers, c))))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(json(StatusCode::OK, &Value::Array(rows)))
}

/// A container layer mounted for the length of a blocking operation.
struct Mounted<'a> {
    layers: &'a LayerStore,
    name: String,
    root: std::path::PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(layers: &'a LayerStore, c: &Container) -> Result<Self, ApiError> {
        let root = layers.mount_rw(c.layer_name(), "")?;
        Ok(Mounted {
            layers,
            name: c.layer_name().to_string(),
            root,
        })
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.layers.unmount_rw(&self.name) {
            tracing::warn!(layer = %self.name, "unmounting a container layer: {e}");
        }
    }
}

/// `POST /commit`.
pub async fn commit(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    let key = q.get("container").unwrap_or("");
    let c = find(d, key)?;
    let config: Option<ContainerConfig> = match read_json(req.into_body(), BODY_LIMIT).await? {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?,
        ),
    };
    let reference = match q.get("repo").filter(|r| !r.is_empty()) {
        None => None,
        Some(repo) => {
            let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            let r = format!("{repo}:{tag}");
            strata_graph::image::Reference::parse_tagged(&r)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Some(r)
        }
    };
    let changes = q.all("changes");
    let author = q.get("author").unwrap_or("").to_string();
    let comment = q.get("comment").unwrap_or("").to_string();
    // Refuse bad --change lines before doing any work.
    strata_runtime::commit::apply_changes(&mut ContainerConfig::default(), &changes)?;
    let daemon = d.clone();
    let c2 = c.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<strata_graph::Digest, ApiError> {
        let layers = &daemon.layers;
        let rw = layers
            .get_rw(c2.layer_name())
            .ok_or_else(|| ApiError::internal(format!("container {} has no layer", c2.id)))?;
        let parent_cfg: Value = match daemon.images.get(&c2.image) {
            Ok(img) => serde_json::from_slice(&img.config).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if parent_cfg.is_null() && rw.parent.is_some() {
            return Err(ApiError::conflict(format!(
                "the image of container {} was deleted; its config is gone, so it cannot be committed",
                &c2.id[..12]
            )));
        }
        let layer = diff_layer(layers, &c2)?;
        let cfg = image_config(
            &parent_cfg,
            CommitSpec {
                container: &c2,
                config,
                changes: &changes,
                author: &author,
                comment: &comment,
                diff_id: layer.as_ref().map(|l| l.diff_id),
                created: rfc3339_now(),
            },
        );
        let created = cfg.and_then(|cfg| {
            let bytes = serde_json::to_vec(&cfg)
                .map_err(|e| CommitError::BadImageConfig(e.to_string()))?;
            Ok(daemon.images.create(&bytes))
        });
        if let Some(l) = &layer {
            let _ = layers.release(&l.chain_id);
        }
        let img = created??;
        if let Some(r) = &reference {
            daemon.images.tag(&img.id, r)?;
        }
        Ok(img.id)
    })
    .await??;
    emit(
        d,
        &c,
        "commit",
        &[("comment", q.get("comment").unwrap_or("").to_string())],
    );
    Ok(json(StatusCode::CREATED, &j!({ "Id": id.to_string() })))
}

/// Registers what a container changed as a layer on its image's (blocking); `None` when it
/// changed nothing. The returned layer carries a reference the caller releases.
pub(crate) fn diff_layer(
    layers: &Arc<LayerStore>,
    c: &Container,
) -> Result<Option<strata_graph::Layer>, ApiError> {
    let rw = layers
        .get_rw(c.layer_name())
        .ok_or_else(|| ApiError::internal(format!("container {} has no layer", c.id)))?;
    if layers.rw_changes(c.layer_name())?.is_empty() {
        return Ok(None);
    }
    let (mut rd, wr) =
        std::io::pipe().map_err(|e| ApiError::internal(format!("creating a pipe: {e}")))?;
    let name = c.layer_name().to_string();
    let layers2 = layers.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, wr);
        layers2.rw_diff(&name, &mut w)?;
        use std::io::Write;
        w.flush().map_err(|e| strata_graph::LayerError::Io {
            context: "writing a container diff".into(),
            source: e,
        })
    });
    let reg = layers.register(rw.parent.as_ref(), &mut rd, Default::default());
    drop(rd);
    let wres = writer
        .join()
        .map_err(|_| ApiError::internal("the diff writer panicked"))?;
    let layer = reg?;
    if let Err(e) = wres {
        let _ = layers.release(&layer.chain_id);
        return Err(e.into());
    }
    Ok(Some(layer))
}

/// `POST /containers/prune`.
pub async fn prune(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    let mut until: Option<i64> = None;
    for (k, vals) in &filters {
        match k.as_str() {
            "label" | "label!" => {}
            "until" => until = vals.first().map(|v| parse_until(v)).transpose()?,
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let mut deleted = Vec::new();
    let mut reclaimed = 0i64;
    for c in d.containers.list() {
        if c.state.running || c.state.paused || c.state.restarting {
            continue;
        }
        if until.is_some_and(|u| rfc3339_secs(&c.created).unwrap_or(0) >= u) {
            continue;
        }
        let labels_ok = filters.iter().all(|(k, vals)| match k.as_str() {
            "label" => vals.iter().all(|v| label_match(&c.config.labels, v)),
            "label!" => vals.iter().all(|v| !label_match(&c.config.labels, v)),
            _ => true,
        });
        if !labels_ok {
            continue;
        }
        let layers = d.layers.clone();
        let c2 = c.clone();
        let size = tokio::task::spawn_blocking(move || sizes(&layers, &c2).0).await?;
        remove_container(d, &c, false).await?;
        reclaimed += size.max(0);
        deleted.push(c.id.clone());
    }
    Ok(crate::events::pruned(
        d,
        "container",
        "ContainersDeleted",
        deleted,
        reclaimed,
    ))
}

/// `until` as a prune filter takes a Unix time, an RFC 3339 time or a duration (`10m`).
pub(crate) fn parse_until(v: &str) -> Result<i64, ApiError> {
    strata_graph::time::parse_time_arg(v, strata_graph::time::now_secs())
        .ok_or_else(|| ApiError::bad_request(format!("invalid filter 'until={v}'")))
}

/// Removes a stopped container: its record, its layer, its references to volumes, and
/// with `remove_volumes` (`rm -v`, `--rm`) its anonymous volumes.
pub(crate) async fn remove_container(
    d: &Arc<Daemon>,
    c: &Container,
    remove_volumes: bool,
) -> Result<(), ApiError> {
    let daemon = d.clone();
    let id = c.id.clone();
    let layer = c.layer_name().to_string();
    let c2 = c.clone();
    let gone = tokio::task::spawn_blocking(move || -> Result<Vec<String>, ApiError> {
        daemon.containers.remove(&id)?;
        if let Err(e) = daemon.layers.remove_rw(&layer) {
            // The record is gone: the layer is an orphan the next start removes.
            tracing::warn!(layer = %layer, "removing a container layer: {e} (left for the next start)");
        }
        daemon.net.release(&c2.id);
        Ok(crate::volumes::container_removed(&daemon, &c2, remove_volumes))
    })
    .await??;
    d.attach.forget(&c.id);
    d.restarts.forget(&c.id);
    d.execs.forget_container(&c.id);
    emit(d, c, "destroy", &[]);
    crate::volumes::destroyed(d, &gone);
    let _ = d.changes.send(crate::run::Change {
        id: c.id.clone(),
        what: "destroy",
        code: c.state.exit_code,
    });
    Ok(())
}

fn path_stat_header(st: &strata_runtime::copy::PathStat) -> hyper::header::HeaderValue {
    use base64::Engine;
    let raw = serde_json::to_vec(st).unwrap_or_default();
    let enc = base64::engine::general_purpose::STANDARD.encode(raw);
    hyper::header::HeaderValue::from_str(&enc)
        .unwrap_or_else(|_| hyper::header::HeaderValue::from_static(""))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

async fn archive(
    d: &Arc<Daemon>,
    c: Container,
    method: &Method,
    req: Request<Incoming>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let path = q.get("path").unwrap_or("").to_string();
    if path.is_empty() {
        return Err(ApiError::bad_request("path cannot be empty"));
    }
    let daemon = d.clone();
    match *method {
        Method::HEAD => {
            let c2 = c.clone();
            let st = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let m = Mounted::new(&daemon.layers, &c2)?;
                Ok(strata_runtime::copy::stat(&m.root, &path, &c2.id)?)
            })
            .await??;
            let mut r = text(StatusCode::OK, "application/x-tar", "");
            r.headers_mut().insert(STAT_HEADER, path_stat_header(&st));
            Ok(r)
        }
        Method::GET => {
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let (st_tx, st_rx) = tokio::sync::oneshot::channel();
            let c2 = c.clone();
            tokio::task::spawn_blocking(move || {
                let m = match Mounted::new(&daemon.layers, &c2) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = st_tx.send(Err(e));
                        return;
                    }
                };
                // Stat first, so that a missing path is an error status, not a broken stream.
                match strata_runtime::copy::stat(&m.root, &path, &c2.id) {
                    Ok(st) => {
                        let _ = st_tx.send(Ok(st));
                    }
                    Err(e) => {
                        let _ = st_tx.send(Err(e.into()));
                        return;
                    }
                }
                let err_tx = tx.clone();
                if let Err(e) =
                    strata_runtime::copy::archive(&m.root, &path, &c2.id, ChannelWriter(tx))
                {
                    tracing::warn!("archive of {path}: {e}");
                    let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
            let st = st_rx
                .await
                .map_err(|_| ApiError::internal("archive task ended early"))??;
            emit(d, &c, "archive-path", &[]);
            let mut r = stream(StatusCode::OK, "application/x-tar", rx);
            r.headers_mut().insert(STAT_HEADER, path_stat_header(&st));
            Ok(r)
        }
        Method::PUT => {
            if c.host_config["ReadonlyRootfs"].as_bool() == Some(true) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "container rootfs is marked read-only",
                ));
            }
            let no_overwrite = q.bool("noOverwriteDirNonDir");
            let reader = BodyReader::new(req.into_body());
            let c2 = c.clone();
            tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
                let m = Mounted::new(&daemon.layers, &c2)?;
                Ok(strata_runtime::copy::extract(
                    &m.root,
                    &path,
                    &c2.id,
                    reader,
                    no_overwrite,
                )?)
            })
            .await??;
            emit(d, &c, "extract-to-dir", &[]);
            Ok(text(StatusCode::OK, "text/plain", ""))
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `/containers/{id}/...`.
pub async fn route_named(
    d: Arc<Daemon>,
    method: &Method,
    rest: &str,
    req: Request<Incoming>,
    q: &Query,
) -> Result<Resp, ApiError> {
    let (key, action) = rest.split_once('/').unwrap_or((rest, ""));
    let key = crate::body::decode_path(key);
    match (method, action) {
        (&Method::GET, "json") => {
            let c = find(&d, &key)?;
            let size = if q.bool("size") {
                let layers = d.layers.clone();
                let c2 = c.clone();
                Some(tokio::task::spawn_blocking(move || sizes(&layers, &c2)).await?)
            } else {
                None
            };
            Ok(json(StatusCode::OK, &inspect(&d, &c, size)))
        }
        (&Method::GET, "changes") => {
            let c = find(&d, &key)?;
            let layers = d.layers.clone();
            let changes =
                tokio::task::spawn_blocking(move || layers.rw_changes(c.layer_name())).await??;
            let v: Vec<Value> = changes
                .iter()
                .map(|ch| j!({ "Path": ch.path, "Kind": ch.kind as u8 }))
                .collect();
            // No changes is `null`, as dockerd answers (checked against 20.10).
            let v = if v.is_empty() {
                Value::Null
            } else {
                Value::Array(v)
            };
            Ok(json(StatusCode::OK, &v))
        }
        (&Method::GET, "export") => {
            let c = find(&d, &key)?;
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            let daemon = d.clone();
            let c2 = c.clone();
            let (ok_tx, ok_rx) = tokio::sync::oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let m = match Mounted::new(&daemon.layers, &c2) {
                    Ok(m) => {
                        let _ = ok_tx.send(Ok(()));
                        m
                    }
                    Err(e) => {
                        let _ = ok_tx.send(Err(e));
                        return;
                    }
                };
                let err_tx = tx.clone();
                if let Err(e) = strata_runtime::copy::export_tree(&m.root, ChannelWriter(tx)) {
                    tracing::warn!("export of {}: {e}", c2.id);
                    let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
            ok_rx
                .await
                .map_err(|_| ApiError::internal("export task ended early"))??;
            emit(&d, &c, "export", &[]);
            Ok(stream(StatusCode::OK, "application/x-tar", rx))
        }
        (&Method::POST, "rename") => {
            let c = find(&d, &key)?;
            let new = q.get("name").unwrap_or("");
            if new.is_empty() {
                return Err(ApiError::bad_request(
                    "Neither old nor new names may be empty",
                ));
            }
            if new.trim_start_matches('/') == c.name {
                return Err(ApiError::bad_request(
                    "Renaming a container with the same name as its current name",
                ));
            }
            let old = d.containers.rename(&c.id, new)?;
            let c = find(&d, &c.id)?;
            emit(&d, &c, "rename", &[("oldName", format!("/{old}"))]);
            Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        (&Method::GET | &Method::HEAD | &Method::PUT, "archive") => {
            let c = find(&d, &key)?;
            archive(&d, c, method, req, q).await
        }
        (&Method::DELETE, "") => {
            let c = find(&d, &key)?;
            if q.bool("link") {
                return Err(ApiError::bad_request("links are not supported"));
            }
            if c.state.running {
                if !q.bool("force") {
                    return Err(ApiError::conflict(format!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", c.name)));
                }
                crate::run::stop_container(&d, &c, Some(0), true).await?;
            }
            let c = find(&d, &c.id)?;
            remove_container(&d, &c, q.bool("v")).await?;
            Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        (&Method::POST, "start") => crate::run::start(&d, &key).await,
        (&Method::POST, "stop") => crate::run::stop(&d, &key, q).await,
        (&Method::POST, "restart") => crate::run::restart(&d, &key, q).await,
        (&Method::POST, "kill") => crate::run::kill(&d, &key, q).await,
        (&Method::POST, "wait") => crate::run::wait(&d, &key, q).await,
        (&Method::GET, "logs") => crate::run::logs(&d, &key, q).await,
        (&Method::POST, "attach") => crate::attach::attach(&d, &key, req, q).await,
        (&Method::POST, "resize") => crate::attach::resize(&d, &key, q).await,
        (&Method::POST, "exec") => crate::exec::create(&d, &key, req).await,
        (&Method::POST, "pause") => crate::run::pause(&d, &key, true).await,
        (&Method::POST, "unpause") => crate::run::pause(&d, &key, false).await,
        (&Method::POST, "update") => crate::resources::update(&d, &key, req).await,
        (&Method::GET, "top") => crate::resources::top(&d, &key, q).await,
        (&Method::GET, "stats") => crate::resources::stats(&d, &key, q).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// Containers for `/system/df`, with sizes; blocking.
pub(crate) fn df_rows(d: &Daemon) -> Vec<Value> {
    d.containers
        .list()
        .iter()
        .map(|c| summary(d, c, Some(sizes(&d.layers, c))))
        .collect()
}

/// The containers using an image.
pub(crate) fn using_image(d: &Daemon, id: &str) -> Vec<Container> {
    d.containers
        .list()
        .into_iter()
        .filter(|c| c.image == id)
        .collect()
}
