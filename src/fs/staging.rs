//! The size bound of the staging area (`--cache-size`): every owner of staged files holds a
//! [`Charge`] for their bytes; a writer about to stage more waits for room (uploads that finish
//! give theirs back), and after a while goes over rather than wait forever.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a writer waits for room in the staging area before going over its bound.
pub const STAGING_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct StagingBudget {
    limit: u64,
    used: AtomicU64,
    freed: Notify,
    warned: AtomicBool,
    overruns: AtomicU64,
}

impl StagingBudget {
    pub fn new(limit: u64) -> Arc<StagingBudget> {
        Arc::new(StagingBudget {
            limit,
            used: AtomicU64::new(0),
            freed: Notify::new(),
            warned: AtomicBool::new(false),
            overruns: AtomicU64::new(0),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes staged now, all owners together.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// How many times a writer went over the bound after waiting in vain.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Whether `more` bytes fit.
    pub fn fits(&self, more: u64) -> bool {
        self.used().saturating_add(more) <= self.limit
    }

    /// Wait until `more` bytes fit, up to `deadline`; whether they do. A caller that then
    /// goes over the bound says so with [`StagingBudget::overrun`].
    pub async fn wait_for_room(&self, more: u64, deadline: Instant) -> bool {
        loop {
            let freed = self.freed.notified();
            if self.fits(more) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(deadline - now, freed).await;
        }
    }

    /// A writer gives up waiting and goes over the bound (said once in the log).
    pub fn overrun(&self) {
        self.overruns.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.limit,
                used = self.used(),
                "the staging area is full and no upload finished in time: going over \
                 --cache-size (raise it, or write fewer large files at once)"
            );
        }
    }

    fn add(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
        self.freed.notify_waiters();
    }
}

/// The bytes one owner has staged; given back on drop.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<StagingBudget>,
    bytes: u64,
}

impl Charge {
    pub fn new(budget: Arc<StagingBudget>) -> Charge {
        Charge { budget, bytes: 0 }
    }

    pub fn budget(&self) -> &StagingBudget {
        &self.budget
    }

    /// The owner now has `bytes` staged.
    pub fn set(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.budget.add(bytes - self.bytes);
        } else if bytes < self.bytes {
            self.budget.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn charges_add_up_and_a_freed_charge_wakes_a_waiter() {
        let budget = StagingBudget::new(100);
        let mut a = Charge::new(budget.clone());
        a.set(80);
        let mut b = Charge::new(budget.clone());
        b.set(10);
        assert_eq!(budget.used(), 90);
        assert!(!budget.fits(20));
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .wait_for_room(20, Instant::now() + Duration::from_secs(30))
                    .await
            })
        };
        a.set(30);
        assert!(waiter.await.expect("join"), "woken by the freed bytes");
        drop(b);
        assert_eq!(budget.used(), 30);
        // nothing frees: the wait ends at its deadline
        assert!(!budget.wait_for_room(100, Instant::now()).await);
    }
}
