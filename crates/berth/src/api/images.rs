//! `/images/...` endpoints.

use super::*;
use axum::extract::State;
use berth_engine::image::ImageRecord;
use berth_engine::reference::Reference;
use futures::TryStreamExt;
use serde_json::json;
use std::collections::HashMap as Map;

fn unix(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map(|t| t.timestamp()).unwrap_or(0)
}

fn familiar_tags(tags: &Map<String, Vec<String>>, id: &str) -> Vec<String> {
    tags.get(id)
        .map(|v| v.iter().map(|t| Reference::parse(t).map(|r| r.familiar()).unwrap_or_else(|_| t.clone())).collect())
        .unwrap_or_default()
}

/// `ImageSummary` for one image.
pub fn summary(eng: &Engine, img: &ImageRecord, tags: &Map<String, Vec<String>>) -> Result<serde_json::Value, EngineError> {
    let cfg = eng.image_config(img)?;
    let created = cfg.created.as_deref().map(unix).unwrap_or(0);
    Ok(json!({
        "Id": img.id.to_string(),
        "ParentId": img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "RepoTags": familiar_tags(tags, img.id.as_str()),
        "RepoDigests": img.repo_digests.iter().map(|d| Reference::parse(d).map(|r| r.familiar()).unwrap_or_else(|_| d.clone())).collect::<Vec<_>>(),
        "Created": created,
        "Size": img.size,
        "SharedSize": -1,
        "VirtualSize": img.size,
        "Labels": cfg.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default(),
        "Containers": -1,
    }))
}

pub async fn list(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let v = blocking(move || {
        let tags = eng.tags_by_image()?;
        let mut out = Vec::new();
        let imgs = eng.list_images()?;
        for img in &imgs {
            let t = tags.get(img.id.as_str());
            let mut s = summary(&eng, img, &tags)?;
            if let Some(d) = f.get("dangling") {
                let want = d.iter().any(|x| x == "true" || x == "1");
                if want != t.is_none_or(|t| t.is_empty()) {
                    continue;
                }
            }
            if let Some(refs) = f.get("reference") {
                let names = familiar_tags(&tags, img.id.as_str());
                if !refs.iter().any(|pat| names.iter().any(|n| ref_match(pat, n))) {
                    continue;
                }
                // like dockerd, only the matching tags are listed
                let matching: Vec<String> = names.into_iter().filter(|n| refs.iter().any(|pat| ref_match(pat, n))).collect();
                s["RepoTags"] = json!(matching);
            }
            if let Some(ls) = f.get("label") {
                let labels = s["Labels"].clone();
                if !ls.iter().all(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    labels.get(k).is_some_and(|x| v.is_empty() || x == v)
                }) {
                    continue;
                }
            }
            for key in ["before", "since"] {
                if let Some(vals) = f.get(key) {
                    for v in vals {
                        let other = eng.resolve_image(v)?;
                        let oc = summary(&eng, &other, &tags)?["Created"].as_i64().unwrap_or(0);
                        let c = s["Created"].as_i64().unwrap_or(0);
                        if (key == "before" && c >= oc) || (key == "since" && c <= oc) {
                            s = serde_json::Value::Null;
                        }
                    }
                }
            }
            if s.is_null() {
                continue;
            }
            out.push(s);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s["Created"].as_i64().unwrap_or(0)));
        Ok(out)
    })
    .await?;
    ok_json(&v)
}

/// `docker images --filter reference=PATTERN`: glob on `name[:tag]`.
fn ref_match(pat: &str, name: &str) -> bool {
    let (pn, pt) = match pat.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (pat, None),
    };
    let (nn, nt) = name.rsplit_once(':').unwrap_or((name, "latest"));
    glob(pn, nn) && pt.is_none_or(|t| glob(t, nt))
}

