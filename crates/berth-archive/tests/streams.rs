//! HARDENING.md A2 (rows 18-22): compressed layer streams, bombs, truncation, trailing
//! garbage, digests over the exact bytes, sniffing instead of trusting media types; plus a
//! differential check of PAX/ustar size handling against python's tarfile (A1 row 11).

mod common;

use std::io::{Read, Write};

use berth_archive::{
    apply_layer, decompress, sniff, ApplyOptions, ArchiveErrorKind, Compression, DigestReader,
    TarReader,
};
use common::{have, skip_unless_root, Raw, RawTar, Scratch};
use sha2_digest::hex_sha256;

mod sha2_digest {
    /// sha256 of bytes as `sha256:<hex>`, computed independently of the crate's adapters
    /// (through `sha256sum` when present, else the crate's reader over a slice).
    pub fn hex_sha256(data: &[u8]) -> String {
        let mut r = berth_archive::DigestReader::new(data);
        std::io::copy(&mut r, &mut std::io::sink()).expect("hash");
        r.digest()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

fn layer() -> Vec<u8> {
    RawTar::new()
        .dir(b"etc/")
        .file(b"etc/hostname", b"berth\n")
        .file(b"data", &vec![b'z'; 300_000])
        .finish()
}

#[test]
fn a2_18_bombs_are_bounded() {
    if skip_unless_root("a2_18") {
        return;
    }
    let s = Scratch::new("a2-18");
    // A layer whose single file is 64 MiB of zeros: tiny compressed, big decompressed.
    let mut tar = common::block(&Raw::new(b"bomb", b'0').size(64 << 20)).to_vec();
    tar.resize(tar.len() + (64 << 20) + 1024, 0);
    for blob in [gzip(&tar), zstd(&tar)] {
        assert!(blob.len() < 1 << 20, "compressed bomb is small");
        let root = s.sub(&format!("root-{}", blob.len()));
        let stream = decompress(&blob[..], 8 << 20).expect("sniff");
        let err = apply_layer(&root, stream, &ApplyOptions::default()).expect_err("bomb");
        assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded, "{err}");
    }
}

#[test]
fn a2_19_truncated_garbage_multimember() {
    if skip_unless_root("a2_19") {
        return;
    }
    let s = Scratch::new("a2-19");
    let tar = layer();
    for (i, blob) in [gzip(&tar), zstd(&tar)].into_iter().enumerate() {
        // Truncated: error.
        let root = s.sub(&format!("trunc{i}"));
        let cut = &blob[..blob.len() - 7];
        let err = apply_layer(
            &root,
            decompress(cut, 1 << 30).expect("sniff"),
            &ApplyOptions::default(),
        )
        .expect_err("truncated");
        assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{err}");
        // Trailing garbage after the last member/frame: error even though the tar inside
        // is complete (apply drains the stream to its end).
        let root = s.sub(&format!("garbage{i}"));
        let mut g = blob.clone();
        g.extend_from_slice(b"\x01\x02garbage after the stream");
        let err = apply_layer(
            &root,
            decompress(&g[..], 1 << 30).expect("sniff"),
            &ApplyOptions::default(),
        )
        .expect_err("garbage");
        assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{err}");
        // The digest covers every byte of the blob.
        let root = s.sub(&format!("ok{i}"));
        let mut dr = DigestReader::new(&blob[..]);
        apply_layer(
            &root,
            decompress(&mut dr, 1 << 30).expect("sniff"),
            &ApplyOptions::default(),
        )
        .expect("apply");
        assert_eq!(dr.bytes_read(), blob.len() as u64);
        assert_eq!(dr.digest(), hex_sha256(&blob));
    }
    // Multi-member gzip (pigz-style) is one stream, like Go's gzip reader.
    let (a, b) = tar.split_at(10_000);
    let mut multi = gzip(a);
    multi.extend(gzip(b));
    let root = s.sub("multi");
    apply_layer(
        &root,
        decompress(&multi[..], 1 << 30).expect("sniff"),
        &ApplyOptions::default(),
    )
    .expect("multi-member");
    assert_eq!(
        std::fs::read(root.join("etc/hostname")).expect("read"),
        b"berth\n"
    );
}

#[test]
fn a2_21_diff_id_is_the_uncompressed_digest() {
    if skip_unless_root("a2_21") {
        return;
    }
    let s = Scratch::new("a2-21");
    let tar = layer();
    let blob = gzip(&tar);
    let root = s.sub("root");
    let mut diff = DigestReader::new(decompress(&blob[..], 1 << 30).expect("sniff"));
    apply_layer(&root, &mut diff, &ApplyOptions::default()).expect("apply");
    assert_eq!(diff.digest(), hex_sha256(&tar));
    assert_ne!(diff.digest(), hex_sha256(&blob));
}

#[test]
fn a2_22_content_is_sniffed_not_trusted() {
    if skip_unless_root("a2_22") {
        return;
    }
    let s = Scratch::new("a2-22");
    let tar = layer();
    for (i, (blob, kind)) in [
        (tar.clone(), Compression::None),
        (gzip(&tar), Compression::Gzip),
        (zstd(&tar), Compression::Zstd),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(sniff(&blob), kind);
        let root = s.sub(&format!("r{i}"));
        apply_layer(
            &root,
            decompress(&blob[..], 1 << 30).expect("sniff"),
            &ApplyOptions::default(),
        )
        .expect("apply whatever the media type said");
        assert_eq!(
            std::fs::read(root.join("data")).expect("read").len(),
            300_000
        );
    }
    // Garbage that is no tar at all: an error, never a misparse.
    let root = s.sub("garbage");
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
    let err = apply_layer(
        &root,
        decompress(&junk[..], 1 << 30).expect("sniff"),
        &ApplyOptions::default(),
    )
    .expect_err("junk");
    assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive);
}

