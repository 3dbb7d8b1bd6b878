//! Authentication: who is asking. Tokens ([`token`]) and the store of their
//! hashes ([`store`]). What a principal may do is decided in
//! [`crate::policy`], not here.
//!
//! Nothing in this module logs a token, and every error it returns is the
//! same for an unknown token, a wrong secret and a revoked token.

pub mod store;
pub mod token;

use crate::pattern::Pattern;

/// What a token lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Role {
    /// Everything, including tokens and connections.
    Admin,
    /// List, latest, history, subscribe, within scope.
    Reader,
    /// Push readings to its own sensors (its scope) only.
    Device,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Self; 3] = [Self::Admin, Self::Reader, Self::Device];

    /// The role's name as users type it (spelled in
    /// [`sensegate_proto::names`]).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        self.to_wire().name()
    }

    /// The role from its name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        sensegate_proto::v1::Role::from_name(s).and_then(|r| Self::from_wire(r.into()))
    }

    /// The wire value.
    #[must_use]
    pub const fn to_wire(self) -> sensegate_proto::v1::Role {
        match self {
            Self::Admin => sensegate_proto::v1::Role::Admin,
            Self::Reader => sensegate_proto::v1::Role::Reader,
            Self::Device => sensegate_proto::v1::Role::Device,
        }
    }

    /// The role from its wire value; `None` for unspecified or unknown.
    #[must_use]
    pub fn from_wire(value: i32) -> Option<Self> {
        match sensegate_proto::v1::Role::try_from(value).ok()? {
            sensegate_proto::v1::Role::Admin => Some(Self::Admin),
            sensegate_proto::v1::Role::Reader => Some(Self::Reader),
            sensegate_proto::v1::Role::Device => Some(Self::Device),
            sensegate_proto::v1::Role::Unspecified => None,
        }
    }
}

impl From<Role> for &'static str {
    fn from(r: Role) -> Self {
        r.as_str()
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| "unknown role".to_owned())
    }
}

/// An authenticated identity: what the policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Id of the token it authenticated with.
    pub token_id: String,
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: Role,
    /// Sensors it may touch.
    pub scope: Pattern,
}

/// Authentication failed. One variant on purpose: callers cannot tell (and
/// so cannot leak) whether the id was unknown, the secret wrong, or the token
/// revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid token")]
pub struct AuthError;
