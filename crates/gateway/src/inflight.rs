//! The global in-flight byte budget: bytes of frames being assembled and of
//! replies being written, summed over every connection.
//!
//! A connection reserves a frame's declared length as soon as the header
//! arrives and gives it back when the frame is handled; past
//! `limits.inflight_bytes_total` the peer gets `OVERLOADED` and is closed,
//! so a crowd of peers that each announce a large frame cannot make the
//! daemon hold their sum.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shared budget.
#[derive(Debug)]
pub struct InflightBudget {
    used: AtomicUsize,
    max: usize,
}

/// A reservation; dropping it gives the bytes back.
#[derive(Debug)]
pub struct InflightPermit {
    budget: Arc<InflightBudget>,
    bytes: usize,
}

impl InflightBudget {
    /// A budget of `max` bytes.
    #[must_use]
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
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
}
