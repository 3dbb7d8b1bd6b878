//! History queries of a site view, answered from the site's database:
//! [`PgHistory`] is the read-only [`HistoryStore`] behind the core's
//! [`crate::store::writer::StoreHandle`] (which bounds how many run at once
//! and per token, and runs each on a blocking thread).
//!
//! A query is one statement on the readings table's key (gateway, sensor,
//! time), under `history.timeout_ms` on the server and here, with one row
//! more than the limit asked for (to tell a cut answer). Buckets start at
//! the query's `from`, as the local store's do.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::Client;

use std::sync::atomic::Ordering::Relaxed;

use super::{
    AbortOnDrop, Place, SiteConfig, SiteIndex, SiteStats, instant, micros, quality, session,
};
use crate::store::{Bucket, History, HistoryError, HistoryQuery, HistoryStore, PruneStep, Row};
use crate::uplink::postgres::{PgError, query_capped};

/// A session kept for the next query (its task aborted when dropped).
struct Pooled {
    client: Client,
    _driver: AbortOnDrop,
}

/// The site's history, read-only.
pub struct PgHistory {
    config: SiteConfig,
    index: Arc<SiteIndex>,
    /// Rows left out are counted here.
    stats: Arc<SiteStats>,
    runtime: tokio::runtime::Handle,
    /// Idle sessions, at most `max_idle`.
    idle: Mutex<Vec<Pooled>>,
    max_idle: usize,
}

impl std::fmt::Debug for PgHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHistory")
            .field("table", &self.config.pg.table)
            .finish_non_exhaustive()
    }
}

