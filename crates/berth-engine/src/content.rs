//! Content store: immutable blobs addressed by sha256, under `<root>/blobs/sha256/<hex>`.
//!
//! Writes go to `<root>/ingest/<random>` while being hashed, and become visible only after the
//! digest (and size, when known) is verified: write → fsync(file) → rename → fsync(dir). A crash
//! leaves at most a stray ingest file, removed by [`ContentStore::open`].

use crate::digest::Digest;
use crate::error::{EngineError, Result};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Blobs larger than this are never read into memory whole (manifests, configs).
pub const MAX_SMALL_BLOB: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Open (creating) the store at `root`, removing leftover ingest files from a crash.
    pub fn open(root: &Path) -> Result<Self> {
        create_dir_durable(&root.join("blobs/sha256"))?;
        let ingest = root.join("ingest");
        let _ = fs::remove_dir_all(&ingest);
        fs::create_dir_all(&ingest)?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    pub fn size(&self, d: &Digest) -> Result<u64> {
        Ok(fs::metadata(self.path(d)).map_err(|e| blob_err(d, e))?.len())
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.path(d)).map_err(|e| blob_err(d, e))
    }

    /// Read a small blob (manifest, config) whole; refuses blobs over [`MAX_SMALL_BLOB`].
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let f = self.open_blob(d)?;
        let len = f.metadata()?.len();
        if len > MAX_SMALL_BLOB {
            return Err(EngineError::invalid(format!("blob {d} is too large ({len} bytes)")));
        }
        let mut v = Vec::with_capacity(len as usize);
        f.take(MAX_SMALL_BLOB + 1).read_to_end(&mut v)?;
        Ok(v)
    }

    /// Store bytes, returning their digest. Idempotent.
    pub fn write(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        if self.exists(&d) {
            return Ok(d);
        }
        let mut w = self.writer()?;
        w.write_all(bytes)?;
        w.commit(Some(&d))
    }

    /// A writer for a new blob; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self) -> Result<BlobWriter> {
        let name = format!("{:016x}", rand::random::<u64>());
        let path = self.root.join("ingest").join(name);
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(256 << 10, file)),
            path,
            hasher: Sha256::new(),
            size: 0,
            store: self.clone(),
        })
    }

    pub fn delete(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.path(d)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            if let Some(name) = e.file_name().to_str() {
                if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

fn blob_err(d: &Digest, e: io::Error) -> EngineError {
    if e.kind() == io::ErrorKind::NotFound {
        EngineError::not_found(format!("content {d}: not found"))
    } else {
        EngineError::internal(format!("content {d}: {e}"))
    }
}

/// An in-progress blob: hashes while written.
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    store: ContentStore,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("blob writer closed"))?;
        // name the file: a full disk must say where (HARDENING B6)
        let n = f.write(buf).map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", self.path.display())))?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush().map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", self.path.display()))),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verify (when `expected` is given) and make the blob visible.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest> {
        let d = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(exp) = expected {
            if exp != &d {
                return Err(EngineError::invalid(format!("digest mismatch: expected {exp}, got {d}")));
            }
        }
        let f = self.file.take().ok_or_else(|| EngineError::internal("blob writer closed"))?;
        let f = f.into_inner().map_err(|e| EngineError::internal(format!("write {}: {}", self.path.display(), e.error())))?;
        f.sync_all().map_err(|e| EngineError::internal(format!("sync {}: {e}", self.path.display())))?;
        drop(f);
        crate::fault::point("content.commit");
        let dst = self.store.path(&d);
        fs::rename(&self.path, &dst)?;
        crate::fault::point("content.committed");
        sync_dir(dst.parent().unwrap_or(Path::new("/")))?;
        Ok(d)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsync a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// `create_dir_all` whose new directories survive a power cut: each one created is made
/// durable by an fsync of its parent (a store's directories must exist before any record
/// that relies on them is committed).
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| crate::error::EngineError::from(e).context(dir.display()))?;
    for d in missing.iter().rev() {
        sync_dir(d.parent().unwrap_or(Path::new("/")))?;
    }
    Ok(())
}

/// Replace a small file atomically but without flushing it (temp → rename): for files that are
/// regenerated whenever they are needed (a container's hosts, hostname and resolv.conf, written
/// at each start), where losing the newest version to a power cut costs nothing.
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        rand::random::<u32>()
    ));
    fs::write(&tmp, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e.into());
    }
    Ok(())
}

/// Write a small file atomically (temp → fsync → rename → fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp{:08x}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        rand::random::<u32>()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn write_read_verify() {
        let t = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(t.path()).unwrap();
        let d = cs.write(b"hello").unwrap();
        assert_eq!(cs.read(&d).unwrap(), b"hello");
        let mut w = cs.writer().unwrap();
        w.write_all(b"other").unwrap();
        assert!(w.commit(Some(&d)).is_err());
        assert_eq!(fs::read_dir(t.path().join("ingest")).unwrap().count(), 0);
        assert_eq!(cs.list().unwrap(), vec![d]);
    }
}
