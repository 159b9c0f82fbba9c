//! Root integration tests on the real kernel: bridges, veths, nftables, embedded DNS.
//! Each test uses its own bridge names, nft table, subnet pool and namespace directory
//! (all derived from the pid and a per-test number) and cleans up in a guard.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

use berth_network::{NetErrorKind, NetworkSpec, PortBinding, Proto};
use common::*;

#[test]
fn dns_resolves_names_and_aliases_on_user_network_only() {
    require_root!();
    let ctx = Ctx::new(1);
    let m = ctx.mgr();
    let user = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let def = m
        .create_network(&NetworkSpec::bridge(ctx.id("d"), "bridge"))
        .unwrap();
    assert_eq!(def.bridge.as_deref(), Some(ctx.cfg.bridge_name.as_str()));

    let web_ns = m.create_netns(&ctx.id("web")).unwrap();
    let cli_ns = m.create_netns(&ctx.id("cli")).unwrap();
    let mut web = ep(&ctx, "web", &web_ns, &user.spec.id, vec![]);
    web.aliases = vec!["www".into(), "Front.End".into()];
    let web_ep = m.connect(&web).unwrap();
    let cli_ep = m
        .connect(&ep(&ctx, "cli", &cli_ns, &user.spec.id, vec![]))
        .unwrap();
    assert_eq!(web_ep.ifname, "eth0");
    assert!(user.subnet.unwrap().contains(&web_ep.ip));

    // by name, alias (case-insensitive), short id; from another container and itself
    assert_eq!(lookup(&cli_ns, "web"), vec![web_ep.ip]);
    assert_eq!(lookup(&cli_ns, "www"), vec![web_ep.ip]);
    assert_eq!(lookup(&cli_ns, "front.end"), vec![web_ep.ip]);
    assert_eq!(lookup(&cli_ns, "web.user"), vec![web_ep.ip]);
    assert_eq!(lookup(&cli_ns, "www.user"), vec![web_ep.ip]);
    assert_eq!(lookup(&cli_ns, &web.names[1]), vec![web_ep.ip], "short id");
    assert_eq!(lookup(&web_ns, "cli"), vec![cli_ep.ip]);
    assert_eq!(lookup_tcp(&web_ns, "cli"), vec![cli_ep.ip], "dns over tcp");
    assert!(lookup(&cli_ns, "nosuchcontainer").is_empty());

    // the default bridge: no embedded DNS at all
    let b1 = m.create_netns(&ctx.id("b1")).unwrap();
    let b2 = m.create_netns(&ctx.id("b2")).unwrap();
    let b1_ep = m
        .connect(&ep(&ctx, "b1", &b1, &def.spec.id, vec![]))
        .unwrap();
    m.connect(&ep(&ctx, "b2", &b2, &def.spec.id, vec![]))
        .unwrap();
    assert!(lookup(&b2, "b1").is_empty());
    // ...but addressing by IP works
    let mut ctx = ctx;
    ctx.httpd(&b1, 80, "b1-token");
    assert!(fetch_from(&b2, &b1_ep.ip.to_string(), 80).contains("b1-token"));

    // disconnect removes the records
    ctx.mgr().disconnect(&ctx.id("web"), &user.spec.id).unwrap();
    assert!(lookup(&cli_ns, "web").is_empty());
}

