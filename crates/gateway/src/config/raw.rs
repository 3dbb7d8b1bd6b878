//! The config file as serde reads it: every section and key optional,
//! unknown keys rejected. Nothing here is trusted; [`super::validate`] turns
//! it into the sections each subsystem owns.

use std::path::PathBuf;

use serde::Deserialize;

use crate::sources::config::{RawDriver, RawHwmon, RawSerial};

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
    /// `[mqtt]`
    #[serde(default)]
    pub mqtt: RawMqtt,
    /// `[ingest]`
    #[serde(default)]
    pub ingest: RawIngest,
    /// `[[uplink]]`
    #[serde(default)]
    pub uplink: Vec<RawUplink>,
    /// `[history]`
    #[serde(default)]
    pub history: RawHistory,
}

/// `[history]`: where history is kept. Its PostgreSQL keys are
/// `[[uplink]]`'s, written out again: serde's `flatten` would share them,
/// but cannot be combined with `deny_unknown_fields`. `backend = "sqlite"` (the default:
/// this box's own, set up in `[store]`) or `"postgres"`: a read-only site
/// view of the site's database the gateways' uplinks fill. See
/// `docs/site.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// `sqlite` or `postgres`.
    pub backend: Option<String>,
    /// The server's host name or address.
    pub host: Option<String>,
    /// Its port.
    pub port: Option<u64>,
    /// The role to log in as (one that may only read).
    pub user: Option<String>,
    /// The database (default: the user's name).
    pub dbname: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// TLS (default true).
    pub tls: Option<bool>,
    /// The CA certificates the server's must chain to.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
    /// The readings table the uplinks write.
    pub table: Option<String>,
    /// Largest message the server may send.
    pub max_message_bytes: Option<u64>,
    /// Longest a query may run, and a connection attempt may take.
    pub timeout_ms: Option<u64>,
    /// How often the newest readings are read (for latest values and live
    /// views).
    pub poll_ms: Option<u64>,
    /// Rows read by one poll, at most.
    pub max_rows_per_poll: Option<u64>,
}

/// `[[uplink]]`: history sent on to a central system. See `docs/site.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUplink {
    /// Its name (the key of its cursor).
    pub name: Option<String>,
    /// `postgres` or `mqtt`.
    pub kind: Option<String>,
    /// The server's host name or address.
    pub host: Option<String>,
    /// Its port.
    pub port: Option<u64>,
    /// The role (PostgreSQL).
    pub user: Option<String>,
    /// The database (PostgreSQL; default: the user's name).
    pub dbname: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// TLS (default true).
    pub tls: Option<bool>,
    /// The CA certificates the server's must chain to.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key.
    pub client_key: Option<PathBuf>,
    /// The readings table (PostgreSQL).
    pub table: Option<String>,
    /// `create` or `check` (PostgreSQL).
    pub schema: Option<String>,
    /// `month` or `none` (PostgreSQL).
    pub partitions: Option<String>,
    /// `on`, `remote_apply`, `remote_write`, `local` or `off` (PostgreSQL).
    pub synchronous_commit: Option<String>,
    /// Largest message the server may send.
    pub max_message_bytes: Option<u64>,
    /// Readings in one batch.
    pub batch_readings: Option<u64>,
    /// Readings not yet confirmed kept, at most.
    pub max_backlog_rows: Option<u64>,
    /// Rows sent a second, at most.
    pub max_rows_per_sec: Option<u64>,
    /// First wait after a failure.
    pub backoff_min_ms: Option<u64>,
    /// Longest wait after failures in a row.
    pub backoff_max_ms: Option<u64>,
    /// Longest a connection attempt or one batch may take.
    pub timeout_ms: Option<u64>,
    /// The client identifier (MQTT).
    pub client_id: Option<String>,
    /// A user name (MQTT).
    pub username: Option<String>,
    /// The topic template (MQTT).
    pub topic: Option<String>,
    /// `json` or `plain` (MQTT).
    pub payload: Option<String>,
    /// Publishes unacknowledged at once (MQTT).
    pub max_inflight: Option<u64>,
    /// Keep-alive in seconds (MQTT).
    pub keep_alive_secs: Option<u64>,
}

