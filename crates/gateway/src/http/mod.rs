//! The HTTP/JSON API: the same service core, tokens and policy as the native
//! protocol, over HTTP/1.1 (TLS 1.3 with the same certificate when TLS is
//! on).
//!
//! - [`server`]: the listener: admission through the same connection
//!   registry (so HTTP connections count against the same caps, are listed
//!   and can be kicked), the TLS handshake under `auth_timeout`, hyper with a
//!   header deadline, and graceful stop.
//! - [`api`]: the routes, the `Authorization: Bearer` extractor, JSON
//!   errors with the stable codes, request body and query-string caps, a
//!   request deadline, and security headers on every response.
//! - [`auth`]: the `Auth` extractor, a request's token signed in through
//!   the service on its connection.
//! - [`ingest`]: writes in InfluxDB line protocol and SenML, each request
//!   one push through the service; [`body`] reads a body under its caps
//!   (gzip inflated under its own), [`credentials`] finds the token in the
//!   `Authorization` header and refuses one in the URL.
//! - [`dashboard`]: the web dashboard's files, embedded at build time and
//!   found by exact name (no path is ever joined to a directory).
//! - [`error`]: every refusal, one type with one mapping to status and code.
//! - [`metrics`]: the Prometheus text, from the service's snapshot.
//! - [`openapi`]: the OpenAPI document as served, every response and
//!   parameter constraint in it.
//! - [`HttpConfig`]: this front end's validated `[http]` section.
//!
//! No access rule lives here: every handler calls the service, which asks
//! `policy::decide`.

pub mod api;
pub mod auth;
pub mod body;
pub mod credentials;
pub mod dashboard;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod server;

use std::net::SocketAddr;

use api::HttpLimits;

/// The HTTP API, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Whether it listens.
    pub enabled: bool,
    /// Where.
    pub listen: SocketAddr,
    /// Its caps.
    pub limits: HttpLimits,
}
