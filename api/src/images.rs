//! `/images/...`: list, inspect, history, tag, remove, load, save.

use crate::body::{decode_path, json, stream, BodyReader, ChannelWriter, Query, Resp};
use crate::{ApiError, Daemon};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use std::sync::Arc;
use strata_graph::image::{Image, Reference};
use strata_graph::time::{rfc3339_now, rfc3339_secs};
use strata_graph::ChainId;

fn config_json(img: &Image) -> serde_json::Value {
    serde_json::from_slice(&img.config).unwrap_or(serde_json::Value::Null)
}

/// What the layers `chain` take (sizes recorded at commit).
fn chain_size(d: &Daemon, chain: &[ChainId]) -> u64 {
    chain
        .iter()
        .filter_map(|c| d.layers.get(c))
        .map(|l| l.size)
        .sum()
}

pub(crate) fn repo_tags(d: &Daemon, img: &Image) -> Vec<String> {
    tags_of(&d.images.references(&img.id))
}

/// The tagged references among `refs`, familiar and sorted (`RepoTags`).
fn tags_of(refs: &[Reference]) -> Vec<String> {
    let mut v: Vec<String> = refs
        .iter()
        .filter(|r| r.tag.is_some())
        .map(|r| r.familiar())
        .collect();
    v.sort();
    v
}

/// The digest references among `refs`, familiar and sorted (`RepoDigests`).
fn digests_of(refs: &[Reference]) -> Vec<String> {
    let mut v: Vec<String> = refs
        .iter()
        .filter(|r| r.digest.is_some() && r.tag.is_none())
        .map(|r| r.familiar())
        .collect();
    v.sort();
    v
}

/// `path.Match`-style glob: `*` and `?` do not cross `/`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name)
                || (!name.is_empty() && name[0] != b'/' && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(c)) if p == c => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether an image's references match a `reference` filter, as dockerd matches them: the
/// pattern against `repo` or `repo:tag` (familiar forms).
fn reference_matches(refs: &[Reference], pattern: &str) -> bool {
    refs.iter().any(|r| {
        let fam = r.familiar();
        let repo = fam
            .rsplit_once(':')
            .map(|(a, b)| if b.contains('/') { fam.as_str() } else { a })
            .unwrap_or(&fam);
        glob(pattern.as_bytes(), fam.as_bytes()) || glob(pattern.as_bytes(), repo.as_bytes())
    })
}

fn created_secs(img: &Image) -> i64 {
    img.head
        .created
        .as_deref()
        .and_then(rfc3339_secs)
        .unwrap_or(0)
}

