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
use super::mqtt::{MqttError, MqttLink};
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
/// Longest step of a paced wait.
const PACE_STEP: Duration = Duration::from_secs(2);
/// How often the backlog is counted against its cap.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);

/// Why the pump stopped.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("{0}")]
    Postgres(#[from] PgError),
    #[error("{0}")]
    Mqtt(#[from] MqttError),
    #[error("history: {0}")]
    Store(String),
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
    #[error("the server closed the connection")]
    Closed,
}

/// A connection of either kind.
enum Link {
    Postgres(Box<PgLink>),
    Mqtt(Box<MqttLink>),
}

impl Link {
    async fn connect(config: &UplinkConfig, gateway: &Gateway) -> Result<Self, Stop> {
        Ok(match &config.target {
            Target::Postgres(pg) => Self::Postgres(Box::new(
                PgLink::connect(pg, gateway, &config.name, config.timeout).await?,
            )),
            Target::Mqtt(m) => {
                Self::Mqtt(Box::new(MqttLink::connect(m, gateway, &config.name).await?))
            }
        })
    }

    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), Stop> {
        match self {
            Self::Postgres(l) => l.send(batch).await?,
            Self::Mqtt(l) => l.send(batch).await?,
        }
        Ok(())
    }

    /// Nothing to send: notices a server that went away (an MQTT ping).
    async fn idle(&mut self) -> Result<(), Stop> {
        match self {
            Self::Postgres(l) if l.is_closed() => Err(Stop::Closed),
            Self::Postgres(_) => Ok(()),
            Self::Mqtt(l) => Ok(l.idle().await?),
        }
    }
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
        let attempt = tokio::time::timeout(config.timeout, Link::connect(&config, &gateway));
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

/// A confirmation on its way to the history database.
struct Confirming {
    seq: i64,
    rows: usize,
    task: tokio::task::JoinHandle<Result<(), crate::store::HistoryError>>,
}

impl Confirming {
    /// Waits for it; then the figures count the batch.
    async fn finish(self, stats: &UplinkStats) -> Result<(), Stop> {
        match self.task.await {
            Ok(r) => r.map_err(|e| Stop::Store(e.to_string()))?,
            Err(e) => return Err(Stop::Store(e.to_string())),
        }
        stats.delivered.store(self.seq, Relaxed);
        stats.batches.fetch_add(1, Relaxed);
        stats.rows.fetch_add(self.rows as u64, Relaxed);
        stats
            .backlog_rows
            .fetch_update(Relaxed, Relaxed, |b| {
                Some(b.saturating_sub(self.rows as u64))
            })
            .ok();
        Ok(())
    }
}

type Prefetch = (
    i64,
    tokio::task::JoinHandle<Result<Vec<Outgoing>, crate::store::HistoryError>>,
);

/// Sends batches until an error (or `stop`: `Ok`).
///
/// While one batch is on its way, the next is read from the history and
/// the previous one's confirmation is written (in order: a confirmation
/// starts only after the one before it finished), so the server, the
/// history and the network work at once.
async fn pump(
    config: &UplinkConfig,
    store: &Arc<SqliteStore>,
    stats: &UplinkStats,
    link: &mut Link,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<(), Stop> {
    let name = config.name.clone();
    let max = config.batch_readings;
    let mut pace = Pace::new(config.max_rows_per_sec);
    let mut counted: Option<Instant> = None;
    let mut delivered = 0i64;
    let mut prefetch: Option<Prefetch> = None;
    let mut confirming: Option<Confirming> = None;
    loop {
        if stop.is_cancelled() {
            if let Some(c) = confirming.take() {
                c.finish(stats).await?;
            }
            return Ok(());
        }
        // The cursor moves only here: by this loop's confirmations, and
        // by the backlog cap (counted every few seconds, once the last
        // confirmation is written).
        if counted.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
            if let Some(c) = confirming.take() {
                c.finish(stats).await?;
            }
            delivered = backlog(config, store, stats).await?;
            counted = Some(Instant::now());
        }
        let batch: Vec<Outgoing> = match prefetch.take() {
            Some((after, task)) if after == delivered => match task.await {
                Ok(r) => r.map_err(|e| Stop::Store(e.to_string()))?,
                Err(e) => return Err(Stop::Store(e.to_string())),
            },
            _ => {
                let s = store.clone();
                blocking(move || s.outbox(delivered, max)).await?
            }
        };
        let Some(last) = batch.last().map(|c| c.seq) else {
            if let Some(c) = confirming.take() {
                c.finish(stats).await?;
            }
            stats.backlog_ms.store(0, Relaxed);
            stats.backlog_rows.store(0, Relaxed);
            match tokio::time::timeout(config.timeout, link.idle()).await {
                Ok(r) => r?,
                Err(_) => return Err(Stop::Timeout(config.timeout)),
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(POLL) => continue,
            }
        };
        let s = store.clone();
        prefetch = Some((
            last,
            tokio::task::spawn_blocking(move || s.outbox(last, max)),
        ));
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
        // A stop abandons the batch (it is sent again at the next start);
        // a failure first lets the last confirmation land, so it is
        // counted and its batch not sent again.
        let sent = tokio::select! {
            () = stop.cancelled() => Ok(()),
            r = tokio::time::timeout(config.timeout, link.send(&batch)) => match r {
                Ok(r) => r,
                Err(_) => Err(Stop::Timeout(config.timeout)),
            },
        };
        if stop.is_cancelled() || sent.is_err() {
            if let Some(c) = confirming.take() {
                c.finish(stats).await?;
            }
            return sent;
        }
        backoff.reset();
        if let Some(c) = confirming.take() {
            c.finish(stats).await?;
        }
        let (s, n) = (store.clone(), name.clone());
        confirming = Some(Confirming {
            seq: last,
            rows,
            task: tokio::task::spawn_blocking(move || s.confirm(&n, last)),
        });
        delivered = last;
        let until = Instant::now() + pace.sent(rows, Instant::now());
        paced(link, until, config.timeout, stop).await?;
    }
}

/// Waits until `until` (or `stop`) in steps, keeping the link alive
/// between them (an MQTT broker expects a packet within its keep-alive).
async fn paced(
    link: &mut Link,
    until: Instant,
    timeout: Duration,
    stop: &CancellationToken,
) -> Result<(), Stop> {
    while Instant::now() < until && !stop.is_cancelled() {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep_until(until.min(Instant::now() + PACE_STEP)) => {}
        }
        match tokio::time::timeout(timeout, link.idle()).await {
            Ok(r) => r?,
            Err(_) => return Err(Stop::Timeout(timeout)),
        }
    }
    Ok(())
}
