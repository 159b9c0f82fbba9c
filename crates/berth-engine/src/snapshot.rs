//! Overlay snapshotter: read-only layer snapshots keyed by chain id, plus one writable snapshot per
//! container. Like containerd's, it returns mounts as data and never mounts anything itself.
//!
//! Snapshot directories have short numeric names (`<root>/<n>/fs`, `<root>/<n>/work`) so the
//! overlay `lowerdir=` option of a deep image stays under the kernel's page-size limit. A snapshot
//! becomes visible by renaming a fully written `tmp-<n>` directory into place and then recording
//! it; directories with no record (a crash in between) are removed at open.

use crate::error::{EngineError, Result};
use crate::meta::{Meta, SNAPSHOTS};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub parent: Option<String>,
    /// Committed (read-only layer) or active (a container's writable layer).
    pub active: bool,
    /// Bytes of this layer's own content (unpacked).
    #[serde(default)]
    pub size: u64,
}

/// How to mount a container's root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    pub fstype: String,
    pub source: String,
    pub options: Vec<String>,
}

pub struct Snapshotter {
    root: PathBuf,
    meta: Arc<Meta>,
}

impl Snapshotter {
    pub fn open(root: &Path, meta: Arc<Meta>) -> Result<Self> {
        fs::create_dir_all(root)?;
        let s = Self { root: root.to_path_buf(), meta };
        s.clean_orphans()?;
        Ok(s)
    }

    fn clean_orphans(&self) -> Result<()> {
        let known: std::collections::HashSet<u64> =
            self.meta.list::<SnapshotRecord>(SNAPSHOTS)?.into_iter().map(|(_, r)| r.id).collect();
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            let orphan = match name.parse::<u64>() {
                Ok(n) => !known.contains(&n),
                Err(_) => name.starts_with("tmp-"),
            };
            if orphan {
                tracing::info!(dir = %e.path().display(), "snapshots: removing leftover");
                remove_tree(&e.path())?;
            }
        }
        // empty lower for images without layers
        fs::create_dir_all(self.root.join("empty"))?;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<SnapshotRecord>> {
        self.meta.get(SNAPSHOTS, key)
    }

    pub fn dir(&self, rec: &SnapshotRecord) -> PathBuf {
        self.root.join(rec.id.to_string())
    }

    /// The `fs` dir of a snapshot (a layer's content, or a container's upper dir).
    pub fn fs_dir(&self, key: &str) -> Result<PathBuf> {
        let rec = self.get(key)?.ok_or_else(|| EngineError::not_found(format!("snapshot {key}: not found")))?;
        Ok(self.dir(&rec).join("fs"))
    }

    /// Create a committed layer snapshot `key` on top of `parent`, filled by `fill` (which gets an
    /// empty directory and returns the content size). Idempotent: an existing key is kept.
    pub fn create_layer(
        &self,
        key: &str,
        parent: Option<&str>,
        fill: impl FnOnce(&Path) -> Result<u64>,
    ) -> Result<()> {
        if self.get(key)?.is_some() {
            return Ok(());
        }
        let id = self.meta.next_id("snapshot")?;
        let tmp = self.root.join(format!("tmp-{id}"));
        let res = (|| {
            fs::create_dir_all(tmp.join("fs"))?;
            let size = fill(&tmp.join("fs"))?;
            syncfs(&tmp)?;
            let dst = self.root.join(id.to_string());
            fs::rename(&tmp, &dst)?;
            crate::content::sync_dir(&self.root)?;
            let rec = SnapshotRecord { id, parent: parent.map(String::from), active: false, size };
            self.meta.put(SNAPSHOTS, key, &rec)
        })();
        if res.is_err() {
            let _ = remove_tree(&tmp);
        }
        res
    }

    /// Create a writable snapshot `key` on top of the committed `parent`.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        if self.get(key)?.is_some() {
            return Err(EngineError::conflict(format!("snapshot {key}: already exists")));
        }
        let id = self.meta.next_id("snapshot")?;
        let dir = self.root.join(id.to_string());
        fs::create_dir_all(dir.join("fs"))?;
        fs::create_dir_all(dir.join("work"))?;
        let rec = SnapshotRecord { id, parent: parent.map(String::from), active: true, size: 0 };
        self.meta.put(SNAPSHOTS, key, &rec)?;
        self.mounts(key)
    }

    /// Lower directories of `key`'s parent chain, topmost first.
    pub fn lowers(&self, parent: Option<&str>) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut cur = parent.map(String::from);
        while let Some(k) = cur {
            let rec = self.get(&k)?.ok_or_else(|| EngineError::not_found(format!("snapshot {k}: not found")))?;
            out.push(self.dir(&rec).join("fs"));
            cur = rec.parent;
            if out.len() > 500 {
                return Err(EngineError::invalid("snapshot chain too deep"));
            }
        }
        Ok(out)
    }

    /// The overlay mount of an active snapshot.
    pub fn mounts(&self, key: &str) -> Result<Mount> {
        let rec = self.get(key)?.ok_or_else(|| EngineError::not_found(format!("snapshot {key}: not found")))?;
        let mut lowers = self.lowers(rec.parent.as_deref())?;
        if lowers.is_empty() {
            lowers.push(self.root.join("empty"));
        }
        let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let dir = self.dir(&rec);
        Ok(Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={lower}"),
                format!("upperdir={}", dir.join("fs").display()),
                format!("workdir={}", dir.join("work").display()),
                "index=off".into(),
            ],
        })
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let Some(rec) = self.get(key)? else { return Ok(()) };
        let dir = self.dir(&rec);
        self.meta.delete(SNAPSHOTS, key)?;
        remove_tree(&dir)
    }

    pub fn list(&self) -> Result<Vec<(String, SnapshotRecord)>> {
        self.meta.list(SNAPSHOTS)
    }
}

/// Remove a directory tree, tolerating overlay whiteouts and read-only modes.
pub fn remove_tree(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::internal(format!("remove {}: {e}", p.display()))),
    }
}

fn syncfs(p: &Path) -> Result<()> {
    let f = fs::File::open(p)?;
    nix::unistd::syncfs(&f).map_err(|e| EngineError::internal(format!("syncfs {}: {e}", p.display())))
}

/// Size in bytes of the regular files under a directory (no symlink following, hardlinks once).
pub fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() && (md.nlink() <= 1 || seen.insert((md.dev(), md.ino()))) {
                total += md.len();
            }
        }
    }
    total
}
