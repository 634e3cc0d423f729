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

use std::collections::HashMap;
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
    due: Mutex<HashMap<u64, Instant>>,
    wake: tokio::sync::Notify,
    started: AtomicBool,
    /// Changes taken from `due` and being written by the writer task.
    writing: AtomicUsize,
    /// Told after each round of the writer task.
    written: tokio::sync::Notify,
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
            due.entry(ino)
                .or_insert_with(|| Instant::now() + self.config.metadata_write_delay);
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
        self.writeback.due.lock().remove(&ino);
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
                        .insert(ino, Instant::now() + self.config.metadata_write_delay);
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
            let due: Vec<u64> = self.writeback.due.lock().keys().copied().collect();
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
        let inos: Vec<u64> = self.writeback.due.lock().keys().copied().collect();
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
            n.etag = new_etag.clone();
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
        let ready: Vec<u64> = fs
            .writeback
            .due
            .lock()
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(ino, _)| *ino)
            .collect();
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
        let next = fs.writeback.due.lock().values().min().copied();
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
