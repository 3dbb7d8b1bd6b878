//! The global in-flight byte budget: bytes of frames being assembled and of
//! replies being written, summed over every connection.
//!
//! A connection reserves a frame's declared length as soon as the header
//! arrives and gives it back when the frame is handled; past
//! `limits.inflight_bytes_total` the peer gets `OVERLOADED` and is closed,
//! so a crowd of peers that each announce a large frame cannot make the
//! daemon hold their sum. Replies are reserved as they are written.
//!
//! Replies and HTTP responses are reserved as their token's
//! ([`InflightBudget::try_reserve_as`]), and one token's connections
//! together may hold at most `limits.inflight_bytes_per_token` of the
//! budget: a principal that opens many connections cannot take the whole
//! budget from everyone else. (A frame being assembled is bounded by the
//! per-connection cap and reserves from the budget alone.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The shared budget.
#[derive(Debug)]
pub struct InflightBudget {
    used: AtomicUsize,
    max: usize,
    per_owner_max: usize,
    /// Bytes held per token id. An entry stays at zero (one per token that
    /// ever reserved, so bounded by the token store's cap): a reservation
    /// on the hot path allocates nothing, and a permit gives its bytes back
    /// without the lock.
    owners: Mutex<HashMap<Arc<str>, Arc<AtomicUsize>>>,
}

/// A reservation; dropping it gives the bytes back.
#[derive(Debug)]
pub struct InflightPermit {
    budget: Arc<InflightBudget>,
    bytes: usize,
}

/// A reservation counted against its owner's share too (replies and
/// responses); dropping it gives the bytes back to both. A frame being
/// assembled holds a plain [`InflightPermit`], which sits in every
/// connection's state and so stays two words.
#[derive(Debug)]
pub struct OwnedPermit {
    permit: InflightPermit,
    owner: Arc<AtomicUsize>,
}

/// Either kind of reservation, held for its drop.
#[derive(Debug)]
pub enum Reservation {
    /// Against the budget alone.
    Plain(InflightPermit),
    /// Against the budget and its owner's share.
    Owned(OwnedPermit),
}

impl InflightBudget {
    /// Reserves `bytes` as `owner`'s when there is one, else from the
    /// budget alone.
    #[must_use]
    pub fn reserve_for(self: &Arc<Self>, owner: Option<&str>, bytes: usize) -> Option<Reservation> {
        match owner {
            Some(o) => self.try_reserve_as(o, bytes).map(Reservation::Owned),
            None => self.try_reserve(bytes).map(Reservation::Plain),
        }
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.owner.fetch_sub(self.permit.bytes, Ordering::AcqRel);
    }
}

impl InflightBudget {
    /// A budget of `max` bytes, of which one owner may hold the whole.
    #[must_use]
    pub fn new(max: usize) -> Arc<Self> {
        Self::with_share(max, max)
    }

    /// A budget of `max` bytes, of which one owner may hold `per_owner`.
    #[must_use]
    pub fn with_share(max: usize, per_owner: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
            per_owner_max: per_owner.min(max),
            owners: Mutex::new(HashMap::new()),
        })
    }

    /// Reserves `bytes` for `owner` (a token id), or `None` when that would
    /// pass the owner's share or the budget.
    #[must_use]
    pub fn try_reserve_as(self: &Arc<Self>, owner: &str, bytes: usize) -> Option<OwnedPermit> {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match owners.get(owner) {
            Some(slot) => slot.clone(),
            None => owners.entry(Arc::from(owner)).or_default().clone(),
        };
        // Reservations of one owner are serialised by the lock; returns
        // (on drop) only make room.
        let held = slot.load(Ordering::Acquire);
        if held.checked_add(bytes)? > self.per_owner_max {
            return None;
        }
        let permit = self.try_reserve(bytes)?;
        slot.fetch_add(bytes, Ordering::AcqRel);
        Some(OwnedPermit {
            permit,
            owner: slot,
        })
    }

    /// Reserves `bytes`, or `None` when that would pass the budget.
    #[must_use]
    pub fn try_reserve(self: &Arc<Self>, bytes: usize) -> Option<InflightPermit> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let next = current.checked_add(bytes).filter(|n| *n <= self.max)?;
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(InflightPermit {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes reserved now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_past_the_budget_fail_and_return_on_drop() {
        let b = InflightBudget::new(100);
        let a = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let c = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        drop(a);
        assert!(b.try_reserve(60).is_some());
        drop(c);
        assert_eq!(b.used(), 0);
        assert!(b.try_reserve(usize::MAX).is_none());
    }

    #[test]
    fn one_owner_holds_at_most_its_share() {
        let budget = InflightBudget::with_share(100, 40);
        let (x, y) = ("owner-x", "owner-y");
        let first = budget.try_reserve_as(x, 30).unwrap();
        assert!(budget.try_reserve_as(x, 11).is_none(), "past x's share");
        let second = budget.try_reserve_as(y, 40).unwrap();
        let third = budget.try_reserve_as(x, 10).unwrap();
        assert_eq!(budget.used(), 80);
        drop((first, third));
        assert!(budget.try_reserve_as(x, 40).is_some());
        drop(second);
        assert_eq!(budget.used(), 0);
        assert!(
            budget
                .owners
                .lock()
                .unwrap()
                .values()
                .all(|n| n.load(Ordering::Relaxed) == 0)
        );
    }
}
