//! The sensegate daemon as a library.
//!
//! What it owns so far, by module:
//! - [`pattern`]: sensor-name patterns (`*`, `?`) for scopes and
//!   subscriptions;
//! - [`auth`]: tokens (random, hashed, checked in constant time) and the
//!   token store;
//! - [`policy`]: the one function that decides every action.
//!
//! The configuration, the service core, the connection registry, the hub, the
//! native and HTTP front ends, sources and the store join it as they are
//! built (see `docs/decisions.md`). Tokens are never logged: [`auth::token`]
//! redacts them in `Debug` and no error carries one.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod file;
pub mod pattern;
pub mod policy;

pub use sensegate_proto::{FrameLimit, MessageLimits};
