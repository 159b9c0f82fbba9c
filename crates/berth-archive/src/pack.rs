//! Packing a directory tree into a deterministic tar.
//!
//! The walk goes through directory descriptors opened with `O_NOFOLLOW` (no path is joined
//! and re-resolved), so a container that swaps a directory for a symlink while we read it can
//! at worst make an `open` fail; it cannot make us read host files. Names are sorted
//! bytewise, owner names are left empty and times are truncated to seconds (like Docker), so
//! the same tree always gives the same bytes and the same diff id.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::error::ArchiveError;
use crate::idmap::IdMap;
use crate::root::{components, join, list_dir, open_root, openat_in_root, MAX_DEPTH};
use crate::tar::{EntryType, Header, Record, TarWriter, Timestamp};

/// The overflow id shown for unmapped owners.
const NOBODY: u32 = 65534;

/// Options of [`pack`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// The tree is an overlayfs upper directory: character devices 0:0 become `.wh.<name>`
    /// entries and opaque directories get a `.wh..wh..opq` entry, making the tar an OCI
    /// layer diff. The upper must come from a mount without `redirect_dir`/`metacopy`
    /// (entries carrying those xattrs are refused, since their data lives in lower layers).
    pub overlay_upper: bool,
    /// Look for `user.overlay.opaque` instead of `trusted.overlay.opaque`.
    pub overlay_userxattr: bool,
    /// Archive only this path inside the root (resolved in the root; its last component is
    /// not followed, so a symlink is archived as a symlink). `None` archives the root.
    pub src: Option<PathBuf>,
    /// Archive name of `src`. Defaults to the last component of `src`. With no `src`, or an
    /// empty/`.` name, the contents of the directory are archived at the top level without
    /// an entry for the directory itself (then `src` may be a symlink to a directory; it is
    /// followed inside the root, like `docker cp dir/.`).
    pub name: Option<String>,
    /// Do not archive extended attributes.
    pub no_xattrs: bool,
    /// Stay on the root's mount (like `tar --one-file-system`, but by mount id, so bind
    /// mounts from the same filesystem count too): a directory that is a mount point is
    /// archived empty and other mounted files are left out (`docker export` of a mounted
    /// rootfs must not include `/proc`, volumes or bind-mounted host files).
    pub one_file_system: bool,
    /// Write the file type bits in each entry's mode, like Docker's `docker cp` and
    /// `docker export` archives (see [`crate::TarWriter::set_type_bits`]). Off for image
    /// layers, whose bytes (and so diff ids) stay as berth has always made them.
    pub type_bits: bool,
    /// Map host ids back to container ids (`--userns-remap`); ids outside the map are
    /// archived as 65534 (nobody), as the kernel shows them inside the namespace.
    pub id_map: Option<IdMap>,
    /// Directories (paths in the root; the last component is not followed) archived as an
    /// empty directory entry, their contents left out: a running container's /proc, /sys
    /// and /dev seen through `/proc/<pid>/root`, which Docker's archive does not walk.
    pub empty_dirs: Vec<PathBuf>,
}

/// Writes a tar of the tree under `root` (or of `opts.src`) to `out` and returns the number
/// of bytes written.
///
/// ```no_run
/// use berth_archive::{pack, DigestWriter, PackOptions};
/// let mut out = DigestWriter::new(std::fs::File::create("layer.tar")?);
/// let opts = PackOptions { overlay_upper: true, ..PackOptions::default() };
/// pack(std::path::Path::new("/var/lib/berth/snapshots/7/fs"), &mut out, &opts)?;
/// println!("diff_id {}", out.digest());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pack<W: Write>(root: &Path, out: W, opts: &PackOptions) -> Result<u64, ArchiveError> {
    let rootfd = open_root(root)?;
    pack_at(rootfd.as_fd(), out, opts)
}

