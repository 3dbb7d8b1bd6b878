//! Envelope decoding with per-field caps.
//!
//! A frame's payload is one protobuf [`Envelope`]. The frame cap already
//! bounds how much memory a payload can cost; this module bounds what it may
//! *contain*: string lengths, list lengths, the characters a name may use,
//! enum values, and finite numbers. Everything here treats the payload as
//! hostile, whichever side decodes it: the client checks the server's replies
//! with the same rules.
//!
//! Errors name the field and the numbers involved, never the offending bytes,
//! so they can be logged and sent back as they are.

use thiserror::Error;

use crate::v1::{
    Bucket, ConnectionInfo, Envelope, ErrorCode, Quality, Reading, Role, SensorInfo, SensorState,
    TokenInfo, envelope::Body,
};

/// Caps on what an envelope may contain. Each has a config key in the daemon
/// (see `docs/security.md`); the defaults suit every known use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Sensor names, principals, token names and ids (`limits.max_name_bytes`).
    pub max_name_bytes: usize,
    /// Sensor-name patterns and token scopes (`limits.max_pattern_bytes`).
    pub max_pattern_bytes: usize,
    /// The token in a hello (`limits.max_token_bytes`).
    pub max_token_bytes: usize,
    /// Free text: error messages, units, fault reasons, client names, peer
    /// addresses (`limits.max_text_bytes`).
    pub max_text_bytes: usize,
    /// Readings in one batch, push or history reply (`limits.max_readings`).
    pub max_readings: usize,
    /// Items in any other list: patterns, sensors, tokens, connections,
    /// buckets (`limits.max_list_items`).
    pub max_list_items: usize,
}

impl MessageLimits {
    /// The defaults.
    pub const DEFAULT: Self = Self {
        max_name_bytes: 128,
        max_pattern_bytes: 256,
        max_token_bytes: 256,
        max_text_bytes: 1024,
        max_readings: 10_000,
        max_list_items: 10_000,
    };
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a payload is not an acceptable envelope.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// Not protobuf, or not an envelope.
    #[error("payload is not a valid envelope")]
    Malformed(#[source] prost::DecodeError),
    /// The envelope carries no body, or one this side does not know.
    #[error("envelope has no known body")]
    NoBody,
    /// A string is longer than its cap.
    #[error("field {field} is {len} bytes, over the cap of {max}")]
    TooLong {
        /// Where, as `message.field`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A list has more items than its cap.
    #[error("field {field} has {count} items, over the cap of {max}")]
    TooMany {
        /// Where.
        field: &'static str,
        /// Items present.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A required string is empty.
    #[error("field {field} is empty")]
    Empty {
        /// Where.
        field: &'static str,
    },
    /// A string holds a character outside the set its field allows.
    #[error("field {field} has a character outside its allowed set")]
    BadCharacter {
        /// Where.
        field: &'static str,
    },
    /// An enum field holds a value this version does not define.
    #[error("field {field} has unknown enum value {value}")]
    UnknownEnum {
        /// Where.
        field: &'static str,
        /// The value.
        value: i32,
    },
    /// A number is out of its range (negative time, non-finite value).
    #[error("field {field} is out of range")]
    OutOfRange {
        /// Where.
        field: &'static str,
    },
}

impl MessageError {
    /// The wire error code a peer gets for this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::Malformed
    }
}

impl ErrorCode {
    /// The stable wire name of the code, as in the protocol contract.
    #[must_use]
    pub const fn wire_name(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::FrameTooLarge => "FRAME_TOO_LARGE",
            Self::Malformed => "MALFORMED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::RateLimited => "RATE_LIMITED",
            Self::Overloaded => "OVERLOADED",
            Self::Internal => "INTERNAL",
        }
    }
}

impl crate::frame::FrameError {
    /// The wire error code a peer gets for this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Empty | Self::Truncated { .. } => ErrorCode::Malformed,
        }
    }
}

/// Decodes and checks one envelope.
///
/// # Errors
/// [`MessageError`] when the payload is not an envelope, has no known body, or
/// breaks a cap in `limits`.
pub fn decode_envelope(payload: &[u8], limits: &MessageLimits) -> Result<Envelope, MessageError> {
    let envelope =
        <Envelope as prost::Message>::decode(payload).map_err(MessageError::Malformed)?;
    validate(&envelope, limits)?;
    Ok(envelope)
}

