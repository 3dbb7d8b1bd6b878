//! The daemon: builds the service from a [`Config`], binds the native
//! listener, starts the sources, and shuts everything down on request.
//!
//! Shutdown is one [`CancellationToken`]: the listener stops accepting,
//! every connection sends a goodbye and closes, sources stop; then
//! [`Daemon::shutdown`] waits for the tasks under a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::Audit;
use crate::auth::Role;
use crate::auth::store::{TokenRecord, TokenStore, TokenStoreError};
use crate::auth::token::SecretToken;
use crate::config::Config;
use crate::file::permission_problem;
use crate::inflight::InflightBudget;
use crate::native::connection::Shared;
use crate::parking::Parking;
use crate::service::{Service, ServiceError};
use crate::sources::supervisor::HostCommand;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::StoreHandle;
use crate::tls::{self, TlsError};
use sensegate_core::StopReason;

/// The daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The token store could not be opened.
    #[error("token store: {0}")]
    Tokens(#[from] TokenStoreError),
    /// The audit log could not be opened.
    #[error("audit log {path}: {source}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The parker thread (for idle connections) could not be started.
    #[error("connection parker: {0}")]
    Parker(#[source] std::io::Error),
    /// The listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The first admin token could not be created.
    #[error("admin token: {0}")]
    Bootstrap(ServiceError),
    /// The history store could not be opened.
    #[error("history store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: crate::store::HistoryError,
    },
    /// The driver host program could not be found.
    #[error("driver host: {0}")]
    DriverHost(std::io::Error),
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    service: Arc<Service>,
    /// What every native connection task shares (for in-memory ones).
    native: crate::native::connection::Shared,
    native_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    mqtt_addr: Option<SocketAddr>,
    fingerprint: Option<String>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// The token store file in a data directory.
#[must_use]
pub fn token_store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tokens.json")
}

/// How the daemon runs, beyond what the config file says: hooks for
/// embedders and tests, never read from a file.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// How driver hosts are started; `None` runs this executable with
    /// `driver-host`.
    pub driver_host: Option<HostCommand>,
}

