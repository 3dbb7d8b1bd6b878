//! TCP, TLS or an in-memory pipe behind one type, for the native and MQTT
//! front ends; and what every TCP listener does before its front end's own
//! work: take the next connection ([`next_connection`]) and run the TLS
//! handshake under the hello deadline ([`accept`]).
//!
//! Plain TCP reads wait for readiness first and reserve buffer space only
//! when bytes are there, so an idle connection holds no read buffer at all.
//! TLS reads go through tokio-rustls, whose session keeps its own buffers.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Pause after an accept error (out of descriptors, say) before retrying.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The next connection on `listener` (`TCP_NODELAY` set), or `None` once
/// `shutdown` is cancelled. An accept error (out of descriptors, say) is
/// logged and retried after a short pause. Shared by every TCP listener.
pub async fn next_connection(
    listener: &tokio::net::TcpListener,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return None,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                return Some((tcp, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A TCP connection admitted by a listener, as a [`Transport`]: plain, or
/// after its TLS handshake, which must end within the connection's hello
/// deadline (`limits.auth_timeout_ms`, counted as that cap when it does
/// not). `None` when the handshake failed or timed out; the connection is
/// then dropped. Boxed: the handshake state is large and must not stay in
/// the task of an idle connection. Shared by every TCP front end.
pub async fn accept(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    admission: &sensegate_core::Admission,
    service: &sensegate_core::service::Service,
) -> Option<Transport> {
    let Some(acceptor) = tls else {
        return Some(Transport::Tcp(tcp));
    };
    let connection = admission.connection();
    let hello_deadline = connection.auth_deadline(service.limits().auth_timeout);
    match Box::pin(tokio::time::timeout(hello_deadline, acceptor.accept(tcp))).await {
        Ok(Ok(s)) => Some(Transport::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(peer = %connection.peer, frontend = connection.frontend.name(), error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %connection.peer, frontend = connection.frontend.name(), "tls handshake timed out");
            service
                .counters()
                .limits
                .hit(sensegate_core::stats::Limit::AuthTimeout);
            None
        }
    }
}

/// A connection's byte stream.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS 1.3 over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory pipe ([`crate::daemon::Daemon::connect_in_memory`]):
    /// the same session and connection task without a socket, for tests
    /// (under tokio's paused clock too) and embedders.
    Memory(DuplexStream),
    /// The socket is with the parker (or was lost handing it over): reads
    /// see the end of the stream, writes fail.
    Parked,
}

impl Transport {
    /// Reads what is available into `buf`, reserving `chunk` bytes only once
    /// the socket is readable (TCP). Returns 0 at the end of the stream.
    /// Cancel-safe: no bytes are lost if the future is dropped.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn read_some(&mut self, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => loop {
                s.readable().await?;
                buf.reserve(chunk);
                match s.try_read_buf(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                    }
                    Err(e) => return Err(e),
                }
            },
            Self::Tls(s) => {
                buf.reserve(chunk);
                s.read_buf(buf).await
            }
            Self::Memory(s) => {
                buf.reserve(chunk);
                s.read_buf(buf).await
            }
            Self::Parked => Ok(0),
        }
    }

    /// Writes all of `data` and flushes it.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(data).await,
            Self::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Self::Memory(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Self::Parked => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the write side (TLS: sends `close_notify`).
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown().await,
            Self::Tls(s) => s.shutdown().await,
            Self::Memory(s) => s.shutdown().await,
            Self::Parked => Ok(()),
        };
    }
}
