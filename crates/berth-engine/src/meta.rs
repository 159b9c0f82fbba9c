//! Metadata: one redb database (`meta.redb`) holding every named object as JSON.
//!
//! ```text
//! images      image id (sha256:…)      -> ImageRecord
//! tags        full reference string    -> image id
//! containers  container id             -> ContainerRecord
//! names       container name           -> container id
//! snapshots   snapshot key             -> SnapshotRecord
//! volumes     volume name              -> VolumeRecord
//! networks    network id               -> NetworkRecord
//! counters    name                     -> u64 (snapshot ids)
//! ```
//! Values are JSON so the schema can grow without migrations; everything derived from disk
//! (blobs, snapshot dirs) can be rebuilt from it and vice versa.
//!
//! Every committed put/delete is mirrored, after the commit, to a small state file in
//! `meta.d/<table>/<sha256(key)>.json` (`{"k": key, "v": value}`), the way Docker keeps
//! `config.v2.json` per container next to its stores. The mirror is not synced and is never
//! read while the database is healthy. When the database fails its integrity check at open
//! (a torn or corrupted page: HARDENING B4), the file is kept aside as
//! `meta.redb.corrupt-<unix time>`, a fresh database is filled from the mirror, and the
//! startup recovery that follows reconciles it with what is on disk. A crash between a
//! commit and its mirror write leaves the mirror one operation behind: it matters only for a
//! rebuild, and the reconciliation removes what the records no longer explain.

use crate::error::Result;
use redb::{Database, ReadableTable, TableDefinition, TableHandle};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

pub type Table = TableDefinition<'static, &'static str, &'static [u8]>;

pub const IMAGES: Table = TableDefinition::new("images");
pub const TAGS: Table = TableDefinition::new("tags");
pub const CONTAINERS: Table = TableDefinition::new("containers");
pub const NAMES: Table = TableDefinition::new("names");
pub const SNAPSHOTS: Table = TableDefinition::new("snapshots");
pub const VOLUMES: Table = TableDefinition::new("volumes");
pub const NETWORKS: Table = TableDefinition::new("networks");
pub const COUNTERS: Table = TableDefinition::new("counters");

static ALL: [Table; 8] = [IMAGES, TAGS, CONTAINERS, NAMES, SNAPSHOTS, VOLUMES, NETWORKS, COUNTERS];

pub struct Meta {
    /// `None` only between a failed reopen and the next attempt.
    db: std::sync::RwLock<Option<Database>>,
    path: std::path::PathBuf,
    mirror: Mirror,
}

/// One write transaction: several puts/deletes that commit together or not at all.
pub struct Batch<'a> {
    tx: redb::WriteTransaction,
    /// (table, key, new value or `None` for a delete), mirrored after the commit.
    ops: Vec<(&'static str, String, Option<Vec<u8>>)>,
    mirror: &'a Mirror,
}

/// What [`Meta::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenState {
    /// The database passed its integrity check.
    Healthy,
    /// It did not (the reason): it was moved to `kept` and rebuilt from the mirror with
    /// `records` records.
    Rebuilt { reason: String, kept: std::path::PathBuf, records: usize },
}

