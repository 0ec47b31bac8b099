//! The `overlay2` graph driver (alias `overlay`): layers as overlayfs lower directories.
//!
//! Layout under the driver's home, as Docker's:
//! ```text
//! <id>/diff     the layer's own files (overlay upper dir when mounted)
//! <id>/link     its short name; l/<short> -> ../<id>/diff
//! <id>/lower    "l/A:l/B:..." its ancestors, nearest first (absent for a base layer)
//! <id>/work     overlay work dir
//! <id>/merged   mount point
//! ```
//! Mounting uses the new mount API with `lowerdir+`, one layer per call, so a chain has no
//! length limit short of the kernel's (500); where that is missing, classic `mount(2)` with
//! short relative paths (Docker's 128-layer scheme). Diffs are native: read from the upper dir,
//! whiteout devices and opaque xattrs turned into `.wh.` entries.

mod changes;
mod mount;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use strata_graph::archive::{tree_size, Change, WhiteoutFormat};
use strata_graph::driver::{check_id, container_size, image_layer_opts, io_err};
use strata_graph::fsutil::{atomic_write, mkdir_all, remove_tree};
use strata_graph::quota::ProjectQuota;
use strata_graph::{
    sys, ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, OptionError, OptionSpec,
    StorageOpts,
};

pub use mount::MountApi;

const NAME: &str = "overlay2";

/// Marks an image (read-only) layer: mounted without an upper directory.
const READONLY: &str = "readonly";

/// The options `overlay2` accepts.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "overlay2.size",
        help: "default size limit of container layers; needs xfs mounted with pquota",
    },
    OptionSpec {
        key: "overlay2.mount_api",
        help: "auto, new (fsconfig lowerdir+) or legacy (mount(2))",
    },
    OptionSpec {
        key: "overlay2.override_kernel_check",
        help: "accepted for compatibility; ignored",
    },
];

/// The overlay2 driver.
pub struct OverlayDriver {
    home: PathBuf,
    api: MountApi,
    backing_fs: &'static str,
    default_size: Option<u64>,
    quota: Mutex<Option<Arc<ProjectQuota>>>,
    /// Per layer: how many `get`s are outstanding.
    gets: Mutex<HashMap<String, Arc<Mutex<u32>>>>,
}

fn random_link() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut b = [0u8; 26];
    rand::fill(&mut b[..]);
    b.iter()
        .map(|x| CHARS[(*x as usize) % CHARS.len()] as char)
        .collect()
}

