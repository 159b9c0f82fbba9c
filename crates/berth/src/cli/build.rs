//! `berth build` / `image build` / `buildx build` and `builder prune`.
//!
//! A directory context on the daemon's host is passed by path (`berthcontext=`), so the
//! daemon reads it in place and its file hash memo makes unchanged rebuilds cheap; the
//! Dockerfile travels in the request body. With `BERTH_BUILD_SEND_CONTEXT=1` (or a remote
//! daemon) the CLI tars the context itself, honouring `.dockerignore`, and streams it, like
//! Docker's CLI does. A context of `-` is a tar (or a lone Dockerfile) on stdin.
//!
//! Output: plain Docker lines (`Step 1/5 : ...`) when not on a terminal or with
//! `--progress plain`; on a terminal a per-step view with timings.

use super::Exit;
use crate::client::{for_each_json, reader_body, Client};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hyper::Method;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"); "-" reads it from stdin
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Set type of progress output (auto, plain, tty)
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Remove intermediate containers after a successful build (always)
    #[arg(long, hide = true, default_value_t = true)]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long, hide = true)]
    pub force_rm: bool,
    /// Build context: a directory, or "-" for a tar or Dockerfile on stdin
    pub context: String,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `builder prune`.
pub async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force && std::io::stdin().is_terminal() {
        print!("WARNING! This will remove all dangling build cache.\nAre you sure you want to continue? [y/N] ");
        std::io::stdout().flush()?;
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        if !matches!(s.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let v = c.post("/build/prune", None).await?;
    if let Some(ids) = v["CachesDeleted"].as_array() {
        if !ids.is_empty() {
            println!("Deleted build cache objects:");
            for id in ids {
                println!("{}", id.as_str().unwrap_or(""));
            }
            println!();
        }
    }
    println!("Total reclaimed space: {}", super::format::human_size(v["SpaceReclaimed"].as_u64().unwrap_or(0) as f64));
    Ok(())
}

fn urlenc(s: &str) -> String {
    super::run::urlenc(s)
}

/// Tars `dir` (honouring `ignore`, always keeping the Dockerfile and .dockerignore) into `w`.
fn tar_context(dir: &Path, ignore: &berth_dockerfile::IgnoreMatcher, keep: &[String], w: impl Write) -> Result<()> {
    use berth_archive::{EntryType, Header, TarWriter, Timestamp};
    use std::os::unix::fs::MetadataExt;
    let mut tw = TarWriter::new(w);
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() { dir.to_path_buf() } else { dir.join(&rel) };
        let mut names: Vec<String> = std::fs::read_dir(&full)
            .with_context(|| format!("read {}", full.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
            let md = std::fs::symlink_metadata(dir.join(&r))?;
            let ignored = ignore.matches(&r) && !keep.contains(&r);
            if ignored && !(md.is_dir() && ignore.dir_may_contain_exceptions(&r)) {
                continue;
            }
            let mut h = Header {
                name: r.clone().into_bytes(),
                mode: md.mode() & 0o7777,
                uid: md.uid() as u64,
                gid: md.gid() as u64,
                mtime: Timestamp::from_secs(md.mtime()),
                ..Default::default()
            };
            if md.is_dir() {
                if !ignored {
                    h.entry_type = EntryType::Dir;
                    h.name.push(b'/');
                    tw.append(&h, &mut std::io::empty())?;
                }
                subdirs.push(r);
            } else if md.file_type().is_symlink() {
                if !ignored {
                    h.entry_type = EntryType::Symlink;
                    h.link_name = std::fs::read_link(dir.join(&r))?.as_os_str().as_encoded_bytes().to_vec();
                    tw.append(&h, &mut std::io::empty())?;
                }
            } else if md.is_file() && !ignored {
                let f = std::fs::File::open(dir.join(&r))?;
                h.size = md.len();
                tw.append(&h, &mut f.take(md.len()))?;
            }
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    tw.finish()?;
    Ok(())
}

pub async fn build(c: &Client, a: BuildArgs) -> Result<()> {
    let mut q = vec![("rm".to_string(), "1".to_string()), ("forcerm".into(), (a.force_rm as u8).to_string())];
    for t in &a.tags {
        q.push(("t".into(), t.clone()));
    }
    let mut args = serde_json::Map::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => args.insert(k.into(), v.into()),
            None => args.insert(b.clone(), std::env::var(b).map(Into::into).unwrap_or(serde_json::Value::Null)),
        };
    }
    q.push(("buildargs".into(), serde_json::Value::Object(args).to_string()));
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.into(), v.into());
    }
    q.push(("labels".into(), serde_json::Value::Object(labels).to_string()));
    if a.no_cache {
        q.push(("nocache".into(), "1".into()));
    }
    if a.pull {
        q.push(("pull".into(), "1".into()));
    }
    if a.quiet {
        q.push(("q".into(), "1".into()));
    }
    if let Some(t) = &a.target {
        q.push(("target".into(), t.clone()));
    }
    if let Some(n) = &a.network {
        q.push(("networkmode".into(), n.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform".into(), p.clone()));
    }
    let stdin_dockerfile = a.file.as_deref() == Some("-");
    let body = if a.context == "-" {
        if stdin_dockerfile {
            bail!("invalid argument: can't use stdin for both build context and dockerfile");
        }
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        let is_tar = data.len() >= 512 && &data[257..262] == b"ustar" || data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
        if is_tar {
            if let Some(f) = &a.file {
                q.push(("dockerfile".into(), f.clone()));
            }
            crate::client::full(data)
        } else {
            // a lone Dockerfile: wrap it in a one-file tar
            let mut tw = berth_archive::TarWriter::new(Vec::new());
            let h = berth_archive::Header { name: b"Dockerfile".to_vec(), mode: 0o644, size: data.len() as u64, ..Default::default() };
            tw.append(&h, &mut data.as_slice())?;
            crate::client::full(tw.finish()?)
        }
    } else {
        let dir = std::fs::canonicalize(&a.context).with_context(|| format!("unable to prepare context: path {:?} not found", a.context))?;
        if !dir.is_dir() {
            bail!("unable to prepare context: context must be a directory: {}", dir.display());
        }
        // the Dockerfile: its path inside the context (for Dockerfile.dockerignore), and its text
        let (df_rel, df_text) = match a.file.as_deref() {
            Some("-") => {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                (None, s)
            }
            Some(f) => {
                let p = if Path::new(f).is_absolute() { PathBuf::from(f) } else { std::env::current_dir()?.join(f) };
                let p = std::fs::canonicalize(&p).map_err(|_| anyhow!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory", p.display()))?;
                let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
                (p.strip_prefix(&dir).ok().map(|r| r.to_string_lossy().to_string()), text)
            }
            None => {
                let p = dir.join("Dockerfile");
                let text = std::fs::read_to_string(&p).map_err(|_| anyhow!("unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {}: no such file or directory", p.display()))?;
                (Some("Dockerfile".to_string()), text)
            }
        };
        if std::env::var("BERTH_BUILD_SEND_CONTEXT").is_ok_and(|v| v == "1") {
            let df_name = df_rel.clone().unwrap_or_else(|| format!(".dockerfile.{}", std::process::id()));
            q.push(("dockerfile".into(), df_name.clone()));
            let ign_text = std::fs::read_to_string(dir.join(format!("{df_name}.dockerignore")))
                .or_else(|_| std::fs::read_to_string(dir.join(".dockerignore")))
                .unwrap_or_default();
            let ignore = berth_dockerfile::IgnoreMatcher::new(&ign_text).map_err(|e| anyhow!("parse .dockerignore: {e}"))?;
            let keep = vec![df_name.clone(), ".dockerignore".to_string(), format!("{df_name}.dockerignore")];
            let (rd, wr) = std::os::unix::net::UnixStream::pair()?;
            let outside = df_rel.is_none();
            std::thread::spawn(move || {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, wr);
                if outside {
                    // Dockerfile from outside the context (or stdin) goes in under a private name
                    let mut tw = berth_archive::TarWriter::new(&mut w);
                    let h = berth_archive::Header { name: df_name.into_bytes(), mode: 0o644, size: df_text.len() as u64, ..Default::default() };
                    let _ = tw.append(&h, &mut df_text.as_bytes());
                    // no finish: the context entries follow in the same stream
                }
                if let Err(e) = tar_context(&dir, &ignore, &keep, &mut w) {
                    eprintln!("error tarring the build context: {e:#}");
                }
                let _ = w.flush();
            });
            reader_body(rd)
        } else {
            q.push(("berthcontext".into(), dir.display().to_string()));
            if let Some(r) = &df_rel {
                q.push(("dockerfile".into(), r.clone()));
            }
            crate::client::full(df_text.into_bytes())
        }
    };
    let query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", urlenc(v))).collect();
    let path = format!("/build?{}", query.join("&"));
    let resp = c.request(Method::POST, &path, body, Some("application/x-tar")).await?;
    let tty = match a.progress.as_str() {
        "plain" => false,
        "tty" => true,
        _ => std::io::stdout().is_terminal(),
    };
    let mut view = View::new(tty && !a.quiet);
    let mut id = None;
    let mut err: Option<(String, i64)> = None;
    for_each_json(resp, |v| {
        if let Some(e) = v["error"].as_str() {
            let code = v["errorDetail"]["code"].as_i64().unwrap_or(1);
            err = Some((e.to_string(), code));
        } else if let Some(i) = v["aux"]["ID"].as_str() {
            id = Some(i.to_string());
        } else if let Some(s) = v["stream"].as_str() {
            if !a.quiet {
                view.show(s);
            }
        }
        Ok(())
    })
    .await?;
    view.finish();
    if let Some((e, code)) = err {
        eprintln!("{e}");
        return Err(Exit(if code == 0 { 1 } else { code as i32 }).into());
    }
    let id = id.ok_or_else(|| anyhow!("the daemon did not report an image id"))?;
    if a.quiet {
        println!("{id}");
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &id).with_context(|| format!("write iidfile {}", p.display()))?;
    }
    Ok(())
}

