//! `/containers/...` and `/exec/...` endpoints (streams live in `streams.rs`).

use super::*;
use axum::extract::{Path as UrlPath, State};
use berth_engine::container::ContainerRecord;
use serde_json::json;

fn unix(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map(|t| t.timestamp()).unwrap_or(0)
}

fn ago(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else { return String::new() };
    human_duration(chrono::Utc::now().signed_duration_since(t).num_seconds())
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        172_800..=1_209_599 => format!("{} days", s / 86400),
        1_209_600..=5_183_999 => format!("{} weeks", s / 604_800),
        5_184_000..=63_071_999 => format!("{} months", s / 2_592_000),
        _ => format!("{} years", s / 31_536_000),
    }
}

/// `Status` column text as `docker ps` shows it.
pub fn status_text(c: &ContainerRecord) -> String {
    let st = &c.state;
    if st.running {
        let mut s = format!("Up {}", ago(&st.started_at));
        if st.paused {
            s.push_str(" (Paused)");
        } else if let Some(h) = &st.health {
            match h.status.as_str() {
                "starting" => s.push_str(" (health: starting)"),
                "healthy" => s.push_str(" (healthy)"),
                "unhealthy" => s.push_str(" (unhealthy)"),
                _ => {}
            }
        }
        return s;
    }
    if st.restarting {
        return format!("Restarting ({}) {} ago", st.exit_code, ago(&st.finished_at));
    }
    match st.status.as_str() {
        "created" => "Created".into(),
        "removing" => "Removal In Progress".into(),
        "dead" => "Dead".into(),
        _ if st.finished_at.starts_with("0001") => "Created".into(),
        _ => format!("Exited ({}) {} ago", st.exit_code, ago(&st.finished_at)),
    }
}

pub fn summary(eng: &Engine, c: &ContainerRecord, size: bool) -> serde_json::Value {
    let mut c2 = c.clone();
    c2.state.health = eng.live_health(c);
    let c = &c2;
    // dockerd quotes the arguments that contain a space (not the path)
    let cmd = std::iter::once(c.path.clone())
        .chain(c.args.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }))
        .collect::<Vec<_>>()
        .join(" ");
    let mut v = json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.config.image.clone().unwrap_or_default(),
        "ImageID": c.image,
        "Command": cmd,
        "Created": unix(&c.created),
        "Ports": eng.summary_ports(c),
        "Labels": c.config.labels.clone().unwrap_or_default(),
        "State": c.state.status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host_config.network_mode.clone().unwrap_or_default()},
        "NetworkSettings": {"Networks": eng.network_settings(c)["Networks"]},
        "Mounts": c.mounts,
    });
    if size {
        let rw = eng.snapshots.fs_dir(&c.snapshot).map(|p| berth_engine::snapshot::dir_size(&p)).unwrap_or(0);
        let img = eng.resolve_image(&c.image).map(|i| i.size).unwrap_or(0);
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rw + img);
    }
    v
}