#[test]
fn published_tcp_port_from_host_and_other_containers() {
    require_root!();
    let mut ctx = Ctx::new(2);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("d"), "bridge"))
        .unwrap();
    let other = m
        .create_network(&NetworkSpec::bridge(ctx.id("o"), "other"))
        .unwrap();
    let web_ns = m.create_netns(&ctx.id("web")).unwrap();
    let cli_ns = m.create_netns(&ctx.id("cli")).unwrap();
    let far_ns = m.create_netns(&ctx.id("far")).unwrap();
    let hp = free_port();
    let ports = vec![
        PortBinding::new(hp, 80, Proto::Tcp),
        PortBinding::new(0, 80, Proto::Tcp),
        PortBinding {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            ..PortBinding::new(0, 80, Proto::Tcp)
        },
    ];
    let web_ep = m
        .connect(&ep(&ctx, "web", &web_ns, &net.spec.id, ports))
        .unwrap();
    let cli_ep = m
        .connect(&ep(&ctx, "cli", &cli_ns, &net.spec.id, vec![]))
        .unwrap();
    let far_ep = m
        .connect(&ep(&ctx, "far", &far_ns, &other.spec.id, vec![]))
        .unwrap();
    assert_eq!(web_ep.ports[0].host_port, hp);
    let picked = web_ep.ports[1].host_port;
    assert_ne!(picked, 0);
    let local_only = web_ep.ports[2].host_port;
    ctx.httpd(&web_ns, 80, "web-token");

    for port in [hp, picked, local_only] {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(
            fetch_host(addr).contains("web-token"),
            "host 127.0.0.1:{port}"
        );
    }
    // the host's bridge address is a host address too
    assert!(fetch_host(SocketAddr::from((net.gateway.unwrap(), hp))).contains("web-token"));
    // another container on the same bridge, through the host (hairpin)
    assert!(fetch_from(&cli_ns, &cli_ep.gateway.to_string(), hp).contains("web-token"));
    // the container itself through its own published port
    assert!(fetch_from(&web_ns, &web_ep.gateway.to_string(), hp).contains("web-token"));
    // a container on another network, through the published port
    assert!(fetch_from(&far_ns, &far_ep.gateway.to_string(), hp).contains("web-token"));
    // a binding on 127.0.0.1 is not reachable on other host addresses
    assert!(!fetch_from(&cli_ns, &cli_ep.gateway.to_string(), local_only).contains("web-token"));

    // reservation, netlink and DNS sockets do not leak into processes the daemon spawns
    let fds = std::process::Command::new(BUSYBOX)
        .args(["ls", "-l", "/proc/self/fd"])
        .output()
        .unwrap();
    let fds = String::from_utf8_lossy(&fds.stdout).into_owned();
    assert!(!fds.contains("socket:"), "inherited sockets:\n{fds}");
    // a host address that does not exist is a clear error
    let bad = PortBinding {
        host_ip: Some(Ipv4Addr::new(192, 0, 2, 250)),
        ..PortBinding::new(0, 80, Proto::Tcp)
    };
    let ns2 = ctx.mgr().create_netns(&ctx.id("bad")).unwrap();
    let err = ctx
        .mgr()
        .connect(&ep(&ctx, "bad", &ns2, &net.spec.id, vec![bad]))
        .unwrap_err();
    assert_eq!(err.kind(), NetErrorKind::InvalidInput, "{err}");

    // the port is reserved: nothing else on the host can bind it
    assert!(std::net::TcpListener::bind(("0.0.0.0", hp)).is_err());
    ctx.mgr().disconnect(&ctx.id("web"), &net.spec.id).unwrap();
    assert!(std::net::TcpListener::bind(("0.0.0.0", hp)).is_ok());
    assert!(!nft_table(&ctx.cfg).contains(&format!("dport {hp}")));
}

#[test]
fn published_port_range_and_udp() {
    require_root!();
    let mut ctx = Ctx::new(3);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("srv")).unwrap();
    let base = free_ports(2);
    let mut ports =
        PortBinding::expand_range(None, Some((base, base + 1)), (8080, 8081), Proto::Tcp).unwrap();
    let u = free_port();
    ports.push(PortBinding::new(u, 5000, Proto::Udp));
    let e = m
        .connect(&ep(&ctx, "srv", &ns, &net.spec.id, ports))
        .unwrap();
    assert_eq!(e.ports.len(), 3);
    ctx.httpd(&ns, 8080, "tok-8080");
    ctx.httpd(&ns, 8081, "tok-8081");
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, base))).contains("tok-8080"));
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, base + 1))).contains("tok-8081"));

    // UDP (busybox nc has no UDP mode): an echo socket bound inside the namespace
    let srv = udp_socket_in(&ns, 5000);
    srv.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let got = wait_until(|| {
        let _ = sock.send_to(b"hello-udp", ("127.0.0.1", u));
        let mut buf = [0u8; 64];
        match srv.recv_from(&mut buf) {
            Ok((n, peer)) if &buf[..n] == b"hello-udp" => {
                let _ = srv.send_to(b"pong-udp", peer);
                matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"pong-udp")
            }
            _ => false,
        }
    });
    assert!(got, "udp datagram did not make the round trip");
}