impl Daemon {
    /// Starts the daemon described by `config`, with the default options.
    ///
    /// # Errors
    /// [`StartError`] for the first thing that cannot be set up.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with(config, DaemonOptions::default()).await
    }

    /// Starts the daemon described by `config`, with `options`.
    ///
    /// # Errors
    /// [`StartError`] for the first thing that cannot be set up.
    pub async fn start_with(config: &Config, options: DaemonOptions) -> Result<Self, StartError> {
        create_private_dir(&config.data_dir)?;
        let store_path = token_store_path(&config.data_dir);
        warn_permissions(&store_path, true);
        let tokens =
            TokenStore::open(&store_path, config.limits.max_tokens, config.limits.message)?;
        let audit = match &config.audit_log {
            Some(path) => {
                Audit::open(path, config.limits.audit_denials_per_minute).map_err(|source| {
                    StartError::Audit {
                        path: path.clone(),
                        source,
                    }
                })?
            }
            None => Audit::disabled(),
        };
        let Acceptors {
            native: tls,
            http: http_tls,
            mqtt: mqtt_tls,
            fingerprint,
        } = tls_acceptors(config)?;
        // Resolved before any task starts, so a failure leaves nothing running.
        let host = match (&options.driver_host, config.sources.drivers.is_empty()) {
            (_, true) => None,
            (Some(h), false) => Some(h.clone()),
            (None, false) => Some(HostCommand::current_exe().map_err(StartError::DriverHost)?),
        };
        if host.is_some() {
            // C code runs next to this process: keep other processes of the
            // same user out of its memory and descriptors.
            if let Err(e) = sensegate_ffi::sandbox::make_undumpable() {
                tracing::warn!(error = %e, "cannot make the daemon undumpable");
            }
        }
        let service = Service::new(config.server_name.clone(), config.limits, tokens, audit);
        let (service, sqlite, uplinks, site) = with_history(config, service)?;
        let service = Arc::new(service);
        let (listener, native_addr) = bind(config.native_listen).await?;
        let http = if config.http.enabled {
            Some(bind(config.http.listen).await?)
        } else {
            None
        };
        let mqtt = if config.mqtt.enabled {
            Some(bind(config.mqtt.listen).await?)
        } else {
            None
        };
        let shutdown = service.shutdown_token();
        let tracker = TaskTracker::new();
        let parking = parking(config, &tracker, &service)?;
        // After everything that can fail: the sweep task waits for shutdown.
        tracker.spawn(service.clone().stop_all_at_shutdown());
        let shared = Shared {
            service: service.clone(),
            inflight: InflightBudget::with_share(
                config.limits.inflight_bytes_total,
                config.limits.inflight_bytes_per_token,
            ),
            shutdown: shutdown.clone(),
            parking,
            tracker: tracker.clone(),
        };
        let (http_addr, mqtt_addr) = spawn_listeners(
            config,
            Listeners {
                native: (listener, tls),
                http: http.map(|(l, a)| (l, a, http_tls)),
                mqtt: mqtt.map(|(l, a)| (l, a, mqtt_tls)),
            },
            &shared,
        );
        tracker.spawn(reap_idle(service.clone(), shutdown.clone()));
        if config.sim.enabled {
            tracker.spawn(crate::sim::run(
                service.source_sink("sim"),
                config.sim,
                shutdown.clone(),
            ));
        }
        spawn_sources(config, host.as_ref(), &service, &tracker, &shutdown);
        spawn_uplinks(config, sqlite.as_ref(), uplinks, &tracker, &shutdown);
        spawn_site(config, site, &service, &tracker, &shutdown);
        tracing::info!(addr = %native_addr, tls = fingerprint.is_some(), "native listener up");
        Ok(Self {
            service,
            native: shared,
            native_addr,
            http_addr,
            mqtt_addr,
            fingerprint,
            shutdown,
            tracker,
        })
    }

    /// A native-protocol connection over an in-memory pipe instead of a
    /// socket, as if from `peer`: admitted against the same caps, served by
    /// the same session and connection task, listed and kicked like any
    /// other. Returns the client's end. For tests that drive the protocol
    /// without sockets (under tokio's paused clock too) and for embedders.
    ///
    /// # Errors
    /// [`AdmitError`] past a connection cap.
    pub fn connect_in_memory(
        &self,
        peer: SocketAddr,
    ) -> Result<tokio::io::DuplexStream, sensegate_core::AdmitError> {
        let (client, server) = tokio::io::duplex(64 << 10);
        let admission = self.service.admit(
            peer,
            sensegate_core::Frontend::Native,
            crate::reading::now_us(),
        )?;
        self.tracker.spawn(crate::native::connection::run(
            self.native.clone(),
            admission,
            crate::native::transport::Transport::Memory(server),
            tokio::time::Instant::now(),
        ));
        Ok(client)
    }

    /// The bound native address (useful with port 0).
    #[must_use]
    pub const fn native_addr(&self) -> SocketAddr {
        self.native_addr
    }

    /// The bound HTTP address, when the HTTP API is on.
    #[must_use]
    pub const fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound MQTT address, when the MQTT listener is on.
    #[must_use]
    pub const fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// Idle native connections parked now (waiting without a task).
    #[must_use]
    pub fn parked_connections(&self) -> usize {
        self.service
            .counters()
            .parked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The certificate fingerprint, when TLS is on.
    #[must_use]
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The service core.
    #[must_use]
    pub const fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Creates an admin token with scope `*` when the store has none that is
    /// live in `saved` (the token file), writes it there with mode 0600, and
    /// returns it. Reuses the saved token when it still authenticates.
    ///
    /// # Errors
    /// [`StartError::Bootstrap`] or a write failure.
    pub fn ensure_admin_token(&self, saved: &Path) -> Result<SecretToken, StartError> {
        if let Ok(text) = crate::file::read_private(saved, 1024) {
            let text = text.trim();
            if self.service.token_is_live(text) {
                return Ok(SecretToken::from_text(text));
            }
        }
        Ok(self.new_admin_token(saved)?.1)
    }

    /// A new admin token with scope `*`, its secret written to `path`.
    fn new_admin_token(&self, path: &Path) -> Result<(TokenRecord, SecretToken), StartError> {
        let (record, secret) = self
            .service
            .bootstrap_token("admin", Role::Admin, "*")
            .map_err(StartError::Bootstrap)?;
        write_secret(path, secret.expose()).map_err(|source| StartError::DataDir {
            path: path.to_owned(),
            source,
        })?;
        Ok((record, secret))
    }

    /// `serve`'s bootstrap: when the token store is empty, creates an admin
    /// token with scope `*`, writes its secret to `path` (mode 0600) and
    /// removes that file once the token has been used, so the secret does
    /// not stay readable on disk. Returns whether a token was made.
    ///
    /// # Errors
    /// [`StartError::Bootstrap`], or [`StartError::DataDir`] when the file
    /// cannot be written.
    pub fn bootstrap_admin_token(&self, path: &Path) -> Result<bool, StartError> {
        if self.service.token_count() != 0 {
            return Ok(false);
        }
        let (record, secret) = self
            .service
            .bootstrap_token("admin", Role::Admin, "*")
            .map_err(StartError::Bootstrap)?;
        // Armed before the secret can be read: a client that reads the file
        // and signs in at once must still have it removed.
        self.service.remove_when_used(&record.id, path);
        write_secret(path, secret.expose()).map_err(|source| StartError::DataDir {
            path: path.to_owned(),
            source,
        })?;
        Ok(true)
    }

    /// A token that resolves when shutdown starts.
    #[must_use]
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, says goodbye to every client, and waits up to
    /// `drain` for the tasks to end.
    pub async fn shutdown(self, drain: Duration) {
        self.shutdown.cancel();
        self.service.stop_all(StopReason::Shutdown);
        self.tracker.close();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown drain deadline passed; dropping remaining connections");
        }
    }
}

