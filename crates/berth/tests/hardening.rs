//! HARDENING.md rows that had no test elsewhere (see `tests/hardening/README.md` for the
//! whole table): hostile registries (A3 #23, #25), hostile API bodies (A4 #39), data-root
//! permissions (A4 #42) and a full disk under the data root (B6).

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex(&sha2::Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A registry that answers whatever it is told to: path -> (content type, body).
struct FakeRegistry {
    port: u16,
    routes: Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>,
}

impl FakeRegistry {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, (String, Vec<u8>)>>> = Default::default();
        let r2 = routes.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let routes = r2.clone();
                std::thread::spawn(move || serve(s, &routes));
            }
        });
        FakeRegistry { port, routes }
    }
    fn set(&self, path: &str, ct: &str, body: Vec<u8>) {
        self.routes.lock().unwrap().insert(path.to_string(), (ct.to_string(), body));
    }
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve(mut s: std::net::TcpStream, routes: &Mutex<HashMap<String, (String, Vec<u8>)>>) {
    loop {
        let mut req = Vec::new();
        let mut b = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(1) => req.push(b[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&req).to_string();
        let mut parts = text.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").split('?').next().unwrap_or("").to_string();
        let found = routes.lock().unwrap().get(&path).cloned();
        let (status, ct, body) = match (path.as_str(), found) {
            ("/v2/", _) => ("200 OK", "application/json".to_string(), b"{}".to_vec()),
            (_, Some((ct, body))) => ("200 OK", ct, body),
            _ => ("404 Not Found", "application/json".to_string(), br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec()),
        };
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n", body.len());
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && s.write_all(&body).is_err() {
            return;
        }
    }
}

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn manifest_bytes(pad: usize) -> Vec<u8> {
    let cfg = format!("sha256:{}", "1".repeat(64));
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [],
        "annotations": {"pad": "x".repeat(pad)}
    }))
    .unwrap()
}

fn image_count(d: &Daemon) -> usize {
    d.berth(&["images", "-qa"]).ok().stdout.lines().count()
}

/// A3 #23: the bytes served for `@sha256:X` hash to something else: refused, nothing stored.
#[test]
fn a3_23_manifest_digest_mismatch_is_refused() {
    let d = Daemon::start("hard-a323");
    let reg = FakeRegistry::start();
    let wanted = sha(b"the manifest the user asked for");
    reg.set(&format!("/v2/evil/img/manifests/{wanted}"), MT_MANIFEST, manifest_bytes(0));
    let before = image_count(&d);
    let o = d.berth(&["pull", &format!("{}/evil/img@{wanted}", reg.host())]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("manifest verification failed"), "{}", o.stderr);
    assert_eq!(image_count(&d), before);
    let blobs = std::fs::read_dir(d.data().join("content/blobs/sha256")).unwrap().count();
    // the bad manifest was not stored (only what busybox's import wrote is there)
    let o = d.berth(&["pull", &format!("{}/evil/img@{wanted}", reg.host())]);
    assert_ne!(o.code, 0);
    assert_eq!(std::fs::read_dir(d.data().join("content/blobs/sha256")).unwrap().count(), blobs);
}

/// A3 #25: documents over 4 MiB and indexes nested 50 deep are refused before use.
#[test]
fn a3_25_oversized_and_deep_documents_are_refused() {
    let d = Daemon::start("hard-a325");
    let reg = FakeRegistry::start();
    reg.set("/v2/evil/big/manifests/latest", MT_MANIFEST, manifest_bytes(5 << 20));
    let o = d.berth(&["pull", &format!("{}/evil/big:latest", reg.host())]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("too large") || o.stderr.contains("exceeds") || o.stderr.contains("limit"), "{}", o.stderr);

    // index -> index -> ... 50 deep (each digest correct), then a manifest
    let mut child = manifest_bytes(0);
    let mut child_mt = MT_MANIFEST;
    for _ in 0..50 {
        let dg = sha(&child);
        reg.set(&format!("/v2/evil/deep/manifests/{dg}"), child_mt, child.clone());
        let idx = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [{"mediaType": child_mt, "digest": dg, "size": child.len(),
                           "platform": {"os": "linux", "architecture": host_arch()}}]
        }))
        .unwrap();
        child = idx;
        child_mt = MT_INDEX;
    }
    reg.set("/v2/evil/deep/manifests/latest", MT_INDEX, child);
    let o = d.berth(&["pull", &format!("{}/evil/deep:latest", reg.host())]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nesting too deep"), "{}", o.stderr);
    // an index that lists itself is the same case with a cycle: a digest cannot contain
    // itself, so a cycle needs a tag, which an index never names; nothing more to test.
    d.berth(&["version"]).ok();
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// POST `body` to the daemon's API; returns the HTTP status.
fn api_post(d: &Daemon, path: &str, body_file: &Path) -> u16 {
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket"])
        .arg(&d.sock)
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body_file.display()))
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0)
}

