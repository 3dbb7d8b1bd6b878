//! The frame codec: length-prefixed frames over bytes, with no I/O.
//!
//! A frame is a 4-byte unsigned little-endian length `N`, then `N` bytes of
//! payload, with `1 <= N <= max_frame_bytes` (see [`FrameLimit`]). This module
//! owns exactly that and nothing else: it does not know what a payload means
//! (see [`crate::envelope`]) and never touches a socket.
//!
//! Two properties matter more than speed here, and the tests assert both:
//! - the declared length is checked against the cap *before* anything else
//!   happens, so an oversized frame is rejected from its header alone;
//! - the declared length never reserves memory. The decoder only splits off
//!   bytes that have already arrived, so a peer that announces 1 MiB and sends
//!   10 bytes has cost the daemon 10 bytes of buffer, not 1 MiB. (tokio-util's
//!   `LengthDelimitedCodec` reserves the whole declared frame when it reads the
//!   header; that is the behaviour this codec exists to avoid.)

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default cap on a frame's payload: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;

/// No configuration may raise the frame cap above this: 16 MiB.
pub const HARD_MAX_FRAME_BYTES: u32 = 16 << 20;

/// A validated cap on frame payload size, in `1..=HARD_MAX_FRAME_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLimit(u32);

impl FrameLimit {
    /// The default cap, [`DEFAULT_MAX_FRAME_BYTES`].
    pub const DEFAULT: Self = Self(DEFAULT_MAX_FRAME_BYTES);

    /// A cap of `max_frame_bytes`.
    ///
    /// # Errors
    /// [`LimitError`] when the value is zero or above [`HARD_MAX_FRAME_BYTES`].
    pub const fn new(max_frame_bytes: u32) -> Result<Self, LimitError> {
        if max_frame_bytes == 0 || max_frame_bytes > HARD_MAX_FRAME_BYTES {
            Err(LimitError {
                value: max_frame_bytes,
            })
        } else {
            Ok(Self(max_frame_bytes))
        }
    }

    /// The cap in bytes.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for FrameLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A frame cap outside `1..=HARD_MAX_FRAME_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("max_frame_bytes must be between 1 and {HARD_MAX_FRAME_BYTES}, got {value}")]
pub struct LimitError {
    /// The rejected value.
    pub value: u32,
}

/// Why a byte stream is not a valid sequence of frames. Every variant ends the
/// stream: after it, the bytes that follow cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The header declares more than the cap. The payload was not read.
    #[error("frame of {declared} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// Length the header declared.
        declared: u32,
        /// The cap in force.
        max: u32,
    },
    /// The header declares a zero-length frame.
    #[error("zero-length frame")]
    Empty,
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {received} of {expected} bytes received")]
    Truncated {
        /// Bytes of the unfinished frame (header included) that arrived.
        received: usize,
        /// Bytes that frame needed (header included); 4 when the header
        /// itself was cut short.
        expected: usize,
    },
}

/// One frame's payload. Shares the buffer it was decoded from (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    payload: Bytes,
}

impl Frame {
    /// The payload bytes.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, consuming the frame.
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        self.payload
    }
}

/// Decodes frames from a byte buffer that an I/O loop fills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameDecoder {
    limit: FrameLimit,
}

impl FrameDecoder {
    /// A decoder that enforces `limit`.
    #[must_use]
    pub const fn new(limit: FrameLimit) -> Self {
        Self { limit }
    }

    /// The cap this decoder enforces.
    #[must_use]
    pub const fn limit(&self) -> FrameLimit {
        self.limit
    }

