//! Stat-ahead: when lookups walk a listed directory in listing order (`ls -l`, `rsync`, `du`,
//! `find -ls`), the HEADs of the next entries go out in parallel, so each stat finds its
//! attributes ready instead of waiting for one HEAD after another.
//!
//! A listing gives names, sizes and dates but not the mode, owner and times kept in object
//! metadata, so the first stat of each listed file costs a HEAD. A program that stats every
//! entry of a directory pays those HEADs one after another: 1,000 files at 20 ms each is 20 s.
//! Once two lookups in a row miss on neighbouring entries of one listing, the next entries are
//! fetched ahead, 16 at a time, in a window that starts at 8 entries and doubles up to 128 as
//! the walk goes on. Every entry is still fetched once: a walk that stops early wastes at most
//! one window of HEADs; a lookup of one file here and there starts nothing; a walk that looks
//! up only directories (`find` descending) fetches only directories ahead.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use super::inode::ListedChild;
use super::small_bodies::fetch_file_meta;
use super::{Filesystem, FsError};
use crate::s3::ObjectMeta;

/// What a HEAD found: the object's metadata, or `None` when there is no such object.
pub(crate) type HeadResult = Result<Option<ObjectMeta>, FsError>;
pub(crate) type PendingHead = Shared<BoxFuture<'static, HeadResult>>;

const FIRST_WINDOW: usize = 8;
const MAX_WINDOW: usize = 128;
/// HEADs of one mount's stat-ahead in flight at once.
const CONCURRENCY: usize = 16;
/// Directories whose walk is followed at once.
const MAX_WALKS: usize = 64;
/// Results kept waiting for their lookup (older ones are dropped, never wrong).
const MAX_RESULTS: usize = 4 * MAX_WINDOW * 8;
/// A lookup this far past the previous one still continues the walk (names the kernel
/// already had cached are skipped without a lookup).
const SKIP_TOLERANCE: usize = 8;

/// Walks being followed and HEADs fetched ahead, for one mount.
pub(crate) struct StatAhead {
    walks: Mutex<lru::LruCache<u64, Walk>>,
    results: Mutex<lru::LruCache<(u64, String), (Instant, PendingHead)>>,
    limit: Arc<tokio::sync::Semaphore>,
    /// HEADs started and not finished, told when one finishes (tests wait on it).
    in_flight: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
}

impl Default for StatAhead {
    fn default() -> Self {
        StatAhead {
            walks: Mutex::new(lru::LruCache::new(nonzero(MAX_WALKS))),
            results: Mutex::new(lru::LruCache::new(nonzero(MAX_RESULTS))),
            limit: Arc::new(tokio::sync::Semaphore::new(CONCURRENCY)),
            in_flight: Arc::default(),
        }
    }
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// One directory's walk through its listing.
struct Walk {
    /// The listing the names came from (its expiry tells snapshots apart).
    listing: Instant,
    /// Listed names in listing (byte) order, and whether each is a directory.
    names: Arc<Vec<(String, bool)>>,
    /// Position of the last lookup.
    pos: usize,
    /// Lookups in a row that followed the previous one.
    in_order: u32,
    /// Entries before this position have been fetched (or were not needed).
    launched_until: usize,
    window: usize,
    /// The walk has looked up files, not only directories (`find` descends into directories
    /// without stat-ing files: then only directories are fetched ahead).
    files_seen: bool,
}

impl Filesystem {
    /// Wait until no HEAD fetched ahead is in flight, at most `limit`: whether that happened.
    /// For tests that count requests, which wait on this rather than sleep.
    pub async fn wait_stat_ahead_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let (count, done) = &*self.stat_ahead.in_flight;
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

    /// A lookup of `name`, listed in `parent`'s fresh listing, needs its HEAD: note the walk,
    /// start the HEADs ahead of it when it is one, and hand back this entry's HEAD if it was
    /// started earlier.
    pub(crate) fn stat_ahead(&self, parent: u64, name: &str) -> Option<PendingHead> {
        let now = Instant::now();
        let taken = {
            let mut results = self.stat_ahead.results.lock();
            match results.pop(&(parent, name.to_string())) {
                Some((expires, head)) if now < expires => Some(head),
                _ => None,
            }
        };
        let launch = self.follow_walk(parent, name);
        for (child, is_dir) in launch {
            self.start_head(parent, &child, is_dir);
        }
        taken
    }

    /// Forget a result fetched ahead for `name` (it was created, removed or renamed here).
    pub(crate) fn stat_ahead_forget(&self, parent: u64, name: &str) {
        self.stat_ahead
            .results
            .lock()
            .pop(&(parent, name.to_string()));
    }

