//! The MQTT uplink: each reading of a batch published at QoS 1 (MQTT 5,
//! clean start) to a topic made from a template, with at most a window of
//! publishes unacknowledged; the batch counts as delivered once the broker
//! acknowledged every one of them with a success reason code. A refused
//! publish (0x80 and above, `NotAuthorized` from a topic ACL) fails the
//! batch: it is sent again after a backoff, never counted as delivered.
//!
//! The client is our own over `sensegate_mqtt::client` (decision 38): the
//! broker's bytes are cut at each packet's fixed header under a cap, and a
//! publisher accepts only CONNACK, PUBACK, PINGRESP and DISCONNECT.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sensegate_mqtt::client::{ClientConnect, ClientDecoder, ServerPacket};
use sensegate_mqtt::{Limits, OutPublish, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::TlsClient;
use super::postgres::Gateway;
use crate::mqtt::PayloadFormat;
use crate::reading::Reading;
use crate::store::sqlite::Outgoing;

/// Publishes written to the socket before it is flushed.
const FLUSH_BYTES: usize = 64 << 10;

/// One piece of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// As written.
    Text(String),
    /// The gateway's name (`{gateway}`).
    Gateway,
    /// The gateway's id (`{gateway_id}`).
    GatewayId,
    /// The sensor's name (`{sensor}`).
    Sensor,
}

/// A topic template: `sensegate/{gateway}/{sensor}` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate(pub Vec<Piece>);

impl TopicTemplate {
    /// Parses `text`: literal text has no wildcard (`+`, `#`) and no NUL;
    /// `{sensor}` must appear.
    ///
    /// # Errors
    /// What is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else {
                    return Err("an unclosed `{`".to_owned());
                };
                pieces.push(match &after[..end] {
                    "gateway" => Piece::Gateway,
                    "gateway_id" => Piece::GatewayId,
                    "sensor" => Piece::Sensor,
                    other => return Err(format!("unknown placeholder {{{other}}}")),
                });
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let text = &rest[..end];
                if text.contains(['+', '#', '\0', '}']) {
                    return Err("text may not hold + # } or NUL".to_owned());
                }
                pieces.push(Piece::Text(text.to_owned()));
                rest = &rest[end..];
            }
        }
        if !pieces.contains(&Piece::Sensor) {
            return Err("must hold {sensor}".to_owned());
        }
        Ok(Self(pieces))
    }

    /// The topic for `sensor` of `gateway`.
    #[must_use]
    pub fn render(&self, gateway: &Gateway, sensor: &str) -> String {
        let mut t = String::with_capacity(64);
        for p in &self.0 {
            match p {
                Piece::Text(s) => t.push_str(s),
                Piece::Gateway => t.push_str(&gateway.name),
                Piece::GatewayId => t.push_str(&gateway.id),
                Piece::Sensor => t.push_str(sensor),
            }
        }
        t
    }

    /// Whether it uses the gateway's name.
    #[must_use]
    pub fn uses_gateway_name(&self) -> bool {
        self.0.contains(&Piece::Gateway)
    }
}

/// The MQTT uplink's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttUplinkConfig {
    /// The broker's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// TLS, unless turned off (`tls = false`).
    pub tls: Option<TlsClient>,
    /// The client identifier (default `sensegate-<gateway id>-<uplink>`:
    /// two uplinks to one broker must not take each other's session).
    pub client_id: Option<String>,
    /// A user name, if any.
    pub username: Option<String>,
    /// A file holding the password (read at each connection), if any.
    pub password_file: Option<PathBuf>,
    /// Where each reading goes.
    pub topic: TopicTemplate,
    /// How it is written.
    pub payload: PayloadFormat,
    /// Publishes unacknowledged at once, at most (and at most what the
    /// broker's receive maximum allows).
    pub max_inflight: u16,
    /// Keep-alive told to the broker.
    pub keep_alive: Duration,
    /// Largest packet the broker may send.
    pub max_packet_bytes: u32,
}

