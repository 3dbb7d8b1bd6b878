//! One MQTT session as a state machine without I/O.
//!
//! The connection task decodes packets and hands each to the session with
//! the current time; the session calls the service and appends the packets
//! to send to an output buffer. A PUBLISH is checked here (topic mapping,
//! payload, then the service's scope, rate and catalog checks) and comes
//! back as a [`Publish`] for the connection to commit with others before it
//! acknowledges them: a PUBACK means the reading is durable.
//!
//! Every refusal is mapped to the wire here, once: [`refusal`] from a
//! service error, [`reason_of`] from an ingest refusal; MQTT 5 clients get
//! the reason code, MQTT 3.1.1 clients what `docs/mqtt.md` says.

use std::sync::Arc;

use bytes::BytesMut;
use sensegate_core::stats::IngestRefusal;
use sensegate_core::time::Instant;
use sensegate_core::{Connection, Frontend, StopReason, Subscriber};
use sensegate_mqtt::packet::{encode_disconnect_v5, encode_pingresp};
use sensegate_mqtt::pubsub::{encode_puback, encode_suback, encode_unsuback};
use sensegate_mqtt::{
    ConnAck, Connect, DecodeError, Granted, OutPublish, Packet, ProtocolVersion, ReasonCode,
    filter_matches,
};

use super::MqttConfig;
use super::rules::Mapper;
use super::topics::{self, FORMAT_PROPERTY, PayloadFormat};
use crate::pattern::Pattern;
use crate::reading::{Quality, Reading, now_us};
use crate::service::{Caller, PushedReading, Service, ServiceError};

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for CONNECT (within `limits.auth_timeout_ms`).
    ExpectConnect,
    /// Connected and authenticated.
    Serving,
    /// Ended; nothing more is read.
    Closed,
}

/// What the connection does after a packet.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Send what was written and keep reading.
    Continue,
    /// Send what was written, then close.
    Close,
    /// A checked publish: commit it (with the others of its batch), then
    /// acknowledge it.
    Publish(Publish),
}

/// A PUBLISH after its checks.
#[derive(Debug, PartialEq)]
pub struct Publish {
    /// QoS 1: the packet id to acknowledge.
    pub packet_id: Option<u16>,
    /// Accepted (its readings, to commit), or refused with its reason.
    pub outcome: Result<Vec<Reading>, ReasonCode>,
}

/// One subscription.
#[derive(Debug)]
struct Subscription {
    filter: String,
    /// The sensor pattern the hub routes by; `None` for a filter no topic
    /// of this broker can match.
    pattern: Option<Pattern>,
    /// The pattern matches exactly the names whose topics the filter
    /// matches (a filter without wildcards, or one that matches every
    /// topic: `#`, `sensors/#`), so a reading the hub routed here needs no
    /// second check.
    exact: bool,
    format: PayloadFormat,
}

/// A session over one connection.
#[derive(Debug)]
pub struct Session {
    connection: Arc<Connection>,
    /// What the CONNACK tells: `mqtt.receive_maximum` and
    /// `mqtt.max_packet_bytes`.
    receive_maximum: u16,
    max_packet: u32,
    /// `mqtt.max_retained_per_subscribe`.
    max_retained: u32,
    state: State,
    version: ProtocolVersion,
    /// The client's keep alive, seconds (0: none).
    keep_alive: u16,
    /// The largest packet the client accepts (MQTT 5).
    client_max_packet: usize,
    /// The payload format unless a subscription says otherwise.
    format: PayloadFormat,
    subscriptions: Vec<Subscription>,
    subscriber: Option<Arc<Subscriber>>,
}

impl Session {
    /// A session on an admitted connection.
    #[must_use]
    pub fn new(connection: Arc<Connection>, config: &MqttConfig) -> Self {
        Self {
            connection,
            format: config.payload,
            receive_maximum: config.receive_maximum,
            max_packet: u32::try_from(config.codec.max_packet_bytes).unwrap_or(u32::MAX),
            max_retained: u32::try_from(config.max_retained_per_subscribe).unwrap_or(u32::MAX),
            state: State::ExpectConnect,
            version: ProtocolVersion::V311,
            keep_alive: 0,
            client_max_packet: usize::MAX,
            subscriptions: Vec::new(),
            subscriber: None,
        }
    }

    /// The state.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }

    /// The connection.
    #[must_use]
    pub const fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// The negotiated version (3.1.1 until CONNECT is accepted).
    #[must_use]
    pub const fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client's keep alive in seconds, 0 for none.
    #[must_use]
    pub const fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The subscriber, once a filter was subscribed.
    #[must_use]
    pub const fn subscriber(&self) -> Option<&Arc<Subscriber>> {
        self.subscriber.as_ref()
    }

