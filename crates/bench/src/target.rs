//! The two kinds of server the tool drives: sensegate through the client
//! crate (native protocol), and an MQTT broker through [`crate::mqtt`].
//! Both carry the same bytes per reading: an MQTT publish's topic is the
//! sensor name and its payload is padded to the rest of the protobuf
//! `Reading` sensegate sends.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use prost::Message as _;
use sensegate_client::pin::TlsOptions;
use sensegate_client::{Client, ConnectOptions, Secret, wire as v1};

use crate::mqtt::{Mqtt, publish_packet};
use crate::net;
use crate::pipelined::Pipelined;

/// The sensor (and MQTT topic) the fan-out scenario uses.
pub const FANOUT_SENSOR: &str = "bench/fanout";

/// Where a scenario connects.
#[derive(Clone)]
pub enum Target {
    /// sensegate's native protocol, with a token that may push and
    /// subscribe (an admin's, or a device's for ingest).
    Sensegate {
        /// Listener address.
        addr: SocketAddr,
        /// The token.
        token: Secret,
        /// TLS, when on.
        tls: Option<TlsOptions>,
    },
    /// An MQTT 3.1.1 broker, or sensegate's MQTT listener.
    Mqtt {
        /// Listener address.
        addr: SocketAddr,
        /// TLS, when on.
        tls: Option<TlsOptions>,
        /// The CONNECT password (sensegate: a token); anonymous without.
        login: Option<Secret>,
        /// Publish `{"value":..,"ts_us":..}` to `sensors/bench/fanout` (what
        /// sensegate's listener maps to a reading, and relays as JSON with
        /// `mqtt.payload = "json"`) instead of a binary payload to
        /// `bench/fanout`. Both sides of an MQTT-to-MQTT comparison use it.
        json: bool,
    },
}

impl Target {
    /// `sensegate` or `mqtt`, for tables.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Sensegate { .. } => "sensegate",
            Self::Mqtt { .. } => "mqtt",
        }
    }

    /// Whether TLS is on.
    #[must_use]
    pub const fn tls(&self) -> bool {
        match self {
            Self::Sensegate { tls, .. } | Self::Mqtt { tls, .. } => tls.is_some(),
        }
    }

    fn sg_options(
        addr: SocketAddr,
        token: &Secret,
        tls: Option<&TlsOptions>,
        from: Option<IpAddr>,
        name: &str,
    ) -> ConnectOptions {
        let mut o = ConnectOptions::plain(addr.to_string(), token.clone());
        o.tls = tls.cloned();
        o.local_ip = from;
        name.clone_into(&mut o.client_name);
        o.timeout = Duration::from_secs(30);
        o
    }

    /// A connection that only holds its place: authenticated (sensegate)
    /// or connected (MQTT).
    ///
    /// # Errors
    /// Connecting failed.
    pub async fn idle(&self, i: usize) -> Result<Idle> {
        let from = Some(net::source_ip(i));
        match self {
            Self::Sensegate { addr, token, tls } => {
                let o = Self::sg_options(*addr, token, tls.as_ref(), from, "bench-idle");
                Ok(Idle::Sensegate(Box::new(Client::connect(&o).await?)))
            }
            Self::Mqtt {
                addr, tls, login, ..
            } => {
                let id = format!("bench-idle-{i}");
                let m = Mqtt::open(*addr, from, tls.as_ref(), login.as_ref(), &id).await?;
                Ok(Idle::Mqtt(m))
            }
        }
    }

    /// The `i`-th subscriber of the fan-out sensor.
    ///
    /// # Errors
    /// Connecting or subscribing failed.
    pub async fn subscriber(&self, i: usize) -> Result<Subscriber> {
        let from = Some(net::source_ip(i));
        match self {
            Self::Sensegate { addr, token, tls } => {
                let o = Self::sg_options(*addr, token, tls.as_ref(), from, "bench-sub");
                let mut c = Client::connect(&o).await?;
                c.subscribe(&[FANOUT_SENSOR]).await?;
                Ok(Subscriber::Sensegate(Box::new(c)))
            }
            Self::Mqtt {
                addr,
                tls,
                login,
                json,
            } => {
                let id = format!("bench-sub-{i}");
                let mut m = Mqtt::open(*addr, from, tls.as_ref(), login.as_ref(), &id).await?;
                m.subscribe(&fanout_topic(*json)).await?;
                Ok(Subscriber::Mqtt(m, *json))
            }
        }
    }

    /// The publisher of the fan-out sensor.
    ///
    /// # Errors
    /// Connecting failed.
    pub async fn publisher(&self) -> Result<Publisher> {
        match self {
            Self::Sensegate { addr, token, tls } => {
                let io = net::connect(*addr, None, tls.as_ref()).await?;
                Ok(Publisher::Sensegate(
                    Pipelined::connect(io, token.expose()).await?,
                ))
            }
            Self::Mqtt {
                addr,
                tls,
                login,
                json,
            } => {
                let m = Mqtt::open(*addr, None, tls.as_ref(), login.as_ref(), "bench-pub").await?;
                Ok(Publisher::Mqtt(m, *json))
            }
        }
    }

    /// The same server with another token (sensegate; MQTT has none).
    #[must_use]
    pub fn with_token(&self, token: Secret) -> Self {
        match self {
            Self::Sensegate { addr, tls, .. } => Self::Sensegate {
                addr: *addr,
                token,
                tls: tls.clone(),
            },
            Self::Mqtt { .. } => self.clone(),
        }
    }

    /// A sensegate client with this target's token (ingest, attack).
    ///
    /// # Errors
    /// Connecting failed, or the target is not sensegate.
    pub async fn sensegate(&self, i: usize, name: &str) -> Result<Client> {
        let Self::Sensegate { addr, token, tls } = self else {
            bail!("this scenario runs against sensegate only");
        };
        let o = Self::sg_options(*addr, token, tls.as_ref(), Some(net::source_ip(i)), name);
        Client::connect(&o).await.context("connecting to sensegate")
    }
}

