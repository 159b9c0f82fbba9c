//! HARDENING.md A1 (rows 1-17): hostile layer tarballs applied as root into temp dirs, with
//! host sentinel files (content, mode, owner, mtime, link count) checked after every test.

mod common;

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_archive::{apply_layer, ApplyOptions, ArchiveErrorKind, WhiteoutMode};
use common::{apply, pb, skip_unless_root, Raw, RawTar, Scratch, Sentinels};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn lexists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// `<root>` + an absolute host path.
fn inside(root: &Path, abs: &Path) -> std::path::PathBuf {
    root.join(abs.strip_prefix("/").expect("absolute"))
}

#[test]
fn a1_01_traversal_names_are_clamped() {
    if skip_unless_root("a1_01") {
        return;
    }
    let s = Scratch::new("a1-01");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let abs_sentinel = pb(&sent.dir.join("host-sentinel"));
    let tar = RawTar::new()
        .file(b"../../host-sentinel", b"pwned1")
        .file(b"../host/host-sentinel", b"pwned2")
        .file(&abs_sentinel, b"pwned3")
        .file(b"/abs/path", b"abs")
        .file(b"./a/../../b", b"b")
        .file(b"//double//slash", b"dbl")
        .file(b"trailing/", b"trail")
        .file(b"nul\0../../../host-sentinel", b"nul")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    sent.check();
    assert_eq!(read(&root.join("host-sentinel")), b"pwned1");
    assert_eq!(read(&root.join("host/host-sentinel")), b"pwned2");
    assert_eq!(
        read(&inside(&root, &sent.dir.join("host-sentinel"))),
        b"pwned3"
    );
    assert_eq!(read(&root.join("abs/path")), b"abs");
    assert_eq!(read(&root.join("b")), b"b");
    assert_eq!(read(&root.join("double/slash")), b"dbl");
    assert_eq!(read(&root.join("trailing")), b"trail");
    assert_eq!(read(&root.join("nul")), b"nul");

    // A NUL inside a PAX path is malformed (Go: ErrHeader).
    let tar = RawTar::new()
        .pax(&[(b"path", b"x\0/../../../host-sentinel")])
        .file(b"x", b"x")
        .finish();
    let err = apply(&root, &tar, WhiteoutMode::Remove).expect_err("NUL in PAX path");
    assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive);
    sent.check();
}

#[test]
fn a1_02_absolute_symlink_parent_stays_in_root() {
    if skip_unless_root("a1_02") {
        return;
    }
    let s = Scratch::new("a1-02");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let tar = RawTar::new()
        .symlink(b"localetc", b"/etc")
        .file(b"localetc/x-berth-test", b"in root")
        .symlink(b"lhost", &pb(&sent.dir))
        .file(b"lhost/host-sentinel", b"pwned")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    sent.check();
    assert_eq!(read(&root.join("etc/x-berth-test")), b"in root");
    assert!(!Path::new("/etc/x-berth-test").exists());
    assert_eq!(
        read(&inside(&root, &sent.dir.join("host-sentinel"))),
        b"pwned"
    );
}

#[test]
fn a1_03_symlink_chains_stay_in_root() {
    if skip_unless_root("a1_03") {
        return;
    }
    let s = Scratch::new("a1-03");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let host = pb(&sent.dir);
    let mut dummy = b"/dummy/..".to_vec();
    dummy.extend_from_slice(&host);
    let tar = RawTar::new()
        .symlink(b"s1", &dummy)
        .file(b"s1/host-sentinel", b"1")
        .symlink(b"s2", b"/s3")
        .symlink(b"s3", &host)
        .file(b"s2/host-sentinel", b"2")
        .dir(b"d/")
        .symlink(b"d/s4", b"../s5")
        .symlink(b"s5", b"../../../../../../host")
        .file(b"d/s4/host-sentinel", b"3")
        .dir(b"etc/")
        .symlink(b"up", b"etc/../../upandout")
        .file(b"up/file", b"4")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    sent.check();
    assert_eq!(read(&inside(&root, &sent.dir.join("host-sentinel"))), b"2");
    assert_eq!(read(&root.join("host/host-sentinel")), b"3");
    assert_eq!(read(&root.join("upandout/file")), b"4");
    assert!(!s.dir.join("upandout").exists());
}

