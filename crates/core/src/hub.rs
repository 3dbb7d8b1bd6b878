//! The hub: fans readings out to subscribers through bounded queues.
//!
//! A publisher calls [`Hub::publish`], which never waits: each matching
//! subscriber's queue takes the reading, and a full queue either loses its
//! oldest reading (counted; the subscriber is told how many in its next
//! batch) or marks the subscriber lagged so its connection is closed, by
//! `limits.lag_policy`. A slow subscriber therefore costs at most
//! `limits.subscriber_queue` readings of memory and never slows anyone else.
//!
//! Which subscribers want a sensor is computed once per sensor and cached
//! (the route), with the policy consulted for each subscriber's principal.
//! Routes are maintained incrementally: a change of one subscriber's
//! patterns re-evaluates that subscriber only, and only against the routes
//! of sensors the changed patterns match; a change that changes nothing
//! (a pattern already there, or one not there to remove) does no work at
//! all. The new routes are built under the read lock, beside publishers,
//! and swapped in under the write lock in a few pointer stores, so churn by
//! one connection never stalls the publish path for everyone else. Every
//! change, and every first build of a sensor's route, is serialised by one
//! mutex (`changes`), which also keeps the per-token and per-address pattern
//! counts ([`PatternCaps`]).
//!
//! A subscriber drains its whole queue at once ([`Subscriber::next_batch`]),
//! so readings that pile up while its socket is busy leave in one write.
//!
//! Locks are `std` locks held for a few instructions, never across `.await`;
//! the order is `changes`, then the subscriber map, then a subscriber's
//! patterns.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::Notify;

use crate::auth::Principal;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::reading::Reading;

/// What a subscriber that falls behind gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LagPolicy {
    /// Lose the oldest readings, and be told how many.
    DropOldest,
    /// Be disconnected with a goodbye.
    Disconnect,
}

/// Most cached routes; past it the cache is cleared and rebuilt on demand.
const MAX_ROUTES: usize = 65_536;

/// Caps on subscription patterns: per connection, per token over all its
/// connections, and per source address over all its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::struct_field_names,
    reason = "per connection, per token, per address: the prefix is the meaning"
)]
pub struct PatternCaps {
    /// `limits.max_subscriptions`.
    pub per_connection: usize,
    /// `limits.max_patterns_per_token`.
    pub per_token: usize,
    /// `limits.max_patterns_per_address`.
    pub per_address: usize,
}

/// The cap an addition of patterns would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternCap {
    /// [`PatternCaps::per_connection`].
    Connection,
    /// [`PatternCaps::per_token`].
    Token,
    /// [`PatternCaps::per_address`].
    Address,
}

/// One subscriber: a connection's patterns and its bounded queue.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    principal: Principal,
    peer: IpAddr,
    patterns: Mutex<Vec<Pattern>>,
    queue: Mutex<Queue>,
    notify: Notify,
    capacity: usize,
    lag_policy: LagPolicy,
    losses: Arc<Losses>,
}

/// What the hub's queues lost, over every subscriber (for `/metrics`).
#[derive(Debug, Default)]
pub struct Losses {
    /// Readings dropped from a full queue (`lag_policy = drop_oldest`).
    pub dropped: AtomicU64,
    /// Subscribers cut off for falling behind (`lag_policy = disconnect`).
    pub lagged: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Reading>,
    dropped: u64,
    lagged: bool,
}

/// What [`Subscriber::next_batch`] hands the connection.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// Readings in order, and how many were lost before them.
    Batch {
        /// The readings, oldest first.
        readings: Vec<Reading>,
        /// Readings lost to the full queue since the last batch.
        dropped: u64,
    },
    /// The queue overflowed under [`LagPolicy::Disconnect`].
    Lagged,
}

impl Subscriber {
    /// The connection id it belongs to.
    #[must_use]
    pub const fn id(&self) -> u64 {
        self.id
    }

    fn wants(&self, sensor: &str) -> bool {
        policy::decide(&self.principal, Action::ReadSensor(sensor)).is_allowed()
            && lock(&self.patterns).iter().any(|p| p.matches(sensor))
    }

