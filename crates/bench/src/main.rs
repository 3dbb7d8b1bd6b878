//! `sensegate-bench`: the load tool. Every scenario targets loopback, is
//! bounded in time and count, prints a table and can write JSON.
//!
//! - `fanout`: one publisher, N subscribers, a list of rates or a search
//!   for the sustainable rate ([`fanout`]);
//! - `ingest`: M devices pushing acknowledged batches ([`ingest`]);
//! - `hold`: C idle connections and the server's memory per connection
//!   ([`hold`]);
//! - `attack`: hostile peers at volume while a subscriber measures its
//!   latency ([`attack`]);
//! - `churn`: subscription changes against the publish path while a
//!   subscriber measures its latency ([`churn`]);
//! - `compare`: `hold` and the fan-out search against sensegate and an
//!   MQTT broker, alternating ([`compare`]); `table` prints the rows.
//!
//! - `mqtt-ingest`: P MQTT publishers keeping W QoS 1 publishes in flight:
//!   PUBACKs per second ([`mqtt_ingest`]).
//! - `lines-ingest`: W writers sending batches of InfluxDB line protocol
//!   over HTTP and waiting for each 204, against sensegate or InfluxDB
//!   ([`lines`]).
//!
//! `fanout` and `hold` also run against an MQTT 3.1.1 broker or sensegate's
//! own MQTT listener ([`mqtt`]); `compare --sg-mqtt-addr` compares
//! sensegate's MQTT listener with a broker through the same MQTT client.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool prints its figures and progress"
)]

mod attack;
mod churn;
mod compare;
mod fanout;
mod hold;
mod ingest;
mod latency;
mod lines;
mod mqtt;
mod mqtt_ingest;
mod net;
mod pipelined;
mod process;
mod target;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use sensegate_client::pin::TlsOptions;
use sensegate_client::settings::read_token_file;
use sha2::Digest as _;

use crate::process::Process;
use crate::target::Target;

