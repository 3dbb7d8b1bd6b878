//! The sensor catalog: every sensor the daemon knows, its metadata, state and
//! latest reading.
//!
//! Sources register their sensors; a device's first push of a new name adds
//! it, up to `limits.max_sensors`, so a device cannot grow the catalog
//! without bound. The lock is a plain `std` lock, never held across an
//! `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::pattern::Pattern;
use crate::reading::Reading;

/// A sensor's state, as `sensegate sensors` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorState {
    /// Delivering readings.
    Ok,
    /// Its source failed; see the reason.
    Faulted,
    /// Its source is being restarted.
    Restarting,
    /// Known, but no reading yet.
    Idle,
}

impl SensorState {
    /// Every state, in the order they are reported.
    pub const ALL: [Self; 4] = [Self::Ok, Self::Faulted, Self::Restarting, Self::Idle];

    /// The name the HTTP API, `/metrics` and the CLI show (spelled in
    /// [`sensegate_proto::names`]).
    #[must_use]
    pub const fn name(self) -> &'static str {
        self.to_wire().name()
    }

    /// The wire value.
    #[must_use]
    pub const fn to_wire(self) -> sensegate_proto::v1::SensorState {
        use sensegate_proto::v1::SensorState as W;
        match self {
            Self::Ok => W::Ok,
            Self::Faulted => W::Faulted,
            Self::Restarting => W::Restarting,
            Self::Idle => W::Idle,
        }
    }
}

/// What the catalog holds for one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorEntry {
    /// Its name.
    pub name: Arc<str>,
    /// Unit of its values (may be empty).
    pub unit: String,
    /// Which source feeds it: `sim`, `push`, ...
    pub source: String,
    /// Its state.
    pub state: SensorState,
    /// Why it is faulted; empty otherwise.
    pub fault_reason: String,
    /// The latest reading, if any.
    pub latest: Option<Reading>,
}

/// The catalog is full: a new sensor name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sensor catalog is full ({max} sensors)")]
pub struct CatalogFull {
    /// The cap.
    pub max: usize,
}

/// A source could not register a sensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The catalog is at its cap.
    #[error(transparent)]
    Full(CatalogFull),
    /// Another source already feeds this name.
    #[error("the name is already fed by {by}")]
    Taken {
        /// That source.
        by: String,
    },
}

/// How many new names devices may add: in all (the rest of the catalog is
/// kept for configured sources, whose sensors may appear later: a serial
/// device plugged in, a hwmon chip) and per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushQuota {
    /// Names all pushes together may add.
    pub pushed_max: usize,
    /// Names one token may add.
    pub per_token: usize,
}

/// Why a push's new names were refused (none of them was added).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushRefused {
    /// The catalog, or its part open to pushes, is full.
    #[error(transparent)]
    Full(CatalogFull),
    /// The token has added its quota of names.
    #[error("this token has added its quota of {max} sensors")]
    TokenQuota {
        /// The quota.
        max: usize,
    },
}

/// Every known sensor, by name.
#[derive(Debug)]
pub struct Catalog {
    sensors: RwLock<BTreeMap<Arc<str>, SensorEntry>>,
    /// Names pushes added, in all and per token id; taken while `sensors`
    /// is held for writing. Bounded by the token store's cap.
    pushed: std::sync::Mutex<PushCounts>,
    max: usize,
}

#[derive(Debug, Default)]
struct PushCounts {
    total: usize,
    per_token: std::collections::HashMap<String, usize>,
}

