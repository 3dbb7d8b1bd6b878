//! Hardware sources through a running daemon: a serial device played by a
//! pseudo-terminal pair (line protocol and NMEA, an unplug and a replug), and
//! hwmon from a fake sysfs tree.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestDaemon;
use sensegate_client::Client;
use sensegate_client::wire::{self as v1, SensorState};
use serialport::{SerialPort as _, TTYPort};

/// A pseudo-terminal pair whose device end is reached through `link`, as a
/// `/dev/serial/by-id/...` link reaches a USB adapter.
fn plug(link: &Path) -> TTYPort {
    let (master, slave) = TTYPort::pair().unwrap();
    let name = slave.name().unwrap();
    drop(slave);
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(name, link).unwrap();
    master
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sensor(c: &mut Client, name: &str) -> Option<v1::SensorInfo> {
    c.list_sensors(name).await.unwrap().into_iter().next()
}

async fn latest(c: &mut Client, name: &str) -> Option<f64> {
    c.latest(name).await.ok().map(|r| r.value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_device_is_read_survives_garbage_and_comes_back_after_an_unplug() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyUSB-bench");
    let mut master = plug(&link);
    let d = TestDaemon::start(&format!(
        "[[serial]]\nname = \"bench\"\npath = {:?}\nprotocol = \"lines\"\nbaud = 115200\nmax_line_bytes = 32\nreopen_ms = 100\n",
        link.display().to_string()
    ))
    .await;
    let mut c = d.admin().await;

    // Garbage and an overlong line around good ones: the good ones count.
    let long = format!("{}\n", "x".repeat(100));
    let lines = [
        "temp=21.5\n",
        "not a reading\n",
        &long,
        "rh = 40\n",
        "bad name!=1\n",
        "t=nan\n",
    ];
    let v = wait_for("the first readings", async || {
        for l in lines {
            let _ = master.write_all(l.as_bytes());
        }
        let t = latest(&mut c, "bench/temp").await?;
        let rh = latest(&mut c, "bench/rh").await?;
        Some((t, rh))
    })
    .await;
    assert_eq!(v, (21.5, 40.0));
    let names: Vec<String> = c
        .list_sensors("bench/*")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["bench/rh", "bench/temp"], "garbage created sensors");

    // Unplug: the master end goes, and so does the by-id link.
    drop(master);
    std::fs::remove_file(&link).unwrap();
    let info = wait_for("the fault", async || {
        sensor(&mut c, "bench/temp")
            .await
            .filter(|s| s.state == SensorState::Faulted as i32)
    })
    .await;
    assert!(
        info.fault_reason.contains("went away")
            || info.fault_reason.contains("closed")
            || info.fault_reason.contains("cannot open"),
        "{}",
        info.fault_reason
    );
    d.assert_served().await;

    // Replug, possibly as another pty number behind the same link.
    let mut master = plug(&link);
    wait_for("readings after the replug", async || {
        // Until the source has the device open again, the master end sees
        // a hangup and the write fails; the next round tries again.
        let _ = master.write_all(b"temp=22.5\n");
        let s = sensor(&mut c, "bench/temp").await?;
        let value = latest(&mut c, "bench/temp").await?;
        let ok = s.state == SensorState::Ok as i32 && (value - 22.5).abs() < f64::EPSILON;
        ok.then_some(())
    })
    .await;
    let s = sensor(&mut c, "bench/temp").await.unwrap();
    assert!(s.fault_reason.is_empty(), "{}", s.fault_reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gps_receiver_gives_position_and_fix_and_bad_checksums_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyACM-gps");
    let mut master = plug(&link);
    let d = TestDaemon::start(&format!(
        "[[serial]]\nname = \"gps\"\npath = {:?}\nprotocol = \"nmea\"\nbaud = 9600\n",
        link.display().to_string()
    ))
    .await;
    let mut c = d.admin().await;
    let good = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n";
    // The same position with a wrong checksum and another latitude.
    let forged = "$GPGGA,123519,5807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n";
    let (lat, fix) = wait_for("a fix", async || {
        let _ = master.write_all(forged.as_bytes());
        let _ = master.write_all(good.as_bytes());
        Some((
            latest(&mut c, "gps/lat").await?,
            latest(&mut c, "gps/fix").await?,
        ))
    })
    .await;
    assert!((lat - 48.1173).abs() < 1e-6, "{lat}");
    assert!((fix - 1.0).abs() < f64::EPSILON);
    let lon = sensor(&mut c, "gps/lon").await.unwrap();
    assert_eq!(lon.unit, "deg");
    assert_eq!(lon.source, "serial:gps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwmon_channels_appear_with_units_and_a_vanished_file_faults_only_its_sensor() {
    let root = tempfile::tempdir().unwrap();
    let chip = root.path().join("class/hwmon/hwmon0");
    std::fs::create_dir_all(&chip).unwrap();
    std::fs::write(chip.join("name"), "coretemp\n").unwrap();
    std::fs::write(chip.join("temp1_input"), "45000\n").unwrap();
    std::fs::write(chip.join("temp1_label"), "Package id 0\n").unwrap();
    std::fs::write(chip.join("fan1_input"), "1200\n").unwrap();
    let d = TestDaemon::start(&format!(
        "[hwmon]\nenabled = true\nroot = {:?}\ninterval_ms = 100\n",
        root.path().display().to_string()
    ))
    .await;
    let mut c = d.admin().await;
    let t = wait_for("hwmon readings", async || {
        latest(&mut c, "hwmon/coretemp/Package_id_0").await
    })
    .await;
    assert!((t - 45.0).abs() < f64::EPSILON);
    let info = sensor(&mut c, "hwmon/coretemp/Package_id_0").await.unwrap();
    assert_eq!(
        (info.unit.as_str(), info.source.as_str()),
        ("degC", "hwmon")
    );

    std::fs::remove_file(chip.join("temp1_input")).unwrap();
    std::fs::write(chip.join("fan1_input"), "1300\n").unwrap();
    wait_for("the fault", async || {
        let s = sensor(&mut c, "hwmon/coretemp/Package_id_0").await?;
        (s.state == SensorState::Faulted as i32).then_some(())
    })
    .await;
    let fan = wait_for("the fan", async || {
        latest(&mut c, "hwmon/coretemp/fan1")
            .await
            .filter(|v| (*v - 1300.0).abs() < f64::EPSILON)
    })
    .await;
    assert!((fan - 1300.0).abs() < f64::EPSILON);
    assert_eq!(
        sensor(&mut c, "hwmon/coretemp/fan1").await.unwrap().state,
        SensorState::Ok as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_device_cannot_create_more_than_its_share_of_sensors() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyUSB-chatty");
    let mut master = plug(&link);
    let d = TestDaemon::start(&format!(
        "[[serial]]\nname = \"chatty\"\npath = {:?}\nprotocol = \"lines\"\n",
        link.display().to_string()
    ))
    .await;
    let mut c = d.admin().await;
    let cap = sensegate_gateway::sources::serial::MAX_SENSORS;
    let text = (0..cap + 50).fold(String::new(), |mut acc, i| {
        use std::fmt::Write as _;
        let _ = writeln!(acc, "n{i}=1");
        acc
    });
    let names = wait_for("the sensors", async || {
        let _ = master.write_all(text.as_bytes());
        let names = c.list_sensors("chatty/*").await.unwrap();
        latest(&mut c, "chatty/n0").await?;
        (names.len() >= cap).then_some(names)
    })
    .await;
    assert_eq!(names.len(), cap);
    d.assert_served().await;
}
