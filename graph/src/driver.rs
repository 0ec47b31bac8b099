//! The graph driver contract: what every storage backend (overlay2, vfs, btrfs, ...) provides.
//!
//! Layers are named by opaque ids (the layer store uses random cache ids). A layer is created
//! read-only (an image layer) or read-write (a container layer) on top of an optional parent;
//! `get` returns a path to its full tree, mounted if the driver needs to, with reference
//! counting; `put` releases it. The diff half turns layers into tars and back. Drivers without a
//! native diff inherit the generic one, which compares trees ("naive diff").

use crate::archive::{self, apply_layer, ApplyError, ApplyOptions, Change, WhiteoutFormat};
use crate::options::{OptionError, StorageOpts};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Errors of a graph driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{driver}: layer {id} does not exist")]
    NotFound { driver: &'static str, id: String },
    #[error("{driver}: layer {id} already exists")]
    Exists { driver: &'static str, id: String },
    #[error("{driver}: layer {id} is in use ({mounts} active mount(s))")]
    Busy {
        driver: &'static str,
        id: String,
        mounts: u32,
    },
    #[error("{driver} is not supported on this host: {reason}")]
    NotSupported {
        driver: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Options(#[from] OptionError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{driver}: {context}: {source}")]
    Io {
        driver: &'static str,
        context: String,
        source: io::Error,
    },
    #[error("{driver}: {message}")]
    Invalid {
        driver: &'static str,
        message: String,
    },
}

/// A kernel object a driver made that no layer uses (see [`Driver::strays`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stray {
    /// What it is, e.g. "device-mapper device".
    pub kind: String,
    /// Its name, as the driver removes it.
    pub name: String,
}

/// Result of driver calls.
pub type DriverResult<T> = Result<T, DriverError>;

/// Builds an `Io` error with context.
pub fn io_err(
    driver: &'static str,
    context: impl Into<String>,
) -> impl FnOnce(io::Error) -> DriverError {
    let context = context.into();
    move |source| DriverError::Io {
        driver,
        context,
        source,
    }
}

/// Options for creating one layer.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// Per-layer `--storage-opt` (e.g. `size=10G` for a container).
    pub storage_opt: StorageOpts,
    /// SELinux mount label, if any.
    pub mount_label: String,
}

/// Where and how a layer's tar is unpacked.
#[derive(Debug, Clone)]
pub struct ApplyTarget {
    /// The directory that receives the entries.
    pub root: PathBuf,
    pub whiteouts: WhiteoutFormat,
    /// Lower layers' own directories, top first (for hard links to lower files).
    pub lowers: Vec<PathBuf>,
}

/// A graph driver. All methods may be called from several threads at once.
pub trait Driver: Send + Sync {
    /// The driver's name as `--storage-driver` spells it.
    fn name(&self) -> &'static str;

    /// The driver's home directory under the data root.
    fn home(&self) -> &Path;

    /// Creates a read-only (image) layer `id` on top of `parent`.
    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()>;

    /// Creates a read-write (container) layer `id` on top of `parent`.
    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()>;

    /// Removes a layer; an error while it is mounted.
    fn remove(&self, id: &str) -> DriverResult<()>;

    /// Returns the path of the layer's full tree, mounting it on first use.
    fn get(&self, id: &str, mount_label: &str) -> DriverResult<PathBuf>;

    /// Releases one `get`; the last one unmounts.
    fn put(&self, id: &str) -> DriverResult<()>;

    /// Whether the layer exists.
    fn exists(&self, id: &str) -> bool;

    /// Ids of all layers with data in the driver (for reconciling the store).
    fn list(&self) -> DriverResult<Vec<String>>;

    /// Key/value pairs for `docker info`'s Driver Status.
    fn status(&self) -> Vec<(String, String)>;

    /// Warnings for `docker info` about how the driver is set up (e.g. a setup not fit for
    /// production); none by default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Kernel objects the driver made that none of its layers uses now (e.g. device-mapper
    /// devices left active by a crash), for `strata storage check`; none by default. Mounts
    /// under the home and loop devices are found by the caller.
    fn strays(&self) -> DriverResult<Vec<Stray>> {
        Ok(Vec::new())
    }

    /// Removes what `strays` reported (`strata storage repair`).
    fn remove_stray(&self, stray: &Stray) -> DriverResult<()> {
        Err(DriverError::Invalid {
            driver: self.name(),
            message: format!("cannot remove {}", stray.name),
        })
    }

    /// Files the driver has attached to loop devices itself (devicemapper's loop-lvm pool):
    /// those loop devices are not strays.
    fn backing_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// The deepest chain of layers (a layer and its ancestors) the driver can mount; `None`
    /// when there is no limit. Registering a deeper layer is refused.
    fn max_depth(&self) -> Option<usize> {
        None
    }

    /// Key/value pairs for `inspect`'s GraphDriver.Data.
    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>>;

    /// Unmounts everything the driver mounted; called at shutdown.
    fn cleanup(&self) -> DriverResult<()>;

    /// Where `apply_diff` unpacks a tar for layer `id` (created with `parent`).
    fn apply_target(&self, id: &str, parent: Option<&str>) -> DriverResult<ApplyTarget>;

    /// Releases what `apply_target` acquired (e.g. a mount); nothing by default.
    fn release_apply_target(&self, _id: &str) -> DriverResult<()> {
        Ok(())
    }

    /// Where the layer's own files are for reading them back (exact re-export).
    fn export_root(&self, id: &str) -> DriverResult<PathBuf> {
        self.apply_target(id, None).map(|t| t.root)
    }

    /// Releases what `export_root` acquired; nothing by default.
    fn release_export_root(&self, id: &str) -> DriverResult<()> {
        self.release_apply_target(id)
    }

    /// True when the driver computes diffs from its own bookkeeping rather than by comparing
    /// trees.
    fn native_diff(&self) -> bool {
        false
    }

    /// Writes the changes of `id` relative to `parent` as a layer tar.
    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> DriverResult<()> {
        naive::diff(self, id, parent, out)
    }

    /// Lists the changes of `id` relative to `parent`.
    fn changes(&self, id: &str, parent: Option<&str>) -> DriverResult<Vec<Change>> {
        naive::changes(self, id, parent)
    }

    /// Unpacks a layer tar into `id`; returns the size of the unpacked files.
    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        input: &mut (dyn Read + Send),
    ) -> DriverResult<u64> {
        let t = self.apply_target(id, parent)?;
        let mut o = ApplyOptions::new(t.whiteouts);
        o.lowers = t.lowers;
        let res = apply_layer(&t.root, input, o);
        self.release_apply_target(id)?;
        Ok(res?.size)
    }

    /// Size of the changes of `id` relative to `parent`.
    fn diff_size(&self, id: &str, parent: Option<&str>) -> DriverResult<u64> {
        naive::diff_size(self, id, parent)
    }
}

