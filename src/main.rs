//! `strata`: one binary for the daemon and the client. It wires crates together and holds no
//! storage logic of its own.

mod config;
mod netflags;
mod storage;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A container engine built around its layered image store"
)]
struct Cli {
    #[command(flatten)]
    client: strata_cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Daemon(Box<DaemonArgs>),
    #[command(flatten)]
    Client(strata_cli::ClientCommand),
    /// Benchmarks (`strata bench storage`).
    #[command(subcommand)]
    Bench(strata_bench::args::BenchCommand),
    /// Check, repair and migrate the image and layer stores (`strata storage check`).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// The per-container shim (started by the daemon).
    #[command(hide = true)]
    Shim(ShimArgs),
}

#[derive(clap::Args)]
struct ShimArgs {
    /// The container's state directory (holds shim.json).
    #[arg(long)]
    state: PathBuf,
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// Root of persistent state [default: /var/lib/strata].
    #[arg(long = "data-root", short = 'g', alias = "graph")]
    data_root: Option<PathBuf>,
    /// Storage driver (overlay2, vfs, ...); default: the best this host supports.
    #[arg(long = "storage-driver", short = 's')]
    storage_driver: Option<String>,
    /// Storage driver options (key=value), repeatable.
    #[arg(long = "storage-opt")]
    storage_opt: Vec<String>,
    /// Debug logging.
    #[arg(long, short = 'D')]
    debug: bool,
    /// Log level (debug, info, warn, error) [default: info].
    #[arg(long = "log-level", short = 'l')]
    log_level: Option<String>,
    /// Daemon socket(s) to listen on (unix://PATH, tcp://HOST:PORT), repeatable
    /// [default: unix:///run/strata.sock].
    #[arg(long = "host", short = 'H')]
    hosts: Vec<String>,
    /// Path of the daemon's PID file [default: /run/strata.pid].
    #[arg(long = "pidfile", short = 'p')]
    pidfile: Option<PathBuf>,
    /// Daemon labels (key=value), repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Daemon configuration file [default: /etc/strata/daemon.json].
    #[arg(long = "config-file")]
    config_file: Option<PathBuf>,
    /// Root of the execution state [default: /run/strata].
    #[arg(long = "exec-root")]
    exec_root: Option<PathBuf>,
    /// Group owning the unix socket(s) [default: docker, when it exists].
    #[arg(long = "group", short = 'G')]
    group: Option<String>,
    /// Keep containers running when the daemon stops; the next daemon follows them.
    #[arg(long = "live-restore")]
    live_restore: bool,
    /// Log driver of containers that name none (json-file, local, none) [default: json-file].
    #[arg(long = "log-driver")]
    log_driver: Option<String>,
    /// Options of the default log driver (KEY=VALUE; repeatable).
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Register an additional OCI runtime (NAME=PATH; repeatable).
    #[arg(long = "add-runtime")]
    add_runtime: Vec<String>,
    /// Runtime of containers that name none [default: runc].
    #[arg(long = "default-runtime")]
    default_runtime: Option<String>,
    /// Default ulimits of containers (NAME=SOFT[:HARD]; repeatable).
    #[arg(long = "default-ulimit")]
    default_ulimit: Vec<String>,
    #[command(flatten)]
    net: netflags::NetFlags,
    /// A registry reached over plain HTTP or unverified TLS (HOST[:PORT] or CIDR;
    /// repeatable). 127.0.0.0/8 always is.
    #[arg(long = "insecure-registry")]
    insecure_registry: Vec<String>,
    /// A mirror of Docker Hub, tried first for its images (URL; repeatable).
    #[arg(long = "registry-mirror")]
    registry_mirror: Vec<String>,
    /// Layers downloaded at once per daemon [default: 3].
    #[arg(long = "max-concurrent-downloads")]
    max_concurrent_downloads: Option<usize>,
    /// Layers uploaded at once per push [default: 5].
    #[arg(long = "max-concurrent-uploads")]
    max_concurrent_uploads: Option<usize>,
    /// Per-registry certificates: HOST[:PORT]/{*.crt, client.cert, client.key}
    /// [default: /etc/strata/certs.d].
    #[arg(long = "registry-certs-dir")]
    registry_certs_dir: Option<PathBuf>,
    /// Use TLS on TCP sockets; implied by --tlsverify.
    #[arg(long)]
    tls: bool,
    /// Use TLS and require client certificates signed by --tlscacert.
    #[arg(long)]
    tlsverify: bool,
    /// CA that client certificates must be signed by [default: ~/.docker/ca.pem].
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// The daemon's TLS certificate [default: ~/.docker/cert.pem].
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// The daemon's TLS key [default: ~/.docker/key.pem].
    #[arg(long)]
    tlskey: Option<PathBuf>,
}