impl Meta {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::open_checked(path)?.0)
    }

    /// Open (creating if needed), check the database's integrity and, if it fails, rebuild
    /// it from the state-file mirror (see the module docs).
    pub fn open_checked(path: &Path) -> Result<(Self, OpenState)> {
        let mirror = Mirror { dir: path.with_extension("d"), lock: std::sync::Mutex::new(()) };
        let new_file = !path.exists();
        // a database file that is missing or empty while complete state files exist was lost
        // (truncated by a crash, or deleted): rebuild it like a corrupt one
        let lost = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true) && mirror.complete();
        let verified = if lost {
            if path.exists() {
                Err(Corrupt("the database file is empty".into()))
            } else {
                std::fs::write(path, b"").map_err(|e| io_err(path, e))?;
                Err(Corrupt("the database file is missing".into()))
            }
        } else {
            open_verified(path)?
        };
        let (db, state) = match verified {
            Ok(db) => {
                // the mirror is written after commits without syncing: bring it level with
                // the database (a crash or power loss may have left it behind)
                mirror.dump(&db)?;
                (db, OpenState::Healthy)
            }
            Err(Corrupt(reason)) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let kept = path.with_extension(format!("redb.corrupt-{stamp}"));
                tracing::error!(path = %path.display(), kept = %kept.display(),
                    "metadata: the database is corrupt ({reason}); rebuilding it from {}", mirror.dir.display());
                std::fs::rename(path, &kept).map_err(|e| io_err(path, e))?;
                let db = Database::create(path)?;
                let records = mirror.restore(&db)?;
                if !mirror.complete() {
                    tracing::warn!("metadata: the state files were incomplete (a failed write, or an older berth); records may be missing");
                }
                mirror.dump(&db)?;
                (db, OpenState::Rebuilt { reason, kept, records })
            }
        };
        let tx = db.begin_write()?;
        for t in ALL.iter() {
            tx.open_table(*t)?;
        }
        tx.commit()?;
        if new_file {
            // the new file's name must survive a power cut before any commit is acknowledged
            crate::content::sync_dir(path.parent().unwrap_or(Path::new("/")))?;
        }
        Ok((Self { db: std::sync::RwLock::new(Some(db)), path: path.to_path_buf(), mirror }, state))
    }

    /// Run `f` on the database. After an I/O error (ENOSPC while committing) redb refuses
    /// every later transaction until the file is reopened: reopen it once and retry, so a
    /// full disk costs the writes that hit it, not the daemon (HARDENING B6).
    fn with_db<T>(&self, f: impl Fn(&Database) -> Result<T>) -> Result<T> {
        for attempt in 0..2 {
            {
                let g = self.db.read().map_err(|_| crate::error::EngineError::internal("metadata: lock poisoned"))?;
                if let Some(db) = g.as_ref() {
                    match f(db) {
                        Err(e) if attempt == 0 && e.message().contains("Previous I/O error") => {}
                        r => return r,
                    }
                }
            }
            let mut g = self.db.write().map_err(|_| crate::error::EngineError::internal("metadata: lock poisoned"))?;
            tracing::warn!(path = %self.path.display(), "metadata: reopening the database after an I/O error");
            *g = None;
            *g = Some(Database::create(&self.path)?);
        }
        Err(crate::error::EngineError::internal("metadata: database unavailable"))
    }

    /// Keep a few MiB next to the database for its own commits: when the disk is (nearly)
    /// full the reserve file is given back before a write transaction, so removing a
    /// container or image to make room still works (moby#12195); it is made again once
    /// there is plenty of space (HARDENING B6).
    fn keep_reserve(&self) {
        const RESERVE: u64 = 4 << 20;
        let reserve = self.path.with_extension("reserve");
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let Ok(st) = nix::sys::statvfs::statvfs(dir) else { return };
        let free = st.blocks_available() as u64 * st.fragment_size() as u64;
        if free < RESERVE {
            if std::fs::remove_file(&reserve).is_ok() {
                tracing::warn!(path = %dir.display(), "metadata: disk almost full, releasing the reserve");
            }
        } else if free > 4 * RESERVE && !reserve.exists() {
            let res = std::fs::write(&reserve, vec![0u8; RESERVE as usize]);
            if res.is_err() {
                let _ = std::fs::remove_file(&reserve);
            }
        }
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.with_db(|db| Ok(db.begin_read()?))
    }

    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let tx = self.begin_read()?;
        let t = tx.open_table(table)?;
        match t.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let tx = self.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            match serde_json::from_slice(v.value()) {
                Ok(val) => out.push((k.value().to_string(), val)),
                Err(e) => tracing::warn!(key = k.value(), "metadata: skipping unreadable record: {e}"),
            }
        }
        Ok(out)
    }

    pub fn put<T: Serialize>(&self, table: Table, key: &str, val: &T) -> Result<()> {
        let mut b = self.batch()?;
        b.put(table, key, val)?;
        b.commit()
    }

    pub fn delete(&self, table: Table, key: &str) -> Result<()> {
        let mut b = self.batch()?;
        b.delete(table, key)?;
        b.commit()
    }

    pub fn batch(&self) -> Result<Batch<'_>> {
        self.keep_reserve();
        Ok(Batch { tx: self.with_db(|db| Ok(db.begin_write()?))?, ops: Vec::new(), mirror: &self.mirror })
    }
}

fn io_err(p: &Path, e: std::io::Error) -> crate::error::EngineError {
    crate::error::EngineError::from(e).context(p.display())
}

/// A database that cannot be trusted, and why.
struct Corrupt(String);

