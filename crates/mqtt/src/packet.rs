//! The packets: what a client sends, parsed from a body that has arrived
//! whole, and what a broker sends back, encoded.
//!
//! Every string, binary field, property list and count is bounded by
//! [`Limits`]; a property given twice (other than user properties), a
//! property the packet does not allow, or a reserved bit set is refused,
//! as the specification asks.

use bytes::{BufMut as _, BytesMut};

use crate::error::{DecodeError, ReasonCode};
use crate::limits::Limits;
use crate::props::{USER_PROPERTY, properties, user_property};
use crate::pubsub::{self, PubAck, Publish, Subscribe, Unsubscribe};
pub use crate::version::ProtocolVersion;
use crate::wire::{Reader, put_varint, varint_len};

/// Packet type numbers (the high nibble of the first byte).
pub const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// A packet a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Connect),
    /// PUBLISH (QoS 0 or 1).
    Publish(Publish),
    /// PUBACK (the client acknowledging a QoS 1 delivery).
    PubAck(PubAck),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// PINGREQ.
    PingReq,
    /// DISCONNECT (MQTT 5: with its reason code).
    Disconnect(Disconnect),
}

/// A CONNECT. Its `Debug` leaves the password out (it is a token).
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// 3.1.1 or 5.
    pub version: ProtocolVersion,
    /// Clean session (3.1.1) or clean start (5).
    pub clean_start: bool,
    /// Keep alive, seconds (0: none).
    pub keep_alive: u16,
    /// The client identifier (may be empty: the server assigns one).
    pub client_id: String,
    /// The user name, when given.
    pub username: Option<String>,
    /// The password, when given.
    pub password: Option<Vec<u8>>,
    /// Whether a will message was given (it is parsed and bounded, never
    /// kept).
    pub will: bool,
    /// MQTT 5: the client's receive maximum.
    pub receive_maximum: Option<u16>,
    /// MQTT 5: the largest packet the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// MQTT 5: the session expiry it asked for, seconds.
    pub session_expiry: Option<u32>,
    /// MQTT 5: its user properties.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5: an authentication method (enhanced authentication, which
    /// this side does not offer).
    pub authentication_method: Option<String>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("version", &self.version)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| format!("<{} bytes>", p.len())),
            )
            .field("will", &self.will)
            .field("receive_maximum", &self.receive_maximum)
            .field("maximum_packet_size", &self.maximum_packet_size)
            .field("session_expiry", &self.session_expiry)
            .field("user_properties", &self.user_properties)
            .field("authentication_method", &self.authentication_method)
            .finish()
    }
}

/// A DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5: its reason code byte (0 for 3.1.1, and when absent).
    pub reason: u8,
}

/// Parses one whole packet: `first` is its first byte, `body` what follows
/// the remaining length. `version` is the connection's, once it has one.
pub(crate) fn parse(
    first: u8,
    body: &bytes::Bytes,
    version: Option<ProtocolVersion>,
    limits: &Limits,
) -> Result<Packet, DecodeError> {
    let (kind, flags) = (first >> 4, first & 0x0F);
    let Some(version) = version else {
        // Only a CONNECT reaches here before one was accepted (the decoder
        // checks the type from the first byte).
        return connect(flags, body, limits).map(Packet::Connect);
    };
    // A second CONNECT falls to the last arm: a protocol error.
    match kind {
        pubsub::PUBLISH => pubsub::publish(flags, body, version, limits).map(Packet::Publish),
        pubsub::PUBACK => {
            no_flags(kind, flags)?;
            pubsub::puback(body, version, limits).map(Packet::PubAck)
        }
        pubsub::SUBSCRIBE => {
            flags_are(kind, flags, 0b0010)?;
            pubsub::subscribe(body, version, limits).map(Packet::Subscribe)
        }
        pubsub::UNSUBSCRIBE => {
            flags_are(kind, flags, 0b0010)?;
            pubsub::unsubscribe(body, version, limits).map(Packet::Unsubscribe)
        }
        PINGREQ => {
            no_flags(kind, flags)?;
            if body.is_empty() {
                Ok(Packet::PingReq)
            } else {
                Err(DecodeError::Truncated { field: "pingreq" })
            }
        }
        DISCONNECT => {
            no_flags(kind, flags)?;
            disconnect(body, version, limits).map(Packet::Disconnect)
        }
        _ => Err(DecodeError::Unexpected { kind }),
    }
}

