//! Packed chunks: how the SQLite backend keeps one sensor's readings from
//! one commit in one row, and how a query reads them back in time order.
//!
//! - [`runs`] cuts a sensor's readings of one commit (sorted by time, one
//!   per timestamp) into chunks of at most [`MAX_ROWS`] readings spanning at
//!   most [`MAX_SPAN_US`], so a range query needs only the chunks that start
//!   in the range or less than [`MAX_SPAN_US`] before it.
//! - [`pack`] encodes a chunk: per reading, an unsigned LEB128 varint of
//!   (time since the previous reading, or since the chunk's first for the
//!   first) shifted left by two with the quality in the low bits, then the
//!   value as 8 bytes little-endian. About 10 bytes a reading.
//! - [`Cursor`] decodes one, checking every step: a blob read back from the
//!   database is input like any other, and a damaged one is a typed error,
//!   never a panic or an allocation sized by it.
//! - [`Merge`] reads the chunks of a range in order of their first
//!   timestamp and yields their readings in time order. Chunks of different
//!   commits may overlap (a device pushed older readings again); for one
//!   timestamp the reading of the latest commit (highest sequence number)
//!   wins, as a later write of the same (sensor, timestamp) always has.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use sensegate_core::reading::Quality;
use sensegate_core::store::Row;

/// Most readings in one chunk.
pub const MAX_ROWS: usize = 4096;
/// Most time between a chunk's first and last reading, µs (one hour).
pub const MAX_SPAN_US: i64 = 3_600_000_000;
/// Most bytes of chunks a query holds open at once ([`Merge`]): only
/// chunks that overlap in time are open together, so this is reached only
/// when one instant of a sensor's history was written over some hundreds
/// of times (about 230 full chunks of 4,096 readings).
pub const MAX_OPEN_BYTES: usize = 16 << 20;

/// A chunk read back from the database is not one [`pack`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The blob does not decode to the readings its row says it holds.
    #[error("history chunk {seq} is damaged: {what}")]
    Damaged {
        /// The chunk's sequence number.
        seq: i64,
        /// What is wrong.
        what: &'static str,
    },
    /// The chunks open at once would hold more than [`MAX_OPEN_BYTES`].
    #[error(
        "this part of the sensor's history was written over too many times to merge in one query"
    )]
    Overlapping,
}

/// One chunk as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Sequence number: the order of commits.
    pub seq: i64,
    /// Its first reading's timestamp.
    pub first_ts: i64,
    /// Its last reading's timestamp.
    pub last_ts: i64,
    /// Readings in it.
    pub count: usize,
    /// The packed readings.
    pub data: Vec<u8>,
}

/// Cuts `rows` (sorted by time, one per timestamp) into chunks of at most
/// [`MAX_ROWS`] readings and [`MAX_SPAN_US`] of time.
pub fn runs(rows: &[Row]) -> impl Iterator<Item = &[Row]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let first = rest.first()?.timestamp_us;
        let end = rest
            .iter()
            .take(MAX_ROWS)
            .position(|r| r.timestamp_us.saturating_sub(first) > MAX_SPAN_US)
            .unwrap_or_else(|| rest.len().min(MAX_ROWS));
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

const fn quality_bits(q: Quality) -> u64 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

