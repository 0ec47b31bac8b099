//! The `vfs` graph driver: every layer is a full copy of its parent plus its own changes.
//!
//! Portable (any filesystem, no mounts), and the fallback when nothing better works. Copies
//! share data blocks with `FICLONE` where the filesystem supports reflinks (btrfs, xfs with
//! reflink=1), so it is not as wasteful there as its reputation. Deletions are applied by
//! deleting; diffs are the generic tree comparison.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use strata_graph::archive::WhiteoutFormat;
use strata_graph::driver::{check_id, container_size, image_layer_opts, io_err, UseCounts};
use strata_graph::fsutil::{copy_tree, mkdir_all, remove_tree, CopyMode};
use strata_graph::quota::ProjectQuota;
use strata_graph::{
    sys, ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, OptionSpec, StorageOpts,
};

const NAME: &str = "vfs";

/// The options `vfs` accepts.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "size",
        help: "default size limit of container layers; needs xfs mounted with pquota",
    },
    OptionSpec {
        key: "vfs.copy",
        help: "how layers are copied: auto (reflink where possible) or copy",
    },
];

/// The vfs driver.
pub struct VfsDriver {
    home: PathBuf,
    copy: CopyMode,
    default_size: Option<u64>,
    quota: Mutex<Option<ProjectQuota>>,
    gets: UseCounts,
}

impl VfsDriver {
    /// Opens the driver with its home at `home` (usually `<data-root>/vfs`).
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        opts.validate(NAME, OPTIONS)?;
        let copy = match opts.get("vfs.copy").unwrap_or("auto") {
            "auto" => CopyMode::Auto,
            "copy" => CopyMode::Copy,
            other => {
                return Err(strata_graph::OptionError::BadValue {
                    driver: NAME.into(),
                    key: "vfs.copy".into(),
                    value: other.into(),
                    reason: "expected auto or copy".into(),
                }
                .into())
            }
        };
        mkdir_all(&home.join("dir"), 0o700).map_err(io_err(NAME, "creating home"))?;
        let default_size = opts.size(NAME, "size")?;
        let quota = match default_size {
            Some(_) => Some(
                ProjectQuota::new(home).map_err(|e| DriverError::NotSupported {
                    driver: NAME,
                    reason: format!("size: {e}"),
                })?,
            ),
            None => None,
        };
        Ok(VfsDriver {
            home: home.to_path_buf(),
            copy,
            default_size,
            quota: Mutex::new(quota),
            gets: UseCounts::default(),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join("dir").join(id)
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, size: Option<u64>) -> DriverResult<()> {
        check_id(NAME, id)?;
        let dir = self.dir(id);
        if dir.exists() {
            return Err(DriverError::Exists {
                driver: NAME,
                id: id.into(),
            });
        }
        let parent_dir = match parent {
            Some(p) => {
                let pd = self.dir(p);
                if !pd.is_dir() {
                    return Err(DriverError::NotFound {
                        driver: NAME,
                        id: p.into(),
                    });
                }
                Some(pd)
            }
            None => None,
        };
        std::fs::create_dir(&dir).map_err(io_err(NAME, format!("creating layer {id}")))?;
        let res = (|| {
            if let Some(bytes) = size {
                let mut q = self.quota.lock().unwrap_or_else(|p| p.into_inner());
                if q.is_none() {
                    *q = Some(ProjectQuota::new(&self.home).map_err(|e| {
                        DriverError::NotSupported {
                            driver: NAME,
                            reason: format!("size: {e}"),
                        }
                    })?);
                }
                if let Some(q) = q.as_ref() {
                    q.set_quota(&dir, bytes).map_err(|e| DriverError::Invalid {
                        driver: NAME,
                        message: e.to_string(),
                    })?;
                }
            }
            match parent_dir {
                Some(pd) => copy_tree(&pd, &dir, self.copy)
                    .map_err(io_err(NAME, format!("copying parent into layer {id}"))),
                None => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                        .map_err(io_err(NAME, "chmod"))
                }
            }
        })();
        if res.is_err() {
            let _ = remove_tree(&dir);
        }
        res
    }
}

impl Driver for VfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        image_layer_opts(NAME, opts)?;
        self.create_layer(id, parent, None)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        let size = container_size(NAME, opts, self.default_size)?;
        self.create_layer(id, parent, size)
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        self.gets.check_unused(NAME, id)?;
        let dir = self.dir(id);
        if !dir.exists() {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        remove_tree(&dir).map_err(io_err(NAME, format!("removing layer {id}")))
    }

    fn get(&self, id: &str, _mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        self.gets.acquire(id);
        Ok(dir)
    }

    fn put(&self, id: &str) -> DriverResult<()> {
        self.gets.release(NAME, id)
    }

    fn exists(&self, id: &str) -> bool {
        check_id(NAME, id).is_ok() && self.dir(id).is_dir()
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.home.join("dir")).map_err(io_err(NAME, "listing layers"))? {
            let e = e.map_err(io_err(NAME, "listing layers"))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(String, String)> {
        let fs = sys::statfs_type(&self.home)
            .map(sys::fs_name)
            .unwrap_or("unknown");
        vec![
            ("Backing Filesystem".into(), fs.into()),
            (
                "Copy".into(),
                if self.copy == CopyMode::Auto {
                    "reflink where supported".into()
                } else {
                    "full copy".into()
                },
            ),
        ]
    }

    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>> {
        if !self.exists(id) {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        Ok(BTreeMap::from([(
            "Dir".to_string(),
            self.dir(id).display().to_string(),
        )]))
    }

    fn cleanup(&self) -> DriverResult<()> {
        self.gets.clear();
        Ok(())
    }

    fn apply_target(&self, id: &str, _parent: Option<&str>) -> DriverResult<ApplyTarget> {
        if !self.exists(id) {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        Ok(ApplyTarget {
            root: self.dir(id),
            whiteouts: WhiteoutFormat::Delete,
            lowers: Vec::new(),
        })
    }
}
