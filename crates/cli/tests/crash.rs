//! Crash safety: the daemon is killed with SIGKILL while devices push;
//! after a restart every acknowledged reading is in history and the
//! database passes SQLite's integrity check.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Gateway;
use sensegate_client::wire as v1;
use sensegate_client::{Client, ConnectOptions, Secret};

const DEVICES: usize = 8;
const BATCH: i64 = 100;
/// No push-rate cap in the way: the writer must be busy when the kill lands,
/// so acknowledging before the commit would lose readings.
const CONFIG: &str = "[limits]\npush_rate_per_sec = 10000000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_reading_survives_sigkill() {
    let gw = Gateway::start(CONFIG);
    let mut admin = gw.client().await;
    let created = admin
        .create_token("devices", v1::Role::Device, "dev/*")
        .await
        .unwrap();
    let secret = Secret::new(created.secret);
    let acked: Arc<Mutex<BTreeSet<(String, i64)>>> = Arc::default();
    let base = sensegate_gateway::reading::now_us() - 60_000_000;
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let mut o = ConnectOptions::plain(gw.addr.clone(), secret.clone());
        o.timeout = Duration::from_secs(5);
        let acked = acked.clone();
        devices.push(tokio::spawn(async move {
            let Ok(mut c) = Client::connect(&o).await else {
                return;
            };
            let sensor = format!("dev/d{d}");
            for n in 0.. {
                let readings: Vec<v1::Reading> = (0..BATCH)
                    .map(|i| v1::Reading {
                        sensor: sensor.clone(),
                        timestamp_us: base + n * BATCH + i,
                        value: 1.0,
                        quality: v1::Quality::Good.into(),
                    })
                    .collect();
                // Acknowledged means durable: only then is it recorded.
                if c.push(readings).await.is_err() {
                    return;
                }
                let mut a = acked.lock().unwrap();
                for i in 0..BATCH {
                    a.insert((sensor.clone(), base + n * BATCH + i));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dir = gw.kill();
    for d in devices {
        let _ = d.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "only {} readings acknowledged before the kill",
        acked.len()
    );

    let gw = Gateway::start_in(dir, CONFIG);
    let mut c = gw.client().await;
    let mut found = BTreeSet::new();
    for d in 0..DEVICES {
        let sensor = format!("dev/d{d}");
        // Page through the range, the reply cap at a time.
        let mut from = base;
        loop {
            let h = c
                .history(&sensor, from, base + 1_000_000_000, 0, 0)
                .await
                .unwrap();
            for r in &h.readings {
                found.insert((sensor.clone(), r.timestamp_us));
            }
            match (h.truncated, h.readings.last()) {
                (true, Some(last)) => from = last.timestamp_us + 1,
                _ => break,
            }
        }
    }
    let missing: Vec<_> = acked.difference(&found).take(5).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but lost after SIGKILL: {missing:?} ({} acked)",
        acked.len()
    );
    eprintln!(
        "{} acknowledged readings, all present after SIGKILL and restart",
        acked.len()
    );
    let db = gw.dir.path().join("data/history.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