/// Like [`pack`] with an already open root directory descriptor.
pub fn pack_at<W: Write>(
    root: BorrowedFd<'_>,
    out: W,
    opts: &PackOptions,
) -> Result<u64, ArchiveError> {
    let root_mnt = if opts.one_file_system {
        Some(mount_id(root, b"").map_err(|e| ArchiveError::fs("statx", b"/", e))?)
    } else {
        None
    };
    let mut empty = HashSet::new();
    for d in &opts.empty_dirs {
        let path = d.as_os_str().as_bytes();
        let comps = components(path);
        let Some((base, parent)) = comps.split_last() else {
            continue;
        };
        let base: &[u8] = base;
        let parent_path = join(parent);
        let Ok(pfd) = openat_in_root(root, &parent_path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) else {
            continue;
        };
        if let Ok(st) = rfs::statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                empty.insert((st.st_dev, st.st_ino));
            }
        }
    }
    let mut w = TarWriter::new(out);
    w.set_type_bits(opts.type_bits);
    let mut p = Packer {
        w,
        opts,
        seen: HashMap::new(),
        depth: 0,
        root_mnt,
        empty,
    };
    let src = opts
        .src
        .as_ref()
        .map(|s| s.as_os_str().as_bytes().to_vec())
        .unwrap_or_default();
    let comps = components(&src);
    let default_name = comps.last().map(|c| c.to_vec()).unwrap_or_default();
    let name = match &opts.name {
        Some(n) => clean_name(n.as_bytes()),
        None => default_name,
    };
    match comps.split_last() {
        None => {
            let dir = openat_in_root(root, b"", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .map_err(|e| ArchiveError::fs("open", b"/", e))?;
            if name.is_empty() {
                p.walk(dir.as_fd(), b"")?;
            } else {
                let st = rfs::fstat(&dir).map_err(|e| ArchiveError::fs("stat", b"/", e))?;
                p.dir(dir, &st, &name)?;
            }
        }
        Some((base, parent)) => {
            let base: &[u8] = base;
            let parent_path = join(parent);
            let pfd = openat_in_root(
                root,
                &parent_path,
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .map_err(|e| ArchiveError::fs("open", &parent_path, e))?;
            let st = rfs::statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ArchiveError::fs("stat", &src, e))?;
            if name.is_empty() {
                // Contents of a directory: the whole path, symlinks included, is resolved
                // inside the root (like `docker cp dir/.`).
                let dir = openat_in_root(
                    root,
                    &src,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    Mode::empty(),
                )
                .map_err(|e| ArchiveError::fs("archive contents of", &src, e))?;
                p.walk(dir.as_fd(), b"")?;
            } else {
                p.one(pfd.as_fd(), base, &st, &name)?;
            }
        }
    }
    let written = p.w.bytes_written();
    p.w.finish()?;
    Ok(written + 1024)
}

fn clean_name(n: &[u8]) -> Vec<u8> {
    join(&components(n))
}

fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

struct Packer<'o, W: Write> {
    w: TarWriter<W>,
    opts: &'o PackOptions,
    /// (dev, inode) of multiply linked non-directories -> first archive name.
    seen: HashMap<(u64, u64), Vec<u8>>,
    /// Current directory nesting.
    depth: usize,
    /// Mount id of the root, with `one_file_system`.
    root_mnt: Option<u64>,
    /// (dev, inode) of the `empty_dirs`.
    empty: HashSet<(u64, u64)>,
}

