//! The layer store: image layers addressed by chainID, container layers by name, over one
//! graph driver, with crash-safe commits and exact re-export.

pub mod record;
mod store;

pub use store::{
    store_driver, Layer, LayerError, LayerExport, LayerStore, ReconcileReport, RegisterOpts,
    RwLayer,
};
