//! Resumable ingests: a partial download of a blob, keyed by its expected digest, under
//! `<data-root>/distribution/ingest/<hex>`.
//!
//! The file only ever holds a prefix of the blob (bytes are appended in order), so its length
//! is the offset to resume from with `Range: bytes=<len>-`. On [`Ingest::commit`] the whole
//! file's digest and size are checked and the file is renamed into the content store
//! (fsync → rename → fsync dir); a mismatch deletes it. Ingests untouched for a day are
//! removed by [`expire`]. One process owns a data root, and pulls in it take a per-blob lock
//! before opening an ingest, so there is one writer per file.

use super::{DistributionError, Result};
use crate::content::{sync_dir, ContentStore};
use crate::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Partial ingests older than this are removed.
pub const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Ingests open in this process. Expiry compares file mtimes with the wall clock, which
/// jumps (NTP steps, HARDENING B22): a file being written must never be taken for stale,
/// whatever the clock says, so expiry skips these.
static OPEN: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn in_use(p: &Path) -> bool {
    OPEN.lock().map(|v| v.iter().any(|x| x == p)).unwrap_or(true)
}

pub struct Ingest {
    path: PathBuf,
    file: io::BufWriter<File>,
    hasher: Sha256,
    len: u64,
    expected: Digest,
}

impl Ingest {
    /// Open (creating) the ingest for `expected` under `dir`. Returns the ingest with its
    /// existing prefix already hashed, and a reader over that prefix (for replay into an
    /// unpacker). A prefix longer than `size` is discarded.
    pub fn open(dir: &Path, expected: &Digest, size: u64) -> Result<(Self, File)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(expected.hex());
        let f = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut len = f.metadata()?.len();
        if len > size {
            f.set_len(0)?;
            len = 0;
        }
        let mut hasher = Sha256::new();
        let mut replay = File::open(&path)?;
        if len > 0 {
            let mut buf = vec![0u8; 256 << 10];
            let mut left = len;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = replay.read(&mut buf[..want])?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            replay.rewind()?;
        }
        if let Ok(mut v) = OPEN.lock() {
            v.push(path.clone());
        }
        Ok((Self { path, file: io::BufWriter::with_capacity(256 << 10, f), hasher, len, expected: expected.clone() }, replay))
    }

    /// Bytes held so far (the resume offset).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The partial file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    /// Verify digest and size and move the blob into the content store.
    pub fn commit(mut self, store: &ContentStore, size: u64) -> Result<()> {
        self.file.flush()?;
        let got = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if self.len != size {
            let _ = fs::remove_file(&self.path);
            return Err(DistributionError::invalid(format!(
                "blob {}: size mismatch: expected {size} bytes, got {}",
                self.expected, self.len
            )));
        }
        if got != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(DistributionError::invalid(format!(
                "filesystem layer verification failed for digest {}: got {got}",
                self.expected
            )));
        }
        self.file.get_ref().sync_all()?;
        crate::fault::point("pull.blob.commit");
        let dst = store.path(&self.expected);
        fs::rename(&self.path, &dst)?;
        crate::fault::point("pull.blob.committed");
        sync_dir(dst.parent().unwrap_or(Path::new("/")))?;
        Ok(())
    }

    /// Throw the partial data away (wrong bytes).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Ok(mut v) = OPEN.lock() {
            if let Some(i) = v.iter().position(|x| *x == self.path) {
                v.swap_remove(i);
            }
        }
    }
}

/// Remove ingests not written for [`INGEST_EXPIRY`] (and stray temp files).
pub fn expire(dir: &Path) {
    remove_older_than(dir, INGEST_EXPIRY);
}

/// Remove files in `dir` not modified for `age`; returns the bytes freed.
pub fn remove_older_than(dir: &Path, age: Duration) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let mut freed = 0;
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        let old = md.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a >= age);
        if old && md.is_file() && !in_use(&e.path()) {
            tracing::info!(path = %e.path().display(), "distribution: removing stale partial download");
            if fs::remove_file(e.path()).is_ok() {
                freed += md.len();
            }
        }
    }
    freed
}

/// Remove partial downloads and push temp files older than `age` (`Duration::ZERO`: all of
/// them; only when no pull or push runs), for `system prune`/GC. Returns the bytes freed.
pub fn prune(eng: &crate::Engine, age: Duration) -> u64 {
    let s = super::state_dir(eng);
    remove_older_than(&s.join("ingest"), age) + remove_older_than(&s.join("tmp"), age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_and_verify() {
        let t = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&t.path().join("content")).unwrap();
        let dir = t.path().join("ingest");
        let data = b"hello resumable world".to_vec();
        let d = Digest::of(&data);
        let (mut ing, _) = Ingest::open(&dir, &d, data.len() as u64).unwrap();
        ing.append(&data[..5]).unwrap();
        drop(ing); // a crash after 5 bytes
        let (mut ing, mut replay) = Ingest::open(&dir, &d, data.len() as u64).unwrap();
        assert_eq!(ing.len(), 5);
        let mut prefix = Vec::new();
        replay.read_to_end(&mut prefix).unwrap();
        assert_eq!(prefix, b"hello");
        ing.append(&data[5..]).unwrap();
        ing.commit(&store, data.len() as u64).unwrap();
        assert_eq!(store.read(&d).unwrap(), data);
        assert!(!dir.join(d.hex()).exists());
    }

    #[test]
    fn wrong_bytes_are_discarded() {
        let t = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&t.path().join("content")).unwrap();
        let dir = t.path().join("ingest");
        let d = Digest::of(b"right");
        let (mut ing, _) = Ingest::open(&dir, &d, 5).unwrap();
        ing.append(b"wrong").unwrap();
        assert!(ing.commit(&store, 5).is_err());
        assert!(!store.exists(&d));
        assert!(!dir.join(d.hex()).exists());
        // too long a prefix is dropped on open
        fs::write(dir.join(d.hex()), b"toolongprefix").unwrap();
        let (ing, _) = Ingest::open(&dir, &d, 5).unwrap();
        assert_eq!(ing.len(), 0);
    }
}
