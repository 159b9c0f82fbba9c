//! Root-only tests against the real kernel: each starts real shims and containers from a
//! busybox rootfs on overlayfs, with unique names, cleaned up even on failure.

mod common;

use std::time::Instant;

use berth_runtime::{start, Shim};
use common::{require_root, TestContainer, SHIM};

#[test]
fn true_exits_zero() {
    require_root!();
    let c = TestContainer::new("true", &["/bin/true"]);
    let t0 = Instant::now();
    let started = start(SHIM.as_ref(), &c.state_dir, &c.cfg).expect("start");
    assert!(started.pid > 0);
    let shim = Shim::connect(&c.state_dir).expect("connect");
    let exit = match shim {
        Some(s) => s.wait().expect("wait"),
        None => berth_runtime::read_exit(&c.state_dir).expect("read").expect("exit.json"),
    };
    eprintln!("start->exit latency of `true`: {:?}", t0.elapsed());
    assert_eq!(exit.exit_code, 0);
    assert!(!exit.oom_killed);
}

#[test]
fn exit_code_is_kept() {
    require_root!();
    let c = TestContainer::new("exit3", &["sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    start(SHIM.as_ref(), &c.state_dir, &c.cfg).expect("start");
    let exit = match Shim::connect(&c.state_dir).expect("connect") {
        Some(s) => s.wait().expect("wait"),
        None => berth_runtime::read_exit(&c.state_dir).expect("read").expect("exit.json"),
    };
    assert_eq!(exit.exit_code, 3);
    let log = std::fs::read_to_string(c.log_path()).expect("log");
    assert!(log.contains(r#""log":"hello\n","stream":"stdout""#), "{log}");
    assert!(log.contains(r#""log":"oops\n","stream":"stderr""#), "{log}");
}
