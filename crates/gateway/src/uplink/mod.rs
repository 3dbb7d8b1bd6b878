//! Uplinks: the gateway's history sent on to the site's central systems
//! (issue 16, decision 37).
//!
//! The local history is the outbox ([`crate::store::sqlite::outbox`]):
//! each uplink reads the chunks after its cursor, sends them, and moves the
//! cursor only once the remote side has confirmed them. This module owns
//! the uplinks' settings ([`UplinkConfig`]), their figures for `/metrics`
//! ([`UplinkStats`]), and the loop that drives one ([`run`]): reconnecting
//! with a jittered backoff, pacing replay, enforcing the backlog cap. What
//! each kind of remote side needs is in its own module: [`postgres`],
//! [`mqtt`].
//! [`guard`] caps what a server may make the daemon buffer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub mod backoff;
pub mod guard;
pub mod mqtt;
pub mod postgres;
mod run;

pub use run::{CONFIRMS_EARLY, run};

use sensegate_core::service::{UplinkFigures, UplinkReport};

/// Most uplinks configured.
pub const MAX_UPLINKS: usize = 8;

/// One configured uplink, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkConfig {
    /// Its name: the key of its cursor in the local history.
    pub name: String,
    /// Where it sends.
    pub target: Target,
    /// Readings in one batch, at most (whole chunks: up to 4,096 more).
    pub batch_readings: usize,
    /// Readings not yet confirmed kept, at most; past it the oldest are
    /// dropped and counted.
    pub max_backlog_rows: u64,
    /// Rows sent a second, at most (replay after an outage).
    pub max_rows_per_sec: u64,
    /// The first wait after a failure.
    pub backoff_min: Duration,
    /// The longest wait after failures in a row.
    pub backoff_max: Duration,
    /// Longest a connection attempt or one batch may take.
    pub timeout: Duration,
}

/// Where an uplink sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A PostgreSQL server.
    Postgres(postgres::PgConfig),
    /// An MQTT broker (or cluster behind one address).
    Mqtt(mqtt::MqttUplinkConfig),
}

impl Target {
    /// The kind's name, for metrics.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Mqtt(_) => "mqtt",
        }
    }
}

/// TLS to the remote side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClient {
    /// The CA certificates the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// A client certificate and key, when the server asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Largest password file read.
pub const MAX_PASSWORD_BYTES: u64 = 1024;

/// An uplink's password, from its file (read at each connection, so it can
/// be rotated): at most [`MAX_PASSWORD_BYTES`], trailing newline dropped.
///
/// # Errors
/// The file cannot be read, or is over the cap.
pub fn read_password(file: &std::path::Path) -> std::io::Result<String> {
    let text = crate::file::read_capped(file, MAX_PASSWORD_BYTES)
        .map_err(|e| std::io::Error::other(format!("{}: {e:?}", file.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// A rustls client configuration from `t`: the server's certificate must
/// chain to its CA file; the client certificate, when set, is offered.
///
/// # Errors
/// What is wrong with which file.
pub fn client_tls(t: &TlsClient) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::tls::load_certs(&t.ca_file).map_err(|e| fail(&e))? {
        roots.add(cert).map_err(|e| fail(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_root_certificates(roots);
    match &t.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = crate::tls::load_certs(cert).map_err(|e| fail(&e))?;
            let pem = crate::file::read_capped_bytes(key, crate::tls::MAX_PEM_BYTES)
                .map_err(|e| format!("{}: {e:?}", key.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|_| format!("{}: no private key found", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(&e))
        }
    }
}

/// One uplink's figures, updated by its task.
#[derive(Debug)]
pub struct UplinkStats {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: &'static str,
    connected: AtomicBool,
    delivered: AtomicI64,
    backlog_rows: AtomicU64,
    /// The age of the oldest reading not yet confirmed, in ms.
    backlog_ms: AtomicU64,
    batches: AtomicU64,
    rows: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

impl UplinkStats {
    /// Figures at zero.
    #[must_use]
    pub fn new(name: &str, kind: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            connected: AtomicBool::new(false),
            delivered: AtomicI64::new(0),
            backlog_rows: AtomicU64::new(0),
            backlog_ms: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// The figures now.
    #[must_use]
    pub fn figures(&self) -> UplinkFigures {
        UplinkFigures {
            name: self.name.clone(),
            kind: self.kind,
            connected: self.connected.load(Relaxed),
            delivered_seq: self.delivered.load(Relaxed),
            backlog_rows: self.backlog_rows.load(Relaxed),
            backlog_seconds: Duration::from_millis(self.backlog_ms.load(Relaxed)).as_secs_f64(),
            batches: self.batches.load(Relaxed),
            rows: self.rows.load(Relaxed),
            retries: self.retries.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
        }
    }
}

/// Every uplink's figures, for the service's metrics.
#[derive(Debug, Default)]
pub struct Uplinks(pub Vec<Arc<UplinkStats>>);

impl UplinkReport for Uplinks {
    fn figures(&self) -> Vec<UplinkFigures> {
        self.0.iter().map(|s| s.figures()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_is_read_under_its_cap_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\r\n").unwrap();
        assert_eq!(read_password(&ok).unwrap(), "s3cret");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(read_password(&big).is_err());
    }
}