fn image_labels(img: &Image) -> serde_json::Map<String, serde_json::Value> {
    config_json(img)["config"]["Labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn label_filter(labels: &serde_json::Map<String, serde_json::Value>, f: &str) -> bool {
    crate::events::label_matches(f, |k| labels.get(k).map(|v| v.as_str()))
}

pub async fn list(d: &Daemon, q: &Query) -> Result<Resp, ApiError> {
    let filters = crate::events::parse_filters(q.get("filters"))?;
    let mut dangling: Option<bool> = None;
    let (mut before, mut since) = (None::<i64>, None::<i64>);
    for (k, vals) in &filters {
        match k.as_str() {
            "dangling" => {
                let v = vals.first().map(String::as_str).unwrap_or("");
                dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid filter 'dangling={other}'"
                        )))
                    }
                });
            }
            "before" | "since" => {
                let v = vals.first().map(String::as_str).unwrap_or("");
                let t = created_secs(&find(d, v)?);
                if k == "before" {
                    before = Some(t);
                } else {
                    since = Some(t);
                }
            }
            "label" | "reference" => {}
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let mut out = Vec::new();
    let mut imgs = d.images.list();
    imgs.sort_by_key(|i| std::cmp::Reverse(created_secs(i)));
    let used: std::collections::HashMap<String, usize> =
        d.containers
            .list()
            .iter()
            .fold(Default::default(), |mut m, c| {
                *m.entry(c.image.clone()).or_default() += 1;
                m
            });
    // As dockerd: with a reference filter, only the matching tags are listed.
    let patterns: Vec<&String> = filters
        .iter()
        .filter(|(k, _)| k == "reference")
        .flat_map(|(_, v)| v.iter())
        .collect();
    for img in imgs {
        let refs = d.images.references(&img.id);
        let tags = tags_of(&refs);
        let digests = digests_of(&refs);
        if dangling.is_some_and(|want| want != (tags.is_empty() && digests.is_empty())) {
            continue;
        }
        let t = created_secs(&img);
        if before.is_some_and(|b| t >= b) || since.is_some_and(|s| t <= s) {
            continue;
        }
        let ok = filters.iter().all(|(k, vals)| match k.as_str() {
            "label" => {
                let labels = image_labels(&img);
                vals.iter().all(|v| label_filter(&labels, v))
            }
            "reference" => vals.iter().any(|v| reference_matches(&refs, v)),
            _ => true,
        });
        if !ok {
            continue;
        }
        let tags = if patterns.is_empty() {
            tags
        } else {
            refs.iter()
                .filter(|r| r.tag.is_some())
                .filter(|r| {
                    patterns
                        .iter()
                        .any(|p| reference_matches(std::slice::from_ref(r), p))
                })
                .map(|r| r.familiar())
                .collect()
        };
        let mut v = summary(d, &img, &img.head.chain_ids(), tags);
        v["RepoDigests"] = serde_json::json!(digests);
        v["Containers"] = serde_json::json!(used.get(&img.id.to_string()).copied().unwrap_or(0));
        out.push(v);
    }
    Ok(json(StatusCode::OK, &serde_json::Value::Array(out)))
}

/// An image as `/images/json` and `/system/df` list it; `chain` is its layers' chainIDs.
pub(crate) fn summary(
    d: &Daemon,
    img: &Image,
    chain: &[ChainId],
    tags: Vec<String>,
) -> serde_json::Value {
    let cfg = config_json(img);
    serde_json::json!({
        "Id": img.id.to_string(),
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": [],
        "Created": img.head.created.as_deref().and_then(rfc3339_secs).unwrap_or(0),
        "Size": chain_size(d, chain),
        "SharedSize": -1,
        "Labels": cfg["config"]["Labels"].as_object().cloned().unwrap_or_default(),
        "Containers": -1,
    })
}

/// `POST /images/create`: import from a tarball in the body (`fromSrc=-`).
pub async fn create(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    match q.get("fromSrc") {
        Some("-") => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "importing from a URL is not supported yet; use fromSrc=-",
            ))
        }
        None => return Err(ApiError::bad_request("fromSrc or fromImage is required")),
    }
    // `--change` instructions make the image's config, as dockerd applies them on import.
    let mut image_cfg = strata_runtime::ContainerConfig::default();
    strata_runtime::commit::apply_changes(&mut image_cfg, &q.all("changes"))?;
    let image_cfg =
        serde_json::to_value(&image_cfg).map_err(|e| ApiError::internal(e.to_string()))?;
    let repo = q.get("repo").unwrap_or("").to_string();
    let tag = q
        .get("tag")
        .filter(|t| !t.is_empty())
        .unwrap_or("latest")
        .to_string();
    // `repo` may carry its own tag (the CLI sends `repo=name:tag`).
    let reference = match repo.as_str() {
        "" => None,
        r => match Reference::parse(r) {
            Ok(p) if p.tag.is_some() || p.digest.is_some() => Some(r.to_string()),
            _ => Some(format!("{r}:{tag}")),
        },
    };
    if let Some(r) = &reference {
        Reference::parse_tagged(r).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let comment = q
        .get("message")
        .filter(|m| !m.is_empty())
        .map(String::from)
        .unwrap_or_else(|| "Imported from -".into());
    let reader = BodyReader::new(req.into_body());
    let images = d.images.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<strata_graph::Digest, ApiError> {
        let layer = images
            .layers()
            .register(None, reader, Default::default())
            .map_err(strata_graph::image::ImageError::from)?;
        let now = rfc3339_now();
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        let cfg = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "created": now,
            "config": image_cfg,
            "rootfs": { "type": "layers", "diff_ids": [layer.diff_id.to_string()] },
            "history": [{ "created": now, "comment": comment }],
        });
        let bytes = serde_json::to_vec(&cfg).map_err(|e| ApiError::internal(e.to_string()))?;
        let created = images.create(&bytes);
        let _ = images.layers().release(&layer.chain_id);
        let img = created?;
        if let Some(r) = &reference {
            images.tag(&img.id, r)?;
        }
        Ok(img.id)
    })
    .await??;
    d.events.emit(
        "image",
        "import",
        &id.to_string(),
        serde_json::json!({ "name": id.to_string() }),
    );
    Ok(crate::body::text(
        StatusCode::OK,
        "application/json",
        format!("{}\n", serde_json::json!({ "status": id.to_string() })),
    ))
}