#[test]
fn networks_are_isolated_and_internal_has_no_egress() {
    require_root!();
    let mut ctx = Ctx::new(4);
    let (out_ns, out_ip) = ctx.outside(4);
    ctx.httpd(&out_ns, 80, "outside-token");
    let m = ctx.mgr();
    let a = m
        .create_network(&NetworkSpec::bridge(ctx.id("a"), "neta"))
        .unwrap();
    let b = m
        .create_network(&NetworkSpec::bridge(ctx.id("b"), "netb"))
        .unwrap();
    let mut ispec = NetworkSpec::bridge(ctx.id("i"), "neti");
    ispec.internal = true;
    let i = m.create_network(&ispec).unwrap();
    let a1 = m.create_netns(&ctx.id("a1")).unwrap();
    let a2 = m.create_netns(&ctx.id("a2")).unwrap();
    let b1 = m.create_netns(&ctx.id("b1")).unwrap();
    let i1 = m.create_netns(&ctx.id("i1")).unwrap();
    let i2 = m.create_netns(&ctx.id("i2")).unwrap();
    let a1_ep = m.connect(&ep(&ctx, "a1", &a1, &a.spec.id, vec![])).unwrap();
    m.connect(&ep(&ctx, "a2", &a2, &a.spec.id, vec![])).unwrap();
    m.connect(&ep(&ctx, "b1", &b1, &b.spec.id, vec![])).unwrap();
    let i1_ep = m.connect(&ep(&ctx, "i1", &i1, &i.spec.id, vec![])).unwrap();
    m.connect(&ep(&ctx, "i2", &i2, &i.spec.id, vec![])).unwrap();
    ctx.httpd(&a1, 80, "a1-token");
    ctx.httpd(&i1, 80, "i1-token");

    // same network: reachable; other network: not
    assert!(fetch_from(&a2, &a1_ep.ip.to_string(), 80).contains("a1-token"));
    assert!(!fetch_from(&b1, &a1_ep.ip.to_string(), 80).contains("a1-token"));
    // egress (masqueraded) works from a normal network...
    assert!(fetch_from(&a1, &out_ip.to_string(), 80).contains("outside-token"));
    // ...not from an internal one, which still talks inside itself
    assert!(!fetch_from(&i2, &out_ip.to_string(), 80).contains("outside-token"));
    assert!(fetch_from(&i2, &i1_ep.ip.to_string(), 80).contains("i1-token"));
    // and the internal network is not reachable from other networks
    assert!(!fetch_from(&a2, &i1_ep.ip.to_string(), 80).contains("i1-token"));
    // enable_ip_masquerade=false: packets leave with the container's own address, which
    // the outside namespace has no route back to
    let m = ctx.mgr();
    let mut nspec = NetworkSpec::bridge(ctx.id("n"), "nomasq");
    nspec.masquerade = false;
    let n = m.create_network(&nspec).unwrap();
    let n1 = m.create_netns(&ctx.id("n1")).unwrap();
    m.connect(&ep(&ctx, "n1", &n1, &n.spec.id, vec![])).unwrap();
    assert!(!fetch_from(&n1, &out_ip.to_string(), 80).contains("outside-token"));
    // ...and with a route back, the un-NATed traffic works
    let out_name = out_ns.file_name().unwrap().to_str().unwrap().to_string();
    let back = out_ip.octets();
    let via = format!("{}.{}.{}.1", back[0], back[1], back[2]);
    run(
        "ip",
        &[
            "-n",
            &out_name,
            "route",
            "add",
            &n.subnet.unwrap().to_string(),
            "via",
            &via,
        ],
    );
    assert!(fetch_from(&n1, &out_ip.to_string(), 80).contains("outside-token"));
}

#[test]
fn icc_disabled_blocks_containers_on_same_bridge() {
    require_root!();
    let mut ctx = Ctx::new(5);
    let m = ctx.mgr();
    let mut spec = NetworkSpec::bridge(ctx.id("n"), "noicc");
    spec.enable_icc = false;
    let n = m.create_network(&spec).unwrap();
    let s = m.create_netns(&ctx.id("s")).unwrap();
    let c = m.create_netns(&ctx.id("c")).unwrap();
    let s_ep = m.connect(&ep(&ctx, "s", &s, &n.spec.id, vec![])).unwrap();
    m.connect(&ep(&ctx, "c", &c, &n.spec.id, vec![])).unwrap();
    ctx.httpd(&s, 80, "s-token");
    assert!(!fetch_from(&c, &s_ep.ip.to_string(), 80).contains("s-token"));
    // the gateway (host) is still reachable: DNS etc. keep working
    assert_eq!(lookup(&c, "s"), vec![s_ep.ip]);
}

