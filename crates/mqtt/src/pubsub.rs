//! Publishing and subscribing: PUBLISH, PUBACK, SUBSCRIBE and UNSUBSCRIBE
//! as a client sends them, parsed from a whole body, and PUBLISH, PUBACK,
//! SUBACK and UNSUBACK as the broker sends them.
//!
//! What this broker refuses, as the specification lets it: QoS 2 (its
//! CONNACK says maximum QoS 1), topic aliases (it offers none), a
//! subscription identifier from a client on a PUBLISH. Topic names may
//! hold no wildcard; filters may hold `+` only as a whole level and `#`
//! only as the last one.

use bytes::{BufMut as _, Bytes, BytesMut};

use crate::error::{DecodeError, ReasonCode};
use crate::limits::Limits;
use crate::props::{properties, user_property};
use crate::version::ProtocolVersion;
use crate::wire::{Reader, put_varint, varint_len};

pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;

/// A PUBLISH (QoS 0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The topic name.
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    /// The retain flag.
    pub retain: bool,
    /// The duplicate flag (QoS 1 only).
    pub dup: bool,
    /// The packet identifier, for QoS 1.
    pub packet_id: Option<u16>,
    /// The payload.
    pub payload: Bytes,
    /// MQTT 5: its user properties.
    pub user_properties: Vec<(String, String)>,
}

/// A PUBACK: the client acknowledging a QoS 1 PUBLISH of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubAck {
    /// The acknowledged packet.
    pub packet_id: u16,
    /// MQTT 5: the reason code (0 when absent).
    pub reason: u8,
}

/// One topic filter of a SUBSCRIBE, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter.
    pub filter: String,
    /// The maximum QoS asked for (0 to 2; granted at most 1).
    pub qos: u8,
    /// MQTT 5: whether it is a shared subscription (`$share/...`), which
    /// this side refuses in its SUBACK.
    pub shared: bool,
}

/// A SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Its packet identifier.
    pub packet_id: u16,
    /// Its filters, at least one.
    pub filters: Vec<Filter>,
    /// MQTT 5: its user properties.
    pub user_properties: Vec<(String, String)>,
}

/// An UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Its packet identifier.
    pub packet_id: u16,
    /// Its filters, at least one.
    pub filters: Vec<String>,
}

