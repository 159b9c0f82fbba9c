//! The on-disk store: content-addressed blobs shared by every repository, and small
//! link files that say which repository holds which blob, manifest and tag.
//!
//! ```text
//! <root>/
//!   blobs/sha256/<2 hex>/<64 hex>                       immutable content (layers, configs, manifests)
//!   repositories/<name>/_layers/sha256/<hex>            repo has blob (content: digest)
//!   repositories/<name>/_manifests/revisions/sha256/<hex>  repo has manifest (content: media type)
//!   repositories/<name>/_manifests/tags/<tag>           tag -> digest
//!   repositories/<name>/_referrers/sha256/<subject hex>/<hex>  referrer descriptor (JSON)
//!   uploads/<uuid>/{data,repo}                          upload sessions, resumable
//!   tmp/                                                staging for atomic writes
//! ```
//!
//! Name components can never start with `_` (see [`crate::names`]), so the `_layers`,
//! `_manifests` and `_referrers` folders never collide with a nested repository.
//!
//! Every durable change is write temp → fsync → rename → fsync dir, so a crash leaves
//! either the old or the new state. Blob deletion (only by GC) and blob reuse coordinate
//! through `flock` on the blob file plus its mtime, which works across processes: see
//! [`Store::touch_blob`] and [`Store::remove_blob_if_older`].
//!
//! All methods are blocking; the server calls them through `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::names::Digest;

/// A store failure, with the path it happened on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("invalid store entry {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Coarse class of a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    NotFound,
    Invalid,
    Io,
}

impl StoreError {
    /// The class of this error.
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::NotFound { .. } => StoreErrorKind::NotFound,
            StoreError::Invalid { .. } => StoreErrorKind::Invalid,
            StoreError::Io { .. } => StoreErrorKind::Io,
        }
    }
}

/// Attaches an operation name and path to an `io::Error`.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Handle on a store directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    root: Arc<PathBuf>,
}

/// What [`Store::put_manifest`] writes.
pub struct ManifestPut<'a> {
    pub repo: &'a str,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub body: &'a [u8],
    pub tag: Option<&'a str>,
    /// `(subject, referrer descriptor JSON)` when the manifest has a `subject`.
    pub subject: Option<(Digest, Vec<u8>)>,
}

impl Store {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store {
            root: Arc::new(root.into()),
        };
        for d in ["blobs/sha256", "repositories", "uploads", "tmp"] {
            let p = store.root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob's content lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    /// Directory of upload sessions.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// A fresh path for a temporary file on the store's filesystem.
    pub fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join("repositories").join(repo)
    }