/// A4 #39: hostile JSON bodies get a 4xx, never a 5xx or a dead daemon.
#[test]
fn a4_39_hostile_api_bodies_get_400() {
    let d = Daemon::start("hard-a439");
    let dir = d.dir.join("bodies");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("deep", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
        ("utf8", b"{\"Image\":\"busybox\",\"Cmd\":[\"\xff\xfe\"]}".to_vec()),
        ("negative memory", br#"{"Image":"busybox","HostConfig":{"Memory":-1}}"#.to_vec()),
        ("cpus overflow", br#"{"Image":"busybox","HostConfig":{"NanoCpus":1e309}}"#.to_vec()),
        ("huge cpu shares", br#"{"Image":"busybox","HostConfig":{"CpuShares":99999999999999999999}}"#.to_vec()),
        ("not json", b"\x00\x01garbage".to_vec()),
    ];
    // 100 MB of JSON
    let mut big = b"{\"Image\":\"busybox\",\"Env\":[\"A=".to_vec();
    big.extend(std::iter::repeat_n(b'x', 100 << 20));
    big.extend(b"\"]}");
    cases.push(("100 MB", big));
    for (name, body) in cases {
        let f = dir.join("body");
        std::fs::write(&f, &body).unwrap();
        let status = api_post(&d, "/containers/create", &f);
        assert!((400..500).contains(&status), "{name}: HTTP {status}");
    }
    d.berth(&["version"]).ok();
    assert!(d.berth(&["ps", "-aq"]).ok().stdout.trim().is_empty(), "a hostile body created a container");
}

/// A4 #42: data root 0700 and exec root 0710, owned by the engine user (root); an
/// unprivileged host user can list neither.
#[test]
fn a4_42_data_and_exec_root_permissions() {
    let d = Daemon::start("hard-a442");
    for (p, mode) in [(d.data(), 0o700), (d.dir.join("run"), 0o710)] {
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o7777, mode, "{}", p.display());
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", p.display());
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
            .arg(&p)
            .output()
            .expect("setpriv");
        assert!(!o.status.success(), "nobody can list {}", p.display());
    }
}

fn statvfs_free(p: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    s.blocks_available() as u64 * s.fragment_size() as u64
}

/// B6: the data root is a small tmpfs. Filling it gives clear ENOSPC errors naming the
/// path, leaves no partial data, the daemon keeps serving, and `rm`/`prune` give the
/// space back.
#[test]
fn b6_disk_full_data_root() {
    let mut d = Daemon::start_bare("hard-b6");
    d.kill9();
    let data = d.data();
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    nix::mount::mount(Some("tmpfs"), &data, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=40m")).expect("tmpfs data root");
    d.spawn();
    d.berth(&["import", "--change", "CMD [\"sh\"]", busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
    let free0 = statvfs_free(&data);

    // an import bigger than the disk
    let big = d.dir.join("big.tar");
    {
        let src = d.dir.join("bigsrc");
        std::fs::create_dir_all(&src).unwrap();
        let mut f = std::fs::File::create(src.join("blob")).unwrap();
        let mut x = 7u64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..60 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&buf).unwrap();
        }
        assert!(Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(&big).arg(".").status().unwrap().success());
        std::fs::remove_dir_all(&src).unwrap();
    }
    let o = d.berth(&["import", big.to_str().unwrap(), "big:latest"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    assert!(o.stderr.contains(data.to_str().unwrap()), "ENOSPC error does not name the path: {}", o.stderr);
    assert!(d.berth(&["inspect", "big:latest"]).code != 0, "a partial image is visible");
    assert!(statvfs_free(&data) + (1 << 20) >= free0, "partial data kept: {} free, {} before", statvfs_free(&data), free0);

    // a container fills the disk from inside; the daemon keeps serving
    let o = d.berth(&["run", "--name", "filler", "busybox", "sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=100"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    // (the metadata store's reserve may have been handed back meanwhile: a few MiB free)
    assert!(statvfs_free(&data) < 8 << 20, "disk not full: {}", statvfs_free(&data));
    d.berth(&["ps", "-a"]).ok();
    d.berth(&["images"]).ok();
    d.berth(&["inspect", "filler"]).ok();
    // rm gives the space back; prune works on a full disk too
    d.berth(&["rm", "filler"]).ok();
    // the layer is deleted by the engine's background reaper right after the records go
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while statvfs_free(&data) + (1 << 20) < free0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(statvfs_free(&data) + (1 << 20) >= free0, "rm did not free the space");
    d.berth(&["container", "prune", "-f"]).ok();
    d.berth(&["image", "prune", "-f"]).ok();
    // and the daemon works normally again
    let o = d.berth(&["run", "--rm", "busybox", "echo", "ok"]).ok();
    assert_eq!(o.stdout.trim(), "ok");
}

/// A3 #29: an image whose `/proc` or `/dev` is a symlink to a host path, or whose `/sys` is a
/// file: the container either fails with an error or gets its mounts inside its root; the
/// host path the symlink names is never mounted over or written.
#[test]
fn a3_29_proc_dev_sys_symlinks_in_the_image_stay_inside() {
    let d = Daemon::start("hard-a329");
    let sentinel = d.dir.join("host-sentinel");
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), b"host").unwrap();
    let before = std::fs::metadata(&sentinel).unwrap();
    for (what, make) in [("proc", "symlink"), ("dev", "symlink"), ("sys", "file")] {
        let tar = d.dir.join(format!("{what}.tar"));
        std::fs::copy(busybox_tar(), &tar).unwrap();
        let extra = d.dir.join(format!("extra-{what}"));
        std::fs::create_dir_all(&extra).unwrap();
        if make == "symlink" {
            std::os::unix::fs::symlink(&sentinel, extra.join(what)).unwrap();
        } else {
            std::fs::write(extra.join(what), b"not a directory").unwrap();
        }
        // appended entries come last and win over the rootfs's own directory
        assert!(Command::new("tar").arg("-rf").arg(&tar).arg("-C").arg(&extra).arg(what).status().unwrap().success());
        let img = format!("evil-{what}:latest");
        d.berth(&["import", "--change", "CMD [\"sh\"]", tar.to_str().unwrap(), &img]).ok();
        let o = d.berth(&["run", "--rm", &img, "sh", "-c", "ls /proc/self/ >/dev/null && echo > /dev/null && echo ran"]);
        if o.code != 0 {
            assert!(!o.stderr.trim().is_empty(), "{what}: failed without an error message");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(sentinel.to_str().unwrap()), "{what}: a mount landed on the host path");
        let names: Vec<_> = std::fs::read_dir(&sentinel).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("keep")], "{what}: host directory written");
        let now = std::fs::metadata(&sentinel).unwrap();
        assert_eq!((now.mode(), now.mtime(), now.nlink()), (before.mode(), before.mtime(), before.nlink()), "{what}");
        assert_eq!(std::fs::read(sentinel.join("keep")).unwrap(), b"host");
    }
}

/// berth's registry server in this process.
fn registry(dir: &Path) -> String {
    let reg = berth_registry::Registry::open(dir.join("registry")).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, berth_registry::router(Arc::new(reg))).await;
        });
    });
    format!("127.0.0.1:{port}")
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// B10: pulls while image GC runs again and again (every `rmi` collects): each pull succeeds
/// and leaves a complete image (its layers unpacked, so a container runs from it).
#[test]
fn b10_pull_concurrent_with_gc() {
    let d = Arc::new(Daemon::start("hard-b10"));
    let reg = registry(&d.dir);
    let ctx = d.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a /a\nCOPY b /b\nCOPY c /c\n").unwrap();
    for (i, f) in ["a", "b", "c"].iter().enumerate() {
        std::fs::write(ctx.join(f), noise(3 << 20, i as u64 + 11)).unwrap();
    }
    let r = format!("{reg}/b10/img:v1");
    d.berth(&["build", "-q", "-t", &r, ctx.to_str().unwrap()]).ok();
    d.berth(&["push", &r]).ok();
    let want = d.berth(&["run", "--rm", &r, "sh", "-c", "md5sum /a /b /c"]).ok().stdout;
    d.berth(&["rmi", &r]).ok();
    d.berth(&["builder", "prune", "-af"]).ok();

    // a GC loop: import and remove a throwaway image (each removal runs the image GC)
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let d = d.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                d.berth(&["import", busybox_tar().to_str().unwrap(), "gc-churn:latest"]).ok();
                d.berth(&["rmi", "gc-churn:latest"]).ok();
                n += 1;
            }
            n
        })
    };
    for round in 0..5 {
        let o = d.berth(&["pull", &r]);
        assert_eq!(o.code, 0, "round {round}: pull failed: {}", o.stderr);
        let o = d.berth(&["run", "--rm", &r, "sh", "-c", "md5sum /a /b /c"]);
        assert_eq!(o.code, 0, "round {round}: image incomplete after pull: {}", o.stderr);
        assert_eq!(o.stdout, want, "round {round}");
        d.berth(&["rmi", &r]).ok();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = gc.join().unwrap();
    assert!(n > 0);
}

// ---------------------------------------------------------------------------------------
// A3 #27, #28, A4 #32, #35, #40, A5 #45: hostile images, cp/archive and build mounts.

/// A host directory holding one file, `keep`; `untouched` checks that nothing was added,
/// removed or written there and that no mount landed on it.
struct HostSentinel {
    dir: std::path::PathBuf,
    mtime: i64,
}

