//! Images: references, and the image store (configs, references, layer references). The
//! daemon's image API (issue #4) builds on these.

pub mod archive;
pub mod reference;
pub mod store;

pub use archive::{LoadProgress, Loaded};
pub use reference::{Reference, ReferenceError};
pub use store::{ConfigHead, Image, ImageError, ImageStore};
