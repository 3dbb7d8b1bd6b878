//! The native protocol's wire forms, in one place: every error the native
//! front end sends ([`ProtocolError`], one `code()` and one message each,
//! the way rustls maps each error kind to its alert in one function), every
//! envelope it builds, and every conversion of a domain value to its wire
//! message. The session and the connection task build no envelope by hand.
//!
//! Service errors keep the code the core gives them
//! ([`ServiceError::code`]): the codes are the vocabulary both front ends
//! share (HTTP reports them in its JSON errors).

use sensegate_proto::v1::{self, ErrorCode, envelope::Body};
use sensegate_proto::{FrameError, MessageError, PROTOCOL_VERSION};

use crate::auth::Principal;
use crate::auth::store::TokenRecord;
use crate::reading::Reading;
use crate::service::ServiceError;
use crate::store::{Bucket, History};
use sensegate_core::{AdmitError, Connection, SensorEntry};

/// Everything the native front end refuses, with its code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The service refused a request.
    Service(ServiceError),
    /// The byte stream is not frames (or a frame is over the cap).
    Frame(FrameError),
    /// A payload is not an acceptable envelope.
    Message(MessageError),
    /// The envelope carries no body this side knows.
    NoBody,
    /// The first frame is not a hello.
    HelloExpected,
    /// The hello asks for another protocol version.
    UnsupportedVersion,
    /// A second hello.
    AlreadyAuthenticated,
    /// A client sent a message only the server sends.
    ServerMessage,
    /// A frame over the hello cap before authentication.
    HelloTooLarge,
    /// A frame over the connection's in-flight byte budget.
    ConnectionInflight,
    /// The daemon's in-flight budget (or the token's share) is taken.
    Busy,
    /// A reply that does not fit one frame.
    ReplyTooLarge,
    /// No hello within `limits.auth_timeout_ms`.
    NoHelloInTime,
    /// A frame not completed within `limits.frame_timeout_ms`.
    FrameTimeout,
    /// The connection is past a connection cap.
    Refused(AdmitError),
}

impl ProtocolError {
    /// The wire code.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Service(e) => e.code(),
            Self::Frame(e) => e.code(),
            Self::Message(e) => e.code(),
            Self::HelloExpected | Self::NoHelloInTime => ErrorCode::Unauthenticated,
            Self::NoBody
            | Self::UnsupportedVersion
            | Self::AlreadyAuthenticated
            | Self::ServerMessage
            | Self::FrameTimeout => ErrorCode::Malformed,
            Self::HelloTooLarge => ErrorCode::FrameTooLarge,
            Self::ConnectionInflight | Self::Busy | Self::Refused(_) => ErrorCode::Overloaded,
            Self::ReplyTooLarge => ErrorCode::Internal,
        }
    }

    /// The fixed text (never request bytes).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Service(e) => e.to_string(),
            Self::Frame(e) => e.to_string(),
            Self::Message(e) => e.to_string(),
            Self::Refused(e) => e.to_string(),
            Self::NoBody => "envelope has no known body".to_owned(),
            Self::HelloExpected => "hello expected first".to_owned(),
            Self::UnsupportedVersion => "unsupported protocol version".to_owned(),
            Self::AlreadyAuthenticated => "already authenticated".to_owned(),
            Self::ServerMessage => "a server message sent by a client".to_owned(),
            Self::HelloTooLarge => "frame too large before authentication".to_owned(),
            Self::ConnectionInflight => "frame over the connection's in-flight limit".to_owned(),
            Self::Busy => "server busy".to_owned(),
            Self::ReplyTooLarge => "reply over the frame limit".to_owned(),
            Self::NoHelloInTime => "no hello in time".to_owned(),
            Self::FrameTimeout => "frame not completed in time".to_owned(),
        }
    }
}