    /// Takes the next whole frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds no whole frame yet; that is not an
    /// error, the caller reads more and calls again. Never reserves or
    /// allocates buffer space: on `Ok(None)`, `buf` is untouched.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] or [`FrameError::Empty`] as soon as the header
    /// has arrived; the stream cannot continue after either.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(total) = self.frame_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(total - HEADER_LEN).freeze();
        Ok(Some(Frame { payload }))
    }

    /// As [`decode`](Self::decode), for when the stream has ended: bytes left
    /// over that do not make a whole frame are an error.
    ///
    /// # Errors
    /// As [`decode`](Self::decode), and [`FrameError::Truncated`] when `buf`
    /// holds part of a frame.
    pub fn decode_eof(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let expected = self.frame_len(buf)?.unwrap_or(HEADER_LEN);
        Err(FrameError::Truncated {
            received: buf.len(),
            expected,
        })
    }

    /// How many more bytes the frame at the front of `buf` needs before
    /// [`decode`](Self::decode) can return it (0 when it is whole). A read loop
    /// uses this to read no further ahead than the current frame, so it never
    /// buffers a peer's next frames while the current one is unfinished.
    ///
    /// # Errors
    /// As [`decode`](Self::decode) for a bad header.
    pub fn bytes_needed(&self, buf: &[u8]) -> Result<usize, FrameError> {
        Ok(match self.frame_len(buf)? {
            Some(total) => total.saturating_sub(buf.len()),
            None => HEADER_LEN - buf.len(),
        })
    }

    /// The checked payload length the frame at the front of `buf` declares,
    /// or `None` when its header has not arrived. An I/O loop uses it to
    /// account for a frame as soon as its header is in, before its payload.
    ///
    /// # Errors
    /// As [`decode`](Self::decode) for a bad header.
    pub fn declared_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        Ok(self.frame_len(buf)?.map(|total| total - HEADER_LEN))
    }

    /// Total length (header included) of the frame at the front of `buf`, or
    /// `None` when its header has not arrived. Checks the header.
    fn frame_len(self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(declared) = peek_header(buf) else {
            return Ok(None);
        };
        if declared == 0 {
            return Err(FrameError::Empty);
        }
        if declared > self.limit.get() {
            return Err(FrameError::TooLarge {
                declared,
                max: self.limit.get(),
            });
        }
        Ok(Some(HEADER_LEN + to_usize(declared)))
    }
}

/// Appends one frame holding `payload` to `dst`.
///
/// # Errors
/// [`FrameError::Empty`] for an empty payload, [`FrameError::TooLarge`] for one
/// over `limit`; `dst` is untouched then.
pub fn encode(payload: &[u8], limit: FrameLimit, dst: &mut BytesMut) -> Result<(), FrameError> {
    let declared = check_outgoing(payload.len(), limit)?;
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_u32_le(declared);
    dst.put_slice(payload);
    Ok(())
}

/// Appends one frame holding `message`, encoded straight into `dst` (no
/// intermediate buffer).
///
/// # Errors
/// As [`encode`], for the encoded message.
///
/// # Panics
/// Never: `dst` grows on demand and the space was reserved first, so the
/// encoder cannot run out of room.
pub fn encode_message<M: prost::Message>(
    message: &M,
    limit: FrameLimit,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let len = message.encoded_len();
    let declared = check_outgoing(len, limit)?;
    dst.reserve(HEADER_LEN + len);
    dst.put_u32_le(declared);
    message
        .encode(dst)
        .expect("BytesMut grows on demand and space was reserved, so encoding cannot run short");
    Ok(())
}

fn check_outgoing(len: usize, limit: FrameLimit) -> Result<u32, FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    match u32::try_from(len) {
        Ok(declared) if declared <= limit.get() => Ok(declared),
        _ => Err(FrameError::TooLarge {
            declared: u32::try_from(len).unwrap_or(u32::MAX),
            max: limit.get(),
        }),
    }
}

fn peek_header(buf: &[u8]) -> Option<u32> {
    let header: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_le_bytes(header))
}

