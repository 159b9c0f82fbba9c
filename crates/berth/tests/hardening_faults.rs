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

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `ps`, `inspect` and `logs` of `other` answer (and say what they should).
#[track_caller]
fn others_answer(d: &Daemon, other: &str) {
    assert!(d.berth(&["ps"]).ok().stdout.contains(other));
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Status}}", other]).ok().stdout.trim(), "running");
    assert!(d.berth(&["logs", other]).ok().stdout.contains("tick"));
}

/// B15 (the parts not covered elsewhere): a container started with `-i` that never reads
/// its stdin while the client pushes megabytes at it, and a container that cannot die (its
/// process sits in a frozen v1 freezer sub-cgroup berth does not know about, as if stuck
/// in D state). `ps`/`inspect`/`logs` of the others keep answering meanwhile, the daemon's
/// memory does not grow with what the client sends, `stop`/`rm -f` of the stuck one give
/// Docker's error after its 10 s instead of hanging, and once thawed it goes away cleanly.
#[test]
fn b15_unread_stdin_and_stuck_container() {
    let d = Daemon::start("hf-b15");
    d.berth(&["run", "-d", "--name", "other", "busybox", "sh", "-c", "while true; do echo tick; sleep 0.2; done"]).ok();
    assert!(eventually(10, || d.berth(&["logs", "other"]).stdout.contains("tick")));
    let dpid = d.pid().unwrap();

    // 1. stdin never read
    let rss0 = rss_kib(dpid);
    let mut client = d.cmd(&["run", "-i", "--name", "sink", "busybox", "sleep", "1000"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdin = client.stdin.take().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..(256 << 20) / chunk.len() {
                if stdin.write_all(&chunk).is_err() {
                    return;
                }
                sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    assert!(eventually(20, || d.berth(&["inspect", "-f", "{{.State.Running}}", "sink"]).stdout.trim() == "true"));
    // the writer stalls once the pipes between it and the container are full
    let mut last = u64::MAX;
    assert!(
        eventually(30, || {
            let now = sent.load(std::sync::atomic::Ordering::Relaxed);
            let stalled = now == last && now > 0;
            last = now;
            std::thread::sleep(Duration::from_millis(300));
            stalled
        }),
        "the client never stalled: {} bytes sent",
        sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    let stalled_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..3 {
        others_answer(&d, "other");
    }
    let rss1 = rss_kib(dpid);
    eprintln!("stdin never read: client stalled after {} KiB; daemon RSS {rss0} -> {rss1} KiB", stalled_at >> 10);
    assert!(stalled_at < 64 << 20, "{stalled_at} bytes accepted for a container that reads nothing");
    assert!(rss1 < rss0 + 32 * 1024, "daemon RSS grew from {rss0} to {rss1} KiB");
    d.berth(&["rm", "-f", "sink"]).ok();
    let _ = client.kill();
    let _ = client.wait();
    let _ = writer.join();
    others_answer(&d, "other");

    // 2. a container that cannot die
    let id = d.berth(&["run", "-d", "--name", "stuck", "busybox", "sleep", "1000"]).ok().stdout.trim().to_string();
    let cg = PathBuf::from(format!("/sys/fs/cgroup/freezer/berth-test-{}/{id}", d.name));
    assert!(cg.is_dir(), "no freezer cgroup at {}", cg.display());
    let pid = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap().trim().to_string();
    let sub = cg.join("held");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("freezer.state"), "FROZEN").unwrap();
    std::fs::write(sub.join("cgroup.procs"), &pid).unwrap();
    assert!(eventually(10, || std::fs::read_to_string(sub.join("freezer.state")).unwrap().trim() == "FROZEN"));
    struct Thaw(PathBuf);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        }
    }
    let thaw = Thaw(sub.clone());

    for op in [&["stop", "-t", "1", "stuck"][..], &["kill", "stuck"][..], &["rm", "-f", "stuck"][..]] {
        let c = d.cmd(op).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // while it is waiting for a process that cannot die, everything else answers
        std::thread::sleep(Duration::from_millis(1500));
        others_answer(&d, "other");
        let st = d.berth(&["inspect", "-f", "{{.State.Status}}", "stuck"]).ok().stdout;
        assert!(["running", "removing"].contains(&st.trim()), "{op:?}: {st}");
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!("{op:?} on a stuck container: {:?} {err}", o.status.code());
        if op[0] != "kill" {
            assert_ne!(o.status.code(), Some(0), "{op:?}");
            assert!(err.contains("tried to kill container, but did not receive an exit event"), "{op:?}: {err}");
        }
        others_answer(&d, "other");
    }
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Status}}", "stuck"]).ok().stdout.trim(), "running");
    drop(thaw);
    assert!(eventually(20, || d.berth(&["inspect", "-f", "{{.State.Status}}", "stuck"]).stdout.trim() == "exited"));
    d.berth(&["rm", "stuck"]).ok();
    assert!(eventually(10, || !cg.exists()), "the container's cgroup (with the sub-cgroup) is left");
    assert_eq!(d.berth(&["ps", "-aq"]).ok().stdout.lines().count(), 1);
    others_answer(&d, "other");
}

