//! The MQTT connection task: a thin loop around a [`Session`].
//!
//! It reads bytes, cuts packets with the sans-IO decoder, hands each to the
//! session and writes what comes back; it drains the subscriber's queue
//! into PUBLISH packets; and it keeps one timer, set for the hello deadline
//! (CONNECT within `limits.auth_timeout_ms` of the accept), the time a
//! started packet has to finish (`limits.frame_timeout_ms`), or the
//! client's keep alive (one and a half periods without a packet). The idle
//! timeout is the registry's reaper's, from the stamp taken per packet.
//!
//! Publishes: every whole PUBLISH in the buffer is checked by the session
//! and collected, up to `mqtt.receive_maximum` (and `limits.max_push_batch`)
//! of them; the accepted readings are committed together, and only then
//! are the PUBACKs written, in order. So a PUBACK means durable, and a
//! client that pipelines QoS 1 publishes gets one group commit for them.
//!
//! Memory: the read buffer grows only with bytes received and is released
//! whenever it holds no partial packet. A packet's size is checked against
//! the cap in force as soon as its header is in; one larger than a read
//! chunk is reserved from the daemon's in-flight budget before its body is
//! waited for. What is written is reserved from the same budget while it
//! is written, under `limits.write_timeout_ms`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sensegate_core::{Admission, Delivery, Subscriber};
use sensegate_mqtt::{Decoder, Packet};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::MqttConfig;
use super::session::{Publish, Session, State, Step};
use crate::inflight::{InflightBudget, InflightPermit};
use crate::native::transport::Transport;
use crate::service::Service;
use crate::stats::Limit;

/// Read reservation when the socket is readable.
const READ_CHUNK: usize = 4096;
/// How long a last packet may take to leave before the connection is
/// dropped anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a delivery tries again for room in the global budget.
const RESERVE_RETRY: Duration = Duration::from_millis(10);
/// An encoded reading beyond its sensor name: fixed header, topic prefix,
/// a JSON payload.
const READING_OVERHEAD: usize = 128;

/// Everything an MQTT connection task needs from the daemon.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The service core.
    pub service: Arc<Service>,
    /// The global in-flight budget (shared with the native front end).
    pub inflight: Arc<InflightBudget>,
    /// The `[mqtt]` section.
    pub config: MqttConfig,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
}

/// Why the loop ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Error,
    Timeout,
    Stopped,
}

struct ConnectionTask {
    shared: Shared,
    session: Session,
    transport: Transport,
    decoder: Decoder,
    inbuf: BytesMut,
    out: BytesMut,
    /// Reservation for a large packet whose header arrived.
    packet_permit: Option<InflightPermit>,
    /// When the first byte of the packet in progress arrived.
    packet_started: Option<Instant>,
    /// When the last whole packet arrived (the keep alive counts from it).
    last_packet: Instant,
    accepted: Instant,
    /// Publishes checked and waiting for their commit.
    batch: Vec<Publish>,
}

/// Runs one admitted connection to its end.
pub async fn run(shared: Shared, admission: Admission, transport: Transport, accepted: Instant) {
    let connection = admission.connection().clone();
    let mut conn = Box::new(ConnectionTask {
        decoder: Decoder::new(shared.config.codec),
        session: Session::new(connection.clone(), shared.config),
        shared,
        transport,
        inbuf: BytesMut::new(),
        out: BytesMut::new(),
        packet_permit: None,
        packet_started: None,
        last_packet: accepted,
        accepted,
        batch: Vec::new(),
    });
    let end = conn.serve().await;
    tracing::debug!(conn_id = connection.id, peer = %connection.peer, ?end, "mqtt connection ended");
    conn.shared.service.disconnected(&connection);
    conn.transport.shutdown().await;
    drop(admission);
}

impl ConnectionTask {
    fn service(&self) -> &Service {
        &self.shared.service
    }

    fn hit(&self, limit: Limit) {
        self.service().counters().limits.hit(limit);
    }

    /// The hello deadline, the end of the packet in progress, or the keep
    /// alive, whichever comes first.
    fn deadline(&self) -> Option<Instant> {
        let limits = self.service().limits();
        let hello = (self.session.state() == State::ExpectConnect)
            .then(|| self.accepted + self.session.connection().auth_deadline(limits.auth_timeout));
        let packet = self.packet_started.map(|t| t + limits.frame_timeout);
        let keep_alive = (self.session.state() == State::Serving && self.session.keep_alive() > 0)
            .then(|| {
                self.last_packet
                    + Duration::from_millis(u64::from(self.session.keep_alive()) * 1500)
            });
        [hello, packet, keep_alive].into_iter().flatten().min()
    }