/// `[ingest]`: the HTTP write routes (InfluxDB line protocol, SenML). See
/// `docs/ingest.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// A body as sent.
    pub max_body_bytes: Option<u64>,
    /// A body once inflated (`Content-Encoding: gzip`).
    pub max_decoded_bytes: Option<u64>,
    /// Readings in one request.
    pub max_readings: Option<u64>,
    /// One line, newline excluded.
    pub max_line_bytes: Option<u64>,
    /// Lines in one request.
    pub max_lines: Option<u64>,
    /// Tags on one line.
    pub max_tags: Option<u64>,
    /// Fields on one line.
    pub max_fields: Option<u64>,
    /// A measurement, tag key or field key.
    pub max_key_bytes: Option<u64>,
    /// A tag value or string field value.
    pub max_value_bytes: Option<u64>,
    /// Records in one SenML pack.
    pub max_senml_records: Option<u64>,
    /// `[[ingest.template]]`: sensor names for line-protocol points.
    pub template: Option<Vec<RawTemplate>>,
}

/// `[[ingest.template]]`: names the readings of the points it matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// The measurement: exact, `prefix*` or `*`.
    pub measurement: String,
    /// The sensor-name template: `{measurement}`, `{field}`, `{<tag key>}`.
    pub sensor: String,
}

/// `[mqtt]`: the MQTT listener. See `docs/mqtt.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Whether the MQTT listener runs.
    pub enabled: Option<bool>,
    /// Address to listen on.
    pub listen: Option<String>,
    /// TLS with the daemon's certificate (default true).
    pub tls: Option<bool>,
    /// Largest packet after CONNECT.
    pub max_packet_bytes: Option<u64>,
    /// Largest CONNECT (the only packet accepted before authentication).
    pub max_connect_bytes: Option<u64>,
    /// Longest client identifier.
    pub max_client_id_bytes: Option<u64>,
    /// Longest user name.
    pub max_username_bytes: Option<u64>,
    /// Longest password (the token).
    pub max_password_bytes: Option<u64>,
    /// Longest topic name or filter.
    pub max_topic_bytes: Option<u64>,
    /// Properties in one packet (MQTT 5).
    pub max_properties: Option<u64>,
    /// User properties in one packet (MQTT 5).
    pub max_user_properties: Option<u64>,
    /// Longest property string or binary value.
    pub max_property_bytes: Option<u64>,
    /// Filters in one SUBSCRIBE or UNSUBSCRIBE.
    pub max_filters: Option<u64>,
    /// QoS 1 publishes a client may have unacknowledged.
    pub receive_maximum: Option<u64>,
    /// Latest readings sent, retained, for one SUBSCRIBE.
    pub max_retained_per_subscribe: Option<u64>,
    /// Subscribers' payloads unless they ask otherwise: `plain` or `json`.
    pub payload: Option<String>,
    /// Readings one published message may carry (JSON rules).
    pub max_readings_per_message: Option<u64>,
    /// `[[mqtt.rule]]`: mapping rules, first match wins.
    pub rule: Option<Vec<RawMqttRule>>,
}

/// One `[[mqtt.rule]]`: a preset, or a filter, a payload and a template
/// (a preset's values may be overridden one by one).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttRule {
    /// `tasmota`, `esphome`, `shelly`, `shelly-gen2` or `zigbee2mqtt`.
    pub preset: Option<String>,
    /// The topic filter (`+` and `#`).
    pub filter: Option<String>,
    /// `number` or `json`.
    pub payload: Option<String>,
    /// The sensor-name template: `{N}` a topic level, `{field}` a JSON path.
    pub sensor: Option<String>,
    /// Only these JSON paths (patterns) become readings.
    pub fields: Option<Vec<String>>,
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
