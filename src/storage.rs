//! `strata storage check|repair|migrate`: arguments and printing; the work is in
//! strata-storage-ops.

use anyhow::Context;
use std::path::PathBuf;
use strata_storage_ops::migrate::{ContainerMode, MigrateOptions};
use strata_storage_ops::{CheckOptions, Report};

/// Whole-store operations.
#[derive(clap::Subcommand)]
pub enum StorageCommand {
    /// Verify the image and layer stores (read-only); exits 1 when anything is wrong.
    Check(CheckArgs),
    /// Fix what `check` finds (daemon stopped): remove leftovers and orphans, rebuild
    /// reference counts, quarantine layers whose content changed.
    Repair(CheckArgs),
    /// Move every layer to another storage driver (daemon stopped).
    Migrate(MigrateArgs),
}

/// Where the stores are.
#[derive(clap::Args)]
pub struct RootArgs {
    /// The daemon's data root, read directly (the daemon must be stopped). Without it, `check`
    /// asks the running daemon, and the others use daemon.json's data-root or
    /// /var/lib/strata.
    #[arg(long = "data-root", short = 'g')]
    data_root: Option<PathBuf>,
    /// The driver, when the layer store does not record it.
    #[arg(long = "storage-driver", short = 's')]
    storage_driver: Option<String>,
    /// The driver's options (key=value), repeatable [default: daemon.json's storage-opts].
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Re-export every layer and compare it with its diffID (default: a sample).
    #[arg(long)]
    full: bool,
    /// How many layers the sample re-exports.
    #[arg(long, default_value_t = 8)]
    sample: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The driver to move to.
    #[arg(long, required_unless_present_any = ["abort", "remove_old"])]
    to: Option<String>,
    /// The new driver's options (key=value), repeatable.
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// The daemon's data root [default: daemon.json's data-root, else /var/lib/strata].
    #[arg(long = "data-root", short = 'g')]
    data_root: Option<PathBuf>,
    /// The current driver, when the layer store does not record it.
    #[arg(long = "from")]
    from: Option<String>,
    /// The current driver's options (key=value), repeatable.
    #[arg(long = "from-storage-opt")]
    from_storage_opt: Vec<String>,
    /// Containers' changes: carried over (convert) or left behind (reset).
    #[arg(long, value_enum, default_value = "convert")]
    containers: ContainersArg,
    /// Remove the old driver's data once the migration is done (alone: remove what earlier
    /// migrations kept).
    #[arg(long = "remove-old")]
    remove_old: bool,
    /// Undo an unfinished migration.
    #[arg(long, conflicts_with_all = ["to", "remove_old"])]
    abort: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ContainersArg {
    Convert,
    Reset,
}

/// daemon.json's data-root and storage-opts.
fn from_daemon_json() -> (PathBuf, Vec<String>) {
    let file = crate::config::read_file(std::path::Path::new(crate::config::DEFAULT_FILE), false)
        .unwrap_or_default();
    let root = file
        .get("data-root")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/strata"));
    let opts = file
        .get("storage-opts")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (root, opts)
}

/// Progress of re-exporting layers, on one line.
fn progress(done: usize, total: usize) {
    if total > 0 && done < total {
        eprint!("\rre-exporting layer {}/{total}", done + 1);
    } else if total > 0 {
        eprintln!("\rre-exported {total} layer(s)      ");
    }
}

fn say(line: &str) {
    eprintln!("{line}");
}

/// Runs a storage command; returns the exit code.
pub fn run(client: &strata_cli::ClientOpts, cmd: StorageCommand) -> anyhow::Result<i32> {
    match cmd {
        StorageCommand::Check(a) => check(client, a),
        StorageCommand::Repair(a) => repair(a),
        StorageCommand::Migrate(a) => migrate(a),
    }
}

fn opts_of(a: &RootArgs) -> anyhow::Result<(PathBuf, strata_graph::StorageOpts)> {
    let (root, file_opts) = from_daemon_json();
    let raw = if a.storage_opt.is_empty() {
        file_opts
    } else {
        a.storage_opt.clone()
    };
    let opts = strata_graph::StorageOpts::parse(&raw).context("storage options")?;
    Ok((a.data_root.clone().unwrap_or(root), opts))
}

fn print_report(r: &Report, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        print!("{}", r.human());
    }
    Ok(if r.ok() { 0 } else { 1 })
}