/// Packs one run from [`runs`] (sorted, one per timestamp, within
/// [`MAX_SPAN_US`]) into `out`, cleared first.
pub fn pack(run: &[Row], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(run.len() * 10);
    let mut prev = run.first().map_or(0, |r| r.timestamp_us);
    for r in run {
        let delta = u64::try_from(r.timestamp_us.saturating_sub(prev)).unwrap_or(0);
        prev = r.timestamp_us;
        let mut word = (delta << 2) | quality_bits(r.quality);
        loop {
            let byte = u8::try_from(word & 0x7f).unwrap_or(0);
            word >>= 7;
            if word == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(&r.value.to_le_bytes());
    }
}

/// Decodes one chunk, checking each reading against the row's claims.
#[derive(Debug)]
pub struct Cursor<'a> {
    seq: i64,
    data: &'a [u8],
    prev: i64,
    last_ts: i64,
    left: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`, which its row says holds `count` readings from
    /// `first_ts` to `last_ts`.
    #[must_use]
    pub fn new(seq: i64, first_ts: i64, last_ts: i64, count: usize, data: &'a [u8]) -> Self {
        Self {
            seq,
            data,
            prev: first_ts,
            last_ts,
            left: count,
        }
    }

    fn damaged(&mut self, what: &'static str) -> ChunkError {
        self.left = 0;
        self.data = &[];
        ChunkError::Damaged {
            seq: self.seq,
            what,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut word = 0u64;
        for (i, &byte) in self.data.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            let shift = u32::try_from(7 * i).ok()?;
            if shift == 63 && bits > 1 {
                return None;
            }
            word |= bits << shift;
            if byte & 0x80 == 0 {
                self.data = &self.data[i + 1..];
                return Some(word);
            }
        }
        None
    }
}

impl Iterator for Cursor<'_> {
    type Item = Result<Row, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            if self.data.is_empty() {
                return None;
            }
            return Some(Err(self.damaged("bytes after its last reading")));
        }
        let Some(word) = self.varint() else {
            return Some(Err(self.damaged("a timestamp cut short")));
        };
        let Some((value, rest)) = self.data.split_first_chunk::<8>() else {
            return Some(Err(self.damaged("a value cut short")));
        };
        self.data = rest;
        let quality = match word & 3 {
            0 => Quality::Good,
            1 => Quality::Uncertain,
            2 => Quality::Bad,
            _ => return Some(Err(self.damaged("an unknown quality"))),
        };
        let Some(ts) = i64::try_from(word >> 2)
            .ok()
            .and_then(|d| self.prev.checked_add(d))
            .filter(|&ts| ts <= self.last_ts)
        else {
            return Some(Err(self.damaged("a timestamp past its last")));
        };
        self.prev = ts;
        self.left -= 1;
        if self.left == 0 && ts != self.last_ts {
            return Some(Err(self.damaged("its last timestamp is not the row's")));
        }
        Some(Ok(Row {
            timestamp_us: ts,
            value: f64::from_le_bytes(*value),
            quality,
        }))
    }
}

/// An open chunk in a [`Merge`]: the next reading it has not yielded.
struct Open {
    head: Row,
    seq: i64,
    data: Vec<u8>,
    /// Where the rest starts in `data`.
    at: usize,
    prev: i64,
    last_ts: i64,
    left: usize,
}

impl Open {
    /// Opens `chunk` at its first reading at or after `from`; `None` when it
    /// has none.
    fn start(chunk: Stored, from: i64) -> Result<Option<Self>, ChunkError> {
        let mut open = Self {
            head: Row {
                timestamp_us: 0,
                value: 0.0,
                quality: Quality::Good,
            },
            seq: chunk.seq,
            at: 0,
            prev: chunk.first_ts,
            last_ts: chunk.last_ts,
            left: chunk.count,
            data: chunk.data,
        };
        while let Some(row) = open.step()? {
            if row.timestamp_us >= from {
                open.head = row;
                return Ok(Some(open));
            }
        }
        Ok(None)
    }

    /// The next reading, decoded from where the last one ended.
    fn step(&mut self) -> Result<Option<Row>, ChunkError> {
        let mut c = Cursor {
            seq: self.seq,
            data: &self.data[self.at..],
            prev: self.prev,
            last_ts: self.last_ts,
            left: self.left,
        };
        let row = c.next().transpose()?;
        self.at = self.data.len() - c.data.len();
        self.prev = c.prev;
        self.left = c.left;
        Ok(row)
    }
}

impl PartialEq for Open {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Open {}
impl PartialOrd for Open {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Open {
    /// The heap's top is the earliest reading, and for one timestamp the
    /// latest commit's.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .head
            .timestamp_us
            .cmp(&self.head.timestamp_us)
            .then(self.seq.cmp(&other.seq))
    }
}

/// The readings of a range of chunks in time order, one per timestamp.
pub struct Merge<I: Iterator> {
    chunks: std::iter::Peekable<I>,
    open: BinaryHeap<Open>,
    open_bytes: usize,
    from: i64,
    to: i64,
    /// An error ended it.
    done: bool,
}

impl<I, E> Merge<I>
where
    I: Iterator<Item = Result<Stored, E>>,
    E: From<ChunkError>,
{
    /// Merges `chunks` (in order of their first timestamp) into the readings
    /// from `from` (inclusive) to `to` (exclusive).
    pub fn new(chunks: I, from: i64, to: i64) -> Self {
        Self {
            chunks: chunks.peekable(),
            open: BinaryHeap::new(),
            open_bytes: 0,
            from,
            to,
            done: false,
        }
    }

    /// Opens every chunk that starts no later than the earliest open
    /// reading: only then is that reading the earliest of all.
    fn load(&mut self) -> Result<(), E> {
        loop {
            let due = match (self.chunks.peek(), self.open.peek()) {
                (None, _) => return Ok(()),
                (Some(Err(_)), _) | (Some(Ok(_)), None) => true,
                (Some(Ok(next)), Some(top)) => next.first_ts <= top.head.timestamp_us,
            };
            if !due {
                return Ok(());
            }
            let Some(next) = self.chunks.next() else {
                return Ok(());
            };
            let chunk = next?;
            if chunk.last_ts < self.from || chunk.first_ts >= self.to {
                continue;
            }
            if let Some(open) = Open::start(chunk, self.from).map_err(E::from)? {
                self.open_bytes += open.data.len();
                if self.open_bytes > MAX_OPEN_BYTES {
                    return Err(ChunkError::Overlapping.into());
                }
                self.open.push(open);
            }
        }
    }

    /// Moves the top chunk past its head; returns that head.
    fn advance_top(&mut self) -> Result<Option<Row>, E> {
        let Some(mut top) = self.open.pop() else {
            return Ok(None);
        };
        let head = top.head;
        match top.step().map_err(E::from)? {
            Some(row) => {
                top.head = row;
                self.open.push(top);
            }
            None => self.open_bytes -= top.data.len(),
        }
        Ok(Some(head))
    }

    fn next_row(&mut self) -> Result<Option<Row>, E> {
        self.load()?;
        let Some(row) = self.advance_top()? else {
            return Ok(None);
        };
        if row.timestamp_us >= self.to {
            self.open.clear();
            self.open_bytes = 0;
            return Ok(None);
        }
        // Older commits' readings of the same timestamp are overwritten.
        loop {
            self.load()?;
            match self.open.peek() {
                Some(top) if top.head.timestamp_us == row.timestamp_us => {
                    self.advance_top()?;
                }
                _ => break,
            }
        }
        Ok(Some(row))
    }
}

impl<I, E> Iterator for Merge<I>
where
    I: Iterator<Item = Result<Stored, E>>,
    E: From<ChunkError>,
{
    type Item = Result<Row, E>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Ok(row) => row.map(Ok),
            Err(e) => {
                // Nothing after an error, and no chunk read for it.
                self.open.clear();
                self.open_bytes = 0;
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64, value: f64) -> Row {
        Row {
            timestamp_us: ts,
            value,
            quality: Quality::Good,
        }
    }

    fn stored(seq: i64, rows: &[Row]) -> Stored {
        let mut data = Vec::new();
        pack(rows, &mut data);
        Stored {
            seq,
            first_ts: rows[0].timestamp_us,
            last_ts: rows[rows.len() - 1].timestamp_us,
            count: rows.len(),
            data,
        }
    }

    fn merged(chunks: Vec<Stored>, from: i64, to: i64) -> Result<Vec<Row>, ChunkError> {
        let mut chunks = chunks;
        chunks.sort_by_key(|c| (c.first_ts, c.seq));
        Merge::new(chunks.into_iter().map(Ok::<_, ChunkError>), from, to).collect()
    }

    #[test]
    fn a_chunk_round_trips_with_every_quality_and_extreme_values() {
        let rows = vec![
            row(-5, f64::MIN),
            Row {
                timestamp_us: 0,
                value: f64::NAN,
                quality: Quality::Uncertain,
            },
            Row {
                timestamp_us: 1,
                value: -0.0,
                quality: Quality::Bad,
            },
            row(MAX_SPAN_US - 5, f64::MAX),
        ];
        let c = stored(1, &rows);
        let back: Vec<Row> = Cursor::new(1, c.first_ts, c.last_ts, c.count, &c.data)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back.len(), 4);
        for (a, b) in rows.iter().zip(&back) {
            assert_eq!(a.timestamp_us, b.timestamp_us);
            assert_eq!(a.quality, b.quality);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
        // One-apart timestamps take one byte, the value eight.
        let dense: Vec<Row> = (0..100).map(|i| row(i, 1.0)).collect();
        assert_eq!(stored(2, &dense).data.len(), 100 * 9);
    }

    #[test]
    fn runs_respect_the_row_and_span_caps() {
        let many: Vec<Row> = (0..10_000).map(|i| row(i, 0.0)).collect();
        let lens: Vec<usize> = runs(&many).map(<[Row]>::len).collect();
        assert_eq!(lens, [4096, 4096, 1808]);
        let sparse = [
            row(0, 0.0),
            row(MAX_SPAN_US, 0.0),
            row(MAX_SPAN_US + 1, 0.0),
            row(i64::MAX, 0.0),
        ];
        let lens: Vec<usize> = runs(&sparse).map(<[Row]>::len).collect();
        assert_eq!(lens, [2, 1, 1]);
        assert_eq!(runs(&[]).count(), 0);
    }

    #[test]
    fn a_damaged_blob_is_an_error_never_a_panic() {
        let c = stored(7, &[row(10, 1.0), row(20, 2.0)]);
        let decode = |first, last, count, data: &[u8]| {
            Cursor::new(7, first, last, count, data).collect::<Result<Vec<Row>, _>>()
        };
        assert!(decode(10, 20, 2, &c.data).is_ok());
        // Cut short, one byte more, a wrong count, a wrong last timestamp.
        for len in 0..c.data.len() {
            assert!(decode(10, 20, 2, &c.data[..len]).is_err(), "cut at {len}");
        }
        let mut longer = c.data.clone();
        longer.push(0);
        assert!(decode(10, 20, 2, &longer).is_err());
        assert!(decode(10, 20, 3, &c.data).is_err());
        assert!(decode(10, 20, 1, &c.data).is_err());
        assert!(decode(10, 15, 2, &c.data).is_err());
        // An overlong varint, a delta past i64, quality 3.
        assert!(decode(0, i64::MAX, 1, &[0xff; 11]).is_err());
        let mut huge = vec![0xff; 9];
        huge.push(0x01);
        huge.extend_from_slice(&[0; 8]);
        assert!(decode(i64::MAX - 1, i64::MAX, 1, &huge).is_err());
        let mut q3 = vec![0x03];
        q3.extend_from_slice(&[0; 8]);
        assert!(decode(0, 0, 1, &q3).is_err());
    }

    #[test]
    fn merged_chunks_come_out_in_time_order_the_latest_commit_winning() {
        let a = stored(1, &[row(0, 1.0), row(10, 1.0), row(20, 1.0)]);
        // A later commit overwrites 10 and adds 15 and 30.
        let b = stored(2, &[row(10, 2.0), row(15, 2.0), row(30, 2.0)]);
        let c = stored(3, &[row(40, 3.0)]);
        let all = merged(vec![a.clone(), b.clone(), c.clone()], 0, 100).unwrap();
        let got: Vec<(i64, f64)> = all.iter().map(|r| (r.timestamp_us, r.value)).collect();
        assert_eq!(
            got,
            [
                (0, 1.0),
                (10, 2.0),
                (15, 2.0),
                (20, 1.0),
                (30, 2.0),
                (40, 3.0)
            ]
        );
        // The range is [from, to).
        let part = merged(vec![a.clone(), b.clone(), c], 10, 30).unwrap();
        let ts: Vec<i64> = part.iter().map(|r| r.timestamp_us).collect();
        assert_eq!(ts, [10, 15, 20]);
        // An older commit written over a newer one still loses.
        let old = stored(1, &[row(10, 1.0)]);
        let new = stored(2, &[row(5, 2.0), row(10, 2.0)]);
        let got = merged(vec![old, new], 0, 100).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| (r.value - 2.0).abs() < f64::EPSILON));
    }

    #[test]
    fn overlapping_past_the_byte_cap_is_refused_not_held() {
        let rows: Vec<Row> = (0..4096).map(|i| row(i, 0.0)).collect();
        let one = stored(0, &rows);
        let copies = MAX_OPEN_BYTES / one.data.len() + 2;
        let chunks: Vec<Stored> = (0..copies)
            .map(|i| Stored {
                seq: i64::try_from(i).unwrap(),
                ..one.clone()
            })
            .collect();
        assert_eq!(merged(chunks, 0, 10), Err(ChunkError::Overlapping));
        // Chunks one after another never are open together.
        let chunks: Vec<Stored> = (0..copies)
            .map(|i| {
                let base = i64::try_from(i).unwrap() * 10_000;
                let rows: Vec<Row> = (0..4096).map(|j| row(base + j, 0.0)).collect();
                stored(base, &rows)
            })
            .collect();
        assert_eq!(merged(chunks, 0, i64::MAX).unwrap().len(), copies * 4096);
    }
}
