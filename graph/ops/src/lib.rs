//! Whole-store operations on a data root: `strata storage check`, `repair` and `migrate`.
//!
//! Its own crate because these work on every store at once (layers, images, containers) and
//! on whichever driver a data root uses: they sit above the driver registry and the container
//! store, which the storage core cannot depend on, and the binary must hold no storage logic.
//!
//! - [`check`]: reads everything and reports what does not agree; changes nothing.
//! - [`repair`]: fixes what a check finds, never deleting content it cannot re-create.
//! - [`migrate`]: moves every layer to another driver by exact re-export, resumable.
//! - [`offline`]: opening a data root while the daemon is stopped.

pub mod check;
mod images;
pub mod lock;
pub mod migrate;
pub mod offline;
pub mod repair;
pub mod report;
pub mod strays;
pub mod tree;

pub use check::{check, CheckOptions, ContainerFacts, Target};
pub use report::{Finding, Kind, Report};

use std::path::PathBuf;

/// Errors of the storage operations.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Registry(#[from] strata_drivers::RegistryError),
    #[error(transparent)]
    Layer(#[from] strata_graph::LayerError),
    #[error(transparent)]
    Image(#[from] strata_graph::image::ImageError),
    #[error(transparent)]
    Driver(#[from] strata_graph::DriverError),
    #[error(transparent)]
    Container(#[from] strata_runtime::ContainerError),
    #[error("{0} is not a Strata data root (it has no layers/ directory)")]
    NotADataRoot(PathBuf),
    #[error("cannot tell which storage driver {root} uses ({why}); pass --storage-driver")]
    UnknownDriver { root: PathBuf, why: String },
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub(crate) fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> OpsError {
    let context = context.into();
    move |source| OpsError::Io { context, source }
}
