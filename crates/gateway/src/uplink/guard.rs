//! A cap on each message a PostgreSQL server sends the uplink.
//!
//! tokio-postgres buffers a backend message until all of it has arrived,
//! with no cap on its declared length: a hostile or broken server could
//! make the daemon hold gigabytes for one row. The uplink's replies are
//! small (a status, an error, a few ids), so [`Capped`] reads the framing
//! as the bytes pass (a tag byte, a big-endian length that counts itself,
//! the body) and fails the read as soon as a header declares more than the
//! cap, before the body is buffered. [`Frames`] is that check without I/O.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The framing of the bytes read so far.
#[derive(Debug, Clone)]
pub struct Frames {
    max: u32,
    /// Header bytes of the current message seen (0..5), and the header.
    header: [u8; 5],
    got: usize,
    /// Body bytes of the current message still to come.
    left: u64,
}

/// A message declared longer than the cap, or shorter than its own length
/// field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server sent a message of {declared} bytes (tag {tag:?}), over the cap of {max}")]
pub struct TooLarge {
    /// Its tag.
    pub tag: char,
    /// Its declared length.
    pub declared: u32,
    /// The cap.
    pub max: u32,
}

impl Frames {
    /// No message may declare more than `max` bytes.
    #[must_use]
    pub const fn new(max: u32) -> Self {
        Self {
            max,
            header: [0; 5],
            got: 0,
            left: 0,
        }
    }

    /// Checks the next `bytes` of the stream.
    ///
    /// # Errors
    /// [`TooLarge`] for a header past the cap (or one whose length is less
    /// than the 4 bytes of the length itself).
    pub fn check(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = usize::try_from(self.left).map_or(bytes.len(), |l| l.min(bytes.len()));
                self.left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.got).min(bytes.len());
            self.header[self.got..self.got + n].copy_from_slice(&bytes[..n]);
            self.got += n;
            bytes = &bytes[n..];
            if self.got == 5 {
                self.got = 0;
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                if len < 4 || len > self.max {
                    return Err(TooLarge {
                        tag: char::from(self.header[0]),
                        declared: len,
                        max: self.max,
                    });
                }
                self.left = u64::from(len - 4);
            }
        }
        Ok(())
    }
}

/// A stream whose reads are checked by [`Frames`].
#[derive(Debug)]
pub struct Capped<S> {
    inner: S,
    frames: Frames,
}

impl<S> Capped<S> {
    /// Wraps `inner`; no message read may declare more than `max` bytes.
    pub const fn new(inner: S, max: u32) -> Self {
        Self {
            inner,
            frames: Frames::new(max),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                match this.frames.check(new) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Capped<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        // The server is authenticated by its certificate (verified against
        // the configured CA); SCRAM runs without channel binding, whose hash
        // would have to follow the certificate's signature algorithm.
        tokio_postgres::tls::ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: usize) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&u32::try_from(body + 4).unwrap().to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body));
        m
    }

    #[test]
    fn messages_within_the_cap_pass_in_any_split() {
        let mut stream = msg(b'Z', 1);
        stream.extend(msg(b'D', 1000));
        stream.extend(msg(b'C', 0));
        for step in [1, 2, 3, 5, 7, 100, stream.len()] {
            let mut f = Frames::new(1004);
            for part in stream.chunks(step) {
                f.check(part).unwrap();
            }
        }
    }

    #[test]
    fn a_header_past_the_cap_fails_before_its_body() {
        let mut f = Frames::new(1 << 20);
        f.check(&msg(b'Z', 1)).unwrap();
        // Only the header of a 1 GiB row arrives: refused at once.
        let e = f.check(&[b'D', 0x40, 0, 0, 0]).unwrap_err();
        assert_eq!(e.declared, 1 << 30);
        assert_eq!(e.tag, 'D');
        // A length below its own 4 bytes is refused too.
        let mut f = Frames::new(1 << 20);
        assert!(f.check(&[b'D', 0, 0, 0, 3]).is_err());
    }

    #[tokio::test]
    async fn a_capped_stream_fails_the_read() {
        use tokio::io::AsyncReadExt as _;
        let (mut a, b) = tokio::io::duplex(64);
        let mut capped = Capped::new(b, 100);
        tokio::io::AsyncWriteExt::write_all(&mut a, &msg(b'D', 10))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(capped.read(&mut buf).await.unwrap(), 15);
        tokio::io::AsyncWriteExt::write_all(&mut a, &[b'D', 0, 1, 0, 0])
            .await
            .unwrap();
        let e = capped.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
