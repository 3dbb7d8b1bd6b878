//! One native-protocol session as a state machine without I/O.
//!
//! [`Session::on_frame`] takes one frame's payload and the current time,
//! calls the service, and pushes the replies to send; the connection task
//! around it reads, writes and keeps the clocks. States are named for what
//! they wait for: [`State::ExpectHello`], then [`State::Serving`].
//!
//! Two kinds of error: a protocol error (a payload that is not an envelope,
//! a first frame that is not a hello, a bad token) gets one error frame and
//! the session ends; a request error (forbidden, not found, over a cap) gets
//! an error reply carrying the request id and the session goes on.

use std::sync::Arc;
use std::time::Duration;

use sensegate_core::time::Instant;

use sensegate_proto::v1::{self, envelope::Body};
use sensegate_proto::{PROTOCOL_VERSION, decode_envelope};

use super::wire::{self, ProtocolError, connection_info, error_envelope, reply, token_info};

use crate::auth::Role;
use crate::pattern::Pattern;
use crate::reading::{Quality, Reading};
use crate::service::{Caller, PushedReading, Service, ServiceError};
use sensegate_core::Connection;
use sensegate_core::Subscriber;

/// Where the session is.
#[derive(Debug)]
pub enum State {
    /// Waiting for the client's hello (within `limits.auth_timeout`).
    ExpectHello,
    /// Authenticated; serving requests. The principal lives in the
    /// registry's connection entry, not here, so it is held once.
    Serving(Serving),
    /// Ended; nothing more is read.
    Closed,
}

/// An authenticated session.
#[derive(Debug)]
pub struct Serving {
    subscriber: Option<Arc<Subscriber>>,
}

/// What the connection task does after a frame.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send the replies and keep reading.
    Continue,
    /// Send the replies, then close.
    Close,
    /// Run this work (it waits on the store), reply with its result, and
    /// keep reading. The session does no I/O itself: the connection task
    /// awaits [`Pending::run`].
    Await(Pending),
}

/// Work a request left for the connection task: it needs the store.
#[derive(Debug, PartialEq)]
pub struct Pending {
    request_id: u64,
    work: Work,
}

#[derive(Debug, PartialEq)]
enum Work {
    /// A checked push, acknowledged once committed.
    Commit(Vec<Reading>),
    /// A checked history query.
    History(crate::store::HistoryQuery),
}

impl Pending {
    const fn new(request_id: u64, work: Work) -> Self {
        Self { request_id, work }
    }

    /// Whether the work is a commit, which must run to its end once begun
    /// (dropped half way, it could land in history without being
    /// published); a query may be dropped.
    #[must_use]
    pub const fn is_commit(&self) -> bool {
        matches!(self.work, Work::Commit(_))
    }

    /// Does the work and returns the reply.
    pub async fn run(self, service: &Service) -> v1::Envelope {
        let result = match self.work {
            Work::Commit(readings) => service.commit_push(readings).await.map(|n| {
                Body::PushAck(v1::PushAck {
                    accepted: u32::try_from(n).unwrap_or(u32::MAX),
                })
            }),
            Work::History(query) => {
                let sensor = query.sensor.clone();
                service
                    .run_history(query)
                    .await
                    .map(|h| wire::history_reply(&sensor, &h))
            }
        };
        match result {
            Ok(body) => reply(self.request_id, body),
            Err(e) => service_error(self.request_id, e),
        }
    }
}

/// A session over one connection.
#[derive(Debug)]
pub struct Session {
    connection: Arc<Connection>,
    state: State,
}

fn service_error(request_id: u64, e: ServiceError) -> v1::Envelope {
    error_envelope(request_id, &ProtocolError::Service(e))
}

impl Session {
    /// A new session on an admitted connection.
    #[must_use]
    pub const fn new(connection: Arc<Connection>) -> Self {
        Self {
            connection,
            state: State::ExpectHello,
        }
    }

    /// The state.
    #[must_use]
    pub const fn state(&self) -> &State {
        &self.state
    }

