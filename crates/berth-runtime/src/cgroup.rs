//! Reading and steering a container's cgroup: stats, pids, freezer, OOM counter, removal.
//!
//! The runtime (libcontainer or runc) creates the cgroup and writes the limits; this module
//! only does what the engine needs afterwards, for cgroup v1 (each controller its own
//! hierarchy, as on this hybrid host) and v2 (unified). Mount points come from
//! `/proc/self/mountinfo`, so `cpu,cpuacct` co-mounts and hybrid layouts are found as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("no {0} cgroup controller on this host")]
    NoController(&'static str),
    #[error("cgroup {0} did not reach state {1}")]
    Freeze(PathBuf, &'static str),
}

/// Coarse class of a [`CgroupError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupErrorKind {
    /// The host lacks the controller: HTTP 501-ish / 500.
    Unsupported,
    Io,
}

impl CgroupError {
    pub fn kind(&self) -> CgroupErrorKind {
        match self {
            CgroupError::NoController(_) => CgroupErrorKind::Unsupported,
            _ => CgroupErrorKind::Io,
        }
    }
}

/// Resource usage of a container, read from its cgroup (what `docker stats` shows).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// When the numbers were read, RFC 3339.
    pub read: String,
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Host CPU time in ns (all CPUs, from /proc/stat), for Docker's percentage formula.
    pub system_cpu_usage_ns: u64,
    pub online_cpus: u32,
    pub memory_usage: u64,
    /// Limit, or the host's memory when unlimited.
    pub memory_limit: u64,
    pub memory_max_usage: u64,
    /// `memory.stat` (Docker subtracts `total_inactive_file` / `inactive_file`).
    pub memory_stat: BTreeMap<String, u64>,
    pub pids_current: u64,
    /// `None` = unlimited.
    pub pids_limit: Option<u64>,
    pub blkio_read_bytes: u64,
    pub blkio_write_bytes: u64,
}

/// The cgroup directories of one container.
#[derive(Debug, Clone, Default)]
pub struct Cgroup {
    /// v1: controller name → directory.
    pub v1: BTreeMap<String, PathBuf>,
    /// v2 (unified-only hosts): the directory.
    pub v2: Option<PathBuf>,
}

struct Mounts {
    v1: BTreeMap<String, PathBuf>,
    v2: Option<PathBuf>,
}

fn mounts() -> Mounts {
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mp = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let _src = post.next();
        let opts = post.next().unwrap_or("");
        match fstype {
            "cgroup" => {
                for o in opts.split(',') {
                    if matches!(
                        o,
                        "cpu"
                            | "cpuacct"
                            | "memory"
                            | "pids"
                            | "freezer"
                            | "blkio"
                            | "devices"
                            | "cpuset"
                            | "net_cls"
                            | "net_prio"
                            | "hugetlb"
                            | "perf_event"
                            | "rdma"
                            | "misc"
                    ) {
                        v1.entry(o.to_string()).or_insert_with(|| PathBuf::from(mp));
                    }
                }
            }
            "cgroup2" if mp == "/sys/fs/cgroup" => v2 = Some(PathBuf::from(mp)),
            _ => {}
        }
    }
    Mounts { v1, v2 }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn read_kv(p: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn system_cpu_ns() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("cpu ")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take(7)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .map(|ticks| ticks * (1_000_000_000 / hz))
        .unwrap_or(0)
}

impl Cgroup {
    /// The cgroup for an OCI `cgroupsPath` such as `/berth/<id>`.
    pub fn for_path(cgroups_path: &str) -> Cgroup {
        let rel = cgroups_path.trim_start_matches('/');
        let m = mounts();
        if let Some(root) = m.v2 {
            return Cgroup {
                v1: BTreeMap::new(),
                v2: Some(root.join(rel)),
            };
        }
        Cgroup {
            v1: m.v1.into_iter().map(|(k, v)| (k, v.join(rel))).collect(),
            v2: None,
        }
    }

    fn ctrl(&self, name: &'static str) -> Option<&Path> {
        self.v1.get(name).map(PathBuf::as_path)
    }

