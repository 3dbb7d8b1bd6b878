//! Allocation bounds of the frame decoder, measured with a counting global
//! allocator: a declared length never makes the decoder allocate; what a
//! partial frame costs follows the bytes that actually arrived.
//!
//! The last case runs tokio-util's `LengthDelimitedCodec` through the same
//! measurement and shows it reserving the declared megabyte, which is the
//! behaviour the first cases rule out (and proof that the counter sees it).
//!
//! The counters are process-wide, so the cases run in order inside one test:
//! with several tests in this binary, `cargo test` would start and report
//! them on other threads while one is measuring, and those threads'
//! allocations would land in its count. With one test, the harness's only
//! other thread waits for it without allocating, under `cargo test` as
//! under nextest.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::alloc::System;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::StreamExt;
use sensegate_proto::codec::{CodecError, FrameCodec};
use sensegate_proto::{FrameDecoder, FrameError};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, Stats, StatsAlloc};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::FramedRead;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const MIB: u32 = 1 << 20;

/// Bytes obtained from the allocator. `stats_alloc` counts the growth of a
/// `realloc` in `bytes_allocated` too, so this is every byte ever handed out.
fn obtained(s: &Stats) -> usize {
    s.bytes_allocated
}

fn header(len: u32) -> [u8; 4] {
    len.to_le_bytes()
}

fn oversized_header_allocates_nothing() {
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&header(u32::MAX));
    buf.extend_from_slice(&[0; 32]);
    let region = Region::new(GLOBAL);
    let result = decoder.decode(&mut buf);
    let stats = region.change();
    assert_eq!(
        result,
        Err(FrameError::TooLarge {
            declared: u32::MAX,
            max: MIB
        })
    );
    assert_eq!(obtained(&stats), 0, "{stats:?}");
}

fn declared_megabyte_with_ten_bytes_allocates_nothing_in_decode() {
    let decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&header(MIB));
    buf.extend_from_slice(&[7; 10]);
    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
    let stats = region.change();
    assert_eq!(obtained(&stats), 0, "{stats:?}");
    assert_eq!(buf.capacity(), 64, "decode must not reserve");
}

/// A peer trickles a 1 MiB frame one byte at a time; the buffer an I/O loop
/// keeps grows with the bytes received (amortised doubling at most), never
/// towards the declared length.
fn trickled_frame_costs_what_arrived() {
    let decoder = FrameDecoder::default();
    let region = Region::new(GLOBAL);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&header(MIB));
    let mut received = 4;
    for i in 0..5_000u32 {
        buf.extend_from_slice(&[i.to_le_bytes()[0]]);
        received += 1;
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
    let stats = region.change();
    assert!(
        obtained(&stats) <= 2 * received + 64,
        "obtained {} bytes for {received} received: {stats:?}",
        obtained(&stats)
    );
}

/// Yields `data` one byte per read, then end of stream.
struct Trickle {
    data: Vec<u8>,
    at: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(&b) = self.data.get(self.at) {
            buf.put_slice(&[b]);
            self.at += 1;
        }
        Poll::Ready(Ok(()))
    }
}

fn trickle_megabyte_header(tail: usize) -> Trickle {
    let mut data = header(MIB).to_vec();
    data.resize(4 + tail, 0xAB);
    Trickle { data, at: 0 }
}

/// `FramedRead` starts with an 8 KiB buffer; through our codec a trickled
/// 1 MiB frame costs that buffer and nothing more, until the stream ends.
fn framed_read_with_our_codec_stays_small() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reader = trickle_megabyte_header(2_000);
    let region = Region::new(GLOBAL);
    let mut framed = FramedRead::new(reader, FrameCodec::default());
    let result = rt.block_on(framed.next());
    drop(framed);
    let stats = region.change();
    assert!(matches!(
        result,
        Some(Err(CodecError::Frame(FrameError::Truncated { received: 2_004, expected })))
            if expected == 4 + MIB as usize
    ));
    assert!(obtained(&stats) <= 8 * 1024 + 2 * 2_004 + 256, "{stats:?}");
}

/// The control: tokio-util's `LengthDelimitedCodec` reserves the declared
/// megabyte as soon as the header arrives. If this ever stops holding, the
/// comparison in the docs must change, not the bound above.
#[expect(
    clippy::disallowed_methods,
    reason = "the control case for the bound above"
)]
fn length_delimited_codec_reserves_the_declared_length() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let reader = trickle_megabyte_header(10);
    let codec = tokio_util::codec::LengthDelimitedCodec::builder()
        .little_endian()
        .max_frame_length(MIB as usize)
        .new_codec();
    let region = Region::new(GLOBAL);
    let mut framed = FramedRead::new(reader, codec);
    let result = rt.block_on(framed.next());
    let stats = region.change();
    assert!(matches!(result, Some(Err(_))));
    assert!(obtained(&stats) >= MIB as usize, "{stats:?}");
}

#[test]
fn allocation_bounds_hold_one_case_at_a_time() {
    oversized_header_allocates_nothing();
    declared_megabyte_with_ten_bytes_allocates_nothing_in_decode();
    trickled_frame_costs_what_arrived();
    framed_read_with_our_codec_stays_small();
    length_delimited_codec_reserves_the_declared_length();
}
