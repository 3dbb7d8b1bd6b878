//! Pushes from devices, whatever front end carried them: checked all or
//! nothing (scope, time, rate, the catalog's room), committed to history
//! and only then published, and the units a SenML pack names.

use super::{
    COMMIT_TIMEOUT, Caller, MAX_FUTURE_US, MAX_UNIT_BYTES, PushedReading, Service, ServiceError,
};
use crate::audit::AuditEvent;
use crate::policy::Action;
use crate::reading::{Reading, now_us};
use crate::stats::Limit;
use crate::store::HistoryErrorKind;
use crate::time::Instant;

impl Service {
    /// Checks a device's readings, all or nothing, and returns them ready
    /// for [`Service::commit_push`]. Nothing is stored or published yet.
    ///
    /// # Errors
    /// [`ServiceError::PushBatch`] over `limits.max_push_batch`,
    /// [`ServiceError::Forbidden`] if any sensor is not the caller's,
    /// [`ServiceError::PushRate`] over `limits.push_rate_per_sec`,
    /// [`ServiceError::SensorsFull`] when a new sensor does not fit (the
    /// catalog, the part of it not reserved for configured sources, or the
    /// token's `limits.max_sensors_per_token`),
    /// [`ServiceError::Invalid`] for a timestamp more than
    /// [`MAX_FUTURE_US`] ahead of the daemon's clock,
    /// [`ServiceError::ReadOnly`] on a site view.
    pub fn push(
        &self,
        caller: Caller<'_>,
        readings: &[PushedReading],
        now: Instant,
    ) -> Result<Vec<Reading>, ServiceError> {
        self.push_bulk(caller, readings, now, self.limits.max_push_batch)
    }

    /// [`Service::push`] with a batch cap of the front end's own: a bulk
    /// write (InfluxDB line protocol, SenML) carries thousands of points in
    /// one request, each request a push of its own (`ingest.max_readings`).
    ///
    /// # Errors
    /// As [`Service::push`], [`ServiceError::PushBatch`] over `max_batch`.
    pub fn push_bulk(
        &self,
        caller: Caller<'_>,
        readings: &[PushedReading],
        now: Instant,
        max_batch: usize,
    ) -> Result<Vec<Reading>, ServiceError> {
        if self.read_only {
            return Err(ServiceError::ReadOnly);
        }
        if readings.len() > max_batch {
            self.counters.limits.hit(Limit::PushBatch);
            return Err(ServiceError::PushBatch);
        }
        let latest_allowed = now_us().saturating_add(MAX_FUTURE_US);
        let mut allowed: Option<&str> = None;
        for r in readings {
            // One decision for each run of one name (the same name, the
            // same answer).
            if allowed == Some(r.sensor.as_str()) {
                if r.timestamp_us > latest_allowed {
                    return Err(ServiceError::Invalid);
                }
                continue;
            }
            if let Err(e) = Self::allow(caller.principal, Action::Push(&r.sensor)) {
                // Capped: a device can try as often as it likes.
                self.audit.record_denial(
                    &AuditEvent::PushDenied {
                        peer: caller.peer,
                        token_id: &caller.principal.token_id,
                        principal: &caller.principal.name,
                        sensor: &r.sensor,
                    },
                    now,
                );
                return Err(e);
            }
            // A reading from the far future would never age out of history.
            if r.timestamp_us > latest_allowed {
                return Err(ServiceError::Invalid);
            }
            allowed = Some(&r.sensor);
        }
        if !self
            .push_rate
            .try_take(&caller.principal.token_id, readings.len(), now)
        {
            self.counters.limits.hit(Limit::PushRate);
            return Err(ServiceError::PushRate);
        }
        // Every check above has passed: only now may new names enter the
        // catalog, all of the push's or none.
        let names: Vec<&str> = readings.iter().map(|r| r.sensor.as_str()).collect();
        let quota = crate::catalog::PushQuota {
            pushed_max: self
                .limits
                .max_sensors
                .saturating_sub(self.limits.sensors_reserved_for_sources),
            per_token: self.limits.max_sensors_per_token,
        };
        let sensors = self
            .catalog
            .intern_push(&names, &caller.principal.token_id, quota)
            .map_err(|e| {
                self.counters.limits.hit(match e {
                    crate::catalog::PushRefused::Full(_) => Limit::Sensors,
                    crate::catalog::PushRefused::TokenQuota { .. } => Limit::SensorsPerToken,
                });
                ServiceError::SensorsFull
            })?;
        let accepted = readings
            .iter()
            .zip(sensors)
            .map(|(r, sensor)| Reading {
                sensor,
                timestamp_us: r.timestamp_us,
                value: r.value,
                quality: r.quality,
            })
            .collect();
        Ok(accepted)
    }

