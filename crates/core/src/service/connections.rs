//! Connections as the service sees them: admitting one against the caps,
//! signing it in, the registry's clock, stopping and reaping them. Every
//! front end calls these; none touches the registry itself.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::registry::{Admission, AdmitError, Clock, Connection, Frontend, StopReason};
use crate::stats::Limit;
use crate::time::Instant;

impl Service {
    /// Admits a new connection from `peer` on `frontend`, or refuses it
    /// past `limits.max_connections` or `limits.max_connections_per_address`
    /// (counted as a cap hit).
    ///
    /// # Errors
    /// [`AdmitError`] naming the cap.
    pub fn admit(
        &self,
        peer: SocketAddr,
        frontend: Frontend,
        now_us: i64,
    ) -> Result<Admission, AdmitError> {
        self.registry
            .admit(peer, frontend, now_us)
            .inspect_err(|&e| self.counters.refused(e))
    }

    /// The registry's clock, for [`Connection::touch`].
    #[must_use]
    pub fn clock(&self) -> Clock {
        self.registry.clock()
    }

    /// Stops every open connection (at shutdown).
    pub fn stop_all(&self, reason: StopReason) {
        self.registry.stop_all(reason);
    }

    /// Waits for shutdown, then stops every connection, including those
    /// admitted after it began. Run it as a task.
    pub async fn stop_all_at_shutdown(self: Arc<Self>) {
        self.registry.clone().stop_all_at_shutdown().await;
    }

    /// Closes connections idle for `idle` (counted as a cap hit); returns
    /// how many.
    pub fn reap_idle(&self, idle: std::time::Duration) -> usize {
        let n = self.registry.reap_idle(idle);
        self.counters.limits.add(Limit::IdleTimeout, n as u64);
        n
    }

    /// Open connections now, of every front end.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.registry.len()
    }

    /// Signs `connection` in with `token`, the one way every front end
    /// does it: the token is checked ([`Service::authenticate`], throttled
    /// per address), bound to the connection, then checked live again. A
    /// revocation racing the sign-in either sees the binding (and ends the
    /// connection) or is seen here, and then the connection is ended as
    /// its sweep would have.
    ///
    /// # Errors
    /// As [`Service::authenticate`]; [`ServiceError::Unauthenticated`]
    /// when the token was revoked meanwhile.
    pub fn sign_in(
        &self,
        token: &str,
        connection: &Connection,
        now: Instant,
    ) -> Result<Arc<Principal>, ServiceError> {
        let principal = self.authenticate(token, connection.peer, now)?;
        connection.set_principal(principal.clone());
        if !self.token_id_is_live(&principal.token_id) {
            connection.stop(StopReason::Revoked);
            return Err(ServiceError::Unauthenticated);
        }
        Ok(principal)
    }
}
