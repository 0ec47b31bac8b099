//! The OCI runtime spec of a container, with dockerd's defaults.

pub mod builder;
pub mod defaults;
pub mod mounts;
pub mod network;
pub mod seccomp;
pub mod ulimit;
pub mod user;

pub use builder::{build, EtcFiles, SpecError, SpecInput};
pub use user::{resolve_user, ResolvedUser, UserError};
pub mod exec;
pub use exec::{console_size, exec_process, ExecSpec};
