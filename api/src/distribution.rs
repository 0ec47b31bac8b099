//! Registry endpoints: pull (`POST /images/create?fromImage=`), push
//! (`POST /images/{name}/push`), login (`POST /auth`) and search (`GET /images/search`).
//! Pull and push answer with dockerd's JSON message stream; as dockerd, an error before the
//! first message is an HTTP error with its status, and one after it arrives in the stream.

use crate::body::{self, stream, Query, Resp};
use crate::{ApiError, Daemon};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::sync::Arc;
use strata_graph::image::Reference;
use strata_registry::credentials::AuthConfig;
use strata_registry::platform::Platform;
use strata_registry::progress::Progress;
use strata_registry::service::DistributionError;

/// The `X-Registry-Auth` of a request (anonymous when missing or unreadable).
fn auth_of(req: &Request<Incoming>) -> AuthConfig {
    req.headers()
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok())
        .map(AuthConfig::from_header)
        .unwrap_or_default()
}

fn api_error(e: &DistributionError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    ApiError::new(status, e.to_string())
}

/// A progress message as dockerd's JSON.
pub fn progress_json(p: &Progress) -> serde_json::Value {
    match p {
        Progress::Status {
            id: Some(id),
            status,
        } if status.starts_with("Pulling from") => {
            serde_json::json!({ "status": status, "id": id })
        }
        Progress::Status {
            id: Some(id),
            status,
        } => {
            serde_json::json!({ "status": status, "progressDetail": {}, "id": id })
        }
        Progress::Status { id: None, status } => serde_json::json!({ "status": status }),
        Progress::Bytes {
            id,
            status,
            current,
            total,
        } => serde_json::json!({
            "status": status,
            "progressDetail": { "current": current, "total": total },
            "progress": crate::images::progress_bar(*current, *total),
            "id": id,
        }),
        Progress::Aux(v) => serde_json::json!({ "progressDetail": {}, "aux": v }),
    }
}

/// Runs `work` on the blocking pool with a progress sink; answers with the stream once the
/// first message comes, or with the error if it fails before any.
async fn streamed<T: Send + 'static>(
    work: impl FnOnce(&(dyn Fn(Progress) + Sync)) -> Result<T, DistributionError> + Send + 'static,
    done: impl FnOnce(&T, &(dyn Fn(serde_json::Value) + Sync)) + Send + 'static,
) -> Result<Resp, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(256);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Option<ApiError>>();
    let first_tx = std::sync::Mutex::new(Some(first_tx));
    tokio::task::spawn_blocking(move || {
        let started = || {
            if let Some(t) = first_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = t.send(None);
            }
        };
        let send = |v: serde_json::Value| {
            started();
            let _ = tx.blocking_send(Ok(Bytes::from(format!("{v}\n"))));
        };
        let sink = |p: Progress| send(progress_json(&p));
        match work(&sink) {
            Ok(v) => {
                done(&v, &send);
                started();
            }
            Err(e) => {
                let m = e.to_string();
                tracing::warn!("{m}");
                let early = first_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
                match early {
                    Some(t) => {
                        let _ = t.send(Some(api_error(&e)));
                    }
                    None => {
                        send(serde_json::json!({ "errorDetail": { "message": m }, "error": m }))
                    }
                }
            }
        }
    });
    match first_rx.await {
        Ok(Some(err)) => Err(err),
        _ => Ok(stream(StatusCode::OK, "application/json", rx)),
    }
}

