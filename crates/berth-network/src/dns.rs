//! The embedded DNS server for user-defined networks (Docker's `127.0.0.11`).
//!
//! For every container attached to at least one user-defined bridge network, a UDP and a
//! TCP socket are bound to `127.0.0.11:53` *inside the container's network namespace* (a
//! short-lived thread enters the namespace, binds, and hands the sockets back) and served
//! from the daemon's tokio runtime. A query is answered from the records of every network
//! the asking container is on: container names, aliases and short ids, plus PTR for their
//! addresses. Other names are forwarded from the daemon's own namespace to the host's
//! upstream resolvers (non-loopback ones first; loopback-only setups work too because the
//! forwarder runs on the host side). Containers whose networks are all `--internal` get no
//! forwarding, like Docker.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::error::NetErrorKind;
use crate::netns::NetnsError;

/// Starting the embedded DNS server for a container failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// Binding or registering a listening socket failed.
    #[error("embedded dns: {op} {addr}: {source}")]
    Socket {
        /// What failed ("bind udp").
        op: &'static str,
        /// Address inside the container.
        addr: SocketAddr,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Entering the container's namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

impl DnsError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        match self {
            DnsError::Socket { .. } => NetErrorKind::Internal,
            DnsError::Netns(e) => e.kind(),
        }
    }
}

type Result<T> = std::result::Result<T, DnsError>;

const TTL: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries (UDP) and connections (TCP) in flight per container; more are dropped, so a
/// flooding container cannot exhaust the daemon's file descriptors or memory.
const MAX_IN_FLIGHT: usize = 128;

/// One container's names on one network.
#[derive(Debug, Clone)]
pub(crate) struct DnsRecord {
    pub names: Vec<String>,
    pub ip: Ipv4Addr,
}

/// Name data the server answers from; rebuilt by the manager after every change.
#[derive(Debug, Default, Clone)]
pub(crate) struct DnsView {
    /// container id → user networks it is attached to.
    pub container_nets: HashMap<String, Vec<String>>,
    /// network id → records.
    pub records: HashMap<String, Vec<DnsRecord>>,
    /// network id → internal flag.
    pub internal: HashMap<String, bool>,
    /// container id → its own upstream resolvers (`--dns`), overriding the host's.
    pub upstreams: HashMap<String, Vec<SocketAddr>>,
}

enum Answer {
    Local(Vec<Ipv4Addr>),
    Ptr(String),
    Forward,
    Refuse,
}

impl DnsView {
    fn lookup(&self, container: &str, qname: &str, qtype: RecordType) -> Answer {
        let Some(nets) = self.container_nets.get(container) else {
            return Answer::Refuse;
        };
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        if qtype == RecordType::PTR {
            if let Some(ip) = parse_arpa(&name) {
                for n in nets {
                    for r in self.records.get(n).into_iter().flatten() {
                        if r.ip == ip {
                            if let Some(first) = r.names.first() {
                                return Answer::Ptr(first.clone());
                            }
                        }
                    }
                }
            }
        } else {
            let mut ips = Vec::new();
            for n in nets {
                for r in self.records.get(n).into_iter().flatten() {
                    if r.names.iter().any(|x| x.eq_ignore_ascii_case(&name)) && !ips.contains(&r.ip)
                    {
                        ips.push(r.ip);
                    }
                }
            }
            if !ips.is_empty() {
                return Answer::Local(ips);
            }
        }
        if nets
            .iter()
            .all(|n| self.internal.get(n).copied().unwrap_or(false))
        {
            Answer::Refuse
        } else {
            Answer::Forward
        }
    }
}

fn parse_arpa(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut parts: Vec<&str> = rest.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts.reverse();
    Ipv4Addr::from_str(&parts.join(".")).ok()
}

