//! History on this box: the core's store trait and writer
//! ([`sensegate_core::store`]), and the SQLite backend behind them.

pub use sensegate_core::store::*;

pub mod chunk;
pub mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use sqlite::Durability;
use writer::{QuerySlots, Retention};

/// History settings, validated.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Whether readings are kept.
    pub enabled: bool,
    /// The database file; `None` for `data_dir/history.db`.
    pub path: Option<PathBuf>,
    /// Durability of a commit.
    pub durability: Durability,
    /// Retention by age.
    pub retention: Retention,
    /// Readings waiting for the writer, at most.
    pub max_queued_readings: usize,
    /// History queries at once, in all and per token.
    pub queries: QuerySlots,
}

impl PartialEq for StoreConfig {
    fn eq(&self, other: &Self) -> bool {
        let rules = |s: &Self| -> Vec<(String, Duration)> {
            s.retention
                .rules
                .iter()
                .map(|(p, d)| (p.as_str().to_owned(), *d))
                .collect()
        };
        self.enabled == other.enabled
            && self.path == other.path
            && self.durability == other.durability
            && self.retention.default == other.retention.default
            && self.retention.every == other.retention.every
            && rules(self) == rules(other)
            && self.max_queued_readings == other.max_queued_readings
            && self.queries == other.queries
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            durability: Durability::Full,
            retention: Retention {
                default: Duration::from_secs(30 * 86_400),
                rules: Vec::new(),
                every: Duration::from_secs(60),
            },
            max_queued_readings: 100_000,
            queries: QuerySlots::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use super::sqlite::{Durability, SqliteStore};
    use super::writer::{QuerySlots, Retention, StoreHandle};
    use super::{HistoryQuery, HistoryStore};
    use crate::pattern::Pattern;
    use crate::reading::{Quality, Reading, now_us};

    /// `n` readings of the last `n` µs (recent: old ones would be pruned
    /// at once by the retention task).
    fn readings(sensor: &str, n: i64) -> Vec<Reading> {
        let s: Arc<str> = Arc::from(sensor);
        let base = now_us() - n;
        (0..n)
            .map(|i| Reading {
                sensor: s.clone(),
                timestamp_us: base + i,
                value: 1.0,
                quality: Quality::Good,
            })
            .collect()
    }

    fn retention() -> Retention {
        Retention {
            default: Duration::from_secs(86_400),
            rules: vec![(Pattern::new("short/*"), Duration::from_secs(1))],
            every: Duration::from_secs(3600),
        }
    }

    /// The core's writer over the SQLite backend.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_acknowledged_once_durable_and_offers_past_the_cap_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HistoryStore> =
            Arc::new(SqliteStore::open(&dir.path().join("h.db"), Durability::Full).unwrap());
        let stop = CancellationToken::new();
        let h = StoreHandle::start(
            store.clone(),
            100,
            QuerySlots::default(),
            retention(),
            &stop,
        );
        // Concurrent acknowledged commits: all durable when they return.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.commit(readings(&format!("d{i}"), 50)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        for i in 0..8 {
            let q = HistoryQuery {
                sensor: format!("d{i}"),
                from_us: 0,
                to_us: i64::MAX,
                bucket_us: 0,
                limit: 1000,
                owner: String::new(),
            };
            assert_eq!(h.history(q).await.unwrap().rows.len(), 50);
        }
        // An offer bigger than the whole queue is left out and counted.
        h.offer(&readings("big", 101));
        assert_eq!(h.dropped(), 101);
        stop.cancel();
    }
}
