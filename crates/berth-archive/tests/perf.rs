//! Throughput smoke test: 20k small files (an image pull is file-creation bound). Prints
//! the rate; asserts only correctness, never timing.

mod common;

use berth_archive::{apply_layer, pack, ApplyOptions, PackOptions};
use common::{skip_unless_root, RawTar, Scratch};

#[test]
fn apply_20k_small_files() {
    if skip_unless_root("perf") {
        return;
    }
    let s = Scratch::new("perf");
    let mut tar = RawTar::new();
    for d in 0..200 {
        tar = tar.dir(format!("usr/lib/d{d}/").as_bytes());
        for f in 0..100 {
            tar = tar.file(
                format!("usr/lib/d{d}/f{f}.py").as_bytes(),
                b"print('hello')\n",
            );
        }
    }
    let tar = tar.finish();
    let root = s.sub("root");
    let t = std::time::Instant::now();
    let stats = apply_layer(&root, &tar[..], &ApplyOptions::default()).expect("apply");
    let el = t.elapsed();
    assert_eq!(stats.entries, 200 * 101);
    eprintln!(
        "applied {} entries in {:?} ({:.0} entries/s)",
        stats.entries,
        el,
        stats.entries as f64 / el.as_secs_f64()
    );
    let t = std::time::Instant::now();
    let n = pack(&root, std::io::sink(), &PackOptions::default()).expect("pack");
    eprintln!("packed {n} bytes in {:?}", t.elapsed());
}