/// The generic diff: mount both layers and compare their trees.
/// Outstanding `get`s per layer, for drivers whose `get` mounts nothing (vfs, btrfs): a
/// layer in use cannot be removed, and a `put` must follow a `get`.
#[derive(Debug, Default)]
pub struct UseCounts(std::sync::Mutex<HashMap<String, u32>>);

impl UseCounts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more `get` of `id`.
    pub fn acquire(&self, id: &str) {
        *self.map().entry(id.into()).or_default() += 1;
    }

    /// One `put` of `id`; an error when it has no outstanding `get`.
    pub fn release(&self, driver: &'static str, id: &str) -> DriverResult<()> {
        let mut g = self.map();
        match g.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    g.remove(id);
                }
                Ok(())
            }
            _ => Err(DriverError::Invalid {
                driver,
                message: format!("put of layer {id}, which is not in use"),
            }),
        }
    }

    /// `Busy` while `id` has outstanding `get`s.
    pub fn check_unused(&self, driver: &'static str, id: &str) -> DriverResult<()> {
        match self.map().get(id).copied().filter(|n| *n > 0) {
            Some(mounts) => Err(DriverError::Busy {
                driver,
                id: id.into(),
                mounts,
            }),
            None => Ok(()),
        }
    }

    /// Forgets every `get` (shutdown).
    pub fn clear(&self) {
        self.map().clear();
    }
}

