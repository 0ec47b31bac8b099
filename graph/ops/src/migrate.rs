//! `strata storage migrate --to DRIVER`: moves a stopped daemon's layers to another driver.
//!
//! Every image layer is re-created in the new driver from the exact re-export of the old one
//! (so chainIDs, diffIDs, image IDs and `save` digests stay the same), container layers get
//! their changes carried over (or start empty), everything is verified, and only then does
//! the data root switch driver. The old driver's data stays unless `--remove-old` is given.
//!
//! ```text
//! <data-root>/migration/state.json   from, to, options, phase
//! <data-root>/migration/layers/      the new layer store being filled
//! <data-root>/layers.<old driver>/   the old layer store, kept after the switch
//! ```
//! Interrupted while copying, the same command resumes where it stopped (layers already
//! copied are kept) and `--abort` rolls back; interrupted while switching, either finishes or
//! undoes the two renames the switch is made of.

use crate::check::entries;
use crate::lock::PidLock;
use crate::offline::{driver_name, facts, read_containers};
use crate::{io_ctx, OpsError};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_graph::fsutil::{atomic_write, mkdir_all, remove_tree, rename_durable};
use strata_graph::image::ImageStore;
use strata_graph::layer::RegisterOpts;
use strata_graph::{layout, CreateOpts, Driver, LayerStore, StorageOpts};

/// The phase a migration is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Layers are being copied; the old store is still the data root's store.
    Copying,
    /// The stores are being swapped.
    Switching,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Copying => "copying layers",
            Phase::Switching => "switching stores",
        })
    }
}

/// A migration in progress, as `state.json` keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub from: String,
    pub to: String,
    /// The new driver's `--storage-opt`s.
    pub to_opts: Vec<String>,
    /// The old driver's, needed to remove its data later.
    pub from_opts: Vec<String>,
    pub phase: Phase,
    pub containers: ContainerMode,
}

/// What happens to containers' read-write layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerMode {
    /// Their changes are carried into the new driver.
    #[default]
    Convert,
    /// They start again from their image, their changes left in the old driver.
    Reset,
}

/// What to migrate to.
#[derive(Debug, Clone, Default)]
pub struct MigrateOptions {
    pub to: String,
    pub to_opts: Vec<String>,
    /// The old driver when its layer store does not say (older stores).
    pub from: Option<String>,
    pub from_opts: Vec<String>,
    pub containers: ContainerMode,
    pub remove_old: bool,
}

/// What a migration did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub layers: usize,
    /// Layers copied in this run (the others were copied by an interrupted run).
    pub copied: usize,
    pub container_layers: usize,
    pub bytes: u64,
    /// Where the old driver's data is kept, unless removed.
    pub old_data: Vec<String>,
    pub resumed: bool,
}

fn state_path(data_root: &Path) -> PathBuf {
    layout::migration(data_root).join("state.json")
}

fn new_store_path(data_root: &Path) -> PathBuf {
    layout::migration(data_root).join("layers")
}

/// Where the layer store of a driver migrated away from is kept.
pub fn kept_store(data_root: &Path, driver: &str) -> PathBuf {
    data_root.join(format!("layers.{driver}"))
}

/// The migration in progress in `data_root`, if any.
pub fn pending(data_root: &Path) -> Option<State> {
    strata_graph::layer::record::read_json(&state_path(data_root)).ok()
}

fn save(data_root: &Path, st: &State) -> Result<(), OpsError> {
    let data = serde_json::to_vec_pretty(st)
        .map_err(|e| io_ctx("encoding the migration state")(std::io::Error::other(e)))?;
    atomic_write(&state_path(data_root), &data).map_err(io_ctx("writing the migration state"))
}

fn parse_opts(v: &[String]) -> Result<StorageOpts, OpsError> {
    StorageOpts::parse(v).map_err(|e| OpsError::Driver(e.into()))
}

/// Test hook: stop (sleep) after this many layers have been copied, so a test can kill the
/// migration at a known point.
const STALL_ENV: &str = "STRATA_TEST_MIGRATE_STALL";