/// Checks an envelope against `limits` (what [`decode_envelope`] does after
/// decoding). Senders may call it to catch their own mistakes early.
///
/// # Errors
/// As [`decode_envelope`].
pub fn validate(envelope: &Envelope, limits: &MessageLimits) -> Result<(), MessageError> {
    let c = Check { l: limits };
    let Some(body) = &envelope.body else {
        return Err(MessageError::NoBody);
    };
    match body {
        Body::Hello(m) => {
            c.token("hello.token", &m.token)?;
            c.text("hello.client_name", &m.client_name)
        }
        Body::Welcome(m) => {
            c.name("welcome.principal", &m.principal)?;
            role("welcome.role", m.role)?;
            c.pattern("welcome.scope", &m.scope)?;
            c.text("welcome.server_name", &m.server_name)
        }
        Body::Error(m) => {
            enum_value::<ErrorCode>("error.code", m.code)?;
            c.text("error.message", &m.message)
        }
        Body::Goodbye(m) => c.text("goodbye.reason", &m.reason),
        Body::Ping(_)
        | Body::Pong(_)
        | Body::PushAck(_)
        | Body::Subscribed(_)
        | Body::Unsubscribed(_)
        | Body::TokenRevoked(_)
        | Body::ListConnections(_)
        | Body::Kick(_)
        | Body::Kicked(_) => Ok(()),
        Body::ListTokens(m) => c.optional_name("list_tokens.after", &m.after),
        Body::ListSensors(m) => {
            c.optional_pattern("list_sensors.pattern", &m.pattern)?;
            c.optional_name("list_sensors.after", &m.after)
        }
        Body::Sensors(m) => {
            c.each("sensors.sensors", &m.sensors, |s| c.sensor_info(s))?;
            c.optional_name("sensors.next_after", &m.next_after)
        }
        Body::Latest(m) => c.name("latest.sensor", &m.sensor),
        Body::LatestReply(m) => m.reading.as_ref().map_or(Ok(()), |r| c.reading(r)),
        Body::Subscribe(m) => c.each("subscribe.patterns", &m.patterns, |p| {
            c.pattern("subscribe.patterns", p)
        }),
        Body::Unsubscribe(m) => c.each("unsubscribe.patterns", &m.patterns, |p| {
            c.pattern("unsubscribe.patterns", p)
        }),
        Body::Readings(m) => c.readings("readings.readings", &m.readings),
        Body::History(m) => {
            c.name("history.sensor", &m.sensor)?;
            non_negative("history.from_us", m.from_us)?;
            non_negative("history.to_us", m.to_us)?;
            non_negative("history.bucket_us", m.bucket_us)
        }
        Body::HistoryReply(m) => {
            c.readings("history_reply.readings", &m.readings)?;
            c.each("history_reply.buckets", &m.buckets, bucket)
        }
        Body::Push(m) => c.readings("push.readings", &m.readings),
        Body::CreateToken(m) => {
            c.name("create_token.name", &m.name)?;
            role("create_token.role", m.role)?;
            c.pattern("create_token.scope", &m.scope)
        }
        Body::TokenCreated(m) => {
            if let Some(t) = &m.token {
                c.token_info(t)?;
            }
            c.token("token_created.secret", &m.secret)
        }
        Body::Tokens(m) => {
            c.each("tokens.tokens", &m.tokens, |t| c.token_info(t))?;
            c.optional_name("tokens.next_after", &m.next_after)
        }
        Body::RevokeToken(m) => c.name("revoke_token.id", &m.id),
        Body::Connections(m) => c.each("connections.connections", &m.connections, |i| {
            c.connection_info(i)
        }),
    }
}

/// The field checks, bound to one set of limits.
struct Check<'a> {
    l: &'a MessageLimits,
}

impl Check<'_> {
    fn name(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        check_name(field, s, self.l)
    }

    fn pattern(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        check_pattern(field, s, self.l)
    }

    fn optional_name(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        if s.is_empty() {
            Ok(())
        } else {
            self.name(field, s)
        }
    }

    fn optional_pattern(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        if s.is_empty() {
            Ok(())
        } else {
            self.pattern(field, s)
        }
    }

    /// A token: printable ASCII, no spaces.
    fn token(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        bounded(field, s, self.l.max_token_bytes, true)?;
        chars(field, s, |b| b.is_ascii_graphic())
    }

    /// Free text: any UTF-8 but [`is_unsafe_text_char`]s, which could forge
    /// log lines, drive terminals or reorder what a person reads.
    fn text(&self, field: &'static str, s: &str) -> Result<(), MessageError> {
        bounded(field, s, self.l.max_text_bytes, false)?;
        if s.chars().any(is_unsafe_text_char) {
            return Err(MessageError::BadCharacter { field });
        }
        Ok(())
    }

    fn each<T>(
        &self,
        field: &'static str,
        items: &[T],
        check: impl Fn(&T) -> Result<(), MessageError>,
    ) -> Result<(), MessageError> {
        count(field, items.len(), self.l.max_list_items)?;
        items.iter().try_for_each(check)
    }

    fn readings(&self, field: &'static str, readings: &[Reading]) -> Result<(), MessageError> {
        count(field, readings.len(), self.l.max_readings)?;
        readings.iter().try_for_each(|r| self.reading(r))
    }

    fn reading(&self, r: &Reading) -> Result<(), MessageError> {
        self.name("reading.sensor", &r.sensor)?;
        non_negative("reading.timestamp_us", r.timestamp_us)?;
        finite("reading.value", r.value)?;
        enum_value::<Quality>("reading.quality", r.quality)
    }

    fn sensor_info(&self, s: &SensorInfo) -> Result<(), MessageError> {
        self.name("sensor_info.name", &s.name)?;
        self.text("sensor_info.unit", &s.unit)?;
        self.text("sensor_info.source", &s.source)?;
        enum_value::<SensorState>("sensor_info.state", s.state)?;
        self.text("sensor_info.fault_reason", &s.fault_reason)?;
        non_negative("sensor_info.last_timestamp_us", s.last_timestamp_us)
    }

    fn token_info(&self, t: &TokenInfo) -> Result<(), MessageError> {
        self.name("token_info.id", &t.id)?;
        self.name("token_info.name", &t.name)?;
        role("token_info.role", t.role)?;
        self.pattern("token_info.scope", &t.scope)
    }

    fn connection_info(&self, i: &ConnectionInfo) -> Result<(), MessageError> {
        if !i.principal.is_empty() {
            self.name("connection_info.principal", &i.principal)?;
        }
        enum_value::<Role>("connection_info.role", i.role)?;
        self.text("connection_info.peer", &i.peer)?;
        self.text("connection_info.frontend", &i.frontend)
    }
}

