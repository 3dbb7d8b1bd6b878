//! The driver host: the body of `sensegate driver-host`, a child process that
//! runs one vendor driver so that the daemon never does.
//!
//! It reads one [`v1::HostStart`] frame from stdin, enters the sandbox
//! ([`sensegate_ffi::sandbox`]: undumpable, descriptors other than stdin and
//! stdout closed, a Landlock file ruleset, resource limits, seccomp), loads
//! and opens the driver, and then
//! forwards what the driver reads as [`v1::HostEvent`] frames on stdout:
//! records, a heartbeat when there is nothing to say, or the reason it failed
//! just before it exits. Plain blocking I/O on one thread: the sandbox
//! forbids creating threads, and there is nothing to do concurrently.
//!
//! The host re-encodes the records it parsed rather than forwarding the
//! driver's bytes, and the daemon parses them again: it trusts a host no more
//! than the driver inside it.
//!
//! This crate depends on the FFI boundary and the wire contract only: no
//! async runtime, no daemon. `sensegate driver-host` calls [`run`]; the
//! daemon's supervisor (`sensegate_gateway::sources::supervisor`) starts it
//! and reads its frames.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prost::Message;
use sensegate_ffi::sandbox::{self, Limits};
use sensegate_ffi::{Driver, record};
use sensegate_proto::frame::{FrameDecoder, FrameLimit, encode_message};
use sensegate_proto::v1::{self, host_event::Body};

/// Largest frame either side sends: a full read buffer plus framing.
pub const HOST_FRAME_LIMIT: u32 = 128 << 10;

/// Exit status when the host reports a failure it detected.
const EXIT_FAILED: u8 = 2;

/// Runs the host on the process's stdin and stdout. Writes nothing to
/// stderr: the sandbox puts `/dev/null` there.
#[must_use]
pub fn run() -> ExitCode {
    std::panic::set_hook(Box::new(|_| {}));
    let mut input = std::io::stdin().lock();
    let mut output = std::io::stdout().lock();
    match serve(&mut input, &mut output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(&mut output, reason),
    }
}

/// Reports `reason` and exits at once, without closing the driver or
/// unloading it: a driver that just broke its contract may have corrupted
/// the heap, and running its close and destructors could turn a clear
/// reason into a crash or a hang.
fn fail(output: &mut impl Write, reason: String) -> ! {
    let _ = send(output, Body::Failed(v1::HostFailed { reason }));
    std::process::exit(i32::from(EXIT_FAILED))
}

fn serve(input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let start = read_start(input)?;
    let limits = Limits {
        address_space_bytes: start.address_space_bytes,
        cpu_seconds: start.cpu_seconds,
        open_files: start.open_files,
    };
    let files = sandbox::FileAccess {
        read: start.read_paths.iter().map(PathBuf::from).collect(),
        read_write: start.device_paths.iter().map(PathBuf::from).collect(),
        dangerous_allow_without_landlock: start.dangerous_allow_without_landlock,
    };
    let (library, confinement) = sandbox::enter_and_load(
        &[0, 1],
        limits,
        start.daemon_pid,
        Path::new(&start.driver_path),
        &files,
    )
    .map_err(|e| e.to_string())?;
    let mut driver = match Driver::open(&library, &start.config) {
        Ok(d) => d,
        Err(e) => fail(output, e.to_string()),
    };
    send(
        output,
        Body::Ready(v1::HostReady {
            files_confined: confinement.files_confined,
        }),
    )?;
    let heartbeat = Duration::from_millis(u64::from(start.heartbeat_ms.max(10)));
    let idle = Duration::from_millis(u64::from(start.idle_poll_ms.clamp(1, 1000)));
    let mut last_sent = Instant::now();
    loop {
        let records = match driver.read() {
            Ok(r) => r,
            Err(e) => fail(output, e.to_string()),
        };
        if records.is_empty() {
            if last_sent.elapsed() >= heartbeat {
                send(output, Body::Heartbeat(v1::HostHeartbeat {}))?;
                last_sent = Instant::now();
            }
            std::thread::sleep(idle);
        } else {
            send(output, Body::Records(record::encode(&records).into()))?;
            last_sent = Instant::now();
        }
    }
}

/// Reads the one start frame.
fn read_start(input: &mut impl Read) -> Result<v1::HostStart, String> {
    let decoder = FrameDecoder::new(limit());
    let mut buf = BytesMut::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(frame) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            return v1::HostStart::decode(frame.payload())
                .map_err(|_| "the start frame is not a HostStart".to_owned());
        }
        let n = input
            .read(&mut chunk)
            .map_err(|e| format!("reading the start frame: {e}"))?;
        if n == 0 {
            return Err("stdin closed before the start frame".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn send(output: &mut impl Write, body: Body) -> Result<(), String> {
    let mut buf = BytesMut::new();
    encode_message(&v1::HostEvent { body: Some(body) }, limit(), &mut buf)
        .map_err(|e| e.to_string())?;
    output
        .write_all(&buf)
        .and_then(|()| output.flush())
        .map_err(|e| format!("writing to the daemon: {e}"))
}

fn limit() -> FrameLimit {
    FrameLimit::new(HOST_FRAME_LIMIT).unwrap_or(FrameLimit::DEFAULT)
}
