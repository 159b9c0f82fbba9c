//! [`NetManager`]: the kernel-facing side of networks and endpoints.
//!
//! The manager keeps an in-memory model (networks, endpoints, IP allocations, port
//! reservations) under one mutex. Every operation changes the kernel step by step and
//! undoes its own steps when a later one fails, then re-renders the nftables table from
//! the model (see [`crate::nft`]). Nothing is persisted here: the engine stores the
//! [`NetworkInfo`]/[`Endpoint`] values it gets back and hands them to
//! [`NetManager::reconcile`] on daemon start.
//!
//! Ownership of kernel objects is marked, not guessed: every bridge and host-side veth we
//! create is put in a device group derived from the mark when it is created, then gets
//! the interface alias `<alias_prefix>:<nft_table>:<network>[:<container>]`; namespaces
//! live in `netns_dir`, rules live in `nft_table`. Reconcile and cleanup delete
//! only objects carrying our mark, so docker0, podman's networks and other berth
//! instances are never touched.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
};
use sha2::{Digest, Sha256};

use crate::dns::{read_upstreams, DnsRecord, DnsServer, DnsView};
use crate::error::{NetError, Result};
use crate::ipam::{choose_subnet, overlaps, Pool};
use crate::netlink::{Link, Netlink};
use crate::netns;
use crate::nft::{self, NftModel, NftNetwork, NftPort};
use crate::types::{
    format_mac, mac_from_ip, parse_mac, Driver, Endpoint, EndpointSpec, NetConfig, NetworkInfo,
    NetworkSpec, PortBinding, Proto,
};

const DEFAULT_MTU: u32 = 1500;

struct NetState {
    info: NetworkInfo,
    pool: Option<Pool>,
}

struct EpState {
    spec: EndpointSpec,
    ep: Endpoint,
}

type PortKey = (Proto, Ipv4Addr, u16);

#[derive(Default)]
struct State {
    networks: HashMap<String, NetState>,
    /// (network id, container id) → endpoint.
    endpoints: HashMap<(String, String), EpState>,
    /// Sockets bound (not listening) on published host ports, so nothing else can take them.
    reservations: HashMap<PortKey, OwnedFd>,
}

/// Keeps a runtime the manager created itself (when constructed outside tokio).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Kernel-facing network management for one berth daemon (see the crate docs).
/// `Send + Sync`: share it in an `Arc`; operations are serialised internally.
pub struct NetManager {
    cfg: NetConfig,
    state: Mutex<State>,
    /// The rule model last loaded into the kernel: an unchanged model (a connect without
    /// published ports) costs no nft transaction. Reset by reconcile and cleanup.
    applied: Mutex<Option<NftModel>>,
    dns: DnsServer,
    #[cfg(feature = "fault-injection")]
    fail_at: Mutex<Option<String>>,
    _runtime: OwnRuntime,
}

fn sha_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Test hook: with the `fault-injection` feature, exit the process abruptly at the named
/// step when `BERTH_NETWORK_CRASH_AT` names it, simulating a SIGKILL mid-operation.
fn crash_point(name: &str) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("BERTH_NETWORK_CRASH_AT").is_ok_and(|v| v == name) {
        tracing::error!(point = name, "injected crash");
        std::process::exit(137);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = name;
}

/// Drop stale UDP flows of these bindings (logged, never fatal: the rules are in place).
fn flush_udp(ports: &[PortBinding]) {
    let udp: Vec<u16> = ports
        .iter()
        .filter(|p| p.proto == Proto::Udp)
        .map(|p| p.host_port)
        .collect();
    match crate::conntrack::flush_udp_ports(&udp) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(entries = n, "deleted stale udp conntrack entries"),
        Err(e) => tracing::warn!(error = %e, "could not delete stale udp conntrack entries"),
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| NetError::io(format!("write {path}"), e))
}

fn ensure_ip_forward() -> Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    let cur = std::fs::read_to_string(p).map_err(|e| NetError::io(format!("read {p}"), e))?;
    if cur.trim() != "1" {
        write_sysctl(p, "1")?;
        tracing::info!(
            "enabled net.ipv4.ip_forward=1 (needed for container egress and published ports)"
        );
    }
    Ok(())
}

/// Bind (without listening) a socket on a host port to reserve it.
///
/// Without `SO_REUSEADDR` first: then no other socket can bind the port at all, not even
/// a server that sets `SO_REUSEADDR` (most do). If that fails with `EADDRINUSE` for TCP,
/// the port may be held only by connections in TIME_WAIT, which are no conflict: retry
/// with `SO_REUSEADDR`, which still fails if anything listens on or is bound to the port.
fn reserve_port(proto: Proto, ip: Ipv4Addr, port: u16) -> std::io::Result<OwnedFd> {
    let addr = SockaddrIn::from(std::net::SocketAddrV4::new(ip, port));
    let open = |reuse: bool| -> std::io::Result<OwnedFd> {
        let ty = match proto {
            Proto::Tcp => SockType::Stream,
            Proto::Udp => SockType::Datagram,
        };
        let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)?;
        if reuse {
            setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        }
        bind(fd.as_raw_fd(), &addr)?;
        Ok(fd)
    };
    match open(false) {
        Err(e) if proto == Proto::Tcp && e.raw_os_error() == Some(libc::EADDRINUSE) => open(true),
        r => r,
    }
}

fn upstreams(cfg: &NetConfig) -> Vec<SocketAddr> {
    if cfg.dns_upstreams.is_empty() {
        read_upstreams(&cfg.dns_upstreams_from)
    } else {
        cfg.dns_upstreams.clone()
    }
}

fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        })
        .filter(|(a, b)| a <= b && *a > 0)
        .unwrap_or((32768, 60999))
}

fn validate_id(what: &'static str, id: &str) -> Result<()> {
    if nft::valid_name(id, 128) {
        Ok(())
    } else {
        Err(NetError::invalid(
            what,
            format!("{id:?} (want 1-128 of [A-Za-z0-9_.-])"),
        ))
    }
}

