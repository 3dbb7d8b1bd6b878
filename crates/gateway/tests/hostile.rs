//! Hostile peers against a real daemon on 127.0.0.1, each followed by a
//! check that a normal client is still served.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod common;

use std::time::Duration;

use common::{
    TestDaemon, frame, hello, last_error, read_one, read_until_closed, reading, rss_bytes, send,
};
use sensegate_client::wire::{self as v1, ErrorCode, envelope::Body};
use sensegate_client::{Client, ClientError};
use tokio::io::AsyncWriteExt as _;

async fn expect_close_with(d: &TestDaemon, bytes: &[u8], code: ErrorCode) -> String {
    let mut s = d.raw().await;
    send(&mut s, bytes).await;
    let got = read_until_closed(&mut s).await;
    let (c, message) = last_error(&got);
    assert_eq!(c, code, "{message}");
    message
}

#[tokio::test]
async fn framing_attacks_get_one_error_frame_and_the_daemon_goes_on() {
    let d = TestDaemon::start("").await;
    // A length prefix of 0xFFFFFFFF.
    expect_close_with(&d, &[0xFF; 4], ErrorCode::FrameTooLarge).await;
    d.assert_served().await;
    // One byte over the cap.
    let over = (1u32 << 20) + 1;
    expect_close_with(&d, &over.to_le_bytes(), ErrorCode::FrameTooLarge).await;
    d.assert_served().await;
    // Zero length.
    expect_close_with(&d, &[0, 0, 0, 0], ErrorCode::Malformed).await;
    d.assert_served().await;
    // A valid frame whose payload is not an envelope.
    let mut junk = 6u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    expect_close_with(&d, &junk, ErrorCode::Malformed).await;
    d.assert_served().await;
    // Random bytes (a fixed xorshift stream, 64 KiB).
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let random: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut s = d.raw().await;
    send(&mut s, &random).await;
    let (code, _) = last_error(&read_until_closed(&mut s).await);
    assert!(
        matches!(code, ErrorCode::FrameTooLarge | ErrorCode::Malformed),
        "{code:?}"
    );
    d.assert_served().await;
}

#[tokio::test]
async fn before_authentication_only_a_hello_sized_frame_is_accepted() {
    let d = TestDaemon::start("").await;
    // Default caps: token 256 B + client name 1 KiB + 64 B of framing.
    let message = expect_close_with(&d, &1400u32.to_le_bytes(), ErrorCode::FrameTooLarge).await;
    assert_eq!(message, "frame too large before authentication");
    // After the hello the full frame cap applies (see the trickle test).
    d.assert_served().await;
}

#[tokio::test]
async fn a_frame_cut_short_then_eof_is_malformed() {
    let d = TestDaemon::start("").await;
    let mut s = d.raw().await;
    let mut partial = 100u32.to_le_bytes().to_vec();
    partial.extend_from_slice(&[1, 2, 3]);
    send(&mut s, &partial).await;
    s.shutdown().await.unwrap();
    let (code, message) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Malformed);
    assert!(
        message.starts_with("stream ended inside a frame"),
        "{message}"
    );
    d.assert_served().await;
}

#[tokio::test]
async fn no_hello_in_time_is_unauthenticated() {
    let d = TestDaemon::start("[limits]\nauth_timeout_ms = 300").await;
    let mut s = d.raw().await;
    let started = std::time::Instant::now();
    let (code, message) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Unauthenticated);
    assert_eq!(message, "no hello in time");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A request before the hello is refused the same way.
    let ping = frame(Body::Ping(v1::Ping { nonce: 1 }), 7);
    let message = expect_close_with(&d, &ping, ErrorCode::Unauthenticated).await;
    assert_eq!(message, "hello expected first");
    d.assert_served().await;
}

