//! HARDENING B21: the registry process is SIGKILLed mid-upload; a new process on the
//! same root resumes the upload and the store stays consistent.
//!
//! The server runs in a child process: this test binary re-executed with
//! `BERTH_REGISTRY_CHILD_ROOT` set runs only `child_server`, which serves forever.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_registry::names::Digest;

#[test]
fn child_server() {
    let (Ok(root), Ok(port_file)) = (
        std::env::var("BERTH_REGISTRY_CHILD_ROOT"),
        std::env::var("BERTH_REGISTRY_CHILD_PORT_FILE"),
    ) else {
        return; // Only does something when re-executed by `killed_mid_upload`.
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tmp = format!("{port_file}.tmp");
        std::fs::write(&tmp, port.to_string()).unwrap();
        std::fs::rename(&tmp, &port_file).unwrap();
        let reg = Arc::new(berth_registry::Registry::open(root).unwrap());
        berth_registry::serve_on(listener, reg, None, std::future::pending())
            .await
            .unwrap();
    });
}

/// Kills the child on drop, so a failing assertion leaves no process behind.
struct ChildServer {
    child: Child,
    port: u16,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_child(root: &Path, work: &Path, n: usize) -> ChildServer {
    let port_file = work.join(format!("port{n}"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env("BERTH_REGISTRY_CHILD_ROOT", root)
        .env("BERTH_REGISTRY_CHILD_PORT_FILE", &port_file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = ChildServer { child, port: 0 };
    // Wait for the child to publish its port (bounded; not a timing assumption
    // about the code under test).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            server.port = p.trim().parse().unwrap();
            return server;
        }
        assert!(Instant::now() < deadline, "child server did not start");
        if let Ok(Some(st)) = server.child.try_wait() {
            panic!("child server exited: {st}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn h(&self, k: &str) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 request with `Connection: close`.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn count_files(dir: PathBuf) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn killed_mid_upload() {
    let root = tempfile::Builder::new()
        .prefix(&format!("berth-registry-crash-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let d = Digest::of(&data);

    let mut server = start_child(root.path(), work.path(), 1);
    let r = http(server.port, "POST", "/v2/crash/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.h("Location");
    // A first chunk that completes.
    let r = http(
        server.port,
        "PATCH",
        &loc,
        &[("Content-Range", "0-1999999")],
        &data[..2_000_000],
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.h("Range"), "0-1999999");

    // A second chunk whose body is cut short, then the process is killed.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        s,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\nContent-Range: 2000000-5999999\r\n\r\n"
    )
    .unwrap();
    s.write_all(&data[2_000_000..4_500_000]).unwrap();
    s.flush().unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(s);

    // A new process on the same root: the session is still there.
    let server2 = start_child(root.path(), work.path(), 2);
    let r = http(server2.port, "GET", &loc, &[], b"");
    assert_eq!(r.status, 204);
    let end: usize = r.h("Range").split('-').nth(1).unwrap().parse().unwrap();
    let offset = end + 1;
    assert!((2_000_000..=4_500_000).contains(&offset), "{offset}");
    // Nothing visible yet.
    let r = http(
        server2.port,
        "HEAD",
        &format!("/v2/crash/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);

    let range = format!("{offset}-{}", data.len() - 1);
    let r = http(
        server2.port,
        "PATCH",
        &loc,
        &[("Content-Range", &range)],
        &data[offset..],
    );
    assert_eq!(r.status, 202);
    let r = http(server2.port, "PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = http(
        server2.port,
        "GET",
        &format!("/v2/crash/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.body == data, "content differs after resume");
    assert_eq!(count_files(root.path().join("uploads")), 0);
    assert_eq!(count_files(root.path().join("tmp")), 0);
    drop(server2);
}
