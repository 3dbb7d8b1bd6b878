//! Opens many authenticated idle connections and reports the daemon's
//! resident memory per connection (read from `/proc/PID/status`).
//!
//! ```text
//! cargo run --release -p sensegate-client --example hold -- \
//!     ADDR TOKEN_FILE COUNT DAEMON_PID [FINGERPRINT]
//! ```
//!
//! With a fingerprint the connections use TLS with that pin. Connections
//! are spread over source addresses 127.0.0.1 to 127.0.0.8 so one address's
//! ephemeral ports and the per-address cap are not the limit.
#![allow(clippy::unwrap_used, reason = "a measuring tool: fail loudly")]
#![allow(clippy::print_stdout, reason = "a measuring tool prints its figures")]

use std::time::Duration;

use sensegate_client::pin::{TlsOptions, parse_fingerprint};
use sensegate_client::settings::read_token_file;
use sensegate_client::{Client, ConnectOptions};

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 5,
        "usage: hold ADDR TOKEN_FILE COUNT DAEMON_PID [FINGERPRINT]"
    );
    let token = read_token_file(std::path::Path::new(&args[2])).unwrap();
    let count: usize = args[3].parse().unwrap();
    let pid = &args[4];
    let tls = args.get(5).map(|fp| TlsOptions {
        pin: Some(parse_fingerprint(fp).unwrap()),
        server_name: Some("localhost".into()),
        ..TlsOptions::default()
    });
    // Warm the daemon up with a few connections first, so one-off
    // allocations (runtime, pools) are not charged to the idle connections.
    let mut held = Vec::with_capacity(count);
    let connect = |i: usize| {
        let mut o = ConnectOptions::plain(args[1].clone(), token.clone());
        o.tls.clone_from(&tls);
        o.local_ip = Some(std::net::IpAddr::from([
            127,
            0,
            0,
            1 + u8::try_from(i % 8).unwrap(),
        ]));
        o
    };
    for i in 0..16 {
        held.push(Client::connect(&connect(i)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);
    for i in 16..count + 16 {
        held.push(Client::connect(&connect(i)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / count as f64;
    println!(
        "{} idle authenticated connections ({}): daemon RSS {before} KiB -> {after} KiB, {per:.0} bytes per connection",
        count,
        if tls.is_some() { "TLS" } else { "TCP" }
    );
    drop(held);
}
