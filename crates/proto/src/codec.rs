//! A tokio-util [`Decoder`]/[`Encoder`] adapter over the sans-IO frame codec,
//! for use with `Framed` in clients and tools.
//!
//! It keeps the sans-IO codec's allocation property: decoding never reserves
//! room for a declared length; `Framed` grows its buffer only as bytes arrive.

use std::io;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{self, Frame, FrameDecoder, FrameError, FrameLimit};

/// Frames for `tokio_util::codec::Framed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec enforcing `limit` in both directions.
    #[must_use]
    pub const fn new(limit: FrameLimit) -> Self {
        Self {
            decoder: FrameDecoder::new(limit),
        }
    }
}

/// A framing or transport failure.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The byte stream is not valid framing.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode_eof(src)?)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame::encode(&payload, self.decoder.limit(), dst)?)
    }
}

impl<M: prost::Message> Encoder<&M> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, message: &M, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame::encode_message(message, self.decoder.limit(), dst)?)
    }
}
