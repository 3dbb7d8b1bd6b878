//! The native protocol over in-memory pipes (`Daemon::connect_in_memory`):
//! the same admission, session and connection task as a socket, without
//! one. The deadline tests here run under tokio's paused clock: the
//! daemon's timers are advanced, not slept through, so each takes
//! milliseconds whatever the deadline.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestDaemon, frame, hello, reading};
use prost::Message as _;
use sensegate_client::wire::{self as v1, ErrorCode, envelope::Body};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

const PEER: ([u8; 4], u16) = ([192, 0, 2, 10], 1);

/// Reads one envelope from the pipe (the server's side is trusted to frame
/// correctly; the length is checked anyway).
async fn read_one(s: &mut DuplexStream) -> v1::Envelope {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes(header) as usize;
    assert!(len <= 1 << 20, "a frame of {len} bytes");
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.unwrap();
    v1::Envelope::decode(payload.as_slice()).unwrap()
}

/// Reads until the server closes the pipe.
async fn read_to_end(s: &mut DuplexStream) -> Vec<v1::Envelope> {
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if s.read_exact(&mut header).await.is_err() {
            return out;
        }
        let mut payload = vec![0u8; u32::from_le_bytes(header) as usize];
        s.read_exact(&mut payload).await.unwrap();
        out.push(v1::Envelope::decode(payload.as_slice()).unwrap());
    }
}

fn error_of(e: &v1::Envelope) -> (ErrorCode, &str) {
    match &e.body {
        Some(Body::Error(err)) => (ErrorCode::try_from(err.code).unwrap(), err.message.as_str()),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn signed_in(d: &TestDaemon, token: &sensegate_client::Secret) -> DuplexStream {
    let mut s = d.daemon.connect_in_memory(SocketAddr::from(PEER)).unwrap();
    s.write_all(&hello(token)).await.unwrap();
    assert!(matches!(
        read_one(&mut s).await.body,
        Some(Body::Welcome(_))
    ));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_pair_drives_hello_subscribe_push_and_batch() {
    let d = TestDaemon::start("").await;
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut reader = signed_in(&d, &d.admin).await;
    reader
        .write_all(&frame(
            Body::Subscribe(v1::SubscribeRequest {
                patterns: vec!["lab/*".into()],
            }),
            2,
        ))
        .await
        .unwrap();
    let sub = read_one(&mut reader).await;
    assert_eq!(sub.request_id, 2);
    assert!(matches!(
        sub.body,
        Some(Body::Subscribed(v1::SubscribeReply { active: 1 }))
    ));

    let mut dev = signed_in(&d, &device).await;
    let now = sensegate_gateway::reading::now_us();
    dev.write_all(&frame(
        Body::Push(v1::PushRequest {
            readings: vec![reading("lab/t", now, 21.5), reading("lab/h", now, 40.0)],
        }),
        3,
    ))
    .await
    .unwrap();
    let ack = read_one(&mut dev).await;
    assert_eq!(ack.request_id, 3);
    assert!(matches!(
        ack.body,
        Some(Body::PushAck(v1::PushAck { accepted: 2 }))
    ));

    let mut seen = Vec::new();
    while seen.len() < 2 {
        match read_one(&mut reader).await.body {
            Some(Body::Readings(b)) => seen.extend(b.readings),
            other => panic!("expected a batch, got {other:?}"),
        }
    }
    seen.sort_by(|a, b| a.sensor.cmp(&b.sensor));
    assert_eq!(
        seen.iter()
            .map(|r| (r.sensor.as_str(), r.value))
            .collect::<Vec<_>>(),
        [("lab/h", 40.0), ("lab/t", 21.5)]
    );
    // The pipes are connections like any other: in the registry, from the
    // peer they were given.
    let from_peer = d
        .daemon
        .service()
        .internals()
        .registry
        .list(10, |c| c.peer == SocketAddr::from(PEER));
    assert_eq!(from_peer.len(), 2);
}

/// No hello within `limits.auth_timeout_ms`: one error frame, then the
/// pipe is closed. Under the paused clock the 5 s deadline passes at once.
#[tokio::test(start_paused = true)]
async fn no_hello_in_time_under_the_paused_clock() {
    let d = TestDaemon::start("[store]\nenabled = false").await;
    let started = tokio::time::Instant::now();
    let wall = std::time::Instant::now();
    let mut s = d.daemon.connect_in_memory(SocketAddr::from(PEER)).unwrap();
    let got = read_to_end(&mut s).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        error_of(&got[0]),
        (ErrorCode::Unauthenticated, "no hello in time")
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(4500), "{waited:?}");
    assert!(wall.elapsed() < Duration::from_secs(4), "it slept");
}

/// A frame begun and never finished within `limits.frame_timeout_ms` is cut
/// off, paused clock again.
#[tokio::test(start_paused = true)]
async fn a_frame_left_unfinished_is_cut_off_under_the_paused_clock() {
    let d = TestDaemon::start("[store]\nenabled = false").await;
    let mut s = signed_in(&d, &d.admin).await;
    let started = tokio::time::Instant::now();
    // A header announcing 100 bytes, and 3 of them.
    s.write_all(&100u32.to_le_bytes()).await.unwrap();
    s.write_all(&[1, 2, 3]).await.unwrap();
    let got = read_to_end(&mut s).await;
    let last = got.last().unwrap();
    assert_eq!(
        error_of(last),
        (ErrorCode::Malformed, "frame not completed in time")
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

/// A signed-in connection that sends nothing is closed after
/// `limits.idle_timeout_secs`, with a goodbye saying so.
#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed_under_the_paused_clock() {
    let d = TestDaemon::start("[limits]\nidle_timeout_secs = 30\n[store]\nenabled = false").await;
    let mut s = signed_in(&d, &d.admin).await;
    let started = tokio::time::Instant::now();
    let got = read_to_end(&mut s).await;
    assert!(
        matches!(&got.last().unwrap().body, Some(Body::Goodbye(g)) if g.reason.contains("idle")),
        "{got:?}"
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(30)..Duration::from_secs(40)).contains(&waited),
        "{waited:?}"
    );
}
