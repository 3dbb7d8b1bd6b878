//! The connection task: a thin loop around a [`Session`].
//!
//! It reads bytes, cuts frames with the sans-IO decoder, hands each payload
//! to the session and writes what comes back; it also drains the
//! subscriber's queue into reading batches and keeps one timer, set for the
//! hello deadline, the time a started frame has to finish, or the quiet time
//! after which an idle connection is parked ([`crate::parking`]). The idle
//! timeout is the reaper's (`Registry::reap_idle`), from the stamp taken per
//! frame.
//!
//! Memory: the read buffer is released whenever it holds no partial frame,
//! and the write buffer after every write, so an idle connection holds
//! neither. A frame's declared length is checked against the per-connection
//! and global in-flight caps as soon as its header arrives, before any of its
//! payload is buffered. Replies to pipelined requests are written once they
//! pass `limits.reply_bytes_per_connection`, before the next frame is
//! decoded, so a peer that sends many requests and reads nothing holds at
//! most that much (plus one reply) until `limits.write_timeout_ms` cuts it
//! off. Each reply is reserved from the global budget as its token's (a
//! token's share is `limits.inflight_bytes_per_token`); one that does not fit
//! is answered `OVERLOADED` instead, and a reading batch waits for room, so
//! a full budget never closes a connection that did not cause it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use sensegate_proto::FrameDecoder;
use sensegate_proto::frame::{self, HEADER_LEN};
use sensegate_proto::v1::{self, ErrorCode};
use std::pin::Pin;

use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::session::{Session, State, Step};
use super::transport::Transport;
use super::wire::{self, ProtocolError};
use crate::inflight::{InflightBudget, InflightPermit, Reservation};
use crate::parking::{Parked, ParkedTask, Parking};
use crate::service::Service;
use crate::stats::Limit;
use sensegate_core::Admission;
use sensegate_core::{Delivery, Subscriber};

/// Read reservation when the socket is readable.
const READ_CHUNK: usize = 4096;
/// Largest read reservation for a large frame in progress.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// How long a goodbye or error frame may take to leave before the
/// connection is dropped anyway.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a hello beyond its token and client name (tags, lengths,
/// version, request id), rounded up.
const HELLO_OVERHEAD: usize = 64;
/// Upper bound of one encoded reading beyond its sensor name.
const READING_OVERHEAD: usize = 32;
/// How often a reading batch tries again for room in the global budget.
const RESERVE_RETRY: Duration = Duration::from_millis(10);

/// What [`ConnectionTask::send`] does when the global budget has no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserve {
    /// Answer the request `OVERLOADED` instead.
    OrRefuse,
    /// Wait for room, up to the write timeout (reading batches).
    OrWait,
}

/// Everything a connection task needs from the daemon.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The service core.
    pub service: Arc<Service>,
    /// The global in-flight budget.
    pub inflight: Arc<InflightBudget>,
    /// Cancelled when the daemon shuts down.
    pub shutdown: CancellationToken,
    /// Where idle plain-TCP connections wait without a task, and after how
    /// much quiet; `None` keeps every connection a task.
    pub parking: Option<Parking>,
    /// The daemon's tasks: a parked connection holds a token of it, so a
    /// shutdown drain waits for it to say goodbye.
    pub tracker: TaskTracker,
}

