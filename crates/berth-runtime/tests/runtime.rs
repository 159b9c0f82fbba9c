//! Root-only tests against the real kernel: each starts real shims and containers from a
//! busybox rootfs on overlayfs, with unique names, cleaned up even on failure.
//!
//! Run: `cargo test -p berth-runtime` as root (skipped with a message otherwise; needs
//! Debian's busybox-static). Knobs: `BERTH_TEST_SHIM=/path/to/shim` (e.g. the release build,
//! for the latency and RSS figures), `BERTH_TEST_KEEP=1` (keep state dirs and shim.log),
//! `BERTH_SHIM_LOG=berth_runtime=debug` (shim tracing into `<state_dir>/shim.log`),
//! `BERTH_SHIM_TRACE_RUNTIME=1` (libcontainer's logs too). Memory probe:
//! `cargo test -p berth-runtime --test runtime -- --ignored --nocapture shim_memory`.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use berth_runtime::{create, start, RuntimeErrorKind, Shim, Status};
use common::{read_mux, require_root, run_to_exit, wait_exit, TestContainer};

fn connect(c: &TestContainer) -> Shim {
    Shim::connect(&c.state_dir)
        .expect("connect")
        .expect("shim is running")
}

#[test]
fn true_exits_zero_and_latency() {
    require_root!();
    let c = TestContainer::new("true", &["/bin/true"]);
    let t0 = Instant::now();
    let exit = run_to_exit(&c);
    eprintln!("start->exit latency of `true`: {:?}", t0.elapsed());
    assert_eq!(exit.exit_code, 0);
    assert!(!exit.oom_killed);
    assert!(exit.signal.is_none());
}

