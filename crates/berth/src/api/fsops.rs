//! `/containers/{id}/archive`, `/changes`, `/export` and `/commit`.

use super::*;
use axum::extract::{Path as UrlPath, State};
use base64::Engine as _;
use serde_json::json;

fn stat_header(st: &berth_engine::fsops::PathStat) -> HeaderValue {
    let j = serde_json::to_vec(st).unwrap_or_default();
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(j)).unwrap_or(HeaderValue::from_static(""))
}

pub async fn archive_head(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let path = q.get("path").cloned().ok_or_else(|| bad_request("path is required"))?;
    let st = blocking(move || eng.archive_stat(&id, &path)).await?;
    let mut r = Response::new(Body::empty());
    r.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok(r)
}

pub async fn archive_get(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let path = q.get("path").cloned().ok_or_else(|| bad_request("path is required"))?;
    let (e2, id2, p2) = (eng.clone(), id.clone(), path.clone());
    let st = blocking(move || e2.archive_stat(&id2, &p2)).await?;
    let (w, r) = tokio::io::duplex(256 << 10);
    let bridge = tokio_util::io::SyncIoBridge::new(w);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = eng.archive_get(&id, &path, bridge) {
            tracing::warn!("archive get: {e}");
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(r)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    resp.headers_mut().insert("X-Docker-Container-Path-Stat", stat_header(&st));
    Ok(resp)
}

pub async fn archive_put(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query, body: Body) -> ApiResult {
    let path = q.get("path").cloned().ok_or_else(|| bad_request("path is required"))?;
    let no_overwrite = qbool(&q, "noOverwriteDirNonDir");
    let rd = super::images::body_reader(body);
    blocking(move || eng.archive_put(&id, &path, rd, no_overwrite)).await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn changes(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let v = blocking(move || eng.changes(&id)).await?;
    let out: Vec<serde_json::Value> = v.into_iter().map(|(p, k)| json!({"Path": p, "Kind": k})).collect();
    ok_json(&out)
}

pub async fn export(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    eng.get_container(&id)?;
    let (w, r) = tokio::io::duplex(256 << 10);
    let bridge = tokio_util::io::SyncIoBridge::new(w);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = eng.export(&id, bridge) {
            tracing::warn!("export: {e}");
        }
    });
    let mut resp = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(r)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(resp)
}

pub async fn commit(State(eng): State<AppState>, q: Query, body: axum::body::Bytes) -> ApiResult {
    let container = q.get("container").cloned().ok_or_else(|| bad_request("container is required"))?;
    let repo = q.get("repo").cloned().filter(|s| !s.is_empty());
    let tag = q.get("tag").cloned().filter(|s| !s.is_empty());
    let reference = repo.map(|r| match tag {
        Some(t) => format!("{r}:{t}"),
        None => r,
    });
    let comment = q.get("comment").cloned();
    let author = q.get("author").cloned();
    let changes: Vec<String> = q.get("changes").map(|c| c.lines().map(String::from).filter(|l| !l.trim().is_empty()).collect()).unwrap_or_default();
    let pause = q.get("pause").is_none_or(|p| p != "0" && p != "false");
    let overrides: Option<bollard::models::ContainerConfig> = if body.is_empty() { None } else { serde_json::from_slice(&body).ok() };
    let img = blocking(move || {
        let paused = pause && eng.pause_container(&container, true).is_ok();
        let r = eng.commit_container(&container, reference.as_deref(), comment.as_deref(), author.as_deref(), &changes, overrides);
        if paused {
            let _ = eng.pause_container(&container, false);
        }
        r
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, &json!({"Id": img.id.to_string()})))
}