impl Drop for Daemon {
    /// A daemon dropped without [`Daemon::shutdown`] still stops: every task
    /// and source thread watches the shutdown token. (Blocking source
    /// threads would otherwise keep the runtime from shutting down.)
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Parked connections included, even when the runtime is already
        // gone and no task would run the sweep.
        self.service.stop_all(StopReason::Shutdown);
    }
}

/// The bound listeners, each with its TLS acceptor (none: plain TCP).
struct Listeners {
    native: (TcpListener, Option<TlsAcceptor>),
    http: Option<(TcpListener, SocketAddr, Option<TlsAcceptor>)>,
    mqtt: Option<(TcpListener, SocketAddr, Option<TlsAcceptor>)>,
}

/// Starts the accept loops; returns the HTTP and MQTT addresses.
fn spawn_listeners(
    config: &Config,
    listeners: Listeners,
    shared: &Shared,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let (service, tracker) = (&shared.service, &shared.tracker);
    let http_addr = listeners.http.map(|(listener, addr, tls)| {
        tracing::info!(addr = %addr, tls = tls.is_some(), "http listener up");
        tracker.spawn(crate::http::server::run(
            listener,
            tls,
            service.clone(),
            shared.inflight.clone(),
            config.http.limits.clone(),
            tracker.clone(),
        ));
        addr
    });
    let mqtt_addr = listeners.mqtt.map(|(listener, addr, tls)| {
        tracing::info!(addr = %addr, tls = tls.is_some(), "mqtt listener up");
        tracker.spawn(crate::mqtt::listener::run(
            listener,
            crate::mqtt::connection::Shared {
                service: service.clone(),
                inflight: shared.inflight.clone(),
                config: config.mqtt.clone(),
                codec: Arc::new(config.mqtt.codec),
                shutdown: shared.shutdown.clone(),
                parking: shared.parking.clone(),
                tracker: tracker.clone(),
            },
            tls,
            tracker.clone(),
        ));
        addr
    });
    let (listener, tls) = listeners.native;
    tracker.spawn(crate::native::listener::run(
        listener,
        shared.clone(),
        tls,
        tracker.clone(),
    ));
    (http_addr, mqtt_addr)
}

/// The parker for idle native connections, when parking is on.
fn parking(
    config: &Config,
    tracker: &TaskTracker,
    service: &Service,
) -> Result<Option<Parking>, StartError> {
    let Some(after) = config.park_after else {
        return Ok(None);
    };
    let parker = crate::parking::start(tracker, service.counters().parked.clone())
        .map_err(StartError::Parker)?;
    Ok(Some((parker, after)))
}

