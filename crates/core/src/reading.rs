//! One sensor reading as the daemon carries it between sources, the hub and
//! the front ends, and its conversion to and from the wire type.
//!
//! The sensor name is an `Arc<str>` shared with the catalog, so fanning a
//! reading out to a thousand subscribers copies a pointer, not the name.

use std::sync::Arc;

use sensegate_proto::v1;

/// How far a reading can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// A normal reading.
    Good,
    /// The source is unsure (out of calibration, interpolated).
    Uncertain,
    /// No usable value; `value` is 0.
    Bad,
}

impl Quality {
    /// From the wire enum; unknown values were rejected by validation, so any
    /// other value maps to [`Quality::Bad`].
    #[must_use]
    pub fn from_wire(value: i32) -> Self {
        match v1::Quality::try_from(value) {
            Ok(v1::Quality::Good) => Self::Good,
            Ok(v1::Quality::Uncertain) => Self::Uncertain,
            _ => Self::Bad,
        }
    }

    /// To the wire enum.
    #[must_use]
    pub const fn to_wire(self) -> v1::Quality {
        match self {
            Self::Good => v1::Quality::Good,
            Self::Uncertain => v1::Quality::Uncertain,
            Self::Bad => v1::Quality::Bad,
        }
    }
}

/// A reading of one sensor at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The sensor's name (validated: name charset, length cap).
    pub sensor: Arc<str>,
    /// Microseconds since the Unix epoch, UTC.
    pub timestamp_us: i64,
    /// The value; finite.
    pub value: f64,
    /// Its quality.
    pub quality: Quality,
}

/// Microseconds since the Unix epoch, now (0 if the clock is before 1970).
#[must_use]
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
