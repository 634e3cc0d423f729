//! Writing attributes (mode, owner, times, xattrs) into object metadata: deferred and
//! coalesced into one CopyObject of the object (or directory marker) onto itself.
//!
//! S3 cannot change an object's metadata in place: every chmod, chown or utimens is a copy of the
//! object onto itself. Tools change several at once (`rsync -a` sets the times, then the mode,
//! then renames a temporary file), so a change is applied here at once (stat sees it)
//! and sent to S3 `metadata_write_delay` (1 s) after the first one, as one copy carrying all of
//! them. A rename in the meantime carries them in its own copy, a commit of new data in its
//! upload, and fsync or unmount sends them at once. So `rsync` costs a PUT, a copy and a delete
//! per file instead of a PUT, three copies and a delete.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use parking_lot::Mutex;

use super::error::log_failure;
use super::inode::ROOT_INO;
use super::{Attr, FileKind, Filesystem, FsError, FsResult};
use crate::s3::PutOptions;

/// Attribute copies sent at once: `chmod -R` or `touch` of 10,000 files is 10,000 copies, not
/// 10,000 round trips one after another.
const METADATA_PARALLEL: usize = 16;

/// Files whose attribute changes wait to be written, and the task that writes them.
#[derive(Default)]
pub(crate) struct MetadataWriteback {
    /// inode → when its metadata is due in S3.
    due: Mutex<Due>,
    wake: tokio::sync::Notify,
    started: AtomicBool,
    /// Changes taken from `due` and being written by the writer task.
    writing: AtomicUsize,
    /// Told after each round of the writer task.
    written: tokio::sync::Notify,
}

/// The changes waiting, by inode and in the order they are due: the writer takes the due
/// ones and learns the next time without a walk over all of them (a `chmod -R` of many files
/// has them all waiting at once, and each round of the writer held the lock over all).
#[derive(Default)]
pub(crate) struct Due {
    at: HashMap<u64, Instant>,
    order: BTreeSet<(Instant, u64)>,
    /// Entries looked at by [`Due::ready`] (tests).
    #[cfg(test)]
    visits: std::cell::Cell<usize>,
}

impl Due {
    fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// `ino` is due at `when`, unless it is due already.
    fn add(&mut self, ino: u64, when: Instant) {
        if let std::collections::hash_map::Entry::Vacant(v) = self.at.entry(ino) {
            v.insert(when);
            self.order.insert((when, ino));
        }
    }

    /// `ino` is due at `when` (whenever it was due before).
    fn set(&mut self, ino: u64, when: Instant) {
        self.remove(ino);
        self.add(ino, when);
    }

    fn remove(&mut self, ino: u64) {
        if let Some(when) = self.at.remove(&ino) {
            self.order.remove(&(when, ino));
        }
    }

    fn inos(&self) -> Vec<u64> {
        self.at.keys().copied().collect()
    }

    /// The inodes due at `now` or before, earliest first (looking at those only).
    fn ready(&self, now: Instant) -> Vec<u64> {
        self.order
            .iter()
            .take_while(|(when, _)| *when <= now)
            .map(|(_, ino)| {
                #[cfg(test)]
                self.visits.set(self.visits.get() + 1);
                *ino
            })
            .collect()
    }

    /// When the earliest change is due.
    fn next(&self) -> Option<Instant> {
        self.order.first().map(|(when, _)| *when)
    }
}

impl Filesystem {
    /// Note that `ino` has attribute changes its object lacks, and have them written
    /// `metadata_write_delay` after the first.
    pub(crate) fn defer_metadata(&self, ino: u64) -> FsResult<()> {
        {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            n.meta_pending = true;
            n.meta_gen += 1;
        }
        let first = {
            let mut due = self.writeback.due.lock();
            let first = due.is_empty();
            due.add(ino, Instant::now() + self.config.metadata_write_delay);
            first
        };
        self.start_metadata_writer();
        if first {
            self.writeback.wake.notify_one();
        }
        Ok(())
    }

    /// Write `ino`'s pending attribute changes now (fsync, or their time came).
    /// A file renamed, removed or rewritten meanwhile has had them carried already.
    pub(crate) async fn flush_metadata(&self, ino: u64) -> FsResult<()> {
        self.write_pending_metadata(ino, false).await
    }

