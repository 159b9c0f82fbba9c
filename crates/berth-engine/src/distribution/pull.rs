//! `pull`: resolve a reference to one platform's manifest, fetch the config, then download
//! every missing layer in parallel, unpacking each one while it arrives.
//!
//! Per layer, an async task reads the HTTP body (retrying with `Range` from the byte it got
//! to) and hands chunks to a blocking thread that appends them to the resumable ingest,
//! hashes them and feeds them through decompression into `apply_layer` in the layer's
//! snapshot directory. The thread only lets the snapshot commit after the blob's digest and
//! size are verified (the ingest is then renamed into the content store) and the
//! uncompressed stream's digest equals the config's diff id.

use super::client::{Body, Session};
use super::ingest::Ingest;
use super::{DistributionError, DistributionErrorKind, Progress, ProgressSink, Result};
use crate::digest::{chain_ids, Digest};
use crate::engine::Engine;
use crate::image::*;
use crate::meta::IMAGES;
use crate::reference::Reference;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Manifests, indexes and configs larger than this are refused before they are read.
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// Most layers accepted in one image.
pub const MAX_LAYERS: usize = 500;
/// Largest layer blob accepted (descriptor size).
pub const MAX_BLOB: u64 = 1 << 40;
/// Deepest index nesting followed.
const MAX_INDEX_DEPTH: usize = 4;

pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's platform when unset.
    pub platform: Option<String>,
    pub creds: Option<super::Credentials>,
    /// Pull every tag of the repository (`pull -a`).
    pub all_tags: bool,
}

#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// Familiar reference pulled (`busybox:latest`).
    pub reference: String,
    /// The digest the reference resolved to (index or manifest): the repo digest.
    pub digest: Digest,
    pub image_id: Digest,
    /// False when the image was already complete locally.
    pub downloaded: bool,
}

