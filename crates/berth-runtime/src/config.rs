//! The container description the engine hands to the runtime.
//!
//! Plain data (serde), written by [`crate::start`] to `<state_dir>/berth.json` and read back by
//! the shim, so the shim never needs the engine to be alive. Every field has a default so the
//! engine can fill only what it knows (`..Default::default()`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything needed to create and run one container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContainerConfig {
    /// Container id (64 hex chars in the engine; any `[A-Za-z0-9_.-]` works here).
    pub id: String,
    /// The root filesystem, mounted by the shim at `<state_dir>/bundle/rootfs`.
    pub rootfs: RootfsMount,
    /// The container's main process.
    pub process: ProcessConfig,
    pub hostname: String,
    pub domainname: String,
    /// Extra mounts (binds, volumes, tmpfs); destinations are resolved inside the root.
    pub mounts: Vec<MountConfig>,
    pub network: NetMode,
    pub ipc_host: bool,
    pub pid_host: bool,
    pub uts_host: bool,
    pub resources: Resources,
    /// All capabilities of the host bounding set, all devices, no masked paths, no seccomp.
    pub privileged: bool,
    /// Capability names, with or without `CAP_`, any case; `ALL` is accepted.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: SecurityOpts,
    pub read_only_rootfs: bool,
    /// Run `/sbin/docker-init -- <args>` as pid 1 (tini, bind-mounted from the host).
    pub init: bool,
    /// Size of `/dev/shm` in bytes (Docker default 64 MiB).
    pub shm_size: Option<u64>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: Vec<Ulimit>,
    pub devices: Vec<DeviceMapping>,
    /// Parent cgroup, relative to each hierarchy root: `"berth"` puts the container in
    /// `/sys/fs/cgroup/<controller>/berth/<id>` (v1) or `/sys/fs/cgroup/berth/<id>` (v2).
    pub cgroup_parent: String,
    pub log: LogConfig,
    /// External OCI runtime binary (runc, crun); `None` = the built-in one (youki's libcontainer).
    pub runtime: Option<PathBuf>,
    /// `--group-add`: extra supplementary groups (names from the image's /etc/group, or
    /// numeric ids) for the init process and every exec.
    pub group_add: Vec<String>,
    /// Signal `docker stop` sends first (the engine uses it; the shim uses it for
    /// `--health-on-failure stop`).
    pub stop_signal: i32,
}

/// How the shim builds `<bundle>/rootfs`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RootfsMount {
    /// `"overlay"` (mounted with `options`, e.g. `lowerdir=..,upperdir=..,workdir=..`), or
    /// `""`/`"bind"`: `source` is a plain directory that is bind-mounted.
    pub fstype: String,
    pub source: String,
    pub options: Vec<String>,
}

/// A process to run: the container's init or an exec.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ProcessConfig {
    pub args: Vec<String>,
    /// `KEY=value` entries. `PATH` defaults to Docker's when missing, `HOSTNAME` and `TERM`
    /// (tty) are added like Docker does.
    pub env: Vec<String>,
    /// Working directory inside the container; created when missing (default `/`).
    pub cwd: String,
    /// `""`, `uid`, `uid:gid`, `name`, `name:group` (resolved in the rootfs' /etc/passwd, /etc/group).
    pub user: String,
    pub tty: bool,
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client closes its write side.
    pub stdin_once: bool,
    /// Initial terminal size (rows, cols).
    pub console_size: Option<(u16, u16)>,
}

/// Kind of an extra mount.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    #[default]
    Bind,
    /// A named volume: a bind of its `_data` directory.
    Volume,
    Tmpfs,
}

/// One extra mount.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct MountConfig {
    pub kind: MountKind,
    /// Host path for binds and volumes; ignored for tmpfs.
    pub source: String,
    /// Path inside the container; resolved inside the root (symlinks never lead out of it).
    pub destination: String,
    /// `ro`, `rw`, `rbind`, `size=`, `mode=`, `nosuid`, ...
    pub options: Vec<String>,
    /// `rprivate` (default), `private`, `rshared`, `shared`, `rslave`, `slave`.
    pub propagation: Option<String>,
}

/// Network namespace choice.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub enum NetMode {
    /// A new network namespace with only `lo` (up).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Join the namespace bind-mounted at this path (made by the network layer).
    Path(PathBuf),
}

/// cgroup limits. `None` = unlimited / kernel default.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<i64>,
    /// Memory + swap in bytes, `-1` unlimited. Docker default when only `memory` is set: 2×memory.
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// `--cpus`: converted to quota/period (period 100 ms).
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `> 0` limits, `<= 0` unlimited.
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

/// Security options (`--security-opt`).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: SeccompOpt,
}

/// Which seccomp profile to apply.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub enum SeccompOpt {
    /// Docker's default profile, unknown syscalls get ENOSYS.
    #[default]
    Default,
    Unconfined,
    /// A profile in Docker's JSON format.
    Custom(String),
}

/// One `--ulimit name=soft:hard`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Ulimit {
    /// `nofile`, `nproc`, `core`, ... (Docker's names).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// One `--device host[:container[:perms]]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// `rwm` subset.
    pub cgroup_permissions: String,
}

/// json-file log settings. Rotation is on by default (10 MiB × 3), unlike Docker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct LogConfig {
    /// The log file; empty = `<state_dir>/<id>-json.log`.
    pub path: PathBuf,
    /// Rotate when the file reaches this many bytes; 0 = never.
    pub max_size: u64,
    /// Files kept in total (current + rotated `path.1` .. `path.N-1`); at least 1.
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            path: PathBuf::new(),
            max_size: 10 * 1024 * 1024,
            max_file: 3,
        }
    }
}