impl OverlayDriver {
    /// Opens the driver with its home at `home` (usually `<data-root>/overlay2`).
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        opts.validate(NAME, OPTIONS)?;
        mkdir_all(&home.join("l"), 0o700).map_err(io_err(NAME, "creating home"))?;
        let magic = sys::statfs_type(home).map_err(io_err(NAME, "statfs of home"))?;
        let backing_fs = sys::fs_name(magic);
        if matches!(backing_fs, "overlayfs" | "aufs" | "zfs" | "nfs" | "fuse") {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason: format!("{} cannot hold overlay upper directories", backing_fs),
            });
        }
        if !std::fs::read_to_string("/proc/filesystems")
            .map(|s| s.lines().any(|l| l.ends_with("\toverlay")))
            .unwrap_or(false)
        {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason: "the kernel has no overlay filesystem".into(),
            });
        }
        if !mount::supports_dtype(home).map_err(io_err(NAME, "checking d_type"))? {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason: format!("{} does not report d_type", home.display()),
            });
        }
        let want = opts.get("overlay2.mount_api").unwrap_or("auto");
        let api = match want {
            "auto" => mount::probe(home).map_err(|e| DriverError::NotSupported {
                driver: NAME,
                reason: e.to_string(),
            })?,
            "new" | "legacy" => {
                let want_api = if want == "new" {
                    MountApi::New
                } else {
                    MountApi::Legacy
                };
                mount::probe_one(home, want_api).map_err(|e| DriverError::NotSupported {
                    driver: NAME,
                    reason: format!("mount API {want}: {e}"),
                })?;
                want_api
            }
            other => {
                return Err(OptionError::BadValue {
                    driver: NAME.into(),
                    key: "overlay2.mount_api".into(),
                    value: other.into(),
                    reason: "expected auto, new or legacy".into(),
                }
                .into())
            }
        };
        let default_size = opts.size(NAME, "overlay2.size")?;
        let d = OverlayDriver {
            home: home.to_path_buf(),
            api,
            backing_fs,
            default_size,
            quota: Mutex::new(None),
            gets: Mutex::new(HashMap::new()),
        };
        if default_size.is_some() {
            d.quota()?;
        }
        tracing::info!(home = %home.display(), backing_fs, api = ?api, "overlay2 ready");
        Ok(d)
    }

    /// Which mount API the driver uses.
    pub fn mount_api(&self) -> MountApi {
        self.api
    }

    fn quota(&self) -> DriverResult<Arc<ProjectQuota>> {
        let mut q = self.quota.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = q.as_ref() {
            return Ok(q.clone());
        }
        let made =
            Arc::new(
                ProjectQuota::new(&self.home).map_err(|e| DriverError::NotSupported {
                    driver: NAME,
                    reason: format!("overlay2.size: {e}"),
                })?,
            );
        // Project ids already used by existing layers must not be handed out again.
        for id in self.list()? {
            made.reserve_existing(&self.dir(&id));
        }
        *q = Some(made.clone());
        Ok(made)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.home.join(id)
    }

    fn lower_ids(&self, id: &str) -> DriverResult<Vec<String>> {
        match std::fs::read_to_string(self.dir(id).join("lower")) {
            Ok(s) => Ok(s
                .trim()
                .split(':')
                .filter(|x| !x.is_empty())
                .map(|x| x.to_string())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(NAME, format!("reading lower of {id}"))(e)),
        }
    }

    /// Absolute lower directories of `id`, nearest first.
    fn lower_dirs(&self, id: &str) -> DriverResult<Vec<PathBuf>> {
        Ok(self
            .lower_ids(id)?
            .iter()
            .map(|l| self.home.join(l))
            .collect())
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
        if let Some(p) = parent {
            if !self.exists(p) {
                return Err(DriverError::NotFound {
                    driver: NAME,
                    id: p.into(),
                });
            }
        }
        std::fs::create_dir(&dir).map_err(io_err(NAME, format!("creating layer {id}")))?;
        let res = (|| {
            if let Some(bytes) = size {
                self.quota()?
                    .set_quota(&dir, bytes)
                    .map_err(|e| DriverError::Invalid {
                        driver: NAME,
                        message: e.to_string(),
                    })?;
            }
            let diff = dir.join("diff");
            std::fs::create_dir(&diff).map_err(io_err(NAME, "creating diff"))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(0o755))
                .map_err(io_err(NAME, "chmod diff"))?;
            let link = random_link();
            std::os::unix::fs::symlink(format!("../{id}/diff"), self.home.join("l").join(&link))
                .map_err(io_err(NAME, "creating link"))?;
            atomic_write(&dir.join("link"), link.as_bytes())
                .map_err(io_err(NAME, "writing link"))?;
            if let Some(p) = parent {
                std::fs::create_dir(dir.join("work")).map_err(io_err(NAME, "creating work"))?;
                std::fs::create_dir(dir.join("merged")).map_err(io_err(NAME, "creating merged"))?;
                let plink = std::fs::read_to_string(self.dir(p).join("link"))
                    .map_err(io_err(NAME, format!("reading link of {p}")))?;
                let mut lower = format!("l/{}", plink.trim());
                let plower = self.lower_ids(p)?;
                if !plower.is_empty() {
                    lower.push(':');
                    lower.push_str(&plower.join(":"));
                }
                atomic_write(&dir.join("lower"), lower.as_bytes())
                    .map_err(io_err(NAME, "writing lower"))?;
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = self.remove_dirs(id);
        }
        res
    }

    fn remove_dirs(&self, id: &str) -> DriverResult<()> {
        let dir = self.dir(id);
        if let Ok(link) = std::fs::read_to_string(dir.join("link")) {
            let l = self.home.join("l").join(link.trim());
            if !link.trim().is_empty() {
                let _ = std::fs::remove_file(l);
            }
        }
        let merged = dir.join("merged");
        if strata_graph::fsutil::is_mountpoint(&merged).unwrap_or(false) {
            let _ = sys::umount2(&merged, libc::MNT_DETACH);
        }
        remove_tree(&dir).map_err(io_err(NAME, format!("removing layer {id}")))
    }

    fn counter(&self, id: &str) -> Arc<Mutex<u32>> {
        self.gets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.into())
            .or_default()
            .clone()
    }
}

