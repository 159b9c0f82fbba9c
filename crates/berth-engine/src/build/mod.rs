//! The image builder behind `berth build` and `POST /build`.
//!
//! # Design
//!
//! BuildKit's shape, scaled to one process: the Dockerfile is parsed by `berth-dockerfile`
//! (pure, no I/O), the stages the target needs are found from the stage graph, and each
//! stage is solved instruction by instruction against a **content-addressed cache**:
//!
//! * every step has a key: `sha256(parent key, the instruction after variable expansion,
//!   and for COPY/ADD the hash of the files it reads)`. A stage starts from the base
//!   image's id (or the key of the stage it builds on). Metadata instructions fold into the
//!   key too, so ENV/ARG values seen by a later RUN are covered. File contents are hashed,
//!   not their mtimes; a per-file memo keyed by (path, size, mtime, ctime, inode) avoids
//!   re-reading unchanged files, and large COPYs hash in parallel.
//! * records (`key → layer, history time`) are JSON files under `<data-root>/build-cache/`
//!   written atomically ([`cache`]), so the cache survives daemon restarts. Reusing the
//!   first build's history timestamps makes a fully cached rebuild produce the same image id.
//! * the executor is narrow ([`exec`]): a RUN step is a container made by the same runtime
//!   and shim as `docker run` (overlay of the parent layers + a fresh upper), its upper
//!   directory packed as the layer (`berth_archive::pack` with overlay whiteouts). COPY/ADD
//!   mount the same overlay in the daemon and write through descriptors resolved in-root
//!   ([`context`]); sources are resolved inside the context (`COPY ../x` and symlinks
//!   pointing outside are refused or contained). Empty diffs give no layer (BuildKit's
//!   `empty_layer` history).
//! * independent stages build in parallel: each needed stage gets a thread that starts as
//!   soon as the stages it depends on (base, `COPY --from`, `--mount=from`) are done.
//! * `RUN --network=default` uses the host network until bridges land (DESIGN says the
//!   default build network will be a bridge); `--network=none` gets a fresh netns.
//!
//! Output follows Docker's classic builder stream (`Step 1/5 : FROM busybox`,
//! ` ---> Using cache`, `Successfully built ...`), as [`BuildMessage`]s the API server turns
//! into JSON lines. Errors name the Dockerfile, line and instruction
//! (`Dockerfile:7: COPY failed: ...`).
//!
//! # API
//!
//! ```no_run
//! # fn demo(eng: std::sync::Arc<berth_engine::Engine>) -> Result<(), berth_engine::build::BuildError> {
//! use berth_engine::build::{BuildMessage, BuildOptions};
//! let opts = BuildOptions { tags: vec!["app:dev".into()], ..BuildOptions::default() };
//! let out = eng.build(std::path::Path::new("/src/app"), &opts, &|m: BuildMessage| {
//!     if let BuildMessage::Stream(s) = m { print!("{s}") }
//! })?;
//! println!("built {} ({} of {} steps cached)", out.id, out.cached_steps, out.steps);
//! # Ok(()) }
//! ```

pub mod cache;
pub mod context;
pub mod exec;

use crate::digest::Digest;
use crate::image::{host_arch, layer_key, now_rfc3339, ConfigFile, History, LayerRecord, RootFs};
use crate::{Engine, EngineError, ErrorKind};
use berth_dockerfile::{
    Dockerfile, EffectiveCommand, IgnoreMatcher, Instruction, InstructionKind, MountType, NetworkMode, SourceRef, StageScope,
};
use bollard::models::{HealthConfig, ImageConfig};
use cache::{BuildCache, CacheRecord};
use context::{ItemKind, SourceTree};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Coarse class of a [`BuildError`] (the API picks the HTTP status or stream error from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildErrorKind {
    /// The Dockerfile, an option or a source is invalid (400).
    InvalidInput,
    /// An image, stage, or source file is missing (404).
    NotFound,
    /// A RUN step exited non-zero.
    StepFailed,
    /// A host failure.
    Internal,
}

/// A build failure, Docker-worded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    kind: BuildErrorKind,
    message: String,
    /// Exit code of a failed RUN.
    pub code: Option<i64>,
}

impl BuildError {
    pub fn new(kind: BuildErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), code: None }
    }
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    fn at(mut self, file: &str, line: usize, prefix: &str) -> Self {
        if !self.message.starts_with(&format!("{file}:")) {
            self.message = format!("{file}:{line}: {prefix}{}", self.message);
        }
        self
    }
}

impl From<EngineError> for BuildError {
    fn from(e: EngineError) -> Self {
        let kind = match e.kind() {
            ErrorKind::NotFound => BuildErrorKind::NotFound,
            ErrorKind::InvalidArgument | ErrorKind::Conflict | ErrorKind::Forbidden => BuildErrorKind::InvalidInput,
            _ => BuildErrorKind::Internal,
        };
        BuildError::new(kind, e.message())
    }
}

impl From<berth_dockerfile::ParseError> for BuildError {
    fn from(e: berth_dockerfile::ParseError) -> Self {
        BuildError::new(BuildErrorKind::InvalidInput, e.to_string())
    }
}

impl From<berth_dockerfile::ExpandError> for BuildError {
    fn from(e: berth_dockerfile::ExpandError) -> Self {
        BuildError::new(BuildErrorKind::InvalidInput, e.to_string())
    }
}

impl From<berth_archive::ArchiveError> for BuildError {
    fn from(e: berth_archive::ArchiveError) -> Self {
        BuildError::new(BuildErrorKind::InvalidInput, e.to_string())
    }
}

/// One message of the build's output stream.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildMessage {
    /// Text for the user (`{"stream": ...}`).
    Stream(String),
    /// Structured data (`{"aux": ...}`), e.g. `{"ID": "sha256:..."}`.
    Aux(serde_json::Value),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Path of the Dockerfile inside the context (`Dockerfile` by default).
    pub dockerfile: String,
    /// Dockerfile text given directly (`-f -` with a directory context); wins over `dockerfile`.
    pub dockerfile_text: Option<String>,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub no_cache: bool,
    /// Pull base images even when present (`--pull`).
    pub pull: bool,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `networkmode`: `default`, `host` or `none` for RUN steps without `--network`.
    pub network: String,
    /// Only print the image id at the end (`-q`).
    pub quiet: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            dockerfile: "Dockerfile".into(),
            dockerfile_text: None,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            no_cache: false,
            pull: false,
            target: None,
            labels: BTreeMap::new(),
            network: "default".into(),
            quiet: false,
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    pub id: Digest,
    pub tags: Vec<String>,
    pub steps: usize,
    pub cached_steps: usize,
}

/// The state of a stage being built.
#[derive(Clone)]
struct StageState {
    config: ConfigFile,
    layers: Vec<LayerRecord>,
    key: String,
    /// CMD set in this stage (ENTRYPOINT then keeps it).
    cmd_set: bool,
}

impl StageState {
    fn img(&mut self) -> &mut ImageConfig {
        self.config.config.get_or_insert_with(ImageConfig::default)
    }
    fn parent_chain(&self) -> Option<Digest> {
        self.layers.last().map(|l| l.chain_id.clone())
    }
    fn shell(&self) -> Vec<String> {
        self.config.config.as_ref().and_then(|c| c.shell.clone()).unwrap_or_default()
    }
}

/// The `PATH` Docker gives images that have none.
const DEFAULT_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn hash_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