#[test]
fn exit_code_and_json_log() {
    require_root!();
    let c = TestContainer::new(
        "exit3",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; printf partial; exit 3",
        ],
    );
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 3);
    let log = std::fs::read_to_string(c.log_path()).expect("log");
    assert!(
        log.contains(r#""log":"hello\n","stream":"stdout""#),
        "{log}"
    );
    assert!(log.contains(r#""log":"oops\n","stream":"stderr""#), "{log}");
    assert!(
        log.contains(r#""log":"partial","stream":"stdout""#),
        "{log}"
    );
    assert!(berth_runtime::read_exit(&c.state_dir)
        .expect("read")
        .is_some());
}

#[test]
fn command_not_found_is_127_class() {
    require_root!();
    let c = TestContainer::new("nosuch", &["nosuch"]);
    let err = start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect_err("must fail");
    assert_eq!(err.kind(), RuntimeErrorKind::CommandNotFound);
    assert_eq!(
        err.to_string(),
        r#"exec: "nosuch": executable file not found in $PATH"#
    );
    let c2 = TestContainer::new("notexec", &["/etc/passwd"]);
    let err = start(common::shim_exe().as_path(), &c2.state_dir, &c2.cfg).expect_err("must fail");
    assert_eq!(err.kind(), RuntimeErrorKind::CommandNotExecutable);
    // Nothing is left mounted after a failed start.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&c.state_dir.display().to_string()));
}

#[test]
fn stdin_through_attach() {
    require_root!();
    let mut c = TestContainer::new("stdin", &["sh", "-c", "read line; echo got:$line; cat"]);
    c.cfg.process.open_stdin = true;
    c.cfg.process.stdin_once = true;
    create(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("create");
    let shim = connect(&c);
    assert_eq!(shim.state().expect("state").status, Status::Created);
    let mut s = shim.attach(true, true, true).expect("attach");
    shim.start().expect("start");
    s.write_all(b"hello\nrest of input\n").expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let (out, _) = read_mux(s);
    assert_eq!(out, "got:hello\nrest of input\n");
    assert_eq!(shim.wait().expect("wait").exit_code, 0);
}

#[test]
fn tty_through_pty() {
    require_root!();
    let mut c = TestContainer::new("tty", &["sh"]);
    c.cfg.process.tty = true;
    c.cfg.process.open_stdin = true;
    c.cfg.process.console_size = Some((30, 100));
    create(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("create");
    let shim = connect(&c);
    let mut s = shim.attach(true, true, true).expect("attach");
    shim.start().expect("start");
    s.write_all(b"tty; stty size\n").expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    shim.resize(40, 120).expect("resize");
    s.write_all(b"stty size; exit 5\n").expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    seen.extend_from_slice(&out);
    let out = String::from_utf8_lossy(&seen);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("40 120"), "{out}");
    assert_eq!(shim.wait().expect("wait").exit_code, 5);
}

#[test]
fn oom_killed_is_reported() {
    require_root!();
    let mut c = TestContainer::new("oom", &["sh", "-c", "head -c 100m /dev/zero | tail"]);
    c.cfg.resources.memory = Some(32 * 1024 * 1024);
    let exit = run_to_exit(&c);
    assert!(exit.oom_killed, "{exit:?}");
    assert_ne!(exit.exit_code, 0);
}

#[test]
fn pids_limit_applies() {
    require_root!();
    let mut c = TestContainer::new(
        "pids",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 12 ]; do sleep 5 & i=$((i+1)); done; echo spawned",
        ],
    );
    c.cfg.resources.pids_limit = Some(6);
    c.cfg.resources.cpus = Some(0.5);
    c.cfg.resources.cpuset_cpus = Some("0".into());
    c.cfg.resources.cpu_shares = Some(512);
    c.cfg.resources.blkio_weight = Some(300);
    c.cfg.resources.memory = Some(64 << 20);
    create(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("create");
    let shim = connect(&c);
    let stats = shim.stats().expect("stats");
    assert_eq!(stats.pids_limit, Some(6));
    assert_eq!(stats.memory_limit, 64 << 20);
    let cg = berth_runtime::Cgroup::for_path(&berth_runtime::cgroups_path(&c.cfg));
    if let Some(cpu) = cg.v1.get("cpu") {
        let quota = std::fs::read_to_string(cpu.join("cpu.cfs_quota_us")).expect("quota");
        assert_eq!(quota.trim(), "50000");
    }
    let s = shim.attach(false, true, true).expect("attach");
    shim.start().expect("start");
    let (out, err) = read_mux(s);
    shim.wait().expect("wait");
    assert!(!out.contains("spawned"), "{out} {err}");
    assert!(err.contains("can't fork"), "{out} {err}");
}

#[test]
fn capabilities_match_docker_defaults() {
    require_root!();
    let c = TestContainer::new(
        "caps",
        &["sh", "-c", "grep Cap /proc/self/status; ls /proc/1/fd"],
    );
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0);
    let log = c.logs();
    // Docker's default set: 0x00000000a80425fb.
    assert!(log.contains("CapBnd:\t00000000a80425fb"), "{log}");
    assert!(log.contains("CapEff:\t00000000a80425fb"), "{log}");
    assert!(log.contains("CapInh:\t0000000000000000"), "{log}");
    assert!(log.contains("CapAmb:\t0000000000000000"), "{log}");
}

#[test]
fn only_stdio_fds_in_container() {
    require_root!();
    let c = TestContainer::new("fds", &["ls", "/proc/self/fd"]);
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0);
    // ls itself opens the directory (fd 3); nothing else leaks in.
    assert_eq!(c.logs(), "0\n1\n2\n3\n");
    let c = TestContainer::new("fds1", &["sh", "-c", "ls /proc/1/fd; true"]);
    run_to_exit(&c);
    assert_eq!(c.logs(), "0\n1\n2\n");
}

#[test]
fn user_and_groups_from_rootfs() {
    require_root!();
    let mut c = TestContainer::new("user", &["sh", "-c", "id; echo $HOME; pwd"]);
    c.cfg.process.user = "alice".into();
    c.cfg.process.cwd = "/work/dir".into();
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0, "{}", c.logs());
    let log = c.logs();
    assert!(log.contains("uid=1000(alice) gid=1000(alice)"), "{log}");
    assert!(
        log.contains("10(wheel)") && log.contains("29(audio)"),
        "{log}"
    );
    assert!(log.contains("/home/alice\n/work/dir\n"), "{log}");

    let mut c = TestContainer::new("user2", &["id"]);
    c.cfg.process.user = "4242:29".into();
    run_to_exit(&c);
    assert!(c.logs().contains("uid=4242 gid=29(audio)"), "{}", c.logs());

    let mut c = TestContainer::new("user3", &["id"]);
    c.cfg.process.user = "bob".into();
    let err = start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect_err("unknown user");
    assert_eq!(err.kind(), RuntimeErrorKind::InvalidArgument);
    assert!(err.to_string().contains("unable to find user bob"), "{err}");
}

