//! The layer store: image layers addressed by chainID, container layers by name, over one
//! graph driver, with crash-safe commits and exact re-export.

pub mod record;
mod rw_size;
mod store;

pub use rw_size::{read_size_file, SIZE_SUFFIX};
pub use store::{
    store_driver, Layer, LayerError, LayerExport, LayerStore, RebuiltReferences, ReconcileReport,
    RegisterOpts, RwLayer,
};
