//! Write-back (`--write-back`): a closed file is staged on disk and journaled, and its upload
//! follows in the background — oldest first, a few at once, retried with backoff while the
//! server cannot be reached, never over a change made elsewhere (the local version then goes up
//! next to it, as `NAME.conflict-UTC`; an in-place change is kept instead, see
//! `patch_stage.rs`). fsync and unmount wait for the bucket.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use parking_lot::Mutex;

use super::error::{FsError, FsResult};
use super::file_io::WriteHandle;
use super::upload::PendingRecord;
use super::upload_schedule::Schedule;
use super::Filesystem;

/// Uploads of closed files in flight at once.
const PARALLEL_UPLOADS: usize = 4;
/// The longest wait before a failed upload is tried again.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Closed files waiting for their upload, and what the uploader has seen.
#[derive(Default)]
pub(crate) struct WriteBackQueue {
    /// Directory markers a mkdir could not write (the server away), by inode: journaled as
    /// pending entries of no parts, written by the uploader.
    markers: Mutex<std::collections::HashMap<u64, (String, PendingRecord)>>,
    /// Which file goes next (see `upload_schedule.rs`).
    schedule: Mutex<Schedule>,
    wake: tokio::sync::Notify,
    /// Told after each upload (done or failed), for those waiting on the queue.
    changed: tokio::sync::Notify,
    started: AtomicBool,
    /// Uploads that failed (and were queued again).
    failures: AtomicU64,
    /// Conflicts: local versions uploaded under another name, or in-place changes kept
    /// (see `patch_stage.rs`).
    conflicts: AtomicU64,
    /// In-place changes whose source changed in the bucket (see `patch_stage.rs`): not
    /// tried again by the uploader; fsync, `sync DIR` and unmount still try (and fail).
    stuck: Mutex<std::collections::HashSet<u64>>,
    /// Since when uploads have been failing for want of a server (none: they work).
    unreachable_since: Mutex<Option<Instant>>,
    busy: AtomicUsize,
}

/// What the stats show of write-back.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteBackStats {
    pub files: u64,
    pub bytes: u64,
    pub oldest_secs: u64,
    pub failures: u64,
    pub conflicts: u64,
    pub unreachable_secs: u64,
}

impl WriteBackQueue {
    /// Queue `ino` (closed at `closed`), or make it due now if it is queued already;
    /// `at_once`: it does not wait for closes to pause.
    fn push(&self, ino: u64, closed: Instant, at_once: bool) {
        self.schedule.lock().push(ino, closed, at_once);
        self.wake.notify_one();
    }

    /// Still open (its close is under way): left queued, not tried until queued again.
    fn park(&self, ino: u64) {
        self.schedule.lock().park(ino, Instant::now());
    }

    /// The oldest files due now (not being uploaded), at most `n`.
    fn take_due(&self, n: usize, idle: Duration) -> Vec<u64> {
        self.schedule.lock().take(n, Instant::now(), idle)
    }

    /// The earliest time something queued is due.
    fn next_due(&self, idle: Duration) -> Option<Instant> {
        self.schedule.lock().next_due(idle)
    }

    fn done(&self, ino: u64) {
        self.schedule.lock().done(ino);
        self.stuck.lock().remove(&ino);
        *self.unreachable_since.lock() = None;
        self.changed.notify_waiters();
    }

    /// Failed: tried again after a wait doubling from `first` up to a minute.
    fn failed(&self, ino: u64, first: Duration, unreachable: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.schedule
            .lock()
            .failed(ino, Instant::now(), first, MAX_RETRY_WAIT);
        if unreachable {
            self.unreachable_since
                .lock()
                .get_or_insert_with(Instant::now);
        }
        self.changed.notify_waiters();
        self.wake.notify_one();
    }

    /// Out of the queue, not to be tried again by the uploader (see `stuck`).
    fn stick(&self, ino: u64) {
        self.schedule.lock().done(ino);
        self.stuck.lock().insert(ino);
        self.changed.notify_waiters();
    }

    pub(crate) fn count_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Dropped from the queue without an upload (unlinked, reopened for writing).
    fn forget(&self, ino: u64) {
        self.schedule.lock().forget(ino);
        self.stuck.lock().remove(&ino);
        self.changed.notify_waiters();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.schedule.lock().is_empty()
    }
}

