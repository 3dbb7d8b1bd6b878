//! The MQTT connection task: a thin loop around a [`Session`].
//!
//! It reads bytes, cuts packets with the sans-IO decoder, hands each to the
//! session and writes what comes back; it drains the subscriber's queue
//! into PUBLISH packets; and it keeps one timer, set for the hello deadline
//! (CONNECT within `limits.auth_timeout_ms` of the accept), the time a
//! started packet has to finish (`limits.frame_timeout_ms`), or the
//! client's keep alive (one and a half periods without a packet), or the
//! quiet time after which an idle plain-TCP connection is parked
//! ([`crate::parking`], shared with the native front end: no task while
//! parked; its keep alive is still watched). The idle timeout is the
//! registry's reaper's, from the stamp taken per packet.
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
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::MqttConfig;
use super::session::{Publish, Session, State, Step};
use crate::inflight::{InflightBudget, InflightPermit};
use crate::native::transport::Transport;
use crate::parking::{Parked, ParkedTask, Parking};
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
    /// Its codec caps, shared by every connection's decoder.
    pub codec: Arc<sensegate_mqtt::Limits>,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
    /// The daemon's parker and quiet time; `None` keeps every connection a
    /// task.
    pub parking: Option<Parking>,
    /// The daemon's tasks: a parked connection holds a token of it, so a
    /// shutdown drain waits for it.
    pub tracker: TaskTracker,
}

/// Whose share of the in-flight budget a write is reserved from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The connection's token (answers: acknowledgements, SUBACKs and the
    /// retained readings they bring).
    Token,
    /// The budget alone (deliveries: the hub's queues bound them).
    None,
}

/// Why the loop ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Error,
    Timeout,
    Stopped,
    /// Idle long enough to be parked.
    Park,
}

struct ConnectionTask {
    /// One per listener (a parked connection holds a pointer, not a copy).
    shared: Arc<Shared>,
    session: Session,
    transport: Transport,
    decoder: Decoder<Arc<sensegate_mqtt::Limits>>,
    inbuf: BytesMut,
    out: BytesMut,
    /// Reservation for a large packet whose header arrived.
    packet_permit: Option<InflightPermit>,
    /// When the first byte of the packet in progress arrived.
    packet_started: Option<Instant>,
    /// When the last whole packet arrived (the keep alive counts from it);
    /// until CONNECT, when the connection was accepted (the hello deadline
    /// counts from it).
    last_packet: Instant,
    /// The last hand-over to the parker failed (its queue was full).
    park_failed: bool,
    /// While parked: its place in the registry, a token that keeps the
    /// shutdown drain waiting, and when its keep alive runs out.
    parked_with: Option<ParkedWith>,
}

struct ParkedWith {
    admission: Admission,
    _drain: TaskTrackerToken,
    keep_alive_ends: Option<std::time::Instant>,
}

impl ParkedTask for ConnectionTask {
    fn stop_requested(&self) -> bool {
        self.session.connection().stop_requested()
            || self
                .parked_with
                .as_ref()
                .and_then(|p| p.keep_alive_ends)
                .is_some_and(|t| std::time::Instant::now() >= t)
    }

    fn resume(
        self: Box<Self>,
        stream: std::net::TcpStream,
        handle: &tokio::runtime::Handle,
        tracker: &TaskTracker,
    ) {
        tracker.spawn_on(resume(stream, self), handle);
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// Back from the parker: the socket goes back to the runtime and the loop
/// carries on (a keep alive that ran out while parked fires at once).
async fn resume(stream: std::net::TcpStream, mut conn: Box<ConnectionTask>) {
    let Some(parked) = conn.parked_with.take() else {
        return;
    };
    let admission = parked.admission;
    match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => {
            conn.transport = Transport::Tcp(s);
            drive(conn, admission).await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "a parked mqtt connection could not be resumed");
            conn.shared.service.disconnected(admission.connection());
        }
    }
}

