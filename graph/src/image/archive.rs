//! `docker load` and `docker save` archives.
//!
//! Load reads the classic docker-archive layout (`manifest.json`) and OCI image layouts
//! (`index.json`, `blobs/`), including Docker 25's mix of both with symlinked layer paths. The
//! archive is spooled to a private directory first (its members come in any order), checked,
//! and each image committed only when all of its layers are: a failure, or a crash, leaves no
//! partial image. Save writes the classic layout with each layer's exact bytes (tar-split), so
//! layer digests survive a load → save round trip.

use super::store::{ConfigHead, ImageError, ImageStore};
use crate::archive::apply::normalize;
use crate::archive::tar::{Header, Kind, TarReader, TarWriter};
use crate::digest::{ChainId, Digest};
use crate::fsutil::{random_id, remove_tree};
use crate::layer::RegisterOpts;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Progress of a load.
#[derive(Debug, Clone, Copy)]
pub enum LoadProgress<'a> {
    /// A layer being unpacked: bytes done of its size in the archive.
    Layer {
        diff_id: &'a Digest,
        current: u64,
        total: u64,
    },
    /// An image committed.
    Loaded { id: &'a Digest },
}

/// One image a load brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub id: Digest,
    /// References tagged, in familiar form (`busybox:latest`).
    pub tags: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::BadArchive(msg.into())
}

/// An archive unpacked into a private directory; symlinks and hard links are kept as a map,
/// never created on disk, so nothing can point outside.
struct Spool {
    dir: PathBuf,
    links: HashMap<String, String>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = remove_tree(&self.dir);
    }
}

/// Joins a relative link target to the directory holding the link, resolving `..`, refusing
/// to climb out of the archive.
fn lexical_join(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

impl Spool {
    fn unpack<R: Read>(dir: PathBuf, input: R) -> Result<Spool, ImageError> {
        std::fs::create_dir_all(&dir).map_err(|e| ImageError::Io {
            context: "creating the load directory".into(),
            source: e,
        })?;
        let mut spool = Spool {
            dir,
            links: HashMap::new(),
        };
        let (_, dec) = crate::archive::decompress(input).map_err(|e| ImageError::Io {
            context: "reading the archive".into(),
            source: e,
        })?;
        let mut r = TarReader::new(io::BufReader::with_capacity(1 << 20, dec), false);
        let archive_err = |e: crate::archive::tar::TarError| bad(format!("invalid archive: {e}"));
        while let Some(e) = r.next_entry().map_err(archive_err)? {
            let path = normalize(&e.path, &e.display())
                .map_err(|x| bad(format!("invalid archive: {x}")))?;
            let path =
                String::from_utf8(path).map_err(|_| bad("invalid archive: a path is not UTF-8"))?;
            let on_disk = spool.dir.join(&path);
            match e.kind {
                Kind::Dir => std::fs::create_dir_all(&on_disk).map_err(|x| ImageError::Io {
                    context: path.clone(),
                    source: x,
                })?,
                Kind::Regular => {
                    if let Some(p) = on_disk.parent() {
                        std::fs::create_dir_all(p).map_err(|x| ImageError::Io {
                            context: path.clone(),
                            source: x,
                        })?;
                    }
                    let mut f = File::create(&on_disk).map_err(|x| ImageError::Io {
                        context: path.clone(),
                        source: x,
                    })?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = r.read_payload(&mut buf).map_err(archive_err)?;
                        if n == 0 {
                            break;
                        }
                        f.write_all(&buf[..n]).map_err(|x| ImageError::Io {
                            context: path.clone(),
                            source: x,
                        })?;
                    }
                }
                Kind::Symlink => {
                    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    let target = String::from_utf8_lossy(&e.link).into_owned();
                    let t = lexical_join(dir, &target).ok_or_else(|| {
                        bad(format!("invalid archive: symlink {path} points outside"))
                    })?;
                    spool.links.insert(path, t);
                }
                Kind::Hardlink => {
                    let t = normalize(&e.link, &e.display())
                        .map_err(|x| bad(format!("invalid archive: {x}")))?;
                    spool
                        .links
                        .insert(path, String::from_utf8_lossy(&t).into_owned());
                }
                _ => {}
            }
        }
        Ok(spool)
    }

    /// The file an archive path names, following the archive's own links.
    fn resolve(&self, path: &str) -> Result<PathBuf, ImageError> {
        let mut p = lexical_join("", path)
            .ok_or_else(|| bad(format!("invalid path {path:?} in the archive's manifest")))?;
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => {
                    let f = self.dir.join(&p);
                    return if f.is_file() {
                        Ok(f)
                    } else {
                        Err(bad(format!("the archive has no file {path}")))
                    };
                }
            }
        }
        Err(bad(format!("too many links resolving {path}")))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, ImageError> {
        std::fs::read(self.resolve(path)?).map_err(|e| ImageError::Io {
            context: path.into(),
            source: e,
        })
    }
}

