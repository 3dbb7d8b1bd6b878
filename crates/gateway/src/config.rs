//! Configuration, in two tiers: [`RawConfig`] is the TOML file as serde reads
//! it (unknown keys rejected), and [`Config`] is what the rest of the daemon
//! trusts: every value range-checked, every address parsed.
//!
//! The file is input like any other: its size is capped before it is read,
//! and every error names the key and, where it can be found, the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sensegate_proto::frame::HARD_MAX_FRAME_BYTES;
use sensegate_proto::{FrameLimit, MessageLimits};
use serde::Deserialize;

pub use sensegate_core::LagPolicy;
pub use sensegate_core::limits::Limits;

use crate::http::api::HttpLimits;
use crate::pattern::Pattern;
use crate::sources::config::{
    DriverSource, HwmonSource, MAX_DRIVER_PATHS, MAX_DRIVERS, MAX_SERIAL, Parity, RawDriver,
    RawHwmon, RawSerial, SerialProtocol, SerialSource, Sources, is_name,
};
use crate::sources::supervisor::HostCommand;
use crate::store::sqlite::Durability;
use crate::store::writer::{QuerySlots, Retention};

const K_FRAME: &str = "limits.max_frame_bytes";
const K_LAG: &str = "limits.lag_policy";

/// Largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Default port of the native protocol.
pub const DEFAULT_NATIVE_PORT: u16 = 7420;
/// Quiet time before an idle plain-TCP connection is parked.
pub const DEFAULT_PARK_AFTER: Duration = Duration::from_secs(1);
/// Default port of the HTTP API.
pub const DEFAULT_HTTP_PORT: u16 = 7421;

/// The file as written. Every section and key is optional; defaults fill in.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[native]`
    #[serde(default)]
    pub native: RawNative,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[sim]`
    #[serde(default)]
    pub sim: RawSim,
    /// `[[driver]]`
    #[serde(default)]
    pub driver: Vec<RawDriver>,
    /// `[[serial]]`
    #[serde(default)]
    pub serial: Vec<RawSerial>,
    /// `[hwmon]`
    #[serde(default)]
    pub hwmon: RawHwmon,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[http]`
    #[serde(default)]
    pub http: RawHttp,
}

/// `[http]`: the HTTP/JSON API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Whether the HTTP API listens.
    pub enabled: Option<bool>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// Largest request body.
    pub max_body_bytes: Option<u64>,
    /// Longest query string.
    pub max_query_bytes: Option<u64>,
    /// Time to produce a response.
    pub request_timeout_ms: Option<u64>,
    /// Time to send the request headers (also the idle time between
    /// requests on a kept-alive connection).
    pub header_timeout_ms: Option<u64>,
    /// Serve `/metrics` without a token (no per-sensor series then).
    pub metrics_public: Option<bool>,
}

/// The HTTP API, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Whether it listens.
    pub enabled: bool,
    /// Where.
    pub listen: SocketAddr,
    /// Its caps.
    pub limits: HttpLimits,
}

/// `[store]`: history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Whether readings are kept.
    pub enabled: Option<bool>,
    /// The database file (default `data_dir/history.db`).
    pub path: Option<PathBuf>,
    /// `full` (survives power loss) or `normal` (survives a crash).
    pub synchronous: Option<String>,
    /// Days readings are kept unless a rule says otherwise.
    pub retention_days: Option<u64>,
    /// Per-sensor retention: `{ pattern = "gps/*", days = 7 }`, first match wins.
    pub retention: Option<Vec<RawRetentionRule>>,
    /// Readings waiting for the writer, at most.
    pub max_queued_readings: Option<u64>,
    /// How often old readings are pruned.
    pub prune_interval_secs: Option<u64>,
    /// History queries running at once, in all.
    pub max_queries: Option<u64>,
    /// History queries running at once from one token.
    pub max_queries_per_token: Option<u64>,
}

/// One `[[store.retention]]` rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetentionRule {
    /// Sensor name pattern.
    pub pattern: String,
    /// Days to keep.
    pub days: u64,
}

