//! The HTTP listener: one task per connection, admitted through the same
//! registry as native connections (so the caps on connections in total and
//! per address hold across both front ends, and admins can list and kick
//! HTTP clients), TLS 1.3 with the native listener's certificate, hyper's
//! HTTP/1.1 with a deadline on request headers, and a graceful end on kick,
//! revocation or shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::api::{self, HttpLimits};
use crate::reading::now_us;
use crate::registry::Connection;
use crate::service::Service;

/// How long a stopped connection may finish its current response.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Accepts HTTP connections until the service shuts down.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
    limits: HttpLimits,
    tracker: TaskTracker,
) {
    let router = api::router(service.clone(), limits);
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
        let Ok(admission) = service.registry().admit(peer, "http", now_us()) else {
            // Past the connection caps: closed at once, nothing read.
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let app = api::with_connection(router.clone(), admission.connection().clone());
        let (tls, handshake) = (tls.clone(), service.limits().auth_timeout);
        let service = service.clone();
        tracker.spawn(async move {
            let connection = admission.connection().clone();
            match tls {
                None => serve(TokioIo::new(tcp), app, &connection, limits, handshake).await,
                Some(acceptor) => {
                    let accepted = tokio::select! {
                        r = tokio::time::timeout(handshake, acceptor.accept(tcp)) => r,
                        _ = connection.stopped() => return,
                    };
                    if let Ok(Ok(stream)) = accepted {
                        serve(TokioIo::new(stream), app, &connection, limits, handshake).await;
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
    io: TokioIo<I>,
    app: axum::Router,
    connection: &Connection,
    limits: HttpLimits,
    auth_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 << 10);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let unauthenticated = async {
        tokio::time::sleep(auth_timeout).await;
        if connection.principal().is_some() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = connection.stopped() => {}
        () = unauthenticated => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
}
