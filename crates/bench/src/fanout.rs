//! The fan-out scenario: one publisher sends readings of one sensor at a
//! set rate, smoothly (one reading per write, paced on its own thread),
//! and N subscribers receive them. Each step reports readings delivered
//! per second, the share delivered, end-to-end latency (reading timestamp
//! to receipt), and the server's CPU and peak RSS. A search steps the rate
//! up until a step fails the sustainable bar: at least 99.9% delivered,
//! p99 under 50 ms, and the publisher able to send at the offered rate.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::latency::Latency;
use crate::process::{Process, Watch};
use crate::target::{Target, reading_size};

/// The sustainable bar: share delivered, and p99 latency.
pub const MIN_DELIVERED: f64 = 0.999;
/// The sustainable bar's p99 latency, in milliseconds.
pub const MAX_P99_MS: f64 = 50.0;
/// The publisher must reach this share of the offered rate.
const MIN_SENT_SHARE: f64 = 0.95;

/// How a fan-out run is shaped.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Subscribers.
    pub subscribers: usize,
    /// Warm-up per step (not measured).
    pub warmup: Duration,
    /// Measured time per step.
    pub measure: Duration,
    /// Longest wait for late deliveries after a step.
    pub drain: Duration,
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `sensegate` or `mqtt`.
    pub target: &'static str,
    /// TLS on.
    pub tls: bool,
    /// Subscribers.
    pub subscribers: usize,
    /// Offered publish rate, readings/s (0: as fast as accepted).
    pub offered_rate: f64,
    /// Readings published per second in the measured window.
    pub published_rate: f64,
    /// Readings delivered per second, all subscribers together.
    pub delivered_per_sec: f64,
    /// Share of (published x subscribers) delivered.
    pub delivered_share: f64,
    /// Readings the server said it dropped for slow subscribers.
    pub server_dropped: u64,
    /// Latency percentiles, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Server CPU, cores.
    pub cpu_cores: f64,
    /// Server peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Whether the step met the sustainable bar.
    pub sustainable: bool,
}

/// What a subscriber task adds up for the current step.
#[derive(Default)]
struct Tally {
    received: u64,
    dropped: u64,
    latency: Latency,
}

/// The measured window, in µs since the epoch: readings stamped inside it
/// count.
#[derive(Default)]
struct Window {
    start: AtomicI64,
    end: AtomicI64,
}

