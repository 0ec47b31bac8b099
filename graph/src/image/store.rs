//! The image store: image configs, byte for byte as they came (an image's ID is the sha256 of
//! its config), the references that name them, and one layer-store reference per image on the
//! top layer of its chain.
//!
//! ```text
//! <root>/content/sha256/<hex>   config bytes
//! <root>/repositories.json      {"refs": {"docker.io/library/busybox:latest": "sha256:…"}}
//! ```

use super::reference::{Reference, ReferenceError};
use crate::digest::{chain_id, ChainId, DiffId, Digest};
use crate::fsutil::{atomic_write, mkdir_all};
use crate::layer::{LayerError, LayerStore};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("invalid image config: {0}")]
    BadConfig(String),
    #[error("{0}")]
    BadArchive(String),
    #[error(
        "image config refers to layer {diff_id} (chain {chain}), which is not in the layer store"
    )]
    MissingLayer { diff_id: DiffId, chain: ChainId },
    #[error("{0} is ambiguous: more than one image ID starts with it")]
    Ambiguous(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("image store: {context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// The parts of an image config the store itself needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfigHead {
    pub rootfs: RootFs,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<DiffId>,
}

impl ConfigHead {
    /// Parses and checks a config.
    pub fn parse(config: &[u8]) -> Result<ConfigHead, ImageError> {
        let head: ConfigHead =
            serde_json::from_slice(config).map_err(|e| ImageError::BadConfig(e.to_string()))?;
        if head.rootfs.kind != "layers" {
            return Err(ImageError::BadConfig(format!(
                "rootfs type {:?}, expected \"layers\"",
                head.rootfs.kind
            )));
        }
        Ok(head)
    }

    /// The chainID of the top layer (`None` for an image without layers).
    pub fn top_chain(&self) -> Option<ChainId> {
        self.chain_ids().pop()
    }

    /// The chainID of each of its layers, bottom first.
    pub fn chain_ids(&self) -> Vec<ChainId> {
        let mut out: Vec<ChainId> = Vec::with_capacity(self.rootfs.diff_ids.len());
        for d in &self.rootfs.diff_ids {
            out.push(chain_id(out.last(), d));
        }
        out
    }
}

/// Whether `name` names image `id` by its ID (whole, `sha256:`-prefixed, or a prefix of the
/// hex) rather than by a reference.
pub fn is_id_name(name: &str, id: &Digest) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    !hex.is_empty()
        && hex
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && id.hex().starts_with(hex)
}

/// An image.
#[derive(Debug, Clone)]
pub struct Image {
    /// sha256 of the config bytes.
    pub id: Digest,
    pub config: Arc<Vec<u8>>,
    pub head: ConfigHead,
    pub top_layer: Option<ChainId>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct RefsFile {
    refs: BTreeMap<String, Digest>,
}

#[derive(Default)]
struct State {
    images: HashMap<Digest, Image>,
    refs: BTreeMap<String, Digest>,
}

/// Images over a layer store.
pub struct ImageStore {
    root: PathBuf,
    layers: Arc<LayerStore>,
    state: Mutex<State>,
}

impl ImageStore {
    /// Opens the store; returns what it found wrong (and left out).
    ///
    /// Images hold the only long-lived references to image layers, so opening also rebuilds
    /// the layer store's reference counts from the images: layers left behind by a load or a
    /// pull that was interrupted are removed. Open the image store before anything registers.
    pub fn open(
        root: &Path,
        layers: Arc<LayerStore>,
    ) -> Result<(ImageStore, Vec<String>), ImageError> {
        let content = root.join("content/sha256");
        mkdir_all(&content, 0o700).map_err(io_ctx("creating the image store"))?;
        let tmp = root.join("tmp");
        crate::fsutil::remove_tree(&tmp).map_err(io_ctx("removing interrupted loads"))?;
        mkdir_all(&tmp, 0o700).map_err(io_ctx("creating the image store"))?;
        let mut problems = Vec::new();
        let mut st = State::default();
        for e in std::fs::read_dir(&content).map_err(io_ctx("reading images"))? {
            let e = e.map_err(io_ctx("reading images"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                let _ = std::fs::remove_file(e.path()); // an interrupted atomic write
                continue;
            }
            let bytes = std::fs::read(e.path()).map_err(io_ctx(format!("reading image {name}")))?;
            let id = Digest::of(&bytes);
            if id.hex() != name {
                problems.push(format!(
                    "image {name}: content does not match its digest; left out"
                ));
                continue;
            }
            let head = match ConfigHead::parse(&bytes) {
                Ok(h) => h,
                Err(err) => {
                    problems.push(format!("image {name}: {err}; left out"));
                    continue;
                }
            };
            let top = head.top_chain();
            if let Some(t) = &top {
                if layers.get(t).is_none() {
                    problems.push(format!(
                        "image {name}: its top layer {t} is missing; left out"
                    ));
                    continue;
                }
            }
            st.images.insert(
                id,
                Image {
                    id,
                    config: Arc::new(bytes),
                    head,
                    top_layer: top,
                },
            );
        }
        let refs_path = root.join("repositories.json");
        if refs_path.exists() {
            let f: RefsFile =
                crate::layer::record::read_json(&refs_path).map_err(|e| ImageError::Io {
                    context: "reading repositories.json".into(),
                    source: io::Error::other(e),
                })?;
            for (r, id) in f.refs {
                if st.images.contains_key(&id) {
                    st.refs.insert(r, id);
                } else {
                    problems.push(format!("reference {r} names missing image {id}; dropped"));
                }
            }
        }
        let damaged = problems.iter().any(|p| p.starts_with("image "));
        if damaged {
            // Never delete data on doubt: a damaged image's layers cannot be told apart from
            // leftovers, so the counts stay as they are until the store is repaired.
            problems
                .push("layer reference counts were not rebuilt because images are damaged".into());
        } else {
            let mut expected: HashMap<ChainId, u64> = HashMap::new();
            for img in st.images.values() {
                if let Some(t) = img.top_layer {
                    *expected.entry(t).or_default() += 1;
                }
            }
            let rebuilt = layers.rebuild_references(&expected)?;
            for (c, had, now) in &rebuilt.changed {
                tracing::warn!(layer = %c, had, now, "layer reference count rebuilt");
            }
            for c in rebuilt.removed {
                problems.push(format!(
                    "layer {c} belonged to no image (an interrupted load or pull); removed"
                ));
            }
        }
        Ok((
            ImageStore {
                root: root.to_path_buf(),
                layers,
                state: Mutex::new(st),
            },
            problems,
        ))
    }

    /// The layer store under the images.
    pub fn layers(&self) -> &Arc<LayerStore> {
        &self.layers
    }

    /// Scratch space for loads, emptied at open.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save_refs(&self, st: &State) -> Result<(), ImageError> {
        let f = RefsFile {
            refs: st.refs.clone(),
        };
        let data = serde_json::to_vec_pretty(&f)
            .map_err(|e| io_ctx("encoding references")(io::Error::other(e)))?;
        atomic_write(&self.root.join("repositories.json"), &data)
            .map_err(io_ctx("writing repositories.json"))
    }

