//! Serial devices: NMEA 0183 GPS receivers and `name=value` line devices,
//! read through the `serialport` crate on a blocking thread per device.
//!
//! The device is opened exclusively with the configured baud rate and
//! framing, and read with a short timeout so shutdown is noticed. Lines are
//! split with a length cap ([`LineSplitter`]) and parsed by [`nmea`] or
//! [`lines`]; a malformed line is counted and dropped, never fatal. When the
//! device disappears (a USB adapter unplugged: the read fails or ends), the
//! source's sensors are marked faulted with the reason and the device is
//! opened again every `reopen_ms` until it is back; no restart needed.
//!
//! Sensors are named `SOURCE/NAME` (`gps/lat`, `bench/temp`). A device
//! cannot create more than [`MAX_SENSORS`] of them.
//!
//! [`nmea`]: sensegate_lines::nmea
//! [`lines`]: sensegate_lines::lines

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::config::{Parity, SerialProtocol, SerialSource, is_name};
use crate::reading::{Quality, Reading, now_us};
use crate::service::SourceSink;
use sensegate_core::SensorState;
use sensegate_lines::lines::{LineSplitter, parse_name_value};
use sensegate_lines::nmea;

/// Most sensors one serial device may create.
pub const MAX_SENSORS: usize = 256;
/// How long one read waits, so shutdown is seen within this.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Malformed lines are logged at most this often per device.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The state of one serial source between device openings.
struct Device {
    sink: SourceSink,
    source: SerialSource,
    sensors: BTreeMap<String, Arc<str>>,
    max_name: usize,
    malformed: u64,
    last_log: Option<Instant>,
    refused: u64,
}

/// Runs the source until `shutdown` (on a blocking thread: serial reads
/// block).
pub async fn run(sink: SourceSink, source: SerialSource, shutdown: CancellationToken) {
    let name = source.name.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || run_blocking(sink, source, &shutdown)).await
    {
        tracing::error!(source = %name, error = %e, "serial source stopped");
    }
}

fn run_blocking(sink: SourceSink, source: SerialSource, shutdown: &CancellationToken) {
    let max_name = sink.limits().message.max_name_bytes;
    let mut dev = Device {
        sink,
        source,
        sensors: BTreeMap::new(),
        max_name,
        malformed: 0,
        last_log: None,
        refused: 0,
    };
    let mut splitter = LineSplitter::new(dev.source.max_line_bytes);
    let mut was_down: Option<String> = None;
    while !shutdown.is_cancelled() {
        let reason = match open(&dev.source) {
            Ok(mut port) => {
                tracing::info!(source = %dev.source.name, path = %dev.source.path.display(), "serial device open");
                was_down = None;
                let reason = read_until_gone(&mut dev, &mut port, &mut splitter, shutdown);
                splitter.reset();
                reason
            }
            Err(e) => format!("cannot open {}: {e}", dev.source.path.display()),
        };
        if shutdown.is_cancelled() {
            return;
        }
        if was_down.as_deref() != Some(reason.as_str()) {
            tracing::warn!(source = %dev.source.name, reason = %reason, "serial device unavailable; will reopen");
        }
        dev.fault(&reason);
        was_down = Some(reason);
        sleep_unless(shutdown, dev.source.reopen);
    }
}

fn open(source: &SerialSource) -> serialport::Result<serialport::TTYPort> {
    let path = source.path.to_string_lossy();
    serialport::new(path, source.baud)
        .data_bits(match source.data_bits {
            5 => serialport::DataBits::Five,
            6 => serialport::DataBits::Six,
            7 => serialport::DataBits::Seven,
            _ => serialport::DataBits::Eight,
        })
        .parity(match source.parity {
            Parity::None => serialport::Parity::None,
            Parity::Odd => serialport::Parity::Odd,
            Parity::Even => serialport::Parity::Even,
        })
        .stop_bits(if source.stop_bits == 2 {
            serialport::StopBits::Two
        } else {
            serialport::StopBits::One
        })
        .flow_control(serialport::FlowControl::None)
        .timeout(READ_TIMEOUT)
        .open_native()
}

/// Reads until the device goes away or `shutdown`; returns why it stopped.
fn read_until_gone(
    dev: &mut Device,
    port: &mut serialport::TTYPort,
    splitter: &mut LineSplitter,
    shutdown: &CancellationToken,
) -> String {
    let mut buf = [0u8; 1024];
    let mut batch = Vec::new();
    loop {
        if shutdown.is_cancelled() {
            return "shutting down".to_owned();
        }
        match port.read(&mut buf) {
            Ok(0) => return "the device closed".to_owned(),
            Ok(n) => {
                batch.clear();
                let now = now_us();
                splitter.feed(&buf[..n], |line| dev.line(line, now, &mut batch));
                dev.sink.ingest(&batch);
                dev.report_malformed(splitter.overlong);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return format!("the device went away: {e}"),
        }
    }
}

impl Device {
    /// Parses one line into `out`.
    fn line(&mut self, line: &[u8], now: i64, out: &mut Vec<Reading>) {
        if line.is_empty() {
            return;
        }
        match self.source.protocol {
            SerialProtocol::Nmea => match nmea::parse(line) {
                Ok(values) => {
                    for (suffix, value) in values {
                        self.push(suffix, nmea::unit(suffix), value, now, out);
                    }
                }
                Err(_) => self.malformed += 1,
            },
            SerialProtocol::Lines => match parse_name_value(line, self.max_name) {
                Ok((name, value)) => {
                    let name = name.to_owned();
                    self.push(&name, "", value, now, out);
                }
                Err(_) => self.malformed += 1,
            },
        }
    }

    fn push(&mut self, suffix: &str, unit: &str, value: f64, now: i64, out: &mut Vec<Reading>) {
        let Some(sensor) = self.sensor(suffix, unit) else {
            self.refused += 1;
            return;
        };
        out.push(Reading {
            sensor,
            timestamp_us: now,
            value,
            quality: Quality::Good,
        });
    }

    /// The shared name of `SOURCE/suffix`, registering it on first sight.
    fn sensor(&mut self, suffix: &str, unit: &str) -> Option<Arc<str>> {
        if let Some(s) = self.sensors.get(suffix) {
            return Some(s.clone());
        }
        let full = format!("{}/{suffix}", self.source.name);
        if self.sensors.len() >= MAX_SENSORS || !is_name(&full, self.max_name) {
            return None;
        }
        let name = self.sink.register(&full, unit).ok()?;
        self.sensors.insert(suffix.to_owned(), name.clone());
        Some(name)
    }

    fn fault(&self, reason: &str) {
        let names: Vec<Arc<str>> = self.sensors.values().cloned().collect();
        self.sink.set_state(&names, SensorState::Faulted, reason);
    }

    fn report_malformed(&mut self, overlong: u64) {
        let due = self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY);
        if due && (self.malformed > 0 || overlong > 0 || self.refused > 0) {
            tracing::warn!(
                source = %self.source.name,
                malformed = self.malformed,
                overlong,
                refused_sensors = self.refused,
                "serial device sent lines that were dropped"
            );
            self.last_log = Some(Instant::now());
        }
    }
}

fn sleep_unless(shutdown: &CancellationToken, total: Duration) {
    let until = Instant::now() + total;
    while !shutdown.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
