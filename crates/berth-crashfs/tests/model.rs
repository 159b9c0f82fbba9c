//! The crash filesystem's durability model, checked through a real mount (root, /dev/fuse).

use berth_crashfs::CrashFs;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn crash(fs: &CrashFs, out: &Path) {
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out).unwrap();
    fs.durable().materialize(out).unwrap();
}

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    let out = t.path().join("out");
    fs::create_dir(&mnt).unwrap();
    let cfs = CrashFs::mount(&mnt).unwrap();
    fs::create_dir(mnt.join("a")).unwrap();
    fs::write(mnt.join("a/f"), b"hello").unwrap();
    assert_eq!(fs::read(mnt.join("a/f")).unwrap(), b"hello");
    crash(&cfs, &out);
    assert!(!out.join("a").exists(), "nothing was synced");

    sync_dir(&mnt);
    crash(&cfs, &out);
    assert!(out.join("a").is_dir() && !out.join("a/f").exists(), "only the root's entries");

    sync_dir(&mnt.join("a"));
    crash(&cfs, &out);
    assert_eq!(fs::read(out.join("a/f")).unwrap(), b"", "entry durable, data not");

    File::options().write(true).open(mnt.join("a/f")).unwrap().sync_data().unwrap();
    crash(&cfs, &out);
    assert_eq!(fs::read(out.join("a/f")).unwrap(), b"hello");

    // rename: durable in the new place only once the new parent is synced, gone from the old
    // one only once the old parent is synced
    fs::create_dir(mnt.join("b")).unwrap();
    sync_dir(&mnt);
    fs::rename(mnt.join("a/f"), mnt.join("b/g")).unwrap();
    crash(&cfs, &out);
    assert!(out.join("a/f").exists() && !out.join("b/g").exists());
    sync_dir(&mnt.join("b"));
    crash(&cfs, &out);
    assert!(out.join("a/f").exists() && out.join("b/g").exists(), "half durable: both names");
    assert_eq!(fs::metadata(out.join("a/f")).unwrap().ino(), fs::metadata(out.join("b/g")).unwrap().ino());
    sync_dir(&mnt.join("a"));
    crash(&cfs, &out);
    assert!(!out.join("a/f").exists() && out.join("b/g").exists());

    // modes, symlinks, hardlinks, xattrs, device nodes
    let p = mnt.join("b/x");
    fs::write(&p, b"x").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4750)).unwrap();
    rustix::fs::lsetxattr(&p, "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    std::os::unix::fs::symlink("../a", mnt.join("b/l")).unwrap();
    fs::hard_link(&p, mnt.join("b/h")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, mnt.join("b/wh"), rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0).unwrap();
    File::open(&p).unwrap().sync_all().unwrap();
    sync_dir(&mnt.join("b"));
    crash(&cfs, &out);
    let md = fs::metadata(out.join("b/x")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4750);
    assert_eq!(md.nlink(), 2);
    assert_eq!(fs::read_link(out.join("b/l")).unwrap(), Path::new("../a"));
    let mut v = vec![0u8; 8];
    let n = rustix::fs::lgetxattr(out.join("b/x"), "trusted.overlay.opaque", &mut v).unwrap();
    assert_eq!(&v[..n], b"y");
    let wh = fs::symlink_metadata(out.join("b/wh")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    drop(cfs);
}

#[test]
fn syncfs_is_not_forwarded_but_a_marker_line_syncs_everything() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    let out = t.path().join("out");
    fs::create_dir(&mnt).unwrap();
    let cfs = CrashFs::mount(&mnt).unwrap();
    cfs.set_control("ctl", &["synced"]);
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/f"), b"data").unwrap();
    let before = cfs.events();
    rustix::fs::syncfs(File::open(mnt.join("d")).unwrap()).unwrap();
    rustix::fs::sync();
    assert_eq!(cfs.events(), before, "the kernel sends no syncfs to a /dev/fuse server");
    crash(&cfs, &out);
    assert!(!out.join("d").exists());
    let mut c = File::options().create(true).append(true).open(mnt.join("ctl")).unwrap();
    write!(c, "other\nsyn").unwrap();
    c.write_all(b"ced\n").unwrap();
    assert_eq!(cfs.events(), before + 1);
    crash(&cfs, &out);
    assert_eq!(fs::read(out.join("d/f")).unwrap(), b"data");
    assert_eq!(cfs.control_log().iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(), ["other", "synced"]);
}

#[test]
fn capture_records_every_durable_state() {
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cfs = CrashFs::mount(&mnt).unwrap();
    cfs.start_capture();
    let mut f = File::create(mnt.join("f")).unwrap();
    f.write_all(b"1").unwrap();
    f.sync_all().unwrap();
    sync_dir(&mnt);
    let states = cfs.stop_capture();
    assert_eq!(states.len(), 3, "{:?}", states.iter().map(|s| &s.label).collect::<Vec<_>>());
    assert!(states[1].label.contains("fsync f"), "{}", states[1].label);
    let out = t.path().join("o");
    for (k, s) in states.iter().enumerate() {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir(&out).unwrap();
        s.materialize(&out).unwrap();
        assert_eq!(out.join("f").exists(), k == 2);
    }
}
