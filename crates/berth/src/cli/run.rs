//! `run` and `create`: flags → `ContainerCreateBody`, then attach / start / wait like the docker CLI.

use super::Exit;
use crate::client::{Client, DaemonError};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Bind mount a volume
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Action on unhealthy: none, kill, restart, stop (Podman's --health-on-failure)
    #[arg(long = "health-on-failure", default_value = "none")]
    pub health_on_failure: String,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long)]
    pub attach: Vec<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `12m`, `1g`, `100` → bytes (Docker's RAMInBytes: binary units).
pub fn ram_in_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    if !n.is_finite() || n < 0.0 {
        bail!("invalid size: '{s}'");
    }
    Ok((n * mult as f64) as i64)
}

/// `30s`, `1m30s`, `500ms` → nanoseconds.
pub fn duration_ns(s: &str) -> Result<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| anyhow!("invalid duration: {s}"))?;
        let m = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("invalid duration: {s}"),
        };
        total += v * m;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        bail!("invalid duration: {s} (missing unit, e.g. 30s)");
    }
    Ok(total as i64)
}

fn parse_env_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("open {path}"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.contains('=') {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.contains(char::is_whitespace) {
                bail!("invalid env file {path}: variable '{k}' contains whitespaces");
            }
            out.push(format!("{k}={v}"));
        } else if let Ok(v) = std::env::var(l.trim()) {
            out.push(format!("{}={v}", l.trim()));
        }
    }
    Ok(out)
}

fn env_arg(e: &str) -> String {
    if e.contains('=') {
        e.to_string()
    } else {
        match std::env::var(e) {
            Ok(v) => format!("{e}={v}"),
            Err(_) => e.to_string(),
        }
    }
}

/// `-v`: `/path` alone is an anonymous volume (`Config.Volumes`), the rest are `Binds`.
fn split_volumes(vs: &[String]) -> Result<(serde_json::Map<String, Value>, Vec<String>)> {
    let mut anon = serde_json::Map::new();
    let mut binds = Vec::new();
    for v in vs {
        if v.is_empty() {
            bail!("invalid empty volume spec");
        }
        if !v.contains(':') {
            if !v.starts_with('/') {
                bail!("invalid argument \"{v}\" for \"-v, --volume\" flag: invalid volume specification: '{v}'");
            }
            anon.insert(v.clone(), json!({}));
        } else {
            binds.push(v.clone());
        }
    }
    Ok((anon, binds))
}

fn parse_mount(spec: &str) -> Result<Value> {
    let mut m = serde_json::Map::new();
    let mut typ = "volume".to_string();
    let mut tmpfs = serde_json::Map::new();
    let mut vol_opts = serde_json::Map::new();
    let mut driver_opts = serde_json::Map::new();
    let mut vol_labels = serde_json::Map::new();
    let mut driver_name: Option<String> = None;
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        match k {
            "type" => typ = v.to_string(),
            "source" | "src" => {
                m.insert("Source".into(), json!(v));
            }
            "target" | "destination" | "dst" => {
                m.insert("Target".into(), json!(v));
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), json!(v != "false" && v != "0"));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), json!(ram_in_bytes(v)?));
            }
            "tmpfs-mode" => {
                tmpfs.insert("Mode".into(), json!(i64::from_str_radix(v, 8).map_err(|_| anyhow!("invalid tmpfs-mode {v}"))?));
            }
            "volume-nocopy" => {
                vol_opts.insert("NoCopy".into(), json!(v != "false" && v != "0"));
            }
            "volume-opt" => {
                let (ok, ov) = v.split_once('=').ok_or_else(|| anyhow!("invalid argument \"{spec}\" for \"--mount\" flag: invalid volume-opt '{v}'"))?;
                driver_opts.insert(ok.into(), json!(ov));
            }
            "volume-label" => {
                let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                vol_labels.insert(lk.into(), json!(lv));
            }
            "volume-driver" => {
                driver_name = Some(v.to_string());
            }
            "bind-propagation" => {
                m.insert("BindOptions".into(), json!({"Propagation": v}));
            }
            "consistency" => {}
            other => bail!("invalid argument \"{spec}\" for \"--mount\" flag: unexpected key '{other}' in '{kv}'"),
        }
    }
    m.insert("Type".into(), json!(typ));
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    if !driver_opts.is_empty() || driver_name.is_some() {
        vol_opts.insert("DriverConfig".into(), json!({"Name": driver_name.unwrap_or_default(), "Options": driver_opts}));
    }
    if !vol_labels.is_empty() {
        vol_opts.insert("Labels".into(), Value::Object(vol_labels));
    }
    if !vol_opts.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(vol_opts));
    }
    if !m.contains_key("Target") {
        bail!("invalid argument \"{spec}\" for \"--mount\" flag: target is required");
    }
    Ok(Value::Object(m))
}

