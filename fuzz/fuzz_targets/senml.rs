//! A SenML JSON pack from an HTTP body: parsed and resolved. No input may
//! panic; every reading resolved is finite and named within the cap.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_ingest::senml::{Limits, parse};

const LIMITS: Limits = Limits {
    max_records: 64,
    max_name_bytes: 64,
    max_unit_bytes: 16,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(readings) = parse(data, 1_700_000_000_000_000, &LIMITS) {
        assert!(readings.len() <= LIMITS.max_records);
        for r in readings {
            assert!(r.value.is_finite() && !r.name.is_empty() && r.name.len() <= LIMITS.max_name_bytes);
        }
    }
});