impl ParkedTask for ConnectionTask {
    fn stop_requested(&self) -> bool {
        // Shutdown included: the daemon stops every connection as it cancels
        // its token (`Daemon::shutdown` and its `Drop`).
        self.session.connection().stop_requested()
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
/// carries on where it left off.
async fn resume(stream: std::net::TcpStream, mut conn: Box<ConnectionTask>) {
    let Some((admission, drain)) = conn.parked_with.take() else {
        return;
    };
    drop(drain);
    match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => {
            conn.transport = Transport::Tcp(s);
            drive(conn, admission).await;
        }
        Err(e) => {
            tracing::debug!(error = %e, "a parked connection could not be resumed");
            conn.shared.service.disconnected(admission.connection());
        }
    }
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
    shared: Shared,
    session: Session,
    transport: Transport,
    decoder: FrameDecoder,
    inbuf: BytesMut,
    /// Reservation for the frame whose header arrived.
    frame_permit: Option<InflightPermit>,
    /// When the first byte of the frame in progress arrived.
    frame_started: Option<Instant>,
    /// When the connection was accepted: the hello deadline counts from it.
    /// (Activity after the hello is stamped in the registry for the reaper.)
    accepted: Instant,
    replies: Vec<v1::Envelope>,
    /// The last hand-over to the parker failed (its queue was full).
    park_failed: bool,
    /// While parked: its place in the registry, and a token that keeps the
    /// shutdown drain waiting for it.
    parked_with: Option<(Admission, TaskTrackerToken)>,
}

/// Runs one admitted connection to its end.
pub async fn run(shared: Shared, admission: Admission, transport: Transport, accepted: Instant) {
    let connection = admission.connection().clone();
    let conn = Box::new(ConnectionTask {
        decoder: FrameDecoder::new(shared.service.limits().frame),
        session: Session::new(connection),
        shared,
        transport,
        inbuf: BytesMut::new(),
        frame_permit: None,
        frame_started: None,
        accepted,
        replies: Vec::new(),
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
            Err((c, a)) => {
                (conn, admission) = (c, a);
            }
        }
    };
    tracing::debug!(conn_id = connection.id, peer = %connection.peer, ?end, "connection ended");
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
    if !matches!(conn.transport, Transport::Tcp(_)) {
        // Only plain TCP parks (the loop never asks otherwise).
        return Err((conn, admission));
    }
    let Transport::Tcp(stream) = std::mem::replace(&mut conn.transport, Transport::Parked) else {
        return Err((conn, admission));
    };
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            // The socket is gone with the error; the connection ends.
            tracing::debug!(error = %e, "could not park a connection");
            return Err((conn, admission));
        }
    };
    conn.parked_with = Some((admission, conn.shared.tracker.token()));
    conn.park_failed = false;
    let (stream, back) = match parker.park(stream, conn as Parked) {
        Ok(()) => return Ok(()),
        Err(back) => back,
    };
    // Given back (the parker's queue was full): the same task carries on.
    // Only a native task is handed over here, so the downcast holds; were
    // it ever not to, dropping what came back closes the connection.
    let Ok(mut conn) = back.into_any().downcast::<ConnectionTask>() else {
        return Ok(());
    };
    let Some((admission, _drain)) = conn.parked_with.take() else {
        return Ok(());
    };
    if let Ok(s) = tokio::net::TcpStream::from_std(stream) {
        conn.transport = Transport::Tcp(s);
    }
    // Not again at once: after the usual quiet time.
    conn.park_failed = true;
    Err((conn, admission))
}

impl ConnectionTask {
    fn limits(&self) -> &crate::config::Limits {
        self.shared.service.limits()
    }

    fn hit(&self, limit: Limit) {
        self.shared.service.counters().limits.hit(limit);
    }