fn parse_ulimit(s: &str) -> Result<Value> {
    let (name, vals) = s.split_once('=').ok_or_else(|| anyhow!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a.parse::<i64>()?, b.parse::<i64>()?),
        None => {
            let v = vals.parse::<i64>().map_err(|_| anyhow!("invalid ulimit argument: {s}"))?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

/// Split a shell-ish entrypoint string as docker does (it doesn't: it is one argument).
pub fn build_body(a: &RunArgs) -> Result<Value> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(parse_env_file(f)?);
    }
    env.extend(a.env.iter().map(|e| env_arg(e)));
    let mut labels = BTreeMap::new();
    match a.health_on_failure.as_str() {
        "none" => {}
        "kill" | "stop" | "restart" => {
            labels.insert("berth.health-on-failure".to_string(), a.health_on_failure.clone());
        }
        other => bail!("invalid --health-on-failure {other:?}: expected none, kill, restart or stop"),
    }
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let restart = {
        let (name, max) = a.restart.split_once(':').unwrap_or((a.restart.as_str(), "0"));
        match name {
            "no" | "always" | "unless-stopped" | "on-failure" => {}
            _ => bail!("invalid restart policy '{name}'"),
        }
        let max: i64 = max.parse().map_err(|_| anyhow!("invalid restart policy format: maximum retry count must be an integer"))?;
        if max != 0 && name != "on-failure" {
            bail!("invalid restart policy format: maximum retry count can only be used with 'on-failure'");
        }
        json!({"Name": if name == "no" { "" } else { name }, "MaximumRetryCount": max})
    };
    let mut hc = serde_json::Map::new();
    if let Some(m) = &a.memory {
        hc.insert("Memory".into(), json!(ram_in_bytes(m)?));
    }
    if let Some(m) = &a.memory_swap {
        hc.insert("MemorySwap".into(), json!(if m == "-1" { -1 } else { ram_in_bytes(m)? }));
    }
    if let Some(m) = &a.memory_reservation {
        hc.insert("MemoryReservation".into(), json!(ram_in_bytes(m)?));
    }
    if let Some(c) = &a.cpus {
        let f: f64 = c.parse().map_err(|_| anyhow!("invalid argument \"{c}\" for \"--cpus\" flag: failed to parse {c} as a rational number"))?;
        if !f.is_finite() || f < 0.0 {
            bail!("invalid argument \"{c}\" for \"--cpus\" flag: value is out of range");
        }
        hc.insert("NanoCpus".into(), json!((f * 1e9) as i64));
    }
    if let Some(s) = a.cpu_shares {
        hc.insert("CpuShares".into(), json!(s));
    }
    if let Some(s) = &a.cpuset_cpus {
        hc.insert("CpusetCpus".into(), json!(s));
    }
    if let Some(p) = a.pids_limit {
        hc.insert("PidsLimit".into(), json!(p));
    }
    if let Some(s) = &a.shm_size {
        hc.insert("ShmSize".into(), json!(ram_in_bytes(s)?));
    }
    hc.insert("AutoRemove".into(), json!(a.rm));
    hc.insert("RestartPolicy".into(), restart);
    hc.insert("Init".into(), json!(a.init));
    hc.insert("Privileged".into(), json!(a.privileged));
    hc.insert("ReadonlyRootfs".into(), json!(a.read_only));
    hc.insert("NetworkMode".into(), json!(a.network.clone().unwrap_or_else(|| "default".into())));
    let (anon_volumes, binds) = split_volumes(&a.volume)?;
    hc.insert("Binds".into(), json!(binds));
    hc.insert("VolumesFrom".into(), json!(a.volumes_from));
    let mut tmpfs = serde_json::Map::new();
    for t in &a.tmpfs {
        let (p, o) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.into(), json!(o));
    }
    hc.insert("Tmpfs".into(), Value::Object(tmpfs));
    hc.insert("Mounts".into(), Value::Array(a.mount.iter().map(|m| parse_mount(m)).collect::<Result<_>>()?));
    hc.insert("CapAdd".into(), json!(a.cap_add));
    hc.insert("CapDrop".into(), json!(a.cap_drop));
    hc.insert("SecurityOpt".into(), json!(a.security_opt));
    hc.insert("Dns".into(), json!(a.dns));
    hc.insert("DnsOptions".into(), json!(a.dns_option));
    hc.insert("DnsSearch".into(), json!(a.dns_search));
    hc.insert("ExtraHosts".into(), json!(a.add_host));
    hc.insert("GroupAdd".into(), json!(a.group_add));
    hc.insert("Ulimits".into(), Value::Array(a.ulimit.iter().map(|u| parse_ulimit(u)).collect::<Result<_>>()?));
    let mut sysctls = serde_json::Map::new();
    for s in &a.sysctl {
        let (k, v) = s.split_once('=').ok_or_else(|| anyhow!("invalid argument \"{s}\" for \"--sysctl\" flag"))?;
        sysctls.insert(k.into(), json!(v));
    }
    hc.insert("Sysctls".into(), Value::Object(sysctls));
    if let Some(r) = &a.runtime {
        hc.insert("Runtime".into(), json!(r));
    }
    for (k, v) in [("IpcMode", &a.ipc), ("PidMode", &a.pid), ("UTSMode", &a.uts)] {
        if let Some(v) = v {
            hc.insert(k.into(), json!(v));
        }
    }
    let mut devices = Vec::new();
    for d in &a.device {
        let parts: Vec<&str> = d.split(':').collect();
        let (h, c, p) = match parts.len() {
            1 => (parts[0], parts[0], "rwm"),
            2 if parts[1].chars().all(|c| "rwm".contains(c)) => (parts[0], parts[0], parts[1]),
            2 => (parts[0], parts[1], "rwm"),
            3 => (parts[0], parts[1], parts[2]),
            _ => bail!("invalid device specification: {d}"),
        };
        devices.push(json!({"PathOnHost": h, "PathInContainer": c, "CgroupPermissions": p}));
    }
    hc.insert("Devices".into(), json!(devices));
    let mut log_cfg = serde_json::Map::new();
    for o in &a.log_opt {
        let (k, v) = o.split_once('=').ok_or_else(|| anyhow!("invalid log opt: {o}"))?;
        log_cfg.insert(k.into(), json!(v));
    }
    hc.insert("LogConfig".into(), json!({"Type": a.log_driver.clone().unwrap_or_default(), "Config": log_cfg}));
    // Ports
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for e in &a.expose {
        let p = if e.contains('/') { e.clone() } else { format!("{e}/tcp") };
        exposed.insert(p, json!({}));
    }
    for p in &a.publish {
        for (port, b) in parse_publish(p)? {
            exposed.insert(port.clone(), json!({}));
            let list = bindings.entry(port).or_insert(json!([]));
            if let Some(arr) = list.as_array_mut() {
                arr.push(b);
            }
        }
    }
    hc.insert("PortBindings".into(), Value::Object(bindings));
    hc.insert("PublishAllPorts".into(), json!(a.publish_all));
    if let Ok((rows, cols)) = crate::cli::containers::term_size() {
        if a.tty {
            hc.insert("ConsoleSize".into(), json!([rows, cols]));
        }
    }
    let mut body = json!({
        "Hostname": a.hostname.clone().unwrap_or_default(),
        "Domainname": a.domainname.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": a.interactive && !a.detach,
        "Env": env,
        "Cmd": if a.command.is_empty() { Value::Null } else { json!(a.command) },
        "Image": a.image,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Labels": labels,
        "ExposedPorts": exposed,
        "Volumes": anon_volumes,
        "HostConfig": Value::Object(hc),
    });
    if let Some(ep) = &a.entrypoint {
        body["Entrypoint"] = json!([ep]);
    }
    let net = a.network.clone().unwrap_or_else(|| "default".into());
    if !a.network_alias.is_empty() || a.ip.is_some() || a.mac_address.is_some() {
        let mut ep = json!({"Aliases": a.network_alias});
        if let Some(ip) = &a.ip {
            ep["IPAMConfig"] = json!({"IPv4Address": ip});
        }
        if let Some(m) = &a.mac_address {
            ep["MacAddress"] = json!(m);
        }
        body["NetworkingConfig"] = json!({"EndpointsConfig": {net: ep}});
    }
    if let Some(s) = &a.stop_signal {
        body["StopSignal"] = json!(s);
    }
    if let Some(t) = a.stop_timeout {
        body["StopTimeout"] = json!(t);
    }
    if a.no_healthcheck {
        body["Healthcheck"] = json!({"Test": ["NONE"]});
    } else if a.health_cmd.is_some() || a.health_interval.is_some() || a.health_retries.is_some() {
        let mut h = serde_json::Map::new();
        if let Some(c) = &a.health_cmd {
            h.insert("Test".into(), json!(["CMD-SHELL", c]));
        }
        for (k, v) in [("Interval", &a.health_interval), ("Timeout", &a.health_timeout), ("StartPeriod", &a.health_start_period)] {
            if let Some(v) = v {
                h.insert(k.into(), json!(duration_ns(v)?));
            }
        }
        if let Some(r) = a.health_retries {
            h.insert("Retries".into(), json!(r));
        }
        body["Healthcheck"] = Value::Object(h);
    }
    Ok(body)
}