    /// Handles one packet; appends what to send to `out`.
    pub fn on_packet(
        &mut self,
        service: &Service,
        mapper: &Mapper,
        packet: Packet,
        now: Instant,
        out: &mut BytesMut,
    ) -> Step {
        let step = match (self.state, packet) {
            (State::ExpectConnect, Packet::Connect(c)) => self.connect(service, &c, now, out),
            // The decoder accepts nothing else before CONNECT; a
            // DISCONNECT ends the session.
            (State::Closed | State::ExpectConnect, _) | (State::Serving, Packet::Disconnect(_)) => {
                Step::Close
            }
            (State::Serving, Packet::Connect(_)) => {
                // A second CONNECT is a protocol error [MQTT-3.1.0-2].
                self.disconnect(ReasonCode::ProtocolError, out);
                Step::Close
            }
            (State::Serving, Packet::Publish(p)) => {
                Step::Publish(self.publish(service, mapper, &p, now))
            }
            // Deliveries go out at QoS 0: there is nothing to acknowledge.
            (State::Serving, Packet::PubAck(_)) => Step::Continue,
            (State::Serving, Packet::Subscribe(s)) => {
                self.subscribe(service, s, out);
                Step::Continue
            }
            (State::Serving, Packet::Unsubscribe(u)) => {
                self.unsubscribe(service, &u, out);
                Step::Continue
            }
            (State::Serving, Packet::PingReq) => {
                encode_pingresp(out);
                Step::Continue
            }
        };
        if step == Step::Close {
            self.state = State::Closed;
        }
        step
    }

    /// A packet that could not be decoded: tells the client why where the
    /// protocol lets it (MQTT 5 DISCONNECT, or the CONNACK of a refused
    /// CONNECT), then the connection closes.
    pub fn on_decode_error(
        &mut self,
        e: &DecodeError,
        asked: Option<ProtocolVersion>,
        out: &mut BytesMut,
    ) {
        let reason = e.reason();
        match (self.state, asked) {
            // 3.1.1 sends no CONNACK for a malformed CONNECT.
            (State::ExpectConnect, Some(version))
                if version == ProtocolVersion::V5 || reason.connack_v3().is_some() =>
            {
                refuse_connect(version, reason, out);
            }
            (State::Serving, _) => self.disconnect(reason, out),
            _ => {}
        }
        self.state = State::Closed;
    }

    /// The connection is told to stop (kick, revocation, shutdown, idle).
    pub fn on_stop(&mut self, reason: StopReason, out: &mut BytesMut) {
        if self.state == State::Serving {
            self.disconnect(
                match reason {
                    StopReason::Shutdown => ReasonCode::ServerShuttingDown,
                    StopReason::Idle => ReasonCode::KeepAliveTimeout,
                    StopReason::Kicked | StopReason::Revoked => ReasonCode::AdministrativeAction,
                },
                out,
            );
        }
        self.state = State::Closed;
    }

    /// The packet in progress does not fit the in-flight budget: MQTT 5 is
    /// told `0x97` (quota exceeded), then the connection closes.
    pub fn on_overloaded(&mut self, out: &mut BytesMut) {
        if self.state == State::Serving {
            self.disconnect(ReasonCode::QuotaExceeded, out);
        }
        self.state = State::Closed;
    }

    /// The subscriber fell behind under `limits.lag_policy = "disconnect"`.
    pub fn on_fell_behind(&mut self, out: &mut BytesMut) {
        self.disconnect(ReasonCode::QuotaExceeded, out);
        self.state = State::Closed;
    }

    /// The client sent nothing for one and a half keep-alive periods.
    pub fn on_keep_alive_expired(&mut self, out: &mut BytesMut) {
        self.disconnect(ReasonCode::KeepAliveTimeout, out);
        self.state = State::Closed;
    }

    /// MQTT 5: a DISCONNECT with `reason`; 3.1.1 has none (the connection
    /// just closes).
    fn disconnect(&self, reason: ReasonCode, out: &mut BytesMut) {
        if self.version == ProtocolVersion::V5 {
            encode_disconnect_v5(reason, out);
        }
    }

