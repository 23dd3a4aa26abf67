//! Datagrams and control frames from the network: parsing must return a value or an error,
//! never panic, and what parses must emit back to bytes that parse the same.
//! Run: `cargo fuzz run fasp` (see README, "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;
use udprange::wire::{control, fasp};

fuzz_target!(|data: &[u8]| {
    if let Ok(repr) = fasp::parse(data) {
        let mut buffer = vec![0u8; repr.buffer_len()];
        let len = repr.emit(&mut buffer).expect("a buffer of buffer_len fits");
        assert_eq!(fasp::parse(&buffer[..len]).expect("emitted bytes parse"), repr);
    }
    if let Ok(frame) = control::parse(data) {
        assert_eq!(control::parse(&frame.to_bytes()).expect("emitted frame parses"), frame);
    }
});
