//! The `devicemapper` graph driver (issue #10): every layer is a thin device in a
//! device-mapper thin pool, a child a thin snapshot of its parent (block-level copy-on-write),
//! each holding an ext4 or xfs filesystem first made on a base device of `dm.basesize`.
//!
//! - The pool is loop-lvm (sparse files under the home on loop devices; tests, small hosts),
//!   given data and metadata devices, an existing pool (`dm.thinpooldev`), or one made with
//!   LVM on a given device ([`directlvm`]).
//! - Crash safety: every pool operation is journaled ([`metadata`]) and committed with the
//!   pool's own transaction ID, so a start after a crash rolls it forward or back and the
//!   pool's devices and the driver's records stay the same set.
//! - dockerd's failure modes are handled: removal of a busy device can be deferred to the
//!   kernel (`dm.use_deferred_removal`), its deletion to a later pass
//!   (`dm.use_deferred_deletion`); new devices are refused, saying how full the pool is, below
//!   `dm.min_free_space`; a pool out of data space fails writes at once (`error_if_no_space`)
//!   instead of hanging them.
//!
//! Its own crate, as every driver; device-mapper calls go through [`dm`] (the Stratis
//! `devicemapper` crate's ioctls, no libdevmapper).

pub mod directlvm;
pub mod dm;
pub mod fs;
pub mod loopback;
pub mod metadata;
pub mod options;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use strata_graph::archive::WhiteoutFormat;
use strata_graph::driver::{check_id, image_layer_opts, io_err};
use strata_graph::fsutil::mkdir_all;
use strata_graph::{ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, StorageOpts};

use dm::{Control, DmCallError, PoolStatus, Sectors};
use metadata::{DeviceRecord, DeviceSet, Journal, Metadata, Op};
use options::{DmOptions, Fs, PoolSource};

pub use options::OPTIONS;

pub(crate) const NAME: &str = "devicemapper";

/// How often the background pass of [`DevmapperDriver::start`] retries deferred deletions.
pub const DEFERRED_PASS_EVERY: Duration = Duration::from_secs(10);
/// The record name of the base device (no layer ID starts with a dot).
const BASE: &str = ".base";
/// The pool's low water mark, in data blocks (dockerd's).
const LOW_WATER_MARK: u64 = 32768;

fn dm_err(e: DmCallError) -> DriverError {
    match e {
        e @ DmCallError::Unavailable(_) => DriverError::NotSupported {
            driver: NAME,
            reason: e.to_string(),
        },
        DmCallError::Call {
            op, errno: Some(n), ..
        } => DriverError::Io {
            driver: NAME,
            context: op,
            source: std::io::Error::from_raw_os_error(n),
        },
        DmCallError::Io { op, source } => DriverError::Io {
            driver: NAME,
            context: op,
            source,
        },
        other => DriverError::Invalid {
            driver: NAME,
            message: other.to_string(),
        },
    }
}

fn invalid(message: impl Into<String>) -> DriverError {
    DriverError::Invalid {
        driver: NAME,
        message: message.into(),
    }
}

/// A test hook: aborts the process (as a kill would) at the named point of a pool operation
/// when `STRATA_DM_CRASH_AT` names it.
fn crash_point(point: &str) {
    if std::env::var("STRATA_DM_CRASH_AT").as_deref() == Ok(point) {
        eprintln!("STRATA_DM_CRASH_AT: aborting at {point}");
        std::process::abort();
    }
}

/// A size as dockerd prints it in driver status (`units.HumanSize`: 4 significant digits).
pub fn human_size(bytes: u64) -> String {
    strata_graph::options::human_size(bytes as f64, 4)
}

struct State {
    meta: Metadata,
    records: HashMap<String, DeviceRecord>,
    set: DeviceSet,
    /// Layers mounted, with their `get` counts.
    mounts: HashMap<String, u32>,
}

/// The devicemapper driver.
pub struct DevmapperDriver {
    home: PathBuf,
    opts: DmOptions,
    fs: Fs,
    ctl: Control,
    /// `strata-<major>:<minor>-<inode>` of the home: device names start with it.
    prefix: String,
    pool: String,
    /// The pool was made here (loop-lvm or given devices): shutdown removes it.
    owns_pool: bool,
    block_size: Sectors,
    data_file: String,
    metadata_file: String,
    loop_files: Option<(PathBuf, PathBuf)>,
    state: Mutex<State>,
}

