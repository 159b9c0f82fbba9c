//! Networks: records in the database, the kernel side through `berth-network`'s [`NetManager`].
//!
//! Predefined networks `bridge`, `host` and `none` exist from the first start, as in Docker.
//! A container on a bridge network gets a network namespace made here (bind-mounted under
//! `<exec-root>/netns`), one endpoint per network, and its published ports on the first one.
//! The endpoints are persisted in the container record so [`Engine::restore_networks`] can
//! reconcile the kernel after a daemon crash.

use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{EngineError, ErrorKind, Result};
use crate::meta::NETWORKS;
use berth_network::{Endpoint, EndpointSpec, NetError, NetErrorKind, NetworkSpec, PortBinding, Proto};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null` (Docker's name for none).
    pub driver: String,
    pub created: String,
    pub internal: bool,
    pub attachable: bool,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// The filled spec of a bridge network (subnet, gateway, bridge device).
    pub spec: Option<NetworkSpec>,
    /// IPAM config as the user gave it (for inspect).
    #[serde(default)]
    pub ipam_config: Vec<serde_json::Value>,
}

impl NetworkRecord {
    pub fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
}

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        let kind = match e.kind() {
            NetErrorKind::NotFound => ErrorKind::NotFound,
            NetErrorKind::Conflict => ErrorKind::Conflict,
            NetErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        EngineError::new(kind, e.to_string())
    }
}

fn random_id() -> String {
    let a: [u8; 32] = rand::random();
    hex::encode(a)
}

/// One published port, parsed from `HostConfig.PortBindings` / `PublishAllPorts`.
pub fn port_bindings(rec: &ContainerRecord) -> Result<Vec<PortBinding>> {
    let mut out = Vec::new();
    let parse_port = |k: &str| -> Result<(u16, u16, Proto)> {
        let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return Err(EngineError::invalid(format!("invalid proto: {other}"))),
        };
        let (a, b) = p.split_once('-').unwrap_or((p, p));
        let a: u16 = a.parse().map_err(|_| EngineError::invalid(format!("invalid port: {k}")))?;
        let b: u16 = b.parse().map_err(|_| EngineError::invalid(format!("invalid port: {k}")))?;
        Ok((a, b, proto))
    };
    let mut published = std::collections::HashSet::new();
    if let Some(pm) = &rec.host_config.port_bindings {
        let mut keys: Vec<&String> = pm.keys().collect();
        keys.sort();
        for k in keys {
            let (c1, c2, proto) = parse_port(k)?;
            for b in pm[k].clone().unwrap_or_default() {
                let ip = b.host_ip.clone().unwrap_or_default();
                let host_ip = match ip.as_str() {
                    "" | "0.0.0.0" => None,
                    "::" => None,
                    s => Some(s.parse::<Ipv4Addr>().map_err(|_| EngineError::invalid(format!("invalid host IP: {s}")))?),
                };
                let hp = b.host_port.clone().unwrap_or_default();
                let host = if hp.is_empty() {
                    None
                } else {
                    let (a, bb) = hp.split_once('-').unwrap_or((&hp, &hp));
                    let a: u16 = a.parse().map_err(|_| EngineError::invalid(format!("invalid host port: {hp}")))?;
                    let bb: u16 = bb.parse().map_err(|_| EngineError::invalid(format!("invalid host port: {hp}")))?;
                    Some((a, bb))
                };
                out.extend(PortBinding::expand_range(host_ip, host, (c1, c2), proto)?);
                published.insert(k.clone());
            }
        }
    }
    if rec.host_config.publish_all_ports.unwrap_or(false) {
        for k in rec.config.exposed_ports.clone().unwrap_or_default() {
            if published.contains(&k) {
                continue;
            }
            let (c1, c2, proto) = parse_port(&k)?;
            out.extend(PortBinding::expand_range(None, None, (c1, c2), proto)?);
        }
    }
    Ok(out)
}

impl Engine {
    fn net(&self) -> Result<&berth_network::NetManager> {
        self.net.as_ref().ok_or_else(|| {
            EngineError::internal("networking is unavailable in this daemon (see the daemon log for why)")
        })
    }

    pub fn list_networks(&self) -> Result<Vec<NetworkRecord>> {
        let mut v: Vec<NetworkRecord> = self.meta.list::<NetworkRecord>(NETWORKS)?.into_iter().map(|(_, r)| r).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Find a network by exact id, exact name, or unique id prefix (Docker's order).
    pub fn get_network(&self, name: &str) -> Result<NetworkRecord> {
        let all = self.list_networks()?;
        if let Some(n) = all.iter().find(|n| n.id == name) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name == name) {
            return Ok(n.clone());
        }
        let m: Vec<&NetworkRecord> = all.iter().filter(|n| !name.is_empty() && n.id.starts_with(name)).collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(EngineError::not_found(format!("network {name} not found"))),
            _ => Err(EngineError::invalid(format!("network {name} is ambiguous ({} matches found based on ID prefix)", m.len()))),
        }
    }

    /// Create the predefined networks on first start, then make the kernel match the database.
    pub(crate) fn init_networks(&self) -> Result<()> {
        let Some(mgr) = self.net.as_ref() else { return Ok(()) };
        // Make the kernel match the database first: this removes what a previous instance with
        // the same table left behind (e.g. a default bridge from a wiped data root).
        if let Err(e) = self.restore_networks() {
            tracing::error!("network reconcile failed: {e}");
        }
        let existing = self.list_networks()?;
        let now = crate::image::now_rfc3339();
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if existing.iter().any(|n| n.name == name) {
                continue;
            }
            let id = random_id();
            let spec = if driver == "bridge" {
                let mut s = NetworkSpec::bridge(id.clone(), "bridge");
                s.bridge_name = Some(self.config.bridge_name.clone());
                Some(mgr.create_network(&s)?.spec)
            } else {
                None
            };
            let mut options = HashMap::new();
            if driver == "bridge" {
                options.insert("com.docker.network.bridge.name".into(), self.config.bridge_name.clone());
                options.insert("com.docker.network.bridge.default_bridge".into(), "true".into());
            }
            let rec = NetworkRecord {
                id: id.clone(),
                name: name.into(),
                driver: driver.into(),
                created: now.clone(),
                internal: false,
                attachable: false,
                labels: HashMap::new(),
                options,
                spec,
                ipam_config: vec![],
            };
            self.meta.put(NETWORKS, &id, &rec)?;
        }
        Ok(())
    }

    /// Daemon start: reconcile bridges, veths, IPs, rules and DNS with the database.
    pub(crate) fn restore_networks(&self) -> Result<()> {
        let Some(mgr) = self.net.as_ref() else { return Ok(()) };
        let specs: Vec<NetworkSpec> = self.list_networks()?.into_iter().filter_map(|n| n.spec).collect();
        let mut endpoints = Vec::new();
        let mut keep = Vec::new();
        for c in self.all_containers() {
            if c.state.running && berth_runtime::Shim::connect(&self.state_dir(&c.id)).ok().flatten().is_some() {
                endpoints.extend(c.endpoints.clone());
                keep.push(c.id.clone());
            }
        }
        mgr.reconcile(&specs, &endpoints, &keep)?;
        Ok(())
    }

    /// `POST /networks/create`.
    #[allow(clippy::too_many_arguments)]
    pub fn create_network(
        &self,
        name: &str,
        driver: &str,
        internal: bool,
        attachable: bool,
        ipam: &[serde_json::Value],
        options: HashMap<String, String>,
        labels: HashMap<String, String>,
    ) -> Result<NetworkRecord> {
        if name.is_empty() || !crate::names::valid_name(name) && name.len() > 1 {
            return Err(EngineError::invalid(format!("invalid network name {name:?}")));
        }
        if matches!(name, "bridge" | "host" | "none" | "default") {
            return Err(EngineError::new(ErrorKind::Forbidden, format!("{name} is a pre-defined network and cannot be created")));
        }
        let _g = self.net_lock.lock().map_err(|_| EngineError::internal("lock"))?;
        if self.list_networks()?.iter().any(|n| n.name == name) {
            return Err(EngineError::conflict(format!("network with name {name} already exists")));
        }
        let driver = if driver.is_empty() { "bridge" } else { driver };
        if driver != "bridge" {
            return Err(EngineError::invalid(format!(
                "could not find plugin {driver} in v1 plugin registry: plugin not found (berth supports the bridge driver)"
            )));
        }
        let id = random_id();
        let mut spec = NetworkSpec::bridge(id.clone(), name);
        spec.internal = internal;
        if let Some(cfg) = ipam.first() {
            let parse_net = |k: &str| -> Result<Option<ipnet::Ipv4Net>> {
                match cfg.get(k).and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
                    Some(s) => s.parse().map(Some).map_err(|_| EngineError::invalid(format!("invalid {k}: {s}"))),
                    None => Ok(None),
                }
            };
            spec.subnet = parse_net("Subnet")?;
            spec.ip_range = parse_net("IPRange")?;
            spec.gateway = match cfg.get("Gateway").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
                Some(s) => Some(s.parse().map_err(|_| EngineError::invalid(format!("invalid Gateway: {s}")))?),
                None => None,
            };
        }
        if ipam.len() > 1 {
            return Err(EngineError::invalid("berth supports one IPv4 IPAM config per network"));
        }
        for (k, v) in &options {
            match k.as_str() {
                "com.docker.network.bridge.name" => spec.bridge_name = Some(v.clone()),
                "com.docker.network.bridge.enable_icc" => spec.enable_icc = v != "false",
                "com.docker.network.bridge.enable_ip_masquerade" => spec.masquerade = v != "false",
                "com.docker.network.driver.mtu" => {
                    spec.mtu = Some(v.parse().map_err(|_| EngineError::invalid(format!("invalid mtu {v}")))?)
                }
                "com.docker.network.bridge.host_binding_ipv4" | "com.docker.network.bridge.default_bridge" => {}
                other => return Err(EngineError::invalid(format!("network option {other} is not supported by berth"))),
            }
        }
        let info = self.net()?.create_network(&spec)?;
        let rec = NetworkRecord {
            id: id.clone(),
            name: name.into(),
            driver: driver.into(),
            created: crate::image::now_rfc3339(),
            internal,
            attachable,
            labels,
            options,
            spec: Some(info.spec),
            ipam_config: ipam.to_vec(),
        };
        if let Err(e) = self.meta.put(NETWORKS, &id, &rec) {
            let _ = self.net()?.remove_network(&id);
            return Err(e);
        }
        self.events.emit("network", "create", &id, &[("name", name), ("type", driver)]);
        Ok(rec)
    }

    /// Containers (id, name) attached to a network right now.
    pub fn network_containers(&self, id: &str) -> Vec<(ContainerRecord, Endpoint)> {
        let mut out = Vec::new();
        for c in self.all_containers() {
            for (_, ep) in &c.endpoints {
                if ep.network_id == id {
                    out.push((c.clone(), ep.clone()));
                }
            }
        }
        out
    }

    pub fn remove_network(&self, name: &str) -> Result<()> {
        let n = self.get_network(name)?;
        if n.is_predefined() {
            return Err(EngineError::new(ErrorKind::Forbidden, format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        let users: Vec<String> = self
            .all_containers()
            .into_iter()
            .filter(|c| c.networks.contains_key(&n.name) && (c.state.running || !c.endpoints.is_empty()))
            .map(|c| c.id)
            .collect();
        if !users.is_empty() {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                format!("error while removing network: network {} id {} has active endpoints", n.name, n.id),
            ));
        }
        if n.spec.is_some() {
            self.net()?.remove_network(&n.id)?;
        }
        self.meta.delete(NETWORKS, &n.id)?;
        self.events.emit("network", "destroy", &n.id, &[("name", &n.name), ("type", &n.driver)]);
        Ok(())
    }

    /// Resolve the network a container asked for (`default` is `bridge`).
    fn network_for(&self, mode: &str) -> Result<NetworkRecord> {
        let m = if mode.is_empty() || mode == "default" { "bridge" } else { mode };
        self.get_network(m)
    }

    /// At create: validate the network mode and fill the configured endpoints map.
    pub(crate) fn prepare_network(&self, rec: &mut ContainerRecord, endpoints: HashMap<String, serde_json::Value>) -> Result<()> {
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        // Clients name the default network "default" in EndpointsConfig too.
        let endpoints: HashMap<String, serde_json::Value> = endpoints
            .into_iter()
            .map(|(k, v)| (if k == "default" { "bridge".to_string() } else { k }, v))
            .collect();
        // dockerd: no NetworkMode and exactly one network in EndpointsConfig (SDK clients
        // do this) means that network alone, not the default bridge plus it
        let mode = if (mode.is_empty() || mode == "default") && endpoints.len() == 1 && !endpoints.contains_key("bridge") {
            let only = endpoints.keys().next().cloned().unwrap_or_default();
            rec.host_config.network_mode = Some(only.clone());
            only
        } else {
            mode
        };
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            if mode.starts_with("container:") {
                let other = &mode["container:".len()..];
                self.get_container(other)?;
            }
            if mode == "host" && rec.host_config.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
                // Docker ignores published ports with host networking, with a warning.
                rec.host_config.port_bindings = None;
            }
            let name = if mode.starts_with("container:") { String::new() } else { mode.clone() };
            if !name.is_empty() {
                let n = self.get_network(&name)?;
                rec.networks.insert(n.name.clone(), serde_json::json!({"NetworkID": n.id}));
            }
            return Ok(());
        }
        let primary = self.network_for(&mode)?;
        if primary.driver != "bridge" {
            return Err(EngineError::invalid(format!("network {} cannot be used as a container network", primary.name)));
        }
        let mut nets: Vec<(NetworkRecord, serde_json::Value)> = Vec::new();
        let primary_cfg = endpoints
            .iter()
            .find(|(k, _)| *k == &primary.name || *k == &primary.id || (mode == "default" && *k == "bridge"))
            .map(|(_, v)| v.clone())
            .unwrap_or(serde_json::json!({}));
        nets.push((primary.clone(), primary_cfg));
        for (k, v) in &endpoints {
            let n = self.get_network(k)?;
            if n.id == primary.id {
                continue;
            }
            nets.push((n, v.clone()));
        }
        for (n, cfg) in &nets {
            if n.name == "bridge" {
                if cfg["Aliases"].as_array().is_some_and(|a| !a.is_empty()) {
                    return Err(EngineError::invalid("network-scoped alias is supported only for containers in user defined networks"));
                }
                if cfg["IPAMConfig"]["IPv4Address"].as_str().is_some_and(|s| !s.is_empty()) {
                    return Err(EngineError::invalid("user specified IP address is supported on user defined networks only"));
                }
            }
            let mut v = cfg.clone();
            if !v.is_object() {
                v = serde_json::json!({});
            }
            v["NetworkID"] = serde_json::json!(n.id);
            rec.networks.insert(n.name.clone(), v);
        }
        Ok(())
    }

    /// At start: make the namespace and endpoints. Returns the runtime's netns choice.
    pub(crate) fn setup_network(&self, rec: &mut ContainerRecord) -> Result<berth_runtime::NetMode> {
        use berth_runtime::NetMode;
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if mode == "host" {
            return Ok(NetMode::Host);
        }
        if mode == "none" {
            return Ok(NetMode::None);
        }
        if let Some(other) = mode.strip_prefix("container:") {
            let c = self.get_container(other)?;
            let o = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
            if !o.state.running {
                return Err(EngineError::conflict(format!("cannot join network of a non running container: {}", o.id)));
            }
            return Ok(match o.host_config.network_mode.as_deref() {
                Some("host") => NetMode::Host,
                _ => NetMode::Path(format!("/proc/{}/ns/net", o.state.pid).into()),
            });
        }
        let mgr = self.net()?;
        let path = mgr.create_netns(&rec.id)?;
        berth_runtime::timing::mark("daemon: netns created");
        let res = (|| -> Result<Vec<(EndpointSpec, Endpoint)>> {
            let ports = port_bindings(rec)?;
            let dns: Vec<std::net::SocketAddr> = rec
                .host_config
                .dns
                .clone()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
                .map(|ip| std::net::SocketAddr::new(ip, 53))
                .collect();
            // primary network first
            let primary = self.network_for(&mode)?.name;
            let mut names: Vec<String> = rec.networks.keys().cloned().collect();
            names.sort_by_key(|n| (n != &primary, n.clone()));
            let mut eps = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let n = self.get_network(name)?;
                let cfg = rec.networks.get(name).cloned().unwrap_or_default();
                let mut aliases: Vec<String> = cfg["Aliases"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
                if n.name != "bridge" {
                    if let Some(h) = rec.config.hostname.clone().filter(|h| !h.is_empty()) {
                        aliases.push(h);
                    }
                }
                let ip = match cfg["IPAMConfig"]["IPv4Address"].as_str().filter(|s| !s.is_empty()) {
                    Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| EngineError::invalid(format!("invalid IPv4 address: {s}")))?),
                    None => None,
                };
                let mac = cfg["MacAddress"].as_str().filter(|s| !s.is_empty()).map(String::from);
                let spec = EndpointSpec {
                    container_id: rec.id.clone(),
                    netns_path: path.clone(),
                    network_id: n.id.clone(),
                    ip,
                    mac,
                    aliases,
                    names: vec![rec.name.clone(), rec.id[..12].to_string()],
                    ports: if i == 0 { ports.clone() } else { vec![] },
                    dns_servers: dns.clone(),
                };
                let ep = mgr.connect(&spec)?;
                eps.push((spec, ep));
            }
            Ok(eps)
        })();
        match res {
            Ok(eps) => {
                rec.endpoints = eps;
                Ok(NetMode::Path(path))
            }
            Err(e) => {
                let _ = mgr.remove_netns(&rec.id);
                Err(e)
            }
        }
    }

    /// After exit or on removal: release the namespace, endpoints, IPs and ports.
    pub(crate) fn teardown_network(&self, rec: &mut ContainerRecord) {
        if let Some(mgr) = self.net.as_ref() {
            let mode = rec.host_config.network_mode.clone().unwrap_or_default();
            if mode != "host" && mode != "none" && !mode.starts_with("container:") {
                if let Err(e) = mgr.remove_netns(&rec.id) {
                    tracing::warn!(container = %rec.id, "network teardown: {e}");
                }
            }
        }
        rec.endpoints.clear();
    }

    /// `/etc/hosts` lines for the container's own addresses.
    pub(crate) fn hosts_entries(&self, rec: &ContainerRecord, hostname: &str) -> String {
        let mut s = String::new();
        for (_, ep) in &rec.endpoints {
            s.push_str(&format!("{}\t{hostname}\n", ep.ip));
        }
        s
    }

    /// The resolv.conf for a container on these networks.
    pub(crate) fn resolv_for(&self, rec: &ContainerRecord) -> Option<String> {
        let mgr = self.net.as_ref()?;
        let on_user = rec.networks.keys().any(|n| n != "bridge" && n != "host" && n != "none");
        if on_user {
            let mut s = mgr.resolv_conf(true);
            for o in rec.host_config.dns_options.clone().unwrap_or_default() {
                s.push_str(&format!("options {o}\n"));
            }
            return Some(s);
        }
        None
    }

    /// `POST /networks/{id}/connect`.
    pub fn connect_network(&self, network: &str, container: &str, cfg: serde_json::Value) -> Result<()> {
        let n = self.get_network(network)?;
        let c = self.get_container(container)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(EngineError::invalid(format!("container cannot be disconnected from host network or connected to host network")));
        }
        if rec.networks.contains_key(&n.name) {
            return Err(EngineError::new(ErrorKind::Forbidden, format!("endpoint with name {} already exists in network {}", rec.name, n.name)));
        }
        if n.spec.is_none() {
            return Err(EngineError::invalid(format!("container cannot be connected to network {}", n.name)));
        }
        let mut v = if cfg.is_object() { cfg } else { serde_json::json!({}) };
        v["NetworkID"] = serde_json::json!(n.id);
        if rec.state.running {
            let mgr = self.net()?;
            let aliases: Vec<String> = v["Aliases"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
            let ip = match v["IPAMConfig"]["IPv4Address"].as_str().filter(|s| !s.is_empty()) {
                Some(s) => Some(s.parse::<Ipv4Addr>().map_err(|_| EngineError::invalid(format!("invalid IPv4 address: {s}")))?),
                None => None,
            };
            let spec = EndpointSpec {
                container_id: rec.id.clone(),
                netns_path: mgr.netns_path(&rec.id),
                network_id: n.id.clone(),
                ip,
                mac: None,
                aliases,
                names: vec![rec.name.clone(), rec.id[..12].to_string()],
                ports: vec![],
                dns_servers: vec![],
            };
            let ep = mgr.connect(&spec)?;
            rec.endpoints.push((spec, ep));
        }
        rec.networks.insert(n.name.clone(), v);
        // The container may now need the embedded DNS server (resolv_for looks at networks).
        if rec.state.running {
            if let Some(r) = self.resolv_for(&rec) {
                // in place: the file is bind-mounted into the running container
                let _ = std::fs::write(self.ctr_dir_pub(&rec.id).join("resolv.conf"), r.as_bytes());
            }
        }
        self.meta.put(crate::meta::CONTAINERS, &rec.id, &*rec)?;
        self.events.emit("network", "connect", &n.id, &[("container", &rec.id), ("name", &n.name), ("type", &n.driver)]);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub fn disconnect_network(&self, network: &str, container: &str, _force: bool) -> Result<()> {
        let n = self.get_network(network)?;
        let c = self.get_container(container)?;
        let mut rec = c.lock().map_err(|_| EngineError::internal("lock"))?;
        if !rec.networks.contains_key(&n.name) {
            return Err(EngineError::new(ErrorKind::Forbidden, format!("container {} is not connected to network {}", rec.id, n.name)));
        }
        if rec.state.running && n.spec.is_some() {
            self.net()?.disconnect(&rec.id, &n.id)?;
            rec.endpoints.retain(|(_, ep)| ep.network_id != n.id);
        }
        rec.networks.remove(&n.name);
        self.meta.put(crate::meta::CONTAINERS, &rec.id, &*rec)?;
        self.events.emit("network", "disconnect", &n.id, &[("container", &rec.id), ("name", &n.name), ("type", &n.driver)]);
        Ok(())
    }

    /// Docker's `NetworkSettings` for inspect.
    pub fn network_settings(&self, rec: &ContainerRecord) -> serde_json::Value {
        use serde_json::json;
        let mut ports = serde_json::Map::new();
        for p in rec.config.exposed_ports.clone().unwrap_or_default() {
            ports.insert(p, serde_json::Value::Null);
        }
        let mut nets = serde_json::Map::new();
        let mut top = json!({"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": ""});
        for (name, cfg) in &rec.networks {
            let nid = cfg["NetworkID"].as_str().unwrap_or("").to_string();
            let ep = rec.endpoints.iter().find(|(_, e)| e.network_id == nid).map(|(_, e)| e);
            let aliases = cfg.get("Aliases").cloned().unwrap_or(serde_json::Value::Null);
            let mut dns_names: Vec<String> = vec![];
            if name != "bridge" && ep.is_some() {
                dns_names.push(rec.name.clone());
                dns_names.push(rec.id[..12].to_string());
                for a in aliases.as_array().into_iter().flatten() {
                    if let Some(a) = a.as_str() {
                        dns_names.push(a.to_string());
                    }
                }
            }
            let v = json!({
                "IPAMConfig": cfg.get("IPAMConfig").cloned().unwrap_or(serde_json::Value::Null),
                "Links": null,
                "Aliases": aliases,
                "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                "DriverOpts": null,
                "GwPriority": 0,
                "NetworkID": nid,
                "EndpointID": ep.map(|e| format!("{:x}", sha2_short(&format!("{}{}", e.container_id, e.network_id)))).unwrap_or_default(),
                "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
                "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": ep.map(|e| e.prefix_len).unwrap_or(0),
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": if dns_names.is_empty() { serde_json::Value::Null } else { json!(dns_names) },
            });
            if name == "bridge" {
                top = json!({"IPAddress": v["IPAddress"], "IPPrefixLen": v["IPPrefixLen"], "Gateway": v["Gateway"], "MacAddress": v["MacAddress"]});
            }
            nets.insert(name.clone(), v);
        }
        if let Some((_, ep)) = rec.endpoints.first() {
            let mut grouped: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
            for p in &ep.ports {
                let key = format!("{}/{}", p.container_port, p.proto.as_str());
                let ip = p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into());
                grouped.entry(key).or_default().push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
            }
            for (k, v) in grouped {
                ports.insert(k, json!(v));
            }
        }
        let sandbox = self.net.as_ref().map(|m| m.netns_path(&rec.id).display().to_string()).unwrap_or_default();
        json!({
            "Bridge": "",
            "SandboxID": if rec.endpoints.is_empty() { String::new() } else { rec.id.clone() },
            "SandboxKey": if rec.endpoints.is_empty() { String::new() } else { sandbox },
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": "",
            "Gateway": top["Gateway"],
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": top["IPAddress"],
            "IPPrefixLen": top["IPPrefixLen"],
            "IPv6Gateway": "",
            "MacAddress": top["MacAddress"],
            "Networks": nets,
        })
    }

    /// `ps`'s `Ports` list.
    pub fn summary_ports(&self, rec: &ContainerRecord) -> serde_json::Value {
        use serde_json::json;
        let mut out = Vec::new();
        let mut published = std::collections::HashSet::new();
        if let Some((_, ep)) = rec.endpoints.first() {
            for p in &ep.ports {
                published.insert(format!("{}/{}", p.container_port, p.proto.as_str()));
                out.push(json!({"IP": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
                    "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto.as_str()}));
            }
        }
        for p in rec.config.exposed_ports.clone().unwrap_or_default() {
            if published.contains(&p) {
                continue;
            }
            let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            if let Ok(n) = port.parse::<u16>() {
                out.push(json!({"PrivatePort": n, "Type": proto}));
            }
        }
        json!(out)
    }
}

fn sha2_short(s: &str) -> u128 {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(s.as_bytes());
    u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]))
}
