//! The line-protocol ingest scenario: W writers, each on a keep-alive
//! HTTP/1.1 connection of its own, POST batches of B points in InfluxDB
//! line protocol and wait for each answer (a 204 from sensegate once the
//! batch is durable; from InfluxDB once its WAL has it). Reports points
//! acknowledged per second and the answer's latency, the same figures as
//! the native ingest scenario, so the two compare row by row.
//!
//! The same client and the same points against any server that takes
//! `/write` or `/api/v2/write`: writer `i` writes the series
//! `bench,writer=lp-<i> v=<n>` (sensegate's sensor `bench/lp-<i>/v`),
//! timestamps in microseconds, one apart.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::ingest::Ingested;
use crate::latency::{Acks, Latency, gather};
use crate::process::{Process, Watch};

/// Largest response head or body the client reads (a 204 has no body; an
/// error's is a short JSON).
const MAX_RESPONSE: usize = 64 << 10;

/// Runs it for `duration`. `path` is the write path with its query
/// (`/write?db=bench&precision=u`); writer `i` sends `tokens[i]` as
/// `Authorization: Token`, when there is one.
///
/// # Errors
/// A writer could not connect, or a write was refused.
pub async fn run(
    addr: SocketAddr,
    path: &str,
    tokens: Vec<Option<String>>,
    batch: usize,
    duration: Duration,
    process: Option<Process>,
) -> Result<Ingested> {
    let writers = tokens.len();
    let mut conns = Vec::with_capacity(writers);
    for _ in 0..writers {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let watch = Watch::start(process);
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = Vec::with_capacity(writers);
    for (i, (mut s, token)) in conns.into_iter().zip(tokens).enumerate() {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::default();
            let mut committed = 0u64;
            let mut ts = crate::now_us();
            let mut body = String::new();
            let mut request = Vec::new();
            let mut reply = Vec::new();
            while Instant::now() < until {
                body.clear();
                for n in 0..batch {
                    ts += 1;
                    let _ = writeln!(body, "bench,writer=lp-{i} v={n} {ts}");
                }
                request.clear();
                let auth = token
                    .as_deref()
                    .map(|t| format!("Authorization: Token {t}\r\n"))
                    .unwrap_or_default();
                let _ = write!(
                    Cursor(&mut request),
                    "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain; charset=utf-8\r\n{auth}Content-Length: {}\r\n\r\n",
                    body.len()
                );
                request.extend_from_slice(body.as_bytes());
                let sent = Instant::now();
                s.write_all(&request).await?;
                let status = read_response(&mut s, &mut reply).await?;
                if status != 204 {
                    bail!(
                        "writer {i}: {status} {}",
                        String::from_utf8_lossy(&reply).chars().take(300).collect::<String>()
                    );
                }
                latency.record(i64::try_from(sent.elapsed().as_micros()).unwrap_or(i64::MAX));
                committed += u64::try_from(batch).unwrap_or(u64::MAX);
            }
            anyhow::Ok((committed, latency))
        }));
    }
    let (committed, latency) = gather(tasks, "a writer task").await?;
    let acks = Acks::of(committed, &latency, started.elapsed().as_secs_f64());
    Ok(Ingested::new(writers, batch, acks, &watch.finish()))
}

/// `fmt::Write` into a byte buffer.
struct Cursor<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Reads one response: its status, and its body (by `Content-Length`, or
/// none) into `body`.
async fn read_response(s: &mut TcpStream, body: &mut Vec<u8>) -> Result<u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE {
            bail!("a response head over {MAX_RESPONSE} bytes");
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("a response head not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status in the response")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    if length > MAX_RESPONSE {
        bail!("a response body of {length} bytes");
    }
    body.clear();
    body.extend_from_slice(&buf[head_end..]);
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection mid-body");
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(status)
}
