//! The store's front: one writer thread with group commit, acknowledged and
//! unacknowledged writes, history queries off the async threads, and pruning
//! by age in small steps.
//!
//! The writer thread takes everything queued when it wakes (up to
//! [`MAX_COMMIT_ROWS`]) and commits it in one transaction, so readings from
//! many devices share one fsync. A device's push waits for its commit before
//! it is acknowledged. Room in the queue is counted in readings with a
//! semaphore: sources that find it full are left out of history (counted and
//! logged), pushes wait for room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{History, HistoryError, HistoryErrorKind, HistoryQuery, HistoryStore};
use crate::pattern::Pattern;
use crate::reading::{Reading, now_us};
use crate::stats::Histogram;

/// Most readings committed in one transaction.
pub const MAX_COMMIT_ROWS: usize = 50_000;
/// Longest wait for room in the writer's queue before a push is refused
/// as busy (`store.max_queued_readings`).
pub const ROOM_WAIT: Duration = Duration::from_secs(2);
/// Most readings deleted by one pruning step.
pub const PRUNE_STEP_ROWS: usize = 10_000;
/// How many history queries may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuerySlots {
    /// In all (`store.max_queries`).
    pub total: usize,
    /// From one token (`store.max_queries_per_token`): its share of the
    /// slots, so a principal that sends expensive queries leaves the rest
    /// to others.
    pub per_token: usize,
}

impl Default for QuerySlots {
    fn default() -> Self {
        Self {
            total: 4,
            per_token: 2,
        }
    }
}
/// Longest wait for a free query slot.
const QUERY_WAIT: Duration = Duration::from_secs(10);
/// Queued writes (each at least one reading).
const MAX_JOBS: usize = 4096;

/// One running query's place in its owner's share; given back on drop.
struct OwnerShare {
    owners: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// `None` for the daemon's own queries, which need no share.
    owner: Option<String>,
}

impl OwnerShare {
    /// Takes a place for `owner` (none is needed for the daemon's own
    /// queries, `owner` empty); `None` when it holds its share already.
    fn take(
        owners: &Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
        owner: &str,
        per_owner: usize,
    ) -> Option<Self> {
        if owner.is_empty() {
            return Some(Self {
                owners: owners.clone(),
                owner: None,
            });
        }
        let mut map = owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = map.entry(owner.to_owned()).or_default();
        if *running >= per_owner {
            return None;
        }
        *running += 1;
        Some(Self {
            owners: owners.clone(),
            owner: Some(owner.to_owned()),
        })
    }
}

impl Drop for OwnerShare {
    fn drop(&mut self) {
        let Some(owner) = &self.owner else {
            return;
        };
        let mut map = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(owner);
            }
        }
    }
}

/// Retention and queue settings.
#[derive(Debug, Clone)]
pub struct Retention {
    /// How long readings are kept unless a rule says otherwise.
    pub default: Duration,
    /// Per-sensor rules: the first pattern that matches decides.
    pub rules: Vec<(Pattern, Duration)>,
    /// How often pruning runs.
    pub every: Duration,
}

impl Retention {
    /// The cutoff for `sensor` at `now_us`: readings before it are pruned.
    #[must_use]
    pub fn cutoff(&self, sensor: &str, now_us: i64) -> i64 {
        let keep = self
            .rules
            .iter()
            .find(|(p, _)| p.matches(sensor))
            .map_or(self.default, |(_, d)| *d);
        now_us.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX))
    }
}

struct Job {
    readings: Vec<Reading>,
    _room: OwnedSemaphorePermit,
    /// Gets the readings back once they are durable, or the error.
    ack: Option<oneshot::Sender<Result<Vec<Reading>, HistoryError>>>,
}

