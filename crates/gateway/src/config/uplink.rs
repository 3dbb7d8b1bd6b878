//! `[[uplink]]`, validated into [`crate::uplink::UplinkConfig`]s: names
//! unique and safe, every cap in its range, TLS on unless turned off by
//! name, SQL identifiers from a strict alphabet (they are put into
//! statements; values never are).

use std::time::Duration;

use super::ConfigError;
use super::raw::RawUplink;
use super::validate::Validator;
use crate::uplink::mqtt::{MqttUplinkConfig, TopicTemplate};
use crate::uplink::postgres::{PgConfig, Schema, SyncCommit};
use crate::uplink::{MAX_UPLINKS, Target, TlsClient, UplinkConfig};

/// Whether `s` may name a table: `[a-z_][a-z0-9_]*`, at most 48 bytes (a
/// partition's name adds a suffix within PostgreSQL's 63).
fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 48
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl Validator<'_> {
    pub(super) fn uplinks(
        &self,
        raw: &[RawUplink],
        server_name: &str,
    ) -> Result<Vec<UplinkConfig>, ConfigError> {
        if raw.len() > MAX_UPLINKS {
            return Err(self.invalid("uplink.name", &format!("more than {MAX_UPLINKS} uplinks")));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let u = self
                .uplink(r, server_name)
                .map_err(|e| self.in_section(e, i))?;
            if !names.insert(u.name.clone()) {
                return Err(self.in_section(
                    self.invalid("uplink.name", &format!("\"{}\" is used twice", u.name)),
                    i,
                ));
            }
            out.push(u);
        }
        Ok(out)
    }

    fn uplink(&self, r: &RawUplink, server_name: &str) -> Result<UplinkConfig, ConfigError> {
        let name = match &r.name {
            Some(n) if crate::sources::config::is_name(n, 64) && !n.contains('/') => n.clone(),
            Some(_) => {
                return Err(self.invalid(
                    "uplink.name",
                    "must be 1 to 64 of A-Z a-z 0-9 . _ : - (no slash)",
                ));
            }
            None => return Err(self.invalid("uplink.name", "is required")),
        };
        let target = match r.kind.as_deref() {
            Some("postgres") => Target::Postgres(self.postgres(r)?),
            Some("mqtt") => Target::Mqtt(self.mqtt_uplink(r, server_name)?),
            Some(_) => {
                return Err(self.invalid("uplink.kind", "must be \"postgres\" or \"mqtt\""));
            }
            None => {
                return Err(self.invalid("uplink.kind", "is required (\"postgres\" or \"mqtt\")"));
            }
        };
        let backoff_min = self.millis(
            "uplink.backoff_min_ms",
            r.backoff_min_ms,
            Duration::from_millis(500),
            10,
            600_000,
        )?;
        let backoff_max = self.millis(
            "uplink.backoff_max_ms",
            r.backoff_max_ms,
            Duration::from_secs(30),
            10,
            3_600_000,
        )?;
        if backoff_max < backoff_min {
            return Err(self.invalid("uplink.backoff_max_ms", "is below backoff_min_ms"));
        }
        Ok(UplinkConfig {
            name,
            target,
            batch_readings: self.size(
                "uplink.batch_readings",
                r.batch_readings,
                5000,
                1,
                100_000,
            )?,
            max_backlog_rows: self.range(
                "uplink.max_backlog_rows",
                r.max_backlog_rows,
                10_000_000,
                1,
                10_000_000_000,
            )?,
            max_rows_per_sec: self.range(
                "uplink.max_rows_per_sec",
                r.max_rows_per_sec,
                50_000,
                1,
                100_000_000,
            )?,
            backoff_min,
            backoff_max,
            timeout: self.millis(
                "uplink.timeout_ms",
                r.timeout_ms,
                Duration::from_secs(30),
                100,
                600_000,
            )?,
        })
    }

    fn host(&self, host: Option<&String>, key: &'static str) -> Result<String, ConfigError> {
        match host {
            Some(h)
                if !h.is_empty()
                    && h.len() <= 253
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:_".contains(&b)) =>
            {
                Ok(h.clone())
            }
            Some(_) => Err(self.invalid(key, "must be a host name or address")),
            None => Err(self.invalid(key, "is required")),
        }
    }

    /// TLS unless `tls = false`: the CA file is then required.
    fn tls_client(&self, f: &PgFields<'_>, k: &PgKeys) -> Result<Option<TlsClient>, ConfigError> {
        if !f.tls.unwrap_or(true) {
            return Ok(None);
        }
        let Some(ca_file) = f.ca_file.cloned() else {
            return Err(self.invalid(
                k.ca_file,
                "is required with TLS (the default): the CA the server's certificate \
                 chains to; or tls = false for plain TCP",
            ));
        };
        let client_cert = match (f.client_cert, f.client_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(self.invalid(k.client_key, "is required with client_cert"));
            }
            (None, Some(_)) => {
                return Err(self.invalid(k.client_cert, "is required with client_key"));
            }
        };
        Ok(Some(TlsClient {
            ca_file,
            client_cert,
        }))
    }

    fn mqtt_uplink(
        &self,
        r: &RawUplink,
        server_name: &str,
    ) -> Result<MqttUplinkConfig, ConfigError> {
        let host = self.host(r.host.as_ref(), "uplink.host")?;
        let port = self.range("uplink.port", r.port, 8883, 1, 65_535)?;
        let text = |key: &'static str, v: &Option<String>, max: usize| match v {
            Some(s) if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(self.invalid(key, &format!("must be 1 to {max} printable characters"))),
            None => Ok(None),
        };
        let topic =
            TopicTemplate::parse(r.topic.as_deref().unwrap_or("sensegate/{gateway}/{sensor}"))
                .map_err(|e| self.invalid("uplink.topic", &e))?;
        if topic.uses_gateway_name()
            && (server_name.is_empty() || server_name.contains(['+', '#', '/', '\0']))
        {
            return Err(self.invalid(
                "uplink.topic",
                "uses {gateway}, but server.name holds + # or /: set another server.name, or use {gateway_id}",
            ));
        }
        let payload = match r.payload.as_deref() {
            None | Some("json") => crate::mqtt::PayloadFormat::Json,
            Some("plain") => crate::mqtt::PayloadFormat::Plain,
            Some(_) => return Err(self.invalid("uplink.payload", "must be \"json\" or \"plain\"")),
        };
        let max_packet = self.range(
            "uplink.max_message_bytes",
            r.max_message_bytes,
            64 << 10,
            4096,
            16 << 20,
        )?;
        Ok(MqttUplinkConfig {
            host,
            port: u16::try_from(port).unwrap_or(8883),
            tls: self.tls_client(&pg_fields!(r), &UPLINK_KEYS)?,
            client_id: text("uplink.client_id", &r.client_id, 128)?,
            username: text("uplink.username", &r.username, 128)?,
            password_file: r.password_file.clone(),
            topic,
            payload,
            max_inflight: u16::try_from(self.range(
                "uplink.max_inflight",
                r.max_inflight,
                64,
                1,
                1024,
            )?)
            .unwrap_or(64),
            keep_alive: Duration::from_secs(self.range(
                "uplink.keep_alive_secs",
                r.keep_alive_secs,
                30,
                5,
                3600,
            )?),
            max_packet_bytes: u32::try_from(max_packet).unwrap_or(64 << 10),
        })
    }

    fn postgres(&self, r: &RawUplink) -> Result<PgConfig, ConfigError> {
        let mut c = self.pg_connection(&pg_fields!(r), &UPLINK_KEYS)?;
        c.schema = match r.schema.as_deref() {
            None | Some("create") => Schema::Create,
            Some("check") => Schema::Check,
            Some(_) => return Err(self.invalid("uplink.schema", "must be \"create\" or \"check\"")),
        };
        c.partitions = match r.partitions.as_deref() {
            None | Some("month") => true,
            Some("none") => false,
            Some(_) => {
                return Err(self.invalid("uplink.partitions", "must be \"month\" or \"none\""));
            }
        };
        c.synchronous_commit = match r.synchronous_commit.as_deref() {
            None => SyncCommit::On,
            Some(s) => SyncCommit::parse(s).ok_or_else(|| {
                self.invalid(
                    "uplink.synchronous_commit",
                    "must be on, remote_apply, remote_write, local or off",
                )
            })?,
        };
        Ok(c)
    }

    /// A PostgreSQL connection and table (an uplink's or the site view's),
    /// with the uplink's defaults for what only an uplink sets.
    pub(super) fn pg_connection(
        &self,
        f: &PgFields<'_>,
        k: &PgKeys,
    ) -> Result<PgConfig, ConfigError> {
        let host = self.host(f.host, k.host)?;
        let port = self.range(k.port, f.port, 5432, 1, 65_535)?;
        let role = |key: &'static str, v: Option<&String>| match v {
            Some(s) if !s.is_empty() && s.len() <= 63 && !s.chars().any(char::is_control) => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(self.invalid(key, "must be 1 to 63 printable characters")),
            None => Ok(None),
        };
        let user = role(k.user, f.user)?.ok_or_else(|| self.invalid(k.user, "is required"))?;
        let dbname = role(k.dbname, f.dbname)?.unwrap_or_else(|| user.clone());
        let tls = self.tls_client(f, k)?;
        let table = match f.table {
            Some(t) if t == "sensegate_staging" => {
                return Err(self.invalid(
                    k.table,
                    "is the uplink's own staging table's name: choose another",
                ));
            }
            Some(t) if is_identifier(t) => t.clone(),
            Some(_) => {
                return Err(self.invalid(
                    k.table,
                    "must be 1 to 48 of a-z 0-9 _, not starting with a digit",
                ));
            }
            None => "sensegate_readings".to_owned(),
        };
        let max_message_bytes = self.range(
            k.max_message_bytes,
            f.max_message_bytes,
            1 << 20,
            4096,
            64 << 20,
        )?;
        Ok(PgConfig {
            host,
            port: u16::try_from(port).unwrap_or(5432),
            user,
            dbname,
            password_file: f.password_file.cloned(),
            tls,
            table,
            schema: Schema::Create,
            partitions: true,
            synchronous_commit: SyncCommit::On,
            max_message_bytes: u32::try_from(max_message_bytes).unwrap_or(1 << 20),
        })
    }
}