struct Builder<'a> {
    eng: &'a Arc<Engine>,
    df: Dockerfile,
    file_name: String,
    opts: &'a BuildOptions,
    cache: BuildCache,
    ctx: SourceTree,
    tmp: PathBuf,
    out: &'a (dyn Fn(BuildMessage) + Sync),
    step: std::sync::atomic::AtomicUsize,
    total: usize,
    cached: std::sync::atomic::AtomicUsize,
    results: std::sync::Mutex<HashMap<usize, StageState>>,
    /// The daemon's async runtime (pulls, ADD URLs), captured on the calling thread since
    /// stage threads are not inside it.
    rt: Option<tokio::runtime::Handle>,
    /// Active snapshots on top of finished stages, so an image GC running meanwhile keeps
    /// their layers (a snapshot with children is never collected); removed at the end.
    holds: std::sync::Mutex<Vec<String>>,
    /// Layer blobs pinned against GC until the image is committed.
    pinned: std::sync::Mutex<Vec<Digest>>,
}

impl Engine {
    /// Builds the Dockerfile in `context` (a directory) and tags the result.
    pub fn build(
        self: &Arc<Self>,
        context: &Path,
        opts: &BuildOptions,
        out: &(dyn Fn(BuildMessage) + Sync),
    ) -> Result<BuildOutcome, BuildError> {
        let inval = |m: String| BuildError::new(BuildErrorKind::InvalidInput, m);
        for t in &opts.tags {
            crate::reference::Reference::parse_tagged(t).map_err(|e| inval(format!("invalid tag {t:?}: {e}")))?;
        }
        let file_name = Path::new(&opts.dockerfile).file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or("Dockerfile".into());
        let text = match &opts.dockerfile_text {
            Some(t) => t.clone(),
            None => read_in_root(context, &opts.dockerfile).map_err(|_| {
                BuildError::new(
                    BuildErrorKind::NotFound,
                    format!("Cannot locate specified Dockerfile: {}", opts.dockerfile),
                )
            })?,
        };
        let df = berth_dockerfile::parse(&text).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.strip_prefix("Dockerfile:").map(|r| format!("{file_name}:{r}")).unwrap_or(msg);
            BuildError::new(BuildErrorKind::InvalidInput, msg)
        })?;
        // .dockerignore: <Dockerfile>.dockerignore next to the Dockerfile wins.
        let custom = format!("{}.dockerignore", opts.dockerfile);
        let ignore_text = read_in_root(context, &custom).or_else(|_| read_in_root(context, ".dockerignore")).unwrap_or_default();
        let ignore = IgnoreMatcher::new(&ignore_text).map_err(|e| inval(format!(".dockerignore: {e}")))?;
        let cache = BuildCache::open(&self.config.data_root)?;
        let _running = RunningBuild::enter(self);
        // contexts unpacked from an API body are new files every time: no memo for them
        let use_memo = !context.starts_with(self.config.data_root.join("build-tmp"));
        let memo = if use_memo { cache.load_memo() } else { HashMap::new() };
        let ctx = SourceTree::open(context, Some(ignore), true, memo)?;
        let tmp = self.config.data_root.join("build-tmp").join(hex::encode(rand::random::<[u8; 8]>()));
        std::fs::create_dir_all(tmp.join("empty")).map_err(|e| BuildError::new(BuildErrorKind::Internal, format!("create build dir: {e}")))?;
        let mut b = Builder {
            eng: self,
            df,
            file_name,
            opts,
            cache,
            ctx,
            tmp: tmp.clone(),
            out,
            step: Default::default(),
            total: 0,
            cached: Default::default(),
            results: Default::default(),
            rt: tokio::runtime::Handle::try_current().ok(),
            holds: Default::default(),
            pinned: Default::default(),
        };
        let res = b.run();
        for h in b.holds.lock().map(|h| h.clone()).unwrap_or_default() {
            let _ = self.snapshots.remove(&h);
        }
        for d in b.pinned.lock().map(|p| p.clone()).unwrap_or_default() {
            self.unpin(&d);
        }
        if let Some(m) = b.ctx.take_memo().filter(|_| use_memo) {
            b.cache.save_memo(&m);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        res
    }

    /// Build cache records for `GET /system/df` (`BuildCache` entries in Docker's shape).
    pub fn build_cache_usage(&self) -> Vec<serde_json::Value> {
        let Ok(cache) = BuildCache::open(&self.config.data_root) else { return Vec::new() };
        cache
            .list()
            .into_iter()
            .map(|(key, rec)| {
                let size = rec
                    .layer
                    .as_ref()
                    .and_then(|l| self.snapshots.get(&layer_key(&l.chain_id)).ok().flatten())
                    .map(|s| s.size)
                    .unwrap_or(0);
                serde_json::json!({
                    "ID": &key[..key.len().min(25)],
                    "Parents": null,
                    "Type": if rec.layer.is_some() { "regular" } else { "frontend" },
                    "Description": rec.description,
                    "InUse": false,
                    "Shared": false,
                    "Size": size,
                    "CreatedAt": rec.created,
                    "LastUsedAt": if rec.last_used.is_empty() { rec.created.clone() } else { rec.last_used.clone() },
                    "UsageCount": 1,
                })
            })
            .collect()
    }

    /// `builder prune`: drop every cache record and collect layers no image uses. Returns
    /// the removed record ids and the bytes reclaimed.
    pub fn prune_build_cache(&self) -> Result<(Vec<String>, u64), BuildError> {
        let cache = BuildCache::open(&self.config.data_root)?;
        let ids: Vec<String> = cache.list().into_iter().map(|(k, _)| k[..k.len().min(25)].to_string()).collect();
        cache.clear();
        let freed = self.gc_images()?;
        let _ = std::fs::remove_dir_all(self.config.data_root.join("build-cache").join("mounts"));
        let _ = std::fs::remove_dir_all(self.config.data_root.join("build-logs"));
        Ok((ids, freed))
    }
}

/// Counts builds in progress; the first one to start cleans what a crashed daemon left
/// behind (work snapshots `build:*`, mounts and temp dirs under `<data-root>/build-tmp`).
struct RunningBuild;

static RUNNING_BUILDS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl RunningBuild {
    fn enter(eng: &Engine) -> RunningBuild {
        if let Ok(mut n) = RUNNING_BUILDS.lock() {
            if *n == 0 {
                cleanup_leftovers(eng);
            }
            *n += 1;
        }
        RunningBuild
    }
}

