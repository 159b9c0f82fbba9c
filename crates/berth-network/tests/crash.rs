//! HARDENING B17: the daemon dies at every step of network setup/teardown; after a
//! restart and `reconcile` nothing leaks (interfaces, rules, port reservations, addresses)
//! and the operation can simply be retried.
//!
//! A helper "daemon" runs in a child process (this test binary, filtered to the ignored
//! `crash_helper` test) with `BERTH_NETWORK_CRASH_AT=<point>`, which makes it exit
//! abruptly at that step, without running any destructor or rollback.

mod common;

use std::path::Path;
use std::process::Command;

use berth_network::{
    Endpoint, EndpointSpec, NetConfig, NetManager, NetworkSpec, PortBinding, Proto,
};
use common::*;
use serde::{Deserialize, Serialize};

const INPUT: &str = "BERTH_NET_CRASH_INPUT";

#[derive(Serialize, Deserialize)]
enum Op {
    CreateNetwork(NetworkSpec),
    Connect(EndpointSpec),
    Disconnect(String, String),
}

/// What the helper daemon's database holds when it starts, and what it is asked to do.
#[derive(Serialize, Deserialize)]
struct Input {
    cfg: NetConfig,
    networks: Vec<NetworkSpec>,
    endpoints: Vec<(EndpointSpec, Endpoint)>,
    containers: Vec<String>,
    op: Op,
}

#[test]
#[ignore = "helper daemon, run in a child process by the crash tests"]
fn crash_helper() {
    let Ok(raw) = std::env::var(INPUT) else {
        return;
    };
    let input: Input = serde_json::from_str(&raw).expect("helper input");
    let m = NetManager::new(input.cfg).expect("manager");
    m.reconcile(&input.networks, &input.endpoints, &input.containers)
        .expect("reconcile");
    match input.op {
        Op::CreateNetwork(spec) => drop(m.create_network(&spec)),
        Op::Connect(spec) => drop(m.connect(&spec)),
        Op::Disconnect(c, n) => drop(m.disconnect(&c, &n)),
    }
    // the crash point was not reached
    std::process::exit(3);
}

