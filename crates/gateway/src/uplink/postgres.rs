//! The PostgreSQL uplink: one writer connection, batches in one transaction
//! each (binary COPY into a temporary staging table, then `INSERT .. ON
//! CONFLICT DO NOTHING` into the target), so a batch sent again after a
//! lost confirmation changes nothing.
//!
//! The schema (`docs/site.md`) is a narrow readings table keyed on
//! (gateway, sensor, time), its sensors by name in a side table, and the
//! gateways in another; range partitions by month, with a default
//! partition for readings whose month has none. The uplink creates it
//! (`schema = "create"`) or checks one a DBA applied (`schema = "check"`).
//! Every statement is built from the validated table name and bound
//! parameters; nothing the server sends is trusted past [`super::guard`]'s
//! cap and tokio-postgres's parsing.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::TlsClient;
use super::guard::Capped;
use crate::store::sqlite::Outgoing;

/// Sensor ids remembered per connection, at most (then forgotten and asked
/// again).
const MAX_CACHED_SENSORS: usize = 100_000;
/// Months each way of now for which a partition is made; readings outside
/// go to the default partition.
const PARTITION_MONTHS_BACK: i64 = 24;
const PARTITION_MONTHS_AHEAD: i64 = 1;

/// `synchronous_commit`, set by the uplink on its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommit {
    /// `on`: confirmed once durable on the server (and its synchronous
    /// standbys).
    On,
    /// `remote_apply`.
    RemoteApply,
    /// `remote_write`.
    RemoteWrite,
    /// `local`: durable on the primary only.
    Local,
    /// `off`: may lose confirmed batches when the server crashes. Only
    /// for a negative control; the config check warns.
    Off,
}

impl SyncCommit {
    /// From its PostgreSQL name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "on" => Self::On,
            "remote_apply" => Self::RemoteApply,
            "remote_write" => Self::RemoteWrite,
            "local" => Self::Local,
            "off" => Self::Off,
            _ => return None,
        })
    }

    /// Its PostgreSQL name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::RemoteApply => "remote_apply",
            Self::RemoteWrite => "remote_write",
            Self::Local => "local",
            Self::Off => "off",
        }
    }
}

/// Whether the uplink makes the schema or only checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `CREATE .. IF NOT EXISTS` at each connection (needs the privilege).
    Create,
    /// The tables must exist with the documented columns.
    Check,
}

/// The PostgreSQL uplink's settings, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PgConfig {
    /// The server's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The role to log in as.
    pub user: String,
    /// The database.
    pub dbname: String,
    /// A file holding the password (read at each connection), if any.
    pub password_file: Option<PathBuf>,
    /// TLS, unless turned off (`tls = false`).
    pub tls: Option<TlsClient>,
    /// The readings table; its side tables are `<table>_sensors` and
    /// `<table>_gateways`.
    pub table: String,
    /// Make or check the schema.
    pub schema: Schema,
    /// Partition by month (`partitions = "month"`) or not (`"none"`: a
    /// plain table, for a DBA's own partitioning or a `TimescaleDB`
    /// hypertable).
    pub partitions: bool,
    /// Set on the session.
    pub synchronous_commit: SyncCommit,
    /// Largest message the server may send.
    pub max_message_bytes: u32,
}

/// Why a batch or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The network, TLS, or the server.
    #[error("postgres: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A file or the network before the protocol started.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS could not be set up from the configured files.
    #[error("tls: {0}")]
    Tls(String),
    /// The server's schema is not the documented one.
    #[error("schema check: {0}")]
    Schema(String),
}

/// The server's own words for an error (its message and SQLSTATE), or the
/// chain of causes for one of the network or TLS.
/// The server's words are its input: shown escaped (no line breaks or
/// control characters reach a log) and cut at [`MAX_SERVER_TEXT`].
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            server_text(db.severity()),
            server_text(db.message()),
            server_text(db.code().code())
        );
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Characters of a server's message shown, at most.
const MAX_SERVER_TEXT: usize = 200;