#[test]
fn exec_with_and_without_tty() {
    require_root!();
    let c = TestContainer::new("exec", &["sleep", "20"]);
    start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let shim = connect(&c);
    let p = berth_runtime::ProcessConfig {
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo out; echo err >&2; exit 7".into(),
        ],
        ..Default::default()
    };
    let (id, pid, s) = shim.exec(&p, false).expect("exec");
    assert!(pid > 0);
    let (out, err) = read_mux(s);
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    assert_eq!(shim.exec_wait(&id).expect("exec wait"), 7);

    let p = berth_runtime::ProcessConfig {
        args: vec!["cat".into()],
        ..Default::default()
    };
    let (id, _, mut s) = shim.exec(&p, true).expect("exec stdin");
    s.write_all(b"piped\n").expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let (out, _) = read_mux(s);
    assert_eq!(out, "piped\n");
    assert_eq!(shim.exec_wait(&id).expect("exec wait"), 0);

    let p = berth_runtime::ProcessConfig {
        args: vec!["sh".into()],
        tty: true,
        ..Default::default()
    };
    let (id, _, mut s) = shim.exec(&p, true).expect("exec tty");
    s.write_all(b"tty; exit 2\n").expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(
        String::from_utf8_lossy(&out).contains("/dev/pts/"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(shim.exec_wait(&id).expect("exec wait"), 2);

    let p = berth_runtime::ProcessConfig {
        args: vec!["nosuch".into()],
        ..Default::default()
    };
    let err = shim.exec(&p, false).expect_err("not found");
    assert_eq!(err.kind(), RuntimeErrorKind::CommandNotFound);

    let rss = std::fs::read_to_string(format!("/proc/{}/status", c.shim_pid().expect("shim pid")))
        .expect("status")
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    eprintln!("shim {rss}");
    // HARDENING A4 #41: none of the shim's sockets is in the abstract namespace.
    let shim_pid = c.shim_pid().expect("shim pid");
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{shim_pid}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .map(|i| i.trim_end_matches(']').to_string())
        })
        .collect();
    assert!(!inodes.is_empty());
    let unix = std::fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    for line in unix.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 8 && inodes.iter().any(|i| i == f[6]) {
            assert!(!f[7].starts_with('@'), "abstract socket: {line}");
        }
    }
    shim.kill(9, false).expect("kill");
    let exit = shim.wait().expect("wait");
    assert_eq!(exit.exit_code, 137);
    assert_eq!(exit.signal, Some(9));
}

#[test]
fn pause_resume_and_top() {
    require_root!();
    let c = TestContainer::new("pause", &["sleep", "100"]);
    let started = start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let shim = connect(&c);
    assert_eq!(shim.pids().expect("pids"), vec![started.pid]);
    shim.pause().expect("pause");
    assert_eq!(shim.state().expect("state").status, Status::Paused);
    let p = berth_runtime::ProcessConfig {
        args: vec!["true".into()],
        ..Default::default()
    };
    let err = shim.exec(&p, false).expect_err("paused");
    assert_eq!(err.kind(), RuntimeErrorKind::Conflict);
    shim.resume().expect("resume");
    assert_eq!(shim.state().expect("state").status, Status::Running);
    // SIGKILL to everything also ends a paused container.
    let c2 = TestContainer::new("pause2", &["sleep", "100"]);
    start(common::shim_exe().as_path(), &c2.state_dir, &c2.cfg).expect("start");
    let shim2 = connect(&c2);
    shim2.pause().expect("pause");
    shim2.kill(9, true).expect("kill paused");
    assert_eq!(shim2.wait().expect("wait").exit_code, 137);
    let st = shim.stats().expect("stats");
    assert!(st.memory_usage > 0 && st.cpu_usage_ns > 0, "{st:?}");
    // pid 1 ignores SIGTERM without a handler (like in Docker): SIGKILL everything.
    shim.kill(9, true).expect("kill");
    assert_eq!(shim.wait().expect("wait").exit_code, 137);
}