/// `-p [ip:][hostPort:]containerPort[/proto]`, with ranges.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, Value)>> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let parts: Vec<&str> = if rest.starts_with('[') {
        // [v6]:host:ctr
        let end = rest.find(']').ok_or_else(|| anyhow!("invalid ip address: {rest}"))?;
        let ip = &rest[..=end];
        let tail: Vec<&str> = rest[end + 2..].split(':').collect();
        std::iter::once(ip).chain(tail).collect()
    } else {
        rest.split(':').collect()
    };
    let (ip, host, ctr) = match parts.len() {
        1 => ("", "", parts[0]),
        2 => ("", parts[0], parts[1]),
        3 => (parts[0], parts[1], parts[2]),
        _ => bail!("invalid publish specification: {spec}"),
    };
    let range = |s: &str| -> Result<(u16, u16)> {
        if s.is_empty() {
            return Ok((0, 0));
        }
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a.parse().map_err(|_| anyhow!("invalid containerPort: {s}"))?;
        let b: u16 = b.parse().map_err(|_| anyhow!("invalid containerPort: {s}"))?;
        if b < a {
            bail!("invalid port range: {s}");
        }
        Ok((a, b))
    };
    let (c0, c1) = range(ctr)?;
    if c0 == 0 {
        bail!("invalid containerPort: {ctr}");
    }
    let (h0, h1) = range(host)?;
    let n = (c1 - c0) as usize + 1;
    if h0 != 0 && (h1 - h0) as usize + 1 != n && !(h1 > h0 && n == 1) {
        bail!("invalid ranges specified for container and host Ports: {ctr} and {host}");
    }
    let mut out = Vec::new();
    for i in 0..n {
        let hp = if h0 == 0 {
            String::new()
        } else if n == 1 && h1 > h0 {
            format!("{h0}-{h1}")
        } else {
            (h0 as usize + i).to_string()
        };
        out.push((format!("{}/{proto}", c0 as usize + i), json!({"HostIp": ip.trim_matches(|c| c == '[' || c == ']'), "HostPort": hp})));
    }
    Ok(out)
}

