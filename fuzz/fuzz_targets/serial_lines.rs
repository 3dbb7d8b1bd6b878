//! A serial device's byte stream: split into capped lines, each parsed as
//! NMEA and as a `name=value` line. No input may panic, and no line handed
//! on may exceed the cap.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_lines::lines::{LineSplitter, parse_name_value};
use sensegate_lines::nmea;

const MAX_LINE: usize = 96;

fuzz_target!(|data: &[u8]| {
    let mut splitter = LineSplitter::new(MAX_LINE);
    // Feed in uneven chunks, as reads from a device arrive.
    for chunk in data.chunks(7) {
        splitter.feed(chunk, |line| {
            assert!(line.len() <= MAX_LINE);
            if let Ok(values) = nmea::parse(line) {
                for (_, v) in values {
                    assert!(v.is_finite());
                }
            }
            if let Ok((name, value)) = parse_name_value(line, 64) {
                assert!(!name.is_empty() && name.len() <= 64 && value.is_finite());
            }
        });
    }
});
