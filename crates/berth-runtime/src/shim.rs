//! The per-container shim: one small, single-threaded process per container.
//!
//! Lifecycle (`berth shim <state_dir>` → [`shim_main`]):
//! 1. fork once (the daemon reaps the first process at once), `setsid`, become a child
//!    subreaper, stdio to /dev/null and `shim.log`, cwd = the state dir (which is the bundle);
//! 2. listen on `<state_dir>/shim.sock`; mount the rootfs at `<state_dir>/rootfs`; resolve the
//!    user, create the cwd and check the executable inside the root; write `config.json`;
//! 3. create the container through the built-in runtime (youki's libcontainer) or an
//!    external OCI runtime, with pipes or a pty (received on a console socket) as its stdio;
//! 4. report `{pid, shim_pid}` or the error on the start-up pipe, then serve the socket from
//!    a `poll(2)` loop: output goes to the json log and to attached clients, stdin comes from
//!    them, SIGCHLD (signalfd) reaps init and exec processes;
//! 5. when init is gone and its output drained: read the OOM counter, delete the runtime
//!    state, unmount the rootfs, remove the cgroup, write `exit.json` atomically, answer the
//!    waiters, flush attached clients and exit.
//!
//! Signals: libcontainer clones the container from this process, so the signal mask and
//! the SIGPIPE disposition are reset around every create/exec (a container must not inherit
//! an ignored SIGPIPE or a blocked SIGCHLD), and the children are swept after each.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;
use crate::client::{
    cgroups_path, read_config, write_atomic, ExitStatus, Request, Response, StartFailure, Started,
    State, Status, ENV_AUTOSTART, ENV_READY_FD, EXIT_FILE, ROOTFS_DIR, RUNC_DIR, SOCKET_FILE,
    SPEC_FILE, YOUKI_DIR,
};
use crate::config::{ContainerConfig, NetMode, ProcessConfig};
use crate::logs::{LogWriter, Stream};
use crate::spec;