/// A frame trickled one byte at a time is cut off once
/// `limits.frame_timeout_ms` has passed since it began, however steadily
/// the bytes come. Over an in-memory pipe under the paused clock: the
/// trickle's 200 ms pauses and the deadline pass in virtual time.
#[tokio::test(start_paused = true)]
async fn a_slowly_trickled_large_frame_is_cut_off() {
    let d = TestDaemon::start("[limits]\nframe_timeout_ms = 500\n[store]\nenabled = false").await;
    let peer = std::net::SocketAddr::from(([192, 0, 2, 20], 1));
    let mut s = d.daemon.connect_in_memory(peer).unwrap();
    s.write_all(&hello(&d.admin)).await.unwrap();
    // A header announcing 1 MiB, then one byte every 200 ms.
    s.write_all(&(1u32 << 20).to_le_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let trickle = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(&[0]).await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), trickle)
        .await
        .ok();
    let envelopes = read_pipe_to_end(&mut s).await;
    assert!(matches!(envelopes[0].body, Some(Body::Welcome(_))));
    let (code, message) = last_error(&envelopes);
    assert_eq!(code, ErrorCode::Malformed);
    assert_eq!(message, "frame not completed in time");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Another session is still served.
    let mut other = d.daemon.connect_in_memory(peer).unwrap();
    other.write_all(&hello(&d.admin)).await.unwrap();
    other
        .write_all(&frame(Body::Ping(v1::Ping { nonce: 9 }), 2))
        .await
        .unwrap();
    other.shutdown().await.unwrap();
    let replies = read_pipe_to_end(&mut other).await;
    assert!(
        replies
            .iter()
            .any(|e| matches!(e.body, Some(Body::Pong(v1::Pong { nonce: 9 })))),
        "{replies:?}"
    );
}

/// Every envelope the daemon sends on an in-memory pipe until it closes it.
async fn read_pipe_to_end(s: &mut tokio::io::DuplexStream) -> Vec<v1::Envelope> {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).await.unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(<v1::Envelope as prost::Message>::decode(&bytes[at + 4..at + 4 + len]).unwrap());
        at += 4 + len;
    }
    out
}

#[tokio::test]
async fn the_hello_deadline_also_bounds_a_slow_hello() {
    let d = TestDaemon::start("[limits]\nauth_timeout_ms = 300\nframe_timeout_ms = 60000").await;
    let mut s = d.raw().await;
    send(&mut s, &50u32.to_le_bytes()).await;
    let (code, _) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn connections_past_the_total_cap_are_refused() {
    let d = TestDaemon::start("[limits]\nmax_connections = 3").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = d.raw().await;
        send(&mut s, &hello(&d.admin)).await;
        assert!(matches!(
            read_one(&mut s).await.body,
            Some(Body::Welcome(_))
        ));
        held.push(s);
    }
    let mut s = d.raw().await;
    let (code, message) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Overloaded);
    assert_eq!(message, "too many connections");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.assert_served().await;
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_for_that_address_only() {
    let d = TestDaemon::start("[limits]\nmax_connections_per_address = 2").await;
    let _a = d.raw_from([127, 0, 0, 2]).await;
    let _b = d.raw_from([127, 0, 0, 2]).await;
    let mut c = d.raw_from([127, 0, 0, 2]).await;
    let (code, message) = last_error(&read_until_closed(&mut c).await);
    assert_eq!(code, ErrorCode::Overloaded);
    assert_eq!(message, "too many connections from this address");
    d.assert_served().await;
}

#[tokio::test]
async fn a_wrong_token_repeated_is_throttled_per_address() {
    let d = TestDaemon::start("[limits]\nauth_failures_per_minute = 3").await;
    let wrong = sensegate_client::Secret::new(format!("sgt_{}_{}", "0".repeat(16), "1".repeat(64)));
    let mut opts = d.options(&wrong);
    opts.local_ip = Some("127.0.0.3".parse().unwrap());
    for _ in 0..3 {
        let e = Client::connect(&opts).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unauthenticated), "{e}");
    }
    let e = Client::connect(&opts).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    d.assert_served().await;
    let audit = std::fs::read_to_string(d.dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"reason\":\"bad_token\"").count(), 3);
    assert_eq!(audit.matches("\"reason\":\"throttled\"").count(), 1);
    assert!(!audit.contains(wrong.expose()) && !audit.contains(d.admin.expose()));
}

/// The attack: ten bad hellos a minute from a shared address (a NAT, a
/// proxy, localhost) used to lock out every valid client behind it.
#[tokio::test]
async fn failed_authentications_do_not_lock_out_a_valid_token_from_the_same_address() {
    let d = TestDaemon::start("[limits]\nauth_failures_per_minute = 3").await;
    let wrong = sensegate_client::Secret::new(format!("sgt_{}_{}", "0".repeat(16), "1".repeat(64)));
    let mut opts = d.options(&wrong);
    opts.local_ip = Some("127.0.0.4".parse().unwrap());
    for _ in 0..10 {
        Client::connect(&opts).await.unwrap_err();
    }
    let mut right = d.options(&d.admin);
    right.local_ip = opts.local_ip;
    let mut c = Client::connect(&right).await.unwrap();
    c.ping().await.unwrap();
    // Still throttled for the wrong token.
    let e = Client::connect(&opts).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
}

