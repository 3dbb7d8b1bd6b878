//! The client commands: token, sensors, read, watch, push, connections,
//! kick. Each resolves its settings, connects, does one thing, and maps
//! failures to an exit status.

use std::process::ExitCode;
use std::time::Duration;

use sensegate_client::pin::{TlsOptions, parse_fingerprint};
use sensegate_client::settings::{ClientSettings, resolve_token};
use sensegate_client::wire::{self as v1};
use sensegate_client::{Client, ClientError, ConnectOptions};
use sensegate_gateway::reading::now_us;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};

use crate::{ConnArgs, EX_CONFIG, EX_DATAERR, EX_UNAVAILABLE};

/// Readings per push from `sensegate push`.
const PUSH_BATCH: usize = 500;
/// Longest line `sensegate push` accepts.
const MAX_LINE: usize = 4096;
/// How often `watch` pings so the idle timeout does not close it.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Default server address.
const DEFAULT_ADDR: &str = "127.0.0.1:7420";

/// A failure with its exit status.
struct Failure(u8, String);

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let status = match e {
            ClientError::Io(_) | ClientError::Timeout | ClientError::Tls(_) => EX_UNAVAILABLE,
            _ => 1,
        };
        Self(status, e.to_string())
    }
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(status, message)) => {
            eprintln!("sensegate: {message}");
            ExitCode::from(status)
        }
    }
}

fn options(args: &ConnArgs) -> Result<ConnectOptions, Failure> {
    let config_path = args
        .client_config
        .clone()
        .or_else(ClientSettings::default_path);
    let settings = match &config_path {
        Some(p) if args.client_config.is_some() || p.is_file() => {
            ClientSettings::load(p).map_err(|e| Failure(EX_CONFIG, e.to_string()))?
        }
        _ => ClientSettings::default(),
    };
    let token = resolve_token(args.token_file.as_deref(), &settings)
        .map_err(|e| Failure(EX_CONFIG, e.to_string()))?;
    let address = args
        .addr
        .clone()
        .or_else(|| settings.address.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let mut tls = settings.tls.clone();
    if let Some(fp) = &args.fingerprint {
        let pin = parse_fingerprint(fp).map_err(|m| Failure(EX_CONFIG, m))?;
        tls = Some(TlsOptions {
            pin: Some(pin),
            ..tls.unwrap_or_default()
        });
    }
    if args.plain {
        tls = None;
    }
    let mut o = ConnectOptions::plain(address, token);
    o.tls = tls;
    o.client_name = "sensegate-cli".into();
    Ok(o)
}

async fn connect(args: &ConnArgs) -> Result<Client, Failure> {
    let o = options(args)?;
    Ok(Client::connect(&o).await?)
}

fn role_name(role: i32) -> &'static str {
    match v1::Role::try_from(role) {
        Ok(v1::Role::Unspecified) | Err(_) => "?",
        Ok(r) => r.name(),
    }
}

fn time(us: i64) -> String {
    if us == 0 {
        return "-".into();
    }
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    format!("{secs}.{micros:06}")
}

/// A timestamp as RFC 3339 UTC with milliseconds, `-` for none.
fn utc(us: i64) -> String {
    if us <= 0 {
        return "-".into();
    }
    let secs = us.div_euclid(1_000_000);
    let millis = us.rem_euclid(1_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub async fn token_create(args: &ConnArgs, role: &str, scope: &str, name: &str) -> ExitCode {
    finish(
        async {
            let Some(role) = v1::Role::from_name(role) else {
                return Err(Failure(
                    EX_DATAERR,
                    "role must be admin, reader or device".into(),
                ));
            };
            let mut c = connect(args).await?;
            let reply = c.create_token(name, role, scope).await?;
            let info = reply.token.unwrap_or_default();
            eprintln!(
                "token {} ({}, scope {}) created; the secret is shown this once:",
                info.id,
                role_name(info.role),
                info.scope
            );
            println!("{}", reply.secret);
            Ok(())
        }
        .await,
    )
}

pub async fn token_list(args: &ConnArgs) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            println!(
                "{:<16}  {:<7}  {:<8}  {:<20}  {:<24}  NAME",
                "ID", "ROLE", "STATE", "SCOPE", "CREATED"
            );
            for t in c.list_tokens().await? {
                let state = if t.revoked { "revoked" } else { "live" };
                println!(
                    "{:<16}  {:<7}  {:<8}  {:<20}  {:<24}  {}",
                    t.id,
                    role_name(t.role),
                    state,
                    t.scope,
                    time(t.created_at_us),
                    t.name
                );
            }
            Ok(())
        }
        .await,
    )
}