impl Catalog {
    /// An empty catalog holding at most `max` sensors.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            sensors: RwLock::new(BTreeMap::new()),
            pushed: std::sync::Mutex::new(PushCounts::default()),
            max,
        }
    }

    /// The shared names of a push's sensors, adding the new ones as pushed
    /// sensors of `token_id`: all or none. Nothing is added unless every
    /// new name fits the catalog, the part of it open to pushes, and the
    /// token's quota.
    ///
    /// # Errors
    /// [`PushRefused`]; no name was added then.
    pub fn intern_push(
        &self,
        names: &[&str],
        token_id: &str,
        quota: PushQuota,
    ) -> Result<Vec<Arc<str>>, PushRefused> {
        {
            // Known names only (the usual case): a read lock.
            let map = self
                .sensors
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // One lookup for each run of one name.
            let mut known: Vec<Arc<str>> = Vec::with_capacity(names.len());
            let mut all = true;
            for n in names {
                if let Some(last) = known.last().filter(|k| &***k == *n) {
                    known.push(last.clone());
                } else if let Some((k, _)) = map.get_key_value(*n) {
                    known.push(k.clone());
                } else {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(known);
            }
        }
        let mut map = self
            .sensors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut fresh: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !map.contains_key(*n))
            .collect();
        fresh.sort_unstable();
        fresh.dedup();
        let mut counts = self
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = counts.per_token.get(token_id).copied().unwrap_or(0);
        if mine + fresh.len() > quota.per_token {
            return Err(PushRefused::TokenQuota {
                max: quota.per_token,
            });
        }
        if counts.total + fresh.len() > quota.pushed_max.min(self.max)
            || map.len() + fresh.len() > self.max
        {
            return Err(PushRefused::Full(CatalogFull { max: self.max }));
        }
        if !fresh.is_empty() {
            counts.total += fresh.len();
            *counts.per_token.entry(token_id.to_owned()).or_default() += fresh.len();
        }
        drop(counts);
        for name in fresh {
            let key: Arc<str> = Arc::from(name);
            map.insert(
                key.clone(),
                SensorEntry {
                    name: key,
                    unit: String::new(),
                    source: "push".to_owned(),
                    state: SensorState::Idle,
                    fault_reason: String::new(),
                    latest: None,
                },
            );
        }
        Ok(names
            .iter()
            .filter_map(|n| map.get_key_value(*n).map(|(k, _)| k.clone()))
            .collect())
    }

    /// Sets the units of sensors that came from pushes; others (and names
    /// not in the catalog) are left alone.
    pub fn set_pushed_units(&self, units: &[(&str, &str)]) {
        let changes = {
            let map = self
                .sensors
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            units.iter().any(|(n, u)| {
                map.get(*n)
                    .is_some_and(|e| e.source == "push" && e.unit != *u)
            })
        };
        if !changes {
            return;
        }
        let mut map = self
            .sensors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, unit) in units {
            if let Some(e) = map
                .get_mut(*name)
                .filter(|e| e.source == "push" && e.unit != *unit)
            {
                (*unit).clone_into(&mut e.unit);
            }
        }
    }

    /// Registers a sensor fed by a source; returns its shared name. The same
    /// source registering it again gets the same name back; another source
    /// may not take it over.
    ///
    /// # Errors
    /// [`RegisterError::Full`] when the catalog is at its cap,
    /// [`RegisterError::Taken`] when another source feeds that name.
    pub fn register(
        &self,
        name: &str,
        unit: &str,
        source: &str,
    ) -> Result<Arc<str>, RegisterError> {
        let mut map = self
            .sensors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = map.get_mut(name) {
            let k = e.name.clone();
            if e.source == source {
                return Ok(k);
            }
            // A name a device pushed first goes to the configured source
            // that feeds it, so a device cannot squat on a source's names.
            if e.source == "push" {
                source.clone_into(&mut e.source);
                unit.clone_into(&mut e.unit);
                return Ok(k);
            }
            return Err(RegisterError::Taken {
                by: e.source.clone(),
            });
        }
        if map.len() >= self.max {
            return Err(RegisterError::Full(CatalogFull { max: self.max }));
        }
        let key: Arc<str> = Arc::from(name);
        map.insert(
            key.clone(),
            SensorEntry {
                name: key.clone(),
                unit: unit.to_owned(),
                source: source.to_owned(),
                state: SensorState::Idle,
                fault_reason: String::new(),
                latest: None,
            },
        );
        Ok(key)
    }

    /// Records readings as their sensors' latest (each if it is newer),
    /// under one lock for the whole batch.
    pub fn record(&self, readings: &[Reading]) {
        let mut map = self
            .sensors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One lookup for each run of one sensor's readings, with the run's
        // newest (the last of equal timestamps, as one by one would leave).
        for run in readings.chunk_by(|a, b| Arc::ptr_eq(&a.sensor, &b.sensor)) {
            let reading = run
                .iter()
                .reduce(|best, r| {
                    if r.timestamp_us >= best.timestamp_us {
                        r
                    } else {
                        best
                    }
                })
                .unwrap_or(&run[0]);
            let Some(entry) = map.get_mut(&*reading.sensor) else {
                continue;
            };
            let newer = entry
                .latest
                .as_ref()
                .is_none_or(|l| l.timestamp_us <= reading.timestamp_us);
            if newer {
                entry.latest = Some(reading.clone());
            }
            if entry.state != SensorState::Ok {
                entry.state = SensorState::Ok;
                entry.fault_reason.clear();
            }
        }
    }

    /// Sets the state of `names` (a source's sensors), with the reason for a
    /// fault or a restart.
    pub fn set_state(&self, names: &[Arc<str>], state: SensorState, reason: &str) {
        let mut map = self
            .sensors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in names {
            if let Some(entry) = map.get_mut(&**name) {
                entry.state = state;
                entry.fault_reason.clear();
                entry.fault_reason.push_str(reason);
            }
        }
    }

    /// The entry for `name`.
    #[must_use]
    pub fn entry(&self, name: &str) -> Option<SensorEntry> {
        let map = self
            .sensors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name).cloned()
    }

    /// Entries whose names match `pattern` and pass `allowed`, by name, at
    /// most `max`.
    pub fn list(
        &self,
        pattern: &Pattern,
        max: usize,
        allowed: impl Fn(&str) -> bool,
    ) -> Vec<SensorEntry> {
        self.list_after(pattern, None, max, allowed)
    }

    /// As [`Catalog::list`], starting after the name `after` (a page).
    pub fn list_after(
        &self,
        pattern: &Pattern,
        after: Option<&str>,
        max: usize,
        allowed: impl Fn(&str) -> bool,
    ) -> Vec<SensorEntry> {
        use std::ops::Bound;
        let map = self
            .sensors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        map.range::<str, _>((start, Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| pattern.matches(&e.name) && allowed(&e.name))
            .take(max)
            .cloned()
            .collect()
    }

    /// The latest readings of up to `max` sensors matching `pattern` that
    /// `allowed` lets through, by name, without cloning their entries.
    pub fn latest_matching(
        &self,
        pattern: &Pattern,
        max: usize,
        allowed: impl Fn(&str) -> bool,
    ) -> Vec<Reading> {
        let map = self
            .sensors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values()
            .filter(|e| e.latest.is_some() && pattern.matches(&e.name) && allowed(&e.name))
            .filter_map(|e| e.latest.clone())
            .take(max)
            .collect()
    }

    /// Number of sensors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sensors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no sensor is known.
    #[must_use]
    #[cfg_attr(
        not(feature = "test-support"),
        allow(dead_code, reason = "tests ask it, through the test-support feature")
    )]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: PushQuota = PushQuota {
        pushed_max: usize::MAX,
        per_token: usize::MAX,
    };
    use crate::reading::Quality;

    fn reading(sensor: &Arc<str>, ts: i64) -> Reading {
        Reading {
            sensor: sensor.clone(),
            timestamp_us: ts,
            value: 1.0,
            quality: Quality::Good,
        }
    }

    #[test]
    fn a_source_cannot_take_over_another_sources_sensor() {
        let c = Catalog::new(10);
        let a = c.register("gps/lat", "deg", "driver:gps").unwrap();
        assert_eq!(c.register("gps/lat", "deg", "driver:gps").unwrap(), a);
        assert_eq!(
            c.register("gps/lat", "", "serial:gps"),
            Err(RegisterError::Taken {
                by: "driver:gps".to_owned()
            })
        );
        assert_eq!(c.entry("gps/lat").unwrap().source, "driver:gps");
        // A name a device pushed first is handed to the source.
        c.intern_push(&["bench/t"], "t", QUOTA).unwrap();
        c.register("bench/t", "degC", "serial:bench").unwrap();
        let e = c.entry("bench/t").unwrap();
        assert_eq!(
            (e.source.as_str(), e.unit.as_str()),
            ("serial:bench", "degC")
        );
    }

    #[test]
    fn a_new_pushed_name_past_the_cap_is_refused_and_known_names_still_work() {
        let c = Catalog::new(2);
        let a = c.intern_push(&["a"], "t", QUOTA).unwrap();
        c.intern_push(&["b"], "t", QUOTA).unwrap();
        assert_eq!(
            c.intern_push(&["c"], "t", QUOTA),
            Err(PushRefused::Full(CatalogFull { max: 2 }))
        );
        assert!(Arc::ptr_eq(
            &a[0],
            &c.intern_push(&["a"], "t", QUOTA).unwrap()[0]
        ));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_push_adds_all_its_new_names_or_none_within_its_quotas() {
        let c = Catalog::new(10);
        let quota = PushQuota {
            pushed_max: 8,
            per_token: 4,
        };
        // Five new names from one token: over its quota, and none added.
        let five = ["a", "b", "c", "d", "e"];
        assert_eq!(
            c.intern_push(&five, "t1", quota),
            Err(PushRefused::TokenQuota { max: 4 })
        );
        assert_eq!(c.len(), 0);
        // A name twice in a batch counts once.
        assert_eq!(
            c.intern_push(&["a", "a", "b"], "t1", quota).unwrap().len(),
            3
        );
        assert_eq!(c.intern_push(&["c", "d"], "t1", quota).unwrap().len(), 2);
        assert!(c.intern_push(&["x"], "t1", quota).is_err());
        // Known names are always fine.
        assert!(c.intern_push(&["a", "d"], "t1", quota).is_ok());
        // Another token has its own quota, within what pushes may take.
        assert!(c.intern_push(&["e", "f", "g", "h"], "t2", quota).is_ok());
        assert_eq!(
            c.intern_push(&["i"], "t3", quota),
            Err(PushRefused::Full(CatalogFull { max: 10 }))
        );
        // The rest is kept for configured sources.
        c.register("serial/a", "", "serial:x").unwrap();
        c.register("serial/b", "", "serial:x").unwrap();
        assert!(c.register("serial/c", "", "serial:x").is_err());
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn latest_keeps_the_newest_reading() {
        let c = Catalog::new(4);
        let s = c.register("room/t", "C", "sim").unwrap();
        assert_eq!(c.entry("room/t").unwrap().state, SensorState::Idle);
        c.record(&[reading(&s, 20)]);
        c.record(&[reading(&s, 10)]);
        let e = c.entry("room/t").unwrap();
        assert_eq!(e.latest.unwrap().timestamp_us, 20);
        assert_eq!(e.state, SensorState::Ok);
    }

    #[test]
    fn list_filters_by_pattern_and_permission() {
        let c = Catalog::new(8);
        for n in ["a/1", "a/2", "b/1"] {
            c.register(n, "", "sim").unwrap();
        }
        let names = |v: Vec<SensorEntry>| {
            v.into_iter()
                .map(|e| e.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(c.list(&Pattern::new("a/*"), 10, |_| true)),
            ["a/1", "a/2"]
        );
        assert_eq!(
            names(c.list(&Pattern::any(), 10, |n| n != "a/2")),
            ["a/1", "b/1"]
        );
        assert_eq!(names(c.list(&Pattern::any(), 1, |_| true)), ["a/1"]);
    }
}