impl Drop for RunningBuild {
    fn drop(&mut self) {
        if let Ok(mut n) = RUNNING_BUILDS.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

pub(crate) fn cleanup_leftovers(eng: &Engine) {
    // RUN containers of a build the daemon did not see finish
    if let Ok(rd) = std::fs::read_dir(eng.config.exec_root.join("build")) {
        for e in rd.flatten() {
            let dir = e.path();
            if let Ok(Some(shim)) = berth_runtime::Shim::connect(&dir) {
                let _ = shim.kill(libc::SIGKILL, true);
                let _ = shim.wait();
            }
            if let Ok(cfg) = berth_runtime::read_config(&dir) {
                let _ = berth_runtime::cleanup(&dir, &cfg);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let tmp = eng.config.data_root.join("build-tmp");
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        let prefix = tmp.display().to_string();
        let mut mps: Vec<&str> = m.lines().filter_map(|l| l.split(' ').nth(4)).filter(|p| p.starts_with(&prefix)).collect();
        mps.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in mps {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            // contexts being received by the API are named ctx-*: leave them
            if !e.file_name().to_string_lossy().starts_with("ctx-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if let Ok(snaps) = eng.snapshots.list() {
        for (k, _) in snaps.iter().filter(|(k, _)| k.starts_with("build:")) {
            tracing::info!(snapshot = %k, "build: removing a leftover work snapshot");
            let _ = eng.snapshots.remove(k);
        }
    }
}

/// Reads a small file inside `root`, resolved in-root.
fn read_in_root(root: &Path, rel: &str) -> Result<String, BuildError> {
    use std::io::Read;
    let fd = berth_archive::open_in_root(root, Path::new(rel.trim_start_matches("./")), berth_archive::OFlags::RDONLY)?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(berth_dockerfile::MAX_DOCKERFILE_SIZE as u64 + 1)
        .read_to_string(&mut s)
        .map_err(|e| BuildError::new(BuildErrorKind::InvalidInput, format!("read {rel}: {e}")))?;
    Ok(s)
}

fn env_pairs(cfg: &ConfigFile) -> Vec<(String, String)> {
    cfg.config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect()
}

impl Builder<'_> {
    fn say(&self, s: impl Into<String>) {
        if !self.opts.quiet {
            (self.out)(BuildMessage::Stream(s.into()));
        }
    }

    fn run(&mut self) -> Result<BuildOutcome, BuildError> {
        let mut scope = berth_dockerfile::ScopeState::new(self.opts.build_args.clone());
        for (k, v) in [("TARGETOS", "linux"), ("TARGETARCH", host_arch()), ("BUILDOS", "linux"), ("BUILDARCH", host_arch())] {
            scope.set_meta(k, Some(v.to_string()));
        }
        scope.set_meta("TARGETPLATFORM", Some(format!("linux/{}", host_arch())));
        scope.set_meta("BUILDPLATFORM", Some(format!("linux/{}", host_arch())));
        let decls: Vec<_> = self.df.meta_arg_decls().cloned().collect();
        for d in &decls {
            scope.declare_meta_arg(&d.name, d.default.as_deref(), self.df.escape)?;
        }
        let target = match &self.opts.target {
            Some(t) if !t.is_empty() => self
                .df
                .stage_index(t)
                .ok_or_else(|| BuildError::new(BuildErrorKind::InvalidInput, format!("failed to reach build target {t} in Dockerfile")))?,
            _ => self.df.stages.len().saturating_sub(1),
        };
        // stages the target needs
        let mut bases = Vec::new();
        for (i, s) in self.df.stages.iter().enumerate() {
            bases.push(scope.expand_from(&s.base, self.df.escape).map_err(|e| {
                BuildError::new(BuildErrorKind::InvalidInput, format!("{}:{}: FROM: {e}", self.file_name, s.start_line))
            })?);
            let _ = i;
        }
        let mut needed = vec![false; self.df.stages.len()];
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if needed[i] {
                continue;
            }
            needed[i] = true;
            for d in self.df.stage_dependencies(i, &bases[i])? {
                stack.push(d);
            }
        }
        self.total = (0..self.df.stages.len()).filter(|&i| needed[i]).map(|i| 1 + self.df.stages[i].instructions.len()).sum();
        let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in (0..self.df.stages.len()).filter(|&i| needed[i]) {
            deps.insert(i, self.df.stage_dependencies(i, &bases[i])?);
        }
        let last = self.build_stages(target, &needed, &deps, &bases, &scope)?;
        let mut st = last;
        if !self.opts.labels.is_empty() {
            let labels = st.img().labels.get_or_insert_with(Default::default);
            for (k, v) in &self.opts.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        if let Some(h) = st.config.history.last() {
            st.config.created = h.created.clone();
        }
        let img = self.eng.commit_image(&st.config, st.layers.clone(), None)?;
        (self.out)(BuildMessage::Aux(serde_json::json!({ "ID": img.id.as_str() })));
        self.say(format!("Successfully built {}\n", &img.id.hex()[..12]));
        let mut tags = Vec::new();
        for t in &self.opts.tags {
            self.eng.tag_image(&img.id, t)?;
            let r = crate::reference::Reference::parse_tagged(t)?;
            let fam = format!("{}:{}", r.familiar_name(), r.tag_or_latest());
            self.say(format!("Successfully tagged {fam}\n"));
            tags.push(fam);
        }
        self.eng.events.emit("image", "build", img.id.as_str(), &[]);
        Ok(BuildOutcome {
            id: img.id,
            tags,
            steps: self.total,
            cached_steps: self.cached.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Builds the needed stages, each on its own thread as soon as the stages it depends on
    /// are done (independent stages run in parallel). Returns the target's state.
    fn build_stages(
        &self,
        target: usize,
        needed: &[bool],
        deps: &HashMap<usize, Vec<usize>>,
        bases: &[String],
        scope: &berth_dockerfile::ScopeState,
    ) -> Result<StageState, BuildError> {
        let failed: std::sync::Mutex<Option<BuildError>> = std::sync::Mutex::new(None);
        let done = std::sync::Condvar::new();
        let wait_for = |ds: &[usize]| -> bool {
            let mut guard = match self.results.lock() {
                Ok(g) => g,
                Err(_) => return false,
            };
            loop {
                if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return false;
                }
                if ds.iter().all(|d| guard.contains_key(d)) {
                    return true;
                }
                guard = match done.wait_timeout(guard, std::time::Duration::from_millis(200)) {
                    Ok((g, _)) => g,
                    Err(_) => return false,
                };
            }
        };
        std::thread::scope(|s| {
            for i in (0..needed.len()).filter(|&i| needed[i]) {
                let ds = deps.get(&i).cloned().unwrap_or_default();
                let (failed, done, wait_for) = (&failed, &done, &wait_for);
                s.spawn(move || {
                    if !wait_for(&ds) {
                        return;
                    }
                    match self.build_stage(i, &bases[i], scope) {
                        Ok(st) => {
                            self.hold(&st);
                            if let Ok(mut r) = self.results.lock() {
                                r.insert(i, st);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                        }
                    }
                    done.notify_all();
                });
            }
        });
        if let Some(e) = failed.lock().map_err(|_| internal("lock"))?.take() {
            return Err(e);
        }
        self.results
            .lock()
            .map_err(|_| internal("lock"))?
            .get(&target)
            .cloned()
            .ok_or_else(|| BuildError::new(BuildErrorKind::InvalidInput, "the Dockerfile has no stage"))
    }

    /// Keeps a finished stage's layers from image GC until the build ends.
    fn hold(&self, st: &StageState) {
        let Some(top) = st.parent_chain() else { return };
        let key = format!("build:hold-{}", hex::encode(rand::random::<[u8; 8]>()));
        if self.eng.snapshots.prepare(&key, Some(&layer_key(&top))).is_ok() {
            if let Ok(mut h) = self.holds.lock() {
                h.push(key);
            }
        }
    }

    fn next_step(&self, text: &str) {
        let n = self.step.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.say(format!("Step {n}/{} : {text}\n", self.total));
    }

    /// Resolves an image for FROM or `COPY --from`, pulling it when missing (or with --pull).
    fn image(&self, name: &str, force_pull: bool) -> Result<StageState, BuildError> {
        let found = if force_pull { None } else { self.eng.resolve_image(name).ok() };
        let img = match found {
            Some(i) => i,
            None => {
                self.pull(name)?;
                self.eng.resolve_image(name)?
            }
        };
        let config = self.eng.image_config(&img)?;
        Ok(StageState { config, layers: img.layers.clone(), key: hash_hex(&[b"image", img.id.as_str().as_bytes()]), cmd_set: false })
    }

    fn pull(&self, name: &str) -> Result<(), BuildError> {
        let handle = self.rt.clone().ok_or_else(|| {
            BuildError::new(BuildErrorKind::NotFound, format!("pull access denied for {name}: no such image and no runtime to pull it"))
        })?;
        self.say(format!("Pulling image {name}\n"));
        let eng = self.eng.clone();
        let opts = crate::distribution::PullOptions::default();
        let sink = crate::distribution::no_progress();
        let name2 = name.to_string();
        handle
            .block_on(async move { crate::distribution::pull::pull(eng, &name2, &opts, sink).await })
            .map_err(|e| BuildError::new(BuildErrorKind::NotFound, format!("failed to pull {name}: {e}")))?;
        Ok(())
    }

    fn build_stage(&self, idx: usize, base: &str, scope: &berth_dockerfile::ScopeState) -> Result<StageState, BuildError> {
        let stage = &self.df.stages[idx];
        self.next_step(&stage.original);
        let from_err = |e: BuildError| e.at(&self.file_name, stage.start_line, "FROM: ");
        let mut st = match self.df.resolve_base(idx, base)? {
            SourceRef::Stage(i) => {
                let r = self.results.lock().map_err(|_| internal("lock"))?.get(&i).cloned();
                r.ok_or_else(|| internal(format!("stage {i} was not built")))?
            }
            SourceRef::Scratch => StageState {
                config: ConfigFile {
                    architecture: host_arch().into(),
                    os: "linux".into(),
                    config: Some(ImageConfig {
                        env: Some(vec![DEFAULT_PATH_ENV.into()]),
                        ..Default::default()
                    }),
                    rootfs: RootFs { typ: "layers".into(), diff_ids: vec![] },
                    ..Default::default()
                },
                layers: vec![],
                key: hash_hex(&[b"scratch"]),
                cmd_set: false,
            },
            SourceRef::Image(name) => self.image(&name, self.opts.pull).map_err(from_err)?,
        };
        st.cmd_set = false;
        // like Docker, a base without PATH gets the default one
        let env = st.img().env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH_ENV.to_string());
        }
        self.say(format!(" ---> {}\n", &st.key[..12]));
        let mut sc = scope.stage(&env_pairs(&st.config));
        // ONBUILD triggers of the base image run first, then are cleared.
        let triggers = st.config.config.as_mut().and_then(|c| c.on_build.take()).unwrap_or_default();
        if !triggers.is_empty() {
            self.say(format!("# Executing {} build trigger{}\n", triggers.len(), if triggers.len() == 1 { "" } else { "s" }));
            for t in &triggers {
                let inst = berth_dockerfile::parse_onbuild_trigger(t, stage.start_line)?;
                self.exec(idx, &mut st, &mut sc, &inst)?;
            }
        }
        for inst in &stage.instructions {
            self.next_step(&inst.original);
            self.exec(idx, &mut st, &mut sc, inst)?;
        }
        Ok(st)
    }

    /// Runs one instruction (expanding it first) and updates the stage.
    fn exec(&self, idx: usize, st: &mut StageState, sc: &mut StageScope, inst: &Instruction) -> Result<(), BuildError> {
        let kw = inst.keyword();
        let e = sc.apply(inst, self.df.escape).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.strip_prefix("Dockerfile:").map(|r| format!("{}:{r}", self.file_name)).unwrap_or(msg);
            BuildError::new(BuildErrorKind::InvalidInput, msg)
        })?;
        let prefix = match kw {
            "COPY" | "ADD" => format!("{kw} failed: "),
            _ => String::new(),
        };
        self.exec_expanded(idx, st, sc, &e).map_err(|err| err.at(&self.file_name, inst.start_line, &prefix))
    }

    fn exec_expanded(&self, idx: usize, st: &mut StageState, sc: &mut StageScope, e: &Instruction) -> Result<(), BuildError> {
        let shell = st.shell();
        let created_by = e.created_by(&shell, &sc.history_args());
        let mut key_extra = String::new();
        let mut layer_step: Option<LayerStep> = None;
        match &e.kind {
            InstructionKind::Env(_) => {
                let env: Vec<String> = sc.env().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                st.img().env = Some(env);
            }
            InstructionKind::Label(kvs) => {
                let labels = st.img().labels.get_or_insert_with(Default::default);
                for kv in kvs {
                    labels.insert(kv.key.clone(), kv.value.clone());
                }
            }
            InstructionKind::Maintainer(m) => st.config.author = Some(m.clone()),
            InstructionKind::Expose(ports) => {
                let list = st.img().exposed_ports.get_or_insert_with(Vec::new);
                for p in ports.iter().flat_map(|p| p.split_whitespace()) {
                    let p = if p.contains('/') { p.to_lowercase() } else { format!("{p}/tcp") };
                    if !list.contains(&p) {
                        list.push(p);
                    }
                }
                list.sort();
            }
            InstructionKind::Volume(v) => {
                let list = st.img().volumes.get_or_insert_with(Vec::new);
                for p in v {
                    if p.is_empty() {
                        return Err(BuildError::new(BuildErrorKind::InvalidInput, "VOLUME specified can not be an empty string"));
                    }
                    if !list.contains(p) {
                        list.push(p.clone());
                    }
                }
            }
            InstructionKind::User(u) => st.img().user = Some(u.clone()),
            InstructionKind::Workdir(w) => {
                let cur = st.img().working_dir.clone().unwrap_or_default();
                let next = join_path(if cur.is_empty() { "/" } else { &cur }, w);
                st.img().working_dir = Some(next.clone());
                layer_step = Some(LayerStep::Mkdir(next));
            }
            InstructionKind::Arg(_) => {}
            InstructionKind::Onbuild(o) => st.img().on_build.get_or_insert_with(Vec::new).push(o.expression.clone()),
            InstructionKind::StopSignal(s) => st.img().stop_signal = Some(s.clone()),
            InstructionKind::Healthcheck(h) => {
                st.img().healthcheck = Some(match h {
                    berth_dockerfile::Healthcheck::None => HealthConfig { test: Some(vec!["NONE".into()]), ..Default::default() },
                    berth_dockerfile::Healthcheck::Check(c) => {
                        let d = |d: std::time::Duration| if d.is_zero() { None } else { Some(d.as_nanos() as i64) };
                        HealthConfig {
                            test: Some(c.test.clone()),
                            interval: d(c.interval),
                            timeout: d(c.timeout),
                            start_period: d(c.start_period),
                            start_interval: d(c.start_interval),
                            retries: if c.retries == 0 { None } else { Some(c.retries as i64) },
                        }
                    }
                });
            }
            InstructionKind::Shell(s) => st.img().shell = Some(s.clone()),
            InstructionKind::Cmd(c) => {
                st.img().cmd = Some(with_shell(&shell, &c.args, c.prepend_shell));
                st.cmd_set = true;
            }
            InstructionKind::Entrypoint(c) => {
                let v = if c.args.is_empty() { vec![] } else { with_shell(&shell, &c.args, c.prepend_shell) };
                st.img().entrypoint = Some(v);
                if !st.cmd_set {
                    st.img().cmd = None;
                }
            }
            InstructionKind::Run(r) => {
                // what bind mounts expose is part of the step's input
                for m in r.mounts.iter().filter(|m| m.kind == MountType::Bind) {
                    match &m.from {
                        Some(f) => key_extra.push_str(&self.source_key(idx, f)?.1),
                        None => {
                            let src = m.source.clone().unwrap_or_default();
                            if src.split('/').any(|c| c == "..") {
                                return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("invalid bind mount source {src:?}: must not contain \"..\"")));
                            }
                            for mm in self.ctx.resolve(if src.is_empty() { "." } else { &src })? {
                                let mut items = Vec::new();
                                self.ctx.walk(&mm, b"", None, &mut items)?;
                                key_extra.push_str(&self.ctx.hash_items(&items, false)?);
                            }
                        }
                    }
                }
                layer_step = Some(LayerStep::Run(Box::new(r.clone())));
            }
            InstructionKind::Copy(c) => {
                let plan = self.plan_copy(idx, st, CopyReq::from_copy(c))?;
                key_extra = plan.hash.clone();
                layer_step = Some(LayerStep::Copy(Box::new(plan)));
            }
            InstructionKind::Add(a) => {
                let plan = self.plan_copy(idx, st, CopyReq::from_add(a))?;
                key_extra = plan.hash.clone();
                layer_step = Some(LayerStep::Copy(Box::new(plan)));
            }
        }
        let kind_text = format!("{:?}", e.kind);
        let key = hash_hex(&[st.key.as_bytes(), kind_text.as_bytes(), key_extra.as_bytes()]);
        st.key = key.clone();
        let cached = if self.opts.no_cache { None } else { self.cache.get(self.eng, &key) };
        let (layer, created) = match (cached, layer_step) {
            (Some(rec), step) => {
                if step.is_some() {
                    self.say(" ---> Using cache\n");
                    self.cached.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (rec.layer, rec.created)
            }
            (None, step) => {
                let created = now_rfc3339();
                let layer = match step {
                    None => None,
                    Some(s) => self.run_layer_step(st, sc, s)?,
                };
                let rec = CacheRecord {
                    layer: layer.clone(),
                    created: created.clone(),
                    description: created_by.clone().unwrap_or_default(),
                    last_used: created.clone(),
                };
                crate::fault::point("build.cache.record");
                self.cache.put(&key, &rec)?;
                (layer, created)
            }
        };
        if let Some(l) = &layer {
            self.eng.pin(&l.blob);
            self.eng.pin(&l.chain_id);
            if let Ok(mut p) = self.pinned.lock() {
                p.push(l.blob.clone());
                p.push(l.chain_id.clone());
            }
            st.config.rootfs.typ = "layers".into();
            st.config.rootfs.diff_ids.push(l.diff_id.clone());
            st.layers.push(l.clone());
        }
        if let Some(cb) = created_by {
            st.config.history.push(History {
                created: Some(created),
                created_by: Some(cb),
                comment: Some(berth_dockerfile::HISTORY_COMMENT.into()),
                empty_layer: if layer.is_none() { Some(true) } else { None },
                ..Default::default()
            });
        }
        self.say(format!(" ---> {}\n", &key[..12]));
        Ok(())
    }

    /// Executes a step that may produce a layer; returns it (None for an empty diff).
    fn run_layer_step(&self, st: &StageState, sc: &StageScope, step: LayerStep) -> Result<Option<LayerRecord>, BuildError> {
        let parent = st.parent_chain();
        let parent_key = parent.as_ref().map(layer_key);
        let work_key = format!("build:{}", hex::encode(rand::random::<[u8; 8]>()));
        let mount = self.eng.snapshots.prepare(&work_key, parent_key.as_deref())?;
        let res = (|| -> Result<Option<LayerRecord>, BuildError> {
            let upper = self.eng.snapshots.fs_dir(&work_key)?;
            match step {
                LayerStep::Run(r) => self.do_run(st, sc, &r, &mount, &upper, parent_key.as_deref())?,
                LayerStep::Mkdir(dir) => {
                    let m = exec::OverlayMount::mount(&self.tmp.join(format!("m-{work_key}").replace(':', "-")), &mount.options)?;
                    berth_archive::mkdir_all_in_root(&m.target, Path::new(&dir), 0o755)?;
                    m.unmount()?;
                }
                LayerStep::Copy(plan) => {
                    let m = exec::OverlayMount::mount(&self.tmp.join(format!("m-{work_key}").replace(':', "-")), &mount.options)?;
                    let r = self.do_copy(st, &plan, &m.target);
                    m.unmount()?;
                    r?;
                }
            }
            if exec::dir_is_empty(&upper) {
                return Ok(None);
            }
            let tarpath = self.tmp.join(format!("layer-{}.tar", hex::encode(rand::random::<[u8; 8]>())));
            {
                let f = std::fs::File::create(&tarpath).map_err(|e| internal(format!("create {}: {e}", tarpath.display())))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                berth_archive::pack(&upper, &mut w, &berth_archive::PackOptions { overlay_upper: true, ..Default::default() })?;
                std::io::Write::flush(&mut w).map_err(|e| internal(format!("write layer: {e}")))?;
            }
            crate::fault::point("build.step.packed");
            let f = std::fs::File::open(&tarpath).map_err(|e| internal(format!("open layer: {e}")))?;
            let rec = self.eng.add_layer_from_tar(std::io::BufReader::with_capacity(1 << 20, f), parent.as_ref());
            let _ = std::fs::remove_file(&tarpath);
            Ok(Some(rec?))
        })();
        let _ = self.eng.snapshots.remove(&work_key);
        res
    }

    fn do_run(
        &self,
        st: &StageState,
        sc: &StageScope,
        r: &berth_dockerfile::Run,
        mount: &crate::snapshot::Mount,
        upper: &Path,
        parent_key: Option<&str>,
    ) -> Result<(), BuildError> {
        if r.security == berth_dockerfile::SecurityMode::Insecure {
            return Err(BuildError::new(
                BuildErrorKind::InvalidInput,
                "RUN --security=insecure needs the security.insecure entitlement, which berth does not grant",
            ));
        }
        let shell = st.shell();
        let mut mounts = Vec::new();
        let args = match r.command.effective() {
            EffectiveCommand::Args(a) => with_shell(&shell, &a, r.command.prepend_shell),
            EffectiveCommand::Script { name, data } => {
                let dir = self.tmp.join(format!("pipes-{}", hex::encode(rand::random::<[u8; 6]>())));
                std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
                let safe = name.replace('/', "_");
                let p = dir.join(&safe);
                std::fs::write(&p, data).map_err(|e| internal(e.to_string()))?;
                std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&p).map_err(|e| internal(e.to_string()))?.permissions(), 0o755);
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(|e| internal(e.to_string()))?;
                mounts.push(berth_runtime::MountConfig {
                    kind: berth_runtime::MountKind::Bind,
                    source: dir.display().to_string(),
                    destination: "/dev/pipes".into(),
                    options: vec!["rbind".into(), "ro".into()],
                    propagation: None,
                });
                vec![format!("/dev/pipes/{safe}")]
            }
        };
        let mut stub_targets = Vec::new();
        // `sharing=locked` cache mounts: held until the step ends
        let mut locks: Vec<Arc<std::sync::Mutex<()>>> = Vec::new();
        for m in &r.mounts {
            let target = m.target.clone().unwrap_or_default();
            let target = join_path(st.config.config.as_ref().and_then(|c| c.working_dir.as_deref()).unwrap_or("/"), &target);
            match m.kind {
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    if id.split('/').any(|c| c == "..") {
                        return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("invalid cache mount id {id:?}: must not contain \"..\"")));
                    }
                    let shared = self.eng.config.data_root.join("build-cache").join("mounts").join(hash_hex(&[id.as_bytes()]));
                    let dir = match m.sharing.unwrap_or(berth_dockerfile::CacheSharing::Shared) {
                        berth_dockerfile::CacheSharing::Shared => shared,
                        berth_dockerfile::CacheSharing::Locked => {
                            locks.push(cache_lock(&shared));
                            shared
                        }
                        // a fresh instance for this step (BuildKit gives one per concurrent writer)
                        berth_dockerfile::CacheSharing::Private => self.tmp.join(format!("cache-{}", hex::encode(rand::random::<[u8; 6]>()))),
                    };
                    if !dir.exists() {
                        std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
                        let mode = m.mode.unwrap_or(0o755);
                        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(|e| internal(e.to_string()))?;
                        if m.uid.is_some() || m.gid.is_some() {
                            std::os::unix::fs::chown(&dir, m.uid, m.gid).map_err(|e| internal(e.to_string()))?;
                        }
                    }
                    mounts.push(berth_runtime::MountConfig {
                        kind: berth_runtime::MountKind::Bind,
                        source: dir.display().to_string(),
                        destination: target.clone(),
                        options: vec!["rbind".into(), "rw".into()],
                        propagation: None,
                    });
                }
                MountType::Tmpfs => mounts.push(berth_runtime::MountConfig {
                    kind: berth_runtime::MountKind::Tmpfs,
                    source: "tmpfs".into(),
                    destination: target.clone(),
                    options: vec!["nosuid".into(), "nodev".into()],
                    propagation: None,
                }),
                MountType::Bind => {
                    // copy the source into a private directory: nothing outside the context
                    // (or the stage) can be reached, and writes are discarded
                    let src = m.source.clone().unwrap_or_default();
                    if src.split('/').any(|c| c == "..") {
                        return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("invalid bind mount source {src:?}: must not contain \"..\"")));
                    }
                    let dir = self.tmp.join(format!("bind-{}", hex::encode(rand::random::<[u8; 6]>())));
                    std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
                    let from_holder;
                    let tree: &SourceTree = match &m.from {
                        None => &self.ctx,
                        Some(f) => {
                            from_holder = self.stage_tree(f)?;
                            &from_holder.1
                        }
                    };
                    let matched = tree.resolve(if src.is_empty() { "." } else { &src })?;
                    let mut items = Vec::new();
                    for mm in &matched {
                        let prefix = if mm.is_dir { Vec::new() } else { b"data".to_vec() };
                        tree.walk(mm, &prefix, None, &mut items)?;
                    }
                    let single_file = matched.len() == 1 && !matched[0].is_dir;
                    apply_items(tree, &items, None, &dir, &berth_archive::ApplyOptions { skip_root_entry: true, ..Default::default() })?;
                    let source = if single_file { dir.join("data") } else { dir };
                    mounts.push(berth_runtime::MountConfig {
                        kind: berth_runtime::MountKind::Bind,
                        source: source.display().to_string(),
                        destination: target.clone(),
                        options: vec!["rbind".into(), if m.readonly { "ro".into() } else { "rw".into() }],
                        propagation: None,
                    });
                }
                MountType::Secret | MountType::Ssh => {
                    if m.required {
                        return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("{} mounts need BuildKit sessions, which berth does not support yet", m.kind.as_str())));
                    }
                    continue;
                }
            }
            stub_targets.push(target);
        }
        let network = match r.network {
            NetworkMode::None => false,
            NetworkMode::Host => true,
            NetworkMode::Default => self.opts.network != "none",
        };
        let cfg = st.config.config.clone().unwrap_or_default();
        let spec = exec::RunSpec {
            args: args.clone(),
            env: sc.run_env().into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: cfg.working_dir.clone().unwrap_or_default(),
            user: cfg.user.clone().unwrap_or_default(),
            host_network: network,
            mounts,
        };
        let silent = |_: BuildMessage| {};
        let out: &(dyn Fn(BuildMessage) + Sync) = if self.opts.quiet { &silent } else { self.out };
        let guards: Vec<_> = locks.iter().map(|l| l.lock().unwrap_or_else(|p| p.into_inner())).collect();
        let code = exec::run_process(self.eng, mount, &spec, out);
        drop(guards);
        let code = code?;
        let lowers = self.eng.snapshots.lowers(parent_key)?;
        for t in stub_targets.iter().chain(["/etc/resolv.conf".to_string(), "/etc/hosts".to_string(), "/dev/pipes".to_string()].iter()) {
            exec::remove_stub(upper, &lowers, t);
            // a symlink of the image on the way: the runtime made the stub where it leads
            if let Some(resolved) = exec::resolve_in_layers(&lowers, t) {
                exec::remove_stub(upper, &lowers, &resolved);
            }
        }
        if code != 0 {
            let mut e = BuildError::new(
                BuildErrorKind::StepFailed,
                format!("The command '{}' returned a non-zero code: {code}", args.join(" ")),
            );
            e.code = Some(code);
            return Err(e);
        }
        Ok(())
    }
}