fn matches_filters(eng: &Engine, c: &ContainerRecord, f: &HashMap<String, Vec<String>>) -> Result<bool, EngineError> {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "id" => vals.iter().any(|v| c.id.starts_with(v.as_str())),
            "name" => vals.iter().any(|v| c.name.contains(v.trim_start_matches('/'))),
            "status" => vals.iter().any(|v| v == &c.state.status),
            "exited" => vals.iter().any(|v| !c.state.running && c.state.status == "exited" && v.parse::<i64>().ok() == Some(c.state.exit_code)),
            "label" => vals.iter().all(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                c.config.labels.as_ref().and_then(|m| m.get(k)).is_some_and(|x| v.is_empty() || x == v)
            }),
            "ancestor" => vals.iter().any(|v| {
                c.config.image.as_deref() == Some(v.as_str()) || eng.resolve_image(v).map(|i| i.id.as_str() == c.image).unwrap_or(false)
            }),
            "health" => vals.iter().any(|v| {
                let h = eng.live_health(c).map(|h| h.status).unwrap_or_else(|| "none".into());
                &h == v
            }),
            "network" => vals.iter().any(|v| c.networks.contains_key(v) || c.host_config.network_mode.as_deref() == Some(v.as_str())),
            "before" | "since" => {
                let mut ok = true;
                for v in vals {
                    let other = eng.get_container(v)?;
                    let oc = other.lock().map(|r| r.created.clone()).unwrap_or_default();
                    ok &= if k == "before" { c.created < oc } else { c.created > oc };
                }
                ok
            }
            "is-task" => true,
            other => return Err(EngineError::invalid(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(State(eng): State<AppState>, q: Query) -> ApiResult {
    let all = qbool(&q, "all");
    let size = qbool(&q, "size");
    let limit: i64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(-1);
    let f = filters(&q)?;
    let v = blocking(move || {
        let mut out = Vec::new();
        for c in eng.all_containers() {
            if !all && !c.state.running && limit <= 0 && !f.contains_key("status") && !f.contains_key("exited") {
                continue;
            }
            if !matches_filters(&eng, &c, &f)? {
                continue;
            }
            out.push(summary(&eng, &c, size));
            if limit > 0 && out.len() as i64 >= limit {
                break;
            }
        }
        Ok(out)
    })
    .await?;
    ok_json(&v)
}

pub async fn create(State(eng): State<AppState>, q: Query, body: axum::body::Bytes) -> ApiResult {
    if body.len() > 4 << 20 {
        return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, "request body too large".into()));
    }
    let cfg: bollard::models::ContainerCreateBody =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON in request body: {e}")))?;
    let name = q.get("name").cloned();
    let (id, warnings) = blocking(move || eng.create_container(name.as_deref(), cfg)).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"Id": id, "Warnings": warnings})))
}

pub fn inspect_json(eng: &Engine, c: &ContainerRecord, size: bool) -> serde_json::Value {
    let mut st = c.state.clone();
    st.health = eng.live_health(c);
    let st = &st;
    let dir = eng.config.data_root.join("containers").join(&c.id);
    let mounts = eng.snapshots.mounts(&c.snapshot).ok();
    let graph = mounts.map(|m| {
        let mut d = serde_json::Map::new();
        for o in m.options {
            if let Some((k, v)) = o.split_once('=') {
                let key = match k {
                    "lowerdir" => "LowerDir",
                    "upperdir" => "UpperDir",
                    "workdir" => "WorkDir",
                    _ => continue,
                };
                d.insert(key.into(), json!(v));
            }
        }
        if let Some(u) = d.get("UpperDir").and_then(|u| u.as_str()).map(|u| u.replace("/fs", "/merged")) {
            d.insert("MergedDir".into(), json!(u));
        }
        json!({"Name": "overlay2", "Data": d})
    });
    let mut hc = serde_json::to_value(&c.host_config).unwrap_or(json!({}));
    if let Some(o) = hc.as_object_mut() {
        o.entry("NetworkMode").or_insert(json!("bridge"));
        o.entry("RestartPolicy").or_insert(json!({"Name": "no", "MaximumRetryCount": 0}));
        o.entry("LogConfig").or_insert(json!({"Type": "json-file", "Config": {}}));
        o.entry("AutoRemove").or_insert(json!(false));
        o.entry("Privileged").or_insert(json!(false));
        o.entry("Memory").or_insert(json!(0));
        o.entry("NanoCpus").or_insert(json!(0));
        o.entry("PidsLimit").or_insert(serde_json::Value::Null);
        o.entry("Binds").or_insert(serde_json::Value::Null);
        o.entry("PortBindings").or_insert(json!({}));
    }
    let mut cfg = serde_json::to_value(&c.config).unwrap_or(json!({}));
    if let Some(o) = cfg.as_object_mut() {
        o.entry("Hostname").or_insert(json!(&c.id[..12]));
        o.entry("Domainname").or_insert(json!(""));
        o.entry("User").or_insert(json!(""));
        o.entry("AttachStdin").or_insert(json!(false));
        o.entry("AttachStdout").or_insert(json!(false));
        o.entry("AttachStderr").or_insert(json!(false));
        o.entry("Tty").or_insert(json!(false));
        o.entry("OpenStdin").or_insert(json!(false));
        o.entry("StdinOnce").or_insert(json!(false));
        o.entry("WorkingDir").or_insert(json!(""));
        o.entry("Entrypoint").or_insert(serde_json::Value::Null);
    }
    let health = st.health.as_ref().map(|h| json!({"Status": h.status, "FailingStreak": h.failing_streak, "Log": h.log}));
    let mut state = json!({
        "Status": st.status,
        "Running": st.running,
        "Paused": st.paused,
        "Restarting": st.restarting,
        "OOMKilled": st.oom_killed,
        "Dead": st.dead,
        "Pid": st.pid,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": st.started_at,
        "FinishedAt": st.finished_at,
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let mut v = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": state,
        "Image": c.image,
        "ResolvConfPath": dir.join("resolv.conf").display().to_string(),
        "HostnamePath": dir.join("hostname").display().to_string(),
        "HostsPath": dir.join("hosts").display().to_string(),
        "LogPath": eng.log_path(&c.id).display().to_string(),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if c.exec_ids.is_empty() { serde_json::Value::Null } else { json!(c.exec_ids) },
        "HostConfig": hc,
        "GraphDriver": graph,
        "Mounts": c.mounts,
        "Config": cfg,
        "NetworkSettings": eng.network_settings(c),
    });
    if size {
        let s = summary(eng, c, true);
        v["SizeRw"] = s["SizeRw"].clone();
        v["SizeRootFs"] = s["SizeRootFs"].clone();
    }
    v
}