#[test]
fn read_only_rootfs() {
    require_root!();
    let mut c = TestContainer::new(
        "ro",
        &["sh", "-c", "echo ok > /scratch/f && cat /scratch/f && grep /scratch /proc/mounts; touch /x || exit 9; exit 0"],
    );
    c.cfg.read_only_rootfs = true;
    c.cfg.mounts.push(berth_runtime::MountConfig {
        kind: berth_runtime::MountKind::Tmpfs,
        destination: "/scratch".into(),
        options: vec!["size=1m".into()],
        ..Default::default()
    });
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 9);
    let log = c.logs();
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(log.contains("ok\n"), "{log}");
    assert!(
        log.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{log}"
    );
    assert!(log.contains("size=1024k"), "{log}");
}

#[test]
fn bind_mount_symlink_stays_inside_root() {
    require_root!();
    let guard = common::HostDir::new("escape");
    let host_target = guard.0.clone();
    let mut c = TestContainer::new("symlink", &["sh", "-c", "cat /evil/data/marker"]);
    // The container's /evil points at a host path; the mount must land inside the root.
    std::os::unix::fs::symlink(&host_target, c.dir.join("upper/evil")).expect("symlink");
    let src = c.dir.join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("marker"), "inside\n").expect("marker");
    c.cfg.mounts.push(berth_runtime::MountConfig {
        kind: berth_runtime::MountKind::Bind,
        source: src.display().to_string(),
        destination: "/evil/data".into(),
        options: vec!["ro".into()],
        propagation: None,
    });
    let exit = run_to_exit(&c);
    let escaped = host_target.join("data").exists();
    assert!(!escaped, "mount destination was created on the host");
    assert_eq!(exit.exit_code, 0, "{}", c.logs());
    assert_eq!(c.logs(), "inside\n");
}

#[test]
fn network_none_has_loopback_up_and_init() {
    require_root!();
    let mut c = TestContainer::new("net", &["sh", "-c", "cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; ls /sys/class/net; cat /proc/1/cmdline | tr '\\0' ' '"]);
    c.cfg.init = true;
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0, "{}", c.logs());
    let log = c.logs();
    assert!(log.contains("0x9"), "{log}");
    assert!(log.contains("lo\n") && !log.contains("eth0"), "{log}");
    assert!(log.contains("/sbin/docker-init -- sh"), "{log}");
}

#[test]
fn shim_survives_daemon_death_and_reconnects() {
    require_root!();
    let c = TestContainer::new(
        "survive",
        &["sh", "-c", "echo before; read x; echo after:$x"],
    );
    let mut cfg = c.cfg.clone();
    cfg.process.open_stdin = true;
    // The "daemon": a separate process that starts the container and dies by SIGKILL.
    let cfg_file = c.dir.join("daemon-config.json");
    std::fs::write(&cfg_file, serde_json::to_vec(&cfg).expect("json")).expect("write config");
    let status = std::process::Command::new(common::SHIM)
        .arg("start-and-die")
        .arg(&c.state_dir)
        .arg(&cfg_file)
        .status()
        .expect("run daemon stand-in");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "daemon stand-in failed: {status:?}"
    );
    let shim = connect(&c);
    assert_eq!(shim.state().expect("state").status, Status::Running);
    let mut s = shim.attach(true, true, false).expect("attach");
    s.write_all(b"ok\n").expect("write");
    let exit = shim.wait().expect("wait");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(c.logs(), "before\nafter:ok\n");
    assert!(Shim::connect(&c.state_dir).expect("connect").is_none());
    let _ = wait_exit(&c);
}