#[test]
fn port_conflict_fails_cleanly() {
    require_root!();
    let ctx = Ctx::new(6);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let n1 = m.create_netns(&ctx.id("one")).unwrap();
    let n2 = m.create_netns(&ctx.id("two")).unwrap();
    let n3 = m.create_netns(&ctx.id("three")).unwrap();

    // taken by a listening socket of someone else
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let ok_port = free_port();
    let err = m
        .connect(&ep(
            &ctx,
            "one",
            &n1,
            &net.spec.id,
            vec![
                PortBinding::new(ok_port, 81, Proto::Tcp),
                PortBinding::new(busy, 80, Proto::Tcp),
            ],
        ))
        .unwrap_err();
    assert_eq!(err.kind(), NetErrorKind::Conflict, "{err}");
    assert!(
        err.to_string().contains("port is already allocated"),
        "{err}"
    );
    assert!(
        our_links(&ctx.cfg).iter().all(|l| !l.starts_with("veth")),
        "veth left behind"
    );
    assert!(!nft_table(&ctx.cfg).contains("dnat to"), "rule left behind");
    assert!(m.endpoints().is_empty());
    // the first, successfully reserved port was released again
    assert!(std::net::TcpListener::bind(("0.0.0.0", ok_port)).is_ok());
    // the namespace has no interface but lo
    let links = bb(&n1, &["ip", "-o", "link"]);
    assert_eq!(String::from_utf8_lossy(&links.stdout).lines().count(), 1);

    // taken by another of our bindings
    let p = free_port();
    let e2 = m
        .connect(&ep(
            &ctx,
            "two",
            &n2,
            &net.spec.id,
            vec![PortBinding::new(p, 80, Proto::Tcp)],
        ))
        .unwrap();
    let err = m
        .connect(&ep(
            &ctx,
            "three",
            &n3,
            &net.spec.id,
            vec![PortBinding::new(p, 80, Proto::Tcp)],
        ))
        .unwrap_err();
    assert_eq!(err.kind(), NetErrorKind::Conflict);
    // UDP on the same number is a different port
    m.connect(&ep(
        &ctx,
        "three",
        &n3,
        &net.spec.id,
        vec![PortBinding::new(p, 80, Proto::Udp)],
    ))
    .unwrap();
    // a port whose last server left connections in TIME_WAIT is free (like Docker's)
    let tw = free_port();
    {
        let l = std::net::TcpListener::bind(("127.0.0.1", tw)).unwrap();
        let c = std::net::TcpStream::connect(("127.0.0.1", tw)).unwrap();
        let (srv, _) = l.accept().unwrap();
        drop(srv); // the server closes first: its side goes to TIME_WAIT
        drop(c);
    }
    let tw_ns = m.create_netns(&ctx.id("tw")).unwrap();
    m.connect(&ep(
        &ctx,
        "tw",
        &tw_ns,
        &net.spec.id,
        vec![PortBinding::new(tw, 80, Proto::Tcp)],
    ))
    .unwrap();
    // the failed attempt did not consume an address reused later, and "one" can still connect
    let e1 = m
        .connect(&ep(&ctx, "one", &n1, &net.spec.id, vec![]))
        .unwrap();
    assert_ne!(e1.ip, e2.ip);
    drop(held);
}

#[test]
fn reconcile_after_crash_keeps_known_and_removes_leaks() {
    require_root!();
    let mut ctx = Ctx::new(7);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let gone_net = m
        .create_network(&NetworkSpec::bridge(ctx.id("g"), "gone"))
        .unwrap();
    let keep_ns = m.create_netns(&ctx.id("keep")).unwrap();
    let leak_ns = m.create_netns(&ctx.id("leak")).unwrap();
    let none_ns = m.create_netns(&ctx.id("none")).unwrap();
    let hp = free_port();
    let leak_port = free_port();
    let keep_spec = ep(
        &ctx,
        "keep",
        &keep_ns,
        &net.spec.id,
        vec![PortBinding::new(hp, 80, Proto::Tcp)],
    );
    let keep_ep = m.connect(&keep_spec).unwrap();
    let leak_ep = m
        .connect(&ep(
            &ctx,
            "leak",
            &leak_ns,
            &net.spec.id,
            vec![PortBinding::new(leak_port, 80, Proto::Tcp)],
        ))
        .unwrap();
    ctx.httpd(&keep_ns, 80, "keep-token");
    assert_eq!(lookup(&leak_ns, "keep"), vec![keep_ep.ip]);

    // "crash": the manager goes away without cleaning anything
    drop(ctx.mgr.take());
    // kernel forwarding keeps working without the daemon; DNS does not
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("keep-token"));
    assert!(lookup(&leak_ns, "keep").is_empty());

    // restart: the DB knows `net`, `keep` and the --network none container
    let m2 = berth_network::NetManager::new(ctx.cfg.clone()).unwrap();
    m2.reconcile(
        std::slice::from_ref(&net.spec),
        &[(keep_spec.clone(), keep_ep.clone())],
        &[ctx.id("none")],
    )
    .unwrap();
    ctx.mgr = Some(m2);
    let m = ctx.mgr();

    let links = our_links(&ctx.cfg);
    assert!(links.contains(&net.bridge.clone().unwrap()), "{links:?}");
    assert!(links.contains(&keep_ep.veth_host), "{links:?}");
    assert!(!links.contains(&leak_ep.veth_host), "{links:?}");
    assert!(
        !links.contains(&gone_net.bridge.clone().unwrap()),
        "{links:?}"
    );
    assert!(!leak_ns.exists());
    assert!(none_ns.exists() && keep_ns.exists());
    let rules = nft_table(&ctx.cfg);
    assert!(rules.contains(&format!("dport {hp}")));
    assert!(!rules.contains(&format!("dport {leak_port}")));
    assert!(std::net::TcpListener::bind(("0.0.0.0", leak_port)).is_ok());
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", hp)).is_err(),
        "kept port is reserved again"
    );

    // published port and DNS work again; IPAM knows the kept address
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("keep-token"));
    assert_eq!(lookup(&keep_ns, "keep"), vec![keep_ep.ip]);
    let again = m.create_netns(&ctx.id("new")).unwrap();
    let mut want_same = ep(&ctx, "new", &again, &net.spec.id, vec![]);
    want_same.ip = Some(keep_ep.ip);
    assert_eq!(
        m.connect(&want_same).unwrap_err().kind(),
        NetErrorKind::Conflict
    );

    // a veth lost while the daemon was down is re-plumbed
    run("ip", &["link", "del", &keep_ep.veth_host]);
    m.reconcile(
        std::slice::from_ref(&net.spec),
        &[(keep_spec.clone(), keep_ep.clone())],
        &[ctx.id("none")],
    )
    .unwrap();
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("keep-token"));
    // a lost bridge is re-created and the surviving veth re-attached
    run("ip", &["link", "del", net.bridge.as_deref().unwrap()]);
    assert!(!fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("keep-token"));
    m.reconcile(
        std::slice::from_ref(&net.spec),
        &[(keep_spec, keep_ep.clone())],
        &[ctx.id("none")],
    )
    .unwrap();
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("keep-token"));
    assert_eq!(lookup(&keep_ns, "keep"), vec![keep_ep.ip]);
}