/// Closes idle authenticated connections, checking once a second (or more
/// often for idle timeouts under four seconds).
async fn reap_idle(service: Arc<Service>, shutdown: CancellationToken) {
    let idle = service.limits().idle_timeout;
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let n = service.reap_idle(idle);
        if n > 0 {
            tracing::debug!(closed = n, "idle connections closed");
        }
    }
}

/// Binds a listener and says where it is bound (the port may have been 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// What [`with_history`] hands back: the service, the SQLite store, the
/// uplinks, and a site view's index of the site's sensors.
type WithHistory = (
    Service,
    Option<Arc<SqliteStore>>,
    Vec<Attached>,
    Option<(Arc<crate::site::SiteIndex>, Arc<crate::site::SiteStats>)>,
);
/// An uplink and its figures.
type Attached = (crate::uplink::UplinkConfig, Arc<crate::uplink::UplinkStats>);

/// Opens the history (when on) for `service`, and attaches the uplinks;
/// or, on a site view, the site's history (read-only).
fn with_history(config: &Config, mut service: Service) -> Result<WithHistory, StartError> {
    if let Some(site) = &config.site {
        let index = Arc::new(crate::site::SiteIndex::default());
        let stats = Arc::new(crate::site::SiteStats::default());
        let store = crate::site::history::PgHistory::new(
            site.clone(),
            index.clone(),
            stats.clone(),
            tokio::runtime::Handle::current(),
            config.store.queries.total,
        );
        let handle = StoreHandle::read_only(Arc::new(store), config.store.queries);
        tracing::info!(
            host = %site.pg.host,
            table = %site.pg.table,
            "site view: history is the site's database, read-only"
        );
        let service = service.with_site_store(handle, stats.clone());
        return Ok((service, None, Vec::new(), Some((index, stats))));
    }
    let mut sqlite = None;
    if let Some((handle, store)) = open_store(config, &service.shutdown_token())? {
        service = service.with_store(handle);
        sqlite = Some(store);
    }
    let uplinks = attach_uplinks(config, sqlite.as_ref())?;
    if !uplinks.is_empty() {
        let stats = uplinks.iter().map(|(_, s)| s.clone()).collect();
        service = service.with_uplinks(Arc::new(crate::uplink::Uplinks(stats)));
    }
    Ok((service, sqlite, uplinks, None))
}

/// Gives each configured uplink its cursor (dropping the cursors of
/// uplinks no longer configured) and its figures.
fn attach_uplinks(
    config: &Config,
    store: Option<&Arc<SqliteStore>>,
) -> Result<Vec<Attached>, StartError> {
    let Some(store) = store else {
        return Ok(Vec::new());
    };
    let names: Vec<&str> = config.uplinks.iter().map(|u| u.name.as_str()).collect();
    store
        .attach_uplinks(&names)
        .map_err(|source| StartError::Store {
            path: config.data_dir.join("history.db"),
            source,
        })?;
    Ok(config
        .uplinks
        .iter()
        .map(|u| {
            let stats = Arc::new(crate::uplink::UplinkStats::new(&u.name, u.target.kind()));
            (u.clone(), stats)
        })
        .collect())
}

/// Starts a site view's follower of the site's database.
fn spawn_site(
    config: &Config,
    site: Option<(Arc<crate::site::SiteIndex>, Arc<crate::site::SiteStats>)>,
    service: &Arc<Service>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    if let (Some(c), Some((index, stats))) = (&config.site, site) {
        tracker.spawn(crate::site::follow::run(
            service.source_sink("site"),
            c.clone(),
            index,
            stats,
            Some(config.data_dir.join("site-gateways.txt")),
            shutdown.clone(),
        ));
    }
}

/// Starts one task per uplink.
fn spawn_uplinks(
    config: &Config,
    store: Option<&Arc<SqliteStore>>,
    uplinks: Vec<Attached>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let Some(store) = store else { return };
    let gateway = crate::uplink::postgres::Gateway {
        id: store.gateway_id().to_owned(),
        name: config.server_name.clone(),
    };
    for (u, stats) in uplinks {
        tracker.spawn(crate::uplink::run(
            u,
            store.clone(),
            stats,
            gateway.clone(),
            shutdown.clone(),
        ));
    }
}

