//! Configuration, in two tiers: [`raw`] is the TOML file as serde reads it
//! (unknown keys rejected), and [`Config`] is what the rest of the daemon
//! trusts: every value range-checked, every address parsed.
//!
//! Each subsystem owns its validated section: the service its [`Limits`]
//! (with the hub's [`LagPolicy`]), HTTP its [`HttpConfig`], the store its
//! [`StoreConfig`], the simulated source its [`SimConfig`], each source its
//! config in [`crate::sources::config`]. This module only aggregates them,
//! split by job: [`raw`] (the schema), `validate`, `limits`, `mqtt` and
//! `sources` (validation per section), `lines` (where a key is, for messages).
//! Runtime hooks (how driver hosts are started) are not config: see
//! [`crate::daemon::DaemonOptions`].
//!
//! The file is input like any other: its size is capped before it is read,
//! and every error names the key and, where it can be found, the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use sensegate_core::LagPolicy;
pub use sensegate_core::limits::Limits;

pub use crate::http::HttpConfig;
pub use crate::mqtt::MqttConfig;
pub use crate::sim::SimConfig;
pub use crate::store::StoreConfig;
pub use crate::uplink::UplinkConfig;
pub use raw::RawConfig;

use crate::http::api::HttpLimits;
use crate::sources::config::Sources;
use validate::Validator;

