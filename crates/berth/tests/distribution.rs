//! Registry client against real registries on loopback (issue 6): berth's own registry
//! server (in-process) and Debian's `docker-registry` (CNCF distribution), with htpasswd auth
//! and TLS; multi-platform indexes; and the faults of HARDENING B1/B7/B8/B9 injected by a small
//! HTTP proxy in front of the registry (throttle, 503/429, cut, flipped byte, stall).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Short timeouts and backoff for the daemons these tests start (they inherit the env).
fn init() {
    static I: Once = Once::new();
    I.call_once(|| {
        std::env::set_var("BERTH_REGISTRY_READ_TIMEOUT", "3");
        std::env::set_var("BERTH_REGISTRY_BACKOFF_MS", "50");
        std::env::set_var("BERTH_REGISTRY_MAX_ATTEMPTS", "4");
    });
}

fn tool(name: &str) -> bool {
    let ok = Command::new("sh").arg("-c").arg(format!("command -v {name}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: {name} is not installed");
    }
    ok
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listening on {port}");
}

/// A directory removed on drop, even when the test fails.
struct TmpDir(PathBuf);
impl std::ops::Deref for TmpDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(name: &str) -> TmpDir {
    let p = PathBuf::from(format!("/tmp/berth-dist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    TmpDir(p)
}

/// Debian's `docker-registry` with a generated config.
struct DistRegistry {
    child: Child,
    port: u16,
    _dir: TmpDir,
}

impl DistRegistry {
    fn start(name: &str, htpasswd: Option<&Path>, tls: Option<(&Path, &Path)>) -> Option<Self> {
        if !Path::new("/usr/bin/docker-registry").exists() {
            eprintln!("SKIP: /usr/bin/docker-registry is not installed");
            return None;
        }
        let dir = tmpdir(&format!("dreg-{name}"));
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("root").display()
        );
        if let Some((cert, key)) = tls {
            cfg.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some(h) = htpasswd {
            cfg.push_str(&format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", h.display()));
        }
        std::fs::write(dir.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_port(port);
        Some(Self { child, port, _dir: dir })
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for DistRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------------
// fault-injecting HTTP proxy

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Blob bodies at this many bytes per second.
    Throttle(u64),
    /// The first N blob GETs answer 503 with Retry-After: 1.
    FailFirst(u32),
    /// Every blob GET answers 429.
    FailAlways,
    /// The first N upload requests (`/blobs/uploads/`) answer 503.
    FailUploads(u32),
    /// The first PATCH request body is cut after this many bytes.
    CutUploadOnce(u64),
    /// The first blob response is cut after this many body bytes.
    CutOnce(u64),
    /// Every blob response has the body byte at this offset flipped.
    Flip(u64),
    /// Blob responses stop after 1000 body bytes and the connection stays open.
    Stall,
    /// A Bearer-token registry: `/token` (Basic `bob:pw`) issues a token every other request
    /// must carry; the proxy strips it before forwarding.
    Token,
    /// Like `Token`, but each token is refused after 3 uses (the client must refresh on 401).
    ShortToken,
}

struct Proxy {
    port: u16,
    fault: Arc<Mutex<Fault>>,
    /// Blob body bytes sent to the client.
    body_bytes: Arc<AtomicU64>,
    blob_gets: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    /// Token requests served (Fault::Token).
    tokens: Arc<AtomicU32>,
    /// Uses of the current token (Fault::ShortToken).
    token_uses: Arc<AtomicU32>,
}


impl Proxy {
    fn start(upstream: u16, fault: Fault) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = Proxy {
            port,
            fault: Arc::new(Mutex::new(fault)),
            body_bytes: Arc::new(AtomicU64::new(0)),
            blob_gets: Arc::new(AtomicU32::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            tokens: Arc::new(AtomicU32::new(0)),
            token_uses: Arc::new(AtomicU32::new(0)),
        };
        let (fault, bytes, gets, stop) = (p.fault.clone(), p.body_bytes.clone(), p.blob_gets.clone(), p.stop.clone());
        let tokens = (p.tokens.clone(), p.token_uses.clone());
        let cut_done = Arc::new(AtomicBool::new(false));
        std::thread::spawn(move || {
            for c in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = c else { continue };
                let (fault, bytes, gets, stop, cut_done, tokens) = (fault.clone(), bytes.clone(), gets.clone(), stop.clone(), cut_done.clone(), tokens.clone());
                std::thread::spawn(move || {
                    let _ = proxy_conn(c, upstream, port, fault, bytes, gets, stop, cut_done, tokens);
                });
            }
        });
        p
    }
    fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_conn(
    mut c: TcpStream,
    upstream: u16,
    own_port: u16,
    fault: Arc<Mutex<Fault>>,
    bytes: Arc<AtomicU64>,
    gets: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    cut_done: Arc<AtomicBool>,
    (tokens, token_uses): (Arc<AtomicU32>, Arc<AtomicU32>),
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if head.is_empty() && buf[0] == 0x16 {
            return Ok(()); // a TLS ClientHello: this proxy speaks plain HTTP only
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > 65536 {
            break;
        }
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(head.len() - 4) + 4;
    let text = String::from_utf8_lossy(&head[..end]).to_string();
    let rest = head[end..].to_vec();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("").to_string();
    let is_blob = first.starts_with("GET ") && first.contains("/blobs/sha256:");
    let f = *fault.lock().unwrap();
    let mut out = format!("{first}\r\n");
    let mut authz = String::new();
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("authorization:") {
            authz = l["authorization:".len()..].trim().to_string();
            if matches!(f, Fault::Token | Fault::ShortToken) {
                continue;
            }
        }
        if l.is_empty() || lower.starts_with("connection:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if matches!(f, Fault::Token | Fault::ShortToken) {
        use base64::Engine as _;
        let path = first.split_whitespace().nth(1).unwrap_or("");
        let reply = |c: &mut TcpStream, status: &str, extra: &str, body: &str| {
            c.write_all(format!("HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
        };
        if path.starts_with("/token") {
            let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("bob:pw"));
            let mut ok = authz == good;
            if first.starts_with("POST ") {
                // OAuth2 refresh-token grant: read the form body
                let len: usize = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                let mut body = rest.clone();
                while body.len() < len {
                    let n = c.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&buf[..n]);
                }
                let form = String::from_utf8_lossy(&body);
                ok = form.contains("grant_type=refresh_token") && form.contains("refresh_token=rt-good");
            }
            if !ok {
                return reply(&mut c, "401 Unauthorized", "", r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#);
            }
            tokens.fetch_add(1, Ordering::SeqCst);
            token_uses.store(0, Ordering::SeqCst);
            return reply(&mut c, "200 OK", "", r#"{"token":"tok-granted","expires_in":300}"#);
        }
        let worn_out = f == Fault::ShortToken && token_uses.fetch_add(1, Ordering::SeqCst) >= 3;
        if authz != "Bearer tok-granted" || worn_out {
            let ch = format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"test-registry\"\r\n");
            return reply(&mut c, "401 Unauthorized", &ch, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#);
        }
    }
    if let Fault::FailUploads(k) = f {
        if first.contains("/blobs/uploads/") && gets.fetch_add(1, Ordering::SeqCst) < k {
            c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
    }
    if is_blob {
        let n = gets.fetch_add(1, Ordering::SeqCst);
        let fail = match f {
            Fault::FailFirst(k) => (n < k).then_some("503 Service Unavailable"),
            Fault::FailAlways => Some("429 Too Many Requests"),
            _ => None,
        };
        if let Some(status) = fail {
            c.write_all(format!("HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())?;
            return Ok(());
        }
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(out.as_bytes())?;
    if let Fault::CutUploadOnce(n) = f {
        if first.starts_with("PATCH ") && !cut_done.swap(true, Ordering::SeqCst) {
            // relay n body bytes, then drop both connections
            let mut left = n as usize;
            let k = rest.len().min(left);
            up.write_all(&rest[..k])?;
            left -= k;
            while left > 0 {
                let m = c.read(&mut buf[..left.min(16384)])?;
                if m == 0 {
                    break;
                }
                up.write_all(&buf[..m])?;
                left -= m;
            }
            std::thread::sleep(Duration::from_millis(200));
            let _ = up.shutdown(std::net::Shutdown::Both);
            let _ = c.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
    }
    up.write_all(&rest)?;
    // request bodies (uploads) are relayed in the background
    let mut c2 = c.try_clone()?;
    let mut up2 = up.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut up2);
    });
    let mut header_done = false;
    let mut acc = Vec::new();
    let mut body_sent = 0u64;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = buf[..n].to_vec();
        let mut body_start = 0;
        if !header_done {
            acc.extend_from_slice(&chunk);
            match acc.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => {
                    header_done = true;
                    let hdr_len_in_chunk = (i + 4) - (acc.len() - chunk.len());
                    body_start = hdr_len_in_chunk;
                }
                None => {
                    c.write_all(&chunk)?;
                    continue;
                }
            }
        }
        if !is_blob {
            c.write_all(&chunk)?;
            continue;
        }
        let body_len = (chunk.len() - body_start) as u64;
        match f {
            Fault::Flip(off) if off >= body_sent && off < body_sent + body_len => {
                let i = body_start + (off - body_sent) as usize;
                chunk[i] ^= 0xff;
            }
            Fault::CutOnce(after) if body_sent + body_len > after && !cut_done.swap(true, Ordering::SeqCst) => {
                let keep = body_start + (after - body_sent.min(after)) as usize;
                c.write_all(&chunk[..keep])?;
                bytes.fetch_add((keep - body_start) as u64, Ordering::SeqCst);
                let _ = c.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            Fault::Stall if body_sent + body_len > 1000 => {
                let keep = body_start + (1000 - body_sent.min(1000)) as usize;
                c.write_all(&chunk[..keep])?;
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return Ok(());
            }
            _ => {}
        }
        c.write_all(&chunk)?;
        body_sent += body_len;
        bytes.fetch_add(body_len, Ordering::SeqCst);
        // the fault may change while a response is in flight (throttle → none)
        if let Fault::Throttle(bps) = *fault.lock().unwrap() {
            std::thread::sleep(Duration::from_secs_f64(body_len as f64 / bps as f64));
        }
    }
}

// ------------------------------------------------------------------------------------------
// helpers

fn image_id(d: &Daemon, r: &str) -> String {
    d.berth(&["inspect", "--format", "{{.Id}}", r]).ok().stdout.trim().to_string()
}

/// `push` output's `TAG: digest: sha256:… size: N`.
fn pushed_digest(out: &str) -> (String, u64) {
    let l = out.lines().find(|l| l.contains(": digest: sha256:")).unwrap_or_else(|| panic!("no digest line in {out}"));
    let mut it = l.split_whitespace();
    let _tag = it.next();
    let _ = it.next();
    let digest = it.next().unwrap().to_string();
    let _ = it.next();
    let size = it.next().unwrap().parse().unwrap();
    (digest, size)
}

/// A tar of one directory with `files` (name, bytes), imported as `reference`.
fn import_files(d: &Daemon, reference: &str, files: &[(&str, Vec<u8>)]) {
    let dir = d.dir.join(format!("ctx-{}", reference.replace(['/', ':'], "_")));
    std::fs::create_dir_all(&dir).unwrap();
    for (n, b) in files {
        std::fs::write(dir.join(n), b).unwrap();
    }
    let tar = dir.with_extension("tar");
    assert!(Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    d.berth(&["import", tar.to_str().unwrap(), reference]).ok();
}

/// Incompressible pseudo-random bytes (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn blob_files(d: &Daemon) -> Vec<String> {
    std::fs::read_dir(d.data().join("content/blobs/sha256")).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default()
}

fn ingest_files(d: &Daemon) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(d.data().join("distribution/ingest"))
        .map(|rd| rd.flatten().map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0))).collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// tests

#[test]
fn push_pull_round_trip_berth_registry() {
    init();
    let reg = BerthRegistry::start("rt");
    let d = Daemon::start("dist-rt");
    let r = format!("{}/test/busybox:v1", reg.host());
    let id = image_id(&d, "busybox");
    d.berth(&["tag", "busybox", &r]).ok();
    let o = d.berth(&["push", &r]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    let (digest, _) = pushed_digest(&o.stdout);
    // a second push finds everything there
    let o = d.berth(&["push", &r]).ok();
    assert!(o.stdout.contains("Layer already exists"), "{}", o.stdout);
    assert_eq!(pushed_digest(&o.stdout).0, digest);

    d.berth(&["rmi", "busybox", &r]).ok();
    assert!(blob_files(&d).is_empty(), "rmi left blobs: {:?}", blob_files(&d));
    let o = d.berth(&["pull", &r]).ok();
    assert!(o.stdout.contains("Pull complete"), "{}", o.stdout);
    assert!(o.stdout.contains(&format!("Digest: {digest}")), "{}", o.stdout);
    assert!(o.stdout.contains(&format!("Status: Downloaded newer image for {r}")), "{}", o.stdout);
    assert_eq!(image_id(&d, &r), id, "same config, same image id");
    let rd = d.berth(&["inspect", "--format", "{{json .RepoDigests}}", &r]).ok().stdout;
    assert!(rd.contains(&format!("{}/test/busybox@{digest}", reg.host())), "{rd}");
    let o = d.berth(&["pull", &r]).ok();
    assert!(o.stdout.contains("Image is up to date"), "{}", o.stdout);

    assert!(snapshot_file(&d, "bin/busybox").is_some(), "layer unpacked");

    // by digest, after removing everything
    d.berth(&["rmi", &r]).ok();
    let by_digest = format!("{}/test/busybox@{digest}", reg.host());
    d.berth(&["pull", &by_digest]).ok();
    assert_eq!(image_id(&d, &by_digest), id);
    // a digest that does not match the bytes is refused
    let wrong = format!("{}/test/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let o = d.berth(&["pull", &wrong]);
    assert_ne!(o.code, 0);
    // explicit platform that the single-platform image does not have
    let o = d.berth(&["pull", "--platform", "linux/s390x", &r]);
    assert!(o.stderr.contains("does not match the specified platform"), "{}", o.stderr);
    // all tags
    let r2 = format!("{}/test/busybox:v2", reg.host());
    d.berth(&["tag", &by_digest, &r2]).ok();
    d.berth(&["push", &r2]).ok();
    d.berth(&["rmi", "-f", &r2]).ok();
    assert!(d.berth(&["inspect", &by_digest]).code != 0);
    d.berth(&["pull", "-a", &format!("{}/test/busybox", reg.host())]).ok();
    assert_eq!(image_id(&d, &r), id);
    assert_eq!(image_id(&d, &r2), id);
    // unknown tag: Docker's message
    let o = d.berth(&["pull", &format!("{}/test/busybox:nosuch", reg.host())]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("not found"), "{}", o.stderr);
}

#[test]
fn pushed_compressed_layers_are_reused_and_mounted() {
    init();
    let reg = BerthRegistry::start("mount");
    let d = Daemon::start("dist-mount");
    let a = format!("{}/a/busybox:1", reg.host());
    let b = format!("{}/b/busybox:1", reg.host());
    d.berth(&["tag", "busybox", &a]).ok();
    let (da, _) = pushed_digest(&d.berth(&["push", &a]).ok().stdout);
    d.berth(&["tag", "busybox", &b]).ok();
    let o = d.berth(&["push", &b]).ok();
    assert!(o.stdout.contains("Mounted from a/busybox"), "{}", o.stdout);
    assert_eq!(pushed_digest(&o.stdout).0, da, "same manifest in both repositories");
    // pulled (compressed) layers are pushed as they are: same manifest digest again
    d.berth(&["rmi", "-f", "busybox", &a, &b]).ok();
    d.berth(&["pull", &a]).ok();
    let c = format!("{}/c/busybox:1", reg.host());
    d.berth(&["tag", &a, &c]).ok();
    let o = d.berth(&["push", &c]).ok();
    assert_eq!(pushed_digest(&o.stdout).0, da);
}

fn curl(args: &[&str]) -> Vec<u8> {
    let o = Command::new("curl").arg("-sf").args(args).output().unwrap();
    assert!(o.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Upload a blob with the registry API (POST + monolithic PUT); returns its digest.
fn curl_upload(host: &str, repo: &str, bytes: &[u8], tmp: &Path) -> String {
    let digest = format!("sha256:{}", hex_sha256(bytes));
    let hdrs = String::from_utf8(curl(&["-D", "-", "-o", "/dev/null", "-X", "POST", &format!("http://{host}/v2/{repo}/blobs/uploads/")])).unwrap();
    let loc = hdrs.lines().find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: "))).unwrap().trim().to_string();
    let loc = if loc.starts_with("http") { loc } else { format!("http://{host}{loc}") };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let f = tmp.join("upload.bin");
    std::fs::write(&f, bytes).unwrap();
    curl(&["-X", "PUT", "-H", "Content-Type: application/octet-stream", "--data-binary", &format!("@{}", f.display()), &format!("{loc}{sep}digest={digest}")]);
    digest
}

/// Push busybox as `repo:base`, then assemble `repo:tag` by hand: busybox plus one layer holding
/// `/name` = `content`, stored as `compress` (None, "gzip", "zstd") and declared as `layer_mt`.
/// With `oci`, the manifest is an OCI one.
#[allow(clippy::too_many_arguments)]
fn two_layer_image(d: &Daemon, host: &str, repo: &str, tag: &str, name: &str, content: &[u8], compress: Option<&str>, layer_mt: &str, oci: bool) {
    let base = format!("{host}/{repo}:base");
    d.berth(&["tag", "busybox", &base]).ok();
    d.berth(&["push", &base]).ok();
    let docker_mt = "application/vnd.docker.distribution.manifest.v2+json";
    let mut man: serde_json::Value = serde_json::from_slice(&curl(&["-H", &format!("Accept: {docker_mt}"), &format!("http://{host}/v2/{repo}/manifests/base")])).unwrap();
    let cfg_digest = man["config"]["digest"].as_str().unwrap().to_string();
    let mut cfg: serde_json::Value = serde_json::from_slice(&curl(&[&format!("http://{host}/v2/{repo}/blobs/{cfg_digest}")])).unwrap();
    let ctx = d.dir.join(format!("layer-{tag}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join(name), content).unwrap();
    let tar = d.dir.join(format!("layer-{tag}.tar"));
    assert!(Command::new("tar").arg("-C").arg(&ctx).arg("-cf").arg(&tar).arg(name).status().unwrap().success());
    let plain = std::fs::read(&tar).unwrap();
    let diff_id = format!("sha256:{}", hex_sha256(&plain));
    let blob = match compress {
        None => plain,
        Some(tool) => {
            let o = Command::new(tool).args(["-c", "-q"]).arg(&tar).output().unwrap();
            assert!(o.status.success(), "{tool}");
            o.stdout
        }
    };
    let ld = curl_upload(host, repo, &blob, &d.dir);
    cfg["rootfs"]["diff_ids"].as_array_mut().unwrap().push(diff_id.into());
    let cfg_bytes = serde_json::to_vec(&cfg).unwrap();
    let cd = curl_upload(host, repo, &cfg_bytes, &d.dir);
    man["config"]["digest"] = cd.into();
    man["config"]["size"] = cfg_bytes.len().into();
    man["layers"].as_array_mut().unwrap().push(serde_json::json!({"mediaType": layer_mt, "digest": ld, "size": blob.len()}));
    let mut mt = docker_mt.to_string();
    if oci {
        mt = "application/vnd.oci.image.manifest.v1+json".into();
        man["mediaType"] = mt.clone().into();
        man["config"]["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        man["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    }
    let mf = d.dir.join(format!("manifest-{tag}.json"));
    std::fs::write(&mf, serde_json::to_vec(&man).unwrap()).unwrap();
    curl(&["-X", "PUT", "-H", &format!("Content-Type: {mt}"), "--data-binary", &format!("@{}", mf.display()), &format!("http://{host}/v2/{repo}/manifests/{tag}")]);
}

#[test]
fn pull_after_rmi_reuses_shared_layers() {
    init();
    if !tool("curl") {
        return;
    }
    let reg = BerthRegistry::start("shared");
    let d = Daemon::start("dist-shared");
    let host = reg.host();
    two_layer_image(&d, &host, "shared/two", "1", "second", b"layer2\n", None, "application/vnd.docker.image.rootfs.diff.tar", false);
    let two = format!("{host}/shared/two:1");
    let o = d.berth(&["pull", &two]).ok();
    assert_eq!(o.stdout.matches("Already exists").count(), 1, "{}", o.stdout);
    assert_eq!(o.stdout.matches("Pull complete").count(), 1, "{}", o.stdout);
    d.berth(&["rmi", &two]).ok();
    // again after rmi: the base layer is still shared with busybox
    let o = d.berth(&["pull", &two]).ok();
    assert_eq!(o.stdout.matches("Already exists").count(), 1, "{}", o.stdout);
    assert_eq!(snapshot_file(&d, "second").as_deref(), Some(&b"layer2\n"[..]));
}

#[test]
fn zstd_layers_and_sniffed_compression() {
    init();
    if !tool("curl") || !tool("zstd") {
        return;
    }
    let reg = BerthRegistry::start("zstd");
    let d = Daemon::start("dist-zstd");
    let host = reg.host();
    two_layer_image(&d, &host, "z/img", "zstd", "zfile", b"zstd layer\n", Some("zstd"), "application/vnd.oci.image.layer.v1.tar+zstd", true);
    d.berth(&["pull", &format!("{host}/z/img:zstd")]).ok();
    assert_eq!(snapshot_file(&d, "zfile").as_deref(), Some(&b"zstd layer\n"[..]));
    // declared gzip, actually zstd: sniffed and accepted (the digests still hold)
    two_layer_image(&d, &host, "z/img", "liar", "lfile", b"sniffed\n", Some("zstd"), "application/vnd.oci.image.layer.v1.tar+gzip", true);
    d.berth(&["pull", &format!("{host}/z/img:liar")]).ok();
    assert_eq!(snapshot_file(&d, "lfile").as_deref(), Some(&b"sniffed\n"[..]));
    // an OCI gzip layer
    two_layer_image(&d, &host, "z/img", "gz", "gfile", b"gzip\n", Some("gzip"), "application/vnd.oci.image.layer.v1.tar+gzip", true);
    d.berth(&["pull", &format!("{host}/z/img:gz")]).ok();
    assert_eq!(snapshot_file(&d, "gfile").as_deref(), Some(&b"gzip\n"[..]));
    // and pushing the zstd image elsewhere keeps an OCI manifest with the zstd blob
    let z = format!("{host}/z/img:zstd");
    let copy = format!("{host}/z/copy:1");
    d.berth(&["tag", &z, &copy]).ok();
    d.berth(&["push", &copy]).ok();
    let m = curl(&["-H", "Accept: application/vnd.oci.image.manifest.v1+json", &format!("http://{host}/v2/z/copy/manifests/1")]);
    assert!(String::from_utf8_lossy(&m).contains("tar+zstd"), "{}", String::from_utf8_lossy(&m));
}

/// Content of `name` at the root of some layer snapshot.
fn snapshot_file(d: &Daemon, name: &str) -> Option<Vec<u8>> {
    let rd = std::fs::read_dir(d.data().join("snapshots")).ok()?;
    rd.flatten().find_map(|e| std::fs::read(e.path().join("fs").join(name)).ok())
}

#[test]
fn multi_platform_index() {
    init();
    if !tool("curl") {
        return;
    }
    let reg = BerthRegistry::start("index");
    let d = Daemon::start("dist-index");
    let host_arch = if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" };
    let other_arch = if host_arch == "amd64" { "arm64" } else { "amd64" };
    let native = format!("{}/multi/img:native", reg.host());
    let other = format!("{}/multi/img:other", reg.host());
    d.berth(&["tag", "busybox", &native]).ok();
    import_files(&d, &other, &[("marker", b"other platform".to_vec())]);
    let (dn, sn) = pushed_digest(&d.berth(&["push", &native]).ok().stdout);
    let (dother, so) = pushed_digest(&d.berth(&["push", &other]).ok().stdout);
    let id_native = image_id(&d, &native);
    let id_other = image_id(&d, &other);
    let mt = "application/vnd.docker.distribution.manifest.v2+json";
    let variant = |a: &str| if a == "arm64" { ",\"variant\":\"v8\"" } else { "" };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
            {{"mediaType":"{mt}","digest":"{dother}","size":{so},"platform":{{"architecture":"{other_arch}","os":"linux"{}}}}},
            {{"mediaType":"{mt}","digest":"{dn}","size":{sn},"platform":{{"architecture":"{host_arch}","os":"linux"{}}}}},
            {{"mediaType":"{mt}","digest":"{dother}","size":{so},"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
        variant(other_arch),
        variant(host_arch)
    );
    let f = d.dir.join("index.json");
    std::fs::write(&f, &index).unwrap();
    let st = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/vnd.docker.distribution.manifest.list.v2+json", "--data-binary"])
        .arg(format!("@{}", f.display()))
        .arg(format!("http://{}/v2/multi/img/manifests/multi", reg.host()))
        .status()
        .unwrap();
    assert!(st.success(), "PUT index");
    d.berth(&["rmi", "-f", &native, &other, "busybox"]).ok();
    let multi = format!("{}/multi/img:multi", reg.host());
    d.berth(&["pull", &multi]).ok();
    assert_eq!(image_id(&d, &multi), id_native, "host platform chosen");
    let rd = d.berth(&["inspect", "--format", "{{json .RepoDigests}}", &multi]).ok().stdout;
    let index_digest = format!("sha256:{}", hex_sha256(index.as_bytes()));
    assert!(rd.contains(&index_digest), "repo digest is the index digest: {rd}");
    d.berth(&["pull", "--platform", &format!("linux/{other_arch}"), &multi]).ok();
    assert_eq!(image_id(&d, &multi), id_other, "--platform chosen");
    let o = d.berth(&["pull", "--platform", "linux/s390x", &multi]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("no matching manifest"), "{}", o.stderr);
}

fn hex_sha256(b: &[u8]) -> String {
    let mut c = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(b).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn docker_registry_with_htpasswd_login() {
    init();
    if !tool("htpasswd") {
        return;
    }
    let dir = tmpdir("htpasswd");
    let out = Command::new("htpasswd").args(["-nbB", "alice", "s3cret"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
    let Some(reg) = DistRegistry::start("auth", Some(&dir.join("htpasswd")), None) else { return };
    let d = Daemon::start("dist-auth");
    let cfg = dir.join("docker-config");
    let run = |args: &[&str], stdin: &[u8]| -> Out {
        let mut c = d.cmd(args);
        c.env("DOCKER_CONFIG", &cfg).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        ch.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = ch.wait_with_output().unwrap();
        Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
    };
    let r = format!("{}/private/busybox:1", reg.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = run(&["push", &r], b"");
    assert_ne!(o.code, 0, "push without login must fail");
    assert!(o.stderr.contains("unauthorized") || o.stderr.contains("authentication required"), "{}", o.stderr);
    let o = run(&["login", "-u", "alice", "--password-stdin", &reg.host()], b"wrong\n");
    assert_ne!(o.code, 0, "wrong password accepted: {}", o.stdout);
    let o = run(&["login", "-u", "alice", "--password-stdin", &reg.host()], b"s3cret\n");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert!(o.stdout.contains("Login Succeeded"));
    let conf = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    assert!(conf.contains(&reg.host()) && conf.contains("\"auth\""), "{conf}");
    let o = run(&["push", &r], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    d.berth(&["rmi", &r]).ok();
    let o = run(&["pull", &r], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = run(&["logout", &reg.host()], b"");
    assert!(o.stdout.contains("Removing login credentials"), "{}", o.stdout);
    d.berth(&["rmi", &r]).ok();
    let o = run(&["pull", &r], b"");
    assert_ne!(o.code, 0, "pull after logout must fail");
}

/// Removes a `certs.d` entry even when the test fails.
struct CertsD(PathBuf);
impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn docker_registry_with_tls_trusted_through_certs_d() {
    init();
    if !tool("openssl") {
        return;
    }
    let dir = tmpdir("tls");
    let (ca, cert, key) = (dir.join("ca.crt"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl").current_dir(&*dir).args(args).stderr(Stdio::null()).stdout(Stdio::null()).status().unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=berth-test-ca", "-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "srv.csr"]);
    openssl(&["x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", "cert.pem"]);
    let Some(reg) = DistRegistry::start("tls", None, Some((&cert, &key))) else { return };
    let d = Daemon::start("dist-tls");
    let r = format!("{}/tls/busybox:1", reg.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = d.berth(&["push", &r]);
    assert_ne!(o.code, 0, "untrusted certificate accepted: {}", o.stdout);
    let certs = CertsD(PathBuf::from("/etc/berth/certs.d").join(reg.host()));
    std::fs::create_dir_all(&certs.0).unwrap();
    std::fs::copy(&ca, certs.0.join("ca.crt")).unwrap();
    d.berth(&["push", &r]).ok();
    d.berth(&["rmi", &r]).ok();
    d.berth(&["pull", &r]).ok();
    drop(certs);
}

#[test]
fn docker_registry_round_trip_by_tag_and_digest() {
    init();
    let Some(reg) = DistRegistry::start("plain", None, None) else { return };
    let d = Daemon::start("dist-plain");
    let r = format!("{}/plain/busybox:v2", reg.host());
    let id = image_id(&d, "busybox");
    d.berth(&["tag", "busybox", &r]).ok();
    let (digest, _) = pushed_digest(&d.berth(&["push", &r]).ok().stdout);
    d.berth(&["rmi", "busybox", &r]).ok();
    d.berth(&["pull", &r]).ok();
    assert_eq!(image_id(&d, &r), id);
    d.berth(&["rmi", &r]).ok();
    let by_digest = format!("{}/plain/busybox@{digest}", reg.host());
    d.berth(&["pull", &by_digest]).ok();
    assert_eq!(image_id(&d, &by_digest), id);
    let o = d.berth(&["search", &format!("{}/plain", reg.host())]).ok();
    assert!(o.stdout.contains("plain/busybox"), "{}", o.stdout);
    // a layer big enough for the chunked (PATCH) upload
    let big = format!("{}/plain/big:1", reg.host());
    import_files(&d, &big, &[("big", noise(12 << 20, 3))]);
    let big_id = image_id(&d, &big);
    let o = d.berth(&["push", &big]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    d.berth(&["rmi", &big]).ok();
    d.berth(&["pull", &big]).ok();
    assert_eq!(image_id(&d, &big), big_id);
    assert_eq!(snapshot_file(&d, "big").map(|b| b == noise(12 << 20, 3)), Some(true));
}

#[test]
fn push_of_a_big_layer_survives_a_cut_upload() {
    init();
    let reg = BerthRegistry::start("cutpush");
    let proxy = Proxy::start(reg.port, Fault::CutUploadOnce(3 << 20));
    let d = Daemon::start("dist-cutpush");
    let big = format!("{}/cut/big:1", proxy.host());
    import_files(&d, &big, &[("big", noise(12 << 20, 5))]);
    let id = image_id(&d, &big);
    let o = d.berth(&["push", &big]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    d.berth(&["rmi", &big]).ok();
    let direct = format!("{}/cut/big:1", reg.host());
    d.berth(&["pull", &direct]).ok();
    assert_eq!(image_id(&d, &direct), id);
}

/// A registry with a one-layer image of `mb` MiB of noise pushed as `repo:v1`; returns
/// (registry, reference through `proxy`, image id).
fn big_image(d: &Daemon, name: &str, mb: usize) -> (BerthRegistry, String) {
    let reg = BerthRegistry::start(name);
    let r = format!("{}/{name}/big:v1", reg.host());
    import_files(d, &r, &[("big", noise(mb << 20, 7))]);
    d.berth(&["push", &r]).ok();
    let id = image_id(d, &r);
    d.berth(&["rmi", &r]).ok();
    (reg, id)
}

#[test]
fn pull_killed_mid_layer_resumes_with_range() {
    init();
    let mut d = Daemon::start("dist-resume");
    let size = 24u64 << 20;
    let (reg, id) = big_image(&d, "resume", 24);
    let proxy = Proxy::start(reg.port, Fault::Throttle(3 << 20));
    let r = format!("{}/resume/big:v1", proxy.host());
    let mut child = d.cmd(&["pull", &r]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let have: u64 = ingest_files(&d).iter().map(|(_, l)| *l).max().unwrap_or(0);
        if have > 6 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "download did not progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill9();
    let _ = child.kill();
    let _ = child.wait();
    let partial: u64 = ingest_files(&d).iter().map(|(_, l)| *l).max().unwrap_or(0);
    assert!(partial > 4 << 20, "partial ingest kept ({partial})");
    d.spawn();
    // nothing half-done is visible
    assert!(d.berth(&["inspect", &r]).code != 0);
    proxy.set(Fault::None);
    let before = proxy.body_bytes.load(Ordering::SeqCst);
    d.berth(&["pull", &r]).ok();
    let transferred = proxy.body_bytes.load(Ordering::SeqCst) - before;
    assert!(transferred < size - (3 << 20), "resumed pull fetched {transferred} of {size} bytes (had {partial})");
    assert_eq!(image_id(&d, &r), id);
    assert!(ingest_files(&d).is_empty(), "ingest left behind: {:?}", ingest_files(&d));
    let got = snapshot_file(&d, "big").expect("layer unpacked");
    assert!(got == noise(24 << 20, 7), "unpacked content differs");
}

#[test]
fn registry_faults_get_bounded_retries_and_clear_errors() {
    init();
    let d = Daemon::start("dist-faults");
    let (reg, id) = big_image(&d, "faults", 2);
    let proxy = Proxy::start(reg.port, Fault::FailFirst(2));
    let r = format!("{}/faults/big:v1", proxy.host());

    // 503 twice (Retry-After), then fine
    d.berth(&["pull", &r]).ok();
    assert_eq!(image_id(&d, &r), id);
    d.berth(&["rmi", &r]).ok();

    // connection cut mid-body once: resumed
    proxy.set(Fault::CutOnce(300_000));
    d.berth(&["pull", &r]).ok();
    assert_eq!(image_id(&d, &r), id);
    d.berth(&["rmi", &r]).ok();

    // a flipped byte: digest failure, nothing kept
    proxy.set(Fault::Flip(123_456));
    let o = d.berth(&["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("verification failed") || o.stderr.contains("mismatch"), "{}", o.stderr);
    assert!(d.berth(&["inspect", &r]).code != 0, "corrupt image visible");
    assert!(ingest_files(&d).is_empty(), "corrupt ingest kept");
    assert_eq!(d.berth(&["images", "-q"]).stdout.lines().count(), 1, "only busybox remains");

    // always 429: bounded retries, clear error
    proxy.set(Fault::FailAlways);
    let t = Instant::now();
    let o = d.berth(&["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("429"), "{}", o.stderr);
    assert!(t.elapsed() < Duration::from_secs(60), "retries not bounded: {:?}", t.elapsed());

    // a stalled body: read timeout, retries, error; never a hang
    proxy.set(Fault::Stall);
    let t = Instant::now();
    let o = d.berth(&["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(t.elapsed() < Duration::from_secs(90), "stall not detected: {:?}", t.elapsed());
    assert!(o.stderr.contains("failed after"), "{}", o.stderr);
    assert!(d.berth(&["inspect", &r]).code != 0);

    // and the registry recovering: the kept partial data is resumed
    proxy.set(Fault::None);
    d.berth(&["pull", &r]).ok();
    assert_eq!(image_id(&d, &r), id);
}

#[test]
fn concurrent_pulls_fetch_a_blob_once() {
    init();
    let d = Daemon::start("dist-concurrent");
    let (reg, id) = big_image(&d, "conc", 4);
    let proxy = Proxy::start(reg.port, Fault::Throttle(8 << 20));
    let r = format!("{}/conc/big:v1", proxy.host());
    let children: Vec<Child> = (0..4).map(|_| d.cmd(&["pull", "-q", &r]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(image_id(&d, &r), id);
    let sent = proxy.body_bytes.load(Ordering::SeqCst);
    assert!(sent < 6 << 20, "the 4 MiB layer was fetched more than once ({sent} bytes)");
}

#[test]
fn bearer_token_auth() {
    init();
    let reg = BerthRegistry::start("token");
    let proxy = Proxy::start(reg.port, Fault::Token);
    let d = Daemon::start("dist-token");
    let cfg = d.dir.join("docker-config");
    let run = |args: &[&str], stdin: &[u8]| -> Out {
        let mut c = d.cmd(args);
        c.env("DOCKER_CONFIG", &cfg).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        ch.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = ch.wait_with_output().unwrap();
        Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
    };
    let r = format!("{}/tok/busybox:1", proxy.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = run(&["push", &r], b"");
    assert_ne!(o.code, 0, "anonymous push accepted");
    let o = run(&["login", "-u", "bob", "--password-stdin", &proxy.host()], b"nope\n");
    assert_ne!(o.code, 0, "bad password accepted");
    let o = run(&["login", "-u", "bob", "--password-stdin", &proxy.host()], b"pw\n");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = run(&["push", &r], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    d.berth(&["rmi", &r]).ok();
    let before = proxy.tokens.load(Ordering::SeqCst);
    let o = run(&["pull", &r], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let used = proxy.tokens.load(Ordering::SeqCst) - before;
    assert!(used <= 1, "token not cached per scope: {used} token requests for one pull");
}

#[test]
fn client_disconnect_does_not_cancel_the_pull() {
    init();
    let d = Daemon::start("dist-detach");
    let (reg, id) = big_image(&d, "detach", 8);
    let proxy = Proxy::start(reg.port, Fault::Throttle(2 << 20));
    let r = format!("{}/detach/big:v1", proxy.host());
    let mut child = d.cmd(&["pull", &r]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ingest_files(&d).iter().map(|(_, l)| *l).max().unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline, "download did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill(); // Ctrl-C on the client
    let _ = child.wait();
    proxy.set(Fault::None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.berth(&["inspect", &r]).code != 0 {
        assert!(Instant::now() < deadline, "the pull did not finish detached");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(image_id(&d, &r), id);
}

#[test]
fn push_retries_failed_uploads() {
    init();
    let reg = BerthRegistry::start("pushretry");
    let proxy = Proxy::start(reg.port, Fault::FailUploads(3));
    let d = Daemon::start("dist-pushretry");
    let r = format!("{}/retry/busybox:1", proxy.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = d.berth(&["push", &r]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    assert!(proxy.blob_gets.load(Ordering::SeqCst) >= 3, "the faults were not hit");
    d.berth(&["rmi", "busybox", &r]).ok();
    d.berth(&["pull", &format!("{}/retry/busybox:1", reg.host())]).ok();
}

#[test]
fn bearer_token_refreshed_on_401() {
    init();
    let reg = BerthRegistry::start("tokrefresh");
    let proxy = Proxy::start(reg.port, Fault::ShortToken);
    let d = Daemon::start("dist-tokrefresh");
    let cfg = d.dir.join("docker-config");
    let login = d
        .cmd(&["login", "-u", "bob", "--password-stdin", &proxy.host()])
        .env("DOCKER_CONFIG", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.as_ref().unwrap().write_all(b"pw\n").unwrap();
    assert!(login.wait_with_output().unwrap().status.success());
    let r = format!("{}/short/busybox:1", proxy.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = d.cmd(&["push", &r]).env("DOCKER_CONFIG", &cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(proxy.tokens.load(Ordering::SeqCst) > 2, "tokens were not refreshed");
    d.berth(&["rmi", "busybox", &r]).ok();
    let o = d.cmd(&["pull", &r]).env("DOCKER_CONFIG", &cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn credential_helper_from_config_json() {
    init();
    if !tool("htpasswd") {
        return;
    }
    let dir = tmpdir("credhelper");
    let out = Command::new("htpasswd").args(["-nbB", "carol", "pa55"]).output().unwrap();
    std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
    let Some(reg) = DistRegistry::start("credhelper", Some(&dir.join("htpasswd")), None) else { return };
    let d = Daemon::start("dist-credhelper");
    // a credential helper that keeps one secret in a file
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let store = dir.join("store.json");
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  get) read key; if [ -f {s} ]; then cat {s}; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  store) cat > {s}.in; sed 's/\"ServerURL\":\"[^\"]*\",//' {s}.in > {s} ;;\n  erase) rm -f {s} ;;\nesac\n",
        s = store.display()
    );
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.json"), r#"{"credsStore": "berthtest"}"#).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = |args: &[&str], stdin: &[u8]| -> Out {
        let mut c = d.cmd(args);
        c.env("DOCKER_CONFIG", &cfg).env("PATH", &path).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        ch.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = ch.wait_with_output().unwrap();
        Out { code: o.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
    };
    let o = run(&["login", "-u", "carol", "--password-stdin", &reg.host()], b"pa55\n");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let saved = std::fs::read_to_string(&store).unwrap();
    assert!(saved.contains("\"Secret\":\"pa55\""), "helper did not store: {saved}");
    assert!(!std::fs::read_to_string(cfg.join("config.json")).unwrap().contains("pa55"), "secret written to config.json");
    let r = format!("{}/helper/busybox:1", reg.host());
    d.berth(&["tag", "busybox", &r]).ok();
    let o = run(&["push", &r], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = run(&["logout", &reg.host()], b"");
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert!(!store.exists(), "helper erase not called");
}

#[test]
fn identity_token_from_config_json() {
    init();
    let reg = BerthRegistry::start("identity");
    let proxy = Proxy::start(reg.port, Fault::Token);
    let d = Daemon::start("dist-identity");
    let cfg = d.dir.join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let write_cfg = |tok: &str| {
        std::fs::write(cfg.join("config.json"), format!(r#"{{"auths": {{"{}": {{"identitytoken": "{tok}"}}}}}}"#, proxy.host())).unwrap();
    };
    let r = format!("{}/ident/busybox:1", proxy.host());
    d.berth(&["tag", "busybox", &r]).ok();
    write_cfg("rt-bad");
    let o = d.cmd(&["push", &r]).env("DOCKER_CONFIG", &cfg).output().unwrap();
    assert!(!o.status.success(), "a bad refresh token was accepted");
    write_cfg("rt-good");
    let o = d.cmd(&["push", &r]).env("DOCKER_CONFIG", &cfg).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Unmounts on drop.
struct MountGuard(PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn disk_full_during_pull_is_a_clear_error_and_frees_the_space() {
    init();
    let d = Daemon::start("dist-enospc");
    let (reg, id) = big_image(&d, "enospc", 6);
    let ingest = d.data().join("distribution/ingest");
    std::fs::create_dir_all(&ingest).unwrap();
    nix::mount::mount(Some("tmpfs"), &ingest, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=2m")).unwrap();
    let guard = MountGuard(ingest.clone());
    let r = format!("{}/enospc/big:v1", reg.host());
    let o = d.berth(&["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("No space left on device") && o.stderr.contains("distribution/ingest"), "{}", o.stderr);
    assert!(ingest_files(&d).is_empty(), "partial data kept on a full disk");
    assert!(d.berth(&["inspect", &r]).code != 0);
    drop(guard);
    d.berth(&["pull", &r]).ok();
    assert_eq!(image_id(&d, &r), id);
}