/// A server's text, escaped and cut for a log line.
fn server_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_SERVER_TEXT)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_SERVER_TEXT).is_some() {
        out.push_str("...");
    }
    out
}

/// The gateway as the site knows it.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Its id (made once with its history).
    pub id: String,
    /// Its configured server name.
    pub name: String,
}

/// A connection ready to take batches.
pub struct PgLink {
    client: Client,
    /// The task that drives the connection; aborted with the link.
    driver: tokio::task::JoinHandle<()>,
    gateway: Gateway,
    table: String,
    partitions: bool,
    sensors: HashMap<String, i32>,
    months: BTreeSet<i64>,
}

impl std::fmt::Debug for PgLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLink")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Drop for PgLink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// rustls to the server, inside the frame cap.
struct PgTls {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    max: u32,
}

type TlsFuture = Pin<
    Box<
        dyn Future<Output = std::io::Result<Capped<tokio_rustls::client::TlsStream<TcpStream>>>>
            + Send,
    >,
>;

impl tokio_postgres::tls::TlsConnect<TcpStream> for PgTls {
    type Stream = Capped<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = TlsFuture;

    fn connect(self, stream: TcpStream) -> Self::Future {
        Box::pin(async move {
            let tls = self.connector.connect(self.name, stream).await?;
            Ok(Capped::new(tls, self.max))
        })
    }
}

fn tls_connector(t: &TlsClient, host: &str, max: u32) -> Result<PgTls, PgError> {
    let config = super::client_tls(t).map_err(PgError::Tls)?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| PgError::Tls(e.to_string()))?;
    Ok(PgTls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        name,
        max,
    })
}

/// Connects and logs in as `c` says (TLS verified, password from its
/// file, every server message under the cap): the client, and the task
/// that drives its connection (abort it to close).
///
/// # Errors
/// [`PgError`].
pub async fn connect_client(
    c: &PgConfig,
    application_name: &str,
) -> Result<(Client, tokio::task::JoinHandle<()>), PgError> {
    let mut pg = tokio_postgres::Config::new();
    pg.user(&c.user)
        .dbname(&c.dbname)
        .application_name(application_name);
    if let Some(file) = &c.password_file {
        pg.password(super::read_password(file)?);
    }
    let tcp = TcpStream::connect((c.host.as_str(), c.port)).await?;
    tcp.set_nodelay(true)?;
    Ok(if let Some(t) = &c.tls {
        pg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tls_connector(t, &c.host, c.max_message_bytes)?;
        let (client, conn) = pg.connect_raw(tcp, tls).await?;
        (client, tokio::spawn(drive(conn)))
    } else {
        pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, conn) = pg
            .connect_raw(Capped::new(tcp, c.max_message_bytes), NoTls)
            .await?;
        (client, tokio::spawn(drive(conn)))
    })
}

impl PgLink {
    /// Connects, logs in, sets the session up (`timeout` also bounds each
    /// statement and each idle moment in a transaction, server side) and
    /// makes (or checks) the schema.
    ///
    /// # Errors
    /// [`PgError`].
    pub async fn connect(
        c: &PgConfig,
        gateway: &Gateway,
        uplink: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, PgError> {
        let (client, driver) = connect_client(c, &format!("sensegate uplink {uplink}")).await?;
        let mut link = Self {
            client,
            driver,
            gateway: gateway.clone(),
            table: c.table.clone(),
            // A DBA's schema (`check`) brings its own partitions.
            partitions: c.partitions && c.schema == Schema::Create,
            sensors: HashMap::new(),
            months: BTreeSet::new(),
        };
        // The server ends this session by itself if it stalls: a batch cut
        // off mid-transaction by a silent network would otherwise hold its
        // rows' locks, and the batch sent again would wait on them.
        let ms = timeout.as_millis();
        link.client
            .batch_execute(&format!(
                "SET synchronous_commit = {}; SET statement_timeout = {ms}; \
                 SET idle_in_transaction_session_timeout = {ms}",
                c.synchronous_commit.name()
            ))
            .await?;
        match c.schema {
            Schema::Create => link.create_schema().await?,
            Schema::Check => check_schema(&link.client, &link.table).await?,
        }
        link.client
            .batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS sensegate_staging \
                 (us bigint NOT NULL, sensor integer NOT NULL, \
                  value double precision NOT NULL, quality smallint NOT NULL) \
                 ON COMMIT DELETE ROWS",
            )
            .await?;
        let t = &link.table;
        link.client
            .execute(
                &format!(
                    "INSERT INTO \"{t}_gateways\" (id, name, seen) VALUES ($1::text::uuid, $2, now()) \
                     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, seen = EXCLUDED.seen"
                ),
                &[&link.gateway.id, &link.gateway.name],
            )
            .await?;
        Ok(link)
    }

