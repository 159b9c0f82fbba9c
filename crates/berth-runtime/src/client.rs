//! Daemon side: launch a shim, talk to it, read what it left behind.
//!
//! Every call opens its own connection to `<state_dir>/shim.sock` (a path socket, never an
//! abstract one: HARDENING A4 #41), sends one JSON request line and reads one JSON reply line;
//! `attach` and `exec` then keep the connection as the raw stdio stream. Connecting goes
//! through `/proc/self/fd/<dirfd>/shim.sock`, so long state dirs never hit the 108-byte
//! `sun_path` limit.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, CgroupError, Stats};
use crate::config::{ContainerConfig, ProcessConfig};
use crate::spec::SpecError;

/// File names inside a state dir.
pub(crate) const CONFIG_FILE: &str = "berth.json";
/// The OCI bundle config the shim writes (the state dir is the bundle).
pub(crate) const SPEC_FILE: &str = "config.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const SOCKET_FILE: &str = "shim.sock";
pub(crate) const ROOTFS_DIR: &str = "rootfs";
pub(crate) const YOUKI_DIR: &str = "youki";
pub(crate) const RUNC_DIR: &str = "runc";
/// Environment variables the daemon side uses to hand the shim its start-up channel.
pub(crate) const ENV_READY_FD: &str = "BERTH_SHIM_READY_FD";
pub(crate) const ENV_AUTOSTART: &str = "BERTH_SHIM_AUTOSTART";

/// Errors of the runtime API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container's process could not be started; the text is the runtime's, Docker-style
    /// (`exec: "nosuch": executable file not found in $PATH`).
    #[error("{message}")]
    Start {
        message: String,
        reason: StartFailure,
    },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container is not running")]
    NotRunning,
    #[error("container is paused, unpause the container before exec")]
    Paused,
    #[error("no such exec instance: {0}")]
    NoSuchExec(String),
    #[error("shim: {0}")]
    Shim(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Why a start failed; the daemon maps `CommandNotFound` to exit code 127 and
/// `CommandNotExecutable` to 126 like Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFailure {
    CommandNotFound,
    CommandNotExecutable,
    InvalidConfig,
    Other,
}

/// Coarse classes of [`RuntimeError`], for the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeErrorKind {
    /// 127 in Docker's CLI.
    CommandNotFound,
    /// 126 in Docker's CLI.
    CommandNotExecutable,
    /// Bad request (unknown user, bad option): HTTP 400.
    InvalidArgument,
    /// State conflict (not running, paused): HTTP 409.
    Conflict,
    /// Unknown exec id: HTTP 404.
    NotFound,
    /// Everything else: HTTP 500.
    Internal,
}

impl RuntimeError {
    pub fn kind(&self) -> RuntimeErrorKind {
        match self {
            RuntimeError::Start { reason, .. } => match reason {
                StartFailure::CommandNotFound => RuntimeErrorKind::CommandNotFound,
                StartFailure::CommandNotExecutable => RuntimeErrorKind::CommandNotExecutable,
                StartFailure::InvalidConfig => RuntimeErrorKind::InvalidArgument,
                StartFailure::Other => RuntimeErrorKind::Internal,
            },
            RuntimeError::Spec(e) => match e.kind() {
                crate::spec::SpecErrorKind::InvalidArgument => RuntimeErrorKind::InvalidArgument,
                crate::spec::SpecErrorKind::Internal => RuntimeErrorKind::Internal,
            },
            RuntimeError::NotRunning | RuntimeError::Paused => RuntimeErrorKind::Conflict,
            RuntimeError::NoSuchExec(_) => RuntimeErrorKind::NotFound,
            RuntimeError::Cgroup(_) | RuntimeError::Shim(_) | RuntimeError::Io(..) => {
                RuntimeErrorKind::Internal
            }
        }
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let what = what.to_string();
    move |e| RuntimeError::Io(what, e)
}

/// What [`start`] and [`create`] return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// The container's init process (host pid namespace).
    pub pid: u32,
    pub shim_pid: u32,
}

/// Life-cycle state of a container as the shim sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

