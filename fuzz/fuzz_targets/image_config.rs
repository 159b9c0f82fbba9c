//! Image configs (HARDENING A3 #27): decoded or refused, and `--change` lines applied to a
//! config without panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cfg) = serde_json::from_slice::<berth_engine::image::ConfigFile>(data) {
        let _ = serde_json::to_vec(&cfg);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let mut cfg = Default::default();
        for line in s.lines().take(16) {
            let _ = berth_engine::image::apply_change(&mut cfg, line);
        }
    }
});
