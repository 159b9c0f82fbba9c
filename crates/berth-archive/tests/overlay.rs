//! Overlay whiteouts: apply in Overlay mode gives whiteout devices and opaque xattrs, a real
//! overlayfs mount of such layers shows the same tree as applying them flat (HARDENING A1
//! row 10, sequential vs parallel unpack), and pack(overlay_upper) turns a real upper dir
//! back into an OCI diff.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_archive::{pack, PackOptions, TarReader, WhiteoutMode};
use common::{apply, skip_unless_root, RawTar, Scratch};

/// path -> (kind, content or link target), the user-visible view of a tree.
fn view(root: &Path) -> BTreeMap<PathBuf, (char, Vec<u8>)> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (char, Vec<u8>)>) {
        for e in std::fs::read_dir(root.join(rel)).expect("read_dir") {
            let name = e.expect("entry").file_name();
            let r = rel.join(&name);
            let p = root.join(&r);
            let ft = std::fs::symlink_metadata(&p).expect("lstat").file_type();
            let v = if ft.is_dir() {
                ('d', Vec::new())
            } else if ft.is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                let t = std::fs::read_link(&p).expect("readlink");
                ('l', t.as_os_str().as_bytes().to_vec())
            } else if ft.is_char_device() {
                ('c', Vec::new())
            } else {
                ('f', std::fs::read(&p).expect("read"))
            };
            out.insert(r.clone(), v);
            if ft.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn names(tar: &[u8]) -> Vec<String> {
    let mut r = TarReader::new(tar);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().expect("entry") {
        out.push(String::from_utf8_lossy(&e.header.name).into_owned());
    }
    out
}

struct Mount(PathBuf);

impl Mount {
    fn overlay(target: &Path, options: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", options])
            .arg(target)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Mount(target.to_path_buf()))
        } else {
            eprintln!("skipping overlay mount part: mount failed");
            None
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn layers() -> Vec<Vec<u8>> {
    vec![
        RawTar::new()
            .dir(b"d/")
            .file(b"d/a", b"a")
            .dir(b"d/sub/")
            .file(b"d/sub/b", b"b")
            .dir(b"e/")
            .file(b"e/old", b"old")
            .file(b"f", b"f")
            .symlink(b"link", b"d")
            .dir(b"keep/")
            .file(b"keep/k", b"k")
            .finish(),
        RawTar::new()
            .dir(b"d/")
            .file(b"d/.wh..wh..opq", b"")
            .file(b"d/c", b"c")
            .file(b".wh.e", b"")
            .dir(b"e/")
            .file(b"e/new", b"new")
            .file(b".wh.f", b"")
            .file(b".wh.link", b"")
            .file(b"keep/k2", b"k2")
            .finish(),
        RawTar::new()
            .file(b"e/.wh.new", b"")
            .file(b"h", b"h")
            .file(b"keep/.wh.k", b"")
            .finish(),
    ]
}

#[test]
fn overlay_apply_then_pack_back() {
    if skip_unless_root("overlay_apply") {
        return;
    }
    let s = Scratch::new("ovl-apply");
    let upper = s.sub("upper");
    let l2 = &layers()[1];
    apply(&upper, l2, WhiteoutMode::Overlay).expect("apply");
    for wh in ["f", "link"] {
        let m = std::fs::symlink_metadata(upper.join(wh)).expect("whiteout");
        assert!(m.file_type().is_char_device(), "{wh}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m.rdev(), 0);
    }
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(upper.join("d"), "trusted.overlay.opaque", &mut buf[..])
        .expect("opaque xattr");
    assert_eq!(&buf[..n], b"y");
    // `.wh.e` then `e/`: the later directory replaces the whiteout device and is opaque,
    // as overlayfs itself does for a directory removed and re-created.
    assert!(upper.join("e").is_dir());
    let n = rustix::fs::getxattr(upper.join("e"), "trusted.overlay.opaque", &mut buf[..])
        .expect("opaque xattr on re-created dir");
    assert_eq!(&buf[..n], b"y");

    let mut tar = Vec::new();
    pack(
        &upper,
        &mut tar,
        &PackOptions {
            overlay_upper: true,
            ..PackOptions::default()
        },
    )
    .expect("pack");
    assert_eq!(
        names(&tar),
        [
            "d/",
            "d/.wh..wh..opq",
            "d/c",
            "e/",
            "e/.wh..wh..opq",
            "e/new",
            ".wh.f",
            "keep/",
            "keep/k2",
            ".wh.link"
        ]
    );
}

#[test]
fn overlay_mount_matches_flat_apply() {
    if skip_unless_root("overlay_mount") {
        return;
    }
    let s = Scratch::new("ovl-mount");
    let layers = layers();
    let flat = s.sub("flat");
    for l in &layers {
        apply(&flat, l, WhiteoutMode::Remove).expect("flat apply");
    }
    // Unpack the layers in parallel, each into its own dir, then stack them.
    let dirs: Vec<PathBuf> = (0..layers.len()).map(|i| s.sub(&format!("l{i}"))).collect();
    std::thread::scope(|sc| {
        for (l, d) in layers.iter().zip(&dirs) {
            sc.spawn(move || apply(d, l, WhiteoutMode::Overlay).expect("overlay apply"));
        }
    });
    let merged = s.sub("merged");
    let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    let Some(m) = Mount::overlay(&merged, &format!("lowerdir={}", lower.join(":"))) else {
        return;
    };
    let got = view(&merged);
    drop(m);
    let want = view(&flat);
    assert_eq!(got, want);
    assert!(want.contains_key(Path::new("d/c")) && !want.contains_key(Path::new("d/a")));
}

#[test]
fn pack_of_real_upper_is_a_layer_diff() {
    if skip_unless_root("overlay_upper_pack") {
        return;
    }
    let s = Scratch::new("ovl-upper");
    let lower = s.sub("lower");
    apply(&lower, &layers()[0], WhiteoutMode::Overlay).expect("lower");
    let upper = s.sub("upper");
    let work = s.sub("work");
    let merged = s.sub("merged");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let Some(m) = Mount::overlay(&merged, &opts) else {
        return;
    };
    std::fs::remove_file(merged.join("f")).expect("rm f");
    std::fs::remove_file(merged.join("keep/k")).expect("rm keep/k");
    std::fs::remove_dir_all(merged.join("d")).expect("rm d");
    std::fs::create_dir(merged.join("d")).expect("mkdir d");
    std::fs::write(merged.join("d/z"), b"z").expect("write");
    std::fs::write(merged.join("n"), b"n").expect("write");
    let want = view(&merged);
    drop(m);

    let mut diff = Vec::new();
    pack(
        &upper,
        &mut diff,
        &PackOptions {
            overlay_upper: true,
            ..PackOptions::default()
        },
    )
    .expect("pack upper");
    let listed = names(&diff);
    for must in ["d/.wh..wh..opq", ".wh.f", "keep/.wh.k", "d/z", "n"] {
        assert!(listed.iter().any(|n| n == must), "{must} in {listed:?}");
    }
    let flat = s.sub("flat");
    apply(&flat, &layers()[0], WhiteoutMode::Remove).expect("flat lower");
    apply(&flat, &diff, WhiteoutMode::Remove).expect("flat diff");
    assert_eq!(view(&flat), want);
}

#[test]
fn rootless_overlay_uses_user_xattrs_both_ways() {
    if skip_unless_root("overlay_userxattr") {
        return;
    }
    let s = Scratch::new("ovl-userxattr");
    let upper = s.sub("upper");
    let opts = berth_archive::ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        overlay_userxattr: true,
        ..berth_archive::ApplyOptions::default()
    };
    berth_archive::apply_layer(&upper, &layers()[1][..], &opts).expect("apply");
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(upper.join("d"), "user.overlay.opaque", &mut buf[..])
        .expect("user.overlay.opaque");
    assert_eq!(&buf[..n], b"y");
    assert!(rustix::fs::getxattr(upper.join("d"), "trusted.overlay.opaque", &mut buf[..]).is_err());
    let mut tar = Vec::new();
    pack(
        &upper,
        &mut tar,
        &PackOptions {
            overlay_upper: true,
            overlay_userxattr: true,
            ..PackOptions::default()
        },
    )
    .expect("pack");
    let listed = names(&tar);
    assert!(listed.iter().any(|n| n == "d/.wh..wh..opq"), "{listed:?}");
    assert!(listed.iter().any(|n| n == ".wh.f"), "{listed:?}");
}
