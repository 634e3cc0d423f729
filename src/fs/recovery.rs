//! At mount: multipart uploads a previous bucketfs on this machine started and never finished
//! (it crashed, or was killed) are resumed from `--cache-dir` part files when the file had been
//! closed and every part is on disk, and aborted otherwise. Uploads under the prefix that the
//! journal does not know are left alone (another client may be writing them).

use std::sync::Arc;

use super::journal::{JournalEntry, UploadJournal};
use super::recovered::{Fate, Recovered};
use super::upload::PendingRecord;
use super::Filesystem;
use crate::s3::{Payload, PutOptions, S3Error};

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub resumed: Vec<String>,
    pub aborted: Vec<String>,
    /// Unfinished uploads under the prefix that this machine did not start.
    pub foreign: usize,
    /// Directory renames an earlier run left halfway, finished now (the old prefixes).
    pub moved: Vec<String>,
    /// Zeros objects an earlier run left (it stopped during an upload), deleted now.
    pub zeros_deleted: Vec<String>,
}

/// What an earlier run left unfinished: its journal entries (read before this mount starts
/// uploads of its own, so that recovery never takes one of them for a leftover) until recovery
/// takes them, the keys a commit must not touch until recovery is done with them, and the
/// files it closed that the mount shows until they land (see `recovered.rs`).
pub(crate) struct Leftovers {
    entries: parking_lot::Mutex<Option<Vec<JournalEntry>>>,
    /// Write-back: files closed and not uploaded, oldest first.
    pending: Vec<Arc<Recovered>>,
    /// Recovery has taken `pending` to send.
    pending_taken: std::sync::atomic::AtomicBool,
    /// Of those, the ones the mount shows, by inode, until they land or are unlinked.
    shown: parking_lot::Mutex<std::collections::HashMap<u64, Arc<Recovered>>>,
    /// Directory renames begun and not done, as (old prefix, new prefix).
    moves: parking_lot::Mutex<Vec<(String, String)>>,
    /// Zeros objects created and not deleted (see `zero_parts.rs`), by key.
    zeros: parking_lot::Mutex<Vec<String>>,
    keys: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Keys of pending files the mount does not show (changes in place: see
    /// `show_recovered`) while recovery has yet to try them: their lookups wait for that.
    hidden: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// `hidden` is not empty (a lookup's test without a lock).
    hiding: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl Leftovers {
    pub(crate) fn new(
        entries: Vec<JournalEntry>,
        moves: Vec<(String, String)>,
        pending: Vec<(String, PendingRecord)>,
        zeros: Vec<String>,
    ) -> Leftovers {
        let keys = entries
            .iter()
            .map(|e| e.key.clone())
            .chain(pending.iter().map(|(_, r)| r.key.clone()))
            .collect();
        Leftovers {
            entries: parking_lot::Mutex::new(Some(entries)),
            pending: pending
                .into_iter()
                .map(|(local, record)| Recovered::new(local, record))
                .collect(),
            pending_taken: Default::default(),
            shown: Default::default(),
            moves: parking_lot::Mutex::new(moves),
            zeros: parking_lot::Mutex::new(zeros),
            keys: parking_lot::Mutex::new(keys),
            hidden: Default::default(),
            hiding: Default::default(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The unfinished directory renames, for recovery (once).
    fn take_moves(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.moves.lock())
    }

    /// The zeros objects an earlier run left, for recovery (once).
    fn take_zeros(&self) -> Vec<String> {
        std::mem::take(&mut *self.zeros.lock())
    }

    /// The entries, for recovery (once; later calls get none).
    fn take_entries(&self) -> Vec<JournalEntry> {
        self.entries.lock().take().unwrap_or_default()
    }

    /// The pending files, for recovery to send (once; later calls get none).
    fn take_pending(&self) -> Vec<Arc<Recovered>> {
        use std::sync::atomic::Ordering;
        match self.pending_taken.swap(true, Ordering::AcqRel) {
            true => vec![],
            false => self.pending.clone(),
        }
    }

    /// The pending files an earlier run left, oldest first.
    pub(crate) fn pending_entries(&self) -> &[Arc<Recovered>] {
        &self.pending
    }

    pub(crate) fn show(&self, ino: u64, r: Arc<Recovered>) {
        self.shown.lock().insert(ino, r);
    }

    /// The recovered file `ino` shows, while it waits.
    pub(crate) fn shown(&self, ino: u64) -> Option<Arc<Recovered>> {
        self.shown.lock().get(&ino).cloned()
    }

    /// The inodes of the recovered files waiting under `prefix`.
    pub(crate) fn shown_under(&self, prefix: &str) -> Vec<u64> {
        let shown = self.shown.lock();
        shown
            .iter()
            .filter(|(_, r)| r.record.key.starts_with(prefix))
            .map(|(ino, _)| *ino)
            .collect()
    }

    /// `ino` stops showing a recovered file (it landed, or was unlinked).
    pub(crate) fn unshow(&self, ino: u64) -> Option<Arc<Recovered>> {
        let r = self.shown.lock().remove(&ino);
        self.changed.notify_waiters();
        r
    }

    /// Whether a pending file an earlier run left is still waiting (not landed, not
    /// withdrawn; one being sent counts as waiting).
    pub(crate) fn any_waiting(&self) -> bool {
        self.pending
            .iter()
            .any(|r| r.fate.try_lock().map_or(true, |f| *f == Fate::Waiting))
    }

    /// Told when a key is released or a recovered file stops showing.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    fn release(&self, key: &str) {
        self.keys.lock().remove(key);
        self.changed.notify_waiters();
    }

    /// Recovery tried to send `r`: its key is no longer hidden if `r` is its newest entry.
    fn tried(&self, r: &Recovered) {
        if !self.hiding() {
            return;
        }
        let key = &r.record.key;
        let newest = self.pending.iter().rev().find(|x| x.record.key == *key);
        if newest.is_some_and(|x| std::ptr::eq(&**x, r)) {
            self.hidden.lock().remove(key);
            self.changed.notify_waiters();
        }
    }

    fn release_all(&self) {
        self.keys.lock().clear();
        self.hidden.lock().clear();
        self.hiding
            .store(false, std::sync::atomic::Ordering::Release);
        self.changed.notify_waiters();
    }

    /// `key` holds a pending file the mount does not show, which recovery has yet to try.
    pub(crate) fn hide(&self, key: &str) {
        self.hidden.lock().insert(key.to_string());
        self.hiding
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Some key is hidden (see `hide`): lookups check theirs.
    pub(crate) fn hiding(&self) -> bool {
        self.hiding.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether `key` is hidden (see `hide`).
    pub(crate) fn hides(&self, key: &str) -> bool {
        self.hiding() && self.hidden.lock().contains(key)
    }

    /// Wait until recovery has tried to send the pending file under `key` that the mount does
    /// not show: whether there was one. Until then the bucket holds the version before the
    /// change; after `longest` that version is shown anyway.
    pub(crate) async fn wait_hidden(&self, key: &str, longest: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + longest;
        let mut waited = false;
        loop {
            let changed = self.changed.notified();
            if !self.hides(key) {
                return waited;
            }
            waited = true;
            tracing::debug!(key, "lookup waits for the recovery of a change in place");
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                tracing::warn!(
                    key,
                    "a change in place made before bucketfs stopped is taking long to upload: \
                     the bucket's version before it is shown meanwhile"
                );
                return true;
            }
        }
    }

    /// Wait until recovery is done with `key` (at once when it has nothing of it). Whether
    /// it had something of it and is done with it (then what is in the bucket now may be
    /// recovery's doing); false after `longest` (`FsConfig::recovery_wait`) without recovery
    /// being done.
    pub(crate) async fn wait(&self, key: &str, longest: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + longest;
        let mut waited = false;
        loop {
            let changed = self.changed.notified();
            if !self.keys.lock().contains(key) {
                return waited;
            }
            waited = true;
            let now = std::time::Instant::now();
            if now >= deadline {
                // what is in the bucket is not recovery's doing (yet): the commit keeps its
                // conditions, so it never replaces what another client put there meanwhile
                tracing::warn!(
                    key,
                    "recovery of an earlier upload of this key is taking long; writing anyway, \
                     on the conditions of a write without it"
                );
                return false;
            }
            tracing::debug!(
                key,
                "waiting for the recovery of an earlier upload of this key"
            );
            let _ = tokio::time::timeout(deadline - now, changed).await;
        }
    }
}

impl Filesystem {
    /// Resume or abort what the upload journal says was left unfinished.
    pub async fn recover_uploads(&self) -> RecoveryReport {
        let moved = self.finish_moves().await;
        let mut report = self.recover().await;
        report.moved = moved;
        self.leftovers.release_all();
        report
    }

    async fn recover(&self) -> RecoveryReport {
        let mut report = RecoveryReport::default();
        let Some(journal) = self.store.journal.clone() else {
            return report;
        };
        let entries = self.leftovers.take_entries();
        report.zeros_deleted = super::zero_parts::delete_leftovers(
            &self.client,
            &journal,
            self.leftovers.take_zeros(),
        )
        .await;
        let on_server = match self
            .client
            .list_multipart_uploads(&self.config.prefix)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                if !entries.is_empty() {
                    tracing::warn!(
                        "cannot list multipart uploads ({e}); {} unfinished upload(s) from an \
                         earlier run stay in the journal",
                        entries.len()
                    );
                }
                let pending = self.leftovers.take_pending();
                self.recover_pending(&journal, pending, &mut report).await;
                return report;
            }
        };
        let pending = self.leftovers.take_pending();
        for e in &entries {
            // an upload of a pending file (write-back) begun and cut short: its files stay
            let keep_files = pending.iter().any(|r| r.local == e.local_id);
            self.recover_one(&journal, e, &on_server, keep_files, &mut report)
                .await;
            self.leftovers.release(&e.key);
        }
        self.recover_pending(&journal, pending, &mut report).await;
        report.foreign = on_server
            .iter()
            .filter(|u| !entries.iter().any(|e| e.upload_id == u.upload_id))
            .count();
        if report.foreign > 0 {
            tracing::info!(
                "{} unfinished multipart upload(s) under the prefix were not started by bucketfs \
                 on this machine; `bucketfs cleanup` lists and aborts stale ones",
                report.foreign
            );
        }
        if journal.is_done() {
            journal.reset();
        }
        report
    }

    /// Finish the directory renames an earlier run began and did not end: every object still
    /// under the old prefix that has no copy under the new one is copied, then the old ones
    /// are deleted. A failure leaves the rename in the journal for the next mount.
    async fn finish_moves(&self) -> Vec<String> {
        let Some(journal) = self.store.journal.clone() else {
            return vec![];
        };
        let mut done = Vec::new();
        for (from, to) in self.leftovers.take_moves() {
            match self.finish_move(&from, &to).await {
                Ok(n) => {
                    tracing::info!(
                        from = %from,
                        to = %to,
                        "finished a directory rename an earlier bucketfs left halfway ({n} objects moved)"
                    );
                    journal.move_done(&from, &to);
                    done.push(from);
                }
                Err(e) => tracing::warn!(
                    from = %from,
                    to = %to,
                    "a directory rename an earlier bucketfs left halfway is still unfinished: {e}"
                ),
            }
        }
        done
    }

    async fn finish_move(&self, from: &str, to: &str) -> Result<usize, crate::s3::S3Error> {
        let old = self.client.list_all(from).await?;
        let there: std::collections::HashSet<String> = self
            .client
            .list_all(to)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        for o in &old {
            let dst = format!("{to}{}", &o.key[from.len()..]);
            if !there.contains(&dst) {
                self.client
                    .copy_object_sized(&o.key, &dst, o.size, self.limits.base, None, None)
                    .await?;
            }
        }
        let keys: Vec<String> = old.into_iter().map(|o| o.key).collect();
        for batch in keys.chunks(1000) {
            if let Some((_, e)) = self.client.delete_objects(batch).await?.into_iter().next() {
                return Err(e);
            }
        }
        Ok(keys.len())
    }

    /// Resume or abort one upload the journal has.
    async fn recover_one(
        &self,
        journal: &super::journal::UploadJournal,
        e: &JournalEntry,
        on_server: &[crate::s3::MultipartUploadInfo],
        keep_files: bool,
        report: &mut RecoveryReport,
    ) {
        let finished = |journal: &UploadJournal| match keep_files {
            true => journal.ended(&e.upload_id),
            false => journal.finished(&e.upload_id, &e.local_id),
        };
        {
            if !on_server.iter().any(|u| u.upload_id == e.upload_id) {
                // completed or aborted after all
                finished(journal);
                return;
            }
            if keep_files {
                // the upload of a write-back file, cut short (its part files stay): the file's
                // pending entry is what goes up (the version its last close acknowledged, with
                // that close's condition), from those files, after this; completing this
                // upload as well would send the file twice, and take its files from under it
                match self
                    .client
                    .abort_multipart_upload(&e.key, &e.upload_id)
                    .await
                {
                    Ok(()) => finished(journal),
                    Err(err) => tracing::warn!(key = %e.key, "could not abort upload: {err}"),
                }
                return;
            }
            match self.resume(journal, e).await {
                Resumed::Landed => {
                    tracing::info!(key = %e.key, "resumed the upload of a file closed before bucketfs stopped");
                    journal.finished(&e.upload_id, &e.local_id);
                    report.resumed.push(e.key.clone());
                }
                Resumed::Beside(key) => {
                    journal.finished(&e.upload_id, &e.local_id);
                    report.resumed.push(key);
                }
                Resumed::Failed => {
                    // the file was closed and every part is on disk: keep them for the next
                    // mount rather than give up a closed file's data over a failed request
                    tracing::warn!(
                        key = %e.key,
                        "could not resume the upload of a file closed before bucketfs stopped; \
                         its data stays in the staging area for the next mount"
                    );
                }
                Resumed::NotClosed => {
                    match self
                        .client
                        .abort_multipart_upload(&e.key, &e.upload_id)
                        .await
                    {
                        Ok(()) => {
                            tracing::warn!(
                                key = %e.key,
                                "aborted an unfinished upload left by an earlier bucketfs \
                                 (the file was not completely written)"
                            );
                            finished(journal);
                            report.aborted.push(e.key.clone());
                        }
                        Err(err) => tracing::warn!(key = %e.key, "could not abort upload: {err}"),
                    }
                }
            }
        }
    }

    /// Write-back: files closed before an earlier bucketfs stopped, whose uploads it had not
    /// finished, go up now from their part files (oldest first), each conditional on what its
    /// close expected; a change made elsewhere meanwhile keeps both (`NAME.conflict-UTC`).
    /// One that cannot go now stays journaled for the next mount (and shown meanwhile).
    async fn recover_pending(
        &self,
        journal: &UploadJournal,
        pending: Vec<Arc<Recovered>>,
        report: &mut RecoveryReport,
    ) {
        if pending.is_empty() {
            return;
        }
        let bytes: u64 = pending.iter().map(|r| r.record.size).sum();
        tracing::info!(
            "resuming {} uploads, {bytes} bytes, of files closed before bucketfs stopped",
            pending.len()
        );
        let mut left = Vec::new();
        let mut away = false;
        for r in pending {
            let key = r.record.key.clone();
            if away {
                // the server cannot be reached: the rest waits for the retries
                self.leftovers.tried(&r);
                left.push(r);
                self.leftovers.release(&key);
                continue;
            }
            match self.send_recovered(journal, &r).await {
                Ok(Some(landed_at)) => report.resumed.push(landed_at),
                // sent already by a change of the file, or unlinked
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        key = %key,
                        "could not upload a file closed before bucketfs stopped ({e}); tried \
                         again later (it stays in the staging area, also for the next mount)"
                    );
                    away = e.is_unreachable() || e.is_retryable();
                    self.leftovers.tried(&r);
                    self.leftovers.release(&key);
                    left.push(r);
                    continue;
                }
            }
            self.leftovers.tried(&r);
            self.leftovers.release(&key);
        }
        if !left.is_empty() {
            tokio::spawn(retry_pending(
                self.me.clone(),
                left,
                self.config.write_back_retry,
            ));
        }
    }