    /// The connection.
    #[must_use]
    pub const fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// How long the peer has to send its hello, while the session waits
    /// for one. `None` once authenticated: the idle timeout of a serving
    /// session is enforced by the daemon's reaper
    /// ([`sensegate_core::Registry::reap_idle`]), not by a timer here.
    #[must_use]
    pub fn hello_timeout(&self, service: &Service) -> Option<Duration> {
        matches!(self.state, State::ExpectHello).then(|| service.limits().auth_timeout)
    }

    /// The subscriber, once the session subscribed.
    #[must_use]
    pub fn subscriber(&self) -> Option<&Arc<Subscriber>> {
        match &self.state {
            State::Serving(s) => s.subscriber.as_ref(),
            _ => None,
        }
    }

    /// Handles one frame's payload; pushes the replies onto `out`.
    pub fn on_frame(
        &mut self,
        service: &Service,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<v1::Envelope>,
    ) -> Step {
        self.connection
            .count_in(payload.len() + sensegate_proto::frame::HEADER_LEN);
        let envelope = match decode_envelope(payload, &service.limits().message) {
            Ok(e) => e,
            Err(e) => {
                out.push(error_envelope(0, &ProtocolError::Message(e)));
                self.state = State::Closed;
                return Step::Close;
            }
        };
        let id = envelope.request_id;
        let Some(body) = envelope.body else {
            out.push(error_envelope(id, &ProtocolError::NoBody));
            self.state = State::Closed;
            return Step::Close;
        };
        let peer = self.connection.peer;
        match &mut self.state {
            State::Closed => Step::Close,
            State::ExpectHello => {
                let step = self.hello(service, id, body, now, out);
                if step == Step::Close {
                    self.state = State::Closed;
                }
                step
            }
            State::Serving(serving) => {
                let connection = self.connection.clone();
                let Some(principal) = connection.principal() else {
                    self.state = State::Closed;
                    return Step::Close;
                };
                let caller = Caller {
                    principal: &principal,
                    peer,
                };
                let step = serving.request(service, &connection, caller, id, body, now, out);
                if step == Step::Close {
                    self.state = State::Closed;
                }
                step
            }
        }
    }

    fn hello(
        &mut self,
        service: &Service,
        id: u64,
        body: Body,
        now: Instant,
        out: &mut Vec<v1::Envelope>,
    ) -> Step {
        let Body::Hello(hello) = body else {
            out.push(error_envelope(id, &ProtocolError::HelloExpected));
            return Step::Close;
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            out.push(error_envelope(id, &ProtocolError::UnsupportedVersion));
            return Step::Close;
        }
        match service.sign_in(&hello.token, &self.connection, now) {
            Ok(principal) => {
                out.push(reply(
                    id,
                    wire::welcome(
                        &principal,
                        self.connection.id,
                        service.limits().frame.get(),
                        service.server_name(),
                    ),
                ));
                self.state = State::Serving(Serving { subscriber: None });
                Step::Continue
            }
            Err(e) => {
                out.push(service_error(id, e));
                Step::Close
            }
        }
    }
}