/// Upstream resolvers from a resolv.conf: non-loopback ones, or the loopback ones if that
/// is all there is.
pub(crate) fn read_upstreams(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some("nameserver"), Some(a)) => {
                    IpAddr::from_str(a.split('%').next().unwrap_or(a)).ok()
                }
                _ => None,
            }
        })
        .collect();
    let external: Vec<IpAddr> = all.iter().copied().filter(|a| !a.is_loopback()).collect();
    let chosen = if external.is_empty() { all } else { external };
    chosen.into_iter().map(|a| SocketAddr::new(a, 53)).collect()
}

struct Shared {
    view: RwLock<DnsView>,
    upstreams: RwLock<Vec<SocketAddr>>,
}

/// The server: shared name data plus the listener tasks of each container.
pub(crate) struct DnsServer {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    listeners: Mutex<HashMap<String, Vec<JoinHandle<()>>>>,
    addr: SocketAddr,
}

impl DnsServer {
    pub(crate) fn new(
        handle: tokio::runtime::Handle,
        addr: SocketAddr,
        upstreams: Vec<SocketAddr>,
    ) -> Self {
        DnsServer {
            shared: Arc::new(Shared {
                view: RwLock::new(DnsView::default()),
                upstreams: RwLock::new(upstreams),
            }),
            handle,
            listeners: Mutex::new(HashMap::new()),
            addr,
        }
    }

    pub(crate) fn set_view(&self, view: DnsView) {
        *self.shared.view.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    pub(crate) fn set_upstreams(&self, up: Vec<SocketAddr>) {
        *self
            .shared
            .upstreams
            .write()
            .unwrap_or_else(|p| p.into_inner()) = up;
    }

    pub(crate) fn listening(&self) -> Vec<String> {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn is_listening(&self, container: &str) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(container)
    }

    /// Bind 127.0.0.11:53 (UDP+TCP) inside `netns` and serve it for `container`.
    pub(crate) fn listen(&self, container: &str, netns: &Path) -> Result<()> {
        if self.is_listening(container) {
            return Ok(());
        }
        let addr = self.addr;
        let (udp, tcp) = crate::netns::in_netns(netns, || {
            let sock = |op| move |source| DnsError::Socket { op, addr, source };
            // 127.0.0.11 is only local once `lo` is up (namespaces not made by us)
            if addr.ip().is_loopback() {
                let mut nl = crate::netlink::Netlink::open().map_err(NetnsError::from)?;
                if let Some(lo) = nl.link_index("lo").map_err(NetnsError::from)? {
                    nl.set_up(lo).map_err(NetnsError::from)?;
                }
            }
            let udp = std::net::UdpSocket::bind(addr).map_err(sock("bind udp"))?;
            let tcp = std::net::TcpListener::bind(addr).map_err(sock("bind tcp"))?;
            udp.set_nonblocking(true).map_err(sock("set nonblocking"))?;
            tcp.set_nonblocking(true).map_err(sock("set nonblocking"))?;
            Ok::<_, DnsError>((udp, tcp))
        })?;
        let _guard = self.handle.enter();
        let reg = |source| DnsError::Socket {
            op: "register",
            addr,
            source,
        };
        let udp = Arc::new(tokio::net::UdpSocket::from_std(udp).map_err(reg)?);
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(reg)?;
        let cid = container.to_string();
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let t1 = self.handle.spawn(serve_udp(
            udp,
            self.shared.clone(),
            cid.clone(),
            limit.clone(),
        ));
        let t2 = self
            .handle
            .spawn(serve_tcp(tcp, self.shared.clone(), cid.clone(), limit));
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cid, vec![t1, t2]);
        tracing::debug!(container, "embedded dns listening");
        Ok(())
    }

    /// Stop serving a container (its sockets close when the tasks end).
    pub(crate) fn stop(&self, container: &str) {
        if let Some(tasks) = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(container)
        {
            for t in tasks {
                t.abort();
            }
        }
    }

