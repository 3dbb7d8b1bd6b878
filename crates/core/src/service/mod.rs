//! The service core: every operation a front end can ask for, each checked
//! by [`policy::decide`] before it does anything.
//!
//! The native protocol calls it today and the HTTP API will call the same
//! functions, so no access rule lives in a front end. Results are typed
//! values; front ends serialise them. Errors are [`ServiceError`], mapped to
//! a wire code in one place ([`ServiceError::code`]). The admin operations
//! (tokens and connections, each within the caller's scope) are in the
//! `admin` submodule; pushes (checked all or nothing, then committed and
//! published) in `push`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use sensegate_proto::v1::ErrorCode;

use crate::audit::{Audit, AuditEvent};
use crate::auth::Principal;
use crate::auth::store::TokenStore;
use crate::catalog::{Catalog, SensorEntry};
use crate::hub::Hub;
use crate::limits::Limits;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::reading::{Quality, Reading};
use crate::registry::{AdmitError, Connection, Registry};
use crate::stats::{IngestRefusal, Limit, LimitHits};
use crate::store::writer::StoreHandle;
use crate::store::{History, HistoryErrorKind, HistoryQuery};
use crate::throttle::{AuthThrottle, PushRate};
use crate::time::Instant;

mod admin;
mod connections;
mod metrics;
mod push;
mod sources;
#[cfg(test)]
mod tests;

pub use sources::SourceSink;

/// The catalog, the hub and the registry, opened to tests and benchmarks
/// by the `test-support` feature.
#[cfg(feature = "test-support")]
#[derive(Debug, Clone, Copy)]
pub struct Internals<'a> {
    /// The sensor catalog.
    pub catalog: &'a Catalog,
    /// The hub.
    pub hub: &'a Hub,
    /// The connection registry.
    pub registry: &'a Arc<Registry>,
}

pub use metrics::{
    HubFigures, MetricsSnapshot, SensorValue, SiteFigures, SiteReport, StoreFigures, UplinkFigures,
    UplinkReport,
};

/// Why an operation was refused. Messages are fixed text: never input, never
/// a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The token did not authenticate.
    #[error("authentication failed")]
    Unauthenticated,
    /// Too many failed authentications from this address.
    #[error("too many failed authentications; try later")]
    AuthThrottled,
    /// The policy said no.
    #[error("not allowed")]
    Forbidden,
    /// No such sensor, token or connection (or no reading yet).
    #[error("not found")]
    NotFound,
    /// Pushed faster than `limits.push_rate_per_sec`.
    #[error("push rate over the limit")]
    PushRate,
    /// A push with more than `limits.max_push_batch` readings.
    #[error("push batch over the limit")]
    PushBatch,
    /// More subscription patterns than `limits.max_subscriptions`.
    #[error("too many subscriptions")]
    Subscriptions,
    /// The sensor catalog is full.
    #[error("too many sensors")]
    SensorsFull,
    /// The token store is full.
    #[error("too many tokens")]
    TokensFull,
    /// A field of the request is not acceptable (bad name or pattern).
    #[error("invalid request")]
    Invalid,
    /// History storage is full: the push was not stored (and not
    /// acknowledged); it will be once space is freed.
    #[error("history storage is full; try again later")]
    StorageFull,
    /// The history writer's queue stayed full (`store.max_queued_readings`):
    /// the push was not stored (and not acknowledged); it may be in a
    /// moment.
    #[error("the history queue is full; try again")]
    StoreBusy,
    /// Every history query slot is taken (`store.max_queries`): nothing
    /// ran; the same query may succeed in a moment.
    #[error("too many history queries at once; try again")]
    QueriesBusy,
    /// The caller's token runs its share of the history query slots already
    /// (`store.max_queries_per_token`): nothing ran.
    #[error("too many history queries from this token at once; try again")]
    TokenQueriesBusy,
    /// This server is a read-only site view (`history.backend =
    /// "postgres"`): it takes no pushes; devices push to a gateway.
    #[error("this server is a read-only site view: push to a gateway")]
    ReadOnly,
    /// Something failed on the server side (store write).
    #[error("internal error")]
    Internal,
}

impl ServiceError {
    /// Why a push was refused, as `sensegate_ingest_refused_total` counts
    /// it: the one mapping every front end uses.
    #[must_use]
    pub const fn refusal(self) -> IngestRefusal {
        match self {
            Self::Forbidden | Self::Unauthenticated | Self::ReadOnly => IngestRefusal::Forbidden,
            Self::PushRate | Self::PushBatch => IngestRefusal::Rate,
            Self::SensorsFull | Self::StorageFull | Self::StoreBusy => IngestRefusal::Full,
            Self::Invalid => IngestRefusal::BadPayload,
            _ => IngestRefusal::Failed,
        }
    }

