//! OCI runtime spec generation with Docker's defaults.
//!
//! Mirrors moby's `oci/defaults.go` and `daemon/oci_linux.go`: namespaces, the default mounts,
//! masked and read-only paths, the default capability set, the default seccomp profile (with
//! unknown syscalls answered by `ENOSYS`, HARDENING A4 #38), rlimits clamped to what this host
//! allows, cgroup resources and the device allow-list.
//!
//! The spec is assembled as JSON and parsed into [`oci_spec::runtime::Spec`], so the exact
//! field names of the OCI runtime spec are visible in one place and validated by oci-spec.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::config::{ContainerConfig, MountKind, NetMode, ProcessConfig, SeccompOpt};

/// Errors of spec generation.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("invalid user {0:?}")]
    InvalidUser(String),
    #[error("{0} in the container is larger than {1} bytes")]
    FileTooLarge(String, u64),
    #[error("unknown capability: {0:?}")]
    UnknownCapability(String),
    #[error("invalid ulimit {0:?}")]
    InvalidUlimit(String),
    #[error("--init: no init binary found")]
    NoInitBinary,
    #[error("invalid seccomp profile: {0}")]
    Seccomp(String),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    #[error("read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("generated spec is invalid: {0}")]
    Spec(#[from] serde_json::Error),
}

/// Coarse classes of [`SpecError`], for the API edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// The request is wrong (unknown user, bad option): HTTP 400.
    InvalidArgument,
    /// The host or rootfs could not be read: HTTP 500.
    Internal,
}

impl SpecError {
    pub fn kind(&self) -> SpecErrorKind {
        match self {
            SpecError::Io(..) | SpecError::Spec(_) | SpecError::NoInitBinary => {
                SpecErrorKind::Internal
            }
            _ => SpecErrorKind::InvalidArgument,
        }
    }
}

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Capability names by number (linux/capability.h).
const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where `--init` puts the init binary inside the container.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Largest /etc/passwd or /etc/group read from a rootfs (HARDENING A3 #28).
pub const MAX_ACCOUNT_FILE: u64 = 4 * 1024 * 1024;

pub const DOCKER_SECCOMP: &str = include_str!("profiles/seccomp-default.json");

/// Docker's RLIMIT_NOFILE for containers (what dockerd inherits from systemd).
const DEFAULT_NOFILE: u64 = 1_048_576;

/// The capabilities in this process' bounding set (`CapBnd` of /proc/self/status).
pub fn host_bounding_caps() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn normalize_cap(name: &str) -> Result<String, SpecError> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if CAP_NAMES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability(name.to_string()))
    }
}