    /// Update `parent`'s walk with a lookup of `name`; the entries to fetch now.
    fn follow_walk(&self, parent: u64, name: &str) -> Vec<(String, bool)> {
        let listing = {
            let t = self.inodes.lock();
            match t.get(parent).and_then(|p| p.snapshot.as_ref()) {
                Some(s) => s.expires,
                None => return Vec::new(),
            }
        };
        let mut walks = self.stat_ahead.walks.lock();
        let stale = walks.get(&parent).is_none_or(|w| w.listing != listing);
        if stale {
            let names = match self.listed_names(parent) {
                Some(n) => n,
                None => return Vec::new(),
            };
            walks.put(
                parent,
                Walk {
                    listing,
                    names,
                    pos: usize::MAX,
                    in_order: 0,
                    launched_until: 0,
                    window: FIRST_WINDOW,
                    files_seen: false,
                },
            );
        }
        let Some(walk) = walks.get_mut(&parent) else {
            return Vec::new();
        };
        let Ok(pos) = walk.names.binary_search_by(|(n, _)| n.as_str().cmp(name)) else {
            return Vec::new();
        };
        let follows = walk.pos != usize::MAX
            && pos > walk.pos
            && pos <= walk.pos.max(walk.launched_until) + SKIP_TOLERANCE;
        walk.in_order = if follows { walk.in_order + 1 } else { 0 };
        walk.pos = pos;
        if walk.in_order == 0 {
            walk.launched_until = pos + 1;
            walk.window = FIRST_WINDOW;
            walk.files_seen = false;
        }
        walk.files_seen |= !walk.names[pos].1;
        if walk.in_order == 0 {
            return Vec::new();
        }
        let from = walk.launched_until.max(pos + 1);
        let to = (pos + 1 + walk.window).min(walk.names.len());
        if from >= to {
            return Vec::new();
        }
        walk.launched_until = to;
        walk.window = (walk.window * 2).min(MAX_WINDOW);
        let files_too = walk.files_seen;
        walk.names[from..to]
            .iter()
            .filter(|(_, is_dir)| *is_dir || files_too)
            .cloned()
            .collect()
    }

    /// The names of `parent`'s fresh listing in byte order, with their kind.
    fn listed_names(&self, parent: u64) -> Option<Arc<Vec<(String, bool)>>> {
        let t = self.inodes.lock();
        let s = t.get(parent)?.snapshot.as_ref()?;
        let mut names: Vec<(String, bool)> = s
            .children
            .iter()
            .map(|(n, c)| (n.clone(), matches!(c, ListedChild::Directory { .. })))
            .collect();
        drop(t);
        names.sort_unstable();
        Some(Arc::new(names))
    }

    /// Fetch `name`'s metadata (its marker's, for a directory) in the background, unless its
    /// attributes are fresh already or it is being fetched.
    fn start_head(&self, parent: u64, name: &str, is_dir: bool) {
        let now = Instant::now();
        let (key, listed_size) = {
            let t = self.inodes.lock();
            if t.child(parent, name).is_some_and(|c| c.attr_fresh(now)) {
                return;
            }
            let Some(p) = t.get(parent) else {
                return;
            };
            let listed_size = match p.snapshot.as_ref().and_then(|s| s.children.get(name)) {
                Some(ListedChild::File { size, .. }) => Some(*size),
                _ => None,
            };
            match is_dir {
                true => (format!("{}{name}/", p.key), None),
                false => (format!("{}{name}", p.key), listed_size),
            }
        };
        let slot = (parent, name.to_string());
        if self.stat_ahead.results.lock().contains(&slot) {
            return;
        }
        let client = self.client.clone();
        let bodies = self.small_bodies.clone();
        let limit = self.stat_ahead.limit.clone();
        let in_flight = self.stat_ahead.in_flight.clone();
        in_flight.0.fetch_add(1, Ordering::AcqRel);
        let task = tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let res = match fetch_file_meta(&client, &bodies, &key, listed_size).await {
                Ok(meta) => Ok(Some(meta)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(FsError::from_s3(&e, &key)),
            };
            in_flight.0.fetch_sub(1, Ordering::AcqRel);
            in_flight.1.notify_waiters();
            res
        });
        let head = task
            .map(|r| match r {
                Ok(res) => res,
                Err(e) => Err(FsError::new(
                    libc::EIO,
                    format!("stat-ahead task ended: {e}"),
                )),
            })
            .boxed()
            .shared();
        self.stat_ahead
            .results
            .lock()
            .put(slot, (now + self.config.metadata_ttl, head));
    }
}
