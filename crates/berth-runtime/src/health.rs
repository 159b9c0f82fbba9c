//! Health checks, run by the shim so they keep going while the daemon is down.
//!
//! Docker's semantics: the first probe runs `interval` after start (`start_interval` during
//! the start period); a probe is an exec of `test` (`["CMD", args..]` or
//! `["CMD-SHELL", "cmd"]`), exit 0 = healthy, anything else or a timeout = failure; failures
//! during the start period do not count; `retries` consecutive failures make the container
//! `unhealthy`. The last 5 results (output capped at 4 KiB) are kept. The state is written
//! atomically to `<state_dir>/health.json` in the shape of Docker's `State.Health`, so the
//! engine can show it in `inspect` as is, and is also returned by [`crate::Shim::health`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// File in the state dir holding the current [`Health`].
pub const HEALTH_FILE: &str = "health.json";
/// File in the state dir holding the [`HealthConfig`] (written by [`set_config`]).
pub const HEALTH_CONFIG_FILE: &str = "healthcheck.json";

/// Give the container in `state_dir` a health check (`None` removes it). Call it before
/// [`crate::start`] / [`crate::create`]; the shim reads it when the container starts. It
/// is kept apart from [`crate::ContainerConfig`] so that struct's shape stays stable.
pub fn set_config(state_dir: &std::path::Path, cfg: Option<&HealthConfig>) -> std::io::Result<()> {
    let p = state_dir.join(HEALTH_CONFIG_FILE);
    match cfg {
        Some(c) => {
            std::fs::create_dir_all(state_dir)?;
            let bytes = serde_json::to_vec(c).map_err(std::io::Error::other)?;
            crate::client::write_atomic(&p, &bytes)
        }
        None => match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The health check configured for `state_dir`, if any.
pub fn read_config(state_dir: &std::path::Path) -> Option<HealthConfig> {
    let b = std::fs::read(state_dir.join(HEALTH_CONFIG_FILE)).ok()?;
    serde_json::from_slice(&b).ok()
}
/// Results kept in [`Health::log`].
pub const MAX_LOG: usize = 5;
/// Output kept per result.
pub const MAX_OUTPUT: usize = 4096;

/// `--health-*` settings. Durations in nanoseconds like Docker's API; 0 = Docker's default.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct HealthConfig {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`; `[]` or `["NONE"]` disables the check.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
    pub on_failure: HealthAction,
}

/// Podman's `--health-on-failure`, as far as the shim can act alone. `restart` is the
/// engine's job (it sees `unhealthy` in [`Health::status`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthAction {
    #[default]
    None,
    /// SIGKILL the container.
    Kill,
    /// Send the container's stop signal.
    Stop,
}

/// Docker's `State.Health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    #[serde(rename = "Log")]
    pub log: Vec<HealthResult>,
}

/// One probe result (Docker's `HealthcheckResult`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthResult {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    #[serde(rename = "Output")]
    pub output: String,
}

fn or_default(ns: u64, default: Duration) -> Duration {
    if ns == 0 {
        default
    } else {
        Duration::from_nanos(ns)
    }
}

impl HealthConfig {
    /// Whether a check is configured.
    pub fn enabled(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD") | Some("CMD-SHELL")
        ) && self.test.len() > 1
    }

    /// The probe's argv.
    pub fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            _ => self.test[1..].to_vec(),
        }
    }

    fn interval(&self) -> Duration {
        or_default(self.interval, Duration::from_secs(30))
    }

    pub(crate) fn timeout(&self) -> Duration {
        or_default(self.timeout, Duration::from_secs(30))
    }

    fn start_interval(&self) -> Duration {
        or_default(self.start_interval, Duration::from_secs(5))
    }

    fn retries(&self) -> u32 {
        if self.retries == 0 {
            3
        } else {
            self.retries
        }
    }
}

/// The shim's running health state.
pub(crate) struct HealthState {
    pub cfg: HealthConfig,
    pub health: Health,
    pub started: Instant,
    pub next: Instant,
    /// The probe in flight: exec id, when it started (monotonic and wall clock).
    pub running: Option<(String, Instant, String)>,
    /// The probe in flight was killed for exceeding the timeout.
    pub timed_out: bool,
    log: VecDeque<HealthResult>,
}

