//! `save` and `load`: the docker-archive format (`manifest.json` + blobs, as `docker save`
//! writes since Docker 25, which older `docker load` also reads) and the OCI image layout.
//!
//! `load` reads the archive once, storing every member as a content blob while hashing it
//! (members named `blobs/sha256/<hex>` must match their name), keeps the small JSON documents
//! in memory, then builds images from `manifest.json` (or `index.json` for a plain OCI
//! layout). Layer diff ids are verified against the config while unpacking; an archive that
//! fails leaves no image, tag or layer behind (unreferenced blobs are collected at the end).

use crate::digest::Digest;
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::image::*;
use crate::reference::Reference;
use berth_archive::{EntryType, Header, TarLimits, TarReader, TarWriter, Timestamp};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

const MAX_JSON: u64 = 4 << 20;
const MAX_MEMBERS: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// docker-archive (also a valid OCI layout).
    Docker,
    /// OCI image layout only.
    Oci,
}

#[derive(Deserialize)]
struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Normalise an archive member path (`./a//b` → `a/b`); refuses `..` and absolute paths.
fn clean(p: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(EngineError::invalid(format!("invalid archive: path {p:?} escapes the archive"))),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

struct Members {
    blobs: HashMap<String, (Digest, u64)>,
    json: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

impl Members {
    fn resolve(&self, p: &str) -> Result<String> {
        let mut cur = clean(p)?;
        for _ in 0..16 {
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => return Ok(cur),
            }
        }
        Err(EngineError::invalid("invalid archive: symlink loop"))
    }
    fn blob(&self, p: &str) -> Result<(Digest, u64)> {
        let p = self.resolve(p)?;
        self.blobs
            .get(&p)
            .cloned()
            .ok_or_else(|| EngineError::invalid(format!("invalid archive: missing member {p}")))
    }
    fn json(&self, eng: &Engine, p: &str) -> Result<Vec<u8>> {
        let p = self.resolve(p)?;
        if let Some(b) = self.json.get(&p) {
            return Ok(b.clone());
        }
        let (d, _) = self.blob(&p)?;
        eng.content.read(&d)
    }
}

/// `docker load`: returns the lines to print (`Loaded image: busybox:latest`).
pub fn load(eng: &Engine, input: impl Read) -> Result<Vec<String>> {
    let rd = berth_archive::decompress(std::io::BufReader::with_capacity(256 << 10, input), MAX_LAYER_BYTES * 4)?;
    let mut tr = TarReader::with_limits(rd, TarLimits { max_entries: MAX_MEMBERS, max_bytes: MAX_LAYER_BYTES * 4 });
    let mut m = Members { blobs: HashMap::new(), json: HashMap::new(), links: HashMap::new() };
    let mut pinned = Vec::new();
    let res = (|| -> Result<Vec<String>> {
        while let Some(mut e) = tr.next_entry()? {
            let name = String::from_utf8(e.header.name.clone())
                .map_err(|_| EngineError::invalid("invalid archive: non-UTF-8 member name"))?;
            let name = clean(&name)?;
            match e.header.entry_type {
                EntryType::Regular => {
                    let mut w = eng.content.writer()?;
                    let mut small = Vec::new();
                    let keep_small = e.header.size <= MAX_JSON;
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let n = e.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        w.write_all(&buf[..n])?;
                        if keep_small {
                            small.extend_from_slice(&buf[..n]);
                        }
                    }
                    let size = w.size();
                    let expect = name
                        .strip_prefix("blobs/sha256/")
                        .map(|h| Digest::parse(&format!("sha256:{h}")))
                        .transpose()?;
                    let d = w.commit(expect.as_ref()).map_err(|e| e.context(format!("invalid archive: member {name}")))?;
                    eng.pin(&d);
                    pinned.push(d.clone());
                    if keep_small && (name.ends_with(".json") || name == "repositories" || name == "oci-layout") {
                        m.json.insert(name.clone(), small);
                    }
                    m.blobs.insert(name, (d, size));
                }
                EntryType::Symlink | EntryType::Link => {
                    let target = String::from_utf8(e.header.link_name.clone())
                        .map_err(|_| EngineError::invalid("invalid archive: non-UTF-8 link"))?;
                    let resolved = if e.header.entry_type == EntryType::Symlink && !target.starts_with('/') {
                        let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                        clean(&format!("{dir}/{target}"))?
                    } else {
                        clean(&target)?
                    };
                    m.links.insert(name, resolved);
                }
                _ => {}
            }
        }
        if m.json.contains_key("manifest.json") {
            load_docker(eng, &m)
        } else if m.json.contains_key("index.json") {
            load_oci(eng, &m)
        } else {
            Err(EngineError::invalid(
                "invalid archive: no manifest.json or index.json found (is this a docker save or OCI layout archive?)",
            ))
        }
    })();
    for d in &pinned {
        eng.unpin(d);
    }
    let _ = eng.gc_images();
    res
}

