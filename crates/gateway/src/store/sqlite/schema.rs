//! The history database's schema, versioned in code: each migration runs
//! once, in its own transaction, and `user_version` says how far a file
//! has come; a file from a newer program is refused.

use rusqlite::{Connection, params};

use super::err;
use crate::store::{HistoryError, Row, chunk};

/// One schema migration.
pub(super) enum Migration {
    /// Statements.
    Sql(&'static str),
    /// A step that moves data, in Rust.
    Code(fn(&Connection) -> Result<(), rusqlite::Error>),
}

/// The migrations, in order; `PRAGMA user_version` records how many ran.
/// Each runs in one transaction with its version update.
pub(super) const MIGRATIONS: &[Migration] = &[
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
            [super::outbox::new_gateway_id()?],
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
            quality: super::quality_from(r.get(3)?),
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
pub(super) fn insert_chunk(
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

pub(super) fn migrate(conn: &Connection) -> Result<(), HistoryError> {
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