    /// Whether the caller's role may push at all (to some name in its
    /// scope): asked before a bulk write's body is read, so a token that
    /// may never push costs nothing to parse for. The names are still
    /// checked one by one by the push.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not push,
    /// [`ServiceError::ReadOnly`] on a site view.
    pub fn may_push(&self, caller: Caller<'_>) -> Result<(), ServiceError> {
        if self.read_only {
            return Err(ServiceError::ReadOnly);
        }
        match crate::policy::decide(caller.principal, Action::Push("")) {
            crate::policy::Decision::Deny(crate::policy::Deny::Role) => {
                Err(ServiceError::Forbidden)
            }
            _ => Ok(()),
        }
    }

    /// Checks units a push names for its sensors (a SenML pack), before
    /// the push: only names the caller may push to, and a unit that is
    /// short printable text. Applied with [`Service::set_units`] once the
    /// push is committed.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a name outside the caller's scope,
    /// [`ServiceError::Invalid`] for a unit that is not short printable
    /// text.
    pub fn check_units(
        &self,
        caller: Caller<'_>,
        units: &[(&str, &str)],
    ) -> Result<(), ServiceError> {
        if self.read_only {
            return Err(ServiceError::ReadOnly);
        }
        for (sensor, unit) in units {
            Self::allow(caller.principal, Action::Push(sensor))?;
            if unit.len() > MAX_UNIT_BYTES
                || unit
                    .chars()
                    .any(sensegate_proto::envelope::is_unsafe_text_char)
            {
                return Err(ServiceError::Invalid);
            }
        }
        Ok(())
    }

    /// Gives pushed sensors their units, once the push that accepted them
    /// is committed: only sensors that came from pushes (a configured
    /// source's unit is the source's), and a unit that changes nothing is
    /// left alone.
    ///
    /// # Errors
    /// As [`Service::check_units`], which it runs again.
    pub fn set_units(
        &self,
        caller: Caller<'_>,
        units: &[(&str, &str)],
    ) -> Result<(), ServiceError> {
        self.check_units(caller, units)?;
        self.catalog.set_pushed_units(units);
        Ok(())
    }

    /// Stores a push checked by [`Service::push`] and returns once it is
    /// durable (when history is on), then publishes it; returns how many
    /// readings it held. Only then may the device be told they were taken.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store could not commit them;
    /// nothing is published then.
    pub async fn commit_push(&self, readings: Vec<Reading>) -> Result<usize, ServiceError> {
        // Unreachable through `push`, which refuses first; kept so no
        // caller can store on a site view.
        if self.read_only {
            return Err(ServiceError::ReadOnly);
        }
        let n = readings.len();
        match &self.store {
            Some(store) => {
                // Bounded, so a stuck disk cannot hold the connection for
                // ever. A device that retries after a timeout whose commit
                // did land rewrites the same (sensor, timestamp) rows.
                match tokio::time::timeout(COMMIT_TIMEOUT, store.commit(readings)).await {
                    Ok(Ok(stored)) => self.publish(&stored),
                    Ok(Err(e)) if e.kind == HistoryErrorKind::Full => {
                        tracing::warn!(error = %e, "a push was refused: history storage is full");
                        return Err(ServiceError::StorageFull);
                    }
                    Ok(Err(e)) if e.kind == HistoryErrorKind::QueueFull => {
                        self.counters.limits.hit(Limit::StoreQueue);
                        return Err(ServiceError::StoreBusy);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "a push could not be stored");
                        return Err(ServiceError::Internal);
                    }
                    Err(_) => {
                        tracing::error!("a push was not committed within {COMMIT_TIMEOUT:?}");
                        return Err(ServiceError::Internal);
                    }
                }
            }
            None => self.publish(&readings),
        }
        Ok(n)
    }

    /// A source's readings: into history (without waiting; see
    /// [`StoreHandle::offer`]; not on a read-only site view, whose
    /// readings come from its history), the catalog and the hub.
    pub(crate) fn ingest(&self, readings: &[Reading]) {
        if let Some(store) = self.store.as_ref().filter(|_| !self.read_only) {
            store.offer(readings);
        }
        self.publish(readings);
    }

    /// Into the catalog (one lock for the batch) and out through the hub.
    fn publish(&self, readings: &[Reading]) {
        let n = u64::try_from(readings.len()).unwrap_or(u64::MAX);
        self.ingested
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.catalog.record(readings);
        self.hub.publish_all(readings);
    }
}
