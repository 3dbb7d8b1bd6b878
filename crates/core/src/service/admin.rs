//! The admin operations of the service: tokens (create within the caller's
//! scope, list, revoke) and connections (list, kick), each decided by the
//! policy with the scope of the token concerned, and audited.

use std::sync::{Arc, PoisonError};

use super::{Caller, Service, ServiceError};
use crate::audit::{AuditEvent, CreatedToken};
use crate::auth::Role;
use crate::auth::store::{TokenRecord, TokenStoreError};
use crate::auth::token::SecretToken;
use crate::name::Name;
use crate::pattern::Pattern;
use crate::policy::{self, Action};
use crate::reading::now_us;
use crate::registry::Connection;
use crate::stats::Limit;
use crate::time::Instant;

impl Service {
    fn admin<T>(
        &self,
        caller: Caller<'_>,
        action: Action<'_>,
        name: &'static str,
        target: Option<String>,
        run: impl FnOnce() -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let result = Self::allow(caller.principal, action).and_then(|()| run());
        self.audit_admin(caller, name, target, None, &result);
        result
    }

    fn audit_admin<T>(
        &self,
        caller: Caller<'_>,
        name: &'static str,
        target: Option<String>,
        created: Option<CreatedToken<'_>>,
        result: &Result<T, ServiceError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(ServiceError::Forbidden) => "denied",
            Err(ServiceError::NotFound) => "not_found",
            Err(_) => "failed",
        };
        let event = AuditEvent::Admin {
            peer: caller.peer,
            token_id: &caller.principal.token_id,
            principal: &caller.principal.name,
            action: name,
            target,
            created,
            outcome,
        };
        if outcome == "denied" {
            // A non-admin can ask as often as it likes: capped.
            self.audit.record_denial(&event, Instant::now());
        } else {
            self.audit.record(&event);
        }
    }

    /// Creates a token; the secret is returned this once. Its scope must lie
    /// within the caller's ([`Pattern::covers`]); the audit line records
    /// the new token's id, role and scope.
    ///
    /// The name and scope arrive parsed (a front end's decoding checked
    /// them by the protocol's rules and the configured limits).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] (also for a scope outside the caller's),
    /// [`ServiceError::TokensFull`], [`ServiceError::Internal`] when the
    /// store cannot be saved.
    pub fn create_token(
        &self,
        caller: Caller<'_>,
        name: &Name,
        role: Role,
        scope: &Pattern,
    ) -> Result<(TokenRecord, SecretToken), ServiceError> {
        let result = Self::allow(caller.principal, Action::CreateToken(scope))
            .and_then(|()| self.new_token(name, role, scope));
        let created = result.as_ref().ok().map(|(r, _)| CreatedToken {
            id: &r.id,
            role: r.role.as_str(),
            scope: r.scope.as_str(),
        });
        self.audit_admin(caller, "create_token", None, created, &result);
        result
    }

    /// The tokens the caller could revoke: within its scope (no secrets:
    /// only ids, names, roles, scopes), oldest first, after the token `after`
    /// (a page: at most [`Service::page_probe`]).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`].
    pub fn list_tokens(
        &self,
        caller: Caller<'_>,
        after: Option<&str>,
    ) -> Result<Vec<TokenRecord>, ServiceError> {
        let p = caller.principal;
        let probe = self.page_probe();
        self.admin(caller, Action::ListTokens, "list_tokens", None, || {
            let all = self.tokens().list();
            // Oldest first; a page starts after the cursor's place.
            let start = after.map_or(0, |id| {
                all.iter()
                    .position(|t| t.id == id)
                    .map_or(all.len(), |i| i + 1)
            });
            Ok(all
                .into_iter()
                .skip(start)
                .filter(|t| policy::decide(p, Action::RevokeToken(&t.scope)).is_allowed())
                .take(probe)
                .collect())
        })
    }

    /// Revokes a token within the caller's scope and disconnects its
    /// sessions; returns how many.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a token outside the caller's scope
    /// (and, for a caller with a narrower scope than `*`, for an unknown id:
    /// no oracle of which ids exist), [`ServiceError::NotFound`],
    /// [`ServiceError::Internal`] when the store cannot be saved.
    pub fn revoke_token(&self, caller: Caller<'_>, id: &str) -> Result<usize, ServiceError> {
        let scope = self.tokens().scope_of(id).unwrap_or_else(Pattern::any);
        self.admin(
            caller,
            Action::RevokeToken(&scope),
            "revoke_token",
            Some(id.to_owned()),
            || {
                let saving = self
                    .token_saves
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let snapshot = {
                    let mut tokens = self.tokens();
                    if !tokens.revoke_unsaved(id) {
                        return Err(ServiceError::NotFound);
                    }
                    tokens.snapshot()
                };
                if let Err(e) = snapshot.map_or(Ok(()), crate::auth::store::Snapshot::write) {
                    self.tokens().unrevoke(id);
                    return Err(store_error(e));
                }
                drop(saving);
                self.push_rate.forget(id);
                self.principals
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(id);
                Ok(self.registry.stop_token(id))
            },
        )
    }

    /// The open connections the caller could kick: those of tokens within
    /// its scope (connections not yet authenticated only for `*`), by id,
    /// after `after_id` (a page: at most [`Service::page_probe`]).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`].
    pub fn list_connections(
        &self,
        caller: Caller<'_>,
        after_id: u64,
    ) -> Result<Vec<Arc<Connection>>, ServiceError> {
        let p = caller.principal;
        self.admin(
            caller,
            Action::ListConnections,
            "list_connections",
            None,
            || {
                Ok(self.registry.list(self.page_probe(), |c| {
                    c.id > after_id
                        && policy::decide(p, Action::KickConnection(&connection_scope(c)))
                            .is_allowed()
                }))
            },
        )
    }

    /// Disconnects one connection of a token within the caller's scope.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] out of scope (and for an unknown id,
    /// as for tokens, unless the caller's scope is `*`),
    /// [`ServiceError::NotFound`].
    pub fn kick(&self, caller: Caller<'_>, id: u64) -> Result<(), ServiceError> {
        let target = self.registry.get(id);
        let scope = target
            .as_deref()
            .map_or_else(Pattern::any, connection_scope);
        self.admin(
            caller,
            Action::KickConnection(&scope),
            "kick",
            Some(id.to_string()),
            || {
                let c = target.ok_or(ServiceError::NotFound)?;
                c.stop(crate::registry::StopReason::Kicked);
                Ok(())
            },
        )
    }

    /// Creates a token without a caller: the daemon's own bootstrap of the
    /// first admin token. Not reachable from any front end.
    ///
    /// # Errors
    /// As [`Service::create_token`].
    pub fn bootstrap_token(
        &self,
        name: &str,
        role: Role,
        scope: &str,
    ) -> Result<(TokenRecord, SecretToken), ServiceError> {
        let limits = &self.limits.message;
        let name = Name::parse("name", name, limits).map_err(|_| ServiceError::Invalid)?;
        let scope = Pattern::parse("scope", scope, limits).map_err(|_| ServiceError::Invalid)?;
        self.new_token(&name, role, &scope)
    }

    /// Creates a token and saves the store, writing and syncing the file
    /// without holding the lock every authentication takes.
    fn new_token(
        &self,
        name: &Name,
        role: Role,
        scope: &Pattern,
    ) -> Result<(TokenRecord, SecretToken), ServiceError> {
        let saving = self
            .token_saves
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (created, snapshot) = {
            let mut tokens = self.tokens();
            let created = tokens
                .insert_unsaved(name, role, scope, now_us())
                .map_err(|e| {
                    let e = store_error(e);
                    if e == ServiceError::TokensFull {
                        self.counters.limits.hit(Limit::Tokens);
                    }
                    e
                })?;
            (created, tokens.snapshot())
        };
        if let Err(e) = snapshot.map_or(Ok(()), crate::auth::store::Snapshot::write) {
            self.tokens().forget(&created.0.id);
            return Err(store_error(e));
        }
        drop(saving);
        Ok(created)
    }
}