impl Serving {
    #[allow(
        clippy::too_many_arguments,
        reason = "the session's context, passed down once"
    )]
    fn request(
        &mut self,
        service: &Service,
        connection: &Connection,
        caller: Caller<'_>,
        id: u64,
        body: Body,
        now: Instant,
        out: &mut Vec<v1::Envelope>,
    ) -> Step {
        let result = match body {
            Body::Ping(p) => Ok(Body::Pong(v1::Pong { nonce: p.nonce })),
            Body::Goodbye(_) => return Step::Close,
            Body::Hello(_) => {
                out.push(error_envelope(id, &ProtocolError::AlreadyAuthenticated));
                return Step::Close;
            }
            Body::ListSensors(r) => list_sensors(service, caller, &r),
            Body::Latest(r) => service.latest(caller, &r.sensor).map(|reading| {
                Body::LatestReply(v1::LatestReply {
                    reading: Some(wire::reading(&reading)),
                })
            }),
            Body::Subscribe(r) => {
                let patterns: Vec<Pattern> = r.patterns.into_iter().map(Pattern::new).collect();
                service
                    .subscribe(caller, connection, &patterns)
                    .map(|(sub, active)| {
                        self.subscriber = Some(sub);
                        Body::Subscribed(v1::SubscribeReply {
                            active: u32::try_from(active).unwrap_or(u32::MAX),
                        })
                    })
            }
            Body::Unsubscribe(r) => {
                let patterns: Vec<Pattern> = r.patterns.into_iter().map(Pattern::new).collect();
                let active = self
                    .subscriber
                    .as_ref()
                    .map_or(0, |s| service.unsubscribe(connection, s, &patterns));
                Ok(Body::Unsubscribed(v1::UnsubscribeReply {
                    active: u32::try_from(active).unwrap_or(u32::MAX),
                }))
            }
            Body::History(r) => match history(service, caller, &r) {
                Ok(query) => return Step::Await(Pending::new(id, Work::History(query))),
                Err(e) => Err(e),
            },
            Body::Push(r) => match push(service, caller, r, now) {
                Ok(readings) => return Step::Await(Pending::new(id, Work::Commit(readings))),
                Err(e) => Err(e),
            },
            Body::CreateToken(r) => create_token(service, caller, &r),
            Body::ListTokens(r) => list_tokens(service, caller, &r),
            Body::RevokeToken(r) => service.revoke_token(caller, &r.id).map(|n| {
                Body::TokenRevoked(v1::RevokeTokenReply {
                    disconnected: u32::try_from(n).unwrap_or(u32::MAX),
                })
            }),
            Body::ListConnections(r) => list_connections(service, caller, r),
            Body::Kick(r) => service
                .kick(caller, r.id)
                .map(|()| Body::Kicked(v1::KickReply { found: true })),
            Body::Welcome(_)
            | Body::Error(_)
            | Body::Pong(_)
            | Body::Sensors(_)
            | Body::LatestReply(_)
            | Body::Subscribed(_)
            | Body::Unsubscribed(_)
            | Body::Readings(_)
            | Body::HistoryReply(_)
            | Body::PushAck(_)
            | Body::TokenCreated(_)
            | Body::Tokens(_)
            | Body::TokenRevoked(_)
            | Body::Connections(_)
            | Body::Kicked(_) => {
                out.push(error_envelope(id, &ProtocolError::ServerMessage));
                return Step::Close;
            }
        };
        out.push(match result {
            Ok(body) => reply(id, body),
            Err(e) => service_error(id, e),
        });
        Step::Continue
    }
}

