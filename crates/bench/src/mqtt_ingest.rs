//! The MQTT ingest scenario: P publishers, each keeping W QoS 1 publishes
//! unacknowledged (W at most the server's receive maximum), to a topic of
//! its own. Reports PUBACKs per second and the time from a publish to its
//! PUBACK. Against sensegate a PUBACK means the reading is committed to
//! history; against a broker it means what that broker says it means
//! (Mosquitto with persistence on: kept in memory, written at its autosave
//! interval).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::BytesMut;
use serde::Serialize;

use crate::latency::{Acks, Latency, gather};
use crate::mqtt::{Mqtt, put_publish_qos1};
use crate::process::{Process, Watch};
use crate::target::Target;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct QosOneIngest {
    /// `sensegate` (its MQTT listener) or `mqtt`, as the target says.
    pub target: String,
    /// TLS on.
    pub tls: bool,
    /// Publishers at once.
    pub publishers: usize,
    /// Publishes each keeps unacknowledged.
    pub window: usize,
    /// PUBACKs per second.
    pub pubacks_per_sec: f64,
    /// Publish to PUBACK, milliseconds.
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
/// A publisher could not connect, or a publish was refused.
pub async fn run(
    target: &Target,
    label: &str,
    publishers: usize,
    window: usize,
    duration: Duration,
    process: Option<Process>,
) -> Result<QosOneIngest> {
    let Target::Mqtt {
        addr, tls, login, ..
    } = target
    else {
        bail!("the MQTT ingest scenario runs against an MQTT listener");
    };
    let window = window.clamp(1, usize::from(u16::MAX));
    let mut sessions = Vec::with_capacity(publishers);
    for i in 0..publishers {
        let from = Some(crate::net::source_ip(i));
        let id = format!("bench-ingest-{i}");
        sessions.push(Mqtt::open(*addr, from, tls.as_ref(), login.as_ref(), &id).await?);
    }
    let watch = Watch::start(process);
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::with_capacity(publishers);
    for (i, mut m) in sessions.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let topic = format!("sensors/bench/ingest-{i}");
            let mut latency = Latency::default();
            let mut acked = 0u64;
            let mut in_flight: VecDeque<(u16, Instant)> = VecDeque::with_capacity(window);
            let mut next_id = 1u16;
            let mut ts = crate::now_us();
            let mut out = BytesMut::new();
            loop {
                let sending = Instant::now() < until;
                while sending && in_flight.len() < window {
                    ts += 1;
                    let payload = format!("{{\"value\":1,\"ts_us\":{ts}}}");
                    put_publish_qos1(&mut out, &topic, next_id, payload.as_bytes());
                    in_flight.push_back((next_id, Instant::now()));
                    next_id = next_id.wrapping_add(1).max(1);
                }
                if !out.is_empty() {
                    m.send(&out).await?;
                    out.clear();
                }
                if in_flight.is_empty() {
                    break;
                }
                let (first, body) = m.next_packet().await?;
                if first >> 4 != 4 {
                    continue;
                }
                let id = body
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .context("short PUBACK")?;
                if body.get(2).is_some_and(|&r| r >= 0x80) {
                    bail!("publish {id} refused with reason {:#x}", body[2]);
                }
                // Acknowledgements come in order [MQTT-4.6.0-2].
                let Some((sent_id, sent)) = in_flight.pop_front() else {
                    bail!("a PUBACK for nothing in flight");
                };
                if sent_id != id {
                    bail!("PUBACK {id} out of order (expected {sent_id})");
                }
                latency.record(i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX));
                acked += 1;
            }
            anyhow::Ok((acked, latency))
        }));
    }
    let (acked, latency) = gather(tasks, "a publisher task").await?;
    let acks = Acks::of(acked, &latency, started.elapsed().as_secs_f64());
    let usage = watch.finish();
    Ok(QosOneIngest {
        target: label.to_owned(),
        tls: target.tls(),
        publishers,
        window,
        pubacks_per_sec: acks.per_sec,
        ack_p50_ms: acks.p50_ms,
        ack_p99_ms: acks.p99_ms,
        ack_max_ms: acks.max_ms,
        cpu_cores: usage.cpu_cores,
        peak_rss_mib: usage.peak_rss_mib,
    })
}
