//! The layer store: content-addressed image layers and container layers over a graph driver.

use super::record::*;
use super::rw_size::{size_path, Known, RwSizes, SIZE_SUFFIX};
use crate::archive::tarsplit::{TarSplitReader, TarSplitWriter};
use crate::archive::{apply_layer, ApplyError, ApplyOptions, Change, TarSplitSink};
use crate::digest::{chain_id, ChainId, DiffId, DigestReader};
use crate::driver::{CreateOpts, Driver, DriverError};
use crate::fsutil::{
    self, atomic_write, fsync_dir, mkdir_all, random_id, remove_tree, rename_durable,
};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// How long the size worker lets a container layer settle after its last unmount before it
/// measures it (a `run --rm` removes the layer meanwhile).
const SETTLE: Duration = Duration::from_secs(1);

/// Errors of the layer store.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer {0} does not exist")]
    NotFound(ChainId),
    #[error("parent layer {0} does not exist")]
    ParentNotFound(ChainId),
    #[error("layer digest mismatch: expected {expected}, the data has {actual}")]
    DigestMismatch { expected: DiffId, actual: DiffId },
    #[error("container layer {0:?} already exists")]
    RwExists(String),
    #[error("container layer {0:?} does not exist")]
    RwNotFound(String),
    #[error("invalid container layer name {0:?}")]
    BadName(String),
    #[error("max depth exceeded: a chain of {depth} layers is deeper than the {driver} driver can mount ({max})")]
    TooDeep {
        depth: usize,
        max: usize,
        driver: &'static str,
    },
    #[error("layer {0} has no references to release")]
    NotReferenced(ChainId),
    #[error("the layer store holds layers of the {store} storage driver, not {driver}: start with --storage-driver {store}, or move the layers with `strata storage migrate --to {driver}`")]
    OtherDriver { store: String, driver: String },
    #[error("the layer store is shutting down")]
    Closed,
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("layer store: {context}: {source}")]
    Io { context: String, source: io::Error },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let context = context.into();
    move |source| LayerError::Io { context, source }
}

/// A committed image layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub chain_id: ChainId,
    pub diff_id: DiffId,
    pub parent: Option<ChainId>,
    pub cache_id: String,
    pub size: u64,
    pub references: u64,
    pub created: u64,
    /// Length of the layer's uncompressed tar.
    pub tar_bytes: u64,
}

/// A container layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RwLayer {
    pub name: String,
    pub cache_id: String,
    pub parent: Option<ChainId>,
}

/// What opening the store found and did.
#[derive(Debug, Default, Clone)]
pub struct ReconcileReport {
    /// Registrations that were interrupted and have been removed.
    pub removed_temp: Vec<String>,
    /// Removals that were interrupted and have been finished.
    pub finished_removals: Vec<String>,
    /// Driver data no record owns, removed.
    pub orphans_removed: Vec<String>,
    /// Records set aside, with the reason.
    pub quarantined: Vec<(String, String)>,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.removed_temp.is_empty()
            && self.finished_removals.is_empty()
            && self.orphans_removed.is_empty()
            && self.quarantined.is_empty()
    }
}

/// What [`LayerStore::rebuild_references`] changed.
#[derive(Debug, Default, Clone)]
pub struct RebuiltReferences {
    /// Layers whose count changed: (layer, recorded, now).
    pub changed: Vec<(ChainId, u64, u64)>,
    /// Layers removed because nothing needs them any more.
    pub removed: Vec<ChainId>,
}

/// Options of one registration.
#[derive(Default)]
pub struct RegisterOpts<'a> {
    /// The diffID the caller expects (from an image config): a layer that already exists is
    /// then reused without reading the input, and data with another digest is refused.
    pub expected: Option<DiffId>,
    /// Called with the number of uncompressed bytes unpacked so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

struct Entry {
    rec: LayerRecord,
    children: u64,
}

#[derive(Default)]
struct State {
    layers: HashMap<ChainId, Entry>,
    mounts: HashMap<String, RwRecord>,
    /// Layers being used as a parent by a registration in progress.
    pins: HashMap<ChainId, u32>,
    /// Cache ids of registrations in progress (their directories are in `tmp/`).
    inflight: HashSet<String>,
}

/// Content-addressed layers over one graph driver.
pub struct LayerStore {
    paths: StorePaths,
    driver: Arc<dyn Driver>,
    state: Mutex<State>,
    /// One lock per chainID: two registrations of the same layer extract it once.
    chain_locks: Mutex<HashMap<ChainId, Arc<Mutex<()>>>>,
    /// Container layers' size counters.
    sizes: Arc<RwSizes>,
    /// Held (shared) while a container layer is measured, which mounts it and its parent on
    /// most drivers; removals take it exclusively, so they never meet a measurement's mounts.
    measuring: RwLock<()>,
    /// Set by `cleanup`: nothing is measured any more.
    closed: std::sync::atomic::AtomicBool,
}