fn internal(msg: impl Into<String>) -> BuildError {
    BuildError::new(BuildErrorKind::Internal, msg)
}

/// The lock of a `sharing=locked` cache directory (one per directory per process).
fn cache_lock(dir: &Path) -> Arc<std::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<std::sync::Mutex<HashMap<PathBuf, Arc<std::sync::Mutex<()>>>>> = std::sync::OnceLock::new();
    let m = LOCKS.get_or_init(Default::default);
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(dir.to_path_buf()).or_default().clone()
}

/// `SHELL` + command for shell form, the arguments as they are for exec form.
fn with_shell(shell: &[String], args: &[String], prepend: bool) -> Vec<String> {
    if !prepend {
        return args.to_vec();
    }
    let mut v: Vec<String> = if shell.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { shell.to_vec() };
    v.push(args.join(" "));
    v
}

/// Joins a (possibly relative) path onto a directory, cleaning `.` and `..` lexically.
fn join_path(base: &str, p: &str) -> String {
    let full = if p.starts_with('/') { p.to_string() } else { format!("{base}/{p}") };
    let mut parts: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

enum LayerStep {
    Run(Box<berth_dockerfile::Run>),
    Mkdir(String),
    Copy(Box<CopyPlan>),
}

/// COPY and ADD, normalised.
struct CopyReq {
    sources: Vec<String>,
    inline: Vec<berth_dockerfile::InlineFile>,
    dest: String,
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<String>,
    parents: bool,
    exclude: Vec<String>,
    is_add: bool,
    unpack: bool,
    checksum: Option<String>,
}

impl CopyReq {
    fn from_copy(c: &berth_dockerfile::Copy) -> Self {
        CopyReq {
            sources: c.files.sources.clone(),
            inline: c.files.inline.clone(),
            dest: c.files.dest.clone(),
            from: c.from.clone(),
            chown: c.chown.clone(),
            chmod: c.chmod.clone(),
            parents: c.parents,
            exclude: c.exclude.clone(),
            is_add: false,
            unpack: false,
            checksum: None,
        }
    }
    fn from_add(a: &berth_dockerfile::Add) -> Self {
        CopyReq {
            sources: a.files.sources.clone(),
            inline: a.files.inline.clone(),
            dest: a.files.dest.clone(),
            from: None,
            chown: a.chown.clone(),
            chmod: a.chmod.clone(),
            parents: false,
            exclude: a.exclude.clone(),
            is_add: true,
            unpack: a.unpack.unwrap_or(true),
            checksum: a.checksum.clone(),
        }
    }
}

/// A COPY/ADD ready to run: what it reads (already hashed) and where it goes.
struct CopyPlan {
    req: CopyReq,
    /// `--from`, normalised for [`Builder::stage_tree`] (a stage index or an image name).
    from: Option<String>,
    /// Downloaded ADD URLs: (file in tmp, file name).
    downloads: Vec<(PathBuf, String)>,
    hash: String,
}

impl Builder<'_> {
    /// Mounts the root filesystem of a stage or image read-only and opens it as a source tree.
    fn stage_tree(&self, from: &str) -> Result<(Option<exec::OverlayMount>, SourceTree), BuildError> {
        let st = match self.df.resolve_from(self.df.stages.len(), from)? {
            SourceRef::Stage(i) => self
                .results
                .lock()
                .map_err(|_| internal("lock"))?
                .get(&i)
                .cloned()
                .ok_or_else(|| internal(format!("stage {from} was not built")))?,
            SourceRef::Scratch => StageState { config: ConfigFile::default(), layers: vec![], key: hash_hex(&[b"scratch"]), cmd_set: false },
            SourceRef::Image(name) => self.image(&name, false)?,
        };
        let lowers = self.eng.snapshots.lowers(st.parent_chain().map(|c| layer_key(&c)).as_deref())?;
        let empty = self.tmp.join("empty");
        if lowers.is_empty() {
            return Ok((None, SourceTree::open(&empty, None, false, HashMap::new())?));
        }
        let target = self.tmp.join(format!("from-{}", hex::encode(rand::random::<[u8; 6]>())));
        let m = exec::OverlayMount::mount_ro(&target, &lowers, &empty)?;
        let tree = SourceTree::open(&target, None, false, HashMap::new())?;
        Ok((Some(m), tree))
    }

    /// Resolves a `--from` value of stage `idx` to (a reference [`Builder::stage_tree`]
    /// takes, the key that identifies its content).
    fn source_key(&self, idx: usize, from: &str) -> Result<(String, String), BuildError> {
        Ok(match self.df.resolve_from(idx, from)? {
            SourceRef::Stage(i) => {
                let key = self.results.lock().map_err(|_| internal("lock"))?.get(&i).map(|s| s.key.clone());
                (i.to_string(), key.ok_or_else(|| internal(format!("stage {from} was not built")))?)
            }
            SourceRef::Scratch => ("scratch".into(), hash_hex(&[b"scratch"])),
            SourceRef::Image(name) => {
                let key = self.image(&name, false)?.key;
                (name, key)
            }
        })
    }

    fn plan_copy(&self, idx: usize, st: &StageState, req: CopyReq) -> Result<CopyPlan, BuildError> {
        // Stages and images are addressed by their key / id: their content is not re-hashed.
        let from = match &req.from {
            Some(f) => Some(self.source_key(idx, f)?),
            None => None,
        };
        let exclude = if req.exclude.is_empty() { None } else { Some(IgnoreMatcher::from_patterns(&req.exclude).map_err(|e| BuildError::new(BuildErrorKind::InvalidInput, e.to_string()))?) };
        let mut h = Sha256::new();
        let mut downloads = Vec::new();
        if let Some((_, key)) = &from {
            h.update(format!("from {key}\n").as_bytes());
        }
        for src in &req.sources {
            if req.is_add && (src.starts_with("http://") || src.starts_with("https://")) {
                let (path, name, sum) = self.download(src, req.checksum.as_deref())?;
                h.update(format!("url {src} {sum}\n").as_bytes());
                downloads.push((path, name));
                continue;
            }
            if req.is_add && src.starts_with("git@") {
                return Err(BuildError::new(BuildErrorKind::InvalidInput, "ADD of git repositories is not supported by berth yet"));
            }
            if from.is_some() {
                continue;
            }
            let matched = self.ctx.resolve(src)?;
            for m in &matched {
                let prefix = self.source_prefix(&req, m);
                let mut items = Vec::new();
                self.ctx.walk(m, &prefix, exclude.as_ref(), &mut items)?;
                h.update(format!("src {} {}\n", m.ctx_path, m.is_dir).as_bytes());
                h.update(self.ctx.hash_items(&items, false)?.as_bytes());
            }
            if req.is_add && req.checksum.is_some() {
                return Err(BuildError::new(BuildErrorKind::InvalidInput, "checksum can't be specified for non-HTTP(S) sources"));
            }
        }
        for f in &req.inline {
            h.update(format!("inline {} {}\n", f.path, f.data.len()).as_bytes());
            h.update(f.data.as_bytes());
        }
        let _ = st;
        Ok(CopyPlan { req, from: from.map(|(r, _)| r), downloads, hash: hex::encode(h.finalize()) })
    }

    /// The destination name a matched source gets inside the destination directory (before
    /// the file-vs-directory decision): `--parents` keeps the context path.
    fn source_prefix(&self, req: &CopyReq, m: &context::Matched) -> Vec<u8> {
        if req.parents {
            return m.ctx_path.as_bytes().to_vec();
        }
        if m.is_dir {
            Vec::new()
        } else {
            m.ctx_path.rsplit('/').next().unwrap_or("").as_bytes().to_vec()
        }
    }

    fn do_copy(&self, st: &StageState, plan: &CopyPlan, root: &Path) -> Result<(), BuildError> {
        let req = &plan.req;
        let holder = match &plan.from {
            Some(f) => Some(self.stage_tree(f)?),
            None => None,
        };
        let tree = holder.as_ref().map(|(_, t)| t).unwrap_or(&self.ctx);
        let workdir = st.config.config.as_ref().and_then(|c| c.working_dir.clone()).unwrap_or_else(|| "/".into());
        let dest_raw = &req.dest;
        let dir_syntax = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == "." || dest_raw.is_empty();
        let dest = join_path(&workdir, dest_raw);
        let exclude = if req.exclude.is_empty() { None } else { IgnoreMatcher::from_patterns(&req.exclude).ok() };
        let owner = match &req.chown {
            Some(c) => Some(resolve_owner(root, c)?),
            None if req.from.is_none() => Some((0, 0)),
            None => None,
        };
        let chmod = match &req.chmod {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| BuildError::new(BuildErrorKind::InvalidInput, format!("invalid chmod parameter: {m}")))? & 0o7777),
            None => None,
        };
        let opts = berth_archive::ApplyOptions { skip_root_entry: true, force_owner: owner, ..Default::default() };
        let dest_is_dir = |p: &str| berth_archive::open_in_root(root, Path::new(p), berth_archive::OFlags::PATH | berth_archive::OFlags::DIRECTORY).is_ok();
        // count sources to decide the multi-source rule
        let mut all: Vec<(context::Matched, Vec<u8>)> = Vec::new();
        for src in &req.sources {
            if req.is_add && (src.starts_with("http://") || src.starts_with("https://")) {
                continue;
            }
            for m in tree.resolve(src)? {
                let p = self.source_prefix(req, &m);
                all.push((m, p));
            }
        }
        let n_sources = all.len() + plan.downloads.len() + req.inline.len();
        if n_sources > 1 && !dir_syntax && !dest_is_dir(&dest) {
            return Err(BuildError::new(
                BuildErrorKind::InvalidInput,
                "When using COPY with more than one source file, the destination must be a directory and end with a /",
            ));
        }
        let into_dir = dir_syntax || n_sources > 1 || dest_is_dir(&dest);
        for (m, prefix) in &all {
            // ADD of a local archive unpacks it
            if req.is_add && req.unpack && !m.is_dir {
                let mut items = Vec::new();
                tree.walk(m, b"x", None, &mut items)?;
                if let Some(it) = items.first() {
                    if is_archive(tree, it) {
                        let dfd = berth_archive::mkdir_all_in_root(root, Path::new(&dest), 0o755)?;
                        let f = tree.open_item(it)?;
                        let rd = berth_archive::decompress(std::io::BufReader::new(f), crate::image::MAX_LAYER_BYTES)?;
                        let o = berth_archive::ApplyOptions { skip_root_entry: true, force_owner: req.chown.as_ref().and(owner), ..Default::default() };
                        berth_archive::apply_layer_at(std::os::fd::AsFd::as_fd(&dfd), rd, &o)?;
                        continue;
                    }
                }
            }
            let (dir, name) = if m.is_dir || into_dir || req.parents {
                (dest.clone(), prefix.clone())
            } else {
                let (d, n) = dest.rsplit_once('/').unwrap_or(("", dest.as_str()));
                (if d.is_empty() { "/".to_string() } else { d.to_string() }, n.as_bytes().to_vec())
            };
            let mut items = Vec::new();
            tree.walk(m, &name, exclude.as_ref(), &mut items)?;
            if items.is_empty() {
                continue;
            }
            let dfd = mkdir_dest(root, &dir, req.chown.as_ref().and(owner))?;
            apply_items_fd(tree, &items, chmod, &dfd, &opts)?;
        }
        for (path, name) in &plan.downloads {
            let (dir, fname) = if into_dir {
                (dest.clone(), name.clone())
            } else {
                let (d, n) = dest.rsplit_once('/').unwrap_or(("", dest.as_str()));
                (if d.is_empty() { "/".to_string() } else { d.to_string() }, n.to_string())
            };
            let dfd = berth_archive::mkdir_all_in_root(root, Path::new(&dir), 0o755)?;
            let t = SourceTree::open(path.parent().unwrap_or(Path::new("/")), None, false, HashMap::new())?;
            let fname_src = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let mut items = Vec::new();
            for m in t.resolve(&fname_src)? {
                t.walk(&m, fname.as_bytes(), None, &mut items)?;
            }
            for it in &mut items {
                it.mode = 0o600;
                it.mtime = 0;
            }
            apply_items_fd(&t, &items, chmod, &dfd, &opts)?;
        }
        for f in &req.inline {
            let (dir, fname) = if into_dir || n_sources > 1 {
                (dest.clone(), f.path.clone())
            } else {
                let (d, n) = dest.rsplit_once('/').unwrap_or(("", dest.as_str()));
                (if d.is_empty() { "/".to_string() } else { d.to_string() }, n.to_string())
            };
            let dfd = berth_archive::mkdir_all_in_root(root, Path::new(&dir), 0o755)?;
            let mut w = berth_archive::TarWriter::new(Vec::new());
            let h = berth_archive::Header {
                name: fname.into_bytes(),
                mode: chmod.unwrap_or(0o644),
                size: f.data.len() as u64,
                mtime: berth_archive::Timestamp::from_secs(0),
                ..Default::default()
            };
            w.append(&h, &mut f.data.as_bytes())?;
            let bytes = w.finish()?;
            berth_archive::apply_layer_at(std::os::fd::AsFd::as_fd(&dfd), bytes.as_slice(), &opts)?;
        }
        Ok(())
    }

    /// Downloads an ADD URL (bounded) into the build's temp dir; returns the file, its name
    /// and its sha256.
    fn download(&self, url: &str, checksum: Option<&str>) -> Result<(PathBuf, String, String), BuildError> {
        const MAX: u64 = 8 << 30;
        let handle = self.rt.clone().ok_or_else(|| internal("ADD of a URL needs the daemon's runtime"))?;
        let dir = self.tmp.join(format!("dl-{}", hex::encode(rand::random::<[u8; 6]>())));
        std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
        let path = dir.join("download");
        let name = url.split('?').next().unwrap_or(url).trim_end_matches('/').rsplit('/').next().unwrap_or("download").to_string();
        let name = if name.is_empty() || name.contains(':') { "download".to_string() } else { name };
        let url2 = url.to_string();
        let path2 = path.clone();
        let sum = handle.block_on(async move {
            use std::io::Write;
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(600)).build().map_err(|e| e.to_string())?;
            let mut resp = client.get(&url2).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("failed to GET {url2} with status {}", resp.status()));
            }
            let mut f = std::fs::File::create(&path2).map_err(|e| e.to_string())?;
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
                n += chunk.len() as u64;
                if n > MAX {
                    return Err(format!("{url2}: download exceeds {MAX} bytes"));
                }
                h.update(&chunk);
                f.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            Ok(hex::encode(h.finalize()))
        });
        let sum = sum.map_err(|e| BuildError::new(BuildErrorKind::InvalidInput, e))?;
        if let Some(want) = checksum {
            let want_hex = want.strip_prefix("sha256:").unwrap_or(want);
            if want_hex != sum {
                return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("digest mismatch sha256:{sum}: {want}")));
            }
        }
        Ok((path, name, sum))
    }
}

