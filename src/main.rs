//! `strata`: one binary for the daemon and the client. It wires crates together and holds no
//! storage logic of its own.

mod pidfile;

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
    /// Daemon socket(s) to listen on (unix://PATH), repeatable.
    #[arg(long = "host", short = 'H')]
    hosts: Vec<String>,
    /// Path of the daemon's PID file.
    #[arg(long = "pidfile", short = 'p', default_value = "/run/strata.pid")]
    pidfile: PathBuf,
    /// Daemon labels (key=value), repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
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
    let hosts = if args.hosts.is_empty() {
        vec!["unix:///run/strata.sock".to_string()]
    } else {
        args.hosts.clone()
    };
    let sockets = hosts
        .iter()
        .map(|h| strata_api::Host::parse(h).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = strata_graph::StorageOpts::parse(&args.storage_opt).context("--storage-opt")?;
    std::fs::create_dir_all(&args.data_root)
        .with_context(|| format!("creating {}", args.data_root.display()))?;
    let _pid = pidfile::PidLock::acquire(&args.pidfile, "pidfile")?;
    let _root = pidfile::PidLock::acquire(&args.data_root.join("strata.lock"), "data root lock")?;
    let driver =
        strata_drivers::open_default(args.storage_driver.as_deref(), &args.data_root, &opts)
            .context("storage driver")?;
    let (layers, report) =
        strata_graph::LayerStore::open(&args.data_root.join("layers"), driver.clone())
            .context("opening the layer store")?;
    if !report.is_clean() {
        tracing::warn!(?report, "the layer store was reconciled");
    }
    let layers = std::sync::Arc::new(layers);
    let (images, problems) =
        strata_graph::image::ImageStore::open(&args.data_root.join("images"), layers.clone())
            .context("opening the image store")?;
    for p in problems {
        tracing::warn!("{p}");
    }
    tracing::info!(
        driver = driver.name(),
        images = images.list().len(),
        layers = layers.list().len(),
        "stores open"
    );
    let daemon = std::sync::Arc::new(strata_api::Daemon {
        images: std::sync::Arc::new(images),
        layers: layers.clone(),
        data_root: args.data_root.clone(),
        labels: args.labels.clone(),
        debug: args.debug,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let res: anyhow::Result<()> = rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        for sock in sockets {
            let d = daemon.clone();
            let mut rx = stop_rx.clone();
            servers.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|v| *v).await;
                };
                strata_api::serve(&sock, d, stop)
                    .await
                    .with_context(|| format!("serving {sock:?}"))
            }));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        let _ = stop_tx.send(true);
        for s in servers {
            s.await.context("server task")??;
        }
        Ok(())
    });
    layers.cleanup().context("cleanup")?;
    res
}
