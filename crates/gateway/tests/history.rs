//! History through the native protocol: a device's push is stored before it
//! is acknowledged, raw and bucketed queries, the policy before the store,
//! bad ranges refused.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use common::TestDaemon;
use sensegate_client::wire::{self as v1, ErrorCode};
use sensegate_client::{Client, ClientError};

fn reading(sensor: &str, ts: i64, value: f64) -> v1::Reading {
    v1::Reading {
        sensor: sensor.to_owned(),
        timestamp_us: ts,
        value,
        quality: v1::Quality::Good.into(),
    }
}

fn code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_readings_come_back_raw_and_bucketed() {
    let d = TestDaemon::start("").await;
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let now = sensegate_gateway::reading::now_us();
    let base = now - 10_000_000;
    // 100 readings, one per 100 ms, values 0..99.
    let batch: Vec<v1::Reading> = (0..100)
        .map(|i| {
            reading(
                "lab/t",
                base + i * 100_000,
                f64::from(u8::try_from(i).unwrap()),
            )
        })
        .collect();
    assert_eq!(dev.push(batch).await.unwrap(), 100);

    // Acknowledged means stored: the file already holds them.
    let path = d.dir.path().join("history.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM readings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 100);

    let (_, reader) = d.token(v1::Role::Reader, "lab/*").await;
    let mut c = Client::connect(&d.options(&reader)).await.unwrap();
    let raw = c.history("lab/t", base, now, 0, 0).await.unwrap();
    assert_eq!(raw.readings.len(), 100);
    assert!(!raw.truncated);
    assert_eq!(raw.readings[5].timestamp_us, base + 500_000);
    let cut = c.history("lab/t", base, now, 0, 10).await.unwrap();
    assert_eq!((cut.readings.len(), cut.truncated), (10, true));
    // One-second buckets: ten readings each.
    let b = c
        .history("lab/t", base, base + 10_000_000, 1_000_000, 0)
        .await
        .unwrap();
    assert_eq!(b.buckets.len(), 10);
    assert_eq!(b.buckets[0].count, 10);
    assert!((b.buckets[0].min, b.buckets[0].max) == (0.0, 9.0));
    assert!((b.buckets[9].mean - 94.5).abs() < 1e-9);
    // Nothing in an empty range; an unknown sensor has no history.
    assert!(
        c.history("lab/t", 1, 2, 0, 0)
            .await
            .unwrap()
            .readings
            .is_empty()
    );
    assert!(
        c.history("lab/none", base, now, 0, 0)
            .await
            .unwrap()
            .readings
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_asks_the_policy_first_and_refuses_bad_ranges() {
    let d = TestDaemon::start("").await;
    let (_, reader) = d.token(v1::Role::Reader, "lab/*").await;
    let mut c = Client::connect(&d.options(&reader)).await.unwrap();
    let e = c.history("other/t", 0, 10, 0, 0).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Forbidden));
    // An empty range is a bad request: refused, and the session goes on.
    let e = c.history("lab/t", 10, 10, 0, 0).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Malformed));
    c.ping().await.unwrap();
    // A negative bucket cannot even be decoded: a protocol error.
    let e = c.history("lab/t", 0, 10, -5, 0).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Malformed));
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let e = dev.history("lab/t", 0, 10, 0, 0).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Forbidden), "devices do not read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_off_nothing_is_written_and_history_is_not_found() {
    let d = TestDaemon::start("[store]\nenabled = false\n").await;
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    assert_eq!(dev.push(vec![reading("lab/t", 5, 1.0)]).await.unwrap(), 1);
    assert!(!d.dir.path().join("history.db").exists());
    let mut admin = d.admin().await;
    let e = admin.history("lab/t", 0, 10, 0, 0).await.unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_reply_is_capped_to_fit_one_frame() {
    // 16 KiB frames: 10,000 rows could never fit.
    let d = TestDaemon::start("[limits]\nmax_frame_bytes = 16384\nmax_push_batch = 1000\n").await;
    let (_, device) = d.token(v1::Role::Device, "*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let name = "lab/a-rather-long-sensor-name-for-this-test";
    let base = sensegate_gateway::reading::now_us() - 10_000_000;
    for chunk in 0..3 {
        let batch: Vec<v1::Reading> = (0..100)
            .map(|i| reading(name, base + chunk * 1000 + i, 1.0))
            .collect();
        dev.push(batch).await.unwrap();
    }
    let mut c = d.admin().await;
    let h = c.history(name, base, base + 1_000_000, 0, 0).await.unwrap();
    assert!(h.truncated, "300 rows do not fit 16 KiB");
    assert!(!h.readings.is_empty() && h.readings.len() < 300);
    assert!(h.readings.len() * (name.len() + 64) <= 16384);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_from_the_far_future_is_refused_whole() {
    let d = TestDaemon::start("").await;
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let now = sensegate_gateway::reading::now_us();
    let soon = now + 60_000_000;
    let far = now + sensegate_gateway::service::MAX_FUTURE_US + 60_000_000;
    let e = dev
        .push(vec![
            reading("lab/t", soon, 1.0),
            reading("lab/t", far, 2.0),
        ])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Malformed));
    // Nothing of it was kept; a little clock skew is fine.
    assert_eq!(
        dev.push(vec![reading("lab/t", soon, 1.0)]).await.unwrap(),
        1
    );
    let mut admin = d.admin().await;
    let h = admin.history("lab/t", 0, far + 1, 0, 0).await.unwrap();
    assert_eq!(h.readings.len(), 1);
}

