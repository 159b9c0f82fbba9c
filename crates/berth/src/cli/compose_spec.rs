//! Compose service → Engine API `ContainerCreate` body, names and labels as Docker Compose
//! v2 sets them, and the config hash `up` compares to decide whether to recreate.
//!
//! Pure code (no I/O except `stat` on bind sources): everything the engine will see is
//! decided here, so the mapping is unit-tested without a daemon. A key berth cannot honour
//! is refused with an error naming the service and key, never silently dropped.

use anyhow::{anyhow, bail, Result};
use berth_compose::model::{Command, Service};
use berth_compose::Project;
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::collections::BTreeMap;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_VERSION: &str = "com.docker.compose.version";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_WORKDIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_DEPENDS: &str = "com.docker.compose.depends_on";
pub const LABEL_IMAGE: &str = "com.docker.compose.image";

/// The compose version berth reports in `com.docker.compose.version` labels.
pub const COMPOSE_VERSION: &str = concat!("berth-", env!("CARGO_PKG_VERSION"));

/// Container name of replica `n`: `container_name`, else `<project>-<service>-<n>`.
pub fn container_name(p: &Project, service: &str, svc: &Service, n: u64) -> String {
    match &svc.container_name {
        Some(c) => c.clone(),
        None => format!("{}-{service}-{n}", p.name),
    }
}

/// The image a service runs: `image:`, else the name a build gets (`<project>-<service>`).
pub fn image_name(p: &Project, service: &str, svc: &Service) -> String {
    match &svc.image {
        Some(i) => i.clone(),
        None => format!("{}-{service}", p.name),
    }
}

/// Engine-side name of a project network key.
pub fn network_name(p: &Project, key: &str) -> String {
    p.networks.get(key).and_then(|r| r.name.clone()).unwrap_or_else(|| format!("{}_{key}", p.name))
}

/// Engine-side name of a project volume key.
pub fn volume_name(p: &Project, key: &str) -> String {
    p.volumes.get(key).and_then(|r| r.name.clone()).unwrap_or_else(|| format!("{}_{key}", p.name))
}

