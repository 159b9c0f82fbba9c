//! Compression sniffing and bounded decompression of layer blobs.
//!
//! Blobs come from registries and tarballs we do not trust, so the decompressed stream is
//! capped ([`decompress`]'s `max_bytes`, HARDENING A2 #18), zstd frames may not ask for a
//! window larger than [`ZSTD_WINDOW_LOG_MAX`], and a stream that ends early or carries
//! trailing garbage after the last gzip member / zstd frame is an error (A2 #19). The
//! compression is always sniffed from the bytes, never taken from a media type (A2 #22).

use std::io::{self, BufReader, Cursor, Read};

use crate::error::{ArchiveError, ArchiveErrorKind};

/// Why a compressed stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The stream ends in the middle of a gzip member or zstd frame.
    #[error("invalid archive: {format}: unexpected end of stream (truncated)")]
    Truncated {
        /// `"gzip"` or `"zstd"`.
        format: &'static str,
    },
    /// Corrupt data, bad checksum, or trailing garbage after the last member/frame.
    #[error("invalid archive: {format}: {detail}")]
    Corrupt {
        /// `"gzip"` or `"zstd"`.
        format: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A zstd frame asks for a window larger than [`ZSTD_WINDOW_LOG_MAX`].
    #[error("archive limit exceeded: zstd frame window larger than 2^{max_log} bytes")]
    WindowTooLarge {
        /// The configured cap (log2 bytes).
        max_log: u32,
    },
    /// More than the allowed number of bytes would be decompressed.
    #[error("archive limit exceeded: decompressed size exceeds {max} bytes")]
    TooLarge {
        /// The configured cap.
        max: u64,
    },
    /// A compression berth does not read (xz, bzip2).
    #[error("unsupported archive feature: {format} compression")]
    Unsupported {
        /// The detected format.
        format: &'static str,
    },
    /// Reading the compressed bytes themselves failed.
    #[error("read compressed stream: {0}")]
    Read(#[source] io::Error),
}

impl CompressError {
    /// The coarse class of this error.
    pub fn kind(&self) -> ArchiveErrorKind {
        match self {
            CompressError::Truncated { .. } | CompressError::Corrupt { .. } => {
                ArchiveErrorKind::InvalidArchive
            }
            CompressError::WindowTooLarge { .. } | CompressError::TooLarge { .. } => {
                ArchiveErrorKind::LimitExceeded
            }
            CompressError::Unsupported { .. } => ArchiveErrorKind::Unsupported,
            CompressError::Read(_) => ArchiveErrorKind::Io,
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Classifies an error coming out of a decoder.
    fn from_decoder(format: &'static str, e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<CompressError>()) {
            let inner = e
                .into_inner()
                .expect("get_ref returned Some, so there is an inner error");
            return *inner
                .downcast::<CompressError>()
                .expect("checked with is::<CompressError>() above");
        }
        let text = e.to_string();
        if format == "zstd"
            && (text.contains("Frame requires too much memory") || text.contains("window"))
        {
            return CompressError::WindowTooLarge {
                max_log: ZSTD_WINDOW_LOG_MAX,
            };
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => CompressError::Truncated { format },
            io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Other => {
                CompressError::Corrupt {
                    format,
                    detail: text,
                }
            }
            _ => CompressError::Read(e),
        }
    }
}

/// Largest zstd window (log2 bytes) a frame may request: 128 MiB, zstd's own default limit.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 27;

const READ_BUF: usize = 256 * 1024;

/// Compression of a blob, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain bytes (an uncompressed tar).
    None,
    /// gzip (possibly several members, which are concatenated like Go's reader does).
    Gzip,
    /// zstd (possibly several frames, skippable frames allowed).
    Zstd,
}

/// Detects the compression of a stream from its first bytes (4 are enough).
pub fn sniff(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18])
    {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Formats Docker knows but berth refuses (their decoders are not worth the attack surface).
fn sniff_unsupported(prefix: &[u8]) -> Option<&'static str> {
    if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some("xz")
    } else if prefix.starts_with(b"BZh") {
        Some("bzip2")
    } else {
        None
    }
}