#[test]
fn a1_04_hardlinks_never_share_host_inodes() {
    if skip_unless_root("a1_04") {
        return;
    }
    let s = Scratch::new("a1-04");
    let sent = Sentinels::new(&s);
    let passwd_links = std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    let sentinel = pb(&sent.dir.join("host-sentinel"));
    let cases: Vec<Vec<u8>> = vec![
        RawTar::new().hardlink(b"l", b"/etc/passwd").finish(),
        RawTar::new().hardlink(b"l", b"../../etc/passwd").finish(),
        RawTar::new()
            .hardlink(b"l", b"../host/host-sentinel")
            .finish(),
        RawTar::new().hardlink(b"l", &sentinel).finish(),
        RawTar::new()
            .symlink(b"sd", &pb(&sent.dir))
            .hardlink(b"l", b"sd/host-sentinel")
            .finish(),
        RawTar::new()
            .hardlink(b"l", b"later")
            .file(b"later", b"x")
            .finish(),
        RawTar::new()
            .symlink(b"sym", &sentinel)
            .hardlink(b"l", b"sym")
            .finish(),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let root = s.sub(&format!("root{i}"));
        let res = apply(&root, tar, WhiteoutMode::Remove);
        sent.check();
        if let Ok(m) = std::fs::symlink_metadata(root.join("l")) {
            // Whatever was linked is inside root.
            assert!(
                m.file_type().is_symlink() || m.nlink() >= 2,
                "case {i}: unexpected link"
            );
        } else {
            let err = res.expect_err("no link made means an error");
            assert!(
                matches!(
                    err.kind(),
                    ArchiveErrorKind::NotFound | ArchiveErrorKind::Io
                ),
                "case {i}: {err}"
            );
        }
    }
    // The link to a symlink links the symlink itself (like Go's os.Link / linkat(2)).
    let m = std::fs::symlink_metadata(s.dir.join("root6/l")).expect("l");
    assert!(m.file_type().is_symlink());
    assert_eq!(m.nlink(), 2);
    assert_eq!(
        std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
        passwd_links
    );
}

#[test]
fn a1_05_no_metadata_through_symlinks() {
    if skip_unless_root("a1_05") {
        return;
    }
    let s = Scratch::new("a1-05");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let hostdir = pb(&sent.dir.join("hostdir"));
    let sentinel = pb(&sent.dir.join("host-sentinel"));
    let tar = RawTar::new()
        // CVE-2026-33056 shape: symlink, then a directory entry of the same name.
        .symlink(b"x", &hostdir)
        .entry(Raw::new(b"x/", b'5').mode(0o777).owner(999, 999), b"")
        // Symlink, then a file of the same name with other metadata.
        .symlink(b"y", &sentinel)
        .entry(Raw::new(b"y", b'0').mode(0o4777).owner(999, 999), b"")
        // Symlink then a FIFO / symlink of the same name.
        .symlink(b"z", &sentinel)
        .entry(Raw::new(b"z", b'6').mode(0o777), b"")
        .symlink(b"w", &hostdir)
        .symlink(b"w", b"elsewhere")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    sent.check();
    let x = std::fs::symlink_metadata(root.join("x")).expect("x");
    assert!(x.is_dir());
    assert_eq!((x.mode() & 0o7777, x.uid()), (0o777, 999));
    let y = std::fs::symlink_metadata(root.join("y")).expect("y");
    assert!(y.is_file());
    assert_eq!(y.mode() & 0o7777, 0o4777);
    assert!(std::fs::symlink_metadata(root.join("z"))
        .expect("z")
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::read_link(root.join("w")).expect("w"),
        Path::new("elsewhere")
    );
}

