//! The HTTP API through real sockets with hand-written requests: the same
//! tokens and policy as the native protocol, JSON errors with the stable
//! codes, and the hostile cases (no token, wrong token, reader on admin
//! routes, oversize body, slow body, slow headers, long query strings, a
//! stream client that never reads).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Reply, TestDaemon, http, read_reply, rss_bytes};
use sensegate_client::wire as v1;
use sensegate_gateway::reading::{Quality, Reading, now_us};
use sensegate_gateway::stats::Limit;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One request on its own connection (`Connection: close`).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).await.unwrap();
    read_reply(&mut s).await
}

/// One keep-alive `GET /api/v1/sensors` on `conn`; its status, after the
/// whole response (by `Content-Length`) is read.
async fn exchange(conn: &mut TcpStream, token: &str) -> u16 {
    let req =
        format!("GET /api/v1/sensors HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let length: usize = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap();
            if body.len() >= length {
                return head.split_whitespace().nth(1).unwrap().parse().unwrap();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the response: {text:?}",
            text = String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_policy_are_the_native_protocols() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    // No token, and a wrong one: 401 with the stable code, and the security
    // headers on every response.
    let r = request(addr, "GET", "/api/v1/sensors", None, "").await;
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHENTICATED"));
    assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
    for h in [
        "content-security-policy: default-src 'self'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
    ] {
        assert!(r.head.contains(h), "{h} missing in {}", r.head);
    }
    let fake = format!("sgt_{}_{}", "0".repeat(16), "0".repeat(64));
    let r = request(addr, "GET", "/api/v1/sensors", Some(&fake), "").await;
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHENTICATED"));

    // A reader: reads in scope, no admin routes.
    let (_, reader) = d.token(v1::Role::Reader, "lab/*").await;
    let reader = reader.expose().to_owned();
    let r = request(addr, "GET", "/api/v1/sensors", Some(&reader), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with('['));
    for (method, path) in [
        ("GET", "/api/v1/tokens"),
        ("GET", "/api/v1/connections"),
        ("DELETE", "/api/v1/connections/1"),
    ] {
        let r = request(addr, method, path, Some(&reader), "").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "FORBIDDEN"),
            "{method} {path}"
        );
    }
    // The uplinks' figures go to whoever may read metrics (a reader: none
    // here), not to a device.
    let r = request(addr, "GET", "/api/v1/uplinks", Some(&reader), "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let r = request(addr, "GET", "/api/v1/uplinks", Some(device.expose()), "").await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    // A sensor out of the reader's scope, with a reading: refused by the
    // policy, not merely missing.
    let service = d.daemon.service().clone();
    let other: Arc<str> = service.source_sink("test").register("other/x", "").unwrap();
    service.source_sink("test").ingest(&[Reading {
        sensor: other,
        timestamp_us: now_us(),
        value: 1.0,
        quality: Quality::Good,
    }]);
    let r = request(
        addr,
        "GET",
        "/api/v1/sensors/other%2Fx/latest",
        Some(&reader),
        "",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    // The scheme is case-insensitive; a bad path parameter is a JSON 400.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/sensors HTTP/1.1\r\nHost: x\r\nauthorization: bearer {reader}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert_eq!(read_reply(&mut s).await.status, 200);
    let admin_token = d.admin.expose().to_owned();
    let r = request(
        addr,
        "DELETE",
        "/api/v1/connections/not-a-number",
        Some(&admin_token),
        "",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "MALFORMED"));
    assert!(!r.body.contains("not-a-number"), "{}", r.body);
    let r = request(addr, "PUT", "/api/v1/sensors", Some(&admin_token), "").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "MALFORMED");

    // The admin creates a token over HTTP; its secret authenticates on the
    // native protocol too, and it is listed without its secret.
    let admin = d.admin.expose().to_owned();
    let r = request(
        addr,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        r#"{"name":"dev1","role":"device","scope":"lab/*"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let mut dev = sensegate_client::Client::connect(
        &d.options(&sensegate_client::Secret::new(secret.clone())),
    )
    .await
    .unwrap();
    let now = now_us();
    let readings = (0..10)
        .map(|i| v1::Reading {
            sensor: "lab/t".into(),
            timestamp_us: now - 1_000_000 + i,
            value: 20.0 + f64::from(i32::try_from(i).unwrap()),
            quality: v1::Quality::Good.into(),
        })
        .collect();
    dev.push(readings).await.unwrap();
    let r = request(addr, "GET", "/api/v1/tokens", Some(&admin), "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("dev1") && !r.body.contains(&secret));

    // The reader sees what the device pushed: latest and history.
    let r = request(
        addr,
        "GET",
        "/api/v1/sensors/lab%2Ft/latest",
        Some(&reader),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!((v["value"].as_f64().unwrap() - 29.0).abs() < 1e-9);
    let path = format!(
        "/api/v1/sensors/lab%2Ft/history?from={}&to={}",
        now - 2_000_000,
        now
    );
    let r = request(addr, "GET", &path, Some(&reader), "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["readings"].as_array().unwrap().len(), 10, "{}", r.body);
    // A device may not read, over HTTP as over the native protocol.
    let r = request(addr, "GET", "/api/v1/sensors", Some(&secret), "").await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    // Unknown routes are JSON errors too.
    let r = request(addr, "GET", "/etc/passwd", Some(&admin), "").await;
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    let r = request(addr, "GET", "/api/v1/../../etc/passwd", Some(&admin), "").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_repeated_is_throttled_like_a_native_hello() {
    let d = TestDaemon::start("[limits]\nauth_failures_per_minute = 3\n").await;
    let addr = http(&d);
    let fake = format!("sgt_{}_{}", "1".repeat(16), "1".repeat(64));
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            request(addr, "GET", "/api/v1/sensors", Some(&fake), "")
                .await
                .status,
        );
    }
    assert_eq!(codes, [401, 401, 401, 429, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_long_queries_and_slow_clients_are_cut_off() {
    let d = TestDaemon::start(
        "[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1024\nmax_query_bytes = 128\nrequest_timeout_ms = 300\nheader_timeout_ms = 300\n",
    )
    .await;
    let addr = http(&d);
    let admin = d.admin.expose().to_owned();
    // A body over the cap: 413, whatever it holds.
    let big = format!(
        r#"{{"name":"{}","role":"reader","scope":"*"}}"#,
        "x".repeat(4000)
    );
    let r = request(addr, "POST", "/api/v1/tokens", Some(&admin), &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // A query string over the cap: 414.
    let path = format!("/api/v1/sensors?pattern={}", "a".repeat(200));
    let r = request(addr, "GET", &path, Some(&admin), "").await;
    assert_eq!((r.status, r.code().as_str()), (414, "MALFORMED"));
    // A body that trickles: cut off at the request deadline.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"na"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let r = read_reply(&mut s).await;
    assert_eq!(r.status, 408, "{}", r.body);
    assert!(start.elapsed() < Duration::from_secs(5));
    // Headers that never finish: the connection is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/v1/sensors HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap();
    assert!(n.is_ok(), "the connection was not closed");
    assert!(start.elapsed() < Duration::from_secs(5));
    // An idle connection that never sends a byte is closed as well.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0) | Err(_))),
        "an idle connection stayed open"
    );
    d.assert_served().await;
    // Each cap was counted once. A kept-alive connection that answered a
    // request and then idled past the header deadline is not a hit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut s, &admin).await, 200);
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0) | Err(_))),
        "idle keep-alive stayed open"
    );
    let hits = &d.daemon.service().counters().limits;
    let deadline = Instant::now() + Duration::from_secs(5);
    while hits.get(Limit::HttpHeaderTimeout) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hits.get(Limit::HttpBody), 1);
    assert_eq!(hits.get(Limit::HttpQuery), 1);
    assert_eq!(hits.get(Limit::HttpRequestTimeout), 1);
    // The unfinished headers and the silent connection; not the idle one.
    assert_eq!(hits.get(Limit::HttpHeaderTimeout), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivers_readings_and_a_client_that_never_reads_stays_bounded() {
    let d = TestDaemon::start("[store]\nenabled = false\n").await;
    let addr = http(&d);
    let admin = d.admin.expose().to_owned();
    let service = d.daemon.service().clone();
    let sensor: Arc<str> = service.source_sink("test").register("load/x", "").unwrap();

    // A reader that reads: it gets events with the readings.
    let mut live = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/stream?sensors=load/* HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    live.write_all(req.as_bytes()).await.unwrap();
    // A reader that never reads a byte of the response.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(req.as_bytes()).await.unwrap();
    // Wait for both subscriptions.
    let deadline = Instant::now() + Duration::from_secs(10);
    while service
        .internals()
        .registry
        .list(100, |_| true)
        .iter()
        .filter(|c| c.subscriptions.load(std::sync::atomic::Ordering::Relaxed) > 0)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "streams not subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let batch = |round: i64| -> Vec<Reading> {
        (0..1000)
            .map(|i| Reading {
                sensor: sensor.clone(),
                timestamp_us: round * 1000 + i,
                value: 1.0,
                quality: Quality::Good,
            })
            .collect()
    };
    service.source_sink("test").ingest(&batch(0));
    let mut seen = String::new();
    let mut buf = vec![0u8; 65536];
    while !seen.contains("event: readings") {
        let n = tokio::time::timeout(Duration::from_secs(10), live.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("\"sensor\":\"load/x\""), "{seen}");
    drop(live);

    // A million readings past the stalled stream: the daemon does not grow
    // with them.
    for round in 1..50 {
        service.source_sink("test").ingest(&batch(round));
    }
    let before = rss_bytes();
    for round in 50..1050 {
        service.source_sink("test").ingest(&batch(round));
        if round % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    assert!(
        growth < 16 << 20,
        "RSS grew by {growth} bytes past a stalled stream"
    );
    drop(stalled);
    // Both streams ended with their connections: their subscribers are gone
    // from the hub.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service.internals().hub.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} subscribers left in the hub",
            service.internals().hub.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.assert_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_bound_to_its_latest_token_and_revocation_ends_its_stream() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let (first_id, first) = d.token(v1::Role::Reader, "*").await;
    let (second_id, second) = d.token(v1::Role::Reader, "*").await;
    let (first, second) = (first.expose().to_owned(), second.expose().to_owned());
    let mut admin = d.admin().await;
    // Token A, then token B on the same kept-alive connection (a browser
    // signing in again reuses its pool): the connection is rebound to B.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut conn, &first).await, 200);
    assert_eq!(exchange(&mut conn, &second).await, 200);
    // Revoking A no longer reaches it; revoking B does.
    admin.revoke_token(&first_id).await.unwrap();
    assert_eq!(exchange(&mut conn, &second).await, 200);
    assert_eq!(exchange(&mut conn, &first).await, 401, "a revoked token");
    let mut conn = TcpStream::connect(addr).await.unwrap();
    assert_eq!(exchange(&mut conn, &second).await, 200);
    admin.revoke_token(&second_id).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the connection outlived its token"
    );

    // A stream under token C ends when C is revoked.
    let (third_id, third) = d.token(v1::Role::Reader, "*").await;
    let third = third.expose().to_owned();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/stream?sensors=* HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {third}\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    admin.revoke_token(&third_id).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token");
    let service = d.daemon.service().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service.internals().hub.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the revoked stream's subscriber stayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_token_is_closed_at_the_auth_deadline() {
    let d = TestDaemon::start("[limits]\nauth_timeout_ms = 300\n").await;
    let addr = http(&d);
    // Health probes need no token, but do not keep a place for ever.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    loop {
        if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "a tokenless connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_reader_and_show_only_sensors_in_scope() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let service = d.daemon.service().clone();
    for name in ["lab/t", "other/x"] {
        let sensor: Arc<str> = service.source_sink("test").register(name, "").unwrap();
        service.source_sink("test").ingest(&[Reading {
            sensor,
            timestamp_us: now_us(),
            value: 21.5,
            quality: Quality::Good,
        }]);
    }
    let r = request(addr, "GET", "/metrics", None, "").await;
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHENTICATED"));
    let (_, device) = d.token(v1::Role::Device, "*").await;
    let r = request(addr, "GET", "/metrics", Some(device.expose()), "").await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    let (_, reader) = d.token(v1::Role::Reader, "lab/*").await;
    // The refused requests' connections are closed by now, or about to be:
    // wait until they are, so the scrape below counts only its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !service
        .internals()
        .registry
        .list(10, |c| c.frontend.name() == "http")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the refused connections stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = request(addr, "GET", "/metrics", Some(reader.expose()), "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head.contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.head
    );
    for line in [
        "# TYPE sensegate_connections gauge",
        "sensegate_connections{frontend=\"http\"} 1",
        "sensegate_sensor_value{sensor=\"lab/t\"} 21.5",
        // Only the sensor in scope is counted (the other one used to be).
        "sensegate_sensors{state=\"ok\"} 1",
        "sensegate_auth_failures_total{reason=\"bad_token\"} 0",
    ] {
        assert!(r.body.contains(line), "{line} missing in\n{}", r.body);
    }
    assert!(
        !r.body.contains("other/x"),
        "a sensor out of scope leaked:\n{}",
        r.body
    );
    assert!(
        r.body
            .contains("sensegate_sensor_age_seconds{sensor=\"lab/t\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_metrics_have_no_per_sensor_series() {
    let d = TestDaemon::start("[http]\nlisten = \"127.0.0.1:0\"\nmetrics_public = true\n").await;
    let addr = http(&d);
    let service = d.daemon.service().clone();
    let sensor: Arc<str> = service.source_sink("test").register("lab/t", "").unwrap();
    service.source_sink("test").ingest(&[Reading {
        sensor,
        timestamp_us: now_us(),
        value: 1.0,
        quality: Quality::Good,
    }]);
    let fake = format!("sgt_{}_{}", "2".repeat(16), "2".repeat(64));
    let _ = request(addr, "GET", "/api/v1/sensors", Some(&fake), "").await;
    let r = request(addr, "GET", "/metrics", None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("sensegate_readings_ingested_total 1"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("sensegate_auth_failures_total{reason=\"bad_token\"} 1"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("sensegate_sensor_value"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let d = TestDaemon::start("").await;
    let r = request(http(&d), "GET", "/api/v1/openapi.json", None, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/api/v1/whoami", "get"),
        ("/api/v1/sensors", "get"),
        ("/api/v1/sensors/{name}/latest", "get"),
        ("/api/v1/sensors/{name}/history", "get"),
        ("/api/v1/stream", "get"),
        ("/api/v1/tokens", "get"),
        ("/api/v1/tokens", "post"),
        ("/api/v1/tokens/{id}", "delete"),
        ("/api/v1/connections", "get"),
        ("/api/v1/connections/{id}", "delete"),
        ("/api/v1/uplinks", "get"),
        ("/metrics", "get"),
        ("/api/v2/write", "post"),
        ("/write", "post"),
        ("/api/v1/readings", "post"),
    ];
    for (path, method) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path}: no 401"
        );
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!([]),
            "{method} {path}"
        );
    }
    // The write routes list every status their clients act on.
    for path in ["/api/v2/write", "/write", "/api/v1/readings"] {
        for status in ["204", "400", "403", "413", "415", "429", "503", "507"] {
            assert!(
                doc["paths"][path]["post"]["responses"][status].is_object(),
                "{path}: no {status}"
            );
        }
    }
    assert!(doc["paths"]["/ping"]["get"]["responses"]["204"].is_object());
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        15,
        "undocumented or stale paths"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "WhoAmIJson",
        "SensorJson",
        "ReadingJson",
        "HistoryJson",
        "TokenJson",
        "NewToken",
        "CreatedToken",
        "ConnectionJson",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    // The query parameters come from the handlers' own types.
    let params = doc["paths"]["/api/v1/sensors/{name}/history"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["name", "from", "to", "bucket", "limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_and_no_path_reaches_another_file() {
    use sensegate_gateway::http::dashboard;
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let index = request(addr, "GET", "/", None, "").await;
    if dashboard::is_built() {
        assert_eq!(index.status, 200, "{}", index.head);
        assert!(index.head.contains("content-type: text/html"));
        assert!(index.body.contains("<title>sensegate</title>"));
        assert!(
            index
                .head
                .contains("content-security-policy: default-src 'self'")
        );
        assert!(index.head.contains("x-frame-options: deny"));
        // Each script and style sheet the page names is served, and a
        // revalidation with its ETag gets 304.
        let assets: Vec<&str> = index
            .body
            .split('"')
            .filter(|s| s.starts_with("/assets/"))
            .collect();
        assert!(!assets.is_empty(), "{}", index.body);
        for path in assets {
            let r = request(addr, "GET", path, None, "").await;
            assert_eq!(r.status, 200, "{path}");
            let etag = r
                .head
                .lines()
                .find_map(|l| l.strip_prefix("etag: "))
                .unwrap()
                .to_owned();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            assert_eq!(read_reply(&mut s).await.status, 304, "{path}");
        }
    } else {
        assert_eq!(index.status, 404);
        assert!(index.body.contains("not built"), "{}", index.body);
    }
    // Traversal, encoded separators, NUL, backslashes, absolute paths,
    // doubled slashes: none reaches a file, on disk or embedded under
    // another name. Each gets the JSON 404 and nothing else.
    for path in [
        "/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2e%2e%2f%2e%2e%2fCargo.toml",
        "/assets/%2e%2e/index.html",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/..\\..\\Cargo.toml",
        "/assets/%252e%252e%252fCargo.toml",
        "/assets/app.js%00.html",
        "/assets/%2fetc%2fpasswd",
        "/assets//etc/passwd",
        "//etc/passwd",
        "/etc/passwd",
        "/index.html/..",
        "/assets/",
        "/assets/.",
        "/assets/..",
        "/.git/config",
        "/web/dist/index.html",
    ] {
        let r = request(addr, "GET", path, None, "").await;
        assert!(
            r.status == 404 || r.status == 400,
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.body.contains("[package]")
                && !r.body.contains("root:")
                && !r.body.contains("<html")
                && !r.body.contains("[core]"),
            "{path} leaked a file: {}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_caps_hit_queue_losses_and_commits() {
    use sensegate_gateway::auth::{Principal, Role};
    use sensegate_gateway::pattern::Pattern;
    let d = TestDaemon::start("[limits]\nsubscriber_queue = 4\n").await;
    let addr = http(&d);
    let service = d.daemon.service().clone();
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    // A query string over the cap, and a native frame over the hello cap.
    let long = format!("/api/v1/sensors?pattern={}", "a".repeat(4096));
    assert_eq!(
        request(addr, "GET", &long, Some(reader.expose()), "")
            .await
            .status,
        414
    );
    let mut raw = d.raw().await;
    common::send(&mut raw, &(1u32 << 20).to_le_bytes()).await;
    let _ = common::read_until_closed(&mut raw).await;
    // A subscriber whose queue of 4 overflows by 6, and readings that the
    // store commits.
    let sub = service.internals().hub.subscriber(
        999_999,
        &Principal {
            token_id: "0000000000000000".into(),
            name: "t".into(),
            role: Role::Reader,
            scope: Pattern::any(),
        },
        std::net::IpAddr::from([127, 0, 0, 1]),
    );
    let caps = sensegate_core::hub::PatternCaps {
        per_connection: 4,
        per_token: 4,
        per_address: 4,
    };
    assert!(
        service
            .internals()
            .hub
            .add_patterns(&sub, &[Pattern::any()], caps)
            .is_ok()
    );
    let sensor: Arc<str> = service.source_sink("test").register("lab/m", "").unwrap();
    let t0 = now_us();
    for i in 0..10 {
        service.source_sink("test").ingest(&[Reading {
            sensor: sensor.clone(),
            timestamp_us: t0 + i,
            value: 1.0,
            quality: Quality::Good,
        }]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let r = request(addr, "GET", "/metrics", Some(reader.expose()), "").await;
        assert_eq!(r.status, 200);
        if r.body.contains("sensegate_store_commit_seconds_count 0") {
            assert!(Instant::now() < deadline, "no commit counted:\n{}", r.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        break r.body;
    };
    // Every series checked here is a whole count.
    let value = |series: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in\n{body}"))
    };
    assert_eq!(value("sensegate_limits_hit_total{limit=\"http_query\"}"), 1);
    assert_eq!(value("sensegate_limits_hit_total{limit=\"frame_size\"}"), 1);
    assert_eq!(value("sensegate_limits_hit_total{limit=\"push_rate\"}"), 0);
    assert_eq!(value("sensegate_hub_dropped_total"), 6);
    assert!(value("sensegate_frames_received_total{frontend=\"http\"}") >= 2);
    // The reply to this scrape is counted once it is built, after the text.
    assert!(value("sensegate_frames_sent_total{frontend=\"http\"}") >= 1);
    assert!(value("sensegate_bytes_received_total{frontend=\"http\"}") > 4096);
    assert!(value("sensegate_bytes_sent_total{frontend=\"http\"}") > 0);
    assert!(value("sensegate_bytes_received_total{frontend=\"native\"}") >= 4);
    let commits = value("sensegate_store_commit_seconds_count");
    assert!(commits >= 1);
    assert_eq!(
        value("sensegate_store_commit_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    assert!(body.contains("# TYPE sensegate_store_commit_seconds histogram"));
    service.internals().hub.remove(999_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_tells_each_role_its_own_identity_and_nothing_else() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let r = request(addr, "GET", "/api/v1/whoami", None, "").await;
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHENTICATED"));
    for (role, name) in [
        (v1::Role::Admin, "admin"),
        (v1::Role::Reader, "reader"),
        (v1::Role::Device, "device"),
    ] {
        let (_, token) = d.token(role, "lab/*").await;
        let r = request(addr, "GET", "/api/v1/whoami", Some(token.expose()), "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["role"], name);
        assert_eq!(v["scope"], "lab/*");
        assert!(v["name"].is_string());
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        assert!(!r.body.contains(token.expose()), "the secret is not echoed");
    }
}

/// As `hostile::a_scoped_admin_stays_inside_its_scope`, over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_admin_cannot_escape_its_scope_over_http() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let (_, site) = d.token(v1::Role::Admin, "site-a/*").await;
    let site = site.expose().to_owned();
    let r = request(
        addr,
        "POST",
        "/api/v1/tokens",
        Some(&site),
        r#"{"name":"escape","role":"admin","scope":"*"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "FORBIDDEN"),
        "{}",
        r.body
    );
    let r = request(
        addr,
        "POST",
        "/api/v1/tokens",
        Some(&site),
        r#"{"name":"ok","role":"reader","scope":"site-a/x"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = request(addr, "GET", "/api/v1/tokens", Some(&site), "").await;
    assert_eq!(r.status, 200);
    let listed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let scopes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["site-a/*", "site-a/x"], "{}", r.body);
    let mut root = d.admin().await;
    let root_id = root.list_tokens().await.unwrap()[0].id.clone();
    let r = request(
        addr,
        "DELETE",
        &format!("/api/v1/tokens/{root_id}"),
        Some(&site),
        "",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    root.ping().await.unwrap();
}

/// The attack on clients: a body over the cap got a broken pipe or a reset,
/// not the 413, because the daemon closed while the client was still
/// sending (the kernel resets a socket closed with unread bytes, and the
/// client's unread 413 goes with it). The daemon now says `Connection:
/// close`, shuts its write side and drains for a bounded time before
/// closing, so the client reads the 413 every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_still_being_sent_reads_its_413_every_time() {
    let d = TestDaemon::start("[http]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1024\n").await;
    let addr = http(&d);
    let admin = d.admin.expose().to_owned();
    for expect_continue in [false, true] {
        for _ in 0..10 {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let expect = if expect_continue {
                "Expect: 100-continue\r\n"
            } else {
                ""
            };
            let head = format!(
                "POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}\r\n",
                20 << 20
            );
            let (got_tx, mut got_rx) = tokio::sync::watch::channel(false);
            // The client keeps sending its 20 MB body until it has read the
            // response, as curl does; a write that fails before then is the
            // broken pipe a client sees.
            let sender = tokio::spawn(async move {
                if wr.write_all(head.as_bytes()).await.is_err() {
                    return Err("the head");
                }
                let chunk = vec![b'x'; 16 << 10];
                for _ in 0..1280 {
                    // A client on a network, not infinitely fast: the
                    // daemon's drain and this test's reader get their turn.
                    tokio::task::yield_now().await;
                    tokio::select! {
                        r = wr.write_all(&chunk) => if r.is_err() {
                            return if *got_rx.borrow() { Ok(()) } else { Err("the body") };
                        },
                        _ = got_rx.changed() => return Ok(()),
                    }
                }
                Ok(())
            });
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n")
                        && head.starts_with("HTTP/1.1 413")
                    {
                        let length: usize = head
                            .to_ascii_lowercase()
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(usize::MAX);
                        if body.len() >= length {
                            return Ok(());
                        }
                    }
                    match rd.read(&mut buf).await {
                        Ok(0) => return Ok(()),
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                        Err(e) => return Err(e),
                    }
                }
            })
            .await
            .unwrap();
            let _ = got_tx.send(true);
            let text = String::from_utf8_lossy(&raw);
            assert!(
                text.starts_with("HTTP/1.1 413"),
                "expect_continue={expect_continue}: {read:?}, read {text:?}"
            );
            assert!(
                text.to_ascii_lowercase().contains("connection: close"),
                "{text}"
            );
            let sent = sender.await.unwrap();
            assert_eq!(
                sent,
                Ok(()),
                "a write failed before the 413 was read: broken pipe"
            );
        }
    }
    d.assert_served().await;
}

/// The attack: ten thousand stalled readers each holding a large response
/// would hold gigabytes. Every response with a known size is reserved from
/// the global in-flight budget (as its token's) until it is sent: one that
/// does not fit is answered 503 `OVERLOADED`, small ones still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_reserved_from_the_in_flight_budget() {
    let d = TestDaemon::start(
        "[limits]\ninflight_bytes_total = 65536\ninflight_bytes_per_connection = 65536\ninflight_bytes_per_token = 65536",
    )
    .await;
    let addr = http(&d);
    d.big_sensors(1000).await;
    let admin = d.admin.expose().to_owned();
    // About 150 KiB of JSON: more than the whole budget.
    let r = request(addr, "GET", "/api/v1/sensors", Some(&admin), "").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "OVERLOADED"),
        "{}",
        r.head
    );
    let r = request(addr, "GET", "/api/v1/whoami", Some(&admin), "").await;
    assert_eq!(r.status, 200);
    let hits = d.daemon.service().counters().limits.get(Limit::Inflight);
    assert!(hits >= 1);
}

/// A client that stops reading a stream is cut off at the write timeout,
/// not the idle timeout, as a native one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_at_the_write_timeout() {
    let d = TestDaemon::start(
        "[limits]\nwrite_timeout_ms = 300\nidle_timeout_secs = 300\n[sim]\nenabled = true\nsensors = 200\nrate_hz = 500\n",
    )
    .await;
    let addr = http(&d);
    let admin = d.admin.expose().to_owned();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/stream?sensors=sim/* HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    // Never read: the socket buffers fill, then the write stalls.
    let service = d.daemon.service().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.counters().limits.get(Limit::SlowReader) == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled stream was not cut off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while !service
        .internals()
        .registry
        .list(10, |c| c.frontend.name() == "http")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the stalled connection stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(s);
    d.assert_served().await;
}

/// HTTP lists come in pages too: at most `max_list_items`, with an
/// `x-next-after` header naming where the next page starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_come_in_pages_with_a_next_header() {
    let d = TestDaemon::start("[limits]\nmax_list_items = 10\n").await;
    let addr = http(&d);
    let admin = d.admin.expose().to_owned();
    let mut c = d.admin().await;
    for _ in 0..24 {
        c.create_token("t", v1::Role::Reader, "*").await.unwrap();
    }
    let (_, device) = d.token(v1::Role::Device, "p/*").await;
    let mut dev = sensegate_client::Client::connect(&d.options(&device))
        .await
        .unwrap();
    let now = now_us();
    let batch = (0..25)
        .map(|i| v1::Reading {
            sensor: format!("p/{i:02}"),
            timestamp_us: now,
            value: 1.0,
            quality: v1::Quality::Good.into(),
        })
        .collect();
    dev.push(batch).await.unwrap();
    for (route, key, want) in [
        ("/api/v1/tokens", "id", 26),
        ("/api/v1/sensors", "name", 25),
    ] {
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let sep = if route.contains('?') { '&' } else { '?' };
            let path = if after.is_empty() {
                route.to_owned()
            } else {
                format!("{route}{sep}after={after}")
            };
            let r = request(addr, "GET", &path, Some(&admin), "").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page: Vec<serde_json::Value> = serde_json::from_str(&r.body).unwrap();
            assert!(page.len() <= 10);
            seen.extend(page.iter().map(|v| v[key].as_str().unwrap().to_owned()));
            let next = r
                .head
                .lines()
                .find_map(|l| l.strip_prefix("x-next-after:"))
                .map(|v| v.trim().to_owned());
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (want, want), "{route}");
    }
}

/// Token names and scopes are checked once, by the protocol's rule with the
/// configured limits, on every front end and in the token store. Before,
/// the store checked against the default limits: with
/// `limits.max_name_bytes = 512` a 200-byte name passed the wire and was
/// then refused by the store, and HTTP token creation never saw the
/// configured cap at all (with 64, a 100-byte name was created).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_names_follow_the_configured_limits_on_every_front_end() {
    use common::{frame, hello, read_one, send};
    use sensegate_client::wire::envelope::Body;
    let create = |name: &str, id: u64| {
        frame(
            Body::CreateToken(v1::CreateTokenRequest {
                name: name.to_owned(),
                role: v1::Role::Reader.into(),
                scope: "lab/*".into(),
            }),
            id,
        )
    };
    let body = |name: &str| format!(r#"{{"name":"{name}","role":"reader","scope":"lab/*"}}"#);

    // A larger cap: a 200-byte name is accepted by both front ends.
    let wide = TestDaemon::start("[limits]\nmax_name_bytes = 512").await;
    let long = "n".repeat(200);
    let mut s = wide.raw().await;
    send(&mut s, &hello(&wide.admin)).await;
    assert!(matches!(
        read_one(&mut s).await.body,
        Some(Body::Welcome(_))
    ));
    send(&mut s, &create(&long, 2)).await;
    match read_one(&mut s).await.body {
        Some(Body::TokenCreated(t)) => assert_eq!(t.token.unwrap().name, long),
        other => panic!("native: {other:?}"),
    }
    let admin = wide.admin.expose().to_owned();
    let r = request(
        http(&wide),
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        &body(&long),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // A smaller cap: a 100-byte name is refused by both, and nothing is
    // created.
    let narrow = TestDaemon::start("[limits]\nmax_name_bytes = 64").await;
    let name = "n".repeat(100);
    let admin = narrow.admin.expose().to_owned();
    let r = request(
        http(&narrow),
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        &body(&name),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let mut s = narrow.raw().await;
    send(&mut s, &hello(&narrow.admin)).await;
    assert!(matches!(
        read_one(&mut s).await.body,
        Some(Body::Welcome(_))
    ));
    send(&mut s, &create(&name, 2)).await;
    match read_one(&mut s).await.body {
        Some(Body::Error(e)) => assert_eq!(e.code, i32::from(v1::ErrorCode::Malformed)),
        other => panic!("native: {other:?}"),
    }
    let r = request(http(&narrow), "GET", "/api/v1/tokens", Some(&admin), "").await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains(&name), "{}", r.body);
}

/// The stream's pattern list is refused as the OpenAPI document says: an
/// empty piece (it would widen the stream to everything in scope), and a
/// list over 512 characters (any list within it fits the query-string cap
/// percent-encoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_list_with_an_empty_piece_or_over_its_length_is_refused() {
    let d = TestDaemon::start("").await;
    let admin = d.admin.expose().to_owned();
    let long = vec!["a/*"; 129].join(",");
    assert!(long.len() > 512 && long.len() < 600);
    for list in ["a/*,", ",a/*", "a/*,,b/*", long.as_str()] {
        let path = format!("/api/v1/stream?sensors={list}");
        let r = request(http(&d), "GET", &path, Some(&admin), "").await;
        assert_eq!((r.status, r.code().as_str()), (400, "MALFORMED"), "{list}");
    }
    d.assert_served().await;
}

/// The document lists what the guards in front of every route answer, and
/// constrains each parameter as the server checks it: what schemathesis
/// (`scripts/api-contract.sh`) holds the server to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_status_and_constrains_parameters() {
    let d = TestDaemon::start("").await;
    let r = request(http(&d), "GET", "/api/v1/openapi.json", None, "").await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    // What the guards answer on their own is on every operation, and 429
    // (failed authentications) on every one that takes a token.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["401", "408", "413", "414", "503"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: no {status}"
                );
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(
                    op["responses"]["429"].is_object(),
                    "{method} {path}: no 429"
                );
            }
        }
    }
    // Parameters are constrained as the server checks them.
    let param = |path: &str, name: &str| {
        let op = &doc["paths"][path]["get"];
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    let history = "/api/v1/sensors/{name}/history";
    for name in ["from", "to", "bucket"] {
        assert_eq!(param(history, name)["minimum"], 0, "{name}");
    }
    assert_eq!(param(history, "name")["maxLength"], 128);
    assert_eq!(
        param(history, "name")["pattern"],
        "^[A-Za-z0-9._:/-]{1,128}$"
    );
    let sensors = param("/api/v1/stream", "sensors");
    assert_eq!(sensors["minLength"], 1, "an empty list is refused");
    assert!(sensors["pattern"].as_str().unwrap().contains("(,"));
}
