//! Layer tars: reading, writing, applying, diffing, and exact re-export.

pub mod apply;
pub mod changes;
pub mod compression;
pub mod export;
pub mod tar;
pub mod tarsplit;
pub mod walk;

pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyResult, TarSplitSink, WhiteoutFormat};
pub use changes::{
    changes_dirs, changes_dirs_pruned, changes_size, mark_dirty, tree_size, Change, ChangeKind,
    Descend,
};
pub use compression::{decompress, Compression};
pub use export::{export_changes, TreeArchiver};