#[test]
fn subnets_avoid_host_routes_and_each_other() {
    require_root!();
    let ctx = Ctx::new(8);
    let m = ctx.mgr();
    // occupy the first /24 of the pool with an address on a veth of our own
    let dummy = format!("vd{}", ctx.tag);
    run(
        "ip",
        &[
            "link",
            "add",
            &dummy,
            "type",
            "veth",
            "peer",
            "name",
            &format!("ve{}", ctx.tag),
        ],
    );
    struct DelLink(String);
    impl Drop for DelLink {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .status();
        }
    }
    let _g = DelLink(dummy.clone());
    run("ip", &["addr", "add", "10.208.0.1/24", "dev", &dummy]);
    run("ip", &["link", "set", &dummy, "up"]);
    let a = m
        .create_network(&NetworkSpec::bridge(ctx.id("a"), "a"))
        .unwrap();
    let b = m
        .create_network(&NetworkSpec::bridge(ctx.id("b"), "b"))
        .unwrap();
    assert_eq!(a.subnet.unwrap().to_string(), "10.208.1.0/24");
    assert_eq!(b.subnet.unwrap().to_string(), "10.208.2.0/24");
    let mut c = NetworkSpec::bridge(ctx.id("c"), "c");
    c.subnet = Some("10.208.1.128/25".parse().unwrap());
    assert_eq!(
        m.create_network(&c).unwrap_err().kind(),
        NetErrorKind::Conflict
    );
    c.subnet = Some("10.208.0.0/16".parse().unwrap());
    assert_eq!(
        m.create_network(&c).unwrap_err().kind(),
        NetErrorKind::Conflict
    );
    let mut d = NetworkSpec::bridge(ctx.id("d"), "a");
    d.subnet = Some("10.209.0.0/24".parse().unwrap());
    assert_eq!(
        m.create_network(&d).unwrap_err().kind(),
        NetErrorKind::Conflict,
        "duplicate name"
    );
    // remove refuses while endpoints exist
    let ns = m.create_netns(&ctx.id("x")).unwrap();
    m.connect(&ep(&ctx, "x", &ns, &a.spec.id, vec![])).unwrap();
    assert_eq!(
        m.remove_network(&a.spec.id).unwrap_err().kind(),
        NetErrorKind::Conflict
    );
    m.remove_netns(&ctx.id("x")).unwrap();
    assert!(!ns.exists());
    m.remove_network(&a.spec.id).unwrap();
    assert!(!our_links(&ctx.cfg).contains(&a.bridge.unwrap()));
}

/// A fake upstream resolver on the host's loopback answering every A query with `ip`.
fn fake_upstream(ip: Ipv4Addr) -> SocketAddr {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record};
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::error_msg(q.metadata.id, OpCode::Query, ResponseCode::NoError);
            r.queries = q.queries.clone();
            if let Some(first) = q.queries.first() {
                if first.query_type() == hickory_proto::rr::RecordType::A {
                    r.answers.push(Record::from_rdata(
                        first.name().clone(),
                        60,
                        RData::A(A(ip)),
                    ));
                }
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    addr
}

