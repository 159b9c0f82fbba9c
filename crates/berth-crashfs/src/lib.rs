//! A power-loss simulating filesystem for crash tests (dev only, never shipped).
//!
//! [`CrashFs::mount`] serves an in-memory filesystem over FUSE (`/dev/fuse`, mounted directly
//! as root). Every inode has two states:
//!
//! - the *volatile* state, what the filesystem shows now (and what every read returns);
//! - the *durable* state, what a disk would hold after a power cut.
//!
//! The model is conservative, as a journaling filesystem promises no more than this:
//!
//! - a regular file's data, size, mode, ownership and xattrs become durable on `fsync` or
//!   `fdatasync` of that file (both are treated alike);
//! - a directory's entries (create, mknod, mkdir, symlink, link, unlink, rmdir, rename in or
//!   out) and its own attributes become durable on `fsync` of that directory. A rename is
//!   therefore durable in its new place when the new parent is synced and gone from its old
//!   place when the old parent is synced (only one synced: the inode shows in both places, or
//!   in neither);
//! - an inode created and never synced is durable (once a synced directory names it) as it was
//!   created: an empty file, an empty directory, a symlink to its target, a device node;
//! - `sync(2)`/`syncfs(2)` would make everything durable, but the kernel sends them to FUSE
//!   servers only for virtiofs (`fc->sync_fs`); a plain `/dev/fuse` mount never sees them, so
//!   a `syncfs` alone makes nothing durable here. A test can instead name *marker lines*: a
//!   write of such a line to the control file ([`CrashFs::set_control`], e.g. the engine's
//!   fault-point trace, whose point right after its `syncfs` is known) makes everything
//!   durable, as the `syncfs` just before it would have.
//!
//! A *crash point* is a moment between two durability events (fsync, fsyncdir, marker sync);
//! the durable state changes only at those events, so capturing it after each of them (see
//! [`CrashFs::start_capture`]) enumerates every distinct state a power cut during the
//! operation can leave under this model. [`Durable::materialize`] writes one of them out to a
//! plain directory, which becomes the data root of the next engine open.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const CHUNK: usize = 64 * 1024;
const TTL: Duration = Duration::from_secs(5);
const ROOT: u64 = 1;

/// File contents in shared chunks, so a durable copy costs a vector of pointers.
#[derive(Clone, Default)]
struct Data {
    chunks: Vec<Arc<Vec<u8>>>,
    len: u64,
}

impl Data {
    fn read(&self, off: u64, size: usize) -> Vec<u8> {
        if off >= self.len {
            return Vec::new();
        }
        let end = (off + size as u64).min(self.len);
        let mut out = Vec::with_capacity((end - off) as usize);
        let mut pos = off;
        while pos < end {
            let (i, o) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = ((CHUNK - o) as u64).min(end - pos) as usize;
            match self.chunks.get(i) {
                Some(c) => out.extend_from_slice(&c[o..o + n]),
                None => out.resize(out.len() + n, 0),
            }
            pos += n as u64;
        }
        out
    }

    fn write(&mut self, off: u64, buf: &[u8]) {
        let end = off + buf.len() as u64;
        let need = end.div_ceil(CHUNK as u64) as usize;
        while self.chunks.len() < need {
            self.chunks.push(Arc::new(vec![0; CHUNK]));
        }
        let mut pos = off;
        let mut src = buf;
        while !src.is_empty() {
            let (i, o) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = (CHUNK - o).min(src.len());
            Arc::make_mut(&mut self.chunks[i])[o..o + n].copy_from_slice(&src[..n]);
            src = &src[n..];
            pos += n as u64;
        }
        self.len = self.len.max(end);
    }

    fn truncate(&mut self, len: u64) {
        if len < self.len {
            let keep = len.div_ceil(CHUNK as u64) as usize;
            self.chunks.truncate(keep);
            let o = (len % CHUNK as u64) as usize;
            if o != 0 {
                if let Some(c) = self.chunks.last_mut() {
                    Arc::make_mut(c)[o..].fill(0);
                }
            }
        }
        self.len = len;
    }
}