impl DevmapperDriver {
    /// Opens the driver with its home at `home`: sets up or finds the pool, finishes an
    /// interrupted pool operation, makes or checks the base device.
    pub fn new(home: &Path, opts: &StorageOpts) -> DriverResult<Self> {
        let raw_opts = opts;
        let opts = DmOptions::parse(opts)?;
        let ctl = Control::open(opts.log_level).map_err(dm_err)?;
        mkdir_all(&home.join("mnt"), 0o700).map_err(io_err(NAME, "creating home"))?;
        let st = std::fs::metadata(home).map_err(io_err(NAME, "stat of the home"))?;
        let prefix = format!(
            "strata-{}:{}-{}",
            libc::major(st.dev()),
            libc::minor(st.dev()),
            st.ino()
        );
        // Mounts a killed daemon left: the devices under them would stay busy. (An inspection
        // leaves them for `strata storage check` to report.)
        let leftovers = if raw_opts.recovers() {
            strata_graph::fsutil::unmount_all_under(&home.join("mnt"))
        } else {
            Ok(Vec::new())
        };
        match leftovers {
            Ok(left) if !left.is_empty() => {
                tracing::warn!(
                    count = left.len(),
                    "devicemapper: unmounted what a previous run left mounted"
                )
            }
            Ok(_) => {}
            Err(e) => return Err(io_err(NAME, "unmounting stale layer mounts")(e)),
        }
        let meta = Metadata::open(&home.join("metadata")).map_err(io_err(NAME, "metadata"))?;
        let (pool, owns_pool, data_file, metadata_file, loop_files) =
            Self::setup_pool(home, &prefix, &opts, &ctl)?;
        let (target, params, _) = ctl.table(&pool).map_err(dm_err)?;
        if target != "thin-pool" {
            return Err(invalid(format!(
                "{pool} is a {target} device, not a thin pool"
            )));
        }
        let block_size = params
            .split_whitespace()
            .nth(2)
            .and_then(|b| b.parse().ok())
            .map(Sectors)
            .ok_or_else(|| invalid(format!("unreadable thin-pool table of {pool}: {params}")))?;
        let set = meta
            .device_set()
            .map_err(io_err(NAME, "reading the device set"))?;
        let first_use = set.is_none();
        let fs = match (&set, opts.fs) {
            (Some(s), want) => {
                let have = if s.base_fs == "xfs" {
                    Fs::Xfs
                } else {
                    Fs::Ext4
                };
                if let Some(w) = want {
                    if w != have {
                        tracing::warn!(
                            "devicemapper: the base device already holds {}; dm.fs={} is ignored (a new filesystem needs a new data root)",
                            have.name(),
                            w.name()
                        );
                    }
                }
                have
            }
            (None, Some(w)) => w,
            (None, None) if fs::have("mkfs.xfs") => Fs::Xfs,
            (None, None) => Fs::Ext4,
        };
        let set = set.unwrap_or(DeviceSet {
            next_device_id: 1,
            base_fs: fs.name().to_string(),
        });
        let drv = DevmapperDriver {
            home: home.to_path_buf(),
            opts,
            fs,
            ctl,
            prefix,
            pool,
            owns_pool,
            block_size,
            data_file,
            metadata_file,
            loop_files,
            state: Mutex::new(State {
                meta,
                records: HashMap::new(),
                set,
                mounts: HashMap::new(),
            }),
        };
        if first_use && !drv.owns_pool {
            let s = drv.pool_status()?;
            if s.data_used > 0 || s.transaction_id > 0 {
                return Err(invalid(format!(
                    "unable to take ownership of thin pool {}: it already has used data blocks or a transaction ID ({}); give Strata an empty pool",
                    drv.pool, s.transaction_id
                )));
            }
        }
        {
            let mut st = drv.lock();
            st.meta
                .save_device_set(&st.set)
                .map_err(io_err(NAME, "writing the device set"))?;
            drv.replay_journal(&mut st)?;
            st.records = st
                .meta
                .devices()
                .map_err(io_err(NAME, "reading device records"))?
                .into_iter()
                .collect();
            drv.setup_base(&mut st)?;
            drv.delete_deferred(&mut st);
        }
        Ok(drv)
    }

    /// Opens the driver as [`DevmapperDriver::new`] does and, with `dm.use_deferred_deletion`,
    /// starts the background pass that deletes devices whose deletion was deferred (every
    /// [`DEFERRED_PASS_EVERY`]; it also runs at start and before each create and remove). The
    /// pass ends once the driver is dropped.
    pub fn start(home: &Path, opts: &StorageOpts) -> DriverResult<Arc<Self>> {
        let d = Arc::new(Self::new(home, opts)?);
        if d.opts.deferred_deletion {
            let weak = Arc::downgrade(&d);
            std::thread::Builder::new()
                .name("dm-deferred-deletion".into())
                .spawn(move || deferred_deletion_pass(weak))
                .map_err(io_err(NAME, "starting the deferred deletion pass"))?;
        }
        Ok(d)
    }