/// The capability set of a container: Docker's defaults (or the host bounding set when
/// privileged), plus `cap_add`, minus `cap_drop`, limited to what the host has.
pub fn container_caps(cfg: &ContainerConfig) -> Result<Vec<String>, SpecError> {
    let host: BTreeSet<String> = host_bounding_caps().into_iter().collect();
    if cfg.privileged {
        return Ok(CAP_NAMES
            .iter()
            .filter(|c| host.contains(**c))
            .map(|c| c.to_string())
            .collect());
    }
    let adds = cfg
        .cap_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops = cfg
        .cap_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut set: BTreeSet<String> = if drops.iter().any(|d| d == "ALL") {
        BTreeSet::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    for a in &adds {
        if a == "ALL" {
            set.extend(CAP_NAMES.iter().map(|c| c.to_string()));
        } else {
            set.insert(a.clone());
        }
    }
    for d in &drops {
        if !adds.contains(d) {
            set.remove(d);
        }
    }
    // Keep the kernel's numbering order, and never ask for what the host cannot grant.
    Ok(CAP_NAMES
        .iter()
        .filter(|c| set.contains(**c) && host.contains(**c))
        .map(|c| c.to_string())
        .collect())
}

/// A user resolved against the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn read_capped_in_root(root: &Path, path: &str) -> Result<Option<String>, SpecError> {
    let r = match pathrs::Root::open(root) {
        Ok(r) => r,
        Err(e) => return Err(SpecError::Io(root.display().to_string(), io_err(e))),
    };
    let handle = match r.resolve(path) {
        Ok(h) => h,
        Err(_) => return Ok(None),
    };
    let f = handle
        .reopen(pathrs::flags::OpenFlags::O_RDONLY)
        .map_err(|e| SpecError::Io(path.to_string(), io_err(e)))?;
    let meta = f
        .metadata()
        .map_err(|e| SpecError::Io(path.to_string(), e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    f.take(MAX_ACCOUNT_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SpecError::Io(path.to_string(), e))?;
    if buf.len() as u64 > MAX_ACCOUNT_FILE {
        return Err(SpecError::FileTooLarge(path.to_string(), MAX_ACCOUNT_FILE));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn io_err(e: pathrs::error::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| s.trim().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolve `user` (`""`, `uid`, `uid:gid`, `name`, `name:group`) like Docker does, from the
/// given passwd and group file contents (`None` = file absent).
pub fn resolve_user_from(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    if u.contains('/') || g.is_some_and(|g| g.contains('/') || g.is_empty()) {
        return Err(SpecError::InvalidUser(user.to_string()));
    }
    let mut res = ResolvedUser {
        home: "/".to_string(),
        ..Default::default()
    };
    let mut name = None;
    if let Ok(uid) = u.parse::<u32>() {
        res.uid = uid;
        if let Some(e) = users.iter().find(|e| e.uid == uid) {
            res.gid = e.gid;
            res.home = e.home.clone();
            name = Some(e.name.clone());
        }
    } else {
        let e = users
            .iter()
            .find(|e| e.name == u)
            .ok_or_else(|| SpecError::UnknownUser(u.to_string()))?;
        res.uid = e.uid;
        res.gid = e.gid;
        res.home = e.home.clone();
        name = Some(e.name.clone());
    }
    if let Some(g) = g {
        if let Ok(gid) = g.parse::<u32>() {
            res.gid = gid;
        } else {
            res.gid = groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?;
        }
    }
    // dockerd: the primary group is always listed among the supplementary ones
    res.additional_gids.push(res.gid);
    // runc: membership groups only with the implicit form (no `:group` given)
    if let Some(name) = name.filter(|_| g.is_none()) {
        for ge in &groups {
            if ge.members.contains(&name)
                && ge.gid != res.gid
                && !res.additional_gids.contains(&ge.gid)
            {
                res.additional_gids.push(ge.gid);
            }
        }
    }
    if res.home.is_empty() {
        res.home = "/".to_string();
    }
    Ok(res)
}

/// Resolve `user` against the rootfs at `root` (files opened inside the root, size-capped).
pub fn resolve_user(root: &Path, user: &str) -> Result<ResolvedUser, SpecError> {
    resolve_user_groups(root, user, &[])
}

/// [`resolve_user`] plus `--group-add` entries (group names or numeric ids) added to the
/// supplementary groups.
pub fn resolve_user_groups(root: &Path, user: &str, group_add: &[String]) -> Result<ResolvedUser, SpecError> {
    let passwd = read_capped_in_root(root, "/etc/passwd")?;
    let group = read_capped_in_root(root, "/etc/group")?;
    let mut res = resolve_user_from(user, passwd.as_deref(), group.as_deref())?;
    add_groups(&mut res, group_add, group.as_deref())?;
    Ok(res)
}

/// Append `group_add` (names looked up in `group`, or numeric ids) to the supplementary groups.
pub fn add_groups(res: &mut ResolvedUser, group_add: &[String], group: Option<&str>) -> Result<(), SpecError> {
    let groups = group.map(parse_group).unwrap_or_default();
    for g in group_add {
        let gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == *g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?,
        };
        if !res.additional_gids.contains(&gid) {
            res.additional_gids.push(gid);
        }
    }
    Ok(())
}

/// The host binary bind-mounted as `/sbin/docker-init` for `--init`.
pub fn find_init_binary() -> Result<PathBuf, SpecError> {
    for p in [
        "/usr/bin/tini-static",
        "/usr/bin/docker-init",
        "/usr/libexec/docker/docker-init",
    ] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(SpecError::NoInitBinary)
}

/// The environment of a process: the given one plus Docker's additions (PATH, HOSTNAME,
/// TERM for a tty, HOME from passwd).
pub fn process_env(p: &ProcessConfig, hostname: &str, home: &str) -> Vec<String> {
    let mut env = Vec::with_capacity(p.env.len() + 4);
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&p.env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !hostname.is_empty() && !has(&p.env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if p.tty && !has(&p.env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    env.extend(p.env.iter().cloned());
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

fn host_nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(DEFAULT_NOFILE)
}

fn rlimit_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        _ => return None,
    })
}

fn host_rlimit_hard(name: &str) -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    let r = match name {
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        _ => return u64::MAX,
    };
    getrlimit(r).map(|(_, h)| h).unwrap_or(u64::MAX)
}

/// The rlimits of a container: `RLIMIT_NOFILE` 1048576 like Docker and the `--ulimit`s, all
/// clamped to this host's hard limits (without CAP_SYS_RESOURCE they cannot be raised).
pub fn rlimits(cfg: &ContainerConfig) -> Result<Vec<Value>, SpecError> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    let nofile = DEFAULT_NOFILE.min(host_nofile_hard());
    out.push(("RLIMIT_NOFILE".to_string(), nofile, nofile));
    for u in &cfg.ulimits {
        let typ = rlimit_name(&u.name).ok_or_else(|| SpecError::InvalidUlimit(u.name.clone()))?;
        if u.soft > u.hard {
            return Err(SpecError::InvalidUlimit(format!(
                "{}={}:{}: soft limit must be less than or equal to hard limit",
                u.name, u.soft, u.hard
            )));
        }
        out.retain(|(t, _, _)| t != typ);
        out.push((typ.to_string(), u.soft, u.hard));
    }
    Ok(out
        .into_iter()
        .map(|(t, soft, hard)| {
            let max = host_rlimit_hard(&t);
            let hard = hard.min(max);
            let soft = soft.min(hard);
            json!({"type": t, "hard": hard, "soft": soft})
        })
        .collect())
}

/// The native architecture's name in Docker's profile and the seccomp architectures a filter
/// covers. Docker lists x86_64, x86 and x32 on amd64; berth lists a compat ABI only when the
/// kernel can run it: every extra architecture multiplies libseccomp's work (about 8 ms each
/// on every container start), and a syscall of an ABI the kernel lacks fails either way.
fn arch_names() -> (&'static str, Vec<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => {
            let mut v = vec!["SCMP_ARCH_X86_64"];
            if std::path::Path::new("/proc/sys/abi/vsyscall32").exists() {
                v.push("SCMP_ARCH_X86"); // IA32 emulation
            }
            if x32_syscalls() {
                v.push("SCMP_ARCH_X32");
            }
            ("amd64", v)
        }
        "aarch64" => ("arm64", vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        "s390x" => ("s390x", vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
        "riscv64" => ("riscv64", vec!["SCMP_ARCH_RISCV64"]),
        other => (other, vec![]),
    }
}

/// Whether the kernel serves x32 syscalls (off unless booted with `syscall.x32=y` on most
/// distributions): getpid with the x32 bit either answers or fails with ENOSYS.
fn x32_syscalls() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and has no side effects.
        unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) >= 0 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn kernel_version() -> (u32, u32) {
    let rel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// Syscalls that exist on every architecture we run on and that Docker's profile denies by
/// omission: they keep `EPERM` when the default action becomes `ENOSYS`.
const KNOWN_DENIED: &[&str] = &[
    "add_key",
    "create_module",
    "get_kernel_syms",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "move_pages",
    "nfsservctl",
    "pivot_root",
    "query_module",
    "request_key",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Translate a Docker seccomp profile (JSON) into the OCI `linux.seccomp` object for a
/// container with capabilities `caps`. Docker's `includes`/`excludes` (caps, arches,
/// minKernel) are evaluated here; the default errno becomes `ENOSYS` so that syscalls newer
/// than the profile make glibc fall back (HARDENING A4 #38), while every syscall the profile
/// names but does not allow keeps `EPERM`.
pub fn translate_seccomp(profile: &str, caps: &[String]) -> Result<Value, SpecError> {
    let p: Value = serde_json::from_str(profile).map_err(|e| SpecError::Seccomp(e.to_string()))?;
    let (arch, arches) = arch_names();
    let kver = kernel_version();
    let has_cap = |c: &Value| c.as_str().is_some_and(|c| caps.iter().any(|x| x == c));
    let mut rules = Vec::new();
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    let mut mentioned: BTreeSet<String> = BTreeSet::new();
    let syscalls = p
        .get("syscalls")
        .and_then(Value::as_array)
        .ok_or_else(|| SpecError::Seccomp("no syscalls".into()))?;
    for s in syscalls {
        let names: Vec<String> = s
            .get("names")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .or_else(|| {
                s.get("name")
                    .and_then(Value::as_str)
                    .map(|n| vec![n.to_string()])
            })
            .unwrap_or_default();
        mentioned.extend(names.iter().cloned());
        if let Some(inc) = s.get("includes") {
            if let Some(a) = inc.get("arches").and_then(Value::as_array) {
                if !a.iter().any(|x| x.as_str() == Some(arch)) {
                    continue;
                }
            }
            if let Some(c) = inc.get("caps").and_then(Value::as_array) {
                if !c.iter().all(has_cap) {
                    continue;
                }
            }
            if let Some(k) = inc.get("minKernel").and_then(Value::as_str) {
                let mut it = k.split('.');
                let maj: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let min: u32 = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                if kver < (maj, min) {
                    continue;
                }
            }
        }
        if let Some(exc) = s.get("excludes") {
            if let Some(a) = exc.get("arches").and_then(Value::as_array) {
                if a.iter().any(|x| x.as_str() == Some(arch)) {
                    continue;
                }
            }
            if let Some(c) = exc.get("caps").and_then(Value::as_array) {
                if c.iter().any(has_cap) {
                    continue;
                }
            }
        }
        let action = s
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("SCMP_ACT_ALLOW");
        if action == "SCMP_ACT_ERRNO"
            && s.get("errnoRet").and_then(Value::as_i64) == Some(libc::ENOSYS as i64)
            && s.get("args").is_none()
        {
            // Same as the default action: nothing to add, but not "denied with EPERM" either.
            allowed.extend(names.iter().cloned());
            continue;
        }
        let args = s.get("args").cloned().unwrap_or(Value::Null);
        let conditional = args.as_array().is_some_and(|a| !a.is_empty());
        if action == "SCMP_ACT_ALLOW" && !conditional {
            allowed.extend(names.iter().cloned());
        }
        let mut rule = json!({"names": names, "action": action});
        if let Some(e) = s.get("errnoRet") {
            rule["errnoRet"] = e.clone();
        }
        if conditional {
            rule["args"] = args;
        }
        rules.push(rule);
    }
    // Named but not allowed here (e.g. cap-gated rules that did not apply) → EPERM like Docker.
    let deny: Vec<String> = mentioned
        .iter()
        .map(String::as_str)
        .chain(KNOWN_DENIED.iter().copied())
        .filter(|n| !allowed.contains(*n) && !rules_mention(&rules, n))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !deny.is_empty() {
        rules.push(json!({"names": deny, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}));
    }
    let default_action = p
        .get("defaultAction")
        .and_then(Value::as_str)
        .unwrap_or("SCMP_ACT_ERRNO");
    let mut out = json!({
        "defaultAction": default_action,
        "architectures": arches,
        "syscalls": rules,
    });
    if default_action == "SCMP_ACT_ERRNO" {
        out["defaultErrnoRet"] = json!(libc::ENOSYS);
    }
    Ok(out)
}

fn rules_mention(rules: &[Value], name: &str) -> bool {
    rules.iter().any(|r| {
        r["names"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(name)))
    })
}

fn default_devices_allow() -> Vec<Value> {
    let mut v = vec![json!({"allow": false, "access": "rwm"})];
    for t in ["c", "b"] {
        v.push(json!({"allow": true, "type": t, "access": "m"}));
    }
    for (maj, min) in [
        (1, 3),
        (1, 8),
        (1, 7),
        (5, 0),
        (1, 5),
        (1, 9),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        v.push(json!({"allow": true, "type": "c", "major": maj, "minor": min, "access": "rwm"}));
    }
    v.push(json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}));
    v
}

