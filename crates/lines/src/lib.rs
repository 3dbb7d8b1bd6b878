//! Serial line protocols, without I/O: what a serial device's bytes become
//! before the daemon sees them.
//!
//! - [`lines`]: a splitter that never holds more than its cap (a longer
//!   line is dropped whole and counted), and the `name=value` protocol;
//! - [`nmea`]: NMEA 0183 sentences from GPS receivers (checksum, GGA, RMC).
//!
//! Every input is hostile: no input may panic, and nothing is allocated for
//! a length the device announced. The daemon's serial source
//! (`sensegate_gateway::sources::serial`) reads the port and hands the
//! bytes here; the fuzz target `serial_lines` drives both parsers.
#![forbid(unsafe_code)]

pub mod lines;
pub mod nmea;
