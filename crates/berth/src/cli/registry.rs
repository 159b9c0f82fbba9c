//! Registry commands: `pull`, `push`, `login`, `logout`, `search`.
//!
//! Credentials live where Docker keeps them, `~/.docker/config.json` (or `$DOCKER_CONFIG`):
//! `auths` entries (base64 `user:password`), or a `credsStore` / `credHelpers` helper
//! (`docker-credential-<name> get|store|erase`). They are sent to the daemon in the
//! `X-Registry-Auth` header. Progress is drawn as Docker draws it: one line per layer
//! updated in place on a terminal, plain status lines otherwise.

use super::images::PullArgs;
use crate::client::{for_each_json, full, BoxBody, Client, DaemonError};
use anyhow::{anyhow, bail, Context, Result};
use berth_engine::distribution::client::{auth_key, login_domain};
use berth_engine::distribution::Credentials;
use berth_engine::reference::Reference;
use clap::Args;
use http_body_util::BodyExt;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Ignored (single-platform images only)
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Registry server (default: Docker Hub)
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Pretty-print search using a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub term: String,
}

// ---------------------------------------------------------------------------------------
// config.json

fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker/config.json")
}

fn load_config() -> Result<Value> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(json!({})),
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("loading config file {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("loading config file {}", p.display())),
    }
}

fn save_config(v: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = config_path();
    let dir = p.parent().ok_or_else(|| anyhow!("invalid config path"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(v)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &p).with_context(|| format!("saving config file {}", p.display()))?;
    Ok(())
}

/// The credential helper configured for `key`, if any.
fn helper_for(cfg: &Value, key: &str, domain: &str) -> Option<String> {
    let by_host = cfg["credHelpers"].get(key).or_else(|| cfg["credHelpers"].get(domain)).and_then(|v| v.as_str());
    by_host.or_else(|| cfg["credsStore"].as_str()).filter(|s| !s.is_empty()).map(String::from)
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<String> {
    let prog = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&prog)
        .arg(action)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running credential helper {prog}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        let msg = if stdout.trim().is_empty() { String::from_utf8_lossy(&out.stderr).trim().to_string() } else { stdout.trim().to_string() };
        bail!("error {action} credentials - err: {prog} {action}: {msg}");
    }
    Ok(stdout)
}

/// Stored credentials for a registry domain (`docker.io`, `127.0.0.1:5000`).
pub fn credentials_for(domain: &str) -> Option<Credentials> {
    let cfg = load_config().ok()?;
    let key = auth_key(domain);
    if let Some(h) = helper_for(&cfg, &key, domain) {
        let out = run_helper(&h, "get", &key).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        let user = v["Username"].as_str().unwrap_or_default().to_string();
        let secret = v["Secret"].as_str().unwrap_or_default().to_string();
        let mut c = Credentials { serveraddress: key, ..Default::default() };
        if user == "<token>" {
            c.identitytoken = secret;
        } else {
            c.username = user;
            c.password = secret;
        }
        return (!c.is_empty()).then_some(c);
    }
    let auths = cfg["auths"].as_object()?;
    let candidates = [key.clone(), domain.to_string(), format!("https://{domain}"), format!("http://{domain}")];
    let entry = candidates.iter().find_map(|k| auths.get(k.as_str()))?;
    let mut c = Credentials { serveraddress: key, ..Default::default() };
    if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        c.username = u.to_string();
        c.password = p.to_string();
    }
    if let Some(t) = entry["identitytoken"].as_str() {
        c.identitytoken = t.to_string();
    }
    (!c.is_empty()).then_some(c)
}

fn auth_header_for(image: &str) -> Option<String> {
    let r = Reference::parse(image).ok()?;
    credentials_for(&r.domain).map(|c| c.to_header())
}

// ---------------------------------------------------------------------------------------
// requests with X-Registry-Auth