/// Migrates a stopped daemon's data root to another driver (or resumes the migration that
/// was interrupted). `say` hears each step.
pub fn migrate(
    data_root: &Path,
    o: &MigrateOptions,
    say: &dyn Fn(&str),
) -> Result<MigrateReport, OpsError> {
    let _lock = PidLock::data_root(data_root)?;
    if !layout::layers(data_root).is_dir() && pending(data_root).is_none() {
        return Err(OpsError::NotADataRoot(data_root.to_path_buf()));
    }
    let to = strata_drivers::canonical(&o.to)?;
    let mut report = MigrateReport {
        to: to.into(),
        ..Default::default()
    };
    let st = match pending(data_root) {
        Some(st) if st.to != to => {
            return Err(OpsError::Refused(format!(
                "a migration from {} to {} has not finished: resume it with `strata storage migrate --to {}`, or undo it with `strata storage migrate --abort`",
                st.from, st.to, st.to
            )))
        }
        Some(st) => {
            say(&format!("resuming the migration from {} to {} ({})", st.from, st.to, st.phase));
            report.resumed = true;
            st
        }
        None => {
            let from = driver_name(data_root, o.from.as_deref())?;
            if from == to {
                return Err(OpsError::Refused(format!("the data root already uses {to}")));
            }
            if strata_drivers::in_use(data_root).contains(&to) || kept_store(data_root, to).exists() {
                return Err(OpsError::Refused(format!(
                    "{} already holds {to} data (kept from an earlier migration away from {to}?); remove it first with `strata storage migrate --remove-old`",
                    data_root.display()
                )));
            }
            // The new driver must work here before anything is recorded.
            let probe = strata_drivers::open(to, data_root, &parse_opts(&o.to_opts)?)?;
            if let Err(e) = probe.cleanup() {
                tracing::warn!(driver = to, "releasing the driver: {e}");
            }
            drop(probe);
            let st = State {
                from: from.into(),
                to: to.into(),
                to_opts: o.to_opts.clone(),
                from_opts: o.from_opts.clone(),
                phase: Phase::Copying,
                containers: o.containers,
            };
            mkdir_all(&layout::migration(data_root), 0o700)
                .map_err(io_ctx("creating the migration directory"))?;
            save(data_root, &st)?;
            st
        }
    };
    report.from = st.from.clone();
    if st.phase == Phase::Copying {
        copy(data_root, &st, &mut report, say)?;
        let mut next = st.clone();
        next.phase = Phase::Switching;
        save(data_root, &next)?;
    }
    switch(data_root, &st, say)?;
    report.old_data = vec![
        kept_store(data_root, &st.from).display().to_string(),
        data_root.join(&st.from).display().to_string(),
    ];
    if o.remove_old {
        remove_old_driver(data_root, &st.from, &st.from_opts, say)?;
        report.old_data.clear();
    }
    Ok(report)
}

/// Copies every layer and container layer into the new store and verifies them.
fn copy(
    data_root: &Path,
    st: &State,
    report: &mut MigrateReport,
    say: &dyn Fn(&str),
) -> Result<(), OpsError> {
    let old_driver = strata_drivers::open(&st.from, data_root, &parse_opts(&st.from_opts)?)?;
    let new_driver = strata_drivers::open(&st.to, data_root, &parse_opts(&st.to_opts)?)?;
    let res = copy_with(data_root, st, &old_driver, &new_driver, report, say);
    for d in [&old_driver, &new_driver] {
        if let Err(e) = d.cleanup() {
            tracing::warn!(driver = d.name(), "releasing the driver: {e}");
        }
    }
    res
}