#[test]
fn external_runc_runtime() {
    require_root!();
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(runc) = runc else {
        eprintln!("skipping: runc not installed");
        return;
    };
    let mut c = TestContainer::new(
        "runc",
        &["sh", "-c", "echo hi; read x; echo got:$x; exit 4"],
    );
    c.cfg.runtime = Some(runc.into());
    c.cfg.process.open_stdin = true;
    create(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("create");
    let shim = connect(&c);
    let mut s = shim.attach(true, true, true).expect("attach");
    shim.start().expect("start");
    let p = berth_runtime::ProcessConfig {
        args: vec!["sh".into(), "-c".into(), "echo exec:$HOSTNAME".into()],
        ..Default::default()
    };
    let (id, _, es) = shim.exec(&p, false).expect("exec");
    let (out, _) = read_mux(es);
    assert_eq!(out, "exec:testhost\n");
    assert_eq!(shim.exec_wait(&id).expect("exec wait"), 0);
    s.write_all(b"yes\n").expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let (out, _) = read_mux(s);
    assert_eq!(out, "hi\ngot:yes\n");
    assert_eq!(shim.wait().expect("wait").exit_code, 4);
    assert_eq!(c.logs(), "hi\ngot:yes\n");

    let mut c = TestContainer::new("runc-nosuch", &["nosuch"]);
    c.cfg.runtime = Some(runc.into());
    let err = start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect_err("not found");
    assert_eq!(err.kind(), RuntimeErrorKind::CommandNotFound);
}

#[test]
fn seccomp_default_and_privileged() {
    require_root!();
    let c = TestContainer::new(
        "seccomp",
        &["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -n true; cat /proc/kcore | head -c 1 | wc -c"],
    );
    run_to_exit(&c);
    let log = c.logs();
    assert!(log.contains("Seccomp:\t2"), "{log}");
    assert!(log.contains("NoNewPrivs:\t0"), "{log}");
    assert!(log.contains("Operation not permitted"), "{log}");
    assert!(
        log.lines().any(|l| l == "0"),
        "masked /proc/kcore reads empty: {log}"
    );

    let mut c = TestContainer::new(
        "nnp",
        &[
            "sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        ],
    );
    c.cfg.security_opt.no_new_privileges = true;
    run_to_exit(&c);
    let log = c.logs();
    assert!(
        log.contains("Seccomp:\t2") && log.contains("NoNewPrivs:\t1"),
        "{log}"
    );

    let mut c = TestContainer::new(
        "privileged",
        &[
            "sh",
            "-c",
            "grep -E '^(Seccomp|CapEff):' /proc/self/status; ls /dev | grep -c .",
        ],
    );
    c.cfg.privileged = true;
    c.cfg.security_opt.no_new_privileges = true;
    run_to_exit(&c);
    let log = c.logs();
    let host_bnd = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .expect("CapBnd");
    assert!(
        log.contains(&format!("CapEff:\t{host_bnd}")),
        "{log} vs {host_bnd}"
    );
    assert!(log.contains("Seccomp:\t0"), "{log}");
}

/// Prints the shim's memory use (not asserted): `cargo test -- --ignored --nocapture shim_memory`.
#[test]
#[ignore]
fn shim_memory() {
    require_root!();
    let c = TestContainer::new("mem", &["sleep", "30"]);
    start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let pid = c.shim_pid().expect("shim pid");
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    eprintln!("{rollup}");
    let shim = connect(&c);
    let p = berth_runtime::ProcessConfig {
        args: vec!["true".into()],
        ..Default::default()
    };
    let (id, _, s) = shim.exec(&p, false).expect("exec");
    read_mux(s);
    shim.exec_wait(&id).expect("exec wait");
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    eprintln!("after one exec: {rss}");
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut cur = String::new();
    for l in smaps.lines() {
        if !l.contains(':') || l.split_whitespace().next().is_some_and(|w| w.contains('-')) {
            cur = l.to_string();
        } else if let Some(v) = l.strip_prefix("Rss:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            if kb >= 64 {
                eprintln!("{kb:>6} kB {cur}");
            }
        }
    }
    connect(&c).kill(9, false).expect("kill");
}

#[test]
fn cleanup_after_shim_was_killed() {
    require_root!();
    let c = TestContainer::new("orphan", &["sleep", "60"]);
    let started = start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let shim_pid = c.shim_pid().expect("shim pid");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };
    while std::path::Path::new(&format!("/proc/{shim_pid}/cmdline")).exists()
        && std::fs::read(format!("/proc/{shim_pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        std::thread::yield_now();
    }
    assert!(Shim::connect(&c.state_dir).expect("connect").is_none());
    berth_runtime::cleanup(&c.state_dir, &c.cfg).expect("cleanup");
    berth_runtime::cleanup(&c.state_dir, &c.cfg).expect("cleanup is idempotent");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&c.state_dir.display().to_string()));
    let cg = berth_runtime::Cgroup::for_path(&berth_runtime::cgroups_path(&c.cfg));
    assert!(cg.v1.values().chain(cg.v2.iter()).all(|d| !d.exists()));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", started.pid)).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "container init still alive: {stat}"
    );
}

