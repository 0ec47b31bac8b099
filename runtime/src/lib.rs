//! Containers: their records and configs, names and IDs, commit of a container's layer into
//! an image, and file access inside a container's root (`docker cp`).
//!
//! Its own crate because it sits between the storage (`strata-graph`) and the API: the API
//! asks it for containers, and the runtime issue adds running them (OCI spec, shim) here.

pub mod cgroups;
pub mod commit;
pub mod container;
pub mod copy;
pub mod lifecycle;
pub mod shim;
pub mod spec;
pub mod volume;

pub use container::{Container, ContainerConfig, ContainerError, ContainerStore, State};
