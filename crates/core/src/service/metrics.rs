//! What `/metrics` reports, as typed values the service has already
//! filtered by policy: a front end renders the text (the Prometheus format
//! lives with HTTP) and never reaches into the catalog, the hub or the
//! registry itself.
//!
//! With a caller, what concerns sensors (their counts by state, driver
//! restarts by source, per-sensor values) covers only the sensors it may
//! read: a reader learns nothing of the others. Without one (the endpoint
//! configured public) there are no per-sensor values.

use std::sync::PoisonError;
use std::sync::atomic::Ordering::Relaxed;

use super::{Caller, Service, ServiceError};
use crate::catalog::SensorState;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::registry::{Frontend, Traffic};
use crate::stats::{HistogramSnapshot, IngestRefusal, Limit};

/// Everything `/metrics` shows, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Open connections, per front end (in [`Frontend::ALL`] order).
    pub connections: Vec<(Frontend, usize)>,
    /// Idle native connections parked now (counted in `connections` too).
    pub parked: usize,
    /// What each front end carried since start.
    pub traffic: Vec<(Frontend, Traffic)>,
    /// How often each cap was hit (in [`Limit::ALL`] order).
    pub limits: Vec<(Limit, u64)>,
    /// Readings refused by the front ends that map payloads to readings
    /// (MQTT, the HTTP write routes), per front end and reason.
    pub ingest_refused: Vec<(Frontend, IngestRefusal, u64)>,
    /// The hub.
    pub hub: HubFigures,
    /// Readings taken in from every source.
    pub readings_ingested: u64,
    /// History, when on.
    pub store: Option<StoreFigures>,
    /// Each uplink's figures (daemon-wide, as the store's are).
    pub uplinks: Vec<UplinkFigures>,
    /// A site view's, when this is one.
    pub site: Option<SiteFigures>,
    /// Failed authentications: a wrong token.
    pub auth_bad_token: u64,
    /// Failed authentications: throttled.
    pub auth_throttled: u64,
    /// Driver host restarts by source (for a caller, only the sources that
    /// feed a sensor in its scope).
    pub driver_restarts: Vec<(String, u64)>,
    /// Sensors by state (for a caller, those in its scope).
    pub sensors_by_state: Vec<(SensorState, usize)>,
    /// The last value of each sensor in the caller's scope that has one;
    /// `None` without a caller.
    pub sensor_values: Option<Vec<SensorValue>>,
}

/// The hub's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubFigures {
    /// Subscribers now.
    pub subscribers: usize,
    /// Routes built from scratch since start.
    pub route_builds: u64,
    /// Readings dropped from full subscriber queues.
    pub dropped: u64,
    /// Subscribers cut off for falling behind.
    pub lagged: u64,
}

/// The history writer's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFigures {
    /// Source readings left out of history (queue full).
    pub dropped: u64,
    /// Time per group commit.
    pub commit_latency: HistogramSnapshot,
    /// The write-ahead log's size, where the backend has one.
    pub wal_bytes: Option<u64>,
}

/// One uplink's figures (see the gateway's `uplink` module).
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkFigures {
    /// Its configured name.
    pub name: String,
    /// Its kind (`postgres`, `mqtt`).
    pub kind: &'static str,
    /// Whether it is connected now.
    pub connected: bool,
    /// The last commit sequence number the remote side confirmed.
    pub delivered_seq: i64,
    /// Readings committed and not yet confirmed.
    pub backlog_rows: u64,
    /// The age of the oldest reading not yet confirmed.
    pub backlog_seconds: f64,
    /// Batches confirmed since start.
    pub batches: u64,
    /// Readings confirmed since start.
    pub rows: u64,
    /// Failed connections and batches since start.
    pub retries: u64,
    /// Readings dropped past the backlog cap, ever.
    pub dropped: u64,
}

/// A site view's figures (see the gateway's `site` module): how it
/// follows the site's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SiteFigures {
    /// Following the database now.
    pub connected: bool,
    /// Sensors followed.
    pub sensors: u64,
    /// Polls through.
    pub polls: u64,
    /// Readings taken in.
    pub readings: u64,
    /// Rows left out: not valid readings or names.
    pub refused: u64,
    /// Connections lost or refused.
    pub failures: u64,
    /// The most rows one poll read.
    pub poll_rows_max: u64,
    /// Sensors with more readings waiting after the last poll.
    pub behind: u64,
}

