//! The fixed header, and the decoder that cuts a byte stream into packets.
//!
//! A packet is one byte of type and flags, a remaining length (a variable
//! byte integer of one to four bytes), and that many bytes of body. The
//! decoder checks, in order, as soon as each is known:
//! 1. the type: before CONNECT only CONNECT is accepted, from its first
//!    byte;
//! 2. the remaining length: a fifth length byte is malformed;
//! 3. the whole packet's size against the cap in force (`max_connect_bytes`
//!    before CONNECT, `max_packet_bytes` after), before a byte of the body
//!    is waited for.
//!
//! Then it waits, reserving nothing, until every byte of the packet is in
//! the buffer, and only then parses it ([`crate::packet`]).

use std::borrow::Borrow;

use bytes::{Buf as _, BytesMut};

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::packet::{self, Packet, ProtocolVersion};

/// Cuts a byte stream into packets, for one connection. The caps are held
/// by value or shared (`Decoder<Arc<Limits>>`: one pointer per connection
/// instead of a copy).
#[derive(Debug, Clone)]
pub struct Decoder<L = Limits> {
    limits: L,
    /// Set by the CONNECT: the version every later packet is read as.
    version: Option<ProtocolVersion>,
    /// The version a CONNECT asked for, even one refused: what its
    /// CONNACK is encoded as.
    asked: Option<ProtocolVersion>,
}

impl<L: Borrow<Limits>> Decoder<L> {
    /// A decoder for a new connection, expecting CONNECT.
    #[must_use]
    pub const fn new(limits: L) -> Self {
        Self {
            limits,
            version: None,
            asked: None,
        }
    }

    /// The version to answer a CONNECT in: the one it asked for, once its
    /// protocol level was read, whether or not the rest was accepted.
    #[must_use]
    pub const fn reply_version(&self) -> Option<ProtocolVersion> {
        match self.version {
            Some(v) => Some(v),
            None => self.asked,
        }
    }

    /// The protocol version the CONNECT asked for, once decoded.
    #[must_use]
    pub const fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// How many more bytes the packet at the front of `buf` needs: `None`
    /// while its header is incomplete, `Some(0)` when it is whole. The same
    /// checks as [`Decoder::decode`] come first (type before CONNECT, the
    /// cap), so the figure is never more than the cap: an I/O loop may read
    /// up to it, and should still not reserve it ahead of the bytes.
    ///
    /// # Errors
    /// As [`Decoder::decode`] for the header.
    pub fn bytes_needed(&self, buf: &[u8]) -> Result<Option<usize>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        self.check_type(first)?;
        let Some((_, total)) = header(buf)? else {
            return Ok(None);
        };
        self.check_size(total)?;
        Ok(Some(total.saturating_sub(buf.len())))
    }

    fn check_type(&self, first: u8) -> Result<(), DecodeError> {
        let kind = first >> 4;
        if self.version.is_none() && kind != packet::CONNECT {
            return Err(DecodeError::Unexpected { kind });
        }
        Ok(())
    }

    fn check_size(&self, total: usize) -> Result<(), DecodeError> {
        let max = if self.version.is_some() {
            self.limits.borrow().max_packet_bytes
        } else {
            self.limits.borrow().max_connect_bytes
        };
        if total > max {
            return Err(DecodeError::TooLarge { len: total, max });
        }
        Ok(())
    }

    /// Takes the next whole packet off the front of `buf`, if it has
    /// arrived. `Ok(None)` means more bytes are needed; `buf` is untouched
    /// then, and nothing was reserved.
    ///
    /// # Errors
    /// [`DecodeError`]; the connection must then be closed (after the
    /// reason code, for MQTT 5).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        self.check_type(first)?;
        let Some((body_at, total)) = header(buf)? else {
            return Ok(None);
        };
        self.check_size(total)?;
        if buf.len() < total {
            return Ok(None);
        }
        let whole = buf.split_to(total).freeze();
        let mut body = whole;
        body.advance(body_at);
        if self.version.is_none() {
            self.asked = packet::asked_version(&body);
        }
        let packet = packet::parse(first, &body, self.version, self.limits.borrow())?;
        if let Packet::Connect(c) = &packet {
            self.version = Some(c.version);
        }
        Ok(Some(packet))
    }
}

/// Where the body starts and the packet's total size, once the remaining
/// length is complete (`None` before).
pub(crate) fn header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let body_at = 2 + i;
            return Ok(Some((body_at, body_at + remaining)));
        }
    }
    Err(DecodeError::BadLength)
}
