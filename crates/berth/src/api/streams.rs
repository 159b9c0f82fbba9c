//! Streams: `logs` (from the json-file log the shim writes), and hijacked `attach` / `exec start`
//! connections spliced to the shim's stream socket.

use super::*;
use axum::extract::{Path as UrlPath, State};
use berth_engine::container::ContainerRecord;
use std::io::{BufRead, Seek};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Docker's multiplexed stream frame: `[stream, 0, 0, 0, len(be32)] + payload`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[derive(serde::Deserialize)]
struct LogLine {
    log: String,
    stream: String,
    time: String,
}

fn log_files(base: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut rotated = Vec::new();
    for i in 1..100 {
        let p = std::path::PathBuf::from(format!("{}.{i}", base.display()));
        if p.exists() {
            rotated.push(p);
        } else {
            break;
        }
    }
    rotated.reverse();
    rotated.push(base.to_path_buf());
    rotated
}

#[derive(Clone, Copy)]
struct LogOpts {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    since: Option<f64>,
    until: Option<f64>,
    tail: Option<usize>,
    tty: bool,
}

fn render(l: &LogLine, o: &LogOpts) -> Option<Vec<u8>> {
    let is_err = l.stream == "stderr";
    if (is_err && !o.stderr) || (!is_err && !o.stdout) {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(&l.time).ok();
    if let Some(t) = t {
        let ts = t.timestamp() as f64 + t.timestamp_subsec_nanos() as f64 / 1e9;
        if o.since.is_some_and(|s| ts < s) || o.until.is_some_and(|u| ts > u) {
            return None;
        }
    }
    let mut payload = Vec::new();
    if o.timestamps {
        payload.extend_from_slice(l.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(l.log.as_bytes());
    Some(if o.tty { payload } else { frame(if is_err { 2 } else { 1 }, &payload) })
}

pub async fn logs(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query) -> ApiResult {
    let c = eng.get_container(&id)?;
    let rec: ContainerRecord = c.lock().map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?.clone();
    let o = LogOpts {
        stdout: qbool(&q, "stdout"),
        stderr: qbool(&q, "stderr"),
        timestamps: qbool(&q, "timestamps"),
        since: q.get("since").and_then(|s| super::system::parse_time(s)).filter(|s| *s > 0.0),
        until: q.get("until").and_then(|s| super::system::parse_time(s)).filter(|s| *s > 0.0),
        tail: q.get("tail").and_then(|t| if t == "all" { None } else { t.parse().ok() }),
        tty: rec.config.tty.unwrap_or(false),
    };
    if !o.stdout && !o.stderr {
        return Err(bad_request("Bad parameters: you must choose at least one stream"));
    }
    let follow = qbool(&q, "follow");
    let tty = o.tty;
    let path = eng.log_path(&rec.id);
    let cid = rec.id.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let eng2 = eng.clone();
    tokio::task::spawn_blocking(move || {
        let send = |b: Vec<u8>| tx.blocking_send(Ok(bytes::Bytes::from(b))).is_ok();
        // Initial part: every file, with tail applied across them.
        let mut lines: std::collections::VecDeque<LogLine> = Default::default();
        let files = log_files(&path);
        let mut pos = 0u64;
        let mut ino = 0u64;
        for (i, f) in files.iter().enumerate() {
            let Ok(file) = std::fs::File::open(f) else { continue };
            let last = i + 1 == files.len();
            let mut rd = std::io::BufReader::new(file);
            let mut buf = String::new();
            loop {
                buf.clear();
                match rd.read_line(&mut buf) {
                    Ok(0) => break,
                    Ok(_) if !buf.ends_with('\n') => break, // partial line: read it when complete
                    Ok(n) => {
                        if last {
                            pos += n as u64;
                        }
                        if let Ok(l) = serde_json::from_str::<LogLine>(&buf) {
                            lines.push_back(l);
                            if let Some(t) = o.tail {
                                while lines.len() > t {
                                    lines.pop_front();
                                }
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
            if last {
                use std::os::unix::fs::MetadataExt;
                ino = rd.get_ref().metadata().map(|m| m.ino()).unwrap_or(0);
            }
        }
        if o.tail == Some(0) {
            lines.clear();
        }
        for l in lines {
            if let Some(b) = render(&l, &o) {
                if !send(b) {
                    return;
                }
            }
        }
        if !follow {
            return;
        }
        let rx_state = eng2.subscribe_state();
        let mut buf = String::new();
        loop {
            let running = eng2.get_container(&cid).ok().and_then(|c| c.lock().ok().map(|r| r.state.running)).unwrap_or(false);
            // read whatever is new
            let mut progressed = false;
            if let Ok(mut f) = std::fs::File::open(&path) {
                use std::os::unix::fs::MetadataExt;
                let md = f.metadata().ok();
                let cur_ino = md.as_ref().map(|m| m.ino()).unwrap_or(0);
                let len = md.map(|m| m.len()).unwrap_or(0);
                if cur_ino != ino || len < pos {
                    ino = cur_ino;
                    pos = 0;
                }
                if len > pos && f.seek(std::io::SeekFrom::Start(pos)).is_ok() {
                    let mut rd = std::io::BufReader::new(f);
                    loop {
                        buf.clear();
                        match rd.read_line(&mut buf) {
                            Ok(0) => break,
                            Ok(_) if !buf.ends_with('\n') => break,
                            Ok(n) => {
                                pos += n as u64;
                                progressed = true;
                                if let Ok(l) = serde_json::from_str::<LogLine>(&buf) {
                                    if let Some(b) = render(&l, &o) {
                                        if !send(b) {
                                            return;
                                        }
                                    }
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            if !running && !progressed {
                return;
            }
            if tx.is_closed() {
                return;
            }
            let _ = rx_state.has_changed();
            std::thread::sleep(std::time::Duration::from_millis(if progressed { 5 } else { 100 }));
        }
    });
    let body = Body::from_stream(ReceiverStream(rx));
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response())
}

/// An mpsc receiver as a `Stream`.
pub struct ReceiverStream<T>(pub tokio::sync::mpsc::Receiver<T>);
impl<T> futures::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn wants_upgrade(req: &Request) -> bool {
    req.headers().get(header::UPGRADE).is_some()
        || req
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
}

/// Answer `101 UPGRADED` and hand the raw connection to `f`; without an upgrade request, stream
/// the output as a plain 200 body instead.
fn hijack<F, Fut>(mut req: Request, content_type: &'static str, f: F) -> Response
where
    F: FnOnce(Box<dyn Duplex>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if wants_upgrade(&req) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => f(Box::new(TokioIo::new(up))).await,
                Err(e) => tracing::debug!("upgrade failed: {e}"),
            }
        });
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return r;
    }
    // No upgrade: output only, as a streamed body.
    let (a, b) = tokio::io::duplex(64 << 10);
    tokio::spawn(f(Box::new(a)));
    let (rd, _wr) = tokio::io::split(b);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(rd));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Duplex for T {}

/// Copy client→shim (stdin) and shim→client (output) until the output ends; then wait for
/// `before_close` (an exec's exit being recorded) before closing the client's side, because
/// clients read the exit code as soon as the stream ends.
async fn splice(
    client: Box<dyn Duplex>,
    shim: std::os::unix::net::UnixStream,
    stdin: bool,
    before_close: Option<tokio::task::JoinHandle<()>>,
) {
    if shim.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(shim) = tokio::net::UnixStream::from_std(shim) else { return };
    let (mut sr, mut sw) = shim.into_split();
    let (mut cr, mut cw) = tokio::io::split(client);
    let input = tokio::spawn(async move {
        if !stdin {
            // Still drain the client's side so its close is noticed.
            let mut sink = [0u8; 4096];
            while let Ok(n) = cr.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
            return;
        }
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let _ = tokio::io::copy(&mut sr, &mut cw).await;
    let _ = cw.flush().await;
    if let Some(h) = before_close {
        let _ = h.await;
    }
    let _ = cw.shutdown().await;
    input.abort();
}

/// Where a streaming attach gets its output from.
enum AttachTarget {
    /// The running container's shim, attached already.
    Live(std::os::unix::net::UnixStream),
    /// The next start (the container is stopped, or its process has just exited).
    Next(berth_engine::container::PendingAttach),
    /// Nothing: the container is gone.
    Gone,
}

/// Attach to the container's shim now if its process runs, else register for the next start
/// (as dockerd does for a stopped container). Decided before the client gets its `101`, so
/// what the client does next (inspect, start) sees a consistent state. docker-compose's `run`
/// without the CLI (dockerpty) attaches only after its start, then starts the container again
/// if it has exited by then: on dockerd a short command's output comes from that second run.
/// Two windows used to lose it on berth: an attach between the process exit and berth
/// recording it got a stream that ended at once (now the shim refuses it and the attach waits
/// for the exit to be recorded, then for the next start), and an attach between the output and
/// the exit got nothing but the end (now an output attach within a second of a start that has
/// already produced output waits up to [`SETTLE_MS`] for the process to exit first).
async fn attach_target(eng: &AppState, cid: &str, stdin: bool, stdout: bool, stderr: bool) -> AttachTarget {
    let mut rx = eng.subscribe_state();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut settle = stdout || stderr;
    loop {
        let (running, started_at) = match eng.get_container(cid).ok().and_then(|c| c.lock().ok().map(|r| (r.state.running, r.state.started_at.clone()))) {
            None => return AttachTarget::Gone,
            Some(r) => r,
        };
        if running && std::mem::take(&mut settle) && wrote_since_start(&eng.log_path(cid), &started_at) {
            // A process that wrote its output right after its start is likely a short command
            // on its way out: an attach now would see nothing but the end of the stream. Give
            // its exit a moment to show, then treat the attach as one to a stopped container.
            let until = tokio::time::Instant::now() + std::time::Duration::from_millis(SETTLE_MS);
            loop {
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep_until(until) => break,
                }
                if eng.get_container(cid).ok().and_then(|c| c.lock().ok().map(|r| r.state.running)) != Some(true) {
                    break;
                }
            }
            continue;
        }
        if !running {
            return AttachTarget::Next(eng.attach_register(cid, stdin, stdout, stderr));
        }
        let sd = eng.state_dir(cid);
        let live = tokio::task::spawn_blocking(move || match berth_runtime::Shim::connect(&sd) {
            Ok(Some(s)) => s.attach(stdin, stdout, stderr).ok(),
            _ => None,
        })
        .await
        .ok()
        .flatten();
        if let Some(s) = live {
            return AttachTarget::Live(s);
        }
        // The shim refused (its process has exited) or is gone: its exit is being recorded.
        if std::time::Instant::now() > deadline {
            return AttachTarget::Gone;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// How long an attach waits for a freshly started container that has already written its
/// output to exit (see [`attach_target`]).
const SETTLE_MS: u64 = 300;

/// The container started less than a second ago and its log has been written since then.
fn wrote_since_start(log: &std::path::Path, started_at: &str) -> bool {
    let Ok(started) = chrono::DateTime::parse_from_rfc3339(started_at) else { return false };
    let started = std::time::SystemTime::from(started);
    let now = std::time::SystemTime::now();
    if now.duration_since(started).map_or(true, |age| age > std::time::Duration::from_secs(1)) {
        return false;
    }
    // the start is recorded just after the process was let go: allow for output before that
    let since = started - std::time::Duration::from_millis(200);
    std::fs::metadata(log).and_then(|m| m.modified()).is_ok_and(|m| m >= since)
}

pub async fn attach(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, q: Query, req: Request) -> ApiResult {
    let c = eng.get_container(&id)?;
    let rec: ContainerRecord = c.lock().map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "lock".into()))?.clone();
    let stdin = qbool(&q, "stdin");
    let stdout = qbool(&q, "stdout");
    let stderr = qbool(&q, "stderr");
    let stream = qbool(&q, "stream");
    let logs = qbool(&q, "logs");
    let tty = rec.config.tty.unwrap_or(false);
    let ct = if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let cid = rec.id.clone();
    eng.container_event(&rec, "attach", &[]);
    // `logs=1`: what the container already wrote, then the live stream.
    let past = if logs {
        let log_path = eng.log_path(&cid);
        let o = LogOpts { stdout, stderr, timestamps: false, since: None, until: None, tail: None, tty };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for f in log_files(&log_path) {
                let Ok(text) = std::fs::read_to_string(&f) else { continue };
                for line in text.lines() {
                    if let Ok(l) = serde_json::from_str::<LogLine>(line) {
                        if let Some(b) = render(&l, &o) {
                            out.extend_from_slice(&b);
                        }
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_default()
    } else {
        Vec::new()
    };
    // Before a start (docker run, start -a), the start connects the attach to the new shim
    // before running the process and hands the stream over (see Engine::attach_register).
    let target = if stream { attach_target(&eng, &cid, stdin, stdout, stderr).await } else { AttachTarget::Gone };
    // the run an attach waits for is one that starts after the start time seen now
    let waited_from = rec.state.started_at.clone();
    Ok(hijack(req, ct, move |mut client| async move {
        if !past.is_empty() && client.write_all(&past).await.is_err() {
            return;
        }
        let _ = client.flush().await;
        if !stream {
            let _ = client.shutdown().await;
            return;
        }
        let mut target = target;
        let shim = loop {
            let mut p = match target {
                AttachTarget::Gone => break None,
                AttachTarget::Live(s) => break Some(s),
                AttachTarget::Next(p) => p,
            };
            let mut rx = eng.subscribe_state();
            let started = |eng: &AppState| eng.get_container(&cid).ok().and_then(|c| c.lock().ok().map(|r| (r.state.running, r.state.started_at.clone())));
            target = loop {
                tokio::select! {
                    s = p.stream() => break s.map_or(AttachTarget::Gone, AttachTarget::Live),
                    r = rx.changed() => if r.is_err() { break AttachTarget::Gone },
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                }
                match started(&eng) {
                    None => break AttachTarget::Gone,
                    // started without taking this attach (it came while the start was past
                    // that point): attach to the running container directly
                    Some((true, _)) if p.withdraw() => break attach_target(&eng, &cid, stdin, stdout, stderr).await,
                    // a run started and ended without taking it: that run is over, so is
                    // this attach (waiting for yet another start would hang `docker run`)
                    Some((false, s)) if s != waited_from && p.withdraw() => break AttachTarget::Gone,
                    _ => {}
                }
            };
        };
        if let Some(s) = shim {
            splice(client, s, stdin, None).await;
        }
    }))
}

pub async fn exec_start(State(eng): State<AppState>, UrlPath(id): UrlPath<String>, req: Request) -> ApiResult {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| bad_request(e.to_string()))?;
    let cfg: serde_json::Value = if bytes.is_empty() { serde_json::json!({}) } else { serde_json::from_slice(&bytes).map_err(|e| bad_request(e.to_string()))? };
    let detach = cfg["Detach"].as_bool().unwrap_or(false);
    let tty = cfg["Tty"].as_bool();
    let waiter = {
        let eng = eng.clone();
        let id = id.clone();
        move || {
            tokio::task::spawn_blocking(move || {
                let _ = eng.wait_exec(&id);
            })
        }
    };
    if detach {
        let e2 = eng.clone();
        let id2 = id.clone();
        let (_, stream) = blocking(move || e2.start_exec(&id2, tty)).await?;
        // Drain output so the process never blocks on a full pipe.
        tokio::spawn(async move {
            if stream.set_nonblocking(true).is_ok() {
                if let Ok(mut s) = tokio::net::UnixStream::from_std(stream) {
                    let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
                }
            }
        });
        waiter();
        return Ok(StatusCode::OK.into_response());
    }
    // What dockerd checks before it upgrades the connection.
    let ex = eng.get_exec(&id)?;
    if ex.running || ex.exit_code.is_some() {
        return Err(ApiError(StatusCode::CONFLICT, format!("Error: Exec command {id} has already run")));
    }
    let running = eng.get_container(&ex.container_id)?.lock().map(|r| r.state.running).unwrap_or(false);
    if !running {
        return Err(ApiError(StatusCode::CONFLICT, format!("Container {} is not running", ex.container_id)));
    }
    let is_tty = tty.unwrap_or(ex.config.tty.unwrap_or(false));
    let ct = if is_tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let stdin = ex.config.attach_stdin.unwrap_or(false);
    let req = Request::from_parts(parts, Body::empty());
    Ok(hijack(req, ct, move |mut client| async move {
        // Start the process only once the connection is handed over, as dockerd does: clients
        // that read the 101 response through a buffered reader and then take the raw socket
        // (docker-py, docker-compose's exec) would lose output that arrived with it.
        let e2 = eng.clone();
        let id2 = id.clone();
        match tokio::task::spawn_blocking(move || e2.start_exec(&id2, tty)).await {
            Ok(Ok((_, stream))) => splice(client, stream, stdin, Some(waiter())).await,
            Ok(Err(e)) => {
                // like dockerd: the stream carries the error; a command that cannot run
                // leaves exit code 126 in the exec's inspect
                let line = format!("{}\r\n", e.message());
                let bytes = if is_tty { line.into_bytes() } else { frame(1, line.as_bytes()) };
                let _ = client.write_all(&bytes).await;
                let _ = client.flush().await;
                let _ = client.shutdown().await;
            }
            Err(_) => {}
        }
    }))
}
