//! The audit log: one JSON object per line, for authentication failures and
//! every admin action (allowed or denied).
//!
//! Entries are built from typed fields; a token's secret has no field to go
//! into. The file is created with mode 0600 and appended to; a write failure
//! is logged and does not stop the daemon. Peer-supplied text (token names,
//! client names) is escaped by the JSON encoder, so it cannot forge lines.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use crate::reading::now_us;

/// One audited event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent<'a> {
    /// A hello that did not authenticate.
    AuthFailure {
        /// Source address.
        peer: SocketAddr,
        /// `bad_token` or `throttled`.
        reason: &'static str,
    },
    /// An admin operation was asked for.
    Admin {
        /// Source address.
        peer: SocketAddr,
        /// Token id of the principal (public, not secret).
        token_id: &'a str,
        /// The principal's name.
        principal: &'a str,
        /// `create_token`, `list_tokens`, `revoke_token`, `list_connections`, `kick`.
        action: &'static str,
        /// What it acted on (token id, connection id), when any.
        target: Option<String>,
        /// `ok`, `denied`, `not_found` or `failed`.
        outcome: &'static str,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    ts_us: i64,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

/// Where audit lines go.
#[derive(Debug)]
pub struct Audit {
    file: Option<Mutex<File>>,
}

impl Audit {
    /// Appends to `path`, creating it with mode 0600.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        Ok(Self {
            file: Some(Mutex::new(opts.open(path)?)),
        })
    }

    /// An audit log that drops everything (tests, and `audit_log = ""`).
    #[must_use]
    pub const fn disabled() -> Self {
        Self { file: None }
    }

    /// Writes one event.
    pub fn record(&self, event: &AuditEvent<'_>) {
        let Some(file) = &self.file else { return };
        let line = Line {
            ts_us: now_us(),
            event,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = f.write_all(&text) {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_object_per_line_and_escapes_peer_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path).unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        audit.record(&AuditEvent::AuthFailure {
            peer,
            reason: "bad_token",
        });
        audit.record(&AuditEvent::Admin {
            peer,
            token_id: "00aa",
            principal: "evil\n{\"event\":\"forged\"}",
            action: "create_token",
            target: Some("0011".into()),
            outcome: "ok",
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "auth_failure");
        assert_eq!(lines[0]["peer"], "127.0.0.1:9");
        assert_eq!(lines[1]["event"], "admin");
        assert_eq!(lines[1]["principal"], "evil\n{\"event\":\"forged\"}");
        assert!(lines[1]["ts_us"].as_i64().unwrap() > 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
    }
}