fn device_node(path: &str, in_container: &str) -> Option<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    let ft = m.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return None;
    };
    let rdev = m.rdev();
    Some(json!({
        "path": in_container, "type": typ,
        "major": libc::major(rdev), "minor": libc::minor(rdev),
        "fileMode": m.mode() & 0o777, "uid": m.uid(), "gid": m.gid(),
    }))
}

/// Whether this host mounts cgroup v2 only (unified) at /sys/fs/cgroup.
pub fn cgroup_v2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn mount_json(cfg: &ContainerConfig) -> Vec<Value> {
    let shm = cfg.shm_size.unwrap_or(64 * 1024 * 1024);
    let ro_sys = if cfg.privileged { "rw" } else { "ro" };
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", ro_sys]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", ro_sys]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    // Docker: a user mount on /dev replaces the default /dev and drops the /dev/* defaults.
    if cfg.mounts.iter().any(|u| Path::new(&u.destination) == Path::new("/dev")) {
        m.retain(|d| {
            let dest = d["destination"].as_str().unwrap_or("");
            dest != "/dev" && !dest.starts_with("/dev/")
        });
    }
    for u in &cfg.mounts {
        let mut opts: Vec<String> = Vec::new();
        match u.kind {
            MountKind::Bind | MountKind::Volume => {
                opts.push("rbind".into());
                opts.extend(
                    u.options
                        .iter()
                        .filter(|o| *o != "rbind" && *o != "bind")
                        .cloned(),
                );
                if !opts.iter().any(|o| o == "ro" || o == "rw") {
                    opts.push("rw".into());
                }
                opts.push(u.propagation.clone().unwrap_or_else(|| "rprivate".into()));
                m.push(json!({"destination": u.destination, "type": "bind",
                              "source": u.source, "options": opts}));
            }
            MountKind::Tmpfs => {
                opts.extend(["nosuid", "nodev", "noexec"].map(String::from));
                opts.extend(u.options.iter().cloned());
                m.push(json!({"destination": u.destination, "type": "tmpfs",
                              "source": "tmpfs", "options": opts}));
            }
        }
    }
    m
}

