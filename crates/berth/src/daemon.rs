//! `berth daemon`: open the engine, reconnect to running containers, serve the API.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone, Default)]
pub struct DaemonArgs {
    /// Root directory of persistent berth state
    #[arg(long = "data-root")]
    pub data_root: Option<PathBuf>,
    /// Root directory for execution state files
    #[arg(long = "exec-root")]
    pub exec_root: Option<PathBuf>,
    /// Path to use for daemon PID file
    #[arg(short = 'p', long)]
    pub pidfile: Option<PathBuf>,
    /// Daemon configuration file (dockerd's daemon.json keys)
    #[arg(long = "config-file")]
    pub config_file: Option<PathBuf>,
    /// Set the logging level ("debug", "info", "warn", "error")
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Default OCI runtime for containers ("berth" = built in, or "runc")
    #[arg(long = "default-runtime")]
    pub default_runtime: Option<String>,
    /// Parent cgroup for all containers
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Device name of the default bridge network
    #[arg(short = 'b', long)]
    pub bridge: Option<String>,
    /// Name of berth's nftables table
    #[arg(long = "nft-table")]
    pub nft_table: Option<String>,
    /// Default address pool for networks (base=172.30.0.0/16,size=24)
    #[arg(long = "default-address-pool")]
    pub default_address_pool: Vec<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case", default)]
struct DaemonJson {
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    hosts: Option<Vec<String>>,
    pidfile: Option<PathBuf>,
    log_level: Option<String>,
    default_runtime: Option<String>,
    cgroup_parent: Option<String>,
    runtimes: Option<std::collections::HashMap<String, serde_json::Value>>,
    log_opts: Option<std::collections::HashMap<String, String>>,
    bridge: Option<String>,
    default_address_pools: Option<Vec<serde_json::Value>>,
    #[serde(flatten)]
    _other: std::collections::HashMap<String, serde_json::Value>,
}

pub fn default_log_path() -> PathBuf {
    PathBuf::from("/var/lib/berth/daemon.log")
}

/// Start a daemon in the background on the default paths (first use of the CLI).
pub fn spawn_background(sock: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all("/var/lib/berth")?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(default_log_path())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon").arg("-H").arg(format!("unix://{}", sock.display()));
    cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // SAFETY: setsid is async-signal-safe and called in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    cmd.spawn().context("starting berth daemon")?;
    Ok(())
}

/// Write and lock the pid file: a second daemon on the same paths fails here, before it can
/// touch the first one's socket or database.
fn write_pidfile(p: &Path) -> Result<std::fs::File> {
    use std::io::Write;
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(p)?;
    if nix::fcntl::Flock::lock(f.try_clone()?, nix::fcntl::FlockArg::LockExclusiveNonblock).map(std::mem::forget).is_err() {
        let other = std::fs::read_to_string(p).unwrap_or_default();
        bail!("pid file found, ensure berth is not running or delete {} (held by pid {})", p.display(), other.trim());
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

pub fn run(host: Option<String>, a: DaemonArgs) -> Result<()> {
    let cfg: DaemonJson = match &a.config_file {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("invalid daemon configuration file {}", p.display()))?,
        None => match std::fs::read_to_string("/etc/berth/daemon.json") {
            Ok(s) => serde_json::from_str(&s).context("invalid /etc/berth/daemon.json")?,
            Err(_) => DaemonJson::default(),
        },
    };
    let level = a.log_level.clone().or(cfg.log_level.clone()).unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let data_root = a.data_root.clone().or(cfg.data_root.clone()).unwrap_or_else(|| "/var/lib/berth".into());
    let exec_root = a.exec_root.clone().or(cfg.exec_root.clone()).unwrap_or_else(|| "/run/berth".into());
    let sock = host
        .or_else(|| cfg.hosts.as_ref().and_then(|h| h.first().cloned()))
        .map(|h| PathBuf::from(h.strip_prefix("unix://").unwrap_or(&h)))
        .unwrap_or_else(|| exec_root.join("berth.sock"));
    let pidfile = a.pidfile.clone().or(cfg.pidfile.clone()).unwrap_or_else(|| exec_root.join("berth.pid"));
    // Shims run from the small `berth-shim` next to this executable when it is there.
    let exe = std::env::current_exe()?;
    let shim = exe.with_file_name("berth-shim");
    let exe = if shim.is_file() { shim } else { exe };
    tracing::debug!(shim = %exe.display(), "shim executable");
    let mut ec = berth_engine::EngineConfig::new(data_root, exec_root, exe);
    if let Some(r) = a.default_runtime.clone().or(cfg.default_runtime.clone()) {
        ec.default_runtime = r;
    }
    if let Some(c) = a.cgroup_parent.clone().or(cfg.cgroup_parent.clone()) {
        ec.cgroup_parent = c;
    }
    if let Some(b) = a.bridge.clone().or(cfg.bridge.clone()) {
        if b == "none" {
            bail!("--bridge none is not supported by berth");
        }
        ec.bridge_name = b;
    }
    if let Some(t) = a.nft_table.clone() {
        ec.nft_table = t;
    }
    let mut pools: Vec<(String, Option<u8>)> = Vec::new();
    for p in &a.default_address_pool {
        let mut base = None;
        let mut size = None;
        for kv in p.split(',') {
            match kv.split_once('=') {
                Some(("base", v)) => base = Some(v.to_string()),
                Some(("size", v)) => size = Some(v.parse::<u8>().context("invalid pool size")?),
                _ => bail!("invalid --default-address-pool {p:?}: expected base=CIDR,size=N"),
            }
        }
        pools.push((base.context("--default-address-pool needs base=")?, size));
    }
    for p in cfg.default_address_pools.clone().unwrap_or_default() {
        if let Some(b) = p["base"].as_str() {
            pools.push((b.to_string(), p["size"].as_u64().map(|s| s as u8)));
        }
    }
    if let Some((_, Some(sz))) = pools.first() {
        ec.pool_size = *sz;
    }
    ec.default_pools = pools.into_iter().map(|(b, _)| b).collect();
    for (name, v) in cfg.runtimes.unwrap_or_default() {
        if let Some(p) = v["path"].as_str() {
            ec.runtimes.insert(name, PathBuf::from(p));
        }
    }
    if let Some(lo) = &cfg.log_opts {
        if let Some(s) = lo.get("max-size").and_then(|s| berth_engine::container::parse_size(s)) {
            ec.log_max_size = s;
        }
        if let Some(n) = lo.get("max-file").and_then(|s| s.parse().ok()) {
            ec.log_max_file = n;
        }
    }
    std::fs::create_dir_all(&ec.exec_root)?;
    let _pid_lock = write_pidfile(&pidfile)?;
    // Two malloc arenas: the blocking pool's many short-lived threads would otherwise each get
    // one, and the memory a burst of requests leaves in them is never handed back.
    // SAFETY: mallopt only changes allocator parameters; no thread has allocated yet in parallel.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(64).enable_all().build()?;
    let res = rt.block_on(async {
        let engine = berth_engine::Engine::open(ec.clone()).map_err(|e| {
            if e.to_string().contains("Cannot acquire lock") {
                anyhow::anyhow!("another berth daemon is using {}", ec.data_root.display())
            } else {
                anyhow::anyhow!("opening the engine: {e}")
            }
        })?;
        engine.restore();
        spawn_idle_trim();
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "berth daemon started");
        let serve = crate::api::serve(engine.clone(), &sock);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = serve => r,
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted; containers keep running"); Ok(()) }
            _ = term.recv() => { tracing::info!("terminated; containers keep running"); Ok(()) }
        }
    });
    if let Err(e) = &res {
        eprintln!("berth daemon: {e:#}");
    }
    // We hold the pid file lock, so the socket and pid file are ours to remove.
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pidfile);
    // Don't wait for blocked helper threads (attach/wait calls to shims): exit now.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(if res.is_ok() { 0 } else { 1 });
}

/// Once no API request has come for a few seconds, give back the pages the last burst of work
/// touched (code of handlers, freed heap); they come back from the page cache when needed.
fn spawn_idle_trim() {
    use std::sync::atomic::Ordering;
    let _ = std::thread::Builder::new().name("idle-trim".into()).stack_size(64 << 10).spawn(|| {
        let mut seen = u64::MAX;
        let mut pending = true;
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3));
            let n = crate::api::REQUESTS.load(Ordering::Relaxed);
            if n != seen {
                seen = n;
                pending = true;
            } else if pending {
                pending = false;
                berth_runtime::trim_resident();
            }
        }
    });
}