pub async fn token_revoke(args: &ConnArgs, id: &str) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            let n = c.revoke_token(id).await?;
            println!("token {id} revoked; {n} session(s) disconnected");
            Ok(())
        }
        .await,
    )
}

pub async fn sensors(args: &ConnArgs, pattern: &str) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            println!(
                "{:<24}  {:<6}  {:<14}  {:<10}  {:<24}  REASON",
                "NAME", "UNIT", "SOURCE", "STATE", "LAST READING (UTC)"
            );
            for s in c.list_sensors(pattern).await? {
                let state = match v1::SensorState::try_from(s.state) {
                    Ok(v1::SensorState::Unspecified) | Err(_) => "?",
                    Ok(state) => state.name(),
                };
                println!(
                    "{:<24}  {:<6}  {:<14}  {:<10}  {:<24}  {}",
                    s.name,
                    s.unit,
                    s.source,
                    state,
                    utc(s.last_timestamp_us),
                    s.fault_reason
                );
            }
            Ok(())
        }
        .await,
    )
}

/// Writes readings to stdout; an error means stdout is gone (a closed pipe).
fn print_readings(readings: &[v1::Reading]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for r in readings {
        // Good readings go unmarked; others say their quality.
        let quality = match v1::Quality::try_from(r.quality) {
            Ok(v1::Quality::Good) => String::new(),
            Ok(q) => format!(" ({})", q.name()),
            Err(_) => format!(" ({})", v1::Quality::Bad.name()),
        };
        writeln!(
            out,
            "{}  {}  {}{quality}",
            time(r.timestamp_us),
            r.sensor,
            r.value
        )?;
    }
    out.flush()
}

pub async fn read(args: &ConnArgs, sensor: &str) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            let reading = c.latest(sensor).await?;
            print_readings(std::slice::from_ref(&reading)).map_err(|e| Failure(1, e.to_string()))
        }
        .await,
    )
}

/// `90s`, `15m`, `2h`, `7d` in microseconds.
fn duration_us(text: &str) -> Result<i64, Failure> {
    let bad = || {
        Failure(
            EX_DATAERR,
            format!("{text:?} is not a duration like 90s, 15m, 2h or 7d"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let scale: i64 = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).filter(|us| *us > 0).ok_or_else(bad)
}

pub async fn query(
    args: &ConnArgs,
    sensor: &str,
    since: &str,
    bucket: Option<&str>,
    limit: u32,
) -> ExitCode {
    finish(
        async {
            use std::io::Write as _;
            let to = sensegate_gateway::reading::now_us().saturating_add(1);
            let from = to.saturating_sub(duration_us(since)?);
            let bucket = bucket.map(duration_us).transpose()?.unwrap_or(0);
            let mut c = connect(args).await?;
            let h = c.history(sensor, from, to, bucket, limit).await?;
            let mut out = std::io::stdout().lock();
            let io = |e: std::io::Error| Failure(1, e.to_string());
            if bucket == 0 {
                for r in &h.readings {
                    writeln!(out, "{}  {}", time(r.timestamp_us), r.value).map_err(io)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<18}  {:>12}  {:>12}  {:>12}  {:>8}",
                    "START", "MIN", "MAX", "MEAN", "COUNT"
                )
                .map_err(io)?;
                for b in &h.buckets {
                    writeln!(
                        out,
                        "{:<18}  {:>12.4}  {:>12.4}  {:>12.4}  {:>8}",
                        time(b.start_us),
                        b.min,
                        b.max,
                        b.mean,
                        b.count
                    )
                    .map_err(io)?;
                }
            }
            if h.truncated {
                eprintln!("(cut at the row limit; narrow the range or use --bucket)");
            }
            Ok(())
        }
        .await,
    )
}

pub async fn watch(args: &ConnArgs, patterns: &[String]) -> ExitCode {
    finish(async {
        let mut c = connect(args).await?;
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        c.subscribe(&patterns).await?;
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    let _ = c.close().await;
                    return Ok(());
                }
                _ = keepalive.tick() => c.ping().await?,
                batch = c.next_batch() => {
                    let batch = batch?;
                    if batch.dropped > 0 {
                        eprintln!("({} readings lost: this terminal fell behind)", batch.dropped);
                    }
                    if print_readings(&batch.readings).is_err() {
                        // The reader of our output went away (`| head`).
                        let _ = c.close().await;
                        return Ok(());
                    }
                }
            }
        }
    }
    .await)
}

