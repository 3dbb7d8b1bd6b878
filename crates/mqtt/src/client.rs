//! The client's side, MQTT 5 only: what a publisher (the gateway's MQTT
//! uplink) sends a broker, and what a broker may send it back.
//!
//! The broker is no more trusted than a client is: [`ClientDecoder`]
//! checks each packet's size at its fixed header, before a byte of the
//! body is buffered, and accepts only what a publisher that subscribes to
//! nothing can receive (CONNACK, PUBACK, PINGRESP, DISCONNECT). A PUBLISH,
//! a SUBACK or anything else from the broker is an error, never stored.
//! Properties are bounded by [`Limits`] as a client's are; those the
//! publisher needs are kept, the others only checked.

use bytes::{Buf as _, BufMut as _, BytesMut};

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::props::{USER_PROPERTY, properties};
use crate::wire::{Reader, put_varint, varint_len};

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBACK: u8 = 4;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

/// A CONNECT for MQTT 5, clean start, no will.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConnect<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// Seconds between packets before the broker may drop the client.
    pub keep_alive_secs: u16,
    /// A user name, if any.
    pub username: Option<&'a str>,
    /// A password, if any.
    pub password: Option<&'a [u8]>,
    /// The largest packet this client accepts (told to the broker).
    pub max_packet_bytes: u32,
}

impl std::fmt::Debug for ClientConnect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnect")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(&s[..s.len().min(usize::from(u16::MAX))]);
}

impl ClientConnect<'_> {
    /// Appends the encoded packet. Strings longer than 65,535 bytes are
    /// cut (the caller validates them first).
    pub fn encode(&self, out: &mut BytesMut) {
        // Properties: maximum packet size (0x27), receive maximum 1 (0x21:
        // the publisher takes no QoS 1 deliveries).
        let props_len = 5 + 3;
        let mut remaining = 10 + varint_len(props_len) + props_len + 2 + self.client_id.len();
        let mut flags = 0x02; // clean start
        if let Some(u) = self.username {
            flags |= 0x80;
            remaining += 2 + u.len();
        }
        if let Some(p) = self.password {
            flags |= 0x40;
            remaining += 2 + p.len();
        }
        out.put_u8(CONNECT << 4);
        put_varint(out, remaining);
        put_str(out, b"MQTT");
        out.put_u8(5);
        out.put_u8(flags);
        out.put_u16(self.keep_alive_secs);
        put_varint(out, props_len);
        out.put_u8(0x27);
        out.put_u32(self.max_packet_bytes);
        out.put_u8(0x21);
        out.put_u16(1);
        put_str(out, self.client_id.as_bytes());
        if let Some(u) = self.username {
            put_str(out, u.as_bytes());
        }
        if let Some(p) = self.password {
            put_str(out, p);
        }
    }
}

/// Appends a PINGREQ.
pub fn encode_pingreq(out: &mut BytesMut) {
    out.put_u8(PINGREQ << 4);
    out.put_u8(0);
}

/// Appends a DISCONNECT, normal disconnection.
pub fn encode_disconnect(out: &mut BytesMut) {
    out.put_u8(DISCONNECT << 4);
    out.put_u8(0);
}

/// What the broker's CONNACK says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConnAck {
    /// The broker kept a session (never asked for: clean start).
    pub session_present: bool,
    /// 0 accepted; 0x80 and above refused.
    pub reason: u8,
    /// QoS 1 publishes the broker takes unacknowledged at once.
    pub receive_maximum: u16,
    /// The largest packet the broker takes, if it said.
    pub maximum_packet_size: Option<u32>,
    /// The highest QoS the broker takes (2 when it did not say).
    pub maximum_qos: u8,
    /// Its reason, when it gave one.
    pub reason_string: Option<String>,
    /// The keep-alive the broker asks the client to use, if it said.
    pub server_keep_alive: Option<u16>,
}

/// A packet from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerPacket {
    /// CONNACK.
    ConnAck(ServerConnAck),
    /// PUBACK: `reason` 0 (or 0x10, no matching subscribers) is success;
    /// 0x80 and above, the publish was refused.
    PubAck {
        /// The publish it answers.
        packet_id: u16,
        /// Its reason code.
        reason: u8,
    },
    /// PINGRESP.
    PingResp,
    /// DISCONNECT, with its reason code.
    Disconnect {
        /// Why.
        reason: u8,
    },
}

/// Cuts the broker's bytes into packets.
#[derive(Debug, Clone)]
pub struct ClientDecoder {
    limits: Limits,
    connected: bool,
}

