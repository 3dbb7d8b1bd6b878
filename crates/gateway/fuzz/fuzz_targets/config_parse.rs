//! The daemon's configuration file: any text either validates or gives a
//! typed error naming the problem; it never panics.
#![no_main]
#![forbid(unsafe_code)]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sensegate_gateway::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::parse(text, Path::new("fuzz.toml")) {
            Ok(c) => assert!(c.limits.frame.get() >= 1),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
