//! pack -> apply round trips: files, dirs, symlinks, hardlinks, modes, owners, mtimes,
//! xattrs, devices; determinism; and cross-checks with GNU tar and python's tarfile.

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_archive::{pack, ApplyOptions, PackOptions};
use common::{have, skip_unless_root, Scratch};

#[derive(Debug, PartialEq, Eq)]
struct Desc {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    /// First path (in walk order) sharing this inode.
    link_group: PathBuf,
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut list = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut list[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut v = vec![0u8; 4096];
        if let Ok(len) = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]) {
            v.truncate(len);
            out.push((name, v));
        }
    }
    out.sort();
    out
}

fn describe(root: &Path) -> BTreeMap<PathBuf, Desc> {
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut BTreeMap<PathBuf, Desc>,
        inodes: &mut BTreeMap<u64, PathBuf>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if ft.is_file() {
                ("file", std::fs::read(&p).expect("read"))
            } else {
                ("special", Vec::new())
            };
            let group = inodes.entry(md.ino()).or_insert_with(|| r.clone()).clone();
            out.insert(
                r.clone(),
                Desc {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: md.mtime(),
                    content,
                    rdev: md.rdev(),
                    xattrs: if ft.is_symlink() {
                        Vec::new()
                    } else {
                        xattrs(&p)
                    },
                    link_group: if ft.is_dir() { r.clone() } else { group },
                },
            );
            if ft.is_dir() {
                walk(root, &r, out, inodes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out, &mut BTreeMap::new());
    out
}

fn set_mtime_nofollow(p: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// A tree exercising every preserved property.
fn build_tree(src: &Path) {
    let w = |p: &str, data: &[u8], mode: u32, uid: u32| {
        let path = src.join(p);
        std::fs::write(&path, data).expect("write");
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid + 1)).expect("chown");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    for (d, mode) in [
        ("etc", 0o755),
        ("tmp", 0o1777),
        ("secret", 0o700),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("g", 0o2775),
    ] {
        std::fs::create_dir(src.join(d)).expect("mkdir");
        std::fs::set_permissions(src.join(d), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
    }
    std::os::unix::fs::lchown(src.join("secret"), Some(1000), Some(1000)).expect("chown");
    w("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644, 0);
    w("secret/key", b"k", 0o600, 1000);
    w("usr/bin/su", b"\x7fELF", 0o4755, 0);
    w("usr/bin/wall", b"\x7fELF", 0o2755, 0);
    w("empty", b"", 0o444, 65534);
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i * 31 % 253) as u8).collect();
    w("big", &big, 0o640, 7);
    let long = format!("usr/{}", "n".repeat(150));
    w(&long, b"long name", 0o644, 0);
    std::fs::hard_link(src.join("etc/passwd"), src.join("etc/passwd-")).expect("link");
    std::fs::hard_link(src.join("etc/passwd"), src.join("usr/passwd.3")).expect("link");
    std::os::unix::fs::symlink("../etc/passwd", src.join("usr/rel")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", src.join("usr/abs")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere", src.join("usr/dangling")).expect("symlink");
    std::os::unix::fs::symlink("t".repeat(200), src.join("usr/longtarget")).expect("symlink");
    std::os::unix::fs::lchown(src.join("usr/rel"), Some(5), Some(6)).expect("lchown");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod");
    std::fs::set_permissions(src.join("null"), std::fs::Permissions::from_mode(0o666))
        .expect("chmod");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o620),
        0,
    )
    .expect("mkfifo");
    std::fs::set_permissions(src.join("fifo"), std::fs::Permissions::from_mode(0o620))
        .expect("chmod");
    rustix::fs::setxattr(
        src.join("etc/passwd"),
        "user.comment",
        b"\x00binary\xff",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("user xattr");
    rustix::fs::setxattr(
        src.join("etc"),
        "trusted.berth",
        b"dir xattr",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("trusted xattr");
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    rustix::fs::setxattr(
        src.join("usr/bin/su"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .expect("cap xattr");
    for node in ["usr/rel", "fifo", "null"] {
        rustix::fs::lsetxattr(
            src.join(node),
            "trusted.node",
            node.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )
        .expect("xattr on a node that is not opened");
    }
    // Times last, children before parents.
    let mut all: Vec<PathBuf> = describe(src).into_keys().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime_nofollow(&src.join(p), 1_500_000_000 + i as i64 * 1000);
    }
}

#[test]
fn pack_apply_round_trip_preserves_everything() {
    if skip_unless_root("round_trip") {
        return;
    }
    let s = Scratch::new("roundtrip");
    let src = s.sub("src");
    build_tree(&src);
    let mut tar = Vec::new();
    pack(&src, &mut tar, &PackOptions::default()).expect("pack");

    let dst = s.sub("dst");
    let stats =
        berth_archive::apply_layer(&dst, &tar[..], &ApplyOptions::default()).expect("apply");
    assert!(stats.entries > 20);
    let want = describe(&src);
    let got = describe(&dst);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(&got[k], w, "{}", k.display());
    }

    // Deterministic: packing again, or packing the copy, gives the same bytes.
    let mut again = Vec::new();
    pack(&src, &mut again, &PackOptions::default()).expect("pack again");
    assert_eq!(tar, again);
    let mut copy = Vec::new();
    pack(&dst, &mut copy, &PackOptions::default()).expect("pack copy");
    assert_eq!(tar, copy);

    // Other readers agree on the entry names.
    let tar_path = s.dir.join("out.tar");
    std::fs::write(&tar_path, &tar).expect("write tar");
    let mut ours: Vec<String> = Vec::new();
    let mut r = berth_archive::TarReader::new(&tar[..]);
    while let Some(e) = r.next_entry().expect("entry") {
        ours.push(String::from_utf8_lossy(&e.header.name).into_owned());
    }
    if have("tar") {
        let out = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&tar_path)
            .output()
            .expect("run tar");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(names, ours, "GNU tar listing");
    } else {
        eprintln!("GNU tar missing: skipping its cross-check");
    }
    if have("python3") {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sys,tarfile\nfor m in tarfile.open(sys.argv[1]): print(m.name + ('/' if m.isdir() else ''))")
            .arg(&tar_path)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(names, ours, "python tarfile listing");
    } else {
        eprintln!("python3 missing: skipping its cross-check");
    }
}