pub(crate) fn publish(
    flags: u8,
    body: &Bytes,
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = (flags >> 1) & 0x03;
    let retain = flags & 0x01 != 0;
    match qos {
        3 => {
            return Err(DecodeError::BadFlags {
                kind: PUBLISH,
                flags,
            });
        }
        2 => return Err(DecodeError::QosNotSupported),
        0 if dup => {
            return Err(DecodeError::BadFlags {
                kind: PUBLISH,
                flags,
            });
        }
        _ => {}
    }
    let mut r = Reader::new(body);
    let topic = r.string("publish.topic", limits.max_topic_bytes)?;
    if !is_topic_name(topic) {
        return Err(DecodeError::BadTopic {
            field: "publish.topic",
        });
    }
    let packet_id = if qos > 0 {
        Some(packet_id(&mut r, "publish.packet_id")?)
    } else {
        None
    };
    let mut users = Vec::new();
    if version == ProtocolVersion::V5 {
        let mut alias = false;
        properties(&mut r, "publish.properties", limits, |id, p| {
            match id {
                0x01 => {
                    if p.u8("payload_format")? > 1 {
                        return Err(DecodeError::Forbidden {
                            field: "payload_format",
                        });
                    }
                }
                0x02 => {
                    p.u32("message_expiry")?;
                }
                0x23 => {
                    p.u16("topic_alias")?;
                    alias = true;
                }
                0x08 => {
                    let t = p.string("response_topic", limits.max_topic_bytes)?;
                    if !is_topic_name(t) {
                        return Err(DecodeError::BadTopic {
                            field: "response_topic",
                        });
                    }
                }
                0x09 => {
                    p.binary("correlation_data", limits.max_property_bytes)?;
                }
                0x03 => {
                    p.string("content_type", limits.max_property_bytes)?;
                }
                0x26 => user_property(p, limits, &mut users)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if alias {
            return Err(DecodeError::TopicAlias);
        }
    }
    Ok(Publish {
        topic: topic.to_owned(),
        qos,
        retain,
        dup,
        packet_id,
        // The rest of the packet, shared with it: no copy.
        payload: body.slice(body.len() - r.rest().len()..),
        user_properties: users,
    })
}

pub(crate) fn puback(
    body: &[u8],
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<PubAck, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r, "puback.packet_id")?;
    let mut reason = 0;
    if version == ProtocolVersion::V5 && !r.is_empty() {
        reason = r.u8("puback.reason")?;
        if !r.is_empty() {
            let mut users = Vec::new();
            properties(&mut r, "puback.properties", limits, |id, p| {
                match id {
                    0x1F => {
                        p.string("reason_string", limits.max_property_bytes)?;
                    }
                    0x26 => user_property(p, limits, &mut users)?,
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
        }
    }
    end(&r, "puback")?;
    Ok(PubAck { packet_id, reason })
}

pub(crate) fn subscribe(
    body: &[u8],
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Subscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r, "subscribe.packet_id")?;
    let mut users = Vec::new();
    if version == ProtocolVersion::V5 {
        properties(&mut r, "subscribe.properties", limits, |id, p| {
            match id {
                0x0B => {
                    let v = p.varint("subscription_identifier")?;
                    if v == 0 {
                        return Err(DecodeError::Forbidden {
                            field: "subscription_identifier",
                        });
                    }
                }
                0x26 => user_property(p, limits, &mut users)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
    }
    let filters = each_filter(&mut r, "subscribe.filters", limits, |r| {
        let filter = r.string("subscribe.filter", limits.max_topic_bytes)?;
        let options = r.u8("subscribe.options")?;
        let reserved = match version {
            ProtocolVersion::V311 => options & 0xFC != 0,
            ProtocolVersion::V5 => options & 0xC0 != 0,
        };
        if reserved {
            return Err(DecodeError::Malformed {
                field: "subscribe.options",
            });
        }
        // QoS 3 and retain handling 3 are protocol errors.
        let qos = options & 0x03;
        if qos == 3 || (options >> 4) & 0x03 == 3 {
            return Err(DecodeError::Forbidden {
                field: "subscribe.options",
            });
        }
        let shared = version == ProtocolVersion::V5 && filter.starts_with("$share/");
        if !shared && !is_topic_filter(filter) {
            return Err(DecodeError::BadFilter {
                field: "subscribe.filter",
            });
        }
        Ok(Filter {
            filter: filter.to_owned(),
            qos,
            shared,
        })
    })?;
    Ok(Subscribe {
        packet_id,
        filters,
        user_properties: users,
    })
}

pub(crate) fn unsubscribe(
    body: &[u8],
    version: ProtocolVersion,
    limits: &Limits,
) -> Result<Unsubscribe, DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = packet_id(&mut r, "unsubscribe.packet_id")?;
    if version == ProtocolVersion::V5 {
        let mut users = Vec::new();
        properties(&mut r, "unsubscribe.properties", limits, |id, p| {
            if id != 0x26 {
                return Ok(false);
            }
            user_property(p, limits, &mut users)?;
            Ok(true)
        })?;
    }
    let filters = each_filter(&mut r, "unsubscribe.filters", limits, |r| {
        let filter = r.string("unsubscribe.filter", limits.max_topic_bytes)?;
        if filter.is_empty() {
            return Err(DecodeError::BadFilter {
                field: "unsubscribe.filter",
            });
        }
        Ok(filter.to_owned())
    })?;
    Ok(Unsubscribe { packet_id, filters })
}

/// The filters that make up the rest of a SUBSCRIBE or UNSUBSCRIBE: at
/// least one (none is a protocol error), at most `limits.max_filters`.
fn each_filter<'a, T>(
    r: &mut Reader<'a>,
    field: &'static str,
    limits: &Limits,
    mut one: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let mut filters = Vec::new();
    while !r.is_empty() {
        if filters.len() >= limits.max_filters {
            return Err(DecodeError::FieldTooLong {
                field,
                len: filters.len() + 1,
                max: limits.max_filters,
            });
        }
        filters.push(one(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Forbidden { field });
    }
    Ok(filters)
}

fn packet_id(r: &mut Reader<'_>, field: &'static str) -> Result<u16, DecodeError> {
    match r.u16(field)? {
        0 => Err(DecodeError::Forbidden { field }),
        id => Ok(id),
    }
}

const fn end(r: &Reader<'_>, field: &'static str) -> Result<(), DecodeError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Truncated { field })
    }
}

/// A topic name: not empty, no wildcard.
#[must_use]
pub fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A topic filter: not empty; `+` only as a whole level, `#` only as the
/// whole last level.
#[must_use]
pub fn is_topic_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let last = filter.split('/').count() - 1;
    filter.split('/').enumerate().all(|(i, level)| {
        if level.contains('#') {
            level == "#" && i == last
        } else {
            !level.contains('+') || level == "+"
        }
    })
}

/// Whether topic `name` matches topic `filter` (a valid filter: see
/// [`is_topic_filter`]): `+` matches one whole level, a final `#` the
/// parent level and every level below it. A name starting with `$` is
/// matched by no filter starting with a wildcard [MQTT-4.7.2-1].
/// Walks both once, allocating nothing.
#[must_use]
pub fn filter_matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = name.split('/');
    for level in filter.split('/') {
        match (level, names.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(n)) if l == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

/// A PUBLISH as the broker sends it to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPublish<'a> {
    /// The topic name.
    pub topic: &'a str,
    /// 0 or 1.
    pub qos: u8,
    /// The retain flag (set on the latest reading sent at subscribe).
    pub retain: bool,
    /// For QoS 1.
    pub packet_id: Option<u16>,
    /// The payload.
    pub payload: &'a [u8],
}

impl OutPublish<'_> {
    /// Bytes the encoded packet takes.
    #[must_use]
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let remaining = self.remaining(version);
        1 + varint_len(remaining) + remaining
    }

    fn remaining(&self, version: ProtocolVersion) -> usize {
        2 + self.topic.len()
            + if self.packet_id.is_some() { 2 } else { 0 }
            + usize::from(version == ProtocolVersion::V5)
            + self.payload.len()
    }

    /// Appends the encoded packet.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let mut first = PUBLISH << 4 | (self.qos & 0x01) << 1;
        if self.retain {
            first |= 0x01;
        }
        out.put_u8(first);
        put_varint(out, self.remaining(version));
        out.put_u16(u16::try_from(self.topic.len()).unwrap_or(u16::MAX));
        out.put_slice(self.topic.as_bytes());
        if let Some(id) = self.packet_id {
            out.put_u16(id);
        }
        if version == ProtocolVersion::V5 {
            out.put_u8(0); // no properties
        }
        out.put_slice(self.payload);
    }
}