/// History settings, validated.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Whether readings are kept.
    pub enabled: bool,
    /// The database file; `None` for `data_dir/history.db`.
    pub path: Option<PathBuf>,
    /// Durability of a commit.
    pub durability: Durability,
    /// Retention by age.
    pub retention: Retention,
    /// Readings waiting for the writer, at most.
    pub max_queued_readings: usize,
    /// History queries at once, in all and per token.
    pub queries: QuerySlots,
}

impl PartialEq for StoreConfig {
    fn eq(&self, other: &Self) -> bool {
        let rules = |s: &Self| -> Vec<(String, Duration)> {
            s.retention
                .rules
                .iter()
                .map(|(p, d)| (p.as_str().to_owned(), *d))
                .collect()
        };
        self.enabled == other.enabled
            && self.path == other.path
            && self.durability == other.durability
            && self.retention.default == other.retention.default
            && self.retention.every == other.retention.every
            && rules(self) == rules(other)
            && self.max_queued_readings == other.max_queued_readings
            && self.queries == other.queries
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            durability: Durability::Full,
            retention: Retention {
                default: Duration::from_secs(30 * 86_400),
                rules: Vec::new(),
                every: Duration::from_secs(60),
            },
            max_queued_readings: 100_000,
            queries: QuerySlots::default(),
        }
    }
}

/// `[sim]`: the simulated sensor source.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSim {
    /// Whether the simulated sensors run.
    pub enabled: Option<bool>,
    /// How many simulated sensors.
    pub sensors: Option<u64>,
    /// Readings per second per sensor.
    pub rate_hz: Option<f64>,
    /// Seed of the noise.
    pub seed: Option<u64>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Name shown to clients.
    pub name: Option<String>,
    /// Where tokens, history and keys live.
    pub data_dir: Option<PathBuf>,
    /// The audit log (JSON lines); empty turns it off.
    pub audit_log: Option<PathBuf>,
    /// Where `serve` writes the first admin token when the token store is
    /// empty (default `data_dir/admin.token`); removed once it was used.
    pub admin_token_file: Option<PathBuf>,
}

/// `[native]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNative {
    /// Address to listen on.
    pub listen: Option<String>,
    /// PEM certificate chain; TLS is on when set (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Quiet time after which an idle plain-TCP connection is parked
    /// (0: never).
    pub park_after_ms: Option<u64>,
}

/// `[limits]`: every cap a peer can run into. See `docs/security.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    missing_docs,
    reason = "each key is documented in docs/security.md and deploy/sensegate.toml"
)]
pub struct RawLimits {
    pub max_frame_bytes: Option<u64>,
    pub max_name_bytes: Option<u64>,
    pub max_pattern_bytes: Option<u64>,
    pub max_token_bytes: Option<u64>,
    pub max_text_bytes: Option<u64>,
    pub max_readings: Option<u64>,
    pub max_list_items: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_address: Option<u64>,
    pub auth_timeout_ms: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub frame_timeout_ms: Option<u64>,
    pub max_subscriptions: Option<u64>,
    pub max_patterns_per_token: Option<u64>,
    pub max_patterns_per_address: Option<u64>,
    pub max_push_batch: Option<u64>,
    pub push_rate_per_sec: Option<u64>,
    pub inflight_bytes_per_connection: Option<u64>,
    pub inflight_bytes_total: Option<u64>,
    pub inflight_bytes_per_token: Option<u64>,
    pub reply_bytes_per_connection: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub subscriber_queue: Option<u64>,
    pub lag_policy: Option<String>,
    pub auth_failures_per_minute: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_sensors: Option<u64>,
    pub max_sensors_per_token: Option<u64>,
    pub sensors_reserved_for_sources: Option<u64>,
    pub audit_denials_per_minute: Option<u64>,
}

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
    /// How driver hosts are started; `None` runs this executable with
    /// `driver-host`. Not a file setting: embedders and tests set it.
    pub driver_host: Option<HostCommand>,
}