/// The attack: a bucketed query over a huge range (`bucket=1` over 30 days)
/// grouped the whole range before its limit applied, and a handful of them
/// took every query slot. Bucket counts past the list cap are refused, and
/// a limited answer stops its scan at the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bucket_counts_are_refused_and_limits_stop_the_scan() {
    let d = TestDaemon::start("[limits]\nmax_list_items = 1000").await;
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let now = sensegate_gateway::reading::now_us();
    let base = now - 100_000_000;
    let batch: Vec<v1::Reading> = (0..1000)
        .map(|i| reading("lab/t", base + i * 100_000, 1.0))
        .collect();
    assert_eq!(dev.push(batch).await.unwrap(), 1000);
    let (_, reader) = d.token(v1::Role::Reader, "lab/*").await;
    let mut c = Client::connect(&d.options(&reader)).await.unwrap();
    let thirty_days = 30 * 86_400 * 1_000_000;
    let e = c
        .history("lab/t", now - thirty_days, now, 1, 0)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Malformed), "{e}");
    // 1,000 buckets of 100 ms: allowed, one reading each.
    let all = c
        .history("lab/t", base, base + 100_000_000, 100_000, 0)
        .await
        .unwrap();
    assert_eq!(all.buckets.len(), 1000);
    assert!(all.buckets.iter().all(|b| b.count == 1));
    // A limit cuts the answer and says so.
    let cut = c
        .history("lab/t", base, base + 100_000_000, 100_000, 10)
        .await
        .unwrap();
    assert_eq!(cut.buckets.len(), 10);
    assert!(cut.truncated);
    assert_eq!(cut.buckets[9].start_us, base + 900_000);
    // 1,001 buckets: refused.
    let e = c
        .history("lab/t", base, base + 100_100_000, 100_000, 0)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(ErrorCode::Malformed), "{e}");
}

/// A tmpfs of its own for a test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// `None` where mounting is not allowed (not root): the test says so.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// The disk fills: pushes get a clear error once a commit fails for space,
/// nothing acknowledged is lost, live readings keep flowing to subscribers,
/// and history resumes once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_pushes_clearly_and_history_resumes_when_freed() {
    let Some(fs) = Tmpfs::mount("4m") else {
        // CI runs as root; elsewhere say why nothing was checked.
        eprintln!("skipped: mounting a tmpfs needs root");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must run this test"
        );
        return;
    };
    let db = fs.0.path().join("history.db");
    let d = TestDaemon::start(&format!(
        "[limits]\npush_rate_per_sec = 10000000\n[store]\npath = {:?}\n[sim]\nenabled = true\nsensors = 1\nrate_hz = 50\n",
        db.display().to_string()
    ))
    .await;
    // Most of the space taken by something else.
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 3 << 20]).unwrap();
    let (_, device) = d.token(v1::Role::Device, "lab/*").await;
    let mut dev = Client::connect(&d.options(&device)).await.unwrap();
    let now = sensegate_gateway::reading::now_us();
    let mut acked = 0i64;
    let mut ts = now - 1_000_000_000;
    let refusal = loop {
        let batch: Vec<v1::Reading> = (0..500).map(|i| reading("lab/t", ts + i, 1.0)).collect();
        match dev.push(batch).await {
            Ok(n) => {
                acked += i64::from(n);
                ts += 500;
            }
            Err(e) => break e,
        }
        assert!(acked < 2_000_000, "the disk never filled");
    };
    assert_eq!(code(&refusal), Some(ErrorCode::Overloaded), "{refusal}");
    assert!(refusal.to_string().contains("storage is full"), "{refusal}");
    // Live readings still reach subscribers.
    let (_, reader) = d.token(v1::Role::Reader, "*").await;
    let mut live = Client::connect(&d.options(&reader)).await.unwrap();
    live.subscribe(&["sim/*"]).await.unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(5), live.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert!(!batch.readings.is_empty());
    // Space freed: pushes are stored again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let batch: Vec<v1::Reading> = (0..500).map(|i| reading("lab/t", ts + i, 2.0)).collect();
        match dev.push(batch).await {
            Ok(n) => {
                acked += i64::from(n);
                break;
            }
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "never resumed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    // Every acknowledged reading is there.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM readings r JOIN sensors s ON s.id = r.sensor_id WHERE s.name = 'lab/t'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, acked, "acknowledged readings were lost");
    drop(d);
}
