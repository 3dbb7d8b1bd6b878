//! History as the uplinks' outbox (issue 16): the gateway's id, one cursor
//! per uplink, and what each has not yet had confirmed.
//!
//! Every chunk has a sequence number in commit order (`chunks.seq`,
//! `AUTOINCREMENT`: never used twice). An uplink reads the chunks after its
//! cursor ([`SqliteStore::outbox`]), sends them, and moves its cursor only
//! once the remote side has confirmed them ([`SqliteStore::confirm`]),
//! in the same database as the readings, so a crash between the two sends
//! a batch again (the remote side's upsert makes that harmless) and never
//! loses one. Retention does not delete a chunk some uplink has not had
//! confirmed; past an uplink's backlog cap its oldest unsent readings are
//! skipped, counted in its `dropped` ([`SqliteStore::enforce_backlog`]),
//! and become prunable again.

use std::fmt::Write as _;

use rusqlite::{OptionalExtension as _, params};

use super::{Fault, SqliteStore, Writer, err};
use crate::store::chunk::Cursor;
use crate::store::{HistoryError, Row};

/// One chunk to send: a sensor's readings of one commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Its sequence number: confirm up to it once it is delivered.
    pub seq: i64,
    /// The sensor.
    pub sensor: String,
    /// Its readings, in time order.
    pub rows: Vec<Row>,
}

/// One uplink's place in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkCursor {
    /// The uplink's configured name.
    pub name: String,
    /// The highest sequence number the remote side confirmed.
    pub delivered: i64,
    /// Readings skipped past the backlog cap, never delivered.
    pub dropped: u64,
}

/// An uplink's backlog after [`SqliteStore::enforce_backlog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Readings committed and not yet confirmed.
    pub rows: u64,
    /// Readings this call skipped past the cap.
    pub dropped_now: u64,
}

/// Makes the gateway's id: a random (version 4) UUID.
///
/// # Errors
/// The system's random source failed.
pub(super) fn new_gateway_id() -> Result<String, rusqlite::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    });
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