    fn layer_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo).join("_layers/sha256").join(d.hex())
    }

    fn revision_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions/sha256")
            .join(d.hex())
    }

    fn tags_dir(&self, repo: &str) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags")
    }

    fn referrers_dir(&self, repo: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers/sha256")
            .join(subject.hex())
    }

    /// Writes `data` to `dest` atomically and durably.
    pub fn write_atomic(&self, dest: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.tmp_path();
        let res = (|| {
            let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(data).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            drop(f);
            self.rename_durable(&tmp, dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Renames `src` (already fsynced) to `dest`, creating and syncing parents.
    pub fn rename_durable(&self, src: &Path, dest: &Path) -> Result<()> {
        let parent = dest.parent().unwrap_or(&self.root);
        ensure_dir(parent)?;
        fs::rename(src, dest).map_err(io_err("rename", dest))?;
        sync_dir(parent)
    }

    /// Takes the shared side of the GC epoch lock, held by a manifest push from the
    /// moment it checks its blobs until the manifest is written. GC takes the
    /// exclusive side only for an instant, to read its start time: so any push that
    /// checked its blobs before GC started has also written its manifest before GC's
    /// mark phase, and every later push touches its blobs after GC's cutoff.
    pub fn gc_epoch_shared(&self) -> Result<File> {
        let p = self.root.join("gc.epoch");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        f.lock_shared().map_err(io_err("lock", &p))?;
        Ok(f)
    }

    /// GC's side of [`Store::gc_epoch_shared`]: the start time of a collection.
    pub fn gc_epoch_start(&self) -> Result<SystemTime> {
        let p = self.root.join("gc.epoch");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("open", &p))?;
        f.lock().map_err(io_err("lock", &p))?;
        let now = SystemTime::now();
        drop(f);
        Ok(now)
    }

    // ---- blobs -------------------------------------------------------------

    /// Size of a blob if its content exists.
    pub fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &p)(e)),
        }
    }

    /// Size of a blob if `repo` links it and its content exists.
    pub fn repo_blob_size(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        if !exists(&self.layer_link(repo, d))? && !exists(&self.revision_link(repo, d))? {
            return Ok(None);
        }
        self.blob_size(d)
    }

    /// Whether `repo` links blob `d` (regardless of its content).
    pub fn has_blob_link(&self, repo: &str, d: &Digest) -> Result<bool> {
        exists(&self.layer_link(repo, d))
    }

    /// Marks blob `d` as in use now: under a shared `flock`, checks the file is still
    /// linked and bumps its mtime, so a concurrent GC (which takes the lock
    /// exclusively and re-checks the mtime) will not delete it. Returns the size, or
    /// `None` when the blob does not exist (or was just deleted by GC).
    pub fn touch_blob(&self, d: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        let f = match OpenOptions::new().write(true).open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        f.lock_shared().map_err(io_err("lock", &p))?;
        let meta = f.metadata().map_err(io_err("stat", &p))?;
        if meta.nlink() == 0 {
            return Ok(None);
        }
        f.set_modified(SystemTime::now())
            .map_err(io_err("touch", &p))?;
        Ok(Some(meta.len()))
        // the lock is released when `f` is closed
    }

    /// Makes `src` (a complete, verified, fsynced file) the content of blob `d`. When
    /// the blob already exists it is only touched and `src` is removed.
    pub fn commit_blob(&self, src: &Path, d: &Digest) -> Result<()> {
        if self.touch_blob(d)?.is_some() {
            let _ = fs::remove_file(src);
            return Ok(());
        }
        // Fresh content: the file's mtime is "now", which protects it from GC.
        let f = File::open(src).map_err(io_err("open", src))?;
        f.set_modified(SystemTime::now())
            .map_err(io_err("touch", src))?;
        drop(f);
        self.rename_durable(src, &self.blob_path(d))
    }

    /// Writes a blob from memory (manifests).
    pub fn put_blob_bytes(&self, d: &Digest, data: &[u8]) -> Result<()> {
        if self.touch_blob(d)?.is_some() {
            return Ok(());
        }
        self.write_atomic(&self.blob_path(d), data)
    }

    /// Records that `repo` holds blob `d`.
    pub fn link_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        let link = self.layer_link(repo, d);
        if exists(&link)? {
            return Ok(());
        }
        self.write_atomic(&link, d.to_string().as_bytes())
    }

    /// Removes `repo`'s link to blob `d`. Returns false if there was none.
    pub fn unlink_blob(&self, repo: &str, d: &Digest) -> Result<bool> {
        remove_durable(&self.layer_link(repo, d))
    }

    /// GC's delete: under an exclusive `flock`, deletes blob `d` only if the path still
    /// names the locked file and its mtime is before `cutoff`. Returns whether it was
    /// deleted and its size.
    pub fn remove_blob_if_older(&self, d: &Digest, cutoff: SystemTime) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", &p)(e)),
        };
        f.lock().map_err(io_err("lock", &p))?;
        let meta = f.metadata().map_err(io_err("stat", &p))?;
        let path_meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("stat", &p)(e)),
        };
        if meta.nlink() == 0 || meta.ino() != path_meta.ino() || meta.dev() != path_meta.dev() {
            return Ok(None);
        }
        let mtime = meta.modified().map_err(io_err("stat", &p))?;
        if mtime >= cutoff {
            return Ok(None);
        }
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
        if let Some(parent) = p.parent() {
            sync_dir(parent)?;
        }
        Ok(Some(meta.len()))
    }

    /// Every blob in the store with its mtime.
    pub fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let mut out = Vec::new();
        let base = self.root.join("blobs/sha256");
        for prefix in read_dir_names(&base)? {
            let dir = base.join(&prefix);
            for name in read_dir_names(&dir)? {
                let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                    continue;
                };
                let p = dir.join(&name);
                match fs::metadata(&p) {
                    Ok(m) => out.push((d, m.modified().map_err(io_err("stat", &p))?)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("stat", &p)(e)),
                }
            }
        }
        Ok(out)
    }

    /// Reads a whole blob (bounded by the caller: manifests only).
    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Option<Vec<u8>>> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) if m.len() > max => {
                return Err(StoreError::Invalid {
                    path: p,
                    reason: format!("{} bytes exceeds {max}", m.len()),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("stat", &p)(e)),
        }
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    // ---- manifests ---------------------------------------------------------

    /// Stores a manifest: blob, revision link, referrer entry, then the tag (last, so
    /// a tag never points at something absent).
    pub fn put_manifest(&self, m: &ManifestPut<'_>) -> Result<()> {
        self.put_blob_bytes(m.digest, m.body)?;
        self.write_atomic(
            &self.revision_link(m.repo, m.digest),
            m.media_type.as_bytes(),
        )?;
        if let Some((subject, desc)) = &m.subject {
            let p = self.referrers_dir(m.repo, subject).join(m.digest.hex());
            self.write_atomic(&p, desc)?;
        }
        if let Some(tag) = m.tag {
            self.write_atomic(
                &self.tags_dir(m.repo).join(tag),
                m.digest.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Media type of a manifest `repo` holds, if any.
    pub fn manifest_media_type(&self, repo: &str, d: &Digest) -> Result<Option<String>> {
        let p = self.revision_link(repo, d);
        match fs::read(&p) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// The digest a tag points to.
    pub fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        let p = self.tags_dir(repo).join(tag);
        match fs::read_to_string(&p) {
            Ok(s) => s.trim().parse().map(Some).map_err(|e| StoreError::Invalid {
                path: p,
                reason: format!("{e}"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// Removes a tag. Returns false if it did not exist.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        remove_durable(&self.tags_dir(repo).join(tag))
    }

    /// Removes a manifest from `repo`: its tags first, then its referrer entry, then
    /// the revision link. The blob itself is left to GC.
    pub fn delete_manifest(
        &self,
        repo: &str,
        d: &Digest,
        subject: Option<&Digest>,
    ) -> Result<bool> {
        if self.manifest_media_type(repo, d)?.is_none() {
            return Ok(false);
        }
        for tag in self.list_tags(repo)?.unwrap_or_default() {
            if self.resolve_tag(repo, &tag).ok().flatten().as_ref() == Some(d) {
                self.delete_tag(repo, &tag)?;
            }
        }
        if let Some(s) = subject {
            remove_durable(&self.referrers_dir(repo, s).join(d.hex()))?;
        }
        remove_durable(&self.revision_link(repo, d))
    }

    /// Whether `repo` exists (has ever had a blob or manifest).
    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        Ok(exists(&self.repo_dir(repo).join("_manifests"))?
            || exists(&self.repo_dir(repo).join("_layers"))?)
    }

    /// Tags of `repo`, sorted; `None` if the repository is unknown.
    pub fn list_tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        if !self.repo_exists(repo)? {
            return Ok(None);
        }
        let mut tags = read_dir_names(&self.tags_dir(repo))?;
        tags.retain(|t| crate::names::validate_tag(t).is_ok());
        tags.sort();
        Ok(Some(tags))
    }

    /// Manifests `repo` holds.
    pub fn list_revisions(&self, repo: &str) -> Result<Vec<Digest>> {
        let dir = self.repo_dir(repo).join("_manifests/revisions/sha256");
        Ok(read_dir_names(&dir)?
            .into_iter()
            .filter_map(|n| format!("sha256:{n}").parse().ok())
            .collect())
    }

    /// Referrer descriptors recorded for `subject` in `repo`.
    pub fn list_referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Vec<u8>>> {
        let dir = self.referrers_dir(repo, subject);
        let mut names = read_dir_names(&dir)?;
        names.sort();
        let mut out = Vec::new();
        for n in names {
            let p = dir.join(&n);
            match fs::read(&p) {
                Ok(b) => out.push(b),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read", &p)(e)),
            }
        }
        Ok(out)
    }

    /// All repository names, sorted.
    pub fn catalog(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let base = self.root.join("repositories");
        walk_repos(&base, String::new(), &mut out, 0)?;
        out.sort();
        Ok(out)
    }

    /// Removes leftovers of interrupted writes older than `max_age` from `tmp/`.
    pub fn purge_tmp(&self, max_age: Duration) -> Result<usize> {
        let dir = self.root.join("tmp");
        let now = SystemTime::now();
        let mut n = 0;
        for name in read_dir_names(&dir)? {
            let p = dir.join(&name);
            let old = fs::metadata(&p)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > max_age)
                .unwrap_or(false);
            if old && fs::remove_file(&p).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn walk_repos(dir: &Path, prefix: String, out: &mut Vec<String>, depth: usize) -> Result<()> {
    // Names are at most 255 chars, so at most 128 components.
    if depth > 128 {
        return Ok(());
    }
    for name in read_dir_names(dir)? {
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let p = dir.join(&name);
        if exists(&p.join("_manifests"))? {
            out.push(full.clone());
        }
        walk_repos(&p, full, out, depth + 1)?;
    }
    Ok(())
}

/// Names in a directory; an absent directory is empty.
pub(crate) fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read dir", dir)(e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(io_err("read dir", dir))?;
        if let Ok(n) = ent.file_name().into_string() {
            out.push(n);
        }
    }
    Ok(out)
}

fn exists(p: &Path) -> Result<bool> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(io_err("stat", p)(e)),
    }
}

/// Creates `dir` and missing parents, fsyncing each parent whose entries changed.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("mkdir", dir)(e)),
    }
}

/// fsyncs a directory so renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(io_err("open", dir))?;
    f.sync_all().map_err(io_err("fsync", dir))
}

