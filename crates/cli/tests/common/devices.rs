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