/// Microseconds since the Unix epoch (what readings are stamped with).
#[must_use]
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[derive(Parser)]
#[command(
    name = "sensegate-bench",
    about = "Load scenarios against sensegate (and an MQTT broker for comparison), on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One publisher, N subscribers: deliveries/s, latency, server CPU and RSS per rate.
    Fanout {
        #[command(flatten)]
        target: TargetArgs,
        /// Subscribers.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Publish rates to step through, readings/s (0: as fast as accepted).
        #[arg(long, value_delimiter = ',', default_value = "100,1000")]
        rates: Vec<f64>,
        /// Stop at the first step that is not sustainable.
        #[arg(long)]
        search: bool,
        /// Measured seconds per step.
        #[arg(long, default_value_t = 3)]
        measure_secs: u64,
    },
    /// M devices push acknowledged batches: committed readings/s, ack latency.
    Ingest {
        #[command(flatten)]
        target: TargetArgs,
        /// Devices.
        #[arg(long, default_value_t = 8)]
        devices: usize,
        /// Readings per push.
        #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
        batch: Vec<usize>,
        /// Seconds per batch size.
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// C idle connections: the server's resident memory per connection.
    Hold {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
    },
    /// Hostile peers at volume while a subscriber measures its latency.
    Attack {
        #[command(flatten)]
        target: TargetArgs,
        /// Slow-header peers.
        #[arg(long, default_value_t = 2000)]
        slow: usize,
        /// New connections per second of each other kind (oversize prefix,
        /// garbage, wrong token).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Measured seconds (unloaded, then loaded).
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// MQTT publishers keeping QoS 1 publishes in flight: PUBACKs/s, ack latency.
    MqttIngest {
        #[command(flatten)]
        target: TargetArgs,
        /// Publishers.
        #[arg(long, default_value_t = 16)]
        publishers: usize,
        /// QoS 1 publishes each keeps unacknowledged.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 5)]
        secs: u64,
        /// The row's name (`sensegate`, `mosquitto`, ...).
        #[arg(long, default_value = "mqtt")]
        label: String,
    },
    /// W writers POST batches of line protocol and wait for each 204:
    /// points acknowledged per second (sensegate or InfluxDB).
    LinesIngest {
        #[command(flatten)]
        target: TargetArgs,
        /// The HTTP address.
        #[arg(long)]
        http_addr: SocketAddr,
        /// The write path and query.
        #[arg(long, default_value = "/write?db=bench&precision=u")]
        path: String,
        /// Writers (one connection each).
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Points per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// The row's name (`sensegate`, `influxdb`, ...).
        #[arg(long, default_value = "lines")]
        label: String,
        /// No tokens (a server without authentication); else each writer
        /// gets a device token of its own, made with `--token-file`'s
        /// admin over the native protocol at `--addr`.
        #[arg(long)]
        no_auth: bool,
    },
    /// Subscription churn while a subscriber measures its latency.
    Churn {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections holding never-matching patterns.
        #[arg(long, default_value_t = 64)]
        holders: usize,
        /// Patterns each holds.
        #[arg(long, default_value_t = 64)]
        patterns: usize,
        /// Connections subscribing and unsubscribing in a loop.
        #[arg(long, default_value_t = 1)]
        churners: usize,
        /// Measured seconds (unloaded, then loaded).
        #[arg(long, default_value_t = 5)]
        secs: u64,
    },
    /// `hold` and the fan-out search on sensegate and an MQTT broker, alternating.
    Compare(CompareArgs),
    /// Prints the table of rows written by `compare --json`.
    Table {
        /// JSON-lines files.
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// `sensegate` (native protocol) or `mqtt` (a broker, or sensegate's
    /// MQTT listener with `--token-file`).
    #[arg(long, default_value = "sensegate")]
    target: String,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7420")]
    addr: SocketAddr,
    /// sensegate: a token file (an admin's: it pushes and subscribes). With
    /// `--target mqtt`: the CONNECT password (sensegate's MQTT listener).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `--target mqtt`: JSON payloads to `sensors/bench/fanout` (what
    /// sensegate's MQTT listener takes) instead of binary ones.
    #[arg(long)]
    json_payload: bool,
    /// TLS on, pinned to this PEM certificate (server name `localhost`).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The server's pid, for its CPU time and memory.
    #[arg(long)]
    pid: Option<u32>,
    /// Append the results as JSON lines to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// `TCP` or `TLS` (the row's name).
    #[arg(long, default_value = "TCP")]
    transport: String,
    /// sensegate's address.
    #[arg(long)]
    sg_addr: SocketAddr,
    /// sensegate's admin token file.
    #[arg(long)]
    sg_token_file: PathBuf,
    /// sensegate's pid.
    #[arg(long)]
    sg_pid: u32,
    /// sensegate's MQTT listener: compare it (instead of the native
    /// protocol) with the broker, through the same MQTT client, with JSON
    /// payloads on both sides (sensegate needs `mqtt.payload = "json"`).
    #[arg(long)]
    sg_mqtt_addr: Option<SocketAddr>,
    /// The broker's address.
    #[arg(long)]
    mqtt_addr: SocketAddr,
    /// The broker's pid.
    #[arg(long)]
    mqtt_pid: u32,
    /// TLS on both sides, pinned to this PEM certificate.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Fan-out subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Idle connections for the memory figure.
    #[arg(long, default_value_t = 5000)]
    hold: usize,
    /// Publish rates to step through, readings/s.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,100,150,200,300,400,600,800,1000,1500,2000,3000,4000,6000,8000"
    )]
    rates: Vec<f64>,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 3)]
    measure_secs: u64,
    /// Append the row as a JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// TLS options pinned to the certificate in `pem`.
fn pinned(pem: &Path) -> Result<TlsOptions> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let cert = CertificateDer::from_pem_file(pem)
        .with_context(|| format!("reading a certificate from {}", pem.display()))?;
    Ok(TlsOptions {
        pin: Some(sha2::Sha256::digest(cert.as_ref()).into()),
        ca_file: None,
        server_name: Some("localhost".into()),
    })
}

fn sensegate(
    addr: SocketAddr,
    token_file: Option<&Path>,
    tls: Option<TlsOptions>,
) -> Result<Target> {
    let path = token_file.context("--token-file is needed for sensegate")?;
    let token = read_token_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Target::Sensegate { addr, token, tls })
}