fn glob(p: &str, s: &str) -> bool {
    let (p, s) = (p.as_bytes(), s.as_bytes());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) && p[pi] != b'*' {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

pub fn inspect_json(eng: &Engine, img: &ImageRecord) -> Result<serde_json::Value, EngineError> {
    let cfg = eng.image_config(img)?;
    let tags = eng.tags_by_image()?;
    let layers: Vec<String> = cfg.rootfs.diff_ids.iter().map(|d| d.to_string()).collect();
    let lowers: Vec<String> = eng
        .snapshots
        .lowers(img.top_chain().as_deref())
        .unwrap_or_default()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut config = serde_json::to_value(cfg.config.clone().unwrap_or_default())?;
    if let Some(o) = config.as_object_mut() {
        for k in ["Env", "Cmd", "Entrypoint", "Labels", "OnBuild", "Volumes", "WorkingDir", "User", "ExposedPorts"] {
            if !o.contains_key(k) {
                let v = match k {
                    "WorkingDir" | "User" => json!(""),
                    "Labels" | "Entrypoint" | "OnBuild" | "Volumes" | "ExposedPorts" => serde_json::Value::Null,
                    _ => serde_json::Value::Null,
                };
                if k != "ExposedPorts" && k != "Volumes" {
                    o.insert(k.into(), v);
                }
            }
        }
    }
    Ok(json!({
        "Id": img.id.to_string(),
        "RepoTags": familiar_tags(&tags, img.id.as_str()),
        "RepoDigests": img.repo_digests.iter().map(|d| Reference::parse(d).map(|r| r.familiar()).unwrap_or_else(|_| d.clone())).collect::<Vec<_>>(),
        "Parent": img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "Comment": cfg.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": cfg.created.clone().unwrap_or_default(),
        "DockerVersion": "",
        "Author": cfg.author.clone().unwrap_or_default(),
        "Config": config,
        "Architecture": cfg.architecture,
        "Variant": cfg.variant,
        "Os": cfg.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": lowers.join(":")}},
        "RootFS": {"Type": "layers", "Layers": layers},
        "Metadata": {"LastTagTime": img.stored_at},
        "Descriptor": {"mediaType": berth_engine::image::MT_OCI_MANIFEST, "digest": img.manifest.to_string(),
                       "size": eng.content.size(&img.manifest).unwrap_or(0)},
    }))
}

fn history_json(eng: &Engine, img: &ImageRecord) -> Result<serde_json::Value, EngineError> {
    let cfg = eng.image_config(img)?;
    let tags = familiar_tags(&eng.tags_by_image()?, img.id.as_str());
    let mut out = Vec::new();
    let mut layer_i = 0;
    let sizes: Vec<u64> = img
        .layers
        .iter()
        .map(|l| eng.snapshots.get(&berth_engine::image::layer_key(&l.chain_id)).ok().flatten().map(|s| s.size).unwrap_or(0))
        .collect();
    let n = cfg.history.len();
    for (i, h) in cfg.history.iter().enumerate() {
        let empty = h.empty_layer.unwrap_or(false);
        let size = if empty {
            0
        } else {
            let s = sizes.get(layer_i).copied().unwrap_or(0);
            layer_i += 1;
            s
        };
        let top = i + 1 == n;
        out.push(json!({
            "Id": if top { img.id.to_string() } else { "<missing>".into() },
            "Created": h.created.as_deref().map(unix).unwrap_or(0),
            "CreatedBy": h.created_by.clone().unwrap_or_default(),
            "Tags": if top { json!(tags) } else { serde_json::Value::Null },
            "Size": size,
            "Comment": h.comment.clone().unwrap_or_default(),
        }));
    }
    if out.is_empty() {
        out.push(json!({"Id": img.id.to_string(), "Created": cfg.created.as_deref().map(unix).unwrap_or(0), "CreatedBy": "", "Tags": tags, "Size": img.size, "Comment": ""}));
    }
    out.reverse();
    Ok(json!(out))
}

/// GET `/images/{name}/json|history|get`.
pub async fn get_dispatch(State(eng): State<AppState>, axum::extract::Path(rest): axum::extract::Path<String>, q: Query) -> ApiResult {
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let v = blocking(move || {
            let img = eng.resolve_image(&name)?;
            inspect_json(&eng, &img)
        })
        .await?;
        return ok_json(&v);
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let v = blocking(move || {
            let img = eng.resolve_image(&name)?;
            history_json(&eng, &img)
        })
        .await?;
        return ok_json(&v);
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save_names(eng, vec![name.to_string()]).await;
    }
    let _ = q;
    Err(ApiError(StatusCode::NOT_FOUND, format!("page not found: /images/{rest}")))
}

/// POST `/images/{name}/tag|push`.
pub async fn post_dispatch(State(eng): State<AppState>, axum::extract::Path(rest): axum::extract::Path<String>, q: Query) -> ApiResult {
    if let Some(name) = rest.strip_suffix("/tag") {
        let name = name.to_string();
        let repo = q.get("repo").cloned().unwrap_or_default();
        let tag = q.get("tag").cloned().filter(|t| !t.is_empty());
        blocking(move || {
            let img = eng.resolve_image(&name)?;
            let r = match tag {
                Some(t) => format!("{repo}:{t}"),
                None => repo,
            };
            eng.tag_image(&img.id, &r)
        })
        .await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if rest.ends_with("/push") {
        return Err(ApiError(StatusCode::NOT_IMPLEMENTED, "push is not implemented by berth yet".into()));
    }
    Err(ApiError(StatusCode::NOT_FOUND, format!("page not found: /images/{rest}")))
}

pub async fn remove(State(eng): State<AppState>, axum::extract::Path(name): axum::extract::Path<String>, q: Query) -> ApiResult {
    let force = qbool(&q, "force");
    let v = blocking(move || {
        let e2 = eng.clone();
        eng.remove_image(&name, force, &|id| e2.container_using_image(id))
    })
    .await?;
    ok_json(&v)
}

/// Request body as a blocking reader (bridged from the async body stream).
pub fn body_reader(body: Body) -> impl std::io::Read + Send + 'static {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    tokio_util::io::SyncIoBridge::new(reader)
}