#[test]
fn pack_src_and_name_for_cp() {
    if skip_unless_root("pack_src") {
        return;
    }
    let s = Scratch::new("packsrc");
    let root = s.sub("root");
    std::fs::create_dir_all(root.join("data/sub")).expect("mkdir");
    std::fs::write(root.join("data/sub/f"), b"f").expect("write");
    std::os::unix::fs::symlink("/data", root.join("link")).expect("symlink");
    let names = |opts: &PackOptions| {
        let mut tar = Vec::new();
        pack(&root, &mut tar, opts).expect("pack");
        let mut r = berth_archive::TarReader::new(&tar[..]);
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().expect("entry") {
            out.push(String::from_utf8_lossy(&e.header.name).into_owned());
        }
        out
    };
    let src = |p: &str, name: Option<&str>| PackOptions {
        src: Some(PathBuf::from(p)),
        name: name.map(str::to_string),
        ..PackOptions::default()
    };
    assert_eq!(
        names(&src("/data", None)),
        ["data/", "data/sub/", "data/sub/f"]
    );
    assert_eq!(names(&src("data/sub/f", Some("renamed"))), ["renamed"]);
    assert_eq!(names(&src("/data", Some("."))), ["sub/", "sub/f"]);
    // The last component is not followed: a symlink is archived as a symlink...
    assert_eq!(names(&src("link", None)), ["link"]);
    // ...but symlinks in the middle resolve inside the root, never to the host.
    assert_eq!(names(&src("/link/sub", None)), ["sub/", "sub/f"]);
    let mut tar = Vec::new();
    let err = pack(&root, &mut tar, &src("../../../../etc/passwd", None)).expect_err("absent");
    assert_eq!(err.kind(), berth_archive::ArchiveErrorKind::NotFound);
}

