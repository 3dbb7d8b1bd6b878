//! Supervision of driver hosts: one task per `[[driver]]` source that runs a
//! `sensegate driver-host` child, feeds what it reads into the service, and
//! restarts it with backoff when it fails.
//!
//! A host fails by crashing (any exit), hanging (no frame within the read
//! deadline; it sends heartbeats when idle), or sending anything that is not
//! a valid frame of valid records for a configured channel. Each failure
//! marks the source's sensors `faulted` with the reason, the host is killed
//! and reaped, and a new one starts after the backoff delay, with the
//! sensors `restarting` meanwhile. Nothing here blocks another source or a
//! client: each host has its own task, pipes and buffers, all bounded.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use prost::Message;
use sensegate_ffi::record::{self, Record};
use sensegate_proto::codec::FrameCodec;
use sensegate_proto::frame::{FrameLimit, encode_message};
use sensegate_proto::v1::{self, host_event::Body};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::DriverSource;
use crate::reading::{Quality, Reading, now_us};
use crate::service::{MAX_FUTURE_US, SourceSink};
use sensegate_core::SensorState;
use sensegate_host::HOST_FRAME_LIMIT;

/// How a driver host is started: a program and its arguments (by default
/// this executable with `driver-host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl HostCommand {
    /// This executable, `driver-host`.
    ///
    /// # Errors
    /// When the path of the running executable cannot be found.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: vec!["driver-host".into()],
        })
    }
}

/// Longest fault reason kept; a host's own message is cut to this.
const MAX_REASON: usize = 200;

/// Why a host run ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostFault {
    /// The host could not be started.
    #[error("cannot start the driver host: {0}")]
    Spawn(String),
    /// The host reported a failure (the driver's error, or the sandbox's).
    #[error("driver failed: {0}")]
    Failed(String),
    /// No frame within the read deadline.
    #[error("hung: no output for {} ms", .0.as_millis())]
    Hung(Duration),
    /// The host was killed by a signal.
    #[error("crashed: killed by signal {0} ({name})", name = signal_name(*.0))]
    Signal(i32),
    /// The host exited without reporting why.
    #[error("driver host exited with status {0}")]
    Exited(i32),
    /// The host sent something that is not valid.
    #[error("bad output: {0}")]
    BadOutput(String),
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "other",
    }
}

/// A driver source and how its host is started (a runtime hook,
/// [`crate::daemon::DaemonOptions`]): what [`run`] runs.
#[derive(Debug, Clone)]
pub struct HostedDriver {
    /// The `[[driver]]` section.
    pub source: DriverSource,
    /// How its host is started.
    pub host: HostCommand,
}

