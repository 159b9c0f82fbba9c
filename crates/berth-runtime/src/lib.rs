//! berth-runtime: run one container per small, single-threaded shim process.
//!
//! This crate is the runtime layer of berth (see DESIGN.md): OCI runtime spec generation with
//! Docker's defaults ([`spec`]), the per-container shim ([`shim_main`]), its blocking client
//! for the daemon ([`Shim`], [`start`], [`create`]), cgroup v1/v2 reading and freezing
//! ([`cgroup`]) and Docker json-file logs with rotation ([`logs`]).
//!
//! # Why it is built this way
//!
//! - **The daemon never forks containers.** Forking from a multi-threaded tokio process is
//!   fragile, and containers must outlive the daemon. The daemon runs `berth shim <state_dir>`;
//!   the shim daemonizes (own session, survives a SIGKILL of the daemon), becomes a child
//!   subreaper and is the parent of the container's init and of every exec.
//! - **Everything the shim needs is on disk.** The daemon writes the [`ContainerConfig`] to
//!   `<state_dir>/berth.json`; the shim answers on `<state_dir>/shim.sock` (a path socket,
//!   never abstract); the exit is written atomically to `<state_dir>/exit.json`. A restarted
//!   daemon calls [`Shim::connect`] for each state dir and finds either a live shim or the
//!   exit status ([`read_exit`]).
//! - **The shim owns stdio.** Output goes to the json log (so `docker logs` works from the
//!   file, even while the daemon is down) and to attached clients; logs rotate by default
//!   (10 MiB × 3).
//! - **Built-in runtime: youki's `libcontainer`** (cgroup v1 and v2, seccomp through
//!   libseccomp, fd-based mounts through `pathrs`). `ContainerConfig::runtime =
//!   Some("/usr/sbin/runc")` uses an external OCI runtime binary instead (runc, crun) with the
//!   same bundle. Host quirks are handled in the spec: rlimits are clamped to the hard limits
//!   (no CAP_SYS_RESOURCE here), no `oomScoreAdj` is set, no RT cgroup settings; seccomp uses
//!   Docker's default profile with ENOSYS for unknown syscalls.
//!
//! - **libcontainer runs in short-lived helper processes** forked by the shim (bundle
//!   preparation, create, start, exec). Its code never stays resident in the shim, its
//!   descriptor handling cannot disturb the shim's sockets, and the processes it starts are
//!   reparented to the shim (child subreaper). The shim follows init and execs through
//!   pidfds (libcontainer clones them with no exit signal) and reaps with `__WALL`. After
//!   start-up the shim drops its unmodified file pages (`trim_resident`): about 1.5–2 MiB
//!   RSS in a release build.
//! - **Exit order**: init reaped and output drained → OOM counter read → runtime state,
//!   rootfs mount and cgroup removed → `exit.json` written and `shim.sock` removed → waiters
//!   answered → the detached overlay is released (its upper-fs sync happens last) → exit.
//!   When [`Shim::wait`] returns, [`Shim::connect`] returns `None`.
//!
//! Libraries never print: the shim's tracing goes to whatever subscriber the binary set up,
//! with stderr pointed at `<state_dir>/shim.log`. libcontainer's own logs are silenced
//! because the processes it clones inherit the subscriber and would write into the
//! container's output (`BERTH_SHIM_TRACE_RUNTIME=1` keeps them, for debugging).
//!
//! # State dir layout (the state dir is also the OCI bundle)
//!
//! ```text
//! <state_dir>/berth.json          ContainerConfig (written by start/create)
//!             config.json         OCI spec (written by the shim)
//!             rootfs/             the container root (overlay or bind, mounted by the shim)
//!             shim.sock           the shim's API socket (gone once the container exited)
//!             shim.log            the shim's own stderr (tracing output)
//!             exit.json           ExitStatus, written atomically when the container is gone
//!             <id>-json.log[.N]   container logs, unless LogConfig::path says otherwise
//!             youki/ | runc/      runtime state
//! ```
//!
//! # API (synchronous; call it from `spawn_blocking`)
//!
//! ```text
//! pub fn start(exe: &Path, state_dir: &Path, cfg: &ContainerConfig) -> Result<Started, RuntimeError>
//! pub fn create(exe: &Path, state_dir: &Path, cfg: &ContainerConfig) -> Result<Started, RuntimeError>
//! pub fn read_exit(state_dir: &Path) -> Result<Option<ExitStatus>, RuntimeError>
//! pub fn read_health(state_dir: &Path) -> Result<Option<Health>, RuntimeError>
//! pub fn health::set_config(state_dir: &Path, cfg: Option<&HealthConfig>) -> std::io::Result<()>  // before start/create
//! pub fn log_path(state_dir: &Path, cfg: &ContainerConfig) -> PathBuf
//! pub fn read_config(state_dir: &Path) -> Result<ContainerConfig, RuntimeError>
//! pub fn cleanup(state_dir: &Path, cfg: &ContainerConfig) -> Result<(), RuntimeError>
//! pub fn cgroups_path(cfg: &ContainerConfig) -> String
//! pub fn build_spec(cfg: &ContainerConfig, rootfs: Option<&Path>) -> Result<oci_spec::runtime::Spec, SpecError>
//! pub fn shim_main(state_dir: &Path) -> !
//!
//! impl Shim {
//!     pub fn connect(state_dir: &Path) -> Result<Option<Shim>, RuntimeError>;   // None: exited
//!     pub fn state(&self) -> Result<State, RuntimeError>;           // {pid, status, started_at}
//!     pub fn start(&self) -> Result<(), RuntimeError>;              // after create()
//!     pub fn kill(&self, signal: i32, all: bool) -> Result<(), RuntimeError>;
//!     pub fn pause(&self) -> Result<(), RuntimeError>;              // freezer cgroup
//!     pub fn resume(&self) -> Result<(), RuntimeError>;
//!     pub fn wait(&self) -> Result<ExitStatus, RuntimeError>;       // blocks until exit
//!     pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<UnixStream, RuntimeError>;
//!     pub fn resize(&self, height: u16, width: u16) -> Result<(), RuntimeError>;
//!     pub fn exec(&self, p: &ProcessConfig, attach_stdin: bool) -> Result<(String, u32, UnixStream), RuntimeError>;
//!     pub fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<(), RuntimeError>;
//!     pub fn exec_wait(&self, id: &str) -> Result<i32, RuntimeError>;
//!     pub fn stats(&self) -> Result<Stats, RuntimeError>;
//!     pub fn pids(&self) -> Result<Vec<u32>, RuntimeError>;         // for `top`
//!     pub fn health(&self) -> Result<Option<Health>, RuntimeError>; // None: no health check
//! }
//! ```
//!
//! Streams from [`Shim::attach`] and [`Shim::exec`]: bytes written go to the process' stdin
//! (`shutdown(Write)` closes it: always for exec, with `stdin_once` for attach); bytes read are
//! the output, raw with a tty, else Docker's multiplexed format (8-byte header
//! `[stream, 0, 0, 0, len_be32]`, stream 1 = stdout, 2 = stderr), ready to splice into a
//! hijacked HTTP connection. An attach sees output produced after it attached; for
//! `docker run` use [`create`], attach, then [`Shim::start`]. The stream ends when the
//! process has exited and its output is drained.
//!
//! Errors: [`RuntimeError::kind`] gives [`RuntimeErrorKind`]; a failed start carries the
//! runtime's Docker-worded message (`exec: "nosuch": executable file not found in $PATH`)
//! with kind `CommandNotFound` (Docker exits 127) or `CommandNotExecutable` (126).
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use berth_runtime::{ContainerConfig, ProcessConfig, RootfsMount, Shim};
//!
//! # fn main() -> Result<(), berth_runtime::RuntimeError> {
//! let cfg = ContainerConfig {
//!     id: "0123abcd".into(),
//!     rootfs: RootfsMount {
//!         fstype: "overlay".into(),
//!         source: "overlay".into(),
//!         options: vec!["lowerdir=/l1:/l2,upperdir=/u,workdir=/w".into()],
//!     },
//!     process: ProcessConfig { args: vec!["sh".into(), "-c".into(), "echo hi".into()], ..Default::default() },
//!     cgroup_parent: "berth".into(),
//!     ..Default::default()
//! };
//! let state_dir = Path::new("/run/berth/containers/0123abcd");
//! // `berth shim <state_dir>` must call berth_runtime::shim_main(state_dir).
//! let started = berth_runtime::create(Path::new("/usr/bin/berth"), state_dir, &cfg)?;
//! let shim = Shim::connect(state_dir)?.expect("just created");
//! let output = shim.attach(false, true, true)?;   // splice into the client connection
//! shim.start()?;
//! let exit = shim.wait()?;
//! println!("pid {} exited with {} (oom: {})", started.pid, exit.exit_code, exit.oom_killed);
//! # drop(output);
//! berth_runtime::cleanup(state_dir, &cfg)?;       // idempotent; the shim already tidied up
//! # Ok(()) }
//! ```
//!
//! # Health checks
//!
//! [`health::set_config`]`(state_dir, Some(&HealthConfig))`, called before [`start`] or
//! [`create`], makes the shim probe the container itself ([`health`]), as
//! execs through the same runtime, so checks keep running while the daemon is down. The
//! state (Docker's `State.Health` shape) is in `<state_dir>/health.json` ([`read_health`])
//! and answered by [`Shim::health`]; `--health-on-failure kill|stop` is applied by the shim,
//! `restart` is left to the engine (it sees `unhealthy`).

pub mod cgroup;
mod client;
pub mod config;
pub mod health;
pub mod logs;
mod shim;
pub mod spec;
pub mod timing;

pub use cgroup::{Cgroup, CgroupError, Stats};
pub use client::{
    cgroups_path, cleanup, create, log_path, read_config, read_exit, read_health, remove_state_dir, start,
    stop_leftover, ExitStatus, RuntimeError, RuntimeErrorKind, Shim, StartFailure, Started, State, Status,
};
pub use config::*;
pub use health::{Health, HealthAction, HealthConfig, HealthResult};
pub use shim::{shim_main, trim_resident, ShimError, ShimErrorKind};
pub use spec::{build_spec, SpecError};
