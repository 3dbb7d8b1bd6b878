//! The loop that drives one uplink: connect (with a jittered backoff
//! after failures), then read the outbox after the cursor, send a batch,
//! move the cursor once the server confirmed it, pace, repeat. The cursor
//! lives in the history database, so a crash anywhere in this loop sends a
//! batch again, never loses one.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::{Backoff, Pace};
use super::postgres::{Gateway, PgError, PgLink};
use super::{Target, UplinkConfig, UplinkStats};
use crate::store::sqlite::Outgoing;
use crate::store::sqlite::SqliteStore;

/// A negative control for the fault-injection tests, set only by building
/// with `SENSEGATE_FAULT_CONFIRM_EARLY=1` in the environment: the cursor
/// moves *before* the server confirmed a batch, so a crash between the two
/// loses it, and the tests must see that loss. Never set in a release.
pub const CONFIRMS_EARLY: bool = option_env!("SENSEGATE_FAULT_CONFIRM_EARLY").is_some();

/// How often an idle uplink looks for new commits.
const POLL: Duration = Duration::from_millis(50);
/// How often the backlog is counted against its cap.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Why the pump stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("{0}")]
    Remote(#[from] PgError),
    #[error("history: {0}")]
    Store(String),
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
}

/// Runs the uplink until `stop`.
pub async fn run(
    config: UplinkConfig,
    store: Arc<SqliteStore>,
    stats: Arc<UplinkStats>,
    gateway: Gateway,
    stop: CancellationToken,
) {
    if CONFIRMS_EARLY {
        tracing::error!(
            uplink = %config.name,
            "built with SENSEGATE_FAULT_CONFIRM_EARLY: this uplink can lose readings"
        );
    }
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max, Backoff::seed());
    loop {
        // The cap holds while the server is away, too.
        if let Err(e) = backlog(&config, &store, &stats).await {
            tracing::warn!(uplink = %config.name, error = %e, "uplink backlog not counted");
        }
        let Target::Postgres(pg) = &config.target;
        let attempt =
            tokio::time::timeout(config.timeout, PgLink::connect(pg, &gateway, &config.name));
        let failure = tokio::select! {
            () = stop.cancelled() => return,
            r = attempt => match r {
                Ok(Ok(mut link)) => {
                    stats.connected.store(true, Relaxed);
                    tracing::info!(uplink = %config.name, "uplink connected");
                    let r = pump(&config, &store, &stats, &mut link, &mut backoff, &stop).await;
                    stats.connected.store(false, Relaxed);
                    match r {
                        Ok(()) => return,
                        Err(e) => e.to_string(),
                    }
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no connection within {:?}", config.timeout),
            },
        };
        stats.retries.fetch_add(1, Relaxed);
        let delay = backoff.next_delay();
        tracing::warn!(
            uplink = %config.name,
            error = ?failure,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "uplink failed"
        );
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::HistoryError> + Send + 'static,
) -> Result<T, Stop> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| Stop::Store(e.to_string())),
        Err(e) => Err(Stop::Store(e.to_string())),
    }
}

/// Enforces the backlog cap; updates the figures; returns the cursor.
async fn backlog(
    config: &UplinkConfig,
    store: &Arc<SqliteStore>,
    stats: &UplinkStats,
) -> Result<i64, Stop> {
    let (s, n, cap) = (store.clone(), config.name.clone(), config.max_backlog_rows);
    let (backlog, cursor) = blocking(move || {
        let backlog = s.enforce_backlog(&n, cap)?;
        let cursor = s.uplink_cursors()?.into_iter().find(|c| c.name == n);
        cursor
            .map(|c| (backlog, c))
            .ok_or_else(|| crate::store::HistoryError::new(format!("no uplink named {n:?}")))
    })
    .await?;
    stats.backlog_rows.store(backlog.rows, Relaxed);
    stats.dropped.store(cursor.dropped, Relaxed);
    stats.delivered.store(cursor.delivered, Relaxed);
    Ok(cursor.delivered)
}

/// Sends batches until an error (or `stop`: `Ok`).
async fn pump(
    config: &UplinkConfig,
    store: &Arc<SqliteStore>,
    stats: &UplinkStats,
    link: &mut PgLink,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<(), Stop> {
    let name = config.name.clone();
    let mut pace = Pace::new(config.max_rows_per_sec);
    let mut counted: Option<Instant> = None;
    let mut delivered = 0i64;
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        // The cursor moves only here: by this loop's confirmations, and
        // by the backlog cap (counted every few seconds).
        if counted.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
            delivered = backlog(config, store, stats).await?;
            counted = Some(Instant::now());
        }
        let (s, max) = (store.clone(), config.batch_readings);
        let batch: Vec<Outgoing> = blocking(move || s.outbox(delivered, max)).await?;
        let Some(last) = batch.last().map(|c| c.seq) else {
            stats.backlog_ms.store(0, Relaxed);
            stats.backlog_rows.store(0, Relaxed);
            if link.is_closed() {
                return Err(Stop::Store("the server closed the connection".to_owned()));
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(POLL) => continue,
            }
        };
        let oldest = batch
            .iter()
            .filter_map(|c| c.rows.first().map(|r| r.timestamp_us))
            .min()
            .unwrap_or_else(crate::reading::now_us);
        let age = u64::try_from((crate::reading::now_us() - oldest) / 1000).unwrap_or(0);
        stats.backlog_ms.store(age, Relaxed);
        let rows: usize = batch.iter().map(|c| c.rows.len()).sum();
        if CONFIRMS_EARLY {
            let (s, n) = (store.clone(), name.clone());
            blocking(move || s.confirm(&n, last)).await?;
        }
        match tokio::time::timeout(config.timeout, link.send(&batch)).await {
            Ok(r) => r?,
            Err(_) => return Err(Stop::Timeout(config.timeout)),
        }
        let (s, n) = (store.clone(), name.clone());
        blocking(move || s.confirm(&n, last)).await?;
        backoff.reset();
        delivered = last;
        stats.delivered.store(last, Relaxed);
        stats.batches.fetch_add(1, Relaxed);
        stats.rows.fetch_add(rows as u64, Relaxed);
        stats
            .backlog_rows
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(rows as u64)))
            .ok();
        let wait = pace.sent(rows, Instant::now());
        if !wait.is_zero() {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
