//! Volumes and mounts: bind mounts, named and anonymous volumes, tmpfs (issue 4).
//!
//! A volume is a directory `<data-root>/volumes/<name>/_data` plus a [`VolumeRecord`] in the
//! `volumes` redb table. The record is the truth: a directory without a record is garbage
//! (a crash between deleting the record and the tree) and is removed when its name is seen
//! again, so a re-created volume never inherits old data. Records also list the containers
//! that reference the volume; a reference only counts while that container's record exists,
//! so references left behind by a crash never pin a volume forever.
//!
//! The container lifecycle calls three hooks:
//!
//! * [`Engine::prepare_volumes`] at create resolves `--volumes-from`, `-v`/`Binds`,
//!   `--mount` and the `VOLUME`s of the image and of `Config.Volumes` (`-v /path`) into
//!   Docker's `MountPoint` JSON in `rec.mounts` (what `inspect` shows as `Mounts`), creates
//!   named volumes on first use and anonymous ones (64 hex chars, label
//!   `com.docker.volume.anonymous`), records the references, and copies the image's content
//!   into new, empty volumes (Docker's copy-up; `nocopy` skips it).
//! * [`Engine::volume_mounts`] at every start turns `rec.mounts`, `--tmpfs` and tmpfs
//!   `--mount`s into runtime mounts. Volumes with `local` driver options (`type=tmpfs`, a
//!   device, `o=bind`) are mounted on their `_data` in the daemon's namespace first, like
//!   Docker's local driver.
//! * [`Engine::release_volumes`] at removal drops the references and, for `rm -v`/`--rm`,
//!   removes the container's anonymous volumes no other container uses.
//!
//! Why so: every in-container path is resolved inside the container root through file
//! descriptors — the runtime resolves each mount destination with `pathrs` and mounts through
//! the resolved descriptor (HARDENING A4 #31), and copy-up reads the image through
//! `openat2(RESOLVE_IN_ROOT)` ([`berth_archive::copy_tree`]) from a read-only overlay of the
//! image layers, so image symlinks such as `VOLUME /data` → `../../etc` stay inside the root.
//!
//! ```no_run
//! # fn demo(eng: &berth_engine::Engine) -> berth_engine::Result<()> {
//! use std::collections::BTreeMap;
//! let v = eng.create_volume(Some("data"), None, BTreeMap::new(), BTreeMap::new())?;
//! assert_eq!(v.name, "data");
//! let json = eng.volume_json(&v, false); // Docker's Volume object
//! assert_eq!(json["Driver"], "local");
//! eng.remove_volume("data", false)?;     // 409 "volume is in use" while a container uses it
//! # Ok(()) }
//! ```

use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{EngineError, ErrorKind, Result};
use crate::meta::{CONTAINERS, VOLUMES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The label Docker (23+) puts on anonymous volumes; `volume prune` without `-a` removes
/// only volumes carrying it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// A volume as stored in the `volumes` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeRecord {
    pub name: String,
    /// Always `local`.
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `local` driver options: `type`, `device`, `o`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds.
    pub created: String,
    /// Created for `-v /path`, an image `VOLUME` or `--mount type=volume` without source.
    #[serde(default)]
    pub anonymous: bool,
    /// Ids of the containers referencing the volume (only live ones count).
    #[serde(default)]
    pub containers: BTreeSet<String>,
}

/// Errors of volume operations; [`VolumeError::kind`] picks the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidName(String),
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("remove {name}: volume is in use - [{ids}]")]
    InUse { name: String, ids: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Host(String),
}

impl VolumeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::InvalidName(_) | VolumeError::Invalid(_) => ErrorKind::InvalidArgument,
            VolumeError::NotFound(_) => ErrorKind::NotFound,
            VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::Host(_) => ErrorKind::Internal,
        }
    }
}

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        EngineError::new(e.kind(), e.to_string())
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    VolumeError::Invalid(msg.into()).into()
}

fn host(msg: impl Into<String>) -> EngineError {
    VolumeError::Host(msg.into()).into()
}

/// Docker's local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn now_seconds() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_name() -> String {
    let a: [u8; 32] = rand::random();
    hex::encode(a)
}

/// `/a/../b/` → `/b`.
fn clean_dest(p: &str) -> String {
    format!("/{}", String::from_utf8_lossy(&berth_archive::clean_path(p.as_bytes())))
}

/// A Docker `MountPoint` (inspect's `Mounts` entry).
#[allow(clippy::too_many_arguments)]
fn mount_point(typ: &str, name: Option<&str>, source: &str, dest: &str, driver: Option<&str>, mode: &str, rw: bool, propagation: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("Type".into(), json!(typ));
    if let Some(n) = name {
        m.insert("Name".into(), json!(n));
    }
    m.insert("Source".into(), json!(source));
    m.insert("Destination".into(), json!(dest));
    if let Some(d) = driver {
        m.insert("Driver".into(), json!(d));
    }
    m.insert("Mode".into(), json!(mode));
    m.insert("RW".into(), json!(rw));
    m.insert("Propagation".into(), json!(propagation));
    Value::Object(m)
}