    fn offer(&self, reading: Reading) {
        let mut q = lock(&self.queue);
        if q.lagged {
            return;
        }
        let was_empty = q.items.is_empty();
        if q.items.len() >= self.capacity {
            match self.lag_policy {
                LagPolicy::DropOldest => {
                    q.items.pop_front();
                    q.dropped += 1;
                    self.losses.dropped.fetch_add(1, Relaxed);
                }
                LagPolicy::Disconnect => {
                    q.lagged = true;
                    self.losses.lagged.fetch_add(1, Relaxed);
                    q.items = VecDeque::new();
                    drop(q);
                    self.notify.notify_one();
                    return;
                }
            }
        }
        q.items.push_back(reading);
        drop(q);
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Waits for readings and takes up to `max` of them (at least one).
    /// Cancel-safe: nothing is taken until it returns. An emptied queue gives
    /// its memory back, so an idle subscriber holds no buffer.
    pub async fn next_batch(&self, max: usize) -> Delivery {
        loop {
            if let Some(d) = self.try_batch(max) {
                return d;
            }
            self.notify.notified().await;
        }
    }

    /// Takes up to `max` queued readings without waiting.
    #[must_use]
    pub fn try_batch(&self, max: usize) -> Option<Delivery> {
        let mut q = lock(&self.queue);
        if q.lagged {
            return Some(Delivery::Lagged);
        }
        if q.items.is_empty() {
            return None;
        }
        let readings: Vec<Reading> = if q.items.len() <= max {
            Vec::from(std::mem::take(&mut q.items))
        } else {
            q.items.drain(..max.max(1)).collect()
        };
        let dropped = std::mem::take(&mut q.dropped);
        Some(Delivery::Batch { readings, dropped })
    }

    /// Readings waiting.
    #[must_use]
    pub fn queued(&self) -> usize {
        lock(&self.queue).items.len()
    }
}

/// The fan-out point between sources and subscribers.
#[derive(Debug)]
pub struct Hub {
    inner: RwLock<Inner>,
    /// Serialises every change of routes (pattern changes, removals, first
    /// builds) and holds the pattern counts.
    changes: Mutex<Counts>,
    /// Routes built from scratch (first publish of a sensor, or after the
    /// cache was full).
    route_builds: AtomicU64,
    capacity: usize,
    lag_policy: LagPolicy,
    losses: Arc<Losses>,
}

type Route = Arc<[Arc<Subscriber>]>;

#[derive(Debug, Default)]
struct Inner {
    subscribers: HashMap<u64, Arc<Subscriber>>,
    routes: HashMap<Arc<str>, Route>,
}

/// Patterns held per token and per source address, over every subscriber.
/// Entries go when their count reaches zero, so the maps are bounded by the
/// live subscribers.
#[derive(Debug, Default)]
struct Counts {
    per_token: HashMap<String, usize>,
    per_address: HashMap<IpAddr, usize>,
}

impl Counts {
    fn add(&mut self, sub: &Subscriber, n: usize) {
        // The token's name is copied only the first time it is seen.
        match self.per_token.get_mut(&sub.principal.token_id) {
            Some(c) => *c += n,
            None => {
                self.per_token.insert(sub.principal.token_id.clone(), n);
            }
        }
        *self.per_address.entry(sub.peer).or_default() += n;
    }

    fn remove(&mut self, sub: &Subscriber, n: usize) {
        if let Some(c) = self.per_token.get_mut(&sub.principal.token_id) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_token.remove(&sub.principal.token_id);
            }
        }
        if let Some(c) = self.per_address.get_mut(&sub.peer) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_address.remove(&sub.peer);
            }
        }
    }
}

