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

/// A CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    body: &[u8],
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
        return Err(DecodeError::Forbidden {
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
        return Err(DecodeError::Forbidden {
            field: "connect.flags",
        });
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
    c.client_id = r
        .string("connect.client_id", limits.max_client_id_bytes)?
        .to_owned();
    if will {
        if version == ProtocolVersion::V5 {
            will_properties(&mut r, limits)?;
        }
        r.string("connect.will_topic", limits.max_topic_bytes)?;
        // The will payload is bounded by the packet cap; it is not kept.
        r.binary("connect.will_payload", usize::from(u16::MAX))?;
    }
    if has_username {
        c.username = Some(
            r.string("connect.username", limits.max_username_bytes)?
                .to_owned(),
        );
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
    properties(r, "connect.properties", limits, |id, p| {
        match id {
            0x11 => c.session_expiry = Some(p.u32("session_expiry")?),
            0x21 => {
                let v = p.u16("receive_maximum")?;
                if v == 0 {
                    return Ok(false);
                }
                c.receive_maximum = Some(v);
            }
            0x27 => {
                let v = p.u32("maximum_packet_size")?;
                if v == 0 {
                    return Ok(false);
                }
                c.maximum_packet_size = Some(v);
            }
            0x22 => {
                p.u16("topic_alias_maximum")?;
            }
            0x19 | 0x17 => {
                if p.u8("request_information")? > 1 {
                    return Ok(false);
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
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
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
                    return Ok(false);
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
/// sessions only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    /// The connection's version.
    pub version: ProtocolVersion,
    /// Accepted, or why not (3.1.1: mapped to its return code).
    pub reason: ReasonCode,
    /// MQTT 5: how many QoS 1 publishes the client may have unacknowledged.
    pub receive_maximum: u16,
    /// MQTT 5: the largest packet this side accepts.
    pub maximum_packet_size: u32,
}

impl ConnAck {
    /// Appends the encoded packet to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self.version {
            ProtocolVersion::V311 => {
                out.put_slice(&[CONNACK << 4, 2, 0, self.reason.connack_v3()]);
            }
            ProtocolVersion::V5 => {
                let mut props = BytesMut::new();
                if self.reason == ReasonCode::Success {
                    props.put_u8(0x21); // receive maximum
                    props.put_u16(self.receive_maximum);
                    props.put_u8(0x27); // maximum packet size
                    props.put_u32(self.maximum_packet_size);
                    props.put_u8(0x24); // maximum QoS: 1
                    props.put_u8(1);
                    props.put_u8(0x25); // retain available: no
                    props.put_u8(0);
                    props.put_u8(0x2A); // shared subscriptions: no
                    props.put_u8(0);
                    props.put_u8(0x22); // topic alias maximum: 0
                    props.put_u16(0);
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
