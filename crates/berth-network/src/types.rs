//! Plain data: configuration, specs the engine stores, and results it gets back.
//!
//! These types derive serde so the engine can keep them in its database as-is and hand
//! them back to [`crate::NetManager::reconcile`] after a restart.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{NetError, Result};

/// Configuration of one [`crate::NetManager`]. Every name is configurable so several
/// daemons (or tests) can run side by side without touching each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetConfig {
    /// Bridge device of the default `bridge` network (Docker's `docker0`).
    pub bridge_name: String,
    /// Name of berth's own nftables tables (`ip` family, plus `bridge` family for icc=false).
    pub nft_table: String,
    /// Address pools networks without `--subnet` are carved from.
    pub default_pool: Vec<Ipv4Net>,
    /// Prefix length of each subnet carved from `default_pool` (Docker: 24 for user networks).
    pub pool_prefix_len: u8,
    /// Where network namespaces are bind-mounted (`<exec-root>/netns`).
    pub netns_dir: PathBuf,
    /// resolv.conf the embedded DNS server takes its upstream resolvers from.
    pub dns_upstreams_from: PathBuf,
    /// Upstream resolvers overriding `dns_upstreams_from` when non-empty (daemon `--dns`).
    pub dns_upstreams: Vec<SocketAddr>,
    /// Prefix of the `ifalias` set on every bridge and veth we create; objects carrying it
    /// (followed by `nft_table`) are ours and may be deleted by reconcile/cleanup.
    pub alias_prefix: String,
    /// Address of the embedded DNS server inside containers (Docker: 127.0.0.11).
    pub dns_address: Ipv4Addr,
    /// Port of the embedded DNS server inside containers (53).
    pub dns_port: u16,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge_name: "berth0".into(),
            nft_table: "berth".into(),
            default_pool: vec![Ipv4Net::new(Ipv4Addr::new(172, 30, 0, 0), 16)
                .expect("16 is a valid prefix length")],
            pool_prefix_len: 24,
            netns_dir: PathBuf::from("/run/berth/netns"),
            dns_upstreams_from: PathBuf::from("/etc/resolv.conf"),
            dns_upstreams: Vec::new(),
            alias_prefix: "berth".into(),
            dns_address: Ipv4Addr::new(127, 0, 0, 11),
            dns_port: 53,
        }
    }
}

/// Network driver, as in `docker network create --driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Linux bridge + veth pairs + nftables.
    #[default]
    Bridge,
    /// The container shares the host's network namespace; nothing to set up here.
    Host,
    /// The container gets a namespace with only `lo`.
    None,
}

/// What the engine asks for when creating a network. After [`crate::NetManager::create_network`]
/// store [`NetworkInfo::spec`] (subnet, gateway and bridge filled in) and pass that back to
/// `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Network id (64 hex chars in Docker; any unique string here).
    pub id: String,
    /// Network name; the name `bridge` marks Docker's default network (no embedded DNS).
    pub name: String,
    /// Driver.
    pub driver: Driver,
    /// Subnet; `None` = pick one from the default pools.
    pub subnet: Option<Ipv4Net>,
    /// Gateway (the bridge's address); `None` = first host of the subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Sub-range container addresses are allocated from; `None` = whole subnet.
    pub ip_range: Option<Ipv4Net>,
    /// `--internal`: no masquerade, no default route, no traffic leaves the bridge.
    pub internal: bool,
    /// Bridge device name (`com.docker.network.bridge.name`); `None` = `br-<id[..12]>`,
    /// or `NetConfig::bridge_name` for the default network.
    pub bridge_name: Option<String>,
    /// `com.docker.network.bridge.enable_icc`: containers on the bridge may talk to each other.
    pub enable_icc: bool,
    /// MTU of the bridge and veths; `None` = 1500.
    pub mtu: Option<u32>,
    /// `com.docker.network.bridge.enable_ip_masquerade`: source-NAT egress traffic.
    #[serde(default = "default_true")]
    pub masquerade: bool,
}

fn default_true() -> bool {
    true
}

impl NetworkSpec {
    /// A bridge network with Docker's defaults.
    pub fn bridge(id: impl Into<String>, name: impl Into<String>) -> Self {
        NetworkSpec {
            id: id.into(),
            name: name.into(),
            driver: Driver::Bridge,
            subnet: None,
            gateway: None,
            ip_range: None,
            internal: false,
            bridge_name: None,
            enable_icc: true,
            mtu: None,
            masquerade: true,
        }
    }

    /// Is this Docker's default `bridge` network (addressed by IP only, no DNS)?
    pub fn is_default_bridge(&self) -> bool {
        self.name == "bridge" && self.driver == Driver::Bridge
    }
}

/// Runtime description of a created network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The spec with `subnet`, `gateway` and `bridge_name` resolved: persist this one.
    pub spec: NetworkSpec,
    /// Allocated subnet (`None` for host/none).
    pub subnet: Option<Ipv4Net>,
    /// Gateway address on the bridge.
    pub gateway: Option<Ipv4Addr>,
    /// Bridge device name.
    pub bridge: Option<String>,
    /// Bridge interface index.
    pub ifindex: Option<u32>,
}

/// Transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` / `udp`, as nft and Docker spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port (`-p [host_ip:][host_port[-host_port_end]:]container_port[/proto]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address; `None` or `0.0.0.0` = every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// Host port; 0 = pick a free ephemeral port.
    pub host_port: u16,
    /// When non-zero, pick any free port in `host_port..=host_port_end` (Docker's
    /// `-p 8000-8010:80`). The returned [`Endpoint::ports`] has it reset to 0.
    pub host_port_end: u16,
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    pub proto: Proto,
}

impl PortBinding {
    /// A single `host_port:container_port/proto` binding on every host address.
    pub fn new(host_port: u16, container_port: u16, proto: Proto) -> Self {
        PortBinding {
            host_ip: None,
            host_port,
            host_port_end: 0,
            container_port,
            proto,
        }
    }

    /// Expand `-p [ip:]h1-h2:c1-c2/proto` into one binding per port, as Docker does.
    /// Ranges must have equal length; a host range with a single container port yields one
    /// binding that picks a free port in the range.
    pub fn expand_range(
        host_ip: Option<Ipv4Addr>,
        host: Option<(u16, u16)>,
        container: (u16, u16),
        proto: Proto,
    ) -> Result<Vec<PortBinding>> {
        let (c1, c2) = container;
        if c1 == 0 || c2 < c1 {
            return Err(NetError::invalid("port range", format!("{c1}-{c2}")));
        }
        let Some((h1, h2)) = host else {
            return Ok((c1..=c2)
                .map(|c| PortBinding {
                    host_ip,
                    host_port: 0,
                    host_port_end: 0,
                    container_port: c,
                    proto,
                })
                .collect());
        };
        if h2 < h1 {
            return Err(NetError::invalid("port range", format!("{h1}-{h2}")));
        }
        if c1 == c2 && h2 > h1 {
            return Ok(vec![PortBinding {
                host_ip,
                host_port: h1,
                host_port_end: h2,
                container_port: c1,
                proto,
            }]);
        }
        if h2 - h1 != c2 - c1 {
            return Err(NetError::invalid(
                "port range",
                format!("host ports {h1}-{h2} and container ports {c1}-{c2} differ in length"),
            ));
        }
        Ok((0..=(c2 - c1))
            .map(|i| PortBinding {
                host_ip,
                host_port: if h1 == 0 { 0 } else { h1 + i },
                host_port_end: 0,
                container_port: c1 + i,
                proto,
            })
            .collect())
    }
}

/// What the engine asks for when connecting a container to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Container id (full).
    pub container_id: String,
    /// The container's network namespace (from [`crate::NetManager::create_netns`]).
    pub netns_path: PathBuf,
    /// Network id.
    pub network_id: String,
    /// `--ip`; `None` = allocate.
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address` (`aa:bb:cc:dd:ee:ff`); `None` = derived from the IP like Docker.
    pub mac: Option<String>,
    /// `--network-alias` values.
    pub aliases: Vec<String>,
    /// Names the embedded DNS answers besides aliases: container name, short id, hostname.
    pub names: Vec<String>,
    /// Published ports (only honoured on bridge networks).
    pub ports: Vec<PortBinding>,
    /// The container's `--dns` servers (`ip:53` for Docker's `--dns ip`): on user
    /// networks the embedded DNS forwards non-container names to these instead of the
    /// host's resolvers, as Docker does.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
}

/// Result of a connect; persist it with its spec for `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Network id.
    pub network_id: String,
    /// Container id.
    pub container_id: String,
    /// Container address.
    pub ip: Ipv4Addr,
    /// Prefix length of the subnet.
    pub prefix_len: u8,
    /// Gateway (the bridge address).
    pub gateway: Ipv4Addr,
    /// MAC of the container interface.
    pub mac: String,
    /// Host end of the veth pair.
    pub veth_host: String,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Published ports with the host ports actually chosen.
    pub ports: Vec<PortBinding>,
}

/// Format a MAC address as Docker does (`02:42:ac:11:00:02`).
pub(crate) fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || NetError::invalid("mac address", s.to_string());
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if out[0] & 1 == 1 {
        return Err(NetError::invalid(
            "mac address",
            format!("{s} is a multicast address"),
        ));
    }
    Ok(out)
}

/// Docker's MAC for an IP: `02:42` followed by the four address bytes.
pub(crate) fn mac_from_ip(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_roundtrip() {
        let m = mac_from_ip(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(m), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02").unwrap(), m);
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
        assert!(parse_mac("00:00:00:00:00").is_err());
    }

    #[test]
    fn port_ranges() {
        let v = PortBinding::expand_range(None, Some((8000, 8002)), (80, 82), Proto::Tcp).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[2].host_port, v[2].container_port), (8002, 82));
        let v = PortBinding::expand_range(None, Some((8000, 8010)), (80, 80), Proto::Udp).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].host_port, v[0].host_port_end), (8000, 8010));
        let v = PortBinding::expand_range(None, None, (80, 81), Proto::Tcp).unwrap();
        assert_eq!(
            v.iter().map(|b| b.host_port).collect::<Vec<_>>(),
            vec![0, 0]
        );
        assert!(PortBinding::expand_range(None, Some((1, 3)), (80, 81), Proto::Tcp).is_err());
    }
}
