//! Store consistency checks shared by the crash tests (`hardening_crash.rs`: SIGKILL at fault
//! points; `hardening_powerloss.rs`: power cuts simulated by `berth-crashfs`).

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_engine::Engine;

/// Everything that must hold after a restart, whatever moment the previous process died at.
pub fn check(eng: &Engine, data: &Path, run: &Path) -> Vec<String> {
    use berth_engine::image::layer_key;
    let mut bad = Vec::new();
    // no visible partial blob: every blob hashes to its name; no ingest leftovers
    for d in eng.content.list().unwrap_or_default() {
        let mut f = match eng.content.open_blob(&d) {
            Ok(f) => f,
            Err(e) => {
                bad.push(format!("blob {d}: {e}"));
                continue;
            }
        };
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read blob");
        if berth_engine::digest::Digest::of(&v) != d {
            bad.push(format!("blob {d} does not match its digest"));
        }
    }
    if let Ok(rd) = std::fs::read_dir(data.join("content/ingest")) {
        for e in rd.flatten() {
            bad.push(format!("content ingest leftover {}", e.path().display()));
        }
    }
    let snaps: std::collections::HashMap<String, _> = eng.snapshots.list().expect("snapshots").into_iter().collect();
    let images = eng.list_images().expect("images");
    let ids: HashSet<String> = images.iter().map(|i| i.id.to_string()).collect();
    for img in &images {
        for (what, d) in [("config", &img.id), ("manifest", &img.manifest)] {
            if !eng.content.exists(d) {
                bad.push(format!("image {}: {what} blob {d} missing", img.id));
            }
        }
        for l in &img.layers {
            if !snaps.contains_key(&layer_key(&l.chain_id)) {
                bad.push(format!("image {}: layer {} has no snapshot", img.id, l.chain_id));
            }
            if !eng.content.exists(&l.blob) {
                bad.push(format!("image {}: layer blob {} missing", img.id, l.blob));
            }
        }
    }
    for (tag, ids_of) in eng.tags_by_image().expect("tags") {
        if !ids.contains(&tag) {
            bad.push(format!("tags {ids_of:?} point at missing image {tag}"));
        }
    }
    // snapshots: directories and records agree, nothing temporary left
    let recorded: HashSet<String> = snaps.values().map(|r| r.id.to_string()).collect();
    for e in std::fs::read_dir(data.join("snapshots")).expect("snapshots dir").flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n != "empty" && !recorded.contains(&n) {
            bad.push(format!("snapshot directory {n} has no record"));
        }
    }
    for (k, r) in &snaps {
        if !eng.snapshots.dir(r).is_dir() {
            bad.push(format!("snapshot {k} has no directory"));
        }
        if k.starts_with("build:") {
            bad.push(format!("build work snapshot {k} left"));
        }
    }
    let containers = eng.all_containers();
    let cids: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    for c in &containers {
        for k in [c.snapshot.clone(), format!("init:{}", c.id)] {
            if !snaps.contains_key(&k) {
                bad.push(format!("container {} ({}): snapshot {k} missing", c.id, c.name));
            }
        }
    }
    for k in snaps.keys() {
        if let Some(id) = k.strip_prefix("ctr:").or_else(|| k.strip_prefix("init:")) {
            if !cids.contains(id) {
                bad.push(format!("snapshot {k} of no container"));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(data.join("containers")) {
        for e in rd.flatten() {
            if !cids.contains(e.file_name().to_string_lossy().as_ref()) {
                bad.push(format!("container directory {} of no container", e.path().display()));
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(data.join("build-tmp")) {
        for e in rd.flatten() {
            bad.push(format!("build leftover {}", e.path().display()));
        }
    }
    if let Ok(rd) = std::fs::read_dir(run.join("netns")) {
        for e in rd.flatten() {
            bad.push(format!("network namespace {} left", e.path().display()));
        }
    }
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", data.display());
    for mp in m.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&prefix)) {
        bad.push(format!("mount left at {mp}"));
    }
    // nothing leaked that GC cannot give back: after a GC every layer snapshot and blob is
    // referenced by an image
    eng.gc_images().expect("gc");
    let mut used_snaps = HashSet::new();
    let mut used_blobs = HashSet::new();
    for img in eng.list_images().expect("images") {
        used_blobs.insert(img.id.clone());
        used_blobs.insert(img.manifest.clone());
        for l in &img.layers {
            used_snaps.insert(layer_key(&l.chain_id));
            used_blobs.insert(l.blob.clone());
        }
    }
    for (k, r) in eng.snapshots.list().expect("snapshots") {
        if !r.active && !k.starts_with("init:") && !used_snaps.contains(&k) {
            bad.push(format!("layer snapshot {k} survives GC unreferenced"));
        }
    }
    for d in eng.content.list().unwrap_or_default() {
        if !used_blobs.contains(&d) {
            bad.push(format!("blob {d} survives GC unreferenced"));
        }
    }
    bad
}


// ---------------------------------------------------------------------------------------------
// harness pieces shared by both crash tests

pub fn bridge_of(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    format!("bh{:08x}", h.finish() as u32)
}

/// A private tmpfs data root, unmounted and removed on drop, with the network pieces the helper
/// engines made.
pub struct Root {
    pub dir: PathBuf,
    pub name: String,
}

impl Root {
    pub fn new(prefix: &str, op: &str, size: &str) -> Root {
        let name = format!("{prefix}-{op}-{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/berth-t-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        nix::mount::mount(Some("tmpfs"), &dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(format!("size={size},mode=0700").as_str())).expect("mount tmpfs");
        Root { dir, name }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        crate::common::unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("nft").args(["delete", "table", "ip", &format!("berth-t-{}", self.name)]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &bridge_of(&self.name)]).stderr(Stdio::null()).status();
        for ctrl in ["", "pids/", "memory/", "cpu/"] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{ctrl}berth-test-{}", self.name));
        }
    }
}

/// berth's registry server in this process, for the pull operation.
pub fn registry(dir: &Path) -> String {
    let reg = berth_registry::Registry::open(dir.join("registry")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
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

/// A rootfs tar with `files` (name, bytes), made with the system's tar.
pub fn make_tar(dir: &Path, out: &Path, files: &[(&str, Vec<u8>)]) {
    let src = dir.join(format!("src-{}", out.file_name().unwrap().to_string_lossy()));
    for (n, b) in files {
        let p = src.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    }
    let st = Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(out).arg(".").status().unwrap();
    assert!(st.success());
    std::fs::remove_dir_all(&src).unwrap();
}

pub fn noise(n: usize, seed: u64) -> Vec<u8> {
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