/// A group name or number as a gid.
fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The runtimes of a configuration, checked.
fn runtimes(cfg: &config::Config) -> anyhow::Result<strata_api::runtimes::Runtimes> {
    strata_api::runtimes::Runtimes::new(&cfg.default_runtime, cfg.runtimes.clone())
        .map_err(|e| anyhow::anyhow!(e))
}

/// The default log configuration, checked.
fn log_default(cfg: &config::Config) -> anyhow::Result<strata_api::run::LogDefault> {
    strata_runtime::shim::LogConfig::new(&cfg.log_driver, &cfg.log_opts, Path::new("/"), "x")
        .context("the default log driver")?;
    Ok(strata_api::run::LogDefault {
        driver: cfg.log_driver.clone(),
        opts: cfg.log_opts.clone(),
    })
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Daemon(args) => daemon(*args),
        Command::Bench(b) => bench(b),
        Command::Storage(s) => {
            tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new(
                    std::env::var("STRATA_LOG").unwrap_or_else(|_| "warn".into()),
                ))
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .init();
            match storage::run(&cli.client, s) {
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            }
        }
        Command::Shim(a) => std::process::exit(strata_runtime::shim::main(&a.state)),
        Command::Client(cmd) => {
            if let Err(e) = strata_cli::run(&cli.client, cmd) {
                if let strata_cli::CliError::Exit(code) = e {
                    std::process::exit(code);
                }
                let text = e.to_string();
                // An empty message: each failure was reported as it happened.
                if !text.is_empty() {
                    eprintln!("{text}");
                }
                std::process::exit(1);
            }
            Ok(())
        }
    };
    if let Err(e) = res {
        eprintln!("strata: {e:#}");
        std::process::exit(1);
    }
}

