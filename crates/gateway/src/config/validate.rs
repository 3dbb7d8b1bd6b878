//! From the raw file to the validated [`Config`]: the aggregate, the
//! small sections (`[server]`, `[native]`, `[http]`, `[store]`, `[sim]`)
//! and the range checks every section uses. `[limits]` and the sources
//! have modules of their own.

use std::path::Path;
use std::time::Duration;

use super::lines::{find_line, find_line_in};
use super::raw::{RawConfig, RawHttp, RawIngest, RawSim, RawStore};
use super::{Config, ConfigError, DEFAULT_PARK_AFTER, HttpConfig, Limits, SimConfig, StoreConfig};
use crate::http::api::HttpLimits;
use crate::http::ingest::IngestLimits;
use crate::pattern::Pattern;
use crate::store::sqlite::Durability;
use crate::store::writer::QuerySlots;
use sensegate_ingest::naming::{self, Template};

/// Checks a [`RawConfig`] against the text it came from (for line numbers).
pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a Path,
}

impl Validator<'_> {
    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
        let mqtt = self.mqtt(&raw.mqtt, tls.is_some())?;
        let mut http = self.http(&raw.http, &raw.ingest, defaults.http)?;
        // A SenML name is a sensor name: the same cap.
        http.limits.ingest.senml.max_name_bytes = limits.message.max_name_bytes;
        let store = self.store(&raw.store, &limits, http.limits.ingest.max_readings)?;
        let uplinks = self.uplinks(&raw.uplink, &server_name)?;
        if !store.enabled && !uplinks.is_empty() {
            return Err(self.invalid(
                "store.enabled",
                "is false, but uplinks send the history: keep it on, or remove [[uplink]]",
            ));
        }
        let site = self.site_view(&raw.history, &sources, sim.enabled, uplinks.is_empty())?;
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
            store,
            http,
            mqtt,
            uplinks,
            site,
        })
    }

    pub(super) fn http(
        &self,
        r: &RawHttp,
        ingest: &RawIngest,
        d: HttpConfig,
    ) -> Result<HttpConfig, ConfigError> {
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
                ingest: self.ingest(ingest, &l.ingest)?,
            },
        })
    }

    /// `[[ingest.template]]`: at most `naming::MAX_TEMPLATES`, each parsed.
    fn templates(
        &self,
        raw: &[super::raw::RawTemplate],
    ) -> Result<std::sync::Arc<[Template]>, ConfigError> {
        if raw.len() > naming::MAX_TEMPLATES {
            return Err(self.invalid(
                "ingest.template",
                &format!("more than {} templates", naming::MAX_TEMPLATES),
            ));
        }
        raw.iter()
            .enumerate()
            .map(|(i, t)| {
                Template::parse(&t.measurement, &t.sensor).map_err(|e| {
                    let key = if matches!(e, naming::TemplateError::Measurement) {
                        "ingest.template.measurement"
                    } else {
                        "ingest.template.sensor"
                    };
                    self.in_section(self.invalid(key, &e.to_string()), i)
                })
            })
            .collect()
    }

    /// `[ingest]`: the write routes' caps.
    fn ingest(&self, r: &RawIngest, d: &IngestLimits) -> Result<IngestLimits, ConfigError> {
        let max_body_bytes = self.size(
            "ingest.max_body_bytes",
            r.max_body_bytes,
            d.max_body_bytes,
            1024,
            1 << 30,
        )?;
        Ok(IngestLimits {
            max_body_bytes,
            // An inflated body is at least what was sent.
            max_decoded_bytes: self.size(
                "ingest.max_decoded_bytes",
                r.max_decoded_bytes,
                d.max_decoded_bytes.max(max_body_bytes),
                max_body_bytes,
                4 << 30,
            )?,
            max_readings: self.size(
                "ingest.max_readings",
                r.max_readings,
                d.max_readings,
                1,
                10_000_000,
            )?,
            line: sensegate_ingest::line::Limits {
                max_line_bytes: self.size(
                    "ingest.max_line_bytes",
                    r.max_line_bytes,
                    d.line.max_line_bytes,
                    64,
                    16 << 20,
                )?,
                max_lines: self.size(
                    "ingest.max_lines",
                    r.max_lines,
                    d.line.max_lines,
                    1,
                    10_000_000,
                )?,
                max_tags: self.size("ingest.max_tags", r.max_tags, d.line.max_tags, 0, 1024)?,
                max_fields: self.size(
                    "ingest.max_fields",
                    r.max_fields,
                    d.line.max_fields,
                    1,
                    1024,
                )?,
                max_key_bytes: self.size(
                    "ingest.max_key_bytes",
                    r.max_key_bytes,
                    d.line.max_key_bytes,
                    1,
                    65_536,
                )?,
                max_value_bytes: self.size(
                    "ingest.max_value_bytes",
                    r.max_value_bytes,
                    d.line.max_value_bytes,
                    1,
                    1 << 20,
                )?,
            },
            templates: self.templates(r.template.as_deref().unwrap_or_default())?,
            senml: sensegate_ingest::senml::Limits {
                max_records: self.size(
                    "ingest.max_senml_records",
                    r.max_senml_records,
                    d.senml.max_records,
                    1,
                    10_000_000,
                )?,
                ..d.senml
            },
        })
    }

    /// `[store]`; its queue must hold the largest push (`max_push`: the
    /// native batch cap or an HTTP write's, whichever is larger).
    pub(super) fn store(
        &self,
        r: &RawStore,
        limits: &Limits,
        max_bulk_push: usize,
    ) -> Result<StoreConfig, ConfigError> {
        let message = &limits.message;
        let max_push_batch = limits.max_push_batch.max(max_bulk_push);
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

    pub(super) fn sim(&self, r: &RawSim) -> Result<SimConfig, ConfigError> {
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

    pub(super) fn range(
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

    pub(super) fn size(
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

    pub(super) fn small(
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
    pub(super) fn in_section(&self, e: ConfigError, index: usize) -> ConfigError {
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

    pub(super) fn invalid(&self, key: &'static str, problem: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key,
            line: find_line(self.text, key),
            problem: problem.to_owned(),
        }
    }
}
