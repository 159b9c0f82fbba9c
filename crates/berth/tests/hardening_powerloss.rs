//! HARDENING B5 (power loss: writes not fsynced are lost). The engine's data root lives on
//! `berth-crashfs`, a FUSE filesystem that keeps for every inode what it shows now and what a
//! disk would hold after a power cut (file data durable on fsync/fdatasync of the file,
//! directory entries on fsync of the directory; see the crate's documentation). An operation
//! runs once on it while the filesystem records the durable state after every durability event
//! (every fsync, fsyncdir, and the `syncfs` of a layer unpack, which the kernel does not forward
//! to FUSE: the fault point that follows it, written to the fault trace on the same
//! filesystem, stands for it). Each recorded state is one possible power cut: it is written
//! out to a plain directory, the engine opens it with an empty exec root (startup recovery, as
//! after a reboot), the store must be consistent (the checks of the SIGKILL tests plus: every
//! layer snapshot holds exactly what its blob unpacks to, every volume record has its
//! directory), the operation is retried and must succeed, and the store is checked again.
//!
//! Overlay cannot use FUSE as an upper directory, so nothing here starts a container.

mod common;
mod crash_check;
use crash_check::{bridge_of, make_tar, noise, registry, Root};

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_crashfs::CrashFs;
use berth_engine::{Engine, EngineConfig};

const ENV_MODE: &str = "BERTH_POWERLOSS_MODE";
const ENV_OP: &str = "BERTH_POWERLOSS_OP";
const ENV_DATA: &str = "BERTH_POWERLOSS_DATA";
const ENV_RUN: &str = "BERTH_POWERLOSS_RUN";
const ENV_DIR: &str = "BERTH_POWERLOSS_DIR";
const ENV_NAME: &str = "BERTH_POWERLOSS_NAME";
const ENV_REGISTRY: &str = "BERTH_POWERLOSS_REGISTRY";
const ENV_DONE: &str = "BERTH_POWERLOSS_DONE";
/// Written to the trace by the helper when the operation has returned.
const DONE: &str = "powerloss.operation.returned";

/// The control file of the crash filesystem: the engine's fault trace goes there.
const CONTROL: &str = ".trace";
/// Fault points that directly follow a `syncfs` (`Snapshotter::write_layer`).
const SYNCFS_MARKERS: &[&str] = &["snapshot.layer.filled"];

// ---------------------------------------------------------------------------------------------
// helper side (child process)


fn engine(data: &Path, run: &Path, name: &str) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data.to_path_buf(), run.to_path_buf(), PathBuf::from(common::BERTH));
    cfg.bridge_name = bridge_of(name);
    cfg.nft_table = format!("berth-t-{name}");
    cfg.cgroup_parent = format!("berth-test-{name}");
    Engine::open(cfg).expect("engine opens after a power cut")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn pull_ref() -> String {
    format!("{}/powerloss/pulled:latest", std::env::var(ENV_REGISTRY).expect("registry address"))
}

