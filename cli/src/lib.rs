//! The `strata` client: the Docker CLI's commands and flags for images and containers, over
//! the Engine API (`strata_api::client`).
//!
//! Its own crate because it is a whole program's worth of parsing and printing that neither
//! the API server nor the binary's wiring should carry.

pub mod commands;
pub mod format;

use clap::{Args, Subcommand};
use std::path::PathBuf;
use strata_api::client::{Client, ClientError};

/// Errors of a client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("template: {0}")]
    Template(String),
    #[error("{0}")]
    Usage(String),
    #[error("writing the output: {0}")]
    Stdout(std::io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] strata_api::tls::TlsError),
    #[error("{0}")]
    Copy(String),
    /// Exit with this code (a container's, for `run`); already reported.
    #[error("")]
    Exit(i32),
}

/// Options of every client command (before the command, as with docker).
#[derive(Args, Debug, Clone, Default)]
pub struct ClientOpts {
    /// Daemon socket to connect to [env: STRATA_HOST, DOCKER_HOST; default:
    /// unix:///run/strata.sock].
    #[arg(short = 'H', long = "host")]
    pub host: Option<String>,
    /// Use TLS; implied by --tlsverify.
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and verify the daemon's certificate [env: DOCKER_TLS_VERIFY].
    #[arg(long)]
    pub tlsverify: bool,
    /// CA the daemon's certificate must be signed by [default: ~/.docker/ca.pem].
    #[arg(long)]
    pub tlscacert: Option<PathBuf>,
    /// Client certificate [default: ~/.docker/cert.pem].
    #[arg(long)]
    pub tlscert: Option<PathBuf>,
    /// Client key [default: ~/.docker/key.pem].
    #[arg(long)]
    pub tlskey: Option<PathBuf>,
    /// Location of client config files (credentials) [env: STRATA_CONFIG; default:
    /// ~/.strata].
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
}