async fn request(c: &Client, method: Method, path: &str, auth: Option<String>, body: BoxBody) -> Result<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::net::UnixStream::connect(&c.socket)
        .await
        .with_context(|| format!("Cannot connect to the berth daemon at unix://{}. Is the berth daemon running?", c.socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://localhost/v{}{}", c.version, path))
        .header("Host", "localhost")
        .header("User-Agent", "berth-cli");
    if let Some(a) = auth {
        b = b.header("X-Registry-Auth", a);
    }
    let resp = sender.send_request(b.body(body)?).await?;
    if resp.status().is_client_error() || resp.status().is_server_error() {
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        return Err(DaemonError { status, message }.into());
    }
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// progress

/// Docker's progress display: on a terminal each layer id owns a line updated in place.
pub struct Renderer {
    tty: bool,
    quiet: bool,
    ids: Vec<String>,
    out: std::io::Stdout,
}

impl Renderer {
    pub fn new(quiet: bool) -> Self {
        Self { tty: nix::unistd::isatty(std::io::stdout()).unwrap_or(false), quiet, ids: Vec::new(), out: std::io::stdout() }
    }

    /// Show one message; returns the error text of an error message.
    pub fn show(&mut self, v: &Value) -> Option<String> {
        if let Some(e) = v["error"].as_str().or_else(|| v["errorDetail"]["message"].as_str()) {
            return Some(e.to_string());
        }
        if self.quiet {
            return None;
        }
        let status = v["status"].as_str()?;
        let id = v["id"].as_str().filter(|s| !s.is_empty());
        let has_progress = v["progressDetail"]["current"].is_u64();
        let mut o = self.out.lock();
        match id {
            Some(id) if self.tty => {
                let text = match v["progress"].as_str().filter(|_| has_progress) {
                    Some(p) => format!("{id}: {status} {p}"),
                    None => format!("{id}: {status}"),
                };
                match self.ids.iter().position(|x| x == id) {
                    Some(i) => {
                        let up = self.ids.len() - i;
                        let _ = write!(o, "\x1b[{up}A\x1b[2K\r{text}\n");
                        if up > 1 {
                            let _ = write!(o, "\x1b[{}B", up - 1);
                        }
                    }
                    None => {
                        self.ids.push(id.to_string());
                        let _ = writeln!(o, "{text}");
                    }
                }
            }
            Some(_) if has_progress => {} // plain output: no progress bars
            Some(id) => {
                let _ = writeln!(o, "{id}: {status}");
            }
            None => {
                if !status.is_empty() {
                    let _ = writeln!(o, "{status}");
                }
            }
        }
        let _ = o.flush();
        None
    }
}

// ---------------------------------------------------------------------------------------
// commands

fn split_image(image: &str) -> (String, String) {
    if image.contains('@') {
        return (image.to_string(), String::new());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, t)) => (image[..image.len() - t.len() - 1].to_string(), t.to_string()),
        None => (image.to_string(), String::new()),
    }
}