fn rmi(eng: &Engine, name: &str) -> Result<(), String> {
    if eng.resolve_image(name).is_ok() {
        eng.remove_image(name, true, &|d| eng.container_using_image(d)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The operation, written so that running it again after any power cut completes it.
fn run_op(eng: &Arc<Engine>, dir: &Path, op: &str) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    match op {
        "fresh" => {
            let f = std::fs::File::open(dir.join("other.tar")).map_err(|x| e(&x))?;
            eng.import_image(f, &[], None, Some("crash/fresh:latest")).map_err(|x| e(&x))?;
        }
        "import" => {
            let f = std::fs::File::open(dir.join("import.tar")).map_err(|x| e(&x))?;
            eng.import_image(f, &[], None, Some("crash/import:latest")).map_err(|x| e(&x))?;
        }
        "pull" => {
            let opts = berth_engine::distribution::PullOptions::default();
            rt().block_on(berth_engine::distribution::pull::pull(eng.clone(), &pull_ref(), &opts, berth_engine::distribution::no_progress()))
                .map_err(|x| e(&x))?;
        }
        "tag" => {
            let b = eng.resolve_image("crash/other:latest").map_err(|x| e(&x))?.id;
            eng.tag_image(&b, "crash/moving:latest").map_err(|x| e(&x))?;
        }
        "rmi" => {
            rmi(eng, "crash/other:latest")?;
            eng.gc_images().map_err(|x| e(&x))?;
        }
        "volume" => {
            eng.remove_volume("plold", true).map_err(|x| e(&x))?;
            eng.create_volume(Some("plnew"), None, Default::default(), Default::default()).map_err(|x| e(&x))?;
        }
        "container" => {
            // a container made before the cut is the one to remove
            if let Ok(c) = eng.get_container("plc") {
                let id = c.lock().map_err(|_| "lock".to_string())?.id.clone();
                eng.remove_container(&id, true, true).map_err(|x| e(&x))?;
            }
            let body = bollard::models::ContainerCreateBody {
                image: Some("crash/base:latest".into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            };
            let (id, _) = eng.create_container(Some("plc"), body.clone()).map_err(|x| e(&x))?;
            eng.remove_container(&id, true, true).map_err(|x| e(&x))?;
            // and one that stays
            if eng.get_container("plkeep").is_err() {
                let body = bollard::models::ContainerCreateBody {
                    host_config: Some(bollard::models::HostConfig { network_mode: Some("none".into()), ..Default::default() }),
                    ..body
                };
                eng.create_container(Some("plkeep"), body).map_err(|x| e(&x))?;
            }
        }
        other => return Err(format!("unknown op {other}")),
    }
    Ok(())
}

/// What the operation's retry must have left.
fn check_done(eng: &Engine, op: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut want = |ok: bool, what: &str| {
        if !ok {
            bad.push(format!("after the retry: {what}"));
        }
    };
    match op {
        "fresh" => want(eng.resolve_image("crash/fresh:latest").is_ok(), "crash/fresh missing"),
        "import" => want(eng.resolve_image("crash/import:latest").is_ok(), "crash/import missing"),
        "pull" => want(eng.resolve_image(&pull_ref()).is_ok(), "pulled image missing"),
        "tag" => want(
            eng.resolve_image("crash/moving:latest").map(|i| i.id).ok() == eng.resolve_image("crash/other:latest").map(|i| i.id).ok(),
            "crash/moving does not name crash/other",
        ),
        "rmi" => want(eng.resolve_image("crash/other:latest").is_err(), "crash/other still there"),
        "volume" => {
            want(eng.get_volume("plold").is_err(), "volume plold still there");
            want(eng.get_volume("plnew").is_ok(), "volume plnew missing");
        }
        "container" => {
            want(eng.get_container("plc").is_err(), "container plc still there");
            want(eng.get_container("plkeep").is_ok(), "container plkeep missing");
        }
        _ => {}
    }
    bad
}

/// A canonical listing of a tree: type, mode, owner, size and content digest, link target,
/// device number and xattrs of every entry.
fn listing(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).expect("read dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link {}", std::fs::read_link(&p).expect("readlink").display())
            } else if ft.is_file() {
                let mut h = sha2::Sha256::new();
                std::io::copy(&mut std::fs::File::open(&p).expect("open"), &mut h).expect("read");
                format!("file {} {}", md.len(), hex::encode(h.finalize()))
            } else {
                format!("special {:o} {}", md.mode() & libc::S_IFMT, md.rdev())
            };
            let rel = p.strip_prefix(root).expect("under root").display().to_string();
            let mode = if ft.is_symlink() { 0 } else { md.mode() & 0o7777 };
            out.insert(rel, format!("{what} mode {mode:o} owner {}:{} xattrs {:?}", md.uid(), md.gid(), xattrs(&p)));
        }
    }
    out
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path");
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length and `c` is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let cn = std::ffi::CString::new(name).expect("xattr name");
        let mut v = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        v.truncate(m.max(0) as usize);
        out.push((String::from_utf8_lossy(name).to_string(), v));
    }
    out
}

