//! The one error type of this crate.
//!
//! Every module of the crate (decompression, tar parsing, apply, pack) feeds the same callers
//! (image unpack, `load`, `cp`, build `ADD`), and they only need to tell "the input is bad"
//! from "a limit was hit" from "the host failed", so the crate has one error enum with a
//! [`ArchiveError::kind`] that the API edge maps to an HTTP status.

use std::io;

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

/// Error returned by every fallible function of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
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

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        ArchiveError::Invalid(msg.into())
    }

    pub(crate) fn limit(msg: impl Into<String>) -> Self {
        ArchiveError::Limit(msg.into())
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

    /// Converts an error raised while *reading* an archive stream. Errors this crate tunneled
    /// through `io::Error` (limits, corrupt compression) come back out unchanged; a short read
    /// means a truncated archive.
    pub(crate) fn from_read(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<ArchiveError>()) {
            let inner = e
                .into_inner()
                .expect("get_ref returned Some, so there is an inner error");
            return *inner
                .downcast::<ArchiveError>()
                .expect("checked with is::<ArchiveError>() above");
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => ArchiveError::invalid("unexpected end of archive"),
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
                ArchiveError::Invalid(format!("corrupt stream: {e}"))
            }
            _ => ArchiveError::Io {
                op: "read",
                path: "archive stream".into(),
                source: e,
            },
        }
    }

    /// Wraps this error in an `io::Error` so it can travel through `Read` adapters.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunneled_errors_come_back_out() {
        let e = ArchiveError::limit("too big").into_io();
        let back = ArchiveError::from_read(e);
        assert_eq!(back.kind(), ArchiveErrorKind::LimitExceeded);
        assert_eq!(back.to_string(), "archive limit exceeded: too big");
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