impl NetManager {
    /// Build a manager. Creates `netns_dir`; touches nothing else in the kernel until asked.
    /// Uses the current tokio runtime for the DNS server, or starts a small one of its own
    /// when called outside a runtime.
    pub fn new(cfg: NetConfig) -> Result<Self> {
        if !nft::valid_name(&cfg.nft_table, 64) {
            return Err(NetError::invalid("nft table name", cfg.nft_table.clone()));
        }
        if !nft::valid_name(&cfg.bridge_name, 15) {
            return Err(NetError::invalid("bridge name", cfg.bridge_name.clone()));
        }
        if cfg.alias_prefix.contains(':') || cfg.alias_prefix.is_empty() {
            return Err(NetError::invalid("alias prefix", cfg.alias_prefix.clone()));
        }
        // 0700 like the rest of the state dir (HARDENING A4 #42)
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.netns_dir)
            .map_err(|e| NetError::io(format!("create {}", cfg.netns_dir.display()), e))?;
        let (handle, rt) = match tokio::runtime::Handle::try_current() {
            Ok(h) => (h, None),
            Err(_) => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("berth-net-dns")
                    .enable_all()
                    .build()
                    .map_err(|e| NetError::io("start dns runtime", e))?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let dns_addr = SocketAddr::from((cfg.dns_address, cfg.dns_port));
        let dns = DnsServer::new(handle, dns_addr, upstreams(&cfg));
        Ok(NetManager {
            cfg,
            state: Mutex::new(State::default()),
            applied: Mutex::new(None),
            dns,
            #[cfg(feature = "fault-injection")]
            fail_at: Mutex::new(None),
            _runtime: OwnRuntime(rt),
        })
    }

    /// A named step of an operation: the crash point of `BERTH_NETWORK_CRASH_AT`, and with
    /// [`NetManager::inject_failure`] an ordinary error, so the caller's rollback runs.
    fn step(&self, name: &str) -> Result<()> {
        crash_point(name);
        #[cfg(feature = "fault-injection")]
        if self
            .fail_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some(name)
        {
            return Err(NetError::io(
                format!("injected failure at {name}"),
                std::io::Error::other("injected"),
            ));
        }
        Ok(())
    }

