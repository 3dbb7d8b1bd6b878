//! The `sensegate` command: the daemon, the demo, and the client tools.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => {
            eprintln!(
                "sensegate demo: not yet. The wire codec is in place; the native server comes next."
            );
            ExitCode::from(2)
        }
    }
}