/// Why the connection or a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The network or TLS.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up from the configured files.
    #[error("tls: {0}")]
    Tls(String),
    /// The broker broke the protocol.
    #[error("mqtt: the broker sent {0}")]
    Protocol(#[from] sensegate_mqtt::DecodeError),
    /// The broker refused the connection.
    #[error("mqtt: connection refused, reason {reason:#04x}{}", text.as_deref().map(|t| format!(" ({t:?})")).unwrap_or_default())]
    Refused {
        /// The CONNACK reason code.
        reason: u8,
        /// The broker's reason string.
        text: Option<String>,
    },
    /// The broker refused a publish (a topic ACL: `0x87`).
    #[error("mqtt: a publish to {topic:?} was refused, reason {reason:#04x}")]
    PublishRefused {
        /// The topic.
        topic: String,
        /// The PUBACK reason code.
        reason: u8,
    },
    /// A publish is larger than the broker takes.
    #[error("mqtt: a publish to {topic:?} is over the broker's maximum packet size of {max}")]
    TooLargeForBroker {
        /// The topic.
        topic: String,
        /// The broker's maximum.
        max: usize,
    },
    /// The broker ended the connection.
    #[error("mqtt: the broker disconnected, reason {0:#04x}")]
    Disconnected(u8),
    /// The broker closed the connection.
    #[error("mqtt: the broker closed the connection")]
    Closed,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection to the broker.
pub struct MqttLink {
    stream: Pin<Box<dyn Stream>>,
    decoder: ClientDecoder,
    input: BytesMut,
    output: BytesMut,
    window: usize,
    next_id: u16,
    keep_alive: Duration,
    last_sent: Instant,
    /// The largest packet the broker takes.
    max_publish: usize,
    /// A PINGREQ is out, its PINGRESP not yet in.
    ping_out: bool,
    topic: TopicTemplate,
    payload: PayloadFormat,
    gateway: Gateway,
    /// Topics by sensor, rendered once.
    topics: std::collections::HashMap<String, String>,
}

impl std::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLink")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl MqttLink {
    /// Connects, sends CONNECT and reads the CONNACK.
    ///
    /// # Errors
    /// [`MqttError`].
    pub async fn connect(
        c: &MqttUplinkConfig,
        gateway: &Gateway,
        uplink: &str,
    ) -> Result<Self, MqttError> {
        let password = c
            .password_file
            .as_deref()
            .map(super::read_password)
            .transpose()?;
        let tcp = TcpStream::connect((c.host.as_str(), c.port)).await?;
        tcp.set_nodelay(true)?;
        let stream: Pin<Box<dyn Stream>> = match &c.tls {
            Some(t) => {
                let mut config = super::client_tls(t).map_err(MqttError::Tls)?;
                config.alpn_protocols = vec![b"mqtt".to_vec()];
                let name = rustls::pki_types::ServerName::try_from(c.host.clone())
                    .map_err(|e| MqttError::Tls(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await?;
                Box::pin(tls)
            }
            None => Box::pin(tcp),
        };
        let client_id = c
            .client_id
            .clone()
            .unwrap_or_else(|| format!("sensegate-{}-{uplink}", gateway.id));
        let mut link = Self {
            stream,
            decoder: ClientDecoder::new(Limits {
                max_packet_bytes: usize::try_from(c.max_packet_bytes).unwrap_or(usize::MAX),
                ..Limits::DEFAULT
            }),
            input: BytesMut::with_capacity(4096),
            output: BytesMut::with_capacity(4096),
            window: usize::from(c.max_inflight),
            next_id: 0,
            keep_alive: c.keep_alive,
            last_sent: Instant::now(),
            max_publish: usize::MAX,
            ping_out: false,
            topic: c.topic.clone(),
            payload: c.payload,
            gateway: gateway.clone(),
            topics: std::collections::HashMap::new(),
        };
        ClientConnect {
            client_id: &client_id,
            keep_alive_secs: u16::try_from(c.keep_alive.as_secs()).unwrap_or(u16::MAX),
            username: c.username.as_deref(),
            password: password.as_deref().map(str::as_bytes),
            max_packet_bytes: c.max_packet_bytes,
        }
        .encode(&mut link.output);
        link.flush().await?;
        match link.read_packet().await? {
            ServerPacket::ConnAck(ack) if ack.reason == 0 => {
                if ack.maximum_qos < 1 {
                    return Err(MqttError::Refused {
                        reason: 0x9B,
                        text: Some("the broker offers QoS 0 only".to_owned()),
                    });
                }
                link.window = link.window.min(usize::from(ack.receive_maximum)).max(1);
                // MQTT 5: the broker's keep-alive, when it names one, is
                // the one to keep (0: none).
                if let Some(k) = ack.server_keep_alive.filter(|k| *k > 0) {
                    link.keep_alive = Duration::from_secs(u64::from(k));
                }
                link.max_publish = ack
                    .maximum_packet_size
                    .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
                Ok(link)
            }
            ServerPacket::ConnAck(ack) => Err(MqttError::Refused {
                reason: ack.reason,
                text: ack.reason_string,
            }),
            ServerPacket::Disconnect { reason } => Err(MqttError::Disconnected(reason)),
            _ => Err(MqttError::Closed),
        }
    }

    async fn flush(&mut self) -> Result<(), MqttError> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.output.clear();
            self.stream.flush().await?;
            self.last_sent = Instant::now();
        }
        Ok(())
    }

    /// Reads until one packet is whole. The buffer grows only with bytes
    /// received, and never past the decoder's cap.
    async fn read_packet(&mut self) -> Result<ServerPacket, MqttError> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.input)? {
                return Ok(p);
            }
            if self.input.capacity() - self.input.len() < 1024 {
                self.input.reserve(4096);
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(MqttError::Closed);
            }
        }
    }

    /// Takes one acknowledgement off the window, reading for it, then
    /// every other one already in the buffer (so the window refills in one
    /// write, not one write a message).
    async fn await_ack(&mut self, inflight: &mut VecDeque<(u16, usize)>) -> Result<(), MqttError> {
        let first = self.read_packet().await?;
        self.on_packet(&first, inflight)?;
        while let Some(p) = self.decoder.decode(&mut self.input)? {
            self.on_packet(&p, inflight)?;
        }
        Ok(())
    }

    fn on_packet(
        &mut self,
        packet: &ServerPacket,
        inflight: &mut VecDeque<(u16, usize)>,
    ) -> Result<(), MqttError> {
        match *packet {
            ServerPacket::PubAck { packet_id, reason } => {
                let Some(at) = inflight.iter().position(|(id, _)| *id == packet_id) else {
                    return Err(MqttError::Protocol(
                        sensegate_mqtt::DecodeError::Forbidden { field: "packet_id" },
                    ));
                };
                let (_, _) = inflight.remove(at).unwrap_or_default();
                match reason {
                    // Accepted; 0x10: accepted, no one subscribed (live
                    // distribution: the broker's part is done).
                    0x00 | 0x10 => Ok(()),
                    0x80.. => Err(MqttError::PublishRefused {
                        topic: String::new(),
                        reason,
                    }),
                    // No other code is a PUBACK's.
                    _ => Err(MqttError::Protocol(
                        sensegate_mqtt::DecodeError::Malformed {
                            field: "puback_reason",
                        },
                    )),
                }
            }
            ServerPacket::PingResp => {
                self.ping_out = false;
                Ok(())
            }
            ServerPacket::Disconnect { reason } => Err(MqttError::Disconnected(reason)),
            ServerPacket::ConnAck(_) => Err(MqttError::Protocol(
                sensegate_mqtt::DecodeError::Unexpected { kind: 2 },
            )),
        }
    }

    fn packet_id(&mut self) -> u16 {
        self.next_id = if self.next_id == u16::MAX {
            1
        } else {
            self.next_id + 1
        };
        self.next_id
    }

    /// Publishes every reading of `batch`; returns once the broker
    /// acknowledged all of them.
    ///
    /// # Errors
    /// [`MqttError`]; then the batch is not delivered.
    pub async fn send(&mut self, batch: &[Outgoing]) -> Result<(), MqttError> {
        let mut inflight: VecDeque<(u16, usize)> = VecDeque::with_capacity(self.window);
        let mut payload = Vec::with_capacity(96);
        for (index, chunk) in batch.iter().enumerate() {
            if !self.topics.contains_key(&chunk.sensor) {
                if self.topics.len() >= 100_000 {
                    self.topics.clear();
                }
                let t = self.topic.render(&self.gateway, &chunk.sensor);
                self.topics.insert(chunk.sensor.clone(), t);
            }
            let sensor: Arc<str> = Arc::from(chunk.sensor.as_str());
            let topic = self.topics.get(&chunk.sensor).cloned().unwrap_or_default();
            for r in &chunk.rows {
                while inflight.len() >= self.window {
                    // Each acknowledgement frees a slot at once. A PINGREQ
                    // rides along (one at a time): while we wait with
                    // nothing new to send, the broker's PUBACKs would sit
                    // behind its Nagle until our delayed ACK (measured: 40
                    // ms stalls, 60,000 publishes/s; 140,000 with it).
                    if !self.ping_out {
                        self.ping();
                    }
                    self.wait_ack(batch, &mut inflight).await?;
                }
                payload.clear();
                let reading = Reading {
                    sensor: sensor.clone(),
                    timestamp_us: r.timestamp_us,
                    value: r.value,
                    quality: r.quality,
                };
                crate::mqtt::topics::write_payload(&reading, self.payload, &mut payload);
                let id = self.packet_id();
                let publish = OutPublish {
                    topic: &topic,
                    qos: 1,
                    retain: false,
                    packet_id: Some(id),
                    payload: &payload,
                };
                if publish.encoded_len(ProtocolVersion::V5) > self.max_publish {
                    return Err(MqttError::TooLargeForBroker {
                        topic: topic.clone(),
                        max: self.max_publish,
                    });
                }
                publish.encode(ProtocolVersion::V5, &mut self.output);
                inflight.push_back((id, index));
                if self.output.len() >= FLUSH_BYTES {
                    self.flush().await?;
                }
            }
        }
        self.flush().await?;
        while !inflight.is_empty() {
            // Nothing left to publish: a PINGREQ before each wait makes our
            // side send, so our TCP acknowledges at once and the broker's
            // last PUBACKs are not held behind its Nagle and our delayed
            // ACK (measured: 42 ms a batch without it, under 1 ms with).
            // At most one a read; the PINGRESPs are taken as they come.
            self.ping();
            self.wait_ack(batch, &mut inflight).await?;
        }
        Ok(())
    }

    /// Queues a PINGREQ.
    fn ping(&mut self) {
        sensegate_mqtt::client::encode_pingreq(&mut self.output);
        self.ping_out = true;
    }

    /// Flushes, then takes acknowledgements off the window (a refusal
    /// names its topic).
    async fn wait_ack(
        &mut self,
        batch: &[Outgoing],
        inflight: &mut VecDeque<(u16, usize)>,
    ) -> Result<(), MqttError> {
        self.flush().await?;
        let r = self.await_ack(inflight).await;
        r.map_err(|e| self.with_topic(e, batch, inflight))
    }

    /// Names the topic of a refused publish (the oldest still in flight
    /// is as close as the window allows).
    fn with_topic(
        &self,
        e: MqttError,
        batch: &[Outgoing],
        inflight: &VecDeque<(u16, usize)>,
    ) -> MqttError {
        match e {
            MqttError::PublishRefused { reason, .. } => {
                let sensor = inflight
                    .front()
                    .and_then(|(_, i)| batch.get(*i))
                    .or_else(|| batch.last())
                    .map_or("", |c| c.sensor.as_str());
                MqttError::PublishRefused {
                    topic: self.topic.render(&self.gateway, sensor),
                    reason,
                }
            }
            other => other,
        }
    }

    /// While idle: a PINGREQ once half the keep-alive has passed, and its
    /// PINGRESP (so a broker that went away is noticed).
    ///
    /// # Errors
    /// [`MqttError`].
    pub async fn idle(&mut self) -> Result<(), MqttError> {
        if self.last_sent.elapsed() < self.keep_alive / 2 {
            return Ok(());
        }
        if !self.ping_out {
            self.ping();
            self.flush().await?;
        }
        match self.read_packet().await? {
            ServerPacket::PingResp => {
                self.ping_out = false;
                Ok(())
            }
            ServerPacket::Disconnect { reason } => Err(MqttError::Disconnected(reason)),
            _ => Err(MqttError::Protocol(
                sensegate_mqtt::DecodeError::Unexpected { kind: 4 },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates_render_and_refuse_wildcards() {
        let g = Gateway {
            id: "0b7e4a5c-1d2f-4e3a-9b8c-7d6e5f4a3b2c".to_owned(),
            name: "hall-3".to_owned(),
        };
        let t = TopicTemplate::parse("sensegate/{gateway}/{sensor}").unwrap();
        assert_eq!(t.render(&g, "sim/t"), "sensegate/hall-3/sim/t");
        let t = TopicTemplate::parse("site/{gateway_id}/{sensor}/v").unwrap();
        assert_eq!(
            t.render(&g, "x"),
            "site/0b7e4a5c-1d2f-4e3a-9b8c-7d6e5f4a3b2c/x/v"
        );
        for bad in [
            "a/+/{sensor}",
            "#/{sensor}",
            "a/{gateway}",
            "{sensor",
            "{x}/{sensor}",
            "a}{sensor}",
        ] {
            assert!(TopicTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
