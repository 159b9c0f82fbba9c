//! Start-path timing marks for profiling (`BERTH_TIMING=<file>`).
//!
//! When the variable is set (in the daemon's environment it reaches every shim, in the CLI's
//! the client), [`mark`] appends `<CLOCK_MONOTONIC µs> <pid> <label>` to the file, so the CLI,
//! the daemon, the shim and the runtime helpers line up on one clock. Unset, a mark costs one
//! cached check. `bench/profile-start.sh` turns the lines into a timeline.

use std::io::Write;
use std::sync::OnceLock;

fn target() -> Option<&'static std::path::Path> {
    static T: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    T.get_or_init(|| std::env::var_os("BERTH_TIMING").filter(|v| !v.is_empty()).map(Into::into))
        .as_deref()
}

/// Record that the current process reached `label` now.
pub fn mark(label: &str) {
    let Some(p) = target() else { return };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let us = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
        // One write(2) per line, so marks of concurrent processes never interleave.
        let _ = f.write_all(format!("{us} {} {label}\n", std::process::id()).as_bytes());
    }
}