#[test]
fn dns_forwards_other_names_to_loopback_upstream_from_host_side() {
    require_root!();
    let mut ctx = Ctx::new(9);
    let answer = Ipv4Addr::new(192, 0, 2, 77);
    ctx.cfg.dns_upstreams = vec![fake_upstream(answer)];
    ctx.mgr = Some(berth_network::NetManager::new(ctx.cfg.clone()).unwrap());
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let mut ispec = NetworkSpec::bridge(ctx.id("i"), "internal");
    ispec.internal = true;
    let inet = m.create_network(&ispec).unwrap();
    let ns = m.create_netns(&ctx.id("c")).unwrap();
    let ins = m.create_netns(&ctx.id("ic")).unwrap();
    m.connect(&ep(&ctx, "c", &ns, &net.spec.id, vec![]))
        .unwrap();
    m.connect(&ep(&ctx, "ic", &ins, &inet.spec.id, vec![]))
        .unwrap();
    assert_eq!(lookup(&ns, "example.test"), vec![answer]);
    // a container's own --dns servers replace the host's upstreams
    let own = Ipv4Addr::new(192, 0, 2, 88);
    let ns2 = m.create_netns(&ctx.id("c2")).unwrap();
    let mut spec2 = ep(&ctx, "c2", &ns2, &net.spec.id, vec![]);
    spec2.dns_servers = vec![fake_upstream(own)];
    m.connect(&spec2).unwrap();
    assert_eq!(lookup(&ns2, "example.test"), vec![own]);
    assert_eq!(lookup(&ns, "example.test"), vec![answer]);
    // names of the container's own network still win
    assert_eq!(lookup(&ns, "c").len(), 1);
    assert_ne!(lookup(&ns, "c"), vec![answer]);
    // containers only on internal networks get no forwarding (like Docker)
    assert!(lookup(&ins, "example.test").is_empty());
    assert_eq!(lookup(&ins, "ic").len(), 1);
}

#[test]
fn connect_disconnect_second_network_moves_default_route() {
    require_root!();
    let ctx = Ctx::new(10);
    let m = ctx.mgr();
    let a = m
        .create_network(&NetworkSpec::bridge(ctx.id("a"), "a"))
        .unwrap();
    let b = m
        .create_network(&NetworkSpec::bridge(ctx.id("b"), "b"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("c")).unwrap();
    let peer = m.create_netns(&ctx.id("p")).unwrap();
    let ea = m.connect(&ep(&ctx, "c", &ns, &a.spec.id, vec![])).unwrap();
    let eb = m.connect(&ep(&ctx, "c", &ns, &b.spec.id, vec![])).unwrap();
    m.connect(&ep(&ctx, "p", &peer, &b.spec.id, vec![]))
        .unwrap();
    assert_eq!((ea.ifname.as_str(), eb.ifname.as_str()), ("eth0", "eth1"));
    let route = |ns: &std::path::Path| {
        String::from_utf8_lossy(&bb(ns, &["ip", "route"]).stdout).into_owned()
    };
    assert!(
        route(&ns).contains(&format!("default via {}", ea.gateway)),
        "{}",
        route(&ns)
    );
    // names from both networks resolve
    assert_eq!(lookup(&ns, "p").len(), 1);
    m.disconnect(&ctx.id("c"), &a.spec.id).unwrap();
    assert!(
        route(&ns).contains(&format!("default via {}", eb.gateway)),
        "{}",
        route(&ns)
    );
    assert!(!String::from_utf8_lossy(&bb(&ns, &["ip", "-o", "link"]).stdout).contains("eth0"));
    assert_eq!(lookup(&ns, "p").len(), 1);
    m.disconnect(&ctx.id("c"), &b.spec.id).unwrap();
    // no user network left: no names resolve
    assert!(lookup(&ns, "p").is_empty());
    assert_eq!(
        m.disconnect(&ctx.id("c"), &b.spec.id).unwrap_err().kind(),
        NetErrorKind::NotFound
    );
    // reconnecting right away serves DNS again (no race with the old listener)
    m.connect(&ep(&ctx, "c", &ns, &b.spec.id, vec![])).unwrap();
    assert_eq!(lookup(&ns, "p").len(), 1);
}

/// Cost of a container's network setup (`cargo test -p berth-network --test network
/// bench_ -- --ignored --nocapture`). Prints, asserts nothing about time.
#[test]
#[ignore]
fn bench_connect_disconnect() {
    require_root!();
    let ctx = Ctx::new(11);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let n = 20;
    let mut t_ns = std::time::Duration::ZERO;
    let mut t_conn = std::time::Duration::ZERO;
    let mut t_conn_np = std::time::Duration::ZERO;
    let mut t_rm = std::time::Duration::ZERO;
    for i in 0..n {
        let name = format!("c{i}");
        let t0 = std::time::Instant::now();
        let ns = m.create_netns(&ctx.id(&name)).unwrap();
        let t1 = std::time::Instant::now();
        // every other container publishes a port (an nft transaction); the rest do not
        let ports = if i % 2 == 0 {
            vec![PortBinding::new(0, 80, Proto::Tcp)]
        } else {
            vec![]
        };
        m.connect(&ep(&ctx, &name, &ns, &net.spec.id, ports))
            .unwrap();
        let t2 = std::time::Instant::now();
        t_ns += t1 - t0;
        if i % 2 == 0 {
            t_conn += t2 - t1;
        } else {
            t_conn_np += t2 - t1;
        }
    }
    for i in 0..n {
        let t0 = std::time::Instant::now();
        m.remove_netns(&ctx.id(&format!("c{i}"))).unwrap();
        t_rm += t0.elapsed();
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / n as f64;
    eprintln!(
        "per container: create_netns {:.1} ms, connect with 1 port {:.1} ms, without ports {:.1} ms, \
         disconnect+remove {:.1} ms",
        per(t_ns),
        2.0 * per(t_conn),
        2.0 * per(t_conn_np),
        per(t_rm)
    );
}

/// Requests/sec reported by `wrk` (run inside `ns` when given).
fn wrk(ns: Option<&std::path::Path>, url: &str) -> f64 {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("wrk");
            c
        }
        None => std::process::Command::new("wrk"),
    };
    let out = cmd
        .args(["-t1", "-c10", "-d4s", url])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Port-forward throughput: busybox httpd natively on the host vs behind
/// `-p 127.0.0.1:X:80`, and container to container (`cargo test -p berth-network --test
/// network bench_ -- --ignored --nocapture`). Prints, asserts nothing about speed.
#[test]
#[ignore]
fn bench_port_forward_throughput() {
    require_root!();
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: wrk missing");
        return;
    }
    let mut ctx = Ctx::new(12);
    let native_port = free_port();
    let host_ns = std::path::PathBuf::from("/proc/self/ns/net");
    ctx.httpd(&host_ns, native_port, "native-token");
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let web = m.create_netns(&ctx.id("web")).unwrap();
    let cli = m.create_netns(&ctx.id("cli")).unwrap();
    let hp = free_port();
    let binding = PortBinding {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        ..PortBinding::new(hp, 80, Proto::Tcp)
    };
    let web_ep = m
        .connect(&ep(&ctx, "web", &web, &net.spec.id, vec![binding]))
        .unwrap();
    m.connect(&ep(&ctx, "cli", &cli, &net.spec.id, vec![]))
        .unwrap();
    ctx.httpd(&web, 80, "web-token");
    let (mut native, mut fwd, mut c2c) = (0.0, 0.0, 0.0);
    for _ in 0..3 {
        native += wrk(None, &format!("http://127.0.0.1:{native_port}/"));
        fwd += wrk(None, &format!("http://127.0.0.1:{hp}/"));
        c2c += wrk(Some(&cli), &format!("http://{}/", web_ep.ip));
    }
    eprintln!(
        "req/s (avg of 3): native {:.0}, published 127.0.0.1 {:.0} ({:.0}%), container->container {:.0} ({:.0}%)",
        native / 3.0,
        fwd / 3.0,
        100.0 * fwd / native,
        c2c / 3.0,
        100.0 * c2c / native
    );
}

