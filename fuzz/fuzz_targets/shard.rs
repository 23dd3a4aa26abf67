//! Shard files from untrusted hands: what `merge` reads must parse to a shard or one error,
//! never panic, whatever the bytes; and a shard that parses must merge, summarise and render
//! in every format without a panic or an overflow.
//! Run: `cargo fuzz run shard` (see README, "Fuzzing"; seed the corpus with real shards).
#![no_main]

use libfuzzer_sys::fuzz_target;
use udprange::report::{Export, Format, plot};
use udprange::sim;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match sim::part::parse(text) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(part) => {
            if let Ok((context, results)) = sim::merge(vec![part]) {
                let summary = sim::summarize(context, &results);
                for format in [Format::Text, Format::Json, Format::Csv] {
                    assert!(!summary.render(format).is_empty());
                }
                let _ = plot::svg(&summary);
            }
        }
    }
});
