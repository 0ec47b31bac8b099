//! Strata's storage core.
//!
//! - [`driver`]: the graph driver contract every backend implements, with a generic diff.
//! - [`layer`]: the content-addressed, crash-safe layer store over a driver.
//! - [`archive`]: layer tars: streaming reader/writer, safe apply, diff, exact re-export.
//! - [`layout`]: where each store lives under the data root.
//! - [`digest`], [`options`], [`fsutil`], [`sys`], [`quota`]: the pieces underneath.
//! - `graphtest` (feature): the conformance suite each driver crate runs against itself.

pub mod archive;
pub mod digest;
pub mod driver;
pub mod fsutil;
pub mod image;
pub mod layer;
pub mod layout;
pub mod options;
pub mod quota;
pub mod sys;
pub mod time;

#[cfg(feature = "graphtest")]
pub mod graphtest;

pub use digest::{chain_id, ChainId, DiffId, Digest};
pub use driver::{ApplyTarget, CreateOpts, Driver, DriverError, DriverResult, Stray};
pub use layer::{Layer, LayerError, LayerStore, ReconcileReport, RegisterOpts, RwLayer};
pub use options::{OptionError, OptionSpec, StorageOpts};
