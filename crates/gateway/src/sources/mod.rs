//! Sensor sources other than the simulated one and device pushes.
//!
//! - [`config`]: the `[[driver]]`, `[[serial]]` and `[hwmon]` sections;
//! - [`supervisor`]: the daemon side of a driver host (the `sensegate-host`
//!   crate, a sandboxed child process that runs one vendor C driver):
//!   spawn, read, detect crashes, hangs and garbage, restart with
//!   [`backoff`];
//! - [`hwmon`]: Linux hardware monitors from sysfs;
//! - [`serial`]: serial devices, with the [`nmea`] and [`lines`] parsers.
//!
//! Every source is a task that feeds [`crate::service::Service::ingest`] and
//! keeps its sensors' state in the catalog; a failing source is marked
//! faulted and retried, and never takes the daemon down.

pub mod backoff;
pub mod config;
pub mod hwmon;
pub mod lines;
pub mod nmea;
pub mod serial;
pub mod supervisor;
