//! Container filesystem operations: `cp` (archive get/put/stat), `diff`, `export`, `commit`.
//!
//! A running container is reached through `/proc/<pid>/root`, so its volumes and bind mounts
//! are seen as the container sees them; a stopped one gets its overlay mounted privately for
//! the duration of the operation. Every path inside is resolved through file descriptors by
//! `berth-archive` (openat2 `RESOLVE_IN_ROOT`), never by joining strings, and nothing from the
//! container is executed or loaded on the host side (HARDENING A4 #34-35).

use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::image::{apply_change, ConfigFile, History, ImageRecord, RootFs};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A view of a container's root filesystem; unmounts on drop when it mounted.
pub struct RootView {
    pub path: PathBuf,
    mounted: bool,
}

impl Drop for RootView {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// Docker's `X-Docker-Container-Path-Stat` content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` bits from a unix mode (what docker cp expects in the stat header).
fn go_mode(m: u32) -> u32 {
    let perm = m & 0o777;
    let mut out = perm;
    match m & libc::S_IFMT {
        libc::S_IFDIR => out |= 1 << 31,
        libc::S_IFLNK => out |= 1 << 27,
        libc::S_IFIFO => out |= 1 << 25,
        libc::S_IFSOCK => out |= 1 << 24,
        libc::S_IFCHR => out |= (1 << 26) | (1 << 21),
        libc::S_IFBLK => out |= 1 << 26,
        _ => {}
    }
    if m & libc::S_ISUID != 0 {
        out |= 1 << 23;
    }
    if m & libc::S_ISGID != 0 {
        out |= 1 << 22;
    }
    if m & libc::S_ISVTX != 0 {
        out |= 1 << 20;
    }
    out
}

impl Engine {
    fn record(&self, name: &str) -> Result<ContainerRecord> {
        let c = self.get_container(name)?;
        let r = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
        Ok(r)
    }