impl Filesystem {
    /// Write-back: make the closing file durable here and queue its upload. `Ok(true)`: done
    /// (or nothing to send), the close may return; `Ok(false)`: this file cannot wait (an
    /// upload that streams already, an in-place change `PatchUpload::stage` cannot stage):
    /// commit it now.
    pub(crate) async fn stage_close(&self, w: &Arc<WriteHandle>) -> FsResult<bool> {
        if !self.config.write_back {
            return Ok(false);
        }
        let staged = self.stage_writer(w, false).await?;
        if staged {
            self.write_back_queue
                .push(w.ino(), Instant::now(), self.large(w.ino()));
            self.start_uploader();
        }
        Ok(staged || !self.writer_has_news(w).await)
    }

    /// `--write-back`: the marker of a new directory that could not be written (the server
    /// away) is journaled and written by the uploader when the server is back.
    pub(crate) fn defer_marker(&self, ino: u64, key: String, opts: &crate::s3::PutOptions) {
        let local = format!("{:016x}", rand::random::<u64>());
        let record = PendingRecord {
            key,
            size: 0,
            parts: 0,
            if_match: None,
            if_none_match: false,
            content_type: opts.content_type.clone(),
            user_metadata: opts.user_metadata.clone(),
            content_headers: opts.content_headers.clone(),
            closed_at: super::attr::epoch_secs(SystemTime::now()),
            patch: None,
        };
        if let Some(j) = &self.store.journal {
            j.pending(&local, &record);
        }
        tracing::info!(key = %record.key, "directory marker written when the server is back");
        self.write_back_queue
            .markers
            .lock()
            .insert(ino, (local, record));
        self.write_back_queue.push(ino, Instant::now(), false);
        self.start_uploader();
    }

    /// Larger than one part: its upload does not wait for closes to pause (it is long
    /// anyway, and a copy of large files has few closes to batch).
    fn large(&self, ino: u64) -> bool {
        self.inodes
            .lock()
            .get(ino)
            .is_some_and(|n| n.attr.size > self.limits.base)
    }

    /// Write a deferred directory marker; whether it was one.
    async fn upload_marker(&self, ino: u64) -> bool {
        let Some((local, record)) = self.write_back_queue.markers.lock().get(&ino).cloned() else {
            return false;
        };
        let body = bytes::Bytes::new();
        match self
            .client
            .put_object(&record.key, body, &record.options())
            .await
        {
            Ok(meta) => {
                if let Some(j) = &self.store.journal {
                    j.landed(&local, true);
                }
                self.write_back_queue.markers.lock().remove(&ino);
                if let Some(n) = self.inodes.lock().get_mut(ino) {
                    n.has_marker = true;
                    n.new_version(meta.etag);
                }
                self.write_back_queue.done(ino);
            }
            Err(e) => {
                tracing::debug!(key = %record.key, "directory marker still cannot be written: {e}");
                let unreachable = e.is_unreachable() || e.is_retryable();
                self.write_back_queue
                    .failed(ino, self.config.write_back_retry, unreachable);
            }
        }
        true
    }

    /// Queue a file whose pending upload a rename changed (it goes under its new name).
    pub(crate) fn requeue_pending(&self, ino: u64) {
        if self.config.write_back {
            self.write_back_queue
                .push(ino, Instant::now(), self.large(ino));
            self.start_uploader();
        }
    }

    /// Drop `ino` from the queue (its pending entry is over: unlinked, or rewritten).
    pub(crate) fn unqueue_pending(&self, ino: u64) {
        self.write_back_queue.forget(ino);
    }

