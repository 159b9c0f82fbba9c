//! Container commands other than run/create.

use super::format::{self, ellipsis, Template};
use super::Exit;
use crate::client::{for_each_chunk, for_each_json, Client};
use anyhow::{anyhow, Result};
use clap::Args;
use hyper::Method;
use serde_json::{json, Value};
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug)]
pub struct Names {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short, long = "time", alias = "timeout")]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID
    #[arg(short, long)]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    /// Only inspect objects of the given type
    #[arg(long = "type")]
    pub typ: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[arg(short, long)]
    pub filter: Vec<String>,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long)]
    pub format: Option<String>,
}

/// `key=value` filters → the API's JSON.
pub fn filters_json(f: &[String]) -> Result<String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for kv in f {
        let (k, v) = kv.split_once('=').ok_or_else(|| anyhow!("bad format of filter (expected name=value)"))?;
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(super::run::urlenc(&serde_json::to_string(&m)?))
}

/// Run `f` for each name, printing errors as Docker does; exit 1 if any failed.
async fn for_each<F, Fut>(names: &[String], f: F) -> Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n.clone()).await {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub async fn start(c: &Client, a: StartArgs) -> Result<()> {
    if a.attach || a.interactive {
        let name = a.containers.first().cloned().unwrap_or_default();
        let info = c.get(&format!("/containers/{name}/json")).await?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let id = info["Id"].as_str().unwrap_or("").to_string();
        let conn = c
            .hijack(&format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1{}", if a.interactive { "&stdin=1" } else { "" }), None)
            .await?;
        let wc = c.clone();
        let wid = id.clone();
        let waiter = tokio::spawn(async move { wc.post(&format!("/containers/{wid}/wait?condition=next-exit"), None).await });
        tokio::task::yield_now().await;
        c.post(&format!("/containers/{id}/start"), None).await?;
        let raw = if tty && a.interactive { RawTerminal::enter().ok() } else { None };
        pump(conn, a.interactive, tty).await?;
        drop(raw);
        let code = waiter.await??["StatusCode"].as_i64().unwrap_or(0);
        if code != 0 {
            return Err(Exit(code as i32).into());
        }
        return Ok(());
    }
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/start"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

pub async fn stop(c: &Client, a: StopArgs, verb: &str) -> Result<()> {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={s}"));
    }
    let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    let q = &q;
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/{verb}{q}"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<()> {
    let q = a.signal.as_ref().map(|s| format!("?signal={s}")).unwrap_or_default();
    let q = &q;
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/kill{q}"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

pub async fn simple(c: &Client, a: Names, verb: &str) -> Result<()> {
    for_each(&a.containers, |n| async move {
        c.post(&format!("/containers/{n}/{verb}"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<()> {
    let q = format!("?force={}&v={}&link={}", a.force as u8, a.volumes as u8, a.link as u8);
    let q = &q;
    for_each(&a.containers, |n| async move {
        c.json(Method::DELETE, &format!("/containers/{n}{q}"), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

pub async fn rename(c: &Client, from: &str, to: &str) -> Result<()> {
    c.post(&format!("/containers/{from}/rename?name={}", super::run::urlenc(to)), None).await?;
    Ok(())
}

/// Fields `docker ps --format` offers, computed from the API summary.
fn ps_fields(s: &Value, no_trunc: bool) -> Value {
    let id = s["Id"].as_str().unwrap_or("");
    let cmd = s["Command"].as_str().unwrap_or("");
    let names: Vec<String> = s["Names"].as_array().into_iter().flatten().filter_map(|n| n.as_str()).map(|n| n.trim_start_matches('/').to_string()).collect();
    let labels = s["Labels"].as_object().map(|m| {
        let mut v: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        v.sort();
        v.join(",")
    });
    let created = s["Created"].as_i64().unwrap_or(0);
    let size = match (s["SizeRw"].as_u64(), s["SizeRootFs"].as_u64()) {
        (Some(rw), Some(root)) => format!("{} (virtual {})", format::human_size(rw as f64), format::human_size(root as f64)),
        _ => String::new(),
    };
    let ports = ports_text(&s["Ports"]);
    json!({
        "ID": if no_trunc { id.to_string() } else { id.chars().take(12).collect() },
        "Image": s["Image"],
        "Command": if no_trunc { format!("\"{cmd}\"") } else { format!("\"{}\"", ellipsis(cmd, 20)) },
        "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S %z %Z").to_string()).unwrap_or_default(),
        "RunningFor": format::ago_unix(created),
        "Ports": ports,
        "State": s["State"],
        "Status": s["Status"],
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.unwrap_or_default(),
        "Mounts": "",
        "Networks": s["NetworkSettings"]["Networks"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default(),
    })
}

pub fn ports_text(p: &Value) -> String {
    let mut out = Vec::new();
    for port in p.as_array().into_iter().flatten() {
        let private = port["PrivatePort"].as_u64().unwrap_or(0);
        let typ = port["Type"].as_str().unwrap_or("tcp");
        match port["PublicPort"].as_u64() {
            Some(public) if public > 0 => {
                let ip = port["IP"].as_str().unwrap_or("0.0.0.0");
                let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                out.push(format!("{ip}:{public}->{private}/{typ}"));
            }
            _ => out.push(format!("{private}/{typ}")),
        }
    }
    out.join(", ")
}

pub async fn ps(c: &Client, a: PsArgs) -> Result<()> {
    let mut q = format!("?all={}&size={}", (a.all || a.last > 0 || a.latest) as u8, a.size as u8);
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        q.push_str(&format!("&limit={limit}"));
    }
    if !a.filter.is_empty() {
        q.push_str(&format!("&filters={}", filters_json(&a.filter)?));
    }
    let list = c.get(&format!("/containers/json{q}")).await?;
    let items: Vec<Value> = list.as_array().cloned().unwrap_or_default();
    if a.quiet {
        for s in &items {
            let id = s["Id"].as_str().unwrap_or("");
            println!("{}", if a.no_trunc { id } else { &id[..12.min(id.len())] });
        }
        return Ok(());
    }
    let fields: Vec<Value> = items.iter().map(|s| ps_fields(s, a.no_trunc)).collect();
    if let Some(f) = a.format.as_deref().filter(|f| *f != "table") {
        if f == "json" {
            for it in &fields {
                println!("{it}");
            }
            return Ok(());
        }
        print!("{}", Template::parse(f)?.render_all(&fields)?);
        return Ok(());
    }
    let mut rows = vec![vec!["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"].into_iter().map(String::from).collect::<Vec<_>>()];
    if a.size {
        rows[0].push("SIZE".into());
    }
    for f in &fields {
        let mut r: Vec<String> = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
            .iter()
            .map(|k| f[*k].as_str().unwrap_or("").to_string())
            .collect();
        if a.size {
            r.push(f["Size"].as_str().unwrap_or("").to_string());
        }
        rows.push(r);
    }
    print!("{}", format::table(&rows));
    Ok(())
}

/// Copy a multiplexed (or raw, with tty) stream to stdout/stderr.
pub struct Demux {
    buf: Vec<u8>,
    tty: bool,
}

impl Demux {
    pub fn new(tty: bool) -> Self {
        Self { buf: Vec::new(), tty }
    }
    pub fn feed(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.tty {
            let mut o = std::io::stdout().lock();
            o.write_all(data)?;
            return o.flush();
        }
        self.buf.extend_from_slice(data);
        while self.buf.len() >= 8 {
            let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + len {
                break;
            }
            let stream = self.buf[0];
            let payload = &self.buf[8..8 + len];
            if stream == 2 {
                let mut e = std::io::stderr().lock();
                e.write_all(payload)?;
                e.flush()?;
            } else {
                let mut o = std::io::stdout().lock();
                o.write_all(payload)?;
                o.flush()?;
            }
            self.buf.drain(..8 + len);
        }
        Ok(())
    }
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<()> {
    let info = c.get(&format!("/containers/{}/json", a.container)).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!("?stdout=1&stderr=1&follow={}&timestamps={}&tail={}", a.follow as u8, a.timestamps as u8, a.tail);
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", super::run::urlenc(v)));
        }
    }
    let resp = c.request(Method::GET, &format!("/containers/{}/logs{q}", a.container), crate::client::empty(), None).await?;
    let mut d = Demux::new(tty);
    for_each_chunk(resp, |chunk| Ok(d.feed(chunk)?)).await
}

/// Pump a hijacked connection: stdin → container (when `stdin`), container → stdout/stderr.
pub async fn pump(conn: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>, stdin: bool, tty: bool) -> Result<()> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let input = if stdin {
        Some(tokio::spawn(async move {
            let mut inp = tokio::io::stdin();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                match inp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = wr.flush().await;
                    }
                }
            }
            let _ = wr.shutdown().await;
        }))
    } else {
        None
    };
    let mut d = Demux::new(tty);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        d.feed(&buf[..n])?;
    }
    if let Some(h) = input {
        h.abort();
    }
    Ok(())
}

/// Put the controlling terminal in raw mode for `-it`; restored on drop.
pub struct RawTerminal {
    orig: nix::sys::termios::Termios,
}

impl RawTerminal {
    pub fn enter() -> Result<Self> {
        use nix::sys::termios::*;
        let stdin = std::io::stdin();
        let orig = tcgetattr(&stdin)?;
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        raw.output_flags |= OutputFlags::OPOST;
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(Self { orig })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.orig);
    }
}

/// Terminal size of stdout (rows, cols).
pub fn term_size() -> Result<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize into the pointer we pass, which is valid and sized.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    if r != 0 || ws.ws_row == 0 {
        return Err(anyhow!("not a terminal"));
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// Send the terminal size now and on every SIGWINCH.
pub fn spawn_resize_watcher(c: Client, path: String) {
    tokio::spawn(async move {
        let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
            Ok(s) => s,
            Err(_) => return,
        };
        loop {
            if let Ok((h, w)) = term_size() {
                let _ = c.post(&format!("{path}?h={h}&w={w}"), None).await;
            }
            if sig.recv().await.is_none() {
                return;
            }
        }
    });
}

pub async fn exec(c: &Client, a: ExecArgs) -> Result<()> {
    let mut env = Vec::new();
    for f in &a.env_file {
        for line in std::fs::read_to_string(f)?.lines() {
            let l = line.trim();
            if !l.is_empty() && !l.starts_with('#') {
                env.push(l.to_string());
            }
        }
    }
    env.extend(a.env.iter().cloned());
    let mut body = json!({
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "Env": env,
        "Cmd": a.command,
        "Privileged": a.privileged,
        "User": a.user.clone().unwrap_or_default(),
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
    });
    if a.tty {
        if let Ok((h, w)) = term_size() {
            body["ConsoleSize"] = json!([h, w]);
        }
    }
    let created = c.post(&format!("/containers/{}/exec", a.container), Some(body)).await?;
    let id = created["Id"].as_str().unwrap_or("").to_string();
    if a.detach {
        c.post(&format!("/exec/{id}/start"), Some(json!({"Detach": true, "Tty": a.tty}))).await?;
        return Ok(());
    }
    let conn = match c.hijack(&format!("/exec/{id}/start"), Some(json!({"Detach": false, "Tty": a.tty}))).await {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            let code = if msg.contains("executable file not found") { 127 } else { 126 };
            return Err(Exit(code).into());
        }
    };
    let raw = if a.tty && a.interactive { RawTerminal::enter().ok() } else { None };
    if a.tty {
        spawn_resize_watcher(c.clone(), format!("/exec/{id}/resize"));
    }
    pump(conn, a.interactive, a.tty).await?;
    drop(raw);
    // The exit code is recorded once the process is reaped.
    for _ in 0..200 {
        let v = c.get(&format!("/exec/{id}/json")).await?;
        if !v["Running"].as_bool().unwrap_or(false) {
            if let Some(code) = v["ExitCode"].as_i64() {
                if code != 0 {
                    return Err(Exit(code as i32).into());
                }
                return Ok(());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

pub async fn inspect(c: &Client, a: InspectArgs, typ: Option<&str>) -> Result<()> {
    let typ = a.typ.as_deref().or(typ);
    let mut out = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let try_c = || async { c.get(&format!("/containers/{n}/json?size={}", a.size as u8)).await };
        let try_i = || async { c.get(&format!("/images/{n}/json")).await };
        let r = match typ {
            Some("container") => try_c().await,
            Some("image") => try_i().await,
            _ => match try_c().await {
                Ok(v) => Ok(v),
                Err(_) => try_i().await.map_err(|_| anyhow!("Error: No such object: {n}")),
            },
        };
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                let m = e.to_string();
                let m = m.strip_prefix("Error response from daemon: ").map(|s| format!("Error: {s}")).unwrap_or(m);
                eprintln!("{m}");
                failed = true;
            }
        }
    }
    match a.format.as_deref() {
        Some(f) if f != "json" => {
            let t = Template::parse(f)?;
            for v in &out {
                println!("{}", t.render(v)?);
            }
        }
        _ => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub async fn wait(c: &Client, a: Names) -> Result<()> {
    for_each(&a.containers, |n| async move {
        let v = c.post(&format!("/containers/{n}/wait"), None).await?;
        println!("{}", v["StatusCode"].as_i64().unwrap_or(0));
        Ok(())
    })
    .await
}

pub async fn top(c: &Client, a: TopArgs) -> Result<()> {
    let q = if a.ps_args.is_empty() { String::new() } else { format!("?ps_args={}", super::run::urlenc(&a.ps_args.join(" "))) };
    let v = c.get(&format!("/containers/{}/top{q}", a.container)).await?;
    let mut rows = vec![v["Titles"].as_array().into_iter().flatten().map(|t| t.as_str().unwrap_or("").to_string()).collect::<Vec<_>>()];
    for p in v["Processes"].as_array().into_iter().flatten() {
        rows.push(p.as_array().into_iter().flatten().map(|t| t.as_str().unwrap_or("").to_string()).collect());
    }
    print!("{}", format::table(&rows));
    Ok(())
}

fn stats_row(s: &Value) -> Value {
    let cpu = s["cpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let pcpu = s["precpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let sys = s["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let psys = s["precpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let ncpu = s["cpu_stats"]["online_cpus"].as_f64().unwrap_or(1.0);
    let cpu_pct = if sys - psys > 0.0 && cpu - pcpu > 0.0 { (cpu - pcpu) / (sys - psys) * ncpu * 100.0 } else { 0.0 };
    let mem = s["memory_stats"]["usage"].as_f64().unwrap_or(0.0);
    let limit = s["memory_stats"]["limit"].as_f64().unwrap_or(0.0);
    let id = s["id"].as_str().unwrap_or("");
    json!({
        "ID": id.chars().take(12).collect::<String>(),
        "Container": id.chars().take(12).collect::<String>(),
        "Name": s["name"].as_str().unwrap_or("").trim_start_matches('/'),
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", format::bytes_size(mem), format::bytes_size(limit)),
        "MemPerc": format!("{:.2}%", if limit > 0.0 { mem / limit * 100.0 } else { 0.0 }),
        "NetIO": "0B / 0B",
        "BlockIO": "0B / 0B",
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

pub async fn stats(c: &Client, a: StatsArgs) -> Result<()> {
    let names: Vec<String> = if a.containers.is_empty() {
        c.get(&format!("/containers/json?all={}", a.all as u8))
            .await?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["Id"].as_str().map(String::from))
            .collect()
    } else {
        a.containers.clone()
    };
    loop {
        let mut rows = Vec::new();
        for n in &names {
            let v = c.get(&format!("/containers/{n}/stats?stream=0")).await?;
            rows.push(stats_row(&v));
        }
        if let Some(f) = &a.format {
            print!("{}", Template::parse(f)?.render_all(&rows)?);
        } else {
            let mut t = vec![["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"].iter().map(|s| s.to_string()).collect::<Vec<_>>()];
            for r in &rows {
                t.push(["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"].iter().map(|k| r[*k].as_str().unwrap_or("").to_string()).collect());
            }
            if !a.no_stream {
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", format::table(&t));
        }
        if a.no_stream {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

pub async fn attach(c: &Client, a: AttachArgs) -> Result<()> {
    let info = c.get(&format!("/containers/{}/json", a.container)).await?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        eprintln!("You cannot attach to a stopped container, start it first");
        return Err(Exit(1).into());
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let id = info["Id"].as_str().unwrap_or("").to_string();
    let conn = c.hijack(&format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1&stdin={}", stdin as u8), None).await?;
    let raw = if tty && stdin { RawTerminal::enter().ok() } else { None };
    pump(conn, stdin, tty).await?;
    drop(raw);
    let v = c.get(&format!("/containers/{id}/json")).await?;
    if !v["State"]["Running"].as_bool().unwrap_or(true) {
        let code = v["State"]["ExitCode"].as_i64().unwrap_or(0);
        if code != 0 {
            return Err(Exit(code as i32).into());
        }
    }
    Ok(())
}

pub async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")? {
        return Ok(());
    }
    let q = if a.filter.is_empty() { String::new() } else { format!("?filters={}", filters_json(&a.filter)?) };
    let v = c.post(&format!("/containers/prune{q}"), None).await?;
    let ids: Vec<&str> = v["ContainersDeleted"].as_array().into_iter().flatten().filter_map(|x| x.as_str()).collect();
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for i in ids {
            println!("{i}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", format::human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0)));
    Ok(())
}

pub fn confirm(prompt: &str) -> Result<bool> {
    eprint!("{prompt}");
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(matches!(s.trim(), "y" | "Y" | "yes"))
}

pub async fn events(c: &Client, a: EventsArgs) -> Result<()> {
    let mut q = vec![];
    if !a.filter.is_empty() {
        q.push(format!("filters={}", filters_json(&a.filter)?));
    }
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", super::run::urlenc(v)));
        }
    }
    let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    let resp = c.request(Method::GET, &format!("/events{q}"), crate::client::empty(), None).await?;
    let t = match a.format.as_deref() {
        Some(f) if f != "json" => Some(Template::parse(f)?),
        _ => None,
    };
    let json_fmt = a.format.as_deref() == Some("json");
    for_each_json(resp, |ev| {
        if json_fmt {
            println!("{ev}");
        } else if let Some(t) = &t {
            println!("{}", t.render(&ev)?);
        } else {
            let nanos = ev["timeNano"].as_i64().unwrap_or(0);
            let ts = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
                .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string())
                .unwrap_or_default();
            let mut attrs: Vec<String> = ev["Actor"]["Attributes"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            attrs.sort();
            println!("{ts} {} {} {} ({})", ev["Type"].as_str().unwrap_or(""), ev["Action"].as_str().unwrap_or(""), ev["Actor"]["ID"].as_str().unwrap_or(""), attrs.join(", "));
        }
        std::io::stdout().flush()?;
        Ok(())
    })
    .await
}