/// The attack: 64 hellos sent at once from one address all passed the
/// check before any failure was recorded, so about 64 were answered as bad
/// tokens (and audited) instead of the allowance of 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_bad_hellos_get_exactly_the_allowance() {
    let d = TestDaemon::start("[limits]\nauth_failures_per_minute = 10").await;
    let wrong = sensegate_client::Secret::new(format!("sgt_{}_{}", "0".repeat(16), "1".repeat(64)));
    let mut opts = d.options(&wrong);
    opts.local_ip = Some("127.0.0.5".parse().unwrap());
    let attempts: Vec<_> = (0..60)
        .map(|_| {
            let opts = opts.clone();
            tokio::spawn(async move { Client::connect(&opts).await.unwrap_err().code() })
        })
        .collect();
    let mut unauthenticated = 0;
    let mut throttled = 0;
    for a in attempts {
        match a.await.unwrap() {
            Some(ErrorCode::Unauthenticated) => unauthenticated += 1,
            Some(ErrorCode::RateLimited) => throttled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((unauthenticated, throttled), (10, 50));
    d.assert_served().await;
}

#[tokio::test]
async fn a_reader_asking_for_admin_operations_is_forbidden_and_keeps_its_session() {
    let d = TestDaemon::start("").await;
    let (_, token) = d.token(v1::Role::Reader, "sim/*").await;
    let mut reader = Client::connect(&d.options(&token)).await.unwrap();
    for result in [
        reader.list_tokens().await.map(|_| ()),
        reader
            .create_token("x", v1::Role::Admin, "*")
            .await
            .map(|_| ()),
        reader.list_connections().await.map(|_| ()),
        reader.kick(1).await,
        reader.revoke_token("0000000000000000").await.map(|_| ()),
        reader
            .push(vec![reading("sim/x", 1, 1.0)])
            .await
            .map(|_| ()),
        reader.latest("other/x").await.map(|_| ()),
    ] {
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::Forbidden));
    }
    reader.ping().await.unwrap();
    let audit = std::fs::read_to_string(d.dir.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"action\":\"list_tokens\"") && audit.contains("\"outcome\":\"denied\"")
    );
    d.assert_served().await;
}

#[tokio::test]
async fn a_device_may_push_only_to_its_own_sensors() {
    let d = TestDaemon::start("").await;
    let (_, token) = d.token(v1::Role::Device, "dev1/*").await;
    let mut device = Client::connect(&d.options(&token)).await.unwrap();
    assert_eq!(
        device.push(vec![reading("dev1/t", 1, 20.5)]).await.unwrap(),
        1
    );
    let e = device
        .push(vec![reading("dev1/t", 2, 1.0), reading("dev2/t", 2, 1.0)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    // All or nothing: the in-scope half of the refused push was not kept.
    let mut admin = d.admin().await;
    assert_eq!(admin.latest("dev1/t").await.unwrap().timestamp_us, 1);
    assert_eq!(
        admin.latest("dev2/t").await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    // A device reads nothing.
    assert_eq!(
        device.latest("dev1/t").await.unwrap_err().code(),
        Some(ErrorCode::Forbidden)
    );
    d.assert_served().await;
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_sessions_at_once() {
    let d = TestDaemon::start("").await;
    let (id, token) = d.token(v1::Role::Reader, "*").await;
    let mut first = Client::connect(&d.options(&token)).await.unwrap();
    let mut second = Client::connect(&d.options(&token)).await.unwrap();
    first.subscribe(&["*"]).await.unwrap();
    let mut admin = d.admin().await;
    assert_eq!(admin.revoke_token(&id).await.unwrap(), 2);
    for c in [&mut first, &mut second] {
        let e = tokio::time::timeout(Duration::from_secs(5), c.next_batch())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Goodbye(r) if r == "token revoked"),
            "{e}"
        );
    }
    let e = Client::connect(&d.options(&token)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthenticated));
    assert_eq!(
        admin.revoke_token(&id).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    d.assert_served().await;
}

#[tokio::test]
async fn an_admin_can_list_and_kick_connections() {
    let d = TestDaemon::start("").await;
    let (_, token) = d.token(v1::Role::Reader, "*").await;
    let mut victim = Client::connect(&d.options(&token)).await.unwrap();
    let victim_id = victim.welcome().connection_id;
    let mut admin = d.admin().await;
    let list = admin.list_connections().await.unwrap();
    let entry = list.iter().find(|c| c.id == victim_id).unwrap();
    assert_eq!(entry.role, i32::from(v1::Role::Reader));
    assert_eq!(entry.frontend, "native");
    admin.kick(victim_id).await.unwrap();
    let e = victim.next_batch().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Goodbye(r) if r.contains("administrator")),
        "{e}"
    );
    assert_eq!(
        admin.kick(victim_id).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
}

#[tokio::test]
async fn an_idle_session_is_closed_after_the_idle_timeout() {
    let d = TestDaemon::start("[limits]\nidle_timeout_secs = 1").await;
    let mut c = d.admin().await;
    let e = tokio::time::timeout(Duration::from_secs(5), c.next_batch())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Goodbye(r) if r == "idle timeout"),
        "{e}"
    );
}