impl LayerStore {
    /// Opens (creating if needed) the store at `root` and reconciles it with the driver.
    pub fn open(
        root: &Path,
        driver: Arc<dyn Driver>,
    ) -> Result<(LayerStore, ReconcileReport), LayerError> {
        let paths = StorePaths {
            root: root.to_path_buf(),
        };
        for d in paths.all_dirs() {
            mkdir_all(&d, 0o700).map_err(io_ctx(format!("creating {}", d.display())))?;
        }
        match store_driver(root).map_err(io_ctx("reading the layer store's driver"))? {
            Some(name) if name != driver.name() => {
                return Err(LayerError::OtherDriver {
                    store: name,
                    driver: driver.name().into(),
                })
            }
            Some(_) => {}
            None => atomic_write(&paths.driver_file(), driver.name().as_bytes())
                .map_err(io_ctx("recording the layer store's driver"))?,
        }
        let mut store = LayerStore {
            sizes: Arc::new(RwSizes::load(&paths.mounts(), [])),
            paths,
            driver,
            state: Mutex::new(State::default()),
            chain_locks: Mutex::new(HashMap::new()),
            measuring: RwLock::new(()),
            closed: Default::default(),
        };
        let report = store.reconcile()?;
        store.sizes = Arc::new(RwSizes::load(&store.paths.mounts(), store.rw_names()));
        Ok((store, report))
    }

    /// Opens the store at `root` to read it, changing nothing: no directory is made, no record
    /// moved, nothing reconciled. Records that cannot be read, or whose data or parent is
    /// missing, are simply left out (`strata storage check` reports them from the disk).
    pub fn open_read_only(root: &Path, driver: Arc<dyn Driver>) -> Result<LayerStore, LayerError> {
        let paths = StorePaths {
            root: root.to_path_buf(),
        };
        let mut st = State::default();
        for rec in layer_records(&paths)
            .map_err(io_ctx("reading layers"))?
            .into_iter()
            .filter_map(|f| f.record.ok())
        {
            if driver.exists(&rec.cache_id) {
                st.layers.insert(rec.chain_id, Entry { rec, children: 0 });
            }
        }
        for rec in rw_records(&paths)
            .map_err(io_ctx("reading mounts"))?
            .into_iter()
            .filter_map(|f| f.record.ok())
        {
            st.mounts.insert(rec.name.clone(), rec);
        }
        // Only whole chains: a layer whose parent is left out is left out too.
        loop {
            let orphaned: Vec<ChainId> = st
                .layers
                .iter()
                .filter(|(_, e)| e.rec.parent.is_some_and(|p| !st.layers.contains_key(&p)))
                .map(|(c, _)| *c)
                .collect();
            if orphaned.is_empty() {
                break;
            }
            for c in orphaned {
                st.layers.remove(&c);
            }
        }
        count_children(&mut st);
        let sizes = RwSizes::load(&paths.mounts(), st.mounts.keys().cloned());
        Ok(LayerStore {
            paths,
            driver,
            state: Mutex::new(st),
            chain_locks: Mutex::new(HashMap::new()),
            sizes: Arc::new(sizes),
            measuring: RwLock::new(()),
            closed: Default::default(),
        })
    }

    /// Where the store keeps its records.
    pub fn paths(&self) -> &StorePaths {
        &self.paths
    }

    /// Cache ids of registrations in progress: their `tmp/` directories and driver data are
    /// not leftovers.
    pub fn inflight(&self) -> HashSet<String> {
        self.state().inflight.clone()
    }