/// `strata bench storage`: the harness lives in strata-bench; this only reports.
fn bench(cmd: strata_bench::args::BenchCommand) -> anyhow::Result<()> {
    let strata_bench::args::BenchCommand::Storage(args) = cmd;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            std::env::var("STRATA_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    if args.list_workloads {
        print!("{}", strata_bench::run::list_workloads());
        return Ok(());
    }
    let exe = std::env::current_exe().context("the strata binary")?;
    let outcome = strata_bench::run::run(&args, &exe)?;
    print!("{}", outcome.table);
    for d in &outcome.report.drivers {
        if d.state != "measured" {
            println!(
                "{} {}: {}",
                d.state,
                d.name,
                d.reason.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(p) = &args.json {
        println!("results: {}", p.display());
    }
    for p in &outcome.plots {
        println!("plot: {}", p.display());
    }
    for e in &outcome.report.errors {
        eprintln!("error: {e}");
    }
    std::process::exit(outcome.exit_code());
}

fn level(debug: bool, log_level: &str) -> String {
    if debug {
        "debug".into()
    } else {
        log_level.to_string()
    }
}

fn daemon(args: DaemonArgs) -> anyhow::Result<()> {
    // Before any thread starts: it reads and clears the environment.
    let activated = strata_api::activation_fds();
    let flags = config::Flags {
        hosts: args.hosts.clone(),
        data_root: args.data_root.clone(),
        storage_driver: args.storage_driver.clone(),
        storage_opts: args.storage_opt.clone(),
        labels: args.labels.clone(),
        debug: args.debug,
        log_level: args.log_level.clone(),
        pidfile: args.pidfile.clone(),
        tls: args.tls,
        tlsverify: args.tlsverify,
        tlscacert: args.tlscacert.clone(),
        tlscert: args.tlscert.clone(),
        tlskey: args.tlskey.clone(),
        exec_root: args.exec_root.clone(),
        group: args.group.clone(),
        live_restore: args.live_restore,
        log_driver: args.log_driver.clone(),
        log_opts: args.log_opt.clone(),
        add_runtimes: args.add_runtime.clone(),
        default_runtime: args.default_runtime.clone(),
        default_ulimits: args.default_ulimit.clone(),
        insecure_registries: args.insecure_registry.clone(),
        registry_mirrors: args.registry_mirror.clone(),
        max_concurrent_downloads: args.max_concurrent_downloads,
        max_concurrent_uploads: args.max_concurrent_uploads,
        registry_certs_dir: args.registry_certs_dir.clone(),
        net: args.net.clone(),
    };
    let config_path = args
        .config_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_FILE));
    let file = config::read_file(&config_path, args.config_file.is_some())?;
    let cfg = config::merge(&flags, &file)?;
    let (filter, log_handle) = tracing_subscriber::reload::Layer::new(
        tracing_subscriber::EnvFilter::new(level(cfg.debug, &cfg.log_level)),
    );
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let hosts = if cfg.hosts.is_empty() {
        vec!["unix:///run/strata.sock".to_string()]
    } else {
        cfg.hosts.clone()
    };
    let sockets =
        strata_api::resolve_hosts(&hosts, &activated, cfg.tls).map_err(anyhow::Error::msg)?;
    let tls = if cfg.tls {
        let files = strata_api::tls::TlsFiles {
            ca: Some(cfg.tlscacert.clone()),
            cert: Some(cfg.tlscert.clone()),
            key: Some(cfg.tlskey.clone()),
        };
        Some(strata_api::tls::server_config(&files, cfg.tlsverify).context("TLS")?)
    } else {
        None
    };
    let socket_gid = match &cfg.group {
        Some(g) => Some(group_id(g).with_context(|| format!("group {g:?} not found"))?),
        None => group_id("docker"),
    };
    let serve_opts = strata_api::ServeOptions {
        tls,
        verify: cfg.tlsverify,
        socket_gid,
    };
    std::fs::create_dir_all(&cfg.exec_root)
        .with_context(|| format!("creating the exec root {}", cfg.exec_root.display()))?;
    let opts = strata_graph::StorageOpts::parse(&cfg.storage_opts).context("storage options")?;
    std::fs::create_dir_all(&cfg.data_root)
        .with_context(|| format!("creating {}", cfg.data_root.display()))?;
    let _pid = strata_storage_ops::lock::PidLock::acquire(&cfg.pidfile, "pidfile")?;
    let _root = strata_storage_ops::lock::PidLock::acquire(
        &strata_graph::layout::lock(&cfg.data_root),
        "data root lock",
    )?;
    if let Some(m) = strata_storage_ops::migrate::pending(&cfg.data_root) {
        anyhow::bail!(
            "a storage migration from {} to {} has not finished ({}): resume it with `strata storage migrate --to {}`, or undo it with `strata storage migrate --abort`",
            m.from, m.to, m.phase, m.to
        );
    }
    let driver = strata_drivers::open_default(cfg.storage_driver.as_deref(), &cfg.data_root, &opts)
        .context("storage driver")?;
    let (layers, report) = strata_graph::LayerStore::open(
        &strata_graph::layout::layers(&cfg.data_root),
        driver.clone(),
    )
    .context("opening the layer store")?;
    if !report.is_clean() {
        tracing::warn!(?report, "the layer store was reconciled");
    }
    let layers = Arc::new(layers);
    // Container layers are measured after their last unmount, so `system df` need not walk them.
    layers
        .start_size_worker()
        .context("starting the layer size worker")?;
    let (images, problems) = strata_graph::image::ImageStore::open(
        &strata_graph::layout::images(&cfg.data_root),
        layers.clone(),
    )
    .context("opening the image store")?;
    for p in problems {
        tracing::warn!("{p}");
    }
    let containers =
        strata_runtime::ContainerStore::open(&strata_graph::layout::containers(&cfg.data_root))
            .context("opening the container store")?;
    // A crash between creating a container's layer and writing its record leaves a layer no
    // container owns.
    for name in layers.rw_names() {
        if !containers.contains(&name) {
            tracing::warn!(layer = %name, "removing a container layer without a container");
            if let Err(e) = layers.remove_rw(&name) {
                tracing::error!(layer = %name, "removing an orphan container layer: {e}");
            }
        }
    }
    tracing::info!(
        driver = driver.name(),
        containers = containers.list().len(),
        images = images.list().len(),
        layers = layers.list().len(),
        "stores open"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let images = Arc::new(images);
    let distribution = Arc::new(
        strata_registry::service::Distribution::open(
            &cfg.data_root.join("distribution"),
            images.clone(),
            cfg.distribution.clone(),
        )
        .context("opening the distribution state")?,
    );
    let daemon = Arc::new(strata_api::Daemon {
        distribution,
        images,
        layers: layers.clone(),
        containers: Arc::new(containers),
        data_root: cfg.data_root.clone(),
        labels: std::sync::RwLock::new(cfg.labels.clone()),
        debug: std::sync::atomic::AtomicBool::new(cfg.debug),
        events: Default::default(),
        runtime: strata_runtime::lifecycle::Runtime {
            exec_root: cfg.exec_root.clone(),
            shim_exe: std::env::current_exe().context("finding the strata binary")?,
        },
        changes: tokio::sync::broadcast::channel(256).0,
        live_restore: std::sync::atomic::AtomicBool::new(cfg.live_restore),
        attach: Default::default(),
        execs: Default::default(),
        log_default: std::sync::RwLock::new(log_default(&cfg)?),
        restarts: Default::default(),
        shutting_down: std::sync::atomic::AtomicBool::new(false),
        health: Default::default(),
        net: Arc::new(
            strata_netd::Manager::open(
                &cfg.data_root.join("network"),
                &cfg.exec_root.join("netns"),
                cfg.net.clone(),
                rt.handle().clone(),
            )
            .context("setting up networking")?,
        ),
        runtimes: std::sync::RwLock::new(runtimes(&cfg)?),
        default_ulimits: std::sync::RwLock::new(cfg.default_ulimits.clone()),
        volumes: Arc::new(
            strata_runtime::volume::VolumeStore::open(&cfg.data_root.join("volumes"))
                .context("opening the volume store")?,
        ),
    });
    let res: anyhow::Result<()> = rt.block_on(async move {
        strata_api::volumes::restore(&daemon);
        strata_api::run::adopt(&daemon).await;
        strata_api::restart::at_daemon_start(&daemon).await;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        for sock in sockets {
            let d = daemon.clone();
            let opts = serve_opts.clone();
            let mut rx = stop_rx.clone();
            servers.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|v| *v).await;
                };
                let res = strata_api::serve(&sock, d, opts, stop).await.with_context(|| format!("serving {sock:?}"));
                if let Err(e) = &res {
                    tracing::error!("{e:#}");
                }
                res
            }));
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut current = cfg;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = hup.recv() => {
                    match config::read_file(&config_path, args.config_file.is_some()).and_then(|f| config::merge(&flags, &f)) {
                        Err(e) => tracing::error!("SIGHUP: keeping the current configuration: {e:#}"),
                        Ok(new) => {
                            if new.labels != current.labels {
                                tracing::info!(old = ?current.labels, new = ?new.labels, "reloaded labels");
                                *daemon.labels.write().unwrap_or_else(|p| p.into_inner()) = new.labels.clone();
                            }
                            if new.live_restore != current.live_restore {
                                tracing::info!(live_restore = new.live_restore, "reloaded live-restore");
                                daemon.live_restore.store(new.live_restore, Ordering::Relaxed);
                            }
                            if new.log_driver != current.log_driver || new.log_opts != current.log_opts {
                                match log_default(&new) {
                                    Ok(l) => {
                                        tracing::info!(driver = %l.driver, "reloaded the default log driver (for new containers)");
                                        *daemon.log_default.write().unwrap_or_else(|p| p.into_inner()) = l;
                                    }
                                    Err(e) => tracing::error!("SIGHUP: keeping the log driver: {e:#}"),
                                }
                            }
                            if new.runtimes != current.runtimes || new.default_runtime != current.default_runtime {
                                match runtimes(&new) {
                                    Ok(r) => {
                                        tracing::info!(default = %r.default, "reloaded the runtimes");
                                        *daemon.runtimes.write().unwrap_or_else(|p| p.into_inner()) = r;
                                    }
                                    Err(e) => tracing::error!("SIGHUP: keeping the runtimes: {e:#}"),
                                }
                            }
                            if new.default_ulimits != current.default_ulimits {
                                tracing::info!("reloaded the default ulimits (for the next starts)");
                                *daemon.default_ulimits.write().unwrap_or_else(|p| p.into_inner()) = new.default_ulimits.clone();
                            }
                            if new.distribution != current.distribution {
                                tracing::info!(registries = ?new.distribution, "reloaded the registry settings");
                                daemon.distribution.reload(&new.distribution);
                            }
                            if new.debug != current.debug || new.log_level != current.log_level {
                                tracing::info!(debug = new.debug, log_level = %new.log_level, "reloaded logging");
                                daemon.debug.store(new.debug, Ordering::Relaxed);
                                let _ = log_handle.modify(|f| *f = tracing_subscriber::EnvFilter::new(level(new.debug, &new.log_level)));
                            }
                            let ignored: Vec<&str> = [
                                ("hosts", new.hosts != current.hosts),
                                ("data-root", new.data_root != current.data_root),
                                ("storage-driver", new.storage_driver != current.storage_driver),
                                ("storage-opts", new.storage_opts != current.storage_opts),
                                ("pidfile", new.pidfile != current.pidfile),
                                ("exec-root", new.exec_root != current.exec_root),
                                ("group", new.group != current.group),
                                ("tls", new.tls != current.tls || new.tlsverify != current.tlsverify
                                    || new.tlscacert != current.tlscacert || new.tlscert != current.tlscert
                                    || new.tlskey != current.tlskey),
                            ]
                            .iter()
                            .filter(|(_, changed)| *changed)
                            .map(|(k, _)| *k)
                            .collect();
                            if !ignored.is_empty() {
                                tracing::warn!(?ignored, "these settings change only with a restart");
                            }
                            current = new;
                        }
                    }
                }
            }
        }
        daemon.shutting_down.store(true, Ordering::Relaxed);
        if !daemon.live_restore.load(Ordering::Relaxed) {
            strata_api::run::stop_all(&daemon).await;
        }
        let _ = stop_tx.send(true);
        for s in servers {
            s.await.context("server task")??;
        }
        Ok(())
    });
    // Tasks that follow running containers block on their shims: do not wait for them (the
    // containers keep running and are adopted by the next daemon).
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    layers.cleanup().context("cleanup")?;
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
