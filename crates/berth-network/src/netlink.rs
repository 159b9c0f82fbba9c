//! A small synchronous rtnetlink client (links, addresses, routes).
//!
//! Synchronous on purpose: every caller is a short sequence of requests that must finish
//! before the next step, the manager serialises them under its lock, and a socket opened
//! inside another network namespace (see [`crate::netns::in_netns`]) stays bound to that
//! namespace, so container-side configuration needs no long-lived thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::NetErrorKind;

/// A failed rtnetlink request.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel (or the socket) refused the request.
    #[error("netlink {op}: {source}")]
    Request {
        /// The operation and its object ("add bridge berth0").
        op: String,
        /// Kernel error.
        #[source]
        source: io::Error,
    },
    /// A value cannot be expressed as requested.
    #[error("netlink: invalid {0}")]
    Invalid(String),
}

impl NetlinkError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        match self {
            NetlinkError::Invalid(_) => NetErrorKind::InvalidInput,
            NetlinkError::Request { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
                NetErrorKind::Conflict
            }
            NetlinkError::Request { .. } => NetErrorKind::Internal,
        }
    }

    fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            NetlinkError::Invalid(_) => None,
        }
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// A link as listed by a dump.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// Device group (`ip link set group`); 0 = default.
    pub group: u32,
}

/// One rtnetlink socket, bound to the namespace it was opened in.
pub(crate) struct Netlink {
    sock: Socket,
    seq: u32,
}