    /// The wire code: the one mapping from service errors to the outside.
    #[must_use]
    pub const fn code(self) -> ErrorCode {
        match self {
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::AuthThrottled | Self::PushRate => ErrorCode::RateLimited,
            Self::Forbidden | Self::ReadOnly => ErrorCode::Forbidden,
            Self::NotFound => ErrorCode::NotFound,
            Self::PushBatch
            | Self::Subscriptions
            | Self::SensorsFull
            | Self::TokensFull
            | Self::StorageFull
            | Self::StoreBusy
            | Self::QueriesBusy
            | Self::TokenQueriesBusy => ErrorCode::Overloaded,
            Self::Invalid => ErrorCode::Malformed,
            Self::Internal => ErrorCode::Internal,
        }
    }
}

/// How far ahead of the daemon's clock a pushed timestamp may be (clock skew).
pub const MAX_FUTURE_US: i64 = 10 * 60 * 1_000_000;

/// Longest unit a push may give its sensor (RFC 8428's units are at most
/// a few characters).
pub const MAX_UNIT_BYTES: usize = 32;

/// Longest wait for a push's commit before the device is told it failed.
pub const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Who is asking, from where: what audit lines need besides the principal.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated principal.
    pub principal: &'a Principal,
    /// Its source address.
    pub peer: SocketAddr,
}

/// A reading as pushed by a device, before it is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedReading {
    /// Sensor name (validated on decode).
    pub sensor: String,
    /// Microseconds since the epoch.
    pub timestamp_us: i64,
    /// Finite value.
    pub value: f64,
    /// Quality.
    pub quality: Quality,
}

/// The application core shared by every front end.
#[derive(Debug)]
pub struct Service {
    limits: Limits,
    server_name: String,
    /// Taken by every authentication: held for in-memory work only.
    tokens: Mutex<TokenStore>,
    /// Serialises the token store's saves (written and synced outside
    /// `tokens`), so a later snapshot is never overwritten by an earlier one.
    token_saves: Mutex<()>,
    catalog: Catalog,
    hub: Hub,
    registry: Arc<Registry>,
    shutdown: tokio_util::sync::CancellationToken,
    /// One shared principal per live token, so a thousand sessions of one
    /// token hold one copy. Bounded by the token store's cap; revocation
    /// removes the entry.
    principals: Mutex<std::collections::HashMap<String, Arc<Principal>>>,
    audit: Audit,
    auth_throttle: AuthThrottle,
    push_rate: PushRate,
    /// Readings taken in from every source, for metrics and benchmarks.
    ingested: std::sync::atomic::AtomicU64,
    /// History, when on.
    store: Option<Arc<StoreHandle>>,
    /// The history is the site's, read-only: pushes are refused and the
    /// readings taken in (from the site's database) are not written back.
    read_only: bool,
    /// A site view's figures.
    site: Option<Arc<dyn SiteReport>>,
    /// The uplinks' figures, when the daemon runs any.
    uplinks: Option<Arc<dyn UplinkReport>>,
    /// Counters for `/metrics`.
    counters: Counters,
    /// The bootstrap admin token's id and the file holding its secret, to
    /// remove once the token was used (see [`Service::remove_when_used`]).
    bootstrap: Mutex<Option<(String, std::path::PathBuf)>>,
    /// Whether `bootstrap` holds anything: one relaxed load per
    /// authentication instead of a lock.
    bootstrap_armed: std::sync::atomic::AtomicBool,
}

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct Counters {
    /// Failed authentications, by reason: a wrong token, and throttled.
    pub auth_bad_token: std::sync::atomic::AtomicU64,
    /// Authentications refused because the address was throttled.
    pub auth_throttled: std::sync::atomic::AtomicU64,
    /// Driver host restarts by source (one entry per configured driver).
    pub driver_restarts: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Caps hit, by kind.
    pub limits: LimitHits,
    /// Native connections parked now (idle, waiting without a task).
    pub parked: Arc<std::sync::atomic::AtomicUsize>,
    /// Readings refused by a front end with topic or payload rules, per
    /// front end and reason.
    pub ingest_refused: crate::stats::IngestRefusals,
}

impl Counters {
    /// Counts a connection refused at the door.
    pub fn refused(&self, e: AdmitError) {
        self.limits.hit(match e {
            AdmitError::Total => Limit::ConnectionsTotal,
            AdmitError::PerAddress => Limit::ConnectionsPerAddress,
        });
    }
}