#[test]
fn a1_06_dir_symlink_replacement() {
    if skip_unless_root("a1_06") {
        return;
    }
    let s = Scratch::new("a1-06");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let tar = RawTar::new()
        .dir(b"a/")
        .file(b"a/f", b"f")
        .symlink(b"a", b"b")
        .symlink(b"c", &pb(&sent.dir))
        .dir(b"c/")
        .file(b"c/inner", b"inner")
        .dir(b"d/")
        .file(b"d/file", b"data")
        .hardlink(b"h", b"d/file")
        .symlink(b"d", b"x")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    sent.check();
    assert_eq!(
        std::fs::read_link(root.join("a")).expect("a"),
        Path::new("b")
    );
    assert!(std::fs::symlink_metadata(root.join("c"))
        .expect("c")
        .is_dir());
    assert_eq!(read(&root.join("c/inner")), b"inner");
    assert_eq!(read(&root.join("h")), b"data");
    assert_eq!(std::fs::metadata(root.join("h")).expect("h").nlink(), 1);
    assert!(std::fs::symlink_metadata(root.join("d"))
        .expect("d")
        .file_type()
        .is_symlink());
}

#[test]
fn a1_07_invalid_whiteouts_are_errors() {
    if skip_unless_root("a1_07") {
        return;
    }
    let s = Scratch::new("a1-07");
    let sent = Sentinels::new(&s);
    let long: Vec<u8> = [&b".wh."[..], &[b'a'; 252][..]].concat();
    let names: Vec<Vec<u8>> = vec![
        b".wh..".to_vec(),
        b".wh...".to_vec(),
        b"etc/.wh..".to_vec(),
        b".wh.".to_vec(),
        long,
    ];
    for (i, name) in names.iter().enumerate() {
        for mode in [WhiteoutMode::Remove, WhiteoutMode::Overlay] {
            let root = s.sub(&format!("root{i}-{mode:?}"));
            std::fs::write(root.join("keep"), b"k").expect("write");
            let tar = RawTar::new()
                .dir(b"etc/")
                .pax(&[(b"path", name)])
                .file(b"placeholder", b"")
                .finish();
            let err = apply(&root, &tar, mode).expect_err("invalid whiteout");
            assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{i}: {err}");
            assert!(err.to_string().starts_with("invalid archive"), "{err}");
            assert!(root.join("keep").exists());
        }
    }
    sent.check();
}

#[test]
fn a1_08_whiteout_of_symlink_removes_only_the_symlink() {
    if skip_unless_root("a1_08") {
        return;
    }
    let s = Scratch::new("a1-08");
    let sent = Sentinels::new(&s);
    let lower = RawTar::new()
        .dir(b"target/")
        .file(b"target/f", b"keep")
        .symlink(b"link", b"target")
        .symlink(b"hostlink", &pb(&sent.dir))
        .finish();
    let upper = RawTar::new()
        .file(b".wh.link", b"")
        .file(b".wh.hostlink", b"")
        .finish();
    let root = s.sub("flat");
    apply(&root, &lower, WhiteoutMode::Remove).expect("lower");
    apply(&root, &upper, WhiteoutMode::Remove).expect("upper");
    assert!(!lexists(&root.join("link")));
    assert!(!lexists(&root.join("hostlink")));
    assert_eq!(read(&root.join("target/f")), b"keep");

    let up = s.sub("upper");
    apply(&up, &upper, WhiteoutMode::Overlay).expect("overlay");
    let m = std::fs::symlink_metadata(up.join("link")).expect("whiteout");
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), 0);
    sent.check();
}

