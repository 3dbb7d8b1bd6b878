//! The MQTT uplink against a real Mosquitto 2 broker: TLS with client
//! certificates, each gateway confined to its own prefix by the broker's
//! ACL (`common::broker::ACL`), and `mosquitto_sub` as the site's reader.
//! Every reading the gateway acknowledged to a device must reach the
//! reader (at least once: a batch sent again may repeat some); a publish
//! the ACL refuses is never counted as delivered; the broker killed and
//! restarted mid-stream loses nothing.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Gateway;
use common::broker::{Broker, Subscriber};
use common::devices::{Devices, base, device_secret, fault_delay};
use common::pg::Proxy;

/// The (sensor, µs) of every message the reader got, from its topic
/// `sensegate/<gateway>/<sensor>` and JSON payload.
fn received(sub: &Subscriber, gateway: &str) -> BTreeSet<(String, i64)> {
    let prefix = format!("sensegate/{gateway}/");
    sub.messages()
        .iter()
        .filter_map(|(topic, payload)| {
            let sensor = topic.strip_prefix(&prefix)?;
            let v: serde_json::Value = serde_json::from_str(payload).ok()?;
            Some((sensor.to_owned(), v["ts_us"].as_i64()?))
        })
        .collect()
}

fn wait_received(sub: &Subscriber, gw: &Gateway, acked: &BTreeSet<(String, i64)>) {
    assert!(!acked.is_empty(), "no push was acknowledged");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = received(sub, "gw-a");
        let lost = acked.difference(&got).count();
        if lost == 0 {
            return;
        }
        if Instant::now() > deadline {
            for l in gw.log_lines().iter().filter(|l| l.contains("uplink")) {
                eprintln!("{l}");
            }
            panic!(
                "{lost} of {} acknowledged readings not received",
                acked.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_reach_the_reader_under_the_gateways_own_prefix() {
    let Some(broker) = Broker::start(&["gw-a"]) else {
        return;
    };
    let sub = broker.subscribe("sensegate/#");
    let gw = Gateway::start_named("gw-a", &broker.uplink(broker.port, "gw-a", ""));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 2, 10, base())
        .finish()
        .await;
    assert_eq!(acked.len(), 2000);
    wait_received(&sub, &gw, &acked);
    // JSON as the MQTT listener writes it.
    let (topic, payload) = sub.messages().into_iter().next().unwrap();
    assert!(topic.starts_with("sensegate/gw-a/dev/d"), "{topic}");
    assert!(payload.contains("\"quality\":\"good\""), "{payload}");
    gw.settle("bus");
    assert!(
        gw.metric("sensegate_uplink_rows_total{uplink=\"bus\",kind=\"mqtt\"}")
            .unwrap()
            >= 2000.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_outside_the_gateways_prefix_is_refused_and_never_counted_delivered() {
    let Some(broker) = Broker::start(&["gw-a"]) else {
        return;
    };
    let sub = broker.subscribe("sensegate/#");
    // gw-a's certificate, another gateway's prefix: the ACL says no.
    let gw = Gateway::start_named(
        "gw-a",
        &broker.uplink(broker.port, "gw-a", "topic = \"sensegate/gw-b/{sensor}\"\n"),
    );
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 1, 5, base())
        .finish()
        .await;
    assert_eq!(acked.len(), 500);
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw
        .metric("sensegate_uplink_retries_total{uplink=\"bus\"")
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(Instant::now() < deadline, "no refusal seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.log_lines()
            .iter()
            .any(|l| l.contains("was refused, reason 0x87")),
        "{:?}",
        gw.log_lines()
    );
    assert_eq!(
        gw.metric("sensegate_uplink_rows_total{uplink=\"bus\""),
        Some(0.0)
    );
    assert_eq!(
        gw.metric("sensegate_uplink_delivered_seq{uplink=\"bus\""),
        Some(0.0)
    );
    assert!(sub.messages().is_empty(), "{:?}", sub.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_killed_and_restarted_mid_stream() {
    let Some(mut broker) = Broker::start(&["gw-a"]) else {
        return;
    };
    // The gateway reaches the broker through a proxy, held cut after the
    // kill until the reader has subscribed again (the broker keeps no
    // session for it): what the gateway sends again must find it there.
    let proxy = Proxy::start(broker.port).await;
    let sub = broker.subscribe("sensegate/#");
    // Paced below what the reader takes even on a loaded machine: what the
    // broker acknowledged is then written on to the reader, not queued in
    // the broker's memory, where the kill would lose it (the broker's loss,
    // not the gateway's: docs/site.md).
    let gw = Gateway::start_named(
        "gw-a",
        &broker.uplink(
            proxy.port,
            "gw-a",
            "batch_readings = 200\nmax_rows_per_sec = 2000\n",
        ),
    );
    let secret = device_secret(&gw).await;
    let devices = Devices::start(&gw.addr, &secret, 2, 30, base());
    // Mid-stream: publishes are acknowledged, and devices go on pushing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw
        .metric("sensegate_uplink_rows_total{uplink=\"bus\"")
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(fault_delay(
        "the_broker_killed_and_restarted_mid_stream",
        300,
    ))
    .await;
    proxy.cut();
    broker.kill();
    // What the broker wrote to the reader before it died is read out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = received(&sub, "gw-a");
    drop(sub);
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();
    let sub = broker.subscribe("sensegate/#");
    proxy.restore();
    let acked = devices.finish().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: BTreeSet<_> = before.union(&received(&sub, "gw-a")).cloned().collect();
        let lost = acked.difference(&got).count();
        if lost == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{lost} of {} acknowledged readings not received",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.metric("sensegate_uplink_retries_total{uplink=\"bus\"")
            .unwrap()
            >= 1.0
    );
}
