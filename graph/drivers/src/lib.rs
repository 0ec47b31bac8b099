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
        other => Err(RegistryError::NotBuilt { name: other.into() }),
    }
}

/// The drivers whose data already exists under the data root.
pub fn in_use(data_root: &Path) -> Vec<&'static str> {
    KNOWN
        .iter()
        .copied()
        .filter(|n| {
            std::fs::read_dir(data_root.join(n))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        })
        .collect()
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
    let mut why = Vec::new();
    for name in ["overlay2", "vfs"] {
        match open(name, data_root, opts) {
            Ok(d) => return Ok(d),
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
        assert!(matches!(
            open("devicemapper", d.path(), &StorageOpts::default()),
            Err(RegistryError::NotBuilt { .. })
        ));
        assert_eq!(in_use(d.path()), vec!["overlay2"]);
    }
}
