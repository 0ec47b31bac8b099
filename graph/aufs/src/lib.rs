//! The `aufs` graph driver (issue #11), as dockerd's was: layers as directories (branches),
//! a layer with parents mounted as an aufs union of its read-write branch over its parents'
//! read-only ones (`+wh`: their whiteouts count), and a native diff that reads the layer's
//! own branch.
//!
//! - [`branches`]: the mount data, split into page-sized pieces (`append:` remounts) for
//!   many-layer images;
//! - [`layers`]: the branches on disk, whiteouts, changes and export: none of it needs aufs
//!   in the kernel, so it is tested everywhere.
//!
//! aufs exists only in kernels built with its patches; where `/proc/filesystems` does not
//! list it the driver refuses to start, saying so.
//!
//! Its own crate, as every driver: the contract is `strata-graph`'s, the registry picks it.

pub mod branches;
pub mod layers;

use layers::LayerDirs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata_graph::archive::{Change, WhiteoutFormat};
use strata_graph::driver::{check_id, image_layer_opts, io_err, MountCounts};
use strata_graph::fsutil::unmount_all_under;
use strata_graph::{
    sys, ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, OptionSpec, StorageOpts,
};

const NAME: &str = "aufs";

/// aufs takes no options.
pub const OPTIONS: &[OptionSpec] = &[];

/// Filesystems aufs cannot use as branches.
const BAD_BACKING: &[&str] = &["aufs", "btrfs", "ecryptfs"];

/// Why aufs cannot be used on this host, if it cannot: it must be listed in
/// `/proc/filesystems`.
pub fn unavailable() -> Option<String> {
    match std::fs::read_to_string("/proc/filesystems") {
        Ok(t) if t.lines().any(|l| l.split_whitespace().last() == Some("aufs")) => None,
        Ok(_) => Some(
            "aufs is not in /proc/filesystems: this kernel was built without the aufs patches (no Debian kernel has them)"
                .into(),
        ),
        Err(e) => Some(format!("reading /proc/filesystems: {e}")),
    }
}

/// The aufs driver.
pub struct AufsDriver {
    home: PathBuf,
    dirs: LayerDirs,
    dirperm1: bool,
    backing: &'static str,
    /// Outstanding `get`s.
    mounts: MountCounts,
}

