//! Containers: records, the create/start/stop/rm lifecycle, exit monitoring and restart policies.
//!
//! The engine never forks a container itself: `start` asks `berth-runtime` to run a shim, and a
//! monitor thread per running container blocks in the shim's `wait` and records the exit. After a
//! daemon restart, [`Engine::restore`] reconnects to every live shim, and reads the exit status
//! of containers that died while the daemon was down from the shim's `exit.json`.

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::image::ImageRecord;
use crate::meta::{CONTAINERS, NAMES};
use crate::names;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthState {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// created, running, paused, restarting, removing, exited, dead
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(default)]
    pub health: Option<HealthState>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// Image id.
    pub image: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub restart_count: i64,
    pub path: String,
    pub args: Vec<String>,
    pub snapshot: String,
    #[serde(default)]
    pub networks: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub mounts: Vec<serde_json::Value>,
    /// Set by `stop`/`kill` from the user, so restart policies don't restart.
    #[serde(default)]
    pub manually_stopped: bool,
    #[serde(default)]
    pub exec_ids: Vec<String>,
    #[serde(default)]
    pub has_been_started: bool,
    /// Network endpoints while running (persisted for reconcile after a crash).
    #[serde(default)]
    pub endpoints: Vec<(berth_network::EndpointSpec, berth_network::Endpoint)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: bollard::models::ExecConfig,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    /// The shim's id for this exec once started.
    pub shim_id: Option<String>,
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

fn now() -> String {
    crate::image::now_rfc3339()
}

fn random_id() -> String {
    let a: [u8; 32] = rand::random();
    hex::encode(a)
}

/// Parse a Docker signal name or number (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| EngineError::invalid(format!("Invalid signal: {s}")))
}

/// `KEY=value` list merge: later entries override earlier ones by key.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(over.iter()) {
        let k = e.split('=').next().unwrap_or("");
        out.retain(|x| x.split('=').next() != Some(k));
        if e.contains('=') {
            out.push(e.clone());
        }
    }
    out
}

/// The start of the error [`Engine::start_exec`] returns when the command cannot be run.
pub const EXEC_START_FAILED: &str = "OCI runtime exec failed";

/// How long `stop` and `rm -f` wait for a container to die after SIGKILL (Docker: 10 s).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Wait for the shim to report the container's exit, at most `t`; the waiting thread stays
/// behind (until the exit) when it times out.
fn wait_shim_exit(s: berth_runtime::Shim, t: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = s.wait();
        let _ = tx.send(());
    });
    rx.recv_timeout(t).is_ok()
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An attach waiting for its container to start (see [`Engine::attach_register`]).
pub(crate) struct AttachSlot {
    token: u64,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: tokio::sync::oneshot::Sender<std::os::unix::net::UnixStream>,
}

/// The waiting side of [`Engine::attach_register`]; dropping it withdraws the attach.
pub struct PendingAttach {
    eng: Arc<Engine>,
    id: String,
    token: u64,
    rx: Option<tokio::sync::oneshot::Receiver<std::os::unix::net::UnixStream>>,
}

impl PendingAttach {
    /// The shim stream, once the container was created; `None` when it will not come (the
    /// start failed, or the registration was withdrawn).
    pub async fn stream(&mut self) -> Option<std::os::unix::net::UnixStream> {
        self.rx.as_mut()?.await.ok()
    }

    /// Withdraw the registration; true when it was still waiting (no start has taken it).
    pub fn withdraw(&self) -> bool {
        let Ok(mut m) = self.eng.attach_pending.lock() else { return false };
        let Some(v) = m.get_mut(&self.id) else { return false };
        let before = v.len();
        v.retain(|s| s.token != self.token);
        let removed = v.len() != before;
        if v.is_empty() {
            m.remove(&self.id);
        }
        removed
    }
}

impl Drop for PendingAttach {
    fn drop(&mut self) {
        self.withdraw();
    }
}

