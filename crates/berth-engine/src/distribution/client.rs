//! HTTP side of the registry client: endpoints (HTTPS or plain HTTP), TLS trust from
//! `certs.d`, authentication (Bearer token challenges with a per-scope cache, Basic,
//! anonymous) and bounded retries with backoff.
//!
//! A [`Session`] is made per operation and repository; it probes `GET /v2/` once to pick the
//! scheme and learn the auth challenge, then [`Session::send`] runs requests, adding the right
//! `Authorization` header and retrying what is worth retrying.

use super::{DistributionError, DistributionErrorKind, Result};
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Registry settings from the daemon configuration.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `insecure-registries`: `host[:port]` or CIDR; plain HTTP and unverified TLS allowed.
    pub insecure: Vec<String>,
    /// `registry-mirrors` for Docker Hub (`https://mirror.example`), tried before docker.io.
    pub mirrors: Vec<String>,
    /// Directories holding `<host[:port]>/ca.crt` (+ `client.cert`/`client.key`).
    pub certs_dirs: Vec<PathBuf>,
    /// A read that sees no byte for this long fails (then is retried).
    pub read_timeout: Duration,
    /// Attempts per request (first try included).
    pub max_attempts: u32,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Layers uploaded at once per push.
    pub max_concurrent_uploads: usize,
    /// First backoff delay; doubles per attempt, capped at 10 s (and `Retry-After` capped at 30 s).
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dirs: vec![PathBuf::from("/etc/berth/certs.d"), PathBuf::from("/etc/docker/certs.d")],
            read_timeout: Duration::from_secs(30),
            max_attempts: 5,
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            backoff: Duration::from_millis(250),
        }
    }
}

impl RegistryOptions {
    /// Defaults, overlaid with `insecure-registries`, `registry-mirrors`,
    /// `max-concurrent-downloads`/`-uploads` from `/etc/berth/daemon.json` and the environment
    /// (`BERTH_INSECURE_REGISTRIES` comma list, `BERTH_CERTS_D`, `BERTH_REGISTRY_READ_TIMEOUT`
    /// seconds, `BERTH_REGISTRY_MAX_ATTEMPTS`, `BERTH_REGISTRY_BACKOFF_MS`).
    pub fn from_system() -> Self {
        let v = std::fs::read_to_string("/etc/berth/daemon.json")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .unwrap_or(serde_json::Value::Null);
        Self::from_daemon_json(&v)
    }

    /// Defaults, overlaid with a daemon configuration (`--config-file`) and the environment
    /// variables listed at [`RegistryOptions::from_system`]. For the daemon:
    /// `configure(RegistryOptions::from_daemon_json(&daemon_json))` before serving.
    pub fn from_daemon_json(v: &serde_json::Value) -> Self {
        let mut o = Self::default();
        o.apply_daemon_json(v);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("BERTH_INSECURE_REGISTRIES") {
            o.insecure.extend(v.split(',').map(|s| s.trim().to_string()));
        }
        if let Some(v) = env("BERTH_CERTS_D") {
            o.certs_dirs.insert(0, PathBuf::from(v));
        }
        if let Some(v) = env("BERTH_REGISTRY_READ_TIMEOUT").and_then(|v| v.parse::<f64>().ok()) {
            o.read_timeout = Duration::from_secs_f64(v.max(0.1));
        }
        if let Some(v) = env("BERTH_REGISTRY_MAX_ATTEMPTS").and_then(|v| v.parse::<u32>().ok()) {
            o.max_attempts = v.clamp(1, 20);
        }
        if let Some(v) = env("BERTH_REGISTRY_BACKOFF_MS").and_then(|v| v.parse::<u64>().ok()) {
            o.backoff = Duration::from_millis(v);
        }
        o
    }

    /// Read the dockerd `daemon.json` keys this module understands.
    pub fn apply_daemon_json(&mut self, v: &serde_json::Value) {
        let list = |k: &str| -> Vec<String> {
            v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        self.insecure.extend(list("insecure-registries"));
        self.mirrors.extend(list("registry-mirrors"));
        if let Some(n) = v["max-concurrent-downloads"].as_u64() {
            self.max_concurrent_downloads = (n as usize).clamp(1, 32);
        }
        if let Some(n) = v["max-concurrent-uploads"].as_u64() {
            self.max_concurrent_uploads = (n as usize).clamp(1, 32);
        }
    }
}

static OPTIONS: OnceLock<RegistryOptions> = OnceLock::new();

/// Set the options once at daemon start (otherwise [`RegistryOptions::from_system`] is used).
/// Returns false when they were already set.
pub fn configure(opts: RegistryOptions) -> bool {
    OPTIONS.set(opts).is_ok()
}

pub fn options() -> &'static RegistryOptions {
    OPTIONS.get_or_init(RegistryOptions::from_system)
}

