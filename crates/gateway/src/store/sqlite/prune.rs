//! Retention: pruning by age in small steps, one short transaction each,
//! never deleting what an uplink has not yet had confirmed.

use rusqlite::params;

use super::Writer;
use super::query::claims;
use crate::store::{PruneStep, Row, chunk};

/// Sensors visited by one pruning step.
const PRUNE_SENSORS_PER_STEP: i64 = 64;

impl Writer {
    /// One pruning step, in one transaction (one fsync): up to
    /// [`PRUNE_SENSORS_PER_STEP`] sensors after the cursor, up to `max_rows`
    /// deleted rows. The cursor carries on from there next step, so every
    /// sensor gets its turn and no step holds the writer for long.
    pub(super) fn prune(
        &mut self,
        cutoff: &dyn Fn(&str) -> i64,
        max_rows: usize,
    ) -> Result<PruneStep, rusqlite::Error> {
        let sensors: Vec<(i64, String)> = self
            .conn
            .prepare_cached("SELECT id, name FROM sensors WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![self.prune_after, PRUNE_SENSORS_PER_STEP], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            let mut deleted = 0;
            let mut last = self.prune_after;
            for (id, name) in &sensors {
                if deleted >= max_rows {
                    break;
                }
                deleted += self.prune_sensor(*id, cutoff(name), max_rows - deleted)?;
                // A sensor left with old rows is visited again next step.
                if deleted < max_rows {
                    last = *id;
                }
            }
            Ok::<_, rusqlite::Error>((deleted, last))
        })();
        let result = result.and_then(|r| self.conn.execute_batch("COMMIT").map(|()| r));
        match result {
            Ok((deleted, last)) => {
                let wrapped = i64::try_from(sensors.len()).unwrap_or(0) < PRUNE_SENSORS_PER_STEP
                    && deleted < max_rows;
                self.prune_after = if wrapped { 0 } else { last };
                Ok(PruneStep {
                    deleted,
                    more: !wrapped,
                })
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(e)
            }
        }
    }
}

impl Writer {
    /// Deletes up to `max_rows` of `sensor`'s readings before `cutoff`,
    /// oldest first: whole chunks where they are all older, else the chunk
    /// is rewritten without its older readings (its sequence number kept).
    pub(super) fn prune_sensor(
        &mut self,
        sensor: i64,
        cutoff: i64,
        max_rows: usize,
    ) -> Result<usize, rusqlite::Error> {
        // Each chunk holds at least one reading: `max_rows` chunks are
        // enough. Rows whose columns are not of their types are left out
        // here (a query of them says they are damaged): one such row must
        // not stop retention for every sensor.
        let old: Vec<(i64, i64, i64, i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT seq, first_ts, last_ts, count, length(data) FROM chunks
                 WHERE sensor_id = ?1 AND first_ts < ?2 AND seq <= ?4
                   AND typeof(first_ts) = 'integer' AND typeof(last_ts) = 'integer'
                   AND typeof(count) = 'integer' AND typeof(data) = 'blob'
                 ORDER BY first_ts, seq LIMIT ?3",
            )?
            .query_map(
                params![
                    sensor,
                    cutoff,
                    i64::try_from(max_rows).unwrap_or(i64::MAX),
                    self.hold
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?
            .collect::<Result<_, _>>()?;
        let mut deleted = 0;
        for (seq, first_ts, last_ts, count, len) in old {
            let left = max_rows - deleted;
            if left == 0 {
                break;
            }
            let count = match claims(seq, first_ts, last_ts, count, len) {
                Ok(count) => count,
                Err(e) => {
                    // Left as it is (and refused by queries): pruning goes
                    // on with the rest.
                    tracing::warn!(error = %e, "pruning skips a damaged history chunk");
                    continue;
                }
            };
            if last_ts < cutoff && count <= left {
                self.conn
                    .prepare_cached("DELETE FROM chunks WHERE seq = ?1")?
                    .execute([seq])?;
                deleted += count;
                continue;
            }
            let data: Vec<u8> = self
                .conn
                .prepare_cached("SELECT data FROM chunks WHERE seq = ?1")?
                .query_row([seq], |r| r.get(0))?;
            let rows: Vec<Row> =
                match chunk::Cursor::new(seq, first_ts, last_ts, count, &data).collect() {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning skips a damaged history chunk");
                        continue;
                    }
                };
            let take = rows
                .iter()
                .take_while(|r| r.timestamp_us < cutoff)
                .count()
                .min(left);
            let keep = &rows[take..];
            match (keep.first(), keep.last()) {
                (Some(first), Some(last)) if take > 0 => {
                    chunk::pack(keep, &mut self.blob);
                    self.conn
                        .prepare_cached(
                            "UPDATE chunks SET first_ts = ?2, last_ts = ?3, count = ?4, data = ?5 WHERE seq = ?1",
                        )?
                        .execute(params![
                            seq,
                            first.timestamp_us,
                            last.timestamp_us,
                            i64::try_from(keep.len()).unwrap_or(i64::MAX),
                            &self.blob[..]
                        ])?;
                }
                (None, _) => {
                    self.conn
                        .prepare_cached("DELETE FROM chunks WHERE seq = ?1")?
                        .execute([seq])?;
                }
                _ => {}
            }
            deleted += take;
        }
        Ok(deleted)
    }
}