    /// How many times the kernel OOM killer killed a process of this cgroup.
    pub fn oom_kill_count(&self) -> u64 {
        if let Some(d) = &self.v2 {
            return read_kv(&d.join("memory.events"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0);
        }
        self.ctrl("memory")
            .map(|d| {
                read_kv(&d.join("memory.oom_control"))
                    .get("oom_kill")
                    .copied()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// Pids of every process in the container (host pid namespace).
    pub fn pids(&self) -> Vec<u32> {
        let dir = match &self.v2 {
            Some(d) => Some(d.as_path()),
            None => self
                .ctrl("pids")
                .or_else(|| self.ctrl("memory"))
                .or_else(|| self.ctrl("freezer")),
        };
        let Some(dir) = dir else { return Vec::new() };
        let mut v: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        v.sort_unstable();
        v
    }

    /// Whether the cgroup is frozen (paused).
    pub fn frozen(&self) -> bool {
        if let Some(d) = &self.v2 {
            return read_u64(&d.join("cgroup.freeze")) == Some(1);
        }
        self.ctrl("freezer")
            .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN")
    }

    /// Freeze (`true`) or thaw the container; returns once the kernel reports the new state.
    pub fn freeze(&self, on: bool) -> Result<(), CgroupError> {
        let (file, value, want) = match (&self.v2, self.ctrl("freezer")) {
            (Some(d), _) => (
                d.join("cgroup.freeze"),
                if on { "1" } else { "0" },
                if on { "frozen 1" } else { "frozen 0" },
            ),
            (None, Some(d)) => (
                d.join("freezer.state"),
                if on { "FROZEN" } else { "THAWED" },
                if on { "FROZEN" } else { "THAWED" },
            ),
            (None, None) => return Err(CgroupError::NoController("freezer")),
        };
        std::fs::write(&file, value).map_err(|e| CgroupError::Io(file.clone(), e))?;
        // The transition is asynchronous: v1 goes through FREEZING, v2 reports in cgroup.events.
        let check = if self.v2.is_some() {
            file.with_file_name("cgroup.events")
        } else {
            file.clone()
        };
        for i in 0..2000u32 {
            let s = std::fs::read_to_string(&check).unwrap_or_default();
            if s.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if self.v2.is_none() && on && i % 10 == 9 {
                // A FREEZING cgroup can need a nudge (processes in uninterruptible sleep).
                let _ = std::fs::write(&file, value);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Err(CgroupError::Freeze(
            file,
            if on { "frozen" } else { "thawed" },
        ))
    }

    /// Current usage numbers.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            read: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            system_cpu_usage_ns: system_cpu_ns(),
            online_cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            ..Default::default()
        };
        let host_mem = host_memory();
        if let Some(d) = &self.v2 {
            let cpu = read_kv(&d.join("cpu.stat"));
            s.cpu_usage_ns = cpu.get("usage_usec").copied().unwrap_or(0) * 1000;
            s.cpu_user_ns = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
            s.cpu_system_ns = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
            s.memory_usage = read_u64(&d.join("memory.current")).unwrap_or(0);
            s.memory_limit = read_u64(&d.join("memory.max")).unwrap_or(host_mem);
            s.memory_max_usage = read_u64(&d.join("memory.peak")).unwrap_or(0);
            s.memory_stat = read_kv(&d.join("memory.stat"));
            s.pids_current = read_u64(&d.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&d.join("pids.max"));
            for line in std::fs::read_to_string(d.join("io.stat"))
                .unwrap_or_default()
                .lines()
            {
                for kv in line.split_whitespace().skip(1) {
                    if let Some(v) = kv.strip_prefix("rbytes=") {
                        s.blkio_read_bytes += v.parse::<u64>().unwrap_or(0);
                    } else if let Some(v) = kv.strip_prefix("wbytes=") {
                        s.blkio_write_bytes += v.parse::<u64>().unwrap_or(0);
                    }
                }
            }
            return s;
        }
        if let Some(d) = self.ctrl("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage")).unwrap_or(0);
            let st = read_kv(&d.join("cpuacct.stat"));
            // SAFETY: sysconf has no memory-safety preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
            s.cpu_user_ns = st.get("user").copied().unwrap_or(0) * (1_000_000_000 / hz);
            s.cpu_system_ns = st.get("system").copied().unwrap_or(0) * (1_000_000_000 / hz);
        }
        if let Some(d) = self.ctrl("memory") {
            s.memory_usage = read_u64(&d.join("memory.usage_in_bytes")).unwrap_or(0);
            s.memory_limit = read_u64(&d.join("memory.limit_in_bytes"))
                .unwrap_or(host_mem)
                .min(host_mem.max(1));
            s.memory_max_usage = read_u64(&d.join("memory.max_usage_in_bytes")).unwrap_or(0);
            s.memory_stat = read_kv(&d.join("memory.stat"));
        }
        if let Some(d) = self.ctrl("pids") {
            s.pids_current = read_u64(&d.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&d.join("pids.max"));
        }
        if let Some(d) = self.ctrl("blkio") {
            for line in std::fs::read_to_string(d.join("blkio.throttle.io_service_bytes"))
                .unwrap_or_default()
                .lines()
            {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() == 3 {
                    let v = f[2].parse::<u64>().unwrap_or(0);
                    match f[1] {
                        "Read" => s.blkio_read_bytes += v,
                        "Write" => s.blkio_write_bytes += v,
                        _ => {}
                    }
                }
            }
        }
        s
    }

    /// Kill what is left and remove every directory of the cgroup. Idempotent.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let dirs: Vec<&PathBuf> = self.v2.iter().chain(self.v1.values()).collect();
        for _ in 0..100 {
            let mut busy = false;
            for d in &dirs {
                // sub-cgroups a (privileged) container made go first, deepest first
                remove_children(d);
                match std::fs::remove_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => busy = true,
                }
            }
            if !busy {
                return Ok(());
            }
            if self.frozen() {
                let _ = self.freeze(false);
            }
            for pid in self.pids() {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let d = dirs.first().map(|d| d.to_path_buf()).unwrap_or_default();
        Err(CgroupError::Io(
            d,
            std::io::Error::from_raw_os_error(libc::EBUSY),
        ))
    }
}

/// Remove the sub-directories (child cgroups) below `d`, deepest first; errors are left to
/// the caller's `remove_dir` of `d`.
fn remove_children(d: &Path) {
    let Ok(rd) = std::fs::read_dir(d) else { return };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let p = e.path();
            remove_children(&p);
            let _ = std::fs::remove_dir(&p);
        }
    }
}