impl Driver for OverlayDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        image_layer_opts(NAME, opts)?;
        self.create_layer(id, parent, None)?;
        atomic_write(&self.dir(id).join(READONLY), b"")
            .map_err(io_err(NAME, format!("marking layer {id} read-only")))
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        let size = container_size(NAME, opts, self.default_size)?;
        self.create_layer(id, parent, size)
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        let c = self.counter(id);
        let n = c.lock().unwrap_or_else(|p| p.into_inner());
        if *n > 0 {
            return Err(DriverError::Busy {
                driver: NAME,
                id: id.into(),
                mounts: *n,
            });
        }
        if !self.dir(id).exists() {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        let res = self.remove_dirs(id);
        drop(n);
        self.gets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        res
    }

    fn get(&self, id: &str, _mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        let dir = self.dir(id);
        if !dir.join("diff").is_dir() {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        let c = self.counter(id);
        let mut n = c.lock().unwrap_or_else(|p| p.into_inner());
        let lowers = self.lower_dirs(id)?;
        if lowers.is_empty() {
            // A base layer is its own diff directory.
            *n += 1;
            return Ok(dir.join("diff"));
        }
        let merged = dir.join("merged");
        if *n == 0
            && !strata_graph::fsutil::is_mountpoint(&merged)
                .map_err(io_err(NAME, "reading mountinfo"))?
        {
            // Image layers are mounted read-only, their own files as the top lower layer;
            // container layers get their diff as the writable upper directory.
            let diff = dir.join("diff");
            let work = dir.join("work");
            let (stack, upper) = if dir.join(READONLY).exists() {
                (
                    std::iter::once(diff.clone())
                        .chain(lowers.iter().cloned())
                        .collect::<Vec<_>>(),
                    None,
                )
            } else {
                (lowers.clone(), Some((diff.as_path(), work.as_path())))
            };
            mount::mount_overlay(self.api, &self.home, &stack, upper, &merged).map_err(io_err(
                NAME,
                format!("mounting layer {id} ({} lower layers)", lowers.len()),
            ))?;
        }
        *n += 1;
        Ok(merged)
    }

    fn put(&self, id: &str) -> DriverResult<()> {
        let c = self.counter(id);
        let mut n = c.lock().unwrap_or_else(|p| p.into_inner());
        if *n == 0 {
            return Err(DriverError::Invalid {
                driver: NAME,
                message: format!("put of layer {id}, which is not mounted"),
            });
        }
        *n -= 1;
        if *n == 0 && self.dir(id).join("lower").exists() {
            let merged = self.dir(id).join("merged");
            if let Err(e) = strata_graph::fsutil::unmount(&merged) {
                *n += 1;
                return Err(io_err(NAME, format!("unmounting {id}"))(e));
            }
        }
        Ok(())
    }

    fn exists(&self, id: &str) -> bool {
        check_id(NAME, id).is_ok() && self.dir(id).join("diff").is_dir()
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.home).map_err(io_err(NAME, "listing layers"))? {
            let e = e.map_err(io_err(NAME, "listing layers"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "l"
                || name.starts_with('.')
                || name == "backingFsBlockDev"
                || !e.path().is_dir()
            {
                continue;
            }
            out.push(name);
        }
        Ok(out)
    }

    fn max_depth(&self) -> Option<usize> {
        Some(match self.api {
            // The kernel's own limit on stacked lower layers (OVL_MAX_STACK).
            MountApi::New => 500,
            // Every lower's short link (`l/<26 chars>:`) must fit in one page of mount options
            // beside the upper and work dirs, as in Docker.
            MountApi::Legacy => 128,
        })
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![
            ("Backing Filesystem".into(), self.backing_fs.into()),
            ("Supports d_type".into(), "true".into()),
            ("Using metacopy".into(), "false".into()),
            ("Native Overlay Diff".into(), "true".into()),
            ("userxattr".into(), "false".into()),
            (
                "Mount API".into(),
                match self.api {
                    MountApi::New => "new (fsconfig lowerdir+, one option per layer)".into(),
                    MountApi::Legacy => {
                        "legacy (mount(2), all layers in one page of options)".into()
                    }
                },
            ),
            (
                "Project Quota".into(),
                (self.quota.lock().map(|q| q.is_some()).unwrap_or(false)
                    || ProjectQuota::probe(&self.home))
                .to_string(),
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
        let dir = self.dir(id);
        let mut m = BTreeMap::new();
        let lowers = self.lower_dirs(id)?;
        if !lowers.is_empty() {
            let l: Vec<String> = lowers
                .iter()
                .map(|p| {
                    std::fs::canonicalize(p)
                        .unwrap_or(p.clone())
                        .display()
                        .to_string()
                })
                .collect();
            m.insert("LowerDir".into(), l.join(":"));
        }
        m.insert("MergedDir".into(), dir.join("merged").display().to_string());
        m.insert("UpperDir".into(), dir.join("diff").display().to_string());
        m.insert("WorkDir".into(), dir.join("work").display().to_string());
        Ok(m)
    }

    fn cleanup(&self) -> DriverResult<()> {
        strata_graph::fsutil::unmount_all_under(&self.home)
            .map_err(io_err(NAME, "unmounting layers"))?;
        self.gets.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
            root: self.dir(id).join("diff"),
            whiteouts: WhiteoutFormat::Overlay,
            lowers: self.lower_dirs(id)?,
        })
    }

    fn native_diff(&self) -> bool {
        true
    }

    fn diff(
        &self,
        id: &str,
        _parent: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> DriverResult<()> {
        if !self.exists(id) {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        changes::export_upper(&self.dir(id).join("diff"), out)
            .map_err(io_err(NAME, format!("diff of layer {id}")))
    }

    fn changes(&self, id: &str, _parent: Option<&str>) -> DriverResult<Vec<Change>> {
        if !self.exists(id) {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        changes::upper_changes(&self.dir(id).join("diff"), &self.lower_dirs(id)?)
            .map_err(io_err(NAME, format!("changes of layer {id}")))
    }

    fn diff_size(&self, id: &str, _parent: Option<&str>) -> DriverResult<u64> {
        if !self.exists(id) {
            return Err(DriverError::NotFound {
                driver: NAME,
                id: id.into(),
            });
        }
        tree_size(&self.dir(id).join("diff")).map_err(io_err(NAME, format!("size of layer {id}")))
    }
}