/// `POST /images/create?fromImage=NAME[&tag=TAG|DIGEST][&platform=P]`: a pull. An empty
/// tag with an untagged name pulls every tag, as dockerd does (`docker pull --all-tags`).
pub async fn pull(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    let from = q.get("fromImage").unwrap_or("");
    let tag = q.get("tag").unwrap_or("");
    let mut r = Reference::parse(from).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !tag.is_empty() {
        match tag.parse::<strata_graph::Digest>() {
            Ok(dg) if tag.starts_with("sha256:") => {
                r.digest = Some(dg);
                r.tag = None;
            }
            _ => {
                r = Reference::parse(&format!("{}:{tag}", r.name()))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
        }
    }
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(Platform::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    let auth = auth_of(&req);
    let all_tags = r.tag.is_none() && r.digest.is_none();
    let dist = d.distribution.clone();
    let daemon = d.clone();
    streamed(
        move |sink| {
            if all_tags {
                dist.pull_all_tags(&r, platform.as_ref(), &auth, sink)
            } else {
                dist.pull(&r, platform.as_ref(), &auth, sink)
                    .map(|p| vec![p])
            }
        },
        move |pulled, _| {
            for p in pulled {
                daemon.events.emit(
                    "image",
                    "pull",
                    &p.reference.familiar(),
                    serde_json::json!({ "name": p.reference.familiar() }),
                );
            }
        },
    )
    .await
}

/// `POST /images/{name}/push[?tag=TAG]`.
pub async fn push(
    d: &Arc<Daemon>,
    req: Request<Incoming>,
    name: &str,
    q: &Query,
) -> Result<Resp, ApiError> {
    let mut r = Reference::parse(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(t) = q.get("tag").filter(|t| !t.is_empty()) {
        r = Reference::parse(&format!("{}:{t}", r.name()))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // As dockerd: without the header, the credentials are read from the body (the old way),
    // and an empty body is refused.
    let auth = match req.headers().get("X-Registry-Auth") {
        Some(_) => auth_of(&req),
        None => {
            let v = body::read_json(req.into_body(), 1 << 20)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request("Bad parameters and missing X-Registry-Auth: EOF")
                })?;
            serde_json::from_value(v).map_err(|e| {
                ApiError::bad_request(format!("Bad parameters and missing X-Registry-Auth: {e}"))
            })?
        }
    };
    let dist = d.distribution.clone();
    let daemon = d.clone();
    let repo = r.familiar_name();
    streamed(
        move |sink| dist.push(&r, &auth, sink),
        move |pushed, _| {
            for p in pushed {
                let name = format!("{repo}:{}", p.tag);
                daemon
                    .events
                    .emit("image", "push", &name, serde_json::json!({ "name": name }));
            }
        },
    )
    .await
}

/// `POST /auth`: checks credentials with the registry.
pub async fn login(d: &Arc<Daemon>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let v = body::read_json(req.into_body(), 1 << 20)
        .await?
        .unwrap_or(serde_json::Value::Null);
    let auth: AuthConfig = serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request(format!("invalid auth configuration: {e}")))?;
    let dist = d.distribution.clone();
    let status = tokio::task::spawn_blocking(move || dist.login(&auth))
        .await?
        .map_err(|e| api_error(&e))?;
    Ok(body::json(
        StatusCode::OK,
        &serde_json::json!({ "Status": status, "IdentityToken": "" }),
    ))
}

/// `GET /images/search?term=&limit=&filters=`.
pub async fn search(d: &Arc<Daemon>, req: Request<Incoming>, q: &Query) -> Result<Resp, ApiError> {
    let term = q.get("term").unwrap_or("").to_string();
    let limit: usize = match q.get("limit").filter(|l| !l.is_empty()) {
        None => 25,
        Some(l) => match l.parse() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Limit {l} is outside the range of [1, 100]"
                )))
            }
        },
    };
    let filters = crate::events::parse_filters(q.get("filters"))?;
    let mut official: Option<bool> = None;
    let mut automated: Option<bool> = None;
    let mut stars: u64 = 0;
    for (k, vals) in &filters {
        for v in vals {
            let flag = || match v.as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::bad_request(format!("invalid filter '{k}={v}'"))),
            };
            match k.as_str() {
                "is-official" => official = Some(flag()?),
                "is-automated" => automated = Some(flag()?),
                "stars" => {
                    stars = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid filter 'stars={v}'")))?
                }
                other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
            }
        }
    }
    let auth = auth_of(&req);
    let dist = d.distribution.clone();
    let found = tokio::task::spawn_blocking(move || dist.search(&term, limit, &auth))
        .await?
        .map_err(|e| api_error(&e))?;
    let out: Vec<serde_json::Value> = found
        .into_iter()
        .filter(|r| official.is_none_or(|o| r.is_official == o))
        .filter(|r| automated.is_none_or(|a| r.is_automated == a))
        .filter(|r| r.star_count >= stars)
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    Ok(body::json(StatusCode::OK, &serde_json::Value::Array(out)))
}
