//! The `[[driver]]`, `[[serial]]` and `[hwmon]` sections: sensor sources,
//! raw as serde reads them and validated.
//!
//! Each source names the sensors it feeds. Names follow the protocol's name
//! rules, so a source cannot introduce a sensor the network could not.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Most `[[driver]]` sections.
pub const MAX_DRIVERS: usize = 64;
/// Most `[[serial]]` sections.
pub const MAX_SERIAL: usize = 32;

/// `[[driver]]`: a vendor C driver, run in a sandboxed driver host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriver {
    /// Source name, for logs and `sensegate sensors`.
    pub name: Option<String>,
    /// The driver's shared object.
    pub path: Option<PathBuf>,
    /// The configuration string passed to `sg_driver_open`.
    pub config: Option<String>,
    /// Sensor fed by each channel: channel N feeds `sensors[N]`.
    pub sensors: Option<Vec<String>>,
    /// Unit of the values.
    pub unit: Option<String>,
    /// The host is declared hung after this long without a frame.
    pub read_timeout_ms: Option<u64>,
    /// First restart delay.
    pub restart_initial_ms: Option<u64>,
    /// Longest restart delay.
    pub restart_max_ms: Option<u64>,
    /// The host's address-space limit.
    pub memory_mb: Option<u64>,
    /// The host's CPU-time limit.
    pub cpu_seconds: Option<u64>,
    /// The host's descriptor limit.
    pub open_files: Option<u64>,
    /// Readings per second taken from the host, at most.
    pub max_readings_per_sec: Option<u64>,
    /// Files or trees the driver may read, besides its library, the
    /// system's libraries, `/sys` and `/proc/self`.
    pub read_paths: Option<Vec<PathBuf>>,
    /// Devices the driver may read and write (and `ioctl`).
    pub devices: Option<Vec<PathBuf>>,
    /// Run the host even where the kernel has no Landlock.
    pub dangerous_allow_without_landlock: Option<bool>,
}

/// Most paths in a driver's `read_paths` or `devices`.
pub const MAX_DRIVER_PATHS: usize = 32;

/// `[[serial]]`: a device on a serial port.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSerial {
    /// Source name; also the prefix of its sensors' names.
    pub name: Option<String>,
    /// The device, e.g. `/dev/ttyUSB0` or a `/dev/serial/by-id/...` link.
    pub path: Option<PathBuf>,
    /// `nmea` (GPS sentences) or `lines` (`name=value` per line).
    pub protocol: Option<String>,
    /// Baud rate.
    pub baud: Option<u64>,
    /// 5 to 8.
    pub data_bits: Option<u64>,
    /// `none`, `odd` or `even`.
    pub parity: Option<String>,
    /// 1 or 2.
    pub stop_bits: Option<u64>,
    /// Longest line; longer lines are dropped and counted.
    pub max_line_bytes: Option<u64>,
    /// How often to try to reopen a device that went away.
    pub reopen_ms: Option<u64>,
}

/// `[hwmon]`: Linux hardware monitoring (temperatures, fans, voltages).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHwmon {
    /// Whether it runs.
    pub enabled: Option<bool>,
    /// The sysfs root (`/sys`); the source reads `ROOT/class/hwmon`.
    pub root: Option<PathBuf>,
    /// How often to read.
    pub interval_ms: Option<u64>,
    /// Prefix of the sensor names.
    pub prefix: Option<String>,
}

/// A driver source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSource {
    /// Source name.
    pub name: String,
    /// The shared object.
    pub path: PathBuf,
    /// Its configuration.
    pub config: String,
    /// Sensor per channel.
    pub sensors: Vec<String>,
    /// Unit.
    pub unit: String,
    /// Hang deadline.
    pub read_timeout: Duration,
    /// First restart delay.
    pub restart_initial: Duration,
    /// Longest restart delay.
    pub restart_max: Duration,
    /// Host limits.
    pub memory_bytes: u64,
    /// Host limits.
    pub cpu_seconds: u64,
    /// Host limits.
    pub open_files: u64,
    /// Readings per second taken from the host; past it the daemon stops
    /// reading its pipe until the budget refills, which blocks the driver.
    pub max_readings_per_sec: u64,
    /// What the host may open: read-only paths, devices, and whether it
    /// may run without Landlock.
    pub files: sensegate_ffi::sandbox::FileAccess,
}

/// What a serial device speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialProtocol {
    /// NMEA 0183 GPS sentences (GGA, RMC).
    Nmea,
    /// `name=value` per line.
    Lines,
}

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// None.
    None,
    /// Odd.
    Odd,
    /// Even.
    Even,
}

/// A serial source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSource {
    /// Source name and sensor prefix.
    pub name: String,
    /// The device.
    pub path: PathBuf,
    /// Its protocol.
    pub protocol: SerialProtocol,
    /// Baud rate.
    pub baud: u32,
    /// Data bits, 5 to 8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Longest line accepted.
    pub max_line_bytes: usize,
    /// Reopen interval after the device goes away.
    pub reopen: Duration,
}

/// The hwmon source, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwmonSource {
    /// The sysfs root.
    pub root: PathBuf,
    /// Read interval.
    pub interval: Duration,
    /// Sensor name prefix.
    pub prefix: String,
}

/// Every configured source besides `[sim]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `[[driver]]` sections.
    pub drivers: Vec<DriverSource>,
    /// `[[serial]]` sections.
    pub serial: Vec<SerialSource>,
    /// `[hwmon]`, when enabled.
    pub hwmon: Option<HwmonSource>,
}

impl DriverSource {
    /// A driver source with default limits and timings.
    #[must_use]
    pub fn new(name: &str, path: PathBuf, config: &str, sensors: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            path,
            config: config.to_owned(),
            sensors,
            unit: String::new(),
            read_timeout: Duration::from_secs(2),
            restart_initial: Duration::from_millis(500),
            restart_max: Duration::from_secs(60),
            memory_bytes: 256 << 20,
            // A lifetime budget, not a rate: a backstop for runaway loops
            // that still return (a spin inside a read is caught as a hang).
            cpu_seconds: 86_400,
            open_files: 16,
            max_readings_per_sec: 1_000_000,
            files: sensegate_ffi::sandbox::FileAccess::default(),
        }
    }
}

/// Whether `s` is a valid sensor or source name of at most `max` bytes (the
/// protocol's name rule).
pub use sensegate_proto::envelope::is_name;