/// An OCI platform (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn host() -> Self {
        let arch = host_arch().to_string();
        let variant = match arch.as_str() {
            "arm64" => Some("v8".to_string()),
            _ => None,
        };
        Self { os: "linux".into(), architecture: arch, variant }
    }

    /// Parse `os[/arch[/variant]]`, normalising like containerd (`x86_64` → `amd64`, `aarch64` → `arm64`).
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(DistributionError::new(DistributionErrorKind::InvalidInput, format!("invalid platform {s:?}: expected os/arch[/variant]")));
        }
        let norm_arch = |a: &str| match a {
            "x86_64" | "x86-64" => "amd64".to_string(),
            "aarch64" => "arm64".to_string(),
            "armhf" => "arm".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let mut p = Self::host();
        p.os = parts[0].to_ascii_lowercase();
        if let Some(a) = parts.get(1) {
            p.architecture = norm_arch(a);
            p.variant = parts.get(2).map(|v| v.to_string());
            if p.architecture == "arm64" && p.variant.is_none() {
                p.variant = Some("v8".into());
            }
            if p.architecture == "arm" && p.variant.is_none() {
                p.variant = Some("v7".into());
            }
        }
        Ok(p)
    }

    /// How well an index entry's platform matches: None when it does not, lower is better.
    fn score(&self, v: &serde_json::Value) -> Option<u32> {
        let os = v["os"].as_str()?;
        let arch = v["architecture"].as_str()?;
        if os != self.os || arch != self.architecture {
            return None;
        }
        let variant = v["variant"].as_str();
        match (&self.variant, variant) {
            (None, None) => Some(0),
            (None, Some(_)) => Some(1),
            (Some(w), Some(g)) if w == g => Some(0),
            // arm64 images without variant are v8
            (Some(w), None) if self.architecture == "arm64" && w == "v8" => Some(0),
            (Some(_), None) => Some(2),
            // arm/v7 can run arm/v6 and v5
            (Some(w), Some(g)) if self.architecture == "arm" && g < w.as_str() => Some(3),
            _ => None,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A fetched, verified manifest or index.
pub struct Document {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: String,
    pub json: serde_json::Value,
}

impl Document {
    pub fn is_index(&self) -> bool {
        self.media_type == MT_OCI_INDEX || self.media_type == MT_DOCKER_LIST
    }
}

/// Validate a manifest/index document against the transport's content type (CVE-2021-41190)
/// and decide what it is.
pub fn classify(bytes: &[u8], content_type: Option<&str>) -> Result<(serde_json::Value, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| DistributionError::invalid(format!("invalid manifest: {e}")))?;
    if !v.is_object() {
        return Err(DistributionError::invalid("invalid manifest: not a JSON object"));
    }
    if v["schemaVersion"].as_u64() == Some(1) {
        return Err(DistributionError::invalid(
            "unsupported manifest format: Docker Image manifest version 2, schema 1 is no longer supported",
        ));
    }
    let has_manifests = !v["manifests"].is_null();
    let has_image = !v["layers"].is_null() || !v["config"].is_null();
    if has_manifests && has_image {
        return Err(DistributionError::invalid("invalid manifest: document has both manifests and layers/config (ambiguous)"));
    }
    let known = [MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST];
    let body_mt = v["mediaType"].as_str();
    let ct = content_type.filter(|c| known.contains(c));
    if let (Some(b), Some(c)) = (body_mt, ct) {
        if b != c {
            return Err(DistributionError::invalid(format!("invalid manifest: mediaType {b} does not match Content-Type {c}")));
        }
    }
    let mt = body_mt.or(ct).map(String::from).unwrap_or_else(|| if has_manifests { MT_OCI_INDEX.into() } else { MT_OCI_MANIFEST.into() });
    let is_index = mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST;
    if is_index && has_image || !is_index && has_manifests {
        return Err(DistributionError::invalid(format!("invalid manifest: content does not match media type {mt}")));
    }
    if !known.contains(&mt.as_str()) {
        return Err(DistributionError::invalid(format!("unsupported manifest media type {mt}")));
    }
    Ok((v, mt))
}

/// GET a manifest or index by tag or digest, verifying the digest on the exact bytes.
pub async fn fetch_document(sess: &Session, reference: &str, expected: Option<&Digest>) -> Result<Document> {
    let url = sess.url(&format!("manifests/{reference}"));
    let (bytes, ct, header_digest) = sess.get_small(&url, ACCEPT, MAX_DOCUMENT).await.map_err(|e| {
        if e.kind() == DistributionErrorKind::NotFound {
            DistributionError::new(DistributionErrorKind::NotFound, format!("manifest for {}/{}:{reference} not found: manifest unknown: manifest unknown", sess.domain, sess.repo).replace(":sha256:", "@sha256:"))
        } else {
            e
        }
    })?;
    let digest = Digest::of(&bytes);
    if let Some(exp) = expected {
        if exp != &digest {
            return Err(DistributionError::invalid(format!("manifest verification failed for digest {exp}")));
        }
    }
    if let Some(h) = header_digest.as_deref().and_then(|h| Digest::parse(h).ok()) {
        if h != digest && expected.is_none() {
            return Err(DistributionError::invalid(format!("manifest verification failed for digest {h}")));
        }
    }
    let (json, media_type) = classify(&bytes, ct.as_deref())?;
    Ok(Document { bytes, digest, media_type, json })
}

/// Pick the manifest for `platform` from an index (Docker's order: exact match first).
pub fn choose_platform(index: &serde_json::Value, platform: &Platform) -> Result<Descriptor> {
    let entries: Vec<Descriptor> = serde_json::from_value(index["manifests"].clone()).map_err(|e| DistributionError::invalid(format!("invalid index: {e}")))?;
    let mut best: Option<(u32, Descriptor)> = None;
    for d in entries {
        let Some(p) = d.platform.as_ref() else { continue };
        if let Some(s) = platform.score(p) {
            if best.as_ref().is_none_or(|(b, _)| s < *b) {
                best = Some((s, d));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        DistributionError::new(DistributionErrorKind::NotFound, format!("no matching manifest for {platform} in the manifest list entries"))
    })
}

/// Layer media types this client unpacks.
fn check_layer(d: &Descriptor) -> Result<()> {
    let mt = d.media_type.as_str();
    if mt.contains("foreign") || mt.contains("nondistributable") {
        return Err(DistributionError::invalid(format!("layer {}: foreign layers ({mt}) are not supported", d.digest)));
    }
    if ![MT_DOCKER_LAYER_GZIP, MT_DOCKER_LAYER, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD].contains(&mt) {
        return Err(DistributionError::invalid(format!("layer {}: unsupported media type {mt}", d.digest)));
    }
    if d.size > MAX_BLOB {
        return Err(DistributionError::invalid(format!("layer {}: size {} is too large", d.digest, d.size)));
    }
    Ok(())
}

/// One lock per blob path: the same blob wanted by concurrent pulls is fetched once.
fn blob_lock(path: PathBuf) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, std::sync::Weak<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut m = match map.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    if let Some(l) = m.get(&path).and_then(|w| w.upgrade()) {
        return l;
    }
    m.retain(|_, w| w.strong_count() > 0);
    let l = Arc::new(tokio::sync::Mutex::new(()));
    m.insert(path, Arc::downgrade(&l));
    l
}

/// Keeps blobs out of GC while a pull or push uses them.
pub(crate) struct Pins {
    eng: Arc<Engine>,
    list: Mutex<Vec<Digest>>,
}
impl Pins {
    pub(crate) fn new(eng: Arc<Engine>) -> Self {
        Self { eng, list: Mutex::new(Vec::new()) }
    }
    pub(crate) fn pin(&self, d: &Digest) {
        self.eng.pin(d);
        if let Ok(mut l) = self.list.lock() {
            l.push(d.clone());
        }
    }
}
impl Drop for Pins {
    fn drop(&mut self) {
        if let Ok(l) = self.list.lock() {
            for d in l.iter() {
                self.eng.unpin(d);
            }
        }
    }
}

/// `docker pull`.
pub async fn pull(eng: Arc<Engine>, reference: &str, opts: &PullOptions, sink: ProgressSink) -> Result<PullOutcome> {
    let r = Reference::parse(reference)?;
    if opts.all_tags {
        if r.tag.is_some() || r.digest.is_some() {
            return Err(DistributionError::new(DistributionErrorKind::InvalidInput, "tag can't be used with --all-tags/-a"));
        }
        let sess = Session::open(&r.domain, &r.path, opts.creds.clone(), "pull").await?;
        let tags = list_tags(&sess).await?;
        let mut last = None;
        for t in tags {
            let mut one = r.clone();
            one.tag = Some(t);
            last = Some(pull_one(eng.clone(), &one, &sess, opts, &sink).await?);
        }
        return last.ok_or_else(|| DistributionError::new(DistributionErrorKind::NotFound, format!("no tags found for {}", r.familiar_name())));
    }
    let r = Reference::parse_tagged(reference)?;
    if r.domain == crate::reference::DEFAULT_DOMAIN {
        for m in &super::client::options().mirrors {
            let res = match Session::open_mirror(m, &r.path).await {
                Ok(sess) => pull_one(eng.clone(), &r, &sess, opts, &sink).await,
                Err(e) => Err(e),
            };
            match res {
                Ok(o) => return Ok(o),
                Err(e) => tracing::info!(mirror = %m, "pull {}: mirror failed, trying the next source: {e}", r.familiar()),
            }
        }
    }
    let sess = Session::open(&r.domain, &r.path, opts.creds.clone(), "pull").await.map_err(|e| e.context(format!("pull {}", r.familiar())))?;
    pull_one(eng, &r, &sess, opts, &sink).await
}

/// Tags of the session's repository.
pub async fn list_tags(sess: &Session) -> Result<Vec<String>> {
    let url = sess.url("tags/list");
    let (bytes, _, _) = sess.get_small(&url, "application/json", MAX_DOCUMENT).await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| DistributionError::invalid(format!("{url}: {e}")))?;
    Ok(v["tags"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect()).unwrap_or_default())
}