/// Open `path` and run redb's integrity check (checksums of every page). The inner `Err` is
/// corruption; any other error (permissions, I/O, a lock held by another process) is the
/// outer one and is returned as is.
fn open_verified(path: &Path) -> Result<std::result::Result<Database, Corrupt>> {
    use redb::{DatabaseError, StorageError};
    let path_owned = path.to_path_buf();
    let res = std::panic::catch_unwind(move || -> std::result::Result<Database, DatabaseError> {
        let mut db = Database::create(&path_owned)?;
        if !db.check_integrity()? {
            return Err(DatabaseError::Storage(StorageError::Corrupted(
                "integrity check failed (repaired to an older state)".into(),
            )));
        }
        Ok(db)
    });
    match res {
        Ok(Ok(db)) => Ok(Ok(db)),
        Ok(Err(DatabaseError::Storage(StorageError::Corrupted(m)))) => Ok(Err(Corrupt(m))),
        Ok(Err(DatabaseError::Storage(StorageError::Io(io))))
            if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) =>
        {
            Ok(Err(Corrupt(format!("not a valid database file: {io}"))))
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Ok(Err(Corrupt("the database library panicked while reading it".into()))),
    }
}

/// The state-file mirror of every table (see the module docs).
struct Mirror {
    dir: std::path::PathBuf,
    /// Held across a commit and its mirror writes, so two commits of one key are mirrored in
    /// commit order.
    lock: std::sync::Mutex<()>,
}

impl Mirror {
    const COMPLETE: &'static str = ".complete";

    fn complete(&self) -> bool {
        self.dir.join(Self::COMPLETE).exists()
    }

    fn file(&self, table: &str, key: &str) -> std::path::PathBuf {
        use sha2::Digest as _;
        self.dir.join(table).join(format!("{}.json", hex::encode(sha2::Sha256::digest(key.as_bytes()))))
    }

    fn body(key: &str, val: &[u8]) -> Result<Vec<u8>> {
        let mut body = Vec::with_capacity(val.len() + key.len() + 16);
        body.extend_from_slice(b"{\"k\":");
        serde_json::to_writer(&mut body, key)?;
        body.extend_from_slice(b",\"v\":");
        body.extend_from_slice(val);
        body.push(b'}');
        Ok(body)
    }

    fn write(&self, table: &str, key: &str, val: Option<&[u8]>) -> std::io::Result<()> {
        let f = self.file(table, key);
        match val {
            None => match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Some(v) => {
                let body = Self::body(key, v).map_err(std::io::Error::other)?;
                let tmp = f.with_extension("tmp");
                let res = std::fs::write(&tmp, &body).or_else(|e| {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e);
                    }
                    std::fs::create_dir_all(f.parent().unwrap_or(&self.dir))?;
                    std::fs::write(&tmp, &body)
                });
                res.and_then(|()| std::fs::rename(&tmp, &f)).inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
            }
        }
    }

    /// Mirror committed operations; a failure (a full disk) marks the mirror incomplete so the
    /// next open writes it again from the database.
    fn apply(&self, ops: &[(&'static str, String, Option<Vec<u8>>)]) {
        for (table, key, val) in ops {
            if let Err(e) = self.write(table, key, val.as_deref()) {
                tracing::warn!(table, key, "metadata: state file not written ({e}); it is rewritten at the next start");
                let _ = std::fs::remove_file(self.dir.join(Self::COMPLETE));
                return;
            }
        }
    }

    /// Make the mirror equal to a healthy database (first start with a mirror, or after a
    /// crash or a failed mirror write): files that differ are rewritten, extra ones removed;
    /// then the mirror is marked complete. Reads are cheap next to writes, so an up-to-date
    /// mirror costs one read of each file at start.
    fn dump(&self, db: &Database) -> Result<()> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mark = self.dir.join(Self::COMPLETE);
        let tx = db.begin_read()?;
        let (mut written, mut removed) = (0usize, 0usize);
        for t in ALL.iter() {
            let dir = self.dir.join(t.name());
            std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
            let mut want = std::collections::HashMap::new();
            match tx.open_table(*t) {
                Ok(table) => {
                    for item in table.iter()? {
                        let (k, v) = item?;
                        want.insert(self.file(t.name(), k.value()), (k.value().to_string(), v.value().to_vec()));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(e.into()),
            }
            for e in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
                let p = e.path();
                match want.get(&p) {
                    Some((k, v)) if std::fs::read(&p).ok().as_deref() == Some(&Self::body(k, v)?[..]) => {
                        want.remove(&p);
                    }
                    Some(_) => {}
                    None => {
                        let _ = std::fs::remove_file(&p);
                        removed += 1;
                    }
                }
            }
            for (k, v) in want.values() {
                self.write(t.name(), k, Some(v)).map_err(|e| io_err(&dir, e))?;
                written += 1;
            }
        }
        if written + removed > 0 {
            tracing::info!(written, removed, "metadata: state files brought level with the database");
        }
        if !mark.exists() {
            std::fs::write(&mark, b"").map_err(|e| io_err(&mark, e))?;
        }
        Ok(())
    }

    /// Fill a fresh database from the mirror; returns how many records it restored.
    fn restore(&self, db: &Database) -> Result<usize> {
        #[derive(serde::Deserialize)]
        struct Entry {
            k: String,
            v: serde_json::Value,
        }
        let tx = db.begin_write()?;
        let mut n = 0;
        for t in ALL {
            let mut table = tx.open_table(t)?;
            let Ok(rd) = std::fs::read_dir(self.dir.join(t.name())) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|x| x.to_str()) != Some("json") {
                    continue;
                }
                let entry = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
                match entry {
                    Some(entry) => {
                        table.insert(entry.k.as_str(), serde_json::to_vec(&entry.v)?.as_slice())?;
                        n += 1;
                    }
                    None => tracing::warn!(file = %p.display(), "metadata: skipping an unreadable state file"),
                }
            }
        }
        tx.commit()?;
        Ok(n)
    }
}