#[tokio::test]
async fn subscriptions_past_the_cap_are_refused() {
    let d = TestDaemon::start("[limits]\nmax_subscriptions = 2").await;
    let mut c = d.admin().await;
    assert_eq!(c.subscribe(&["a", "b"]).await.unwrap(), 2);
    assert_eq!(
        c.subscribe(&["c"]).await.unwrap_err().code(),
        Some(ErrorCode::Overloaded)
    );
    assert_eq!(c.unsubscribe(&["a"]).await.unwrap(), 1);
    assert_eq!(c.subscribe(&["c"]).await.unwrap(), 2);
}

#[tokio::test]
async fn subscription_patterns_are_capped_per_token_and_per_address() {
    let d = TestDaemon::start("[limits]\nmax_patterns_per_token = 3\nmax_patterns_per_address = 4")
        .await;
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let (_, other) = d.token(v1::Role::Reader, "*").await;
    let from = |token: &sensegate_client::Secret, ip: &str| {
        let mut o = d.options(token);
        o.local_ip = Some(ip.parse().unwrap());
        o
    };
    let mut first = Client::connect(&from(&reader, "127.0.0.6")).await.unwrap();
    let mut second = Client::connect(&from(&reader, "127.0.0.7")).await.unwrap();
    assert_eq!(first.subscribe(&["a", "b"]).await.unwrap(), 2);
    // The token's third and fourth pattern, on another connection.
    let e = second.subscribe(&["c", "d"]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
    assert_eq!(second.subscribe(&["c"]).await.unwrap(), 1);
    // Another token from the first's address: the address's cap of 4.
    let mut third = Client::connect(&from(&other, "127.0.0.6")).await.unwrap();
    let e = third.subscribe(&["x", "y", "z"]).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
    assert_eq!(third.subscribe(&["x", "y"]).await.unwrap(), 2);
    // A connection that ends gives its patterns back.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match second.subscribe(&["d"]).await {
            Ok(n) => break assert_eq!(n, 2),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("patterns not given back: {e}"),
        }
    }
    third.ping().await.unwrap();
    let hits = &d.daemon.service().counters().limits;
    assert!(hits.get(sensegate_gateway::stats::Limit::PatternsPerToken) >= 1);
    assert!(hits.get(sensegate_gateway::stats::Limit::PatternsPerAddress) >= 1);
}

#[tokio::test]
async fn push_batch_size_and_rate_are_capped_per_token() {
    let d = TestDaemon::start("[limits]\nmax_push_batch = 5\npush_rate_per_sec = 10").await;
    let (_, token) = d.token(v1::Role::Device, "d/*").await;
    let mut dev = Client::connect(&d.options(&token)).await.unwrap();
    let batch = |n: i64| (0..n).map(|i| reading("d/x", i, 0.0)).collect::<Vec<_>>();
    assert_eq!(
        dev.push(batch(6)).await.unwrap_err().code(),
        Some(ErrorCode::Overloaded)
    );
    assert_eq!(dev.push(batch(5)).await.unwrap(), 5);
    assert_eq!(dev.push(batch(5)).await.unwrap(), 5);
    assert_eq!(
        dev.push(batch(5)).await.unwrap_err().code(),
        Some(ErrorCode::RateLimited)
    );
    // The rate is per token: another device is unaffected.
    let (_, other) = d.token(v1::Role::Device, "d/*").await;
    let mut dev2 = Client::connect(&d.options(&other)).await.unwrap();
    assert_eq!(dev2.push(batch(5)).await.unwrap(), 5);
}

