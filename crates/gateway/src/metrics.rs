//! The Prometheus text exposition for `/metrics`, built from typed values.
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
use std::sync::atomic::Ordering::Relaxed;

use crate::auth::Principal;
use crate::catalog::SensorState;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::reading::now_us;
use crate::registry::Traffic;
use crate::service::Service;
use crate::stats::{HistogramSnapshot, LATENCY_BUCKETS, Limit};

/// Renders every series. With a caller, what concerns sensors (their
/// counts by state, driver restarts by source, per-sensor values) covers
/// only the sensors it may read: a reader learns nothing of the others.
#[must_use]
pub fn render(service: &Service, caller: Option<&Principal>) -> String {
    let mut out = String::with_capacity(4096);
    let everything = Pattern::any();
    let sensors = service
        .catalog()
        .list(&everything, service.limits().max_sensors, |name| {
            caller.is_none_or(|p| policy::decide(p, Action::ReadSensor(name)).is_allowed())
        });
    daemon_series(&mut out, service, caller.map(|_| sensors.as_slice()));
    header(&mut out, "sensegate_sensors", "gauge", "Sensors by state.");
    for state in SensorState::ALL {
        let n = sensors.iter().filter(|s| s.state == state).count();
        let _ = writeln!(out, "sensegate_sensors{{state=\"{}\"}} {n}", state.name());
    }
    if let Some(principal) = caller {
        sensor_series(&mut out, &sensors, principal);
    }
    out
}

/// Connections, the hub, ingest, history, authentication, driver restarts.
/// `in_scope`: the sensors a caller may read (`None`: public, no caller), to
/// which driver restarts are limited.
fn daemon_series(
    out: &mut String,
    service: &Service,
    in_scope: Option<&[crate::catalog::SensorEntry]>,
) {
    let connections = service
        .registry()
        .list(service.limits().max_connections, |_| true);
    let count = |frontend: &str| {
        connections
            .iter()
            .filter(|c| c.frontend == frontend)
            .count()
    };
    header(
        out,
        "sensegate_connections",
        "gauge",
        "Open connections by front end.",
    );
    for frontend in ["native", "http"] {
        let _ = writeln!(
            out,
            "sensegate_connections{{frontend=\"{frontend}\"}} {}",
            count(frontend)
        );
    }
    header(
        out,
        "sensegate_connections_parked",
        "gauge",
        "Idle native connections waiting without a task (counted in sensegate_connections too).",
    );
    let _ = writeln!(
        out,
        "sensegate_connections_parked {}",
        service.counters().parked.load(Relaxed)
    );
    traffic_series(out, service);
    limit_series(out, service);
    hub_series(out, service);
    header(
        out,
        "sensegate_readings_ingested_total",
        "counter",
        "Readings taken in from every source.",
    );
    let _ = writeln!(
        out,
        "sensegate_readings_ingested_total {}",
        service.readings_ingested()
    );
    if let Some(store) = service.store() {
        header(
            out,
            "sensegate_history_dropped_total",
            "counter",
            "Source readings left out of history (queue full).",
        );
        let _ = writeln!(out, "sensegate_history_dropped_total {}", store.dropped());
        histogram(
            out,
            "sensegate_store_commit_seconds",
            "Time the store took per group commit.",
            &store.commit_latency().snapshot(),
        );
        if let Some(wal) = store.wal_bytes() {
            header(
                out,
                "sensegate_store_wal_bytes",
                "gauge",
                "Size of the history database's write-ahead log.",
            );
            let _ = writeln!(out, "sensegate_store_wal_bytes {wal}");
        }
    }
    let c = service.counters();
    header(
        out,
        "sensegate_auth_failures_total",
        "counter",
        "Failed authentications by reason.",
    );
    let _ = writeln!(
        out,
        "sensegate_auth_failures_total{{reason=\"bad_token\"}} {}",
        c.auth_bad_token.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "sensegate_auth_failures_total{{reason=\"throttled\"}} {}",
        c.auth_throttled.load(Relaxed)
    );
    driver_series(out, service, in_scope);
}

