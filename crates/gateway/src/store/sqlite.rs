//! The SQLite backend: one file in the data directory, WAL mode,
//! `synchronous=FULL` by default (an acknowledged reading survives power
//! loss, not only a crash), schema migrations versioned in code.
//!
//! Readings are keyed by (sensor, timestamp) in a `WITHOUT ROWID` table, so
//! a range query for one sensor reads one contiguous run of the primary key.
//! Sensor names are stored once, in `sensors`, and referred to by id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, params};

use super::{
    Bucket, History, HistoryError, HistoryErrorKind, HistoryQuery, HistoryStore, PruneStep, Row,
};
use crate::reading::{Quality, Reading};

/// The migrations, in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: sensors and readings.
    "CREATE TABLE sensors (
         id   INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE
     );
     -- No REFERENCES clause: the bundled SQLite enforces foreign keys by
     -- default, which costs a lookup per inserted row (about a third of the
     -- write time); ids are only ever taken from `sensors` by the writer.
     CREATE TABLE readings (
         sensor_id INTEGER NOT NULL,
         ts        INTEGER NOT NULL,
         value     REAL    NOT NULL,
         quality   INTEGER NOT NULL,
         PRIMARY KEY (sensor_id, ts)
     ) WITHOUT ROWID;",
];

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: survives power loss.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the daemon, may lose the
    /// last commits on power loss.
    Normal,
}

/// Longest a history query may run.
pub const QUERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Most reader connections kept open.
const MAX_READERS: usize = 4;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// Held shared by every query, exclusively by a checkpoint that resets
    /// the WAL: overlapping queries would otherwise always leave a reader
    /// in it, and the WAL would only grow.
    gate: std::sync::RwLock<()>,
    /// When the WAL was last reset.
    last_reset: Mutex<Option<std::time::Instant>>,
}

/// WAL size past which the end of a query resets it (queries wait for the
/// reset, which waits for the queries running: at most their deadline).
pub const WAL_RESET_BYTES: u64 = 4 << 20;
/// Least time between two resets.
const WAL_RESET_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    ids: HashMap<String, i64>,
    /// Pruning carries on after this sensor id (0: from the start).
    prune_after: i64,
}

fn err(e: &rusqlite::Error) -> HistoryError {
    let full = matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull
    );
    HistoryError {
        message: e.to_string(),
        kind: if full {
            HistoryErrorKind::Full
        } else {
            HistoryErrorKind::Failed
        },
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    ///
    /// # Errors
    /// [`HistoryError`] when it cannot be opened, or its schema is newer than
    /// this program's.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, HistoryError> {
        // Create the file private before SQLite opens it, and make its WAL
        // and shared-memory files private as soon as they exist.
        let io = |e: std::io::Error| HistoryError::new(format!("{}: {e}", path.display()));
        crate::file::ensure_private(path).map_err(io)?;
        let conn = Connection::open(path).map_err(|e| err(&e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| err(&e))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            crate::file::ensure_private(Path::new(&side)).map_err(io)?;
        }
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .map_err(|e| err(&e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(&e))?;
        migrate(&conn)?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(Writer {
                conn,
                ids: HashMap::new(),
                prune_after: 0,
            }),
            readers: Mutex::new(Vec::new()),
            gate: std::sync::RwLock::new(()),
            last_reset: Mutex::new(None),
        })
    }

    /// The WAL file's size now (0 when there is none).
    #[must_use]
    pub fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
    }

    /// Resets the WAL when it has grown past [`WAL_RESET_BYTES`]: waits for
    /// the queries running (new ones wait meanwhile), then checkpoints it
    /// whole and truncates it.
    fn reset_wal_if_large(&self) {
        if self.wal_bytes() < WAL_RESET_BYTES {
            return;
        }
        {
            let mut last = self
                .last_reset
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            if last.is_some_and(|t| now.saturating_duration_since(t) < WAL_RESET_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let _no_readers = self
            .gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = w
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "could not reset the history WAL");
        }
    }

    /// A query on a pooled reader connection.
    fn history_now(&self, q: &HistoryQuery) -> Result<History, HistoryError> {
        let conn = self.reader()?;
        // A query that runs past its deadline is interrupted: a long scan
        // must not hold a query slot, or a read snapshot that keeps the WAL
        // from being checkpointed, for long.
        let deadline = std::time::Instant::now() + QUERY_DEADLINE;
        conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline));
        let result = query(&conn, q).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                HistoryError::new(format!(
                    "the query ran over {} s; narrow the range or widen the bucket",
                    QUERY_DEADLINE.as_secs()
                ))
            }
            e => err(&e),
        });
        conn.progress_handler(0, None::<fn() -> bool>);
        self.give_back(conn);
        result
    }

    fn reader(&self) -> Result<Connection, HistoryError> {
        if let Some(c) = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
        {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| err(&e))?;
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| err(&e))?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        let mut pool = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pool.len() < MAX_READERS {
            pool.push(c);
        }
    }
}

