//! The MQTT codec against hostile and real-shaped input: caps checked from
//! the header alone, nothing buffered ahead of the bytes, any split of a
//! stream decoding the same.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use bytes::{BufMut as _, BytesMut};
use common::{packet, put_str, varint};
use proptest::prelude::*;
use sensegate_mqtt::packet::{encode_disconnect_v5, encode_pingresp};
use sensegate_mqtt::{
    ConnAck, Connect, DecodeError, Decoder, Disconnect, Limits, Packet, ProtocolVersion, ReasonCode,
};

/// A client's CONNECT, encoded the way clients do: `props` is the raw v5
/// property list (ignored for 3.1.1).
fn connect(
    level: u8,
    client_id: &str,
    user: Option<&str>,
    pass: Option<&str>,
    props: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(level);
    let mut flags = 0x02; // clean start
    if user.is_some() {
        flags |= 0x80;
    }
    if pass.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        body.extend(varint(props.len()));
        body.extend_from_slice(props);
    }
    put_str(&mut body, client_id.as_bytes());
    if let Some(u) = user {
        put_str(&mut body, u.as_bytes());
    }
    if let Some(p) = pass {
        put_str(&mut body, p.as_bytes());
    }
    packet(0x10, &body)
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(p) = d.decode(&mut buf)? {
        out.push(p);
    }
    Ok(out)
}

fn first_error(bytes: &[u8]) -> DecodeError {
    decode_all(bytes).unwrap_err()
}

