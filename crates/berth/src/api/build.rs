//! `POST /build` (Docker's classic builder protocol) and `POST /build/prune`.
//!
//! The body is the build context as a tar (plain, gzip or zstd). It is unpacked with
//! `berth_archive` into a private directory under the data root (bounded, in-root), then
//! the engine's builder runs on it. Output is Docker's JSON message stream:
//! `{"stream":"Step 1/5 : FROM busybox\n"}` ... `{"aux":{"ID":"sha256:..."}}`, and a failure
//! after the stream started is `{"errorDetail":{"code":N,"message":...},"error":...}`.
//!
//! berth extension: `berthcontext=/abs/dir` (sent by `berth build` when the daemon is on the
//! same host) builds straight from that directory, with no tar round trip; the file hash memo
//! then makes unchanged rebuilds nearly free. Only clients of the root-owned socket can ask
//! for it, and they can already mount any host path into a container.

use super::{bad_request, ApiError, ApiResult, AppState};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use berth_engine::build::{BuildError, BuildMessage, BuildOptions};
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;

/// Most bytes of a context tar accepted (BOUND).
const MAX_CONTEXT_BYTES: u64 = 32 << 30;

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters in order, repeated keys kept (`t` may repeat).
fn params(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (urldecode(k), urldecode(v)),
            None => (urldecode(kv), String::new()),
        })
        .collect()
}

fn json_map(v: Option<&String>, what: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(s) = v.filter(|s| !s.is_empty()) else { return Ok(BTreeMap::new()) };
    let m: BTreeMap<String, Option<String>> = serde_json::from_str(s).map_err(|e| bad_request(format!("invalid {what}: {e}")))?;
    Ok(m.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
}

fn line(v: serde_json::Value) -> bytes::Bytes {
    let mut s = v.to_string();
    s.push_str("\r\n");
    bytes::Bytes::from(s)
}

fn error_line(e: &BuildError) -> bytes::Bytes {
    let mut detail = json!({ "message": e.message() });
    if let Some(c) = e.code {
        detail["code"] = json!(c);
    }
    line(json!({ "errorDetail": detail, "error": e.message() }))
}

/// POST `/build`.
pub async fn build(State(eng): State<AppState>, RawQuery(raw): RawQuery, body: Body) -> ApiResult {
    let ps = params(raw.as_deref());
    let get = |k: &str| ps.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let flag = |k: &str| get(k).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"));
    if get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "remote build contexts are not supported by berth yet".into()));
    }
    let mut opts = BuildOptions {
        tags: ps.iter().filter(|(k, _)| k == "t").map(|(_, v)| v.clone()).filter(|v| !v.is_empty()).collect(),
        build_args: json_map(get("buildargs").as_ref(), "buildargs")?,
        labels: json_map(get("labels").as_ref(), "labels")?,
        no_cache: flag("nocache"),
        pull: flag("pull"),
        quiet: flag("q"),
        target: get("target").filter(|t| !t.is_empty()),
        network: get("networkmode").filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into()),
        ..Default::default()
    };
    if let Some(d) = get("dockerfile").filter(|d| !d.is_empty()) {
        opts.dockerfile = d;
    }
    if !matches!(opts.network.as_str(), "default" | "host" | "none" | "bridge") {
        return Err(bad_request(format!("network mode {:?} is not supported for builds by berth", opts.network)));
    }
    let local = get("berthcontext").filter(|c| !c.is_empty());
    if let Some(dir) = &local {
        if !std::path::Path::new(dir).is_absolute() {
            return Err(bad_request("berthcontext must be an absolute path"));
        }
    }
    // with a local context the body, when present, is the Dockerfile itself
    let body = if local.is_some() {
        let bytes = axum::body::to_bytes(body, berth_dockerfile::MAX_DOCKERFILE_SIZE + 1)
            .await
            .map_err(|e| bad_request(format!("read the Dockerfile: {e}")))?;
        if !bytes.is_empty() {
            opts.dockerfile_text = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        Body::empty()
    } else {
        body
    };
    let quiet = opts.quiet;
    let (tx, rx) = futures::channel::mpsc::unbounded::<bytes::Bytes>();
    let eng2 = eng.clone();
    tokio::task::spawn_blocking(move || {
        let tx2 = tx.clone();
        let sink = move |m: BuildMessage| {
            let l = match m {
                BuildMessage::Stream(s) => line(json!({ "stream": s })),
                BuildMessage::Aux(v) => line(json!({ "aux": v })),
            };
            let _ = tx2.unbounded_send(l);
        };
        let tmp = eng2.config.data_root.join("build-tmp").join(format!("ctx-{}", std::process::id() as u64 * 1_000_003 + rand_u32() as u64));
        let res = (|| -> Result<berth_engine::build::BuildOutcome, BuildError> {
            let ctx = match &local {
                Some(d) => std::path::PathBuf::from(d),
                None => {
                    let ctx = tmp.join("context");
                    std::fs::create_dir_all(&ctx).map_err(|e| BuildError::new(berth_engine::build::BuildErrorKind::Internal, e.to_string()))?;
                    let rd = super::images::body_reader(body);
                    let rd = berth_archive::decompress(std::io::BufReader::with_capacity(1 << 20, rd), MAX_CONTEXT_BYTES)?;
                    let aopts = berth_archive::ApplyOptions { skip_root_entry: true, allow_devices: false, ..Default::default() };
                    berth_archive::apply_layer(&ctx, rd, &aopts)
                        .map_err(|e| BuildError::new(berth_engine::build::BuildErrorKind::InvalidInput, format!("unpack the build context: {e}")))?;
                    ctx
                }
            };
            eng2.build(&ctx, &opts, &sink)
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        match res {
            Ok(out) => {
                if quiet {
                    let _ = tx.unbounded_send(line(json!({ "stream": format!("{}\n", out.id) })));
                }
            }
            Err(e) => {
                tracing::info!("build failed: {e}");
                let _ = tx.unbounded_send(error_line(&e));
            }
        }
    });
    let body = rx.map(Ok::<_, std::convert::Infallible>);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

/// POST `/build/prune`.
pub async fn prune(State(eng): State<AppState>) -> ApiResult {
    let (ids, freed) = super::blocking(move || eng.prune_build_cache().map_err(|e| berth_engine::EngineError::internal(e.to_string()))).await?;
    super::ok_json(&json!({ "CachesDeleted": if ids.is_empty() { serde_json::Value::Null } else { json!(ids) }, "SpaceReclaimed": freed }))
}
