//! The `btrfs` graph driver (issue #9): each layer is a subvolume under
//! `<home>/subvolumes/<id>`; a child is a snapshot of its parent (block-level copy-on-write,
//! nothing copied); image layers are made read-only once their content is in, container
//! layers are writable snapshots. Container size limits (`--storage-opt size=`) are qgroup
//! limits, quotas being enabled on first use. Everything through the btrfs ioctls
//! ([`ioctl`]), no C library.
//!
//! Its own crate, as every driver: the contract is `strata-graph`'s, the registry picks it.

pub mod ioctl;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use strata_graph::archive::WhiteoutFormat;
use strata_graph::driver::{check_id, container_size, image_layer_opts, io_err, UseCounts};
use strata_graph::fsutil::mkdir_all;
use strata_graph::{
    sys, ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, OptionSpec, StorageOpts,
};

const NAME: &str = "btrfs";

/// The options `btrfs` accepts.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "size",
        help: "default size limit of container layers (a qgroup limit)",
    },
    OptionSpec {
        key: "btrfs.min_space",
        help: "the smallest size limit a container layer may be given",
    },
];

/// The btrfs driver.
pub struct BtrfsDriver {
    home: PathBuf,
    default_size: Option<u64>,
    min_space: Option<u64>,
    quota_enabled: Mutex<bool>,
    gets: UseCounts,
}