    /// The container's root as a host path (see the module doc).
    pub fn root_view(&self, rec: &ContainerRecord) -> Result<RootView> {
        if rec.state.running && rec.state.pid > 0 {
            let p = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            if p.exists() {
                return Ok(RootView { path: p, mounted: false });
            }
        }
        let m = self.snapshots.mounts(&rec.snapshot)?;
        let dir = self.config.exec_root.join("mnt").join(format!("{}-{:08x}", &rec.id[..12], rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let opts = m.options.join(",");
        nix::mount::mount(Some(m.source.as_str()), &dir, Some(m.fstype.as_str()), nix::mount::MsFlags::empty(), Some(opts.as_str()))
            .map_err(|e| {
                let _ = std::fs::remove_dir(&dir);
                EngineError::internal(format!("mount {}: {e}", dir.display()))
            })?;
        Ok(RootView { path: dir, mounted: true })
    }

    /// `HEAD /containers/{id}/archive`: stat a path inside the container.
    pub fn archive_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let rec = self.record(name)?;
        let view = self.root_view(&rec)?;
        stat_in(&view.path, path, name)
    }

    /// `GET /containers/{id}/archive`: tar of `path` (named by its last component) into `out`.
    pub fn archive_get(&self, name: &str, path: &str, out: impl Write) -> Result<()> {
        let rec = self.record(name)?;
        let view = self.root_view(&rec)?;
        stat_in(&view.path, path, name)?;
        let trimmed = path.trim_end_matches('/');
        let (src, archive_name) = if path.ends_with("/.") {
            (PathBuf::from(&path[..path.len() - 2]), Some(".".to_string()))
        } else {
            let base = Path::new(trimmed).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| ".".into());
            (PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed }), Some(base))
        };
        // Like Docker (which archives the rootfs and the volumes, not the container's view):
        // a running container's /proc, /sys and default /dev are there, empty.
        let empty_dirs = if view.mounted { Vec::new() } else { live_pseudo_dirs(rec.state.pid) };
        let inside = |d: &PathBuf| {
            let d = d.strip_prefix("/").unwrap_or(d);
            let p = Path::new(path.trim_start_matches('/'));
            p.starts_with(d) && (p != d || path.ends_with("/."))
        };
        if empty_dirs.iter().any(inside) {
            return Err(EngineError::not_found(format!("Could not find the file {path} in container {name}")));
        }
        let opts = berth_archive::PackOptions { src: Some(src), name: archive_name, type_bits: true, empty_dirs, ..Default::default() };
        berth_archive::pack(&view.path, out, &opts)?;
        Ok(())
    }

    /// `PUT /containers/{id}/archive`: extract a tar into directory `path` inside the container.
    pub fn archive_put(&self, name: &str, path: &str, tar: impl Read, no_overwrite_dir_non_dir: bool) -> Result<()> {
        let rec = self.record(name)?;
        if rec.host_config.readonly_rootfs.unwrap_or(false) && rec.state.running {
            return Err(EngineError::new(crate::error::ErrorKind::Forbidden, "container rootfs is marked read-only"));
        }
        let view = self.root_view(&rec)?;
        let st = stat_in(&view.path, path, name)?;
        if st.mode & (1 << 31) == 0 {
            return Err(EngineError::invalid(format!("extraction point is not a directory: {path}")));
        }
        let dir = berth_archive::open_in_root(&view.path, Path::new(path), berth_archive::OFlags::DIRECTORY | berth_archive::OFlags::RDONLY)?;
        use std::os::fd::AsFd;
        let opts = berth_archive::ApplyOptions {
            whiteouts: berth_archive::WhiteoutMode::Remove,
            no_overwrite_dir_non_dir,
            ..Default::default()
        };
        let rd = berth_archive::decompress(std::io::BufReader::new(tar), crate::image::MAX_LAYER_BYTES)?;
        berth_archive::apply_layer_at(dir.as_fd(), rd, &opts)?;
        Ok(())
    }

    /// `GET /containers/{id}/changes`: kind 0 = modified, 1 = added, 2 = deleted.
    pub fn changes(&self, name: &str) -> Result<Vec<(String, u8)>> {
        let rec = self.record(name)?;
        let upper = self.snapshots.fs_dir(&rec.snapshot)?;
        let s = self.snapshots.get(&rec.snapshot)?.ok_or_else(|| EngineError::not_found("snapshot"))?;
        let lowers = self.snapshots.lowers(s.parent.as_deref())?;
        let mut out = Vec::new();
        walk_changes(&upper, Path::new("/"), &lowers, &mut out)?;
        out.sort();
        Ok(out)
    }

    /// `GET /containers/{id}/export`: the container's whole filesystem as a tar.
    pub fn export(&self, name: &str, out: impl Write) -> Result<()> {
        let rec = self.record(name)?;
        // Always the overlay itself, never /proc/<pid>/root: export has no volumes or /proc.
        let m = self.snapshots.mounts(&rec.snapshot)?;
        let dir = self.config.exec_root.join("mnt").join(format!("{}-x{:08x}", &rec.id[..12], rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        nix::mount::mount(Some(m.source.as_str()), &dir, Some(m.fstype.as_str()), nix::mount::MsFlags::MS_RDONLY, Some(m.options.join(",").as_str()))
            .map_err(|e| EngineError::internal(format!("mount {}: {e}", dir.display())))?;
        let view = RootView { path: dir, mounted: true };
        let opts = berth_archive::PackOptions { one_file_system: true, type_bits: true, ..Default::default() };
        berth_archive::pack(&view.path, out, &opts)?;
        self.events.emit("container", "export", &rec.id, &[("name", &rec.name)]);
        Ok(())
    }

    /// `POST /commit`: a new image from the container's writable layer.
    pub fn commit_container(
        &self,
        name: &str,
        reference: Option<&str>,
        comment: Option<&str>,
        author: Option<&str>,
        changes: &[String],
        overrides: Option<bollard::models::ContainerConfig>,
    ) -> Result<ImageRecord> {
        let rec = self.record(name)?;
        let base = self.resolve_image(&rec.image)?;
        let base_cfg = self.image_config(&base)?;
        let upper = self.snapshots.fs_dir(&rec.snapshot)?;
        let parent_chain = base.layers.last().map(|l| l.chain_id.clone());
        // Pack the upper dir into a layer blob, then unpack it as a committed snapshot.
        let (r, w) = std::io::pipe()?;
        let upper2 = upper.clone();
        let packer = std::thread::spawn(move || -> Result<()> {
            let opts = berth_archive::PackOptions { overlay_upper: true, ..Default::default() };
            berth_archive::pack(&upper2, w, &opts)?;
            Ok(())
        });
        let layer = self.add_layer_from_tar(r, parent_chain.as_ref());
        packer.join().map_err(|_| EngineError::internal("pack thread panicked"))??;
        let layer = layer?;
        let mut cfg = base_cfg.config.clone().unwrap_or_default();
        let c = &rec.config;
        cfg.env = c.env.clone().or(cfg.env);
        cfg.cmd = c.cmd.clone().or(cfg.cmd);
        cfg.entrypoint = c.entrypoint.clone();
        cfg.working_dir = c.working_dir.clone().or(cfg.working_dir);
        cfg.user = c.user.clone().or(cfg.user);
        cfg.labels = c.labels.clone().or(cfg.labels);
        cfg.exposed_ports = c.exposed_ports.clone().or(cfg.exposed_ports);
        cfg.volumes = c.volumes.clone().or(cfg.volumes);
        cfg.stop_signal = c.stop_signal.clone().or(cfg.stop_signal);
        cfg.healthcheck = c.healthcheck.clone().or(cfg.healthcheck);
        if let Some(o) = overrides {
            if o.cmd.is_some() {
                cfg.cmd = o.cmd;
            }
            if o.entrypoint.is_some() {
                cfg.entrypoint = o.entrypoint;
            }
            if o.env.is_some() {
                cfg.env = o.env;
            }
            if o.labels.is_some() {
                cfg.labels = o.labels;
            }
        }
        for ch in changes {
            apply_change(&mut cfg, ch)?;
        }
        let now = crate::image::now_rfc3339();
        let mut diff_ids = base_cfg.rootfs.diff_ids.clone();
        diff_ids.push(layer.diff_id.clone());
        let mut history = base_cfg.history.clone();
        history.push(History {
            created: Some(now.clone()),
            created_by: Some(format!("{} {}", rec.path, rec.args.join(" ")).trim().to_string()),
            author: author.map(String::from),
            comment: comment.map(String::from).filter(|c| !c.is_empty()),
            empty_layer: None,
        });
        let config = ConfigFile {
            created: Some(now),
            author: author.map(String::from).filter(|a| !a.is_empty()),
            architecture: base_cfg.architecture.clone(),
            os: base_cfg.os.clone(),
            variant: base_cfg.variant.clone(),
            config: Some(cfg),
            rootfs: RootFs { typ: "layers".into(), diff_ids },
            history,
            extra: Default::default(),
        };
        let mut layers = base.layers.clone();
        layers.push(layer);
        let img = self.commit_image(&config, layers, Some(base.id.clone()))?;
        if let Some(r) = reference {
            self.tag_image(&img.id, r)?;
        }
        self.events.emit("container", "commit", &rec.id, &[("name", &rec.name)]);
        Ok(img)
    }
}

/// The pseudo filesystems of running container `pid` that an archive of its root leaves
/// empty: /proc, /sys, and /dev unless something other than a tmpfs is mounted there.
fn live_pseudo_dirs(pid: i64) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/proc"), PathBuf::from("/sys")];
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let dev_fs = info
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/dev"))
        .filter_map(|l| l.split(" - ").nth(1).and_then(|r| r.split(' ').next()))
        .next_back();
    if matches!(dev_fs, Some("tmpfs" | "devtmpfs")) {
        v.push(PathBuf::from("/dev"));
    }
    v
}

