//! Images: references, and (to come with the daemon, issue #4) the image store.

pub mod reference;

pub use reference::{Reference, ReferenceError};