fn chars(field: &'static str, s: &str, allowed: impl Fn(u8) -> bool) -> Result<(), MessageError> {
    if s.bytes().all(allowed) {
        Ok(())
    } else {
        Err(MessageError::BadCharacter { field })
    }
}

fn count(field: &'static str, count: usize, max: usize) -> Result<(), MessageError> {
    if count > max {
        return Err(MessageError::TooMany { field, count, max });
    }
    Ok(())
}

fn role(field: &'static str, value: i32) -> Result<(), MessageError> {
    match Role::try_from(value) {
        Ok(Role::Unspecified) | Err(_) => Err(MessageError::UnknownEnum { field, value }),
        Ok(_) => Ok(()),
    }
}

fn enum_value<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<(), MessageError> {
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| MessageError::UnknownEnum { field, value })
}

fn non_negative(field: &'static str, v: i64) -> Result<(), MessageError> {
    if v < 0 {
        Err(MessageError::OutOfRange { field })
    } else {
        Ok(())
    }
}

fn finite(field: &'static str, v: f64) -> Result<(), MessageError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(MessageError::OutOfRange { field })
    }
}

fn bounded(field: &'static str, s: &str, max: usize, required: bool) -> Result<(), MessageError> {
    if required && s.is_empty() {
        return Err(MessageError::Empty { field });
    }
    if s.len() > max {
        return Err(MessageError::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn bucket(b: &Bucket) -> Result<(), MessageError> {
    non_negative("bucket.start_us", b.start_us)?;
    finite("bucket.min", b.min)?;
    finite("bucket.max", b.max)?;
    finite("bucket.mean", b.mean)
}

/// The name rule, the one place it is spelled: a sensor name, token name,
/// token id or principal is 1 to `limits.max_name_bytes` bytes of
/// `[A-Za-z0-9._:/-]`. The narrow set keeps names safe to log, to put in a
/// URL path and to match with patterns. Every front end, the token store,
/// the config and the sources check names with this and the configured
/// limits.
///
/// # Errors
/// [`MessageError::Empty`], [`MessageError::TooLong`] or
/// [`MessageError::BadCharacter`], naming `field`.
pub fn check_name(
    field: &'static str,
    s: &str,
    limits: &MessageLimits,
) -> Result<(), MessageError> {
    bounded(field, s, limits.max_name_bytes, true)?;
    chars(field, s, is_name_byte)
}

/// Whether `s` passes the name rule ([`check_name`]) with a cap of `max`
/// bytes.
#[must_use]
pub fn is_name(s: &str, max: usize) -> bool {
    let limits = MessageLimits {
        max_name_bytes: max,
        ..MessageLimits::DEFAULT
    };
    check_name("name", s, &limits).is_ok()
}

/// The pattern rule: a sensor-name pattern or token scope is 1 to
/// `limits.max_pattern_bytes` bytes of name bytes, `*` and `?`.
///
/// # Errors
/// As [`check_name`].
pub fn check_pattern(
    field: &'static str,
    s: &str,
    limits: &MessageLimits,
) -> Result<(), MessageError> {
    bounded(field, s, limits.max_pattern_bytes, true)?;
    chars(field, s, is_pattern_byte)
}

/// Bytes a sensor name may hold.
#[must_use]
pub const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
}

/// Bytes a sensor-name pattern may hold: name bytes plus `*` and `?`.
#[must_use]
pub const fn is_pattern_byte(b: u8) -> bool {
    is_name_byte(b) || b == b'*' || b == b'?'
}

/// Whether `c` may not appear in free text: control characters (log line
/// forgery, terminal escapes), Unicode format characters (bidirectional
/// overrides and isolates that reorder what a terminal or a page shows,
/// zero-width characters, the byte-order mark, tag characters) and the line
/// and paragraph separators (U+2028, U+2029), which some viewers break lines
/// on.
#[must_use]
pub fn is_unsafe_text_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}
