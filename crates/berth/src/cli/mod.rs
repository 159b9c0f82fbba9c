//! The `berth` command line: Docker's commands, flags, output and exit codes, as a client of the
//! Engine API. Parsing happens in two stages (ripgrep style): clap turns argv into the raw
//! structs below, and each command turns those into API requests.

pub mod build;
pub mod compose;
pub mod compose_spec;
pub mod containers;
pub mod format;
pub mod fsops;
pub mod images;
pub mod networks;
pub mod registry;
pub mod run;
pub mod volumes;

use crate::client::Client;
use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "berth", about = "A Docker-compatible container engine", version, disable_help_subcommand = true)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path or a path)
    #[arg(short = 'H', long = "host", global = true, env = "BERTH_HOST")]
    pub host: Option<String>,
    /// Ignored (Docker compatibility)
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon
    Daemon(crate::daemon::DaemonArgs),
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::RunArgs),
    /// Start one or more stopped containers
    Start(containers::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Pause all processes within one or more containers
    Pause(containers::Names),
    /// Unpause all processes within one or more containers
    Unpause(containers::Names),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// List containers
    #[command(alias = "container-ls")]
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Execute a command in a running container
    Exec(containers::ExecArgs),
    /// Return low-level information on Docker objects
    Inspect(containers::InspectArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::Names),
    /// Display the running processes of a container
    Top(containers::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(containers::StatsArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Attach local standard input, output, and error streams to a running container
    Attach(containers::AttachArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(images::ImportArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Authenticate to a registry
    Login(registry::LoginArgs),
    /// Log out from a registry
    Logout(registry::LogoutArgs),
    /// Search Docker Hub (or a registry's catalog) for images
    Search(registry::SearchArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage berth
    #[command(subcommand)]
    System(SystemCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volumes::VolumeCmd),
    /// Display system-wide information
    Info(FormatArg),
    /// Show the berth version information
    Version(FormatArg),
    /// Get real time events from the server
    Events(containers::EventsArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(build::BuilderCmd),
    /// Docker Buildx (classic builder subset)
    #[command(subcommand)]
    Buildx(build::BuildxCmd),
    /// Copy files/folders between a container and the local filesystem
    Cp(fsops::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Export a container's filesystem as a tar archive
    Export(fsops::ExportArgs),
    /// Create a new image from a container's changes
    Commit(fsops::CommitArgs),
    /// Manage networks
    #[command(subcommand)]
    Network(networks::NetworkCmd),
    /// List port mappings or a specific mapping for the container
    Port { container: String, private_port: Option<String> },
    /// berth's own registry server
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// Define and run multi-container applications
    Compose(compose::ComposeArgs),
    /// Run the per-container shim (internal)
    #[command(hide = true)]
    Shim { state_dir: std::path::PathBuf },
}

#[derive(Args, Debug)]
pub struct FormatArg {
    #[arg(short, long)]
    pub format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    Run(run::RunArgs),
    Create(run::RunArgs),
    Start(containers::StartArgs),
    Stop(containers::StopArgs),
    Restart(containers::StopArgs),
    Kill(containers::KillArgs),
    Pause(containers::Names),
    Unpause(containers::Names),
    Rm(containers::RmArgs),
    #[command(alias = "ps", alias = "list")]
    Ls(containers::PsArgs),
    Logs(containers::LogsArgs),
    Exec(containers::ExecArgs),
    Inspect(containers::InspectArgs),
    Wait(containers::Names),
    Top(containers::TopArgs),
    Stats(containers::StatsArgs),
    Rename { container: String, new_name: String },
    Attach(containers::AttachArgs),
    Prune(containers::PruneArgs),
    Port { container: String, private_port: Option<String> },
    Cp(fsops::CpArgs),
    Diff { container: String },
    Export(fsops::ExportArgs),
    Commit(fsops::CommitArgs),
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    Rm(images::RmiArgs),
    Tag { source: String, target: String },
    History(images::HistoryArgs),
    Import(images::ImportArgs),
    Save(images::SaveArgs),
    Load(images::LoadArgs),
    Pull(images::PullArgs),
    Push(registry::PushArgs),
    Inspect(containers::InspectArgs),
    Prune(images::PruneArgs),
    Build(build::BuildArgs),
}

#[derive(Subcommand, Debug)]
pub enum RegistryCmd {
    /// Serve the OCI distribution API (Docker Registry HTTP API v2)
    Serve(berth_registry::ServeArgs),
    /// Remove blobs no manifest references
    Gc(berth_registry::GcArgs),
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    Df(images::DfArgs),
    Prune(images::SystemPruneArgs),
    Info(FormatArg),
    Events(containers::EventsArgs),
}

/// Where the daemon listens by default.
pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

pub fn socket_path(host: Option<&str>) -> std::path::PathBuf {
    let h = host.map(String::from).or_else(|| std::env::var("DOCKER_HOST").ok().filter(|_| false));
    match h {
        Some(h) => std::path::PathBuf::from(h.strip_prefix("unix://").unwrap_or(&h)),
        None => std::path::PathBuf::from(DEFAULT_SOCKET),
    }
}

/// Connect, starting a daemon in the background when the default socket has none.
pub async fn connect(host: Option<&str>) -> Result<Client> {
    let sock = socket_path(host);
    let mut c = Client::new(&sock);
    if c.negotiate().await.is_ok() {
        return Ok(c);
    }
    if host.is_some() {
        c.negotiate().await?;
        return Ok(c);
    }
    crate::daemon::spawn_background(&sock)?;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        if c.negotiate().await.is_ok() {
            return Ok(c);
        }
    }
    c.negotiate().await?;
    Ok(c)
}

/// Exit status for the process (Docker's: 1 for daemon errors, 125 for run's own failures).
pub struct Exit(pub i32);

impl std::fmt::Debug for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

pub async fn run(cli: Cli) -> Result<()> {
    let host = cli.host.clone();
    let c = || connect(host.as_deref());
    match cli.cmd {
        Command::Daemon(_) | Command::Shim { .. } => unreachable!("handled in main"),
        Command::Run(a) | Command::Container(ContainerCmd::Run(a)) => run::run(&c().await?, a, true).await,
        Command::Create(a) | Command::Container(ContainerCmd::Create(a)) => run::run(&c().await?, a, false).await,
        Command::Start(a) | Command::Container(ContainerCmd::Start(a)) => containers::start(&c().await?, a).await,
        Command::Stop(a) | Command::Container(ContainerCmd::Stop(a)) => containers::stop(&c().await?, a, "stop").await,
        Command::Restart(a) | Command::Container(ContainerCmd::Restart(a)) => containers::stop(&c().await?, a, "restart").await,
        Command::Kill(a) | Command::Container(ContainerCmd::Kill(a)) => containers::kill(&c().await?, a).await,
        Command::Pause(a) | Command::Container(ContainerCmd::Pause(a)) => containers::simple(&c().await?, a, "pause").await,
        Command::Unpause(a) | Command::Container(ContainerCmd::Unpause(a)) => containers::simple(&c().await?, a, "unpause").await,
        Command::Rm(a) | Command::Container(ContainerCmd::Rm(a)) => containers::rm(&c().await?, a).await,
        Command::Ps(a) | Command::Container(ContainerCmd::Ls(a)) => containers::ps(&c().await?, a).await,
        Command::Logs(a) | Command::Container(ContainerCmd::Logs(a)) => containers::logs(&c().await?, a).await,
        Command::Exec(a) | Command::Container(ContainerCmd::Exec(a)) => containers::exec(&c().await?, a).await,
        Command::Inspect(a) => containers::inspect(&c().await?, a, None).await,
        Command::Container(ContainerCmd::Inspect(a)) => containers::inspect(&c().await?, a, Some("container")).await,
        Command::Image(ImageCmd::Inspect(a)) => containers::inspect(&c().await?, a, Some("image")).await,
        Command::Wait(a) | Command::Container(ContainerCmd::Wait(a)) => containers::wait(&c().await?, a).await,
        Command::Top(a) | Command::Container(ContainerCmd::Top(a)) => containers::top(&c().await?, a).await,
        Command::Stats(a) | Command::Container(ContainerCmd::Stats(a)) => containers::stats(&c().await?, a).await,
        Command::Rename { container, new_name } | Command::Container(ContainerCmd::Rename { container, new_name }) => {
            containers::rename(&c().await?, &container, &new_name).await
        }
        Command::Attach(a) | Command::Container(ContainerCmd::Attach(a)) => containers::attach(&c().await?, a).await,
        Command::Container(ContainerCmd::Prune(a)) => containers::prune(&c().await?, a).await,
        Command::Images(a) | Command::Image(ImageCmd::Ls(a)) => images::images(&c().await?, a).await,
        Command::Rmi(a) | Command::Image(ImageCmd::Rm(a)) => images::rmi(&c().await?, a).await,
        Command::Tag { source, target } | Command::Image(ImageCmd::Tag { source, target }) => images::tag(&c().await?, &source, &target).await,
        Command::History(a) | Command::Image(ImageCmd::History(a)) => images::history(&c().await?, a).await,
        Command::Import(a) | Command::Image(ImageCmd::Import(a)) => images::import(&c().await?, a).await,
        Command::Save(a) | Command::Image(ImageCmd::Save(a)) => images::save(&c().await?, a).await,
        Command::Load(a) | Command::Image(ImageCmd::Load(a)) => images::load(&c().await?, a).await,
        Command::Pull(a) | Command::Image(ImageCmd::Pull(a)) => registry::pull(&c().await?, a).await,
        Command::Push(a) | Command::Image(ImageCmd::Push(a)) => registry::push(&c().await?, a).await,
        Command::Login(a) => registry::login(&c().await?, a).await,
        Command::Logout(a) => registry::logout(a).await,
        Command::Search(a) => registry::search(&c().await?, a).await,
        Command::Image(ImageCmd::Prune(a)) => images::prune(&c().await?, a).await,
        Command::Volume(v) => volumes::run(&c().await?, v).await,
        Command::System(SystemCmd::Df(a)) => images::df(&c().await?, a).await,
        Command::System(SystemCmd::Prune(a)) => images::system_prune(&c().await?, a).await,
        Command::Info(f) | Command::System(SystemCmd::Info(f)) => images::info(&c().await?, f).await,
        Command::Version(f) => images::version(host.as_deref(), f).await,
        Command::Build(a) | Command::Image(ImageCmd::Build(a)) => build::build(&c().await?, a).await,
        Command::Builder(build::BuilderCmd::Build(a)) | Command::Buildx(build::BuildxCmd::Build(a)) => build::build(&c().await?, *a).await,
        Command::Builder(build::BuilderCmd::Prune(a)) | Command::Buildx(build::BuildxCmd::Prune(a)) => build::prune(&c().await?, a).await,
        Command::Network(n) => networks::network(&c().await?, n).await,
        Command::Registry(RegistryCmd::Serve(a)) => berth_registry::serve(a).await,
        Command::Registry(RegistryCmd::Gc(a)) => {
            let r = berth_registry::gc(a).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Command::Cp(a) | Command::Container(ContainerCmd::Cp(a)) => fsops::cp(&c().await?, a).await,
        Command::Diff { container } | Command::Container(ContainerCmd::Diff { container }) => fsops::diff(&c().await?, &container).await,
        Command::Export(a) | Command::Container(ContainerCmd::Export(a)) => fsops::export(&c().await?, a).await,
        Command::Commit(a) | Command::Container(ContainerCmd::Commit(a)) => fsops::commit(&c().await?, a).await,
        Command::Port { container, private_port } | Command::Container(ContainerCmd::Port { container, private_port }) => {
            networks::port(&c().await?, &container, private_port.as_deref()).await
        }
        Command::Events(a) | Command::System(SystemCmd::Events(a)) => containers::events(&c().await?, a).await,
        Command::Compose(a) => compose::run(host.as_deref(), a).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
