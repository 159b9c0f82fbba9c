//! `berth compose`: multi-container applications from compose files, as a plain client of
//! the Engine API (DESIGN.md: compose sits above the API, like the rest of the CLI).
//!
//! The model (find, merge, interpolate, validate, order) is `berth_compose`; the mapping of
//! a service to a container create body, names and labels is [`super::compose_spec`]. This
//! module holds the commands. Objects are named and labelled as Docker Compose v2 does
//! (`<project>-<service>-<n>`, `<project>_default`, `com.docker.compose.*`), and every
//! command finds its containers by those labels, so `ps`, `logs`, `stop`, `down` also see
//! containers made by another compose implementation of the same project.
//!
//! `up` converges: per service, concurrently as soon as its `depends_on` conditions hold,
//! it keeps containers whose `config-hash` label and image are current, recreates the
//! others, scales to the replica count and starts what is stopped.

use super::compose_spec::{self as spec, Overrides, LABEL_HASH, LABEL_NUMBER, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};
use super::Exit;
use crate::client::{Client, DaemonError};
use anyhow::{anyhow, bail, Context, Result};
use berth_compose::{LoadOptions, Project, Service};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file")]
    pub file: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Specify a profile to enable
    #[arg(long)]
    pub profile: Vec<String>,
    /// Specify an alternate environment file
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Specify an alternate working directory (default: the path of the first compose file)
    #[arg(long = "project-directory")]
    pub project_directory: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: ComposeCmd,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCmd {
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks
    Down(DownArgs),
    /// List containers
    Ps(PsArgs),
    /// View output from containers
    Logs(LogsArgs),
    /// Build or rebuild services
    Build(BuildArgs),
    /// Pull service images
    Pull(PullArgs),
    /// Push service images
    Push(PushArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Run a one-off command on a service
    Run(RunArgs),
    /// Start services
    Start(Services),
    /// Stop services
    Stop(StopArgs),
    /// Restart service containers
    Restart(StopArgs),
    /// Removes stopped service containers
    Rm(RmArgs),
    /// Force stop service containers
    Kill(KillArgs),
    /// Parse, resolve and render compose file in canonical format
    #[command(alias = "convert")]
    Config(ConfigArgs),
    /// Display the running processes
    Top(Services),
    /// List images used by the created containers
    Images(ImagesArgs),
    /// Print the public port for a port binding
    Port(PortArgs),
}

#[derive(Args, Debug, Default)]
pub struct UpArgs {
    /// Detached mode: Run containers in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    pub build: bool,
    /// Don't build an image, even if it's policy
    #[arg(long, conflicts_with = "build")]
    pub no_build: bool,
    /// Recreate containers even if their configuration and image haven't changed
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    pub no_recreate: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Don't start the services after creating them
    #[arg(long, conflicts_with_all = ["wait", "detach"])]
    pub no_start: bool,
    /// Wait for services to be running|healthy. Implies detached mode
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long)]
    pub wait_timeout: Option<u64>,
    /// Scale SERVICE to NUM instances. Overrides the `scale` setting in the Compose file if present
    #[arg(long, value_name = "SERVICE=NUM")]
    pub scale: Vec<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Pull image before running ("always"|"missing"|"never")
    #[arg(long)]
    pub pull: Option<String>,
    /// Use this timeout in seconds for container shutdown when containers are already running
    #[arg(short, long)]
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section of the Compose file and anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove images used by services. "local" remove only images that don't have a custom tag ("local"|"all")
    #[arg(long)]
    pub rmi: Option<String>,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Specify a shutdown timeout in seconds
    #[arg(short, long)]
    pub timeout: Option<i64>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short, long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Filter services by status (paused|restarting|removing|running|dead|created|exited)
    #[arg(long)]
    pub status: Vec<String>,
    /// Format the output ("table"|"json")
    #[arg(long, default_value = "table")]
    pub format: String,
    #[arg(value_name = "SERVICE")]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs for each container
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub until: Option<String>,
    pub services: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct BuildArgs {
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Don't print anything to STDOUT
    #[arg(short, long)]
    pub quiet: bool,
    /// Set build-time variables for services
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Pull without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull what it can and ignores images with pull failures
    #[arg(long)]
    pub ignore_pull_failures: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push what it can and ignores images with push failures
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Push without printing progress information
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: Run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Disable pseudo-TTY allocation. By default `compose exec` allocates a TTY
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Path to workdir directory for this command
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Run the command as this user
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give extended privileges to the process
    #[arg(long)]
    pub privileged: bool,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u64,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Add or override a label
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Override the entrypoint of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Run as specified username or uid
    #[arg(short, long)]
    pub user: Option<String>,
    /// Disable pseudo-TTY allocation (default: auto-detected)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Don't start linked services
    #[arg(long)]
    pub no_deps: bool,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Run command with all service's ports enabled and mapped to the host
    #[arg(long)]
    pub service_ports: bool,
    /// Use the service's network aliases in the network(s) the container connects to
    #[arg(long)]
    pub use_aliases: bool,
    /// Bind mount a volume
    #[arg(short, long)]
    pub volume: Vec<String>,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Services {
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Specify a shutdown timeout in seconds
    #[arg(short, long)]
    pub timeout: Option<i64>,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Don't ask to confirm removal
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers, if required, before removing
    #[arg(short, long)]
    pub stop: bool,
    /// Remove any anonymous volumes attached to containers
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// SIGNAL to send to the container
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Only validate the configuration, don't print anything
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the service names, one per line
    #[arg(long)]
    pub services: bool,
    /// Print the volume names, one per line
    #[arg(long)]
    pub volumes: bool,
    /// Print the profile names, one per line
    #[arg(long)]
    pub profiles: bool,
    /// Print the image names, one per line
    #[arg(long)]
    pub images: bool,
    /// Save to file (default to stdout)
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    pub service_names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only display IDs
    #[arg(short, long)]
    pub quiet: bool,
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Index of the container if service has multiple replicas
    #[arg(long, default_value_t = 1)]
    pub index: u64,
    pub service: String,
    pub private_port: u16,
}

/// Load the project named by the global options.
fn load_project(g: &ComposeArgs) -> Result<Project> {
    let opts = LoadOptions {
        files: g.file.clone(),
        project_directory: g.project_directory.clone(),
        project_name: g.project_name.clone(),
        env_files: g.env_file.clone(),
        profiles: g.profile.clone(),
        environ: std::env::vars().collect(),
        cwd: std::env::current_dir()?,
    };
    Ok(berth_compose::load(&opts)?)
}

/// For commands that work on what exists (`down`, `ps`, `logs`, ...): with `-p` and no
/// compose file, an empty project of that name.
fn load_or_name(g: &ComposeArgs) -> Result<Project> {
    match load_project(g) {
        Ok(p) => Ok(p),
        Err(e) => match (&g.project_name, e.downcast_ref::<berth_compose::ComposeError>()) {
            (Some(n), Some(berth_compose::ComposeError::NotFound(_))) if g.file.is_empty() => {
                berth_compose::load::validate_project_name(n)?;
                Ok(Project { name: n.clone(), working_dir: std::env::current_dir()?, ..Default::default() })
            }
            _ => Err(e),
        },
    }
}

pub async fn run(host: Option<&str>, g: ComposeArgs) -> Result<()> {
    if let ComposeCmd::Config(a) = &g.cmd {
        return config(&load_project(&g)?, a);
    }
    let mut p = match &g.cmd {
        ComposeCmd::Down(_) | ComposeCmd::Ps(_) | ComposeCmd::Logs(_) | ComposeCmd::Stop(_) | ComposeCmd::Kill(_) | ComposeCmd::Rm(_) | ComposeCmd::Top(_) | ComposeCmd::Images(_) | ComposeCmd::Restart(_) => {
            load_or_name(&g)?
        }
        _ => load_project(&g)?,
    };
    // services named on the command line are enabled even when their profile is not
    let named: Vec<String> = match &g.cmd {
        ComposeCmd::Up(a) => a.services.clone(),
        ComposeCmd::Run(a) => vec![a.service.clone()],
        ComposeCmd::Build(a) => a.services.clone(),
        ComposeCmd::Pull(a) => a.services.clone(),
        ComposeCmd::Push(a) => a.services.clone(),
        _ => vec![],
    };
    if !named.is_empty() {
        p.enable_services(&named)?;
    }
    let c = super::connect(host).await?;
    let p = Arc::new(p);
    match g.cmd {
        ComposeCmd::Up(a) => up(&c, &p, a).await,
        ComposeCmd::Down(a) => down(&c, &p, a).await,
        ComposeCmd::Ps(a) => ps(&c, &p, a).await,
        ComposeCmd::Logs(a) => logs(&c, &p, a).await,
        ComposeCmd::Build(a) => build(&c, &p, &a).await,
        ComposeCmd::Pull(a) => pull(&c, &p, a).await,
        ComposeCmd::Push(a) => push(&c, &p, a).await,
        ComposeCmd::Exec(a) => exec(&c, &p, a).await,
        ComposeCmd::Run(a) => run_oneoff(&c, &p, a).await,
        ComposeCmd::Start(a) => start(&c, &p, a).await,
        ComposeCmd::Stop(a) => stop(&c, &p, a, false).await,
        ComposeCmd::Restart(a) => stop(&c, &p, a, true).await,
        ComposeCmd::Rm(a) => rm(&c, &p, a).await,
        ComposeCmd::Kill(a) => kill(&c, &p, a).await,
        ComposeCmd::Config(_) => unreachable!("handled above"),
        ComposeCmd::Top(a) => top(&c, &p, a).await,
        ComposeCmd::Images(a) => images(&c, &p, a).await,
        ComposeCmd::Port(a) => port(&c, &p, a).await,
    }
}

// ---------------------------------------------------------------- helpers

fn progress(kind: &str, name: &str, status: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, " {kind} {name}  {status}");
}

