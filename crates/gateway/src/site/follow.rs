//! The site view's source: learns the site's sensors from the database and
//! reads their newest readings every `history.poll_ms`, so the catalog
//! (latest values, lists) and the hub (subscriptions, live charts) are fed
//! as a gateway's sources feed them.
//!
//! Sensors are named `<gateway>/<sensor>`: the gateway's name (its
//! `server.name`) when that is a valid name segment, does not look like a
//! gateway id, and no other gateway of the site took it first, else its
//! id. A gateway's prefix is pinned at first sight in the data directory
//! (`site-gateways.txt`), so a gateway that renames itself in the database
//! (or another's row, where the site has no row-level security) cannot
//! move its readings under another's name, and so scopes.
//!
//! The newest readings of each sensor come with one index descent per
//! sensor (a lateral join on the table's key), after a cursor per sensor,
//! at most `history.max_rows_per_poll` rows a poll: a share each, what is
//! left over to the sensors that had more, a poll cut short resumes there.
//! Readings that reach the database behind a sensor's cursor (pushed out
//! of order) are in history but not live; readings dated ahead of the
//! database server's clock are shown once their time has come. Every
//! statement has its own deadline, and what one statement read is taken in
//! before the next runs, so a failed poll loses nothing it moved past.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sensegate_core::RegisterError;
use sensegate_core::service::SourceSink;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use std::sync::atomic::Ordering::Relaxed;

use super::{Place, SiteConfig, SiteIndex, SiteStats, micros, quality, session, timed_out};
use crate::reading::Reading;
use crate::uplink::backoff::Backoff;
use crate::uplink::postgres::{PgError, check_schema, query_capped};

/// Sensors asked for in one statement, at most.
const SENSORS_PER_STATEMENT: usize = 5_000;
/// New sensors learned in one poll, at most (the rest next poll).
const NEW_SENSORS_PER_POLL: usize = 10_000;
/// Sensors read by one discovery statement.
const DISCOVER_ROWS: usize = 1_000;
/// Longest gateway name taken as a prefix (as `server.name`).
const MAX_GATEWAY_NAME: usize = 64;
/// Passes of a poll over the sensors that had more than their share.
const SHARE_PASSES: usize = 3;
/// Longest line of the pinned-prefix file (an id, a space, a prefix, a
/// newline): the file is read up to `limits.max_sensors` of them.
const MAX_PIN_LINE: usize = 36 + 1 + MAX_GATEWAY_NAME + 1;

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
    /// Each gateway's prefix, by id (at most `limits.max_sensors`).
    prefixes: HashMap<String, Arc<str>>,
    taken: HashSet<Arc<str>>,
    /// Where prefixes are pinned, if anywhere.
    pins: Option<PathBuf>,
    /// The catalog is full: no more sensors are learned (warned once).
    full: bool,
    /// When the rows refused (`stats.refused`) were last logged, and how
    /// many there were then.
    refused_logged: Option<(std::time::Instant, u64)>,
    /// Polls through since the last connection.
    polls: u64,
    /// Where in `sensors` the next poll starts.
    resume_at: usize,
    /// What `/metrics` shows.
    stats: Arc<SiteStats>,
}

/// Follows the site's database until `stop`; `pins` is the file where
/// gateways' prefixes are pinned.
pub async fn run(
    sink: SourceSink,
    config: SiteConfig,
    index: Arc<SiteIndex>,
    stats: Arc<SiteStats>,
    pins: Option<PathBuf>,
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
        pins,
        full: false,
        refused_logged: None,
        polls: 0,
        resume_at: 0,
        stats,
    };
    f.load_pins();
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