    fn connect(
        &mut self,
        service: &Service,
        c: &Connect,
        now: Instant,
        out: &mut BytesMut,
    ) -> Step {
        // The token is the password; the user name is free.
        let token = c
            .password
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("");
        if c.client_id.is_empty() && c.version == ProtocolVersion::V311 && !c.clean_start {
            // [MQTT-3.1.3-8]: identifier rejected.
            refuse_connect(c.version, ReasonCode::ClientIdentifierNotValid, out);
            return Step::Close;
        }
        if c.authentication_method.is_some() {
            // MQTT 5 extended authentication: the token is the password.
            refuse_connect(c.version, ReasonCode::BadAuthenticationMethod, out);
            return Step::Close;
        }
        if let Err(e) = service.sign_in(token, &self.connection, now) {
            let reason = match e {
                ServiceError::AuthThrottled => ReasonCode::ConnectionRateExceeded,
                _ => ReasonCode::NotAuthorized,
            };
            refuse_connect(c.version, reason, out);
            return Step::Close;
        }
        tracing::debug!(
            conn_id = self.connection.id,
            client_id = ?c.client_id,
            user = c.username.as_deref().unwrap_or(""),
            "mqtt client connected"
        );
        self.version = c.version;
        // The registry's idle timeout closes a connection quiet for that
        // long: an MQTT 5 client is told to ping within two thirds of it
        // (Server Keep Alive). A 3.1.1 client cannot be told; its keep
        // alive must be under that (docs/mqtt.md).
        let idle = service.limits().idle_timeout.as_secs();
        let most = u16::try_from(idle * 2 / 3).unwrap_or(u16::MAX).max(1);
        let server_keep_alive = (c.version == ProtocolVersion::V5
            && (c.keep_alive == 0 || c.keep_alive > most))
            .then_some(most);
        self.keep_alive = server_keep_alive.unwrap_or(c.keep_alive);
        self.client_max_packet = c
            .maximum_packet_size
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if let Some(f) = format_asked(&c.user_properties) {
            self.format = f;
        }
        let assigned = (c.client_id.is_empty() && c.version == ProtocolVersion::V5)
            .then(|| format!("sensegate-{}", self.connection.id));
        ConnAck {
            version: c.version,
            reason: ReasonCode::Success,
            receive_maximum: self.receive_maximum,
            maximum_packet_size: self.max_packet,
            assigned_client_id: assigned,
            server_keep_alive,
        }
        .encode(out);
        self.state = State::Serving;
        Step::Continue
    }

