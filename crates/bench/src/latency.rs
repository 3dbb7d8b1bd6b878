//! A latency histogram with fixed memory: 64 linear buckets per power of
//! two of microseconds (under 1.6% error), merged across tasks at the end
//! of a step.

/// Buckets per power of two.
const SUB: u64 = 64;
/// Powers of two covered above the linear range: up to 2^46 µs (two years).
const POWERS: usize = 41;

/// Counts of latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            counts: vec![0; (POWERS + 1) * 64],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return usize::try_from(v).unwrap_or(0);
    }
    let exp = u64::from(v.ilog2()); // >= 6
    let shift = exp - 6;
    let mantissa = (v >> shift) - SUB;
    usize::try_from((exp - 5) * SUB + mantissa).unwrap_or(usize::MAX)
}

/// The upper edge of bucket `i` (what a percentile reports).
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = i / SUB;
    let m = i % SUB;
    let shift = e - 1;
    ((SUB + m + 1) << shift) - 1
}

impl Latency {
    /// Records one latency. Negative ones (clocks are the same here, so
    /// only rounding) count as zero.
    pub fn record(&mut self, micros: i64) {
        let v = u64::try_from(micros).unwrap_or(0);
        let i = index(v).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Observations.
    #[cfg(test)]
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` (0 to 1), in microseconds.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rank within the count, rounded up"
        )]
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// The largest latency seen.
    #[must_use]
    pub const fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        let mut last = None;
        for v in 0..200_000u64 {
            let i = index(v);
            assert!(v <= upper(i), "{v} above its bucket's edge {}", upper(i));
            if let Some(prev) = last {
                assert!(i == prev || i == prev + 1, "{v}: jumped from {prev} to {i}");
            }
            last = Some(i);
            if v >= 64 {
                // Under 1.6% above the value.
                assert!(upper(i) - v <= v / 63, "{v} -> {}", upper(i));
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Latency::default();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        // The bucket's upper edge: within the 1.6% resolution.
        let p50 = h.quantile(0.5);
        assert!((500..=508).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990..=1000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.max(), 1000);
        let mut other = Latency::default();
        other.record(50_000);
        h.merge(&other);
        assert_eq!(h.max(), 50_000);
        assert_eq!(h.count(), 1001);
    }
}

/// What acknowledging tasks (devices, writers, publishers) add up to once
/// they are done: how many were acknowledged, and their latencies.
///
/// # Errors
/// A task failed, or panicked (`what` names it).
pub async fn gather(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<(u64, Latency)>>>,
    what: &'static str,
) -> anyhow::Result<(u64, Latency)> {
    use anyhow::Context as _;
    let mut latency = Latency::default();
    let mut acked = 0;
    for t in tasks {
        let (n, l) = t.await.context(what)??;
        acked += n;
        latency.merge(&l);
    }
    Ok((acked, latency))
}

/// Acknowledgements per second over `secs`, and their latency in
/// milliseconds: the figures every ingest scenario reports.
#[derive(Debug, Clone, Copy)]
pub struct Acks {
    /// Acknowledged per second.
    pub per_sec: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Acks {
    /// `acked` over `secs` seconds, with `latency`.
    #[must_use]
    pub fn of(acked: u64, latency: &Latency, secs: f64) -> Self {
        #[expect(clippy::cast_precision_loss, reason = "figures for a table")]
        let ms = |us: u64| us as f64 / 1000.0;
        #[expect(clippy::cast_precision_loss, reason = "figures for a table")]
        let per_sec = acked as f64 / secs;
        Self {
            per_sec,
            p50_ms: ms(latency.quantile(0.5)),
            p99_ms: ms(latency.quantile(0.99)),
            max_ms: ms(latency.max()),
        }
    }
}
