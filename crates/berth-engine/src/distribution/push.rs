//! `push`: upload an image's blobs and manifest to a registry.
//!
//! Blobs the registry already has are skipped (`HEAD`), blobs this engine pulled from (or
//! pushed to) another repository of the same registry are mounted across repositories,
//! and the rest are uploaded: small blobs monolithically (one `POST` + one streamed `PUT`),
//! blobs of [`CHUNKED_MIN`] and more with a streamed `PATCH` that, when the connection breaks,
//! continues from the offset the registry reports (`GET` on the upload, `Range: 0-N`) with
//! `Content-Range`. An upload that cannot go on is retried from a new session. Layers that were pulled compressed are pushed as
//! they are, so the manifest (and its digest) is the one that was pulled. Locally made layers
//! are stored uncompressed: they are gzip-compressed to a temporary file first, and the
//! compressed digest is remembered (`<data-root>/distribution/compressed/<diff id>`) so later
//! pushes can skip the work when the registry has the blob.

use super::client::{Body, Session};
use super::pull::Pins;
use super::{DistributionError, DistributionErrorKind, Progress, ProgressSink, Result};
use crate::digest::Digest;
use crate::engine::Engine;
use crate::image::*;
use crate::meta::IMAGES;
use crate::reference::Reference;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub creds: Option<super::Credentials>,
}

#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

/// Remember that `digest` exists in `domain/repo` (for cross-repository mounts).
pub(crate) fn record_source(eng: &Engine, digest: &Digest, domain: &str, repo: &str) {
    let dir = super::state_dir(eng).join("sources");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let p = dir.join(digest.hex());
    let entry = format!("{domain}/{repo}");
    let mut lines: Vec<String> = std::fs::read_to_string(&p).unwrap_or_default().lines().map(String::from).collect();
    if lines.contains(&entry) {
        return;
    }
    lines.push(entry);
    if lines.len() > 8 {
        lines.remove(0);
    }
    if let Err(e) = crate::content::write_atomic(&p, lines.join("\n").as_bytes()) {
        tracing::debug!("distribution: recording blob source: {e}");
    }
}

