//! `GET /system/df`: what images, containers and volumes take.
//!
//! Image sizes come from the layer sizes recorded at commit, and container sizes from the
//! layer store's per-layer counters (measured once after a container layer's last unmount):
//! nothing here walks a layer's tree, except the layers of running containers, whose counter
//! is not known while they are mounted. Volumes are measured (their content is written by
//! containers directly, with nothing to count it).

use crate::body::{json, Query, Resp};
use crate::{ApiError, Daemon};

use hyper::StatusCode;
use serde_json::{json as j, Value};
use std::collections::HashMap;
use std::sync::Arc;
use strata_graph::ChainId;

/// Which parts a request asks for (`type=`, API 1.42 and later; all of them by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    images: bool,
    containers: bool,
    volumes: bool,
    build_cache: bool,
}

impl Wanted {
    fn from_query(q: &Query, version: (u32, u32)) -> Result<Wanted, ApiError> {
        let types = q.all("type");
        if types.is_empty() || version < (1, 42) {
            return Ok(Wanted {
                images: true,
                containers: true,
                volumes: true,
                build_cache: true,
            });
        }
        let mut w = Wanted {
            images: false,
            containers: false,
            volumes: false,
            build_cache: false,
        };
        for t in types {
            match t.as_str() {
                "image" => w.images = true,
                "container" => w.containers = true,
                "volume" => w.volumes = true,
                "build-cache" => w.build_cache = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown object type: {other}"
                    )))
                }
            }
        }
        Ok(w)
    }
}

/// `GET /system/df`.
pub async fn system_df(d: &Arc<Daemon>, q: &Query, version: (u32, u32)) -> Result<Resp, ApiError> {
    let want = Wanted::from_query(q, version)?;
    let daemon = d.clone();
    let body = tokio::task::spawn_blocking(move || usage(&daemon, want)).await?;
    Ok(json(StatusCode::OK, &body))
}

/// The whole answer; blocking (running containers' layers are measured).
fn usage(d: &Daemon, want: Wanted) -> Value {
    let layers_size: u64 = d.layers.list().iter().map(|l| l.size).sum();
    let images = want.images.then(|| Value::Array(images(d)));
    let containers = want
        .containers
        .then(|| Value::Array(crate::containers::df_rows(d)));
    let volumes = want
        .volumes
        .then(|| Value::Array(crate::volumes::df_rows(d)));
    j!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": if want.build_cache { j!([]) } else { Value::Null },
    })
}

/// Every image with `SharedSize` (the size of its layers that other images use too) and
/// `Containers` (how many containers use it), as dockerd counts them.
fn images(d: &Daemon) -> Vec<Value> {
    let images = d.images.list();
    let mut users: HashMap<String, usize> = HashMap::new();
    for c in d.containers.list() {
        *users.entry(c.image).or_default() += 1;
    }
    let chains: Vec<Vec<ChainId>> = images.iter().map(|i| i.head.chain_ids()).collect();
    let mut layer_users: HashMap<ChainId, usize> = HashMap::new();
    for chain in &chains {
        for c in chain {
            *layer_users.entry(*c).or_default() += 1;
        }
    }
    images
        .iter()
        .zip(&chains)
        .map(|(img, chain)| {
            let mut v = crate::images::summary(d, img, chain, crate::images::repo_tags(d, img));
            let shared: u64 = chain
                .iter()
                .filter(|c| layer_users.get(*c).is_some_and(|n| *n > 1))
                .filter_map(|c| d.layers.get(c))
                .map(|l| l.size)
                .sum();
            let id = img.id.to_string();
            v["SharedSize"] = j!(shared);
            v["Containers"] = j!(users.get(&id).copied().unwrap_or(0));
            v
        })
        .collect()
}
