//! `cp`, `diff`, `export`, `commit`.

use super::Exit;
use crate::client::{for_each_chunk, Client};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use clap::Args;
use hyper::Method;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    pub quiet: bool,
    pub src: String,
    pub dest: String,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    pub reference: Option<String>,
}

fn split_container(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

async fn stat(c: &Client, container: &str, path: &str) -> Result<Option<serde_json::Value>> {
    let resp = c.request(Method::HEAD, &format!("/containers/{container}/archive?path={}", super::run::urlenc(path)), crate::client::empty(), None).await;
    match resp {
        Ok(r) => {
            let h = r.headers().get("X-Docker-Container-Path-Stat").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let bytes = base64::engine::general_purpose::STANDARD.decode(h).unwrap_or_default();
            Ok(serde_json::from_slice(&bytes).ok())
        }
        Err(e) => {
            if e.downcast_ref::<crate::client::DaemonError>().is_some_and(|d| d.status == 404) {
                let m = e.to_string();
                if m.contains("No such container") {
                    return Err(e);
                }
                return Ok(None);
            }
            Err(e)
        }
    }
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<()> {
    match (split_container(&a.src), split_container(&a.dest)) {
        (Some((ctr, path)), None) => copy_from(c, ctr, path, &a.dest).await,
        (None, Some((ctr, path))) => copy_to(c, &a.src, ctr, path).await,
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

async fn copy_from(c: &Client, ctr: &str, path: &str, dest: &str) -> Result<()> {
    let path = if path.is_empty() { "/" } else { path };
    let resp = c.request(Method::GET, &format!("/containers/{ctr}/archive?path={}", super::run::urlenc(path)), crate::client::empty(), None).await?;
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        return for_each_chunk(resp, |d| Ok(out.write_all(d)?)).await;
    }
    let dest_path = PathBuf::from(dest);
    let into_dir = dest_path.is_dir();
    if !into_dir && dest.ends_with('/') {
        bail!("destination directory {dest} does not exist");
    }
    let parent = if into_dir { dest_path.clone() } else { dest_path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }).unwrap_or(Path::new(".")).to_path_buf() };
    if !parent.is_dir() {
        bail!("destination directory {} does not exist", parent.display());
    }
    let tmp = parent.join(format!(".berth-cp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = async {
        let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(16);
        let tmp2 = tmp.clone();
        let extractor = std::thread::spawn(move || -> Result<()> {
            let reader = ChanReader { rx, cur: bytes::Bytes::new() };
            let opts = berth_archive::ApplyOptions { whiteouts: berth_archive::WhiteoutMode::Remove, same_owner: nix::unistd::geteuid().is_root(), ..Default::default() };
            berth_archive::apply_layer(&tmp2, reader, &opts).map_err(|e| anyhow!("{e}"))?;
            Ok(())
        });
        let r = for_each_chunk(resp, |d| {
            tx.send(bytes::Bytes::copy_from_slice(d)).map_err(|_| anyhow!("extract stopped"))?;
            Ok(())
        })
        .await;
        drop(tx);
        extractor.join().map_err(|_| anyhow!("extract thread panicked"))??;
        r?;
        // The archive has one top-level entry (named by the source's last component).
        let entry = std::fs::read_dir(&tmp)?.next().transpose()?.map(|e| e.path());
        let Some(entry) = entry else { return Ok(()) };
        let target = if into_dir { dest_path.join(entry.file_name().unwrap_or_default()) } else { dest_path.clone() };
        if target.is_dir() && entry.is_dir() {
            // merge: move children
            for e in std::fs::read_dir(&entry)? {
                let e = e?;
                let t = target.join(e.file_name());
                if t.is_dir() && !t.is_symlink() {
                    let _ = std::fs::remove_dir_all(&t);
                }
                std::fs::rename(e.path(), t)?;
            }
        } else {
            if target.is_dir() && !target.is_symlink() {
                bail!("cannot overwrite directory {} with non-directory", target.display());
            }
            std::fs::rename(&entry, &target)?;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

struct ChanReader {
    rx: std::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}
impl std::io::Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.cur = b,
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

async fn copy_to(c: &Client, src: &str, ctr: &str, path: &str) -> Result<()> {
    let st = stat(c, ctr, path).await?;
    let dest_is_dir = st.as_ref().and_then(|s| s["mode"].as_u64()).is_some_and(|m| m & (1 << 31) != 0);
    let (extract_dir, name) = if dest_is_dir {
        (path.to_string(), None)
    } else {
        if path.ends_with('/') {
            bail!("destination directory {ctr}:{path} does not exist");
        }
        let p = Path::new(path);
        let parent = p.parent().map(|x| x.display().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "/".into());
        (parent, Some(p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()))
    };
    let body = if src == "-" {
        crate::client::reader_body(std::io::stdin())
    } else {
        let sp = Path::new(src);
        let md = std::fs::symlink_metadata(sp).with_context(|| format!("stat {src}"))?;
        let _ = md;
        let abs = std::fs::canonicalize(sp.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
        let base = sp.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        let name = if src.ends_with("/.") { Some(".".to_string()) } else { name.or_else(|| Some(base.display().to_string())) };
        let src_rel = if src.ends_with("/.") { PathBuf::from(src.trim_end_matches("/.")).file_name().map(PathBuf::from).unwrap_or_default() } else { base };
        let (r, w) = std::io::pipe()?;
        std::thread::spawn(move || {
            let opts = berth_archive::PackOptions { src: Some(src_rel), name, ..Default::default() };
            if let Err(e) = berth_archive::pack(&abs, w, &opts) {
                eprintln!("berth cp: {e}");
            }
        });
        crate::client::reader_body(r)
    };
    c.request(Method::PUT, &format!("/containers/{ctr}/archive?path={}", super::run::urlenc(&extract_dir)), body, Some("application/x-tar")).await?;
    Ok(())
}

pub async fn diff(c: &Client, container: &str) -> Result<()> {
    let v = c.get(&format!("/containers/{container}/changes")).await?;
    for ch in v.as_array().into_iter().flatten() {
        let k = match ch["Kind"].as_u64() {
            Some(0) => "C",
            Some(1) => "A",
            _ => "D",
        };
        println!("{k} {}", ch["Path"].as_str().unwrap_or(""));
    }
    Ok(())
}

pub async fn export(c: &Client, a: ExportArgs) -> Result<()> {
    if a.output.is_none() && nix::unistd::isatty(std::io::stdout()).unwrap_or(false) {
        eprintln!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return Err(Exit(1).into());
    }
    let resp = c.request(Method::GET, &format!("/containers/{}/export", a.container), crate::client::empty(), None).await?;
    match &a.output {
        Some(p) => {
            let tmp = format!("{p}.tmp{}", std::process::id());
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let r = for_each_chunk(resp, |d| Ok(f.write_all(d)?)).await;
            f.flush()?;
            drop(f);
            match r {
                Ok(()) => std::fs::rename(&tmp, p)?,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for_each_chunk(resp, |d| Ok(out.write_all(d)?)).await?;
        }
    }
    Ok(())
}

pub async fn commit(c: &Client, a: CommitArgs) -> Result<()> {
    let mut q = format!("?container={}&pause={}", super::run::urlenc(&a.container), a.pause as u8);
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rsplit_once(':') {
            Some((rp, t)) if !t.contains('/') => (rp.to_string(), t.to_string()),
            _ => (r.clone(), String::new()),
        };
        q.push_str(&format!("&repo={}&tag={}", super::run::urlenc(&repo), super::run::urlenc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", super::run::urlenc(m)));
    }
    if let Some(au) = &a.author {
        q.push_str(&format!("&author={}", super::run::urlenc(au)));
    }
    if !a.change.is_empty() {
        q.push_str(&format!("&changes={}", super::run::urlenc(&a.change.join("\n"))));
    }
    let v = c.post(&format!("/commit{q}"), None).await?;
    println!("{}", v["Id"].as_str().unwrap_or(""));
    Ok(())
}
