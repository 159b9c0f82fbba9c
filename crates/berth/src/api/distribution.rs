//! Registry endpoints: `POST /images/create?fromImage=` (pull), `POST /images/{name}/push`,
//! `POST /auth` and `GET /images/search`.
//!
//! Pull and push answer with Docker's JSON progress stream. An error before the first
//! progress message is a plain HTTP error (so `docker pull nosuch` prints the daemon's
//! message and exits 1); after that it is an `{"errorDetail":…,"error":…}` line, as Docker
//! does. Credentials arrive in the `X-Registry-Auth` header.

use super::{bad_request, ApiError, ApiResult, AppState, Query};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use berth_engine::distribution::{self, Credentials, DistributionError, DistributionErrorKind, Progress, ProgressSink};
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;

fn status_of(e: &DistributionError, unauthorized: StatusCode) -> StatusCode {
    match e.kind() {
        DistributionErrorKind::NotFound => StatusCode::NOT_FOUND,
        DistributionErrorKind::Unauthorized | DistributionErrorKind::Denied => unauthorized,
        DistributionErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn creds(headers: &HeaderMap) -> Option<Credentials> {
    headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()).and_then(Credentials::from_header)
}

enum Msg {
    P(Progress),
    Done(Result<(), DistributionError>),
}

fn line(v: serde_json::Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    bytes::Bytes::from(s)
}

/// Run a registry operation, streaming its progress; errors before any output become HTTP errors.
async fn stream_op<F>(run: impl FnOnce(ProgressSink) -> F) -> ApiResult
where
    F: std::future::Future<Output = Result<(), DistributionError>> + Send + 'static,
{
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<Msg>();
    let tx2 = tx.clone();
    let sink: ProgressSink = Arc::new(move |p| {
        let _ = tx.unbounded_send(Msg::P(p));
    });
    let fut = run(sink);
    // Detached: a client that goes away does not cancel the pull (its layers stay useful).
    tokio::spawn(async move {
        let r = fut.await;
        let _ = tx2.unbounded_send(Msg::Done(r));
    });
    let first = rx.next().await;
    let first = match first {
        Some(Msg::Done(Err(e))) => return Err(ApiError(status_of(&e, StatusCode::NOT_FOUND), e.message().to_string())),
        Some(m) => m,
        None => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "operation ended without a result".into())),
    };
    let body = futures::stream::once(async move { first }).chain(rx).filter_map(|m| async move {
        match m {
            Msg::P(p) => Some(Ok::<_, std::convert::Infallible>(line(p.to_json()))),
            Msg::Done(Ok(())) => None,
            Msg::Done(Err(e)) => Some(Ok(line(json!({"errorDetail": {"message": e.message()}, "error": e.message()})))),
        }
    });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

/// POST `/images/create`: `fromImage` pulls; anything else (import) goes to the images module.
pub async fn create(State(eng): State<AppState>, q: Query, uri: axum::http::Uri, headers: HeaderMap, body: Body) -> ApiResult {
    let Some(from) = q.get("fromImage").cloned().filter(|s| !s.is_empty()) else {
        return super::images::create(State(eng), q, uri, body).await;
    };
    let tag = q.get("tag").cloned().unwrap_or_default();
    let has_tag_or_digest = from.contains('@') || from.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let (reference, all_tags) = if tag.is_empty() {
        (from.clone(), !has_tag_or_digest)
    } else if tag.starts_with("sha256:") {
        (format!("{from}@{tag}"), false)
    } else {
        (format!("{from}:{tag}"), false)
    };
    let opts = distribution::PullOptions {
        platform: q.get("platform").cloned().filter(|s| !s.is_empty()),
        creds: creds(&headers),
        all_tags,
    };
    stream_op(move |sink| async move { distribution::pull::pull(eng, &reference, &opts, sink).await.map(|_| ()) }).await
}

/// POST `/images/{name}/push` here; `/images/{name}/tag` goes to the images module.
pub async fn post_dispatch(State(eng): State<AppState>, path: Path<String>, q: Query, headers: HeaderMap) -> ApiResult {
    let Some(name) = path.0.strip_suffix("/push").map(String::from) else {
        return super::images::post_dispatch(State(eng), path, q).await;
    };
    let tag = q.get("tag").cloned().filter(|t| !t.is_empty());
    let opts = distribution::PushOptions { creds: creds(&headers) };
    stream_op(move |sink| async move { distribution::push::push(eng, &name, tag.as_deref(), &opts, sink).await.map(|_| ()) }).await
}

/// POST `/auth`: check credentials (`docker login`).
pub async fn auth(body: axum::body::Bytes) -> ApiResult {
    let c: Credentials = serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid auth configuration: {e}")))?;
    match distribution::client::login(&c).await {
        Ok(status) => super::ok_json(&json!({"Status": status, "IdentityToken": ""})),
        Err(e) => Err(ApiError(status_of(&e, StatusCode::UNAUTHORIZED), e.message().to_string())),
    }
}

/// GET `/images/search?term=&limit=`.
pub async fn search(q: Query, headers: HeaderMap) -> ApiResult {
    let term = q.get("term").cloned().unwrap_or_default();
    if term.is_empty() {
        return Err(bad_request("term is required"));
    }
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(25);
    let filters = super::filters(&q)?;
    let mut res = distribution::client::search(&term, limit, creds(&headers))
        .await
        .map_err(|e| ApiError(status_of(&e, StatusCode::UNAUTHORIZED), e.message().to_string()))?;
    if let Some(v) = filters.get("is-official").and_then(|v| v.first()) {
        let want = v == "true";
        res.retain(|r| r.is_official == want);
    }
    if let Some(n) = filters.get("stars").and_then(|v| v.first()).and_then(|v| v.parse::<u64>().ok()) {
        res.retain(|r| r.star_count >= n);
    }
    super::ok_json(&res)
}
