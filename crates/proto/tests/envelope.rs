//! Envelope decoding: per-field caps on top of the frame cap, each with a
//! typed error naming the field.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use prost::Message;
use sensegate_proto::envelope::validate;
use sensegate_proto::v1::{
    CreateTokenRequest, Envelope, ErrorCode, Hello, PushRequest, Reading, Role, SubscribeRequest,
    envelope::Body,
};
use sensegate_proto::{MessageError, MessageLimits, decode_envelope};

fn reading(sensor: &str) -> Reading {
    Reading {
        sensor: sensor.into(),
        timestamp_us: 1,
        value: 1.0,
        quality: 0,
    }
}

fn env(body: Body) -> Envelope {
    Envelope {
        request_id: 1,
        body: Some(body),
    }
}

fn roundtrip(e: &Envelope) -> Result<Envelope, MessageError> {
    decode_envelope(&e.encode_to_vec(), &MessageLimits::DEFAULT)
}

#[test]
fn valid_envelopes_round_trip() {
    let e = env(Body::Push(PushRequest {
        readings: vec![reading("room/temp-1"), reading("gps:lat")],
    }));
    assert_eq!(roundtrip(&e).unwrap(), e);
}

#[test]
fn garbage_is_malformed() {
    let err = decode_envelope(&[0xff, 0xff, 0xff], &MessageLimits::DEFAULT).unwrap_err();
    assert!(matches!(err, MessageError::Malformed(_)));
    assert_eq!(err.code(), ErrorCode::Malformed);
    assert_eq!(err.to_string(), "payload is not a valid envelope");
}

#[test]
fn missing_or_unknown_body_is_no_body() {
    let e = Envelope {
        request_id: 1,
        body: None,
    };
    assert_eq!(roundtrip(&e), Err(MessageError::NoBody));
    // Field 999 is no body this version knows; it is skipped as unknown.
    let unknown = [0x01 << 3, 0x05, 0xB8, 0x3E, 0x00];
    assert_eq!(
        decode_envelope(&unknown, &MessageLimits::DEFAULT),
        Err(MessageError::NoBody)
    );
}