fn remove_durable(p: &Path) -> Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => {
            if let Some(parent) = p.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("remove", p)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let body = br#"{"schemaVersion":2}"#;
        let d = Digest::of(body);
        s.put_manifest(&ManifestPut {
            repo: "a/b",
            digest: &d,
            media_type: "application/vnd.oci.image.manifest.v1+json",
            body,
            tag: Some("latest"),
            subject: None,
        })
        .unwrap();
        assert_eq!(s.resolve_tag("a/b", "latest").unwrap(), Some(d.clone()));
        assert_eq!(s.list_tags("a/b").unwrap().unwrap(), vec!["latest"]);
        assert_eq!(s.catalog().unwrap(), vec!["a/b"]);
        assert!(s.list_tags("a").unwrap().is_none());
        assert!(s.delete_manifest("a/b", &d, None).unwrap());
        assert_eq!(s.resolve_tag("a/b", "latest").unwrap(), None);
        assert!(fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn gc_delete_respects_touch() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        s.put_blob_bytes(&d, b"x").unwrap();
        let before = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(s.remove_blob_if_older(&d, before).unwrap(), None);
        let cutoff = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(s.remove_blob_if_older(&d, cutoff).unwrap(), Some(1));
        assert_eq!(s.touch_blob(&d).unwrap(), None);
    }
}
