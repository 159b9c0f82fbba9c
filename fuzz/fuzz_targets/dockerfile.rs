//! The Dockerfile parser (pure, no I/O): any text parses or errors, never panics or hangs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_dockerfile::parse(text);
    }
});
