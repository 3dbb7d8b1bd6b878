//! History store throughput: acknowledged commits through the store against
//! a bare rusqlite loop writing the same packed chunks into the same table in
//! the same batch size, both WAL with `synchronous=FULL`, on the same disk.
//!
//! ```text
//! cargo run --release -p sensegate-gateway --example store_bench [DIR]
//! ```
//!
//! DIR (default: a temporary directory) should be on the disk the daemon
//! would use: fsync cost is most of what is measured.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a benchmark tool: failing loudly is right, rates are for display"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use sensegate_gateway::pattern::Pattern;
use sensegate_gateway::reading::{Quality, Reading, now_us};
use sensegate_gateway::store::chunk;
use sensegate_gateway::store::sqlite::{Durability, SqliteStore};
use sensegate_gateway::store::writer::{QuerySlots, Retention, StoreHandle};
use sensegate_gateway::store::{HistoryStore, Row};
use tokio_util::sync::CancellationToken;

fn batches(sensor: &str, batch: usize, count: usize) -> Vec<Vec<Reading>> {
    let name: Arc<str> = Arc::from(sensor);
    let base = now_us() - 3_600_000_000;
    (0..count)
        .map(|b| {
            (0..batch)
                .map(|i| Reading {
                    sensor: name.clone(),
                    timestamp_us: base + i64::try_from(b * batch + i).unwrap(),
                    value: 1.5,
                    quality: Quality::Good,
                })
                .collect()
        })
        .collect()
}

/// The baseline: the same schema and packed chunks written by a bare
/// rusqlite loop, one transaction per batch (no writer thread, no id
/// lookup, no sorting).
fn bare(path: &Path, data: &[Vec<Reading>]) -> f64 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE chunks (seq INTEGER PRIMARY KEY AUTOINCREMENT, sensor_id INTEGER NOT NULL,
           first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL, count INTEGER NOT NULL,
           data BLOB NOT NULL);
         CREATE INDEX chunks_by_time ON chunks (sensor_id, first_ts);",
    )
    .unwrap();
    let mut blob = Vec::new();
    let start = Instant::now();
    for batch in data {
        let rows: Vec<Row> = batch
            .iter()
            .map(|r| Row {
                timestamp_us: r.timestamp_us,
                value: r.value,
                quality: r.quality,
            })
            .collect();
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut stmt = conn
                .prepare_cached("INSERT INTO chunks (sensor_id, first_ts, last_ts, count, data) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for run in chunk::runs(&rows) {
                chunk::pack(run, &mut blob);
                stmt.execute(params![
                    1,
                    run[0].timestamp_us,
                    run[run.len() - 1].timestamp_us,
                    i64::try_from(run.len()).unwrap(),
                    &blob[..]
                ])
                .unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    rows(data) / start.elapsed().as_secs_f64()
}

/// The backend alone, without the writer thread: where the time goes.
fn direct(path: &Path, data: &[Vec<Reading>]) -> f64 {
    let store = SqliteStore::open(path, Durability::Full).unwrap();
    let start = Instant::now();
    for batch in data {
        store.write(&[batch]).unwrap();
    }
    rows(data) / start.elapsed().as_secs_f64()
}

fn rows(data: &[Vec<Reading>]) -> f64 {
    data.iter().map(Vec::len).sum::<usize>() as f64
}

/// Through the store: `writers` devices, each committing its batches one
/// after another and waiting for each acknowledgement.
async fn ours(path: &Path, data: Vec<Vec<Reading>>, writers: usize) -> f64 {
    let store: Arc<dyn HistoryStore> = Arc::new(SqliteStore::open(path, Durability::Full).unwrap());
    let stop = CancellationToken::new();
    let retention = Retention {
        default: Duration::from_secs(86_400 * 365),
        rules: vec![(Pattern::new("none"), Duration::from_secs(1))],
        every: Duration::from_secs(3600),
    };
    let h = StoreHandle::start(store, 1_000_000, QuerySlots::default(), retention, &stop);
    let total = rows(&data);
    let mut shares: Vec<Vec<Vec<Reading>>> = (0..writers).map(|_| Vec::new()).collect();
    for (i, b) in data.into_iter().enumerate() {
        shares[i % writers].push(b);
    }
    let start = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let h = h.clone();
            tokio::spawn(async move {
                for b in share {
                    h.commit(b).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = total / start.elapsed().as_secs_f64();
    stop.cancel();
    rate
}

#[tokio::main]
async fn main() {
    let keep = std::env::args_os().nth(1).map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| tmp.path().to_owned());
    println!(
        "| batch | bare rusqlite rows/s | store, 1 device, acked | ratio | store, 8 devices, acked | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for (batch, count) in [(100, 500), (1000, 200)] {
        let run = now_us();
        let b = bare(
            &dir.join(format!("bare-{run}.db")),
            &batches("s", batch, count),
        );
        let d = direct(
            &dir.join(format!("direct-{run}.db")),
            &batches("s", batch, count),
        );
        eprintln!("batch {batch}: backend alone {d:.0} rows/s");
        let one = ours(
            &dir.join(format!("one-{run}.db")),
            batches("s", batch, count),
            1,
        )
        .await;
        let eight = ours(
            &dir.join(format!("eight-{run}.db")),
            batches("s", batch, count),
            8,
        )
        .await;
        println!(
            "| {batch} | {b:.0} | {one:.0} | {:.2} | {eight:.0} | {:.2} |",
            one / b,
            eight / b
        );
    }
}