/// Hash of what makes a container: the service model without the keys that do not change
/// a container (replica count, build and pull settings). `up` recreates a container whose
/// `config-hash` label differs.
pub fn config_hash(svc: &Service) -> String {
    let mut s = svc.clone();
    s.scale = None;
    if let Some(d) = &mut s.deploy {
        d.replicas = None;
    }
    s.build = None;
    s.pull_policy = None;
    let bytes = serde_json::to_vec(&s).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Networks of a service in attach order (higher `priority` first, then by name).
pub fn service_networks(svc: &Service) -> Vec<(String, Vec<String>, Option<String>)> {
    let mut v: Vec<(u64, String, Vec<String>, Option<String>)> = svc
        .networks
        .iter()
        .map(|(k, n)| {
            let n = n.clone().unwrap_or_default();
            (n.priority.unwrap_or(0), k.clone(), n.aliases, n.ipv4_address)
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter().map(|(_, k, a, ip)| (k, a, ip)).collect()
}

/// Go-style duration (`1m30s`, `500ms`) → nanoseconds.
fn dur(field: &str, s: &str) -> Result<i64> {
    super::run::duration_ns(s).map_err(|e| anyhow!("{field}: {e}"))
}

fn bytes(field: &str, s: &str) -> Result<i64> {
    super::run::ram_in_bytes(s).map_err(|e| anyhow!("{field}: {e}"))
}

fn argv(field: &str, c: &Command) -> Result<Vec<String>> {
    c.to_argv().map_err(|e| anyhow!("{field}: {e}"))
}

/// Keys of the model berth does not implement: refused rather than ignored.
fn refuse_unsupported(svc: &Service) -> Result<()> {
    let mut bad = Vec::new();
    for (k, set) in [
        ("annotations", svc.annotations.is_some()),
        ("blkio_config", svc.blkio_config.is_some()),
        ("develop", svc.develop.is_some()),
        ("device_cgroup_rules", svc.device_cgroup_rules.is_some()),
        ("storage_opt", svc.storage_opt.is_some()),
        ("links", !svc.links.is_empty()),
        ("external_links", !svc.external_links.is_empty()),
        ("userns_mode", svc.userns_mode.is_some()),
    ] {
        if set {
            bad.push(k);
        }
    }
    if let Some(d) = &svc.deploy {
        if let Some(m) = &d.mode {
            if m != "replicated" {
                bad.push("deploy.mode");
            }
        }
        if let Some(r) = &d.resources {
            if r.limits.as_ref().is_some_and(|l| l.devices.is_some()) || r.reservations.as_ref().is_some_and(|l| l.devices.is_some() || l.cpus.is_some() || l.pids.is_some()) {
                bad.push("deploy.resources.reservations");
            }
        }
    }
    if let Some(b) = &bad.first() {
        bail!("{b} is not supported by berth compose");
    }
    Ok(())
}

/// What `run` changes on top of the service definition.
#[derive(Default, Debug, Clone)]
pub struct Overrides {
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub publish: Vec<String>,
    /// `false`: drop the service's `ports` (compose run without `--service-ports`).
    pub service_ports: bool,
    pub volumes: Vec<String>,
    pub tty: bool,
    pub interactive: bool,
    pub oneoff: bool,
    /// `--use-aliases` / regular service containers get the service name as an alias.
    pub aliases: bool,
    pub labels: Vec<String>,
}

/// The `POST /containers/create` body for one container of `service`.
pub fn create_body(p: &Project, service: &str, svc: &Service, number: u64, o: &Overrides) -> Result<Value> {
    create_body_inner(p, service, svc, number, o).map_err(|e| anyhow!("service {service:?}: {e:#}"))
}

fn create_body_inner(p: &Project, service: &str, svc: &Service, number: u64, o: &Overrides) -> Result<Value> {
    refuse_unsupported(svc)?;
    let mut labels: BTreeMap<String, String> = svc.labels.clone();
    labels.insert(LABEL_PROJECT.into(), p.name.clone());
    labels.insert(LABEL_SERVICE.into(), service.into());
    labels.insert(LABEL_NUMBER.into(), number.to_string());
    labels.insert(LABEL_ONEOFF.into(), if o.oneoff { "True" } else { "False" }.into());
    labels.insert(LABEL_HASH.into(), config_hash(svc));
    labels.insert(LABEL_VERSION.into(), COMPOSE_VERSION.into());
    labels.insert(LABEL_WORKDIR.into(), p.working_dir.display().to_string());
    labels.insert(LABEL_FILES.into(), p.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(","));
    labels.insert(LABEL_IMAGE.into(), image_name(p, service, svc));
    labels.insert(
        LABEL_DEPENDS.into(),
        svc.depends_on.iter().map(|(k, d)| format!("{k}:{}:{}", d.condition, d.restart)).collect::<Vec<_>>().join(","),
    );
    for l in &o.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.into(), v.into());
    }

    let mut env: Vec<String> = svc.environment.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
    env.extend(o.env.iter().cloned());

    let mut hc = Map::new();
    // resources
    if let Some(m) = &svc.mem_limit {
        hc.insert("Memory".into(), json!(bytes("mem_limit", m)?));
    }
    if let Some(m) = &svc.memswap_limit {
        hc.insert("MemorySwap".into(), json!(if m == "-1" { -1 } else { bytes("memswap_limit", m)? }));
    }
    if let Some(m) = &svc.mem_reservation {
        hc.insert("MemoryReservation".into(), json!(bytes("mem_reservation", m)?));
    }
    let nano = |field: &str, c: &str| -> Result<i64> {
        let f: f64 = c.trim().parse().map_err(|_| anyhow!("{field}: invalid number of CPUs {c:?}"))?;
        if !f.is_finite() || f < 0.0 {
            bail!("{field}: invalid number of CPUs {c:?}");
        }
        Ok((f * 1e9) as i64)
    };
    if let Some(c) = &svc.cpus {
        hc.insert("NanoCpus".into(), json!(nano("cpus", c)?));
    }
    if let Some(s) = &svc.cpu_shares {
        hc.insert("CpuShares".into(), json!(s.parse::<i64>().map_err(|_| anyhow!("cpu_shares: invalid number {s:?}"))?));
    }
    if let Some(s) = &svc.cpuset {
        hc.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(lim) = svc.deploy.as_ref().and_then(|d| d.resources.as_ref()).and_then(|r| r.limits.as_ref()) {
        if let Some(c) = &lim.cpus {
            hc.insert("NanoCpus".into(), json!(nano("deploy.resources.limits.cpus", c)?));
        }
        if let Some(m) = &lim.memory {
            hc.insert("Memory".into(), json!(bytes("deploy.resources.limits.memory", m)?));
        }
        if let Some(pids) = lim.pids {
            hc.insert("PidsLimit".into(), json!(pids));
        }
    }
    if let Some(res) = svc.deploy.as_ref().and_then(|d| d.resources.as_ref()).and_then(|r| r.reservations.as_ref()) {
        if let Some(m) = &res.memory {
            hc.insert("MemoryReservation".into(), json!(bytes("deploy.resources.reservations.memory", m)?));
        }
    }
    if let Some(s) = &svc.shm_size {
        hc.insert("ShmSize".into(), json!(bytes("shm_size", s)?));
    }
    if let Some(s) = &svc.oom_score_adj {
        hc.insert("OomScoreAdj".into(), json!(s.parse::<i64>().map_err(|_| anyhow!("oom_score_adj: invalid number {s:?}"))?));
    }
    if let Some(u) = &svc.ulimits {
        let mut out = Vec::new();
        let m = u.as_mapping().ok_or_else(|| anyhow!("ulimits: expected a mapping"))?;
        for (k, v) in m {
            let name = k.as_str().ok_or_else(|| anyhow!("ulimits: invalid name"))?;
            let (soft, hard) = match v {
                serde_yaml_ng::Value::Number(n) => {
                    let n = n.as_i64().ok_or_else(|| anyhow!("ulimits.{name}: invalid number"))?;
                    (n, n)
                }
                serde_yaml_ng::Value::Mapping(m) => {
                    let get = |k: &str| m.get(k).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
                    (get("soft").ok_or_else(|| anyhow!("ulimits.{name}.soft: missing"))?, get("hard").ok_or_else(|| anyhow!("ulimits.{name}.hard: missing"))?)
                }
                serde_yaml_ng::Value::String(s) => {
                    let n: i64 = s.parse().map_err(|_| anyhow!("ulimits.{name}: invalid number {s:?}"))?;
                    (n, n)
                }
                _ => bail!("ulimits.{name}: expected a number or soft/hard"),
            };
            out.push(json!({"Name": name, "Soft": soft, "Hard": hard}));
        }
        hc.insert("Ulimits".into(), json!(out));
    }
    // restart
    let restart = match svc.restart.as_deref() {
        _ if o.oneoff => json!({"Name": "", "MaximumRetryCount": 0}),
        None | Some("no") | Some("") => json!({"Name": "", "MaximumRetryCount": 0}),
        Some(r @ ("always" | "unless-stopped" | "on-failure")) => json!({"Name": r, "MaximumRetryCount": 0}),
        Some(r) => match r.strip_prefix("on-failure:") {
            Some(n) => json!({"Name": "on-failure", "MaximumRetryCount": n.parse::<i64>().map_err(|_| anyhow!("restart: invalid retry count in {r:?}"))?}),
            None => bail!("restart: invalid restart policy {r:?}"),
        },
    };
    // `deploy.restart_policy` wins over `restart`, as in Docker Compose
    let restart = match svc.deploy.as_ref().and_then(|d| d.other.get("restart_policy")) {
        Some(rp) if !o.oneoff => {
            let max = rp.get("max_attempts").and_then(|m| m.as_i64().or_else(|| m.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0);
            match rp.get("condition").and_then(|c| c.as_str()).unwrap_or("any") {
                "none" => json!({"Name": "", "MaximumRetryCount": 0}),
                "on-failure" => json!({"Name": "on-failure", "MaximumRetryCount": max}),
                "any" => json!({"Name": "always", "MaximumRetryCount": 0}),
                other => bail!("deploy.restart_policy.condition: invalid value {other:?}"),
            }
        }
        _ => restart,
    };
    hc.insert("RestartPolicy".into(), restart);
    if let Some(i) = svc.init {
        hc.insert("Init".into(), json!(i));
    }
    hc.insert("Privileged".into(), json!(svc.privileged.unwrap_or(false)));
    hc.insert("ReadonlyRootfs".into(), json!(svc.read_only.unwrap_or(false)));
    hc.insert("CapAdd".into(), json!(svc.cap_add));
    hc.insert("CapDrop".into(), json!(svc.cap_drop));
    hc.insert("SecurityOpt".into(), json!(svc.security_opt));
    hc.insert("Dns".into(), json!(svc.dns));
    hc.insert("DnsOptions".into(), json!(svc.dns_opt));
    hc.insert("DnsSearch".into(), json!(svc.dns_search));
    hc.insert("ExtraHosts".into(), json!(svc.extra_hosts.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>()));
    hc.insert("GroupAdd".into(), json!(svc.group_add));
    hc.insert("Sysctls".into(), json!(svc.sysctls));
    if let Some(r) = &svc.runtime {
        hc.insert("Runtime".into(), json!(r));
    }
    if let Some(cg) = &svc.cgroup_parent {
        hc.insert("CgroupParent".into(), json!(cg));
    }
    let ref_mode = |field: &str, v: &str| -> Result<String> {
        Ok(match v.strip_prefix("service:") {
            Some(s) => {
                let dep = p.services.get(s).ok_or_else(|| anyhow!("{field}: unknown service {s:?}"))?;
                format!("container:{}", container_name(p, s, dep, 1))
            }
            None => v.to_string(),
        })
    };
    if let Some(v) = &svc.ipc {
        hc.insert("IpcMode".into(), json!(ref_mode("ipc", v)?));
    }
    if let Some(v) = &svc.pid {
        hc.insert("PidMode".into(), json!(ref_mode("pid", v)?));
    }
    let mut vfrom = Vec::new();
    for v in &svc.volumes_from {
        let (src, mode) = match v.rsplit_once(':') {
            Some((s, m @ ("ro" | "rw"))) => (s, Some(m)),
            _ => (v.as_str(), None),
        };
        let name = match src.strip_prefix("container:") {
            Some(c) => c.to_string(),
            None => {
                let dep = p.services.get(src).ok_or_else(|| anyhow!("volumes_from: unknown service {src:?}"))?;
                container_name(p, src, dep, 1)
            }
        };
        vfrom.push(match mode {
            Some(m) => format!("{name}:{m}"),
            None => name,
        });
    }
    hc.insert("VolumesFrom".into(), json!(vfrom));
    let mut devices = Vec::new();
    if let Some(d) = &svc.devices {
        let list = d.as_sequence().ok_or_else(|| anyhow!("devices: expected a sequence"))?;
        for it in list {
            let s = it.as_str().ok_or_else(|| anyhow!("devices: expected strings"))?;
            let parts: Vec<&str> = s.split(':').collect();
            let (h, c, perm) = match parts.len() {
                1 => (parts[0], parts[0], "rwm"),
                2 => (parts[0], parts[1], "rwm"),
                3 => (parts[0], parts[1], parts[2]),
                _ => bail!("devices: invalid device {s:?}"),
            };
            devices.push(json!({"PathOnHost": h, "PathInContainer": c, "CgroupPermissions": perm}));
        }
    }
    hc.insert("Devices".into(), json!(devices));
    if let Some(l) = &svc.logging {
        let driver = l.get("driver").and_then(|d| d.as_str()).unwrap_or("").to_string();
        let mut cfg = Map::new();
        if let Some(opts) = l.get("options").and_then(|o| o.as_mapping()) {
            for (k, v) in opts {
                let k = k.as_str().unwrap_or_default().to_string();
                let v = match v {
                    serde_yaml_ng::Value::String(s) => s.clone(),
                    serde_yaml_ng::Value::Number(n) => n.to_string(),
                    serde_yaml_ng::Value::Bool(b) => b.to_string(),
                    _ => bail!("logging.options.{k}: expected a string"),
                };
                cfg.insert(k, json!(v));
            }
        }
        hc.insert("LogConfig".into(), json!({"Type": driver, "Config": cfg}));
    }

    // ports
    let mut exposed = Map::new();
    let mut bindings = Map::new();
    for e in &svc.expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let a: u16 = a.parse().map_err(|_| anyhow!("expose: invalid port {e:?}"))?;
        let b: u16 = b.parse().map_err(|_| anyhow!("expose: invalid port {e:?}"))?;
        for port in a..=b {
            exposed.insert(format!("{port}/{proto}"), json!({}));
        }
    }
    if o.service_ports {
        for port in &svc.ports {
            let key = format!("{}/{}", port.target, port.protocol);
            exposed.insert(key.clone(), json!({}));
            if port.mode != "ingress" && port.mode != "host" {
                bail!("ports: invalid mode {:?}", port.mode);
            }
            let b = json!({"HostIp": port.host_ip.clone().unwrap_or_default(), "HostPort": port.published.clone().unwrap_or_default()});
            if let Some(a) = bindings.entry(key).or_insert(json!([])).as_array_mut() {
                a.push(b);
            }
        }
    }
    for spec in &o.publish {
        for (key, b) in super::run::parse_publish(spec)? {
            exposed.insert(key.clone(), json!({}));
            if let Some(a) = bindings.entry(key).or_insert(json!([])).as_array_mut() {
                a.push(b);
            }
        }
    }
    hc.insert("PortBindings".into(), Value::Object(bindings));

    // volumes, tmpfs, configs, secrets
    let mut binds = Vec::new();
    let mut anon = Map::new();
    let mut tmpfs = Map::new();
    for v in &svc.volumes {
        let ro = if v.read_only { ":ro" } else { "" };
        match v.kind.as_str() {
            "bind" => {
                let src = v.source.as_deref().ok_or_else(|| anyhow!("volumes: bind mount of {} has no source", v.target))?;
                let create = v.bind.as_ref().and_then(|b| b.create_host_path).unwrap_or(true);
                if !create && !std::path::Path::new(src).exists() {
                    bail!("volumes: bind source path does not exist: {src}");
                }
                let mut opts: Vec<&str> = Vec::new();
                if v.read_only {
                    opts.push("ro");
                }
                if let Some(pr) = v.bind.as_ref().and_then(|b| b.propagation.as_deref()) {
                    opts.push(pr);
                }
                if let Some(z) = v.bind.as_ref().and_then(|b| b.selinux.as_deref()) {
                    opts.push(z);
                }
                binds.push(if opts.is_empty() { format!("{src}:{}", v.target) } else { format!("{src}:{}:{}", v.target, opts.join(",")) });
            }
            "volume" => match &v.source {
                Some(key) => {
                    if v.volume.as_ref().is_some_and(|vo| vo.subpath.is_some()) {
                        bail!("volumes: volume subpath is not supported by berth compose");
                    }
                    let nocopy = if v.volume.as_ref().and_then(|vo| vo.nocopy).unwrap_or(false) {
                        if v.read_only {
                            ",nocopy"
                        } else {
                            ":nocopy"
                        }
                    } else {
                        ""
                    };
                    binds.push(format!("{}:{}{ro}{nocopy}", volume_name(p, key), v.target));
                }
                None => {
                    anon.insert(v.target.clone(), json!({}));
                }
            },
            "tmpfs" => {
                let mut opts = Vec::new();
                if let Some(t) = &v.tmpfs {
                    if let Some(s) = &t.size {
                        opts.push(format!("size={}", bytes("volumes.tmpfs.size", s)?));
                    }
                    if let Some(m) = t.mode {
                        opts.push(format!("mode={m:o}"));
                    }
                }
                if v.read_only {
                    opts.push("ro".into());
                }
                tmpfs.insert(v.target.clone(), json!(opts.join(",")));
            }
            other => bail!("volumes: mount type {other:?} is not supported by berth compose"),
        }
    }
    for t in &svc.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(path.to_string(), json!(opts));
    }
    for (what, refs, objs, base) in [("configs", &svc.configs, &p.configs, "/"), ("secrets", &svc.secrets, &p.secrets, "/run/secrets/")] {
        for r in refs {
            let obj = objs.get(&r.source).ok_or_else(|| anyhow!("{what}: undefined {} {:?}", &what[..what.len() - 1], r.source))?;
            let file = match (&obj.file, obj.external) {
                (Some(f), _) => f.clone(),
                (None, true) => bail!("{what}.{}: external {what} are a swarm feature, not supported by berth compose", r.source),
                (None, false) => bail!("{what}.{}: only file-based {what} are supported by berth compose", r.source),
            };
            if r.uid.is_some() || r.gid.is_some() || r.mode.is_some() {
                eprintln!("WARNING: service {service:?}: {what}.{}: uid, gid and mode are not applied to file-based {what} (bind mounted read-only)", r.source);
            }
            let target = match &r.target {
                Some(t) if t.starts_with('/') => t.clone(),
                Some(t) => format!("{base}{t}"),
                None => format!("{base}{}", r.source),
            };
            binds.push(format!("{file}:{target}:ro"));
        }
    }
    for v in &o.volumes {
        let parts: Vec<&str> = v.splitn(3, ':').collect();
        if parts.len() == 1 {
            anon.insert(v.clone(), json!({}));
        } else if parts[0].starts_with('.') {
            let abs = p.working_dir.join(parts[0]);
            binds.push(format!("{}:{}", abs.display(), parts[1..].join(":")));
        } else {
            // a bind or volume at the path replaces an anonymous volume there
            anon.remove(parts[1]);
            binds.push(v.clone());
        }
    }
    hc.insert("Binds".into(), json!(binds));
    hc.insert("Tmpfs".into(), Value::Object(tmpfs));

    // networks
    let mut endpoints = Map::new();
    let nets = service_networks(svc);
    let mode = match &svc.network_mode {
        Some(m) => match m.strip_prefix("service:") {
            Some(s) => {
                let dep = p.services.get(s).ok_or_else(|| anyhow!("network_mode: unknown service {s:?}"))?;
                format!("container:{}", container_name(p, s, dep, 1))
            }
            None => m.clone(),
        },
        None => match nets.first() {
            Some((k, _, _)) => network_name(p, k),
            None => "default".into(),
        },
    };
    if svc.network_mode.is_none() {
        // the first network at create, the others connected before start (see `up`)
        if let Some((k, aliases, ip)) = nets.first() {
            endpoints.insert(network_name(p, k), endpoint_config(service, aliases, ip.as_deref(), svc.mac_address.as_deref(), o.aliases));
        }
    } else if svc.mac_address.is_some() {
        bail!("mac_address: only applies to a service on networks, not network_mode");
    }
    hc.insert("NetworkMode".into(), json!(mode));

    let mut body = json!({
        "Hostname": svc.hostname.clone().unwrap_or_default(),
        "Domainname": svc.domainname.clone().unwrap_or_default(),
        "User": o.user.clone().or_else(|| svc.user.clone()).unwrap_or_default(),
        "AttachStdin": o.interactive,
        "AttachStdout": o.oneoff,
        "AttachStderr": o.oneoff,
        "Tty": o.tty || svc.tty.unwrap_or(false),
        "OpenStdin": o.interactive || svc.stdin_open.unwrap_or(false),
        "StdinOnce": o.interactive,
        "Env": env,
        "Image": image_name(p, service, svc),
        "WorkingDir": o.workdir.clone().or_else(|| svc.working_dir.clone()).unwrap_or_default(),
        "Labels": labels,
        "ExposedPorts": exposed,
        "Volumes": anon,
        "HostConfig": Value::Object(hc),
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    });
    match (&o.command, &svc.command) {
        (Some(c), _) => body["Cmd"] = json!(c),
        (None, Some(c)) => body["Cmd"] = json!(argv("command", c)?),
        _ => {}
    }
    match (&o.entrypoint, &svc.entrypoint) {
        (Some(e), _) => body["Entrypoint"] = json!(e),
        (None, Some(e)) => body["Entrypoint"] = json!(argv("entrypoint", e)?),
        _ => {}
    }
    if let Some(s) = &svc.stop_signal {
        body["StopSignal"] = json!(s);
    }
    if let Some(g) = &svc.stop_grace_period {
        let ns = dur("stop_grace_period", g)?;
        body["StopTimeout"] = json!((ns + 999_999_999) / 1_000_000_000);
    }
    if let Some(h) = &svc.healthcheck {
        if h.disable {
            body["Healthcheck"] = json!({"Test": ["NONE"]});
        } else {
            let mut m = Map::new();
            if !h.test.is_empty() {
                m.insert("Test".into(), json!(h.test));
            }
            for (k, f, v) in [("Interval", "interval", &h.interval), ("Timeout", "timeout", &h.timeout), ("StartPeriod", "start_period", &h.start_period), ("StartInterval", "start_interval", &h.start_interval)] {
                if let Some(v) = v {
                    m.insert(k.into(), json!(dur(&format!("healthcheck.{f}"), v)?));
                }
            }
            if let Some(r) = h.retries {
                m.insert("Retries".into(), json!(r));
            }
            body["Healthcheck"] = Value::Object(m);
        }
    }
    Ok(body)
}

/// `EndpointSettings` for one network: the service name as an alias (so replicas are
/// found by service name), plus the configured aliases.
pub fn endpoint_config(service: &str, aliases: &[String], ip: Option<&str>, mac: Option<&str>, service_alias: bool) -> Value {
    let mut all: Vec<String> = Vec::new();
    if service_alias {
        all.push(service.to_string());
    }
    all.extend(aliases.iter().cloned());
    let mut ep = json!({"Aliases": all});
    if let Some(ip) = ip {
        ep["IPAMConfig"] = json!({"IPv4Address": ip});
    }
    if let Some(m) = mac {
        ep["MacAddress"] = json!(m);
    }
    ep
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::{load, LoadOptions};

    fn project(yaml: &str) -> Project {
        let dir = std::env::temp_dir().join(format!("berth-cspec-{}-{}", std::process::id(), yaml.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        let p = load(&LoadOptions { cwd: dir.clone(), project_name: Some("demo".into()), ..Default::default() }).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        p
    }

    #[test]
    fn body_maps_service_keys() {
        let p = project(
            "services:\n  web:\n    image: busybox\n    command: httpd -f -p 80\n    environment: [A=1]\n    ports: ['127.0.0.1:8080:80']\n    volumes: [data:/data, /tmp:/host:ro]\n    networks:\n      default:\n        aliases: [www]\n    healthcheck:\n      test: true\n      interval: 1s\n    restart: on-failure:3\n    stop_grace_period: 1500ms\n    deploy:\n      replicas: 2\n      resources:\n        limits: {memory: 64m, cpus: '0.5'}\nvolumes:\n  data: {}\n",
        );
        let svc = &p.services["web"];
        let b = create_body(&p, "web", svc, 2, &Overrides { service_ports: true, aliases: true, ..Default::default() }).unwrap();
        assert_eq!(b["Cmd"], json!(["httpd", "-f", "-p", "80"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Labels"][LABEL_PROJECT], "demo");
        assert_eq!(b["Labels"][LABEL_NUMBER], "2");
        assert_eq!(b["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(b["HostConfig"]["Binds"], json!(["demo_data:/data", "/tmp:/host:ro"]));
        assert_eq!(b["HostConfig"]["NetworkMode"], "demo_default");
        assert_eq!(b["NetworkingConfig"]["EndpointsConfig"]["demo_default"]["Aliases"], json!(["web", "www"]));
        assert_eq!(b["HostConfig"]["Memory"], 64 << 20);
        assert_eq!(b["HostConfig"]["NanoCpus"], 500_000_000);
        assert_eq!(b["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
        assert_eq!(b["StopTimeout"], 2);
        assert_eq!(b["Healthcheck"]["Test"], json!(["CMD-SHELL", "true"]));
        assert_eq!(b["Healthcheck"]["Interval"], 1_000_000_000i64);
        assert_eq!(container_name(&p, "web", svc, 2), "demo-web-2");
    }

    #[test]
    fn hash_ignores_replicas_only() {
        let a = project("services:\n  s:\n    image: busybox\n    deploy: {replicas: 1}\n");
        let b = project("services:\n  s:\n    image: busybox\n    deploy: {replicas: 3}\n");
        let c = project("services:\n  s:\n    image: busybox\n    command: sleep 1\n");
        assert_eq!(config_hash(&a.services["s"]), config_hash(&b.services["s"]));
        assert_ne!(config_hash(&a.services["s"]), config_hash(&c.services["s"]));
    }

    #[test]
    fn deploy_restart_policy_wins() {
        let p = project("services:\n  s:\n    image: busybox\n    restart: always\n    deploy:\n      restart_policy: {condition: on-failure, max_attempts: 4}\n");
        let b = create_body(&p, "s", &p.services["s"], 1, &Overrides::default()).unwrap();
        assert_eq!(b["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 4}));
    }

    #[test]
    fn unsupported_keys_are_refused() {
        let p = project("services:\n  s:\n    image: busybox\n    links: [t]\n  t:\n    image: busybox\n");
        let e = create_body(&p, "s", &p.services["s"], 1, &Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("links is not supported"), "{e}");
    }
}
