//! Hashing adapters: sha256 over every byte that passes through, plus a byte count.
//!
//! Used to verify blob digests on the exact bytes received and to compute `diff_id`s of
//! uncompressed layers while they are being applied or packed, in the same pass.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// A reader that hashes (sha256) and counts everything read through it.
///
/// ```
/// use std::io::Read;
/// let mut r = berth_archive::DigestReader::new(&b"abc"[..]);
/// std::io::copy(&mut r, &mut std::io::sink()).unwrap();
/// assert_eq!(r.bytes_read(), 3);
/// assert_eq!(
///     r.digest(),
///     "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// `sha256:<hex>` of the bytes read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Number of bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// Returns the wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts everything written through it; [`crate::pack`]
/// into a `DigestWriter` yields the layer's `diff_id`.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// `sha256:<hex>` of the bytes written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Number of bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Returns the wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_matches_reader() {
        let data = vec![42u8; 10_000];
        let mut r = DigestReader::new(&data[..]);
        let mut w = DigestWriter::new(Vec::new());
        io::copy(&mut r, &mut w).expect("copy");
        assert_eq!(r.digest(), w.digest());
        assert_eq!(w.bytes_written(), 10_000);
        assert_eq!(w.into_inner(), data);
    }
}