    #[allow(clippy::type_complexity)]
    fn setup_pool(
        home: &Path,
        prefix: &str,
        opts: &DmOptions,
        ctl: &Control,
    ) -> DriverResult<(String, bool, String, String, Option<(PathBuf, PathBuf)>)> {
        let pool = format!("{prefix}-pool");
        let block = opts.block_size / 512;
        match &opts.pool {
            PoolSource::ThinPool(name) => {
                if !ctl.exists(name) {
                    return Err(invalid(format!(
                        "dm.thinpooldev: no device-mapper device named {name}"
                    )));
                }
                Ok((name.clone(), false, String::new(), String::new(), None))
            }
            PoolSource::DirectLvm(d) => {
                let name = directlvm::ensure(home, d, |n| ctl.exists(n))
                    .map_err(|e| invalid(format!("direct-lvm: {e}")))?;
                Ok((name, false, String::new(), String::new(), None))
            }
            PoolSource::Devices { data, metadata } => {
                if !ctl.exists(&pool) {
                    Self::create_pool(ctl, &pool, Path::new(data), Path::new(metadata), block)?;
                }
                Ok((pool, true, data.clone(), metadata.clone(), None))
            }
            PoolSource::Loop {
                data_size,
                metadata_size,
            } => {
                tracing::warn!(
                    "devicemapper: usage of loopback devices is strongly discouraged for production use; use dm.thinpooldev"
                );
                let dir = home.join("devicemapper");
                mkdir_all(&dir, 0o700).map_err(io_err(NAME, "creating the loop file directory"))?;
                let data = dir.join("data");
                let metadata = dir.join("metadata");
                for (p, size) in [(&data, *data_size), (&metadata, *metadata_size)] {
                    if !p.exists() {
                        let f = std::fs::File::create(p)
                            .map_err(io_err(NAME, format!("creating {}", p.display())))?;
                        f.set_len(size)
                            .map_err(io_err(NAME, format!("sizing {}", p.display())))?;
                    }
                }
                let (data_dev, meta_dev) = if ctl.exists(&pool) {
                    (
                        loopback::find(&data).unwrap_or_default(),
                        loopback::find(&metadata).unwrap_or_default(),
                    )
                } else {
                    let (d, _held_data) = loopback::attach(&data).map_err(io_err(
                        NAME,
                        format!("attaching {} to a loop device", data.display()),
                    ))?;
                    let (m, _held_meta) = loopback::attach(&metadata).map_err(io_err(
                        NAME,
                        format!("attaching {} to a loop device", metadata.display()),
                    ))?;
                    Self::create_pool(ctl, &pool, &d, &m, block)?;
                    (d, m)
                };
                Ok((
                    pool,
                    true,
                    data_dev.display().to_string(),
                    meta_dev.display().to_string(),
                    Some((data, metadata)),
                ))
            }
        }
    }

    fn create_pool(
        ctl: &Control,
        pool: &str,
        data: &Path,
        meta: &Path,
        block: u64,
    ) -> DriverResult<()> {
        let devno = |p: &Path| -> DriverResult<String> {
            let m = std::fs::metadata(p).map_err(io_err(NAME, format!("{}", p.display())))?;
            Ok(format!(
                "{}:{}",
                libc::major(m.rdev()),
                libc::minor(m.rdev())
            ))
        };
        let size =
            dm::size_of(data).map_err(io_err(NAME, format!("size of {}", data.display())))?;
        let len = Sectors(size / 512 / block * block);
        let params = format!(
            "{} {} {block} {LOW_WATER_MARK} 2 skip_block_zeroing error_if_no_space",
            devno(meta)?,
            devno(data)?
        );
        ctl.create(pool, len, "thin-pool", &params).map_err(dm_err)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool_status(&self) -> DriverResult<PoolStatus> {
        let s = self.ctl.status(&self.pool).map_err(dm_err)?;
        dm::parse_pool_status(&s).ok_or_else(|| {
            invalid(format!(
                "unreadable status of thin pool {}: {s:?}",
                self.pool
            ))
        })
    }

    fn dev_name(&self, hash: &str) -> String {
        let short = if hash == BASE { "base" } else { hash };
        format!("{}-{short}", self.prefix)
    }

    fn mnt(&self, hash: &str) -> PathBuf {
        self.home.join("mnt").join(hash)
    }

    fn rootfs(&self, hash: &str) -> PathBuf {
        self.mnt(hash).join("rootfs")
    }

    fn not_found(id: &str) -> DriverError {
        DriverError::NotFound {
            driver: NAME,
            id: id.into(),
        }
    }

    /// Sends a pool message; `Ok(false)` when it failed with `tolerate` as its errno.
    fn pool_msg(&self, msg: &str, tolerate: i32) -> DriverResult<bool> {
        match self.ctl.message(&self.pool, msg) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(tolerate) => Ok(false),
            Err(e) => Err(dm_err(e)),
        }
    }

    fn set_transaction_id(&self, old: u64, new: u64) -> DriverResult<()> {
        self.pool_msg(&format!("set_transaction_id {old} {new}"), 0)
            .map(|_| ())
    }

    /// Refuses a new device when the pool's free data or metadata space (status `s`) is
    /// below `dm.min_free_space`.
    fn check_free_space(&self, s: &PoolStatus) -> DriverResult<()> {
        if s.out_of_space {
            return Err(invalid(format!(
                "thin pool {} is out of data space ({} of {} blocks used); remove images and containers, or grow the pool",
                self.pool, s.data_used, s.data_total
            )));
        }
        let min = self.opts.min_free_space;
        if min == 0 {
            return Ok(());
        }
        for (what, used, total) in [
            ("data", s.data_used, s.data_total),
            ("metadata", s.metadata_used, s.metadata_total),
        ] {
            let free = total.saturating_sub(used);
            let need = total * min / 100;
            if free < need {
                return Err(invalid(format!(
                    "thin pool {} has {free} free {what} blocks of {total} ({}% used), less than the {need} (dm.min_free_space={min}%) a new device needs. Free space in the pool (remove images and containers) or lower dm.min_free_space",
                    self.pool,
                    used * 100 / total.max(1)
                )));
            }
        }
        Ok(())
    }

