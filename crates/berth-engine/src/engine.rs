//! The engine: one value owning the stores, with the operations the API server calls.

use crate::container::ContainerRecord;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::Result;
use crate::meta::{Meta, CONTAINERS};
use crate::snapshot::Snapshotter;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where the engine keeps things and how it runs containers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `--data-root` (default `/var/lib/berth`).
    pub data_root: PathBuf,
    /// `--exec-root` (default `/run/berth`).
    pub exec_root: PathBuf,
    /// The `berth` binary, run as `berth shim <state-dir>` for each container.
    pub exe: PathBuf,
    /// cgroup parent for containers (`berth`).
    pub cgroup_parent: String,
    /// Default log rotation.
    pub log_max_size: u64,
    pub log_max_file: u32,
    /// Named external OCI runtimes (`runc` → `/usr/sbin/runc`).
    pub runtimes: HashMap<String, PathBuf>,
    pub default_runtime: String,
    /// Device name of the default `bridge` network.
    pub bridge_name: String,
    /// berth's own nftables table.
    pub nft_table: String,
    /// Address pools for automatic subnets (`--default-address-pool`).
    pub default_pools: Vec<String>,
    /// Pool prefix length for automatic subnets.
    pub pool_size: u8,
}

impl EngineConfig {
    pub fn new(data_root: PathBuf, exec_root: PathBuf, exe: PathBuf) -> Self {
        let mut runtimes = HashMap::new();
        for (name, path) in [("runc", "/usr/sbin/runc"), ("crun", "/usr/bin/crun")] {
            if std::path::Path::new(path).exists() {
                runtimes.insert(name.to_string(), PathBuf::from(path));
            }
        }
        Self {
            data_root,
            exec_root,
            exe,
            cgroup_parent: "berth".into(),
            log_max_size: 10 << 20,
            log_max_file: 3,
            runtimes,
            default_runtime: "berth".into(),
            bridge_name: "berth0".into(),
            nft_table: "berth".into(),
            default_pools: vec![],
            pool_size: 24,
        }
    }
}

/// Event bus: a broadcast channel for `events` streams plus a bounded history for `--since`.
pub struct Events {
    tx: tokio::sync::broadcast::Sender<serde_json::Value>,
    history: Mutex<VecDeque<serde_json::Value>>,
}

const EVENT_HISTORY: usize = 1024;

impl Events {
    fn new() -> Self {
        let (tx, _) = tokio::sync::broadcast::channel(1024);
        Self { tx, history: Mutex::new(VecDeque::new()) }
    }