#[derive(Clone)]
enum Content {
    File(Data),
    Dir(BTreeMap<OsString, u64>),
    Symlink(OsString),
    /// device node, fifo or socket
    Special,
}

/// One inode's state (volatile, or a durable copy of it).
#[derive(Clone)]
pub struct Node {
    kind: FileType,
    perm: u16,
    uid: u32,
    gid: u32,
    rdev: u32,
    xattrs: BTreeMap<OsString, Vec<u8>>,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    content: Content,
}

struct Inode {
    vol: Node,
    nlink: u32,
    /// last known parent and name, for event labels
    parent: u64,
    name: OsString,
}

/// A durable state: what a disk would hold after a power cut at that moment.
#[derive(Clone)]
pub struct Durable {
    /// what happened just before (e.g. `fsync data/meta.redb`)
    pub label: String,
    nodes: Arc<HashMap<u64, Arc<Node>>>,
}

struct Model {
    inodes: HashMap<u64, Inode>,
    durable: Arc<HashMap<u64, Arc<Node>>>,
    next_ino: u64,
    events: u64,
    capture: Option<Vec<Durable>>,
    control: Option<OsString>,
    markers: Vec<String>,
    control_buf: Vec<u8>,
    /// every control line seen, in order (with the event count at that moment)
    control_log: Vec<(u64, String)>,
}

impl Model {
    fn new() -> Model {
        let now = SystemTime::now();
        let root = Node {
            kind: FileType::Directory,
            perm: 0o755,
            uid: 0,
            gid: 0,
            rdev: 0,
            xattrs: BTreeMap::new(),
            atime: now,
            mtime: now,
            ctime: now,
            content: Content::Dir(BTreeMap::new()),
        };
        let mut durable = HashMap::new();
        durable.insert(ROOT, Arc::new(root.clone()));
        let mut inodes = HashMap::new();
        inodes.insert(ROOT, Inode { vol: root, nlink: 1, parent: ROOT, name: OsString::new() });
        Model {
            inodes,
            durable: Arc::new(durable),
            next_ino: 2,
            events: 0,
            capture: None,
            control: None,
            markers: Vec::new(),
            control_buf: Vec::new(),
            control_log: Vec::new(),
        }
    }