/// Answer of [`Shim::state`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub pid: u32,
    pub status: Status,
    /// RFC 3339, `None` before start.
    pub started_at: Option<String>,
}

/// How the container ended, as recorded in `<state_dir>/exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Docker's: the exit code, or 128+signal.
    pub exit_code: i32,
    /// The signal that killed init, if any.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    /// Log entries dropped because the log file could not be written (a full disk): the
    /// container was never blocked by its logging (HARDENING B6, "drop + counter").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub log_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One request line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    State,
    Start,
    Kill {
        signal: i32,
        all: bool,
    },
    Wait,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Resize {
        height: u16,
        width: u16,
    },
    Exec {
        process: ProcessConfig,
        stdin: bool,
    },
    ExecResize {
        id: String,
        height: u16,
        width: u16,
    },
    ExecWait {
        id: String,
    },
    Health,
}

/// One reply line; only the fields of the request's answer are set.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<StartFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Started>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::Health>,
}

impl Response {
    pub(crate) fn err(msg: impl Into<String>) -> Response {
        Response {
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// Write `bytes` to `path` so that readers see the old content or the new one, never a mix.
///
/// No fsync: everything written here lives in a state dir under the exec root (tmpfs,
/// `/run/berth`), whose contents matter only while the machine is up. A SIGKILL of the daemon or
/// the shim cannot lose page-cache data, and after a power loss no container is left to describe.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// Read the container description the daemon stored in `state_dir`.
pub fn read_config(state_dir: &Path) -> Result<ContainerConfig, RuntimeError> {
    let p = state_dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&p).map_err(io(p.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Shim(format!("{}: {e}", p.display())))
}

/// Daemon side: start the shim for `cfg` and wait until the container process runs (or
/// failed to start, with the runtime's message). `exe` is the binary whose `shim <state_dir>`
/// subcommand calls [`crate::shim_main`].
pub fn start(exe: &Path, state_dir: &Path, cfg: &ContainerConfig) -> Result<Started, RuntimeError> {
    launch(exe, state_dir, cfg, true)
}

/// Like [`start`] but leaves the container created and not started (OCI `create`), so the
/// daemon can [`Shim::attach`] before [`Shim::start`] and miss no output (`docker run`).
pub fn create(
    exe: &Path,
    state_dir: &Path,
    cfg: &ContainerConfig,
) -> Result<Started, RuntimeError> {
    launch(exe, state_dir, cfg, false)
}

fn launch(
    exe: &Path,
    state_dir: &Path,
    cfg: &ContainerConfig,
    autostart: bool,
) -> Result<Started, RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io(state_dir.display()))?;
    let cfg_bytes =
        serde_json::to_vec_pretty(cfg).map_err(|e| RuntimeError::Shim(e.to_string()))?;
    write_atomic(&state_dir.join(CONFIG_FILE), &cfg_bytes).map_err(io("write config"))?;
    let _ = std::fs::remove_file(state_dir.join(EXIT_FILE));
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::Io("pipe".into(), e.into()))?;
    let wr_raw = wr.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("shim")
        .arg(state_dir)
        .env(ENV_READY_FD, "3")
        .env(ENV_AUTOSTART, if autostart { "1" } else { "0" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only calls async-signal-safe functions (dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            if wr_raw == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(wr_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing but stdio and the status pipe reaches the shim (HARDENING A4 #36).
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    crate::timing::mark("daemon: spawn shim");
    let mut child = cmd
        .spawn()
        .map_err(io(format!("spawn {}", exe.display())))?;
    drop(wr);
    // The shim forks once and its first process exits at once: reap it so it is no zombie.
    let _ = child.wait();
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::from(rd))
        .read_line(&mut line)
        .map_err(io("read shim status"))?;
    if line.trim().is_empty() {
        let log = std::fs::read_to_string(state_dir.join("shim.log")).unwrap_or_default();
        return Err(RuntimeError::Shim(format!(
            "shim exited before reporting: {}",
            log.lines().last().unwrap_or("no log")
        )));
    }
    crate::timing::mark("daemon: shim reported");
    let resp: Response =
        serde_json::from_str(&line).map_err(|e| RuntimeError::Shim(e.to_string()))?;
    response_result(&resp)?;
    resp.started
        .ok_or_else(|| RuntimeError::Shim("shim did not report a pid".into()))
}

fn response_result(resp: &Response) -> Result<(), RuntimeError> {
    match &resp.error {
        None => Ok(()),
        Some(e) => Err(match resp.reason {
            Some(reason) => RuntimeError::Start {
                message: e.clone(),
                reason,
            },
            None if e == "container is not running" => RuntimeError::NotRunning,
            None if e.starts_with("container is paused") => RuntimeError::Paused,
            None if e.starts_with("no such exec instance") => {
                RuntimeError::NoSuchExec(e.trim_start_matches("no such exec instance: ").into())
            }
            None => RuntimeError::Shim(e.clone()),
        }),
    }
}

/// `exit.json` of a container whose shim is gone; `None` if it has not exited.
pub fn read_exit(state_dir: &Path) -> Result<Option<ExitStatus>, RuntimeError> {
    let p = state_dir.join(EXIT_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RuntimeError::Shim(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::Io(p.display().to_string(), e)),
    }
}

/// Where the shim writes the container's json log: `cfg.log.path`, or
/// `<state_dir>/<id>-json.log` when that is empty (rotated files get `.1`, `.2`, ...).
pub fn log_path(state_dir: &Path, cfg: &ContainerConfig) -> PathBuf {
    if cfg.log.path.as_os_str().is_empty() {
        state_dir.join(format!("{}-json.log", cfg.id))
    } else {
        cfg.log.path.clone()
    }
}

/// The health state the shim last wrote (`None`: no health check configured, or none ran).
pub fn read_health(state_dir: &Path) -> Result<Option<crate::health::Health>, RuntimeError> {
    let p = state_dir.join(crate::health::HEALTH_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RuntimeError::Shim(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RuntimeError::Io(p.display().to_string(), e)),
    }
}

/// The OCI `cgroupsPath` of a container: `/<cgroup_parent or "berth">/<id>`.
pub fn cgroups_path(cfg: &ContainerConfig) -> String {
    let parent = if cfg.cgroup_parent.is_empty() {
        "berth"
    } else {
        cfg.cgroup_parent.trim_matches('/')
    };
    format!("/{parent}/{}", cfg.id)
}

/// After the shim is gone: remove leftovers (rootfs mount, cgroup, runtime state)
/// idempotently. Safe to call when nothing is left.
pub fn cleanup(state_dir: &Path, cfg: &ContainerConfig) -> Result<(), RuntimeError> {
    let rootfs = state_dir.join(ROOTFS_DIR);
    crate::shim::unmount_all(&rootfs);
    let cg = Cgroup::for_path(&cgroups_path(cfg));
    cg.remove()?;
    if let Some(rt) = &cfg.runtime {
        let _ = Command::new(rt)
            .arg("--root")
            .arg(state_dir.join(RUNC_DIR))
            .args(["delete", "--force", &cfg.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for d in [YOUKI_DIR, RUNC_DIR] {
        match std::fs::remove_dir_all(state_dir.join(d)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RuntimeError::Io(d.to_string(), e)),
        }
    }
    let _ = std::fs::remove_file(state_dir.join(SOCKET_FILE));
    Ok(())
}

/// Stop a shim still running on `state_dir` although its container is not recorded as
/// running: the daemon was killed between creating it and recording the start. Its container
/// is killed and the shim waited for (up to `timeout`). Returns whether there was one.
pub fn stop_leftover(state_dir: &Path, timeout: std::time::Duration) -> bool {
    let Ok(Some(shim)) = Shim::connect(state_dir) else { return false };
    let _ = shim.kill(libc::SIGKILL, true);
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if !matches!(Shim::connect(state_dir), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    true
}

/// Remove a container's state directory without ever deleting through a mount: the rootfs
/// mount point is unmounted first, and a directory that is still a mount point on another
/// filesystem is refused instead of emptied (std's `remove_dir_all` would walk into a
/// container's mounted root and delete its files through the overlay).
pub fn remove_state_dir(state_dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let io = |p: &Path, e: std::io::Error| RuntimeError::Io(p.display().to_string(), e);
    crate::shim::unmount_all(&state_dir.join(ROOTFS_DIR));
    let top = match std::fs::symlink_metadata(state_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(state_dir, e)),
    };
    fn walk(dir: &Path, dev: u64, io: &dyn Fn(&Path, std::io::Error) -> RuntimeError) -> Result<(), RuntimeError> {
        for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let e = e.map_err(|e| io(dir, e))?;
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
            if md.is_dir() {
                if md.dev() != dev {
                    crate::shim::unmount_all(&p);
                    let again = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
                    if again.dev() != dev {
                        return Err(io(&p, std::io::Error::other("still a mount point; not removed")));
                    }
                }
                walk(&p, dev, io)?;
                std::fs::remove_dir(&p).map_err(|e| io(&p, e))?;
            } else {
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        Ok(())
    }
    walk(state_dir, top.dev(), &io)?;
    std::fs::remove_dir(state_dir).map_err(|e| io(state_dir, e))
}

/// A blocking client of one container's shim.
pub struct Shim {
    state_dir: PathBuf,
    dir: OwnedFd,
    cgroup: Cgroup,
}

impl Shim {
    /// Connect to the shim of the container in `state_dir` (after a daemon restart too).
    /// `Ok(None)` when the shim has exited: read [`read_exit`] then.
    pub fn connect(state_dir: &Path) -> Result<Option<Shim>, RuntimeError> {
        let dir: OwnedFd = match std::fs::File::open(state_dir) {
            Ok(f) => f.into(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RuntimeError::Io(state_dir.display().to_string(), e)),
        };
        let cfg = match read_config(state_dir) {
            Ok(c) => c,
            // A state dir without a config never had a shim.
            Err(RuntimeError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let shim = Shim {
            state_dir: state_dir.to_path_buf(),
            dir,
            cgroup: Cgroup::for_path(&cgroups_path(&cfg)),
        };
        match shim.stream() {
            Ok(_) => Ok(Some(shim)),
            Err(RuntimeError::NotRunning) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The state dir this client talks to.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn stream(&self) -> Result<UnixStream, RuntimeError> {
        let p = format!("/proc/self/fd/{}/{SOCKET_FILE}", self.dir.as_raw_fd());
        match UnixStream::connect(&p) {
            Ok(s) => Ok(s),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ECONNREFUSED)
                ) =>
            {
                Err(RuntimeError::NotRunning)
            }
            Err(e) => Err(RuntimeError::Io("connect shim".into(), e)),
        }
    }

    fn call(&self, req: &Request) -> Result<(Response, UnixStream), RuntimeError> {
        let mut s = self.stream()?;
        let mut line = serde_json::to_vec(req).map_err(|e| RuntimeError::Shim(e.to_string()))?;
        line.push(b'\n');
        // A shim that exits right now resets the connection: that is "not running" (the
        // caller then reads exit.json), not an I/O failure.
        let gone = |e: &std::io::Error| {
            matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET))
        };
        if let Err(e) = s.write_all(&line) {
            return Err(if gone(&e) {
                RuntimeError::NotRunning
            } else {
                RuntimeError::Io("write to shim".into(), e)
            });
        }
        // Byte by byte: after the reply line the stream carries raw stdio.
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match s.read(&mut b) {
                Ok(0) => return Err(RuntimeError::NotRunning),
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => {
                    buf.push(b[0]);
                    if buf.len() > 1 << 20 {
                        return Err(RuntimeError::Shim("reply too long".into()));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if gone(&e) => return Err(RuntimeError::NotRunning),
                Err(e) => return Err(RuntimeError::Io("read from shim".into(), e)),
            }
        }
        let resp: Response =
            serde_json::from_slice(&buf).map_err(|e| RuntimeError::Shim(e.to_string()))?;
        response_result(&resp)?;
        Ok((resp, s))
    }

    /// Pid, status (created, running, paused) and start time.
    pub fn state(&self) -> Result<State, RuntimeError> {
        let (r, _) = self.call(&Request::State)?;
        let mut st = r
            .state
            .ok_or_else(|| RuntimeError::Shim("no state in reply".into()))?;
        if st.status == Status::Running && self.cgroup.frozen() {
            st.status = Status::Paused;
        }
        Ok(st)
    }

    /// Start a container made with [`create`].
    pub fn start(&self) -> Result<(), RuntimeError> {
        self.call(&Request::Start).map(|_| ())
    }

    /// Send `signal` to the init process, or to every process of the container when `all`.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), RuntimeError> {
        self.call(&Request::Kill { signal, all }).map(|_| ())
    }

    /// Freeze every process of the container (freezer cgroup).
    pub fn pause(&self) -> Result<(), RuntimeError> {
        Ok(self.cgroup.freeze(true)?)
    }

    /// Thaw a paused container.
    pub fn resume(&self) -> Result<(), RuntimeError> {
        Ok(self.cgroup.freeze(false)?)
    }

    /// Block until the container exits; returns what exit.json records.
    pub fn wait(&self) -> Result<ExitStatus, RuntimeError> {
        match self.call(&Request::Wait) {
            Ok((r, _)) => match r.exit {
                Some(e) => Ok(e),
                None => self.exit_from_file(),
            },
            Err(RuntimeError::NotRunning) => self.exit_from_file(),
            Err(e) => Err(e),
        }
    }

    fn exit_from_file(&self) -> Result<ExitStatus, RuntimeError> {
        read_exit(&self.state_dir)?
            .ok_or_else(|| RuntimeError::Shim("shim is gone and left no exit status".into()))
    }

    /// A connected stream: bytes written go to the container's stdin (if `open_stdin`;
    /// `shutdown(Write)` closes it when `stdin_once`); bytes read are the output, raw with a
    /// tty, else in Docker's multiplexed format (8-byte header `[stream,0,0,0,len_be32]`).
    /// Only output produced after the attach is sent (history is in the log file).
    pub fn attach(
        &self,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<UnixStream, RuntimeError> {
        let (_, s) = self.call(&Request::Attach {
            stdin,
            stdout,
            stderr,
        })?;
        Ok(s)
    }

    /// Resize the container's terminal.
    pub fn resize(&self, height: u16, width: u16) -> Result<(), RuntimeError> {
        self.call(&Request::Resize { height, width }).map(|_| ())
    }

    /// Start `p` in the container. Returns the exec id, its pid and a stream like
    /// [`Shim::attach`]'s (stdin only when `attach_stdin`; closing the write side closes the
    /// process' stdin). The stream ends when the process has exited and its output is drained.
    pub fn exec(
        &self,
        p: &ProcessConfig,
        attach_stdin: bool,
    ) -> Result<(String, u32, UnixStream), RuntimeError> {
        let (r, s) = self.call(&Request::Exec {
            process: p.clone(),
            stdin: attach_stdin,
        })?;
        let id = r
            .exec_id
            .ok_or_else(|| RuntimeError::Shim("no exec id in reply".into()))?;
        Ok((id, r.pid.unwrap_or(0), s))
    }

    /// Resize an exec's terminal.
    pub fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<(), RuntimeError> {
        self.call(&Request::ExecResize {
            id: id.to_string(),
            height,
            width,
        })
        .map(|_| ())
    }

    /// Block until the exec exits; its exit code (128+signal when killed).
    pub fn exec_wait(&self, id: &str) -> Result<i32, RuntimeError> {
        let (r, _) = self.call(&Request::ExecWait { id: id.to_string() })?;
        r.exit_code
            .ok_or_else(|| RuntimeError::Shim("no exit code in reply".into()))
    }

    /// cgroup usage numbers (`docker stats`).
    pub fn stats(&self) -> Result<Stats, RuntimeError> {
        Ok(self.cgroup.stats())
    }

    /// Current health (`None` when the container has no health check).
    pub fn health(&self) -> Result<Option<crate::health::Health>, RuntimeError> {
        let (r, _) = self.call(&Request::Health)?;
        Ok(r.health)
    }

    /// Host pids of every process of the container (`docker top`).
    pub fn pids(&self) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.cgroup.pids())
    }
}
