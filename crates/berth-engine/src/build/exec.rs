//! The narrow executor: run one process in a container for a RUN step, and mount/unmount
//! the overlay views COPY and `COPY --from` need. Nothing here knows about Dockerfiles.

use super::{BuildError, BuildErrorKind, BuildMessage};
use crate::Engine;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A mounted overlay, unmounted (lazily, detached) on drop.
pub struct OverlayMount {
    pub target: PathBuf,
    mounted: bool,
}

impl OverlayMount {
    /// Mounts an overlay with these `lowerdir=...,upperdir=...` options at `target`.
    pub fn mount(target: &Path, options: &[String]) -> Result<Self, BuildError> {
        std::fs::create_dir_all(target).map_err(|e| internal(format!("create {}: {e}", target.display())))?;
        let opts = options.join(",");
        if opts.len() >= 4000 {
            return Err(internal("overlay options exceed the page size (too many layers)"));
        }
        nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
            .map_err(|e| internal(format!("mount overlay at {}: {e}", target.display())))?;
        Ok(Self { target: target.to_path_buf(), mounted: true })
    }

    /// A read-only overlay of `lowers` (topmost first); `empty` is an empty directory used
    /// as the bottom layer so a single lower works too.
    pub fn mount_ro(target: &Path, lowers: &[PathBuf], empty: &Path) -> Result<Self, BuildError> {
        let mut all: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        all.push(empty.display().to_string());
        Self::mount(target, &[format!("lowerdir={}", all.join(":"))])
    }

    /// Unmounts now, reporting failures.
    pub fn unmount(mut self) -> Result<(), BuildError> {
        self.mounted = false;
        nix::mount::umount2(&self.target, nix::mount::MntFlags::empty())
            .or_else(|_| nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH))
            .map_err(|e| internal(format!("unmount {}: {e}", self.target.display())))
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn internal(msg: impl Into<String>) -> BuildError {
    BuildError::new(BuildErrorKind::Internal, msg)
}

/// What to run for a RUN step.
pub struct RunSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub host_network: bool,
    pub mounts: Vec<berth_runtime::MountConfig>,
}

/// Runs `spec` on the rootfs described by `rootfs` (an overlay mount) and streams its output
/// to `out`. Returns the exit code.
pub fn run_process(
    eng: &Engine,
    rootfs: &crate::snapshot::Mount,
    spec: &RunSpec,
    out: &(dyn Fn(BuildMessage) + Sync),
) -> Result<i64, BuildError> {
    use berth_runtime::*;
    let id = format!("build-{}", hex::encode(rand::random::<[u8; 8]>()));
    let state_dir = eng.config.exec_root.join("build").join(&id);
    std::fs::create_dir_all(&state_dir).map_err(|e| internal(format!("create {}: {e}", state_dir.display())))?;
    // the step's whole output is kept on disk; the client sees at most MAX_CLIENT_LOG bytes
    let logs = eng.config.data_root.join("build-logs");
    std::fs::create_dir_all(&logs).map_err(|e| internal(format!("create {}: {e}", logs.display())))?;
    let log_path = logs.join(format!("{id}.log"));
    let mut mounts = Vec::new();
    if spec.host_network {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(f).exists() {
                mounts.push(MountConfig {
                    kind: MountKind::Bind,
                    source: f.into(),
                    destination: f.into(),
                    options: vec!["rbind".into(), "ro".into()],
                    propagation: None,
                });
            }
        }
    }
    mounts.extend(spec.mounts.iter().cloned());
    let cfg = ContainerConfig {
        id: id.clone(),
        rootfs: RootfsMount { fstype: rootfs.fstype.clone(), source: rootfs.source.clone(), options: rootfs.options.clone() },
        process: ProcessConfig {
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd: if spec.cwd.is_empty() { "/".into() } else { spec.cwd.clone() },
            user: spec.user.clone(),
            ..Default::default()
        },
        hostname: "buildkitsandbox".into(),
        mounts,
        network: if spec.host_network { NetMode::Host } else { NetMode::None },
        cgroup_parent: eng.config.cgroup_parent.clone(),
        log: LogConfig { path: log_path.clone(), max_size: 0, max_file: 1 },
        stop_signal: libc::SIGTERM,
        ..Default::default()
    };
    let mut keep_log = false;
    let res = (|| -> Result<i64, BuildError> {
        let rt = |e: RuntimeError| internal(format!("run: {e}"));
        let started = create(&eng.config.exe, &state_dir, &cfg);
        match started {
            Err(RuntimeError::Start { reason: StartFailure::CommandNotFound, message }) => {
                out(BuildMessage::Stream(format!("{message}\n")));
                return Ok(127);
            }
            Err(RuntimeError::Start { reason: StartFailure::CommandNotExecutable, message }) => {
                out(BuildMessage::Stream(format!("{message}\n")));
                return Ok(126);
            }
            Err(e) => return Err(rt(e)),
            Ok(_) => {}
        }
        let shim = Shim::connect(&state_dir).map_err(rt)?.ok_or_else(|| internal("run: the shim exited before start"))?;
        let mut stream = shim.attach(false, true, true).map_err(rt)?;
        shim.start().map_err(rt)?;
        if pump(&mut stream, out, &log_path) {
            keep_log = true;
        }
        let st = shim.wait().map_err(rt)?;
        Ok(st.exit_code as i64)
    })();
    let _ = cleanup(&state_dir, &cfg);
    let _ = std::fs::remove_dir_all(&state_dir);
    if !keep_log {
        let _ = std::fs::remove_file(&log_path);
    }
    res
}