/// Checks a power cut adds to the SIGKILL ones: file contents can now be lost, and directories
/// that were never synced can vanish under a record.
fn check_powerloss(eng: &Engine, scratch: &Path) -> Vec<String> {
    use berth_engine::image::layer_key;
    let mut bad = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for img in eng.list_images().unwrap_or_default() {
        for l in &img.layers {
            if !seen.insert(l.chain_id.clone()) {
                continue;
            }
            let Ok(Some(rec)) = eng.snapshots.get(&layer_key(&l.chain_id)) else { continue };
            let Ok(blob) = eng.content.open_blob(&l.blob) else { continue };
            let have = eng.snapshots.dir(&rec).join("fs");
            if !have.is_dir() {
                bad.push(format!("layer {} (image {}): no directory {}", l.chain_id, img.id, have.display()));
                continue;
            }
            let want = scratch.join("unpack");
            let _ = std::fs::remove_dir_all(&want);
            std::fs::create_dir_all(&want).expect("scratch");
            let rd = berth_archive::decompress(std::io::BufReader::new(blob), berth_engine::image::MAX_LAYER_BYTES).expect("decompress");
            let opts = berth_archive::ApplyOptions { whiteouts: berth_archive::WhiteoutMode::Overlay, ..Default::default() };
            berth_archive::apply_layer(&want, rd, &opts).expect("unpack the blob again");
            let (a, b) = (listing(&have), listing(&want));
            if a != b {
                let diff: Vec<String> = b
                    .iter()
                    .filter(|(k, v)| a.get(*k) != Some(*v))
                    .map(|(k, v)| format!("{k}: want {v}, have {:?}", a.get(k)))
                    .chain(a.keys().filter(|k| !b.contains_key(*k)).map(|k| format!("{k}: extra")))
                    .take(5)
                    .collect();
                bad.push(format!("layer {} (image {}): snapshot differs from its blob: {diff:?}", l.chain_id, img.id));
            }
        }
    }
    for v in eng.list_volumes().unwrap_or_default() {
        if !eng.volume_mountpoint(&v.name).is_dir() {
            bad.push(format!("volume {}: no directory {}", v.name, eng.volume_mountpoint(&v.name).display()));
        }
    }
    bad
}

fn fail(stage: &str, bad: &[String]) -> ! {
    eprintln!("INCONSISTENT {stage}:\n  {}", bad.join("\n  "));
    std::process::exit(2);
}

#[test]
#[ignore = "helper engine process, run in a child by the power-loss tests"]
fn powerloss_helper() {
    let Ok(mode) = std::env::var(ENV_MODE) else { return };
    let op = std::env::var(ENV_OP).expect("op");
    let data = PathBuf::from(std::env::var(ENV_DATA).expect("data"));
    let run = PathBuf::from(std::env::var(ENV_RUN).expect("run"));
    let dir = PathBuf::from(std::env::var(ENV_DIR).expect("dir"));
    let eng = engine(&data, &run, &std::env::var(ENV_NAME).expect("name"));
    match mode.as_str() {
        "setup" => setup(&eng, &dir),
        "run" => {
            if let Err(e) = run_op(&eng, &dir, &op) {
                eprintln!("OPERATION FAILED: {e}");
                std::process::exit(5);
            }
            // the operation returned: from here on a power cut must keep its result
            let trace = std::env::var_os("BERTH_FAULTS_TRACE").expect("trace file");
            let mut f = std::fs::OpenOptions::new().append(true).open(trace).expect("trace file");
            std::io::Write::write_all(&mut f, format!("{DONE}\n").as_bytes()).expect("write trace");
        }
        "check" => {
            let scratch = dir.join("scratch");
            let mut bad = crash_check::check(&eng, &data, &run);
            if std::env::var_os(ENV_DONE).is_some() {
                // cut after the operation returned: what it did must still be there
                bad.extend(check_done(&eng, &op).into_iter().map(|b| b.replace("after the retry", "after the operation returned")));
            }
            // A container's init layer holds only mount points and is written without a flush
            // (container create stays fast): a power cut may take it away, and every start
            // makes what is missing again (`write_init_layer`); the start below proves it.
            bad.retain(|b| !(b.starts_with("snapshot init:") && b.ends_with("has no directory")));
            bad.extend(check_powerloss(&eng, &scratch));
            if !bad.is_empty() {
                fail("after the power cut", &bad);
            }
            if let Err(e) = run_op(&eng, &dir, &op) {
                eprintln!("RETRY FAILED: {e}");
                std::process::exit(4);
            }
            if op == "container" {
                start_kept(&eng);
            }
            let mut bad = crash_check::check(&eng, &data, &run);
            bad.extend(check_powerloss(&eng, &scratch));
            bad.extend(check_done(&eng, &op));
            if !bad.is_empty() {
                fail("after the retry", &bad);
            }
        }
        other => panic!("unknown mode {other}"),
    }
    std::process::exit(0);
}

