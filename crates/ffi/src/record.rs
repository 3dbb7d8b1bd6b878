//! Parsing the records a driver writes (format in `sensegate_driver.h`).
//!
//! Driver output is hostile input: a buggy or malicious driver can write any
//! bytes. The parser checks the length is a whole number of records and every
//! field is in range, and allocates only after that, exactly what the records
//! need.

use thiserror::Error;

use crate::abi::{CHANNELS_MAX, READ_CAPACITY, RECORD_SIZE};

/// One reading as a driver reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Channel number, below [`CHANNELS_MAX`].
    pub channel: u32,
    /// Quality: 0 good, 1 uncertain, 2 bad.
    pub quality: u32,
    /// Microseconds since the Unix epoch; 0 means "stamp on receipt".
    pub timestamp_us: i64,
    /// A finite value.
    pub value: f64,
}

/// Why a driver's output is not valid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    /// More bytes than a read may return.
    #[error("driver output of {len} bytes exceeds the read capacity of {READ_CAPACITY}")]
    TooLong {
        /// Bytes returned.
        len: usize,
    },
    /// Not a whole number of records.
    #[error("driver output of {len} bytes is not a whole number of {RECORD_SIZE}-byte records")]
    Ragged {
        /// Bytes returned.
        len: usize,
    },
    /// A record's channel is out of range.
    #[error("record {index}: channel {channel} is not below {CHANNELS_MAX}")]
    Channel {
        /// Position of the record.
        index: usize,
        /// The channel.
        channel: u32,
    },
    /// A record's quality is not 0, 1 or 2.
    #[error("record {index}: unknown quality {quality}")]
    Quality {
        /// Position of the record.
        index: usize,
        /// The quality.
        quality: u32,
    },
    /// A record's timestamp is negative.
    #[error("record {index}: negative timestamp")]
    Timestamp {
        /// Position of the record.
        index: usize,
    },
    /// A record's value is NaN or infinite.
    #[error("record {index}: value is not finite")]
    Value {
        /// Position of the record.
        index: usize,
    },
}

/// Parses a driver's output.
///
/// # Errors
/// [`RecordError`] for the first problem found; no partial result is returned,
/// since a driver that writes one bad record cannot be trusted for the rest.
pub fn parse(bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
    let len = bytes.len();
    if len > READ_CAPACITY {
        return Err(RecordError::TooLong { len });
    }
    if !len.is_multiple_of(RECORD_SIZE) {
        return Err(RecordError::Ragged { len });
    }
    let mut out = Vec::with_capacity(len / RECORD_SIZE);
    for (index, raw) in bytes.chunks_exact(RECORD_SIZE).enumerate() {
        let channel = u32::from_le_bytes(field(raw, 0));
        let quality = u32::from_le_bytes(field(raw, 4));
        let timestamp_us = i64::from_le_bytes(field(raw, 8));
        let value = f64::from_le_bytes(field(raw, 16));
        if channel >= CHANNELS_MAX {
            return Err(RecordError::Channel { index, channel });
        }
        if quality > 2 {
            return Err(RecordError::Quality { index, quality });
        }
        if timestamp_us < 0 {
            return Err(RecordError::Timestamp { index });
        }
        if !value.is_finite() {
            return Err(RecordError::Value { index });
        }
        out.push(Record {
            channel,
            quality,
            timestamp_us,
            value,
        });
    }
    Ok(out)
}

/// Encodes records in the driver format (for tests and stand-in drivers).
#[must_use]
pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * RECORD_SIZE);
    for r in records {
        out.extend_from_slice(&r.channel.to_le_bytes());
        out.extend_from_slice(&r.quality.to_le_bytes());
        out.extend_from_slice(&r.timestamp_us.to_le_bytes());
        out.extend_from_slice(&r.value.to_le_bytes());
    }
    out
}

/// The `N` bytes at `offset` of a record. Offsets are constants within
/// [`RECORD_SIZE`], and `chunks_exact` hands out whole records only.
fn field<const N: usize>(record: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&record[offset..offset + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(channel: u32, value: f64) -> Record {
        Record {
            channel,
            quality: 0,
            timestamp_us: 1_700_000_000_000_000,
            value,
        }
    }

    #[test]
    fn round_trips() {
        let rs = [rec(0, 1.5), rec(255, -3.25)];
        assert_eq!(parse(&encode(&rs)).unwrap(), rs);
        assert_eq!(parse(&[]).unwrap(), []);
    }

    #[test]
    fn rejects_each_bad_field() {
        assert_eq!(parse(&[0; 23]), Err(RecordError::Ragged { len: 23 }));
        assert_eq!(
            parse(&vec![0; READ_CAPACITY + RECORD_SIZE]),
            Err(RecordError::TooLong {
                len: READ_CAPACITY + RECORD_SIZE
            })
        );
        let bad_channel = encode(&[rec(0, 1.0), rec(256, 1.0)]);
        assert_eq!(
            parse(&bad_channel),
            Err(RecordError::Channel {
                index: 1,
                channel: 256
            })
        );
        let mut q = rec(1, 1.0);
        q.quality = 3;
        assert_eq!(
            parse(&encode(&[q])),
            Err(RecordError::Quality {
                index: 0,
                quality: 3
            })
        );
        let mut t = rec(1, 1.0);
        t.timestamp_us = -1;
        assert_eq!(
            parse(&encode(&[t])),
            Err(RecordError::Timestamp { index: 0 })
        );
        assert_eq!(
            parse(&encode(&[rec(1, f64::NAN)])),
            Err(RecordError::Value { index: 0 })
        );
        assert_eq!(
            parse(&encode(&[rec(1, f64::INFINITY)])),
            Err(RecordError::Value { index: 0 })
        );
    }

    proptest! {
        // Under Miri: fewer cases (it interprets every step) and no failure
        // file (Miri's isolation has no file system).
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 8 } else { 256 },
            failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
            ..ProptestConfig::default()
        })]
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(records) = parse(&bytes) {
                prop_assert_eq!(records.len() * RECORD_SIZE, bytes.len());
                prop_assert_eq!(encode(&records), bytes);
            }
        }
    }
}
