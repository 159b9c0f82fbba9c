//! Applying a layer tar stream onto a directory, safely.
//!
//! The archive is hostile. Each entry name is cleaned lexically (`..` clamped, leading `/`
//! dropped), its parent directory is resolved inside the root by the kernel
//! (`openat2(RESOLVE_IN_ROOT)`, see [`crate::root`]) and cached as a descriptor, and the
//! final component is created/changed/removed with `*at` calls that never follow it. So a
//! symlink in the archive can redirect a later entry only to another place *inside* the
//! root, hard links only link inodes inside the root, and metadata is never applied through
//! a symlink.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::ArchiveError;
use crate::idmap::IdMap;
use crate::root::{components, join, list_dir, open_root, openat_in_root, remove_all_at};
use crate::tar::{EntryType, Header, TarLimits, TarReader, Timestamp};

const COPY_BUF: usize = 1 << 20;
/// Parent directory descriptors kept open at once (well under `RLIMIT_NOFILE`).
const DIR_CACHE_MAX: usize = 256;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
/// Where aufs-era layers keep the targets of hard links.
const AUFS_LINK_DIR: &[u8] = b".wh..wh.plnk";

/// How OCI whiteout entries (`.wh.<name>`, `.wh..wh..opq`) are applied.
///
/// Both modes give the same visible tree (tested against each other through a real
/// overlayfs mount, and against umoci): as the OCI image spec says, a whiteout only hides
/// what *lower* layers have; an entry created by the same layer stays, and if it is a
/// directory its lower contents are hidden (it becomes opaque). The directory holding a
/// whiteout is created when missing (like Docker), unless its path runs through a dangling
/// symlink or a non-directory, where there is nothing to hide. `.wh..`, `.wh...` and `.wh.`
/// alone are invalid archives; other aufs metadata (`.wh..wh.*`) is skipped, except the
/// `.wh..wh.plnk` hard link targets of aufs-era layers, which are used and then removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The target directory is an overlayfs upper layer: `.wh.x` becomes a character device
    /// 0:0 named `x`, and `.wh..wh..opq` sets `trusted.overlay.opaque=y` (or
    /// `user.overlay.opaque=y` with [`ApplyOptions::overlay_userxattr`]) on its directory, so
    /// the kernel hides the lower layers' entries.
    Overlay,
    /// The target is a flat tree (import, `cp`, `ADD`, a squashed rootfs): whiteouts delete
    /// in place; an opaque marker deletes everything under its directory that this layer did
    /// not itself create.
    Remove,
}

/// Options of [`apply_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// How whiteouts are applied.
    pub whiteouts: WhiteoutMode,
    /// Use the `user.overlay.*` xattr namespace for opaque markers (rootless overlayfs mounted
    /// with `userxattr`).
    pub overlay_userxattr: bool,
    /// Set owners from the archive (rootful). Without it files belong to the caller,
    /// setuid/setgid bits are dropped from non-directories, and `security.capability`,
    /// `trusted.*` and `system.*` xattrs are not applied.
    pub same_owner: bool,
    /// Give every entry this owner (uid, gid) instead of the archive's: `docker cp` without
    /// `-a` (the container's root) and build `ADD/COPY --chown`. Needs the privilege to chown.
    pub force_owner: Option<(u32, u32)>,
    /// Map the archive's (container) ids to host ids (`--userns-remap`); an id outside the
    /// map is an error. Applies to `force_owner` too.
    pub id_map: Option<IdMap>,
    /// Create character and block devices; without it they are skipped with a warning.
    pub allow_devices: bool,
    /// Ignore an entry naming the root itself (`./`) instead of applying its owner, mode and
    /// times to the root: Docker's `Untar` does so for `docker cp` and `ADD`, while layer
    /// unpack applies it.
    pub skip_root_entry: bool,
    /// Refuse to replace a directory with a non-directory or the reverse (Docker's
    /// `NoOverwriteDirNonDir`, used by `docker cp`).
    pub no_overwrite_dir_non_dir: bool,
    /// Most tar headers accepted (BOUND).
    pub max_entries: u64,
    /// Most file data bytes accepted (BOUND).
    pub max_bytes: u64,
}

