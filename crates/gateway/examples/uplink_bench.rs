//! The PostgreSQL uplink against a bare tokio-postgres loop, on one server,
//! in one run (`bench/compare-uplink.sh` makes the server and runs this).
//!
//! - **bare**: one connection (the uplink's own connector: TLS, the frame
//!   cap), and batches of `BATCH` rows in one transaction each: binary COPY
//!   into a temporary staging table, then `INSERT .. ON CONFLICT DO
//!   NOTHING` into a month-partitioned table of the uplink's shape. The rows
//!   are made in memory beforehand.
//! - **uplink**: the same readings committed to a local history first (not
//!   timed), then the uplink task from its cursor to the last commit: outbox
//!   reads, sensor ids, partitions, the same transaction, the cursor
//!   confirmed after each.
//! - **lag**: readings committed at a steady rate (`RATE` a second, in
//!   commits every 10 ms) while the uplink runs; for each commit, the time
//!   until the uplink had it confirmed.
//!
//! - **mqtt** (`UPLINK_BENCH=mqtt`, from `bench/compare-uplink-mqtt.sh`):
//!   the MQTT uplink from its cursor to the last of `ROWS` readings
//!   committed beforehand, against a broker (TLS, a client certificate);
//!   its baseline, a bare rumqttc loop, is `bench/mqtt-baseline`.
//!
//! ```text
//! PGPORT=.. PGUSER=.. PGPASSWORD_FILE=.. PGCA=.. \
//!   cargo run --release -p sensegate-gateway --example uplink_bench
//! UPLINK_BENCH=mqtt MQTT_PORT=.. MQTT_CA=.. MQTT_CERT=.. MQTT_KEY=.. \
//!   cargo run --release -p sensegate-gateway --example uplink_bench
//! ```
//! Environment: `ROWS` (default 1,000,000), `BATCH` (5,000), `RATE`
//! (10,000), `LAG_SECS` (20).
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "a benchmark tool: failing loudly is right, rates are for display"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sensegate_gateway::reading::{Quality, Reading, now_us};
use sensegate_gateway::store::HistoryStore as _;
use sensegate_gateway::store::sqlite::{Durability, SqliteStore};
use sensegate_gateway::uplink::mqtt::{MqttUplinkConfig, TopicTemplate};
use sensegate_gateway::uplink::postgres::{Gateway, PgConfig, Schema, SyncCommit, connect_client};
use sensegate_gateway::uplink::{Target, TlsClient, UplinkConfig, UplinkStats};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_util::sync::CancellationToken;

const SENSORS: usize = 10;