/// Another repository of `domain` known to hold `digest`.
fn mount_source(eng: &Engine, digest: &Digest, domain: &str, repo: &str) -> Option<String> {
    let p = super::state_dir(eng).join("sources").join(digest.hex());
    let s = std::fs::read_to_string(p).ok()?;
    s.lines().rev().find_map(|l| {
        let (d, r) = l.split_once('/')?;
        (d == domain && r != repo).then(|| r.to_string())
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Compressed {
    digest: Digest,
    size: u64,
}

/// The blob pushed for one layer.
struct Upload {
    desc: Descriptor,
    /// Progress id (layer diff id, short).
    id: String,
    /// File to send; `None` until compressed.
    path: Option<PathBuf>,
    /// Uncompressed local layer: compress `diff_id`'s blob on demand.
    compress_from: Option<Digest>,
}

/// `docker push NAME[:TAG]`; without a tag every local tag of the repository is pushed.
pub async fn push(eng: Arc<Engine>, name: &str, tag: Option<&str>, opts: &PushOptions, sink: ProgressSink) -> Result<Vec<PushOutcome>> {
    let r = Reference::parse(name)?;
    let tag = tag.filter(|t| !t.is_empty()).map(String::from).or(r.tag.clone());
    if let Some(t) = &tag {
        if !crate::reference::is_valid_tag(t) {
            return Err(DistributionError::new(DistributionErrorKind::InvalidInput, format!("invalid tag format: {t}")));
        }
    }
    let repo_name = r.name();
    let tags: Vec<(String, Digest)> = {
        let all = eng.tags_by_image()?;
        let mut v = Vec::new();
        for (id, refs) in all {
            for full in refs {
                if let Some(t) = full.strip_prefix(&format!("{repo_name}:")) {
                    if tag.as_deref().is_none_or(|want| want == t) {
                        v.push((t.to_string(), Digest::parse(&id)?));
                    }
                }
            }
        }
        v.sort();
        v
    };
    if tags.is_empty() {
        let shown = match &tag {
            Some(t) => format!("{}:{t}", r.familiar_name()),
            None => r.familiar_name(),
        };
        return Err(DistributionError::new(DistributionErrorKind::NotFound, format!("An image does not exist locally with the tag: {shown}")));
    }
    (sink)(Progress::status(format!("The push refers to repository [{repo_name}]")));
    let sess = Session::open(&r.domain, &r.path, opts.creds.clone(), "pull,push").await?;
    let mut out = Vec::new();
    for (t, id) in tags {
        let img = eng.meta.get::<ImageRecord>(IMAGES, id.as_str())?.ok_or_else(|| DistributionError::new(DistributionErrorKind::NotFound, format!("No such image: {id}")))?;
        let o = push_image(&eng, &sess, &img, &t, &sink).await.map_err(|e| match e.kind() {
            DistributionErrorKind::Unauthorized | DistributionErrorKind::Denied => {
                let m = e.message().to_string();
                let detail = ["unauthorized", "denied"].iter().filter_map(|k| m.find(k)).min().map(|i| m[i..].to_string()).unwrap_or(m);
                DistributionError::new(e.kind(), detail)
            }
            _ => e,
        })?;
        out.push(o);
    }
    Ok(out)
}

async fn push_image(eng: &Arc<Engine>, sess: &Session, img: &ImageRecord, tag: &str, sink: &ProgressSink) -> Result<PushOutcome> {
    let pins = Pins::new(eng.clone());
    pins.pin(&img.id);
    let state = super::state_dir(eng);
    super::ingest::expire(&state.join("tmp"));
    let mut uploads = Vec::new();
    for l in &img.layers {
        pins.pin(&l.blob);
        let id = l.diff_id.short().to_string();
        (sink)(Progress::layer(&id, "Preparing"));
        if l.blob != l.diff_id {
            let size = eng.content.size(&l.blob)?;
            let media_type = match l.media_type.as_str() {
                "" => MT_DOCKER_LAYER_GZIP.to_string(),
                m => m.to_string(),
            };
            uploads.push(Upload {
                desc: Descriptor { media_type, digest: l.blob.clone(), size, annotations: None, platform: None },
                id,
                path: Some(eng.content.path(&l.blob)),
                compress_from: None,
            });
        } else {
            let cached: Option<Compressed> = std::fs::read(state.join("compressed").join(l.diff_id.hex())).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let (digest, size) = match cached {
                Some(c) => (c.digest, c.size),
                None => (l.diff_id.clone(), 0), // compressed below
            };
            uploads.push(Upload {
                desc: Descriptor { media_type: MT_DOCKER_LAYER_GZIP.into(), digest, size, annotations: None, platform: None },
                id,
                path: None,
                compress_from: Some(l.diff_id.clone()),
            });
        }
    }
    let n = super::client::options().max_concurrent_uploads.max(1);
    let descs: Vec<Descriptor> = futures::stream::iter(uploads.into_iter().map(|u| push_layer(eng, sess, u, sink)))
        .buffered(n)
        .try_collect()
        .await?;
    // config
    let config_bytes = eng.content.read(&img.id)?;
    upload_blob(sess, &img.id, &Body::Bytes(config_bytes.clone().into()), None).await?;
    // manifest: the pulled one when it describes exactly these blobs, else a new one
    let (man_bytes, media_type) = match reuse_manifest(eng, img, &descs) {
        Some(x) => x,
        None => {
            // zstd exists only in OCI: then the whole manifest is OCI, else Docker schema 2
            let oci = descs.iter().any(|d| d.media_type == MT_OCI_LAYER_ZSTD);
            let (mt, cmt) = if oci { (MT_OCI_MANIFEST, MT_OCI_CONFIG) } else { (MT_DOCKER_MANIFEST, MT_DOCKER_CONFIG) };
            let descs: Vec<Descriptor> = descs
                .iter()
                .cloned()
                .map(|mut d| {
                    d.media_type = layer_media_type(&d.media_type, oci).to_string();
                    d
                })
                .collect();
            let m = Manifest {
                schema_version: 2,
                media_type: Some(mt.into()),
                config: Descriptor { media_type: cmt.into(), digest: img.id.clone(), size: config_bytes.len() as u64, annotations: None, platform: None },
                layers: descs.clone(),
                annotations: None,
            };
            let b = serde_json::to_vec_pretty(&m).map_err(|e| DistributionError::internal(e.to_string()))?;
            (b, mt.to_string())
        }
    };
    let digest = Digest::of(&man_bytes);
    let url = sess.url(&format!("manifests/{tag}"));
    let resp = sess
        .send(Method::PUT, &url, &[("Content-Type", media_type.clone())], &Body::Bytes(man_bytes.clone().into()))
        .await?;
    sess.check(resp, &format!("PUT manifest {tag}")).await?;
    // remember
    let mdigest = eng.content.write(&man_bytes)?;
    let _ = mdigest;
    let mut rec = eng.meta.get::<ImageRecord>(IMAGES, img.id.as_str())?.unwrap_or_else(|| img.clone());
    let rd = format!("{}/{}@{digest}", sess.domain, sess.repo);
    if !rec.repo_digests.contains(&rd) {
        rec.repo_digests.push(rd);
        eng.meta.put(IMAGES, rec.id.as_str(), &rec)?;
    }
    record_source(eng, &img.id, &sess.domain, &sess.repo);
    for d in &descs {
        record_source(eng, &d.digest, &sess.domain, &sess.repo);
    }
    let size = man_bytes.len() as u64;
    (sink)(Progress::status(format!("{tag}: digest: {digest} size: {size}")));
    (sink)(Progress {
        id: None,
        status: String::new(),
        current: None,
        total: None,
        aux: Some(serde_json::json!({"Tag": tag, "Digest": digest.to_string(), "Size": size})),
    });
    let familiar = Reference::parse(&format!("{}/{}:{tag}", sess.domain, sess.repo)).map(|r| r.familiar()).unwrap_or_default();
    eng.events.emit("image", "push", &familiar, &[("name", &familiar)]);
    drop(pins);
    Ok(PushOutcome { tag: tag.to_string(), digest, size })
}

/// A layer media type in the manifest flavour being written.
fn layer_media_type(mt: &str, oci: bool) -> &str {
    match (mt, oci) {
        (MT_DOCKER_LAYER_GZIP, true) => MT_OCI_LAYER_GZIP,
        (MT_DOCKER_LAYER, true) => MT_OCI_LAYER,
        (MT_OCI_LAYER_GZIP, false) => MT_DOCKER_LAYER_GZIP,
        (MT_OCI_LAYER, false) => MT_DOCKER_LAYER,
        (other, _) => other,
    }
}

/// The stored manifest's bytes when it lists exactly `descs` and this config.
fn reuse_manifest(eng: &Engine, img: &ImageRecord, descs: &[Descriptor]) -> Option<(Vec<u8>, String)> {
    let bytes = eng.content.read(&img.manifest).ok()?;
    let m: Manifest = serde_json::from_slice(&bytes).ok()?;
    if m.config.digest != img.id || m.layers.len() != descs.len() || m.layers.iter().zip(descs).any(|(a, b)| a.digest != b.digest) {
        return None;
    }
    let mt = m.media_type.clone().unwrap_or_else(|| MT_OCI_MANIFEST.into());
    if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
        return None;
    }
    Some((bytes, mt))
}

async fn push_layer(eng: &Arc<Engine>, sess: &Session, mut u: Upload, sink: &ProgressSink) -> Result<Descriptor> {
    let mut temp: Option<PathBuf> = None;
    if let Some(diff) = u.compress_from.clone() {
        // Known compressed digest: the registry may have it already.
        if u.desc.size > 0 && blob_exists(sess, &u.desc.digest).await? {
            (sink)(Progress::layer(&u.id, "Layer already exists"));
            return Ok(u.desc);
        }
        let eng2 = eng.clone();
        let (path, digest, size) = tokio::task::spawn_blocking(move || compress_layer(&eng2, &diff))
            .await
            .map_err(|e| DistributionError::internal(e.to_string()))??;
        u.desc.digest = digest;
        u.desc.size = size;
        u.path = Some(path.clone());
        temp = Some(path);
    }
    let res = async {
        let path = u.path.clone().ok_or_else(|| DistributionError::internal("no blob to push"))?;
        let from = mount_source(eng, &u.desc.digest, &sess.domain, &sess.repo);
        let body = Body::File { path, offset: 0, len: u.desc.size, sink: Some(sink.clone()), id: Some(u.id.clone()) };
        let how = upload_blob(sess, &u.desc.digest, &body, from.as_deref()).await?;
        (sink)(Progress::layer(&u.id, how));
        Ok(u.desc.clone())
    }
    .await;
    if let Some(t) = temp {
        let _ = std::fs::remove_file(t);
    }
    res
}

/// gzip a local uncompressed layer blob into a temp file, returning (path, digest, size).
fn compress_layer(eng: &Engine, diff: &Digest) -> Result<(PathBuf, Digest, u64)> {
    let dir = super::state_dir(eng).join("tmp");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("push-{:016x}", rand::random::<u64>()));
    struct HashFile {
        f: std::io::BufWriter<std::fs::File>,
        h: Sha256,
        n: u64,
    }
    impl Write for HashFile {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = self.f.write(b)?;
            self.h.update(&b[..n]);
            self.n += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.f.flush()
        }
    }
    let res = (|| -> Result<(Digest, u64)> {
        let out = HashFile { f: std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?), h: Sha256::new(), n: 0 };
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::new(3));
        let mut src = std::io::BufReader::with_capacity(1 << 20, eng.content.open_blob(diff)?);
        std::io::copy(&mut src, &mut gz)?;
        let mut out = gz.finish()?;
        out.flush()?;
        let d = Digest::from_hasher(out.h);
        Ok((d, out.n))
    })();
    match res {
        Ok((d, n)) => {
            let cache = super::state_dir(eng).join("compressed");
            std::fs::create_dir_all(&cache)?;
            let rec = serde_json::to_vec(&Compressed { digest: d.clone(), size: n }).map_err(|e| DistributionError::internal(e.to_string()))?;
            crate::content::write_atomic(&cache.join(diff.hex()), &rec)?;
            Ok((path, d, n))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

async fn blob_exists(sess: &Session, d: &Digest) -> Result<bool> {
    let resp = sess.send(Method::HEAD, &sess.url(&format!("blobs/{d}")), &[], &Body::Empty).await?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => sess.check(resp, &format!("HEAD blob {d}")).await.map(|_| false),
    }
}

/// Upload one blob unless present; returns Docker's status word for it.
async fn upload_blob(sess: &Session, digest: &Digest, body: &Body, mount_from: Option<&str>) -> Result<String> {
    if blob_exists(sess, digest).await? {
        return Ok("Layer already exists".into());
    }
    let opts = super::client::options();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match upload_once(sess, digest, body, mount_from).await {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == DistributionErrorKind::Unavailable && attempt < opts.max_attempts => {
                let delay = super::client::retry_delay(opts, attempt, &Default::default());
                tracing::info!(%digest, attempt, ?delay, "push: retrying upload: {e}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn upload_once(sess: &Session, digest: &Digest, body: &Body, mount_from: Option<&str>) -> Result<String> {
    let start = sess.url("blobs/uploads/");
    let (resp, mounted_from) = match mount_from {
        Some(from) => {
            sess.add_scope(format!("repository:{from}:pull"));
            let url = format!("{start}?mount={digest}&from={from}");
            (sess.send(Method::POST, &url, &[("Content-Length", "0".into())], &Body::Empty).await?, Some(from))
        }
        None => (sess.send(Method::POST, &start, &[("Content-Length", "0".into())], &Body::Empty).await?, None),
    };
    if resp.status() == StatusCode::CREATED {
        if let Some(from) = mounted_from {
            return Ok(format!("Mounted from {from}"));
        }
    }
    let resp = sess.check(resp, &format!("POST {start}")).await?;
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| DistributionError::invalid(format!("POST {start}: no upload location")))?;
    let base = reqwest::Url::parse(&start).map_err(|e| DistributionError::internal(e.to_string()))?;
    let mut url = base.join(loc).map_err(|e| DistributionError::invalid(format!("invalid upload location {loc:?}: {e}")))?;
    if let Body::File { path, len, sink, id, .. } = body {
        if *len >= CHUNKED_MIN {
            // A resume the registry refuses is retried from scratch by the caller.
            return upload_resumable(sess, digest, url, path, *len, sink, id).await.map_err(|e| match e.kind() {
                DistributionErrorKind::Invalid => DistributionError::unavailable(e.message().to_string()),
                _ => e,
            });
        }
    }
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let put = sess
        .send(Method::PUT, url.as_str(), &[("Content-Type", "application/octet-stream".into())], body)
        .await?;
    sess.check(put, &format!("PUT blob {digest}")).await?;
    Ok("Pushed".into())
}

/// Blobs at least this big are sent with `PATCH` and resumed from what the registry has
/// when a transfer breaks; smaller ones with one monolithic `PUT`.
pub const CHUNKED_MIN: u64 = 8 << 20;

fn upload_location(base: &reqwest::Url, resp: &reqwest::Response) -> Option<reqwest::Url> {
    let loc = resp.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
    base.join(loc).ok()
}

/// `PATCH` the file (a plain streamed PATCH, as Docker does); after a failure ask the registry
/// how much it has (`GET` on the upload: `Range: 0-N`) and continue from there with
/// `Content-Range`; then `PUT ?digest=`.
async fn upload_resumable(
    sess: &Session,
    digest: &Digest,
    mut url: reqwest::Url,
    path: &std::path::Path,
    size: u64,
    sink: &Option<ProgressSink>,
    id: &Option<String>,
) -> Result<String> {
    let opts = super::client::options();
    let mut offset = 0u64;
    let mut failures = 0u32;
    while offset < size {
        let body = Body::File { path: path.to_path_buf(), offset, len: size - offset, sink: sink.clone(), id: id.clone() };
        let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
        if offset > 0 {
            headers.push(("Content-Range", format!("{offset}-{}", size - 1)));
        }
        match sess.send_once(Method::PATCH, url.as_str(), &headers, &body).await {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED || resp.status() == StatusCode::NO_CONTENT => {
                if let Some(u) = upload_location(&url, &resp) {
                    url = u;
                }
                offset = size;
                continue;
            }
            Ok(resp) if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE => {}
            Ok(resp) => {
                sess.check(resp, &format!("PATCH blob {digest}")).await?;
                return Err(DistributionError::unavailable(format!("PATCH blob {digest}: unexpected answer")));
            }
            Err(e) => tracing::info!(%digest, offset, "push: upload broke: {e}"),
        }
        failures += 1;
        if failures >= opts.max_attempts {
            return Err(DistributionError::unavailable(format!("upload of blob {digest} failed after {failures} attempts")));
        }
        tokio::time::sleep(super::client::retry_delay(opts, failures, &Default::default())).await;
        // where did it stop?
        let st = sess.send(Method::GET, url.as_str(), &[], &Body::Empty).await?;
        let st = sess.check(st, &format!("GET upload status {digest}")).await?;
        let have = st
            .headers()
            .get(reqwest::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|r| r.trim().trim_start_matches("bytes=").split('-').nth(1).and_then(|e| e.parse::<u64>().ok()))
            .map(|end| end + 1)
            .unwrap_or(0);
        if let Some(u) = upload_location(&url, &st) {
            url = u;
        }
        if have > size {
            return Err(DistributionError::invalid(format!("registry claims {have} bytes of a {size}-byte blob {digest}")));
        }
        tracing::info!(%digest, offset = have, "push: resuming upload");
        offset = if have <= 1 { 0 } else { have };
    }
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let put = sess.send(Method::PUT, url.as_str(), &[("Content-Length", "0".to_string())], &Body::Empty).await?;
    sess.check(put, &format!("PUT blob {digest}")).await?;
    Ok("Pushed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_the_manifest_flavour() {
        assert_eq!(layer_media_type(MT_DOCKER_LAYER_GZIP, true), MT_OCI_LAYER_GZIP);
        assert_eq!(layer_media_type(MT_OCI_LAYER_GZIP, false), MT_DOCKER_LAYER_GZIP);
        assert_eq!(layer_media_type(MT_OCI_LAYER_ZSTD, true), MT_OCI_LAYER_ZSTD);
        assert_eq!(layer_media_type(MT_DOCKER_LAYER, false), MT_DOCKER_LAYER);
    }
}