/// Credentials as clients send them in `X-Registry-Auth` (and `POST /auth`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub serveraddress: String,
    #[serde(default)]
    pub identitytoken: String,
    #[serde(default)]
    pub registrytoken: String,
}

impl Credentials {
    /// Decode an `X-Registry-Auth` header: base64url (or standard base64) JSON. Empty or
    /// unreadable headers mean anonymous, as in Docker.
    pub fn from_header(h: &str) -> Option<Self> {
        let h = h.trim();
        if h.is_empty() {
            return None;
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let bytes = engines.iter().find_map(|e| e.decode(h).ok())?;
        let c: Credentials = serde_json::from_slice(&bytes).ok()?;
        (!c.is_empty()).then_some(c)
    }

    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.password.is_empty() && self.identitytoken.is_empty() && self.registrytoken.is_empty()
    }

    /// Encode for an `X-Registry-Auth` header.
    pub fn to_header(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }

    fn basic(&self) -> Option<String> {
        if self.username.is_empty() && self.password.is_empty() {
            return None;
        }
        let raw = format!("{}:{}", self.username, self.password);
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
    }
}

/// The host the API is served on for a reference's domain (`docker.io` → `registry-1.docker.io`).
pub fn api_host(domain: &str) -> &str {
    if domain == crate::reference::DEFAULT_DOMAIN || domain == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        domain
    }
}

/// The key `docker login` stores credentials under in `config.json`.
pub fn auth_key(domain: &str) -> String {
    if domain == crate::reference::DEFAULT_DOMAIN || domain == "index.docker.io" || domain == "registry-1.docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        domain.to_string()
    }
}

fn split_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// Loopback registries use plain HTTP when HTTPS does not answer, as in Docker.
pub fn is_loopback(host: &str) -> bool {
    let h = split_host(host);
    h == "localhost" || h.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

fn in_cidr(ip: std::net::IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<std::net::IpAddr>(), bits.parse::<u32>()) else { return false };
    match (ip, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            (u32::from(a) & mask) == (u32::from(b) & mask)
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            (u128::from(a) & mask) == (u128::from(b) & mask)
        }
        _ => false,
    }
}

/// Listed in `insecure-registries` (by `host[:port]` or CIDR).
pub fn is_listed_insecure(opts: &RegistryOptions, host: &str) -> bool {
    let ip = split_host(host).parse::<std::net::IpAddr>().ok();
    opts.insecure.iter().any(|e| {
        let e = e.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
        e == host || e == split_host(host) && !host.contains(':') || ip.is_some_and(|ip| in_cidr(ip, e))
    })
}

/// HTTP clients per registry host: one verifying TLS (system roots + `certs.d`), and for
/// insecure registries one that does not verify.
fn http_client(host: &str, verify: bool) -> Result<reqwest::Client> {
    type ClientKey = (String, bool, String);
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();
    let map = CLIENTS.get_or_init(Default::default);
    let opts = options();
    // Trust files can be added while the daemon runs: they are part of the cache key.
    let mut certs_sig = String::new();
    for dir in &opts.certs_dirs {
        if let Ok(rd) = std::fs::read_dir(dir.join(host)) {
            for e in rd.flatten() {
                let m = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                certs_sig.push_str(&format!("{}:{:?};", e.path().display(), m));
            }
        }
    }
    let key = (host.to_string(), verify, certs_sig);
    if let Some(c) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(opts.read_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(10));
    if !verify {
        b = b.danger_accept_invalid_certs(true);
    }
    for dir in &opts.certs_dirs {
        let d = dir.join(host);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut cert = None;
        let mut key = None;
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".crt") {
                let pem = std::fs::read(&p)?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| DistributionError::internal(format!("{}: {e}", p.display())))?;
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            } else if name.ends_with(".cert") {
                cert = Some(std::fs::read(&p)?);
            } else if name.ends_with(".key") {
                key = Some(std::fs::read(&p)?);
            }
        }
        if let (Some(mut c), Some(k)) = (cert, key) {
            c.extend_from_slice(b"\n");
            c.extend_from_slice(&k);
            let id = reqwest::Identity::from_pem(&c).map_err(|e| DistributionError::internal(format!("{}: client certificate: {e}", d.display())))?;
            b = b.identity(id);
        }
    }
    let c = b.build().map_err(|e| DistributionError::internal(format!("http client: {e}")))?;
    if let Ok(mut m) = map.lock() {
        if m.len() > 64 {
            m.clear();
        }
        m.insert(key, c.clone());
    }
    Ok(c)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(h: &str) -> Challenge {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, tail) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(i) => (q[..i].to_string(), &q[i + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match v.find(',') {
                Some(i) => (v[..i].trim().to_string(), &v[i..]),
                None => (v.trim().to_string(), ""),
            }
        };
        params.insert(k, val);
        s = tail.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => match params.remove("realm") {
            Some(realm) => Challenge::Bearer { realm, service: params.remove("service") },
            None => Challenge::None,
        },
        _ => Challenge::None,
    }
}

