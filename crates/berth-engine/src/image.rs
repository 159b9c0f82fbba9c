//! Images: configs, manifests and the records that tie them to layers and tags.
//!
//! An image's id is the digest of its config blob (as in Docker). Its record lists its layers
//! (diff id, chain id, the blob that holds the layer, media type); every layer is unpacked once
//! into a snapshot keyed by its chain id and shared by every image that has it.

use crate::digest::{chain_ids, Digest};
use crate::engine::Engine;
use crate::error::{EngineError, ErrorKind, Result};
use crate::meta::{IMAGES, TAGS};
use crate::reference::Reference;
use bollard::models::ImageConfig;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Cap on decompressed bytes of one layer (BOUND for compression bombs).
pub const MAX_LAYER_BYTES: u64 = 64 << 30;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

/// The image config blob (OCI image config, Docker's image JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The stored blob (compressed or not) this layer came from.
    pub blob: Digest,
    pub media_type: String,
    /// Size of the blob.
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest: Digest,
    pub layers: Vec<LayerRecord>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    #[serde(default)]
    pub parent: Option<Digest>,
    /// Unpacked size of all layers.
    pub size: u64,
    /// When this engine stored the image (for `prune --filter until`).
    #[serde(default)]
    pub stored_at: String,
}

impl ImageRecord {
    pub fn top_chain(&self) -> Option<String> {
        self.layers.last().map(|l| layer_key(&l.chain_id))
    }
}

