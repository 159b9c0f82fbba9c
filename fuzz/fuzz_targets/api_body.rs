//! Engine API request bodies (HARDENING A4 #39): JSON bodies for container create, network
//! create and exec decode or fail, and the engine's value parsers (sizes, signals, env)
//! never panic on what they get.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = serde_json::from_slice::<bollard::models::ContainerCreateBody>(data) {
        let env = b.env.clone().unwrap_or_default();
        let _ = berth_engine::container::merge_env(&env, &env);
    }
    let _ = serde_json::from_slice::<bollard::models::NetworkCreateRequest>(data);
    let _ = serde_json::from_slice::<bollard::models::ExecConfig>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = berth_engine::container::parse_size(s);
        let _ = berth_engine::container::parse_signal(s);
    }
});
