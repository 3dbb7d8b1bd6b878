//! The Prometheus text exposition for `/metrics`, rendered from the
//! service's [`MetricsSnapshot`] (typed values, already filtered by policy
//! for the caller).
//!
//! Series: connections by front end, frames and bytes in and out by front
//! end, caps hit by kind, hub subscribers and what their queues lost,
//! readings taken in, readings left out of history, the store's commit
//! latency, failed authentications by reason, driver host restarts by
//! source, sensors by state, and for each sensor the caller may read, its
//! last value and the age of that value. When the endpoint is
//! configured public there is no caller, and no per-sensor series.
//! Label values are sensor and source names, which the name rules keep to
//! `[A-Za-z0-9._:/-]`; they are escaped anyway.

use std::fmt::Write as _;

use crate::reading::now_us;
use crate::service::MetricsSnapshot;
use crate::stats::{HistogramSnapshot, LATENCY_BUCKETS};
use sensegate_core::Traffic;

/// Renders every series of `m` (already filtered by the service for its
/// caller).
#[must_use]
pub fn render(m: &MetricsSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    daemon_series(&mut out, m);
    header(&mut out, "sensegate_sensors", "gauge", "Sensors by state.");
    for (state, n) in &m.sensors_by_state {
        let _ = writeln!(out, "sensegate_sensors{{state=\"{}\"}} {n}", state.name());
    }
    if let Some(values) = &m.sensor_values {
        sensor_series(&mut out, values);
    }
    out
}

/// Connections, the hub, ingest, history, authentication, driver restarts.
fn daemon_series(out: &mut String, m: &MetricsSnapshot) {
    header(
        out,
        "sensegate_connections",
        "gauge",
        "Open connections by front end.",
    );
    for (frontend, n) in &m.connections {
        let _ = writeln!(out, "sensegate_connections{{frontend=\"{frontend}\"}} {n}");
    }
    header(
        out,
        "sensegate_connections_parked",
        "gauge",
        "Idle native connections waiting without a task (counted in sensegate_connections too).",
    );
    let _ = writeln!(out, "sensegate_connections_parked {}", m.parked);
    traffic_series(out, m);
    limit_series(out, m);
    hub_series(out, m);
    header(
        out,
        "sensegate_readings_ingested_total",
        "counter",
        "Readings taken in from every source.",
    );
    let _ = writeln!(
        out,
        "sensegate_readings_ingested_total {}",
        m.readings_ingested
    );
    if let Some(store) = &m.store {
        header(
            out,
            "sensegate_history_dropped_total",
            "counter",
            "Source readings left out of history (queue full).",
        );
        let _ = writeln!(out, "sensegate_history_dropped_total {}", store.dropped);
        histogram(
            out,
            "sensegate_store_commit_seconds",
            "Time the store took per group commit.",
            &store.commit_latency,
        );
        if let Some(wal) = store.wal_bytes {
            header(
                out,
                "sensegate_store_wal_bytes",
                "gauge",
                "Size of the history database's write-ahead log.",
            );
            let _ = writeln!(out, "sensegate_store_wal_bytes {wal}");
        }
    }
    uplink_series(out, &m.uplinks);
    if let Some(site) = &m.site {
        site_series(out, site);
    }
    header(
        out,
        "sensegate_auth_failures_total",
        "counter",
        "Failed authentications by reason.",
    );
    let _ = writeln!(
        out,
        "sensegate_auth_failures_total{{reason=\"bad_token\"}} {}",
        m.auth_bad_token
    );
    let _ = writeln!(
        out,
        "sensegate_auth_failures_total{{reason=\"throttled\"}} {}",
        m.auth_throttled
    );
    header(
        out,
        "sensegate_driver_restarts_total",
        "counter",
        "Driver host restarts by source.",
    );
    for (source, n) in &m.driver_restarts {
        let _ = writeln!(
            out,
            "sensegate_driver_restarts_total{{source=\"{}\"}} {n}",
            escape(source)
        );
    }
}

