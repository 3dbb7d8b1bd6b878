//! Exponential restart backoff, without I/O: the delay doubles from an
//! initial value up to a cap, and resets once a source has run healthily for
//! long enough.

use std::time::Duration;

/// A source that ran at least this long before failing counts as healthy, and
/// its next restart starts again from the initial delay.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// The restart delay of one source.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    last: Option<Duration>,
}

impl Backoff {
    /// Delays from `initial`, doubling, never over `max`.
    #[must_use]
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            last: None,
        }
    }

    /// The delay before the next restart, after a run of `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        if ran >= HEALTHY_RUN {
            self.last = None;
        }
        let delay = self
            .last
            .map_or(self.initial, |d| d.saturating_mul(2))
            .min(self.max);
        self.last = Some(delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let quick = ms(10);
        let delays: Vec<_> = (0..5).map(|_| b.next(quick)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        assert_eq!(b.next(HEALTHY_RUN), ms(100));
        assert_eq!(b.next(quick), ms(200));
    }
}
