//! Where the daemon keeps each store under its data root. The daemon, `strata storage` and the
//! driver registry all find the stores here, so they agree.
//!
//! ```text
//! <data-root>/layers/        the layer store (its `driver` file names the driver)
//! <data-root>/images/        the image store
//! <data-root>/containers/    container records
//! <data-root>/<driver>/      each driver's home
//! <data-root>/migration/     a storage migration in progress (`strata storage migrate`)
//! <data-root>/strata.lock    held by whoever has the data root open for writing
//! ```

use std::path::{Path, PathBuf};

/// The layer store.
pub fn layers(data_root: &Path) -> PathBuf {
    data_root.join("layers")
}

/// The image store.
pub fn images(data_root: &Path) -> PathBuf {
    data_root.join("images")
}

/// Container records.
pub fn containers(data_root: &Path) -> PathBuf {
    data_root.join("containers")
}

/// The state of a storage migration in progress.
pub fn migration(data_root: &Path) -> PathBuf {
    data_root.join("migration")
}

/// The lock the daemon (and any tool that writes the stores) holds.
pub fn lock(data_root: &Path) -> PathBuf {
    data_root.join("strata.lock")
}
