//! The HTTP listener: one task per connection, admitted through the same
//! registry as native connections (so the caps on connections in total and
//! per address hold across both front ends, and admins can list and kick
//! HTTP clients), TLS 1.3 with the native listener's certificate, hyper's
//! HTTP/1.1 with a deadline on request headers, and a graceful end on kick,
//! revocation or shutdown.
//!
//! Closing is lingering: when hyper ends a connection, its write side is
//! shut first (the client gets the whole response and a FIN), then what the
//! client still sends is read and dropped for at most [`LINGER_TIME`] and
//! [`LINGER_BYTES`] before the socket closes. Closing with unread bytes
//! would make the kernel reset the connection, and a client still sending an
//! oversized body (curl, Telegraf) would see a broken pipe instead of the
//! 413 it was sent.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::api::{self, HttpLimits};
use crate::reading::now_us;
use crate::service::Service;
use crate::stats::{Limit, LimitHits};
use sensegate_core::Connection;

/// How long a stopped connection may finish its current response.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest a closing connection reads what its client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes a closing connection reads and drops (a few milliseconds of
/// one core at most).
pub const LINGER_BYTES: usize = 16 << 20;

/// Accepts HTTP connections until the service shuts down.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
    inflight: Arc<crate::inflight::InflightBudget>,
    limits: HttpLimits,
    tracker: TaskTracker,
) {
    let router = api::router(service.clone(), inflight, limits.clone());
    let limits = Arc::new(limits);
    let shutdown = service.shutdown_token();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the connection caps (counted): closed at once, nothing read.
        let Ok(admission) = service.admit(peer, sensegate_core::Frontend::Http, now_us()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = api::with_connection(router.clone(), admission.connection().clone());
        let handshake = admission
            .connection()
            .auth_deadline(service.limits().auth_timeout);
        let tls = tls.clone();
        let service = service.clone();
        let limits = limits.clone();
        tracker.spawn(async move {
            let connection = admission.connection().clone();
            let hits = &service.counters().limits;
            let stall = Stall::new(service.clone());
            match tls {
                None => {
                    let io = Counted::new(tcp, connection.clone(), stall);
                    serve(io, app, &connection, &limits, handshake, hits).await;
                }
                Some(acceptor) => {
                    let accepted = tokio::select! {
                        r = tokio::time::timeout(handshake, acceptor.accept(tcp)) => r,
                        _ = connection.stopped() => return,
                    };
                    match accepted {
                        Ok(Ok(stream)) => {
                            let io = Counted::new(stream, connection.clone(), stall);
                            serve(io, app, &connection, &limits, handshake, hits).await;
                        }
                        Ok(Err(_)) => {}
                        Err(_) => hits.hit(Limit::AuthTimeout),
                    }
                }
            }
            // Its streams' subscriber leaves the hub with it, as a native
            // connection's does.
            service.disconnected(&connection);
            drop(admission);
        });
    }
}

/// Serves one connection until it ends, is stopped, or has not
/// authenticated within `auth_timeout` (health probes reconnect; a peer
/// cannot hold a place in the registry without a token).
async fn serve<I>(
    io: Counted<I>,
    app: axum::Router,
    connection: &Connection,
    limits: &HttpLimits,
    auth_timeout: Duration,
    hits: &LimitHits,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 << 10);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let unauthenticated = async {
        tokio::time::sleep(auth_timeout).await;
        if connection.principal().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            // hyper's header timer also closes idle kept-alive connections;
            // only a request left half sent, or a connection that never
            // sent one, counts as the cap being hit.
            let half_sent = connection.bytes_in.load(Relaxed)
                > connection.bytes_in_at_reply.load(Relaxed)
                || connection.frames_in.load(Relaxed) == 0;
            if r.is_err_and(|e| e.is_timeout()) && half_sent {
                hits.hit(Limit::HttpHeaderTimeout);
            }
            return;
        }
        _ = connection.stopped() => {}
        () = unauthenticated => {
            // A browser that only fetched the dashboard's files has no
            // token to give; a connection that asked nothing at all does.
            if connection.frames_in.load(Relaxed) == 0 {
                hits.hit(Limit::AuthTimeout);
            }
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
}

/// A connection's I/O with its byte counters kept in the registry entry
/// (plaintext bytes: inside TLS when TLS is on), its write timeout, and its
/// lingering close.
struct Counted<I> {
    io: I,
    connection: Arc<Connection>,
    linger: Linger,
    stall: Stall,
}

/// The write timeout (`limits.write_timeout_ms`): a write that makes no
/// progress for that long fails, and hyper closes the connection, so a
/// client that stops reading a response (or a stream) holds it, and the
/// response's reservation, no longer than that.
struct Stall {
    service: Arc<Service>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    const fn new(service: Arc<Service>) -> Self {
        Self {
            service,
            timer: None,
        }
    }

    /// Called with a write's outcome: progress disarms the timer; a write
    /// that cannot go on arms it, and fails once it fires.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.timer = None;
            return r;
        }
        let after = self.service.limits().write_timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        if timer.as_mut().poll(cx).is_ready() {
            self.timer = None;
            self.service.counters().limits.hit(Limit::SlowReader);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

/// Where a closing connection is.
enum Linger {
    /// Not closing.
    Open,
    /// Write side shut; reading and dropping until the client closes, the
    /// deadline passes or `left` bytes were read.
    Draining {
        until: Pin<Box<tokio::time::Sleep>>,
        left: usize,
    },
    /// Done: the socket may close.
    Done,
}

impl<I> Counted<I> {
    const fn new(io: I, connection: Arc<Connection>, stall: Stall) -> Self {
        Self {
            io,
            connection,
            linger: Linger::Open,
            stall,
        }
    }

    fn sent(&self, n: usize) {
        self.connection.bytes_out.fetch_add(n as u64, Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            this.connection.bytes_in.fetch_add(n as u64, Relaxed);
        }
        r
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.sent(n);
        }
        this.stall.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.sent(n);
        }
        this.stall.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.stall.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.linger {
                Linger::Open => {
                    std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                    this.linger = Linger::Draining {
                        until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        left: LINGER_BYTES,
                    };
                }
                Linger::Draining { until, left } => {
                    if until.as_mut().poll(cx).is_ready() {
                        this.linger = Linger::Done;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *left = left.saturating_sub(buf.filled().len());
                            if *left == 0 {
                                this.linger = Linger::Done;
                            }
                        }
                        // End of stream or an error: the client is gone.
                        Poll::Ready(_) => this.linger = Linger::Done,
                    }
                }
                Linger::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
