//! PUBLISH, PUBACK, SUBSCRIBE and UNSUBSCRIBE against what clients send and
//! what the issue's hostile cases send, and the broker's replies byte for
//! byte.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use bytes::BytesMut;
use common::{packet, put_str};
use sensegate_mqtt::pubsub::{
    encode_puback, encode_suback, encode_unsuback, is_topic_filter, is_topic_name,
};
use sensegate_mqtt::{
    DecodeError, Decoder, Granted, Limits, OutPublish, Packet, ProtocolVersion, ReasonCode,
};

fn connect(level: u8) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.extend_from_slice(&[level, 0x02, 0, 30]);
    if level == 5 {
        body.push(0);
    }
    put_str(&mut body, b"c");
    packet(0x10, &body)
}

/// Decodes `packets` after a CONNECT of `level`; the packets after it.
fn after_connect(level: u8, packets: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut d = Decoder::new(Limits::DEFAULT);
    let mut bytes = connect(level);
    bytes.extend_from_slice(packets);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut out = Vec::new();
    while let Some(p) = d.decode(&mut buf)? {
        out.push(p);
    }
    out.remove(0);
    Ok(out)
}

fn publish(
    first: u8,
    topic: &str,
    id: Option<u16>,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    if let Some(id) = id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    if let Some(p) = props {
        body.push(u8::try_from(p.len()).unwrap());
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

#[test]
fn qos_0_and_1_publishes_decode_with_their_payload() {
    let mut bytes = publish(0x30, "sensors/lab/t", None, None, b"21.5");
    bytes.extend(publish(
        0x33,
        "tele/gw/SENSOR",
        Some(7),
        None,
        br#"{"DS18B20":{"Temperature":21.5}}"#,
    ));
    let got = after_connect(4, &bytes).unwrap();
    let [Packet::Publish(a), Packet::Publish(b)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(
        (a.topic.as_str(), a.qos, a.packet_id, &a.payload[..]),
        ("sensors/lab/t", 0, None, &b"21.5"[..])
    );
    assert_eq!((b.qos, b.retain, b.packet_id), (1, true, Some(7)));
    // MQTT 5: with properties (payload format, a user property).
    let mut props = vec![0x01, 1, 0x26];
    put_str(&mut props, b"unit");
    put_str(&mut props, b"C");
    let got = after_connect(5, &publish(0x32, "sensors/x", Some(1), Some(&props), b"1")).unwrap();
    let [Packet::Publish(p)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(p.user_properties, [("unit".to_owned(), "C".to_owned())]);
}

#[test]
fn bad_publishes_are_refused_with_their_reason() {
    let e = |level, bytes: Vec<u8>| after_connect(level, &bytes).unwrap_err();
    // QoS 2: not supported (0x9B); QoS 3: malformed.
    let q2 = e(5, publish(0x34, "t", Some(1), Some(&[]), b""));
    assert_eq!(q2, DecodeError::QosNotSupported);
    assert_eq!(q2.reason(), ReasonCode::QosNotSupported);
    assert!(matches!(
        e(4, publish(0x36, "t", Some(1), None, b"")),
        DecodeError::BadFlags { .. }
    ));
    // DUP on QoS 0.
    assert!(matches!(
        e(4, publish(0x38, "t", None, None, b"")),
        DecodeError::BadFlags { .. }
    ));
    // An empty topic, wildcards in a published topic, an over-long one.
    assert!(matches!(
        e(4, publish(0x30, "", None, None, b"")),
        DecodeError::BadTopic { .. }
    ));
    assert!(matches!(
        e(4, publish(0x30, "a/+/b", None, None, b"")),
        DecodeError::BadTopic { .. }
    ));
    assert!(matches!(
        e(4, publish(0x30, "a/#", None, None, b"")),
        DecodeError::BadTopic { .. }
    ));
    assert_eq!(
        e(4, publish(0x30, &"t".repeat(257), None, None, b"")),
        DecodeError::FieldTooLong {
            field: "publish.topic",
            len: 257,
            max: 256
        }
    );
    // Packet identifier 0 on QoS 1.
    assert!(matches!(
        e(4, publish(0x32, "t", Some(0), None, b"")),
        DecodeError::Forbidden { .. }
    ));
    // MQTT 5: a topic alias (none offered), a subscription identifier.
    assert_eq!(
        e(5, publish(0x30, "t", None, Some(&[0x23, 0, 1]), b"")),
        DecodeError::TopicAlias
    );
    assert!(matches!(
        e(5, publish(0x30, "t", None, Some(&[0x0B, 1]), b"")),
        DecodeError::Malformed { .. }
    ));
    // Over the packet cap, from the header alone.
    let mut big = publish(0x30, "t", None, None, &vec![0; 70_000]);
    big.truncate(10);
    assert!(matches!(e(4, big), DecodeError::TooLarge { .. }));
}

fn subscribe(level: u8, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = vec![0, 9];
    if level == 5 {
        body.push(0);
    }
    for (f, o) in filters {
        put_str(&mut body, f.as_bytes());
        body.push(*o);
    }
    packet(0x82, &body)
}

#[test]
fn subscribes_decode_their_filters_within_the_cap() {
    let got = after_connect(
        5,
        &subscribe(
            5,
            &[("sensors/#", 1), ("zigbee2mqtt/+", 0), ("$share/g/x", 0)],
        ),
    )
    .unwrap();
    let [Packet::Subscribe(s)] = got.as_slice() else {
        panic!("{got:?}");
    };
    assert_eq!(s.packet_id, 9);
    assert_eq!(s.filters.len(), 3);
    assert_eq!(
        (s.filters[0].filter.as_str(), s.filters[0].qos),
        ("sensors/#", 1)
    );
    assert!(s.filters[2].shared && !s.filters[0].shared);
    // Thousands of filters: refused past the cap of 16.
    let many: Vec<(String, u8)> = (0..2000).map(|i| (format!("f/{i}"), 0)).collect();
    let refs: Vec<(&str, u8)> = many.iter().map(|(f, o)| (f.as_str(), *o)).collect();
    let e = after_connect(4, &subscribe(4, &refs[..17])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::FieldTooLong {
            field: "subscribe.filters",
            len: 17,
            max: 16
        }
    );
    assert!(after_connect(4, &subscribe(4, &refs)).is_err());
    // Wrong fixed-header flags, no filter, bad filters, reserved option bits.
    let mut flags = subscribe(4, &[("a", 0)]);
    flags[0] = 0x80;
    assert!(matches!(
        after_connect(4, &flags).unwrap_err(),
        DecodeError::BadFlags { .. }
    ));
    assert!(matches!(
        after_connect(4, &subscribe(4, &[])).unwrap_err(),
        DecodeError::Forbidden { .. }
    ));
    for bad in ["a/#/b", "sport+", "", "a#"] {
        assert!(
            matches!(
                after_connect(4, &subscribe(4, &[(bad, 0)])).unwrap_err(),
                DecodeError::BadFilter { .. }
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        after_connect(4, &subscribe(4, &[("a", 0x04)])).unwrap_err(),
        DecodeError::Malformed { .. }
    ));
    assert!(matches!(
        after_connect(5, &subscribe(5, &[("a", 0x40)])).unwrap_err(),
        DecodeError::Malformed { .. }
    ));
    assert!(matches!(
        after_connect(4, &subscribe(4, &[("a", 0x03)])).unwrap_err(),
        DecodeError::Forbidden { .. }
    ));
    assert!(matches!(
        after_connect(5, &subscribe(5, &[("a", 0x30)])).unwrap_err(),
        DecodeError::Forbidden { .. }
    ));
}

#[test]
fn unsubscribes_and_pubacks_decode() {
    let mut body = vec![0, 3];
    put_str(&mut body, b"sensors/#");
    let mut bytes = packet(0xA2, &body);
    bytes.extend(packet(0x40, &[0, 7]));
    let got = after_connect(4, &bytes).unwrap();
    assert!(
        matches!(&got[0], Packet::Unsubscribe(u) if u.packet_id == 3 && u.filters == ["sensors/#"])
    );
    assert!(matches!(&got[1], Packet::PubAck(a) if a.packet_id == 7 && a.reason == 0));
    let got = after_connect(5, &packet(0x40, &[0, 8, 0x10, 0])).unwrap();
    assert!(matches!(&got[0], Packet::PubAck(a) if a.packet_id == 8 && a.reason == 0x10));
}

#[test]
fn topic_names_and_filters_follow_the_specification() {
    assert!(is_topic_name("sensors/lab/t") && !is_topic_name("") && !is_topic_name("a/+"));
    for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b"] {
        assert!(is_topic_filter(ok), "{ok}");
    }
    for bad in ["", "a#", "#/a", "a/b#", "a+/b", "++"] {
        assert!(!is_topic_filter(bad), "{bad}");
    }
}

#[test]
fn the_broker_side_encodes_byte_for_byte() {
    let mut out = BytesMut::new();
    let p = OutPublish {
        topic: "sensors/a",
        qos: 0,
        retain: true,
        packet_id: None,
        payload: b"1.5",
    };
    p.encode(ProtocolVersion::V311, &mut out);
    assert_eq!(&out[..], b"\x31\x0e\x00\x09sensors/a1.5");
    assert_eq!(p.encoded_len(ProtocolVersion::V311), out.len());
    out.clear();
    let p = OutPublish {
        topic: "t",
        qos: 1,
        retain: false,
        packet_id: Some(258),
        payload: b"x",
    };
    p.encode(ProtocolVersion::V5, &mut out);
    assert_eq!(&out[..], [0x32, 7, 0, 1, b't', 1, 2, 0, b'x']);
    assert_eq!(p.encoded_len(ProtocolVersion::V5), out.len());
    // The encoded publish decodes again (a client's view, after CONNECT).
    out.clear();
    encode_puback(
        ProtocolVersion::V311,
        5,
        ReasonCode::NotAuthorized,
        &mut out,
    );
    encode_puback(ProtocolVersion::V5, 5, ReasonCode::Success, &mut out);
    encode_puback(ProtocolVersion::V5, 5, ReasonCode::NotAuthorized, &mut out);
    assert_eq!(
        &out[..],
        [0x40, 2, 0, 5, 0x40, 2, 0, 5, 0x40, 4, 0, 5, 0x87, 0]
    );
    out.clear();
    let codes = [Granted::Qos(1), Granted::Refused(ReasonCode::NotAuthorized)];
    encode_suback(ProtocolVersion::V311, 9, &codes, &mut out);
    encode_suback(ProtocolVersion::V5, 9, &codes, &mut out);
    assert_eq!(
        &out[..],
        [0x90, 4, 0, 9, 1, 0x80, 0x90, 5, 0, 9, 0, 1, 0x87]
    );
    out.clear();
    encode_unsuback(ProtocolVersion::V311, 3, &[true, false], &mut out);
    encode_unsuback(ProtocolVersion::V5, 3, &[true, false], &mut out);
    assert_eq!(&out[..], [0xB0, 2, 0, 3, 0xB0, 5, 0, 3, 0, 0, 0x11]);
}

#[test]
fn filters_match_names_level_by_level() {
    use sensegate_mqtt::filter_matches;
    let yes = [
        ("sensors/#", "sensors/a/b"),
        ("sensors/#", "sensors"),
        ("sensors/+/temp", "sensors/room1/temp"),
        ("+/+", "a/b"),
        ("#", "a/b/c"),
        ("a/+", "a/"),
        ("sensors/room1/temp", "sensors/room1/temp"),
    ];
    let no = [
        ("sensors/+", "sensors/a/b"),
        ("sensors/+/temp", "sensors/room1/hum"),
        ("sensors", "sensors/a"),
        ("sensors/a", "sensors"),
        ("#", "$SYS/uptime"),
        ("+/uptime", "$SYS/uptime"),
        ("sensors/a", "Sensors/a"),
    ];
    for (f, n) in yes {
        assert!(filter_matches(f, n), "{f} should match {n}");
    }
    for (f, n) in no {
        assert!(!filter_matches(f, n), "{f} should not match {n}");
    }
}
