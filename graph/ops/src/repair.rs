//! `strata storage repair`: fixes what a check finds. Leftovers and orphans are removed,
//! reference counts rebuilt; layers and image configs that no longer match what they claim
//! are moved to quarantine, never deleted, and the images that need them are listed so they
//! can be pulled again.

use crate::check::CheckOptions;
use crate::images::{BadConfig, ConfigFile};
use crate::offline::Offline;
use crate::report::{Kind, Report};
use crate::{io_ctx, OpsError};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use strata_graph::digest::ChainId;
use strata_graph::fsutil::{atomic_write, mkdir_all, rename_durable};
use strata_graph::image::ImageStore;
use strata_graph::{layout, LayerStore, StorageOpts};

/// An image that lost a layer: pull it again.
#[derive(Debug, Clone, Serialize)]
pub struct LostImage {
    pub id: String,
    /// The references that named it.
    pub references: Vec<String>,
    pub why: String,
}

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub before: Report,
    /// What was done, one line each.
    pub actions: Vec<String>,
    /// Layers set aside (with what was built on them).
    pub quarantined_layers: Vec<String>,
    /// Images to pull again.
    pub images_to_pull: Vec<LostImage>,
    /// Containers that lost their layer: remove them.
    pub broken_containers: Vec<String>,
    pub after: Report,
}

