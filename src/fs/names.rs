//! The names the kernel knows: the inode table, the names known to be missing (the negative
//! cache, with its TTL), and the kernel's hook to forget a cached name.

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::inode::InodeTable;
use super::EntryInvalidator;

/// Most names remembered as missing at once.
const NEGATIVE_CACHE_ENTRIES: usize = 16_384;

pub(crate) struct Names {
    table: Mutex<InodeTable>,
    /// (parent, name) pairs known not to exist, until the instant stored.
    missing: Mutex<lru::LruCache<(u64, String), Instant>>,
    /// How long a name is known missing (zero: never remembered).
    negative_ttl: Duration,
    /// Tells the kernel to drop a cached name (set by the FUSE adapter once mounted).
    invalidator: OnceLock<EntryInvalidator>,
}

impl Names {
    pub(crate) fn new(table: InodeTable, negative_ttl: Duration) -> Names {
        let cap = NonZeroUsize::new(NEGATIVE_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Names {
            table: Mutex::new(table),
            missing: Mutex::new(lru::LruCache::new(cap)),
            negative_ttl,
            invalidator: OnceLock::new(),
        }
    }

    /// The inode table (held briefly: never across an await).
    pub(crate) fn lock(&self) -> MutexGuard<'_, InodeTable> {
        self.table.lock()
    }

    /// `name` in `parent` was looked up and does not exist.
    pub(crate) fn remember_missing(&self, parent: u64, name: &str) {
        if !self.negative_ttl.is_zero() {
            self.missing.lock().put(
                (parent, name.to_string()),
                Instant::now() + self.negative_ttl,
            );
        }
    }

    /// `name` in `parent` may exist now (it was created, or renamed there).
    pub(crate) fn forget_missing(&self, parent: u64, name: &str) {
        self.missing.lock().pop(&(parent, name.to_string()));
    }

    /// Whether `name` in `parent` is known missing at `now`.
    pub(crate) fn known_missing(&self, parent: u64, name: &str, now: Instant) -> bool {
        self.missing
            .lock()
            .get(&(parent, name.to_string()))
            .is_some_and(|until| now < *until)
    }

    /// Install the hook that makes the kernel forget a cached (parent, name) entry.
    pub(crate) fn set_invalidator(&self, f: EntryInvalidator) {
        let _ = self.invalidator.set(f);
    }

    /// Make the kernel forget `name` in `parent` (it disappeared without an unlink).
    pub(crate) fn invalidate(&self, parent: u64, name: &str) {
        if let Some(f) = self.invalidator.get() {
            f(parent, name);
        }
    }
}