#[tokio::test]
async fn a_frame_over_the_connection_inflight_cap_is_overloaded() {
    let d = TestDaemon::start("[limits]\ninflight_bytes_per_connection = 4096").await;
    let mut s = d.raw().await;
    send(&mut s, &hello(&d.admin)).await;
    assert!(matches!(
        read_one(&mut s).await.body,
        Some(Body::Welcome(_))
    ));
    send(&mut s, &8000u32.to_le_bytes()).await;
    let (code, message) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Overloaded);
    assert_eq!(message, "frame over the connection's in-flight limit");
    d.assert_served().await;
}

#[tokio::test]
async fn frames_past_the_global_inflight_budget_are_overloaded() {
    let d = TestDaemon::start("[limits]\ninflight_bytes_total = 65536").await;
    let mut first = d.raw().await;
    send(&mut first, &hello(&d.admin)).await;
    assert!(matches!(
        read_one(&mut first).await.body,
        Some(Body::Welcome(_))
    ));
    send(&mut first, &40_000u32.to_le_bytes()).await;
    send(&mut first, &[0; 100]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = d.raw().await;
    send(&mut second, &hello(&d.admin)).await;
    assert!(matches!(
        read_one(&mut second).await.body,
        Some(Body::Welcome(_))
    ));
    send(&mut second, &40_000u32.to_le_bytes()).await;
    let (code, message) = last_error(&read_until_closed(&mut second).await);
    assert_eq!(code, ErrorCode::Overloaded);
    assert_eq!(message, "server busy");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.assert_served().await;
}

#[tokio::test]
async fn new_sensors_past_the_catalog_cap_are_refused() {
    let d = TestDaemon::start("[limits]\nmax_sensors = 2").await;
    let (_, token) = d.token(v1::Role::Device, "*").await;
    let mut dev = Client::connect(&d.options(&token)).await.unwrap();
    dev.push(vec![reading("a", 1, 0.0), reading("b", 1, 0.0)])
        .await
        .unwrap();
    assert_eq!(
        dev.push(vec![reading("c", 1, 0.0)])
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::Overloaded)
    );
    assert_eq!(dev.push(vec![reading("a", 2, 0.0)]).await.unwrap(), 1);
}