fn enc_filters(f: &BTreeMap<&str, Vec<String>>) -> String {
    super::run::urlenc(&serde_json::to_string(f).unwrap_or_default())
}

fn label(v: &Value, k: &str) -> String {
    v["Labels"][k].as_str().unwrap_or("").to_string()
}

fn cname(v: &Value) -> String {
    v["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string()
}

fn number(v: &Value) -> u64 {
    label(v, LABEL_NUMBER).parse().unwrap_or(0)
}

/// Containers of the project (all states), optionally only the given services, one-off
/// containers included only when `oneoff`; sorted by service then number.
async fn project_containers(c: &Client, p: &Project, services: &[String], oneoff: bool) -> Result<Vec<Value>> {
    let mut f = BTreeMap::new();
    f.insert("label", vec![format!("{LABEL_PROJECT}={}", p.name)]);
    let list = c.get(&format!("/containers/json?all=1&filters={}", enc_filters(&f))).await?;
    let mut out: Vec<Value> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| services.is_empty() || services.contains(&label(v, LABEL_SERVICE)))
        .filter(|v| oneoff || label(v, LABEL_ONEOFF) != "True")
        .collect();
    out.sort_by(|a, b| label(a, LABEL_SERVICE).cmp(&label(b, LABEL_SERVICE)).then(number(a).cmp(&number(b))).then(cname(a).cmp(&cname(b))));
    Ok(out)
}

/// Validate the service names given on the command line.
fn check_services(p: &Project, names: &[String]) -> Result<()> {
    for n in names {
        if !p.services.contains_key(n) && !p.services.is_empty() {
            bail!("no such service: {n}");
        }
    }
    Ok(())
}

fn is_status(e: &anyhow::Error, code: u16) -> bool {
    e.downcast_ref::<DaemonError>().is_some_and(|d| d.status.as_u16() == code)
}

async fn inspect(c: &Client, id: &str) -> Result<Value> {
    c.get(&format!("/containers/{id}/json")).await
}

