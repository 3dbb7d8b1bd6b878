//! Server-sent event fan-out: readings delivered per second in total to N
//! stream clients over the HTTP API, plain TCP, loopback, the daemon in this
//! process.
//!
//! ```text
//! cargo run --release -p sensegate-gateway --example sse_fanout [CLIENTS] [SECONDS] [RATE]
//! ```
//!
//! One sensor is fed in batches of 100 readings, at RATE readings per second
//! (0 or absent: as fast as the daemon takes them); every client subscribes
//! to it and counts the readings its events carry and the readings its
//! events say were dropped.
#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a benchmark tool: failing loudly is right, rates are for display"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::Daemon;
use sensegate_gateway::reading::{Quality, Reading, now_us};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One stream client: counts the readings its events carry and the readings
/// they say were dropped.
async fn client(
    addr: std::net::SocketAddr,
    token: &str,
    delivered: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/v1/stream?sensors=bench/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 << 10];
        let mut carry = String::new();
        loop {
            let Ok(n) = s.read(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            carry.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Whole events only: count what each carries.
            while let Some(end) = carry.find("\n\n") {
                let event: String = carry.drain(..end + 2).collect();
                let readings = event.matches("\"sensor\":").count() as u64;
                delivered.fetch_add(readings, Relaxed);
                if let Some(i) = event.find("\"dropped\":") {
                    let digits: String = event[i + 10..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    dropped.fetch_add(digits.parse().unwrap_or(0), Relaxed);
                }
            }
        }
    })
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(100, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(5, |a| a.parse().unwrap());
    let rate: u64 = args.next().map_or(0, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_defaults(dir.path());
    config.native_listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.audit_log = None;
    config.store.enabled = false;
    config.limits.max_connections_per_address = clients + 10;
    let daemon = Daemon::start(&config).await.unwrap();
    let token = daemon
        .ensure_admin_token(&dir.path().join("admin.token"))
        .unwrap();
    let token = token.expose().to_owned();
    let addr = daemon.http_addr().unwrap();
    let service = daemon.service().clone();
    let sensor: Arc<str> = service
        .source_sink("bench")
        .register("bench/x", "")
        .unwrap();

    let delivered = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(client(addr, &token, delivered.clone(), dropped.clone()).await);
    }
    // Wait for every stream to be subscribed.
    while service.internals().hub.len() < clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ts = now_us();
    let start = Instant::now();
    let mut published = 0u64;
    let mut pace = (rate > 0).then(|| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(100.0 / rate as f64));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    while start.elapsed() < Duration::from_secs(seconds) {
        if let Some(p) = pace.as_mut() {
            p.tick().await;
        }
        let batch: Vec<Reading> = (0..100)
            .map(|_| {
                ts += 1;
                Reading {
                    sensor: sensor.clone(),
                    timestamp_us: ts,
                    value: 1.5,
                    quality: Quality::Good,
                }
            })
            .collect();
        service.source_sink("bench").ingest(&batch);
        published += 100;
        // Let the streams run between batches (a 2-core box).
        tokio::task::yield_now().await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = delivered.load(Relaxed);
    let lost = dropped.load(Relaxed);
    println!(
        "{clients} SSE clients, {seconds} s: published {:.0} readings/s, delivered {:.0} readings/s in total \
         ({:.0} per client), reported dropped {:.1}%",
        published as f64 / elapsed,
        d as f64 / elapsed,
        d as f64 / elapsed / clients as f64,
        100.0 * lost as f64 / (d + lost).max(1) as f64
    );
    for t in tasks {
        t.abort();
    }
    daemon.shutdown(Duration::from_secs(1)).await;
}
