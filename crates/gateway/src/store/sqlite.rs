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

use rusqlite::{Connection, OpenFlags, params};

use super::{
    Bucket, History, HistoryError, HistoryErrorKind, HistoryQuery, HistoryStore, PruneStep, Row,
    chunk,
};
use crate::reading::{Quality, Reading};

mod outbox;
pub use outbox::{Backlog, Outgoing, UplinkCursor};

/// One schema migration.
enum Migration {
    /// Statements.
    Sql(&'static str),
    /// A step that moves data, in Rust.
    Code(fn(&Connection) -> Result<(), rusqlite::Error>),
}

/// The migrations, in order; `PRAGMA user_version` records how many ran.
/// Each runs in one transaction with its version update.
const MIGRATIONS: &[Migration] = &[
    // 1: sensors and readings, one row per reading.
    Migration::Sql(
        "CREATE TABLE sensors (
             id   INTEGER PRIMARY KEY,
             name TEXT NOT NULL UNIQUE
         );
         CREATE TABLE readings (
             sensor_id INTEGER NOT NULL,
             ts        INTEGER NOT NULL,
             value     REAL    NOT NULL,
             quality   INTEGER NOT NULL,
             PRIMARY KEY (sensor_id, ts)
         ) WITHOUT ROWID;",
    ),
    // 2: readings packed in chunks, one row per sensor per commit
    // (`chunk`); the rows of 1 are moved into chunks and their table
    // dropped.
    //
    // `seq` is the commit order: AUTOINCREMENT, so a number is never used
    // twice, even after the newest chunks are pruned. No REFERENCES
    // clause: the bundled SQLite enforces foreign keys by default, a lookup
    // per insert; ids are only ever taken from `sensors` by the writer.
    // `data` comes last, so the columns a query filters on are read without
    // the blob's overflow pages.
    Migration::Sql(
        "CREATE TABLE chunks (
             seq       INTEGER PRIMARY KEY AUTOINCREMENT,
             sensor_id INTEGER NOT NULL,
             first_ts  INTEGER NOT NULL,
             last_ts   INTEGER NOT NULL,
             count     INTEGER NOT NULL,
             data      BLOB    NOT NULL
         );
         CREATE INDEX chunks_by_time ON chunks (sensor_id, first_ts);",
    ),
    Migration::Code(rows_into_chunks),
    // 3: the outbox (`outbox`): the gateway's id, made once with this
    // database, and one cursor per uplink.
    Migration::Sql(
        "CREATE TABLE meta (
             key   TEXT PRIMARY KEY,
             value TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE uplinks (
             name      TEXT PRIMARY KEY,
             delivered INTEGER NOT NULL,
             dropped   INTEGER NOT NULL
         ) WITHOUT ROWID;",
    ),
    Migration::Code(|conn| {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('gateway_id', ?1)",
            [outbox::new_gateway_id()?],
        )?;
        Ok(())
    }),
];

/// Migration 2's data step: every row of `readings`, in key order, into
/// chunks; then the table is dropped.
fn rows_into_chunks(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut read =
        conn.prepare("SELECT sensor_id, ts, value, quality FROM readings ORDER BY sensor_id, ts")?;
    let mut rows = read.query([])?;
    let mut sensor = None;
    let mut run: Vec<Row> = Vec::new();
    let mut blob = Vec::new();
    let flush = |sensor: i64, run: &mut Vec<Row>, blob: &mut Vec<u8>| {
        for part in chunk::runs(run) {
            insert_chunk(conn, sensor, part, blob)?;
        }
        run.clear();
        Ok::<_, rusqlite::Error>(())
    };
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if sensor.is_some_and(|s| s != id) || run.len() >= chunk::MAX_ROWS {
            flush(sensor.unwrap_or(id), &mut run, &mut blob)?;
        }
        sensor = Some(id);
        run.push(Row {
            timestamp_us: r.get(1)?,
            value: r.get(2)?,
            quality: quality_from(r.get(3)?),
        });
    }
    if let Some(id) = sensor {
        flush(id, &mut run, &mut blob)?;
    }
    drop(rows);
    drop(read);
    conn.execute_batch("DROP TABLE readings")
}

/// Inserts one run (sorted, one per timestamp, within a chunk's caps) as a
/// chunk of `sensor`.
fn insert_chunk(
    conn: &Connection,
    sensor: i64,
    run: &[Row],
    blob: &mut Vec<u8>,
) -> Result<(), rusqlite::Error> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return Ok(());
    };
    chunk::pack(run, blob);
    conn.prepare_cached(
        "INSERT INTO chunks (sensor_id, first_ts, last_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        sensor,
        first.timestamp_us,
        last.timestamp_us,
        i64::try_from(run.len()).unwrap_or(i64::MAX),
        &blob[..]
    ])?;
    Ok(())
}

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
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.unchecked_transaction().map_err(|e| err(&e))?;
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql),
            Migration::Code(run) => run(&tx),
        }
        .map_err(|e| err(&e))?;
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
    fn prune_sensor(
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

/// Why a query failed.
#[derive(Debug)]
enum Fault {
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
    fn into_error(self) -> HistoryError {
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

fn query(
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
fn claims(
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
fn stored(r: &rusqlite::Row<'_>, from: i64) -> Result<Option<chunk::Stored>, Fault> {
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
