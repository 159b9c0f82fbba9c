//! Manifests and indexes as a registry returns them (HARDENING A3 #23-26): classified and
//! decoded or refused, never a panic; the Content-Type is taken from the first line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok((json, _mt)) = berth_engine::distribution::pull::classify(body, ct) {
        let _ = serde_json::from_value::<berth_engine::image::Manifest>(json.clone());
        let platform = berth_engine::distribution::pull::Platform::host();
        let _ = berth_engine::distribution::pull::choose_platform(&json, &platform);
    }
});