impl From<ServiceError> for ProtocolError {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

/// The error envelope for `e`, answering request `request_id` (0 for one
/// that ends the session before a request could be read).
#[must_use]
pub fn error_envelope(request_id: u64, e: &ProtocolError) -> v1::Envelope {
    reply(
        request_id,
        Body::Error(v1::Error {
            code: e.code().into(),
            message: e.message(),
        }),
    )
}

/// A reply to request `request_id`.
#[must_use]
pub const fn reply(request_id: u64, body: Body) -> v1::Envelope {
    v1::Envelope {
        request_id,
        body: Some(body),
    }
}

/// A goodbye envelope.
#[must_use]
pub fn goodbye_envelope(reason: &str) -> v1::Envelope {
    reply(
        0,
        Body::Goodbye(v1::Goodbye {
            reason: reason.to_owned(),
        }),
    )
}

/// A reading batch for a subscriber.
#[must_use]
pub fn batch_envelope(readings: &[Reading], dropped: u64) -> v1::Envelope {
    reply(
        0,
        Body::Readings(v1::ReadingBatch {
            readings: readings.iter().map(reading).collect(),
            dropped,
        }),
    )
}

/// The welcome for a signed-in principal.
#[must_use]
pub fn welcome(
    principal: &Principal,
    connection_id: u64,
    max_frame_bytes: u32,
    server_name: &str,
) -> Body {
    Body::Welcome(v1::Welcome {
        protocol_version: PROTOCOL_VERSION,
        principal: principal.name.clone(),
        role: principal.role.to_wire().into(),
        scope: principal.scope.as_str().to_owned(),
        connection_id,
        max_frame_bytes,
        server_name: server_name.to_owned(),
    })
}

/// A reading.
#[must_use]
pub fn reading(r: &Reading) -> v1::Reading {
    v1::Reading {
        sensor: r.sensor.to_string(),
        timestamp_us: r.timestamp_us,
        value: r.value,
        quality: r.quality.to_wire().into(),
    }
}

/// A history answer for `sensor`.
#[must_use]
pub fn history_reply(sensor: &str, h: &History) -> Body {
    Body::HistoryReply(v1::HistoryReply {
        readings: h
            .rows
            .iter()
            .map(|r| v1::Reading {
                sensor: sensor.to_owned(),
                timestamp_us: r.timestamp_us,
                value: r.value,
                quality: r.quality.to_wire().into(),
            })
            .collect(),
        buckets: h.buckets.iter().map(bucket).collect(),
        truncated: h.truncated,
    })
}

/// A time bucket.
#[must_use]
pub const fn bucket(b: &Bucket) -> v1::Bucket {
    v1::Bucket {
        start_us: b.start_us,
        min: b.min,
        max: b.max,
        mean: b.mean,
        count: b.count,
    }
}

/// A sensor of the catalog.
#[must_use]
pub fn sensor_info(e: &SensorEntry) -> v1::SensorInfo {
    v1::SensorInfo {
        name: e.name.to_string(),
        unit: e.unit.clone(),
        source: e.source.clone(),
        state: e.state.to_wire().into(),
        fault_reason: e.fault_reason.clone(),
        last_timestamp_us: e.latest.as_ref().map_or(0, |r| r.timestamp_us),
    }
}

/// A token, without its secret.
#[must_use]
pub fn token_info(t: &TokenRecord) -> v1::TokenInfo {
    v1::TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.to_wire().into(),
        scope: t.scope.as_str().to_owned(),
        created_at_us: t.created_at_us,
        revoked: t.revoked,
    }
}

/// An open connection, of either front end.
#[must_use]
pub fn connection_info(c: &Connection) -> v1::ConnectionInfo {
    use std::sync::atomic::Ordering::Relaxed;
    let (principal, role) = c
        .principal()
        .map_or((String::new(), v1::Role::Unspecified), |p| {
            (p.name.clone(), p.role.to_wire())
        });
    v1::ConnectionInfo {
        id: c.id,
        principal,
        role: role.into(),
        peer: c.peer.to_string(),
        frontend: c.frontend.name().to_owned(),
        connected_at_us: c.connected_at_us,
        subscriptions: c.subscriptions.load(Relaxed),
        frames_in: c.frames_in.load(Relaxed),
        frames_out: c.frames_out.load(Relaxed),
        bytes_in: c.bytes_in.load(Relaxed),
        bytes_out: c.bytes_out.load(Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes and texts clients saw before they were gathered here.
    #[test]
    fn each_protocol_error_keeps_its_code_and_text() {
        let cases = [
            (
                ProtocolError::NoBody,
                ErrorCode::Malformed,
                "envelope has no known body",
            ),
            (
                ProtocolError::HelloExpected,
                ErrorCode::Unauthenticated,
                "hello expected first",
            ),
            (
                ProtocolError::UnsupportedVersion,
                ErrorCode::Malformed,
                "unsupported protocol version",
            ),
            (
                ProtocolError::AlreadyAuthenticated,
                ErrorCode::Malformed,
                "already authenticated",
            ),
            (
                ProtocolError::ServerMessage,
                ErrorCode::Malformed,
                "a server message sent by a client",
            ),
            (
                ProtocolError::HelloTooLarge,
                ErrorCode::FrameTooLarge,
                "frame too large before authentication",
            ),
            (
                ProtocolError::ConnectionInflight,
                ErrorCode::Overloaded,
                "frame over the connection's in-flight limit",
            ),
            (ProtocolError::Busy, ErrorCode::Overloaded, "server busy"),
            (
                ProtocolError::ReplyTooLarge,
                ErrorCode::Internal,
                "reply over the frame limit",
            ),
            (
                ProtocolError::NoHelloInTime,
                ErrorCode::Unauthenticated,
                "no hello in time",
            ),
            (
                ProtocolError::FrameTimeout,
                ErrorCode::Malformed,
                "frame not completed in time",
            ),
            (
                ProtocolError::Service(ServiceError::Forbidden),
                ErrorCode::Forbidden,
                "not allowed",
            ),
        ];
        for (e, code, text) in cases {
            let env = error_envelope(7, &e);
            assert_eq!(env.request_id, 7);
            let Some(Body::Error(err)) = env.body else {
                panic!("{e:?}: not an error");
            };
            assert_eq!(
                (err.code, err.message.as_str()),
                (i32::from(code), text),
                "{e:?}"
            );
        }
    }
}
