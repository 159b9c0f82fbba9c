//! Deleting stale UDP conntrack entries for published ports (ctnetlink, hand-encoded).
//!
//! NAT is decided once per connection: a UDP flow that reached a host port *before* the
//! DNAT rule existed keeps its un-NATed conntrack entry (and a flow DNATed to a container
//! that is gone keeps pointing at the dead address) for as long as packets keep coming.
//! Docker flushes such entries when ports are published or unpublished; so do we, after
//! the rules change. TCP needs nothing: a new TCP connection always gets a new entry.
//!
//! The few ctnetlink messages needed (dump, delete by original tuple) are encoded here by
//! hand rather than pulling in another netlink crate.

use std::io;
use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use crate::error::NetErrorKind;

/// A ctnetlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The socket or the kernel refused.
    #[error("conntrack {op}: {source}")]
    Request {
        /// What failed ("dump", "delete").
        op: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}

impl ConntrackError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        NetErrorKind::Internal
    }
}

type Result<T> = std::result::Result<T, ConntrackError>;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const IPPROTO_UDP: u8 = 17;

/// Original-direction tuple of one UDP entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() & 3 != 0 {
        buf.push(0);
    }
}

fn message(ty: u16, flags: u16, seq: u32, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + attrs.len());
    let len = (16 + 4 + attrs.len()) as u32;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | ty).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version, resource id (big endian)
    m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    m.extend_from_slice(attrs);
    m
}

fn encode_tuple(t: &Tuple) -> Vec<u8> {
    let mut ip = Vec::new();
    attr(&mut ip, CTA_IP_V4_SRC, &t.src.octets());
    attr(&mut ip, CTA_IP_V4_DST, &t.dst.octets());
    let mut proto = Vec::new();
    attr(&mut proto, CTA_PROTO_NUM, &[t.proto]);
    attr(&mut proto, CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
    attr(&mut proto, CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
    let mut tuple = Vec::new();
    attr(&mut tuple, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    attr(&mut tuple, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto);
    let mut out = Vec::new();
    attr(&mut out, CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple);
    out
}

/// Iterate `(type, payload)` over the attributes in `buf`.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((ty, payload))
    })
}

fn decode_tuple(entry_attrs: &[u8]) -> Option<Tuple> {
    let (_, tuple) = attrs(entry_attrs).find(|(t, _)| *t == CTA_TUPLE_ORIG)?;
    let mut t = Tuple {
        src: Ipv4Addr::UNSPECIFIED,
        dst: Ipv4Addr::UNSPECIFIED,
        sport: 0,
        dport: 0,
        proto: 0,
    };
    for (ty, p) in attrs(tuple) {
        match ty {
            CTA_TUPLE_IP => {
                for (ity, ip) in attrs(p) {
                    let v4 = <[u8; 4]>::try_from(ip).ok().map(Ipv4Addr::from);
                    match (ity, v4) {
                        (CTA_IP_V4_SRC, Some(a)) => t.src = a,
                        (CTA_IP_V4_DST, Some(a)) => t.dst = a,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (pty, v) in attrs(p) {
                    match (pty, v.len()) {
                        (CTA_PROTO_NUM, 1) => t.proto = v[0],
                        (CTA_PROTO_SRC_PORT, 2) => t.sport = u16::from_be_bytes([v[0], v[1]]),
                        (CTA_PROTO_DST_PORT, 2) => t.dport = u16::from_be_bytes([v[0], v[1]]),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(t)
}

/// Walk the netlink messages of one datagram; `Err` on an error message, `Ok(true)` at DONE.
fn walk(data: &[u8], mut on_entry: impl FnMut(&[u8])) -> io::Result<bool> {
    let mut off = 0;
    while off + 16 <= data.len() {
        let len =
            u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
        if len < 16 || off + len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let body = &data[off + 16..off + len];
        match ty {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(true);
            }
            _ if body.len() >= 4 => on_entry(&body[4..]),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

fn open() -> Result<Socket> {
    let err = |source| ConntrackError::Request {
        op: "open socket",
        source,
    };
    let mut s = Socket::new(NETLINK_NETFILTER).map_err(err)?;
    s.bind_auto().map_err(err)?;
    s.connect(&SocketAddr::new(0, 0)).map_err(err)?;
    Ok(s)
}

/// Delete every UDP conntrack entry whose original destination port is in `ports`.
/// Returns how many were deleted.
pub(crate) fn flush_udp_ports(ports: &[u16]) -> Result<usize> {
    if ports.is_empty() {
        return Ok(0);
    }
    let sock = open()?;
    let dump_err = |source| ConntrackError::Request { op: "dump", source };
    sock.send(
        &message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, &[]),
        0,
    )
    .map_err(dump_err)?;
    let mut victims = Vec::new();
    loop {
        let (data, _) = sock.recv_from_full().map_err(dump_err)?;
        let done = walk(&data, |entry| {
            if let Some(t) = decode_tuple(entry) {
                if t.proto == IPPROTO_UDP && ports.contains(&t.dport) {
                    victims.push(t);
                }
            }
        })
        .map_err(dump_err)?;
        if done {
            break;
        }
    }
    let del_err = |source| ConntrackError::Request {
        op: "delete",
        source,
    };
    let mut deleted = 0;
    for (i, t) in victims.iter().enumerate() {
        let seq = 2 + i as u32;
        sock.send(
            &message(
                IPCTNL_MSG_CT_DELETE,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                &encode_tuple(t),
            ),
            0,
        )
        .map_err(del_err)?;
        let (data, _) = sock.recv_from_full().map_err(del_err)?;
        match walk(&data, |_| {}) {
            Ok(_) => deleted += 1,
            // gone meanwhile (expired, or deleted together with its master)
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(del_err(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_roundtrip() {
        let t = Tuple {
            src: Ipv4Addr::new(127, 0, 0, 1),
            dst: Ipv4Addr::new(10, 1, 2, 3),
            sport: 40000,
            dport: 5353,
            proto: IPPROTO_UDP,
        };
        let enc = encode_tuple(&t);
        assert_eq!(enc.len() & 3, 0);
        assert_eq!(decode_tuple(&enc), Some(t));
        let msg = message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 7, &enc);
        assert_eq!(
            u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize,
            msg.len()
        );
        let mut seen = None;
        assert!(!walk(&msg, |e| seen = decode_tuple(e)).unwrap());
        assert_eq!(seen, Some(t));
    }

    #[test]
    fn malformed_input_is_harmless() {
        assert!(walk(&[1, 0, 0, 0], |_| {}).is_ok());
        assert!(walk(&[200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], |_| {}).is_err());
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
        assert_eq!(decode_tuple(&[]), None);
    }
}
