//! Shared helpers for the root-only integration tests: a busybox rootfs, per-test overlay
//! roots and state dirs with unique names, and a guard that cleans up even on failure.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_runtime::{ContainerConfig, ProcessConfig, RootfsMount};

pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-runtime-shim");

/// The shim binary (`BERTH_TEST_SHIM` overrides it, e.g. with an strace wrapper).
pub fn shim_exe() -> std::path::PathBuf {
    std::env::var_os("BERTH_TEST_SHIM")
        .map(Into::into)
        .unwrap_or_else(|| SHIM.into())
}

/// `None` (and a printed reason) when the host cannot run these tests.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("/bin/busybox (busybox-static) missing".into());
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(r) = common::skip_reason() {
            eprintln!("skipping: {r}");
            return;
        }
    };
}
pub(crate) use require_root;

fn base_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/berth-rt-test-{}", std::process::id()))
}

/// A busybox rootfs shared (read-only, as overlay lower layer) by all tests of this process.
pub fn busybox_rootfs() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Shared by every test run: built once into a temp name, then renamed into place.
        let done = PathBuf::from("/tmp/berth-rt-test-busybox");
        if done.join("bin/sh").exists() {
            return done;
        }
        let root = base_dir().join("busybox");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        for d in ["proc", "sys", "dev", "etc", "tmp", "root", "home/alice", "usr/bin", "sbin"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        let list = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nwheel:x:10:root,alice\naudio:x:29:alice\nalice:x:1000:\nnogroup:x:65534:\n",
        )
        .expect("group");
        std::fs::set_permissions(root.join("tmp"), std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .expect("chmod tmp");
        if std::fs::rename(&root, &done).is_err() {
            let _ = std::fs::remove_dir_all(&root);
        }
        done
    })
}

/// One test container: config, state dir, overlay dirs; cleans up on drop.
pub struct TestContainer {
    pub cfg: ContainerConfig,
    pub state_dir: PathBuf,
    pub dir: PathBuf,
}

impl TestContainer {
    pub fn new(name: &str, args: &[&str]) -> TestContainer {
        let lower = busybox_rootfs();
        let dir = base_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["upper", "work", "state"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let id = format!("berthtest-{}-{name}", std::process::id());
        let cfg = ContainerConfig {
            id,
            rootfs: RootfsMount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", lower.display()),
                    format!("upperdir={}", dir.join("upper").display()),
                    format!("workdir={}", dir.join("work").display()),
                ],
            },
            process: ProcessConfig {
                args: args.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            hostname: "testhost".into(),
            cgroup_parent: "berth-test".into(),
            stop_signal: 15,
            ..Default::default()
        };
        TestContainer {
            cfg,
            state_dir: dir.join("state"),
            dir,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}-json.log", self.cfg.id))
    }

    /// The `log` fields of the json log, concatenated.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["log"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn shim_pid(&self) -> Option<i32> {
        // The shim's cwd is the state dir; find it through /proc.
        let want = std::fs::canonicalize(&self.state_dir).ok()?;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmd).contains("berth-runtime-shim") {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/cwd"))
                .ok()
                .as_deref()
                == Some(&want)
            {
                return Some(pid);
            }
        }
        None
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        if let Ok(Some(s)) = berth_runtime::Shim::connect(&self.state_dir) {
            let _ = s.resume();
            let _ = s.kill(9, true);
            let _ = s.wait();
        }
        if let Some(pid) = self.shim_pid() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = berth_runtime::cleanup(&self.state_dir, &self.cfg);
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_dir(base_dir());
        }
    }
}

/// Read a multiplexed attach/exec stream to EOF: (stdout, stderr).
pub fn read_mux(mut s: UnixStream) -> (String, String) {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i + 8 <= all.len() {
        let len = u32::from_be_bytes([all[i + 4], all[i + 5], all[i + 6], all[i + 7]]) as usize;
        let end = (i + 8 + len).min(all.len());
        match all[i] {
            2 => err.extend_from_slice(&all[i + 8..end]),
            _ => out.extend_from_slice(&all[i + 8..end]),
        }
        i = end;
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

pub fn write_all(s: &mut UnixStream, b: &[u8]) {
    s.write_all(b).expect("write stream");
}

/// Start, wait for the exit, return it (exit.json when the shim is already gone).
pub fn run_to_exit(c: &TestContainer) -> berth_runtime::ExitStatus {
    berth_runtime::start(&shim_exe(), &c.state_dir, &c.cfg).expect("start");
    wait_exit(c)
}

pub fn wait_exit(c: &TestContainer) -> berth_runtime::ExitStatus {
    match berth_runtime::Shim::connect(&c.state_dir).expect("connect") {
        Some(s) => s.wait().expect("wait"),
        None => berth_runtime::read_exit(&c.state_dir)
            .expect("read exit")
            .expect("exit.json"),
    }
}

/// A host directory removed on drop (even when the test fails).
pub struct HostDir(pub PathBuf);

impl HostDir {
    pub fn new(tag: &str) -> HostDir {
        let p = PathBuf::from(format!("/tmp/berth-rt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("host dir");
        HostDir(p)
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
