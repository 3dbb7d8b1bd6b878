//! A bare rumqttc (MQTT 5) QoS 1 publish loop: `COUNT` messages of the
//! size the MQTT uplink sends, over TLS with a client certificate, at most
//! `INFLIGHT` unacknowledged; prints the acknowledged messages a second.
//!
//! Environment: MQTT_PORT, MQTT_CA, MQTT_CERT, MQTT_KEY, MQTT_TOPIC
//! (default sensegate/bench/bench/s, the uplink's topics), COUNT (default 200000), INFLIGHT (64),
//! SENSORS (10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

fn pem_items(path: &str) -> Vec<Vec<u8>> {
    // Base64 bodies between BEGIN/END lines, decoded by rustls' own PEM
    // reader.
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    use rustls::pki_types::pem::PemObject as _;
    let count: usize = std::env::var("COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let inflight: u16 = std::env::var("INFLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let sensors: usize = std::env::var("SENSORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let topic =
        std::env::var("MQTT_TOPIC").unwrap_or_else(|_| "sensegate/bench/bench/s".to_owned());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_items(&env("MQTT_CA")) {
        roots.add(c.into()).unwrap();
    }
    let chain = pem_items(&env("MQTT_CERT"))
        .into_iter()
        .map(Into::into)
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(env("MQTT_KEY")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut o = MqttOptions::new(
        "bench-baseline",
        "127.0.0.1",
        env("MQTT_PORT").parse().unwrap(),
    );
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(config),
    )));
    o.set_outgoing_inflight_upper_limit(inflight);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, usize::from(inflight));
    let topics: Vec<String> = (0..sensors).map(|i| format!("{topic}{i}")).collect();
    let publisher = tokio::spawn(async move {
        for n in 0..count {
            // The uplink's JSON payload, same size.
            let payload = format!(
                "{{\"value\":21.5,\"ts_us\":{},\"quality\":\"good\"}}",
                1_764_633_600_000_000_i64 + n as i64
            );
            client
                .publish(
                    topics[n % topics.len()].clone(),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
    });
    let mut acked = 0usize;
    let mut started = None;
    while acked < count {
        match events.poll().await.unwrap() {
            Event::Incoming(Packet::ConnAck(_)) => started = Some(Instant::now()),
            Event::Incoming(Packet::PubAck(_)) => acked += 1,
            _ => {}
        }
    }
    let elapsed = started.unwrap().elapsed();
    publisher.await.unwrap();
    println!(
        "rumqttc baseline: {acked} messages in {:.2} s, {:.0} acknowledged/s",
        elapsed.as_secs_f64(),
        acked as f64 / elapsed.as_secs_f64()
    );
}
