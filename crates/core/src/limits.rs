//! The caps the service enforces: one validated value per `limits.*` key
//! (the daemon's config reads and checks them; see `docs/security.md`).

use std::time::Duration;

use sensegate_proto::{FrameLimit, MessageLimits};

use crate::hub::LagPolicy;

/// Every cap, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "each field mirrors the `limits` key of the same name"
)]
pub struct Limits {
    pub frame: FrameLimit,
    pub message: MessageLimits,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub auth_timeout: Duration,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_subscriptions: usize,
    pub max_patterns_per_token: usize,
    pub max_patterns_per_address: usize,
    pub max_push_batch: usize,
    pub push_rate_per_sec: u32,
    pub inflight_bytes_per_connection: usize,
    pub inflight_bytes_total: usize,
    pub inflight_bytes_per_token: usize,
    pub reply_bytes_per_connection: usize,
    pub write_timeout: Duration,
    pub subscriber_queue: usize,
    pub lag_policy: LagPolicy,
    pub auth_failures_per_minute: u32,
    pub max_tokens: usize,
    pub max_sensors: usize,
    pub max_sensors_per_token: usize,
    pub sensors_reserved_for_sources: usize,
    pub audit_denials_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            frame: FrameLimit::DEFAULT,
            message: MessageLimits::DEFAULT,
            max_connections: 10_000,
            max_connections_per_address: 64,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            max_subscriptions: 64,
            max_patterns_per_token: 1_024,
            max_patterns_per_address: 1_024,
            max_push_batch: 1_000,
            push_rate_per_sec: 10_000,
            inflight_bytes_per_connection: 1 << 20,
            inflight_bytes_total: 256 << 20,
            inflight_bytes_per_token: 64 << 20,
            reply_bytes_per_connection: 1 << 20,
            write_timeout: Duration::from_secs(10),
            subscriber_queue: 1_024,
            lag_policy: LagPolicy::DropOldest,
            auth_failures_per_minute: 10,
            max_tokens: 10_000,
            max_sensors: 10_000,
            max_sensors_per_token: 1_000,
            sensors_reserved_for_sources: 1_000,
            audit_denials_per_minute: 600,
        }
    }
}