/// Frame lengths are at most [`HARD_MAX_FRAME_BYTES`], which fits in `usize`
/// on every target with at least 32-bit pointers (the only ones supported).
fn to_usize(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u32) -> FrameLimit {
        FrameLimit::new(n).unwrap()
    }

    #[test]
    fn limit_rejects_zero_and_above_ceiling() {
        assert_eq!(FrameLimit::new(0), Err(LimitError { value: 0 }));
        assert!(FrameLimit::new(HARD_MAX_FRAME_BYTES).is_ok());
        assert_eq!(
            FrameLimit::new(HARD_MAX_FRAME_BYTES + 1),
            Err(LimitError {
                value: HARD_MAX_FRAME_BYTES + 1
            })
        );
        assert_eq!(FrameLimit::default().get(), 1 << 20);
    }

    #[test]
    fn declared_len_reads_a_checked_header_without_the_payload() {
        let d = FrameDecoder::new(limit(8));
        assert_eq!(d.declared_len(b"\x05\x00\x00"), Ok(None));
        assert_eq!(d.declared_len(b"\x05\x00\x00\x00ab"), Ok(Some(5)));
        assert_eq!(d.declared_len(b"\x00\x00\x00\x00"), Err(FrameError::Empty));
        assert_eq!(
            d.declared_len(b"\x09\x00\x00\x00"),
            Err(FrameError::TooLarge {
                declared: 9,
                max: 8
            })
        );
    }

    #[test]
    fn decodes_one_frame_and_leaves_the_rest() {
        let mut buf = BytesMut::from(&b"\x03\x00\x00\x00abc\x02\x00"[..]);
        let frame = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.payload(), b"abc");
        assert_eq!(&buf[..], b"\x02\x00");
        assert_eq!(FrameDecoder::default().decode(&mut buf), Ok(None));
    }

    #[test]
    fn partial_frame_is_none_and_untouched() {
        let mut buf = BytesMut::from(&b"\x05\x00\x00\x00ab"[..]);
        let before = buf.clone();
        assert_eq!(FrameDecoder::default().decode(&mut buf), Ok(None));
        assert_eq!(buf, before);
        assert_eq!(FrameDecoder::default().bytes_needed(&buf), Ok(3));
    }

    #[test]
    fn oversized_header_is_rejected_before_payload() {
        let mut buf = BytesMut::from(&b"\x0b\x00\x00\x00"[..]);
        assert_eq!(
            FrameDecoder::new(limit(10)).decode(&mut buf),
            Err(FrameError::TooLarge {
                declared: 11,
                max: 10
            })
        );
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::TooLarge {
                declared: u32::MAX,
                max: DEFAULT_MAX_FRAME_BYTES
            })
        );
    }

    #[test]
    fn exactly_the_cap_is_accepted() {
        let mut buf = BytesMut::new();
        encode(&[7; 10], limit(10), &mut buf).unwrap();
        let frame = FrameDecoder::new(limit(10)).decode(&mut buf).unwrap();
        assert_eq!(frame.unwrap().payload(), &[7; 10]);
    }

    #[test]
    fn zero_length_is_an_error() {
        let mut buf = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(
            FrameDecoder::default().decode(&mut buf),
            Err(FrameError::Empty)
        );
        assert_eq!(
            encode(b"", FrameLimit::DEFAULT, &mut BytesMut::new()),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn eof_inside_header_or_payload_is_truncated() {
        let d = FrameDecoder::default();
        let mut buf = BytesMut::from(&b"\x05\x00"[..]);
        assert_eq!(
            d.decode_eof(&mut buf),
            Err(FrameError::Truncated {
                received: 2,
                expected: 4
            })
        );
        let mut buf = BytesMut::from(&b"\x05\x00\x00\x00ab"[..]);
        assert_eq!(
            d.decode_eof(&mut buf),
            Err(FrameError::Truncated {
                received: 6,
                expected: 9
            })
        );
        assert_eq!(d.decode_eof(&mut BytesMut::new()), Ok(None));
    }

    #[test]
    fn encode_rejects_over_cap_and_leaves_dst_untouched() {
        let mut dst = BytesMut::from(&b"x"[..]);
        assert_eq!(
            encode(&[0; 11], limit(10), &mut dst),
            Err(FrameError::TooLarge {
                declared: 11,
                max: 10
            })
        );
        assert_eq!(&dst[..], b"x");
    }
}
