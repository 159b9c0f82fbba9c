//! The durable build cache: step key → what the step produced.
//!
//! Records live under `<data-root>/build-cache/records/<key>.json`, one small JSON file each,
//! written atomically (temp file, fsync, rename), so a crash leaves either the old state or
//! the new one and a restarted daemon sees every completed step. A record is only *used* when
//! the layer it names is still present (snapshot and blob), so image GC never makes the cache
//! lie: a record whose layer was collected is a miss and gets rewritten.
//!
//! The per-file hash memo (`memo.json`) maps `(path, size, mtime, ino, ctime)` to the
//! content's sha256 so unchanged context files are not re-read; correctness comes from the
//! content hash, the stat tuple only decides whether the memo may be trusted.

use super::{BuildError, BuildErrorKind};
use crate::image::{layer_key, LayerRecord};
use crate::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What one cached step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The layer the step added, `None` for steps with an empty diff or metadata only.
    pub layer: Option<LayerRecord>,
    /// History `created` timestamp of the first run (reused so cached rebuilds give the same
    /// image id).
    pub created: String,
    /// Human description of the step (`RUN make`), for `system df -v` / prune output.
    #[serde(default)]
    pub description: String,
    /// When the record was last used (RFC 3339).
    #[serde(default)]
    pub last_used: String,
}

/// One entry of the file hash memo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemoEntry {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub hash: String,
}

/// The cache directory of one engine.
pub struct BuildCache {
    root: PathBuf,
}

impl BuildCache {
    /// Opens (creating) `<data-root>/build-cache`.
    pub fn open(data_root: &Path) -> Result<Self, BuildError> {
        let root = data_root.join("build-cache");
        std::fs::create_dir_all(root.join("records")).map_err(|e| io_err("create build cache", e))?;
        Ok(Self { root })
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.root.join("records").join(format!("{key}.json"))
    }

    /// The record for `key` if present and its layer still exists in `eng`.
    pub fn get(&self, eng: &Engine, key: &str) -> Option<CacheRecord> {
        let bytes = std::fs::read(self.record_path(key)).ok()?;
        let rec: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        if let Some(l) = &rec.layer {
            let snap = eng.snapshots.get(&layer_key(&l.chain_id)).ok().flatten();
            if snap.is_none() || !eng.content.exists(&l.blob) {
                return None;
            }
        }
        Some(rec)
    }

    /// Stores `rec` under `key` atomically.
    pub fn put(&self, key: &str, rec: &CacheRecord) -> Result<(), BuildError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| BuildError::new(BuildErrorKind::Internal, e.to_string()))?;
        crate::content::write_atomic(&self.record_path(key), &bytes)
            .map_err(|e| BuildError::new(BuildErrorKind::Internal, format!("write build cache record: {e}")))
    }

    /// Every record with its key.
    pub fn list(&self) -> Vec<(String, CacheRecord)> {
        let Ok(rd) = std::fs::read_dir(self.root.join("records")) else { return Vec::new() };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(key) = name.strip_suffix(".json") else { continue };
            if let Ok(bytes) = std::fs::read(e.path()) {
                if let Ok(rec) = serde_json::from_slice::<CacheRecord>(&bytes) {
                    out.push((key.to_string(), rec));
                }
            }
        }
        out
    }

    /// Removes every record and the memo; returns how many records were removed.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        if let Ok(rd) = std::fs::read_dir(self.root.join("records")) {
            for e in rd.flatten() {
                if std::fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        let _ = std::fs::remove_file(self.root.join("memo.json"));
        n
    }

    /// Loads the file hash memo (empty when missing or unreadable).
    pub fn load_memo(&self) -> HashMap<String, MemoEntry> {
        std::fs::read(self.root.join("memo.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the memo (atomically; losing it only costs re-reading files).
    pub fn save_memo(&self, memo: &HashMap<String, MemoEntry>) {
        if let Ok(bytes) = serde_json::to_vec(memo) {
            let tmp = self.root.join(format!(".memo.{}.tmp", std::process::id()));
            if std::fs::write(&tmp, &bytes).is_ok() {
                let _ = std::fs::rename(&tmp, self.root.join("memo.json"));
            }
        }
    }
}

fn io_err(what: &str, e: std::io::Error) -> BuildError {
    BuildError::new(BuildErrorKind::Internal, format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_memo_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = BuildCache::open(dir.path()).expect("open");
        let rec = CacheRecord { layer: None, created: "2026-01-01T00:00:00Z".into(), description: "ENV A=1".into(), last_used: String::new() };
        c.put("k1", &rec).expect("put");
        c.put("k2", &rec).expect("put");
        let mut keys: Vec<String> = c.list().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, vec!["k1", "k2"]);
        let mut memo = HashMap::new();
        memo.insert("a".to_string(), MemoEntry { size: 1, mtime_ns: 2, ctime_ns: 3, ino: 4, hash: "h".into() });
        c.save_memo(&memo);
        assert_eq!(c.load_memo(), memo);
        // records survive reopening (a daemon restart)
        let c2 = BuildCache::open(dir.path()).expect("reopen");
        assert_eq!(c2.list().len(), 2);
        assert_eq!(c2.clear(), 2);
        assert!(c2.list().is_empty() && c2.load_memo().is_empty());
    }
}