impl HealthState {
    pub fn new(cfg: HealthConfig, now: Instant) -> HealthState {
        let mut s = HealthState {
            cfg,
            health: Health {
                status: "starting".into(),
                failing_streak: 0,
                log: Vec::new(),
            },
            started: now,
            next: now,
            running: None,
            timed_out: false,
            log: VecDeque::new(),
        };
        s.next = now + s.delay(now);
        s
    }

    fn in_start_period(&self, now: Instant) -> bool {
        now.duration_since(self.started) < Duration::from_nanos(self.cfg.start_period)
    }

    fn delay(&self, now: Instant) -> Duration {
        if self.in_start_period(now) && self.health.status == "starting" {
            self.cfg.start_interval().min(self.cfg.interval())
        } else {
            self.cfg.interval()
        }
    }

    /// Record a finished probe; returns true when the container just became unhealthy.
    pub fn record(&mut self, now: Instant, end: String, exit_code: i32, output: &[u8]) -> bool {
        let Some((_, _, start)) = self.running.take() else {
            return false;
        };
        let mut out = output[..output.len().min(MAX_OUTPUT)].to_vec();
        if output.len() > MAX_OUTPUT {
            out.extend_from_slice(b"...");
        }
        self.log.push_back(HealthResult {
            start,
            end,
            exit_code,
            output: String::from_utf8_lossy(&out).into_owned(),
        });
        while self.log.len() > MAX_LOG {
            self.log.pop_front();
        }
        self.health.log = self.log.iter().cloned().collect();
        let was = self.health.status.clone();
        if exit_code == 0 {
            self.health.status = "healthy".into();
            self.health.failing_streak = 0;
        } else if !self.in_start_period(now) || was != "starting" {
            self.health.failing_streak += 1;
            if self.health.failing_streak >= self.cfg.retries() {
                self.health.status = "unhealthy".into();
            }
        }
        self.next = now + self.delay(now);
        was != "unhealthy" && self.health.status == "unhealthy"
    }

    /// Milliseconds until the shim must act (next probe or probe timeout).
    pub fn wake_in(&self, now: Instant) -> i32 {
        let at = match &self.running {
            Some((_, started, _)) => *started + self.cfg.timeout(),
            None => self.next,
        };
        at.saturating_duration_since(now)
            .as_millis()
            .min(i32::MAX as u128) as i32
            + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            test: vec!["CMD-SHELL".into(), "exit 1".into()],
            interval: 1_000_000_000,
            retries: 2,
            ..Default::default()
        }
    }

    #[test]
    fn argv_forms() {
        assert_eq!(cfg().argv(), vec!["/bin/sh", "-c", "exit 1"]);
        let c = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        };
        assert_eq!(c.argv(), vec!["true"]);
        assert!(c.enabled());
        assert!(!HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        }
        .enabled());
    }

    #[test]
    fn streaks_and_status() {
        let t0 = Instant::now();
        let mut s = HealthState::new(cfg(), t0);
        assert_eq!(s.health.status, "starting");
        s.running = Some(("a".into(), t0, "s".into()));
        assert!(!s.record(t0, "e".into(), 1, b"no"));
        assert_eq!(
            (s.health.status.as_str(), s.health.failing_streak),
            ("starting", 1)
        );
        s.running = Some(("b".into(), t0, "s".into()));
        assert!(s.record(t0, "e".into(), 1, b"no"));
        assert_eq!(s.health.status, "unhealthy");
        s.running = Some(("c".into(), t0, "s".into()));
        assert!(!s.record(t0, "e".into(), 0, &vec![b'x'; 5000]));
        assert_eq!(
            (s.health.status.as_str(), s.health.failing_streak),
            ("healthy", 0)
        );
        assert_eq!(s.health.log.len(), 3);
        assert_eq!(s.health.log[2].output.len(), MAX_OUTPUT + 3);
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.start_period = 3_600_000_000_000;
        let mut s = HealthState::new(c, t0);
        s.running = Some(("a".into(), t0, "s".into()));
        s.record(t0, "e".into(), 1, b"");
        assert_eq!(s.health.failing_streak, 0);
    }
}