impl<W: Write> Packer<'_, W> {
    /// Archives the children of `dir` under the archive prefix `prefix` (empty or ending in /).
    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<(), ArchiveError> {
        let mut names = list_dir(dir).map_err(|e| ArchiveError::fs("list", prefix, e))?;
        names.sort();
        for name in names {
            let mut arch = prefix.to_vec();
            arch.extend_from_slice(&name);
            let st = match rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed while we walk (live container): skip it.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(ArchiveError::fs("stat", &arch, e)),
            };
            self.one(dir, &name, &st, &arch)?;
        }
        Ok(())
    }

    fn base_header(&self, st: &Stat, name: Vec<u8>) -> Header {
        Header {
            name,
            mode: st.st_mode & 0o7777,
            uid: u64::from(match &self.opts.id_map {
                Some(m) => m.uid_to_container(st.st_uid).unwrap_or(NOBODY),
                None => st.st_uid,
            }),
            gid: u64::from(match &self.opts.id_map {
                Some(m) => m.gid_to_container(st.st_gid).unwrap_or(NOBODY),
                None => st.st_gid,
            }),
            mtime: Timestamp::from_secs(st.st_mtime),
            ..Header::default()
        }
    }

    /// Archives `parent/name` (whose lstat is `st`) as `arch`.
    fn one(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        arch: &[u8],
    ) -> Result<(), ArchiveError> {
        let ft = FileType::from_raw_mode(st.st_mode);
        let foreign = match self.root_mnt {
            // A bind mount from the same filesystem has the same st_dev: compare mount ids.
            Some(root_mnt) => !mount_id(parent, name).is_ok_and(|m| m == root_mnt),
            None => false,
        };
        if foreign && ft != FileType::Directory {
            tracing::debug!(path = %String::from_utf8_lossy(arch), "skipping file on another filesystem");
            return Ok(());
        }
        if ft == FileType::Directory {
            if foreign || self.empty.contains(&(st.st_dev, st.st_ino)) {
                let mut h = self.base_header(st, [arch, b"/"].concat());
                h.entry_type = EntryType::Dir;
                return self.w.append(&h, &mut std::io::empty());
            }
            let dir = match open_dir(parent, name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(ArchiveError::fs("open", arch, e)),
            };
            return self.dir(dir, st, arch);
        }
        let mut h = self.base_header(st, arch.to_vec());
        let (major, minor) = (rfs::major(st.st_rdev), rfs::minor(st.st_rdev));
        if self.opts.overlay_upper && ft == FileType::CharacterDevice && major == 0 && minor == 0 {
            // An overlay whiteout (overlayfs may hard link them all to one inode).
            let (dir, base) = split_name(arch);
            let mut wh = dir.to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(base);
            h.name = wh;
            h.mode = 0o600;
            return self.w.append(&h, &mut std::io::empty());
        }
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.seen.get(&key) {
                h.entry_type = EntryType::Link;
                h.link_name = first.clone();
                return self.w.append(&h, &mut std::io::empty());
            }
            self.seen.insert(key, arch.to_vec());
        }
        match ft {
            FileType::RegularFile => {
                let fd = match rfs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(ArchiveError::fs("open", arch, e)),
                };
                h.size = st.st_size as u64;
                h.xattrs = self.xattrs(fd.as_fd(), arch)?;
                let mut f = std::fs::File::from(fd);
                self.w.append(&h, &mut f)
            }
            FileType::Symlink => {
                let target = match rfs::readlinkat(parent, name, Vec::new()) {
                    Ok(t) => t,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(ArchiveError::fs("readlink", arch, e)),
                };
                h.entry_type = EntryType::Symlink;
                h.link_name = target.into_bytes();
                h.xattrs = self.xattrs_at(parent, name, arch)?;
                self.w.append(&h, &mut std::io::empty())
            }
            FileType::CharacterDevice | FileType::BlockDevice => {
                h.entry_type = if ft == FileType::CharacterDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                h.dev_major = major;
                h.dev_minor = minor;
                h.xattrs = self.xattrs_at(parent, name, arch)?;
                self.w.append(&h, &mut std::io::empty())
            }
            FileType::Fifo => {
                h.entry_type = EntryType::Fifo;
                h.xattrs = self.xattrs_at(parent, name, arch)?;
                self.w.append(&h, &mut std::io::empty())
            }
            _ => {
                tracing::debug!(path = %String::from_utf8_lossy(arch), "skipping socket");
                Ok(())
            }
        }
    }

    fn dir(&mut self, dir: OwnedFd, st: &Stat, arch: &[u8]) -> Result<(), ArchiveError> {
        let mut name = arch.to_vec();
        name.push(b'/');
        let mut h = self.base_header(st, name.clone());
        h.entry_type = EntryType::Dir;
        h.xattrs = self.xattrs(dir.as_fd(), arch)?;
        let opaque = self.opts.overlay_upper && self.is_opaque(dir.as_fd());
        self.w.append(&h, &mut std::io::empty())?;
        if opaque {
            let mut wh = self.base_header(st, [&name[..], b".wh..wh..opq"].concat());
            wh.mode &= 0o777;
            self.w.append(&wh, &mut std::io::empty())?;
        }
        if self.depth >= MAX_DEPTH {
            return Err(ArchiveError::Limit(format!(
                "{} is nested more than {MAX_DEPTH} directories deep",
                String::from_utf8_lossy(arch)
            )));
        }
        self.depth += 1;
        let r = self.walk(dir.as_fd(), &name);
        self.depth -= 1;
        r
    }

    fn is_opaque(&self, fd: BorrowedFd<'_>) -> bool {
        let key: &[u8] = if self.opts.overlay_userxattr {
            b"user.overlay.opaque"
        } else {
            b"trusted.overlay.opaque"
        };
        let mut buf = [0u8; 8];
        matches!(rfs::fgetxattr(fd, key, &mut buf[..]), Ok(n) if &buf[..n] == b"y")
    }

    /// Extended attributes worth archiving from an open file or directory, sorted by name.
    fn xattrs(&self, fd: BorrowedFd<'_>, arch: &[u8]) -> Result<Vec<Record>, ArchiveError> {
        self.collect_xattrs(
            arch,
            |buf| rfs::flistxattr(fd, buf),
            |name, buf| rfs::fgetxattr(fd, name, buf),
        )
    }

    /// Same for a node that is not opened (symlink, device, FIFO), through
    /// `/proc/self/fd/<parent>/<name>` with the non-following `l*xattr` calls.
    fn xattrs_at(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        arch: &[u8],
    ) -> Result<Vec<Record>, ArchiveError> {
        let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
        p.extend_from_slice(name);
        let p = PathBuf::from(std::ffi::OsString::from_vec(p));
        match self.collect_xattrs(
            arch,
            |buf| rfs::llistxattr(&p, buf),
            |n, buf| rfs::lgetxattr(&p, n, buf),
        ) {
            // No /proc: archive the node without xattrs.
            Err(ArchiveError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                Ok(Vec::new())
            }
            r => r,
        }
    }

    fn collect_xattrs(
        &self,
        arch: &[u8],
        list: impl Fn(&mut [u8]) -> Result<usize, Errno>,
        get: impl Fn(&[u8], &mut [u8]) -> Result<usize, Errno>,
    ) -> Result<Vec<Record>, ArchiveError> {
        if self.opts.no_xattrs {
            return Ok(Vec::new());
        }
        let mut names = vec![0u8; 1024];
        let n = loop {
            match list(&mut names[..]) {
                Ok(n) => break n,
                Err(Errno::RANGE) if names.len() < (1 << 20) => {
                    let len = names.len() * 4;
                    names.resize(len, 0);
                }
                Err(Errno::NOTSUP) => return Ok(Vec::new()),
                Err(e) => return Err(ArchiveError::fs("list xattrs", arch, e)),
            }
        };
        let mut out = Vec::new();
        for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if self.opts.overlay_upper
                && (name.ends_with(b"overlay.redirect") || name.ends_with(b"overlay.metacopy"))
                && (name.starts_with(b"trusted.") || name.starts_with(b"user."))
            {
                return Err(ArchiveError::Unsupported(format!(
                    "{} carries {}: an upper dir mounted with redirect_dir or metacopy cannot \
                     be turned into a layer diff",
                    String::from_utf8_lossy(arch),
                    String::from_utf8_lossy(name)
                )));
            }
            if name.starts_with(b"trusted.overlay.")
                || name.starts_with(b"user.overlay.")
                || name == b"security.selinux"
            {
                continue;
            }
            let mut value = vec![0u8; 256];
            let len = loop {
                match get(name, &mut value[..]) {
                    Ok(n) => break Some(n),
                    Err(Errno::RANGE) if value.len() < (1 << 16) => {
                        value.resize(value.len() * 4, 0);
                    }
                    Err(Errno::NODATA) => break None,
                    Err(e) => return Err(ArchiveError::fs("get xattr", arch, e)),
                }
            };
            if let Some(len) = len {
                value.truncate(len);
                out.push((name.to_vec(), value));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Mount id of `dir/name` (not following it), or of `dir` itself for an empty name.
fn mount_id(dir: BorrowedFd<'_>, name: &[u8]) -> Result<u64, Errno> {
    let flags = if name.is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    let stx = rfs::statx(dir, name, flags, rfs::StatxFlags::MNT_ID)?;
    Ok(stx.stx_mnt_id)
}

fn split_name(arch: &[u8]) -> (&[u8], &[u8]) {
    match arch.iter().rposition(|&b| b == b'/') {
        Some(i) => (&arch[..=i], &arch[i + 1..]),
        None => (&b""[..], arch),
    }
}
