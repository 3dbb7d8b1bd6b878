//! When an uplink tries again after a failure, and how fast it replays.
//!
//! [`Backoff`] doubles a ceiling from `min` to `max` with each failure in a
//! row and waits a random time between half the ceiling and all of it, so
//! a site's gateways that lost the same server do not come back in step
//! (a reconnect storm). [`Pace`] keeps the rows sent under a rate, so a
//! gateway that was cut off for a day replays its backlog without flooding
//! the server the whole site shares.

use std::time::Duration;

use tokio::time::Instant;

/// Waits between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// From `min` doubling to `max`; `seed` picks the jitter.
    #[must_use]
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            failures: 0,
            rng: seed | 1,
        }
    }

    /// A seed from the system's random source (a fixed one if it fails:
    /// jitter is not a secret).
    #[must_use]
    pub fn seed() -> u64 {
        let mut b = [0u8; 8];
        match getrandom::fill(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The wait before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        // xorshift64*: plenty for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let half = ceiling / 2;
        let span = u64::try_from(ceiling.saturating_sub(half).as_micros()).unwrap_or(u64::MAX);
        half + Duration::from_micros(r % span.max(1))
    }

    /// A success: the next failure waits `min` again.
    pub const fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Keeps rows sent under a rate.
#[derive(Debug, Clone)]
pub struct Pace {
    per_row: Duration,
    next: Option<Instant>,
}

impl Pace {
    /// At most `rows_per_sec` rows a second (at least 1).
    #[must_use]
    pub fn new(rows_per_sec: u64) -> Self {
        Self {
            per_row: Duration::from_nanos(1_000_000_000 / rows_per_sec.max(1)),
            next: None,
        }
    }

    /// Counts `rows` sent now; returns how long to wait before sending
    /// more. A quiet spell earns no credit beyond one second's rows.
    pub fn sent(&mut self, rows: usize, now: Instant) -> Duration {
        let earliest = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        let start = self.next.map_or(now, |n| n.max(earliest));
        let cost = self
            .per_row
            .saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX));
        let next = start + cost;
        self.next = Some(next);
        next.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_ceiling_with_jitter_and_reset_on_success() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(min, max, 7);
        let mut ceiling = min;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            ceiling = (ceiling * 2).min(max);
        }
        b.reset();
        assert!(b.next_delay() <= min);
        // Two gateways seeded apart do not wait in step.
        let mut a = Backoff::new(min, max, 1);
        let mut c = Backoff::new(min, max, 2);
        let same = (0..8).filter(|_| a.next_delay() == c.next_delay()).count();
        assert!(same < 8);
    }

    #[test]
    fn the_pace_holds_rows_to_the_rate() {
        let now = Instant::now();
        let mut p = Pace::new(1000);
        // 500 rows: half a second's worth, to wait.
        assert_eq!(p.sent(500, now), Duration::from_millis(500));
        assert_eq!(p.sent(500, now), Duration::from_secs(1));
        // After a long quiet spell, at most one second of credit.
        let later = now + Duration::from_secs(60);
        assert_eq!(p.sent(2000, later), Duration::from_secs(1));
    }
}
