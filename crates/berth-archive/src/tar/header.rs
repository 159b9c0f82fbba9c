//! Tar header model and the field codecs shared by the reader and the writer.

use super::error::TarError;

/// A PAX record or extended attribute: (key, value), both raw bytes.
pub type Record = (Vec<u8>, Vec<u8>);

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// Largest PAX extended header or GNU long name/link payload accepted (1 MiB, like Go).
pub const MAX_META_SIZE: u64 = 1 << 20;

/// Longest entry name or link target accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Type of a tar entry, after PAX/GNU meta headers have been folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EntryType {
    /// Regular file (`0`, `\0` without trailing slash, `7`).
    #[default]
    Regular,
    /// Hard link to `link_name` (`1`).
    Link,
    /// Symbolic link to `link_name` (`2`).
    Symlink,
    /// Character device (`3`).
    Char,
    /// Block device (`4`).
    Block,
    /// Directory (`5`, or `\0` with a trailing slash).
    Dir,
    /// FIFO (`6`).
    Fifo,
    /// A PAX global header (`g`). Like Go's `archive/tar`, it is returned as an entry and is
    /// *not* applied to later entries; its records are in [`Header::pax`].
    GlobalPax,
    /// Any other type flag; its data, if any, is readable.
    Other(u8),
}

impl EntryType {
    /// The type flag byte written for this type.
    pub fn flag(self) -> u8 {
        match self {
            EntryType::Regular => b'0',
            EntryType::Link => b'1',
            EntryType::Symlink => b'2',
            EntryType::Char => b'3',
            EntryType::Block => b'4',
            EntryType::Dir => b'5',
            EntryType::Fifo => b'6',
            EntryType::GlobalPax => b'g',
            EntryType::Other(b) => b,
        }
    }

    /// Types whose header `size` does not describe data in the archive (Go's
    /// `isHeaderOnlyType`): their data section is always empty.
    pub fn header_only(self) -> bool {
        matches!(
            self,
            EntryType::Link
                | EntryType::Symlink
                | EntryType::Char
                | EntryType::Block
                | EntryType::Dir
                | EntryType::Fifo
        )
    }
}

/// A point in time with nanoseconds (`nanos` is always `< 1_000_000_000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (may be negative).
    pub secs: i64,
    /// Nanoseconds added to `secs`.
    pub nanos: u32,
}

impl Timestamp {
    /// Whole seconds.
    pub fn from_secs(secs: i64) -> Self {
        Timestamp { secs, nanos: 0 }
    }
}

/// One tar entry's metadata, with PAX and GNU long-name records already applied.
///
/// Names are raw bytes: tar does not promise UTF-8 and neither do we.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Entry name as stored (not cleaned; see [`crate::clean_path`]).
    pub name: Vec<u8>,
    /// Link target for hard links and symlinks.
    pub link_name: Vec<u8>,
    /// Entry type.
    pub entry_type: EntryType,
    /// Permission and setuid/setgid/sticky bits (`& 0o7777` of the mode field).
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Owner user name (informational).
    pub uname: Vec<u8>,
    /// Owner group name (informational).
    pub gname: Vec<u8>,
    /// Size of the entry's data in the archive (0 for header-only types).
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Access time, when a PAX record gave one.
    pub atime: Option<Timestamp>,
    /// Change time, when a PAX record gave one.
    pub ctime: Option<Timestamp>,
    /// Device major number (char/block devices).
    pub dev_major: u32,
    /// Device minor number (char/block devices).
    pub dev_minor: u32,
    /// Extended attributes (`SCHILY.xattr.*` records), in archive order, later duplicates
    /// already folded over earlier ones.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every PAX record that applied to this entry (for a global header: its records).
    pub pax: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses a NUL-terminated string field (everything up to the first NUL).
