//! The `zfs` graph driver (issue #11): each layer is a ZFS dataset under a parent dataset
//! (`zfs.fsname`, by default the dataset the data root is on). A base layer is a new
//! filesystem; a child is a clone of a snapshot of its parent, so nothing is copied. A
//! container layer is a writable clone; `--storage-opt size=` is its `quota`. Datasets have
//! `mountpoint=legacy` and are mounted by the driver under `<home>/graph/<id>`, as dockerd
//! does.
//!
//! Each clone's origin snapshot (`<parent>@<id>`) is marked for deferred destruction right
//! after the clone is made: ZFS destroys it by itself when the clone goes, so removing a
//! layer leaves nothing behind. A create interrupted between its steps leaves a snapshot
//! that the next start finds and finishes off.
//!
//! ZFS is driven through its commands ([`cmd`]), as dockerd does through go-zfs; `zfs diff`
//! ([`diff`]) tells which directories of a clone changed, so a diff reads only those.
//!
//! Its own crate, as every driver: the contract is `strata-graph`'s, the registry picks it.

pub mod cmd;
pub mod diff;
pub mod snapshots;

use cmd::ZfsError;
use snapshots::SharedSnapshots;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use strata_graph::archive::{self, Change, WhiteoutFormat};
use strata_graph::driver::{
    check_id, container_size, image_layer_opts, io_err, with_layer_and_parent, MountCounts,
};
use strata_graph::fsutil::{mkdir_all, mount_of, unmount, unmount_all_under};
use strata_graph::{
    sys, ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, OptionSpec, StorageOpts, Stray,
};

const NAME: &str = "zfs";

/// The options `zfs` accepts.
pub const OPTIONS: &[OptionSpec] = &[OptionSpec {
    key: "zfs.fsname",
    help: "the dataset that holds the layers' datasets (default: the one the data root is on)",
}];

/// The zfs driver.
pub struct ZfsDriver {
    home: PathBuf,
    /// The parent dataset: layer `id` is `<fsname>/<id>`.
    fsname: String,
    /// The layers that exist (read at start, kept up to date), so that `exists` runs no
    /// command.
    layers: Mutex<HashSet<String>>,
    /// Outstanding `get`s of mounted layers.
    mounts: MountCounts,
    /// Snapshots new children may be cloned from.
    snapshots: Mutex<SharedSnapshots>,
    /// See [`ZfsDriver::set_diff_min_objects`].
    diff_min_objects: AtomicU64,
    /// Datasets of removed layers that still had clones (`<id>:removed`): destroyed once
    /// their clones are gone.
    removed: Mutex<HashSet<String>>,
}

/// A parent of fewer files and directories than this is diffed by comparing the whole trees:
/// in the benchmark (benches/README.md) `zfs diff` + the narrowed comparison cost about as much
/// as the full comparison of 4,000 files, far more below, far less above.
pub const DIFF_MIN_OBJECTS: u64 = 4000;

/// The objects (files, directories, ...) a mounted ZFS filesystem holds: statfs' total less
/// free inodes is ZFS' used object count.
fn used_objects(mnt: &Path) -> std::io::Result<u64> {
    let st = sys::statvfs(mnt)?;
    Ok(st.f_files.saturating_sub(st.f_ffree))
}

/// The name a removed layer's dataset takes while clones still depend on it (`:` is not
/// allowed in layer ids, so it never clashes with a layer).
const REMOVED_SUFFIX: &str = ":removed";

/// What an interrupted create left of its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateLeft {
    /// A snapshot without its clone: to destroy.
    Orphan,
    /// The origin of a clone, not yet marked for deferred destruction.
    Unmarked,
}

/// The kinds of [`Stray`] the driver reports.
const STRAY_SNAPSHOT: &str = "zfs snapshot of an interrupted create";
const STRAY_REMOVED: &str = "zfs dataset of an interrupted removal";