impl ClientDecoder {
    /// A decoder for a new connection; `limits.max_packet_bytes` caps every
    /// packet.
    #[must_use]
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            connected: false,
        }
    }

    /// Takes the next whole packet off `buf`, if it has arrived; nothing is
    /// reserved ahead of the bytes.
    ///
    /// # Errors
    /// [`DecodeError`]: the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerPacket>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let kind = first >> 4;
        let allowed = if self.connected {
            matches!(kind, PUBACK | PINGRESP | DISCONNECT)
        } else {
            kind == CONNACK
        };
        if !allowed {
            return Err(DecodeError::Unexpected { kind });
        }
        if first & 0x0F != 0 {
            return Err(DecodeError::BadFlags {
                kind,
                flags: first & 0x0F,
            });
        }
        let Some((body_at, total)) = crate::frame::header(buf)? else {
            return Ok(None);
        };
        if total > self.limits.max_packet_bytes {
            return Err(DecodeError::TooLarge {
                len: total,
                max: self.limits.max_packet_bytes,
            });
        }
        if buf.len() < total {
            return Ok(None);
        }
        let mut whole = buf.split_to(total).freeze();
        whole.advance(body_at);
        let mut r = Reader::new(&whole);
        let packet = match kind {
            CONNACK => ServerPacket::ConnAck(self.connack(&mut r)?),
            PUBACK => {
                let packet_id = r.u16("packet_id")?;
                let reason = if r.is_empty() { 0 } else { r.u8("reason")? };
                if !r.is_empty() {
                    properties(&mut r, "puback_properties", &self.limits, |id, p| {
                        self.common(id, p)
                    })?;
                }
                ServerPacket::PubAck { packet_id, reason }
            }
            PINGRESP => ServerPacket::PingResp,
            _ => {
                let reason = if r.is_empty() { 0 } else { r.u8("reason")? };
                if !r.is_empty() {
                    properties(
                        &mut r,
                        "disconnect_properties",
                        &self.limits,
                        |id, p| match id {
                            0x11 => p.u32("session_expiry").map(|_| true),
                            0x1C => p
                                .string("server_reference", self.limits.max_property_bytes)
                                .map(|_| true),
                            _ => self.common(id, p),
                        },
                    )?;
                }
                ServerPacket::Disconnect { reason }
            }
        };
        if !r.is_empty() {
            return Err(DecodeError::Truncated { field: "packet" });
        }
        Ok(Some(packet))
    }

    /// Reason string and user properties, which any of these packets may
    /// carry: checked, not kept.
    fn common(&self, id: u8, p: &mut Reader<'_>) -> Result<bool, DecodeError> {
        match id {
            0x1F => p
                .string("reason_string", self.limits.max_property_bytes)
                .map(|_| true),
            USER_PROPERTY => {
                p.string("user_property", self.limits.max_property_bytes)?;
                p.string("user_property", self.limits.max_property_bytes)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn connack(&mut self, r: &mut Reader<'_>) -> Result<ServerConnAck, DecodeError> {
        let flags = r.u8("connack_flags")?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::Malformed {
                field: "connack_flags",
            });
        }
        let mut ack = ServerConnAck {
            session_present: flags & 1 == 1,
            reason: r.u8("reason")?,
            receive_maximum: u16::MAX,
            maximum_packet_size: None,
            maximum_qos: 2,
            reason_string: None,
            server_keep_alive: None,
        };
        let max = self.limits.max_property_bytes;
        let mut users = 0usize;
        properties(r, "connack_properties", &self.limits, |id, p| {
            match id {
                0x21 => {
                    ack.receive_maximum = p.u16("receive_maximum")?;
                    if ack.receive_maximum == 0 {
                        return Err(DecodeError::Forbidden {
                            field: "receive_maximum",
                        });
                    }
                }
                0x27 => {
                    let m = p.u32("maximum_packet_size")?;
                    if m == 0 {
                        return Err(DecodeError::Forbidden {
                            field: "maximum_packet_size",
                        });
                    }
                    ack.maximum_packet_size = Some(m);
                }
                0x24 => ack.maximum_qos = p.u8("maximum_qos")?,
                0x1F => ack.reason_string = Some(p.string("reason_string", max)?.to_owned()),
                0x11 => {
                    p.u32("session_expiry")?;
                }
                0x13 => ack.server_keep_alive = Some(p.u16("server_keep_alive")?),
                0x22 => {
                    p.u16("topic_alias_maximum")?;
                }
                0x25 | 0x28 | 0x29 | 0x2A => {
                    p.u8("flag_property")?;
                }
                0x12 | 0x1A | 0x1C | 0x15 => {
                    p.string("string_property", max)?;
                }
                0x16 => {
                    p.binary("authentication_data", max)?;
                }
                USER_PROPERTY => {
                    users += 1;
                    if users > self.limits.max_user_properties {
                        return Err(DecodeError::FieldTooLong {
                            field: "user_property",
                            len: users,
                            max: self.limits.max_user_properties,
                        });
                    }
                    p.string("user_property", max)?;
                    p.string("user_property", max)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if ack.reason == 0 {
            self.connected = true;
        }
        Ok(ack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<ServerPacket>, DecodeError> {
        let mut d = ClientDecoder::new(Limits::DEFAULT);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // One byte at a time: the decoder must wait, never misparse.
        for b in bytes {
            buf.put_u8(*b);
            while let Some(p) = d.decode(&mut buf)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    #[test]
    fn a_connect_encodes_as_the_specification_lays_it_out() {
        let mut out = BytesMut::new();
        ClientConnect {
            client_id: "gw",
            keep_alive_secs: 30,
            username: Some("u"),
            password: Some(b"pw"),
            max_packet_bytes: 65_536,
        }
        .encode(&mut out);
        let expected: &[u8] = &[
            0x10, 30, 0, 4, b'M', b'Q', b'T', b'T', 5, 0xC2, 0, 30, 8, 0x27, 0, 1, 0, 0, 0x21, 0,
            1, 0, 2, b'g', b'w', 0, 1, b'u', 0, 2, b'p', b'w',
        ];
        assert_eq!(&out[..], expected);
        // Our own broker-side decoder reads it back.
        let mut d = crate::Decoder::new(Limits::DEFAULT);
        let Some(crate::Packet::Connect(c)) = d.decode(&mut out).unwrap() else {
            panic!("not a connect");
        };
        assert_eq!(c.version, crate::ProtocolVersion::V5);
    }

    #[test]
    fn a_broker_session_decodes_in_any_split() {
        // CONNACK: receive maximum 20, maximum QoS 1, retain available.
        let mut bytes = vec![0x20, 10, 0, 0, 7, 0x21, 0, 20, 0x24, 1, 0x25, 1];
        bytes.extend_from_slice(&[0x40, 2, 0, 7]); // PUBACK 7, success
        bytes.extend_from_slice(&[0x40, 4, 0, 8, 0x87, 0]); // PUBACK 8, not authorized
        bytes.extend_from_slice(&[0xD0, 0]); // PINGRESP
        bytes.extend_from_slice(&[0xE0, 1, 0x8B]); // DISCONNECT, server shutting down
        let p = decode_all(&bytes).unwrap();
        assert_eq!(p.len(), 5);
        let ServerPacket::ConnAck(ack) = &p[0] else {
            panic!()
        };
        assert_eq!(ack.receive_maximum, 20);
        assert_eq!(ack.maximum_qos, 1);
        assert_eq!(
            p[1],
            ServerPacket::PubAck {
                packet_id: 7,
                reason: 0
            }
        );
        assert_eq!(
            p[2],
            ServerPacket::PubAck {
                packet_id: 8,
                reason: 0x87
            }
        );
        assert_eq!(p[4], ServerPacket::Disconnect { reason: 0x8B });
    }

    #[test]
    fn a_hostile_broker_is_refused_before_it_is_buffered() {
        // A packet before CONNACK, a PUBLISH after it, a huge one, a bad
        // property, trailing bytes, a zero receive maximum.
        let connack: &[u8] = &[0x20, 3, 0, 0, 0];
        let cases: Vec<Vec<u8>> = vec![
            vec![0x40, 2, 0, 1],
            [connack, &[0x30, 5, 0, 1, b't', b'x', b'y']].concat(),
            [connack, &[0x40, 0xFF, 0xFF, 0xFF, 0x7F]].concat(),
            vec![0x20, 5, 0, 0, 2, 0x01, 0x00],
            [connack, &[0x40, 5, 0, 1, 0, 0, 9]].concat(),
            vec![0x20, 6, 0, 0, 3, 0x21, 0, 0],
            vec![0x20, 3, 0x02, 0, 0],
        ];
        for case in cases {
            assert!(decode_all(&case).is_err(), "{case:?}");
        }
        // The huge one is refused at its header: five bytes in.
        let mut d = ClientDecoder::new(Limits::DEFAULT);
        let mut buf = BytesMut::from(connack);
        d.decode(&mut buf).unwrap().unwrap();
        buf.extend_from_slice(&[0x40, 0xFF, 0xFF, 0xFF, 0x7F]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
