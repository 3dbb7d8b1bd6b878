//! The connection registry: per-connection state keyed by a `u64` id, for
//! every front end.
//!
//! Admission happens here: [`Registry::admit`] refuses a connection past
//! `limits.max_connections` in total or `limits.max_connections_per_address`
//! from one source address, and returns an [`Admission`] that removes the
//! entry when dropped, so a connection task that ends for any reason (panic
//! included) frees its place. Admins list connections and stop one; revoking
//! a token stops every session that authenticated with it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::Principal;

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    /// `limits.max_connections` reached.
    #[error("too many connections")]
    Total,
    /// `limits.max_connections_per_address` reached for this address.
    #[error("too many connections from this address")]
    PerAddress,
}

/// Why a connection is being stopped from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An admin kicked it.
    Kicked,
    /// Its token was revoked.
    Revoked,
    /// It sent nothing for `limits.idle_timeout`.
    Idle,
    /// The daemon is shutting down.
    Shutdown,
}

impl StopReason {
    /// The goodbye text.
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            Self::Kicked => "disconnected by an administrator",
            Self::Revoked => "token revoked",
            Self::Idle => "idle timeout",
            Self::Shutdown => "server shutting down",
        }
    }
}

/// Which front end a connection came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frontend {
    /// The native length-prefixed protocol.
    Native,
    /// The HTTP/JSON API.
    Http,
    /// MQTT 3.1.1 and 5.0.
    Mqtt,
}

impl Frontend {
    /// Every front end, in the order `/metrics` lists them.
    pub const ALL: [Self; 3] = [Self::Native, Self::Http, Self::Mqtt];

    /// Its name on the wire, in metrics and in `list connections`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Http => "http",
            Self::Mqtt => "mqtt",
        }
    }
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the registry knows of one connection. Counters are updated by the
/// connection task and read by `list connections`.
#[derive(Debug)]
pub struct Connection {
    /// Its id, unique for the daemon's lifetime.
    pub id: u64,
    /// Source address.
    pub peer: SocketAddr,
    /// The front end it came in through.
    pub frontend: Frontend,
    /// When it was accepted, microseconds since the epoch.
    pub connected_at_us: i64,
    /// Behind a mutex held only to clone or swap the `Arc`.
    principal: Mutex<Option<Arc<Principal>>>,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent.
    pub frames_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Active subscription patterns.
    pub subscriptions: AtomicU32,
    /// HTTP: `bytes_in` when the last response was produced. More bytes
    /// than that at a header timeout means a request was left half sent
    /// (a slow client); as many means an idle kept-alive connection.
    pub bytes_in_at_reply: AtomicU64,
    /// When it last sent a whole frame, in [`Clock`] milliseconds.
    last_active_ms: AtomicU64,
    /// Set once it is told to stop; `wake` wakes whoever waits for it. (An
    /// atomic and an inline `Notify` rather than a child cancellation
    /// token: no allocation per connection, and no lock shared with others.)
    stopping: AtomicBool,
    wake: Notify,
    stop_reason: OnceLock<StopReason>,
}

