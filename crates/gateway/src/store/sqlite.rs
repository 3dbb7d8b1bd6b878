//! The SQLite backend: one file in the data directory, WAL mode,
//! `synchronous=FULL` by default (an acknowledged reading survives power
//! loss, not only a crash), schema migrations versioned in code.
//!
//! Readings are packed in chunks ([`chunk`]): one row per sensor per commit
//! (cut at 4,096 readings or an hour), numbered in commit order by `seq`,
//! indexed by (sensor, first timestamp), so a range query for one sensor
//! reads one contiguous run of the index and a commit writes a few rows
//! however many readings it holds. Sensor names are stored once, in
//! `sensors`, and referred to by id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::{
    History, HistoryError, HistoryErrorKind, HistoryQuery, HistoryStore, PruneStep, Row, chunk,
};
use crate::reading::{Quality, Reading};

mod outbox;
mod prune;
mod query;
mod schema;
pub use outbox::{Backlog, Outgoing, UplinkCursor};
use query::{Fault, query, stored};
#[cfg(test)]
use schema::{MIGRATIONS, Migration};
use schema::{insert_chunk, migrate};

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
    /// The gateway's id (`outbox`).
    gateway_id: String,
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
    /// Buffers a commit reuses: every reading keyed by sensor id, one
    /// sensor's run, one chunk's blob.
    keyed: Vec<(i64, Row)>,
    run: Vec<Row>,
    blob: Vec<u8>,
    /// Retention deletes no chunk after this sequence number: what every
    /// uplink has had confirmed (`outbox`).
    hold: i64,
}

