//! Counters that several parts of the daemon add to and `/metrics` reads:
//! how often each cap was hit ([`LimitHits`], by [`Limit`]), and a latency
//! [`Histogram`] with fixed buckets (the store's commits).
//!
//! Everything here is a fixed set of atomics: counting never allocates,
//! never locks, and a flood of hostile peers cannot grow it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A cap the daemon enforces, as counted in
/// `sensegate_limits_hit_total{limit="..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.max_connections`: a connection refused at the door.
    ConnectionsTotal,
    /// `limits.max_connections_per_address`.
    ConnectionsPerAddress,
    /// A frame declared over the frame cap (or over the hello cap before
    /// authentication).
    FrameSize,
    /// A frame over the connection's or the daemon's in-flight byte budget.
    Inflight,
    /// A frame not finished within `limits.frame_timeout_ms`.
    FrameTimeout,
    /// No authentication within `limits.auth_timeout_ms` (either front end).
    AuthTimeout,
    /// Closed after `limits.idle_timeout_ms` without a frame.
    IdleTimeout,
    /// A peer that stopped reading its replies.
    SlowReader,
    /// `limits.push_rate_per_sec`.
    PushRate,
    /// `limits.max_push_batch`.
    PushBatch,
    /// `limits.max_subscriptions`.
    Subscriptions,
    /// `limits.max_patterns_per_token`.
    PatternsPerToken,
    /// `limits.max_patterns_per_address`.
    PatternsPerAddress,
    /// `limits.max_sensors`, or the part not reserved for sources.
    Sensors,
    /// `limits.max_sensors_per_token`.
    SensorsPerToken,
    /// `limits.max_tokens`.
    Tokens,
    /// `store.max_queries` or `store.max_queries_per_token`: a history
    /// query refused because the slots, or the token's share, were taken.
    HistoryQueries,
    /// `http.max_body_bytes`.
    HttpBody,
    /// `http.max_query_bytes`.
    HttpQuery,
    /// `http.request_timeout_ms`.
    HttpRequestTimeout,
    /// `http.header_timeout_ms`.
    HttpHeaderTimeout,
    /// `store.max_queued_readings`: a push refused after waiting for room.
    StoreQueue,
    /// `ingest.max_body_bytes`: an ingest body as sent.
    IngestBody,
    /// `ingest.max_decoded_bytes`: an ingest body once inflated.
    IngestDecoded,
    /// `ingest.max_readings`: readings in one ingest request.
    IngestReadings,
}

impl Limit {
    /// Every limit, in the order `/metrics` lists them.
    pub const ALL: [Self; 25] = [
        Self::ConnectionsTotal,
        Self::ConnectionsPerAddress,
        Self::FrameSize,
        Self::Inflight,
        Self::FrameTimeout,
        Self::AuthTimeout,
        Self::IdleTimeout,
        Self::SlowReader,
        Self::PushRate,
        Self::PushBatch,
        Self::Subscriptions,
        Self::PatternsPerToken,
        Self::PatternsPerAddress,
        Self::Sensors,
        Self::SensorsPerToken,
        Self::Tokens,
        Self::HistoryQueries,
        Self::HttpBody,
        Self::HttpQuery,
        Self::HttpRequestTimeout,
        Self::HttpHeaderTimeout,
        Self::StoreQueue,
        Self::IngestBody,
        Self::IngestDecoded,
        Self::IngestReadings,
    ];

    /// Its label value.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ConnectionsTotal => "connections_total",
            Self::ConnectionsPerAddress => "connections_per_address",
            Self::FrameSize => "frame_size",
            Self::Inflight => "inflight_bytes",
            Self::FrameTimeout => "frame_timeout",
            Self::AuthTimeout => "auth_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowReader => "slow_reader",
            Self::PushRate => "push_rate",
            Self::PushBatch => "push_batch",
            Self::Subscriptions => "subscriptions",
            Self::PatternsPerToken => "patterns_per_token",
            Self::PatternsPerAddress => "patterns_per_address",
            Self::Sensors => "sensors",
            Self::SensorsPerToken => "sensors_per_token",
            Self::Tokens => "tokens",
            Self::HistoryQueries => "history_queries",
            Self::HttpBody => "http_body",
            Self::HttpQuery => "http_query",
            Self::HttpRequestTimeout => "http_request_timeout",
            Self::HttpHeaderTimeout => "http_header_timeout",
            Self::StoreQueue => "store_queue",
            Self::IngestBody => "ingest_body",
            Self::IngestDecoded => "ingest_decoded",
            Self::IngestReadings => "ingest_readings",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// How often each [`Limit`] was hit.
#[derive(Debug, Default)]
pub struct LimitHits([AtomicU64; Limit::ALL.len()]);

impl LimitHits {
    /// Counts one hit.
    pub fn hit(&self, limit: Limit) {
        self.add(limit, 1);
    }

