//! Reading and writing MQTT's field types over a packet body that has
//! arrived whole: integers, variable byte integers, strings, binary data.
//! Every read is bounds-checked; nothing is allocated beyond the bytes that
//! are there.

use bytes::BufMut;

use crate::error::DecodeError;

/// Largest value of a variable byte integer (four bytes).
pub const MAX_VARINT: usize = 268_435_455;

/// A cursor over one packet's body.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub const fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub const fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer: at most four bytes.
    pub fn varint(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8(field)?;
            value |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadLength)
    }

    /// Binary data: a two-byte length, then the bytes; at most `max`.
    pub fn binary(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::FieldTooLong { field, len, max });
        }
        self.take(len, field)
    }

    /// A UTF-8 string without U+0000, at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let bytes = self.binary(field, max)?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadString { field })?;
        if s.contains('\0') {
            return Err(DecodeError::BadString { field });
        }
        Ok(s)
    }

    /// Everything left (a payload).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    /// The next `len` bytes as a reader of their own (a property list).
    pub fn sub(&mut self, len: usize, field: &'static str) -> Result<Self, DecodeError> {
        Ok(Self::new(self.take(len, field)?))
    }
}

/// Appends a variable byte integer (`value` at most [`MAX_VARINT`]).
pub fn put_varint(out: &mut impl BufMut, mut value: usize) {
    debug_assert!(value <= MAX_VARINT);
    loop {
        #[allow(clippy::cast_possible_truncation, reason = "masked to 7 bits")]
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Bytes a variable byte integer of `value` takes.
pub const fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}