/// Lists names and data sizes with our reader.
fn ours(tar: &[u8]) -> Vec<(String, u64)> {
    let mut r = TarReader::new(tar);
    let mut out = Vec::new();
    while let Some(mut e) = r.next_entry().expect("entry") {
        let mut d = Vec::new();
        e.read_to_end(&mut d).expect("data");
        out.push((
            String::from_utf8_lossy(&e.header.name).into_owned(),
            d.len() as u64,
        ));
    }
    out
}

/// Lists names and data sizes with python's tarfile.
fn python(s: &Scratch, tar: &[u8]) -> Vec<(String, u64)> {
    let p = s.dir.join("diff.tar");
    std::fs::write(&p, tar).expect("write");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sys,tarfile\n\
             t=tarfile.open(sys.argv[1])\n\
             for m in t:\n\
             \x20 n=len(t.extractfile(m).read()) if m.isreg() else 0\n\
             \x20 print(m.name.rstrip('/'), n)",
        )
        .arg(&p)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (n, sz) = l.rsplit_once(' ').expect("name size");
            (n.to_string(), sz.parse().expect("size"))
        })
        .collect()
}

#[test]
fn a1_11_differential_against_python_tarfile() {
    if !have("python3") {
        eprintln!("skipping differential test: python3 missing");
        return;
    }
    let s = Scratch::new("diff");
    let smuggled = RawTar::new().file(b"smuggled", b"pwned").bytes;
    let cases = [
        // ustar size 0, PAX size 1024 (CVE-2025-62518 / CVE-2026-33055 shape).
        RawTar::new()
            .pax(&[(b"size", b"1024")])
            .entry(Raw::new(b"carrier", b'0').size(0), &smuggled)
            .file(b"after", b"x")
            .finish(),
        // ustar size 1024, PAX size 0.
        RawTar::new()
            .pax(&[(b"size", b"0")])
            .entry(Raw::new(b"carrier", b'0').size(1024), b"")
            .bytes
            .into_iter()
            .chain(smuggled.clone())
            .chain([0u8; 1024])
            .collect(),
        // Header-only type with a size: no data follows.
        RawTar::new()
            .entry(Raw::new(b"link", b'2').link(b"t").size(1024), b"")
            .bytes
            .into_iter()
            .chain(smuggled.clone())
            .chain([0u8; 1024])
            .collect(),
        // PAX path and GNU long names.
        RawTar::new()
            .pax(&[(b"path", "p".repeat(300).as_bytes())])
            .file(b"short", b"abc")
            .gnu_long(b'L', "g".repeat(200).as_bytes())
            .file(b"short2", b"de")
            .finish(),
    ];
    for (i, tar) in cases.iter().enumerate() {
        assert_eq!(ours(tar), python(&s, tar), "case {i}");
    }
}