type TokenKey = (String, String, String);

fn token_cache() -> &'static Mutex<HashMap<TokenKey, (String, Instant)>> {
    static T: OnceLock<Mutex<HashMap<TokenKey, (String, Instant)>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// A registry connection for one operation on one repository.
pub struct Session {
    /// `127.0.0.1:5000`, `docker.io`.
    pub domain: String,
    /// `library/busybox`.
    pub repo: String,
    /// `https://host` or `http://host`.
    pub base: String,
    http: reqwest::Client,
    creds: Option<Credentials>,
    challenge: Mutex<Challenge>,
    /// Scope string requested in tokens (`repository:x:pull,push`).
    scope: Mutex<Vec<String>>,
    opts: &'static RegistryOptions,
}

/// What a request body is built from on each attempt.
pub enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset` (re-opened per attempt), reporting progress
    /// under an id.
    File { path: PathBuf, offset: u64, len: u64, sink: Option<super::ProgressSink>, id: Option<String> },
}

impl Session {
    /// Probe the registry (`GET /v2/`), picking HTTPS, or HTTP where allowed.
    pub async fn open(domain: &str, repo: &str, creds: Option<Credentials>, actions: &str) -> Result<Self> {
        let host = api_host(domain).to_string();
        Self::open_at(domain, &host, None, repo, creds, actions).await
    }

    /// A session on a Docker Hub mirror (`registry-mirrors`: `https://mirror.example`), read-only.
    pub async fn open_mirror(mirror: &str, repo: &str) -> Result<Self> {
        let url = reqwest::Url::parse(mirror).map_err(|e| DistributionError::new(DistributionErrorKind::InvalidInput, format!("invalid mirror {mirror:?}: {e}")))?;
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let scheme = url.scheme().to_string();
        Self::open_at(crate::reference::DEFAULT_DOMAIN, &host, Some(scheme), repo, None, "pull").await
    }

    async fn open_at(domain: &str, host: &str, scheme: Option<String>, repo: &str, creds: Option<Credentials>, actions: &str) -> Result<Self> {
        let opts = options();
        let host = host.to_string();
        let listed = is_listed_insecure(opts, &host);
        let plain_ok = listed || is_loopback(&host);
        let mut last_err = None;
        let candidates: Vec<(String, bool)> = match scheme.as_deref() {
            Some("http") => vec![(format!("http://{host}"), true)],
            _ => {
                let mut v = vec![(format!("https://{host}"), true)];
                if listed {
                    v.push((format!("https://{host}"), false));
                }
                if plain_ok && scheme.is_none() {
                    v.push((format!("http://{host}"), true));
                }
                v
            }
        };
        for (base, verify) in candidates {
            let http = http_client(&host, verify)?;
            let url = format!("{base}/v2/");
            let mut attempt = 0;
            loop {
                attempt += 1;
                match http.get(&url).send().await {
                    Ok(resp) if resp.status() == StatusCode::BAD_REQUEST && base.starts_with("http://") => {
                        // A TLS-only registry answering plain HTTP: report why HTTPS failed.
                        let body = read_capped(resp, 4096).await.unwrap_or_default();
                        if String::from_utf8_lossy(&body).contains("HTTPS") {
                            break;
                        }
                        last_err = Some(format!("Get \"{url}\": unexpected HTTP status: 400 Bad Request"));
                        break;
                    }
                    Ok(resp) => {
                        let challenge = resp
                            .headers()
                            .get(reqwest::header::WWW_AUTHENTICATE)
                            .and_then(|v| v.to_str().ok())
                            .map(parse_challenge)
                            .unwrap_or(Challenge::None);
                        if resp.status().is_server_error() || resp.status() == StatusCode::TOO_MANY_REQUESTS {
                            if attempt < opts.max_attempts {
                                let delay = retry_delay(opts, attempt, resp.headers());
                                tokio::time::sleep(delay).await;
                                continue;
                            }
                            return Err(DistributionError::unavailable(format!(
                                "Get \"{url}\": received unexpected HTTP status: {}",
                                resp.status()
                            )));
                        }
                        tracing::debug!(%url, ?challenge, "registry endpoint");
                        return Ok(Self {
                            domain: domain.to_string(),
                            repo: repo.to_string(),
                            base,
                            http,
                            creds,
                            challenge: Mutex::new(challenge),
                            scope: Mutex::new(if repo.is_empty() { vec![] } else { vec![format!("repository:{repo}:{actions}")] }),
                            opts,
                        });
                    }
                    Err(e) => {
                        let tls_or_proto = e.is_connect() && format!("{e:?}").to_ascii_lowercase().contains("tls")
                            || e.is_request() && !e.is_timeout();
                        let retryable = (e.is_connect() || e.is_timeout()) && !tls_or_proto;
                        tracing::debug!(%url, "registry probe failed: {e:?}");
                        last_err = Some(format!("Get \"{url}\": {}", error_chain(&e)));
                        if retryable && attempt < opts.max_attempts && !plain_ok {
                            tokio::time::sleep(retry_delay(opts, attempt, &Default::default())).await;
                            continue;
                        }
                        break;
                    }
                }
            }
        }
        Err(DistributionError::unavailable(last_err.unwrap_or_else(|| format!("registry {host}: unreachable"))))
    }

    /// Also ask for `pull` on another repository (cross-repository mounts).
    pub fn add_scope(&self, scope: String) {
        if let Ok(mut s) = self.scope.lock() {
            if !s.contains(&scope) {
                s.push(scope);
            }
        }
    }

    pub fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.repo, tail)
    }

    /// Tokens are cached per credentials (a digest of them, never the secret itself).
    fn user(&self) -> String {
        match &self.creds {
            Some(c) => {
                let d = crate::digest::Digest::of(format!("{}\0{}\0{}", c.username, c.password, c.identitytoken).as_bytes());
                format!("{}:{}", c.username, &d.hex()[..16])
            }
            None => String::new(),
        }
    }

    /// The `Authorization` header for the next request, fetching a token when needed.
    async fn authorization(&self, force_new: bool) -> Result<Option<String>> {
        let ch = self.challenge.lock().map(|c| c.clone()).unwrap_or(Challenge::None);
        match ch {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.creds.as_ref().and_then(|c| c.basic())),
            Challenge::Bearer { realm, service } => {
                if let Some(c) = &self.creds {
                    if !c.registrytoken.is_empty() {
                        return Ok(Some(format!("Bearer {}", c.registrytoken)));
                    }
                }
                let scopes = self.scope.lock().map(|s| s.clone()).unwrap_or_default();
                let key = (realm.clone(), self.user(), scopes.join(" "));
                if !force_new {
                    if let Some((tok, exp)) = token_cache().lock().ok().and_then(|m| m.get(&key).cloned()) {
                        if exp > Instant::now() {
                            return Ok(Some(format!("Bearer {tok}")));
                        }
                    }
                }
                let (tok, ttl) = self.fetch_token(&realm, service.as_deref(), &scopes).await?;
                if let Ok(mut m) = token_cache().lock() {
                    if m.len() > 256 {
                        m.clear();
                    }
                    m.insert(key, (tok.clone(), Instant::now() + ttl));
                }
                Ok(Some(format!("Bearer {tok}")))
            }
        }
    }

    async fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<(String, Duration)> {
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            q.push(("service", s));
        }
        for s in scopes {
            q.push(("scope", s));
        }
        let realm_url = reqwest::Url::parse(realm).map_err(|e| DistributionError::invalid(format!("invalid token realm {realm:?}: {e}")))?;
        let realm_host = realm_url.host_str().unwrap_or("").to_string();
        let http = http_client(&format!("{}{}", realm_host, realm_url.port().map(|p| format!(":{p}")).unwrap_or_default()), true)?;
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let identity = self.creds.as_ref().map(|c| c.identitytoken.clone()).filter(|t| !t.is_empty());
            let req = match identity {
                // OAuth2 refresh-token grant (what `docker login` stores as `identitytoken`)
                Some(tok) => {
                    let mut form = reqwest::Url::parse("http://form/").map_err(|e| DistributionError::internal(e.to_string()))?;
                    {
                        let mut qp = form.query_pairs_mut();
                        qp.append_pair("grant_type", "refresh_token").append_pair("refresh_token", &tok).append_pair("client_id", "berth");
                        if let Some(s) = service {
                            qp.append_pair("service", s);
                        }
                        if !scopes.is_empty() {
                            qp.append_pair("scope", &scopes.join(" "));
                        }
                    }
                    http.post(realm_url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(form.query().unwrap_or("").to_string())
                }
                None => {
                    let mut req = http.get(realm_url.clone()).query(&q);
                    if let Some(b) = self.creds.as_ref().and_then(|c| c.basic()) {
                        req = req.header(reqwest::header::AUTHORIZATION, b);
                    }
                    req
                }
            };
            match req.send().await {
                Ok(r) if (r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS) && attempt < self.opts.max_attempts => {
                    tokio::time::sleep(retry_delay(self.opts, attempt, r.headers())).await;
                }
                Ok(r) => break r,
                Err(e) if attempt < self.opts.max_attempts && (e.is_connect() || e.is_timeout()) => {
                    tokio::time::sleep(retry_delay(self.opts, attempt, &Default::default())).await;
                }
                Err(e) => return Err(DistributionError::unavailable(format!("Get \"{realm}\": {}", error_chain(&e)))),
            }
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
            let detail = registry_error_text(&body).unwrap_or_else(|| "unauthorized: incorrect username or password".into());
            return Err(DistributionError::new(DistributionErrorKind::Unauthorized, format!("Get \"{realm}\": {detail}")));
        }
        if !status.is_success() {
            return Err(DistributionError::unavailable(format!("Get \"{realm}\": token server answered {status}")));
        }
        let body = read_capped(resp, 1 << 20).await?;
        #[derive(serde::Deserialize)]
        struct Tok {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: Tok = serde_json::from_slice(&body).map_err(|e| DistributionError::invalid(format!("token server {realm}: invalid answer: {e}")))?;
        let tok = if t.token.is_empty() { t.access_token } else { t.token };
        if tok.is_empty() {
            return Err(DistributionError::invalid(format!("token server {realm}: no token in answer")));
        }
        // Refresh a little before expiry; at least 60 s validity is assumed per the spec.
        let ttl = Duration::from_secs(t.expires_in.unwrap_or(60).clamp(10, 24 * 3600)).saturating_sub(Duration::from_secs(5));
        Ok((tok, ttl))
    }

    /// Send a request with auth (refreshing a token on 401) but without retrying failures:
    /// for requests whose retry is not a plain repeat (a resumable upload `PATCH`).
    pub async fn send_once(&self, method: Method, url: &str, headers: &[(&str, String)], body: &Body) -> Result<reqwest::Response> {
        let mut force_new = false;
        for _ in 0..2 {
            let mut req = self.http.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(a) = self.authorization(force_new).await? {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            req = match body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b.clone()),
                Body::File { path, offset, len, sink, id } => {
                    use tokio::io::AsyncSeekExt;
                    let mut f = tokio::fs::File::open(path).await?;
                    f.seek(std::io::SeekFrom::Start(*offset)).await?;
                    let stream = file_stream(f, *offset, *len, sink.clone(), id.clone());
                    req.header(reqwest::header::CONTENT_LENGTH, len.to_string()).body(reqwest::Body::wrap_stream(stream))
                }
            };
            let resp = req.send().await.map_err(|e| DistributionError::unavailable(format!("{method} \"{url}\": {}", error_chain(&e))))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !force_new {
                if let Some(h) = resp.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) {
                    let ch = parse_challenge(h);
                    if let Ok(mut c) = self.challenge.lock() {
                        *c = ch;
                    }
                }
                force_new = true;
                continue;
            }
            return Ok(resp);
        }
        Err(DistributionError::new(DistributionErrorKind::Unauthorized, format!("{method} \"{url}\": unauthorized: authentication required")))
    }

    /// Send a request with auth and retries (429/5xx/connection errors/timeouts, a bounded
    /// number of times). Any other answer is returned for the caller to judge.
    pub async fn send(&self, method: Method, url: &str, headers: &[(&str, String)], body: &Body) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        let mut refreshed = false;
        let mut force_new = false;
        loop {
            attempt += 1;
            let mut req = self.http.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(a) = self.authorization(force_new).await? {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            force_new = false;
            req = match body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b.clone()),
                Body::File { path, offset, len, sink, id } => {
                    use tokio::io::AsyncSeekExt;
                    let mut f = tokio::fs::File::open(path).await?;
                    f.seek(std::io::SeekFrom::Start(*offset)).await?;
                    let stream = file_stream(f, *offset, *len, sink.clone(), id.clone());
                    req.header(reqwest::header::CONTENT_LENGTH, len.to_string()).body(reqwest::Body::wrap_stream(stream))
                }
            };
            match req.send().await {
                Ok(resp) => {
                    let st = resp.status();
                    if st == StatusCode::UNAUTHORIZED && !refreshed {
                        refreshed = true;
                        // A new challenge (first contact, or a different scheme): adopt it;
                        // an expired token: fetch a new one.
                        if let Some(h) = resp.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) {
                            let ch = parse_challenge(h);
                            if let Ok(mut c) = self.challenge.lock() {
                                *c = ch;
                            }
                        }
                        force_new = true;
                        attempt -= 1;
                        continue;
                    }
                    if (st.is_server_error() && st != StatusCode::NOT_IMPLEMENTED || st == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.opts.max_attempts
                    {
                        let delay = retry_delay(self.opts, attempt, resp.headers());
                        tracing::info!(%url, status = %st, ?delay, attempt, "registry: retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    let retryable = e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
                    if retryable && attempt < self.opts.max_attempts {
                        let delay = retry_delay(self.opts, attempt, &Default::default());
                        tracing::info!(%url, ?delay, attempt, "registry: retrying after {}", error_chain(&e));
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(DistributionError::unavailable(format!(
                        "{method} \"{url}\": {} (after {attempt} attempts)",
                        error_chain(&e)
                    )));
                }
            }
        }
    }

    /// GET a small document (manifest, config), capped at `max` bytes.
    pub async fn get_small(&self, url: &str, accept: &str, max: u64) -> Result<(bytes::Bytes, Option<String>, Option<String>)> {
        let resp = self.send(Method::GET, url, &[("Accept", accept.to_string())], &Body::Empty).await?;
        let resp = self.check(resp, url).await?;
        if resp.content_length().is_some_and(|l| l > max) {
            return Err(DistributionError::invalid(format!("{url}: document too large ({} bytes, limit {max})", resp.content_length().unwrap_or(0))));
        }
        let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let dcd = resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).map(String::from);
        let body = read_capped(resp, max).await?;
        Ok((body, ct, dcd))
    }

    /// Turn a non-success answer into an error naming what failed.
    pub async fn check(&self, resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        let st = resp.status();
        if st.is_success() {
            return Ok(resp);
        }
        let body = read_capped(resp, 64 << 10).await.unwrap_or_default();
        let detail = registry_error_text(&body).unwrap_or_else(|| match st {
            StatusCode::UNAUTHORIZED => "unauthorized: authentication required".into(),
            StatusCode::FORBIDDEN => "denied: requested access to the resource is denied".into(),
            _ => format!("unexpected HTTP status: {st}"),
        });
        let kind = match st {
            StatusCode::NOT_FOUND => DistributionErrorKind::NotFound,
            StatusCode::UNAUTHORIZED => DistributionErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => DistributionErrorKind::Denied,
            StatusCode::BAD_REQUEST => DistributionErrorKind::Invalid,
            _ => DistributionErrorKind::Unavailable,
        };
        Err(DistributionError::new(kind, format!("{what}: {detail}")))
    }
}

