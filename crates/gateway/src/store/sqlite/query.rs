//! History queries: the chunks of a sensor's range, merged and decoded
//! under a deadline, as raw readings or buckets.

use rusqlite::{Connection, params};

use super::{QUERY_DEADLINE, err};
use crate::store::{Bucket, History, HistoryError, HistoryQuery, Row, chunk};

/// Why a query failed.
#[derive(Debug)]
pub(super) enum Fault {
    Sql(rusqlite::Error),
    Chunk(chunk::ChunkError),
    /// It ran past [`QUERY_DEADLINE`].
    Deadline,
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                Self::Deadline
            }
            e => Self::Sql(e),
        }
    }
}

impl From<chunk::ChunkError> for Fault {
    fn from(e: chunk::ChunkError) -> Self {
        Self::Chunk(e)
    }
}

impl Fault {
    pub(super) fn into_error(self) -> HistoryError {
        match self {
            Self::Sql(e) => err(&e),
            Self::Chunk(e) => HistoryError::new(e.to_string()),
            Self::Deadline => HistoryError::new(format!(
                "the query ran over {} s; narrow the range or widen the bucket",
                QUERY_DEADLINE.as_secs()
            )),
        }
    }
}

/// Readings decoded between two looks at the clock.
const DEADLINE_EVERY: usize = 4096;

pub(super) fn query(
    conn: &Connection,
    q: &HistoryQuery,
    deadline: std::time::Instant,
) -> Result<History, Fault> {
    let Some(id) = conn
        .prepare_cached("SELECT id FROM sensors WHERE name = ?1")?
        .query_row([&q.sensor], |r| r.get::<_, i64>(0))
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?
    else {
        return Ok(History::default());
    };
    // Chunks that may hold readings of the range: those starting in it, or
    // at most a chunk's span before it.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, first_ts, last_ts, count, data, length(data) FROM chunks
         WHERE sensor_id = ?1 AND first_ts >= ?2 AND first_ts < ?3 ORDER BY first_ts, seq",
    )?;
    let mut found = stmt.query(params![
        id,
        q.from_us.saturating_sub(chunk::MAX_SPAN_US),
        q.to_us
    ])?;
    let from = q.from_us;
    let chunks = std::iter::from_fn(move || {
        loop {
            let r = match found.next() {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => return Some(Err(Fault::from(e))),
            };
            match stored(r, from) {
                Ok(Some(c)) => return Some(Ok(c)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    });
    let mut merged = chunk::Merge::new(chunks, q.from_us, q.to_us);
    let mut out = History::default();
    let mut checked = 0usize;
    let mut on_time = || {
        checked += 1;
        if checked.is_multiple_of(DEADLINE_EVERY) && std::time::Instant::now() > deadline {
            return Err(Fault::Deadline);
        }
        Ok(())
    };
    if q.bucket_us == 0 {
        // One row past the limit tells whether the answer was cut.
        for row in merged.by_ref() {
            on_time()?;
            out.rows.push(row?);
            if out.rows.len() > q.limit {
                break;
            }
        }
        out.truncated = out.rows.len() > q.limit;
        out.rows.truncate(q.limit);
        return Ok(out);
    }
    // A bucket is complete when the readings pass its end; the scan stops
    // at the first bucket past the limit.
    let mut current: Option<(i64, Bucket, f64)> = None;
    for row in merged {
        on_time()?;
        let Row {
            timestamp_us: ts,
            value,
            ..
        } = row?;
        // Readings are at or after `from`: the difference is not negative,
        // and does not overflow as a u64.
        let b =
            i64::try_from(ts.abs_diff(q.from_us) / q.bucket_us.unsigned_abs()).unwrap_or(i64::MAX);
        match &mut current {
            Some((at, bucket, sum)) if *at == b => {
                bucket.min = bucket.min.min(value);
                bucket.max = bucket.max.max(value);
                bucket.count += 1;
                *sum += value;
            }
            _ => {
                if let Some((_, done, sum)) = current.take() {
                    out.buckets.push(finish(done, sum));
                }
                if out.buckets.len() >= q.limit {
                    out.truncated = true;
                    break;
                }
                let start_us = q.from_us.saturating_add(b.saturating_mul(q.bucket_us));
                let first = Bucket {
                    start_us,
                    min: value,
                    max: value,
                    mean: 0.0,
                    count: 1,
                };
                current = Some((b, first, value));
            }
        }
    }
    if let Some((_, done, sum)) = current {
        out.buckets.push(finish(done, sum));
    }
    Ok(out)
}

/// Checks what a chunk's row claims (its count, its span, its blob's
/// length, as `length(data)` gives it, before the blob is read) against
/// what the writer ever writes; the count as a `usize`.
pub(super) fn claims(
    seq: i64,
    first_ts: i64,
    last_ts: i64,
    count: i64,
    len: i64,
) -> Result<usize, chunk::ChunkError> {
    let damaged = |what| chunk::ChunkError::Damaged { seq, what };
    let count = usize::try_from(count)
        .ok()
        .filter(|c| (1..=chunk::MAX_ROWS).contains(c))
        .ok_or_else(|| damaged("a count out of range"))?;
    if !last_ts
        .checked_sub(first_ts)
        .is_some_and(|span| (0..=chunk::MAX_SPAN_US).contains(&span))
    {
        return Err(damaged("a span out of range"));
    }
    // At least a byte of time and 8 of value per reading, at most 18.
    let len = usize::try_from(len).map_err(|_| damaged("no blob"))?;
    if len < count * 9 || len > count * MAX_BYTES_PER_READING {
        return Err(damaged("a blob of a length its count does not allow"));
    }
    Ok(count)
}

/// Most bytes one reading packs into (a varint of at most 10 bytes and a
/// value of 8).
const MAX_BYTES_PER_READING: usize = 18;

/// One chunk row of a query (`seq, first_ts, last_ts, count, data,
/// length(data)`); `None` when it ends before `from` (its blob is then not
/// read). Its claims are checked before its blob is read.
pub(super) fn stored(r: &rusqlite::Row<'_>, from: i64) -> Result<Option<chunk::Stored>, Fault> {
    let seq: i64 = r.get(0)?;
    let int = |i| {
        r.get::<_, i64>(i).map_err(|_| chunk::ChunkError::Damaged {
            seq,
            what: "a column of the wrong type",
        })
    };
    let last_ts = int(2)?;
    if last_ts < from {
        return Ok(None);
    }
    let first_ts = int(1)?;
    let count = claims(seq, first_ts, last_ts, int(3)?, int(5)?)?;
    let data = r
        .get_ref(4)?
        .as_blob()
        .map_err(|_| chunk::ChunkError::Damaged {
            seq,
            what: "a column of the wrong type",
        })?;
    Ok(Some(chunk::Stored {
        seq,
        first_ts,
        last_ts,
        count,
        data: data.to_vec(),
    }))
}

/// A bucket with its mean, from the sum of its values.
#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn finish(mut bucket: Bucket, sum: f64) -> Bucket {
    bucket.mean = sum / bucket.count as f64;
    bucket
}
