//! Path resolution scoped to a root directory, through file descriptors.
//!
//! Every path that comes from an image, an archive or a container is resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `..` and absolute symlinks are clamped
//! to the root by the kernel, so nothing outside it can be reached, and the result is a file
//! descriptor, so later operations cannot be redirected by a symlink swapped in afterwards.
//! Final components that are about to be created, changed or removed are never followed:
//! callers resolve the *parent* here and act on `(parent_fd, name)` with `*at` calls and
//! `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::ArchiveError;

/// How many times an `openat2` that races with a rename (`EAGAIN`) is retried.
const EAGAIN_RETRIES: usize = 64;
/// Most symlinks followed while creating missing directories under dangling symlinks.
const MAX_SYMLINK_HOPS: usize = 40;

/// Lexically cleans an archive or user path into its components: empty and `.` components
/// are dropped, `..` pops (and is clamped at the root), a leading `/` is ignored. The result
/// never contains `.`, `..` or empty components.
///
/// ```
/// assert_eq!(berth_archive::clean_path(b"/a//b/./../../../c/"), b"c".to_vec());
/// assert_eq!(berth_archive::clean_path(b"./"), b"".to_vec());
/// ```
pub fn clean_path(path: &[u8]) -> Vec<u8> {
    join(&components(path))
}

/// Cleaned components of `path` (see [`clean_path`]).
pub(crate) fn components(path: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Joins components with `/`.
pub(crate) fn join(comps: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    out
}

/// Opens a root directory as an `O_PATH` descriptor (the root path itself is trusted and
/// followed).
pub fn open_root(root: &Path) -> Result<OwnedFd, ArchiveError> {
    rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::fs("open root", root.as_os_str().as_bytes(), e))
}

/// `openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, retried on
/// `EAGAIN`. An empty path opens the root itself.
pub(crate) fn openat_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rfs::openat2(root, path, flags | OFlags::CLOEXEC, mode, resolve) {
            Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
            r => return r,
        }
    }
}

/// Opens `path` inside `root` with `flags` (e.g. `OFlags::PATH`, `OFlags::RDONLY |
/// OFlags::DIRECTORY`), resolving every symlink and `..` as if `root` were `/`.
///
/// ```no_run
/// use rustix::fs::OFlags;
/// let fd = berth_archive::open_in_root(
///     std::path::Path::new("/var/lib/berth/snapshots/1/fs"),
///     std::path::Path::new("/etc/passwd"),
///     OFlags::RDONLY,
/// )?;
/// # Ok::<(), berth_archive::ArchiveError>(())
/// ```
pub fn open_in_root(root: &Path, path: &Path, flags: OFlags) -> Result<OwnedFd, ArchiveError> {
    let rootfd = open_root(root)?;
    open_in_root_at(rootfd.as_fd(), path.as_os_str().as_bytes(), flags)
}

/// Like [`open_in_root`] with an already open root descriptor and a byte path.
pub fn open_in_root_at(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
) -> Result<OwnedFd, ArchiveError> {
    openat_in_root(root, path, flags, Mode::empty()).map_err(|e| ArchiveError::fs("open", path, e))
}

/// Creates `path` and its missing parents inside `root` (each new directory with `mode`,
/// before umask) and returns an `O_PATH` descriptor of it. Existing symlinks on the way are
/// followed inside the root; a dangling one has its in-root target created, like
/// containerd's unpack does.
pub fn mkdir_all_in_root(root: &Path, path: &Path, mode: u32) -> Result<OwnedFd, ArchiveError> {
    let rootfd = open_root(root)?;
    mkdir_all_in_root_at(rootfd.as_fd(), path.as_os_str().as_bytes(), mode)
}

/// Like [`mkdir_all_in_root`] with an already open root descriptor and a byte path.
pub fn mkdir_all_in_root_at(
    root: BorrowedFd<'_>,
    path: &[u8],
    mode: u32,
) -> Result<OwnedFd, ArchiveError> {
    mkdir_all(root, path, Mode::from_raw_mode(mode), Some(0))
}