/// The scope a connection is judged by: its token's, or `*` before it
/// authenticated (so only an unscoped admin sees or kicks it).
fn connection_scope(c: &Connection) -> Pattern {
    c.principal().map_or_else(Pattern::any, |p| p.scope.clone())
}

fn store_error(e: TokenStoreError) -> ServiceError {
    match e {
        TokenStoreError::Full { .. } => ServiceError::TokensFull,
        TokenStoreError::BadField { .. } => ServiceError::Invalid,
        other => {
            tracing::error!(error = %other, "token store");
            ServiceError::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::audit::Audit;
    use crate::auth::store::{SAVING, TokenStore};
    use crate::limits::Limits;

    /// Creating a token writes and syncs the store's file; authentication
    /// must not wait for that (it takes the token lock on every hello).
    /// With a save held in progress, a hello still verifies at once.
    #[test]
    fn a_token_save_in_progress_does_not_hold_up_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(
            &dir.path().join("tokens.json"),
            8,
            Limits::default().message,
        )
        .unwrap();
        let svc = Arc::new(Service::new(
            "t".into(),
            Limits::default(),
            store,
            Audit::disabled(),
        ));
        let (_, secret) = svc.bootstrap_token("admin", Role::Admin, "*").unwrap();
        let secret = secret.expose().to_owned();
        let peer: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let (saving_tx, saving_rx) = mpsc::sync_channel::<()>(1);
        let (release_tx, release_rx) = mpsc::sync_channel::<()>(1);
        let creator = {
            let (svc, secret) = (svc.clone(), secret.clone());
            std::thread::spawn(move || {
                let release = std::sync::Mutex::new(release_rx);
                SAVING.with(|h| {
                    *h.borrow_mut() = Some(Box::new(move || {
                        saving_tx.send(()).unwrap();
                        release.lock().unwrap().recv().unwrap();
                    }));
                });
                let admin = svc.authenticate(&secret, peer, Instant::now()).unwrap();
                let caller = Caller {
                    principal: &admin,
                    peer,
                };
                svc.create_token(
                    caller,
                    &Name::decoded("new".into()),
                    Role::Reader,
                    &Pattern::any(),
                )
                .map(|_| ())
            })
        };
        saving_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The save is now in progress and held: a hello on another thread.
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let auth = {
            let svc = svc.clone();
            std::thread::spawn(move || {
                let ok = svc.authenticate(&secret, peer, Instant::now()).is_ok();
                done_tx.send(ok).unwrap();
            })
        };
        let verified = done_rx.recv_timeout(Duration::from_secs(5));
        release_tx.send(()).unwrap();
        creator.join().unwrap().unwrap();
        auth.join().unwrap();
        assert_eq!(
            verified,
            Ok(true),
            "authentication waited for the token store's save"
        );
    }
}
