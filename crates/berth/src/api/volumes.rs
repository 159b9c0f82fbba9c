//! `/volumes/...` endpoints: create, list, inspect, remove, prune (Docker's JSON shapes).

use super::*;
use axum::extract::{Path as UrlPath, State};
use serde_json::json;
use std::collections::BTreeMap;

/// Bodies of `POST /volumes/create` are small; anything bigger is refused.
const MAX_CREATE_BODY: usize = 1 << 20;

/// `GET /volumes?filters=`.
pub async fn list(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let v = blocking(move || {
        let vols = eng.filter_volumes(&f)?;
        Ok(vols.iter().map(|v| eng.volume_json(v, false)).collect::<Vec<_>>())
    })
    .await?;
    ok_json(&json!({"Volumes": v, "Warnings": []}))
}

fn string_map(v: &serde_json::Value, field: &str) -> ApiResult<BTreeMap<String, String>> {
    match v.get(field) {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(bad_request(format!("invalid {field}: value of {k:?} must be a string"))),
            })
            .collect(),
        Some(_) => Err(bad_request(format!("invalid {field}: must be an object"))),
    }
}

/// `POST /volumes/create` with `{Name, Driver, DriverOpts, Labels}`.
pub async fn create(State(eng): State<AppState>, body: axum::body::Bytes) -> ApiResult {
    if body.len() > MAX_CREATE_BODY {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, "request body too large".into()));
    }
    let v: serde_json::Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON: {e}")))?
    };
    let name = v.get("Name").and_then(|n| n.as_str()).map(String::from);
    let driver = v.get("Driver").and_then(|n| n.as_str()).map(String::from);
    let labels = string_map(&v, "Labels")?;
    let opts = string_map(&v, "DriverOpts")?;
    let out = blocking(move || {
        let rec = eng.create_volume(name.as_deref(), driver.as_deref(), labels, opts)?;
        Ok(eng.volume_json(&rec, false))
    })
    .await?;
    Ok(json_response(StatusCode::CREATED, &out))
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(eng): State<AppState>, UrlPath(name): UrlPath<String>) -> ApiResult {
    let out = blocking(move || {
        let rec = eng.get_volume(&name)?;
        Ok(eng.volume_json(&rec, false))
    })
    .await?;
    ok_json(&out)
}

/// `DELETE /volumes/{name}?force=`.
pub async fn remove(State(eng): State<AppState>, UrlPath(name): UrlPath<String>, q: Query) -> ApiResult {
    let force = qbool(&q, "force");
    blocking(move || eng.remove_volume(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune?filters=` (`all=true` also removes unused named volumes). Before
/// API 1.42 (docker CLI < 23) prune removed every unused volume; the version prefix is gone
/// by the time a handler runs, so old docker clients are recognised by their User-Agent.
pub async fn prune(State(eng): State<AppState>, headers: axum::http::HeaderMap, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let all = old_docker_client(ua);
    let (deleted, reclaimed) = blocking(move || eng.prune_volumes(all, &f)).await?;
    let deleted = if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) };
    ok_json(&json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}))
}

/// The `Volumes` part of `/system/df`: every volume with its `UsageData`.
pub fn df_volumes(eng: &Engine) -> Result<Vec<serde_json::Value>, EngineError> {
    Ok(eng.list_volumes()?.iter().map(|v| eng.volume_json(v, true)).collect())
}

/// `Docker-Client/20.10.24+dfsg1 (linux)`: a docker CLI older than 23 (API < 1.42).
fn old_docker_client(ua: &str) -> bool {
    ua.strip_prefix("Docker-Client/")
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|major| major < 23)
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_clients() {
        assert!(super::old_docker_client("Docker-Client/20.10.24+dfsg1 (linux)"));
        assert!(!super::old_docker_client("Docker-Client/28.2.2 (linux)"));
        assert!(!super::old_docker_client("berth"));
    }
}
