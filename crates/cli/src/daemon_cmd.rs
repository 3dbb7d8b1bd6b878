//! `serve`, `demo` and `check-config`: the daemon side of the command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sensegate_gateway::config::Config;
use sensegate_gateway::daemon::{Daemon, create_private_dir, warn_permissions};
use sensegate_gateway::file::write_private;
use sensegate_gateway::sources::config::DriverSource;
use sensegate_gateway::tls;

use crate::{DemoArgs, EX_CONFIG, EX_UNAVAILABLE};

/// How long connections get to drain at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

pub fn check_config(file: &Path) -> ExitCode {
    match Config::load(file) {
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
    }
}

/// Waits for SIGINT or SIGTERM.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn serve(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    warn_permissions(path, false);
    let daemon = match Daemon::start(&config).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let token_path = &config.admin_token_file;
    match daemon.bootstrap_admin_token(token_path) {
        Ok(true) => tracing::info!(
            path = %token_path.display(),
            "no tokens yet: created an admin token (the file is mode 0600 and is removed once the token is used)"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    signalled().await;
    tracing::info!("shutting down");
    daemon.shutdown(DRAIN).await;
    ExitCode::SUCCESS
}

fn demo_dir(args: &DemoArgs) -> Option<PathBuf> {
    args.data_dir
        .clone()
        .or_else(sensegate_client::settings::default_data_dir)
}

/// Installs the reference C `sim` driver under `dir/drivers` and returns a
/// source that runs it through a driver host, so that every demo exercises
/// the C boundary.
fn install_sim_driver(dir: &Path) -> std::io::Result<DriverSource> {
    let drivers = dir.join("drivers");
    create_private_dir(&drivers).map_err(std::io::Error::other)?;
    let path = drivers.join(sensegate_ffi::reference::SIM_FILE_NAME);
    // Written aside and renamed over: a host of an earlier demo may still
    // have the old file mapped, and truncating it under that host would
    // crash it.
    let fresh = drivers.join(format!("{}.new", sensegate_ffi::reference::SIM_FILE_NAME));
    write_private(&fresh, sensegate_ffi::reference::SIM_SO)?;
    std::fs::rename(&fresh, &path)?;
    let sensors = (0..3).map(|i| format!("driver/sim-{i}")).collect();
    Ok(DriverSource::new(
        "c-sim",
        path,
        "channels=3;rate_hz=10;seed=1",
        sensors,
    ))
}

pub async fn demo(args: DemoArgs) -> ExitCode {
    let Some(dir) = demo_dir(&args) else {
        eprintln!("sensegate demo: no data directory; pass --data-dir DIR");
        return ExitCode::from(EX_CONFIG);
    };
    if let Err(e) = create_private_dir(&dir) {
        eprintln!("sensegate demo: {e}");
        return ExitCode::FAILURE;
    }
    let (cert, key) = match tls::ensure_self_signed(&dir) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("sensegate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::with_defaults(&dir);
    config.native_listen = args.native_addr;
    config.http.listen = args.http_addr;
    config.mqtt.enabled = true;
    config.mqtt.listen = args.mqtt_addr;
    let cert_path = cert.clone();
    config.tls = Some((cert, key));
    config.sim.enabled = true;
    config.sim.sensors = usize::from(args.sim_sensors);
    config.sim.rate_hz = args.sim_rate_hz;
    match install_sim_driver(&dir) {
        Ok(source) => config.sources.drivers.push(source),
        Err(e) => {
            eprintln!("sensegate demo: installing the C sim driver: {e}");
            return ExitCode::FAILURE;
        }
    }
    let daemon = match Daemon::start(&config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sensegate demo: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let token_path = dir.join("admin.token");
    let token = match daemon.ensure_admin_token(&token_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sensegate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fingerprint = daemon.fingerprint().unwrap_or_default().to_owned();
    let client_path = dir.join("client.toml");
    let client_toml = format!(
        "# Written by `sensegate demo`: how the CLI reaches the demo gateway.\n\
         address = \"{}\"\ntoken_file = \"admin.token\"\ntls = true\nfingerprint = \"{fingerprint}\"\nserver_name = \"localhost\"\n",
        daemon.native_addr()
    );
    if let Err(e) = write_private(&client_path, client_toml.as_bytes()) {
        eprintln!("sensegate demo: {}: {e}", client_path.display());
        return ExitCode::FAILURE;
    }
    println!("sensegate demo gateway");
    println!("  native protocol (TLS 1.3): {}", daemon.native_addr());
    if let Some(addr) = daemon.http_addr() {
        println!("  dashboard (TLS 1.3):       https://{addr}/");
        println!("  HTTP API (TLS 1.3):        https://{addr}/api/v1/sensors");
    }
    if let Some(addr) = daemon.mqtt_addr() {
        println!("  MQTT 3.1.1 and 5 (TLS):    {addr}");
    }
    println!("  certificate SHA-256:       {fingerprint}");
    println!("  admin token:               {}", token.expose());
    println!("  token file:                {}", token_path.display());
    println!("  client config:             {}", client_path.display());
    println!();
    println!(
        "  C driver (sandboxed host):  driver/sim-0..2, from {}",
        dir.join("drivers")
            .join(sensegate_ffi::reference::SIM_FILE_NAME)
            .display()
    );
    println!();
    println!(
        "In another terminal: sensegate watch 'sim/*' 'driver/*'   (Ctrl-C here stops the demo)"
    );
    if let Some(addr) = daemon.mqtt_addr() {
        // The token is read from its file by the shell, never printed in
        // the command line itself.
        println!(
            "Over MQTT:           mosquitto_sub -h {} -p {} --cafile '{}' -u demo -P \"$(cat '{}')\" -t 'sensors/#' -v",
            addr.ip(),
            addr.port(),
            cert_path.display(),
            token_path.display()
        );
    }
    signalled().await;
    println!("shutting down");
    daemon.shutdown(DRAIN).await;
    ExitCode::SUCCESS
}
