//! The crate's public error type.
//!
//! The stream layers have their own error enums ([`CompressError`] for decompression,
//! [`TarError`] for the tar reader/writer); [`ArchiveError`] wraps them and adds the errors
//! of the filesystem side (apply, pack, paths in a root). Every one has a `kind()` returning
//! the same small [`ArchiveErrorKind`], which is all the API edge needs to choose a status:
//! bad input, limit hit, unsupported, out of space, not found, host I/O failure.

use std::io;

use crate::compress::CompressError;
use crate::tar::TarError;

/// Coarse class of an [`ArchiveError`], for mapping to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchiveErrorKind {
    /// The archive (or its compression) is malformed or hostile: HTTP 400.
    InvalidArchive,
    /// A configured bound (bytes, entries, header size, window) was exceeded: HTTP 413/400.
    LimitExceeded,
    /// A valid but unsupported feature (GNU sparse files, unknown entry types): HTTP 400.
    Unsupported,
    /// The target filesystem is out of space or inodes: HTTP 507/500.
    NoSpace,
    /// A path that must exist does not (e.g. `cp` source): HTTP 404.
    NotFound,
    /// Any other host I/O failure: HTTP 500.
    Io,
}

/// Error returned by the public functions of this crate: the decompression and tar errors
/// of those modules, or an apply/pack/path error.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The compressed stream is bad or too big.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// The tar stream is bad or too big.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// The archive is malformed, truncated or hostile.
    #[error("invalid archive: {0}")]
    Invalid(String),
    /// A configured limit was exceeded.
    #[error("archive limit exceeded: {0}")]
    Limit(String),
    /// A feature this crate refuses to handle.
    #[error("unsupported archive feature: {0}")]
    Unsupported(String),
    /// The filesystem ran out of blocks or inodes.
    #[error("no space left on device (disk or inodes exhausted) at {path}")]
    NoSpace {
        /// Path (inside the root) being written.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"create"`, `"open"`, ...).
        op: &'static str,
        /// Path (inside the root) the operation was on.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// The coarse class of this error.
    pub fn kind(&self) -> ArchiveErrorKind {
        match self {
            ArchiveError::Compress(e) => e.kind(),
            ArchiveError::Tar(e) => e.kind(),
            ArchiveError::Invalid(_) => ArchiveErrorKind::InvalidArchive,
            ArchiveError::Limit(_) => ArchiveErrorKind::LimitExceeded,
            ArchiveError::Unsupported(_) => ArchiveErrorKind::Unsupported,
            ArchiveError::NoSpace { .. } => ArchiveErrorKind::NoSpace,
            ArchiveError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ArchiveErrorKind::NotFound
            }
            ArchiveError::Io { .. } => ArchiveErrorKind::Io,
        }
    }

    /// Builds an error for a failed filesystem operation on `path` (bytes, shown lossily).
    pub(crate) fn fs(op: &'static str, path: &[u8], source: impl Into<io::Error>) -> Self {
        let source = source.into();
        let path = String::from_utf8_lossy(path).into_owned();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ArchiveError::NoSpace { path, source },
            Some(libc::EMLINK) => {
                ArchiveError::Limit(format!("{op} {path}: too many links to one inode"))
            }
            Some(libc::ENAMETOOLONG) => {
                ArchiveError::Invalid(format!("{op} {path}: file name too long"))
            }
            _ => ArchiveError::Io { op, path, source },
        }
    }

    /// Converts an error raised while *reading* an archive stream (see
    /// [`TarError::from_read`]).
    pub(crate) fn from_read(e: io::Error) -> Self {
        match TarError::from_read(e) {
            TarError::Compress(c) => ArchiveError::Compress(c),
            t => ArchiveError::Tar(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunneled_errors_come_back_out() {
        let e = io::Error::other(CompressError::TooLarge { max: 5 });
        let back = ArchiveError::from_read(e);
        assert_eq!(back.kind(), ArchiveErrorKind::LimitExceeded);
        assert_eq!(
            back.to_string(),
            "archive limit exceeded: decompressed size exceeds 5 bytes"
        );
        assert!(matches!(back, ArchiveError::Compress(_)));
    }

    #[test]
    fn short_read_is_invalid_archive() {
        let e = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert_eq!(
            ArchiveError::from_read(e).kind(),
            ArchiveErrorKind::InvalidArchive
        );
    }

    #[test]
    fn enospc_is_no_space() {
        let e = ArchiveError::fs("create", b"a/b", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.kind(), ArchiveErrorKind::NoSpace);
        assert!(e.to_string().contains("inodes"));
    }
}