/// Runs one admitted connection to its end.
pub async fn run(
    shared: Arc<Shared>,
    admission: Admission,
    transport: Transport,
    accepted: Instant,
) {
    let connection = admission.connection().clone();
    let conn = Box::new(ConnectionTask {
        decoder: Decoder::new(shared.codec.clone()),
        session: Session::new(connection.clone(), &shared.config),
        shared,
        transport,
        inbuf: BytesMut::new(),
        out: BytesMut::new(),
        packet_permit: None,
        packet_started: None,
        last_packet: accepted,
        park_failed: false,
        parked_with: None,
    });
    drive(conn, admission).await;
}

/// The loop, then the end: parked (the task ends, the parker holds the
/// connection), or closed.
async fn drive(mut conn: Box<ConnectionTask>, mut admission: Admission) {
    let connection = admission.connection().clone();
    let end = loop {
        let end = conn.serve().await;
        if end != End::Park {
            break end;
        }
        match park(conn, admission) {
            Ok(()) => return,
            Err((c, a)) => (conn, admission) = (c, a),
        }
    };
    tracing::debug!(conn_id = connection.id, peer = %connection.peer, ?end, "mqtt connection ended");
    conn.shared.service.disconnected(&connection);
    conn.transport.shutdown().await;
    drop(admission);
}

