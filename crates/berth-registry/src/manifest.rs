//! Manifest parsing: just enough of Docker schema 2, manifest lists, OCI manifests
//! and OCI indexes to validate a push and to know what a manifest references (for the
//! existence check, the referrers API and GC).
//!
//! The JSON is parsed into `serde_json::Value` rather than strict structs, because the
//! spec allows unknown fields and we must store the exact bytes we received anyway.

use serde_json::Value;

use crate::names::Digest;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media types this registry stores.
pub const SUPPORTED: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];
/// Largest manifest accepted (distribution's default).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest invalid: {0}")]
    Invalid(String),
    #[error("unsupported manifest media type {0:?}")]
    Unsupported(String),
}

/// Coarse class of a [`ManifestError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestErrorKind {
    Invalid,
    Unsupported,
}

impl ManifestError {
    /// The class of this error.
    pub fn kind(&self) -> ManifestErrorKind {
        match self {
            ManifestError::Invalid(_) => ManifestErrorKind::Invalid,
            ManifestError::Unsupported(_) => ManifestErrorKind::Unsupported,
        }
    }
}

/// One referenced piece of content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// What a manifest is and what it points to.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The effective media type (declared or detected).
    pub media_type: String,
    /// Blobs that must exist: config and layers (foreign layers excluded).
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes and lists).
    pub manifests: Vec<Descriptor>,
    /// The `subject` this manifest refers to (OCI 1.1 referrers).
    pub subject: Option<Descriptor>,
    /// `artifactType`, or the config media type for image manifests.
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

/// Strips parameters (`; charset=utf-8`) and whitespace from a Content-Type.
pub fn base_media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor, ManifestError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(format!("{what}: descriptor is not an object")))?;
    let media_type = match obj.get("mediaType") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(_) => return Err(invalid(format!("{what}: mediaType is not a string"))),
    };
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: missing digest")))?
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what}: missing or negative size")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

fn is_foreign(media_type: &str) -> bool {
    media_type.contains("foreign") || media_type.contains("nondistributable")
}

/// Parses and validates a manifest body pushed with `content_type` (may be absent or
/// generic, in which case the body's `mediaType` or its shape decides).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Parsed, ManifestError> {
    if body.len() > MAX_MANIFEST_SIZE {
        return Err(invalid("manifest too large"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    let declared = content_type.map(base_media_type).filter(|ct| {
        !ct.is_empty() && *ct != "application/json" && *ct != "application/octet-stream"
    });
    let body_mt = match obj.get("mediaType") {
        Some(Value::String(s)) => Some(s.as_str()),
        None => None,
        Some(_) => return Err(invalid("mediaType is not a string")),
    };
    let has_manifests = obj.contains_key("manifests");
    let has_layers = obj.contains_key("layers") || obj.contains_key("config");
    if has_manifests && has_layers {
        return Err(invalid(
            "ambiguous manifest: has both manifests and layers/config",
        ));
    }
    let media_type = match (declared, body_mt) {
        (Some(d), Some(b)) if d != b => {
            return Err(invalid(format!(
                "mediaType {b:?} does not match Content-Type {d:?}"
            )))
        }
        (Some(d), _) => d.to_string(),
        (None, Some(b)) => b.to_string(),
        (None, None) if has_manifests => OCI_INDEX.to_string(),
        (None, None) if has_layers => OCI_MANIFEST.to_string(),
        (None, None) => return Err(invalid("cannot determine manifest media type")),
    };
    if !SUPPORTED.contains(&media_type.as_str()) {
        return Err(ManifestError::Unsupported(media_type));
    }
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_LIST;
    if is_index && has_layers || !is_index && has_manifests {
        return Err(invalid(format!(
            "body does not have the shape of {media_type}"
        )));
    }
    let mut parsed = Parsed {
        media_type,
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string),
        annotations: obj.get("annotations").cloned().filter(|a| a.is_object()),
    };
    if let Some(s) = obj.get("subject") {
        parsed.subject = Some(descriptor(s, "subject")?);
    }
    if is_index {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("manifests must be an array"))?;
        for (i, m) in list.iter().enumerate() {
            parsed
                .manifests
                .push(descriptor(m, &format!("manifests[{i}]"))?);
        }
    } else {
        let config = descriptor(
            obj.get("config").ok_or_else(|| invalid("missing config"))?,
            "config",
        )?;
        if parsed.artifact_type.is_none() && !config.media_type.is_empty() {
            parsed.artifact_type = Some(config.media_type.clone());
        }
        parsed.blobs.push(config);
        let layers = match obj.get("layers") {
            Some(Value::Array(a)) => a.as_slice(),
            None if parsed.media_type == OCI_MANIFEST => &[],
            _ => return Err(invalid("layers must be an array")),
        };
        for (i, l) in layers.iter().enumerate() {
            let d = descriptor(l, &format!("layers[{i}]"))?;
            if !is_foreign(&d.media_type) {
                parsed.blobs.push(d);
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    #[test]
    fn oci_manifest_with_subject() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.example+json", "digest": d("c"), "size": 1},
            "layers": [{"mediaType": "application/x", "digest": d("l"), "size": 1}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 3},
        });
        let p = parse(Some(OCI_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.example+json")
        );
        assert_eq!(p.subject.unwrap().digest.to_string(), d("s"));
    }

    #[test]
    fn rejects_bad_manifests() {
        let cfg = serde_json::json!({"mediaType": "x", "digest": d("c"), "size": 1});
        let cases = [
            (Some(OCI_MANIFEST), "nope".to_string()),
            (Some(OCI_MANIFEST), "[]".to_string()),
            // mismatched media type
            (
                Some(DOCKER_MANIFEST),
                serde_json::json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"config":cfg,"layers":[]}).to_string(),
            ),
            // ambiguous shape
            (
                None,
                serde_json::json!({"schemaVersion":2,"config":cfg,"layers":[],"manifests":[]}).to_string(),
            ),
            // bad digest
            (
                Some(OCI_MANIFEST),
                serde_json::json!({"schemaVersion":2,"config":{"digest":"sha256:zz","size":1},"layers":[]}).to_string(),
            ),
            // wrong schema version
            (
                Some(OCI_MANIFEST),
                serde_json::json!({"schemaVersion":1,"config":cfg,"layers":[]}).to_string(),
            ),
            // an index pushed as a manifest
            (
                Some(OCI_MANIFEST),
                serde_json::json!({"schemaVersion":2,"manifests":[]}).to_string(),
            ),
        ];
        for (ct, body) in cases {
            assert!(parse(ct, body.as_bytes()).is_err(), "{body}");
        }
        let e = parse(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"{}",
        )
        .unwrap_err();
        assert_eq!(e.kind(), ManifestErrorKind::Unsupported);
    }

    #[test]
    fn index_detected_without_media_type() {
        let body = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":OCI_MANIFEST,"digest":d("m"),"size":5}]});
        let p = parse(None, body.to_string().as_bytes()).unwrap();
        assert_eq!(p.media_type, OCI_INDEX);
        assert_eq!(p.manifests.len(), 1);
    }
}