/// Readings a commit's buffers keep room for between commits.
const MAX_KEPT: usize = 1 << 16;

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
        let gateway_id: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'gateway_id'", [], |r| {
                r.get(0)
            })
            .map_err(|e| err(&e))?;
        let hold = outbox::hold(&outbox::cursors(&conn).map_err(|e| err(&e))?);
        Ok(Self {
            gateway_id,
            path: path.to_owned(),
            writer: Mutex::new(Writer {
                conn,
                ids: HashMap::new(),
                prune_after: 0,
                keyed: Vec::new(),
                run: Vec::new(),
                blob: Vec::new(),
                hold,
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

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A query on a pooled reader connection.
    fn history_now(&self, q: &HistoryQuery) -> Result<History, HistoryError> {
        let conn = self.reader()?;
        // A query that runs past its deadline is interrupted: a long scan
        // must not hold a query slot, or a read snapshot that keeps the WAL
        // from being checkpointed, for long.
        let deadline = std::time::Instant::now() + QUERY_DEADLINE;
        conn.progress_handler(10_000, Some(move || std::time::Instant::now() > deadline));
        let result = query(&conn, q, deadline).map_err(Fault::into_error);
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
        // reading's name is checked before the map), then every reading
        // keyed by (sensor, time), sorted (stable: for one key the last
        // written is last), and one chunk per run of a sensor.
        let mut keyed = std::mem::take(&mut self.keyed);
        keyed.clear();
        keyed.reserve(batches.iter().map(|b| b.len()).sum());
        let mut last: Option<(&str, i64)> = None;
        for r in batches.iter().flat_map(|b| b.iter()) {
            let id = match last {
                Some((name, id)) if name == &*r.sensor => id,
                _ => self.sensor_id(&r.sensor)?,
            };
            last = Some((&r.sensor, id));
            keyed.push((
                id,
                Row {
                    timestamp_us: r.timestamp_us,
                    value: r.value,
                    quality: r.quality,
                },
            ));
        }
        keyed.sort_by_key(|(id, r)| (*id, r.timestamp_us));
        let mut run = std::mem::take(&mut self.run);
        let mut blob = std::mem::take(&mut self.blob);
        let result = (|| {
            for group in keyed.chunk_by(|a, b| a.0 == b.0) {
                run.clear();
                for (_, r) in group {
                    match run.last_mut() {
                        Some(prev) if prev.timestamp_us == r.timestamp_us => *prev = *r,
                        _ => run.push(*r),
                    }
                }
                for part in chunk::runs(&run) {
                    insert_chunk(&self.conn, group[0].0, part, &mut blob)?;
                }
            }
            Ok(())
        })();
        // Kept for the next commit, unless a burst made them large.
        if keyed.capacity() > MAX_KEPT {
            keyed = Vec::new();
        }
        if run.capacity() > MAX_KEPT {
            run = Vec::new();
        }
        self.keyed = keyed;
        self.run = run;
        self.blob = blob;
        result
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;
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

    /// A database of schema 1 (one row per reading) is moved into chunks
    /// on open, every reading kept.
    #[test]
    fn a_version_1_database_is_migrated_into_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        {
            let conn = Connection::open(&path).unwrap();
            let Migration::Sql(v1) = MIGRATIONS[0] else {
                unreachable!()
            };
            conn.execute_batch(v1).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch("INSERT INTO sensors (id, name) VALUES (1, 'a'), (2, 'b')")
                .unwrap();
            let mut ins = conn
                .prepare("INSERT INTO readings VALUES (?1, ?2, ?3, ?4)")
                .unwrap();
            // 10,000 readings of a (three chunks by count), and b's spread
            // over two hours (two chunks by span).
            conn.execute_batch("BEGIN").unwrap();
            for i in 0..10_000i64 {
                ins.execute(params![1, i, 1.0, 0]).unwrap();
            }
            for h in 0..3i64 {
                ins.execute(params![2, h * chunk::MAX_SPAN_US, 2.0, 2])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        let a = store.history(&q("a", 0, i64::MAX, 0, 20_000)).unwrap();
        assert_eq!(a.rows.len(), 10_000);
        assert!(
            a.rows
                .windows(2)
                .all(|w| w[0].timestamp_us + 1 == w[1].timestamp_us)
        );
        let b = store.history(&q("b", 0, i64::MAX, 0, 10)).unwrap();
        assert_eq!(b.rows.len(), 3);
        assert_eq!(b.rows[2].quality, Quality::Bad);
        let conn = Connection::open(&path).unwrap();
        let (chunks, tables): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM chunks),
                        (SELECT COUNT(*) FROM sqlite_master WHERE name = 'readings')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((chunks, tables), (3 + 2, 0));
    }

    /// Pruning a chunk that straddles the cutoff keeps its newer readings.
    #[test]
    fn pruning_rewrites_a_chunk_that_straddles_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
        let a: Arc<str> = Arc::from("a");
        let rows: Vec<Reading> = (0..100).map(|i| reading(&a, i, 1.0)).collect();
        store.write(&[&rows]).unwrap();
        let step = store.prune(&|_| 30, 1000).unwrap();
        assert_eq!(step.deleted, 30);
        let left = store.history(&q("a", 0, 1000, 0, 1000)).unwrap().rows;
        assert_eq!(left.len(), 70);
        assert_eq!(left[0].timestamp_us, 30);
        // Nothing older is left to prune.
        assert_eq!(store.prune(&|_| 30, 1000).unwrap().deleted, 0);
        assert_eq!(store.prune(&|_| 1000, 1000).unwrap().deleted, 70);
        let conn = Connection::open(dir.path().join("h.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    /// A damaged chunk (a blob that does not decode, columns of the wrong
    /// type, claims no writer makes: a count of -1 over a 10 MB blob, a span
    /// of two hours) is a clear query error, other sensors are served, and
    /// pruning goes on past it: one row of the wrong type once stopped
    /// retention for every sensor.
    #[test]
    fn a_damaged_chunk_is_refused_by_queries_and_skipped_by_pruning() {
        for damage in [
            "data = X'ff'",
            "count = 'x'",
            "data = 5",
            "first_ts = 1.5",
            "count = -1, data = zeroblob(10000000)",
            "last_ts = first_ts + 7200000000",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("h.db");
            let store = SqliteStore::open(&path, Durability::Normal).unwrap();
            let a: Arc<str> = Arc::from("a");
            let b: Arc<str> = Arc::from("b");
            let rows: Vec<Reading> = (0..10).map(|i| reading(&a, i, 1.0)).collect();
            store.write(&[&rows, &[reading(&b, 1, 1.0)]]).unwrap();
            Connection::open(&path)
                .unwrap()
                .execute_batch(&format!(
                    "UPDATE chunks SET {damage} WHERE sensor_id = (SELECT id FROM sensors WHERE name = 'a')"
                ))
                .unwrap();
            let e = store.history(&q("a", 0, 100, 0, 100)).unwrap_err();
            assert!(e.message.contains("damaged"), "{damage}: {e}");
            let others = store.history(&q("b", 0, 100, 0, 100)).unwrap();
            assert_eq!(others.rows.len(), 1, "{damage}");
            let step = store.prune(&|_| 5, 1000).unwrap();
            assert_eq!(step.deleted, 1, "{damage}: b's old reading is pruned");
        }
    }

    /// A bucketed query from the earliest time there is does not overflow.
    #[test]
    fn a_bucketed_query_from_the_earliest_time_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
        let a: Arc<str> = Arc::from("a");
        store.write(&[&[reading(&a, 5, 1.0)]]).unwrap();
        let buckets = store
            .history(&q("a", i64::MIN, i64::MAX, i64::MAX, 10))
            .unwrap()
            .buckets;
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].count, 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any sequence of commits (overlapping, out of order, rewriting
        /// timestamps) and prunes reads back as a map of the last write of
        /// each timestamp: raw with any limit and bucketed.
        #[test]
        fn history_reads_back_as_the_last_write_of_each_timestamp(
            commits in proptest::collection::vec(
                (proptest::collection::vec((0i64..20_000, -1000i32..1000), 1..300), 0u8..4),
                1..12,
            ),
            from in 0i64..10_000,
            len in 1i64..20_000,
            limit in 1usize..400,
            bucket in 1i64..5_000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("h.db"), Durability::Normal).unwrap();
            let a: Arc<str> = Arc::from("a");
            let mut model = std::collections::BTreeMap::new();
            for (i, (points, prune)) in commits.iter().enumerate() {
                // Spread over more than a chunk's span now and then.
                let scale = if i % 3 == 0 { chunk::MAX_SPAN_US / 5_000 } else { 1 };
                let batch: Vec<Reading> = points
                    .iter()
                    .map(|&(t, v)| reading(&a, t * scale, f64::from(v)))
                    .collect();
                store.write(&[&batch]).unwrap();
                for r in &batch {
                    model.insert(r.timestamp_us, r.value);
                }
                if *prune == 0 {
                    let cutoff = i64::from(u8::try_from(i).unwrap()) * 100;
                    while store.prune(&|_| cutoff, 50).unwrap().more {}
                    model.retain(|&t, _| t >= cutoff);
                }
            }
            let to = from.saturating_add(len * chunk::MAX_SPAN_US / 5_000);
            let want: Vec<(i64, f64)> = model.range(from..to).map(|(&t, &v)| (t, v)).collect();
            let raw = store.history(&q("a", from, to, 0, limit)).unwrap();
            let got: Vec<(i64, f64)> = raw.rows.iter().map(|r| (r.timestamp_us, r.value)).collect();
            proptest::prop_assert_eq!(&got[..], &want[..want.len().min(limit)]);
            proptest::prop_assert_eq!(raw.truncated, want.len() > limit);
            let width = bucket * 1000;
            let buckets = store.history(&q("a", from, to, width, limit)).unwrap().buckets;
            let mut expect: Vec<(i64, u64, f64)> = Vec::new();
            for &(t, v) in &want {
                let start = from + (t - from) / width * width;
                match expect.last_mut() {
                    Some((s, n, sum)) if *s == start => {
                        *n += 1;
                        *sum += v;
                    }
                    _ => expect.push((start, 1, v)),
                }
            }
            expect.truncate(limit);
            let got: Vec<(i64, u64)> = buckets.iter().map(|b| (b.start_us, b.count)).collect();
            let exp: Vec<(i64, u64)> = expect.iter().map(|e| (e.0, e.1)).collect();
            proptest::prop_assert_eq!(got, exp);
        }
    }
}
