//! Parking: an idle plain-TCP connection is handed to the parker (no task,
//! no runtime I/O registration) and comes back whenever it has something to
//! do: a request, a kick, a revocation, the idle timeout, a shutdown. A
//! subscriber and an unauthenticated peer are never parked.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::time::{Duration, Instant};

use common::TestDaemon;
use sensegate_client::wire as v1;
use sensegate_client::{Client, ClientError};
use sensegate_gateway::reading::{Quality, Reading, now_us};

const PARK: &str = "park_after_ms = 50";

async fn until_parked(d: &TestDaemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.daemon.parked_connections() != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} parked, have {}",
            d.daemon.parked_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_parked_and_served_again_on_its_next_request() {
    let d = TestDaemon::start_native(PARK, "").await;
    let mut c = d.admin().await;
    until_parked(&d, 1).await;
    // Requests keep working, each one waking it.
    for _ in 0..5 {
        c.ping().await.unwrap();
        assert!(c.list_sensors("").await.is_ok());
        until_parked(&d, 1).await;
    }
    // A request that arrives in pieces, across a park, is cut correctly.
    let frame = common::frame(v1::envelope::Body::Ping(v1::Ping { nonce: 7 }), 7);
    let mut raw = d.raw().await;
    common::send(&mut raw, &common::hello(&d.admin)).await;
    let welcome = common::read_one(&mut raw).await;
    assert!(matches!(welcome.body, Some(v1::envelope::Body::Welcome(_))));
    until_parked(&d, 2).await;
    common::send(&mut raw, &frame[..3]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    common::send(&mut raw, &frame[3..]).await;
    let pong = common::read_one(&mut raw).await;
    assert_eq!(pong.request_id, 7);
    assert!(matches!(pong.body, Some(v1::envelope::Body::Pong(_))));
    until_parked(&d, 2).await;
    // Closing a parked connection frees its place.
    drop(raw);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d
        .daemon
        .service()
        .internals()
        .registry
        .list(100, |_| true)
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "closed connections stayed registered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.daemon.parked_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_hears_its_kick_revocation_and_idle_timeout() {
    let d = TestDaemon::start_native(PARK, "[limits]\nidle_timeout_secs = 2\n").await;
    let (id, token) = d.token(v1::Role::Reader, "*").await;
    let mut kicked = Client::connect(&d.options(&d.admin)).await.unwrap();
    let mut revoked = Client::connect(&d.options(&token)).await.unwrap();
    let mut idle = Client::connect(&d.options(&d.admin)).await.unwrap();
    until_parked(&d, 3).await;
    let mut admin = d.admin().await;
    admin.kick(kicked.welcome().connection_id).await.unwrap();
    admin.revoke_token(&id).await.unwrap();
    let goodbye = |r: Result<v1::ReadingBatch, ClientError>| match r {
        Err(ClientError::Goodbye(reason)) => reason,
        other => panic!("expected a goodbye, got {other:?}"),
    };
    let wait = Duration::from_secs(10);
    let r = tokio::time::timeout(wait, kicked.next_batch())
        .await
        .unwrap();
    assert!(goodbye(r).contains("administrator"));
    let r = tokio::time::timeout(wait, revoked.next_batch())
        .await
        .unwrap();
    assert_eq!(goodbye(r), "token revoked");
    let r = tokio::time::timeout(wait, idle.next_batch()).await.unwrap();
    assert_eq!(goodbye(r), "idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_parked_connections_and_waits_for_their_goodbye() {
    let d = TestDaemon::start_native(PARK, "").await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(d.admin().await);
    }
    until_parked(&d, 20).await;
    let TestDaemon { daemon, dir, .. } = d;
    let stop = tokio::spawn(daemon.shutdown(Duration::from_secs(5)));
    for mut c in clients {
        let r = tokio::time::timeout(Duration::from_secs(10), c.next_batch())
            .await
            .unwrap();
        assert!(
            matches!(&r, Err(ClientError::Goodbye(reason)) if reason == "server shutting down"),
            "{r:?}"
        );
    }
    stop.await.unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_and_peers_without_a_hello_are_not_parked() {
    let d = TestDaemon::start_native(PARK, "").await;
    let mut sub = d.admin().await;
    sub.subscribe(&["lab/*"]).await.unwrap();
    let _silent = d.raw().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.daemon.parked_connections(), 0);
    let service = d.daemon.service().clone();
    let sensor = service.source_sink("test").register("lab/t", "").unwrap();
    service.source_sink("test").ingest(&[Reading {
        sensor,
        timestamp_us: now_us(),
        value: 1.5,
        quality: Quality::Good,
    }]);
    let batch = tokio::time::timeout(Duration::from_secs(5), sub.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert!((batch.readings[0].value - 1.5).abs() < f64::EPSILON);
}
