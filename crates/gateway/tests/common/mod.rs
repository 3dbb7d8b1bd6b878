//! Shared harness: a real daemon on 127.0.0.1:0 in a temporary directory,
//! raw sockets for hostile peers, and the client crate for normal ones.
#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use prost::Message as _;
use sensegate_client::wire::{self as v1, ErrorCode, envelope::Body};
use sensegate_client::{Client, ConnectOptions, Secret};
use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::Daemon;
use sensegate_proto::FrameDecoder;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub struct TestDaemon {
    pub daemon: Daemon,
    pub admin: Secret,
    pub dir: TempDir,
}

impl TestDaemon {
    /// A daemon with the given `[limits]` lines (and any other sections
    /// after them).
    pub async fn start(extra: &str) -> Self {
        Self::start_native("", extra).await
    }

    /// As [`TestDaemon::start`], with more `[native]` lines.
    pub async fn start_native(native: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The HTTP API on a free port, unless the test configures it.
        let http = if extra.contains("[http]") {
            ""
        } else {
            "[http]\nlisten = \"127.0.0.1:0\"\n"
        };
        let text = format!(
            "[server]\ndata_dir = {:?}\n[native]\nlisten = \"127.0.0.1:0\"\n{native}\n{http}{extra}\n",
            dir.path().display().to_string()
        );
        let config = Config::parse(&text, Path::new("test.toml")).unwrap();
        let daemon = Daemon::start(&config).await.unwrap();
        let admin = daemon
            .ensure_admin_token(&dir.path().join("admin.token"))
            .unwrap();
        Self {
            daemon,
            admin: Secret::new(admin.expose()),
            dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.daemon.native_addr()
    }

    pub fn options(&self, token: &Secret) -> ConnectOptions {
        let mut o = ConnectOptions::plain(self.addr().to_string(), token.clone());
        o.timeout = Duration::from_secs(20);
        o
    }

    pub async fn admin(&self) -> Client {
        Client::connect(&self.options(&self.admin)).await.unwrap()
    }

    /// A new token of `role` with `scope`, made by the admin.
    pub async fn token(&self, role: v1::Role, scope: &str) -> (String, Secret) {
        let mut admin = self.admin().await;
        let reply = admin.create_token("t", role, scope).await.unwrap();
        (reply.token.unwrap().id, Secret::new(reply.secret))
    }

    /// `n` sensors with names of about 110 bytes (`big/NNNN/xxx...`), pushed
    /// by a device token in batches small enough for a 64 KiB frame: what
    /// makes list replies large.
    pub async fn big_sensors(&self, n: usize) {
        let (_, device) = self.token(v1::Role::Device, "big/*").await;
        let mut dev = Client::connect(&self.options(&device)).await.unwrap();
        let pad = "x".repeat(100);
        let now = sensegate_gateway::reading::now_us();
        for start in (0..n).step_by(100) {
            let batch: Vec<v1::Reading> = (start..n.min(start + 100))
                .map(|i| reading(&format!("big/{i:04}/{pad}"), now, 1.0))
                .collect();
            let len = u32::try_from(batch.len()).unwrap();
            assert_eq!(dev.push(batch).await.unwrap(), len);
        }
    }

    /// A normal client is still served: connect, ping, list.
    pub async fn assert_served(&self) {
        let mut c = self.admin().await;
        c.ping().await.unwrap();
        c.list_sensors("").await.unwrap();
        c.close().await.unwrap();
    }

    pub async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.addr()).await.unwrap()
    }

    pub async fn raw_from(&self, ip: [u8; 4]) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((ip, 0))).unwrap();
        s.connect(self.addr()).await.unwrap()
    }
}

/// Encodes one envelope as a frame.
pub fn frame(body: Body, request_id: u64) -> Vec<u8> {
    let payload = v1::Envelope {
        request_id,
        body: Some(body),
    }
    .encode_to_vec();
    let mut out = (u32::try_from(payload.len()).unwrap())
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(&payload);
    out
}

pub fn hello(token: &Secret) -> Vec<u8> {
    frame(
        Body::Hello(v1::Hello {
            protocol_version: 1,
            token: token.expose().to_owned(),
            client_name: "raw".into(),
        }),
        1,
    )
}

/// Reads envelopes until the server closes (or 10 s pass); returns them.
pub async fn read_until_closed(s: &mut TcpStream) -> Vec<v1::Envelope> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let decoder = FrameDecoder::new(sensegate_proto::FrameLimit::DEFAULT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Ok(Some(f)) = decoder.decode(&mut buf) {
            out.push(v1::Envelope::decode(f.payload()).unwrap());
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return out,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(elapsed) => panic!("server did not close ({elapsed}); got {out:?}"),
        }
    }
}

/// Reads one envelope.
pub async fn read_one(s: &mut TcpStream) -> v1::Envelope {
    let mut header = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    let mut payload = vec![0u8; u32::from_le_bytes(header) as usize];
    s.read_exact(&mut payload).await.unwrap();
    v1::Envelope::decode(payload.as_slice()).unwrap()
}

/// The error code of the last envelope, which must be an error.
pub fn last_error(envelopes: &[v1::Envelope]) -> (ErrorCode, String) {
    match envelopes.last().and_then(|e| e.body.clone()) {
        Some(Body::Error(e)) => (ErrorCode::try_from(e.code).unwrap(), e.message),
        other => panic!("expected an error frame, got {other:?} in {envelopes:?}"),
    }
}

/// Writes bytes, ignoring a reset (the server may close first).
pub async fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes).await;
}

pub fn reading(sensor: &str, ts: i64, value: f64) -> v1::Reading {
    v1::Reading {
        sensor: sensor.into(),
        timestamp_us: ts,
        value,
        quality: 0,
    }
}

/// This process's resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// An HTTP response as the hand-written clients of the HTTP tests read it:
/// the status, the head (lower-cased, for header checks) and the body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The stable code of a JSON error body.
    pub fn code(&self) -> String {
        self.error_field("code")
    }

    /// The message of a JSON error body.
    pub fn message(&self) -> String {
        self.error_field("message")
    }

    fn error_field(&self, field: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        v["error"][field].as_str().unwrap_or_default().to_owned()
    }
}

/// The daemon's HTTP address.
pub fn http(d: &TestDaemon) -> SocketAddr {
    d.daemon.http_addr().unwrap()
}

/// Reads a response until the server closes (the requests say
/// `Connection: close`), or 30 s.
pub async fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}