/// HARDENING A4 #38: with Docker's default profile, a syscall the profile does not know gets
/// ENOSYS (so glibc falls back), one it denies gets EPERM, and clone3 without CAP_SYS_ADMIN
/// gets ENOSYS. Needs a C compiler and static glibc to build the probe; skipped otherwise.
#[test]
fn seccomp_unknown_syscalls_get_enosys() {
    require_root!();
    let c = TestContainer::new("enosys", &["/probe"]);
    let src = c.dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    long r = syscall(1000);          /* no such syscall (yet) */
    printf("unknown=%d\n", r < 0 ? errno : 0);
    r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
    printf("keyctl=%d\n", r < 0 ? errno : 0);
    r = syscall(SYS_clone3, 0, 0);
    printf("clone3=%d\n", r < 0 ? errno : 0);
    return 0;
}
"#,
    )
    .expect("write probe.c");
    let built = std::process::Command::new("cc")
        .args(["-static", "-O0", "-o"])
        .arg(c.dir.join("upper/probe"))
        .arg(&src)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot build a static C probe (cc / libc.a missing)");
        return;
    }
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0, "{}", c.logs());
    let log = c.logs();
    assert!(log.contains("unknown=38\n"), "{log}");
    assert!(log.contains("keyctl=1\n"), "{log}");
    assert!(log.contains("clone3=38\n"), "{log}");
}

/// HARDENING A4 #31: a mount destination whose parent is swapped between a directory and a
/// symlink to a host path while containers start. Starts may fail; nothing may appear on the
/// host side.
#[test]
fn racing_symlink_flipper_is_contained() {
    require_root!();
    let guard = common::HostDir::new("flip");
    let host_target = guard.0.clone();
    let base = TestContainer::new("flip", &["true"]);
    // A plain-directory rootfs (bind-mounted) so the flipper can change it while it is live.
    let root = base.dir.join("plainroot");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::busybox_rootfs())
        .arg(&root)
        .status()
        .expect("cp");
    assert!(cp.success());
    let src = base.dir.join("src");
    std::fs::create_dir_all(&src).expect("src");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (root, host_target, stop) = (root.clone(), host_target.clone(), stop.clone());
        std::thread::spawn(move || {
            let link = root.join("flip");
            let tmp_link = root.join("flip.link");
            let tmp_dir = root.join("flip.dir");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp_link);
                let _ = std::os::unix::fs::symlink(&host_target, &tmp_link);
                let _ = std::fs::rename(&tmp_link, &link);
                let _ = std::fs::create_dir(&tmp_dir);
                let _ = std::fs::remove_dir_all(&link);
                let _ = std::fs::rename(&tmp_dir, &link);
            }
        })
    };
    for i in 0..15 {
        let mut c = TestContainer::new(&format!("flip{i}"), &["true"]);
        c.cfg.rootfs = berth_runtime::RootfsMount {
            fstype: String::new(),
            source: root.display().to_string(),
            options: vec![],
        };
        c.cfg.mounts.push(berth_runtime::MountConfig {
            kind: berth_runtime::MountKind::Bind,
            source: src.display().to_string(),
            destination: "/flip/data".into(),
            ..Default::default()
        });
        if start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).is_ok() {
            wait_exit(&c);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flipper.join();
    let escaped: Vec<_> = std::fs::read_dir(&host_target)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(escaped.is_empty(), "created on the host: {escaped:?}");
}

