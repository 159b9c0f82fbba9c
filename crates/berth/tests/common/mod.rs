//! Test harness: a private berth daemon per test (own data root, exec root, socket and cgroup
//! parent), a busybox image imported into it, and a guard that removes everything on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Lazily unmount everything mounted at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = dir.to_string_lossy();
    let mut mps: Vec<&str> = m.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(prefix.as_ref())).collect();
    mps.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in mps {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The busybox rootfs tar, made once per test binary.
pub fn busybox_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("berth-test-busybox-{}.tar", std::process::id()));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mk-busybox-rootfs.sh");
        let st = Command::new("bash").arg(script).arg(&p).status().expect("run mk-busybox-rootfs.sh");
        assert!(st.success(), "mk-busybox-rootfs.sh failed");
        p
    })
    .clone()
}

pub struct Daemon {
    pub dir: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
    pub name: String,
    /// Extra environment for the daemon process (e.g. `BERTH_FAULTS`, `LD_PRELOAD`).
    pub env: Vec<(String, String)>,
    /// A command the daemon is started through (`argv[0..]` before berth's own), e.g. one
    /// that moves itself into a cgroup and then execs the rest.
    pub wrapper: Vec<String>,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: stdout={:?} stderr={:?}", self.stdout, self.stderr);
        self
    }
}

impl Daemon {
    /// Start a daemon in a fresh directory, with `busybox:latest` imported.
    pub fn start(name: &str) -> Daemon {
        let d = Self::start_bare(name);
        d.berth(&["import", "--change", "CMD [\"sh\"]", busybox_tar().to_str().unwrap(), "busybox:latest"]).ok();
        d
    }

    pub fn start_bare(name: &str) -> Daemon {
        let name = format!("{name}-{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/berth-t-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("berth.sock");
        let mut d = Daemon { dir, sock, child: None, name, env: Vec::new(), wrapper: Vec::new() };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let mut cmd = match self.wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(BERTH);
                c
            }
            None => Command::new(BERTH),
        };
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["daemon", "--data-root"])
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("run"))
            .arg("--cgroup-parent")
            .arg(format!("berth-test-{}", self.name))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .arg("--bridge")
            .arg(self.bridge())
            .arg("--nft-table")
            .arg(format!("berth-t-{}", self.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up: {}", self.log());
    }

    /// SIGKILL the daemon (containers keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.sock);
    }

    /// The daemon's pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the daemon process has exited (it killed itself at a fault point, say);
    /// reaps it then.
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                self.child = None;
                let _ = std::fs::remove_file(&self.sock);
                true
            }
            _ => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.env("BERTH_HOST", format!("unix://{}", self.sock.display()));
        c.args(args);
        c
    }

    pub fn berth(&self, args: &[&str]) -> Out {
        Out::from(self.cmd(args).stdin(Stdio::null()).output().expect("run berth"))
    }

    pub fn berth_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        use std::io::Write;
        let mut child = self.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let t = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let o = child.wait_with_output().unwrap();
        let _ = t.join();
        Out::from(o)
    }

    /// A bridge device name unique to this daemon (15 characters at most).
    pub fn bridge(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.name.hash(&mut h);
        format!("bt{:08x}", h.finish() as u32)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq"]).stdout;
            for id in ids.split_whitespace() {
                let _ = self.berth(&["rm", "-f", id]);
            }
        }
        self.kill9();
        // Anything still running from this daemon (killed daemons leave shims behind).
        let run = self.dir.join("run");
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for p in $(grep -l '{}' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do kill -9 $p 2>/dev/null; done",
                run.display()
            ))
            .status();
        std::thread::sleep(Duration::from_millis(50));
        unmount_under(&self.dir);
        let _ = Command::new("nft").args(["delete", "table", "ip", &format!("berth-t-{}", self.name)]).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).stderr(Stdio::null()).status();
        // user-network bridges of this daemon carry the alias `berth:<table>:<network id>`
        if let Ok(o) = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output() {
            let mark = format!("alias berth:berth-t-{}:", self.name);
            for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains(&mark)) {
                if let Some(dev) = line.split(": ").nth(1).map(|d| d.split('@').next().unwrap_or(d).to_string()) {
                    let _ = Command::new("ip").args(["link", "del", &dev]).stderr(Stdio::null()).status();
                }
            }
        }
        let _ = Command::new("nft").args(["delete", "table", "ip", &format!("berth-t-{}", self.name)]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).stderr(Stdio::null()).status();
        for ctrl in ["cpu", "cpuacct", "memory", "pids", "freezer", "devices", "blkio", "cpuset", "systemd", "unified"] {
            let base = PathBuf::from(format!("/sys/fs/cgroup/{ctrl}/berth-test-{}", self.name));
            if let Ok(rd) = std::fs::read_dir(&base) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&base);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("daemon log ({}):\n{}", self.dir.display(), self.log());
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A private dockerd (Debian's docker.io) for the differential test, stopped on drop.
pub struct DockerD {
    pub dir: PathBuf,
    pub sock: PathBuf,
    child: std::process::Child,
}

impl DockerD {
    pub fn start() -> Option<DockerD> {
        if !std::path::Path::new("/usr/sbin/dockerd").exists() || !std::path::Path::new("/usr/bin/docker").exists() {
            eprintln!("skipping the docker comparison: dockerd or /usr/bin/docker is not installed");
            return None;
        }
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/berth-dd-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok()?;
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).ok()?;
        let child = std::process::Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("run"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().ok()?)
            .stderr(log)
            .spawn()
            .ok()?;
        let dd = DockerD { dir, sock, child };
        for _ in 0..300 {
            if dd.docker(&["info"]).status.success() {
                return Some(dd);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "skipping the docker comparison: dockerd did not start: {}",
            std::fs::read_to_string(dd.dir.join("dockerd.log")).unwrap_or_default().lines().last().unwrap_or("")
        );
        None
    }

    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("/usr/bin/docker")
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .expect("run docker")
    }
}

impl Drop for DockerD {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}


/// `berth registry serve` on a free 127.0.0.1 port with a temporary root: the push/pull
/// target of the registry tests. Killed and its root removed on drop.
pub struct BerthRegistry {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub port: u16,
}

impl BerthRegistry {
    pub fn start(name: &str) -> BerthRegistry {
        let dir = PathBuf::from(format!("/tmp/berth-reg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(BERTH)
            .args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berth registry serve");
        let reg = BerthRegistry { child, dir, addr, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&reg.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "berth registry serve did not come up on {}: {}",
                reg.addr,
                std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