/// Whether `s` has the shape of a gateway id (a UUID as text): such a name
/// is never a prefix, so no gateway can take another's id as its name.
fn looks_like_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// The pins of a pinned-prefix file (`<gateway id> <prefix>` a line), at
/// most `max`: a line whose id is not an id, whose prefix is not one a
/// gateway could have, or whose id or prefix an earlier line took, is
/// left out.
fn parse_pins(text: &str, max: usize) -> Vec<(String, Arc<str>)> {
    let mut ids = HashSet::new();
    let mut taken = HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if out.len() >= max {
            break;
        }
        let Some((id, prefix)) = line.split_once(' ') else {
            continue;
        };
        let valid = looks_like_id(id)
            && (prefix == id
                || (crate::sources::config::is_name(prefix, MAX_GATEWAY_NAME)
                    && !prefix.contains('/')
                    && !looks_like_id(prefix)));
        if valid && !ids.contains(id) && !taken.contains(prefix) {
            ids.insert(id);
            taken.insert(prefix);
            out.push((id.to_owned(), Arc::from(prefix)));
        }
    }
    out
}

impl Follower {
    /// Reads the pinned prefixes (`<gateway id> <prefix>` a line); lines
    /// that are not both valid are left out.
    fn load_pins(&mut self) {
        let Some(path) = &self.pins else { return };
        // A line is an id, a space, a prefix and a newline.
        let max = self.sink.limits().max_sensors;
        let cap = u64::try_from(max.saturating_mul(MAX_PIN_LINE)).unwrap_or(u64::MAX);
        let text = match crate::file::read_capped(path, cap) {
            Ok(t) => t,
            Err(crate::file::CappedReadError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return;
            }
            Err(e) => {
                // Not overwritten: the operator's pins stay as they are.
                tracing::warn!(
                    path = %path.display(),
                    error = ?e,
                    "site view: pinned gateway names not read; new ones are not pinned"
                );
                self.pins = None;
                return;
            }
        };
        for (id, prefix) in parse_pins(&text, max) {
            self.taken.insert(prefix.clone());
            self.prefixes.insert(id, prefix);
        }
    }

    /// Writes the pinned prefixes out (a gateway was seen for the first
    /// time).
    fn save_pins(&self) {
        let Some(path) = &self.pins else { return };
        let mut text = String::new();
        let mut pins: Vec<_> = self.prefixes.iter().collect();
        pins.sort();
        for (id, prefix) in pins {
            text.push_str(id);
            text.push(' ');
            text.push_str(prefix);
            text.push('\n');
        }
        if let Err(e) = crate::file::write_private(path, text.as_bytes()) {
            tracing::warn!(path = %path.display(), error = %e, "site view: pinned gateway names not saved");
        }
    }

