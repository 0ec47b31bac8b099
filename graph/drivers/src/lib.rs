//! The graph driver registry: maps `--storage-driver` names to driver crates and picks the best
//! driver for a host. It is its own crate because `strata-graph` (the contract) cannot depend on
//! the driver crates that implement it, and the binary must hold no storage logic.

use std::path::Path;
use std::sync::Arc;
use strata_graph::{Driver, DriverError, StorageOpts};

/// Errors choosing or opening a driver.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown storage driver {0:?}; known drivers: {known}", known = KNOWN.join(", "))]
    Unknown(String),
    #[error("storage driver {name} is not built into this Strata yet (it is planned)")]
    NotBuilt { name: String },
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("no storage driver works on this host: {0}")]
    NoneWorks(String),
    #[error("the data root holds layers of the {found} storage driver, but {chosen} was chosen for this host; start with --storage-driver {found} to use them (or --storage-driver {chosen} to start over beside them)")]
    OtherDriverData {
        chosen: &'static str,
        found: &'static str,
    },
}

/// Every driver name Strata knows, in order of preference for the automatic choice.
pub const KNOWN: &[&str] = &["overlay2", "btrfs", "zfs", "devicemapper", "aufs", "vfs"];

/// The canonical name of a driver (`overlay` is an alias of `overlay2`).
pub fn canonical(name: &str) -> Result<&'static str, RegistryError> {
    let n = name.trim().to_ascii_lowercase();
    let n = if n == "overlay" {
        "overlay2".to_string()
    } else {
        n
    };
    KNOWN
        .iter()
        .copied()
        .find(|k| *k == n)
        .ok_or_else(|| RegistryError::Unknown(name.to_string()))
}

/// Opens the driver `name` with its home at `<data_root>/<name>`.
pub fn open(
    name: &str,
    data_root: &Path,
    opts: &StorageOpts,
) -> Result<Arc<dyn Driver>, RegistryError> {
    let name = canonical(name)?;
    let home = data_root.join(name);
    match name {
        "overlay2" => Ok(Arc::new(strata_overlay::OverlayDriver::new(&home, opts)?)),
        "vfs" => Ok(Arc::new(strata_vfs::VfsDriver::new(&home, opts)?)),
        "btrfs" => Ok(Arc::new(strata_btrfs::BtrfsDriver::new(&home, opts)?)),
        "devicemapper" => Ok(strata_devicemapper::DevmapperDriver::start(&home, opts)?),
        "zfs" => Ok(Arc::new(strata_zfs::ZfsDriver::new(&home, opts)?)),
        "aufs" => Ok(Arc::new(strata_aufs::AufsDriver::new(&home, opts)?)),
        other => Err(RegistryError::NotBuilt { name: other.into() }),
    }
}

/// The drivers that hold layers under the data root (their homes, minus bookkeeping).
pub fn in_use(data_root: &Path) -> Vec<&'static str> {
    let has_layers = |name: &str| {
        let home = data_root.join(name);
        let dir = match name {
            "vfs" => home.join("dir"),
            "btrfs" => home.join("subvolumes"),
            // The base device's record is `.base`, not a layer.
            "devicemapper" => home.join("metadata/devices"),
            // Mount points of layers (their data is in datasets).
            "zfs" => home.join("graph"),
            "aufs" => home.join("diff"),
            _ => home,
        };
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    !(n.starts_with('.') || n == "l" || n == "backingFsBlockDev")
                })
            })
            .unwrap_or(false)
    };
    KNOWN.iter().copied().filter(|n| has_layers(n)).collect()
}