/// Outstanding `get`s of layers a driver mounts (zfs, aufs): the first `get` mounts, the
/// last `put` unmounts, a mounted layer cannot be removed. The count's lock is held while
/// mounting and unmounting, so one layer is never mounted twice.
#[derive(Debug, Default)]
pub struct MountCounts(std::sync::Mutex<HashMap<String, (u32, PathBuf)>>);

impl MountCounts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, PathBuf)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more `get` of `id`; `mount` runs for the first, and the path it returns is what
    /// every `get` of `id` returns until the last `put`.
    pub fn acquire(
        &self,
        id: &str,
        mount: impl FnOnce() -> DriverResult<PathBuf>,
    ) -> DriverResult<PathBuf> {
        let mut g = self.map();
        if let Some((n, p)) = g.get_mut(id) {
            *n += 1;
            return Ok(p.clone());
        }
        let p = mount()?;
        g.insert(id.into(), (1, p.clone()));
        Ok(p)
    }

    /// One `put` of `id`; `unmount` runs for the last. An error when `id` has no `get`.
    pub fn release(
        &self,
        driver: &'static str,
        id: &str,
        unmount: impl FnOnce() -> DriverResult<()>,
    ) -> DriverResult<()> {
        let mut g = self.map();
        match g.get_mut(id) {
            Some((n, _)) if *n > 1 => {
                *n -= 1;
                Ok(())
            }
            Some(_) => {
                unmount()?;
                g.remove(id);
                Ok(())
            }
            None => Err(DriverError::Invalid {
                driver,
                message: format!("put of layer {id}, which is not in use"),
            }),
        }
    }

    /// Whether `id` is mounted.
    pub fn is_mounted(&self, id: &str) -> bool {
        self.map().contains_key(id)
    }

    /// `Busy` while `id` is mounted.
    pub fn check_unused(&self, driver: &'static str, id: &str) -> DriverResult<()> {
        match self.map().get(id) {
            Some((mounts, _)) => Err(DriverError::Busy {
                driver,
                id: id.into(),
                mounts: *mounts,
            }),
            None => Ok(()),
        }
    }

    /// Runs `unmount` for every mounted layer and forgets it (shutdown); stops at the first
    /// error, keeping what is still mounted.
    pub fn release_all(
        &self,
        mut unmount: impl FnMut(&str) -> DriverResult<()>,
    ) -> DriverResult<()> {
        let mut g = self.map();
        let ids: Vec<String> = g.keys().cloned().collect();
        for id in ids {
            unmount(&id)?;
            g.remove(&id);
        }
        Ok(())
    }
}

/// Runs `f` with layer `id` and its `parent` (if any) got (mounted), and puts both back
/// whatever `f` returns.
pub fn with_layer_and_parent<D: Driver + ?Sized, T>(
    d: &D,
    id: &str,
    parent: Option<&str>,
    f: impl FnOnce(&Path, Option<&Path>) -> DriverResult<T>,
) -> DriverResult<T> {
    let layer = d.get(id, "")?;
    let parent_dir = match parent.map(|p| d.get(p, "")).transpose() {
        Ok(p) => p,
        Err(e) => {
            let _ = d.put(id);
            return Err(e);
        }
    };
    let res = f(&layer, parent_dir.as_deref());
    let r1 = d.put(id);
    let r2 = parent.map(|p| d.put(p)).transpose();
    let out = res?;
    r1?;
    r2?;
    Ok(out)
}

pub mod naive {
    use super::*;