/// A volume a mount needs: created with these when missing.
struct NewVolume {
    name: String,
    anonymous: bool,
    options: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

/// One mount chosen at create, before volumes exist.
struct Planned {
    point: Value,
    /// Volume to create when missing.
    volume: Option<NewVolume>,
    copy: bool,
}

const PROPAGATIONS: [&str; 6] = ["rprivate", "private", "rshared", "shared", "rslave", "slave"];

/// Parse one `-v`/`Binds` entry: `/host:/ctr[:mode]` or `name:/ctr[:mode]`.
fn parse_bind(spec: &str) -> Result<Planned> {
    let bad = |why: &str| invalid(format!("invalid volume specification: '{spec}'{why}"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.len() {
        2 => (parts[0], parts[1], ""),
        3 => (parts[0], parts[1], parts[2]),
        _ => return Err(bad("")),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(bad(""));
    }
    if !dst.starts_with('/') {
        return Err(bad(&format!(": invalid mount config for type \"{}\": invalid mount path: '{dst}' mount path must be absolute", if src.starts_with('/') { "bind" } else { "volume" })));
    }
    let dest = clean_dest(dst);
    if dest == "/" {
        return Err(bad(&format!(": invalid mount config for type \"{}\": invalid specification: destination can't be '/'", if src.starts_with('/') { "bind" } else { "volume" })));
    }
    let mut rw = true;
    let mut nocopy = false;
    let mut propagation = String::new();
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => rw = false,
            "rw" => rw = true,
            "nocopy" => nocopy = true,
            "z" | "Z" => {}
            p if PROPAGATIONS.contains(&p) => propagation = p.to_string(),
            _ => return Err(invalid(format!("invalid mode: {mode}"))),
        }
    }
    if src.starts_with('/') {
        if nocopy {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        let source = clean_dest(src);
        let prop = if propagation.is_empty() { "rprivate".to_string() } else { propagation };
        Ok(Planned {
            point: mount_point("bind", None, &source, &dest, None, mode, rw, &prop),
            volume: None,
            copy: false,
        })
    } else {
        if !valid_volume_name(src) {
            return Err(VolumeError::InvalidName(src.to_string()).into());
        }
        if !propagation.is_empty() {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        let m = if mode.is_empty() { "z" } else { mode };
        Ok(Planned {
            point: mount_point("volume", Some(src), "", &dest, Some("local"), m, rw, ""),
            volume: Some(NewVolume { name: src.to_string(), anonymous: false, options: BTreeMap::new(), labels: BTreeMap::new() }),
            copy: !nocopy,
        })
    }
}

/// Parse one `HostConfig.Mounts` entry.
fn parse_api_mount(m: &bollard::models::Mount) -> Result<Option<Planned>> {
    use bollard::models::MountType as T;
    let target = m.target.clone().unwrap_or_default();
    let typ = m.typ.map(|t| t.to_string()).unwrap_or_default();
    if target.is_empty() {
        return Err(invalid(format!("invalid mount config for type \"{typ}\": field Target must not be empty")));
    }
    if !target.starts_with('/') {
        return Err(invalid(format!("invalid mount config for type \"{typ}\": invalid mount path: '{target}' mount path must be absolute")));
    }
    let dest = clean_dest(&target);
    let rw = !m.read_only.unwrap_or(false);
    let source = m.source.clone().unwrap_or_default();
    match m.typ {
        Some(T::BIND) => {
            if source.is_empty() {
                return Err(invalid("invalid mount config for type \"bind\": field Source must not be empty"));
            }
            if !source.starts_with('/') {
                return Err(invalid(format!("invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute")));
            }
            if !Path::new(&source).exists() {
                return Err(invalid(format!("invalid mount config for type \"bind\": bind source path does not exist: {source}")));
            }
            if m.volume_options.is_some() {
                return Err(invalid("invalid mount config for type \"bind\": field VolumeOptions must not be specified"));
            }
            let prop = m
                .bind_options
                .as_ref()
                .and_then(|b| b.propagation)
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".into());
            Ok(Some(Planned {
                point: mount_point("bind", None, &clean_dest(&source), &dest, None, "", rw, &prop),
                volume: None,
                copy: false,
                }))
        }
        Some(T::VOLUME) | None => {
            let vo = m.volume_options.clone().unwrap_or_default();
            let options: BTreeMap<String, String> = vo
                .driver_config
                .as_ref()
                .and_then(|d| d.options.clone())
                .unwrap_or_default()
                .into_iter()
                .collect();
            if let Some(d) = vo.driver_config.as_ref().and_then(|d| d.name.clone()) {
                if !d.is_empty() && d != "local" {
                    return Err(invalid(format!("error looking up volume plugin {d}: plugin \"{d}\" not found")));
                }
            }
            let labels: BTreeMap<String, String> = vo.labels.clone().unwrap_or_default().into_iter().collect();
            let (name, anon) = if source.is_empty() {
                (random_name(), true)
            } else {
                if !valid_volume_name(&source) {
                    return Err(VolumeError::InvalidName(source).into());
                }
                (source, false)
            };
            Ok(Some(Planned {
                point: mount_point("volume", Some(&name), "", &dest, Some("local"), "z", rw, ""),
                volume: Some(NewVolume { name, anonymous: anon, options, labels }),
                copy: !vo.no_copy.unwrap_or(false),
                }))
        }
        Some(T::TMPFS) => {
            if !source.is_empty() {
                return Err(invalid("invalid mount config for type \"tmpfs\": field Source must not be specified"));
            }
            Ok(Some(Planned {
                point: mount_point("tmpfs", None, "", &dest, None, "", rw, ""),
                volume: None,
                copy: false,
                }))
        }
        Some(other) => Err(invalid(format!("mount type \"{other}\" is not supported by berth"))),
    }
}

/// Mount flags and data from a local driver `o=` string.
fn mount_flags(o: &str) -> (nix::mount::MsFlags, String) {
    use nix::mount::MsFlags as F;
    let mut flags = F::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "ro" => flags |= F::MS_RDONLY,
            "rw" => flags &= !F::MS_RDONLY,
            "nosuid" => flags |= F::MS_NOSUID,
            "nodev" => flags |= F::MS_NODEV,
            "noexec" => flags |= F::MS_NOEXEC,
            "noatime" => flags |= F::MS_NOATIME,
            "bind" => flags |= F::MS_BIND,
            "rbind" => flags |= F::MS_BIND | F::MS_REC,
            "defaults" => {}
            d => data.push(d.to_string()),
        }
    }
    (flags, data.join(","))
}

/// Whether something is mounted on `p` (a different device than its parent).
fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(p), p.parent().map(std::fs::symlink_metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// A temporary read-only overlay of an image's layers, unmounted and removed on drop.
struct ImageView {
    target: PathBuf,
}

impl ImageView {
    fn mount(target: &Path, lowers: &[PathBuf], empty: &Path) -> Result<Self> {
        std::fs::create_dir_all(target)?;
        let mut all: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        all.push(empty.display().to_string());
        let opts = format!("lowerdir={}", all.join(":"));
        if opts.len() >= 4000 {
            return Err(host("copy-up: overlay options exceed the page size (too many layers)"));
        }
        nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::MS_RDONLY, Some(opts.as_str()))
            .map_err(|e| host(format!("copy-up: mount image view at {}: {e}", target.display())))?;
        Ok(Self { target: target.to_path_buf() })
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.target.display(), "copy-up: unmount image view: {e}");
        }
        let _ = std::fs::remove_dir(&self.target);
    }
}