impl Engine {
    /// Register an attach that arrived before the container started. The next start creates
    /// the container, attaches to its shim on this attach's behalf (so no output is missed,
    /// however late the client's connection is handed over) and sends the stream on the
    /// returned receiver. Drop the [`PendingAttach`] to withdraw.
    pub fn attach_register(self: &Arc<Self>, id: &str, stdin: bool, stdout: bool, stderr: bool) -> PendingAttach {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let token = self.attach_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut m) = self.attach_pending.lock() {
            m.entry(id.to_string()).or_default().push(AttachSlot { token, stdin, stdout, stderr, tx });
        }
        PendingAttach { eng: self.clone(), id: id.to_string(), token, rx: Some(rx) }
    }

    /// Emit a container event the way dockerd does: `extra` attributes, the container's
    /// labels, its image and name (so `events --filter label=...` works on every action).
    pub fn container_event(&self, rec: &ContainerRecord, action: &str, extra: &[(&str, &str)]) {
        let mut attrs: Vec<(&str, &str)> = extra.to_vec();
        if let Some(labels) = rec.config.labels.as_ref() {
            attrs.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        attrs.push(("image", rec.config.image.as_deref().unwrap_or("")));
        attrs.push(("name", &rec.name));
        self.events.emit("container", action, &rec.id, &attrs);
    }

    /// Connect every attach registered for `id` to its freshly created shim.
    fn attach_pending_connect(&self, id: &str, state_dir: &std::path::Path) {
        let slots = self.attach_pending.lock().ok().and_then(|mut m| m.remove(id)).unwrap_or_default();
        for slot in slots {
            let stream = berth_runtime::Shim::connect(state_dir)
                .ok()
                .flatten()
                .and_then(|shim| shim.attach(slot.stdin, slot.stdout, slot.stderr).ok());
            if let Some(s) = stream {
                let _ = slot.tx.send(s);
            }
        }
    }

    /// The shim state directory of a container.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("containers").join(id)
    }
    fn ctr_dir(&self, id: &str) -> PathBuf {
        self.config.data_root.join("containers").join(id)
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.ctr_dir(id).join(format!("{id}-json.log"))
    }

    /// Find a container by full id, name, or unique id prefix.
    pub fn get_container(&self, name_or_id: &str) -> Result<Arc<Mutex<ContainerRecord>>> {
        let not_found = || EngineError::not_found(format!("No such container: {name_or_id}"));
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if key.is_empty() {
            return Err(not_found());
        }
        let map = self.containers.lock().map_err(|_| EngineError::internal("lock"))?;
        if let Some(c) = map.get(key) {
            return Ok(c.clone());
        }
        for c in map.values() {
            if c.lock().map(|r| r.name == key).unwrap_or(false) {
                return Ok(c.clone());
            }
        }
        let mut found = None;
        for (id, c) in map.iter() {
            if id.starts_with(key) {
                if found.is_some() {
                    return Err(EngineError::not_found(format!(
                        "multiple IDs found with provided prefix: {name_or_id}"
                    )));
                }
                found = Some(c.clone());
            }
        }
        found.ok_or_else(not_found)
    }

    pub fn all_containers(&self) -> Vec<ContainerRecord> {
        let map = match self.containers.lock() {
            Ok(m) => m,
            Err(_) => return vec![],
        };
        let mut v: Vec<ContainerRecord> = map.values().filter_map(|c| c.lock().ok().map(|r| r.clone())).collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    }

    fn save(&self, rec: &ContainerRecord) -> Result<()> {
        self.meta.put(CONTAINERS, &rec.id, rec)
    }

    /// Which container (if any) uses image `id`.
    pub fn container_using_image(&self, id: &crate::digest::Digest) -> Option<String> {
        self.all_containers().into_iter().find(|c| c.image == id.as_str()).map(|c| c.id)
    }

    /// `POST /containers/create`.
    pub fn create_container(&self, name: Option<&str>, body: ContainerCreateBody) -> Result<(String, Vec<String>)> {
        berth_runtime::timing::mark("daemon: create begin");
        let image_name = body.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(EngineError::invalid("Config cannot be empty in order to create a container"));
        }
        let img: ImageRecord = self.resolve_image(&image_name)?;
        let icfg = self.image_config(&img)?.config.unwrap_or_default();
        let mut hc = body.host_config.clone().unwrap_or_default();
        validate_host_config(&hc)?;
        let endpoints_cfg: std::collections::HashMap<String, serde_json::Value> = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, serde_json::to_value(v).unwrap_or_default()))
            .collect();
        let warnings = Vec::new();

        // Merge the image's defaults into the container config, as Docker does.
        let mut cfg = ContainerConfig {
            hostname: body.hostname.clone(),
            domainname: body.domainname.clone(),
            user: body.user.clone().filter(|u| !u.is_empty()).or(icfg.user.clone()),
            attach_stdin: body.attach_stdin,
            attach_stdout: body.attach_stdout,
            attach_stderr: body.attach_stderr,
            exposed_ports: None,
            tty: body.tty,
            open_stdin: body.open_stdin,
            stdin_once: body.stdin_once,
            env: None,
            cmd: None,
            healthcheck: body.healthcheck.clone().or(icfg.healthcheck.clone()),
            args_escaped: None,
            image: Some(image_name.clone()),
            volumes: None,
            working_dir: body.working_dir.clone().filter(|w| !w.is_empty()).or(icfg.working_dir.clone()),
            entrypoint: None,
            network_disabled: body.network_disabled,
            on_build: None,
            labels: None,
            stop_signal: body.stop_signal.clone().or(icfg.stop_signal.clone()),
            stop_timeout: body.stop_timeout,
            shell: body.shell.clone().or(icfg.shell.clone()),
            ..Default::default()
        };
        let mut env = merge_env(icfg.env.as_deref().unwrap_or(&[]), body.env.as_deref().unwrap_or(&[]));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        cfg.env = Some(env);
        let (entrypoint, cmd) = match (&body.entrypoint, &body.cmd) {
            (Some(ep), cmd) if !(ep.len() == 1 && ep[0].is_empty()) => (Some(ep.clone()), cmd.clone()),
            (Some(_), cmd) => (None, cmd.clone()), // --entrypoint "" resets
            (None, Some(c)) if !c.is_empty() => (icfg.entrypoint.clone(), Some(c.clone())),
            (None, _) => (icfg.entrypoint.clone(), icfg.cmd.clone()),
        };
        cfg.entrypoint = entrypoint.clone();
        cfg.cmd = cmd.clone();
        let mut argv: Vec<String> = entrypoint.unwrap_or_default();
        argv.extend(cmd.unwrap_or_default());
        if argv.is_empty() {
            return Err(EngineError::invalid("no command specified"));
        }
        let mut ports: Vec<String> = icfg.exposed_ports.clone().unwrap_or_default();
        for p in body.exposed_ports.clone().unwrap_or_default() {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        if let Some(pb) = &hc.port_bindings {
            for p in pb.keys() {
                if !ports.contains(p) {
                    ports.push(p.clone());
                }
            }
        }
        cfg.exposed_ports = if ports.is_empty() { None } else { Some(ports) };
        let mut vols = icfg.volumes.clone().unwrap_or_default();
        vols.extend(body.volumes.clone().unwrap_or_default());
        cfg.volumes = if vols.is_empty() { None } else { Some(vols) };
        let mut labels = icfg.labels.clone().unwrap_or_default();
        labels.extend(body.labels.clone().unwrap_or_default());
        cfg.labels = Some(labels);
        cfg.on_build = icfg.on_build.clone();

        if hc.network_mode.as_deref().unwrap_or("").is_empty() {
            hc.network_mode = Some("bridge".into());
        }
        let id = random_id();
        let name = match name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !names::valid_name(n) {
                    return Err(EngineError::invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            _ => loop {
                let n = names::random_name();
                if self.meta.get::<String>(NAMES, &n)?.is_none() {
                    break n;
                }
            },
        };
        let snapshot = format!("ctr:{id}");
        let rec = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            image: img.id.to_string(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config: cfg,
            host_config: hc,
            state: State {
                status: "created".into(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                ..Default::default()
            },
            restart_count: 0,
            snapshot: snapshot.clone(),
            networks: Default::default(),
            mounts: vec![],
            manually_stopped: false,
            exec_ids: vec![],
            has_been_started: false,
            endpoints: vec![],
        };
        // Reserve the name and write the record in one transaction (name conflicts are atomic).
        {
            let _g = self.containers.lock().map_err(|_| EngineError::internal("lock"))?;
            let mut b = self.meta.batch()?;
            if let Some(other) = b.get::<String>(NAMES, &name)? {
                return Err(EngineError::conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            b.put(NAMES, &name, &id)?;
            b.put(CONTAINERS, &id, &rec)?;
            b.commit()?;
        }
        crate::fault::point("container.create.recorded");
        let mut rec = rec;
        let res = (|| -> Result<()> {
            std::fs::create_dir_all(self.ctr_dir(&id))?;
            // The init layer holds the mount points berth adds (hosts, resolv.conf, /proc, ...),
            // so they never show up in the writable layer, `diff` or `commit` (Docker's -init).
            let init_key = format!("init:{id}");
            self.snapshots.prepare_with_init(&snapshot, &init_key, img.top_chain().as_deref(), |dir| {
                write_init_layer(dir)?;
                Ok(0)
            })?;
            berth_runtime::timing::mark("daemon: snapshots");
            crate::fault::point("container.create.layers");
            self.prepare_volumes(&mut rec)?;
            berth_runtime::timing::mark("daemon: rw layer+volumes");
            self.prepare_network(&mut rec, endpoints_cfg.clone())?;
            berth_runtime::timing::mark("daemon: network prepared");
            self.save(&rec)?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = self.purge_container(&rec);
            return Err(e);
        }
        self.container_event(&rec, "create", &[]);
        self.containers
            .lock()
            .map_err(|_| EngineError::internal("lock"))?
            .insert(id.clone(), Arc::new(Mutex::new(rec)));
        berth_runtime::timing::mark("daemon: create done");
        Ok((id, warnings))
    }

    fn purge_container(&self, rec: &ContainerRecord) -> Result<()> {
        let mut b = self.meta.batch()?;
        b.delete(CONTAINERS, &rec.id)?;
        if b.get::<String>(NAMES, &rec.name)?.as_deref() == Some(rec.id.as_str()) {
            b.delete(NAMES, &rec.name)?;
        }
        let rw = self.snapshots.remove_in(&mut b, &rec.snapshot)?;
        let init = self.snapshots.remove_in(&mut b, &format!("init:{}", rec.id))?;
        b.commit()?;
        berth_runtime::timing::mark("daemon: purge committed");
        crate::fault::point("container.rm.unrecorded");
        for d in rw.into_iter().chain(init) {
            self.reap(d);
        }
        self.reap(self.ctr_dir(&rec.id));
        let _ = std::fs::remove_dir_all(self.state_dir(&rec.id));
        Ok(())
    }

    /// Build the runtime's view of a container.
    /// Remove what the runtime left (mounts, cgroup, state) using the config the shim was
    /// started with; nothing to do for a container that never started.
    fn cleanup_runtime(&self, id: &str) {
        let sd = self.state_dir(id);
        if let Ok(cfg) = berth_runtime::read_config(&sd) {
            if let Err(e) = berth_runtime::cleanup(&sd, &cfg) {
                tracing::warn!(container = id, "runtime cleanup: {e}");
            }
        }
    }

    fn runtime_config_net(&self, rec: &ContainerRecord, netmode: Option<berth_runtime::NetMode>) -> Result<berth_runtime::ContainerConfig> {
        use berth_runtime::*;
        let hc = &rec.host_config;
        let cfg = &rec.config;
        // The init layer is written without a flush (it holds only mount points): a power cut
        // can take it, or part of it, away. Make what is missing before every start, like the
        // hosts and resolv.conf files below (HARDENING B5).
        write_init_layer(&self.snapshots.fs_dir(&format!("init:{}", rec.id))?)?;
        let m = self.snapshots.mounts(&rec.snapshot)?;
        let dir = self.ctr_dir(&rec.id);
        let hostname = cfg.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| rec.id[..12].to_string());
        let net_mode = hc.network_mode.clone().unwrap_or_default();
        let network = netmode.unwrap_or(if net_mode == "host" { NetMode::Host } else { NetMode::None });
        // /etc/hostname, /etc/hosts, /etc/resolv.conf
        let (hosts, resolv) = if net_mode == "host" {
            (
                std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            )
        } else {
            let mut h = String::from(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            );
            h.push_str(&self.hosts_entries(rec, &hostname));
            for e in hc.extra_hosts.clone().unwrap_or_default() {
                if let Some((n, ip)) = e.split_once(':') {
                    h.push_str(&format!("{ip}\t{n}\n"));
                }
            }
            let mut r = String::new();
            for d in hc.dns.clone().unwrap_or_default() {
                r.push_str(&format!("nameserver {d}\n"));
            }
            if let Some(user) = self.resolv_for(rec) {
                r = user;
            } else if r.is_empty() {
                r = match self.net.as_ref() {
                    Some(m) => m.resolv_conf(false),
                    None => host_resolv_conf(),
                };
            }
            (h, r)
        };
        let hosts = if net_mode == "host" {
            let mut h = hosts;
            for e in hc.extra_hosts.clone().unwrap_or_default() {
                if let Some((n, ip)) = e.split_once(':') {
                    h.push_str(&format!("{ip}\t{n}\n"));
                }
            }
            h
        } else {
            hosts
        };
        // Rewritten at every start: no flush needed.
        crate::content::write_replace(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
        crate::content::write_replace(&dir.join("hosts"), hosts.as_bytes())?;
        crate::content::write_replace(&dir.join("resolv.conf"), resolv.as_bytes())?;
        let mut mounts = vec![];
        for (f, dst) in [("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts")] {
            mounts.push(MountConfig {
                kind: MountKind::Bind,
                source: dir.join(f).display().to_string(),
                destination: dst.into(),
                options: vec!["rbind".into(), "rprivate".into()],
                propagation: None,
            });
        }
        mounts.extend(self.volume_mounts(rec)?);
        let mut argv = vec![rec.path.clone()];
        argv.extend(rec.args.clone());
        let mut env = rec.config.env.clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("HOSTNAME="));
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
        if cfg.tty.unwrap_or(false) && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let console_size = hc.console_size.as_ref().and_then(|v| {
            if v.len() == 2 && v[0] > 0 && v[1] > 0 {
                Some((v[0] as u16, v[1] as u16))
            } else {
                None
            }
        });
        let mut resources = Resources {
            memory: hc.memory.filter(|m| *m > 0),
            memory_swap: hc.memory_swap.filter(|m| *m != 0),
            memory_reservation: hc.memory_reservation.filter(|m| *m > 0),
            cpus: hc.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
            cpu_shares: hc.cpu_shares.filter(|s| *s > 0).map(|s| s as u64),
            cpu_quota: hc.cpu_quota.filter(|q| *q > 0),
            cpu_period: hc.cpu_period.filter(|p| *p > 0).map(|p| p as u64),
            cpuset_cpus: hc.cpuset_cpus.clone().filter(|s| !s.is_empty()),
            cpuset_mems: hc.cpuset_mems.clone().filter(|s| !s.is_empty()),
            pids_limit: hc.pids_limit.filter(|p| *p != 0),
            blkio_weight: hc.blkio_weight.filter(|w| *w > 0),
        };
        if resources.memory.is_some() && resources.memory_swap.is_none() {
            resources.memory_swap = resources.memory.map(|m| m * 2);
        }
        let mut security = SecurityOpts::default();
        for o in hc.security_opt.clone().unwrap_or_default() {
            let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), "true"));
            match k {
                "no-new-privileges" => security.no_new_privileges = v != "false",
                "seccomp" if v == "unconfined" => security.seccomp = SeccompOpt::Unconfined,
                "seccomp" => {
                    let prof = std::fs::read_to_string(v).unwrap_or_else(|_| v.to_string());
                    security.seccomp = SeccompOpt::Custom(prof);
                }
                "apparmor" | "label" => {}
                _ => return Err(EngineError::invalid(format!("invalid --security-opt: {o:?}"))),
            }
        }
        let runtime_name = hc.runtime.clone().filter(|r| !r.is_empty()).unwrap_or(self.config.default_runtime.clone());
        let runtime = if runtime_name == "berth" {
            None
        } else {
            Some(self.config.runtimes.get(&runtime_name).cloned().ok_or_else(|| {
                EngineError::invalid(format!("unknown or invalid runtime name: {runtime_name}"))
            })?)
        };
        let (max_size, max_file) = log_opts(hc, self.config.log_max_size, self.config.log_max_file)?;
        let stop_signal = parse_signal(cfg.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        Ok(berth_runtime::ContainerConfig {
            id: rec.id.clone(),
            rootfs: RootfsMount { fstype: m.fstype, source: m.source, options: rootfs_options(m.options, hc.auto_remove.unwrap_or(false)) },
            process: ProcessConfig {
                args: argv,
                env,
                cwd: cfg.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
                user: cfg.user.clone().unwrap_or_default(),
                tty: cfg.tty.unwrap_or(false),
                open_stdin: cfg.open_stdin.unwrap_or(false),
                stdin_once: cfg.stdin_once.unwrap_or(false),
                console_size,
            },
            hostname,
            domainname: cfg.domainname.clone().unwrap_or_default(),
            mounts,
            network,
            ipc_host: hc.ipc_mode.as_deref() == Some("host"),
            pid_host: hc.pid_mode.as_deref() == Some("host"),
            uts_host: hc.uts_mode.as_deref() == Some("host"),
            resources,
            privileged: hc.privileged.unwrap_or(false),
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            security_opt: security,
            read_only_rootfs: hc.readonly_rootfs.unwrap_or(false),
            init: hc.init.unwrap_or(false),
            group_add: hc.group_add.clone().unwrap_or_default(),
            shm_size: hc.shm_size.filter(|s| *s > 0).map(|s| s as u64),
            sysctls: hc.sysctls.clone().unwrap_or_default().into_iter().collect(),
            ulimits: hc
                .ulimits
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|u| Ulimit {
                    name: u.name.unwrap_or_default(),
                    soft: u.soft.unwrap_or(0).max(0) as u64,
                    hard: u.hard.unwrap_or(0).max(0) as u64,
                })
                .collect(),
            devices: hc
                .devices
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|d| DeviceMapping {
                    path_on_host: d.path_on_host.unwrap_or_default(),
                    path_in_container: d.path_in_container.unwrap_or_default(),
                    cgroup_permissions: d.cgroup_permissions.unwrap_or_else(|| "rwm".into()),
                })
                .collect(),
            cgroup_parent: hc.cgroup_parent.clone().filter(|c| !c.is_empty()).unwrap_or(self.config.cgroup_parent.clone()),
            log: LogConfig { path: self.log_path(&rec.id), max_size, max_file },
            runtime,
            stop_signal,
        })
    }

    /// `POST /containers/{id}/start`.
    pub fn start_container(self: &Arc<Self>, name: &str) -> Result<()> {
        let c = self.get_container(name)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        if rec.state.running {
            if rec.state.paused {
                return Err(EngineError::conflict(format!(
                    "cannot start a paused container, try unpause instead"
                )));
            }
            return Err(EngineError::new(crate::error::ErrorKind::NotModified, "container already started"));
        }
        if rec.state.status == "removing" || rec.state.dead {
            return Err(EngineError::conflict(format!("container {} is marked for removal and cannot be started", rec.id)));
        }
        if let Err(e) = self.start_locked(&mut rec) {
            // Like dockerd: a `--rm` container that fails to start is removed at once (clients
            // such as docker 28's `run --rm` wait for that removal).
            let (id, auto_remove) = (rec.id.clone(), rec.host_config.auto_remove.unwrap_or(false));
            drop(rec);
            if auto_remove {
                let _ = self.remove_container(&id, true, true);
            }
            return Err(e);
        }
        Ok(())
    }

    fn start_locked(self: &Arc<Self>, rec: &mut ContainerRecord) -> Result<()> {
        berth_runtime::timing::mark("daemon: start begin");
        self.stop_leftover_shim(rec);
        let netmode = match self.setup_network(rec) {
            Ok(m) => m,
            Err(e) => {
                rec.state.error = e.to_string();
                let _ = self.save(rec);
                return Err(e);
            }
        };
        berth_runtime::timing::mark("daemon: network set up");
        let cfg = match self.runtime_config_net(rec, Some(netmode)) {
            Ok(c) => c,
            Err(e) => {
                self.teardown_network(rec);
                rec.state.error = e.to_string();
                let _ = self.save(rec);
                return Err(e);
            }
        };
        berth_runtime::timing::mark("daemon: runtime config");
        let state_dir = self.state_dir(&rec.id);
        if let Err(e) = berth_runtime::remove_state_dir(&state_dir) {
            self.teardown_network(rec);
            rec.state.error = e.to_string();
            let _ = self.save(rec);
            return Err(EngineError::internal(e.to_string()));
        }
        std::fs::create_dir_all(&state_dir)?;
        // Health checks run in the shim, so they keep going across daemon restarts.
        if let Some(h) = rec.config.healthcheck.as_ref().filter(|h| {
            h.test.as_ref().is_some_and(|t| !t.is_empty() && t[0] != "NONE")
        }) {
            let ns = |v: Option<i64>| v.filter(|x| *x > 0).unwrap_or(0) as u64;
            let hc = berth_runtime::HealthConfig {
                test: h.test.clone().unwrap_or_default(),
                interval: ns(h.interval),
                timeout: ns(h.timeout),
                start_period: ns(h.start_period),
                start_interval: ns(h.start_interval),
                retries: h.retries.filter(|r| *r > 0).unwrap_or(0) as u32,
                on_failure: match rec.config.labels.as_ref().and_then(|l| l.get("berth.health-on-failure")).map(String::as_str) {
                    // restart: the shim kills, the engine's exit handling starts it again
                    Some("kill") | Some("restart") => berth_runtime::HealthAction::Kill,
                    Some("stop") => berth_runtime::HealthAction::Stop,
                    _ => berth_runtime::HealthAction::None,
                },
            };
            berth_runtime::health::set_config(&state_dir, Some(&hc))?;
        }
        // Always create, then start: attaches that arrived before the start (docker run
        // attaches first) are connected in between, so no output is missed.
        let launched = berth_runtime::create(&self.config.exe, &state_dir, &cfg).and_then(|st| {
            self.attach_pending_connect(&rec.id, &state_dir);
            berth_runtime::timing::mark("daemon: attach gate passed");
            let shim = berth_runtime::Shim::connect(&state_dir)?
                .ok_or_else(|| berth_runtime::RuntimeError::Shim("shim exited before start".into()))?;
            shim.start()?;
            berth_runtime::timing::mark("daemon: shim started");
            Ok(st)
        });
        match launched {
            Ok(started) => {
                rec.state = State {
                    status: "running".into(),
                    running: true,
                    pid: started.pid as i64,
                    started_at: now(),
                    finished_at: rec.state.finished_at.clone(),
                    health: rec
                        .config
                        .healthcheck
                        .as_ref()
                        .filter(|h| h.test.as_ref().is_some_and(|t| !t.is_empty() && t[0] != "NONE"))
                        .map(|_| HealthState { status: "starting".into(), ..Default::default() }),
                    ..Default::default()
                };
                rec.manually_stopped = false;
                rec.has_been_started = true;
                self.save(rec)?;
                if rec.state.health.is_some() {
                    self.watch_health(&rec.id, "starting");
                }
                self.container_event(rec, "start", &[]);
                self.spawn_monitor(rec.id.clone());
                self.notify_state();
                berth_runtime::timing::mark("daemon: start done");
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                let code = match &e {
                    berth_runtime::RuntimeError::Start { reason: berth_runtime::StartFailure::CommandNotFound, .. } => 127,
                    berth_runtime::RuntimeError::Start { reason: berth_runtime::StartFailure::CommandNotExecutable, .. } => 126,
                    _ => 128,
                };
                rec.state.error = msg.clone();
                rec.state.exit_code = code;
                rec.state.status = if rec.has_been_started { "exited".into() } else { "created".into() };
                self.teardown_network(rec);
                let _ = self.save(rec);
                let _ = berth_runtime::cleanup(&state_dir, &cfg);
                self.notify_state();
                Err(EngineError::invalid(format!(
                    "failed to create task for container: failed to create shim task: OCI runtime create failed: {msg}: unknown"
                )))
            }
        }
    }

    fn spawn_monitor(self: &Arc<Self>, id: String) {
        let eng = self.clone();
        let _ = std::thread::Builder::new().name(format!("mon-{}", &id[..12])).stack_size(256 << 10).spawn(move || {
            eng.monitor(&id);
        });
    }

    /// Block until the container's shim reports its exit, then record it and apply the restart policy.
    fn monitor(self: &Arc<Self>, id: &str) {
        let state_dir = self.state_dir(id);
        let status = loop {
            match berth_runtime::Shim::connect(&state_dir) {
                Ok(Some(shim)) => match shim.wait() {
                    Ok(st) => break Some(st),
                    Err(e) => {
                        tracing::warn!(container = id, "shim wait failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        if let Ok(Some(st)) = berth_runtime::read_exit(&state_dir) {
                            break Some(st);
                        }
                        if berth_runtime::Shim::connect(&state_dir).ok().flatten().is_none() {
                            break berth_runtime::read_exit(&state_dir).ok().flatten();
                        }
                    }
                },
                Ok(None) => break berth_runtime::read_exit(&state_dir).ok().flatten(),
                Err(e) => {
                    tracing::warn!(container = id, "shim connect failed: {e}");
                    break berth_runtime::read_exit(&state_dir).ok().flatten();
                }
            }
        };
        self.on_exit(id, status);
    }

    fn on_exit(self: &Arc<Self>, id: &str, status: Option<berth_runtime::ExitStatus>) {
        berth_runtime::timing::mark("daemon: on_exit");
        let Ok(c) = self.get_container(id) else { return };
        let (restart, auto_remove) = {
            let Ok(mut rec) = c.lock() else { return };
            // `rm -f` killed it and cleans up itself
            if !rec.state.running || rec.state.status == "removing" {
                return;
            }
            let health_restart = rec.config.labels.as_ref().and_then(|l| l.get("berth.health-on-failure")).map(String::as_str) == Some("restart")
                && self.live_health(&rec).is_some_and(|h| h.status == "unhealthy");
            let (code, oom) = match &status {
                Some(s) => (s.exit_code as i64, s.oom_killed),
                None => (255, false),
            };
            if let Some(n) = status.as_ref().map(|s| s.log_dropped).filter(|n| *n > 0) {
                tracing::warn!(container = %rec.id, dropped = n, "log entries dropped: the log file could not be written");
            }
            rec.state.health = self.live_health(&rec);
            self.unwatch_health(&rec.id);
            self.cleanup_runtime(&rec.id);
            berth_runtime::timing::mark("daemon: exit runtime cleaned");
            self.teardown_network(&mut rec);
            berth_runtime::timing::mark("daemon: exit network down");
            rec.state.running = false;
            rec.state.paused = false;
            rec.state.pid = 0;
            rec.state.exit_code = code;
            rec.state.oom_killed = oom;
            rec.state.status = "exited".into();
            rec.state.finished_at = status.as_ref().map(|s| s.finished_at.clone()).filter(|s| !s.is_empty()).unwrap_or_else(now);
            let _ = self.save(&rec);
            berth_runtime::timing::mark("daemon: exit saved");
            if oom {
                self.container_event(&rec, "oom", &[]);
            }
            self.container_event(&rec, "die", &[("exitCode", &code.to_string())]);
            let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
            let name = policy.name.map(|n| n.to_string()).unwrap_or_default();
            let max = policy.maximum_retry_count.unwrap_or(0);
            let restart = health_restart
                || !rec.manually_stopped
                && match name.as_str() {
                    "always" | "unless-stopped" => true,
                    "on-failure" => code != 0 && (max == 0 || rec.restart_count < max),
                    _ => false,
                };
            (restart, rec.host_config.auto_remove.unwrap_or(false))
        };
        self.notify_state();
        if restart {
            let delay = {
                let rec = c.lock().map(|r| r.restart_count).unwrap_or(0);
                Duration::from_millis((100u64 << rec.min(8) as u64).min(60_000))
            };
            std::thread::sleep(delay);
            if let Ok(mut rec) = c.lock() {
                if rec.manually_stopped || rec.state.running || rec.state.status == "removing" {
                    return;
                }
                rec.restart_count += 1;
                let _ = self.start_locked(&mut rec);
            }
            return;
        }
        if auto_remove {
            let _ = self.remove_container(id, true, true);
        }
    }

    /// The container's health as its shim last recorded it (falls back to the stored state).
    pub fn live_health(&self, rec: &ContainerRecord) -> Option<HealthState> {
        let stored = rec.state.health.clone()?;
        if !rec.state.running {
            return Some(stored);
        }
        match berth_runtime::read_health(&self.state_dir(&rec.id)) {
            Ok(Some(h)) => Some(HealthState {
                status: h.status,
                failing_streak: h.failing_streak as i64,
                log: h.log.into_iter().filter_map(|r| serde_json::to_value(r).ok()).collect(),
            }),
            _ => Some(stored),
        }
    }

    /// Emit `health_status` events for container `id` from now on (it has a health check).
    fn watch_health(self: &Arc<Self>, id: &str, status: &str) {
        let w = self.health_watch.get_or_init(|| match crate::health_watch::HealthWatch::start(Arc::downgrade(self)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!("health_status events unavailable: {e}");
                None
            }
        });
        if let Some(w) = w {
            w.watch(self, id, status);
        }
    }

    fn unwatch_health(&self, id: &str) {
        if let Some(Some(w)) = self.health_watch.get() {
            w.unwatch(id);
        }
    }

    /// Wake everything waiting for a container state change.
    pub fn notify_state(&self) {
        let _ = self.state_tx.send_modify(|n| *n += 1);
    }

    pub fn subscribe_state(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state_tx.subscribe()
    }

    /// Reconnect to the shims of containers that were running when the daemon stopped.
    /// A shim left on a container that is not recorded as running comes from a start the
    /// daemon was killed in the middle of: kill it and undo that start (rootfs mount, cgroup,
    /// network), so the next start begins from a clean state (HARDENING B18).
    fn stop_leftover_shim(&self, rec: &mut ContainerRecord) {
        let sd = self.state_dir(&rec.id);
        if rec.state.running || !berth_runtime::stop_leftover(&sd, std::time::Duration::from_secs(10)) {
            return;
        }
        tracing::warn!(container = %rec.id, "stopped the shim of an interrupted start");
        if let Ok(cfg) = berth_runtime::read_config(&sd) {
            if let Err(e) = berth_runtime::cleanup(&sd, &cfg) {
                tracing::warn!(container = %rec.id, "cleanup after an interrupted start: {e}");
            }
        }
        self.teardown_network(rec);
    }

    pub fn restore(self: &Arc<Self>) {
        for rec in self.all_containers() {
            if !rec.state.running {
                if let Ok(c) = self.get_container(&rec.id) {
                    if let Ok(mut r) = c.lock() {
                        self.stop_leftover_shim(&mut r);
                    }
                }
                continue;
            }
            let sd = self.state_dir(&rec.id);
            match berth_runtime::Shim::connect(&sd) {
                Ok(Some(_)) => {
                    tracing::info!(container = %rec.id, "reconnected to running shim");
                    if let Some(h) = self.live_health(&rec) {
                        self.watch_health(&rec.id, &h.status);
                    }
                    self.spawn_monitor(rec.id.clone());
                }
                _ => {
                    let st = berth_runtime::read_exit(&sd).ok().flatten();
                    tracing::info!(container = %rec.id, "container exited while the daemon was down");
                    self.on_exit(&rec.id, st);
                }
            }
        }
        // Containers with a restart policy that were stopped by a daemon shutdown come back.
        for rec in self.all_containers() {
            let name = rec.host_config.restart_policy.as_ref().and_then(|p| p.name).map(|n| n.to_string()).unwrap_or_default();
            if !rec.state.running && !rec.manually_stopped && rec.has_been_started && (name == "always" || name == "unless-stopped") {
                let _ = self.start_container(&rec.id);
            }
        }
    }

    fn shim(&self, rec: &ContainerRecord) -> Result<berth_runtime::Shim> {
        if !rec.state.running {
            return Err(EngineError::conflict(format!("Container {} is not running", rec.id)));
        }
        berth_runtime::Shim::connect(&self.state_dir(&rec.id))
            .map_err(|e| EngineError::internal(e.to_string()))?
            .ok_or_else(|| EngineError::conflict(format!("Container {} is not running", rec.id)))
    }

    /// Connect to a running container's shim.
    pub fn shim_of(&self, name: &str) -> Result<(ContainerRecord, berth_runtime::Shim)> {
        let c = self.get_container(name)?;
        let rec = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
        let s = self.shim(&rec)?;
        Ok((rec, s))
    }

    /// `POST /containers/{id}/kill`.
    pub fn kill_container(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.get_container(name)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        let sig = parse_signal(signal.unwrap_or("SIGKILL"))?;
        let shim = self.shim(&rec)?;
        if sig == libc::SIGKILL || sig == libc::SIGTERM || sig == libc::SIGINT {
            rec.manually_stopped = true;
            let _ = self.save(&rec);
        }
        shim.kill(sig, false).map_err(|e| EngineError::internal(e.to_string()))?;
        self.container_event(&rec, "kill", &[("signal", &sig.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop_container(self: &Arc<Self>, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<bool> {
        let c = self.get_container(name)?;
        let (id, sig, t) = {
            let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
            if !rec.state.running {
                return Ok(false);
            }
            rec.manually_stopped = true;
            self.save(&rec)?;
            let sig = parse_signal(signal.or(rec.config.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
            let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
            if rec.state.paused {
                if let Ok(s) = self.shim(&rec) {
                    let _ = s.resume();
                }
            }
            (rec.id.clone(), sig, t)
        };
        let eng = self.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let c = eng.get_container(&id2)?;
            let rec = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
            if let Ok(s) = eng.shim(&rec) {
                let _ = s.kill(sig, false);
            }
            Ok(())
        })
        .await
        .map_err(|e| EngineError::internal(e.to_string()))??;
        let stopped = self.wait_not_running(&id, if t < 0 { None } else { Some(Duration::from_secs(t as u64)) }).await;
        if !stopped {
            let eng = self.clone();
            let id2 = id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(c) = eng.get_container(&id2) {
                    if let Ok(rec) = c.lock().map(|r| r.clone()) {
                        if let Ok(s) = eng.shim(&rec) {
                            let _ = s.kill(libc::SIGKILL, true);
                        }
                    }
                }
            })
            .await;
            if !self.wait_not_running(&id, Some(KILL_WAIT)).await {
                let name = self.get_container(&id).ok().and_then(|c| c.lock().ok().map(|r| r.name.clone())).unwrap_or(id);
                return Err(EngineError::internal(format!(
                    "cannot stop container: {name}: tried to kill container, but did not receive an exit event"
                )));
            }
        }
        if let Some(rec) = self.get_container(&id).ok().and_then(|c| c.lock().ok().map(|r| r.clone())) {
            self.container_event(&rec, "stop", &[]);
        }
        Ok(true)
    }

    /// Wait until the container is not running; false on timeout.
    pub async fn wait_not_running(&self, id: &str, timeout: Option<Duration>) -> bool {
        let mut rx = self.subscribe_state();
        let fut = async {
            loop {
                let running = self
                    .get_container(id)
                    .ok()
                    .and_then(|c| c.lock().ok().map(|r| r.state.running))
                    .unwrap_or(false);
                if !running {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.is_ok(),
            None => {
                fut.await;
                true
            }
        }
    }

    pub fn pause_container(&self, name: &str, pause: bool) -> Result<()> {
        let c = self.get_container(name)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        let shim = self.shim(&rec)?;
        if pause {
            if rec.state.paused {
                return Err(EngineError::conflict(format!("Container {} is already paused", rec.id)));
            }
            shim.pause().map_err(|e| EngineError::internal(e.to_string()))?;
        } else {
            if !rec.state.paused {
                return Err(EngineError::conflict(format!("Container {} is not paused", rec.id)));
            }
            shim.resume().map_err(|e| EngineError::internal(e.to_string()))?;
        }
        rec.state.paused = pause;
        rec.state.status = if pause { "paused".into() } else { "running".into() };
        self.save(&rec)?;
        self.container_event(&rec, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        berth_runtime::timing::mark("daemon: remove begin");
        let c = self.get_container(name)?;
        let lock = || c.lock().map_err(|_| EngineError::internal("lock"));
        let rec = {
            let mut rec = lock()?;
            if rec.state.status == "removing" {
                return Err(EngineError::conflict(format!("removal of container {} is already in progress", rec.id)));
            }
            if rec.state.running {
                if !force {
                    let what = if rec.state.paused { "paused" } else { "running" };
                    return Err(EngineError::conflict(format!(
                        "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                        rec.name
                    )));
                }
                rec.manually_stopped = true;
                let before = std::mem::replace(&mut rec.state.status, "removing".into());
                if let Ok(s) = self.shim(&rec) {
                    // Wait for the exit without the record's lock: a container that cannot
                    // die (frozen, stuck in D) must not block `ps`/`inspect` of the others
                    // (HARDENING B15); give up after Docker's 10 s like Docker does.
                    let name = rec.name.clone();
                    drop(rec);
                    let _ = s.resume();
                    let _ = s.kill(libc::SIGKILL, true);
                    if !wait_shim_exit(s, KILL_WAIT) {
                        if let Ok(mut rec) = lock() {
                            if rec.state.status == "removing" {
                                rec.state.status = before;
                            }
                        }
                        return Err(EngineError::internal(format!(
                            "cannot remove container \"/{name}\": could not kill container: tried to kill container, but did not receive an exit event"
                        )));
                    }
                    rec = lock()?;
                }
            }
            rec.state.status = "removing".into();
            rec.clone()
        };
        self.cleanup_runtime(&rec.id);
        berth_runtime::timing::mark("daemon: rm runtime cleaned");
        crate::fault::point("container.rm.stopped");
        let mut rec = rec;
        self.teardown_network(&mut rec);
        berth_runtime::timing::mark("daemon: rm network down");
        self.purge_container(&rec)?;
        berth_runtime::timing::mark("daemon: rm purged");
        crate::fault::point("container.rm.purged");
        if let Err(e) = self.release_volumes(&rec, volumes || rec.host_config.auto_remove.unwrap_or(false)) {
            tracing::warn!(container = %rec.id, "releasing volumes: {e}");
        }
        if let Ok(mut m) = self.exit_codes.lock() {
            if m.len() > 1000 {
                m.clear();
            }
            m.insert(rec.id.clone(), rec.state.exit_code);
        }
        if let Ok(mut m) = self.containers.lock() {
            m.remove(&rec.id);
        }
        self.container_event(&rec, "destroy", &[]);
        self.notify_state();
        berth_runtime::timing::mark("daemon: remove done");
        Ok(())
    }

    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !names::valid_name(new_name) {
            return Err(EngineError::invalid(format!("Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
        }
        let c = self.get_container(name)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        if rec.name == new_name {
            return Err(EngineError::invalid("Renaming a container with the same name as its current name"));
        }
        let mut b = self.meta.batch()?;
        if let Some(other) = b.get::<String>(NAMES, new_name)? {
            return Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        b.delete(NAMES, &rec.name)?;
        b.put(NAMES, new_name, &rec.id)?;
        let old = std::mem::replace(&mut rec.name, new_name.to_string());
        b.put(CONTAINERS, &rec.id, &*rec)?;
        b.commit()?;
        self.events.emit("container", "rename", &rec.id, &[("oldName", &format!("/{old}")), ("name", new_name)]);
        Ok(())
    }

    /// Register an exec instance (`POST /containers/{id}/exec`).
    pub fn create_exec(&self, name: &str, config: bollard::models::ExecConfig) -> Result<String> {
        let c = self.get_container(name)?;
        let rec = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
        if !rec.state.running {
            return Err(EngineError::conflict(format!("container {} is not running", rec.id)));
        }
        if rec.state.paused {
            return Err(EngineError::conflict(format!("Container {} is paused, unpause the container before exec", rec.id)));
        }
        if config.cmd.as_ref().map(|c| c.is_empty()).unwrap_or(true) {
            return Err(EngineError::invalid("No exec command specified"));
        }
        let id = random_id();
        self.execs.lock().map_err(|_| EngineError::internal("lock"))?.insert(
            id.clone(),
            ExecRecord { id: id.clone(), container_id: rec.id.clone(), config, running: false, exit_code: None, pid: 0, shim_id: None },
        );
        Ok(id)
    }

    pub fn get_exec(&self, id: &str) -> Result<ExecRecord> {
        self.execs
            .lock()
            .map_err(|_| EngineError::internal("lock"))?
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    pub fn update_exec(&self, id: &str, f: impl FnOnce(&mut ExecRecord)) {
        if let Ok(mut m) = self.execs.lock() {
            if let Some(e) = m.get_mut(id) {
                f(e);
            }
        }
    }

    /// Start an exec: returns the shim stream (raw when tty, multiplexed otherwise).
    pub fn start_exec(&self, id: &str, tty_override: Option<bool>) -> Result<(ExecRecord, std::os::unix::net::UnixStream)> {
        let ex = self.get_exec(id)?;
        if ex.running || ex.exit_code.is_some() {
            return Err(EngineError::conflict(format!("Error: Exec command {id} has already run")));
        }
        let (rec, shim) = self.shim_of(&ex.container_id)?;
        let cfg = &ex.config;
        let env = merge_env(rec.config.env.as_deref().unwrap_or(&[]), cfg.env.as_deref().unwrap_or(&[]));
        let tty = tty_override.unwrap_or(cfg.tty.unwrap_or(false));
        let p = berth_runtime::ProcessConfig {
            args: cfg.cmd.clone().unwrap_or_default(),
            env,
            cwd: cfg
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .or(rec.config.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            user: cfg.user.clone().filter(|u| !u.is_empty()).or(rec.config.user.clone()).unwrap_or_default(),
            tty,
            open_stdin: cfg.attach_stdin.unwrap_or(false),
            stdin_once: true,
            console_size: cfg.console_size.as_ref().and_then(|v| {
                if v.len() == 2 && v[0] > 0 {
                    Some((v[0] as u16, v[1] as u16))
                } else {
                    None
                }
            }),
        };
        let (shim_id, pid, stream) = match shim.exec(&p, cfg.attach_stdin.unwrap_or(false)) {
            Ok(x) => x,
            Err(e) => {
                let m = e.to_string();
                // dockerd: an exec that cannot start ends with code 126 and the runtime's
                // message in its stream (not 0, which the client would report otherwise)
                self.update_exec(id, |e| e.exit_code = Some(126));
                if let Some(i) = m.find("chdir to cwd") {
                    let why = m[i..].trim_end_matches(": unknown");
                    // dockerd adds this hint to any runtime error saying "not a directory"
                    let hint = if why.contains("not a directory") {
                        ": Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host path exists and is the expected type"
                    } else {
                        ""
                    };
                    return Err(EngineError::internal(format!("{EXEC_START_FAILED}: exec failed: unable to start container process: {why}: unknown{hint}")));
                }
                if m.contains("not found") || m.contains("no such file") {
                    let arg0 = p.args.first().map(String::as_str).unwrap_or("");
                    let why = if arg0.contains('/') { format!("stat {arg0}: no such file or directory") } else { "executable file not found in $PATH".into() };
                    return Err(EngineError::invalid(format!(
                        "{EXEC_START_FAILED}: exec failed: unable to start container process: exec: \"{arg0}\": {why}: unknown"
                    )));
                }
                return Err(EngineError::internal(format!("{EXEC_START_FAILED}: exec failed: unable to start container process: {m}: unknown")));
            }
        };
        self.update_exec(id, |e| {
            e.running = true;
            e.pid = pid as i64;
            e.shim_id = Some(shim_id.clone());
        });
        self.events.emit("container", &format!("exec_start: {}", p.args.join(" ")), &rec.id, &[("name", &rec.name), ("execID", id)]);
        Ok((self.get_exec(id)?, stream))
    }

    /// Block until a started exec exits; records and returns its exit code.
    pub fn wait_exec(&self, id: &str) -> Result<i64> {
        let ex = self.get_exec(id)?;
        let Some(sid) = ex.shim_id.clone() else { return Err(EngineError::conflict("exec not started")) };
        let (_rec, shim) = self.shim_of(&ex.container_id)?;
        let code = shim.exec_wait(&sid).map_err(|e| EngineError::internal(e.to_string()))? as i64;
        self.update_exec(id, |e| {
            e.running = false;
            e.exit_code = Some(code);
        });
        Ok(code)
    }
}

/// Docker's init layer: mount points for what the runtime mounts, and `/.dockerenv`.
/// Overlay options of a container's root. A `--rm` container's writable layer is deleted when it
/// exits, so it is mounted `volatile` (as Podman does): no fsync or syncfs reaches the host disk
/// for it, and unmounting it does not flush the whole upper filesystem. Containers whose layer
/// outlives them keep every sync.
fn rootfs_options(mut opts: Vec<String>, auto_remove: bool) -> Vec<String> {
    if auto_remove && opts.iter().any(|o| o.starts_with("upperdir=")) {
        opts.push("volatile".into());
    }
    opts
}

/// Idempotent: on an existing layer it only makes what is missing (after a power cut).
fn write_init_layer(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for d in ["dev", "dev/pts", "dev/shm", "proc", "sys", "etc"] {
        let p = dir.join(d);
        if !p.is_dir() {
            std::fs::create_dir_all(&p)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console", ".dockerenv"] {
        let p = dir.join(f);
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(&p) {
            Ok(_) => std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    match std::os::unix::fs::symlink("/proc/mounts", dir.join("etc/mtab")) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e.into()),
        _ => Ok(()),
    }
}

fn host_resolv_conf() -> String {
    let s = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // Loopback resolvers are unreachable from a separate network namespace.
    let filtered: Vec<&str> = s
        .lines()
        .filter(|l| {
            !(l.trim_start().starts_with("nameserver")
                && l.split_whitespace().nth(1).map(|ip| ip.starts_with("127.") || ip == "::1").unwrap_or(false))
        })
        .collect();
    let mut out = filtered.join("\n");
    if !out.lines().any(|l| l.trim_start().starts_with("nameserver")) {
        out.push_str("\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    } else {
        out.push('\n');
    }
    out
}

fn validate_host_config(hc: &HostConfig) -> Result<()> {
    if let Some(m) = hc.memory {
        if m < 0 {
            return Err(EngineError::invalid("invalid memory limit: must be non-negative"));
        }
        if m > 0 && m < 6 * 1024 * 1024 {
            return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
        }
    }
    if let (Some(m), Some(s)) = (hc.memory, hc.memory_swap) {
        if m > 0 && s > 0 && s < m {
            return Err(EngineError::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
        }
    }
    if let Some(n) = hc.nano_cpus {
        if n < 0 {
            return Err(EngineError::invalid("invalid CPU value: must be non-negative"));
        }
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as i64;
        if n > ncpu * 1_000_000_000 {
            return Err(EngineError::invalid(format!(
                "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )));
        }
    }
    if let Some(p) = &hc.restart_policy {
        let name = p.name.map(|n| n.to_string()).unwrap_or_default();
        if hc.auto_remove.unwrap_or(false) && !name.is_empty() && name != "no" {
            return Err(EngineError::invalid("can't create 'AutoRemove' container with restart policy"));
        }
        if p.maximum_retry_count.unwrap_or(0) < 0 {
            return Err(EngineError::invalid("invalid restart policy: maximum retry count can't be negative"));
        }
        if p.maximum_retry_count.unwrap_or(0) > 0 && name != "on-failure" {
            return Err(EngineError::invalid(format!("invalid restart policy: maximum retry count can only be used with 'on-failure'")));
        }
    }
    Ok(())
}

/// json-file `max-size` / `max-file` from `--log-opt`.
fn log_opts(hc: &HostConfig, def_size: u64, def_files: u32) -> Result<(u64, u32)> {
    let mut size = def_size;
    let mut files = def_files;
    if let Some(lc) = &hc.log_config {
        if let Some(t) = &lc.typ {
            if !t.is_empty() && t != "json-file" && t != "local" {
                return Err(EngineError::invalid(format!("logging driver {t:?} is not supported by berth (json-file is)")));
            }
        }
        for (k, v) in lc.config.clone().unwrap_or_default() {
            match k.as_str() {
                "max-size" => size = parse_size(&v).ok_or_else(|| EngineError::invalid(format!("invalid max-size: {v}")))?,
                "max-file" => {
                    files = v.parse().map_err(|_| EngineError::invalid(format!("invalid max-file: {v}")))?;
                    if files < 1 {
                        return Err(EngineError::invalid("max-file cannot be less than 1"));
                    }
                }
                "compress" | "labels" | "env" | "tag" | "mode" | "max-buffer-size" => {}
                other => return Err(EngineError::invalid(format!("unknown log opt '{other}' for json-file log driver"))),
            }
        }
    }
    Ok((size, files))
}

/// `10m`, `1g`, `512k`, `100` (bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    if n < 0.0 || !n.is_finite() {
        return None;
    }
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn env_merge() {
        let m = merge_env(&["A=1".into(), "B=2".into()], &["A=3".into(), "C=4".into()]);
        assert_eq!(m, vec!["B=2", "A=3", "C=4"]);
    }
    #[test]
    fn sizes() {
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
    }
}
