//! The names people type and read for the wire's enums, spelled once for
//! the daemon (HTTP, `/metrics`, the token store, the audit log) and the
//! CLI alike: roles, qualities and sensor states.

use crate::v1::{Quality, Role, SensorState};

impl Role {
    /// Every role a token can have.
    pub const NAMED: [Self; 3] = [Self::Admin, Self::Reader, Self::Device];

    /// Its name: `admin`, `reader`, `device` (`unspecified` for the
    /// unset value, which no token has).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Admin => "admin",
            Self::Reader => "reader",
            Self::Device => "device",
        }
    }

    /// The role named `s`; `None` for anything else (`unspecified` too).
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|r| r.name() == s)
    }
}

impl Quality {
    /// Every quality.
    pub const NAMED: [Self; 3] = [Self::Good, Self::Uncertain, Self::Bad];

    /// Its name: `good`, `uncertain`, `bad`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Uncertain => "uncertain",
            Self::Bad => "bad",
        }
    }

    /// The quality named `s`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|q| q.name() == s)
    }
}

impl SensorState {
    /// Every state a sensor can be in.
    pub const NAMED: [Self; 4] = [Self::Ok, Self::Faulted, Self::Restarting, Self::Idle];

    /// Its name: `ok`, `faulted`, `restarting`, `idle` (`unspecified` for
    /// the unset value).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Ok => "ok",
            Self::Faulted => "faulted",
            Self::Restarting => "restarting",
            Self::Idle => "idle",
        }
    }

    /// The state named `s`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Self> {
        Self::NAMED.into_iter().find(|q| q.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_unspecified_is_no_name() {
        for r in Role::NAMED {
            assert_eq!(Role::from_name(r.name()), Some(r));
        }
        for q in Quality::NAMED {
            assert_eq!(Quality::from_name(q.name()), Some(q));
        }
        for s in SensorState::NAMED {
            assert_eq!(SensorState::from_name(s.name()), Some(s));
        }
        assert_eq!(Role::from_name("unspecified"), None);
        assert_eq!(SensorState::from_name("unspecified"), None);
        assert_eq!(Role::from_name("Admin"), None);
    }
}