    fn with_trees<D: Driver + ?Sized, T>(
        d: &D,
        id: &str,
        parent: Option<&str>,
        f: impl FnOnce(&Path, Option<&Path>) -> io::Result<T>,
    ) -> DriverResult<T> {
        with_layer_and_parent(d, id, parent, |l, p| {
            f(l, p).map_err(io_err(
                d.name(),
                format!("comparing layer {id} with its parent"),
            ))
        })
    }

    pub fn changes<D: Driver + ?Sized>(
        d: &D,
        id: &str,
        parent: Option<&str>,
    ) -> DriverResult<Vec<Change>> {
        with_trees(d, id, parent, archive::changes_dirs)
    }

    pub fn diff<D: Driver + ?Sized>(
        d: &D,
        id: &str,
        parent: Option<&str>,
        out: &mut dyn Write,
    ) -> DriverResult<()> {
        with_trees(d, id, parent, |l, p| {
            let changes = archive::changes_dirs(l, p)?;
            archive::export_changes(l, &changes, out).map(|_| ())
        })
    }

    pub fn diff_size<D: Driver + ?Sized>(
        d: &D,
        id: &str,
        parent: Option<&str>,
    ) -> DriverResult<u64> {
        with_trees(d, id, parent, |l, p| {
            let changes = archive::changes_dirs(l, p)?;
            archive::changes_size(l, &changes)
        })
    }
}

/// Image layers take no per-layer options (a size limit is for container layers).
pub fn image_layer_opts(driver: &'static str, opts: &CreateOpts) -> DriverResult<()> {
    match opts.storage_opt.0.keys().next() {
        None => Ok(()),
        Some(k) if k == "size" => Err(DriverError::Invalid {
            driver,
            message: "--storage-opt size is only supported for container layers".into(),
        }),
        Some(_) => opts.storage_opt.validate(driver, &[]).map_err(Into::into),
    }
}

/// The size limit a container layer asks for (`size=`, the one per-layer option), else the
/// driver's default.
pub fn container_size(
    driver: &'static str,
    opts: &CreateOpts,
    default: Option<u64>,
) -> DriverResult<Option<u64>> {
    opts.storage_opt.validate(
        driver,
        &[crate::OptionSpec {
            key: "size",
            help: "size limit of this container layer",
        }],
    )?;
    Ok(opts.storage_opt.size(driver, "size")?.or(default))
}

/// Validates a layer id: drivers use ids as directory names.
pub fn check_id(driver: &'static str, id: &str) -> DriverResult<()> {
    if id.is_empty()
        || id.len() > 128
        || id.starts_with('.')
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(DriverError::Invalid {
            driver,
            message: format!("invalid layer id {id:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod mount_counts_tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_first_get_mounts_and_the_last_put_unmounts() {
        let m = MountCounts::default();
        let (mounts, unmounts) = (Cell::new(0), Cell::new(0));
        let get = || {
            m.acquire("a", || {
                mounts.set(mounts.get() + 1);
                Ok(PathBuf::from("/mnt/a"))
            })
        };
        assert_eq!(get().unwrap(), Path::new("/mnt/a"));
        assert_eq!(get().unwrap(), Path::new("/mnt/a"));
        assert_eq!(mounts.get(), 1);
        assert!(matches!(
            m.check_unused("t", "a"),
            Err(DriverError::Busy { mounts: 2, .. })
        ));
        let put = || {
            m.release("t", "a", || {
                unmounts.set(unmounts.get() + 1);
                Ok(())
            })
        };
        put().unwrap();
        assert_eq!(unmounts.get(), 0);
        put().unwrap();
        assert_eq!(unmounts.get(), 1);
        assert!(!m.is_mounted("a") && m.check_unused("t", "a").is_ok());
        assert!(put().is_err(), "a put without a get");
        // A failed mount counts nothing.
        let e = m.acquire("b", || {
            Err(DriverError::Invalid {
                driver: "t",
                message: "no".into(),
            })
        });
        assert!(e.is_err() && !m.is_mounted("b"));
    }
}