    /// The hello deadline, or the end of the frame in progress. An
    /// authenticated connection between frames has neither: its idle
    /// timeout is enforced by the daemon's reaper from `last_active`, and
    /// its only timer is the one that parks it (a parked connection holds
    /// none).
    fn deadline(&self) -> Option<Instant> {
        let connection = self.session.connection();
        let hello = self
            .session
            .hello_timeout(&self.shared.service)
            .map(|t| self.accepted + connection.auth_deadline(t));
        let frame = self.frame_started.map(|t| t + self.limits().frame_timeout);
        match (hello, frame) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long this connection may stay quiet before it is parked, when it
    /// could be parked now: plain TCP, authenticated, not subscribed, no
    /// partial frame, nothing to send. (A hello or a frame in progress has
    /// its own deadline instead.) Bytes already waiting are read before the
    /// timer is looked at, so a peer that sent more is served first.
    fn park_after(&self) -> Option<Duration> {
        let (parker, after) = self.shared.parking.as_ref()?;
        // Cheap tests first: this runs once per loop iteration. (A stop or a
        // shutdown needs no test here: the loop looks at `stopped()` before
        // its timer.)
        let idle = matches!(self.transport, Transport::Tcp(_))
            && matches!(self.session.state(), State::Serving(_))
            && self.session.subscriber().is_none()
            && self.inbuf.is_empty()
            && self.frame_started.is_none()
            && self.replies.is_empty()
            && !parker.is_closed();
        // A connection that has only said hello parks at once: most peers
        // that open and then sit idle never hold a task for long, so a burst
        // of them does not leave the heap at its high-water mark. After
        // that, only quiet connections park, so a busy client does not pay
        // for a park and a wake-up per request.
        let said_only_hello =
            !self.park_failed && self.session.connection().frames_in.load(Relaxed) <= 1;
        idle.then_some(if said_only_hello {
            Duration::ZERO
        } else {
            *after
        })
    }

    /// The loop. Only the wait itself lives in this future: every handler
    /// runs in a boxed future of its own, so what an idle connection's task
    /// holds is just the select below (see `docs/performance.md`).
    async fn serve(&mut self) -> End {
        let connection = self.session.connection().clone();
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        loop {
            let subscriber = self.session.subscriber().cloned();
            let max_batch = self.max_batch();
            let chunk = self.read_chunk();
            // What the timer is set for is decided here, once: when it
            // fires, the connection parks or times out accordingly.
            let park = self.park_after();
            let deadline =
                park.map_or_else(|| self.deadline(), |after| Some(Instant::now() + after));
            match (deadline, timer.as_mut()) {
                (Some(d), Some(t)) => t.as_mut().reset(d),
                (Some(d), None) => timer = Some(Box::pin(sleep_until(d))),
                (None, _) => timer = None,
            }
            tokio::select! {
                biased;
                reason = connection.stopped() => {
                    Box::pin(self.farewell(wire::goodbye_envelope(reason.message()))).await;
                    return End::Stopped;
                }
                read = self.transport.read_some(&mut self.inbuf, chunk) => {
                    match read {
                        Ok(0) => return Box::pin(self.ended_by_peer()).await,
                        Err(_) => return End::Closed,
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
                    if park.is_some() {
                        return End::Park;
                    }
                    return Box::pin(self.timed_out()).await;
                }
            }
        }
    }

    fn read_chunk(&self) -> usize {
        self.decoder
            .bytes_needed(&self.inbuf)
            .map_or(READ_CHUNK, |n| n.clamp(READ_CHUNK, MAX_READ_CHUNK))
    }

    fn max_batch(&self) -> usize {
        let l = self.limits();
        let per_reading = l.message.max_name_bytes + READING_OVERHEAD;
        (l.inflight_bytes_per_connection / per_reading).clamp(1, l.message.max_readings)
    }

    /// Cuts and handles every whole frame in the buffer.
    async fn handle_input(&mut self) -> Option<End> {
        let now = Instant::now();
        // Encoded size of the replies waiting (kept here, not in the
        // connection: every flush empties them).
        let mut unwritten = 0usize;
        loop {
            if self.frame_started.is_none() && !self.inbuf.is_empty() {
                self.frame_started = Some(now);
            }
            if let Some(error) = self.admit_frame() {
                self.farewell(error).await;
                return Some(End::Error);
            }
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(frame)) => {
                    self.frame_permit = None;
                    self.frame_started = None;
                    self.session
                        .connection()
                        .touch(&self.shared.service.clock());
                    let before = self.replies.len();
                    let step = self.session.on_frame(
                        &self.shared.service,
                        frame.payload(),
                        now,
                        &mut self.replies,
                    );
                    unwritten += self.replies[before..]
                        .iter()
                        .map(prost::Message::encoded_len)
                        .sum::<usize>();
                    match step {
                        Step::Continue => {
                            // Pipelined requests: their replies leave once
                            // they pass the cap, before the next frame is
                            // looked at; and a buffer of many small frames
                            // gives the worker back now and then.
                            if unwritten >= self.limits().reply_bytes_per_connection {
                                unwritten = 0;
                                if let Some(end) = self.flush().await {
                                    return Some(end);
                                }
                            }
                            tokio::task::coop::consume_budget().await;
                        }
                        Step::Close => {
                            let replies = std::mem::take(&mut self.replies);
                            for r in replies {
                                self.farewell(r).await;
                            }
                            return Some(End::Closed);
                        }
                        Step::Await(pending) => {
                            // A push waits for its commit, a history query
                            // for the store: this connection reads nothing
                            // meanwhile, so each has at most one in flight,
                            // and its reply leaves before the next frame is
                            // looked at (pipelined queries cannot pile up
                            // replies). A kick, revocation or shutdown ends
                            // a query at once, a commit once it is done.
                            let service = self.shared.service.clone();
                            let connection = self.session.connection().clone();
                            let reply = if pending.is_commit() {
                                // Awaited to its end (`commit_push` bounds
                                // it): a commit dropped half way could land
                                // in history unpublished. A stop meanwhile
                                // is seen by the loop right after.
                                Box::pin(pending.run(&service)).await
                            } else {
                                tokio::select! {
                                    reply = Box::pin(pending.run(&service)) => reply,
                                    reason = connection.stopped() => {
                                        self.farewell(wire::goodbye_envelope(reason.message())).await;
                                        return Some(End::Stopped);
                                    }
                                }
                            };
                            self.replies.push(reply);
                            unwritten = 0;
                            if let Some(end) = self.flush().await {
                                return Some(end);
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if e.code() == ErrorCode::FrameTooLarge {
                        self.hit(Limit::FrameSize);
                    }
                    let envelope = wire::error_envelope(0, &ProtocolError::Frame(e));
                    self.farewell(envelope).await;
                    return Some(End::Error);
                }
            }
        }
        if self.inbuf.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.inbuf = BytesMut::new();
        }
        if self.replies.is_empty() {
            return None;
        }
        self.flush().await
    }

    /// Writes the replies waiting.
    async fn flush(&mut self) -> Option<End> {
        let replies = std::mem::take(&mut self.replies);
        self.send(&replies, Reserve::OrRefuse).await
    }

    /// The peer closed its side: a frame cut short gets its error.
    async fn ended_by_peer(&mut self) -> End {
        match self.decoder.decode_eof(&mut self.inbuf) {
            Err(e) => {
                let envelope = wire::error_envelope(0, &ProtocolError::Frame(e));
                self.farewell(envelope).await;
                End::Error
            }
            Ok(_) => End::Closed,
        }
    }

    /// Checks a frame's declared length against the in-flight caps once its
    /// header is in; returns the error to send when it does not fit.
    fn admit_frame(&mut self) -> Option<v1::Envelope> {
        if self.frame_permit.is_some() {
            return None;
        }
        // A bad header is left to `decode`, which reports it.
        let Ok(Some(declared)) = self.decoder.declared_len(&self.inbuf) else {
            return None;
        };
        // Before the hello is accepted a peer may send only a hello, which
        // is small: it cannot make the daemon hold a large frame for it.
        let message = &self.limits().message;
        let max_hello = message.max_token_bytes + message.max_text_bytes + HELLO_OVERHEAD;
        if matches!(self.session.state(), State::ExpectHello) && declared > max_hello {
            self.hit(Limit::FrameSize);
            return Some(wire::error_envelope(0, &ProtocolError::HelloTooLarge));
        }
        // The payload counts against the connection's cap (so the default
        // cap admits one frame of the default maximum size); header and
        // payload count against the global budget.
        if declared > self.limits().inflight_bytes_per_connection {
            self.hit(Limit::Inflight);
            return Some(wire::error_envelope(0, &ProtocolError::ConnectionInflight));
        }
        if let Some(p) = self.shared.inflight.try_reserve(declared + HEADER_LEN) {
            self.frame_permit = Some(p);
            None
        } else {
            self.hit(Limit::Inflight);
            Some(wire::error_envelope(0, &ProtocolError::Busy))
        }
    }

    async fn deliver(&mut self, delivery: Delivery) -> Option<End> {
        match delivery {
            Delivery::Lagged => {
                self.farewell(wire::goodbye_envelope("subscriber fell behind"))
                    .await;
                Some(End::Stopped)
            }
            Delivery::Batch { readings, dropped } => {
                let envelope = wire::batch_envelope(&readings, dropped);
                drop(readings);
                self.send(std::slice::from_ref(&envelope), Reserve::OrWait)
                    .await
            }
        }
    }

    /// Reserves `bytes` of the global budget for a reply: as the
    /// connection's token once it has one, within the token's share.
    /// (Reading batches and frames being assembled reserve from the budget
    /// alone: the hub's queues and the per-connection cap bound them.)
    fn reserve(&self, bytes: usize, reserve: Reserve) -> Option<Reservation> {
        let principal = match reserve {
            Reserve::OrRefuse => self.session.connection().principal(),
            Reserve::OrWait => None,
        };
        let owner = principal.as_deref().map(|p| p.token_id.as_str());
        self.shared.inflight.reserve_for(owner, bytes)
    }

    /// Encodes and writes envelopes, each reserved from the global budget
    /// while it is written, bounded by `limits.write_timeout_ms` so a peer
    /// that stops reading cannot hold the task (or the bytes) for long.
    async fn send(&mut self, envelopes: &[v1::Envelope], reserve: Reserve) -> Option<End> {
        let mut out = BytesMut::new();
        let mut permits = Vec::with_capacity(envelopes.len());
        let limit = self.limits().frame;
        let write_timeout = self.limits().write_timeout;
        let started = Instant::now();
        for e in envelopes {
            let len = prost::Message::encoded_len(e) + HEADER_LEN;
            let permit = loop {
                if let Some(p) = self.reserve(len, reserve) {
                    break Some(p);
                }
                self.hit(Limit::Inflight);
                // A reading batch waits for room: dropping it would lose
                // readings. A reply is refused on its own.
                if reserve == Reserve::OrRefuse || started.elapsed() >= write_timeout {
                    break None;
                }
                tokio::time::sleep(RESERVE_RETRY).await;
            };
            let Some(permit) = permit else {
                if reserve == Reserve::OrWait {
                    return Some(End::Error);
                }
                let busy = wire::error_envelope(e.request_id, &ProtocolError::Busy);
                if frame::encode_message(&busy, limit, &mut out).is_err() {
                    return Some(End::Error);
                }
                continue;
            };
            permits.push(permit);
            if frame::encode_message(e, limit, &mut out).is_err() {
                let too_big = wire::error_envelope(e.request_id, &ProtocolError::ReplyTooLarge);
                if frame::encode_message(&too_big, limit, &mut out).is_err() {
                    return Some(End::Error);
                }
            }
        }
        let connection = self.session.connection().clone();
        let outcome = tokio::select! {
            r = timeout(write_timeout, self.transport.write_all(&out)) => match r {
                Ok(Ok(())) => {
                    connection.count_out(envelopes.len() as u64, out.len());
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
        drop(permits);
        outcome
    }

    /// Sends one last frame, briefly, before closing.
    async fn farewell(&mut self, envelope: v1::Envelope) {
        let mut out = BytesMut::new();
        if frame::encode_message(&envelope, self.limits().frame, &mut out).is_ok() {
            let _ = timeout(FAREWELL_TIMEOUT, self.transport.write_all(&out)).await;
        }
    }

    async fn timed_out(&mut self) -> End {
        let envelope = if matches!(self.session.state(), State::ExpectHello) {
            self.hit(Limit::AuthTimeout);
            wire::error_envelope(0, &ProtocolError::NoHelloInTime)
        } else {
            self.hit(Limit::FrameTimeout);
            wire::error_envelope(0, &ProtocolError::FrameTimeout)
        };
        self.farewell(envelope).await;
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