/// The registry domain a `docker login` server address names (`https://index.docker.io/v1/`
/// → `docker.io`, `http://127.0.0.1:5000` → `127.0.0.1:5000`).
pub fn login_domain(server: &str) -> String {
    let s = server.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let s = s.split('/').next().unwrap_or("");
    match s {
        "" | "index.docker.io" | "registry-1.docker.io" | "docker.io" => crate::reference::DEFAULT_DOMAIN.into(),
        other => other.to_ascii_lowercase(),
    }
}

/// `POST /auth`: check credentials against a registry. Returns the status line.
pub async fn login(creds: &Credentials) -> Result<String> {
    let domain = login_domain(&creds.serveraddress);
    let sess = Session::open(&domain, "", Some(creds.clone()), "").await?;
    let url = format!("{}/v2/", sess.base);
    let resp = sess.send(Method::GET, &url, &[], &Body::Empty).await?;
    sess.check(resp, &format!("Get \"{url}\"")).await?;
    Ok("Login Succeeded".into())
}

/// One `docker search` result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// `docker search [REGISTRY/]TERM`: Docker Hub's search API for docker.io, the catalog
/// (filtered by the term) for other registries.
pub async fn search(term: &str, limit: usize, creds: Option<Credentials>) -> Result<Vec<SearchResult>> {
    let limit = limit.clamp(1, 100);
    let (domain, q) = match term.split_once('/') {
        Some((d, rest)) if d.contains('.') || d.contains(':') || d == "localhost" => (d.to_string(), rest.to_string()),
        _ => (crate::reference::DEFAULT_DOMAIN.to_string(), term.to_string()),
    };
    if domain == crate::reference::DEFAULT_DOMAIN {
        let http = http_client("index.docker.io", true)?;
        let url = "https://index.docker.io/v1/search";
        let resp = http
            .get(url)
            .query(&[("q", q.as_str()), ("n", &limit.to_string())])
            .send()
            .await
            .map_err(|e| DistributionError::unavailable(format!("Get \"{url}\": {}", error_chain(&e))))?;
        let body = read_capped(resp, 4 << 20).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| DistributionError::invalid(format!("{url}: {e}")))?;
        let res: Vec<SearchResult> = serde_json::from_value(v["results"].clone()).unwrap_or_default();
        return Ok(res.into_iter().take(limit).collect());
    }
    let sess = Session::open(&domain, "", creds, "").await?;
    sess.add_scope("registry:catalog:*".into());
    let mut out = Vec::new();
    let mut url = format!("{}/v2/_catalog?n=1000", sess.base);
    for _ in 0..100 {
        let resp = sess.send(Method::GET, &url, &[], &Body::Empty).await?;
        let resp = sess.check(resp, &format!("Get \"{url}\"")).await?;
        let next = resp.headers().get(reqwest::header::LINK).and_then(|v| v.to_str().ok()).and_then(|l| {
            let l = l.trim();
            let start = l.find('<')? + 1;
            let end = l.find('>')?;
            Some(l[start..end].to_string())
        });
        let body = read_capped(resp, 4 << 20).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| DistributionError::invalid(format!("{url}: {e}")))?;
        for r in v["repositories"].as_array().into_iter().flatten().filter_map(|r| r.as_str()) {
            if r.contains(&q) && out.len() < limit {
                out.push(SearchResult { name: format!("{domain}/{r}"), description: String::new(), star_count: 0, is_official: false, is_automated: false });
            }
        }
        match next {
            Some(n) if out.len() < limit => url = if n.starts_with("http") { n } else { format!("{}{n}", sess.base) },
            _ => break,
        }
    }
    Ok(out)
}

