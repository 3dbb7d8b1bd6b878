//! The site view's source: learns the site's sensors from the database and
//! reads their newest readings every `history.poll_ms`, so the catalog
//! (latest values, lists) and the hub (subscriptions, live charts) are fed
//! as a gateway's sources feed them.
//!
//! Sensors are named `<gateway>/<sensor>`: the gateway's name (its
//! `server.name`) when that is a valid name segment that no other gateway
//! of the site took first (in the order the site's sensors were added),
//! else its id. The newest readings of each sensor come with one index
//! descent per sensor (a lateral join on the table's key), after a cursor
//! per sensor: readings that reach the database late, behind the cursor
//! (a gateway's backlog replayed after an outage), are in history but not
//! replayed live; readings dated ahead of the database server's clock are
//! shown live once their time has come.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sensegate_core::service::SourceSink;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering::Relaxed;

use super::{Place, SiteConfig, SiteIndex, SiteStats, micros, quality, session};
use crate::reading::Reading;
use crate::uplink::backoff::Backoff;
use crate::uplink::postgres::{PgError, check_schema, query_capped};
use sensegate_core::RegisterError;

/// Sensors asked for in one statement, at most.
const SENSORS_PER_STATEMENT: usize = 5_000;
/// New sensors learned in one poll, at most (the rest next poll).
const NEW_SENSORS_PER_POLL: usize = 10_000;
/// Longest gateway name taken as a prefix (as `server.name`).
const MAX_GATEWAY_NAME: usize = 64;

/// A sensor followed.
struct Followed {
    id: i32,
    name: Arc<str>,
    /// The newest reading's time read so far; `None` before the first
    /// poll that asked.
    after_us: Option<i64>,
}

/// What the follower knows, kept across reconnections.
struct Follower {
    sink: SourceSink,
    config: SiteConfig,
    index: Arc<SiteIndex>,
    sensors: Vec<Followed>,
    /// Position in `sensors` by id.
    by_id: HashMap<i32, usize>,
    /// The highest sensor id looked at.
    after_id: i32,
    /// Each gateway's prefix, by id.
    prefixes: HashMap<String, Arc<str>>,
    taken: HashSet<Arc<str>>,
    /// The catalog is full: no more sensors are learned (warned once).
    full: bool,
    /// Rows refused (a bad value, quality or name), for the log.
    refused: u64,
    /// When `refused` was last logged.
    refused_logged: Option<(std::time::Instant, u64)>,
    /// Polls through since the last connection.
    polls: u64,
    /// Where in `sensors` the next poll starts.
    resume_at: usize,
    /// What `/metrics` shows.
    stats: Arc<SiteStats>,
}