    /// Counts `n` hits.
    pub fn add(&self, limit: Limit, n: u64) {
        self.0[limit.index()].fetch_add(n, Relaxed);
    }

    /// Hits so far.
    #[must_use]
    pub fn get(&self, limit: Limit) -> u64 {
        self.0[limit.index()].load(Relaxed)
    }
}

/// Why a reading a device sent in a protocol with its own topic or payload
/// conventions (MQTT; later HTTP ingest) was refused before it reached the
/// service's push checks, or by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestRefusal {
    /// Outside the token's scope, or a role that may not push.
    Forbidden,
    /// No mapping rule names this topic.
    Unmapped,
    /// The payload is not a reading this mapping can read.
    BadPayload,
    /// The token's push rate, or the push batch cap.
    Rate,
    /// No room: the catalog, the token's sensors, or history storage.
    Full,
    /// The store could not commit it.
    Failed,
    /// The request is over a size cap (body, inflated body, readings).
    TooLarge,
}

impl IngestRefusal {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Self; 7] = [
        Self::Forbidden,
        Self::Unmapped,
        Self::BadPayload,
        Self::Rate,
        Self::Full,
        Self::Failed,
        Self::TooLarge,
    ];

    /// Its label in `/metrics`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Unmapped => "unmapped",
            Self::BadPayload => "bad_payload",
            Self::Rate => "rate",
            Self::Full => "full",
            Self::Failed => "failed",
            Self::TooLarge => "too_large",
        }
    }
}

/// Refused ingests, per front end and reason.
#[derive(Debug, Default)]
pub struct IngestRefusals(
    [[AtomicU64; IngestRefusal::ALL.len()]; crate::registry::Frontend::ALL.len()],
);

impl IngestRefusals {
    /// Counts one refusal.
    pub fn hit(&self, frontend: crate::registry::Frontend, reason: IngestRefusal) {
        self.add(frontend, reason, 1);
    }

    /// Counts `n` refusals.
    pub fn add(&self, frontend: crate::registry::Frontend, reason: IngestRefusal, n: u64) {
        self.0[frontend as usize][reason as usize].fetch_add(n, Relaxed);
    }

    /// Refusals so far.
    #[must_use]
    pub fn get(&self, frontend: crate::registry::Frontend, reason: IngestRefusal) -> u64 {
        self.0[frontend as usize][reason as usize].load(Relaxed)
    }
}

/// Upper bounds of the latency buckets, in seconds (the last bucket,
/// `+Inf`, is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts; the last is over every bound.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`]'s values.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts per bound of [`LATENCY_BUCKETS`], then `+Inf`.
    pub cumulative: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// The values now, cumulative as the text format wants them.
    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Relaxed);
                total
            })
            .collect();
        #[expect(
            clippy::cast_precision_loss,
            reason = "a sum of microseconds, exact below 2^52 (142 years)"
        )]
        let sum_seconds = self.sum_us.load(Relaxed) as f64 / 1e6;
        HistogramSnapshot {
            cumulative,
            sum_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_limit_in_index_order() {
        // A variant added without a place in ALL would index past the
        // counters' array: each index must appear, in order.
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{}", l.name());
        }
        assert_eq!(Limit::IngestReadings.index(), Limit::ALL.len() - 1);
    }

    #[test]
    fn every_limit_has_its_own_slot_and_name() {
        let hits = LimitHits::default();
        for (i, l) in Limit::ALL.iter().enumerate() {
            hits.add(*l, i as u64 + 1);
        }
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(hits.get(*l), i as u64 + 1, "{}", l.name());
        }
        let mut names: Vec<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_an_inf_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300)); // <= 0.5 ms
        h.observe(Duration::from_millis(3)); // <= 5 ms
        h.observe(Duration::from_secs(10)); // +Inf only
        let s = h.snapshot();
        assert_eq!(s.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[3], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len()], 3);
        assert!((s.sum_seconds - 10.0033).abs() < 1e-9);
    }
}
