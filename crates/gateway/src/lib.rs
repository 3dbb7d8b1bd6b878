//! The sensegate daemon as a library: the front ends, the sources, the
//! SQLite history backend and the wiring, around the socket-free domain
//! core in `sensegate_core` (re-exported here under its own module names).
//!
//! Data flows sources -> [`service`] -> [`hub`] -> front ends. By module:
//! - [`config`]: the two-tier configuration (raw TOML, then validated);
//! - [`native`]: the native protocol: its session as a state machine
//!   without I/O, its wire forms and errors in one module, the listener and
//!   the thin connection task around the session;
//!   [`inflight`]: the global byte budget; [`parking`]: idle plain-TCP
//!   connections of either front end waiting without a task;
//!   [`tls`]: TLS 1.3 and certificates;
//!   [`http`]: the HTTP/JSON API with server-sent events, same core, and
//!   the Prometheus text for `/metrics` from the service's policy-filtered
//!   snapshot; [`mqtt`]: the MQTT 3.1.1 and 5.0 listener around the
//!   `sensegate_mqtt` codec, same core;
//! - [`store`]: the core's history writer, and the SQLite backend;
//! - [`sim`]: the simulated sensor source; [`sources`]: C drivers in sandboxed
//!   driver hosts, serial devices and hwmon; [`daemon`]: wiring and shutdown.
//!
//! The core's public modules ([`auth`], [`policy`], [`service`],
//! [`audit`], [`stats`], [`limits`], [`pattern`], [`reading`], [`file`])
//! are re-exported so callers keep one path. The catalog, the hub and the
//! registry are private to the core: this crate reaches them only through
//! the service (its front ends) or a `SourceSink` (its sources).
#![forbid(unsafe_code)]

pub use sensegate_core::{audit, auth, file, limits, pattern, policy, reading, service, stats};

pub mod config;
pub mod daemon;
pub mod http;
pub mod inflight;
pub mod mqtt;
pub mod native;
pub mod parking;
pub mod sim;
pub mod site;
pub mod sources;
pub mod store;
pub mod tls;
pub mod uplink;

pub use sensegate_proto::{FrameLimit, MessageLimits};