/// Runs the source until `shutdown`: registers its sensors, then keeps a
/// host running.
pub async fn run(sink: SourceSink, driver: HostedDriver, shutdown: CancellationToken) {
    let HostedDriver { source, host } = driver;
    let mut sensors = Vec::with_capacity(source.sensors.len());
    for name in &source.sensors {
        match sink.register(name, &source.unit) {
            Ok(n) => sensors.push(n),
            Err(e) => {
                tracing::error!(source = %source.name, error = %e, "driver source not started");
                return;
            }
        }
    }
    let mut backoff = Backoff::new(source.restart_initial, source.restart_max);
    let mut restarts: u64 = 0;
    let mut failed_at: Option<Instant> = None;
    loop {
        let started = Instant::now();
        let fault = tokio::select! {
            () = shutdown.cancelled() => return,
            fault = run_host(&sink, &source, &host, &sensors, &mut failed_at) => fault,
        };
        failed_at = Some(Instant::now());
        let reason = fault.to_string();
        sink.set_state(&sensors, SensorState::Faulted, &reason);
        let delay = backoff.next(started.elapsed());
        restarts += 1;
        sink.note_driver_restart(&source.name);
        tracing::warn!(
            source = %source.name,
            reason = %reason,
            restarts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "driver host failed; restarting after a delay"
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        sink.set_state(&sensors, SensorState::Restarting, &reason);
    }
}

/// One host, from spawn to failure. Dropping the future (shutdown) kills the
/// child: it is spawned with `kill_on_drop`.
async fn run_host(
    sink: &SourceSink,
    source: &DriverSource,
    host: &HostCommand,
    sensors: &[Arc<str>],
    failed_at: &mut Option<Instant>,
) -> HostFault {
    let mut child = match spawn(source, host).await {
        Ok(child) => child,
        Err(e) => return HostFault::Spawn(e.to_string()),
    };
    let Some(stdout) = child.stdout.take() else {
        return HostFault::Spawn("no pipe to the host".to_owned());
    };
    let limit = FrameLimit::new(HOST_FRAME_LIMIT).unwrap_or(FrameLimit::DEFAULT);
    let mut frames = FramedRead::with_capacity(stdout, FrameCodec::new(limit), 8192);
    let mut batch: Vec<Reading> = Vec::new();
    let mut reported: Option<String> = None;
    let mut budget = Budget::new(source.max_readings_per_sec);
    let mut chatter = Chatter::default();
    loop {
        let next = tokio::time::timeout(source.read_timeout, frames.next()).await;
        let frame = match next {
            Err(_) => return kill(child, HostFault::Hung(source.read_timeout)).await,
            Ok(None) => return ended(child, reported).await,
            Ok(Some(Err(e))) => return kill(child, HostFault::BadOutput(e.to_string())).await,
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(v1::HostEvent { body: Some(event) }) = v1::HostEvent::decode(frame.payload()) else {
            let fault = HostFault::BadOutput("a frame that is not a host event".to_owned());
            return kill(child, fault).await;
        };
        match event {
            Body::Ready(ready) => {
                if !ready.files_confined {
                    tracing::warn!(
                        source = %source.name,
                        "driver host runs without Landlock (dangerous_allow_without_landlock): \
                         its driver can open any file the daemon's user can"
                    );
                }
            }
            Body::Heartbeat(_) => {
                if !chatter.allow(Instant::now()) {
                    return kill(child, HostFault::BadOutput(CHATTER.to_owned())).await;
                }
            }
            Body::Failed(f) => reported = Some(clean(&f.reason)),
            Body::Records(bytes) => {
                if let Err(fault) = to_readings(&bytes, sensors, &mut batch) {
                    return kill(child, fault).await;
                }
                // An empty frame says no more than a heartbeat.
                if batch.is_empty() && !chatter.allow(Instant::now()) {
                    return kill(child, HostFault::BadOutput(CHATTER.to_owned())).await;
                }
                // Over the rate: stop reading the pipe until the budget
                // refills, so the driver blocks instead of the daemon working.
                let wait = budget.take(batch.len(), Instant::now());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                sink.ingest(&batch);
                if let Some(at) = failed_at.take() {
                    tracing::info!(
                        source = %source.name,
                        restart_us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX),
                        "driver host delivering again"
                    );
                }
            }
        }
    }
}

/// Heartbeats and empty record frames a host may send per second: a
/// heartbeat comes every `read_timeout / 4` at most (40 a second at the
/// shortest timeout), so this only ever stops a host that floods the daemon
/// with frames that carry nothing.
const MAX_CHATTER_PER_SEC: u32 = 100;

/// The fault reason for a host over [`MAX_CHATTER_PER_SEC`].
const CHATTER: &str = "more than 100 heartbeats or empty frames in a second";

/// Counts frames that carry nothing, per one-second window.
#[derive(Debug, Default)]
struct Chatter {
    window: Option<Instant>,
    count: u32,
}

impl Chatter {
    fn allow(&mut self, now: Instant) -> bool {
        match self.window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {
                self.count += 1;
            }
            _ => {
                self.window = Some(now);
                self.count = 1;
            }
        }
        self.count <= MAX_CHATTER_PER_SEC
    }
}