/// Most output bytes of one step sent to the client (BuildKit clips at 2 MiB too); the rest
/// is only in the step's log file, which the notice names.
pub const MAX_CLIENT_LOG: usize = 2 << 20;

/// Copies Docker-multiplexed output frames to `out` as stream messages, line-buffered, up
/// to [`MAX_CLIENT_LOG`] bytes; then a notice naming the full log. Returns whether the
/// output was clipped.
fn pump(stream: &mut impl Read, out: &(dyn Fn(BuildMessage) + Sync), log: &Path) -> bool {
    let mut hdr = [0u8; 8];
    let mut pending: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    let mut clipped = false;
    let flush = |pending: &mut Vec<u8>, all: bool, sent: &mut usize| {
        let cut = if all { pending.len() } else { pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
        if cut > 0 {
            let chunk: Vec<u8> = pending.drain(..cut).collect();
            *sent += chunk.len();
            out(BuildMessage::Stream(String::from_utf8_lossy(&chunk).into_owned()));
        }
    };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if stream.read_exact(&mut hdr).is_err() {
            break;
        }
        let mut len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        while len > 0 {
            let n = len.min(buf.len());
            if stream.read_exact(&mut buf[..n]).is_err() {
                len = usize::MAX;
                break;
            }
            len -= n;
            if clipped {
                continue;
            }
            let room = MAX_CLIENT_LOG.saturating_sub(sent + pending.len());
            pending.extend_from_slice(&buf[..n.min(room)]);
            if n > room {
                flush(&mut pending, true, &mut sent);
                clipped = true;
                out(BuildMessage::Stream(format!(
                    "\n[output clipped, log limit {} MiB reached; the full output is in {}]\n",
                    MAX_CLIENT_LOG >> 20,
                    log.display()
                )));
            }
        }
        if len == usize::MAX {
            break;
        }
        let big = pending.len() > 64 << 10;
        flush(&mut pending, big, &mut sent);
    }
    flush(&mut pending, true, &mut sent);
    clipped
}