    /// fsync of a directory (`sync DIR`): every file under it still waiting for its upload
    /// goes now; EIO (with the first reason) if one cannot get to the bucket.
    pub async fn sync_dir(&self, ino: u64) -> FsResult<()> {
        if !self.config.write_back {
            return Ok(());
        }
        let prefix = self.dir_key(ino)?;
        // and those an earlier run closed and did not upload
        self.land_recovered_under(&prefix).await?;
        let mut queued: Vec<u64> = self
            .write_back_queue
            .schedule
            .lock()
            .closed_times()
            .into_iter()
            .map(|(ino, _)| ino)
            .collect();
        // and the changes in place kept after a conflict: EIO, they cannot get there
        queued.extend(self.write_back_queue.stuck.lock().iter().copied());
        let under: Vec<u64> = {
            let t = self.inodes.lock();
            queued
                .into_iter()
                .filter(|i| t.get(*i).is_some_and(|n| n.key.starts_with(&prefix)))
                .collect()
        };
        let results: Vec<FsResult<()>> = futures::stream::iter(under)
            .map(|ino| self.upload_now(ino))
            .buffer_unordered(PARALLEL_UPLOADS * 4)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Upload `ino`'s waiting version now (unless open again for writing).
    async fn upload_now(&self, ino: u64) -> FsResult<()> {
        let Some((fh, w)) = self.pending_writer(ino) else {
            return Ok(());
        };
        match self.commit_closed(&w).await {
            // open again for writing
            Ok(false) => Ok(()),
            Ok(true) => {
                self.write_back_queue.done(ino);
                if let Some(fh) = fh {
                    self.release_kept(fh, &w);
                }
                Ok(())
            }
            Err(e) => Err(FsError::new(
                libc::EIO,
                format!(
                    "a file waiting for its upload cannot get there: {}",
                    e.reason
                ),
            )),
        }
    }

    /// Files whose upload waits, journaled (a later mount sends them), their bytes, and the
    /// files still open for writing with changes (not journaled: a close journals them).
    pub async fn journaled_pending(&self) -> (usize, u64, usize) {
        let journal = self.store.journal.clone();
        let pending = tokio::task::spawn_blocking(move || {
            journal.map(|j| j.unfinished_pending()).unwrap_or_default()
        })
        .await
        .unwrap_or_default();
        let bytes = pending.iter().map(|(_, r)| r.size).sum();
        let mut loose = 0;
        for w in self.handles.all_writers() {
            if w.is_open() && w.holds_news() {
                loose += 1;
            }
        }
        (pending.len(), bytes, loose)
    }

    /// Wait until no closed file waits for its upload, this mount's or one an earlier run
    /// left (or `limit` passed): whether so.
    pub async fn wait_uploads_landed(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.write_back_queue.changed.notified();
            let recovered = self.leftovers.changed();
            tokio::pin!(changed, recovered);
            changed.as_mut().enable();
            recovered.as_mut().enable();
            if self.write_back_queue.is_empty() && !self.leftovers.any_waiting() {
                return true;
            }
            let either = async {
                tokio::select! {
                    _ = changed => {}
                    _ = recovered => {}
                }
            };
            if tokio::time::timeout_at(deadline, either).await.is_err() {
                return false;
            }
        }
    }

    /// What the stats show of write-back.
    pub fn write_back_stats(&self) -> WriteBackStats {
        let q = &self.write_back_queue;
        let now = Instant::now();
        let queued: Vec<(u64, Instant)> = q.schedule.lock().closed_times();
        let stuck: Vec<u64> = q.stuck.lock().iter().copied().collect();
        let bytes = {
            let t = self.inodes.lock();
            queued
                .iter()
                .map(|(ino, _)| *ino)
                .chain(stuck.iter().copied())
                .filter_map(|ino| t.get(ino).map(|n| n.attr.size))
                .sum()
        };
        WriteBackStats {
            files: (queued.len() + stuck.len()) as u64,
            bytes,
            oldest_secs: queued
                .iter()
                .map(|(_, c)| now.duration_since(*c).as_secs())
                .max()
                .unwrap_or(0),
            failures: q.failures.load(Ordering::Relaxed),
            conflicts: q.conflicts.load(Ordering::Relaxed),
            unreachable_secs: q
                .unreachable_since
                .lock()
                .map_or(0, |t| now.duration_since(t).as_secs()),
        }
    }

    fn start_uploader(&self) {
        if self.write_back_queue.started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(uploader(self.me.clone(), self.write_back_queue.clone()));
    }