/// Appends a PUBACK for `packet_id` (MQTT 5: with `reason`; 3.1.1 has
/// none, so a refused publish is acknowledged there too, as documented).
pub fn encode_puback(
    version: ProtocolVersion,
    packet_id: u16,
    reason: ReasonCode,
    out: &mut BytesMut,
) {
    out.put_u8(PUBACK << 4);
    if version == ProtocolVersion::V311 || reason == ReasonCode::Success {
        out.put_u8(2);
        out.put_u16(packet_id);
    } else {
        out.put_u8(4);
        out.put_u16(packet_id);
        out.put_u8(reason.byte());
        out.put_u8(0);
    }
}

/// What a SUBACK says of one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// Subscribed at this QoS (0 or 1).
    Qos(u8),
    /// Refused, with this reason (3.1.1: `0x80` failure).
    Refused(ReasonCode),
}

/// Appends a SUBACK answering `packet_id`, one code per filter in order.
pub fn encode_suback(
    version: ProtocolVersion,
    packet_id: u16,
    codes: &[Granted],
    out: &mut BytesMut,
) {
    let props = usize::from(version == ProtocolVersion::V5);
    out.put_u8(SUBACK << 4);
    put_varint(out, 2 + props + codes.len());
    out.put_u16(packet_id);
    if props == 1 {
        out.put_u8(0);
    }
    for c in codes {
        out.put_u8(match (c, version) {
            (Granted::Qos(q), _) => q & 0x01,
            (Granted::Refused(_), ProtocolVersion::V311) => 0x80,
            (Granted::Refused(r), ProtocolVersion::V5) => r.byte(),
        });
    }
}

/// Appends an UNSUBACK answering `packet_id`, one entry per filter in
/// order: whether a subscription to it existed (MQTT 5: success `0x00`, or
/// `0x11` no subscription existed; 3.1.1 carries no codes).
pub fn encode_unsuback(
    version: ProtocolVersion,
    packet_id: u16,
    existed: &[bool],
    out: &mut BytesMut,
) {
    out.put_u8(UNSUBACK << 4);
    match version {
        ProtocolVersion::V311 => {
            out.put_u8(2);
            out.put_u16(packet_id);
        }
        ProtocolVersion::V5 => {
            put_varint(out, 3 + existed.len());
            out.put_u16(packet_id);
            out.put_u8(0);
            for &e in existed {
                out.put_u8(if e { 0x00 } else { 0x11 });
            }
        }
    }
}
