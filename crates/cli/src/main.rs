//! The `sensegate` command: the daemon, the demo, and the client tools.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sensegate_gateway::config::Config;

/// Exit status for a configuration error (sysexits `EX_CONFIG`).
const EX_CONFIG: u8 = 78;

/// sensegate: a sensor gateway that survives hostile input.
#[derive(Debug, Parser)]
#[command(name = "sensegate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a demo gateway with simulated sensors and nothing to configure.
    Demo,
    /// Check a configuration file and report the first error with its key and line.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            eprintln!(
                "sensegate demo: not yet. The wire codec, tokens, policy and config are in place; the native server comes next."
            );
            ExitCode::from(2)
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: ok (native listener {}, tls {}, max frame {} bytes)",
                    file.display(),
                    config.native_listen,
                    if config.tls.is_some() { "on" } else { "off" },
                    config.limits.frame.get()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EX_CONFIG)
            }
        },
    }
}
