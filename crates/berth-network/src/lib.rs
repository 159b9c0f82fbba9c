//! Container networking for berth: IPAM, Linux bridges and veth pairs over rtnetlink,
//! nftables NAT/filter rules in berth's own tables, network namespaces, and the embedded
//! DNS server of user-defined networks. The engine owns the database; this crate owns
//! everything kernel-facing and is driven through one type, [`NetManager`].
//!
//! # What it does, Docker-compatibly
//! - **Default network** (`name == "bridge"`, device [`NetConfig::bridge_name`]):
//!   containers are addressed by IP, no embedded DNS.
//! - **User bridge networks**: an embedded resolver on `127.0.0.11:53` *inside each
//!   container's namespace* answers container names, aliases and short ids of containers
//!   on the same networks (plus PTR), and forwards other names to the host's resolvers.
//! - **Egress** by masquerade (not for `internal` networks, which also get no default
//!   route and no forwarding in or out); **isolation**: bridges cannot reach each other
//!   except through published ports; `enable_icc=false` drops traffic between ports of
//!   the same bridge.
//! - **Published ports** by nftables DNAT in `prerouting` and `output`, so they work from
//!   other hosts, from the host itself on 127.0.0.1 (`route_localnet` on the bridge plus
//!   masquerade of loopback-sourced traffic), and from containers (hairpin): TCP and UDP,
//!   ranges ([`PortBinding::expand_range`]), host port 0 = a free ephemeral port. No
//!   proxy process: each host port is *reserved* by a bound, non-listening socket held
//!   by the daemon, so a port in use (by anything) is a clear [`NetErrorKind::Conflict`]
//!   error and a failed connect leaves nothing behind.
//! - Stale UDP conntrack entries of a published port are deleted when it is published
//!   or unpublished (a flow that started earlier would otherwise bypass the DNAT).
//! - `net.ipv4.ip_forward=1` is set when the first bridge is set up (and logged).
//! - Options: `--internal`, `enable_icc`, `enable_ip_masquerade` ([`NetworkSpec::masquerade`]),
//!   MTU, `--subnet/--gateway/--ip-range`, `--ip`, `--mac-address`, per-container `--dns`
//!   upstreams ([`EndpointSpec::dns_servers`]), `<name>.<network>` DNS names.
//! - **Hardening**: packets from a bridge addressed to 127.0.0.0/8 are dropped (with
//!   `route_localnet` on, a container could otherwise reach the host's loopback-only
//!   services); published loopback ports are not reachable from other hosts; the DNS
//!   server caps in-flight queries and connections per container; daemon sockets are
//!   close-on-exec; the namespace directory is 0700.
//!
//! # Design
//! - **The model is in memory, the kernel is derived from it.** Each operation changes
//!   the kernel step by step and undoes its own steps on failure; the nft rules are always
//!   rendered whole from the model and loaded in one atomic `nft -f -` transaction.
//!   After a daemon crash, [`NetManager::reconcile`] rebuilds the model from what the
//!   engine persisted and makes the kernel match: kept objects are adopted, missing veths
//!   re-plumbed, leaked bridges/veths/namespaces deleted, rules re-rendered.
//! - **Ownership is marked, never guessed.** Bridges and host veths are created in a
//!   device group derived from the table name (set atomically with the creation, so a
//!   crash right after still leaves them marked) and then get the readable interface
//!   alias `<alias_prefix>:<nft_table>:<network>[:<container>]`; namespaces live in
//!   [`NetConfig::netns_dir`]; rules live in tables named [`NetConfig::nft_table`].
//!   docker0, podman's networks and other berth instances are never touched, and several
//!   managers (tests, daemons) run side by side.
//! - **Subnets never clash**: automatic subnets skip every host route and address and
//!   every other network; explicit ones that overlap are refused.
//! - **Namespaces are entered by short-lived threads** (network namespaces are per
//!   thread): netlink and DNS sockets opened there stay bound to the container's
//!   namespace, so the daemon's own threads never switch namespace.
//! - **Kernel forwarding survives the daemon**: published ports keep working while the
//!   daemon is down; only DNS needs the daemon and comes back with `reconcile`.
//! - nft scripts are text (`nft -f -`), not JSON: both cost one `nft` process per change;
//!   measured here, a 45-rule table loads in ~20 ms as text and ~22 ms as JSON. Changes
//!   flush and refill the chains but keep the base chains registered (re-registering
//!   netfilter hooks is what made full table replacement slower). What remains is the
//!   kernel's per-transaction commit cost: an *empty* create+delete transaction takes
//!   the same ~15-20 ms on this host, so fewer transactions is the only further gain.
//!   An unchanged rule model (a connect without published ports) loads nothing.
//!   Per container (test `bench_connect_disconnect`, 2 shared cores under load):
//!   `create_netns` 1-4 ms, `connect` without ports 10 ms (veth, addresses, routes,
//!   DNS listener), with one port 23-26 ms (plus the nft transaction), disconnect +
//!   `remove_netns` 37-47 ms.
//! - **Throughput** (test `bench_port_forward_throughput`, `wrk -c10` against busybox
//!   httpd): through `-p 127.0.0.1:X:80` 5382 req/s and container to container 5191 req/s
//!   vs 5111 req/s for the same server on the host without a container, i.e. kernel
//!   forwarding costs nothing measurable (issue 3's target: at least 95%).
//!
//! # What stays with the engine
//! Persisting [`NetworkInfo::spec`] and every `(EndpointSpec, Endpoint)`; calling
//! [`NetManager::reconcile`] on start before anything else; `host` (no namespace: the
//! container joins the host's) and `none` (a namespace from
//! [`NetManager::create_netns`] with only `lo`) need no connect; writing `/etc/hosts`,
//! `/etc/hostname` and `/etc/resolv.conf` ([`NetManager::resolv_conf`]); expanding
//! `-p`/`-P` into [`PortBinding`]s; Docker's rule that `--ip` needs a user-configured
//! subnet. Explicit subnets overlapping a host route are refused (the bridge would
//! hijack the host's own traffic); automatic ones avoid them.
//!
//! # Crash safety
//! With the `fault-injection` feature, setting `BERTH_NETWORK_CRASH_AT=<point>` makes the
//! process exit abruptly (no destructors, like SIGKILL) at that step; `tests/crash.rs`
//! kills a helper process at every step of create/connect/disconnect and checks that
//! `reconcile` leaves no interface, rule, reservation or address behind
//! (HARDENING B17). `NetManager::inject_failure(Some(point))` (same feature) turns a
//! point into an ordinary error instead, to check each operation's own rollback.
//! Points: `network:bridge`, `network:created`, `connect:ports`, `connect:veth`,
//! `connect:master`, `connect:container`, `connect:rules`, `disconnect:rules`.
//!
//! # Threading
//! All methods are synchronous (netlink round trips and one `nft` run); call them from
//! `spawn_blocking` in async code. [`NetManager::new`] picks up the current tokio runtime
//! for the DNS server, or starts a one-worker runtime of its own outside of tokio.
//!
//! # Example
//! ```no_run
//! use berth_network::{EndpointSpec, NetConfig, NetManager, NetworkSpec, PortBinding, Proto};
//!
//! # fn main() -> Result<(), berth_network::NetError> {
//! let mgr = NetManager::new(NetConfig { nft_table: "berth".into(), ..NetConfig::default() })?;
//! // daemon start: make the kernel match the database (empty on first start)
//! mgr.reconcile(&[], &[], &[])?;
//!
//! // a user network (with DNS); persist `net.spec`: subnet, gateway, bridge filled in
//! let net = mgr.create_network(&NetworkSpec::bridge("4f1c2a9e", "backend"))?;
//!
//! // a container: its namespace (the runtime joins it), then an endpoint
//! let netns = mgr.create_netns("c0ffee01")?;
//! let spec = EndpointSpec {
//!     container_id: "c0ffee01".into(),
//!     netns_path: netns,
//!     network_id: net.spec.id.clone(),
//!     ip: None,
//!     mac: None,
//!     aliases: vec!["api".into()],
//!     names: vec!["web".into(), "c0ffee01".into()],
//!     ports: vec![PortBinding::new(8080, 80, Proto::Tcp)],
//!     dns_servers: vec![],
//! };
//! let ep = mgr.connect(&spec)?; // persist (spec, ep)
//! println!("{} on {} via {}", ep.ip, ep.ifname, ep.gateway);
//! let resolv_conf = mgr.resolv_conf(true); // the container's /etc/resolv.conf
//! # let _ = resolv_conf;
//!
//! // next daemon start (even after SIGKILL): hand back what the database has
//! mgr.reconcile(&[net.spec.clone()], &[(spec, ep)], &["c0ffee01".to_string()])?;
//!
//! // docker rm, docker network rm
//! mgr.remove_netns("c0ffee01")?; // disconnects from every network first
//! mgr.remove_network(&net.spec.id)?;
//! # Ok(()) }
//! ```
//!
//! # Not done (yet)
//! IPv6; DNS forwarding from inside the container namespace (it is always done from the
//! host side, which also works for loopback-only resolvers).

mod conntrack;
mod dns;
pub mod error;
mod ipam;
mod manager;
mod netlink;
mod netns;
mod nft;
pub mod types;

pub use conntrack::ConntrackError;
pub use dns::DnsError;
pub use error::{NetError, NetErrorKind, Result};
pub use ipam::IpamError;
pub use manager::NetManager;
pub use netlink::NetlinkError;
pub use netns::NetnsError;
pub use nft::NftError;
pub use types::{
    Driver, Endpoint, EndpointSpec, NetConfig, NetworkInfo, NetworkSpec, PortBinding, Proto,
};
