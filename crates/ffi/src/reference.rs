//! The reference C drivers, as shared objects built by `build.rs`.
//!
//! The `sim` driver is embedded so that `sensegate demo` can install it next
//! to its data and run it through a driver host on any machine. The faulty
//! test driver is reachable only with the `test-drivers` feature, which
//! production builds leave off.

/// The `sim` driver's shared object (`drivers/sim.c`).
pub const SIM_SO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libsg_sim.so"));

/// The file name to install [`SIM_SO`] under.
pub const SIM_FILE_NAME: &str = "libsg_sim.so";

/// Where the build left the `sim` driver (for this workspace's tests).
#[cfg(feature = "test-drivers")]
pub const SIM_PATH: &str = concat!(env!("OUT_DIR"), "/libsg_sim.so");

/// Where the build left the faulty test driver (`drivers/faulty.c`).
#[cfg(feature = "test-drivers")]
pub const FAULTY_PATH: &str = concat!(env!("OUT_DIR"), "/libsg_faulty.so");