#[test]
fn a_v311_connect_with_a_token_as_password_decodes() {
    let got = decode_all(&connect(
        4,
        "esp32-1",
        Some("kitchen"),
        Some("sgt_secret"),
        &[],
    ))
    .unwrap();
    let [Packet::Connect(c)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(c.version, ProtocolVersion::V311);
    assert_eq!(c.client_id, "esp32-1");
    assert_eq!(c.username.as_deref(), Some("kitchen"));
    assert_eq!(c.password.as_deref(), Some(&b"sgt_secret"[..]));
    assert!(c.clean_start && !c.will);
    assert_eq!(c.keep_alive, 30);
}

#[test]
fn a_v5_connect_reads_its_properties_within_their_caps() {
    let mut props = vec![0x21, 0x00, 0x0A]; // receive maximum 10
    props.extend_from_slice(&[0x27, 0, 0, 0x40, 0]); // maximum packet size 16 KiB
    props.push(0x26);
    put_str(&mut props, b"format");
    put_str(&mut props, b"json");
    let got = decode_all(&connect(5, "", None, Some("sgt_x"), &props)).unwrap();
    let [Packet::Connect(c)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(c.version, ProtocolVersion::V5);
    assert_eq!(c.receive_maximum, Some(10));
    assert_eq!(c.maximum_packet_size, Some(16 << 10));
    assert_eq!(
        c.user_properties,
        [("format".to_owned(), "json".to_owned())]
    );
    // MQTT 5 allows a password without a user name.
    assert_eq!(c.password.as_deref(), Some(&b"sgt_x"[..]));
}

#[test]
fn before_connect_nothing_else_is_read_past_its_first_byte() {
    for first in [0xC0u8, 0x30, 0x82, 0xE0, 0x20] {
        assert!(matches!(
            first_error(&[first]),
            DecodeError::Unexpected { .. }
        ));
    }
}

#[test]
fn the_largest_remaining_length_is_refused_from_the_header_alone() {
    // 268,435,455 announced, five bytes sent: refused at once, nothing
    // waited for or reserved.
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::from(&[0x10u8, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let e = d.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        DecodeError::TooLarge {
            len: 268_435_460,
            max: 4 << 10
        }
    );
    assert_eq!(e.reason(), ReasonCode::PacketTooLarge);
    assert!(buf.capacity() < 64);
}

#[test]
fn bytes_needed_applies_the_same_checks_and_never_exceeds_the_cap() {
    let d = Decoder::new(Limits::DEFAULT);
    assert_eq!(d.bytes_needed(&[0x10]).unwrap(), None);
    assert!(matches!(
        d.bytes_needed(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F]),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(
        d.bytes_needed(&[0x30, 0x05]),
        Err(DecodeError::Unexpected { kind: 3 })
    ));
    let c = connect(4, "a", None, None, &[]);
    assert_eq!(d.bytes_needed(&c[..4]).unwrap(), Some(c.len() - 4));
    assert_eq!(d.bytes_needed(&c).unwrap(), Some(0));
}

#[test]
fn a_refused_connect_is_answered_in_its_own_version() {
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::from(&connect(5, "a", None, None, &[0x21, 0, 0])[..]);
    assert!(d.decode(&mut buf).is_err());
    assert_eq!(d.reply_version(), Some(ProtocolVersion::V5));
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::from(&connect(4, &"c".repeat(200), None, None, &[])[..]);
    assert!(d.decode(&mut buf).is_err());
    assert_eq!(d.reply_version(), Some(ProtocolVersion::V311));
}

#[test]
fn a_will_asking_for_qos_2_is_refused_and_others_are_parsed_not_kept() {
    let will = |qos: u8| {
        let mut body = Vec::new();
        put_str(&mut body, b"MQTT");
        body.extend_from_slice(&[4, 0x02 | 0x04 | (qos << 3), 0, 30]);
        put_str(&mut body, b"a");
        put_str(&mut body, b"last/will");
        put_str(&mut body, b"gone");
        packet(0x10, &body)
    };
    let got = decode_all(&will(1)).unwrap();
    assert!(matches!(&got[0], Packet::Connect(c) if c.will));
    assert_eq!(first_error(&will(2)), DecodeError::QosNotSupported);
}

#[test]
fn a_five_byte_remaining_length_is_malformed() {
    assert_eq!(
        first_error(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        DecodeError::BadLength
    );
    assert_eq!(DecodeError::BadLength.reason(), ReasonCode::MalformedPacket);
}

#[test]
fn a_connect_over_the_pre_auth_cap_is_refused_before_its_body() {
    let big = connect(4, &"c".repeat(100), Some("u"), Some(&"p".repeat(5000)), &[]);
    // Only the header has arrived.
    let e = first_error(&big[..4]);
    assert!(
        matches!(e, DecodeError::TooLarge { max: 4096, .. }),
        "{e:?}"
    );
}

#[test]
fn a_trickled_connect_waits_without_reserving_and_then_decodes() {
    let bytes = connect(4, "slow", Some("u"), Some("p"), &[]);
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.put_u8(*b);
        let got = d.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert!(got.is_none());
            assert_eq!(buf.len(), i + 1, "bytes were consumed early");
        } else {
            assert!(matches!(got, Some(Packet::Connect(_))));
        }
    }
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    let mut bytes = connect(5, "a", None, None, &[]);
    bytes.extend(connect(5, "a", None, None, &[]));
    let e = first_error(&bytes);
    assert_eq!(e, DecodeError::Unexpected { kind: 1 });
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
}

#[test]
fn thousands_of_properties_and_repeated_ones_are_refused() {
    // 2,000 user properties, in a packet under the cap.
    let mut props = Vec::new();
    for _ in 0..2000 {
        props.push(0x26);
        put_str(&mut props, b"");
        put_str(&mut props, b"");
    }
    let e = first_error(&connect(5, "a", None, None, &props));
    assert!(
        matches!(
            e,
            DecodeError::FieldTooLong { .. } | DecodeError::TooLarge { .. }
        ),
        "{e:?}"
    );
    // Just over the property count cap (user properties allowed up to it).
    let mut props = Vec::new();
    for _ in 0..33 {
        props.push(0x26);
        put_str(&mut props, b"k");
        put_str(&mut props, b"v");
    }
    let limits = Limits {
        max_user_properties: 100,
        ..Limits::DEFAULT
    };
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&connect(5, "a", None, None, &props)[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::FieldTooLong {
            field: "connect.properties",
            len: 33,
            max: 32
        }
    );
    // A property given twice.
    let props = [0x21, 0, 5, 0x21, 0, 6];
    assert!(matches!(
        first_error(&connect(5, "a", None, None, &props)),
        DecodeError::Forbidden { .. }
    ));
    // Nine user properties, over the default of eight.
    let mut props = Vec::new();
    for _ in 0..9 {
        props.push(0x26);
        put_str(&mut props, b"k");
        put_str(&mut props, b"v");
    }
    assert!(matches!(
        first_error(&connect(5, "a", None, None, &props)),
        DecodeError::FieldTooLong {
            field: "user_property",
            ..
        }
    ));
}

#[test]
fn bad_connects_are_refused_with_their_reason() {
    // MQTT 3.1 ("MQIsdp", level 3) and an unknown level.
    let mut v31 = Vec::new();
    put_str(&mut v31, b"MQIsdp");
    v31.extend_from_slice(&[3, 2, 0, 30]);
    put_str(&mut v31, b"a");
    let e = first_error(&packet(0x10, &v31));
    assert_eq!(e.reason(), ReasonCode::UnsupportedProtocolVersion);
    assert_eq!(e.reason().connack_v3(), Some(1));
    let mut six = connect(5, "a", None, None, &[]);
    six[8] = 6;
    assert_eq!(first_error(&six), DecodeError::UnsupportedProtocol);
    // The reserved connect flag.
    let mut reserved = connect(4, "a", None, None, &[]);
    reserved[9] |= 0x01;
    let e = first_error(&reserved);
    assert!(matches!(e, DecodeError::Malformed { .. }), "{e:?}");
    assert_eq!(e.reason(), ReasonCode::MalformedPacket);
    // 3.1.1 closes without a CONNACK for a malformed CONNECT.
    assert_eq!(e.reason().connack_v3(), None);
    // Flags on a CONNECT's fixed header.
    let mut flagged = connect(4, "a", None, None, &[]);
    flagged[0] = 0x11;
    assert!(matches!(
        first_error(&flagged),
        DecodeError::BadFlags { .. }
    ));
    // A 3.1.1 password without a user name.
    assert!(matches!(
        first_error(&connect(4, "a", None, Some("p"), &[])),
        DecodeError::Malformed { .. }
    ));
    // A client id over the cap, or with a control character: identifier
    // rejected (0x85; 3.1.1 return code 2).
    let e = first_error(&connect(4, &"c".repeat(129), None, None, &[]));
    assert_eq!(e, DecodeError::BadClientId);
    assert_eq!(e.reason().connack_v3(), Some(2));
    assert_eq!(
        first_error(&connect(5, "a\u{1b}[31m", None, None, &[])),
        DecodeError::BadClientId
    );
    // A user name with a newline (it is logged).
    assert!(matches!(
        first_error(&connect(4, "a", Some("me\nforged"), None, &[])),
        DecodeError::BadString { .. }
    ));
    // Authentication data without a method.
    let mut props = vec![0x16];
    put_str(&mut props, b"x");
    assert!(matches!(
        first_error(&connect(5, "a", None, None, &props)),
        DecodeError::Forbidden {
            field: "authentication_data"
        }
    ));
    // An unknown property identifier is malformed; a zero receive maximum
    // a protocol error.
    assert!(matches!(
        first_error(&connect(5, "a", None, None, &[0x01, 0])),
        DecodeError::Malformed { .. }
    ));
    let e = first_error(&connect(5, "a", None, None, &[0x21, 0, 0]));
    assert_eq!(e.reason(), ReasonCode::ProtocolError);
    // A client id with U+0000, and one that is not UTF-8.
    assert!(matches!(
        first_error(&connect(4, "a\0b", None, None, &[])),
        DecodeError::BadString { .. }
    ));
    let mut bad_utf8 = connect(4, "ab", None, None, &[]);
    let at = bad_utf8.len() - 1;
    bad_utf8[at] = 0xFF;
    assert!(matches!(
        first_error(&bad_utf8),
        DecodeError::BadString { .. }
    ));
    // Trailing bytes after the last field.
    let mut body = connect(4, "a", None, None, &[])[2..].to_vec();
    body.push(0);
    assert!(matches!(
        first_error(&packet(0x10, &body)),
        DecodeError::Truncated { .. }
    ));
}

#[test]
fn after_connect_pings_and_disconnects_decode_and_the_rest_is_refused() {
    let mut bytes = connect(5, "a", None, None, &[]);
    bytes.extend_from_slice(&[0xC0, 0]);
    bytes.extend_from_slice(&[0xE0, 2, 0x04, 0]);
    let got = decode_all(&bytes).unwrap();
    assert_eq!(
        &got[1..],
        [
            Packet::PingReq,
            Packet::Disconnect(Disconnect { reason: 4 })
        ]
    );
    // QoS 2's packets and AUTH are not accepted.
    for first in [0x50u8, 0x62, 0x70, 0xF0] {
        let mut bytes = connect(5, "a", None, None, &[]);
        bytes.extend_from_slice(&[first, 0]);
        assert!(
            matches!(first_error(&bytes), DecodeError::Unexpected { .. }),
            "{first:#x}"
        );
    }
}

#[test]
fn connack_pingresp_and_disconnect_encode_as_the_specification_shows() {
    let mut out = BytesMut::new();
    ConnAck {
        version: ProtocolVersion::V311,
        reason: ReasonCode::NotAuthorized,
        receive_maximum: 16,
        maximum_packet_size: 65_536,
        assigned_client_id: None,
        server_keep_alive: None,
    }
    .encode(&mut out);
    assert_eq!(&out[..], [0x20, 2, 0, 5]);
    out.clear();
    ConnAck {
        version: ProtocolVersion::V5,
        reason: ReasonCode::NotAuthorized,
        receive_maximum: 16,
        maximum_packet_size: 65_536,
        assigned_client_id: None,
        server_keep_alive: None,
    }
    .encode(&mut out);
    assert_eq!(&out[..], [0x20, 3, 0, 0x87, 0]);
    out.clear();
    ConnAck {
        version: ProtocolVersion::V5,
        reason: ReasonCode::Success,
        receive_maximum: 16,
        maximum_packet_size: 65_536,
        assigned_client_id: Some("sg-1".to_owned()),
        server_keep_alive: Some(200),
    }
    .encode(&mut out);
    assert_eq!(out[0], 0x20);
    assert_eq!(usize::from(out[1]), out.len() - 2);
    // Session expiry 0, receive maximum, maximum packet size, maximum QoS,
    // no shared subscriptions, no topic aliases, the server keep alive, no
    // subscription identifiers, the assigned identifier.
    assert_eq!(&out[2..5], [0, 0, 32]);
    assert!(out.windows(3).any(|w| w == [0x13, 0, 200]));
    assert!(out.windows(2).any(|w| w == [0x29, 0]));
    assert_eq!(&out[5..10], [0x11, 0, 0, 0, 0]);
    assert_eq!(&out[10..13], [0x21, 0, 16]);
    assert_eq!(&out[out.len() - 7..], b"\x12\x00\x04sg-1");
    out.clear();
    encode_pingresp(&mut out);
    encode_disconnect_v5(ReasonCode::PacketTooLarge, &mut out);
    assert_eq!(&out[..], [0xD0, 0, 0xE0, 2, 0x95, 0]);
}

fn a_connect() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::bool::ANY,
        "[a-z0-9-]{0,23}",
        prop::option::of("[a-z]{1,16}"),
        prop::option::of("[A-Za-z0-9_]{1,64}"),
    )
        .prop_map(|(v5, id, user, pass)| {
            let user = user.or_else(|| pass.as_ref().map(|_| "u".to_owned()));
            connect(
                if v5 { 5 } else { 4 },
                &id,
                user.as_deref(),
                pass.as_deref(),
                &[],
            )
        })
}

