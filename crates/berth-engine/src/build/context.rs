//! Source trees for COPY/ADD: the build context and the root filesystems of other stages
//! or images (`COPY --from`).
//!
//! Every access goes through descriptors: a source named in the Dockerfile is opened with
//! `openat2(RESOLVE_IN_ROOT)` relative to the tree's root (so `..` and symlinks pointing
//! outside stay inside, like Docker's `FollowSymlinkInScope`), and the walk below it opens
//! each entry with `O_NOFOLLOW` from its parent's descriptor; symlinks found inside copied
//! directories are copied as symlinks, never followed. Paths that lexically leave the
//! context (`COPY ../x`) are refused up front with Docker's message.
//!
//! A walk produces [`Item`]s (metadata only). The same list is hashed for the cache key
//! (content hashes come from the memo when the stat tuple is unchanged) and streamed as a
//! tar into the destination, which `berth_archive::apply_layer_at` applies in-root.

use super::cache::MemoEntry;
use super::{BuildError, BuildErrorKind};
use berth_archive::{EntryType, Header, TarWriter, Timestamp};
use berth_dockerfile::IgnoreMatcher;
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Deepest directory nesting walked in a source.
const MAX_DEPTH: usize = 256;
/// Most entries one COPY may read (BOUND).
const MAX_ITEMS: usize = 1_000_000;

/// A directory tree COPY/ADD reads from.
pub struct SourceTree {
    rootfd: OwnedFd,
    /// `.dockerignore` of the context; `None` for stage/image roots.
    ignore: Option<IgnoreMatcher>,
    /// Whether this is the build context (owners are not preserved, memo is used).
    is_context: bool,
    memo: Mutex<HashMap<String, MemoEntry>>,
    memo_dirty: Mutex<bool>,
    /// Prefix of memo keys: the tree's root path, so two contexts never share entries.
    memo_prefix: String,
}

/// Most memo entries kept; beyond that the memo starts over (it is only an accelerator).
const MAX_MEMO: usize = 200_000;

/// What kind of entry an [`Item`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    File,
    Dir,
    Symlink(Vec<u8>),
}

/// One entry to copy.
#[derive(Clone)]
pub struct Item {
    /// The descriptor every `rel` below is resolved beneath (the matched source).
    pub base: Arc<OwnedFd>,
    /// Path below `base` (empty: `base` itself).
    pub rel: Vec<u8>,
    /// Name in the destination, relative to the destination directory.
    pub dest: Vec<u8>,
    /// Path relative to the tree root, for the memo and for `.dockerignore`.
    pub ctx_path: String,
    pub kind: ItemKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime_ns: i128,
    pub ino: u64,
}

