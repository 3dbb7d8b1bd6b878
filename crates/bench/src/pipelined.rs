//! The fan-out publisher for sensegate: pushes of one reading each, written
//! back to back without waiting for each acknowledgement (as an MQTT QoS 0
//! publisher does not wait either), while a reader task takes the
//! acknowledgements and counts any refusal. Waiting for each one would make
//! the load tool's round trip, not the server, the limit of the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::{Context as _, Result, bail};
use bytes::BytesMut;
use sensegate_client::wire::{self as v1, envelope::Body};
use sensegate_proto::frame::HARD_MAX_FRAME_BYTES;
use sensegate_proto::{FrameDecoder, FrameLimit, MessageLimits, decode_envelope};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, WriteHalf};

use crate::net::Io;

/// A publisher session.
pub struct Pipelined {
    writer: WriteHalf<Box<dyn Io>>,
    next_id: u64,
    acks: Arc<Acks>,
    out: BytesMut,
}

/// What the acknowledgement reader saw.
#[derive(Default)]
struct Acks {
    acked: AtomicU64,
    refused: AtomicU64,
    /// The reader stopped (the connection failed).
    dead: std::sync::atomic::AtomicBool,
}

/// Appends `envelope` as one frame (the protocol crate's encoder, under the
/// default frame cap: a push of one reading is far below it).
fn frame(envelope: &v1::Envelope, out: &mut BytesMut) {
    let _ = sensegate_proto::frame::encode_message(envelope, FrameLimit::DEFAULT, out);
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
        let acks = Arc::new(Acks::default());
        let seen = acks.clone();
        tokio::spawn(async move {
            while let Ok(envelope) = next_envelope(&mut reader, &mut buf, &decoder).await {
                if matches!(envelope.body, Some(Body::PushAck(_))) {
                    seen.acked.fetch_add(1, Relaxed);
                } else {
                    seen.refused.fetch_add(1, Relaxed);
                }
            }
            seen.dead.store(true, Relaxed);
        });
        Ok(Self {
            writer,
            next_id: 2,
            acks,
            out: BytesMut::new(),
        })
    }

    /// Writes one push of `reading`.
    ///
    /// # Errors
    /// The stream failed, or the server refused an earlier push.
    pub async fn push(&mut self, reading: v1::Reading) -> Result<()> {
        self.check()?;
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
        // The reader shares this thread's runtime: let it take what has
        // arrived, so acknowledgements never pile up unread.
        tokio::task::yield_now().await;
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let refused = self.acks.refused.load(Relaxed);
        if refused > 0 {
            bail!("sensegate refused {refused} pushes");
        }
        if self.acks.dead.load(Relaxed) {
            bail!("the publisher's connection failed");
        }
        Ok(())
    }

    /// Waits (up to `limit`) until every push so far is acknowledged.
    ///
    /// # Errors
    /// A push was refused, the connection failed, or acknowledgements did
    /// not all come in time.
    pub async fn settle(&mut self, limit: std::time::Duration) -> Result<()> {
        let pushed = self.next_id - 2;
        let deadline = tokio::time::Instant::now() + limit;
        while self.acks.acked.load(Relaxed) + self.acks.refused.load(Relaxed) < pushed {
            self.check()?;
            if tokio::time::Instant::now() >= deadline {
                bail!("pushes not acknowledged within {limit:?}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.check()
    }
}
