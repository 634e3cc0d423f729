//! Relisting: a directory without a fresh listing is listed again in the background once
//! lookups of names in it have asked the bucket often enough, so a long `rsync` or a program
//! creating files past the metadata TTL pays a few LIST pages per TTL instead of a HEAD and a
//! LIST for every name it looks up.
//!
//! A lookup of a name its directory's listing does not answer (expired, or never read)
//! probes: HEAD of the key and LIST of `key/`, two requests. After [`MIN_PROBES`] such lookups
//! in one directory within a TTL, and at least as many as its last listing had pages, the
//! directory is listed whole (the same pages `ls` reads), and the lookups that follow are
//! answered from that listing. A directory longer than the listing cache holds is never
//! listed so (its listing could not be kept): its lookups keep probing.

use std::num::NonZeroUsize;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::busy::Busy;
use super::Filesystem;

/// Lookups that probed in one directory before it is listed again (32 requests, against one
/// LIST page per 1,000 entries).
const MIN_PROBES: usize = 16;
/// Directories whose probes are counted at once (the least recently probed is forgotten).
const TRACKED_DIRS: usize = 1024;
/// Background listings at once, for one mount.
const CONCURRENT_LISTINGS: usize = 4;

/// What lookups cost in each directory since its last listing, for one mount.
pub(crate) struct Relister {
    dirs: Mutex<lru::LruCache<u64, DirProbes>>,
    limit: Arc<tokio::sync::Semaphore>,
    /// Background listings under way (tests wait on it).
    busy: Busy,
}

#[derive(Debug, Default)]
struct DirProbes {
    /// Lookups that probed since `since`.
    probes: usize,
    since: Option<Instant>,
    /// Entries of the directory's last complete listing.
    last_len: usize,
    /// A background listing is under way.
    listing: bool,
    /// The directory holds more entries than a listing may keep: never listed in the
    /// background.
    too_big: bool,
}

impl Default for Relister {
    fn default() -> Self {
        Relister {
            dirs: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(TRACKED_DIRS).unwrap_or(NonZeroUsize::MIN),
            )),
            limit: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_LISTINGS)),
            busy: Busy::default(),
        }
    }
}

impl Relister {
    /// A lookup in `dir` probed the bucket: whether `dir` is to be listed now (the caller
    /// starts it; it counts as under way from here).
    fn probed(&self, dir: u64, ttl: Duration, now: Instant) -> bool {
        let mut dirs = self.dirs.lock();
        let d = dirs.get_or_insert_mut(dir, DirProbes::default);
        if d.since.is_none_or(|s| now.duration_since(s) > ttl) {
            d.probes = 0;
            d.since = Some(now);
        }
        d.probes += 1;
        let due = d.probes >= MIN_PROBES.max(d.last_len / 1000);
        if !due || d.listing || d.too_big {
            return false;
        }
        d.listing = true;
        true
    }

    /// `dir` was listed whole (`len` entries; `kept`: the listing is cached).
    pub(crate) fn listed(&self, dir: u64, len: usize, kept: bool) {
        let mut dirs = self.dirs.lock();
        if let Some(d) = dirs.get_mut(&dir) {
            d.probes = 0;
            d.since = None;
            d.last_len = len;
            d.too_big = !kept;
        }
    }

    fn done(&self, dir: u64, too_big: bool) {
        if let Some(d) = self.dirs.lock().get_mut(&dir) {
            d.listing = false;
            d.too_big |= too_big;
        }
    }
}

impl Filesystem {
    /// A lookup in `dir` is about to probe the bucket (its listing does not answer): list
    /// `dir` in the background when that has become the cheaper way.
    pub(crate) fn relist_if_due(&self, dir: u64) {
        let ttl = self.config.metadata_ttl;
        if ttl.is_zero() || !self.relist.probed(dir, ttl, Instant::now()) {
            return;
        }
        let me = self.me.clone();
        let limit = self.relist.limit.clone();
        let busy = self.relist.busy.start();
        tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            relist(me, dir).await;
            drop(busy);
        });
    }

    /// Wait until no background listing is under way, at most `limit`: whether that
    /// happened. For tests that count requests.
    pub async fn wait_relist_idle(&self, limit: Duration) -> bool {
        self.relist.busy.wait_idle(limit).await
    }
}

/// List `dir` whole, as `ls` does: the listing is kept for its lookups when it fits.
async fn relist(me: Weak<Filesystem>, dir: u64) {
    let Some(fs) = me.upgrade() else { return };
    let bound = fs.config.listing_cache_entries;
    let mut too_big = false;
    match fs.opendir(dir).await {
        Ok(fh) => {
            let mut offset = 0;
            loop {
                let mut next = None;
                let read = fs
                    .readdir_into(dir, fh, offset, |n, _, _, _| {
                        next = Some(n);
                        false
                    })
                    .await;
                match (read, next) {
                    (Ok(()), Some(n)) if n > offset => offset = n,
                    (Err(e), _) => {
                        tracing::debug!(dir, "background listing ended: {e}");
                        break;
                    }
                    _ => break,
                }
                if offset as usize > bound + 2 {
                    too_big = true;
                    break;
                }
            }
            fs.releasedir(fh);
        }
        Err(e) => tracing::debug!(dir, "background listing not started: {e}"),
    }
    fs.relist.done(dir, too_big);
}