/// Docker's lexical check: a source may not climb out of the context.
pub fn clean_source(src: &str) -> Result<String, BuildError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in src.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(BuildError::new(
                        BuildErrorKind::InvalidInput,
                        format!("forbidden path outside the build context: {src} ()"),
                    ));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style match of one path component (`*`, `?`, `[a-z]`, `[!x]`, `\` escapes).
pub fn fnmatch(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let (mut star_p, mut star_n) = (usize::MAX, 0usize);
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star_p = p;
                    star_n = n;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(&pat[p..], name[n]) {
                        if ok {
                            p += next;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pat.len() && pat[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_n += 1;
            n = star_n;
            continue;
        }
        return false;
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// Matches a `[...]` class at the start of `pat`; returns (matched, class length).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(1), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut ok = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((ok != negate, i + 1));
        }
        first = false;
        let lo = pat[i];
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            if lo <= c && c <= pat[i + 2] {
                ok = true;
            }
            i += 3;
        } else {
            if lo == c {
                ok = true;
            }
            i += 1;
        }
    }
    None
}

fn errno(what: &str, path: &str, e: rustix::io::Errno) -> BuildError {
    if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR {
        BuildError::new(BuildErrorKind::NotFound, format!("{what} {path}: no such file or directory"))
    } else if e == rustix::io::Errno::XDEV || e == rustix::io::Errno::LOOP {
        BuildError::new(BuildErrorKind::InvalidInput, format!("{what} {path}: path escapes the source root"))
    } else {
        BuildError::new(BuildErrorKind::Internal, format!("{what} {path}: {e}"))
    }
}

fn open_in(root: &OwnedFd, path: &str, flags: OFlags) -> Result<OwnedFd, rustix::io::Errno> {
    let p: &str = if path.is_empty() { "." } else { path };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rustix::fs::openat2(root, p, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) => continue,
            r => return r,
        }
    }
}

/// Opens `rel` strictly beneath `base` without following any symlink.
pub fn open_beneath(base: &OwnedFd, rel: &[u8], flags: OFlags) -> Result<OwnedFd, rustix::io::Errno> {
    let p: &[u8] = if rel.is_empty() { b"." } else { rel };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rustix::fs::openat2(base, OsStr::from_bytes(p), flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) => continue,
            r => return r,
        }
    }
}

fn stat_item(st: &rustix::fs::Stat) -> (ItemKind, u32) {
    let mode = st.st_mode;
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => ItemKind::Dir,
        _ => ItemKind::File,
    };
    (kind, mode & 0o7777)
}

/// One matched source: its descriptor, its context path and its type.
pub struct Matched {
    pub fd: Arc<OwnedFd>,
    pub ctx_path: String,
    pub is_dir: bool,
}

impl SourceTree {
    /// A tree rooted at `root`.
    pub fn open(root: &Path, ignore: Option<IgnoreMatcher>, is_context: bool, memo: HashMap<String, MemoEntry>) -> Result<Self, BuildError> {
        let rootfd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| errno("open", &root.display().to_string(), e))?;
        let memo = if memo.len() > MAX_MEMO { HashMap::new() } else { memo };
        let memo_prefix = format!("{}\0", root.display());
        Ok(Self { rootfd, ignore, is_context, memo: Mutex::new(memo), memo_dirty: Mutex::new(false), memo_prefix })
    }

    pub fn is_context(&self) -> bool {
        self.is_context
    }

    fn ignored(&self, ctx_path: &str) -> bool {
        !ctx_path.is_empty() && self.ignore.as_ref().is_some_and(|m| m.matches(ctx_path))
    }

    /// Resolves a COPY source (already cleaned, no wildcards) or expands wildcards into the
    /// matching paths. Errors like Docker when nothing matches.
    pub fn resolve(&self, src: &str) -> Result<Vec<Matched>, BuildError> {
        let clean = if self.is_context { clean_source(src)? } else { clean_source(src).unwrap_or_default() };
        let paths = if has_wildcard(&clean) { self.glob(&clean)? } else { vec![clean.clone()] };
        let mut out = Vec::new();
        for p in paths {
            if self.ignored(&p) {
                continue;
            }
            let fd = match open_in(&self.rootfd, &p, OFlags::PATH) {
                Ok(fd) => fd,
                Err(e) => {
                    let msg = if self.is_context {
                        format!("failed to compute cache key: failed to calculate checksum of ref: \"/{p}\": not found")
                    } else {
                        format!("\"/{p}\": not found")
                    };
                    return Err(if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR {
                        BuildError::new(BuildErrorKind::NotFound, msg)
                    } else {
                        errno("open", &p, e)
                    });
                }
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| errno("stat", &p, e))?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            // reopen readable (regular files) or as a directory
            let flags = if is_dir { OFlags::RDONLY | OFlags::DIRECTORY } else { OFlags::PATH };
            let fd = open_in(&self.rootfd, &p, flags).map_err(|e| errno("open", &p, e))?;
            out.push(Matched { fd: Arc::new(fd), ctx_path: p, is_dir });
        }
        if out.is_empty() {
            return Err(BuildError::new(
                BuildErrorKind::NotFound,
                format!("failed to compute cache key: failed to calculate checksum of ref: \"/{clean}\": not found"),
            ));
        }
        Ok(out)
    }

    /// Paths (relative, clean) matching a pattern with wildcards, component by component,
    /// sorted. Symlinked directories are not descended into by the glob itself.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, BuildError> {
        let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur: Vec<String> = vec![String::new()];
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for dir in &cur {
                if !has_wildcard(comp) {
                    let p = if dir.is_empty() { comp.to_string() } else { format!("{dir}/{comp}") };
                    next.push(p);
                    continue;
                }
                let Ok(dfd) = open_in(&self.rootfd, dir, OFlags::RDONLY | OFlags::DIRECTORY) else { continue };
                let Ok(rd) = rustix::fs::Dir::read_from(&dfd) else { continue };
                let mut names: Vec<String> = Vec::new();
                for ent in rd.flatten() {
                    let name = ent.file_name().to_bytes();
                    if name == b"." || name == b".." {
                        continue;
                    }
                    if fnmatch(comp.as_bytes(), name) {
                        let n = String::from_utf8_lossy(name).to_string();
                        if !last {
                            let is_dir = rustix::fs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW)
                                .map(|s| s.st_mode & libc::S_IFMT == libc::S_IFDIR)
                                .unwrap_or(false);
                            if !is_dir {
                                continue;
                            }
                        }
                        names.push(n);
                    }
                }
                names.sort();
                for n in names {
                    next.push(if dir.is_empty() { n } else { format!("{dir}/{n}") });
                }
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Lists everything a matched source contributes. `dest_prefix` is the destination name of
    /// the source itself (empty: the contents go straight into the destination directory).
    /// `exclude` filters paths relative to the source.
    pub fn walk(&self, m: &Matched, dest_prefix: &[u8], exclude: Option<&IgnoreMatcher>, out: &mut Vec<Item>) -> Result<(), BuildError> {
        let st = rustix::fs::fstat(&*m.fd).map_err(|e| errno("stat", &m.ctx_path, e))?;
        let (kind, mode) = stat_item(&st);
        let top = Item {
            base: m.fd.clone(),
            rel: Vec::new(),
            dest: dest_prefix.to_vec(),
            ctx_path: m.ctx_path.clone(),
            kind: kind.clone(),
            mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
            ino: st.st_ino,
        };
        if kind != ItemKind::Dir {
            out.push(top);
            return Ok(());
        }
        if !dest_prefix.is_empty() {
            out.push(top);
        }
        self.walk_dir(m, &m.fd, Vec::new(), dest_prefix, exclude, out, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_dir(
        &self,
        m: &Matched,
        dirfd: &OwnedFd,
        rel: Vec<u8>,
        dest_prefix: &[u8],
        exclude: Option<&IgnoreMatcher>,
        out: &mut Vec<Item>,
        depth: usize,
    ) -> Result<(), BuildError> {
        if depth > MAX_DEPTH {
            return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("{}: directory nesting too deep", m.ctx_path)));
        }
        let rd = rustix::fs::Dir::read_from(dirfd).map_err(|e| errno("read dir", &m.ctx_path, e))?;
        let mut names: Vec<Vec<u8>> = rd
            .flatten()
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        names.sort();
        for name in names {
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(&name);
            let rs = String::from_utf8_lossy(&r).to_string();
            let ctx_path = if m.ctx_path.is_empty() { rs.clone() } else { format!("{}/{rs}", m.ctx_path) };
            let st = rustix::fs::statat(dirfd, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| errno("stat", &ctx_path, e))?;
            let fmt = st.st_mode & libc::S_IFMT;
            let excluded = self.ignored(&ctx_path) || exclude.is_some_and(|x| x.matches(&rs));
            if excluded {
                let may = fmt == libc::S_IFDIR
                    && (self.ignore.as_ref().is_some_and(|i| i.dir_may_contain_exceptions(&ctx_path))
                        || exclude.is_some_and(|x| x.dir_may_contain_exceptions(&rs)));
                if !may {
                    continue;
                }
            }
            let kind = match fmt {
                libc::S_IFDIR => ItemKind::Dir,
                libc::S_IFREG => ItemKind::File,
                libc::S_IFLNK => {
                    let t = rustix::fs::readlinkat(dirfd, name.as_slice(), Vec::new()).map_err(|e| errno("readlink", &ctx_path, e))?;
                    ItemKind::Symlink(t.into_bytes())
                }
                _ => continue, // sockets, fifos, devices: not copied from a context
            };
            let mut dest = dest_prefix.to_vec();
            if !dest.is_empty() {
                dest.push(b'/');
            }
            dest.extend_from_slice(&r);
            if !excluded {
                out.push(Item {
                    base: m.fd.clone(),
                    rel: r.clone(),
                    dest,
                    ctx_path: ctx_path.clone(),
                    kind: kind.clone(),
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    size: st.st_size.max(0) as u64,
                    mtime: st.st_mtime,
                    mtime_nsec: st.st_mtime_nsec as u32,
                    ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
                    ino: st.st_ino,
                });
            }
            if out.len() > MAX_ITEMS {
                return Err(BuildError::new(BuildErrorKind::InvalidInput, "too many files in COPY sources"));
            }
            if kind == ItemKind::Dir {
                let sub = rustix::fs::openat(dirfd, name.as_slice(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| errno("open", &ctx_path, e))?;
                self.walk_dir(m, &sub, r, dest_prefix, exclude, out, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Opens a listed regular file for reading.
    pub fn open_item(&self, it: &Item) -> Result<std::fs::File, BuildError> {
        let fd = if it.rel.is_empty() {
            // the matched source itself: reopen its O_PATH descriptor readable
            let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*it.base));
            rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        } else {
            open_beneath(&it.base, &it.rel, OFlags::RDONLY | OFlags::NOFOLLOW)
        }
        .map_err(|e| errno("open", &it.ctx_path, e))?;
        let f = std::fs::File::from(fd);
        let st = rustix::fs::fstat(f.as_fd()).map_err(|e| errno("stat", &it.ctx_path, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(BuildError::new(BuildErrorKind::InvalidInput, format!("{}: not a regular file", it.ctx_path)));
        }
        Ok(f)
    }

    /// sha256 of a file's content, from the memo when its stat tuple is unchanged.
    pub fn content_hash(&self, it: &Item) -> Result<String, BuildError> {
        let key = format!("{}{}", self.memo_prefix, it.ctx_path);
        let mtime_ns = it.mtime as i128 * 1_000_000_000 + it.mtime_nsec as i128;
        if self.is_context {
            if let Ok(m) = self.memo.lock() {
                if let Some(e) = m.get(&key) {
                    if e.size == it.size && e.mtime_ns == mtime_ns && e.ino == it.ino && e.ctime_ns == it.ctime_ns {
                        return Ok(e.hash.clone());
                    }
                }
            }
        }
        let mut f = self.open_item(it)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = f.read(&mut buf).map_err(|e| BuildError::new(BuildErrorKind::Internal, format!("read {}: {e}", it.ctx_path)))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let hash = hex::encode(h.finalize());
        if self.is_context {
            if let Ok(mut m) = self.memo.lock() {
                m.insert(key, MemoEntry { size: it.size, mtime_ns, ctime_ns: it.ctime_ns, ino: it.ino, hash: hash.clone() });
            }
            if let Ok(mut d) = self.memo_dirty.lock() {
                *d = true;
            }
        }
        Ok(hash)
    }

    /// The memo, when it changed during this build.
    pub fn take_memo(&self) -> Option<HashMap<String, MemoEntry>> {
        let dirty = self.memo_dirty.lock().map(|d| *d).unwrap_or(false);
        if !dirty {
            return None;
        }
        self.memo.lock().ok().map(|m| m.clone())
    }

    /// Hash of the listed items as COPY would write them (names, types, modes, owners when
    /// preserved, contents, link targets), hashing files in parallel.
    pub fn hash_items(&self, items: &[Item], preserve_owner: bool) -> Result<String, BuildError> {
        let files: Vec<usize> = (0..items.len()).filter(|&i| items[i].kind == ItemKind::File).collect();
        let mut hashes: HashMap<usize, String> = HashMap::new();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8);
        if files.len() > 64 && threads > 1 {
            let chunk = files.len().div_ceil(threads);
            let results: Vec<Result<Vec<(usize, String)>, BuildError>> = std::thread::scope(|s| {
                let hs: Vec<_> = files
                    .chunks(chunk)
                    .map(|c| s.spawn(move || c.iter().map(|&i| Ok((i, self.content_hash(&items[i])?))).collect::<Result<Vec<_>, BuildError>>()))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(BuildError::new(BuildErrorKind::Internal, "hash thread panicked"))))
                    .collect()
            });
            for r in results {
                hashes.extend(r?);
            }
        } else {
            for &i in &files {
                hashes.insert(i, self.content_hash(&items[i])?);
            }
        }
        let mut h = Sha256::new();
        for (i, it) in items.iter().enumerate() {
            h.update(&it.dest);
            h.update([0]);
            match &it.kind {
                ItemKind::File => {
                    h.update(b"f");
                    h.update(hashes.get(&i).map(|s| s.as_bytes()).unwrap_or_default());
                }
                ItemKind::Dir => h.update(b"d"),
                ItemKind::Symlink(t) => {
                    h.update(b"l");
                    h.update(t);
                }
            }
            h.update(format!(" {:o}", it.mode).as_bytes());
            if preserve_owner {
                h.update(format!(" {}:{}", it.uid, it.gid).as_bytes());
            }
            h.update(b"\n");
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Writes the items as a tar stream (names relative to the destination directory).
    /// `chmod` replaces every mode.
    pub fn write_tar<W: std::io::Write>(&self, items: &[Item], chmod: Option<u32>, out: W) -> Result<(), BuildError> {
        let mut w = TarWriter::new(out);
        let arch = |e: berth_archive::ArchiveError| BuildError::new(BuildErrorKind::Internal, format!("copy: {e}"));
        for it in items {
            let mut h = Header {
                name: if it.dest.is_empty() { b"./".to_vec() } else { it.dest.clone() },
                mode: chmod.unwrap_or(it.mode),
                uid: it.uid as u64,
                gid: it.gid as u64,
                mtime: Timestamp { secs: it.mtime, nanos: 0 },
                ..Default::default()
            };
            match &it.kind {
                ItemKind::Dir => {
                    h.entry_type = EntryType::Dir;
                    if !h.name.ends_with(b"/") {
                        h.name.push(b'/');
                    }
                    w.append(&h, &mut std::io::empty()).map_err(arch)?;
                }
                ItemKind::Symlink(t) => {
                    h.entry_type = EntryType::Symlink;
                    h.link_name = t.clone();
                    h.mode = it.mode;
                    w.append(&h, &mut std::io::empty()).map_err(arch)?;
                }
                ItemKind::File => {
                    let f = self.open_item(it)?;
                    let size = f.metadata().map(|m| m.len()).unwrap_or(it.size);
                    h.entry_type = EntryType::Regular;
                    h.size = size;
                    let mut r = f.take(size);
                    w.append(&h, &mut r).map_err(arch)?;
                }
            }
        }
        w.finish().map_err(arch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_refuses_escapes() {
        assert_eq!(clean_source("./a/../b/").unwrap(), "b");
        assert_eq!(clean_source("/x/y").unwrap(), "x/y");
        let e = clean_source("../x").unwrap_err();
        assert!(e.to_string().contains("forbidden path outside the build context: ../x"));
        assert!(clean_source("a/../../x").is_err());
    }

    #[test]
    fn globbing() {
        assert!(fnmatch(b"*.txt", b"a.txt"));
        assert!(!fnmatch(b"*.txt", b"a.txt.bak"));
        assert!(fnmatch(b"a?c", b"abc"));
        assert!(fnmatch(b"[a-c]x", b"bx"));
        assert!(!fnmatch(b"[!a-c]x", b"bx"));
        assert!(fnmatch(b"*", b""));
        assert!(fnmatch(b"a*b*c", b"aXXbYYc"));
    }
}