/// Parses `SENSOR VALUE [TIMESTAMP_US]`.
fn parse_line(line: &str, now_us: i64) -> Result<v1::Reading, &'static str> {
    let mut parts = line.split_whitespace();
    let sensor = parts.next().ok_or("empty line")?;
    let value: f64 = parts
        .next()
        .ok_or("missing value")?
        .parse()
        .map_err(|_| "value is not a number")?;
    if !value.is_finite() {
        return Err("value is not finite");
    }
    let timestamp_us = match parts.next() {
        Some(t) => t.parse().map_err(|_| "timestamp is not an integer")?,
        None => now_us,
    };
    if parts.next().is_some() {
        return Err("too many fields");
    }
    Ok(v1::Reading {
        sensor: sensor.to_owned(),
        timestamp_us,
        value,
        quality: v1::Quality::Good.into(),
    })
}

/// What `sensegate push` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushFormat {
    /// One reading per line: `SENSOR VALUE [TIMESTAMP_US]`.
    Lines,
    /// A SenML (RFC 8428) JSON pack.
    Senml,
}

/// The input of `sensegate push`: a file, or stdin.
async fn input(
    file: Option<&std::path::Path>,
) -> Result<Box<dyn tokio::io::AsyncRead + Unpin>, Failure> {
    match file {
        None => Ok(Box::new(tokio::io::stdin())),
        Some(path) => tokio::fs::File::open(path)
            .await
            .map(|f| Box::new(f) as Box<dyn tokio::io::AsyncRead + Unpin>)
            .map_err(|e| Failure(EX_DATAERR, format!("{}: {e}", path.display()))),
    }
}

pub async fn push(args: &ConnArgs, format: PushFormat, file: Option<&std::path::Path>) -> ExitCode {
    finish(
        async {
            let input = input(file).await?;
            let mut c = connect(args).await?;
            let total = match format {
                PushFormat::Lines => push_lines(&mut c, input).await?,
                PushFormat::Senml => push_senml(&mut c, input).await?,
            };
            eprintln!("{total} reading(s) accepted");
            Ok(())
        }
        .await,
    )
}

/// Largest SenML pack read.
const MAX_SENML_BYTES: u64 = 16 << 20;

/// A SenML pack, read whole (capped), resolved, then pushed in batches
/// (each batch all or nothing, as every push). Units are not carried by a
/// push: the readings keep their names, values and times.
async fn push_senml(
    c: &mut Client,
    input: Box<dyn tokio::io::AsyncRead + Unpin>,
) -> Result<u64, Failure> {
    let mut body = Vec::new();
    input
        .take(MAX_SENML_BYTES + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| Failure(EX_DATAERR, format!("reading the pack: {e}")))?;
    if body.len() as u64 > MAX_SENML_BYTES {
        return Err(Failure(
            EX_DATAERR,
            format!("the pack is larger than {MAX_SENML_BYTES} bytes"),
        ));
    }
    let limits = sensegate_ingest::senml::Limits {
        max_records: 1_000_000,
        ..sensegate_ingest::senml::Limits::DEFAULT
    };
    let readings = sensegate_ingest::senml::parse(&body, now_us(), &limits)
        .map_err(|e| Failure(EX_DATAERR, format!("SenML: {e}")))?;
    let mut total = 0u64;
    for chunk in readings.chunks(PUSH_BATCH) {
        let batch = chunk
            .iter()
            .map(|r| v1::Reading {
                sensor: r.name.clone(),
                timestamp_us: r.timestamp_us,
                value: r.value,
                quality: v1::Quality::Good.into(),
            })
            .collect();
        total += u64::from(c.push(batch).await?);
    }
    Ok(total)
}

