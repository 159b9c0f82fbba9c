//! Image references and digests (HARDENING A3 #30): parse or a clear error, and what parses
//! prints back to something that parses to the same name.
#![no_main]
use berth_engine::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a parsed reference prints to a valid one");
        assert_eq!(again.name(), r.name());
    }
    let _ = Reference::parse_tagged(s);
    let _ = berth_engine::digest::Digest::parse(s);
});
