//! Compose files (HARDENING A5 #48): any YAML loads or gives an error, bounded, no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, data).unwrap();
    let opts = berth_compose::LoadOptions {
        files: vec![file],
        project_directory: None,
        project_name: Some("fuzz".into()),
        env_files: vec![],
        profiles: vec![],
        environ: Default::default(),
        cwd: dir.path().to_path_buf(),
    };
    if let Ok(p) = berth_compose::load(&opts) {
        let _ = p.start_order();
        let _ = p.to_yaml();
    }
});
