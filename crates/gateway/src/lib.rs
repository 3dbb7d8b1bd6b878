//! The sensegate daemon as a library.
//!
//! Data flows sources -> [`service`] -> [`hub`] -> front ends. By module:
//! - [`config`]: the two-tier configuration (raw TOML, then validated);
//! - [`auth`]: tokens (random, hashed, checked in constant time) and the
//!   token store; [`policy`]: the one function that decides every action;
//! - [`service`]: the application core every front end calls, with the
//!   [`catalog`] of sensors, the [`hub`] that fans readings out through
//!   bounded queues, the connection [`registry`], the rate caps in
//!   [`throttle`], and the [`audit`] log;
//! - [`session`]: one native-protocol session as a state machine without
//!   I/O; [`native`]: the listener and the thin connection task around it;
//!   [`inflight`]: the global byte budget; [`tls`]: TLS 1.3 and certificates;
//!   [`http`]: the HTTP/JSON API with server-sent events, same core;
//! - [`store`]: history (SQLite, group commit, retention);
//! - [`metrics`]: the Prometheus text for `/metrics`, from [`stats`] (caps
//!   hit, latency histograms) and the counters the other parts keep;
//! - [`sim`]: the simulated sensor source; [`sources`]: C drivers in sandboxed
//!   driver hosts, serial devices and hwmon; [`daemon`]: wiring and shutdown.
//!
//! Tokens are never logged: [`auth::token`] redacts them in `Debug`, no
//! error carries one, and the audit log has no field for one.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod file;
pub mod http;
pub mod hub;
pub mod inflight;
pub mod metrics;
pub mod native;
pub mod pattern;
pub mod policy;
pub mod reading;
pub mod registry;
pub mod service;
pub mod session;
pub mod sim;
pub mod sources;
pub mod stats;
pub mod store;
pub mod throttle;
pub mod tls;

pub use sensegate_proto::{FrameLimit, MessageLimits};