/// Snapshot key of a committed layer.
pub fn layer_key(chain: &Digest) -> String {
    format!("layer:{}", chain.hex())
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A reader adapter copying everything read into a writer.
pub struct Tee<R, W> {
    pub r: R,
    pub w: W,
}
impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.w.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The default platform's architecture name as OCI spells it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

impl Engine {
    /// Store one uncompressed layer tar stream as a blob and unpack it on top of `parent` (a
    /// chain id). Returns the layer record.
    pub fn add_layer_from_tar(&self, tar: impl Read, parent: Option<&Digest>) -> Result<LayerRecord> {
        let mut w = self.content.writer()?;
        std::io::copy(&mut { tar }, &mut w)?;
        let size = w.size();
        let diff_id = w.commit(None)?;
        let chain_id = match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        };
        let rec = LayerRecord {
            diff_id: diff_id.clone(),
            chain_id,
            blob: diff_id,
            media_type: MT_OCI_LAYER.into(),
            size,
        };
        self.unpack_layer(&rec, parent)?;
        Ok(rec)
    }

    /// Unpack a stored layer blob into its snapshot (no-op when present), verifying its diff id.
    pub fn unpack_layer(&self, layer: &LayerRecord, parent: Option<&Digest>) -> Result<()> {
        let key = layer_key(&layer.chain_id);
        let parent_key = parent.map(layer_key);
        let blob = self.content.open_blob(&layer.blob)?;
        let expect = layer.diff_id.clone();
        self.snapshots.create_layer(&key, parent_key.as_deref(), |dir| {
            let rd = berth_archive::decompress(std::io::BufReader::with_capacity(256 << 10, blob), MAX_LAYER_BYTES)?;
            let mut dr = berth_archive::DigestReader::new(rd);
            let opts = berth_archive::ApplyOptions {
                whiteouts: berth_archive::WhiteoutMode::Overlay,
                ..Default::default()
            };
            let stats = berth_archive::apply_layer(dir, &mut dr, &opts).map_err(|e| match e {
                // name the host directory too: the path in the layer alone does not say which disk
                berth_archive::ArchiveError::NoSpace { path, source } => EngineError::internal(format!(
                    "unpacking layer into {}: {path}: {source}",
                    dir.display()
                )),
                e => e.into(),
            })?;
            // drain trailing zero blocks so the digest covers the whole stream
            std::io::copy(&mut dr, &mut std::io::sink())?;
            let got = dr.digest();
            if got != expect.as_str() {
                return Err(EngineError::invalid(format!(
                    "layer {}: diff id mismatch: config says {expect}, content is {got}",
                    layer.blob
                )));
            }
            Ok(stats.bytes)
        })
    }

    /// Write config + manifest blobs and the image record for an image whose layers are stored
    /// and unpacked. Returns the record (existing one if the same config was stored before).
    pub fn commit_image(&self, config: &ConfigFile, layers: Vec<LayerRecord>, parent: Option<Digest>) -> Result<ImageRecord> {
        let bytes = serde_json::to_vec(config)?;
        self.commit_image_bytes(&bytes, layers, parent, None)
    }

    pub fn commit_image_bytes(
        &self,
        config_bytes: &[u8],
        layers: Vec<LayerRecord>,
        parent: Option<Digest>,
        manifest: Option<Digest>,
    ) -> Result<ImageRecord> {
        let id = self.content.write(config_bytes)?;
        let manifest = match manifest {
            Some(m) => m,
            None => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(MT_OCI_MANIFEST.into()),
                    config: Descriptor {
                        media_type: MT_OCI_CONFIG.into(),
                        digest: id.clone(),
                        size: config_bytes.len() as u64,
                        annotations: None,
                        platform: None,
                    },
                    layers: layers
                        .iter()
                        .map(|l| Descriptor {
                            media_type: l.media_type.clone(),
                            digest: l.blob.clone(),
                            size: l.size,
                            annotations: None,
                            platform: None,
                        })
                        .collect(),
                    annotations: None,
                };
                self.content.write(&serde_json::to_vec(&m)?)?
            }
        };
        if let Some(old) = self.meta.get::<ImageRecord>(IMAGES, id.as_str())? {
            return Ok(old);
        }
        let size = layers
            .iter()
            .map(|l| self.snapshots.get(&layer_key(&l.chain_id)).ok().flatten().map(|s| s.size).unwrap_or(0))
            .sum();
        let rec = ImageRecord { id: id.clone(), manifest, layers, repo_digests: vec![], parent, size, stored_at: now_rfc3339() };
        crate::fault::point("image.commit.record");
        self.meta.put(IMAGES, id.as_str(), &rec)?;
        Ok(rec)
    }

    pub fn image_config(&self, img: &ImageRecord) -> Result<ConfigFile> {
        let bytes = self.content.read(&img.id)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Find an image by reference, full or short id, or `name@digest`.
    pub fn resolve_image(&self, name: &str) -> Result<ImageRecord> {
        // dockerd names the reference it looked for: `busybox` → `busybox:latest`
        let not_found = || {
            let last = name.rsplit('/').next().unwrap_or(name);
            let shown = if last.contains(':') || name.contains('@') { name.to_string() } else { format!("{name}:latest") };
            EngineError::not_found(format!("No such image: {shown}"))
        };
        // id forms
        let hexpart = name.strip_prefix("sha256:").unwrap_or(name);
        if hexpart.len() >= 4 && hexpart.len() <= 64 && hexpart.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
            if hexpart.len() == 64 {
                if let Some(r) = self.meta.get::<ImageRecord>(IMAGES, &format!("sha256:{hexpart}"))? {
                    return Ok(r);
                }
            } else {
                let matches: Vec<ImageRecord> = self
                    .meta
                    .list::<ImageRecord>(IMAGES)?
                    .into_iter()
                    .filter(|(k, _)| k[7..].starts_with(hexpart))
                    .map(|(_, v)| v)
                    .collect();
                if matches.len() == 1 {
                    return Ok(matches.into_iter().next().expect("len checked"));
                }
                if matches.len() > 1 && name.starts_with("sha256:") {
                    return Err(EngineError::invalid(format!("{name}: ambiguous image id")));
                }
            }
        }
        let r = Reference::parse(name).map_err(|_| not_found())?;
        if let Some(d) = &r.digest {
            let want = format!("{}@{}", r.name(), d);
            for (_, img) in self.meta.list::<ImageRecord>(IMAGES)? {
                if img.repo_digests.iter().any(|x| x == &want) || &img.manifest == d {
                    return Ok(img);
                }
            }
            return Err(not_found());
        }
        let key = format!("{}:{}", r.name(), r.tag_or_latest());
        let id: Option<String> = self.meta.get(TAGS, &key)?;
        match id {
            Some(id) => self.meta.get::<ImageRecord>(IMAGES, &id)?.ok_or_else(not_found),
            None => Err(not_found()),
        }
    }

    /// All tags (full references, `docker.io/library/x:tag`) pointing at each image id.
    pub fn tags_by_image(&self) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (r, id) in self.meta.list::<String>(TAGS)? {
            m.entry(id).or_default().push(r);
        }
        for v in m.values_mut() {
            v.sort();
        }
        Ok(m)
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.meta.list::<ImageRecord>(IMAGES)?.into_iter().map(|(_, v)| v).collect())
    }

    /// Point `reference` at image `id` (moving the tag if it existed).
    pub fn tag_image(&self, id: &Digest, reference: &str) -> Result<()> {
        let r = Reference::parse_tagged(reference)?;
        if r.digest.is_some() {
            return Err(EngineError::invalid("refusing to create a tag with a digest reference"));
        }
        let key = format!("{}:{}", r.name(), r.tag_or_latest());
        let old: Option<String> = self.meta.get(TAGS, &key)?;
        crate::fault::point("tag.update");
        self.meta.put(TAGS, &key, &id.to_string())?;
        crate::fault::point("tag.updated");
        if old.as_deref() != Some(id.as_str()) {
            self.events.emit("image", "tag", id.as_str(), &[("name", &r.familiar())]);
        }
        Ok(())
    }

    /// Remove an image or one of its tags, as `docker rmi` does.
    pub fn remove_image(&self, name: &str, force: bool, in_use: &dyn Fn(&Digest) -> Option<String>) -> Result<Vec<bollard::models::ImageDeleteResponseItem>> {
        let img = self.resolve_image(name)?;
        let tags = self.tags_by_image()?.remove(img.id.as_str()).unwrap_or_default();
        let by_ref = Reference::parse_tagged(name).ok().filter(|r| {
            let k = format!("{}:{}", r.name(), r.tag_or_latest());
            tags.contains(&k)
        });
        let mut out = Vec::new();
        // untag only, when named by a tag and other tags remain
        if let Some(r) = &by_ref {
            if tags.len() > 1 {
                let k = format!("{}:{}", r.name(), r.tag_or_latest());
                self.meta.delete(TAGS, &k)?;
                self.events.emit("image", "untag", img.id.as_str(), &[("name", &r.familiar())]);
                out.push(bollard::models::ImageDeleteResponseItem { untagged: Some(r.familiar()), deleted: None });
                // like dockerd: the last tag of a repository takes that repository's digest
                // references with it
                let repo = r.name();
                let repo_tagged = tags.iter().filter(|t| **t != k).any(|t| Reference::parse(t).is_ok_and(|x| x.name() == repo));
                if !repo_tagged {
                    let (gone, kept): (Vec<String>, Vec<String>) =
                        img.repo_digests.iter().cloned().partition(|d| Reference::parse(d).is_ok_and(|x| x.name() == repo));
                    if !gone.is_empty() {
                        let mut rec = img.clone();
                        rec.repo_digests = kept;
                        self.meta.put(IMAGES, rec.id.as_str(), &rec)?;
                        for d in gone {
                            let fam = Reference::parse(&d).map(|x| x.familiar()).unwrap_or(d);
                            out.push(bollard::models::ImageDeleteResponseItem { untagged: Some(fam), deleted: None });
                        }
                    }
                }
                return Ok(out);
            }
        } else if tags.len() > 1 && !force {
            return Err(EngineError::conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                img.id.short()
            )));
        }
        if let Some(cid) = in_use(&img.id) {
            if !force || by_ref.is_none() {
                let what = if by_ref.is_some() { name.to_string() } else { img.id.short().to_string() };
                let verb = if by_ref.is_some() { "remove repository reference" } else { "delete" };
                return Err(EngineError::conflict(format!(
                    "conflict: unable to {verb} \"{what}\" (must force) - container {} is using its referenced image {}",
                    &cid[..12.min(cid.len())],
                    img.id.short()
                )));
            }
            // forced removal of the last tag of an image in use: untag only, like Docker
            for t in &tags {
                self.meta.delete(TAGS, t)?;
                let fam = Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone());
                out.push(bollard::models::ImageDeleteResponseItem { untagged: Some(fam), deleted: None });
            }
            return Ok(out);
        }
        let mut b = self.meta.batch()?;
        for t in &tags {
            b.delete(TAGS, t)?;
        }
        b.delete(IMAGES, img.id.as_str())?;
        b.commit()?;
        for t in &tags {
            let fam = Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone());
            self.events.emit("image", "untag", img.id.as_str(), &[("name", &fam)]);
            out.push(bollard::models::ImageDeleteResponseItem { untagged: Some(fam), deleted: None });
        }
        for d in &img.repo_digests {
            out.push(bollard::models::ImageDeleteResponseItem { untagged: Some(d.clone()), deleted: None });
        }
        out.push(bollard::models::ImageDeleteResponseItem { untagged: None, deleted: Some(img.id.to_string()) });
        // like dockerd, the layers no other image uses are listed as deleted too (top first)
        let still_used: std::collections::HashSet<String> =
            self.list_images()?.iter().flat_map(|i| i.layers.iter().map(|l| l.chain_id.to_string())).collect();
        for l in img.layers.iter().rev() {
            if !still_used.contains(&l.chain_id.to_string()) {
                out.push(bollard::models::ImageDeleteResponseItem { untagged: None, deleted: Some(l.chain_id.to_string()) });
            }
        }
        self.events.emit("image", "delete", img.id.as_str(), &[]);
        self.gc_images()?;
        Ok(out)
    }

    /// Remove snapshots and blobs no image references any more.
    pub fn gc_images(&self) -> Result<u64> {
        let _g = self.gc_lock.lock().map_err(|_| EngineError::internal("gc lock poisoned"))?;
        let images = self.list_images()?;
        let mut keep_snap = std::collections::HashSet::new();
        let mut keep_blob = std::collections::HashSet::new();
        for img in &images {
            keep_blob.insert(img.id.clone());
            keep_blob.insert(img.manifest.clone());
            for l in &img.layers {
                keep_snap.insert(layer_key(&l.chain_id));
                keep_blob.insert(l.blob.clone());
            }
        }
        // pinned digests protect blobs, and snapshots when they are chain ids
        for b in self.pinned_blobs() {
            keep_snap.insert(layer_key(&b));
            keep_blob.insert(b);
        }
        let mut freed = 0;
        // children first: an unreferenced chain goes in one GC, not one layer per GC
        loop {
            let mut removed = false;
            for (key, rec) in self.snapshots.list()? {
                if !rec.active && !key.starts_with("init:") && !keep_snap.contains(&key) && !self.snapshot_has_children(&key)? {
                    freed += rec.size;
                    self.snapshots.remove(&key)?;
                    removed = true;
                }
            }
            if !removed {
                break;
            }
        }
        for d in self.content.list()? {
            if !keep_blob.contains(&d) {
                freed += self.content.size(&d).unwrap_or(0);
                self.content.delete(&d)?;
            }
        }
        Ok(freed)
    }

    fn snapshot_has_children(&self, key: &str) -> Result<bool> {
        Ok(self.snapshots.list()?.iter().any(|(_, r)| r.parent.as_deref() == Some(key)))
    }

    /// `docker import`: a rootfs tar (optionally compressed) becomes a one-layer image.
    pub fn import_image(&self, src: impl Read, changes: &[String], message: Option<&str>, reference: Option<&str>) -> Result<ImageRecord> {
        if let Some(r) = reference {
            Reference::parse_tagged(r)?;
        }
        let mut cfg = ImageConfig::default();
        for c in changes {
            apply_change(&mut cfg, c)?;
        }
        let rd = berth_archive::decompress(std::io::BufReader::with_capacity(256 << 10, src), MAX_LAYER_BYTES)?;
        // Validate while storing: parse the stream as tar first into the blob, then unpack from it.
        let layer = self.add_layer_from_tar(rd, None)?;
        let now = now_rfc3339();
        let config = ConfigFile {
            created: Some(now.clone()),
            architecture: host_arch().into(),
            os: "linux".into(),
            config: Some(cfg),
            rootfs: RootFs { typ: "layers".into(), diff_ids: vec![layer.diff_id.clone()] },
            history: vec![History {
                created: Some(now),
                // dockerd: no CreatedBy, and "Imported from <src>" unless a message is given
                created_by: None,
                comment: Some(message.filter(|m| !m.is_empty()).unwrap_or("Imported from -").to_string()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let img = self.commit_image(&config, vec![layer], None)?;
        if let Some(r) = reference {
            self.tag_image(&img.id, r)?;
        }
        self.events.emit("image", "import", img.id.as_str(), &[]);
        Ok(img)
    }
}

/// Apply one Dockerfile-style `--change` instruction to an image config (import/commit).
pub fn apply_change(cfg: &mut ImageConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (instr, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let list = |s: &str| -> Vec<String> {
        if s.starts_with('[') {
            if let Ok(v) = serde_json::from_str::<Vec<String>>(s) {
                return v;
            }
        }
        vec!["/bin/sh".into(), "-c".into(), s.to_string()]
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(list(rest)),
        "ENTRYPOINT" => cfg.entrypoint = Some(list(rest)),
        "WORKDIR" => cfg.working_dir = Some(rest.to_string()),
        "USER" => cfg.user = Some(rest.to_string()),
        "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
        "ENV" => {
            let env = cfg.env.get_or_insert_with(Vec::new);
            let pairs: Vec<(String, String)> = if let Some((k, v)) = rest.split_once('=') {
                if k.contains(char::is_whitespace) {
                    let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    vec![(k.into(), v.trim().into())]
                } else {
                    // k=v k2=v2 (simple split; quotes trimmed)
                    let _ = v;
                    rest.split_whitespace()
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                        .collect()
                }
            } else {
                let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                vec![(k.into(), v.trim().into())]
            };
            for (k, v) in pairs {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(Default::default);
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    labels.insert(k.trim_matches('"').into(), v.trim_matches('"').into());
                }
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(Vec::new);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
        }
        "VOLUME" => {
            let vols = cfg.volumes.get_or_insert_with(Vec::new);
            let items = if rest.starts_with('[') {
                serde_json::from_str::<Vec<String>>(rest).map_err(|e| EngineError::invalid(format!("VOLUME: {e}")))?
            } else {
                rest.split_whitespace().map(String::from).collect()
            };
            vols.extend(items);
        }
        "ONBUILD" => cfg.on_build.get_or_insert_with(Vec::new).push(rest.to_string()),
        "" => {}
        other => {
            return Err(EngineError::invalid(format!(
                "{other} is not a valid change command"
            )))
        }
    }
    Ok(())
}

impl From<ErrorKind> for EngineError {
    fn from(k: ErrorKind) -> Self {
        EngineError::new(k, format!("{k:?}"))
    }
}

pub fn chain_of(layers: &[Digest]) -> Vec<Digest> {
    chain_ids(layers)
}
