//! A request body read in the chunks it arrives in, under two caps: the
//! bytes sent (`max_body`) and, for `Content-Encoding: gzip`, the bytes
//! they inflate to (`max_decoded`). Inflating is done a bounded step at a
//! time into the consumer, so a gzip bomb is refused once the cap has been
//! inflated, never after it was inflated whole, and no step holds more
//! than one inflate buffer.
//!
//! The [`Decoder`] is sans-IO: it is fed chunks and hands decoded bytes to
//! a consumer; [`read`] drives it from an HTTP body.

use std::io::Write as _;

use axum::http::{HeaderMap, header};
use futures_util::StreamExt as _;

/// The body's encoding, from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As sent.
    Identity,
    /// gzip (RFC 1952), one member.
    Gzip,
}

impl Encoding {
    /// From the request headers; `None` for an encoding not supported (or
    /// more than one header, or a list).
    #[must_use]
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
        match (values.next(), values.next()) {
            (None, _) => Some(Self::Identity),
            (Some(v), None) => {
                let v = v.to_str().ok()?.trim();
                if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
                    Some(Self::Gzip)
                } else if v.eq_ignore_ascii_case("identity") {
                    Some(Self::Identity)
                } else {
                    None
                }
            }
            (Some(_), Some(_)) => None,
        }
    }
}

/// Why a body was not read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError<E> {
    /// More than `max_body` bytes were sent.
    TooLarge,
    /// It inflates to more than `max_decoded` bytes.
    DecodedTooLarge,
    /// Not valid gzip (corrupt, truncated, or data after its end).
    BadGzip,
    /// The connection failed or timed out while the body was read.
    Read,
    /// The consumer refused what it was given.
    Consumer(E),
}

/// Decoded bytes go to `each`; past `max` they stop.
struct Capped<F, E> {
    each: F,
    seen: usize,
    max: usize,
    stop: Option<BodyError<E>>,
}

