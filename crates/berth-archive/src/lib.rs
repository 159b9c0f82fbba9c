//! berth-archive: layer tarballs — read, write, and apply them safely.
#![forbid(unsafe_op_in_unsafe_fn)]

mod apply;
mod compress;
mod digest;
mod error;
mod pack;
mod root;
mod tar;

pub use apply::{apply_layer, apply_layer_at, ApplyOptions, ApplyStats, WhiteoutMode};
pub use compress::{decompress, sniff, Compression, ZSTD_WINDOW_LOG_MAX};
pub use digest::{DigestReader, DigestWriter};
pub use error::{ArchiveError, ArchiveErrorKind};
pub use pack::{pack, pack_at, PackOptions};
pub use root::{
    clean_path, mkdir_all_in_root, mkdir_all_in_root_at, open_in_root, open_in_root_at, open_root,
};
pub use tar::{
    Entry, EntryType, Header, Record, TarLimits, TarReader, TarWriter, Timestamp, BLOCK,
    MAX_META_SIZE, MAX_PATH_LEN,
};