    /// Creates thin device `hash` (a snapshot of `origin`, or a new empty one) of `size` bytes
    /// as one journaled pool transaction.
    fn create_device(
        &self,
        st: &mut State,
        hash: &str,
        origin: Option<&str>,
        size: u64,
    ) -> DriverResult<DeviceRecord> {
        let status = self.pool_status()?;
        self.check_free_space(&status)?;
        let origin = match origin {
            Some(o) => Some((
                o,
                st.records
                    .get(o)
                    .filter(|r| !r.deleted)
                    .ok_or_else(|| Self::not_found(o))?
                    .device_id,
            )),
            None => None,
        };
        let txn = status.transaction_id + 1;
        let mut id = st.set.next_device_id;
        loop {
            if id >= 1 << 24 {
                return Err(invalid("the pool's 24-bit device IDs are exhausted"));
            }
            st.meta
                .open_journal(&Journal {
                    transaction_id: txn,
                    op: Op::Create,
                    hash: hash.into(),
                    device_id: id,
                })
                .map_err(io_err(NAME, "writing the journal"))?;
            crash_point("create:journaled");
            let made = match origin {
                None => self.pool_msg(&format!("create_thin {id}"), libc::EEXIST)?,
                Some((o, oid)) => {
                    let oname = self.dev_name(o);
                    let active = self.ctl.exists(&oname);
                    if active {
                        self.ctl.suspend(&oname).map_err(dm_err)?;
                    }
                    let r = self.pool_msg(&format!("create_snap {id} {oid}"), libc::EEXIST);
                    if active {
                        self.ctl.resume(&oname).map_err(dm_err)?;
                    }
                    r?
                }
            };
            if made {
                break;
            }
            // An ID the pool has but no record names: a device another tool made. Skip it.
            id += 1;
        }
        crash_point("create:in-pool");
        st.set.next_device_id = id + 1;
        let rec = DeviceRecord {
            device_id: id,
            size,
            transaction_id: txn,
            initialized: false,
            deleted: false,
        };
        // Nothing is committed yet: take the device out of the pool again.
        let undo = |e: DriverError| -> DriverError {
            let _ = self.pool_msg(&format!("delete {id}"), libc::ENODATA);
            let _ = st.meta.close_journal();
            e
        };
        if let Err(e) = st.meta.save_device_set(&st.set) {
            return Err(undo(io_err(NAME, "writing the device set")(e)));
        }
        if let Err(e) = st.meta.save_device(hash, &rec) {
            return Err(undo(io_err(NAME, "writing the device record")(e)));
        }
        crash_point("create:recorded");
        self.set_transaction_id(txn - 1, txn)?;
        crash_point("create:committed");
        st.meta
            .close_journal()
            .map_err(io_err(NAME, "closing the journal"))?;
        st.records.insert(hash.into(), rec.clone());
        Ok(rec)
    }

    /// Deletes thin device `hash` from the pool as one journaled transaction. `Ok(false)`
    /// when the kernel still holds it busy (nothing changed then).
    fn delete_device(&self, st: &mut State, hash: &str) -> DriverResult<bool> {
        let Some(rec) = st.records.get(hash).cloned() else {
            return Err(Self::not_found(hash));
        };
        let txn = self.pool_status()?.transaction_id + 1;
        st.meta
            .open_journal(&Journal {
                transaction_id: txn,
                op: Op::Delete,
                hash: hash.into(),
                device_id: rec.device_id,
            })
            .map_err(io_err(NAME, "writing the journal"))?;
        crash_point("delete:journaled");
        match self
            .ctl
            .message(&self.pool, &format!("delete {}", rec.device_id))
        {
            Ok(()) => {}
            Err(e) if e.errno() == Some(libc::ENODATA) => {}
            Err(e) if e.errno() == Some(libc::EBUSY) => {
                st.meta
                    .close_journal()
                    .map_err(io_err(NAME, "closing the journal"))?;
                return Ok(false);
            }
            Err(e) => {
                let _ = st.meta.close_journal();
                return Err(dm_err(e));
            }
        }
        crash_point("delete:in-pool");
        st.meta
            .remove_device(hash)
            .map_err(io_err(NAME, "removing the device record"))?;
        st.records.remove(hash);
        crash_point("delete:unrecorded");
        self.set_transaction_id(txn - 1, txn)?;
        crash_point("delete:committed");
        st.meta
            .close_journal()
            .map_err(io_err(NAME, "closing the journal"))?;
        Ok(true)
    }

