//! A data root opened while the daemon is stopped: its driver, its layer store loaded without
//! changing anything, and what its containers are doing.

use crate::check::ContainerFacts;
use crate::lock::PidLock;
use crate::OpsError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_graph::{layout, Driver, LayerStore, StorageOpts};
use strata_runtime::Container;

/// The driver a data root's layer store uses: the one named, else the one its layer store
/// records, else the only driver with data there.
pub fn driver_name(data_root: &Path, named: Option<&str>) -> Result<&'static str, OpsError> {
    if let Some(n) = named {
        return Ok(strata_drivers::canonical(n)?);
    }
    let layers = layout::layers(data_root);
    if !layers.is_dir() {
        return Err(OpsError::NotADataRoot(data_root.to_path_buf()));
    }
    if let Some(n) = strata_graph::layer::store_driver(&layers)
        .map_err(crate::io_ctx("reading the layer store's driver"))?
    {
        return Ok(strata_drivers::canonical(&n)?);
    }
    match strata_drivers::in_use(data_root).as_slice() {
        [one] => Ok(one),
        [] => Err(OpsError::UnknownDriver {
            root: data_root.to_path_buf(),
            why: "no driver has data there".into(),
        }),
        many => Err(OpsError::UnknownDriver {
            root: data_root.to_path_buf(),
            why: format!("{} all have data there", many.join(", ")),
        }),
    }
}

/// A stopped daemon's data root, locked against a daemon starting meanwhile.
pub struct Offline {
    pub data_root: PathBuf,
    pub driver: Arc<dyn Driver>,
    /// Loaded read-only: nothing reconciled.
    pub layers: LayerStore,
    pub containers: Vec<Container>,
    pub(crate) lock: PidLock,
}

impl Offline {
    /// Locks and opens `data_root` with its driver (see [`driver_name`]), which leaves what a
    /// previous run left mounted in place.
    pub fn open(
        data_root: &Path,
        driver: Option<&str>,
        opts: &StorageOpts,
    ) -> Result<Offline, OpsError> {
        if !layout::layers(data_root).is_dir() {
            return Err(OpsError::NotADataRoot(data_root.to_path_buf()));
        }
        let lock = PidLock::data_root(data_root)?;
        let name = driver_name(data_root, driver)?;
        // What a killed daemon left mounted stays, to be reported.
        let driver = strata_drivers::open(name, data_root, &opts.clone().inspecting())?;
        let layers = LayerStore::open_read_only(&layout::layers(data_root), driver.clone())?;
        Ok(Offline {
            data_root: data_root.to_path_buf(),
            driver,
            layers,
            containers: read_containers(data_root),
            lock,
        })
    }

    /// Checks it (see [`crate::check`]).
    pub fn check(&self, o: &crate::CheckOptions, progress: &dyn Fn(usize, usize)) -> crate::Report {
        crate::check(
            &crate::Target {
                data_root: &self.data_root,
                layers: &self.layers,
                containers: &self.facts(),
                live: false,
            },
            o,
            progress,
        )
    }

    /// The containers as a check sees them.
    pub fn facts(&self) -> Vec<ContainerFacts> {
        self.containers.iter().map(facts).collect()
    }
}

/// A container's facts: running means its process is alive (live-restore keeps containers
/// running while the daemon is stopped).
pub fn facts(c: &Container) -> ContainerFacts {
    let alive = c.state.pid > 0 && Path::new(&format!("/proc/{}", c.state.pid)).exists();
    ContainerFacts {
        id: c.id.clone(),
        name: c.name.clone(),
        running: (c.state.running || c.state.paused) && alive,
    }
}

/// Every readable container record, without changing anything.
pub fn read_containers(data_root: &Path) -> Vec<Container> {
    let mut out = Vec::new();
    for e in crate::check::entries(&layout::containers(data_root)) {
        let rec = e.path().join("config.v2.json");
        if let Ok(c) = std::fs::read(&rec)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Container>(&b).map_err(|e| e.to_string()))
        {
            out.push(c);
        }
    }
    out
}