/// The container kept by the container operation runs (its init and writable layers, lost
/// or not, are whole again) and exits 0.
fn start_kept(eng: &Arc<Engine>) {
    if let Err(e) = eng.start_container("plkeep") {
        eprintln!("START FAILED: {e}");
        std::process::exit(6);
    }
    let id = eng.get_container("plkeep").expect("plkeep").lock().expect("lock").id.clone();
    rt().block_on(eng.wait_not_running(&id, Some(std::time::Duration::from_secs(60))));
    let st = eng.get_container("plkeep").expect("plkeep").lock().expect("lock").state.clone();
    if st.running || st.exit_code != 0 {
        eprintln!("CONTAINER DID NOT RUN: {st:?}");
        std::process::exit(6);
    }
}

fn setup(eng: &Arc<Engine>, dir: &Path) {
    let bb = std::fs::File::open(common::busybox_tar()).expect("busybox tar");
    eng.import_image(bb, &["CMD [\"sh\"]".to_string()], None, Some("crash/base:latest")).expect("import base");
    let other = std::fs::File::open(dir.join("other.tar")).expect("other tar");
    eng.import_image(other, &[], None, Some("crash/other:latest")).expect("import other");
    let base = eng.resolve_image("crash/base:latest").expect("base").id;
    eng.tag_image(&base, "crash/moving:latest").expect("tag");
    eng.create_volume(Some("plold"), None, Default::default(), Default::default()).expect("volume");
    std::fs::write(eng.volume_mountpoint("plold").join("data"), b"volume data").expect("volume data");
    if let Ok(reg) = std::env::var(ENV_REGISTRY) {
        let f = std::fs::File::open(dir.join("pull.tar")).expect("pull tar");
        let r = format!("{reg}/powerloss/pulled:latest");
        eng.import_image(f, &[], None, Some(&r)).expect("import pull image");
        rt().block_on(berth_engine::distribution::push::push(eng.clone(), &r, None, &Default::default(), berth_engine::distribution::no_progress()))
            .expect("push");
        rmi(eng, &r).expect("rmi");
        eng.gc_images().expect("gc");
    }
}

// ---------------------------------------------------------------------------------------------
// test side (parent)







struct Helper<'a> {
    root: &'a Root,
    reg: Option<&'a str>,
    op: &'a str,
}

impl Helper<'_> {
    /// Runs the helper in `mode` on `data`/`run`; returns its exit code and stderr.
    fn run(&self, mode: &str, data: &Path, run: &Path, trace: Option<&Path>, done: bool) -> (Option<i32>, String) {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["powerloss_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env(ENV_MODE, mode)
            .env(ENV_OP, self.op)
            .env(ENV_DATA, data)
            .env(ENV_RUN, run)
            .env(ENV_DIR, &self.root.dir)
            .env(ENV_NAME, &self.root.name)
            .env_remove("BERTH_FAULTS")
            .env_remove("BERTH_FAULTS_TRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(r) = self.reg {
            c.env(ENV_REGISTRY, r);
        }
        if let Some(t) = trace {
            c.env("BERTH_FAULTS_TRACE", t);
        }
        if done {
            c.env(ENV_DONE, "1");
        }
        let mut child = c.spawn().expect("spawn helper");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let st = child.wait().unwrap();
        (st.code(), err)
    }
}