    /// Connects, checks the schema, and polls until something fails.
    async fn connected(&mut self) -> PgError {
        let (client, _driver) = match session(&self.config, "follower").await {
            Ok(s) => s,
            Err(e) => return e,
        };
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
            match self.poll(&client).await {
                Ok(()) => self.polls += 1,
                Err(e) => return e,
            }
        }
    }

    /// One statement, under `history.timeout_ms` (and the session's
    /// `statement_timeout`), at most `max` rows.
    async fn q(
        &self,
        c: &Client,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        max: usize,
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        tokio::time::timeout(self.config.timeout, query_capped(c, sql, params, max))
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }

    /// One poll: new sensors, then the newest readings of every sensor,
    /// all within `history.max_rows_per_poll` rows.
    async fn poll(&mut self, c: &Client) -> Result<(), PgError> {
        if !self.full {
            self.discover(c).await?;
        }
        let mut budget = self.config.max_rows_per_poll;
        // First sights (one row each at most) first.
        let first: Vec<usize> = (0..self.sensors.len())
            .filter(|&i| self.sensors[i].after_us.is_none())
            .take(budget)
            .collect();
        budget -= first.len();
        for part in first.chunks(SENSORS_PER_STATEMENT) {
            self.latest(c, part).await?;
        }
        let mut behind = 0;
        if budget > 0 {
            // From where the last poll that ran out of rows stopped, so
            // every sensor has its turn when the budget cannot cover them
            // all; the first sights just read are left for the next poll.
            let mut fresh = vec![false; self.sensors.len()];
            for &i in &first {
                fresh[i] = true;
            }
            let n = self.sensors.len();
            // Kept until a statement is cut short (which moves it), so a
            // poll that fails starts there again.
            let start = self.resume_at.min(n);
            let mut pending: Vec<usize> =
                (start..n).chain(0..start).filter(|&i| !fresh[i]).collect();
            // A share each; what is left, to those that had more.
            for _ in 0..SHARE_PASSES {
                if budget == 0 || pending.is_empty() {
                    break;
                }
                let each = (budget / pending.len()).max(1);
                let mut more = Vec::new();
                let mut asked = 0;
                for part in pending.chunks(SENSORS_PER_STATEMENT) {
                    let (taken, full) = self.newer(c, part, each, budget).await?;
                    budget -= taken;
                    asked += part.len();
                    more.extend(full);
                    if budget == 0 {
                        // Those not asked this pass may have more too.
                        more.extend_from_slice(&pending[asked..]);
                        break;
                    }
                }
                pending = more;
            }
            if budget > 0 {
                self.resume_at = 0;
            }
            behind = pending.len();
        }
        let rows = u64::try_from(self.config.max_rows_per_poll - budget).unwrap_or(u64::MAX);
        self.stats.polled(rows, self.sensors.len(), behind);
        self.log_refused();
        Ok(())
    }

    /// Counts a row left out: not a valid reading, sensor or gateway.
    fn refuse(&self) {
        self.stats.refused.fetch_add(1, Relaxed);
    }

    /// Says how many rows were left out, at most once a minute.
    fn log_refused(&mut self) {
        let refused = self.stats.refused.load(Relaxed);
        let logged = self.refused_logged.map_or(0, |(_, n)| n);
        if refused == logged
            || self
                .refused_logged
                .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.refused_logged = Some((std::time::Instant::now(), refused));
        tracing::warn!(
            refused_total = refused,
            "site database: rows that are not valid readings or sensors (an invalid name, \
             value or quality) were left out"
        );
    }

    /// Learns sensors added since the last poll. Names longer than a name
    /// may be are not sent by the server at all (they come as NULL).
    async fn discover(&mut self, c: &Client) -> Result<(), PgError> {
        let t = self.config.pg.table.clone();
        let max_name = i32::try_from(self.sink.limits().message.max_name_bytes).unwrap_or(i32::MAX);
        let limit = i64::try_from(DISCOVER_ROWS).unwrap_or(i64::MAX);
        let mut learned = 0;
        let mut new_gateways = false;
        while learned < NEW_SENSORS_PER_POLL && !self.full {
            let rows = self
                .q(
                    c,
                    &format!(
                        "SELECT id, gateway::text, \
                           CASE WHEN octet_length(name) <= $2 THEN name END \
                         FROM \"{t}_sensors\" WHERE id > $1 ORDER BY id LIMIT $3"
                    ),
                    &[&self.after_id, &max_name, &limit],
                    DISCOVER_ROWS,
                )
                .await?;
            let mut found: Vec<(i32, Option<String>, Option<String>)> =
                Vec::with_capacity(rows.len());
            for r in &rows {
                let (Ok(id), Ok(gateway), Ok(name)) = (r.try_get(0), r.try_get(1), r.try_get(2))
                else {
                    return Err(PgError::Schema(
                        "a row of the sensors table does not have the documented types".to_owned(),
                    ));
                };
                found.push((id, gateway, name));
            }
            let unknown: Vec<&str> = found
                .iter()
                .filter_map(|(_, g, _)| g.as_deref())
                .filter(|g| !self.prefixes.contains_key(*g))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let names = self.gateway_names(c, &unknown).await?;
            for (id, gateway, name) in &found {
                // In the order sensors were added: a name taken here stays
                // its gateway's. A row this view cannot use is passed over
                // (counted), never asked for again.
                self.after_id = (*id).max(self.after_id);
                let Some(gateway) = gateway else {
                    self.refuse();
                    continue;
                };
                let Some(prefix) =
                    self.prefix(gateway, names.get(gateway.as_str()), &mut new_gateways)
                else {
                    continue;
                };
                if !self.learn(*id, gateway, &prefix, name.as_deref()) {
                    // The catalog is full: this one is asked for again
                    // once there is room (after a restart).
                    self.after_id = id.saturating_sub(1);
                    break;
                }
                learned += 1;
            }
            // Pinned before anything else can fail.
            if std::mem::take(&mut new_gateways) {
                self.save_pins();
            }
            if rows.len() < DISCOVER_ROWS {
                break;
            }
        }
        Ok(())
    }

    /// The names of `gateways` (ids), from the gateways table; a name
    /// longer than a prefix may be comes as none.
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
        let max = i32::try_from(MAX_GATEWAY_NAME).unwrap_or(i32::MAX);
        let rows = self
            .q(
                c,
                &format!(
                    "SELECT id::text, CASE WHEN octet_length(name) <= $2 THEN name END \
                     FROM \"{t}_gateways\" WHERE id = ANY($1::text[]::uuid[])"
                ),
                &[&ids, &max],
                ids.len(),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get::<_, Option<String>>(1).ok()??)))
            .collect())
    }

    /// The prefix of `gateway` (an id), named `name` in the gateways
    /// table: the pinned one, else the name when it is a valid name
    /// segment, not shaped like an id and not taken, else the id. `None`
    /// when there are as many gateways as sensors may be (then nothing
    /// more is learned).
    fn prefix(&mut self, gateway: &str, name: Option<&String>, new: &mut bool) -> Option<Arc<str>> {
        if let Some(p) = self.prefixes.get(gateway) {
            return Some(p.clone());
        }
        if !looks_like_id(gateway) || self.prefixes.len() >= self.sink.limits().max_sensors {
            self.refuse();
            return None;
        }
        let usable = name.filter(|n| {
            crate::sources::config::is_name(n, MAX_GATEWAY_NAME)
                && !n.contains('/')
                && !looks_like_id(n)
                && !self.taken.contains(n.as_str())
        });
        let prefix: Arc<str> = Arc::from(usable.map_or(gateway, String::as_str));
        self.taken.insert(prefix.clone());
        self.prefixes.insert(gateway.to_owned(), prefix.clone());
        *new = true;
        Some(prefix)
    }

    /// Registers one sensor; `false` when the catalog is full (the
    /// follower then learns no more sensors). A name that is not valid
    /// (or was too long to be sent) is left out and counted.
    fn learn(&mut self, id: i32, gateway: &str, prefix: &str, name: Option<&str>) -> bool {
        if self.by_id.contains_key(&id) {
            return true;
        }
        let max = self.sink.limits().message.max_name_bytes;
        let full_name = name.map(|n| format!("{prefix}/{n}"));
        let Some(full_name) = full_name.filter(|n| sensegate_proto::envelope::is_name(n, max))
        else {
            self.refuse();
            return true;
        };
        if self.index.get(&full_name).is_some() {
            // Two of the database's sensors would share a name here.
            self.refuse();
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
            Err(RegisterError::Taken { .. }) => {
                self.refuse();
                true
            }
        }
    }

    /// The newest valid reading of each of `part` (first sight), up to
    /// the server's now; taken in at once.
    async fn latest(&mut self, c: &Client, part: &[usize]) -> Result<(), PgError> {
        let t = &self.config.pg.table;
        let ids: Vec<i32> = part.iter().map(|&i| self.sensors[i].id).collect();
        let rows = self
            .q(
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
        self.take(&rows);
        Ok(())
    }

    /// Readings of `part` newer than each one's cursor and not in the
    /// server's future, at most `each` a sensor and `budget` in all; taken
    /// in at once. Returns the rows read and the sensors that had `each`
    /// (they may have more). A row dated ahead (a gateway's clock runs
    /// fast) waits for its time: taken now, it would move the cursor past
    /// the readings that arrive meanwhile.
    async fn newer(
        &mut self,
        c: &Client,
        part: &[usize],
        each: usize,
        budget: usize,
    ) -> Result<(usize, Vec<usize>), PgError> {
        let t = &self.config.pg.table;
        let ids: Vec<i32> = part.iter().map(|&i| self.sensors[i].id).collect();
        let after: Vec<std::time::SystemTime> = part
            .iter()
            .map(|&i| super::instant(self.sensors[i].after_us.unwrap_or(0)))
            .collect();
        let share = i64::try_from(each).unwrap_or(i64::MAX);
        let rows = self
            .q(
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
                &[&ids, &after, &share],
                budget,
            )
            .await?;
        let mut per: HashMap<i32, usize> = HashMap::new();
        for r in &rows {
            if let Ok(id) = r.try_get::<_, i32>(0) {
                *per.entry(id).or_default() += 1;
            }
        }
        if rows.len() >= budget {
            // Cut short: the next poll starts at the sensor it stopped in.
            let last = rows.last().and_then(|r| r.try_get::<_, i32>(0).ok());
            self.resume_at = last
                .and_then(|id| self.by_id.get(&id).copied())
                .unwrap_or(0);
        }
        let full = part
            .iter()
            .copied()
            .filter(|&i| per.get(&self.sensors[i].id).copied().unwrap_or(0) >= each)
            .collect();
        self.take(&rows);
        Ok((rows.len(), full))
    }

    /// Turns rows (sensor id, time, value, quality) into readings, moving
    /// each sensor's cursor, and takes them in; rows that are not readings
    /// are left out and counted.
    fn take(&mut self, rows: &[tokio_postgres::Row]) {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (Ok(id), Ok(time)) = (
                r.try_get::<_, i32>(0),
                r.try_get::<_, std::time::SystemTime>(1),
            ) else {
                self.refuse();
                continue;
            };
            let Some(&i) = self.by_id.get(&id) else {
                self.refuse();
                continue;
            };
            // The cursor moves past a row that is not a reading too: it is
            // not read again.
            let us = micros(time);
            let s = &mut self.sensors[i];
            s.after_us = Some(s.after_us.map_or(us, |a| a.max(us)));
            let (Ok(Some(value)), Ok(Some(code))) = (
                r.try_get::<_, Option<f64>>(2),
                r.try_get::<_, Option<i16>>(3),
            ) else {
                self.refuse();
                continue;
            };
            let Some(quality) = quality(code).filter(|_| value.is_finite()) else {
                self.refuse();
                continue;
            };
            out.push(Reading {
                sensor: s.name.clone(),
                timestamp_us: us,
                value,
                quality,
            });
        }
        self.stats
            .readings
            .fetch_add(u64::try_from(out.len()).unwrap_or(u64::MAX), Relaxed);
        if !out.is_empty() {
            self.sink.ingest(&out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{looks_like_id, parse_pins};

    const A: &str = "0b7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8c";
    const B: &str = "1b7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8c";
    const C: &str = "2b7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8c";

    #[test]
    fn pins_are_parsed_as_hostile_text_and_capped() {
        let text = format!(
            "{A} hall-1\n{A} hall-9\n{B} hall-1\n{B} {A}\nnot-an-id hall-2\n\
             {B} bad/name\n{B} {}\n{B}\n{B} hall-2\n{C} {C}\n",
            "x".repeat(65)
        );
        let pins: Vec<(String, String)> = parse_pins(&text, 100)
            .into_iter()
            .map(|(id, p)| (id, p.to_string()))
            .collect();
        // The first line for an id and for a prefix wins; an id as its own
        // prefix is kept, another gateway's id is not a prefix.
        assert_eq!(
            pins,
            [(A, "hall-1"), (B, "hall-2"), (C, C)].map(|(i, p)| (i.to_owned(), p.to_owned()))
        );
        // Past the cap, the rest is left out.
        assert_eq!(parse_pins(&text, 2).len(), 2);
    }

    #[test]
    fn only_ids_look_like_ids() {
        assert!(looks_like_id("0b7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8c"));
        assert!(!looks_like_id("hall-1"));
        assert!(!looks_like_id("0b7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8"));
        assert!(!looks_like_id("0b7c3a52_3f0e-4b8e-9a1d-2c4f5e6a7b8c"));
        assert!(!looks_like_id("zb7c3a52-3f0e-4b8e-9a1d-2c4f5e6a7b8c"));
    }
}
