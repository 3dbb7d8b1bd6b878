//! Async client for the sensegate native protocol, used by the CLI, the
//! tests and the load tool.
//!
//! - [`Client`]: connect (TCP or TLS 1.3 with a pinned certificate), say
//!   hello, then typed requests and a stream of reading batches.
//! - [`settings`]: where the address, token and pin come from: flags, a
//!   client config file, `SENSEGATE_TOKEN`. A token is never taken from a
//!   command-line argument, which other users can read.
//! - [`pin`]: the certificate-pinning verifier.
//!
//! Everything the server sends is decoded with the same caps the server
//! applies to clients.
#![forbid(unsafe_code)]

pub mod pin;
pub mod settings;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt as _};
use prost::Message as _;
use sensegate_proto::codec::{CodecError, FrameCodec};
use sensegate_proto::frame::HARD_MAX_FRAME_BYTES;
use sensegate_proto::v1::{self, ErrorCode, envelope::Body};
use sensegate_proto::{FrameLimit, MessageLimits, decode_envelope};
pub use sensegate_proto::{PROTOCOL_VERSION, v1 as wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

pub use settings::{ClientSettings, Secret};

/// Reading batches kept while waiting for a reply; older ones are dropped
/// (and counted in the next batch's `dropped`).
const MAX_PENDING_BATCHES: usize = 1024;
/// Most pages one list call asks for: a server (trusted no more than any
/// peer) cannot keep a list call going for ever.
const MAX_PAGES: usize = 10_000;

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or the transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The byte stream was not valid framing.
    #[error("framing: {0}")]
    Codec(#[from] CodecError),
    /// The server answered with an error.
    #[error("server error {}: {message}", code.wire_name())]
    Server {
        /// The stable code.
        code: ErrorCode,
        /// The server's fixed text.
        message: String,
    },
    /// The server said goodbye.
    #[error("server closed the session: {0}")]
    Goodbye(String),
    /// The connection ended.
    #[error("connection closed")]
    Closed,
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The server sent something this client does not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's error code, when this is a server error.
    #[must_use]
    pub const fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connected, authenticated session.
pub struct Client {
    io: Framed<Box<dyn Io>, FrameCodec>,
    next_id: u64,
    pending: VecDeque<v1::ReadingBatch>,
    dropped_pending: u64,
    welcome: v1::Welcome,
    limits: MessageLimits,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connection_id", &self.welcome.connection_id)
            .field("principal", &self.welcome.principal)
            .finish_non_exhaustive()
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port`.
    pub address: String,
    /// The token.
    pub token: Secret,
    /// TLS, when set.
    pub tls: Option<pin::TlsOptions>,
    /// Shown in the server's connection list.
    pub client_name: String,
    /// Time allowed to connect and for each reply.
    pub timeout: Duration,
    /// Local address to connect from (to spread load over `127.0.0.x`).
    pub local_ip: Option<std::net::IpAddr>,
}

impl ConnectOptions {
    /// Plain TCP to `address` with `token`, a 10 s timeout.
    #[must_use]
    pub fn plain(address: impl Into<String>, token: Secret) -> Self {
        Self {
            address: address.into(),
            token,
            tls: None,
            client_name: "sensegate-client".to_owned(),
            timeout: Duration::from_secs(10),
            local_ip: None,
        }
    }
}

impl Client {
    /// Connects, says hello and waits for the welcome.
    ///
    /// # Errors
    /// [`ClientError`]; a refused token is `Server { code: UNAUTHENTICATED }`.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        let tcp = tokio::time::timeout(options.timeout, connect_tcp(options))
            .await
            .map_err(|_| ClientError::Timeout)??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &options.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::new(tls.client_config()?));
                let name = tls.server_name(&options.address)?;
                let s = tokio::time::timeout(options.timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ClientError::Timeout)??;
                Box::new(s)
            }
        };
        let limit = FrameLimit::new(HARD_MAX_FRAME_BYTES).unwrap_or_default();
        let mut client = Self {
            io: Framed::new(stream, FrameCodec::new(limit)),
            next_id: 1,
            pending: VecDeque::new(),
            dropped_pending: 0,
            welcome: v1::Welcome::default(),
            limits: MessageLimits::DEFAULT,
            timeout: options.timeout,
        };
        let hello = Body::Hello(v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            token: options.token.expose().to_owned(),
            client_name: options.client_name.clone(),
        });
        match client.request(hello).await? {
            Body::Welcome(w) => {
                client.welcome = w;
                Ok(client)
            }
            _ => Err(ClientError::Protocol("expected a welcome".into())),
        }
    }

    /// The server's welcome: principal, role, scope, connection id.
    #[must_use]
    pub const fn welcome(&self) -> &v1::Welcome {
        &self.welcome
    }

    async fn send(&mut self, envelope: &v1::Envelope) -> Result<(), ClientError> {
        let payload = Bytes::from(envelope.encode_to_vec());
        self.io.send(payload).await?;
        Ok(())
    }

    async fn receive(&mut self) -> Result<v1::Envelope, ClientError> {
        let frame = self.io.next().await.ok_or(ClientError::Closed)??;
        decode_envelope(frame.payload(), &self.limits)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    fn keep_batch(&mut self, batch: v1::ReadingBatch) {
        if self.pending.len() >= MAX_PENDING_BATCHES
            && let Some(old) = self.pending.pop_front()
        {
            self.dropped_pending += old.readings.len() as u64 + old.dropped;
        }
        self.pending.push_back(batch);
    }

    /// Sends a request and waits for its reply; reading batches that arrive
    /// meanwhile are kept for [`Client::next_batch`].
    ///
    /// # Errors
    /// [`ClientError::Server`] for an error reply, and transport failures.
    pub async fn request(&mut self, body: Body) -> Result<Body, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&v1::Envelope {
            request_id: id,
            body: Some(body),
        })
        .await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let envelope = tokio::time::timeout_at(deadline, self.receive())
                .await
                .map_err(|_| ClientError::Timeout)??;
            match envelope.body {
                Some(Body::Readings(batch)) => self.keep_batch(batch),
                Some(Body::Goodbye(g)) => return Err(ClientError::Goodbye(g.reason)),
                Some(Body::Error(e)) if envelope.request_id == id || envelope.request_id == 0 => {
                    return Err(server_error(&e));
                }
                Some(body) if envelope.request_id == id => return Ok(body),
                _ => {}
            }
        }
    }

    /// The next batch of readings from the subscriptions.
    ///
    /// # Errors
    /// [`ClientError::Goodbye`] when the server ends the session.
    pub async fn next_batch(&mut self) -> Result<v1::ReadingBatch, ClientError> {
        if let Some(mut b) = self.pending.pop_front() {
            b.dropped += std::mem::take(&mut self.dropped_pending);
            return Ok(b);
        }
        loop {
            let envelope = self.receive().await?;
            match envelope.body {
                Some(Body::Readings(b)) => return Ok(b),
                Some(Body::Goodbye(g)) => return Err(ClientError::Goodbye(g.reason)),
                Some(Body::Error(e)) => return Err(server_error(&e)),
                _ => {}
            }
        }
    }

    /// Sensors matching `pattern` (empty: all) within the token's scope.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn list_sensors(
        &mut self,
        pattern: &str,
    ) -> Result<Vec<v1::SensorInfo>, ClientError> {
        let mut all = Vec::new();
        let mut after = String::new();
        for _ in 0..MAX_PAGES {
            let body = Body::ListSensors(v1::ListSensorsRequest {
                pattern: pattern.to_owned(),
                after: after.clone(),
            });
            let Body::Sensors(r) = self.request(body).await? else {
                return Err(unexpected());
            };
            all.extend(r.sensors);
            // A cursor that does not move on would loop for ever.
            if r.next_after.is_empty() || r.next_after <= after {
                return Ok(all);
            }
            after = r.next_after;
        }
        Ok(all)
    }

    /// The latest reading of a sensor.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn latest(&mut self, sensor: &str) -> Result<v1::Reading, ClientError> {
        let body = Body::Latest(v1::LatestRequest {
            sensor: sensor.to_owned(),
        });
        match self.request(body).await? {
            Body::LatestReply(v1::LatestReply { reading: Some(r) }) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// History of `sensor` in `[from_us, to_us)`: raw readings when
    /// `bucket_us` is 0, else min / max / mean / count per bucket. At most
    /// `limit` rows (0: the server's cap); `truncated` says when cut.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn history(
        &mut self,
        sensor: &str,
        from_us: i64,
        to_us: i64,
        bucket_us: i64,
        limit: u32,
    ) -> Result<v1::HistoryReply, ClientError> {
        let body = Body::History(v1::HistoryRequest {
            sensor: sensor.to_owned(),
            from_us,
            to_us,
            bucket_us,
            limit,
        });
        match self.request(body).await? {
            Body::HistoryReply(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Subscribes to sensor names or patterns; returns the active count.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn subscribe(&mut self, patterns: &[&str]) -> Result<u32, ClientError> {
        let body = Body::Subscribe(v1::SubscribeRequest {
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        });
        match self.request(body).await? {
            Body::Subscribed(r) => Ok(r.active),
            _ => Err(unexpected()),
        }
    }

    /// Removes subscriptions; returns the active count.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn unsubscribe(&mut self, patterns: &[&str]) -> Result<u32, ClientError> {
        let body = Body::Unsubscribe(v1::UnsubscribeRequest {
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        });
        match self.request(body).await? {
            Body::Unsubscribed(r) => Ok(r.active),
            _ => Err(unexpected()),
        }
    }

    /// Pushes readings (device role); returns how many were accepted.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn push(&mut self, readings: Vec<v1::Reading>) -> Result<u32, ClientError> {
        match self
            .request(Body::Push(v1::PushRequest { readings }))
            .await?
        {
            Body::PushAck(a) => Ok(a.accepted),
            _ => Err(unexpected()),
        }
    }

    /// Creates a token (admin); the reply holds the secret, shown once.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn create_token(
        &mut self,
        name: &str,
        role: v1::Role,
        scope: &str,
    ) -> Result<v1::CreateTokenReply, ClientError> {
        let body = Body::CreateToken(v1::CreateTokenRequest {
            name: name.to_owned(),
            role: role.into(),
            scope: scope.to_owned(),
        });
        match self.request(body).await? {
            Body::TokenCreated(r) => Ok(r),
            _ => Err(unexpected()),
        }
    }

    /// Every token (admin).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn list_tokens(&mut self) -> Result<Vec<v1::TokenInfo>, ClientError> {
        let mut all: Vec<v1::TokenInfo> = Vec::new();
        let mut after = String::new();
        for _ in 0..MAX_PAGES {
            let body = Body::ListTokens(v1::ListTokensRequest {
                after: after.clone(),
            });
            let Body::Tokens(r) = self.request(body).await? else {
                return Err(unexpected());
            };
            all.extend(r.tokens);
            // Ids are not ordered: a cursor seen before would loop.
            if r.next_after.is_empty() || r.next_after == after {
                return Ok(all);
            }
            after = r.next_after;
        }
        Ok(all)
    }

    /// Revokes a token (admin); returns the sessions it disconnected.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn revoke_token(&mut self, id: &str) -> Result<u32, ClientError> {
        let body = Body::RevokeToken(v1::RevokeTokenRequest { id: id.to_owned() });
        match self.request(body).await? {
            Body::TokenRevoked(r) => Ok(r.disconnected),
            _ => Err(unexpected()),
        }
    }

    /// Open connections (admin).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn list_connections(&mut self) -> Result<Vec<v1::ConnectionInfo>, ClientError> {
        let mut all = Vec::new();
        let mut after_id = 0;
        for _ in 0..MAX_PAGES {
            let body = Body::ListConnections(v1::ListConnectionsRequest { after_id });
            let Body::Connections(r) = self.request(body).await? else {
                return Err(unexpected());
            };
            all.extend(r.connections);
            if r.next_after_id <= after_id {
                return Ok(all);
            }
            after_id = r.next_after_id;
        }
        Ok(all)
    }

    /// Disconnects a connection (admin).
    ///
    /// # Errors
    /// As [`Client::request`]; an unknown id is `NOT_FOUND`.
    pub async fn kick(&mut self, id: u64) -> Result<(), ClientError> {
        match self.request(Body::Kick(v1::KickRequest { id })).await? {
            Body::Kicked(_) => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// A round trip.
    ///
    /// # Errors
    /// As [`Client::request`].
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self
            .request(Body::Ping(v1::Ping {
                nonce: self.next_id,
            }))
            .await?
        {
            Body::Pong(_) => Ok(()),
            _ => Err(unexpected()),
        }
    }

    /// Says goodbye and closes.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let bye = v1::Envelope {
            request_id: 0,
            body: Some(Body::Goodbye(v1::Goodbye {
                reason: "client closing".into(),
            })),
        };
        self.send(&bye).await?;
        SinkExt::<Bytes>::close(&mut self.io).await?;
        Ok(())
    }
}

async fn connect_tcp(options: &ConnectOptions) -> std::io::Result<TcpStream> {
    let Some(ip) = options.local_ip else {
        return TcpStream::connect(&options.address).await;
    };
    let target = tokio::net::lookup_host(&options.address)
        .await?
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address of the same family",
            )
        })?;
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(std::net::SocketAddr::new(ip, 0))?;
    socket.connect(target).await
}

fn server_error(e: &v1::Error) -> ClientError {
    ClientError::Server {
        code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
        message: e.message.clone(),
    }
}

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected reply body".into())
}