/// What the archive says one image is made of.
struct Plan {
    config: Vec<u8>,
    layers: Vec<String>,
    tags: Vec<String>,
}

#[derive(serde::Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// The digest a docker-archive config path promises: `<hex>.json` or `blobs/sha256/<hex>`.
fn promised_digest(path: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?;
    Digest::from_hex(name.strip_suffix(".json").unwrap_or(name)).ok()
}

fn plans(spool: &Spool) -> Result<Vec<Plan>, ImageError> {
    if let Ok(bytes) = spool.read("manifest.json") {
        let ms: Vec<DockerManifest> = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("invalid manifest.json: {e}")))?;
        return ms
            .into_iter()
            .map(|m| {
                let config = spool.read(&m.config)?;
                if let Some(want) = promised_digest(&m.config) {
                    let got = Digest::of(&config);
                    if got != want {
                        return Err(bad(format!(
                            "config {} does not match its digest (it hashes to {got})",
                            m.config
                        )));
                    }
                }
                Ok(Plan {
                    config,
                    layers: m.layers,
                    tags: m.repo_tags.unwrap_or_default(),
                })
            })
            .collect();
    }
    let index: OciIndex = serde_json::from_slice(
        &spool
            .read("index.json")
            .map_err(|_| bad("the archive has neither manifest.json nor index.json"))?,
    )
    .map_err(|e| bad(format!("invalid index.json: {e}")))?;
    let mut out = Vec::new();
    for d in index.manifests {
        let mut desc = d;
        let tag = desc
            .annotations
            .get("io.containerd.image.name")
            .or(desc.annotations.get("org.opencontainers.image.ref.name"))
            .cloned();
        // A nested index: take the linux/amd64 manifest, else the first.
        if desc.media_type.contains("index") || desc.media_type.contains("manifest.list") {
            let inner: OciIndex = serde_json::from_slice(&read_verified(spool, &desc.digest)?)
                .map_err(|e| bad(format!("invalid index: {e}")))?;
            let pick = inner
                .manifests
                .into_iter()
                .max_by_key(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p["os"] == "linux" && p["architecture"] == "amd64")
                })
                .ok_or_else(|| bad("empty image index"))?;
            desc = pick;
        }
        let m: OciManifest = serde_json::from_slice(&read_verified(spool, &desc.digest)?)
            .map_err(|e| bad(format!("invalid manifest: {e}")))?;
        let config = read_verified(spool, &m.config.digest)?;
        out.push(Plan {
            config,
            layers: m.layers.iter().map(|l| blob_path(&l.digest)).collect(),
            tags: tag.into_iter().collect(),
        });
    }
    Ok(out)
}

fn read_verified(spool: &Spool, d: &Digest) -> Result<Vec<u8>, ImageError> {
    let bytes = spool.read(&blob_path(d))?;
    let got = Digest::of(&bytes);
    if got != *d {
        return Err(bad(format!(
            "blob {d} does not match its digest (it hashes to {got})"
        )));
    }
    Ok(bytes)
}

