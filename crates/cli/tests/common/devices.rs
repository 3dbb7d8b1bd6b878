//! Devices that push readings to a gateway under test, recording what was
//! acknowledged (what must arrive centrally).
#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test code; each test file uses part of it"
)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sensegate_client::wire as v1;
use sensegate_client::{Client, ConnectOptions, Secret};

use super::Gateway;

pub type Acked = Arc<Mutex<BTreeSet<(String, i64)>>>;

/// Devices pushing batches of 100 readings, recording what was
/// acknowledged, until `batches` each or a failure.
pub struct Devices {
    acked: Acked,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub const BATCH: i64 = 100;

pub async fn device_secret(gw: &Gateway) -> Secret {
    let mut admin = gw.client().await;
    let created = admin
        .create_token("devices", v1::Role::Device, "dev/*")
        .await
        .unwrap();
    Secret::new(created.secret)
}

impl Devices {
    pub fn start(addr: &str, secret: &Secret, devices: usize, batches: i64, base: i64) -> Self {
        let acked: Acked = Arc::default();
        let tasks = (0..devices)
            .map(|d| {
                let mut o = ConnectOptions::plain(addr.to_owned(), secret.clone());
                o.timeout = Duration::from_secs(5);
                let acked = acked.clone();
                tokio::spawn(async move {
                    let Ok(mut c) = Client::connect(&o).await else {
                        return;
                    };
                    let sensor = format!("dev/d{d}");
                    for n in 0..batches {
                        let readings: Vec<v1::Reading> = (0..BATCH)
                            .map(|i| v1::Reading {
                                sensor: sensor.clone(),
                                timestamp_us: base + n * BATCH + i,
                                value: f64::from(u32::try_from(i).unwrap()),
                                quality: v1::Quality::Good.into(),
                            })
                            .collect();
                        if c.push(readings).await.is_err() {
                            return;
                        }
                        acked
                            .lock()
                            .unwrap()
                            .extend((0..BATCH).map(|i| (sensor.clone(), base + n * BATCH + i)));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Self { acked, tasks }
    }

    pub async fn finish(self) -> BTreeSet<(String, i64)> {
        for t in self.tasks {
            t.await.unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Recent readings (retention must not touch them).
pub fn base() -> i64 {
    sensegate_gateway::reading::now_us() - 600_000_000
}

/// How long after the upload is under way a fault lands: up to `max_ms`,
/// from a seed (`SENSEGATE_FAULT_SEED`, or a fresh one) printed with the
/// test's name, so a failing run can be replayed with the same timing.
pub fn fault_delay(test: &str, max_ms: u64) -> Duration {
    let seed: u64 = std::env::var("SENSEGATE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::from(d.subsec_nanos()) ^ d.as_secs())
        });
    // splitmix64 over the seed and the test's name.
    let mut z = test
        .bytes()
        .fold(seed, |h, b| h.rotate_left(5) ^ u64::from(b))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let ms = z % (max_ms + 1);
    eprintln!("{test}: SENSEGATE_FAULT_SEED={seed} puts the fault {ms} ms in");
    Duration::from_millis(ms)
}