    /// Send a pending file an earlier run left, unless it landed or was unlinked already
    /// (`None`); the key it went to. From then on the mount shows the bucket's object.
    pub(crate) async fn send_recovered(
        &self,
        journal: &UploadJournal,
        r: &Recovered,
    ) -> Result<Option<String>, S3Error> {
        let mut fate = r.fate.lock().await;
        if *fate != Fate::Waiting {
            return Ok(None);
        }
        if let Some(n) = Self::missing_part(journal, r) {
            // nothing can send it, ever: the mount shows the bucket's object rather than fail
            // every open of the file (and retry) for good
            tracing::error!(
                key = %r.record.key,
                "a file closed before bucketfs stopped cannot be uploaded: part {n} of its \
                 staged copy is missing from the staging area (removed outside bucketfs?); its \
                 journal entry is dropped, and the mount shows what the bucket holds"
            );
            journal.landed(&r.local, true);
            *fate = Fate::Withdrawn;
            drop(fate);
            self.unshow_recovered(r, &r.record.key);
            return Ok(None);
        }
        let key = match self.send_pending(journal, &r.local, &r.record).await {
            // a change in place of a version that is gone: kept (see patch_stage.rs)
            Err(e) if e.is_precondition_failed() && r.record.patch.is_some() => {
                self.keep_patch_conflict(&r.record.key, &journal.parts_dir(&r.local));
                *fate = Fate::Conflict;
                return Ok(None);
            }
            sent => sent?,
        };
        journal.landed(&r.local, true);
        *fate = Fate::Landed;
        drop(fate);
        self.unshow_recovered(r, &key);
        Ok(Some(key))
    }

