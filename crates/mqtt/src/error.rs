//! Why bytes are not an acceptable packet, and what a client is told.
//!
//! Messages name the field and the numbers involved, never the bytes, so
//! they can be logged as they are.

use thiserror::Error;

/// An MQTT 5 reason code (a 3.1.1 client is disconnected instead; for a
/// CONNECT, [`ReasonCode::connack_v3`] gives its return code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReasonCode {
    /// 0x00.
    Success = 0x00,
    /// 0x80.
    UnspecifiedError = 0x80,
    /// 0x81.
    MalformedPacket = 0x81,
    /// 0x82.
    ProtocolError = 0x82,
    /// 0x83.
    ImplementationSpecificError = 0x83,
    /// 0x84.
    UnsupportedProtocolVersion = 0x84,
    /// 0x85.
    ClientIdentifierNotValid = 0x85,
    /// 0x86.
    BadUserNameOrPassword = 0x86,
    /// 0x87.
    NotAuthorized = 0x87,
    /// 0x89.
    ServerBusy = 0x89,
    /// 0x8B.
    ServerShuttingDown = 0x8B,
    /// 0x8C.
    BadAuthenticationMethod = 0x8C,
    /// 0x8D.
    KeepAliveTimeout = 0x8D,
    /// 0x8F.
    TopicFilterInvalid = 0x8F,
    /// 0x90.
    TopicNameInvalid = 0x90,
    /// 0x94.
    TopicAliasInvalid = 0x94,
    /// 0x95.
    PacketTooLarge = 0x95,
    /// 0x96.
    MessageRateTooHigh = 0x96,
    /// 0x97.
    QuotaExceeded = 0x97,
    /// 0x98.
    AdministrativeAction = 0x98,
    /// 0x99.
    PayloadFormatInvalid = 0x99,
    /// 0x9F.
    ConnectionRateExceeded = 0x9F,
    /// 0x9B.
    QosNotSupported = 0x9B,
    /// 0x9E.
    SharedSubscriptionsNotSupported = 0x9E,
}

impl ReasonCode {
    /// The byte on the wire.
    #[must_use]
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The MQTT 3.1.1 CONNACK return code for this reason: 1 unacceptable
    /// protocol version, 2 identifier rejected, 4 bad user name or
    /// password, 5 not authorized, 3 server unavailable. `None` for a
    /// malformed or non-conforming CONNECT: 3.1.1 then closes the
    /// connection without a CONNACK [MQTT-3.1.4-1].
    #[must_use]
    pub const fn connack_v3(self) -> Option<u8> {
        match self {
            Self::Success => Some(0),
            Self::UnsupportedProtocolVersion => Some(1),
            Self::ClientIdentifierNotValid => Some(2),
            Self::BadUserNameOrPassword => Some(4),
            Self::NotAuthorized => Some(5),
            Self::MalformedPacket | Self::ProtocolError => None,
            _ => Some(3),
        }
    }
}

/// Why bytes are not an acceptable packet. Every variant ends the
/// connection: what follows cannot be trusted to be framed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The remaining-length varint runs past four bytes.
    #[error("remaining length longer than four bytes")]
    BadLength,
    /// The declared packet is over the cap in force.
    #[error("packet of {len} bytes, over the cap of {max}")]
    TooLarge {
        /// Declared length (fixed header included).
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A packet type this side does not accept (or not before CONNECT).
    #[error("packet type {kind} not accepted here")]
    Unexpected {
        /// The type nibble.
        kind: u8,
    },
    /// The fixed header's flags are wrong for the type.
    #[error("bad flags {flags:#x} for packet type {kind}")]
    BadFlags {
        /// The type nibble.
        kind: u8,
        /// The flags nibble.
        flags: u8,
    },
    /// The body ended before a field did, or has bytes left over.
    #[error("field {field} is cut short or the packet has trailing bytes")]
    Truncated {
        /// Where.
        field: &'static str,
    },
    /// A string is not UTF-8, or holds U+0000.
    #[error("field {field} is not a valid MQTT string")]
    BadString {
        /// Where.
        field: &'static str,
    },
    /// A field is over its cap.
    #[error("field {field} is {len}, over the cap of {max}")]
    FieldTooLong {
        /// Where.
        field: &'static str,
        /// Its length (bytes or items).
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A malformed field: a reserved bit set, a value out of its range,
    /// a property identifier the packet does not allow.
    #[error("field {field} is malformed")]
    Malformed {
        /// Where.
        field: &'static str,
    },
    /// A well-formed value the protocol forbids here (a property given
    /// twice, a zero where the specification asks for non-zero).
    #[error("field {field} has a forbidden value")]
    Forbidden {
        /// Where.
        field: &'static str,
    },
    /// The client identifier is over its cap or otherwise not accepted.
    #[error("client identifier not accepted")]
    BadClientId,
    /// The CONNECT names a protocol this side does not speak (3.1, or a
    /// level other than 4 and 5).
    #[error("unsupported protocol name or level")]
    UnsupportedProtocol,
    /// A QoS 2 publish: this side offers QoS 0 and 1 (its CONNACK says so).
    #[error("QoS 2 is not supported")]
    QosNotSupported,
    /// A published topic that is empty or holds a wildcard.
    #[error("field {field} is not a valid topic name")]
    BadTopic {
        /// Where.
        field: &'static str,
    },
    /// A topic filter that is empty or misplaces a wildcard.
    #[error("field {field} is not a valid topic filter")]
    BadFilter {
        /// Where.
        field: &'static str,
    },
    /// A topic alias: this side offers none (its CONNACK says 0).
    #[error("topic aliases are not supported")]
    TopicAlias,
}

impl DecodeError {
    /// The MQTT 5 reason code a client is told.
    #[must_use]
    pub const fn reason(&self) -> ReasonCode {
        match self {
            Self::TooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedProtocol => ReasonCode::UnsupportedProtocolVersion,
            Self::QosNotSupported => ReasonCode::QosNotSupported,
            Self::BadTopic { .. } => ReasonCode::TopicNameInvalid,
            Self::BadFilter { .. } => ReasonCode::TopicFilterInvalid,
            Self::TopicAlias => ReasonCode::TopicAliasInvalid,
            Self::Unexpected { .. } | Self::Forbidden { .. } => ReasonCode::ProtocolError,
            Self::BadClientId => ReasonCode::ClientIdentifierNotValid,
            // Well formed, but over one of this side's own caps.
            Self::FieldTooLong { .. } => ReasonCode::ImplementationSpecificError,
            Self::BadLength
            | Self::BadFlags { .. }
            | Self::Truncated { .. }
            | Self::BadString { .. }
            | Self::Malformed { .. } => ReasonCode::MalformedPacket,
        }
    }
}
