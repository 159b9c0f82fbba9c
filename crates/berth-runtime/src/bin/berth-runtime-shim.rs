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
        _ => {
            eprintln!("usage: berth-runtime-shim shim <state_dir>");
            std::process::exit(2);
        }
    }
}