fn open_dir(p: &Path) -> std::io::Result<OwnedFd> {
    sys::open(p, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

impl BtrfsDriver {
    /// Opens the driver with its home at `home`, which must be on btrfs.
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        opts.validate(NAME, OPTIONS)?;
        mkdir_all(&home.join("subvolumes"), 0o700).map_err(io_err(NAME, "creating home"))?;
        let t = sys::statfs_type(home).map_err(io_err(NAME, "statfs of the home"))?;
        if t != ioctl::SUPER_MAGIC {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason: format!(
                    "{} is on {} (filesystem magic {t:#x}), not btrfs; the btrfs driver needs a data root on btrfs",
                    home.display(),
                    sys::fs_name(t)
                ),
            });
        }
        let min_space = opts.size(NAME, "btrfs.min_space")?;
        let default_size = opts.size(NAME, "size")?;
        if let (Some(s), Some(m)) = (default_size, min_space) {
            if s < m {
                return Err(DriverError::Invalid {
                    driver: NAME,
                    message: format!("size {s} is below btrfs.min_space {m}"),
                });
            }
        }
        // Change-tracking records of layers removed while the daemon was killed.
        if let Ok(records) = std::fs::read_dir(home.join("origins")) {
            for r in records.flatten() {
                if !home.join("subvolumes").join(r.file_name()).exists() {
                    let _ = std::fs::remove_file(r.path());
                }
            }
        }
        Ok(BtrfsDriver {
            home: home.to_path_buf(),
            default_size,
            min_space,
            quota_enabled: Mutex::new(false),
            gets: UseCounts::default(),
        })
    }

    fn subvolumes(&self) -> PathBuf {
        self.home.join("subvolumes")
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.subvolumes().join(id)
    }

    fn not_found(id: &str) -> DriverError {
        DriverError::NotFound {
            driver: NAME,
            id: id.into(),
        }
    }

    fn create_subvolume(
        &self,
        id: &str,
        parent: Option<&str>,
        size: Option<u64>,
    ) -> DriverResult<()> {
        check_id(NAME, id)?;
        if self.dir(id).exists() {
            return Err(DriverError::Exists {
                driver: NAME,
                id: id.into(),
            });
        }
        if let (Some(s), Some(m)) = (size, self.min_space) {
            if s < m {
                return Err(DriverError::Invalid {
                    driver: NAME,
                    message: format!("size {s} is below btrfs.min_space {m}"),
                });
            }
        }
        let subs = open_dir(&self.subvolumes()).map_err(io_err(NAME, "opening subvolumes"))?;
        match parent {
            Some(p) => {
                check_id(NAME, p)?;
                let pd = open_dir(&self.dir(p)).map_err(|_| Self::not_found(p))?;
                ioctl::snapshot(pd.as_fd(), subs.as_fd(), id, false)
                    .map_err(io_err(NAME, format!("snapshotting {p} as {id}")))?;
            }
            None => {
                ioctl::subvol_create(subs.as_fd(), id)
                    .map_err(io_err(NAME, format!("creating subvolume {id}")))?;
                let dir = self.dir(id);
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(NAME, "chmod"))?;
            }
        }
        if let Some(bytes) = size {
            if let Err(e) = self.limit(id, bytes) {
                let _ = self.remove_subvolume(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sets a qgroup limit on subvolume `id`, enabling quotas first if needed.
    fn limit(&self, id: &str, bytes: u64) -> DriverResult<()> {
        let fd = open_dir(&self.dir(id)).map_err(io_err(NAME, "opening the subvolume"))?;
        {
            let mut on = self.quota_enabled.lock().unwrap_or_else(|p| p.into_inner());
            if !*on {
                let home = open_dir(&self.home).map_err(io_err(NAME, "opening home"))?;
                ioctl::quota_enable(home.as_fd()).map_err(io_err(NAME, "enabling btrfs quotas"))?;
                *on = true;
            }
        }
        let sid = ioctl::subvol_id(fd.as_fd()).map_err(io_err(NAME, "subvolume id"))?;
        // Enabling quotas makes the level-0 qgroup of every subvolume, and new subvolumes get
        // theirs; older kernels may lack one for a subvolume made before, so it is asked for.
        // Since 6.7 the kernel refuses to create subvolume qgroups itself (EINVAL): they
        // exist already.
        match ioctl::qgroup_create(fd.as_fd(), sid, true) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::EINVAL)) => {}
            Err(e) => return Err(io_err(NAME, "creating a qgroup")(e)),
        }
        ioctl::qgroup_limit(fd.as_fd(), sid, bytes).map_err(io_err(NAME, "setting a qgroup limit"))
    }

    /// Nested subvolumes inside `dir` (a container may make its own), deepest first.
    fn nested(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd.flatten() {
                let Ok(md) = e.path().symlink_metadata() else {
                    continue;
                };
                if !md.is_dir() {
                    continue;
                }
                // A subvolume's root directory has inode 256; no other directory does.
                walk(&e.path(), out);
                if md.ino() == ioctl::FIRST_FREE_OBJECTID {
                    out.push(e.path());
                }
            }
        }
        walk(dir, &mut out);
        out
    }

    fn destroy(path: &Path) -> std::io::Result<()> {
        let parent = path
            .parent()
            .ok_or_else(|| std::io::Error::other("no parent"))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other("bad name"))?;
        if let Ok(fd) = open_dir(path) {
            let _ = ioctl::set_readonly(fd.as_fd(), false);
        }
        let pfd = open_dir(parent)?;
        ioctl::subvol_destroy(pfd.as_fd(), name)
    }

    fn remove_subvolume(&self, id: &str) -> DriverResult<()> {
        let dir = self.dir(id);
        let qgroup = open_dir(&dir)
            .ok()
            .and_then(|fd| ioctl::subvol_id(fd.as_fd()).ok());
        for n in Self::nested(&dir) {
            Self::destroy(&n).map_err(io_err(
                NAME,
                format!("removing nested subvolume {}", n.display()),
            ))?;
        }
        Self::destroy(&dir).map_err(io_err(NAME, format!("removing subvolume {id}")))?;
        // The qgroup of a deleted subvolume goes when the kernel lets it (EBUSY until the
        // subvolume is cleaned): retried a few times, else left to the next removal's luck.
        if let (Some(q), true) = (
            qgroup,
            *self.quota_enabled.lock().unwrap_or_else(|p| p.into_inner()),
        ) {
            if let Ok(home) = open_dir(&self.home) {
                for attempt in 0..5 {
                    match ioctl::qgroup_create(home.as_fd(), q, false) {
                        Ok(()) => break,
                        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 4 => {
                            std::thread::sleep(Duration::from_millis(20 << attempt));
                        }
                        Err(e) => {
                            tracing::debug!(
                                qgroup = q,
                                "qgroup of removed subvolume {id} stays: {e}"
                            );
                            break;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn origins(&self) -> PathBuf {
        self.home.join("origins")
    }

    /// Records the transaction that created snapshot `id` of `parent`: inodes of `id` changed in later transactions are its changes. Only a snapshot of a
    /// read-only parent is tracked: a parent that can still change would make the two trees
    /// differ where `id` did not change.
    fn record_origin(&self, id: &str, parent: &str) -> std::io::Result<()> {
        if !ioctl::is_readonly(open_dir(&self.dir(parent))?.as_fd())? {
            return Ok(());
        }
        let fd = open_dir(&self.dir(id))?;
        let t = match ioctl::created_transid(fd.as_fd()) {
            Ok(t) => t,
            // Before kernel 4.18: commit and take that transaction.
            Err(_) => {
                let t = ioctl::start_sync(fd.as_fd())?;
                ioctl::wait_sync(fd.as_fd(), t)?;
                t
            }
        };
        mkdir_all(&self.origins(), 0o700)?;
        // Not synced: after a crash the record may be missing or cut short. Missing, or a cut
        // parent ID, means a full comparison; a cut transaction number is smaller, which only
        // makes more directories count as changed. Either way the answer stays right.
        std::fs::write(self.origins().join(id), format!("{parent} {t}\n"))
    }

    /// The parent and transaction recorded for `id`.
    fn origin(&self, id: &str) -> Option<(String, u64)> {
        let text = std::fs::read_to_string(self.origins().join(id)).ok()?;
        let (p, t) = text.trim().split_once(' ')?;
        Some((p.to_string(), t.parse().ok()?))
    }

    /// The directories of `id` (relative paths, `""` the root) that may differ from `parent`:
    /// those holding an inode changed since the snapshot, and every ancestor of one. `None`
    /// when the layer is not a tracked snapshot of `parent` (then the driver compares the
    /// whole trees).
    pub fn changed_dirs(
        &self,
        id: &str,
        parent: &str,
    ) -> Option<std::collections::HashSet<Vec<u8>>> {
        let (p, after) = self.origin(id)?;
        if p != parent || !ioctl::is_readonly(open_dir(&self.dir(&p)).ok()?.as_fd()).ok()? {
            return None;
        }
        let fd = open_dir(&self.dir(id)).ok()?;
        let tree = ioctl::subvol_id(fd.as_fd()).ok()?;
        // Inode updates wait as delayed items until a commit writes them into the tree:
        // commit first, or recent changes would be missed.
        let t = ioctl::start_sync(fd.as_fd()).ok()?;
        ioctl::wait_sync(fd.as_fd(), t).ok()?;
        let changed = ioctl::changed_inodes(fd.as_fd(), tree, after).ok()?;
        let mut dirty = std::collections::HashSet::new();
        for c in changed {
            let paths = if c.ino == ioctl::FIRST_FREE_OBJECTID {
                vec![Vec::new()] // the root directory itself
            } else {
                match ioctl::ino_paths(fd.as_fd(), c.ino) {
                    Ok(p) => p,
                    // An inode without a path (unlinked, still open): nothing to show.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(_) => return None,
                }
            };
            let is_dir = c.mode & libc::S_IFMT == libc::S_IFDIR;
            for path in paths {
                strata_graph::archive::mark_dirty(&mut dirty, &path, is_dir);
            }
        }
        Some(dirty)
    }

    /// Changes of `id` against `parent`: the tree comparison, reading only the directories
    /// the generation numbers say may differ when `id` is a tracked snapshot of `parent`.
    fn native_changes(
        &self,
        id: &str,
        parent: Option<&str>,
    ) -> DriverResult<Option<Vec<strata_graph::archive::Change>>> {
        let Some(p) = parent else { return Ok(None) };
        let Some(dirty) = self.changed_dirs(id, p) else {
            return Ok(None);
        };
        let changes =
            strata_graph::archive::changes_dirs_pruned(&self.dir(id), Some(&self.dir(p)), &|rel| {
                dirty.contains(rel)
            })
            .map_err(io_err(NAME, format!("comparing layer {id} with {p}")))?;
        Ok(Some(changes))
    }

    /// Whether quotas are on for the filesystem (known once a limit was set here).
    fn quotas(&self) -> bool {
        *self.quota_enabled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Driver for BtrfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        image_layer_opts(NAME, opts)?;
        self.create_subvolume(id, parent, None)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        let size = container_size(NAME, opts, self.default_size)?;
        self.create_subvolume(id, parent, size)?;
        if let Some(p) = parent {
            // The transaction that holds the snapshot: what changes later is the diff.
            if let Err(e) = self.record_origin(id, p) {
                tracing::warn!(
                    layer = id,
                    "no change tracking for this layer (a full comparison will be used): {e}"
                );
            }
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        self.gets.check_unused(NAME, id)?;
        if !self.dir(id).exists() {
            return Err(Self::not_found(id));
        }
        self.remove_subvolume(id)?;
        let _ = std::fs::remove_file(self.origins().join(id));
        Ok(())
    }

    fn get(&self, id: &str, _mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(Self::not_found(id));
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
        for e in std::fs::read_dir(self.subvolumes()).map_err(io_err(NAME, "listing layers"))? {
            let e = e.map_err(io_err(NAME, "listing layers"))?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    fn status(&self) -> Vec<(String, String)> {
        vec![
            (
                "Build Version".into(),
                format!("strata btrfs ioctls {}", env!("CARGO_PKG_VERSION")),
            ),
            ("Library Version".into(), "none (ioctls)".into()),
            (
                "Quotas".into(),
                if self.quotas() {
                    "enabled"
                } else {
                    "not enabled"
                }
                .into(),
            ),
        ]
    }

    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        let dir = self.dir(id);
        let mut m = BTreeMap::from([("Subvolume".to_string(), dir.display().to_string())]);
        if let Ok(fd) = open_dir(&dir) {
            if let Ok(sid) = ioctl::subvol_id(fd.as_fd()) {
                m.insert("SubvolumeID".into(), sid.to_string());
            }
        }
        Ok(m)
    }

    fn cleanup(&self) -> DriverResult<()> {
        self.gets.clear();
        Ok(())
    }

    fn apply_target(&self, id: &str, _parent: Option<&str>) -> DriverResult<ApplyTarget> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        Ok(ApplyTarget {
            root: self.dir(id),
            whiteouts: WhiteoutFormat::Delete,
            lowers: Vec::new(),
        })
    }

    fn native_diff(&self) -> bool {
        true
    }

    fn changes(
        &self,
        id: &str,
        parent: Option<&str>,
    ) -> DriverResult<Vec<strata_graph::archive::Change>> {
        match self.native_changes(id, parent)? {
            Some(c) => Ok(c),
            None => strata_graph::driver::naive::changes(self, id, parent),
        }
    }

    fn diff(
        &self,
        id: &str,
        parent: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> DriverResult<()> {
        match self.native_changes(id, parent)? {
            Some(c) => strata_graph::archive::export_changes(&self.dir(id), &c, out)
                .map(|_| ())
                .map_err(io_err(NAME, format!("exporting the changes of {id}"))),
            None => strata_graph::driver::naive::diff(self, id, parent, out),
        }
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> DriverResult<u64> {
        match self.native_changes(id, parent)? {
            Some(c) => strata_graph::archive::changes_size(&self.dir(id), &c)
                .map_err(io_err(NAME, format!("sizing the changes of {id}"))),
            None => strata_graph::driver::naive::diff_size(self, id, parent),
        }
    }

    /// An image layer's content is in: it becomes read-only.
    fn release_apply_target(&self, id: &str) -> DriverResult<()> {
        let fd = open_dir(&self.dir(id)).map_err(|_| Self::not_found(id))?;
        ioctl::set_readonly(fd.as_fd(), true)
            .map_err(io_err(NAME, format!("making {id} read-only")))
    }
}