async fn image_id(c: &Client, image: &str) -> Result<Option<String>> {
    match c.get(&format!("/images/{}/json", image)).await {
        Ok(v) => Ok(v["Id"].as_str().map(String::from)),
        Err(e) if is_status(&e, 404) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn stop_ctr(c: &Client, id: &str, name: &str, timeout: Option<i64>) -> Result<()> {
    progress("Container", name, "Stopping");
    let q = timeout.map(|t| format!("?t={t}")).unwrap_or_default();
    match c.post(&format!("/containers/{id}/stop{q}"), None).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 304) || is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    progress("Container", name, "Stopped");
    Ok(())
}

async fn remove_ctr(c: &Client, id: &str, name: &str, volumes: bool) -> Result<()> {
    progress("Container", name, "Removing");
    match c.json(Method::DELETE, &format!("/containers/{id}?force=1&v={}", volumes as u8), None).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    progress("Container", name, "Removed");
    Ok(())
}

/// Run `f` on every item concurrently; the first error wins.
async fn all<T, F, Fut>(items: Vec<T>, f: F) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let res = futures::future::join_all(items.into_iter().map(f)).await;
    res.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

// ---------------------------------------------------------------- config

fn config(p: &Project, a: &ConfigArgs) -> Result<()> {
    let out = if a.quiet {
        return Ok(());
    } else if a.services {
        p.services.keys().map(|s| format!("{s}\n")).collect()
    } else if a.volumes {
        p.volumes.keys().map(|s| format!("{s}\n")).collect()
    } else if a.profiles {
        let set: BTreeSet<&String> = p.services.values().chain(p.disabled_services.values()).flat_map(|s| s.profiles.iter()).collect();
        set.into_iter().map(|s| format!("{s}\n")).collect()
    } else if a.images {
        p.services.iter().map(|(n, s)| format!("{}\n", spec::image_name(p, n, s))).collect()
    } else if !a.service_names.is_empty() {
        check_services(p, &a.service_names)?;
        let mut q = p.clone();
        q.services.retain(|k, _| a.service_names.contains(k));
        q.to_yaml()?
    } else {
        p.to_yaml()?
    };
    match &a.output {
        Some(f) => std::fs::write(f, out).with_context(|| format!("write {}", f.display()))?,
        None => print!("{out}"),
    }
    Ok(())
}

// ---------------------------------------------------------------- networks, volumes, images

async fn ensure_networks(c: &Client, p: &Project, services: &[String]) -> Result<()> {
    let used: BTreeSet<&String> = services.iter().filter_map(|s| p.services.get(s)).flat_map(|s| s.networks.keys()).collect();
    for key in used {
        let Some(r) = p.networks.get(key) else { continue };
        let name = spec::network_name(p, key);
        match c.get(&format!("/networks/{}", super::run::urlenc(&name))).await {
            Ok(v) => {
                if !r.external && label(&v, spec::LABEL_PROJECT) != p.name && !label(&v, spec::LABEL_PROJECT).is_empty() {
                    eprintln!("WARNING: a network with name {name} exists but was not created for project {:?}.", p.name);
                }
                continue;
            }
            Err(e) if is_status(&e, 404) => {
                if r.external {
                    bail!("network {name} declared as external, but could not be found");
                }
            }
            Err(e) => return Err(e),
        }
        progress("Network", &name, "Creating");
        let mut labels = r.labels.clone();
        labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
        labels.insert(spec::LABEL_NETWORK.into(), key.clone());
        labels.insert(spec::LABEL_VERSION.into(), spec::COMPOSE_VERSION.into());
        let mut body = json!({
            "Name": name,
            "CheckDuplicate": true,
            "Driver": r.driver.clone().unwrap_or_else(|| "bridge".into()),
            "Options": r.driver_opts,
            "Internal": r.internal,
            "Attachable": r.attachable,
            "Labels": labels,
        });
        if let Some(v6) = r.enable_ipv6 {
            body["EnableIPv6"] = json!(v6);
        }
        if let Some(ipam) = &r.ipam {
            body["IPAM"] = ipam_json(ipam)?;
        }
        match c.post("/networks/create", Some(body)).await {
            Ok(_) => progress("Network", &name, "Created"),
            // another `up` of the same project raced us
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(e.context(format!("create network {name}"))),
        }
    }
    Ok(())
}

/// Compose `ipam: {driver, config: [{subnet, ip_range, gateway}], options}` → Engine `IPAM`.
fn ipam_json(v: &serde_yaml_ng::Value) -> Result<Value> {
    let s = |v: Option<&serde_yaml_ng::Value>| v.and_then(|x| x.as_str()).map(String::from);
    let mut out = json!({"Driver": s(v.get("driver")).unwrap_or_else(|| "default".into()), "Config": []});
    if let Some(cfg) = v.get("config").and_then(|c| c.as_sequence()) {
        let mut list = Vec::new();
        for c in cfg {
            let mut m = serde_json::Map::new();
            for (k, jk) in [("subnet", "Subnet"), ("ip_range", "IPRange"), ("gateway", "Gateway")] {
                if let Some(x) = s(c.get(k)) {
                    m.insert(jk.into(), json!(x));
                }
            }
            if c.get("aux_addresses").is_some() {
                bail!("networks.ipam.config.aux_addresses is not supported by berth compose");
            }
            list.push(Value::Object(m));
        }
        out["Config"] = json!(list);
    }
    Ok(out)
}

async fn ensure_volumes(c: &Client, p: &Project, services: &[String]) -> Result<()> {
    let used: BTreeSet<&String> = services
        .iter()
        .filter_map(|s| p.services.get(s))
        .flat_map(|s| s.volumes.iter())
        .filter(|v| v.kind == "volume")
        .filter_map(|v| v.source.as_ref())
        .collect();
    for key in used {
        let Some(r) = p.volumes.get(key) else { continue };
        let name = spec::volume_name(p, key);
        match c.get(&format!("/volumes/{}", super::run::urlenc(&name))).await {
            Ok(_) => continue,
            Err(e) if is_status(&e, 404) => {
                if r.external {
                    bail!("external volume \"{name}\" not found");
                }
            }
            Err(e) => return Err(e),
        }
        progress("Volume", &name, "Creating");
        let mut labels = r.labels.clone();
        labels.insert(spec::LABEL_PROJECT.into(), p.name.clone());
        labels.insert(spec::LABEL_VOLUME.into(), key.clone());
        labels.insert(spec::LABEL_VERSION.into(), spec::COMPOSE_VERSION.into());
        let body = json!({"Name": name, "Driver": r.driver.clone().unwrap_or_else(|| "local".into()), "DriverOpts": r.driver_opts, "Labels": labels});
        c.post("/volumes/create", Some(body)).await.with_context(|| format!("create volume {name}"))?;
        progress("Volume", &name, "Created");
    }
    Ok(())
}

async fn build_service(c: &Client, p: &Project, name: &str, svc: &Service, a: &BuildArgs) -> Result<()> {
    let Some(b) = &svc.build else { return Ok(()) };
    if b.context.contains("://") || b.context.starts_with("git@") {
        bail!("service {name:?}: build from a remote context ({}) is not supported by berth compose", b.context);
    }
    let image = spec::image_name(p, name, svc);
    let file = b.dockerfile.as_deref().map(|f| if f.starts_with('/') { f.to_string() } else { format!("{}/{f}", b.context) });
    let mut build_args: Vec<String> = b.args.iter().map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => match p.variables.get(k) {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        },
    }).collect();
    build_args.extend(a.build_arg.iter().cloned());
    let mut labels: Vec<String> = b.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.push(format!("{}={}", spec::LABEL_PROJECT, p.name));
    labels.push(format!("{}={name}", spec::LABEL_SERVICE));
    let ba = super::build::BuildArgs {
        tags: vec![image.clone()],
        file,
        build_args,
        no_cache: a.no_cache,
        pull: a.pull,
        target: b.target.clone(),
        labels,
        quiet: true,
        iidfile: None,
        progress: "plain".into(),
        network: b.network.clone(),
        platform: svc.platform.clone(),
        rm: true,
        force_rm: false,
        context: b.context.clone(),
    };
    if !a.quiet {
        eprintln!(" Service {name}  Building");
    }
    // the build's own progress goes to stdout; keep stdout for compose's output
    super::build::build(c, ba).await.with_context(|| format!("failed to build service {name:?}"))?;
    if !a.quiet {
        eprintln!(" Service {name}  Built");
    }
    Ok(())
}

