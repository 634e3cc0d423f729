//! Open file handles: their numbers, what each one is, and a notification whenever a writer is
//! flushed or released (what a reopen waiting for a release listens to).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::file_io::Handle;

/// Every open handle by number. Numbers are never reused while the mount lives.
pub(crate) struct Handles {
    open: Mutex<HashMap<u64, Handle>>,
    next: AtomicU64,
    writers_changed: Notify,
}

impl Handles {
    pub(crate) fn new() -> Handles {
        Handles {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            writers_changed: Notify::new(),
        }
    }

    /// A number for a handle about to be opened.
    pub(crate) fn next_fh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The open handles (held briefly: never across an await).
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.open.lock()
    }

    /// Resolves at the next flush or release of a writer; create it before looking at the
    /// state it waits on, so that a change in between is not missed.
    pub(crate) fn writers_changed(&self) -> Notified<'_> {
        self.writers_changed.notified()
    }

    /// A writer was flushed or released: wake whoever waits for that.
    pub(crate) fn writer_changed(&self) {
        self.writers_changed.notify_waiters();
    }
}
