//! The MQTT front end: devices publish readings and readers subscribe to
//! them over MQTT 3.1.1 or 5.0, with the same tokens, policy, caps, store
//! and hub as the native protocol. The packet codec is `sensegate_mqtt`
//! (sans-IO, fuzzed); this module is the adapter around it.
//!
//! - [`topics`]: the default mapping (`sensors/<name>`): how a published
//!   topic and payload become a reading, how a subscription filter becomes
//!   a sensor pattern, and a reading a topic and payload again.
//! - [`rules`]: configured mapping rules and presets for the topics and
//!   payloads devices really send (Tasmota, ESPHome, Shelly, Zigbee2MQTT).
//! - [`session`]: one MQTT session as a state machine without I/O: a
//!   decoded packet in, the service called, the packets to send out (a
//!   publish batch is handed back to be committed).
//! - [`connection`]: the per-connection loop: read, decode, call the
//!   session, commit publishes before acknowledging them, write, deliver
//!   the hub's readings, keep the timers.
//! - [`listener`]: accepts, admits through the shared connection registry
//!   (the same total and per-address caps as the other front ends), runs
//!   the TLS handshake under the hello deadline and spawns a connection.
//! - [`MqttConfig`]: this front end's validated `[mqtt]` section.
//!
//! What a client sees of the broker's choices (clean sessions only, no
//! will kept, QoS 2 refused, subscriptions granted QoS 0) is documented in
//! `docs/mqtt.md`, with the reason code for each refusal.

pub mod connection;
pub mod listener;
pub mod rules;
pub mod session;
pub mod topics;

use std::net::SocketAddr;

pub use topics::PayloadFormat;

/// Default port: MQTT over TLS (IANA's 8883).
pub const DEFAULT_MQTT_PORT: u16 = 8883;

/// The MQTT listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// Whether it listens.
    pub enabled: bool,
    /// Where.
    pub listen: SocketAddr,
    /// TLS with the daemon's certificate (the default); plain TCP only when
    /// turned off, with a warning for an address others can reach.
    pub tls: bool,
    /// The codec's caps: packet sizes (before and after CONNECT), field
    /// lengths, properties, filters per packet.
    pub codec: sensegate_mqtt::Limits,
    /// QoS 1 publishes a client may have unacknowledged (MQTT 5's receive
    /// maximum, told in the CONNACK); also the most publishes committed
    /// in one batch.
    pub receive_maximum: u16,
    /// Latest readings sent, retained, for one SUBSCRIBE.
    pub max_retained_per_subscribe: usize,
    /// What a subscriber's payloads look like unless it asks otherwise.
    pub payload: PayloadFormat,
    /// How published messages become readings: the configured rules, then
    /// the default mapping.
    pub mapper: rules::Mapper,
}

impl MqttConfig {
    /// The defaults: off, TLS on, on loopback.
    pub const DEFAULT: Self = Self {
        enabled: false,
        listen: SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            DEFAULT_MQTT_PORT,
        ),
        tls: true,
        codec: sensegate_mqtt::Limits::DEFAULT,
        receive_maximum: 32,
        max_retained_per_subscribe: 256,
        payload: PayloadFormat::Plain,
        mapper: rules::Mapper {
            rules: Vec::new(),
            max_readings: 32,
        },
    };
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}
