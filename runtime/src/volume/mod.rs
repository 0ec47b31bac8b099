//! Named volumes with the `local` driver, as dockerd keeps them: each volume a directory
//! `<root>/<name>/_data` beside its record `<root>/<name>/volume.json`. A volume with
//! driver options (`type`, `device`, `o`) is mounted there while containers use it.
//!
//! The store counts which containers refer to each volume (rebuilt from their records at
//! start), so a volume in use is never removed and a container never gets a removed volume:
//! both happen under one lock.

pub mod local_mount;
pub mod mount_point;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The label dockerd puts on anonymous volumes (`-v /path`, an image's `VOLUME`).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Worded as dockerd's.
    #[error("{0}")]
    BadName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{}]", .users.join(", "))]
    InUse { name: String, users: Vec<String> },
    /// An unknown driver, a bad option.
    #[error("{0}")]
    Invalid(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let context = context.into();
    move |source| VolumeError::Io { context, source }
}

/// A volume's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The local driver's options (`type`, `device`, `o`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
}

impl Volume {
    /// Made for one container (`-v /path`, `VOLUME`): `rm -v` and `--rm` remove it.
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// What a new volume is made with.
#[derive(Debug, Clone, Default)]
pub struct VolumeSpec {
    /// Empty for a generated name.
    pub name: String,
    /// Empty for `local`.
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    volumes: BTreeMap<String, Volume>,
    /// Containers that refer to each volume.
    refs: HashMap<String, BTreeSet<String>>,
    /// Containers running with each volume mounted (for volumes with a mount of their own).
    active: HashMap<String, BTreeSet<String>>,
}

/// The volumes of one data root.
pub struct VolumeStore {
    root: PathBuf,
    inner: Mutex<Inner>,
}

/// Checks a name as dockerd's local driver does: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.len() < 2 {
        return Err(VolumeError::BadName(
            "volume name is too short, names should be at least two alphanumeric characters".into(),
        ));
    }
    if !first_ok || !rest_ok {
        return Err(VolumeError::BadName(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

impl VolumeStore {
    /// Opens (creating) the store at `root`. A directory without a record is a create that
    /// was interrupted: it is removed.
    pub fn open(root: &Path) -> Result<VolumeStore, VolumeError> {
        std::fs::create_dir_all(root).map_err(io_ctx(format!("creating {}", root.display())))?;
        let mut inner = Inner::default();
        let entries =
            std::fs::read_dir(root).map_err(io_ctx(format!("reading {}", root.display())))?;
        for e in entries {
            let e = e.map_err(io_ctx(format!("reading {}", root.display())))?;
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let rec = dir.join("volume.json");
            match std::fs::read(&rec) {
                Ok(data) => match serde_json::from_slice::<Volume>(&data) {
                    Ok(v) => {
                        inner.volumes.insert(v.name.clone(), v);
                    }
                    Err(err) => {
                        tracing::error!(path = %rec.display(), "a volume record that cannot be read is left alone: {err}");
                    }
                },
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %dir.display(), "removing a volume whose create was interrupted");
                    let _ = local_mount::unmount_if_mounted(&dir.join("_data"));
                    if let Err(err) = strata_graph::fsutil::remove_tree(&dir) {
                        tracing::warn!(path = %dir.display(), "{err}");
                    }
                }
                Err(err) => return Err(io_ctx(format!("reading {}", rec.display()))(err)),
            }
        }
        Ok(VolumeStore {
            root: root.to_path_buf(),
            inner: Mutex::new(inner),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a volume's data is (its mountpoint).
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        spec: &VolumeSpec,
    ) -> Result<(Volume, bool), VolumeError> {
        let driver = if spec.driver.is_empty() {
            "local"
        } else {
            spec.driver.as_str()
        };
        if driver != "local" {
            return Err(VolumeError::Invalid(format!(
                "error looking up volume plugin {driver}: plugin {driver:?} not found"
            )));
        }
        let name = if spec.name.is_empty() {
            strata_graph::fsutil::random_id(32)
        } else {
            check_name(&spec.name)?;
            spec.name.clone()
        };
        if let Some(v) = inner.volumes.get(&name) {
            if !spec.options.is_empty() && spec.options != v.options {
                return Err(VolumeError::Invalid(format!(
                    "create {name}: volume already exists and was created with different options"
                )));
            }
            return Ok((v.clone(), false));
        }
        local_mount::check_options(&spec.options)?;
        let v = Volume {
            name: name.clone(),
            driver: driver.into(),
            labels: spec.labels.clone(),
            options: spec.options.clone(),
            // Whole seconds, as dockerd's volumes show it.
            created_at: strata_graph::time::rfc3339(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(strata_graph::time::now_secs() as u64),
            )
            .replace(".000000000Z", "Z"),
        };
        let dir = self.root.join(&name);
        std::fs::create_dir_all(dir.join("_data"))
            .map_err(io_ctx(format!("creating {}", dir.display())))?;
        let data = serde_json::to_vec_pretty(&v)
            .map_err(|e| io_ctx("encoding a volume record")(std::io::Error::other(e)))?;
        if let Err(e) = strata_graph::fsutil::atomic_write(&dir.join("volume.json"), &data) {
            let _ = strata_graph::fsutil::remove_tree(&dir);
            return Err(io_ctx(format!("writing {}", dir.display()))(e));
        }
        inner.volumes.insert(name, v.clone());
        Ok((v, true))
    }

    /// Creates a volume, or returns the one of that name (`false`: it existed). Errors
    /// name the volume as dockerd's do (`create NAME: ...`).
    pub fn create(&self, spec: &VolumeSpec) -> Result<(Volume, bool), VolumeError> {
        let mut inner = self.lock();
        self.create_locked(&mut inner, spec).map_err(|e| match e {
            VolumeError::BadName(m) => VolumeError::BadName(format!("create {}: {m}", spec.name)),
            VolumeError::Invalid(m) if !m.starts_with("create ") => {
                VolumeError::Invalid(format!("create {}: {m}", spec.name))
            }
            e => e,
        })
    }

    /// Creates the volume if missing and records that `container` refers to it.
    pub fn acquire(
        &self,
        spec: &VolumeSpec,
        container: &str,
    ) -> Result<(Volume, bool), VolumeError> {
        let mut inner = self.lock();
        let (v, created) = self.create_locked(&mut inner, spec)?;
        inner
            .refs
            .entry(v.name.clone())
            .or_default()
            .insert(container.to_string());
        Ok((v, created))
    }

    /// Records, at start, a reference found in a container's record.
    pub fn add_ref(&self, name: &str, container: &str) {
        self.lock()
            .refs
            .entry(name.to_string())
            .or_default()
            .insert(container.to_string());
    }

    /// Forgets every reference of `container` (removed, or its create failed).
    pub fn release(&self, container: &str) {
        let mut inner = self.lock();
        for users in inner.refs.values_mut() {
            users.remove(container);
        }
        inner.refs.retain(|_, u| !u.is_empty());
    }

    /// A volume's record.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        self.lock()
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        self.lock().volumes.values().cloned().collect()
    }

    /// The containers that refer to a volume.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.lock()
            .refs
            .get(name)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a volume no container refers to; its data goes with it.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let mut inner = self.lock();
        if !inner.volumes.contains_key(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        if let Some(users) = inner.refs.get(name).filter(|u| !u.is_empty()) {
            return Err(VolumeError::InUse {
                name: name.to_string(),
                users: users.iter().cloned().collect(),
            });
        }
        let dir = self.root.join(name);
        local_mount::unmount_if_mounted(&dir.join("_data"))
            .map_err(io_ctx(format!("unmounting volume {name}")))?;
        // The record goes first: a removal cut short leaves a directory the next start
        // removes, never a record without data.
        std::fs::remove_file(dir.join("volume.json"))
            .map_err(io_ctx(format!("removing volume {name}")))?;
        inner.volumes.remove(name);
        inner.active.remove(name);
        strata_graph::fsutil::remove_tree(&dir)
            .map_err(io_ctx(format!("removing volume {name}")))?;
        Ok(())
    }

    /// Makes a volume's data available for a container about to run: a volume with driver
    /// options is mounted when its first user starts. Returns the path to bind.
    pub fn mount(&self, name: &str, container: &str) -> Result<PathBuf, VolumeError> {
        let mut inner = self.lock();
        let v = inner
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| VolumeError::NotFound(name.to_string()))?;
        let path = self.data_path(name);
        if !v.options.is_empty() {
            let users = inner.active.entry(name.to_string()).or_default();
            if users.is_empty() && !local_mount::is_mounted(&path) {
                local_mount::mount(&v.options, &path)?;
            }
            users.insert(container.to_string());
        }
        Ok(path)
    }

    /// The container no longer runs with the volume; the last user unmounts a volume with
    /// driver options.
    pub fn unmount(&self, name: &str, container: &str) {
        let mut inner = self.lock();
        let Some(users) = inner.active.get_mut(name) else {
            return;
        };
        users.remove(container);
        if users.is_empty() {
            inner.active.remove(name);
            if let Err(e) = local_mount::unmount_if_mounted(&self.data_path(name)) {
                tracing::warn!(volume = %name, "unmounting: {e}");
            }
        }
    }

    /// Bytes used by a volume's data (a walk of its tree; blocking).
    pub fn size(&self, name: &str) -> i64 {
        strata_graph::archive::tree_size(&self.data_path(name)).unwrap_or(0) as i64
    }

    /// Whether the volume's data directory is empty (a new volume to fill from the image).
    pub fn is_empty(&self, name: &str) -> bool {
        std::fs::read_dir(self.data_path(name))
            .map(|mut rd| rd.next().is_none())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> VolumeSpec {
        VolumeSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names() {
        assert!(check_name("data").is_ok());
        assert!(check_name("a.b_c-1").is_ok());
        assert!(check_name("x")
            .unwrap_err()
            .to_string()
            .contains("too short"));
        assert!(check_name("-ab")
            .unwrap_err()
            .to_string()
            .contains("invalid characters"));
        assert!(check_name("a/b").is_err());
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn create_refs_remove_and_reopen() {
        let t = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(t.path()).unwrap();
        let (v, created) = s.create(&spec("data")).unwrap();
        assert!(created);
        assert!(s.data_path("data").is_dir());
        let (again, created) = s.create(&spec("data")).unwrap();
        assert!(!created);
        assert_eq!(again, v);
        s.acquire(&spec("data"), "c1").unwrap();
        let e = s.remove("data").unwrap_err();
        assert_eq!(e.to_string(), "remove data: volume is in use - [c1]");
        s.release("c1");
        std::fs::write(s.data_path("data").join("f"), "x").unwrap();
        assert_eq!(s.size("data"), 1);
        // A half-made volume (no record) is gone after a reopen; the complete one stays.
        std::fs::create_dir_all(t.path().join("half/_data")).unwrap();
        let s = VolumeStore::open(t.path()).unwrap();
        assert!(!t.path().join("half").exists());
        assert_eq!(s.get("data").unwrap().name, "data");
        s.remove("data").unwrap();
        assert!(!t.path().join("data").exists());
        assert!(matches!(s.remove("data"), Err(VolumeError::NotFound(_))));
        let (anon, _) = s.create(&spec("")).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert!(s
            .create(&VolumeSpec {
                name: "n2".into(),
                driver: "nfsplugin".into(),
                ..Default::default()
            })
            .is_err());
    }
}
