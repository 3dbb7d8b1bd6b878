//! C drivers under a running daemon, through the built binary: every fault of
//! the deliberately faulty driver is contained in its sandboxed host while a
//! healthy sensor keeps streaming; the sandbox refuses sockets, exec and
//! fork and leaves the host only its pipe; crash loops leave the daemon's
//! memory and descriptors as they were.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Gateway;
use sensegate_ffi::reference::{FAULTY_PATH, SIM_PATH};

fn driver(name: &str, path: &str, config: &str, sensors: &[&str], extra: &str) -> String {
    let sensors: Vec<String> = sensors.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[[driver]]\nname = \"{name}\"\npath = \"{path}\"\nconfig = \"{config}\"\nsensors = [{}]\n{extra}\n",
        sensors.join(", ")
    )
}

/// The latest value of each of `sensors`, printed (the probes report small
/// integers, printed exactly), once every one has reported (20 s at most).
async fn latest_values<'a>(
    c: &mut sensegate_client::Client,
    sensors: &[&'a str],
) -> BTreeMap<&'a str, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut values = BTreeMap::new();
        for s in sensors {
            if let Ok(r) = c.latest(s).await {
                values.insert(*s, r.value.to_string());
            }
        }
        if values.len() == sensors.len() {
            return values;
        }
        assert!(
            Instant::now() < deadline,
            "only {values:?} reported: {:?}",
            c.list_sensors("*").await.map(|l| l.len())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A faulty driver `name` (sensor `name`) in mode `config` beside the C sim
/// driver (sensor `healthy`, 20 Hz): returns once it has been restarted
/// twice with a reason holding `phrase`, with a client of the daemon.
async fn restarted_beside_a_healthy_host(
    name: &str,
    config: &str,
    phrase: &str,
) -> (Gateway, sensegate_client::Client) {
    let timing = "restart_initial_ms = 50\nrestart_max_ms = 200";
    let mut sources = driver(name, FAULTY_PATH, config, &[name], timing);
    sources.push_str(&driver(
        "healthy",
        SIM_PATH,
        "channels=1;rate_hz=20",
        &["healthy"],
        "",
    ));
    let gw = Gateway::start(&sources);
    gw.wait_restarts(name, 2, Duration::from_secs(20));
    let mut c = gw.client().await;
    let s = c.list_sensors(name).await.unwrap();
    assert!(
        s[0].fault_reason.contains(phrase),
        "{:?}",
        s[0].fault_reason
    );
    (gw, c)
}

/// Each mode of the faulty driver and a phrase of the reason it must give.
const MODES: &[(&str, &str)] = &[
    ("segv", "SIGSEGV"),
    ("overclaim", "claimed"),
    ("garbage", "bad records"),
    ("ragged", "whole number"),
    ("overrun", "past the end"),
    ("error", "SG_E_IO"),
    ("hang", "hung"),
    ("spin", "hung"),
    ("leak", "SG_E_INTERNAL"),
    ("abort_open", "SIGABRT"),
    ("null_open", "without a handle"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_contained_while_a_healthy_sensor_streams() {
    // The healthy sensor: the C sim driver in its own host, 20 Hz.
    let period = Duration::from_millis(50);
    let mut sources = driver(
        "healthy",
        SIM_PATH,
        "channels=1;rate_hz=20",
        &["healthy"],
        "",
    );
    let timing =
        "restart_initial_ms = 50\nrestart_max_ms = 400\nread_timeout_ms = 500\nmemory_mb = 256";
    for (mode, _) in MODES {
        let config = format!("mode={mode};after=2;leak_mb=32");
        let sensor = format!("faulty.{mode}");
        sources.push_str(&driver(
            &format!("f-{mode}"),
            FAULTY_PATH,
            &config,
            &[&sensor],
            timing,
        ));
    }
    let gw = Gateway::start(&sources);
    let mut subscriber = gw.client().await;
    subscriber.subscribe(&["healthy"]).await.unwrap();
    let mut observer = gw.client().await;

    let window = Duration::from_secs(6);
    let start = Instant::now();
    let mut last_arrival: Option<Instant> = None;
    let mut last_ts: Option<i64> = None;
    let mut worst_gap = Duration::ZERO;
    let mut readings = 0usize;
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut next_poll = Instant::now();
    while start.elapsed() < window {
        if Instant::now() >= next_poll {
            for s in observer.list_sensors("faulty.*").await.unwrap() {
                if !s.fault_reason.is_empty() {
                    reasons.entry(s.name).or_default().push(s.fault_reason);
                }
            }
            next_poll = Instant::now() + Duration::from_millis(100);
        }
        let Ok(batch) =
            tokio::time::timeout(Duration::from_millis(100), subscriber.next_batch()).await
        else {
            continue;
        };
        let batch = batch.unwrap();
        assert_eq!(batch.dropped, 0, "the healthy subscriber lost readings");
        let now = Instant::now();
        for r in &batch.readings {
            if let Some(prev) = last_ts {
                // Consecutive samples: none lost between driver and client.
                assert_eq!(r.timestamp_us - prev, 50_000, "a sample went missing");
            }
            last_ts = Some(r.timestamp_us);
            readings += 1;
        }
        if let Some(prev) = last_arrival {
            worst_gap = worst_gap.max(now - prev);
        }
        last_arrival = Some(now);
    }
    eprintln!("healthy stream: {readings} readings, worst gap {worst_gap:?}");
    assert!(
        readings >= 100,
        "only {readings} healthy readings in {window:?}"
    );
    assert!(
        worst_gap <= period + Duration::from_millis(100),
        "the healthy stream stalled for {worst_gap:?}"
    );

    for (mode, phrase) in MODES {
        let sensor = format!("faulty.{mode}");
        let seen = reasons.get(&sensor).cloned().unwrap_or_default();
        assert!(
            seen.iter().any(|r| r.contains(phrase)),
            "{sensor}: no reason with {phrase:?} among {seen:?}"
        );
        let restarts = gw.restarts(&format!("f-{mode}"));
        assert!(
            restarts.len() >= 2,
            "{mode}: restarted {} times",
            restarts.len()
        );
    }
    // Backoff: the delay doubles from restart_initial_ms up to restart_max_ms.
    let delays: Vec<u64> = gw.restarts("f-segv").iter().map(|r| r.1).take(5).collect();
    assert_eq!(delays[..4], [50, 100, 200, 400], "{delays:?}");

    let healthy = observer.list_sensors("healthy").await.unwrap();
    assert_eq!(
        healthy[0].state,
        sensegate_client::wire::SensorState::Ok as i32
    );
    assert!(
        gw.restarts("healthy").is_empty(),
        "the healthy host was restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_cannot_open_sockets_exec_or_fork_and_holds_only_its_pipes() {
    let sensors = [
        "p.inet",
        "p.exec",
        "p.fds",
        "p.pipes",
        "p.fork",
        "p.unix",
        "p.files",
        "p.setown",
        "p.fioasync",
        "p.create",
        "p.fioasync-hi",
        "p.setown-hi",
    ];
    let gw = Gateway::start(&driver(
        "probe",
        FAULTY_PATH,
        "mode=probe",
        &sensors,
        "open_files = 8",
    ));
    let mut c = gw.client().await;
    let values = latest_values(&mut c, &sensors).await;
    let eperm = "-1";
    assert_eq!(values["p.inet"], eperm, "socket(AF_INET) was not refused");
    assert_eq!(values["p.unix"], eperm, "socket(AF_UNIX) was not refused");
    assert_eq!(values["p.exec"], eperm, "execve was not refused");
    assert_eq!(values["p.fork"], eperm, "fork was not refused");
    // stdin and stdout (its pipes) and stderr on /dev/null, nothing else.
    assert_eq!(
        values["p.fds"], "3",
        "the host sees descriptors it should not"
    );
    assert_eq!(
        values["p.pipes"], "1",
        "a descriptor other than the pipes and /dev/null"
    );
    // open_files = 8, three of them in use.
    assert_eq!(
        values["p.files"], "5",
        "the descriptor limit is not in force"
    );
    assert_eq!(
        values["p.setown"], eperm,
        "F_SETOWN (signals to the daemon) was not refused"
    );
    assert_eq!(values["p.fioasync"], eperm, "FIOASYNC was not refused");
    assert_eq!(values["p.create"], eperm, "creating a file was not refused");
    // The same requests with high bits set, which the kernel ignores.
    assert_eq!(
        values["p.fioasync-hi"], eperm,
        "FIOASYNC with high bits was not refused"
    );
    assert_eq!(
        values["p.setown-hi"], eperm,
        "F_SETOWN with high bits was not refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_over_its_cpu_time_is_killed_and_restarted() {
    // It spins inside a read; the hang deadline is far, the CPU limit near.
    let limits = "cpu_seconds = 1\nread_timeout_ms = 30000\nrestart_initial_ms = 100";
    let gw = Gateway::start(&driver(
        "burner",
        FAULTY_PATH,
        "mode=spin;after=1",
        &["burner"],
        limits,
    ));
    gw.wait_restarts("burner", 1, Duration::from_secs(30));
    let mut c = gw.client().await;
    let s = c.list_sensors("burner").await.unwrap();
    assert!(
        s[0].fault_reason.contains("SIGXCPU"),
        "{:?}",
        s[0].fault_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_crashes_leave_the_daemons_memory_and_descriptors_unchanged() {
    let timing = "restart_initial_ms = 1\nrestart_max_ms = 5";
    let gw = Gateway::start(&driver(
        "crasher",
        FAULTY_PATH,
        "mode=segv",
        &["crasher"],
        timing,
    ));
    // Warm up: the first restarts size the allocator's pools and the log.
    gw.wait_restarts("crasher", 10, Duration::from_secs(60));
    let rss_before = gw.status("VmRSS:");
    let fds_before = gw.open_descriptors();
    let started = Instant::now();
    gw.wait_restarts("crasher", 110, Duration::from_secs(120));
    let per_restart = started.elapsed() / 100;
    let rss_after = gw.status("VmRSS:");
    let fds_after = gw.open_descriptors();
    eprintln!(
        "100 crashes: RSS {rss_before} kB -> {rss_after} kB, descriptors {fds_before} -> {fds_after}, \
         {per_restart:?} per crash-and-restart cycle (backoff 5 ms)"
    );
    assert!(
        rss_after <= rss_before + 512,
        "RSS grew from {rss_before} kB to {rss_after} kB over 100 crashes"
    );
    assert_eq!(fds_after, fds_before, "descriptors leaked");
    // Hosts keep crashing, so one may be caught between death and reaping;
    // a leak would keep them there. Some sample must see none.
    let reaped = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(5));
        gw.zombies() == 0
    });
    assert!(reaped, "unreaped driver hosts");
    let mut c = gw.client().await;
    let s = c.list_sensors("crasher").await.unwrap();
    assert!(
        s[0].fault_reason.contains("SIGSEGV"),
        "{:?}",
        s[0].fault_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_faster_than_its_rate_is_slowed_to_it() {
    let rate = 20_000;
    let gw = Gateway::start(&driver(
        "fast",
        SIM_PATH,
        "channels=1;rate_hz=0",
        &["fast"],
        &format!("max_readings_per_sec = {rate}"),
    ));
    let mut c = gw.client().await;
    c.subscribe(&["fast"]).await.unwrap();
    // Start counting at the first batch; the bucket starts full (one second).
    let mut total = c
        .next_batch()
        .await
        .map(|b| b.readings.len() as u64 + b.dropped)
        .unwrap();
    let window = Duration::from_secs(2);
    let start = Instant::now();
    while start.elapsed() < window {
        if let Ok(Ok(b)) = tokio::time::timeout(Duration::from_millis(100), c.next_batch()).await {
            total += b.readings.len() as u64 + b.dropped;
        }
    }
    // Two seconds at the rate, plus the one-second burst, plus a frame.
    let most = rate * 3 + 2730;
    assert!(total <= most, "{total} readings in {window:?} at {rate}/s");
    assert!(total >= rate, "the driver was stopped, not slowed: {total}");
    assert!(gw.restarts("fast").is_empty());
}

/// The attack: a hostile driver under `serve` opened `admin.token`,
/// `key.pem` and `tokens.json` (read-write too), mapped the token store
/// shared and writable, opened `history.db-shm` read-write and locked it,
/// opened a sibling host's `/proc/PID/mem` read-write, and sent the admin
/// token out as its own readings. Each is refused now, and the rest of the
/// daemon goes on: a healthy sibling streams, pushes are stored, the token
/// store is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_driver_cannot_reach_the_daemons_files_or_its_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // A key file where a TLS daemon keeps one.
    std::fs::write(data.join("key.pem"), "not a real key").unwrap();
    let device = dir.path().join("device");
    std::fs::write(&device, [0u8; 64]).unwrap();
    let sensors = [
        "x.token", "x.key", "x.store", "x.map", "x.shm", "x.mem", "x.setlk", "x.setlkw", "x.ofd",
        "x.ofdw", "x.device", "x.passwd", "x.self", "x.leaked",
    ];
    let mut sources = driver(
        "healthy",
        SIM_PATH,
        "channels=1;rate_hz=20",
        &["healthy"],
        "",
    );
    sources.push_str(&driver(
        "thief",
        FAULTY_PATH,
        &format!("mode=steal;dir={};dev={}", data.display(), device.display()),
        &sensors,
        &format!("devices = [\"{}\"]", device.display()),
    ));
    let gw = Gateway::start_in(dir, &sources);
    let store_before = std::fs::read(data.join("tokens.json")).unwrap();
    let mut c = gw.client().await;
    let values = latest_values(&mut c, &sensors).await;
    eprintln!("thief: {values:?}");
    // -errno, as the driver reports them.
    let (eacces, eperm) = ("-13", "-1");
    let refused = |s: &str| values[s].starts_with('-');
    // The data directory is out of reach whatever the files' modes.
    assert!(refused("x.token"), "admin.token was opened");
    assert_eq!(values["x.leaked"], "0", "bytes of the admin token leaked");
    for s in ["x.key", "x.store", "x.map", "x.shm"] {
        assert_eq!(values[s], eacces, "{s}: not refused by the file ruleset");
    }
    assert_eq!(values["x.mem"], "0", "another process's memory was opened");
    assert!(!refused("x.device"), "its own device was refused");
    for s in ["x.setlk", "x.setlkw", "x.ofd", "x.ofdw"] {
        assert_eq!(values[s], eperm, "{s}: a file lock was not refused");
    }
    assert_eq!(
        values["x.passwd"], eacces,
        "a file outside the ruleset was opened"
    );
    assert!(!refused("x.self"), "/proc/self is needed and allowed");

    // The rest of the daemon is unaffected.
    c.subscribe(&["healthy"]).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), c.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert!(!batch.readings.is_empty());
    let now = sensegate_gateway::reading::now_us();
    let mut device_client = gw.client().await;
    let pushed = device_client
        .push(vec![sensegate_client::wire::Reading {
            sensor: "dev/t".into(),
            timestamp_us: now,
            value: 1.5,
            quality: sensegate_client::wire::Quality::Good.into(),
        }])
        .await
        .unwrap();
    assert_eq!(pushed, 1);
    assert_eq!(
        std::fs::read(data.join("tokens.json")).unwrap(),
        store_before,
        "the token store changed"
    );
    assert!(
        gw.restarts("thief").is_empty(),
        "{:?}",
        gw.restarts("thief")
    );
}

/// The attack: a reading stamped ten years ahead became the sensor's latest
/// with state ok, stayed in history, and the readings after it never
/// replaced it. A driver's readings get the bound pushes have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_reading_from_the_far_future_is_refused() {
    let (_gw, mut c) = restarted_beside_a_healthy_host(
        "prophet",
        "mode=future;period_ms=20",
        "ahead of the daemon's clock",
    )
    .await;
    let e = c.latest("prophet").await.unwrap_err();
    assert_eq!(
        e.code(),
        Some(sensegate_client::wire::ErrorCode::NotFound),
        "{e}"
    );
    let healthy = c.latest("healthy").await.unwrap();
    let now = sensegate_gateway::reading::now_us();
    assert!(healthy.timestamp_us <= now + 1_000_000);
}

/// A driver that took over its host wrote heartbeat frames straight to the
/// pipe, as fast as it could, to keep the daemon busy: past 100 frames a
/// second that carry nothing, the host is killed and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_flooding_heartbeats_is_restarted() {
    let (_gw, mut c) =
        restarted_beside_a_healthy_host("chatty", "mode=chatter", "heartbeats or empty frames")
            .await;
    c.subscribe(&["healthy"]).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), c.next_batch())
        .await
        .unwrap()
        .unwrap();
    assert!(!batch.readings.is_empty());
}
