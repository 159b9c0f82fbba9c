//! Test helper: a stand-in for `berth shim <state_dir>` so the crate's integration tests can
//! launch real shims without the `berth` binary.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("shim"), Some(dir)) => {
            // Logs go to stderr, which the shim points at <state_dir>/shim.log.
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("BERTH_SHIM_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .init();
            berth_runtime::shim_main(std::path::Path::new(dir))
        }
        // A stand-in daemon for the tests: start the container described by the JSON file,
        // then die by SIGKILL like a crashed daemon would.
        (Some("start-and-die"), Some(dir)) => {
            let cfg = args
                .get(3)
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(cfg) = cfg else {
                eprintln!("start-and-die: missing or invalid config file");
                std::process::exit(2);
            };
            let exe = std::env::current_exe().unwrap_or_else(|_| args[0].clone().into());
            match berth_runtime::start(&exe, std::path::Path::new(dir), &cfg) {
                Ok(_) => {
                    // SAFETY: raise has no memory-safety preconditions.
                    unsafe { libc::raise(libc::SIGKILL) };
                    std::process::exit(0)
                }
                Err(e) => {
                    eprintln!("start: {e}");
                    std::process::exit(1)
                }
            }
        }
        _ => {
            eprintln!("usage: berth-runtime-shim shim <state_dir> | start-and-die <state_dir> <config.json>");
            std::process::exit(2);
        }
    }
}