    /// Finishes or undoes the pool operation a crash interrupted.
    fn replay_journal(&self, st: &mut State) -> DriverResult<()> {
        let Some(j) = st
            .meta
            .journal()
            .map_err(io_err(NAME, "reading the journal"))?
        else {
            return Ok(());
        };
        let pool_txn = self.pool_status()?.transaction_id;
        let committed = pool_txn >= j.transaction_id;
        tracing::warn!(
            op = ?j.op,
            device = %j.hash,
            device_id = j.device_id,
            committed,
            "devicemapper: finishing a pool operation a crash interrupted"
        );
        let name = self.dev_name(&j.hash);
        match (j.op, committed) {
            (Op::Create, true) | (Op::Delete, true) => {}
            (Op::Create, false) => {
                if self.ctl.exists(&name) {
                    self.ctl.remove(&name, false).map_err(dm_err)?;
                }
                self.pool_msg(&format!("delete {}", j.device_id), libc::ENODATA)?;
                if let Some(r) = st
                    .meta
                    .device(&j.hash)
                    .map_err(io_err(NAME, "reading a record"))?
                {
                    if r.device_id == j.device_id {
                        st.meta
                            .remove_device(&j.hash)
                            .map_err(io_err(NAME, "removing a record"))?;
                    }
                }
            }
            (Op::Delete, false) => {
                if self.ctl.exists(&name) {
                    self.ctl.remove(&name, false).map_err(dm_err)?;
                }
                self.pool_msg(&format!("delete {}", j.device_id), libc::ENODATA)?;
                st.meta
                    .remove_device(&j.hash)
                    .map_err(io_err(NAME, "removing a record"))?;
                self.set_transaction_id(pool_txn, j.transaction_id)?;
            }
        }
        st.meta
            .close_journal()
            .map_err(io_err(NAME, "closing the journal"))
    }

    /// Activates the device of `hash` (idempotent) and returns its node.
    fn activate(&self, st: &State, hash: &str) -> DriverResult<PathBuf> {
        let rec = st.records.get(hash).ok_or_else(|| Self::not_found(hash))?;
        let name = self.dev_name(hash);
        if !self.ctl.exists(&name) {
            let (maj, min) = self.ctl.devno(&self.pool).map_err(dm_err)?;
            self.ctl
                .create(
                    &name,
                    Sectors(rec.size / 512),
                    "thin",
                    &format!("{maj}:{min} {}", rec.device_id),
                )
                .map_err(dm_err)?;
        }
        self.ctl.node(&name).map_err(dm_err)
    }

    /// Deactivates the device of `hash`; busy, it is left to the kernel with deferred
    /// removal, else an error.
    fn deactivate(&self, hash: &str) -> DriverResult<()> {
        let name = self.dev_name(hash);
        if !self.ctl.exists(&name) {
            return Ok(());
        }
        self.ctl
            .remove(&name, self.opts.deferred_removal)
            .map_err(dm_err)
    }

    /// Makes the base device (first start) or grows it to a larger `dm.basesize`.
    fn setup_base(&self, st: &mut State) -> DriverResult<()> {
        let want = self.opts.base_size;
        match st.records.get(BASE).cloned() {
            Some(r) if r.initialized => {
                if want < r.size {
                    return Err(invalid(format!(
                        "dm.basesize {} is smaller than the base device ({}); it can only grow",
                        human_size(want),
                        human_size(r.size)
                    )));
                }
                if want > r.size {
                    self.grow_device(st, BASE, want)?;
                }
                Ok(())
            }
            stale => {
                if stale.is_some() {
                    // Interrupted while its filesystem was being made.
                    self.deactivate(BASE)?;
                    self.delete_device(st, BASE)?;
                }
                tracing::info!(
                    size = want,
                    fs = self.fs.name(),
                    "devicemapper: making the base device"
                );
                self.create_device(st, BASE, None, want)?;
                let node = self.activate(st, BASE)?;
                let made = fs::mkfs(self.fs, &node, &self.opts.mkfs_args).map_err(io_err(
                    NAME,
                    format!("making {} on the base device", self.fs.name()),
                ));
                self.deactivate(BASE)?;
                made?;
                self.mark_initialized(st, BASE)
            }
        }
    }

    fn mark_initialized(&self, st: &mut State, hash: &str) -> DriverResult<()> {
        Self::update_record(st, hash, "writing a device record", |r| {
            r.initialized = true
        })
    }

    /// Applies `change` to the record of device `hash` and writes the record out; `what`
    /// names the write in its error.
    fn update_record(
        st: &mut State,
        hash: &str,
        what: &str,
        change: impl FnOnce(&mut DeviceRecord),
    ) -> DriverResult<()> {
        let State { records, meta, .. } = st;
        let r = records.get_mut(hash).ok_or_else(|| Self::not_found(hash))?;
        change(r);
        meta.save_device(hash, r).map_err(io_err(NAME, what))
    }