/// Opens the configured driver, or else the best one this host supports (overlay2, then vfs).
/// The options apply to whichever is chosen.
pub fn open_default(
    configured: Option<&str>,
    data_root: &Path,
    opts: &StorageOpts,
) -> Result<Arc<dyn Driver>, RegistryError> {
    if let Some(name) = configured {
        return open(name, data_root, opts);
    }
    // The driver the layer store was made with (as dockerd prefers the prior driver).
    let layers = strata_graph::layout::layers(data_root);
    if let Ok(Some(recorded)) = strata_graph::layer::store_driver(&layers) {
        return open(&recorded, data_root, opts);
    }
    let present = in_use(data_root);
    let mut why = Vec::new();
    for name in ["overlay2", "vfs"] {
        match open(name, data_root, opts) {
            Ok(d) => {
                // Layers of another driver are not silently abandoned.
                if let Some(found) = present
                    .iter()
                    .copied()
                    .find(|p| *p != name)
                    .filter(|_| !present.contains(&name))
                {
                    return Err(RegistryError::OtherDriverData {
                        chosen: name,
                        found,
                    });
                }
                return Ok(d);
            }
            Err(e) => {
                tracing::info!("{name} not usable: {e}");
                why.push(format!("{name}: {e}"));
            }
        }
    }
    Err(RegistryError::NoneWorks(why.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        assert_eq!(canonical("overlay").unwrap(), "overlay2");
        assert_eq!(canonical("VFS").unwrap(), "vfs");
        let e = canonical("ext9").unwrap_err().to_string();
        assert!(e.contains("ext9") && e.contains("overlay2"), "{e}");
    }

    #[test]
    fn default_choice_prefers_overlay2_here_and_options_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let drv = open_default(None, d.path(), &StorageOpts::default()).unwrap();
        assert_eq!(drv.name(), "overlay2");
        assert_eq!(
            open("overlay", d.path(), &StorageOpts::default())
                .unwrap()
                .name(),
            "overlay2"
        );
        let e = open(
            "vfs",
            d.path(),
            &StorageOpts::parse(&["overlay2.size=1G"]).unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("overlay2.size"), "{e}");
        if strata_zfs::unavailable().is_some() {
            let e = open("zfs", d.path(), &StorageOpts::default())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("zfs is not supported on this host"), "{e}");
        }
        if strata_aufs::unavailable().is_some() {
            let e = open("aufs", d.path(), &StorageOpts::default())
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("aufs is not supported on this host") && e.contains("/proc/filesystems"),
                "{e}"
            );
        }
        if !std::path::Path::new("/dev/mapper/control").exists() {
            let e = open("devicemapper", d.path(), &StorageOpts::default())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("device-mapper is not available"), "{e}");
        }
        assert!(
            in_use(d.path()).is_empty(),
            "no layers yet: {:?} {:?}",
            in_use(d.path()),
            std::fs::read_dir(d.path().join("overlay2"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        );
        let vfs = open("vfs", d.path(), &StorageOpts::default()).unwrap();
        vfs.create("x", None, &Default::default()).unwrap();
        assert_eq!(in_use(d.path()), vec!["vfs"]);
        let e = open_default(None, d.path(), &StorageOpts::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("vfs") && e.contains("overlay2"), "{e}");
        assert_eq!(
            open_default(Some("vfs"), d.path(), &StorageOpts::default())
                .unwrap()
                .name(),
            "vfs"
        );
    }

    #[test]
    fn the_layer_store_names_its_driver_and_refuses_another() {
        let d = tempfile::tempdir().unwrap();
        let vfs = open("vfs", d.path(), &StorageOpts::default()).unwrap();
        let layers = strata_graph::layout::layers(d.path());
        strata_graph::LayerStore::open(&layers, vfs).unwrap();
        // Without --storage-driver the recorded driver is chosen, as dockerd picks the prior one.
        let chosen = open_default(None, d.path(), &StorageOpts::default()).unwrap();
        assert_eq!(chosen.name(), "vfs");
        let ov = open("overlay2", d.path(), &StorageOpts::default()).unwrap();
        let e = match strata_graph::LayerStore::open(&layers, ov) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a vfs layer store opened with overlay2"),
        };
        assert!(
            e.contains("vfs") && e.contains("strata storage migrate --to overlay2"),
            "{e}"
        );
    }
}
