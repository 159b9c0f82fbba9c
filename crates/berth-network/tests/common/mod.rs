//! Shared harness for the root integration tests: unique names per test, busybox helpers
//! and a guard that removes every bridge, veth, namespace, nft table and process even when
//! the test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_network::{EndpointSpec, NetConfig, NetManager, PortBinding};

pub const BUSYBOX: &str = "/bin/busybox";

/// Why the tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in [BUSYBOX, "/usr/sbin/nft", "/usr/bin/nsenter", "/usr/sbin/ip"] {
        if !Path::new(tool).exists() && which(tool).is_none() {
            return Some(format!("{tool} missing"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    let name = Path::new(tool).file_name()?;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Skip the calling test with a message when the host cannot run it.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = common::skip_reason() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

/// One test's world: unique config, processes to kill, extra objects to delete.
pub struct Ctx {
    pub cfg: NetConfig,
    pub tag: String,
    pub mgr: Option<NetManager>,
    children: Vec<Child>,
    ip_netns: Vec<String>,
    links: Vec<String>,
    pub tmp: tempfile::TempDir,
}

impl Ctx {
    /// `k` (0..=40) makes pools and names unique between tests of this binary.
    pub fn new(k: u8) -> Ctx {
        let pid = std::process::id();
        let tag = format!("{:05x}{k:02}", pid % 0xfffff);
        let tmp = tempfile::tempdir().expect("temp dir");
        let cfg = NetConfig {
            bridge_name: format!("bb{tag}"),
            nft_table: format!("berth-t{pid}-{k}"),
            default_pool: vec![format!("10.{}.0.0/16", 200 + k)
                .parse()
                .expect("valid pool")],
            netns_dir: PathBuf::from(format!("/run/berth-test-{pid}-{k}/netns")),
            dns_upstreams_from: tmp.path().join("resolv.conf"),
            ..NetConfig::default()
        };
        std::fs::write(&cfg.dns_upstreams_from, "nameserver 127.0.0.1\n")
            .expect("write resolv.conf");
        let mgr = NetManager::new(cfg.clone()).expect("manager");
        Ctx {
            cfg,
            tag,
            mgr: Some(mgr),
            children: vec![],
            ip_netns: vec![],
            links: vec![],
            tmp,
        }
    }

    pub fn mgr(&self) -> &NetManager {
        self.mgr.as_ref().expect("manager present")
    }

    pub fn id(&self, name: &str) -> String {
        format!("t{}{name}", self.tag)
    }

    /// Spawn busybox inside a namespace; killed by the guard.
    pub fn spawn_in(&mut self, ns: &Path, args: &[&str]) -> &mut Child {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg(BUSYBOX)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nsenter");
        self.children.push(child);
        self.children.last_mut().expect("just pushed")
    }

    /// Serve `token` with busybox httpd on `port` inside `ns`.
    pub fn httpd(&mut self, ns: &Path, port: u16, token: &str) {
        let dir = self.tmp.path().join(format!("www-{token}"));
        std::fs::create_dir_all(&dir).expect("www dir");
        std::fs::write(dir.join("index.html"), token).expect("index");
        let p = port.to_string();
        let d = dir.display().to_string();
        self.spawn_in(ns, &["httpd", "-f", "-p", &p, "-h", &d]);
        // ready when it answers inside its own namespace
        let ok = wait_until(|| fetch_from(ns, "127.0.0.1", port).contains(token));
        assert!(ok, "httpd in {} did not come up", ns.display());
    }

    /// A namespace made by `ip netns add` (lo down), standing in for one a runtime made.
    pub fn foreign_netns(&mut self, what: &str) -> PathBuf {
        let name = format!("berth-f{what}-{}", self.tag);
        run("ip", &["netns", "add", &name]);
        self.ip_netns.push(name.clone());
        PathBuf::from(format!("/run/netns/{name}"))
    }

    /// A namespace outside berth's control standing in for "the rest of the world",
    /// reachable from the host at `10.<250-k>.0.2` via a veth.
    pub fn outside(&mut self, k: u8) -> (PathBuf, Ipv4Addr) {
        let name = format!("berth-out-{}", self.tag);
        let host_if = format!("vo{}", self.tag);
        let net = 250 - k;
        run("ip", &["netns", "add", &name]);
        self.ip_netns.push(name.clone());
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ],
        );
        self.links.push(host_if.clone());
        run(
            "ip",
            &["addr", "add", &format!("10.{net}.0.1/24"), "dev", &host_if],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        run(
            "ip",
            &[
                "-n",
                &name,
                "addr",
                "add",
                &format!("10.{net}.0.2/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &name, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        (
            PathBuf::from(format!("/run/netns/{name}")),
            Ipv4Addr::new(10, net, 0, 2),
        )
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for l in &self.links {
            let _ = Command::new("ip")
                .args(["link", "del", l])
                .stderr(Stdio::null())
                .status();
        }
        for n in &self.ip_netns {
            let _ = Command::new("ip")
                .args(["netns", "del", n])
                .stderr(Stdio::null())
                .status();
        }
        drop(self.mgr.take());
        match NetManager::new(self.cfg.clone()) {
            Ok(m) => {
                if let Err(e) = m.cleanup_all() {
                    eprintln!("cleanup failed: {e}");
                }
            }
            Err(e) => eprintln!("cleanup manager failed: {e}"),
        }
        let _ = std::fs::remove_dir(&self.cfg.netns_dir);
        if let Some(parent) = self.cfg.netns_dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Poll `f` until true; the deadline only bounds a failing test.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Run busybox inside a namespace.
pub fn bb(ns: &Path, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(BUSYBOX)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nsenter")
}

/// HTTP GET through busybox nc from inside `ns`; returns the whole response ("" on failure).
pub fn fetch_from(ns: &Path, ip: &str, port: u16) -> String {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {BUSYBOX} nc -w 3 {ip} {port}");
    let out = bb(ns, &["sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTP GET from the test process (the host namespace).
pub fn fetch_host(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `nslookup name 127.0.0.11` inside `ns`: the addresses answered for `name`.
pub fn lookup(ns: &Path, name: &str) -> Vec<Ipv4Addr> {
    let out = bb(ns, &["nslookup", name, "127.0.0.11"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // busybox prints the server first ("Server: 127.0.0.11", "Address: 127.0.0.11:53"),
    // then "Name: x" and "Address: ip" lines for the answers.
    let mut after_name = false;
    let mut ips = vec![];
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Name:") {
            after_name = true;
        } else if after_name {
            if let Some(rest) = line.strip_prefix("Address:") {
                if let Ok(ip) = rest.trim().split(' ').next().unwrap_or("").parse() {
                    ips.push(ip);
                }
            }
        }
    }
    ips
}

/// Endpoint spec with Docker-like names.
pub fn ep(
    ctx: &Ctx,
    container: &str,
    ns: &Path,
    network: &str,
    ports: Vec<PortBinding>,
) -> EndpointSpec {
    let cid = ctx.id(container);
    EndpointSpec {
        container_id: cid.clone(),
        netns_path: ns.to_path_buf(),
        network_id: network.to_string(),
        ip: None,
        mac: None,
        aliases: vec![],
        names: vec![container.to_string(), cid[..cid.len().min(12)].to_string()],
        ports,
        dns_servers: vec![],
    }
}

/// Our links left in the host namespace (by interface alias).
pub fn our_links(cfg: &NetConfig) -> Vec<String> {
    let out = run("ip", &["-o", "link", "show"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mark = format!("alias {}:{}:", cfg.alias_prefix, cfg.nft_table);
    text.lines()
        .filter(|l| l.contains(&mark))
        .filter_map(|l| {
            l.split(": ")
                .nth(1)
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
        })
        .collect()
}

/// Text of our nft table ("" when absent).
pub fn nft_table(cfg: &NetConfig) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", &cfg.nft_table])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` consecutive ports, free for TCP and UDP on the host right now, below the
/// ephemeral range (so no outgoing connection grabs them later) and never handed out
/// twice by this test binary.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 500) * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let base = NEXT.fetch_add(u32::from(n), Ordering::SeqCst);
        let base = 20000 + (base - 20000) % 12000;
        let all_free = (0..u32::from(n)).all(|i| {
            let p = (base + i) as u16;
            std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
                && std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
        });
        if all_free {
            return base as u16;
        }
    }
}

/// One port as [`free_ports`] hands them out.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// A UDP socket bound to `0.0.0.0:port` inside the namespace at `ns`.
pub fn udp_socket_in(ns: &Path, port: u16) -> std::net::UdpSocket {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd only changes this short-lived thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns");
        std::net::UdpSocket::bind(("0.0.0.0", port)).expect("bind udp in netns")
    })
    .join()
    .expect("netns thread")
}

/// Resolve `name` over DNS-over-TCP against 127.0.0.11 from inside `ns`.
pub fn lookup_tcp(ns: &Path, name: &str) -> Vec<Ipv4Addr> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;
    let ns = ns.to_path_buf();
    let name = name.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd only changes this short-lived thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns");
        let Ok(mut s) = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 11], 53)),
            Duration::from_secs(3),
        ) else {
            return vec![];
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut q = Message::query();
        q.metadata.id = 4242;
        q.add_query(Query::query(
            Name::from_str(&format!("{name}.")).expect("name"),
            RecordType::A,
        ));
        let bytes = q.to_vec().expect("encode");
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        if s.write_all(&out).is_err() {
            return vec![];
        }
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return vec![];
        }
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut buf).is_err() {
            return vec![];
        }
        let r = Message::from_vec(&buf).expect("decode");
        r.answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    })
    .join()
    .expect("dns thread")
}

/// Interfaces inside a namespace, `lo` included.
pub fn links_in_ns(ns: &Path) -> usize {
    String::from_utf8_lossy(&bb(ns, &["ip", "-o", "link"]).stdout)
        .lines()
        .count()
}