    /// As [`flush_metadata`](Self::flush_metadata); `even_if_open`: also for a file still open
    /// for writing (at unmount, after every pending upload was finished).
    pub(crate) async fn write_pending_metadata(
        &self,
        ino: u64,
        even_if_open: bool,
    ) -> FsResult<()> {
        self.writeback.due.lock().remove(ino);
        let (attr, key, generation) = {
            let t = self.inodes.lock();
            match t.get(ino) {
                Some(n) if n.meta_pending && n.local_only => return Ok(()),
                Some(n) if n.meta_pending && n.writing && !even_if_open => {
                    // open for writing: its commit carries the change; if it closes without
                    // one (nothing written), the change is written later
                    drop(t);
                    self.writeback
                        .due
                        .lock()
                        .set(ino, Instant::now() + self.config.metadata_write_delay);
                    self.writeback.wake.notify_one();
                    return Ok(());
                }
                Some(n) if n.meta_pending => (n.attr, n.key.clone(), n.meta_gen),
                _ => return Ok(()),
            }
        };
        match self.store_metadata(ino, &attr).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut t = self.inodes.lock();
                match t.get_mut(ino) {
                    // renamed or rewritten meanwhile: the change went with that
                    Some(n) if n.key != key || !n.meta_pending => Ok(()),
                    // failed for good: the change stays local only; say so once
                    Some(n) if n.meta_gen == generation => {
                        n.meta_pending = false;
                        n.attr_expires = Instant::now();
                        t.settle(ino);
                        Err(e)
                    }
                    Some(_) => Err(e),
                    None => Ok(()),
                }
            }
        }
    }

    /// Wait until no attribute change waits to be written (the writer task has written every
    /// deferred change, or given up on it), at most `limit`: whether that happened. For
    /// tests, which wait on this rather than sleep past the delay.
    pub async fn wait_metadata_written(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.writeback.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let idle = self.writeback.due.lock().is_empty()
                && self.writeback.writing.load(Ordering::Acquire) == 0;
            if idle {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Write the pending attribute changes of every file whose key starts with `prefix` now
    /// (before a directory rename copies them).
    pub(crate) async fn flush_metadata_under(&self, prefix: &str) -> FsResult<()> {
        let inos: Vec<u64> = {
            let due: Vec<u64> = self.writeback.due.lock().inos();
            let t = self.inodes.lock();
            due.into_iter()
                .filter(|ino| t.get(*ino).is_some_and(|n| n.key.starts_with(prefix)))
                .collect()
        };
        futures::stream::iter(inos.into_iter().map(Ok))
            .try_for_each_concurrent(METADATA_PARALLEL, |ino| self.flush_metadata(ino))
            .await
    }

    /// Write every pending attribute change now (unmount). Failures are logged.
    pub(crate) async fn flush_all_metadata(&self) {
        let inos: Vec<u64> = self.writeback.due.lock().inos();
        futures::stream::iter(inos)
            .for_each_concurrent(METADATA_PARALLEL, |ino| async move {
                if let Err(e) = self.write_pending_metadata(ino, true).await {
                    log_failure("setattr", || self.path_of(ino), &e);
                }
            })
            .await;
    }

    /// The headers that give `ino`'s object the attributes `attr` changed here (keeping its
    /// other metadata and xattrs, see object_meta.rs); `renamed_to`: the copy goes to that name.
    pub(crate) fn metadata_options(
        &self,
        ino: u64,
        attr: &Attr,
        renamed_to: Option<&str>,
    ) -> FsResult<PutOptions> {
        let t = self.inodes.lock();
        let n = t.get(ino).ok_or_else(FsError::not_found)?;
        Ok(n.meta.for_change(attr, n.meta_changed, renamed_to))
    }

    /// Write `attr` into the metadata of the object behind `ino` now.
    pub(crate) async fn store_metadata(&self, ino: u64, attr: &Attr) -> FsResult<()> {
        let (key, etag, has_marker, generation, opts) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            // a directory without marker gets a new one, with every attribute
            let new_marker = attr.kind == FileKind::Directory && !n.has_marker;
            let opts = match new_marker {
                true => n.meta.for_rewrite(attr, &n.name),
                false => n.meta.for_change(attr, n.meta_changed, None),
            };
            (
                n.key.clone(),
                n.etag.clone(),
                n.has_marker,
                n.meta_gen,
                opts,
            )
        };
        if ino == ROOT_INO && key.is_empty() {
            return Err(FsError::new(
                libc::EPERM,
                "the bucket root has no object to hold attributes",
            ));
        }
        let new_etag = if attr.kind == FileKind::Directory && !has_marker {
            self.client
                .put_object(&key, bytes::Bytes::new(), &opts)
                .await
                .map_err(|e| FsError::from_s3(&e, &key))?
                .etag
        } else {
            // a copy onto itself; above the copy limit a multipart self-copy
            Some(
                self.client
                    .copy_object_sized(
                        &key,
                        &key,
                        attr.size,
                        self.limits.base,
                        Some(&opts),
                        etag.as_deref(),
                    )
                    .await
                    .map_err(|e| FsError::from_s3(&e, &key))?,
            )
        };
        let mut t = self.inodes.lock();
        if let Some(n) = t.get_mut(ino) {
            n.meta.written(&opts);
            n.new_version(new_etag.clone());
            n.page_cache_etag = n.page_cache_etag.take().and(new_etag);
            if attr.kind == FileKind::Directory {
                n.has_marker = true;
            }
            if n.meta_gen == generation {
                n.meta_pending = false;
                n.meta_changed = Default::default();
            }
        }
        // forgotten by the kernel while the change waited: it can go now
        t.settle(ino);
        Ok(())
    }

    /// Start the task that writes deferred changes when they are due (once per mount).
    fn start_metadata_writer(&self) {
        if self.writeback.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(metadata_writer(self.me.clone(), self.writeback.clone()));
    }
}