impl TargetArgs {
    fn target(&self) -> Result<Target> {
        let tls = self.tls_cert.as_deref().map(pinned).transpose()?;
        match self.target.as_str() {
            "sensegate" => sensegate(self.addr, self.token_file.as_deref(), tls),
            "mqtt" => Ok(Target::Mqtt {
                addr: self.addr,
                tls,
                login: self
                    .token_file
                    .as_deref()
                    .map(|p| {
                        read_token_file(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
                    })
                    .transpose()?,
                json: self.json_payload,
            }),
            other => bail!("unknown target {other:?}: sensegate or mqtt"),
        }
    }

    fn process(&self) -> Option<Process> {
        self.pid.map(Process)
    }

    fn save(&self, value: &impl serde::Serialize) -> Result<()> {
        append_json(self.json.as_deref(), value)
    }
}

fn append_json(path: Option<&Path>, value: &impl serde::Serialize) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(value)?)?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Fanout {
            target,
            subscribers,
            rates,
            search,
            measure_secs,
        } => fanout_cmd(&target, subscribers, &rates, search, measure_secs).await,
        Command::Ingest {
            target,
            devices,
            batch,
            secs,
        } => ingest_cmd(&target, devices, &batch, secs).await,
        Command::Hold {
            target: args,
            connections,
        } => {
            let target = args.target()?;
            let pid = args
                .process()
                .context("--pid is needed to read the server's memory")?;
            let h = hold::run(&target, connections, pid).await?;
            println!(
                "{} ({}): {} idle connections, RSS {} KiB -> {} KiB, {:.0} bytes per connection",
                h.target,
                if h.tls { "TLS" } else { "TCP" },
                h.connections,
                h.rss_before_kib,
                h.rss_after_kib,
                h.bytes_per_connection
            );
            args.save(&h)
        }
        Command::Attack {
            target: args,
            slow,
            rate,
            secs,
        } => {
            let target = args.target()?;
            let a = attack::run(
                &target,
                slow,
                rate,
                Duration::from_secs(secs),
                args.process(),
            )
            .await?;
            a.print();
            args.save(&a)
        }
        Command::Churn {
            target: args,
            holders,
            patterns,
            churners,
            secs,
        } => {
            let target = args.target()?;
            let c = churn::run(
                &target,
                holders,
                patterns,
                churners,
                Duration::from_secs(secs),
                args.process(),
            )
            .await?;
            c.print();
            args.save(&c)
        }
        Command::MqttIngest {
            target,
            publishers,
            window,
            secs,
            label,
        } => mqtt_ingest_cmd(&target, &label, publishers, window, secs).await,
        Command::LinesIngest {
            target,
            http_addr,
            path,
            writers,
            batch,
            secs,
            label,
            no_auth,
        } => {
            lines_ingest_cmd(
                &target, http_addr, &path, writers, batch, secs, &label, no_auth,
            )
            .await
        }
        Command::Compare(args) => compare_cmd(&args).await,
        Command::Table { files } => table_cmd(&files),
    }
}

/// Prints the table of `compare` rows in `files`.
fn table_cmd(files: &[PathBuf]) -> Result<()> {
    let mut rows = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            rows.push(
                serde_json::from_str::<compare::Row>(line)
                    .with_context(|| format!("{} line {}", f.display(), n + 1))?,
            );
        }
    }
    print!("{}", compare::table(&rows));
    Ok(())
}

async fn fanout_cmd(
    args: &TargetArgs,
    subscribers: usize,
    rates: &[f64],
    search: bool,
    measure_secs: u64,
) -> Result<()> {
    let target = args.target()?;
    let plan = compare::plan(subscribers, Duration::from_secs(measure_secs));
    let mut run = fanout::Run::start(target, plan, args.process()).await?;
    println!(
        "| target | TLS | subscribers | offered/s | published/s | delivered/s | delivered | p50 ms | p99 ms | max ms | server CPU | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &rate in rates {
        let s = run.step(rate).await?;
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.3}% | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            s.target,
            s.tls,
            s.subscribers,
            s.offered_rate,
            s.published_rate,
            s.delivered_per_sec,
            s.delivered_share * 100.0,
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.cpu_cores,
            s.peak_rss_mib
        );
        args.save(&s)?;
        if search && !s.sustainable {
            break;
        }
    }
    run.stop();
    Ok(())
}

