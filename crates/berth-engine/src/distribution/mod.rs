//! Registry client: `pull`, `push`, login checks and search against any registry speaking the
//! Docker Registry HTTP API v2 / OCI distribution spec.
//!
//! # Design
//!
//! * **One session per operation** ([`client::Session`]): it knows the registry's base URL
//!   (HTTPS, or plain HTTP for loopback and `insecure-registries`, probed once), answers
//!   `WWW-Authenticate` challenges (Bearer tokens cached per scope across sessions, refreshed
//!   on 401; Basic; anonymous) and retries 429/5xx/dropped connections with backoff and
//!   `Retry-After`, a bounded number of times. Every read has a timeout, so a stalled registry
//!   is an error, never a hang.
//! * **Streaming pull** ([`pull`]): the manifest and config are fetched first (capped at 4 MiB,
//!   digests checked on the exact bytes), so every layer's diff id and snapshot key is known up
//!   front. Layers then download in parallel; each one is written to a resumable ingest file,
//!   hashed, decompressed and unpacked into its snapshot *while it arrives* (one blocking thread
//!   per layer, fed by the async download). The blob becomes visible only after its digest and
//!   size are verified, the snapshot only after the diff id is; anything else is discarded.
//! * **Resumable ingests** ([`ingest`]): partial downloads live under
//!   `<data-root>/distribution/ingest/<hex>` (the content store's own ingest dir is wiped at
//!   start), and a later pull continues them with an HTTP `Range` request. The same blob
//!   wanted by two pulls at once is fetched once (a per-blob async lock).
//! * **Push** ([`push`]): `HEAD` skips blobs the registry has, cross-repository mounts reuse
//!   blobs pulled from another repository of the same registry, big blobs are uploaded with a
//!   resumable `PATCH`, layers pulled compressed are
//!   pushed byte for byte (same manifest digest), and locally made uncompressed layers are
//!   gzip-compressed to a temporary blob first (the compressed digest is remembered).
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo(eng: std::sync::Arc<berth_engine::Engine>) -> Result<(), berth_engine::distribution::DistributionError> {
//! use berth_engine::distribution::{pull, push, PullOptions, PushOptions, Progress};
//! let sink: berth_engine::distribution::ProgressSink = std::sync::Arc::new(|p: Progress| {
//!     println!("{}", p.to_json());
//! });
//! let out = pull::pull(eng.clone(), "127.0.0.1:5000/app:v1", &PullOptions::default(), sink.clone()).await?;
//! println!("pulled {} ({})", out.reference, out.digest);
//! push::push(eng, "127.0.0.1:5000/app", Some("v1"), &PushOptions::default(), sink).await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod ingest;
pub mod pull;
pub mod push;

pub use client::{Credentials, RegistryOptions};
pub use pull::{PullOptions, PullOutcome};
pub use push::{PushOptions, PushOutcome};

use std::sync::Arc;

/// Coarse error classes, so the API edge can choose an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistributionErrorKind {
    /// Manifest, tag, blob or repository unknown (404).
    NotFound,
    /// Credentials missing or rejected (401).
    Unauthorized,
    /// Access denied (403).
    Denied,
    /// The caller's input is invalid (400).
    InvalidInput,
    /// The registry sent something invalid: bad digest, size, document (500 / stream error).
    Invalid,
    /// Network failure, timeout or the registry kept failing (500 / stream error).
    Unavailable,
    /// Local failure (500).
    Internal,
}

/// A registry client error with a Docker-worded message.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct DistributionError {
    kind: DistributionErrorKind,
    msg: String,
}

impl DistributionError {
    pub fn new(kind: DistributionErrorKind, msg: impl Into<String>) -> Self {
        Self { kind, msg: msg.into() }
    }
    pub fn kind(&self) -> DistributionErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::new(DistributionErrorKind::Invalid, msg)
    }
    pub(crate) fn internal(msg: impl Into<String>) -> Self {
        Self::new(DistributionErrorKind::Internal, msg)
    }
    pub(crate) fn unavailable(msg: impl Into<String>) -> Self {
        Self::new(DistributionErrorKind::Unavailable, msg)
    }
    /// Prefix the message, keeping the kind.
    pub fn context(self, ctx: impl std::fmt::Display) -> Self {
        Self { kind: self.kind, msg: format!("{ctx}: {}", self.msg) }
    }
}