fn inspect(d: &Daemon, img: &Image) -> serde_json::Value {
    let cfg = config_json(img);
    let graph = img
        .top_layer
        .and_then(|t| d.layers.metadata(&t).ok())
        .unwrap_or_default();
    serde_json::json!({
        "Id": img.id.to_string(),
        "RepoTags": repo_tags(d, img),
        "RepoDigests": digests_of(&d.images.references(&img.id)),
        "Parent": "",
        "Comment": cfg["comment"].as_str().unwrap_or(""),
        "Created": img.head.created.clone().unwrap_or_default(),
        "DockerVersion": cfg["docker_version"].as_str().unwrap_or(""),
        "Author": cfg["author"].as_str().unwrap_or(""),
        "Config": cfg["config"],
        "Architecture": img.head.architecture.clone().unwrap_or_default(),
        "Variant": cfg["variant"],
        "Os": img.head.os.clone().unwrap_or_default(),
        "Size": chain_size(d, &img.head.chain_ids()),
        "GraphDriver": { "Name": d.layers.driver().name(), "Data": graph },
        "RootFS": { "Type": "layers", "Layers": img.head.rootfs.diff_ids.iter().map(|x| x.to_string()).collect::<Vec<_>>() },
        "Metadata": { "LastTagTime": "0001-01-01T00:00:00Z" },
    })
}