fn list_tokens(
    service: &Service,
    caller: Caller<'_>,
    r: &v1::ListTokensRequest,
) -> Result<Body, ServiceError> {
    let after = (!r.after.is_empty()).then_some(r.after.as_str());
    let tokens = service.list_tokens(caller, after)?;
    let (tokens, more) = page(service, tokens.iter().map(token_info).collect());
    let next_after = if more {
        tokens.last().map(|t| t.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Body::Tokens(v1::ListTokensReply { tokens, next_after }))
}

fn list_connections(
    service: &Service,
    caller: Caller<'_>,
    r: v1::ListConnectionsRequest,
) -> Result<Body, ServiceError> {
    let conns = service.list_connections(caller, r.after_id)?;
    let (connections, more) = page(service, conns.iter().map(|c| connection_info(c)).collect());
    let next_after_id = if more {
        connections.last().map_or(0, |c| c.id)
    } else {
        0
    };
    Ok(Body::Connections(v1::ListConnectionsReply {
        connections,
        next_after_id,
    }))
}

fn list_sensors(
    service: &Service,
    caller: Caller<'_>,
    r: &v1::ListSensorsRequest,
) -> Result<Body, ServiceError> {
    let pattern = if r.pattern.is_empty() {
        Pattern::any()
    } else {
        Pattern::new(r.pattern.as_str())
    };
    let after = (!r.after.is_empty()).then_some(r.after.as_str());
    let entries = service.list_sensors(caller, &pattern, after)?;
    let (sensors, more) = page(service, entries.iter().map(wire::sensor_info).collect());
    let next_after = if more {
        sensors.last().map(|s| s.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Body::Sensors(v1::ListSensorsReply {
        sensors,
        next_after,
    }))
}

/// Cuts a list to one page: at most `limits.max_list_items` entries, and no
/// more than fit one frame with the rest of the reply. Returns whether
/// entries were left out (the reply then names where the next page starts).
fn page<T: prost::Message>(service: &Service, mut items: Vec<T>) -> (Vec<T>, bool) {
    let limits = service.limits();
    let max = limits.message.max_list_items;
    // The envelope, the request id and the cursor, generously.
    let overhead = 64 + limits.message.max_name_bytes;
    let budget = usize::try_from(limits.frame.get())
        .unwrap_or(usize::MAX)
        .saturating_sub(overhead);
    let mut used = 0usize;
    let mut fits = 0usize;
    for item in items.iter().take(max) {
        // The entry, its tag and its length prefix.
        let len = item.encoded_len() + 1 + prost::length_delimiter_len(item.encoded_len());
        if used + len > budget {
            break;
        }
        used += len;
        fits += 1;
    }
    let more = items.len() > fits;
    items.truncate(fits);
    (items, more)
}

fn history(
    service: &Service,
    caller: Caller<'_>,
    r: &v1::HistoryRequest,
) -> Result<crate::store::HistoryQuery, ServiceError> {
    let limit = usize::try_from(r.limit).unwrap_or(usize::MAX);
    service.history(caller, &r.sensor, r.from_us, r.to_us, r.bucket_us, limit)
}

fn push(
    service: &Service,
    caller: Caller<'_>,
    r: v1::PushRequest,
    now: Instant,
) -> Result<Vec<Reading>, ServiceError> {
    let readings: Vec<PushedReading> = r
        .readings
        .into_iter()
        .map(|w| PushedReading {
            sensor: w.sensor,
            timestamp_us: w.timestamp_us,
            value: w.value,
            quality: Quality::from_wire(w.quality),
        })
        .collect();
    service.push(caller, &readings, now)
}

fn create_token(
    service: &Service,
    caller: Caller<'_>,
    r: &v1::CreateTokenRequest,
) -> Result<Body, ServiceError> {
    let role = Role::from_wire(r.role).ok_or(ServiceError::Invalid)?;
    // Checked by the envelope decoder with the configured limits: parsed.
    let name = sensegate_core::name::Name::decoded(r.name.clone());
    let scope = Pattern::new(r.scope.as_str());
    let (record, secret) = service.create_token(caller, &name, role, &scope)?;
    Ok(Body::TokenCreated(v1::CreateTokenReply {
        token: Some(token_info(&record)),
        secret: secret.expose().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use prost::Message as _;

    use super::*;
    use crate::audit::Audit;
    use crate::auth::store::TokenStore;
    use crate::config::Limits;
    use sensegate_core::Admission;
    use sensegate_proto::v1::ErrorCode;

    fn service() -> (Arc<Service>, String) {
        let svc = Service::new(
            "t".into(),
            Limits::default(),
            TokenStore::in_memory(8, sensegate_proto::MessageLimits::DEFAULT),
            Audit::disabled(),
        );
        let (_, secret) = svc.bootstrap_token("admin", Role::Admin, "*").unwrap();
        (Arc::new(svc), secret.expose().to_owned())
    }

    fn session(svc: &Service) -> (Session, Admission) {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let admission = svc
            .admit(peer, sensegate_core::Frontend::Native, 0)
            .unwrap();
        (Session::new(admission.connection().clone()), admission)
    }

    fn payload(id: u64, body: Body) -> Vec<u8> {
        v1::Envelope {
            request_id: id,
            body: Some(body),
        }
        .encode_to_vec()
    }

    fn hello(token: &str) -> Vec<u8> {
        payload(
            1,
            Body::Hello(v1::Hello {
                protocol_version: 1,
                token: token.into(),
                client_name: String::new(),
            }),
        )
    }

    fn error_code(e: &v1::Envelope) -> ErrorCode {
        match &e.body {
            Some(Body::Error(err)) => ErrorCode::try_from(err.code).unwrap(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_request_before_hello_is_unauthenticated_and_ends_the_session() {
        let (svc, _) = service();
        let (mut s, _a) = session(&svc);
        let mut out = Vec::new();
        let step = s.on_frame(
            &svc,
            &payload(5, Body::Ping(v1::Ping { nonce: 1 })),
            Instant::now(),
            &mut out,
        );
        assert_eq!(step, Step::Close);
        assert_eq!(error_code(&out[0]), ErrorCode::Unauthenticated);
        assert!(matches!(s.state(), State::Closed));
    }

    #[test]
    fn hello_moves_to_serving_and_lifts_the_hello_deadline() {
        let (svc, token) = service();
        let (mut s, _a) = session(&svc);
        assert_eq!(s.hello_timeout(&svc), Some(svc.limits().auth_timeout));
        let mut out = Vec::new();
        assert_eq!(
            s.on_frame(&svc, &hello(&token), Instant::now(), &mut out),
            Step::Continue
        );
        assert!(matches!(&out[0].body, Some(Body::Welcome(w)) if w.principal == "admin"));
        assert_eq!(s.hello_timeout(&svc), None);
        out.clear();
        let ping = payload(9, Body::Ping(v1::Ping { nonce: 3 }));
        assert_eq!(
            s.on_frame(&svc, &ping, Instant::now(), &mut out),
            Step::Continue
        );
        assert_eq!(out[0].request_id, 9);
        assert!(matches!(
            out[0].body,
            Some(Body::Pong(v1::Pong { nonce: 3 }))
        ));
        // A second hello is a protocol error.
        out.clear();
        assert_eq!(
            s.on_frame(&svc, &hello(&token), Instant::now(), &mut out),
            Step::Close
        );
        assert_eq!(error_code(&out[0]), ErrorCode::Malformed);
    }

    #[test]
    fn bad_tokens_bad_versions_and_garbage_end_the_session_with_their_code() {
        let (svc, token) = service();
        let cases: [(Vec<u8>, ErrorCode); 4] = [
            (hello("sgt_0000000000000000_00"), ErrorCode::Unauthenticated),
            (
                payload(
                    1,
                    Body::Hello(v1::Hello {
                        protocol_version: 2,
                        token,
                        client_name: String::new(),
                    }),
                ),
                ErrorCode::Malformed,
            ),
            (vec![0xFF, 0xFF, 0xFF], ErrorCode::Malformed),
            (
                payload(1, Body::Pong(v1::Pong { nonce: 0 })),
                ErrorCode::Unauthenticated,
            ),
        ];
        for (bytes, code) in cases {
            let (mut s, _a) = session(&svc);
            let mut out = Vec::new();
            assert_eq!(
                s.on_frame(&svc, &bytes, Instant::now(), &mut out),
                Step::Close
            );
            assert_eq!(error_code(&out[0]), code);
        }
    }

    #[test]
    fn a_request_error_keeps_the_session_and_carries_the_request_id() {
        let (svc, token) = service();
        let (mut s, _a) = session(&svc);
        let mut out = Vec::new();
        s.on_frame(&svc, &hello(&token), Instant::now(), &mut out);
        out.clear();
        let latest = payload(
            42,
            Body::Latest(v1::LatestRequest {
                sensor: "nope".into(),
            }),
        );
        assert_eq!(
            s.on_frame(&svc, &latest, Instant::now(), &mut out),
            Step::Continue
        );
        assert_eq!(out[0].request_id, 42);
        assert_eq!(error_code(&out[0]), ErrorCode::NotFound);
        // A server-only message from a client ends it.
        out.clear();
        let pong = payload(43, Body::Pong(v1::Pong { nonce: 0 }));
        assert_eq!(
            s.on_frame(&svc, &pong, Instant::now(), &mut out),
            Step::Close
        );
    }
}