fn migrate(conn: &Connection) -> Result<(), HistoryError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| err(&e))?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(HistoryError::new(format!(
            "the database has schema version {version}; this program knows up to {known}"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.unchecked_transaction().map_err(|e| err(&e))?;
        tx.execute_batch(sql).map_err(|e| err(&e))?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
    }
    Ok(())
}

impl Writer {
    fn sensor_id(&mut self, name: &str) -> Result<i64, rusqlite::Error> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO sensors (name) VALUES (?1)")?
            .execute([name])?;
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM sensors WHERE name = ?1")?
            .query_row([name], |r| r.get(0))?;
        self.ids.insert(name.to_owned(), id);
        Ok(id)
    }

    fn write(&mut self, batches: &[&[Reading]]) -> Result<(), rusqlite::Error> {
        self.conn.execute_batch("BEGIN")?;
        let result = self.insert_all(batches);
        let result = result.and_then(|()| self.conn.execute_batch("COMMIT"));
        if result.is_err() {
            // Whatever failed (an insert, or the COMMIT itself on a full or
            // failing disk), leave no transaction open, and forget ids that
            // may have been rolled back with it.
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            self.ids.clear();
        }
        result
    }

    fn insert_all(&mut self, batches: &[&[Reading]]) -> Result<(), rusqlite::Error> {
        // Sensor ids first (a batch is mostly one sensor: the previous
        // reading's name is checked before the map), then one prepared
        // statement for every row.
        let mut ids = Vec::with_capacity(batches.iter().map(|b| b.len()).sum());
        let mut last: Option<(&str, i64)> = None;
        for r in batches.iter().flat_map(|b| b.iter()) {
            let id = match last {
                Some((name, id)) if name == &*r.sensor => id,
                _ => self.sensor_id(&r.sensor)?,
            };
            last = Some((&r.sensor, id));
            ids.push(id);
        }
        let mut insert = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO readings (sensor_id, ts, value, quality) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (r, id) in batches.iter().flat_map(|b| b.iter()).zip(ids) {
            insert.execute(params![
                id,
                r.timestamp_us,
                r.value,
                quality_code(r.quality)
            ])?;
        }
        Ok(())
    }
}

const fn quality_code(q: Quality) -> i64 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
    }
}

const fn quality_from(code: i64) -> Quality {
    match code {
        0 => Quality::Good,
        1 => Quality::Uncertain,
        _ => Quality::Bad,
    }
}

impl HistoryStore for SqliteStore {
    fn write(&self, batches: &[&[Reading]]) -> Result<(), HistoryError> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write(batches)
            .map_err(|e| err(&e))
    }

    fn history(&self, q: &HistoryQuery) -> Result<History, HistoryError> {
        let result = {
            let _reading = self
                .gate
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.history_now(q)
        };
        self.reset_wal_if_large();
        result
    }

    fn wal_bytes(&self) -> Option<u64> {
        Some(SqliteStore::wal_bytes(self))
    }

    fn prune(
        &self,
        cutoff: &dyn Fn(&str) -> i64,
        max_rows: usize,
    ) -> Result<PruneStep, HistoryError> {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.prune(cutoff, max_rows).map_err(|e| err(&e))
    }
}