fn history(d: &Daemon, img: &Image) -> serde_json::Value {
    let cfg = config_json(img);
    let layers = img.head.chain_ids();
    let mut layer_iter = layers.iter();
    let mut rows = Vec::new();
    let entries = cfg["history"].as_array().cloned().unwrap_or_default();
    for h in &entries {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_iter
                .next()
                .and_then(|c| d.layers.get(c))
                .map(|l| l.size)
                .unwrap_or(0)
        };
        rows.push(serde_json::json!({
            "Id": "<missing>",
            "Created": h["created"].as_str().and_then(rfc3339_secs).unwrap_or(0),
            "CreatedBy": h["created_by"].as_str().unwrap_or(""),
            "Tags": serde_json::Value::Null,
            "Size": size,
            "Comment": h["comment"].as_str().unwrap_or(""),
        }));
    }
    if rows.is_empty() {
        rows.push(serde_json::json!({ "Id": "<missing>", "Created": 0, "CreatedBy": "", "Tags": null, "Size": chain_size(d, &layers), "Comment": "" }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["Id"] = serde_json::Value::String(img.id.to_string());
        let tags = repo_tags(d, img);
        if !tags.is_empty() {
            top["Tags"] = serde_json::json!(tags);
        }
    }
    serde_json::Value::Array(rows)
}

fn find(d: &Daemon, name: &str) -> Result<Image, ApiError> {
    d.images.get(name).map_err(|e| match e {
        strata_graph::image::ImageError::NotFound(_) => {
            ApiError::not_found(format!("No such image: {name}"))
        }
        other => other.into(),
    })
}

/// As `find`, naming a missing image as dockerd does for tag and rmi (`nosuch:latest`).
pub(crate) fn find_normalized(d: &Daemon, name: &str) -> Result<Image, ApiError> {
    find(d, name).map_err(|e| match Reference::parse_tagged(name) {
        Ok(r) if e.status == StatusCode::NOT_FOUND && !name.starts_with("sha256:") => {
            ApiError::not_found(format!("No such image: {}", r.familiar()))
        }
        _ => e,
    })
}

pub async fn route_named(
    d: Arc<Daemon>,
    method: &Method,
    rest: &str,
    q: &Query,
) -> Result<Resp, ApiError> {
    let rest = decode_path(rest);
    let (name, action) = match rest.rsplit_once('/') {
        Some((n, a))
            if matches!(a, "json" | "history" | "tag" | "get" | "push")
                && method != Method::DELETE =>
        {
            (n.to_string(), a)
        }
        _ => (rest.clone(), ""),
    };
    match (method, action) {
        (&Method::GET, "json") => Ok(json(StatusCode::OK, &inspect(&d, &find(&d, &name)?))),
        (&Method::GET, "history") => Ok(json(StatusCode::OK, &history(&d, &find(&d, &name)?))),
        (&Method::GET, "get") => save(&d, vec![name]).await,
        (&Method::POST, "tag") => {
            let img = find_normalized(&d, &name)?;
            let repo = q.get("repo").unwrap_or("");
            let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
            let r = format!("{repo}:{tag}");
            Reference::parse_tagged(&r).map_err(|e| ApiError::bad_request(e.to_string()))?;
            d.images.tag(&img.id, &r)?;
            let name = Reference::parse_tagged(&r)
                .map(|x| x.familiar())
                .unwrap_or(r.clone());
            d.events.emit(
                "image",
                "tag",
                &img.id.to_string(),
                serde_json::json!({ "name": name }),
            );
            Ok(crate::body::text(
                StatusCode::CREATED,
                "text/plain; charset=utf-8",
                "",
            ))
        }
        (&Method::DELETE, "") => remove(&d, &name, q.bool("force")).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `docker rmi`, with dockerd's rules: a reference is untagged, and the image deleted with
/// its last reference; an ID with several references, or an image a container uses, is
/// refused without `force`; an image a running container uses is refused even with it.
async fn remove(d: &Arc<Daemon>, name: &str, force: bool) -> Result<Resp, ApiError> {
    let img = find_normalized(d, name)?;
    let id12 = &img.id.hex()[..12];
    let refs = d.images.references(&img.id);
    let users = crate::containers::using_image(d, &img.id.to_string());
    let mut out = Vec::new();
    let mut untag = |r: &Reference| -> Result<(), ApiError> {
        d.images.untag(&r.to_string())?;
        out.push(serde_json::json!({ "Untagged": r.familiar() }));
        d.events.emit(
            "image",
            "untag",
            &img.id.to_string(),
            serde_json::json!({ "name": r.familiar() }),
        );
        Ok(())
    };
    let by_reference = !strata_graph::image::store::is_id_name(name, &img.id);
    // As dockerd: a tag and the digests of the same repository count as one reference.
    let repos: std::collections::BTreeSet<String> = refs.iter().map(|r| r.name()).collect();
    let single = repos.len() <= 1;
    if let Some(running) = users.iter().find(|c| c.state.running) {
        if !by_reference || single {
            return Err(ApiError::conflict(format!(
                "conflict: unable to delete {id12} (cannot be forced) - image is being used by running container {}",
                &running.id[..12]
            )));
        }
    }
    if by_reference {
        let r = Reference::parse_tagged(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !force && refs.len() <= 1 {
            if let Some(c) = users.first() {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {id12}",
                    &c.id[..12]
                )));
            }
        }
        untag(&r)?;
        // A tag gone and no other tag of its repository left: its digests go too.
        if r.tag.is_some() {
            let rest = d.images.references(&img.id);
            let tag_left = rest.iter().any(|x| x.tag.is_some() && x.name() == r.name());
            if !tag_left {
                for x in rest
                    .iter()
                    .filter(|x| x.digest.is_some() && x.tag.is_none() && x.name() == r.name())
                {
                    untag(x)?;
                }
            }
        }
        if !d.images.references(&img.id).is_empty() {
            return Ok(json(StatusCode::OK, &serde_json::Value::Array(out)));
        }
    } else {
        if !force {
            if !single {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {id12} (must be forced) - image is referenced in multiple repositories"
                )));
            }
            if let Some(c) = users.first() {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {id12} (must be forced) - image is being used by stopped container {}",
                    &c.id[..12]
                )));
            }
        }
        for r in &refs {
            untag(r)?;
        }
    }
    delete_image(d, &img, &mut out).await?;
    Ok(json(StatusCode::OK, &serde_json::Value::Array(out)))
}

