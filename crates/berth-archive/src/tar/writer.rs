//! A deterministic tar writer: ustar where the fields fit, a PAX `x` header otherwise.

use std::io::{self, Read, Write};

use super::error::TarError;
use super::header::{
    checksums, format_octal, format_pax_record, format_pax_time, EntryType, Header, BLOCK,
};
use crate::error::ArchiveError;

const ZERO: [u8; BLOCK] = [0; BLOCK];
const COPY_BUF: usize = 256 * 1024;

/// Writes tar entries.
///
/// Names that do not fit ustar's 100-byte name (or 155-byte prefix + name split), link
/// targets over 100 bytes, ids/sizes/times outside the octal fields, sub-second mtimes and
/// extended attributes go into a PAX `x` header whose records are sorted by key, so the same
/// input always gives the same bytes.
pub struct TarWriter<W> {
    w: W,
    written: u64,
    type_bits: bool,
}

impl<W: Write> TarWriter<W> {
    /// Wraps `w`.
    pub fn new(w: W) -> Self {
        TarWriter {
            w,
            written: 0,
            type_bits: false,
        }
    }

    /// Also write the file type bits (`S_IFREG`, `S_IFDIR`...) in the mode field, as Docker's
    /// archives do (Go's `archive/tar` before 1.9 did; Docker kept them): regular files and
    /// hard links `0o100000`, directories `0o40000`, symlinks `0o120000`, devices and FIFOs
    /// their own. Readers (this one included) keep only the permission bits.
    pub fn set_type_bits(&mut self, on: bool) {
        self.type_bits = on;
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Appends one entry. Exactly `h.size` bytes of data are written for types that carry
    /// data: `data` is read up to that size and zero-padded if it ends early (a file that
    /// shrank while being archived).
    pub fn append(&mut self, h: &Header, data: &mut dyn Read) -> Result<(), ArchiveError> {
        let mut blk = [0u8; BLOCK];
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();

        // Name: plain, or prefix/name split, or PAX.
        if h.name.contains(&0) || h.link_name.contains(&0) {
            return Err(TarError::malformed("entry name contains NUL").into());
        }
        if h.name.len() <= 100 {
            blk[..h.name.len()].copy_from_slice(&h.name);
        } else if let Some((prefix, name)) = split_ustar(&h.name) {
            blk[..name.len()].copy_from_slice(name);
            blk[345..345 + prefix.len()].copy_from_slice(prefix);
        } else {
            blk[..100].copy_from_slice(&h.name[..100]);
            pax.push((b"path".to_vec(), h.name.clone()));
        }
        if h.link_name.len() <= 100 {
            blk[157..157 + h.link_name.len()].copy_from_slice(&h.link_name);
        } else {
            blk[157..257].copy_from_slice(&h.link_name[..100]);
            pax.push((b"linkpath".to_vec(), h.link_name.clone()));
        }
        let type_bits = match h.entry_type {
            _ if !self.type_bits => 0,
            EntryType::Regular | EntryType::Link => 0o100000,
            EntryType::Dir => 0o40000,
            EntryType::Symlink => 0o120000,
            EntryType::Char => 0o20000,
            EntryType::Block => 0o60000,
            EntryType::Fifo => 0o10000,
            EntryType::GlobalPax | EntryType::Other(_) => 0,
        };
        format_octal(&mut blk[100..108], u64::from(h.mode & 0o7777 | type_bits));
        for (range, v, key) in [
            (108..116, h.uid, &b"uid"[..]),
            (116..124, h.gid, &b"gid"[..]),
        ] {
            if !format_octal(&mut blk[range], v) {
                pax.push((key.to_vec(), v.to_string().into_bytes()));
            }
        }
        let size = if h.entry_type.header_only() {
            0
        } else {
            h.size
        };
        if !format_octal(&mut blk[124..136], size) {
            format_octal(&mut blk[124..136], 0);
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        let mtime_fits = h.mtime.nanos == 0
            && u64::try_from(h.mtime.secs).is_ok_and(|s| format_octal(&mut blk[136..148], s));
        if !mtime_fits {
            format_octal(&mut blk[136..148], 0);
            pax.push((b"mtime".to_vec(), format_pax_time(h.mtime)));
        }
        if let Some(t) = h.atime {
            pax.push((b"atime".to_vec(), format_pax_time(t)));
        }
        if let Some(t) = h.ctime {
            pax.push((b"ctime".to_vec(), format_pax_time(t)));
        }
        blk[156] = h.entry_type.flag();
        blk[257..263].copy_from_slice(b"ustar\0");
        blk[263..265].copy_from_slice(b"00");
        for (range, v, key) in [
            (265..297, &h.uname, &b"uname"[..]),
            (297..329, &h.gname, b"gname"),
        ] {
            if v.len() <= 32 {
                blk[range.start..range.start + v.len()].copy_from_slice(v);
            } else {
                pax.push((key.to_vec(), v.clone()));
            }
        }
        if matches!(h.entry_type, EntryType::Char | EntryType::Block) {
            if !format_octal(&mut blk[329..337], u64::from(h.dev_major))
                || !format_octal(&mut blk[337..345], u64::from(h.dev_minor))
            {
                return Err(TarError::Unsupported("device number too large".into()).into());
            }
        } else {
            format_octal(&mut blk[329..337], 0);
            format_octal(&mut blk[337..345], 0);
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            pax.sort();
            let mut data = Vec::new();
            for (k, v) in &pax {
                data.extend(format_pax_record(k, v));
            }
            let mut name = b"PaxHeaders.0/".to_vec();
            let base = h
                .name
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"x");
            name.extend_from_slice(&base[..base.len().min(80)]);
            self.write_meta(b'x', &name, &data)?;
        }
        finish_block(&mut blk);
        self.put(&blk)?;
        if size > 0 {
            let mut buf = vec![0u8; COPY_BUF.min(size as usize)];
            let mut left = size;
            let mut short = false;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = if short {
                    buf[..want].fill(0);
                    want
                } else {
                    match data.read(&mut buf[..want]) {
                        Ok(0) => {
                            tracing::warn!(
                                name = %String::from_utf8_lossy(&h.name),
                                "file shrank while archiving; padding with zeros"
                            );
                            short = true;
                            continue;
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(TarError::ReadSource {
                                path: String::from_utf8_lossy(&h.name).into_owned(),
                                source: e,
                            }
                            .into());
                        }
                    }
                };
                self.put(&buf[..n])?;
                left -= n as u64;
            }
            self.put(&ZERO[..pad(size)])?;
        }
        Ok(())
    }