    fn caller<R>(&self, run: impl FnOnce(Caller<'_>) -> R) -> Option<R> {
        let principal = self.connection.principal()?;
        Some(run(Caller {
            principal: &principal,
            peer: self.connection.peer,
        }))
    }

    fn publish(
        &self,
        service: &Service,
        mapper: &Mapper,
        p: &sensegate_mqtt::Publish,
        now: Instant,
    ) -> Publish {
        let packet_id = p.packet_id;
        let counters = &service.counters().ingest_refused;
        let refuse = |why: IngestRefusal| {
            counters.hit(Frontend::Mqtt, why);
            Publish {
                packet_id,
                outcome: Err(reason_of(why)),
            }
        };
        let published = match mapper.map(&p.topic, &p.payload, &service.limits().message) {
            Ok(x) => x,
            Err(why) => return refuse(why),
        };
        let stamp = now_us();
        let pushed: Vec<PushedReading> = published
            .into_iter()
            .map(|r| PushedReading {
                sensor: r.sensor,
                timestamp_us: r.timestamp_us.unwrap_or(stamp),
                value: r.value,
                quality: Quality::Good,
            })
            .collect();
        // All or nothing, as a native push: one reading out of scope refuses
        // the message.
        match self.caller(|caller| service.push(caller, &pushed, now)) {
            Some(Ok(readings)) => Publish {
                packet_id,
                outcome: Ok(readings),
            },
            Some(Err(e)) => refuse(e.refusal()),
            None => refuse(IngestRefusal::Forbidden),
        }
    }

    fn subscribe(&mut self, service: &Service, s: sensegate_mqtt::Subscribe, out: &mut BytesMut) {
        let format = format_asked(&s.user_properties).unwrap_or(self.format);
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut granted = Vec::new();
        for f in s.filters {
            let (code, index) = self.subscribe_one(service, f, format);
            granted.extend(index);
            codes.push(code);
        }
        encode_suback(self.version, s.packet_id, &codes, out);
        // Then, as a broker sends retained messages: the latest reading of
        // each sensor the filters just granted match.
        self.send_retained(service, &granted, out);
    }

    /// Subscribes one filter; returns the SUBACK code and, when granted,
    /// where the subscription is.
    fn subscribe_one(
        &mut self,
        service: &Service,
        f: sensegate_mqtt::Filter,
        format: PayloadFormat,
    ) -> (Granted, Option<usize>) {
        let refused = |r| (Granted::Refused(r), None);
        if f.shared {
            return refused(ReasonCode::SharedSubscriptionsNotSupported);
        }
        if let Some(i) = self.subscriptions.iter().position(|s| s.filter == f.filter) {
            // The same filter again replaces the subscription [MQTT-3.8.4-3].
            self.subscriptions[i].format = format;
            return (Granted::Qos(0), Some(i));
        }
        if self.subscriptions.len() >= service.limits().max_subscriptions {
            service
                .counters()
                .limits
                .hit(crate::stats::Limit::Subscriptions);
            return refused(ReasonCode::QuotaExceeded);
        }
        let Ok(pattern) = topics::filter_pattern(&f.filter, &service.limits().message) else {
            return refused(ReasonCode::TopicFilterInvalid);
        };
        let patterns: Vec<Pattern> = pattern.iter().cloned().collect();
        let connection = self.connection.clone();
        let result = self.caller(|caller| service.subscribe(caller, &connection, &patterns));
        match result {
            Some(Ok((sub, _))) => {
                self.subscriber = Some(sub);
                let exact = !f.filter.contains(['+', '#'])
                    || pattern.as_ref().is_some_and(|p| p.as_str() == "*")
                        && !f.filter.contains('+');
                self.subscriptions.push(Subscription {
                    exact,
                    filter: f.filter,
                    pattern,
                    format,
                });
                (Granted::Qos(0), Some(self.subscriptions.len() - 1))
            }
            Some(Err(ServiceError::Subscriptions)) => refused(ReasonCode::QuotaExceeded),
            Some(Err(ServiceError::Forbidden)) | None => refused(ReasonCode::NotAuthorized),
            Some(Err(_)) => refused(ReasonCode::UnspecifiedError),
        }
    }

    fn unsubscribe(
        &mut self,
        service: &Service,
        u: &sensegate_mqtt::Unsubscribe,
        out: &mut BytesMut,
    ) {
        let mut existed = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let Some(i) = self.subscriptions.iter().position(|s| &s.filter == filter) else {
                existed.push(false);
                continue;
            };
            existed.push(true);
            let gone = self.subscriptions.swap_remove(i);
            // The hub routes by pattern: keep one another filter still needs.
            if let (Some(p), Some(sub)) = (gone.pattern, &self.subscriber)
                && !self
                    .subscriptions
                    .iter()
                    .any(|s| s.pattern.as_ref() == Some(&p))
            {
                service.unsubscribe(&self.connection, sub, std::slice::from_ref(&p));
            }
        }
        encode_unsuback(self.version, u.packet_id, &existed, out);
    }

    /// The latest reading of each sensor that the subscriptions at
    /// `which` match, with the retain flag, up to
    /// `mqtt.max_retained_per_subscribe`.
    fn send_retained(&self, service: &Service, which: &[usize], out: &mut BytesMut) {
        let max = usize::try_from(self.max_retained).unwrap_or(usize::MAX);
        let mut payload = Vec::with_capacity(64);
        let mut sent = std::collections::BTreeSet::<Arc<str>>::new();
        for &i in which {
            let sub = &self.subscriptions[i];
            let Some(pattern) = &sub.pattern else {
                continue;
            };
            let left = max.saturating_sub(sent.len());
            if left == 0 {
                break;
            }
            // One bounded pass over the catalog: at most what is left to
            // send, whatever the catalog holds.
            let latest = self
                .caller(|caller| service.latest_matching(caller, pattern, left))
                .and_then(Result::ok)
                .unwrap_or_default();
            for reading in latest {
                let topic = topics::topic_of(&reading.sensor);
                if !filter_matches(&sub.filter, &topic) || sent.contains(&reading.sensor) {
                    continue;
                }
                self.write_reading(&topic, &reading, sub.format, true, &mut payload, out);
                sent.insert(reading.sensor);
            }
        }
    }

    /// Publishes a batch of the hub's readings to the client: each reading
    /// whose topic one of its filters matches, in that filter's format. The
    /// topic and payload buffers are made once per batch.
    pub fn deliver(&self, readings: &[Reading], out: &mut BytesMut) -> usize {
        let mut topic = String::with_capacity(64);
        let mut payload = Vec::with_capacity(64);
        // The usual case, one subscription the hub routes by exactly: every
        // reading is for it.
        let only = match self.subscriptions.as_slice() {
            [s] if s.exact && s.pattern.is_some() => Some(s),
            _ => None,
        };
        out.reserve(readings.len() * (64 + topics::PREFIX.len()));
        let mut n = 0;
        for r in readings {
            topic.clear();
            topic.push_str(topics::PREFIX);
            topic.push_str(&r.sensor);
            let Some(sub) = only.or_else(|| {
                self.subscriptions
                    .iter()
                    .find(|s| s.pattern.is_some() && filter_matches(&s.filter, &topic))
            }) else {
                continue;
            };
            if self.write_reading(&topic, r, sub.format, false, &mut payload, out) {
                n += 1;
            }
        }
        n
    }