/// Creates the destination directory `dir` inside `root`; with `owner`, the directories it
/// had to create get that owner (Docker's `--chown` also owns created parents).
fn mkdir_dest(root: &Path, dir: &str, owner: Option<(u32, u32)>) -> Result<std::os::fd::OwnedFd, BuildError> {
    let mut missing = Vec::new();
    if owner.is_some() {
        let mut cur = String::new();
        for c in dir.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(c);
            if berth_archive::open_in_root(root, Path::new(&cur), berth_archive::OFlags::PATH).is_err() {
                missing.push(cur.clone());
            }
        }
    }
    let fd = berth_archive::mkdir_all_in_root(root, Path::new(dir), 0o755)?;
    if let Some((uid, gid)) = owner {
        for m in &missing {
            let d = berth_archive::open_in_root(root, Path::new(m), berth_archive::OFlags::PATH | berth_archive::OFlags::DIRECTORY)?;
            rustix::fs::chownat(
                &d,
                "",
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::EMPTY_PATH,
            )
            .map_err(|e| internal(format!("chown {m}: {e}")))?;
        }
    }
    Ok(fd)
}

/// Whether a listed file looks like a (possibly compressed) tar archive.
fn is_archive(tree: &SourceTree, it: &context::Item) -> bool {
    use std::io::Read;
    if it.kind != ItemKind::File {
        return false;
    }
    let Ok(f) = tree.open_item(it) else { return false };
    let Ok(mut rd) = berth_archive::decompress(std::io::BufReader::new(f), 1 << 20) else { return false };
    let mut buf = vec![0u8; 512];
    let mut got = 0;
    while got < 512 {
        match rd.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got == 512 && &buf[257..262] == b"ustar"
}

fn apply_items(tree: &SourceTree, items: &[context::Item], chmod: Option<u32>, dir: &Path, opts: &berth_archive::ApplyOptions) -> Result<(), BuildError> {
    let fd = berth_archive::open_root(dir)?;
    apply_items_fd(tree, items, chmod, &fd, opts)
}

/// Streams `items` as a tar into the directory `dfd` (applied in-root there).
fn apply_items_fd(tree: &SourceTree, items: &[context::Item], chmod: Option<u32>, dfd: &std::os::fd::OwnedFd, opts: &berth_archive::ApplyOptions) -> Result<(), BuildError> {
    let (rd, wr) = std::os::unix::net::UnixStream::pair().map_err(|e| internal(format!("socketpair: {e}")))?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let w = std::io::BufWriter::with_capacity(1 << 20, wr);
            tree.write_tar(items, chmod, w)
        });
        let applied = berth_archive::apply_layer_at(std::os::fd::AsFd::as_fd(dfd), rd, opts);
        let written = writer.join().map_err(|_| internal("copy thread panicked"))?;
        applied?;
        written
    })
}