#[test]
fn udp_flow_started_before_publishing_reaches_the_container() {
    require_root!();
    let ctx = Ctx::new(13);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("srv")).unwrap();
    let u = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    // a client already talking to the port creates a conntrack entry without NAT...
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(b"early", ("127.0.0.1", u)).unwrap();
    // ...which must not keep the same flow away from the container once published
    m.connect(&ep(
        &ctx,
        "srv",
        &ns,
        &net.spec.id,
        vec![PortBinding::new(u, 5000, Proto::Udp)],
    ))
    .unwrap();
    let srv = udp_socket_in(&ns, 5000);
    srv.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let got = wait_until(|| {
        let _ = client.send_to(b"late", ("127.0.0.1", u));
        let mut buf = [0u8; 16];
        matches!(srv.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"late")
    });
    assert!(
        got,
        "stale conntrack entry kept the flow away from the container"
    );
}

/// The daemon's shape: manager built inside a multi-thread runtime (DNS served by it),
/// operations run through `spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_tokio_runtime() {
    require_root!();
    let ctx = std::sync::Arc::new(Ctx::new(14));
    let c = ctx.clone();
    let (ns, ip) = tokio::task::spawn_blocking(move || {
        let m = c.mgr();
        let net = m
            .create_network(&NetworkSpec::bridge(c.id("u"), "user"))
            .unwrap();
        let ns = m.create_netns(&c.id("web")).unwrap();
        let e = m
            .connect(&ep(&c, "web", &ns, &net.spec.id, vec![]))
            .unwrap();
        (ns, e.ip)
    })
    .await
    .unwrap();
    let found = tokio::task::spawn_blocking(move || lookup(&ns, "web"))
        .await
        .unwrap();
    assert_eq!(found, vec![ip]);
    // the guard's cleanup runs blocking work: do it off the async workers
    tokio::task::spawn_blocking(move || drop(ctx))
        .await
        .unwrap();
}

#[test]
fn tables_of_an_older_layout_are_replaced() {
    require_root!();
    let ctx = Ctx::new(15);
    // an `output` base chain with another priority cannot be re-declared: update fails
    let old = format!(
        "table ip {0} {{\n chain output {{\n type nat hook output priority 0; policy accept;\n }}\n chain stale {{\n }}\n}}\n",
        ctx.cfg.nft_table
    );
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(old.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("c")).unwrap();
    let hp = free_port();
    m.connect(&ep(
        &ctx,
        "c",
        &ns,
        &net.spec.id,
        vec![PortBinding::new(hp, 80, Proto::Tcp)],
    ))
    .unwrap();
    let t = nft_table(&ctx.cfg);
    assert!(t.contains(&format!("dport {hp}")), "{t}");
    assert!(!t.contains("chain stale"), "{t}");
    assert!(t.contains("type nat hook output priority -100"), "{t}");
}