fn env_nonempty(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

impl ClientOpts {
    /// `-H`, then `STRATA_HOST`, then `DOCKER_HOST`, then the default socket.
    pub fn host(&self) -> String {
        self.host
            .clone()
            .or_else(|| env_nonempty("STRATA_HOST"))
            .or_else(|| env_nonempty("DOCKER_HOST"))
            .unwrap_or_else(|| "unix:///run/strata.sock".into())
    }

    /// The client for these options.
    pub fn client(&self) -> Result<Client, CliError> {
        let host = self.host();
        let verify = self.tlsverify || env_nonempty("DOCKER_TLS_VERIFY").is_some();
        let tls = if (self.tls || verify) && host.starts_with("tcp://") {
            let dir = env_nonempty("DOCKER_CERT_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env_nonempty("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".docker")
                });
            let files = strata_api::tls::TlsFiles {
                ca: Some(self.tlscacert.clone().unwrap_or_else(|| dir.join("ca.pem"))),
                cert: Some(self.tlscert.clone().unwrap_or_else(|| dir.join("cert.pem"))),
                key: Some(self.tlskey.clone().unwrap_or_else(|| dir.join("key.pem"))),
            };
            Some(strata_api::tls::client_config(&files, verify)?)
        } else {
            None
        };
        Ok(Client::new(&host, tls)?)
    }
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// List images.
    Images(commands::images::LsArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(commands::images::ImageCommand),
    /// Remove one or more images.
    Rmi(commands::images::RmArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(commands::images::TagArgs),
    /// Show the history of an image.
    History(commands::images::HistoryArgs),
    /// Load an image from a tar archive or STDIN.
    Load(commands::images::LoadArgs),
    /// Build an image from a Dockerfile.
    Build(commands::build::BuildArgs),
    /// Download an image from a registry.
    Pull(commands::registry::PullArgs),
    /// Upload an image to a registry.
    Push(commands::registry::PushArgs),
    /// Log in to a registry.
    Login(commands::registry::LoginArgs),
    /// Log out from a registry.
    Logout(commands::registry::LogoutArgs),
    /// Search Docker Hub (or a registry) for images.
    Search(commands::registry::SearchArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(commands::images::SaveArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(commands::images::ImportArgs),
    /// Create a new container.
    Create(Box<commands::containers::CreateArgs>),
    /// Create and run a new container from an image.
    Run(Box<commands::run::RunArgs>),
    /// Start one or more stopped containers.
    Start(commands::run::ContainersArg),
    /// Stop one or more running containers.
    Stop(commands::run::StopArgs),
    /// Restart one or more containers.
    Restart(commands::run::StopArgs),
    /// Kill one or more running containers.
    Kill(commands::run::KillArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(commands::run::ContainersArg),
    /// Fetch the logs of a container.
    Logs(commands::run::LogsArgs),
    /// List port mappings or a specific mapping for the container.
    Port(commands::ports::PortArgs),
    /// Execute a command in a running container.
    Exec(commands::exec::ExecArgs),
    /// Pause all processes within one or more containers.
    Pause(commands::exec::NamesArg),
    /// Unpause all processes within one or more containers.
    Unpause(commands::exec::NamesArg),
    /// Display the running processes of a container.
    Top(commands::exec::TopArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(commands::exec::StatsArgs),
    /// Update configuration of one or more containers.
    Update(Box<commands::exec::UpdateArgs>),
    /// List containers.
    Ps(commands::containers::PsArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(commands::containers::ContainerCommand),
    /// Return low-level information on containers or images.
    Inspect(commands::containers::InspectArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(commands::containers::IdArg),
    /// Export a container's filesystem as a tar archive.
    Export(commands::containers::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(commands::containers::CommitArgs),
    /// Rename a container.
    Rename(commands::containers::RenameArgs),
    /// Remove one or more containers.
    Rm(commands::containers::RmArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(commands::cp::CpArgs),
    /// Display system-wide information.
    Info(commands::system::FormatArg),
    /// Show the client and daemon version information.
    Version(commands::system::FormatArg),
    /// Get real time events from the daemon.
    Events(commands::system::EventsArgs),
    /// Manage the engine.
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(commands::volumes::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(commands::networks::NetworkCommand),
}

/// Runs a client command.
pub fn run(opts: &ClientOpts, cmd: ClientCommand) -> Result<(), CliError> {
    if let Some(dir) = &opts.config {
        // Read by the commands that keep credentials; set before any thread starts.
        std::env::set_var("STRATA_CONFIG", dir);
    }
    let c = opts.client()?;
    use commands::{containers as ct, images as im, system as sy};
    match cmd {
        ClientCommand::Images(a) => im::ls(&c, a),
        ClientCommand::Image(a) => im::image(&c, a),
        ClientCommand::Rmi(a) => im::rm(&c, a),
        ClientCommand::Tag(a) => im::tag(&c, a),
        ClientCommand::History(a) => im::history(&c, a),
        ClientCommand::Load(a) => im::load(&c, a),
        ClientCommand::Build(a) => commands::build::build(&c, a),
        ClientCommand::Pull(a) => commands::registry::pull(&c, a),
        ClientCommand::Push(a) => commands::registry::push(&c, a),
        ClientCommand::Login(a) => commands::registry::login(&c, a),
        ClientCommand::Logout(a) => commands::registry::logout(a),
        ClientCommand::Search(a) => commands::registry::search(&c, a),
        ClientCommand::Save(a) => im::save(&c, a),
        ClientCommand::Import(a) => im::import(&c, a),
        ClientCommand::Create(a) => ct::create(&c, *a),
        ClientCommand::Run(a) => commands::run::run(&c, *a),
        ClientCommand::Port(a) => commands::ports::port(&c, a),
        ClientCommand::Start(a) => commands::run::start(&c, a),
        ClientCommand::Stop(a) => commands::run::stop(&c, a, "stop"),
        ClientCommand::Restart(a) => commands::run::stop(&c, a, "restart"),
        ClientCommand::Kill(a) => commands::run::kill(&c, a),
        ClientCommand::Wait(a) => commands::run::wait(&c, a),
        ClientCommand::Logs(a) => commands::run::logs(&c, a),
        ClientCommand::Exec(a) => commands::exec::exec(&c, a),
        ClientCommand::Pause(a) => commands::exec::pause(&c, a, "pause"),
        ClientCommand::Unpause(a) => commands::exec::pause(&c, a, "unpause"),
        ClientCommand::Top(a) => commands::exec::top(&c, a),
        ClientCommand::Stats(a) => commands::exec::stats(&c, a),
        ClientCommand::Update(a) => commands::exec::update(&c, *a),
        ClientCommand::Ps(a) => ct::ps(&c, a),
        ClientCommand::Container(a) => ct::container(&c, a),
        ClientCommand::Inspect(a) => ct::inspect(&c, a),
        ClientCommand::Diff(a) => ct::diff(&c, a),
        ClientCommand::Export(a) => ct::export(&c, a),
        ClientCommand::Commit(a) => ct::commit(&c, a),
        ClientCommand::Rename(a) => ct::rename(&c, a),
        ClientCommand::Rm(a) => ct::rm(&c, a),
        ClientCommand::Cp(a) => commands::cp::cp(&c, a),
        ClientCommand::Info(a) => sy::info(&c, a),
        ClientCommand::Version(a) => sy::version(&c, a),
        ClientCommand::Events(a) => sy::events(&c, a),
        ClientCommand::System(a) => sy::system(&c, a),
        ClientCommand::Volume(a) => commands::volumes::volume(&c, a),
        ClientCommand::Network(a) => commands::networks::network(&c, a),
    }
}