/// Hands an idle plain-TCP connection to the parker; gives it back when it
/// cannot be parked (the queue is full), to carry on as a task.
fn park(
    mut conn: Box<ConnectionTask>,
    admission: Admission,
) -> Result<(), (Box<ConnectionTask>, Admission)> {
    let Some((parker, _)) = conn.shared.parking.clone() else {
        return Err((conn, admission));
    };
    let Transport::Tcp(stream) = std::mem::replace(&mut conn.transport, Transport::Parked) else {
        return Err((conn, admission));
    };
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "could not park an mqtt connection");
            return Err((conn, admission));
        }
    };
    let keep_alive_ends = conn
        .keep_alive_deadline()
        .map(|d| std::time::Instant::now() + d.saturating_duration_since(Instant::now()));
    conn.parked_with = Some(ParkedWith {
        admission,
        _drain: conn.shared.tracker.token(),
        keep_alive_ends,
    });
    conn.park_failed = false;
    let (stream, back) = match parker.park(stream, conn as Parked) {
        Ok(()) => return Ok(()),
        Err(back) => back,
    };
    // Given back (the parker's queue was full): the same task carries on.
    // Only an MQTT task is handed over here, so the downcast holds; were it
    // ever not to, dropping what came back closes the connection.
    let Ok(mut conn) = back.into_any().downcast::<ConnectionTask>() else {
        return Ok(());
    };
    let Some(given_back) = conn.parked_with.take() else {
        return Ok(());
    };
    if let Ok(s) = tokio::net::TcpStream::from_std(stream) {
        conn.transport = Transport::Tcp(s);
    }
    conn.park_failed = true;
    Err((conn, given_back.admission))
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
        let hello = (self.session.state() == State::ExpectConnect).then(|| {
            self.last_packet + self.session.connection().auth_deadline(limits.auth_timeout)
        });
        let packet = self.packet_started.map(|t| t + limits.frame_timeout);
        [hello, packet, self.keep_alive_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// One and a half keep-alive periods after the last packet, once
    /// connected with a keep alive.
    fn keep_alive_deadline(&self) -> Option<Instant> {
        (self.session.state() == State::Serving && self.session.keep_alive() > 0).then(|| {
            self.last_packet + Duration::from_millis(u64::from(self.session.keep_alive()) * 1500)
        })
    }

    /// How long this connection may stay quiet before it is parked, when it
    /// could be parked now: plain TCP, connected, not subscribed, nothing
    /// half read, waiting to commit or to send. Just after its CONNECT it
    /// parks at once (most devices that connect and then sit idle never
    /// hold a task for long); after that, once quiet for the configured
    /// time.
    fn park_after(&self) -> Option<Duration> {
        let (parker, after) = self.shared.parking.as_ref()?;
        let idle = matches!(self.transport, Transport::Tcp(_))
            && self.session.state() == State::Serving
            && self.session.subscriber().is_none()
            && self.inbuf.is_empty()
            && self.packet_started.is_none()
            && self.out.is_empty()
            && !parker.is_closed();
        let said_only_connect = !self.park_failed
            && self
                .session
                .connection()
                .frames_in
                .load(std::sync::atomic::Ordering::Relaxed)
                <= 1;
        idle.then_some(if said_only_connect {
            Duration::ZERO
        } else {
            *after
        })
    }

    async fn serve(&mut self) -> End {
        let connection = self.session.connection().clone();
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        loop {
            let subscriber = self.session.subscriber().cloned();
            let max_batch = self.max_delivery();
            // What the timer is set for is decided here, once: when it
            // fires, the connection parks or times out accordingly. (The
            // keep alive comes first when it is nearer: a parked connection
            // is handed back at its end anyway.)
            let park = self.park_after();
            let deadline = match (park, self.deadline()) {
                (Some(after), d) => {
                    let at = Instant::now() + after;
                    Some(d.map_or(at, |d| d.min(at)))
                }
                (None, d) => d,
            };
            match (deadline, timer.as_mut()) {
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
                    if park.is_some() && self.deadline().is_none_or(|d| d > Instant::now()) {
                        return End::Park;
                    }
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

    /// Cuts and handles every whole packet in the buffer. What the session
    /// writes leaves once it passes `limits.reply_bytes_per_connection`,
    /// before the next packet is decoded, so a peer that sends many
    /// requests and reads nothing holds at most that much (plus one
    /// packet's answer) until `limits.write_timeout_ms` cuts it off.
    async fn handle_input(&mut self) -> Option<End> {
        // Publishes checked and waiting for their commit: always committed
        // (and acknowledged) before this returns.
        let mut batch = Vec::new();
        loop {
            let now = Instant::now();
            if self.packet_started.is_none() && !self.inbuf.is_empty() {
                self.packet_started = Some(now);
            }
            if !self.admit_packet() {
                // What was accepted before is kept and acknowledged first.
                if let Some(end) = self.commit_batch(&mut batch).await {
                    return Some(end);
                }
                self.session.on_overloaded(&mut self.out);
                self.farewell().await;
                return Some(End::Error);
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
                        && let Some(end) = self.commit_batch(&mut batch).await
                    {
                        return Some(end);
                    }
                    let shared = self.shared.clone();
                    match self.session.on_packet(
                        &shared.service,
                        &shared.config.mapper,
                        packet,
                        now,
                        &mut self.out,
                    ) {
                        Step::Continue => {}
                        Step::Close => {
                            self.farewell().await;
                            return Some(End::Closed);
                        }
                        Step::Publish(p) => {
                            batch.push(p);
                            if batch.len() >= self.max_publish_batch()
                                && let Some(end) = self.commit_batch(&mut batch).await
                            {
                                return Some(end);
                            }
                        }
                    }
                    if self.out.len() >= self.service().limits().reply_bytes_per_connection {
                        if let Some(end) = self.commit_batch(&mut batch).await {
                            return Some(end);
                        }
                        if let Some(end) = self.flush(Owner::Token).await {
                            return Some(end);
                        }
                    }
                    // A buffer of many small packets gives the worker back
                    // now and then.
                    tokio::task::coop::consume_budget().await;
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, sensegate_mqtt::DecodeError::TooLarge { .. }) {
                        self.hit(Limit::FrameSize);
                    }
                    tracing::debug!(conn_id = self.session.connection().id, error = %e, "mqtt packet refused");
                    // What was accepted before the bad packet is kept and
                    // acknowledged first.
                    if let Some(end) = self.commit_batch(&mut batch).await {
                        return Some(end);
                    }
                    let asked = self.decoder.reply_version();
                    self.session.on_decode_error(&e, asked, &mut self.out);
                    self.farewell().await;
                    return Some(End::Error);
                }
            }
        }
        if let Some(end) = self.commit_batch(&mut batch).await {
            return Some(end);
        }
        if self.inbuf.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.inbuf = BytesMut::new();
        }
        self.flush(Owner::Token).await
    }

    /// Once a packet's header is in: a packet larger than a read chunk is
    /// reserved from the in-flight budget before its body is waited for.
    /// (The decoder has checked it against the packet cap already.)
    /// Returns `false` when it does not fit.
    fn admit_packet(&mut self) -> bool {
        if self.packet_permit.is_some() {
            return true;
        }
        // A bad header is left to `decode`, which reports it.
        let Ok(Some(needed)) = self.decoder.bytes_needed(&self.inbuf) else {
            return true;
        };
        let total = needed + self.inbuf.len();
        if needed == 0 || total <= READ_CHUNK {
            return true;
        }
        if total <= self.service().limits().inflight_bytes_per_connection
            && let Some(p) = self.shared.inflight.try_reserve(total)
        {
            self.packet_permit = Some(p);
            return true;
        }
        self.hit(Limit::Inflight);
        false
    }

    /// Commits the accepted readings of the publishes collected, then
    /// writes their PUBACKs in order. The commit is awaited to its end
    /// (`Service::commit_push` bounds it), even if the connection is told
    /// to stop meanwhile: a commit dropped half way could land in history
    /// without being published.
    async fn commit_batch(&mut self, batch: &mut Vec<Publish>) -> Option<End> {
        if batch.is_empty() {
            return None;
        }
        let batch = std::mem::take(batch);
        let readings: Vec<_> = batch
            .iter()
            .filter_map(|p| p.outcome.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let service = self.shared.service.clone();
        let committed = if readings.is_empty() {
            Ok(())
        } else {
            Box::pin(service.commit_push(readings)).await.map(|_| ())
        };
        if !self
            .session
            .acknowledge(&service, &batch, committed, &mut self.out)
        {
            self.farewell().await;
            return Some(End::Error);
        }
        self.flush(Owner::Token).await
    }

    async fn deliver(&mut self, delivery: Delivery) -> Option<End> {
        match delivery {
            Delivery::Lagged => {
                self.session.on_fell_behind(&mut self.out);
                self.farewell().await;
                Some(End::Stopped)
            }
            Delivery::Batch { readings, .. } => {
                let n = self.session.deliver(&readings, &mut self.out);
                drop(readings);
                if n == 0 {
                    return None;
                }
                self.flush(Owner::None).await
            }
        }
    }

    /// Writes what the session wrote, reserved from the global budget while
    /// it is written: answers as the connection's token (within its share,
    /// `limits.inflight_bytes_per_token`), deliveries from the budget alone
    /// (the hub's queues bound them). Either waits for room rather than
    /// drop what it carries (a PUBACK for a committed reading must not be
    /// lost), and the whole write is bounded by `limits.write_timeout_ms`.
    async fn flush(&mut self, owner: Owner) -> Option<End> {
        if self.out.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.out);
        let write_timeout = self.service().limits().write_timeout;
        let started = Instant::now();
        let principal = match owner {
            Owner::Token => self.session.connection().principal(),
            Owner::None => None,
        };
        let token = principal.as_deref().map(|p| p.token_id.as_str());
        let permit = loop {
            if let Some(p) = self.shared.inflight.reserve_for(token, out.len()) {
                break p;
            }
            self.hit(Limit::Inflight);
            if started.elapsed() >= write_timeout {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parked MQTT connection holds besides its registry entry: its
    /// boxed task. The listener's state and the codec's caps are shared
    /// behind pointers, the session keeps the three config values it needs,
    /// and the publish batch lives only while input is handled (this was
    /// 696 bytes with copies of the section; it is 288).
    #[test]
    fn a_parked_connection_holds_a_small_task() {
        let size = size_of::<ConnectionTask>();
        assert!(size <= 320, "the connection task is {size} bytes");
    }
}