/// Pull through the API with stored credentials and Docker's progress display.
pub async fn pull_image(c: &Client, image: &str, quiet: bool, platform: Option<&str>, all_tags: bool) -> Result<()> {
    let r = Reference::parse(image).map_err(|e| anyhow!("{e}"))?;
    let (name, mut tag) = split_image(image);
    if all_tags && (!tag.is_empty() || r.digest.is_some()) {
        bail!("tag can't be used with --all-tags/-a");
    }
    if tag.is_empty() && r.digest.is_none() && !all_tags {
        tag = "latest".into();
        if !quiet {
            println!("Using default tag: latest");
        }
    }
    let mut path = format!("/images/create?fromImage={}&tag={}", super::run::urlenc(&name), super::run::urlenc(&tag));
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        path.push_str(&format!("&platform={}", super::run::urlenc(p)));
    }
    let resp = request(c, Method::POST, &path, auth_header_for(image), crate::client::empty()).await?;
    let mut r2 = Renderer::new(quiet);
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = r2.show(&v) {
            err = Some(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    if quiet {
        let mut full_ref = r;
        if full_ref.tag.is_none() && full_ref.digest.is_none() && !all_tags {
            full_ref.tag = Some("latest".into());
        }
        println!("{full_ref}");
    } else if !all_tags {
        let mut shown = r;
        if shown.tag.is_none() && shown.digest.is_none() {
            shown.tag = Some("latest".into());
        }
        println!("{shown}");
    }
    Ok(())
}

pub async fn pull(c: &Client, a: PullArgs) -> Result<()> {
    pull_image(c, &a.image, a.quiet, a.platform.as_deref(), a.all_tags).await
}

pub async fn push(c: &Client, a: PushArgs) -> Result<()> {
    let r = Reference::parse(&a.image).map_err(|e| anyhow!("{e}"))?;
    if r.digest.is_some() {
        bail!("cannot push a digest reference");
    }
    let (name, mut tag) = split_image(&a.image);
    if a.all_tags && !tag.is_empty() {
        bail!("tag can't be used with --all-tags/-a");
    }
    if tag.is_empty() && !a.all_tags {
        tag = "latest".into();
        if !a.quiet {
            println!("Using default tag: latest");
        }
    }
    let path = format!("/images/{}/push?tag={}", name, super::run::urlenc(&tag));
    let resp = request(c, Method::POST, &path, auth_header_for(&a.image), crate::client::empty()).await?;
    let mut rd = Renderer::new(a.quiet);
    let mut err = None;
    for_each_json(resp, |v| {
        if let Some(e) = rd.show(&v) {
            err = Some(e);
        }
        Ok(())
    })
    .await?;
    if let Some(e) = err {
        bail!("{e}");
    }
    if a.quiet {
        println!("{}", r.familiar());
    }
    Ok(())
}

fn prompt(label: &str) -> Result<String> {
    let mut o = std::io::stdout();
    write!(o, "{label}")?;
    o.flush()?;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

fn prompt_password() -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).ok();
    if let Some(o) = &old {
        let mut t = o.clone();
        t.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
    }
    let r = prompt("Password: ");
    if let Some(o) = &old {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, o);
        println!();
    }
    r
}

pub async fn login(c: &Client, a: LoginArgs) -> Result<()> {
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if a.password_stdin && a.username.is_none() {
        bail!("Must provide --username with --password-stdin");
    }
    let server = a.server.clone().unwrap_or_default();
    let domain = login_domain(&server);
    let key = auth_key(&domain);
    let mut password = a.password.clone();
    if password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        password = Some(s.trim_end_matches(['\n', '\r']).to_string());
    }
    let stored = if a.username.is_none() && password.is_none() { credentials_for(&domain) } else { None };
    let creds = match stored {
        Some(mut s) => {
            println!("Authenticating with existing credentials...");
            s.serveraddress = key.clone();
            s
        }
        None => {
            let tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
            let username = match a.username.clone() {
                Some(u) => u,
                None if tty => prompt("Username: ")?,
                None => bail!("Error: Cannot perform an interactive login from a non TTY device"),
            };
            let username = username.trim().to_string();
            if username.is_empty() {
                bail!("Error: Non-null Username Required");
            }
            let password = match password {
                Some(p) => p,
                None if tty => prompt_password()?,
                None => bail!("Error: Cannot perform an interactive login from a non TTY device"),
            };
            if password.is_empty() {
                bail!("Error: Password Required");
            }
            Credentials { username, password, serveraddress: key.clone(), ..Default::default() }
        }
    };
    let body = json!({"username": creds.username, "password": creds.password, "serveraddress": creds.serveraddress, "identitytoken": creds.identitytoken});
    let resp = request(c, Method::POST, "/auth", None, full(serde_json::to_vec(&body)?)).await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(json!({}));
    let token = v["IdentityToken"].as_str().unwrap_or_default().to_string();
    store_credentials(&domain, &creds, &token)?;
    println!("{}", v["Status"].as_str().unwrap_or("Login Succeeded"));
    Ok(())
}

fn store_credentials(domain: &str, creds: &Credentials, token: &str) -> Result<()> {
    use base64::Engine as _;
    let mut cfg = load_config()?;
    if !cfg.is_object() {
        cfg = json!({});
    }
    let key = auth_key(domain);
    if let Some(h) = helper_for(&cfg, &key, domain) {
        let (user, secret) = if token.is_empty() { (creds.username.clone(), creds.password.clone()) } else { ("<token>".to_string(), token.to_string()) };
        let input = json!({"ServerURL": key, "Username": user, "Secret": secret}).to_string();
        run_helper(&h, "store", &input)?;
        return Ok(());
    }
    let mut entry = json!({"auth": base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password))});
    if !token.is_empty() {
        entry = json!({"identitytoken": token});
    }
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    cfg["auths"][key.as_str()] = entry;
    save_config(&cfg)?;
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n",
        config_path().display()
    );
    Ok(())
}