impl Service {
    /// A service over a token store, with the caps in `limits`.
    #[must_use]
    pub fn new(server_name: String, limits: Limits, tokens: TokenStore, audit: Audit) -> Self {
        let shutdown = tokio_util::sync::CancellationToken::new();
        Self {
            server_name,
            tokens: Mutex::new(tokens),
            token_saves: Mutex::new(()),
            catalog: Catalog::new(limits.max_sensors),
            hub: Hub::new(limits.subscriber_queue, limits.lag_policy),
            registry: Arc::new(Registry::new(
                limits.max_connections,
                limits.max_connections_per_address,
                shutdown.clone(),
            )),
            shutdown,
            principals: Mutex::new(std::collections::HashMap::new()),
            audit,
            auth_throttle: AuthThrottle::new(limits.auth_failures_per_minute),
            push_rate: PushRate::new(limits.push_rate_per_sec),
            ingested: std::sync::atomic::AtomicU64::new(0),
            store: None,
            read_only: false,
            site: None,
            uplinks: None,
            counters: Counters::default(),
            bootstrap: Mutex::new(None),
            bootstrap_armed: std::sync::atomic::AtomicBool::new(false),
            limits,
        }
    }

    /// The counters `/metrics` reports.
    #[must_use]
    pub const fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a restart of the driver host of `source`.
    pub fn note_driver_restart(&self, source: &str) {
        let mut map = self
            .counters
            .driver_restarts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry(source.to_owned()).or_default() += 1;
    }

    /// Keeps history in `store`: source readings are offered to it, pushes
    /// are acknowledged once committed, history queries read it.
    #[must_use]
    pub fn with_store(mut self, store: Arc<StoreHandle>) -> Self {
        self.store = Some(store);
        self
    }

    /// Serves the site's history from `store`, read-only: pushes are
    /// refused ([`ServiceError::ReadOnly`]) and what sources take in (the
    /// site's newest readings, for live views) is published, not stored;
    /// `report` gives `/metrics` how the site's database is followed.
    #[must_use]
    pub fn with_site_store(mut self, store: Arc<StoreHandle>, report: Arc<dyn SiteReport>) -> Self {
        self.store = Some(store);
        self.read_only = true;
        self.site = Some(report);
        self
    }

    /// Whether this is a read-only site view.
    #[must_use]
    pub const fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Reports the uplinks' figures in [`Service::metrics`].
    #[must_use]
    pub fn with_uplinks(mut self, uplinks: Arc<dyn UplinkReport>) -> Self {
        self.uplinks = Some(uplinks);
        self
    }

    /// Readings taken in so far, from every source and push.
    #[must_use]
    pub fn readings_ingested(&self) -> u64 {
        self.ingested.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The caps.
    #[must_use]
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The server's name, for the welcome.
    #[must_use]
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Sensors in the catalog now.
    #[must_use]
    pub fn sensor_count(&self) -> usize {
        self.catalog.len()
    }

    /// The catalog, the hub and the registry, for tests and benchmarks
    /// only (the `test-support` feature).
    #[cfg(feature = "test-support")]
    #[must_use]
    pub fn internals(&self) -> Internals<'_> {
        Internals {
            catalog: &self.catalog,
            hub: &self.hub,
            registry: &self.registry,
        }
    }

    /// Cancelled when the daemon shuts down (the registry then stops every
    /// connection: `Registry::stop_all_at_shutdown`).
    #[must_use]
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, TokenStore> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks a hello's token. The token is verified first (constant
    /// time), so a valid token is never refused for other peers' failures
    /// behind the same address; failures are counted per source address,
    /// and past `limits.auth_failures_per_minute` they are answered as
    /// throttled.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for a token that does not verify,
    /// [`ServiceError::AuthThrottled`] instead once `peer` is over its
    /// allowance of failures.
    pub fn authenticate(
        &self,
        token: &str,
        peer: SocketAddr,
        now: Instant,
    ) -> Result<Arc<Principal>, ServiceError> {
        let verified = self.tokens().verify(token);
        if let Ok(p) = verified {
            if self
                .bootstrap_armed
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                self.bootstrap_used(&p.token_id);
            }
            return Ok(self.shared_principal(p));
        }
        let (reason, counter, error) = if self.auth_throttle.record_failure(peer.ip(), now) {
            let c = &self.counters.auth_throttled;
            ("throttled", c, ServiceError::AuthThrottled)
        } else {
            let c = &self.counters.auth_bad_token;
            ("bad_token", c, ServiceError::Unauthenticated)
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.audit
            .record_denial(&AuditEvent::AuthFailure { peer, reason }, now);
        Err(error)
    }