fn layer_media_type(eng: &Engine, blob: &Digest, diff: &Digest) -> Result<String> {
    if blob == diff {
        return Ok(MT_OCI_LAYER.into());
    }
    let mut f = eng.content.open_blob(blob)?;
    let mut pre = [0u8; 8];
    let n = f.read(&mut pre)?;
    Ok(match berth_archive::sniff(&pre[..n]) {
        berth_archive::Compression::Gzip => MT_OCI_LAYER_GZIP.into(),
        berth_archive::Compression::Zstd => MT_OCI_LAYER_ZSTD.into(),
        berth_archive::Compression::None => MT_OCI_LAYER.into(),
    })
}

/// Build one image from its config bytes and layer blobs (in order), unpacking as needed.
fn build_image(eng: &Engine, config_bytes: &[u8], blobs: &[(Digest, u64)]) -> Result<ImageRecord> {
    let cfg: ConfigFile = serde_json::from_slice(config_bytes)
        .map_err(|e| EngineError::invalid(format!("invalid image config: {e}")))?;
    if cfg.rootfs.diff_ids.len() != blobs.len() {
        return Err(EngineError::invalid(format!(
            "invalid archive: config lists {} layers, manifest {}",
            cfg.rootfs.diff_ids.len(),
            blobs.len()
        )));
    }
    let chains = crate::digest::chain_ids(&cfg.rootfs.diff_ids);
    let mut layers = Vec::new();
    for (i, ((blob, size), diff)) in blobs.iter().zip(cfg.rootfs.diff_ids.iter()).enumerate() {
        let rec = LayerRecord {
            diff_id: diff.clone(),
            chain_id: chains[i].clone(),
            blob: blob.clone(),
            media_type: layer_media_type(eng, blob, diff)?,
            size: *size,
        };
        eng.unpack_layer(&rec, if i == 0 { None } else { Some(&chains[i - 1]) })?;
        layers.push(rec);
    }
    eng.commit_image_bytes(config_bytes, layers, None, None)
}