fn nl_err(op: impl Into<String>, e: io::Error) -> NetlinkError {
    NetlinkError::Request {
        op: op.into(),
        source: e,
    }
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| nl_err("open socket", e))?;
        sock.bind_auto().map_err(|e| nl_err("bind socket", e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl_err("connect socket", e))?;
        Ok(Netlink { sock, seq: 1 })
    }

    /// Send one request and collect every reply up to the ACK / DONE. A dump the kernel
    /// marks as interrupted (links changed meanwhile, e.g. other daemons or tests at
    /// work) may be inconsistent and is repeated.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            let (out, interrupted) = self.request_once(msg.clone(), flags, op)?;
            tries += 1;
            if !interrupted || tries >= 5 {
                return Ok(out);
            }
            tracing::debug!(op, "netlink dump interrupted; repeating");
        }
    }

    fn request_once(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut interrupted = false;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| nl_err(op, e))?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|e| nl_err(op, e))?;
            let mut off = 0;
            while off < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| {
                        nl_err(
                            op,
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(nl_err(
                        op,
                        io::Error::new(io::ErrorKind::InvalidData, "zero-length message"),
                    ));
                }
                off += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok((out, interrupted)),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok((out, interrupted)),
                            Some(_) => Err(nl_err(op, e.to_io())),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                            return Ok((out, interrupted));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// All links of the namespace.
    pub(crate) fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list links",
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let mut link = Link {
                        index: l.header.index,
                        name: String::new(),
                        alias: None,
                        group: 0,
                    };
                    for a in l.attributes {
                        match a {
                            LinkAttribute::IfName(n) => link.name = n,
                            LinkAttribute::IfAlias(s) => link.alias = Some(s),
                            LinkAttribute::Group(g) => link.group = g,
                            _ => {}
                        }
                    }
                    Some(link)
                }
                _ => None,
            })
            .collect())
    }

    /// Index of the link called `name`, if any.
    pub(crate) fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        // a lookup by name, not a dump: exact even while other links come and go
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let op = format!("get link {name}");
        match self.request(RouteNetlinkMessage::GetLink(m), 0, &op) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a bridge in device group `group` (the kernel applies the group atomically
    /// with the creation, unlike the alias, so a crash in between leaves a marked device).
    pub(crate) fn add_bridge(&mut self, name: &str, mtu: u32, group: u32) -> Result<u32> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Group(group));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let op = format!("add bridge {name}");
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )?;
        self.link_index(name)?.ok_or_else(|| {
            nl_err(
                &op,
                io::Error::new(io::ErrorKind::NotFound, "bridge vanished"),
            )
        })
    }

    /// Create a veth pair whose peer is created directly inside `peer_netns` as `peer_name`;
    /// the host end joins device group `group` at creation.
    pub(crate) fn add_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_netns: RawFd,
        mtu: u32,
        group: u32,
    ) -> Result<u32> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.to_string()));
        peer.attributes.push(LinkAttribute::Mtu(mtu));
        peer.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Group(group));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let op = format!("add veth {name}");
        self.request(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )?;
        self.link_index(name)?.ok_or_else(|| {
            nl_err(
                &op,
                io::Error::new(io::ErrorKind::NotFound, "veth vanished"),
            )
        })
    }

    fn set_link(
        &mut self,
        index: u32,
        attrs: Vec<LinkAttribute>,
        up: Option<bool>,
        op: &str,
    ) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some(up) = up {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        }
        m.attributes = attrs;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK, op)?;
        Ok(())
    }

    /// Bring a link up.
    pub(crate) fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_link(index, vec![], Some(true), &format!("set link {index} up"))
    }

    /// Attach a link to a bridge.
    pub(crate) fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.set_link(
            index,
            vec![LinkAttribute::Controller(master)],
            None,
            &format!("set master of link {index}"),
        )
    }

    /// Set the MAC address.
    pub(crate) fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(
            index,
            vec![LinkAttribute::Address(mac.to_vec())],
            None,
            &format!("set mac of link {index}"),
        )
    }

    /// Set the interface alias (our ownership mark).
    pub(crate) fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        self.set_link(
            index,
            vec![LinkAttribute::IfAlias(alias.to_string())],
            None,
            &format!("set alias of link {index}"),
        )
    }

    /// Delete a link (ENODEV is not an error: it is already gone).
    pub(crate) fn del_link(&mut self, index: u32) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(
            RouteNetlinkMessage::DelLink(m),
            NLM_F_ACK,
            &format!("delete link {index}"),
        ) {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Add an IPv4 address (EEXIST is fine: reconcile re-adds).
    pub(crate) fn add_addr(&mut self, index: u32, ip: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        if prefix_len < 31 {
            let net = Ipv4Net::new(ip, prefix_len)
                .map_err(|e| NetlinkError::Invalid(format!("prefix length: {e}")))?;
            m.attributes
                .push(AddressAttribute::Broadcast(net.broadcast()));
        }
        let op = format!("add address {ip}/{prefix_len} to link {index}");
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &op,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Every IPv4 address of the namespace as (link index, subnet).
    pub(crate) fn addrs(&mut self) -> Result<Vec<(u32, Ipv4Net)>> {
        let mut q = AddressMessage::default();
        q.header.family = AddressFamily::Inet;
        let msgs = self.request(
            RouteNetlinkMessage::GetAddress(q),
            NLM_F_DUMP,
            "list addresses",
        )?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                for attr in &a.attributes {
                    if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                        if let Ok(n) = Ipv4Net::new(*ip, a.header.prefix_len) {
                            out.push((a.header.index, n.trunc()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every IPv4 route destination of every table (default routes excluded).
    pub(crate) fn route_destinations(&mut self) -> Result<Vec<Ipv4Net>> {
        let mut q = RouteMessage::default();
        q.header.address_family = AddressFamily::Inet;
        let msgs = self.request(RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP, "list routes")?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                let plen = r.header.destination_prefix_length;
                if plen == 0 || !matches!(r.header.kind, RouteType::Unicast) {
                    continue;
                }
                for attr in &r.attributes {
                    if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = attr {
                        if let Ok(n) = Ipv4Net::new(*ip, plen) {
                            out.push(n.trunc());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Does the main table have an IPv4 default route?
    pub(crate) fn has_default_route(&mut self) -> Result<bool> {
        let mut q = RouteMessage::default();
        q.header.address_family = AddressFamily::Inet;
        let msgs = self.request(RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP, "list routes")?;
        Ok(msgs.iter().any(|m| {
            matches!(m, RouteNetlinkMessage::NewRoute(r)
                if r.header.destination_prefix_length == 0
                    && r.header.table == RouteMessageHeaderTable::MAIN
                    && matches!(r.header.kind, RouteType::Unicast))
        }))
    }

    /// Add `default via gw dev index`.
    pub(crate) fn add_default_route(&mut self, gw: Ipv4Addr, index: u32) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteMessageHeaderTable::MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        m.attributes.push(RouteAttribute::Oif(index));
        let op = format!("add default route via {gw}");
        match self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            &op,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

/// Table id constants (the header keeps the 8-bit table id).
struct RouteMessageHeaderTable;
impl RouteMessageHeaderTable {
    const MAIN: u8 = 254;
}
