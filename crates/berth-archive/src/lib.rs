//! berth-archive: layer tarballs — read, write, and apply them safely.
#![forbid(unsafe_op_in_unsafe_fn)]

mod compress;
mod digest;
mod error;
mod tar;

pub use compress::{decompress, sniff, Compression, ZSTD_WINDOW_LOG_MAX};
pub use digest::{DigestReader, DigestWriter};
pub use error::{ArchiveError, ArchiveErrorKind};
pub use tar::{
    Entry, EntryType, Header, TarLimits, TarReader, TarWriter, Timestamp, BLOCK, MAX_META_SIZE,
    MAX_PATH_LEN,
};
