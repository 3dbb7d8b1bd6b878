//! History: where readings are kept, and the queries over them.
//!
//! - [`HistoryStore`] is the small trait a backend implements (write a group of
//!   batches in one transaction, answer a history query, prune old rows).
//!   The daemon's SQLite backend implements it today; a PostgreSQL one can
//!   be added behind the same trait without touching callers.
//! - [`writer`] is what callers use: [`writer::StoreHandle`] queues readings
//!   for one writer thread that commits everything queued at once (group
//!   commit), acknowledges a device's push only after its commit, runs
//!   history queries on a blocking thread, and prunes by age in small steps.
//!
//! Every queue is bounded: at most `store.max_queued_readings` readings wait
//! for the writer. Source readings that find it full are left out of history
//! and counted (live data goes on); a push waits for room, and is
//! acknowledged only once it is durable.

pub mod writer;

use crate::reading::{Quality, Reading};

/// A backend failed, or refused work for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history store: {message}")]
pub struct HistoryError {
    /// What failed.
    pub message: String,
    /// What a caller may do about it.
    pub kind: HistoryErrorKind,
}

/// What kind of failure a [`HistoryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryErrorKind {
    /// The backend failed.
    Failed,
    /// The disk (or the database's quota) is full: nothing was written, and
    /// writes will succeed again once space is freed.
    Full,
    /// Every query slot is taken: nothing ran; the same query may succeed
    /// in a moment.
    Busy,
    /// The asker holds its share of the query slots already: nothing ran.
    ShareTaken,
    /// The writer's queue stayed full: nothing was queued; a write may
    /// succeed in a moment.
    QueueFull,
}

impl HistoryError {
    /// A failure described by `message`.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: HistoryErrorKind::Failed,
        }
    }

    /// A refusal for now, of `kind` [`HistoryErrorKind::Busy`] or
    /// [`HistoryErrorKind::ShareTaken`].
    #[must_use]
    pub fn refused(kind: HistoryErrorKind, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind,
        }
    }
}

/// A history query, validated by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The sensor.
    pub sensor: String,
    /// Start, inclusive, µs since the epoch.
    pub from_us: i64,
    /// End, exclusive.
    pub to_us: i64,
    /// 0 for raw readings, else the bucket width in µs.
    pub bucket_us: i64,
    /// Most rows returned.
    pub limit: usize,
    /// Who asks (a token id): each may hold only its share of the query
    /// slots. Empty for the daemon itself.
    pub owner: String,
}

/// Aggregates of one time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket.
    pub start_us: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Readings in it.
    pub count: u64,
}

/// A raw reading from history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// When.
    pub timestamp_us: i64,
    /// The value.
    pub value: f64,
    /// Its quality.
    pub quality: Quality,
}

/// What a history query found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Raw readings (when the query had no bucket).
    pub rows: Vec<Row>,
    /// Buckets (when it had one).
    pub buckets: Vec<Bucket>,
    /// The limit cut the answer short.
    pub truncated: bool,
}

/// A history backend. Writes come from one thread at a time; queries and
/// pruning may come from others.
pub trait HistoryStore: Send + Sync + 'static {
    /// Writes every batch in one durable transaction.
    ///
    /// # Errors
    /// [`HistoryError`]; then none of the batches is stored.
    fn write(&self, batches: &[&[Reading]]) -> Result<(), HistoryError>;

    /// Answers a query.
    ///
    /// # Errors
    /// [`HistoryError`].
    fn history(&self, query: &HistoryQuery) -> Result<History, HistoryError>;

    /// One pruning step: deletes at most `max_rows` readings older than
    /// their sensor's cutoff (`cutoff(name)`, µs since the epoch), in one
    /// short transaction. Call again while [`PruneStep::more`] is set.
    ///
    /// # Errors
    /// [`HistoryError`].
    fn prune(
        &self,
        cutoff: &dyn Fn(&str) -> i64,
        max_rows: usize,
    ) -> Result<PruneStep, HistoryError>;

    /// The size of the write-ahead log, where the backend has one.
    fn wal_bytes(&self) -> Option<u64> {
        None
    }
}

/// What one pruning step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneStep {
    /// Rows deleted.
    pub deleted: usize,
    /// Sensors remain to be visited in this pass.
    pub more: bool,
}
