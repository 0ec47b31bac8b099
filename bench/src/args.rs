//! The command line of `strata bench storage`.

use std::path::PathBuf;

/// `strata bench ...`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Benchmark the storage drivers on this host: the same workloads on each, a table, JSON
    /// with every sample, SVG plots; optionally beside another Docker-API engine.
    Storage(StorageArgs),
}

/// How big the workloads are.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The sizes figures are taken with (minutes per driver).
    Normal,
    /// Small layers and few repetitions: a check that every workload runs (seconds).
    Small,
}

/// The options of `strata bench storage`.
#[derive(clap::Args, Debug, Clone)]
pub struct StorageArgs {
    /// A driver to benchmark (repeatable) [default: every driver that works on this host].
    #[arg(long = "driver", short = 'd')]
    pub drivers: Vec<String>,
    /// A driver option (key=value, repeatable). `<driver>.key` options go to their driver
    /// only (overlay2., btrfs., dm., zfs., vfs.); others to every driver.
    #[arg(long = "storage-opt")]
    pub storage_opts: Vec<String>,
    /// Run in this directory (on the filesystem the driver needs) instead of a backing
    /// store made for the run.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// A workload to run (repeatable) [default: all]; see --list-workloads.
    #[arg(long = "workload", short = 'w')]
    pub workloads: Vec<String>,
    /// Runs of each workload.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write every sample, the summaries and the host's facts to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one SVG plot per workload into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also run the API workloads against this Docker-API engine (unix:///PATH or
    /// tcp://HOST:PORT), and against Strata on each driver, in the same run.
    #[arg(long, value_name = "DOCKER_HOST")]
    pub compare: Option<String>,
    /// Workload sizes.
    #[arg(long, value_enum, default_value = "normal")]
    pub size: Size,
    /// Print each workload's definition and exit.
    #[arg(long = "list-workloads")]
    pub list_workloads: bool,
}
