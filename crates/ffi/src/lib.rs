//! The C driver boundary.
//!
//! This is the one crate of the workspace where `unsafe` is allowed, and it is
//! kept small so that it can be read whole. It owns:
//! - the driver ABI, `include/sensegate_driver.h` (the contract), mirrored in
//!   [`abi`];
//! - [`record`]: the parser for the records a driver writes, which treats that
//!   output exactly as it treats network input;
//! - [`driver`]: the safe wrapper (dynamic loading, the ABI check, open / read
//!   / close with every return checked, close on drop);
//! - [`sandbox`]: what the driver host drops before it loads a driver
//!   (descriptors, resource limits, a seccomp allow-list);
//! - [`reference`]: the reference C drivers, built by `build.rs`.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment naming the invariant it
//! relies on, and the crate's tests run under Miri in CI, with a pure-Rust
//! stand-in for the C functions.
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(
    unsafe_code,
    reason = "this crate is the workspace's only FFI boundary; each unsafe block is justified where it stands"
)]

pub mod abi;
pub mod driver;
pub mod record;
pub mod reference;
#[cfg(not(miri))]
pub mod sandbox;
#[cfg(test)]
mod stand_in;

pub use driver::{Driver, DriverError, Library};
