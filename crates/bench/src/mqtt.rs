//! Just enough MQTT 3.1.1 for the comparison: connect (anonymous, or with a
//! user name and password: sensegate's MQTT listener takes the token as the
//! password), subscribe at QoS 0, publish at QoS 0 and 1, and read
//! publishes and acknowledgements, over any byte stream.
//!
//! Hand-written rather than a client crate: the load tool must be cheap per
//! message (it shares the machine with the broker), needs no session state
//! for QoS 0, and the crates on offer bring a second TLS backend. A broker
//! is a peer like any other, so lengths are checked before anything is
//! buffered.

use anyhow::{Result, bail};
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::net::Io;

/// Largest packet accepted from the broker.
const MAX_PACKET: usize = 64 << 10;

/// A connected MQTT session.
pub struct Mqtt {
    io: Box<dyn Io>,
    buf: BytesMut,
    next_id: u16,
}

/// The remaining-length field: 1 to 4 bytes, 7 bits each.
fn put_length(out: &mut BytesMut, mut n: usize) {
    loop {
        let byte = u8::try_from(n % 128).unwrap_or(0);
        n /= 128;
        if n == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s);
}

/// A whole packet at the front of `buf`: (first byte, header length, body
/// length), or `None` when more bytes are needed.
fn frame(buf: &[u8]) -> Result<Option<(u8, usize, usize)>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if len > MAX_PACKET {
                bail!("broker packet of {len} bytes is over the {MAX_PACKET} cap");
            }
            return Ok(Some((first, 2 + i, len)));
        }
    }
    bail!("bad remaining length")
}

/// An encoded QoS 0 publish of `payload` to `topic`.
#[must_use]
pub fn publish_packet(topic: &str, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(8 + topic.len() + payload.len());
    out.put_u8(0x30);
    put_length(&mut out, 2 + topic.len() + payload.len());
    put_str(&mut out, topic.as_bytes());
    out.put_slice(payload);
    out
}

/// An encoded QoS 1 publish of `payload` to `topic` with `packet_id`,
/// appended to `out`.
pub fn put_publish_qos1(out: &mut BytesMut, topic: &str, packet_id: u16, payload: &[u8]) {
    out.put_u8(0x32);
    put_length(out, 2 + topic.len() + 2 + payload.len());
    put_str(out, topic.as_bytes());
    out.put_u16(packet_id);
    out.put_slice(payload);
}

