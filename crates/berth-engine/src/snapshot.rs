//! Overlay snapshotter: read-only layer snapshots keyed by chain id, plus one writable snapshot per
//! container. Like containerd's, it returns mounts as data and never mounts anything itself.
//!
//! Snapshot directories have short numeric names (`<root>/<n>/fs`, `<root>/<n>/work`) so the
//! overlay `lowerdir=` option of a deep image stays under the kernel's page-size limit. A snapshot
//! becomes visible by renaming a fully written `tmp-<n>` directory into place and then recording
//! it; directories with no record (a crash in between) are removed at open.

use crate::error::{EngineError, Result};
use crate::meta::{Batch, Meta, COUNTERS, SNAPSHOTS};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Next snapshot id. Ids are handed out in memory and the high-water mark is stored with
    /// each snapshot record (one commit per snapshot, not two); an id given out but never
    /// recorded belongs to a directory that `clean_orphans` removes, so it may come again.
    next: AtomicU64,
}

impl Snapshotter {
    pub fn open(root: &Path, meta: Arc<Meta>) -> Result<Self> {
        crate::content::create_dir_durable(root)?;
        let mut top = meta.get::<u64>(COUNTERS, "snapshot")?.unwrap_or(0);
        for (_, r) in meta.list::<SnapshotRecord>(SNAPSHOTS)? {
            top = top.max(r.id);
        }
        let s = Self { root: root.to_path_buf(), meta, next: AtomicU64::new(top + 1) };
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
        // A container's writable layer is created without a flush (see `write_active`): after a
        // power cut its record can outlive its empty directories. What it held was never synced
        // either, so making them again loses nothing (HARDENING B5).
        for (key, r) in self.meta.list::<SnapshotRecord>(SNAPSHOTS)? {
            let dir = self.dir(&r);
            if r.active && !(dir.join("fs").is_dir() && dir.join("work").is_dir()) {
                tracing::info!(snapshot = %key, "snapshots: recreating the directories of a writable layer lost to a power cut");
                fs::create_dir_all(dir.join("fs"))?;
                fs::create_dir_all(dir.join("work"))?;
            }
        }
        Ok(())
    }

    fn alloc_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Stage `rec` under `key` (and the id high-water mark) in `b`.
    fn record(&self, b: &mut Batch<'_>, key: &str, rec: &SnapshotRecord) -> Result<()> {
        let top = b.get::<u64>(COUNTERS, "snapshot")?.unwrap_or(0);
        if rec.id > top {
            b.put(COUNTERS, "snapshot", &rec.id)?;
        }
        b.put(SNAPSHOTS, key, rec)
    }

    /// Write a committed layer's directory (`tmp-<id>` renamed into place) without recording it.
    /// `flush: false` is for layers that hold only metadata (empty files and directories, such
    /// as a container's init layer): no `syncfs`, which costs tens of milliseconds on a busy
    /// disk. Directory entries are journaled in order on the filesystems berth supports, and the
    /// snapshot record's commit flushes the journal, so a power cut still leaves the layer
    /// complete or absent.
    fn write_layer(&self, flush: bool, fill: impl FnOnce(&Path) -> Result<u64>) -> Result<(u64, u64)> {
        let id = self.alloc_id();
        let tmp = self.root.join(format!("tmp-{id}"));
        let res = (|| {
            fs::create_dir_all(tmp.join("fs"))?;
            let size = fill(&tmp.join("fs"))?;
            if flush {
                syncfs(&tmp)?;
            }
            crate::fault::point("snapshot.layer.filled");
            fs::rename(&tmp, self.root.join(id.to_string()))?;
            if flush {
                crate::content::sync_dir(&self.root)?;
            }
            crate::fault::point("snapshot.layer.renamed");
            Ok((id, size))
        })();
        if res.is_err() {
            let _ = remove_tree(&tmp);
        }
        // a full disk must say where (HARDENING B6)
        res.map_err(|e: EngineError| {
            if e.message().contains("os error 28") && !e.message().contains(&self.root.display().to_string()) {
                EngineError::new(e.kind(), format!("unpack into {}: {}", tmp.display(), e.message()))
            } else {
                e
            }
        })
    }

    /// Create the writable layer directories of a new active snapshot, without recording it.
    /// Not flushed: [`Self::open`] makes them again if a power cut lost them.
    fn write_active(&self) -> Result<u64> {
        let id = self.alloc_id();
        let dir = self.root.join(id.to_string());
        let res = fs::create_dir_all(dir.join("fs")).and_then(|_| fs::create_dir_all(dir.join("work")));
        if let Err(e) = res {
            let _ = remove_tree(&dir);
            return Err(e.into());
        }
        crate::fault::point("snapshot.prepare.dirs");
        Ok(id)
    }

    /// A container's two snapshots in one commit: the init layer `init_key` (mount points
    /// only, written by `fill`, not flushed; see [`Self::write_layer`]) on `parent`, and
    /// the writable layer `key` on top of it.
    pub fn prepare_with_init(
        &self,
        key: &str,
        init_key: &str,
        parent: Option<&str>,
        fill: impl FnOnce(&Path) -> Result<u64>,
    ) -> Result<()> {
        if self.get(key)?.is_some() || self.get(init_key)?.is_some() {
            return Err(EngineError::conflict(format!("snapshot {key}: already exists")));
        }
        let (init_id, size) = self.write_layer(false, fill)?;
        let res = (|| {
            let rw_id = self.write_active()?;
            let res = (|| {
                let mut b = self.meta.batch()?;
                let init = SnapshotRecord { id: init_id, parent: parent.map(String::from), active: false, size };
                self.record(&mut b, init_key, &init)?;
                let rw = SnapshotRecord { id: rw_id, parent: Some(init_key.to_string()), active: true, size: 0 };
                self.record(&mut b, key, &rw)?;
                b.commit()
            })();
            if res.is_err() {
                let _ = remove_tree(&self.root.join(rw_id.to_string()));
            }
            res
        })();
        if res.is_err() {
            let _ = remove_tree(&self.root.join(init_id.to_string()));
        }
        res
    }

    /// Stage the removal of snapshot `key` in `b`; returns the directory to delete once `b` is
    /// committed (a crash in between leaves an unrecorded directory, removed at the next open).
    pub fn remove_in(&self, b: &mut Batch<'_>, key: &str) -> Result<Option<PathBuf>> {
        let Some(rec) = b.get::<SnapshotRecord>(SNAPSHOTS, key)? else { return Ok(None) };
        b.delete(SNAPSHOTS, key)?;
        Ok(Some(self.dir(&rec)))
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
        let (id, size) = self.write_layer(true, fill)?;
        let res = (|| {
            let mut b = self.meta.batch()?;
            let rec = SnapshotRecord { id, parent: parent.map(String::from), active: false, size };
            self.record(&mut b, key, &rec)?;
            b.commit()
        })();
        if res.is_err() {
            let _ = remove_tree(&self.root.join(id.to_string()));
        }
        res
    }

    /// Create a writable snapshot `key` on top of the committed `parent`.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Mount> {
        if self.get(key)?.is_some() {
            return Err(EngineError::conflict(format!("snapshot {key}: already exists")));
        }
        let id = self.write_active()?;
        let res = (|| {
            let mut b = self.meta.batch()?;
            let rec = SnapshotRecord { id, parent: parent.map(String::from), active: true, size: 0 };
            self.record(&mut b, key, &rec)?;
            b.commit()
        })();
        if let Err(e) = res {
            let _ = remove_tree(&self.root.join(id.to_string()));
            return Err(e);
        }
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
        crate::fault::point("snapshot.remove.unrecorded");
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
