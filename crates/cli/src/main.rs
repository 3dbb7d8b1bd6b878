//! The `sensegate` command: the daemon (`serve`, `demo`), config checking,
//! and the client tools, which talk to a running daemon with the client
//! crate.
//!
//! Client commands find the server address, token and certificate pin in a
//! client config file (`--client-config`, `SENSEGATE_CLIENT_CONFIG`, or the
//! one `sensegate demo` writes), overridable by flags. A token is read from
//! a file or `SENSEGATE_TOKEN`, never from an argument.
#![forbid(unsafe_code)]

mod client_cmd;
mod daemon_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit status for a configuration error (sysexits `EX_CONFIG`).
pub const EX_CONFIG: u8 = 78;
/// Exit status for bad input data (sysexits `EX_DATAERR`).
pub const EX_DATAERR: u8 = 65;
/// Exit status when the server cannot be reached (sysexits `EX_UNAVAILABLE`).
pub const EX_UNAVAILABLE: u8 = 69;

/// sensegate: a sensor gateway that survives hostile input.
#[derive(Debug, Parser)]
#[command(name = "sensegate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon from a configuration file.
    Serve {
        /// The TOML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a demo gateway: simulated sensors, TLS on, nothing to configure.
    Demo(DemoArgs),
    /// Internal: run one C driver in a sandbox, for the daemon. Speaks frames
    /// on stdin and stdout; not for people.
    #[command(hide = true)]
    DriverHost,
    /// Check a configuration file and report the first error with its key and line.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Manage tokens (admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// List sensors with their state and last reading time.
    Sensors {
        /// Name pattern (`*` any run, `?` one character).
        #[arg(default_value = "*")]
        pattern: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print the latest reading of a sensor.
    Read {
        /// Sensor name.
        sensor: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print a sensor's history: raw readings, or min/max/mean/count per bucket.
    Query {
        /// Sensor name.
        sensor: String,
        /// How far back: `90s`, `15m`, `2h`, `7d`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Bucket width (same units); raw readings when not given.
        #[arg(long)]
        bucket: Option<String>,
        /// Most rows (0: the server's cap).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print readings live until Ctrl-C.
    Watch {
        /// Sensor names or patterns.
        #[arg(default_value = "*")]
        patterns: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Push readings from stdin (or a file): one per line, `SENSOR VALUE
    /// [TIMESTAMP_US]`, or a SenML (RFC 8428) JSON pack with `--format senml`.
    Push {
        /// `lines` (one reading per line) or `senml` (a SenML JSON pack).
        #[arg(long, value_enum, default_value = "lines")]
        format: client_cmd::PushFormat,
        /// Read from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List open connections (admin).
    Connections {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Disconnect a connection (admin).
    Kick {
        /// Connection id, from `sensegate connections`.
        id: u64,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// `sensegate demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its tokens, certificate and client config
    /// (default: the per-user data directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Native protocol address.
    #[arg(long, default_value = "127.0.0.1:7420")]
    pub native_addr: SocketAddr,
    /// HTTP API address.
    #[arg(long, default_value = "127.0.0.1:7421")]
    pub http_addr: SocketAddr,
    /// MQTT listener address (TLS).
    #[arg(long, default_value = "127.0.0.1:8883")]
    pub mqtt_addr: SocketAddr,
    /// Simulated sensors (1 to 1000).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub sim_sensors: u16,
    /// Readings per second of each simulated sensor (0.1 to 1000).
    #[arg(long, default_value_t = 10.0, value_parser = sim_rate)]
    pub sim_rate_hz: f64,
}

fn sim_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.1..=1000.0).contains(&r) => Ok(r),
        _ => Err("a rate from 0.1 to 1000 readings per second".to_owned()),
    }
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// `admin`, `reader` or `device`.
        #[arg(long)]
        role: String,
        /// Sensor-name pattern the token may touch.
        #[arg(long)]
        scope: String,
        /// A name for the token.
        #[arg(long, default_value = "token")]
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Revoke a token and disconnect its sessions.
    Revoke {
        /// The token id.
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// How a client command reaches the daemon.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// Client config file (default: `SENSEGATE_CLIENT_CONFIG`, else the demo's).
    #[arg(long, global = true)]
    pub client_config: Option<PathBuf>,
    /// Server address, `host:port`.
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// File holding the token (or set `SENSEGATE_TOKEN`).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the server certificate; turns TLS on.
    #[arg(long, global = true)]
    pub fingerprint: Option<String>,
    /// Use plain TCP even if the client config says TLS.
    #[arg(long, global = true)]
    pub plain: bool,
}

fn init_logging() {
    let level = match std::env::var("SENSEGATE_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::DriverHost) {
        // Before any runtime or logger: the host must stay one thread and
        // never write to stderr.
        return sensegate_host::run();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sensegate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve { config } => {
            init_logging();
            daemon_cmd::serve(&config).await
        }
        Command::Demo(args) => {
            init_logging();
            daemon_cmd::demo(args).await
        }
        Command::DriverHost => sensegate_host::run(),
        Command::CheckConfig { file } => daemon_cmd::check_config(&file),
        Command::Token(TokenCommand::Create {
            role,
            scope,
            name,
            conn,
        }) => client_cmd::token_create(&conn, &role, &scope, &name).await,
        Command::Token(TokenCommand::List { conn }) => client_cmd::token_list(&conn).await,
        Command::Token(TokenCommand::Revoke { id, conn }) => {
            client_cmd::token_revoke(&conn, &id).await
        }
        Command::Sensors { pattern, conn } => client_cmd::sensors(&conn, &pattern).await,
        Command::Read { sensor, conn } => client_cmd::read(&conn, &sensor).await,
        Command::Query {
            sensor,
            since,
            bucket,
            limit,
            conn,
        } => client_cmd::query(&conn, &sensor, &since, bucket.as_deref(), limit).await,
        Command::Watch { patterns, conn } => client_cmd::watch(&conn, &patterns).await,
        Command::Push { format, file, conn } => {
            client_cmd::push(&conn, format, file.as_deref()).await
        }
        Command::Connections { conn } => client_cmd::connections(&conn).await,
        Command::Kick { id, conn } => client_cmd::kick(&conn, id).await,
    }
}