fn stat_in(root: &Path, path: &str, container: &str) -> Result<PathStat> {
    use std::os::fd::AsFd;
    let fd = berth_archive::open_in_root(root, Path::new(path), berth_archive::OFlags::PATH | berth_archive::OFlags::NOFOLLOW)
        .map_err(|e| match e.kind() {
            berth_archive::ArchiveErrorKind::NotFound => EngineError::not_found(format!("Could not find the file {path} in container {container}")),
            _ => EngineError::from(e),
        })?;
    let st = rustix::fs::fstat(fd.as_fd()).map_err(|e| EngineError::internal(format!("stat {path}: {e}")))?;
    let mode = st.st_mode;
    let link_target = if mode & libc::S_IFMT == libc::S_IFLNK {
        rustix::fs::readlinkat(fd.as_fd(), "", Vec::new()).map(|t| t.to_string_lossy().to_string()).unwrap_or_default()
    } else {
        String::new()
    };
    let name = Path::new(path.trim_end_matches('/')).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "/".into());
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default();
    Ok(PathStat { name, size: st.st_size, mode: go_mode(mode), mtime, link_target })
}

fn exists_in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    lowers.iter().any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk_changes(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<(String, u8)>) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let dir = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    let rd = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(_) => return Ok(()),
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let child = rel.join(&name);
        let md = match e.metadata() {
            Ok(m) => m,
            Err(_) => continue,
        };
        let ft = md.file_type();
        if ft.is_char_device() && md_rdev(&md) == 0 {
            out.push((child.display().to_string(), 2));
            continue;
        }
        let existed = exists_in_lowers(lowers, &child);
        out.push((child.display().to_string(), if existed { 0 } else { 1 }));
        if ft.is_dir() {
            walk_changes(upper, &child, lowers, out)?;
        }
    }
    Ok(())
}

fn md_rdev(md: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    md.rdev()
}