/// One uplink series: name, type, help, value.
type UplinkSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::service::UplinkFigures) -> String,
);

/// Each uplink: connected, last confirmed sequence number, backlog, what
/// it sent, retries, drops past its cap.
fn uplink_series(out: &mut String, uplinks: &[crate::service::UplinkFigures]) {
    if uplinks.is_empty() {
        return;
    }
    let series: [UplinkSeries; 8] = [
        (
            "sensegate_uplink_connected",
            "gauge",
            "1 while the uplink is connected.",
            |u| u8::from(u.connected).to_string(),
        ),
        (
            "sensegate_uplink_delivered_seq",
            "gauge",
            "The last commit sequence number the remote side confirmed.",
            |u| u.delivered_seq.to_string(),
        ),
        (
            "sensegate_uplink_backlog_rows",
            "gauge",
            "Readings committed and not yet confirmed.",
            |u| u.backlog_rows.to_string(),
        ),
        (
            "sensegate_uplink_backlog_seconds",
            "gauge",
            "Age of the oldest reading not yet confirmed.",
            |u| u.backlog_seconds.to_string(),
        ),
        (
            "sensegate_uplink_batches_total",
            "counter",
            "Batches the remote side confirmed.",
            |u| u.batches.to_string(),
        ),
        (
            "sensegate_uplink_rows_total",
            "counter",
            "Readings the remote side confirmed.",
            |u| u.rows.to_string(),
        ),
        (
            "sensegate_uplink_retries_total",
            "counter",
            "Failed connections and batches.",
            |u| u.retries.to_string(),
        ),
        (
            "sensegate_uplink_dropped_total",
            "counter",
            "Readings dropped past the backlog cap, never delivered.",
            |u| u.dropped.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        for u in uplinks {
            let _ = writeln!(
                out,
                "{name}{{uplink=\"{}\",kind=\"{}\"}} {}",
                escape(&u.name),
                u.kind,
                value(u)
            );
        }
    }
}

/// A site view's follower of the site's database.
fn site_series(out: &mut String, s: &crate::service::SiteFigures) {
    let series: [(&str, &str, &str, u64); 8] = [
        (
            "sensegate_site_connected",
            "gauge",
            "1 while the site view follows the site's database.",
            u64::from(s.connected),
        ),
        (
            "sensegate_site_sensors",
            "gauge",
            "Sensors of the site followed.",
            s.sensors,
        ),
        (
            "sensegate_site_polls_total",
            "counter",
            "Polls of the site's database for new readings.",
            s.polls,
        ),
        (
            "sensegate_site_readings_total",
            "counter",
            "Readings taken in from the site's database (for latest values and live views).",
            s.readings,
        ),
        (
            "sensegate_site_refused_total",
            "counter",
            "Rows of the site's database left out: not valid readings or sensor names.",
            s.refused,
        ),
        (
            "sensegate_site_failures_total",
            "counter",
            "Connections to the site's database lost or refused.",
            s.failures,
        ),
        (
            "sensegate_site_poll_rows_max",
            "gauge",
            "The most rows one poll read (at most history.max_rows_per_poll).",
            s.poll_rows_max,
        ),
        (
            "sensegate_site_behind_sensors",
            "gauge",
            "Sensors with more readings waiting after the last poll: the live view is behind them.",
            s.behind,
        ),
    ];
    for (name, kind, help, value) in series {
        header(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Last value and age of each sensor in the caller's scope.
fn sensor_series(out: &mut String, values: &[crate::service::SensorValue]) {
    let now = now_us();
    header(
        out,
        "sensegate_sensor_value",
        "gauge",
        "Last value of each sensor in scope.",
    );
    let mut ages = String::new();
    for s in values {
        let name = escape(&s.name);
        let _ = writeln!(
            out,
            "sensegate_sensor_value{{sensor=\"{name}\"}} {}",
            s.value
        );
        #[allow(
            clippy::cast_precision_loss,
            reason = "ages in seconds, far below 2^52"
        )]
        let age = (now - s.timestamp_us).max(0) as f64 / 1e6;
        let _ = writeln!(
            ages,
            "sensegate_sensor_age_seconds{{sensor=\"{name}\"}} {age}"
        );
    }
    header(
        out,
        "sensegate_sensor_age_seconds",
        "gauge",
        "Age of each sensor's last value.",
    );
    out.push_str(&ages);
}

/// Hub subscribers and what their queues lost.
fn hub_series(out: &mut String, m: &MetricsSnapshot) {
    header(
        out,
        "sensegate_hub_subscribers",
        "gauge",
        "Subscribers of the hub.",
    );
    let _ = writeln!(out, "sensegate_hub_subscribers {}", m.hub.subscribers);
    header(
        out,
        "sensegate_hub_route_builds_total",
        "counter",
        "Routes (the subscribers of one sensor) built from scratch; subscription changes update routes in place.",
    );
    let _ = writeln!(
        out,
        "sensegate_hub_route_builds_total {}",
        m.hub.route_builds
    );
    header(
        out,
        "sensegate_hub_dropped_total",
        "counter",
        "Readings dropped from full subscriber queues (lag_policy drop_oldest).",
    );
    let _ = writeln!(out, "sensegate_hub_dropped_total {}", m.hub.dropped);
    header(
        out,
        "sensegate_hub_lagged_total",
        "counter",
        "Subscribers cut off for falling behind (lag_policy disconnect).",
    );
    let _ = writeln!(out, "sensegate_hub_lagged_total {}", m.hub.lagged);
}

/// Frames and bytes in and out by front end (HTTP: requests, and responses
/// and stream events).
fn traffic_series(out: &mut String, m: &MetricsSnapshot) {
    for (name, help, field) in [
        (
            "sensegate_frames_received_total",
            "Frames (native) or requests (HTTP) received, by front end.",
            (|t: &Traffic| t.frames_in) as fn(&Traffic) -> u64,
        ),
        (
            "sensegate_frames_sent_total",
            "Frames (native) or responses and events (HTTP) sent, by front end.",
            |t: &Traffic| t.frames_out,
        ),
        (
            "sensegate_bytes_received_total",
            "Bytes received, by front end (native: whole frames; HTTP: all read inside TLS).",
            |t: &Traffic| t.bytes_in,
        ),
        (
            "sensegate_bytes_sent_total",
            "Bytes sent, by front end (native: whole frames; HTTP: all written inside TLS).",
            |t: &Traffic| t.bytes_out,
        ),
    ] {
        header(out, name, "counter", help);
        for (frontend, t) in &m.traffic {
            let _ = writeln!(out, "{name}{{frontend=\"{frontend}\"}} {}", field(t));
        }
    }
}

/// How often each cap was hit.
fn limit_series(out: &mut String, m: &MetricsSnapshot) {
    header(
        out,
        "sensegate_limits_hit_total",
        "counter",
        "Requests, frames and connections refused or cut off by a cap, by cap.",
    );
    for (limit, n) in &m.limits {
        let _ = writeln!(
            out,
            "sensegate_limits_hit_total{{limit=\"{}\"}} {n}",
            limit.name()
        );
    }
    header(
        out,
        "sensegate_ingest_refused_total",
        "counter",
        "Readings a device sent that were refused, by front end and reason.",
    );
    for (frontend, reason, n) in &m.ingest_refused {
        let _ = writeln!(
            out,
            "sensegate_ingest_refused_total{{frontend=\"{}\",reason=\"{}\"}} {n}",
            frontend.name(),
            reason.name()
        );
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    header(out, name, "histogram", help);
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let count = h.cumulative.last().copied().unwrap_or(0);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", h.sum_seconds);
    let _ = writeln!(out, "{name}_count {count}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape("room/t-1"), "room/t-1");
    }
}
