//! Model-free differential testing of layer *semantics* (HARDENING A1 rows 6, 10, 15): random
//! stacks of small layers (files, dirs, symlinks, hard links, whiteouts, opaque markers over
//! a tiny namespace, so entries collide a lot) are applied three ways and must agree:
//!
//! 1. flat, by us (`WhiteoutMode::Remove`, one directory);
//! 2. by umoci, an independent Go implementation (when installed);
//! 3. each layer by us in `WhiteoutMode::Overlay` into its own directory, stacked with a
//!    real overlayfs mount (when mounting works).
//!
//! Cases where an implementation refuses the stack (an error) are only compared for
//! containment; trees are compared whenever both sides succeed.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_archive::{DigestReader, WhiteoutMode};
use common::{apply, have, skip_unless_root, RawTar, Rng, Scratch};

/// Two directories that stay directories (whiteouts and opaque markers live in them), leaf
/// names that collide as files, directories and hard links, and symlink names that are
/// never used as parents. Per-layer overlay unpack cannot see lower layers, so whiteouts
/// under paths that are not directories, or entries under lower-layer symlinks, would make
/// even Docker's own two unpackers disagree; the generator stays clear of those.
const DIRS: &[&str] = &["d", "e"];
const LEAVES: &[&str] = &["d/a", "d/b", "e/a", "d/a/x", "d/a/y", "e/a/x"];
const SYMLINKS: &[&str] = &["d/s", "e/s"];
const TARGETS: &[&str] = &["a", "../e", "/d/a", "a/x", "../../d", "nowhere"];

fn random_layer(rng: &mut Rng) -> Vec<u8> {
    let mut t = RawTar::new();
    for _ in 0..3 + rng.below(10) {
        let leaf = LEAVES[rng.below(LEAVES.len())];
        let dir = DIRS[rng.below(DIRS.len())];
        t = match rng.below(10) {
            0..=2 => {
                let data = format!("{leaf}-{}", rng.below(100));
                t.file(leaf.as_bytes(), data.as_bytes())
            }
            3 => t.dir(format!("{leaf}/").as_bytes()),
            4 => t.dir(format!("{dir}/").as_bytes()),
            5 => {
                let name = SYMLINKS[rng.below(SYMLINKS.len())];
                t.symlink(
                    name.as_bytes(),
                    TARGETS[rng.below(TARGETS.len())].as_bytes(),
                )
            }
            6 => t.hardlink(leaf.as_bytes(), LEAVES[rng.below(LEAVES.len())].as_bytes()),
            7 => {
                // Whiteout of a leaf or symlink name directly inside one of the dirs.
                let base = ["a", "b", "s"][rng.below(3)];
                t.file(format!("{dir}/.wh.{base}").as_bytes(), b"")
            }
            8 => t.file(format!("{dir}/.wh..wh..opq").as_bytes(), b""),
            // Whiteout of a whole directory, re-created right away.
            _ => t
                .file(format!(".wh.{dir}").as_bytes(), b"")
                .dir(format!("{dir}/").as_bytes()),
        };
    }
    t.finish()
}

type View = BTreeMap<PathBuf, (char, Vec<u8>)>;

