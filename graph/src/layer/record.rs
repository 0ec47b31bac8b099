//! What the layer store keeps on disk, and where.
//!
//! ```text
//! <root>/sha256/<chainID hex>/layer.json      committed layer (the commit record)
//!                            /tar-split.zst   non-content bytes of its tar
//!                            /shadow          content the tar itself overwrote (optional)
//! <root>/tmp/<cache id>/                      a registration in progress
//! <root>/removing/<chainID hex>/              a removal in progress
//! <root>/quarantine/<name>/                   records set aside by reconciliation
//! <root>/mounts/<name>.json                   container (read-write) layers
//! <root>/driver                               the driver the records' cache ids belong to
//! ```
//! A layer is visible only once its directory has been renamed into `sha256/`, which happens
//! after its data and records are durable.

use crate::archive::tarsplit::Override;
use crate::digest::{ChainId, DiffId};
use std::path::{Path, PathBuf};

/// The commit record of an image layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    pub parent: Option<ChainId>,
    /// The driver's id for this layer's data.
    pub cache_id: String,
    /// Sum of the layer's regular file sizes, recorded at commit.
    pub size: u64,
    /// References held by users of the store (images); children are counted separately.
    pub references: u64,
    /// Seconds since the epoch.
    pub created: u64,
    /// Length of the uncompressed tar.
    pub tar_bytes: u64,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

/// The record of a container (read-write) layer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RwRecord {
    pub name: String,
    pub cache_id: String,
    pub parent: Option<ChainId>,
    pub created: u64,
}

/// Paths inside the store's root.
#[derive(Debug, Clone)]
pub struct StorePaths {
    pub root: PathBuf,
}

impl StorePaths {
    /// The paths of a store at `root`.
    pub fn at(root: &Path) -> StorePaths {
        StorePaths {
            root: root.to_path_buf(),
        }
    }
    pub fn driver_file(&self) -> PathBuf {
        self.root.join("driver")
    }
    pub fn committed(&self) -> PathBuf {
        self.root.join("sha256")
    }
    pub fn layer_dir(&self, chain: &ChainId) -> PathBuf {
        self.committed().join(chain.hex())
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn removing(&self) -> PathBuf {
        self.root.join("removing")
    }
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    pub fn mounts(&self) -> PathBuf {
        self.root.join("mounts")
    }
    pub fn mount_record(&self, name: &str) -> PathBuf {
        self.mounts().join(format!("{name}.json"))
    }
    pub fn all_dirs(&self) -> [PathBuf; 5] {
        [
            self.committed(),
            self.tmp(),
            self.removing(),
            self.quarantine(),
            self.mounts(),
        ]
    }
}

pub const LAYER_JSON: &str = "layer.json";
pub const TAR_SPLIT: &str = "tar-split.zst";
pub const SHADOW: &str = "shadow";

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a JSON record.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&data).map_err(|e| e.to_string())
}

/// What is wrong with a record file.
#[derive(Debug, Clone)]
pub enum RecordProblem<T> {
    /// It cannot be read or parsed.
    Unreadable(String),
    /// It is the record of another layer than its file name says (the record it holds).
    Misplaced(T),
}

/// A record file found in the store: its name (the chainID hex of a layer directory, the
/// container layer's name), where it is, and what it holds.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub name: String,
    pub path: PathBuf,
    pub record: Result<T, RecordProblem<T>>,
}

/// The entries of a directory, by name; none when it does not exist.
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut v: Vec<std::fs::DirEntry> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<_, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Every committed layer's record (`sha256/<hex>/layer.json`).
pub fn layer_records(paths: &StorePaths) -> std::io::Result<Vec<Found<LayerRecord>>> {
    Ok(sorted_entries(&paths.committed())?
        .into_iter()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let record = match read_json::<LayerRecord>(&e.path().join(LAYER_JSON)) {
                Ok(rec) if rec.chain_id.hex() == name => Ok(rec),
                Ok(rec) => Err(RecordProblem::Misplaced(rec)),
                Err(why) => Err(RecordProblem::Unreadable(why)),
            };
            Found {
                name,
                path: e.path(),
                record,
            }
        })
        .collect())
}

/// Every container layer's record (`mounts/<name>.json`; removals in progress and temporary
/// files are not records).
pub fn rw_records(paths: &StorePaths) -> std::io::Result<Vec<Found<RwRecord>>> {
    Ok(sorted_entries(&paths.mounts())?
        .into_iter()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let name = file
                .strip_suffix(".json")
                .filter(|_| !file.starts_with('.'))?
                .to_string();
            let record = match read_json::<RwRecord>(&e.path()) {
                Ok(rec) if rec.name == name => Ok(rec),
                Ok(rec) => Err(RecordProblem::Misplaced(rec)),
                Err(why) => Err(RecordProblem::Unreadable(why)),
            };
            Some(Found {
                name,
                path: e.path(),
                record,
            })
        })
        .collect())
}