pub(crate) fn parse_string(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// Parses a numeric field like Go's `parseNumeric`: base-256 when the high bit is set,
/// otherwise octal padded with spaces/NULs.
pub(crate) fn parse_numeric(field: &[u8]) -> Result<i64, TarError> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let inv = if first & 0x40 != 0 { 0xffu8 } else { 0 };
            let mut x: u64 = 0;
            for (i, &c) in field.iter().enumerate() {
                let mut c = c ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 > 0 {
                    return Err(TarError::malformed("base-256 number overflows"));
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 > 0 {
                return Err(TarError::malformed("base-256 number overflows"));
            }
            let v = x as i64;
            return Ok(if inv == 0xff { !v } else { v });
        }
    }
    parse_octal(field)
}

pub(crate) fn parse_octal(field: &[u8]) -> Result<i64, TarError> {
    let trimmed = trim(field, |b| b == b' ' || b == 0);
    let s = parse_string(trimmed);
    if s.is_empty() {
        return Ok(0);
    }
    let mut x: u64 = 0;
    for &c in s {
        if !(b'0'..=b'7').contains(&c) {
            return Err(TarError::malformed("malformed octal number in header"));
        }
        x = x
            .checked_mul(8)
            .and_then(|x| x.checked_add(u64::from(c - b'0')))
            .ok_or_else(|| TarError::malformed("octal number overflows"))?;
    }
    i64::try_from(x).map_err(|_| TarError::malformed("octal number overflows"))
}

fn trim(b: &[u8], pred: impl Fn(u8) -> bool) -> &[u8] {
    let start = b.iter().position(|&c| !pred(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !pred(c)).map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

/// Parses a decimal integer like Go's `strconv.ParseInt`: digits with an optional leading
/// `+`, or `-` when `signed`.
pub(crate) fn parse_decimal(s: &[u8], signed: bool) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) if signed => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut x: i64 = 0;
    for &c in digits {
        x = x.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(if neg { -x } else { x })
}

/// Parses a PAX time (`secs[.fraction]`) like Go's `parsePAXTime`.
pub(crate) fn parse_pax_time(s: &[u8]) -> Result<Timestamp, TarError> {
    let bad = || TarError::malformed("malformed PAX time record");
    let (ss, sn) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    let secs = parse_decimal(ss, true).ok_or_else(bad)?;
    if sn.is_empty() {
        return Ok(Timestamp::from_secs(secs));
    }
    if !sn.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + sn.get(i).map_or(0, |&c| u32::from(c - b'0'));
    }
    if ss.first() == Some(&b'-') && nanos > 0 {
        // -1.5 means 1.5 s before the epoch: secs -2, nanos 0.5e9.
        return Ok(Timestamp {
            secs: secs - 1,
            nanos: 1_000_000_000 - nanos,
        });
    }
    Ok(Timestamp { secs, nanos })
}

/// Formats a PAX time with the fraction trimmed of trailing zeros.
pub(crate) fn format_pax_time(t: Timestamp) -> Vec<u8> {
    let (secs, nanos) = if t.secs < 0 && t.nanos > 0 {
        // secs -2, nanos 0.5e9 is -1.5.
        (t.secs + 1, 1_000_000_000 - t.nanos)
    } else {
        (t.secs, t.nanos)
    };
    let sign = if t.secs < 0 && secs == 0 { "-" } else { "" };
    if nanos == 0 {
        return format!("{sign}{secs}").into_bytes();
    }
    let frac = format!("{nanos:09}");
    format!("{sign}{secs}.{}", frac.trim_end_matches('0')).into_bytes()
}