/// Like [`mkdir_all_in_root_at`], but a dangling symlink on the way is not followed: the
/// result is `Ok(None)` (used for whiteouts, which have nothing to hide there).
pub(crate) fn mkdir_all_no_dangling(
    root: BorrowedFd<'_>,
    path: &[u8],
    mode: u32,
) -> Result<Option<OwnedFd>, ArchiveError> {
    match mkdir_all(root, path, Mode::from_raw_mode(mode), None) {
        Ok(fd) => Ok(Some(fd)),
        Err(ArchiveError::Io { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `hops`: symlinks followed so far while creating dangling targets, or `None` to refuse
/// dangling symlinks (`ENOENT`).
fn mkdir_all(
    root: BorrowedFd<'_>,
    path: &[u8],
    mode: Mode,
    hops: Option<usize>,
) -> Result<OwnedFd, ArchiveError> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
    match openat_in_root(root, path, dir_flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(ArchiveError::fs("open directory", path, e)),
    }
    if hops.is_some_and(|h| h > MAX_SYMLINK_HOPS) {
        return Err(ArchiveError::fs("mkdir", path, Errno::LOOP));
    }
    // Raw components: `..` is kept and left to the kernel's in-root resolution.
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    // Deepest existing ancestor.
    let mut start = comps.len();
    let mut fd = loop {
        if start == 0 {
            break openat_in_root(root, b"", dir_flags, Mode::empty())
                .map_err(|e| ArchiveError::fs("open root", b"/", e))?;
        }
        start -= 1;
        match openat_in_root(root, &join(&comps[..start]), dir_flags, Mode::empty()) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) => {}
            Err(e) => {
                return Err(ArchiveError::fs(
                    "open directory",
                    &join(&comps[..start]),
                    e,
                ))
            }
        }
    };
    for k in start..comps.len() {
        let prefix = join(&comps[..=k]);
        match rfs::mkdirat(&fd, comps[k], mode) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(ArchiveError::fs("mkdir", &prefix, e)),
        }
        fd = match openat_in_root(root, &prefix, dir_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                // A dangling symlink: create its target (resolved inside the root) instead.
                let st = rfs::statat(&fd, comps[k], AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| ArchiveError::fs("stat", &prefix, e))?;
                let Some(hops) = hops
                    .filter(|_| rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink)
                else {
                    return Err(ArchiveError::fs("open directory", &prefix, Errno::NOENT));
                };
                let target = rfs::readlinkat(&fd, comps[k], Vec::new())
                    .map_err(|e| ArchiveError::fs("readlink", &prefix, e))?;
                let target = target.as_bytes();
                let next = if target.starts_with(b"/") {
                    target.to_vec()
                } else {
                    let mut p = join(&comps[..k]);
                    p.push(b'/');
                    p.extend_from_slice(target);
                    p
                };
                mkdir_all(root, &next, mode, Some(hops + 1))?;
                openat_in_root(root, &prefix, dir_flags, Mode::empty())
                    .map_err(|e| ArchiveError::fs("open directory", &prefix, e))?
            }
            Err(e) => return Err(ArchiveError::fs("open directory", &prefix, e)),
        };
    }
    Ok(fd)
}

/// Deepest directory nesting walked by recursive operations (remove, pack). A hostile tree
/// deeper than this fails the operation instead of exhausting the stack or descriptors.
pub(crate) const MAX_DEPTH: usize = 2048;

/// `syncfs(2)` on the filesystem holding `root`: the one flush after applying a layer
/// (apply itself never fsyncs per file).
pub fn sync_root(root: &Path) -> Result<(), ArchiveError> {
    let fd = open_root(root)?;
    // An O_PATH descriptor cannot be synced: reopen the directory for reading.
    let dir = rfs::openat(
        &fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::fs("open root", root.as_os_str().as_bytes(), e))?;
    rfs::syncfs(&dir).map_err(|e| ArchiveError::fs("syncfs", root.as_os_str().as_bytes(), e))
}

