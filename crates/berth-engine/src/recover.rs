//! Startup recovery of what a crash (SIGKILL, power loss) left half done, run by
//! [`Engine::open`](crate::Engine::open) before anything is served (HARDENING B2-B4, B20).
//!
//! The stores below already clean their own leftovers (ingest files in
//! [`ContentStore::open`](crate::content::ContentStore::open), unrecorded snapshot
//! directories in [`Snapshotter::open`](crate::snapshot::Snapshotter::open)). What remains
//! spans several records, and is finished here in the direction that needs no guessing:
//!
//! - a container record whose writable snapshot does not exist was never fully created
//!   (or was half removed): the record, its name and its other pieces go;
//! - `ctr:<id>` / `init:<id>` snapshots with no container record are the tail of a removal;
//! - a name pointing at no container is dropped, and so are the data and state directories
//!   of a container with no record;
//!
//! A build the previous process did not finish (its RUN shims, `build:*` work snapshots,
//! `build-tmp` mounts and files) is cleaned by the builder's own leftover sweep, also run at
//! open.

use crate::container::ContainerRecord;
use crate::error::Result;
use crate::meta::{Meta, CONTAINERS, NAMES};
use crate::snapshot::Snapshotter;
use std::path::Path;

pub(crate) fn run(meta: &Meta, snaps: &Snapshotter, data_root: &Path, exec_root: &Path) -> Result<()> {
    let containers = meta.list::<ContainerRecord>(CONTAINERS)?;
    let ids: std::collections::HashSet<String> = containers
        .iter()
        .filter(|(_, c)| snaps.get(&c.snapshot).ok().flatten().is_some())
        .map(|(id, _)| id.clone())
        .collect();
    for (id, c) in &containers {
        if ids.contains(id) {
            continue;
        }
        tracing::info!(container = %id, "recovery: removing a container whose creation or removal was interrupted");
        let mut b = meta.batch()?;
        b.delete(CONTAINERS, id)?;
        if b.get::<String>(NAMES, &c.name)?.as_deref() == Some(id.as_str()) {
            b.delete(NAMES, &c.name)?;
        }
        b.commit()?;
        let _ = std::fs::remove_dir_all(data_root.join("containers").join(id));
        let _ = std::fs::remove_dir_all(exec_root.join("containers").join(id));
    }
    for (name, id) in meta.list::<String>(NAMES)? {
        if !ids.contains(&id) {
            meta.delete(NAMES, &name)?;
        }
    }
    // directories of containers whose record is gone (a removal killed after its commit)
    for dir in [data_root.join("containers"), exec_root.join("containers")] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            if ids.contains(&id) {
                continue;
            }
            tracing::info!(container = %id, "recovery: removing the directory of a removed container");
            if let Ok(cfg) = berth_runtime::read_config(&e.path()) {
                if let Err(err) = berth_runtime::cleanup(&e.path(), &cfg) {
                    tracing::warn!(container = %id, "recovery: runtime cleanup: {err}");
                }
            }
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    for (key, _) in snaps.list()? {
        let owner = key.strip_prefix("ctr:").or_else(|| key.strip_prefix("init:"));
        if owner.is_some_and(|id| !ids.contains(id)) {
            tracing::info!(snapshot = %key, "recovery: removing a leftover snapshot");
            snaps.remove(&key)?;
        }
    }
    Ok(())
}