    /// Tests (feature `fault-injection`): make the named step fail with an error.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_failure(&self, point: Option<&str>) {
        *self.fail_at.lock().unwrap_or_else(|p| p.into_inner()) = point.map(str::to_string);
    }

    /// The configuration this manager was built with.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark(&self) -> String {
        format!("{}:{}:", self.cfg.alias_prefix, self.cfg.nft_table)
    }

    fn bridge_alias(&self, net: &str) -> String {
        format!("{}{net}", self.mark())
    }

    fn veth_alias(&self, net: &str, container: &str) -> String {
        format!("{}{net}:{container}", self.mark())
    }

    /// Device group of every link we create, derived from the mark. Set in the creating
    /// request itself (the alias needs a second request), so a crash between the two
    /// still leaves the device recognisably ours.
    fn group(&self) -> u32 {
        let h = sha_hex(&["berth-device-group", &self.mark()]);
        u32::from_str_radix(&h[..8], 16).unwrap_or(0) | 0x8000_0000
    }

    fn is_ours(&self, l: &Link) -> bool {
        l.group == self.group()
            || l.alias
                .as_deref()
                .is_some_and(|a| a.starts_with(&self.mark()))
    }

    /// Path of a container's namespace file.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.cfg.netns_dir.join(container_id)
    }

    fn resolve_bridge_name(&self, spec: &NetworkSpec) -> String {
        match &spec.bridge_name {
            Some(b) => b.clone(),
            None if spec.is_default_bridge() => self.cfg.bridge_name.clone(),
            None => format!("br-{}", spec.id.chars().take(12).collect::<String>()),
        }
    }

    /// Subnets we must not overlap: host routes and addresses outside our own bridges.
    fn host_subnets(&self, nl: &mut Netlink, ours: &HashSet<u32>) -> Result<Vec<Ipv4Net>> {
        let mut v = nl.route_destinations()?;
        v.extend(
            nl.addrs()?
                .into_iter()
                .filter(|(i, _)| !ours.contains(i))
                .map(|(_, n)| n),
        );
        v.retain(|n| !n.network().is_loopback());
        Ok(v)
    }

    /// Create a network: for bridge networks pick (or validate) the subnet, create the
    /// bridge with the gateway address, and install its rules. Host/none networks are only
    /// recorded. The subnet chosen never overlaps another network, a host route or a host
    /// address.
    pub fn create_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo> {
        validate_id("network id", &spec.id)?;
        let mut st = self.lock();
        if st.networks.contains_key(&spec.id)
            || st.networks.values().any(|n| n.info.spec.name == spec.name)
        {
            return Err(NetError::NetworkExists(spec.name.clone()));
        }
        if spec.driver != Driver::Bridge {
            let info = NetworkInfo {
                spec: spec.clone(),
                subnet: None,
                gateway: None,
                bridge: None,
                ifindex: None,
            };
            st.networks.insert(
                spec.id.clone(),
                NetState {
                    info: info.clone(),
                    pool: None,
                },
            );
            return Ok(info);
        }
        let bridge = self.resolve_bridge_name(spec);
        if !nft::valid_name(&bridge, 15) {
            return Err(NetError::invalid("bridge name", bridge));
        }
        if st
            .networks
            .values()
            .any(|n| n.info.bridge.as_deref() == Some(bridge.as_str()))
        {
            return Err(NetError::invalid(
                "bridge name",
                format!("{bridge} is used by another network"),
            ));
        }
        let mut nl = Netlink::open()?;
        let links = nl.links()?;
        if links.iter().any(|l| l.name == bridge) {
            return Err(NetError::invalid(
                "bridge name",
                format!("a device named {bridge} already exists"),
            ));
        }
        let our_idx: HashSet<u32> = links
            .iter()
            .filter(|l| self.is_ours(l))
            .map(|l| l.index)
            .collect();
        let nets: Vec<Ipv4Net> = st.networks.values().filter_map(|n| n.info.subnet).collect();
        let subnet = match spec.subnet {
            Some(s) => {
                if let Some(o) = nets.iter().find(|n| overlaps(n, &s)) {
                    return Err(NetError::SubnetOverlap(format!(
                        "{s} overlaps network subnet {o}"
                    )));
                }
                let host = self.host_subnets(&mut nl, &our_idx)?;
                if let Some(o) = host.iter().find(|n| overlaps(n, &s)) {
                    return Err(NetError::SubnetOverlap(format!(
                        "{s} overlaps host route {o}"
                    )));
                }
                s
            }
            None => {
                let mut taken = nets;
                taken.extend(self.host_subnets(&mut nl, &our_idx)?);
                choose_subnet(&self.cfg.default_pool, self.cfg.pool_prefix_len, &taken)?
            }
        };
        let pool = Pool::new(subnet, spec.gateway, spec.ip_range)?;
        let gateway = pool.gateway;
        let mut resolved = spec.clone();
        resolved.subnet = Some(subnet);
        resolved.gateway = Some(gateway);
        resolved.bridge_name = Some(bridge.clone());
        let ifindex = self.setup_bridge(&mut nl, &resolved, None)?;
        let info = NetworkInfo {
            spec: resolved,
            subnet: Some(subnet),
            gateway: Some(gateway),
            bridge: Some(bridge.clone()),
            ifindex: Some(ifindex),
        };
        st.networks.insert(
            spec.id.clone(),
            NetState {
                info: info.clone(),
                pool: Some(pool),
            },
        );
        if let Err(e) = self
            .step("network:created")
            .and_then(|_| self.apply_rules(&st))
        {
            st.networks.remove(&spec.id);
            let _ = nl.del_link(ifindex);
            return Err(e);
        }
        tracing::info!(network = %spec.name, %bridge, %subnet, "network created");
        Ok(info)
    }

    /// Create (or adopt, when `existing` is its index) the bridge of a resolved spec.
    fn setup_bridge(
        &self,
        nl: &mut Netlink,
        spec: &NetworkSpec,
        existing: Option<u32>,
    ) -> Result<u32> {
        let (Some(bridge), Some(subnet), Some(gw)) = (&spec.bridge_name, spec.subnet, spec.gateway)
        else {
            return Err(NetError::invalid(
                "network spec",
                format!("network {} is not resolved", spec.id),
            ));
        };
        ensure_ip_forward()?;
        let idx = match existing {
            Some(i) => i,
            None => nl.add_bridge(bridge, spec.mtu.unwrap_or(DEFAULT_MTU), self.group())?,
        };
        let res = (|| {
            self.step("network:bridge")?;
            nl.set_alias(idx, &self.bridge_alias(&spec.id))?;
            nl.add_addr(idx, gw, subnet.prefix_len())?;
            nl.set_up(idx)?;
            write_sysctl(
                &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
                "1",
            )
        })();
        if let Err(e) = res {
            if existing.is_none() {
                let _ = nl.del_link(idx);
            }
            return Err(e);
        }
        Ok(idx)
    }

    /// Remove a network that has no endpoints left: its bridge and its rules.
    pub fn remove_network(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        let Some(net) = st.networks.get(id) else {
            return Err(NetError::NetworkNotFound(id.to_string()));
        };
        if st.endpoints.keys().any(|(n, _)| n == id) {
            return Err(NetError::ActiveEndpoints(net.info.spec.name.clone()));
        }
        let bridge = net.info.bridge.clone();
        let removed = st.networks.remove(id);
        if bridge.is_none() {
            // host/none: nothing in the kernel
            return Ok(());
        }
        if let Err(e) = self.apply_rules(&st) {
            if let Some(r) = removed {
                st.networks.insert(id.to_string(), r);
            }
            return Err(e);
        }
        if let Some(b) = bridge {
            let mut nl = Netlink::open()?;
            if let Some(l) = nl.links()?.into_iter().find(|l| l.name == b) {
                if self.is_ours(&l) {
                    nl.del_link(l.index)?;
                }
            }
        }
        tracing::info!(network = id, "network removed");
        Ok(())
    }

    /// Create a container's network namespace at `netns_dir/<container_id>` with `lo` up.
    pub fn create_netns(&self, container_id: &str) -> Result<PathBuf> {
        validate_id("container id", container_id)?;
        let path = self.netns_path(container_id);
        netns::create(&path)?;
        Ok(path)
    }

    /// Disconnect the container from every network, stop its DNS listener and remove its
    /// namespace file. Call it when a container goes away even if its namespace was not
    /// made by [`NetManager::create_netns`]: the DNS sockets would otherwise keep that
    /// namespace alive. Best effort like `docker rm`: every step is attempted, the first
    /// error is returned.
    pub fn remove_netns(&self, container_id: &str) -> Result<()> {
        validate_id("container id", container_id)?;
        let nets: Vec<String> = {
            let st = self.lock();
            st.endpoints
                .keys()
                .filter(|(_, c)| c == container_id)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let mut first_err = None;
        for n in nets {
            if let Err(e) = self.disconnect_with(container_id, &n, false) {
                tracing::warn!(container = container_id, network = %n, error = %e, "disconnect failed");
                first_err.get_or_insert(e);
            }
        }
        self.dns.stop(container_id);
        if let Err(e) = netns::remove(&self.netns_path(container_id)) {
            first_err.get_or_insert(e.into());
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Connect a container's namespace to a bridge network: allocate the address, reserve
    /// host ports, create the veth pair (host end on the bridge, `ethN` in the container
    /// with address, MAC and default route), install the DNAT rules and serve DNS.
    /// On any error everything done so far is undone.
    pub fn connect(&self, spec: &EndpointSpec) -> Result<Endpoint> {
        validate_id("container id", &spec.container_id)?;
        let mut st = self.lock();
        let key = (spec.network_id.clone(), spec.container_id.clone());
        if st.endpoints.contains_key(&key) {
            return Err(NetError::EndpointExists {
                container: spec.container_id.clone(),
                network: spec.network_id.clone(),
            });
        }
        let net = st
            .networks
            .get(&spec.network_id)
            .ok_or_else(|| NetError::NetworkNotFound(spec.network_id.clone()))?;
        if net.info.spec.driver != Driver::Bridge {
            return Err(NetError::Unsupported(format!(
                "container cannot be connected to a network with driver {:?}; the engine handles host and none itself",
                net.info.spec.driver
            )));
        }
        let mac = spec.mac.as_deref().map(parse_mac).transpose()?;
        let info = net.info.clone();
        let pool = st
            .networks
            .get_mut(&spec.network_id)
            .and_then(|n| n.pool.as_mut())
            .ok_or_else(|| NetError::NetworkNotFound(spec.network_id.clone()))?;
        let ip = pool.allocate(&spec.container_id, spec.ip)?;
        let st_ref = &mut *st;
        let result = self.connect_inner(st_ref, spec, &info, ip, mac);
        match result {
            Ok(ep) => Ok(ep),
            Err(e) => {
                if let Some(p) = st
                    .networks
                    .get_mut(&spec.network_id)
                    .and_then(|n| n.pool.as_mut())
                {
                    p.release(ip);
                }
                Err(e)
            }
        }
    }

    fn connect_inner(
        &self,
        st: &mut State,
        spec: &EndpointSpec,
        info: &NetworkInfo,
        ip: Ipv4Addr,
        mac: Option<[u8; 6]>,
    ) -> Result<Endpoint> {
        // 1. host ports
        let (ports, reserved) = self.reserve_ports(st, &spec.container_id, &spec.ports)?;
        let release = |st: &mut State| {
            for k in &reserved {
                st.reservations.remove(k);
            }
        };
        if let Err(e) = self.step("connect:ports") {
            release(st);
            return Err(e);
        }
        // 2. kernel plumbing
        let veth_host = format!(
            "veth{}",
            &sha_hex(&[&self.cfg.nft_table, &spec.network_id, &spec.container_id])[..9]
        );
        let mac = mac.unwrap_or_else(|| mac_from_ip(ip));
        let plumbed = self.plumb(spec, info, ip, mac, &veth_host, None);
        let ifname = match plumbed {
            Ok(n) => n,
            Err(e) => {
                release(st);
                return Err(e);
            }
        };
        let (Some(subnet), Some(gateway)) = (info.subnet, info.gateway) else {
            release(st);
            return Err(NetError::NetworkNotFound(info.spec.id.clone()));
        };
        let ep = Endpoint {
            network_id: spec.network_id.clone(),
            container_id: spec.container_id.clone(),
            ip,
            prefix_len: subnet.prefix_len(),
            gateway,
            mac: format_mac(mac),
            veth_host: veth_host.clone(),
            ifname,
            ports,
        };
        let key = (spec.network_id.clone(), spec.container_id.clone());
        st.endpoints.insert(
            key.clone(),
            EpState {
                spec: spec.clone(),
                ep: ep.clone(),
            },
        );
        // 3. rules and DNS
        let rest = self.apply_rules(st).and_then(|_| {
            self.step("connect:rules")?;
            flush_udp(&ep.ports);
            self.refresh_dns(st, Some(&spec.container_id))
        });
        if let Err(e) = rest {
            st.endpoints.remove(&key);
            release(st);
            self.delete_veth(&veth_host);
            let _ = self.apply_rules(st);
            let _ = self.refresh_dns(st, None);
            return Err(e);
        }
        tracing::info!(container = %spec.container_id, network = %spec.network_id, %ip, "endpoint connected");
        Ok(ep)
    }

    /// Create the veth pair and configure both ends. Returns the container-side name.
    fn plumb(
        &self,
        spec: &EndpointSpec,
        info: &NetworkInfo,
        ip: Ipv4Addr,
        mac: [u8; 6],
        veth_host: &str,
        want_ifname: Option<&str>,
    ) -> Result<String> {
        let (Some(subnet), Some(gw), Some(bridge)) =
            (info.subnet, info.gateway, info.bridge.as_deref())
        else {
            return Err(NetError::NetworkNotFound(info.spec.id.clone()));
        };
        let mtu = info.spec.mtu.unwrap_or(DEFAULT_MTU);
        let ifname = match want_ifname {
            Some(n) => n.to_string(),
            None => {
                let names: Vec<String> = netns::in_netns(&spec.netns_path, || {
                    Ok::<_, NetError>(
                        Netlink::open()?
                            .links()?
                            .into_iter()
                            .map(|l| l.name)
                            .collect(),
                    )
                })?;
                (0..)
                    .map(|i| format!("eth{i}"))
                    .find(|n| !names.contains(n))
                    .unwrap_or_else(|| "eth0".into())
            }
        };
        let mut nl = Netlink::open()?;
        let br_idx = nl.link_index(bridge)?.ok_or_else(|| {
            NetError::NetworkNotFound(format!("{} (bridge {bridge} missing)", info.spec.id))
        })?;
        let nsfile = std::fs::File::open(&spec.netns_path)
            .map_err(|e| NetError::io(format!("open netns {}", spec.netns_path.display()), e))?;
        // a leftover of ours with this name (crash mid-connect) would make the add fail
        if let Some(old) = nl.links()?.into_iter().find(|l| l.name == veth_host) {
            if self.is_ours(&old) {
                nl.del_link(old.index)?;
            }
        }
        let idx = nl.add_veth(veth_host, &ifname, nsfile.as_raw_fd(), mtu, self.group())?;
        let res = (|| {
            self.step("connect:veth")?;
            nl.set_alias(idx, &self.veth_alias(&spec.network_id, &spec.container_id))?;
            nl.set_master(idx, br_idx)?;
            self.step("connect:master")?;
            // With br_netfilter, a DNATed packet going back to the container it came from
            // is bridged out of its ingress port: allow that (hairpin NAT).
            write_sysctl(
                &format!("/sys/class/net/{veth_host}/brport/hairpin_mode"),
                "1",
            )?;
            nl.set_up(idx)?;
            let internal = info.spec.internal;
            let ifn = ifname.clone();
            netns::in_netns(&spec.netns_path, move || {
                let mut cn = Netlink::open()?;
                let ci = cn.link_index(&ifn)?.ok_or_else(|| {
                    NetError::io(
                        format!("find {ifn} in container"),
                        std::io::ErrorKind::NotFound.into(),
                    )
                })?;
                cn.set_mac(ci, mac)?;
                cn.add_addr(ci, ip, subnet.prefix_len())?;
                cn.set_up(ci)?;
                if !internal && !cn.has_default_route()? {
                    cn.add_default_route(gw, ci)?;
                }
                Ok::<_, NetError>(())
            })?;
            self.step("connect:container")
        })();
        if let Err(e) = res {
            let _ = nl.del_link(idx);
            return Err(e);
        }
        Ok(ifname)
    }

    /// Put an existing host veth back on its bridge, up, in hairpin mode.
    fn reattach(&self, nl: &mut Netlink, idx: u32, veth: &str, info: &NetworkInfo) -> Result<()> {
        let bridge = info.bridge.as_deref().unwrap_or_default();
        let br = nl.link_index(bridge)?.ok_or_else(|| {
            NetError::NetworkNotFound(format!("{} (bridge {bridge} missing)", info.spec.id))
        })?;
        nl.set_master(idx, br)?;
        write_sysctl(&format!("/sys/class/net/{veth}/brport/hairpin_mode"), "1")?;
        Ok(nl.set_up(idx)?)
    }

    fn delete_veth_later(&self, name: &str) {
        let found = Netlink::open().and_then(|mut nl| {
            Ok(nl.links()?.into_iter().find(|l| l.name == name && self.is_ours(l)).map(|l| l.index))
        });
        let index = match found {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(veth = name, error = %e, "could not find veth");
                return;
            }
        };
        fn del(index: u32, name: &str) {
            if let Err(e) = Netlink::open().and_then(|mut nl| nl.del_link(index)) {
                tracing::warn!(veth = name, error = %e, "could not delete veth");
            }
        }
        let owned = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("veth-del".into())
            .stack_size(64 << 10)
            .spawn(move || del(index, &owned));
        if spawned.is_err() {
            del(index, name); // no thread to be had: now, then
        }
    }

    fn delete_veth(&self, name: &str) {
        let r = Netlink::open().and_then(|mut nl| {
            match nl.links()?.into_iter().find(|l| l.name == name) {
                Some(l) if self.is_ours(&l) => nl.del_link(l.index),
                _ => Ok(()),
            }
        });
        if let Err(e) = r {
            tracing::warn!(veth = name, error = %e, "could not delete veth");
        }
    }

    /// Resolve and reserve every binding; on error release what was reserved.
    fn reserve_ports(
        &self,
        st: &mut State,
        container: &str,
        wanted: &[PortBinding],
    ) -> Result<(Vec<PortBinding>, Vec<PortKey>)> {
        let mut out = Vec::new();
        let mut keys: Vec<PortKey> = Vec::new();
        let res = (|| {
            for b in wanted {
                let ip = b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                let (lo, hi, any) = if b.host_port == 0 {
                    let (a, z) = local_port_range();
                    (a, z, true)
                } else if b.host_port_end > b.host_port {
                    (b.host_port, b.host_port_end, true)
                } else {
                    (b.host_port, b.host_port, false)
                };
                let span = u32::from(hi - lo) + 1;
                let start = if any {
                    let seed = sha_hex(&[
                        container,
                        &b.container_port.to_string(),
                        &format!("{:?}", std::time::SystemTime::now()),
                    ]);
                    u32::from_str_radix(&seed[..8], 16).unwrap_or(0) % span
                } else {
                    0
                };
                let mut chosen = None;
                for i in 0..span {
                    let port = (u32::from(lo) + (start + i) % span) as u16;
                    let clash = st.reservations.keys().any(|(p, rip, rport)| {
                        *p == b.proto
                            && *rport == port
                            && (rip.is_unspecified() || ip.is_unspecified() || *rip == ip)
                    });
                    if clash {
                        continue;
                    }
                    match reserve_port(b.proto, ip, port) {
                        Ok(fd) => {
                            chosen = Some((port, fd));
                            break;
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => continue,
                        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                            return Err(NetError::invalid(
                                "host ip",
                                format!("{ip} is not an address of this host"),
                            ))
                        }
                        Err(e) => {
                            return Err(NetError::io(
                                format!("bind {ip}:{port}/{}", b.proto.as_str()),
                                e,
                            ))
                        }
                    }
                }
                let Some((port, fd)) = chosen else {
                    return Err(NetError::PortInUse {
                        endpoint: container.to_string(),
                        host_ip: ip,
                        port: b.host_port,
                    });
                };
                let key = (b.proto, ip, port);
                st.reservations.insert(key, fd);
                keys.push(key);
                out.push(PortBinding {
                    host_ip: b.host_ip,
                    host_port: port,
                    host_port_end: 0,
                    ..*b
                });
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok((out, keys)),
            Err(e) => {
                for k in keys {
                    st.reservations.remove(&k);
                }
                Err(e)
            }
        }
    }

    /// Disconnect a container from a network: delete the veth pair, free the address and
    /// host ports, drop the rules and DNS records.
    pub fn disconnect(&self, container_id: &str, network_id: &str) -> Result<()> {
        self.disconnect_with(container_id, network_id, true)
    }

    /// `wait: false` (the container is gone): the veth is deleted in the background. Deleting
    /// a network device waits for RCU grace periods (tens of milliseconds), which would
    /// otherwise sit on the exit path of every container. The address and ports are free at
    /// once; the device is found by index, so a new endpoint with the same name (a restart)
    /// is never the one deleted, and `plumb` removes a leftover of that name itself.
    fn disconnect_with(&self, container_id: &str, network_id: &str, wait: bool) -> Result<()> {
        let mut st = self.lock();
        let key = (network_id.to_string(), container_id.to_string());
        let Some(eps) = st.endpoints.remove(&key) else {
            return Err(NetError::EndpointNotFound {
                container: container_id.into(),
                network: network_id.into(),
            });
        };
        for b in &eps.ep.ports {
            st.reservations.remove(&(
                b.proto,
                b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                b.host_port,
            ));
        }
        if let Some(p) = st
            .networks
            .get_mut(network_id)
            .and_then(|n| n.pool.as_mut())
        {
            p.release(eps.ep.ip);
        }
        let r1 = self.apply_rules(&st);
        crash_point("disconnect:rules");
        flush_udp(&eps.ep.ports);
        if wait {
            self.delete_veth(&eps.ep.veth_host);
        } else {
            self.delete_veth_later(&eps.ep.veth_host);
        }
        let r2 = self.refresh_dns(&st, None);
        let r3 = self.restore_default_route(&st, container_id);
        tracing::info!(
            container = container_id,
            network = network_id,
            "endpoint disconnected"
        );
        r1.and(r2).and(r3)
    }

    /// After a disconnect, route through another non-internal network if the default
    /// route went away with the removed interface (Docker picks a new gateway too).
    fn restore_default_route(&self, st: &State, container_id: &str) -> Result<()> {
        let mut candidates: Vec<&EpState> = st
            .endpoints
            .values()
            .filter(|e| e.ep.container_id == container_id)
            .filter(|e| {
                st.networks
                    .get(&e.ep.network_id)
                    .is_some_and(|n| !n.info.spec.internal)
            })
            .collect();
        candidates.sort_by(|a, b| a.ep.ifname.cmp(&b.ep.ifname));
        let Some(e) = candidates.first() else {
            return Ok(());
        };
        let (gw, ifname) = (e.ep.gateway, e.ep.ifname.clone());
        netns::in_netns(&e.spec.netns_path, move || {
            let mut nl = Netlink::open()?;
            if nl.has_default_route()? {
                return Ok(());
            }
            if let Some(i) = nl.link_index(&ifname)? {
                nl.add_default_route(gw, i)?;
            }
            Ok::<_, NetError>(())
        })
    }

    /// Render and load the nftables table from the model.
    fn apply_rules(&self, st: &State) -> Result<()> {
        let mut m = NftModel::default();
        let mut nets: Vec<&NetState> = st
            .networks
            .values()
            .filter(|n| n.info.spec.driver == Driver::Bridge)
            .collect();
        nets.sort_by(|a, b| a.info.spec.id.cmp(&b.info.spec.id));
        for n in nets {
            if let (Some(bridge), Some(subnet)) = (&n.info.bridge, n.info.subnet) {
                m.networks.push(NftNetwork {
                    bridge: bridge.clone(),
                    subnet,
                    internal: n.info.spec.internal,
                    icc: n.info.spec.enable_icc,
                    masquerade: n.info.spec.masquerade,
                    // only rendered for icc=false; leaving them out otherwise keeps the
                    // model unchanged by connects without ports
                    veths: if n.info.spec.enable_icc {
                        vec![]
                    } else {
                        let mut v: Vec<String> = st
                            .endpoints
                            .values()
                            .filter(|e| e.ep.network_id == n.info.spec.id)
                            .map(|e| e.ep.veth_host.clone())
                            .collect();
                        v.sort();
                        v
                    },
                });
            }
        }
        let mut eps: Vec<&EpState> = st.endpoints.values().collect();
        eps.sort_by(|a, b| {
            (&a.ep.network_id, &a.ep.container_id).cmp(&(&b.ep.network_id, &b.ep.container_id))
        });
        for e in eps {
            for p in &e.ep.ports {
                m.ports.push(NftPort {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    proto: p.proto,
                    container_ip: e.ep.ip,
                    container_port: p.container_port,
                });
            }
        }
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if applied.as_ref() == Some(&m) {
            return Ok(());
        }
        *applied = None;
        let table = &self.cfg.nft_table;
        if let Err(e) = nft::apply(&nft::render(table, &m, nft::Mode::Update)) {
            tracing::debug!(error = %e, "incremental nft update refused; replacing the tables");
            nft::apply(&nft::render(table, &m, nft::Mode::Replace))?;
        }
        *applied = Some(m);
        Ok(())
    }

    /// Rebuild the DNS view and start a listener for `start` if it is on a user network.
    ///
    /// A listener stays until its namespace is removed, even when the container leaves its
    /// last user network (it then answers SERVFAIL): closing happens asynchronously on
    /// the runtime, and a disconnect followed at once by a connect would otherwise race
    /// the old socket for 127.0.0.11:53.
    fn refresh_dns(&self, st: &State, start: Option<&str>) -> Result<()> {
        let mut view = DnsView::default();
        let mut netns_of: HashMap<String, PathBuf> = HashMap::new();
        for e in st.endpoints.values() {
            let Some(net) = st.networks.get(&e.ep.network_id) else {
                continue;
            };
            if net.info.spec.is_default_bridge() {
                continue;
            }
            view.internal
                .insert(net.info.spec.id.clone(), net.info.spec.internal);
            view.container_nets
                .entry(e.ep.container_id.clone())
                .or_default()
                .push(e.ep.network_id.clone());
            // Docker answers `name` and `name.<network>` for names and aliases alike
            let netname = net.info.spec.name.to_ascii_lowercase();
            let mut names: Vec<String> = Vec::new();
            for n in e.spec.names.iter().chain(e.spec.aliases.iter()) {
                let n = n.trim_end_matches('.').to_ascii_lowercase();
                if n.is_empty() {
                    continue;
                }
                let qualified = format!("{n}.{netname}");
                for v in [n, qualified] {
                    if !names.contains(&v) {
                        names.push(v);
                    }
                }
            }
            view.records
                .entry(e.ep.network_id.clone())
                .or_default()
                .push(DnsRecord { names, ip: e.ep.ip });
            netns_of.insert(e.ep.container_id.clone(), e.spec.netns_path.clone());
            if !e.spec.dns_servers.is_empty() {
                view.upstreams
                    .insert(e.ep.container_id.clone(), e.spec.dns_servers.clone());
            }
        }
        self.dns.set_view(view);
        if let Some(c) = start {
            if let Some(p) = netns_of.get(c) {
                self.dns.listen(c, p)?;
            }
        }
        Ok(())
    }

    /// Daemon start: make the kernel match what the engine's database says exists.
    ///
    /// `networks` are the persisted [`NetworkInfo::spec`]s, `endpoints` the persisted
    /// connect results, `containers` the ids of every container whose namespace must be
    /// kept (including ones without endpoints, e.g. `--network none`). Bridges are adopted
    /// or re-created, missing veths re-plumbed with the same address and MAC, IP
    /// allocations and port reservations restored, the rules re-rendered (dropping leaked
    /// ones) and the DNS listeners re-opened. Everything carrying our mark that the
    /// database does not know (bridges, veths, namespaces in `netns_dir`) is deleted.
    pub fn reconcile(
        &self,
        networks: &[NetworkSpec],
        endpoints: &[(EndpointSpec, Endpoint)],
        containers: &[String],
    ) -> Result<()> {
        let mut st = self.lock();
        *st = State::default();
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.dns.set_upstreams(upstreams(&self.cfg));
        let mut nl = Netlink::open()?;
        let links = nl.links()?;
        // networks
        for spec in networks {
            if spec.driver != Driver::Bridge {
                let info = NetworkInfo {
                    spec: spec.clone(),
                    subnet: None,
                    gateway: None,
                    bridge: None,
                    ifindex: None,
                };
                st.networks
                    .insert(spec.id.clone(), NetState { info, pool: None });
                continue;
            }
            let mut spec = spec.clone();
            let bridge = self.resolve_bridge_name(&spec);
            spec.bridge_name = Some(bridge.clone());
            let subnet = match spec.subnet {
                Some(s) => s,
                None => {
                    tracing::warn!(network = %spec.id, "persisted network has no subnet; choosing a new one");
                    let ours: HashSet<u32> = links
                        .iter()
                        .filter(|l| self.is_ours(l))
                        .map(|l| l.index)
                        .collect();
                    let mut taken: Vec<Ipv4Net> =
                        st.networks.values().filter_map(|n| n.info.subnet).collect();
                    taken.extend(self.host_subnets(&mut nl, &ours)?);
                    choose_subnet(&self.cfg.default_pool, self.cfg.pool_prefix_len, &taken)?
                }
            };
            let pool = Pool::new(subnet, spec.gateway, spec.ip_range)?;
            spec.subnet = Some(subnet);
            spec.gateway = Some(pool.gateway);
            let existing = links.iter().find(|l| l.name == bridge);
            let existing_idx = match existing {
                Some(l) if self.is_ours(l) => Some(l.index),
                Some(_) => {
                    tracing::warn!(%bridge, network = %spec.id, "device exists and is not ours; network skipped");
                    continue;
                }
                None => None,
            };
            let idx = self.setup_bridge(&mut nl, &spec, existing_idx)?;
            let info = NetworkInfo {
                subnet: Some(subnet),
                gateway: Some(pool.gateway),
                bridge: Some(bridge),
                ifindex: Some(idx),
                spec: spec.clone(),
            };
            st.networks.insert(
                spec.id.clone(),
                NetState {
                    info,
                    pool: Some(pool),
                },
            );
        }
        // endpoints
        let links = nl.links()?;
        for (spec, ep) in endpoints {
            let Some(net) = st.networks.get(&ep.network_id) else {
                tracing::warn!(container = %ep.container_id, network = %ep.network_id, "endpoint of unknown network dropped");
                continue;
            };
            if !spec.netns_path.exists() {
                tracing::warn!(container = %ep.container_id, "endpoint whose namespace is gone dropped");
                continue;
            }
            let info = net.info.clone();
            if let Some(p) = st
                .networks
                .get_mut(&ep.network_id)
                .and_then(|n| n.pool.as_mut())
            {
                if let Err(e) = p.restore(&ep.container_id, ep.ip) {
                    tracing::warn!(container = %ep.container_id, error = %e, "endpoint dropped");
                    continue;
                }
            }
            match links.iter().find(|l| l.name == ep.veth_host) {
                None => {
                    let mac = parse_mac(&ep.mac).unwrap_or_else(|_| mac_from_ip(ep.ip));
                    if let Err(e) =
                        self.plumb(spec, &info, ep.ip, mac, &ep.veth_host, Some(&ep.ifname))
                    {
                        tracing::warn!(container = %ep.container_id, error = %e, "could not re-plumb endpoint");
                    }
                }
                // a re-created bridge has lost its ports: attach the veth again
                Some(l) => {
                    if let Err(e) = self.reattach(&mut nl, l.index, &ep.veth_host, &info) {
                        tracing::warn!(container = %ep.container_id, error = %e, "could not re-attach endpoint");
                    }
                }
            }
            for b in &ep.ports {
                let ip = b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                match reserve_port(b.proto, ip, b.host_port) {
                    Ok(fd) => {
                        st.reservations.insert((b.proto, ip, b.host_port), fd);
                    }
                    Err(e) => {
                        tracing::warn!(port = b.host_port, error = %e, "could not re-reserve published port")
                    }
                }
            }
            st.endpoints.insert(
                (ep.network_id.clone(), ep.container_id.clone()),
                EpState {
                    spec: spec.clone(),
                    ep: ep.clone(),
                },
            );
        }
        // leaks: links
        let keep: HashSet<String> = st
            .networks
            .values()
            .filter_map(|n| n.info.bridge.clone())
            .chain(st.endpoints.values().map(|e| e.ep.veth_host.clone()))
            .collect();
        for l in nl.links()? {
            if self.is_ours(&l) && !keep.contains(&l.name) {
                tracing::info!(link = %l.name, "deleting leaked interface");
                nl.del_link(l.index)?;
            }
        }
        // leaks: namespaces (and listeners of containers that are gone)
        let mut keep_ns: HashSet<&str> = containers.iter().map(String::as_str).collect();
        keep_ns.extend(st.endpoints.values().map(|e| e.ep.container_id.as_str()));
        for c in self.dns.listening() {
            if !keep_ns.contains(c.as_str()) {
                self.dns.stop(&c);
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for ent in rd.flatten() {
                let name = ent.file_name().to_string_lossy().to_string();
                if !keep_ns.contains(name.as_str()) {
                    tracing::info!(netns = %name, "deleting leaked network namespace");
                    netns::remove(&ent.path())?;
                }
            }
        }
        self.apply_rules(&st)?;
        self.refresh_dns(&st, None)?;
        let mut started = HashSet::new();
        for e in st.endpoints.values() {
            let user = st
                .networks
                .get(&e.ep.network_id)
                .is_some_and(|n| !n.info.spec.is_default_bridge());
            if user && started.insert(e.ep.container_id.clone()) {
                if let Err(err) = self.dns.listen(&e.ep.container_id, &e.spec.netns_path) {
                    tracing::warn!(container = %e.ep.container_id, error = %err, "could not restart embedded dns");
                }
            }
        }
        tracing::info!(
            networks = st.networks.len(),
            endpoints = st.endpoints.len(),
            "network state reconciled"
        );
        Ok(())
    }

    /// Remove every bridge, veth, namespace and nft table of this configuration (tests,
    /// `berth system reset`).
    pub fn cleanup_all(&self) -> Result<()> {
        let mut st = self.lock();
        self.dns.stop_all();
        *st = State::default();
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut first_err: Option<NetError> = None;
        match Netlink::open().and_then(|mut nl| {
            for l in nl.links()? {
                if self.is_ours(&l) {
                    nl.del_link(l.index)?;
                }
            }
            Ok(())
        }) {
            Ok(()) => {}
            Err(e) => first_err = Some(e.into()),
        }
        if let Err(e) = nft::apply(&nft::render_delete(&self.cfg.nft_table)) {
            first_err.get_or_insert(e.into());
        }
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for ent in rd.flatten() {
                if let Err(e) = netns::remove(&ent.path()) {
                    first_err.get_or_insert(e.into());
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The `resolv.conf` a container should get: the embedded DNS server when it is on a
    /// user-defined network, the host's non-loopback resolvers otherwise (Google's public
    /// ones if the host has only loopback resolvers, as Docker does).
    pub fn resolv_conf(&self, on_user_network: bool) -> String {
        if on_user_network {
            return format!("nameserver {}\noptions ndots:0\n", self.cfg.dns_address);
        }
        let text = std::fs::read_to_string(&self.cfg.dns_upstreams_from).unwrap_or_default();
        let mut out = String::new();
        let mut any = false;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next()) {
                (Some("nameserver"), Some(a))
                    if a.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| !ip.is_loopback()) =>
                {
                    out.push_str(&format!("nameserver {a}\n"));
                    any = true;
                }
                (Some("search" | "options" | "domain"), _) => {
                    out.push_str(line.trim());
                    out.push('\n');
                }
                _ => {}
            }
        }
        if !any {
            out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        }
        out
    }

    /// Snapshot of the endpoints the manager knows (for inspect and tests).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.lock()
            .endpoints
            .values()
            .map(|e| e.ep.clone())
            .collect()
    }

    /// Snapshot of the networks the manager knows.
    pub fn networks(&self) -> Vec<NetworkInfo> {
        self.lock()
            .networks
            .values()
            .map(|n| n.info.clone())
            .collect()
    }

    /// Is `path` a namespace file of this manager?
    pub fn owns_netns(&self, path: &Path) -> bool {
        path.parent() == Some(self.cfg.netns_dir.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<NetManager>();
    }

    fn test_manager(d: &tempfile::TempDir) -> NetManager {
        NetManager::new(NetConfig {
            netns_dir: d.path().join("ns"),
            ..NetConfig::default()
        })
        .unwrap()
    }

    fn unused_port() -> u16 {
        // ports below the ephemeral range are not handed out by bind(0) meanwhile
        (20000..32000)
            .map(|p| p + (std::process::id() as u16 % 1000) * 7 % 10000)
            .find(|p| {
                std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok()
                    && std::net::UdpSocket::bind(("0.0.0.0", *p)).is_ok()
                    && std::net::TcpListener::bind(("0.0.0.0", *p + 1)).is_ok()
                    && std::net::TcpListener::bind(("0.0.0.0", *p + 2)).is_ok()
            })
            .unwrap()
    }

    /// Port reservation needs no root: bound sockets on high ports.
    #[test]
    fn port_reservations() {
        let d = tempfile::tempdir().unwrap();
        let m = test_manager(&d);
        let mut st = State::default();
        let p = unused_port();
        let (out, keys) = m
            .reserve_ports(&mut st, "c1", &[PortBinding::new(p, 80, Proto::Tcp)])
            .unwrap();
        assert_eq!((out[0].host_port, keys.len()), (p, 1));
        // the same port again fails and leaves nothing half-reserved
        let before = st.reservations.len();
        let err = m
            .reserve_ports(
                &mut st,
                "c2",
                &[
                    PortBinding::new(0, 81, Proto::Tcp),
                    PortBinding::new(p, 80, Proto::Tcp),
                ],
            )
            .unwrap_err();
        assert!(
            matches!(err, NetError::PortInUse { port, .. } if port == p),
            "{err}"
        );
        assert_eq!(st.reservations.len(), before);
        // 127.0.0.1:p clashes with 0.0.0.0:p; UDP p does not clash with TCP p
        let lo = PortBinding {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            ..PortBinding::new(p, 80, Proto::Tcp)
        };
        assert!(m.reserve_ports(&mut st, "c3", &[lo]).is_err());
        m.reserve_ports(&mut st, "c3", &[PortBinding::new(p, 53, Proto::Udp)])
            .unwrap();
        // nothing else on the host can bind a reserved port, even with SO_REUSEADDR
        assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_err());
        // host port 0 picks from the ephemeral range
        let (out, _) = m
            .reserve_ports(&mut st, "c4", &[PortBinding::new(0, 80, Proto::Tcp)])
            .unwrap();
        let (a, z) = local_port_range();
        assert!((a..=z).contains(&out[0].host_port));
        // a host range picks a free port inside it, skipping taken ones
        let r = PortBinding {
            host_port_end: p + 2,
            ..PortBinding::new(p, 80, Proto::Tcp)
        };
        let (out, _) = m.reserve_ports(&mut st, "c5", &[r]).unwrap();
        assert!(out[0].host_port == p + 1 || out[0].host_port == p + 2);
        assert_eq!(out[0].host_port_end, 0);
        // an address the host does not have is invalid input
        let far = PortBinding {
            host_ip: Some(Ipv4Addr::new(203, 0, 113, 77)),
            ..PortBinding::new(0, 80, Proto::Tcp)
        };
        assert_eq!(
            m.reserve_ports(&mut st, "c6", &[far]).unwrap_err().kind(),
            crate::NetErrorKind::InvalidInput
        );
        // dropping the reservations frees the ports
        drop(st);
        assert!(std::net::TcpListener::bind(("0.0.0.0", p)).is_ok());
    }

    #[test]
    fn validation() {
        let d = tempfile::tempdir().unwrap();
        let m = test_manager(&d);
        assert!(validate_id("id", "abc-1_2.3").is_ok());
        for bad in ["", "a/b", "..x/y", "a b", "é"] {
            assert!(validate_id("id", bad).is_err(), "{bad:?}");
        }
        assert!(m.create_netns("../escape").is_err());
        let mut spec = NetworkSpec::bridge("0123456789abcdef", "n");
        assert_eq!(m.resolve_bridge_name(&spec), "br-0123456789ab");
        spec.name = "bridge".into();
        assert_eq!(m.resolve_bridge_name(&spec), "berth0");
        spec.bridge_name = Some("mybr".into());
        assert_eq!(m.resolve_bridge_name(&spec), "mybr");
        let mut bad = NetworkSpec::bridge("x1", "x");
        bad.bridge_name = Some("a\"; flush ruleset; \"".into());
        assert_eq!(
            m.create_network(&bad).unwrap_err().kind(),
            crate::NetErrorKind::InvalidInput
        );
        assert_eq!(
            m.disconnect("c", "n").unwrap_err().kind(),
            crate::NetErrorKind::NotFound
        );
        assert_eq!(
            m.remove_network("n").unwrap_err().kind(),
            crate::NetErrorKind::NotFound
        );
        // host and none networks are records only
        let mut host = NetworkSpec::bridge("h1", "host");
        host.driver = Driver::Host;
        let info = m.create_network(&host).unwrap();
        assert!(info.bridge.is_none() && info.subnet.is_none());
        assert_eq!(
            m.create_network(&host).unwrap_err().kind(),
            crate::NetErrorKind::Conflict
        );
        let ep = EndpointSpec {
            container_id: "c1".into(),
            netns_path: d.path().join("nope"),
            network_id: "h1".into(),
            ip: None,
            mac: None,
            aliases: vec![],
            names: vec![],
            ports: vec![],
            dns_servers: vec![],
        };
        assert_eq!(
            m.connect(&ep).unwrap_err().kind(),
            crate::NetErrorKind::InvalidInput
        );
        m.remove_network("h1").unwrap();
    }

    #[test]
    fn marks_are_per_table() {
        let d = tempfile::tempdir().unwrap();
        let cfg = |t: &str| NetConfig {
            nft_table: t.into(),
            netns_dir: d.path().join("ns"),
            ..NetConfig::default()
        };
        let a = NetManager::new(cfg("berth")).unwrap();
        let b = NetManager::new(cfg("berth-x")).unwrap();
        assert_ne!(a.group(), b.group());
        assert_ne!(a.group(), 0);
        let link = |alias: &str, group| Link {
            index: 1,
            name: "x".into(),
            alias: Some(alias.into()),
            group,
        };
        assert!(a.is_ours(&link("berth:berth:net1", 0)));
        assert!(!a.is_ours(&link("berth:berth-x:net1", 0)));
        assert!(b.is_ours(&link("berth:berth-x:net1", 0)));
        assert!(a.is_ours(&link("", a.group())));
        assert!(!a.is_ours(&link("", b.group())));
        assert!(NetManager::new(cfg("bad table")).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("ns"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let d2 = tempfile::tempdir().unwrap();
        std::fs::write(
            d2.path().join("r"),
            "nameserver 127.0.0.53\nsearch example.com\n",
        )
        .unwrap();
        let m = NetManager::new(NetConfig {
            dns_upstreams_from: d2.path().join("r"),
            ..cfg("berth")
        })
        .unwrap();
        assert_eq!(
            m.resolv_conf(true),
            "nameserver 127.0.0.11\noptions ndots:0\n"
        );
        assert_eq!(
            m.resolv_conf(false),
            "search example.com\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }
}