/// The simulated sensor source, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Whether it runs.
    pub enabled: bool,
    /// How many sensors (1 to 1000).
    pub sensors: usize,
    /// Readings per second per sensor (0.1 to 1000).
    pub rate_hz: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sensors: 4,
            rate_hz: 10.0,
            seed: 1,
        }
    }
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
            driver_host: None,
        }
    }
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = Config::with_defaults(Path::new("/var/lib/sensegate"));
        let server_name = match raw.server.name {
            Some(n)
                if n.is_empty()
                    || n.len() > 64
                    || n.chars()
                        .any(sensegate_proto::envelope::is_unsafe_text_char) =>
            {
                return Err(self.invalid("server.name", "must be 1 to 64 printable characters"));
            }
            Some(n) => n,
            None => defaults.server_name,
        };
        let data_dir = raw.server.data_dir.unwrap_or(defaults.data_dir);
        let native_listen = match raw.native.listen {
            Some(s) => s.parse().map_err(|_| {
                self.invalid("native.listen", "must be an address like 0.0.0.0:7420")
            })?,
            None => defaults.native_listen,
        };
        let tls = match (raw.native.tls_cert, raw.native.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.invalid("native.tls_key", "is required with tls_cert"));
            }
            (None, Some(_)) => {
                return Err(self.invalid("native.tls_cert", "is required with tls_key"));
            }
        };
        let limits = self.limits(&raw.limits)?;
        let park_after = match raw.native.park_after_ms {
            Some(0) => None,
            v => Some(self.millis("native.park_after_ms", v, DEFAULT_PARK_AFTER, 0, 3_600_000)?),
        };
        let audit_log = match raw.server.audit_log {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None => Some(data_dir.join("audit.jsonl")),
        };
        let admin_token_file = match raw.server.admin_token_file {
            Some(p) if p.as_os_str().is_empty() || p.is_dir() => {
                return Err(self.invalid("server.admin_token_file", "must be a file path"));
            }
            Some(p) => p,
            None => data_dir.join("admin.token"),
        };
        let sim = self.sim(&raw.sim)?;
        let sources = self.sources(
            &raw.driver,
            &raw.serial,
            &raw.hwmon,
            limits.message.max_name_bytes,
        )?;
        Ok(Config {
            server_name,
            data_dir,
            native_listen,
            tls,
            park_after,
            audit_log,
            admin_token_file,
            limits,
            sim,
            sources,
            store: self.store(&raw.store, &limits)?,
            http: self.http(&raw.http, defaults.http)?,
            driver_host: None,
        })
    }

    fn http(&self, r: &RawHttp, d: HttpConfig) -> Result<HttpConfig, ConfigError> {
        let listen = match &r.listen {
            Some(s) => s.parse().map_err(|_| {
                self.invalid("http.listen", "must be an address like 127.0.0.1:7421")
            })?,
            None => d.listen,
        };
        let l = d.limits;
        Ok(HttpConfig {
            enabled: r.enabled.unwrap_or(d.enabled),
            listen,
            limits: HttpLimits {
                max_body_bytes: self.size(
                    "http.max_body_bytes",
                    r.max_body_bytes,
                    l.max_body_bytes,
                    256,
                    1 << 20,
                )?,
                max_query_bytes: self.size(
                    "http.max_query_bytes",
                    r.max_query_bytes,
                    l.max_query_bytes,
                    64,
                    16_384,
                )?,
                request_timeout: self.millis(
                    "http.request_timeout_ms",
                    r.request_timeout_ms,
                    l.request_timeout,
                    100,
                    600_000,
                )?,
                header_timeout: self.millis(
                    "http.header_timeout_ms",
                    r.header_timeout_ms,
                    l.header_timeout,
                    100,
                    600_000,
                )?,
                metrics_public: r.metrics_public.unwrap_or(l.metrics_public),
            },
        })
    }

    fn store(&self, r: &RawStore, limits: &Limits) -> Result<StoreConfig, ConfigError> {
        let (max_push_batch, message) = (limits.max_push_batch, &limits.message);
        let mut c = StoreConfig::default();
        c.enabled = r.enabled.unwrap_or(c.enabled);
        c.path.clone_from(&r.path);
        c.durability = match r.synchronous.as_deref() {
            None | Some("full") => Durability::Full,
            Some("normal") => Durability::Normal,
            Some(_) => {
                return Err(self.invalid("store.synchronous", "must be \"full\" or \"normal\""));
            }
        };
        let days = |key, v: Option<u64>, def: u64| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(
                self.range(key, v, def, 1, 36_500)? * 86_400,
            ))
        };
        c.retention.default = days("store.retention_days", r.retention_days, 30)?;
        let rules = r.retention.as_deref().unwrap_or_default();
        if rules.len() > 256 {
            return Err(self.invalid("store.retention", "more than 256 rules"));
        }
        for rule in rules {
            let pattern = Pattern::parse("store.retention", &rule.pattern, message).map_err(|_| {
                self.invalid(
                    "store.retention",
                    &format!(
                        "a pattern must be 1 to {} bytes (limits.max_pattern_bytes) of name characters, * and ?",
                        message.max_pattern_bytes
                    ),
                )
            })?;
            let keep = days("store.retention", Some(rule.days), 30)?;
            c.retention.rules.push((pattern, keep));
        }
        let secs = self.range(
            "store.prune_interval_secs",
            r.prune_interval_secs,
            60,
            1,
            86_400,
        )?;
        c.retention.every = Duration::from_secs(secs);
        let total = self.size("store.max_queries", r.max_queries, c.queries.total, 1, 256)?;
        c.queries = QuerySlots {
            total,
            per_token: self.size(
                "store.max_queries_per_token",
                r.max_queries_per_token,
                c.queries.per_token.min(total),
                1,
                total,
            )?,
        };
        c.max_queued_readings = self.size(
            "store.max_queued_readings",
            r.max_queued_readings,
            c.max_queued_readings.max(max_push_batch),
            max_push_batch.max(1),
            10_000_000,
        )?;
        Ok(c)
    }

    fn sources(
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

    fn source_name(
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

    fn driver(&self, d: &RawDriver, max_name: usize) -> Result<DriverSource, ConfigError> {
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
    fn driver_paths(
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

    fn serial(&self, r: &RawSerial, max_name: usize) -> Result<SerialSource, ConfigError> {
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

    fn hwmon(&self, r: &RawHwmon, max_name: usize) -> Result<Option<HwmonSource>, ConfigError> {
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

    fn sim(&self, r: &RawSim) -> Result<SimConfig, ConfigError> {
        let d = SimConfig::default();
        let sensors = self.size("sim.sensors", r.sensors, d.sensors, 1, 1_000)?;
        let rate_hz = match r.rate_hz {
            None => d.rate_hz,
            Some(v) if (0.1..=1_000.0).contains(&v) => v,
            Some(_) => return Err(self.invalid("sim.rate_hz", "must be 0.1 to 1000")),
        };
        Ok(SimConfig {
            enabled: r.enabled.unwrap_or(d.enabled),
            sensors,
            rate_hz,
            seed: r.seed.unwrap_or(d.seed),
        })
    }

    fn limits(&self, r: &RawLimits) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        let max = u64::from(HARD_MAX_FRAME_BYTES);
        let frame_bytes =
            self.range(K_FRAME, r.max_frame_bytes, u64::from(l.frame.get()), 1, max)?;
        l.frame = FrameLimit::new(u32::try_from(frame_bytes).unwrap_or(u32::MAX))
            .map_err(|e| self.invalid(K_FRAME, &e.to_string()))?;
        l.message = self.message(r)?;
        l.lag_policy = match r.lag_policy.as_deref() {
            None => l.lag_policy,
            Some("drop-oldest") => LagPolicy::DropOldest,
            Some("disconnect") => LagPolicy::Disconnect,
            Some(_) => return Err(self.invalid(K_LAG, "must be \"drop-oldest\" or \"disconnect\"")),
        };
        self.connection_caps(r, &mut l)?;
        self.flow_caps(r, &mut l)?;
        Ok(l)
    }

    /// Connections and their timers.
    fn connection_caps(&self, r: &RawLimits, l: &mut Limits) -> Result<(), ConfigError> {
        let k = "limits.max_connections";
        l.max_connections = self.size(k, r.max_connections, l.max_connections, 1, 1_000_000)?;
        let k = "limits.max_connections_per_address";
        let v = r.max_connections_per_address;
        l.max_connections_per_address =
            self.size(k, v, l.max_connections_per_address, 1, 1_000_000)?;
        let k = "limits.auth_timeout_ms";
        l.auth_timeout = self.millis(k, r.auth_timeout_ms, l.auth_timeout, 100, 60_000)?;
        let k = "limits.idle_timeout_secs";
        let secs = self.range(k, r.idle_timeout_secs, l.idle_timeout.as_secs(), 1, 86_400)?;
        l.idle_timeout = Duration::from_secs(secs);
        let k = "limits.frame_timeout_ms";
        l.frame_timeout = self.millis(k, r.frame_timeout_ms, l.frame_timeout, 100, 600_000)?;
        let k = "limits.auth_failures_per_minute";
        let v = r.auth_failures_per_minute;
        l.auth_failures_per_minute = self.small(k, v, l.auth_failures_per_minute, 1, 1_000_000)?;
        let k = "limits.max_tokens";
        l.max_tokens = self.size(k, r.max_tokens, l.max_tokens, 1, 1_000_000)?;
        let k = "limits.max_sensors";
        l.max_sensors = self.size(k, r.max_sensors, l.max_sensors, 1, 1_000_000)?;
        let k = "limits.max_sensors_per_token";
        let v = r.max_sensors_per_token;
        l.max_sensors_per_token = self.size(k, v, l.max_sensors_per_token, 1, 1_000_000)?;
        // A tenth of the catalog for configured sources unless said.
        let k = "limits.sensors_reserved_for_sources";
        let v = r.sensors_reserved_for_sources;
        let most = l.max_sensors;
        l.sensors_reserved_for_sources = self.size(k, v, l.max_sensors / 10, 0, most)?;
        let k = "limits.audit_denials_per_minute";
        let v = r.audit_denials_per_minute;
        l.audit_denials_per_minute = self.small(k, v, l.audit_denials_per_minute, 1, 1_000_000)?;
        Ok(())
    }

    /// Subscriptions, pushes and buffered bytes.
    fn flow_caps(&self, r: &RawLimits, l: &mut Limits) -> Result<(), ConfigError> {
        let k = "limits.max_subscriptions";
        l.max_subscriptions = self.size(k, r.max_subscriptions, l.max_subscriptions, 1, 10_000)?;
        let k = "limits.max_patterns_per_token";
        let v = r.max_patterns_per_token;
        l.max_patterns_per_token = self.size(k, v, l.max_patterns_per_token, 1, 10_000_000)?;
        let k = "limits.max_patterns_per_address";
        let v = r.max_patterns_per_address;
        l.max_patterns_per_address = self.size(k, v, l.max_patterns_per_address, 1, 10_000_000)?;
        let k = "limits.max_push_batch";
        let most = l.message.max_readings;
        l.max_push_batch = self.size(k, r.max_push_batch, l.max_push_batch, 1, most)?;
        let k = "limits.push_rate_per_sec";
        l.push_rate_per_sec =
            self.small(k, r.push_rate_per_sec, l.push_rate_per_sec, 1, 10_000_000)?;
        let k = "limits.inflight_bytes_per_connection";
        let v = r.inflight_bytes_per_connection;
        l.inflight_bytes_per_connection =
            self.size(k, v, l.inflight_bytes_per_connection, 4096, 1 << 30)?;
        let k = "limits.inflight_bytes_total";
        let v = r.inflight_bytes_total;
        l.inflight_bytes_total = self.size(k, v, l.inflight_bytes_total, 1 << 16, 1 << 40)?;
        let k = "limits.inflight_bytes_per_token";
        let v = r.inflight_bytes_per_token;
        l.inflight_bytes_per_token =
            self.size(k, v, l.inflight_bytes_per_token, 1 << 16, 1 << 40)?;
        let k = "limits.reply_bytes_per_connection";
        let v = r.reply_bytes_per_connection;
        l.reply_bytes_per_connection =
            self.size(k, v, l.reply_bytes_per_connection, 4096, 1 << 30)?;
        let k = "limits.write_timeout_ms";
        l.write_timeout = self.millis(k, r.write_timeout_ms, l.write_timeout, 100, 600_000)?;
        if l.write_timeout > l.idle_timeout {
            if r.write_timeout_ms.is_some() {
                return Err(self.invalid(k, "must be at most idle_timeout_secs"));
            }
            // The default, under a shorter idle timeout: that one.
            l.write_timeout = l.idle_timeout;
        }
        let k = "limits.subscriber_queue";
        l.subscriber_queue = self.size(k, r.subscriber_queue, l.subscriber_queue, 1, 1 << 20)?;
        Ok(())
    }

    fn millis(
        &self,
        key: &'static str,
        v: Option<u64>,
        def: Duration,
        min: u64,
        max: u64,
    ) -> Result<Duration, ConfigError> {
        let def = u64::try_from(def.as_millis()).unwrap_or(u64::MAX);
        Ok(Duration::from_millis(self.range(key, v, def, min, max)?))
    }

    fn message(&self, r: &RawLimits) -> Result<MessageLimits, ConfigError> {
        let dm = MessageLimits::DEFAULT;
        Ok(MessageLimits {
            max_name_bytes: self.size(
                "limits.max_name_bytes",
                r.max_name_bytes,
                dm.max_name_bytes,
                1,
                1024,
            )?,
            max_pattern_bytes: self.size(
                "limits.max_pattern_bytes",
                r.max_pattern_bytes,
                dm.max_pattern_bytes,
                1,
                4096,
            )?,
            max_token_bytes: self.size(
                "limits.max_token_bytes",
                r.max_token_bytes,
                dm.max_token_bytes,
                128,
                4096,
            )?,
            max_text_bytes: self.size(
                "limits.max_text_bytes",
                r.max_text_bytes,
                dm.max_text_bytes,
                64,
                65_536,
            )?,
            max_readings: self.size(
                "limits.max_readings",
                r.max_readings,
                dm.max_readings,
                1,
                1_000_000,
            )?,
            max_list_items: self.size(
                "limits.max_list_items",
                r.max_list_items,
                dm.max_list_items,
                1,
                1_000_000,
            )?,
        })
    }

    fn range(
        &self,
        key: &'static str,
        v: Option<u64>,
        def: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(def),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(self.invalid(key, &format!("is {v}, must be between {min} and {max}"))),
        }
    }

    fn size(
        &self,
        key: &'static str,
        v: Option<u64>,
        def: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let n = self.range(key, v, wide(def), wide(min), wide(max))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn small(
        &self,
        key: &'static str,
        v: Option<u64>,
        def: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, ConfigError> {
        let n = self.range(key, v, u64::from(def), u64::from(min), u64::from(max))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Points an error about `[[section]]` number `index` (0-based) at the
    /// line in that section rather than the first one.
    fn in_section(&self, e: ConfigError, index: usize) -> ConfigError {
        match e {
            ConfigError::Invalid {
                path, key, problem, ..
            } => ConfigError::Invalid {
                line: find_line_in(self.text, key, index),
                path,
                key,
                problem,
            },
            other => other,
        }
    }

    fn invalid(&self, key: &'static str, problem: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key,
            line: find_line(self.text, key),
            problem: problem.to_owned(),
        }
    }
}

/// As [`find_line`], in the `index`-th (0-based) `[[section]]` of an array
/// of tables; the section's header line when the key is not set in it.
fn find_line_in(text: &str, dotted: &str, index: usize) -> Option<usize> {
    let (section, key) = dotted.split_once('.')?;
    let header = format!("[[{section}]]");
    let mut seen = 0;
    let mut inside: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if inside.is_some() {
                break;
            }
            if t == header {
                if seen == index {
                    inside = Some(i + 1);
                }
                seen += 1;
            }
        } else if inside.is_some()
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    inside
}

/// The 1-based line where `section.key` is set: the first line assigning
/// `key` after a `[section]` header and before the next header. Covers the
/// plain layout of the example config; dotted or inline forms get no line.
fn find_line(text: &str, dotted: &str) -> Option<usize> {
    let (section, key) = dotted.split_once('.')?;
    let header = format!("[{section}]");
    let array_header = format!("[[{section}]]");
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t == header || t == array_header;
        } else if in_section
            && t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return Some(i + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
