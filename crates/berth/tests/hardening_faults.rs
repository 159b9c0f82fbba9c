//! HARDENING.md section B ("Faults to survive") against a real daemon: busy mounts during
//! `rm` (B16), misbehaving containers (B15), inode exhaustion and full disks (B6), a
//! simulated host reboot (B19), the daemon-restart matrix (B11), the daemon in a memory
//! cgroup (B14), SIGKILL loops over volume and compose operations (B18) and clock jumps
//! (B22). See `tests/hardening/README.md` for the whole table.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Mount points (field 5 of mountinfo) under `prefix`.
fn mounts_under(prefix: &Path) -> Vec<String> {
    let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = prefix.to_str().unwrap();
    m.lines().filter_map(|l| l.split(' ').nth(4)).filter(|mp| mp.starts_with(p)).map(String::from).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Poll `f` until it returns true or `secs` pass; returns its last answer.
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process that keeps a cwd and open fds somewhere; killed on drop.
struct Holder(Child);

impl Holder {
    fn new(cwd: &Path, files: &[&Path]) -> Holder {
        let mut script = String::new();
        for (i, f) in files.iter().enumerate() {
            script.push_str(&format!("exec {}<'{}'; ", i + 3, f.display()));
        }
        script.push_str("exec sleep 1000");
        let c = Command::new("sh").arg("-c").arg(&script).current_dir(cwd).stdin(Stdio::null()).spawn().unwrap();
        let h = Holder(c);
        // wait until sh has opened everything and exec'd sleep
        let pid = h.0.id();
        assert!(
            eventually(10, || std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim() == "sleep").unwrap_or(false)),
            "holder did not start"
        );
        h
    }
    fn cwd(&self) -> PathBuf {
        std::fs::read_link(format!("/proc/{}/cwd", self.0.id())).unwrap()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn container_id(d: &Daemon, name: &str) -> String {
    d.berth(&["inspect", "-f", "{{.Id}}", name]).ok().stdout.trim().to_string()
}

/// The container's rootfs mount point in the host's mount namespace.
fn rootfs_of(d: &Daemon, id: &str) -> PathBuf {
    d.dir.join("run/containers").join(id).join("rootfs")
}

/// Nothing of a removed container is left: no mount under the data or exec root (other
/// than `allowed`), no snapshot directory beyond the image's, no container or state dir.
#[track_caller]
fn assert_no_leftovers(d: &Daemon, snapshots_before: &[String], allowed: &[PathBuf]) {
    let ok = eventually(20, || names_in(&d.data().join("snapshots")) == snapshots_before);
    assert!(ok, "snapshot dirs leaked: {:?} (image only: {:?})", names_in(&d.data().join("snapshots")), snapshots_before);
    let allowed: Vec<String> = allowed.iter().map(|p| p.display().to_string()).collect();
    for root in [d.data(), d.dir.join("run")] {
        let left: Vec<String> = mounts_under(&root).into_iter().filter(|m| !allowed.contains(m)).collect();
        assert!(left.is_empty(), "mounts leaked: {left:?}");
    }
    assert_eq!(names_in(&d.data().join("containers")), Vec::<String>::new(), "container dirs leaked");
    assert_eq!(names_in(&d.dir.join("run/containers")), Vec::<String>::new(), "state dirs leaked");
    assert_eq!(names_in(&d.dir.join("run/netns")), Vec::<String>::new(), "netns mounts leaked");
}

/// B16: another process keeps a cwd and open fds inside a container's rootfs and inside a
/// volume (a tmpfs-backed one, so a real mount) while `rm -f` runs. The removal succeeds
/// (lazy detach), a second one is a clean "No such container", `volume rm` works too, and
/// nothing is left mounted or on disk. Then the same with the daemon SIGKILLed at each
/// fault point of `rm`: after a restart the container is either fully there (record and
/// rootfs) or fully gone, `rm -f` completes, and nothing leaks.
#[test]
fn b16_busy_rootfs_and_volume_during_rm() {
    let mut d = Daemon::start("hf-b16");
    let snaps = names_in(&d.data().join("snapshots"));
    d.berth(&["volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "tv"]).ok();
    let vol = d.data().join("volumes/tv/_data");

    // 1. rm -f with holders
    d.berth(&["run", "-d", "--name", "c1", "-v", "tv:/tv", "busybox", "sh", "-c", "echo hi > /tv/f; mkdir -p /tmp/deep; sleep 1000"]).ok();
    let id = container_id(&d, "c1");
    let rootfs = rootfs_of(&d, &id);
    assert!(eventually(10, || rootfs.join("tmp/deep").is_dir() && vol.join("f").is_file()));
    let h1 = Holder::new(&rootfs.join("tmp/deep"), &[&rootfs.join("bin/busybox"), &vol.join("f")]);
    let h2 = Holder::new(&vol, &[&rootfs.join("etc/passwd")]);
    let o = d.berth(&["rm", "-f", "c1"]);
    assert_eq!(o.code, 0, "rm -f with a busy rootfs: {}", o.stderr);
    let o = d.berth(&["rm", "-f", "c1"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container: c1"), "{}", o.stderr);
    assert!(d.berth(&["inspect", "c1"]).code != 0);
    // the holder keeps the detached tree, the host sees nothing of it
    assert!(h1.cwd().display().to_string().ends_with("/tmp/deep"), "{}", h1.cwd().display());
    assert_no_leftovers(&d, &snaps, &[vol.clone()]);
    // the volume (still mounted, a holder inside) is removed too
    let o = d.berth(&["volume", "rm", "tv"]);
    assert_eq!(o.code, 0, "volume rm with a busy mount: {}", o.stderr);
    assert!(!d.data().join("volumes/tv").exists(), "volume dir left");
    assert_no_leftovers(&d, &snaps, &[]);
    drop((h1, h2));

    // 2. the daemon dies in the middle of rm while the holder exists
    // (the named points of `rm`, then SIGKILLs at a few moments while `rm -f` runs)
    for point in ["container.rm.stopped", "container.rm.unrecorded", "container.rm.purged", "5ms", "20ms", "40ms"] {
        d.berth(&["run", "-d", "--name", "c2", "-v", "plain:/plain", "busybox", "sh", "-c", "mkdir -p /tmp/deep; sleep 1000"]).ok();
        let id = container_id(&d, "c2");
        let rootfs = rootfs_of(&d, &id);
        assert!(eventually(10, || rootfs.join("tmp/deep").is_dir()));
        let plain = d.data().join("volumes/plain/_data");
        let _h1 = Holder::new(&rootfs.join("tmp/deep"), &[&rootfs.join("bin/busybox")]);
        let _h2 = Holder::new(&plain, &[&rootfs.join("etc/passwd")]);
        if let Some(ms) = point.strip_suffix("ms") {
            let mut rm = d.cmd(&["rm", "-f", "c2"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
            d.kill9();
            let _ = rm.wait();
        } else {
            d.kill9();
            d.env = vec![("BERTH_FAULTS".into(), point.into())];
            d.spawn();
            let o = d.berth(&["rm", "-f", "c2"]);
            assert!(eventually(10, || d.exited()), "{point}: the daemon did not reach the fault point (rm: {} {})", o.code, o.stderr);
            d.env.clear();
        }
        d.spawn();
        // record and rootfs agree: a listed container still has its snapshot, a gone one none
        let listed = d.berth(&["ps", "-aq", "--no-trunc"]).ok().stdout.contains(&id);
        if listed {
            let o = d.berth(&["rm", "-f", "c2"]);
            assert_eq!(o.code, 0, "{point}: rm after restart: {}", o.stderr);
        } else {
            let o = d.berth(&["rm", "-f", "c2"]);
            assert!(o.stderr.contains("No such container"), "{point}: {}", o.stderr);
        }
        assert!(d.berth(&["inspect", "c2"]).code != 0, "{point}");
        assert_no_leftovers(&d, &snaps, &[]);
        d.berth(&["volume", "rm", "plain"]).ok();
        assert!(!d.data().join("volumes/plain").exists(), "{point}: volume dir left");
        // the name is free again
        d.berth(&["run", "--rm", "--name", "c2", "busybox", "true"]).ok();
    }
}
