//! A count of background tasks under way that tests can wait to reach zero (an event, not a
//! sleep): stat-ahead's fetches and background listings use one each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Tasks under way, and who waits for there to be none.
#[derive(Default, Clone)]
pub(crate) struct Busy(Arc<(AtomicUsize, Notify)>);

/// One task under way: counted until dropped.
pub(crate) struct BusyGuard(Arc<(AtomicUsize, Notify)>);

impl Busy {
    /// Count one more task until the guard is dropped.
    pub(crate) fn start(&self) -> BusyGuard {
        self.0 .0.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.0.clone())
    }

    /// Wait until no task is under way, at most `limit`: whether that happened.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let (count, done) = &*self.0;
        loop {
            let notified = done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
        self.0 .1.notify_waiters();
    }
}
