//! A small Docker Engine API client over a unix socket (hyper 1, HTTP/1.1), with API version
//! negotiation and hijacked streams for attach/exec. The CLI is a plain client of the API.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// An error the daemon answered with (`{"message": ...}`), printed as Docker does.
#[derive(Debug)]
pub struct DaemonError {
    pub status: StatusCode,
    pub message: String,
}
impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}
impl std::error::Error for DaemonError {}

#[derive(Clone)]
pub struct Client {
    pub socket: PathBuf,
    pub version: String,
}

pub fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> BoxBody {
    full(Bytes::new())
}

/// A request body streamed from a blocking reader (e.g. stdin or a file).
pub fn reader_body(r: impl std::io::Read + Send + 'static) -> BoxBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
    std::thread::spawn(move || {
        let mut r = r;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Ok(Frame::data(Bytes::copy_from_slice(&buf[..n])))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    BodyExt::boxed(StreamBody::new(RxStream(rx)))
}

struct RxStream<T>(tokio::sync::mpsc::Receiver<T>);
impl<T> futures::Stream for RxStream<T> {
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self { socket: socket.to_path_buf(), version: super::api::API_VERSION.to_string() }
    }

    async fn send(&self, req: Request<BoxBody>) -> Result<Response<Incoming>> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("Cannot connect to the berth daemon at unix://{}. Is the berth daemon running?", self.socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender.send_request(req).await?)
    }

    fn build(&self, method: Method, path: &str, body: BoxBody, ctype: Option<&str>) -> Result<Request<BoxBody>> {
        let uri = format!("http://localhost/v{}{}", self.version, path);
        let mut b = Request::builder().method(method).uri(uri).header("Host", "localhost").header("User-Agent", "berth-cli");
        if let Some(ct) = ctype {
            b = b.header("Content-Type", ct);
        }
        Ok(b.body(body)?)
    }

    /// Negotiate the API version with `/_ping` (lower of ours and the daemon's).
    pub async fn negotiate(&mut self) -> Result<()> {
        let req = Request::builder().method(Method::GET).uri("http://localhost/_ping").header("Host", "localhost").body(empty())?;
        let resp = self.send(req).await?;
        if let Some(v) = resp.headers().get("Api-Version").and_then(|v| v.to_str().ok()) {
            if super::api::version_lt(v, &self.version) {
                self.version = v.to_string();
            }
        }
        Ok(())
    }

    /// A request whose non-2xx answers become [`DaemonError`].
    pub async fn request(&self, method: Method, path: &str, body: BoxBody, ctype: Option<&str>) -> Result<Response<Incoming>> {
        let resp = self.send(self.build(method, path, body, ctype)?).await?;
        if resp.status().is_client_error() || resp.status().is_server_error() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(DaemonError { status, message }.into());
        }
        Ok(resp)
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
        let (b, ct) = match body {
            Some(v) => (full(serde_json::to_vec(&v)?), Some("application/json")),
            None => (empty(), None),
        };
        let resp = self.request(method, path, b, ct).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.is_empty() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| anyhow!("invalid response from daemon: {e}"))
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
        self.json(Method::POST, path, body).await
    }

    /// POST with `Upgrade: tcp` and return the raw connection after `101`.
    pub async fn hijack(&self, path: &str, body: Option<serde_json::Value>) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
        let (b, ct) = match body {
            Some(v) => (full(serde_json::to_vec(&v)?), Some("application/json")),
            None => (empty(), None),
        };
        let mut req = self.build(Method::POST, path, b, ct)?;
        req.headers_mut().insert("Connection", "Upgrade".parse()?);
        req.headers_mut().insert("Upgrade", "tcp".parse()?);
        let resp = self.send(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            if status.is_success() {
                bail!("daemon did not upgrade the connection");
            }
            return Err(DaemonError { status, message }.into());
        }
        let up = hyper::upgrade::on(resp).await?;
        Ok(TokioIo::new(up))
    }
}

/// Read a body to the end, chunk by chunk, calling `f` for each chunk.
pub async fn for_each_chunk(resp: Response<Incoming>, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(d) = frame.data_ref() {
            f(d)?;
        }
    }
    Ok(())
}

/// Split a stream of newline-separated JSON messages (progress, events).
pub async fn for_each_json(resp: Response<Incoming>, mut f: impl FnMut(serde_json::Value) -> Result<()>) -> Result<()> {
    let mut buf = Vec::new();
    for_each_chunk(resp, |chunk| {
        buf.extend_from_slice(chunk);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let line = &line[..line.len() - 1];
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            f(serde_json::from_slice(line)?)?;
        }
        Ok(())
    })
    .await?;
    if !buf.iter().all(|b| b.is_ascii_whitespace()) {
        f(serde_json::from_slice(&buf)?)?;
    }
    Ok(())
}
