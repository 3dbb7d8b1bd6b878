//! The site view (`history.backend = "postgres"`): a sensegate that serves
//! the history of every gateway of a site from the PostgreSQL database
//! their uplinks fill, read-only, through the same service, front ends and
//! policy as a gateway.
//!
//! - [`follow`] learns the site's sensors (named `<gateway>/<sensor>`)
//!   and reads their newest readings every `history.poll_ms`, feeding the
//!   catalog and the hub: latest values, lists, subscriptions and live
//!   charts work as on a gateway.
//! - [`history`] answers history queries from the database
//!   ([`crate::store::HistoryStore`], read-only).
//!
//! Everything the database sends is input like any other: every message is
//! under `history.max_message_bytes`, every answer under a row cap, every
//! name checked by the name rule, every value finite, every quality known.
//! The sessions are read-only (`default_transaction_read_only`) and every
//! statement is under `history.timeout_ms` on both sides.

pub mod follow;
pub mod history;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_postgres::Client;

use crate::uplink::postgres::{PgConfig, PgError, connect_client};

/// The site view's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// The database and its readings table.
    pub pg: PgConfig,
    /// Longest a query (and a connection attempt) may take.
    pub timeout: Duration,
    /// How often the newest readings are read.
    pub poll: Duration,
    /// Rows one poll reads, at most.
    pub max_rows_per_poll: usize,
}

/// Where a sensor of the site is in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The gateway's id (a UUID, as text).
    pub gateway: String,
    /// The sensor's id in `<table>_sensors`.
    pub sensor: i32,
}

/// The site's sensors by their names here, as [`follow`] learned them;
/// [`history`] looks names up in it. Bounded by the catalog: a name enters
/// only once the catalog took it.
#[derive(Debug, Default)]
pub struct SiteIndex {
    places: RwLock<HashMap<Arc<str>, Place>>,
}

impl SiteIndex {
    /// Where `name` is, if it is a sensor of the site.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<Place> {
        self.places
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn insert(&self, name: Arc<str>, place: Place) {
        self.places
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, place);
    }
}

/// What the site view's follower did, for `/metrics`.
#[derive(Debug, Default)]
pub struct SiteStats {
    /// Following the database now.
    pub connected: AtomicBool,
    /// Sensors followed.
    pub sensors: AtomicU64,
    /// Polls through.
    pub polls: AtomicU64,
    /// Readings taken in.
    pub readings: AtomicU64,
    /// Rows left out (not valid readings or names).
    pub refused: AtomicU64,
    /// Connections lost or refused.
    pub failures: AtomicU64,
    /// The most rows one poll read (at most `history.max_rows_per_poll`).
    pub poll_rows_max: AtomicU64,
    /// Sensors with more readings waiting after the last poll (the live
    /// view is behind them).
    pub behind: AtomicU64,
}

impl SiteStats {
    fn polled(&self, rows: u64, sensors: usize, behind: usize) {
        self.polls.fetch_add(1, Relaxed);
        self.sensors
            .store(u64::try_from(sensors).unwrap_or(u64::MAX), Relaxed);
        self.behind
            .store(u64::try_from(behind).unwrap_or(u64::MAX), Relaxed);
        self.poll_rows_max.fetch_max(rows, Relaxed);
    }
}

/// Aborts a connection's task when dropped: a session given up (a
/// deadline passed, an error) closes its socket.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl sensegate_core::service::SiteReport for SiteStats {
    fn figures(&self) -> sensegate_core::service::SiteFigures {
        sensegate_core::service::SiteFigures {
            connected: self.connected.load(Relaxed),
            sensors: self.sensors.load(Relaxed),
            polls: self.polls.load(Relaxed),
            readings: self.readings.load(Relaxed),
            refused: self.refused.load(Relaxed),
            failures: self.failures.load(Relaxed),
            poll_rows_max: self.poll_rows_max.load(Relaxed),
            behind: self.behind.load(Relaxed),
        }
    }
}

/// A read-only session on the site's database: logged in as `c` says,
/// every transaction read-only, every statement under `c.timeout`.
///
/// # Errors
/// [`PgError`]; the connection attempt as a whole is bounded by
/// `c.timeout` too.
pub(crate) async fn session(
    c: &SiteConfig,
    purpose: &str,
) -> Result<(Client, AbortOnDrop), PgError> {
    let connect = async {
        let (client, driver) =
            connect_client(&c.pg, &format!("sensegate site view {purpose}")).await?;
        // Dropped with this future if the deadline passes mid-setup.
        let driver = AbortOnDrop(driver);
        let ms = c.timeout.as_millis();
        client
            .batch_execute(&format!(
                "SET default_transaction_read_only = on; SET statement_timeout = {ms}; \
                 SET idle_in_transaction_session_timeout = {ms}"
            ))
            .await?;
        Ok((client, driver))
    };
    tokio::time::timeout(c.timeout, connect)
        .await
        .map_err(|_| timed_out())?
}

/// A deadline of ours passed.
pub(crate) fn timed_out() -> PgError {
    PgError::Io(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// The earliest and latest instants PostgreSQL's `timestamptz` holds
/// (4713 BC; the latest is past what µs in an i64 reach), in µs since the
/// epoch.
const PG_MIN_US: i64 = -210_866_803_200_000_000;

/// µs since the epoch as a `SystemTime`, within what the server takes.
fn instant(us: i64) -> SystemTime {
    let us = us.max(PG_MIN_US);
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

/// A `SystemTime` from the server as µs since the epoch (saturating).
fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |n| -n),
    }
}

/// A quality code as stored centrally
/// ([`crate::uplink::postgres::quality_code`]), if it is one.
const fn quality(code: i16) -> Option<crate::reading::Quality> {
    match code {
        0 => Some(crate::reading::Quality::Good),
        1 => Some(crate::reading::Quality::Uncertain),
        2 => Some(crate::reading::Quality::Bad),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_and_clamp() {
        for us in [0, 1, -1, 1_764_633_600_123_456, -86_400_000_001] {
            assert_eq!(micros(instant(us)), us);
        }
        assert_eq!(micros(instant(i64::MIN)), PG_MIN_US);
        assert_eq!(micros(instant(i64::MAX)), i64::MAX);
    }

    #[test]
    fn only_known_qualities() {
        assert_eq!(quality(0), Some(crate::reading::Quality::Good));
        assert_eq!(quality(2), Some(crate::reading::Quality::Bad));
        assert_eq!(quality(3), None);
        assert_eq!(quality(-1), None);
    }
}
