//! The site view (`history.backend = "postgres"`): three gateways upload to
//! one real PostgreSQL server (TLS, SCRAM), and a fourth sensegate serves
//! their history from it, read-only, as a role that may only read: through
//! the HTTP API, the native protocol and the dashboard (headless Chromium),
//! with its own tokens and the same policy. Rows the database holds that
//! are not valid readings or names are left out; pushes are refused.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Gateway;
use common::devices::{BATCH, Devices, base, device_secret};
use common::pg::{PASSWORD, Postgres, Proxy, USER};
use sensegate_client::wire as v1;
use sensegate_client::{Client, ClientError, ConnectOptions, Secret};

/// A gateway the test writes into the database itself, with a name too
/// long to be sent.
const ODD: &str = "00000000-0000-4000-8000-000000000001";

/// The read-only role the site view logs in as.
const VIEWER: &str = "site_viewer";

/// One HTTP/1.1 request; the status and the body. A body goes as SenML
/// to the SenML route, as text elsewhere.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let kind = if path == "/api/v1/readings" {
        "application/senml+json"
    } else {
        "text/plain"
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
}

fn get(addr: &str, path: &str, token: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", path, token, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    json(&body)
}

fn encode(name: &str) -> String {
    name.replace('/', "%2F")
}

/// The sensors the site view lists to `token`.
fn listed(addr: &str, token: &str) -> BTreeSet<String> {
    get(addr, "/api/v1/sensors", token)
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits up to 30 s for `f` to hold.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn site_config(pg: &Postgres, port: u16, user: &str, password_file: &Path) -> String {
    format!(
        "[history]\nbackend = \"postgres\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\n\
         dbname = \"sensegate\"\npassword_file = \"{}\"\nca_file = \"{}\"\npoll_ms = 200\n\
         timeout_ms = 5000\nmax_rows_per_poll = 100\n",
        password_file.display(),
        pg.ca_file().display()
    )
}

async fn token(site: &Gateway, name: &str, role: v1::Role, scope: &str) -> String {
    site.client()
        .await
        .create_token(name, role, scope)
        .await
        .unwrap()
        .secret
}

/// The dashboard in headless Chromium (`web/tests/site.mjs`): required
/// where the suite installs the browser (CI with E2E on).
fn dashboard(site: &Gateway, token: &str, sensors: &[String], history: &str, readings: usize) {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let ready = Path::new("/usr/bin/chromium").exists()
        && web.join("node_modules/playwright-core").is_dir()
        && web.join("dist/index.html").is_file();
    if !ready {
        let required = std::env::var("CI").as_deref() == Ok("true")
            && std::env::var("E2E").as_deref() != Ok("0");
        assert!(
            !required,
            "the dashboard check needs chromium, web/node_modules and web/dist (scripts/test-all.sh)"
        );
        eprintln!("SKIPPED the dashboard check: no chromium, playwright-core or built dashboard");
        return;
    }
    let out = Command::new("node")
        .arg("tests/site.mjs")
        .current_dir(&web)
        .env("SITE_URL", format!("http://{}/", site.http_addr()))
        .env("SITE_TOKEN", token)
        .env("SITE_SENSORS", sensors.join(","))
        .env("SITE_HISTORY", history)
        .env("SITE_HISTORY_READINGS", readings.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the site view's dashboard:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_and_one_site_view() {
    let Some(pg) = Postgres::start() else { return };
    let names = ["hall-1", "hall-2", "hall-3"];
    let gateways = pg.gateways(&names);
    let mut acked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (gw, name) in gateways.iter().zip(names) {
        let secret = device_secret(gw).await;
        for (sensor, t) in Devices::start(&gw.addr, &secret, 2, 3, base())
            .finish()
            .await
        {
            acked
                .entry(format!("{name}/{sensor}"))
                .or_default()
                .insert(t);
        }
    }
    assert_eq!(acked.len(), 6);
    for gw in &gateways {
        gw.settle("site");
    }
    // The site view's role may read the tables and nothing else.
    pg.query(&format!(
        "CREATE ROLE {VIEWER} LOGIN PASSWORD '{PASSWORD}'; \
         GRANT SELECT ON sensegate_readings, sensegate_readings_sensors, \
         sensegate_readings_gateways TO {VIEWER}"
    ))
    .unwrap();
    // Rows that are not valid here: a name the name rule refuses, a
    // gateway's name longer than a message from the server may be (the
    // view must neither take it nor stall on it: that gateway goes by its
    // id), and a value that is not a number.
    pg.query(&format!(
        "INSERT INTO sensegate_readings_sensors (gateway, name) \
         SELECT id, 'bad name' FROM sensegate_readings_gateways WHERE name = 'hall-1'; \
         INSERT INTO sensegate_readings_gateways (id, name, seen) \
         VALUES ('{ODD}', repeat('x', 2000000), now()); \
         INSERT INTO sensegate_readings_sensors (gateway, name) VALUES ('{ODD}', 'dev/d0'); \
         INSERT INTO sensegate_readings (time, gateway, sensor, value, quality) \
         SELECT now() + interval '1 minute', s.gateway, s.id, 'NaN', 0 \
         FROM sensegate_readings_sensors s JOIN sensegate_readings_gateways g \
         ON g.id = s.gateway WHERE g.name = 'hall-3' AND s.name = 'dev/d1'"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw_dir = tempfile::tempdir().unwrap();
    let pw = pw_dir.path().join("viewer.pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let site = Gateway::start_named_in(dir, "site", &site_config(&pg, pg.port, VIEWER, &pw));
    let addr = site.http_addr();
    let mut want: BTreeSet<String> = acked.keys().cloned().collect();
    want.insert(format!("{ODD}/dev/d0"));
    wait_until("the site's sensors", || listed(&addr, &site.token) == want);

    // Every acknowledged reading of every gateway, through the HTTP API.
    let (from, to) = (base() - 3_600_000_000, base() + 7_200_000_000);
    for (sensor, times) in &acked {
        let (got, truncated) = history_times(&addr, &site.token, sensor, from, to);
        assert_eq!(&got, times, "{sensor}");
        assert!(!truncated);
        // Buckets of 100 µs from the first reading: one per pushed batch.
        let (first, last) = (times.first().unwrap(), times.last().unwrap());
        let b = get(
            &addr,
            &format!(
                "/api/v1/sensors/{}/history?from={first}&to={}&bucket={BATCH}",
                encode(sensor),
                last + 1
            ),
            &site.token,
        );
        let buckets = b["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), times.len() / 100, "{sensor}: {b}");
        for (i, bucket) in buckets.iter().enumerate() {
            let i = i64::try_from(i).unwrap();
            assert_eq!(bucket["start_us"].as_i64().unwrap(), first + i * BATCH);
            assert_eq!(bucket["count"], 100);
            assert_eq!(bucket["min"], 0.0);
            assert_eq!(bucket["max"], 99.0);
            assert_eq!(bucket["mean"], 49.5);
        }
        // The latest reading is the newest acknowledged one: the row with
        // a value that is not a number (hall-3/dev/d1) is left out.
        let latest = get(
            &addr,
            &format!("/api/v1/sensors/{}/latest", encode(sensor)),
            &site.token,
        );
        assert_eq!(
            latest["timestamp_us"].as_i64(),
            times.last().copied(),
            "{sensor}"
        );
    }

    // The native protocol, a reader scoped to one gateway: its sensors
    // only, its history, and a live subscription fed from the database.
    let reader = token(&site, "hall-2-reader", v1::Role::Reader, "hall-2/*").await;
    let mut o = ConnectOptions::plain(site.addr.clone(), Secret::new(reader.clone()));
    o.timeout = Duration::from_secs(20);
    let mut c = Client::connect(&o).await.unwrap();
    let mine: BTreeSet<String> = c
        .list_sensors("")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        mine,
        ["hall-2/dev/d0", "hall-2/dev/d1"].map(str::to_owned).into()
    );
    let h = c.history("hall-2/dev/d0", from, to, 0, 0).await.unwrap();
    assert_eq!(h.readings.len(), acked["hall-2/dev/d0"].len());
    match c.history("hall-1/dev/d0", from, to, 0, 0).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, v1::ErrorCode::Forbidden),
        other => panic!("out of scope: {other:?}"),
    }
    let (status, _) = http(
        &addr,
        "GET",
        "/api/v1/sensors/hall-1%2Fdev%2Fd0/history",
        &reader,
        "",
    );
    assert_eq!(status, 403);
    c.subscribe(&["hall-2/*"]).await.unwrap();
    // A reading pushed to hall-2 now reaches the site view's subscriber
    // through the uplink and the database.
    // Readings pushed to hall-2 now reach the site view's subscriber
    // through the uplink and the database: all of them, though more than
    // one poll may read (`history.max_rows_per_poll = 100`).
    let now = sensegate_gateway::reading::now_us();
    let secret = device_secret(&gateways[1]).await;
    let mut o = ConnectOptions::plain(gateways[1].addr.clone(), secret);
    o.timeout = Duration::from_secs(20);
    let mut device = Client::connect(&o).await.unwrap();
    let fresh: BTreeSet<i64> = (0..300).map(|i| now - 300 + i).collect();
    for part in fresh.iter().copied().collect::<Vec<_>>().chunks(100) {
        device
            .push(
                part.iter()
                    .map(|&t| v1::Reading {
                        sensor: "dev/d1".to_owned(),
                        timestamp_us: t,
                        value: 42.5,
                        quality: v1::Quality::Uncertain.into(),
                    })
                    .collect(),
            )
            .await
            .unwrap();
    }
    let mut live = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while live.len() < fresh.len() {
            let batch = c.next_batch().await.unwrap();
            for r in batch
                .readings
                .into_iter()
                .filter(|r| r.timestamp_us >= now - 300)
            {
                assert_eq!(r.sensor, "hall-2/dev/d1");
                assert!((r.value - 42.5).abs() < f64::EPSILON);
                assert_eq!(r.quality, i32::from(v1::Quality::Uncertain));
                live.insert(r.timestamp_us);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of 300 new readings reached the subscriber", live.len()));
    assert_eq!(live, fresh);
    let metric = |name: &str| site.metric(name).unwrap();
    // At most the cap, and more than one sensor's share of it: what the
    // others left went to the one with more.
    let most = metric("sensegate_site_poll_rows_max");
    assert!(most <= 100.0 && most > 20.0, "a poll read {most} rows");
    // A sensor added after the bad rows is learned: discovery went on.
    device_push(&gateways[0], "dev/d9", now).await;
    wait_until("a new sensor past the bad rows", || {
        listed(&addr, &site.token).contains("hall-1/dev/d9")
    });
    assert!(metric("sensegate_site_polls_total") > 3.0);
    assert_eq!(site.metric("sensegate_site_connected"), Some(1.0));
    // Three gateways' six, the gateway with the long name's, and dev/d9.
    assert_eq!(site.metric("sensegate_site_sensors"), Some(8.0));
    assert!(
        metric("sensegate_site_refused_total") >= 1.0,
        "the bad name"
    );

    // Pushes are refused, with the reason, on every front end.
    let admin_device = token(&site, "dev", v1::Role::Device, "*").await;
    let (status, body) = http(
        &addr,
        "POST",
        "/api/v2/write?bucket=b&precision=ns",
        &admin_device,
        "m,sensor=x v=1 1\n",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only site view"), "{body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/api/v1/readings",
        &admin_device,
        r#"[{"n":"hall-1/dev/d0","v":1}]"#,
    );
    assert_eq!(status, 403, "SenML: {body}");
    assert!(body.contains("read-only site view"), "{body}");
    let mut o = ConnectOptions::plain(site.addr.clone(), Secret::new(admin_device));
    o.timeout = Duration::from_secs(20);
    let mut d = Client::connect(&o).await.unwrap();
    match d
        .push(vec![v1::Reading {
            sensor: "hall-1/dev/d0".to_owned(),
            timestamp_us: now,
            value: 1.0,
            quality: v1::Quality::Good.into(),
        }])
        .await
    {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, v1::ErrorCode::Forbidden);
            assert!(message.contains("read-only site view"), "{message}");
        }
        other => panic!("a push to the site view: {other:?}"),
    }
    // Counted and said, without the name the database holds.
    let log = site.log_lines();
    assert!(
        log.iter().any(|l| l.contains("refused_total")),
        "the rows left out were not reported"
    );
    assert!(
        !log.iter().any(|l| l.contains("bad name")),
        "a name from the database was logged"
    );

    // The dashboard, as a reader of the whole site.
    let everyone = token(&site, "site-reader", v1::Role::Reader, "*").await;
    let sensors: Vec<String> = acked.keys().cloned().collect();
    dashboard(
        &site,
        &everyone,
        &sensors,
        "hall-3/dev/d0",
        acked["hall-3/dev/d0"].len(),
    );

    // Gateways renamed in the database (hall-2's role can, without
    // row-level security): hall-2 takes hall-1's name. A restarted view
    // keeps the names it pinned, so hall-1/* is still hall-1's readings.
    pg.query(
        "UPDATE sensegate_readings_gateways SET name = 'hall-x' WHERE name = 'hall-1'; \
         UPDATE sensegate_readings_gateways SET name = 'hall-1' WHERE name = 'hall-2'",
    )
    .unwrap();
    let dir = site.kill();
    let site = Gateway::start_named_in(dir, "site", &site_config(&pg, pg.port, VIEWER, &pw));
    let addr = site.http_addr();
    let mut again = want.clone();
    again.insert("hall-1/dev/d9".to_owned());
    wait_until("the same names after a restart", || {
        listed(&addr, &site.token) == again
    });
    let (got, _) = history_times(&addr, &site.token, "hall-1/dev/d0", from, to);
    assert_eq!(got, acked["hall-1/dev/d0"]);
}

/// The times of `sensor`'s raw history in `[from, to)` through the HTTP
/// API, and whether the answer was cut.
fn history_times(
    addr: &str,
    token: &str,
    sensor: &str,
    from: i64,
    to: i64,
) -> (BTreeSet<i64>, bool) {
    let h = get(
        addr,
        &format!(
            "/api/v1/sensors/{}/history?from={from}&to={to}",
            encode(sensor)
        ),
        token,
    );
    let times = h["readings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["timestamp_us"].as_i64().unwrap())
        .collect();
    (times, h["truncated"].as_bool().unwrap())
}

/// One reading pushed to `gw` as its device.
async fn device_push(gw: &Gateway, sensor: &str, at: i64) {
    let mut o = ConnectOptions::plain(gw.addr.clone(), device_secret(gw).await);
    o.timeout = Duration::from_secs(20);
    let mut device = Client::connect(&o).await.unwrap();
    device
        .push(vec![v1::Reading {
            sensor: sensor.to_owned(),
            timestamp_us: at,
            value: 1.0,
            quality: v1::Quality::Good.into(),
        }])
        .await
        .unwrap();
}

/// The site's database goes silent (the proxy keeps connections open and
/// forwards nothing): a history query fails within `history.timeout_ms`
/// instead of holding its slot, the follower gives the connection up, and
/// both come back once the network does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_site_database_times_out_and_the_view_comes_back() {
    let Some(pg) = Postgres::start() else { return };
    let gw = Gateway::start_named("hall-1", &pg.uplink(pg.port, ""));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 1, 2, base())
        .finish()
        .await;
    gw.settle("site");
    let proxy = Proxy::start(pg.port).await;
    let config = site_config(&pg, proxy.port, USER, &pg.password_file())
        .replace("timeout_ms = 5000", "timeout_ms = 1000");
    let site = Gateway::start_named("site", &config);
    let addr = site.http_addr();
    wait_until("the site's sensor", || {
        listed(&addr, &site.token).len() == 1
    });
    let first = acked.first().unwrap().1;
    let path = format!(
        "/api/v1/sensors/hall-1%2Fdev%2Fd0/history?from={first}&to={}",
        first + 3_600_000_000
    );
    let count = |body: &str| json(body)["readings"].as_array().unwrap().len();
    let (status, body) = http(&addr, "GET", &path, &site.token, "");
    assert_eq!((status, count(&body)), (200, acked.len()));

    proxy.stall();
    let stalled_at = Instant::now();
    let (status, _) = http(&addr, "GET", &path, &site.token, "");
    assert_eq!(status, 500, "a query of a silent database");
    assert!(
        stalled_at.elapsed() < Duration::from_secs(5),
        "the query took {:?}, over history.timeout_ms",
        stalled_at.elapsed()
    );
    wait_until("the follower to give up", || {
        site.metric("sensegate_site_connected") == Some(0.0)
    });
    assert!(site.metric("sensegate_site_failures_total").unwrap() >= 1.0);

    proxy.restore();
    wait_until("the follower to come back", || {
        site.metric("sensegate_site_connected") == Some(1.0)
    });
    let (status, body) = http(&addr, "GET", &path, &site.token, "");
    assert_eq!((status, count(&body)), (200, acked.len()));
}