impl SqliteStore {
    /// The gateway's id, made once with this database.
    #[must_use]
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Makes `names` the uplinks (a new one starts at the beginning of
    /// history; one no longer named loses its cursor and holds nothing
    /// back) and returns their cursors.
    ///
    /// # Errors
    /// [`HistoryError`].
    pub fn attach_uplinks(&self, names: &[&str]) -> Result<Vec<UplinkCursor>, HistoryError> {
        let mut w = self.lock_writer();
        let result = (|| {
            let tx = w.conn.unchecked_transaction()?;
            let known: Vec<String> = tx
                .prepare("SELECT name FROM uplinks")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for gone in known.iter().filter(|k| !names.contains(&k.as_str())) {
                tx.execute("DELETE FROM uplinks WHERE name = ?1", [gone])?;
            }
            for name in names {
                tx.execute(
                    "INSERT OR IGNORE INTO uplinks (name, delivered, dropped) VALUES (?1, 0, 0)",
                    [name],
                )?;
            }
            tx.commit()?;
            cursors(&w.conn)
        })();
        let cursors = result.map_err(|e| err(&e))?;
        w.hold = hold(&cursors);
        Ok(cursors)
    }

    /// The uplinks' cursors.
    ///
    /// # Errors
    /// [`HistoryError`].
    pub fn uplink_cursors(&self) -> Result<Vec<UplinkCursor>, HistoryError> {
        cursors(&self.lock_writer().conn).map_err(|e| err(&e))
    }

    /// The chunks committed after `after`, in commit order, until they hold
    /// `max_readings` (so at most one chunk, 4,096 readings, more; at least
    /// one chunk when there is one).
    ///
    /// A chunk whose blob does not decode comes back with no rows (and a
    /// warning), so the cursor can pass it.
    ///
    /// # Errors
    /// [`HistoryError`].
    pub fn outbox(&self, after: i64, max_readings: usize) -> Result<Vec<Outgoing>, HistoryError> {
        let conn = self.reader()?;
        let result = (|| {
            let mut stmt = conn.prepare_cached(
                // The columns `stored` reads, then the name.
                "SELECT c.seq, c.first_ts, c.last_ts, c.count, c.data, length(c.data), s.name
                 FROM chunks c JOIN sensors s ON s.id = c.sensor_id
                 WHERE c.seq > ?1 ORDER BY c.seq",
            )?;
            let mut found = stmt.query([after])?;
            let mut out = Vec::new();
            let mut readings = 0usize;
            while readings < max_readings {
                let Some(r) = found.next()? else { break };
                let Some(c) = super::stored(r, i64::MIN)? else {
                    continue;
                };
                // A chunk that does not decode is sent as no readings (and
                // logged), as pruning skips it: one damaged row must not
                // stop the uplink behind it.
                let rows = match Cursor::new(c.seq, c.first_ts, c.last_ts, c.count, &c.data)
                    .collect::<Result<Vec<Row>, _>>()
                {
                    Ok(rows) => rows,
                    Err(e) => {
                        tracing::warn!(seq = c.seq, error = %e, "a damaged history chunk is skipped by the uplinks");
                        Vec::new()
                    }
                };
                readings += rows.len();
                out.push(Outgoing {
                    seq: c.seq,
                    sensor: r.get(6)?,
                    rows,
                });
            }
            Ok::<_, Fault>(out)
        })();
        self.give_back(conn);
        result.map_err(Fault::into_error)
    }

    /// Moves `uplink`'s cursor to `seq` once the remote side confirmed
    /// every chunk up to it (never back).
    ///
    /// # Errors
    /// [`HistoryError`]; also when `uplink` is not attached.
    pub fn confirm(&self, uplink: &str, seq: i64) -> Result<(), HistoryError> {
        let mut w = self.lock_writer();
        let changed = w
            .conn
            .prepare_cached("UPDATE uplinks SET delivered = MAX(delivered, ?2) WHERE name = ?1")
            .and_then(|mut s| s.execute(params![uplink, seq]))
            .map_err(|e| err(&e))?;
        if changed == 0 {
            return Err(HistoryError::new(format!("no uplink named {uplink:?}")));
        }
        let cursors = cursors(&w.conn).map_err(|e| err(&e))?;
        w.hold = hold(&cursors);
        Ok(())
    }

    /// Counts `uplink`'s backlog and, past `max_rows` readings, skips its
    /// oldest unsent chunks until it is within the cap again (counted in
    /// its `dropped`).
    ///
    /// # Errors
    /// [`HistoryError`]; also when `uplink` is not attached.
    pub fn enforce_backlog(&self, uplink: &str, max_rows: u64) -> Result<Backlog, HistoryError> {
        // Counted on a reader first: commits go on meanwhile, and only a
        // backlog past its cap takes the writer.
        let conn = self.reader()?;
        let counted = backlog_rows(&conn, uplink);
        self.give_back(conn);
        match counted.map_err(|e| err(&e))? {
            None => return Err(HistoryError::new(format!("no uplink named {uplink:?}"))),
            Some((_, rows)) if rows <= max_rows => {
                return Ok(Backlog {
                    rows,
                    dropped_now: 0,
                });
            }
            Some(_) => {}
        }
        let mut w = self.lock_writer();
        let result = skip_past_cap(&w, uplink, max_rows);
        let backlog = result.map_err(|e| err(&e))?;
        let Some(backlog) = backlog else {
            return Err(HistoryError::new(format!("no uplink named {uplink:?}")));
        };
        if backlog.dropped_now > 0 {
            let cursors = cursors(&w.conn).map_err(|e| err(&e))?;
            w.hold = hold(&cursors);
        }
        Ok(backlog)
    }
}

/// `uplink`'s cursor and the readings after it (`None`: no such uplink).
fn backlog_rows(
    conn: &rusqlite::Connection,
    uplink: &str,
) -> Result<Option<(i64, u64)>, rusqlite::Error> {
    let Some(delivered) = conn
        .query_row(
            "SELECT delivered FROM uplinks WHERE name = ?1",
            [uplink],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let rows: i64 = conn.query_row(
        "SELECT COALESCE(SUM(count), 0) FROM chunks WHERE seq > ?1",
        [delivered],
        |r| r.get(0),
    )?;
    Ok(Some((delivered, u64::try_from(rows).unwrap_or(0))))
}

fn skip_past_cap(
    w: &Writer,
    uplink: &str,
    max_rows: u64,
) -> Result<Option<Backlog>, rusqlite::Error> {
    let tx = w.conn.unchecked_transaction()?;
    let Some((delivered, rows)) = backlog_rows(&tx, uplink)? else {
        return Ok(None);
    };
    if rows <= max_rows {
        return Ok(Some(Backlog {
            rows,
            dropped_now: 0,
        }));
    }
    let mut over = rows - max_rows;
    let mut skipped = 0u64;
    let mut to = delivered;
    {
        let mut stmt = tx.prepare("SELECT seq, count FROM chunks WHERE seq > ?1 ORDER BY seq")?;
        let mut found = stmt.query([delivered])?;
        while over > 0 {
            let Some(r) = found.next()? else { break };
            let n = u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0);
            to = r.get(0)?;
            skipped += n;
            over = over.saturating_sub(n);
        }
    }
    tx.execute(
        "UPDATE uplinks SET delivered = ?2, dropped = dropped + ?3 WHERE name = ?1",
        params![uplink, to, i64::try_from(skipped).unwrap_or(i64::MAX)],
    )?;
    tx.commit()?;
    tracing::warn!(
        uplink,
        dropped = skipped,
        cap = max_rows,
        "an uplink's backlog passed its cap: its oldest unsent readings are skipped"
    );
    Ok(Some(Backlog {
        rows: rows - skipped,
        dropped_now: skipped,
    }))
}

pub(super) fn cursors(conn: &rusqlite::Connection) -> Result<Vec<UplinkCursor>, rusqlite::Error> {
    conn.prepare_cached("SELECT name, delivered, dropped FROM uplinks ORDER BY name")?
        .query_map([], |r| {
            Ok(UplinkCursor {
                name: r.get(0)?,
                delivered: r.get(1)?,
                dropped: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?
        .collect()
}

/// The highest sequence number retention may delete: what every uplink
/// has had confirmed (everything, with no uplink).
pub(super) fn hold(cursors: &[UplinkCursor]) -> i64 {
    cursors
        .iter()
        .map(|c| c.delivered)
        .min()
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::Durability;
    use super::*;
    use crate::reading::{Quality, Reading};
    use crate::store::{HistoryQuery, HistoryStore};

    fn batch(sensor: &str, from: i64, n: i64) -> Vec<Reading> {
        let name: Arc<str> = Arc::from(sensor);
        (from..from + n)
            .map(|ts| Reading {
                sensor: name.clone(),
                timestamp_us: ts,
                value: 1.0,
                quality: Quality::Good,
            })
            .collect()
    }

    fn stored(store: &SqliteStore, sensor: &str) -> usize {
        store
            .history(&HistoryQuery {
                sensor: sensor.to_owned(),
                from_us: 0,
                to_us: i64::MAX,
                bucket_us: 0,
                limit: 100_000,
                owner: String::new(),
            })
            .unwrap()
            .rows
            .len()
    }

    #[test]
    fn the_gateway_id_is_a_uuid_made_once_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(&dir.path().join("a.db"), Durability::Normal).unwrap();
        let id = a.gateway_id().to_owned();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "version 4: {id}");
        assert!("89ab".contains(&parts[3][..1]), "RFC 4122 variant: {id}");
        drop(a);
        let again = SqliteStore::open(&dir.path().join("a.db"), Durability::Normal).unwrap();
        assert_eq!(again.gateway_id(), id);
        let other = SqliteStore::open(&dir.path().join("b.db"), Durability::Normal).unwrap();
        assert_ne!(other.gateway_id(), id);
    }

    #[test]
    fn an_uplink_reads_in_commit_order_and_its_cursor_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        // Written before the uplink exists: it starts at the beginning.
        store.write(&[&batch("a", 100, 10)]).unwrap();
        let cursors = store.attach_uplinks(&["pg"]).unwrap();
        assert_eq!(cursors[0].delivered, 0);
        store
            .write(&[&batch("b", 0, 5), &batch("a", 0, 5)])
            .unwrap();
        store.write(&[&batch("c", 0, 5000)]).unwrap();
        let all = store.outbox(0, usize::MAX).unwrap();
        let order: Vec<(&str, usize)> = all
            .iter()
            .map(|o| (o.sensor.as_str(), o.rows.len()))
            .collect();
        // Commit order; within a commit, by sensor id; c in two chunks.
        assert_eq!(
            order,
            [("a", 10), ("a", 5), ("b", 5), ("c", 4096), ("c", 904)]
        );
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        // A batch stops once it holds the readings asked for.
        let first = store.outbox(0, 12).unwrap();
        assert_eq!(first.len(), 2);
        store.confirm("pg", first[1].seq).unwrap();
        // Never back.
        store.confirm("pg", first[0].seq).unwrap();
        assert!(store.confirm("nobody", 1).is_err());
        drop(store);
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        let c = store.uplink_cursors().unwrap();
        assert_eq!(c[0].delivered, first[1].seq);
        let rest = store.outbox(c[0].delivered, usize::MAX).unwrap();
        assert_eq!(rest.len(), 3);
        assert_eq!(rest[0].sensor, "b");
    }

    #[test]
    fn a_damaged_chunk_is_passed_over_not_a_stop_for_the_uplink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let store = SqliteStore::open(&path, Durability::Normal).unwrap();
        store.attach_uplinks(&["pg"]).unwrap();
        store.write(&[&batch("a", 0, 10)]).unwrap();
        store.write(&[&batch("b", 0, 10)]).unwrap();
        // The first chunk's blob keeps its length (its claims hold) but
        // does not decode.
        let raw = rusqlite::Connection::open(&path).unwrap();
        let len: i64 = raw
            .query_row(
                "SELECT length(data) FROM chunks ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        raw.execute(
            "UPDATE chunks SET data = ?1 WHERE seq = (SELECT MIN(seq) FROM chunks)",
            [vec![0xFFu8; usize::try_from(len).unwrap()]],
        )
        .unwrap();
        let out = store.outbox(0, usize::MAX).unwrap();
        assert_eq!(
            out.iter()
                .map(|o| (o.sensor.as_str(), o.rows.len()))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 10)]
        );
    }

    #[test]
    fn retention_keeps_what_an_uplink_has_not_had_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
        store.attach_uplinks(&["pg", "mqtt"]).unwrap();
        store.write(&[&batch("a", 0, 10)]).unwrap();
        store.write(&[&batch("a", 10, 10)]).unwrap();
        let out = store.outbox(0, usize::MAX).unwrap();
        let everything = |_: &str| i64::MAX;
        assert_eq!(store.prune(&everything, 1000).unwrap().deleted, 0);
        // One uplink has the first chunk; the other has nothing yet.
        store.confirm("pg", out[1].seq).unwrap();
        assert_eq!(store.prune(&everything, 1000).unwrap().deleted, 0);
        store.confirm("mqtt", out[0].seq).unwrap();
        assert_eq!(store.prune(&everything, 1000).unwrap().deleted, 10);
        assert_eq!(stored(&store, "a"), 10);
        // An uplink no longer configured holds nothing back.
        store.attach_uplinks(&["pg"]).unwrap();
        assert_eq!(store.prune(&everything, 1000).unwrap().deleted, 10);
        assert_eq!(stored(&store, "a"), 0);
    }

    #[test]
    fn past_the_backlog_cap_the_oldest_unsent_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
        store.attach_uplinks(&["pg"]).unwrap();
        for i in 0..10 {
            store.write(&[&batch("a", i * 100, 100)]).unwrap();
        }
        let within = store.enforce_backlog("pg", 1000).unwrap();
        assert_eq!(
            within,
            Backlog {
                rows: 1000,
                dropped_now: 0
            }
        );
        let over = store.enforce_backlog("pg", 650).unwrap();
        // Whole chunks are skipped: four of 100 to come within 650.
        assert_eq!(
            over,
            Backlog {
                rows: 600,
                dropped_now: 400
            }
        );
        let c = &store.uplink_cursors().unwrap()[0];
        assert_eq!(c.dropped, 400);
        let rest = store.outbox(c.delivered, usize::MAX).unwrap();
        assert_eq!(rest.iter().map(|o| o.rows.len()).sum::<usize>(), 600);
        assert_eq!(rest[0].rows[0].timestamp_us, 400, "the oldest went first");
        // What was skipped may be pruned again; the rest is held.
        assert_eq!(store.prune(&|_| i64::MAX, 10_000).unwrap().deleted, 400);
        assert!(store.enforce_backlog("nobody", 1).is_err());
    }
}
