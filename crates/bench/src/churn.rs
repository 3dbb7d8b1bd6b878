//! The churn scenario: subscription changes against the publish path. Many
//! connections hold many patterns that match nothing, and a few connections
//! subscribe and unsubscribe in a loop, while a normal subscriber measures
//! its latency. Reports the subscriber's p99 loaded against unloaded, the
//! subscription changes made, and the daemon's CPU use and peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::fanout::{Plan, Run};
use crate::process::{Process, Watch};
use crate::target::Target;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Churned {
    /// The normal subscriber's p99 without the churn, ms.
    pub unloaded_p99_ms: f64,
    /// Its p99 under churn, ms.
    pub loaded_p99_ms: f64,
    /// Loaded over unloaded.
    pub p99_ratio: f64,
    /// Share of its readings delivered under churn.
    pub loaded_delivered_share: f64,
    /// Connections holding never-matching patterns.
    pub holders: usize,
    /// Patterns each holds.
    pub patterns_each: usize,
    /// Subscribe and unsubscribe requests answered while measuring.
    pub changes: u64,
    /// The daemon's CPU cores used under churn.
    pub cpu_cores: f64,
    /// The daemon's peak RSS under churn, MiB.
    pub peak_rss_mib: f64,
}

impl Churned {
    /// Prints the figures as a Markdown table.
    pub fn print(&self) {
        println!(
            "| unloaded p99 ms | loaded p99 ms | ratio | delivered under churn | holders x patterns | changes | daemon cores | peak RSS MiB |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| {:.2} | {:.2} | {:.2} | {:.3}% | {} x {} | {} | {:.2} | {:.1} |",
            self.unloaded_p99_ms,
            self.loaded_p99_ms,
            self.p99_ratio,
            self.loaded_delivered_share * 100.0,
            self.holders,
            self.patterns_each,
            self.changes,
            self.cpu_cores,
            self.peak_rss_mib
        );
    }
}

/// Normal traffic: readings per second published to one subscriber.
const NORMAL_RATE: f64 = 200.0;

/// Runs it: `holders` connections with `patterns` never-matching patterns
/// each, `churners` connections subscribing and unsubscribing in a loop,
/// `duration` per measured phase.
///
/// # Errors
/// A connection could not be made, or the normal subscriber was cut off.
pub async fn run(
    target: &Target,
    holders: usize,
    patterns: usize,
    churners: usize,
    duration: Duration,
    process: Option<Process>,
) -> Result<Churned> {
    let plan = Plan {
        subscribers: 1,
        warmup: Duration::from_secs(1),
        measure: duration,
        drain: Duration::from_secs(2),
    };
    let mut normal = Run::start(target.clone(), plan, process).await?;
    let unloaded = normal.step(NORMAL_RATE).await?;

    let mut held = Vec::with_capacity(holders);
    for i in 0..holders {
        let mut c = target.sensegate(1_000 + i, "bench-churn-holder").await?;
        let mine: Vec<String> = (0..patterns).map(|p| format!("never/{i}/{p}/*")).collect();
        let refs: Vec<&str> = mine.iter().map(String::as_str).collect();
        c.subscribe(&refs).await?;
        held.push(c);
    }
    let changes = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + duration + Duration::from_secs(4);
    let mut tasks = Vec::with_capacity(churners);
    for i in 0..churners {
        let mut c = target.sensegate(2_000 + i, "bench-churn").await?;
        let changes = changes.clone();
        tasks.push(tokio::spawn(async move {
            let pattern = format!("never/churn/{i}");
            while Instant::now() < until {
                if c.subscribe(&[pattern.as_str()]).await.is_err()
                    || c.unsubscribe(&[pattern.as_str()]).await.is_err()
                {
                    break;
                }
                changes.fetch_add(2, Relaxed);
            }
        }));
    }
    let watch = Watch::start(process);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = changes.load(Relaxed);
    let loaded = normal.step(NORMAL_RATE).await?;
    let made = changes.load(Relaxed) - before;
    let usage = watch.finish();
    normal.stop();
    for t in tasks {
        t.abort();
    }
    drop(held);
    let ratio = if unloaded.p99_ms > 0.0 {
        loaded.p99_ms / unloaded.p99_ms
    } else {
        0.0
    };
    Ok(Churned {
        unloaded_p99_ms: unloaded.p99_ms,
        loaded_p99_ms: loaded.p99_ms,
        p99_ratio: ratio,
        loaded_delivered_share: loaded.delivered_share,
        holders,
        patterns_each: patterns,
        changes: made,
        cpu_cores: usage.cpu_cores,
        peak_rss_mib: usage.peak_rss_mib,
    })
}