impl ImageStore {
    /// Loads every image of a `docker save` or OCI layout archive (plain or compressed).
    pub fn load<R: Read>(
        &self,
        input: R,
        progress: Option<&(dyn Fn(LoadProgress<'_>) + Sync)>,
    ) -> Result<Vec<Loaded>, ImageError> {
        let spool = Spool::unpack(self.tmp_dir().join(format!("load-{}", random_id(8))), input)?;
        let plans = plans(&spool)?;
        if plans.is_empty() {
            return Err(bad("the archive holds no image"));
        }
        // Check every tag before changing anything.
        for p in &plans {
            for t in &p.tags {
                super::Reference::parse_tagged(t)?;
            }
            let head = ConfigHead::parse(&p.config)?;
            if head.rootfs.diff_ids.len() != p.layers.len() {
                return Err(bad(format!(
                    "the manifest lists {} layers, the config {}",
                    p.layers.len(),
                    head.rootfs.diff_ids.len()
                )));
            }
        }
        let mut out = Vec::new();
        for p in plans {
            let head = ConfigHead::parse(&p.config)?;
            let mut parent: Option<ChainId> = None;
            let res = (|| -> Result<(), ImageError> {
                for (path, diff) in p.layers.iter().zip(&head.rootfs.diff_ids) {
                    let f = File::open(spool.resolve(path)?).map_err(|e| ImageError::Io {
                        context: path.clone(),
                        source: e,
                    })?;
                    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
                    if let Some(cb) = progress {
                        cb(LoadProgress::Layer {
                            diff_id: diff,
                            current: 0,
                            total,
                        });
                    }
                    // Unpacked bytes, capped at the layer's size in the archive (compressed
                    // layers unpack to more).
                    let step = |n: u64| {
                        if let Some(cb) = progress {
                            cb(LoadProgress::Layer {
                                diff_id: diff,
                                current: n.min(total),
                                total,
                            });
                        }
                    };
                    let layer = self.layers().register(
                        parent.as_ref(),
                        f,
                        RegisterOpts {
                            expected: Some(*diff),
                            progress: Some(&step),
                        },
                    )?;
                    if let Some(cb) = progress {
                        cb(LoadProgress::Layer {
                            diff_id: diff,
                            current: total,
                            total,
                        });
                    }
                    if let Some(prev) = parent.replace(layer.chain_id) {
                        self.layers().release(&prev)?; // the child keeps it
                    }
                }
                Ok(())
            })();
            let res = res.and_then(|_| self.create(&p.config));
            // The registration's own reference goes in every case; on failure that removes
            // whatever this image brought in and nothing else needs.
            if let Some(top) = &parent {
                self.layers().release(top)?;
            }
            let img = res?;
            let mut tags = Vec::new();
            for t in &p.tags {
                self.tag(&img.id, t)?;
                tags.push(super::Reference::parse_tagged(t)?.familiar());
            }
            if let Some(cb) = progress {
                cb(LoadProgress::Loaded { id: &img.id });
            }
            out.push(Loaded { id: img.id, tags });
        }
        Ok(out)
    }

    /// Writes the named images (references or IDs) as a classic docker-archive.
    pub fn save<W: Write>(&self, names: &[&str], out: W) -> Result<W, ImageError> {
        let mut manifests = Vec::new();
        let mut repositories: HashMap<String, HashMap<String, String>> = HashMap::new();
        let mut written: HashSet<ChainId> = HashSet::new();
        let mut tar = TarWriter::new(out);
        let io_err = |e: io::Error| ImageError::Io {
            context: "writing the archive".into(),
            source: e,
        };
        let header = |path: String, kind: Kind, size: u64| Header::new(path, kind, size);
        let mut seen_images = HashSet::new();
        for name in names {
            let img = self.get(name)?;
            let by_id = super::store::is_id_name(name, &img.id);
            let tag = if by_id {
                None
            } else {
                super::Reference::parse_tagged(name).ok()
            };
            // Layers, bottom up, each once.
            let mut chain: Vec<ChainId> = Vec::new();
            let mut parent: Option<ChainId> = None;
            for d in &img.head.rootfs.diff_ids {
                let c = crate::chain_id(parent.as_ref(), d);
                chain.push(c);
                parent = Some(c);
            }
            let mut layer_paths = Vec::new();
            for c in &chain {
                let path = format!("{}/layer.tar", c.hex());
                if written.insert(*c) {
                    let layer = self
                        .layers()
                        .get(c)
                        .ok_or_else(|| ImageError::NotFound(format!("layer {c}")))?;
                    tar.append(&header(c.hex(), Kind::Dir, 0), None)
                        .map_err(io_err)?;
                    let mut ex = self.layers().export(c)?;
                    tar.append(
                        &header(path.clone(), Kind::Regular, layer.tar_bytes),
                        Some(&mut ex),
                    )
                    .map_err(io_err)?;
                    if ex.digest() != layer.diff_id {
                        return Err(ImageError::Layer(crate::LayerError::DigestMismatch {
                            expected: layer.diff_id,
                            actual: ex.digest(),
                        }));
                    }
                }
                layer_paths.push(path);
            }
            let config_path = format!("{}.json", img.id.hex());
            if seen_images.insert(img.id) {
                tar.append(
                    &header(config_path.clone(), Kind::Regular, img.config.len() as u64),
                    Some(&mut &img.config[..]),
                )
                .map_err(io_err)?;
            }
            let repo_tags: Vec<String> = tag.iter().map(|r| r.familiar()).collect();
            if let (Some(r), Some(top)) = (&tag, chain.last()) {
                repositories
                    .entry(r.familiar_name())
                    .or_default()
                    .insert(r.tag.clone().unwrap_or_default(), top.hex());
            }
            manifests.push(serde_json::json!({ "Config": config_path, "RepoTags": repo_tags, "Layers": layer_paths }));
        }
        let manifest = serde_json::to_vec(&manifests).map_err(|e| io_err(io::Error::other(e)))?;
        tar.append(
            &header("manifest.json".into(), Kind::Regular, manifest.len() as u64),
            Some(&mut &manifest[..]),
        )
        .map_err(io_err)?;
        let repos = serde_json::to_vec(&repositories).map_err(|e| io_err(io::Error::other(e)))?;
        tar.append(
            &header("repositories".into(), Kind::Regular, repos.len() as u64),
            Some(&mut &repos[..]),
        )
        .map_err(io_err)?;
        tar.finish().map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_stay_inside() {
        assert_eq!(
            lexical_join("a/b", "../../blobs/x").as_deref(),
            Some("blobs/x")
        );
        assert_eq!(lexical_join("a", "../../x"), None);
        assert_eq!(lexical_join("a", "/etc/passwd"), None);
        assert_eq!(
            promised_digest(&format!("{}.json", "a".repeat(64))),
            Digest::from_hex(&"a".repeat(64)).ok()
        );
        assert_eq!(promised_digest("config.json"), None);
    }
}
