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
//! (the route), with the policy consulted for each subscriber's principal;
//! any change of subscriptions clears the cache. A subscriber drains its
//! whole queue at once ([`Subscriber::next_batch`]), so readings that pile
//! up while its socket is busy leave in one write.
//!
//! Locks are `std` locks held for a few instructions, never across `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::Notify;

use crate::auth::Principal;
use crate::config::LagPolicy;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::reading::Reading;

/// Most cached routes; past it the cache is cleared and rebuilt on demand.
const MAX_ROUTES: usize = 65_536;

/// One subscriber: a connection's patterns and its bounded queue.
#[derive(Debug)]
pub struct Subscriber {
    id: u64,
    principal: Principal,
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
    capacity: usize,
    lag_policy: LagPolicy,
    losses: Arc<Losses>,
}

#[derive(Debug, Default)]
struct Inner {
    subscribers: HashMap<u64, Arc<Subscriber>>,
    routes: HashMap<Arc<str>, Arc<[Arc<Subscriber>]>>,
}

impl Hub {
    /// A hub whose subscriber queues hold `capacity` readings.
    #[must_use]
    pub fn new(capacity: usize, lag_policy: LagPolicy) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            capacity: capacity.max(1),
            lag_policy,
            losses: Arc::default(),
        }
    }

    /// What the queues lost so far.
    #[must_use]
    pub fn losses(&self) -> &Losses {
        &self.losses
    }

    /// The subscriber of connection `id`, created on first use.
    pub fn subscriber(&self, id: u64, principal: &Principal) -> Arc<Subscriber> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner
            .subscribers
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Subscriber {
                    id,
                    principal: principal.clone(),
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

    /// Adds patterns to a subscriber, up to `max` in all; returns how many
    /// are active, or `None` (and adds nothing) when `max` would be passed.
    pub fn add_patterns(
        &self,
        sub: &Subscriber,
        patterns: &[Pattern],
        max: usize,
    ) -> Option<usize> {
        let mut mine = lock(&sub.patterns);
        // Work stays within `max` per pattern whatever the request's length:
        // the scan stops at the first pattern that would not fit.
        let room = max.saturating_sub(mine.len());
        let mut added: Vec<&Pattern> = Vec::new();
        for p in patterns {
            if mine.contains(p) || added.contains(&p) {
                continue;
            }
            if added.len() == room {
                return None;
            }
            added.push(p);
        }
        let changed = !added.is_empty();
        mine.extend(added.into_iter().cloned());
        let active = mine.len();
        drop(mine);
        if changed {
            self.clear_routes();
        }
        Some(active)
    }

    /// Removes patterns from a subscriber; returns how many remain.
    pub fn remove_patterns(&self, sub: &Subscriber, patterns: &[Pattern]) -> usize {
        let active = {
            let mut mine = lock(&sub.patterns);
            mine.retain(|p| !patterns.contains(p));
            mine.len()
        };
        self.clear_routes();
        active
    }

    /// Forgets connection `id`'s subscriber.
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.subscribers.remove(&id).is_some() {
            inner.routes.clear();
        }
    }

    fn clear_routes(&self) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .routes
            .clear();
    }

    /// Hands a reading to every subscriber that wants it. Never waits on a
    /// subscriber.
    pub fn publish(&self, reading: &Reading) {
        let route = self.route(&reading.sensor);
        for sub in route.iter() {
            sub.offer(reading.clone());
        }
    }

    /// Number of subscribers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .subscribers
            .len()
    }

    /// Whether there is no subscriber.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn route(&self, sensor: &Arc<str>) -> Arc<[Arc<Subscriber>]> {
        if let Some(r) = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .routes
            .get(sensor)
        {
            return r.clone();
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let route: Arc<[Arc<Subscriber>]> = inner
            .subscribers
            .values()
            .filter(|s| s.wants(sensor))
            .cloned()
            .collect();
        if inner.routes.len() >= MAX_ROUTES {
            inner.routes.clear();
        }
        inner.routes.insert(sensor.clone(), route.clone());
        route
    }
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
        let s = hub.subscriber(1, &principal(Role::Reader, "*"));
        assert_eq!(hub.add_patterns(&s, &[Pattern::new("room/*")], 4), Some(1));
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
        let s = hub.subscriber(1, &principal(Role::Reader, "*"));
        hub.add_patterns(&s, &[Pattern::any()], 4);
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
        let s = hub.subscriber(1, &principal(Role::Reader, "*"));
        hub.add_patterns(&s, &[Pattern::any()], 4);
        for ts in 0..3 {
            hub.publish(&reading("x", ts));
        }
        assert_eq!(s.try_batch(100), Some(Delivery::Lagged));
        assert_eq!(s.queued(), 0);
    }

    #[test]
    fn scope_limits_delivery_even_for_a_wildcard_subscription() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "room/*"));
        hub.add_patterns(&s, &[Pattern::any()], 4);
        hub.publish(&reading("secret/x", 1));
        hub.publish(&reading("room/x", 2));
        assert_eq!(timestamps(s.try_batch(100)), (vec![2], 0));
    }

    #[test]
    fn the_pattern_cap_adds_nothing_when_exceeded() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(1, &principal(Role::Reader, "*"));
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("a"), Pattern::new("b")], 2),
            Some(2)
        );
        assert_eq!(hub.add_patterns(&s, &[Pattern::new("a")], 2), Some(2));
        assert_eq!(hub.add_patterns(&s, &[Pattern::new("c")], 2), None);
        // A pattern repeated in one request counts once.
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("b")]), 1);
        assert_eq!(
            hub.add_patterns(&s, &[Pattern::new("c"), Pattern::new("c")], 2),
            Some(2)
        );
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("c")]), 1);
        hub.add_patterns(&s, &[Pattern::new("b")], 2);
        assert_eq!(hub.remove_patterns(&s, &[Pattern::new("a")]), 1);
        hub.publish(&reading("a", 1));
        assert!(s.try_batch(10).is_none());
    }

    #[test]
    fn batches_are_cut_at_max_and_removal_stops_delivery() {
        let hub = Hub::new(8, LagPolicy::DropOldest);
        let s = hub.subscriber(7, &principal(Role::Admin, "*"));
        hub.add_patterns(&s, &[Pattern::any()], 4);
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
}
