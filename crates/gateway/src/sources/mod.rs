//! Sensor sources other than the simulated one and device pushes.
//!
//! - [`config`]: the `[[driver]]`, `[[serial]]` and `[hwmon]` sections;
//! - [`supervisor`]: the daemon side of a driver host (the `sensegate-host`
//!   crate, a sandboxed child process that runs one vendor C driver):
//!   spawn, read, detect crashes, hangs and garbage, restart with
//!   [`backoff`];
//! - [`hwmon`]: Linux hardware monitors from sysfs;
//! - [`serial`]: serial devices, with the NMEA and `name=value` parsers of
//!   the `sensegate-lines` crate.
//!
//! Every source has one run signature, `async fn run(sink: SourceSink,
//! config, shutdown: CancellationToken)` (as [`crate::sim::run`]): it feeds
//! readings and its sensors' state through its
//! [`crate::service::SourceSink`] and nothing else; a failing source is
//! marked faulted and retried, and never takes the daemon down.

pub mod backoff;
pub mod config;
pub mod hwmon;
pub mod serial;
pub mod supervisor;
