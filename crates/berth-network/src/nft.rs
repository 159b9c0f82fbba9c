//! nftables: berth's rules live in its own tables and are rewritten as a whole.
//!
//! Every change renders the complete ruleset from the manager's in-memory model and loads
//! it with one `nft -f -` transaction that declares the chains (a no-op when they exist),
//! flushes every rule of our table and adds the rules again. The kernel applies a
//! transaction atomically, so there is never a moment without rules, a failed load leaves
//! the previous rules in place, and reconcile after a crash is the same operation as any
//! other change: whatever leaked is simply not rendered again. Base chains stay
//! registered (no hook churn); if our declarations do not match what exists (an older
//! layout), the tables are deleted and re-created in one transaction instead.
//! Conntrack entries (existing NATed connections) survive either way.
//!
//! Text scripts were chosen over the JSON interface (the `nftables` crate also spawns
//! `nft`, with `-j`): both cost one process spawn per change, which is small next to the
//! kernel's commit; measured on the development host (2 shared cores, under load) a
//! 45-rule table loads in ~20 ms as text and ~22 ms as JSON.
//!
//! Layout of `table ip <name>`:
//! - `guard` (filter, raw): nothing from a bridge may be addressed to 127.0.0.0/8, which
//!   `route_localnet` would otherwise route to the host's loopback services.
//! - `prerouting`/`output` (nat, dstnat): packets to a local address jump to `ports`;
//!   external packets addressed to 127/8 never do (CVE-2020-8558).
//! - `ports`: one DNAT rule per published port.
//! - `postrouting` (nat, srcnat): masquerade egress of non-internal networks, loopback-
//!   sourced traffic DNATed onto a bridge (needs `route_localnet`), and DNATed traffic
//!   between containers of the same bridge (hairpin).
//! - `forward` (filter): `--internal` networks drop everything leaving or entering the
//!   bridge; other bridges cannot reach each other except through published ports.
//!
//! `table bridge <name>` exists only when a network has `enable_icc=false`, and drops
//! port-to-port traffic between that bridge's veths (matched by name: `meta ibrname`
//! needs `nft_meta_bridge`, which some kernels lack).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::error::NetErrorKind;

/// `nft` could not be run or rejected the ruleset.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// Spawning or talking to the `nft` binary failed.
    #[error("nft: {op}: {source}")]
    Exec {
        /// What failed ("spawn nft").
        op: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the script; the previous ruleset is untouched (atomic transaction).
    #[error("nft: {0}")]
    Rejected(String),
}

impl NftError {
    /// Classify for status mapping.
    pub fn kind(&self) -> NetErrorKind {
        NetErrorKind::Internal
    }
}

type Result<T> = std::result::Result<T, NftError>;
use crate::types::Proto;

/// One bridge network as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NftNetwork {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    pub icc: bool,
    pub masquerade: bool,
    /// Host-side veths attached to the bridge (only needed when `icc` is false).
    pub veths: Vec<String>,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NftPort {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// Everything the rules depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NftModel {
    pub networks: Vec<NftNetwork>,
    pub ports: Vec<NftPort>,
}

/// Names that are interpolated into scripts must be plain.
pub(crate) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// How a transaction installs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Declare the chains (a no-op when they exist), flush every rule, add the rules.
    /// Base chains stay registered, so no netfilter hook is re-registered: this is the
    /// fast path of every change.
    Update,
    /// Delete and re-create the tables: the fallback when the existing tables do not
    /// match our declarations (e.g. written by an older berth).
    Replace,
}

const FORWARD_DECL: &str = "type filter hook forward priority filter; policy accept;";

const BASE_CHAINS: [(&str, &str); 5] = [
    (
        "guard",
        "type filter hook prerouting priority raw; policy accept;",
    ),
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "output",
        "type nat hook output priority -100; policy accept;",
    ),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
    ("forward", FORWARD_DECL),
];

