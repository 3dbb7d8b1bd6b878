//! The global in-flight byte budget: bytes of frames being assembled and of
//! replies being written, summed over every connection.
//!
//! A connection reserves a frame's declared length as soon as the header
//! arrives and gives it back when the frame is handled; past
//! `limits.inflight_bytes_total` the peer gets `OVERLOADED` and is closed,
//! so a crowd of peers that each announce a large frame cannot make the
//! daemon hold their sum. Replies are reserved as they are written.
//!
//! An authenticated connection reserves as its token ([`InflightBudget::
//! try_reserve_as`]), and one token's connections together may hold at most
//! `limits.inflight_bytes_per_token` of the budget: a principal that opens
//! many connections cannot take the whole budget from everyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The shared budget.
#[derive(Debug)]
pub struct InflightBudget {
    used: AtomicUsize,
    max: usize,
    per_owner_max: usize,
    /// Bytes held per token id; entries go at zero.
    owners: Mutex<HashMap<Arc<str>, usize>>,
}

/// A reservation; dropping it gives the bytes back.
#[derive(Debug)]
pub struct InflightPermit {
    budget: Arc<InflightBudget>,
    bytes: usize,
    owner: Option<Arc<str>>,
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
    pub fn try_reserve_as(self: &Arc<Self>, owner: &str, bytes: usize) -> Option<InflightPermit> {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let held = owners.get(owner).copied().unwrap_or(0);
        if held.checked_add(bytes)? > self.per_owner_max {
            return None;
        }
        let mut permit = self.try_reserve(bytes)?;
        let key = owners
            .get_key_value(owner)
            .map_or_else(|| Arc::from(owner), |(k, _)| k.clone());
        *owners.entry(key.clone()).or_default() += bytes;
        permit.owner = Some(key);
        Some(permit)
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
                        owner: None,
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
        if let Some(owner) = self.owner.take() {
            let mut owners = self
                .budget
                .owners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(held) = owners.get_mut(&owner) {
                *held = held.saturating_sub(self.bytes);
                if *held == 0 {
                    owners.remove(&owner);
                }
            }
        }
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
        assert!(budget.owners.lock().unwrap().is_empty());
    }
}