/// Deletes an image (its references already gone): records `Deleted` for it and for each
/// layer that went with it, emits the event; returns the bytes those layers held.
async fn delete_image(
    d: &Arc<Daemon>,
    img: &Image,
    records: &mut Vec<serde_json::Value>,
) -> Result<u64, ApiError> {
    let sizes: std::collections::HashMap<ChainId, u64> = d
        .layers
        .list()
        .into_iter()
        .map(|l| (l.chain_id, l.size))
        .collect();
    let images = d.images.clone();
    let id = img.id;
    let removed = tokio::task::spawn_blocking(move || images.delete(&id)).await??;
    records.push(serde_json::json!({ "Deleted": img.id.to_string() }));
    d.events.emit(
        "image",
        "delete",
        &img.id.to_string(),
        serde_json::json!({ "name": img.id.to_string() }),
    );
    let mut reclaimed = 0;
    for c in removed {
        reclaimed += sizes.get(&c).copied().unwrap_or(0);
        records.push(serde_json::json!({ "Deleted": c.to_string() }));
    }
    Ok(reclaimed)
}

/// `POST /images/prune`: dangling images (or, with `dangling=false`, every image no
/// container uses), optionally older than `until` or matching labels.
pub async fn prune(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = crate::events::parse_filters(q.get("filters"))?;
    let mut dangling_only = true;
    let mut until = None;
    for (k, vals) in &filters {
        match k.as_str() {
            "dangling" => {
                dangling_only = !matches!(vals.first().map(String::as_str), Some("false" | "0"))
            }
            "until" => {
                until = vals
                    .first()
                    .map(|v| crate::containers::parse_until(v))
                    .transpose()?
            }
            "label" | "label!" => {}
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    let used: std::collections::HashSet<String> =
        d.containers.list().into_iter().map(|c| c.image).collect();
    let mut records = Vec::new();
    let mut reclaimed = 0u64;
    for img in d.images.list() {
        let refs = d.images.references(&img.id);
        if used.contains(&img.id.to_string()) || (dangling_only && !refs.is_empty()) {
            continue;
        }
        if until.is_some_and(|u| created_secs(&img) >= u) {
            continue;
        }
        let labels = image_labels(&img);
        let ok = filters.iter().all(|(k, vals)| match k.as_str() {
            "label" => vals.iter().all(|v| label_filter(&labels, v)),
            "label!" => vals.iter().all(|v| !label_filter(&labels, v)),
            _ => true,
        });
        if !ok {
            continue;
        }
        for r in &refs {
            d.images.untag(&r.to_string())?;
            records.push(serde_json::json!({ "Untagged": r.familiar() }));
            d.events.emit(
                "image",
                "untag",
                &img.id.to_string(),
                serde_json::json!({ "name": r.familiar() }),
            );
        }
        reclaimed += delete_image(d, &img, &mut records).await?;
    }
    d.events.emit(
        "image",
        "prune",
        "",
        serde_json::json!({ "reclaimed": reclaimed.to_string() }),
    );
    let records = if records.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(records)
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "ImagesDeleted": records, "SpaceReclaimed": reclaimed }),
    ))
}