    fn path_of(&self, mut ino: u64) -> String {
        let mut parts = Vec::new();
        while ino != ROOT {
            let Some(i) = self.inodes.get(&ino) else { break };
            parts.push(i.name.to_string_lossy().to_string());
            if parts.len() > 64 {
                break;
            }
            ino = i.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let i = self.inodes.get(&ino)?;
        let n = &i.vol;
        let size = match &n.content {
            Content::File(d) => d.len,
            Content::Symlink(t) => t.len() as u64,
            Content::Dir(_) => 4096,
            Content::Special => 0,
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.ctime,
            kind: n.kind,
            perm: n.perm,
            // directories report 1 ("unknown"), as btrfs does: nothing relies on the count
            nlink: if n.kind == FileType::Directory { 1 } else { i.nlink.max(1) },
            uid: n.uid,
            gid: n.gid,
            rdev: n.rdev,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir(&self, ino: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get(&ino).map(|i| &i.vol.content) {
            Some(Content::Dir(d)) => Ok(d),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.vol.content) {
            Some(Content::Dir(d)) => Ok(d),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn touch(&mut self, ino: u64) {
        if let Some(i) = self.inodes.get_mut(&ino) {
            let now = SystemTime::now();
            i.vol.mtime = now;
            i.vol.ctime = now;
        }
    }

    /// A new inode named `name` in `parent`; its creation state is also its durable state
    /// (reachable once a synced directory names it).
    #[allow(clippy::too_many_arguments)]
    fn create(&mut self, req: &Request, parent: u64, name: &OsStr, kind: FileType, perm: u32, content: Content, rdev: u32) -> Result<FileAttr, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = SystemTime::now();
        // setgid directories pass their group on
        let pnode = &self.inodes[&parent].vol;
        let (gid, sgid) = if pnode.perm & 0o2000 != 0 { (pnode.gid, kind == FileType::Directory) } else { (req.gid(), false) };
        let node = Node {
            kind,
            perm: (perm & 0o7777) as u16 | if sgid { 0o2000 } else { 0 },
            uid: req.uid(),
            gid,
            rdev,
            xattrs: BTreeMap::new(),
            atime: now,
            mtime: now,
            ctime: now,
            content,
        };
        Arc::make_mut(&mut self.durable).insert(ino, Arc::new(node.clone()));
        self.inodes.insert(ino, Inode { vol: node, nlink: 1, parent, name: name.to_os_string() });
        self.dir_mut(parent)?.insert(name.to_os_string(), ino);
        self.touch(parent);
        Ok(self.attr(ino).expect("just created"))
    }

    fn unlink_entry(&mut self, parent: u64, name: &OsStr) {
        if let Ok(d) = self.dir_mut(parent) {
            if let Some(ino) = d.remove(name) {
                if let Some(i) = self.inodes.get_mut(&ino) {
                    i.nlink = i.nlink.saturating_sub(1);
                    i.vol.ctime = SystemTime::now();
                }
            }
        }
        self.touch(parent);
    }

    /// A durability event: `ino`'s volatile state becomes durable (`None`: everything).
    fn sync(&mut self, ino: Option<u64>, what: &str) {
        match ino {
            Some(ino) => {
                if let Some(i) = self.inodes.get(&ino) {
                    let n = Arc::new(i.vol.clone());
                    Arc::make_mut(&mut self.durable).insert(ino, n);
                }
            }
            None => {
                let all = self.inodes.iter().map(|(k, i)| (*k, Arc::new(i.vol.clone()))).collect();
                self.durable = Arc::new(all);
            }
        }
        self.events += 1;
        if let Some(c) = self.capture.as_mut() {
            let label = format!("#{} {what}", self.events);
            c.push(Durable { label, nodes: self.durable.clone() });
        }
    }

    fn control_write(&mut self, data: &[u8]) {
        self.control_buf.extend_from_slice(data);
        while let Some(p) = self.control_buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.control_buf.drain(..=p).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).to_string();
            self.control_log.push((self.events, line.clone()));
            if self.markers.contains(&line) {
                self.sync(None, &format!("syncfs (before {line})"));
            }
        }
    }
}

struct Fs {
    model: Arc<Mutex<Model>>,
}

impl Fs {
    fn m(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl fuser::Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let m = self.m();
        match m.dir(parent.0).map(|d| d.get(name).copied()) {
            Ok(Some(ino)) => reply.entry(&TTL, &m.attr(ino).expect("linked inode"), Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.m().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.m();
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        let n = &mut i.vol;
        if let Some(s) = size {
            match &mut n.content {
                Content::File(d) => d.truncate(s),
                Content::Dir(_) => return reply.error(Errno::EISDIR),
                _ => return reply.error(Errno::EINVAL),
            }
            n.mtime = SystemTime::now();
        }
        if let Some(md) = mode {
            n.perm = (md & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if (uid.is_some() || gid.is_some()) && mode.is_none() && n.kind != FileType::Directory {
            // chown clears set-id bits, as the kernel does on local filesystems
            n.perm &= !0o6000;
        }
        if let Some(t) = atime {
            n.atime = time(t);
        }
        if let Some(t) = mtime {
            n.mtime = time(t);
        }
        n.ctime = SystemTime::now();
        reply.attr(&TTL, &m.attr(ino.0).expect("exists"));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.m().inodes.get(&ino.0).map(|i| &i.vol.content) {
            Some(Content::Symlink(t)) => reply.data(t.as_bytes()),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let (kind, content) = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => (FileType::RegularFile, Content::File(Data::default())),
            libc::S_IFCHR => (FileType::CharDevice, Content::Special),
            libc::S_IFBLK => (FileType::BlockDevice, Content::Special),
            libc::S_IFIFO => (FileType::NamedPipe, Content::Special),
            libc::S_IFSOCK => (FileType::Socket, Content::Special),
            _ => return reply.error(Errno::EINVAL),
        };
        match self.m().create(req, parent.0, name, kind, mode & !umask, content, rdev) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.m().create(req, parent.0, name, FileType::Directory, mode & !umask, Content::Dir(BTreeMap::new()), 0) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut m = self.m();
        let ino = match m.dir(parent.0).map(|d| d.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        if m.inodes[&ino].vol.kind == FileType::Directory {
            return reply.error(Errno::EISDIR);
        }
        m.unlink_entry(parent.0, name);
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut m = self.m();
        let ino = match m.dir(parent.0).map(|d| d.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        match m.dir(ino) {
            Ok(d) if !d.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        m.unlink_entry(parent.0, name);
        reply.ok();
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let t = target.as_os_str().to_os_string();
        match self.m().create(req, parent.0, link_name, FileType::Symlink, 0o777, Content::Symlink(t), 0) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(&self, _req: &Request, parent: INodeNo, name: &OsStr, newparent: INodeNo, newname: &OsStr, flags: RenameFlags, reply: ReplyEmpty) {
        let mut m = self.m();
        let (p, np) = (parent.0, newparent.0);
        let src = match m.dir(p).map(|d| d.get(name).copied()) {
            Ok(Some(i)) => i,
            Ok(None) => return reply.error(Errno::ENOENT),
            Err(e) => return reply.error(e),
        };
        let dst = match m.dir(np) {
            Ok(d) => d.get(newname).copied(),
            Err(e) => return reply.error(e),
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let Some(dst) = dst else { return reply.error(Errno::ENOENT) };
            m.dir_mut(p).expect("dir").insert(name.to_os_string(), dst);
            m.dir_mut(np).expect("dir").insert(newname.to_os_string(), src);
            for (ino, par, n) in [(src, np, newname), (dst, p, name)] {
                let i = m.inodes.get_mut(&ino).expect("inode");
                i.parent = par;
                i.name = n.to_os_string();
            }
            m.touch(p);
            m.touch(np);
            return reply.ok();
        }
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        if src == dst.unwrap_or(0) {
            return reply.ok();
        }
        if let Some(d) = dst {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return reply.error(Errno::EEXIST);
            }
            let (sdir, ddir) = (m.inodes[&src].vol.kind == FileType::Directory, m.inodes[&d].vol.kind == FileType::Directory);
            if sdir && !ddir {
                return reply.error(Errno::ENOTDIR);
            }
            if !sdir && ddir {
                return reply.error(Errno::EISDIR);
            }
            if ddir && !m.dir(d).expect("dir").is_empty() {
                return reply.error(Errno::ENOTEMPTY);
            }
            m.unlink_entry(np, newname);
        }
        m.dir_mut(p).expect("dir").remove(name);
        m.dir_mut(np).expect("dir").insert(newname.to_os_string(), src);
        let i = m.inodes.get_mut(&src).expect("inode");
        i.parent = np;
        i.name = newname.to_os_string();
        i.vol.ctime = SystemTime::now();
        m.touch(p);
        m.touch(np);
        reply.ok();
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let mut m = self.m();
        match m.dir(newparent.0) {
            Ok(d) if d.contains_key(newname) => return reply.error(Errno::EEXIST),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        if i.vol.kind == FileType::Directory {
            return reply.error(Errno::EPERM);
        }
        i.nlink += 1;
        i.vol.ctime = SystemTime::now();
        m.dir_mut(newparent.0).expect("dir").insert(newname.to_os_string(), ino.0);
        m.touch(newparent.0);
        reply.entry(&TTL, &m.attr(ino.0).expect("inode"), Generation(0));
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.m().inodes.contains_key(&ino.0) {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.m().inodes.get(&ino.0).map(|i| &i.vol.content) {
            Some(Content::File(d)) => reply.data(&d.read(offset, size as usize)),
            Some(Content::Dir(_)) => reply.error(Errno::EISDIR),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut m = self.m();
        let is_control = {
            let i = m.inodes.get(&ino.0);
            i.is_some_and(|i| i.parent == ROOT && m.control.as_deref() == Some(i.name.as_os_str()) && i.nlink > 0)
        };
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        let Content::File(d) = &mut i.vol.content else { return reply.error(Errno::EINVAL) };
        // the control file is append-only in spirit: keep its bytes in order
        let off = if is_control { d.len } else { offset };
        d.write(off, data);
        let now = SystemTime::now();
        i.vol.mtime = now;
        i.vol.ctime = now;
        // a write by an unprivileged process clears set-id bits; berth writes as root
        if is_control {
            m.control_write(data);
        }
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let mut m = self.m();
        let what = format!("{} {}", if datasync { "fdatasync" } else { "fsync" }, m.path_of(ino.0));
        m.sync(Some(ino.0), &what);
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let m = self.m();
        let d = match m.dir(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let parent = m.inodes[&ino.0].parent;
        let mut all: Vec<(u64, FileType, &OsStr)> = vec![(ino.0, FileType::Directory, OsStr::new(".")), (parent, FileType::Directory, OsStr::new(".."))];
        for (n, c) in d {
            all.push((*c, m.inodes[c].vol.kind, n.as_os_str()));
        }
        for (k, (i, kind, n)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(i), (k + 1) as u64, kind, n) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut m = self.m();
        let what = format!("fsync dir {}/", m.path_of(ino.0));
        m.sync(Some(ino.0), &what);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 40 GiB, mostly free: the model keeps everything in memory, tests stay small
        reply.statfs(10 << 20, 9 << 20, 9 << 20, 1 << 24, 1 << 23, 4096, 255, 4096);
    }

    fn setxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32, _position: u32, reply: ReplyEmpty) {
        let mut m = self.m();
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        let exists = i.vol.xattrs.contains_key(name);
        if flags & libc::XATTR_CREATE != 0 && exists {
            return reply.error(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return reply.error(Errno::NO_XATTR);
        }
        i.vol.xattrs.insert(name.to_os_string(), value.to_vec());
        i.vol.ctime = SystemTime::now();
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let m = self.m();
        let Some(i) = m.inodes.get(&ino.0) else { return reply.error(Errno::ENOENT) };
        match i.vol.xattrs.get(name) {
            None => reply.error(Errno::NO_XATTR),
            Some(v) if size == 0 => reply.size(v.len() as u32),
            Some(v) if (size as usize) < v.len() => reply.error(Errno::ERANGE),
            Some(v) => reply.data(v),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let m = self.m();
        let Some(i) = m.inodes.get(&ino.0) else { return reply.error(Errno::ENOENT) };
        let mut out = Vec::new();
        for k in i.vol.xattrs.keys() {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
        }
        if size == 0 {
            reply.size(out.len() as u32);
        } else if (size as usize) < out.len() {
            reply.error(Errno::ERANGE);
        } else {
            reply.data(&out);
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut m = self.m();
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        if i.vol.xattrs.remove(name).is_none() {
            return reply.error(Errno::NO_XATTR);
        }
        i.vol.ctime = SystemTime::now();
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, _flags: i32, reply: ReplyCreate) {
        match self.m().create(req, parent.0, name, FileType::RegularFile, mode & !umask, Content::File(Data::default()), 0) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, length: u64, mode: i32, reply: ReplyEmpty) {
        let mut m = self.m();
        let Some(i) = m.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        let Content::File(d) = &mut i.vol.content else { return reply.error(Errno::ENODEV) };
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        if offset + length > d.len {
            let end = offset + length;
            d.write(end - 1, &[0]);
        }
        reply.ok();
    }
}

/// A mounted crash filesystem. Dropping it unmounts (lazily, so a failing test that still
/// holds files there cannot keep the mount).
pub struct CrashFs {
    model: Arc<Mutex<Model>>,
    session: Option<fuser::BackgroundSession>,
    path: PathBuf,
}

impl CrashFs {
    /// Mount an empty crash filesystem on `path` (an existing directory). Needs root.
    pub fn mount(path: &Path) -> io::Result<CrashFs> {
        let model = Arc::new(Mutex::new(Model::new()));
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("berth-crashfs".into()),
            MountOption::Subtype("crashfs".into()),
            MountOption::Dev,
            MountOption::Suid,
            MountOption::RW,
        ];
        cfg.acl = fuser::SessionACL::All;
        let session = fuser::spawn_mount(Fs { model: model.clone() }, path, &cfg)?;
        Ok(CrashFs { model, session: Some(session), path: path.to_path_buf() })
    }

    fn m(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Name the control file (a file in the filesystem's root) and the lines that, written
    /// to it, make everything durable (they follow a `syncfs` the model cannot see).
    pub fn set_control(&self, name: &str, sync_markers: &[&str]) {
        let mut m = self.m();
        m.control = Some(name.into());
        m.markers = sync_markers.iter().map(|s| s.to_string()).collect();
    }

    /// Control lines written so far, with the number of durability events before each.
    pub fn control_log(&self) -> Vec<(u64, String)> {
        self.m().control_log.clone()
    }

    /// Make everything durable now (a `sync` the test asks for, e.g. after preparing a state).
    pub fn sync_all(&self) {
        self.m().sync(None, "sync (test)");
    }

    /// Durability events (fsync, fsyncdir, marker syncs) so far.
    pub fn events(&self) -> u64 {
        self.m().events
    }

    /// The durable state now.
    pub fn durable(&self) -> Durable {
        let m = self.m();
        Durable { label: format!("after event {}", m.events), nodes: m.durable.clone() }
    }

    /// Start recording the durable state after every durability event (the state now is the
    /// first entry).
    pub fn start_capture(&self) {
        let mut m = self.m();
        let first = Durable { label: format!("#{} (start)", m.events), nodes: m.durable.clone() };
        m.capture = Some(vec![first]);
    }

    /// Stop recording; returns every state recorded, in order.
    pub fn stop_capture(&self) -> Vec<Durable> {
        self.m().capture.take().unwrap_or_default()
    }
}

impl Drop for CrashFs {
    fn drop(&mut self) {
        // MNT_DETACH: a leftover process with files open there must not keep the mount; the
        // session ends when the last reference goes.
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        if let Some(s) = self.session.take() {
            // the lazy unmount above makes fuser's own unmount a no-op; the kernel ends the
            // connection once no file is open there: join the thread then, but never hang a
            // test on a leftover process (the thread ends by itself when it goes)
            for _ in 0..200 {
                if s.guard.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if s.guard.is_finished() {
                let _ = s.join();
            } else {
                std::mem::forget(s);
            }
        }
    }
}

impl Durable {
    /// Write this durable state out under `dst` (an existing, empty directory on a plain
    /// filesystem): file data, directories, symlinks, hardlinks, device nodes, modes,
    /// ownership and xattrs. Returns the number of inodes written.
    pub fn materialize(&self, dst: &Path) -> io::Result<usize> {
        let mut links: HashMap<u64, PathBuf> = HashMap::new();
        let mut dirs_done = std::collections::HashSet::new();
        let mut post: Vec<(PathBuf, u64)> = Vec::new();
        let mut count = 0;
        let root = self.nodes.get(&ROOT).ok_or_else(|| io::Error::other("no root"))?;
        set_xattrs(dst, root)?;
        let mut stack = vec![(dst.to_path_buf(), ROOT)];
        dirs_done.insert(ROOT);
        while let Some((dir, ino)) = stack.pop() {
            let Some(node) = self.nodes.get(&ino) else { continue };
            let Content::Dir(entries) = &node.content else { continue };
            for (name, child) in entries {
                let p = dir.join(name);
                let Some(c) = self.nodes.get(child) else { continue };
                if let Some(first) = links.get(child) {
                    std::fs::hard_link(first, &p)?;
                    continue;
                }
                count += 1;
                match &c.content {
                    Content::Dir(_) => {
                        // a directory named twice (a rename only half durable): keep the
                        // first, as fsck would
                        if !dirs_done.insert(*child) {
                            continue;
                        }
                        std::fs::create_dir(&p)?;
                        stack.push((p.clone(), *child));
                        post.push((p, *child));
                        continue;
                    }
                    Content::File(d) => {
                        let mut f = std::fs::File::create(&p)?;
                        let mut off = 0u64;
                        use std::io::Write;
                        while off < d.len {
                            let b = d.read(off, 1 << 20);
                            f.write_all(&b)?;
                            off += b.len() as u64;
                        }
                    }
                    Content::Symlink(t) => std::os::unix::fs::symlink(t, &p)?,
                    Content::Special => {
                        let ft = match c.kind {
                            FileType::CharDevice => rustix::fs::FileType::CharacterDevice,
                            FileType::BlockDevice => rustix::fs::FileType::BlockDevice,
                            FileType::NamedPipe => rustix::fs::FileType::Fifo,
                            _ => rustix::fs::FileType::Socket,
                        };
                        rustix::fs::mknodat(rustix::fs::CWD, &p, ft, rustix::fs::Mode::from_raw_mode(0o600), c.rdev as u64)?;
                    }
                }
                links.insert(*child, p.clone());
                set_meta(&p, c)?;
            }
        }
        // directories last, deepest first, so read-only modes do not stop the writing
        for (p, ino) in post.into_iter().rev() {
            set_meta(&p, &self.nodes[&ino])?;
        }
        Ok(count)
    }
}

fn set_xattrs(p: &Path, n: &Node) -> io::Result<()> {
    for (k, v) in &n.xattrs {
        rustix::fs::lsetxattr(p, k.as_os_str(), v, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

fn set_meta(p: &Path, n: &Node) -> io::Result<()> {
    rustix::fs::chownat(
        rustix::fs::CWD,
        p,
        Some(rustix::fs::Uid::from_raw(n.uid)),
        Some(rustix::fs::Gid::from_raw(n.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    set_xattrs(p, n)?;
    if n.kind != FileType::Symlink {
        rustix::fs::chmod(p, rustix::fs::Mode::from_raw_mode(n.perm as u32))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Data;

    #[test]
    fn data_matches_a_vec_model() {
        let mut x = 12345u64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut d = Data::default();
        let mut v: Vec<u8> = Vec::new();
        for i in 0..3000 {
            match rnd(10) {
                0 => {
                    let l = rnd(400_000);
                    d.truncate(l);
                    v.resize(l as usize, 0);
                }
                _ => {
                    let off = rnd(300_000);
                    let len = rnd(200_000) as usize;
                    let buf: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                    d.write(off, &buf);
                    if v.len() < off as usize + len {
                        v.resize(off as usize + len, 0);
                    }
                    v[off as usize..off as usize + len].copy_from_slice(&buf);
                }
            }
            assert_eq!(d.len, v.len() as u64);
            let off = rnd(v.len() as u64 + 1);
            let n = rnd(300_000) as usize;
            let end = (off as usize + n).min(v.len());
            assert_eq!(d.read(off, n), v[off as usize..end.max(off as usize)].to_vec(), "step {i}");
        }
    }
}