/// The attack: one device token filled the whole catalog with 9,993 names in
/// half a second (993 of them from a batch that was refused, so interned
/// without being accepted); a second device's one new name was then refused,
/// as were serial or hwmon sensors first seen later, until restart.
#[tokio::test]
async fn one_device_cannot_take_the_catalog_from_others_or_from_sources() {
    let d = TestDaemon::start(
        "[limits]\nmax_sensors = 100\nmax_sensors_per_token = 30\nsensors_reserved_for_sources = 20",
    )
    .await;
    let service = d.daemon.service().clone();
    let batch = |prefix: &str, n: usize| -> Vec<v1::Reading> {
        (0..n)
            .map(|i| reading(&format!("{prefix}/{i}"), 1, 0.0))
            .collect()
    };
    let (_, first) = d.token(v1::Role::Device, "*").await;
    let mut first = Client::connect(&d.options(&first)).await.unwrap();
    // Over its quota in one batch: refused, and not one name added.
    let e = first.push(batch("a", 31)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
    assert_eq!(
        service.internals().catalog.len(),
        0,
        "a refused batch added names"
    );
    assert_eq!(first.push(batch("a", 30)).await.unwrap(), 30);
    let e = first.push(batch("b", 1)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
    // Known names still work for it.
    assert_eq!(first.push(batch("a", 5)).await.unwrap(), 5);
    // A second device still registers names of its own.
    let mut others = Vec::new();
    for _ in 0..2 {
        let (_, t) = d.token(v1::Role::Device, "*").await;
        others.push(Client::connect(&d.options(&t)).await.unwrap());
    }
    assert_eq!(others[0].push(batch("c", 30)).await.unwrap(), 30);
    // Pushes may fill 80 of the 100: the rest is for configured sources.
    assert_eq!(others[1].push(batch("d", 20)).await.unwrap(), 20);
    let e = others[1].push(batch("e", 1)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
    for i in 0..20 {
        service
            .internals()
            .catalog
            .register(&format!("serial/{i}"), "", "serial:late")
            .unwrap();
    }
    assert_eq!(service.internals().catalog.len(), 100);
    let hits = &service.counters().limits;
    assert!(hits.get(sensegate_gateway::stats::Limit::SensorsPerToken) >= 2);
    assert!(hits.get(sensegate_gateway::stats::Limit::Sensors) >= 1);
}

#[tokio::test]
async fn tokens_past_the_store_cap_are_refused() {
    let d = TestDaemon::start("[limits]\nmax_tokens = 2").await;
    let mut admin = d.admin().await;
    admin
        .create_token("one", v1::Role::Reader, "*")
        .await
        .unwrap();
    let e = admin
        .create_token("two", v1::Role::Reader, "*")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Overloaded));
}

/// The attack: an admin scoped `site-a/*` minted admin tokens scoped `*`
/// and revoked the root admin.
#[tokio::test]
async fn a_scoped_admin_stays_inside_its_scope() {
    let d = TestDaemon::start("").await;
    let mut root = d.admin().await;
    let root_id = root
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
        .id;
    let (site_id, site) = d.token(v1::Role::Admin, "site-a/*").await;
    let (_, other) = d.token(v1::Role::Reader, "site-b/*").await;
    let mut other_conn = Client::connect(&d.options(&other)).await.unwrap();
    let mut site = Client::connect(&d.options(&site)).await.unwrap();

    for scope in ["*", "site-*", "site-b/*", "?ite-a/*"] {
        let e = site
            .create_token("escape", v1::Role::Admin, scope)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{scope}: {e}");
    }
    let made = site
        .create_token("room", v1::Role::Admin, "site-a/room-1/*")
        .await
        .unwrap();
    let made_id = made.token.unwrap().id;
    // Revoking or kicking outside its scope: forbidden; unknown ids too
    // (no oracle of which exist).
    for id in [root_id.as_str(), "0000000000000000"] {
        let e = site.revoke_token(id).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{id}: {e}");
    }
    let listed: Vec<String> = site
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.scope)
        .collect();
    assert_eq!(listed, ["site-a/*", "site-a/room-1/*"]);
    let conns = site.list_connections().await.unwrap();
    assert!(
        conns.iter().all(|c| c.principal == "t"),
        "only its own sessions: {conns:?}"
    );
    assert_eq!(conns.len(), 1, "{conns:?}");
    let all = root.list_connections().await.unwrap();
    assert!(all.len() >= 3);
    for c in all.iter().filter(|c| c.id != conns[0].id) {
        let e = site.kick(c.id).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden));
    }
    other_conn.ping().await.unwrap();
    root.ping().await.unwrap();
    // Within its scope it may act.
    assert_eq!(site.revoke_token(&made_id).await.unwrap(), 0);
    // The root admin reaches everything.
    assert_eq!(root.revoke_token(&site_id).await.unwrap(), 1);

    let audit = std::fs::read_to_string(d.dir.path().join("audit.jsonl")).unwrap();
    let line = audit
        .lines()
        .find(|l| l.contains(&made_id) && l.contains("create_token"))
        .expect("the created token's audit line");
    assert!(
        line.contains("\"role\":\"admin\"") && line.contains("\"scope\":\"site-a/room-1/*\""),
        "{line}"
    );
}