impl From<crate::EngineError> for DistributionError {
    fn from(e: crate::EngineError) -> Self {
        let kind = match e.kind() {
            crate::ErrorKind::NotFound => DistributionErrorKind::NotFound,
            crate::ErrorKind::InvalidArgument => DistributionErrorKind::InvalidInput,
            crate::ErrorKind::Forbidden => DistributionErrorKind::Denied,
            _ => DistributionErrorKind::Internal,
        };
        Self::new(kind, e.message().to_string())
    }
}

impl From<std::io::Error> for DistributionError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e.to_string())
    }
}

pub type Result<T, E = DistributionError> = std::result::Result<T, E>;

/// One progress message, in the shape of Docker's `JSONMessage`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Layer short id (or tag for "Pulling from").
    pub id: Option<String>,
    pub status: String,
    pub current: Option<u64>,
    pub total: Option<u64>,
    /// `aux` payload (push result).
    pub aux: Option<serde_json::Value>,
}

impl Progress {
    pub fn status(s: impl Into<String>) -> Self {
        Self { status: s.into(), ..Default::default() }
    }
    pub fn layer(id: impl Into<String>, s: impl Into<String>) -> Self {
        Self { id: Some(id.into()), status: s.into(), ..Default::default() }
    }

    /// Docker's JSON progress line (without the newline).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "status": self.status });
        if let Some(id) = &self.id {
            v["id"] = id.clone().into();
            let mut detail = serde_json::json!({});
            if let Some(c) = self.current {
                detail["current"] = c.into();
                if let Some(t) = self.total {
                    detail["total"] = t.into();
                }
                v["progress"] = progress_bar(c, self.total).into();
            }
            v["progressDetail"] = detail;
        }
        if let Some(a) = &self.aux {
            v["progressDetail"] = serde_json::json!({});
            v["aux"] = a.clone();
            if self.status.is_empty() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        v
    }
}

/// Docker's `[=====>     ]  1.2MB/3.4MB` bar.
pub fn progress_bar(current: u64, total: Option<u64>) -> String {
    match total {
        Some(t) if t > 0 => {
            let width = 50u64;
            let filled = (current.min(t) * width / t) as usize;
            let mut bar = "=".repeat(filled);
            if filled < width as usize {
                bar.push('>');
                bar.push_str(&" ".repeat(width as usize - filled - 1));
            }
            format!("[{bar}] {:>8}/{}", human_size(current), human_size(t))
        }
        _ => format!("{:>8}", human_size(current)),
    }
}

/// Decimal sizes as Docker prints them (`1.23MB`).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{n}B");
    }
    let s = if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    format!("{}{}", s.trim_end_matches('0').trim_end_matches('.'), units[i])
}

/// Where progress goes: the API turns it into JSON lines, the tests collect it.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// A sink that drops everything.
pub fn no_progress() -> ProgressSink {
    Arc::new(|_| {})
}

/// The directory this module keeps its own state in (`<data-root>/distribution`).
pub(crate) fn state_dir(eng: &crate::Engine) -> std::path::PathBuf {
    eng.config.data_root.join("distribution")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_json_shapes() {
        let p = Progress::layer("abc", "Pulling fs layer");
        assert_eq!(p.to_json(), serde_json::json!({"status": "Pulling fs layer", "id": "abc", "progressDetail": {}}));
        let p = Progress { id: Some("abc".into()), status: "Downloading".into(), current: Some(5), total: Some(10), aux: None };
        let v = p.to_json();
        assert_eq!(v["progressDetail"], serde_json::json!({"current": 5, "total": 10}));
        assert!(v["progress"].as_str().unwrap().starts_with(&format!("[{}>", "=".repeat(25))));
        assert_eq!(Progress::status("Digest: x").to_json(), serde_json::json!({"status": "Digest: x"}));
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(2_000), "2kB");
    }
}