    /// Upload one closed file: its pending entry lands, its kept writer goes (the file is the
    /// bucket's again). A change made elsewhere meanwhile keeps both: the local version goes
    /// up as `NAME.conflict-UTC` beside it.
    async fn upload_pending(&self, ino: u64) {
        if self.upload_marker(ino).await {
            return;
        }
        let Some((fh, w)) = self.pending_writer(ino) else {
            // gone (unlinked, or uploaded by an fsync or a later close)
            self.write_back_queue.done(ino);
            return;
        };
        let mut result = match self.commit_closed(&w).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                // its close is under way (or it was opened again): its release queues it again
                self.write_back_queue.park(ino);
                if !w.is_open() {
                    // released meanwhile: its queueing may have come before the parking
                    self.write_back_queue
                        .push(ino, Instant::now(), self.large(ino));
                }
                return;
            }
            Err(e) => Err(e),
        };
        if matches!(&result, Err(e) if is_conflict(e)) {
            if let Some(dir) = w.pending_patch_dir().await {
                // an in-place change: kept, not sent beside it (see patch_stage.rs)
                let key = self.inodes.lock().get(ino).map(|n| n.key.clone());
                self.keep_patch_conflict(&key.unwrap_or_default(), &dir);
                self.write_back_queue.stick(ino);
                return;
            }
            result = self.upload_as_conflict(ino, &w).await.map(|_| ());
        }
        match result {
            Ok(()) => {
                self.write_back_queue.done(ino);
                if let Some(fh) = fh {
                    self.release_kept(fh, &w);
                }
                tracing::debug!(ino, "uploaded after close (write-back)");
            }
            Err(e) => {
                let unreachable =
                    e.s3.as_ref()
                        .is_none_or(|s| s.status.is_none_or(|c| c >= 500));
                tracing::warn!(
                    path = %self.path_of(ino),
                    "upload after close failed, tried again later: {}",
                    e.reason
                );
                self.write_back_queue
                    .failed(ino, self.config.write_back_retry, unreachable);
            }
        }
    }

    /// The object changed in the bucket since the file was opened: the local version goes to
    /// a new name beside it (`NAME.conflict-20261202T061500Z`), and the mount shows both.
    /// The new key.
    pub(crate) async fn upload_as_conflict(
        &self,
        ino: u64,
        w: &Arc<WriteHandle>,
    ) -> FsResult<String> {
        let (parent, name, key) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            (n.parent, n.name.clone(), n.key.clone())
        };
        let suffix = conflict_suffix();
        let new_name = format!("{name}{suffix}");
        let new_key = format!("{key}{suffix}");
        tracing::warn!(
            key = %key,
            conflict = %new_key,
            "the object changed in the bucket since this mount's version was opened (another \
             client wrote it): both are kept, this mount's as {new_name}"
        );
        self.write_back_queue.count_conflict();
        self.retarget_writer(ino, new_key.clone()).await?;
        w.expect_absent().await;
        self.commit(w).await?;
        {
            let mut t = self.inodes.lock();
            t.relink(ino, parent, &new_name, new_key.clone());
        }
        self.update_snapshot(parent, &name, None);
        self.invalidate_entry(parent, &name);
        Ok(new_key)
    }
}

/// What a local version kept beside an object changed elsewhere gets after its name:
/// `.conflict-<UTC time>` (`.conflict-20261202T061500Z`).
pub(crate) fn conflict_suffix() -> String {
    format!(
        ".conflict-{}",
        crate::s3::time::amz_date(SystemTime::now()).0
    )
}

/// The upload was refused because the object changed in the bucket (412).
pub(crate) fn is_conflict(e: &FsError) -> bool {
    e.s3.as_ref().and_then(|s| s.status) == Some(412)
}

/// Sends closed files up as they come, a few at once, until the mount ends.
async fn uploader(me: Weak<Filesystem>, queue: Arc<WriteBackQueue>) {
    loop {
        let Some(fs) = me.upgrade() else { return };
        let free =
            PARALLEL_UPLOADS.saturating_sub(fs.write_back_queue.busy.load(Ordering::Acquire));
        let idle = fs.config.write_back_idle;
        for ino in fs.write_back_queue.take_due(free, idle) {
            let fs = fs.clone();
            fs.write_back_queue.busy.fetch_add(1, Ordering::AcqRel);
            tokio::spawn(async move {
                fs.upload_pending(ino).await;
                fs.write_back_queue.busy.fetch_sub(1, Ordering::AcqRel);
                fs.write_back_queue.wake.notify_one();
            });
        }
        // with every slot busy, a finishing upload wakes the loop
        let full = fs.write_back_queue.busy.load(Ordering::Acquire) >= PARALLEL_UPLOADS;
        let next = if full {
            None
        } else {
            fs.write_back_queue.next_due(idle)
        };
        drop(fs);
        let wake = queue.wake.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}
