#![recursion_limit = "256"]
//! `berth`: one binary that is the CLI, the daemon (`berth daemon`) and the per-container shim
//! (`berth shim`). The shim path runs before anything else (no tokio, single-threaded).

mod api;
mod cli;
mod client;
mod daemon;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() >= 3 && args[1] == "shim" {
        berth_runtime::shim_main(std::path::Path::new(&args[2]));
    }
    berth_runtime::timing::mark("cli: main");
    let cli = cli::Cli::parse();
    if let cli::Command::Daemon(a) = cli.cmd {
        if let Err(e) = daemon::run(cli.host, a) {
            eprintln!("berth daemon: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    // `berth ps | head`: once the reader is gone, stop quietly (as the docker CLI does) instead of
    // panicking in println!. Sockets keep EPIPE as an error (SIGPIPE stays ignored).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    // The registry server wants every core; the CLI one thread.
    let rt = if matches!(cli.cmd, cli::Command::Registry(_)) {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(cli::run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            if let Some(x) = e.downcast_ref::<cli::Exit>() {
                x.0
            } else if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
                // `berth export c | head`: the reader went away; not an error worth a message.
                141
            } else {
                eprintln!("{e:#}");
                1
            }
        }
    };
    berth_runtime::timing::mark("cli: exit");
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