async fn pull_one(eng: Arc<Engine>, r: &Reference, sess: &Session, opts: &PullOptions, sink: &ProgressSink) -> Result<PullOutcome> {
    let platform = match &opts.platform {
        Some(p) if !p.is_empty() => Platform::parse(p)?,
        _ => Platform::host(),
    };
    let state = super::state_dir(&eng);
    super::ingest::expire(&state.join("ingest"));
    let target = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let top = fetch_document(sess, &target, r.digest.as_ref()).await.map_err(|e| pull_error(r, e))?;
    (sink)(Progress::layer(r.tag.clone().filter(|_| r.digest.is_none()).unwrap_or_else(|| target.clone()), format!("Pulling from {}", r.familiar_name().trim_start_matches(&format!("{}/", r.domain)))));
    let mut doc_digest = top.digest.clone();
    let mut doc = top;
    let repo_digest = doc.digest.clone();
    let mut depth = 0;
    while doc.is_index() {
        depth += 1;
        if depth > MAX_INDEX_DEPTH {
            return Err(DistributionError::invalid("invalid index: nesting too deep"));
        }
        let d = choose_platform(&doc.json, &platform)?;
        doc = fetch_document(sess, d.digest.as_str(), Some(&d.digest)).await?;
        doc_digest = doc.digest.clone();
    }
    let manifest: Manifest = serde_json::from_value(doc.json.clone()).map_err(|e| DistributionError::invalid(format!("invalid manifest {doc_digest}: {e}")))?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(DistributionError::invalid(format!("invalid manifest {doc_digest}: {} layers (limit {MAX_LAYERS})", manifest.layers.len())));
    }
    if manifest.config.size > MAX_DOCUMENT {
        return Err(DistributionError::invalid(format!("invalid manifest {doc_digest}: config of {} bytes is too large", manifest.config.size)));
    }
    for l in &manifest.layers {
        check_layer(l)?;
    }
    let pins = Pins::new(eng.clone());
    // config
    let cfg_digest = manifest.config.digest.clone();
    pins.pin(&cfg_digest);
    let config_bytes = if eng.content.exists(&cfg_digest) {
        Bytes::from(eng.content.read(&cfg_digest)?)
    } else {
        let url = sess.url(&format!("blobs/{cfg_digest}"));
        let (b, _, _) = sess.get_small(&url, "*/*", MAX_DOCUMENT).await?;
        if Digest::of(&b) != cfg_digest || b.len() as u64 != manifest.config.size {
            return Err(DistributionError::invalid(format!("image config verification failed for digest {cfg_digest}")));
        }
        b
    };
    let cfg: ConfigFile = serde_json::from_slice(&config_bytes).map_err(|e| DistributionError::invalid(format!("invalid image config {cfg_digest}: {e}")))?;
    if depth == 0 && opts.platform.as_deref().is_some_and(|p| !p.is_empty()) {
        // A single-platform image pulled with an explicit --platform must match it (Docker).
        let got = Platform { os: cfg.os.clone(), architecture: cfg.architecture.clone(), variant: cfg.variant.clone() };
        let compatible = platform.score(&serde_json::json!({"os": got.os, "architecture": got.architecture, "variant": got.variant})).is_some();
        if !compatible {
            return Err(DistributionError::new(
                DistributionErrorKind::NotFound,
                format!("image with reference {} was found but its platform ({got}) does not match the specified platform ({platform})", r.familiar()),
            ));
        }
    }
    if cfg.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(DistributionError::invalid(format!(
            "invalid image {cfg_digest}: config lists {} layers, manifest {}",
            cfg.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let tag_key = r.tag.as_ref().filter(|_| r.digest.is_none()).map(|t| format!("{}:{t}", r.name()));
    let existing = eng.meta.get::<ImageRecord>(IMAGES, cfg_digest.as_str())?;
    let complete = existing.as_ref().is_some_and(|img| img.layers.iter().all(|l| eng.snapshots.get(&layer_key(&l.chain_id)).ok().flatten().is_some()));
    let chains = chain_ids(&cfg.rootfs.diff_ids);
    let mut downloaded = false;
    let img = if complete {
        existing.ok_or_else(|| DistributionError::internal("image record vanished"))?
    } else {
        downloaded = true;
        for l in &manifest.layers {
            pins.pin(&l.digest);
        }
        // and their snapshots (by chain id): a GC between a layer's unpack and the image
        // record must not take the layer away (HARDENING B10)
        for c in &chains {
            pins.pin(c);
        }
        // Layers unpacked for another image (same chain) are reused as they are, even when
        // that image holds them in another blob (imported, or compressed differently).
        let mut local: HashMap<Digest, LayerRecord> = HashMap::new();
        for img in eng.list_images()? {
            for l in img.layers {
                if eng.content.exists(&l.blob) {
                    local.entry(l.chain_id.clone()).or_insert(l);
                }
            }
        }
        let mut reuse: Vec<Option<LayerRecord>> = Vec::new();
        // plan: announce every layer first, as Docker does
        for (i, l) in manifest.layers.iter().enumerate() {
            let snap = eng.snapshots.get(&layer_key(&chains[i]))?.is_some();
            let substitute = if snap && !eng.content.exists(&l.digest) { local.get(&chains[i]).cloned() } else { None };
            let have = snap && (eng.content.exists(&l.digest) || substitute.is_some());
            if let Some(s) = &substitute {
                pins.pin(&s.blob);
            }
            reuse.push(substitute);
            (sink)(Progress::layer(l.digest.short(), if have { "Already exists" } else { "Pulling fs layer" }));
        }
        let n_dl = super::client::options().max_concurrent_downloads.max(1);
        let mut pending = 0;
        for (i, l) in manifest.layers.iter().enumerate() {
            let have = reuse[i].is_some() || eng.content.exists(&l.digest);
            if !have {
                pending += 1;
                if pending > n_dl {
                    (sink)(Progress::layer(l.digest.short(), "Waiting"));
                }
            }
        }
        let n = super::client::options().max_concurrent_downloads.max(1);
        let jobs: Vec<LayerJob> = manifest
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerJob {
                desc: l.clone(),
                diff: cfg.rootfs.diff_ids[i].clone(),
                chain: chains[i].clone(),
                parent: if i == 0 { None } else { Some(chains[i - 1].clone()) },
            })
            .collect();
        let jobs = jobs.into_iter().zip(reuse).map(|(job, substitute)| {
            let eng = eng.clone();
            let sink = sink.clone();
            async move {
                match substitute {
                    Some(rec) => Ok(rec),
                    None => fetch_layer(sess, eng, job, sink).await,
                }
            }
        });
        let layers: Vec<LayerRecord> = futures::stream::iter(jobs).buffered(n).try_collect().await?;
        let mdigest = eng.content.write(&doc.bytes)?;
        pins.pin(&mdigest);
        let eng2 = eng.clone();
        let cb = config_bytes.clone();
        tokio::task::spawn_blocking(move || eng2.commit_image_bytes(&cb, layers, None, Some(mdigest)))
            .await
            .map_err(|e| DistributionError::internal(e.to_string()))??
    };
    crate::fault::point("pull.image.committed");
    // repo digest and tag
    let mut rec = eng.meta.get::<ImageRecord>(IMAGES, img.id.as_str())?.unwrap_or(img);
    let rd = format!("{}@{}", r.name(), repo_digest);
    if !rec.repo_digests.contains(&rd) {
        rec.repo_digests.push(rd);
        eng.meta.put(IMAGES, rec.id.as_str(), &rec)?;
    }
    let mut changed = downloaded;
    if let Some(k) = &tag_key {
        let old: Option<String> = eng.meta.get(crate::meta::TAGS, k)?;
        if old.as_deref() != Some(rec.id.as_str()) {
            changed = true;
        }
        eng.tag_image(&rec.id, k)?;
    }
    super::push::record_source(&eng, &cfg_digest, &r.domain, &r.path);
    for l in &manifest.layers {
        super::push::record_source(&eng, &l.digest, &r.domain, &r.path);
    }
    (sink)(Progress::status(format!("Digest: {repo_digest}")));
    let fam = r.familiar();
    (sink)(Progress::status(if changed {
        format!("Status: Downloaded newer image for {fam}")
    } else {
        format!("Status: Image is up to date for {fam}")
    }));
    eng.events.emit("image", "pull", &fam, &[("name", &r.familiar_name())]);
    drop(pins);
    Ok(PullOutcome { reference: fam, digest: repo_digest, image_id: rec.id, downloaded })
}

fn pull_error(r: &Reference, e: DistributionError) -> DistributionError {
    match e.kind() {
        DistributionErrorKind::Unauthorized | DistributionErrorKind::Denied => {
            let m = e.message();
            let detail = ["unauthorized", "denied"].iter().filter_map(|k| m.find(k)).min().map(|i| &m[i..]).unwrap_or(m);
            DistributionError::new(
                e.kind(),
                format!("pull access denied for {}, repository does not exist or may require 'docker login': {detail}", r.familiar_name()),
            )
        }
        _ => e,
    }
}

struct LayerJob {
    desc: Descriptor,
    diff: Digest,
    chain: Digest,
    parent: Option<Digest>,
}

impl LayerJob {
    fn record(&self) -> LayerRecord {
        LayerRecord {
            diff_id: self.diff.clone(),
            chain_id: self.chain.clone(),
            blob: self.desc.digest.clone(),
            media_type: self.desc.media_type.clone(),
            size: self.desc.size,
        }
    }
}

async fn fetch_layer(sess: &Session, eng: Arc<Engine>, job: LayerJob, sink: ProgressSink) -> Result<LayerRecord> {
    let id = job.desc.digest.short().to_string();
    let lock = blob_lock(eng.content.path(&job.desc.digest));
    let _held = lock.lock().await;
    let key = layer_key(&job.chain);
    let has_snap = eng.snapshots.get(&key)?.is_some();
    let has_blob = eng.content.exists(&job.desc.digest);
    let rec = job.record();
    if has_snap && has_blob {
        return Ok(rec);
    }
    if has_blob {
        (sink)(Progress::layer(&id, "Extracting"));
        let eng2 = eng.clone();
        let r2 = rec.clone();
        let parent = job.parent.clone();
        tokio::task::spawn_blocking(move || eng2.unpack_layer(&r2, parent.as_ref()))
            .await
            .map_err(|e| DistributionError::internal(e.to_string()))??;
        (sink)(Progress::layer(&id, "Pull complete"));
        return Ok(rec);
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(64);
    let (off_tx, off_rx) = tokio::sync::oneshot::channel::<u64>();
    let ingest_dir = super::state_dir(&eng).join("ingest");
    let worker = {
        let eng = eng.clone();
        let desc = job.desc.clone();
        let diff = job.diff.clone();
        let parent_key = job.parent.as_ref().map(layer_key);
        let unpack = !has_snap;
        tokio::task::spawn_blocking(move || consume(&eng, &ingest_dir, &desc, &diff, &key, parent_key.as_deref(), unpack, rx, off_tx))
    };
    let produced = match off_rx.await {
        Ok(offset) => produce(sess, &job.desc, offset, &tx, &sink, &id).await,
        Err(_) => Ok(()), // the worker failed before starting; its error is reported below
    };
    match &produced {
        Ok(()) => {
            if !has_snap {
                (sink)(Progress::layer(&id, "Extracting"));
            }
            let _ = tx.send(Chunk::End).await;
        }
        Err((e, discard)) => {
            let _ = tx.send(Chunk::Fail(e.message().to_string(), *discard)).await;
        }
    }
    drop(tx);
    let worked = worker.await.map_err(|e| DistributionError::internal(e.to_string()))?;
    if let Err((e, _)) = produced {
        return Err(e.context(format!("layer {}", job.desc.digest)));
    }
    worked?;
    (sink)(Progress::layer(&id, "Pull complete"));
    Ok(rec)
}

enum Chunk {
    Data(Bytes),
    End,
    /// A failure on the network side; `true` when the partial data must be discarded.
    Fail(String, bool),
}

/// Download `desc` from byte `pos` on, sending chunks to the worker. Retries cut or stalled
/// transfers with `Range` a bounded number of times.
async fn produce(
    sess: &Session,
    desc: &Descriptor,
    mut pos: u64,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
    sink: &ProgressSink,
    id: &str,
) -> std::result::Result<(), (DistributionError, bool)> {
    let opts = super::client::options();
    let size = desc.size;
    let url = sess.url(&format!("blobs/{}", desc.digest));
    let mut failures = 0u32;
    let mut last_report = Instant::now() - Duration::from_secs(1);
    if pos > 0 && pos < size {
        tracing::info!(digest = %desc.digest, offset = pos, "pull: resuming layer download");
    }
    while pos < size {
        let headers: Vec<(&str, String)> = if pos > 0 { vec![("Range", format!("bytes={pos}-"))] } else { vec![] };
        let resp = sess.send(Method::GET, &url, &headers, &Body::Empty).await.map_err(|e| (e, false))?;
        let status = resp.status();
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err((DistributionError::invalid(format!("blob {}: registry refused range from {pos}", desc.digest)), true));
        }
        let resp = sess.check(resp, &format!("blob {}", desc.digest)).await.map_err(|e| (e, false))?;
        let mut skip = 0u64;
        if pos > 0 {
            if status == StatusCode::PARTIAL_CONTENT {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start.is_some_and(|s| s != pos) {
                    return Err((DistributionError::invalid(format!("blob {}: registry answered a different range", desc.digest)), false));
                }
            } else {
                skip = pos; // the registry ignored Range: drop what we already have
            }
        }
        let mut resp = resp;
        let cut = loop {
            match resp.chunk().await {
                Ok(Some(mut c)) => {
                    if skip > 0 {
                        let n = (skip.min(c.len() as u64)) as usize;
                        skip -= n as u64;
                        c = c.slice(n..);
                        if c.is_empty() {
                            continue;
                        }
                    }
                    if pos + c.len() as u64 > size {
                        return Err((
                            DistributionError::invalid(format!("blob {}: registry sent more than the expected {size} bytes", desc.digest)),
                            true,
                        ));
                    }
                    pos += c.len() as u64;
                    if tx.send(Chunk::Data(c)).await.is_err() {
                        return Ok(()); // the worker stopped: it reports why
                    }
                    if last_report.elapsed() > Duration::from_millis(100) {
                        last_report = Instant::now();
                        (sink)(Progress { id: Some(id.to_string()), status: "Downloading".into(), current: Some(pos), total: Some(size), aux: None });
                    }
                }
                Ok(None) if pos >= size => break None,
                Ok(None) => break Some(format!("connection closed after {pos} of {size} bytes")),
                Err(e) => break Some(super::client::error_chain(&e)),
            }
        };
        if let Some(why) = cut {
            failures += 1;
            if failures >= opts.max_attempts {
                return Err((
                    DistributionError::unavailable(format!("download of blob {} failed after {failures} attempts: {why}", desc.digest)),
                    false,
                ));
            }
            let delay = super::client::retry_delay(opts, failures, &Default::default());
            tracing::info!(digest = %desc.digest, pos, ?delay, "pull: {why}; resuming");
            tokio::time::sleep(delay).await;
        }
    }
    (sink)(Progress::layer(id, "Verifying Checksum"));
    (sink)(Progress::layer(id, "Download complete"));
    Ok(())
}

/// The unpacker's byte source: chunks forwarded by the verifier thread. It ends only after
/// the verifier has checked the blob's digest and size (and committed it); any failure
/// becomes a read error.
struct Source {
    rx: std::sync::mpsc::Receiver<Chunk>,
    pending: Bytes,
    done: bool,
    failed: Option<String>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(std::io::Error::other(e.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending = self.pending.slice(n..);
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(b)) => self.pending = b,
                Ok(Chunk::End) => self.done = true,
                Ok(Chunk::Fail(msg, _)) => {
                    self.failed = Some(msg.clone());
                    return Err(std::io::Error::other(msg));
                }
                Err(_) => {
                    self.failed = Some("download aborted".into());
                    return Err(std::io::Error::other("download aborted"));
                }
            }
        }
    }
}

