//! The access policy: the one function that decides every action from every
//! front end (native protocol, HTTP, CLI through either).
//!
//! Deny by default: [`decide`] lists what each role may do; anything not
//! listed is denied. Sensor actions also require the sensor to be in the
//! principal's scope. Token and connection actions name the scope of the
//! token concerned: an admin acts only on tokens (and on connections of
//! tokens) whose scope lies inside its own, by the conservative rule of
//! [`Pattern::covers`], so an admin scoped `site-a/*` can neither mint a `*`
//! token nor revoke the root admin. The test below walks the whole role x
//! action x scope table.

use crate::auth::{Principal, Role};
use crate::pattern::Pattern;

/// Everything a principal can ask for. Sensor actions name the sensor so the
/// scope can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// List sensors (the result is then filtered with [`Action::ReadSensor`]).
    ListSensors,
    /// Read a sensor: latest reading, history, or a reading delivered to a
    /// subscription.
    ReadSensor(&'a str),
    /// Open a subscription (each reading is then checked with
    /// [`Action::ReadSensor`]).
    Subscribe,
    /// Push readings for a sensor.
    Push(&'a str),
    /// Read the metrics endpoint.
    ReadMetrics,
    /// Create a token with this scope.
    CreateToken(&'a Pattern),
    /// List tokens (the result is then filtered with
    /// [`Action::RevokeToken`]: an admin sees the tokens it could revoke).
    ListTokens,
    /// Revoke a token with this scope.
    RevokeToken(&'a Pattern),
    /// List connections (filtered with [`Action::KickConnection`]).
    ListConnections,
    /// Disconnect a connection whose token has this scope (a connection not
    /// yet authenticated counts as scope `*`: only an unscoped admin may).
    KickConnection(&'a Pattern),
    /// Read one's own identity: name, role and scope (what the dashboard
    /// shows and which pages it offers).
    WhoAmI,
}

/// Why an action was denied. Front ends map every variant to `FORBIDDEN`
/// (HTTP 403); the reason goes to the audit log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deny {
    /// The role may never do this.
    Role,
    /// The role may, but not for this sensor.
    Scope,
}

/// The decision on one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse.
    Deny(Deny),
}

impl Decision {
    /// Whether the action is allowed.
    #[must_use]
    pub const fn is_allowed(self) -> bool {
        matches!(self, Self::Allow)
    }
}

/// Decides whether `principal` may perform `action`.
#[must_use]
pub fn decide(principal: &Principal, action: Action<'_>) -> Decision {
    let in_scope = |sensor: &str| {
        if principal.scope.matches(sensor) {
            Decision::Allow
        } else {
            Decision::Deny(Deny::Scope)
        }
    };
    let covers = |scope: &Pattern| {
        if principal.scope.covers(scope) {
            Decision::Allow
        } else {
            Decision::Deny(Deny::Scope)
        }
    };
    match (principal.role, action) {
        (
            Role::Admin,
            Action::ListSensors
            | Action::Subscribe
            | Action::ReadMetrics
            | Action::ListTokens
            | Action::ListConnections,
        )
        | (Role::Reader, Action::ListSensors | Action::Subscribe | Action::ReadMetrics)
        | (Role::Admin | Role::Reader | Role::Device, Action::WhoAmI) => Decision::Allow,
        (Role::Admin | Role::Reader, Action::ReadSensor(sensor))
        | (Role::Admin | Role::Device, Action::Push(sensor)) => in_scope(sensor),
        (
            Role::Admin,
            Action::CreateToken(scope) | Action::RevokeToken(scope) | Action::KickConnection(scope),
        ) => covers(scope),
        _ => Decision::Deny(Deny::Role),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;

    /// Every action, with its sensor (when it has one) in or out of scope.
    /// `scope` is the scope of the token acted on, in or out of the
    /// principal's scope as `sensor` is.
    fn actions<'a>(sensor: &'a str, scope: &'a Pattern) -> [Action<'a>; 11] {
        [
            Action::ListSensors,
            Action::ReadSensor(sensor),
            Action::Subscribe,
            Action::Push(sensor),
            Action::ReadMetrics,
            Action::CreateToken(scope),
            Action::ListTokens,
            Action::RevokeToken(scope),
            Action::ListConnections,
            Action::KickConnection(scope),
            Action::WhoAmI,
        ]
    }

    fn principal(role: Role) -> Principal {
        Principal {
            token_id: "0123456789abcdef".into(),
            name: "t".into(),
            role,
            scope: Pattern::new("room/*"),
        }
    }

    /// The whole table. `A` allow, `R` denied by role, `S` denied by scope.
    /// Columns follow `actions()`; rows are role x (in scope, out of scope).
    #[test]
    fn full_role_action_scope_table() {
        let table: [(Role, bool, &str); 6] = [
            //                         list read sub push metr ctok ltok rtok lcon kick whoami
            (Role::Admin, true, "A A A A A A A A A A A"),
            (Role::Admin, false, "A S A S A S A S A S A"),
            (Role::Reader, true, "A A A R A R R R R R A"),
            (Role::Reader, false, "A S A R A R R R R R A"),
            (Role::Device, true, "R R R A R R R R R R A"),
            (Role::Device, false, "R R R S R R R R R R A"),
        ];
        let mut checked = 0;
        for (role, in_scope, row) in table {
            let sensor = if in_scope { "room/temp" } else { "hall/temp" };
            let scope = Pattern::new(if in_scope { "room/a/*" } else { "*" });
            let expected: Vec<&str> = row.split(' ').collect();
            let p = principal(role);
            for (action, want) in actions(sensor, &scope).into_iter().zip(&expected) {
                let want = match *want {
                    "A" => Decision::Allow,
                    "R" => Decision::Deny(Deny::Role),
                    "S" => Decision::Deny(Deny::Scope),
                    other => panic!("bad table cell {other}"),
                };
                assert_eq!(decide(&p, action), want, "{role:?} {action:?}");
                checked += 1;
            }
        }
        assert_eq!(
            checked,
            Role::ALL.len() * 2 * actions("x", &Pattern::any()).len()
        );
    }

    #[test]
    fn an_unscoped_admin_manages_every_token_and_a_scoped_one_only_its_own() {
        let mut root = principal(Role::Admin);
        root.scope = Pattern::any();
        let site = principal(Role::Admin);
        for scope in ["*", "room/*", "hall/*", "room/t"] {
            let s = Pattern::new(scope);
            assert!(decide(&root, Action::CreateToken(&s)).is_allowed());
            assert!(decide(&root, Action::RevokeToken(&s)).is_allowed());
            assert!(decide(&root, Action::KickConnection(&s)).is_allowed());
        }
        for (scope, allowed) in [
            ("*", false),
            ("room/*", true),
            ("hall/*", false),
            ("room/t", true),
        ] {
            let s = Pattern::new(scope);
            for action in [
                Action::CreateToken(&s),
                Action::RevokeToken(&s),
                Action::KickConnection(&s),
            ] {
                assert_eq!(decide(&site, action).is_allowed(), allowed, "{action:?}");
            }
        }
    }

    #[test]
    fn scope_star_reaches_every_sensor() {
        let mut p = principal(Role::Reader);
        p.scope = Pattern::any();
        assert!(decide(&p, Action::ReadSensor("anything/at:all")).is_allowed());
    }
}
