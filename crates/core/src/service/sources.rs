//! What a source may do, and nothing more: register its sensors, set their
//! state, feed readings, count its restarts. A source holds a
//! [`SourceSink`] bound to its origin (`sim`, `driver:NAME`, `serial:NAME`,
//! `hwmon`, ...), never the catalog or the hub.

use std::sync::Arc;

use super::Service;
use crate::catalog::{RegisterError, SensorState};
use crate::limits::Limits;
use crate::reading::Reading;

/// A source's handle on the service.
#[derive(Debug, Clone)]
pub struct SourceSink {
    service: Arc<Service>,
    origin: Arc<str>,
}

impl Service {
    /// The sink of the source `origin`.
    #[must_use]
    pub fn source_sink(self: &Arc<Self>, origin: &str) -> SourceSink {
        SourceSink {
            service: self.clone(),
            origin: Arc::from(origin),
        }
    }
}

impl SourceSink {
    /// Its origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The caps (a source checks names against `message.max_name_bytes`).
    #[must_use]
    pub fn limits(&self) -> &Limits {
        self.service.limits()
    }

    /// Registers a sensor this source feeds; returns its shared name (the
    /// same one again for a name it registered before).
    ///
    /// # Errors
    /// [`RegisterError`]: the catalog is full, or another source feeds it.
    pub fn register(&self, name: &str, unit: &str) -> Result<Arc<str>, RegisterError> {
        self.service.catalog.register(name, unit, &self.origin)
    }

    /// Sets the state of this source's sensors `names`, with the reason for
    /// a fault or a restart.
    pub fn set_state(&self, names: &[Arc<str>], state: SensorState, reason: &str) {
        self.service.catalog.set_state(names, state, reason);
    }

    /// Takes in readings of this source's registered sensors.
    pub fn ingest(&self, readings: &[Reading]) {
        self.service.ingest(readings);
    }

    /// Counts a restart of the driver host `name`.
    pub fn note_driver_restart(&self, name: &str) {
        self.service.note_driver_restart(name);
    }
}
