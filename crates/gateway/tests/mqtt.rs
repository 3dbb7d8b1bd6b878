//! The MQTT front end through its real listener: publishing (QoS 0 and 1,
//! durable before PUBACK, refusals with their reason codes), subscribing
//! (retained latest, then live, within scope), the shared connection
//! registry and caps, revocation and kick, and hostile packets, each
//! followed by a check that a normal client is still served.
//!
//! The packets here are written by hand, byte by byte, from the
//! specification: the codec under test is not used to make its own input.
//! Real clients (mosquitto, paho-mqtt, MQTT.js) are in `scripts/interop.sh`.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestDaemon, rss_bytes};
use sensegate_client::wire as v1;
use sensegate_core::Frontend;
use sensegate_gateway::stats::{IngestRefusal, Limit};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const MQTT: &str = "[mqtt]\nenabled = true\ntls = false\nlisten = \"127.0.0.1:0\"\n";

async fn daemon(extra: &str) -> TestDaemon {
    TestDaemon::start(&format!("{extra}\n{MQTT}")).await
}

fn mqtt_addr(d: &TestDaemon) -> SocketAddr {
    d.daemon.mqtt_addr().unwrap()
}

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = u8::try_from(n % 128).unwrap();
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    varint(body.len(), &mut v);
    v.extend_from_slice(body);
    v
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT: clean start, keep alive 30 s, user name `dev` and the token
/// as password when given; MQTT 5 with `props` (already encoded, without
/// their length).
fn connect_props(level: u8, token: Option<&str>, props: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, b"MQTT");
    b.push(level);
    b.push(if token.is_some() { 0xC2 } else { 0x02 });
    b.extend_from_slice(&30u16.to_be_bytes());
    if level == 5 {
        varint(props.len(), &mut b);
        b.extend_from_slice(props);
    }
    put_str(&mut b, b"test-client");
    if let Some(t) = token {
        put_str(&mut b, b"dev");
        put_str(&mut b, t.as_bytes());
    }
    packet(0x10, &b)
}

fn connect(level: u8, token: Option<&str>) -> Vec<u8> {
    connect_props(level, token, &[])
}

fn publish(level: u8, topic: &str, qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, topic.as_bytes());
    if qos > 0 {
        b.extend_from_slice(&packet_id.to_be_bytes());
    }
    if level == 5 {
        b.push(0);
    }
    b.extend_from_slice(payload);
    packet(0x30 | qos << 1, &b)
}

fn subscribe_props(level: u8, packet_id: u16, filters: &[&str], props: &[u8]) -> Vec<u8> {
    let mut b = packet_id.to_be_bytes().to_vec();
    if level == 5 {
        varint(props.len(), &mut b);
        b.extend_from_slice(props);
    }
    for f in filters {
        put_str(&mut b, f.as_bytes());
        b.push(1);
    }
    packet(0x82, &b)
}

fn subscribe(level: u8, packet_id: u16, filters: &[&str]) -> Vec<u8> {
    subscribe_props(level, packet_id, filters, &[])
}

/// An MQTT 5 user property, encoded.
fn user_property(k: &str, v: &str) -> Vec<u8> {
    let mut b = vec![0x26];
    put_str(&mut b, k.as_bytes());
    put_str(&mut b, v.as_bytes());
    b
}

/// One packet the server sent: its first byte and its body.
#[derive(Debug, PartialEq)]
struct Pkt {
    first: u8,
    body: Vec<u8>,
}

impl Pkt {
    const fn kind(&self) -> u8 {
        self.first >> 4
    }
}

struct Peer {
    s: TcpStream,
    level: u8,
}

impl Peer {
    async fn raw(d: &TestDaemon) -> Self {
        Self {
            s: TcpStream::connect(mqtt_addr(d)).await.unwrap(),
            level: 5,
        }
    }

    async fn raw_from(d: &TestDaemon, ip: [u8; 4]) -> Self {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((ip, 0))).unwrap();
        Self {
            s: s.connect(mqtt_addr(d)).await.unwrap(),
            level: 5,
        }
    }

    /// Connected and accepted.
    async fn session(d: &TestDaemon, level: u8, token: &str) -> Self {
        let mut p = Self::raw(d).await;
        p.level = level;
        p.send(&connect(level, Some(token))).await;
        let ack = p.read().await.expect("a CONNACK");
        assert_eq!(ack.kind(), 2, "{ack:?}");
        assert_eq!(ack.body[1], 0, "refused: {ack:?}");
        p
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may close first.
        let _ = self.s.write_all(bytes).await;
    }

    /// The next packet, or `None` once the server closed.
    async fn read(&mut self) -> Option<Pkt> {
        tokio::time::timeout(Duration::from_secs(10), self.read_inner())
            .await
            .expect("the server neither answered nor closed in 10 s")
    }

    async fn read_inner(&mut self) -> Option<Pkt> {
        let mut first = [0u8; 1];
        if self.s.read_exact(&mut first).await.is_err() {
            return None;
        }
        let mut len = 0usize;
        for i in 0..4 {
            let mut b = [0u8; 1];
            self.s.read_exact(&mut b).await.ok()?;
            len |= usize::from(b[0] & 0x7F) << (7 * i);
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        self.s.read_exact(&mut body).await.ok()?;
        Some(Pkt {
            first: first[0],
            body,
        })
    }

    /// Everything until the server closes.
    async fn read_to_close(&mut self) -> Vec<Pkt> {
        let mut out = Vec::new();
        while let Some(p) = self.read().await {
            out.push(p);
        }
        out
    }

    /// A QoS 1 publish and its PUBACK's reason code.
    async fn publish_qos1(&mut self, topic: &str, id: u16, payload: &[u8]) -> u8 {
        self.send(&publish(self.level, topic, 1, id, payload)).await;
        let ack = self.read().await.expect("a PUBACK");
        assert_eq!(ack.kind(), 4, "{ack:?}");
        assert_eq!(&ack.body[..2], &id.to_be_bytes());
        ack.body.get(2).copied().unwrap_or(0)
    }

    async fn ping(&mut self) {
        self.send(&[0xC0, 0]).await;
        assert_eq!(
            self.read().await,
            Some(Pkt {
                first: 0xD0,
                body: vec![]
            })
        );
    }
}