fn is_daemon_err(e: &anyhow::Error, status: u16) -> bool {
    e.downcast_ref::<DaemonError>().is_some_and(|d| d.status.as_u16() == status)
}

/// `docker run` / `docker create`.
pub async fn run(c: &Client, a: RunArgs, start: bool) -> Result<()> {
    let fail = |e: anyhow::Error| -> anyhow::Error {
        eprintln!("berth: {e:#}");
        if !start {
            eprintln!("See 'berth create --help'.");
        } else {
            eprintln!("See 'berth run --help'.");
        }
        Exit(125).into()
    };
    let body = build_body(&a).map_err(fail)?;
    let mut path = "/containers/create".to_string();
    if let Some(n) = &a.name {
        path.push_str(&format!("?name={}", urlenc(n)));
    }
    if a.pull == "always" {
        super::registry::pull_image(c, &a.image, a.quiet, a.platform.as_deref(), false).await.map_err(fail)?;
    }
    let created = match c.post(&path, Some(body.clone())).await {
        Ok(v) => v,
        Err(e) if is_daemon_err(&e, 404) && a.pull != "never" && e.to_string().contains("No such image") => {
            eprintln!("Unable to find image '{}' locally", with_latest(&a.image));
            super::registry::pull_image(c, &a.image, a.quiet, a.platform.as_deref(), false).await.map_err(fail)?;
            c.post(&path, Some(body)).await.map_err(fail)?
        }
        Err(e) => return Err(fail(e)),
    };
    berth_runtime::timing::mark("cli: created");
    let id = created["Id"].as_str().unwrap_or("").to_string();
    for w in created["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    if let Some(f) = &a.cidfile {
        std::fs::write(f, &id).map_err(|e| fail(anyhow!("failed to write the container ID to the file: {e}")))?;
    }
    if !start {
        println!("{id}");
        return Ok(());
    }
    if a.detach {
        if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
            return Err(fail(e));
        }
        println!("{id}");
        return Ok(());
    }
    // Attached: attach first, then wait, then start (as the docker CLI does).
    let attach_q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
        if a.interactive { "&stdin=1" } else { "" }
    );
    let conn = c.hijack(&attach_q, None).await.map_err(fail)?;
    berth_runtime::timing::mark("cli: attached");
    let cond = if a.rm { "removed" } else { "next-exit" };
    let wc = c.clone();
    let wid = id.clone();
    let waiter = tokio::spawn(async move { wc.post(&format!("/containers/{wid}/wait?condition={cond}"), None).await });
    // Give the wait request a moment to register before starting.
    tokio::task::yield_now().await;
    if let Err(e) = c.post(&format!("/containers/{id}/start"), None).await {
        let msg = e.to_string();
        eprintln!("berth: {msg}");
        let code = if msg.contains("executable file not found") || msg.contains("no such file") || msg.contains("not found") {
            127
        } else if msg.contains("permission denied") {
            126
        } else {
            125
        };
        if a.rm {
            let _ = c.json(hyper::Method::DELETE, &format!("/containers/{id}?force=1"), None).await;
        }
        return Err(Exit(code).into());
    }
    berth_runtime::timing::mark("cli: started");
    let raw = if a.tty && a.interactive { crate::cli::containers::RawTerminal::enter().ok() } else { None };
    if a.tty {
        crate::cli::containers::spawn_resize_watcher(c.clone(), format!("/containers/{id}/resize"));
    }
    crate::cli::containers::pump(conn, a.interactive, a.tty).await?;
    drop(raw);
    berth_runtime::timing::mark("cli: output done");
    let status = match waiter.await {
        Ok(Ok(v)) => v["StatusCode"].as_i64().unwrap_or(0),
        Ok(Err(e)) => {
            if is_daemon_err(&e, 404) {
                0
            } else {
                return Err(e);
            }
        }
        Err(e) => return Err(anyhow!(e)),
    };
    berth_runtime::timing::mark("cli: waited");
    if status != 0 {
        return Err(Exit(status as i32).into());
    }
    Ok(())
}

fn with_latest(img: &str) -> String {
    let last = img.rsplit('/').next().unwrap_or(img);
    if last.contains(':') || img.contains('@') {
        img.to_string()
    } else {
        format!("{img}:latest")
    }
}

pub fn urlenc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ports() {
        let v = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(v[0].0, "80/tcp");
        assert_eq!(v[0].1["HostPort"], "8080");
        let v = parse_publish("8000-8001:80-81/udp").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0, "81/udp");
        assert!(parse_publish("x:y").is_err());
    }
    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("32m").unwrap(), 32 << 20);
        assert!(ram_in_bytes("abc").is_err());
        assert_eq!(duration_ns("1m30s").unwrap(), 90_000_000_000);
    }
}
