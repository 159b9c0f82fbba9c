//! `berth-shim shim <state_dir>`: the per-container shim as its own small executable.
//!
//! `berth shim <state_dir>` does the same, but the shim stays resident for the container's
//! whole life, and a process of the full `berth` binary (daemon, CLI, builder, registry) pays
//! for that binary in start-up time (relocations) and resident pages. This one links only the
//! runtime; the daemon uses it when it sits next to the `berth` executable.

fn main() {
    let mut args = std::env::args_os().skip(1);
    match (args.next(), args.next()) {
        (Some(cmd), Some(dir)) if cmd == "shim" => berth_runtime::shim_main(std::path::Path::new(&dir)),
        _ => {
            eprintln!("usage: berth-shim shim <state_dir> (started by the berth daemon)");
            std::process::exit(2);
        }
    }
}