/// The store as callers see it.
pub struct StoreHandle {
    store: Arc<dyn HistoryStore>,
    tx: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
    max_queued: usize,
    queries: Arc<Semaphore>,
    /// Queries one owner may run at once.
    per_owner: usize,
    /// Queries running per owner (token id); entries go at zero.
    owners: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    dropped: AtomicU64,
    last_drop_log: std::sync::Mutex<Option<Instant>>,
    commit_latency: Arc<Histogram>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Starts the writer thread and the pruning task over `store`. At most
    /// `max_queued` readings wait for the writer; queries run in `slots`.
    #[must_use]
    pub fn start(
        store: Arc<dyn HistoryStore>,
        max_queued: usize,
        slots: QuerySlots,
        retention: Retention,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(MAX_JOBS);
        let writer_store = store.clone();
        let commit_latency = Arc::new(Histogram::default());
        let latency = commit_latency.clone();
        // A plain thread: it ends when the last handle is dropped, after
        // committing what was queued.
        let spawned = std::thread::Builder::new()
            .name("sensegate-store".to_owned())
            .spawn(move || writer_loop(&*writer_store, rx, &latency));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store writer; history is off");
        }
        tokio::spawn(prune_loop(store.clone(), retention, shutdown.clone()));
        Arc::new(Self {
            store,
            tx,
            room: Arc::new(Semaphore::new(max_queued)),
            max_queued,
            queries: Arc::new(Semaphore::new(slots.total)),
            per_owner: slots.per_token,
            owners: Arc::default(),
            dropped: AtomicU64::new(0),
            last_drop_log: std::sync::Mutex::new(None),
            commit_latency,
        })
    }

    /// A store that is only read (a site's history, kept by others): no
    /// writer thread and no pruning; queries run in `slots`, and a commit
    /// is refused.
    #[must_use]
    pub fn read_only(store: Arc<dyn HistoryStore>, slots: QuerySlots) -> Arc<Self> {
        // No writer: the receiver is dropped, so a commit finds the writer
        // gone and nothing is ever queued.
        let (tx, _) = mpsc::channel(1);
        Arc::new(Self {
            store,
            tx,
            room: Arc::new(Semaphore::new(0)),
            max_queued: 0,
            queries: Arc::new(Semaphore::new(slots.total)),
            per_owner: slots.per_token,
            owners: Arc::default(),
            dropped: AtomicU64::new(0),
            last_drop_log: std::sync::Mutex::new(None),
            commit_latency: Arc::new(Histogram::default()),
        })
    }

    /// Queues a source's readings for history without waiting. When the
    /// queue is full they are left out of history and counted.
    pub fn offer(&self, readings: &[Reading]) {
        if readings.is_empty() {
            return;
        }
        let permit = u32::try_from(readings.len())
            .ok()
            .and_then(|n| self.room.clone().try_acquire_many_owned(n).ok());
        let queued = permit.is_some_and(|room| {
            self.tx
                .try_send(Job {
                    readings: readings.to_vec(),
                    _room: room,
                    ack: None,
                })
                .is_ok()
        });
        if !queued {
            self.note_dropped(readings.len());
        }
    }

    /// Stores `readings` and returns them once they are durable (so the
    /// caller can publish them without keeping a copy meanwhile).
    ///
    /// # Errors
    /// [`HistoryError`] when the write failed or the writer is gone; then
    /// nothing may be acknowledged.
    pub async fn commit(&self, readings: Vec<Reading>) -> Result<Vec<Reading>, HistoryError> {
        let gone = || HistoryError::new("the store writer has stopped".to_owned());
        let n = u32::try_from(readings.len().min(self.max_queued)).unwrap_or(u32::MAX);
        // A queue that stays full (a disk slower than the devices) refuses
        // the push after a short wait, so the device hears "try again"
        // instead of waiting out its own timeout.
        let room =
            match tokio::time::timeout(ROOM_WAIT, self.room.clone().acquire_many_owned(n)).await {
                Ok(room) => room.map_err(|_| gone())?,
                Err(_) => {
                    return Err(HistoryError::refused(
                        HistoryErrorKind::QueueFull,
                        "the history queue is full",
                    ));
                }
            };
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job {
                readings,
                _room: room,
                ack: Some(ack),
            })
            .await
            .map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }

    /// Answers a history query on a blocking thread.
    ///
    /// # Errors
    /// [`HistoryError`].
    pub async fn history(&self, query: HistoryQuery) -> Result<History, HistoryError> {
        // The owner's share first, at once: a token over it is told so
        // rather than queued behind its own queries.
        let share =
            OwnerShare::take(&self.owners, &query.owner, self.per_owner).ok_or_else(|| {
                HistoryError::refused(
                    HistoryErrorKind::ShareTaken,
                    "too many history queries from this token at once",
                )
            })?;
        // Waiting for a slot is bounded like the query itself; the slot goes
        // with the query into its thread, so a caller that gives up does not
        // free a slot that is still in use.
        let slot = tokio::time::timeout(QUERY_WAIT, self.queries.clone().acquire_owned())
            .await
            .map_err(|_| {
                HistoryError::refused(HistoryErrorKind::Busy, "too many history queries at once")
            })?
            .map_err(|_| HistoryError::new("the store is closed".to_owned()))?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = (slot, share);
            store.history(&query)
        })
        .await
        .map_err(|e| HistoryError::new(e.to_string()))?
    }

    /// How long the writer's commits took (one per group of jobs).
    #[must_use]
    pub fn commit_latency(&self) -> &Histogram {
        &self.commit_latency
    }

    /// The size of the store's write-ahead log, where it has one.
    #[must_use]
    pub fn wal_bytes(&self) -> Option<u64> {
        self.store.wal_bytes()
    }

    /// Readings left out of history because the queue was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn note_dropped(&self, n: usize) {
        let total = self
            .dropped
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        let mut last = self
            .last_drop_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            drop(last);
            tracing::warn!(
                dropped_total = total + u64::try_from(n).unwrap_or(0),
                "history store queue full: source readings left out of history"
            );
        }
    }
}

