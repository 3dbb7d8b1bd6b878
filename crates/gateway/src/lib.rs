//! The sensegate daemon as a library.
//!
//! It will own configuration, authentication and the access policy, the
//! service core, the connection registry, the hub, sensor sources and driver
//! host supervision, the store, and the native and HTTP front ends (see
//! `docs/architecture.md`). So far it holds only the wire limits it enforces,
//! re-exported from `sensegate-proto`.
#![forbid(unsafe_code)]

pub use sensegate_proto::{FrameLimit, MessageLimits};
