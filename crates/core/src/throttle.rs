//! Rate caps with time as a parameter: failed authentications per source
//! address, and pushed readings per token.
//!
//! Both tables are bounded. The failure table keys IPv6 peers by their /64
//! (one host usually owns a whole /64) and holds at most
//! [`MAX_TRACKED_ADDRESSES`] entries; when it is full and nothing has
//! expired, an arbitrary entry is evicted for the newcomer, so a flood of
//! addresses can neither grow memory nor lock anyone out.
//!
//! The failure throttle is consulted only after a token failed to verify
//! (verification is constant time and cheap): a valid token is never
//! refused for the failures of others behind the same address (a NAT, a
//! proxy, localhost). Counting a failure and deciding whether it is over
//! the allowance is one step under one lock, so parallel attempts cannot
//! race past the count. What the throttle bounds is how many failures an
//! address is answered as failures, and the audit lines they cost; guessing
//! itself is made hopeless by the tokens' 256 random bits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::time::Instant;

/// Most addresses whose failures are remembered at once.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// The window over which failures are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Failed authentications per source address per minute.
#[derive(Debug)]
pub struct AuthThrottle {
    per_window: u32,
    failures: Mutex<Table>,
}

/// How often a full table may be scanned for expired windows.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Table {
    windows: HashMap<IpAddr, Window>,
    cap: usize,
    last_prune: Option<Instant>,
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
            failures: Mutex::new(Table {
                windows: HashMap::new(),
                cap: max_tracked,
                last_prune: None,
            }),
        }
    }

    /// Counts a failed authentication from `ip` and says whether it is
    /// over the address's allowance (then the caller answers "throttled"
    /// instead of "bad token"). One step under the lock: of any number of
    /// parallel failures, exactly `per_window` are under the allowance.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut t = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let k = key(ip);
        if !t.windows.contains_key(&k) && t.windows.len() >= t.cap {
            t.make_room(now);
        }
        let w = t.windows.entry(k).or_insert(Window {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(w.start) >= FAILURE_WINDOW {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        w.count > self.per_window
    }

    /// Addresses tracked now.
    #[cfg(test)]
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .windows
            .len()
    }
}

impl Table {
    /// Frees one place at least: drops expired windows (a full scan, at most
    /// once per [`PRUNE_EVERY`]), else evicts an arbitrary entry. Evicting
    /// forgets one address's failures early, which costs an attacker's
    /// target nothing: a valid token is never throttled.
    fn make_room(&mut self, now: Instant) {
        let due = self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_EVERY);
        if due {
            self.last_prune = Some(now);
            self.windows
                .retain(|_, w| now.saturating_duration_since(w.start) < FAILURE_WINDOW);
        }
        if self.windows.len() >= self.cap
            && let Some(&victim) = self.windows.keys().next()
        {
            self.windows.remove(&victim);
        }
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
            assert!(!t.record_failure(ip("10.0.0.1"), now));
        }
        assert!(t.record_failure(ip("10.0.0.1"), now));
        assert!(!t.record_failure(ip("10.0.0.2"), now));
        assert!(!t.record_failure(ip("10.0.0.1"), now + FAILURE_WINDOW));
    }

    #[test]
    fn ipv6_peers_are_counted_per_64() {
        let t = AuthThrottle::new(2);
        let now = Instant::now();
        t.record_failure(ip("2001:db8::1"), now);
        t.record_failure(ip("2001:db8::2"), now);
        assert!(t.record_failure(ip("2001:db8::ffff"), now));
        assert!(!t.record_failure(ip("2001:db8:0:1::1"), now));
    }

    #[test]
    fn a_full_table_evicts_for_a_newcomer_instead_of_refusing_it() {
        let t = AuthThrottle::with_capacity(1, 2);
        let now = Instant::now();
        assert!(!t.record_failure(ip("10.0.0.1"), now));
        assert!(!t.record_failure(ip("10.0.0.2"), now));
        // Full, nothing expired: the newcomer gets its own allowance.
        assert!(!t.record_failure(ip("10.0.0.3"), now));
        assert!(t.record_failure(ip("10.0.0.3"), now));
        assert_eq!(t.tracked(), 2);
        // A flood of addresses never grows the table.
        for i in 0..1000u32 {
            t.record_failure(IpAddr::V4(i.into()), now);
        }
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn parallel_failures_get_exactly_the_allowance() {
        let t = std::sync::Arc::new(AuthThrottle::new(10));
        let now = Instant::now();
        let under: usize = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| !t.record_failure(ip("10.0.0.9"), now))
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(under, 10);
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