    async fn create_schema(&mut self) -> Result<(), PgError> {
        let t = &self.table;
        let partitioned = if self.partitions {
            " PARTITION BY RANGE (time)"
        } else {
            ""
        };
        let default = if self.partitions {
            format!("CREATE TABLE IF NOT EXISTS \"{t}_default\" PARTITION OF \"{t}\" DEFAULT;")
        } else {
            String::new()
        };
        // One gateway at a time makes the schema: CREATE .. IF NOT EXISTS
        // is not safe against a concurrent one.
        let tx = self.client.transaction().await?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(hashtext('sensegate schema {t}'));
             CREATE TABLE IF NOT EXISTS \"{t}_gateways\" (
                 id uuid PRIMARY KEY, name text NOT NULL, seen timestamptz NOT NULL);
             CREATE TABLE IF NOT EXISTS \"{t}_sensors\" (
                 id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 gateway uuid NOT NULL, name text NOT NULL, UNIQUE (gateway, name));
             CREATE TABLE IF NOT EXISTS \"{t}\" (
                 time timestamptz NOT NULL, gateway uuid NOT NULL, sensor integer NOT NULL,
                 value double precision NOT NULL, quality smallint NOT NULL,
                 PRIMARY KEY (gateway, sensor, time)){partitioned};
             {default}"
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends one batch in one transaction; returns once it is committed.
    ///
    /// # Errors
    /// [`PgError`]; then nothing of the batch is counted as delivered.
    pub async fn send(&mut self, batch: &[Outgoing]) -> Result<(), PgError> {
        self.sensor_ids(batch).await?;
        if self.partitions {
            self.ensure_partitions(batch).await?;
        }
        let t = &self.table;
        let tx = self.client.transaction().await?;
        let sink = tx
            .copy_in(
                "COPY sensegate_staging (us, sensor, value, quality) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer =
            BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT4, Type::FLOAT8, Type::INT2]);
        let mut writer = std::pin::pin!(writer);
        for chunk in batch {
            let id =
                self.sensors.get(&chunk.sensor).copied().ok_or_else(|| {
                    PgError::Schema(format!("no id for sensor {:?}", chunk.sensor))
                })?;
            for r in &chunk.rows {
                let quality = quality_code(r.quality);
                let row: [&(dyn ToSql + Sync); 4] = [&r.timestamp_us, &id, &r.value, &quality];
                writer.as_mut().write(&row).await?;
            }
        }
        writer.as_mut().finish().await?;
        tx.execute(
            &format!(
                "INSERT INTO \"{t}\" (time, gateway, sensor, value, quality) \
                 SELECT timestamptz 'epoch' + us * interval '1 microsecond', $1::text::uuid, \
                        sensor, value, quality FROM sensegate_staging \
                 ON CONFLICT DO NOTHING"
            ),
            &[&self.gateway.id],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Learns the ids of the batch's sensors, adding the new ones.
    async fn sensor_ids(&mut self, batch: &[Outgoing]) -> Result<(), PgError> {
        let mut needed: BTreeSet<&str> = batch.iter().map(|c| c.sensor.as_str()).collect();
        if self.sensors.len() + needed.len() > MAX_CACHED_SENSORS {
            // Forgotten before `missing` is worked out: the whole batch is
            // asked for again.
            self.sensors.clear();
        }
        needed.retain(|s| !self.sensors.contains_key(*s));
        let missing: Vec<&str> = needed.into_iter().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let t = &self.table;
        // Only names not there yet are inserted: a conflicting insert
        // would still use up an identity value, and reconnecting gateways
        // would run the site out of ids.
        self.client
            .execute(
                &format!(
                    "INSERT INTO \"{t}_sensors\" (gateway, name) \
                     SELECT $1::text::uuid, n FROM unnest($2::text[]) AS n \
                     WHERE NOT EXISTS (SELECT 1 FROM \"{t}_sensors\" s \
                                       WHERE s.gateway = $1::text::uuid AND s.name = n) \
                     ON CONFLICT DO NOTHING"
                ),
                &[&self.gateway.id, &missing],
            )
            .await?;
        let rows = query_capped(
            &self.client,
            &format!(
                "SELECT name, id FROM \"{t}_sensors\" \
                 WHERE gateway = $1::text::uuid AND name = ANY($2::text[])"
            ),
            &[&self.gateway.id, &missing],
            missing.len(),
        )
        .await?;
        for r in &rows {
            let name: String = r.try_get(0)?;
            let id: i32 = r.try_get(1)?;
            if missing.contains(&name.as_str()) {
                self.sensors.insert(name, id);
            }
        }
        Ok(())
    }

    /// Makes the month partitions the batch needs, within the window
    /// around now; other months go to the default partition.
    async fn ensure_partitions(&mut self, batch: &[Outgoing]) -> Result<(), PgError> {
        let now = month_of(crate::reading::now_us());
        let window = now - PARTITION_MONTHS_BACK..=now + PARTITION_MONTHS_AHEAD;
        let needed: BTreeSet<i64> = batch
            .iter()
            .flat_map(|c| {
                let first = c.rows.first().map(|r| month_of(r.timestamp_us));
                let last = c.rows.last().map(|r| month_of(r.timestamp_us));
                first.into_iter().chain(last)
            })
            .filter(|m| window.contains(m) && !self.months.contains(m))
            .collect();
        // A chunk spans an hour at most: its first and last months cover it.
        for month in needed {
            let t = &self.table;
            let (y, m) = (month.div_euclid(12), month.rem_euclid(12) + 1);
            let (ny, nm) = ((month + 1).div_euclid(12), (month + 1).rem_euclid(12) + 1);
            let tx = self.client.transaction().await?;
            let made = tx
                .batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock(hashtext('sensegate schema {t}'));
                     CREATE TABLE IF NOT EXISTS \"{t}_p{y:04}{m:02}\" PARTITION OF \"{t}\"
                     FOR VALUES FROM ('{y:04}-{m:02}-01 00:00:00+00')
                     TO ('{ny:04}-{nm:02}-01 00:00:00+00')"
                ))
                .await;
            match made {
                Ok(()) => tx.commit().await?,
                // Rows of that month already in the default partition, or
                // no right to make tables: the month's rows go to the
                // default partition (the DBA can move them, docs/site.md).
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
                        || e.code()
                            == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
                {
                    tracing::warn!(
                        table = %t,
                        month = format!("{y:04}-{m:02}"),
                        error = ?describe(&e),
                        "a month's partition cannot be made: its rows go to the default partition"
                    );
                }
                Err(e) => return Err(e.into()),
            }
            self.months.insert(month);
        }
        Ok(())
    }

    /// Whether the connection's task has ended (the server closed it).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// Checks that `table` and its side tables have the documented columns
