//! Reference-extractor comparison (HARDENING A1 rows 6, 10, 15): the same layers applied
//! flat by us and unpacked by umoci (an independent Go implementation of OCI layer
//! application) give the same tree. Skipped when umoci is not installed.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_archive::{DigestReader, WhiteoutMode};
use common::{apply, have, skip_unless_root, Raw, RawTar, Scratch};

fn digest(b: &[u8]) -> String {
    let mut r = DigestReader::new(b);
    std::io::copy(&mut r, &mut std::io::sink()).expect("hash");
    r.digest()
}

/// Writes an OCI image layout with these layers, tagged `t`.
fn layout(dir: &Path, layers: &[Vec<u8>]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |b: &[u8]| -> String {
        let d = digest(b);
        std::fs::write(blobs.join(&d["sha256:".len()..]), b).expect("write blob");
        d
    };
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = put(l);
        layer_descs.push(format!(
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
        layer_descs.join(",")
    );
    let md = put(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(dir.join("index.json"), index).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
}

/// path -> (kind, content or target, mode) of a tree.
fn view(root: &Path) -> BTreeMap<PathBuf, (char, Vec<u8>, u32)> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, (char, Vec<u8>, u32)>) {
        for e in std::fs::read_dir(root.join(rel)).expect("read_dir") {
            let name = e.expect("entry").file_name();
            let r = rel.join(&name);
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let (k, c) = if ft.is_dir() {
                ('d', Vec::new())
            } else if ft.is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                let t = std::fs::read_link(&p).expect("readlink");
                ('l', t.as_os_str().as_bytes().to_vec())
            } else {
                ('f', std::fs::read(&p).expect("read"))
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            };
            out.insert(r.clone(), (k, c, mode));
            if ft.is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn cases() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        (
            "whiteouts-and-opaque",
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
            ],
        ),
        (
            "replacements",
            vec![
                RawTar::new()
                    .dir(b"a/")
                    .file(b"a/f", b"f")
                    .symlink(b"b", b"a")
                    .dir(b"c/")
                    .file(b"c/x", b"x")
                    .file(b"g", b"g")
                    .finish(),
                RawTar::new()
                    .symlink(b"a", b"elsewhere")
                    .dir(b"b/")
                    .file(b"b/inner", b"inner")
                    .file(b"c", b"now a file")
                    .dir(b"g/")
                    .entry(Raw::new(b"m/", b'5').mode(0o700), b"")
                    .entry(Raw::new(b"m/", b'5').mode(0o751), b"")
                    .file(b"dup", b"1")
                    .file(b"dup", b"2")
                    .finish(),
            ],
        ),
        (
            "hardlinks",
            vec![
                RawTar::new()
                    .dir(b"d/")
                    .file(b"d/file", b"data")
                    .hardlink(b"h1", b"d/file")
                    .finish(),
                RawTar::new()
                    .file(b".wh.d", b"")
                    .hardlink(b"h2", b"h1")
                    .finish(),
            ],
        ),
    ]
}

#[test]
fn flat_apply_matches_umoci_unpack() {
    if skip_unless_root("umoci_reference") {
        return;
    }
    if !have("umoci") {
        eprintln!("skipping umoci comparison: umoci not installed");
        return;
    }
    let s = Scratch::new("umoci");
    for (name, layers) in cases() {
        let lay = s.sub(&format!("{name}-layout"));
        layout(&lay, &layers);
        let bundle = s.dir.join(format!("{name}-bundle"));
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:t", lay.display()))
            .arg(&bundle)
            .output()
            .expect("run umoci");
        assert!(
            out.status.success(),
            "{name}: umoci failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let flat = s.sub(&format!("{name}-flat"));
        for l in &layers {
            apply(&flat, l, WhiteoutMode::Remove).expect("apply");
        }
        let want = view(&bundle.join("rootfs"));
        let got = view(&flat);
        assert!(want.len() >= 2, "{name}: umoci produced {want:?}");
        assert_eq!(got, want, "{name}");
    }
}