fn load_docker(eng: &Engine, m: &Members) -> Result<Vec<String>> {
    let manifests: Vec<ArchiveManifest> = serde_json::from_slice(&m.json["manifest.json"])
        .map_err(|e| EngineError::invalid(format!("invalid archive: manifest.json: {e}")))?;
    let mut out = Vec::new();
    for am in manifests {
        let config = m.json(eng, &am.config)?;
        let blobs = am.layers.iter().map(|l| m.blob(l)).collect::<Result<Vec<_>>>()?;
        let img = build_image(eng, &config, &blobs)?;
        let tags = am.repo_tags.unwrap_or_default();
        for t in &tags {
            eng.tag_image(&img.id, t)?;
            let fam = Reference::parse_tagged(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone());
            out.push(format!("Loaded image: {fam}"));
        }
        if tags.is_empty() {
            out.push(format!("Loaded image ID: {}", img.id));
        }
        eng.events.emit("image", "load", img.id.as_str(), &[]);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

fn load_oci(eng: &Engine, m: &Members) -> Result<Vec<String>> {
    let idx: Index = serde_json::from_slice(&m.json["index.json"])
        .map_err(|e| EngineError::invalid(format!("invalid archive: index.json: {e}")))?;
    let mut out = Vec::new();
    let mut stack: Vec<(Descriptor, Option<String>, usize)> = idx.manifests.into_iter().map(|d| (d, None, 0)).collect();
    while let Some((d, inherited_name, depth)) = stack.pop() {
        if depth > 4 {
            return Err(EngineError::invalid("invalid archive: index nesting too deep"));
        }
        let ann = d.annotations.clone().unwrap_or_default();
        let name = ann
            .get("io.containerd.image.name")
            .cloned()
            .or_else(|| ann.get("org.opencontainers.image.ref.name").filter(|r| r.contains(':') || r.contains('/')).cloned())
            .or(inherited_name);
        let bytes = eng.content.read(&d.digest)?;
        if d.media_type == MT_OCI_INDEX || d.media_type == MT_DOCKER_LIST {
            let child: Index = serde_json::from_slice(&bytes)?;
            // choose the host platform
            let pick = child.manifests.into_iter().find(|c| {
                c.platform.as_ref().is_none_or(|p| p["architecture"] == host_arch() && p["os"] == "linux")
            });
            if let Some(c) = pick {
                stack.push((c, name, depth + 1));
            }
            continue;
        }
        let man: Manifest = serde_json::from_slice(&bytes)?;
        let config = eng.content.read(&man.config.digest)?;
        let blobs: Vec<(Digest, u64)> = man.layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
        for (b, _) in &blobs {
            if !eng.content.exists(b) {
                return Err(EngineError::invalid(format!("invalid archive: missing blob {b}")));
            }
        }
        let img = build_image(eng, &config, &blobs)?;
        match name {
            Some(n) => {
                eng.tag_image(&img.id, &n)?;
                let fam = Reference::parse_tagged(&n).map(|r| r.familiar()).unwrap_or(n);
                out.push(format!("Loaded image: {fam}"));
            }
            None => out.push(format!("Loaded image ID: {}", img.id)),
        }
    }
    Ok(out)
}

fn header(name: &str, size: u64, dir: bool) -> Header {
    Header {
        name: name.as_bytes().to_vec(),
        entry_type: if dir { EntryType::Dir } else { EntryType::Regular },
        mode: if dir { 0o755 } else { 0o644 },
        size: if dir { 0 } else { size },
        mtime: Timestamp::from_secs(0),
        ..Default::default()
    }
}

/// `docker save`: write the named images as one archive.
pub fn save(eng: &Engine, names: &[String], out: impl Write, format: SaveFormat) -> Result<()> {
    let mut tw = TarWriter::new(std::io::BufWriter::with_capacity(256 << 10, out));
    tw.append(&header("blobs/", 0, true), &mut std::io::empty())?;
    tw.append(&header("blobs/sha256/", 0, true), &mut std::io::empty())?;
    let mut written: std::collections::HashSet<Digest> = Default::default();
    let mut manifest_json = Vec::new();
    let mut index = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut by_image: BTreeMap<String, (ImageRecord, Vec<String>)> = BTreeMap::new();
    let mut layer_sizes: HashMap<Digest, u64> = HashMap::new();
    let all_tags = eng.tags_by_image()?;
    for n in names {
        let img = eng.resolve_image(n)?;
        let entry = by_image.entry(img.id.to_string()).or_insert((img.clone(), vec![]));
        // `save busybox` saves every tag of that repository pointing at the image; `save ID` none
        if let Ok(r) = Reference::parse_tagged(n) {
            let key = format!("{}:{}", r.name(), r.tag_or_latest());
            if all_tags.get(img.id.as_str()).is_some_and(|t| t.contains(&key)) && !entry.1.contains(&key) {
                entry.1.push(key);
            }
        }
    }
    let add_blob = |tw: &mut TarWriter<_>, written: &mut std::collections::HashSet<Digest>, d: &Digest, f: &mut dyn Read, size: u64| -> Result<()> {
        if written.insert(d.clone()) {
            tw.append(&header(&format!("blobs/sha256/{}", d.hex()), size, false), f)?;
        }
        Ok(())
    };
    for (_, (img, tags)) in by_image {
        eng.pin(&img.id);
        let cfg_bytes = eng.content.read(&img.id)?;
        add_blob(&mut tw, &mut written, &img.id, &mut &cfg_bytes[..], cfg_bytes.len() as u64)?;
        let mut layer_descs = Vec::new();
        let mut layer_paths = Vec::new();
        for l in &img.layers {
            // docker-archive layers are uncompressed tars named by diff id
            if l.blob == l.diff_id {
                let size = eng.content.size(&l.blob)?;
                let mut f = eng.content.open_blob(&l.blob)?;
                add_blob(&mut tw, &mut written, &l.diff_id, &mut f, size)?;
                layer_sizes.insert(l.diff_id.clone(), size);
            } else if !written.contains(&l.diff_id) {
                let mut tmp = tempfile::tempfile_in(eng.config.data_root.join("content/ingest"))?;
                let f = eng.content.open_blob(&l.blob)?;
                let mut rd = berth_archive::decompress(std::io::BufReader::new(f), MAX_LAYER_BYTES)?;
                let size = std::io::copy(&mut rd, &mut tmp)?;
                use std::io::Seek;
                tmp.seek(std::io::SeekFrom::Start(0))?;
                add_blob(&mut tw, &mut written, &l.diff_id, &mut tmp, size)?;
                layer_sizes.insert(l.diff_id.clone(), size);
            }
            let size = layer_sizes.get(&l.diff_id).copied().unwrap_or(0);
            layer_descs.push(Descriptor { media_type: MT_OCI_LAYER.into(), digest: l.diff_id.clone(), size, annotations: None, platform: None });
            layer_paths.push(format!("blobs/sha256/{}", l.diff_id.hex()));
        }
        let man = Manifest {
            schema_version: 2,
            media_type: Some(MT_OCI_MANIFEST.into()),
            config: Descriptor { media_type: MT_OCI_CONFIG.into(), digest: img.id.clone(), size: cfg_bytes.len() as u64, annotations: None, platform: None },
            layers: layer_descs,
            annotations: None,
        };
        let man_bytes = serde_json::to_vec(&man)?;
        let man_digest = Digest::of(&man_bytes);
        add_blob(&mut tw, &mut written, &man_digest, &mut &man_bytes[..], man_bytes.len() as u64)?;
        let fam_tags: Vec<String> = tags.iter().filter_map(|t| Reference::parse(t).ok()).map(|r| r.familiar()).collect();
        if tags.is_empty() {
            index.push(serde_json::json!({"mediaType": MT_OCI_MANIFEST, "digest": man_digest, "size": man_bytes.len()}));
        }
        for t in &tags {
            let r = Reference::parse(t)?;
            index.push(serde_json::json!({"mediaType": MT_OCI_MANIFEST, "digest": man_digest, "size": man_bytes.len(),
                "annotations": {"io.containerd.image.name": r.to_string(), "org.opencontainers.image.ref.name": r.tag_or_latest()}}));
            repositories
                .entry(r.familiar_name())
                .or_default()
                .insert(r.tag_or_latest().to_string(), img.layers.last().map(|l| l.diff_id.hex().to_string()).unwrap_or_default());
        }
        manifest_json.push(serde_json::json!({
            "Config": format!("blobs/sha256/{}", img.id.hex()),
            "RepoTags": if fam_tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(fam_tags) },
            "Layers": layer_paths,
        }));
        eng.unpin(&img.id);
    }
    let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index}))?;
    tw.append(&header("index.json", idx.len() as u64, false), &mut &idx[..])?;
    if format == SaveFormat::Docker {
        let mj = serde_json::to_vec(&manifest_json)?;
        tw.append(&header("manifest.json", mj.len() as u64, false), &mut &mj[..])?;
    }
    let layout = br#"{"imageLayoutVersion": "1.0.0"}"#;
    tw.append(&header("oci-layout", layout.len() as u64, false), &mut &layout[..])?;
    if format == SaveFormat::Docker && !repositories.is_empty() {
        let rj = serde_json::to_vec(&repositories)?;
        tw.append(&header("repositories", rj.len() as u64, false), &mut &rj[..])?;
    }
    let mut w = tw.finish()?;
    w.flush()?;
    Ok(())
}