/// The history's writer and its SQLite store.
type OpenedStore = (Arc<StoreHandle>, Arc<SqliteStore>);

fn open_store(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<OpenedStore>, StartError> {
    if !config.store.enabled {
        return Ok(None);
    }
    let path = config
        .store
        .path
        .clone()
        .unwrap_or_else(|| config.data_dir.join("history.db"));
    let store = SqliteStore::open(&path, config.store.durability)
        .map_err(|source| StartError::Store { path, source })?;
    let store = Arc::new(store);
    let handle = StoreHandle::start(
        store.clone(),
        config.store.max_queued_readings,
        config.store.queries,
        config.store.retention.clone(),
        shutdown,
    );
    Ok(Some((handle, store)))
}

/// Starts the driver, serial and hwmon sources.
fn spawn_sources(
    config: &Config,
    host: Option<&HostCommand>,
    service: &Arc<Service>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let sources = &config.sources;
    if let Some(host) = host {
        for source in &sources.drivers {
            tracker.spawn(crate::sources::supervisor::run(
                service.source_sink(&format!("driver:{}", source.name)),
                crate::sources::supervisor::HostedDriver {
                    source: source.clone(),
                    host: host.clone(),
                },
                shutdown.clone(),
            ));
        }
    }
    for serial in &sources.serial {
        tracker.spawn(crate::sources::serial::run(
            service.source_sink(&format!("serial:{}", serial.name)),
            serial.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(hwmon) = &sources.hwmon {
        tracker.spawn(crate::sources::hwmon::run(
            service.source_sink("hwmon"),
            hwmon.clone(),
            shutdown.clone(),
        ));
    }
}

/// Writes a secret to a new 0600 file (replacing any old one).
///
/// # Errors
/// The I/O error.
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    crate::file::write_private(path, format!("{secret}\n").as_bytes())
}

/// Creates a directory (and its parents) with mode 0700 if it is missing,
/// and refuses one that is writable by group or others or owned by another
/// user ([`crate::file::check_private_dir`]).
///
/// # Errors
/// [`StartError::DataDir`].
pub fn create_private_dir(path: &Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: path.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(err)?;
    crate::file::check_private_dir(path).map_err(err)
}

/// The listeners' TLS acceptors (one ALPN protocol each) and the
/// certificate's fingerprint, or nothing (with a warning for a plaintext
/// listener others can reach).
#[derive(Default)]
struct Acceptors {
    native: Option<TlsAcceptor>,
    http: Option<TlsAcceptor>,
    mqtt: Option<TlsAcceptor>,
    fingerprint: Option<String>,
}

fn tls_acceptors(config: &Config) -> Result<Acceptors, StartError> {
    if config.mqtt.enabled && !config.mqtt.tls {
        warn_plaintext("mqtt", config.mqtt.listen);
    }
    let Some((cert, key)) = &config.tls else {
        warn_plaintext("native", config.native_listen);
        if config.http.enabled {
            warn_plaintext("http", config.http.listen);
        }
        return Ok(Acceptors::default());
    };
    warn_permissions(key, true);
    let acceptor = |alpn| tls::server_config(cert, key, alpn).map(TlsAcceptor::from);
    let certs = tls::load_certs(cert)?;
    Ok(Acceptors {
        native: Some(acceptor(tls::ALPN_NATIVE)?),
        http: Some(acceptor(tls::ALPN_HTTP)?),
        mqtt: if config.mqtt.enabled && config.mqtt.tls {
            Some(acceptor(tls::ALPN_MQTT)?)
        } else {
            None
        },
        fingerprint: certs.first().map(tls::fingerprint),
    })
}

/// Warns about a plaintext listener on an address other machines can reach:
/// tokens would cross the network in clear.
fn warn_plaintext(which: &'static str, addr: std::net::SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            listener = which,
            addr = %addr,
            "plaintext listener on a non-loopback address: tokens cross the network in clear; \
             set native.tls_cert and native.tls_key (and keep mqtt.tls on)"
        );
    }
}

/// Logs a warning when a file's permissions are too open.
pub fn warn_permissions(path: &Path, secret: bool) {
    if let Some(problem) = permission_problem(path, secret) {
        tracing::warn!(path = %path.display(), "{problem}");
    }
}