mod limits;
mod lines;
mod mqtt;
pub mod raw;
mod site;
mod sources;
mod uplink;
mod validate;

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Default port of the native protocol.
pub const DEFAULT_NATIVE_PORT: u16 = 7420;
/// Quiet time before an idle plain-TCP connection is parked.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(1);
/// Default port of the HTTP API.
pub const DEFAULT_HTTP_PORT: u16 = 7421;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Name shown to clients.
    pub server_name: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Native listener address.
    pub native_listen: SocketAddr,
    /// TLS certificate and key, when TLS is on.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Idle plain-TCP connections are parked (no task, no runtime I/O
    /// registration) after this much quiet; `None` never parks them.
    pub park_after: Option<Duration>,
    /// The audit log, when on.
    pub audit_log: Option<PathBuf>,
    /// Where `serve` writes the first admin token.
    pub admin_token_file: PathBuf,
    /// The caps.
    pub limits: Limits,
    /// The simulated source.
    pub sim: SimConfig,
    /// Drivers, serial devices, hwmon.
    pub sources: Sources,
    /// History.
    pub store: StoreConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The MQTT listener.
    pub mqtt: MqttConfig,
    /// Uplinks to the site's central systems.
    pub uplinks: Vec<UplinkConfig>,
    /// `history.backend = "postgres"`: a read-only site view of the site's
    /// database instead of this box's own history.
    pub site: Option<crate::site::SiteConfig>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: {size} bytes, over the cap of {MAX_CONFIG_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type).
    /// toml's message names the key and the line.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's description, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}:{}: `{key}` {problem}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, as `section.key`.
        key: &'static str,
        /// The line it is on, when found.
        line: Option<usize>,
        /// What is wrong.
        problem: String,
    },
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError`] for the first problem found.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let text = crate::file::read_capped(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            crate::file::CappedReadError::Io(source) => io(source),
            crate::file::CappedReadError::TooLarge { size } => ConfigError::TooLarge {
                path: path.to_owned(),
                size,
            },
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only for messages.
    ///
    /// # Errors
    /// [`ConfigError`] for the first problem found.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Validator { text, path }.config(raw)
    }

    /// The configuration with every default (the demo's, before overrides).
    #[must_use]
    pub fn with_defaults(data_dir: &Path) -> Self {
        Self {
            server_name: "sensegate".to_owned(),
            data_dir: data_dir.to_owned(),
            native_listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_NATIVE_PORT)),
            tls: None,
            park_after: Some(DEFAULT_PARK_AFTER),
            audit_log: Some(data_dir.join("audit.jsonl")),
            admin_token_file: data_dir.join("admin.token"),
            limits: Limits::default(),
            sim: SimConfig::default(),
            sources: Sources::default(),
            store: StoreConfig::default(),
            http: HttpConfig {
                enabled: true,
                listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
                limits: HttpLimits::default(),
            },
            mqtt: MqttConfig::DEFAULT,
            uplinks: Vec::new(),
            site: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::config::{MAX_DRIVERS, SerialProtocol};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.native_listen.port(), DEFAULT_NATIVE_PORT);
        assert!(c.tls.is_none());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "[server]\nname = \"gw\"\n[native]\nlisten = \"127.0.0.1:9000\"\n[limits]\nmax_frame_bytes = 4096\nlag_policy = \"disconnect\"\nauth_timeout_ms = 250\n",
        )
        .unwrap();
        assert_eq!(c.server_name, "gw");
        assert_eq!(c.native_listen.port(), 9000);
        assert_eq!(c.limits.frame.get(), 4096);
        assert_eq!(c.limits.lag_policy, LagPolicy::Disconnect);
        assert_eq!(c.limits.auth_timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[limits]\nmax_frame_bytes = 10\nmax_frame_bytez = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_frame_bytez"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        let err = parse("[limitz]\n").unwrap_err().to_string();
        assert!(err.contains("limitz") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn out_of_range_names_key_and_line() {
        let err = parse("[server]\nname = \"x\"\n\n[limits]\nmax_frame_bytes = 16777217\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "test.toml:5: `limits.max_frame_bytes` is 16777217, must be between 1 and 16777216"
        );
        let err = parse("[limits]\nmax_frame_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:2: `limits.max_frame_bytes` is 0"),
            "{err}"
        );
        let err = parse("[limits]\nlag_policy = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:2: `limits.lag_policy`"), "{err}");
        // A token's share of the query slots is at most all of them.
        let err = parse("[store]\nmax_queries = 3\nmax_queries_per_token = 4\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "test.toml:3: `store.max_queries_per_token` is 4, must be between 1 and 3"
        );
        let c = parse("[store]\nmax_queries = 1\n").unwrap();
        assert_eq!((c.store.queries.total, c.store.queries.per_token), (1, 1));
    }

    #[test]
    fn ingest_templates_are_read_and_checked() {
        let c = parse(
            "[ingest]\nmax_readings = 10\n[[ingest.template]]\nmeasurement = \"cpu\"\nsensor = \"{host}/cpu/{field}\"\n",
        )
        .unwrap();
        assert_eq!(c.http.limits.ingest.templates.len(), 1);
        assert_eq!(c.http.limits.ingest.max_readings, 10);
        let err = parse(
            "[[ingest.template]]\nmeasurement = \"cpu\"\nsensor = \"{host}/cpu/{field}\"\n\n[[ingest.template]]\nmeasurement = \"mem\"\nsensor = \"{host}/mem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "test.toml:7: `ingest.template.sensor` must contain {field}"
        );
        let many = "[[ingest.template]]\nmeasurement = \"*\"\nsensor = \"{field}\"\n".repeat(65);
        assert!(
            parse(&many)
                .unwrap_err()
                .to_string()
                .contains("more than 64 templates")
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let err = parse("[limits]\nmax_connections = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_connections") && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn tls_needs_both_files_and_address_must_parse() {
        let err = parse("[native]\ntls_cert = \"c.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("native.tls_key"), "{err}");
        let err = parse("[native]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:2: `native.listen`"), "{err}");
    }

    #[test]
    fn the_mqtt_section_is_read_and_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.mqtt, MqttConfig::DEFAULT);
        assert!(!c.mqtt.enabled && c.mqtt.tls);
        // TLS is the default, so it needs the daemon's certificate.
        let err = parse("[mqtt]\nenabled = true\n").unwrap_err().to_string();
        assert!(err.contains("`mqtt.tls` is on (the default)"), "{err}");
        let c = parse(
            "[native]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[mqtt]\nenabled = true\nlisten = \"0.0.0.0:8883\"\n",
        )
        .unwrap();
        assert!(c.mqtt.enabled && c.mqtt.tls);
        let c = parse(
            "[mqtt]\nenabled = true\ntls = false\nmax_packet_bytes = 4096\nmax_filters = 4\nreceive_maximum = 8\npayload = \"json\"\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.mqtt.codec.max_packet_bytes,
                c.mqtt.codec.max_filters,
                c.mqtt.receive_maximum
            ),
            (4096, 4, 8)
        );
        assert_eq!(c.mqtt.payload, crate::mqtt::PayloadFormat::Json);
        for (text, key) in [
            ("max_packet_bytes = 100", "mqtt.max_packet_bytes"),
            ("max_password_bytes = 64", "mqtt.max_password_bytes"),
            ("max_connect_bytes = 100000", "mqtt.max_connect_bytes"),
            ("receive_maximum = 0", "mqtt.receive_maximum"),
            ("payload = \"xml\"", "mqtt.payload"),
            ("listen = \"here\"", "mqtt.listen"),
        ] {
            let err = parse(&format!("[mqtt]\ntls = false\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("test.toml:3: `{key}`")), "{err}");
        }
    }

    #[test]
    fn mqtt_rules_are_read_from_presets_or_in_full_and_checked() {
        let c = parse(
            "[mqtt]\ntls = false\n\
             [[mqtt.rule]]\npreset = \"tasmota\"\n\
             [[mqtt.rule]]\npreset = \"zigbee2mqtt\"\nsensor = \"z/{1}/{field}\"\nfields = [\"temperature\", \"humidity\"]\n\
             [[mqtt.rule]]\nfilter = \"plant/+/+\"\npayload = \"number\"\nsensor = \"plant/{1}/{2}\"\n",
        )
        .unwrap();
        let rules = &c.mqtt.mapper.rules;
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].filter, "tele/+/SENSOR");
        assert_eq!(rules[1].fields.as_ref().map(Vec::len), Some(2));
        let got = c
            .mqtt
            .mapper
            .map(
                "plant/basil/moisture",
                b"31",
                &sensegate_proto::MessageLimits::DEFAULT,
            )
            .unwrap();
        assert_eq!(got[0].sensor, "plant/basil/moisture");
        let bad = |rule: &str| {
            parse(&format!("[mqtt]\ntls = false\n[[mqtt.rule]]\n{rule}\n"))
                .unwrap_err()
                .to_string()
        };
        for (rule, key) in [
            ("preset = \"sonoff\"", "mqtt.rule.preset"),
            (
                "payload = \"json\"\nsensor = \"a/{field}\"",
                "mqtt.rule.filter",
            ),
            (
                "filter = \"a/#/b\"\npayload = \"number\"\nsensor = \"a\"",
                "mqtt.rule.filter",
            ),
            (
                "filter = \"a/+\"\npayload = \"xml\"\nsensor = \"a\"",
                "mqtt.rule.payload",
            ),
            (
                "filter = \"a/+\"\npayload = \"number\"\nsensor = \"a/{2}\"",
                "mqtt.rule.sensor",
            ),
            (
                "filter = \"a/+\"\npayload = \"number\"\nsensor = \"a/{field}\"",
                "mqtt.rule.sensor",
            ),
            ("preset = \"esphome\"\nfields = []", "mqtt.rule.fields"),
        ] {
            let err = bad(rule);
            assert!(err.contains(&format!("`{key}`")), "{rule}: {err}");
        }
        // The error points into the rule's own section.
        let err = bad("filter = \"a/+\"\npayload = \"xml\"\nsensor = \"a\"");
        assert!(err.starts_with("test.toml:5: `mqtt.rule.payload`"), "{err}");
        let many = "[[mqtt.rule]]\npreset = \"esphome\"\n".repeat(65);
        assert!(
            parse(&format!("[mqtt]\ntls = false\n{many}"))
                .unwrap_err()
                .to_string()
                .contains("more than 64 rules")
        );
    }

    #[test]
    fn oversized_file_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn sources_are_read_with_defaults() {
        let c = parse(
            "[[driver]]\nname = \"adc\"\npath = \"/opt/adc.so\"\nconfig = \"channels=2\"\nsensors = [\"adc/0\", \"adc/1\"]\nread_timeout_ms = 900\n\
             [[serial]]\nname = \"gps\"\npath = \"/dev/ttyUSB0\"\nprotocol = \"nmea\"\n\
             [hwmon]\nenabled = true\n",
        )
        .unwrap();
        let d = &c.sources.drivers[0];
        assert_eq!((d.name.as_str(), d.sensors.len()), ("adc", 2));
        assert_eq!(d.read_timeout, Duration::from_millis(900));
        assert_eq!(d.memory_bytes, 256 << 20);
        let s = &c.sources.serial[0];
        assert_eq!(
            (s.protocol, s.baud, s.max_line_bytes),
            (SerialProtocol::Nmea, 4800, 128)
        );
        let h = c.sources.hwmon.as_ref().unwrap();
        assert_eq!(
            (h.root.as_path(), h.prefix.as_str()),
            (Path::new("/sys"), "hwmon")
        );
        assert!(parse("").unwrap().sources.hwmon.is_none());
    }

    #[test]
    fn bad_sources_name_their_key() {
        let driver = |extra: &str| {
            parse(&format!(
                "[[driver]]\nname = \"d\"\npath = \"/x.so\"\nsensors = [\"s\"]\n{extra}"
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert!(driver("").is_ok());
        let cases = [
            ("memory_mb = 1", "driver.memory_mb"),
            (
                "restart_initial_ms = 500\nrestart_max_ms = 100",
                "driver.restart_max_ms",
            ),
            ("config = \"x\"\nunit = \"\\u0007\"", "driver.unit"),
        ];
        for (extra, key) in cases {
            let err = driver(extra).unwrap_err();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let err = parse("[[driver]]\nname = \"d\"\npath = \"/x.so\"\nsensors = [\"no spaces\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test.toml:4: `driver.sensors`"), "{err}");
        let err = parse("[[driver]]\nname = \"d\"\nsensors = [\"s\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("driver.path"), "{err}");
        let too_many: Vec<String> = (0..257).map(|i| format!("\"s{i}\"")).collect();
        let err = parse(&format!(
            "[[driver]]\nname = \"d\"\npath = \"/x.so\"\nsensors = [{}]\n",
            too_many.join(",")
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("1 to 256"), "{err}");
        let long_config = format!("config = \"{}\"", "a".repeat(4097));
        assert!(driver(&long_config).unwrap_err().contains("driver.config"));
        let twice = "[[driver]]\nname = \"d\"\npath = \"/x.so\"\nsensors = [\"s\"]\n[[serial]]\nname = \"d\"\npath = \"/dev/x\"\nprotocol = \"lines\"\n";
        assert!(parse(twice).unwrap_err().to_string().contains("used twice"));
        // An error in the second section points into the second section.
        let second = "[[driver]]\nname = \"a\"\npath = \"/x.so\"\nsensors = [\"s\"]\n[[driver]]\nname = \"b\"\npath = \"/x.so\"\nsensors = [\"t\"]\nmemory_mb = 1\n";
        assert!(
            parse(second)
                .unwrap_err()
                .to_string()
                .starts_with("test.toml:9: `driver.memory_mb`")
        );
        let same_sensor = "[[driver]]\nname = \"a\"\npath = \"/x.so\"\nsensors = [\"s\"]\n[[driver]]\nname = \"b\"\npath = \"/x.so\"\nsensors = [\"s\"]\n";
        assert!(
            parse(same_sensor)
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        let serial = |extra: &str| {
            parse(&format!(
                "[[serial]]\nname = \"g\"\npath = \"/dev/x\"\n{extra}"
            ))
            .unwrap_err()
            .to_string()
        };
        assert!(serial("protocol = \"modbus\"").contains("serial.protocol"));
        assert!(serial("protocol = \"lines\"\nparity = \"mark\"").contains("serial.parity"));
        assert!(serial("protocol = \"lines\"\ndata_bits = 9").contains("serial.data_bits"));
        assert!(
            serial("protocol = \"lines\"\nmax_line_bytes = 100000")
                .contains("serial.max_line_bytes")
        );
        let err = parse("[hwmon]\nenabled = true\nprefix = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hwmon.prefix"), "{err}");
        let drivers = (0..=MAX_DRIVERS).fold(String::new(), |mut acc, i| {
            use std::fmt::Write as _;
            let _ = write!(
                acc,
                "[[driver]]\nname = \"d{i}\"\npath = \"/x.so\"\nsensors = [\"s{i}\"]\n"
            );
            acc
        });
        assert!(
            parse(&drivers)
                .unwrap_err()
                .to_string()
                .contains("more than 64 drivers")
        );
    }
}