type Later = fn(bool) -> Vec<u8>;

/// A packet a client sends after CONNECT (built for 3.1.1 or 5).
fn a_later_packet() -> impl Strategy<Value = Later> {
    prop::sample::select(vec![
        (|_| vec![0xC0, 0]) as Later,
        |v5| {
            let mut body = Vec::new();
            put_str(&mut body, b"sensors/lab/t");
            body.extend_from_slice(&[0, 1]);
            if v5 {
                body.push(0);
            }
            body.extend_from_slice(b"21.5");
            packet(0x32, &body)
        },
        |v5| {
            let mut body = Vec::new();
            put_str(&mut body, b"t");
            if v5 {
                body.push(0);
            }
            body.extend_from_slice(&[0x55; 300]);
            packet(0x30, &body)
        },
        |v5| {
            let mut body = vec![0, 2];
            if v5 {
                body.push(0);
            }
            put_str(&mut body, b"sensors/#");
            body.push(1);
            packet(0x82, &body)
        },
    ])
}

proptest! {
    /// Any split of a stream of packets decodes to the same packets as the
    /// whole stream.
    #[test]
    fn any_split_decodes_the_same(
        first in a_connect(),
        later in prop::collection::vec(a_later_packet(), 0..8),
        cuts in prop::collection::vec(1usize..20, 0..60),
    ) {
        let mut stream = first;
        let v5 = stream[8] == 5;
        for p in &later {
            stream.extend(p(v5));
        }
        let whole = decode_all(&stream).unwrap();
        prop_assert_eq!(whole.len(), 1 + later.len());
        let mut d = Decoder::new(Limits::DEFAULT);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        let mut cuts = cuts.into_iter();
        while at < stream.len() {
            let n = cuts.next().unwrap_or(stream.len()).min(stream.len() - at);
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got, whole);
    }

    /// No input panics, and an error leaves nothing half-decoded behind.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_all(&bytes);
        let mut with_connect = connect(5, "a", None, None, &[]);
        with_connect.extend_from_slice(&bytes);
        let _ = decode_all(&with_connect);
    }
}

