//! The image store's files as they are on disk (configs and references), read the same way
//! by `check` and `repair`.

use crate::check::entries;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_graph::digest::{ChainId, Digest};
use strata_graph::image::ConfigHead;
use strata_graph::layer::record::read_json;

/// What is wrong with a config file.
pub(crate) enum BadConfig {
    Unreadable(String),
    /// Its content has this digest, not its name.
    Digest(Digest),
    Invalid(String),
}

/// One file of `content/sha256/`.
pub(crate) enum ConfigFile {
    /// The temporary file of an interrupted write.
    Temp(PathBuf),
    Bad {
        name: String,
        path: PathBuf,
        why: BadConfig,
    },
    Good {
        name: String,
        path: PathBuf,
        id: Digest,
        head: ConfigHead,
    },
}

/// Every config file of the image store at `images_root`, sorted by name.
pub(crate) fn configs(images_root: &Path) -> Vec<ConfigFile> {
    entries(&images_root.join("content/sha256"))
        .into_iter()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with('.') {
                return ConfigFile::Temp(path);
            }
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) => {
                    let why = BadConfig::Unreadable(err.to_string());
                    return ConfigFile::Bad { name, path, why };
                }
            };
            let id = Digest::of(&bytes);
            if id.hex() != name {
                let why = BadConfig::Digest(id);
                return ConfigFile::Bad { name, path, why };
            }
            match ConfigHead::parse(&bytes) {
                Ok(head) => ConfigFile::Good {
                    name,
                    path,
                    id,
                    head,
                },
                Err(err) => {
                    let why = BadConfig::Invalid(err.to_string());
                    ConfigFile::Bad { name, path, why }
                }
            }
        })
        .collect()
}

/// The first of an image's layers that `present` does not know.
pub(crate) fn first_missing(
    head: &ConfigHead,
    present: impl Fn(&ChainId) -> bool,
) -> Option<ChainId> {
    head.chain_ids().into_iter().find(|c| !present(c))
}

/// `repositories.json`: reference → image ID as written (a value that is not a string reads
/// as ""); empty when there is no file.
pub(crate) fn references(images_root: &Path) -> Result<BTreeMap<String, String>, String> {
    let path = images_root.join("repositories.json");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let v = read_json::<serde_json::Value>(&path)?;
    Ok(v["refs"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default())
}