/// A readings-per-second budget: a token bucket holding one second's worth
/// (at least one full read buffer).
#[derive(Debug)]
struct Budget {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    #[allow(clippy::cast_precision_loss, reason = "rates far below 2^52")]
    fn new(per_sec: u64) -> Self {
        let rate = per_sec.max(1) as f64;
        let records_per_read =
            (sensegate_ffi::abi::READ_CAPACITY / sensegate_ffi::abi::RECORD_SIZE) as f64;
        let capacity = rate.max(records_per_read);
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: None,
        }
    }

    /// Takes `n` readings' worth; returns how long to wait before they may
    /// be used (zero when the budget had them).
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn take(&mut self, n: usize, now: Instant) -> Duration {
        if let Some(at) = self.at {
            let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.at = Some(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

async fn spawn(source: &DriverSource, host: &HostCommand) -> std::io::Result<Child> {
    let mut child = Command::new(&host.program)
        .args(&host.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .kill_on_drop(true)
        .spawn()?;
    let start = v1::HostStart {
        driver_path: source.path.to_string_lossy().into_owned(),
        config: source.config.clone().into_bytes().into(),
        address_space_bytes: source.memory_bytes,
        cpu_seconds: source.cpu_seconds,
        open_files: source.open_files,
        heartbeat_ms: u32::try_from(source.read_timeout.as_millis() / 4).unwrap_or(u32::MAX),
        idle_poll_ms: 5,
        daemon_pid: std::process::id(),
        read_paths: paths(&source.files.read),
        device_paths: paths(&source.files.read_write),
        dangerous_allow_without_landlock: source.files.dangerous_allow_without_landlock,
    };
    let mut buf = BytesMut::new();
    let limit = FrameLimit::new(HOST_FRAME_LIMIT).unwrap_or(FrameLimit::DEFAULT);
    encode_message(&start, limit, &mut buf).map_err(std::io::Error::other)?;
    if let Some(mut stdin) = child.stdin.take() {
        // The host reads nothing after this frame; closing our end keeps no
        // descriptor open for it in the daemon.
        stdin.write_all(&buf).await?;
    }
    Ok(child)
}

fn paths(list: &[PathBuf]) -> Vec<String> {
    list.iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Turns a records frame into readings, refusing the whole frame on any bad
/// record, unconfigured channel, or a timestamp further ahead of the
/// daemon's clock than a push may be ([`MAX_FUTURE_US`]): a reading from the
/// far future would stay the sensor's latest and never age out of history.
fn to_readings(
    bytes: &[u8],
    sensors: &[Arc<str>],
    out: &mut Vec<Reading>,
) -> Result<(), HostFault> {
    let records = record::parse(bytes).map_err(|e| HostFault::BadOutput(e.to_string()))?;
    out.clear();
    out.reserve(records.len());
    let now = now_us();
    for Record {
        channel,
        quality,
        timestamp_us,
        value,
    } in records
    {
        let sensor = usize::try_from(channel)
            .ok()
            .and_then(|c| sensors.get(c))
            .ok_or_else(|| {
                HostFault::BadOutput(format!(
                    "a record for channel {channel}, which is not configured"
                ))
            })?;
        if timestamp_us > now.saturating_add(MAX_FUTURE_US) {
            return Err(HostFault::BadOutput(
                "a reading stamped more than 10 minutes ahead of the daemon's clock".to_owned(),
            ));
        }
        out.push(Reading {
            sensor: sensor.clone(),
            timestamp_us: if timestamp_us == 0 { now } else { timestamp_us },
            value,
            quality: match quality {
                0 => Quality::Good,
                1 => Quality::Uncertain,
                _ => Quality::Bad,
            },
        });
    }
    Ok(())
}

async fn kill(mut child: Child, fault: HostFault) -> HostFault {
    let _ = child.start_kill();
    let _ = child.wait().await;
    fault
}

/// The host closed its output: wait for it and say why it ended.
async fn ended(mut child: Child, reported: Option<String>) -> HostFault {
    // A host that closed stdout but lingers is killed after a short grace.
    let status =
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
            Some(status)
        } else {
            let _ = child.start_kill();
            child.wait().await.ok()
        };
    if let Some(reason) = reported {
        return HostFault::Failed(reason);
    }
    status.map_or_else(|| HostFault::Exited(-1), from_status)
}

fn from_status(status: ExitStatus) -> HostFault {
    match (status.signal(), status.code()) {
        (Some(signal), _) => HostFault::Signal(signal),
        (None, Some(code)) => HostFault::Exited(code),
        (None, None) => HostFault::Exited(-1),
    }
}

/// A host's message, made safe to show: printable, and cut short.
fn clean(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .map(|c| {
            if sensegate_proto::envelope::is_unsafe_text_char(c) {
                ' '
            } else {
                c
            }
        })
        .take(MAX_REASON)
        .collect();
    if out.is_empty() {
        out.push_str("no reason given");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Arc<str>> {
        (0..n).map(|i| Arc::from(format!("s{i}"))).collect()
    }

    #[test]
    fn records_map_to_their_channels_sensor() {
        let bytes = record::encode(&[
            Record {
                channel: 1,
                quality: 1,
                timestamp_us: 5,
                value: 2.5,
            },
            Record {
                channel: 0,
                quality: 0,
                timestamp_us: 0,
                value: 1.0,
            },
        ]);
        let mut out = Vec::new();
        to_readings(&bytes, &names(2), &mut out).unwrap();
        assert_eq!(&*out[0].sensor, "s1");
        assert_eq!(out[0].quality, Quality::Uncertain);
        assert_eq!(out[0].timestamp_us, 5);
        assert!(
            out[1].timestamp_us > 1_600_000_000_000_000,
            "stamped on receipt"
        );
    }

    #[test]
    fn an_unconfigured_channel_or_bad_record_refuses_the_frame() {
        let bytes = record::encode(&[Record {
            channel: 2,
            quality: 0,
            timestamp_us: 1,
            value: 1.0,
        }]);
        let mut out = Vec::new();
        let err = to_readings(&bytes, &names(2), &mut out).unwrap_err();
        assert!(err.to_string().contains("channel 2"), "{err}");
        let err = to_readings(&[0; 23], &names(2), &mut out).unwrap_err();
        assert!(matches!(err, HostFault::BadOutput(_)));
    }

    #[test]
    fn the_budget_allows_its_rate_and_makes_the_rest_wait() {
        let t0 = Instant::now();
        let mut b = Budget::new(10_000);
        // A second's worth at once, then nothing left.
        assert_eq!(b.take(10_000, t0), Duration::ZERO);
        let wait = b.take(5_000, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Half a second later the debt is paid, and a tenth more refills.
        let later = t0 + Duration::from_millis(600);
        assert_eq!(b.take(1_000, later), Duration::ZERO);
        assert!(!b.take(1, later).is_zero());
    }

    #[test]
    fn a_host_that_floods_with_empty_frames_is_stopped() {
        let mut c = Chatter::default();
        let now = Instant::now();
        assert!((0..MAX_CHATTER_PER_SEC).all(|_| c.allow(now)));
        assert!(!c.allow(now));
        assert!(c.allow(now + Duration::from_secs(1)));
    }

    #[test]
    fn host_messages_are_cleaned() {
        assert_eq!(clean("a\nb\x1b[31m"), "a b [31m");
        assert_eq!(clean(&"x".repeat(1000)).len(), MAX_REASON);
        assert_eq!(clean(""), "no reason given");
    }

    #[test]
    fn exit_statuses_name_the_signal() {
        let segv = ExitStatus::from_raw(11);
        assert_eq!(
            from_status(segv).to_string(),
            "crashed: killed by signal 11 (SIGSEGV)"
        );
        let code = ExitStatus::from_raw(3 << 8);
        assert_eq!(
            from_status(code).to_string(),
            "driver host exited with status 3"
        );
    }
}