fn check(client: &strata_cli::ClientOpts, a: CheckArgs) -> anyhow::Result<i32> {
    let o = CheckOptions {
        full: a.full,
        sample: a.sample,
    };
    if a.root.data_root.is_none() {
        // Through the daemon, when one answers.
        let c = client.client().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut q = vec![("sample", o.sample.to_string())];
        if o.full {
            q.push(("full", "1".into()));
        }
        match c.json("GET", "/storage/check", &q, strata_api::client::Body::None) {
            Ok(v) => {
                let r: Report = serde_json::from_value(v).context("the daemon's report")?;
                return print_report(&r, a.json);
            }
            Err(strata_api::client::ClientError::Daemon { status, message }) => {
                anyhow::bail!("the daemon answered {status}: {message}")
            }
            Err(e) => {
                tracing::info!("no daemon ({e}); checking the data root directly");
                say("No daemon answered; checking the data root directly.");
            }
        }
    }
    let (root, opts) = opts_of(&a.root)?;
    let off = strata_storage_ops::offline::Offline::open(&root, a.root.storage_driver.as_deref(), &opts)
        .map_err(|e| match e {
            strata_storage_ops::OpsError::Lock(l) => anyhow::anyhow!(
                "{l}\nA daemon has this data root open: run `strata storage check` without --data-root to check through it."
            ),
            e => e.into(),
        })?;
    let r = off.check(&o, &progress);
    if let Err(e) = off.driver.cleanup() {
        tracing::warn!("releasing the driver: {e}");
    }
    print_report(&r, a.json)
}

fn repair(a: CheckArgs) -> anyhow::Result<i32> {
    let (root, opts) = opts_of(&a.root)?;
    let o = CheckOptions {
        full: a.full,
        sample: a.sample,
    };
    let r = strata_storage_ops::repair::repair(
        &root,
        a.root.storage_driver.as_deref(),
        &opts,
        &o,
        &progress,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.human());
    }
    Ok(if r.after.ok() { 0 } else { 1 })
}

fn migrate(a: MigrateArgs) -> anyhow::Result<i32> {
    let (file_root, file_opts) = from_daemon_json();
    let root = a.data_root.clone().unwrap_or(file_root);
    if a.abort {
        let st = strata_storage_ops::migrate::abort(&root, &say)?;
        println!(
            "The migration to {} is undone; {} uses {} again.",
            st.to,
            root.display(),
            st.from
        );
        return Ok(0);
    }
    let Some(to) = a.to.clone() else {
        let removed = strata_storage_ops::migrate::remove_old(&root, &say)?;
        if removed.is_empty() {
            println!("No old driver data to remove.");
        } else {
            println!("Removed the data of: {}", removed.join(", "));
        }
        return Ok(0);
    };
    let o = MigrateOptions {
        to,
        to_opts: a.storage_opt.clone(),
        from: a.from.clone(),
        from_opts: if a.from_storage_opt.is_empty() {
            file_opts
        } else {
            a.from_storage_opt.clone()
        },
        containers: match a.containers {
            ContainersArg::Convert => ContainerMode::Convert,
            ContainersArg::Reset => ContainerMode::Reset,
        },
        remove_old: a.remove_old,
    };
    let r = strata_storage_ops::migrate::migrate(&root, &o, &say)?;
    println!(
        "Migrated {} from {} to {}: {} layer(s) ({} copied now), {} container layer(s).",
        root.display(),
        r.from,
        r.to,
        r.layers,
        r.copied,
        r.container_layers
    );
    let opts: String = o
        .to_opts
        .iter()
        .map(|k| format!(" --storage-opt {k}"))
        .collect();
    println!(
        "Start the daemon with --storage-driver {}{opts} (or without --storage-driver: it follows the layer store); set storage-driver in daemon.json too if it names one.",
        r.to
    );
    if !r.old_data.is_empty() {
        println!(
            "The {} data is kept in {}; remove it with `strata storage migrate --remove-old`.",
            r.from,
            r.old_data.join(" and ")
        );
    }
    Ok(0)
}