fn env(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pg_config(table: &str) -> PgConfig {
    PgConfig {
        host: "127.0.0.1".to_owned(),
        port: std::env::var("PGPORT").unwrap().parse().unwrap(),
        user: std::env::var("PGUSER").unwrap(),
        dbname: std::env::var("PGUSER").unwrap(),
        password_file: Some(PathBuf::from(std::env::var("PGPASSWORD_FILE").unwrap())),
        tls: Some(TlsClient {
            ca_file: PathBuf::from(std::env::var("PGCA").unwrap()),
            client_cert: None,
        }),
        table: table.to_owned(),
        schema: Schema::Create,
        partitions: true,
        synchronous_commit: SyncCommit::On,
        max_message_bytes: 1 << 20,
    }
}

/// One commit: `per_sensor` readings of each sensor, from `start` µs.
fn commit(names: &[Arc<str>], start: i64, per_sensor: usize) -> Vec<Reading> {
    names
        .iter()
        .flat_map(|n| {
            (0..per_sensor).map(move |i| Reading {
                sensor: n.clone(),
                timestamp_us: start + i as i64,
                value: 21.5,
                quality: Quality::Good,
            })
        })
        .collect()
}

fn names(prefix: &str) -> Vec<Arc<str>> {
    (0..SENSORS)
        .map(|i| Arc::from(format!("{prefix}/s{i}")))
        .collect()
}

/// The baseline: rows/s of the bare loop.
async fn bare(rows: usize, batch: usize, base: i64) -> f64 {
    let c = pg_config("bare_readings");
    let (client, _driver) = connect_client(&c, "bare loop").await.unwrap();
    let month = sensegate_gateway::uplink::postgres::month_of(base);
    let (y, m) = (month / 12, month % 12 + 1);
    let (ny, nm) = ((month + 1) / 12, (month + 1) % 12 + 1);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS bare_readings;
             CREATE TABLE bare_readings (time timestamptz NOT NULL, gateway uuid NOT NULL,
               sensor integer NOT NULL, value double precision NOT NULL, quality smallint NOT NULL,
               PRIMARY KEY (gateway, sensor, time)) PARTITION BY RANGE (time);
             CREATE TABLE bare_readings_default PARTITION OF bare_readings DEFAULT;
             CREATE TABLE bare_readings_p PARTITION OF bare_readings
               FOR VALUES FROM ('{y:04}-{m:02}-01 00:00:00+00') TO ('{ny:04}-{nm:02}-01 00:00:00+00');
             CREATE TEMP TABLE staging (us bigint NOT NULL, sensor integer NOT NULL,
               value double precision NOT NULL, quality smallint NOT NULL) ON COMMIT DELETE ROWS;"
        ))
        .await
        .unwrap();
    let gateway = "0b7e4a5c-1d2f-4e3a-9b8c-7d6e5f4a3b2c".to_owned();
    // Made beforehand: (µs, sensor id) of every row, batch by batch.
    let per_sensor = batch / SENSORS;
    let data: Vec<Vec<(i64, i32)>> = (0..rows / batch)
        .map(|b| {
            (0..SENSORS)
                .flat_map(|s| {
                    (0..per_sensor).map(move |i| (base + (b * per_sensor + i) as i64, s as i32 + 1))
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut client = client;
    for rows in &data {
        let tx = client.transaction().await.unwrap();
        let sink = tx
            .copy_in("COPY staging (us, sensor, value, quality) FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT4, Type::FLOAT8, Type::INT2]);
        let mut writer = std::pin::pin!(writer);
        for (us, sensor) in rows {
            let row: [&(dyn ToSql + Sync); 4] = [us, sensor, &21.5f64, &0i16];
            writer.as_mut().write(&row).await.unwrap();
        }
        writer.as_mut().finish().await.unwrap();
        tx.execute(
            "INSERT INTO bare_readings (time, gateway, sensor, value, quality)
             SELECT timestamptz 'epoch' + us * interval '1 microsecond', $1::text::uuid,
                    sensor, value, quality FROM staging ON CONFLICT DO NOTHING",
            &[&gateway],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    (data.len() * batch) as f64 / started.elapsed().as_secs_f64()
}

fn uplink_config(table: &str, batch: usize) -> UplinkConfig {
    settings(Target::Postgres(pg_config(table)), batch)
}

fn settings(target: Target, batch: usize) -> UplinkConfig {
    UplinkConfig {
        name: "bench".to_owned(),
        target,
        batch_readings: batch,
        max_backlog_rows: 100_000_000,
        max_rows_per_sec: 100_000_000,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        timeout: Duration::from_secs(30),
    }
}

fn gateway_of(store: &SqliteStore) -> Gateway {
    Gateway {
        id: store.gateway_id().to_owned(),
        name: "bench".to_owned(),
    }
}

fn max_seq(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM chunks", [], |r| r.get(0))
        .unwrap()
}

/// The uplink from its cursor to the last of `rows` readings: rows/s.
async fn uplink(rows: usize, batch: usize, base: i64) -> f64 {
    drain(uplink_config("uplink_readings", batch), rows, batch, base).await
}

/// The MQTT uplink's settings for the broker the environment names.
fn mqtt_config(batch: usize) -> UplinkConfig {
    settings(
        Target::Mqtt(MqttUplinkConfig {
            host: "127.0.0.1".to_owned(),
            port: std::env::var("MQTT_PORT").unwrap().parse().unwrap(),
            tls: Some(TlsClient {
                ca_file: PathBuf::from(std::env::var("MQTT_CA").unwrap()),
                client_cert: Some((
                    PathBuf::from(std::env::var("MQTT_CERT").unwrap()),
                    PathBuf::from(std::env::var("MQTT_KEY").unwrap()),
                )),
            }),
            client_id: Some("bench-uplink".to_owned()),
            username: None,
            password_file: None,
            topic: TopicTemplate::parse("sensegate/{gateway}/{sensor}").unwrap(),
            payload: sensegate_gateway::mqtt::PayloadFormat::Json,
            max_inflight: u16::try_from(env("INFLIGHT", 64)).unwrap(),
            keep_alive: Duration::from_secs(30),
            max_packet_bytes: 64 << 10,
        }),
        batch,
    )
}

/// `config`'s uplink from its cursor to the last of `rows` readings
/// committed beforehand: rows/s.
async fn drain(config: UplinkConfig, rows: usize, batch: usize, base: i64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    // The daemon's default: each confirmation is fsync'd.
    let store = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
    let names = names("bench");
    let per_sensor = batch / SENSORS;
    for b in 0..rows / batch {
        let c = commit(&names, base + (b * per_sensor) as i64, per_sensor);
        store.write(&[&c]).unwrap();
    }
    let last = max_seq(&path);
    store.attach_uplinks(&["bench"]).unwrap();
    let stats = Arc::new(UplinkStats::new("bench", "postgres"));
    let stop = CancellationToken::new();
    let gateway = gateway_of(&store);
    let started = Instant::now();
    let task = tokio::spawn(sensegate_gateway::uplink::run(
        config,
        store.clone(),
        stats.clone(),
        gateway,
        stop.clone(),
    ));
    while stats.figures().delivered_seq < last {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = (rows / batch * batch) as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap();
    rate
}

/// Readings at `rate` a second for `secs`: each commit's time until the
/// uplink had it confirmed, sorted.
async fn lag(rate: usize, secs: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let store = Arc::new(SqliteStore::open(&path, Durability::Full).unwrap());
    store.attach_uplinks(&["bench"]).unwrap();
    let stats = Arc::new(UplinkStats::new("bench", "postgres"));
    let stop = CancellationToken::new();
    let gateway = gateway_of(&store);
    let task = tokio::spawn(sensegate_gateway::uplink::run(
        uplink_config("lag_readings", 5000),
        store.clone(),
        stats.clone(),
        gateway,
        stop.clone(),
    ));
    let names = names("lag");
    let per_commit = rate / 100;
    let per_sensor = (per_commit / SENSORS).max(1);
    let reader = rusqlite::Connection::open(&path).unwrap();
    let mut pending: std::collections::VecDeque<(Instant, i64)> = std::collections::VecDeque::new();
    let mut lags = Vec::new();
    let start = Instant::now();
    let mut next = start;
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(secs as u64) || !pending.is_empty() {
        let now = Instant::now();
        if now >= next && start.elapsed() < Duration::from_secs(secs as u64) {
            let c = commit(&names, now_us() + (n * per_sensor) as i64, per_sensor);
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.write(&[&c]).unwrap())
                .await
                .unwrap();
            let seq: i64 = reader
                .query_row("SELECT MAX(seq) FROM chunks", [], |r| r.get(0))
                .unwrap();
            pending.push_back((Instant::now(), seq));
            n += 1;
            next += Duration::from_millis(10);
        }
        let delivered = stats.figures().delivered_seq;
        while pending.front().is_some_and(|(_, s)| *s <= delivered) {
            let (t, _) = pending.pop_front().unwrap();
            lags.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.cancel();
    task.await.unwrap();
    lags.sort();
    lags
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env("ROWS", 1_000_000);
    let batch = env("BATCH", 5000);
    let base = now_us() - 3_600_000_000;
    if std::env::var("UPLINK_BENCH").as_deref() == Ok("mqtt") {
        let rate = drain(mqtt_config(batch), rows, batch, base).await;
        println!("mqtt uplink: {rows} readings, {rate:.0} acknowledged/s");
        return;
    }
    let baseline = bare(rows, batch, base).await;
    let measured = uplink(rows, batch, base).await;
    println!(
        "throughput: bare loop {baseline:.0} rows/s, uplink {measured:.0} rows/s, ratio {:.2}",
        measured / baseline
    );
    let rate = env("RATE", 10_000);
    let lags = lag(rate, env("LAG_SECS", 20)).await;
    let pct = |p: f64| lags[((lags.len() - 1) as f64 * p) as usize];
    println!(
        "lag at {rate} readings/s over {} commits: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        pct(0.50),
        pct(0.99),
        lags.last().unwrap()
    );
}