/// The attack: every whole frame in one read was executed and its reply
/// queued before anything was written, and the replies were held up to the
/// idle timeout while the peer did not read. With 1,000 sensors, 4
/// connections sending 64 KiB of pipelined `ListSensors` each and never
/// reading took the daemon from 16 MiB to 451 MiB. Now replies leave once
/// they pass `reply_bytes_per_connection`, before the next frame is decoded,
/// and a peer that does not read is cut off at `write_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_that_are_never_read_hold_bounded_replies() {
    let d = TestDaemon::start("[limits]\nwrite_timeout_ms = 1000\nidle_timeout_secs = 300").await;
    d.big_sensors(1000).await;
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let list = frame(
        Body::ListSensors(v1::ListSensorsRequest {
            pattern: String::new(),
            after: String::new(),
        }),
        7,
    );
    let before = rss_bytes();
    let mut peers = Vec::new();
    for i in 0..4u8 {
        let mut s = d.raw_from([127, 0, 1, i + 1]).await;
        send(&mut s, &hello(&reader)).await;
        // 64 KiB of requests, each answered with about 150 KiB.
        let pipelined: Vec<u8> = list.iter().copied().cycle().take(64 << 10).collect();
        send(&mut s, &pipelined).await;
        peers.push(s);
    }
    // Meanwhile everyone else is served, and memory stays bounded.
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss_bytes().saturating_sub(before));
    }
    d.assert_served().await;
    eprintln!("pipelined, unread: RSS grew by {} MiB at most", peak >> 20);
    assert!(peak < 64 << 20, "RSS grew by {} MiB", peak >> 20);
    // The peers that never read are cut off by the write timeout, not the
    // idle timeout (they are the only connections left).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d.daemon.service().internals().registry.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled peers were not cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        d.daemon
            .service()
            .counters()
            .limits
            .get(sensegate_gateway::stats::Limit::SlowReader)
            >= 4
    );
    drop(peers);
}

/// A big catalog made a list reply larger than the frame cap, which turned
/// into `INTERNAL`. Lists are pages now: at most `max_list_items` entries
/// and what fits one frame, with a cursor for the next; the client crate
/// follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_in_pages_that_fit_a_frame() {
    let d = TestDaemon::start(
        "[limits]\nmax_frame_bytes = 65536\ninflight_bytes_per_connection = 65536\nmax_list_items = 10000",
    )
    .await;
    d.big_sensors(1000).await;
    // 1,000 sensors of ~150 bytes each: about 150 KiB, over the frame cap.
    let mut admin = d.admin().await;
    let sensors = admin.list_sensors("big/*").await.unwrap();
    assert_eq!(sensors.len(), 1000);
    let names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "pages overlap or skip"
    );
    // One raw page: cut by the frame, with a cursor.
    let page = admin
        .request(Body::ListSensors(v1::ListSensorsRequest {
            pattern: "big/*".into(),
            after: String::new(),
        }))
        .await
        .unwrap();
    let Body::Sensors(page) = page else {
        panic!("not a sensor list")
    };
    assert!(!page.sensors.is_empty() && page.sensors.len() < 1000);
    assert_eq!(page.next_after, page.sensors.last().unwrap().name);
    // Tokens and connections page too, at most max_list_items a page.
    let d = TestDaemon::start("[limits]\nmax_list_items = 10").await;
    let mut admin = d.admin().await;
    for _ in 0..24 {
        admin
            .create_token("t", v1::Role::Reader, "*")
            .await
            .unwrap();
    }
    let tokens = admin.list_tokens().await.unwrap();
    assert_eq!(tokens.len(), 25);
    let mut ids: Vec<&str> = tokens.iter().map(|t| t.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 25, "a token listed twice");
    let mut held = Vec::new();
    for _ in 0..14 {
        held.push(d.admin().await);
    }
    assert_eq!(admin.list_connections().await.unwrap().len(), 15);
}

/// A full shared budget never closes a connection that did not fill it: a
/// reply that finds no room is answered `OVERLOADED` on its own and the
/// session goes on (it used to be closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_budget_refuses_a_reply_but_never_closes_its_connection() {
    let d = TestDaemon::start(
        "[limits]\ninflight_bytes_total = 65536\ninflight_bytes_per_connection = 65536\ninflight_bytes_per_token = 65536\nreply_bytes_per_connection = 4096\nwrite_timeout_ms = 30000\nidle_timeout_secs = 300",
    )
    .await;
    d.big_sensors(300).await;
    // A reader that pipelines lists (about 45 KiB each) and never reads:
    // its socket fills, and its blocked write holds most of the budget.
    let (_, hog) = d.token(v1::Role::Reader, "*").await;
    let mut s = d.raw_from([127, 0, 2, 1]).await;
    send(&mut s, &hello(&hog)).await;
    let list = frame(
        Body::ListSensors(v1::ListSensorsRequest {
            pattern: String::new(),
            after: String::new(),
        }),
        7,
    );
    let pipelined: Vec<u8> = list.iter().copied().cycle().take(32 << 10).collect();
    send(&mut s, &pipelined).await;
    // Another token's list finds no room once the hog's socket has filled
    // (how soon depends on the machine's load: asked until then, at most
    // 10 s): refused, and its session goes on.
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let mut other = Client::connect(&d.options(&reader)).await.unwrap();
    let mut refused = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refused < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match other.list_sensors("big/*").await {
            Ok(list) => assert_eq!(list.len(), 300),
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Overloaded), "{e}");
                refused += 1;
            }
        }
        other.ping().await.unwrap();
    }
    assert!(
        refused > 0,
        "the budget was never full: the test proves nothing"
    );
    drop(s);
}

