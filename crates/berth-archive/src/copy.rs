//! Copying a tree between two roots (volume copy-up, image-to-volume population).
//!
//! Implemented as [`pack`](crate::pack) into a pipe and [`apply_layer`](crate::apply_layer)
//! from it, so the copy gets exactly the same containment guarantees as an archive: the
//! source is walked through `O_NOFOLLOW` descriptors inside its root and the destination is
//! written through descriptors inside its own root, even if either tree is being changed
//! by a running container.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::apply::{apply_layer_at, ApplyOptions, ApplyStats};
use crate::error::ArchiveError;
use crate::pack::{pack_at, PackOptions};
use crate::root::{mkdir_all_in_root_at, open_root};

/// Copies the contents of directory `<src_root>/<src>` into directory `<dst_root>/<dst>`
/// (created with mode 0755 if missing), both resolved inside their roots.
///
/// ```no_run
/// use std::path::Path;
/// // Populate a new named volume from the image's /var/lib/data, like Docker does.
/// berth_archive::copy_tree(
///     Path::new("/var/lib/berth/snapshots/12/fs"), Path::new("/var/lib/data"),
///     Path::new("/var/lib/berth/volumes/v1/_data"), Path::new("/"),
///     &berth_archive::ApplyOptions::default(),
/// )?;
/// # Ok::<(), berth_archive::ArchiveError>(())
/// ```
pub fn copy_tree(
    src_root: &Path,
    src: &Path,
    dst_root: &Path,
    dst: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ArchiveError> {
    let src_fd = open_root(src_root)?;
    let dst_root_fd = open_root(dst_root)?;
    let dst_fd = mkdir_all_in_root_at(dst_root_fd.as_fd(), dst.as_os_str().as_bytes(), 0o755)?;
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ArchiveError::fs("pipe", b"copy", e))?;
    let pack_opts = PackOptions {
        src: Some(src.to_path_buf()),
        name: Some(".".into()),
        ..PackOptions::default()
    };
    std::thread::scope(|scope| {
        let packer = scope.spawn(move || {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(wr));
            pack_at(src_fd.as_fd(), out, &pack_opts)
        });
        let applied = apply_layer_at(dst_fd.as_fd(), std::fs::File::from(rd), opts);
        let packed = packer
            .join()
            .map_err(|_| ArchiveError::Invalid("copy: the packing thread panicked".into()))?;
        // The reader's error explains a broken pipe on the writer side, so it comes first.
        let stats = applied?;
        packed?;
        Ok(stats)
    })
}
