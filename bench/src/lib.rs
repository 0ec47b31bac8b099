//! `strata bench storage`: one command that measures every graph driver on this host with the
//! same workloads, and prints a table, writes JSON with every sample and draws SVG plots.
//!
//! A crate of its own because it sits above every driver crate (through `strata-drivers`) and
//! the API client (for `--compare`), which neither the storage core nor the binary may: the
//! binary only parses the command line and calls [`run::run`]. The criterion benches in
//! `benches/storage.rs` call the same workloads.
//!
//! - [`args`]: the command line;
//! - [`data`]: the layers the workloads apply, generated from fixed seeds;
//! - [`workloads`]: each workload, its definition and its measurement;
//! - [`backing`]: the filesystem each driver runs on (loop btrfs, loop xfs with project
//!   quota, a ZFS pool on a file, or the user's `--root`), removed afterwards;
//! - [`compare`]: the workloads the Docker API can express, against any Docker-API engine;
//! - [`stats`], [`table`], [`report`], [`plots`], [`progress`]: the output.

pub mod args;
pub mod backing;
pub mod compare;
pub mod data;
pub mod error;
pub mod host;
pub mod plots;
pub mod progress;
pub mod report;
pub mod run;
pub mod scope;
pub mod series;
pub mod stats;
pub mod svg;
pub mod table;
pub mod workloads;

pub use error::{BenchError, BenchResult};
