//! An HTTP ingest body in the InfluxDB line protocol: split into capped
//! lines in uneven chunks, each parsed and named. No input may panic, no
//! line handed on may exceed its cap, every reading is finite and every
//! name is made of sensor-name bytes.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_ingest::line::{BadLine, Limits, Splitter, parse};
use sensegate_ingest::naming::{self, Template};

const LIMITS: Limits = Limits {
    max_line_bytes: 256,
    max_tags: 8,
    max_fields: 8,
    max_key_bytes: 32,
    max_value_bytes: 64,
    max_lines: 64,
};

fuzz_target!(|data: &[u8]| {
    // Named both ways: by a template (for the points it takes) and by the
    // default rule.
    let templates = [Template::parse("*", "{host}/{measurement}/{field}").unwrap()];
    let mut splitter = Splitter::new(LIMITS);
    let mut each = |_: usize, line: &[u8]| {
        assert!(line.len() <= LIMITS.max_line_bytes);
        if let Ok(Some(point)) = parse(line, &LIMITS) {
            assert!(point.tags.len() <= LIMITS.max_tags && point.fields.len() <= LIMITS.max_fields);
            let named = point.readings().into_iter().chain(naming::readings(&point, &templates));
            for r in named {
                assert!(r.value.is_finite());
                assert!(r.sensor.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b)));
            }
        }
        Ok::<(), BadLine>(())
    };
    for chunk in data.chunks(13) {
        if splitter.feed(chunk, &mut each).is_err() {
            return;
        }
    }
    let _ = splitter.finish(&mut each);
});