/// A PUBLISH from the server: its topic, payload and retain flag.
fn published(p: &Pkt, level: u8) -> (String, String, bool) {
    assert_eq!(p.kind(), 3, "{p:?}");
    let tlen = usize::from(u16::from_be_bytes([p.body[0], p.body[1]]));
    let topic = String::from_utf8(p.body[2..2 + tlen].to_vec()).unwrap();
    let mut at = 2 + tlen;
    if level == 5 {
        assert_eq!(p.body[at], 0, "no properties expected");
        at += 1;
    }
    let payload = String::from_utf8(p.body[at..].to_vec()).unwrap();
    (topic, payload, p.first & 1 == 1)
}

/// A normal MQTT client and a native one are still served.
async fn assert_served(d: &TestDaemon) {
    let mut p = Peer::session(d, 5, d.admin.expose()).await;
    p.ping().await;
    d.assert_served().await;
}

fn refused(d: &TestDaemon, why: IngestRefusal) -> u64 {
    d.daemon
        .service()
        .counters()
        .ingest_refused
        .get(Frontend::Mqtt, why)
}

#[tokio::test]
async fn a_qos1_puback_comes_once_the_reading_is_in_history() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    for level in [4u8, 5] {
        let mut p = Peer::session(&d, level, device.expose()).await;
        let topic = format!("sensors/dev/v{level}");
        assert_eq!(p.publish_qos1(&topic, 7, b"21.5").await, 0);
        // Acknowledged: in history now, through the native protocol.
        let mut admin = d.admin().await;
        let h = admin
            .history(&format!("dev/v{level}"), 0, i64::MAX, 0, 10)
            .await
            .unwrap();
        assert_eq!(h.readings.len(), 1, "level {level}");
        assert!((h.readings[0].value - 21.5).abs() < 1e-9);
        // QoS 0 with a JSON payload and its own time.
        p.send(&publish(
            level,
            &topic,
            0,
            0,
            br#"{"value": 3, "ts": 1700000000.5}"#,
        ))
        .await;
        p.ping().await;
        let h = admin
            .history(&format!("dev/v{level}"), 0, i64::MAX, 0, 10)
            .await
            .unwrap();
        assert!(
            h.readings
                .iter()
                .any(|r| r.timestamp_us == 1_700_000_000_500_000 && (r.value - 3.0).abs() < 1e-9),
            "{h:?}"
        );
    }
}

#[tokio::test]
async fn refused_publishes_get_their_reason_code_and_are_counted() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let mut p = Peer::session(&d, 5, device.expose()).await;
    assert_eq!(p.publish_qos1("sensors/other/x", 1, b"1").await, 0x87);
    assert_eq!(p.publish_qos1("elsewhere/x", 2, b"1").await, 0x90);
    assert_eq!(p.publish_qos1("sensors/dev/x", 3, b"warm").await, 0x99);
    assert_eq!(refused(&d, IngestRefusal::Forbidden), 1);
    assert_eq!(refused(&d, IngestRefusal::Unmapped), 1);
    assert_eq!(refused(&d, IngestRefusal::BadPayload), 1);
    // A reader may not publish at all.
    let mut r = Peer::session(&d, 5, reader.expose()).await;
    assert_eq!(r.publish_qos1("sensors/dev/x", 4, b"1").await, 0x87);
    // MQTT 3.1.1 has no negative PUBACK: refused, acknowledged, not kept.
    let mut old = Peer::session(&d, 4, device.expose()).await;
    old.send(&publish(4, "sensors/other/y", 1, 9, b"1")).await;
    assert_eq!(
        old.read().await,
        Some(Pkt {
            first: 0x40,
            body: vec![0, 9]
        })
    );
    assert_eq!(refused(&d, IngestRefusal::Forbidden), 3);
    let mut admin = d.admin().await;
    assert!(admin.latest("other/y").await.is_err());
    assert!(admin.latest("other/x").await.is_err());
    // The session goes on after each refusal.
    assert_eq!(p.publish_qos1("sensors/dev/x", 5, b"1").await, 0);
    assert_served(&d).await;
}