pub async fn inspect(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let size = qbool(&q, "size");
    let v = blocking(move || {
        let c = eng.get_container(&id)?;
        let rec = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
        Ok(inspect_json(&eng, &rec, size))
    })
    .await?;
    ok_json(&v)
}

pub async fn start(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    blocking(move || eng.start_container(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn timeout_q(q: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    match q.get("t").or(q.get("timeout")) {
        Some(t) => t.parse::<i64>().map(Some).map_err(|_| bad_request(format!("invalid timeout: {t}"))),
        None => Ok(None),
    }
}

pub async fn stop(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let t = timeout_q(&q)?;
    let stopped = eng.stop_container(&id, t, q.get("signal").map(|s| s.as_str())).await?;
    Ok(if stopped { StatusCode::NO_CONTENT } else { StatusCode::NOT_MODIFIED }.into_response())
}

pub async fn restart(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let t = timeout_q(&q)?;
    eng.stop_container(&id, t, q.get("signal").map(|s| s.as_str())).await?;
    let e2 = eng.clone();
    let id2 = id.clone();
    blocking(move || e2.start_container(&id2)).await?;
    let name = eng.get_container(&id).ok().and_then(|c| c.lock().ok().map(|r| r.name.clone())).unwrap_or_default();
    eng.events.emit("container", "restart", &id, &[("name", &name)]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn kill(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let sig = q.get("signal").cloned().filter(|s| !s.is_empty());
    blocking(move || eng.kill_container(&id, sig.as_deref())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn pause(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    blocking(move || eng.pause_container(&id, true)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn unpause(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    blocking(move || eng.pause_container(&id, false)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn wait(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let cond = q.get("condition").cloned().filter(|c| !c.is_empty()).unwrap_or_else(|| "not-running".into());
    if !matches!(cond.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(bad_request(format!("invalid condition: \"{cond}\"")));
    }
    let c = eng.get_container(&id)?;
    let cid = c.lock().map(|r| r.id.clone()).map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?;
    // Subscribe before answering, then send the headers at once: the docker CLI waits for them
    // before it starts the container, and reads the body when the container exits.
    let mut rx = eng.subscribe_state();
    let snapshot = |eng: &Engine, cid: &str| eng.get_container(cid).ok().and_then(|c| c.lock().ok().map(|r| (r.state.running, r.state.started_at.clone())));
    let initial = snapshot(&eng, &cid);
    let fut = async move {
        if cond == "next-exit" {
            // Done once the container is not running and has (re)started since we were called.
            let (was_running, first_start) = initial.unwrap_or((false, String::new()));
            loop {
                match snapshot(&eng, &cid) {
                    None => break,
                    Some((false, started)) if was_running || started != first_start => break,
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        } else if cond == "removed" {
            while eng.get_container(&cid).is_ok() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        } else {
            eng.wait_not_running(&cid, None).await;
        }
        let code = eng
            .get_container(&cid)
            .ok()
            .and_then(|c| c.lock().ok().map(|r| r.state.exit_code))
            .or_else(|| eng.last_exit_code(&cid))
            .unwrap_or(0);
        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{}\n", json!({"StatusCode": code, "Error": null}))))
    };
    let body = Body::from_stream(futures::stream::once(fut));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn rename(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let name = q.get("name").cloned().unwrap_or_default();
    blocking(move || eng.rename_container(&id, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn top(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let args = q.get("ps_args").cloned().unwrap_or_else(|| "-ef".into());
    let v = blocking(move || {
        let (rec, shim) = eng.shim_of(&id)?;
        let pids = shim.pids().map_err(|e| EngineError::internal(e.to_string()))?;
        let _ = rec;
        let out = std::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .map_err(|e| EngineError::internal(format!("ps: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
        let pid_col = titles.iter().position(|t| t == "PID").ok_or_else(|| EngineError::invalid("Couldn't find PID field in ps output"))?;
        let mut procs = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() < titles.len() {
                continue;
            }
            let pid: u32 = fields[pid_col].parse().unwrap_or(0);
            if pids.contains(&pid) {
                let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
                row.push(fields[titles.len() - 1..].join(" "));
                procs.push(row);
            }
        }
        Ok(json!({"Titles": titles, "Processes": procs}))
    })
    .await?;
    ok_json(&v)
}

pub async fn stats(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let stream = !(q.get("stream").is_some_and(|s| s == "0" || s == "false")) && !qbool(&q, "one-shot");
    let snap = move |eng: AppState, id: String| async move {
        blocking(move || {
            let c = eng.get_container(&id)?;
            let rec = c.lock().map_err(|_| EngineError::internal("lock"))?.clone();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let base = json!({"read": now, "preread": "0001-01-01T00:00:00Z", "id": rec.id, "name": format!("/{}", rec.name), "num_procs": 0});
            if !rec.state.running {
                return Ok(base);
            }
            let shim = match eng.shim_of(&id) {
                Ok((_, s)) => s,
                Err(_) => return Ok(base),
            };
            let s = shim.stats().map_err(|e| EngineError::internal(e.to_string()))?;
            let mut v = docker_stats(&s);
            if let Some(o) = v.as_object_mut() {
                for (k, val) in base.as_object().into_iter().flatten() {
                    o.entry(k.clone()).or_insert(val.clone());
                }
            }
            Ok(v)
        })
        .await
    };
    let one_shot = qbool(&q, "one-shot");
    if !stream {
        let mut v = snap(eng.clone(), id.clone()).await?;
        if !one_shot {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let mut v2 = snap(eng, id).await?;
            v2["precpu_stats"] = v["cpu_stats"].take();
            v2["preread"] = v["read"].take();
            v = v2;
        }
        return ok_json(&v);
    }
    let body = super::system::async_stream(move |tx| async move {
        let mut prev = serde_json::Value::Null;
        loop {
            match snap(eng.clone(), id.clone()).await {
                Ok(mut v) => {
                    v["precpu_stats"] = prev["cpu_stats"].clone();
                    v["preread"] = prev["read"].clone();
                    prev = v.clone();
                    if tx.send(Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{v}\n")))).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn resize(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let h: u16 = q.get("h").and_then(|v| v.parse().ok()).unwrap_or(0);
    let w: u16 = q.get("w").and_then(|v| v.parse().ok()).unwrap_or(0);
    blocking(move || {
        let (_, shim) = eng.shim_of(&id)?;
        shim.resize(h, w).map_err(|e| EngineError::internal(e.to_string()))
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn remove(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let force = qbool(&q, "force");
    let v = qbool(&q, "v");
    if qbool(&q, "link") {
        return Err(bad_request("links are not supported by berth"));
    }
    blocking(move || eng.remove_container(&id, force, v)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn prune(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let v = blocking(move || {
        let mut deleted = Vec::new();
        let mut freed = 0u64;
        let until = f.get("until").and_then(|v| v.first()).and_then(|s| super::system::parse_time(s));
        for c in eng.all_containers() {
            if c.state.running {
                continue;
            }
            if let Some(u) = until {
                if unix(&c.created) as f64 > u {
                    continue;
                }
            }
            if let Some(ls) = f.get("label") {
                if !ls.iter().all(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    c.config.labels.as_ref().and_then(|m| m.get(k)).is_some_and(|x| v.is_empty() || x == v)
                }) {
                    continue;
                }
            }
            let size = eng.snapshots.fs_dir(&c.snapshot).map(|p| berth_engine::snapshot::dir_size(&p)).unwrap_or(0);
            if eng.remove_container(&c.id, false, false).is_ok() {
                deleted.push(c.id.clone());
                freed += size;
            }
        }
        Ok(json!({"ContainersDeleted": if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) }, "SpaceReclaimed": freed}))
    })
    .await?;
    ok_json(&v)
}

pub async fn exec_create(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, body: axum::body::Bytes) -> ApiResult {
    let cfg: bollard::models::ExecConfig =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid JSON in request body: {e}")))?;
    let eid = blocking(move || eng.create_exec(&id, cfg)).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"Id": eid})))
}

pub async fn exec_resize(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let h: u16 = q.get("h").and_then(|v| v.parse().ok()).unwrap_or(0);
    let w: u16 = q.get("w").and_then(|v| v.parse().ok()).unwrap_or(0);
    blocking(move || {
        let ex = eng.get_exec(&id)?;
        let Some(sid) = ex.shim_id else { return Err(EngineError::conflict("exec is not running")) };
        let (_, shim) = eng.shim_of(&ex.container_id)?;
        shim.exec_resize(&sid, h, w).map_err(|e| EngineError::internal(e.to_string()))
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

pub async fn exec_inspect(State(eng): State<AppState>, UrlPath(id): UrlPath<String>) -> ApiResult {
    let ex = eng.get_exec(&id)?;
    let c = &ex.config;
    ok_json(&json!({
        "ID": ex.id,
        "Running": ex.running,
        "ExitCode": ex.exit_code,
        "ProcessConfig": {"tty": c.tty.unwrap_or(false), "entrypoint": c.cmd.as_ref().and_then(|v| v.first()).cloned().unwrap_or_default(),
                          "arguments": c.cmd.as_ref().map(|v| v[1.min(v.len())..].to_vec()).unwrap_or_default(), "privileged": c.privileged.unwrap_or(false), "user": c.user.clone().unwrap_or_default()},
        "OpenStdin": c.attach_stdin.unwrap_or(false),
        "OpenStderr": c.attach_stderr.unwrap_or(false),
        "OpenStdout": c.attach_stdout.unwrap_or(false),
        "CanRemove": false,
        "ContainerID": ex.container_id,
        "DetachKeys": "",
        "Pid": ex.pid,
    }))
}

/// Docker's stats JSON from the runtime's cgroup numbers.
fn docker_stats(s: &berth_runtime::Stats) -> serde_json::Value {
    json!({
        "read": s.read,
        "pids_stats": {"current": s.pids_current, "limit": s.pids_limit},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": s.blkio_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": s.blkio_write_bytes}]},
        "cpu_stats": {
            "cpu_usage": {"total_usage": s.cpu_usage_ns, "usage_in_kernelmode": s.cpu_system_ns, "usage_in_usermode": s.cpu_user_ns},
            "system_cpu_usage": s.system_cpu_usage_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {"usage": s.memory_usage, "max_usage": s.memory_max_usage, "limit": s.memory_limit, "stats": s.memory_stat},
        "networks": {},
    })
}