/// `len` bytes of a file (already positioned at `offset`) as an upload body, reporting progress.
fn file_stream(
    f: tokio::fs::File,
    offset: u64,
    len: u64,
    sink: Option<super::ProgressSink>,
    id: Option<String>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    let total = offset + len;
    futures::stream::unfold((f, 0u64, Instant::now()), move |(mut f, sent, mut last)| {
        let sink = sink.clone();
        let id = id.clone();
        async move {
            if sent >= len {
                return None;
            }
            let want = (len - sent).min(256 << 10) as usize;
            let mut buf = vec![0u8; want];
            match f.read(&mut buf).await {
                Ok(0) => Some((Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob file shorter than expected")), (f, len, last))),
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    if let (Some(s), Some(id)) = (&sink, &id) {
                        if last.elapsed() > Duration::from_millis(100) || sent == len {
                            last = Instant::now();
                            s(super::Progress { id: Some(id.clone()), status: "Pushing".into(), current: Some(offset + sent), total: Some(total), aux: None });
                        }
                    }
                    Some((Ok(bytes::Bytes::from(buf)), (f, sent, last)))
                }
                Err(e) => Some((Err(e), (f, len, last))),
            }
        }
    })
}

/// Backoff before attempt `attempt + 1`: `Retry-After` (seconds, capped at 30 s) when given,
/// else exponential from the configured base, capped at 10 s, with a little jitter.
pub fn retry_delay(opts: &RegistryOptions, attempt: u32, headers: &reqwest::header::HeaderMap) -> Duration {
    if let Some(s) = headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(s.min(30));
    }
    let exp = opts.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let jitter = Duration::from_millis(rand::random::<u64>() % 50);
    exp.min(Duration::from_secs(10)) + jitter
}