/// The keys of a section's PostgreSQL connection, for messages.
pub(super) struct PgKeys {
    host: &'static str,
    port: &'static str,
    user: &'static str,
    dbname: &'static str,
    ca_file: &'static str,
    client_cert: &'static str,
    client_key: &'static str,
    table: &'static str,
    max_message_bytes: &'static str,
}

const UPLINK_KEYS: PgKeys = PgKeys {
    host: "uplink.host",
    port: "uplink.port",
    user: "uplink.user",
    dbname: "uplink.dbname",
    ca_file: "uplink.ca_file",
    client_cert: "uplink.client_cert",
    client_key: "uplink.client_key",
    table: "uplink.table",
    max_message_bytes: "uplink.max_message_bytes",
};

/// `[history]`'s keys.
pub(super) const HISTORY_KEYS: PgKeys = PgKeys {
    host: "history.host",
    port: "history.port",
    user: "history.user",
    dbname: "history.dbname",
    ca_file: "history.ca_file",
    client_cert: "history.client_cert",
    client_key: "history.client_key",
    table: "history.table",
    max_message_bytes: "history.max_message_bytes",
};

/// A section's PostgreSQL connection keys, as written.
pub(super) struct PgFields<'a> {
    pub(super) host: Option<&'a String>,
    pub(super) port: Option<u64>,
    pub(super) user: Option<&'a String>,
    pub(super) dbname: Option<&'a String>,
    pub(super) password_file: Option<&'a std::path::PathBuf>,
    pub(super) tls: Option<bool>,
    pub(super) ca_file: Option<&'a std::path::PathBuf>,
    pub(super) client_cert: Option<&'a std::path::PathBuf>,
    pub(super) client_key: Option<&'a std::path::PathBuf>,
    pub(super) table: Option<&'a String>,
    pub(super) max_message_bytes: Option<u64>,
}

