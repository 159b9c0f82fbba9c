//! Runs the registry standalone (for benchmarks and manual testing):
//! `cargo run --release -p berth-registry --example serve -- --root /tmp/reg --addr 127.0.0.1:5000`

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: berth_registry::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    berth_registry::serve(Cli::parse().serve).await
}