fn power_cut_everywhere(op: &str) {
    let root = Root::new("pl", op, "1g");
    let reg = (op == "pull").then(|| registry(&root.dir));
    make_tar(&root.dir, &root.dir.join("import.tar"), &[("etc/imported", b"x".to_vec()), ("data/noise", noise(1 << 20, 3))]);
    make_tar(&root.dir, &root.dir.join("other.tar"), &[("other", b"other".to_vec()), ("etc/other.conf", b"conf".to_vec())]);
    make_tar(&root.dir, &root.dir.join("pull.tar"), &[("pulled/a", noise(1 << 20, 5)), ("pulled/b", noise(200 << 10, 6))]);
    let mnt = root.dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // dropped before `root`, whose drop then finds nothing mounted
    let cfs = CrashFs::mount(&mnt).expect("mount the crash filesystem (needs root and /dev/fuse)");
    // BERTH_POWERLOSS_NO_SYNCFS=1 shows what berth would lose if its `syncfs` did nothing
    let no_syncfs = std::env::var_os("BERTH_POWERLOSS_NO_SYNCFS").is_some();
    cfs.set_control(CONTROL, if no_syncfs { &[] } else { SYNCFS_MARKERS });
    let h = Helper { root: &root, reg: reg.as_deref(), op };
    let data = mnt.join("data");
    let live_run = root.dir.join("run-live");
    let trace = mnt.join(CONTROL);
    if op == "fresh" {
        // the data root directory exists (as /var/lib/berth does); the engine makes the rest
        std::fs::create_dir(&data).unwrap();
    } else {
        let (code, err) = h.run("setup", &data, &live_run, Some(&trace), false);
        assert_eq!(code, Some(0), "setup failed:\n{err}");
    }
    // the base state is on disk; the power cuts come during the operation only
    cfs.sync_all();
    let t0 = std::time::Instant::now();
    cfs.start_capture();
    let (code, err) = h.run("run", &data, &live_run, Some(&trace), false);
    let states = cfs.stop_capture();
    assert_eq!(code, Some(0), "{op} on the crash filesystem failed:\n{err}");
    let log = cfs.control_log();
    let done_at = log.iter().find(|(_, l)| l == DONE).map(|(e, _)| *e).expect("the operation's end in the trace");
    eprintln!("{op}: {} durable states ({} fault points passed), operation took {:?}", states.len(), log.len() - 1, t0.elapsed());
    if std::env::var_os("BERTH_POWERLOSS_VERBOSE").is_some() {
        for s in &states {
            eprintln!("  {}", s.label);
        }
    }

    let crash = root.dir.join("crash");
    let mut failures = Vec::new();
    for s in &states {
        let _ = std::fs::remove_dir_all(&crash);
        let (cdata, crun) = (crash.join("data"), crash.join("run"));
        let image = crash.join("image");
        std::fs::create_dir_all(&image).unwrap();
        std::fs::create_dir_all(&crun).unwrap();
        s.materialize(&image).expect("write the durable state out");
        // the mount's root holds `data` (and the trace); with no durable `data` at all (a
        // power cut before anything was synced) the engine starts afresh
        if image.join("data").exists() {
            std::fs::rename(image.join("data"), &cdata).unwrap();
        }
        let k: u64 = s.label.trim_start_matches('#').split(' ').next().and_then(|n| n.parse().ok()).expect("event number");
        let t = std::time::Instant::now();
        let (code, err) = h.run("check", &cdata, &crun, None, k >= done_at);
        if std::env::var_os("BERTH_POWERLOSS_VERBOSE").is_some() {
            eprintln!("  {}: checked in {:?}", s.label, t.elapsed());
        }
        if code != Some(0) {
            let last_point = log.iter().rev().find(|(e, _)| *e <= k).map(|(_, p)| p.as_str()).unwrap_or("-");
            failures.push(format!("power cut after {} (last fault point: {last_point}): exit {code:?}\n{}", s.label, tail(&err)));
        }
    }
    drop(cfs);
    assert!(failures.is_empty(), "{op}: {} of {} power cuts broke the store:\n{}", failures.len(), states.len(), failures.join("\n"));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

#[test]
fn b5_power_loss_on_a_fresh_data_root() {
    power_cut_everywhere("fresh");
}

#[test]
fn b5_power_loss_during_import() {
    power_cut_everywhere("import");
}

#[test]
fn b5_power_loss_during_pull() {
    power_cut_everywhere("pull");
}

#[test]
fn b5_power_loss_during_tag() {
    power_cut_everywhere("tag");
}

#[test]
fn b5_power_loss_during_rmi_and_gc() {
    power_cut_everywhere("rmi");
}

#[test]
fn b5_power_loss_during_volume_create_and_rm() {
    power_cut_everywhere("volume");
}

#[test]
fn b5_power_loss_during_container_create_and_rm() {
    power_cut_everywhere("container");
}