    /// Grows device `hash` and its filesystem to `size` bytes.
    fn grow_device(&self, st: &mut State, hash: &str, size: u64) -> DriverResult<()> {
        let was_active = self.ctl.exists(&self.dev_name(hash));
        Self::update_record(st, hash, "writing a device record", |r| r.size = size)?;
        let node = self.activate(st, hash)?;
        let name = self.dev_name(hash);
        if was_active {
            let (maj, min) = self.ctl.devno(&self.pool).map_err(dm_err)?;
            let id = st.records[hash].device_id;
            self.ctl
                .reload(
                    &name,
                    Sectors(size / 512),
                    "thin",
                    &format!("{maj}:{min} {id}"),
                )
                .map_err(dm_err)?;
        }
        let tmp = self.home.join("mnt").join(format!(".grow-{hash}"));
        mkdir_all(&tmp, 0o700).map_err(io_err(NAME, "grow mount point"))?;
        let r = fs::mount(self.fs, &node, &tmp, &self.opts.mount_opts)
            .and_then(|_| {
                let g = fs::grow(self.fs, &node, &tmp);
                let u = strata_graph::sys::umount2(&tmp, 0);
                g.and(u)
            })
            .map_err(io_err(NAME, format!("growing the filesystem of {hash}")));
        let _ = std::fs::remove_dir(&tmp);
        if !was_active {
            self.deactivate(hash)?;
        }
        r
    }

    /// Retries the deletion of devices whose removal was deferred.
    fn delete_deferred(&self, st: &mut State) {
        let pending: Vec<String> = st
            .records
            .iter()
            .filter(|(_, r)| r.deleted)
            .map(|(h, _)| h.clone())
            .collect();
        for h in pending {
            if self.ctl.exists(&self.dev_name(&h)) {
                // Removal still deferred in the kernel.
                continue;
            }
            match self.delete_device(st, &h) {
                Ok(true) => tracing::info!(device = %h, "devicemapper: deferred deletion done"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(device = %h, "devicemapper: deferred deletion failed: {e}")
                }
            }
        }
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, size: Option<u64>) -> DriverResult<()> {
        check_id(NAME, id)?;
        if let Some(p) = parent {
            check_id(NAME, p)?;
        }
        let mut st = self.lock();
        self.delete_deferred(&mut st);
        if st.records.get(id).is_some_and(|r| !r.deleted) {
            return Err(DriverError::Exists {
                driver: NAME,
                id: id.into(),
            });
        }
        if st.records.contains_key(id) {
            return Err(invalid(format!(
                "layer {id} is still being deleted (deferred); try again later"
            )));
        }
        let origin = parent.unwrap_or(BASE);
        let origin_size = st
            .records
            .get(origin)
            .filter(|r| !r.deleted)
            .ok_or_else(|| Self::not_found(origin))?
            .size;
        let size = size.map_or(origin_size, |s| s.max(origin_size));
        self.create_device(&mut st, id, Some(origin), origin_size)?;
        if size > origin_size {
            if let Err(e) = self.grow_device(&mut st, id, size) {
                let _ = self.deactivate(id);
                let _ = self.delete_device(&mut st, id);
                return Err(e);
            }
        }
        self.mark_initialized(&mut st, id)
    }

    /// The names of thin devices of this driver the kernel has active.
    pub fn active_devices(&self) -> DriverResult<Vec<String>> {
        let pool = format!("{}-pool", self.prefix);
        Ok(self
            .ctl
            .list(&format!("{}-", self.prefix))
            .map_err(dm_err)?
            .into_iter()
            .filter(|n| *n != pool)
            .collect())
    }

    /// The pool's device IDs the driver's records name (the base device included).
    pub fn recorded_device_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.lock().records.values().map(|r| r.device_id).collect();
        v.sort();
        v
    }

    /// The thin pool's device-mapper name.
    pub fn pool_name(&self) -> &str {
        &self.pool
    }

    /// The pool's status now.
    pub fn pool(&self) -> DriverResult<PoolStatus> {
        self.pool_status()
    }
}

