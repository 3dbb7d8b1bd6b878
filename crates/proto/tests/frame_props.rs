//! Property tests of the frame codec: every frame round-trips, and any byte
//! stream decodes to the same frames however it is split into reads.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use bytes::BytesMut;
use proptest::prelude::*;
use sensegate_proto::frame::{self, FrameDecoder, FrameError, FrameLimit, HEADER_LEN};

const CAP: u32 = 4096;

fn limit() -> FrameLimit {
    FrameLimit::new(CAP).unwrap()
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20)
}

fn encode_all(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for p in payloads {
        frame::encode(p, limit(), &mut buf).unwrap();
    }
    buf.to_vec()
}

/// Feeds `stream` to a decoder in pieces cut at `cuts`, collecting frames,
/// then signals the end of the stream.
fn decode_in_pieces(stream: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, FrameError> {
    let decoder = FrameDecoder::new(limit());
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for p in points {
        buf.extend_from_slice(&stream[at..p]);
        at = p;
        while let Some(f) = decoder.decode(&mut buf)? {
            out.push(f.payload().to_vec());
        }
    }
    if let Some(f) = decoder.decode_eof(&mut buf)? {
        out.push(f.payload().to_vec());
    }
    Ok(out)
}

proptest! {
    #[test]
    fn every_frame_round_trips(payloads in payloads()) {
        let stream = encode_all(&payloads);
        prop_assert_eq!(stream.len(), payloads.iter().map(|p| p.len() + HEADER_LEN).sum::<usize>());
        prop_assert_eq!(decode_in_pieces(&stream, &[]).unwrap(), payloads);
    }

    #[test]
    fn any_split_decodes_the_same(
        payloads in payloads(),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = encode_all(&payloads);
        prop_assert_eq!(decode_in_pieces(&stream, &cuts).unwrap(), payloads);
    }

    /// Arbitrary bytes, split anywhere, give the same outcome as the whole
    /// stream at once: same frames, or the same error.
    #[test]
    fn arbitrary_bytes_split_anywhere_agree(
        stream in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        prop_assert_eq!(decode_in_pieces(&stream, &cuts), decode_in_pieces(&stream, &[]));
    }

    /// A truncated stream is an error at the end, never a panic or a frame.
    #[test]
    fn truncated_stream_is_truncated_error(payloads in payloads(), cut in any::<usize>()) {
        let stream = encode_all(&payloads);
        prop_assume!(!stream.is_empty());
        let end = cut % stream.len();
        let boundaries: Vec<usize> = payloads.iter().scan(0, |acc, p| { *acc += p.len() + HEADER_LEN; Some(*acc) }).collect();
        let result = decode_in_pieces(&stream[..end], &[]);
        if end == 0 || boundaries.contains(&end) {
            prop_assert!(result.is_ok());
        } else {
            let is_truncated = matches!(result, Err(FrameError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
    }

    #[test]
    fn bytes_needed_is_exact(payload in proptest::collection::vec(any::<u8>(), 1..300), keep in any::<usize>()) {
        let stream = encode_all(std::slice::from_ref(&payload));
        let keep = keep % stream.len();
        let decoder = FrameDecoder::new(limit());
        let needed = if keep < HEADER_LEN { HEADER_LEN - keep } else { stream.len() - keep };
        prop_assert_eq!(decoder.bytes_needed(&stream[..keep]), Ok(needed));
    }
}

#[test]
fn header_of_u32_max_is_too_large() {
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    assert_eq!(
        FrameDecoder::new(limit()).decode(&mut buf),
        Err(FrameError::TooLarge {
            declared: u32::MAX,
            max: CAP
        })
    );
}

#[test]
fn one_over_the_cap_is_too_large_and_the_cap_is_fine() {
    let over = (CAP + 1).to_le_bytes();
    assert_eq!(
        FrameDecoder::new(limit()).decode(&mut BytesMut::from(&over[..])),
        Err(FrameError::TooLarge {
            declared: CAP + 1,
            max: CAP
        })
    );
    let mut exact = BytesMut::new();
    frame::encode(&vec![1; CAP as usize], limit(), &mut exact).unwrap();
    assert_eq!(
        FrameDecoder::new(limit())
            .decode(&mut exact)
            .unwrap()
            .unwrap()
            .payload()
            .len(),
        CAP as usize
    );
}