pub async fn logout(a: LogoutArgs) -> Result<()> {
    let server = a.server.unwrap_or_default();
    let domain = login_domain(&server);
    let key = auth_key(&domain);
    let mut cfg = load_config()?;
    let in_file = cfg["auths"].as_object().is_some_and(|m| m.contains_key(&key));
    let helper = helper_for(&cfg, &key, &domain);
    if !in_file && helper.is_none() {
        println!("Not logged in to {}", if server.is_empty() { key.clone() } else { server.clone() });
        return Ok(());
    }
    println!("Removing login credentials for {key}");
    if let Some(h) = helper {
        if let Err(e) = run_helper(&h, "erase", &key) {
            eprintln!("WARNING: could not erase credentials: {e}");
        }
    }
    if let Some(m) = cfg["auths"].as_object_mut() {
        m.remove(&key);
    }
    if in_file {
        save_config(&cfg)?;
    }
    Ok(())
}

pub async fn search(c: &Client, a: SearchArgs) -> Result<()> {
    let mut path = format!("/images/search?term={}&limit={}", super::run::urlenc(&a.term), a.limit);
    if !a.filter.is_empty() {
        path.push_str(&format!("&filters={}", super::containers::filters_json(&a.filter)?));
    }
    let domain = Reference::parse(&format!("{}:x", a.term)).map(|r| r.domain).unwrap_or_else(|_| "docker.io".into());
    let auth = credentials_for(&domain).map(|c| c.to_header());
    let resp = request(c, Method::GET, &path, auth, crate::client::empty()).await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let results: Vec<HashMap<String, Value>> = serde_json::from_slice(&bytes)?;
    let mut out = std::io::stdout().lock();
    if let Some(f) = &a.format {
        for r in &results {
            let s = f
                .replace("{{.Name}}", r.get("name").and_then(|v| v.as_str()).unwrap_or(""))
                .replace("{{.Description}}", r.get("description").and_then(|v| v.as_str()).unwrap_or(""))
                .replace("{{.StarCount}}", &r.get("star_count").and_then(|v| v.as_u64()).unwrap_or(0).to_string())
                .replace("{{.IsOfficial}}", &r.get("is_official").and_then(|v| v.as_bool()).unwrap_or(false).to_string())
                .replace("\\t", "\t");
            writeln!(out, "{s}")?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| {
            let mut desc = r.get("description").and_then(|v| v.as_str()).unwrap_or("").replace('\n', " ");
            if !a.no_trunc && desc.chars().count() > 45 {
                desc = desc.chars().take(44).collect::<String>() + "…";
            }
            [
                r.get("name").and_then(|v| v.as_str()).unwrap_or("").to_string(),
                desc,
                r.get("star_count").and_then(|v| v.as_u64()).unwrap_or(0).to_string(),
                if r.get("is_official").and_then(|v| v.as_bool()).unwrap_or(false) { "[OK]".into() } else { String::new() },
            ]
        })
        .collect();
    let head = ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"];
    let mut w = [0usize; 4];
    for (i, h) in head.iter().enumerate() {
        w[i] = rows.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0);
    }
    let fmt_row = |cells: [&str; 4]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 3 {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", fmt_row(head))?;
    for r in &rows {
        writeln!(out, "{}", fmt_row([&r[0], &r[1], &r[2], &r[3]]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        assert_eq!(split_image("busybox"), ("busybox".into(), "".into()));
        assert_eq!(split_image("127.0.0.1:5000/a/b:v1"), ("127.0.0.1:5000/a/b".into(), "v1".into()));
        assert_eq!(split_image("127.0.0.1:5000/a/b"), ("127.0.0.1:5000/a/b".into(), "".into()));
        let d = format!("x@sha256:{}", "a".repeat(64));
        assert_eq!(split_image(&d), (d.clone(), "".into()));
    }
}