/// Build or pull what the services need before containers are created.
async fn ensure_images(c: &Client, p: &Project, services: &[String], force_build: bool, no_build: bool, pull: Option<&str>) -> Result<()> {
    for name in services {
        let svc = &p.services[name];
        let image = spec::image_name(p, name, svc);
        let policy = pull.or(svc.pull_policy.as_deref()).unwrap_or("missing");
        let have = image_id(c, &image).await?.is_some();
        if svc.build.is_some() && !no_build && (force_build || !have || policy == "build") {
            build_service(c, p, name, svc, &BuildArgs::default()).await?;
            continue;
        }
        let want_pull = match policy {
            "always" => true,
            "never" => false,
            "missing" | "if_not_present" | "build" | "daily" | "weekly" => !have,
            other => bail!("service {name:?}: invalid pull_policy {other:?}"),
        };
        if want_pull {
            if svc.build.is_some() && svc.image.is_none() {
                bail!("service {name:?}: image {image} not built (run with --build)");
            }
            progress("Image", &image, "Pulling");
            super::registry::pull_image(c, &image, true, svc.platform.as_deref(), false).await.with_context(|| format!("pull {image}"))?;
            progress("Image", &image, "Pulled");
        } else if !have {
            bail!("service {name:?}: image {image} is not present and pull_policy is {policy}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- up

/// Replica counts: `--scale` over the file.
fn replicas(p: &Project, scale: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = p.services.iter().map(|(n, s)| (n.clone(), s.replicas())).collect();
    for s in scale {
        let (n, v) = s.split_once('=').ok_or_else(|| anyhow!("invalid --scale {s:?}: expected SERVICE=NUM"))?;
        if !p.services.contains_key(n) {
            bail!("no such service: {n}");
        }
        out.insert(n.into(), v.parse().map_err(|_| anyhow!("invalid --scale {s:?}: expected SERVICE=NUM"))?);
    }
    for (n, s) in &p.services {
        if s.container_name.is_some() && out[n] > 1 {
            bail!("services.{n}: can't set container_name and scale to more than 1 replica: containers must have unique names");
        }
    }
    Ok(out)
}

/// Create and start (unless `no_start`) one container, attaching extra networks first.
async fn create_container(c: &Client, p: &Project, service: &str, n: u64, o: &Overrides, name: &str, start: bool) -> Result<String> {
    let svc = &p.services[service];
    let body = spec::create_body(p, service, svc, n, o)?;
    progress("Container", name, "Creating");
    let created = c
        .post(&format!("/containers/create?name={}", super::run::urlenc(name)), Some(body))
        .await
        .with_context(|| format!("create container {name}"))?;
    let id = created["Id"].as_str().unwrap_or("").to_string();
    if svc.network_mode.is_none() {
        for (k, aliases, ip) in spec::service_networks(svc).into_iter().skip(1) {
            let ep = spec::endpoint_config(service, &aliases, ip.as_deref(), None, o.aliases);
            c.post(&format!("/networks/{}/connect", super::run::urlenc(&spec::network_name(p, &k))), Some(json!({"Container": id, "EndpointConfig": ep})))
                .await
                .with_context(|| format!("connect {name} to network {k}"))?;
        }
    }
    progress("Container", name, "Created");
    if start {
        start_ctr(c, &id, name).await?;
    }
    Ok(id)
}

async fn start_ctr(c: &Client, id: &str, name: &str) -> Result<()> {
    progress("Container", name, "Starting");
    match c.post(&format!("/containers/{id}/start"), None).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 304) => {}
        Err(e) => return Err(e.context(format!("start container {name}"))),
    }
    progress("Container", name, "Started");
    Ok(())
}

#[derive(Clone, Copy)]
struct ConvergeOpts {
    force_recreate: bool,
    no_recreate: bool,
    no_start: bool,
    timeout: Option<i64>,
}

/// Bring one service to `want` up-to-date containers; returns their ids and whether any
/// container was created or recreated.
async fn converge(c: &Client, p: &Project, service: &str, want: u64, o: ConvergeOpts) -> Result<(Vec<String>, bool)> {
    let svc = &p.services[service];
    let hash = spec::config_hash(svc);
    let image = spec::image_name(p, service, svc);
    let img_id = image_id(c, &image).await?;
    let existing = project_containers(c, p, &[service.to_string()], false).await?;
    let mut by_num: BTreeMap<u64, Value> = BTreeMap::new();
    let mut extra = Vec::new();
    for ctr in existing {
        let n = number(&ctr);
        if n == 0 || n > want || by_num.contains_key(&n) {
            extra.push(ctr);
        } else {
            by_num.insert(n, ctr);
        }
    }
    // scale down: highest numbers first
    extra.sort_by_key(|v| std::cmp::Reverse(number(v)));
    for ctr in &extra {
        let id = ctr["Id"].as_str().unwrap_or("");
        stop_ctr(c, id, &cname(ctr), o.timeout).await?;
        remove_ctr(c, id, &cname(ctr), false).await?;
    }
    let ov = Overrides { service_ports: true, aliases: true, ..Default::default() };
    let tasks = (1..=want).map(|n| {
        let cur = by_num.remove(&n);
        let hash = hash.clone();
        let img_id = img_id.clone();
        let ov = ov.clone();
        async move {
            let name = spec::container_name(p, service, svc, n);
            match cur {
                Some(ctr) => {
                    let id = ctr["Id"].as_str().unwrap_or("").to_string();
                    let cur_name = cname(&ctr);
                    let stale = label(&ctr, LABEL_HASH) != hash || img_id.as_deref().is_some_and(|i| ctr["ImageID"].as_str().is_some_and(|c| c != i));
                    if o.no_recreate || (!stale && !o.force_recreate) {
                        if ctr["State"].as_str() != Some("running") && !o.no_start {
                            start_ctr(c, &id, &cur_name).await?;
                        } else {
                            progress("Container", &cur_name, "Running");
                        }
                        return Ok((id, false));
                    }
                    progress("Container", &cur_name, "Recreate");
                    // anonymous volumes (and image VOLUMEs) carry over to the new container
                    let mut ov = ov.clone();
                    let named: BTreeSet<&str> = svc.volumes.iter().filter(|v| v.kind != "volume" || v.source.is_some()).map(|v| v.target.as_str()).collect();
                    for m in inspect(c, &id).await?["Mounts"].as_array().into_iter().flatten() {
                        let (Some("volume"), Some(vname), Some(dest)) = (m["Type"].as_str(), m["Name"].as_str(), m["Destination"].as_str()) else { continue };
                        if !named.contains(dest) {
                            ov.volumes.push(format!("{vname}:{dest}"));
                        }
                    }
                    stop_ctr(c, &id, &cur_name, o.timeout).await?;
                    remove_ctr(c, &id, &cur_name, false).await?;
                    let id = create_container(c, p, service, n, &ov, &name, !o.no_start).await?;
                    progress("Container", &name, "Recreated");
                    Ok((id, true))
                }
                None => Ok((create_container(c, p, service, n, &ov, &name, !o.no_start).await?, true)),
            }
        }
    });
    let res: Vec<(String, bool)> = futures::future::join_all(tasks).await.into_iter().collect::<Result<_>>()?;
    let changed = !extra.is_empty() || res.iter().any(|(_, ch)| *ch);
    Ok((res.into_iter().map(|(id, _)| id).collect(), changed))
}

/// Wait until a dependency satisfies its `depends_on` condition.
async fn wait_condition(c: &Client, dep: &str, ids: &[String], condition: &str) -> Result<()> {
    for id in ids {
        loop {
            let v = inspect(c, id).await?;
            let name = v["Name"].as_str().unwrap_or("").trim_start_matches('/').to_string();
            let status = v["State"]["Status"].as_str().unwrap_or("");
            match condition {
                "service_healthy" => {
                    if v["Config"]["Healthcheck"].is_null() || v["State"]["Health"].is_null() {
                        bail!("dependency failed to start: container {name} has no healthcheck configured");
                    }
                    match v["State"]["Health"]["Status"].as_str().unwrap_or("") {
                        "healthy" => {
                            progress("Container", &name, "Healthy");
                            break;
                        }
                        "unhealthy" => bail!("dependency failed to start: container {name} is unhealthy"),
                        _ => {}
                    }
                    if status == "exited" || status == "dead" {
                        bail!("dependency failed to start: container {name} exited ({})", v["State"]["ExitCode"]);
                    }
                }
                "service_completed_successfully" => {
                    if status == "exited" || status == "dead" {
                        let code = v["State"]["ExitCode"].as_i64().unwrap_or(-1);
                        if code != 0 {
                            bail!("service {dep:?} didn't complete successfully: exit {code}");
                        }
                        progress("Container", &name, "Exited");
                        break;
                    }
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// What a service's task publishes to its dependents: its container ids and whether any
/// was (re)created, or the error that stopped it.
type Done = tokio::sync::watch::Receiver<Option<Result<(Vec<String>, bool), String>>>;

async fn up(c: &Client, p: &Arc<Project>, a: UpArgs) -> Result<()> {
    check_services(p, &a.services)?;
    if a.services.is_empty() && p.services.is_empty() {
        bail!("no service selected");
    }
    let targets: Vec<String> = if a.services.is_empty() {
        p.start_order()?
    } else if a.no_deps {
        p.start_order()?.into_iter().filter(|s| a.services.contains(s)).collect()
    } else {
        p.with_dependencies(&a.services)?
    };
    let counts = replicas(p, &a.scale)?;
    // orphans: containers of the project whose service is not defined any more
    let all_services: Vec<String> = p.services.keys().chain(p.disabled_services.keys()).cloned().collect();
    let orphans: Vec<Value> = project_containers(c, p, &[], false).await?.into_iter().filter(|v| !all_services.contains(&label(v, LABEL_SERVICE))).collect();
    if !orphans.is_empty() {
        if a.remove_orphans {
            all(orphans, |o| async move {
                let id = o["Id"].as_str().unwrap_or("").to_string();
                stop_ctr(c, &id, &cname(&o), a.timeout).await?;
                remove_ctr(c, &id, &cname(&o), false).await
            })
            .await?;
        } else {
            let names: Vec<String> = orphans.iter().map(cname).collect();
            eprintln!(
                "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                names.join(" ")
            );
        }
    }
    ensure_networks(c, p, &targets).await?;
    ensure_volumes(c, p, &targets).await?;
    ensure_images(c, p, &targets, a.build, a.no_build, a.pull.as_deref()).await?;

    let opts = ConvergeOpts { force_recreate: a.force_recreate, no_recreate: a.no_recreate, no_start: a.no_start, timeout: a.timeout };
    let mut senders = BTreeMap::new();
    let mut receivers: BTreeMap<String, Done> = BTreeMap::new();
    for s in &targets {
        let (tx, rx) = tokio::sync::watch::channel(None);
        senders.insert(s.clone(), tx);
        receivers.insert(s.clone(), rx);
    }
    let mut handles = Vec::new();
    for s in targets.clone() {
        let c = c.clone();
        let p = p.clone();
        let tx = senders.remove(&s).ok_or_else(|| anyhow!("internal: no channel for {s}"))?;
        let deps: Vec<(String, String, bool, Done)> = p.services[&s]
            .depends_on
            .iter()
            .filter_map(|(d, cond)| receivers.get(d).map(|r| (d.clone(), cond.condition.clone(), cond.restart, r.clone())))
            .collect();
        let want = counts[&s];
        let no_start = a.no_start;
        handles.push(tokio::spawn(async move {
            let res: Result<(Vec<String>, bool)> = async {
                let mut restart_for = None;
                for (dep, cond, restart, mut rx) in deps {
                    let (ids, changed) = match rx.wait_for(|v| v.is_some()).await.map_err(|_| anyhow!("dependency {dep} was abandoned"))?.clone() {
                        Some(Ok(v)) => v,
                        Some(Err(e)) => bail!("{e}"),
                        None => unreachable!("wait_for returned a set value"),
                    };
                    if restart && changed {
                        restart_for = Some(dep.clone());
                    }
                    if !no_start {
                        wait_condition(&c, &dep, &ids, &cond).await?;
                    }
                }
                let (ids, changed) = converge(&c, &p, &s, want, opts).await?;
                // `depends_on: {x: {restart: true}}`: a recreated dependency restarts us
                if let (Some(_), false, false) = (&restart_for, changed, no_start) {
                    all(ids.clone(), |id| {
                        let c = c.clone();
                        async move {
                            let name = inspect(&c, &id).await?["Name"].as_str().unwrap_or("").trim_start_matches('/').to_string();
                            progress("Container", &name, "Restarting");
                            c.post(&format!("/containers/{id}/restart"), None).await?;
                            progress("Container", &name, "Started");
                            Ok(())
                        }
                    })
                    .await?;
                }
                Ok((ids, changed))
            }
            .await;
            let _ = tx.send(Some(res.as_ref().map(|v| v.clone()).map_err(|e| format!("{e:#}"))));
            res.map(|(ids, _)| (s, ids))
        }));
    }
    let mut started: Vec<(String, Vec<String>)> = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.await? {
            Ok(v) => started.push(v),
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if a.no_start {
        return Ok(());
    }
    if a.wait {
        let ids: Vec<String> = started.iter().flat_map(|(_, ids)| ids.iter().cloned()).collect();
        let fut = wait_ready(c, &ids);
        match a.wait_timeout {
            Some(t) => tokio::time::timeout(Duration::from_secs(t), fut).await.map_err(|_| anyhow!("timeout waiting for the project to be running|healthy"))??,
            None => fut.await?,
        }
        return Ok(());
    }
    if a.detach {
        return Ok(());
    }
    attached(c, p, &targets).await
}

/// `--wait`: every container running (healthy when it has a healthcheck); containers of
/// services whose dependents wait for their completion may exit 0.
async fn wait_ready(c: &Client, ids: &[String]) -> Result<()> {
    all(ids.to_vec(), |id| async move {
        loop {
            let v = inspect(c, &id).await?;
            let name = v["Name"].as_str().unwrap_or("").trim_start_matches('/').to_string();
            let status = v["State"]["Status"].as_str().unwrap_or("");
            let health = v["State"]["Health"]["Status"].as_str();
            match (status, health) {
                ("running", None) | ("running", Some("healthy")) => {
                    progress("Container", &name, if health.is_some() { "Healthy" } else { "Running" });
                    return Ok(());
                }
                ("running", Some("unhealthy")) => bail!("container {name} is unhealthy"),
                ("exited", _) | ("dead", _) => {
                    let code = v["State"]["ExitCode"].as_i64().unwrap_or(-1);
                    if code == 0 {
                        progress("Container", &name, "Exited");
                        return Ok(());
                    }
                    bail!("container {name} exited ({code})");
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Foreground `up`: stream every container's logs with a prefix until all have exited;
/// Ctrl+C stops the project's containers.
async fn attached(c: &Client, p: &Project, services: &[String]) -> Result<()> {
    let ctrs = project_containers(c, p, services, false).await?;
    let width = ctrs.iter().map(|v| cname(v).len()).max().unwrap_or(0);
    let mut tasks = Vec::new();
    for ctr in &ctrs {
        let c = c.clone();
        let id = ctr["Id"].as_str().unwrap_or("").to_string();
        let name = cname(ctr);
        tasks.push(tokio::spawn(async move {
            let prefix = format!("{name:width$} | ");
            let _ = stream_logs(&c, &id, &prefix, true, "all", false, None, None).await;
            let code = c.post(&format!("/containers/{id}/wait"), None).await.ok().and_then(|v| v["StatusCode"].as_i64()).unwrap_or(-1);
            println!("{name} exited with code {code}");
        }));
    }
    let mut waiting = Box::pin(futures::future::join_all(tasks));
    tokio::select! {
        _ = &mut waiting => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
            let ids: Vec<(String, String)> = ctrs.iter().map(|v| (v["Id"].as_str().unwrap_or("").to_string(), cname(v))).collect();
            // the log streams keep running, so what containers print while stopping shows
            let stopping = async {
                all(ids, |(id, name)| async move { stop_ctr(c, &id, &name, None).await }).await?;
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut waiting).await;
                Ok(())
            };
            tokio::select! {
                r = stopping => r,
                _ = tokio::signal::ctrl_c() => Err(Exit(130).into()),
            }
        }
    }
}

// ---------------------------------------------------------------- logs

/// Stream one container's logs, each line with `prefix`.
#[allow(clippy::too_many_arguments)]
async fn stream_logs(c: &Client, id: &str, prefix: &str, follow: bool, tail: &str, timestamps: bool, since: Option<&str>, until: Option<&str>) -> Result<()> {
    let info = inspect(c, id).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!("?stdout=1&stderr=1&follow={}&timestamps={}&tail={}", follow as u8, timestamps as u8, super::run::urlenc(tail));
    for (k, v) in [("since", since), ("until", until)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", super::run::urlenc(v)));
        }
    }
    let resp = c.request(Method::GET, &format!("/containers/{id}/logs{q}"), crate::client::empty(), None).await?;
    let mut raw: Vec<u8> = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let emit = |line: &mut Vec<u8>| {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(prefix.as_bytes());
        let _ = o.write_all(line);
        let _ = o.flush();
        line.clear();
    };
    crate::client::for_each_chunk(resp, |chunk| {
        let payloads: Vec<Vec<u8>> = if tty {
            vec![chunk.to_vec()]
        } else {
            raw.extend_from_slice(chunk);
            let mut out = Vec::new();
            while raw.len() >= 8 {
                let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
                if raw.len() < 8 + len {
                    break;
                }
                out.push(raw[8..8 + len].to_vec());
                raw.drain(..8 + len);
            }
            out
        };
        for pl in payloads {
            for b in pl {
                line.push(b);
                if b == b'\n' {
                    emit(&mut line);
                }
            }
        }
        Ok(())
    })
    .await?;
    if !line.is_empty() {
        line.push(b'\n');
        emit(&mut line);
    }
    Ok(())
}

async fn logs(c: &Client, p: &Project, a: LogsArgs) -> Result<()> {
    check_services(p, &a.services)?;
    let ctrs = project_containers(c, p, &a.services, false).await?;
    let width = ctrs.iter().map(|v| cname(v).len()).max().unwrap_or(0);
    let a = &a;
    all(ctrs, |ctr| async move {
        let prefix = if a.no_log_prefix { String::new() } else { format!("{:width$} | ", cname(&ctr)) };
        stream_logs(c, ctr["Id"].as_str().unwrap_or(""), &prefix, a.follow, &a.tail, a.timestamps, a.since.as_deref(), a.until.as_deref()).await
    })
    .await
}

// ---------------------------------------------------------------- down, ps, start/stop/...

/// Services in reverse dependency order, for stopping (dependents before dependencies).
fn stop_order(p: &Project) -> Vec<String> {
    let mut o = p.start_order().unwrap_or_else(|_| p.services.keys().cloned().collect());
    o.reverse();
    o
}

/// Stop containers service by service in reverse dependency order (containers of unknown
/// services first), each service's containers concurrently.
async fn stop_in_order(c: &Client, p: &Project, ctrs: &[Value], timeout: Option<i64>) -> Result<()> {
    let order = stop_order(p);
    let mut groups: Vec<Vec<&Value>> = vec![ctrs.iter().filter(|v| !order.contains(&label(v, LABEL_SERVICE))).collect()];
    for s in &order {
        groups.push(ctrs.iter().filter(|v| &label(v, LABEL_SERVICE) == s).collect());
    }
    for g in groups {
        all(g.into_iter().filter(|v| v["State"].as_str() == Some("running") || v["State"].as_str() == Some("restarting") || v["State"].as_str() == Some("paused")).collect(), |v| async move {
            stop_ctr(c, v["Id"].as_str().unwrap_or(""), &cname(v), timeout).await
        })
        .await?;
    }
    Ok(())
}

async fn down(c: &Client, p: &Project, a: DownArgs) -> Result<()> {
    let all_services: Vec<String> = p.services.keys().chain(p.disabled_services.keys()).cloned().collect();
    let ctrs = project_containers(c, p, &[], true).await?;
    let (mine, orphans): (Vec<Value>, Vec<Value>) = ctrs.into_iter().partition(|v| p.services.is_empty() || all_services.contains(&label(v, LABEL_SERVICE)));
    let mut remove = mine;
    if a.remove_orphans {
        remove.extend(orphans);
    } else if !orphans.is_empty() {
        let names: Vec<String> = orphans.iter().map(cname).collect();
        eprintln!(
            "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            names.join(" ")
        );
    }
    stop_in_order(c, p, &remove, a.timeout).await?;
    let vols = a.volumes;
    all(remove.clone(), |v| async move { remove_ctr(c, v["Id"].as_str().unwrap_or(""), &cname(&v), vols).await }).await?;
    // networks: the project's (by label), and those of the file that are not external
    let mut f = BTreeMap::new();
    f.insert("label", vec![format!("{LABEL_PROJECT}={}", p.name)]);
    let mut nets: BTreeSet<String> = c
        .get(&format!("/networks?filters={}", enc_filters(&f)))
        .await?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Name"].as_str().map(String::from))
        .collect();
    for (k, r) in &p.networks {
        if !r.external {
            nets.insert(spec::network_name(p, k));
        }
    }
    for n in nets {
        match c.get(&format!("/networks/{}", super::run::urlenc(&n))).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => continue,
            Err(e) => return Err(e),
        }
        progress("Network", &n, "Removing");
        match c.json(Method::DELETE, &format!("/networks/{}", super::run::urlenc(&n)), None).await {
            Ok(_) => progress("Network", &n, "Removed"),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => eprintln!("Network {n}  Resource is still in use: {e}"),
        }
    }
    if a.volumes {
        let mut vols: BTreeSet<String> = c
            .get(&format!("/volumes?filters={}", enc_filters(&f)))
            .await?["Volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["Name"].as_str().map(String::from))
            .collect();
        for (k, r) in &p.volumes {
            if !r.external {
                vols.insert(spec::volume_name(p, k));
            }
        }
        for v in vols {
            match c.json(Method::DELETE, &format!("/volumes/{}", super::run::urlenc(&v)), None).await {
                Ok(_) => {
                    progress("Volume", &v, "Removed");
                }
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.context(format!("remove volume {v}"))),
            }
        }
    }
    if let Some(mode) = &a.rmi {
        if mode != "all" && mode != "local" {
            bail!("invalid --rmi {mode:?}: expected \"local\" or \"all\"");
        }
        let mut imgs = BTreeSet::new();
        for (n, s) in &p.services {
            if mode == "all" || s.image.is_none() {
                imgs.insert(spec::image_name(p, n, s));
            }
        }
        for v in &remove {
            if mode == "all" {
                if let Some(i) = v["Image"].as_str() {
                    imgs.insert(i.to_string());
                }
            }
        }
        for i in imgs {
            match c.json(Method::DELETE, &format!("/images/{}", i), None).await {
                Ok(_) => progress("Image", &i, "Removed"),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => eprintln!("Image {i}  {e}"),
            }
        }
    }
    Ok(())
}

async fn ps(c: &Client, p: &Project, a: PsArgs) -> Result<()> {
    check_services(p, &a.names)?;
    if a.services {
        let ctrs = project_containers(c, p, &a.names, false).await?;
        let set: BTreeSet<String> = ctrs.iter().filter(|v| a.all || v["State"].as_str() == Some("running")).map(|v| label(v, LABEL_SERVICE)).collect();
        for s in set {
            println!("{s}");
        }
        return Ok(());
    }
    let ctrs: Vec<Value> = project_containers(c, p, &a.names, a.all)
        .await?
        .into_iter()
        .filter(|v| a.all || matches!(v["State"].as_str(), Some("running" | "restarting" | "paused")))
        .filter(|v| a.status.is_empty() || a.status.iter().any(|s| Some(s.as_str()) == v["State"].as_str()))
        .collect();
    if a.quiet {
        for v in &ctrs {
            println!("{}", v["Id"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    let rows_json: Vec<Value> = ctrs
        .iter()
        .map(|v| {
            json!({
                "ID": v["Id"], "Name": cname(v), "Image": v["Image"], "Command": v["Command"],
                "Project": p.name, "Service": label(v, LABEL_SERVICE), "Created": v["Created"],
                "State": v["State"], "Status": v["Status"], "Health": health_of(v),
                "ExitCode": 0, "Publishers": v["Ports"], "Ports": super::containers::ports_text(&v["Ports"]),
                "Labels": v["Labels"],
            })
        })
        .collect();
    match a.format.as_str() {
        "json" => {
            for r in &rows_json {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        "table" => {
            let mut rows = vec![vec!["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"].into_iter().map(String::from).collect::<Vec<_>>()];
            for (v, r) in ctrs.iter().zip(&rows_json) {
                rows.push(vec![
                    cname(v),
                    v["Image"].as_str().unwrap_or("").to_string(),
                    format!("\"{}\"", super::format::ellipsis(v["Command"].as_str().unwrap_or(""), 20)),
                    label(v, LABEL_SERVICE),
                    super::format::ago_unix(v["Created"].as_i64().unwrap_or(0)),
                    v["Status"].as_str().unwrap_or("").to_string(),
                    r["Ports"].as_str().unwrap_or("").to_string(),
                ]);
            }
            print!("{}", super::format::table(&rows));
        }
        other => {
            let t = super::format::Template::parse(other)?;
            print!("{}", t.render_all(&rows_json)?);
        }
    }
    Ok(())
}

fn health_of(v: &Value) -> String {
    let s = v["Status"].as_str().unwrap_or("");
    for h in ["healthy", "unhealthy", "starting"] {
        if s.contains(&format!("({h})")) || s.contains(&format!("(health: {h})")) {
            return h.to_string();
        }
    }
    String::new()
}

async fn start(c: &Client, p: &Project, a: Services) -> Result<()> {
    check_services(p, &a.services)?;
    let ctrs = project_containers(c, p, &a.services, false).await?;
    if ctrs.is_empty() {
        bail!("service {:?} has no container to start", a.services.first().cloned().unwrap_or_else(|| p.name.clone()));
    }
    for s in p.start_order()? {
        let group: Vec<&Value> = ctrs.iter().filter(|v| label(v, LABEL_SERVICE) == s && v["State"].as_str() != Some("running")).collect();
        all(group, |v| async move { start_ctr(c, v["Id"].as_str().unwrap_or(""), &cname(v)).await }).await?;
    }
    Ok(())
}

async fn stop(c: &Client, p: &Project, a: StopArgs, restart: bool) -> Result<()> {
    check_services(p, &a.services)?;
    let ctrs = project_containers(c, p, &a.services, false).await?;
    if !restart {
        return stop_in_order(c, p, &ctrs, a.timeout).await;
    }
    let t = a.timeout;
    for s in p.start_order().unwrap_or_default().into_iter().chain(std::iter::once(String::new())) {
        let group: Vec<&Value> = ctrs.iter().filter(|v| label(v, LABEL_SERVICE) == s || (s.is_empty() && !p.services.contains_key(&label(v, LABEL_SERVICE)))).collect();
        all(group, |v| async move {
            let name = cname(v);
            progress("Container", &name, "Restarting");
            let q = t.map(|t| format!("?t={t}")).unwrap_or_default();
            c.post(&format!("/containers/{}/restart{q}", v["Id"].as_str().unwrap_or("")), None).await?;
            progress("Container", &name, "Started");
            Ok(())
        })
        .await?;
    }
    Ok(())
}

async fn rm(c: &Client, p: &Project, a: RmArgs) -> Result<()> {
    check_services(p, &a.services)?;
    let ctrs = project_containers(c, p, &a.services, false).await?;
    if a.stop {
        stop_in_order(c, p, &ctrs, None).await?;
    }
    let mut stopped = Vec::new();
    for v in ctrs {
        let st = inspect(c, v["Id"].as_str().unwrap_or("")).await?;
        if !st["State"]["Running"].as_bool().unwrap_or(false) {
            stopped.push(v);
        }
    }
    if stopped.is_empty() {
        eprintln!("No stopped containers");
        return Ok(());
    }
    if !a.force {
        let names: Vec<String> = stopped.iter().map(cname).collect();
        if !super::containers::confirm(&format!("Going to remove {}\n? Are you sure you want to remove these containers? [yN] ", names.join(", ")))? {
            return Ok(());
        }
    }
    let vols = a.volumes;
    all(stopped, |v| async move { remove_ctr(c, v["Id"].as_str().unwrap_or(""), &cname(&v), vols).await }).await
}

async fn kill(c: &Client, p: &Project, a: KillArgs) -> Result<()> {
    check_services(p, &a.services)?;
    let all_services: Vec<String> = p.services.keys().cloned().collect();
    let ctrs: Vec<Value> = project_containers(c, p, &a.services, false).await?.into_iter().filter(|v| v["State"].as_str() == Some("running")).collect();
    if a.remove_orphans {
        for o in project_containers(c, p, &[], false).await?.into_iter().filter(|v| !all_services.contains(&label(v, LABEL_SERVICE))) {
            remove_ctr(c, o["Id"].as_str().unwrap_or(""), &cname(&o), false).await?;
        }
    }
    if ctrs.is_empty() {
        eprintln!("no container to kill");
        return Ok(());
    }
    let sig = &a.signal;
    all(ctrs, |v| async move {
        let name = cname(&v);
        progress("Container", &name, "Killing");
        let id = v["Id"].as_str().unwrap_or("");
        c.post(&format!("/containers/{id}/kill?signal={}", super::run::urlenc(sig)), None).await?;
        // SIGKILL cannot be caught: report "Killed" once the container has exited
        if matches!(sig.trim_start_matches("SIG"), "KILL" | "9") {
            let _ = c.post(&format!("/containers/{id}/wait?condition=not-running"), None).await;
        }
        progress("Container", &name, "Killed");
        Ok(())
    })
    .await
}

async fn top(c: &Client, p: &Project, a: Services) -> Result<()> {
    check_services(p, &a.services)?;
    for v in project_containers(c, p, &a.services, false).await?.into_iter().filter(|v| v["State"].as_str() == Some("running")) {
        println!("{}", cname(&v));
        let t = c.get(&format!("/containers/{}/top", v["Id"].as_str().unwrap_or(""))).await?;
        let mut rows = vec![t["Titles"].as_array().into_iter().flatten().map(|x| x.as_str().unwrap_or("").to_string()).collect::<Vec<_>>()];
        for pr in t["Processes"].as_array().into_iter().flatten() {
            rows.push(pr.as_array().into_iter().flatten().map(|x| x.as_str().unwrap_or("").to_string()).collect());
        }
        println!("{}", super::format::table(&rows));
    }
    Ok(())
}

async fn images(c: &Client, p: &Project, a: ImagesArgs) -> Result<()> {
    check_services(p, &a.services)?;
    let ctrs = project_containers(c, p, &a.services, false).await?;
    let mut rows = vec![vec!["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"].into_iter().map(String::from).collect::<Vec<_>>()];
    let mut seen = BTreeSet::new();
    for v in &ctrs {
        let img = c.get(&format!("/images/{}/json", v["ImageID"].as_str().unwrap_or(""))).await?;
        let id = img["Id"].as_str().unwrap_or("").trim_start_matches("sha256:").to_string();
        if a.quiet {
            if seen.insert(id.clone()) {
                println!("{id}");
            }
            continue;
        }
        let reference = v["Image"].as_str().unwrap_or("");
        let (repo, tag) = match reference.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (reference.to_string(), "latest".to_string()),
        };
        rows.push(vec![cname(v), repo, tag, id.chars().take(12).collect(), super::format::human_size(img["Size"].as_f64().unwrap_or(0.0))]);
    }
    if !a.quiet {
        print!("{}", super::format::table(&rows));
    }
    Ok(())
}

async fn port(c: &Client, p: &Project, a: PortArgs) -> Result<()> {
    check_services(p, std::slice::from_ref(&a.service))?;
    let ctrs = project_containers(c, p, std::slice::from_ref(&a.service), false).await?;
    let ctr = ctrs.iter().find(|v| number(v) == a.index).ok_or_else(|| anyhow!("service \"{}\" is not running container #{}", a.service, a.index))?;
    let v = inspect(c, ctr["Id"].as_str().unwrap_or("")).await?;
    let key = format!("{}/{}", a.private_port, a.protocol);
    match v["NetworkSettings"]["Ports"][&key].as_array().and_then(|b| b.first()) {
        Some(b) => {
            let ip = b["HostIp"].as_str().unwrap_or("");
            println!("{}:{}", if ip.is_empty() { "0.0.0.0" } else { ip }, b["HostPort"].as_str().unwrap_or(""));
            Ok(())
        }
        None => bail!("no port {key} for container {}", cname(ctr)),
    }
}

// ---------------------------------------------------------------- build, pull, push

fn select(p: &Project, names: &[String]) -> Result<Vec<String>> {
    check_services(p, names)?;
    Ok(if names.is_empty() { p.services.keys().cloned().collect() } else { names.to_vec() })
}

async fn build(c: &Client, p: &Project, a: &BuildArgs) -> Result<()> {
    for name in select(p, &a.services)? {
        build_service(c, p, &name, &p.services[&name], a).await?;
    }
    Ok(())
}

async fn pull(c: &Client, p: &Project, a: PullArgs) -> Result<()> {
    for name in select(p, &a.services)? {
        let svc = &p.services[&name];
        let Some(image) = &svc.image else { continue };
        if svc.pull_policy.as_deref() == Some("build") || svc.pull_policy.as_deref() == Some("never") {
            continue;
        }
        if !a.quiet {
            progress("Image", image, "Pulling");
        }
        match super::registry::pull_image(c, image, true, svc.platform.as_deref(), false).await {
            Ok(()) => {
                if !a.quiet {
                    progress("Image", image, "Pulled");
                }
            }
            // an image that is also built may legitimately not exist remotely yet
            Err(e) if a.ignore_pull_failures || svc.build.is_some() => eprintln!(" Image {image}  Warning: {e:#}"),
            Err(e) => return Err(e.context(format!("pull {image}"))),
        }
    }
    Ok(())
}

async fn push(c: &Client, p: &Project, a: PushArgs) -> Result<()> {
    for name in select(p, &a.services)? {
        let svc = &p.services[&name];
        let (Some(_), Some(image)) = (&svc.build, &svc.image) else { continue };
        if !a.quiet {
            progress("Image", image, "Pushing");
        }
        let pa = super::registry::PushArgs { all_tags: false, quiet: true, platform: None, image: image.clone() };
        match super::registry::push(c, pa).await {
            Ok(()) => {
                if !a.quiet {
                    progress("Image", image, "Pushed");
                }
            }
            Err(e) if a.ignore_push_failures => eprintln!(" Image {image}  Warning: {e:#}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- exec, run

async fn exec(c: &Client, p: &Project, a: ExecArgs) -> Result<()> {
    check_services(p, std::slice::from_ref(&a.service))?;
    let ctrs = project_containers(c, p, std::slice::from_ref(&a.service), false).await?;
    let ctr = ctrs
        .iter()
        .find(|v| number(v) == a.index && v["State"].as_str() == Some("running"))
        .ok_or_else(|| anyhow!("service \"{}\" is not running container #{}", a.service, a.index))?;
    let tty = !a.no_tty && std::io::stdin().is_terminal();
    let ea = super::containers::ExecArgs {
        detach: a.detach,
        interactive: true,
        tty,
        env: a.env,
        env_file: vec![],
        workdir: a.workdir,
        user: a.user,
        privileged: a.privileged,
        container: ctr["Id"].as_str().unwrap_or("").to_string(),
        command: a.command,
    };
    super::containers::exec(c, ea).await
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    hex::encode(b)
}

async fn run_oneoff(c: &Client, p: &Arc<Project>, a: RunArgs) -> Result<()> {
    check_services(p, std::slice::from_ref(&a.service))?;
    let svc = &p.services[&a.service];
    let deps: Vec<String> = if a.no_deps {
        vec![]
    } else {
        p.with_dependencies(std::slice::from_ref(&a.service))?.into_iter().filter(|s| s != &a.service).collect()
    };
    if !deps.is_empty() {
        let ua = UpArgs { detach: true, no_deps: true, services: deps.clone(), ..Default::default() };
        // dependencies come up as `up -d` would bring them, with their conditions honoured
        let mut dp = (**p).clone();
        dp.services.retain(|k, _| deps.contains(k) || k == &a.service);
        for s in dp.services.values_mut() {
            s.depends_on.retain(|d, _| deps.contains(d));
        }
        Box::pin(up(c, &Arc::new(dp), ua)).await?;
        for (d, cond) in &svc.depends_on {
            if deps.contains(d) {
                let ids: Vec<String> = project_containers(c, p, std::slice::from_ref(d), false).await?.iter().map(|v| v["Id"].as_str().unwrap_or("").to_string()).collect();
                wait_condition(c, d, &ids, &cond.condition).await?;
            }
        }
    }
    let targets = vec![a.service.clone()];
    ensure_networks(c, p, &targets).await?;
    ensure_volumes(c, p, &targets).await?;
    ensure_images(c, p, &targets, false, false, None).await?;
    let tty = !a.no_tty && std::io::stdin().is_terminal() && !a.detach;
    let ov = Overrides {
        command: if a.command.is_empty() { None } else { Some(a.command.clone()) },
        entrypoint: match &a.entrypoint {
            Some(e) => Some(berth_compose::model::split_shell_words(e).map_err(|e| anyhow!("--entrypoint: {e}"))?),
            None => None,
        },
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        publish: a.publish.clone(),
        service_ports: a.service_ports,
        volumes: a.volume.clone(),
        tty,
        interactive: !a.detach,
        oneoff: true,
        aliases: a.use_aliases,
        labels: a.label.clone(),
    };
    let name = a.name.clone().unwrap_or_else(|| format!("{}-{}-run-{}", p.name, a.service, random_hex(6)));
    let mut body = spec::create_body(p, &a.service, svc, 1, &ov)?;
    if a.rm {
        body["HostConfig"]["AutoRemove"] = json!(false);
    }
    let created = c.post(&format!("/containers/create?name={}", super::run::urlenc(&name)), Some(body)).await?;
    let id = created["Id"].as_str().unwrap_or("").to_string();
    if svc.network_mode.is_none() {
        for (k, aliases, ip) in spec::service_networks(svc).into_iter().skip(1) {
            let ep = spec::endpoint_config(&a.service, &aliases, ip.as_deref(), None, a.use_aliases);
            c.post(&format!("/networks/{}/connect", super::run::urlenc(&spec::network_name(p, &k))), Some(json!({"Container": id, "EndpointConfig": ep}))).await?;
        }
    }
    if a.detach {
        c.post(&format!("/containers/{id}/start"), None).await?;
        println!("{name}");
        return Ok(());
    }
    let conn = c.hijack(&format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin=1"), None).await?;
    let wc = c.clone();
    let wid = id.clone();
    let waiter = tokio::spawn(async move { wc.post(&format!("/containers/{wid}/wait?condition=next-exit"), None).await });
    tokio::task::yield_now().await;
    if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
        if a.rm {
            let _ = c.json(Method::DELETE, &format!("/containers/{id}?force=1"), None).await;
        }
        return Err(e);
    }
    let raw = if tty { super::containers::RawTerminal::enter().ok() } else { None };
    if tty {
        super::containers::spawn_resize_watcher(c.clone(), format!("/containers/{id}/resize"));
    }
    super::containers::pump(conn, true, tty).await?;
    drop(raw);
    let code = match waiter.await? {
        Ok(v) => v["StatusCode"].as_i64().unwrap_or(0),
        Err(e) if is_status(&e, 404) => 0,
        Err(e) => return Err(e),
    };
    if a.rm {
        let _ = c.json(Method::DELETE, &format!("/containers/{id}?force=1&v=1"), None).await;
    }
    if code != 0 {
        return Err(Exit(code as i32).into());
    }
    Ok(())
}