    /// Removes the file at `path`, which holds the secret of token `id`,
    /// once that token has authenticated: the bootstrap admin secret does not
    /// stay readable on disk after the operator picked it up.
    pub fn remove_when_used(&self, id: &str, path: &std::path::Path) {
        *self
            .bootstrap
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((id.to_owned(), path.to_owned()));
        self.bootstrap_armed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn bootstrap_used(&self, token_id: &str) {
        let mut slot = self
            .bootstrap
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((id, path)) = slot.take_if(|(id, _)| id == token_id) else {
            return;
        };
        self.bootstrap_armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
        drop(slot);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(
                token_id = %id,
                path = %path.display(),
                "the first admin token was used; its file is removed"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "the first admin token was used but its file could not be removed"
            ),
        }
    }

    fn shared_principal(&self, principal: Principal) -> Arc<Principal> {
        let mut map = self
            .principals
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match map.get(&principal.token_id) {
            Some(p) if **p == principal => p.clone(),
            _ => {
                let p = Arc::new(principal);
                map.insert(p.token_id.clone(), p.clone());
                p
            }
        }
    }

    fn allow(principal: &Principal, action: Action<'_>) -> Result<(), ServiceError> {
        if policy::decide(principal, action).is_allowed() {
            Ok(())
        } else {
            Err(ServiceError::Forbidden)
        }
    }

    /// The caller's own identity.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] if the policy ever denies it.
    pub fn whoami(&self, caller: Caller<'_>) -> Result<Principal, ServiceError> {
        Self::allow(caller.principal, Action::WhoAmI)?;
        Ok(caller.principal.clone())
    }

    /// Sensors matching `pattern` that the caller may read, by name, after
    /// `after` (a page: at most [`Service::page_probe`] of them).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not list sensors.
    pub fn list_sensors(
        &self,
        caller: Caller<'_>,
        pattern: &Pattern,
        after: Option<&str>,
    ) -> Result<Vec<SensorEntry>, ServiceError> {
        Self::allow(caller.principal, Action::ListSensors)?;
        let p = caller.principal;
        Ok(self
            .catalog
            .list_after(pattern, after, self.page_probe(), |name| {
                policy::decide(p, Action::ReadSensor(name)).is_allowed()
            }))
    }

    /// The latest readings of up to `max` sensors matching `pattern` that
    /// the caller may read (what an MQTT subscriber gets retained at
    /// subscribe). One pass over the catalog under its read lock, no entry
    /// cloned but the readings returned.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not subscribe.
    pub fn latest_matching(
        &self,
        caller: Caller<'_>,
        pattern: &Pattern,
        max: usize,
    ) -> Result<Vec<Reading>, ServiceError> {
        Self::allow(caller.principal, Action::Subscribe)?;
        let p = caller.principal;
        Ok(self.catalog.latest_matching(pattern, max, |name| {
            policy::decide(p, Action::ReadSensor(name)).is_allowed()
        }))
    }

    /// Entries a page is taken from: one more than a page may hold, so the
    /// front end can tell whether more follow (`limits.max_list_items`).
    #[must_use]
    pub const fn page_probe(&self) -> usize {
        self.limits.message.max_list_items.saturating_add(1)
    }

    /// The latest reading of a sensor.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] out of scope (whether or not the sensor
    /// exists), [`ServiceError::NotFound`] for no sensor or no reading yet.
    pub fn latest(&self, caller: Caller<'_>, sensor: &str) -> Result<Reading, ServiceError> {
        Self::allow(caller.principal, Action::ReadSensor(sensor))?;
        self.catalog
            .entry(sensor)
            .and_then(|e| e.latest)
            .ok_or(ServiceError::NotFound)
    }

