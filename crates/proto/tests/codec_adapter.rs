//! The tokio-util adapter, through `Framed` over an in-memory duplex pipe.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sensegate_proto::codec::{CodecError, FrameCodec};
use sensegate_proto::v1::{Envelope, Ping, envelope::Body};
use sensegate_proto::{FrameError, FrameLimit, MessageLimits, decode_envelope};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{Framed, FramedRead};

#[tokio::test]
async fn envelopes_cross_a_framed_pipe() {
    let (a, b) = tokio::io::duplex(64);
    let mut tx = Framed::new(a, FrameCodec::default());
    let mut rx = Framed::new(b, FrameCodec::default());
    let sent = Envelope {
        request_id: 7,
        body: Some(Body::Ping(Ping { nonce: 42 })),
    };
    let writer = tokio::spawn(async move {
        for _ in 0..3 {
            tx.send(&sent).await.unwrap();
        }
        tx.send(Bytes::from_static(b"raw")).await.unwrap();
    });
    for _ in 0..3 {
        let frame = rx.next().await.unwrap().unwrap();
        let got = decode_envelope(frame.payload(), &MessageLimits::DEFAULT).unwrap();
        assert_eq!(got.request_id, 7);
        assert_eq!(got.body, Some(Body::Ping(Ping { nonce: 42 })));
    }
    assert_eq!(rx.next().await.unwrap().unwrap().payload(), b"raw");
    writer.await.unwrap();
    assert!(
        rx.next().await.is_none(),
        "clean end of stream after whole frames"
    );
}

#[tokio::test]
async fn eof_inside_a_frame_is_truncated() {
    let (mut a, b) = tokio::io::duplex(64);
    a.write_all(&[10, 0, 0, 0, 1, 2, 3]).await.unwrap();
    drop(a);
    let mut rx = FramedRead::new(b, FrameCodec::default());
    match rx.next().await {
        Some(Err(CodecError::Frame(FrameError::Truncated {
            received: 7,
            expected: 14,
        }))) => {}
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_header_errors_without_payload() {
    let (mut a, b) = tokio::io::duplex(64);
    a.write_all(&65u32.to_le_bytes()).await.unwrap();
    let mut rx = FramedRead::new(b, FrameCodec::new(FrameLimit::new(64).unwrap()));
    match rx.next().await {
        Some(Err(CodecError::Frame(FrameError::TooLarge {
            declared: 65,
            max: 64,
        }))) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn encoder_refuses_over_cap() {
    let (a, _b) = tokio::io::duplex(64);
    let mut tx = Framed::new(a, FrameCodec::new(FrameLimit::new(4).unwrap()));
    let err = tx.send(Bytes::from_static(b"12345")).await.unwrap_err();
    assert!(matches!(
        err,
        CodecError::Frame(FrameError::TooLarge {
            declared: 5,
            max: 4
        })
    ));
}