#[test]
fn a1_09_whiteout_under_dead_or_absolute_symlink_is_noop() {
    if skip_unless_root("a1_09") {
        return;
    }
    let s = Scratch::new("a1-09");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let lower = RawTar::new()
        .symlink(b"dead", b"/nonexistent")
        .symlink(b"abs", &pb(&sent.dir))
        .symlink(b"rel", b"../host")
        .finish();
    let upper = RawTar::new()
        .file(b"dead/.wh.x", b"")
        .file(b"abs/.wh.host-sentinel", b"")
        .file(b"abs/.wh..wh..opq", b"")
        .file(b"rel/.wh.hostdir", b"")
        .finish();
    apply(&root, &lower, WhiteoutMode::Remove).expect("lower");
    apply(&root, &upper, WhiteoutMode::Remove).expect("upper");
    sent.check();
    assert!(lexists(&root.join("dead")));
    assert!(!Path::new("/nonexistent").exists());
}

#[test]
fn a1_10_opaque_and_recreate_in_flat_mode() {
    if skip_unless_root("a1_10") {
        return;
    }
    let s = Scratch::new("a1-10");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let l1 = RawTar::new()
        .dir(b"d/")
        .file(b"d/a", b"a")
        .dir(b"d/sub/")
        .file(b"d/sub/b", b"b")
        .dir(b"e/")
        .file(b"e/old", b"old")
        .dir(b"g/")
        .file(b"g/old", b"old")
        .finish();
    // Opaque first (Docker order), then new content; whiteout a dir then re-create it;
    // opaque marker after an entry of the same layer keeps that entry.
    let l2 = RawTar::new()
        .dir(b"d/")
        .file(b"d/.wh..wh..opq", b"")
        .file(b"d/c", b"c")
        .file(b".wh.e", b"")
        .dir(b"e/")
        .file(b"e/new", b"new")
        .file(b"g/new", b"new")
        .file(b"g/.wh..wh..opq", b"")
        .finish();
    apply(&root, &l1, WhiteoutMode::Remove).expect("l1");
    apply(&root, &l2, WhiteoutMode::Remove).expect("l2");
    let list = |p: &str| {
        let mut v: Vec<String> = std::fs::read_dir(root.join(p))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list("d"), ["c"]);
    assert_eq!(list("e"), ["new"]);
    assert_eq!(list("g"), ["new"]);
    sent.check();
}

#[test]
fn a1_11_pax_size_smuggling_like_go() {
    if skip_unless_root("a1_11") {
        return;
    }
    let s = Scratch::new("a1-11");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    // The PAX size (1024) covers a block that *looks like* a header for ../host/host-sentinel.
    // Go reads it as file data; a reader using the ustar size (0) would extract it.
    let smuggled = RawTar::new().file(b"../host/host-sentinel", b"pwned").bytes;
    assert_eq!(smuggled.len(), 1024);
    let tar = RawTar::new()
        .pax(&[(b"size", b"1024")])
        .entry(Raw::new(b"carrier", b'0').size(0), &smuggled)
        .file(b"after", b"after")
        .finish();
    let stats = apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    assert_eq!(stats.entries, 2);
    assert_eq!(read(&root.join("carrier")), smuggled);
    assert!(!root.join("host").exists());
    // And with the PAX header before a GNU long name, the size still applies (Go).
    let tar = RawTar::new()
        .pax(&[(b"size", b"1024")])
        .gnu_long(b'L', b"carrier2")
        .entry(Raw::new(b"x", b'0').size(0), &smuggled)
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    assert_eq!(read(&root.join("carrier2")), smuggled);
    assert!(!root.join("host").exists());
    // Malformed records fail.
    let tar = RawTar::new()
        .entry(Raw::new(b"p", b'x').size(10), b"11 size=1\n")
        .file(b"f", b"")
        .finish();
    assert!(apply(&root, &tar, WhiteoutMode::Remove).is_err());
    sent.check();
}

/// An endless stream of empty-file headers, generated on the fly.
struct EmptyEntries {
    i: u64,
    limit: u64,
    blk: [u8; 512],
    pos: usize,
}

