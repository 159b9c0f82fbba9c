//! The Docker Engine API server: HTTP/1.1 over a unix socket, versioned paths, hijacked
//! streams for attach and exec. Handlers translate between HTTP and [`Engine`] calls; HTTP status
//! codes are chosen here and only here, from [`ErrorKind`].

mod build;
mod containers;
mod fsops;
mod distribution;
mod images;
mod networks;
mod streams;
mod system;
mod volumes;

pub use containers::human_duration as human_duration_pub;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post};
use axum::Router;
use berth_engine::{Engine, EngineError, ErrorKind};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Newest API version served; clients asking for newer ones are answered with this.
pub const API_VERSION: &str = "1.51";
/// Oldest API version accepted (Debian's docker 20.10 client speaks 1.41).
pub const MIN_API_VERSION: &str = "1.24";

pub type AppState = Arc<Engine>;

/// An error response in Docker's `{"message": ...}` shape.
pub struct ApiError(pub StatusCode, pub String);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let code = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.message().to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::NOT_MODIFIED {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let body = serde_json::json!({ "message": self.1 }).to_string();
        (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

pub fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// A JSON response with Docker's content type.
pub fn json_response(status: StatusCode, v: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (status, [(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub fn ok_json(v: &impl serde::Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, v))
}

/// Query parameters (all as strings).
pub type Query = axum::extract::Query<HashMap<String, String>>;

/// Docker booleans in query strings: `1`, `true`, `True`.
pub fn qbool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).map(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE" | "yes")).unwrap_or(false)
}

/// Parse a `filters` query parameter: `{"key":["v"]}` or the old `{"key":{"v":true}}`.
pub fn filters(q: &HashMap<String, String>) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = q.get("filters").filter(|s| !s.is_empty()) else { return Ok(HashMap::new()) };
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad_request(format!("invalid filter: {e}")))?;
    let mut out = HashMap::new();
    if let Some(obj) = v.as_object() {
        for (k, v) in obj {
            let vals: Vec<String> = match v {
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                serde_json::Value::Object(o) => o.keys().cloned().collect(),
                serde_json::Value::String(s) => vec![s.clone()],
                _ => vec![],
            };
            out.insert(k.clone(), vals);
        }
    }
    Ok(out)
}

/// Run blocking engine work off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> ApiResult<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/system/df", get(system::df))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/networks/prune", post(networks::prune))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/images/json", get(images::list))
        .route("/images/create", post(distribution::create))
        .route("/images/search", get(distribution::search))
        .route("/auth", post(distribution::auth))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route("/images/{*rest}", get(images::get_dispatch).post(distribution::post_dispatch).delete(images::remove))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/logs", get(streams::logs))
        .route("/containers/{id}/attach", post(streams::attach))
        .route("/containers/{id}/exec", post(containers::exec_create))
        .route("/containers/{id}/archive", get(fsops::archive_get).head(fsops::archive_head).put(fsops::archive_put))
        .route("/containers/{id}/changes", get(fsops::changes))
        .route("/containers/{id}/export", get(fsops::export))
        .route("/commit", post(fsops::commit))
        .route("/containers/{id}", delete(containers::remove))
        .route("/exec/{id}/start", post(streams::exec_start))
        .route("/exec/{id}/resize", post(containers::exec_resize))
        .route("/exec/{id}/json", get(containers::exec_inspect))
        .route("/session", post(system::not_implemented))
        .route("/distribution/{*rest}", get(system::not_implemented))
        .route("/_berth/health", head(system::ping))
        .fallback(system::fallback)
        .with_state(state)
}

/// Strip `/v1.NN` from the path; refuse versions older than [`MIN_API_VERSION`].
fn strip_version(mut req: Request) -> Result<Request, Response> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some((ver, tail)) = rest.split_once('/') {
            if ver.split('.').count() == 2 && ver.split('.').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())) {
                if version_lt(ver, MIN_API_VERSION) {
                    let msg = format!(
                        "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                    );
                    return Err(ApiError(StatusCode::BAD_REQUEST, msg).into_response());
                }
                let new_path = format!("/{tail}");
                let pq = match req.uri().query() {
                    Some(q) => format!("{new_path}?{q}"),
                    None => new_path,
                };
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = pq.parse().ok();
                if let Ok(u) = axum::http::Uri::from_parts(parts) {
                    *req.uri_mut() = u;
                }
            }
        }
    }
    Ok(req)
}

pub fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| -> (u32, u32) {
        let mut it = s.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    p(a) < p(b)
}

/// API requests served so far (the daemon's idle trim watches it).
pub static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Serve the API on `socket` until the process is told to stop.
pub async fn serve(engine: AppState, socket: &Path) -> anyhow::Result<()> {
    use tower::Service;
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(socket)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    }
    let app = router(engine);
    tracing::info!(socket = %socket.display(), "API listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut app = app.clone();
                async move {
                    REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let req = req.map(Body::new);
                    let mut resp = match strip_version(req) {
                        Ok(req) => app.call(req).await.unwrap_or_else(|e| match e {}),
                        Err(r) => r,
                    };
                    let h = resp.headers_mut();
                    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
                    h.insert("Server", HeaderValue::from_static("Docker/28.2.2 (linux)"));
                    h.insert("Ostype", HeaderValue::from_static("linux"));
                    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // The docker CLI half-closes an attach connection it has no stdin for right after
            // the upgrade: keep serving a half-closed connection.
            builder.http1().half_close(true);
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}
