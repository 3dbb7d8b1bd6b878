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
use std::time::Duration;

use crate::time::Instant;

use serde::Serialize;

use crate::reading::now_us;

/// The window over which denials are counted against their cap.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(60);

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
        /// The token a `create_token` made: its id, role and scope.
        #[serde(skip_serializing_if = "Option::is_none")]
        created: Option<CreatedToken<'a>>,
        /// `ok`, `denied`, `not_found` or `failed`.
        outcome: &'static str,
    },
    /// A device pushed a reading outside its token's scope (from any front
    /// end: a native push, an MQTT publish).
    PushDenied {
        /// Source address.
        peer: SocketAddr,
        /// Token id of the principal (public, not secret).
        token_id: &'a str,
        /// The principal's name.
        principal: &'a str,
        /// The sensor it named.
        sensor: &'a str,
    },
    /// Denials (failed authentications, refused admin requests and pushes) past
    /// `limits.audit_denials_per_minute` in the last window were counted,
    /// not written.
    DenialsSuppressed {
        /// How many.
        count: u64,
    },
}

/// What the audit line of a created token records (never its secret).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CreatedToken<'a> {
    /// The new token's id.
    pub id: &'a str,
    /// Its role.
    pub role: &'static str,
    /// Its scope.
    pub scope: &'a str,
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
    denials_per_window: u32,
    denials: Mutex<DenialWindow>,
}

/// Denials written in the current window, and those counted instead.
#[derive(Debug, Default)]
struct DenialWindow {
    start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl Audit {
    /// Appends to `path`, creating it with mode 0600.
    ///
    /// # Errors
    /// When the file cannot be opened.
    /// Denials (what a peer can cause without permission: failed
    /// authentications, refused admin requests) are written up to
    /// `denials_per_minute` per minute and counted past it, so a flood of
    /// them cannot fill the disk.
    pub fn open(path: &Path, denials_per_minute: u32) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        Ok(Self {
            file: Some(Mutex::new(opts.open(path)?)),
            denials_per_window: denials_per_minute,
            denials: Mutex::new(DenialWindow::default()),
        })
    }

    /// An audit log that drops everything (tests, and `audit_log = ""`).
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            file: None,
            denials_per_window: 0,
            denials: Mutex::new(DenialWindow::default()),
        }
    }

    /// Writes a denial, within the per-minute cap; past it the denial is
    /// counted, and the count is written when the next window opens.
    pub fn record_denial(&self, event: &AuditEvent<'_>, now: Instant) {
        if self.file.is_none() {
            return;
        }
        let mut w = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
        if w.start
            .is_none_or(|s| now.saturating_duration_since(s) >= DENIAL_WINDOW)
        {
            let suppressed = std::mem::take(&mut w.suppressed);
            *w = DenialWindow {
                start: Some(now),
                written: 0,
                suppressed: 0,
            };
            if suppressed > 0 {
                self.record(&AuditEvent::DenialsSuppressed { count: suppressed });
            }
        }
        if w.written >= self.denials_per_window {
            w.suppressed += 1;
            return;
        }
        w.written += 1;
        drop(w);
        self.record(event);
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
        let audit = Audit::open(&path, 10).unwrap();
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
            created: None,
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

    #[test]
    fn denials_past_the_cap_are_counted_and_the_count_is_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&path, 2).unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let failure = AuditEvent::AuthFailure {
            peer,
            reason: "bad_token",
        };
        let now = Instant::now();
        for _ in 0..5 {
            audit.record_denial(&failure, now);
        }
        // Allowed admin actions are never capped.
        audit.record(&AuditEvent::Admin {
            peer,
            token_id: "00aa",
            principal: "admin",
            action: "list_tokens",
            target: None,
            created: None,
            outcome: "ok",
        });
        audit.record_denial(&failure, now + DENIAL_WINDOW);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(
            events,
            [
                "auth_failure",
                "auth_failure",
                "admin",
                "denials_suppressed",
                "auth_failure"
            ]
        );
        assert_eq!(lines[3]["count"], 3);
    }
}
