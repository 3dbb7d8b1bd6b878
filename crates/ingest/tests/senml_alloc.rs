//! SenML packs cost about their size to parse, whatever unknown fields
//! hold: an unknown field's value is skipped as it is read, never built
//! (serde's `flatten` built each one first, about 16 bytes of memory per
//! byte of `[0,0,...]`). Measured with a counting allocator; this binary
//! holds one test, so no other thread allocates meanwhile.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::alloc::System;

use sensegate_ingest::senml::{Limits, parse};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn unknown_fields_cost_nothing_however_large() {
    // One record, one reading, and a 1 MiB unknown array beside it.
    let mut pack = String::from(r#"[{"n":"dev/t","v":1,"x":["#);
    pack.push_str(&"0,".repeat(512 << 10));
    pack.push_str(r#"0],"y":{"z":[[[[1]]]]}}]"#);
    let region = Region::new(GLOBAL);
    let got = parse(pack.as_bytes(), 0, &Limits::DEFAULT).unwrap();
    let allocated = region.change().bytes_allocated;
    assert_eq!(got.len(), 1);
    assert!(
        allocated < 64 << 10,
        "{allocated} bytes allocated to parse a {} byte pack",
        pack.len()
    );
}