impl Hub {
    /// A hub whose subscriber queues hold `capacity` readings.
    #[must_use]
    pub fn new(capacity: usize, lag_policy: LagPolicy) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            changes: Mutex::new(Counts::default()),
            route_builds: AtomicU64::new(0),
            capacity: capacity.max(1),
            lag_policy,
            losses: Arc::default(),
        }
    }

    /// Routes built from scratch so far.
    #[must_use]
    pub fn route_builds(&self) -> u64 {
        self.route_builds.load(Relaxed)
    }

    /// What the queues lost so far.
    #[must_use]
    pub fn losses(&self) -> &Losses {
        &self.losses
    }

    /// The subscriber of connection `id` (from `peer`), created on first
    /// use.
    pub fn subscriber(&self, id: u64, principal: &Principal, peer: IpAddr) -> Arc<Subscriber> {
        let mut inner = self.write();
        inner
            .subscribers
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Subscriber {
                    id,
                    principal: principal.clone(),
                    peer,
                    patterns: Mutex::new(Vec::new()),
                    queue: Mutex::new(Queue::default()),
                    notify: Notify::new(),
                    capacity: self.capacity,
                    lag_policy: self.lag_policy,
                    losses: self.losses.clone(),
                })
            })
            .clone()
    }

    /// Adds patterns to a subscriber within `caps`; returns how many are
    /// active, or the cap that would be passed (and adds nothing).
    ///
    /// # Errors
    /// [`PatternCap`] when the connection, its token or its address would
    /// hold more patterns than its cap.
    pub fn add_patterns(
        &self,
        sub: &Arc<Subscriber>,
        patterns: &[Pattern],
        caps: PatternCaps,
    ) -> Result<usize, PatternCap> {
        let mut counts = lock(&self.changes);
        let mut mine = lock(&sub.patterns);
        // Work stays within the cap per pattern whatever the request's
        // length: the scan stops at the first pattern that would not fit.
        let room = caps.per_connection.saturating_sub(mine.len());
        let mut added: Vec<Pattern> = Vec::new();
        for p in patterns {
            if mine.contains(p) || added.contains(p) {
                continue;
            }
            if added.len() == room {
                return Err(PatternCap::Connection);
            }
            added.push(p.clone());
        }
        if added.is_empty() {
            return Ok(mine.len());
        }
        let registered = self.is_registered(sub);
        if registered {
            let n = added.len();
            let token = counts.per_token.get(&sub.principal.token_id);
            if token.copied().unwrap_or(0) + n > caps.per_token {
                return Err(PatternCap::Token);
            }
            if counts.per_address.get(&sub.peer).copied().unwrap_or(0) + n > caps.per_address {
                return Err(PatternCap::Address);
            }
            counts.add(sub, n);
        }
        mine.extend(added.iter().cloned());
        let active = mine.len();
        drop(mine);
        if registered {
            self.reroute(sub, |sensor| added.iter().any(|p| p.matches(sensor)));
        }
        drop(counts);
        Ok(active)
    }

    /// Removes patterns from a subscriber; returns how many remain.
    pub fn remove_patterns(&self, sub: &Arc<Subscriber>, patterns: &[Pattern]) -> usize {
        let mut counts = lock(&self.changes);
        let mut mine = lock(&sub.patterns);
        let before = mine.len();
        let mut removed: Vec<Pattern> = Vec::new();
        mine.retain(|p| {
            let gone = patterns.contains(p);
            if gone {
                removed.push(p.clone());
            }
            !gone
        });
        let active = mine.len();
        drop(mine);
        if active != before && self.is_registered(sub) {
            counts.remove(sub, before - active);
            self.reroute(sub, |sensor| removed.iter().any(|p| p.matches(sensor)));
        }
        drop(counts);
        active
    }

    /// Forgets connection `id`'s subscriber: out of every route it was in.
    pub fn remove(&self, id: u64) {
        let mut counts = lock(&self.changes);
        let Some(sub) = self.write().subscribers.remove(&id) else {
            return;
        };
        let held = lock(&sub.patterns).len();
        if held == 0 {
            return;
        }
        counts.remove(&sub, held);
        let updates: Vec<(Arc<str>, Route)> = self
            .read()
            .routes
            .iter()
            .filter(|(_, route)| route.iter().any(|s| Arc::ptr_eq(s, &sub)))
            .map(|(sensor, route)| (sensor.clone(), without(route, &sub)))
            .collect();
        self.swap(updates);
        drop(counts);
    }

    /// Whether `sub` is the hub's subscriber for its id (not one removed).
    fn is_registered(&self, sub: &Arc<Subscriber>) -> bool {
        self.read()
            .subscribers
            .get(&sub.id)
            .is_some_and(|s| Arc::ptr_eq(s, sub))
    }

    /// Re-evaluates `sub` against the cached routes of the sensors `touched`
    /// says its change may concern. Runs under `changes`: the new routes
    /// are built beside publishers (read lock) and swapped in after.
    fn reroute(&self, sub: &Arc<Subscriber>, touched: impl Fn(&str) -> bool) {
        let updates: Vec<(Arc<str>, Route)> = self
            .read()
            .routes
            .iter()
            .filter(|(sensor, _)| touched(sensor))
            .filter_map(|(sensor, route)| {
                let has = route.iter().any(|s| Arc::ptr_eq(s, sub));
                match (has, sub.wants(sensor)) {
                    (false, true) => {
                        let new: Route = route.iter().cloned().chain([sub.clone()]).collect();
                        Some((sensor.clone(), new))
                    }
                    (true, false) => Some((sensor.clone(), without(route, sub))),
                    _ => None,
                }
            })
            .collect();
        self.swap(updates);
    }

    /// Stores new routes: a few pointer stores under the write lock (the old
    /// routes are dropped after it is released).
    fn swap(&self, updates: Vec<(Arc<str>, Route)>) {
        if updates.is_empty() {
            return;
        }
        let mut old = Vec::with_capacity(updates.len());
        {
            let mut inner = self.write();
            for (sensor, route) in updates {
                if let Some(slot) = inner.routes.get_mut(&sensor) {
                    old.push(std::mem::replace(slot, route));
                }
            }
        }
        drop(old);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a reading to every subscriber that wants it. Never waits on a
    /// subscriber. (The service publishes runs, [`Hub::publish_all`]; this
    /// one is for tests and benchmarks.)
    #[cfg(any(test, feature = "test-support"))]
    pub fn publish(&self, reading: &Reading) {
        self.publish_all(std::slice::from_ref(reading));
    }

    /// Publishes `readings` in order; the route is looked up once for each
    /// run of readings of one sensor (a batch is mostly such runs).
    pub fn publish_all(&self, readings: &[Reading]) {
        for run in readings.chunk_by(|a, b| Arc::ptr_eq(&a.sensor, &b.sensor)) {
            let route = self.route(&run[0].sensor);
            if route.is_empty() {
                continue;
            }
            for reading in run {
                for sub in route.iter() {
                    sub.offer(reading.clone());
                }
            }
        }
    }

    /// Number of subscribers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().subscribers.len()
    }

    /// Whether there is no subscriber.
    #[must_use]
    #[cfg_attr(
        not(feature = "test-support"),
        allow(dead_code, reason = "tests ask it, through the test-support feature")
    )]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn route(&self, sensor: &Arc<str>) -> Route {
        if let Some(r) = self.read().routes.get(sensor) {
            return r.clone();
        }
        // A first build: serialised with every change, so no change can be
        // missed between the scan and the insert.
        let _changes = lock(&self.changes);
        let subscribers: Vec<Arc<Subscriber>> = {
            let inner = self.read();
            if let Some(r) = inner.routes.get(sensor) {
                return r.clone();
            }
            inner.subscribers.values().cloned().collect()
        };
        let route: Route = subscribers
            .into_iter()
            .filter(|s| s.wants(sensor))
            .collect();
        self.route_builds.fetch_add(1, Relaxed);
        let mut inner = self.write();
        if inner.routes.len() >= MAX_ROUTES {
            inner.routes.clear();
        }
        inner.routes.insert(sensor.clone(), route.clone());
        route
    }

    /// Cached routes (for tests).
    #[cfg(test)]
    fn routes(&self) -> usize {
        self.read().routes.len()
    }
}

