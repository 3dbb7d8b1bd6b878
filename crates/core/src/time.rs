//! The core's one clock. Every deadline, window and rate in the core (the
//! authentication throttle, push rates, audit denials, idle connections)
//! reads one monotonic type, tokio's [`Instant`], so tests can pause and
//! advance it instead of sleeping. Wall time (µs since the Unix epoch) is a
//! value stamped on readings, tokens and audit lines, never a deadline:
//! [`crate::reading::now_us`].

pub use tokio::time::Instant;