impl Driver for DevmapperDriver {
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
        opts.storage_opt.validate(
            NAME,
            &[strata_graph::OptionSpec {
                key: "size",
                help: "size of this container's filesystem (at least dm.basesize)",
            }],
        )?;
        let size = match opts.storage_opt.get("size") {
            Some(v) => Some(options::container_size(v, self.opts.base_size)?),
            None => None,
        };
        self.create_layer(id, parent, size)
    }

    fn remove(&self, id: &str) -> DriverResult<()> {
        check_id(NAME, id)?;
        let mut st = self.lock();
        if let Some(n) = st.mounts.get(id).copied().filter(|n| *n > 0) {
            return Err(DriverError::Busy {
                driver: NAME,
                id: id.into(),
                mounts: n,
            });
        }
        if st.records.get(id).is_none_or(|r| r.deleted) {
            return Err(Self::not_found(id));
        }
        if self.opts.blkdiscard {
            let node = self.activate(&st, id)?;
            let name = self.dev_name(id);
            // Only a device nobody else holds: discarding under a user would destroy data.
            if self.ctl.open_count(&name).map_err(dm_err)? == 0 {
                if let Err(e) = dm::discard(&node) {
                    tracing::warn!(
                        layer = id,
                        "devicemapper: discard before delete failed: {e}"
                    );
                }
            }
        }
        self.deactivate(id)?;
        if !self.delete_device(&mut st, id)? {
            if !self.opts.deferred_deletion {
                return Err(DriverError::Io {
                    driver: NAME,
                    context: format!(
                        "deleting the thin device of layer {id} (set dm.use_deferred_deletion=true to delete busy devices later)"
                    ),
                    source: std::io::Error::from_raw_os_error(libc::EBUSY),
                });
            }
            Self::update_record(&mut st, id, "marking a device deleted", |r| {
                r.deleted = true
            })?;
            tracing::info!(layer = id, "devicemapper: device busy, deletion deferred");
        }
        let _ = std::fs::remove_dir_all(self.mnt(id));
        self.delete_deferred(&mut st);
        Ok(())
    }

    fn get(&self, id: &str, _mount_label: &str) -> DriverResult<PathBuf> {
        check_id(NAME, id)?;
        let mut st = self.lock();
        if st.records.get(id).is_none_or(|r| r.deleted) {
            return Err(Self::not_found(id));
        }
        if let Some(n) = st.mounts.get_mut(id) {
            *n += 1;
            return Ok(self.rootfs(id));
        }
        let node = self.activate(&st, id)?;
        let mnt = self.mnt(id);
        mkdir_all(&mnt, 0o755).map_err(io_err(NAME, "creating the mount point"))?;
        if let Err(e) = fs::mount(self.fs, &node, &mnt, &self.opts.mount_opts) {
            let _ = self.deactivate(id);
            return Err(io_err(NAME, format!("mounting layer {id}"))(e));
        }
        if self.fs == Fs::Xfs {
            if let (Some(n), Ok((_, min))) = (
                self.opts.xfs_nospace_max_retries,
                self.ctl.devno(&self.dev_name(id)),
            ) {
                let p = format!("/sys/fs/xfs/dm-{min}/error/metadata/ENOSPC/max_retries");
                if let Err(e) = std::fs::write(&p, n.to_string()) {
                    tracing::warn!("devicemapper: setting {p}: {e}");
                }
            }
        }
        let rootfs = self.rootfs(id);
        if let Err(e) = mkdir_all(&rootfs, 0o755) {
            let _ = strata_graph::sys::umount2(&mnt, 0);
            let _ = self.deactivate(id);
            return Err(io_err(NAME, "creating rootfs")(e));
        }
        st.mounts.insert(id.into(), 1);
        Ok(rootfs)
    }

    fn put(&self, id: &str) -> DriverResult<()> {
        let mut st = self.lock();
        match st.mounts.get_mut(id) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(())
            }
            Some(_) => {
                strata_graph::fsutil::unmount(&self.mnt(id))
                    .map_err(io_err(NAME, format!("unmounting layer {id}")))?;
                st.mounts.remove(id);
                if let Err(e) = self.deactivate(id) {
                    tracing::warn!(layer = id, "devicemapper: deactivating after unmount: {e}");
                }
                Ok(())
            }
            None => Err(invalid(format!("put of layer {id}, which is not in use"))),
        }
    }

    fn exists(&self, id: &str) -> bool {
        check_id(NAME, id).is_ok() && self.lock().records.get(id).is_some_and(|r| !r.deleted)
    }

    fn list(&self) -> DriverResult<Vec<String>> {
        Ok(self
            .lock()
            .records
            .iter()
            .filter(|(h, r)| h.as_str() != BASE && !r.deleted)
            .map(|(h, _)| h.clone())
            .collect())
    }

    fn status(&self) -> Vec<(String, String)> {
        let bs = self.block_size.0 * 512;
        let mut v = vec![
            ("Pool Name".to_string(), self.pool.clone()),
            ("Pool Blocksize".into(), human_size(bs)),
            ("Base Device Size".into(), human_size(self.opts.base_size)),
            ("Backing Filesystem".into(), self.fs.name().into()),
            ("Udev Sync Supported".into(), "true".into()),
        ];
        if let Some((d, m)) = &self.loop_files {
            v.push(("Data file".into(), self.data_file.clone()));
            v.push(("Metadata file".into(), self.metadata_file.clone()));
            v.push(("Data loop file".into(), d.display().to_string()));
            v.push(("Metadata loop file".into(), m.display().to_string()));
        } else if !self.data_file.is_empty() {
            v.push(("Data file".into(), self.data_file.clone()));
            v.push(("Metadata file".into(), self.metadata_file.clone()));
        }
        if let Ok(s) = self.pool_status() {
            let meta_block = 4096;
            v.push(("Data Space Used".into(), human_size(s.data_used * bs)));
            v.push(("Data Space Total".into(), human_size(s.data_total * bs)));
            v.push((
                "Data Space Available".into(),
                human_size((s.data_total - s.data_used.min(s.data_total)) * bs),
            ));
            v.push((
                "Metadata Space Used".into(),
                human_size(s.metadata_used * meta_block),
            ));
            v.push((
                "Metadata Space Total".into(),
                human_size(s.metadata_total * meta_block),
            ));
            v.push((
                "Metadata Space Available".into(),
                human_size((s.metadata_total - s.metadata_used.min(s.metadata_total)) * meta_block),
            ));
            v.push((
                "Thin Pool Minimum Free Space".into(),
                human_size(s.data_total * bs * self.opts.min_free_space / 100),
            ));
            // Not in dockerd's list: a full pool fails writes with EIO, and this says why.
            let mode = if s.out_of_space {
                "out_of_data_space"
            } else if s.read_only {
                "ro"
            } else {
                "rw"
            };
            v.push(("Pool Mode".into(), mode.into()));
        }
        let deferred = self.lock().records.values().filter(|r| r.deleted).count();
        v.push((
            "Deferred Removal Enabled".into(),
            self.opts.deferred_removal.to_string(),
        ));
        v.push((
            "Deferred Deletion Enabled".into(),
            self.opts.deferred_deletion.to_string(),
        ));
        v.push(("Deferred Deleted Device Count".into(), deferred.to_string()));
        v.push((
            "Library Version".into(),
            format!("none (ioctls; device-mapper {})", self.ctl.version()),
        ));
        v
    }

    fn warnings(&self) -> Vec<String> {
        if self.loop_files.is_none() {
            return Vec::new();
        }
        vec!["WARNING: devicemapper: usage of loopback devices is strongly discouraged for production use.\n         Use `--storage-opt dm.thinpooldev` or `--storage-opt dm.directlvm_device` to give it a block device.".into()]
    }

    fn metadata(&self, id: &str) -> DriverResult<BTreeMap<String, String>> {
        let st = self.lock();
        let r = st
            .records
            .get(id)
            .filter(|r| !r.deleted)
            .ok_or_else(|| Self::not_found(id))?;
        Ok(BTreeMap::from([
            ("DeviceId".into(), r.device_id.to_string()),
            ("DeviceSize".into(), r.size.to_string()),
            ("DeviceName".into(), self.dev_name(id)),
        ]))
    }

    fn strays(&self) -> DriverResult<Vec<strata_graph::Stray>> {
        let mounted: std::collections::HashSet<String> = self
            .lock()
            .mounts
            .keys()
            .map(|id| self.dev_name(id))
            .collect();
        Ok(self
            .active_devices()?
            .into_iter()
            .filter(|n| !mounted.contains(n))
            .map(|name| strata_graph::Stray {
                kind: "device-mapper device".into(),
                name,
            })
            .collect())
    }

    fn remove_stray(&self, stray: &strata_graph::Stray) -> DriverResult<()> {
        if !stray.name.starts_with(&format!("{}-", self.prefix)) || stray.name == self.pool {
            return Err(invalid(format!(
                "{} is not a device of this driver",
                stray.name
            )));
        }
        self.ctl.remove(&stray.name, false).map_err(dm_err)
    }

    fn backing_files(&self) -> Vec<PathBuf> {
        self.loop_files
            .as_ref()
            .map(|(d, m)| vec![d.clone(), m.clone()])
            .unwrap_or_default()
    }

    fn cleanup(&self) -> DriverResult<()> {
        let mut st = self.lock();
        let mut first_err = None;
        let mounted: Vec<String> = st.mounts.keys().cloned().collect();
        for id in mounted {
            if let Err(e) = strata_graph::sys::umount2(&self.mnt(&id), libc::MNT_DETACH) {
                if e.raw_os_error() != Some(libc::EINVAL) {
                    first_err.get_or_insert(io_err(NAME, format!("unmounting {id}"))(e));
                }
            }
        }
        st.mounts.clear();
        for name in self.active_devices()? {
            if let Err(e) = self.ctl.remove(&name, self.opts.deferred_removal) {
                first_err.get_or_insert(dm_err(e));
            }
        }
        if self.owns_pool && first_err.is_none() {
            if let Err(e) = self.ctl.remove(&self.pool, false) {
                first_err.get_or_insert(dm_err(e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn apply_target(&self, id: &str, _parent: Option<&str>) -> DriverResult<ApplyTarget> {
        let root = self.get(id, "")?;
        Ok(ApplyTarget {
            root,
            whiteouts: WhiteoutFormat::Delete,
            lowers: Vec::new(),
        })
    }

    fn release_apply_target(&self, id: &str) -> DriverResult<()> {
        self.put(id)
    }
}

/// The background deferred-deletion pass: wakes twice a second to notice a dropped driver,
/// and every [`DEFERRED_PASS_EVERY`] retries what is pending.
fn deferred_deletion_pass(driver: Weak<DevmapperDriver>) {
    let tick = Duration::from_millis(500);
    let mut since = Duration::ZERO;
    loop {
        std::thread::sleep(tick);
        let Some(d) = driver.upgrade() else {
            return;
        };
        since += tick;
        if since >= DEFERRED_PASS_EVERY {
            since = Duration::ZERO;
            let mut st = d.lock();
            if st.records.values().any(|r| r.deleted) {
                d.delete_deferred(&mut st);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_dockerd_prints_them() {
        assert_eq!(human_size(65536), "65.54kB");
        assert_eq!(human_size(10 << 30), "10.74GB");
        assert_eq!(human_size(107_374_182_400), "107.4GB");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
    }
}
