//! History chunks read back from the database: arbitrary rows (claims and
//! blobs) through the decoder and the merge, which must answer with
//! readings in time order within the range, or a typed error, never a
//! panic or an allocation sized by the blob.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use sensegate_gateway::store::chunk::{ChunkError, Cursor, MAX_ROWS, Merge, Stored};

fuzz_target!(|data: &[u8]| {
    // Each chunk: first_ts (i16, scaled), span (u8), count (u8), blob length
    // (u8), then the blob.
    let mut rest = data;
    let mut chunks = Vec::new();
    while let [a, b, span, count, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (blob, tail) = tail.split_at(len);
        rest = tail;
        let first_ts = i64::from(i16::from_le_bytes([*a, *b])) * 16;
        let stored = Stored {
            seq: i64::try_from(chunks.len()).unwrap_or(0),
            first_ts,
            last_ts: first_ts + i64::from(*span),
            count: usize::from(*count).min(MAX_ROWS),
            data: blob.to_vec(),
        };
        // The decoder alone.
        for row in Cursor::new(0, stored.first_ts, stored.last_ts, stored.count, &stored.data) {
            if let Ok(row) = row {
                assert!(row.timestamp_us >= stored.first_ts && row.timestamp_us <= stored.last_ts);
            } else {
                break;
            }
        }
        chunks.push(stored);
    }
    chunks.sort_by_key(|c| (c.first_ts, c.seq));
    let (from, to) = (-1000, 1000);
    let mut last = i64::MIN;
    for row in Merge::new(chunks.into_iter().map(Ok::<_, ChunkError>), from, to) {
        let Ok(row) = row else { break };
        assert!(row.timestamp_us >= from && row.timestamp_us < to);
        assert!(row.timestamp_us > last, "not in time order, or twice");
        last = row.timestamp_us;
    }
});
