//! The PostgreSQL uplink against a real PostgreSQL server (TLS, SCRAM),
//! with faults injected while devices push: the server crashed
//! (`pg_ctl stop -m immediate`) and restarted, the gateway killed with
//! SIGKILL and restarted, the network cut by a proxy and restored, the
//! backlog past its cap. Each checks that every reading the gateway
//! acknowledged to a device arrives centrally (and the table's key rules
//! out duplicates). Two negative controls show the check can fail: the
//! uplink with `synchronous_commit = off` against a crashing server, and a
//! build with `SENSEGATE_FAULT_CONFIRM_EARLY` (the cursor moved before the
//! confirmation), under which `postgres_crashed_mid_stream` must see a loss.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::Gateway;
use common::devices::{Devices, base, device_secret, fault_delay};
use common::pg::{Postgres, Proxy};

/// Waits until the uplink has had a first batch confirmed (the upload is
/// under way), for at most 30 s.
async fn uploading(gw: &Gateway) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gw
        .metric("sensegate_uplink_rows_total{uplink=\"site\"")
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The uplink failed at least once (the fault was felt).
fn assert_retried(gw: &Gateway) {
    let retries = gw
        .metric("sensegate_uplink_retries_total{uplink=\"site\"")
        .unwrap();
    assert!(retries >= 1.0, "{retries}");
}

/// What of `acked` is not stored centrally.
fn missing(acked: &BTreeSet<(String, i64)>, central: &[(String, String, i64)]) -> usize {
    let have: BTreeSet<(&str, i64)> = central.iter().map(|(_, s, t)| (s.as_str(), *t)).collect();
    acked
        .iter()
        .filter(|(s, t)| !have.contains(&(s.as_str(), *t)))
        .count()
}