    /// The driver under the store.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn chain_lock(&self, chain: &ChainId) -> Arc<Mutex<()>> {
        let mut locks = self.chain_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(*chain).or_default().clone()
    }

    fn reconcile(&self) -> Result<ReconcileReport, LayerError> {
        let mut report = ReconcileReport::default();
        // Driver data of quarantined records is kept for inspection and repair.
        let mut keep: std::collections::HashSet<String> = std::collections::HashSet::new();
        let p = &self.paths;
        for e in fs::read_dir(p.quarantine()).map_err(io_ctx("reading quarantine"))? {
            let path = e.map_err(io_ctx("reading quarantine"))?.path();
            if let Ok(rec) = read_json::<LayerRecord>(&path.join(LAYER_JSON)) {
                keep.insert(rec.cache_id);
            } else if let Ok(rec) = read_json::<RwRecord>(&path) {
                keep.insert(rec.cache_id);
            }
        }
        // Interrupted registrations: their records never became visible.
        for e in fs::read_dir(p.tmp()).map_err(io_ctx("reading tmp"))? {
            let e = e.map_err(io_ctx("reading tmp"))?;
            remove_tree(&e.path()).map_err(io_ctx("removing an interrupted registration"))?;
            report
                .removed_temp
                .push(e.file_name().to_string_lossy().into_owned());
        }
        // Interrupted removals: finish them.
        for e in fs::read_dir(p.removing()).map_err(io_ctx("reading removing"))? {
            let e = e.map_err(io_ctx("reading removing"))?;
            if let Ok(rec) = read_json::<LayerRecord>(&e.path().join(LAYER_JSON)) {
                match self.driver.remove(&rec.cache_id) {
                    Ok(()) | Err(DriverError::NotFound { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            remove_tree(&e.path()).map_err(io_ctx("finishing a removal"))?;
            report
                .finished_removals
                .push(e.file_name().to_string_lossy().into_owned());
        }
        for e in fs::read_dir(p.mounts()).map_err(io_ctx("reading mounts"))? {
            let e = e.map_err(io_ctx("reading mounts"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".removing") {
                if let Ok(rec) = read_json::<RwRecord>(&e.path()) {
                    match self.driver.remove(&rec.cache_id) {
                        Ok(()) | Err(DriverError::NotFound { .. }) => {}
                        Err(err) => return Err(err.into()),
                    }
                }
                fs::remove_file(e.path()).map_err(io_ctx("finishing a container layer removal"))?;
                report.finished_removals.push(name);
            } else if name.starts_with('.') {
                // A temp file of an interrupted atomic write.
                let _ = fs::remove_file(e.path());
            }
        }
        let mut st = self.state();
        for f in layer_records(p).map_err(io_ctx("reading layers"))? {
            match f.record {
                Ok(rec) => {
                    st.layers.insert(rec.chain_id, Entry { rec, children: 0 });
                }
                Err(RecordProblem::Misplaced(_)) => self.quarantine(
                    &f.path,
                    &f.name,
                    "record does not match its directory name",
                    &mut report,
                )?,
                Err(RecordProblem::Unreadable(why)) => self.quarantine(
                    &f.path,
                    &f.name,
                    &format!("unreadable record: {why}"),
                    &mut report,
                )?,
            }
        }
        for f in rw_records(p).map_err(io_ctx("reading mounts"))? {
            match f.record {
                Ok(rec) => {
                    st.mounts.insert(rec.name.clone(), rec);
                }
                Err(_) => self.quarantine(
                    &f.path,
                    &format!("{}.json", f.name),
                    "unreadable container layer record",
                    &mut report,
                )?,
            }
        }
        // Records whose data is gone, or whose parent is gone, are set aside, never used.
        loop {
            let mut bad: Vec<(ChainId, String)> = Vec::new();
            for (c, e) in &st.layers {
                if !self.driver.exists(&e.rec.cache_id) {
                    bad.push((*c, format!("driver data {} is missing", e.rec.cache_id)));
                } else if let Some(par) = &e.rec.parent {
                    if !st.layers.contains_key(par) {
                        bad.push((*c, format!("parent layer {par} is missing")));
                    }
                }
            }
            if bad.is_empty() {
                break;
            }
            for (c, why) in bad {
                if let Some(e) = st.layers.remove(&c) {
                    keep.insert(e.rec.cache_id);
                }
                tracing::error!(layer = %c, "quarantining layer: {why}");
                self.quarantine(&p.layer_dir(&c), &c.hex(), &why, &mut report)?;
            }
        }
        let bad_mounts: Vec<(String, String)> = st
            .mounts
            .values()
            .filter_map(|m| {
                if !self.driver.exists(&m.cache_id) {
                    Some((
                        m.name.clone(),
                        format!("driver data {} is missing", m.cache_id),
                    ))
                } else {
                    m.parent
                        .filter(|par| !st.layers.contains_key(par))
                        .map(|par| (m.name.clone(), format!("parent layer {par} is missing")))
                }
            })
            .collect();
        for (name, why) in bad_mounts {
            if let Some(m) = st.mounts.remove(&name) {
                keep.insert(m.cache_id);
            }
            self.quarantine(
                &p.mount_record(&name),
                &format!("{name}.json"),
                &why,
                &mut report,
            )?;
        }
        // Size counters of container layers that are gone, or that cannot be read.
        for e in fs::read_dir(p.mounts()).map_err(io_ctx("reading mounts"))? {
            let e = e.map_err(io_ctx("reading mounts"))?;
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(SIZE_SUFFIX) else {
                continue;
            };
            if !st.mounts.contains_key(name) || super::rw_size::read_size_file(&e.path()).is_none()
            {
                fs::remove_file(e.path()).map_err(io_ctx("removing a stale size counter"))?;
            }
        }
        count_children(&mut st);
        // Driver data that no record owns: half-applied layers.
        let owned: std::collections::HashSet<&str> = st
            .layers
            .values()
            .map(|e| e.rec.cache_id.as_str())
            .chain(st.mounts.values().map(|m| m.cache_id.as_str()))
            .collect();
        for id in self.driver.list()? {
            if !owned.contains(id.as_str()) && !keep.contains(&id) {
                tracing::warn!(id, "removing driver data that no layer owns");
                self.driver.remove(&id)?;
                report.orphans_removed.push(id);
            }
        }
        Ok(report)
    }

    fn quarantine(
        &self,
        path: &Path,
        name: &str,
        why: &str,
        report: &mut ReconcileReport,
    ) -> Result<(), LayerError> {
        let dest = self
            .paths
            .quarantine()
            .join(format!("{name}.{}", random_id(4)));
        rename_durable(path, &dest).map_err(io_ctx(format!("quarantining {}", path.display())))?;
        // `<dest>.reason`: one per quarantined entry, even for a name set aside twice.
        let mut reason = dest.clone().into_os_string();
        reason.push(".reason");
        let _ = fs::write(reason, why);
        report.quarantined.push((name.to_string(), why.to_string()));
        Ok(())
    }

    /// The number of layers in the chain ending at `chain` (1 for a base layer).
    fn depth_of(st: &State, chain: &ChainId) -> usize {
        let mut n = 0;
        let mut cur = Some(*chain);
        while let Some(c) = cur {
            n += 1;
            cur = st.layers.get(&c).and_then(|e| e.rec.parent);
        }
        n
    }

    /// Refuses a chain deeper than the driver can mount.
    fn check_depth(&self, depth: usize) -> Result<(), LayerError> {
        match self.driver.max_depth() {
            Some(max) if depth > max => Err(LayerError::TooDeep {
                depth,
                max,
                driver: self.driver.name(),
            }),
            _ => Ok(()),
        }
    }

    fn to_layer(e: &Entry) -> Layer {
        Layer {
            chain_id: e.rec.chain_id,
            diff_id: e.rec.diff_id,
            parent: e.rec.parent,
            cache_id: e.rec.cache_id.clone(),
            size: e.rec.size,
            references: e.rec.references,
            created: e.rec.created,
            tar_bytes: e.rec.tar_bytes,
        }
    }

    /// The number of layers in the chain ending at `chain` (1 for a base layer, 0 when it
    /// does not exist).
    pub fn depth(&self, chain: &ChainId) -> usize {
        let st = self.state();
        if st.layers.contains_key(chain) {
            Self::depth_of(&st, chain)
        } else {
            0
        }
    }

    /// A committed layer.
    pub fn get(&self, chain: &ChainId) -> Option<Layer> {
        self.state().layers.get(chain).map(Self::to_layer)
    }

    /// All committed layers.
    pub fn list(&self) -> Vec<Layer> {
        let mut v: Vec<Layer> = self.state().layers.values().map(Self::to_layer).collect();
        v.sort_by_key(|l| l.chain_id);
        v
    }

    fn persist(&self, rec: &LayerRecord) -> Result<(), LayerError> {
        let data = serde_json::to_vec_pretty(rec)
            .map_err(|e| io_ctx("encoding a record")(io::Error::other(e)))?;
        atomic_write(&self.paths.layer_dir(&rec.chain_id).join(LAYER_JSON), &data)
            .map_err(io_ctx("writing a layer record"))
    }

    /// Sets every layer's reference count to what its holders say (layers missing from the map
    /// have none) and removes layers nobody needs. Only correct when the caller knows every
    /// holder, i.e. at start-up before anything registers. Says what changed; the caller
    /// decides whether that is news (at start-up it is; in a migration it is the point).
    pub fn rebuild_references(
        &self,
        expected: &HashMap<ChainId, u64>,
    ) -> Result<RebuiltReferences, LayerError> {
        let _m = self.no_measurement();
        let mut st = self.state();
        let mut changed = Vec::new();
        let mut out = RebuiltReferences::default();
        for (c, e) in st.layers.iter_mut() {
            let want = expected.get(c).copied().unwrap_or(0);
            if e.rec.references != want {
                out.changed.push((*c, e.rec.references, want));
                e.rec.references = want;
                changed.push(e.rec.clone());
            }
        }
        for rec in &changed {
            self.persist(rec)?;
        }
        for rec in changed.iter().filter(|r| r.references == 0) {
            out.removed.extend(self.collect(&mut st, rec.chain_id)?);
        }
        Ok(out)
    }

    /// Adds a reference to an existing layer.
    pub fn retain(&self, chain: &ChainId) -> Result<Layer, LayerError> {
        let mut st = self.state();
        let e = st
            .layers
            .get_mut(chain)
            .ok_or(LayerError::NotFound(*chain))?;
        e.rec.references += 1;
        let rec = e.rec.clone();
        let layer = Self::to_layer(e);
        drop(st);
        if let Err(err) = self.persist(&rec) {
            if let Some(e) = self.state().layers.get_mut(chain) {
                e.rec.references -= 1;
            }
            return Err(err);
        }
        Ok(layer)
    }

    /// Unpacks `input` (a layer tar, compressed or not) as a child of `parent` and commits it;
    /// the returned layer carries one more reference, which the caller must release.
    pub fn register<R: Read + Send>(
        &self,
        parent: Option<&ChainId>,
        input: R,
        opts: RegisterOpts<'_>,
    ) -> Result<Layer, LayerError> {
        let parent_cache = match parent {
            None => None,
            Some(p) => {
                let mut st = self.state();
                let cache = st
                    .layers
                    .get(p)
                    .map(|e| e.rec.cache_id.clone())
                    .ok_or(LayerError::ParentNotFound(*p))?;
                self.check_depth(Self::depth_of(&st, p) + 1)?;
                *st.pins.entry(*p).or_default() += 1;
                Some(cache)
            }
        };
        let res = self.register_pinned(parent, parent_cache.as_deref(), input, opts);
        if let Some(p) = parent {
            let mut st = self.state();
            if let Some(n) = st.pins.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    st.pins.remove(p);
                }
            }
        }
        res
    }

    fn register_pinned<R: Read + Send>(
        &self,
        parent: Option<&ChainId>,
        parent_cache: Option<&str>,
        input: R,
        opts: RegisterOpts<'_>,
    ) -> Result<Layer, LayerError> {
        // With a known digest, lock first: a layer that exists (or is being registered by
        // someone else) is extracted once.
        let early = opts.expected.map(|d| chain_id(parent, &d));
        let early_lock = early.map(|c| self.chain_lock(&c));
        let _early_guard = early_lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        if let Some(c) = &early {
            // Exists: take a reference in one step (a release racing with us may remove it
            // between a look and a retain; then we simply extract). The input is not read.
            match self.retain(c) {
                Ok(l) => return Ok(l),
                Err(LayerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let cache_id = random_id(32);
        let tmp = self.paths.tmp().join(&cache_id);
        let _inflight = Inflight::new(self, &cache_id);
        fs::create_dir(&tmp).map_err(io_ctx("creating a registration directory"))?;
        let result = self.extract(&tmp, &cache_id, parent_cache, input, &opts);
        let (diff_id, size, tar_bytes, overrides) = match result {
            Ok(v) => v,
            Err(e) => {
                self.discard(&tmp, &cache_id);
                return Err(e);
            }
        };
        if let Some(exp) = opts.expected {
            if exp != diff_id {
                self.discard(&tmp, &cache_id);
                return Err(LayerError::DigestMismatch {
                    expected: exp,
                    actual: diff_id,
                });
            }
        }
        let chain = chain_id(parent, &diff_id);
        let late_lock = if early.is_none() {
            Some(self.chain_lock(&chain))
        } else {
            None
        };
        let _late_guard = late_lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        match self.retain(&chain) {
            Ok(l) => {
                self.discard(&tmp, &cache_id);
                return Ok(l);
            }
            Err(LayerError::NotFound(_)) => {}
            Err(e) => {
                self.discard(&tmp, &cache_id);
                return Err(e);
            }
        }
        let rec = LayerRecord {
            chain_id: chain,
            diff_id,
            parent: parent.copied(),
            cache_id: cache_id.clone(),
            size,
            references: 1,
            created: now(),
            tar_bytes,
            overrides,
        };
        if let Err(e) = self.commit(&tmp, &rec) {
            self.discard(&tmp, &cache_id);
            return Err(e);
        }
        let mut st = self.state();
        if let Some(p) = parent {
            if let Some(pe) = st.layers.get_mut(p) {
                pe.children += 1;
            }
        }
        let entry = Entry { rec, children: 0 };
        let layer = Self::to_layer(&entry);
        st.layers.insert(chain, entry);
        tracing::info!(layer = %chain, diff_id = %diff_id, size, "layer registered");
        Ok(layer)
    }

    #[allow(clippy::type_complexity)]
    fn extract<R: Read + Send>(
        &self,
        tmp: &Path,
        cache_id: &str,
        parent_cache: Option<&str>,
        input: R,
        opts: &RegisterOpts<'_>,
    ) -> Result<(DiffId, u64, u64, Vec<crate::archive::tarsplit::Override>), LayerError> {
        self.driver
            .create(cache_id, parent_cache, &CreateOpts::default())?;
        let target = self.driver.apply_target(cache_id, parent_cache)?;
        let ts = File::create(tmp.join(TAR_SPLIT)).map_err(io_ctx("creating tar-split"))?;
        let shadow = File::options()
            .create(true)
            .read(true)
            .append(true)
            .open(tmp.join(SHADOW))
            .map_err(io_ctx("creating shadow"))?;
        let sink = TarSplitSink {
            writer: TarSplitWriter::new(ts).map_err(io_ctx("creating tar-split"))?,
            shadow,
        };
        let mut o = ApplyOptions::new(target.whiteouts);
        o.lowers = target.lowers.clone();
        o.tarsplit = Some(sink);
        o.progress = opts.progress;
        let res = apply_layer(&target.root, input, o);
        let released = self.driver.release_apply_target(cache_id);
        let res = res?;
        released?;
        // The layer's data must be durable before its record says it exists.
        fsutil::syncfs_path(self.driver.home()).map_err(io_ctx("syncing layer data"))?;
        Ok((res.diff_id, res.size, res.tar_bytes, res.overrides))
    }

    fn commit(&self, tmp: &Path, rec: &LayerRecord) -> Result<(), LayerError> {
        let data = serde_json::to_vec_pretty(rec)
            .map_err(|e| io_ctx("encoding a record")(io::Error::other(e)))?;
        let shadow = tmp.join(SHADOW);
        if fs::metadata(&shadow).map(|m| m.len() == 0).unwrap_or(false) {
            fs::remove_file(&shadow).map_err(io_ctx("removing empty shadow"))?;
        }
        atomic_write(&tmp.join(LAYER_JSON), &data).map_err(io_ctx("writing the layer record"))?;
        fsync_dir(tmp).map_err(io_ctx("syncing the layer record"))?;
        rename_durable(tmp, &self.paths.layer_dir(&rec.chain_id))
            .map_err(io_ctx("committing the layer"))
    }

    /// Waits for measurements in progress and keeps new ones out while held.
    fn no_measurement(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.measuring.write().unwrap_or_else(|p| p.into_inner())
    }

    fn discard(&self, tmp: &Path, cache_id: &str) {
        match self.driver.remove(cache_id) {
            Ok(()) | Err(DriverError::NotFound { .. }) => {}
            Err(e) => tracing::error!(cache_id, "removing data of a failed registration: {e}"),
        }
        if let Err(e) = remove_tree(tmp) {
            tracing::error!(path = %tmp.display(), "removing a failed registration: {e}");
        }
    }

    /// Drops one reference; a layer with no references and no children is deleted, and so,
    /// in turn, are parents left unreferenced. Returns the deleted layers.
    pub fn release(&self, chain: &ChainId) -> Result<Vec<ChainId>, LayerError> {
        let _m = self.no_measurement();
        let lock = self.chain_lock(chain);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.state();
        let e = st
            .layers
            .get_mut(chain)
            .ok_or(LayerError::NotFound(*chain))?;
        if e.rec.references == 0 {
            return Err(LayerError::NotReferenced(*chain));
        }
        e.rec.references -= 1;
        let rec = e.rec.clone();
        self.persist(&rec)?;
        self.collect(&mut st, *chain)
    }

    /// Deletes `chain` and its unreferenced ancestors while nothing needs them.
    fn collect(&self, st: &mut State, mut chain: ChainId) -> Result<Vec<ChainId>, LayerError> {
        let mut removed = Vec::new();
        while let Some(e) = st.layers.get(&chain) {
            if e.rec.references > 0 || e.children > 0 || st.pins.contains_key(&chain) {
                break;
            }
            let rec = e.rec.clone();
            let dir = self.paths.layer_dir(&chain);
            let gone = self.paths.removing().join(chain.hex());
            rename_durable(&dir, &gone).map_err(io_ctx("starting a layer removal"))?;
            st.layers.remove(&chain);
            match self.driver.remove(&rec.cache_id) {
                Ok(()) | Err(DriverError::NotFound { .. }) => {}
                Err(err) => {
                    // Put it back: the layer is still whole.
                    let _ = rename_durable(&gone, &dir);
                    st.layers.insert(chain, Entry { rec, children: 0 });
                    return Err(err.into());
                }
            }
            remove_tree(&gone).map_err(io_ctx("finishing a layer removal"))?;
            tracing::info!(layer = %chain, "layer removed");
            removed.push(chain);
            match rec.parent {
                Some(p) => {
                    if let Some(pe) = st.layers.get_mut(&p) {
                        pe.children -= 1;
                    }
                    chain = p;
                }
                None => break,
            }
        }
        Ok(removed)
    }

    /// The layer's tar, rebuilt byte for byte from its tar-split record and its files.
    pub fn export(&self, chain: &ChainId) -> Result<LayerExport, LayerError> {
        let rec = self
            .state()
            .layers
            .get(chain)
            .map(|e| e.rec.clone())
            .ok_or(LayerError::NotFound(*chain))?;
        let dir = self.paths.layer_dir(chain);
        let records = File::open(dir.join(TAR_SPLIT))
            .map_err(io_ctx(format!("opening tar-split of {chain}")))?;
        let shadow = match File::open(dir.join(SHADOW)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_ctx("opening shadow")(e)),
        };
        let root = self.driver.export_root(&rec.cache_id)?;
        let rootfd = match crate::sys::open(&root, libc::O_PATH | libc::O_DIRECTORY, 0) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.driver.release_export_root(&rec.cache_id);
                return Err(io_ctx("opening layer root")(e));
            }
        };
        let reader = TarSplitReader::new(records, rootfd, shadow, rec.overrides.clone())
            .map_err(io_ctx("reading tar-split"));
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = self.driver.release_export_root(&rec.cache_id);
                return Err(e);
            }
        };
        Ok(LayerExport {
            inner: DigestReader::new(reader),
            driver: self.driver.clone(),
            cache_id: rec.cache_id,
            expected: rec.diff_id,
            released: false,
        })
    }

    /// Re-exports a layer and checks its digest against the recorded diffID.
    pub fn verify(&self, chain: &ChainId) -> Result<(), LayerError> {
        let mut ex = self.export(chain)?;
        io::copy(&mut ex, &mut io::sink()).map_err(io_ctx(format!("re-exporting {chain}")))?;
        let actual = ex.digest();
        if actual != ex.expected {
            return Err(LayerError::DigestMismatch {
                expected: ex.expected,
                actual,
            });
        }
        Ok(())
    }

    /// Creates a container layer `name` on top of `parent`.
    pub fn create_rw(
        &self,
        name: &str,
        parent: Option<&ChainId>,
        opts: &CreateOpts,
    ) -> Result<RwLayer, LayerError> {
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(LayerError::BadName(name.into()));
        }
        let mut st = self.state();
        if st.mounts.contains_key(name) {
            return Err(LayerError::RwExists(name.into()));
        }
        let parent_cache = match parent {
            Some(p) => Some(
                st.layers
                    .get(p)
                    .map(|e| e.rec.cache_id.clone())
                    .ok_or(LayerError::ParentNotFound(*p))?,
            ),
            None => None,
        };
        if let Some(p) = parent {
            // The container's layer mounts over every layer of its image.
            self.check_depth(Self::depth_of(&st, p))?;
        }
        let cache_id = random_id(32);
        self.driver
            .create_rw(&cache_id, parent_cache.as_deref(), opts)?;
        let rec = RwRecord {
            name: name.into(),
            cache_id: cache_id.clone(),
            parent: parent.copied(),
            created: now(),
        };
        let data = serde_json::to_vec_pretty(&rec)
            .map_err(|e| io_ctx("encoding a record")(io::Error::other(e)))?;
        if let Err(e) = atomic_write(&self.paths.mount_record(name), &data) {
            let _ = self.driver.remove(&cache_id);
            return Err(io_ctx("writing a container layer record")(e));
        }
        if let Some(p) = parent {
            if let Some(pe) = st.layers.get_mut(p) {
                pe.children += 1;
            }
        }
        st.mounts.insert(name.into(), rec);
        self.sizes.created(name);
        Ok(RwLayer {
            name: name.into(),
            cache_id,
            parent: parent.copied(),
        })
    }

    fn rw(&self, name: &str) -> Result<(RwRecord, Option<String>), LayerError> {
        let st = self.state();
        let rec = st
            .mounts
            .get(name)
            .cloned()
            .ok_or_else(|| LayerError::RwNotFound(name.into()))?;
        let pc = rec
            .parent
            .and_then(|p| st.layers.get(&p).map(|e| e.rec.cache_id.clone()));
        Ok((rec, pc))
    }

    /// A container layer.
    pub fn get_rw(&self, name: &str) -> Option<RwLayer> {
        self.state().mounts.get(name).map(|r| RwLayer {
            name: r.name.clone(),
            cache_id: r.cache_id.clone(),
            parent: r.parent,
        })
    }

    /// Mounts a container layer and returns its root. Its size counter is forgotten until
    /// the last mount is released.
    pub fn mount_rw(&self, name: &str, mount_label: &str) -> Result<PathBuf, LayerError> {
        let (rec, _) = self.rw(name)?;
        self.sizes
            .mounting(name)
            .map_err(io_ctx("forgetting a container layer's size"))?;
        let res = self.driver.get(&rec.cache_id, mount_label);
        if res.is_err() {
            self.sizes.unmounted(name);
        }
        Ok(res?)
    }

    /// Releases one mount of a container layer; after the last, its size is measured again
    /// (by the size worker, or by the next reader).
    pub fn unmount_rw(&self, name: &str) -> Result<(), LayerError> {
        let (rec, _) = self.rw(name)?;
        self.driver.put(&rec.cache_id)?;
        self.sizes.unmounted(name);
        Ok(())
    }

    /// Changes of a container layer against its image.
    pub fn rw_changes(&self, name: &str) -> Result<Vec<Change>, LayerError> {
        let (rec, pc) = self.rw(name)?;
        Ok(self.driver.changes(&rec.cache_id, pc.as_deref())?)
    }

    /// Writes a container layer's changes as a layer tar.
    pub fn rw_diff(&self, name: &str, out: &mut dyn Write) -> Result<(), LayerError> {
        let (rec, pc) = self.rw(name)?;
        Ok(self.driver.diff(&rec.cache_id, pc.as_deref(), out)?)
    }

    /// Size of a container layer's changes: its counter when it is not mounted and has been
    /// measured since its last mount; otherwise measured now (and counted, when unmounted).
    pub fn rw_size(&self, name: &str) -> Result<u64, LayerError> {
        if let Known::Size(s) = self.sizes.known(name) {
            self.rw(name)?;
            return Ok(s);
        }
        // No removal meanwhile: the layer is looked up under the same guard.
        let _m = self.measuring.read().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(LayerError::Closed);
        }
        let (rec, pc) = self.rw(name)?;
        let (mounted, generation) = match self.sizes.known(name) {
            Known::Size(s) => return Ok(s),
            Known::Unknown {
                mounted,
                generation,
            } => (mounted, generation),
        };
        let size = self.driver.diff_size(&rec.cache_id, pc.as_deref())?;
        if !mounted {
            if let Err(e) = self.sizes.record(name, generation, size) {
                tracing::warn!(layer = name, "recording a container layer's size: {e}");
            }
        }
        Ok(size)
    }

    /// The counted size of a container layer, if it is not mounted and has been measured
    /// since its last mount; never walks the layer.
    pub fn counted_rw_size(&self, name: &str) -> Option<u64> {
        match self.sizes.known(name) {
            Known::Size(s) => Some(s),
            Known::Unknown { .. } => None,
        }
    }

    /// Forgets the counted size of container layer `name` (`strata storage repair`, when it
    /// is wrong); it is measured again.
    pub fn forget_rw_size(&self, name: &str) -> Result<(), LayerError> {
        self.sizes
            .forget(name)
            .map_err(io_ctx("forgetting a container layer's size"))
    }

    /// Where the counted size of container layer `name` is kept.
    pub fn rw_size_path(&self, name: &str) -> PathBuf {
        size_path(&self.paths.mounts(), name)
    }

    /// Measures every container layer waiting to be measured, now; returns how many.
    pub fn measure_pending_sizes(&self) -> usize {
        let mut n = 0;
        while let Some(name) = self.sizes.next(Duration::ZERO, Duration::ZERO) {
            if let Err(e) = self.rw_size(&name) {
                tracing::debug!(layer = name, "measuring a container layer: {e}");
            }
            n += 1;
        }
        n
    }

    /// Starts a thread that measures container layers after their last unmount, so that
    /// their sizes are counted before anyone asks. It ends when the store is dropped.
    pub fn start_size_worker(self: &Arc<Self>) -> io::Result<std::thread::JoinHandle<()>> {
        let store = Arc::downgrade(self);
        let sizes = self.sizes.clone();
        std::thread::Builder::new()
            .name("layer-sizes".into())
            .spawn(move || {
                while store.strong_count() > 0 {
                    let Some(name) = sizes.next(Duration::from_secs(1), SETTLE) else {
                        continue;
                    };
                    let Some(store) = store.upgrade() else {
                        break;
                    };
                    match store.rw_size(&name) {
                        Ok(size) => tracing::debug!(layer = name, size, "container layer measured"),
                        Err(e) => tracing::debug!(layer = name, "measuring a container layer: {e}"),
                    }
                }
            })
    }

    /// Removes a container layer (an error while it is mounted); returns image layers that
    /// were deleted because nothing needs them any more.
    pub fn remove_rw(&self, name: &str) -> Result<Vec<ChainId>, LayerError> {
        let _m = self.no_measurement();
        let mut st = self.state();
        let rec = st
            .mounts
            .get(name)
            .cloned()
            .ok_or_else(|| LayerError::RwNotFound(name.into()))?;
        let path = self.paths.mount_record(name);
        let gone = path.with_extension("json.removing");
        rename_durable(&path, &gone).map_err(io_ctx("starting a container layer removal"))?;
        if let Err(e) = self.driver.remove(&rec.cache_id) {
            if !matches!(e, DriverError::NotFound { .. }) {
                let _ = rename_durable(&gone, &path);
                return Err(e.into());
            }
        }
        fs::remove_file(&gone).map_err(io_ctx("finishing a container layer removal"))?;
        st.mounts.remove(name);
        self.sizes.removed(name);
        match rec.parent {
            Some(p) => {
                if let Some(pe) = st.layers.get_mut(&p) {
                    pe.children -= 1;
                }
                self.collect(&mut st, p)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Unpacks a layer tar (changes, with whiteouts) into container layer `name`, as a
    /// migration carries a container's changes from one driver to another.
    pub fn apply_rw(&self, name: &str, input: &mut (dyn Read + Send)) -> Result<u64, LayerError> {
        let (rec, pc) = self.rw(name)?;
        self.sizes
            .mounting(name)
            .map_err(io_ctx("forgetting a container layer's size"))?;
        let res = self.driver.apply_diff(&rec.cache_id, pc.as_deref(), input);
        self.sizes.unmounted(name);
        Ok(res?)
    }

    /// Sets layer `chain` aside with `why`: its record, and those of every layer and container
    /// layer built on it, move to `quarantine/`, and their driver data is kept for inspection.
    /// Returns the layers and the container layers set aside.
    pub fn quarantine_layer(
        &self,
        chain: &ChainId,
        why: &str,
    ) -> Result<(Vec<ChainId>, Vec<String>), LayerError> {
        let mut st = self.state();
        if !st.layers.contains_key(chain) {
            return Err(LayerError::NotFound(*chain));
        }
        let mut set: HashSet<ChainId> = HashSet::from([*chain]);
        loop {
            let more: Vec<ChainId> = st
                .layers
                .iter()
                .filter(|(c, e)| {
                    !set.contains(*c) && e.rec.parent.is_some_and(|p| set.contains(&p))
                })
                .map(|(c, _)| *c)
                .collect();
            if more.is_empty() {
                break;
            }
            set.extend(more);
        }
        let rws: Vec<String> = st
            .mounts
            .values()
            .filter(|m| m.parent.is_some_and(|p| set.contains(&p)))
            .map(|m| m.name.clone())
            .collect();
        let mut report = ReconcileReport::default();
        for name in &rws {
            self.quarantine(
                &self.paths.mount_record(name),
                &format!("{name}.json"),
                &format!("built on layer {chain}: {why}"),
                &mut report,
            )?;
            st.mounts.remove(name);
            self.sizes.removed(name);
        }
        let mut layers: Vec<ChainId> = set.into_iter().collect();
        layers.sort();
        for c in &layers {
            let reason = if c == chain {
                why.to_string()
            } else {
                format!("built on layer {chain}: {why}")
            };
            self.quarantine(&self.paths.layer_dir(c), &c.hex(), &reason, &mut report)?;
            if let Some(e) = st.layers.remove(c) {
                if let Some(p) = e.rec.parent {
                    if let Some(pe) = st.layers.get_mut(&p) {
                        pe.children = pe.children.saturating_sub(1);
                    }
                }
            }
            tracing::error!(layer = %c, "layer quarantined: {reason}");
        }
        Ok((layers, rws))
    }

    /// Names of every container layer.
    pub fn rw_names(&self) -> Vec<String> {
        self.state().mounts.keys().cloned().collect()
    }

    /// Driver metadata of a container layer (for `inspect`).
    pub fn rw_metadata(
        &self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, LayerError> {
        let (rec, _) = self.rw(name)?;
        Ok(self.driver.metadata(&rec.cache_id)?)
    }

    /// Driver metadata of a layer (for `inspect`).
    pub fn metadata(
        &self,
        chain: &ChainId,
    ) -> Result<std::collections::BTreeMap<String, String>, LayerError> {
        let cache = self
            .get(chain)
            .ok_or(LayerError::NotFound(*chain))?
            .cache_id;
        Ok(self.driver.metadata(&cache)?)
    }

    /// Unmounts everything; called at shutdown. A measurement in progress finishes first,
    /// and none starts after (the driver's mounts and devices are going away).
    pub fn cleanup(&self) -> Result<(), LayerError> {
        let _m = self.no_measurement();
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(self.driver.cleanup()?)
    }
}

/// Marks a registration as in progress for as long as it lives.
struct Inflight<'a> {
    store: &'a LayerStore,
    cache_id: String,
}

impl<'a> Inflight<'a> {
    fn new(store: &'a LayerStore, cache_id: &str) -> Inflight<'a> {
        store.state().inflight.insert(cache_id.into());
        Inflight {
            store,
            cache_id: cache_id.into(),
        }
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.store.state().inflight.remove(&self.cache_id);
    }
}

/// Counts each layer's children (layers and container layers built on it).
fn count_children(st: &mut State) {
    let parents: Vec<ChainId> = st
        .layers
        .values()
        .filter_map(|e| e.rec.parent)
        .chain(st.mounts.values().filter_map(|m| m.parent))
        .collect();
    for par in parents {
        if let Some(e) = st.layers.get_mut(&par) {
            e.children += 1;
        }
    }
}

/// The driver whose data a layer store at `root` refers to, as recorded when the store was
/// first opened; `None` for a store that has never been opened.
pub fn store_driver(root: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(StorePaths::at(root).driver_file()) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A layer's tar being re-exported; releases the driver's export root when dropped.
pub struct LayerExport {
    inner: DigestReader<TarSplitReader>,
    driver: Arc<dyn Driver>,
    cache_id: String,
    /// The recorded diffID.
    pub expected: DiffId,
    released: bool,
}

impl LayerExport {
    /// Digest of what has been read so far.
    pub fn digest(&self) -> DiffId {
        self.inner.digest()
    }
}

impl Read for LayerExport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Drop for LayerExport {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            if let Err(e) = self.driver.release_export_root(&self.cache_id) {
                tracing::error!(cache_id = %self.cache_id, "releasing export root: {e}");
            }
        }
    }
}
