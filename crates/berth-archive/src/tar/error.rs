//! Errors of the tar reader and writer.

use std::io;

use crate::compress::CompressError;
use crate::error::ArchiveErrorKind;

/// Why reading or writing a tar stream failed.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// A header, PAX record or numeric field is malformed.
    #[error("invalid archive: {0}")]
    Malformed(String),
    /// The stream ended inside a header or an entry's data.
    #[error("invalid archive: unexpected end of archive")]
    Truncated,
    /// A bound (entries, bytes, meta header size) was exceeded.
    #[error("archive limit exceeded: {0}")]
    Limit(String),
    /// A valid feature this reader refuses (GNU sparse files).
    #[error("unsupported archive feature: {0}")]
    Unsupported(String),
    /// The decompression below the tar stream failed.
    #[error(transparent)]
    Compress(#[from] CompressError),
    /// Reading the stream failed.
    #[error("read archive: {0}")]
    Read(#[source] io::Error),
    /// Writing the archive failed.
    #[error("write archive: {0}")]
    Write(#[source] io::Error),
    /// Reading an entry's data from its source failed while writing.
    #[error("read {path}: {source}")]
    ReadSource {
        /// Archive name of the entry.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl TarError {
    /// The coarse class of this error.
    pub fn kind(&self) -> ArchiveErrorKind {
        match self {
            TarError::Malformed(_) | TarError::Truncated => ArchiveErrorKind::InvalidArchive,
            TarError::Limit(_) => ArchiveErrorKind::LimitExceeded,
            TarError::Unsupported(_) => ArchiveErrorKind::Unsupported,
            TarError::Compress(e) => e.kind(),
            TarError::Write(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ArchiveErrorKind::NoSpace
            }
            TarError::Read(_) | TarError::Write(_) | TarError::ReadSource { .. } => {
                ArchiveErrorKind::Io
            }
        }
    }

    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        TarError::Malformed(msg.into())
    }

    /// Classifies an error from the stream being read: decompression errors tunneled through
    /// `io::Error` come back out; a short read is a truncated archive.
    pub(crate) fn from_read(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<CompressError>()) {
            let inner = e
                .into_inner()
                .expect("get_ref returned Some, so there is an inner error");
            return TarError::Compress(
                *inner
                    .downcast::<CompressError>()
                    .expect("checked with is::<CompressError>() above"),
            );
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => TarError::Truncated,
            io::ErrorKind::InvalidData => TarError::Malformed(format!("corrupt stream: {e}")),
            _ => TarError::Read(e),
        }
    }
}