fn statvfs(p: &Path) -> (u64, u64) {
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    (s.blocks_available() as u64 * s.fragment_size() as u64, s.files_free() as u64)
}

/// A tar of `n` empty files (plus their directory).
fn many_files_tar(dir: &Path, n: usize) -> PathBuf {
    let src = dir.join("many-src");
    std::fs::create_dir_all(src.join("many")).unwrap();
    for i in 0..n {
        std::fs::write(src.join(format!("many/f{i}")), b"").unwrap();
    }
    let tar = dir.join("many.tar");
    assert!(Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    std::fs::remove_dir_all(&src).unwrap();
    tar
}

/// Fill the filesystem of `dir` with a file there until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("zz-filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let buf = vec![0xa5u8; 1 << 20];
    loop {
        match f.write(&buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let small = vec![0xa5u8; 4096];
    while f.write(&small).map(|n| n > 0).unwrap_or(false) {}
    p
}

/// B6 (the parts `hardening.rs::b6_disk_full_data_root` does not cover): inodes run out
/// during an import (clear ENOSPC naming the path, no partial layer, the daemon serves,
/// `rm`/`prune` recover), a build on a full disk fails cleanly and leaves nothing, and a
/// container logging while the disk is full is never blocked: it runs to its normal exit,
/// its log loses entries, and the count of dropped entries reaches the daemon's log.
#[test]
fn b6_inodes_build_and_logging_on_a_full_disk() {
    let mut d = Daemon::start_bare("hf-b6");
    d.kill9();
    let data = d.data();
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    nix::mount::mount(Some("tmpfs"), &data, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=48m")).expect("tmpfs data root");
    d.spawn();
    d.berth(&["import", "--change", "CMD [\"sh\"]", busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
    let snaps = names_in(&data.join("snapshots"));

    // 1. logging on a full disk
    d.berth(&["run", "-d", "--name", "chatty", "busybox", "sh", "-c", "echo before; while [ ! -e /go ]; do sleep 0.1; done; i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; echo done"]).ok();
    assert!(eventually(10, || d.berth(&["logs", "chatty"]).stdout.contains("before")));
    let filler = fill(&data);
    assert!(statvfs(&data).0 < 64 << 10, "disk not full");
    d.berth(&["exec", "chatty", "touch", "/go"]).ok();
    let o = d.berth(&["wait", "chatty"]);
    assert_eq!(o.stdout.trim(), "0", "the logging container did not exit normally: {} {}", o.stdout, o.stderr);
    std::fs::remove_file(&filler).unwrap();
    let logs = d.berth(&["logs", "chatty"]).ok().stdout;
    let kept = logs.lines().filter(|l| l.starts_with("line ")).count();
    assert!(logs.starts_with("before\n") && kept < 3000, "kept {kept} lines of 3000 on a full disk");
    let log = d.log();
    let warn = log.lines().find(|l| l.contains("log entries dropped")).unwrap_or_else(|| panic!("no drop counter in the daemon log:\n{log}"));
    eprintln!("full disk: {kept} of 3000 lines kept; daemon: {warn}");
    d.berth(&["rm", "chatty"]).ok();
    // writes work again
    d.berth(&["run", "--name", "after", "busybox", "echo", "fine"]).ok();
    assert_eq!(d.berth(&["logs", "after"]).ok().stdout, "fine\n");
    d.berth(&["rm", "after"]).ok();

    // 2. inodes run out during an import
    let tar = many_files_tar(&d.dir, 2000);
    let (_, files_free) = statvfs(&data);
    let used = nix::sys::statvfs::statvfs(&data).unwrap().files() as u64 - files_free;
    let limit = format!("size=48m,nr_inodes={}", used + 400);
    nix::mount::mount(None::<&str>, &data, None::<&str>, nix::mount::MsFlags::MS_REMOUNT, Some(limit.as_str())).expect("remount with few inodes");
    let free0 = statvfs(&data).1;
    let o = d.berth(&["import", tar.to_str().unwrap(), "many:latest"]);
    assert_ne!(o.code, 0, "import of 2000 files into 400 inodes succeeded");
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    assert!(o.stderr.contains(data.to_str().unwrap()), "the error does not name the path: {}", o.stderr);
    assert!(d.berth(&["inspect", "many:latest"]).code != 0, "a partial image is visible");
    assert!(eventually(20, || names_in(&data.join("snapshots")) == snaps), "partial layer left: {:?}", names_in(&data.join("snapshots")));
    assert!(eventually(20, || statvfs(&data).1 + 8 >= free0), "inodes not given back: {} free, {free0} before", statvfs(&data).1);
    d.berth(&["ps", "-a"]).ok();
    d.berth(&["images"]).ok();
    d.berth(&["image", "prune", "-f"]).ok();
    d.berth(&["container", "prune", "-f"]).ok();
    let o = d.berth(&["run", "--rm", "busybox", "echo", "ok"]).ok();
    assert_eq!(o.stdout.trim(), "ok");

    // 3. builds on a full disk (inodes, then bytes) fail cleanly and leave nothing
    let ctx = d.dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    for (what, run) in [
        ("inodes", "i=0; while [ $i -lt 2000 ]; do touch /f$i || exit 1; i=$((i+1)); done"),
        ("bytes", "dd if=/dev/zero of=/big bs=1M count=100"),
    ] {
        std::fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN {run}\n")).unwrap();
        let o = d.berth(&["build", "-t", "full:latest", ctx.to_str().unwrap()]);
        assert_ne!(o.code, 0, "{what}: build succeeded on a full disk");
        eprintln!("build on a full disk ({what}): {}", o.stderr.lines().last().unwrap_or(""));
        assert!(o.stderr.contains("returned a non-zero code") || o.stderr.contains("No space left"), "{what}: {}", o.stderr);
        assert!(d.berth(&["inspect", "full:latest"]).code != 0);
        assert!(eventually(20, || names_in(&data.join("snapshots")) == snaps), "{what}: build left {:?}", names_in(&data.join("snapshots")));
        let left: Vec<String> = mounts_under(&data).into_iter().filter(|m| Path::new(m) != data).collect();
        assert_eq!(left, Vec::<String>::new(), "{what}");
        assert!(eventually(20, || statvfs(&data).1 + 8 >= free0), "{what}: inodes not given back");
        d.berth(&["builder", "prune", "-af"]).ok();
    }
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo small > /small\n").unwrap();
    d.berth(&["build", "-q", "-t", "small:latest", ctx.to_str().unwrap()]).ok();
    let o = d.berth(&["run", "--rm", "small:latest", "cat", "/small"]).ok();
    assert_eq!(o.stdout.trim(), "small");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / on a published port; None when nothing answers within a few seconds.
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

fn state(d: &Daemon, name: &str) -> String {
    d.berth(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}", name]).ok().stdout.trim().to_string()
}

/// SIGKILL every process whose command line names `needle` (shims of a daemon).
fn kill_cmdlines(needle: &str) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid as u32 == std::process::id() {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// What a host reboot does to a daemon's world: every shim and container process dies, the
/// exec root (a tmpfs `/run` on a real host) with its netns mounts is gone, and so are the
/// kernel objects (bridges, veths, nft table, cgroups). The data root stays.
fn simulate_reboot(d: &mut Daemon) {
    d.kill9();
    let run = d.dir.join("run");
    kill_cmdlines(run.to_str().unwrap());
    let cg = format!("berth-test-{}", d.name);
    for _ in 0..100 {
        let mut alive = 0;
        for ctrl in ["pids", "freezer", "memory"] {
            for e in std::fs::read_dir(format!("/sys/fs/cgroup/{ctrl}/{cg}")).into_iter().flatten().flatten() {
                for pid in std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default().lines() {
                    alive += 1;
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().unwrap_or(0)), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        if alive == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut mps = mounts_under(&run);
    mps.extend(mounts_under(&d.data()));
    mps.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in mps {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::remove_dir_all(&run).unwrap();
    // kernel objects
    let table = format!("berth-t-{}", d.name);
    let _ = Command::new("nft").args(["delete", "table", "ip", &table]).stderr(Stdio::null()).status();
    let o = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    let mark = format!("alias berth:{table}:");
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let dev = line.split(": ").nth(1).map(|d| d.split('@').next().unwrap_or(d).to_string()).unwrap_or_default();
        if line.contains(&mark) || dev == d.bridge() || (dev.starts_with("veth") && line.contains(&format!("master {}", d.bridge()))) {
            let _ = Command::new("ip").args(["link", "del", &dev]).stderr(Stdio::null()).status();
        }
    }
    for ctrl in ["cpu", "cpuacct", "memory", "pids", "freezer", "devices", "blkio", "cpuset", "systemd"] {
        for e in std::fs::read_dir(format!("/sys/fs/cgroup/{ctrl}/{cg}")).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

/// B19: a simulated host reboot. Containers with `--restart always` and `unless-stopped`
/// (not stopped by the user) come back running with working published ports and DNS;
/// `no`, and `unless-stopped` stopped by the user, are Exited; the exec root is rebuilt
/// without stale sockets or state directories.
#[test]
fn b19_host_reboot_restores_restart_policies() {
    let mut d = Daemon::start("hf-b19");
    d.berth(&["network", "create", "appnet"]).ok();
    let (p1, p2) = (free_port(), free_port());
    let run = |name: &str, policy: &str, extra: &[&str], cmd: &[&str]| {
        let mut a = vec!["run", "-d", "--name", name, "--restart", policy];
        a.extend(extra);
        a.push("busybox");
        a.extend(cmd);
        d.berth(&a).ok();
    };
    let pub1 = format!("127.0.0.1:{p1}:80");
    let pub2 = format!("127.0.0.1:{p2}:80");
    run("al", "always", &["-p", &pub1], &HTTPD);
    run("us", "unless-stopped", &["-p", &pub2, "--network", "appnet"], &HTTPD);
    run("us-stopped", "unless-stopped", &[], &["sleep", "1000"]);
    run("of", "on-failure", &[], &["sleep", "1000"]);
    run("no", "no", &[], &["sleep", "1000"]);
    d.berth(&["stop", "-t", "0", "us-stopped"]).ok();
    assert!(http_get(p1).unwrap_or_default().contains("hello from berth"));
    assert!(http_get(p2).unwrap_or_default().contains("hello from berth"));

    simulate_reboot(&mut d);
    assert!(http_get(p1).is_none(), "the reboot left the port open");
    d.spawn();

    for name in ["al", "us"] {
        assert!(eventually(20, || state(&d, name).starts_with("running")), "{name}: {}", state(&d, name));
    }
    assert!(http_get(p1).unwrap_or_default().contains("hello from berth"), "published port of `always` after reboot");
    assert!(http_get(p2).unwrap_or_default().contains("hello from berth"), "published port of `unless-stopped` after reboot");
    // DNS on the user network works again
    let o = d.berth(&["run", "--rm", "--network", "appnet", "busybox", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 us 80 | tail -1"]).ok();
    assert_eq!(o.stdout, "<h1>hello from berth</h1>\n");
    assert!(state(&d, "us-stopped").starts_with("exited"), "{}", state(&d, "us-stopped"));
    assert!(state(&d, "no").starts_with("exited"), "{}", state(&d, "no"));
    // on-failure: the container died with an unknown status (Docker records 255 and, the
    // code being non-zero, restarts it)
    let of = state(&d, "of");
    eprintln!("after reboot: al={} us={} us-stopped={} of={of} no={}", state(&d, "al"), state(&d, "us"), state(&d, "us-stopped"), state(&d, "no"));
    assert!(eventually(20, || state(&d, "of").starts_with("running")), "on-failure: {}", state(&d, "of"));
    // the exec root has state only for the running containers, and no stale socket
    let running: Vec<String> = d.berth(&["ps", "-q", "--no-trunc"]).ok().stdout.lines().map(String::from).collect();
    let mut dirs = names_in(&d.dir.join("run/containers"));
    dirs.retain(|x| !running.contains(x));
    assert_eq!(dirs, Vec::<String>::new(), "state dirs of stopped containers");
    // everything still works normally
    d.berth(&["start", "no", "us-stopped"]).ok();
    d.berth(&["rm", "-f", "al", "us", "us-stopped", "of", "no"]).ok();
    d.berth(&["network", "rm", "appnet"]).ok();
}

/// B11: the restart matrix. For each way the daemon goes down (SIGTERM, SIGKILL), with
/// containers of every restart policy: the running ones keep running across the restart
/// (berth always restores live), the ones that exit while the daemon is down get their exit
/// code recorded, and their restart policy is applied when the daemon is back.
/// (Rootless does not apply: berth runs as root only.)
#[test]
fn b11_restart_matrix_policies_by_stop_mode() {
    let mut d = Daemon::start("hf-b11");
    for mode in ["SIGTERM", "SIGKILL"] {
        let policies = ["no", "always", "unless-stopped", "on-failure"];
        let mut started = std::collections::HashMap::new();
        for p in policies {
            d.berth(&["run", "-d", "--name", &format!("up-{p}"), "--restart", p, "busybox", "sleep", "1000"]).ok();
            d.berth(&["run", "-d", "--name", &format!("dies-{p}"), "--restart", p, "busybox", "sh", "-c", "[ -e /again ] && exec sleep 1000; touch /again; while [ ! -e /go ]; do sleep 0.1; done; exit 3"]).ok();
            let s = d.berth(&["inspect", "-f", "{{.State.StartedAt}} {{.State.Pid}}", &format!("up-{p}")]).ok().stdout;
            started.insert(p, s);
        }
        let ids: std::collections::HashMap<String, String> = policies.iter().map(|p| (format!("dies-{p}"), container_id(&d, &format!("dies-{p}")))).collect();
        let container_id_in = |_: &Daemon, name: &str| ids[name].clone();
        if mode == "SIGTERM" {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.pid().unwrap() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
            assert!(eventually(20, || d.exited()), "the daemon did not stop on SIGTERM");
        } else {
            d.kill9();
        }
        // the `dies-*` containers exit (code 3) while the daemon is down
        for p in policies {
            let id = container_id_in(&d, &format!("dies-{p}"));
            std::fs::write(rootfs_of(&d, &id).join("go"), b"").unwrap();
        }
        std::thread::sleep(Duration::from_secs(1));
        d.spawn();
        for p in policies {
            let up = format!("up-{p}");
            assert!(state(&d, &up).starts_with("running"), "{mode} {up}: {}", state(&d, &up));
            let s = d.berth(&["inspect", "-f", "{{.State.StartedAt}} {{.State.Pid}}", &up]).ok().stdout;
            assert_eq!(s, started[p], "{mode} {up}: restarted instead of restored");
            let dies = format!("dies-{p}");
            if p == "no" {
                assert_eq!(state(&d, &dies), "exited 3 0", "{mode} {dies}");
            } else {
                // restarted once (the second run stays up); the exit code of the run that
                // ended while the daemon was down is in the events
                assert!(eventually(20, || state(&d, &dies) == "running 0 1"), "{mode} {dies}: {}", state(&d, &dies));
            }
        }
        // the exit code of the run that ended while the daemon was down is in a `die` event
        // (`--until` is whole seconds: the newest events may need a moment to be included)
        let mut ev = String::new();
        let all_there = eventually(10, || {
            ev = d.berth(&["events", "--since", "0", "--until", "0s", "--filter", "event=die", "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}"]).ok().stdout;
            policies.iter().all(|p| ev.lines().any(|l| l == format!("dies-{p} 3")))
        });
        assert!(all_there, "{mode}: die events: {ev}");
        let all: Vec<String> = d.berth(&["ps", "-aq"]).ok().stdout.lines().map(String::from).collect();
        let mut a = vec!["rm", "-f"];
        a.extend(all.iter().map(String::as_str));
        d.berth(&a).ok();
    }
}

/// A v1 memory cgroup of our own, removed (after its processes are gone) on drop.
struct MemCgroup(PathBuf);

impl MemCgroup {
    fn new(name: &str, limit: u64) -> MemCgroup {
        let p = PathBuf::from(format!("/sys/fs/cgroup/memory/{name}"));
        let _ = std::fs::remove_dir(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        MemCgroup(p)
    }
    fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.0.join(f)).unwrap_or_default()
    }
    fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control").lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            for pid in self.read("cgroup.procs").lines() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.parse().unwrap_or(0)), nix::sys::signal::Signal::SIGKILL);
            }
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// B14: the daemon (and its shims) in a 256 MiB v1 memory cgroup while four containers
/// flood their logs, three `logs -f` clients read them slowly and execs produce large
/// outputs read slowly too. The daemon is never OOM-killed, its RSS stays far below the
/// limit (no buffer grows with what the containers write), and ping/ps keep answering.
#[test]
fn b14_daemon_in_a_memory_cgroup_under_log_floods() {
    let cg = MemCgroup::new(&format!("berth-b14-{}", std::process::id()), 256 << 20);
    let mut d = Daemon::start_bare("hf-b14");
    d.kill9();
    d.wrapper = vec!["sh".into(), "-c".into(), format!("echo $$ > {}/cgroup.procs && exec \"$@\"", cg.0.display()), "sh".into()];
    d.spawn();
    let dpid = d.pid().unwrap();
    assert!(cg.read("cgroup.procs").contains(&dpid.to_string()), "the daemon is not in the cgroup");
    d.berth(&["import", "--change", "CMD [\"sh\"]", busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
    let line = "x".repeat(1000);
    for i in 0..4 {
        d.berth(&["run", "-d", "--name", &format!("flood{i}"), "--log-opt", "max-size=5m", "--log-opt", "max-file=2", "busybox", "yes", &line]).ok();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::new();
    // slow `logs -f` readers: 4 KiB every 20 ms
    for i in 0..3 {
        let mut c = d.cmd(&["logs", "-f", &format!("flood{i}")]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            use std::io::Read;
            let mut out = c.stdout.take().unwrap();
            let mut buf = [0u8; 4096];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k as u64,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            n
        }));
    }
    // execs with large output, read slowly
    for i in 0..2 {
        let mut c = d.cmd(&["exec", &format!("flood{i}"), "sh", "-c", "yes exec-output-line | head -c 500000000"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            use std::io::Read;
            let mut out = c.stdout.take().unwrap();
            let mut buf = [0u8; 16384];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k as u64,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
            n
        }));
    }
    let mut samples = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        samples.push(rss_kib(dpid));
        assert!(!d.exited(), "the daemon died: oom kills {}", cg.oom_kills());
        // ping and ps answer
        let o = Command::new("curl").args(["-s", "--max-time", "30", "--unix-socket"]).arg(&d.sock).arg("http://localhost/_ping").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "OK");
        assert_eq!(d.berth(&["ps", "-q"]).ok().stdout.lines().count(), 4);
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let read: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let max_rss = samples.iter().copied().max().unwrap_or(0);
    let usage_max = cg.read("memory.max_usage_in_bytes").trim().parse::<u64>().unwrap_or(0);
    eprintln!(
        "daemon RSS samples {samples:?} KiB; cgroup max usage {} MiB (page cache included); oom kills {}; failcnt {}; bytes read by clients {read:?}",
        usage_max >> 20,
        cg.oom_kills(),
        cg.read("memory.failcnt").trim()
    );
    assert_eq!(cg.oom_kills(), 0, "OOM kills in the daemon's cgroup");
    assert!(!d.exited());
    assert!(max_rss < 160 * 1024, "daemon RSS reached {max_rss} KiB");
    // no growth with the amount of data that went through: the second half of the run
    // peaks no higher than the first half (plus allocator slack)
    let half = samples.len() / 2;
    let (a, b) = (samples[..half].iter().max().unwrap(), samples[half..].iter().max().unwrap());
    assert!(*b < a + 24 * 1024, "daemon RSS keeps growing: {samples:?}");
    assert!(read.iter().all(|n| *n > 0), "a client got nothing: {read:?}");
    for i in 0..4 {
        d.berth(&["rm", "-f", &format!("flood{i}")]).ok();
    }
}

/// A small deterministic PRNG (xorshift), seeded from the pid and printed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = (std::process::id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        eprintln!("rng seed {seed}");
        Rng(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Run `args` against the daemon and SIGKILL the daemon `ms` milliseconds later; returns
/// the command's exit code (the kill may come after it finished). The daemon is restarted.
fn kill_during(d: &mut Daemon, args: &[&str], ms: u64) -> i32 {
    let mut c = d.cmd(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    d.kill9();
    let code = c.wait().unwrap().code().unwrap_or(-1);
    d.spawn();
    code
}

const B18_COMPOSE: &str = r#"services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
    networks: [back]
    volumes: ["data:/data"]
  db:
    image: busybox
    command: ["sleep", "1000"]
    networks: [back, front]
    depends_on: [web]
networks:
  back: {}
  front: {}
volumes:
  data: {}
"#;

/// B18, volumes: the daemon SIGKILLed at random moments during `volume create` and `volume
/// rm` (plain and tmpfs-backed volumes). After each restart the retried operation succeeds
/// and no volume directory or mount exists without its record (or the reverse).
#[test]
fn b18_sigkill_during_volume_create_and_rm() {
    let mut d = Daemon::start("hf-b18");
    let mut rng = Rng::new();
    let vols = d.data().join("volumes");
    for i in 0..12 {
        let name = format!("v{i}");
        let mut create = vec!["volume", "create"];
        if i % 2 == 1 {
            create.extend(["--opt", "type=tmpfs", "--opt", "device=tmpfs"]);
        }
        create.push(&name);
        kill_during(&mut d, &create, rng.below(25));
        let o = d.berth(&create);
        assert_eq!(o.code, 0, "{name}: create after a crash: {}", o.stderr);
        d.berth(&["volume", "inspect", &name]).ok();
        // a tmpfs volume is mounted on use
        d.berth(&["run", "--rm", "-v", &format!("{name}:/v"), "busybox", "sh", "-c", "echo x > /v/f"]).ok();
        kill_during(&mut d, &["volume", "rm", &name], rng.below(25));
        let o = d.berth(&["volume", "rm", &name]);
        assert!(o.code == 0 || o.stderr.contains("no such volume"), "{name}: rm after a crash: {}", o.stderr);
        assert!(d.berth(&["volume", "inspect", &name]).code != 0, "{name}");
        assert!(!vols.join(&name).exists(), "{name}: volume dir without a record");
        assert_eq!(mounts_under(&vols), Vec::<String>::new(), "{name}");
    }
    assert_eq!(d.berth(&["volume", "ls", "-q"]).ok().stdout, "");
    assert_eq!(names_in(&vols), Vec::<String>::new());
}

/// B18, compose: the daemon SIGKILLed at random moments during `compose up -d` and `compose
/// down` of a small project (two services, two networks, a named volume). After each
/// restart `compose up -d` must converge (both services running, reachable by name), `down`
/// must leave no container or network (no half-created network blocks a name), and the
/// named volume must keep its directory.
///
/// Kills during `compose up` used to leave a shim from the interrupted start holding the
/// container's mounted root; the retried start then emptied that root through the mount
/// (`remove_dir_all` of the state directory) and the service failed with `exec: "httpd":
/// executable file not found`. Starts now stop such a shim first and never delete through a
/// mount (`berth_runtime::remove_state_dir`).
#[test]
fn b18_sigkill_during_compose_up_and_down() {
    let mut d = Daemon::start("hf-b18c");
    let mut rng = Rng::new();
    let vols = d.data().join("volumes");
    let proj = d.dir.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let file = proj.join("compose.yaml");
    std::fs::write(&file, B18_COMPOSE).unwrap();
    let f = file.to_str().unwrap().to_string();
    let compose = |sub: &[&str]| {
        let mut a = vec!["compose", "-f", f.as_str(), "-p", "b18"];
        a.extend(sub);
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let t0 = Instant::now();
    let up = compose(&["up", "-d"]);
    let upr: Vec<&str> = up.iter().map(String::as_str).collect();
    d.berth(&upr).ok();
    let up_ms = t0.elapsed().as_millis() as u64;
    let t0 = Instant::now();
    let down = compose(&["down"]);
    let downr: Vec<&str> = down.iter().map(String::as_str).collect();
    d.berth(&downr).ok();
    let down_ms = t0.elapsed().as_millis() as u64;
    let converged = |d: &Daemon| {
        let ps = d.berth(&["ps", "--filter", "label=com.docker.compose.project=b18", "--format", "{{.Names}} {{.State}}"]).ok().stdout;
        let mut lines: Vec<&str> = ps.lines().collect();
        lines.sort();
        assert_eq!(lines, vec!["b18-db-1 running", "b18-web-1 running"], "compose up did not converge");
        let o = d.berth(&["exec", "b18-db-1", "sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 80 | tail -1"]).ok();
        assert_eq!(o.stdout, "<h1>hello from berth</h1>\n");
    };
    for i in 0..4 {
        kill_during(&mut d, &upr, rng.below(up_ms * 3 / 2));
        let o = d.berth(&upr);
        if o.code != 0 {
            let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let ours: Vec<&str> = m.lines().filter(|l| l.contains(d.dir.to_str().unwrap())).collect();
            eprintln!("mounts: {ours:#?}");
            for e in std::fs::read_dir(d.dir.join("run/containers")).unwrap().flatten() {
                eprintln!("{}: {:?} rootfs: {:?}", e.path().display(), names_in(&e.path()), names_in(&e.path().join("rootfs")));
            }
            eprintln!("snapshots: {:?}", names_in(&d.data().join("snapshots")));
        }
        assert_eq!(o.code, 0, "round {i}: up after a crash: {}", o.stderr);
        converged(&d);
        kill_during(&mut d, &downr, rng.below(down_ms * 3 / 2));
        let o = d.berth(&downr);
        assert_eq!(o.code, 0, "round {i}: down after a crash: {}", o.stderr);
        assert_eq!(d.berth(&["ps", "-aq", "--filter", "label=com.docker.compose.project=b18"]).ok().stdout, "", "round {i}");
        let nets = d.berth(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout;
        assert!(!nets.contains("b18_"), "round {i}: networks left after down: {nets}");
        // the named volume survives `down` (no -v), with its directory
        assert_eq!(d.berth(&["volume", "ls", "-q"]).ok().stdout.trim(), "b18_data", "round {i}");
        assert_eq!(names_in(&vols), vec!["b18_data".to_string()], "round {i}");
    }
    let mut downv = down.clone();
    downv.push("-v".into());
    let downv: Vec<&str> = downv.iter().map(String::as_str).collect();
    d.berth(&downv).ok();
    assert_eq!(d.berth(&["volume", "ls", "-q"]).ok().stdout, "");
    assert_eq!(names_in(&vols), Vec::<String>::new());
}

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// A registry serving fixed documents and blobs; blobs of `slow` repositories trickle out
/// (32 KiB every 40 ms) so a pull stays in progress for seconds.
fn throttled_registry(routes: std::collections::HashMap<String, (String, Vec<u8>)>) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let routes = std::sync::Arc::new(routes);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut s = s;
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
                    let (status, ct, body) = match (path.as_str(), routes.get(&path)) {
                        ("/v2/", _) => ("200 OK", "application/json".to_string(), b"{}".to_vec()),
                        (_, Some((ct, body))) => ("200 OK", ct.clone(), body.clone()),
                        _ => ("404 Not Found", "application/json".to_string(), br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#.to_vec()),
                    };
                    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n", body.len());
                    if s.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    if method == "HEAD" {
                        continue;
                    }
                    if path.starts_with("/v2/slow/") && path.contains("/blobs/") {
                        for c in body.chunks(32 << 10) {
                            if s.write_all(c).is_err() {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(40));
                        }
                    } else if s.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Routes for an image `repo:v1` whose single (uncompressed) layer is `layer`.
fn image_routes(routes: &mut std::collections::HashMap<String, (String, Vec<u8>)>, repo: &str, layer: Vec<u8>) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let ld = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [ld]}
    }))
    .unwrap();
    let cd = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
    }))
    .unwrap();
    let bin = "application/octet-stream".to_string();
    routes.insert(format!("/v2/{repo}/blobs/{ld}"), (bin.clone(), layer));
    routes.insert(format!("/v2/{repo}/blobs/{cd}"), (bin, config));
    routes.insert(format!("/v2/{repo}/manifests/v1"), ("application/vnd.oci.image.manifest.v1+json".into(), manifest));
}

/// B22: clock jumps. The daemon runs under libfaketime (CLOCK_REALTIME only: monotonic
/// time is not faked, as with an NTP step) and its wall clock jumps +2 days and then -2
/// days while: a pull is in progress (another pull, which expires day-old ingests, starts
/// after the jump: the in-progress ingest is not taken for stale and the first pull
/// completes), a container logs with `max-size` rotation (still at most `max-file` files),
/// and a health check runs every second (it keeps its interval: no stall after the backward
/// jump, no burst after the forward one). Registry upload sessions expire on `Instant`
/// (`berth-registry/src/upload.rs`), restart backoff and health timers use `Instant` and
/// `sleep`, so the jumps cannot reach them.
#[test]
fn b22_clock_jumps() {
    let lib = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(lib) = lib else {
        eprintln!("skipping: libfaketime is not installed (apt-get install faketime)");
        return;
    };
    let mut d = Daemon::start_bare("hf-b22");
    d.kill9();
    let stamp = d.dir.join("faketime");
    let jump = |offset: &str| std::fs::write(&stamp, format!("{offset}\n")).unwrap();
    jump("+0");
    d.env = vec![
        ("LD_PRELOAD".into(), lib.into()),
        ("FAKETIME_TIMESTAMP_FILE".into(), stamp.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        // file times stay the kernel's: as after a real step, files written before the
        // jump look two days old (or two days ahead)
        ("NO_FAKE_STAT".into(), "1".into()),
    ];
    d.spawn();
    d.berth(&["import", "--change", "CMD [\"sh\"]", busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
    let year = |d: &Daemon| d.berth(&["info", "--format", "{{.SystemTime}}"]).ok().stdout.trim().to_string();
    let t0 = year(&d);
    jump("+2d");
    let t1 = year(&d);
    eprintln!("daemon clock: {t0} -> {t1} after +2d");
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!((parse(&t1) - parse(&t0)).num_hours() >= 47, "libfaketime does not move the daemon's clock: {t0} -> {t1}");
    jump("+0");

    // a container logging with rotation, and a health check every second
    d.berth(&["run", "-d", "--name", "logger", "--log-opt", "max-size=20k", "--log-opt", "max-file=2", "busybox", "sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done"]).ok();
    d.berth(&["run", "-d", "--name", "hc", "--health-cmd", "echo x >> /tmp/probes", "--health-interval", "1s", "busybox", "sleep", "1000"]).ok();
    let probes = |d: &Daemon| d.berth(&["exec", "hc", "sh", "-c", "cat /tmp/probes 2>/dev/null | wc -l"]).ok().stdout.trim().parse::<u64>().unwrap();
    assert!(eventually(20, || probes(&d) >= 2), "no health probes");

    // a pull in progress across the jump
    // busybox plus 1 MiB of noise: a layer the daemon does not have yet
    let layer = {
        let t = d.dir.join("slow.tar");
        std::fs::copy(busybox_tar(), &t).unwrap();
        let src = d.dir.join("slow-src");
        std::fs::create_dir_all(&src).unwrap();
        let mut x = std::process::id() as u64 | 1;
        let noise: Vec<u8> = (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(src.join("noise"), noise).unwrap();
        assert!(Command::new("tar").arg("-rf").arg(&t).arg("-C").arg(&src).arg("noise").status().unwrap().success());
        std::fs::read(t).unwrap()
    };
    let mut small = b"small layer".to_vec();
    small.resize(10240, 0);
    let mut routes = std::collections::HashMap::new();
    image_routes(&mut routes, "slow/img", layer);
    image_routes(&mut routes, "fast/img", {
        // a tar with one file
        let src = d.dir.join("small-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("small"), b"small\n").unwrap();
        let t = d.dir.join("small.tar");
        assert!(Command::new("tar").arg("-C").arg(&src).arg("-cf").arg(&t).arg("small").status().unwrap().success());
        std::fs::read(t).unwrap()
    });
    let port = throttled_registry(routes);
    let slow = format!("127.0.0.1:{port}/slow/img:v1");
    let fast = format!("127.0.0.1:{port}/fast/img:v1");
    let mut pull = d.cmd(&["pull", &slow]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let ingest = d.data().join("distribution/ingest");
    let started = eventually(20, || {
        names_in(&ingest).iter().any(|n| std::fs::metadata(ingest.join(n)).map(|m| m.len() > 0).unwrap_or(false)) || matches!(pull.try_wait(), Ok(Some(_)))
    });
    if !started || matches!(pull.try_wait(), Ok(Some(_))) {
        let o = pull.wait_with_output().unwrap();
        panic!("the slow pull did not start: {} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    let (h0, l0) = (probes(&d), d.berth(&["logs", "--tail", "1", "logger"]).ok().stdout);
    jump("+2d");
    d.berth(&["pull", &fast]).ok();
    let o = pull.wait_with_output().unwrap();
    assert!(o.status.success(), "the pull in progress across a +2d jump failed: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(d.berth(&["run", "--rm", &slow, "echo", "ok"]).ok().stdout.trim(), "ok");
    // (a pull whose ingest vanished would still succeed by downloading again: the log says
    // whether expiry touched it)
    assert!(!d.log().contains("removing stale partial download"), "an ingest in progress was expired after the jump");
    std::thread::sleep(Duration::from_secs(3));
    let (h1, l1) = (probes(&d), d.berth(&["logs", "--tail", "1", "logger"]).ok().stdout);
    jump("-2d");
    std::thread::sleep(Duration::from_secs(4));
    let (h2, l2) = (probes(&d), d.berth(&["logs", "--tail", "1", "logger"]).ok().stdout);
    jump("+0");
    eprintln!("health probes {h0} -> {h1} (+2d) -> {h2} (-2d); last log lines {l0:?} {l1:?} {l2:?}");
    assert!(h1 > h0 && h2 > h1, "health checks stalled across a clock jump: {h0} {h1} {h2}");
    assert!(h2 - h0 < 40, "health checks ran in a burst: {h0} -> {h2}");
    let n = |l: &str| l.trim().strip_prefix("line ").and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    assert!(n(&l1) > n(&l0) && n(&l2) > n(&l1), "logging stalled: {l0:?} {l1:?} {l2:?}");
    let id = container_id(&d, "logger");
    let files: Vec<String> = names_in(&d.data().join("containers").join(&id)).into_iter().filter(|f| f.contains("-json.log")).collect();
    assert!(files.len() <= 2, "rotation kept {files:?}");
    for f in &files {
        let len = std::fs::metadata(d.data().join("containers").join(&id).join(f)).unwrap().len();
        assert!(len <= 24 << 10, "{f}: {len} bytes with max-size=20k");
    }
    assert_eq!(d.berth(&["inspect", "-f", "{{.State.Health.Status}}", "hc"]).ok().stdout.trim(), "healthy");
    d.berth(&["rm", "-f", "logger", "hc"]).ok();
}