/// and keys (`docs/site.md`).
///
/// # Errors
/// [`PgError::Schema`] naming what is missing or different, or the
/// server's error.
pub async fn check_schema(client: &Client, table: &str) -> Result<(), PgError> {
    let want: [(&str, &[(&str, &str)]); 3] = [
        (
            "",
            &[
                ("time", "timestamp with time zone"),
                ("gateway", "uuid"),
                ("sensor", "integer"),
                ("value", "double precision"),
                ("quality", "smallint"),
            ],
        ),
        (
            "_sensors",
            &[("id", "integer"), ("gateway", "uuid"), ("name", "text")],
        ),
        (
            "_gateways",
            &[
                ("id", "uuid"),
                ("name", "text"),
                ("seen", "timestamp with time zone"),
            ],
        ),
    ];
    for (suffix, columns) in want {
        let table = format!("{table}{suffix}");
        let rows = query_capped(
            client,
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
            64,
        )
        .await?;
        let found: HashMap<String, String> = rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect();
        for (name, ty) in columns {
            match found.get(*name) {
                Some(t) if t == ty => {}
                Some(t) => {
                    return Err(PgError::Schema(format!(
                        "{table}.{name} is {t:?}, the uplink needs {ty}"
                    )));
                }
                None => {
                    return Err(PgError::Schema(format!(
                        "{table} has no column {name} ({ty}); see docs/site.md"
                    )));
                }
            }
        }
    }
    // The keys replays and names depend on: without them a replay
    // would store rows twice, and one sensor would get many ids.
    for (suffix, key) in [
        ("", "gateway,sensor,time"),
        ("_sensors", "gateway,name"),
        ("_gateways", "id"),
    ] {
        let table = format!("{table}{suffix}");
        let found = query_capped(
            client,
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = $1 AND i.indisunique \
               AND (SELECT string_agg(a.attname::text, ',' ORDER BY a.attname) \
                    FROM pg_attribute a \
                    WHERE a.attrelid = c.oid AND a.attnum = ANY(i.indkey)) = $2",
            &[&table, &key],
            1,
        )
        .await?;
        if found.is_empty() {
            return Err(PgError::Schema(format!(
                "{table} has no unique key on ({key}); see docs/site.md"
            )));
        }
    }
    Ok(())
}