/// A text progress bar as dockerd's JSON messages carry one (`[====>    ] 1.2MB/3MB`).
pub(crate) fn progress_bar(current: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (current.min(total) * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    let bar: String = (0..width)
        .map(|i| {
            if i + 1 < filled || (filled == width && i + 1 == width) {
                '='
            } else if i + 1 == filled {
                '>'
            } else {
                ' '
            }
        })
        .collect();
    let mb = |b: u64| {
        if b >= 1_000_000 {
            format!("{:.3}MB", b as f64 / 1e6)
        } else {
            format!("{:.2}kB", b as f64 / 1e3)
        }
    };
    format!("[{bar}]  {}/{}", mb(current), mb(total))
}

/// `POST /images/load`: a JSON message stream, as dockerd writes it: per-layer progress
/// (unless `quiet`), then the loaded images; an error arrives in the stream.
pub async fn load(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    use strata_graph::image::LoadProgress;
    let quiet = q.bool("quiet");
    let reader = BodyReader::new(req.into_body());
    let images = d.images.clone();
    let daemon = d.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(64);
    tokio::task::spawn_blocking(move || {
        let send = |v: serde_json::Value| {
            let _ = tx.blocking_send(Ok(bytes::Bytes::from(format!("{v}\n"))));
        };
        let last = std::sync::Mutex::new((String::new(), 0u64));
        let cb = |p: LoadProgress<'_>| {
            if let LoadProgress::Layer {
                diff_id,
                current,
                total,
            } = p
            {
                let id = diff_id.hex()[..12].to_string();
                let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
                // At most one message per MB, plus the first and the last.
                if l.0 == id && current != total && current < l.1 + (1 << 20) && current != 0 {
                    return;
                }
                *l = (id.clone(), current);
                send(serde_json::json!({
                    "status": "Loading layer",
                    "progressDetail": { "current": current, "total": total },
                    "progress": progress_bar(current, total),
                    "id": id,
                }));
            }
        };
        let progress: Option<&(dyn Fn(LoadProgress<'_>) + Sync)> =
            if quiet { None } else { Some(&cb) };
        match images.load(reader, progress) {
            Ok(loaded) => {
                for l in loaded {
                    let name = l.tags.first().cloned().unwrap_or_else(|| l.id.to_string());
                    daemon.events.emit(
                        "image",
                        "load",
                        &l.id.to_string(),
                        serde_json::json!({ "name": name }),
                    );
                    if l.tags.is_empty() {
                        send(
                            serde_json::json!({ "stream": format!("Loaded image ID: {}\n", l.id) }),
                        );
                    }
                    for t in l.tags {
                        send(serde_json::json!({ "stream": format!("Loaded image: {t}\n") }));
                    }
                }
            }
            Err(e) => {
                let m = e.to_string();
                tracing::warn!("load: {m}");
                send(serde_json::json!({ "errorDetail": { "message": m }, "error": m }));
            }
        }
    });
    Ok(stream(StatusCode::OK, "application/json", rx))
}

pub async fn save(d: &Arc<Daemon>, names: Vec<String>) -> Result<Resp, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    for n in &names {
        let img = find(d, n)?;
        d.events.emit(
            "image",
            "save",
            &img.id.to_string(),
            serde_json::json!({ "name": n }),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let images = d.images.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let err_tx = tx.clone();
        if let Err(e) = images.save(&refs, ChannelWriter(tx)) {
            tracing::error!("save: {e}");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok(stream(StatusCode::OK, "application/x-tar", rx))
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_bars() {
        assert!(super::progress_bar(0, 100).starts_with(&format!("[{}]", " ".repeat(50))));
        assert!(super::progress_bar(50, 100).starts_with(&format!(
            "[{}>{}]",
            "=".repeat(24),
            " ".repeat(25)
        )));
        assert!(super::progress_bar(2_000_000, 2_000_000).ends_with("2.000MB/2.000MB"));
    }
}
