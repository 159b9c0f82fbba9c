//! Deterministic mutation fuzzing: corrupted archives never panic the reader or apply, and
//! never touch the host (HARDENING A1 row 16 "no panic", and CONTAIN under garbage).

mod common;

use std::io::Read;

use berth_archive::{apply_layer, ApplyOptions, TarReader, WhiteoutMode};
use common::{fix_checksums, mutate, pb, skip_unless_root, Raw, RawTar, Rng, Scratch, Sentinels};

fn corpus(host: &[u8]) -> Vec<Vec<u8>> {
    vec![
        RawTar::new()
            .dir(b"etc/")
            .file(b"etc/passwd", b"root:x:0:0\n")
            .symlink(b"etc/link", b"passwd")
            .hardlink(b"etc/hard", b"etc/passwd")
            .entry(Raw::new(b"etc/fifo", b'6'), b"")
            .finish(),
        RawTar::new()
            .pax(&[
                (b"path", "p/".repeat(80).as_bytes()),
                (b"SCHILY.xattr.user.x", b"v"),
                (b"mtime", b"1.5"),
            ])
            .file(b"x", b"data")
            .gnu_long(b'L', "l".repeat(150).as_bytes())
            .file(b"y", b"more data")
            .finish(),
        RawTar::new()
            .dir(b"d/")
            .file(b"d/.wh..wh..opq", b"")
            .file(b".wh.gone", b"")
            .symlink(b"h", host)
            .file(b"h/x", b"contained")
            .finish(),
    ]
}

#[test]
fn mutated_archives_never_panic_or_escape() {
    if skip_unless_root("fuzz") {
        return;
    }
    let s = Scratch::new("fuzz");
    let sent = Sentinels::new(&s);
    let corpus = corpus(&pb(&sent.dir));
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let opts = ApplyOptions {
        max_entries: 1000,
        max_bytes: 1 << 20,
        ..ApplyOptions::default()
    };
    let (mut applied, mut applied_ok) = (0, 0);
    for iter in 0..3000 {
        let base = corpus[rng.below(corpus.len())].clone();
        let mut t = mutate(&mut rng, base);
        if rng.below(2) == 0 {
            fix_checksums(&mut t);
        }
        let mut r = TarReader::new(&t[..]);
        while let Ok(Some(mut e)) = r.next_entry() {
            let mut sink = Vec::new();
            if e.read_to_end(&mut sink).is_err() {
                break;
            }
        }
        if iter % 10 == 0 {
            let root = s.sub(&format!("r{}", iter % 50));
            let mode = if iter % 20 == 0 {
                WhiteoutMode::Overlay
            } else {
                WhiteoutMode::Remove
            };
            let o = ApplyOptions {
                whiteouts: mode,
                ..opts.clone()
            };
            applied += 1;
            if apply_layer(&root, &t[..], &o).is_ok() {
                applied_ok += 1;
            }
        }
    }
    sent.check();
    eprintln!("{applied_ok} of {applied} mutated archives applied cleanly");
}
