//! sensegate's domain core, with no sockets, no HTTP, no TLS and no SQLite.
//!
//! Every front end (native protocol, HTTP, and the ones to come) and every
//! source reaches the domain through [`service::Service`], which asks
//! [`policy::decide`] before it does anything. By module:
//! - [`pattern`], [`name`], [`reading`]: sensor-name patterns and names,
//!   parsed once by the protocol's rules with the configured limits, and
//!   readings;
//! - [`auth`]: tokens (random, hashed, checked in constant time) and the
//!   token store; [`policy`]: the one function that decides every action;
//! - [`service`]: the operations front ends call, and the narrow sink
//!   sources feed; inside it, and private to the crate, the sensor catalog,
//!   the hub that fans readings out through bounded queues, the connection
//!   registry and the rate caps (their types front ends need are
//!   re-exported at the crate root); and the [`audit`] log;
//! - [`store`]: the history backend trait and the group-commit writer over
//!   it (the SQLite backend lives with the daemon);
//! - [`time`]: the one monotonic clock type every deadline and rate uses;
//! - [`limits`]: the caps the service enforces; [`stats`]: counters of caps
//!   hit and latency histograms; [`file`]: capped reads and private writes
//!   of local files (the token store).
//!
//! Tokens are never logged: [`auth::token`] redacts them in `Debug`, no
//! error carries one, and the audit log has no field for one.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod file;
pub mod limits;
pub mod name;
pub mod pattern;
pub mod policy;
pub mod reading;
pub mod service;
pub mod stats;
pub mod store;
pub mod time;

// Only the service may touch these: front ends and sources see their types
// (re-exported below) and reach them through `service::Service`. The
// `test-support` feature (tests and benchmarks only) opens them.
#[cfg(feature = "test-support")]
pub mod catalog;
#[cfg(not(feature = "test-support"))]
mod catalog;
#[cfg(feature = "test-support")]
pub mod hub;
#[cfg(not(feature = "test-support"))]
mod hub;
#[cfg(feature = "test-support")]
pub mod registry;
#[cfg(not(feature = "test-support"))]
mod registry;
mod throttle;

pub use catalog::{RegisterError, SensorEntry, SensorState};
pub use hub::{Delivery, LagPolicy, Subscriber};
pub use registry::{Admission, AdmitError, Clock, Connection, Frontend, StopReason, Traffic};

pub use sensegate_proto::{FrameLimit, MessageLimits};