/// `docker cp`/`export` archives carry the file type in the mode field as Docker's do
/// (`0o40755` for a directory); layers keep the permission bits only.
#[test]
fn type_bits_in_mode_when_asked() {
    if skip_unless_root("type_bits") {
        return;
    }
    let s = Scratch::new("typebits");
    let root = s.sub("root");
    std::fs::create_dir_all(root.join("d")).expect("mkdir");
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(root.join("d/f"), b"f").expect("write");
    std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::hard_link(root.join("d/f"), root.join("d/h")).expect("link");
    std::os::unix::fs::symlink("f", root.join("d/l")).expect("symlink");
    let fifo = std::ffi::CString::new(root.join("d/p").as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let modes = |type_bits: bool| {
        let mut tar = Vec::new();
        let opts = PackOptions { src: Some(PathBuf::from("d")), type_bits, ..PackOptions::default() };
        pack(&root, &mut tar, &opts).expect("pack");
        let mut out = Vec::new();
        let mut off = 0;
        // raw ustar blocks: name at 0..100, mode at 100..108 (no PAX headers in this tree)
        while off + 512 <= tar.len() && tar[off] != 0 {
            let h = &tar[off..off + 512];
            let name = String::from_utf8_lossy(&h[..100]).trim_end_matches('\0').to_string();
            let mode = u32::from_str_radix(String::from_utf8_lossy(&h[100..107]).trim(), 8).expect("octal mode");
            let size = u64::from_str_radix(String::from_utf8_lossy(&h[124..135]).trim(), 8).expect("octal size");
            out.push((name, mode));
            off += 512 + size.div_ceil(512) as usize * 512;
        }
        out
    };
    let want = |m: [u32; 5]| {
        ["d/", "d/f", "d/h", "d/l", "d/p"].iter().zip(m).map(|(n, m)| (n.to_string(), m)).collect::<Vec<_>>()
    };
    assert_eq!(modes(true), want([0o40755, 0o100644, 0o100644, 0o120777, 0o10600]));
    assert_eq!(modes(false), want([0o755, 0o644, 0o644, 0o777, 0o600]));
    // readers keep the permission bits only
    let mut tar = Vec::new();
    pack(&root, &mut tar, &PackOptions { src: Some(PathBuf::from("d")), type_bits: true, ..PackOptions::default() }).expect("pack");
    let mut r = berth_archive::TarReader::new(&tar[..]);
    let first = r.next_entry().expect("entry").expect("an entry");
    assert_eq!(first.header.mode, 0o755);
}

#[test]
fn cp_refuses_dir_non_dir_overwrites_when_asked() {
    if skip_unless_root("cp_no_overwrite") {
        return;
    }
    let s = Scratch::new("cp-nooverwrite");
    let root = s.sub("root");
    std::fs::create_dir(root.join("dir")).expect("mkdir");
    std::fs::write(root.join("file"), b"f").expect("write");
    let opts = ApplyOptions {
        no_overwrite_dir_non_dir: true,
        ..ApplyOptions::default()
    };
    for tar in [
        common::RawTar::new().file(b"dir", b"x").finish(),
        common::RawTar::new().dir(b"file/").finish(),
        common::RawTar::new().symlink(b"dir", b"/").finish(),
    ] {
        let err = berth_archive::apply_layer(&root, &tar[..], &opts).expect_err("refused");
        assert!(err.to_string().contains("cannot overwrite"), "{err}");
    }
    assert!(root.join("dir").is_dir());
    assert_eq!(std::fs::read(root.join("file")).expect("read"), b"f");
    // Same kinds still replace each other.
    let tar = common::RawTar::new()
        .file(b"file", b"new")
        .dir(b"dir/")
        .finish();
    berth_archive::apply_layer(&root, &tar[..], &opts).expect("same kinds");
    assert_eq!(std::fs::read(root.join("file")).expect("read"), b"new");
}

/// Archives written by GNU tar (gnu format with `L`/`K` long names, posix format with PAX
/// records and sub-second times) apply to the same tree.
#[test]
fn gnu_tar_archives_apply_identically() {
    if skip_unless_root("gnu_tar_compat") {
        return;
    }
    if !have("tar") {
        eprintln!("skipping gnu_tar_compat: GNU tar missing");
        return;
    }
    let s = Scratch::new("gnutar");
    let src = s.sub("src");
    build_tree(&src);
    let strip = |m: BTreeMap<PathBuf, Desc>| -> BTreeMap<PathBuf, Desc> {
        m.into_iter()
            .map(|(k, mut d)| {
                d.xattrs.clear();
                (k, d)
            })
            .collect()
    };
    let want = strip(describe(&src));
    for format in ["gnu", "posix"] {
        let tar_path = s.dir.join(format!("{format}.tar"));
        let st = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .args(["--numeric-owner", "-C"])
            .arg(&src)
            .arg("-cf")
            .arg(&tar_path)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success());
        let dst = s.sub(&format!("dst-{format}"));
        let f = std::fs::File::open(&tar_path).expect("open tar");
        berth_archive::apply_layer(&dst, f, &ApplyOptions::default()).expect("apply GNU tar");
        let got = strip(describe(&dst));
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{format}"
        );
        for (k, w) in &want {
            assert_eq!(&got[k], w, "{format}: {}", k.display());
        }
    }
}