/// Sleeps until the earliest change is due, writes the due ones, and so on; ends with the mount.
/// Holds the filesystem only while writing, so the mount's end is not held up by it.
async fn metadata_writer(me: Weak<Filesystem>, writeback: Arc<MetadataWriteback>) {
    loop {
        let Some(fs) = me.upgrade() else { return };
        let now = Instant::now();
        let ready = fs.writeback.due.lock().ready(now);
        writeback.writing.fetch_add(ready.len(), Ordering::AcqRel);
        let (fs_ref, wb) = (&fs, &writeback);
        futures::stream::iter(ready)
            .for_each_concurrent(METADATA_PARALLEL, |ino| async move {
                if let Err(e) = fs_ref.flush_metadata(ino).await {
                    log_failure("setattr", || fs_ref.path_of(ino), &e);
                }
                wb.writing.fetch_sub(1, Ordering::AcqRel);
            })
            .await;
        writeback.written.notify_waiters();
        // after the writes: a file still open for writing was put back for later
        let next = fs.writeback.due.lock().next();
        if next.is_some_and(|at| at <= Instant::now()) {
            continue;
        }
        drop(fs);
        wait_for_work(&writeback, next).await;
    }
}

async fn wait_for_work(writeback: &MetadataWriteback, next: Option<Instant>) {
    let notified = writeback.wake.notified();
    match next {
        Some(at) => {
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = notified => {}
            }
        }
        None => notified.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_looks_only_at_the_changes_due() {
        let mut due = Due::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        for ino in 10..10_010 {
            due.add(ino, later);
        }
        due.add(1, now);
        due.add(2, now);
        // an inode already waiting keeps its time; `set` moves it
        due.add(3, later);
        due.add(10, now);
        due.set(11, now);
        assert_eq!(due.ready(now), vec![1, 2, 11]);
        assert_eq!(
            due.visits.get(),
            3,
            "the 10,000 changes not due yet were walked"
        );
        assert_eq!(due.next(), Some(now));
        for ino in [1, 2, 11] {
            due.remove(ino);
        }
        assert_eq!(due.next(), Some(later));
        assert!(due.ready(now).is_empty());
        assert_eq!(due.inos().len(), 10_000);
    }
}