/// `route_localnet` on the bridge must not expose the host's loopback services to a
/// container that routes 127.0.0.0/8 towards its gateway (CVE-2020-8558 class).
#[test]
fn containers_cannot_reach_host_loopback_services() {
    require_root!();
    let mut ctx = Ctx::new(16);
    let secret = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let sp = secret.local_addr().unwrap().port();
    std::thread::spawn(move || {
        while let Ok((mut c, _)) = secret.accept() {
            use std::io::Write;
            let _ = c.write_all(b"HOSTSECRET\n");
        }
    });
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("evil")).unwrap();
    let hp = free_port();
    let binding = PortBinding {
        host_ip: Some(Ipv4Addr::LOCALHOST),
        ..PortBinding::new(hp, 80, Proto::Tcp)
    };
    let e = m
        .connect(&ep(&ctx, "evil", &ns, &net.spec.id, vec![binding]))
        .unwrap();
    ctx.httpd(&ns, 80, "evil-token");
    // the "container" (root in its namespace) routes 127.0.0.2 to the host
    let script = format!(
        "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; \
         ip route del 127.0.0.0/8 dev lo table local; ip route add 127.0.0.2/32 via {} dev eth0",
        e.gateway
    );
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fetch_from(&ns, "127.0.0.2", sp).contains("HOSTSECRET"));
    // while the loopback-published port keeps working
    assert!(fetch_host(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).contains("evil-token"));
    // and a neighbour host sending to 127.0.0.1 does not reach it either
    let (out_ns, out_ip) = ctx.outside(16);
    let o = out_ip.octets();
    let script = format!(
        "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; \
         ip route del 127.0.0.0/8 dev lo table local; ip route add 127.0.0.1/32 via {}.{}.{}.1 dev eth0",
        o[0], o[1], o[2]
    );
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", out_ns.display()))
        .args(["sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fetch_from(&out_ns, "127.0.0.1", hp).contains("evil-token"));
}

/// HARDENING B19: after a host reboot `/run` is empty: namespaces are gone, bridges and
/// rules too. Reconcile re-creates the networks, drops endpoints whose namespace is gone
/// (freeing their addresses and ports), and the engine re-creates its containers.
#[test]
fn reconcile_after_host_reboot() {
    require_root!();
    let ctx = Ctx::new(17);
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let ns = m.create_netns(&ctx.id("c")).unwrap();
    let hp = free_port();
    let spec = ep(
        &ctx,
        "c",
        &ns,
        &net.spec.id,
        vec![PortBinding::new(hp, 80, Proto::Tcp)],
    );
    let e = m.connect(&spec).unwrap();
    // "reboot": every kernel object and the namespace files vanish
    ctx.mgr().cleanup_all().unwrap();
    assert!(!ns.exists());
    let m2 = berth_network::NetManager::new(ctx.cfg.clone()).unwrap();
    m2.reconcile(
        std::slice::from_ref(&net.spec),
        &[(spec.clone(), e.clone())],
        &[ctx.id("c")],
    )
    .unwrap();
    assert_eq!(our_links(&ctx.cfg), vec![net.bridge.clone().unwrap()]);
    assert!(m2.endpoints().is_empty());
    assert!(!nft_table(&ctx.cfg).contains("dnat to"));
    // the engine restarts the container: same address and port are available again
    let ns = m2.create_netns(&ctx.id("c")).unwrap();
    let mut again = spec.clone();
    again.netns_path = ns;
    again.ip = Some(e.ip);
    let e2 = m2.connect(&again).unwrap();
    assert_eq!((e2.ip, e2.ports[0].host_port), (e.ip, hp));
    m2.remove_netns(&ctx.id("c")).unwrap();
}

/// The engine may hand over a namespace it did not get from `create_netns` (e.g. made
/// by an external runtime), with `lo` still down.
#[test]
fn foreign_namespace_with_lo_down_gets_dns() {
    require_root!();
    let mut ctx = Ctx::new(18);
    let ns = ctx.foreign_netns("x");
    let m = ctx.mgr();
    let net = m
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let e = m
        .connect(&ep(&ctx, "x", &ns, &net.spec.id, vec![]))
        .unwrap();
    assert_eq!(lookup(&ns, "x"), vec![e.ip]);
    // forgetting the container releases everything of ours, the file is not ours to delete
    m.remove_netns(&ctx.id("x")).unwrap();
    assert!(ns.exists());
    assert!(m.endpoints().is_empty());
    assert_eq!(links_in_ns(&ns), 1);
}