/// Rules of each chain of the `ip` table, in order.
fn ip_rules(m: &NftModel) -> Vec<(&'static str, Vec<String>)> {
    let pre = vec![
        "ip daddr 127.0.0.0/8 return".to_string(),
        "fib daddr type local jump ports".to_string(),
    ];
    let out = vec!["fib daddr type local jump ports".to_string()];
    let ports = m
        .ports
        .iter()
        .map(|p| {
            let daddr = match p.host_ip {
                Some(ip) if !ip.is_unspecified() => format!("ip daddr {ip} "),
                _ => String::new(),
            };
            format!(
                "{daddr}{} dport {} dnat to {}:{}",
                p.proto.as_str(),
                p.host_port,
                p.container_ip,
                p.container_port
            )
        })
        .collect();
    let mut post = Vec::new();
    for n in &m.networks {
        let (br, sub) = (&n.bridge, n.subnet);
        post.push(format!("oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade"));
        post.push(format!(
            "oifname \"{br}\" ip saddr {sub} ct status dnat masquerade"
        ));
        if !n.internal && n.masquerade {
            post.push(format!("ip saddr {sub} oifname != \"{br}\" masquerade"));
        }
    }
    let mut fwd = Vec::new();
    for n in m.networks.iter().filter(|n| n.internal) {
        let br = &n.bridge;
        fwd.push(format!("iifname \"{br}\" oifname != \"{br}\" drop"));
        fwd.push(format!("oifname \"{br}\" iifname != \"{br}\" drop"));
    }
    fwd.push("ct status dnat accept".to_string());
    if m.networks.len() > 1 {
        let set = m
            .networks
            .iter()
            .map(|n| format!("\"{}\"", n.bridge))
            .collect::<Vec<_>>()
            .join(", ");
        for n in &m.networks {
            let br = &n.bridge;
            fwd.push(format!(
                "iifname \"{br}\" oifname != \"{br}\" oifname {{ {set} }} drop"
            ));
        }
    }
    // `route_localnet` on a bridge would also let a container (with CAP_NET_RAW, or
    // NET_ADMIN in its own namespace) reach services the host binds to 127.0.0.0/8:
    // nothing addressed to loopback may come in from a bridge (the replies of
    // loopback-published ports are addressed to the gateway until de-NATed later).
    let guard = if m.networks.is_empty() {
        vec![]
    } else {
        let set = m
            .networks
            .iter()
            .map(|n| format!("\"{}\"", n.bridge))
            .collect::<Vec<_>>()
            .join(", ");
        vec![format!("iifname {{ {set} }} ip daddr 127.0.0.0/8 drop")]
    };
    vec![
        ("guard", guard),
        ("prerouting", pre),
        ("output", out),
        ("ports", ports),
        ("postrouting", post),
        ("forward", fwd),
    ]
}

/// Rules of the `bridge` table's forward chain (empty: no table needed).
fn bridge_rules(m: &NftModel) -> Vec<String> {
    m.networks
        .iter()
        .filter(|n| !n.icc && !n.veths.is_empty())
        .map(|n| {
            // `meta ibrname` needs nft_meta_bridge, absent on some kernels: match the ports.
            let set = n
                .veths
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!("iifname {{ {set} }} oifname {{ {set} }} drop")
        })
        .collect()
}

fn write_chains(s: &mut String, family: &str, table: &str, chains: &[(&str, Option<&str>)]) {
    let _ = writeln!(s, "table {family} {table} {{");
    for (name, decl) in chains {
        match decl {
            Some(d) => {
                let _ = writeln!(s, "  chain {name} {{\n    {d}\n  }}");
            }
            None => {
                let _ = writeln!(s, "  chain {name} {{\n  }}");
            }
        }
    }
    let _ = writeln!(s, "}}");
}