/// POST `/images/create`: `fromSrc` (import); `fromImage` (pull) arrives with the registry client.
pub async fn create(State(eng): State<AppState>, q: Query, uri: axum::http::Uri, body: Body) -> ApiResult {
    if let Some(src) = q.get("fromSrc") {
        if src != "-" {
            return Err(bad_request("importing from a URL is not supported by berth; pipe the archive to stdin (-)"));
        }
        let repo = q.get("repo").cloned().filter(|s| !s.is_empty());
        let tag = q.get("tag").cloned().filter(|s| !s.is_empty());
        let reference = repo.map(|r| match tag {
            Some(t) => format!("{r}:{t}"),
            None => r,
        });
        let changes: Vec<String> = q_all(uri.query().unwrap_or(""), "changes");
        let message = q.get("message").cloned();
        let rd = body_reader(body);
        let img = blocking(move || eng.import_image(rd, &changes, message.as_deref(), reference.as_deref())).await?;
        let line = json!({"status": img.id.to_string()});
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], format!("{line}\n")).into_response());
    }
    if let Some(img) = q.get("fromImage") {
        let tag = q.get("tag").cloned().unwrap_or_default();
        let name = if tag.is_empty() { img.clone() } else { format!("{img}:{tag}") };
        // Without a registry client yet: succeed if present locally, else a clear error.
        let e2 = eng.clone();
        let n2 = name.clone();
        let found = blocking(move || Ok(e2.resolve_image(&n2).is_ok())).await?;
        if found {
            let line = json!({"status": format!("Status: Image is up to date for {name}")});
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], format!("{line}\n")).into_response());
        }
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("pull access denied for {img}: berth cannot pull from registries yet (import or load the image instead)"),
        ));
    }
    Err(bad_request("either fromSrc or fromImage must be given"))
}

/// Docker sends repeated `changes` params; axum's map keeps one, so parse the raw query.
pub fn q_all(raw: &str, k: &str) -> Vec<String> {
    raw.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(key, _)| *key == k)
        .map(|(_, v)| urldecode(v))
        .filter(|v| !v.is_empty())
        .collect()
}

pub async fn load(State(eng): State<AppState>, q: Query, body: Body) -> ApiResult {
    let quiet = qbool(&q, "quiet");
    let rd = body_reader(body);
    let loaded = blocking(move || berth_engine::transfer::load(&eng, rd)).await?;
    let mut out = String::new();
    for l in loaded {
        let msg = if quiet { l.clone() } else { l };
        out.push_str(&json!({"stream": format!("{msg}\n")}).to_string());
        out.push('\n');
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response())
}

pub async fn save_many(State(eng): State<AppState>, uri: axum::http::Uri) -> ApiResult {
    let names: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("names="))
        .map(|v| urldecode(v))
        .collect();
    save_names(eng, names).await
}

fn urldecode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

async fn save_names(eng: AppState, names: Vec<String>) -> ApiResult {
    if names.is_empty() {
        return Err(bad_request("no image names given"));
    }
    // Resolve first so a bad name is a clean 404 before streaming starts.
    let e2 = eng.clone();
    let n2 = names.clone();
    blocking(move || {
        for n in &n2 {
            e2.resolve_image(n)?;
        }
        Ok(())
    })
    .await?;
    let (w, r) = tokio::io::duplex(256 << 10);
    let bridge = tokio_util::io::SyncIoBridge::new(w);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = berth_engine::transfer::save(&eng, &names, bridge, berth_engine::transfer::SaveFormat::Docker) {
            tracing::warn!("save: {e}");
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(r));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

pub async fn prune(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let all = f.get("dangling").is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
    let v = blocking(move || {
        let tags = eng.tags_by_image()?;
        let mut deleted = Vec::new();
        for img in eng.list_images()? {
            let tagged = tags.get(img.id.as_str()).is_some_and(|t| !t.is_empty());
            if (tagged && !all) || eng.container_using_image(&img.id).is_some() {
                continue;
            }
            let e2 = eng.clone();
            if let Ok(items) = eng.remove_image(img.id.as_str(), true, &|id| e2.container_using_image(id)) {
                deleted.extend(items);
            }
        }
        let freed = eng.gc_images()?;
        Ok(json!({"ImagesDeleted": if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) }, "SpaceReclaimed": freed}))
    })
    .await?;
    ok_json(&v)
}