impl Connection {
    /// The principal, once authenticated.
    #[must_use]
    pub fn principal(&self) -> Option<Arc<Principal>> {
        self.principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the principal the connection acts as: after the native
    /// hello (once), or for each HTTP request (the token of the request
    /// being served; HTTP/1.1 serves one request at a time, so revoking
    /// that token always reaches the request running under it).
    pub fn set_principal(&self, principal: Arc<Principal>) {
        *self
            .principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(principal);
    }

    /// The time this connection has to authenticate (TLS handshake,
    /// hello, or an HTTP request with a token): `auth_timeout` shortened by
    /// 0 to 9.9% by connection id, never lengthened. Peers that connected
    /// together (a flood of them) are then not all cut off in the same
    /// millisecond, which would stall everyone else while thousands of
    /// goodbyes, closes and reconnections land at once.
    #[must_use]
    pub fn auth_deadline(&self, auth_timeout: std::time::Duration) -> std::time::Duration {
        let per_mille = u32::try_from(self.id % 100).unwrap_or(0);
        auth_timeout.saturating_sub(auth_timeout * per_mille / 1000)
    }

    /// Whether it was told to stop (at shutdown, once the sweep of
    /// [`Registry::stop_all_at_shutdown`] has reached it).
    #[must_use]
    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks the connection's task to say goodbye and close.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.stop_reason.set(reason);
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Resolves when [`Connection::stop`] was called (by a kick, a
    /// revocation, the idle reaper, or [`Registry::stop_all`] at shutdown).
    pub async fn stopped(&self) -> StopReason {
        loop {
            let notified = self.wake.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a stop in between still
            // wakes this waiter.
            notified.as_mut().enable();
            if self.stop_requested() {
                return self
                    .stop_reason
                    .get()
                    .copied()
                    .unwrap_or(StopReason::Shutdown);
            }
            notified.await;
        }
    }

    /// Records that a whole frame arrived now.
    pub fn touch(&self, clock: &Clock) {
        self.last_active_ms.store(clock.now_ms(), Ordering::Relaxed);
    }

    /// Adds to the inbound counters.
    pub fn count_in(&self, bytes: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Adds to the outbound counters.
    pub fn count_out(&self, frames: u64, bytes: usize) {
        self.frames_out.fetch_add(frames, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Every open connection.
#[derive(Debug)]
pub struct Registry {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    max_total: usize,
    max_per_address: usize,
    shutdown: CancellationToken,
    clock: Clock,
}

/// Milliseconds since the registry was made, from the monotonic clock:
/// what `last_active` is kept in, so it fits an atomic.
#[derive(Debug, Clone, Copy)]
pub struct Clock(tokio::time::Instant);

impl Clock {
    /// Milliseconds since the epoch of this clock.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<u64, Arc<Connection>>,
    per_address: HashMap<IpAddr, usize>,
    /// What closed connections carried, by front end.
    closed: HashMap<Frontend, Traffic>,
}

/// Frames and bytes in each direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Frames (native) or requests (HTTP) received.
    pub frames_in: u64,
    /// Frames (native) or responses and stream events (HTTP) sent.
    pub frames_out: u64,
    /// Bytes received (after TLS).
    pub bytes_in: u64,
    /// Bytes sent (before TLS).
    pub bytes_out: u64,
}

impl Traffic {
    fn add(&mut self, c: &Connection) {
        self.frames_in += c.frames_in.load(Ordering::Relaxed);
        self.frames_out += c.frames_out.load(Ordering::Relaxed);
        self.bytes_in += c.bytes_in.load(Ordering::Relaxed);
        self.bytes_out += c.bytes_out.load(Ordering::Relaxed);
    }
}

/// A connection's place in the registry; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    connection: Arc<Connection>,
    registry: Arc<Registry>,
}

impl Admission {
    /// The connection's shared state.
    #[must_use]
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.registry.remove(&self.connection);
    }
}

impl Registry {
    /// An empty registry with the two connection caps. Once `shutdown` is
    /// cancelled, connections are admitted already stopped, and
    /// [`Registry::stop_all_at_shutdown`] (run as a task) stops the rest.
    #[must_use]
    pub fn new(max_total: usize, max_per_address: usize, shutdown: CancellationToken) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
            max_total,
            max_per_address,
            shutdown,
            clock: Clock(tokio::time::Instant::now()),
        }
    }

    /// The clock `last_active` is kept in.
    #[must_use]
    pub const fn clock(&self) -> Clock {
        self.clock
    }

    /// Stops every authenticated connection that sent no frame for
    /// `idle`; returns how many. The daemon runs this about once a second,
    /// so idle connections need no timer of their own.
    pub fn reap_idle(&self, idle: std::time::Duration) -> usize {
        let now = self.clock.now_ms();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let idle_ones: Vec<_> = self
            .lock()
            .connections
            .values()
            .filter(|c| {
                // One already told to stop may still be saying goodbye: it
                // is not stopped (or counted) twice.
                !c.stop_requested()
                    && c.principal().is_some()
                    && now.saturating_sub(c.last_active_ms.load(Ordering::Relaxed)) >= idle_ms
            })
            .cloned()
            .collect();
        for c in &idle_ones {
            c.stop(StopReason::Idle);
        }
        idle_ones.len()
    }

    /// Admits a new connection from `peer`, or refuses it past a cap.
    ///
    /// # Errors
    /// [`AdmitError`] naming the cap.
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        frontend: Frontend,
        now_us: i64,
    ) -> Result<Admission, AdmitError> {
        let mut inner = self.lock();
        if inner.connections.len() >= self.max_total {
            return Err(AdmitError::Total);
        }
        let from_here = inner.per_address.get(&peer.ip()).copied().unwrap_or(0);
        if from_here >= self.max_per_address {
            return Err(AdmitError::PerAddress);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            peer,
            frontend,
            connected_at_us: now_us,
            principal: Mutex::new(None),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            subscriptions: AtomicU32::new(0),
            bytes_in_at_reply: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(self.clock.now_ms()),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            stop_reason: OnceLock::new(),
        });
        if self.shutdown.is_cancelled() {
            // Admitted while shutting down, after (or during) the sweep.
            connection.stop(StopReason::Shutdown);
        }
        inner.connections.insert(id, connection.clone());
        *inner.per_address.entry(peer.ip()).or_insert(0) += 1;
        Ok(Admission {
            connection,
            registry: self.clone(),
        })
    }

    fn remove(&self, connection: &Connection) {
        let mut inner = self.lock();
        if inner.connections.remove(&connection.id).is_some() {
            inner
                .closed
                .entry(connection.frontend)
                .or_default()
                .add(connection);
            let ip = connection.peer.ip();
            if let Some(n) = inner.per_address.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    inner.per_address.remove(&ip);
                }
            }
        }
    }

    /// Open connections of front end `frontend` (counted under the lock,
    /// nothing cloned).
    #[must_use]
    pub fn count(&self, frontend: Frontend) -> usize {
        self.lock()
            .connections
            .values()
            .filter(|c| c.frontend == frontend)
            .count()
    }

    /// Everything front end `frontend` carried since start: closed
    /// connections' totals and open ones' counters.
    #[must_use]
    pub fn traffic(&self, frontend: Frontend) -> Traffic {
        let inner = self.lock();
        let mut t = inner.closed.get(&frontend).copied().unwrap_or_default();
        for c in inner
            .connections
            .values()
            .filter(|c| c.frontend == frontend)
        {
            t.add(c);
        }
        t
    }

    /// The connections `keep` accepts, by id, at most `max`.
    #[must_use]
    pub fn list(&self, max: usize, keep: impl Fn(&Connection) -> bool) -> Vec<Arc<Connection>> {
        let mut all: Vec<_> = self.lock().connections.values().cloned().collect();
        all.retain(|c| keep(c));
        all.sort_by_key(|c| c.id);
        all.truncate(max);
        all
    }

    /// Connection `id`, when open.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<Arc<Connection>> {
        self.lock().connections.get(&id).cloned()
    }

    /// Stops every connection with `reason`.
    pub fn stop_all(&self, reason: StopReason) {
        let all: Vec<_> = self.lock().connections.values().cloned().collect();
        for c in &all {
            c.stop(reason);
        }
    }

    /// Waits for the daemon's shutdown, then stops every connection (the
    /// daemon runs this as a task; connections admitted later are stopped
    /// as they are admitted).
    pub async fn stop_all_at_shutdown(self: Arc<Self>) {
        self.shutdown.cancelled().await;
        self.stop_all(StopReason::Shutdown);
    }

    /// Stops every session authenticated with token `token_id`; returns how
    /// many.
    pub fn stop_token(&self, token_id: &str) -> usize {
        let hit: Vec<_> = self
            .lock()
            .connections
            .values()
            .filter(|c| c.principal().is_some_and(|p| p.token_id == token_id))
            .cloned()
            .collect();
        for c in &hit {
            c.stop(StopReason::Revoked);
        }
        hit.len()
    }

    /// Open connections.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().connections.len()
    }

    /// Whether none is open.
    #[must_use]
    #[cfg_attr(
        not(feature = "test-support"),
        allow(dead_code, reason = "tests ask it, through the test-support feature")
    )]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::pattern::Pattern;

    fn addr(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], port))
    }

    #[test]
    fn caps_total_and_per_address_and_frees_places_on_drop() {
        let reg = Arc::new(Registry::new(3, 2, CancellationToken::new()));
        let first = reg.admit(addr(1, 1), Frontend::Native, 0).unwrap();
        let second = reg.admit(addr(1, 2), Frontend::Native, 0).unwrap();
        assert_eq!(
            reg.admit(addr(1, 3), Frontend::Native, 0).unwrap_err(),
            AdmitError::PerAddress
        );
        let other = reg.admit(addr(2, 1), Frontend::Native, 0).unwrap();
        assert_eq!(
            reg.admit(addr(3, 1), Frontend::Native, 0).unwrap_err(),
            AdmitError::Total
        );
        drop(first);
        assert_eq!(reg.len(), 2);
        let again = reg.admit(addr(1, 4), Frontend::Native, 0).unwrap();
        assert_ne!(again.connection().id, second.connection().id);
        drop((second, other, again));
        assert!(reg.is_empty());
        assert!(reg.lock().per_address.is_empty());
    }

    #[test]
    fn auth_deadlines_are_spread_but_never_longer() {
        let r = Arc::new(Registry::new(1000, 1000, CancellationToken::new()));
        let d = std::time::Duration::from_secs(5);
        let held: Vec<_> = (0..200u8)
            .map(|i| r.admit(addr(2, u16::from(i)), Frontend::Native, 0).unwrap())
            .collect();
        let all: Vec<_> = held
            .iter()
            .map(|a| a.connection().auth_deadline(d))
            .collect();
        assert!(all.iter().all(|x| *x <= d && *x >= d * 9 / 10));
        let distinct: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 100);
    }

    #[tokio::test]
    async fn kick_and_revocation_stop_the_right_connections() {
        let parent = CancellationToken::new();
        let r = Arc::new(Registry::new(10, 10, parent.clone()));
        let a = r.admit(addr(1, 1), Frontend::Native, 0).unwrap();
        let b = r.admit(addr(1, 2), Frontend::Native, 0).unwrap();
        let c = r.admit(addr(1, 3), Frontend::Native, 0).unwrap();
        for (adm, token) in [(&a, "aaaa"), (&b, "bbbb"), (&c, "aaaa")] {
            adm.connection().set_principal(Arc::new(Principal {
                token_id: token.into(),
                name: "n".into(),
                role: Role::Reader,
                scope: Pattern::any(),
            }));
        }
        assert_eq!(r.stop_token("aaaa"), 2);
        assert_eq!(a.connection().stopped().await, StopReason::Revoked);
        assert_eq!(c.connection().stopped().await, StopReason::Revoked);
        assert!(!b.connection().stop_requested());
        r.get(b.connection().id).unwrap().stop(StopReason::Kicked);
        assert_eq!(b.connection().stopped().await, StopReason::Kicked);
        assert!(r.get(999).is_none());
        let late = r.admit(addr(1, 4), Frontend::Native, 0).unwrap();
        let sweep = tokio::spawn(r.clone().stop_all_at_shutdown());
        parent.cancel();
        assert_eq!(late.connection().stopped().await, StopReason::Shutdown);
        sweep.await.unwrap();
        let after = r.admit(addr(1, 5), Frontend::Native, 0).unwrap();
        assert_eq!(after.connection().stopped().await, StopReason::Shutdown);
    }
}