/// A Tasmota device publishing its usual telemetry, through a preset: every
/// value becomes a reading, durable before the PUBACK; a message with one
/// value outside the token's scope is refused whole.
#[tokio::test]
async fn devices_with_their_own_topics_publish_through_mapping_rules() {
    let d = TestDaemon::start(&format!(
        "{MQTT}[[mqtt.rule]]\npreset = \"tasmota\"\n[[mqtt.rule]]\npreset = \"zigbee2mqtt\"\nfields = [\"temperature\"]\n"
    ))
    .await;
    let (_, device) = d.token(v1::Role::Device, "tasmota/garage/*").await;
    let mut p = Peer::session(&d, 4, device.expose()).await;
    let telemetry = br#"{"Time":"2024-05-01T12:00:00","DS18B20":{"Id":"0316A2795F0B","Temperature":21.5},"AM2301":{"Temperature":22.3,"Humidity":45.1},"TempUnit":"C"}"#;
    assert_eq!(p.publish_qos1("tele/garage/SENSOR", 1, telemetry).await, 0);
    let mut admin = d.admin().await;
    for (sensor, value) in [
        ("tasmota/garage/DS18B20/Temperature", 21.5),
        ("tasmota/garage/AM2301/Humidity", 45.1),
    ] {
        let h = admin.history(sensor, 0, i64::MAX, 0, 10).await.unwrap();
        assert!((h.readings[0].value - value).abs() < 1e-9, "{sensor}");
    }
    // Another device's topic is outside this token's scope: refused whole.
    let mut v5 = Peer::session(&d, 5, device.expose()).await;
    assert_eq!(
        v5.publish_qos1("tele/kitchen/SENSOR", 2, telemetry).await,
        0x87
    );
    // Zigbee2MQTT, with only the fields the rule keeps.
    let (_, zigbee) = d.token(v1::Role::Device, "zigbee/*").await;
    let mut z = Peer::session(&d, 5, zigbee.expose()).await;
    let aqara = br#"{"battery":97,"humidity":48.42,"linkquality":134,"temperature":21.37}"#;
    assert_eq!(z.publish_qos1("zigbee2mqtt/Living Room", 3, aqara).await, 0);
    assert!(admin.latest("zigbee/Living_Room/temperature").await.is_ok());
    assert!(admin.latest("zigbee/Living_Room/battery").await.is_err());
    // Tasmota's status topics match no rule: refused as unmapped.
    assert_eq!(z.publish_qos1("tele/garage/STATE", 4, b"{}").await, 0x90);
}

#[tokio::test]
async fn pipelined_qos1_publishes_are_acknowledged_in_order_after_one_commit() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut p = Peer::session(&d, 5, device.expose()).await;
    let mut burst = Vec::new();
    for id in 1..=20u16 {
        let topic = if id == 10 {
            "sensors/no/x".to_owned()
        } else {
            format!("sensors/dev/p{id}")
        };
        burst.extend(publish(5, &topic, 1, id, id.to_string().as_bytes()));
    }
    p.send(&burst).await;
    for id in 1..=20u16 {
        let ack = p.read().await.unwrap();
        assert_eq!(ack.kind(), 4);
        assert_eq!(&ack.body[..2], &id.to_be_bytes(), "PUBACKs in order");
        let reason = ack.body.get(2).copied().unwrap_or(0);
        assert_eq!(reason, if id == 10 { 0x87 } else { 0 }, "id {id}");
    }
    let mut admin = d.admin().await;
    assert!((admin.latest("dev/p20").await.unwrap().value - 20.0).abs() < 1e-9);
}

#[tokio::test]
async fn subscribers_get_the_latest_retained_then_live_readings_in_their_scope() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let (_, reader) = d.token(v1::Role::Reader, "dev/a*").await;
    let mut dev = Peer::session(&d, 5, device.expose()).await;
    assert_eq!(dev.publish_qos1("sensors/dev/a1", 1, b"1.5").await, 0);
    assert_eq!(dev.publish_qos1("sensors/dev/b1", 2, b"2.5").await, 0);
    let mut latest = "1.5".to_owned();
    for (level, next) in [(4u8, "4.25"), (5, "-7")] {
        let mut sub = Peer::session(&d, level, reader.expose()).await;
        sub.send(&subscribe(level, 3, &["sensors/#"])).await;
        let ack = sub.read().await.unwrap();
        assert_eq!(ack.kind(), 9, "{ack:?}");
        assert_eq!(*ack.body.last().unwrap(), 0, "granted QoS 0");
        // The latest of each sensor in scope, retained: dev/a1 only.
        let retained = published(&sub.read().await.unwrap(), level);
        assert_eq!(retained, ("sensors/dev/a1".into(), latest.clone(), true));
        // Then live readings, not retained; dev/b1 is out of scope.
        assert_eq!(dev.publish_qos1("sensors/dev/b1", 4, b"9").await, 0);
        assert_eq!(
            dev.publish_qos1("sensors/dev/a1", 5, next.as_bytes()).await,
            0
        );
        let live = published(&sub.read().await.unwrap(), level);
        assert_eq!(live, ("sensors/dev/a1".into(), next.into(), false));
        next.clone_into(&mut latest);
    }
    // A `+` filter matches one level only, and an MQTT 5 client may ask
    // for JSON payloads.
    assert_eq!(dev.publish_qos1("sensors/dev/a2/deep", 6, b"1").await, 0);
    let (_, all) = d.token(v1::Role::Reader, "*").await;
    let mut sub = Peer::session(&d, 5, all.expose()).await;
    let json = user_property("format", "json");
    sub.send(&subscribe_props(5, 8, &["sensors/dev/+"], &json))
        .await;
    assert_eq!(sub.read().await.unwrap().kind(), 9);
    let mut topics = Vec::new();
    for _ in 0..2 {
        let (topic, payload, retain) = published(&sub.read().await.unwrap(), 5);
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert!(
            v["value"].is_number() && v["ts_us"].is_i64() && retain,
            "{payload}"
        );
        topics.push(topic);
    }
    topics.sort();
    assert_eq!(topics, ["sensors/dev/a1", "sensors/dev/b1"]);
    assert_eq!(dev.publish_qos1("sensors/dev/a2/deep", 9, b"2").await, 0);
    assert_eq!(dev.publish_qos1("sensors/dev/b1", 10, b"3").await, 0);
    let (topic, payload, _) = published(&sub.read().await.unwrap(), 5);
    assert_eq!(topic, "sensors/dev/b1", "the deeper topic is not delivered");
    assert!(payload.contains("\"value\":3"), "{payload}");
    // Unsubscribed: nothing more.
    let mut b = 11u16.to_be_bytes().to_vec();
    b.push(0);
    put_str(&mut b, b"sensors/dev/+");
    sub.send(&packet(0xA2, &b)).await;
    assert_eq!(sub.read().await.unwrap().kind(), 11);
    assert_eq!(dev.publish_qos1("sensors/dev/b1", 12, b"4").await, 0);
    sub.ping().await;
}