impl HostSentinel {
    fn new(d: &Daemon, name: &str) -> Self {
        let dir = d.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep"), b"host").unwrap();
        let mtime = std::fs::metadata(&dir).unwrap().mtime();
        HostSentinel { dir, mtime }
    }
    /// The directory seen from inside a container through `..`: enough `../` to climb to
    /// the host's `/` from anywhere, then the host path.
    fn climb(&self) -> String {
        format!("{}{}", "../".repeat(40), self.dir.to_str().unwrap().trim_start_matches('/'))
    }
    #[track_caller]
    fn untouched(&self, what: &str) {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir).unwrap().flatten().map(|e| e.file_name()).collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("keep")], "{what}: host directory written");
        assert_eq!(std::fs::read(self.dir.join("keep")).unwrap(), b"host", "{what}");
        assert_eq!(std::fs::metadata(&self.dir).unwrap().mtime(), self.mtime, "{what}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.dir.to_str().unwrap()), "{what}: a mount landed on the host path");
    }
}

/// Imports busybox plus the entries `add` makes under a staging directory (appended to
/// the tar, so they win over busybox's own), with `--change` lines.
fn image_with(d: &Daemon, tag: &str, changes: &[&str], add: impl FnOnce(&Path)) {
    let stage = d.dir.join(format!("stage-{}", tag.replace([':', '/'], "_")));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).unwrap();
    add(&stage);
    let tar = d.dir.join(format!("{}.tar", tag.replace([':', '/'], "_")));
    std::fs::copy(busybox_tar(), &tar).unwrap();
    let mut names: Vec<String> = Vec::new();
    fn walk(base: &Path, rel: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(base.join(rel)).unwrap().flatten() {
            let r = rel.join(e.file_name());
            out.push(r.to_str().unwrap().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &r, out);
            }
        }
    }
    walk(&stage, Path::new(""), &mut names);
    names.sort();
    if !names.is_empty() {
        let st = Command::new("tar")
            .args(["--numeric-owner", "--no-recursion", "-rf"])
            .arg(&tar)
            .arg("-C")
            .arg(&stage)
            .args(&names)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.to_string());
    }
    args.push(tar.to_str().unwrap().into());
    args.push(tag.into());
    d.berth(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
}

/// The daemon's pid (found by its socket path on its command line).
fn daemon_pid(d: &Daemon) -> u32 {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.iter().any(|a| *a == b"daemon") && args.iter().any(|a| *a == format!("unix://{}", d.sock.display()).as_bytes()) {
            return pid;
        }
    }
    panic!("daemon pid not found");
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

/// A3 #27: `WorkingDir` naming a file descriptor or `/proc/self/cwd/..` (CVE-2024-21626)
/// and a `User` with `..`: the run fails with an error, or runs with its cwd inside the
/// container root; from there `..` never reaches the host and nothing on the host is written.
#[test]
fn a3_27_workdir_through_proc_fds_stays_in_root() {
    let d = Daemon::start("hard-a327");
    let host = HostSentinel::new(&d, "host-sentinel");
    let climb = host.climb();
    let script = format!(
        "echo cwd=$(pwd -P); echo link=$(readlink /proc/self/cwd); \
         [ -e {climb}/keep ] && echo ESCAPED; [ -e ../../../../../../../{0}/keep ] && echo ESCAPED; \
         touch {climb}/written ./written-here 2>/dev/null; mkdir {climb}/dir 2>/dev/null; echo done",
        host.dir.to_str().unwrap().trim_start_matches('/')
    );
    let mut workdirs: Vec<String> = (3..=10).map(|n| format!("/proc/self/fd/{n}")).collect();
    workdirs.extend(["/proc/self/cwd/..", "/proc/self/cwd", "/proc/1/cwd/..", "/proc/self/root/..", "/proc/self/fd/7/../.."].map(String::from));
    // an image symlink leading there: `WORKDIR /w`, `/w -> /proc/self/fd/7`
    image_with(&d, "a327-link:latest", &["WORKDIR /w"], |s| std::os::unix::fs::symlink("/proc/self/fd/7", s.join("w")).unwrap());
    let check = |what: &str, o: Out| {
        assert_ne!(o.code, 0, "{what}: ran: {}", o.stdout);
        assert!(!o.stdout.contains("ESCAPED"), "{what}: {}", o.stdout);
        // (pathrs refuses to make `/w`'s dangling target: "mkdir /w: ...")
        // (`exec` prints its start error on stdout with code 126, as docker does)
        let msg = format!("{}{}", o.stdout, o.stderr);
        assert!(msg.contains("working directory is inside /proc") || msg.contains("mkdir /w:"), "{what}: unclear error: {msg}");
        host.untouched(what);
    };
    for (i, w) in workdirs.iter().enumerate() {
        // by `-w` and by the image's WorkingDir
        let img = format!("a327-{i}:latest");
        image_with(&d, &img, &[&format!("WORKDIR {w}")], |_| {});
        check(w, d.berth(&["run", "--rm", "-w", w, "busybox", "sh", "-c", &script]));
        check(w, d.berth(&["run", "--rm", &img, "sh", "-c", &script]));
    }
    check("/w -> /proc/self/fd/7", d.berth(&["run", "--rm", "a327-link:latest", "sh", "-c", &script]));
    // exec runs in a process of its own (the shim's helper): same answer
    d.berth(&["run", "-d", "--name", "a327-exec", "busybox", "sleep", "600"]).ok();
    for w in &workdirs {
        check(w, d.berth(&["exec", "-w", w, "a327-exec", "sh", "-c", &script]));
    }
    // a cwd that only looks like it (a directory of the image) still works
    let o = d.berth(&["run", "--rm", "-w", "/procfoo/self/fd/7", "busybox", "sh", "-c", &script]).ok();
    assert!(o.stdout.contains("cwd=/procfoo/self/fd/7\n") && !o.stdout.contains("ESCAPED"), "{}", o.stdout);
    host.untouched("procfoo");
    d.berth(&["rm", "-f", "a327-exec"]).ok();

    // User with `..`: no such user in the image, an error (never a lookup elsewhere)
    image_with(&d, "a327-user:latest", &["USER ../../x"], |_| {});
    for args in [vec!["run", "--rm", "-u", "../../x", "busybox", "id"], vec!["run", "--rm", "a327-user:latest", "id"], vec!["run", "--rm", "-u", "0:../../x", "busybox", "id"]] {
        let o = d.berth(&args);
        assert_ne!(o.code, 0, "{args:?}: {}", o.stdout);
        assert!((o.stderr.contains("unable to find") || o.stderr.contains("invalid user")) && o.stderr.contains("../../x"), "{args:?}: {}", o.stderr);
    }
    host.untouched("user");
    d.berth(&["version"]).ok();
}

