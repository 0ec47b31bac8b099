//! `strata storage check`: reads the stores of a data root and the driver's data, and reports
//! what does not agree. It changes nothing.

use crate::images::{BadConfig, ConfigFile};
use crate::report::{Kind, Report};
use crate::strays;
use rand::seq::IndexedRandom;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use strata_graph::digest::{chain_id, ChainId, Digest};
use strata_graph::layer::record::{
    layer_records, read_json, rw_records, LayerRecord, RecordProblem, RwRecord, LAYER_JSON,
    TAR_SPLIT,
};
use strata_graph::layer::{read_size_file, SIZE_SUFFIX};
use strata_graph::{layout, LayerError, LayerStore};

/// How thorough a check is.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Re-export every layer instead of a sample.
    pub full: bool,
    /// How many layers a sample re-exports.
    pub sample: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            full: false,
            sample: 8,
        }
    }
}

/// A container, as far as the check needs it.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    /// Its ID, which is also its layer's name.
    pub id: String,
    pub name: String,
    /// Running (or paused): its layer is mounted, legitimately.
    pub running: bool,
}

/// What a check runs against.
pub struct Target<'a> {
    pub data_root: &'a Path,
    /// The layer store, loaded (the daemon's, or one opened read-only).
    pub layers: &'a LayerStore,
    pub containers: &'a [ContainerFacts],
    /// Through the running daemon: operations in progress are not leftovers.
    pub live: bool,
}

/// Measures the layers of stopped containers against their counted sizes (`--full`). A
/// container layer built on a layer whose content changed is not measured: it would differ
/// from its image by that change, which is the image's problem, not the count's.
fn size_counts(
    t: &Target<'_>,
    rw: &HashMap<String, RwRecord>,
    records: &BTreeMap<ChainId, LayerRecord>,
    r: &mut Report,
) {
    let driver = t.layers.driver();
    let running: HashSet<&str> = t
        .containers
        .iter()
        .filter(|c| c.running)
        .map(|c| c.id.as_str())
        .collect();
    let changed: HashSet<ChainId> = r
        .of(Kind::ContentMismatch)
        .filter_map(|f| f.subject.parse().ok())
        .collect();
    let on_changed = |mut cur: Option<ChainId>| {
        while let Some(c) = cur {
            if changed.contains(&c) {
                return true;
            }
            cur = records.get(&c).and_then(|l| l.parent);
        }
        false
    };
    for (name, rec) in rw {
        if running.contains(name.as_str()) || on_changed(rec.parent) {
            continue;
        }
        let Some(counted) = read_size_file(&t.layers.rw_size_path(name)) else {
            continue;
        };
        let parent = rec
            .parent
            .and_then(|p| records.get(&p))
            .map(|p| p.cache_id.as_str());
        match driver.diff_size(&rec.cache_id, parent) {
            Ok(holds) if holds != counted => r.problem(
                Kind::SizeCount,
                format!("container layer {name}"),
                format!("counted {counted} bytes; the layer holds {holds}"),
            ),
            Ok(_) => {}
            Err(e) => r
                .notes
                .push(format!("could not measure container layer {name}: {e}")),
        }
    }
}