fn writer_loop(store: &dyn HistoryStore, mut rx: mpsc::Receiver<Job>, latency: &Histogram) {
    while let Some(first) = rx.blocking_recv() {
        let mut rows = first.readings.len();
        let mut jobs = vec![first];
        while rows < MAX_COMMIT_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.readings.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let batches: Vec<&[Reading]> = jobs.iter().map(|j| j.readings.as_slice()).collect();
        let started = Instant::now();
        let result = store.write(&batches);
        latency.observe(started.elapsed());
        if let Err(e) = &result {
            tracing::error!(error = %e, rows, "history write failed");
        }
        for job in jobs {
            if let Some(ack) = job.ack {
                let _ = ack.send(result.clone().map(|()| job.readings));
            }
        }
    }
}

async fn prune_loop(
    store: Arc<dyn HistoryStore>,
    retention: Retention,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(retention.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = Arc::new(retention);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Small steps, each its own short transaction, until nothing is left.
        loop {
            let (store, retention) = (store.clone(), retention.clone());
            let now = now_us();
            let step = tokio::task::spawn_blocking(move || {
                store.prune(&|name| retention.cutoff(name, now), PRUNE_STEP_ROWS)
            })
            .await;
            match step {
                Ok(Ok(step)) if step.more && !shutdown.is_cancelled() => {
                    tokio::task::yield_now().await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "pruning history failed");
                    break;
                }
                Ok(Ok(_)) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_holds_at_most_its_share_of_the_query_slots() {
        let owners = Arc::default();
        let a: Vec<_> = (0..2)
            .map(|_| OwnerShare::take(&owners, "a", 2).unwrap())
            .collect();
        assert!(
            OwnerShare::take(&owners, "a", 2).is_none(),
            "past a's share"
        );
        let b = OwnerShare::take(&owners, "b", 2).unwrap();
        // The daemon's own queries need no share.
        assert!(OwnerShare::take(&owners, "", 2).unwrap().owner.is_none());
        drop(a);
        assert!(OwnerShare::take(&owners, "a", 2).is_some());
        drop(b);
        assert!(owners.lock().unwrap().is_empty());
    }

    /// A backend whose writes wait until the test lets them through.
    struct Stuck(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

    impl HistoryStore for Stuck {
        fn write(&self, _: &[&[Reading]]) -> Result<(), HistoryError> {
            let _ = self.0.lock().unwrap().recv();
            Ok(())
        }
        fn history(&self, _: &HistoryQuery) -> Result<History, HistoryError> {
            Err(HistoryError::new("no history"))
        }
        fn prune(
            &self,
            _: &dyn Fn(&str) -> i64,
            _: usize,
        ) -> Result<super::super::PruneStep, HistoryError> {
            Ok(super::super::PruneStep {
                deleted: 0,
                more: false,
            })
        }
    }

    fn reading(n: i64) -> Reading {
        Reading {
            sensor: Arc::from("s"),
            timestamp_us: n,
            value: 1.0,
            quality: crate::reading::Quality::Good,
        }
    }

    /// A queue that stays full refuses a push after [`ROOM_WAIT`] instead
    /// of holding it until the device's own timeout, and takes pushes
    /// again once the writer moves on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_that_stays_full_refuses_a_push_as_busy() {
        let (release, gate) = std::sync::mpsc::sync_channel(2);
        let shutdown = CancellationToken::new();
        let store = StoreHandle::start(
            Arc::new(Stuck(std::sync::Mutex::new(gate))),
            1,
            QuerySlots {
                total: 1,
                per_token: 1,
            },
            retention(),
            &shutdown,
        );
        // The first takes the queue's one place and is held in the write.
        let first = tokio::spawn({
            let store = store.clone();
            async move { store.commit(vec![reading(1)]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let second = store.commit(vec![reading(2)]).await;
        assert_eq!(second.unwrap_err().kind, HistoryErrorKind::QueueFull);
        let waited = started.elapsed();
        assert!(waited >= ROOM_WAIT && waited < ROOM_WAIT * 3, "{waited:?}");
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        release.send(()).unwrap();
        store.commit(vec![reading(3)]).await.unwrap();
        shutdown.cancel();
    }

    fn retention() -> Retention {
        Retention {
            default: Duration::from_secs(86_400),
            rules: vec![(Pattern::new("short/*"), Duration::from_secs(1))],
            every: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_the_cutoff() {
        let r = retention();
        assert_eq!(r.cutoff("short/x", 10_000_000), 9_000_000);
        assert_eq!(
            r.cutoff("other", 100_000_000_000),
            100_000_000_000 - 86_400_000_000
        );
    }
}