    /// Record an event in Docker's `/events` JSON shape.
    pub fn emit(&self, typ: &str, action: &str, id: &str, attrs: &[(&str, &str)]) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let attributes: serde_json::Map<String, serde_json::Value> =
            attrs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let mut ev = json!({
            "Type": typ,
            "Action": action,
            "Actor": {"ID": id, "Attributes": attributes},
            "scope": "local",
            "time": now.timestamp(),
            "timeNano": nanos,
        });
        if typ == "container" {
            ev["status"] = json!(action);
            ev["id"] = json!(id);
            if let Some((_, img)) = attrs.iter().find(|(k, _)| *k == "image") {
                ev["from"] = json!(img);
            }
        }
        if let Ok(mut h) = self.history.lock() {
            if h.len() >= EVENT_HISTORY {
                h.pop_front();
            }
            h.push_back(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<serde_json::Value> {
        self.tx.subscribe()
    }

    pub fn history(&self) -> Vec<serde_json::Value> {
        self.history.lock().map(|h| h.iter().cloned().collect()).unwrap_or_default()
    }
}

pub struct Engine {
    pub config: EngineConfig,
    pub content: ContentStore,
    pub meta: Arc<Meta>,
    pub snapshots: Snapshotter,
    pub events: Events,
    pub(crate) gc_lock: Mutex<()>,
    /// Live container records (the DB holds the durable copy).
    pub(crate) containers: Mutex<HashMap<String, Arc<Mutex<ContainerRecord>>>>,
    pub(crate) execs: Mutex<HashMap<String, crate::container::ExecRecord>>,
    pins: Mutex<HashMap<Digest, usize>>,
    pub(crate) state_tx: tokio::sync::watch::Sender<u64>,
    /// Exit codes of recently removed containers (for `wait --condition removed`).
    pub(crate) exit_codes: Mutex<HashMap<String, i64>>,
    /// Attach requests waiting for a container to start (`docker run` attaches before start).
    pub(crate) attach_pending: Mutex<HashMap<String, Vec<crate::container::AttachSlot>>>,
    pub(crate) attach_seq: std::sync::atomic::AtomicU64,
    /// Containers created by their shim and waiting for attaches before their process starts.
    /// The kernel side of networking; `None` when it could not be set up (logged).
    pub net: Option<berth_network::NetManager>,
    pub(crate) net_lock: Mutex<()>,
    pub started: chrono::DateTime<chrono::Utc>,
    /// `health_status` events (started with the first container that has a health check).
    pub(crate) health_watch: std::sync::OnceLock<Option<Arc<crate::health_watch::HealthWatch>>>,
    /// Directories nothing refers to any more (a removed container's layers, logs, config),
    /// deleted by a background thread, as containerd's garbage collector does: `rm` returns once
    /// the records are gone. Whatever a crash leaves is removed at the next open.
    reaper: std::sync::mpsc::Sender<std::path::PathBuf>,
}

/// Version of the data root's on-disk layout (`<data-root>/format`). A berth reads every format
/// up to its own (upgrading in place when a later one needs it) and refuses a newer one
/// before touching anything, rather than misreading it or "cleaning" what it does not know
/// (HARDENING B12). `tests/fixtures/state/` keeps a data root of each format for the tests.
pub const DATA_FORMAT: u32 = 1;

fn check_format(data_root: &std::path::Path) -> Result<()> {
    let file = data_root.join("format");
    match std::fs::read_to_string(&file) {
        Ok(s) => {
            let v: u32 = s.trim().parse().map_err(|_| {
                crate::error::EngineError::invalid(format!("{}: not a berth data-root format version: {:?}", file.display(), s.trim()))
            })?;
            if v > DATA_FORMAT {
                return Err(crate::error::EngineError::invalid(format!(
                    "data root {} was written by a newer berth (on-disk format {v}; this berth reads formats up to {DATA_FORMAT}): \
                     refusing to open it rather than misread it; run the newer berth, or use another --data-root",
                    data_root.display()
                )));
            }
            Ok(())
        }
        // a new data root, or one from before the format file (the same layout as format 1)
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::content::write_atomic(&file, format!("{DATA_FORMAT}\n").as_bytes())
        }
        Err(e) => Err(crate::error::EngineError::from(e).context(file.display())),
    }
}

impl Engine {
    /// Open every store under the configured roots, cleaning what a crash left behind.
    pub fn open(config: EngineConfig) -> Result<Arc<Self>> {
        use std::os::unix::fs::PermissionsExt;
        crate::content::create_dir_durable(&config.data_root)?;
        std::fs::set_permissions(&config.data_root, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir_all(&config.exec_root)?;
        std::fs::set_permissions(&config.exec_root, std::fs::Permissions::from_mode(0o710))?;
        check_format(&config.data_root)?;
        crate::content::create_dir_durable(&config.data_root.join("containers"))?;
        std::fs::create_dir_all(config.exec_root.join("containers"))?;
        let meta = Arc::new(Meta::open(&config.data_root.join("meta.redb"))?);
        let content = ContentStore::open(&config.data_root.join("content"))?;
        let snapshots = Snapshotter::open(&config.data_root.join("snapshots"), meta.clone())?;
        crate::recover::run(&meta, &snapshots, &config.data_root, &config.exec_root)?;
        let mut containers = HashMap::new();
        for (id, rec) in meta.list::<ContainerRecord>(CONTAINERS)? {
            containers.insert(id, Arc::new(Mutex::new(rec)));
        }
        // directories of removed containers the background reaper had not deleted yet
        for e in std::fs::read_dir(config.data_root.join("containers"))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) && !containers.contains_key(&name) {
                tracing::info!(dir = %e.path().display(), "removing leftover of a removed container");
                let _ = crate::snapshot::remove_tree(&e.path());
            }
        }
        let net = {
            let mut nc = berth_network::NetConfig {
                bridge_name: config.bridge_name.clone(),
                nft_table: config.nft_table.clone(),
                netns_dir: config.exec_root.join("netns"),
                pool_prefix_len: config.pool_size,
                ..Default::default()
            };
            if !config.default_pools.is_empty() {
                nc.default_pool = config
                    .default_pools
                    .iter()
                    .map(|p| p.parse().map_err(|_| crate::error::EngineError::invalid(format!("invalid address pool {p}"))))
                    .collect::<Result<Vec<_>>>()?;
            }
            match berth_network::NetManager::new(nc) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!("networking unavailable: {e}");
                    None
                }
            }
        };
        let eng = Arc::new(Self {
            config,
            content,
            meta,
            snapshots,
            events: Events::new(),
            gc_lock: Mutex::new(()),
            containers: Mutex::new(containers),
            execs: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            state_tx: tokio::sync::watch::channel(0).0,
            exit_codes: Mutex::new(HashMap::new()),
            attach_pending: Mutex::new(HashMap::new()),
            attach_seq: std::sync::atomic::AtomicU64::new(0),
            net,
            net_lock: Mutex::new(()),
            started: chrono::Utc::now(),
            health_watch: std::sync::OnceLock::new(),
            reaper: spawn_reaper(),
        });
        crate::build::cleanup_leftovers(&eng);
        // sweeps volume directories an interrupted create/remove left without a record
        if let Err(e) = eng.volumes_root() {
            tracing::warn!("volumes: {e}");
        }
        eng.init_networks()?;
        Ok(eng)
    }

    /// The per-container directory under the data root (hosts, resolv.conf, logs).
    pub fn ctr_dir_pub(&self, id: &str) -> PathBuf {
        self.config.data_root.join("containers").join(id)
    }

    /// Keep blobs alive across a GC while an operation uses them (a lease).
    pub fn pin(&self, d: &Digest) {
        if let Ok(mut p) = self.pins.lock() {
            *p.entry(d.clone()).or_default() += 1;
        }
    }
    pub fn unpin(&self, d: &Digest) {
        if let Ok(mut p) = self.pins.lock() {
            if let Some(n) = p.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    p.remove(d);
                }
            }
        }
    }
    /// Exit code of a container removed recently.
    pub fn last_exit_code(&self, id: &str) -> Option<i64> {
        self.exit_codes.lock().ok().and_then(|m| m.get(id).copied())
    }

    pub(crate) fn pinned_blobs(&self) -> Vec<Digest> {
        self.pins.lock().map(|p| p.keys().cloned().collect()).unwrap_or_default()
    }
}

fn spawn_reaper() -> std::sync::mpsc::Sender<std::path::PathBuf> {
    let (tx, rx) = std::sync::mpsc::channel::<std::path::PathBuf>();
    let _ = std::thread::Builder::new().name("reaper".into()).stack_size(256 << 10).spawn(move || {
        for p in rx {
            if let Err(e) = crate::snapshot::remove_tree(&p) {
                tracing::warn!(path = %p.display(), "removing: {e}");
            }
        }
    });
    tx
}

impl Engine {
    /// Delete `dir` in the background (it must already be unreachable from every record).
    pub(crate) fn reap(&self, dir: std::path::PathBuf) {
        if let Err(std::sync::mpsc::SendError(p)) = self.reaper.send(dir) {
            let _ = crate::snapshot::remove_tree(&p);
        }
    }
}
