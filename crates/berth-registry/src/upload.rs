//! Upload sessions: blob bytes streamed to `uploads/<uuid>/data` and hashed while
//! they arrive, committed into the content store only once the digest matches.
//!
//! Each session's file handle, running sha256 state and offset live together behind
//! one blocking mutex and are only touched inside `spawn_blocking` closures that
//! update all three at once. A client that vanishes mid-PATCH (its request future
//! dropped at any await point) therefore leaves a consistent session: whatever chunk
//! was being written completes or is truncated away, and the client resumes from the
//! offset reported by `GET` on the upload URL. Those closures take their turn on a
//! fair per-session queue and keep it until they finish, so a write orphaned by a
//! dropped request still lands before anything a later request does. While one 1 MiB
//! write is on the blocking pool the next chunk is being received (pipelining).
//! After a server restart the hash state
//! is rebuilt by re-reading the data file once; the session itself is on disk.
//!
//! Sessions idle for longer than the expiry (24 h by default) are purged, by wall
//! clock mtime at startup and by monotonic time while running.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::names::Digest;
use crate::store::{io_err, read_dir_names, Store, StoreError};

/// Size of the writes issued to disk.
const WRITE_CHUNK: usize = 1 << 20;
/// A request body that sends nothing for this long is treated as a dropped
/// connection (a half-open TCP connection would otherwise hold the session forever).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why an upload operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload {0} unknown")]
    Unknown(String),
    #[error("too many concurrent uploads (limit {0})")]
    TooMany(usize),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("range start {start} does not match upload offset {offset}")]
    Range { start: u64, offset: u64 },
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    Size { expected: u64, actual: u64 },
    #[error("reading request body: {0}")]
    Body(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Coarse class of an [`UploadError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadErrorKind {
    Unknown,
    TooMany,
    Digest,
    Range,
    Size,
    Body,
    Io,
}

impl UploadError {
    /// The class of this error.
    pub fn kind(&self) -> UploadErrorKind {
        match self {
            UploadError::Unknown(_) => UploadErrorKind::Unknown,
            UploadError::TooMany(_) => UploadErrorKind::TooMany,
            UploadError::DigestMismatch { .. } => UploadErrorKind::Digest,
            UploadError::Range { .. } => UploadErrorKind::Range,
            UploadError::Size { .. } => UploadErrorKind::Size,
            UploadError::Body(_) => UploadErrorKind::Body,
            UploadError::Store(_) => UploadErrorKind::Io,
        }
    }
}

type Result<T> = std::result::Result<T, UploadError>;

/// The part of a session that is written by blocking code.
struct Inner {
    file: File,
    hasher: Sha256,
    offset: u64,
}

/// One upload session. Lock it (through [`Uploads::get`]) for the whole request.
pub struct Session {
    pub uuid: String,
    pub repo: String,
    dir: PathBuf,
    inner: Arc<Mutex<Option<Inner>>>,
    /// Held (owned) by every blocking operation on `inner` until it finishes, even
    /// one whose request was dropped: the fair queue of this lock keeps operations
    /// in the order they were started.
    io: Arc<tokio::sync::Mutex<()>>,
    last_used: Instant,
}

type SessionRef = Arc<tokio::sync::Mutex<Session>>;

/// All upload sessions of a store.
pub struct Uploads {
    store: Store,
    sessions: Mutex<HashMap<String, (String, SessionRef)>>,
    max_sessions: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UploadError::Body(format!("worker failed: {e}")))?
}

impl Uploads {
    /// Session manager for `store`, allowing at most `max_sessions` open uploads.
    pub fn new(store: Store, max_sessions: usize) -> Uploads {
        Uploads {
            store,
            sessions: Mutex::new(HashMap::new()),
            max_sessions,
        }
    }

    /// Starts a session for `repo`.
    pub async fn create(&self, repo: &str) -> Result<SessionRef> {
        let count = lock(&self.sessions).len();
        if count >= self.max_sessions {
            return Err(UploadError::TooMany(self.max_sessions));
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        let dir = self.store.uploads_dir().join(&uuid);
        let (d, r) = (dir.clone(), repo.to_string());
        let file = blocking(move || {
            fs::create_dir(&d).map_err(io_err("mkdir", &d))?;
            let rp = d.join("repo");
            fs::write(&rp, r.as_bytes()).map_err(io_err("write", &rp))?;
            let dp = d.join("data");
            Ok(File::create(&dp).map_err(io_err("create", &dp))?)
        })
        .await?;
        let session = Session {
            uuid: uuid.clone(),
            repo: repo.to_string(),
            dir,
            io: Arc::new(tokio::sync::Mutex::new(())),
            inner: Arc::new(Mutex::new(Some(Inner {
                file,
                hasher: Sha256::new(),
                offset: 0,
            }))),
            last_used: Instant::now(),
        };
        let s = Arc::new(tokio::sync::Mutex::new(session));
        lock(&self.sessions).insert(uuid, (repo.to_string(), s.clone()));
        Ok(s)
    }

    /// Finds the session `uuid` belonging to `repo`, loading it from disk after a
    /// restart.
    pub async fn get(&self, repo: &str, uuid: &str) -> Result<SessionRef> {
        let parsed = uuid::Uuid::parse_str(uuid).map_err(|_| UploadError::Unknown(uuid.into()))?;
        let uuid = parsed.hyphenated().to_string();
        let known = lock(&self.sessions).get(&uuid).cloned();
        if let Some((r, s)) = known {
            if r != repo {
                return Err(UploadError::Unknown(uuid));
            }
            return Ok(s);
        }
        let dir = self.store.uploads_dir().join(&uuid);
        let d = dir.clone();
        let on_disk = blocking(move || {
            Ok(fs::read_to_string(d.join("repo"))
                .ok()
                .filter(|_| d.join("data").is_file()))
        })
        .await?;
        if on_disk.as_deref() != Some(repo) {
            return Err(UploadError::Unknown(uuid));
        }
        let session = Session {
            uuid: uuid.clone(),
            repo: repo.to_string(),
            dir,
            inner: Arc::new(Mutex::new(None)),
            io: Arc::new(tokio::sync::Mutex::new(())),
            last_used: Instant::now(),
        };
        let s = Arc::new(tokio::sync::Mutex::new(session));
        let mut map = lock(&self.sessions);
        Ok(map.entry(uuid).or_insert((repo.to_string(), s)).1.clone())
    }

    /// Forgets a session and deletes its files.
    pub async fn remove(&self, session: &Session) -> Result<()> {
        lock(&self.sessions).remove(&session.uuid);
        let dir = session.dir.clone();
        session
            .io(move |g| {
                // Close the file; writes started before have finished.
                g.take();
                Ok(())
            })
            .await?;
        blocking(move || match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &dir)(e).into()),
        })
        .await
    }

    /// Verifies the session's content against `expected` and commits it as a blob
    /// linked into the session's repository. On a mismatch the session is discarded
    /// and nothing is committed.
    pub async fn finish(&self, session: &Session, expected: &Digest) -> Result<u64> {
        let dir = session.dir.clone();
        let store = self.store.clone();
        let repo = session.repo.clone();
        let want = expected.clone();
        let res = session
            .io(move |g| {
                load(g, &dir)?;
                let st = g
                    .as_mut()
                    .ok_or_else(|| UploadError::Unknown(dir.display().to_string()))?;
                let actual = Digest::from_sha256(&st.hasher.clone().finalize());
                if actual != want {
                    return Err(UploadError::DigestMismatch {
                        expected: want,
                        actual,
                    });
                }
                let data = dir.join("data");
                st.file.sync_all().map_err(io_err("fsync", &data))?;
                let size = st.offset;
                // Close the file before it is renamed into the store.
                g.take();
                store.commit_blob(&data, &want)?;
                store.link_blob(&repo, &want)?;
                Ok(size)
            })
            .await;
        if matches!(&res, Ok(_) | Err(UploadError::DigestMismatch { .. })) {
            self.remove(session).await?;
        }
        res
    }

    /// Removes sessions whose data is older than `max_age` (wall clock, for use at
    /// startup) and in-memory sessions idle longer than `max_age` (monotonic).
    pub async fn purge_stale(&self, max_age: Duration) -> Result<usize> {
        let now = Instant::now();
        let idle: Vec<SessionRef> = lock(&self.sessions)
            .values()
            .map(|(_, s)| s)
            .filter(|s| {
                s.try_lock()
                    .map(|g| now.duration_since(g.last_used) > max_age)
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        let mut n = 0;
        for s in idle {
            let g = s.lock().await;
            self.remove(&g).await?;
            n += 1;
        }
        let base = self.store.uploads_dir();
        let known: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        n += blocking(move || {
            let mut n = 0;
            let wall = SystemTime::now();
            for name in read_dir_names(&base)? {
                if known.contains(&name) {
                    continue;
                }
                let p = base.join(&name);
                let age = fs::metadata(p.join("data"))
                    .or_else(|_| fs::metadata(&p))
                    .and_then(|m| m.modified())
                    .map(|t| wall.duration_since(t).unwrap_or_default())
                    .unwrap_or_default();
                if age > max_age && fs::remove_dir_all(&p).is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await?;
        if n > 0 {
            tracing::info!(purged = n, "purged stale uploads");
        }
        Ok(n)
    }
}

async fn join<T>(h: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    h.await
        .map_err(|e| UploadError::Body(format!("worker failed: {e}")))?
}

async fn join_write<T>(h: Option<tokio::task::JoinHandle<Result<T>>>) -> Result<T>
where
    T: Default,
{
    match h {
        None => Ok(T::default()),
        Some(h) => h
            .await
            .map_err(|e| UploadError::Body(format!("worker failed: {e}")))?,
    }
}

/// Opens the session's data file and rebuilds the hash state if not loaded yet.
fn load(g: &mut Option<Inner>, dir: &std::path::Path) -> Result<()> {
    if g.is_some() {
        return Ok(());
    }
    let p = dir.join("data");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => UploadError::Unknown(dir.display().to_string()),
            _ => io_err("open", &p)(e).into(),
        })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; WRITE_CHUNK];
    let mut offset = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", &p))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    file.seek(SeekFrom::End(0)).map_err(io_err("seek", &p))?;
    *g = Some(Inner {
        file,
        hasher,
        offset,
    });
    Ok(())
}

impl Session {
    /// Runs `f` on the session's file state on the blocking pool, after every
    /// operation started before it (see `io`). Returns a handle so writes can be
    /// pipelined; the operation completes even if the handle is dropped.
    async fn io_spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<Inner>) -> Result<T> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T>> {
        let turn = self.io.clone().lock_owned().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = lock(&inner);
            let r = f(&mut g);
            drop(g);
            drop(turn);
            r
        })
    }

    /// [`Session::io_spawn`], awaited.
    async fn io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<Inner>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        join(self.io_spawn(f).await).await
    }

    /// Bytes received so far.
    pub async fn offset(&mut self) -> Result<u64> {
        self.last_used = Instant::now();
        let dir = self.dir.clone();
        self.io(move |g| {
            load(g, &dir)?;
            Ok(g.as_ref().map(|s| s.offset).unwrap_or(0))
        })
        .await
    }

    /// Appends a body stream. Data is written in large chunks; a body error (client
    /// gone) keeps every byte received before it and reports [`UploadError::Body`].
    pub async fn append<S, E>(&mut self, mut body: S, expected_len: Option<u64>) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.last_used = Instant::now();
        let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
        let mut received = 0u64;
        let mut failure = None;
        // One write in flight while the next chunk is received: network, disk and
        // hashing overlap. Writes stay ordered because each waits for the previous.
        let mut pending: Option<tokio::task::JoinHandle<Result<()>>> = None;
        loop {
            let item = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    failure = Some(UploadError::Body(format!(
                        "no data for {}s",
                        BODY_IDLE_TIMEOUT.as_secs()
                    )));
                    break;
                }
            };
            match item {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if let Some(limit) = expected_len {
                        if received > limit {
                            failure = Some(UploadError::Size {
                                expected: limit,
                                actual: received,
                            });
                            break;
                        }
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= WRITE_CHUNK {
                        join_write(pending.take()).await?;
                        pending = Some(self.spawn_write(buf.split().freeze()).await);
                    }
                }
                Err(e) => {
                    failure = Some(UploadError::Body(e.to_string()));
                    break;
                }
            }
        }
        join_write(pending.take()).await?;
        if let Some(f @ UploadError::Size { .. }) = failure {
            // Nothing of an oversized chunk is kept beyond what was already written.
            return Err(f);
        }
        if !buf.is_empty() {
            join_write(Some(self.spawn_write(buf.freeze()).await)).await?;
        }
        if let Some(f) = failure {
            return Err(f);
        }
        if let Some(limit) = expected_len {
            if received != limit {
                return Err(UploadError::Size {
                    expected: limit,
                    actual: received,
                });
            }
        }
        self.last_used = Instant::now();
        Ok(received)
    }

    /// Starts appending `data`. The write completes (or is rolled back) even if
    /// the caller goes away.
    async fn spawn_write(&self, data: Bytes) -> tokio::task::JoinHandle<Result<()>> {
        let dir = self.dir.clone();
        self.io_spawn(move |g| {
            load(g, &dir)?;
            let st = g
                .as_mut()
                .ok_or_else(|| UploadError::Unknown(dir.display().to_string()))?;
            if let Err(e) = st.file.write_all(&data) {
                // Drop the partial write so file, hash and offset agree again.
                let _ = st.file.set_len(st.offset);
                let _ = st.file.seek(SeekFrom::End(0));
                return Err(io_err("write", &dir.join("data"))(e).into());
            }
            st.hasher.update(&data);
            st.offset += data.len() as u64;
            Ok(())
        })
        .await
    }
}