/// Repairs a stopped daemon's data root.
pub fn repair(
    data_root: &Path,
    driver: Option<&str>,
    opts: &StorageOpts,
    co: &CheckOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<RepairReport, OpsError> {
    let off = Offline::open(data_root, driver, opts)?;
    let driver_name = off.driver.name();
    let before = off.check(co, progress);
    let mut actions = Vec::new();
    if before.of(Kind::MigrationPending).next().is_some() {
        return Err(OpsError::Refused(
            "a storage migration has not finished: resume it with `strata storage migrate --to DRIVER`, or undo it with `strata storage migrate --abort`, then repair".into(),
        ));
    }

    // Mounts, loop devices and devices nothing uses.
    for f in before.of(Kind::StrayMount) {
        match strata_graph::fsutil::unmount(Path::new(&f.subject)) {
            Ok(_) => actions.push(format!("unmounted {}", f.subject)),
            Err(e) => actions.push(format!("could not unmount {}: {e}", f.subject)),
        }
    }
    for f in before.of(Kind::StrayLoopDevice) {
        match crate::strays::detach_loop(Path::new(&f.subject)) {
            Ok(()) => actions.push(format!("detached {}", f.subject)),
            Err(e) => actions.push(format!("could not detach {}: {e}", f.subject)),
        }
    }
    if before.of(Kind::StrayDevice).next().is_some() {
        for s in off.driver.strays()? {
            match off.driver.remove_stray(&s) {
                Ok(()) => actions.push(format!("removed {} {}", s.kind, s.name)),
                Err(e) => actions.push(format!("could not remove {} {}: {e}", s.kind, s.name)),
            }
        }
    }
    // Layers whose content or identity is wrong: set aside once the store is open.
    let mut bad: BTreeMap<ChainId, String> = BTreeMap::new();
    for f in before.problems.iter().filter(|f| {
        matches!(
            f.kind,
            Kind::ContentMismatch | Kind::ChainId | Kind::TarSplitMissing
        )
    }) {
        if let Ok(c) = f.subject.parse::<ChainId>() {
            bad.entry(c).or_insert_with(|| f.detail.clone());
        }
    }
    let Offline {
        driver,
        layers,
        containers,
        lock: _lock,
        ..
    } = off;
    drop(layers);

    // Image configs that are not what their names say.
    let images_root = layout::images(data_root);
    let image_quarantine = images_root.join("quarantine");
    for f in crate::images::configs(&images_root) {
        // Temporary files: the image store removes interrupted writes itself.
        if let ConfigFile::Bad { name, path, why } = f {
            let why = match why {
                BadConfig::Unreadable(err) => format!("unreadable: {err}"),
                BadConfig::Digest(_) => "content does not match its digest".into(),
                BadConfig::Invalid(err) => err,
            };
            set_aside(&path, &image_quarantine, &name, &why)?;
            actions.push(format!("quarantined image config {name}: {why}"));
        }
    }

    // The layer store, reconciled: interrupted work finished, orphans removed, records whose
    // data or parent is missing set aside.
    let (store, rec) = LayerStore::open(&layout::layers(data_root), driver.clone())?;
    for t in &rec.removed_temp {
        actions.push(format!("removed interrupted registration {t}"));
    }
    for t in &rec.finished_removals {
        actions.push(format!("finished interrupted removal {t}"));
    }
    for t in &rec.orphans_removed {
        actions.push(format!("removed {driver_name} data no layer owned: {t}"));
    }
    let mut quarantined: Vec<String> = Vec::new();
    for (name, why) in &rec.quarantined {
        actions.push(format!("quarantined record {name}: {why}"));
        quarantined.push(format!("{name}: {why}"));
    }
    for (c, why) in &bad {
        if store.get(c).is_none() {
            continue;
        }
        let (layers, rws) = store.quarantine_layer(c, why)?;
        for l in layers {
            actions.push(format!("quarantined layer {l}"));
            quarantined.push(if l == *c {
                format!("{l}: {why}")
            } else {
                format!("{l}: built on {c}")
            });
        }
        for n in rws {
            actions.push(format!("quarantined container layer {n}"));
        }
    }
    // Counted sizes that are wrong (unreadable ones went when the store was opened).
    for f in before.of(Kind::SizeCount) {
        if let Some(name) = f.subject.strip_prefix("container layer ") {
            if store.get_rw(name).is_some() {
                store.forget_rw_size(name)?;
                actions.push(format!("dropped the size count of container layer {name}"));
            }
        }
    }
    let store = Arc::new(store);

    // Images whose layers are gone: set aside and listed to be pulled again.
    let refs_path = images_root.join("repositories.json");
    let refs = crate::images::references(&images_root).unwrap_or_default();
    let mut images_to_pull = Vec::new();
    let mut kept: HashSet<String> = HashSet::new();
    for f in crate::images::configs(&images_root) {
        let ConfigFile::Good {
            name, path, head, ..
        } = f
        else {
            continue;
        };
        let id = format!("sha256:{name}");
        match crate::images::first_missing(&head, |c| store.get(c).is_some()) {
            None => {
                kept.insert(id);
            }
            Some(c) => {
                let why = format!("its layer {c} is missing or quarantined");
                set_aside(&path, &image_quarantine, &name, &why)?;
                actions.push(format!("quarantined image {id}: {why}"));
                images_to_pull.push(LostImage {
                    references: refs
                        .iter()
                        .filter(|(_, i)| **i == id)
                        .map(|(r, _)| r.clone())
                        .collect(),
                    id,
                    why,
                });
            }
        }
    }
    let live_refs: BTreeMap<&String, &String> =
        refs.iter().filter(|(_, i)| kept.contains(*i)).collect();
    if live_refs.len() != refs.len() {
        for (r, i) in refs.iter().filter(|(_, i)| !kept.contains(*i)) {
            actions.push(format!("dropped reference {r} (to {i})"));
        }
        let data = serde_json::to_vec_pretty(&serde_json::json!({ "refs": live_refs }))
            .map_err(|e| io_ctx("encoding references")(std::io::Error::other(e)))?;
        atomic_write(&refs_path, &data).map_err(io_ctx("writing repositories.json"))?;
    }

    // Reference counts, rebuilt from the images (the image store does this on opening).
    let (_images, problems) = ImageStore::open(&images_root, store.clone())?;
    for p in problems {
        actions.push(p);
    }
    if before.of(Kind::ReferenceCount).next().is_some() {
        actions.push("rebuilt layer reference counts from the images".into());
    }

    // Container layers without containers, and containers without layers.
    let ids: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    for name in store.rw_names() {
        if !ids.contains(name.as_str()) {
            store.remove_rw(&name)?;
            actions.push(format!(
                "removed container layer {name}, which no container owned"
            ));
        }
    }
    let mut broken_containers = Vec::new();
    for c in &containers {
        if store.get_rw(&c.id).is_none() {
            broken_containers.push(format!("{} ({})", c.name, &c.id[..c.id.len().min(12)]));
        }
    }
    // Interrupted container removals.
    strata_runtime::ContainerStore::open(&layout::containers(data_root))?;
    if let Err(e) = store.cleanup() {
        tracing::warn!("releasing the driver: {e}");
    }
    drop(_images);
    drop(store);
    drop(_lock);
    drop(driver);

    let after = {
        let off = Offline::open(data_root, Some(driver_name), opts)?;
        let r = off.check(co, &|_, _| {});
        if let Err(e) = off.driver.cleanup() {
            tracing::warn!("releasing the driver: {e}");
        }
        r
    };
    Ok(RepairReport {
        before,
        actions,
        quarantined_layers: quarantined,
        images_to_pull,
        broken_containers,
        after,
    })
}

/// Moves `path` into `dir` as `name`, with a `.reason` file beside it.
fn set_aside(path: &Path, dir: &Path, name: &str, why: &str) -> Result<(), OpsError> {
    mkdir_all(dir, 0o700).map_err(io_ctx("creating the image quarantine"))?;
    let mut dest = dir.join(name);
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    rename_durable(path, &dest).map_err(io_ctx(format!("quarantining {}", path.display())))?;
    let _ = std::fs::write(
        dest.with_file_name(format!(
            "{}.reason",
            dest.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        )),
        why,
    );
    Ok(())
}

impl RepairReport {
    /// The report as `strata storage repair` prints it.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if self.before.ok() {
            let _ = writeln!(s, "No problems found; nothing to repair.");
        } else {
            let _ = writeln!(s, "Found {} problem(s).", self.before.problems.len());
        }
        for a in &self.actions {
            let _ = writeln!(s, "  {a}");
        }
        if !self.quarantined_layers.is_empty() {
            let _ = writeln!(s, "Layers in quarantine (kept, not deleted):");
            for l in &self.quarantined_layers {
                let _ = writeln!(s, "  {l}");
            }
        }
        if !self.images_to_pull.is_empty() {
            let _ = writeln!(s, "Images to pull again:");
            for i in &self.images_to_pull {
                let names = if i.references.is_empty() {
                    "(untagged)".to_string()
                } else {
                    i.references.join(", ")
                };
                let _ = writeln!(s, "  {names} {} ({})", i.id, i.why);
            }
        }
        if !self.broken_containers.is_empty() {
            let _ = writeln!(s, "Containers whose layer is gone (remove them):");
            for c in &self.broken_containers {
                let _ = writeln!(s, "  {c}");
            }
        }
        if self.after.ok() {
            let _ = writeln!(s, "The store checks clean now.");
        } else {
            let _ = writeln!(s, "Still wrong after the repair:");
            s.push_str(&self.after.human());
        }
        s
    }
}