impl Batch<'_> {
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, val: &T) -> Result<()> {
        let bytes = serde_json::to_vec(val)?;
        let mut t = self.tx.open_table(table)?;
        t.insert(key, bytes.as_slice())?;
        self.ops.push((table_name(table), key.to_string(), Some(bytes)));
        Ok(())
    }
    pub fn get<T: DeserializeOwned>(&mut self, table: Table, key: &str) -> Result<Option<T>> {
        let t = self.tx.open_table(table)?;
        let v = t.get(key)?;
        match v {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }
    pub fn delete(&mut self, table: Table, key: &str) -> Result<()> {
        let mut t = self.tx.open_table(table)?;
        t.remove(key)?;
        self.ops.push((table_name(table), key.to_string(), None));
        Ok(())
    }
    pub fn commit(self) -> Result<()> {
        let _g = self.mirror.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.tx.commit()?;
        self.mirror.apply(&self.ops);
        Ok(())
    }
}

/// The `'static` name of one of [`ALL`] (mirror directories are named after tables).
fn table_name(t: Table) -> &'static str {
    ALL.iter().find(|a| a.name() == t.name()).map(|a| a.name()).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fill(m: &Meta) {
        for i in 0..40 {
            let mut b = m.batch().unwrap();
            b.put(CONTAINERS, &format!("c{i:03}"), &serde_json::json!({"id": i, "name": format!("n{i}"), "big": "x".repeat(300)}))
                .unwrap();
            b.put(NAMES, &format!("n{i}"), &format!("c{i:03}")).unwrap();
            b.commit().unwrap();
        }
        m.put(TAGS, "docker.io/library/busybox:latest", &"sha256:1").unwrap();
        m.put(COUNTERS, "snapshots", &41u64).unwrap();
        // deletes are mirrored too
        for i in 30..40 {
            let mut b = m.batch().unwrap();
            b.delete(CONTAINERS, &format!("c{i:03}")).unwrap();
            b.delete(NAMES, &format!("n{i}")).unwrap();
            b.commit().unwrap();
        }
    }

    /// A database with [`fill`]'s records in a fresh directory, and those records.
    fn filled() -> (tempfile::TempDir, std::path::PathBuf, BTreeMap<&'static str, Vec<(String, serde_json::Value)>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let m = Meta::open(&path).unwrap();
        fill(&m);
        let want = snapshot(&m);
        drop(m);
        (dir, path, want)
    }

    fn snapshot(m: &Meta) -> BTreeMap<&'static str, Vec<(String, serde_json::Value)>> {
        ALL.iter().map(|t| (t.name(), m.list::<serde_json::Value>(*t).unwrap())).collect()
    }

    /// HARDENING B4: a corrupted page never stops the engine from starting and loses no
    /// record: for the header pages and every 7th page of the file, a copy with that page
    /// overwritten opens either healthy (the page was not in use) or rebuilt from the state
    /// files, with the same records either way.
    #[test]
    fn every_corrupted_page_opens_with_the_same_records() {
        let (dir, path, want) = filled();
        assert_eq!(want["containers"].len(), 30);
        let pristine = std::fs::read(&path).unwrap();
        let mirror = std::fs::read_dir(dir.path().join("meta.d")).unwrap().count();
        assert!(mirror >= 4, "state files written");
        const PAGE: usize = 4096;
        let (mut healthy, mut rebuilt) = (0, 0);
        let t0 = std::time::Instant::now();
        let pages = pristine.len().div_ceil(PAGE);
        // every page would take minutes on a loaded machine: the header pages and a stride
        for page in (0..pages).filter(|p| *p < 8 || p % 7 == 3) {
            let work = tempfile::tempdir().unwrap();
            let p = work.path().join("meta.redb");
            let mut bytes = pristine.clone();
            let end = ((page + 1) * PAGE).min(bytes.len());
            for (i, b) in bytes[page * PAGE..end].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(page as u8) ^ 0xa5;
            }
            std::fs::write(&p, &bytes).unwrap();
            copy_dir(&dir.path().join("meta.d"), &work.path().join("meta.d"));
            let (m, state) = Meta::open_checked(&p).unwrap_or_else(|e| panic!("page {page}: open failed: {e}"));
            match &state {
                OpenState::Healthy => healthy += 1,
                OpenState::Rebuilt { kept, records, .. } => {
                    rebuilt += 1;
                    assert!(kept.exists(), "the corrupt file is kept");
                    assert_eq!(*records, 30 + 30 + 2);
                }
            }
            assert_eq!(snapshot(&m), want, "page {page} ({state:?})");
            // and it keeps working
            if page % 5 == 0 {
                m.put(VOLUMES, "v", &serde_json::json!({"name": "v"})).unwrap();
            }
        }
        eprintln!("{pages} pages: {healthy} unused, {rebuilt} rebuilt, {:?}", t0.elapsed());
        assert!(rebuilt > 0, "some page was live ({healthy} healthy)");
    }

    #[test]
    fn garbage_header_and_truncation_rebuild() {
        let (dir, path, want) = filled();
        let len = std::fs::metadata(&path).unwrap().len();
        for cut in [u64::MAX, 0, 100, len / 2] {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.truncate(cut.min(len) as usize);
            if cut == u64::MAX {
                bytes = b"definitely not a database".to_vec();
            }
            let work = tempfile::tempdir().unwrap();
            let p = work.path().join("meta.redb");
            std::fs::write(&p, &bytes).unwrap();
            copy_dir(&dir.path().join("meta.d"), &work.path().join("meta.d"));
            let (m, state) = Meta::open_checked(&p).unwrap();
            assert!(matches!(state, OpenState::Rebuilt { .. }), "cut {cut}: {state:?}");
            assert_eq!(snapshot(&m), want, "cut {cut}");
        }
    }

    #[test]
    fn a_database_without_state_files_gets_them_at_open() {
        let (dir, path, want) = filled();
        // as written by a berth that had no mirror
        std::fs::remove_dir_all(dir.path().join("meta.d")).unwrap();
        drop(Meta::open(&path).unwrap());
        assert!(dir.path().join("meta.d/.complete").exists());
        std::fs::write(&path, b"garbage").unwrap();
        let (m, state) = Meta::open_checked(&path).unwrap();
        assert!(matches!(state, OpenState::Rebuilt { .. }));
        assert_eq!(snapshot(&m), want);
    }

    /// The mirror is written after commits without syncing; a crash can leave it behind the
    /// database. Opening a healthy database brings it level.
    #[test]
    fn a_stale_mirror_is_brought_level_at_open() {
        let (dir, path, want) = filled();
        let names = dir.path().join("meta.d/names");
        let mut files: Vec<_> = std::fs::read_dir(&names).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        std::fs::remove_file(&files[0]).unwrap(); // a put not mirrored
        std::fs::write(&files[1], br#"{"k":"n1","v":"old"}"#).unwrap(); // an older value
        std::fs::write(names.join("0000.json"), br#"{"k":"gone","v":"c999"}"#).unwrap(); // a delete not mirrored
        drop(Meta::open(&path).unwrap());
        std::fs::write(&path, b"garbage").unwrap();
        let (m, state) = Meta::open_checked(&path).unwrap();
        assert!(matches!(state, OpenState::Rebuilt { .. }));
        assert_eq!(snapshot(&m), want);
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
}