/// Errors inside the shim; `reason` tells the daemon how to report a failed start.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{message}")]
    Start {
        message: String,
        reason: StartFailure,
    },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Coarse class of a [`ShimError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimErrorKind {
    Start(StartFailure),
    Io,
}

impl ShimError {
    pub fn kind(&self) -> ShimErrorKind {
        match self {
            ShimError::Start { reason, .. } => ShimErrorKind::Start(*reason),
            ShimError::Io(..) => ShimErrorKind::Io,
        }
    }

    fn other(message: impl Into<String>) -> ShimError {
        ShimError::Start {
            message: message.into(),
            reason: StartFailure::Other,
        }
    }

    fn response(&self) -> Response {
        let mut r = Response::err(self.to_string());
        r.reason = Some(match self {
            ShimError::Start { reason, .. } => *reason,
            ShimError::Io(..) => StartFailure::Other,
        });
        r
    }
}

fn ioe(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ShimError {
    let what = what.to_string();
    move |e| ShimError::Io(what, e)
}

fn nixe(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> ShimError {
    let what = what.to_string();
    move |e| ShimError::Io(what, e.into())
}

/// Entry point of `berth shim <state_dir>`. Never returns.
pub fn shim_main(state_dir: &Path) -> ! {
    crate::timing::mark("shim: main");
    let code = match run(state_dir) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(state_dir = %state_dir.display(), "shim: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; no memory is passed.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on an fd we own; no memory is passed.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn run(state_dir: &Path) -> Result<(), ShimError> {
    let ready: Option<std::fs::File> = std::env::var(ENV_READY_FD)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
        .filter(|fd| {
            // SAFETY: F_GETFD only checks that the descriptor is open.
            unsafe { libc::fcntl(*fd, libc::F_GETFD) >= 0 }
        })
        .map(|fd| {
            set_cloexec(fd);
            // SAFETY: the daemon handed us this descriptor (fd 3) and nothing else owns it.
            unsafe { std::fs::File::from_raw_fd(fd) }
        });
    let autostart = std::env::var(ENV_AUTOSTART)
        .map(|v| v == "1")
        .unwrap_or(true);

    // Daemonize: the first process exits so the daemon can reap it; we survive the daemon.
    // SAFETY: the shim is single-threaded at this point; the child only continues normally.
    match unsafe { nix::unistd::fork() }.map_err(nixe("fork"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            // SAFETY: _exit skips atexit handlers, which belong to the parent's image.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Child => {}
    }
    crate::timing::mark("shim: daemonized");
    let _ = nix::unistd::setsid();
    redirect_stdio(state_dir);
    nix::unistd::chdir(state_dir).map_err(nixe(state_dir.display()))?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    ignore_sigpipe(true);

    let mut ready = ready;
    let state_dir = std::fs::canonicalize(state_dir).map_err(ioe(state_dir.display()))?;
    match Shim::setup(&state_dir, autostart) {
        Ok(mut shim) => {
            let resp = Response {
                started: Some(Started {
                    pid: shim.init_pid as u32,
                    shim_pid: std::process::id(),
                }),
                ..Default::default()
            };
            trim_resident();
            report(&mut ready, &resp);
            crate::timing::mark("shim: ready reported");
            drop(ready);
            shim.run_loop();
            Ok(())
        }
        Err((e, partial)) => {
            report(&mut ready, &e.response());
            if let Some(cfg) = partial {
                drop(teardown(&state_dir, &cfg, None));
            }
            let _ = std::fs::remove_file(state_dir.join(SOCKET_FILE));
            Err(e)
        }
    }
}

fn report(ready: &mut Option<std::fs::File>, resp: &Response) {
    if let Some(f) = ready.as_mut() {
        let mut line = serde_json::to_vec(resp).unwrap_or_default();
        line.push(b'\n');
        let _ = f.write_all(&line);
    }
}

fn redirect_stdio(state_dir: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    if let Ok(log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(state_dir.join("shim.log"))
    {
        // SAFETY: as above.
        unsafe { libc::dup2(log.as_raw_fd(), 2) };
    }
}

fn ignore_sigpipe(ignore: bool) {
    let h = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: installing SIG_IGN/SIG_DFL has no handler code to be unsafe.
    unsafe { libc::signal(libc::SIGPIPE, h) };
}

fn block_sigchld(block: bool) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let how = if block {
        nix::sys::signal::SigmaskHow::SIG_BLOCK
    } else {
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK
    };
    let _ = nix::sys::signal::sigprocmask(how, Some(&set), None);
}

/// Run `f` with the signal state a new container process must inherit.
///
/// Tracing is switched off for the call as well: the processes libcontainer clones inherit
/// the subscriber, and what they log would land in the container's stdout/stderr.
fn with_clean_signals<T>(f: impl FnOnce() -> T) -> T {
    ignore_sigpipe(false);
    block_sigchld(false);
    // BERTH_SHIM_TRACE_RUNTIME=1 keeps libcontainer's logs (debugging only: they then also
    // reach the container's output).
    let r = if std::env::var_os("BERTH_SHIM_TRACE_RUNTIME").is_some() {
        f()
    } else {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
    };
    block_sigchld(true);
    ignore_sigpipe(true);
    r
}

/// Run `f` (a libcontainer call) in a forked helper process and return its result.
///
/// libcontainer's code, allocations and descriptor juggling then never touch the long-lived
/// shim, which keeps the shim's RSS small; the processes it starts (init, exec) are
/// reparented to the shim, a child subreaper, when the helper exits.
fn in_helper(f: impl FnOnce() -> Result<i32, ShimError>) -> Result<i32, ShimError> {
    let (rd, wr) = pipe()?;
    // SAFETY: the shim is single-threaded, so the child may run arbitrary code; it leaves
    // through _exit and never returns into the shim's loop.
    match unsafe { nix::unistd::fork() }.map_err(nixe("fork"))? {
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let res = with_clean_signals(f);
            let msg = match &res {
                Ok(pid) => serde_json::json!({ "pid": pid }),
                Err(e) => serde_json::json!({ "error": e.to_string(), "reason": match e {
                    ShimError::Start { reason, .. } => *reason,
                    ShimError::Io(..) => StartFailure::Other,
                }}),
            };
            let mut w = std::fs::File::from(wr);
            let _ = w.write_all(format!("{msg}\n").as_bytes());
            drop(w);
            // SAFETY: _exit ends the helper without running the shim's destructors.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            // One line, not EOF: the processes the helper started hold copies of the write
            // end until they exec.
            let mut out = String::new();
            let _ = std::io::BufRead::read_line(
                &mut std::io::BufReader::new(std::fs::File::from(rd)),
                &mut out,
            );
            while let Err(nix::errno::Errno::EINTR) = waitpid(child, Some(WaitPidFlag::__WALL)) {}
            let v: serde_json::Value =
                serde_json::from_str(&out).map_err(|_| ShimError::other("runtime helper died"))?;
            if let Some(pid) = v["pid"].as_i64() {
                return Ok(pid as i32);
            }
            Err(ShimError::Start {
                message: v["error"]
                    .as_str()
                    .unwrap_or("runtime helper failed")
                    .to_string(),
                reason: serde_json::from_value(v["reason"].clone()).unwrap_or(StartFailure::Other),
            })
        }
    }
}

/// Drop a process's past working set from its RSS: free heap goes back to the kernel, and
/// read-only file mappings without a single privately modified page (text, read-only data)
/// lose their page-table entries; the kernel refaults, from the page cache, exactly the pages
/// still in use. `MADV_RANDOM` asks for no read-ahead on those refaults (older kernels also
/// skip fault-around for such mappings). Writable mappings are never touched, so this is safe
/// in a multi-threaded process too (the daemon calls it when idle).
pub fn trim_resident() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut cur: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            cur = None;
            let perms = line.split_whitespace().nth(1).unwrap_or("");
            let path = line.split_whitespace().nth(5).unwrap_or("");
            if path.starts_with('/') && !perms.contains('w') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    cur = Some((a, b));
                }
            }
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            if let Some(r) = cur.take() {
                if v.trim() == "0 kB" {
                    ranges.push(r);
                }
            }
        }
    }
    for (a, b) in ranges {
        // SAFETY: the range is a private file mapping of this process with no privately
        // modified page: MADV_DONTNEED only drops page-table entries and the same content
        // comes back from the file on the next access; MADV_RANDOM is a paging hint.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_RANDOM);
        }
    }
}

/// Unmount `path` and anything stacked on it (lazy detach), ignoring "not mounted".
pub(crate) fn unmount_all(path: &Path) {
    for _ in 0..16 {
        if nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

fn mount_rootfs(cfg: &ContainerConfig, rootfs: &Path) -> Result<(), ShimError> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(rootfs).map_err(ioe(rootfs.display()))?;
    unmount_all(rootfs);
    let r = &cfg.rootfs;
    let res = if r.fstype.is_empty() || r.fstype == "bind" {
        mount(
            Some(Path::new(&r.source)),
            rootfs,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
    } else {
        let data = r.options.join(",");
        if data.len() >= 4000 {
            // mount(2) takes one page of options: many long lowerdirs need the new mount API.
            return mount_fsconfig(r, rootfs);
        }
        mount(
            Some(r.source.as_str()),
            rootfs,
            Some(r.fstype.as_str()),
            MsFlags::empty(),
            Some(data.as_str()),
        )
    };
    res.map_err(|e| ShimError::other(format!("mount rootfs ({}): {e}", r.fstype)))?;
    let _ = mount(
        None::<&str>,
        rootfs,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    Ok(())
}

/// Mount a filesystem through fsopen/fsconfig/fsmount/move_mount, one option at a time, so
/// option strings longer than a page work (overlay `lowerdir` lists are passed as one
/// `lowerdir+` per layer, kernel ≥ 6.5).
fn mount_fsconfig(r: &crate::config::RootfsMount, target: &Path) -> Result<(), ShimError> {
    use std::ffi::CString;
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let err = |what: &str| {
        ShimError::other(format!(
            "mount rootfs ({}): {what}: {}",
            r.fstype,
            std::io::Error::last_os_error()
        ))
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| ShimError::other("mount option with NUL"));
    let fstype = cstr(&r.fstype)?;
    // SAFETY: fsopen reads the NUL-terminated name and returns a new descriptor or -1.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if fs < 0 {
        return Err(err("fsopen"));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    let set = |key: &str, value: Option<&str>| -> Result<(), ShimError> {
        let k = cstr(key)?;
        let v = value.map(cstr).transpose()?;
        let (cmd, vp) = match &v {
            Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
            None => (FSCONFIG_SET_FLAG, std::ptr::null()),
        };
        // SAFETY: key and value are NUL-terminated strings that outlive the call.
        let rc =
            unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, k.as_ptr(), vp, 0) };
        if rc < 0 {
            return Err(err(&format!("fsconfig {key}")));
        }
        Ok(())
    };
    for opt in r
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match opt.split_once('=') {
            Some(("lowerdir", dirs)) if r.fstype == "overlay" => {
                for d in dirs.split(':').filter(|d| !d.is_empty()) {
                    set("lowerdir+", Some(d))?;
                }
            }
            Some((k, v)) => set(k, Some(v))?,
            None => set(opt, None)?,
        }
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if rc < 0 {
        return Err(err("create"));
    }
    // SAFETY: fsmount on our fs context returns a new mount descriptor or -1.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mnt < 0 {
        return Err(err("fsmount"));
    }
    // SAFETY: as above.
    let mnt = unsafe { OwnedFd::from_raw_fd(mnt as RawFd) };
    let empty = cstr("")?;
    let dst = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| ShimError::other("rootfs path with NUL"))?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(err("move_mount"));
    }
    Ok(())
}

fn env_path(env: &[String]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(spec::DEFAULT_PATH)
        .to_string()
}

/// True when `arg0` may live on one of the container's extra mounts (a bind or volume), which
/// the pre-start check on the bare rootfs cannot see; the real exec then reports a missing file.
fn maybe_on_mount(cfg: &ContainerConfig, arg0: &str, path: &str, cwd: &str) -> bool {
    let dests: Vec<&str> = cfg.mounts.iter().map(|m| m.destination.trim_end_matches('/')).collect();
    let under = |p: &str| dests.iter().any(|d| !d.is_empty() && (p == *d || p.starts_with(&format!("{d}/"))));
    if arg0.contains('/') {
        let full = if arg0.starts_with('/') { arg0.to_string() } else { format!("{}/{arg0}", cwd.trim_end_matches('/')) };
        under(&full)
    } else {
        path.split(':').any(|d| under(&format!("{}/{arg0}", d.trim_end_matches('/'))))
    }
}

/// Docker/runc-worded check that `arg0` can be executed inside `rootfs`.
fn check_executable(rootfs: &Path, arg0: &str, path: &str, cwd: &str) -> Result<(), ShimError> {
    use std::os::unix::fs::MetadataExt;
    let root =
        pathrs::Root::open(rootfs).map_err(|e| ShimError::other(format!("open rootfs: {e}")))?;
    let probe = |p: &str| -> Option<std::fs::Metadata> {
        let h = root.resolve(p).ok()?;
        let f = h.reopen(pathrs::flags::OpenFlags::O_PATH).ok()?;
        f.metadata().ok()
    };
    let is_exec = |m: &std::fs::Metadata| m.is_file() && m.mode() & 0o111 != 0;
    if arg0.is_empty() {
        return Err(ShimError::Start {
            message: "no command specified".into(),
            reason: StartFailure::InvalidConfig,
        });
    }
    if arg0.contains('/') {
        let full = if arg0.starts_with('/') {
            arg0.to_string()
        } else {
            format!("{}/{arg0}", cwd.trim_end_matches('/'))
        };
        return match probe(&full) {
            None => Err(ShimError::Start {
                message: format!("exec: \"{arg0}\": stat {arg0}: no such file or directory"),
                reason: StartFailure::CommandNotFound,
            }),
            Some(m) if !is_exec(&m) => Err(ShimError::Start {
                message: format!("exec: \"{arg0}\": permission denied"),
                reason: StartFailure::CommandNotExecutable,
            }),
            Some(_) => Ok(()),
        };
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        if let Some(m) = probe(&format!("{}/{arg0}", dir.trim_end_matches('/'))) {
            if is_exec(&m) {
                return Ok(());
            }
        }
    }
    Err(ShimError::Start {
        message: format!("exec: \"{arg0}\": executable file not found in $PATH"),
        reason: StartFailure::CommandNotFound,
    })
}

/// Refuses a working directory inside `/proc` (`..` taken lexically): there it names the
/// runtime's own process state, e.g. `/proc/self/fd/7` is whatever descriptor the runtime's
/// init holds when it calls chdir (CVE-2024-21626), never a directory of the image. Without
/// this the run fails anyway (libcontainer's chdir gets ENOTDIR, its `verify_cwd` catches a
/// directory outside the root) but with a bare "failed to unix syscall" (HARDENING A3 #27).
fn check_cwd(cwd: &str) -> Result<(), ShimError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in cwd.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.first() == Some(&"proc") {
        return Err(cwd_in_proc(cwd));
    }
    Ok(())
}

fn cwd_in_proc(cwd: &str) -> ShimError {
    ShimError::Start {
        message: format!("chdir to cwd ({cwd:?}) set in config.json failed: the working directory is inside /proc"),
        reason: StartFailure::InvalidConfig,
    }
}

fn ensure_cwd(rootfs: &Path, cwd: &str, uid: u32, gid: u32) -> Result<(), ShimError> {
    check_cwd(cwd)?;
    if cwd.is_empty() || cwd == "/" {
        return Ok(());
    }
    let root =
        pathrs::Root::open(rootfs).map_err(|e| ShimError::other(format!("open rootfs: {e}")))?;
    let h = match root.resolve(cwd) {
        Ok(h) => h,
        Err(_) => {
            let h = root
                .mkdir_all(cwd, &std::fs::Permissions::from_mode(0o755))
                .map_err(|e| {
                    // the errno as Go words it ("not a directory"), like dockerd's mkdir error
                    let why = match e.kind() {
                        pathrs::error::ErrorKind::OsError(Some(n)) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
                        _ => e.to_string(),
                    };
                    ShimError::Start { message: format!("mkdir {cwd}: {why}"), reason: StartFailure::InvalidConfig }
                })?;
            // Docker creates a missing working directory owned by the container user.
            if let Ok(f) =
                h.reopen(pathrs::flags::OpenFlags::O_RDONLY | pathrs::flags::OpenFlags::O_DIRECTORY)
            {
                let _ = nix::unistd::fchown(&f, Some(uid.into()), Some(gid.into()));
            }
            h
        }
    };
    // A symlink of the image can lead there too (`WORKDIR /w`, `/w -> /proc/self/fd/7`).
    let real = std::fs::read_link(format!("/proc/self/fd/{}", h.as_fd().as_raw_fd()));
    let proc_dir = std::fs::canonicalize(rootfs)
        .unwrap_or_else(|_| rootfs.to_path_buf())
        .join("proc");
    if real.is_ok_and(|r| r.starts_with(&proc_dir)) {
        return Err(cwd_in_proc(cwd));
    }
    // dockerd (SetupWorkingDirectory): an existing non-directory cannot be the working dir.
    if nix::sys::stat::fstat(h.as_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFDIR) {
        return Err(ShimError::Start {
            message: format!("Cannot mkdir: {cwd} is not a directory"),
            reason: StartFailure::InvalidConfig,
        });
    }
    Ok(())
}

/// Resolve a mount destination inside `rootfs` the way Docker does (symlinks are followed
/// but scoped to the root: an absolute target means the container's `/`), creating what is
/// missing (directories, or an empty file for the last component when `file`). Returns the
/// symlink-free in-container path. libcontainer then opens it through `pathrs` again, so a
/// concurrent swap of a component is still contained (HARDENING A4 #31).
fn resolve_dest(rootfs: &Path, dest: &str, file: bool) -> Result<String, ShimError> {
    use pathrs::flags::OpenFlags;
    let err = |m: String| ShimError::Start {
        message: format!("mount destination {dest}: {m}"),
        reason: StartFailure::InvalidConfig,
    };
    let root = pathrs::Root::open(rootfs).map_err(|e| err(e.to_string()))?;
    let mut todo: VecDeque<String> = dest
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let cand = format!(
            "/{}",
            cur.iter()
                .chain(std::iter::once(&c))
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        match root.readlink(&cand) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return Err(err("too many levels of symbolic links".into()));
                }
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for (i, tc) in t
                    .split('/')
                    .filter(|x| !x.is_empty() && *x != ".")
                    .enumerate()
                {
                    todo.insert(i, tc.to_string());
                }
                continue;
            }
            Err(_) => {
                if root.resolve_nofollow(&cand).is_err() {
                    if file && todo.is_empty() {
                        root.create_file(
                            &cand,
                            OpenFlags::O_CREAT | OpenFlags::O_EXCL | OpenFlags::O_CLOEXEC,
                            &std::fs::Permissions::from_mode(0o644),
                        )
                        .map_err(|e| err(e.to_string()))?;
                    } else {
                        root.mkdir_all(&cand, &std::fs::Permissions::from_mode(0o755))
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
                cur.push(c);
            }
        }
    }
    Ok(format!("/{}", cur.join("/")))
}

/// Bring `lo` up in the network namespace of `pid` (Docker's `none` network has it up).
fn loopback_up(pid: i32) -> Result<(), ShimError> {
    use nix::sched::{setns, CloneFlags};
    let own = std::fs::File::open("/proc/self/ns/net").map_err(ioe("open own netns"))?;
    let theirs =
        std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(ioe("open container netns"))?;
    setns(theirs.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nixe("setns"))?;
    let res = (|| -> std::io::Result<()> {
        // SAFETY: plain socket creation.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: s is a fresh descriptor we own.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
        unsafe {
            if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    })();
    setns(own.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nixe("setns back"))?;
    res.map_err(ioe("bring lo up"))
}

fn set_winsize(fd: RawFd, h: u16, w: u16) {
    let ws = libc::winsize {
        ws_row: h,
        ws_col: w,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

/// Receive the pty master sent by the runtime on the console socket.
fn recv_console(listener: &UnixListener) -> Result<OwnedFd, ShimError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    listener
        .set_nonblocking(true)
        .map_err(ioe("console socket"))?;
    let (conn, _) = listener
        .accept()
        .map_err(|e| ShimError::other(format!("runtime did not send the console: {e}")))?;
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(nixe("receive console"))?;
    for c in msg.cmsgs().map_err(nixe("receive console"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(ShimError::other("console socket: no pty received"))
}

/// A pidfd for `pid` (readable once the process has exited).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        tracing::warn!(pid, "pidfd_open: {}", std::io::Error::last_os_error());
        return None;
    }
    let fd = fd as RawFd;
    set_cloexec(fd);
    // SAFETY: the kernel just returned this descriptor to us.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn devnull() -> Result<OwnedFd, ShimError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(ioe("/dev/null"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ShimError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(nixe("pipe"))
}

/// The stdio given to a new process, and the shim's ends of it.
struct Stdio3 {
    child: Option<[OwnedFd; 3]>,
    console: Option<(UnixListener, PathBuf)>,
    /// Shim side: stdin writer, outputs.
    stdin: Option<OwnedFd>,
    outs: Vec<(OwnedFd, Stream)>,
}

fn make_stdio(state_dir: &Path, tty: bool, stdin: bool, name: &str) -> Result<Stdio3, ShimError> {
    if tty {
        let path = state_dir.join(name);
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(name).map_err(ioe(format!("bind {name}")))?;
        return Ok(Stdio3 {
            child: None,
            console: Some((l, path)),
            stdin: None,
            outs: Vec::new(),
        });
    }
    let (in_child, in_shim) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (devnull()?, None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    Ok(Stdio3 {
        child: Some([in_child, out_w, err_w]),
        console: None,
        stdin: in_shim,
        outs: vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)],
    })
}

/// Which OCI runtime drives the container.
enum Backend {
    Youki { root: PathBuf },
    External { bin: PathBuf, root: PathBuf },
}

impl Backend {
    fn new(cfg: &ContainerConfig, state_dir: &Path) -> Backend {
        match &cfg.runtime {
            None => Backend::Youki {
                root: state_dir.join(YOUKI_DIR),
            },
            Some(bin) => Backend::External {
                bin: bin.clone(),
                root: state_dir.join(RUNC_DIR),
            },
        }
    }

    fn runc(bin: &Path, root: &Path, state_dir: &Path) -> Command {
        let mut c = Command::new(bin);
        c.arg("--root")
            .arg(root)
            .arg("--log")
            .arg(state_dir.join("runc.log"))
            .arg("--log-format")
            .arg("json");
        c
    }

    fn runc_error(state_dir: &Path, what: &str) -> ShimError {
        let log = std::fs::read_to_string(state_dir.join("runc.log")).unwrap_or_default();
        let msg = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{what} failed"));
        classify(msg)
    }

    /// Create the container (init waits for start); returns the init pid.
    fn create(
        &self,
        cfg: &ContainerConfig,
        state_dir: &Path,
        stdio: &mut Stdio3,
    ) -> Result<i32, ShimError> {
        match self {
            Backend::Youki { root } => {
                use libcontainer::container::builder::ContainerBuilder;
                use libcontainer::syscall::syscall::SyscallType;
                std::fs::create_dir_all(root).map_err(ioe(root.display()))?;
                let console = stdio.console.as_ref().map(|(_, p)| p.clone());
                let child = stdio.child.take();
                in_helper(move || {
                    crate::timing::mark("helper: create begin");
                    let mut b = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
                        .with_root_path(root.clone())
                        .map_err(|e| ShimError::other(e.to_string()))?;
                    if let Some(path) = console {
                        b = b.with_console_socket(Some(path));
                    }
                    if let Some([i, o, e]) = child {
                        b = b.with_stdin(i).with_stdout(o).with_stderr(e);
                    }
                    let c = b
                        .as_init(state_dir)
                        .with_systemd(false)
                        .with_detach(true)
                        .build()
                        .map_err(|e| classify(e.to_string()))?;
                    crate::timing::mark("helper: create built");
                    c.pid()
                        .map(|p| p.as_raw())
                        .ok_or_else(|| ShimError::other("runtime reported no pid"))
                })
            }
            Backend::External { bin, root } => {
                let mut c = Self::runc(bin, root, state_dir);
                c.arg("create")
                    .arg("--bundle")
                    .arg(state_dir)
                    .arg("--pid-file")
                    .arg(state_dir.join("init.pid"));
                if let Some((_, path)) = &stdio.console {
                    c.arg("--console-socket").arg(path);
                    c.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                if let Some([i, o, e]) = stdio.child.take() {
                    c.stdin(Stdio::from(i))
                        .stdout(Stdio::from(o))
                        .stderr(Stdio::from(e));
                }
                c.arg(&cfg.id);
                let st = with_clean_signals(|| c.status()).map_err(ioe("run runtime"))?;
                if !st.success() {
                    return Err(Self::runc_error(state_dir, "runtime create"));
                }
                let pid = std::fs::read_to_string(state_dir.join("init.pid"))
                    .map_err(ioe("read init.pid"))?;
                pid.trim()
                    .parse()
                    .map_err(|_| ShimError::other("runtime wrote a bad pid file"))
            }
        }
    }

    fn start(&self, cfg: &ContainerConfig, state_dir: &Path) -> Result<(), ShimError> {
        match self {
            Backend::Youki { root } => in_helper(|| {
                let mut c = libcontainer::container::Container::load(root.join(&cfg.id))
                    .map_err(|e| ShimError::other(e.to_string()))?;
                c.start().map_err(|e| ShimError::other(e.to_string()))?;
                Ok(0)
            })
            .map(|_| ()),
            Backend::External { bin, root } => {
                let st = Self::runc(bin, root, state_dir)
                    .arg("start")
                    .arg(&cfg.id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map_err(ioe("run runtime"))?;
                if st.success() {
                    Ok(())
                } else {
                    Err(Self::runc_error(state_dir, "runtime start"))
                }
            }
        }
    }

    fn exec(
        &self,
        cfg: &ContainerConfig,
        state_dir: &Path,
        process_json: &Path,
        stdio: &mut Stdio3,
    ) -> Result<i32, ShimError> {
        match self {
            Backend::Youki { root } => {
                use libcontainer::container::builder::ContainerBuilder;
                use libcontainer::syscall::syscall::SyscallType;
                let console = stdio.console.as_ref().map(|(_, p)| p.clone());
                let child = stdio.child.take();
                in_helper(move || {
                    let mut b = ContainerBuilder::new(cfg.id.clone(), SyscallType::Linux)
                        .with_root_path(root.clone())
                        .map_err(|e| ShimError::other(e.to_string()))?;
                    if let Some(path) = console {
                        b = b.with_console_socket(Some(path));
                    }
                    if let Some([i, o, e]) = child {
                        b = b.with_stdin(i).with_stdout(o).with_stderr(e);
                    }
                    let pid = b
                        .as_tenant()
                        .with_process(Some(process_json))
                        .with_detach(true)
                        .build()
                        .map_err(|e| classify(e.to_string()))?;
                    Ok(pid.as_raw())
                })
            }
            Backend::External { bin, root } => {
                let pidfile = process_json.with_extension("pid");
                let mut c = Self::runc(bin, root, state_dir);
                c.arg("exec")
                    .arg("--detach")
                    .arg("--pid-file")
                    .arg(&pidfile)
                    .arg("--process")
                    .arg(process_json);
                if let Some((_, path)) = &stdio.console {
                    c.arg("--console-socket").arg(path);
                    c.stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null());
                }
                if let Some([i, o, e]) = stdio.child.take() {
                    c.stdin(Stdio::from(i))
                        .stdout(Stdio::from(o))
                        .stderr(Stdio::from(e));
                }
                c.arg(&cfg.id);
                let st = with_clean_signals(|| c.status()).map_err(ioe("run runtime"))?;
                if !st.success() {
                    return Err(Self::runc_error(state_dir, "runtime exec"));
                }
                let pid = std::fs::read_to_string(&pidfile).map_err(ioe("read exec pid"))?;
                let _ = std::fs::remove_file(&pidfile);
                pid.trim()
                    .parse()
                    .map_err(|_| ShimError::other("runtime wrote a bad pid file"))
            }
        }
    }

    fn delete(&self, cfg: &ContainerConfig, state_dir: &Path) {
        match self {
            Backend::Youki { root } => {
                // libcontainer's delete only removes the cgroup (slowly, with back-off
                // sleeps) and its state dir; the cgroup is removed by `teardown`, we set no
                // hooks, so removing the state dir is all that is left.
                let _ = cfg;
                let _ = std::fs::remove_dir_all(root);
            }
            Backend::External { bin, root } => {
                let _ = Self::runc(bin, root, state_dir)
                    .args(["delete", "--force", &cfg.id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let _ = std::fs::remove_dir_all(root);
            }
        }
    }
}

/// Map a runtime error text to Docker's classes (127 not found, 126 not executable).
fn classify(msg: String) -> ShimError {
    let reason =
        if msg.contains("executable file not found") || msg.contains("no such file or directory") {
            StartFailure::CommandNotFound
        } else if msg.contains("permission denied") {
            StartFailure::CommandNotExecutable
        } else {
            StartFailure::Other
        };
    ShimError::Start {
        message: msg,
        reason,
    }
}

/// Tear down what a container leaves on the host; used on exit and on failed starts.
///
/// Returns a descriptor on the (already detached) rootfs: unmounting an overlay syncs its
/// whole upper filesystem when the last reference goes, which takes hundreds of ms on a busy
/// disk. Holding the descriptor until the waiters are answered moves that cost after them.
fn teardown(state_dir: &Path, cfg: &ContainerConfig, backend: Option<&Backend>) -> Option<OwnedFd> {
    let backend_owned;
    let backend = match backend {
        Some(b) => b,
        None => {
            backend_owned = Backend::new(cfg, state_dir);
            &backend_owned
        }
    };
    backend.delete(cfg, state_dir);
    tracing::debug!("runtime state deleted");
    let pin = std::fs::File::open(state_dir.join(ROOTFS_DIR))
        .ok()
        .map(OwnedFd::from);
    unmount_all(&state_dir.join(ROOTFS_DIR));
    tracing::debug!("rootfs unmounted");
    if let Err(e) = Cgroup::for_path(&cgroups_path(cfg)).remove() {
        tracing::warn!("remove cgroup: {e}");
    }
    let _ = std::fs::remove_file(state_dir.join("console.sock"));
    pin
}

/// Docker's wording for an exec into a paused container.
pub(crate) const PAUSED: &str = "container is paused, unpause the container before exec";

/// Quiet time after which the shim drops the pages its last requests touched.
const IDLE_TRIM_MS: i32 = 1000;

/// Most bytes buffered for one attached client before its output is dropped.
const MAX_CLIENT_BUF: usize = 4 << 20;
/// Most bytes buffered towards a process' stdin before its client is not read any more.
const MAX_STDIN_BUF: usize = 256 << 10;
/// Exec output is not read while its client has this much unsent (backpressure).
const EXEC_BACKPRESSURE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// Reading the request line.
    Request,
    /// Answered; close once the reply is flushed.
    Done,
    Waiter,
    ExecWaiter(String),
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    ExecStream(String),
}

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    role: Role,
    read_eof: bool,
    dead: bool,
}

struct Out {
    fd: OwnedFd,
    stream: Stream,
    eof: bool,
}

struct Exec {
    pid: i32,
    pidfd: Option<OwnedFd>,
    tty: bool,
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    outs: Vec<Out>,
    exit_code: Option<i32>,
    done: bool,
    /// Health probes: output kept here instead of going to a client.
    capture: Option<Vec<u8>>,
}

/// Mount the rootfs, resolve the user, create the cwd, check the executable, resolve the
/// mount destinations in the root and write `config.json` (runs in a helper process).
fn prepare_bundle(cfg: &ContainerConfig, state_dir: &Path) -> Result<(), ShimError> {
    let rootfs = state_dir.join(ROOTFS_DIR);
    mount_rootfs(cfg, &rootfs)?;
    crate::timing::mark("helper: rootfs mounted");
    let user = spec::resolve_user_groups(&rootfs, &cfg.process.user, &cfg.group_add).map_err(|e| ShimError::Start {
        message: e.to_string(),
        reason: StartFailure::InvalidConfig,
    })?;
    let mut spec_json = spec::spec_json(cfg, &user).map_err(|e| ShimError::Start {
        message: e.to_string(),
        reason: StartFailure::InvalidConfig,
    })?;
    let cwd = spec_json["process"]["cwd"]
        .as_str()
        .unwrap_or("/")
        .to_string();
    ensure_cwd(&rootfs, &cwd, user.uid, user.gid)?;
    let env: Vec<String> =
        serde_json::from_value(spec_json["process"]["env"].clone()).unwrap_or_default();
    if let Some(arg0) = cfg.process.args.first() {
        if !maybe_on_mount(cfg, arg0, &env_path(&env), &cwd) {
            check_executable(&rootfs, arg0, &env_path(&env), &cwd)?;
        }
    } else {
        return Err(ShimError::Start {
            message: "no command specified".into(),
            reason: StartFailure::InvalidConfig,
        });
    }
    const DEFAULT_MOUNTS: &[&str] = &[
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ];
    if let Some(mounts) = spec_json["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            let dest = m["destination"].as_str().unwrap_or("").to_string();
            if DEFAULT_MOUNTS.contains(&dest.as_str()) {
                continue;
            }
            let file = m["type"] == "bind"
                && m["source"]
                    .as_str()
                    .and_then(|s| std::fs::metadata(s).ok())
                    .is_some_and(|md| !md.is_dir());
            let resolved = resolve_dest(&rootfs, &dest, file)?;
            m["destination"] = serde_json::json!(resolved);
        }
    }
    spec_json["root"]["path"] = serde_json::json!(rootfs);
    let spec_bytes = serde_json::to_vec_pretty(&spec_json).unwrap_or_default();
    write_atomic(&state_dir.join(SPEC_FILE), &spec_bytes).map_err(ioe("write config.json"))?;
    Ok(())
}

/// Resolve the exec's user, environment and cwd, check its executable and write its OCI
/// process JSON to `pj` (runs in a helper process).
fn prepare_exec(
    cfg: &ContainerConfig,
    state_dir: &Path,
    p: &ProcessConfig,
    pj: &Path,
) -> Result<(), ShimError> {
    let rootfs = state_dir.join(ROOTFS_DIR);
    let user_spec = if p.user.is_empty() {
        &cfg.process.user
    } else {
        &p.user
    };
    let user = spec::resolve_user_groups(&rootfs, user_spec, &cfg.group_add).map_err(|e| ShimError::Start {
        message: e.to_string(),
        reason: StartFailure::InvalidConfig,
    })?;
    // Docker: the container's environment, overridden by the exec's.
    let mut merged = ProcessConfig {
        env: cfg.process.env.clone(),
        tty: p.tty,
        ..Default::default()
    };
    for e in &p.env {
        let k = e.split('=').next().unwrap_or("");
        merged.env.retain(|x| x.split('=').next() != Some(k));
        merged.env.push(e.clone());
    }
    let env = spec::process_env(&merged, &cfg.hostname, &user.home);
    let cwd = if p.cwd.is_empty() {
        if cfg.process.cwd.is_empty() {
            "/".to_string()
        } else {
            cfg.process.cwd.clone()
        }
    } else {
        p.cwd.clone()
    };
    check_cwd(&cwd)?;
    let arg0 = p.args.first().cloned().unwrap_or_default();
    if !maybe_on_mount(cfg, &arg0, &env_path(&env), &cwd) {
        check_executable(&rootfs, &arg0, &env_path(&env), &cwd)?;
    }
    let caps = spec::container_caps(cfg).map_err(|e| ShimError::other(e.to_string()))?;
    let mut process = serde_json::json!({
        "terminal": p.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": p.args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": [], "ambient": []},
        "rlimits": spec::rlimits(cfg).map_err(|e| ShimError::other(e.to_string()))?,
    });
    if cfg.security_opt.no_new_privileges {
        process["noNewPrivileges"] = serde_json::json!(true);
    }
    if let Some((h, w)) = p.console_size {
        process["consoleSize"] = serde_json::json!({"height": h, "width": w});
    }
    write_atomic(pj, process.to_string().as_bytes()).map_err(ioe("write exec process"))?;
    Ok(())
}

/// The running shim.
struct Shim {
    cfg: ContainerConfig,
    state_dir: PathBuf,
    backend: Backend,
    init_pid: i32,
    status: Status,
    started_at: Option<String>,
    init_exit: Option<(i32, Option<i32>)>,
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    outs: Vec<Out>,
    logs: LogWriter,
    listener: UnixListener,
    sigfd: SignalFd,
    init_pidfd: Option<OwnedFd>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    execs: BTreeMap<String, Exec>,
    exit: Option<ExitStatus>,
    /// Poll timeouts counted since init exited with output still open.
    linger: u32,
    /// Poll timeouts counted since the exit was recorded, with clients still unflushed.
    exit_linger: u32,
    /// Keeps the unmounted rootfs' superblock until the shim exits (see [`teardown`]).
    rootfs_pin: Option<OwnedFd>,
    health: Option<crate::health::HealthState>,
    /// Requests were served since the last `trim_resident`: trim again after a second of quiet.
    trim_pending: bool,
}

#[derive(Clone)]
enum Tok {
    Sig,
    Listen,
    Out(usize),
    Stdin,
    ExecOut(String, usize),
    ExecStdin(String),
    Conn(u64),
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn now_rfc3339() -> String {
    now()
}

fn exec_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 8);
    v.push(match stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    });
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn read_nb(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: reading into a buffer we own, with its exact length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Some(n as usize);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => None,
        // EIO: the pty slave is closed everywhere.
        _ => Some(0),
    }
}

fn write_nb(fd: RawFd, buf: &mut Vec<u8>) -> bool {
    while !buf.is_empty() {
        // SAFETY: writing from a buffer we own, with its exact length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n > 0 {
            buf.drain(..n as usize);
            continue;
        }
        return matches!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN) | Some(libc::EINTR)
        );
    }
    true
}

impl Shim {
    #[allow(clippy::result_large_err)]
    fn setup(
        state_dir: &Path,
        autostart: bool,
    ) -> Result<Shim, (ShimError, Option<ContainerConfig>)> {
        let cfg = read_config(state_dir).map_err(|e| (ShimError::other(e.to_string()), None))?;
        let fail = |e: ShimError| (e, Some(cfg.clone()));
        let _ = std::fs::remove_file(state_dir.join(SOCKET_FILE));
        let listener =
            UnixListener::bind(SOCKET_FILE).map_err(|e| fail(ioe("bind shim.sock")(e)))?;
        let _ = std::fs::set_permissions(SOCKET_FILE, std::fs::Permissions::from_mode(0o600));
        listener
            .set_nonblocking(true)
            .map_err(|e| fail(ioe("shim.sock")(e)))?;

        // Mounting, resolving and checking touch a lot of code: do it in a helper process so
        // none of it stays resident in the shim.
        tracing::debug!("preparing bundle");
        crate::timing::mark("shim: bundle helper");
        in_helper(|| prepare_bundle(&cfg, state_dir).map(|_| 0)).map_err(fail)?;
        crate::timing::mark("shim: bundle ready");
        tracing::debug!("bundle ready");

        let log_default = crate::client::log_path(state_dir, &cfg);
        let logs = LogWriter::open(&cfg.log, &log_default)
            .map_err(|e| fail(ShimError::other(e.to_string())))?;

        let mut stdio = make_stdio(
            state_dir,
            cfg.process.tty,
            cfg.process.open_stdin,
            "console.sock",
        )
        .map_err(fail)?;
        let backend = Backend::new(&cfg, state_dir);
        block_sigchld(true);
        let sigfd = {
            let mut set = SigSet::empty();
            set.add(Signal::SIGCHLD);
            SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(|e| fail(nixe("signalfd")(e)))?
        };
        let init_pid = match backend.create(&cfg, state_dir, &mut stdio) {
            Ok(pid) => {
                tracing::debug!(pid, "container created");
                pid
            }
            Err(e) => {
                // What the runtime's child wrote before failing is in the output pipes.
                let mut buf = [0u8; 8192];
                for (fd, _) in &stdio.outs {
                    set_nonblock(fd.as_raw_fd());
                    if let Some(n) = read_nb(fd.as_raw_fd(), &mut buf) {
                        tracing::warn!("runtime output: {}", String::from_utf8_lossy(&buf[..n]));
                    }
                }
                return Err(fail(e));
            }
        };
        let mut master = None;
        let mut outs: Vec<Out> = stdio
            .outs
            .drain(..)
            .map(|(fd, stream)| Out {
                fd,
                stream,
                eof: false,
            })
            .collect();
        let mut stdin = stdio.stdin.take();
        if let Some((l, path)) = stdio.console.take() {
            let m = recv_console(&l).map_err(fail)?;
            let _ = std::fs::remove_file(&path);
            if let Some((h, w)) = cfg.process.console_size {
                set_winsize(m.as_raw_fd(), h, w);
            }
            set_nonblock(m.as_raw_fd());
            let out = m.try_clone().map_err(|e| fail(ioe("dup pty")(e)))?;
            if cfg.process.open_stdin {
                stdin = Some(m.try_clone().map_err(|e| fail(ioe("dup pty")(e)))?);
            }
            outs.push(Out {
                fd: out,
                stream: Stream::Stdout,
                eof: false,
            });
            master = Some(m);
        }
        for o in &outs {
            set_nonblock(o.fd.as_raw_fd());
        }
        if let Some(s) = &stdin {
            set_nonblock(s.as_raw_fd());
        }
        if cfg.network == NetMode::None {
            if let Err(e) = loopback_up(init_pid) {
                tracing::warn!("network none: {e}");
            }
        }
        let mut shim = Shim {
            cfg,
            state_dir: state_dir.to_path_buf(),
            backend,
            init_pid,
            status: Status::Created,
            started_at: None,
            init_exit: None,
            master,
            stdin,
            stdin_buf: Vec::new(),
            outs,
            logs,
            listener,
            sigfd,
            init_pidfd: pidfd_open(init_pid),
            conns: BTreeMap::new(),
            next_conn: 0,
            execs: BTreeMap::new(),
            exit: None,
            linger: 0,
            exit_linger: 0,
            rootfs_pin: None,
            health: None,
            trim_pending: true,
        };
        if autostart {
            if let Err(e) = shim.start_container() {
                let cfg = shim.cfg.clone();
                // SAFETY: kill has no memory-safety preconditions; init is our unreaped child.
                unsafe { libc::kill(init_pid, libc::SIGKILL) };
                return Err((e, Some(cfg)));
            }
        }
        Ok(shim)
    }

    fn start_container(&mut self) -> Result<(), ShimError> {
        if self.status != Status::Created {
            return Err(ShimError::other("container already started"));
        }
        crate::timing::mark("shim: start begin");
        self.backend.start(&self.cfg, &self.state_dir)?;
        crate::timing::mark("shim: start done");
        tracing::debug!("container started");
        self.status = Status::Running;
        self.started_at = Some(now());
        if let Some(hc) = crate::health::read_config(&self.state_dir).filter(|h| h.enabled()) {
            self.health = Some(crate::health::HealthState::new(
                hc,
                std::time::Instant::now(),
            ));
            self.after_health(false);
        }
        Ok(())
    }

    /// Timers: start a due health probe, kill one that exceeds its timeout.
    fn tick(&mut self) {
        let now = std::time::Instant::now();
        let Some(h) = self.health.as_mut() else {
            return;
        };
        if self.init_exit.is_some() || self.status != Status::Running {
            return;
        }
        if let Some((id, started, _)) = &h.running {
            if now.duration_since(*started) >= h.cfg.timeout() && !h.timed_out {
                h.timed_out = true;
                if let Some(e) = self.execs.get(id) {
                    // SAFETY: kill has no memory-safety preconditions; the probe is our
                    // unreaped child.
                    unsafe { libc::kill(e.pid, libc::SIGKILL) };
                }
            }
            return;
        }
        if now < h.next || Cgroup::for_path(&cgroups_path(&self.cfg)).frozen() {
            return;
        }
        let p = ProcessConfig {
            args: h.cfg.argv(),
            ..Default::default()
        };
        let wall = now_rfc3339();
        match self.spawn_exec(&p, false, true) {
            Ok((id, _)) => {
                if let Some(h) = self.health.as_mut() {
                    h.running = Some((id, now, wall));
                    h.timed_out = false;
                }
            }
            Err(e) => {
                if let Some(h) = self.health.as_mut() {
                    h.running = Some((String::new(), now, wall));
                    let code = match e.kind() {
                        ShimErrorKind::Start(StartFailure::CommandNotFound) => 127,
                        ShimErrorKind::Start(StartFailure::CommandNotExecutable) => 126,
                        _ => -1,
                    };
                    let unhealthy = h.record(now, now_rfc3339(), code, e.to_string().as_bytes());
                    self.after_health(unhealthy);
                }
            }
        }
    }

    /// Persist the health state and apply `--health-on-failure` on the transition.
    fn after_health(&mut self, became_unhealthy: bool) {
        let Some(h) = self.health.as_ref() else {
            return;
        };
        let bytes = serde_json::to_vec(&h.health).unwrap_or_default();
        if let Err(e) = write_atomic(&self.state_dir.join(crate::health::HEALTH_FILE), &bytes) {
            tracing::warn!("write health.json: {e}");
        }
        if became_unhealthy && self.init_exit.is_none() {
            let sig = match h.cfg.on_failure {
                crate::health::HealthAction::None => return,
                crate::health::HealthAction::Kill => libc::SIGKILL,
                crate::health::HealthAction::Stop if self.cfg.stop_signal > 0 => {
                    self.cfg.stop_signal
                }
                crate::health::HealthAction::Stop => libc::SIGTERM,
            };
            // SAFETY: kill has no memory-safety preconditions; init is our unreaped child.
            unsafe { libc::kill(self.init_pid, sig) };
        }
    }

    fn run_loop(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.exit.is_some() && self.conns.values().all(|c| c.out.is_empty() || c.dead) {
                break;
            }
            let (mut pfds, toks) = self.poll_set();
            let mut timeout = if self.init_exit.is_some() || self.exit.is_some() {
                100
            } else {
                match &self.health {
                    Some(h) if self.status == Status::Running => {
                        h.wake_in(std::time::Instant::now())
                    }
                    _ => -1,
                }
            };
            if self.trim_pending && self.exit.is_none() && (timeout < 0 || timeout > IDLE_TRIM_MS) {
                timeout = IDLE_TRIM_MS;
            }
            // SAFETY: pfds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                continue;
            }
            if n == 0 {
                if self.trim_pending && timeout == IDLE_TRIM_MS && self.exit.is_none() {
                    // Quiet for a second after serving requests (start, attach, exec...):
                    // give back the pages that work touched; the idle loop needs few.
                    self.trim_pending = false;
                    trim_resident();
                }
                self.on_timeout();
                if self.exit.is_some() {
                    // Clients that do not read their last bytes do not keep the shim alive.
                    self.exit_linger += 1;
                    if self.exit_linger > 80 {
                        break;
                    }
                }
            }
            for (p, tok) in pfds.iter().zip(toks.iter()) {
                if p.revents == 0 {
                    continue;
                }
                self.handle(tok.clone(), p.revents, &mut buf);
            }
            self.check_execs();
            self.check_exit();
            self.tick();
            self.conns.retain(|id, c| {
                let keep = !(c.dead || (c.role == Role::Done && c.out.is_empty()));
                if !keep {
                    tracing::debug!(conn = id, dead = c.dead, "closing");
                }
                keep
            });
        }
        let _ = std::fs::remove_file(self.state_dir.join(SOCKET_FILE));
        // Last: releasing the detached rootfs may sync the upper filesystem.
        self.rootfs_pin = None;
    }

    fn poll_set(&self) -> (Vec<libc::pollfd>, Vec<Tok>) {
        let mut p = Vec::new();
        let mut t = Vec::new();
        let mut add = |fd: RawFd, ev: i16, tok: Tok| {
            p.push(libc::pollfd {
                fd,
                events: ev,
                revents: 0,
            });
            t.push(tok);
        };
        add(self.sigfd.as_fd().as_raw_fd(), libc::POLLIN, Tok::Sig);
        // Exits of init and execs show up on their pidfds (they send no SIGCHLD).
        if let Some(fd) = &self.init_pidfd {
            add(fd.as_raw_fd(), libc::POLLIN, Tok::Sig);
        }
        for e in self.execs.values() {
            if let Some(fd) = &e.pidfd {
                add(fd.as_raw_fd(), libc::POLLIN, Tok::Sig);
            }
        }
        add(self.listener.as_raw_fd(), libc::POLLIN, Tok::Listen);
        for (i, o) in self.outs.iter().enumerate() {
            if !o.eof {
                add(o.fd.as_raw_fd(), libc::POLLIN, Tok::Out(i));
            }
        }
        if let Some(s) = &self.stdin {
            if !self.stdin_buf.is_empty() {
                add(s.as_raw_fd(), libc::POLLOUT, Tok::Stdin);
            }
        }
        for (id, e) in &self.execs {
            let conn_buf = self
                .conns
                .values()
                .find(|c| c.role == Role::ExecStream(id.clone()))
                .map(|c| c.out.len())
                .unwrap_or(0);
            for (i, o) in e.outs.iter().enumerate() {
                if !o.eof && conn_buf < EXEC_BACKPRESSURE {
                    add(o.fd.as_raw_fd(), libc::POLLIN, Tok::ExecOut(id.clone(), i));
                }
            }
            if let Some(s) = &e.stdin {
                if !e.stdin_buf.is_empty() {
                    add(s.as_raw_fd(), libc::POLLOUT, Tok::ExecStdin(id.clone()));
                }
            }
        }
        for (id, c) in &self.conns {
            let mut ev = 0;
            if !c.read_eof {
                let want = match &c.role {
                    Role::Attach { stdin: true, .. } => self.stdin_buf.len() < MAX_STDIN_BUF,
                    Role::ExecStream(x) => self
                        .execs
                        .get(x)
                        .is_none_or(|e| e.stdin_buf.len() < MAX_STDIN_BUF),
                    _ => true,
                };
                if want {
                    ev |= libc::POLLIN;
                }
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.stream.as_raw_fd(), ev, Tok::Conn(*id));
        }
        (p, t)
    }

    fn handle(&mut self, tok: Tok, revents: i16, buf: &mut [u8]) {
        match tok {
            Tok::Sig => {
                while self.sigfd.read_signal().ok().flatten().is_some() {}
                self.reap();
            }
            Tok::Listen => {
                while let Ok((s, _)) = self.listener.accept() {
                    let _ = s.set_nonblocking(true);
                    self.next_conn += 1;
                    tracing::debug!(conn = self.next_conn, fd = s.as_raw_fd(), "accepted");
                    self.conns.insert(
                        self.next_conn,
                        Conn {
                            stream: s,
                            inbuf: Vec::new(),
                            out: VecDeque::new(),
                            role: Role::Request,
                            read_eof: false,
                            dead: false,
                        },
                    );
                }
            }
            Tok::Out(i) => {
                let fd = self.outs[i].fd.as_raw_fd();
                let stream = self.outs[i].stream;
                match read_nb(fd, buf) {
                    Some(0) => {
                        self.outs[i].eof = true;
                        self.logs.flush_partial(stream);
                    }
                    Some(n) => self.on_output(stream, &buf[..n]),
                    None => {}
                }
            }
            Tok::Stdin => {
                if let Some(s) = &self.stdin {
                    if !write_nb(s.as_raw_fd(), &mut self.stdin_buf) {
                        self.stdin = None;
                        self.stdin_buf.clear();
                    }
                }
            }
            Tok::ExecOut(id, i) => {
                let Some(e) = self.execs.get_mut(&id) else {
                    return;
                };
                let fd = e.outs[i].fd.as_raw_fd();
                let stream = e.outs[i].stream;
                let tty = e.tty;
                match read_nb(fd, buf) {
                    Some(0) => e.outs[i].eof = true,
                    Some(n) if e.capture.is_some() => {
                        if let Some(c) = e.capture.as_mut() {
                            let room = (crate::health::MAX_OUTPUT + 1).saturating_sub(c.len());
                            c.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                    Some(n) => {
                        let data = if tty {
                            buf[..n].to_vec()
                        } else {
                            frame(stream, &buf[..n])
                        };
                        for c in self.conns.values_mut() {
                            if c.role == Role::ExecStream(id.clone()) {
                                c.out.extend(data.iter());
                            }
                        }
                    }
                    None => {}
                }
            }
            Tok::ExecStdin(id) => {
                if let Some(e) = self.execs.get_mut(&id) {
                    if let Some(s) = &e.stdin {
                        if !write_nb(s.as_raw_fd(), &mut e.stdin_buf) {
                            e.stdin = None;
                            e.stdin_buf.clear();
                        }
                    }
                }
            }
            Tok::Conn(id) => self.on_conn(id, revents, buf),
        }
    }

    fn on_output(&mut self, stream: Stream, data: &[u8]) {
        self.logs.write(stream, data);
        let tty = self.cfg.process.tty;
        let framed = if tty { None } else { Some(frame(stream, data)) };
        for c in self.conns.values_mut() {
            if let Role::Attach { stdout, stderr, .. } = c.role {
                let want = match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                if !want {
                    continue;
                }
                let bytes = framed.as_deref().unwrap_or(data);
                if c.out.len() + bytes.len() > MAX_CLIENT_BUF {
                    tracing::warn!("attach client too slow, output dropped");
                    continue;
                }
                c.out.extend(bytes.iter());
            }
        }
    }

    fn on_conn(&mut self, id: u64, revents: i16, buf: &mut [u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if revents & libc::POLLOUT != 0 && !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            match c.stream.write(a) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => c.dead = true,
            }
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 || c.read_eof {
            if revents & (libc::POLLHUP | libc::POLLERR) != 0 && c.read_eof {
                c.dead = true;
            }
            return;
        }
        let n = match c.stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                c.dead = true;
                return;
            }
        };
        if n == 0 {
            c.read_eof = true;
            let role = c.role.clone();
            match role {
                Role::Attach { stdin: true, .. } => {
                    if self.cfg.process.stdin_once {
                        self.stdin = None;
                    }
                }
                Role::ExecStream(x) => {
                    if let Some(e) = self.execs.get_mut(&x) {
                        if !e.tty {
                            e.stdin = None;
                        }
                    }
                }
                Role::Attach { .. } => {}
                // A waiter or a half-sent request that hung up.
                _ => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.dead = true;
                    }
                }
            }
            return;
        }
        let data = &buf[..n];
        match c.role.clone() {
            Role::Request => {
                c.inbuf.extend_from_slice(data);
                if let Some(pos) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=pos).collect();
                    let rest = std::mem::take(&mut c.inbuf);
                    self.on_request(id, &line, rest);
                } else if c.inbuf.len() > 1 << 20 {
                    c.dead = true;
                }
            }
            Role::Attach { stdin: true, .. } if self.stdin.is_some() => {
                self.stdin_buf.extend_from_slice(data);
            }
            Role::ExecStream(x) => {
                if let Some(e) = self.execs.get_mut(&x) {
                    if e.stdin.is_some() {
                        e.stdin_buf.extend_from_slice(data);
                    }
                }
            }
            _ => {}
        }
    }

    fn reply(&mut self, id: u64, resp: &Response, role: Role) {
        if let Some(c) = self.conns.get_mut(&id) {
            let mut line = serde_json::to_vec(resp).unwrap_or_default();
            line.push(b'\n');
            c.out.extend(line);
            c.role = role;
        }
    }

    /// Init has exited, reaped or not (its pidfd is readable once it is a zombie).
    fn init_gone(&self) -> bool {
        let Some(fd) = &self.init_pidfd else {
            return false;
        };
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & libc::POLLIN != 0
    }

    /// Every output pipe of the requested streams has been closed by the container (at
    /// least one requested and present).
    fn outputs_closed(&self, stdout: bool, stderr: bool) -> bool {
        let mut wanted = self
            .outs
            .iter()
            .filter(|o| match o.stream {
                Stream::Stdout => stdout,
                Stream::Stderr => stderr,
            })
            .peekable();
        if wanted.peek().is_none() {
            return false;
        }
        wanted.all(|o| {
            if o.eof {
                return true;
            }
            let mut p = libc::pollfd {
                fd: o.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            n > 0 && p.revents & libc::POLLHUP != 0
        })
    }

    fn state(&self) -> State {
        State {
            pid: self.init_pid as u32,
            status: if self.init_exit.is_some() {
                Status::Stopped
            } else {
                self.status
            },
            started_at: self.started_at.clone(),
        }
    }

    fn on_request(&mut self, id: u64, line: &[u8], rest: Vec<u8>) {
        self.trim_pending = true;
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                self.reply(id, &Response::err(format!("bad request: {e}")), Role::Done);
                return;
            }
        };
        tracing::debug!(conn = id, ?req, "request");
        let ok = Response::default();
        match req {
            Request::State => {
                let r = Response {
                    state: Some(self.state()),
                    ..Default::default()
                };
                self.reply(id, &r, Role::Done);
            }
            Request::Start => {
                let r = match self.start_container() {
                    Ok(()) => ok,
                    Err(e) => e.response(),
                };
                self.reply(id, &r, Role::Done);
            }
            Request::Kill { signal, all } => {
                let r = if self.init_exit.is_some() {
                    Response::err("container is not running")
                } else {
                    let pids: Vec<i32> = if all {
                        Cgroup::for_path(&cgroups_path(&self.cfg))
                            .pids()
                            .into_iter()
                            .map(|p| p as i32)
                            .collect()
                    } else {
                        vec![self.init_pid]
                    };
                    for p in pids.iter().chain(std::iter::once(&self.init_pid)) {
                        // SAFETY: kill has no memory-safety preconditions; init is our
                        // unreaped child so its pid cannot have been reused.
                        unsafe { libc::kill(*p, signal) };
                    }
                    // Like `runc kill --all`: frozen processes only die once thawed.
                    if all && signal == libc::SIGKILL {
                        let cg = Cgroup::for_path(&cgroups_path(&self.cfg));
                        if cg.frozen() {
                            let _ = cg.freeze(false);
                        }
                    }
                    ok
                };
                self.reply(id, &r, Role::Done);
            }
            Request::Wait => match &self.exit {
                Some(e) => {
                    let r = Response {
                        exit: Some(e.clone()),
                        ..Default::default()
                    };
                    self.reply(id, &r, Role::Done);
                }
                None => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.role = Role::Waiter;
                    }
                }
            },
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                // An attach that comes after init's exit would only see the stream end (its
                // output went before it): refuse it, so the daemon treats it as an attach to
                // a stopped container (it waits for the next start, as dockerd does). Init may
                // be gone without this loop having reaped it yet: ask its pidfd. Its output
                // pipes close before it becomes a zombie (a pid namespace's init also waits for
                // the namespace to empty): an output-only attach whose pipes are all closed
                // could not get anything either.
                let outputs_closed = !(stdin && self.stdin.is_some()) && self.outputs_closed(stdout, stderr);
                if self.init_exit.is_some() || self.exit.is_some() || self.init_gone() || outputs_closed {
                    self.reply(id, &Response::err("container is not running"), Role::Done);
                    return;
                }
                let stdin = stdin && self.stdin.is_some();
                self.reply(
                    id,
                    &ok,
                    Role::Attach {
                        stdin,
                        stdout,
                        stderr,
                    },
                );
                if stdin && !rest.is_empty() {
                    self.stdin_buf.extend_from_slice(&rest);
                }
            }
            Request::Resize { height, width } => {
                if let Some(m) = &self.master {
                    set_winsize(m.as_raw_fd(), height, width);
                }
                self.reply(id, &ok, Role::Done);
            }
            Request::Exec { process, stdin } => {
                if self.init_exit.is_some() || self.status != Status::Running {
                    self.reply(id, &Response::err("container is not running"), Role::Done);
                    return;
                }
                if Cgroup::for_path(&cgroups_path(&self.cfg)).frozen() {
                    self.reply(id, &Response::err(PAUSED), Role::Done);
                    return;
                }
                let r = match self.spawn_exec(&process, stdin, false) {
                    Ok((eid, pid)) => {
                        let r = Response {
                            exec_id: Some(eid.clone()),
                            pid: Some(pid as u32),
                            ..Default::default()
                        };
                        self.reply(id, &r, Role::ExecStream(eid.clone()));
                        if let Some(e) = self.execs.get_mut(&eid) {
                            if e.stdin.is_some() {
                                e.stdin_buf.extend_from_slice(&rest);
                            }
                        }
                        return;
                    }
                    Err(e) => e.response(),
                };
                self.reply(id, &r, Role::Done);
            }
            Request::ExecResize {
                id: eid,
                height,
                width,
            } => {
                let r = match self.execs.get(&eid) {
                    Some(e) => {
                        if let Some(m) = &e.master {
                            set_winsize(m.as_raw_fd(), height, width);
                        }
                        ok
                    }
                    None => Response::err(format!("no such exec instance: {eid}")),
                };
                self.reply(id, &r, Role::Done);
            }
            Request::Health => {
                let r = Response {
                    health: self.health.as_ref().map(|h| h.health.clone()),
                    ..Default::default()
                };
                self.reply(id, &r, Role::Done);
            }
            Request::ExecWait { id: eid } => match self.execs.get(&eid) {
                None => self.reply(
                    id,
                    &Response::err(format!("no such exec instance: {eid}")),
                    Role::Done,
                ),
                Some(e) if e.done => {
                    let r = Response {
                        exit_code: e.exit_code,
                        ..Default::default()
                    };
                    self.reply(id, &r, Role::Done);
                }
                Some(_) => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.role = Role::ExecWaiter(eid);
                    }
                }
            },
        }
    }

    fn spawn_exec(
        &mut self,
        p: &ProcessConfig,
        attach_stdin: bool,
        capture: bool,
    ) -> Result<(String, i32), ShimError> {
        let eid = exec_id();
        let pj = self.state_dir.join(format!("exec-{eid}.json"));
        let (cfg, state_dir) = (&self.cfg, &self.state_dir);
        in_helper(|| prepare_exec(cfg, state_dir, p, &pj).map(|_| 0))?;
        let console_name = format!("exec-{}.sock", &eid[..8]);
        let mut stdio = make_stdio(&self.state_dir, p.tty, attach_stdin, &console_name)?;
        let res = self
            .backend
            .exec(&self.cfg, &self.state_dir, &pj, &mut stdio);
        let _ = std::fs::remove_file(&pj);
        let pid = match res {
            Ok(pid) => pid,
            Err(e) => {
                if let Some((_, path)) = &stdio.console {
                    let _ = std::fs::remove_file(path);
                }
                return Err(e);
            }
        };
        let mut outs: Vec<Out> = stdio
            .outs
            .drain(..)
            .map(|(fd, stream)| Out {
                fd,
                stream,
                eof: false,
            })
            .collect();
        let mut stdin = stdio.stdin.take();
        let mut master = None;
        if let Some((l, path)) = stdio.console.take() {
            let m = recv_console(&l);
            let _ = std::fs::remove_file(&path);
            let m = m?;
            if let Some((h, w)) = p.console_size {
                set_winsize(m.as_raw_fd(), h, w);
            }
            set_nonblock(m.as_raw_fd());
            outs.push(Out {
                fd: m.try_clone().map_err(ioe("dup pty"))?,
                stream: Stream::Stdout,
                eof: false,
            });
            if attach_stdin {
                stdin = Some(m.try_clone().map_err(ioe("dup pty"))?);
            }
            master = Some(m);
        }
        for o in &outs {
            set_nonblock(o.fd.as_raw_fd());
        }
        if let Some(s) = &stdin {
            set_nonblock(s.as_raw_fd());
        }
        self.execs.insert(
            eid.clone(),
            Exec {
                pid,
                pidfd: pidfd_open(pid),
                tty: p.tty,
                master,
                stdin,
                stdin_buf: Vec::new(),
                outs,
                exit_code: None,
                done: false,
                capture: if capture { Some(Vec::new()) } else { None },
            },
        );
        // Only now: a fast exec may already have exited, and its status must find its entry.
        self.reap();
        trim_resident();
        Ok((eid, pid))
    }

    fn reap(&mut self) {
        loop {
            // __WALL: libcontainer starts init and exec processes with CLONE_PARENT and no
            // exit signal, which a plain waitpid does not see.
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_reaped(pid.as_raw(), code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_reaped(pid.as_raw(), 128 + sig as i32, Some(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn on_reaped(&mut self, pid: i32, code: i32, signal: Option<i32>) {
        if pid == self.init_pid {
            crate::timing::mark("shim: init reaped");
            self.init_exit = Some((code, signal));
            self.init_pidfd = None;
            return;
        }
        for e in self.execs.values_mut() {
            if e.pid == pid && e.exit_code.is_none() {
                e.exit_code = Some(code);
                e.pidfd = None;
            }
        }
    }

    fn on_timeout(&mut self) {
        self.reap();
        if self.init_exit.is_some() && self.exit.is_none() {
            // Something outside the container (e.g. with a host pid namespace) still holds
            // the output open: give it a few seconds, then stop waiting for EOF.
            self.linger += 1;
            if self.linger > 30 {
                for o in &mut self.outs {
                    o.eof = true;
                }
            }
        }
    }

    fn check_execs(&mut self) {
        let container_gone = self.init_exit.is_some();
        let mut finished = Vec::new();
        for (id, e) in &mut self.execs {
            if e.done {
                continue;
            }
            if container_gone && e.exit_code.is_none() {
                e.exit_code = Some(137);
            }
            if e.exit_code.is_some() && (e.outs.iter().all(|o| o.eof) || container_gone) {
                e.done = true;
                e.stdin = None;
                e.master = None;
                e.outs.clear();
                finished.push((id.clone(), e.exit_code.unwrap_or(0)));
            }
        }
        let now = std::time::Instant::now();
        let mut unhealthy = None;
        if let Some(h) = self.health.as_mut() {
            let probe = h.running.as_ref().map(|(id, ..)| id.clone());
            if let Some((id, code)) = finished.iter().find(|(id, _)| Some(id) == probe.as_ref()) {
                let out = self
                    .execs
                    .remove(id)
                    .and_then(|e| e.capture)
                    .unwrap_or_default();
                let (code, out) = if h.timed_out {
                    let t = h.cfg.timeout();
                    (
                        -1,
                        format!("Health check exceeded timeout ({t:?})").into_bytes(),
                    )
                } else {
                    (*code, out)
                };
                unhealthy = Some(h.record(now, now_rfc3339(), code, &out));
            }
        }
        if let Some(u) = unhealthy {
            self.after_health(u);
        }
        for (id, code) in finished {
            let r = Response {
                exit_code: Some(code),
                ..Default::default()
            };
            let mut line = serde_json::to_vec(&r).unwrap_or_default();
            line.push(b'\n');
            for c in self.conns.values_mut() {
                if c.role == Role::ExecWaiter(id.clone()) {
                    c.out.extend(line.iter());
                    c.role = Role::Done;
                } else if c.role == Role::ExecStream(id.clone()) {
                    c.role = Role::Done;
                }
            }
        }
    }

    fn check_exit(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let Some((code, signal)) = self.init_exit else {
            return;
        };
        if !self.outs.iter().all(|o| o.eof) {
            return;
        }
        self.logs.flush_partial(Stream::Stdout);
        self.logs.flush_partial(Stream::Stderr);
        self.outs.clear();
        self.stdin = None;
        self.master = None;
        tracing::debug!("container exited");
        let cg = Cgroup::for_path(&cgroups_path(&self.cfg));
        let oom_killed = cg.oom_kill_count() > 0;
        crate::timing::mark("shim: teardown begin");
        self.rootfs_pin = teardown(&self.state_dir, &self.cfg, Some(&self.backend));
        crate::timing::mark("shim: teardown done");
        tracing::debug!("torn down");
        let exit = ExitStatus {
            exit_code: code,
            signal,
            oom_killed,
            finished_at: now(),
            log_dropped: self.logs.dropped(),
        };
        let bytes = serde_json::to_vec(&exit).unwrap_or_default();
        if let Err(e) = write_atomic(&self.state_dir.join(EXIT_FILE), &bytes) {
            tracing::error!("write exit.json: {e}");
        }
        // From now on connecting fails and clients read exit.json; waiters get the reply.
        let _ = std::fs::remove_file(self.state_dir.join(SOCKET_FILE));
        let r = Response {
            exit: Some(exit.clone()),
            ..Default::default()
        };
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        for c in self.conns.values_mut() {
            match c.role {
                Role::Waiter => {
                    c.out.extend(line.iter());
                    c.role = Role::Done;
                }
                Role::Attach { .. } | Role::ExecStream(_) => c.role = Role::Done,
                _ => {}
            }
        }
        self.exit = Some(exit);
        crate::timing::mark("shim: exit recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_docker_headers() {
        let f = frame(Stream::Stderr, b"hey");
        assert_eq!(f, vec![2, 0, 0, 0, 0, 0, 0, 3, b'h', b'e', b'y']);
        assert_eq!(frame(Stream::Stdout, b"")[0], 1);
    }

    #[test]
    fn runtime_errors_are_classified() {
        let e = classify("exec: \"x\": executable file not found in $PATH".into());
        assert_eq!(
            e.kind(),
            ShimErrorKind::Start(StartFailure::CommandNotFound)
        );
        let e = classify("exec: \"/etc\": permission denied".into());
        assert_eq!(
            e.kind(),
            ShimErrorKind::Start(StartFailure::CommandNotExecutable)
        );
        assert_eq!(
            classify("boom".into()).kind(),
            ShimErrorKind::Start(StartFailure::Other)
        );
    }

    #[test]
    fn destinations_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        // Absolute symlink to a host path, and a relative one climbing above the root.
        std::os::unix::fs::symlink(&outside, root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../..", root.join("up")).expect("symlink");
        let d = resolve_dest(&root, "/abs/data", false).expect("resolve");
        assert_eq!(d, format!("{}/data", outside.display()));
        assert!(root.join(d.trim_start_matches('/')).is_dir());
        assert!(!outside.join("data").exists(), "created outside the root");
        let d = resolve_dest(&root, "/up/etc/hosts", true).expect("resolve");
        assert_eq!(d, "/etc/hosts");
        assert!(root.join("etc/hosts").is_file());
        assert_eq!(
            resolve_dest(&root, "/a/../b/./c", false).expect("resolve"),
            "/b/c"
        );
    }

    #[test]
    fn executables_are_checked_in_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::write(root.join("bin/tool"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            root.join("bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(root.join("bin/data"), "x").expect("write");
        assert!(check_executable(root, "tool", "/usr/bin:/bin", "/").is_ok());
        assert!(check_executable(root, "/bin/tool", "", "/").is_ok());
        let e = check_executable(root, "nosuch", "/bin", "/").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "exec: \"nosuch\": executable file not found in $PATH"
        );
        let e = check_executable(root, "/bin/nosuch", "/bin", "/").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "exec: \"/bin/nosuch\": stat /bin/nosuch: no such file or directory"
        );
        let e = check_executable(root, "/bin/data", "/bin", "/").expect_err("not executable");
        assert_eq!(
            e.kind(),
            ShimErrorKind::Start(StartFailure::CommandNotExecutable)
        );
    }
}
