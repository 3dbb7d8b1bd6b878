//! The hold scenario: opens C idle connections (authenticated on
//! sensegate, connected on MQTT), spread over loopback source addresses,
//! and reports the server's resident memory per connection.

use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::process::Process;
use crate::target::Target;

/// Connections opened before the baseline, so one-off allocations (pools,
/// runtime) are not charged to the idle connections.
const WARM: usize = 16;

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    /// `sensegate` or `mqtt`.
    pub target: &'static str,
    /// TLS on.
    pub tls: bool,
    /// Connections measured.
    pub connections: usize,
    /// Server RSS before, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with them open, KiB.
    pub rss_after_kib: u64,
    /// Resident bytes per idle connection.
    pub bytes_per_connection: f64,
}

/// Runs it.
///
/// # Errors
/// A connection failed, or the server's memory could not be read.
pub async fn run(target: &Target, connections: usize, process: Process) -> Result<Held> {
    let open = |range: std::ops::Range<usize>| {
        futures_util::stream::iter(range)
            .map(|i| {
                let target = target.clone();
                async move { crate::net::with_retries(|| target.idle(i)).await }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
    };
    let mut held = Vec::with_capacity(connections + WARM);
    for c in open(0..WARM).await {
        held.push(c.context("opening a warm-up connection")?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = process.rss_kib().context("reading the server's RSS")?;
    for c in open(WARM..WARM + connections).await {
        held.push(c.context("opening an idle connection")?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = process.rss_kib().context("reading the server's RSS")?;
    drop(held);
    #[expect(clippy::cast_precision_loss, reason = "a figure for a table")]
    let per = after.saturating_sub(before) as f64 * 1024.0 / connections.max(1) as f64;
    Ok(Held {
        target: target.kind(),
        tls: target.tls(),
        connections,
        rss_before_kib: before,
        rss_after_kib: after,
        bytes_per_connection: per,
    })
}
