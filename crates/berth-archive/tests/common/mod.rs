//! Shared helpers of the integration tests: unique temp dirs, host sentinels, and a raw tar
//! builder for hostile archives.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_archive::{ApplyOptions, ApplyStats, ArchiveError, WhiteoutMode};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temp dir named after the test and the pid; removed on drop (even when the test panics).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("berth-archive-{test}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch { dir }
    }

    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).expect("create sub dir");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Undo anything that could block removal (immutable bits are never set by tests).
        let _ = std::process::Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(self.dir.join("merged"))
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (returns true) when not root, with a message.
pub fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root");
        return true;
    }
    false
}

/// Host files outside the target root whose every property is checked after a test.
pub struct Sentinels {
    pub dir: PathBuf,
    files: Vec<(PathBuf, Snapshot)>,
}

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    content: Option<Vec<u8>>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    nlink: u64,
    entries: Option<Vec<String>>,
}

fn snapshot(p: &Path) -> Snapshot {
    let md = std::fs::symlink_metadata(p).expect("sentinel exists");
    let (content, entries) = if md.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(p)
            .expect("read sentinel dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        (None, Some(names))
    } else {
        (Some(std::fs::read(p).expect("read sentinel")), None)
    };
    Snapshot {
        content,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        mtime: md.mtime(),
        nlink: md.nlink(),
        entries,
    }
}

impl Sentinels {
    /// Creates `<scratch>/host` with a file `host-sentinel` (0640, owner 4321:4321, old mtime)
    /// and a dir `hostdir` (0750), plus `<scratch>/host-sentinel` next to the root.
    pub fn new(s: &Scratch) -> Sentinels {
        let dir = s.sub("host");
        let file = dir.join("host-sentinel");
        std::fs::write(&file, b"host secret").expect("write sentinel");
        let hostdir = dir.join("hostdir");
        std::fs::create_dir(&hostdir).expect("mkdir sentinel");
        let sibling = s.dir.join("host-sentinel");
        std::fs::write(&sibling, b"sibling secret").expect("write sentinel");
        for (p, mode) in [(&file, 0o640), (&hostdir, 0o750), (&sibling, 0o600)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            if is_root() {
                std::os::unix::fs::lchown(p, Some(4321), Some(4321)).expect("chown");
            }
            let t = std::fs::FileTimes::new()
                .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000));
            std::fs::File::open(p)
                .expect("open sentinel")
                .set_times(t)
                .expect("set times");
        }
        let files = [file, hostdir, sibling, dir.clone()]
            .into_iter()
            .map(|p| {
                let snap = snapshot(&p);
                (p, snap)
            })
            .collect();
        Sentinels { dir, files }
    }

    /// Panics if any sentinel changed (content, mode, owner, mtime, link count, dir listing).
    pub fn check(&self) {
        for (p, before) in &self.files {
            assert_eq!(
                &snapshot(p),
                before,
                "host sentinel {} changed",
                p.display()
            );
        }
    }
}

/// Applies `tar` into `root` in `mode`.
pub fn apply(root: &Path, tar: &[u8], mode: WhiteoutMode) -> Result<ApplyStats, ArchiveError> {
    let opts = ApplyOptions {
        whiteouts: mode,
        ..ApplyOptions::default()
    };
    berth_archive::apply_layer(root, tar, &opts)
}

/// A raw tar builder: every field under the test's control, checksums computed.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

/// One raw header.
#[derive(Clone)]
pub struct Raw {
    pub name: Vec<u8>,
    pub flag: u8,
    pub size: u64,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

impl Raw {
    pub fn new(name: &[u8], flag: u8) -> Raw {
        Raw {
            name: name.to_vec(),
            flag,
            size: 0,
            link: Vec::new(),
            mode: if flag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }
    pub fn link(mut self, target: &[u8]) -> Raw {
        self.link = target.to_vec();
        self
    }
    pub fn size(mut self, size: u64) -> Raw {
        self.size = size;
        self
    }
    pub fn mode(mut self, mode: u32) -> Raw {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u32, gid: u32) -> Raw {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    assert!(s.len() <= digits, "octal overflow in test header");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

pub fn block(h: &Raw) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = h.name.len().min(100);
    b[..n].copy_from_slice(&h.name[..n]);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], u64::from(h.uid));
    octal(&mut b[116..124], u64::from(h.gid));
    octal(&mut b[124..136], h.size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.flag;
    let l = h.link.len().min(100);
    b[157..157 + l].copy_from_slice(&h.link[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(c)
            }
        })
        .sum();
    octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

pub fn pax_record(k: &[u8], v: &[u8]) -> Vec<u8> {
    let base = k.len() + v.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(k);
    out.push(b'=');
    out.extend_from_slice(v);
    out.push(b'\n');
    out
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// Header plus data (data length must match what the reader will consume).
    pub fn entry(mut self, h: Raw, data: &[u8]) -> RawTar {
        self.bytes.extend(block(&h));
        self.data(data)
    }

    pub fn file(self, name: &[u8], data: &[u8]) -> RawTar {
        self.entry(Raw::new(name, b'0').size(data.len() as u64), data)
    }

    pub fn dir(self, name: &[u8]) -> RawTar {
        self.entry(Raw::new(name, b'5'), b"")
    }

    pub fn symlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.entry(Raw::new(name, b'2').link(target), b"")
    }

    pub fn hardlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.entry(Raw::new(name, b'1').link(target), b"")
    }

    pub fn data(mut self, data: &[u8]) -> RawTar {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A PAX `x` header with these records (applies to the next entry).
    pub fn pax(self, recs: &[(&[u8], &[u8])]) -> RawTar {
        let mut body = Vec::new();
        for (k, v) in recs {
            body.extend(pax_record(k, v));
        }
        let h = Raw::new(b"PaxHeaders/x", b'x').size(body.len() as u64);
        self.entry(h, &body)
    }

    /// A GNU long name (`L`) or long link (`K`) meta header.
    pub fn gnu_long(self, flag: u8, name: &[u8]) -> RawTar {
        let mut body = name.to_vec();
        body.push(0);
        let h = Raw::new(b"././@LongLink", flag).size(body.len() as u64);
        self.entry(h, &body)
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend([0u8; 1024]);
        self.bytes
    }
}

/// Path bytes of a host path.
pub fn pb(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

/// Whether a tool is on PATH.
pub fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// xorshift64*: a fixed seed makes every run identical.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Applies 1-6 random mutations (bit flips, byte sets, truncation, duplicated blocks,
/// hostile numeric fields).
pub fn mutate(rng: &mut Rng, mut t: Vec<u8>) -> Vec<u8> {
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
pub fn fix_checksums(t: &mut [u8]) {
    for b in t.chunks_exact_mut(512) {
        if &b[257..262] == b"ustar" {
            b[148..156].copy_from_slice(b"        ");
            let sum: u64 = b.iter().map(|&c| u64::from(c)).sum();
            b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        }
    }
}