/// Re-encodes a decoded CONNECT's fields: what a test can compare.
fn fields(c: &Connect) -> (ProtocolVersion, &str, Option<&str>) {
    (c.version, c.client_id.as_str(), c.username.as_deref())
}

#[test]
fn a_connect_round_trips_its_fields() {
    for (level, v) in [(4, ProtocolVersion::V311), (5, ProtocolVersion::V5)] {
        let got = decode_all(&connect(level, "id-1", Some("me"), Some("tok"), &[])).unwrap();
        let [Packet::Connect(c)] = got.as_slice() else {
            panic!("{got:?}");
        };
        assert_eq!(fields(c), (v, "id-1", Some("me")));
    }
}

/// Every string cap of a CONNECT, exceeded by one byte.
#[test]
fn each_connect_string_cap_is_enforced() {
    let l = Limits::DEFAULT;
    let over = |e: DecodeError, field: &str| {
        assert!(
            matches!(e, DecodeError::FieldTooLong { field: f, .. } if f == field),
            "{e:?}"
        );
    };
    let user = "u".repeat(l.max_username_bytes + 1);
    over(
        first_error(&connect(4, "a", Some(&user), None, &[])),
        "connect.username",
    );
    let pass = "p".repeat(l.max_password_bytes + 1);
    over(
        first_error(&connect(4, "a", Some("u"), Some(&pass), &[])),
        "connect.password",
    );
    let mut props = vec![0x26];
    put_str(&mut props, "k".repeat(l.max_property_bytes + 1).as_bytes());
    put_str(&mut props, b"v");
    over(
        first_error(&connect(5, "a", None, None, &props)),
        "user_property",
    );
    // At the caps, all accepted.
    let user = "u".repeat(l.max_username_bytes);
    let pass = "p".repeat(l.max_password_bytes);
    assert!(decode_all(&connect(4, "a", Some(&user), Some(&pass), &[])).is_ok());
}

#[test]
fn a_publish_payload_is_the_packet_s_own_bytes() {
    let mut bytes = connect(4, "a", None, None, &[]);
    let mut body = Vec::new();
    put_str(&mut body, b"t");
    body.extend_from_slice(b"payload");
    bytes.extend(packet(0x30, &body));
    let got = decode_all(&bytes).unwrap();
    let Packet::Publish(p) = &got[1] else {
        panic!("{got:?}");
    };
    assert_eq!(&p.payload[..], b"payload");
}