/// Read a response body, refusing more than `max` bytes.
pub async fn read_capped(mut resp: reqwest::Response, max: u64) -> Result<bytes::Bytes> {
    let mut out = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() as u64 + c.len() as u64 > max {
                    return Err(DistributionError::invalid(format!("{}: response larger than {max} bytes", resp.url())));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out.freeze()),
            Err(e) => return Err(DistributionError::unavailable(format!("{}: {}", resp.url(), error_chain(&e)))),
        }
    }
}

/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}` → `manifest unknown: manifest unknown`
/// (Docker prints the lowercased code, then the message).
pub fn registry_error_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errs = v["errors"].as_array()?;
    let parts: Vec<String> = errs
        .iter()
        .map(|e| {
            let code = e["code"].as_str().unwrap_or("unknown").to_ascii_lowercase().replace('_', " ");
            let msg = e["message"].as_str().unwrap_or("");
            if msg.is_empty() {
                code
            } else {
                format!("{code}: {msg}")
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An error with its sources, short (`error sending request: connection refused`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#),
            Challenge::Bearer { realm: "https://auth.docker.io/token".into(), service: Some("registry.docker.io".into()) }
        );
        assert_eq!(parse_challenge(r#"Basic realm="Registry Realm""#), Challenge::Basic);
        assert_eq!(parse_challenge("Bearer"), Challenge::None);
        assert_eq!(parse_challenge(""), Challenge::None);
    }

    #[test]
    fn hosts() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(auth_key("docker.io"), "https://index.docker.io/v1/");
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("example.com:5000"));
        let o = RegistryOptions { insecure: vec!["10.0.0.0/8".into(), "reg.local:5000".into()], ..Default::default() };
        assert!(is_listed_insecure(&o, "10.1.2.3:5000"));
        assert!(is_listed_insecure(&o, "reg.local:5000"));
        assert!(!is_listed_insecure(&o, "reg.local:6000"));
        assert!(!is_listed_insecure(&o, "11.0.0.1"));
        assert_eq!(login_domain("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_domain("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(login_domain(""), "docker.io");
    }

    #[test]
    fn daemon_json() {
        let v = serde_json::json!({"insecure-registries": ["reg.local:5000"], "registry-mirrors": ["https://m.example"], "max-concurrent-downloads": 7});
        let o = RegistryOptions::from_daemon_json(&v);
        assert!(o.insecure.contains(&"reg.local:5000".to_string()));
        assert_eq!(o.mirrors, vec!["https://m.example".to_string()]);
        assert_eq!(o.max_concurrent_downloads, 7);
    }

    #[test]
    fn credentials_header() {
        let c = Credentials { username: "u".into(), password: "p?>".into(), serveraddress: "h".into(), ..Default::default() };
        assert_eq!(Credentials::from_header(&c.to_header()), Some(c));
        assert_eq!(Credentials::from_header(""), None);
        assert_eq!(Credentials::from_header("e30="), None); // {}
        assert_eq!(Credentials::from_header("!!"), None);
    }

    #[test]
    fn error_text() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_error_text(b).unwrap(), "manifest unknown: manifest unknown");
        assert_eq!(registry_error_text(b"nope"), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let o = RegistryOptions::default();
        let mut h = reqwest::header::HeaderMap::new();
        assert!(retry_delay(&o, 30, &h) <= Duration::from_millis(10_050));
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_delay(&o, 1, &h), Duration::from_secs(2));
        h.insert(reqwest::header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_delay(&o, 1, &h), Duration::from_secs(30));
    }
}