/// The [`PgFields`] of a raw section that has the PostgreSQL connection
/// keys (`[[uplink]]`, `[history]`).
macro_rules! pg_fields {
    ($r:expr) => {
        $crate::config::uplink::PgFields {
            host: $r.host.as_ref(),
            port: $r.port,
            user: $r.user.as_ref(),
            dbname: $r.dbname.as_ref(),
            password_file: $r.password_file.as_ref(),
            tls: $r.tls,
            ca_file: $r.ca_file.as_ref(),
            client_cert: $r.client_cert.as_ref(),
            client_key: $r.client_key.as_ref(),
            table: $r.table.as_ref(),
            max_message_bytes: $r.max_message_bytes,
        }
    };
}
pub(super) use pg_fields;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const PG: &str = "[[uplink]]\nname = \"site\"\nkind = \"postgres\"\nhost = \"db.example\"\nuser = \"gw\"\nca_file = \"ca.pem\"\n";

    #[test]
    fn a_postgres_uplink_takes_its_defaults() {
        let c = parse(PG).unwrap();
        let u = &c.uplinks[0];
        assert_eq!(u.name, "site");
        assert_eq!(u.batch_readings, 5000);
        assert_eq!(u.max_backlog_rows, 10_000_000);
        let crate::uplink::Target::Postgres(pg) = &u.target else {
            panic!("not postgres")
        };
        assert_eq!(pg.port, 5432);
        assert_eq!(pg.dbname, "gw");
        assert_eq!(pg.table, "sensegate_readings");
        assert!(pg.partitions);
        assert!(pg.tls.is_some());
    }

    #[test]
    fn bad_uplinks_are_refused_by_key() {
        for (extra, key) in [
            ("table = \"x; DROP TABLE y\"\n", "uplink.table"),
            ("table = \"Readings\"\n", "uplink.table"),
            ("table = \"sensegate_staging\"\n", "uplink.table"),
            (
                "synchronous_commit = \"maybe\"\n",
                "uplink.synchronous_commit",
            ),
            ("batch_readings = 0\n", "uplink.batch_readings"),
            ("batch_readings = 100001\n", "uplink.batch_readings"),
            ("max_backlog_rows = 0\n", "uplink.max_backlog_rows"),
            ("max_message_bytes = 100\n", "uplink.max_message_bytes"),
            (
                "backoff_min_ms = 5000\nbackoff_max_ms = 1000\n",
                "uplink.backoff_max_ms",
            ),
            ("client_cert = \"c.pem\"\n", "uplink.client_key"),
            ("schema = \"drop\"\n", "uplink.schema"),
        ] {
            let e = parse(&format!("{PG}{extra}")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = parse(&PG.replace("ca_file = \"ca.pem\"\n", "")).unwrap_err();
        assert!(e.contains("uplink.ca_file"), "{e}");
        assert!(parse(&PG.replace("ca_file = \"ca.pem\"\n", "tls = false\n")).is_ok());
        let e = parse(&format!("{PG}{PG}")).unwrap_err();
        assert!(e.contains("used twice"), "{e}");
        let mq = "[[uplink]]\nname = \"bus\"\nkind = \"mqtt\"\nhost = \"broker\"\nca_file = \"ca.pem\"\n";
        let c = parse(mq).unwrap();
        let crate::uplink::Target::Mqtt(m) = &c.uplinks[0].target else {
            panic!("not mqtt")
        };
        assert_eq!((m.port, m.max_inflight), (8883, 64));
        for (extra, key) in [
            ("topic = \"a/+/{sensor}\"\n", "uplink.topic"),
            ("topic = \"a/{gateway}\"\n", "uplink.topic"),
            ("payload = \"xml\"\n", "uplink.payload"),
            ("max_inflight = 0\n", "uplink.max_inflight"),
            ("max_inflight = 1025\n", "uplink.max_inflight"),
            ("keep_alive_secs = 1\n", "uplink.keep_alive_secs"),
        ] {
            let e = parse(&format!("{mq}{extra}")).unwrap_err();
            assert!(e.contains(key), "{extra}: {e}");
        }
        // {gateway} needs a server name that is one topic level.
        let e = parse(&format!("[server]\nname = \"a/b\"\n{mq}")).unwrap_err();
        assert!(e.contains("server.name"), "{e}");
        let e = parse(&PG.replace("postgres", "kafka")).unwrap_err();
        assert!(e.contains("uplink.kind"), "{e}");
        let e = parse(&PG.replace("\"site\"", "\"a/b\"")).unwrap_err();
        assert!(e.contains("uplink.name"), "{e}");
        let many: String = (0..9)
            .map(|i| PG.replace("\"site\"", &format!("\"u{i}\"")))
            .collect();
        assert!(parse(&many).unwrap_err().contains("more than 8"));
    }
}
