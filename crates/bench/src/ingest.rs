//! The ingest scenario: M devices (each with a device token of its own)
//! each push batches of B readings to sensors of their own and wait for each acknowledgement (which sensegate
//! gives once the batch is committed to history). Reports committed
//! readings per second and acknowledgement latency.

use std::time::{Duration, Instant};

use anyhow::Result;
use sensegate_client::Secret;
use sensegate_client::wire as v1;
use serde::Serialize;

use crate::latency::{Acks, Latency, gather};
use crate::process::{Process, Usage, Watch};
use crate::target::Target;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Ingested {
    /// Devices pushing at once.
    pub devices: usize,
    /// Readings per push.
    pub batch: usize,
    /// Readings acknowledged per second.
    pub committed_per_sec: f64,
    /// Acknowledgement latency, milliseconds.
    pub ack_p50_ms: f64,
    /// 99th percentile.
    pub ack_p99_ms: f64,
    /// Largest.
    pub ack_max_ms: f64,
    /// Server CPU, cores.
    pub cpu_cores: f64,
    /// Server peak RSS, MiB.
    pub peak_rss_mib: f64,
}

/// Runs it for `duration`.
///
/// # Errors
/// A device could not connect, or a push was refused.
pub async fn run(
    target: &Target,
    devices: usize,
    batch: usize,
    duration: Duration,
    process: Option<Process>,
) -> Result<Ingested> {
    // Each device gets a device token of its own, scoped to its sensor, as
    // real devices would: its own push-rate budget, the scope check on
    // every reading.
    let mut admin = target.sensegate(0, "bench-ingest-admin").await?;
    let mut clients = Vec::with_capacity(devices);
    for i in 0..devices {
        let created = admin
            .create_token(
                &format!("bench-ingest-{i}"),
                v1::Role::Device,
                &format!("bench/ingest-{i}"),
            )
            .await?;
        let device = target.with_token(Secret::new(created.secret));
        clients.push(device.sensegate(i, "bench-ingest").await?);
    }
    let watch = Watch::start(process);
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::with_capacity(devices);
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let sensor = format!("bench/ingest-{i}");
            let mut latency = Latency::default();
            let mut committed = 0u64;
            let mut ts = crate::now_us();
            while Instant::now() < until {
                let readings: Vec<v1::Reading> = (0..batch)
                    .map(|_| {
                        ts += 1;
                        v1::Reading {
                            sensor: sensor.clone(),
                            timestamp_us: ts,
                            value: 1.0,
                            quality: 0,
                        }
                    })
                    .collect();
                let sent = Instant::now();
                let accepted = c.push(readings).await?;
                latency.record(i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX));
                committed += u64::from(accepted);
            }
            anyhow::Ok((committed, latency))
        }));
    }
    let (committed, latency) = gather(tasks, "a device task").await?;
    let acks = Acks::of(committed, &latency, started.elapsed().as_secs_f64());
    Ok(Ingested::new(devices, batch, acks, &watch.finish()))
}

impl Ingested {
    /// Its figures as the cells of a Markdown table row, after the
    /// leading `|`: devices, batch, committed/s, ack p50, p99 and max ms,
    /// server CPU, server peak RSS MiB.
    #[must_use]
    pub fn cells(&self) -> String {
        format!(
            " {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            self.devices,
            self.batch,
            self.committed_per_sec,
            self.ack_p50_ms,
            self.ack_p99_ms,
            self.ack_max_ms,
            self.cpu_cores,
            self.peak_rss_mib
        )
    }

    /// The row of `devices` pushing batches of `batch`.
    #[must_use]
    pub const fn new(devices: usize, batch: usize, acks: Acks, usage: &Usage) -> Self {
        Self {
            devices,
            batch,
            committed_per_sec: acks.per_sec,
            ack_p50_ms: acks.p50_ms,
            ack_p99_ms: acks.p99_ms,
            ack_max_ms: acks.max_ms,
            cpu_cores: usage.cpu_cores,
            peak_rss_mib: usage.peak_rss_mib,
        }
    }
}
