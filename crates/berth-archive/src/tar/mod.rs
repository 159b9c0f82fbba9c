//! Tar format: header model, a bounded Go-compatible reader, and a deterministic writer.
//!
//! Written here rather than taken from the `tar` crate: the reader must fold PAX/GNU meta
//! headers exactly like Go's `archive/tar` (which produced and consumes most image layers),
//! bound every allocation, and hand out names as bytes; the writer must be byte-for-byte
//! deterministic so that layer digests are reproducible.

mod error;
mod header;
mod reader;
mod writer;

pub use error::TarError;
pub use header::{EntryType, Header, Record, Timestamp, BLOCK, MAX_META_SIZE, MAX_PATH_LEN};
pub use reader::{Entry, TarLimits, TarReader};
pub use writer::TarWriter;

#[cfg(test)]
mod tests {
    use super::header::{checksums, format_octal, format_pax_record};
    use super::*;
    use crate::error::ArchiveErrorKind;
    use std::io::Read;

    /// Builds a raw ustar header block by hand.
    fn raw(name: &[u8], flag: u8, size: u64, link: &[u8]) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        format_octal(&mut b[100..108], 0o644);
        format_octal(&mut b[108..116], 0);
        format_octal(&mut b[116..124], 0);
        format_octal(&mut b[124..136], size);
        format_octal(&mut b[136..148], 0);
        b[156] = flag;
        b[157..157 + link.len()].copy_from_slice(link);
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        let (sum, _) = checksums(&b);
        format_octal(&mut b[148..155], sum as u64);
        b[155] = b' ';
        b
    }

    fn data(v: &[u8]) -> Vec<u8> {
        let mut d = v.to_vec();
        d.resize(v.len().div_ceil(BLOCK) * BLOCK, 0);
        d
    }

    fn pax(recs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in recs {
            body.extend(format_pax_record(k, v));
        }
        let mut out = raw(b"pax", b'x', body.len() as u64, b"").to_vec();
        out.extend(data(&body));
        out
    }

    fn entries(tar: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, crate::ArchiveError> {
        let mut r = TarReader::new(tar);
        let mut out = Vec::new();
        while let Some(mut e) = r.next_entry()? {
            let mut d = Vec::new();
            e.read_to_end(&mut d)
                .map_err(crate::ArchiveError::from_read)?;
            out.push((e.header.clone(), d));
        }
        Ok(out)
    }

    #[test]
    fn round_trip_writer_reader() {
        let long = vec![b'n'; 300];
        let mut w = TarWriter::new(Vec::new());
        let headers = vec![
            Header {
                name: b"dir/".to_vec(),
                entry_type: EntryType::Dir,
                mode: 0o755,
                ..Header::default()
            },
            Header {
                name: b"dir/file".to_vec(),
                size: 5,
                mode: 0o4755,
                uid: 1 << 40,
                gid: 7,
                mtime: Timestamp {
                    secs: 1_700_000_000,
                    nanos: 5,
                },
                xattrs: vec![(b"user.k".to_vec(), b"v\0\n".to_vec())],
                ..Header::default()
            },
            Header {
                name: long.clone(),
                link_name: long.clone(),
                entry_type: EntryType::Symlink,
                ..Header::default()
            },
            Header {
                name: [&[b'p'; 120][..], b"/", &[b'q'; 90][..]].concat(),
                entry_type: EntryType::Char,
                dev_major: 1,
                dev_minor: 3,
                ..Header::default()
            },
            Header {
                name: b"bytes\xff\xfe".to_vec(),
                size: 0,
                ..Header::default()
            },
        ];
        for h in &headers {
            let payload = vec![b'x'; h.size as usize];
            w.append(h, &mut &payload[..]).expect("append");
        }
        let tar = w.finish().expect("finish");
        let got = entries(&tar).expect("read back");
        assert_eq!(got.len(), headers.len());
        for ((g, d), h) in got.iter().zip(&headers) {
            assert_eq!(g.name, h.name);
            assert_eq!(g.link_name, h.link_name);
            assert_eq!(g.entry_type, h.entry_type);
            assert_eq!(g.mode, h.mode);
            assert_eq!((g.uid, g.gid), (h.uid, h.gid));
            assert_eq!(g.mtime, h.mtime);
            assert_eq!(g.xattrs, h.xattrs);
            assert_eq!((g.dev_major, g.dev_minor), (h.dev_major, h.dev_minor));
            assert_eq!(d.len() as u64, h.size);
        }
    }

    #[test]
    fn pax_size_overrides_ustar_size() {
        // CVE-2026-33055 / CVE-2025-62518: ustar says 0, PAX says 600. Go uses 600.
        let mut tar = pax(&[(b"size", b"600")]);
        tar.extend(raw(b"a", b'0', 0, b""));
        tar.extend(data(&[b'A'; 600]));
        tar.extend(raw(b"b", b'0', 1, b""));
        tar.extend(data(b"B"));
        tar.extend([0u8; 1024]);
        let got = entries(&tar).expect("parse");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.name, b"a");
        assert_eq!(got[0].1, vec![b'A'; 600]);
        assert_eq!(got[1].0.name, b"b");
    }

    #[test]
    fn header_only_types_have_no_data() {
        // A symlink whose size claims 512 bytes: Go reads no data, so the next block is a
        // header. A smuggled header inside "data" must be seen as the next entry.
        let mut tar = raw(b"link", b'2', 512, b"target").to_vec();
        tar.extend(raw(b"next", b'0', 0, b""));
        let got = entries(&tar).expect("parse");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0.name, b"next");
        assert_eq!(got[0].0.size, 0);
    }

    #[test]
    fn pax_applies_through_gnu_long_name() {
        // PAX before an L entry: the records apply to the real entry after L (Go), and the
        // GNU long name wins over the PAX path.
        let mut tar = pax(&[(b"path", b"from-pax"), (b"uid", b"42")]);
        let name = b"from-gnu-long-name\0";
        tar.extend(raw(b"././@LongLink", b'L', name.len() as u64, b""));
        tar.extend(data(name));
        tar.extend(raw(b"short", b'0', 0, b""));
        let got = entries(&tar).expect("parse");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.name, b"from-gnu-long-name");
        assert_eq!(got[0].0.uid, 42);
    }

    #[test]
    fn second_pax_header_replaces_first() {
        let mut tar = pax(&[(b"uid", b"1"), (b"gid", b"2")]);
        tar.extend(pax(&[(b"uid", b"3")]));
        tar.extend(raw(b"f", b'0', 0, b""));
        let got = entries(&tar).expect("parse");
        assert_eq!((got[0].0.uid, got[0].0.gid), (3, 0));
    }

    #[test]
    fn global_header_is_returned_not_applied() {
        let mut body = Vec::new();
        body.extend(format_pax_record(b"uid", b"9"));
        let mut tar = raw(b"g", b'g', body.len() as u64, b"").to_vec();
        tar.extend(data(&body));
        tar.extend(raw(b"f", b'0', 0, b""));
        let got = entries(&tar).expect("parse");
        assert_eq!(got[0].0.entry_type, EntryType::GlobalPax);
        assert_eq!(got[1].0.uid, 0);
    }

    #[test]
    fn malformed_and_oversized_meta_fail() {
        let mut tar = raw(b"x", b'x', 9, b"").to_vec();
        tar.extend(data(b"9 pathab\n"));
        tar.extend(raw(b"f", b'0', 0, b""));
        assert_eq!(
            entries(&tar).expect_err("malformed").kind(),
            ArchiveErrorKind::InvalidArchive
        );

        let tar = raw(b"x", b'x', 100 << 20, b"").to_vec();
        assert_eq!(
            entries(&tar).expect_err("huge pax").kind(),
            ArchiveErrorKind::LimitExceeded
        );
        let tar = raw(b"L", b'L', 2 << 20, b"").to_vec();
        assert_eq!(
            entries(&tar).expect_err("huge L").kind(),
            ArchiveErrorKind::LimitExceeded
        );
        let mut tar = pax(&[(b"size", b"-1")]);
        tar.extend(raw(b"f", b'0', 0, b""));
        assert!(entries(&tar).is_err());
    }

    #[test]
    fn sparse_is_refused() {
        let tar = raw(b"s", b'S', 0, b"").to_vec();
        assert_eq!(
            entries(&tar).expect_err("sparse").kind(),
            ArchiveErrorKind::Unsupported
        );
        let mut tar = pax(&[(b"GNU.sparse.map", b"0,1")]);
        tar.extend(raw(b"f", b'0', 0, b""));
        assert_eq!(
            entries(&tar).expect_err("sparse").kind(),
            ArchiveErrorKind::Unsupported
        );
    }

    #[test]
    fn end_of_archive_rules() {
        // Clean EOF at a header boundary and a single zero block are accepted, like Go.
        let tar = raw(b"f", b'0', 0, b"").to_vec();
        assert_eq!(entries(&tar).expect("eof").len(), 1);
        let mut tar = raw(b"f", b'0', 0, b"").to_vec();
        tar.extend([0u8; 512]);
        assert_eq!(entries(&tar).expect("one zero").len(), 1);
        // Zero block then a header: error.
        let mut tar = vec![0u8; 512];
        tar.extend(raw(b"f", b'0', 0, b""));
        assert!(entries(&tar).is_err());
        // Truncated data or header: error.
        let mut tar = raw(b"f", b'0', 100, b"").to_vec();
        tar.extend([b'a'; 50]);
        assert!(entries(&tar).is_err());
        assert!(entries(&raw(b"f", b'0', 0, b"")[..300]).is_err());
        // Bad checksum: error.
        let mut tar = raw(b"f", b'0', 0, b"").to_vec();
        tar[0] = b'g';
        assert!(entries(&tar).is_err());
        // Dangling PAX header: error.
        assert!(entries(&pax(&[(b"uid", b"1")])).is_err());
    }

    #[test]
    fn limits_bound_entries_and_bytes() {
        let mut tar = Vec::new();
        for i in 0..100 {
            tar.extend(raw(format!("f{i}").as_bytes(), b'0', 0, b""));
        }
        let mut r = TarReader::with_limits(
            &tar[..],
            TarLimits {
                max_entries: 10,
                max_bytes: 1 << 20,
            },
        );
        let err = loop {
            match r.next_entry() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("limit not hit"),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded);

        let tar = raw(b"big", b'0', 1 << 30, b"").to_vec();
        let mut r = TarReader::with_limits(
            &tar[..],
            TarLimits {
                max_entries: 10,
                max_bytes: 1 << 20,
            },
        );
        assert_eq!(
            r.next_entry().err().expect("too big").kind(),
            ArchiveErrorKind::LimitExceeded
        );
    }

    #[test]
    fn old_style_dir_and_prefix() {
        let mut b = raw(b"d/", 0, 0, b"");
        b[156] = 0;
        let (sum, _) = checksums(&b);
        format_octal(&mut b[148..155], sum as u64);
        let got = entries(&b).expect("parse");
        assert_eq!(got[0].0.entry_type, EntryType::Dir);

        let mut b = raw(b"name", b'0', 0, b"");
        b[345..351].copy_from_slice(b"prefix");
        let (sum, _) = checksums(&b);
        format_octal(&mut b[148..155], sum as u64);
        assert_eq!(entries(&b).expect("parse")[0].0.name, b"prefix/name");
    }
}
