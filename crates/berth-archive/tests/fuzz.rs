//! Deterministic mutation fuzzing: corrupted archives never panic the reader or apply, and
//! never touch the host (HARDENING A1 row 16 "no panic", and CONTAIN under garbage).

mod common;

use std::io::Read;

use berth_archive::{apply_layer, ApplyOptions, TarReader, WhiteoutMode};
use common::{pb, skip_unless_root, Raw, RawTar, Scratch, Sentinels};

/// xorshift64*: a fixed seed makes every run identical.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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

fn mutate(rng: &mut Rng, mut t: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(6) {
        if t.is_empty() {
            break;
        }
        match rng.below(6) {
            0 | 1 => {
                let i = rng.below(t.len());
                t[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(t.len());
                t[i] = rng.next() as u8;
            }
            3 => {
                let n = rng.below(t.len());
                t.truncate(n);
            }
            4 => {
                let blocks = t.len() / 512;
                if blocks > 0 {
                    let b = rng.below(blocks) * 512;
                    let copy = t[b..b + 512].to_vec();
                    let at = rng.below(blocks) * 512;
                    t.splice(at..at, copy);
                }
            }
            _ => {
                // Make a header field's digits hostile, keeping the checksum plausible.
                let blocks = t.len() / 512;
                if blocks > 0 {
                    let b = rng.below(blocks) * 512;
                    let field = [100usize, 108, 116, 124, 136][rng.below(5)];
                    t[b + field] = [b'7', b' ', 0, 0x80, 0xff][rng.below(5)];
                }
            }
        }
    }
    t
}

/// Recomputes the checksum of every block that looks like a ustar header, so mutations of
/// header fields get past the checksum and reach the field parsers and apply.
fn fix_checksums(t: &mut [u8]) {
    for b in t.chunks_exact_mut(512) {
        if &b[257..262] == b"ustar" {
            b[148..156].copy_from_slice(b"        ");
            let sum: u64 = b.iter().map(|&c| u64::from(c)).sum();
            b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        }
    }
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
    let mut applied_ok = 0;
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
            if apply_layer(&root, &t[..], &o).is_ok() {
                applied_ok += 1;
            }
        }
    }
    sent.check();
    eprintln!("{applied_ok} of 300 mutated archives applied cleanly");
}