    fn write_reading(
        &self,
        topic: &str,
        reading: &Reading,
        format: PayloadFormat,
        retain: bool,
        payload: &mut Vec<u8>,
        out: &mut BytesMut,
    ) -> bool {
        payload.clear();
        topics::write_payload(reading, format, payload);
        let packet = OutPublish {
            topic,
            qos: 0,
            retain,
            packet_id: None,
            payload,
        };
        // A packet larger than the client accepts is not sent [MQTT-3.1.2-24].
        if packet.encoded_len(self.version) > self.client_max_packet {
            return false;
        }
        packet.encode(self.version, out);
        true
    }

    /// Acknowledges a batch of publishes in the order they came
    /// [MQTT-4.6.0-2], once the accepted ones were committed (`committed`
    /// is the commit's outcome). Returns `false` when the connection must
    /// close instead (after the PUBACKs written so far): an MQTT 3.1.1
    /// client whose reading could not be stored, or was refused for a
    /// reason that may pass (rate, room), is not acknowledged for it, so it
    /// sends it again.
    pub fn acknowledge(
        &self,
        service: &Service,
        batch: &[Publish],
        committed: Result<(), ServiceError>,
        out: &mut BytesMut,
    ) -> bool {
        let failed = committed.err().map(|e| {
            let why = e.refusal();
            let accepted: usize = batch
                .iter()
                .filter_map(|p| p.outcome.as_ref().ok().map(Vec::len))
                .sum();
            service.counters().ingest_refused.add(
                Frontend::Mqtt,
                why,
                u64::try_from(accepted).unwrap_or(u64::MAX),
            );
            reason_of(why)
        });
        if failed.is_some() && self.version == ProtocolVersion::V311 {
            return false;
        }
        for p in batch {
            let Some(id) = p.packet_id else {
                continue;
            };
            let reason = match (&p.outcome, failed) {
                (Ok(_), None) => ReasonCode::Success,
                (Ok(_), Some(r)) => r,
                (Err(r), _) => *r,
            };
            // MQTT 3.1.1 has no negative PUBACK. A refusal that stays a
            // refusal (scope, topic, payload) is acknowledged, as brokers
            // do; one that may pass later (the rate, a full catalog or
            // store) is not: the connection closes after the PUBACKs before
            // it, and the client sends the reading again. Nothing is
            // acknowledged that was not kept.
            if self.version == ProtocolVersion::V311 && is_temporary(reason) {
                return false;
            }
            encode_puback(self.version, id, reason, out);
        }
        true
    }
}

/// A refusal that may pass if the same publish comes again later.
const fn is_temporary(reason: ReasonCode) -> bool {
    matches!(
        reason,
        ReasonCode::MessageRateTooHigh | ReasonCode::QuotaExceeded | ReasonCode::UnspecifiedError
    )
}

/// A CONNACK refusing the connection.
fn refuse_connect(version: ProtocolVersion, reason: ReasonCode, out: &mut BytesMut) {
    ConnAck {
        version,
        reason,
        receive_maximum: 0,
        maximum_packet_size: 0,
        assigned_client_id: None,
        server_keep_alive: None,
    }
    .encode(out);
}

/// The payload format an MQTT 5 client asked for with a user property.
fn format_asked(props: &[(String, String)]) -> Option<PayloadFormat> {
    props
        .iter()
        .find(|(k, _)| k == FORMAT_PROPERTY)
        .and_then(|(_, v)| PayloadFormat::parse(v))
}

/// The MQTT 5 reason code of a refused publish.
const fn reason_of(why: IngestRefusal) -> ReasonCode {
    match why {
        IngestRefusal::Forbidden => ReasonCode::NotAuthorized,
        IngestRefusal::Unmapped => ReasonCode::TopicNameInvalid,
        IngestRefusal::BadPayload => ReasonCode::PayloadFormatInvalid,
        IngestRefusal::Rate => ReasonCode::MessageRateTooHigh,
        IngestRefusal::Full => ReasonCode::QuotaExceeded,
        IngestRefusal::Failed => ReasonCode::UnspecifiedError,
        IngestRefusal::TooLarge => ReasonCode::PacketTooLarge,
    }
}
