//! `GET /storage/check` (a Strata extension): `strata storage check` through the running
//! daemon, read-only, over the daemon's own stores.

use crate::body::{json, Query, Resp};
use crate::error::ApiError;
use crate::Daemon;
use hyper::StatusCode;
use std::sync::Arc;
use strata_storage_ops::{CheckOptions, ContainerFacts, Target};

/// `GET /storage/check?full=1&sample=N`: the check's report as JSON.
pub async fn check(d: &Arc<Daemon>, q: &Query) -> Result<Resp, ApiError> {
    let mut o = CheckOptions {
        full: q.bool("full"),
        ..CheckOptions::default()
    };
    if let Some(s) = q.get("sample") {
        o.sample = s.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid sample {s:?}: expected a number"))
        })?;
    }
    let daemon = d.clone();
    let report = tokio::task::spawn_blocking(move || {
        let containers: Vec<ContainerFacts> = daemon
            .containers
            .list()
            .iter()
            .map(|c| ContainerFacts {
                id: c.id.clone(),
                name: c.name.clone(),
                running: c.state.running || c.state.paused || c.state.restarting,
            })
            .collect();
        strata_storage_ops::check(
            &Target {
                data_root: &daemon.data_root,
                layers: &daemon.layers,
                containers: &containers,
                live: true,
            },
            &o,
            &|_, _| {},
        )
    })
    .await?;
    let v = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &v))
}