/// A3 #28: `/etc/passwd` and `/etc/group` that are symlinks to host files (absolute and
/// `..`-relative) resolve inside the root (the host file's user is unknown); 1 GB sparse
/// ones are refused by the size cap, for `run`, `start`, `exec` and build `--chown`.
#[test]
fn a3_28_passwd_symlinked_to_host_or_huge() {
    let d = Daemon::start("hard-a328");
    let hostpw = d.dir.join("host-passwd");
    std::fs::write(&hostpw, "ghost:x:4321:4321:ghost:/ghost:/bin/sh\n").unwrap();
    let hostgr = d.dir.join("host-group");
    std::fs::write(&hostgr, "ghosts:x:4322:ghost\n").unwrap();
    let rel = |p: &Path| format!("../../../../../../..{}", p.display());
    for (i, (pw, gr)) in [(hostpw.display().to_string(), hostgr.display().to_string()), (rel(&hostpw), rel(&hostgr))].into_iter().enumerate() {
        let img = format!("a328-link{i}:latest");
        image_with(&d, &img, &[], |s| {
            std::fs::create_dir_all(s.join("etc")).unwrap();
            std::os::unix::fs::symlink(&pw, s.join("etc/passwd")).unwrap();
            std::os::unix::fs::symlink(&gr, s.join("etc/group")).unwrap();
        });
        let o = d.berth(&["run", "--rm", "-u", "ghost", &img, "id"]);
        assert_ne!(o.code, 0, "{pw}: the host passwd was used: {}", o.stdout);
        assert!(o.stderr.contains("unable to find user ghost"), "{pw}: {}", o.stderr);
        let o = d.berth(&["run", "--rm", "-u", "0:ghosts", &img, "id"]);
        assert_ne!(o.code, 0, "{pw}: the host group file was used: {}", o.stdout);
        // numeric ids still work (no passwd entry needed)
        let o = d.berth(&["run", "--rm", "-u", "4321:4322", &img, "id"]).ok();
        assert!(o.stdout.contains("uid=4321 gid=4322"), "{}", o.stdout);
        assert!(!o.stdout.contains("ghost"), "{}", o.stdout);
        // build: COPY --chown resolves in the image too
        let ctx = d.dir.join(format!("ctx28-{i}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("f"), "x").unwrap();
        std::fs::write(ctx.join("Dockerfile"), format!("FROM {img}\nCOPY --chown=ghost f /f\n")).unwrap();
        let o = d.berth(&["build", "-q", ctx.to_str().unwrap()]);
        assert_ne!(o.code, 0, "build --chown=ghost used the host passwd");
        assert!(o.stderr.contains("ghost"), "{}", o.stderr);
    }
    assert_eq!(std::fs::read_to_string(&hostpw).unwrap(), "ghost:x:4321:4321:ghost:/ghost:/bin/sh\n");

    // 1 GB sparse passwd and group, made by the container itself (then start again and exec)
    let pid = daemon_pid(&d);
    let hwm0 = status_kib(pid, "VmHWM:");
    d.berth(&["run", "--name", "huge", "busybox", "sh", "-c", "truncate -s 1G /etc/passwd /etc/group && echo root:x:0:0::/root:/bin/sh >> /etc/passwd"]).ok();
    let o = d.berth(&["start", "-a", "huge"]);
    assert_ne!(o.code, 0, "a 1 GB passwd was accepted: {}", o.stdout);
    assert!(o.stderr.contains("larger than 4194304 bytes"), "{}", o.stderr);
    d.berth(&["run", "-d", "--name", "huge2", "busybox", "sh", "-c", "truncate -s 1G /etc/passwd /etc/group; touch /ready; sleep 600"]).ok();
    for _ in 0..200 {
        if d.berth(&["exec", "huge2", "/bin/busybox", "test", "-e", "/ready"]).code == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for user in ["nobody", "0"] {
        let o = d.berth(&["exec", "-u", user, "huge2", "id"]);
        assert_eq!(o.code, 126, "exec with a 1 GB passwd: {}", o.stdout);
        assert!(o.stdout.contains("larger than 4194304 bytes"), "{}", o.stdout);
    }
    let hwm = status_kib(pid, "VmHWM:");
    assert!(hwm < hwm0 + 200 * 1024, "the daemon's peak RSS went from {hwm0} to {hwm} KiB");
    eprintln!("a3_28: daemon VmHWM {hwm0} -> {hwm} KiB");
    d.berth(&["rm", "-f", "huge2"]).ok();
}

/// A host file that must keep its bytes and mtime and never be mounted on.
struct HostFile {
    path: std::path::PathBuf,
    mtime: (i64, i64),
}

impl HostFile {
    fn new(path: std::path::PathBuf) -> Self {
        std::fs::write(&path, b"host").unwrap();
        let md = std::fs::metadata(&path).unwrap();
        HostFile { path, mtime: (md.mtime(), md.mtime_nsec()) }
    }
    #[track_caller]
    fn untouched(&self, what: &str) {
        assert_eq!(std::fs::read(&self.path).unwrap(), b"host", "{what}: host file written");
        let md = std::fs::metadata(&self.path).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), self.mtime, "{what}: host file touched");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(self.path.to_str().unwrap()), "{what}: a mount landed on the host file");
    }
}

/// A4 #32 (CVE-2025-31133, CVE-2025-52565): an image whose `/dev/null`, `/dev/console`,
/// `/dev/ptmx` or `/dev/pts/0` is a symlink to a host file (or `/dev/null` a regular
/// file), run with and without a tty, and a host directory with such symlinks mounted
/// as `/dev`: the host file is never written or mounted on, and the masked paths are
/// masked by a real null device (char 1:3).
#[test]
fn a4_32_dev_null_and_console_symlinks_are_contained() {
    let d = Daemon::start("hard-a432");
    let host = HostFile::new(d.dir.join("host-file"));
    let target = host.path.to_str().unwrap().to_string();
    let hdir = HostSentinel::new(&d, "host-dir");
    // which of the masked files this kernel has (/proc/kcore needs CONFIG_PROC_KCORE)
    let masked: Vec<&str> = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"].into_iter().filter(|p| Path::new(p).exists()).collect();
    assert!(!masked.is_empty());
    let script = format!(
        "stat -c '%n %F %t:%T' {m}; for f in {m}; do head -c 1 $f | wc -c; done; echo x > /dev/null; echo x > /dev/console; \
         tty; stat -c '%n %F' /dev/null /dev/console /dev/ptmx; echo done",
        m = masked.join(" ")
    );
    let link = |s: &Path, name: &str, to: &str| {
        let p = s.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, p).unwrap();
    };
    let climb = hdir.climb();
    image_with(&d, "a432-links:latest", &[], |s| {
        link(s, "dev/null", &target);
        link(s, "dev/console", &target);
        link(s, "dev/ptmx", &climb);
        link(s, "dev/pts/0", &target);
        link(s, "dev/pts/ptmx", &climb);
    });
    image_with(&d, "a432-file:latest", &[], |s| {
        std::fs::create_dir_all(s.join("dev/pts")).unwrap();
        std::fs::write(s.join("dev/null"), "a regular file").unwrap();
        std::fs::write(s.join("dev/console"), "").unwrap();
        link(s, "dev/pts/0", &format!("../../../../..{target}"));
    });
    for img in ["a432-links:latest", "a432-file:latest"] {
        for tty in [false, true] {
            let mut args = vec!["run", "--rm"];
            if tty {
                args.push("-t");
            }
            args.extend([img, "sh", "-c", &script]);
            let o = d.berth(&args);
            let what = format!("{img} tty={tty}");
            assert_eq!(o.code, 0, "{what}: {} {}", o.stdout, o.stderr);
            let out = o.stdout.replace('\r', "");
            for m in &masked {
                assert!(out.contains(&format!("{m} character special file 1:3\n")), "{what}: {m} is not masked by a null device: {out}");
            }
            assert!(out.contains("/dev/null character special file\n"), "{what}: {out}");
            assert!(out.lines().filter(|l| l.trim() == "0").count() >= masked.len(), "{what}: a masked file has content: {out}");
            assert!(out.contains("done"), "{what}: {out}");
            if tty {
                assert!(out.contains("/dev/pts/0\n"), "{what}: {out}");
            }
            host.untouched(&what);
            hdir.untouched(&what);
        }
    }

    // a host directory with the same symlinks mounted as /dev (what the CVEs race for):
    // the run works or fails with an error, the files the symlinks name are never touched
    let vol = d.dir.join("dev-volume");
    std::fs::create_dir_all(&vol).unwrap();
    link(&vol, "null", &target);
    link(&vol, "console", &target);
    link(&vol, "ptmx", &target);
    for tty in [false, true] {
        let mut args = vec!["run".to_string(), "--rm".into(), "-v".into(), format!("{}:/dev", vol.display())];
        if tty {
            args.push("-t".into());
        }
        args.extend(["busybox".into(), "sh".into(), "-c".into(), script.clone()]);
        let o = d.berth(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let what = format!("-v {}:/dev tty={tty}", vol.display());
        if o.code == 0 {
            for m in &masked {
                assert!(o.stdout.replace('\r', "").contains(&format!("{m} character special file 1:3\n")), "{what}: {m}: {}", o.stdout);
            }
        } else {
            assert!(!o.stderr.trim().is_empty(), "{what}: failed without an error");
        }
        host.untouched(&what);
        hdir.untouched(&what);
        for n in ["null", "console", "ptmx"] {
            assert!(std::fs::symlink_metadata(vol.join(n)).unwrap().file_type().is_symlink(), "{what}: {n} replaced");
        }
    }
}