/// Wraps `r`, detecting its compression, and returns a reader of the decompressed bytes that
/// fails with [`CompressError::TooLarge`] once more than `max_bytes` would be produced.
/// Truncated input and trailing garbage fail the read with [`CompressError::Truncated`] /
/// [`CompressError::Corrupt`]. These travel inside the `io::Error` returned by `read`
/// (`io::Error::other(CompressError)`); [`crate::TarReader`] and [`crate::apply_layer`]
/// unwrap them into [`ArchiveError::Compress`].
pub fn decompress<'a, R: Read + 'a>(
    mut r: R,
    max_bytes: u64,
) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut prefix = Vec::with_capacity(6);
    (&mut r)
        .take(6)
        .read_to_end(&mut prefix)
        .map_err(CompressError::Read)?;
    if let Some(format) = sniff_unsupported(&prefix) {
        return Err(CompressError::Unsupported { format }.into());
    }
    let kind = sniff(&prefix);
    let input = BufReader::with_capacity(READ_BUF, Cursor::new(prefix).chain(r));
    let inner: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(StrictGzip {
            inner: flate2::bufread::MultiGzDecoder::new(input),
        }),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| CompressError::from_decoder("zstd", e))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| CompressError::from_decoder("zstd", e))?;
            Box::new(StrictZstd { inner: d })
        }
    };
    Ok(Box::new(CapReader {
        inner,
        read: 0,
        max: max_bytes,
    }))
}

/// Maps gzip decoder errors to [`CompressError`]s.
struct StrictGzip<R> {
    inner: R,
}

impl<R: Read> Read for StrictGzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| CompressError::from_decoder("gzip", e).into_io())
    }
}

/// Maps zstd decoder errors (window too large, truncated frame, garbage) to
/// [`CompressError`]s.
struct StrictZstd<R> {
    inner: R,
}

impl<R: Read> Read for StrictZstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| CompressError::from_decoder("zstd", e).into_io())
    }
}

/// Fails once more than `max` bytes would be read.
struct CapReader<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R: Read> Read for CapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Allow one byte past the budget so that exceeding it is detected, not hidden.
        let allowed = (self.max - self.read).saturating_add(1);
        let len = buf
            .len()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.read += n as u64;
        if self.read > self.max {
            return Err(CompressError::TooLarge { max: self.max }.into_io());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ArchiveErrorKind;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("write to vec");
        e.finish().expect("finish to vec")
    }

    fn read_all(blob: &[u8], max: u64) -> Result<Vec<u8>, ArchiveError> {
        let mut r = decompress(blob, max)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(ArchiveError::from_read)?;
        Ok(out)
    }

    #[test]
    fn sniffs() {
        assert_eq!(sniff(&gz(b"x")), Compression::Gzip);
        assert_eq!(
            sniff(&zstd::encode_all(&b"x"[..], 1).expect("encode")),
            Compression::Zstd
        );
        assert_eq!(sniff(b"ustar"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
    }

    #[test]
    fn plain_gzip_zstd_round_trip() {
        let data = vec![7u8; 100_000];
        assert_eq!(read_all(&data, 1 << 20).expect("plain"), data);
        assert_eq!(read_all(&gz(&data), 1 << 20).expect("gzip"), data);
        let z = zstd::encode_all(&data[..], 3).expect("encode");
        assert_eq!(read_all(&z, 1 << 20).expect("zstd"), data);
        assert!(read_all(b"", 10).expect("empty").is_empty());
    }

    #[test]
    fn multi_member_gzip_is_concatenated() {
        let mut blob = gz(b"hello ");
        blob.extend(gz(b"world"));
        assert_eq!(read_all(&blob, 100).expect("multi"), b"hello world");
    }

    #[test]
    fn bombs_are_bounded() {
        let data = vec![0u8; 4 << 20];
        for blob in [
            gz(&data),
            zstd::encode_all(&data[..], 3).expect("encode"),
            data,
        ] {
            let err = read_all(&blob, 1 << 20).expect_err("over budget");
            assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded, "{err}");
        }
    }

    #[test]
    fn truncated_and_trailing_garbage_fail() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let g = gz(&data);
        let z = zstd::encode_all(&data[..], 3).expect("encode");
        for blob in [&g[..g.len() - 10], &z[..z.len() - 10]] {
            let err = read_all(blob, 1 << 30).expect_err("truncated");
            assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{err}");
        }
        for base in [&g, &z] {
            let mut blob = base.clone();
            blob.extend_from_slice(b"garbage!garbage!");
            let err = read_all(&blob, 1 << 30).expect_err("garbage");
            assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{err}");
        }
    }

    #[test]
    fn huge_zstd_window_is_refused() {
        let data = vec![1u8; 1000];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
        enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(30))
            .expect("window");
        enc.include_contentsize(false).expect("no size");
        enc.write_all(&data).expect("write");
        let blob = enc.finish().expect("finish");
        let err = read_all(&blob, 1 << 30).expect_err("window");
        assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded, "{err}");
    }

    #[test]
    fn xz_is_unsupported() {
        let err = read_all(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2], 100).expect_err("xz");
        assert_eq!(err.kind(), ArchiveErrorKind::Unsupported);
    }
}