    pub(crate) fn stop_all(&self) {
        let all: Vec<String> = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for c in all {
            self.stop(&c);
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn serve_udp(
    sock: Arc<tokio::net::UdpSocket>,
    shared: Arc<Shared>,
    cid: String,
    limit: Arc<Semaphore>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(container = %cid, error = %e, "dns udp receive failed");
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::debug!(container = %cid, "dns query dropped: too many in flight");
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, shared, cid) = (sock.clone(), shared.clone(), cid.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(resp) = handle_query(&shared, &cid, &query, false).await {
                let _ = sock.send_to(&resp, peer).await;
            }
        });
    }
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cid: String,
    limit: Arc<Semaphore>,
) {
    loop {
        let mut conn = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                // e.g. EMFILE: back off instead of spinning
                tracing::debug!(container = %cid, error = %e, "dns tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let (shared, cid) = (shared.clone(), cid.clone());
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else {
                    return;
                };
                let mut q = vec![0u8; len as usize];
                if conn.read_exact(&mut q).await.is_err() {
                    return;
                }
                let Some(resp) = handle_query(&shared, &cid, &q, true).await else {
                    return;
                };
                let Ok(rlen) = u16::try_from(resp.len()) else {
                    return;
                };
                if conn.write_u16(rlen).await.is_err() || conn.write_all(&resp).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Answer one query; `None` = drop it (unparseable).
async fn handle_query(shared: &Shared, cid: &str, raw: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let msg = Message::from_vec(raw).ok()?;
    if msg.metadata.message_type != MessageType::Query {
        return None;
    }
    let id = msg.metadata.id;
    let reply = |code: ResponseCode, answers: Vec<Record>| -> Option<Vec<u8>> {
        let mut r = Message::error_msg(id, OpCode::Query, code);
        r.metadata.recursion_desired = msg.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.queries = msg.queries.clone();
        r.answers = answers;
        r.to_vec().ok()
    };
    if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
        return reply(ResponseCode::NotImp, vec![]);
    }
    let q = &msg.queries[0];
    let qname = q.name().to_ascii();
    let (answer, own_upstreams) = {
        let view = shared.view.read().unwrap_or_else(|p| p.into_inner());
        (
            view.lookup(cid, &qname, q.query_type()),
            view.upstreams.get(cid).cloned(),
        )
    };
    match answer {
        Answer::Local(ips) => {
            let recs = match q.query_type() {
                RecordType::A | RecordType::ANY => ips
                    .into_iter()
                    .map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))))
                    .collect(),
                _ => vec![],
            };
            reply(ResponseCode::NoError, recs)
        }
        Answer::Ptr(target) => {
            let name = Name::from_str_relaxed(format!("{target}.")).ok()?;
            reply(
                ResponseCode::NoError,
                vec![Record::from_rdata(
                    q.name().clone(),
                    TTL,
                    RData::PTR(PTR(name)),
                )],
            )
        }
        Answer::Refuse => reply(ResponseCode::ServFail, vec![]),
        Answer::Forward => {
            let ups = match own_upstreams {
                Some(u) if !u.is_empty() => u,
                _ => shared
                    .upstreams
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            };
            for up in ups {
                let res = if tcp {
                    forward_tcp(up, raw).await
                } else {
                    forward_udp(up, raw, id).await
                };
                match res {
                    Ok(r) => return Some(r),
                    Err(e) => tracing::debug!(upstream = %up, error = %e, "dns forward failed"),
                }
            }
            reply(ResponseCode::ServFail, vec![])
        }
    }
}