/// A fan-out run: subscribers connected once, then any number of steps.
pub struct Run {
    target: Target,
    plan: Plan,
    window: Arc<Window>,
    tallies: Vec<Arc<Mutex<Tally>>>,
    failures: Arc<AtomicU64>,
    publisher: PublisherThread,
    process: Option<Process>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Run {
    /// Connects the subscribers (64 at a time) and the publisher.
    ///
    /// # Errors
    /// A connection failed.
    pub async fn start(target: Target, plan: Plan, process: Option<Process>) -> Result<Self> {
        let window = Arc::new(Window::default());
        window.start.store(i64::MAX, Relaxed);
        let failures = Arc::new(AtomicU64::new(0));
        let subscribers: Vec<_> = futures_util::stream::iter(0..plan.subscribers)
            .map(|i| {
                let target = target.clone();
                async move { crate::net::with_retries(|| target.subscriber(i)).await }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut tallies = Vec::with_capacity(plan.subscribers);
        let mut tasks = Vec::with_capacity(plan.subscribers);
        for s in subscribers {
            let mut sub = s.context("connecting a subscriber")?;
            let tally = Arc::new(Mutex::new(Tally::default()));
            tallies.push(tally.clone());
            let (window, failures) = (window.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let mut batch: Vec<i64> = Vec::new();
                loop {
                    batch.clear();
                    let Ok(dropped) = sub.next(|ts| batch.push(ts)).await else {
                        failures.fetch_add(1, Relaxed);
                        return;
                    };
                    let now = crate::now_us();
                    let (start, end) = (window.start.load(Relaxed), window.end.load(Relaxed));
                    let mut t = lock(&tally);
                    t.dropped += dropped;
                    for &ts in &batch {
                        if ts >= start && ts < end {
                            t.received += 1;
                            t.latency.record(now - ts);
                        }
                    }
                }
            }));
        }
        let publisher = PublisherThread::start(target.clone())?;
        Ok(Self {
            target,
            plan,
            window,
            tallies,
            failures,
            publisher,
            process,
            tasks,
        })
    }

    /// Runs one step at `rate` readings/s (0: as fast as accepted).
    ///
    /// # Errors
    /// The publisher failed, or subscribers were disconnected.
    pub async fn step(&mut self, rate: f64) -> Result<Step> {
        let warmup_end = Instant::now() + self.plan.warmup;
        let start_us = crate::now_us() + i64::try_from(self.plan.warmup.as_micros())?;
        let end_us = start_us + i64::try_from(self.plan.measure.as_micros())?;
        for t in &self.tallies {
            *lock(t) = Tally::default();
        }
        self.window.start.store(start_us, Relaxed);
        self.window.end.store(end_us, Relaxed);
        let until = warmup_end + self.plan.measure;
        let watch_from = warmup_end;
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        self.publisher.order(Order {
            rate,
            until,
            window: (start_us, end_us),
            reply: reply_tx,
        })?;
        tokio::time::sleep_until(watch_from.into()).await;
        let watch = Watch::start(self.process);
        let limit = self.plan.warmup + self.plan.measure + PUBLISH_TIMEOUT * 2;
        let sent = tokio::time::timeout(limit, reply_rx)
            .await
            .map_err(|_| anyhow::anyhow!("the publisher did not finish the step"))?
            .context("the publisher thread ended")??;
        let usage = watch.finish();
        // Late deliveries: wait until the count stops moving (or the cap).
        let expected = sent * self.tallies.len() as u64;
        let drain_end = Instant::now() + self.plan.drain;
        let mut last = 0;
        loop {
            let got: u64 = self.tallies.iter().map(|t| lock(t).received).sum();
            if got >= expected
                || Instant::now() >= drain_end
                || (got == last && got > 0 && last > 0)
            {
                break;
            }
            last = got;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.window.end.store(i64::MIN, Relaxed);
        let mut latency = Latency::default();
        let (mut received, mut dropped) = (0, 0);
        for t in &self.tallies {
            let t = lock(t);
            received += t.received;
            dropped += t.dropped;
            latency.merge(&t.latency);
        }
        let failed = self.failures.load(Relaxed);
        anyhow::ensure!(failed == 0, "{failed} subscribers were disconnected");
        #[expect(clippy::cast_precision_loss, reason = "figures for a table")]
        let (secs, share) = (
            self.plan.measure.as_secs_f64(),
            if expected == 0 {
                0.0
            } else {
                received as f64 / expected as f64
            },
        );
        #[expect(clippy::cast_precision_loss, reason = "figures for a table")]
        let (published_rate, delivered_per_sec) = (sent as f64 / secs, received as f64 / secs);
        #[expect(clippy::cast_precision_loss, reason = "figures for a table")]
        let ms = |us: u64| us as f64 / 1000.0;
        let p99_ms = ms(latency.quantile(0.99));
        let sustainable = share >= MIN_DELIVERED
            && p99_ms < MAX_P99_MS
            && (rate == 0.0 || published_rate >= rate * MIN_SENT_SHARE);
        Ok(Step {
            target: self.target.kind(),
            tls: self.target.tls(),
            subscribers: self.tallies.len(),
            offered_rate: rate,
            published_rate,
            delivered_per_sec,
            delivered_share: share,
            server_dropped: dropped,
            p50_ms: ms(latency.quantile(0.5)),
            p99_ms,
            max_ms: ms(latency.max()),
            cpu_cores: usage.cpu_cores,
            peak_rss_mib: usage.peak_rss_mib,
            sustainable,
        })
    }

    /// Disconnects everything.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
        drop(self.publisher);
    }
}

/// One step's instructions to the publisher thread.
struct Order {
    rate: f64,
    until: Instant,
    window: (i64, i64),
    reply: tokio::sync::oneshot::Sender<Result<u64>>,
}

/// The publisher on a thread of its own with a single-threaded runtime, so
/// its pacing is not at the mercy of the subscriber tasks (or of a 1 ms
/// timer wheel): it sleeps to each reading's due time and sends it alone.
struct PublisherThread {
    orders: std::sync::mpsc::SyncSender<Order>,
}

impl PublisherThread {
    fn start(target: Target) -> Result<Self> {
        let (orders, rx) = std::sync::mpsc::sync_channel::<Order>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        std::thread::Builder::new()
            .name("bench-publisher".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let mut publisher = match rt.block_on(target.publisher()) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let size = reading_size();
                while let Ok(order) = rx.recv() {
                    let result = pace(&rt, &mut publisher, &order, size);
                    let _ = order.reply.send(result);
                }
            })?;
        // Connecting takes at most the set-up timeout; the other workers
        // keep the subscribers going meanwhile.
        tokio::task::block_in_place(|| ready_rx.recv()).context("the publisher thread ended")??;
        Ok(Self { orders })
    }

    fn order(&self, order: Order) -> Result<()> {
        self.orders
            .send(order)
            .map_err(|_| anyhow::anyhow!("the publisher thread ended"))
    }
}

/// How far behind schedule the publisher may fall before it skips slots
/// (which then count as not published, and fail the step's send bar).
const MAX_LAG: Duration = Duration::from_millis(50);
/// Longest wait for one publish, and for the acknowledgements at the end.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes at `order.rate` until `order.until`; returns how many readings
/// were stamped inside the window. Each reading is stamped with the time it
/// was due, not the time it left, so a publisher held up by a server that
/// stopped reading charges the wait to every reading it delayed (no
/// coordinated omission).
fn pace(
    rt: &tokio::runtime::Runtime,
    publisher: &mut crate::target::Publisher,
    order: &Order,
    size: usize,
) -> Result<u64> {
    let paced = order.rate > 0.0;
    let interval = if paced {
        Duration::from_secs_f64(1.0 / order.rate)
    } else {
        Duration::ZERO
    };
    let start = Instant::now();
    let start_us = crate::now_us();
    let mut next = start;
    let mut in_window = 0;
    loop {
        let now = Instant::now();
        if now >= order.until {
            break;
        }
        if paced {
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > MAX_LAG {
                // Far behind: skip the slots missed rather than burst.
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "a count of whole intervals"
                )]
                let missed = ((now - next).as_secs_f64() * order.rate) as u32;
                next += interval * missed;
            }
        }
        let ts = if paced {
            start_us + i64::try_from((next - start).as_micros()).unwrap_or(i64::MAX)
        } else {
            crate::now_us()
        };
        rt.block_on(async {
            tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(ts, size))
                .await
                .map_err(|_| anyhow::anyhow!("a publish took over {PUBLISH_TIMEOUT:?}"))?
        })?;
        if ts >= order.window.0 && ts < order.window.1 {
            in_window += 1;
        }
        next += interval;
    }
    rt.block_on(publisher.settle(PUBLISH_TIMEOUT))?;
    Ok(in_window)
}
