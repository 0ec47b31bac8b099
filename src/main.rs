//! `strata`: one binary for the daemon and the client. It wires crates together and holds no
//! storage logic of its own.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A container engine built around its layered image store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Daemon(DaemonArgs),
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// Root of persistent state.
    #[arg(
        long = "data-root",
        short = 'g',
        alias = "graph",
        default_value = "/var/lib/strata"
    )]
    data_root: PathBuf,
    /// Storage driver (overlay2, vfs, ...); default: the best this host supports.
    #[arg(long = "storage-driver", short = 's')]
    storage_driver: Option<String>,
    /// Storage driver options (key=value), repeatable.
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Debug logging.
    #[arg(long, short = 'D')]
    debug: bool,
    /// Log level (debug, info, warn, error).
    #[arg(long = "log-level", short = 'l', default_value = "info")]
    log_level: String,
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Daemon(args) => daemon(args),
    };
    if let Err(e) = res {
        eprintln!("strata: {e:#}");
        std::process::exit(1);
    }
}

fn daemon(args: DaemonArgs) -> anyhow::Result<()> {
    let level = if args.debug {
        "debug".to_string()
    } else {
        args.log_level.clone()
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
    let opts = strata_graph::StorageOpts::parse(&args.storage_opt).context("--storage-opt")?;
    std::fs::create_dir_all(&args.data_root)
        .with_context(|| format!("creating {}", args.data_root.display()))?;
    let driver =
        strata_drivers::open_default(args.storage_driver.as_deref(), &args.data_root, &opts)
            .context("storage driver")?;
    let (store, report) =
        strata_graph::LayerStore::open(&args.data_root.join("layers"), driver.clone())
            .context("opening the layer store")?;
    tracing::info!(
        driver = driver.name(),
        layers = store.list().len(),
        "layer store open"
    );
    if !report.is_clean() {
        tracing::warn!(?report, "the store was reconciled");
    }
    for (k, v) in driver.status() {
        tracing::info!("{k}: {v}");
    }
    store.cleanup().context("cleanup")?;
    anyhow::bail!("the Docker Engine API server is not implemented yet (issue #4): the store at {} was opened and reconciled with {}", args.data_root.display(), driver.name())
}