/// The verifier: replays the ingest's existing prefix, then appends network chunks to the
/// ingest (hashing them) and forwards every chunk to the unpacker; at the end it verifies and
/// commits the blob and tells the unpacker whether the stream is good. It keeps going when
/// the unpacker stops early, so corrupt transfers are told apart from bad layers.
fn verify(
    eng: &Engine,
    mut ing: Ingest,
    replay: std::fs::File,
    size: u64,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
    tx: std::sync::mpsc::SyncSender<Chunk>,
) -> Result<()> {
    let mut replay = replay.take(ing.len());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = replay.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let _ = tx.send(Chunk::Data(Bytes::copy_from_slice(&buf[..n])));
    }
    loop {
        match rx.blocking_recv() {
            Some(Chunk::Data(b)) => {
                if let Err(e) = ing.append(&b) {
                    // e.g. ENOSPC: name the path and give the space back
                    let msg = format!("write {}: {e}", ing.path().display());
                    ing.discard();
                    let _ = tx.send(Chunk::Fail(msg.clone(), true));
                    return Err(DistributionError::internal(msg));
                }
                let _ = tx.send(Chunk::Data(b));
            }
            Some(Chunk::End) => {
                return match ing.commit(&eng.content, size) {
                    Ok(()) => {
                        let _ = tx.send(Chunk::End);
                        Ok(())
                    }
                    Err(e) => {
                        let _ = tx.send(Chunk::Fail(e.message().to_string(), true));
                        Err(e)
                    }
                };
            }
            Some(Chunk::Fail(msg, discard)) => {
                if discard {
                    ing.discard();
                }
                let _ = tx.send(Chunk::Fail(msg.clone(), discard));
                return Err(DistributionError::unavailable(msg));
            }
            None => {
                let _ = tx.send(Chunk::Fail("download aborted".into(), false));
                return Err(DistributionError::unavailable("download aborted"));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn consume(
    eng: &Engine,
    ingest_dir: &std::path::Path,
    desc: &Descriptor,
    diff: &Digest,
    key: &str,
    parent_key: Option<&str>,
    unpack: bool,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    off_tx: tokio::sync::oneshot::Sender<u64>,
) -> Result<()> {
    let (ing, replay) = Ingest::open(ingest_dir, &desc.digest, desc.size)?;
    let _ = off_tx.send(ing.len());
    let (utx, urx) = std::sync::mpsc::sync_channel::<Chunk>(64);
    std::thread::scope(|scope| {
        let verifier = scope.spawn(move || verify(eng, ing, replay, desc.size, rx, utx));
        let mut src = Source { rx: urx, pending: Bytes::new(), done: false, failed: None };
        let res = if unpack {
            eng.snapshots.create_layer(key, parent_key, |dir| {
                let rd = berth_archive::decompress(&mut src, MAX_LAYER_BYTES)?;
                let mut dr = berth_archive::DigestReader::new(rd);
                let opts = berth_archive::ApplyOptions { whiteouts: berth_archive::WhiteoutMode::Overlay, ..Default::default() };
                let stats = berth_archive::apply_layer(dir, &mut dr, &opts)?;
                std::io::copy(&mut dr, &mut std::io::sink())?;
                let got = dr.digest();
                drop(dr);
                // the rest of the blob (compression trailer, padding) must arrive and verify too
                std::io::copy(&mut src, &mut std::io::sink())?;
                if got != diff.as_str() {
                    return Err(crate::EngineError::invalid(format!(
                        "layer {}: diff id mismatch: config says {diff}, content is {got}",
                        desc.digest
                    )));
                }
                Ok(stats.bytes)
            })
        } else {
            Ok(())
        };
        // (a snapshot made meanwhile by someone else means `fill` did not run: drain)
        let _ = std::io::copy(&mut src, &mut std::io::sink());
        drop(src);
        let verified = verifier.join().map_err(|_| DistributionError::internal("layer verifier panicked"))?;
        verified?;
        res?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rejects_ambiguous() {
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(classify(both, None).is_err());
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert!(classify(m, Some(MT_OCI_INDEX)).is_err());
        assert_eq!(classify(m, Some(MT_OCI_MANIFEST)).unwrap().1, MT_OCI_MANIFEST);
        let idx = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(classify(idx, None).unwrap().1, MT_OCI_INDEX);
        assert!(classify(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(classify(b"[]", None).is_err());
    }

    #[test]
    fn platforms() {
        let idx = serde_json::json!({"manifests": [
            {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "a".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "b".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "c".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "d".repeat(64)), "size": 1, "platform": {"os": "unknown", "architecture": "unknown"}},
            {"mediaType": MT_OCI_MANIFEST, "digest": format!("sha256:{}", "e".repeat(64)), "size": 1, "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}
        ]});
        let pick = |p: &str| choose_platform(&idx, &Platform::parse(p).unwrap()).map(|d| d.digest.hex()[..1].to_string());
        assert_eq!(pick("linux/amd64").unwrap(), "b");
        assert_eq!(pick("linux/arm64").unwrap(), "c");
        assert_eq!(pick("linux/arm/v7").unwrap(), "e");
        assert_eq!(pick("linux/arm/v6").unwrap(), "a");
        assert!(pick("linux/s390x").is_err());
        assert_eq!(Platform::parse("linux/x86_64").unwrap().architecture, "amd64");
        assert!(Platform::parse("linux//v7").is_err());
    }

    #[test]
    fn layer_types() {
        let d = |mt: &str, size: u64| Descriptor { media_type: mt.into(), digest: Digest::of(b"x"), size, annotations: None, platform: None };
        assert!(check_layer(&d(MT_DOCKER_LAYER_GZIP, 10)).is_ok());
        assert!(check_layer(&d(MT_OCI_LAYER_ZSTD, 10)).is_ok());
        assert!(check_layer(&d("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 10)).is_err());
        assert!(check_layer(&d("text/plain", 10)).is_err());
        assert!(check_layer(&d(MT_OCI_LAYER, 1 << 62)).is_err());
    }
}