const fn no_flags(kind: u8, flags: u8) -> Result<(), DecodeError> {
    flags_are(kind, flags, 0)
}

const fn flags_are(kind: u8, flags: u8, want: u8) -> Result<(), DecodeError> {
    if flags == want {
        Ok(())
    } else {
        Err(DecodeError::BadFlags { kind, flags })
    }
}

/// The version a CONNECT body asks for, read from its protocol name and
/// level alone (so a refused CONNECT can be answered in its version). MQTT
/// 3.1 (`MQIsdp`, level 3) and unknown levels of `MQTT` are answered in the
/// 3.1.1 form, whose return code 1 ("unacceptable protocol version") those
/// clients read [MQTT-3.1.2-2]; anything else gets no answer.
pub(crate) fn asked_version(body: &[u8]) -> Option<ProtocolVersion> {
    let mut r = Reader::new(body);
    match (
        r.string("connect.protocol_name", 6).ok()?,
        r.u8("connect.protocol_level").ok()?,
    ) {
        ("MQTT", 5) => Some(ProtocolVersion::V5),
        ("MQTT", _) | ("MQIsdp", 3) => Some(ProtocolVersion::V311),
        _ => None,
    }
}

fn connect(flags: u8, body: &[u8], limits: &Limits) -> Result<Connect, DecodeError> {
    no_flags(CONNECT, flags)?;
    let mut r = Reader::new(body);
    let name = r.string("connect.protocol_name", 6)?;
    let level = r.u8("connect.protocol_level")?;
    let version = match (name, level) {
        ("MQTT", 4) => ProtocolVersion::V311,
        ("MQTT", 5) => ProtocolVersion::V5,
        _ => return Err(DecodeError::UnsupportedProtocol),
    };
    let connect_flags = r.u8("connect.flags")?;
    if connect_flags & 0x01 != 0 {
        return Err(DecodeError::Malformed {
            field: "connect.flags",
        });
    }
    let has_username = connect_flags & 0x80 != 0;
    let has_password = connect_flags & 0x40 != 0;
    let will_retain = connect_flags & 0x20 != 0;
    let will_qos = (connect_flags >> 3) & 0x03;
    let will = connect_flags & 0x04 != 0;
    let clean_start = connect_flags & 0x02 != 0;
    let bad_will = will_qos == 3 || (!will && (will_qos != 0 || will_retain));
    // 3.1.1 allows no password without a user name.
    let bad_password = version == ProtocolVersion::V311 && has_password && !has_username;
    if bad_will || bad_password {
        return Err(DecodeError::Malformed {
            field: "connect.flags",
        });
    }
    // Its CONNACK offers QoS 1 at most; the will is never kept, but one
    // asking for more than is offered is refused [MQTT-3.2.2-12].
    if will_qos == 2 {
        return Err(DecodeError::QosNotSupported);
    }
    let keep_alive = r.u16("connect.keep_alive")?;
    let mut c = Connect {
        version,
        clean_start,
        keep_alive,
        client_id: String::new(),
        username: None,
        password: None,
        will,
        receive_maximum: None,
        maximum_packet_size: None,
        session_expiry: None,
        user_properties: Vec::new(),
        authentication_method: None,
    };
    if version == ProtocolVersion::V5 {
        connect_properties(&mut r, limits, &mut c)?;
    }
    c.client_id = match r.string("connect.client_id", limits.max_client_id_bytes) {
        Ok(id) if !id.chars().any(char::is_control) => id.to_owned(),
        Ok(_) | Err(DecodeError::FieldTooLong { .. }) => return Err(DecodeError::BadClientId),
        Err(e) => return Err(e),
    };
    // 3.1.1: an empty identifier needs a clean session [MQTT-3.1.3-8].
    if version == ProtocolVersion::V311 && c.client_id.is_empty() && !clean_start {
        return Err(DecodeError::BadClientId);
    }
    if will {
        if version == ProtocolVersion::V5 {
            will_properties(&mut r, limits)?;
        }
        let topic = r.string("connect.will_topic", limits.max_topic_bytes)?;
        if !crate::pubsub::is_topic_name(topic) {
            return Err(DecodeError::BadTopic {
                field: "connect.will_topic",
            });
        }
        // The will payload is bounded by the packet cap; it is not kept.
        r.binary("connect.will_payload", usize::from(u16::MAX))?;
    }
    if has_username {
        // Free text that is logged: no control characters.
        let name = r.string("connect.username", limits.max_username_bytes)?;
        if name.chars().any(char::is_control) {
            return Err(DecodeError::BadString {
                field: "connect.username",
            });
        }
        c.username = Some(name.to_owned());
    }
    if has_password {
        c.password = Some(
            r.binary("connect.password", limits.max_password_bytes)?
                .to_vec(),
        );
    }
    if !r.is_empty() {
        return Err(DecodeError::Truncated { field: "connect" });
    }
    Ok(c)
}