/// The attack: an existing data directory that others could write into was
/// used as it was, so whoever could write it could replace the token store
/// or the key. The daemon now refuses to start on it.
#[tokio::test]
async fn a_data_dir_others_can_write_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = native_only_in(&data);
    let Err(e) = sensegate_gateway::daemon::Daemon::start(&config).await else {
        panic!("the daemon started on a world-writable data dir");
    };
    assert!(e.to_string().contains("writable by group or others"), "{e}");
    assert!(
        !data.join("tokens.json").exists(),
        "it wrote into the dir first"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let started = sensegate_gateway::daemon::Daemon::start(&config).await;
    assert!(started.is_ok(), "{:?}", started.err());
}

/// The attack: a client name with a right-to-left override reached the
/// log and `sensegate connections`, shown in another order than written.
/// The hello is refused.
#[tokio::test]
async fn a_hello_with_a_bidi_override_in_its_name_is_refused() {
    let d = TestDaemon::start("").await;
    let mut s = d.raw().await;
    let hello = frame(
        Body::Hello(v1::Hello {
            protocol_version: 1,
            token: d.admin.expose().to_owned(),
            client_name: "admin\u{202E}gnp.exe".into(),
        }),
        1,
    );
    send(&mut s, &hello).await;
    let (code, _) = last_error(&read_until_closed(&mut s).await);
    assert_eq!(code, ErrorCode::Malformed);
    d.assert_served().await;
}

/// Private files in the data dir are never read or written through a
/// symlink planted at their place: a link at the token store's name stops
/// the daemon at start (it used to be followed, and its target read as the
/// store and then overwritten by the first save); a link at the store's
/// replacement name is replaced, never written through, when a token
/// created through the listener saves the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_planted_at_private_files_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "{\"version\":1,\"tokens\":[]}").unwrap();
    std::os::unix::fs::symlink(&victim, data.join("tokens.json")).unwrap();
    let config = native_only_in(&data);
    let Err(e) = sensegate_gateway::daemon::Daemon::start(&config).await else {
        panic!("the daemon read its token store through a symlink");
    };
    assert!(e.to_string().contains("tokens.json"), "{e}");
    std::fs::remove_file(data.join("tokens.json")).unwrap();

    let daemon = sensegate_gateway::daemon::Daemon::start(&config)
        .await
        .unwrap();
    let admin = daemon
        .ensure_admin_token(&data.join("admin.token"))
        .unwrap();
    std::os::unix::fs::symlink(&victim, data.join("tokens.json.sg-new")).unwrap();
    let mut o = sensegate_client::ConnectOptions::plain(
        daemon.native_addr().to_string(),
        sensegate_client::Secret::new(admin.expose()),
    );
    o.timeout = std::time::Duration::from_secs(20);
    let mut c = Client::connect(&o).await.unwrap();
    let made = c.create_token("new", v1::Role::Reader, "*").await.unwrap();
    let id = made.token.unwrap().id;
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "{\"version\":1,\"tokens\":[]}",
        "the save wrote through the planted link"
    );
    let store = data.join("tokens.json");
    assert!(
        std::fs::symlink_metadata(&store)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert!(std::fs::read_to_string(&store).unwrap().contains(&id));
    assert!(!data.join("tokens.json.sg-new").exists());
}

/// A daemon's config over `data`: the native listener on a free port, no
/// HTTP.
fn native_only_in(data: &std::path::Path) -> sensegate_gateway::config::Config {
    let text = format!(
        "[server]\ndata_dir = {:?}\n[native]\nlisten = \"127.0.0.1:0\"\n[http]\nenabled = false\n",
        data.display().to_string()
    );
    sensegate_gateway::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
}
