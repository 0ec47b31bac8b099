//! Container records, configs, names and the store that keeps them.

pub mod config;
pub mod names;
pub mod record;
pub mod store;

pub use config::ContainerConfig;
pub use record::{Container, State};
pub use store::{ContainerError, ContainerStore, Reservation};