fn without(route: &Route, sub: &Arc<Subscriber>) -> Route {
    route
        .iter()
        .filter(|s| !Arc::ptr_eq(s, sub))
        .cloned()
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::reading::Quality;

    fn principal(role: Role, scope: &str) -> Principal {
        Principal {
            token_id: "0000000000000001".into(),
            name: "t".into(),
            role,
            scope: Pattern::new(scope),
        }
    }

    fn local() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn caps(per_connection: usize) -> PatternCaps {
        PatternCaps {
            per_connection,
            per_token: 1_000,
            per_address: 1_000,
        }
    }

    fn reading(sensor: &str, ts: i64) -> Reading {
        Reading {
            sensor: Arc::from(sensor),
            timestamp_us: ts,
            value: 0.5,
            quality: Quality::Good,
        }
    }

    fn timestamps(d: Option<Delivery>) -> (Vec<i64>, u64) {
        match d {
            Some(Delivery::Batch { readings, dropped }) => {
                (readings.iter().map(|r| r.timestamp_us).collect(), dropped)
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn delivers_matching_readings_in_order_and_coalesces_them() {
        let hub = Hub::new(16, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "*"), local());
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("room/*")], caps(4)),
            Ok(1)
        );
        for ts in 0..3 {
            hub.publish(&reading("room/t", ts));
            hub.publish(&reading("hall/t", ts));
        }
        assert_eq!(timestamps(s.try_batch(100)), (vec![0, 1, 2], 0));
        assert!(s.try_batch(100).is_none());
    }

    #[test]
    fn a_full_queue_loses_its_oldest_and_counts_them() {
        let hub = Hub::new(3, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "*"), local());
        hub.add_patterns(&s, &[Pattern::any()], caps(4)).unwrap();
        for ts in 0..10 {
            hub.publish(&reading("x", ts));
        }
        assert_eq!(timestamps(s.try_batch(100)), (vec![7, 8, 9], 7));
        hub.publish(&reading("x", 10));
        assert_eq!(timestamps(s.try_batch(100)), (vec![10], 0));
    }

    #[test]
    fn a_full_queue_under_disconnect_marks_the_subscriber_lagged() {
        let hub = Hub::new(2, LagPolicy::Disconnect);
        let s = hub.subscriber(1, &principal(Role::Reader, "*"), local());
        hub.add_patterns(&s, &[Pattern::any()], caps(4)).unwrap();
        for ts in 0..3 {
            hub.publish(&reading("x", ts));
        }
        assert_eq!(s.try_batch(100), Some(Delivery::Lagged));
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn scope_limits_delivery_even_for_a_wildcard_subscription() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "room/*"), local());
        hub.add_patterns(&s, &[Pattern::any()], caps(4)).unwrap();
        hub.publish(&reading("secret/x", 1));
        hub.publish(&reading("room/x", 2));
        assert_eq!(timestamps(s.try_batch(100)), (vec![2], 0));
    }

    #[test]
    fn the_pattern_cap_adds_nothing_when_exceeded() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "*"), local());
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("a"), Pattern::new("b")], caps(2)),
            Ok(2)
        );
        assert_eq!(hub.add_patterns(&s, &[Pattern::new("a")], caps(2)), Ok(2));
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("c")], caps(2)),
            Err(PatternCap::Connection)
        );
        // A pattern repeated in one request counts once.
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("b")]), 1);
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("c"), Pattern::new("c")], caps(2)),
            Ok(2)
        );
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("c")]), 1);
        hub.add_patterns(&s, &[Pattern::new("b")], caps(2)).unwrap();
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("a")]), 1);
        hub.publish(&reading("a", 1));
        assert!(s.try_batch(10).is_none());
    }

    #[test]
    fn batches_are_cut_at_max_and_removal_stops_delivery() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(7, &principal(Role::Admin, "*"), local());
        hub.add_patterns(&s, &[Pattern::any()], caps(4)).unwrap();
        for ts in 0..5 {
            hub.publish(&reading("x", ts));
        }
        assert_eq!(timestamps(s.try_batch(2)), (vec![0, 1], 0));
        assert_eq!(timestamps(s.try_batch(10)), (vec![2, 3, 4], 0));
        hub.remove(7);
        hub.publish(&reading("x", 9));
        assert!(s.try_batch(10).is_none());
        assert!(hub.is_empty());
    }

    #[test]
    fn pattern_changes_update_routes_in_place_and_no_ops_do_nothing() {
        let hub = Hub::new(64, LagPolicy::DropOldest);
        let a = hub.subscriber(1, &principal(Role::Reader, "*"), local());
        let b = hub.subscriber(2, &principal(Role::Reader, "*"), local());
        hub.add_patterns(&a, &[Pattern::new("room/*")], caps(8))
            .unwrap();
        for sensor in ["room/t", "hall/t", "room/h"] {
            hub.publish(&reading(sensor, 1));
        }
        assert_eq!(hub.routes(), 3);
        // b joins room/t only: routes stay cached and are updated.
        hub.add_patterns(&b, &[Pattern::new("room/t")], caps(8))
            .unwrap();
        assert_eq!(hub.routes(), 3);
        let route = |sensor: &str| hub.read().routes.get(sensor).unwrap().len();
        assert_eq!(
            (route("room/t"), route("room/h"), route("hall/t")),
            (2, 1, 0)
        );
        // A no-op change keeps the very same route objects.
        let before = hub.read().routes.get("room/t").unwrap().clone();
        hub.add_patterns(&b, &[Pattern::new("room/t")], caps(8))
            .unwrap();
        hub.remove_patterns(&b, &[Pattern::new("never/*")]);
        assert!(Arc::ptr_eq(
            &before,
            hub.read().routes.get("room/t").unwrap()
        ));
        // Removing a pattern, and a subscriber, take them out of routes.
        hub.remove_patterns(&a, &[Pattern::new("room/*")]);
        assert_eq!((route("room/t"), route("room/h")), (1, 0));
        drop(a.try_batch(100));
        hub.publish(&reading("room/t", 2));
        assert!(
            a.try_batch(100).is_none(),
            "a got a reading it no longer wants"
        );
        assert_eq!(timestamps(b.try_batch(100)), (vec![2], 0));
        hub.remove(2);
        assert_eq!(route("room/t"), 0);
        assert_eq!(hub.routes(), 3);
        hub.publish(&reading("room/t", 3));
        assert!(b.try_batch(100).is_none(), "b got a reading after it left");
    }

    #[test]
    fn patterns_are_capped_per_token_and_per_address_across_connections() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let caps = PatternCaps {
            per_connection: 4,
            per_token: 5,
            per_address: 6,
        };
        let many =
            |n: usize| -> Vec<Pattern> { (0..n).map(|i| Pattern::new(format!("p{i}"))).collect() };
        let t1 = principal(Role::Reader, "*");
        let mut t2 = principal(Role::Reader, "*");
        t2.token_id = "0000000000000002".into();
        let other = IpAddr::from([127, 0, 0, 2]);
        let a = hub.subscriber(1, &t1, local());
        let b = hub.subscriber(2, &t1, local());
        assert_eq!(hub.add_patterns(&a, &many(4), caps), Ok(4));
        assert_eq!(hub.add_patterns(&b, &many(2), caps), Err(PatternCap::Token));
        assert_eq!(hub.add_patterns(&b, &many(1), caps), Ok(1));
        // Another token from the same address: the address cap.
        let c = hub.subscriber(3, &t2, local());
        assert_eq!(
            hub.add_patterns(&c, &many(2), caps),
            Err(PatternCap::Address)
        );
        assert_eq!(hub.add_patterns(&c, &many(1), caps), Ok(1));
        // The same token elsewhere is still over its cap.
        let d = hub.subscriber(4, &t1, other);
        assert_eq!(hub.add_patterns(&d, &many(1), caps), Err(PatternCap::Token));
        // What a connection gives back is free again; the maps empty out.
        hub.remove(1);
        assert_eq!(hub.add_patterns(&d, &many(4), caps), Ok(4));
        for id in [2, 3, 4] {
            hub.remove(id);
        }
        let counts = lock(&hub.changes);
        assert!(counts.per_token.is_empty() && counts.per_address.is_empty());
    }
}