impl Default for ApplyOptions {
    /// `Remove` whiteouts, owners and devices when running as root, [`TarLimits::default`].
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        let limits = TarLimits::default();
        ApplyOptions {
            whiteouts: WhiteoutMode::Remove,
            overlay_userxattr: false,
            same_owner: root,
            force_owner: None,
            id_map: None,
            allow_devices: root,
            skip_root_entry: false,
            no_overwrite_dir_non_dir: false,
            max_entries: limits.max_entries,
            max_bytes: limits.max_bytes,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyStats {
    /// Entries applied (whiteouts included, skipped devices and global headers excluded).
    pub entries: u64,
    /// File data bytes written.
    pub bytes: u64,
    /// Entries skipped by policy (devices without `allow_devices`).
    pub skipped: u64,
}

/// Applies an uncompressed tar stream onto the directory `root`.
///
/// Entries are applied in archive order, the last of duplicate names wins; an entry replaces
/// whatever is at its path unless both are directories (then the metadata is updated).
/// Missing parent directories are created (0755). Directory times are set after all entries.
/// An entry naming the root (`./`) updates the root's metadata unless
/// [`ApplyOptions::skip_root_entry`]. Hard links to a missing target, a directory or
/// themselves, non-directory entries for the root, path components over 255 bytes and entry
/// types other than files, dirs, links, devices and FIFOs are errors.
/// After the end-of-archive marker the rest of `tar` is read and discarded, so a digest or
/// decompression check wrapped around it sees every byte.
///
/// On error the tree is left partially applied: callers apply into a staging directory and
/// delete it on failure. Nothing is fsynced; callers `syncfs` the layer once.
///
/// ```no_run
/// use berth_archive::{apply_layer, decompress, ApplyOptions, WhiteoutMode};
/// let blob = std::fs::File::open("layer.tar.gz")?;
/// let tar = decompress(blob, 8 << 30)?;
/// let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, ..ApplyOptions::default() };
/// let stats = apply_layer(std::path::Path::new("/staging/fs"), tar, &opts)?;
/// println!("{} entries, {} bytes", stats.entries, stats.bytes);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn apply_layer<R: Read>(
    root: &Path,
    tar: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ArchiveError> {
    let rootfd = open_root(root)?;
    apply_layer_at(rootfd.as_fd(), tar, opts)
}

/// Like [`apply_layer`] with an already open root directory descriptor.
pub fn apply_layer_at<R: Read>(
    root: BorrowedFd<'_>,
    tar: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ArchiveError> {
    let mut reader = TarReader::with_limits(
        tar,
        TarLimits {
            max_entries: opts.max_entries,
            max_bytes: opts.max_bytes,
        },
    );
    let mut a = Applier {
        root,
        opts,
        dirs: HashMap::new(),
        dir_times: Vec::new(),
        created: HashSet::new(),
        buf: vec![0u8; COPY_BUF],
        stats: ApplyStats::default(),
        aufs_links: false,
    };
    while let Some(h) = reader.next_header()? {
        a.entry(&h, &mut reader)?;
    }
    if a.aufs_links {
        remove_all_at(root, AUFS_LINK_DIR)
            .map_err(|e| ArchiveError::fs("remove", AUFS_LINK_DIR, e))?;
    }
    a.finish_dir_times()?;
    let mut rest = reader.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(ArchiveError::from_read)?;
    Ok(a.stats)
}

struct Applier<'a> {
    root: BorrowedFd<'a>,
    opts: &'a ApplyOptions,
    /// Cleaned directory path -> its descriptor, resolved in root. Cleared whenever a
    /// directory or symlink is removed, since that can change what a path resolves to.
    dirs: HashMap<Vec<u8>, Rc<OwnedFd>>,
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    /// Paths created by this layer (with their ancestors): whiteouts and opaque markers only
    /// act on what lower layers left.
    created: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    stats: ApplyStats,
    /// `.wh..wh.plnk/` was populated and must be removed at the end.
    aufs_links: bool,
}

fn ts(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos),
    }
}