fn write_rules(s: &mut String, family: &str, table: &str, chains: &[(&str, Vec<String>)]) {
    let _ = writeln!(s, "table {family} {table} {{");
    for (name, rules) in chains {
        let _ = writeln!(s, "  chain {name} {{");
        for r in rules {
            let _ = writeln!(s, "    {r}");
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");
}

/// Render one atomic transaction installing the model in `table`.
pub(crate) fn render(table: &str, m: &NftModel, mode: Mode) -> String {
    let mut s = String::new();
    let mut ip_chains: Vec<(&str, Option<&str>)> =
        BASE_CHAINS.iter().map(|(n, d)| (*n, Some(*d))).collect();
    ip_chains.push(("ports", None));
    if mode == Mode::Replace {
        // `table x {}` + `delete table x` makes the delete succeed whether or not it existed.
        let _ = writeln!(s, "table ip {table} {{}}\ndelete table ip {table}");
    }
    write_chains(&mut s, "ip", table, &ip_chains);
    let _ = writeln!(s, "flush table ip {table}");
    write_rules(&mut s, "ip", table, &ip_rules(m));
    let br = bridge_rules(m);
    if br.is_empty() {
        let _ = writeln!(s, "table bridge {table} {{}}\ndelete table bridge {table}");
    } else {
        if mode == Mode::Replace {
            let _ = writeln!(s, "table bridge {table} {{}}\ndelete table bridge {table}");
        }
        write_chains(&mut s, "bridge", table, &[("forward", Some(FORWARD_DECL))]);
        let _ = writeln!(s, "flush table bridge {table}");
        write_rules(&mut s, "bridge", table, &[("forward", br)]);
    }
    s
}

/// Render the transaction that removes both of our tables.
pub(crate) fn render_delete(table: &str) -> String {
    format!("table ip {table} {{}}\ndelete table ip {table}\ntable bridge {table} {{}}\ndelete table bridge {table}\n")
}

/// Load a script with `nft -f -`.
pub(crate) fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NftError::Exec {
            op: "spawn nft",
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|source| NftError::Exec {
                op: "write to nft",
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NftError::Exec {
        op: "wait for nft",
        source,
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        tracing::debug!(script, "nft script rejected");
        return Err(NftError::Rejected(err.trim().to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shapes() {
        let m = NftModel {
            networks: vec![
                NftNetwork {
                    bridge: "br-a".into(),
                    subnet: "10.1.0.0/24".parse().unwrap(),
                    internal: false,
                    icc: true,
                    masquerade: true,
                    veths: vec![],
                },
                NftNetwork {
                    bridge: "br-b".into(),
                    subnet: "10.2.0.0/24".parse().unwrap(),
                    internal: true,
                    icc: false,
                    masquerade: true,
                    veths: vec!["veth1".into(), "veth2".into()],
                },
            ],
            ports: vec![
                NftPort {
                    host_ip: None,
                    host_port: 8080,
                    proto: Proto::Tcp,
                    container_ip: Ipv4Addr::new(10, 1, 0, 2),
                    container_port: 80,
                },
                NftPort {
                    host_ip: Some(Ipv4Addr::LOCALHOST),
                    host_port: 5353,
                    proto: Proto::Udp,
                    container_ip: Ipv4Addr::new(10, 1, 0, 2),
                    container_port: 53,
                },
            ],
        };
        let s = render("t1", &m, Mode::Replace);
        assert!(s.starts_with("table ip t1 {}\ndelete table ip t1\n"));
        let u = render("t1", &m, Mode::Update);
        assert!(!u.contains("delete table ip"));
        assert!(u.contains("flush table ip t1\n"));
        assert!(u.contains("flush table bridge t1\n"));
        assert!(u.contains("table bridge t1 {\n  chain forward {\n    type filter hook forward"));
        assert!(s.contains("    tcp dport 8080 dnat to 10.1.0.2:80\n"));
        assert!(s.contains("    ip daddr 127.0.0.1 udp dport 5353 dnat to 10.1.0.2:53\n"));
        assert!(s.contains("ip saddr 10.1.0.0/24 oifname != \"br-a\" masquerade"));
        assert!(!s.contains("ip saddr 10.2.0.0/24 oifname != \"br-b\" masquerade"));
        assert!(s.contains("iifname \"br-b\" oifname != \"br-b\" drop"));
        assert!(
            s.contains("iifname { \"veth1\", \"veth2\" } oifname { \"veth1\", \"veth2\" } drop")
        );
        assert!(s.contains("iifname { \"br-a\", \"br-b\" } ip daddr 127.0.0.0/8 drop"));
        let empty = render("t1", &NftModel::default(), Mode::Update);
        assert!(!empty.contains("table bridge t1 {\n"));
        assert!(empty.contains("table bridge t1 {}\ndelete table bridge t1"));
    }

    #[test]
    fn names() {
        assert!(valid_name("berth-123_x.y", 15));
        assert!(!valid_name("a\"b", 15));
        assert!(!valid_name("a b", 15));
        assert!(!valid_name("", 15));
        assert!(!valid_name("0123456789abcdef", 15));
    }
}
