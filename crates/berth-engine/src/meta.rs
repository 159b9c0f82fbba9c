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

use crate::error::Result;
use redb::{Database, ReadableTable, TableDefinition};
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

const ALL: [Table; 8] = [IMAGES, TAGS, CONTAINERS, NAMES, SNAPSHOTS, VOLUMES, NETWORKS, COUNTERS];

pub struct Meta {
    /// `None` only between a failed reopen and the next attempt.
    db: std::sync::RwLock<Option<Database>>,
    path: std::path::PathBuf,
}

/// One write transaction: several puts/deletes that commit together or not at all.
pub struct Batch<'a> {
    tx: redb::WriteTransaction,
    _m: std::marker::PhantomData<&'a ()>,
}

impl Meta {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        for t in ALL {
            tx.open_table(t)?;
        }
        tx.commit()?;
        Ok(Self { db: std::sync::RwLock::new(Some(db)), path: path.to_path_buf() })
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
        Ok(Batch { tx: self.with_db(|db| Ok(db.begin_write()?))?, _m: std::marker::PhantomData })
    }
}

impl Batch<'_> {
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, val: &T) -> Result<()> {
        let bytes = serde_json::to_vec(val)?;
        let mut t = self.tx.open_table(table)?;
        t.insert(key, bytes.as_slice())?;
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
        Ok(())
    }
    pub fn commit(self) -> Result<()> {
        self.tx.commit()?;
        Ok(())
    }
}