/// Checks a data root. `progress` hears each re-exported layer (done, total).
pub fn check(t: &Target<'_>, o: &CheckOptions, progress: &dyn Fn(usize, usize)) -> Report {
    let paths = t.layers.paths().clone();
    let driver = t.layers.driver().clone();
    let mut r = Report {
        data_root: t.data_root.display().to_string(),
        driver: driver.name().into(),
        mode: if t.live { "daemon" } else { "offline" }.into(),
        full: o.full,
        ..Report::default()
    };
    let inflight = if t.live {
        t.layers.inflight()
    } else {
        HashSet::new()
    };

    // Layer records, as they are on disk.
    let mut records: BTreeMap<ChainId, LayerRecord> = BTreeMap::new();
    let mut owned: HashSet<String> = HashSet::new();
    let layer_files = layer_records(&paths).unwrap_or_else(|e| {
        r.notes
            .push(format!("could not read the layer records: {e}"));
        Vec::new()
    });
    for f in layer_files {
        let name = f.name;
        match f.record {
            Err(RecordProblem::Unreadable(why)) => r.problem(
                Kind::LayerRecord,
                format!("layer directory {name}"),
                format!("unreadable record: {why}"),
            ),
            Err(RecordProblem::Misplaced(rec)) => {
                owned.insert(rec.cache_id.clone());
                r.problem(
                    Kind::LayerRecord,
                    format!("layer directory {name}"),
                    format!("its record is of layer {}", rec.chain_id),
                )
            }
            Ok(rec) => {
                owned.insert(rec.cache_id.clone());
                let want = chain_id(rec.parent.as_ref(), &rec.diff_id);
                if want != rec.chain_id {
                    r.problem(
                        Kind::ChainId,
                        rec.chain_id.to_string(),
                        format!(
                            "parent {} and diffID {} give chainID {want}",
                            rec.parent
                                .map(|p| p.to_string())
                                .unwrap_or_else(|| "(none)".into()),
                            rec.diff_id
                        ),
                    );
                }
                if !f.path.join(TAR_SPLIT).is_file() {
                    r.problem(
                        Kind::TarSplitMissing,
                        rec.chain_id.to_string(),
                        format!(
                            "{} is missing: the layer cannot be exported exactly",
                            TAR_SPLIT
                        ),
                    );
                }
                if !driver.exists(&rec.cache_id) {
                    r.problem(
                        Kind::DriverDataMissing,
                        rec.chain_id.to_string(),
                        format!(
                            "{} has no data for it (cache id {})",
                            driver.name(),
                            rec.cache_id
                        ),
                    );
                }
                records.insert(rec.chain_id, rec);
            }
        }
    }
    for rec in records.values() {
        if let Some(p) = rec.parent.filter(|p| !records.contains_key(p)) {
            r.problem(
                Kind::ParentMissing,
                rec.chain_id.to_string(),
                format!("its parent layer {p} is missing"),
            );
        }
    }
    r.layers = records.len();

    // Container layers.
    let containers: HashMap<&str, &ContainerFacts> =
        t.containers.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut rw: HashMap<String, RwRecord> = HashMap::new();
    // Removals and writes that were cut off.
    for e in entries(&paths.mounts()) {
        let file = e.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') {
            r.problem(
                Kind::Interrupted,
                e.path().display().to_string(),
                "the temporary file of an interrupted write",
            );
        } else if file.ends_with(".removing") {
            if let Ok(rec) = read_json::<RwRecord>(&e.path()) {
                owned.insert(rec.cache_id);
            }
            r.problem(
                Kind::Interrupted,
                e.path().display().to_string(),
                "an interrupted removal of a container layer",
            );
        } else if let Some(name) = file.strip_suffix(SIZE_SUFFIX) {
            if !paths.mount_record(name).is_file() {
                r.problem(
                    Kind::Interrupted,
                    e.path().display().to_string(),
                    "the size count of a container layer that is gone",
                );
            } else if read_size_file(&e.path()).is_none() {
                r.problem(
                    Kind::SizeCount,
                    format!("container layer {name}"),
                    format!("{} is not a number of bytes", e.path().display()),
                );
            }
        }
    }
    let rw_files = rw_records(&paths).unwrap_or_else(|e| {
        r.notes
            .push(format!("could not read the container layer records: {e}"));
        Vec::new()
    });
    for f in rw_files {
        let name = f.name.as_str();
        let file = format!("{name}.json");
        match f.record {
            Ok(rec) => {
                owned.insert(rec.cache_id.clone());
                if !driver.exists(&rec.cache_id) {
                    r.problem(
                        Kind::DriverDataMissing,
                        format!("container layer {name}"),
                        format!(
                            "{} has no data for it (cache id {})",
                            driver.name(),
                            rec.cache_id
                        ),
                    );
                }
                if let Some(p) = rec.parent.filter(|p| !records.contains_key(p)) {
                    r.problem(
                        Kind::ParentMissing,
                        format!("container layer {name}"),
                        format!("its image layer {p} is missing"),
                    );
                }
                // A container being created has its layer a moment before its record.
                let young = t.live && strata_graph::layer::record::now() < rec.created + 60;
                if !containers.contains_key(name) && !young {
                    r.problem(
                        Kind::ContainerLayerOrphan,
                        format!("container layer {name}"),
                        "no container owns it",
                    );
                }
                rw.insert(name.to_string(), rec);
            }
            Err(RecordProblem::Misplaced(rec)) => r.problem(
                Kind::LayerRecord,
                format!("container layer record {file}"),
                format!("it is the record of {}", rec.name),
            ),
            Err(RecordProblem::Unreadable(why)) => r.problem(
                Kind::LayerRecord,
                format!("container layer record {file}"),
                format!("unreadable: {why}"),
            ),
        }
    }
    r.container_layers = rw.len();
    for c in t.containers {
        if !rw.contains_key(&c.id) {
            r.problem(
                Kind::ContainerLayerMissing,
                format!("container {} ({})", c.name, short(&c.id)),
                "its layer is not in the layer store",
            );
        }
    }

    // Work that was cut off.
    for e in entries(&paths.tmp()) {
        let name = e.file_name().to_string_lossy().into_owned();
        owned.insert(name.clone());
        if !inflight.contains(&name) {
            r.problem(
                Kind::Interrupted,
                e.path().display().to_string(),
                "an interrupted layer registration",
            );
        }
    }
    for e in entries(&paths.removing()) {
        if let Ok(rec) = read_json::<LayerRecord>(&e.path().join(LAYER_JSON)) {
            owned.insert(rec.cache_id);
        }
        r.problem(
            Kind::Interrupted,
            e.path().display().to_string(),
            "an interrupted layer removal",
        );
    }
    let mut quarantined = 0;
    for e in entries(&paths.quarantine()) {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "reason") {
            continue;
        }
        quarantined += 1;
        if let Ok(rec) = read_json::<LayerRecord>(&p.join(LAYER_JSON)) {
            owned.insert(rec.cache_id);
        } else if let Ok(rec) = read_json::<RwRecord>(&p) {
            owned.insert(rec.cache_id);
        }
    }
    if quarantined > 0 {
        r.notes.push(format!(
            "{quarantined} layer record(s) are in quarantine at {} (kept for inspection; their data is kept too)",
            paths.quarantine().display()
        ));
    }

    // Images, their layers and their references.
    let images_root = layout::images(t.data_root);
    let mut expected: HashMap<ChainId, u64> = HashMap::new();
    let mut image_ids: HashSet<Digest> = HashSet::new();
    for f in crate::images::configs(&images_root) {
        let (id, head) = match f {
            ConfigFile::Temp(path) => {
                r.problem(
                    Kind::Interrupted,
                    path.display().to_string(),
                    "the temporary file of an interrupted write",
                );
                continue;
            }
            ConfigFile::Bad { name, why, .. } => {
                match why {
                    BadConfig::Unreadable(err) => r.problem(
                        Kind::ImageConfig,
                        format!("image {name}"),
                        format!("unreadable: {err}"),
                    ),
                    BadConfig::Digest(id) => r.problem(
                        Kind::ImageDigest,
                        format!("image sha256:{name}"),
                        format!("its config's digest is {id}"),
                    ),
                    BadConfig::Invalid(err) => {
                        r.problem(Kind::ImageConfig, format!("sha256:{name}"), err)
                    }
                }
                continue;
            }
            ConfigFile::Good { id, head, .. } => (id, head),
        };
        image_ids.insert(id);
        if let Some(c) = crate::images::first_missing(&head, |c| records.contains_key(c)) {
            r.problem(
                Kind::ImageLayerMissing,
                id.to_string(),
                format!("its layer {c} is not in the layer store"),
            );
        }
        if let Some(top) = head.top_chain() {
            *expected.entry(top).or_default() += 1;
        }
    }
    r.images = image_ids.len();
    if !t.live {
        for e in entries(&images_root.join("tmp")) {
            r.problem(
                Kind::Interrupted,
                e.path().display().to_string(),
                "an interrupted image load",
            );
        }
    }
    match crate::images::references(&images_root) {
        Ok(refs) => {
            for (name, id) in refs {
                if !id.parse::<Digest>().is_ok_and(|i| image_ids.contains(&i)) {
                    r.problem(
                        Kind::DanglingReference,
                        name,
                        "it names an image that is not in the image store",
                    );
                }
            }
        }
        Err(why) => r.problem(
            Kind::DanglingReference,
            images_root.join("repositories.json").display().to_string(),
            format!("unreadable: {why}"),
        ),
    }
    for rec in records.values() {
        let want = expected.get(&rec.chain_id).copied().unwrap_or(0);
        if rec.references != want {
            r.problem(
                Kind::ReferenceCount,
                rec.chain_id.to_string(),
                format!(
                    "recorded {} reference(s), {want} image(s) use it",
                    rec.references
                ),
            );
        }
    }

    // Driver data no record owns.
    match driver.list() {
        Ok(ids) => {
            for id in ids.into_iter().filter(|id| !owned.contains(id)) {
                r.problem(
                    Kind::OrphanDriverData,
                    format!("{} layer {id}", driver.name()),
                    "no layer record owns this data",
                );
            }
        }
        Err(e) => r
            .notes
            .push(format!("could not list the driver's layers: {e}")),
    }

    // Mounts, loop devices and driver devices.
    let rw_by_cache: HashMap<&str, &str> = rw
        .values()
        .map(|m| (m.cache_id.as_str(), m.name.as_str()))
        .collect();
    let layer_caches: HashSet<&str> = records.values().map(|l| l.cache_id.as_str()).collect();
    match strata_graph::fsutil::entries_under(driver.home()) {
        Ok(mounts) => {
            for m in mounts {
                let owner = strays::owner(driver.home(), &m.mount_point, |c| {
                    rw_by_cache.contains_key(c) || layer_caches.contains(c)
                });
                let running = owner
                    .as_deref()
                    .and_then(|c| rw_by_cache.get(c))
                    .and_then(|n| containers.get(n))
                    .filter(|c| c.running);
                if let Some(c) = running {
                    r.notes.push(format!(
                        "{} is mounted for running container {}",
                        m.mount_point.display(),
                        c.name
                    ));
                } else if t.live && owner.is_some() {
                    // The daemon's own mount of a layer in use.
                } else {
                    r.problem(
                        Kind::StrayMount,
                        m.mount_point.display().to_string(),
                        format!(
                            "{} mount {}",
                            m.fstype,
                            match owner {
                                Some(c) => format!("of layer data {c}, which nothing is using"),
                                None => "that no layer owns".into(),
                            }
                        ),
                    );
                }
            }
        }
        Err(e) => r.notes.push(format!("could not read the mount table: {e}")),
    }
    let own_files = driver.backing_files();
    for (dev, file) in strays::loop_devices_under(t.data_root) {
        if !own_files.iter().any(|f| same_file(f, &file)) {
            r.problem(
                Kind::StrayLoopDevice,
                dev.display().to_string(),
                format!(
                    "a loop device on {}, which the driver does not use",
                    file.display()
                ),
            );
        }
    }
    match driver.strays() {
        Ok(list) => {
            for s in list {
                r.problem(
                    Kind::StrayDevice,
                    s.name,
                    format!("a {} no layer uses", s.kind),
                );
            }
        }
        Err(e) => r
            .notes
            .push(format!("could not list the driver's devices: {e}")),
    }
    if let Some(m) = crate::migrate::pending(t.data_root) {
        r.problem(
            Kind::MigrationPending,
            layout::migration(t.data_root).display().to_string(),
            format!(
                "a migration from {} to {} has not finished ({})",
                m.from, m.to, m.phase
            ),
        );
    }

    // Re-export.
    let loaded: Vec<ChainId> = t.layers.list().into_iter().map(|l| l.chain_id).collect();
    let chosen: Vec<ChainId> = if o.full {
        loaded
    } else {
        loaded
            .choose_multiple(&mut rand::rng(), o.sample)
            .copied()
            .collect()
    };
    for (i, c) in chosen.iter().enumerate() {
        progress(i, chosen.len());
        match t.layers.verify(c) {
            Ok(()) => {}
            Err(LayerError::DigestMismatch { actual, .. }) => r.problem(
                Kind::ContentMismatch,
                c.to_string(),
                format!("its re-export has digest {actual}, not its diffID: its files changed"),
            ),
            Err(LayerError::NotFound(_)) if t.live => continue, // removed meanwhile
            Err(e) => r.problem(
                Kind::ContentMismatch,
                c.to_string(),
                format!("it cannot be re-exported: {e}"),
            ),
        }
        r.verified += 1;
    }
    progress(chosen.len(), chosen.len());
    if o.full {
        size_counts(t, &rw, &records, &mut r);
    }
    r
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The entries of a directory, sorted; none when it cannot be read.
pub(crate) fn entries(dir: &Path) -> Vec<std::fs::DirEntry> {
    let mut v: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    v.sort_by_key(|e| e.file_name());
    v
}