/// At most `max` rows of a query: the server may send more, and they are
/// left unread (the statement is dropped, and the rest discarded as it
/// arrives, one capped message at a time).
///
/// # Errors
/// [`PgError`] from the server or the connection.
pub async fn query_capped(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    max: usize,
) -> Result<Vec<tokio_postgres::Row>, PgError> {
    use futures_util::StreamExt as _;
    let stream = client.query_raw(sql, params.iter().copied()).await?;
    let mut stream = std::pin::pin!(stream);
    let mut rows = Vec::new();
    while rows.len() < max {
        match stream.next().await {
            Some(r) => rows.push(r?),
            None => break,
        }
    }
    Ok(rows)
}

async fn drive<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = ?e.to_string(), "postgres connection ended");
    }
}

/// The quality as stored centrally: 0 good, 1 uncertain, 2 bad.
#[must_use]
pub const fn quality_code(q: crate::reading::Quality) -> i16 {
    match q {
        crate::reading::Quality::Good => 0,
        crate::reading::Quality::Uncertain => 1,
        crate::reading::Quality::Bad => 2,
    }
}

/// Months since year 0 (`year * 12 + month - 1`) of a time in µs (UTC).
#[must_use]
pub fn month_of(us: i64) -> i64 {
    let days = us.div_euclid(86_400_000_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    y * 12 + m - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_known_instants() {
        // 1970-01-01, 2000-02-29 23:59:59, 2026-12-02, 1969-12-31.
        assert_eq!(month_of(0), 1970 * 12);
        assert_eq!(month_of(951_868_799_000_000), 2000 * 12 + 1);
        assert_eq!(month_of(1_796_169_600_000_000), 2026 * 12 + 11);
        assert_eq!(month_of(-1), 1969 * 12 + 11);
        // Extremes do not overflow.
        let _ = month_of(i64::MIN);
        let _ = month_of(i64::MAX);
    }

    #[test]
    fn sync_commit_names_round_trip() {
        for s in ["on", "remote_apply", "remote_write", "local", "off"] {
            assert_eq!(SyncCommit::parse(s).unwrap().name(), s);
        }
        assert!(SyncCommit::parse("ON; DROP TABLE x").is_none());
    }
}