impl<F: FnMut(&[u8]) -> Result<(), E>, E> std::io::Write for Capped<F, E> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.is_some() {
            return Err(std::io::Error::other("stopped"));
        }
        if buf.len() > self.max - self.seen {
            self.stop = Some(BodyError::DecodedTooLarge);
            return Err(std::io::Error::other("over the cap"));
        }
        self.seen += buf.len();
        match (self.each)(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.stop = Some(BodyError::Consumer(e));
                Err(std::io::Error::other("refused"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner<F: FnMut(&[u8]) -> Result<(), E>, E> {
    Identity(Capped<F, E>),
    Gzip(Box<flate2::write::GzDecoder<Capped<F, E>>>),
}

/// Decodes one body, chunk by chunk, into a consumer.
pub struct Decoder<F: FnMut(&[u8]) -> Result<(), E>, E> {
    inner: Inner<F, E>,
    sent: usize,
    max_body: usize,
}

impl<F: FnMut(&[u8]) -> Result<(), E>, E: Copy> Decoder<F, E> {
    /// A decoder for a body in `encoding`; `each` gets the decoded bytes.
    #[must_use]
    pub fn new(encoding: Encoding, max_body: usize, max_decoded: usize, each: F) -> Self {
        let sink = Capped {
            each,
            seen: 0,
            // Identity bodies are capped by what is sent.
            max: match encoding {
                Encoding::Identity => max_body,
                Encoding::Gzip => max_decoded,
            },
            stop: None,
        };
        let inner = match encoding {
            Encoding::Identity => Inner::Identity(sink),
            Encoding::Gzip => Inner::Gzip(Box::new(flate2::write::GzDecoder::new(sink))),
        };
        Self {
            inner,
            sent: 0,
            max_body,
        }
    }

    /// How many bytes of input to feed at a time between yields: a gzip
    /// kilobyte inflates to a megabyte at most; identity bytes are their
    /// own size.
    #[must_use]
    pub const fn step(&self) -> usize {
        match self.inner {
            Inner::Identity(_) => 64 << 10,
            Inner::Gzip(_) => 1 << 10,
        }
    }

    /// Feeds the next chunk as it arrived.
    ///
    /// # Errors
    /// [`BodyError`]; the decoder must not be fed again after one.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), BodyError<E>> {
        if chunk.len() > self.max_body - self.sent {
            return Err(BodyError::TooLarge);
        }
        self.sent += chunk.len();
        match &mut self.inner {
            Inner::Identity(sink) => sink.write_all(chunk).map_err(|_| stopped(sink)),
            // A gzip member that ended before the chunk did makes the
            // decoder take no more bytes: `write_all` then fails, and data
            // after the end is refused, as is a second member.
            Inner::Gzip(gz) => gz.write_all(chunk).map_err(|_| stopped(gz.get_ref())),
        }
    }

    /// The end of the body: a gzip stream must be complete (its trailer's
    /// checksum and length match).
    ///
    /// # Errors
    /// As [`Decoder::feed`].
    pub fn finish(mut self) -> Result<(), BodyError<E>> {
        match &mut self.inner {
            Inner::Identity(_) => Ok(()),
            Inner::Gzip(gz) => gz.try_finish().map_err(|_| stopped(gz.get_ref())),
        }
    }
}

/// Why a write failed: the sink's own reason, else the gzip stream.
fn stopped<F, E: Copy>(sink: &Capped<F, E>) -> BodyError<E> {
    sink.stop.unwrap_or(BodyError::BadGzip)
}

/// Reads `body` to its end through a [`Decoder`].
///
/// # Errors
/// [`BodyError`].
pub async fn read<F, E>(
    body: axum::body::Body,
    decoder: &mut Decoder<F, E>,
) -> Result<(), BodyError<E>>
where
    F: FnMut(&[u8]) -> Result<(), E>,
    E: Copy,
{
    let mut stream = body.into_data_stream();
    let step = decoder.step();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Read)?;
        // What one step inflates and parses is bounded by its input (gzip
        // expands at most about 1,000 times): the other tasks of this
        // thread run between steps.
        for piece in chunk.chunks(step) {
            decoder.feed(piece)?;
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(
        encoding: Encoding,
        chunks: &[&[u8]],
        max_body: usize,
        max_decoded: usize,
    ) -> Result<Vec<u8>, BodyError<()>> {
        let mut out = Vec::new();
        let mut d = Decoder::new(encoding, max_body, max_decoded, |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        });
        for c in chunks {
            d.feed(c)?;
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn gzip_inflates_in_any_chunking_and_identity_passes_through() {
        let text = b"cpu,host=gw1 usage=3\n".repeat(1000);
        let z = gzip(&text);
        for size in [1, 7, 512, z.len()] {
            let chunks: Vec<&[u8]> = z.chunks(size).collect();
            assert_eq!(
                decode(Encoding::Gzip, &chunks, 1 << 20, 1 << 20).unwrap(),
                text
            );
        }
        assert_eq!(
            decode(Encoding::Identity, &[b"ab", b"c"], 3, 0).unwrap(),
            b"abc"
        );
        assert_eq!(
            decode(Encoding::Identity, &[b"ab", b"cd"], 3, 1 << 20),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_cap_while_inflating() {
        // 64 MiB of zeros in about 64 KiB.
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        let mut inflated = 0usize;
        let mut d = Decoder::new(Encoding::Gzip, 1 << 20, 1 << 20, |b: &[u8]| {
            inflated += b.len();
            Ok::<(), ()>(())
        });
        let mut result = Ok(());
        for c in bomb.chunks(1024) {
            result = d.feed(c);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(BodyError::DecodedTooLarge));
        drop(d);
        assert!(inflated <= 1 << 20, "{inflated}");
    }

    #[test]
    fn corrupt_truncated_or_trailing_gzip_is_refused() {
        let z = gzip(b"m v=1\n");
        assert_eq!(
            decode(Encoding::Gzip, &[&z[..z.len() - 3]], 1024, 1024),
            Err(BodyError::BadGzip)
        );
        assert_eq!(
            decode(Encoding::Gzip, &[b"not gzip at all"], 1024, 1024),
            Err(BodyError::BadGzip)
        );
        let mut twice = z.clone();
        twice.extend_from_slice(b"more");
        assert_eq!(
            decode(Encoding::Gzip, &[&twice], 1024, 1024),
            Err(BodyError::BadGzip)
        );
        assert_eq!(
            decode(Encoding::Gzip, &[&z], 3, 1024),
            Err(BodyError::TooLarge)
        );
    }

    #[test]
    fn the_consumer_can_stop_the_body() {
        let mut d = Decoder::new(Encoding::Identity, 100, 100, |_: &[u8]| Err(7u8));
        assert_eq!(d.feed(b"x"), Err(BodyError::Consumer(7)));
    }

    #[test]
    fn encodings_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(Encoding::of(&h), Some(Encoding::Identity));
        h.insert(header::CONTENT_ENCODING, "GZIP".parse().unwrap());
        assert_eq!(Encoding::of(&h), Some(Encoding::Gzip));
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert_eq!(Encoding::of(&h), None);
        h.insert(header::CONTENT_ENCODING, "gzip, gzip".parse().unwrap());
        assert_eq!(Encoding::of(&h), None);
    }
}
