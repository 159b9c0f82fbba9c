//! The HTTP API: one handler parses the path into a `Route`, checks auth and
//! read-only mode, and dispatches to one function per endpoint.
//!
//! Repository names contain slashes, so axum's router cannot express the URL space;
//! paths are parsed from the end (`.../manifests/<ref>`, `.../blobs/uploads/<uuid>`),
//! like distribution does, and names are validated before they reach the store.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::auth::Htpasswd;
use crate::error::{ApiError, ErrorCode};
use crate::manifest::{self, ManifestErrorKind, MAX_MANIFEST_SIZE, OCI_INDEX};
use crate::names::{validate_name, validate_tag, Digest};
use crate::store::{ManifestPut, Store, StoreError};
use crate::upload::{Session, UploadError, UploadErrorKind, Uploads};

/// Chunk size used to stream blobs to clients.
const READ_CHUNK: usize = 256 << 10;
/// Most repositories returned by one `_catalog` page.
pub const CATALOG_MAX: usize = 1000;
/// Most tags returned by one `tags/list` page.
pub const TAGS_MAX: usize = 10_000;
/// Default cap on concurrently open upload sessions.
pub const DEFAULT_MAX_UPLOADS: usize = 4096;

/// The registry's shared state: the store, upload sessions and policy.
pub struct Registry {
    pub(crate) store: Store,
    pub(crate) uploads: Uploads,
    auth: Option<Arc<Htpasswd>>,
    read_only: bool,
}

impl Registry {
    /// A registry serving the store at `root` (created if missing), without auth.
    pub fn open(root: impl Into<std::path::PathBuf>) -> Result<Registry, StoreError> {
        let store = Store::open(root)?;
        Ok(Registry {
            uploads: Uploads::new(store.clone(), DEFAULT_MAX_UPLOADS),
            store,
            auth: None,
            read_only: false,
        })
    }

    /// Requires Basic auth against `htpasswd`.
    pub fn with_auth(mut self, htpasswd: Htpasswd) -> Registry {
        self.auth = Some(Arc::new(htpasswd));
        self
    }

    /// Refuses every write with `DENIED`.
    pub fn read_only(mut self, read_only: bool) -> Registry {
        self.read_only = read_only;
        self
    }

    /// Caps concurrently open upload sessions (`TOOMANYREQUESTS` beyond).
    pub fn max_uploads(mut self, n: usize) -> Registry {
        self.uploads = Uploads::new(self.store.clone(), n);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Purges upload sessions idle longer than `max_age`.
    pub async fn purge_stale_uploads(&self, max_age: std::time::Duration) -> anyhow::Result<usize> {
        let n = self.uploads.purge_stale(max_age).await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.purge_tmp(max_age)).await??;
        Ok(n)
    }
}

