//! `/_ping`, `/version`, `/info`, `/events`, `/system/df` and the few network/volume endpoints
//! clients probe before those features land.

use super::*;
use axum::extract::State;
use axum::http::Method;
use futures::StreamExt;
use serde_json::json;

pub async fn ping(method: Method) -> Response {
    let mut r = if method == Method::HEAD { Response::new(Body::empty()) } else { Response::new(Body::from("OK")) };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    r
}

fn kernel() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().to_string()).unwrap_or_default()
}

pub async fn version() -> ApiResult {
    let v = json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"), "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": berth_engine::image::host_arch(), "KernelVersion": kernel()}}],
        "Version": "28.2.2",
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "berth",
        "GoVersion": "n/a (rust)",
        "Os": "linux",
        "Arch": berth_engine::image::host_arch(),
        "KernelVersion": kernel(),
        "BuildTime": "",
    });
    ok_json(&v)
}

fn cgroup_version() -> &'static str {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

pub async fn info(State(eng): State<AppState>) -> ApiResult {
    let cs = eng.all_containers();
    let running = cs.iter().filter(|c| c.state.running && !c.state.paused).count();
    let paused = cs.iter().filter(|c| c.state.paused).count();
    let images = eng.list_images().map(|v| v.len()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok())))
        .unwrap_or(0)
        * 1024;
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into());
    let mut runtimes = serde_json::Map::new();
    runtimes.insert("berth".into(), json!({"path": eng.config.exe.display().to_string()}));
    for (n, p) in &eng.config.runtimes {
        runtimes.insert(n.clone(), json!({"path": p.display().to_string()}));
    }
    let v = json!({
        "ID": "berth",
        "Containers": cs.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": cs.len() - running - paused,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel(),
        "OperatingSystem": os,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem,
        "DockerRootDir": eng.config.data_root.display().to_string(),
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": "28.2.2",
        "Runtimes": runtimes,
        "DefaultRuntime": eng.config.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    });
    ok_json(&v)
}

fn event_matches(ev: &serde_json::Value, f: &HashMap<String, Vec<String>>) -> bool {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "type" => vals.iter().any(|v| ev["Type"] == *v),
            "event" | "action" => vals.iter().any(|v| {
                let a = ev["Action"].as_str().unwrap_or("");
                a == v || a.split(':').next() == Some(v.as_str())
            }),
            "container" => vals.iter().any(|v| {
                ev["Type"] == "container"
                    && (ev["Actor"]["ID"].as_str().is_some_and(|id| id.starts_with(v.as_str()))
                        || ev["Actor"]["Attributes"]["name"] == *v)
            }),
            "image" => vals.iter().any(|v| ev["Actor"]["Attributes"]["image"] == *v || ev["Actor"]["ID"] == *v),
            "label" => vals.iter().any(|v| {
                let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                match ev["Actor"]["Attributes"].get(lk) {
                    Some(x) => lv.is_empty() || x == lv,
                    None => false,
                }
            }),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Docker's time arguments: unix seconds (with fraction), RFC 3339, or a duration like `10m`.
pub fn parse_time(s: &str) -> Option<f64> {
    if let Ok(f) = s.parse::<f64>() {
        return Some(f);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9);
    }
    let now = chrono::Utc::now().timestamp() as f64;
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "ms" => 0.001,
        _ => return None,
    };
    Some(now - n * mult)
}

pub async fn events(State(eng): State<AppState>, q: Query) -> ApiResult {
    let f = filters(&q)?;
    let since = q.get("since").and_then(|s| parse_time(s));
    let until = q.get("until").and_then(|s| parse_time(s));
    let rx = eng.events.subscribe();
    let ev_time = |e: &serde_json::Value| e["timeNano"].as_i64().unwrap_or(0) as f64 / 1e9;
    let mut initial = Vec::new();
    if let Some(s) = since {
        for e in eng.events.history() {
            let t = ev_time(&e);
            if t >= s && until.is_none_or(|u| t <= u) && event_matches(&e, &f) {
                initial.push(e);
            }
        }
    }
    let now = chrono::Utc::now().timestamp() as f64;
    let live = until.is_none_or(|u| u > now);
    let head = futures::stream::iter(initial.into_iter().map(|e| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{e}\n")))));
    let body = if live {
        let f2 = f.clone();
        let tail = tokio_stream_from(rx)
            .take_while(move |e| {
                let t = ev_time(e);
                futures::future::ready(until.is_none_or(|u| t <= u))
            })
            .filter(move |e| futures::future::ready(event_matches(e, &f2)))
            .map(|e| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{e}\n"))));
        let deadline = until.map(|u| std::time::Duration::from_secs_f64((u - now).max(0.0)));
        match deadline {
            Some(d) => Body::from_stream(head.chain(tail).take_until(tokio::time::sleep(d))),
            None => Body::from_stream(head.chain(tail)),
        }
    } else {
        Body::from_stream(head)
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn tokio_stream_from(mut rx: tokio::sync::broadcast::Receiver<serde_json::Value>) -> impl futures::Stream<Item = serde_json::Value> {
    async_stream(move |tx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => {
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    })
}

/// A tiny channel-backed stream builder.
pub fn async_stream<T: Send + 'static, F, Fut>(f: F) -> impl futures::Stream<Item = T>
where
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub async fn df(State(eng): State<AppState>) -> ApiResult {
    let e2 = eng.clone();
    let v = blocking(move || {
        let imgs = e2.list_images()?;
        let tags = e2.tags_by_image()?;
        let cs = e2.all_containers();
        let mut layers_size = 0u64;
        let mut seen = std::collections::HashSet::new();
        let mut images = Vec::new();
        for img in &imgs {
            for l in &img.layers {
                if seen.insert(l.chain_id.clone()) {
                    if let Ok(Some(s)) = e2.snapshots.get(&berth_engine::image::layer_key(&l.chain_id)) {
                        layers_size += s.size;
                    }
                }
            }
            let n = cs.iter().filter(|c| c.image == img.id.as_str()).count();
            let mut s = super::images::summary(&e2, img, &tags)?;
            s["Containers"] = json!(n);
            images.push(s);
        }
        let containers: Vec<serde_json::Value> = cs
            .iter()
            .map(|c| {
                let mut s = super::containers::summary(&e2, c, true);
                s["SizeRootFs"] = s["SizeRootFs"].clone();
                s
            })
            .collect();
        Ok(json!({
            "LayersSize": layers_size,
            "Images": images,
            "Containers": containers,
            "Volumes": super::volumes::df_volumes(&e2)?,
            "BuildCache": e2.build_cache_usage(),
        }))
    })
    .await?;
    ok_json(&v)
}

pub async fn not_implemented(req: Request) -> ApiResult {
    Err(ApiError(StatusCode::NOT_IMPLEMENTED, format!("{} {} is not implemented by berth yet", req.method(), req.uri().path())))
}

pub async fn fallback(req: Request) -> ApiResult {
    Err(ApiError(StatusCode::NOT_FOUND, format!("page not found: {} {}", req.method(), req.uri().path())))
}