/// The timestamp in a JSON payload's `"ts_us"` field (what the load tool
/// publishes, and what sensegate's MQTT listener sends with
/// `payload = "json"`).
#[must_use]
pub fn json_ts_us(payload: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"ts_us\":";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = payload[at..]
        .iter()
        .copied()
        .skip_while(u8::is_ascii_whitespace)
        .take_while(|b| b.is_ascii_digit() || *b == b'-')
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

impl Mqtt {
    /// Connects to `addr` (from `from`, TLS offering ALPN `mqtt` when
    /// `tls` is set) and logs in with `password` when given: what every
    /// MQTT scenario opens.
    ///
    /// # Errors
    /// Connecting, the handshake or the CONNECT failed.
    pub async fn open(
        addr: std::net::SocketAddr,
        from: Option<std::net::IpAddr>,
        tls: Option<&sensegate_client::pin::TlsOptions>,
        password: Option<&sensegate_client::Secret>,
        client_id: &str,
    ) -> Result<Self> {
        let io = crate::net::connect_offering(addr, from, tls, crate::net::ALPN_MQTT).await?;
        Self::connect(
            io,
            client_id,
            password.map(sensegate_client::Secret::expose),
        )
        .await
    }

    /// Sends CONNECT (clean session, keep-alive off) and waits for CONNACK.
    ///
    /// # Errors
    /// The broker refused or the stream failed.
    pub async fn connect(io: Box<dyn Io>, client_id: &str, password: Option<&str>) -> Result<Self> {
        tokio::time::timeout(
            crate::net::SETUP_TIMEOUT,
            Self::connect_inner(io, client_id, password),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no CONNACK in time"))?
    }

    async fn connect_inner(
        io: Box<dyn Io>,
        client_id: &str,
        password: Option<&str>,
    ) -> Result<Self> {
        let mut m = Self {
            io,
            buf: BytesMut::with_capacity(16 << 10),
            next_id: 1,
        };
        let mut body = BytesMut::new();
        put_str(&mut body, b"MQTT");
        body.put_u8(4); // 3.1.1
        // Clean session; with a password, a user name too.
        body.put_u8(if password.is_some() { 0xC2 } else { 0x02 });
        // The longest keep alive there is (18 h): idle connections stay
        // idle for any run, and brokers that refuse 0 (rumqttd) take it.
        body.put_u16(u16::MAX);
        put_str(&mut body, client_id.as_bytes());
        if let Some(p) = password {
            put_str(&mut body, b"bench");
            put_str(&mut body, p.as_bytes());
        }
        let mut out = BytesMut::new();
        out.put_u8(0x10);
        put_length(&mut out, body.len());
        out.put_slice(&body);
        m.io.write_all(&out).await?;
        let (first, body) = m.next_packet().await?;
        if first != 0x20 || body.len() != 2 || body[1] != 0 {
            bail!("connection refused by the broker");
        }
        Ok(m)
    }

    /// Subscribes to `topic` at QoS 0 and waits for SUBACK.
    ///
    /// # Errors
    /// The broker refused or the stream failed.
    pub async fn subscribe(&mut self, topic: &str) -> Result<()> {
        tokio::time::timeout(crate::net::SETUP_TIMEOUT, self.subscribe_inner(topic))
            .await
            .map_err(|_| anyhow::anyhow!("no SUBACK in time"))?
    }

    async fn subscribe_inner(&mut self, topic: &str) -> Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut out = BytesMut::new();
        out.put_u8(0x82);
        put_length(&mut out, 2 + 2 + topic.len() + 1);
        out.put_u16(id);
        put_str(&mut out, topic.as_bytes());
        out.put_u8(0);
        self.io.write_all(&out).await?;
        loop {
            let (first, body) = self.next_packet().await?;
            if first == 0x90 {
                if body.len() < 3 || body[2] == 0x80 {
                    bail!("subscription refused");
                }
                return Ok(());
            }
        }
    }

    /// Writes an encoded packet.
    ///
    /// # Errors
    /// The stream failed.
    pub async fn send(&mut self, packet: &[u8]) -> Result<()> {
        self.io.write_all(packet).await?;
        Ok(())
    }

    /// The next packet: its first byte and its body.
    ///
    /// # Errors
    /// The stream ended or a packet was malformed or over the cap.
    pub async fn next_packet(&mut self) -> Result<(u8, Bytes)> {
        loop {
            if let Some((first, header, len)) = frame(&self.buf)? {
                if self.buf.len() >= header + len {
                    self.buf.advance(header);
                    return Ok((first, self.buf.split_to(len).freeze()));
                }
                self.buf.reserve(header + len - self.buf.len());
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    /// The payload of the next publish (other packets are skipped).
    ///
    /// # Errors
    /// As [`Mqtt::next_packet`].
    pub async fn next_publish(&mut self) -> Result<Bytes> {
        loop {
            let (first, mut body) = self.next_packet().await?;
            if first >> 4 != 3 {
                continue;
            }
            if body.len() < 2 {
                bail!("short publish");
            }
            let topic = usize::from(body.get_u16());
            let qos = (first >> 1) & 0x03;
            let skip = topic + if qos > 0 { 2 } else { 0 };
            if body.len() < skip {
                bail!("short publish");
            }
            body.advance(skip);
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_and_are_capped() {
        for n in [0, 1, 127, 128, 16_383, 16_384, 65_536] {
            let mut out = BytesMut::new();
            out.put_u8(0x30);
            put_length(&mut out, n);
            let got = frame(&out);
            if n > MAX_PACKET {
                assert!(got.is_err(), "{n}");
            } else {
                let (_, header, len) = got.unwrap().unwrap();
                assert_eq!((header, len), (out.len(), n));
            }
        }
        assert!(frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(frame(&[0x30, 0x80]).unwrap().is_none());
    }

    #[test]
    fn json_timestamps_are_found() {
        assert_eq!(
            json_ts_us(br#"{"value":21.5,"ts_us":1700000000000001,"quality":"good"}"#),
            Some(1_700_000_000_000_001)
        );
        assert_eq!(json_ts_us(br#"{"value":1}"#), None);
    }

    #[test]
    fn a_publish_packet_is_topic_then_payload() {
        let p = publish_packet("a/b", &[1, 2, 3]);
        assert_eq!(&p[..], &[0x30, 8, 0, 3, b'a', b'/', b'b', 1, 2, 3]);
    }
}
