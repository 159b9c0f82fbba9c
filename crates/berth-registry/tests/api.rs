//! In-process tests of every endpoint and error code, through `router()`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::Router;
use berth_registry::names::Digest;
use berth_registry::{gc, router, GcOptions, Registry};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

struct T {
    reg: Arc<Registry>,
    app: Router,
    dir: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn h(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        v["errors"][0]["code"].as_str().unwrap_or("").to_string()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

fn sha(data: &[u8]) -> Digest {
    Digest::of(data)
}

impl T {
    fn new() -> T {
        T::with(|r| r)
    }

    fn with(f: impl FnOnce(Registry) -> Registry) -> T {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-registry-test-{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let reg = Arc::new(f(Registry::open(dir.path()).unwrap()));
        T {
            app: router(reg.clone()),
            reg,
            dir,
        }
    }

    /// Same store, fresh server state (simulates a restart).
    fn restart(&mut self) {
        let reg = Arc::new(Registry::open(self.dir.path()).unwrap());
        self.app = router(reg.clone());
        self.reg = reg;
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn req(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.req("GET", uri, &[], Body::empty()).await
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let d = sha(data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                &[("Content-Length", &data.len().to_string())],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.h("Docker-Content-Digest"), d.to_string());
        d
    }

    async fn put_manifest(&self, repo: &str, reference: &str, ct: &str, body: &str) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", ct)],
            body.to_string(),
        )
        .await
    }

    /// Pushes config + one layer + manifest; returns the manifest body and digest.
    async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (String, Digest) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":"{seed}"}}"#);
        let layer = format!("layer-{seed}").repeat(100);
        let cd = self.push_blob(repo, config.as_bytes()).await;
        let ld = self.push_blob(repo, layer.as_bytes()).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
        })
        .to_string();
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &m).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let d = sha(m.as_bytes());
        assert_eq!(r.h("Docker-Content-Digest"), d.to_string());
        (m, d)
    }

    fn upload_dirs(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .unwrap()
            .count()
    }

    fn blob_exists(&self, d: &Digest) -> bool {
        self.reg.store().blob_size(d).unwrap().is_some()
    }
}

#[tokio::test]
async fn base_endpoint() {
    let t = T::new();
    for uri in ["/v2/", "/v2"] {
        let r = t.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("Docker-Distribution-API-Version"), "registry/2.0");
    }
    let r = t.get("/v2/a/unknown/thing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.h("Docker-Distribution-API-Version"), "registry/2.0");
}