async fn ingest_cmd(args: &TargetArgs, devices: usize, batches: &[usize], secs: u64) -> Result<()> {
    let target = args.target()?;
    println!(
        "| devices | batch | committed/s | ack p50 ms | ack p99 ms | ack max ms | server CPU | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &b in batches {
        let r = ingest::run(
            &target,
            devices,
            b,
            Duration::from_secs(secs),
            args.process(),
        )
        .await?;
        println!("|{}", r.cells());
        args.save(&r)?;
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "the subcommand's flags, passed on as they are"
)]
async fn lines_ingest_cmd(
    args: &TargetArgs,
    http_addr: SocketAddr,
    path: &str,
    writers: usize,
    batch: usize,
    secs: u64,
    label: &str,
    no_auth: bool,
) -> Result<()> {
    // A device token per writer, scoped to its series, as real agents
    // would have (their own push-rate budget, the scope check on every
    // point).
    let tokens = if no_auth {
        vec![None; writers]
    } else {
        let target = args.target()?;
        let mut admin = target.sensegate(0, "bench-lines-admin").await?;
        let mut tokens = Vec::with_capacity(writers);
        for i in 0..writers {
            let created = admin
                .create_token(
                    &format!("bench-lines-{i}"),
                    sensegate_client::wire::Role::Device,
                    &format!("bench/lp-{i}/*"),
                )
                .await?;
            tokens.push(Some(created.secret));
        }
        tokens
    };
    let r = lines::run(
        http_addr,
        path,
        tokens,
        batch,
        Duration::from_secs(secs),
        args.process(),
    )
    .await?;
    println!(
        "| target | writers | batch | points/s | ack p50 ms | ack p99 ms | ack max ms | server CPU | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!("| {label} |{}", r.cells());
    args.save(&serde_json::json!({"target": label, "figures": r}))?;
    Ok(())
}

async fn mqtt_ingest_cmd(
    args: &TargetArgs,
    label: &str,
    publishers: usize,
    window: usize,
    secs: u64,
) -> Result<()> {
    let target = args.target()?;
    let r = mqtt_ingest::run(
        &target,
        label,
        publishers,
        window,
        Duration::from_secs(secs),
        args.process(),
    )
    .await?;
    println!(
        "| target | TLS | publishers | window | PUBACKs/s | ack p50 ms | ack p99 ms | ack max ms | server CPU | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
        r.target,
        r.tls,
        r.publishers,
        r.window,
        r.pubacks_per_sec,
        r.ack_p50_ms,
        r.ack_p99_ms,
        r.ack_max_ms,
        r.cpu_cores,
        r.peak_rss_mib
    );
    args.save(&r)
}

async fn compare_cmd(args: &CompareArgs) -> Result<()> {
    let tls = args.tls_cert.as_deref().map(pinned).transpose()?;
    let native = sensegate(args.sg_addr, Some(&args.sg_token_file), tls.clone())?;
    let (sg_side, json) = match (args.sg_mqtt_addr, &native) {
        (Some(addr), Target::Sensegate { token, .. }) => (
            Target::Mqtt {
                addr,
                tls: tls.clone(),
                login: Some(token.clone()),
                json: true,
            },
            true,
        ),
        _ => (native, false),
    };
    let sides = compare::Sides {
        sensegate: (sg_side, Process(args.sg_pid)),
        mqtt: (
            Target::Mqtt {
                addr: args.mqtt_addr,
                tls,
                login: None,
                json,
            },
            Process(args.mqtt_pid),
        ),
    };
    let plan = compare::plan(args.subscribers, Duration::from_secs(args.measure_secs));
    println!(
        "{}: hold {} idle connections, then fan-out to {} subscribers",
        args.transport, args.hold, args.subscribers
    );
    let row = compare::run(
        &args.transport,
        &sides,
        &plan,
        &args.rates,
        args.hold,
        &mut |line| println!("{line}"),
    )
    .await?;
    print!("{}", compare::table(std::slice::from_ref(&row)));
    append_json(args.json.as_deref(), &row)
}
