//! A bounded, Go-compatible tar reader.

use std::io::{self, Read};

use super::error::TarError;
use super::header::{
    checksums, parse_decimal, parse_numeric, parse_octal, parse_pax_records, parse_pax_time,
    parse_string, EntryType, Header, Timestamp, BLOCK, MAX_META_SIZE, MAX_PATH_LEN,
};
use crate::error::ArchiveError;

/// Bounds a [`TarReader`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// Most headers (including PAX/GNU meta headers) read before failing.
    pub max_entries: u64,
    /// Most entry data bytes (sum of sizes) the archive may declare.
    pub max_bytes: u64,
}

impl Default for TarLimits {
    /// 2^21 headers and 1 TiB of data: enough for any real image layer, small enough to
    /// bound a stream of empty headers.
    fn default() -> Self {
        TarLimits {
            max_entries: 1 << 21,
            max_bytes: 1 << 40,
        }
    }
}

/// Reads tar entries one by one from an uncompressed stream.
///
/// ustar, GNU (`L`/`K` long names) and PAX (per-entry `x` and global `g`) are understood and
/// folded the way Go's `archive/tar` does it: a PAX `x` header applies to the next real entry
/// even through `L`/`K` headers (a second `x` replaces the first); PAX `size` overrides the
/// ustar size; header-only types (links, dirs, devices, FIFOs) never have data whatever their
/// size says; a GNU long name wins over a PAX `path`; global headers are returned as
/// [`EntryType::GlobalPax`] entries and not applied. GNU sparse files are refused.
///
/// ```
/// use std::io::Read;
/// let mut w = berth_archive::TarWriter::new(Vec::new());
/// let h = berth_archive::Header { name: b"hello".to_vec(), size: 2, mode: 0o644, ..Default::default() };
/// w.append(&h, &mut &b"hi"[..]).unwrap();
/// let tar = w.finish().unwrap();
///
/// let mut r = berth_archive::TarReader::new(&tar[..]);
/// let mut e = r.next_entry().unwrap().unwrap();
/// assert_eq!(e.header.name, b"hello");
/// let mut data = Vec::new();
/// e.read_to_end(&mut data).unwrap();
/// assert_eq!(data, b"hi");
/// assert!(r.next_entry().unwrap().is_none());
/// ```
pub struct TarReader<R> {
    r: R,
    limits: TarLimits,
    /// Data bytes of the current entry not yet consumed.
    remaining: u64,
    /// Padding after the current entry's data.
    pad: u64,
    headers: u64,
    bytes: u64,
    done: bool,
}

/// One entry: its header, and a reader of its data (at most `header.size` bytes).
pub struct Entry<'a, R> {
    /// The entry's metadata.
    pub header: Header,
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read_data(buf)
    }
}

impl<R: Read> TarReader<R> {
    /// A reader with [`TarLimits::default`].
    pub fn new(r: R) -> Self {
        Self::with_limits(r, TarLimits::default())
    }

    /// A reader with explicit limits.
    pub fn with_limits(r: R, limits: TarLimits) -> Self {
        TarReader {
            r,
            limits,
            remaining: 0,
            pad: 0,
            headers: 0,
            bytes: 0,
            done: false,
        }
    }