#[tokio::test]
async fn devices_may_not_subscribe_and_shared_subscriptions_are_refused() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut p = Peer::session(&d, 5, device.expose()).await;
    p.send(&subscribe(5, 1, &["sensors/dev/#", "$share/g/sensors/#"]))
        .await;
    let ack = p.read().await.unwrap();
    assert_eq!(ack.body[3..], [0x87, 0x9E]);
    let mut old = Peer::session(&d, 4, device.expose()).await;
    old.send(&subscribe(4, 2, &["sensors/#"])).await;
    assert_eq!(old.read().await.unwrap().body, vec![0, 2, 0x80]);
}

#[tokio::test]
async fn bad_or_missing_tokens_get_not_authorized() {
    let d = daemon("").await;
    let bad = "sgt_0000000000000000_".to_owned() + &"0".repeat(64);
    for (level, token, code) in [
        (5u8, Some(bad.as_str()), 0x87u8),
        (5, None, 0x87),
        (4, Some(bad.as_str()), 5),
        (4, None, 5),
    ] {
        let mut p = Peer::raw(&d).await;
        p.send(&connect(level, token)).await;
        let got = p.read_to_close().await;
        assert_eq!(got[0].kind(), 2);
        assert_eq!(got[0].body[1], code, "level {level}");
    }
    assert_served(&d).await;
}

#[tokio::test]
async fn other_protocol_versions_and_bad_client_ids_get_their_connack() {
    let d = daemon("").await;
    // MQTT 3.1 and an unknown level: the 3.1.1 CONNACK, return code 1.
    let mut v31 = Vec::new();
    put_str(&mut v31, b"MQIsdp");
    v31.extend_from_slice(&[3, 0x02, 0, 30]);
    put_str(&mut v31, b"old");
    let mut six = connect(5, Some(d.admin.expose()));
    six[8] = 6;
    for bytes in [packet(0x10, &v31), six] {
        let mut p = Peer::raw(&d).await;
        p.send(&bytes).await;
        assert_eq!(
            p.read_to_close().await,
            vec![Pkt {
                first: 0x20,
                body: vec![0, 1]
            }]
        );
    }
    // 3.1.1: an empty client id needs a clean session [MQTT-3.1.3-8].
    let mut b = Vec::new();
    put_str(&mut b, b"MQTT");
    b.extend_from_slice(&[4, 0xC0, 0, 30]);
    put_str(&mut b, b"");
    put_str(&mut b, b"dev");
    put_str(&mut b, d.admin.expose().as_bytes());
    let mut p = Peer::raw(&d).await;
    p.send(&packet(0x10, &b)).await;
    assert_eq!(p.read_to_close().await[0].body, vec![0, 2]);
    // MQTT 5: an empty one is assigned.
    let mut b = Vec::new();
    put_str(&mut b, b"MQTT");
    b.extend_from_slice(&[5, 0xC2, 0, 30, 0]);
    put_str(&mut b, b"");
    put_str(&mut b, b"dev");
    put_str(&mut b, d.admin.expose().as_bytes());
    let mut p = Peer::raw(&d).await;
    p.send(&packet(0x10, &b)).await;
    let ack = p.read().await.unwrap();
    assert_eq!(ack.body[1], 0);
    assert!(
        ack.body.windows(10).any(|w| w == b"sensegate-"),
        "no assigned client id in {ack:?}"
    );
    assert_served(&d).await;
}