impl Engine {
    /// `<data-root>/volumes`, created 0700. The first call in a process removes the image
    /// views a crash during copy-up left behind (`.copyup-*`, unmounted first) and volume
    /// directories without a record (a crash between a removal's commit and its directory
    /// delete, or between a creation's mkdir and its commit: HARDENING B18). Later callers
    /// wait for that sweep, so it never sees a directory a creation in this process made.
    pub fn volumes_root(&self) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        static SWEPT: std::sync::Mutex<BTreeSet<PathBuf>> = std::sync::Mutex::new(BTreeSet::new());
        let root = self.config.data_root.join("volumes");
        if !root.is_dir() {
            std::fs::create_dir_all(&root)?;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
            crate::content::sync_dir(&self.config.data_root)?;
        }
        let mut swept = SWEPT.lock().map_err(|_| EngineError::internal("lock"))?;
        if swept.insert(root.clone()) {
            let known: BTreeSet<String> = self.meta.list::<VolumeRecord>(VOLUMES)?.into_iter().map(|(k, _)| k).collect();
            for e in std::fs::read_dir(&root)?.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let p = e.path();
                if name.starts_with(".copyup-") {
                    let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
                    if let Err(err) = std::fs::remove_dir(&p) {
                        tracing::warn!(path = %p.display(), "volumes: leftover copy-up view: {err}");
                    }
                } else if valid_volume_name(&name) && !known.contains(&name) && p.is_dir() {
                    tracing::info!(volume = %name, "volumes: removing a directory without a record (interrupted create or remove)");
                    drop_volume_dir(&p);
                }
            }
        }
        Ok(root)
    }

    /// `<data-root>/volumes/<name>/_data` (Docker's `Mountpoint`).
    pub fn volume_mountpoint(&self, name: &str) -> PathBuf {
        self.config.data_root.join("volumes").join(name).join("_data")
    }

    /// Whether the container with this id still has a record.
    fn container_exists(&self, b: &mut crate::meta::Batch<'_>, id: &str) -> Result<bool> {
        Ok(b.get::<Value>(CONTAINERS, id)?.is_some())
    }

    /// `POST /volumes/create`: create a `local` volume, or return the existing one of that name
    /// (Docker's idempotent create). `name` `None` or empty makes a 64-hex anonymous name.
    pub fn create_volume(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeRecord> {
        let (rec, created) = self.ensure_volume(name, driver, labels, options, false, None)?;
        if !created {
            tracing::debug!(volume = %rec.name, "volume exists");
        }
        Ok(rec)
    }

    /// Create the volume if missing (optionally referencing it from `container` in the same
    /// transaction). Returns the record and whether it was created now.
    fn ensure_volume(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        mut labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
        container: Option<&str>,
    ) -> Result<(VolumeRecord, bool)> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(d) = driver.filter(|d| !d.is_empty() && *d != "local") {
            return Err(EngineError::not_found(format!("error looking up volume plugin {d}: plugin \"{d}\" not found")));
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => random_name(),
        };
        if !valid_volume_name(&name) {
            return Err(VolumeError::InvalidName(name).into());
        }
        validate_options(&name, &options)?;
        let root = self.volumes_root()?;
        let mut b = self.meta.batch()?;
        if let Some(mut rec) = b.get::<VolumeRecord>(VOLUMES, &name)? {
            if let Some(c) = container {
                rec.containers.insert(c.to_string());
                b.put(VOLUMES, &name, &rec)?;
                b.commit()?;
            }
            return Ok((rec, false));
        }
        let dir = root.join(&name);
        if dir.exists() {
            // A directory without a record: left by a crash while removing; never reuse its data.
            tracing::info!(volume = %name, "volumes: removing leftover directory");
            self.remove_volume_dir(&name)?;
        }
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir(dir.join("_data"))?;
        std::fs::set_permissions(dir.join("_data"), std::fs::Permissions::from_mode(0o755))?;
        // the directories before the record: a power cut must not leave a volume whose
        // directory never reached the disk (HARDENING B5)
        if let Err(e) = crate::content::sync_dir(&dir).and_then(|()| crate::content::sync_dir(&root)) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let rec = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            labels,
            options,
            created: now_seconds(),
            anonymous,
            containers: container.map(|c| BTreeSet::from([c.to_string()])).unwrap_or_default(),
        };
        b.put(VOLUMES, &name, &rec)?;
        if let Err(e) = b.commit() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        self.events.emit("volume", "create", &name, &[("driver", "local")]);
        Ok((rec, true))
    }

    /// `GET /volumes/{name}`.
    pub fn get_volume(&self, name: &str) -> Result<VolumeRecord> {
        self.meta
            .get::<VolumeRecord>(VOLUMES, name)?
            .ok_or_else(|| VolumeError::NotFound(name.to_string()).into())
    }

    /// All volumes, sorted by name.
    pub fn list_volumes(&self) -> Result<Vec<VolumeRecord>> {
        let mut v: Vec<VolumeRecord> = self.meta.list::<VolumeRecord>(VOLUMES)?.into_iter().map(|(_, r)| r).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Ids of live containers referencing the volume.
    pub fn volume_users(&self, rec: &VolumeRecord) -> Result<Vec<String>> {
        let mut b = self.meta.batch()?;
        let mut out = Vec::new();
        for c in &rec.containers {
            if self.container_exists(&mut b, c)? {
                out.push(c.clone());
            }
        }
        Ok(out)
    }

    /// `GET /volumes?filters=`: `dangling`, `name` (substring), `driver`, `label` (`k` or `k=v`).
    pub fn filter_volumes(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<VolumeRecord>> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "dangling" | "name" | "driver" | "label") {
                return Err(invalid(format!("invalid filter '{k}'")));
            }
        }
        let mut out = Vec::new();
        for v in self.list_volumes()? {
            if let Some(d) = filters.get("dangling").filter(|d| !d.is_empty()) {
                let want_dangling = match d[0].as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => return Err(invalid(format!("invalid filter 'dangling={other}'"))),
                };
                if self.volume_users(&v)?.is_empty() != want_dangling {
                    continue;
                }
            }
            if let Some(ns) = filters.get("name").filter(|n| !n.is_empty()) {
                if !ns.iter().any(|n| v.name.contains(n.as_str())) {
                    continue;
                }
            }
            if let Some(ds) = filters.get("driver").filter(|d| !d.is_empty()) {
                if !ds.contains(&v.driver) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_matches(&v.labels, l)) {
                    continue;
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Docker's `Volume` JSON; `UsageData` (size, reference count) when `usage`.
    pub fn volume_json(&self, v: &VolumeRecord, usage: bool) -> Value {
        let mut j = json!({
            "CreatedAt": v.created,
            "Driver": v.driver,
            "Labels": json!(v.labels),
            "Mountpoint": self.volume_mountpoint(&v.name).display().to_string(),
            "Name": v.name,
            "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
            "Scope": "local",
        });
        if usage {
            let refs = self.volume_users(v).map(|u| u.len()).unwrap_or(0);
            j["UsageData"] = json!({"Size": self.volume_size(&v.name), "RefCount": refs});
        }
        j
    }

    /// Bytes of the regular files in a volume (hardlinks counted once).
    pub fn volume_size(&self, name: &str) -> u64 {
        crate::snapshot::dir_size(&self.volume_mountpoint(name))
    }

    /// `DELETE /volumes/{name}`: refuses a volume in use (409); `force` ignores a missing one.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let mut b = self.meta.batch()?;
        let Some(rec) = b.get::<VolumeRecord>(VOLUMES, name)? else {
            if force {
                return Ok(());
            }
            return Err(VolumeError::NotFound(name.to_string()).into());
        };
        let mut users = Vec::new();
        for c in &rec.containers {
            if self.container_exists(&mut b, c)? {
                users.push(c.clone());
            }
        }
        if !users.is_empty() {
            return Err(VolumeError::InUse { name: name.to_string(), ids: users.join(", ") }.into());
        }
        b.delete(VOLUMES, name)?;
        b.commit()?;
        self.remove_volume_dir(name)?;
        self.events.emit("volume", "destroy", name, &[("driver", "local")]);
        Ok(())
    }

    /// Unmount what the local driver mounted on `_data` and delete the volume's directory.
    fn remove_volume_dir(&self, name: &str) -> Result<()> {
        let dir = self.volumes_root()?.join(name);
        remove_dir_unmounted(name, &dir)
    }
}