#[tokio::test]
async fn blob_get_head_range_delete() {
    let t = T::new();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = t.push_blob("lib/x", &data).await;
    let uri = format!("/v2/lib/x/blobs/{d}");

    let r = t.req("HEAD", &uri, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("Content-Length"), data.len().to_string());
    assert_eq!(r.h("Docker-Content-Digest"), d.to_string());
    assert!(r.body.is_empty());

    let r = t.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &data[..]);

    let r = t
        .req("GET", &uri, &[("Range", "bytes=10-19")], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &data[10..20]);
    assert_eq!(r.h("Content-Range"), format!("bytes 10-19/{}", data.len()));

    let r = t
        .req("GET", &uri, &[("Range", "bytes=-5")], Body::empty())
        .await;
    assert_eq!(&r.body[..], &data[data.len() - 5..]);

    let r = t
        .req("GET", &uri, &[("Range", "bytes=2000000-")], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.h("Content-Range"), format!("bytes */{}", data.len()));

    // Not linked into another repository.
    let r = t.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );

    let r = t.req("DELETE", &uri, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t.req("HEAD", &uri, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.req("DELETE", &uri, &[], Body::empty()).await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");

    // Bad digests.
    let r = t.get("/v2/lib/x/blobs/sha256:abc").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = t
        .get(&format!("/v2/lib/x/blobs/sha512:{}", "a".repeat(128)))
        .await;
    assert_eq!(r.code(), "UNSUPPORTED");
}

#[tokio::test]
async fn chunked_upload_flow() {
    let t = T::new();
    let r = t
        .req("POST", "/v2/c/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.h("Location").to_string();
    assert!(loc.starts_with("/v2/c/blobs/uploads/"), "{loc}");
    assert_eq!(r.h("Range"), "0-0");
    assert!(!r.h("Docker-Upload-UUID").is_empty());

    let r = t
        .req(
            "PATCH",
            &loc,
            &[("Content-Range", "0-4"), ("Content-Length", "5")],
            "hello",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.h("Range"), "0-4");

    // HARDENING A6 #50: a gap -> 416 with the Range to resume from.
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("Content-Range", "10-14"), ("Content-Length", "5")],
            "world",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.h("Range"), "0-4");
    assert_eq!(r.h("Location"), loc);
    // Overlap is refused too.
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("Content-Range", "3-7"), ("Content-Length", "5")],
            "world",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // SIZE_INVALID: Content-Range says 10 bytes, body has 5.
    let r = t
        .req("PATCH", &loc, &[("Content-Range", "5-14")], " worl")
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "SIZE_INVALID")
    );
    let r = t.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let resume_at: u64 = r
        .h("Range")
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 1;
    let done = &b"hello world"[..resume_at as usize];
    assert!(resume_at >= 5);

    // Streamed chunk without Content-Range, then the rest in the PUT.
    let rest = &b"hello world"[resume_at as usize..];
    let d = sha(b"hello world");
    let r = t
        .req("PUT", &format!("{loc}?digest={d}"), &[], rest.to_vec())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?} {:?}", r.body, done);
    assert_eq!(r.h("Location"), format!("/v2/c/blobs/{d}"));
    assert_eq!(r.h("Docker-Content-Digest"), d.to_string());
    assert_eq!(
        &t.get(&format!("/v2/c/blobs/{d}")).await.body[..],
        b"hello world"
    );
    assert_eq!(t.upload_dirs(), 0);

    // The finished session is gone.
    let r = t.get(&loc).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
}

