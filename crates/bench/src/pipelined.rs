//! The fan-out publisher for sensegate: pushes of one reading each, written
//! back to back without waiting for each acknowledgement (as an MQTT QoS 0
//! publisher does not wait either), while a reader task takes the
//! acknowledgements and counts any refusal. Waiting for each one would make
//! the load tool's round trip, not the server, the limit of the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::{Context as _, Result, bail};
use bytes::BytesMut;
use prost::Message as _;
use sensegate_client::wire::{self as v1, envelope::Body};
use sensegate_proto::frame::HARD_MAX_FRAME_BYTES;
use sensegate_proto::{FrameDecoder, FrameLimit, MessageLimits, decode_envelope};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};

use crate::net::Io;

/// A publisher session.
pub struct Pipelined {
    writer: WriteHalf<Box<dyn Io>>,
    next_id: u64,
    refused: Arc<AtomicU64>,
    out: BytesMut,
}

fn frame(envelope: &v1::Envelope, out: &mut BytesMut) {
    let len = envelope.encoded_len();
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    // Encoding into a BytesMut only fails for lack of space, and it grows.
    let _ = envelope.encode(out);
}

async fn next_envelope(
    reader: &mut ReadHalf<Box<dyn Io>>,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> Result<v1::Envelope> {
    loop {
        if let Some(f) = decoder.decode(buf)? {
            return Ok(decode_envelope(f.payload(), &MessageLimits::DEFAULT)?);
        }
        buf.reserve(4096);
        if reader.read_buf(buf).await? == 0 {
            bail!("sensegate closed the publisher's connection");
        }
    }
}

impl Pipelined {
    /// Says hello with `token` and starts the acknowledgement reader on the
    /// current runtime.
    ///
    /// # Errors
    /// The hello was refused or the stream failed.
    pub async fn connect(io: Box<dyn Io>, token: &str) -> Result<Self> {
        let (mut reader, mut writer) = tokio::io::split(io);
        let mut out = BytesMut::new();
        frame(
            &v1::Envelope {
                request_id: 1,
                body: Some(Body::Hello(v1::Hello {
                    protocol_version: sensegate_client::PROTOCOL_VERSION,
                    token: token.to_owned(),
                    client_name: "bench-pub".into(),
                })),
            },
            &mut out,
        );
        writer.write_all(&out).await?;
        let decoder =
            FrameDecoder::new(FrameLimit::new(HARD_MAX_FRAME_BYTES).context("frame limit")?);
        let mut buf = BytesMut::new();
        match next_envelope(&mut reader, &mut buf, &decoder).await?.body {
            Some(Body::Welcome(_)) => {}
            _ => bail!("the hello was refused"),
        }
        let refused = Arc::new(AtomicU64::new(0));
        let counted = refused.clone();
        tokio::spawn(async move {
            while let Ok(envelope) = next_envelope(&mut reader, &mut buf, &decoder).await {
                if !matches!(envelope.body, Some(Body::PushAck(_))) {
                    counted.fetch_add(1, Relaxed);
                }
            }
        });
        Ok(Self {
            writer,
            next_id: 2,
            refused,
            out: BytesMut::new(),
        })
    }

    /// Writes one push of `reading`.
    ///
    /// # Errors
    /// The stream failed, or the server refused an earlier push.
    pub async fn push(&mut self, reading: v1::Reading) -> Result<()> {
        let refused = self.refused.load(Relaxed);
        if refused > 0 {
            bail!("sensegate refused {refused} pushes");
        }
        self.out.clear();
        frame(
            &v1::Envelope {
                request_id: self.next_id,
                body: Some(Body::Push(v1::PushRequest {
                    readings: vec![reading],
                })),
            },
            &mut self.out,
        );
        self.next_id += 1;
        self.writer.write_all(&self.out).await?;
        Ok(())
    }
}
