//! The accept loop of the MQTT listener.
//!
//! Each accepted socket is admitted through the shared connection registry
//! first (the same total and per-address caps as the native and HTTP
//! front ends); a refused one is closed at once, since MQTT has nothing to
//! say before a CONNECT. An admitted socket gets its TLS handshake, bounded
//! by the hello deadline, then a connection task.

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::connection::{self, Shared};
use crate::reading::now_us;

/// Accepts connections until shutdown.
pub async fn run(
    listener: TcpListener,
    shared: Shared,
    tls: Option<TlsAcceptor>,
    tracker: TaskTracker,
) {
    let shared = std::sync::Arc::new(shared);
    loop {
        let Some((tcp, peer)) =
            crate::native::transport::next_connection(&listener, &shared.shutdown).await
        else {
            return;
        };
        let admission = match shared
            .service
            .admit(peer, sensegate_core::Frontend::Mqtt, now_us())
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "mqtt connection refused");
                drop(tcp);
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let started = Instant::now();
            let Some(transport) =
                crate::native::transport::accept(tcp, tls, &admission, &shared.service).await
            else {
                return;
            };
            connection::run(shared, admission, transport, started).await;
        });
    }
}