/// Sensors visited by one pruning step.
const PRUNE_SENSORS_PER_STEP: i64 = 64;

impl Writer {
    /// One pruning step, in one transaction (one fsync): up to
    /// [`PRUNE_SENSORS_PER_STEP`] sensors after the cursor, up to `max_rows`
    /// deleted rows. The cursor carries on from there next step, so every
    /// sensor gets its turn and no step holds the writer for long.
    fn prune(
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
                let left = i64::try_from(max_rows - deleted).unwrap_or(i64::MAX);
                deleted += self
                    .conn
                    .prepare_cached(
                        "DELETE FROM readings WHERE sensor_id = ?1 AND ts IN
                           (SELECT ts FROM readings WHERE sensor_id = ?1 AND ts < ?2 ORDER BY ts LIMIT ?3)",
                    )?
                    .execute(params![id, cutoff(name), left])?;
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

fn query(conn: &Connection, q: &HistoryQuery) -> Result<History, rusqlite::Error> {
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
    // One row past the limit tells whether the answer was cut.
    let fetch = i64::try_from(q.limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut out = History::default();
    if q.bucket_us == 0 {
        let mut stmt = conn.prepare_cached(
            "SELECT ts, value, quality FROM readings
             WHERE sensor_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts LIMIT ?4",
        )?;
        out.rows = stmt
            .query_map(params![id, q.from_us, q.to_us, fetch], |r| {
                Ok(Row {
                    timestamp_us: r.get(0)?,
                    value: r.get(1)?,
                    quality: quality_from(r.get(2)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        out.truncated = out.rows.len() > q.limit;
        out.rows.truncate(q.limit);
    } else {
        // Aggregated here, in index order, rather than by `GROUP BY` (which
        // sorts every row of the range before its LIMIT applies): a bucket
        // is complete when the scan passes its end, and the scan stops at
        // the first bucket past the limit.
        let mut stmt = conn.prepare_cached(
            "SELECT ts, value FROM readings
             WHERE sensor_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts",
        )?;
        let mut rows = stmt.query(params![id, q.from_us, q.to_us])?;
        let mut current: Option<(i64, Bucket, f64)> = None;
        while let Some(r) = rows.next()? {
            let ts: i64 = r.get(0)?;
            let value: f64 = r.get(1)?;
            let b = (ts - q.from_us) / q.bucket_us;
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
    }
    Ok(out)
}

/// A bucket with its mean, from the sum of its values.
#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn finish(mut bucket: Bucket, sum: f64) -> Bucket {
    bucket.mean = sum / bucket.count as f64;
    bucket
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn reading(sensor: &Arc<str>, ts: i64, value: f64) -> Reading {
        Reading {
            sensor: sensor.clone(),
            timestamp_us: ts,
            value,
            quality: Quality::Good,
        }
    }

    fn q(sensor: &str, from: i64, to: i64, bucket: i64, limit: usize) -> HistoryQuery {
        HistoryQuery {
            sensor: sensor.to_owned(),
            from_us: from,
            to_us: to,
            bucket_us: bucket,
            limit,
            owner: String::new(),
        }
    }

    /// The attack: overlapping readers kept the WAL from being reset (it
    /// grew 3.3 MiB in 15 s of overlapping queries while flat without them).
    #[test]
    fn overlapping_queries_do_not_keep_the_wal_from_being_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap());
        let a: Arc<str> = Arc::from("a");
        store.write(&[&[reading(&a, 0, 0.0)]]).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        store.history(&q("a", 0, i64::MAX, 0, 100)).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut peak = 0;
        for chunk in 0..400i64 {
            let batch: Vec<Reading> = (0..1000)
                .map(|i| reading(&a, 1 + chunk * 1000 + i, 1.0))
                .collect();
            store.write(&[&batch]).unwrap();
            peak = peak.max(store.wal_bytes());
        }
        // Readers still overlapping: a query past the threshold resets it
        // (at most once a second).
        let deadline = std::time::Instant::now() + 3 * WAL_RESET_EVERY;
        while store.wal_bytes() >= WAL_RESET_BYTES && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let end = store.wal_bytes();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let queries: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        eprintln!(
            "WAL: peak {} KiB, at the end {} KiB, {queries} queries",
            peak >> 10,
            end >> 10
        );
        assert!(queries > 100, "the readers did not overlap the writes");
        assert!(peak < 4 * WAL_RESET_BYTES, "the WAL grew to {peak} bytes");
        assert!(end < WAL_RESET_BYTES, "the WAL is {end} bytes");
    }

    #[test]
    fn writes_are_read_back_by_range_and_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Full).unwrap();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let batch: Vec<Reading> = (0..100)
            .map(|i| reading(&a, i * 10, f64::from(i32::try_from(i).unwrap())))
            .collect();
        store.write(&[&batch, &[reading(&b, 5, 1.0)]]).unwrap();
        let raw = store.history(&q("a", 100, 200, 0, 1000)).unwrap();
        assert_eq!(raw.rows.len(), 10);
        assert_eq!(raw.rows[0].timestamp_us, 100);
        assert!(!raw.truncated);
        let cut = store.history(&q("a", 0, 1000, 0, 5)).unwrap();
        assert_eq!((cut.rows.len(), cut.truncated), (5, true));
        let buckets = store.history(&q("a", 0, 1000, 250, 100)).unwrap().buckets;
        assert_eq!(buckets.len(), 4);
        assert_eq!((buckets[0].start_us, buckets[0].count), (0, 25));
        assert!((buckets[0].min, buckets[0].max) == (0.0, 24.0));
        assert!((buckets[0].mean - 12.0).abs() < 1e-9);
        assert_eq!(buckets[3].start_us, 750);
        assert!(
            store
                .history(&q("nobody", 0, 10, 0, 10))
                .unwrap()
                .rows
                .is_empty()
        );
        // The same (sensor, timestamp) again replaces the value.
        store.write(&[&[reading(&b, 5, 2.0)]]).unwrap();
        assert!(
            (store.history(&q("b", 0, 10, 0, 10)).unwrap().rows[0].value - 2.0).abs()
                < f64::EPSILON
        );
    }

    #[test]
    fn pruning_deletes_old_rows_in_small_steps_per_sensor_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let rows: Vec<Reading> = (0..50)
            .flat_map(|i| [reading(&a, i, 1.0), reading(&b, i, 1.0)])
            .collect();
        store.write(&[&rows]).unwrap();
        // a keeps from 40 on, b from 10 on.
        let cutoff = |name: &str| if name == "a" { 40 } else { 10 };
        let first = store.prune(&cutoff, 15).unwrap();
        assert_eq!((first.deleted, first.more), (15, true));
        let mut total = 15;
        let mut steps = 1;
        loop {
            let step = store.prune(&cutoff, 15).unwrap();
            total += step.deleted;
            steps += 1;
            if !step.more {
                break;
            }
            assert!(steps < 20, "pruning does not finish");
        }
        assert_eq!(total, 40 + 10);
        assert_eq!(
            store.history(&q("a", 0, 100, 0, 100)).unwrap().rows.len(),
            10
        );
        assert_eq!(
            store.history(&q("b", 0, 100, 0, 100)).unwrap().rows.len(),
            40
        );
    }

    #[test]
    fn a_newer_schema_is_refused_and_reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let a: Arc<str> = Arc::from("a");
        SqliteStore::open(&path, Durability::Full)
            .unwrap()
            .write(&[&[reading(&a, 1, 1.0)]])
            .unwrap();
        let again = SqliteStore::open(&path, Durability::Full).unwrap();
        assert_eq!(again.history(&q("a", 0, 10, 0, 10)).unwrap().rows.len(), 1);
        drop(again);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = SqliteStore::open(&path, Durability::Full).unwrap_err();
        assert!(e.message.contains("schema version 99"), "{e}");
    }
}