    async fn serve(&mut self) -> End {
        let connection = self.session.connection().clone();
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        loop {
            let subscriber = self.session.subscriber().cloned();
            let max_batch = self.max_delivery();
            match (self.deadline(), timer.as_mut()) {
                (Some(d), Some(t)) => t.as_mut().reset(d),
                (Some(d), None) => timer = Some(Box::pin(sleep_until(d))),
                (None, _) => timer = None,
            }
            tokio::select! {
                biased;
                reason = connection.stopped() => {
                    self.session.on_stop(reason, &mut self.out);
                    self.farewell().await;
                    return End::Stopped;
                }
                read = self.transport.read_some(&mut self.inbuf, READ_CHUNK) => {
                    match read {
                        Ok(0) | Err(_) => return End::Closed,
                        Ok(_) => {}
                    }
                    if let Some(end) = Box::pin(self.handle_input()).await {
                        return end;
                    }
                }
                delivery = next_delivery(subscriber.as_deref(), max_batch), if subscriber.is_some() => {
                    if let Some(end) = Box::pin(self.deliver(delivery)).await {
                        return end;
                    }
                }
                () = wait(timer.as_mut()), if timer.is_some() => {
                    return Box::pin(self.timed_out()).await;
                }
            }
        }
    }

    fn max_delivery(&self) -> usize {
        let l = self.service().limits();
        let per_reading = l.message.max_name_bytes + READING_OVERHEAD;
        (l.inflight_bytes_per_connection / per_reading).clamp(1, l.message.max_readings)
    }

    /// The most publishes committed in one batch.
    fn max_publish_batch(&self) -> usize {
        usize::from(self.shared.config.receive_maximum)
            .min(self.service().limits().max_push_batch)
            .max(1)
    }

