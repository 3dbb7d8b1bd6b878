//! Rate caps with time as a parameter: failed authentications per source
//! address, and pushed readings per token.
//!
//! Both tables are bounded. The failure table keys IPv6 peers by their /64
//! (one host usually owns a whole /64) and holds at most
//! [`MAX_TRACKED_ADDRESSES`] entries; when it is full and nothing has
//! expired, new addresses are throttled until entries expire, so a flood of
//! addresses cannot grow memory or flush the record of a guessing peer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most addresses whose failures are remembered at once.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// The window over which failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed authentications per source address per minute.
#[derive(Debug)]
pub struct AuthThrottle {
    per_window: u32,
    max_tracked: usize,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        }
    }
}

impl AuthThrottle {
    /// Allows `per_window` failures per address per [`FAILURE_WINDOW`].
    #[must_use]
    pub fn new(per_window: u32) -> Self {
        Self::with_capacity(per_window, MAX_TRACKED_ADDRESSES)
    }

    /// As [`AuthThrottle::new`], tracking at most `max_tracked` addresses.
    #[must_use]
    pub fn with_capacity(per_window: u32, max_tracked: usize) -> Self {
        Self {
            per_window,
            max_tracked,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` must wait before it may try again.
    pub fn is_throttled(&self, ip: IpAddr, now: Instant) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(ip);
        match map.get(&k) {
            Some(w) if now.duration_since(w.start) < FAILURE_WINDOW => w.count >= self.per_window,
            Some(_) => {
                map.remove(&k);
                false
            }
            None => map.len() >= self.max_tracked && !Self::prune(&mut map, now),
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(ip);
        if !map.contains_key(&k) && map.len() >= self.max_tracked && !Self::prune(&mut map, now) {
            return;
        }
        let w = map.entry(k).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= FAILURE_WINDOW {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
    }

    /// Drops expired windows; returns whether room was made.
    fn prune(map: &mut HashMap<IpAddr, Window>, now: Instant) -> bool {
        let before = map.len();
        map.retain(|_, w| now.duration_since(w.start) < FAILURE_WINDOW);
        map.len() < before
    }
}

/// Pushed readings per second per token: a token bucket holding one second
/// of the rate.
#[derive(Debug)]
pub struct PushRate {
    per_sec: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl PushRate {
    /// Allows `per_sec` readings per second per token, in bursts of up to
    /// one second's worth.
    #[must_use]
    pub fn new(per_sec: u32) -> Self {
        Self {
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` readings from `token_id`'s allowance; all or nothing.
    pub fn try_take(&self, token_id: &str, n: usize, now: Instant) -> bool {
        let rate = f64::from(self.per_sec);
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let b = map.entry(token_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = elapsed.mul_add(rate, b.tokens).min(rate);
        b.last = now;
        #[allow(clippy::cast_precision_loss, reason = "n is capped by max_push_batch")]
        let want = n as f64;
        if b.tokens >= want {
            b.tokens -= want;
            true
        } else {
            false
        }
    }

    /// Forgets a token (revoked), so the table holds only live tokens.
    pub fn forget(&self, token_id: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failures_past_the_cap_throttle_that_address_only_until_the_window_ends() {
        let t = AuthThrottle::new(3);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(!t.is_throttled(ip("10.0.0.1"), now));
            t.record_failure(ip("10.0.0.1"), now);
        }
        assert!(t.is_throttled(ip("10.0.0.1"), now));
        assert!(!t.is_throttled(ip("10.0.0.2"), now));
        assert!(!t.is_throttled(ip("10.0.0.1"), now + FAILURE_WINDOW));
    }

    #[test]
    fn ipv6_peers_are_counted_per_64() {
        let t = AuthThrottle::new(2);
        let now = Instant::now();
        t.record_failure(ip("2001:db8::1"), now);
        t.record_failure(ip("2001:db8::2"), now);
        assert!(t.is_throttled(ip("2001:db8::ffff"), now));
        assert!(!t.is_throttled(ip("2001:db8:0:1::1"), now));
    }

    #[test]
    fn a_full_table_throttles_newcomers_until_entries_expire() {
        let t = AuthThrottle::with_capacity(5, 2);
        let now = Instant::now();
        t.record_failure(ip("10.0.0.1"), now);
        t.record_failure(ip("10.0.0.2"), now);
        assert!(t.is_throttled(ip("10.0.0.3"), now));
        let later = now + FAILURE_WINDOW;
        assert!(!t.is_throttled(ip("10.0.0.3"), later));
        t.record_failure(ip("10.0.0.3"), later);
        assert!(t.failures.lock().unwrap().len() <= 2);
    }

    #[test]
    fn push_rate_is_all_or_nothing_and_refills_over_time() {
        let r = PushRate::new(100);
        let now = Instant::now();
        assert!(r.try_take("a", 60, now));
        assert!(!r.try_take("a", 60, now));
        assert!(r.try_take("b", 100, now));
        assert!(r.try_take("a", 40, now));
        assert!(!r.try_take("a", 1, now));
        assert!(r.try_take("a", 50, now + Duration::from_millis(500)));
        assert!(!r.try_take("a", 101, now + Duration::from_secs(10)));
    }
}