/// Driver host restarts by source (for a caller, only sources feeding a
/// sensor in its scope).
fn driver_series(
    out: &mut String,
    service: &Service,
    in_scope: Option<&[crate::catalog::SensorEntry]>,
) {
    let c = service.counters();
    header(
        out,
        "sensegate_driver_restarts_total",
        "counter",
        "Driver host restarts by source.",
    );
    {
        let restarts = c
            .driver_restarts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (source, n) in restarts.iter() {
            let origin = format!("driver:{source}");
            if in_scope.is_some_and(|s| !s.iter().any(|e| e.source == origin)) {
                continue;
            }
            let _ = writeln!(
                out,
                "sensegate_driver_restarts_total{{source=\"{}\"}} {n}",
                escape(source)
            );
        }
    }
}

/// Last value and age of each sensor `principal` may read.
fn sensor_series(out: &mut String, sensors: &[crate::catalog::SensorEntry], principal: &Principal) {
    let now = now_us();
    header(
        out,
        "sensegate_sensor_value",
        "gauge",
        "Last value of each sensor in scope.",
    );
    let mut ages = String::new();
    for s in sensors {
        let allowed = policy::decide(principal, Action::ReadSensor(&s.name)).is_allowed();
        let Some(latest) = s.latest.as_ref().filter(|_| allowed) else {
            continue;
        };
        let name = escape(&s.name);
        let _ = writeln!(
            out,
            "sensegate_sensor_value{{sensor=\"{name}\"}} {}",
            latest.value
        );
        #[allow(
            clippy::cast_precision_loss,
            reason = "ages in seconds, far below 2^52"
        )]
        let age = (now - latest.timestamp_us).max(0) as f64 / 1e6;
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
fn hub_series(out: &mut String, service: &Service) {
    header(
        out,
        "sensegate_hub_subscribers",
        "gauge",
        "Subscribers of the hub.",
    );
    let _ = writeln!(out, "sensegate_hub_subscribers {}", service.hub().len());
    header(
        out,
        "sensegate_hub_route_builds_total",
        "counter",
        "Routes (the subscribers of one sensor) built from scratch; subscription changes update routes in place.",
    );
    let _ = writeln!(
        out,
        "sensegate_hub_route_builds_total {}",
        service.hub().route_builds()
    );
    let losses = service.hub().losses();
    header(
        out,
        "sensegate_hub_dropped_total",
        "counter",
        "Readings dropped from full subscriber queues (lag_policy drop_oldest).",
    );
    let _ = writeln!(
        out,
        "sensegate_hub_dropped_total {}",
        losses.dropped.load(Relaxed)
    );
    header(
        out,
        "sensegate_hub_lagged_total",
        "counter",
        "Subscribers cut off for falling behind (lag_policy disconnect).",
    );
    let _ = writeln!(
        out,
        "sensegate_hub_lagged_total {}",
        losses.lagged.load(Relaxed)
    );
}

/// Frames and bytes in and out by front end (HTTP: requests, and responses
/// and stream events).
fn traffic_series(out: &mut String, service: &Service) {
    let frontends = ["native", "http"].map(|f| (f, service.registry().traffic(f)));
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
        for (frontend, t) in &frontends {
            let _ = writeln!(out, "{name}{{frontend=\"{frontend}\"}} {}", field(t));
        }
    }
}

/// How often each cap was hit.
fn limit_series(out: &mut String, service: &Service) {
    header(
        out,
        "sensegate_limits_hit_total",
        "counter",
        "Requests, frames and connections refused or cut off by a cap, by cap.",
    );
    let hits = &service.counters().limits;
    for limit in Limit::ALL {
        let _ = writeln!(
            out,
            "sensegate_limits_hit_total{{limit=\"{}\"}} {}",
            limit.name(),
            hits.get(limit)
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