fn zfs_err(context: impl Into<String>) -> impl FnOnce(ZfsError) -> DriverError {
    let context = context.into();
    move |e| DriverError::Invalid {
        driver: NAME,
        message: format!("{context}: {e}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why ZFS cannot be used on this host, if it cannot.
pub fn unavailable() -> Option<String> {
    if !Path::new("/dev/zfs").exists() {
        return Some("the zfs kernel module is not loaded (/dev/zfs does not exist)".into());
    }
    if !cmd::available() {
        return Some("the zfs command is not installed (Debian: zfsutils-linux)".into());
    }
    None
}

impl ZfsDriver {
    /// Opens the driver with its home at `home`; its layers go under `zfs.fsname`, else the
    /// dataset that `home` is on.
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        opts.validate(NAME, OPTIONS)?;
        if let Some(reason) = unavailable() {
            return Err(DriverError::NotSupported {
                driver: NAME,
                reason,
            });
        }
        mkdir_all(&home.join("graph"), 0o700).map_err(io_err(NAME, "creating home"))?;
        let fsname = match opts.get("zfs.fsname") {
            Some(fs) => {
                let fs = fs.trim_end_matches('/');
                let kind = cmd::get(fs, &["type"]).map_err(|e| DriverError::Invalid {
                    driver: NAME,
                    message: format!("zfs.fsname={fs}: no such dataset ({})", e.stderr()),
                })?;
                if kind[0] != "filesystem" {
                    return Err(DriverError::Invalid {
                        driver: NAME,
                        message: format!("zfs.fsname={fs} is a {}, not a filesystem", kind[0]),
                    });
                }
                fs.to_string()
            }
            None => {
                let m = mount_of(home)
                    .map_err(io_err(NAME, "reading /proc/self/mountinfo"))?
                    .ok_or_else(|| DriverError::Invalid {
                        driver: NAME,
                        message: format!("no mount holds {}", home.display()),
                    })?;
                if m.fstype != "zfs" {
                    return Err(DriverError::NotSupported {
                        driver: NAME,
                        reason: format!(
                            "the data root {} is on {}, not ZFS; put it on a ZFS dataset or name one with --storage-opt zfs.fsname=<pool/dataset>",
                            home.display(),
                            m.fstype
                        ),
                    });
                }
                m.source
            }
        };
        let d = ZfsDriver {
            home: home.to_path_buf(),
            fsname,
            layers: Mutex::new(HashSet::new()),
            mounts: MountCounts::default(),
            snapshots: Mutex::new(SharedSnapshots::default()),
            diff_min_objects: AtomicU64::new(DIFF_MIN_OBJECTS),
            removed: Mutex::new(HashSet::new()),
        };
        d.load_layers()?;
        // A killed daemon leaves its mounts, half-made creates and removals. An inspection
        // leaves them for `strata storage check` to report (see `strays`).
        if opts.recovers() {
            unmount_all_under(&d.home.join("graph"))
                .map_err(io_err(NAME, "unmounting leftovers"))?;
            d.finish_interrupted_creates()?;
            d.destroy_removed();
        }
        Ok(d)
    }

    /// The parent dataset.
    pub fn fsname(&self) -> &str {
        &self.fsname
    }

    /// The dataset of layer `id`.
    pub fn dataset(&self, id: &str) -> String {
        format!("{}/{id}", self.fsname)
    }

    fn mountpoint(&self, id: &str) -> PathBuf {
        self.home.join("graph").join(id)
    }

    fn not_found(id: &str) -> DriverError {
        DriverError::NotFound {
            driver: NAME,
            id: id.into(),
        }
    }

    fn load_layers(&self) -> DriverResult<()> {
        let rows = cmd::list(&["name"], &["-t", "filesystem", "-d", "1", &self.fsname]).map_err(
            zfs_err(format!("listing the datasets under {}", self.fsname)),
        )?;
        let prefix = format!("{}/", self.fsname);
        let names: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r[0].strip_prefix(&prefix).map(str::to_string))
            .collect();
        lock(&self.removed).extend(
            names
                .iter()
                .filter(|n| n.ends_with(REMOVED_SUFFIX))
                .map(|n| self.dataset(n)),
        );
        lock(&self.layers).extend(names.into_iter().filter(|id| check_id(NAME, id).is_ok()));
        Ok(())
    }

    /// A create is three commands: snapshot, clone, deferred destroy of the snapshot. A kill
    /// between them leaves a snapshot `<parent>@<id>` without its clone (destroyed here) or
    /// not yet marked (marked here).
    fn finish_interrupted_creates(&self) -> DriverResult<()> {
        for (snapshot, left) in self.interrupted_creates()? {
            match left {
                CreateLeft::Orphan => {
                    tracing::info!(snapshot, "removing the snapshot of an interrupted create");
                    cmd::zfs(&["destroy", &snapshot])
                        .map_err(zfs_err("removing a leftover snapshot"))?;
                }
                CreateLeft::Unmarked => {
                    tracing::info!(
                        snapshot,
                        "marking the origin snapshot of an interrupted create for deferred destruction"
                    );
                    cmd::zfs(&["destroy", "-d", &snapshot])
                        .map_err(zfs_err("marking an origin snapshot"))?;
                }
            }
        }
        Ok(())
    }

    /// Whether a snapshot of `dataset` has clones that are layers, or set aside themselves
    /// (it waits for them). A clone that is neither is on its way out: a removal that just
    /// finished may still show it for a moment.
    fn has_dependent_clones(&self, dataset: &str) -> bool {
        let rows = match cmd::list(&["clones"], &["-t", "snapshot", "-r", "-d", "1", dataset]) {
            Ok(rows) => rows,
            // Unknown: not reported as a leftover.
            Err(_) => return true,
        };
        let layers = lock(&self.layers).clone();
        let removed = lock(&self.removed).clone();
        let prefix = format!("{}/", self.fsname);
        rows.iter()
            .flat_map(|r| r[0].split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|c| !c.is_empty() && c != "-")
            .any(|c| {
                removed.contains(&c)
                    || c.strip_prefix(&prefix)
                        .is_some_and(|id| layers.contains(id))
            })
    }

    /// The snapshots interrupted creates left, and what is left to do about each.
    fn interrupted_creates(&self) -> DriverResult<Vec<(String, CreateLeft)>> {
        let rows = cmd::list(
            &["name", "clones", "defer_destroy"],
            &["-t", "snapshot", "-r", "-d", "2", &self.fsname],
        )
        .map_err(zfs_err(format!(
            "listing the snapshots under {}",
            self.fsname
        )))?;
        let layers = lock(&self.layers).clone();
        let prefix = format!("{}/", self.fsname);
        let mut out = Vec::new();
        for r in rows {
            let Some((parent, child)) = r[0].strip_prefix(&prefix).and_then(|s| s.split_once('@'))
            else {
                continue;
            };
            if !layers.contains(parent) || check_id(NAME, child).is_err() {
                continue;
            }
            let clones = r[1].split(',').any(|c| !c.is_empty() && c != "-");
            if !clones && !layers.contains(child) {
                out.push((r[0].clone(), CreateLeft::Orphan));
            } else if clones && r[2] != "on" {
                out.push((r[0].clone(), CreateLeft::Unmarked));
            }
        }
        Ok(out)
    }

    fn create_dataset(
        &self,
        id: &str,
        parent: Option<&str>,
        quota: Option<u64>,
    ) -> DriverResult<()> {
        check_id(NAME, id)?;
        if let Some(p) = parent {
            check_id(NAME, p)?;
        }
        if lock(&self.layers).contains(id) {
            return Err(DriverError::Exists {
                driver: NAME,
                id: id.into(),
            });
        }
        let ds = self.dataset(id);
        let quota = quota.map(|q| format!("quota={q}"));
        let mut props = vec!["-o", "mountpoint=legacy"];
        if let Some(q) = &quota {
            props.extend(["-o", q]);
        }
        match parent {
            None => {
                let mut a = vec!["create"];
                a.extend(&props);
                a.push(&ds);
                cmd::zfs(&a).map_err(zfs_err(format!("creating layer {id}")))?;
            }
            Some(p) => {
                if !lock(&self.layers).contains(p) {
                    return Err(Self::not_found(p));
                }
                let clone = |snap: &str| {
                    let mut a = vec!["clone"];
                    a.extend(&props);
                    a.extend([snap, ds.as_str()]);
                    cmd::zfs(&a)
                };
                // Not while the parent is mounted: it may still be written to.
                let shared = if self.mounts.is_mounted(p) {
                    None
                } else {
                    lock(&self.snapshots).reusable(p)
                };
                let reused = match shared {
                    Some(snap) => match clone(&snap) {
                        Ok(_) => Some(snap),
                        Err(e) => {
                            tracing::debug!(snapshot = snap, "not reusable: {e}");
                            lock(&self.snapshots).parent_touched(p);
                            None
                        }
                    },
                    None => None,
                };
                let snap = match reused {
                    Some(snap) => snap,
                    None => {
                        let snap = format!("{}@{id}", self.dataset(p));
                        cmd::zfs(&["snapshot", &snap])
                            .map_err(zfs_err(format!("snapshotting {p}")))?;
                        if let Err(e) = clone(&snap) {
                            let _ = cmd::zfs(&["destroy", &snap]);
                            return Err(zfs_err(format!("cloning {p} as layer {id}"))(e));
                        }
                        // The snapshot goes when its last clone does.
                        cmd::zfs(&["destroy", "-d", &snap])
                            .map_err(zfs_err(format!("marking {snap} for deferred destruction")))?;
                        snap
                    }
                };
                lock(&self.snapshots).cloned(p, &snap, id);
            }
        }
        lock(&self.layers).insert(id.into());
        Ok(())
    }

    /// Destroys the set-aside datasets of removed layers whose clones are gone.
    fn destroy_removed(&self) {
        let pending: Vec<String> = lock(&self.removed).iter().cloned().collect();
        for ds in pending {
            match cmd::zfs(&["destroy", "-r", &ds]) {
                Ok(_) => {
                    tracing::info!(dataset = ds, "destroyed: its clones are gone");
                    lock(&self.removed).remove(&ds);
                }
                Err(e) if e.stderr().contains("dependent clones") => {}
                Err(e) => tracing::warn!(dataset = ds, "not destroyed yet: {e}"),
            }
        }
    }

    /// The origin snapshot of layer `id` when it is a clone of (a snapshot of) `parent`.
    fn origin_of(&self, id: &str, parent: &str) -> Option<String> {
        let known = lock(&self.snapshots).origin(id).map(str::to_string);
        let origin = match known {
            Some(o) => o,
            None => cmd::get(&self.dataset(id), &["origin"]).ok()?.pop()?,
        };
        origin
            .starts_with(&format!("{}@", self.dataset(parent)))
            .then_some(origin)
    }

    /// Runs `f` with layers `id` and `parent` mounted.
    fn with_both<T>(
        &self,
        id: &str,
        parent: &str,
        f: impl FnOnce(&Path, &Path) -> DriverResult<T>,
    ) -> DriverResult<T> {
        with_layer_and_parent(self, id, Some(parent), |layer, p| {
            f(layer, p.expect("the parent is mounted"))
        })
    }

    /// The directories `zfs diff` says changed in `id` (mounted at `layer`) since `origin`,
    /// with their ancestors. ZFS needs the origin's filesystem mounted too.
    fn dirty_dirs(&self, id: &str, origin: &str, layer: &Path) -> DriverResult<HashSet<Vec<u8>>> {
        let text = cmd::zfs(&["diff", "-H", "-F", origin, &self.dataset(id)])
            .map_err(zfs_err(format!("zfs diff of layer {id}")))?;
        let lines = diff::parse(&text, layer.as_os_str().as_encoded_bytes()).map_err(|e| {
            DriverError::Invalid {
                driver: NAME,
                message: e.to_string(),
            }
        })?;
        Ok(diff::dirty_dirs(&lines))
    }

    /// The directories of `id` (relative paths, `""` the root) that may differ from
    /// `parent`, from `zfs diff`. `None` when `id` is not a clone of `parent` (then the
    /// driver compares the whole trees).
    pub fn changed_dirs(&self, id: &str, parent: &str) -> DriverResult<Option<HashSet<Vec<u8>>>> {
        let Some(origin) = self.origin_of(id, parent) else {
            return Ok(None);
        };
        self.with_both(id, parent, |layer, _| self.dirty_dirs(id, &origin, layer))
            .map(Some)
    }

    /// Below how many files and directories in the parent a diff compares the whole trees
    /// rather than asking `zfs diff` first (default [`DIFF_MIN_OBJECTS`]; 0: always ask).
    pub fn set_diff_min_objects(&self, n: u64) {
        self.diff_min_objects.store(n, Ordering::Relaxed);
    }

    /// Runs `f` on layer `id`'s mounted tree and its changes against `parent`: `zfs diff`
    /// names the changed paths, then the tree comparison reads only their directories (for
    /// a parent of fewer than `diff_min_objects` files, the whole trees are compared).
    /// `None` when `id` is not a clone of `parent` (the caller compares the whole trees).
    fn with_native_changes<T>(
        &self,
        id: &str,
        parent: Option<&str>,
        what: &str,
        f: impl FnOnce(&Path, &[Change]) -> std::io::Result<T>,
    ) -> DriverResult<Option<T>> {
        let Some(p) = parent else { return Ok(None) };
        let Some(origin) = self.origin_of(id, p) else {
            return Ok(None);
        };
        self.with_both(id, p, |layer, parent_dir| {
            let compare = io_err(NAME, format!("comparing layer {id} with {p}"));
            // `zfs diff` costs a command; below a few thousand files reading every directory
            // is cheaper (benches/README.md).
            let objects = used_objects(parent_dir).unwrap_or(u64::MAX);
            let changes = if objects >= self.diff_min_objects.load(Ordering::Relaxed) {
                let dirty = self.dirty_dirs(id, &origin, layer)?;
                archive::changes_dirs_pruned(layer, Some(parent_dir), &|rel| dirty.contains(rel))
                    .map_err(compare)?
            } else {
                archive::changes_dirs(layer, Some(parent_dir)).map_err(compare)?
            };
            f(layer, &changes).map_err(io_err(NAME, format!("{what} of layer {id}")))
        })
        .map(Some)
    }

    fn unmount(&self, id: &str) -> DriverResult<()> {
        unmount(&self.mountpoint(id))
            .map(|_| ())
            .map_err(io_err(NAME, format!("unmounting {id}")))
    }
}

impl Driver for ZfsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        image_layer_opts(NAME, opts)?;
        self.create_dataset(id, parent, None)
    }

    fn create_rw(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> DriverResult<()> {
        let size = container_size(NAME, opts, None)?;
        self.create_dataset(id, parent, size)
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        self.mounts.check_unused(NAME, id)?;
        if !lock(&self.layers).contains(id) {
            return Err(Self::not_found(id));
        }
        // `-r`: the layer's snapshots go too, and its origin snapshot when it was that
        // snapshot's last clone (deferred destruction). If layers were cloned from it, its
        // dataset is renamed aside and destroyed once they are gone.
        let ds = self.dataset(id);
        match cmd::zfs(&["destroy", "-r", &ds]) {
            Ok(_) => {}
            Err(e) if e.stderr().contains("dependent clones") => {
                let aside = format!("{ds}{REMOVED_SUFFIX}");
                cmd::zfs(&["rename", &ds, &aside])
                    .map_err(zfs_err(format!("setting layer {id} aside")))?;
                tracing::info!(
                    layer = id,
                    "layers were cloned from it: {aside} stays until they are removed"
                );
                lock(&self.removed).insert(aside);
            }
            Err(e) => return Err(zfs_err(format!("removing layer {id}"))(e)),
        }
        lock(&self.layers).remove(id);
        lock(&self.snapshots).child_removed(id);
        let _ = std::fs::remove_dir(self.mountpoint(id));
        self.destroy_removed();
        Ok(())
    }

    fn get(&self, id: &str, mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        if !lock(&self.layers).contains(id) {
            return Err(Self::not_found(id));
        }
        // Mounted, it may change: its next child needs a snapshot of its own.
        lock(&self.snapshots).parent_touched(id);
        let mp = self.mountpoint(id);
        self.mounts.acquire(id, || {
            mkdir_all(&mp, 0o755)
                .map_err(io_err(NAME, format!("creating the mount point of {id}")))?;
            let data = (!mount_label.is_empty()).then(|| format!("context=\"{mount_label}\""));
            sys::mount(
                self.dataset(id).as_bytes(),
                &mp,
                b"zfs",
                0,
                data.as_deref().map(str::as_bytes),
            )
            .map_err(io_err(NAME, format!("mounting {}", self.dataset(id))))?;
            Ok(mp)
        })
    }

    fn put(&self, id: &str) -> DriverResult<()> {
        self.mounts.release(NAME, id, || self.unmount(id))
    }

    fn exists(&self, id: &str) -> bool {
        lock(&self.layers).contains(id)
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        Ok(lock(&self.layers).iter().cloned().collect())
    }

    fn status(&self) -> Vec<(String, String)> {
        let pool = self
            .fsname
            .split('/')
            .next()
            .unwrap_or(&self.fsname)
            .to_string();
        let health = cmd::zpool(&["list", "-H", "-o", "health", &pool])
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let mut out = vec![
            ("Zpool".to_string(), pool),
            ("Zpool Health".into(), health),
            ("Parent Dataset".into(), self.fsname.clone()),
        ];
        match cmd::get(&self.fsname, &["used", "available", "quota", "compression"]) {
            Ok(v) => {
                out.push(("Space Used By Parent".into(), v[0].clone()));
                out.push(("Space Available".into(), v[1].clone()));
                let quota = if v[2] == "0" {
                    "no".to_string()
                } else {
                    v[2].clone()
                };
                out.push(("Parent Quota".into(), quota));
                out.push(("Compression".into(), v[3].clone()));
            }
            Err(e) => out.push(("Space".into(), format!("unknown ({e})"))),
        }
        out
    }

    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>> {
        if !self.exists(id) {
            return Err(Self::not_found(id));
        }
        Ok(BTreeMap::from([
            ("Dataset".to_string(), self.dataset(id)),
            (
                "Mountpoint".to_string(),
                self.mountpoint(id).display().to_string(),
            ),
        ]))
    }

    fn cleanup(&self) -> DriverResult<()> {
        self.mounts.release_all(|id| self.unmount(id))
    }

    /// Snapshots of interrupted creates without their clone, and datasets of interrupted
    /// removals (an inspecting open leaves them; a recovering one destroys them).
    fn strays(&self) -> DriverResult<Vec<Stray>> {
        let mut out: Vec<Stray> = self
            .interrupted_creates()?
            .into_iter()
            .filter(|(_, left)| *left == CreateLeft::Orphan)
            .map(|(name, _)| Stray {
                kind: STRAY_SNAPSHOT.into(),
                name,
            })
            .collect();
        // A removed layer whose children still live is waiting for them, as it should.
        let pending: Vec<String> = lock(&self.removed).iter().cloned().collect();
        let mut removed: Vec<String> = pending
            .into_iter()
            .filter(|ds| !self.has_dependent_clones(ds))
            .collect();
        removed.sort();
        out.extend(removed.into_iter().map(|name| Stray {
            kind: STRAY_REMOVED.into(),
            name,
        }));
        Ok(out)
    }

    fn remove_stray(&self, stray: &Stray) -> DriverResult<()> {
        let ours = stray.name.starts_with(&format!("{}/", self.fsname));
        match stray.kind.as_str() {
            STRAY_SNAPSHOT if ours && stray.name.contains('@') => {
                cmd::zfs(&["destroy", &stray.name])
                    .map_err(zfs_err("removing a leftover snapshot"))?;
                Ok(())
            }
            STRAY_REMOVED if ours && stray.name.ends_with(REMOVED_SUFFIX) => {
                cmd::zfs(&["destroy", "-r", &stray.name])
                    .map_err(zfs_err("destroying a removed dataset"))?;
                lock(&self.removed).remove(&stray.name);
                Ok(())
            }
            _ => Err(DriverError::Invalid {
                driver: NAME,
                message: format!("{} is not a leftover of this driver", stray.name),
            }),
        }
    }

    fn apply_target(&self, id: &str, _parent: Option<&str>) -> DriverResult<ApplyTarget> {
        Ok(ApplyTarget {
            root: self.get(id, "")?,
            // A clone starts as its parent: a whiteout deletes.
            whiteouts: WhiteoutFormat::Delete,
            lowers: Vec::new(),
        })
    }

    fn release_apply_target(&self, id: &str) -> DriverResult<()> {
        self.put(id)
    }

    fn native_diff(&self) -> bool {
        true
    }

    fn changes(&self, id: &str, parent: Option<&str>) -> DriverResult<Vec<Change>> {
        match self.with_native_changes(id, parent, "listing the changes", |_, c| Ok(c.to_vec()))? {
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
        let done = self.with_native_changes(id, parent, "exporting the changes", |root, c| {
            archive::export_changes(root, c, &mut *out).map(|_| ())
        })?;
        match done {
            Some(()) => Ok(()),
            None => strata_graph::driver::naive::diff(self, id, parent, out),
        }
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> DriverResult<u64> {
        match self.with_native_changes(id, parent, "sizing the changes", archive::changes_size)? {
            Some(n) => Ok(n),
            None => strata_graph::driver::naive::diff_size(self, id, parent),
        }
    }
}