impl<'a> Applier<'a> {
    fn entry<R: Read>(&mut self, h: &Header, r: &mut TarReader<R>) -> Result<(), ArchiveError> {
        match h.entry_type {
            EntryType::GlobalPax => return Ok(()),
            EntryType::Other(t) => {
                return Err(ArchiveError::Unsupported(format!(
                    "unhandled tar header type {:?} for {}",
                    char::from(t),
                    String::from_utf8_lossy(&h.name)
                )))
            }
            _ => {}
        }
        let comps = components(&h.name);
        if let Some(c) = comps.iter().find(|c| c.len() > 255) {
            return Err(ArchiveError::Invalid(format!(
                "path component of {} bytes in {}",
                c.len(),
                String::from_utf8_lossy(&h.name)
            )));
        }
        let path = join(&comps);
        if let Some(&top) = comps.first() {
            if top.starts_with(WHITEOUT_META_PREFIX) && top != WHITEOUT_OPAQUE {
                // aufs metadata (Docker skips it). Regular files in `.wh..wh.plnk/` are the
                // targets of the layer's hard links: created, then removed at the end.
                let plnk_file =
                    top == AUFS_LINK_DIR && comps.len() == 2 && h.entry_type == EntryType::Regular;
                if !plnk_file {
                    return Ok(());
                }
                self.aufs_links = true;
            }
        }
        let Some((base, parent_comps)) = comps.split_last() else {
            return self.root_entry(h);
        };
        let base: &[u8] = base;
        if base.starts_with(WHITEOUT_PREFIX) {
            self.stats.entries += 1;
            return self.whiteout(h, parent_comps, base);
        }
        let parent_path = join(parent_comps);
        let parent = self.parent(&parent_path)?;
        let parent = parent.as_fd();
        match h.entry_type {
            EntryType::Regular => self.regular(h, r, parent, base, &path)?,
            EntryType::Dir => self.dir(h, parent, base, &path)?,
            EntryType::Symlink => self.symlink(h, parent, base, &path)?,
            EntryType::Link => self.hardlink(h, parent, base, &path)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if h.entry_type != EntryType::Fifo && !self.opts.allow_devices {
                    tracing::warn!(
                        path = %String::from_utf8_lossy(&path),
                        "skipping device node (devices not allowed)"
                    );
                    self.stats.skipped += 1;
                    return Ok(());
                }
                self.node(h, parent, base, &path)?
            }
            EntryType::GlobalPax | EntryType::Other(_) => {}
        }
        self.stats.entries += 1;
        self.mark_created(path);
        Ok(())
    }

    /// Records `path` and its ancestors as created by this layer.
    fn mark_created(&mut self, mut path: Vec<u8>) {
        while self.created.insert(path.clone()) {
            match path.iter().rposition(|&b| b == b'/') {
                Some(i) => path.truncate(i),
                None => break,
            }
        }
    }

    /// Descriptor of a directory (by cleaned path), created if missing.
    fn parent(&mut self, path: &[u8]) -> Result<Rc<OwnedFd>, ArchiveError> {
        if let Some(fd) = self.dirs.get(path) {
            return Ok(Rc::clone(fd));
        }
        let fd = match openat_in_root(
            self.root,
            path,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => crate::root::mkdir_all_in_root_at(self.root, path, 0o755)?,
            Err(e) => return Err(ArchiveError::fs("open directory", path, e)),
        };
        let fd = Rc::new(fd);
        self.cache(path.to_vec(), Rc::clone(&fd));
        Ok(fd)
    }

    fn cache(&mut self, path: Vec<u8>, fd: Rc<OwnedFd>) {
        if self.dirs.len() >= DIR_CACHE_MAX {
            self.dirs.clear();
        }
        self.dirs.insert(path, fd);
    }

    /// Removes whatever is at `parent/base` (recursively, never following symlinks).
    fn remove(
        &mut self,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        let st = match rfs::statat(parent, base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(ArchiveError::fs("stat", path, e)),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            self.dirs.clear();
        }
        remove_all_at(parent, base).map_err(|e| ArchiveError::fs("remove", path, e))?;
        Ok(())
    }

    /// Runs `create`; if the name exists, removes it and runs `create` once more.
    fn create_replacing<T>(
        &mut self,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
        op: &'static str,
        mut create: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, ArchiveError> {
        match create() {
            Ok(v) => Ok(v),
            Err(Errno::EXIST) => {
                if self.opts.no_overwrite_dir_non_dir
                    && rfs::statat(parent, base, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite directory {} with non-directory",
                        String::from_utf8_lossy(path)
                    )));
                }
                self.remove(parent, base, path)?;
                create().map_err(|e| ArchiveError::fs(op, path, e))
            }
            Err(e) => Err(ArchiveError::fs(op, path, e)),
        }
    }

    fn regular<R: Read>(
        &mut self,
        h: &Header,
        r: &mut TarReader<R>,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        let fd = self.create_replacing(parent, base, path, "create", || {
            rfs::openat(
                parent,
                base,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        let mut file = std::fs::File::from(fd);
        let mut left = h.size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = r
                .read_data(&mut self.buf[..want])
                .map_err(ArchiveError::from_read)?;
            file.write_all(&self.buf[..n])
                .map_err(|e| ArchiveError::fs("write", path, e))?;
            left -= n as u64;
        }
        self.stats.bytes += h.size;
        let fd = file.as_fd();
        self.owner_fd(fd, h, path)?;
        rfs::fchmod(fd, Mode::from_raw_mode(self.mode(h, false)))
            .map_err(|e| ArchiveError::fs("chmod", path, e))?;
        self.xattrs_fd(fd, h, path)?;
        rfs::futimens(fd, &self.times(h)).map_err(|e| ArchiveError::fs("set times", path, e))?;
        Ok(())
    }

    fn dir(
        &mut self,
        h: &Header,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        let mut make_opaque = false;
        match rfs::mkdirat(parent, base, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(parent, base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ArchiveError::fs("stat", path, e))?;
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft != FileType::Directory && self.opts.no_overwrite_dir_non_dir {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite non-directory {} with directory",
                        String::from_utf8_lossy(path)
                    )));
                }
                if ft != FileType::Directory {
                    // A directory re-created over a whiteout must hide the lower one, like
                    // overlayfs does for rmdir + mkdir.
                    make_opaque = self.opts.whiteouts == WhiteoutMode::Overlay
                        && ft == FileType::CharacterDevice
                        && st.st_rdev == 0;
                    self.remove(parent, base, path)?;
                    rfs::mkdirat(parent, base, Mode::from_raw_mode(0o700))
                        .map_err(|e| ArchiveError::fs("mkdir", path, e))?;
                }
            }
            Err(e) => return Err(ArchiveError::fs("mkdir", path, e)),
        }
        let fd = rfs::openat(
            parent,
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::fs("open directory", path, e))?;
        if make_opaque {
            rfs::fsetxattr(&fd, self.opaque_xattr(), b"y", XattrFlags::empty())
                .map_err(|e| ArchiveError::fs("set opaque xattr", path, e))?;
        }
        self.dir_meta(fd.as_fd(), h, path)?;
        self.cache(path.to_vec(), Rc::new(fd));
        Ok(())
    }

    fn dir_meta(
        &mut self,
        fd: BorrowedFd<'_>,
        h: &Header,
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        self.owner_fd(fd, h, path)?;
        rfs::fchmod(fd, Mode::from_raw_mode(self.mode(h, true)))
            .map_err(|e| ArchiveError::fs("chmod", path, e))?;
        self.xattrs_fd(fd, h, path)?;
        self.dir_times.push((path.to_vec(), self.times(h)));
        Ok(())
    }

    /// A directory entry naming the root itself (`./`): update the root's metadata.
    fn root_entry(&mut self, h: &Header) -> Result<(), ArchiveError> {
        if h.entry_type != EntryType::Dir {
            return Err(ArchiveError::Invalid(format!(
                "entry {} would replace the root directory",
                String::from_utf8_lossy(&h.name)
            )));
        }
        if self.opts.skip_root_entry {
            return Ok(());
        }
        let fd = openat_in_root(
            self.root,
            b"",
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::fs("open", b"/", e))?;
        self.dir_meta(fd.as_fd(), h, b"")?;
        self.stats.entries += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        h: &Header,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        self.create_replacing(parent, base, path, "symlink", || {
            rfs::symlinkat(h.link_name.as_slice(), parent, base)
        })?;
        self.owner_at(parent, base, h, path)?;
        self.xattrs_at(parent, base, h, path)?;
        rfs::utimensat(parent, base, &self.times(h), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ArchiveError::fs("set times", path, e))?;
        Ok(())
    }

    fn hardlink(
        &mut self,
        h: &Header,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        let tcomps = components(&h.link_name);
        let Some((tbase, tparent)) = tcomps.split_last() else {
            return Err(ArchiveError::Invalid(format!(
                "hard link {} to the root directory",
                String::from_utf8_lossy(path)
            )));
        };
        let tpath = join(&tcomps);
        if tpath == path {
            // Docker fails these too (it removes the path, then finds no target).
            return Err(ArchiveError::Invalid(format!(
                "hard link {} to itself",
                String::from_utf8_lossy(path)
            )));
        }
        // The target's parent is resolved inside the root; its last component is not
        // followed (linkat without AT_SYMLINK_FOLLOW), so only inodes in the root are linked.
        let tparent_fd = openat_in_root(
            self.root,
            &join(tparent),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::fs("hard link target", &tpath, e))?;
        let tbase: &[u8] = tbase;
        match rfs::statat(&tparent_fd, tbase, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(ArchiveError::Invalid(format!(
                    "hard link {} to directory {}",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(&tpath)
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(ArchiveError::fs("hard link target", &tpath, e)),
        }
        self.create_replacing(parent, base, path, "link", || {
            rfs::linkat(&tparent_fd, tbase, parent, base, AtFlags::empty())
        })
    }

    fn node(
        &mut self,
        h: &Header,
        parent: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        let (ft, dev) = match h.entry_type {
            EntryType::Char => (
                FileType::CharacterDevice,
                rfs::makedev(h.dev_major, h.dev_minor),
            ),
            EntryType::Block => (
                FileType::BlockDevice,
                rfs::makedev(h.dev_major, h.dev_minor),
            ),
            _ => (FileType::Fifo, 0),
        };
        self.create_replacing(parent, base, path, "mknod", || {
            rfs::mknodat(parent, base, ft, Mode::from_raw_mode(0o600), dev)
        })?;
        self.owner_at(parent, base, h, path)?;
        chmod_nofollow(parent, base, self.mode(h, false))
            .map_err(|e| ArchiveError::fs("chmod", path, e))?;
        self.xattrs_at(parent, base, h, path)?;
        rfs::utimensat(parent, base, &self.times(h), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| ArchiveError::fs("set times", path, e))?;
        Ok(())
    }

    /// Directory holding a whiteout, created if missing (like Docker, in both modes, so a
    /// flat tree and stacked overlay layers agree); `None` when the path runs through a
    /// dangling symlink or a non-directory: there is nothing to hide there.
    fn whiteout_dir(&mut self, path: &[u8]) -> Result<Option<Rc<OwnedFd>>, ArchiveError> {
        if let Some(fd) = self.dirs.get(path) {
            return Ok(Some(Rc::clone(fd)));
        }
        let fd = match openat_in_root(
            self.root,
            path,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match crate::root::mkdir_all_no_dangling(self.root, path, 0o755)? {
                    Some(fd) => fd,
                    None => return Ok(None),
                }
            }
            Err(Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(ArchiveError::fs("open directory", path, e)),
        };
        let fd = Rc::new(fd);
        self.cache(path.to_vec(), Rc::clone(&fd));
        Ok(Some(fd))
    }

    fn whiteout(
        &mut self,
        h: &Header,
        parent_comps: &[&[u8]],
        base: &[u8],
    ) -> Result<(), ArchiveError> {
        let parent_path = join(parent_comps);
        if base == WHITEOUT_OPAQUE {
            return self.opaque(&parent_path);
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            // Other aufs metadata (.wh..wh.plnk, ...): never materialised.
            return Ok(());
        }
        let name = &base[WHITEOUT_PREFIX.len()..];
        if name.is_empty() || name == b"." || name == b".." {
            return Err(ArchiveError::Invalid(format!(
                "invalid whiteout name {}",
                String::from_utf8_lossy(&h.name)
            )));
        }
        let mut path = parent_path.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let Some(parent) = self.whiteout_dir(&parent_path)? else {
            return Ok(());
        };
        let parent = parent.as_fd();
        if self.created.contains(&path) {
            // OCI: a whiteout only hides what lower layers have. An entry of this layer stays;
            // if it is a directory, the lower one's contents are hidden (it becomes opaque).
            return match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    self.opaque(&path)
                }
                _ => Ok(()),
            };
        }
        match self.opts.whiteouts {
            WhiteoutMode::Remove => {
                self.remove(parent, name, &path)?;
                self.created.remove(&path);
            }
            WhiteoutMode::Overlay => {
                self.create_replacing(parent, name, &path, "mknod whiteout", || {
                    rfs::mknodat(parent, name, FileType::CharacterDevice, Mode::empty(), 0)
                })?;
                self.owner_at(parent, name, h, &path)?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_path: &[u8]) -> Result<(), ArchiveError> {
        let Some(dir) = self.whiteout_dir(dir_path)? else {
            return Ok(());
        };
        let fd = rfs::openat(
            dir.as_fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::fs("open directory", dir_path, e))?;
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                rfs::fsetxattr(&fd, self.opaque_xattr(), b"y", XattrFlags::empty())
                    .map_err(|e| ArchiveError::fs("set opaque xattr", dir_path, e))?;
            }
            WhiteoutMode::Remove => self.remove_lower(fd.as_fd(), dir_path, 0)?,
        }
        Ok(())
    }

    /// Removes everything under `dir` that this layer did not create, descending into the
    /// directories it did create (their lower contents are hidden too, as under an opaque
    /// overlay directory).
    fn remove_lower(
        &mut self,
        dir: BorrowedFd<'_>,
        dir_path: &[u8],
        depth: usize,
    ) -> Result<(), ArchiveError> {
        if depth > crate::root::MAX_DEPTH {
            return Err(ArchiveError::fs("remove", dir_path, Errno::LOOP));
        }
        let children = list_dir(dir).map_err(|e| ArchiveError::fs("list", dir_path, e))?;
        for child in children {
            let mut p = dir_path.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&child);
            if !self.created.contains(&p) {
                self.remove(dir, &child, &p)?;
                continue;
            }
            let sub = match rfs::openat(
                dir,
                child.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Not a directory (or gone): nothing below it.
                Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(ArchiveError::fs("open directory", &p, e)),
            };
            self.remove_lower(sub.as_fd(), &p, depth + 1)?;
        }
        Ok(())
    }

    fn opaque_xattr(&self) -> &'static str {
        if self.opts.overlay_userxattr {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        }
    }

    fn mode(&self, h: &Header, is_dir: bool) -> u32 {
        let mut mode = h.mode & 0o7777;
        if !self.opts.same_owner && !is_dir {
            mode &= !0o6000;
        }
        mode
    }

    fn times(&self, h: &Header) -> Timestamps {
        let atime = h.atime.map_or(h.mtime, |a| a.max(h.mtime));
        Timestamps {
            last_access: ts(atime),
            last_modification: ts(h.mtime),
        }
    }

    fn ids(&self, h: &Header, path: &[u8]) -> Result<Option<(rfs::Uid, rfs::Gid)>, ArchiveError> {
        let (uid, gid) = match self.opts.force_owner {
            Some((u, g)) => (u64::from(u), u64::from(g)),
            None if self.opts.same_owner => (h.uid, h.gid),
            None => return Ok(None),
        };
        let bad = || {
            ArchiveError::Invalid(format!(
                "owner {uid}:{gid} of {} out of range",
                String::from_utf8_lossy(path)
            ))
        };
        let mut uid = u32::try_from(uid).map_err(|_| bad())?;
        let mut gid = u32::try_from(gid).map_err(|_| bad())?;
        if let Some(map) = &self.opts.id_map {
            uid = map.uid_to_host(uid).ok_or_else(bad)?;
            gid = map.gid_to_host(gid).ok_or_else(bad)?;
        }
        if uid == u32::MAX || gid == u32::MAX {
            return Err(bad());
        }
        Ok(Some((rfs::Uid::from_raw(uid), rfs::Gid::from_raw(gid))))
    }

    fn owner_fd(&self, fd: BorrowedFd<'_>, h: &Header, path: &[u8]) -> Result<(), ArchiveError> {
        if let Some((u, g)) = self.ids(h, path)? {
            rfs::fchown(fd, Some(u), Some(g)).map_err(|e| ArchiveError::fs("chown", path, e))?;
        }
        Ok(())
    }

    fn owner_at(
        &self,
        parent: BorrowedFd<'_>,
        base: &[u8],
        h: &Header,
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        if let Some((u, g)) = self.ids(h, path)? {
            rfs::chownat(parent, base, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ArchiveError::fs("chown", path, e))?;
        }
        Ok(())
    }

    fn xattrs_fd(&self, fd: BorrowedFd<'_>, h: &Header, path: &[u8]) -> Result<(), ArchiveError> {
        for (name, value) in &h.xattrs {
            if !xattr_allowed(name, self.opts.same_owner) {
                tracing::debug!(
                    path = %String::from_utf8_lossy(path),
                    xattr = %String::from_utf8_lossy(name),
                    "dropping xattr from archive"
                );
                continue;
            }
            match rfs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::NOTSUP | Errno::PERM)) => tracing::warn!(
                    path = %String::from_utf8_lossy(path),
                    xattr = %String::from_utf8_lossy(name),
                    error = %e,
                    "cannot set xattr; ignored"
                ),
                Err(e) => return Err(ArchiveError::fs("set xattr", path, e)),
            }
        }
        Ok(())
    }

    /// Xattrs on a node that cannot be opened for writing (symlink, device, FIFO): set with
    /// `lsetxattr` on `/proc/self/fd/<parent>/<name>`, which names exactly that node and does
    /// not follow it.
    fn xattrs_at(
        &self,
        parent: BorrowedFd<'_>,
        base: &[u8],
        h: &Header,
        path: &[u8],
    ) -> Result<(), ArchiveError> {
        if h.xattrs.is_empty() {
            return Ok(());
        }
        let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
        p.extend_from_slice(base);
        let p = std::path::PathBuf::from(std::ffi::OsString::from_vec(p));
        for (name, value) in &h.xattrs {
            if !xattr_allowed(name, self.opts.same_owner) {
                continue;
            }
            match rfs::lsetxattr(&p, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::NOTSUP | Errno::PERM | Errno::NOENT)) => tracing::warn!(
                    path = %String::from_utf8_lossy(path),
                    xattr = %String::from_utf8_lossy(name),
                    error = %e,
                    "cannot set xattr; ignored"
                ),
                Err(e) => return Err(ArchiveError::fs("set xattr", path, e)),
            }
        }
        Ok(())
    }

    fn finish_dir_times(&mut self) -> Result<(), ArchiveError> {
        self.dirs.clear();
        let times = std::mem::take(&mut self.dir_times);
        for (path, t) in &times {
            let comps = components(path);
            let fd = match comps.split_last() {
                None => openat_in_root(
                    self.root,
                    b"",
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty(),
                ),
                Some((base, parent)) => {
                    let base: &[u8] = base;
                    match openat_in_root(
                        self.root,
                        &join(parent),
                        OFlags::PATH | OFlags::DIRECTORY,
                        Mode::empty(),
                    ) {
                        Ok(p) => rfs::openat(
                            &p,
                            base,
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        ),
                        Err(e) => Err(e),
                    }
                }
            };
            match fd {
                Ok(fd) => {
                    rfs::futimens(&fd, t).map_err(|e| ArchiveError::fs("set times", path, e))?
                }
                // Replaced or removed by a later entry: nothing to do.
                Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => {}
                Err(e) => return Err(ArchiveError::fs("open directory", path, e)),
            }
        }
        Ok(())
    }
}

