//! Layer apply (HARDENING A1): any byte stream (compressed or not) is applied into a fresh
//! root or refused; nothing is created outside that root (a sibling sentinel directory must
//! stay empty), and nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("tempdir");
    let root = base.path().join("root");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let opts = berth_archive::ApplyOptions { whiteouts: berth_archive::WhiteoutMode::Overlay, ..Default::default() };
    if let Ok(rd) = berth_archive::decompress(data, 64 << 20) {
        let _ = berth_archive::apply_layer(&root, rd, &opts);
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "apply wrote outside its root");
    let names: Vec<_> = std::fs::read_dir(base.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 2, "apply created {names:?} next to its root");
});