async fn forward_udp(up: SocketAddr, raw: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let bind: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(io::Error::other)?;
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(up).await?;
    sock.send(raw).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn forward_tcp(up: SocketAddr, raw: &[u8]) -> io::Result<Vec<u8>> {
    let fut = async {
        let mut c = tokio::net::TcpStream::connect(up).await?;
        let len = u16::try_from(raw.len()).map_err(io::Error::other)?;
        c.write_u16(len).await?;
        c.write_all(raw).await?;
        let rlen = c.read_u16().await?;
        let mut buf = vec![0u8; rlen as usize];
        c.read_exact(&mut buf).await?;
        Ok(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, fut)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> DnsView {
        let mut v = DnsView::default();
        v.container_nets.insert("c1".into(), vec!["n1".into()]);
        v.container_nets.insert("c3".into(), vec!["n2".into()]);
        v.records.insert(
            "n1".into(),
            vec![
                DnsRecord {
                    names: vec!["web".into(), "alias1".into()],
                    ip: Ipv4Addr::new(10, 0, 0, 2),
                },
                DnsRecord {
                    names: vec!["db".into()],
                    ip: Ipv4Addr::new(10, 0, 0, 3),
                },
            ],
        );
        v.records.insert(
            "n2".into(),
            vec![DnsRecord {
                names: vec!["other".into()],
                ip: Ipv4Addr::new(10, 1, 0, 2),
            }],
        );
        v.internal.insert("n1".into(), false);
        v.internal.insert("n2".into(), true);
        v
    }

    #[test]
    fn lookups() {
        let v = view();
        assert!(
            matches!(v.lookup("c1", "WEB.", RecordType::A), Answer::Local(ref ips) if ips == &[Ipv4Addr::new(10,0,0,2)])
        );
        assert!(matches!(
            v.lookup("c1", "alias1", RecordType::A),
            Answer::Local(_)
        ));
        assert!(matches!(
            v.lookup("c1", "other", RecordType::A),
            Answer::Forward
        ));
        assert!(matches!(
            v.lookup("c3", "web", RecordType::A),
            Answer::Refuse
        ));
        assert!(matches!(
            v.lookup("nobody", "web", RecordType::A),
            Answer::Refuse
        ));
        assert!(
            matches!(v.lookup("c1", "3.0.0.10.in-addr.arpa.", RecordType::PTR), Answer::Ptr(ref n) if n == "db")
        );
    }

    #[test]
    fn upstreams() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# x\nnameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch a\nnameserver fe80::1%eth0\n",
        )
        .unwrap();
        let u = read_upstreams(&p);
        assert_eq!(u[0], "10.0.0.1:53".parse().unwrap());
        assert_eq!(u.len(), 2);
        std::fs::write(&p, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(read_upstreams(&p), vec!["127.0.0.53:53".parse().unwrap()]);
    }

    #[tokio::test]
    async fn answers_and_forwards() {
        // a fake upstream that answers every query with NXDOMAIN
        let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = vec![0u8; 512];
            while let Ok((n, p)) = up.recv_from(&mut b).await {
                let q = Message::from_vec(&b[..n]).unwrap();
                let r = Message::error_msg(q.metadata.id, OpCode::Query, ResponseCode::NXDomain);
                up.send_to(&r.to_vec().unwrap(), p).await.unwrap();
            }
        });
        let shared = Shared {
            view: RwLock::new(view()),
            upstreams: RwLock::new(vec![up_addr]),
        };
        let mut q = Message::query();
        q.metadata.id = 77;
        q.add_query(hickory_proto::op::Query::query(
            Name::from_str("db.").unwrap(),
            RecordType::A,
        ));
        let r = Message::from_vec(
            &handle_query(&shared, "c1", &q.to_vec().unwrap(), false)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r.metadata.id, 77);
        assert_eq!(r.answers.len(), 1);
        let mut q2 = Message::query();
        q2.metadata.id = 78;
        q2.add_query(hickory_proto::op::Query::query(
            Name::from_str("example.org.").unwrap(),
            RecordType::A,
        ));
        let r2 = Message::from_vec(
            &handle_query(&shared, "c1", &q2.to_vec().unwrap(), false)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r2.metadata.response_code, ResponseCode::NXDomain);
        let r3 = Message::from_vec(
            &handle_query(&shared, "c3", &q2.to_vec().unwrap(), false)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(r3.metadata.response_code, ResponseCode::ServFail);
    }
}