#[test]
fn force_owner_overrides_archive_owners() {
    if skip_unless_root("force_owner") {
        return;
    }
    let s = Scratch::new("force-owner");
    let root = s.sub("root");
    let tar = common::RawTar::new()
        .entry(common::Raw::new(b"d/", b'5').owner(1, 2), b"")
        .entry(common::Raw::new(b"d/f", b'0').owner(3, 4).mode(0o4755), b"")
        .symlink(b"d/l", b"f")
        .finish();
    let opts = ApplyOptions {
        force_owner: Some((1234, 5678)),
        ..ApplyOptions::default()
    };
    berth_archive::apply_layer(&root, &tar[..], &opts).expect("apply");
    for p in ["d", "d/f", "d/l"] {
        let m = std::fs::symlink_metadata(root.join(p)).expect("lstat");
        assert_eq!((m.uid(), m.gid()), (1234, 5678), "{p}");
    }
}

#[test]
fn copy_tree_between_roots() {
    if skip_unless_root("copy_tree") {
        return;
    }
    let s = Scratch::new("copytree");
    let src_root = s.sub("image");
    let src = src_root.join("var/lib/data");
    std::fs::create_dir_all(&src).expect("mkdir");
    build_tree(&src);
    std::os::unix::fs::symlink("/var/lib/data", src_root.join("link")).expect("symlink");
    let dst_root = s.sub("volume");
    let stats = berth_archive::copy_tree(
        &src_root,
        Path::new("/link"),
        &dst_root,
        Path::new("/_data"),
        &ApplyOptions::default(),
    )
    .expect("copy");
    assert!(stats.entries > 20);
    let want = describe(&src);
    let got = describe(&dst_root.join("_data"));
    assert_eq!(want, got);
    // A missing source is an error, not an empty copy.
    let err = berth_archive::copy_tree(
        &src_root,
        Path::new("/missing"),
        &dst_root,
        Path::new("/other"),
        &ApplyOptions::default(),
    )
    .expect_err("missing source");
    assert_eq!(err.kind(), berth_archive::ArchiveErrorKind::NotFound);
}