    /// Adds an image from its config; its layers must already be in the layer store. Adding an
    /// image that exists returns it unchanged.
    pub fn create(&self, config: &[u8]) -> Result<Image, ImageError> {
        let head = ConfigHead::parse(config)?;
        let id = Digest::of(config);
        let mut st = self.state();
        if let Some(img) = st.images.get(&id) {
            return Ok(img.clone());
        }
        let chains = head.chain_ids();
        for (d, c) in head.rootfs.diff_ids.iter().zip(&chains) {
            if self.layers.get(c).is_none() {
                return Err(ImageError::MissingLayer {
                    diff_id: *d,
                    chain: *c,
                });
            }
        }
        let top = chains.last().copied();
        if let Some(t) = &top {
            self.layers.retain(t)?;
        }
        if let Err(e) = atomic_write(&self.root.join("content/sha256").join(id.hex()), config) {
            if let Some(t) = &top {
                let _ = self.layers.release(t);
            }
            return Err(io_ctx("writing an image config")(e));
        }
        let img = Image {
            id,
            config: Arc::new(config.to_vec()),
            head,
            top_layer: top,
        };
        st.images.insert(id, img.clone());
        Ok(img)
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `localhost:5000/app@sha256:…`),
    /// full ID (`sha256:…`), or unique ID prefix.
    pub fn get(&self, name: &str) -> Result<Image, ImageError> {
        let st = self.state();
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty()
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            let found: Vec<&Image> = st
                .images
                .values()
                .filter(|i| i.id.hex().starts_with(hex))
                .collect();
            match found.len() {
                1 => return Ok(found[0].clone()),
                n if n > 1 => return Err(ImageError::Ambiguous(name.into())),
                _ if name.starts_with("sha256:") => return Err(ImageError::NotFound(name.into())),
                _ => {}
            }
        }
        let r = Reference::parse_tagged(name).map_err(|_| ImageError::NotFound(name.into()))?;
        st.refs
            .get(&r.to_string())
            .and_then(|id| st.images.get(id))
            .cloned()
            .ok_or_else(|| ImageError::NotFound(name.into()))
    }

    /// Points `reference` (tag added when missing) at image `id`; returns the image it named
    /// before, if another.
    pub fn tag(&self, id: &Digest, reference: &str) -> Result<Option<Digest>, ImageError> {
        let r = Reference::parse_tagged(reference)?;
        let mut st = self.state();
        if !st.images.contains_key(id) {
            return Err(ImageError::NotFound(id.to_string()));
        }
        let old = st.refs.insert(r.to_string(), *id).filter(|o| o != id);
        self.save_refs(&st)?;
        Ok(old)
    }

    /// Removes a reference; returns the image it named.
    pub fn untag(&self, reference: &str) -> Result<Digest, ImageError> {
        let r = Reference::parse_tagged(reference)?;
        let mut st = self.state();
        let id = st
            .refs
            .remove(&r.to_string())
            .ok_or_else(|| ImageError::NotFound(reference.into()))?;
        self.save_refs(&st)?;
        Ok(id)
    }

    /// The references naming an image.
    pub fn references(&self, id: &Digest) -> Vec<Reference> {
        self.state()
            .refs
            .iter()
            .filter(|(_, i)| *i == id)
            .filter_map(|(r, _)| Reference::parse(r).ok())
            .collect()
    }

    /// All images.
    pub fn list(&self) -> Vec<Image> {
        let mut v: Vec<Image> = self.state().images.values().cloned().collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// Deletes an image and every reference to it; releases its layers (returns those removed).
    /// Whether deleting is allowed (references, containers) is the caller's decision.
    pub fn delete(&self, id: &Digest) -> Result<Vec<ChainId>, ImageError> {
        let mut st = self.state();
        let img = st
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| ImageError::NotFound(id.to_string()))?;
        st.refs.retain(|_, i| i != id);
        self.save_refs(&st)?;
        std::fs::remove_file(self.root.join("content/sha256").join(id.hex()))
            .map_err(io_ctx("removing an image config"))?;
        st.images.remove(id);
        drop(st);
        match &img.top_layer {
            Some(t) => Ok(self.layers.release(t)?),
            None => Ok(Vec::new()),
        }
    }
}