fn view(root: &Path) -> View {
    fn walk(root: &Path, rel: &Path, out: &mut View) {
        let Ok(rd) = std::fs::read_dir(root.join(rel)) else {
            return;
        };
        for e in rd {
            let name = e.expect("entry").file_name();
            let r = rel.join(&name);
            let p = root.join(&r);
            // overlayfs lists whiteouts of directories that exist in a single layer, but
            // looking them up fails: they do not exist.
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            let v = if ft.is_dir() {
                ('d', Vec::new())
            } else if ft.is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                let t = std::fs::read_link(&p).expect("readlink");
                ('l', t.as_os_str().as_bytes().to_vec())
            } else if ft.is_file() {
                ('f', std::fs::read(&p).expect("read"))
            } else {
                ('c', md.rdev().to_le_bytes().to_vec())
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

fn digest(b: &[u8]) -> String {
    let mut r = DigestReader::new(b);
    std::io::copy(&mut r, &mut std::io::sink()).expect("hash");
    r.digest()
}

fn oci_layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |b: &[u8]| -> String {
        let d = digest(b);
        std::fs::write(blobs.join(&d["sha256:".len()..]), b).expect("blob");
        d
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = put(l);
        descs.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#,
            l.len()
        ));
        diff_ids.push(format!("\"{d}\""));
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let cd = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let md = put(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(dir.join("index.json"), index).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
}

fn describe_case(layers: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, l) in layers.iter().enumerate() {
        out.push_str(&format!("layer {i}:\n"));
        let mut r = berth_archive::TarReader::new(&l[..]);
        while let Ok(Some(e)) = r.next_entry() {
            out.push_str(&format!(
                "  {:?} {} -> {}\n",
                e.header.entry_type,
                String::from_utf8_lossy(&e.header.name),
                String::from_utf8_lossy(&e.header.link_name)
            ));
        }
    }
    out
}

/// `ours` minus empty directories that `theirs` lacks. Docker (our reference) creates the
/// missing parent directories of whiteout entries; umoci does not, so such an empty
/// directory is the one tolerated difference.
fn without_extra_empty_dirs(ours: &View, theirs: &View) -> View {
    let mut v = ours.clone();
    loop {
        let extra: Vec<PathBuf> = v
            .iter()
            .filter(|(p, (k, _))| {
                *k == 'd'
                    && !theirs.contains_key(*p)
                    && !v.keys().any(|q| q.parent() == Some(p.as_path()))
            })
            .map(|(p, _)| p.clone())
            .collect();
        if extra.is_empty() {
            return v;
        }
        for p in extra {
            v.remove(&p);
        }
    }
}

struct Umount(PathBuf);

impl Drop for Umount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn random_layer_stacks_agree_across_implementations() {
    if skip_unless_root("semantics_fuzz") {
        return;
    }
    let s = Scratch::new("semfuzz");
    let use_umoci = have("umoci");
    if !use_umoci {
        eprintln!("umoci missing: comparing flat apply with overlayfs only");
    }
    let mut rng = Rng(0x0bad_5eed_1234);
    let (mut compared_umoci, mut compared_overlay) = (0, 0);
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for case in 0..400 {
        let n = 1 + rng.below(3);
        let layers: Vec<Vec<u8>> = (0..n).map(|_| random_layer(&mut rng)).collect();
        let dir = s.sub(&format!("case{case}"));
        let flat = dir.join("flat");
        std::fs::create_dir(&flat).expect("mkdir");
        if let Some(e) = layers
            .iter()
            .find_map(|l| apply(&flat, l, WhiteoutMode::Remove).err())
        {
            let why = e.to_string();
            let why = why.split(':').next().unwrap_or_default().to_string();
            *refused.entry(why).or_default() += 1;
            continue;
        }
        let ours = view(&flat);

        if use_umoci {
            let lay = dir.join("layout");
            oci_layout(&lay, &layers);
            let bundle = dir.join("bundle");
            let out = Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:t", lay.display()))
                .arg(&bundle)
                .output()
                .expect("run umoci");
            if out.status.success() {
                compared_umoci += 1;
                let theirs = view(&bundle.join("rootfs"));
                assert_eq!(
                    without_extra_empty_dirs(&ours, &theirs),
                    theirs,
                    "case {case}: flat apply differs from umoci\n{}",
                    describe_case(&layers)
                );
            }
        }

        let mut lowers = Vec::new();
        let mut overlay_ok = true;
        for (i, l) in layers.iter().enumerate() {
            let d = dir.join(format!("l{i}"));
            std::fs::create_dir(&d).expect("mkdir");
            if apply(&d, l, WhiteoutMode::Overlay).is_err() {
                overlay_ok = false;
                break;
            }
            lowers.push(d);
        }
        if !overlay_ok {
            continue;
        }
        let merged = dir.join("merged");
        std::fs::create_dir(&merged).expect("mkdir");
        let lowerdir: Vec<String> = if lowers.len() == 1 {
            // overlayfs needs two layers without an upper: add an empty one.
            let empty = dir.join("empty");
            std::fs::create_dir(&empty).expect("mkdir");
            vec![lowers[0].display().to_string(), empty.display().to_string()]
        } else {
            lowers
                .iter()
                .rev()
                .map(|d| d.display().to_string())
                .collect()
        };
        let mounted = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lowerdir.join(":")))
            .arg(&merged)
            .status()
            .is_ok_and(|st| st.success());
        if !mounted {
            continue;
        }
        let guard = Umount(merged.clone());
        let stacked = view(&merged);
        drop(guard);
        compared_overlay += 1;
        assert_eq!(
            ours,
            stacked,
            "case {case}: flat apply differs from overlay stacking\n{}",
            describe_case(&layers)
        );
    }
    eprintln!("compared {compared_umoci} stacks with umoci, {compared_overlay} with overlayfs");
    eprintln!("stacks our flat apply refused: {refused:?}");
}
