//! `/networks/...`: the network records (`strata-netd`). Only the predefined `host` and
//! `none` exist until container networking (issue #6); creating, connecting and
//! disconnecting answer 501 and say so.

use crate::body::{json, Query, Resp};
use crate::events::parse_filters;
use crate::{ApiError, Daemon};
use hyper::{Method, StatusCode};
use serde_json::{json as j, Value};
use std::sync::Arc;
use strata_netd::{Network, NetworkError};

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        let status = match &e {
            NetworkError::NotFound(_) => StatusCode::NOT_FOUND,
            NetworkError::Predefined(_) => StatusCode::FORBIDDEN,
            NetworkError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            NetworkError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn matches(n: &Network, filters: &[(String, Vec<String>)]) -> Result<bool, ApiError> {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.contains(&n.driver),
            "scope" => vals.iter().any(|v| v == "local"),
            "type" => vals.iter().any(|v| match v.as_str() {
                "builtin" => n.predefined(),
                "custom" => !n.predefined(),
                _ => false,
            }),
            "label" => vals.iter().all(|f| {
                crate::events::label_matches(f, |k| n.labels.get(k).map(|s| Some(s.as_str())))
            }),
            // No container is attached to a network yet.
            "dangling" => vals.iter().any(|v| v == "true" || v == "1") != n.predefined(),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `GET /networks`.
pub fn list(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let filters = parse_filters(q.get("filters"))?;
    let store = d.networks.read().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::new();
    for n in store.list() {
        if matches(&n, &filters)? {
            out.push(n.json());
        }
    }
    Ok(json(StatusCode::OK, &Value::Array(out)))
}

/// `/networks/{id}` and its actions.
pub fn route_named(d: &Arc<Daemon>, method: &Method, rest: &str) -> Result<Resp, ApiError> {
    let (key, action) = rest.split_once('/').unwrap_or((rest, ""));
    let key = crate::body::decode_path(key);
    let store = d.networks.read().unwrap_or_else(|p| p.into_inner());
    match (method, action) {
        (&Method::GET, "") => Ok(json(StatusCode::OK, &store.get(&key)?.json())),
        (&Method::DELETE, "") => {
            store.remove(&key)?;
            Ok(crate::body::text(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        (&Method::POST, "connect" | "disconnect") => {
            store.get(&key)?;
            Err(NetworkError::NotImplemented("connecting containers to networks").into())
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// `POST /networks/create`.
pub fn create() -> Result<Resp, ApiError> {
    Err(NetworkError::NotImplemented("creating networks").into())
}

/// `POST /networks/prune`: nothing user-defined to remove yet.
pub fn prune(d: &Arc<Daemon>) -> Result<Resp, ApiError> {
    d.events
        .emit("network", "prune", "", j!({ "reclaimed": "0" }));
    Ok(json(StatusCode::OK, &j!({ "NetworksDeleted": null })))
}