impl PgHistory {
    /// Queries `config`'s database for the sensors of `index`, on
    /// `runtime`, keeping up to `max_idle` sessions open between queries
    /// (the number of query slots: no more run at once).
    #[must_use]
    pub fn new(
        config: SiteConfig,
        index: Arc<SiteIndex>,
        stats: Arc<SiteStats>,
        runtime: tokio::runtime::Handle,
        max_idle: usize,
    ) -> Self {
        Self {
            config,
            index,
            stats,
            runtime,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    async fn run(&self, place: &Place, q: &HistoryQuery) -> Result<History, PgError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .filter(|p| !p.client.is_closed());
        let was_pooled = pooled.is_some();
        let pooled = if let Some(p) = pooled {
            p
        } else {
            Self::fresh(&self.config).await?
        };
        let (pooled, out) = match self.ask(&pooled.client, place, q).await {
            Ok(out) => (pooled, out),
            // A kept session the server or the network closed meanwhile:
            // once more, on a new one.
            Err(_) if was_pooled && pooled.client.is_closed() => {
                let fresh = Self::fresh(&self.config).await?;
                let out = self.ask(&fresh.client, place, q).await?;
                (fresh, out)
            }
            Err(e) => return Err(e),
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(pooled);
        }
        Ok(out)
    }

    async fn fresh(config: &SiteConfig) -> Result<Pooled, PgError> {
        let (client, driver) = session(config, "queries").await?;
        Ok(Pooled {
            client,
            _driver: driver,
        })
    }

    async fn ask(&self, c: &Client, place: &Place, q: &HistoryQuery) -> Result<History, PgError> {
        if q.bucket_us == 0 {
            self.rows(c, place, q).await
        } else {
            self.buckets(c, place, q).await
        }
    }

    async fn rows(&self, c: &Client, place: &Place, q: &HistoryQuery) -> Result<History, PgError> {
        let t = &self.config.pg.table;
        let more = q.limit.saturating_add(1);
        let limit = i64::try_from(more).unwrap_or(i64::MAX);
        let found = query_capped(
            c,
            &format!(
                "SELECT time, value, quality FROM \"{t}\" \
                 WHERE gateway = $1::text::uuid AND sensor = $2 AND time >= $3 AND time < $4 \
                 ORDER BY time LIMIT $5"
            ),
            &[
                &place.gateway,
                &place.sensor,
                &instant(q.from_us),
                &instant(q.to_us),
                &limit,
            ],
            more,
        )
        .await?;
        let mut out = History::default();
        for r in &found {
            let (Ok(t), Ok(value), Ok(code)) = (r.try_get(0), r.try_get::<_, f64>(1), r.try_get(2))
            else {
                self.stats.refused.fetch_add(1, Relaxed);
                continue;
            };
            let Some(quality) = quality(code).filter(|_| value.is_finite()) else {
                self.stats.refused.fetch_add(1, Relaxed);
                continue;
            };
            out.rows.push(Row {
                timestamp_us: micros(t),
                value,
                quality,
            });
        }
        out.truncated = found.len() > q.limit;
        out.rows.truncate(q.limit);
        Ok(out)
    }

    async fn buckets(
        &self,
        c: &Client,
        place: &Place,
        q: &HistoryQuery,
    ) -> Result<History, PgError> {
        let t = &self.config.pg.table;
        let more = q.limit.saturating_add(1);
        let limit = i64::try_from(more).unwrap_or(i64::MAX);
        // Non-finite values are left out, as a query of rows leaves them.
        let found = query_capped(
            c,
            &format!(
                "SELECT b, min(value), max(value), avg(value), count(*) FROM ( \
                   SELECT floor((extract(epoch FROM time) * 1000000 - $7::text::numeric) / $5::int8)::int8 \
                     AS b, value \
                   FROM \"{t}\" WHERE gateway = $1::text::uuid AND sensor = $2 \
                     AND time >= $3 AND time < $4 \
                     AND value <> 'NaN' AND value <> 'Infinity' AND value <> '-Infinity' \
                     AND quality BETWEEN 0 AND 2) x \
                 GROUP BY b ORDER BY b LIMIT $6"
            ),
            &[
                &place.gateway,
                &place.sensor,
                &instant(q.from_us),
                &instant(q.to_us),
                &q.bucket_us,
                &limit,
                // Buckets count from `from` itself, however far before the
                // earliest time the server holds it lies.
                &q.from_us.to_string(),
            ],
            more,
        )
        .await?;
        let mut out = History::default();
        for r in &found {
            let (Ok(b), Ok(min), Ok(max), Ok(mean), Ok(count)) = (
                r.try_get::<_, i64>(0),
                r.try_get::<_, f64>(1),
                r.try_get::<_, f64>(2),
                r.try_get::<_, f64>(3),
                r.try_get::<_, i64>(4),
            ) else {
                self.stats.refused.fetch_add(1, Relaxed);
                continue;
            };
            if !(min.is_finite() && max.is_finite() && mean.is_finite()) || b < 0 {
                self.stats.refused.fetch_add(1, Relaxed);
                continue;
            }
            out.buckets.push(Bucket {
                start_us: q.from_us.saturating_add(b.saturating_mul(q.bucket_us)),
                min,
                max,
                mean,
                count: u64::try_from(count).unwrap_or(0),
            });
        }
        out.truncated = found.len() > q.limit;
        out.buckets.truncate(q.limit);
        Ok(out)
    }
}

impl HistoryStore for PgHistory {
    fn write(&self, _batches: &[&[crate::reading::Reading]]) -> Result<(), HistoryError> {
        Err(HistoryError::new("a site view's history is read-only"))
    }

    fn history(&self, q: &HistoryQuery) -> Result<History, HistoryError> {
        // A name the site does not have (yet) has no history, as on a
        // gateway.
        let Some(place) = self.index.get(&q.sensor) else {
            return Ok(History::default());
        };
        // On a blocking thread (the store handle's): waiting here holds
        // no runtime thread.
        let answer = self.runtime.block_on(async {
            tokio::time::timeout(self.config.timeout, self.run(&place, q)).await
        });
        match answer {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(HistoryError::new(format!("site database: {e}"))),
            Err(_) => Err(HistoryError::new(format!(
                "site database: no answer within {:?}",
                self.config.timeout
            ))),
        }
    }

    fn prune(
        &self,
        _cutoff: &dyn Fn(&str) -> i64,
        _max_rows: usize,
    ) -> Result<PruneStep, HistoryError> {
        // The site's retention is its database's (docs/site.md).
        Ok(PruneStep {
            deleted: 0,
            more: false,
        })
    }
}