    /// Cuts and handles every whole packet in the buffer.
    async fn handle_input(&mut self) -> Option<End> {
        let now = Instant::now();
        loop {
            if self.packet_started.is_none() && !self.inbuf.is_empty() {
                self.packet_started = Some(now);
            }
            if let Some(end) = self.admit_packet().await {
                return Some(end);
            }
            let buffered = self.inbuf.len();
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(packet)) => {
                    self.packet_permit = None;
                    self.packet_started = None;
                    self.last_packet = now;
                    let connection = self.session.connection().clone();
                    connection.touch(&self.service().clock());
                    connection.count_in(buffered - self.inbuf.len());
                    if !matches!(packet, Packet::Publish(_))
                        && let Some(end) = self.commit_batch().await
                    {
                        return Some(end);
                    }
                    let service = self.shared.service.clone();
                    match self.session.on_packet(&service, packet, now, &mut self.out) {
                        Step::Continue => {}
                        Step::Close => {
                            self.farewell().await;
                            return Some(End::Closed);
                        }
                        Step::Publish(p) => {
                            self.batch.push(p);
                            if self.batch.len() >= self.max_publish_batch()
                                && let Some(end) = self.commit_batch().await
                            {
                                return Some(end);
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, sensegate_mqtt::DecodeError::TooLarge { .. }) {
                        self.hit(Limit::FrameSize);
                    }
                    tracing::debug!(conn_id = self.session.connection().id, error = %e, "mqtt packet refused");
                    // What was accepted before the bad packet is kept and
                    // acknowledged first.
                    if let Some(end) = self.commit_batch().await {
                        return Some(end);
                    }
                    let asked = self.decoder.reply_version();
                    self.session.on_decode_error(&e, asked, &mut self.out);
                    self.farewell().await;
                    return Some(End::Error);
                }
            }
        }
        if let Some(end) = self.commit_batch().await {
            return Some(end);
        }
        if self.inbuf.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.inbuf = BytesMut::new();
        }
        self.flush(false).await
    }

    /// Once a packet's header is in: a packet larger than a read chunk is
    /// reserved from the in-flight budget before its body is waited for.
    /// (The decoder has checked it against the packet cap already.)
    async fn admit_packet(&mut self) -> Option<End> {
        if self.packet_permit.is_some() {
            return None;
        }
        // A bad header is left to `decode`, which reports it.
        let Ok(Some(needed)) = self.decoder.bytes_needed(&self.inbuf) else {
            return None;
        };
        let total = needed + self.inbuf.len();
        if needed == 0 || total <= READ_CHUNK {
            return None;
        }
        if total > self.service().limits().inflight_bytes_per_connection {
            self.hit(Limit::Inflight);
        } else if let Some(p) = self.shared.inflight.try_reserve(total) {
            self.packet_permit = Some(p);
            return None;
        } else {
            self.hit(Limit::Inflight);
        }
        self.session.on_decode_error(
            &sensegate_mqtt::DecodeError::TooLarge {
                len: total,
                max: READ_CHUNK,
            },
            self.decoder.reply_version(),
            &mut self.out,
        );
        self.farewell().await;
        Some(End::Error)
    }

    /// Commits the accepted readings of the publishes collected, then
    /// writes their PUBACKs in order.
    async fn commit_batch(&mut self) -> Option<End> {
        if self.batch.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.batch);
        let readings: Vec<_> = batch
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok().cloned())
            .collect();
        let service = self.shared.service.clone();
        let connection = self.session.connection().clone();
        let committed = if readings.is_empty() {
            Ok(())
        } else {
            tokio::select! {
                r = Box::pin(service.commit_push(readings)) => r.map(|_| ()),
                reason = connection.stopped() => {
                    self.session.on_stop(reason, &mut self.out);
                    self.farewell().await;
                    return Some(End::Stopped);
                }
            }
        };
        if !self
            .session
            .acknowledge(&service, &batch, committed, &mut self.out)
        {
            return Some(End::Error);
        }
        self.flush(false).await
    }

    async fn deliver(&mut self, delivery: Delivery) -> Option<End> {
        match delivery {
            Delivery::Lagged => {
                self.session
                    .on_stop(sensegate_core::StopReason::Idle, &mut self.out);
                self.farewell().await;
                Some(End::Stopped)
            }
            Delivery::Batch { readings, .. } => {
                let n = self.session.deliver(&readings, &mut self.out);
                drop(readings);
                if n == 0 {
                    return None;
                }
                self.flush(true).await
            }
        }
    }

    /// Writes what the session wrote, reserved from the global budget while
    /// it is written (`wait`: a delivery waits for room, up to the write
    /// timeout; anything else is refused at once), bounded by
    /// `limits.write_timeout_ms`.
    async fn flush(&mut self, wait: bool) -> Option<End> {
        if self.out.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.out);
        let write_timeout = self.service().limits().write_timeout;
        let started = Instant::now();
        let permit = loop {
            if let Some(p) = self.shared.inflight.reserve_for(None, out.len()) {
                break p;
            }
            self.hit(Limit::Inflight);
            if !wait || started.elapsed() >= write_timeout {
                return Some(End::Error);
            }
            tokio::time::sleep(RESERVE_RETRY).await;
        };
        let connection = self.session.connection().clone();
        let outcome = tokio::select! {
            r = timeout(write_timeout, self.transport.write_all(&out)) => match r {
                Ok(Ok(())) => {
                    connection.count_out(1, out.len());
                    None
                }
                Ok(Err(_)) => Some(End::Error),
                Err(_) => {
                    self.hit(Limit::SlowReader);
                    Some(End::Error)
                }
            },
            _ = connection.stopped() => Some(End::Stopped),
        };
        drop(permit);
        outcome
    }

    /// Writes what is left, briefly, before closing.
    async fn farewell(&mut self) {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let _ = timeout(FAREWELL_TIMEOUT, self.transport.write_all(&out)).await;
        }
    }

    async fn timed_out(&mut self) -> End {
        let now = Instant::now();
        match self.session.state() {
            State::ExpectConnect => self.hit(Limit::AuthTimeout),
            _ if self
                .packet_started
                .is_some_and(|t| t + self.service().limits().frame_timeout <= now) =>
            {
                self.hit(Limit::FrameTimeout);
                self.session.on_decode_error(
                    &sensegate_mqtt::DecodeError::Truncated { field: "packet" },
                    Some(self.session.version()),
                    &mut self.out,
                );
            }
            _ => {
                self.hit(Limit::IdleTimeout);
                self.session.on_keep_alive_expired(&mut self.out);
            }
        }
        self.farewell().await;
        End::Timeout
    }
}

async fn wait(timer: Option<&mut Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn next_delivery(subscriber: Option<&Subscriber>, max: usize) -> Delivery {
    match subscriber {
        Some(s) => s.next_batch(max).await,
        None => std::future::pending().await,
    }
}