#[test]
fn userns_remap_shifts_owners_both_ways() {
    if skip_unless_root("idmap") {
        return;
    }
    let s = Scratch::new("idmap");
    let root = s.sub("root");
    let map = berth_archive::IdMap::shifted(100_000, 65_536);
    let tar = common::RawTar::new()
        .entry(common::Raw::new(b"d/", b'5').owner(0, 0), b"")
        .entry(common::Raw::new(b"d/f", b'0').owner(1000, 1001), b"")
        .symlink(b"d/l", b"f")
        .finish();
    let opts = ApplyOptions {
        id_map: Some(map.clone()),
        ..ApplyOptions::default()
    };
    berth_archive::apply_layer(&root, &tar[..], &opts).expect("apply");
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(root.join(p)).expect("lstat");
        (m.uid(), m.gid())
    };
    assert_eq!(owner("d"), (100_000, 100_000));
    assert_eq!(owner("d/f"), (101_000, 101_001));
    assert_eq!(owner("d/l"), (100_000, 100_000));
    // Packing with the same map gives the container ids back.
    let mut out = Vec::new();
    let popts = PackOptions {
        id_map: Some(map.clone()),
        ..PackOptions::default()
    };
    pack(&root, &mut out, &popts).expect("pack");
    let mut r = berth_archive::TarReader::new(&out[..]);
    let mut owners = Vec::new();
    while let Some(e) = r.next_entry().expect("entry") {
        owners.push((e.header.uid, e.header.gid));
    }
    assert_eq!(owners, [(0, 0), (1000, 1001), (0, 0)]);
    // An id outside the map is an error.
    let tar = common::RawTar::new()
        .entry(common::Raw::new(b"x", b'0').owner(70_000, 0), b"")
        .finish();
    let err = berth_archive::apply_layer(&root, &tar[..], &opts).expect_err("unmapped");
    assert_eq!(err.kind(), berth_archive::ArchiveErrorKind::InvalidArchive);
}

#[test]
fn root_entry_applies_for_layers_and_is_skipped_for_cp() {
    if skip_unless_root("root_entry") {
        return;
    }
    let s = Scratch::new("root-entry");
    let tar = common::RawTar::new()
        .entry(common::Raw::new(b"./", b'5').mode(0o700).owner(5, 6), b"")
        .file(b"./f", b"f")
        .finish();
    let layer = s.sub("layer");
    berth_archive::apply_layer(&layer, &tar[..], &ApplyOptions::default()).expect("layer");
    let m = std::fs::metadata(&layer).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o700, 5, 6));
    let cp = s.sub("cp");
    std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let opts = ApplyOptions {
        skip_root_entry: true,
        ..ApplyOptions::default()
    };
    berth_archive::apply_layer(&cp, &tar[..], &opts).expect("cp");
    let m = std::fs::metadata(&cp).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0));
    assert!(cp.join("f").exists());
}

#[test]
fn one_file_system_skips_mounts() {
    if skip_unless_root("one_file_system") {
        return;
    }
    let s = Scratch::new("onefs");
    let root = s.sub("root");
    std::fs::create_dir_all(root.join("proc")).expect("mkdir");
    std::fs::write(root.join("keep"), b"k").expect("write");
    std::fs::write(root.join("hosts"), b"image hosts").expect("write");
    let host_file = s.dir.join("host-hosts");
    std::fs::write(&host_file, b"host secret").expect("write");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "berth-test"])
        .arg(root.join("proc"))
        .status()
        .is_ok_and(|st| st.success())
        && std::process::Command::new("mount")
            .arg("--bind")
            .arg(&host_file)
            .arg(root.join("hosts"))
            .status()
            .is_ok_and(|st| st.success());
    struct Umount(Vec<PathBuf>);
    impl Drop for Umount {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::process::Command::new("umount").arg(p).status();
            }
        }
    }
    let _guard = Umount(vec![root.join("proc"), root.join("hosts")]);
    if !mounted {
        eprintln!("skipping one_file_system: cannot mount");
        return;
    }
    std::fs::write(root.join("proc/inside"), b"mounted").expect("write");
    let mut tar = Vec::new();
    let opts = PackOptions {
        one_file_system: true,
        ..PackOptions::default()
    };
    pack(&root, &mut tar, &opts).expect("pack");
    let mut r = berth_archive::TarReader::new(&tar[..]);
    let mut names = Vec::new();
    while let Some(e) = r.next_entry().expect("entry") {
        names.push(String::from_utf8_lossy(&e.header.name).into_owned());
    }
    assert_eq!(names, ["keep", "proc/"]);
    assert!(!tar.windows(11).any(|w| w == b"host secret"));
}
