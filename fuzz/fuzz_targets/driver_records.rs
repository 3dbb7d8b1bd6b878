//! Fuzz the driver record parser: never panic; what parses re-encodes to the
//! same bytes.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_ffi::record;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = record::parse(data) {
        assert_eq!(record::encode(&records), data);
    }
});
