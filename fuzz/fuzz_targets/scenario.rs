//! Scenario files from untrusted hands: parsing must return a value or one error, never
//! panic, whatever the bytes. Run: `cargo fuzz run scenario` (see README, "Fuzzing").
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = udprange::scenario::Scenario::parse(text, Path::new("fuzz.toml")) {
            assert!(!e.to_string().is_empty());
        }
    }
});