/// A held idle connection (held, never read: dropping it closes it).
#[expect(dead_code, reason = "the connections are only held open")]
pub enum Idle {
    /// sensegate.
    Sensegate(Box<Client>),
    /// MQTT.
    Mqtt(Mqtt),
}

/// A fan-out subscriber.
pub enum Subscriber {
    /// sensegate.
    Sensegate(Box<Client>),
    /// MQTT (with JSON payloads when true).
    Mqtt(Mqtt, bool),
}

/// The MQTT topic of the fan-out sensor.
#[must_use]
pub fn fanout_topic(json: bool) -> String {
    if json {
        format!("sensors/{FANOUT_SENSOR}")
    } else {
        FANOUT_SENSOR.to_owned()
    }
}

impl Subscriber {
    /// Waits for the next delivery and calls `each` with the timestamp of
    /// every reading in it; returns how many readings the server said it
    /// dropped for this subscriber.
    ///
    /// # Errors
    /// The connection failed or ended.
    pub async fn next(&mut self, mut each: impl FnMut(i64)) -> Result<u64> {
        match self {
            Self::Sensegate(c) => {
                let batch = c.next_batch().await?;
                for r in &batch.readings {
                    each(r.timestamp_us);
                }
                Ok(batch.dropped)
            }
            Self::Mqtt(m, json) => {
                let payload = m.next_publish().await?;
                let ts = if *json {
                    crate::mqtt::json_ts_us(&payload).context("no ts_us in the payload")?
                } else {
                    let ts: [u8; 8] = payload
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .context("short payload")?;
                    i64::from_le_bytes(ts)
                };
                each(ts);
                Ok(0)
            }
        }
    }
}

/// The fan-out publisher: one reading per write.
pub enum Publisher {
    /// sensegate: a push of one reading; acknowledgements are read
    /// alongside, not waited for.
    Sensegate(Pipelined),
    /// MQTT: a QoS 0 publish (no acknowledgement in MQTT); JSON payloads
    /// when true.
    Mqtt(Mqtt, bool),
}

/// The reading sensegate carries for the fan-out sensor.
fn reading(timestamp_us: i64) -> v1::Reading {
    v1::Reading {
        sensor: FANOUT_SENSOR.to_owned(),
        timestamp_us,
        value: 21.5,
        quality: 0,
    }
}

/// Bytes an MQTT payload carries: a sensegate reading as encoded, less its
/// sensor name, which an MQTT publish carries as its topic instead. (The
/// payload holds the timestamp and the value, padded to this size.)
#[must_use]
pub fn reading_size() -> usize {
    let mut r = reading(crate::now_us());
    r.sensor.clear();
    r.encoded_len()
}

impl Publisher {
    /// Waits until the server has answered every publish (sensegate's
    /// acknowledgements; MQTT at QoS 0 has none).
    ///
    /// # Errors
    /// A push was refused, or not acknowledged within `limit`.
    pub async fn settle(&mut self, limit: Duration) -> Result<()> {
        match self {
            Self::Sensegate(p) => p.settle(limit).await,
            Self::Mqtt(..) => Ok(()),
        }
    }

    /// Publishes one reading stamped `timestamp_us`.
    ///
    /// # Errors
    /// The server refused it or the connection failed.
    pub async fn publish(&mut self, timestamp_us: i64, payload_size: usize) -> Result<()> {
        match self {
            Self::Sensegate(p) => p.push(reading(timestamp_us)).await?,
            Self::Mqtt(m, true) => {
                let payload = format!("{{\"value\":21.5,\"ts_us\":{timestamp_us}}}");
                m.send(&publish_packet(&fanout_topic(true), payload.as_bytes()))
                    .await?;
            }
            Self::Mqtt(m, false) => {
                let mut payload = vec![0u8; payload_size.max(16)];
                payload[..8].copy_from_slice(&timestamp_us.to_le_bytes());
                payload[8..16].copy_from_slice(&21.5f64.to_le_bytes());
                m.send(&publish_packet(FANOUT_SENSOR, &payload)).await?;
            }
        }
        Ok(())
    }
}