/// Best effort [`remove_dir_unmounted`] for the startup sweep.
fn drop_volume_dir(dir: &Path) {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if let Err(e) = remove_dir_unmounted(&name, dir) {
        tracing::warn!(path = %dir.display(), "volumes: {e}");
    }
}

/// Unmount what the local driver mounted on `<dir>/_data` and delete `dir`.
fn remove_dir_unmounted(name: &str, dir: &Path) -> Result<()> {
    let data = dir.join("_data");
    for _ in 0..16 {
        if !is_mountpoint(&data) {
            break;
        }
        nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| host(format!("remove {name}: unmount {}: {e}", data.display())))?;
    }
    if is_mountpoint(&data) {
        return Err(host(format!("remove {name}: {} is still mounted", data.display())));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(host(format!("remove {name}: {e}"))),
    }
}

impl Engine {
    /// `POST /volumes/prune`: unused anonymous volumes, or all unused ones with `all`;
    /// `label` filters (`k`, `k=v`, `label!=`) narrow it. Returns names and bytes reclaimed.
    pub fn prune_volumes(&self, all: bool, filters: &HashMap<String, Vec<String>>) -> Result<(Vec<String>, u64)> {
        for k in filters.keys() {
            if !matches!(k.as_str(), "label" | "label!" | "all") {
                return Err(invalid(format!("invalid filter '{k}'")));
            }
        }
        let all = all
            || filters
                .get("all")
                .map(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")))
                .unwrap_or(false);
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for v in self.list_volumes()? {
            if !all && !v.labels.contains_key(ANONYMOUS_LABEL) {
                continue;
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_matches(&v.labels, l)) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label!") {
                if ls.iter().any(|l| label_matches(&v.labels, l)) {
                    continue;
                }
            }
            if !self.volume_users(&v)?.is_empty() {
                continue;
            }
            let size = self.volume_size(&v.name);
            match self.remove_volume(&v.name, false) {
                Ok(()) => {
                    deleted.push(v.name.clone());
                    reclaimed += size;
                }
                Err(e) if e.kind() == ErrorKind::Conflict || e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.events.emit("volume", "prune", "", &[("reclaimed", &reclaimed.to_string())]);
        Ok((deleted, reclaimed))
    }

    /// The host directory a container mounts for a volume: `_data`, after mounting the local
    /// driver's `type`/`device`/`o` options on it when it has them (`o=bind`: the device).
    fn volume_source(&self, v: &VolumeRecord) -> Result<String> {
        let data = self.volume_mountpoint(&v.name);
        if v.options.is_empty() {
            if !data.is_dir() {
                // A record whose directory vanished (crash while removing): recreate it empty.
                std::fs::create_dir_all(&data)?;
            }
            return Ok(data.display().to_string());
        }
        let typ = v.options.get("type").cloned().unwrap_or_default();
        let device = v.options.get("device").cloned().unwrap_or_default();
        let o = v.options.get("o").cloned().unwrap_or_default();
        let (flags, extra) = mount_flags(&o);
        std::fs::create_dir_all(&data)?;
        if flags.contains(nix::mount::MsFlags::MS_BIND) {
            if !Path::new(&device).exists() {
                return Err(invalid(format!(
                    "error while mounting volume '{}': failed to mount local volume: mount {device}:{}, flags: 0x1000: no such file or directory",
                    data.display(),
                    data.display()
                )));
            }
            return Ok(device);
        }
        if !is_mountpoint(&data) {
            let fstype = if typ.is_empty() { None } else { Some(typ.as_str()) };
            let data_opt = if extra.is_empty() { None } else { Some(extra.as_str()) };
            nix::mount::mount(Some(device.as_str()), &data, fstype, flags, data_opt).map_err(|e| {
                invalid(format!(
                    "error while mounting volume '{}': failed to mount local volume: mount {device}:{}, data: {extra}: {e}",
                    data.display(),
                    data.display()
                ))
            })?;
        }
        Ok(data.display().to_string())
    }

    /// At create: validate the container's binds, `--mount`s, `--volumes-from` and the image's
    /// `VOLUME`s, create named/anonymous volumes, and fill `rec.mounts` (inspect's `Mounts`).
    pub(crate) fn prepare_volumes(&self, rec: &mut ContainerRecord) -> Result<()> {
        let plan = self.plan_mounts(rec)?;
        rec.mounts.clear();
        let res = (|| -> Result<()> {
            for p in plan {
                let mut point = p.point;
                if let Some(nv) = p.volume {
                    let (v, _) = self.ensure_volume(Some(&nv.name), None, nv.labels, nv.options, nv.anonymous, Some(&rec.id))?;
                    point["Source"] = json!(self.volume_mountpoint(&v.name).display().to_string());
                    rec.mounts.push(point.clone());
                    if p.copy {
                        let dest = point["Destination"].as_str().unwrap_or("/").to_string();
                        self.copy_up(rec, &v, &dest)?;
                    }
                } else {
                    if point["Type"] == "bind" {
                        let src = point["Source"].as_str().unwrap_or("");
                        if !Path::new(src).exists() {
                            // `-v /host:/ctr` creates a missing host directory (not `--mount`).
                            std::fs::create_dir_all(src)
                                .map_err(|e| invalid(format!("error while creating mount source path '{src}': {e}")))?;
                        }
                    }
                    rec.mounts.push(point);
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            if let Err(e2) = self.release_volumes(rec, true) {
                tracing::warn!(container = %rec.id, "undo volumes: {e2}");
            }
            rec.mounts.clear();
            return Err(e);
        }
        rec.mounts.sort_by(|a, b| a["Destination"].as_str().cmp(&b["Destination"].as_str()));
        Ok(())
    }

    /// Decide every mount of a container (Docker's order: `--volumes-from`, then binds and
    /// `--mount`s, which override, then `Config.Volumes` where nothing else is mounted).
    fn plan_mounts(&self, rec: &ContainerRecord) -> Result<Vec<Planned>> {
        let hc = &rec.host_config;
        let mut by_dest: BTreeMap<String, Planned> = BTreeMap::new();
        for spec in hc.volumes_from.clone().unwrap_or_default() {
            let (cname, mode) = match spec.rsplit_once(':') {
                Some((c, m)) if matches!(m, "ro" | "rw") => (c, Some(m)),
                Some((_, m)) => return Err(invalid(format!("invalid mode for volumes-from: {m}"))),
                None => (spec.as_str(), None),
            };
            let src = self.get_container(cname)?;
            let src = src.lock().map_err(|_| EngineError::internal("lock"))?.clone();
            if src.id == rec.id {
                return Err(invalid("cannot use volumes from itself"));
            }
            for m in &src.mounts {
                let typ = m["Type"].as_str().unwrap_or("");
                if typ != "bind" && typ != "volume" {
                    continue;
                }
                let mut point = m.clone();
                if let Some(mode) = mode {
                    point["RW"] = json!(mode == "rw");
                    point["Mode"] = json!(mode);
                }
                let dest = point["Destination"].as_str().unwrap_or("").to_string();
                let volume = if typ == "volume" {
                    let name = point["Name"].as_str().unwrap_or("").to_string();
                    let v = self.get_volume(&name)?;
                    Some(NewVolume { name, anonymous: v.anonymous, options: v.options, labels: v.labels })
                } else {
                    None
                };
                by_dest.insert(dest, Planned { point, volume, copy: false });
            }
        }
        let mut user_dests = BTreeSet::new();
        let mut user = Vec::new();
        for b in hc.binds.clone().unwrap_or_default() {
            user.push(parse_bind(&b)?);
        }
        for m in hc.mounts.clone().unwrap_or_default() {
            if let Some(p) = parse_api_mount(&m)? {
                user.push(p);
            }
        }
        for p in user {
            let dest = p.point["Destination"].as_str().unwrap_or("").to_string();
            if !user_dests.insert(dest.clone()) {
                return Err(invalid(format!("Duplicate mount point: {dest}")));
            }
            by_dest.insert(dest, p);
        }
        let tmpfs: BTreeSet<String> = hc.tmpfs.clone().unwrap_or_default().keys().map(|k| clean_dest(k)).collect();
        for t in &tmpfs {
            if user_dests.contains(t) {
                return Err(invalid(format!("Duplicate mount point: {t}")));
            }
            by_dest.remove(t);
        }
        for dst in rec.config.volumes.clone().unwrap_or_default() {
            if !dst.starts_with('/') {
                return Err(invalid(format!("invalid volume specification: '{dst}': invalid mount config for type \"volume\": invalid mount path: '{dst}' mount path must be absolute")));
            }
            let dest = clean_dest(&dst);
            if dest == "/" {
                return Err(invalid(format!("invalid volume specification: '{dst}': invalid mount config for type \"volume\": invalid specification: destination can't be '/'")));
            }
            if by_dest.contains_key(&dest) || tmpfs.contains(&dest) {
                continue;
            }
            let name = random_name();
            by_dest.insert(
                dest.clone(),
                Planned {
                    point: mount_point("volume", Some(&name), "", &dest, Some("local"), "", true, ""),
                    volume: Some(NewVolume { name, anonymous: true, options: BTreeMap::new(), labels: BTreeMap::new() }),
                    copy: true,
                },
            );
        }
        Ok(by_dest.into_values().collect())
    }

    /// Docker's copy-up: fill a new, empty volume with the image's content at `dest` (owners,
    /// modes, xattrs and symlinks kept), reading the image through an in-root resolution of a
    /// read-only overlay of its layers.
    fn copy_up(&self, rec: &ContainerRecord, v: &VolumeRecord, dest: &str) -> Result<()> {
        let target = PathBuf::from(self.volume_source(v)?);
        let empty = match std::fs::read_dir(&target) {
            Ok(mut rd) => rd.next().is_none(),
            Err(_) => false,
        };
        if !empty {
            return Ok(());
        }
        let parent = self.snapshots.get(&rec.snapshot)?.and_then(|s| s.parent);
        let lowers = self.snapshots.lowers(parent.as_deref())?;
        if lowers.is_empty() {
            return Ok(());
        }
        let view_dir = self.volumes_root()?.join(format!(".copyup-{}", &random_name()[..16]));
        let empty_dir = self.config.data_root.join("snapshots").join("empty");
        std::fs::create_dir_all(&empty_dir)?;
        let view = ImageView::mount(&view_dir, &lowers, &empty_dir)?;
        // Only directories are copied up; a missing path or a file means nothing to copy.
        let Ok(src_dir) = berth_archive::open_in_root(
            &view.target,
            Path::new(dest),
            berth_archive::OFlags::RDONLY | berth_archive::OFlags::DIRECTORY,
        ) else {
            return Ok(());
        };
        let opts = berth_archive::ApplyOptions { max_entries: u64::MAX, max_bytes: u64::MAX, ..Default::default() };
        berth_archive::copy_tree(&view.target, Path::new(dest), &target, Path::new("/"), &opts)
            .map_err(|e| host(format!("copy-up of {dest} into volume {}: {e}", v.name)))?;
        // The volume's root takes the owner and mode of the image directory (Docker's
        // copyOwnership); `target` is our own host path, the source was opened in-root.
        let st = nix::sys::stat::fstat(&src_dir).map_err(|e| host(format!("copy-up: stat {dest}: {e}")))?;
        std::os::unix::fs::chown(&target, Some(st.st_uid), Some(st.st_gid))?;
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777))?;
        drop(view);
        Ok(())
    }

    /// At start: the runtime mounts for binds, volumes and tmpfs.
    pub(crate) fn volume_mounts(&self, rec: &ContainerRecord) -> Result<Vec<berth_runtime::MountConfig>> {
        use berth_runtime::{MountConfig, MountKind};
        let hc = &rec.host_config;
        let mut mounts = Vec::new();
        let tmpfs_opts: HashMap<String, bollard::models::MountTmpfsOptions> = hc
            .mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ == Some(bollard::models::MountType::TMPFS))
            .map(|m| (clean_dest(m.target.as_deref().unwrap_or("/")), m.tmpfs_options.unwrap_or_default()))
            .collect();
        for m in &rec.mounts {
            let dest = m["Destination"].as_str().unwrap_or("").to_string();
            let rw = m["RW"].as_bool().unwrap_or(true);
            let propagation = m["Propagation"].as_str().filter(|p| !p.is_empty()).map(String::from);
            let ro = if rw { "rw" } else { "ro" }.to_string();
            match m["Type"].as_str().unwrap_or("") {
                "bind" => mounts.push(MountConfig {
                    kind: MountKind::Bind,
                    source: m["Source"].as_str().unwrap_or("").to_string(),
                    destination: dest,
                    options: vec!["rbind".into(), ro],
                    propagation,
                }),
                "volume" => {
                    let name = m["Name"].as_str().unwrap_or("");
                    let v = self.get_volume(name)?;
                    mounts.push(MountConfig {
                        kind: MountKind::Volume,
                        source: self.volume_source(&v)?,
                        destination: dest,
                        options: vec!["rbind".into(), ro],
                        propagation,
                    });
                }
                "tmpfs" => {
                    let mut o = vec![ro];
                    if let Some(t) = tmpfs_opts.get(&dest) {
                        if let Some(sz) = t.size_bytes.filter(|s| *s > 0) {
                            o.push(format!("size={sz}"));
                        }
                        if let Some(md) = t.mode.filter(|m| *m > 0) {
                            o.push(format!("mode={md:o}"));
                        }
                    }
                    mounts.push(MountConfig { kind: MountKind::Tmpfs, source: "tmpfs".into(), destination: dest, options: o, propagation: None });
                }
                _ => {}
            }
        }
        for (dst, opts) in hc.tmpfs.clone().unwrap_or_default() {
            let o: Vec<String> = opts.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            mounts.push(MountConfig { kind: MountKind::Tmpfs, source: "tmpfs".into(), destination: clean_dest(&dst), options: o, propagation: None });
        }
        // Parents before children, so `/data` and `/data/sub` stack the way the user means.
        mounts.sort_by_key(|m| m.destination.matches('/').count());
        Ok(mounts)
    }

    /// At removal: drop references; remove anonymous volumes when asked (`rm -v`, `--rm`).
    pub(crate) fn release_volumes(&self, rec: &ContainerRecord, remove_anonymous: bool) -> Result<()> {
        let mut first_err = None;
        for m in &rec.mounts {
            if m["Type"] != "volume" {
                continue;
            }
            let Some(name) = m["Name"].as_str() else { continue };
            let res = (|| -> Result<()> {
                let mut b = self.meta.batch()?;
                let Some(mut v) = b.get::<VolumeRecord>(VOLUMES, name)? else { return Ok(()) };
                v.containers.remove(&rec.id);
                b.put(VOLUMES, name, &v)?;
                b.commit()?;
                if remove_anonymous && v.anonymous {
                    match self.remove_volume(name, true) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::Conflict => {
                            tracing::info!(volume = name, "anonymous volume still in use, kept");
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                tracing::warn!(volume = name, container = %rec.id, "release volume: {e}");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `k` or `k=v` against a label map.
fn label_matches(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(f),
    }
}

/// The `local` driver's options: `type`, `device`, `o` (and `size`, refused like Docker
/// without quota support).
fn validate_options(name: &str, options: &BTreeMap<String, String>) -> Result<()> {
    for k in options.keys() {
        if !matches!(k.as_str(), "type" | "device" | "o") {
            return Err(invalid(format!("create {name}: invalid option key: {k:?}")));
        }
    }
    if options.is_empty() {
        return Ok(());
    }
    let typ = options.get("type").map(String::as_str).unwrap_or("");
    let o = options.get("o").map(String::as_str).unwrap_or("");
    let device = options.get("device").map(String::as_str).unwrap_or("");
    let is_bind = o.split(',').any(|x| x == "bind" || x == "rbind");
    if typ.is_empty() && !is_bind {
        return Err(invalid(format!("create {name}: missing required option: \"type\"")));
    }
    if device.is_empty() {
        return Err(invalid(format!("create {name}: missing required option: \"device\"")));
    }
    if is_bind && !device.starts_with('/') {
        return Err(invalid(format!("create {name}: bind device must be an absolute path: {device}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_volume_name("data"));
        assert!(valid_volume_name("my_vol.1-x"));
        assert!(!valid_volume_name("a"));
        assert!(!valid_volume_name("_x"));
        assert!(!valid_volume_name("x/y"));
        assert!(!valid_volume_name("../x"));
        assert!(!valid_volume_name(""));
    }

    #[test]
    fn binds() {
        let p = parse_bind("/tmp/x:/data:ro").expect("valid bind");
        assert_eq!(p.point["Type"], "bind");
        assert_eq!(p.point["RW"], false);
        assert_eq!(p.point["Propagation"], "rprivate");
        assert!(p.volume.is_none());
        let p = parse_bind("vol:/a/../data").expect("valid volume");
        assert_eq!(p.point["Type"], "volume");
        assert_eq!(p.point["Destination"], "/data");
        assert_eq!(p.point["Mode"], "z");
        assert!(p.copy);
        let p = parse_bind("vol:/data:nocopy").expect("valid nocopy");
        assert!(!p.copy);
        assert!(parse_bind("vol:data").is_err());
        assert!(parse_bind("/x:/").is_err());
        assert!(parse_bind("x/y:/data").is_err());
        assert!(parse_bind("/x:/y:bogus").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
    }

    #[test]
    fn options() {
        let o = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert!(validate_options("v", &o(&[])).is_ok());
        assert!(validate_options("v", &o(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])).is_ok());
        assert!(validate_options("v", &o(&[("o", "bind"), ("device", "/srv")])).is_ok());
        assert!(validate_options("v", &o(&[("o", "bind"), ("device", "srv")])).is_err());
        assert!(validate_options("v", &o(&[("foo", "bar")])).is_err());
        assert!(validate_options("v", &o(&[("type", "tmpfs")])).is_err());
        let (f, d) = mount_flags("size=1m,ro,uid=5");
        assert!(f.contains(nix::mount::MsFlags::MS_RDONLY));
        assert_eq!(d, "size=1m,uid=5");
    }

    #[test]
    fn labels() {
        let l: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(label_matches(&l, "a"));
        assert!(label_matches(&l, "a=1"));
        assert!(!label_matches(&l, "a=2"));
        assert!(!label_matches(&l, "b"));
    }
}
