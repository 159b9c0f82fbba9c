//! Garbage collection: mark every blob reachable from a manifest of any repository,
//! then delete unreachable blobs older than a grace period.
//!
//! GC is safe to run (even as a separate process) while the server accepts pushes:
//!
//! * the cutoff is `gc start - grace`: a blob written or reused after GC started has
//!   a newer mtime (commits and manifest pushes touch every blob they rely on);
//! * each deletion happens under an exclusive `flock` on the blob, re-checking the
//!   mtime and that the path still names the locked file, while the server touches
//!   blobs under a shared `flock` and treats an unlinked file as absent. So a blob is
//!   either touched first (and kept) or deleted first (and the push sees it missing
//!   and reports `MANIFEST_BLOB_UNKNOWN`, never a dangling manifest);
//! * a manifest push holds the shared GC epoch lock from its blob check to its
//!   write, and GC reads its start time under the exclusive one, so a push either
//!   finished before the mark phase (and is marked) or touched its blobs after the
//!   cutoff (and they are kept). See [`Store::gc_epoch_shared`].
//!
//! Only one GC runs at a time (`<root>/gc.lock`). A GC killed midway leaves a store
//! where every remaining manifest still has its blobs; running it again resumes.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::time::{Duration, SystemTime};

use crate::manifest::{self, MAX_MANIFEST_SIZE};
use crate::names::Digest;
use crate::store::{io_err, read_dir_names, Store, StoreError};

/// Why a GC run failed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("another garbage collection is running on {0}")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Coarse class of a [`GcError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcErrorKind {
    Busy,
    Io,
}

impl GcError {
    /// The class of this error.
    pub fn kind(&self) -> GcErrorKind {
        match self {
            GcError::Busy(_) => GcErrorKind::Busy,
            GcError::Store(_) => GcErrorKind::Io,
        }
    }
}

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Unreferenced blobs younger than this are kept (they may belong to a push in
    /// progress whose manifest has not arrived yet).
    pub grace: Duration,
    /// Report what would be deleted without deleting.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }
}

/// What a GC run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Manifests walked.
    pub manifests: usize,
    /// Blobs reachable from some manifest.
    pub marked: usize,
    /// Unreferenced blobs deleted (or, in a dry run, that would be).
    pub deleted: Vec<String>,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_recent: usize,
    /// Abandoned upload sessions and temp files (untouched for 24 h) removed.
    pub stale_uploads: usize,
    pub dry_run: bool,
}

/// Runs a collection over `store` (blocking).
pub fn run(store: &Store, opts: &GcOptions) -> Result<GcReport, GcError> {
    let lock_path = store.root().join("gc.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(GcError::Busy(store.root().display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e).into()),
    }
    let start = store.gc_epoch_start()?;
    let cutoff = start
        .checked_sub(opts.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..GcReport::default()
    };

    let mut marked: HashSet<Digest> = HashSet::new();
    for repo in store.catalog()? {
        for d in store.list_revisions(&repo)? {
            report.manifests += 1;
            marked.insert(d.clone());
            let Some(mt) = store.manifest_media_type(&repo, &d)? else {
                continue;
            };
            let body = match store.read_blob(&d, MAX_MANIFEST_SIZE as u64) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    tracing::warn!(repo = %repo, digest = %d, "manifest content missing");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(repo = %repo, digest = %d, error = %e, "unreadable manifest");
                    continue;
                }
            };
            match manifest::parse(Some(&mt), &body) {
                Ok(p) => {
                    marked.extend(p.blobs.into_iter().map(|b| b.digest));
                    marked.extend(p.manifests.into_iter().map(|b| b.digest));
                    marked.extend(p.subject.into_iter().map(|b| b.digest));
                }
                Err(e) => {
                    tracing::warn!(repo = %repo, digest = %d, error = %e, "unparsable manifest")
                }
            }
        }
    }
    report.marked = marked.len();

    for (d, mtime) in store.list_blobs()? {
        if marked.contains(&d) {
            continue;
        }
        if mtime >= cutoff {
            report.kept_recent += 1;
            continue;
        }
        if opts.dry_run {
            report.bytes_freed += store.blob_size(&d)?.unwrap_or(0);
            report.deleted.push(d.to_string());
            continue;
        }
        if let Some(size) = store.remove_blob_if_older(&d, cutoff)? {
            tracing::debug!(digest = %d, size, "deleted blob");
            report.bytes_freed += size;
            report.deleted.push(d.to_string());
        } else {
            report.kept_recent += 1;
        }
    }
    if !opts.dry_run {
        report.stale_uploads = purge_stale_uploads(store, crate::UPLOAD_EXPIRY)?;
    }
    tracing::info!(
        manifests = report.manifests,
        marked = report.marked,
        deleted = report.deleted.len(),
        bytes_freed = report.bytes_freed,
        dry_run = opts.dry_run,
        "garbage collection done"
    );
    Ok(report)
}

/// Removes upload sessions whose data has not changed for `max_age` (wall clock,
/// since GC may run in another process than the server) and old temp files.
fn purge_stale_uploads(store: &Store, max_age: Duration) -> Result<usize, GcError> {
    let now = SystemTime::now();
    let base = store.uploads_dir();
    let mut n = 0;
    for name in read_dir_names(&base)? {
        let p = base.join(&name);
        let age = std::fs::metadata(p.join("data"))
            .or_else(|_| std::fs::metadata(&p))
            .and_then(|m| m.modified())
            .map(|t| now.duration_since(t).unwrap_or_default())
            .unwrap_or_default();
        if age > max_age && std::fs::remove_dir_all(&p).is_ok() {
            n += 1;
        }
    }
    Ok(n + store.purge_tmp(max_age)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ManifestPut;

    #[test]
    fn keeps_referenced_and_recent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let cfg = Digest::of(b"{}");
        s.put_blob_bytes(&cfg, b"{}").unwrap();
        let orphan = Digest::of(b"orphan");
        s.put_blob_bytes(&orphan, b"orphan").unwrap();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
            "layers": [],
        })
        .to_string();
        let md = Digest::of(m.as_bytes());
        s.put_manifest(&ManifestPut {
            repo: "r",
            digest: &md,
            media_type: manifest::OCI_MANIFEST,
            body: m.as_bytes(),
            tag: Some("t"),
            subject: None,
        })
        .unwrap();
        let stale = s.uploads_dir().join("stale");
        std::fs::create_dir(&stale).unwrap();
        std::fs::File::create(stale.join("data"))
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(25 * 3600))
            .unwrap();
        let fresh = s.uploads_dir().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        std::fs::File::create(fresh.join("data")).unwrap();
        let r = run(&s, &GcOptions::default()).unwrap();
        assert_eq!(r.deleted.len(), 0);
        assert_eq!(r.kept_recent, 1);
        assert_eq!(r.stale_uploads, 1);
        assert!(!stale.exists() && fresh.exists());
        let opts = GcOptions {
            grace: Duration::ZERO,
            dry_run: true,
        };
        let r = run(&s, &opts).unwrap();
        assert_eq!(r.deleted, vec![orphan.to_string()]);
        assert!(s.blob_size(&orphan).unwrap().is_some());
        let opts = GcOptions {
            grace: Duration::ZERO,
            dry_run: false,
        };
        let r = run(&s, &opts).unwrap();
        assert_eq!(r.deleted, vec![orphan.to_string()]);
        assert_eq!(r.bytes_freed, 6);
        assert!(s.blob_size(&orphan).unwrap().is_none());
        assert!(s.blob_size(&cfg).unwrap().is_some());
        assert!(s.blob_size(&md).unwrap().is_some());
    }
}
