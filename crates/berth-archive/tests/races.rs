//! A "container" flips a directory and a symlink to the host while we apply into or pack
//! from its root (HARDENING A4 #34, the mechanism `docker cp` relies on). Whatever the
//! interleaving, nothing outside the root is read or written: the assertions hold for every
//! schedule, so the tests do not depend on timing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use berth_archive::{apply_layer, pack, ApplyOptions, PackOptions};
use common::{pb, skip_unless_root, Raw, RawTar, Scratch, Sentinels};
use rustix::fs::{RenameFlags, CWD};

/// Swaps `a` (a directory) and `b` (a symlink to the host) until `stop`.
fn flipper(root: &std::path::Path, stop: &AtomicBool) {
    let a = root.join("a");
    let b = root.join("b");
    while !stop.load(Ordering::Relaxed) {
        let _ = rustix::fs::renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE);
    }
}

#[test]
fn apply_while_a_parent_flips_to_a_host_symlink() {
    if skip_unless_root("race_apply") {
        return;
    }
    let s = Scratch::new("race-apply");
    let sent = Sentinels::new(&s);
    for target in [pb(&sent.dir), b"../../host".to_vec()] {
        let root = s.sub("root");
        std::fs::create_dir_all(root.join("a")).expect("mkdir a");
        let _ = std::fs::remove_file(root.join("b"));
        std::os::unix::fs::symlink(
            std::ffi::OsStr::new(std::str::from_utf8(&target).expect("utf8")),
            root.join("b"),
        )
        .expect("symlink b");
        let mut tar = RawTar::new();
        for i in 0..400 {
            tar = tar
                .entry(Raw::new(b"a/", b'5').mode(0o777).owner(77, 77), b"")
                .file(format!("a/f{i}").as_bytes(), b"data")
                .file(b"a/host-sentinel", b"pwned")
                .entry(Raw::new(b"a/hostdir/", b'5').mode(0o777), b"")
                .symlink(format!("a/l{i}").as_bytes(), b"/etc")
                .hardlink(format!("a/h{i}").as_bytes(), b"a/host-sentinel");
        }
        let tar = tar.finish();
        let stop = AtomicBool::new(false);
        std::thread::scope(|sc| {
            let r = &root;
            let st = &stop;
            sc.spawn(move || flipper(r, st));
            for _ in 0..3 {
                // Errors are fine (a parent may be a symlink at that instant); escapes are not.
                let _ = apply_layer(&root, &tar[..], &ApplyOptions::default());
                sent.check();
            }
            stop.store(true, Ordering::Relaxed);
        });
        sent.check();
        std::fs::remove_dir_all(&root).expect("cleanup root");
    }
}

#[test]
fn pack_while_a_dir_flips_to_a_host_symlink() {
    if skip_unless_root("race_pack") {
        return;
    }
    let s = Scratch::new("race-pack");
    let sent = Sentinels::new(&s);
    let root = s.sub("root");
    std::fs::create_dir_all(root.join("a/sub")).expect("mkdir");
    for i in 0..50 {
        std::fs::write(root.join(format!("a/sub/f{i}")), b"inner").expect("write");
    }
    std::os::unix::fs::symlink(&sent.dir, root.join("b")).expect("symlink");
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let r = &root;
        let st = &stop;
        sc.spawn(move || flipper(r, st));
        for _ in 0..100 {
            for src in ["a", "a/sub", "b", "a/host-sentinel"] {
                let mut tar = Vec::new();
                let opts = PackOptions {
                    src: Some(src.into()),
                    ..PackOptions::default()
                };
                let _ = pack(&root, &mut tar, &opts);
                assert!(
                    !tar.windows(11).any(|w| w == b"host secret"),
                    "host file content leaked into the archive"
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    sent.check();
}
