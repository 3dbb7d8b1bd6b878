//! The write routes through real sockets: InfluxDB line protocol at
//! `/api/v2/write` and `/write`, SenML at `/api/v1/readings`, each request
//! one push (all or nothing) that is answered 204 only once durable, and
//! the hostile bodies (a gzip bomb, a trickled body, a huge line, a million
//! tags, an open quote, bad UTF-8, a far-future timestamp, names outside
//! the scope, a token in the URL), each followed by a check that a normal
//! writer is still served.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Reply, TestDaemon, http, read_reply, rss_bytes};
use sensegate_client::wire as v1;
use sensegate_gateway::reading::now_us;
use sensegate_gateway::stats::Limit;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// One POST on its own connection, with `headers` (each `Name: value`).
async fn post(addr: SocketAddr, path: &str, headers: &[String], body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before all of it is sent.
    let _ = s.write_all(body).await;
    read_reply(&mut s).await
}

/// `n` lines `m,i=<k> v=1` for k from `at`: one reading each.
fn numbered(n: usize, at: usize) -> String {
    let mut out = String::new();
    for i in at..at + n {
        let _ = writeln!(out, "m,i={i} v=1");
    }
    out
}

fn token(secret: &str) -> String {
    format!("Authorization: Token {secret}")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn device(d: &TestDaemon, scope: &str) -> String {
    let (_, s) = d.token(v1::Role::Device, scope).await;
    s.expose().to_owned()
}

/// A normal writer is still served: a one-line v2 write is durable.
async fn assert_writer_served(d: &TestDaemon, secret: &str) {
    let r = post(
        http(d),
        "/api/v2/write?bucket=b&org=o",
        &[token(secret)],
        b"served,host=gw ok=1\n",
    )
    .await;
    assert_eq!(r.status, 204, "{} {}", r.head, r.body);
    d.assert_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_protocol_through_both_routes_is_durable_and_visible() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    let mut admin = d.admin().await;
    // A subscriber sees what the writes carry.
    let mut watcher = sensegate_client::Client::connect(&d.options(&d.admin))
        .await
        .unwrap();
    watcher.subscribe(&["cpu/*"]).await.unwrap();
    let t_s = now_us() / 1_000_000 - 60;
    // v2: Token, the bucket, seconds.
    let body = format!(
        "cpu,host=gw1,cpu=cpu0 usage_idle=98.5,usage_user=12i,up=true,n=7u,msg=\"skipped\" {t_s}\n\
         # a comment\n\n\
         cpu,host=gw2 usage_idle=50 {t_s}\n"
    );
    let reply = post(
        addr,
        "/api/v2/write?org=site&bucket=gw&precision=s",
        &[token(&secret)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 204, "{} {}", reply.head, reply.body);
    // Durable before the answer: in history at once.
    let h = admin
        .history("cpu/cpu0/gw1/usage_idle", 0, i64::MAX, 0, 10)
        .await
        .unwrap();
    assert_eq!(h.readings.len(), 1);
    assert_eq!(h.readings[0].timestamp_us, t_s * 1_000_000);
    assert!((h.readings[0].value - 98.5).abs() < 1e-9);
    for (name, value) in [
        ("cpu/cpu0/gw1/usage_user", 12.0),
        ("cpu/cpu0/gw1/up", 1.0),
        ("cpu/cpu0/gw1/n", 7.0),
        ("cpu/gw2/usage_idle", 50.0),
    ] {
        let latest = admin.latest(name).await.unwrap();
        assert!((latest.value - value).abs() < 1e-9, "{name}");
    }
    // String fields are not readings.
    assert!(admin.latest("cpu/cpu0/gw1/msg").await.is_err());
    let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert!(!batch.readings.is_empty());
    // v1: Basic with the token as the password, milliseconds; no timestamp
    // means the server's time.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("telegraf:{secret}"));
    let body = format!(
        "mem,host=gw1 used=1024i {}\nmem,host=gw2 used=2048i\n",
        t_s * 1000
    );
    let reply = post(
        addr,
        "/write?db=telegraf&precision=ms&u=telegraf",
        &[format!("Authorization: Basic {basic}")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 204, "{} {}", reply.head, reply.body);
    assert_eq!(
        admin.latest("mem/gw1/used").await.unwrap().timestamp_us,
        t_s * 1_000_000
    );
    let stamped = admin.latest("mem/gw2/used").await.unwrap().timestamp_us;
    assert!((now_us() - stamped).abs() < 60_000_000, "{stamped}");
    // And `Token` on v1, `Bearer` on v2, gzip on both.
    let z = gzip(b"disk,host=gw1 free=3\n");
    for (path, auth) in [
        ("/write?db=x", token(&secret)),
        (
            "/api/v2/write?bucket=b",
            format!("Authorization: Bearer {secret}"),
        ),
    ] {
        let reply = post(addr, path, &[auth, "Content-Encoding: gzip".to_owned()], &z).await;
        assert_eq!(reply.status, 204, "{path}: {} {}", reply.head, reply.body);
    }
    assert!((admin.latest("disk/gw1/free").await.unwrap().value - 3.0).abs() < 1e-9);
    // /ping answers InfluxDB 1.x clients without a token.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut s).await.status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_refuses_the_whole_request_with_its_number() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    let write = |body: Vec<u8>| {
        let auth = token(&secret);
        async move { post(addr, "/api/v2/write?bucket=b", &[auth], &body).await }
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // An open quote is an error on its line, not the rest of the body
        // swallowed into one field.
        (
            b"ok1 v=1\nok2 v=2\nbad s=\"open v=3\nok3 v=4\n".to_vec(),
            "line 3: unterminated string",
        ),
        (
            b"ok1 v=1\nbad v=\xff\xfe\n".to_vec(),
            "line 2: not valid UTF-8",
        ),
        (b"ok1 v=1\nbad\n".to_vec(), "line 2: missing fields"),
        (
            b"ok1 v=1\nbad v=1x\n".to_vec(),
            "line 2: field 1: invalid value",
        ),
        (
            format!(
                "ok1 v=1\nfuture v=1 {}\n",
                (now_us() + 3_600_000_000) * 1000
            )
            .into_bytes(),
            "line 2: its timestamp is more than 10 minutes ahead",
        ),
        (
            format!("{} v=1\n", "m".repeat(200)).into_bytes(),
            "line 1: measurement over the cap of 128",
        ),
        (
            format!("m {} v=1\n", "x".repeat(70 << 10)).into_bytes(),
            "line 1: line longer than 65536 bytes",
        ),
        (
            format!(
                "m,{} v=1\n",
                (0..40)
                    .map(|i| format!("t{i}=a"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .into_bytes(),
            "line 1: tags over the cap of 32",
        ),
    ];
    for (body, want) in cases {
        let r = write(body).await;
        assert_eq!(r.status, 400, "{want}: {}", r.body);
        assert!(r.message().starts_with(want), "{want}: {}", r.message());
        assert!(
            r.message().contains("nothing was written"),
            "{}",
            r.message()
        );
    }
    // Nothing of any refused request was applied.
    let mut admin = d.admin().await;
    assert!(admin.latest("ok1/v").await.is_err());
    assert!(admin.list_sensors("").await.unwrap().is_empty());
    // A bad precision or a missing bucket is a bad request too.
    // So is a free parameter over what the document allows: not used, but
    // bounded (printable ASCII, at most 64).
    let long = format!("/api/v2/write?bucket={}", "b".repeat(65));
    for path in [
        "/api/v2/write?bucket=b&precision=h",
        "/api/v2/write",
        "/write?precision=s",
        long.as_str(),
        "/write?db=%C3%A9",
        "/write?db=x&consistency=bogus",
    ] {
        let r = post(addr, path, &[token(&secret)], b"m v=1\n").await;
        assert_eq!(r.status, 400, "{path}");
    }
    assert_writer_served(&d, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_scope_refuse_the_whole_request() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let secret = device(&d, "site/*").await;
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        b"site,room=a t=21\ncpu,host=gw1 usage=3\n",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let mut admin = d.admin().await;
    assert!(
        admin.latest("site/a/t").await.is_err(),
        "half a request was applied"
    );
    // A reader may not write at all; no token, or a wrong one, is 401.
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(reader.expose())],
        b"site t=1\n",
    )
    .await;
    assert_eq!(r.status, 403);
    // Refused before its body is read: an empty one too.
    let r = post(addr, "/write?db=x", &[token(reader.expose())], b"").await;
    assert_eq!(r.status, 403);
    let r = post(addr, "/api/v2/write?bucket=b", &[], b"site t=1\n").await;
    assert_eq!(r.status, 401);
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token("sg_wrong")],
        b"site t=1\n",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        b"site,room=a t=21\n",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_writer_served(&d, &device(&d, "*").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_is_refused_and_never_used() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    for path in [
        format!("/write?db=x&u=telegraf&p={secret}"),
        format!("/api/v2/write?bucket=b&token={secret}"),
        format!("/api/v1/sensors?access_token={secret}"),
    ] {
        // Refused with the header present too: the URL is already in logs.
        for headers in [vec![], vec![token(&secret)]] {
            let r = post(addr, &path, &headers, b"url v=1\n").await;
            assert_eq!(r.status, 401, "{path}");
            assert!(
                r.message().contains("Authorization header"),
                "{}",
                r.message()
            );
            assert!(!r.body.contains(&secret), "the token was echoed");
        }
    }
    let mut admin = d.admin().await;
    assert!(admin.latest("url/v").await.is_err());
    assert_writer_served(&d, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_and_oversized_bodies_get_413_without_the_memory() {
    let d = TestDaemon::start("[ingest]\nmax_body_bytes = 1048576\nmax_decoded_bytes = 4194304\n")
        .await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    let gz = [token(&secret), "Content-Encoding: gzip".to_owned()];
    // A bomb that parses: 256 MiB of comment lines (each a line the
    // parser takes) in a small body. Inflating stops at the 4 MiB cap.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut line = vec![b'#'];
    line.extend(std::iter::repeat_n(b'x', 60 << 10));
    line.push(b'\n');
    let block = line.repeat(16);
    for _ in 0..(256 << 20) / block.len() {
        e.write_all(&block).unwrap();
    }
    let bomb = e.finish().unwrap();
    let rss = rss_bytes();
    let started = Instant::now();
    assert!(bomb.len() <= 1 << 20, "{}", bomb.len());
    let r = post(addr, "/api/v2/write?bucket=b", &gz, &bomb).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.message().contains("inflated"), "{}", r.message());
    assert!(started.elapsed() < Duration::from_secs(10));
    let grew = rss_bytes().saturating_sub(rss);
    assert!(grew < 64 << 20, "RSS grew by {grew}");
    assert_eq!(
        d.daemon
            .service()
            .counters()
            .limits
            .get(Limit::IngestDecoded),
        1
    );
    // Corrupt gzip is a bad request; an encoding we do not read is 415.
    let r = post(addr, "/api/v2/write?bucket=b", &gz, b"not gzip").await;
    assert_eq!(r.status, 400);
    let br = [token(&secret), "Content-Encoding: br".to_owned()];
    assert_eq!(
        post(addr, "/api/v2/write?bucket=b", &br, b"m v=1\n")
            .await
            .status,
        415
    );
    // A body declared over the cap is refused before it is read; a line of
    // 10 MiB is over the body cap whatever its declared length.
    let big = vec![b'x'; 10 << 20];
    let r = post(addr, "/api/v2/write?bucket=b", &[token(&secret)], &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.head.contains("connection: close"));
    // A million tags: over the body cap as sent; inflated from gzip, over
    // the line's tag cap (its first line) or the line cap.
    let mut tags = String::from("m");
    for i in 0..1_000_000 {
        let _ = write!(tags, ",t{i}=a");
    }
    tags.push_str(" v=1\n");
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        tags.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
    let z = gzip(tags.as_bytes());
    let r = post(addr, "/api/v2/write?bucket=b", &gz, &z).await;
    assert!(matches!(r.status, 400 | 413), "{} {}", r.status, r.body);
    assert_writer_served(&d, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut_off_and_others_are_served() {
    let d =
        TestDaemon::start("[http]\nlisten = \"127.0.0.1:0\"\nrequest_timeout_ms = 1500\n").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    // Declares 1 GiB, chunked, a few bytes at a time.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v2/write?bucket=b HTTP/1.1\r\nHost: x\r\n{}\r\nTransfer-Encoding: chunked\r\n\r\n",
        token(&secret)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = async {
        loop {
            if s.write_all(b"4\r\nm v=\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
    };
    // Meanwhile another writer is served.
    let other = assert_writer_served(&d, &secret);
    tokio::join!(trickle, other);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the trickled request was not cut off"
    );
    assert!(
        d.daemon
            .service()
            .counters()
            .limits
            .get(Limit::HttpRequestTimeout)
            >= 1
    );
    // Declared over the cap: refused at once.
    let r = {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/v2/write?bucket=b HTTP/1.1\r\nHost: x\r\n{}\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\nm v=1\n",
            token(&secret)
        );
        s.write_all(head.as_bytes()).await.unwrap();
        read_reply(&mut s).await
    };
    assert_eq!(r.status, 413);
    assert_writer_served(&d, &secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_caps_are_told_to_split_and_the_rate_to_wait() {
    let d =
        TestDaemon::start("[limits]\npush_rate_per_sec = 10\n[ingest]\nmax_readings = 8\n").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    let lines = |n: usize, at: usize| -> Vec<u8> { numbered(n, at).into_bytes() };
    // Over `ingest.max_readings`: 413, split it.
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        &lines(9, 0),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.message().contains("smaller batches"));
    // Within it: 8 pass; the next 8 are over the token's rate of 10/s: 429
    // with Retry-After, nothing applied.
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        &lines(8, 0),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        &lines(8, 100),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.head.contains("retry-after: 1"), "{}", r.head);
    let mut admin = d.admin().await;
    assert!(admin.latest("m/100/v").await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        &lines(8, 100),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Counted by reason.
    let text = {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            d.admin.expose()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        read_reply(&mut s).await.body
    };
    for line in [
        "sensegate_ingest_refused_total{frontend=\"http\",reason=\"too_large\"} 1",
        "sensegate_ingest_refused_total{frontend=\"http\",reason=\"rate\"} 8",
        "sensegate_limits_hit_total{limit=\"ingest_readings\"} 1",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_push_rate_at_once_gets_413() {
    let d = TestDaemon::start("[limits]\npush_rate_per_sec = 10\n").await;
    let addr = http(&d);
    let secret = device(&d, "*").await;
    let body = numbered(11, 0);
    let r = post(
        addr,
        "/api/v2/write?bucket=b",
        &[token(&secret)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.message().contains("push rate"), "{}", r.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senml_packs_keep_their_units_and_refuse_whole() {
    let d = TestDaemon::start("").await;
    let addr = http(&d);
    let secret = device(&d, "urn:dev:*").await;
    let senml = |body: &str, ct: &str| {
        let (auth, body) = (
            format!("Authorization: Bearer {secret}"),
            body.as_bytes().to_vec(),
        );
        let ct = format!("Content-Type: {ct}");
        async move { post(addr, "/api/v1/readings", &[auth, ct], &body).await }
    };
    let t = now_us() / 1_000_000 - 10;
    let pack = format!(
        r#"[{{"bn":"urn:dev:ow:10e2073a01080063:","bt":{t},"bu":"Cel","n":"temp","v":23.1}},
            {{"n":"humidity","u":"%RH","v":47,"t":1}},
            {{"n":"open","vb":true}}]"#
    );
    let r = senml(&pack, "application/senml+json").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mut admin = d.admin().await;
    let temp = admin
        .latest("urn:dev:ow:10e2073a01080063:temp")
        .await
        .unwrap();
    assert_eq!(temp.timestamp_us, t * 1_000_000);
    let hum = admin
        .latest("urn:dev:ow:10e2073a01080063:humidity")
        .await
        .unwrap();
    assert_eq!(hum.timestamp_us, (t + 1) * 1_000_000);
    let sensors = admin.list_sensors("urn:dev:*").await.unwrap();
    let unit = |n: &str| {
        sensors
            .iter()
            .find(|s| s.name.ends_with(n))
            .map(|s| s.unit.clone())
            .unwrap()
    };
    assert_eq!(
        (unit("temp").as_str(), unit("humidity").as_str()),
        ("Cel", "%RH")
    );
    // A bad record refuses the pack; so does a name outside the scope.
    let r = senml(
        r#"[{"n":"urn:dev:a","v":1},{"n":"urn:dev:b","v":"x"}]"#,
        "application/senml+json",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = senml(
        r#"[{"n":"urn:dev:a","v":1},{"n":"other","v":1}]"#,
        "application/json",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(admin.latest("urn:dev:a").await.is_err());
    // A unit the service refuses (a zero-width space) refuses the pack
    // before anything is taken: no sensor is created for it.
    let r = senml(
        "[{\"n\":\"urn:dev:zw\",\"u\":\"\u{200b}\",\"v\":1}]",
        "application/senml+json",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(admin.list_sensors("urn:dev:zw").await.unwrap().is_empty());
    // Not JSON by its type: 415.
    let r = senml(r#"[{"n":"urn:dev:a","v":1}]"#, "text/plain").await;
    assert_eq!(r.status, 415);
    assert_writer_served(&d, &device(&d, "*").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_templates_name_the_points_they_take() {
    let d = TestDaemon::start(
        "[[ingest.template]]\nmeasurement = \"cpu\"\nsensor = \"{host}/cpu/{cpu}/{field}\"\n\
         [[ingest.template]]\nmeasurement = \"disk*\"\nsensor = \"{host}/{measurement}/{field}\"\n",
    )
    .await;
    let secret = device(&d, "*").await;
    let body = b"cpu,host=gw1,cpu=cpu0 idle=98\ncpu,host=gw2 idle=50\ndisk_io,host=gw1,path=/var reads=3i\n";
    let r = post(http(&d), "/api/v2/write?bucket=b", &[token(&secret)], body).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mut admin = d.admin().await;
    for (name, value) in [
        ("gw1/cpu/cpu0/idle", 98.0),
        // Without the `cpu` tag the first template does not take it: the
        // default rule names it.
        ("cpu/gw2/idle", 50.0),
        ("gw1/disk_io/reads", 3.0),
    ] {
        let latest = admin.latest(name).await.unwrap();
        assert!((latest.value - value).abs() < 1e-9, "{name}");
    }
}
