//! The accept loop of the native listener.
//!
//! Each accepted socket is admitted through the registry first. A refused
//! socket gets one `OVERLOADED` frame (plain TCP only; a TLS peer is simply
//! closed) from a small, bounded pool of refusal tasks, so a connection
//! flood costs a fixed amount of work and memory. An admitted socket gets
//! its TLS handshake, bounded by the hello deadline, then a connection task.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sensegate_proto::frame;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::connection::{self, Shared};
use super::wire::{self, ProtocolError};
use crate::reading::now_us;
use sensegate_core::AdmitError;

/// Refusals being written at once; past it refused sockets are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// Time a refusal frame may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_millis(500);

/// Accepts connections until shutdown.
pub async fn run(
    listener: TcpListener,
    shared: Shared,
    tls: Option<TlsAcceptor>,
    tracker: TaskTracker,
) {
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    loop {
        let Some((tcp, peer)) =
            super::transport::next_connection(&listener, &shared.shutdown).await
        else {
            return;
        };
        let admission = match shared
            .service
            .admit(peer, sensegate_core::Frontend::Native, now_us())
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection refused");
                if tls.is_none()
                    && let Ok(permit) = refusals.clone().try_acquire_owned()
                {
                    tracker.spawn(async move {
                        refuse(tcp, e).await;
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        let fut = async move {
            let started = Instant::now();
            let Some(transport) =
                super::transport::accept(tcp, tls, &admission, &shared.service).await
            else {
                return;
            };
            connection::run(shared, admission, transport, started).await;
        };
        tracker.spawn(fut);
    }
}

async fn refuse(mut tcp: TcpStream, e: AdmitError) {
    let envelope = wire::error_envelope(0, &ProtocolError::Refused(e));
    let mut out = BytesMut::new();
    if frame::encode_message(&envelope, sensegate_proto::FrameLimit::DEFAULT, &mut out).is_ok() {
        let _ = timeout(REFUSAL_TIMEOUT, async {
            tcp.write_all(&out).await?;
            tcp.shutdown().await
        })
        .await;
    }
}