/// Build the OCI spec for `cfg`. `rootfs` is the mounted root used to resolve the user
/// (`None`: only numeric users, no supplementary groups). Fails on an unknown user, an
/// unknown capability, an invalid ulimit or a broken custom seccomp profile.
pub fn build_spec(cfg: &ContainerConfig, rootfs: Option<&Path>) -> Result<Spec, SpecError> {
    let user = match rootfs {
        Some(r) => resolve_user_groups(r, &cfg.process.user, &cfg.group_add)?,
        None => {
            let mut u = resolve_user_from(&cfg.process.user, None, None)?;
            add_groups(&mut u, &cfg.group_add, None)?;
            u
        }
    };
    let value = spec_json(cfg, &user)?;
    Ok(serde_json::from_value(value)?)
}

/// The spec as JSON (what `config.json` holds).
pub fn spec_json(cfg: &ContainerConfig, user: &ResolvedUser) -> Result<Value, SpecError> {
    let caps = container_caps(cfg)?;
    let mut args = cfg.process.args.clone();
    let mut mounts = mount_json(cfg);
    if cfg.init {
        let bin = find_init_binary()?;
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
        mounts.push(json!({"destination": INIT_PATH, "type": "bind",
            "source": bin, "options": ["bind", "ro", "rprivate"]}));
    }
    let cwd = if cfg.process.cwd.is_empty() {
        "/".to_string()
    } else {
        cfg.process.cwd.clone()
    };
    let mut process = json!({
        "terminal": cfg.process.tty,
        "user": {"uid": user.uid, "gid": user.gid, "umask": 0o022,
                 "additionalGids": user.additional_gids},
        "args": args,
        "env": process_env(&cfg.process, &cfg.hostname, &user.home),
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": [], "ambient": []},
        "rlimits": rlimits(cfg)?,
    });
    // Only when set: libcontainer loads seccomp late (after dropping CAP_SYS_ADMIN) whenever
    // the field is present, even as `false`, and the load then fails with EACCES.
    if cfg.security_opt.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some((h, w)) = cfg.process.console_size {
        process["consoleSize"] = json!({"height": h, "width": w});
    }

    let mut namespaces = vec![json!({"type": "mount"})];
    if !cfg.pid_host {
        namespaces.push(json!({"type": "pid"}));
    }
    if !cfg.uts_host {
        namespaces.push(json!({"type": "uts"}));
    }
    if !cfg.ipc_host {
        namespaces.push(json!({"type": "ipc"}));
    }
    match &cfg.network {
        NetMode::None => namespaces.push(json!({"type": "network"})),
        NetMode::Host => {}
        NetMode::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
    }
    if cgroup_v2_only() {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut resources = json!({});
    let r = &cfg.resources;
    let mut memory = serde_json::Map::new();
    if let Some(m) = r.memory.filter(|m| *m > 0) {
        memory.insert("limit".into(), json!(m));
        let swap_ok = cgroup_v2_only()
            || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
        if swap_ok {
            match r.memory_swap {
                Some(s) if s != 0 => {
                    memory.insert("swap".into(), json!(s));
                }
                _ => {
                    memory.insert("swap".into(), json!(m.saturating_mul(2)));
                }
            }
        }
    }
    if let Some(m) = r.memory_reservation.filter(|m| *m > 0) {
        memory.insert("reservation".into(), json!(m));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = r.cpus.filter(|c| *c > 0.0 && c.is_finite()) {
        cpu.insert("period".into(), json!(100_000u64));
        cpu.insert("quota".into(), json!((c * 100_000.0).round() as i64));
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q > 0) {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = r.cpu_period.filter(|p| *p > 0) {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(s) = r.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(c) = r.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(c) = r.cpuset_mems.as_ref().filter(|c| !c.is_empty()) {
        cpu.insert("mems".into(), json!(c));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = r.pids_limit.filter(|p| *p > 0) {
        resources["pids"] = json!({"limit": p});
    }
    if let Some(w) = r.blkio_weight.filter(|w| *w > 0) {
        // Like Docker: dropped (not an error) when the kernel has no weight knob (no CFQ/BFQ).
        let supported = if cgroup_v2_only() {
            Path::new("/sys/fs/cgroup/io.weight").exists()
                || Path::new("/sys/fs/cgroup/io.bfq.weight").exists()
                || Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists()
        } else {
            Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
        };
        if supported {
            resources["blockIO"] = json!({"weight": w});
        } else {
            tracing::warn!("kernel does not support block I/O weight; --blkio-weight discarded");
        }
    }

    let mut devices = Vec::new();
    if cfg.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
        if let Ok(rd) = std::fs::read_dir("/dev") {
            for e in rd.flatten() {
                let p = e.path();
                let s = p.to_string_lossy().into_owned();
                if matches!(
                    s.as_str(),
                    "/dev/console"
                        | "/dev/ptmx"
                        | "/dev/tty"
                        | "/dev/null"
                        | "/dev/zero"
                        | "/dev/full"
                        | "/dev/random"
                        | "/dev/urandom"
                ) {
                    continue;
                }
                // Only real nodes directly in /dev (no /dev/stdin-style symlinks).
                let is_link = std::fs::symlink_metadata(&p)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(true);
                if is_link {
                    continue;
                }
                if let Some(d) = device_node(&s, &s) {
                    devices.push(d);
                }
            }
        }
    } else {
        let mut allow = default_devices_allow();
        for d in &cfg.devices {
            let dest = if d.path_in_container.is_empty() {
                &d.path_on_host
            } else {
                &d.path_in_container
            };
            let node = device_node(&d.path_on_host, dest).ok_or_else(|| {
                SpecError::Invalid("device", format!("{}: not a device", d.path_on_host))
            })?;
            let perms = if d.cgroup_permissions.is_empty() {
                "rwm"
            } else {
                &d.cgroup_permissions
            };
            allow.push(
                json!({"allow": true, "type": node["type"], "major": node["major"],
                              "minor": node["minor"], "access": perms}),
            );
            devices.push(node);
        }
        resources["devices"] = Value::Array(allow);
    }

    let parent = if cfg.cgroup_parent.is_empty() {
        "berth"
    } else {
        cfg.cgroup_parent.trim_matches('/')
    };
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/{parent}/{}", cfg.id),
        "devices": devices,
        "sysctl": cfg.sysctls,
    });
    if !cfg.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        match &cfg.security_opt.seccomp {
            SeccompOpt::Default => linux["seccomp"] = translate_seccomp(DOCKER_SECCOMP, &caps)?,
            SeccompOpt::Custom(p) => linux["seccomp"] = translate_seccomp(p, &caps)?,
            SeccompOpt::Unconfined => {}
        }
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": cfg.read_only_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if !cfg.uts_host {
        spec["hostname"] = json!(cfg.hostname);
        if !cfg.domainname.is_empty() {
            spec["domainname"] = json!(cfg.domainname);
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_has_docker_defaults() {
        let cfg = ContainerConfig {
            id: "abc".into(),
            process: ProcessConfig {
                args: vec!["sh".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = build_spec(&cfg, None).expect("spec");
        let v = serde_json::to_value(&spec).expect("json");
        let caps = v["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(v["process"]["capabilities"]["inheritable"]
            .as_array()
            .is_none_or(|a: &Vec<Value>| a.is_empty()));
        assert_eq!(v["linux"]["cgroupsPath"], "/berth/abc");
        assert_eq!(v["linux"]["seccomp"]["defaultErrnoRet"], 38);
        let env = v["process"]["env"].as_array().expect("env");
        assert!(env
            .iter()
            .any(|e| e.as_str() == Some(&format!("PATH={DEFAULT_PATH}"))));
        let nofile = &v["process"]["rlimits"][0];
        assert!(nofile["hard"].as_u64().expect("hard") <= host_nofile_hard());
    }

    #[test]
    fn seccomp_cap_gated_rules() {
        let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        let s = translate_seccomp(DOCKER_SECCOMP, &caps).expect("seccomp");
        let rules = s["syscalls"].as_array().expect("rules");
        let allowed_unconditionally = |n: &str| {
            rules.iter().any(|r| {
                r["action"] == "SCMP_ACT_ALLOW"
                    && r.get("args").is_none()
                    && r["names"].as_array().expect("names").iter().any(|x| x == n)
            })
        };
        assert!(allowed_unconditionally("read"));
        assert!(allowed_unconditionally("chroot"));
        assert!(!allowed_unconditionally("mount"));
        let eperm = rules.last().expect("deny rule");
        assert_eq!(eperm["errnoRet"], 1);
        assert!(eperm["names"]
            .as_array()
            .expect("names")
            .iter()
            .any(|x| x == "mount"));
        assert!(eperm["names"]
            .as_array()
            .expect("names")
            .iter()
            .any(|x| x == "keyctl"));
        // clone3 gets ENOSYS (the default action) without CAP_SYS_ADMIN.
        assert!(!rules_mention(rules, "clone3"));
        assert_eq!(s["defaultErrnoRet"], 38);
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let s = translate_seccomp(DOCKER_SECCOMP, &admin).expect("seccomp");
        assert!(s["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["action"] == "SCMP_ACT_ALLOW"
                && r["names"]
                    .as_array()
                    .expect("names")
                    .iter()
                    .any(|n| n == "clone3")));
    }

    #[test]
    fn caps_add_drop() {
        let cfg = ContainerConfig {
            cap_add: vec!["net_admin".into()],
            cap_drop: vec!["CAP_CHOWN".into(), "kill".into()],
            ..Default::default()
        };
        let caps = container_caps(&cfg).expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        let bad = ContainerConfig {
            cap_add: vec!["nope".into()],
            ..Default::default()
        };
        assert!(matches!(
            container_caps(&bad),
            Err(SpecError::UnknownCapability(_))
        ));
    }

    #[test]
    fn users_and_groups() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:alice,root\nalice:x:1000:\naudio:x:29:alice\n";
        let r = resolve_user_from("", Some(passwd), Some(group)).expect("root");
        assert_eq!((r.uid, r.gid, r.additional_gids.clone()), (0, 0, vec![0, 10]));
        let a = resolve_user_from("alice", Some(passwd), Some(group)).expect("alice");
        assert_eq!((a.uid, a.gid), (1000, 1000));
        assert_eq!(a.additional_gids, vec![1000, 10, 29]);
        assert_eq!(a.home, "/home/alice");
        let n = resolve_user_from("1000:audio", Some(passwd), Some(group)).expect("1000:audio");
        assert_eq!((n.uid, n.gid, n.additional_gids.clone()), (1000, 29, vec![29]));
        let x = resolve_user_from("4242:4343", Some(passwd), Some(group)).expect("numeric");
        assert_eq!((x.uid, x.gid, x.additional_gids.clone()), (4242, 4343, vec![4343]));
        let mut y = x.clone();
        add_groups(&mut y, &["audio".into(), "7".into(), "4343".into()], Some(group)).expect("group-add");
        assert_eq!(y.additional_gids, vec![4343, 29, 7]);
        assert!(add_groups(&mut y, &["nope".into()], Some(group)).is_err());
        assert!(matches!(
            resolve_user_from("bob", Some(passwd), Some(group)),
            Err(SpecError::UnknownUser(_))
        ));
        assert!(matches!(
            resolve_user_from("alice:nogroup", Some(passwd), Some(group)),
            Err(SpecError::UnknownGroup(_))
        ));
    }

    #[test]
    fn ulimits_clamped() {
        let cfg = ContainerConfig {
            ulimits: vec![crate::config::Ulimit {
                name: "nofile".into(),
                soft: 1 << 40,
                hard: 1 << 40,
            }],
            ..Default::default()
        };
        let r = rlimits(&cfg).expect("rlimits");
        assert_eq!(r.len(), 1);
        assert!(r[0]["hard"].as_u64().expect("hard") <= host_nofile_hard());
    }
}