    /// Returns the next entry, or `None` at the end of the archive (two zero blocks or a
    /// clean EOF at a header boundary). Unread data of the previous entry is skipped.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>, ArchiveError> {
        Ok(self.next_header()?.map(|header| Entry {
            header,
            reader: self,
        }))
    }

    /// Number of headers read so far (meta headers included).
    pub fn headers_read(&self) -> u64 {
        self.headers
    }

    /// Returns the underlying reader, positioned after whatever was consumed.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Reads the current entry's data.
    pub(crate) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let len = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.r.read(&mut buf[..len])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside entry data",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> Result<(), TarError> {
        let copied =
            io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(TarError::from_read)?;
        if copied != n {
            return Err(TarError::Truncated);
        }
        Ok(())
    }

    /// Reads a block; `Ok(false)` on a clean EOF before its first byte.
    fn read_block(&mut self, blk: &mut [u8; BLOCK]) -> Result<bool, TarError> {
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut blk[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(TarError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::from_read(e)),
            }
        }
        Ok(true)
    }

    /// Reads the payload of a meta header (PAX or GNU long name), bounded.
    fn read_meta(&mut self, size: u64, what: &str) -> Result<Vec<u8>, TarError> {
        if size > MAX_META_SIZE {
            return Err(TarError::Limit(format!(
                "{what} of {size} bytes exceeds {MAX_META_SIZE}"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        (&mut self.r)
            .take(size)
            .read_to_end(&mut buf)
            .map_err(TarError::from_read)?;
        if buf.len() as u64 != size {
            return Err(TarError::Truncated);
        }
        // A stream ending inside this padding ends right after a meta header, which the
        // next read reports.
        io::copy(&mut (&mut self.r).take(padding(size)), &mut io::sink())
            .map_err(TarError::from_read)?;
        Ok(buf)
    }

    /// Reads headers until a real entry (or a global PAX header) and returns it.
    pub(crate) fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        let (rest, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        self.skip(rest)?;
        // Like Go's tryReadFull: a stream that ends inside the padding after the last
        // entry's (complete) data is a clean end of archive.
        let padded =
            io::copy(&mut (&mut self.r).take(pad), &mut io::sink()).map_err(TarError::from_read)?;
        if padded < pad {
            return self.end(false);
        }

        let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut blk = [0u8; BLOCK];
        loop {
            if !self.read_block(&mut blk)? {
                return self.end(pax.is_some() || long_name.is_some() || long_link.is_some());
            }
            if blk.iter().all(|&b| b == 0) {
                if !self.read_block(&mut blk)? || blk.iter().all(|&b| b == 0) {
                    return self.end(pax.is_some() || long_name.is_some() || long_link.is_some());
                }
                return Err(TarError::malformed("zero block followed by a header"));
            }
            self.headers += 1;
            if self.headers > self.limits.max_entries {
                return Err(TarError::Limit(format!(
                    "archive has more than {} entries",
                    self.limits.max_entries
                )));
            }
            let mut hdr = parse_block(&blk)?;
            let flag = blk[156];
            match flag {
                b'x' | b'g' => {
                    let data = self.read_meta(hdr.size, "PAX header")?;
                    let recs = parse_pax_records(&data)?;
                    if flag == b'g' {
                        // Like Go: the records are merged into the global header itself, and
                        // only its name, xattrs and records are reported.
                        merge_pax(&mut hdr, &recs)?;
                        return Ok(Some(Header {
                            name: hdr.name,
                            entry_type: EntryType::GlobalPax,
                            xattrs: hdr.xattrs,
                            pax: hdr.pax,
                            ..Header::default()
                        }));
                    }
                    pax = Some(recs);
                }
                b'L' | b'K' => {
                    let data = self.read_meta(hdr.size, "GNU long name")?;
                    let name = parse_string(&data).to_vec();
                    if flag == b'L' {
                        long_name = Some(name);
                    } else {
                        long_link = Some(name);
                    }
                }
                b'S' => return Err(TarError::Unsupported("GNU sparse file".into())),
                _ => {
                    if let Some(recs) = &pax {
                        merge_pax(&mut hdr, recs)?;
                    }
                    // Like Go, an empty GNU long name/link leaves the header's own.
                    if let Some(n) = long_name.filter(|n| !n.is_empty()) {
                        hdr.name = n;
                    }
                    if let Some(l) = long_link.filter(|l| !l.is_empty()) {
                        hdr.link_name = l;
                    }
                    if flag == 0 && hdr.name.ends_with(b"/") {
                        hdr.entry_type = EntryType::Dir;
                    }
                    return self.finish_entry(hdr).map(Some);
                }
            }
        }
    }

    fn end(&mut self, dangling_meta: bool) -> Result<Option<Header>, TarError> {
        self.done = true;
        if dangling_meta {
            return Err(TarError::malformed("archive ends after an extended header"));
        }
        Ok(None)
    }

    fn finish_entry(&mut self, mut hdr: Header) -> Result<Header, TarError> {
        if hdr.name.len() > MAX_PATH_LEN || hdr.link_name.len() > MAX_PATH_LEN {
            return Err(TarError::Malformed(format!(
                "entry name longer than {MAX_PATH_LEN} bytes"
            )));
        }
        if hdr.entry_type.header_only() {
            hdr.size = 0;
        }
        self.bytes = self.bytes.saturating_add(hdr.size);
        if self.bytes > self.limits.max_bytes {
            return Err(TarError::Limit(format!(
                "archive data exceeds {} bytes",
                self.limits.max_bytes
            )));
        }
        self.remaining = hdr.size;
        self.pad = padding(hdr.size);
        Ok(hdr)
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// Parses one header block (checksum, fields, format-dependent name prefix).
fn parse_block(blk: &[u8; BLOCK]) -> Result<Header, TarError> {
    // Like Go: the checksum field is always octal (never base-256).
    let chksum = parse_octal(&blk[148..156])?;
    let (unsigned, signed) = checksums(blk);
    if chksum != unsigned && chksum != signed {
        return Err(TarError::malformed("header checksum mismatch"));
    }
    let magic = &blk[257..263];
    let version = &blk[263..265];
    let ustar = magic == b"ustar\0";
    let star = ustar && &blk[508..512] == b"tar\0";
    let gnu = magic == b"ustar " && version == b" \0";

    let flag = blk[156];
    let entry_type = match flag {
        b'0' | 0 | b'7' => EntryType::Regular,
        b'1' => EntryType::Link,
        b'2' => EntryType::Symlink,
        b'3' => EntryType::Char,
        b'4' => EntryType::Block,
        b'5' => EntryType::Dir,
        b'6' => EntryType::Fifo,
        b'g' => EntryType::GlobalPax,
        other => EntryType::Other(other),
    };
    let size = parse_numeric(&blk[124..136])?;
    let size = u64::try_from(size).map_err(|_| TarError::malformed("negative size in header"))?;
    let id = |f: &[u8]| -> Result<u64, TarError> {
        u64::try_from(parse_numeric(f)?).map_err(|_| TarError::malformed("negative id"))
    };
    let mode = parse_numeric(&blk[100..108])?;
    let mut h = Header {
        name: parse_string(&blk[0..100]).to_vec(),
        link_name: parse_string(&blk[157..257]).to_vec(),
        entry_type,
        mode: (mode & 0o7777) as u32,
        uid: id(&blk[108..116])?,
        gid: id(&blk[116..124])?,
        size,
        mtime: Timestamp::from_secs(parse_numeric(&blk[136..148])?),
        ..Header::default()
    };
    if ustar || gnu {
        h.uname = parse_string(&blk[265..297]).to_vec();
        h.gname = parse_string(&blk[297..329]).to_vec();
        // Go parses (and so validates) the device fields of every entry type.
        let major = parse_numeric(&blk[329..337])?;
        let minor = parse_numeric(&blk[337..345])?;
        if matches!(h.entry_type, EntryType::Char | EntryType::Block) {
            let dev = |v: i64| -> Result<u32, TarError> {
                u32::try_from(v).map_err(|_| TarError::malformed("device number out of range"))
            };
            h.dev_major = dev(major)?;
            h.dev_minor = dev(minor)?;
        }
    }
    let prefix: &[u8] = if star {
        // star: 131-byte prefix followed by atime and ctime, which Go validates.
        parse_numeric(&blk[476..488])?;
        parse_numeric(&blk[488..500])?;
        parse_string(&blk[345..476])
    } else if ustar {
        parse_string(&blk[345..500])
    } else if gnu {
        // GNU has atime/ctime where ustar has its prefix. Go (golang.org/issues/12594) falls
        // back to reading a prefix when they do not parse, for files written by old Go.
        let bad_time = |f: &[u8]| f[0] != 0 && parse_numeric(f).is_err();
        if bad_time(&blk[345..357]) || bad_time(&blk[357..369]) {
            let p = parse_string(&blk[345..500]);
            if p.is_ascii() {
                p
            } else {
                b""
            }
        } else {
            b""
        }
    } else {
        b""
    };
    if !prefix.is_empty() {
        let mut name = prefix.to_vec();
        name.push(b'/');
        name.extend_from_slice(&h.name);
        h.name = name;
    }
    Ok(h)
}

/// Applies PAX records to a header like Go's `mergePAX` (empty values keep the ustar value).
fn merge_pax(h: &mut Header, recs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), TarError> {
    let bad = |k: &[u8]| {
        TarError::Malformed(format!(
            "malformed PAX {} record",
            String::from_utf8_lossy(k)
        ))
    };
    for (k, v) in recs {
        if k.starts_with(b"GNU.sparse.") {
            return Err(TarError::Unsupported("GNU sparse file (PAX)".into()));
        }
        if v.is_empty() {
            continue;
        }
        match k.as_slice() {
            b"path" => h.name = v.clone(),
            b"linkpath" => h.link_name = v.clone(),
            b"uname" => h.uname = v.clone(),
            b"gname" => h.gname = v.clone(),
            b"uid" | b"gid" | b"size" => {
                let n = parse_decimal(v, false).ok_or_else(|| bad(k))?;
                let n = n as u64;
                match k.as_slice() {
                    b"uid" => h.uid = n,
                    b"gid" => h.gid = n,
                    _ => h.size = n,
                }
            }
            b"mtime" => h.mtime = parse_pax_time(v)?,
            b"atime" => h.atime = Some(parse_pax_time(v)?),
            b"ctime" => h.ctime = Some(parse_pax_time(v)?),
            _ => {
                if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                    if let Some(slot) = h.xattrs.iter_mut().find(|(n, _)| n == name) {
                        slot.1 = v.clone();
                    } else {
                        h.xattrs.push((name.to_vec(), v.clone()));
                    }
                }
            }
        }
    }
    h.pax = recs.to_vec();
    Ok(())
}
