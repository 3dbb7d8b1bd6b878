//! Connecting to the server under test: TCP from a chosen loopback source
//! address (so thousands of connections do not run out of one address's
//! ports), optionally wrapped in TLS 1.3 with the client crate's pinning
//! verifier (the same rustls configuration for sensegate and the broker).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sensegate_client::pin::TlsOptions;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

/// A byte stream to the server.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The `i`-th source address: 127.0.0.2, 127.0.0.3, ... 127.0.0.201, then
/// around again. (127.0.0.1 is left to the servers' own use.)
#[must_use]
pub fn source_ip(i: usize) -> IpAddr {
    let n = u8::try_from(i % 200).unwrap_or(0);
    IpAddr::from([127, 0, 0, 2 + n])
}

/// Runs a connection set-up up to four times, 250 ms apart: a server still
/// closing a previous scenario's connections (or working through a burst
/// of handshakes) may drop a new one. Set-up retries; measurements do not.
///
/// # Errors
/// The last attempt's error.
pub async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Ok(x) => return Ok(x),
            Err(e) if tries >= 3 => return Err(e),
            Err(_) => tries += 1,
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The `n`-th address of group `group` (1 to 255): 127.group.x.y, one
/// address per connection, apart from [`source_ip`]'s (127.0.0.x) and from
/// every other group's, so caps per address hit only the group that earns
/// them.
#[must_use]
pub fn group_ip(group: u8, n: usize) -> IpAddr {
    let x = u8::try_from((n / 250) % 256).unwrap_or(0);
    let y = u8::try_from(n % 250).unwrap_or(0);
    IpAddr::from([127, group, x, 2 + y])
}

/// TCP to `addr` from `from`, with `TCP_NODELAY`.
///
/// # Errors
/// Connecting failed.
pub async fn tcp(addr: SocketAddr, from: Option<IpAddr>) -> Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// TCP, then TLS when `tls` is set (offering the native protocol's ALPN).
///
/// # Errors
/// Connecting or the handshake failed.
pub async fn connect(
    addr: SocketAddr,
    from: Option<IpAddr>,
    tls: Option<&TlsOptions>,
) -> Result<Box<dyn Io>> {
    connect_offering(addr, from, tls, sensegate_client::pin::ALPN).await
}

/// As [`connect`], offering `alpn` (`mqtt` for an MQTT listener).
///
/// # Errors
/// Connecting or the handshake failed.
pub async fn connect_offering(
    addr: SocketAddr,
    from: Option<IpAddr>,
    tls: Option<&TlsOptions>,
    alpn: &[u8],
) -> Result<Box<dyn Io>> {
    tokio::time::timeout(SETUP_TIMEOUT, connect_inner(addr, from, tls, alpn))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr}: no answer in {SETUP_TIMEOUT:?}"))?
}

/// The ALPN name MQTT clients offer.
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// Time allowed to connect, shake hands and (MQTT) be acknowledged.
pub const SETUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn connect_inner(
    addr: SocketAddr,
    from: Option<IpAddr>,
    tls: Option<&TlsOptions>,
    alpn: &[u8],
) -> Result<Box<dyn Io>> {
    let stream = tcp(addr, from).await?;
    match tls {
        None => Ok(Box::new(stream)),
        Some(options) => {
            let mut config = options
                .client_config()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            config.alpn_protocols = vec![alpn.to_vec()];
            let name = options
                .server_name(&addr.to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let s = connector
                .connect(name, stream)
                .await
                .context("TLS handshake")?;
            Ok(Box::new(s))
        }
    }
}