fn crash_at(point: &str, input: &Input) {
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new(exe)
        .args([
            "crash_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(std::process::Stdio::null())
        .env("BERTH_NETWORK_CRASH_AT", point)
        .env(
            INPUT,
            serde_json::to_string(input).expect("serialize input"),
        )
        .status()
        .expect("run helper");
    assert_eq!(status.code(), Some(137), "helper did not crash at {point}");
}

/// Interfaces inside a namespace, `lo` included.
fn links_in(ns: &Path) -> usize {
    String::from_utf8_lossy(&bb(ns, &["ip", "-o", "link"]).stdout)
        .lines()
        .count()
}

#[test]
fn crash_during_connect_leaves_nothing_after_reconcile() {
    require_root!();
    let mut ctx = Ctx::new(21);
    let net = ctx
        .mgr()
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let cid = ctx.id("c");
    let ns = ctx.mgr().create_netns(&cid).unwrap();
    drop(ctx.mgr.take());
    for point in [
        "connect:ports",
        "connect:veth",
        "connect:master",
        "connect:container",
        "connect:rules",
    ] {
        let hp = free_port();
        let spec = ep(
            &ctx,
            "c",
            &ns,
            &net.spec.id,
            vec![PortBinding::new(hp, 80, Proto::Tcp)],
        );
        let input = Input {
            cfg: ctx.cfg.clone(),
            networks: vec![net.spec.clone()],
            endpoints: vec![],
            containers: vec![cid.clone()],
            op: Op::Connect(spec.clone()),
        };
        crash_at(point, &input);
        // restart; the engine never got the endpoint back, so its DB does not have it
        let m = NetManager::new(ctx.cfg.clone()).unwrap();
        m.reconcile(
            std::slice::from_ref(&net.spec),
            &[],
            std::slice::from_ref(&cid),
        )
        .unwrap();
        assert_eq!(links_in(&ns), 1, "{point}: veth left in the container");
        assert_eq!(
            our_links(&ctx.cfg),
            vec![net.bridge.clone().unwrap()],
            "{point}"
        );
        assert!(
            !nft_table(&ctx.cfg).contains("dnat to"),
            "{point}: rule left behind"
        );
        assert!(
            std::net::TcpListener::bind(("0.0.0.0", hp)).is_ok(),
            "{point}: port still taken"
        );
        // the retry succeeds, with the address the crashed attempt had taken
        let e = m.connect(&spec).unwrap();
        assert_eq!(e.ip.octets()[3], 2, "{point}: address leaked");
        assert_eq!(links_in(&ns), 2);
        m.disconnect(&cid, &net.spec.id).unwrap();
    }
}

#[test]
fn crash_during_create_network_leaves_no_bridge() {
    require_root!();
    let mut ctx = Ctx::new(22);
    drop(ctx.mgr.take());
    for point in ["network:bridge", "network:created"] {
        let spec = NetworkSpec::bridge(ctx.id("n"), "n");
        let input = Input {
            cfg: ctx.cfg.clone(),
            networks: vec![],
            endpoints: vec![],
            containers: vec![],
            op: Op::CreateNetwork(spec.clone()),
        };
        crash_at(point, &input);
        let bridge = format!("br-{}", &spec.id[..spec.id.len().min(12)]);
        assert!(Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .unwrap()
            .status
            .success());
        let m = NetManager::new(ctx.cfg.clone()).unwrap();
        m.reconcile(&[], &[], &[]).unwrap();
        let gone = !Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .unwrap()
            .status
            .success();
        assert!(gone, "{point}: bridge {bridge} leaked");
        // the name and subnet are free again
        let info = m.create_network(&spec).unwrap();
        assert_eq!(info.subnet.unwrap().to_string(), "10.222.0.0/24");
        m.remove_network(&spec.id).unwrap();
    }
}

#[test]
fn crash_during_disconnect_converges_to_the_database() {
    require_root!();
    let mut ctx = Ctx::new(23);
    let net = ctx
        .mgr()
        .create_network(&NetworkSpec::bridge(ctx.id("u"), "user"))
        .unwrap();
    let cid = ctx.id("c");
    let ns = ctx.mgr().create_netns(&cid).unwrap();
    let hp = free_port();
    let spec = ep(
        &ctx,
        "c",
        &ns,
        &net.spec.id,
        vec![PortBinding::new(hp, 80, Proto::Tcp)],
    );
    let e = ctx.mgr().connect(&spec).unwrap();
    drop(ctx.mgr.take());
    let input = Input {
        cfg: ctx.cfg.clone(),
        networks: vec![net.spec.clone()],
        endpoints: vec![(spec.clone(), e.clone())],
        containers: vec![cid.clone()],
        op: Op::Disconnect(cid.clone(), net.spec.id.clone()),
    };

    // the engine had not yet dropped the endpoint from its DB: it comes back whole
    crash_at("disconnect:rules", &input);
    let m = NetManager::new(ctx.cfg.clone()).unwrap();
    m.reconcile(
        std::slice::from_ref(&net.spec),
        &[(spec.clone(), e.clone())],
        std::slice::from_ref(&cid),
    )
    .unwrap();
    assert_eq!(links_in(&ns), 2);
    assert!(nft_table(&ctx.cfg).contains(&format!("dport {hp}")));
    assert!(std::net::TcpListener::bind(("0.0.0.0", hp)).is_err());
    drop(m);

    // the engine had dropped it: everything of it goes
    crash_at("disconnect:rules", &input);
    let m = NetManager::new(ctx.cfg.clone()).unwrap();
    m.reconcile(
        std::slice::from_ref(&net.spec),
        &[],
        std::slice::from_ref(&cid),
    )
    .unwrap();
    assert_eq!(links_in(&ns), 1);
    assert!(!nft_table(&ctx.cfg).contains("dnat to"));
    assert!(std::net::TcpListener::bind(("0.0.0.0", hp)).is_ok());
    ctx.mgr = Some(m);
}

/// Errors (not crashes) at every step: the operation undoes everything it did.
#[test]
fn injected_failures_roll_back_completely() {
    require_root!();
    let ctx = Ctx::new(24);
    let m = ctx.mgr();
    for point in ["network:bridge", "network:created"] {
        m.inject_failure(Some(point));
        let spec = NetworkSpec::bridge(ctx.id("n"), "n");
        let err = m.create_network(&spec).unwrap_err();
        assert!(err.to_string().contains("injected"), "{point}: {err}");
        let bridge = format!("br-{}", &spec.id[..spec.id.len().min(12)]);
        assert!(
            !Command::new("ip")
                .args(["link", "show", &bridge])
                .output()
                .unwrap()
                .status
                .success(),
            "{point}"
        );
        assert!(m.networks().is_empty(), "{point}");
    }
    m.inject_failure(None);
    // 5 usable addresses: a leak at any of the 5 failing steps would exhaust it
    let mut spec = NetworkSpec::bridge(ctx.id("n"), "n");
    spec.subnet = Some("10.224.0.0/29".parse().unwrap());
    let net = m.create_network(&spec).unwrap();
    let cid = ctx.id("c");
    let ns = m.create_netns(&cid).unwrap();
    let hp = free_port();
    let ports = vec![
        PortBinding::new(hp, 80, Proto::Tcp),
        PortBinding::new(hp, 53, Proto::Udp),
    ];
    let espec = ep(&ctx, "c", &ns, &net.spec.id, ports);
    for point in [
        "connect:ports",
        "connect:veth",
        "connect:master",
        "connect:container",
        "connect:rules",
    ] {
        m.inject_failure(Some(point));
        let err = m.connect(&espec).unwrap_err();
        assert!(err.to_string().contains("injected"), "{point}: {err}");
        assert_eq!(links_in(&ns), 1, "{point}: veth left in the container");
        assert_eq!(
            our_links(&ctx.cfg),
            vec![net.bridge.clone().unwrap()],
            "{point}"
        );
        assert!(
            !nft_table(&ctx.cfg).contains("dnat to"),
            "{point}: rule left behind"
        );
        assert!(
            std::net::TcpListener::bind(("0.0.0.0", hp)).is_ok(),
            "{point}: tcp port still taken"
        );
        assert!(
            std::net::UdpSocket::bind(("0.0.0.0", hp)).is_ok(),
            "{point}: udp port still taken"
        );
        assert!(m.endpoints().is_empty(), "{point}");
        assert!(lookup(&ns, "c").is_empty(), "{point}: dns serving");
    }
    m.inject_failure(None);
    let others: Vec<_> = (0..4)
        .map(|i| {
            let id = format!("o{i}");
            let ons = m.create_netns(&ctx.id(&id)).unwrap();
            m.connect(&ep(&ctx, &id, &ons, &net.spec.id, vec![]))
                .unwrap()
        })
        .collect();
    assert_eq!(others.len(), 4);
    let e = m.connect(&espec).unwrap();
    assert_eq!(e.ports.len(), 2);
    assert_eq!(lookup(&ns, "c"), vec![e.ip]);
}