/// Images with many layers: overlay options longer than a page (mount(2)'s limit).
#[test]
fn overlay_with_many_long_lowerdirs() {
    require_root!();
    let mut c = TestContainer::new("layers", &["sh", "-c", "cat /layer-0 /layer-59"]);
    let mut lowers = Vec::new();
    for i in 0..60 {
        let d = c.dir.join(format!("layer-{i:02}-{}", "x".repeat(60)));
        std::fs::create_dir_all(&d).expect("layer");
        std::fs::write(d.join(format!("layer-{i}")), format!("{i}\n")).expect("file");
        lowers.push(d.display().to_string());
    }
    lowers.push(common::busybox_rootfs().display().to_string());
    c.cfg.rootfs.options[0] = format!("lowerdir={}", lowers.join(":"));
    assert!(c.cfg.rootfs.options.join(",").len() > 4096);
    let exit = run_to_exit(&c);
    assert_eq!(exit.exit_code, 0, "{}", c.logs());
    assert_eq!(c.logs(), "0\n59\n");
}

fn health_until(shim: &Shim, status: &str) -> berth_runtime::Health {
    // Probes run every 100 ms; give a loaded machine plenty of room.
    for _ in 0..600 {
        if let Some(h) = shim.health().expect("health") {
            if h.status == status {
                return h;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("health never became {status}: {:?}", shim.health());
}

#[test]
fn health_checks_run_in_the_shim() {
    require_root!();
    let c = TestContainer::new("health", &["sleep", "60"]);
    let hc = berth_runtime::HealthConfig {
        test: vec!["CMD-SHELL".into(), "cat /tmp/ok".into()],
        interval: 100_000_000,
        timeout: 5_000_000_000,
        retries: 2,
        ..Default::default()
    };
    berth_runtime::health::set_config(&c.state_dir, Some(&hc)).expect("health config");
    start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let shim = connect(&c);
    let h = health_until(&shim, "unhealthy");
    assert!(h.failing_streak >= 2);
    assert!(h.log.iter().all(|r| r.exit_code == 1), "{h:?}");
    assert!(h.log[0].output.contains("No such file"), "{h:?}");
    let p = berth_runtime::ProcessConfig {
        args: vec!["sh".into(), "-c".into(), "echo fine > /tmp/ok".into()],
        ..Default::default()
    };
    let (id, _, s) = shim.exec(&p, false).expect("exec");
    read_mux(s);
    assert_eq!(shim.exec_wait(&id).expect("exec wait"), 0);
    let h = health_until(&shim, "healthy");
    assert_eq!(h.failing_streak, 0);
    assert_eq!(h.log.last().expect("log").output, "fine\n");
    assert_eq!(
        berth_runtime::read_health(&c.state_dir)
            .expect("read")
            .map(|h| h.status),
        Some("healthy".to_string())
    );
    shim.kill(9, false).expect("kill");
    shim.wait().expect("wait");

    // --health-on-failure kill
    let c = TestContainer::new("health-kill", &["sleep", "60"]);
    let hc = berth_runtime::HealthConfig {
        test: vec!["CMD".into(), "false".into()],
        interval: 100_000_000,
        retries: 1,
        on_failure: berth_runtime::HealthAction::Kill,
        ..Default::default()
    };
    berth_runtime::health::set_config(&c.state_dir, Some(&hc)).expect("health config");
    start(common::shim_exe().as_path(), &c.state_dir, &c.cfg).expect("start");
    let exit = wait_exit(&c);
    assert_eq!(exit.exit_code, 137);
    assert_eq!(
        berth_runtime::read_health(&c.state_dir)
            .expect("read")
            .map(|h| h.status),
        Some("unhealthy".to_string())
    );
}