/// Parses the records of a PAX extended header like Go's `parsePAX`/`parsePAXRecord`:
/// `"<len> <key>=<value>\n"` repeated; any malformed record fails the whole header.
pub(crate) fn parse_pax_records(mut s: &[u8]) -> Result<Vec<Record>, TarError> {
    let bad = |why: &str| TarError::Malformed(format!("malformed PAX record: {why}"));
    let mut out = Vec::new();
    while !s.is_empty() {
        let sp = s
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let n = parse_decimal(&s[..sp], false).ok_or_else(|| bad("bad length"))?;
        let n = usize::try_from(n).map_err(|_| bad("bad length"))?;
        if n < 5 || n > s.len() || n <= sp + 1 {
            return Err(bad("length out of range"));
        }
        let rec = &s[sp + 1..n - 1];
        if s[n - 1] != b'\n' {
            return Err(bad("missing newline"));
        }
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '='"))?;
        let (k, v) = (&rec[..eq], &rec[eq + 1..]);
        let valid = !k.is_empty()
            && match k {
                b"path" | b"linkpath" | b"uname" | b"gname" => !v.contains(&0),
                _ => !k.contains(&0),
            };
        if !valid {
            return Err(bad("invalid key or value"));
        }
        out.push((k.to_vec(), v.to_vec()));
        s = &s[n..];
    }
    Ok(out)
}

/// Encodes one PAX record, whose decimal length prefix counts itself.
pub(crate) fn format_pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Writes `v` as zero-padded octal plus a NUL into `field`; false when it does not fit.
pub(crate) fn format_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Unsigned and signed checksums of a header block (chksum field counted as spaces).
pub(crate) fn checksums(blk: &[u8; BLOCK]) -> (i64, i64) {
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &c) in blk.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    (unsigned, signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0").expect("octal"), 0o644);
        assert_eq!(parse_numeric(b"  644 \0").expect("spaces"), 0o644);
        assert_eq!(parse_numeric(b"\0\0\0\0").expect("empty"), 0);
        assert_eq!(parse_numeric(b"12\0x").expect("nul cut"), 0o12);
        assert!(parse_numeric(b"0009").is_err());
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 5;
        assert_eq!(parse_numeric(&b256).expect("b256"), 5);
        let neg = [0xffu8; 8];
        assert_eq!(parse_numeric(&neg).expect("neg"), -1);
        let mut over = [0xffu8; 12];
        over[0] = 0x80;
        assert!(parse_numeric(&over).is_err());
    }

    #[test]
    fn pax_records_like_go() {
        let recs = parse_pax_records(b"12 path=a/b\n11 size=12\n").expect("parse");
        assert_eq!(recs[0], (b"path".to_vec(), b"a/b".to_vec()));
        assert_eq!(recs[1], (b"size".to_vec(), b"12".to_vec()));
        for bad in [
            &b"13 path=a/b\n"[..],
            b"12 path=a/b ",
            b"x path=a\n",
            b"4 a=\n",
            b"9 =abcd\n",
            b"11 path=\0a\n",
            b"99 path=a\n",
            b"6 noeq\n",
        ] {
            assert!(parse_pax_records(bad).is_err(), "{bad:?}");
        }
        // Values may contain newlines and NULs when the key allows it.
        let recs = parse_pax_records(b"16 SCHILY.x=a\nb\n").expect("nl in value");
        assert_eq!(recs[0].1, b"a\nb");
    }

    #[test]
    fn pax_record_length_counts_itself() {
        for vlen in [0usize, 1, 90, 91, 92, 995, 996, 997, 10_000] {
            let v = vec![b'v'; vlen];
            let rec = format_pax_record(b"path", &v);
            let parsed = parse_pax_records(&rec).expect("own record parses");
            assert_eq!(parsed[0].1, v);
        }
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1.5").expect("t"),
            Timestamp {
                secs: 1,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            parse_pax_time(b"-1.5").expect("t"),
            Timestamp {
                secs: -2,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            parse_pax_time(b"7.1234567891").expect("t").nanos,
            123_456_789
        );
        assert!(parse_pax_time(b"1.x").is_err());
        assert!(parse_pax_time(b"").is_err());
        for t in ["1", "1.5", "-1.5", "-0.25", "1234567890.000000001"] {
            let parsed = parse_pax_time(t.as_bytes()).expect("t");
            assert_eq!(format_pax_time(parsed), t.as_bytes());
        }
    }
}