async fn push_lines(
    c: &mut Client,
    input: Box<dyn tokio::io::AsyncRead + Unpin>,
) -> Result<u64, Failure> {
    let mut lines = tokio::io::BufReader::new(input);
    let mut batch = Vec::new();
    let mut total = 0u64;
    let mut number = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| Failure(EX_DATAERR, format!("stdin: {e}")))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE {
            return Err(Failure(
                EX_DATAERR,
                format!("line {number}: longer than {MAX_LINE} bytes"),
            ));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| Failure(EX_DATAERR, format!("line {number}: not UTF-8")))?
            .trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let reading = parse_line(text, now_us())
            .map_err(|m| Failure(EX_DATAERR, format!("line {number}: {m}")))?;
        batch.push(reading);
        if batch.len() >= PUSH_BATCH {
            total += u64::from(c.push(std::mem::take(&mut batch)).await?);
        }
    }
    if !batch.is_empty() {
        total += u64::from(c.push(batch).await?);
    }
    Ok(total)
}

pub async fn connections(args: &ConnArgs) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            println!(
                "{:>6}  {:<22}  {:<7}  {:<16}  {:>5}  {:>10}  {:>10}",
                "ID", "PEER", "ROLE", "PRINCIPAL", "SUBS", "FRAMES IN", "FRAMES OUT"
            );
            for k in c.list_connections().await? {
                println!(
                    "{:>6}  {:<22}  {:<7}  {:<16}  {:>5}  {:>10}  {:>10}",
                    k.id,
                    k.peer,
                    role_name(k.role),
                    k.principal,
                    k.subscriptions,
                    k.frames_in,
                    k.frames_out
                );
            }
            Ok(())
        }
        .await,
    )
}

pub async fn kick(args: &ConnArgs, id: u64) -> ExitCode {
    finish(
        async {
            let mut c = connect(args).await?;
            c.kick(id).await?;
            println!("connection {id} disconnected");
            Ok(())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_say_why_not() {
        assert_eq!(duration_us("90s").ok(), Some(90_000_000));
        assert_eq!(duration_us("2h").ok(), Some(7_200_000_000));
        assert_eq!(duration_us("7d").ok(), Some(604_800_000_000));
        for bad in ["", "h", "5", "5w", "-5m", "0s", "99999999999999999d"] {
            assert!(duration_us(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn utc_times_are_rfc3339() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01T00:00:00.000Z");
        // 2026-11-23T21:58:29.551Z
        assert_eq!(utc(1_795_471_109_551_003), "2026-11-23T21:58:29.551Z");
        // A leap day.
        assert_eq!(utc(951_782_400_000_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn push_lines_parse_or_say_why_not() {
        let r = parse_line("room/t 21.5 1700000000000000", 0).unwrap();
        assert_eq!(
            (r.sensor.as_str(), r.value, r.timestamp_us),
            ("room/t", 21.5, 1_700_000_000_000_000)
        );
        assert_eq!(parse_line("room/t 1", 42).unwrap().timestamp_us, 42);
        assert_eq!(parse_line("room/t", 0).unwrap_err(), "missing value");
        assert_eq!(
            parse_line("room/t x", 0).unwrap_err(),
            "value is not a number"
        );
        assert_eq!(
            parse_line("room/t NaN", 0).unwrap_err(),
            "value is not finite"
        );
        assert_eq!(
            parse_line("room/t 1 2 3", 0).unwrap_err(),
            "too many fields"
        );
    }
}
