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
        tracker.spawn(async move {
            let connection = admission.connection().clone();
            match tls {
                None => serve(TokioIo::new(tcp), app, &connection, limits).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake, acceptor.accept(tcp)).await
                    {
                        serve(TokioIo::new(stream), app, &connection, limits).await;
                    }
                }
            }
            drop(admission);
        });
    }
}

async fn serve<I>(io: TokioIo<I>, app: axum::Router, connection: &Connection, limits: HttpLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 << 10);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = connection.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(STOP_GRACE, conn).await;
        }
    }
}