/// Removes a mount-point stub the runtime created in `upper` for `dest` (an empty directory
/// or an empty regular file) when no lower layer has that path. Only our stub is removed:
/// anything else the step left there (a symlink, a non-empty file or directory) stays, and
/// so does whatever a symlink the step put in place of a parent of `dest` leads to (an
/// empty directory of the step's own, HARDENING A5 #45): the parent is opened beneath
/// `upper` without following any symlink. The lower layers are looked at inside their
/// roots too, never through a symlink to the host.
pub fn remove_stub(upper: &Path, lowers: &[PathBuf], dest: &str) {
    use rustix::fs::{AtFlags, OFlags, ResolveFlags};
    use std::os::fd::AsFd;
    let rel = dest.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", rel),
    };
    for l in lowers {
        let Ok(lroot) = berth_archive::open_root(l) else { continue };
        if let Ok(pfd) = berth_archive::open_in_root_at(lroot.as_fd(), parent.as_bytes(), OFlags::PATH | OFlags::DIRECTORY) {
            if rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return;
            }
        }
    }
    let Ok(root) = berth_archive::open_root(upper) else { return };
    let p = if parent.is_empty() { "." } else { parent };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
    let Ok(pfd) = rustix::fs::openat2(&root, p, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty(), resolve) else {
        return;
    };
    let Ok(st) = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) else { return };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let _ = rustix::fs::unlinkat(&pfd, name, AtFlags::REMOVEDIR);
        }
        libc::S_IFREG if st.st_size == 0 => {
            let _ = rustix::fs::unlinkat(&pfd, name, AtFlags::empty());
        }
        _ => {}
    }
}

/// Where the runtime put the mount point for `dest`: `dest` resolved in the image the step
/// started from (the `lowers`, top first) the way the runtime resolves destinations,
/// symlinks followed but scoped to the root (an absolute target or `..` never leaves it),
/// missing components appended as they are. `None` when `dest` has no symlink on its way
/// (then it is its own answer) or the links loop.
pub fn resolve_in_layers(lowers: &[PathBuf], dest: &str) -> Option<String> {
    use rustix::fs::{AtFlags, OFlags, ResolveFlags};
    use std::os::fd::AsFd;
    let roots: Vec<_> = lowers.iter().filter_map(|l| berth_archive::open_root(l).ok()).collect();
    // The first layer that has `dir/name`: its lstat and, for a symlink, its target. A
    // whiteout (0:0 character device) hides the name.
    let lookup = |dir: &[String], name: &str| -> Option<(rustix::fs::Stat, Option<Vec<u8>>)> {
        let p = if dir.is_empty() { ".".to_string() } else { dir.join("/") };
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        for r in &roots {
            let Ok(pfd) = rustix::fs::openat2(r.as_fd(), p.as_str(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty(), resolve) else {
                continue;
            };
            let Ok(st) = rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
            if st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0 {
                return None;
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                let t = rustix::fs::readlinkat(&pfd, name, Vec::new()).ok()?;
                return Some((st, Some(t.into_bytes())));
            }
            return Some((st, None));
        }
        None
    };
    let mut todo: Vec<String> = dest.split('/').filter(|c| !c.is_empty()).rev().map(String::from).collect();
    let mut done: Vec<String> = Vec::new();
    let (mut links, mut missing) = (0, false);
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        if !missing {
            match lookup(&done, &c) {
                Some((_, Some(target))) => {
                    links += 1;
                    if links > 40 {
                        return None;
                    }
                    let t = String::from_utf8_lossy(&target).into_owned();
                    if t.starts_with('/') {
                        done.clear();
                    }
                    todo.extend(t.split('/').filter(|c| !c.is_empty()).rev().map(String::from));
                    continue;
                }
                Some(_) => {}
                None => missing = true,
            }
        }
        done.push(c);
    }
    (links > 0).then(|| format!("/{}", done.join("/")))
}

/// True when a directory has no entries.
pub fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).map(|mut r| r.next().is_none()).unwrap_or(true)
}