/// The axum router serving the registry API (use it in-process in tests).
pub fn router(state: Arc<Registry>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// Parsed URL.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

fn parse_route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| -> Option<String> { (n > k).then(|| segs[..n - k].join("/")) };
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Some(Route::Tags(name(2)?));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        let repo = name(3)?;
        return Some(if id.is_empty() {
            Route::UploadStart(repo)
        } else {
            Route::Upload(repo, id.to_string())
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Some(Route::UploadStart(name(2)?));
    }
    if n >= 3 {
        let last = segs[n - 1].to_string();
        match segs[n - 2] {
            "manifests" => return Some(Route::Manifest(name(2)?, last)),
            "blobs" => return Some(Route::Blob(name(2)?, last)),
            "referrers" => return Some(Route::Referrers(name(2)?, last)),
            _ => {}
        }
    }
    None
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> String {
    fn hexval(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|v| v as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            q.unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .take(64)
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the `n` pagination parameter, clamping huge values (`n=1e12`) to `cap`.
fn parse_n(v: Option<&str>, default: usize, cap: usize) -> Result<usize, ApiError> {
    let Some(v) = v else {
        return Ok(default.min(cap));
    };
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
        // Saturating: any run of digits is a valid (possibly huge) count.
        let n = v.bytes().fold(0usize, |acc, c| {
            acc.saturating_mul(10).saturating_add((c - b'0') as usize)
        });
        return Ok(n.min(cap));
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok((f as usize).min(cap)),
        _ => Err(
            ApiError::new(ErrorCode::PaginationNumberInvalid).msg(format!(
                "invalid n {:?}",
                v.chars().take(32).collect::<String>()
            )),
        ),
    }
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let bytes_in = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut user = String::new();
    let result = async {
        if let Some(auth) = &reg.auth {
            let h = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            match auth.check(h.as_deref()).await {
                Some(u) => user = u,
                None => {
                    return Err(ApiError::new(ErrorCode::Unauthorized)
                        .header(header::WWW_AUTHENTICATE, "Basic realm=\"berth-registry\""))
                }
            }
        }
        let route = parse_route(&path).ok_or_else(not_found)?;
        if reg.read_only && is_write(&method) {
            return Err(ApiError::new(ErrorCode::Denied).msg("registry is in read-only mode"));
        }
        dispatch(&reg, route, req).await
    }
    .await;
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    let bytes_out = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    tracing::info!(
        target: "berth_registry::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        bytes_in,
        bytes_out,
        duration_ms = start.elapsed().as_secs_f64() * 1000.0,
        user = %user,
        "request"
    );
    resp
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::Unsupported)
        .msg("not found")
        .with_status(StatusCode::NOT_FOUND)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::Unsupported).msg("method not allowed")
}

type ApiResult = Result<Response, ApiError>;

async fn dispatch(reg: &Arc<Registry>, route: Route, req: Request) -> ApiResult {
    // `Body` is not `Sync`: handlers get the head by reference and the body by value.
    let (parts, body) = req.into_parts();
    let req = &parts;
    let m = req.method.clone();
    match route {
        Route::Base => match m {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, "{}".into(), None)),
            _ => Err(method_not_allowed()),
        },
        Route::Catalog => match m {
            Method::GET => catalog(reg, req).await,
            _ => Err(method_not_allowed()),
        },
        Route::Tags(name) => {
            validate_name(&name)?;
            match m {
                Method::GET => tags_list(reg, &name, req).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Manifest(name, reference) => {
            validate_name(&name)?;
            match m {
                Method::GET | Method::HEAD => get_manifest(reg, &name, &reference, req).await,
                Method::PUT => put_manifest(reg, &name, &reference, req, body).await,
                Method::DELETE => delete_manifest(reg, &name, &reference).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Blob(name, digest) => {
            validate_name(&name)?;
            let digest: Digest = digest.parse()?;
            match m {
                Method::GET | Method::HEAD => get_blob(reg, &name, &digest, req).await,
                Method::DELETE => {
                    let (s, n, d) = (reg.store.clone(), name.clone(), digest.clone());
                    if blocking(move || s.unlink_blob(&n, &d)).await? {
                        Ok(empty(StatusCode::ACCEPTED, &[]))
                    } else {
                        Err(ApiError::new(ErrorCode::BlobUnknown).detail(json!({"digest": digest})))
                    }
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::UploadStart(name) => {
            validate_name(&name)?;
            match m {
                Method::POST => start_upload(reg, &name, req, body).await,
                _ => Err(method_not_allowed()),
            }
        }
        Route::Upload(name, uuid) => {
            validate_name(&name)?;
            let session = reg.uploads.get(&name, &uuid).await.map_err(upload_err)?;
            let mut s = session.lock().await;
            match m {
                Method::GET => {
                    let off = s.offset().await.map_err(upload_err)?;
                    Ok(upload_status(StatusCode::NO_CONTENT, &s, off))
                }
                Method::PATCH => patch_upload(&mut s, req, body).await,
                Method::PUT => finish_upload(reg, &mut s, req, body).await,
                Method::DELETE => {
                    reg.uploads.remove(&s).await.map_err(upload_err)?;
                    Ok(empty(StatusCode::NO_CONTENT, &[]))
                }
                _ => Err(method_not_allowed()),
            }
        }
        Route::Referrers(name, digest) => {
            validate_name(&name)?;
            let digest: Digest = digest.parse()?;
            match m {
                Method::GET => referrers(reg, &name, &digest, req).await,
                _ => Err(method_not_allowed()),
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| ApiError::new(ErrorCode::Unknown).msg(e.to_string())),
        Err(e) => Err(ApiError::new(ErrorCode::Unknown).msg(format!("worker failed: {e}"))),
    }
}

fn upload_err(e: UploadError) -> ApiError {
    let code = match e.kind() {
        UploadErrorKind::Unknown => ErrorCode::BlobUploadUnknown,
        UploadErrorKind::TooMany => ErrorCode::TooManyRequests,
        UploadErrorKind::Digest => ErrorCode::DigestInvalid,
        UploadErrorKind::Range => ErrorCode::RangeInvalid,
        UploadErrorKind::Size => ErrorCode::SizeInvalid,
        UploadErrorKind::Body => ErrorCode::BlobUploadInvalid,
        UploadErrorKind::Io => ErrorCode::Unknown,
    };
    let detail = match &e {
        UploadError::DigestMismatch { expected, actual } => {
            Some(json!({"expected": expected, "actual": actual}))
        }
        _ => None,
    };
    let mut err = ApiError::new(code).msg(e.to_string());
    err.detail = detail;
    err
}

fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(k, v);
        }
    }
    r
}

fn json_response(status: StatusCode, body: String, ct: Option<&str>) -> Response {
    let len = body.len();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(ct.unwrap_or("application/json"))
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

// ---- catalog and tags ------------------------------------------------------

async fn catalog(reg: &Registry, req: &Parts) -> ApiResult {
    let q = Query::parse(req.uri.query());
    let n = parse_n(q.get("n"), CATALOG_MAX, CATALOG_MAX)?;
    let last = q.get("last").map(str::to_string);
    let s = reg.store.clone();
    let all = blocking(move || s.catalog()).await?;
    let (page, more) = paginate(all, last.as_deref(), n);
    let mut resp = json_response(
        StatusCode::OK,
        json!({ "repositories": page }).to_string(),
        None,
    );
    if more {
        if let Some(l) = page.last() {
            let link = format!("</v2/_catalog?n={n}&last={l}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                resp.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(resp)
}

fn paginate(all: Vec<String>, last: Option<&str>, n: usize) -> (Vec<String>, bool) {
    let mut it = all
        .into_iter()
        .filter(|x| last.is_none_or(|l| x.as_str() > l))
        .peekable();
    let page: Vec<String> = it.by_ref().take(n).collect();
    let more = n > 0 && it.peek().is_some();
    (page, more)
}

async fn tags_list(reg: &Registry, name: &str, req: &Parts) -> ApiResult {
    let q = Query::parse(req.uri.query());
    let n = parse_n(q.get("n"), TAGS_MAX, TAGS_MAX)?;
    let last = q.get("last").map(str::to_string);
    let (s, nm) = (reg.store.clone(), name.to_string());
    let Some(all) = blocking(move || s.list_tags(&nm)).await? else {
        return Err(ApiError::new(ErrorCode::NameUnknown).detail(json!({"name": name})));
    };
    let (page, more) = paginate(all, last.as_deref(), n);
    let mut resp = json_response(
        StatusCode::OK,
        json!({ "name": name, "tags": page }).to_string(),
        None,
    );
    if more {
        if let Some(l) = page.last() {
            let link = format!("</v2/{name}/tags/list?n={n}&last={l}>; rel=\"next\"");
            if let Ok(v) = HeaderValue::from_str(&link) {
                resp.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(resp)
}

// ---- blobs -----------------------------------------------------------------

/// Parses a single `bytes=` range against `size`. `Ok(None)` means "whole blob".
fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = h else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        // Multipart ranges are not supported; serve the whole blob like distribution.
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| ())?;
        if suffix == 0 {
            return Err(());
        }
        (size.saturating_sub(suffix), size.checked_sub(1).ok_or(())?)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            size.checked_sub(1).ok_or(())?
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn get_blob(reg: &Registry, name: &str, d: &Digest, req: &Parts) -> ApiResult {
    let (s, n, dd) = (reg.store.clone(), name.to_string(), d.clone());
    let unknown = || ApiError::new(ErrorCode::BlobUnknown).detail(json!({"digest": d}));
    let Some(size) = blocking(move || s.repo_blob_size(&n, &dd)).await? else {
        return Err(unknown());
    };
    let range = parse_range(header_str(&req.headers, header::RANGE), size).map_err(|_| {
        ApiError::new(ErrorCode::RangeInvalid)
            .msg("requested range not satisfiable")
            .header(header::CONTENT_RANGE, &format!("bytes */{size}"))
    })?;
    let (start, len, status) = match range {
        Some((a, b)) => (a, b - a + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let mut headers = vec![
        ("Docker-Content-Digest", d.to_string()),
        ("Content-Type", "application/octet-stream".to_string()),
        ("Accept-Ranges", "bytes".to_string()),
        ("ETag", format!("\"{d}\"")),
        ("Cache-Control", "max-age=31536000".to_string()),
    ];
    if range.is_some() {
        headers.push((
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        ));
    }
    let mut resp = empty(status, &headers);
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if req.method == Method::HEAD {
        return Ok(resp);
    }
    let path = reg.store.blob_path(d);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
        Err(e) => {
            return Err(
                ApiError::new(ErrorCode::Unknown).msg(format!("open {}: {e}", path.display()))
            )
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::new(ErrorCode::Unknown).msg(format!("seek: {e}")))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_CHUNK);
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

// ---- uploads ---------------------------------------------------------------

fn upload_location(s: &Session) -> String {
    format!("/v2/{}/blobs/uploads/{}", s.repo, s.uuid)
}

fn range_header(offset: u64) -> String {
    // Docker's convention: "0-0" for an empty upload, else the last byte index.
    format!("0-{}", offset.saturating_sub(1))
}

fn upload_status(status: StatusCode, s: &Session, offset: u64) -> Response {
    empty(
        status,
        &[
            ("Location", upload_location(s)),
            ("Range", range_header(offset)),
            ("Docker-Upload-UUID", s.uuid.clone()),
        ],
    )
}

fn blob_created(name: &str, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("Location", format!("/v2/{name}/blobs/{d}")),
            ("Docker-Content-Digest", d.to_string()),
        ],
    )
}

async fn start_upload(reg: &Arc<Registry>, name: &str, req: &Parts, body: Body) -> ApiResult {
    let q = Query::parse(req.uri.query());
    if let Some(mount) = q.get("mount") {
        let d: Digest = mount.parse()?;
        let from = q.get("from").map(str::to_string);
        if let Some(f) = &from {
            validate_name(f)?;
        }
        let (s, n, dd) = (reg.store.clone(), name.to_string(), d.clone());
        let mounted = blocking(move || {
            let linked = match &from {
                Some(f) => s.has_blob_link(f, &dd)?,
                // Without `from` any repository's copy may be mounted (spec: MAY).
                None => true,
            };
            if linked && s.touch_blob(&dd)?.is_some() {
                s.link_blob(&n, &dd)?;
                return Ok(true);
            }
            Ok(false)
        })
        .await?;
        if mounted {
            return Ok(blob_created(name, &d));
        }
    }
    let digest = match q.get("digest") {
        Some(v) => Some(v.parse::<Digest>()?),
        None => None,
    };
    let session = reg.uploads.create(name).await.map_err(upload_err)?;
    let mut s = session.lock().await;
    let Some(d) = digest else {
        return Ok(upload_status(StatusCode::ACCEPTED, &s, 0));
    };
    let len = content_length(&req.headers)?;
    let res = async {
        s.append(body.into_data_stream(), len).await?;
        reg.uploads.finish(&s, &d).await
    }
    .await;
    match res {
        Ok(_) => Ok(blob_created(name, &d)),
        Err(e) => {
            // A monolithic upload leaves nothing behind on failure.
            let _ = reg.uploads.remove(&s).await;
            Err(upload_err(e))
        }
    }
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match header_str(h, header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::new(ErrorCode::SizeInvalid).msg("invalid Content-Length")),
    }
}

/// Parses `Content-Range: <start>-<end>` (optionally prefixed by `bytes `).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v.strip_prefix("bytes ").unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

/// Checks a chunk's `Content-Range` against the session offset; returns the
/// expected chunk length.
fn check_range(s: &Session, h: &HeaderMap, offset: u64) -> Result<Option<u64>, ApiError> {
    let len = content_length(h)?;
    let Some(cr) = header_str(h, header::CONTENT_RANGE) else {
        return Ok(len);
    };
    let range_err = |msg: String| {
        ApiError::new(ErrorCode::RangeInvalid)
            .msg(msg)
            .header(header::RANGE, &range_header(offset))
            .header(header::LOCATION, &upload_location(s))
            .header(
                header::HeaderName::from_static("docker-upload-uuid"),
                &s.uuid,
            )
    };
    let Some((start, end)) = parse_content_range(cr) else {
        return Err(range_err(format!("invalid Content-Range {cr:?}")));
    };
    if start != offset {
        return Err(range_err(format!(
            "chunk starts at {start} but upload is at {offset}"
        )));
    }
    let chunk = end - start + 1;
    if let Some(l) = len {
        if l != chunk {
            return Err(ApiError::new(ErrorCode::SizeInvalid).msg(format!(
                "Content-Length {l} does not match Content-Range {cr}"
            )));
        }
    }
    Ok(Some(chunk))
}

async fn patch_upload(s: &mut Session, req: &Parts, body: Body) -> ApiResult {
    let offset = s.offset().await.map_err(upload_err)?;
    let expected = check_range(s, &req.headers, offset)?;
    s.append(body.into_data_stream(), expected)
        .await
        .map_err(upload_err)?;
    let off = s.offset().await.map_err(upload_err)?;
    Ok(upload_status(StatusCode::ACCEPTED, s, off))
}

async fn finish_upload(reg: &Registry, s: &mut Session, req: &Parts, body: Body) -> ApiResult {
    let q = Query::parse(req.uri.query());
    let d: Digest = q
        .get("digest")
        .ok_or_else(|| ApiError::new(ErrorCode::DigestInvalid).msg("digest parameter missing"))?
        .parse()?;
    let offset = s.offset().await.map_err(upload_err)?;
    let expected = check_range(s, &req.headers, offset)?;
    s.append(body.into_data_stream(), expected)
        .await
        .map_err(upload_err)?;
    reg.uploads.finish(s, &d).await.map_err(upload_err)?;
    Ok(blob_created(&s.repo, &d))
}

// ---- manifests -------------------------------------------------------------

enum Reference {
    Tag(String),
    Digest(Digest),
}

fn parse_reference(r: &str) -> Result<Reference, ApiError> {
    if r.contains(':') {
        Ok(Reference::Digest(r.parse()?))
    } else {
        validate_tag(r)?;
        Ok(Reference::Tag(r.to_string()))
    }
}

fn manifest_unknown(reference: &str) -> ApiError {
    let r: String = reference.chars().take(200).collect();
    ApiError::new(ErrorCode::ManifestUnknown).detail(json!({ "reference": r }))
}

/// Whether an `Accept` header list admits `media_type`. No Accept means anything.
fn accepts(h: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for v in h.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let t = manifest::base_media_type(item);
            if t.is_empty() {
                continue;
            }
            any = true;
            if t == media_type || t == "*/*" || t == "application/*" {
                return true;
            }
        }
    }
    !any
}

async fn get_manifest(reg: &Registry, name: &str, reference: &str, req: &Parts) -> ApiResult {
    let r = parse_reference(reference)?;
    let (s, n) = (reg.store.clone(), name.to_string());
    let found = blocking(move || {
        let d = match r {
            Reference::Digest(d) => d,
            Reference::Tag(t) => match s.resolve_tag(&n, &t)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let Some(mt) = s.manifest_media_type(&n, &d)? else {
            return Ok(None);
        };
        Ok(s.read_blob(&d, MAX_MANIFEST_SIZE as u64)?
            .map(|body| (d, mt, body)))
    })
    .await?;
    let Some((d, mt, body)) = found else {
        return Err(manifest_unknown(reference));
    };
    if !accepts(&req.headers, &mt) {
        return Err(manifest_unknown(reference).msg(format!(
            "manifest is {mt}, which the client does not accept"
        )));
    }
    let len = body.len();
    let mut resp = empty(
        StatusCode::OK,
        &[
            ("Content-Type", mt),
            ("Docker-Content-Digest", d.to_string()),
            ("ETag", format!("\"{d}\"")),
        ],
    );
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if req.method != Method::HEAD {
        *resp.body_mut() = Body::from(body);
    }
    Ok(resp)
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: &Parts,
    body: Body,
) -> ApiResult {
    let r = parse_reference(reference)?;
    let too_big = || {
        ApiError::new(ErrorCode::ManifestInvalid)
            .msg(format!("manifest exceeds {MAX_MANIFEST_SIZE} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if content_length(&req.headers)?.is_some_and(|l| l > MAX_MANIFEST_SIZE as u64) {
        return Err(too_big());
    }
    let ct = header_str(&req.headers, header::CONTENT_TYPE).map(str::to_string);
    let body = http_body_util::Limited::new(body, MAX_MANIFEST_SIZE)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_big()
            } else {
                ApiError::new(ErrorCode::ManifestInvalid).msg(format!("reading manifest: {e}"))
            }
        })?
        .to_bytes();
    let parsed = manifest::parse(ct.as_deref(), &body).map_err(|e| match e.kind() {
        ManifestErrorKind::Invalid => ApiError::new(ErrorCode::ManifestInvalid).msg(e.to_string()),
        ManifestErrorKind::Unsupported => ApiError::new(ErrorCode::ManifestInvalid)
            .msg(e.to_string())
            .detail(json!({"supported": manifest::SUPPORTED})),
    })?;
    let digest = Digest::of(&body);
    let tag = match r {
        Reference::Digest(d) if d != digest => {
            return Err(ApiError::new(ErrorCode::DigestInvalid)
                .detail(json!({"expected": d, "actual": digest})))
        }
        Reference::Digest(_) => None,
        Reference::Tag(t) => Some(t),
    };
    let subject_desc = parsed.subject.as_ref().map(|subj| {
        let mut desc = json!({
            "mediaType": parsed.media_type,
            "digest": digest,
            "size": body.len(),
        });
        if let Some(at) = &parsed.artifact_type {
            desc["artifactType"] = json!(at);
        }
        if let Some(a) = &parsed.annotations {
            desc["annotations"] = a.clone();
        }
        (subj.digest.clone(), desc.to_string().into_bytes())
    });
    let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
    let (s, n, dg) = (reg.store.clone(), name.to_string(), digest.clone());
    let missing = blocking(move || {
        // Touching each referenced blob both checks it and protects it from a
        // concurrent GC (see Store::touch_blob and Store::gc_epoch_shared).
        let _epoch = s.gc_epoch_shared()?;
        for b in &parsed.blobs {
            if !s.has_blob_link(&n, &b.digest)? {
                return Ok(Some((b.digest.clone(), None)));
            }
            match s.touch_blob(&b.digest)? {
                None => return Ok(Some((b.digest.clone(), None))),
                Some(size) if size != b.size => return Ok(Some((b.digest.clone(), Some(size)))),
                Some(_) => {}
            }
        }
        for m in &parsed.manifests {
            if s.manifest_media_type(&n, &m.digest)?.is_none() || s.touch_blob(&m.digest)?.is_none()
            {
                return Ok(Some((m.digest.clone(), None)));
            }
        }
        s.put_manifest(&ManifestPut {
            repo: &n,
            digest: &dg,
            media_type: &parsed.media_type,
            body: &body,
            tag: tag.as_deref(),
            subject: subject_desc,
        })?;
        Ok(None)
    })
    .await?;
    match missing {
        Some((d, None)) => {
            return Err(ApiError::new(ErrorCode::ManifestBlobUnknown)
                .msg(format!("blob {d} unknown to registry"))
                .detail(json!({"digest": d})))
        }
        Some((d, Some(actual))) => {
            return Err(ApiError::new(ErrorCode::ManifestInvalid).msg(format!(
                "descriptor size of {d} does not match the blob ({actual} bytes)"
            )))
        }
        None => {}
    }
    let mut headers = vec![
        ("Location", format!("/v2/{name}/manifests/{digest}")),
        ("Docker-Content-Digest", digest.to_string()),
    ];
    if let Some(subj) = subject {
        headers.push(("OCI-Subject", subj.to_string()));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

async fn delete_manifest(reg: &Registry, name: &str, reference: &str) -> ApiResult {
    let r = parse_reference(reference)?;
    let (s, n) = (reg.store.clone(), name.to_string());
    let deleted = blocking(move || match r {
        Reference::Tag(t) => s.delete_tag(&n, &t),
        Reference::Digest(d) => {
            let subject = match (
                s.manifest_media_type(&n, &d)?,
                s.read_blob(&d, MAX_MANIFEST_SIZE as u64)?,
            ) {
                (Some(mt), Some(body)) => manifest::parse(Some(&mt), &body)
                    .ok()
                    .and_then(|p| p.subject.map(|x| x.digest)),
                _ => None,
            };
            s.delete_manifest(&n, &d, subject.as_ref())
        }
    })
    .await?;
    if deleted {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(manifest_unknown(reference))
    }
}

// ---- referrers -------------------------------------------------------------

async fn referrers(reg: &Registry, name: &str, subject: &Digest, req: &Parts) -> ApiResult {
    let q = Query::parse(req.uri.query());
    let filter = q.get("artifactType").map(str::to_string);
    let (s, n, d) = (reg.store.clone(), name.to_string(), subject.clone());
    let raw = blocking(move || s.list_referrers(&n, &d)).await?;
    let mut manifests: Vec<serde_json::Value> = raw
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    if let Some(f) = &filter {
        manifests.retain(|m| m.get("artifactType").and_then(|a| a.as_str()) == Some(f.as_str()));
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut resp = json_response(StatusCode::OK, body.to_string(), Some(OCI_INDEX));
    if filter.is_some() {
        resp.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Some(Route::Base));
        assert_eq!(parse_route("/v2"), Some(Route::Base));
        assert_eq!(parse_route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(
            parse_route("/v2/a/b/tags/list"),
            Some(Route::Tags("a/b".into()))
        );
        assert_eq!(
            parse_route("/v2/a/manifests/latest"),
            Some(Route::Manifest("a".into(), "latest".into()))
        );
        assert_eq!(
            parse_route("/v2/x/blobs/uploads/"),
            Some(Route::UploadStart("x".into()))
        );
        assert_eq!(
            parse_route("/v2/x/blobs/uploads"),
            Some(Route::UploadStart("x".into()))
        );
        assert_eq!(
            parse_route("/v2/x/blobs/uploads/blobs/uploads/abc"),
            Some(Route::Upload("x/blobs/uploads".into(), "abc".into()))
        );
        assert_eq!(
            parse_route("/v2/x/blobs/sha256:1"),
            Some(Route::Blob("x".into(), "sha256:1".into()))
        );
        assert_eq!(parse_route("/v2/manifests/x"), None);
        assert_eq!(parse_route("/v3/x"), None);
    }

    #[test]
    fn pagination_numbers() {
        assert_eq!(parse_n(None, 1000, 1000).unwrap(), 1000);
        assert_eq!(parse_n(Some("5"), 1000, 1000).unwrap(), 5);
        assert_eq!(parse_n(Some("1e12"), 1000, 1000).unwrap(), 1000);
        assert_eq!(
            parse_n(Some("99999999999999999999999999"), 1000, 1000).unwrap(),
            1000
        );
        assert!(parse_n(Some("-1"), 1000, 1000).is_err());
        assert!(parse_n(Some("abc"), 1000, 1000).is_err());
        let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            paginate(all.clone(), Some("a"), 1),
            (vec!["b".to_string()], true)
        );
        assert_eq!(
            paginate(all.clone(), Some("b"), 5),
            (vec!["c".to_string()], false)
        );
        assert_eq!(paginate(all, None, 0), (vec![], false));
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert!(parse_range(Some("bytes=10-"), 10).is_err());
        assert!(parse_range(Some("bytes=4-2"), 10).is_err());
        assert!(parse_range(Some("items=0-1"), 10).is_err());
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, 19)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
    }
}