/// Follows the site's database until `stop`.
pub async fn run(
    sink: SourceSink,
    config: SiteConfig,
    index: Arc<SiteIndex>,
    stats: Arc<SiteStats>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        Backoff::seed(),
    );
    let mut f = Follower {
        sink,
        config,
        index,
        sensors: Vec::new(),
        by_id: HashMap::new(),
        after_id: 0,
        prefixes: HashMap::new(),
        taken: HashSet::new(),
        full: false,
        refused: 0,
        refused_logged: None,
        polls: 0,
        resume_at: 0,
        stats,
    };
    loop {
        f.polls = 0;
        let error = tokio::select! {
            () = stop.cancelled() => return,
            e = f.connected() => e,
        };
        f.stats.connected.store(false, Relaxed);
        f.stats.failures.fetch_add(1, Relaxed);
        // Up once a poll went through: the backoff starts again then.
        if f.polls > 0 {
            backoff.reset();
            tracing::warn!(error = %error, "site database: connection lost; reconnecting");
        } else {
            tracing::warn!(error = %error, "site database: cannot follow it; trying again");
        }
        let wait = backoff.next_delay();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

impl Follower {
    /// Connects, checks the schema, and polls until something fails.
    async fn connected(&mut self) -> PgError {
        let (client, driver) = match session(&self.config, "follower").await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let _driver = AbortOnDrop(driver);
        let checked = tokio::time::timeout(
            self.config.timeout,
            check_schema(&client, &self.config.pg.table),
        )
        .await;
        match checked {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return e,
            Err(_) => return timed_out(),
        }
        tracing::info!(table = %self.config.pg.table, "site database: following");
        self.stats.connected.store(true, Relaxed);
        let mut tick = tokio::time::interval(self.config.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(self.config.timeout, self.poll(&client)).await {
                Ok(Ok(())) => self.polls += 1,
                Ok(Err(e)) => return e,
                Err(_) => return timed_out(),
            }
        }
    }

    /// One poll: new sensors, then the newest readings of every sensor.
    async fn poll(&mut self, c: &Client) -> Result<(), PgError> {
        if !self.full {
            self.discover(c).await?;
        }
        let mut readings = Vec::new();
        // Every row of the poll counts against `history.max_rows_per_poll`:
        // first sights (one row each at most) first, then a share of what
        // is left for each sensor followed.
        let mut budget = self.config.max_rows_per_poll;
        let first: Vec<usize> = (0..self.sensors.len())
            .filter(|&i| self.sensors[i].after_us.is_none())
            .take(budget)
            .collect();
        budget -= first.len();
        let mut seen_first = vec![false; self.sensors.len()];
        for &i in &first {
            seen_first[i] = true;
        }
        for part in first.chunks(SENSORS_PER_STATEMENT) {
            self.latest(c, part, &mut readings).await?;
        }
        // From where the last poll that ran out of rows stopped, so every
        // sensor has its turn when the budget cannot cover them all.
        let n = self.sensors.len();
        let start = self.resume_at.min(n);
        let known: Vec<usize> = (start..n)
            .chain(0..start)
            .filter(|&i| self.sensors[i].after_us.is_some() && !seen_first[i])
            .collect();
        self.resume_at = 0;
        if budget > 0 && !known.is_empty() {
            let each = (budget / known.len()).max(1);
            for part in known.chunks(SENSORS_PER_STATEMENT) {
                let taken = self.newer(c, part, each, budget, &mut readings).await?;
                budget -= taken;
                if budget == 0 {
                    break;
                }
            }
        }
        let rows = u64::try_from(self.config.max_rows_per_poll - budget).unwrap_or(u64::MAX);
        self.stats.polled(rows, readings.len(), self.sensors.len());
        if !readings.is_empty() {
            self.sink.ingest(&readings);
        }
        self.stats.refused.store(self.refused, Relaxed);
        self.log_refused();
        Ok(())
    }

    /// Says how many rows were left out, at most once a minute.
    fn log_refused(&mut self) {
        let logged = self.refused_logged.map_or(0, |(_, n)| n);
        if self.refused == logged
            || self
                .refused_logged
                .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.refused_logged = Some((std::time::Instant::now(), self.refused));
        tracing::warn!(
            refused_total = self.refused,
            "site database: rows that are not valid readings or sensors (an invalid name, \
             value or quality) were left out"
        );
    }

    /// Learns sensors added since the last poll.
    async fn discover(&mut self, c: &Client) -> Result<(), PgError> {
        let t = self.config.pg.table.clone();
        let mut learned = 0;
        while learned < NEW_SENSORS_PER_POLL && !self.full {
            let rows = query_capped(
                c,
                &format!(
                    "SELECT id, gateway::text, name FROM \"{t}_sensors\" \
                     WHERE id > $1 ORDER BY id LIMIT 1000"
                ),
                &[&self.after_id],
                1000,
            )
            .await?;
            let found: Vec<(i32, String, String)> = rows
                .iter()
                .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
                .collect();
            if found.len() != rows.len() {
                return Err(PgError::Schema(
                    "a row of the sensors table does not have the documented types".to_owned(),
                ));
            }
            let unknown: Vec<&str> = found
                .iter()
                .map(|(_, g, _)| g.as_str())
                .filter(|g| !self.prefixes.contains_key(*g))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let names = self.gateway_names(c, &unknown).await?;
            for (id, gateway, name) in &found {
                // In the order sensors were added: a name taken here stays
                // its gateway's.
                let prefix = self.prefix(gateway, names.get(gateway.as_str()));
                if !self.learn(*id, gateway, &prefix, name) {
                    break;
                }
                self.after_id = (*id).max(self.after_id);
                learned += 1;
            }
            if rows.len() < 1000 {
                break;
            }
        }
        Ok(())
    }

    /// The names of `gateways` (ids), from the gateways table.
    async fn gateway_names(
        &self,
        c: &Client,
        gateways: &[&str],
    ) -> Result<HashMap<String, String>, PgError> {
        if gateways.is_empty() {
            return Ok(HashMap::new());
        }
        let t = &self.config.pg.table;
        let ids: Vec<&str> = gateways.to_vec();
        let rows = query_capped(
            c,
            &format!(
                "SELECT id::text, name FROM \"{t}_gateways\" WHERE id = ANY($1::text[]::uuid[])"
            ),
            &[&ids],
            ids.len(),
        )
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect())
    }

    /// The prefix of `gateway` (an id), named `name` in the gateways
    /// table: the name when it is a valid name segment not taken by another
    /// gateway, else the id.
    fn prefix(&mut self, gateway: &str, name: Option<&String>) -> Arc<str> {
        if let Some(p) = self.prefixes.get(gateway) {
            return p.clone();
        }
        let usable = name.filter(|n| {
            crate::sources::config::is_name(n, MAX_GATEWAY_NAME)
                && !n.contains('/')
                && !self.taken.contains(n.as_str())
        });
        let prefix: Arc<str> = Arc::from(usable.map_or(gateway, String::as_str));
        self.taken.insert(prefix.clone());
        self.prefixes.insert(gateway.to_owned(), prefix.clone());
        prefix
    }

    /// Registers one sensor; `false` when the catalog is full (the
    /// follower then learns no more sensors).
    fn learn(&mut self, id: i32, gateway: &str, prefix: &str, name: &str) -> bool {
        let full_name = format!("{prefix}/{name}");
        let max = self.sink.limits().message.max_name_bytes;
        if !sensegate_proto::envelope::is_name(&full_name, max) {
            self.refused += 1;
            return true;
        }
        match self.sink.register(&full_name, "") {
            Ok(shared) => {
                self.index.insert(
                    shared.clone(),
                    Place {
                        gateway: gateway.to_owned(),
                        sensor: id,
                    },
                );
                self.by_id.insert(id, self.sensors.len());
                self.sensors.push(Followed {
                    id,
                    name: shared,
                    after_us: None,
                });
                true
            }
            Err(RegisterError::Full(e)) => {
                self.full = true;
                tracing::warn!(
                    max = e.max,
                    "site database: the catalog is full (limits.max_sensors); \
                     the site's other sensors are left out"
                );
                false
            }
            Err(RegisterError::Taken { .. }) => true,
        }
    }

    /// The newest valid reading of each of `part` (first sight), up to
    /// the server's now.
    async fn latest(
        &mut self,
        c: &Client,
        part: &[usize],
        out: &mut Vec<Reading>,
    ) -> Result<(), PgError> {
        let t = &self.config.pg.table;
        let ids: Vec<i32> = part.iter().map(|&i| self.sensors[i].id).collect();
        let rows = query_capped(
            c,
            &format!(
                "SELECT c.id, r.time, r.value, r.quality FROM unnest($1::int4[]) AS c(id) \
                 JOIN \"{t}_sensors\" s ON s.id = c.id \
                 CROSS JOIN LATERAL (SELECT x.time, x.value, x.quality FROM \"{t}\" x \
                   WHERE x.gateway = s.gateway AND x.sensor = s.id AND x.time <= now() \
                     AND x.value <> 'NaN' AND x.value <> 'Infinity' \
                     AND x.value <> '-Infinity' AND x.quality BETWEEN 0 AND 2 \
                   ORDER BY x.time DESC LIMIT 1) r"
            ),
            &[&ids],
            ids.len(),
        )
        .await?;
        // Sensors without readings follow from the epoch on.
        for &i in part {
            self.sensors[i].after_us = Some(0);
        }
        self.take(&rows, out);
        Ok(())
    }

    /// Readings of `part` newer than each one's cursor and not in the
    /// server's future, at most a share of `history.max_rows_per_poll`
    /// each. A row dated ahead (a gateway's clock runs fast) waits for its
    /// time: taken now, it would move the cursor past the readings that
    /// arrive meanwhile.
    async fn newer(
        &mut self,
        c: &Client,
        part: &[usize],
        each: usize,
        budget: usize,
        out: &mut Vec<Reading>,
    ) -> Result<usize, PgError> {
        let t = &self.config.pg.table;
        let ids: Vec<i32> = part.iter().map(|&i| self.sensors[i].id).collect();
        let after: Vec<std::time::SystemTime> = part
            .iter()
            .map(|&i| super::instant(self.sensors[i].after_us.unwrap_or(0)))
            .collect();
        let each = i64::try_from(each).unwrap_or(i64::MAX);
        let rows = query_capped(
            c,
            &format!(
                "SELECT c.id, r.time, r.value, r.quality \
                 FROM unnest($1::int4[], $2::timestamptz[]) WITH ORDINALITY AS c(id, after, n) \
                 JOIN \"{t}_sensors\" s ON s.id = c.id \
                 CROSS JOIN LATERAL (SELECT x.time, x.value, x.quality FROM \"{t}\" x \
                   WHERE x.gateway = s.gateway AND x.sensor = s.id AND x.time > c.after \
                     AND x.time <= now() \
                   ORDER BY x.time LIMIT $3) r \
                 ORDER BY c.n, r.time"
            ),
            &[&ids, &after, &each],
            budget,
        )
        .await?;
        if rows.len() >= budget {
            // Cut short: the next poll starts at the sensor it stopped in.
            let last = rows.last().and_then(|r| r.try_get::<_, i32>(0).ok());
            self.resume_at = last
                .and_then(|id| self.by_id.get(&id).copied())
                .unwrap_or(0);
        }
        self.take(&rows, out);
        Ok(rows.len())
    }

    /// Turns rows (sensor id, time, value, quality) into readings, moving
    /// each sensor's cursor; rows that are not readings are left out.
    fn take(&mut self, rows: &[tokio_postgres::Row], out: &mut Vec<Reading>) {
        for r in rows {
            let (Ok(id), Ok(time), Ok(value), Ok(code)) = (
                r.try_get::<_, i32>(0),
                r.try_get::<_, std::time::SystemTime>(1),
                r.try_get::<_, f64>(2),
                r.try_get::<_, i16>(3),
            ) else {
                self.refused += 1;
                continue;
            };
            let Some(&i) = self.by_id.get(&id) else {
                continue;
            };
            let us = micros(time);
            let s = &mut self.sensors[i];
            s.after_us = Some(s.after_us.map_or(us, |a| a.max(us)));
            let Some(quality) = quality(code).filter(|_| value.is_finite()) else {
                self.refused += 1;
                continue;
            };
            out.push(Reading {
                sensor: s.name.clone(),
                timestamp_us: us,
                value,
                quality,
            });
        }
    }
}

fn timed_out() -> PgError {
    PgError::Io(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// Aborts the connection's task when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