    /// Checks a history request: the policy first, then the range. The
    /// query runs with [`Service::run_history`].
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] out of scope, [`ServiceError::NotFound`]
    /// when history is off, [`ServiceError::Invalid`] for an empty or
    /// reversed range, a negative bucket, or more buckets than
    /// `limits.max_list_items`.
    pub fn history(
        &self,
        caller: Caller<'_>,
        sensor: &str,
        from_us: i64,
        to_us: i64,
        bucket_us: i64,
        limit: usize,
    ) -> Result<HistoryQuery, ServiceError> {
        Self::allow(caller.principal, Action::ReadSensor(sensor))?;
        if self.store.is_none() {
            return Err(ServiceError::NotFound);
        }
        if to_us <= from_us || bucket_us < 0 {
            return Err(ServiceError::Invalid);
        }
        // More buckets than a reply may list is refused, not cut: the whole
        // range would be scanned for a prefix of the answer (`bucket=1`
        // over 30 days).
        let list_cap = u64::try_from(self.limits.message.max_list_items).unwrap_or(u64::MAX);
        if bucket_us > 0 && (to_us.abs_diff(from_us)).div_ceil(bucket_us.unsigned_abs()) > list_cap
        {
            return Err(ServiceError::Invalid);
        }
        // The reply must fit one frame: a row costs at most its sensor name
        // plus 64 bytes of numbers and encoding (a bucket is smaller).
        let per_row = sensor.len() + 64;
        let fits = usize::try_from(self.limits.frame.get()).unwrap_or(usize::MAX) / per_row;
        // Buckets are a list of their own on the wire.
        let rows = if bucket_us == 0 {
            self.limits.message.max_readings
        } else {
            self.limits.message.max_list_items
        };
        let cap = rows.min(fits).max(1);
        Ok(HistoryQuery {
            sensor: sensor.to_owned(),
            from_us,
            to_us,
            bucket_us,
            limit: if limit == 0 { cap } else { limit.min(cap) },
            owner: caller.principal.token_id.clone(),
        })
    }

    /// Runs a query checked by [`Service::history`].
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    pub async fn run_history(&self, query: HistoryQuery) -> Result<History, ServiceError> {
        let store = self.store.as_ref().ok_or(ServiceError::NotFound)?;
        store.history(query).await.map_err(|e| match e.kind {
            HistoryErrorKind::Busy => {
                self.counters.limits.hit(Limit::HistoryQueries);
                ServiceError::QueriesBusy
            }
            HistoryErrorKind::ShareTaken => {
                self.counters.limits.hit(Limit::HistoryQueries);
                ServiceError::TokenQueriesBusy
            }
            HistoryErrorKind::Full | HistoryErrorKind::Failed | HistoryErrorKind::QueueFull => {
                tracing::error!(error = %e, "history query failed");
                ServiceError::Internal
            }
        })
    }

    /// Adds subscription patterns for a connection; returns the active count.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a role that may not subscribe,
    /// [`ServiceError::Subscriptions`] past `limits.max_subscriptions`, or
    /// past `limits.max_patterns_per_token` or
    /// `limits.max_patterns_per_address` over all the token's or the
    /// address's connections.
    pub fn subscribe(
        &self,
        caller: Caller<'_>,
        connection: &Connection,
        patterns: &[Pattern],
    ) -> Result<(Arc<crate::hub::Subscriber>, usize), ServiceError> {
        Self::allow(caller.principal, Action::Subscribe)?;
        let sub = self
            .hub
            .subscriber(connection.id, caller.principal, caller.peer.ip());
        let caps = crate::hub::PatternCaps {
            per_connection: self.limits.max_subscriptions,
            per_token: self.limits.max_patterns_per_token,
            per_address: self.limits.max_patterns_per_address,
        };
        let active = self.hub.add_patterns(&sub, patterns, caps).map_err(|cap| {
            self.counters.limits.hit(match cap {
                crate::hub::PatternCap::Connection => Limit::Subscriptions,
                crate::hub::PatternCap::Token => Limit::PatternsPerToken,
                crate::hub::PatternCap::Address => Limit::PatternsPerAddress,
            });
            ServiceError::Subscriptions
        })?;
        connection.subscriptions.store(
            u32::try_from(active).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok((sub, active))
    }

    /// Removes subscription patterns; returns the active count.
    pub fn unsubscribe(
        &self,
        connection: &Connection,
        sub: &Arc<crate::hub::Subscriber>,
        patterns: &[Pattern],
    ) -> usize {
        let active = self.hub.remove_patterns(sub, patterns);
        connection.subscriptions.store(
            u32::try_from(active).unwrap_or(u32::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        active
    }

    /// A connection ended: forget its subscriber.
    pub fn disconnected(&self, connection: &Connection) {
        self.hub.remove(connection.id);
    }

    /// Tokens in the store, revoked ones included.
    #[must_use]
    pub fn token_count(&self) -> usize {
        self.tokens().len()
    }

    /// Whether the token with id `token_id` is live: checked after a
    /// connection is bound to it, so a revocation that raced the binding
    /// is not missed.
    #[must_use]
    pub fn token_id_is_live(&self, token_id: &str) -> bool {
        self.tokens().is_live(token_id)
    }

    /// Whether a presented token is live (used to reuse a saved demo token).
    #[must_use]
    pub fn token_is_live(&self, token: &str) -> bool {
        self.tokens().verify(token).is_ok()
    }
}