#[tokio::test]
async fn a_client_silent_past_its_keep_alive_is_disconnected() {
    let d = daemon("").await;
    let mut c = connect(5, Some(d.admin.expose()));
    // Keep alive: 1 s.
    c[10..12].copy_from_slice(&1u16.to_be_bytes());
    let mut p = Peer::raw(&d).await;
    p.send(&c).await;
    assert_eq!(p.read().await.unwrap().body[1], 0);
    let started = std::time::Instant::now();
    assert_eq!(
        p.read_to_close().await,
        vec![Pkt {
            first: 0xE0,
            body: vec![0x8D, 0]
        }]
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn revoking_a_token_or_kicking_ends_its_mqtt_sessions() {
    let d = daemon("").await;
    let (id, reader) = d.token(v1::Role::Reader, "*").await;
    let mut a = Peer::session(&d, 5, reader.expose()).await;
    let mut b = Peer::session(&d, 4, reader.expose()).await;
    let mut admin = d.admin().await;
    let listed = admin.list_connections().await.unwrap();
    let mqtt: Vec<_> = listed.iter().filter(|c| c.frontend == "mqtt").collect();
    assert_eq!(mqtt.len(), 2, "{listed:?}");
    assert_eq!(admin.revoke_token(&id).await.unwrap(), 2);
    // MQTT 5 is told why; 3.1.1 is closed.
    assert_eq!(
        a.read_to_close().await,
        vec![Pkt {
            first: 0xE0,
            body: vec![0x98, 0]
        }]
    );
    assert_eq!(b.read_to_close().await, vec![]);
    let (_, other) = d.token(v1::Role::Reader, "*").await;
    let mut c = Peer::session(&d, 5, other.expose()).await;
    let conn = admin
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.frontend == "mqtt")
        .unwrap();
    admin.kick(conn.id).await.unwrap();
    assert_eq!(c.read_to_close().await[0].body, vec![0x98, 0]);
}

#[tokio::test]
async fn the_connection_caps_are_shared_with_the_other_front_ends() {
    let d = daemon("[limits]\nmax_connections_per_address = 2").await;
    let _native = d.admin().await;
    let _first = Peer::session(&d, 5, d.admin.expose()).await;
    // The third from this address is closed at once, before a byte.
    let mut third = Peer::raw(&d).await;
    third.send(&connect(5, Some(d.admin.expose()))).await;
    assert_eq!(third.read_to_close().await, vec![]);
    assert!(
        d.daemon
            .service()
            .counters()
            .limits
            .get(Limit::ConnectionsPerAddress)
            >= 1
    );
    // Another address is served.
    let mut other = Peer::raw_from(&d, [127, 0, 0, 2]).await;
    other.send(&connect(5, Some(d.admin.expose()))).await;
    assert_eq!(other.read().await.unwrap().body[1], 0);
}

#[tokio::test]
async fn no_connect_in_time_is_closed() {
    let d = daemon("[limits]\nauth_timeout_ms = 300").await;
    let mut p = Peer::raw(&d).await;
    // Half a CONNECT, then nothing.
    p.send(&connect(5, Some(d.admin.expose()))[..10]).await;
    let started = std::time::Instant::now();
    assert_eq!(p.read_to_close().await, vec![]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(d.daemon.service().counters().limits.get(Limit::AuthTimeout) >= 1);
    assert_served(&d).await;
}

/// Each case: bytes sent after (or instead of) a CONNECT, and what the
/// server must answer before it closes.
#[tokio::test]
async fn hostile_packets_are_refused_and_everyone_else_is_served() {
    let d = daemon("").await;
    let token = d.admin.expose().to_owned();
    // Before CONNECT: only CONNECT, and a small one.
    let pre_auth: Vec<(&str, Vec<u8>, Vec<Pkt>)> = vec![
        (
            "a packet before CONNECT",
            publish(5, "sensors/x", 0, 0, b"1"),
            vec![],
        ),
        ("a PINGREQ before CONNECT", vec![0xC0, 0], vec![]),
        (
            "a five-byte remaining length",
            vec![0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            vec![],
        ),
        (
            "268,435,455 bytes announced",
            vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F],
            vec![],
        ),
        (
            "a CONNECT over the pre-authentication cap",
            connect_props(
                5,
                Some(&token),
                &user_property("pad", &"x".repeat(250)).repeat(20),
            ),
            vec![],
        ),
        ("garbage", vec![0x00; 64], vec![]),
    ];
    for (what, bytes, want) in pre_auth {
        let mut p = Peer::raw(&d).await;
        p.send(&bytes).await;
        assert_eq!(p.read_to_close().await, want, "{what}");
        assert_served(&d).await;
    }
    // After CONNECT (MQTT 5): a DISCONNECT with the reason, then close.
    let many_filters: Vec<String> = (0..3000).map(|i| format!("sensors/{i}")).collect();
    let many_filters: Vec<&str> = many_filters.iter().map(String::as_str).collect();
    let with_props = |props: Vec<u8>| {
        let mut b = Vec::new();
        put_str(&mut b, b"sensors/x");
        varint(props.len(), &mut b);
        b.extend(props);
        b.push(b'1');
        packet(0x30, &b)
    };
    // Thousands of (empty) user properties, and one property given twice
    // (payload format indicator).
    let thousands_of_props = with_props([0x26u8, 0, 0, 0, 0].repeat(3000));
    let twice = with_props([0x01u8, 0x00].repeat(2));
    let post_auth: Vec<(&str, Vec<u8>, u8)> = vec![
        ("a second CONNECT", connect(5, Some(&token)), 0x82),
        (
            "268,435,455 bytes announced",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F],
            0x95,
        ),
        (
            "a five-byte remaining length",
            vec![0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
            0x81,
        ),
        ("an empty topic", publish(5, "", 0, 0, b"1"), 0x90),
        (
            "an over-long topic",
            publish(5, &"a".repeat(300), 0, 0, b"1"),
            0x83,
        ),
        (
            "a wildcard in a topic",
            publish(5, "sensors/+/x", 0, 0, b"1"),
            0x90,
        ),
        ("a # in a topic", publish(5, "sensors/#", 1, 1, b"1"), 0x90),
        ("thousands of properties", thousands_of_props, 0x83),
        ("a property given twice", twice, 0x82),
        ("a QoS 2 publish", publish(5, "sensors/x", 2, 1, b"1"), 0x9B),
        ("thousands of filters", subscribe(5, 1, &many_filters), 0x83),
        ("a PUBREL", vec![0x62, 2, 0, 1], 0x82),
    ];
    for (what, bytes, reason) in post_auth {
        let mut p = Peer::session(&d, 5, &token).await;
        p.send(&bytes).await;
        assert_eq!(
            p.read_to_close().await,
            vec![Pkt {
                first: 0xE0,
                body: vec![reason, 0]
            }],
            "{what}"
        );
        assert_served(&d).await;
    }
    // MQTT 3.1.1 has no DISCONNECT from the server: just closed.
    let mut p = Peer::session(&d, 4, &token).await;
    p.send(&publish(4, "sensors/+", 0, 0, b"1")).await;
    assert_eq!(p.read_to_close().await, vec![]);
    assert!(d.daemon.service().counters().limits.get(Limit::FrameSize) >= 2);
}

/// The cap is announced, then trickled: the server closes at the header,
/// never waiting for (or reserving) the bytes.
#[tokio::test]
async fn a_huge_packet_trickled_is_refused_at_its_header() {
    let d = daemon("").await;
    let mut p = Peer::session(&d, 5, d.admin.expose()).await;
    for b in [0x30u8, 0xFF, 0xFF, 0xFF] {
        p.send(&[b]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    p.send(&[0x7F]).await;
    assert_eq!(p.read().await.unwrap().body, vec![0x95, 0]);
    assert!(started.elapsed() < Duration::from_secs(2));
    // A packet under the cap that trickles is cut off by the frame timeout.
    let d = daemon("[limits]\nframe_timeout_ms = 300").await;
    let mut p = Peer::session(&d, 5, d.admin.expose()).await;
    let whole = publish(5, "sensors/x", 0, 0, &[b'1'; 100]);
    p.send(&whole[..20]).await;
    let got = p.read_to_close().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        d.daemon
            .service()
            .counters()
            .limits
            .get(Limit::FrameTimeout)
            >= 1
    );
    assert_served(&d).await;
}

/// An idle MQTT connection waits on the daemon's parker, without a task,
/// like an idle native one: it is served when it speaks again, and a kick
/// or its keep alive still reaches it.
#[tokio::test]
async fn idle_mqtt_connections_are_parked_and_still_served() {
    let d = daemon("").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut peers = Vec::new();
    for _ in 0..5 {
        peers.push(Peer::session(&d, 5, device.expose()).await);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while d.daemon.parked_connections() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "not parked: {}",
            d.daemon.parked_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Back from the parker on the next packet, with its PUBACK.
    assert_eq!(
        peers[0].publish_qos1("sensors/dev/parked", 1, b"5").await,
        0
    );
    peers[1].ping().await;
    // A kick reaches a parked connection.
    while d.daemon.parked_connections() < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut admin = d.admin().await;
    let ids: Vec<u64> = admin
        .list_connections()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.frontend == "mqtt")
        .map(|c| c.id)
        .collect();
    assert_eq!(ids.len(), 5);
    for id in ids {
        admin.kick(id).await.unwrap();
    }
    for p in &mut peers {
        assert_eq!(p.read_to_close().await.last().unwrap().body, vec![0x98, 0]);
    }
    assert_eq!(d.daemon.parked_connections(), 0);
}

/// A wrong token, repeated from one address, is throttled by the same
/// verification as every front end's (`0x9F` past the allowance), and a
/// valid token from that address is still served.
#[tokio::test]
async fn wrong_tokens_are_throttled_per_address_and_a_valid_one_still_served() {
    let d = daemon("[limits]\nauth_failures_per_minute = 3").await;
    let bad = "sgt_0000000000000000_".to_owned() + &"0".repeat(64);
    let mut codes = Vec::new();
    for _ in 0..5 {
        let mut p = Peer::raw(&d).await;
        p.send(&connect(5, Some(&bad))).await;
        codes.push(p.read_to_close().await[0].body[1]);
    }
    assert_eq!(codes, [0x87, 0x87, 0x87, 0x9F, 0x9F]);
    Peer::session(&d, 5, d.admin.expose()).await.ping().await;
}

/// A publish outside the token's scope is audited like a native push
/// outside it; both front ends write the same line.
#[tokio::test]
async fn out_of_scope_publishes_are_audited() {
    let d = daemon("").await;
    let (id, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut p = Peer::session(&d, 5, device.expose()).await;
    assert_eq!(p.publish_qos1("sensors/other/x", 1, b"1").await, 0x87);
    let audit = std::fs::read_to_string(d.dir.path().join("audit.jsonl")).unwrap();
    let line = audit
        .lines()
        .find(|l| l.contains("\"push_denied\""))
        .unwrap_or_else(|| panic!("no push_denied line in {audit}"));
    assert!(
        line.contains(&id) && line.contains("\"sensor\":\"other/x\""),
        "{line}"
    );
    assert!(
        !line.contains(device.expose()),
        "the secret is never written"
    );
}

/// `/metrics` counts MQTT connections and refusals by reason.
#[tokio::test]
async fn metrics_show_the_mqtt_front_end_and_its_refusals() {
    let d = daemon("[http]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut p = Peer::session(&d, 5, device.expose()).await;
    assert_eq!(p.publish_qos1("nowhere/x", 1, b"1").await, 0x90);
    let mut s = TcpStream::connect(d.daemon.http_addr().unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    for want in [
        "sensegate_connections{frontend=\"mqtt\"} 1",
        "sensegate_ingest_refused_total{frontend=\"mqtt\",reason=\"unmapped\"} 1",
        "sensegate_ingest_refused_total{frontend=\"mqtt\",reason=\"forbidden\"} 0",
    ] {
        assert!(text.lines().any(|l| l == want), "no {want:?} in\n{text}");
    }
}

/// A subscriber that stops reading loses its oldest readings in the hub's
/// bounded queue or is cut off at the write timeout; the daemon's memory
/// does not follow the flood, and the publisher is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_stays_bounded() {
    let d = daemon(
        "[limits]\nwrite_timeout_ms = 1000\nsubscriber_queue = 64\npush_rate_per_sec = 10000000\n[store]\nenabled = false",
    )
    .await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let mut sub = Peer::session(&d, 5, reader.expose()).await;
    sub.send(&subscribe_props(
        5,
        1,
        &["sensors/#"],
        &user_property("format", "json"),
    ))
    .await;
    assert_eq!(sub.read().await.unwrap().kind(), 9);
    // From here the subscriber reads nothing: 100,000 readings of about
    // 200 bytes each go its way, far more than the sockets' buffers hold.
    let before = rss_bytes();
    let mut dev = Peer::session(&d, 5, device.expose()).await;
    let big = "x".repeat(100);
    for chunk in 0..100u32 {
        let mut burst = Vec::new();
        for i in 0..1000u32 {
            let n = (chunk * 1000 + i) % 500;
            burst.extend(publish(5, &format!("sensors/dev/{big}{n}"), 0, 0, b"1.5"));
        }
        dev.send(&burst).await;
    }
    dev.ping().await;
    let grew = rss_bytes().saturating_sub(before);
    eprintln!("an unread MQTT subscriber: RSS grew by {} KiB", grew >> 10);
    assert!(grew < 32 << 20, "RSS grew by {} MiB", grew >> 20);
    let metrics = d.daemon.service().metrics(None).unwrap();
    let cut_off = d.daemon.service().counters().limits.get(Limit::SlowReader);
    assert!(
        metrics.hub.dropped > 0 || cut_off > 0,
        "neither dropped nor cut off"
    );
    eprintln!("dropped {}, cut off {cut_off}", metrics.hub.dropped);
}

/// The idle timeout closes an MQTT session like any other (a client
/// without a keep alive included).
#[tokio::test]
async fn an_idle_mqtt_session_is_closed_at_the_idle_timeout() {
    let d = daemon("[limits]\nidle_timeout_secs = 1").await;
    let mut c = connect(5, Some(d.admin.expose()));
    c[10..12].copy_from_slice(&0u16.to_be_bytes());
    let mut p = Peer::raw(&d).await;
    p.send(&c).await;
    assert_eq!(p.read().await.unwrap().body[1], 0);
    let started = std::time::Instant::now();
    let got = p.read_to_close().await;
    assert_eq!(got.last().map(|p| p.body.clone()), Some(vec![0x8D, 0]));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(d.daemon.service().counters().limits.get(Limit::IdleTimeout) >= 1);
}

/// MQTT 3.1.1 has no negative PUBACK: a publish refused for a reason that
/// may pass later (here the token's push rate) is not acknowledged; the
/// connection closes after the PUBACKs before it, so the client sends it
/// again. Nothing is acknowledged that was not kept.
#[tokio::test]
async fn a_3_1_1_publish_refused_for_now_is_not_acknowledged() {
    let d = daemon("[limits]\npush_rate_per_sec = 2").await;
    let (_, device) = d.token(v1::Role::Device, "dev/*").await;
    let mut p = Peer::session(&d, 4, device.expose()).await;
    let mut burst = Vec::new();
    for id in 1..=5u16 {
        burst.extend(publish(4, &format!("sensors/dev/r{id}"), 1, id, b"1"));
    }
    p.send(&burst).await;
    let got = p.read_to_close().await;
    let acked: Vec<u16> = got
        .iter()
        .map(|a| u16::from_be_bytes([a.body[0], a.body[1]]))
        .collect();
    assert_eq!(acked, [1, 2], "{got:?}");
    let mut admin = d.admin().await;
    assert!(admin.latest("dev/r2").await.is_ok());
    assert!(admin.latest("dev/r3").await.is_err());
    // MQTT 5 is told 0x96 and keeps its connection.
    let mut v5 = Peer::session(&d, 5, device.expose()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut codes = Vec::new();
    for id in 1..=4u16 {
        codes.push(
            v5.publish_qos1(&format!("sensors/dev/s{id}"), id, b"1")
                .await,
        );
    }
    assert_eq!(codes, [0, 0, 0x96, 0x96]);
    v5.ping().await;
}

/// SUBSCRIBE again and again, reading nothing: each brings the latest
/// readings retained, but what waits for the peer is bounded
/// (`limits.reply_bytes_per_connection`), it is cut off at the write
/// timeout, and everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_subscribes_that_are_never_read_hold_bounded_memory() {
    let d = daemon("[limits]\nwrite_timeout_ms = 1000\nidle_timeout_secs = 300").await;
    d.big_sensors(1000).await;
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let before = rss_bytes();
    let mut peers = Vec::new();
    for i in 0..4u8 {
        let mut p = Peer::raw_from(&d, [127, 0, 2, i + 1]).await;
        p.send(&connect(4, Some(reader.expose()))).await;
        assert_eq!(p.read().await.unwrap().body[1], 0);
        // 512 SUBSCRIBEs of `sensors/#` in 4 KiB, each worth 256 retained
        // readings of about 130 bytes.
        let one = subscribe(4, 1, &["sensors/#"]);
        let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 512).collect();
        p.send(&burst).await;
        peers.push(p);
    }
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss_bytes().saturating_sub(before));
    }
    assert_served(&d).await;
    eprintln!(
        "repeated subscribes, unread: RSS grew by {} MiB at most",
        peak >> 20
    );
    assert!(peak < 64 << 20, "RSS grew by {} MiB", peak >> 20);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.daemon.service().counters().limits.get(Limit::SlowReader) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled peers were not cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(peers);
}

/// The rest of what the review found a real client would meet: an
/// UNSUBACK says which filters had no subscription, a filter whose pattern
/// would be over the cap is refused, enhanced authentication is refused,
/// and an MQTT 5 client with a keep alive longer than the idle timeout
/// allows is told a shorter one.
#[tokio::test]
async fn unsuback_codes_long_filters_auth_methods_and_the_server_keep_alive() {
    let d = daemon("[limits]\nidle_timeout_secs = 60\nmax_pattern_bytes = 64").await;
    let mut p = Peer::session(&d, 5, d.admin.expose()).await;
    p.send(&subscribe(5, 1, &["sensors/a"])).await;
    assert_eq!(p.read().await.unwrap().body[3..], [0]);
    let mut unsub = 2u16.to_be_bytes().to_vec();
    unsub.push(0);
    put_str(&mut unsub, b"sensors/a");
    put_str(&mut unsub, b"sensors/b");
    p.send(&packet(0xA2, &unsub)).await;
    assert_eq!(p.read().await.unwrap().body[3..], [0x00, 0x11]);
    // Within the topic cap, but its pattern is over `max_pattern_bytes`.
    let long = format!("sensors/{}", "a".repeat(100));
    p.send(&subscribe(5, 3, &[long.as_str()])).await;
    assert_eq!(p.read().await.unwrap().body[3..], [0x8F]);
    // Authentication method (0x15) "SCRAM-SHA-1".
    let mut method = vec![0x15];
    put_str(&mut method, b"SCRAM-SHA-1");
    let mut q = Peer::raw(&d).await;
    q.send(&connect_props(5, Some(d.admin.expose()), &method))
        .await;
    assert_eq!(q.read_to_close().await[0].body[1], 0x8C);
    // Keep alive 30 s (the test CONNECT's) is under 40 s: not told. 0 and
    // 600 s are: 40 s, two thirds of the idle timeout.
    let mut short = Peer::raw(&d).await;
    short.send(&connect(5, Some(d.admin.expose()))).await;
    let ack = short.read().await.unwrap();
    assert!(
        !ack.body.windows(1).any(|w| w == [0x13])
            || !ack.body.windows(3).any(|w| w[0] == 0x13 && w[1] == 0),
        "{ack:?}"
    );
    for ka in [0u16, 600] {
        let mut c = connect(5, Some(d.admin.expose()));
        c[10..12].copy_from_slice(&ka.to_be_bytes());
        let mut long_ka = Peer::raw(&d).await;
        long_ka.send(&c).await;
        let ack = long_ka.read().await.unwrap();
        assert!(
            ack.body.windows(3).any(|w| w == [0x13, 0, 40]),
            "keep alive {ka}: {ack:?}"
        );
    }
}

/// 1,000 peers that each send half a CONNECT and wait: memory stays small
/// and a normal client is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_peers_stay_under_256_mib() {
    let d = daemon("[limits]\nmax_connections = 1100\nmax_connections_per_address = 4").await;
    let half = connect(5, Some(d.admin.expose()));
    let mut peers = Vec::new();
    for i in 0..1000u16 {
        let n = i / 4;
        let ip = [
            127,
            1,
            u8::try_from(n / 200).unwrap(),
            u8::try_from(n % 200 + 1).unwrap(),
        ];
        let mut p = Peer::raw_from(&d, ip).await;
        p.send(&half[..half.len() / 2]).await;
        peers.push(p);
    }
    // Connected on our side once in the listen backlog: wait until the
    // daemon has accepted them all.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.daemon.service().connection_count() < 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "accepted {}",
            d.daemon.service().connection_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_served(&d).await;
    let rss = rss_bytes();
    eprintln!("1,000 slow MQTT peers: resident memory {} MiB", rss >> 20);
    assert!(rss < 256 << 20, "resident memory {} MiB", rss >> 20);
    drop(peers);
}
