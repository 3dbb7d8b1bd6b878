//! The attack scenario: the hostile peers of the native server issue at
//! volume, against sensegate, while a normal subscriber measures its
//! latency. Thousands of slow-header peers (two bytes of a length prefix,
//! then silence, reconnecting when cut off), streams of oversize length
//! prefixes, garbage, and a token brute force. Reports the subscriber's p99
//! loaded against unloaded, the attempts made, and the daemon's peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use sensegate_client::wire as v1;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::fanout::{Plan, Run};
use crate::net;
use crate::process::{Process, Watch};
use crate::target::Target;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Attacked {
    /// The normal subscriber's p99 without the attack, ms.
    pub unloaded_p99_ms: f64,
    /// Its p99 under attack, ms.
    pub loaded_p99_ms: f64,
    /// Loaded over unloaded.
    pub p99_ratio: f64,
    /// Share of its readings delivered under attack.
    pub loaded_delivered_share: f64,
    /// Slow-header connections opened.
    pub slow_connections: u64,
    /// Oversize length prefixes sent.
    pub oversize: u64,
    /// Garbage connections.
    pub garbage: u64,
    /// Wrong tokens tried.
    pub brute_force: u64,
    /// Slow peers cut off at once (by a cap) or unable to connect.
    pub refused: u64,
    /// The daemon's peak RSS during the attack, MiB.
    pub peak_rss_mib: f64,
}

impl Attacked {
    /// Prints the figures as a Markdown table.
    pub fn print(&self) {
        println!(
            "| unloaded p99 ms | loaded p99 ms | ratio | delivered under attack | slow peers | oversize | garbage | wrong tokens | refused | peak RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {:.2} | {:.2} | {:.2} | {:.3}% | {} | {} | {} | {} | {} | {:.1} |",
            self.unloaded_p99_ms,
            self.loaded_p99_ms,
            self.p99_ratio,
            self.loaded_delivered_share * 100.0,
            self.slow_connections,
            self.oversize,
            self.garbage,
            self.brute_force,
            self.refused,
            self.peak_rss_mib
        );
    }
}

#[derive(Default)]
struct Counts {
    slow: AtomicU64,
    oversize: AtomicU64,
    garbage: AtomicU64,
    brute: AtomicU64,
    refused: AtomicU64,
}

/// Normal traffic: readings per second published to one subscriber.
const NORMAL_RATE: f64 = 200.0;

/// Runs it: `slow` slow-header peers, `rate` connections per second of
/// each other kind, and `duration` per measured phase.
///
/// # Errors
/// The normal subscriber could not connect or was cut off.
pub async fn run(
    target: &Target,
    slow: usize,
    rate: f64,
    duration: Duration,
    process: Option<Process>,
) -> Result<Attacked> {
    let addr_tls = match target {
        Target::Sensegate { addr, tls, .. } => (*addr, tls.clone()),
        Target::Mqtt { .. } => anyhow::bail!("the attack scenario runs against sensegate only"),
    };
    let plan = Plan {
        subscribers: 1,
        warmup: Duration::from_secs(1),
        measure: duration,
        drain: Duration::from_secs(2),
    };
    let mut normal = Run::start(target.clone(), plan, process).await?;
    let unloaded = normal.step(NORMAL_RATE).await?;

    let counts = Arc::new(Counts::default());
    let until = Instant::now() + duration + Duration::from_secs(6);
    // The hostile peers run on a runtime (and thread) of their own, so the
    // normal subscriber's latency measures the daemon, not the load tool's
    // scheduler.
    let attackers = {
        let counts = counts.clone();
        std::thread::Builder::new()
            .name("bench-attack".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(attack(slow, rate, addr_tls, counts, until));
                anyhow::Ok(())
            })?
    };
    let watch = Watch::start(process);
    // Let the slow peers pile up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = normal.step(NORMAL_RATE).await?;
    let usage = watch.finish();
    normal.stop();
    tokio::task::spawn_blocking(move || attackers.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the attack thread panicked"))??;
    let ratio = if unloaded.p99_ms > 0.0 {
        loaded.p99_ms / unloaded.p99_ms
    } else {
        0.0
    };
    Ok(Attacked {
        unloaded_p99_ms: unloaded.p99_ms,
        loaded_p99_ms: loaded.p99_ms,
        p99_ratio: ratio,
        loaded_delivered_share: loaded.delivered_share,
        slow_connections: counts.slow.load(Relaxed),
        oversize: counts.oversize.load(Relaxed),
        garbage: counts.garbage.load(Relaxed),
        brute_force: counts.brute.load(Relaxed),
        refused: counts.refused.load(Relaxed),
        peak_rss_mib: usage.peak_rss_mib,
    })
}