impl AufsDriver {
    /// Opens the driver with its home at `home`; refused where the kernel has no aufs.
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        opts.validate(NAME, OPTIONS)?;
        if let Some(reason) = unavailable() {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason,
            });
        }
        let dirs = LayerDirs::open(home).map_err(io_err(NAME, "creating home"))?;
        let magic = sys::statfs_type(home).map_err(io_err(NAME, "statfs of the home"))?;
        let backing = sys::fs_name(magic);
        if BAD_BACKING.contains(&backing) {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason: format!(
                    "aufs cannot use {backing} for its branches ({})",
                    home.display()
                ),
            });
        }
        unmount_all_under(&home.join("mnt")).map_err(io_err(NAME, "unmounting leftovers"))?;
        let dirperm1 = probe_dirperm1(home);
        Ok(AufsDriver {
            home: home.to_path_buf(),
            dirs,
            dirperm1,
            backing,
            mounts: MountCounts::default(),
        })
    }

    /// Whether `parent` is `id`'s own parent, so that its branch alone is the diff (else the
    /// trees are compared).
    fn own_parent(&self, id: &str, parent: Option<&str>) -> DriverResult<bool> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        let parents = self
            .dirs
            .parents(id)
            .map_err(io_err(NAME, format!("reading the parents of {id}")))?;
        Ok(parents.first().map(String::as_str) == parent)
    }

    fn not_found(id: &str) -> DriverError {
        DriverError::NotFound {
            driver: NAME,
            id: id.into(),
        }
    }

    fn mount(&self, id: &str, mount_label: &str) -> DriverResult<PathBuf> {
        let lowers = self
            .dirs
            .lower_dirs(id)
            .map_err(io_err(NAME, format!("reading the parents of {id}")))?;
        // A layer without parents is its branch: nothing to mount.
        if lowers.is_empty() {
            return Ok(self.dirs.diff(id));
        }
        let page = page_size();
        let plan = branches::plan(
            &self.dirs.diff(id),
            &lowers,
            self.dirperm1,
            mount_label,
            page,
        )
        .map_err(|e| DriverError::Invalid {
            driver: NAME,
            message: e.to_string(),
        })?;
        let target = self.dirs.mnt(id);
        sys::mount(b"none", &target, b"aufs", 0, Some(plan.data.as_bytes()))
            .map_err(io_err(NAME, format!("mounting layer {id}")))?;
        for a in &plan.appends {
            if let Err(e) = sys::mount(
                b"none",
                &target,
                b"aufs",
                libc::MS_REMOUNT,
                Some(a.as_bytes()),
            ) {
                let _ = sys::umount2(&target, libc::MNT_DETACH);
                return Err(io_err(NAME, format!("appending a branch to layer {id}"))(e));
            }
        }
        Ok(target)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Whether the kernel's aufs takes `dirperm1` (aufs 3.x and later): a trial mount.
fn probe_dirperm1(home: &Path) -> bool {
    let base = home.join(".probe");
    let (ro, rw, mnt) = (base.join("ro"), base.join("rw"), base.join("mnt"));
    let ok = [&ro, &rw, &mnt]
        .iter()
        .all(|d| std::fs::create_dir_all(d).is_ok())
        && {
            let data = format!("br:{}=rw:{}=ro+wh,dirperm1", rw.display(), ro.display());
            let mounted = sys::mount(b"none", &mnt, b"aufs", 0, Some(data.as_bytes())).is_ok();
            if mounted {
                let _ = sys::umount2(&mnt, 0);
            }
            mounted
        };
    let _ = strata_graph::fsutil::remove_tree(&base);
    if !ok {
        tracing::warn!("this aufs does not take dirperm1; permissions of lower directories apply");
    }
    ok
}

impl Driver for AufsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        image_layer_opts(NAME, opts)?;
        self.create_rw(id, parent, &CreateOpts::default())
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        check_id(NAME, id)?;
        // No size limits: aufs has no quota of its own.
        opts.storage_opt.validate(NAME, &[])?;
        if self.dirs.exists(id) {
            return Err(DriverError::Exists {
                driver: NAME,
                id: id.into(),
            });
        }
        if let Some(p) = parent {
            if !self.dirs.exists(p) {
                return Err(Self::not_found(p));
            }
        }
        self.dirs
            .create(id, parent)
            .map_err(io_err(NAME, format!("creating layer {id}")))
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        self.mounts.check_unused(NAME, id)?;
        if !self.dirs.exists(id) {
            return Err(Self::not_found(id));
        }
        self.dirs
            .remove(id)
            .map_err(io_err(NAME, format!("removing layer {id}")))
    }

    fn get(&self, id: &str, mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        if !self.dirs.exists(id) {
            return Err(Self::not_found(id));
        }
        self.mounts.acquire(id, || self.mount(id, mount_label))
    }

    fn put(&self, id: &str) -> DriverResult<()> {
        // A layer without parents was never mounted: its mount point is no mount (EINVAL).
        self.mounts.release(NAME, id, || {
            strata_graph::fsutil::unmount(&self.dirs.mnt(id))
                .map(|_| ())
                .map_err(io_err(NAME, format!("unmounting layer {id}")))
        })
    }

    fn exists(&self, id: &str) -> bool {
        check_id(NAME, id).is_ok() && self.dirs.exists(id)
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        self.dirs.list().map_err(io_err(NAME, "listing layers"))
    }

    fn max_depth(&self) -> Option<usize> {
        // aufs is built with at most 127 branches; a container's own layer takes one.
        Some(126)
    }

    fn status(&self) -> Vec<(String, String)> {
        let n = self.dirs.list().map(|l| l.len()).unwrap_or(0);
        vec![
            ("Root Dir".into(), self.home.display().to_string()),
            ("Backing Filesystem".into(), self.backing.into()),
            ("Dirs".into(), n.to_string()),
            ("Dirperm1 Supported".into(), self.dirperm1.to_string()),
        ]
    }

    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        Ok(BTreeMap::new())
    }

    fn cleanup(&self) -> DriverResult<()> {
        self.mounts.release_all(|_| Ok(()))?;
        unmount_all_under(&self.home.join("mnt")).map_err(io_err(NAME, "unmounting"))?;
        Ok(())
    }

    fn apply_target(&self, id: &str, _parent: Option<&str>) -> DriverResult<ApplyTarget> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        Ok(ApplyTarget {
            root: self.dirs.diff(id),
            // The branch keeps whiteouts as the tar has them: aufs reads them so.
            whiteouts: WhiteoutFormat::None,
            lowers: self
                .dirs
                .lower_dirs(id)
                .map_err(io_err(NAME, format!("reading the parents of {id}")))?,
        })
    }

    fn native_diff(&self) -> bool {
        true
    }

    fn diff(
        &self,
        id: &str,
        parent: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> DriverResult<()> {
        if !self.own_parent(id, parent)? {
            return strata_graph::driver::naive::diff(self, id, parent, out);
        }
        self.dirs
            .export(id, out)
            .map_err(io_err(NAME, format!("exporting layer {id}")))
    }

    fn changes(&self, id: &str, parent: Option<&str>) -> DriverResult<Vec<Change>> {
        if !self.own_parent(id, parent)? {
            return strata_graph::driver::naive::changes(self, id, parent);
        }
        self.dirs
            .changes(id)
            .map_err(io_err(NAME, format!("listing the changes of {id}")))
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> DriverResult<u64> {
        if !self.own_parent(id, parent)? {
            return strata_graph::driver::naive::diff_size(self, id, parent);
        }
        self.dirs
            .size(id)
            .map_err(io_err(NAME, format!("sizing layer {id}")))
    }
}
