//! `[[driver]]`, `[[serial]]` and `[hwmon]`, validated into the sources'
//! own configs ([`crate::sources::config`]).

use std::path::PathBuf;
use std::time::Duration;

use super::ConfigError;
use super::validate::Validator;
use crate::sources::config::{
    DriverSource, HwmonSource, MAX_DRIVER_PATHS, MAX_DRIVERS, MAX_SERIAL, Parity, RawDriver,
    RawHwmon, RawSerial, SerialProtocol, SerialSource, Sources, is_name,
};

impl Validator<'_> {
    pub(super) fn sources(
        &self,
        driver: &[RawDriver],
        serial: &[RawSerial],
        hwmon: &RawHwmon,
        max_name: usize,
    ) -> Result<Sources, ConfigError> {
        if driver.len() > MAX_DRIVERS {
            return Err(self.invalid("driver.name", &format!("more than {MAX_DRIVERS} drivers")));
        }
        if serial.len() > MAX_SERIAL {
            return Err(self.invalid(
                "serial.name",
                &format!("more than {MAX_SERIAL} serial devices"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut drivers = Vec::with_capacity(driver.len());
        let mut sensor_names = std::collections::BTreeSet::new();
        for (i, d) in driver.iter().enumerate() {
            let source = self
                .driver(d, max_name)
                .map_err(|e| self.in_section(e, i))?;
            if let Some(twice) = source
                .sensors
                .iter()
                .find(|s| !sensor_names.insert((*s).clone()))
            {
                return Err(self.invalid("driver.sensors", &format!("\"{twice}\" is listed twice")));
            }
            if !names.insert(source.name.clone()) {
                return Err(
                    self.invalid("driver.name", &format!("\"{}\" is used twice", source.name))
                );
            }
            drivers.push(source);
        }
        let mut serials = Vec::with_capacity(serial.len());
        for (i, r) in serial.iter().enumerate() {
            let source = self
                .serial(r, max_name)
                .map_err(|e| self.in_section(e, i))?;
            if !names.insert(source.name.clone()) {
                return Err(
                    self.invalid("serial.name", &format!("\"{}\" is used twice", source.name))
                );
            }
            serials.push(source);
        }
        Ok(Sources {
            drivers,
            serial: serials,
            hwmon: self.hwmon(hwmon, max_name)?,
        })
    }

    pub(super) fn source_name(
        &self,
        key: &'static str,
        v: Option<&String>,
        max: usize,
    ) -> Result<String, ConfigError> {
        match v {
            Some(n) if is_name(n, max) => Ok(n.clone()),
            Some(_) => Err(self.invalid(key, "must be a name of [A-Za-z0-9._:/-]")),
            None => Err(self.invalid(key, "is required")),
        }
    }

    pub(super) fn driver(
        &self,
        d: &RawDriver,
        max_name: usize,
    ) -> Result<DriverSource, ConfigError> {
        let name = self.source_name("driver.name", d.name.as_ref(), max_name)?;
        let ctx = |p: &str| format!("(driver \"{name}\") {p}");
        let path = d
            .path
            .clone()
            .ok_or_else(|| self.invalid("driver.path", &ctx("is required")))?;
        let config = d.config.clone().unwrap_or_default();
        if config.len() > sensegate_ffi::abi::CONFIG_MAX {
            let most = sensegate_ffi::abi::CONFIG_MAX;
            return Err(self.invalid("driver.config", &ctx(&format!("is over {most} bytes"))));
        }
        let sensors = d.sensors.clone().unwrap_or_default();
        let channels = usize::try_from(sensegate_ffi::abi::CHANNELS_MAX).unwrap_or(usize::MAX);
        if sensors.is_empty() || sensors.len() > channels {
            return Err(self.invalid(
                "driver.sensors",
                &ctx(&format!("must list 1 to {channels} sensor names")),
            ));
        }
        if let Some(bad) = sensors.iter().find(|s| !is_name(s, max_name)) {
            let bad = bad.escape_debug();
            return Err(self.invalid(
                "driver.sensors",
                &ctx(&format!("\"{bad}\" is not a valid sensor name")),
            ));
        }
        let mut out = DriverSource::new(&name, path, &config, sensors);
        out.unit = match &d.unit {
            Some(u)
                if u.len() > 32
                    || u.chars()
                        .any(sensegate_proto::envelope::is_unsafe_text_char) =>
            {
                return Err(self.invalid("driver.unit", &ctx("must be at most 32 printable bytes")));
            }
            Some(u) => u.clone(),
            None => String::new(),
        };
        out.read_timeout = self.millis(
            "driver.read_timeout_ms",
            d.read_timeout_ms,
            out.read_timeout,
            100,
            600_000,
        )?;
        out.restart_initial = self.millis(
            "driver.restart_initial_ms",
            d.restart_initial_ms,
            out.restart_initial,
            1,
            600_000,
        )?;
        out.restart_max = self.millis(
            "driver.restart_max_ms",
            d.restart_max_ms,
            out.restart_max,
            1,
            3_600_000,
        )?;
        if out.restart_max < out.restart_initial {
            return Err(self.invalid(
                "driver.restart_max_ms",
                &ctx("must be at least restart_initial_ms"),
            ));
        }
        out.memory_bytes = self.range(
            "driver.memory_mb",
            d.memory_mb,
            out.memory_bytes >> 20,
            16,
            65_536,
        )? << 20;
        out.cpu_seconds = self.range(
            "driver.cpu_seconds",
            d.cpu_seconds,
            out.cpu_seconds,
            1,
            31_536_000,
        )?;
        out.open_files = self.range("driver.open_files", d.open_files, out.open_files, 4, 4096)?;
        out.max_readings_per_sec = self.range(
            "driver.max_readings_per_sec",
            d.max_readings_per_sec,
            out.max_readings_per_sec,
            1,
            100_000_000,
        )?;
        out.files.read = self.driver_paths("driver.read_paths", d.read_paths.as_ref(), &ctx)?;
        out.files.read_write = self.driver_paths("driver.devices", d.devices.as_ref(), &ctx)?;
        out.files.dangerous_allow_without_landlock =
            d.dangerous_allow_without_landlock.unwrap_or(false);
        Ok(out)
    }

    /// A driver's list of paths: absolute, at most [`MAX_DRIVER_PATHS`] of
    /// at most 4 KiB each.
    pub(super) fn driver_paths(
        &self,
        key: &'static str,
        paths: Option<&Vec<PathBuf>>,
        ctx: &dyn Fn(&str) -> String,
    ) -> Result<Vec<PathBuf>, ConfigError> {
        let paths = paths.cloned().unwrap_or_default();
        if paths.len() > MAX_DRIVER_PATHS {
            return Err(self.invalid(
                key,
                &ctx(&format!("lists more than {MAX_DRIVER_PATHS} paths")),
            ));
        }
        if paths
            .iter()
            .any(|p| !p.is_absolute() || p.as_os_str().len() > 4096)
        {
            return Err(self.invalid(key, &ctx("must list absolute paths")));
        }
        Ok(paths)
    }

    pub(super) fn serial(
        &self,
        r: &RawSerial,
        max_name: usize,
    ) -> Result<SerialSource, ConfigError> {
        let name = self.source_name("serial.name", r.name.as_ref(), max_name)?;
        let ctx = |p: &str| format!("(serial \"{name}\") {p}");
        let path = r
            .path
            .clone()
            .ok_or_else(|| self.invalid("serial.path", &ctx("is required")))?;
        let protocol = match r.protocol.as_deref() {
            Some("nmea") => SerialProtocol::Nmea,
            Some("lines") => SerialProtocol::Lines,
            _ => return Err(self.invalid("serial.protocol", &ctx("must be \"nmea\" or \"lines\""))),
        };
        let parity = match r.parity.as_deref() {
            None | Some("none") => Parity::None,
            Some("odd") => Parity::Odd,
            Some("even") => Parity::Even,
            Some(_) => return Err(self.invalid("serial.parity", &ctx("must be none, odd or even"))),
        };
        let default_baud = if protocol == SerialProtocol::Nmea {
            4800
        } else {
            9600
        };
        let baud = self.small("serial.baud", r.baud, default_baud, 50, 4_000_000)?;
        let data_bits = self.small("serial.data_bits", r.data_bits, 8, 5, 8)?;
        let stop_bits = self.small("serial.stop_bits", r.stop_bits, 1, 1, 2)?;
        // NMEA caps a sentence at 82 bytes; allow some slack for devices that
        // stretch it.
        let default_line = if protocol == SerialProtocol::Nmea {
            128
        } else {
            256
        };
        let max_line_bytes = self.size(
            "serial.max_line_bytes",
            r.max_line_bytes,
            default_line,
            16,
            4096,
        )?;
        let reopen = self.millis(
            "serial.reopen_ms",
            r.reopen_ms,
            Duration::from_secs(1),
            50,
            600_000,
        )?;
        Ok(SerialSource {
            name,
            path,
            protocol,
            baud,
            data_bits: u8::try_from(data_bits).unwrap_or(8),
            parity,
            stop_bits: u8::try_from(stop_bits).unwrap_or(1),
            max_line_bytes,
            reopen,
        })
    }

    pub(super) fn hwmon(
        &self,
        r: &RawHwmon,
        max_name: usize,
    ) -> Result<Option<HwmonSource>, ConfigError> {
        if !r.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let prefix = match &r.prefix {
            None => "hwmon".to_owned(),
            Some(p) if is_name(p, max_name / 2) => p.clone(),
            Some(_) => {
                return Err(
                    self.invalid("hwmon.prefix", "must be a short name of [A-Za-z0-9._:/-]")
                );
            }
        };
        Ok(Some(HwmonSource {
            root: r.root.clone().unwrap_or_else(|| PathBuf::from("/sys")),
            interval: self.millis(
                "hwmon.interval_ms",
                r.interval_ms,
                Duration::from_secs(1),
                100,
                3_600_000,
            )?,
            prefix,
        }))
    }
}