    /// Appends a raw PAX extended header (`x`) with the given records, in the given order.
    /// It applies to the next entry appended. Mostly useful to build test archives.
    pub fn append_pax(&mut self, records: &[(&[u8], &[u8])]) -> Result<(), ArchiveError> {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend(format_pax_record(k, v));
        }
        Ok(self.write_meta(b'x', b"PaxHeaders.0/x", &data)?)
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the writer.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        self.put(&ZERO)?;
        self.put(&ZERO)?;
        self.w.flush().map_err(TarError::Write)?;
        Ok(self.w)
    }

    fn write_meta(&mut self, flag: u8, name: &[u8], data: &[u8]) -> Result<(), TarError> {
        let mut blk = [0u8; BLOCK];
        let n = name.len().min(100);
        blk[..n].copy_from_slice(&name[..n]);
        format_octal(&mut blk[100..108], 0o644);
        format_octal(&mut blk[108..116], 0);
        format_octal(&mut blk[116..124], 0);
        format_octal(&mut blk[124..136], data.len() as u64);
        format_octal(&mut blk[136..148], 0);
        blk[156] = flag;
        blk[257..263].copy_from_slice(b"ustar\0");
        blk[263..265].copy_from_slice(b"00");
        finish_block(&mut blk);
        self.put(&blk)?;
        self.put(data)?;
        self.put(&ZERO[..pad(data.len() as u64)])
    }

    fn put(&mut self, b: &[u8]) -> Result<(), TarError> {
        self.w.write_all(b).map_err(TarError::Write)?;
        self.written += b.len() as u64;
        Ok(())
    }
}

fn pad(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

fn finish_block(blk: &mut [u8; BLOCK]) {
    let (sum, _) = checksums(blk);
    format_octal(&mut blk[148..155], sum as u64);
    blk[155] = b' ';
}

/// Splits a name into ustar prefix (<= 155) and name (<= 100) at a slash, if possible.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() > 256 {
        return None;
    }
    let start = name.len().saturating_sub(101);
    for i in start..name.len().min(156) {
        if name[i] == b'/' {
            let (p, n) = (&name[..i], &name[i + 1..]);
            if !p.is_empty() && !n.is_empty() && p.len() <= 155 && n.len() <= 100 {
                return Some((p, n));
            }
        }
    }
    None
}