/// Where the service reads a site view's figures.
pub trait SiteReport: Send + Sync + std::fmt::Debug {
    /// The figures now.
    fn figures(&self) -> SiteFigures;
}

/// Where the service reads the uplinks' figures.
pub trait UplinkReport: Send + Sync + std::fmt::Debug {
    /// Every uplink's figures now.
    fn figures(&self) -> Vec<UplinkFigures>;
}

/// One sensor's last value.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorValue {
    /// Its name.
    pub name: std::sync::Arc<str>,
    /// The value.
    pub value: f64,
    /// When it was read, µs since the epoch.
    pub timestamp_us: i64,
}

impl Service {
    /// The uplinks' figures, for a caller allowed to read metrics (they
    /// are in `/metrics` too; the dashboard's admin page shows them).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not read metrics.
    pub fn uplinks(&self, caller: Caller<'_>) -> Result<Vec<UplinkFigures>, ServiceError> {
        Self::allow(caller.principal, Action::ReadMetrics)?;
        Ok(self
            .uplinks
            .as_ref()
            .map(|u| u.figures())
            .unwrap_or_default())
    }

    /// The metrics for a caller allowed to read them (`None`: the endpoint
    /// is configured public, and per-sensor values are left out).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not read metrics.
    pub fn metrics(&self, caller: Option<Caller<'_>>) -> Result<MetricsSnapshot, ServiceError> {
        let principal = caller.map(|c| c.principal);
        if let Some(p) = principal {
            Self::allow(p, Action::ReadMetrics)?;
        }
        let sensors = self
            .catalog
            .list(&Pattern::any(), self.limits.max_sensors, |name| {
                principal.is_none_or(|p| policy::decide(p, Action::ReadSensor(name)).is_allowed())
            });
        let c = &self.counters;
        let restarts = c
            .driver_restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(source, _)| {
                let origin = format!("driver:{source}");
                principal.is_none() || sensors.iter().any(|e| e.source == origin)
            })
            .map(|(source, n)| (source.clone(), *n))
            .collect();
        let losses = self.hub.losses();
        Ok(MetricsSnapshot {
            connections: Frontend::ALL
                .iter()
                .map(|&f| (f, self.registry.count(f)))
                .collect(),
            parked: c.parked.load(Relaxed),
            traffic: Frontend::ALL
                .iter()
                .map(|&f| (f, self.registry.traffic(f)))
                .collect(),
            limits: Limit::ALL.iter().map(|&l| (l, c.limits.get(l))).collect(),
            ingest_refused: [Frontend::Mqtt, Frontend::Http]
                .iter()
                .flat_map(|&f| {
                    IngestRefusal::ALL
                        .iter()
                        .map(move |&r| (f, r, c.ingest_refused.get(f, r)))
                })
                .collect(),
            hub: HubFigures {
                subscribers: self.hub.len(),
                route_builds: self.hub.route_builds(),
                dropped: losses.dropped.load(Relaxed),
                lagged: losses.lagged.load(Relaxed),
            },
            readings_ingested: self.readings_ingested(),
            store: self.store.as_ref().map(|s| StoreFigures {
                dropped: s.dropped(),
                commit_latency: s.commit_latency().snapshot(),
                wal_bytes: s.wal_bytes(),
            }),
            uplinks: self
                .uplinks
                .as_ref()
                .map(|u| u.figures())
                .unwrap_or_default(),
            site: self.site.as_ref().map(|s| s.figures()),
            auth_bad_token: c.auth_bad_token.load(Relaxed),
            auth_throttled: c.auth_throttled.load(Relaxed),
            driver_restarts: restarts,
            sensors_by_state: SensorState::ALL
                .iter()
                .map(|&s| (s, sensors.iter().filter(|e| e.state == s).count()))
                .collect(),
            sensor_values: principal.map(|_| {
                sensors
                    .iter()
                    .filter_map(|s| {
                        s.latest.as_ref().map(|r| SensorValue {
                            name: s.name.clone(),
                            value: r.value,
                            timestamp_us: r.timestamp_us,
                        })
                    })
                    .collect()
            }),
        })
    }
}