/// Every acknowledged reading arrives centrally, or (under the negative
/// control build) some do not.
fn check_delivered(pg: &Postgres, gw: &Gateway, acked: &BTreeSet<(String, i64)>) {
    assert!(!acked.is_empty(), "no push was acknowledged");
    if sensegate_gateway::uplink::CONFIRMS_EARLY {
        gw.settle("site");
        let lost = missing(acked, &pg.readings());
        assert!(
            lost > 0,
            "the confirm-early build lost nothing: the check cannot fail"
        );
        eprintln!("negative control: {lost} acknowledged readings lost, as expected");
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let central = loop {
        let rows = pg.readings();
        let lost = missing(acked, &rows);
        if lost == 0 {
            break rows;
        }
        if std::time::Instant::now() > deadline {
            for l in gw.log_lines().iter().filter(|l| l.contains("uplink")) {
                eprintln!("{l}");
            }
            panic!(
                "{lost} of {} acknowledged readings not delivered",
                acked.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // One gateway, one id; nothing but what was pushed.
    let ids: BTreeSet<&str> = central.iter().map(|(g, _, _)| g.as_str()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let pushed: BTreeSet<(&str, i64)> = central.iter().map(|(_, s, t)| (s.as_str(), *t)).collect();
    assert_eq!(pushed.len(), central.len(), "a reading stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_arrive_centrally_with_the_gateways_id_and_metrics() {
    let Some(pg) = Postgres::start() else { return };
    let gw = Gateway::start(&pg.uplink(pg.port, ""));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 2, 10, base())
        .finish()
        .await;
    assert_eq!(acked.len(), 2000);
    check_delivered(&pg, &gw, &acked);
    // The gateway's id is its history's; its name is the server's.
    let id: String = rusqlite::Connection::open(gw.dir.path().join("data/history.db"))
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'gateway_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let rows = pg
        .query("SELECT id, name FROM sensegate_readings_gateways")
        .unwrap();
    assert_eq!(rows, vec![format!("{id}|sensegate")]);
    // Quality and value as pushed; the month has its own partition.
    let v = pg
        .query("SELECT min(value), max(value), max(quality) FROM sensegate_readings")
        .unwrap();
    assert_eq!(v, vec!["0|99|0".to_owned()]);
    let parts = pg
        .query(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'sensegate_readings'::regclass AND c.relname LIKE 'sensegate_readings_p%'",
        )
        .unwrap();
    assert_ne!(parts, vec!["0".to_owned()]);
    gw.settle("site");
    let rows_total = gw
        .metric("sensegate_uplink_rows_total{uplink=\"site\",kind=\"postgres\"}")
        .unwrap();
    assert!(rows_total >= 2000.0, "{rows_total}");
    let seq: f64 = gw
        .metric("sensegate_uplink_delivered_seq{uplink=\"site\"")
        .unwrap();
    assert!(seq > 0.0);
    assert_eq!(
        gw.metric("sensegate_uplink_dropped_total{uplink=\"site\""),
        Some(0.0)
    );
    // The same figures as JSON, for the dashboard's admin page.
    let list: serde_json::Value = serde_json::from_str(&gw.http_get("/api/v1/uplinks")).unwrap();
    let u = &list[0];
    assert_eq!(
        (u["name"].as_str(), u["kind"].as_str()),
        (Some("site"), Some("postgres"))
    );
    assert_eq!(u["connected"].as_bool(), Some(true));
    assert!(u["rows"].as_u64().unwrap() >= 2000);
    assert_eq!(u["backlog_rows"].as_u64(), Some(0));
    assert!(u["delivered_seq"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_mid_stream() {
    let Some(pg) = Postgres::start() else { return };
    let gw = Gateway::start(&pg.uplink(pg.port, "batch_readings = 200\n"));
    let secret = device_secret(&gw).await;
    let devices = Devices::start(&gw.addr, &secret, 2, 60, base());
    // Mid-stream: batches are going in, and devices go on pushing.
    uploading(&gw).await;
    tokio::time::sleep(fault_delay("postgres_crashed_mid_stream", 300)).await;
    pg.crash();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.server_start();
    let acked = devices.finish().await;
    check_delivered(&pg, &gw, &acked);
    assert_retried(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_mid_upload() {
    let Some(pg) = Postgres::start() else { return };
    let config = pg.uplink(pg.port, "batch_readings = 200\n");
    let gw = Gateway::start(&config);
    let secret = device_secret(&gw).await;
    let devices = Devices::start(&gw.addr, &secret, 2, 1000, base());
    // Mid-upload: batches are going in, and devices go on pushing.
    uploading(&gw).await;
    tokio::time::sleep(fault_delay("gateway_killed_mid_upload", 400)).await;
    let dir = gw.kill();
    // The devices see their connections fail and stop.
    let acked = devices.finish().await;
    assert!(
        !pg.readings().is_empty(),
        "no batch went in before the kill"
    );
    let gw = Gateway::start_in(dir, &config);
    check_delivered(&pg, &gw, &acked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_and_restored() {
    let Some(pg) = Postgres::start() else { return };
    let proxy = Proxy::start(pg.port).await;
    let gw = Gateway::start(&pg.uplink(proxy.port, "batch_readings = 200\n"));
    let secret = device_secret(&gw).await;
    let devices = Devices::start(&gw.addr, &secret, 2, 60, base());
    uploading(&gw).await;
    tokio::time::sleep(fault_delay("network_cut_and_restored", 300)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.restore();
    let acked = devices.finish().await;
    check_delivered(&pg, &gw, &acked);
    assert_retried(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_its_cap_drops_the_oldest_counted_and_delivers_the_rest() {
    let Some(pg) = Postgres::start() else { return };
    let proxy = Proxy::start(pg.port).await;
    proxy.cut();
    let gw = Gateway::start(&pg.uplink(proxy.port, "max_backlog_rows = 1000\n"));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 1, 50, base())
        .finish()
        .await;
    assert_eq!(acked.len(), 5000);
    // The cap is enforced while the server is away.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        let d = gw
            .metric("sensegate_uplink_dropped_total{uplink=\"site\"")
            .unwrap_or(0.0);
        if d >= 4000.0 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "dropped only {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        gw.log_lines()
            .iter()
            .any(|l| l.contains("backlog passed its cap")),
        "no warning"
    );
    proxy.restore();
    gw.settle("site");
    let central = pg.readings();
    // Dropped and delivered add up to what was pushed, within the cap,
    // and what arrived is the newest.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a count"
    )]
    let dropped = dropped as usize;
    assert_eq!(central.len() + dropped, 5000, "dropped {dropped}");
    assert!(central.len() <= 1000);
    let oldest_delivered = central.iter().map(|(_, _, t)| *t).min().unwrap();
    let newest: Vec<i64> = acked
        .iter()
        .map(|(_, t)| *t)
        .rev()
        .take(central.len())
        .collect();
    assert_eq!(Some(&oldest_delivered), newest.last());
}

/// Pushes 1,000 readings, waits until the uplink has had all of them
/// confirmed, crashes the server at once and restarts it; returns how many
/// acknowledged readings are not there.
async fn confirmed_then_crashed(sync: &str) -> Option<usize> {
    // The WAL writer would otherwise flush asynchronous commits within
    // 200 ms; with these settings they wait for it (10 s, or 1 GB).
    let pg = Postgres::start_with("wal_writer_delay = 10000ms\nwal_writer_flush_after = 1GB\n")?;
    let gw = Gateway::start(&pg.uplink(pg.port, &format!("synchronous_commit = \"{sync}\"\n")));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 1, 10, base())
        .finish()
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gw
        .metric("sensegate_uplink_rows_total{uplink=\"site\"")
        .unwrap_or(0.0)
        < 1000.0
    {
        assert!(std::time::Instant::now() < deadline, "not confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.crash();
    pg.server_start();
    Some(missing(&acked, &pg.readings()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_control_synchronous_commit_off_loses_confirmed_readings_in_a_crash() {
    let Some(lost) = confirmed_then_crashed("off").await else {
        return;
    };
    assert!(
        lost > 0,
        "with synchronous_commit off, a crash lost nothing: the check cannot fail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synchronous_commit_on_a_crash_loses_no_confirmed_reading() {
    let Some(lost) = confirmed_then_crashed("on").await else {
        return;
    };
    assert_eq!(lost, 0);
}

/// A hostile server: it answers the startup message with the header of a
/// 2 GiB message and then trickles bytes. The uplink refuses it at the
/// header (`uplink.max_message_bytes`) and tries again later; without the
/// cap, tokio-postgres would wait for (and buffer) all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_message_past_the_cap_is_refused_at_its_header() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                // 'R' (authentication) declaring 2 GiB, then filler.
                let _ = s.write_all(&[b'R', 0x7f, 0xff, 0xff, 0xff]).await;
                for _ in 0..1000 {
                    if s.write_all(&[0u8; 4096]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
    });
    let config = format!(
        "[[uplink]]\nname = \"site\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         user = \"x\"\ntls = false\nbackoff_min_ms = 50\nbackoff_max_ms = 200\n"
    );
    let gw = Gateway::start(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gw
        .log_lines()
        .iter()
        .any(|l| l.contains("uplink failed") && l.contains("over the cap of 1048576"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", gw.log_lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Refused, and tried again: the daemon goes on.
    while served.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(std::time::Instant::now() < deadline, "no retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everyone else is still served.
    let _ = gw.client().await;
}

/// `schema = "check"`: a DBA's schema without the readings table's key is
/// refused by name (a replay would store rows twice), nothing is sent;
/// once the key is there, everything acknowledged arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_schema_without_its_key_is_refused_until_the_dba_adds_it() {
    let Some(pg) = Postgres::start() else { return };
    pg.query(
        "CREATE TABLE sensegate_readings_gateways (
             id uuid PRIMARY KEY, name text NOT NULL, seen timestamptz NOT NULL);
         CREATE TABLE sensegate_readings_sensors (
             id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             gateway uuid NOT NULL, name text NOT NULL, UNIQUE (gateway, name));
         CREATE TABLE sensegate_readings (
             time timestamptz NOT NULL, gateway uuid NOT NULL, sensor integer NOT NULL,
             value double precision NOT NULL, quality smallint NOT NULL);",
    )
    .unwrap();
    let gw = Gateway::start(&pg.uplink(pg.port, "schema = \"check\"\n"));
    let secret = device_secret(&gw).await;
    let acked = Devices::start(&gw.addr, &secret, 1, 5, base())
        .finish()
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gw
        .log_lines()
        .iter()
        .any(|l| l.contains("has no unique key on (gateway,sensor,time)"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", gw.log_lines());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pg.readings().is_empty());
    pg.query("ALTER TABLE sensegate_readings ADD PRIMARY KEY (gateway, sensor, time)")
        .unwrap();
    check_delivered(&pg, &gw, &acked);
    // The uplink made no table of its own (no partitions in check mode).
    let tables = pg
        .query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sensegate_readings%'")
        .unwrap();
    assert_eq!(tables, vec!["3".to_owned()]);
}

/// A silent network (the proxy keeps the connection open and forwards
/// nothing) mid-upload: the batch in flight is not confirmed within
/// `timeout_ms`, the uplink gives up on the connection and reconnects
/// once the network is back; every acknowledged reading arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_network_times_out_and_nothing_is_lost() {
    let Some(pg) = Postgres::start() else { return };
    let proxy = Proxy::start(pg.port).await;
    let config = pg
        .uplink(proxy.port, "batch_readings = 200\n")
        .replace("timeout_ms = 5000", "timeout_ms = 1000");
    let gw = Gateway::start(&config);
    let secret = device_secret(&gw).await;
    let devices = Devices::start(&gw.addr, &secret, 2, 60, base());
    uploading(&gw).await;
    tokio::time::sleep(fault_delay("a_silent_network_times_out", 300)).await;
    proxy.stall();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gw
        .log_lines()
        .iter()
        .any(|l| l.contains("uplink failed") && l.contains("within"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no timeout: {:?}",
            gw.log_lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.restore();
    let acked = devices.finish().await;
    check_delivered(&pg, &gw, &acked);
}

/// Three gateways, one site database: each has its own id (made with its
/// history), its name, and its readings under them; the same sensor name
/// on two gateways is two sensors, never mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_share_one_site_database_without_mixing() {
    let Some(pg) = Postgres::start() else { return };
    let names = ["hall-1", "hall-2", "hall-3"];
    let gateways = pg.gateways(&names);
    let mut acked = Vec::new();
    for gw in &gateways {
        let secret = device_secret(gw).await;
        // The same sensor names (dev/d0, dev/d1) on every gateway.
        acked.push(
            Devices::start(&gw.addr, &secret, 2, 5, base())
                .finish()
                .await,
        );
    }
    let ids: Vec<String> = gateways
        .iter()
        .map(|gw| {
            rusqlite::Connection::open(gw.dir.path().join("data/history.db"))
                .unwrap()
                .query_row("SELECT value FROM meta WHERE key = 'gateway_id'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        })
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    let central = pg.wait_for(
        Duration::from_secs(60),
        "every gateway's readings",
        |rows| rows.len() >= 3000,
    );
    for ((gw_id, acked), gw) in ids.iter().zip(&acked).zip(&gateways) {
        let mine: BTreeSet<(String, i64)> = central
            .iter()
            .filter(|(g, _, _)| g == gw_id)
            .map(|(_, s, t)| (s.clone(), *t))
            .collect();
        assert_eq!(&mine, acked, "gateway {gw_id}");
        gw.settle("site");
    }
    assert_eq!(central.len(), 3000);
    let listed = pg
        .query("SELECT name FROM sensegate_readings_gateways ORDER BY name")
        .unwrap();
    assert_eq!(listed, names.map(str::to_owned));
    let sensors = pg
        .query("SELECT count(*), count(DISTINCT name) FROM sensegate_readings_sensors")
        .unwrap();
    assert_eq!(sensors, vec!["6|2".to_owned()]);
}