/// `curl` over the daemon's socket: (HTTP status, body).
fn api_raw(d: &Daemon, method: &str, path: &str, body: Option<&Path>, ctype: &str) -> (u16, Vec<u8>) {
    let out = d.dir.join(format!("curl-out-{}", std::process::id()));
    let mut c = Command::new("curl");
    c.args(["-s", "-o"]).arg(&out).args(["-w", "%{http_code}", "-X", method, "--unix-socket"]).arg(&d.sock);
    if method == "HEAD" {
        c.arg("-I");
    }
    if let Some(b) = body {
        c.args(["-H", &format!("Content-Type: {ctype}"), "--data-binary"]).arg(format!("@{}", b.display()));
    }
    let o = c.arg(format!("http://localhost{path}")).output().expect("curl");
    let status = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
    let body = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (status, body)
}

/// A4 #35 (CVE-2019-14271): `cp` and the archive API read and write a container's files
/// in the daemon itself; nothing from the container's root is executed or loaded. The image's
/// `/bin/sh`, `tar`, `cp`, NSS modules, `nsswitch.conf` and `ld.so.preload` are traps that
/// would create a host file if run (or loaded) in host context.
#[test]
fn a4_35_cp_never_runs_or_loads_container_files() {
    let d = Daemon::start("hard-a435");
    let pwned = d.dir.join("pwned");
    let script = format!("#!/bin/sh\necho pwned >> {}\n", pwned.display());
    // a shared library whose constructor writes the host file
    let src = d.dir.join("trap.c");
    std::fs::write(&src, format!("#include <stdio.h>\n__attribute__((constructor)) static void trap(void) {{ FILE *f = fopen(\"{}\", \"a\"); if (f) {{ fputs(\"lib\\n\", f); fclose(f); }} }}\n", pwned.display())).unwrap();
    let so = d.dir.join("trap.so");
    let have_cc = Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&so).arg(&src).status().map(|s| s.success()).unwrap_or(false);
    if !have_cc {
        eprintln!("a4_35: no C compiler, the NSS traps are scripts only");
    }
    image_with(&d, "a435:latest", &[], |s| {
        for p in ["bin/sh", "bin/tar", "usr/bin/tar", "bin/cp", "usr/bin/docker-untar", "sbin/ldconfig"] {
            let f = s.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, &script).unwrap();
            std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        for dir in ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"] {
            std::fs::create_dir_all(s.join(dir)).unwrap();
            for lib in ["libnss_files.so.2", "libnss_trap.so.2", "libnss_compat.so.2", "libc.so.6"] {
                if have_cc {
                    std::fs::copy(&so, s.join(dir).join(lib)).unwrap();
                } else {
                    std::fs::write(s.join(dir).join(lib), &script).unwrap();
                }
            }
        }
        std::fs::create_dir_all(s.join("etc")).unwrap();
        std::fs::write(s.join("etc/nsswitch.conf"), "passwd: trap files\ngroup: trap files\nhosts: trap files\n").unwrap();
        std::fs::write(s.join("etc/ld.so.preload"), "/lib/x86_64-linux-gnu/libnss_trap.so.2\n").unwrap();
        std::fs::write(s.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nowner:x:4242:4242::/:/bin/sh\n").unwrap();
        std::fs::write(s.join("etc/group"), "root:x:0:\nowner:x:4242:\n").unwrap();
        std::fs::create_dir_all(s.join("data")).unwrap();
        std::fs::write(s.join("data/file"), "data").unwrap();
        std::os::unix::fs::chown(s.join("data/file"), Some(4242), Some(4242)).unwrap();
    });
    let pid = daemon_pid(&d);
    // every execve of the daemon's threads and children while cp runs (if strace is here)
    let trace = d.dir.join("strace.out");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve,execveat", "-o"])
        .arg(&trace)
        .args(["-p", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok();
    if strace.is_some() {
        // strace writes its output file once attached
        for _ in 0..100 {
            if trace.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // (strace present but not allowed to attach: no execve check)
        if let Some(Ok(Some(st))) = strace.as_mut().map(|s| s.try_wait()) {
            eprintln!("a4_35: strace exited early ({st}), execve is not traced");
            strace = None;
        }
    }

    d.berth(&["create", "--name", "stopped", "a435:latest", "/bin/busybox", "true"]).ok();
    d.berth(&["run", "-d", "--name", "running", "a435:latest", "/bin/busybox", "sleep", "600"]).ok();
    let input = d.dir.join("input");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::write(input.join("sub/f"), "in").unwrap();
    std::fs::write(d.dir.join("in.txt"), "in").unwrap();
    for c in ["stopped", "running"] {
        let out = d.dir.join(format!("out-{c}"));
        std::fs::create_dir_all(&out).unwrap();
        let o = out.to_str().unwrap();
        // (`/` of a running container would walk its /proc and /sys as well)
        let whole = if c == "stopped" { "/" } else { "/usr" };
        for src in ["/etc/passwd", "/etc", "/bin", "/lib", "/data", whole] {
            d.berth(&["cp", &format!("{c}:{src}"), &format!("{o}/x{}", src.replace('/', "_"))]).ok();
        }
        d.berth(&["cp", "-a", &format!("{c}:/data"), &format!("{o}/archive-mode")]).ok();
        let o = d.berth(&["cp", &format!("{c}:/etc"), "-"]).ok();
        assert!(!o.stdout.is_empty());
        d.berth(&["cp", d.dir.join("in.txt").to_str().unwrap(), &format!("{c}:/tmp/")]).ok();
        d.berth(&["cp", input.to_str().unwrap(), &format!("{c}:/data/")]).ok();
        d.berth(&["cp", "-a", input.to_str().unwrap(), &format!("{c}:/usr/")]).ok();
        // the API itself: HEAD, GET and PUT of an archive
        let (st, _) = api_raw(&d, "HEAD", &format!("/containers/{c}/archive?path=/bin/sh"), None, "");
        assert_eq!(st, 200);
        let (st, tar) = api_raw(&d, "GET", &format!("/containers/{c}/archive?path=/lib"), None, "");
        assert_eq!(st, 200);
        let t = d.dir.join("lib.tar");
        std::fs::write(&t, &tar).unwrap();
        let (st, _) = api_raw(&d, "PUT", &format!("/containers/{c}/archive?path=/tmp"), Some(&t), "application/x-tar");
        assert_eq!(st, 200);
        assert_eq!(d.berth(&["cp", &format!("{c}:/tmp/lib/libc.so.6"), "-"]).ok().stdout.len() > 100, true);
    }
    d.berth(&["diff", "stopped"]).ok();
    d.berth(&["export", "-o", d.dir.join("export.tar").to_str().unwrap(), "stopped"]).ok();
    if let Some(s) = strace.as_mut() {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = s.kill();
        let _ = s.wait();
        let t = std::fs::read_to_string(&trace).unwrap_or_default();
        // `run -d` starts a shim (the berth binary itself) and the container: those are
        // expected; nothing else may be executed
        let bad: Vec<&str> = t
            .lines()
            .filter(|l| l.contains("execve"))
            .filter(|l| !l.contains(super_exe()) && !l.contains("\"/bin/busybox\"") && !l.contains("= -1 ENOENT"))
            .collect();
        assert!(bad.is_empty(), "the daemon executed something: {bad:#?}");
        eprintln!("a4_35: execve seen: {:#?}", t.lines().filter(|l| l.contains("execve")).collect::<Vec<_>>());
        // (strace worked: it saw the shim of `run -d` start)
        assert!(t.contains("execve("), "strace saw nothing: {t}");
    }
    assert!(!pwned.exists(), "a container file ran in host context: {}", std::fs::read_to_string(&pwned).unwrap_or_default());
    // nothing under the data or exec root is mapped into the daemon (no library loaded from a rootfs)
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let under: Vec<&str> = maps.lines().filter(|l| l.contains(d.dir.to_str().unwrap())).collect();
    assert!(under.is_empty(), "the daemon maps files of the data root: {under:#?}");
    // and the copies are the files, not their effect
    assert_eq!(std::fs::read_to_string(d.dir.join("out-stopped/x_bin/sh")).unwrap(), script);
    assert_eq!(std::fs::read_to_string(d.dir.join("out-running/x_etc/nsswitch.conf")).unwrap(), "passwd: trap files\ngroup: trap files\nhosts: trap files\n");
    assert_eq!(std::fs::metadata(d.dir.join("out-stopped/archive-mode/file")).unwrap().uid(), 4242);
    d.berth(&["rm", "-f", "running", "stopped"]).ok();
}

fn super_exe() -> &'static str {
    BERTH
}

/// One ustar entry (names under 100 bytes): `typ` b'0' file, b'1' hard link, b'2' symlink,
/// b'5' directory.
fn tar_entry(out: &mut Vec<u8>, name: &str, typ: u8, link: &str, data: &[u8]) {
    assert!(name.len() < 100 && link.len() < 100, "{name} {link}");
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode: &[u8] = if typ == b'5' { b"0000755\0" } else { b"0000644\0" };
    h[100..108].copy_from_slice(mode);
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
    h[136..148].copy_from_slice(b"14000000000\0");
    h[148..156].copy_from_slice(b"        ");
    h[156] = typ;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_end(mut t: Vec<u8>) -> Vec<u8> {
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// A4 #40: `PUT /containers/{id}/archive` with entries that climb out (`../`), absolute
/// names, a symlink to a host directory followed by a file through it, hard links to
/// host files (`/etc/shadow`) and an extraction path that is a symlink to a host
/// directory: every request gets 200 (entries clamped inside the container) or a 4xx,
/// nothing appears or changes on the host, and the daemon keeps serving.
#[test]
fn a4_40_archive_put_with_traversal_entries_is_contained() {
    let d = Daemon::start("hard-a440");
    let host = HostSentinel::new(&d, "host-dir");
    let hd = host.dir.to_str().unwrap().trim_start_matches('/').to_string();
    let shadow = Path::new("/etc/shadow");
    let shadow_before = std::fs::metadata(shadow).ok().map(|m| (m.nlink(), m.mtime(), m.ino()));
    let shadow_bytes = std::fs::read(shadow).ok();
    image_with(&d, "a440:latest", &[], |s| {
        std::os::unix::fs::symlink(&host.dir, s.join("hostlink")).unwrap();
        std::fs::create_dir_all(s.join("x")).unwrap();
    });
    d.berth(&["create", "--name", "stopped", "a440:latest", "true"]).ok();
    d.berth(&["run", "-d", "--name", "running", "a440:latest", "sleep", "600"]).ok();
    let up = "../".repeat(10);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut t = Vec::new();
    tar_entry(&mut t, &format!("{up}{hd}/escape1"), b'0', "", b"pwned");
    cases.push(("dot-dot name", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, &format!("/{hd}/escape2"), b'0', "", b"pwned");
    cases.push(("absolute name", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, "lnk", b'2', host.dir.to_str().unwrap(), b"");
    tar_entry(&mut t, "lnk/escape3", b'0', "", b"pwned");
    cases.push(("absolute symlink then a file through it", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, "rel", b'2', &format!("{up}{hd}"), b"");
    tar_entry(&mut t, "rel/escape4", b'0', "", b"pwned");
    tar_entry(&mut t, "rel/sub", b'5', "", b"");
    cases.push(("relative symlink then a file and a dir through it", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, "root", b'2', "/", b"");
    tar_entry(&mut t, &format!("root/{hd}/escape5"), b'0', "", b"pwned");
    cases.push(("symlink to / then a file through it", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, "shadow", b'1', "/etc/shadow", b"");
    tar_entry(&mut t, "shadow2", b'1', &format!("{up}etc/shadow"), b"");
    tar_entry(&mut t, "keep", b'1', &format!("/{hd}/keep"), b"");
    cases.push(("hard links to host files", tar_end(t)));
    let mut t = Vec::new();
    tar_entry(&mut t, "s", b'2', &format!("/{hd}/keep"), b"");
    tar_entry(&mut t, "h", b'1', "s", b"");
    tar_entry(&mut t, "s", b'0', "", b"pwned");
    tar_entry(&mut t, "h", b'0', "", b"pwned");
    cases.push(("hard link to a symlink, then both rewritten", tar_end(t)));
    // all of them in one archive as well
    let mut all = Vec::new();
    for (_, t) in &cases {
        all.extend_from_slice(&t[..t.len() - 1024]);
    }
    cases.push(("all in one", tar_end(all)));

    let body = d.dir.join("body.tar");
    let mut statuses = Vec::new();
    for c in ["stopped", "running"] {
        for (what, tar) in &cases {
            std::fs::write(&body, tar).unwrap();
            for path in ["/x", "/", "/hostlink", "/x/../../.."] {
                let q = path.replace('/', "%2F");
                let (st, resp) = api_raw(&d, "PUT", &format!("/containers/{c}/archive?path={q}"), Some(&body), "application/x-tar");
                let what = format!("{c} {what} path={path}");
                assert!(st == 200 || (400..500).contains(&st), "{what}: HTTP {st} {}", String::from_utf8_lossy(&resp));
                statuses.push(format!("{what}: {st} {}", String::from_utf8_lossy(&resp).trim()));
                host.untouched(&what);
                if let (Some(b), Ok(m)) = (shadow_before, std::fs::metadata(shadow)) {
                    assert_eq!((m.nlink(), m.mtime(), m.ino()), b, "{what}: /etc/shadow linked or changed");
                }
                assert_eq!(std::fs::read(shadow).ok(), shadow_bytes, "{what}");
            }
        }
    }
    eprintln!("a4_40:\n{}", statuses.join("\n"));
    // what landed, landed inside the container
    let o = d.berth(&["exec", "running", "sh", "-c", "find / -xdev -name 'escape*' -o -xdev -name shadow -o -xdev -name shadow2"]).ok();
    eprintln!("a4_40: inside the running container: {}", o.stdout);
    for n in 1..=5 {
        assert!(o.stdout.contains(&format!("/x/{hd}/escape{n}\n")), "escape{n} was not clamped into the extraction directory: {}", o.stdout);
    }
    for leftover in ["escape1", "escape2", "escape3", "escape4", "escape5", "shadow", "shadow2", "h", "s", "lnk", "rel", "root"] {
        assert!(std::fs::symlink_metadata(d.dir.join(leftover)).is_err(), "{leftover} on the host");
    }
    d.berth(&["version"]).ok();
    d.berth(&["rm", "-f", "running", "stopped"]).ok();
}

/// A5 #45 (BuildKit CVE-2024-23652): `RUN --mount` steps (cache, tmpfs, bind of a directory
/// and of a file) whose command replaces a parent of the mount target with a symlink to a
/// host directory holding an empty `b/c` (what a stub cleanup following the symlink would
/// delete), or to a directory of its own: the host directory is untouched, and only
/// berth's own stubs are removed (the step's own empty `/own/b/c` stays).
#[test]
fn a5_45_mount_stub_cleanup_never_follows_a_replaced_parent() {
    let d = Daemon::start("hard-a545");
    let host = d.dir.join("host-mnt");
    std::fs::create_dir_all(host.join("b/c")).unwrap();
    std::fs::write(host.join("b/f"), b"").unwrap();
    std::fs::write(host.join("keep"), b"host").unwrap();
    let snapshot = |p: &Path| -> Vec<(String, u32, i64)> {
        let mut v = Vec::new();
        for rel in ["", "b", "b/c", "b/f", "keep"] {
            let m = std::fs::symlink_metadata(p.join(rel)).unwrap_or_else(|_| panic!("host {rel} is gone"));
            v.push((rel.to_string(), m.mode(), m.mtime()));
        }
        v
    };
    let before = snapshot(&host);
    let h = host.display().to_string();
    let up = "../".repeat(10);
    // an image whose /q is already a symlink to the host directory
    image_with(&d, "a545-base:latest", &[], |s| std::os::unix::fs::symlink(&host, s.join("q")).unwrap());
    let ctx = d.dir.join("ctx");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("src/v"), "v").unwrap();
    std::fs::write(ctx.join("file"), "").unwrap();
    let df = [
        "FROM a545-base:latest".to_string(),
        format!("RUN --mount=type=cache,target=/a/b/c mv /a /a.old && ln -s {h} /a"),
        format!("RUN --mount=type=tmpfs,target=/t/b/c mv /t /t.old && ln -s {h} /t"),
        format!("RUN --mount=type=bind,source=src,target=/m/b/c mv /m /m.old && ln -s {up}{h} /m"),
        format!("RUN --mount=type=bind,source=file,target=/n/b/f mv /n /n.old && ln -s {h} /n"),
        "RUN --mount=type=cache,target=/p/b/c mkdir -p /own/b/c && : > /own/b/f && mv /p /p.old && ln -s /own /p".to_string(),
        "RUN --mount=type=bind,source=file,target=/r/b/f mkdir -p /own2/b && : > /own2/b/f && mv /r /r.old && ln -s /own2 /r".to_string(),
        "RUN --mount=type=cache,target=/q/b/c true".to_string(),
        "RUN --mount=type=tmpfs,target=/s/b/c mv /s /s.old && ln -s / /s".to_string(),
    ]
    .join("\n");
    std::fs::write(ctx.join("Dockerfile"), format!("{df}\n")).unwrap();
    let o = d.berth(&["build", "-t", "a545:latest", ctx.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    assert_eq!(snapshot(&host), before, "the host directory changed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&h), "a mount landed on the host directory");
    let o = d
        .berth(&["run", "--rm", "a545:latest", "sh", "-c", "for p in /a /t /m /n /p /r /s; do readlink $p; done; ls -d /own/b/c /own/b/f /own2/b/f"])
        .ok();
    assert!(o.stdout.contains("/own/b/c\n") && o.stdout.contains("/own/b/f\n") && o.stdout.contains("/own2/b/f\n"), "the step's own files were removed: {}", o.stdout);
    assert_eq!(o.stdout.lines().filter(|l| l.contains(h.trim_start_matches('/'))).count(), 4, "{}", o.stdout);
}

// ---------------------------------------------------------------------------------------
// Follow-ups: /dev bind mounts, cp of a running container's /, exec -w errors, build stubs.

/// Every entry under `dir` (recursive, no following of symlinks) with its type, mode and
/// link target or content.
fn tree(dir: &Path) -> Vec<(String, u32, String)> {
    let mut v = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let mut names: Vec<_> = std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()).collect();
        names.sort();
        for e in names {
            let m = std::fs::symlink_metadata(&e).unwrap();
            let what = if m.file_type().is_symlink() {
                std::fs::read_link(&e).unwrap().display().to_string()
            } else if m.is_file() {
                String::from_utf8_lossy(&std::fs::read(&e).unwrap()).into_owned()
            } else {
                String::new()
            };
            if m.is_dir() {
                todo.push(e.clone());
            }
            v.push((e.strip_prefix(dir).unwrap().display().to_string(), m.mode(), what));
        }
    }
    v
}

/// `-v hostdir:/dev`: like runc (no /dev setup when /dev is a bind mount), no device nodes,
/// /dev symlinks or ptmx link are created in the host directory, and the container runs;
/// masked /proc files are still masked (with the host's null device). A plain container
/// still gets its devices.
#[test]
fn dev_bind_mount_leaves_the_host_directory_alone() {
    let d = Daemon::start("hard-devbind");
    let vol = d.dir.join("dev-dir");
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("keep"), b"host").unwrap();
    std::fs::write(vol.join("sub/f"), b"f").unwrap();
    let before = tree(&vol);
    let mtime = std::fs::metadata(&vol).unwrap().mtime();
    let masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    let script = format!("ls -a /dev | tr '\\n' ' '; echo; cat /dev/keep; echo; stat -c '%F %t:%T' {masked}; echo ran");
    for tty in [false, true] {
        let v = format!("{}:/dev", vol.display());
        let mut args = vec!["run", "--rm", "-v", &v];
        if tty {
            args.push("-t");
        }
        args.extend(["busybox", "sh", "-c", &script]);
        let o = d.berth(&args);
        let what = format!("tty={tty}");
        if tty {
            // (like runc: the pty comes from the container's /dev/ptmx, which this one lacks)
            assert!(o.code == 0 || !o.stderr.trim().is_empty(), "{what}: failed without an error");
        } else {
            assert_eq!(o.code, 0, "{what}: {} {}", o.stdout, o.stderr);
            assert!(o.stdout.contains(". .. keep sub \n"), "{what}: the container's /dev is not the host directory alone: {}", o.stdout);
            assert!(o.stdout.contains("host\n") && o.stdout.contains("character special file 1:3\n") && o.stdout.contains("ran\n"), "{what}: {}", o.stdout);
        }
        let _ = std::fs::remove_file(vol.join("console"));
        assert_eq!(tree(&vol), before, "{what}: the host directory changed");
        if !tty {
            assert_eq!(std::fs::metadata(&vol).unwrap().mtime(), mtime, "{what}");
        }
    }
    // the host's own /dev, as people do it
    let o = d.berth(&["run", "--rm", "-v", "/dev:/dev", "busybox", "sh", "-c", "echo x > /dev/null && ls /dev/null /dev/tty && echo ran"]).ok();
    assert!(o.stdout.contains("ran"), "{}", o.stdout);
    // a plain container still has its devices, links and mounts
    let o = d
        .berth(&["run", "--rm", "busybox", "sh", "-c", "ls -l /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/ptmx /dev/fd /dev/stdin && mount | grep -c -E ' /dev/(pts|shm|mqueue) '"])
        .ok();
    assert!(o.stdout.contains("/dev/ptmx -> pts/ptmx") && o.stdout.contains("/dev/fd -> /proc/self/fd") && o.stdout.trim_end().ends_with('3'), "{}", o.stdout);
}

/// `cp RUNNING:/ -`: like Docker (which archives the container's rootfs and volumes, not its
/// view), /proc, /sys and the default /dev tmpfs appear as empty directories; their contents
/// (sysfs files read as root, every process) are not walked. A volume is still included.
#[test]
fn cp_of_a_running_containers_root_skips_proc_sys_dev() {
    let d = Daemon::start("hard-cproot");
    let vol = d.dir.join("cp-vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("in-volume"), b"v").unwrap();
    let v = format!("{}:/data", vol.display());
    let c = d.berth(&["run", "-d", "-v", &v, "busybox", "sleep", "300"]).ok().stdout.trim().to_string();
    let _rm = CtrGuard(&d, c.clone());
    let tarf = d.dir.join("root.tar");
    let st = d.cmd(&["cp", &format!("{c}:/"), "-"]).stdout(std::fs::File::create(&tarf).unwrap()).status().unwrap();
    assert!(st.success());
    let list = Command::new("tar").arg("-tf").arg(&tarf).output().unwrap();
    assert!(list.status.success());
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    let names: Vec<&str> = names.lines().collect();
    for dir in ["proc/", "sys/", "dev/"] {
        assert!(names.contains(&dir), "{dir} missing: {names:?}");
        let inside: Vec<_> = names.iter().filter(|n| n.starts_with(dir) && n.len() > dir.len()).collect();
        assert!(inside.is_empty(), "{dir} was walked: {:?}", &inside[..inside.len().min(10)]);
    }
    assert!(names.contains(&"data/in-volume") && names.contains(&"bin/sh"), "{names:?}");
    // below them there is nothing to copy, as in Docker's rootfs
    let o = d.berth(&["cp", &format!("{c}:/proc/self/status"), "-"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Could not find the file /proc/self/status"), "{}", o.stderr);
    // a copy of /proc itself is the empty directory
    let o = d.cmd(&["cp", &format!("{c}:/proc"), "-"]).output().unwrap();
    assert!(o.status.success());
    let mut t = Command::new("tar").arg("-t").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    t.stdin.take().unwrap().write_all(&o.stdout).unwrap();
    assert_eq!(String::from_utf8_lossy(&t.wait_with_output().unwrap().stdout), "proc/\n");
}

struct CtrGuard<'a>(&'a Daemon, String);

impl Drop for CtrGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.berth(&["rm", "-f", &self.1]);
    }
}

/// `exec -w` with a missing or non-directory working dir: exit 126 with runc's chdir message
/// (not "failed to unix syscall"); `run -w` creates a missing directory and refuses a file
/// with dockerd's message. (Wording checked against dockerd 20.10.24 + runc.)
#[test]
fn exec_and_run_workdir_errors_carry_the_cause() {
    let d = Daemon::start("hard-workdir");
    let c = d.berth(&["run", "-d", "busybox", "sleep", "300"]).ok().stdout.trim().to_string();
    let _rm = CtrGuard(&d, c.clone());
    for (w, why) in [("/nonexistent", "no such file or directory"), ("/etc/passwd", "not a directory")] {
        let o = d.berth(&["exec", "-w", w, &c, "true"]);
        assert_eq!(o.code, 126, "{w}: {} {}", o.stdout, o.stderr);
        let want = format!(
            "OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd (\"{w}\") set in config.json failed: {why}: unknown"
        );
        // (in the exec's stream, as dockerd sends it)
        assert!(o.stdout.contains(&want) || o.stderr.contains(&want), "{w}: {} {}", o.stdout, o.stderr);
        if why == "not a directory" {
            let hint = "unknown: Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host path exists and is the expected type";
            assert!(o.stdout.contains(hint) || o.stderr.contains(hint), "{w}: {} {}", o.stdout, o.stderr);
        }
    }
    let o = d.berth(&["exec", "-w", "/tmp", &c, "pwd"]).ok();
    assert_eq!(o.stdout.trim(), "/tmp");
    let o = d.berth(&["run", "--rm", "-w", "/new/work/dir", "busybox", "pwd"]).ok();
    assert_eq!(o.stdout.trim(), "/new/work/dir");
    let o = d.berth(&["run", "--rm", "-w", "/etc/passwd", "busybox", "pwd"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Cannot mkdir: /etc/passwd is not a directory"), "{}", o.stderr);
    let o = d.berth(&["run", "--rm", "-w", "/etc/passwd/sub", "busybox", "pwd"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("mkdir /etc/passwd/sub: not a directory"), "{}", o.stderr);
}

/// `RUN --mount` whose target's parent is already a symlink in the image: the runtime makes
/// the mount point where the link leads (inside the root); the builder removes that stub
/// too, so the image has no empty directory or file left from the mount.
#[test]
fn build_mount_stub_behind_an_image_symlink_is_removed() {
    let d = Daemon::start("hard-stublink");
    image_with(&d, "stublink-base:latest", &[], |s| {
        std::fs::create_dir_all(s.join("own")).unwrap();
        std::fs::write(s.join("own/keep"), "k").unwrap();
        std::os::unix::fs::symlink("/own", s.join("q")).unwrap();
        std::os::unix::fs::symlink("../../own", s.join("r")).unwrap();
    });
    let ctx = d.dir.join("ctx");
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("file"), "").unwrap();
    let df = [
        "FROM stublink-base:latest",
        "RUN --mount=type=cache,target=/q/cache test -d /own/cache",
        "RUN --mount=type=tmpfs,target=/r/tmp test -d /own/tmp",
        "RUN --mount=type=bind,source=file,target=/q/f test -f /own/f",
        "RUN --mount=type=bind,source=src,target=/q/../q/src test -d /own/src",
    ];
    std::fs::write(ctx.join("Dockerfile"), format!("{}\n", df.join("\n"))).unwrap();
    let o = d.berth(&["build", "-t", "stublink:latest", ctx.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{} {}", o.stdout, o.stderr);
    let o = d.berth(&["run", "--rm", "stublink:latest", "sh", "-c", "ls -A /own; readlink /q; readlink /r"]).ok();
    assert_eq!(o.stdout, "keep\n/own\n../../own\n", "mount stubs left in the image");
}
