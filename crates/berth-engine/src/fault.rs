//! Fault points: named places in the engine's durable operations where a crash test can make
//! the process die with SIGKILL (HARDENING B1-B4, B20), in any build, driven by environment
//! variables read once.
//!
//! - `BERTH_FAULTS=<name>[,<name>...]` kills the process the first time it reaches a point
//!   of that name; `<name>@<n>` on the n-th time; `#<k>` at the k-th point reached, whatever
//!   its name (so a test can walk every point of an operation in order).
//! - `BERTH_FAULTS_TRACE=<file>` appends the name of every point reached, one per line, so a
//!   test can first learn which points an operation passes.
//!
//! With neither variable set, [`point`] is one relaxed atomic load.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

const UNKNOWN: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);
static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
static REACHED: AtomicU64 = AtomicU64::new(0);

struct Config {
    /// name -> occurrence (1-based) at which to die
    named: HashMap<String, u64>,
    /// die at the k-th point reached overall
    nth: Option<u64>,
    counts: HashMap<String, u64>,
    trace: Option<std::fs::File>,
}

fn parse(spec: &str) -> Config {
    let mut named = HashMap::new();
    let mut nth = None;
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(k) = item.strip_prefix('#') {
            nth = k.parse().ok();
        } else if let Some((name, n)) = item.split_once('@') {
            named.insert(name.to_string(), n.parse().unwrap_or(1));
        } else {
            named.insert(item.to_string(), 1);
        }
    }
    let trace = std::env::var_os("BERTH_FAULTS_TRACE").and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    Config { named, nth, counts: HashMap::new(), trace }
}

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        OFF => false,
        ON => true,
        _ => {
            let spec = std::env::var("BERTH_FAULTS").ok();
            let on = spec.is_some() || std::env::var_os("BERTH_FAULTS_TRACE").is_some();
            if on {
                set(spec.as_deref().unwrap_or(""));
            } else {
                STATE.store(OFF, Ordering::Relaxed);
            }
            on
        }
    }
}

/// Arm this process's fault points with a `BERTH_FAULTS`-style `spec` (replacing what the
/// environment said), counting from zero again. For crash tests that prepare a state first.
pub fn set(spec: &str) {
    if let Ok(mut c) = CONFIG.lock() {
        *c = Some(parse(spec));
    }
    REACHED.store(0, Ordering::SeqCst);
    STATE.store(ON, Ordering::SeqCst);
}

/// A crash test may kill the process here. `name` is `<operation>.<step>`.
#[inline]
pub fn point(name: &'static str) {
    if enabled() {
        reached(name);
    }
}

#[cold]
fn reached(name: &'static str) {
    let k = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
    let Ok(mut guard) = CONFIG.lock() else { return };
    let Some(cfg) = guard.as_mut() else { return };
    if let Some(t) = cfg.trace.as_mut() {
        let _ = writeln!(t, "{name}");
    }
    let e = cfg.counts.entry(name.to_string()).or_default();
    *e += 1;
    if cfg.nth == Some(k) || cfg.named.get(name) == Some(e) {
        tracing::warn!(point = name, "fault injection: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        // SIGKILL cannot be caught or ignored; this is never reached.
        std::process::abort();
    }
}