fn copy_with(
    data_root: &Path,
    st: &State,
    old_driver: &Arc<dyn Driver>,
    new_driver: &Arc<dyn Driver>,
    report: &mut MigrateReport,
    say: &dyn Fn(&str),
) -> Result<(), OpsError> {
    // The old stores, opened as the daemon opens them.
    let (old, _) = LayerStore::open(&layout::layers(data_root), old_driver.clone())?;
    let old = Arc::new(old);
    let (_images, _) = ImageStore::open(&layout::images(data_root), old.clone())?;
    let containers = read_containers(data_root);
    if let Some(c) = containers.iter().map(facts).find(|c| c.running) {
        return Err(OpsError::Refused(format!(
            "container {} is running (the daemon was stopped with live-restore?): stop it first",
            c.name
        )));
    }
    if let Some(max) = new_driver.max_depth() {
        let deepest = old
            .list()
            .iter()
            .map(|l| old.depth(&l.chain_id))
            .max()
            .unwrap_or(0);
        if deepest > max {
            return Err(OpsError::Refused(format!(
                "{} mounts at most {max} layers, and this store has a chain of {deepest}",
                st.to
            )));
        }
    }
    let (new, _) = LayerStore::open(&new_store_path(data_root), new_driver.clone())?;

    // Image layers, parents first.
    let mut layers = old.list();
    layers.sort_by_key(|l| (old.depth(&l.chain_id), l.chain_id));
    report.layers = layers.len();
    let stall: Option<usize> = std::env::var(STALL_ENV).ok().and_then(|v| v.parse().ok());
    for (i, l) in layers.iter().enumerate() {
        if new.get(&l.chain_id).is_some() {
            continue;
        }
        if stall == Some(report.copied) {
            say(&format!(
                "stalled after {} layers ({STALL_ENV})",
                report.copied
            ));
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        let ex = old.export(&l.chain_id)?;
        let got = new.register(
            l.parent.as_ref(),
            ex,
            RegisterOpts {
                expected: Some(l.diff_id),
                progress: None,
            },
        )?;
        report.copied += 1;
        report.bytes += got.tar_bytes;
        say(&format!(
            "copied layer {}/{} {} ({} bytes)",
            i + 1,
            layers.len(),
            l.chain_id,
            got.tar_bytes
        ));
    }
    // The references the old layers had; layers the old store no longer has (it changed
    // between an interrupted run and this one) lose theirs and go.
    let refs: HashMap<_, _> = layers.iter().map(|l| (l.chain_id, l.references)).collect();
    new.rebuild_references(&refs)?;
    let want: HashSet<_> = layers.iter().map(|l| l.chain_id).collect();
    let have: HashSet<_> = new.list().iter().map(|l| l.chain_id).collect();
    if want != have {
        return Err(OpsError::Refused(format!(
            "the new store has {} layers where the old has {}; run the migration again",
            have.len(),
            want.len()
        )));
    }

    // Container layers: made again each run, so they carry the latest changes.
    for name in new.rw_names() {
        new.remove_rw(&name)?;
    }
    let by_id: HashMap<&str, &strata_runtime::Container> =
        containers.iter().map(|c| (c.id.as_str(), c)).collect();
    let names = old.rw_names();
    for (i, name) in names.iter().enumerate() {
        let Some(rw) = old.get_rw(name) else { continue };
        let opts = CreateOpts {
            storage_opt: by_id
                .get(name.as_str())
                .map(|c| container_storage_opts(c))
                .unwrap_or_default(),
            mount_label: String::new(),
        };
        new.create_rw(name, rw.parent.as_ref(), &opts)?;
        if st.containers == ContainerMode::Convert {
            carry_changes(&old, &new, name)?;
            verify_container(&old, &new, name)?;
        }
        report.container_layers += 1;
        say(&format!(
            "{} container layer {}/{} {name}",
            match st.containers {
                ContainerMode::Convert => "converted",
                ContainerMode::Reset => "reset",
            },
            i + 1,
            names.len()
        ));
    }

    // Every layer, read back from the new driver.
    for (i, l) in layers.iter().enumerate() {
        new.verify(&l.chain_id)?;
        if (i + 1) % 50 == 0 || i + 1 == layers.len() {
            say(&format!("verified {}/{} layers", i + 1, layers.len()));
        }
    }
    old.cleanup()?;
    new.cleanup()?;
    Ok(())
}

/// A container's own `--storage-opt`s (a size limit), for its new layer.
fn container_storage_opts(c: &strata_runtime::Container) -> StorageOpts {
    let pairs: Vec<String> = c.host_config["StorageOpt"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    StorageOpts::parse(&pairs).unwrap_or_default()
}

/// Copies a container layer's changes (its diff, whiteouts included) into the new one.
fn carry_changes(old: &LayerStore, new: &LayerStore, name: &str) -> Result<(), OpsError> {
    let (mut reader, mut writer) = std::io::pipe().map_err(io_ctx("making a pipe"))?;
    std::thread::scope(|s| {
        let w = s.spawn(move || {
            let r = old.rw_diff(name, &mut writer);
            drop(writer);
            r
        });
        let applied = new.apply_rw(name, &mut reader);
        drop(reader);
        let written = w
            .join()
            .map_err(|_| OpsError::Refused(format!("exporting container layer {name} panicked")))?;
        written?;
        applied?;
        Ok(())
    })
}

/// The container's whole tree must read the same through both drivers.
fn verify_container(old: &LayerStore, new: &LayerStore, name: &str) -> Result<(), OpsError> {
    let a = old.mount_rw(name, "")?;
    let before = crate::tree::entries(&a);
    old.unmount_rw(name)?;
    let b = new.mount_rw(name, "")?;
    let after = crate::tree::entries(&b);
    new.unmount_rw(name)?;
    let (before, after) = (
        before.map_err(io_ctx(format!("reading container layer {name}")))?,
        after.map_err(io_ctx(format!("reading the new container layer {name}")))?,
    );
    let diff = crate::tree::differences(&before, &after, 5);
    if !diff.is_empty() {
        return Err(OpsError::Refused(format!(
            "container layer {name} reads differently after conversion: {}",
            diff.join("; ")
        )));
    }
    Ok(())
}

/// Swaps the stores (idempotent: an interrupted switch finishes), points the containers at
/// the new driver and ends the migration.
fn switch(data_root: &Path, st: &State, say: &dyn Fn(&str)) -> Result<(), OpsError> {
    let live = layout::layers(data_root);
    let staged = new_store_path(data_root);
    let kept = kept_store(data_root, &st.from);
    let live_driver = strata_graph::layer::store_driver(&live).ok().flatten();
    if live_driver.as_deref() == Some(st.from.as_str()) {
        if kept.exists() {
            return Err(OpsError::Refused(format!(
                "{} exists already; remove it (`strata storage migrate --remove-old`) and resume",
                kept.display()
            )));
        }
        rename_durable(&live, &kept).map_err(io_ctx("setting the old layer store aside"))?;
    }
    if !live.exists() {
        rename_durable(&staged, &live).map_err(io_ctx("putting the new layer store in place"))?;
    }
    let opts_file = kept.join("storage-opts.json");
    if kept.is_dir() && !opts_file.exists() {
        let data = serde_json::to_vec(&st.from_opts)
            .map_err(|e| io_ctx("encoding options")(std::io::Error::other(e)))?;
        atomic_write(&opts_file, &data).map_err(io_ctx("recording the old driver's options"))?;
    }
    let containers = strata_runtime::ContainerStore::open(&layout::containers(data_root))?;
    for c in containers.list() {
        if c.driver != st.to {
            containers.update(&c.id, |c| c.driver = st.to.clone())?;
        }
    }
    remove_tree(&layout::migration(data_root)).map_err(io_ctx("ending the migration"))?;
    say(&format!("the data root now uses {}", st.to));
    Ok(())
}

/// Undoes an unfinished migration: the old store is put back (if the switch had begun) and
/// everything the new driver made is removed.
pub fn abort(data_root: &Path, say: &dyn Fn(&str)) -> Result<State, OpsError> {
    let _lock = PidLock::data_root(data_root)?;
    let st = pending(data_root)
        .ok_or_else(|| OpsError::Refused("no migration is in progress".into()))?;
    let live = layout::layers(data_root);
    let staged = new_store_path(data_root);
    let kept = kept_store(data_root, &st.from);
    if strata_graph::layer::store_driver(&live)
        .ok()
        .flatten()
        .as_deref()
        == Some(st.to.as_str())
    {
        rename_durable(&live, &staged).map_err(io_ctx("taking the new layer store back"))?;
    }
    if !live.exists() && kept.exists() {
        rename_durable(&kept, &live).map_err(io_ctx("putting the old layer store back"))?;
    }
    let containers = strata_runtime::ContainerStore::open(&layout::containers(data_root))?;
    for c in containers.list() {
        if c.driver != st.from {
            containers.update(&c.id, |c| c.driver = st.from.clone())?;
        }
    }
    remove_driver_data(data_root, &st.to, &st.to_opts, Some(&staged), say)?;
    remove_tree(&layout::migration(data_root)).map_err(io_ctx("ending the migration"))?;
    say(&format!(
        "the migration to {} is undone; the data root uses {}",
        st.to, st.from
    ));
    Ok(st)
}

/// Removes the data of drivers migrated away from (`--remove-old` without `--to`).
pub fn remove_old(data_root: &Path, say: &dyn Fn(&str)) -> Result<Vec<String>, OpsError> {
    let _lock = PidLock::data_root(data_root)?;
    let mut removed = Vec::new();
    for e in entries(data_root) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(driver) = name.strip_prefix("layers.") {
            let opts: Vec<String> =
                strata_graph::layer::record::read_json(&e.path().join("storage-opts.json"))
                    .unwrap_or_default();
            remove_old_driver(data_root, driver, &opts, say)?;
            removed.push(driver.to_string());
        }
    }
    Ok(removed)
}

fn remove_old_driver(
    data_root: &Path,
    driver: &str,
    opts: &[String],
    say: &dyn Fn(&str),
) -> Result<(), OpsError> {
    let kept = kept_store(data_root, driver);
    remove_driver_data(data_root, driver, opts, Some(&kept), say)
}

/// Removes what the driver still holds once its layers are gone (zfs: datasets set aside
/// until their clones went, which the last removal may not have seen go yet). Tries for a
/// few seconds; what stays is an error, so the home is not removed from under it.
fn remove_leftovers(d: &dyn strata_graph::Driver) -> Result<(), OpsError> {
    for attempt in 0..10 {
        let strays = d.strays()?;
        if strays.is_empty() {
            return Ok(());
        }
        for s in &strays {
            if let Err(e) = d.remove_stray(s) {
                tracing::debug!(attempt, "removing {} {}: {e}", s.kind, s.name);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let left: Vec<String> = d
        .strays()?
        .into_iter()
        .map(|s| format!("{} {}", s.kind, s.name))
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(OpsError::Refused(format!(
        "{} still holds {}; run the removal again",
        d.name(),
        left.join(", ")
    )))
}

/// Removes every layer a driver holds in `data_root`, then its home and `store` (the layer
/// store that described them).
fn remove_driver_data(
    data_root: &Path,
    driver: &str,
    opts: &[String],
    store: Option<&Path>,
    say: &dyn Fn(&str),
) -> Result<(), OpsError> {
    let name = strata_drivers::canonical(driver)?;
    let home = data_root.join(name);
    if home.exists() {
        let d = strata_drivers::open(name, data_root, &parse_opts(opts)?)?;
        let ids = d.list()?;
        for id in &ids {
            d.remove(id)?;
        }
        remove_leftovers(d.as_ref())?;
        d.cleanup()?;
        drop(d);
        if !strata_graph::fsutil::entries_under(&home)
            .map_err(io_ctx("reading the mount table"))?
            .is_empty()
        {
            return Err(OpsError::Refused(format!(
                "something is still mounted under {}; unmount it and run again",
                home.display()
            )));
        }
        remove_tree(&home).map_err(io_ctx(format!("removing {}", home.display())))?;
        say(&format!(
            "removed {} layer(s) of {name} and {}",
            ids.len(),
            home.display()
        ));
    }
    if let Some(s) = store.filter(|s| s.exists()) {
        remove_tree(s).map_err(io_ctx(format!("removing {}", s.display())))?;
    }
    Ok(())
}