fn connect_properties(
    r: &mut Reader<'_>,
    limits: &Limits,
    c: &mut Connect,
) -> Result<(), DecodeError> {
    let mut users = Vec::new();
    let mut auth_data = false;
    properties(r, "connect.properties", limits, |id, p| {
        match id {
            0x11 => c.session_expiry = Some(p.u32("session_expiry")?),
            0x21 => {
                let v = p.u16("receive_maximum")?;
                if v == 0 {
                    return Err(DecodeError::Forbidden {
                        field: "receive_maximum",
                    });
                }
                c.receive_maximum = Some(v);
            }
            0x27 => {
                let v = p.u32("maximum_packet_size")?;
                if v == 0 {
                    return Err(DecodeError::Forbidden {
                        field: "maximum_packet_size",
                    });
                }
                c.maximum_packet_size = Some(v);
            }
            0x22 => {
                p.u16("topic_alias_maximum")?;
            }
            0x19 | 0x17 => {
                if p.u8("request_information")? > 1 {
                    return Err(DecodeError::Forbidden {
                        field: "request_information",
                    });
                }
            }
            USER_PROPERTY => user_property(p, limits, &mut users)?,
            0x15 => {
                c.authentication_method = Some(
                    p.string("authentication_method", limits.max_property_bytes)?
                        .to_owned(),
                );
            }
            0x16 => {
                p.binary("authentication_data", limits.max_property_bytes)?;
                auth_data = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    // Authentication data without a method is a protocol error.
    if auth_data && c.authentication_method.is_none() {
        return Err(DecodeError::Forbidden {
            field: "authentication_data",
        });
    }
    c.user_properties = users;
    Ok(())
}

/// A will's properties: read and bounded, never kept (no will is kept).
fn will_properties(r: &mut Reader<'_>, limits: &Limits) -> Result<(), DecodeError> {
    let mut users = Vec::new();
    properties(r, "connect.will_properties", limits, |id, p| {
        match id {
            0x18 | 0x02 => {
                p.u32("will_interval")?;
            }
            0x01 => {
                if p.u8("payload_format")? > 1 {
                    return Err(DecodeError::Forbidden {
                        field: "payload_format",
                    });
                }
            }
            0x03 => {
                p.string("content_type", limits.max_property_bytes)?;
            }
            0x08 => {
                p.string("response_topic", limits.max_topic_bytes)?;
            }
            0x09 => {
                p.binary("correlation_data", limits.max_property_bytes)?;
            }
            USER_PROPERTY => user_property(p, limits, &mut users)?,
            _ => return Ok(false),
        }
        Ok(true)
    })
}

fn disconnect(
    body: &[u8],
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Disconnect, DecodeError> {
    let mut r = Reader::new(body);
    if version == ProtocolVersion::V311 || r.is_empty() {
        return if r.is_empty() {
            Ok(Disconnect { reason: 0 })
        } else {
            Err(DecodeError::Truncated {
                field: "disconnect",
            })
        };
    }
    let reason = r.u8("disconnect.reason")?;
    if !r.is_empty() {
        let mut users = Vec::new();
        properties(&mut r, "disconnect.properties", limits, |id, p| {
            match id {
                0x11 => {
                    p.u32("session_expiry")?;
                }
                0x1F => {
                    p.string("reason_string", limits.max_property_bytes)?;
                }
                0x1C => {
                    p.string("server_reference", limits.max_property_bytes)?;
                }
                USER_PROPERTY => user_property(p, limits, &mut users)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }
    if !r.is_empty() {
        return Err(DecodeError::Truncated {
            field: "disconnect",
        });
    }
    Ok(Disconnect { reason })
}

/// A CONNACK, as this broker sends it: never a present session (clean
/// sessions only, so MQTT 5's session expiry is always answered 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// The connection's version.
    pub version: ProtocolVersion,
    /// Accepted, or why not (3.1.1: mapped to its return code).
    pub reason: ReasonCode,
    /// MQTT 5: how many QoS 1 publishes the client may have unacknowledged.
    pub receive_maximum: u16,
    /// MQTT 5: the largest packet this side accepts.
    pub maximum_packet_size: u32,
    /// MQTT 5: the identifier assigned to a client that sent an empty one
    /// [MQTT-3.2.2-16].
    pub assigned_client_id: Option<String>,
    /// MQTT 5: the keep alive the client must use instead of its own
    /// (Server Keep Alive, 0x13).
    pub server_keep_alive: Option<u16>,
}

impl ConnAck {
    /// Appends the encoded packet to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self.version {
            ProtocolVersion::V311 => {
                // A malformed CONNECT gets no CONNACK in 3.1.1 (the caller
                // closes); any other refusal is sent as its return code.
                let code = self.reason.connack_v3().unwrap_or(3);
                out.put_slice(&[CONNACK << 4, 2, 0, code]);
            }
            ProtocolVersion::V5 => {
                let mut props = BytesMut::new();
                if self.reason == ReasonCode::Success {
                    props.put_u8(0x11); // session expiry: 0, clean sessions only
                    props.put_u32(0);
                    props.put_u8(0x21); // receive maximum (at least 1)
                    props.put_u16(self.receive_maximum.max(1));
                    props.put_u8(0x27); // maximum packet size (at least 1)
                    props.put_u32(self.maximum_packet_size.max(1));
                    props.put_u8(0x24); // maximum QoS: 1
                    props.put_u8(1);
                    props.put_u8(0x2A); // shared subscriptions: no
                    props.put_u8(0);
                    props.put_u8(0x22); // topic alias maximum: 0
                    props.put_u16(0);
                    if let Some(ka) = self.server_keep_alive {
                        props.put_u8(0x13); // server keep alive
                        props.put_u16(ka);
                    }
                    props.put_u8(0x29); // subscription identifiers: no
                    props.put_u8(0);
                    if let Some(id) = &self.assigned_client_id {
                        props.put_u8(0x12); // assigned client identifier
                        props.put_u16(u16::try_from(id.len()).unwrap_or(u16::MAX));
                        props.put_slice(id.as_bytes());
                    }
                }
                let remaining = 2 + varint_len(props.len()) + props.len();
                out.put_u8(CONNACK << 4);
                put_varint(out, remaining);
                out.put_u8(0); // no session present
                out.put_u8(self.reason.byte());
                put_varint(out, props.len());
                out.put_slice(&props);
            }
        }
    }
}

/// Appends a PINGRESP.
pub fn encode_pingresp(out: &mut BytesMut) {
    out.put_slice(&[PINGRESP << 4, 0]);
}

/// Appends an MQTT 5 DISCONNECT with `reason` (a 3.1.1 server sends none:
/// it closes the connection).
pub fn encode_disconnect_v5(reason: ReasonCode, out: &mut BytesMut) {
    out.put_slice(&[DISCONNECT << 4, 2, reason.byte(), 0]);
}