/// Renders the stream: plain text, or a per-step view with timings on a terminal.
struct View {
    tty: bool,
    /// The current step's header is on the screen without a newline (no output yet).
    header_open: bool,
    step_started: Option<(String, Instant)>,
    started: Instant,
    pending: String,
}

impl View {
    fn new(tty: bool) -> Self {
        Self { tty, header_open: false, step_started: None, started: Instant::now(), pending: String::new() }
    }

    fn close_step(&mut self) {
        if let Some((name, t)) = self.step_started.take() {
            let lead = if self.header_open { "\r\x1b[2K" } else { "" };
            println!("{lead}\x1b[34m => {name}\x1b[0m \x1b[2m{:.1}s\x1b[0m", t.elapsed().as_secs_f64());
        }
        self.header_open = false;
    }

    fn show(&mut self, s: &str) {
        if !self.tty {
            print!("{s}");
            let _ = std::io::stdout().flush();
            return;
        }
        self.pending.push_str(s);
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            let line = line.trim_end_matches('\n');
            if let Some(rest) = line.strip_prefix("Step ") {
                self.close_step();
                let label = match rest.split_once(" : ") {
                    Some((n, text)) => format!("[{n}] {text}"),
                    None => rest.to_string(),
                };
                print!("\x1b[1m => {label}\x1b[0m");
                let _ = std::io::stdout().flush();
                self.header_open = true;
                self.step_started = Some((label, Instant::now()));
            } else if line == " ---> Using cache" {
                if let Some((name, _)) = &mut self.step_started {
                    name.push_str(" \x1b[32mCACHED\x1b[0m");
                }
            } else if line.starts_with(" ---> ") {
            } else if line.starts_with("Successfully ") {
                self.close_step();
                println!("{line}");
            } else {
                // step output, dimmed and indented; its own control sequences are dropped so
                // a hostile step cannot repaint the terminal
                let clean: String = line.chars().filter(|c| !c.is_control() || *c == '\t').collect();
                if self.header_open {
                    println!();
                    self.header_open = false;
                }
                println!("\x1b[2m    {clean}\x1b[0m");
            }
        }
    }

    fn finish(&mut self) {
        if self.tty {
            self.close_step();
            if !self.pending.is_empty() {
                println!("{}", self.pending);
            }
            println!("\x1b[2mBuild finished in {:.1}s\x1b[0m", self.started.elapsed().as_secs_f64());
        }
    }
}

/// `berth builder ...`.
#[derive(clap::Subcommand, Debug)]
pub enum BuilderCmd {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Remove build cache
    Prune(PruneArgs),
}

/// `berth buildx ...` (the subset the classic builder offers).
#[derive(clap::Subcommand, Debug)]
pub enum BuildxCmd {
    /// Start a build
    #[command(alias = "b")]
    Build(Box<BuildArgs>),
    /// Remove build cache
    Prune(PruneArgs),
}