impl Read for EmptyEntries {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == 512 {
            if self.i == self.limit {
                return Ok(0);
            }
            self.blk = common::block(&Raw::new(format!("f{}", self.i % 1000).as_bytes(), b'0'));
            self.i += 1;
            self.pos = 0;
        }
        let n = buf.len().min(512 - self.pos);
        buf[..n].copy_from_slice(&self.blk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a1_12_sparse_huge_pax_and_entry_floods_are_bounded() {
    if skip_unless_root("a1_12") {
        return;
    }
    let s = Scratch::new("a1-12");
    let root = s.sub("root");
    // GNU sparse: refused, whatever the number of regions.
    let tar = RawTar::new()
        .entry(Raw::new(b"sparse", b'S').size(0), b"")
        .finish();
    let err = apply(&root, &tar, WhiteoutMode::Remove).expect_err("sparse");
    assert_eq!(err.kind(), ArchiveErrorKind::Unsupported);
    let tar = RawTar::new()
        .pax(&[(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0")])
        .file(b"f", b"")
        .finish();
    let err = apply(&root, &tar, WhiteoutMode::Remove).expect_err("pax sparse");
    assert_eq!(err.kind(), ArchiveErrorKind::Unsupported);
    // A PAX header claiming 100 MB: refused before reading or allocating it.
    let mut tar = common::block(&Raw::new(b"pax", b'x').size(100 << 20)).to_vec();
    tar.extend([b'9'; 4096]);
    let err = apply(&root, &tar, WhiteoutMode::Remove).expect_err("huge pax");
    assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded);
    // 10^7 zero-size entries: stopped at max_entries.
    let opts = ApplyOptions {
        max_entries: 2000,
        ..ApplyOptions::default()
    };
    let flood = EmptyEntries {
        i: 0,
        limit: 10_000_000,
        blk: [0; 512],
        pos: 512,
    };
    let err = apply_layer(&root, flood, &opts).expect_err("flood");
    assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded);
    // Data bytes beyond max_bytes: refused at the header.
    let opts = ApplyOptions {
        max_bytes: 1000,
        ..ApplyOptions::default()
    };
    let tar = RawTar::new().file(b"big", &[0u8; 2000]).finish();
    let err = apply_layer(&root, &tar[..], &opts).expect_err("bytes");
    assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded);
    assert!(!root.join("big").exists());
}

fn vfs_cap() -> Vec<u8> {
    // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_BIND_SERVICE (bit 10).
    let mut v = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

#[test]
fn a1_13_devices_setuid_and_capabilities_by_policy() {
    if skip_unless_root("a1_13") {
        return;
    }
    let s = Scratch::new("a1-13");
    let sent = Sentinels::new(&s);
    let cap = vfs_cap();
    let mut chr = Raw::new(b"dev/null", b'3').mode(0o666);
    chr.size = 0;
    let mut tar = RawTar::new().dir(b"dev/");
    let mut b = common::block(&chr);
    // devmajor 1, devminor 3
    b[329..336].copy_from_slice(b"0000001");
    b[337..344].copy_from_slice(b"0000003");
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&c| u64::from(c)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    tar.bytes.extend(b);
    let tar = tar
        .symlink(b"hostdev", &pb(&sent.dir))
        .entry(Raw::new(b"hostdev/fifo", b'6').mode(0o644), b"")
        .pax(&[(b"SCHILY.xattr.security.capability", &cap)])
        .entry(Raw::new(b"bin/ping", b'0').mode(0o4755).size(3), b"elf")
        .finish();

    // Rootful: everything kept.
    let root = s.sub("rootful");
    let stats = apply(&root, &tar, WhiteoutMode::Remove).expect("rootful");
    assert_eq!(stats.skipped, 0);
    let m = std::fs::symlink_metadata(root.join("dev/null")).expect("dev/null");
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(m.mode() & 0o7777, 0o666);
    let ping = std::fs::metadata(root.join("bin/ping")).expect("ping");
    assert_eq!(ping.mode() & 0o7777, 0o4755);
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(root.join("bin/ping"), "security.capability", &mut buf[..])
        .expect("capability kept");
    assert_eq!(&buf[..n], &cap[..]);
    assert!(inside(&root, &sent.dir.join("fifo")).exists());

    // Rootless policy: devices skipped, setuid and capabilities dropped.
    let root = s.sub("rootless");
    let opts = ApplyOptions {
        same_owner: false,
        allow_devices: false,
        ..ApplyOptions::default()
    };
    let stats = apply_layer(&root, &tar[..], &opts).expect("rootless");
    assert_eq!(stats.skipped, 1);
    assert!(!lexists(&root.join("dev/null")));
    let ping = std::fs::metadata(root.join("bin/ping")).expect("ping");
    assert_eq!(ping.mode() & 0o7777, 0o755);
    assert!(
        rustix::fs::getxattr(root.join("bin/ping"), "security.capability", &mut buf[..]).is_err()
    );
    sent.check();
}

#[test]
fn a1_14_overlay_and_selinux_xattrs_are_stripped() {
    if skip_unless_root("a1_14") {
        return;
    }
    let s = Scratch::new("a1-14");
    let root = s.sub("root");
    let tar = RawTar::new()
        .pax(&[
            (b"SCHILY.xattr.trusted.overlay.opaque", b"y"),
            (b"SCHILY.xattr.user.overlay.redirect", b"/etc"),
            (
                b"SCHILY.xattr.security.selinux",
                b"system_u:object_r:shadow_t:s0",
            ),
            (b"SCHILY.xattr.user.ok", b"fine"),
        ])
        .dir(b"d/")
        .finish();
    apply(&root, &tar, WhiteoutMode::Overlay).expect("apply");
    let mut buf = [0u8; 256];
    let p = root.join("d");
    assert!(rustix::fs::getxattr(&p, "trusted.overlay.opaque", &mut buf[..]).is_err());
    assert!(rustix::fs::getxattr(&p, "user.overlay.redirect", &mut buf[..]).is_err());
    let n = rustix::fs::getxattr(&p, "user.ok", &mut buf[..]).expect("user.ok");
    assert_eq!(&buf[..n], b"fine");
}

#[test]
fn a1_15_duplicates_last_wins() {
    if skip_unless_root("a1_15") {
        return;
    }
    let s = Scratch::new("a1-15");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    let tar = RawTar::new()
        .file(b"a", b"1")
        .file(b"a", b"2")
        .file(b"b", b"file")
        .dir(b"b/")
        .dir(b"c/")
        .file(b"c/x", b"x")
        .file(b"c", b"now a file")
        .entry(Raw::new(b"m/", b'5').mode(0o700), b"")
        .entry(Raw::new(b"m/", b'5').mode(0o751), b"")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    assert_eq!(read(&root.join("a")), b"2");
    assert!(root.join("b").is_dir());
    assert_eq!(read(&root.join("c")), b"now a file");
    assert_eq!(
        std::fs::metadata(root.join("m")).expect("m").mode() & 0o7777,
        0o751
    );
    sent.check();
}

#[test]
fn a1_16_bytes_names_and_long_paths() {
    if skip_unless_root("a1_16") {
        return;
    }
    let s = Scratch::new("a1-16");
    let root = s.sub("root");
    let comp = vec![b'c'; 255];
    let mut deep = Vec::new();
    while deep.len() + 256 < 4000 {
        deep.extend_from_slice(&[b'd'; 255]);
        deep.push(b'/');
    }
    deep.extend_from_slice(b"leaf");
    let tar = RawTar::new()
        .file(b"bad-\xff\xfe-utf8", b"bytes")
        .pax(&[(b"path", &comp)])
        .file(b"x", b"255")
        .pax(&[(b"path", &deep)])
        .file(b"y", b"deep")
        .finish();
    apply(&root, &tar, WhiteoutMode::Remove).expect("apply");
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        read(&root.join(std::ffi::OsStr::from_bytes(b"bad-\xff\xfe-utf8"))),
        b"bytes"
    );
    assert_eq!(read(&root.join(std::ffi::OsStr::from_bytes(&comp))), b"255");

    // 256-byte component, a path over 4096 bytes: errors, no panic.
    let too_long_comp = vec![b'd'; 256];
    let too_long_path = vec![b'e'; 5000];
    for name in [too_long_comp, too_long_path] {
        let tar = RawTar::new()
            .pax(&[(b"path", &name)])
            .file(b"z", b"")
            .finish();
        let err = apply(&root, &tar, WhiteoutMode::Remove).expect_err("too long");
        assert_eq!(err.kind(), ArchiveErrorKind::InvalidArchive, "{err}");
    }
}

#[test]
fn a1_17_link_floods_are_bounded_and_inode_exhaustion_is_reported() {
    if skip_unless_root("a1_17") {
        return;
    }
    let s = Scratch::new("a1-17");
    // One file, "a million" links: bounded by max_entries.
    let mut tar = RawTar::new().file(b"f", b"x");
    for i in 0..3000 {
        tar = tar.hardlink(format!("l{i}").as_bytes(), b"f");
    }
    let tar = tar.finish();
    let root = s.sub("root");
    let opts = ApplyOptions {
        max_entries: 1000,
        ..ApplyOptions::default()
    };
    let err = apply_layer(&root, &tar[..], &opts).expect_err("links");
    assert_eq!(err.kind(), ArchiveErrorKind::LimitExceeded);

    // Inode exhaustion on a small tmpfs: a clear "no space / inodes" error.
    let mnt = s.sub("small");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "berth-test"])
        .arg(&mnt)
        .status()
        .is_ok_and(|st| st.success());
    if !ok {
        eprintln!("skipping inode exhaustion part: cannot mount tmpfs");
        return;
    }
    struct Umount<'a>(&'a Path);
    impl Drop for Umount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Umount(&mnt);
    let mut tar = RawTar::new();
    for i in 0..200 {
        tar = tar.file(format!("f{i}").as_bytes(), b"");
    }
    let err = apply(&mnt, &tar.finish(), WhiteoutMode::Remove).expect_err("inodes");
    assert_eq!(err.kind(), ArchiveErrorKind::NoSpace, "{err}");
    assert!(err.to_string().contains("inodes"), "{err}");
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn aufs_hardlink_dir_is_resolved_then_removed() {
    if skip_unless_root("aufs_plnk") {
        return;
    }
    let s = Scratch::new("aufs");
    let sent = Sentinels::new(&s);
    let tar = RawTar::new()
        .dir(b".wh..wh.plnk/")
        .file(b".wh..wh.plnk/1234.56", b"shared")
        .dir(b"bin/")
        .hardlink(b"bin/a", b".wh..wh.plnk/1234.56")
        .hardlink(b"bin/b", b"/.wh..wh.plnk/1234.56")
        .dir(b".wh..wh.orph/")
        .file(b".wh..wh.orph/x", b"orphan")
        .file(b".wh..wh.aufs", b"")
        .finish();
    for mode in [WhiteoutMode::Remove, WhiteoutMode::Overlay] {
        let root = s.sub(&format!("root-{mode:?}"));
        apply(&root, &tar, mode).expect("apply");
        assert_eq!(read(&root.join("bin/a")), b"shared");
        let m = std::fs::metadata(root.join("bin/b")).expect("b");
        assert_eq!(m.nlink(), 2);
        for meta in [".wh..wh.plnk", ".wh..wh.orph", ".wh..wh.aufs"] {
            assert!(!lexists(&root.join(meta)), "{meta} left behind");
        }
    }
    sent.check();
}