/// Removes `name` in `dir` recursively without following any symlink; a missing `name` is
/// not an error. Returns whether something was removed. Fails with `ELOOP` on trees nested
/// deeper than [`MAX_DEPTH`].
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<bool, Errno> {
    remove_all_depth(dir, name, 0)
}

fn remove_all_depth(dir: BorrowedFd<'_>, name: &[u8], depth: usize) -> Result<bool, Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(true),
        Err(Errno::NOENT) => return Ok(false),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let sub = match rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    for child in list_dir(sub.as_fd())? {
        remove_all_depth(sub.as_fd(), &child, depth + 1)?;
    }
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Names in a directory (without `.` and `..`), unsorted.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        for (input, want) in [
            (&b"../../host-sentinel"[..], &b"host-sentinel"[..]),
            (b"/abs/path", b"abs/path"),
            (b"./a/../../b", b"b"),
            (b"a//b/", b"a/b"),
            (b"..", b""),
            (b"/", b""),
            (b"a/./b/..", b"a"),
        ] {
            assert_eq!(
                clean_path(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn in_root_resolution_is_clamped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("/", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../..", root.join("up")).expect("symlink");
        std::fs::write(tmp.path().join("outside"), b"host").expect("write");
        let fd = open_root(&root).expect("root");
        // ../outside, abs/outside and up/outside all resolve inside root, where they are absent.
        for p in [
            &b"../outside"[..],
            b"abs/outside",
            b"up/outside",
            b"/outside",
        ] {
            let err = open_in_root_at(fd.as_fd(), p, OFlags::RDONLY).expect_err("absent in root");
            assert_eq!(err.kind(), crate::ArchiveErrorKind::NotFound);
        }
        // mkdir_all through an absolute symlink lands in root/real.
        mkdir_all_in_root_at(fd.as_fd(), b"abs/real/x/y", 0o755).expect("mkdir_all");
        assert!(root.join("real/x/y").is_dir());
        // Dangling symlink parent: its target is created inside root.
        std::os::unix::fs::symlink("/nowhere/deep", root.join("dangling")).expect("symlink");
        mkdir_all_in_root_at(fd.as_fd(), b"dangling/z", 0o755).expect("mkdir dangling");
        assert!(root.join("nowhere/deep/z").is_dir());
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn sync_root_works() {
        let tmp = tempfile::tempdir().expect("tempdir");
        sync_root(tmp.path()).expect("syncfs");
        assert!(sync_root(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn remove_all_is_depth_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fd = open_root(tmp.path()).expect("root");
        let mut chain = vec![fd];
        for _ in 0..MAX_DEPTH + 10 {
            let cur = chain.last().expect("chain starts non-empty");
            rfs::mkdirat(cur, "d", Mode::from_raw_mode(0o755)).expect("mkdir");
            let next = rfs::openat(cur, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                .expect("open");
            chain.push(next);
        }
        assert_eq!(remove_all_at(chain[0].as_fd(), b"d"), Err(Errno::LOOP));
        // Clean up bottom-up through the held descriptors.
        while chain.len() > 1 {
            chain.pop();
            let parent = chain.last().expect("len > 1");
            rfs::unlinkat(parent, "d", AtFlags::REMOVEDIR).expect("rmdir");
        }
        assert!(!tmp.path().join("d").exists());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keep = tmp.path().join("keep");
        std::fs::create_dir(&keep).expect("mkdir");
        std::fs::write(keep.join("f"), b"x").expect("write");
        let victim = tmp.path().join("victim");
        std::fs::create_dir_all(victim.join("a/b")).expect("mkdir");
        std::os::unix::fs::symlink(&keep, victim.join("a/link")).expect("symlink");
        let fd = open_root(tmp.path()).expect("root");
        assert!(remove_all_at(fd.as_fd(), b"victim").expect("remove"));
        assert!(!victim.exists());
        assert!(keep.join("f").exists());
        assert!(!remove_all_at(fd.as_fd(), b"victim").expect("remove again"));
    }
}