#[test]
fn string_over_cap_is_too_long() {
    let long = "a".repeat(129);
    let e = env(Body::Push(PushRequest {
        readings: vec![reading(&long)],
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::TooLong {
            field: "reading.sensor",
            len: 129,
            max: 128
        })
    );
    let token = "t".repeat(257);
    let e = env(Body::Hello(Hello {
        protocol_version: 1,
        token,
        client_name: String::new(),
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::TooLong {
            field: "hello.token",
            len: 257,
            max: 256
        })
    );
}

#[test]
fn list_over_cap_is_too_many() {
    let limits = MessageLimits {
        max_readings: 3,
        ..MessageLimits::DEFAULT
    };
    let e = env(Body::Push(PushRequest {
        readings: vec![reading("a"); 4],
    }));
    assert_eq!(
        decode_envelope(&e.encode_to_vec(), &limits),
        Err(MessageError::TooMany {
            field: "push.readings",
            count: 4,
            max: 3
        })
    );
    let limits = MessageLimits {
        max_list_items: 2,
        ..MessageLimits::DEFAULT
    };
    let e = env(Body::Subscribe(SubscribeRequest {
        patterns: vec!["*".into(); 3],
    }));
    assert_eq!(
        decode_envelope(&e.encode_to_vec(), &limits),
        Err(MessageError::TooMany {
            field: "subscribe.patterns",
            count: 3,
            max: 2
        })
    );
}

#[test]
fn names_are_restricted_to_a_safe_set() {
    for bad in ["a b", "a\nb", "../x\u{0}", "é", "a*"] {
        let e = env(Body::Push(PushRequest {
            readings: vec![reading(bad)],
        }));
        assert_eq!(
            roundtrip(&e),
            Err(MessageError::BadCharacter {
                field: "reading.sensor"
            }),
            "{bad:?}"
        );
    }
    let e = env(Body::Subscribe(SubscribeRequest {
        patterns: vec!["room/*".into(), "gps:?at".into()],
    }));
    assert!(roundtrip(&e).is_ok());
    let e = env(Body::Subscribe(SubscribeRequest {
        patterns: vec![String::new()],
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::Empty {
            field: "subscribe.patterns"
        })
    );
}

/// The attack: a client name with a right-to-left override (U+202E)
/// reached terminals through `sensegate connections` and the log, showing
/// text in another order than it was written.
#[test]
fn format_and_separator_characters_in_text_are_rejected() {
    for bad in [
        "admin\u{202E}gnp.exe",
        "a\u{2066}b",
        "zero\u{200B}width",
        "\u{FEFF}bom",
        "line\u{2028}break",
        "para\u{2029}graph",
        "tag\u{E0041}",
        "soft\u{AD}hyphen",
    ] {
        let e = env(Body::Hello(Hello {
            protocol_version: 1,
            token: "x".into(),
            client_name: bad.into(),
        }));
        assert_eq!(
            roundtrip(&e),
            Err(MessageError::BadCharacter {
                field: "hello.client_name"
            }),
            "{bad:?}"
        );
    }
    for good in ["Grüße aus Köln", "温度センサー", "café – ok", "emoji 🌡"] {
        let e = env(Body::Hello(Hello {
            protocol_version: 1,
            token: "x".into(),
            client_name: good.into(),
        }));
        assert!(roundtrip(&e).is_ok(), "{good:?}");
    }
}

#[test]
fn control_characters_in_text_are_rejected() {
    let e = env(Body::Hello(Hello {
        protocol_version: 1,
        token: "x".into(),
        client_name: "evil\u{1b}[2J".into(),
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::BadCharacter {
            field: "hello.client_name"
        })
    );
}

#[test]
fn unknown_enum_and_bad_numbers_are_rejected() {
    let mut r = reading("a");
    r.quality = 9;
    let e = env(Body::Push(PushRequest { readings: vec![r] }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::UnknownEnum {
            field: "reading.quality",
            value: 9
        })
    );
    let e = env(Body::CreateToken(CreateTokenRequest {
        name: "n".into(),
        role: Role::Unspecified as i32,
        scope: "*".into(),
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::UnknownEnum {
            field: "create_token.role",
            value: 0
        })
    );
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut r = reading("a");
        r.value = v;
        let e = env(Body::Push(PushRequest { readings: vec![r] }));
        assert_eq!(
            roundtrip(&e),
            Err(MessageError::OutOfRange {
                field: "reading.value"
            })
        );
    }
    let mut r = reading("a");
    r.timestamp_us = -5;
    let e = env(Body::Push(PushRequest { readings: vec![r] }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::OutOfRange {
            field: "reading.timestamp_us"
        })
    );
}

#[test]
fn error_messages_never_echo_input() {
    let secret = "sg_SECRET_SECRET_SECRET";
    let e = env(Body::Hello(Hello {
        protocol_version: 1,
        token: format!("{secret} with space"),
        client_name: String::new(),
    }));
    let err = roundtrip(&e).unwrap_err();
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert!(validate(&e, &MessageLimits::DEFAULT).is_err());
}

#[test]
fn wire_names_are_stable() {
    assert_eq!(ErrorCode::FrameTooLarge.wire_name(), "FRAME_TOO_LARGE");
    assert_eq!(ErrorCode::Malformed.wire_name(), "MALFORMED");
    assert_eq!(ErrorCode::Unauthenticated.wire_name(), "UNAUTHENTICATED");
    assert_eq!(ErrorCode::Forbidden.wire_name(), "FORBIDDEN");
    assert_eq!(ErrorCode::NotFound.wire_name(), "NOT_FOUND");
    assert_eq!(ErrorCode::RateLimited.wire_name(), "RATE_LIMITED");
    assert_eq!(ErrorCode::Overloaded.wire_name(), "OVERLOADED");
    assert_eq!(ErrorCode::Internal.wire_name(), "INTERNAL");
    assert_eq!(ErrorCode::FrameTooLarge as i32, 1);
    assert_eq!(ErrorCode::Internal as i32, 8);
}

#[test]
fn pattern_and_text_over_cap_are_too_long() {
    let e = env(Body::Subscribe(SubscribeRequest {
        patterns: vec!["*".repeat(257)],
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::TooLong {
            field: "subscribe.patterns",
            len: 257,
            max: 256
        })
    );
    let e = env(Body::Hello(Hello {
        protocol_version: 1,
        token: "x".into(),
        client_name: "c".repeat(1025),
    }));
    assert_eq!(
        roundtrip(&e),
        Err(MessageError::TooLong {
            field: "hello.client_name",
            len: 1025,
            max: 1024
        })
    );
}