/// Which xattrs from an archive may be applied.
fn xattr_allowed(name: &[u8], same_owner: bool) -> bool {
    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
        return false;
    }
    if name == b"security.capability" {
        return same_owner;
    }
    if name.starts_with(b"security.") {
        // SELinux/IMA/EVM labels from an image are never applied raw.
        return false;
    }
    if name.starts_with(b"trusted.") || name.starts_with(b"system.") {
        return same_owner;
    }
    name.starts_with(b"user.")
}

/// `fchmodat2(dir, name, mode, AT_SYMLINK_NOFOLLOW)`; on kernels without it, a plain
/// `fchmodat` (the node was just created by us, and a symlink has no mode to change).
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<(), Errno> {
    let cname = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
    // SAFETY: fchmodat2 takes a valid dir fd (borrowed for the call), a NUL-terminated path
    // that outlives the call, and plain integers; it does not retain any pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            cname.as_ptr(),
            mode as libc::c_uint,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    if err == Errno::NOSYS {
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Ok(());
        }
        return rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty());
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattr_policy() {
        assert!(!xattr_allowed(b"trusted.overlay.opaque", true));
        assert!(!xattr_allowed(b"user.overlay.redirect", true));
        assert!(!xattr_allowed(b"security.selinux", true));
        assert!(xattr_allowed(b"security.capability", true));
        assert!(!xattr_allowed(b"security.capability", false));
        assert!(xattr_allowed(b"user.foo", false));
        assert!(!xattr_allowed(b"trusted.foo", false));
    }
}
