//! berth's private registry server: the OCI distribution spec v1.1 and the Docker
//! Registry HTTP API v2, served from a plain directory.
//!
//! # Design
//!
//! * **Content-addressed store shared by all repositories** ([`store`]): blobs live
//!   once under `blobs/sha256/`, repositories only hold small link files, so a
//!   cross-repository mount is one link write and GC is a mark-and-sweep over links.
//! * **Nothing half-written is visible**: every durable change is write temp → fsync
//!   → rename → fsync dir; uploads are verified against their digest before they are
//!   renamed into the store ([`upload`]).
//! * **Streaming**: upload bodies are hashed while written to disk in 1 MiB writes;
//!   downloads stream the file in 256 KiB chunks with `Range` support. No blob is ever
//!   held in memory; manifests are capped at 4 MiB.
//! * **No store-wide lock per request**: each upload session has its own lock; blob
//!   reuse and GC coordinate through `flock` on the blob file and a GC epoch lock
//!   that only GC takes exclusively, so GC can run (even as another process) while
//!   pushes continue ([`mod@gc`]).
//! * **One handler, many routes** ([`server`]): repository names contain slashes, so
//!   the path is parsed from its end and validated before it reaches the filesystem.
//!
//! # Usage
//!
//! ```no_run
//! use std::sync::Arc;
//! # async fn demo() -> anyhow::Result<()> {
//! // In-process, e.g. for tests:
//! let reg = Arc::new(berth_registry::Registry::open("/tmp/registry")?);
//! let app: axum::Router = berth_registry::router(reg);
//! # let _ = app;
//!
//! // As `berth registry serve` does (runs until SIGINT/SIGTERM):
//! let args = berth_registry::ServeArgs {
//!     addr: "127.0.0.1:5000".into(),
//!     root: "/var/lib/berth-registry".into(),
//!     ..Default::default()
//! };
//! berth_registry::serve(args).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

pub mod auth;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod names;
pub mod server;
pub mod store;
pub mod upload;

pub use error::{ApiError, ErrorCode};
pub use gc::{GcOptions, GcReport};
pub use server::{router, Registry};

/// Upload sessions idle for longer than this are purged.
pub const UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// `berth registry serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub addr: String,
    /// Directory holding the registry's content.
    #[arg(long)]
    pub root: PathBuf,
    /// htpasswd file with bcrypt entries; enables HTTP Basic authentication.
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain; serves HTTPS (requires --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse every push and delete.
    #[arg(long)]
    pub read_only: bool,
    /// Most upload sessions open at once (further uploads get TOOMANYREQUESTS).
    #[arg(long, default_value_t = server::DEFAULT_MAX_UPLOADS)]
    pub max_uploads: usize,
}

impl Default for ServeArgs {
    fn default() -> ServeArgs {
        ServeArgs {
            addr: "127.0.0.1:5000".into(),
            root: PathBuf::from("/var/lib/berth-registry"),
            htpasswd: None,
            tls_cert: None,
            tls_key: None,
            read_only: false,
            max_uploads: server::DEFAULT_MAX_UPLOADS,
        }
    }
}

/// `berth registry gc`.
#[derive(Debug, Clone, clap::Args)]
pub struct GcArgs {
    /// Directory holding the registry's content.
    #[arg(long)]
    pub root: PathBuf,
    /// Only report what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced blobs younger than this many seconds (pushes in progress).
    #[arg(long, default_value_t = 3600)]
    pub grace_period: u64,
}

/// Builds the registry state from `args` (opens the store, loads htpasswd).
pub fn registry_from_args(args: &ServeArgs) -> anyhow::Result<Registry> {
    let mut reg = Registry::open(&args.root)
        .with_context(|| format!("open registry root {}", args.root.display()))?
        .read_only(args.read_only)
        .max_uploads(args.max_uploads);
    if let Some(p) = &args.htpasswd {
        reg = reg.with_auth(auth::Htpasswd::load(p)?);
    }
    Ok(reg)
}

/// Loads a PEM certificate chain and key into a rustls server config (h2 + http/1.1).
pub fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("read private key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("tls protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("tls certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the registry described by `args` until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let reg = Arc::new(registry_from_args(&args)?);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(load_tls(c, k)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key must be given together"),
    };
    let listener = TcpListener::bind(&args.addr)
        .await
        .with_context(|| format!("listen on {}", args.addr))?;
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        root = %args.root.display(),
        tls = tls.is_some(),
        auth = args.htpasswd.is_some(),
        read_only = args.read_only,
        "registry listening"
    );
    serve_on(listener, reg, tls, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Serves `reg` on an already bound listener until `shutdown` completes, then waits
/// (up to 30 s) for requests in flight. Purges stale uploads at start and hourly.
pub async fn serve_on(
    listener: TcpListener,
    reg: Arc<Registry>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    reg.purge_stale_uploads(UPLOAD_EXPIRY)
        .await
        .context("purge stale uploads")?;
    let purger = {
        let reg = reg.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = reg.purge_stale_uploads(UPLOAD_EXPIRY).await {
                    tracing::warn!(error = %e, "purging stale uploads failed");
                }
            }
        })
    };
    let app = router(reg);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(app.clone());
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let res = match acceptor {
                Some(acc) => match acc.accept(stream).await {
                    Ok(s) => {
                        watcher
                            .watch(builder.serve_connection(TokioIo::new(s), svc))
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                        return;
                    }
                },
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!(peer = %peer, error = %e, "connection ended with error");
            }
        });
    }
    drop(listener);
    purger.abort();
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after 30s; exiting anyway");
    }
    Ok(())
}

/// Runs garbage collection over `args.root` (see [`mod@gc`] for why it is safe while the
/// server runs).
pub async fn gc(args: GcArgs) -> anyhow::Result<GcReport> {
    let store = store::Store::open(&args.root)
        .with_context(|| format!("open registry root {}", args.root.display()))?;
    let opts = GcOptions {
        grace: Duration::from_secs(args.grace_period),
        dry_run: args.dry_run,
    };
    let report = tokio::task::spawn_blocking(move || gc::run(&store, &opts))
        .await
        .context("gc worker")??;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Serve(ServeArgs),
        Gc(GcArgs),
    }

    #[test]
    fn cli_args() {
        let cli = Cli::try_parse_from(["berth", "serve", "--root", "/r"]).unwrap();
        let Cmd::Serve(a) = cli.cmd else {
            panic!("not serve")
        };
        assert_eq!(a.addr, "127.0.0.1:5000");
        assert_eq!(a.root, PathBuf::from("/r"));
        assert!(!a.read_only && a.htpasswd.is_none());

        let cli = Cli::try_parse_from([
            "berth",
            "serve",
            "--root",
            "/r",
            "--addr",
            "0.0.0.0:443",
            "--htpasswd",
            "/h",
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
            "--read-only",
        ])
        .unwrap();
        let Cmd::Serve(a) = cli.cmd else {
            panic!("not serve")
        };
        assert_eq!(a.tls_key, Some(PathBuf::from("/k")));
        assert!(a.read_only);

        assert!(
            Cli::try_parse_from(["berth", "serve", "--root", "/r", "--tls-cert", "/c"]).is_err()
        );
        assert!(Cli::try_parse_from(["berth", "serve"]).is_err());

        let cli = Cli::try_parse_from(["berth", "gc", "--root", "/r", "--dry-run"]).unwrap();
        let Cmd::Gc(g) = cli.cmd else {
            panic!("not gc")
        };
        assert!(g.dry_run);
        assert_eq!(g.grace_period, 3600);
    }
}
