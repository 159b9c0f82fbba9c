//! Networks with real containers through the engine (issue 3).

mod common;
use common::*;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return Some(out);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

const HTTPD: [&str; 6] = ["httpd", "-f", "-p", "80", "-h", "/var/www"];

#[test]
fn user_network_names_aliases_and_isolation() {
    let d = Daemon::start("netdns");
    d.berth(&["network", "create", "front"]).ok();
    d.berth(&["network", "create", "back"]).ok();
    let mut args = vec!["run", "-d", "--name", "web", "--network", "front", "--network-alias", "www", "busybox"];
    args.extend(HTTPD);
    d.berth(&args).ok();
    let fetch = |net: &str, host: &str| {
        d.berth(&["run", "--rm", "--network", net, "busybox", "sh", "-c", &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 | tail -1")])
    };
    assert_eq!(fetch("front", "web").ok().stdout, "<h1>hello from berth</h1>\n");
    assert_eq!(fetch("front", "www").ok().stdout, "<h1>hello from berth</h1>\n");
    // another network neither resolves nor reaches it
    let ip = d.berth(&["inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", "web"]).ok().stdout;
    let ip = ip.trim();
    assert!(!ip.is_empty());
    assert_ne!(fetch("back", "web").stdout, "<h1>hello from berth</h1>\n");
    assert_eq!(fetch("back", ip).stdout, "", "networks are isolated");
    // the default bridge has no name resolution
    let o = d.berth(&["run", "--rm", "busybox", "nslookup", "web", "127.0.0.11"]);
    assert!(!o.stdout.contains(ip), "{}", o.stdout);
    // connect / disconnect a running container
    d.berth(&["run", "-d", "--name", "client", "--network", "back", "busybox", "sleep", "1000"]).ok();
    let get = |c: &str| d.berth(&["exec", c, "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80 | tail -1"]);
    assert_ne!(get("client").stdout, "<h1>hello from berth</h1>\n");
    d.berth(&["network", "connect", "front", "client"]).ok();
    assert_eq!(get("client").ok().stdout, "<h1>hello from berth</h1>\n");
    d.berth(&["network", "disconnect", "front", "client"]).ok();
    assert_ne!(get("client").stdout, "<h1>hello from berth</h1>\n");
    let o = d.berth(&["network", "rm", "front"]);
    assert_ne!(o.code, 0, "a network in use can't be removed");
    d.berth(&["rm", "-f", "web", "client"]).ok();
    d.berth(&["network", "rm", "front", "back"]).ok();
}

#[test]
fn published_ports_conflict_and_daemon_restart() {
    let mut d = Daemon::start("netports");
    let port = free_port();
    let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), "pub".into(), "-p".into(), format!("127.0.0.1:{port}:80"), "busybox".into()];
    args.extend(HTTPD.iter().map(|s| s.to_string()));
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    d.berth(&a).ok();
    assert!(http_get(port).unwrap_or_default().contains("hello from berth"));
    let p = d.berth(&["port", "pub", "80"]).ok().stdout;
    assert_eq!(p.trim(), format!("127.0.0.1:{port}"));
    // the same host port again: a clean error, nothing left behind
    let o = d.berth(&["run", "-d", "--name", "clash", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "sleep", "100"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    let st = d.berth(&["inspect", "-f", "{{.State.Running}}", "clash"]).ok().stdout;
    assert_eq!(st.trim(), "false");
    d.berth(&["rm", "clash"]).ok();
    // (UDP forwarding is covered at namespace level in berth-network's tests.)
    // daemon SIGKILL: the port keeps working, and after restart too
    d.kill9();
    assert!(http_get(port).unwrap_or_default().contains("hello from berth"), "port works while the daemon is down");
    d.spawn();
    assert!(http_get(port).unwrap_or_default().contains("hello from berth"), "port works after restart");
    d.berth(&["rm", "-f", "pub"]).ok();
    assert!(http_get(port).is_none(), "port closed after rm");
}

#[test]
fn internal_network_has_no_egress() {
    let d = Daemon::start("netint");
    d.berth(&["network", "create", "--internal", "sealed"]).ok();
    d.berth(&["network", "create", "open"]).ok();
    // A server on the default bridge stands in for "the outside".
    let mut args = vec!["run", "-d", "--name", "outside", "busybox"];
    args.extend(HTTPD);
    d.berth(&args).ok();
    let ip = d.berth(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "outside"]).ok().stdout;
    let cmd = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {} 80 | tail -1", ip.trim());
    let o = d.berth(&["run", "--rm", "--network", "sealed", "busybox", "sh", "-c", &cmd]);
    assert_eq!(o.stdout, "", "an internal network reaches nothing outside it");
    let o = d.berth(&["run", "--rm", "--network", "sealed", "busybox", "sh", "-c", "ip route | grep -c default || true"]);
    assert_eq!(o.stdout.trim(), "0", "an internal network has no default route");
    d.berth(&["rm", "-f", "outside"]).ok();
}

#[test]
fn docker_cli_networks() {
    let d = Daemon::start("netdocker");
    let docker = "/usr/local/bin/docker";
    if !std::path::Path::new(docker).exists() {
        eprintln!("skipping: {docker} not installed");
        return;
    }
    let run = |args: &[&str]| {
        let o = std::process::Command::new("timeout")
            .args(["-s", "KILL", "60", docker])
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", d.sock.display()))
            .output()
            .unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (c, _, e) = run(&["network", "create", "--subnet", "10.123.45.0/24", "dnet"]);
    assert_eq!(c, 0, "{e}");
    let (c, out, e) = run(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "dnet"]);
    assert_eq!(c, 0, "{e}");
    assert_eq!(out.trim(), "10.123.45.0/24");
    let port = free_port();
    let (c, _, e) = run(&["run", "-d", "--name", "dweb", "--network", "dnet", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    assert_eq!(c, 0, "{e}");
    assert!(http_get(port).unwrap_or_default().contains("hello from berth"));
    let (_, out, _) = run(&["inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "dweb"]);
    assert!(out.trim().starts_with("10.123.45."), "{out}");
    let (c, out, _) = run(&["run", "--rm", "--network", "dnet", "busybox", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 dweb 80 | tail -1"]);
    assert_eq!((c, out.as_str()), (0, "<h1>hello from berth</h1>\n"));
    run(&["rm", "-f", "dweb"]);
    let (c, _, e) = run(&["network", "rm", "dnet"]);
    assert_eq!(c, 0, "{e}");
}

#[test]
fn dns_keeps_working_after_daemon_sigkill() {
    let mut d = Daemon::start("netdnsrestart");
    d.berth(&["network", "create", "appnet"]).ok();
    d.berth(&["run", "-d", "--name", "db", "--network", "appnet", "--network-alias", "database", "busybox", "sleep", "1000"]).ok();
    d.berth(&["run", "-d", "--name", "app", "--network", "appnet", "busybox", "sleep", "1000"]).ok();
    let ip = d.berth(&["inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}", "db"]).ok().stdout;
    let resolve = |d: &Daemon| d.berth(&["exec", "app", "nslookup", "database", "127.0.0.11"]).stdout;
    assert!(resolve(&d).contains(ip.trim()), "resolves before the crash");
    d.kill9();
    d.spawn();
    let mut out = String::new();
    for _ in 0..50 {
        out = resolve(&d);
        if out.contains(ip.trim()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(out.contains(ip.trim()), "resolves after the daemon came back: {out}");
    d.berth(&["rm", "-f", "db", "app"]).ok();
    d.berth(&["network", "rm", "appnet"]).ok();
}

/// A static UDP echo server (busybox has no UDP tool), built with Go when it is installed.
fn udp_echo_binary(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    if std::process::Command::new("go").arg("version").output().is_err() {
        eprintln!("skipping: go is not installed (needed to build a static UDP echo server)");
        return None;
    }
    let src = dir.join("echo.go");
    std::fs::write(
        &src,
        "package main\nimport \"net\"\nfunc main() {\n c, err := net.ListenPacket(\"udp\", \":9999\")\n if err != nil { panic(err) }\n b := make([]byte, 2048)\n for {\n  n, a, err := c.ReadFrom(b)\n  if err != nil { continue }\n  c.WriteTo(append([]byte(\"echo:\"), b[:n]...), a)\n }\n}\n",
    )
    .ok()?;
    let out = dir.join("bin");
    std::fs::create_dir_all(&out).ok()?;
    let st = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(out.join("udpecho"))
        .arg(&src)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.join("gocache"))
        .env("HOME", dir)
        .status()
        .ok()?;
    st.success().then_some(out)
}

#[test]
fn published_udp_port() {
    let d = Daemon::start("netudp");
    let Some(bin) = udp_echo_binary(&d.dir) else { return };
    let port = free_port();
    d.berth(&[
        "run", "-d", "--name", "udp", "-v", &format!("{}:/opt/udp:ro", bin.display()),
        "-p", &format!("127.0.0.1:{port}:9999/udp"), "busybox", "/opt/udp/udpecho",
    ])
    .ok();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = String::new();
    for _ in 0..50 {
        let _ = sock.send_to(b"ping", ("127.0.0.1", port));
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got = String::from_utf8_lossy(&buf[..n]).to_string();
            break;
        }
    }
    assert_eq!(got, "echo:ping");
    d.berth(&["rm", "-f", "udp"]).ok();
}
