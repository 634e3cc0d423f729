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
use std::sync::Arc;
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use super::busy::Busy;
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
    results: Mutex<lru::LruCache<(u64, String), Ahead>>,
    limit: Arc<tokio::sync::Semaphore>,
    /// HEADs started and not finished (tests wait on it).
    in_flight: Busy,
}

impl Default for StatAhead {
    fn default() -> Self {
        StatAhead {
            walks: Mutex::new(lru::LruCache::new(nonzero(MAX_WALKS))),
            results: Mutex::new(lru::LruCache::new(nonzero(MAX_RESULTS))),
            limit: Arc::new(tokio::sync::Semaphore::new(CONCURRENCY)),
            in_flight: Busy::default(),
        }
    }
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

/// One entry's fetch: until when its result may be used, the result once there (set by the
/// fetch itself, so it can be read without polling anything), and the fetch to wait on.
struct Ahead {
    /// When it was asked for (see `Inode::changed_since`).
    asked: Instant,
    expires: Instant,
    done: Arc<std::sync::OnceLock<HeadResult>>,
    head: PendingHead,
}

/// Which listing of a directory a walk follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The complete listing that expires then (its expiry tells snapshots apart).
    Complete(Instant),
    /// The listing under way that started then.
    UnderWay(Instant),
}

/// One directory's walk through its listing.
struct Walk {
    /// The listing the names come from.
    listing: Source,
    /// A complete listing's names in byte order, and whether each is a directory; `None` for
    /// a listing under way (its names are read from its `PartialListing::order`).
    names: Option<Arc<Vec<(String, bool)>>>,
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
        self.stat_ahead.in_flight.wait_idle(limit).await
    }

    /// A lookup of `name`, listed in `parent`'s fresh listing, needs its HEAD: note the walk,
    /// start the HEADs ahead of it when it is one, and hand back this entry's HEAD if it was
    /// started earlier, with when it was.
    pub(crate) fn stat_ahead(&self, parent: u64, name: &str) -> Option<(PendingHead, Instant)> {
        let now = Instant::now();
        let taken = {
            let mut results = self.stat_ahead.results.lock();
            match results.pop(&(parent, name.to_string())) {
                Some(a) if now < a.expires => Some((a.head, a.asked)),
                _ => None,
            }
        };
        let launch = self.follow_walk(parent, name);
        for (child, is_dir) in launch {
            self.start_head(parent, &child, is_dir);
        }
        taken
    }

    /// [`stat_ahead`](Self::stat_ahead) for an entry whose fetch has finished with an
    /// object that `usable` accepts: its metadata and when it was asked for, the walk noted and
    /// the next entries started, all without waiting. `None` changes nothing (not fetched ahead, still in flight,
    /// missing, failed, or outside the runtime): the lookup goes the usual way.
    pub(crate) fn stat_ahead_ready(
        &self,
        parent: u64,
        name: &str,
        usable: impl FnOnce(&ObjectMeta) -> bool,
    ) -> Option<(ObjectMeta, Instant)> {
        // the next entries' fetches are spawned on the runtime
        tokio::runtime::Handle::try_current().ok()?;
        let now = Instant::now();
        let meta = {
            let mut results = self.stat_ahead.results.lock();
            let slot = (parent, name.to_string());
            let a = results.peek(&slot)?;
            let meta = match a.done.get() {
                Some(Ok(Some(meta))) if now < a.expires && usable(meta) => (meta.clone(), a.asked),
                _ => return None,
            };
            results.pop(&slot);
            meta
        };
        for (child, is_dir) in self.follow_walk(parent, name) {
            self.start_head(parent, &child, is_dir);
        }
        Some(meta)
    }

    /// Forget a result fetched ahead for `name` (it was created, removed or renamed here).
    pub(crate) fn stat_ahead_forget(&self, parent: u64, name: &str) {
        self.stat_ahead
            .results
            .lock()
            .pop(&(parent, name.to_string()));
    }

    /// Update `parent`'s walk with a lookup of `name`; the entries to fetch now. The walk
    /// follows the directory's fresh complete listing, or the listing still under way
    /// (`ls -l` stats each entry as it reads it, before the listing is complete).
    fn follow_walk(&self, parent: u64, name: &str) -> Vec<(String, bool)> {
        let now = Instant::now();
        let source = {
            let t = self.inodes.lock();
            let Some(p) = t.get(parent) else {
                return Vec::new();
            };
            match (&p.snapshot, &p.partial_listing) {
                (Some(s), _) if now < s.expires => Source::Complete(s.expires),
                (_, Some(pl)) if now < pl.until => Source::UnderWay(pl.started),
                _ => return Vec::new(),
            }
        };
        let mut walks = self.stat_ahead.walks.lock();
        let stale = walks.get(&parent).is_none_or(|w| w.listing != source);
        if stale {
            let names = match source {
                Source::Complete(_) => match self.listed_names(parent) {
                    Some(n) => Some(n),
                    None => return Vec::new(),
                },
                Source::UnderWay(_) => None,
            };
            walks.put(
                parent,
                Walk {
                    listing: source,
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
        // the names walked: the complete listing's, or what the listing under way has shown
        // so far (read under the inode lock, taken after the walks' as everywhere here)
        let sorted = walk.names.clone();
        let guard;
        let (names, pos): (&[(String, bool)], Option<usize>) = match &sorted {
            Some(n) => (n, n.binary_search_by(|(x, _)| x.as_str().cmp(name)).ok()),
            None => {
                guard = self.inodes.lock();
                match guard.get(parent).and_then(|p| p.partial_listing.as_ref()) {
                    Some(pl) if Source::UnderWay(pl.started) == walk.listing => {
                        let dir =
                            matches!(pl.children.get(name), Some(ListedChild::Directory { .. }));
                        (&pl.order, pl.position(name, dir))
                    }
                    _ => return Vec::new(),
                }
            }
        };
        let Some(pos) = pos else {
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
        walk.files_seen |= !names[pos].1;
        if walk.in_order == 0 {
            return Vec::new();
        }
        let from = walk.launched_until.max(pos + 1);
        // (a listing under way may not have shown that many yet: the next lookups go on)
        let to = (pos + 1 + walk.window).min(names.len());
        if from >= to {
            return Vec::new();
        }
        walk.launched_until = to;
        walk.window = (walk.window * 2).min(MAX_WINDOW);
        let files_too = walk.files_seen;
        names[from..to]
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
            .children()
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
            let listed_size = match p.listed_child(name, now) {
                Some(Some(ListedChild::File { size, .. })) => Some(*size),
                Some(Some(ListedChild::Directory { .. })) => None,
                // gone from the listing since (removed here), or the listing expired: the
                // lookup, if one comes, asks for itself
                Some(None) | None => return,
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
        let busy = self.stat_ahead.in_flight.start();
        let done = Arc::new(std::sync::OnceLock::new());
        let done_here = done.clone();
        let task = tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let res = match fetch_file_meta(&client, &bodies, &key, listed_size).await {
                Ok(meta) => Ok(Some(meta)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(FsError::from_s3(&e, &key)),
            };
            let _ = done_here.set(res.clone());
            drop(busy);
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
        self.stat_ahead.results.lock().put(
            slot,
            Ahead {
                asked: now,
                expires: now + self.config.metadata_ttl,
                done,
                head,
            },
        );
    }
}
