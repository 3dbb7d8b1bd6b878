//! Driver host figures: readings per second through one host running the C
//! `sim` driver at full speed, and the restart latency after a crash.
//!
//! ```text
//! cargo build --release -p sensegate-cli --bins --examples
//! target/release/examples/driver_bench [SENSEGATE_BINARY]
//! ```
//!
//! The daemon runs in this process; the hosts are real `sensegate
//! driver-host` children (by default the `sensegate` binary next to this
//! example's directory).
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark tool: failing loudly is right"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sensegate_core::SensorState;
use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::{Daemon, DaemonOptions};
use sensegate_gateway::sources::config::DriverSource;
use sensegate_gateway::sources::supervisor::HostCommand;

fn host_binary() -> PathBuf {
    std::env::args_os().nth(1).map_or_else(
        || {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("sensegate")
        },
        PathBuf::from,
    )
}

async fn daemon(dir: &std::path::Path, source: DriverSource, history: bool) -> Daemon {
    let mut config = Config::with_defaults(dir);
    config.store.enabled = history;
    config.http.enabled = false;
    config.native_listen = "127.0.0.1:0".parse().unwrap();
    config.audit_log = None;
    config.sources.drivers.push(source);
    let options = DaemonOptions {
        driver_host: Some(HostCommand {
            program: host_binary(),
            args: vec!["driver-host".into()],
        }),
    };
    Daemon::start_with(&config, options).await.unwrap()
}

async fn throughput(channels: u32, history: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let sensors = (0..channels).map(|c| format!("bench.{c}")).collect();
    let config = format!("channels={channels};rate_hz=0");
    let path = PathBuf::from(sensegate_ffi::reference::SIM_PATH);
    let mut source = DriverSource::new("bench", path, &config, sensors);
    // The host's own speed is measured, not the configured cap.
    source.max_readings_per_sec = 100_000_000;
    let d = daemon(dir.path(), source, history).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, n0) = (Instant::now(), d.service().readings_ingested());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (t1, n1) = (Instant::now(), d.service().readings_ingested());
    d.shutdown(Duration::from_secs(1)).await;
    #[allow(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    rate
}

/// Crash-to-delivering-again times, with a 1 ms backoff, by polling the
/// sensor's state.
async fn restart_latency(samples: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let path = PathBuf::from(sensegate_ffi::reference::FAULTY_PATH);
    let mut source = DriverSource::new(
        "crash",
        path,
        "mode=segv;after=1;period_ms=0",
        vec!["crash".into()],
    );
    source.restart_initial = Duration::from_millis(1);
    source.restart_max = Duration::from_millis(1);
    let d = daemon(dir.path(), source, false).await;
    let service = d.service().clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(samples);
        let mut faulted_at: Option<Instant> = None;
        while out.len() < samples {
            let state = service.internals().catalog.entry("crash").map(|e| e.state);
            match (state, faulted_at) {
                (Some(SensorState::Faulted), None) => faulted_at = Some(Instant::now()),
                (Some(SensorState::Ok), Some(at)) => {
                    out.push(at.elapsed());
                    faulted_at = None;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        out
    })
    .await
    .unwrap();
    d.shutdown(Duration::from_secs(1)).await;
    out
}

#[tokio::main]
async fn main() {
    println!("driver host: {}", host_binary().display());
    for history in [false, true] {
        for channels in [1, 8] {
            for run in 1..=3 {
                let rate = throughput(channels, history).await;
                let history = if history { "on" } else { "off" };
                println!(
                    "sim driver, {channels} channel(s), rate_hz=0, history {history}, run {run}: {rate:.0} readings/s"
                );
            }
        }
    }
    let mut lat = restart_latency(200).await;
    lat.sort();
    let pct = |p: usize| lat[(lat.len() * p / 100).min(lat.len() - 1)];
    println!(
        "restart after a crash (detected crash to first reading of the new host, 1 ms backoff included), {} restarts: p50 {:?}, p90 {:?}, max {:?}",
        lat.len(),
        pct(50),
        pct(90),
        lat[lat.len() - 1]
    );
}