/// Resolves `--chown=user[:group]` with the image's /etc/passwd and /etc/group (read
/// in-root). Numeric ids are taken as they are.
fn resolve_owner(root: &Path, spec: &str) -> Result<(u32, u32), BuildError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |f: &str| read_in_root(root, f).unwrap_or_default();
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        read(file).lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                let id = f[2].parse().ok()?;
                let gid = f.get(3).and_then(|x| x.parse().ok()).unwrap_or(id);
                Some((id, gid))
            } else {
                None
            }
        })
    };
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => lookup("/etc/passwd", u)
            .ok_or_else(|| BuildError::new(BuildErrorKind::InvalidInput, format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}")))?,
    };
    let gid = match g {
        None => if u.parse::<u32>().is_ok() { uid } else { primary },
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/group", g).map(|(id, _)| id).ok_or_else(|| {
                BuildError::new(BuildErrorKind::InvalidInput, format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
            })?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join() {
        assert_eq!(join_path("/", "app"), "/app");
        assert_eq!(join_path("/a/b", "../c"), "/a/c");
        assert_eq!(join_path("/a", "/x/./y/"), "/x/y");
        assert_eq!(join_path("/", "../../.."), "/");
    }

    #[test]
    fn shells() {
        assert_eq!(with_shell(&[], &["echo hi".into()], true), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(with_shell(&["bash".into(), "-ec".into()], &["x".into()], true), vec!["bash", "-ec", "x"]);
        assert_eq!(with_shell(&[], &["a".into(), "b".into()], false), vec!["a", "b"]);
    }

    #[test]
    fn keys_are_length_prefixed() {
        assert_ne!(hash_hex(&[b"ab", b"c"]), hash_hex(&[b"a", b"bc"]));
    }
}