#[tokio::test]
async fn wrong_digest_commits_nothing() {
    // HARDENING A6 #49, monolithic and chunked.
    let t = T::new();
    let wrong = sha(b"something else");
    let r = t
        .req(
            "POST",
            &format!("/v2/w/blobs/uploads/?digest={wrong}"),
            &[],
            "payload",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert!(!t.blob_exists(&wrong));
    assert!(!t.blob_exists(&sha(b"payload")));
    assert_eq!(t.upload_dirs(), 0);

    let r = t
        .req("POST", "/v2/w/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();
    t.req("PATCH", &loc, &[], "payload").await;
    let r = t
        .req("PUT", &format!("{loc}?digest={wrong}"), &[], Body::empty())
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert!(!t.blob_exists(&sha(b"payload")));
    assert_eq!(t.upload_dirs(), 0);
    let r = t
        .req(
            "HEAD",
            &format!("/v2/w/blobs/{}", sha(b"payload")),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.get("/v2/_catalog").await.json()["repositories"],
        json!([])
    );

    // A PUT without a digest is refused and the session kept.
    let r = t
        .req("POST", "/v2/w/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();
    let r = t.req("PUT", &loc, &[], Body::empty()).await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(t.get(&loc).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn upload_cancel_and_unknown() {
    let t = T::new();
    let r = t
        .req("POST", "/v2/u/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();
    // Another repository cannot use it.
    let other = loc.replace("/v2/u/", "/v2/v/");
    assert_eq!(t.get(&other).await.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = t.req("DELETE", &loc, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(t.get(&loc).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        t.get("/v2/u/blobs/uploads/not-a-uuid").await.code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    let r = t
        .req("PATCH", "/v2/u/blobs/uploads/../../etc", &[], "x")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(t.upload_dirs(), 0);
}

#[tokio::test]
async fn cross_repo_mount() {
    let t = T::new();
    let d = t.push_blob("src", b"shared layer").await;
    let r = t
        .req(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("Location"), format!("/v2/dst/blobs/{d}"));
    assert_eq!(
        t.get(&format!("/v2/dst/blobs/{d}")).await.status,
        StatusCode::OK
    );

    // Not in `from`: falls back to a new upload session.
    let missing = sha(b"nope");
    let r = t
        .req(
            "POST",
            &format!("/v2/dst2/blobs/uploads/?mount={missing}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.h("Location").starts_with("/v2/dst2/blobs/uploads/"));
    let r = t
        .req(
            "POST",
            &format!("/v2/dst3/blobs/uploads/?mount={d}&from=Bad..Name"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "NAME_INVALID");
}

#[tokio::test]
async fn manifests_all_media_types() {
    let t = T::new();
    let (m, md) = t.push_image("img", "v1", "a").await;

    for reference in ["v1".to_string(), md.to_string()] {
        let r = t.get(&format!("/v2/img/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("Content-Type"), OCI_MANIFEST);
        assert_eq!(r.h("Docker-Content-Digest"), md.to_string());
        assert_eq!(&r.body[..], m.as_bytes());
        let r = t
            .req(
                "HEAD",
                &format!("/v2/img/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.h("Content-Length"), m.len().to_string());
        assert!(r.body.is_empty());
    }
    // Accept handling.
    let r = t
        .req(
            "GET",
            "/v2/img/manifests/v1",
            &[("Accept", &format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"))],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .req(
            "GET",
            "/v2/img/manifests/v1",
            &[("Accept", DOCKER_MANIFEST)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");

    // Docker schema 2 with the same blobs.
    let v: Value = serde_json::from_str(&m).unwrap();
    let docker = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": v["config"]["digest"], "size": v["config"]["size"]},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": v["layers"][0]["digest"], "size": v["layers"][0]["size"]}],
    })
    .to_string();
    let r = t
        .put_manifest("img", "docker", DOCKER_MANIFEST, &docker)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dd = sha(docker.as_bytes());
    assert_eq!(
        t.get("/v2/img/manifests/docker").await.h("Content-Type"),
        DOCKER_MANIFEST
    );

    // OCI index and Docker manifest list over them.
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": m.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string();
    assert_eq!(
        t.put_manifest("img", "index", OCI_INDEX, &index)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.get("/v2/img/manifests/index").await.h("Content-Type"),
        OCI_INDEX
    );
    let list = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": dd, "size": docker.len(), "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string();
    assert_eq!(
        t.put_manifest("img", "list", DOCKER_LIST, &list)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.get("/v2/img/manifests/list").await.h("Content-Type"),
        DOCKER_LIST
    );

    // Push by digest.
    let r = t
        .put_manifest("img", &md.to_string(), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("Location"), format!("/v2/img/manifests/{md}"));
    let r = t
        .put_manifest("img", &dd.to_string(), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");

    // Delete by tag, then by digest (removes its tags).
    let r = t
        .req("DELETE", "/v2/img/manifests/docker", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        t.get("/v2/img/manifests/docker").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        t.get(&format!("/v2/img/manifests/{dd}")).await.status,
        StatusCode::OK
    );
    let r = t
        .req(
            "DELETE",
            &format!("/v2/img/manifests/{md}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        t.get("/v2/img/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
    let r = t
        .req(
            "DELETE",
            &format!("/v2/img/manifests/{md}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let r = t
        .req("PATCH", "/v2/img/manifests/v1", &[], Body::empty())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
}

#[tokio::test]
async fn manifest_validation() {
    // HARDENING A6 #51.
    let t = T::new();
    let cfg = t.push_blob("v", b"{}").await;
    let missing = sha(b"missing layer");
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 13}],
    })
    .to_string();
    let r = t.put_manifest("v", "t", OCI_MANIFEST, &m).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(t.get("/v2/v/manifests/t").await.code(), "MANIFEST_UNKNOWN");

    // Blob exists, but in another repository only.
    let other = t.push_blob("elsewhere", b"missing layer").await;
    assert_eq!(other, missing);
    let r = t.put_manifest("v", "t", OCI_MANIFEST, &m).await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");

    // Index with a missing child.
    let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]}).to_string();
    assert_eq!(
        t.put_manifest("v", "i", OCI_INDEX, &idx).await.code(),
        "MANIFEST_BLOB_UNKNOWN"
    );

    // Wrong size in a descriptor.
    let bad_size = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": cfg, "size": 3}, "layers": []}).to_string();
    assert_eq!(
        t.put_manifest("v", "s", OCI_MANIFEST, &bad_size)
            .await
            .code(),
        "MANIFEST_INVALID"
    );

    for (ct, body) in [
        (OCI_MANIFEST, "not json".to_string()),
        (OCI_MANIFEST, "[1,2]".to_string()),
        // Ambiguous: both an index and a manifest.
        (OCI_MANIFEST, json!({"schemaVersion": 2, "config": {"mediaType": "x", "digest": cfg, "size": 2}, "layers": [], "manifests": []}).to_string()),
        // mediaType disagrees with Content-Type.
        (DOCKER_MANIFEST, json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "x", "digest": cfg, "size": 2}, "layers": []}).to_string()),
        ("application/vnd.docker.distribution.manifest.v1+prettyjws", "{}".to_string()),
    ] {
        let r = t.put_manifest("v", "bad", ct, &body).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"), "{body}");
    }

    // > 4 MiB: 413 whether or not Content-Length announces it.
    let huge = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"x":"{}"}}}}"#,
        "a".repeat(4 << 20)
    );
    let r = t.put_manifest("v", "big", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let stream = futures::stream::iter(
        (0..5).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1 << 20]))),
    );
    let r = t
        .send(
            Request::put("/v2/v/manifests/big")
                .header("Content-Type", OCI_MANIFEST)
                .body(Body::from_stream(stream))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(t.get("/v2/v/tags/list").await.json()["tags"], json!([]));
}

#[tokio::test]
async fn names_and_tags_invalid() {
    // HARDENING A6 #53.
    let t = T::new();
    let long = "a".repeat(10_000);
    for name in [
        "UPPER",
        "a/../b",
        "..",
        "a//b",
        "-x",
        long.as_str(),
        "a/_layers",
    ] {
        let r = t.get(&format!("/v2/{name}/tags/list")).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{name}"
        );
        assert!(r.body.len() < 1000);
        let r = t
            .req(
                "POST",
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(r.code(), "NAME_INVALID");
    }
    let long_tag = "t".repeat(129);
    for tag in [".hidden", "-x", long_tag.as_str(), "a%2Fb"] {
        let r = t.put_manifest("ok", tag, OCI_MANIFEST, "{}").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            "{tag}"
        );
        assert_eq!(
            t.get(&format!("/v2/ok/manifests/{tag}")).await.code(),
            "TAG_INVALID"
        );
    }
    assert_eq!(t.upload_dirs(), 0);
}

#[tokio::test]
async fn tags_pagination() {
    let t = T::new();
    let (m, _) = t.push_image("p", "t0", "x").await;
    for i in 1..5 {
        assert_eq!(
            t.put_manifest("p", &format!("t{i}"), OCI_MANIFEST, &m)
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let r = t.get("/v2/p/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "p", "tags": ["t0", "t1", "t2", "t3", "t4"]})
    );
    assert_eq!(r.h("Link"), "");
    let r = t.get("/v2/p/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["t0", "t1"]));
    assert_eq!(r.h("Link"), "</v2/p/tags/list?n=2&last=t1>; rel=\"next\"");
    let r = t.get("/v2/p/tags/list?n=2&last=t1").await;
    assert_eq!(r.json()["tags"], json!(["t2", "t3"]));
    let r = t.get("/v2/p/tags/list?n=2&last=t3").await;
    assert_eq!(r.json()["tags"], json!(["t4"]));
    assert_eq!(r.h("Link"), "");
    let r = t.get("/v2/p/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    // HARDENING A6 #52: huge n and garbage last are bounded, not errors.
    let r = t.get("/v2/p/tags/list?n=1e12").await;
    assert_eq!(r.json()["tags"].as_array().unwrap().len(), 5);
    let r = t
        .get("/v2/p/tags/list?n=99999999999999999999999&last=%00%ff%2F..%2F..")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .get(&format!("/v2/p/tags/list?last={}", "z".repeat(5000)))
        .await;
    assert_eq!(r.json()["tags"], json!([]));
    let r = t.get("/v2/nope/tags/list").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
}

#[tokio::test]
async fn catalog_pagination() {
    let t = T::new();
    let (m, _) = t.push_image("r0", "t", "x").await;
    for name in ["r1", "r2/nested", "r3"] {
        let cfg: Value = serde_json::from_str(&m).unwrap();
        for key in ["config"] {
            let d: Digest = cfg[key]["digest"].as_str().unwrap().parse().unwrap();
            let r = t
                .req(
                    "POST",
                    &format!("/v2/{name}/blobs/uploads/?mount={d}&from=r0"),
                    &[],
                    Body::empty(),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED);
        }
        let d: Digest = cfg["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        t.req(
            "POST",
            &format!("/v2/{name}/blobs/uploads/?mount={d}&from=r0"),
            &[],
            Body::empty(),
        )
        .await;
        assert_eq!(
            t.put_manifest(name, "t", OCI_MANIFEST, &m).await.status,
            StatusCode::CREATED
        );
    }
    let r = t.get("/v2/_catalog").await;
    assert_eq!(
        r.json(),
        json!({"repositories": ["r0", "r1", "r2/nested", "r3"]})
    );
    let r = t.get("/v2/_catalog?n=2").await;
    assert_eq!(r.json()["repositories"], json!(["r0", "r1"]));
    assert_eq!(r.h("Link"), "</v2/_catalog?n=2&last=r1>; rel=\"next\"");
    let r = t.get("/v2/_catalog?n=2&last=r1").await;
    assert_eq!(r.json()["repositories"], json!(["r2/nested", "r3"]));
    // CVE-2023-2253: n is capped, never allocated.
    for n in ["1e12", "1000000000000", "18446744073709551616"] {
        let r = t.get(&format!("/v2/_catalog?n={n}")).await;
        assert_eq!(r.status, StatusCode::OK, "{n}");
        assert_eq!(r.json()["repositories"].as_array().unwrap().len(), 4);
    }
    let r = t.get("/v2/_catalog?n=abc").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID")
    );
    let r = t.get("/v2/_catalog?last=%FF%FE%20garbage").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn referrers_api() {
    let t = T::new();
    let (_, subject) = t.push_image("ref", "v1", "s").await;
    let empty_cfg = t.push_blob("ref", b"{}").await;
    let sig = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_cfg, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"org.example": "yes"},
    })
    .to_string();
    let sd = sha(sig.as_bytes());
    let r = t
        .put_manifest("ref", &sd.to_string(), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.h("OCI-Subject"), subject.to_string());
    let sbom = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.example.sbom", "digest": empty_cfg, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
    })
    .to_string();
    assert_eq!(
        t.put_manifest(
            "ref",
            &sha(sbom.as_bytes()).to_string(),
            OCI_MANIFEST,
            &sbom
        )
        .await
        .status,
        StatusCode::CREATED
    );

    let r = t.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.h("Content-Type"), OCI_INDEX);
    let v = r.json();
    assert_eq!(v["mediaType"], OCI_INDEX);
    let list = v["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let sig_desc = list.iter().find(|d| d["digest"] == sd.to_string()).unwrap();
    assert_eq!(
        sig_desc["artifactType"],
        "application/vnd.example.signature"
    );
    assert_eq!(sig_desc["annotations"]["org.example"], "yes");
    assert_eq!(sig_desc["size"], sig.len());
    let r = t
        .get(&format!(
            "/v2/ref/referrers/{subject}?artifactType=application%2Fvnd.example.sbom"
        ))
        .await;
    assert_eq!(r.h("OCI-Filters-Applied"), "artifactType");
    let list = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom");
    // Unknown subject: an empty index.
    let r = t.get(&format!("/v2/ref/referrers/{}", sha(b"x"))).await;
    assert_eq!(r.json()["manifests"], json!([]));
    // Deleting the referrer removes it from the list.
    t.req(
        "DELETE",
        &format!("/v2/ref/manifests/{sd}"),
        &[],
        Body::empty(),
    )
    .await;
    let r = t.get(&format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn basic_auth_and_hostile_headers() {
    // HARDENING A6 #55.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let ht = berth_registry::auth::Htpasswd::parse(&format!("alice:{hash}\n")).unwrap();
    let t = T::with(|r| r.with_auth(ht));
    let r = t.get("/v2/").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(r.h("WWW-Authenticate"), "Basic realm=\"berth-registry\"");
    let huge = format!("Basic {}", "A".repeat(100_000));
    let none_alg = "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjF9.";
    let wrong = basic("alice", "nope");
    let bad_b64 = "Basic ###".to_string();
    let no_colon = format!("Basic {}", {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("alice")
    });
    for h in [
        wrong.as_str(),
        none_alg,
        huge.as_str(),
        bad_b64.as_str(),
        no_colon.as_str(),
        "Basic",
        "",
    ] {
        let r = t
            .req(
                "GET",
                "/v2/_catalog",
                &[("Authorization", h)],
                Body::empty(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            &h[..h.len().min(40)]
        );
    }
    let ok = basic("alice", "s3cret");
    let r = t
        .req("GET", "/v2/", &[("Authorization", &ok)], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .req(
            "POST",
            "/v2/a/blobs/uploads/",
            &[("Authorization", &ok)],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn read_only_and_rate_limits() {
    let t = T::with(|r| r.read_only(true));
    assert_eq!(t.get("/v2/").await.status, StatusCode::OK);
    for (m, uri) in [
        ("POST", "/v2/a/blobs/uploads/"),
        ("PUT", "/v2/a/manifests/t"),
        ("DELETE", "/v2/a/manifests/t"),
    ] {
        let r = t.req(m, uri, &[], Body::empty()).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{m}"
        );
    }
    let t = T::with(|r| r.max_uploads(1));
    let r = t
        .req("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t
        .req("POST", "/v2/a/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS")
    );
}

/// A body that yields `first`, then fails like a dropped connection.
fn broken_body(first: Vec<u8>) -> Body {
    let items: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(first)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Body::from_stream(futures::stream::iter(items))
}

#[tokio::test]
async fn resume_after_connection_drop_and_restart() {
    // HARDENING B21: kill mid-upload, then resume.
    let mut t = T::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = sha(&data);
    let r = t
        .req("POST", "/v2/k/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();

    let r = t
        .send(
            Request::patch(&loc)
                .body(broken_body(data[..1_500_000].to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID")
    );
    let r = t.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.h("Range"), "0-1499999");

    // A request future dropped at an arbitrary point leaves a consistent session.
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let app = t.app.clone();
    let loc2 = loc.clone();
    let task = tokio::spawn(async move {
        let req = Request::patch(&loc2)
            .header("Content-Range", "1500000-2999999")
            .body(Body::from_stream(rx))
            .unwrap();
        app.oneshot(req).await
    });
    let mut tx = tx;
    use futures::SinkExt;
    tx.send(Ok(Bytes::copy_from_slice(&data[1_500_000..2_700_000])))
        .await
        .unwrap();
    task.abort();
    let _ = task.await;
    drop(tx);

    // Restart the server: the session is found on disk and its hash rebuilt.
    t.restart();
    let r = t.get(&loc).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let end: usize = r.h("Range").split('-').nth(1).unwrap().parse().unwrap();
    let offset = end + 1;
    assert!(offset == 1_500_000 || offset == 2_700_000, "{offset}");
    let range = format!("{offset}-{}", data.len() - 1);
    let r = t
        .req(
            "PATCH",
            &loc,
            &[("Content-Range", &range)],
            data[offset..].to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = t
        .req("PUT", &format!("{loc}?digest={d}"), &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        &t.get(&format!("/v2/k/blobs/{d}")).await.body[..],
        &data[..]
    );
}

#[tokio::test]
async fn stale_uploads_are_purged() {
    let t = T::new();
    let r = t
        .req("POST", "/v2/s/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();
    let uuid = loc.rsplit('/').next().unwrap();
    // A session left by a previous run, 25 hours old.
    let old = t
        .dir
        .path()
        .join("uploads/00000000-0000-4000-8000-000000000000");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("repo"), "s").unwrap();
    let f = std::fs::File::create(old.join("data")).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(25 * 3600))
        .unwrap();
    drop(f);
    let n = t
        .reg
        .purge_stale_uploads(Duration::from_secs(24 * 3600))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!old.exists());
    assert!(t.dir.path().join("uploads").join(uuid).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_the_same_blob() {
    // HARDENING A6 #54 (first half).
    let t = Arc::new(T::new());
    let data: Vec<u8> = vec![42u8; 2_500_000];
    let d = sha(&data);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let t = t.clone();
        let data = data.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let repo = format!("same{}", i % 2);
            let r = t
                .req(
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    Body::empty(),
                )
                .await;
            let loc = r.h("Location").to_string();
            for (a, chunk) in data.chunks(700_000).enumerate() {
                let start = a * 700_000;
                let range = format!("{start}-{}", start + chunk.len() - 1);
                let r = t
                    .req("PATCH", &loc, &[("Content-Range", &range)], chunk.to_vec())
                    .await;
                assert_eq!(r.status, StatusCode::ACCEPTED);
            }
            let r = t
                .req("PUT", &format!("{loc}?digest={d}"), &[], Body::empty())
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let blobs = t.reg.store().list_blobs().unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(
        t.reg.store().blob_size(&d).unwrap(),
        Some(data.len() as u64)
    );
    assert_eq!(t.upload_dirs(), 0);
    assert!(std::fs::read_dir(t.dir.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_during_gc() {
    // HARDENING A6 #54 (second half) and B21 (gc while pushing).
    let t = Arc::new(T::new());
    let store = t.reg.store().clone();

    // An old unreferenced blob that a manifest push starts using: GC must keep it.
    let old_cfg = t.push_blob("g", b"{\"old\":true}").await;
    let p = store.blob_path(&old_cfg);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": old_cfg, "size": 12}, "layers": []}).to_string();
    assert_eq!(
        t.put_manifest("g", "old", OCI_MANIFEST, &m).await.status,
        StatusCode::CREATED
    );
    let zero = GcOptions {
        grace: Duration::ZERO,
        dry_run: false,
    };
    let r = gc::run(&store, &zero).unwrap();
    assert!(r.deleted.is_empty(), "{r:?}");
    assert!(t.blob_exists(&old_cfg));

    // Pushes racing a GC loop with the default grace period: every push succeeds and
    // nothing is deleted.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_task = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut runs = 0;
            let mut deleted = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || runs == 0 {
                deleted += gc::run(&store, &GcOptions::default())
                    .unwrap()
                    .deleted
                    .len();
                runs += 1;
            }
            (runs, deleted)
        })
    };
    let mut pushes = Vec::new();
    for i in 0..6 {
        let t = t.clone();
        pushes.push(tokio::spawn(async move {
            for j in 0..5 {
                t.push_image(&format!("gc{i}"), &format!("t{j}"), &format!("{i}-{j}"))
                    .await;
            }
        }));
    }
    for p in pushes {
        p.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (runs, deleted) = gc_task.await.unwrap();
    assert!(runs >= 1);
    assert_eq!(deleted, 0);

    // Aggressive GC (grace 0) racing pushes: pushes may be refused, but no accepted
    // manifest ever loses a blob.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_task = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                gc::run(
                    &store,
                    &GcOptions {
                        grace: Duration::ZERO,
                        dry_run: false,
                    },
                )
                .unwrap();
            }
        })
    };
    let mut pushes = Vec::new();
    for i in 0..4 {
        let t = t.clone();
        pushes.push(tokio::spawn(async move {
            for j in 0..5 {
                let repo = format!("z{i}");
                let config = format!("{{\"z\":\"{i}-{j}\"}}");
                let cd = sha(config.as_bytes());
                let r = t.req("POST", &format!("/v2/{repo}/blobs/uploads/?digest={cd}"), &[], config.clone()).await;
                assert_eq!(r.status, StatusCode::CREATED);
                let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()}, "layers": []}).to_string();
                let r = t.put_manifest(&repo, &format!("t{j}"), OCI_MANIFEST, &m).await;
                assert!(r.status == StatusCode::CREATED || r.code() == "MANIFEST_BLOB_UNKNOWN", "{:?}", r.body);
            }
        }));
    }
    for p in pushes {
        p.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    gc_task.await.unwrap();
    gc::run(&store, &zero).unwrap();
    // Every manifest of every repository still has all its blobs.
    for repo in store.catalog().unwrap() {
        for tag in store.list_tags(&repo).unwrap().unwrap() {
            let r = t.get(&format!("/v2/{repo}/manifests/{tag}")).await;
            assert_eq!(r.status, StatusCode::OK);
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            let mut refs = vec![v["config"]["digest"].as_str().unwrap().to_string()];
            for l in v["layers"].as_array().unwrap() {
                refs.push(l["digest"].as_str().unwrap().to_string());
            }
            for d in refs {
                let r = t
                    .req("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], Body::empty())
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{repo}:{tag} lost {d}");
            }
        }
    }
}

#[tokio::test]
async fn gc_after_delete_frees_blobs() {
    let t = T::new();
    let (m, md) = t.push_image("d", "v1", "q").await;
    let v: Value = serde_json::from_str(&m).unwrap();
    let layer: Digest = v["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    let r = t
        .req(
            "DELETE",
            &format!("/v2/d/manifests/{md}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let report = berth_registry::gc(berth_registry::GcArgs {
        root: t.dir.path().to_path_buf(),
        dry_run: false,
        grace_period: 0,
    })
    .await
    .unwrap();
    assert_eq!(report.deleted.len(), 3, "{report:?}");
    assert!(!t.blob_exists(&layer));
    assert!(!t.blob_exists(&md));
}

#[tokio::test(start_paused = true)]
async fn stalled_body_releases_the_session() {
    // A half-open connection: the body sends 3 bytes, then nothing, forever. Time is
    // virtual here, so the idle timeout fires without waiting.
    let t = T::new();
    let r = t
        .req("POST", "/v2/stall/blobs/uploads/", &[], Body::empty())
        .await;
    let loc = r.h("Location").to_string();
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    use futures::SinkExt;
    tx.send(Ok(Bytes::from_static(b"abc"))).await.unwrap();
    let r = t
        .send(Request::patch(&loc).body(Body::from_stream(rx)).unwrap())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID")
    );
    let r = t.get(&loc).await;
    assert_eq!(r.h("Range"), "0-2");
    drop(tx);
}