/// Runs every hostile peer until `until`.
async fn attack(
    slow: usize,
    rate: f64,
    addr_tls: (
        std::net::SocketAddr,
        Option<sensegate_client::pin::TlsOptions>,
    ),
    counts: Arc<Counts>,
    until: Instant,
) {
    let mut peers = Vec::new();
    // Slow peers come from 127.2.x.y, each other kind from a group of its
    // own (127.3 to 127.5): the normal subscriber (127.0.0.2) shares no
    // address, and caps per address hit only the kind that earns them.
    for i in 0..slow {
        let (c, (addr, tls)) = (counts.clone(), addr_tls.clone());
        peers.push(tokio::spawn(async move {
            while Instant::now() < until {
                let began = Instant::now();
                let Ok(mut s) = net::connect(addr, Some(net::group_ip(2, i)), tls.as_ref()).await
                else {
                    c.refused.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                c.slow.fetch_add(1, Relaxed);
                if s.write_all(&[0x10, 0x00]).await.is_ok() {
                    let _ = read_to_end(&mut s, until).await;
                }
                // Cut off at once (a cap, not the hello deadline): count it
                // as refused and back off rather than spin.
                if began.elapsed() < Duration::from_millis(500) {
                    c.refused.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    // Oversize prefixes, garbage and wrong tokens: `rate` new connections
    // per second each, at most 256 of each in flight.
    for kind in 0..3usize {
        let (c, (addr, tls)) = (counts.clone(), addr_tls.clone());
        let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
        let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
        peers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0usize;
            while Instant::now() < until {
                tick.tick().await;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    continue;
                };
                n += 1;
                let (c, tls) = (c.clone(), tls.clone());
                // 16 source addresses per kind, a group per kind.
                let group = 3 + u8::try_from(kind).unwrap_or(0);
                let from = Some(net::group_ip(group, n % 16));
                tokio::spawn(async move {
                    hostile(kind, addr, from, tls.as_ref(), &c, n, until).await;
                    drop(permit);
                });
            }
        }));
    }
    tokio::time::sleep_until(until.into()).await;
    for p in peers {
        p.abort();
    }
}

/// One hostile connection of `kind`: 0 an oversize length prefix, 1
/// garbage, 2 a hello with a wrong token.
async fn hostile(
    kind: usize,
    addr: std::net::SocketAddr,
    from: Option<std::net::IpAddr>,
    tls: Option<&sensegate_client::pin::TlsOptions>,
    c: &Counts,
    n: usize,
    until: Instant,
) {
    let Ok(mut s) = net::connect(addr, from, tls).await else {
        c.refused.fetch_add(1, Relaxed);
        return;
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (n as u64);
    let bytes = match kind {
        0 => {
            c.oversize.fetch_add(1, Relaxed);
            vec![0xff, 0xff, 0xff, 0x7f]
        }
        1 => {
            c.garbage.fetch_add(1, Relaxed);
            (0..4096)
                .map(|_| next(&mut seed).to_le_bytes()[0])
                .collect()
        }
        _ => {
            c.brute.fetch_add(1, Relaxed);
            hello(&format!(
                "sgt_{:016x}_{:064x}",
                next(&mut seed),
                u128::from(next(&mut seed))
            ))
        }
    };
    if s.write_all(&bytes).await.is_ok() {
        let _ = read_to_end(&mut s, until).await;
    }
}

/// `SplitMix64`.
const fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hello frame carrying `token`.
fn hello(token: &str) -> Vec<u8> {
    let envelope = v1::Envelope {
        request_id: 1,
        body: Some(v1::envelope::Body::Hello(v1::Hello {
            protocol_version: sensegate_client::PROTOCOL_VERSION,
            token: token.to_owned(),
            client_name: "bench-attack".into(),
        })),
    };
    let mut out = bytes::BytesMut::new();
    let _ = sensegate_proto::frame::encode_message(
        &envelope,
        sensegate_proto::FrameLimit::DEFAULT,
        &mut out,
    );
    out.to_vec()
}

/// Reads and discards until the server closes or `until`.
async fn read_to_end(s: &mut Box<dyn net::Io>, until: Instant) -> Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(until.into(), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}
