//! `[limits]`: every cap a peer can run into, validated into the core's
//! [`Limits`] (owned by the service; see `docs/security.md`).

use std::time::Duration;

use sensegate_proto::frame::HARD_MAX_FRAME_BYTES;
use sensegate_proto::{FrameLimit, MessageLimits};

use super::raw::RawLimits;
use super::validate::Validator;
use super::{ConfigError, LagPolicy, Limits};

const K_FRAME: &str = "limits.max_frame_bytes";
const K_LAG: &str = "limits.lag_policy";

impl Validator<'_> {
    pub(super) fn limits(&self, r: &RawLimits) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        let max = u64::from(HARD_MAX_FRAME_BYTES);
        let frame_bytes =
            self.range(K_FRAME, r.max_frame_bytes, u64::from(l.frame.get()), 1, max)?;
        l.frame = FrameLimit::new(u32::try_from(frame_bytes).unwrap_or(u32::MAX))
            .map_err(|e| self.invalid(K_FRAME, &e.to_string()))?;
        l.message = self.message(r)?;
        l.lag_policy = match r.lag_policy.as_deref() {
            None => l.lag_policy,
            Some("drop-oldest") => LagPolicy::DropOldest,
            Some("disconnect") => LagPolicy::Disconnect,
            Some(_) => return Err(self.invalid(K_LAG, "must be \"drop-oldest\" or \"disconnect\"")),
        };
        self.connection_caps(r, &mut l)?;
        self.flow_caps(r, &mut l)?;
        Ok(l)
    }

    /// Connections and their timers.
    pub(super) fn connection_caps(&self, r: &RawLimits, l: &mut Limits) -> Result<(), ConfigError> {
        let k = "limits.max_connections";
        l.max_connections = self.size(k, r.max_connections, l.max_connections, 1, 1_000_000)?;
        let k = "limits.max_connections_per_address";
        let v = r.max_connections_per_address;
        l.max_connections_per_address =
            self.size(k, v, l.max_connections_per_address, 1, 1_000_000)?;
        let k = "limits.auth_timeout_ms";
        l.auth_timeout = self.millis(k, r.auth_timeout_ms, l.auth_timeout, 100, 60_000)?;
        let k = "limits.idle_timeout_secs";
        let secs = self.range(k, r.idle_timeout_secs, l.idle_timeout.as_secs(), 1, 86_400)?;
        l.idle_timeout = Duration::from_secs(secs);
        let k = "limits.frame_timeout_ms";
        l.frame_timeout = self.millis(k, r.frame_timeout_ms, l.frame_timeout, 100, 600_000)?;
        let k = "limits.auth_failures_per_minute";
        let v = r.auth_failures_per_minute;
        l.auth_failures_per_minute = self.small(k, v, l.auth_failures_per_minute, 1, 1_000_000)?;
        let k = "limits.max_tokens";
        l.max_tokens = self.size(k, r.max_tokens, l.max_tokens, 1, 1_000_000)?;
        let k = "limits.max_sensors";
        l.max_sensors = self.size(k, r.max_sensors, l.max_sensors, 1, 1_000_000)?;
        let k = "limits.max_sensors_per_token";
        let v = r.max_sensors_per_token;
        l.max_sensors_per_token = self.size(k, v, l.max_sensors_per_token, 1, 1_000_000)?;
        // A tenth of the catalog for configured sources unless said.
        let k = "limits.sensors_reserved_for_sources";
        let v = r.sensors_reserved_for_sources;
        let most = l.max_sensors;
        l.sensors_reserved_for_sources = self.size(k, v, l.max_sensors / 10, 0, most)?;
        let k = "limits.audit_denials_per_minute";
        let v = r.audit_denials_per_minute;
        l.audit_denials_per_minute = self.small(k, v, l.audit_denials_per_minute, 1, 1_000_000)?;
        Ok(())
    }

    /// Subscriptions, pushes and buffered bytes.
    pub(super) fn flow_caps(&self, r: &RawLimits, l: &mut Limits) -> Result<(), ConfigError> {
        let k = "limits.max_subscriptions";
        l.max_subscriptions = self.size(k, r.max_subscriptions, l.max_subscriptions, 1, 10_000)?;
        let k = "limits.max_patterns_per_token";
        let v = r.max_patterns_per_token;
        l.max_patterns_per_token = self.size(k, v, l.max_patterns_per_token, 1, 10_000_000)?;
        let k = "limits.max_patterns_per_address";
        let v = r.max_patterns_per_address;
        l.max_patterns_per_address = self.size(k, v, l.max_patterns_per_address, 1, 10_000_000)?;
        let k = "limits.max_push_batch";
        let most = l.message.max_readings;
        l.max_push_batch = self.size(k, r.max_push_batch, l.max_push_batch, 1, most)?;
        let k = "limits.push_rate_per_sec";
        l.push_rate_per_sec =
            self.small(k, r.push_rate_per_sec, l.push_rate_per_sec, 1, 10_000_000)?;
        let k = "limits.inflight_bytes_per_connection";
        let v = r.inflight_bytes_per_connection;
        l.inflight_bytes_per_connection =
            self.size(k, v, l.inflight_bytes_per_connection, 4096, 1 << 30)?;
        let k = "limits.inflight_bytes_total";
        let v = r.inflight_bytes_total;
        l.inflight_bytes_total = self.size(k, v, l.inflight_bytes_total, 1 << 16, 1 << 40)?;
        let k = "limits.inflight_bytes_per_token";
        let v = r.inflight_bytes_per_token;
        l.inflight_bytes_per_token =
            self.size(k, v, l.inflight_bytes_per_token, 1 << 16, 1 << 40)?;
        let k = "limits.reply_bytes_per_connection";
        let v = r.reply_bytes_per_connection;
        l.reply_bytes_per_connection =
            self.size(k, v, l.reply_bytes_per_connection, 4096, 1 << 30)?;
        let k = "limits.write_timeout_ms";
        l.write_timeout = self.millis(k, r.write_timeout_ms, l.write_timeout, 100, 600_000)?;
        if l.write_timeout > l.idle_timeout {
            if r.write_timeout_ms.is_some() {
                return Err(self.invalid(k, "must be at most idle_timeout_secs"));
            }
            // The default, under a shorter idle timeout: that one.
            l.write_timeout = l.idle_timeout;
        }
        let k = "limits.subscriber_queue";
        l.subscriber_queue = self.size(k, r.subscriber_queue, l.subscriber_queue, 1, 1 << 20)?;
        Ok(())
    }

    pub(super) fn millis(
        &self,
        key: &'static str,
        v: Option<u64>,
        def: Duration,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        let def = u64::try_from(def.as_millis()).unwrap_or(u64::MAX);
        Ok(Duration::from_millis(self.range(key, v, def, min, max)?))
    }

    pub(super) fn message(&self, r: &RawLimits) -> Result<MessageLimits, ConfigError> {
        let dm = MessageLimits::DEFAULT;
        Ok(MessageLimits {
            max_name_bytes: self.size(
                "limits.max_name_bytes",
                r.max_name_bytes,
                dm.max_name_bytes,
                1,
                1024,
            )?,
            max_pattern_bytes: self.size(
                "limits.max_pattern_bytes",
                r.max_pattern_bytes,
                dm.max_pattern_bytes,
                1,
                4096,
            )?,
            max_token_bytes: self.size(
                "limits.max_token_bytes",
                r.max_token_bytes,
                dm.max_token_bytes,
                128,
                4096,
            )?,
            max_text_bytes: self.size(
                "limits.max_text_bytes",
                r.max_text_bytes,
                dm.max_text_bytes,
                64,
                65_536,
            )?,
            max_readings: self.size(
                "limits.max_readings",
                r.max_readings,
                dm.max_readings,
                1,
                1_000_000,
            )?,
            max_list_items: self.size(
                "limits.max_list_items",
                r.max_list_items,
                dm.max_list_items,
                1,
                1_000_000,
            )?,
        })
    }
}