    /// The first part file of a pending entry (not a change in place, which has one staging
    /// file of its own) that is not in the staging area.
    fn missing_part(journal: &UploadJournal, r: &Recovered) -> Option<u32> {
        if r.record.patch.is_some() {
            return None;
        }
        let paths: Vec<_> = (1..=r.record.parts)
            .map(|n| journal.part_path(&r.local, n))
            .collect();
        super::blocking::blocking(move || {
            (1..).zip(paths).find_map(|(n, p)| {
                matches!(std::fs::symlink_metadata(&p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                    .then_some(n)
            })
        })
    }

    /// Upload a pending file; the key it went to.
    async fn send_pending(
        &self,
        journal: &UploadJournal,
        local: &str,
        record: &PendingRecord,
    ) -> Result<String, S3Error> {
        if let Some(plan) = &record.patch {
            return self
                .send_staged_patch(journal, local, record, plan)
                .await
                .map(|()| record.key.clone());
        }
        let opts = record.options();
        match self
            .put_parts(journal, local, record.parts, &record.key, &opts)
            .await
        {
            // it landed before the earlier bucketfs could journal so
            Err(e)
                if e.is_precondition_failed()
                    && self.holds_already(journal, local, record).await =>
            {
                Ok(record.key.clone())
            }
            Err(e) if e.is_precondition_failed() => {
                let key = format!("{}{}", record.key, super::write_back::conflict_suffix());
                tracing::warn!(
                    key = %record.key,
                    conflict = %key,
                    "the object changed in the bucket while this file waited for its upload: \
                     both are kept, the waiting version as {key}"
                );
                let opts = PutOptions {
                    if_match: None,
                    if_none_match_any: true,
                    ..opts
                };
                self.put_parts(journal, local, record.parts, &key, &opts)
                    .await?;
                Ok(key)
            }
            r => r.map(|()| record.key.clone()),
        }
    }

    /// Whether the bucket holds exactly the pending file already (its upload landed just
    /// before the earlier daemon stopped): same size and the ETag its parts give.
    async fn holds_already(
        &self,
        journal: &UploadJournal,
        local: &str,
        record: &PendingRecord,
    ) -> bool {
        let Ok(meta) = self.client.head_object(&record.key).await else {
            return false;
        };
        let Some(etag) = meta.etag.filter(|_| meta.size == record.size) else {
            return false;
        };
        let paths: Vec<_> = (1..=record.parts.max(1))
            .map(|n| journal.part_path(local, n))
            .collect();
        let multipart = record.parts > 1;
        let mine = super::blocking::blocking(move || local_etag(&paths, multipart));
        let profile = self.client.profile();
        mine.is_some_and(|m| profile.etags_equal(etag.trim_matches('"'), &m))
    }

    /// One PutObject of part 1, or a multipart upload of every part file.
    async fn put_parts(
        &self,
        journal: &UploadJournal,
        local: &str,
        parts: u32,
        key: &str,
        opts: &PutOptions,
    ) -> Result<(), S3Error> {
        let part = |n: u32| {
            let path = journal.part_path(local, n);
            let len = std::fs::metadata(&path).map(|m| m.len());
            (path, len)
        };
        if parts == 0 {
            // a directory marker
            self.client
                .put_object(key, Payload::default(), opts)
                .await?;
            return Ok(());
        }
        if parts == 1 {
            let (path, len) = part(1);
            let len = len.map_err(|e| S3Error::Config(format!("staged file: {e}")))?;
            self.client
                .put_object(key, Payload::file(&path, len), opts)
                .await?;
            return Ok(());
        }
        let create = PutOptions {
            if_match: None,
            if_none_match_any: false,
            ..opts.clone()
        };
        let upload_id = self.client.create_multipart_upload(key, &create).await?;
        let mut sent_parts = Vec::new();
        let mut result = Ok(());
        for n in 1..=parts {
            let (path, len) = part(n);
            let sent = match len {
                Ok(len) => {
                    self.client
                        .upload_part(key, &upload_id, n, Payload::file(&path, len))
                        .await
                }
                Err(e) => Err(S3Error::Config(format!("staged part {n}: {e}"))),
            };
            match sent {
                Ok(p) => sent_parts.push(p),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            let completion = PutOptions {
                if_match: opts.if_match.clone(),
                if_none_match_any: opts.if_none_match_any,
                ..PutOptions::default()
            };
            result = self
                .client
                .complete_multipart_upload(key, &upload_id, &sent_parts, &completion)
                .await
                .map(|_| ());
        }
        if result.is_err() {
            let _ = self.client.abort_multipart_upload(key, &upload_id).await;
        }
        result
    }

    /// Upload every part from its file and complete, on the condition the close's completion
    /// carried. When the object changed in the bucket since the file was opened (the close
    /// was refused with ESTALE, or another client wrote the key after the crash), nothing is
    /// overwritten: the closed file goes next to it (`NAME.conflict-UTC`).
    async fn resume(&self, journal: &UploadJournal, e: &JournalEntry) -> Resumed {
        let Some(n) = e.closed_parts else {
            return Resumed::NotClosed;
        };
        let mut parts = Vec::new();
        for i in 1..=n {
            let path = journal.part_path(&e.local_id, i);
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                return Resumed::NotClosed;
            };
            // sent from its file a chunk at a time
            let body = crate::s3::Payload::file(&path, meta.len());
            match self
                .client
                .upload_part_as(&e.key, &e.upload_id, i, body, e.crc32c)
                .await
            {
                Ok(part) => parts.push(part),
                Err(err) => {
                    tracing::warn!(key = %e.key, "resume: {err}");
                    return Resumed::Failed;
                }
            }
        }
        let opts = e.condition.options();
        match self
            .client
            .complete_multipart_upload(&e.key, &e.upload_id, &parts, &opts)
            .await
        {
            Ok(_) => Resumed::Landed,
            Err(err) if err.is_precondition_failed() => self.resume_beside(journal, e).await,
            Err(err) => {
                tracing::warn!(key = %e.key, "resume: {err}");
                Resumed::Failed
            }
        }
    }

    /// A closed file whose key changed in the bucket: uploaded as `NAME.conflict-UTC`, and
    /// its upload under the key is aborted.
    async fn resume_beside(&self, journal: &UploadJournal, e: &JournalEntry) -> Resumed {
        let key = format!("{}{}", e.key, super::write_back::conflict_suffix());
        let opts = PutOptions {
            if_none_match_any: true,
            ..PutOptions::default()
        };
        let parts = e.closed_parts.unwrap_or(0);
        if let Err(err) = self
            .put_parts(journal, &e.local_id, parts, &key, &opts)
            .await
        {
            tracing::warn!(key = %e.key, "resume: the object changed in the bucket, and keeping this file next to it failed: {err}");
            return Resumed::Failed;
        }
        tracing::warn!(
            key = %e.key,
            conflict = %key,
            "the object changed in the bucket after this file was opened (another client wrote \
             it): not overwritten; the file closed before bucketfs stopped is kept as {key}"
        );
        if let Err(err) = self
            .client
            .abort_multipart_upload(&e.key, &e.upload_id)
            .await
        {
            tracing::warn!(key = %e.key, "could not abort upload: {err}");
        }
        Resumed::Beside(key)
    }
}

/// What resuming a journaled upload did.
enum Resumed {
    /// Completed under its key.
    Landed,
    /// The key changed in the bucket meanwhile: kept under this name instead.
    Beside(String),
    /// A request failed: tried again at the next mount.
    Failed,
    /// The file was not closed, or its parts are not all on disk: it is aborted.
    NotClosed,
}

/// Files an earlier bucketfs left pending that could not go at mount (the server away): tried
/// again with doubling waits (up to a minute) until they are in the bucket or the mount ends.
async fn retry_pending(
    me: std::sync::Weak<Filesystem>,
    mut left: Vec<Arc<Recovered>>,
    first: std::time::Duration,
) {
    let mut wait = first;
    while !left.is_empty() {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(60));
        let Some(fs) = me.upgrade() else { return };
        let Some(journal) = fs.store.journal.clone() else {
            return;
        };
        let mut still = Vec::new();
        let mut away = false;
        for r in left {
            if away {
                still.push(r);
                continue;
            }
            match fs.send_recovered(&journal, &r).await {
                Ok(Some(key)) => {
                    tracing::info!(key = %key, "uploaded a file closed before bucketfs stopped");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(key = %r.record.key, "still cannot upload: {e}");
                    away = e.is_unreachable() || e.is_retryable();
                    still.push(r);
                }
            }
        }
        left = still;
    }
}

/// The ETag S3 gives these part files uploaded: the MD5 of one, or for a multipart upload the
/// MD5 of the parts' MD5s then `-N`. `None` when a file cannot be read.
fn local_etag(paths: &[std::path::PathBuf], multipart: bool) -> Option<String> {
    use md5::{Digest as _, Md5};
    use std::io::Read as _;
    let mut digests = Vec::new();
    for p in paths {
        let mut f = std::fs::File::open(p).ok()?;
        let mut h = Md5::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        digests.push(h.finalize().to_vec());
    }
    if !multipart {
        return digests.first().map(hex::encode);
    }
    Some(format!(
        "{}-{}",
        hex::encode(Md5::digest(digests.concat())),
        digests.len()
    ))
}
