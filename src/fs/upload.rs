//! The part cache and uploader of one file being written: bytes collect into a part; each full
//! part goes out with UploadPart while the application keeps writing; finishing sends the rest
//! and completes the upload (or one PutObject for a file smaller than a part).

use std::sync::Arc;

use futures::{FutureExt as _, StreamExt as _};
use tokio::task::JoinHandle;

use super::blocking::blocking;
use super::error::{FsError, FsResult};
use super::journal::UploadJournal;
use super::memory::{MemoryBudget, Reservation, WRITER_PATIENCE};
use super::part_buffer::PartBuffer;
use super::part_crc::FileCrcs;
use super::part_files::PartFileWrites;
use super::staging::{Charge, StagingBudget, STAGING_PATIENCE};
use super::zero_parts::{WrittenParts, ZeroCopies};
use crate::buffer_pool::BufferPool;
use crate::s3::payload::FILE_BODY_MEMORY;
use crate::s3::{CompletedPart, Payload, PutOptions, S3Client};

pub use super::part_sizes::{part_holding, part_size_for, PartLimits};
pub use super::pending::PendingRecord;

/// The budget is reserved in steps of this size as a part buffer grows.
const RESERVE_STEP: u64 = 1024 * 1024;
/// Parts sent at once when an upload's kept parts go together (at its finish).
const PARALLEL_PART_SENDS: usize = 8;
/// Write-back: parts sent at once while the file is still being written (the writer comes
/// first; the finish sends the rest [`PARALLEL_PART_SENDS`] at a time). Measured with 1, 2, 4
/// and 8 (docs/PERFORMANCE.md): 4 lands a 1 GiB file as soon as the durable mode does.
const STREAMING_SENDS: usize = 4;
/// A part whose UploadPart failed after the client's retries: kept to be sent again when the
/// file is finished (at its close or fsync, or a later one).
struct FailedPart {
    part_number: u32,
    body: Payload,
    error: FsError,
}

struct Multipart {
    upload_id: String,
    next_part: u32,
    /// File offset where the next part starts.
    next_offset: u64,
    /// Parts being sent, by part number.
    in_flight: Vec<(u32, JoinHandle<Result<CompletedPart, FailedPart>>)>,
    done: Vec<CompletedPart>,
    failed: Vec<FailedPart>,
    /// Parts written to again after they were queued: sent again (from their part files)
    /// before the upload completes.
    rewritten: std::collections::BTreeSet<u32>,
    /// Write-back: parts kept in their files when they were filled, never sent yet (also in
    /// `rewritten`, which alone says whether they still go): sent as sends free up.
    unsent: std::collections::BTreeSet<u32>,
    /// Parts sent whose files were dropped to stay within `--cache-size`: they cannot be
    /// read back or written again before the upload completes.
    evicted: std::collections::BTreeSet<u32>,
    /// Zero parts queued (see `zero_parts.rs`), with their lengths: not sent while the file
    /// streams; those not in `done` are copied from a zeros object (or sent) at completion.
    /// A write into one makes it a part like any other (then in `rewritten`, not here).
    zeros: std::collections::BTreeMap<u32, u64>,
    /// The CRC32Cs of parts in their files, computed while they were written.
    crcs: FileCrcs,
    /// Metadata sent with CreateMultipartUpload.
    opts: PutOptions,
    /// Parts sent (or on their way) were cut off by a truncate: the server holds parts the
    /// completion will not name, which Ceph RGW refuses (`InvalidPart`, "total parts
    /// mismatch"); the upload then starts over (see `finish`).
    cut_sent: bool,
}

impl Multipart {
    /// Parts from the first, none sent; `upload_id` empty until the upload is created.
    fn new(upload_id: String, opts: &PutOptions) -> Multipart {
        Multipart {
            upload_id,
            next_part: 1,
            next_offset: 0,
            in_flight: Vec::new(),
            done: Vec::new(),
            failed: Vec::new(),
            rewritten: Default::default(),
            unsent: Default::default(),
            evicted: Default::default(),
            zeros: Default::default(),
            crcs: FileCrcs::default(),
            opts: opts.clone(),
            cut_sent: false,
        }
    }
}

/// What a finished upload produced.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub etag: Option<String>,
    pub size: u64,
    pub multipart: bool,
}

/// The object an upload over an existing small object starts from, not fetched yet.
struct Over {
    etag: Option<String>,
    size: u64,
}

/// One file being written.
pub struct Upload {
    client: S3Client,
    key: String,
    budget: Arc<MemoryBudget>,
    limits: PartLimits,
    /// Bytes not yet sent. While no multipart upload exists this is the whole file.
    buffer: PartBuffer,
    reservation: Reservation,
    mpu: Option<Multipart>,
    failed: Option<FsError>,
    /// A multipart upload was completed: the object is final.
    sealed: bool,
    /// Records the multipart upload so a later mount can resume or abort it.
    journal: Option<Arc<UploadJournal>>,
    /// Names this upload's part files (with `--cache-dir`).
    local_id: String,
    /// Unlinked while open: nothing is sent any more (see `forget_remote`).
    forgotten: bool,
    /// The bytes of this upload's staged files against `--cache-size` (with a staging dir).
    charge: Option<Charge>,
    /// Bytes of the part files of parts already queued (not dropped from the staging area).
    sent_files: u64,
    /// A finish of the multipart upload ran (its last part queued, "closed" journaled) and
    /// failed: the next change reopens the upload (see `reopen`).
    finish_failed: bool,
    pool: Arc<BufferPool>,
    /// Write-back (`--write-back`): full parts stay in their files until the upload is
    /// finished, nothing is sent before (see `stage`).
    defer_sends: bool,
    /// Write-back: the journal says this upload is to be finished from its part files should
    /// this daemon stop (a `pending` entry), until `landed`.
    pending: bool,
    /// Write-back: a send failed (the server is away, or refuses): the rest waits in the
    /// part files for the finish, which retries.
    no_streaming: bool,
    /// The files of parts sent from memory, being written.
    part_files: PartFileWrites,
    /// The parts written to: the others are zero parts (see `zero_parts.rs`).
    written: WrittenParts,
    /// The mount's prefix, where a zeros object goes.
    prefix: String,
    /// The existing object this upload starts from, until it is fetched (see `over_object`).
    over: Option<Over>,
}

/// Where an upload keeps its parts.
#[derive(Clone, Default)]
pub struct UploadStore {
    pub journal: Option<Arc<UploadJournal>>,
    /// Part buffers are files (`--cache-dir`), not memory.
    pub spill: bool,
    /// Memory part buffers for reuse.
    pub pool: Arc<BufferPool>,
    /// The staging area's size bound (with `spill`).
    pub staging: Option<Arc<StagingBudget>>,
    /// Write-back: uploads keep their parts until finished (see `Upload::stage`).
    pub defer_sends: bool,
    /// The mount's prefix: an upload's hidden zeros object goes there (see `zero_parts.rs`).
    pub prefix: String,
}

impl UploadStore {
    /// A fresh file in the staging dir with the area's bound (`None` when parts are kept in
    /// memory).
    pub fn staging_file(&self, name: &str) -> Option<(std::path::PathBuf, Arc<StagingBudget>)> {
        let journal = self.journal.as_ref().filter(|_| self.spill)?;
        let id = format!("{:016x}", rand::random::<u64>());
        Some((journal.parts_dir(&id).join(name), self.staging.clone()?))
    }
}

impl Upload {
    pub fn new(
        client: S3Client,
        key: String,
        budget: Arc<MemoryBudget>,
        limits: PartLimits,
        store: &UploadStore,
    ) -> Upload {
        let local_id = format!("{:016x}", rand::random::<u64>());
        let buffer = match (&store.journal, store.spill) {
            (Some(j), true) => PartBuffer::disk(
                &j.part_path(&local_id, 1),
                limits.base as usize,
                store.pool.clone(),
            ),
            _ => PartBuffer::memory(store.pool.clone(), limits.base as usize),
        };
        let buffer_in_memory = buffer.in_memory();
        Upload {
            client,
            key,
            budget,
            limits,
            buffer,
            reservation: Reservation::default(),
            mpu: None,
            failed: None,
            sealed: false,
            journal: store.journal.clone(),
            local_id,
            forgotten: false,
            charge: store
                .staging
                .clone()
                .filter(|_| !buffer_in_memory)
                .map(Charge::new),
            sent_files: 0,
            finish_failed: false,
            pool: store.pool.clone(),
            defer_sends: store.defer_sends && !buffer_in_memory,
            pending: false,
            no_streaming: false,
            part_files: PartFileWrites::default(),
            written: WrittenParts::default(),
            prefix: store.prefix.clone(),
            over: None,
        }
    }

    /// Start from the existing object (of at most one part, version `etag`, `size` bytes)
    /// opened for update, fetched only when the file is first read or changed
    /// ([`Upload::load`]): a `touch`, or an open closed without a write, sends no GET.
    pub fn over_object(mut self, etag: Option<String>, size: u64) -> Upload {
        self.over = Some(Over { etag, size });
        self
    }

    /// Cut to nothing before the object it starts from was fetched: it never is.
    pub fn empty_unloaded(&mut self) {
        self.over = None;
    }

    /// Fetches the object this upload starts from (see [`Upload::over_object`]), if not yet:
    /// one GET, conditional on the version opened (a version replaced since is `ESTALE`).
    pub async fn load(&mut self) -> FsResult<()> {
        let Some(over) = self.over.take() else {
            return Ok(());
        };
        let got = self
            .client
            .get_object(&self.key, None, over.etag.as_deref())
            .await;
        match got {
            Ok(out) => {
                self.with_content_in_place(&out.body)?;
                Ok(())
            }
            Err(e) => {
                self.over = Some(over);
                Err(FsError::from_s3(&e, &self.key))
            }
        }
    }

    /// Start from existing content (a small object opened for update).
    pub fn with_content(mut self, content: &[u8]) -> FsResult<Upload> {
        self.with_content_in_place(content)?;
        Ok(self)
    }

    fn with_content_in_place(&mut self, content: &[u8]) -> FsResult<()> {
        if self.buffer.in_memory() {
            self.reservation = self
                .budget
                .try_reserve(content.len() as u64)
                .unwrap_or_default();
        }
        self.buffer.write_at(0, content).map_err(FsError::staging)?;
        self.buffer.keep_rooms_in(&mut self.reservation);
        self.mark_written(0, content.len());
        Ok(())
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Rename while writing. Once parts have streamed, the upload starts over under the new
    /// name: the old one is aborted and every part goes again from its part file (with
    /// `--cache-dir none` the parts sent are gone: EBUSY).
    pub async fn set_key(&mut self, key: String) -> FsResult<()> {
        if self.mpu.is_some() {
            if !self.can_start_over() {
                return Err(FsError::new(
                    libc::EBUSY,
                    "cannot rename a large file while its upload is streaming: the parts it \
                     sent are not all kept (--cache-dir none, or dropped to stay within \
                     --cache-size)",
                ));
            }
            self.start_over().await;
        }
        self.key = key;
        Ok(())
    }

    /// Whether every part sent so far can be sent again from its part file.
    fn can_start_over(&self) -> bool {
        self.mpu
            .as_ref()
            .is_some_and(|m| !self.buffer.in_memory() && m.evicted.is_empty())
    }

    /// The multipart upload starts over: the one on the server is aborted, and every part
    /// goes again (from its part file; the zero parts copied or sent again as zero parts) to
    /// a new one, created when the next part goes or at completion. Needs
    /// [`Upload::can_start_over`].
    async fn start_over(&mut self) {
        let Some(m) = self.mpu.as_mut() else { return };
        for (_, h) in m.in_flight.drain(..) {
            h.abort();
        }
        m.done.clear();
        m.failed.clear();
        m.cut_sent = false;
        let data: std::collections::BTreeSet<u32> = (1..m.next_part)
            .filter(|n| !m.zeros.contains_key(n))
            .collect();
        m.rewritten = data;
        if !m.upload_id.is_empty() {
            let old = std::mem::take(&mut m.upload_id);
            match self.client.abort_multipart_upload(&self.key, &old).await {
                Ok(()) => {
                    if let Some(j) = &self.journal {
                        j.ended(&old);
                    }
                }
                Err(e) => {
                    tracing::warn!(key = %self.key, "could not abort multipart upload: {e}")
                }
            }
        }
        self.failed = None;
    }

    /// The multipart upload's id, creating the upload (again, after a rename) if needed.
    async fn upload_id(&mut self, opts: &PutOptions) -> FsResult<String> {
        if let Some(m) = &self.mpu {
            if !m.upload_id.is_empty() {
                return Ok(m.upload_id.clone());
            }
        }
        let upload_id = self
            .client
            .create_multipart_upload(&self.key, opts)
            .await
            .map_err(|e| FsError::from_s3(&e, &self.key))?;
        if let Some(j) = &self.journal {
            j.started(
                &upload_id,
                &self.local_id,
                &self.key,
                self.client.sends_crc32c(),
            );
        }
        match self.mpu.as_mut() {
            Some(m) => m.upload_id = upload_id.clone(),
            None => self.mpu = Some(Multipart::new(upload_id.clone(), opts)),
        }
        Ok(upload_id)
    }

    /// Current size of the file.
    pub fn size(&self) -> u64 {
        if let Some(o) = &self.over {
            return o.size;
        }
        self.mpu.as_ref().map(|m| m.next_offset).unwrap_or(0) + self.buffer.len() as u64
    }

    /// Bytes this upload holds in memory.
    pub fn buffered(&self) -> u64 {
        self.buffer.len() as u64
    }

    fn buffer_start(&self) -> u64 {
        self.mpu.as_ref().map(|m| m.next_offset).unwrap_or(0)
    }

    fn current_part_size(&self) -> u64 {
        let n = self.mpu.as_ref().map(|m| m.next_part).unwrap_or(1);
        part_size_for(n, self.limits.base, self.limits.max)
    }

    async fn reserve_up_to(&mut self, len: u64) {
        while self.reservation.bytes() < len {
            let want = RESERVE_STEP.max(len - self.reservation.bytes());
            match self.budget.reserve_within(want, WRITER_PATIENCE).await {
                Some(r) => self.reservation.merge(r),
                None => {
                    self.budget.overrun("a writer");
                    break;
                }
            }
        }
    }

    /// Whether `more` bytes appended to a disk buffer can be held in memory with its tail
    /// (the part then goes from memory, see `part_buffer::Tail`): only while the budget in use
    /// stays under three quarters (the rest is for reads; as many parts in flight as the raw
    /// client keeps need more than half of the default 96 MiB); otherwise they go to the file,
    /// and nobody waits. A sent part's buffer idles in its pool, its room still counted, until
    /// the next part takes it: a new tail first takes one with its room
    /// ([`PartBuffer::claim_tail`]), so no more of the budget is in use for it (counted, those
    /// buffers held a writer to 5 parts in flight instead of 9). Failing that, one part's worth
    /// of idle pooled buffers does not count as in use; no more than that: freeing idle
    /// buffers for new ones grew the daemon past its budget.
    fn hold(&mut self, more: usize) -> bool {
        if self.buffer.held() == 0 && self.buffer.claim_tail(self.current_part_size() as usize) {
            self.buffer.keep_rooms_in(&mut self.reservation);
        }
        let want = (self.buffer.held() + more) as u64;
        while self.reservation.bytes() < want {
            let step = RESERVE_STEP.max(want - self.reservation.bytes());
            let room = self.budget.total() / 4 * 3;
            // (the pools are looked at only when the budget looks full)
            if self.budget.in_use() + step > room {
                let next_buffer = self.budget.idle().min(self.current_part_size());
                if self.budget.in_use().saturating_sub(next_buffer) + step > room {
                    return false;
                }
            }
            match self.budget.try_reserve(step) {
                Some(r) => self.reservation.merge(r),
                None => return false,
            }
        }
        true
    }

    /// [`Upload::hold`], and while there is no room, wait for one of this upload's parts in
    /// flight to be sent, whichever is first, or for one of its part files to be written
    /// (what they free is usually what was missing: a writer outrunning the server waits for
    /// it, as with a memory buffer), before the bytes go to the file. Not for the oldest
    /// part: on a server whose parts take uneven times (Ceph RGW) the writer then stood still
    /// while later parts had given their room back.
    async fn hold_or_drain(&mut self, more: usize) -> bool {
        if self.defer_sends {
            // write-back: the writer never waits for a send; without room the bytes go to
            // the part file, and the part is sent from there
            return self.hold(more);
        }
        loop {
            if self.hold(more) {
                return true;
            }
            // no room: listen for a part file's end, then look once more (one that ended in
            // between is not missed)
            let files = self.part_files.ended();
            let written = files.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.hold(more) {
                return true;
            }
            let Some(m) = self.mpu.as_mut().filter(|m| !m.in_flight.is_empty()) else {
                return false;
            };
            let sent = futures::future::select_all(m.in_flight.iter_mut().map(|(_, h)| h));
            let done = tokio::select! {
                (result, i, _) = sent => Some((result, i)),
                () = &mut written => None,
            };
            if let Some((result, i)) = done {
                if let Some(m) = self.mpu.as_mut() {
                    m.in_flight.swap_remove(i);
                }
                self.settle(result);
                if self.failed.is_some() {
                    return false;
                }
            }
        }
    }

    /// Takes the result of a part's send: done, or failed (kept to be sent again).
    fn settle(
        &mut self,
        result: Result<Result<CompletedPart, FailedPart>, tokio::task::JoinError>,
    ) {
        let Some(m) = self.mpu.as_mut() else {
            return;
        };
        if let Ok(Err(f)) = &result {
            // the CRC32C it carried may be what the server refused: hashed from its file next
            m.crcs.forget(f.part_number);
        }
        match result {
            Ok(Ok(part)) => m.done.push(part),
            Ok(Err(f)) if self.defer_sends => {
                // write-back: the part is in its file, sent from there at the finish; the
                // writer is not told (its close stages the file whatever the server does)
                tracing::debug!(key = %self.key, part = f.part_number, "part send failed, kept for the finish: {}", f.error.reason);
                m.rewritten.insert(f.part_number);
                self.no_streaming = true;
            }
            Ok(Err(f)) => {
                self.failed = Some(f.error.clone());
                m.failed.push(f);
            }
            Err(e) => self.failed = Some(FsError::new(libc::EIO, format!("upload task: {e}"))),
        }
    }

    fn check_failed(&mut self) -> FsResult<()> {
        let mut i = 0;
        while let Some(m) = self.mpu.as_mut().filter(|m| i < m.in_flight.len()) {
            if m.in_flight[i].1.is_finished() {
                let (_, h) = m.in_flight.swap_remove(i);
                // is_finished() was true, so this does not wait
                if let Some(result) = futures::FutureExt::now_or_never(h) {
                    self.settle(result);
                }
            } else {
                i += 1;
            }
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Write `data` at `offset`. While the file is smaller than one part any offset works;
    /// once parts stream out, writes must continue at the end (or inside the unsent part).
    pub async fn write(&mut self, offset: u64, data: &[u8], opts: &PutOptions) -> FsResult<()> {
        self.check_failed()?;
        if self.sealed {
            return Err(FsError::new(
                libc::EIO,
                "the file's upload is already complete; reopen it to change it",
            ));
        }
        self.reopen().await?;
        self.mark_written(offset, data.len());
        let start = self.buffer_start();
        let (offset, data) = if offset < start {
            let head = ((start - offset) as usize).min(data.len());
            self.rewrite_sent(offset, &data[..head])?;
            (offset + head as u64, &data[head..])
        } else {
            (offset, data)
        };
        if data.is_empty() {
            return Ok(());
        }
        let rel = (offset - start) as usize;
        let end = rel + data.len();
        if self.buffer.in_memory() {
            self.reserve_up_to(end as u64).await;
            self.buffer.write_at(rel, data).map_err(FsError::staging)?;
        } else {
            self.make_room(end.saturating_sub(self.buffer.len()) as u64)
                .await;
            if rel == self.buffer.len() && self.hold_or_drain(data.len()).await {
                self.buffer
                    .append_held(data, self.current_part_size() as usize);
            } else {
                self.buffer.write_at(rel, data).map_err(FsError::staging)?;
                // the tail went to the file with it
                self.reservation = Reservation::default();
            }
        }
        self.buffer.keep_rooms_in(&mut self.reservation);
        self.update_charge();
        // the bytes are taken: a part that cannot go now (the multipart upload cannot be
        // started, an earlier part failed) does not fail this write, which an application
        // would take as "not written" — they are sent at the next part boundary or at close,
        // whose result says whether they reached the bucket
        while !self.forgotten && self.buffer.len() as u64 >= self.current_part_size() {
            if let Err(e) = self.send_part(opts).await {
                if e.errno == libc::EFBIG {
                    return Err(e);
                }
                tracing::debug!(key = %self.key, "a part could not go yet: {}", e.reason);
                break;
            }
        }
        // the zero parts split off take no room
        self.update_charge();
        self.pump();
        Ok(())
    }

    /// [`Upload::write`] of bytes that continue the file where it ends, done at once when it
    /// waits for nothing and fills no part: it only copies the bytes into the part being
    /// filled (the FUSE adapter calls it with the request's own buffer, so a sequential
    /// writer's bytes are copied once, on the FUSE thread, with no task). `None`, with
    /// nothing changed, when the write needs more than that (room to wait for, a part to
    /// send, the object it starts from, a failure to report, a place other than the end):
    /// then [`Upload::write`] does it.
    pub fn try_append(&mut self, offset: u64, data: &[u8]) -> Option<FsResult<()>> {
        if data.is_empty() || self.sealed || self.finish_failed || self.forgotten {
            return None;
        }
        if self.over.is_some() || self.check_failed().is_err() {
            return None;
        }
        let rel = usize::try_from(offset.checked_sub(self.buffer_start())?).ok()?;
        let end = rel.checked_add(data.len())?;
        if rel != self.buffer.len() || end as u64 >= self.current_part_size() {
            return None;
        }
        if self.buffer.in_memory() {
            // (as `reserve_up_to`, without waiting)
            while self.reservation.bytes() < end as u64 {
                let want = RESERVE_STEP.max(end as u64 - self.reservation.bytes());
                self.reservation.merge(self.budget.try_reserve(want)?);
            }
            self.mark_written(offset, data.len());
            if let Err(e) = self.buffer.write_at(rel, data) {
                return Some(Err(FsError::staging(e)));
            }
        } else {
            // room in the staging area without dropping sent parts' files or waiting (see
            // `make_room`), and in memory for the part's tail (see `hold`)
            let more = data.len() as u64;
            let roomy = self.charge.as_ref().is_none_or(|c| {
                let b = c.budget();
                b.used().saturating_add(more) <= b.limit() / 4 * 3
            });
            if !roomy || !self.hold(data.len()) {
                return None;
            }
            self.mark_written(offset, data.len());
            self.buffer
                .append_held(data, self.current_part_size() as usize);
        }
        self.buffer.keep_rooms_in(&mut self.reservation);
        self.update_charge();
        self.pump();
        Some(Ok(()))
    }

    /// The part holding byte `offset` (1-based) and where it starts (see [`part_holding`]).
    fn part_holding(&self, offset: u64) -> (u32, u64) {
        part_holding(offset, self.limits.base, self.limits.max)
    }

    /// Bytes `[offset, offset + len)` were written: their parts are not zero parts.
    fn mark_written(&mut self, offset: u64, len: usize) {
        if len > 0 {
            let first = self.part_holding(offset).0;
            let last = self.part_holding(offset + len as u64 - 1).0;
            self.written.wrote(first, last);
        }
    }

    /// The file was cut to `size`: the parts after the one holding its last byte hold
    /// nothing written (grown again, they are zeros).
    fn cut_written(&mut self, size: u64) {
        let (k, start) = self.part_holding(size);
        self.written.cut_from(if start == size { k } else { k + 1 });
    }

    /// After a finish that failed, the next change (a write, a truncate) reopens the upload:
    /// the journal stops saying "closed" (a crash must not resume it with bytes no close
    /// acknowledged), and a short last part the finish queued becomes the part being filled
    /// again (a part after it would be a middle part below the minimum: the completion would
    /// fail with EntityTooSmall, for good).
    async fn reopen(&mut self) -> FsResult<()> {
        if !self.finish_failed {
            return Ok(());
        }
        if let (Some(j), Some(m)) = (&self.journal, &self.mpu) {
            j.reopened(&m.upload_id);
        }
        let size = self.size();
        let short_tail = self.mpu.is_some()
            && self.buffer.is_empty()
            && size > 0
            && self.part_holding(size).1 != size;
        if short_tail {
            if self.buffer.in_memory() {
                return Err(FsError::new(
                    libc::EIO,
                    "the file's last part was sent before its upload failed, and without a \
                     cache dir (--cache-dir none) it is not kept: the file cannot grow until \
                     its upload completes (close or fsync it again)",
                ));
            }
            self.rewind(size).await?;
        }
        self.finish_failed = false;
        Ok(())
    }

    /// Truncate to `size`, below the bytes already sent (parts staged on disk): the part
    /// holding `size` becomes the part being filled again, the parts after it are dropped
    /// (their sends cancelled, and Complete will not name them). A file back under one part
    /// is one PutObject again: its multipart upload is aborted.
    async fn rewind(&mut self, size: u64) -> FsResult<()> {
        let Some(journal) = self.journal.clone().filter(|_| !self.buffer.in_memory()) else {
            return Ok(()); // in memory: refused by the caller
        };
        self.part_files.wait().map_err(FsError::staging)?;
        let (k, part_start) = self.part_holding(size);
        self.check_not_evicted(k)
            .map_err(|e| FsError::new(libc::EOPNOTSUPP, e.reason))?;
        let Some(m) = self.mpu.as_mut() else {
            return Ok(());
        };
        m.cut_sent |=
            m.in_flight.iter().any(|(n, _)| *n >= k) || m.done.iter().any(|p| p.part_number >= k);
        for (n, h) in &m.in_flight {
            if *n >= k {
                h.abort();
            }
        }
        m.in_flight.retain(|(n, _)| *n < k);
        m.done.retain(|p| p.part_number < k);
        m.failed.retain(|f| f.part_number < k);
        m.rewritten.retain(|n| *n < k);
        m.evicted.retain(|n| *n < k);
        m.zeros.retain(|n, _| *n < k);
        m.crcs.forget_from(k);
        self.sent_files = (1..k)
            .filter(|n| !m.evicted.contains(n) && !m.zeros.contains_key(n))
            .map(|n| part_size_for(n, self.limits.base, self.limits.max))
            .sum();
        for n in k + 1..=m.next_part {
            let _ = blocking(|| std::fs::remove_file(journal.part_path(&self.local_id, n)));
        }
        self.buffer = PartBuffer::disk_existing(
            &journal.part_path(&self.local_id, k),
            (size - part_start) as usize,
            part_size_for(k, self.limits.base, self.limits.max) as usize,
            self.pool.clone(),
        )
        .map_err(FsError::staging)?;
        m.next_part = k;
        m.next_offset = part_start;
        self.failed = None;
        self.cut_written(size);
        if k == 1 {
            // nothing sent remains: back to one PutObject at the end
            // (an unlinked file's upload was aborted at the unlink)
            if let Some(m) = self.mpu.take().filter(|_| !self.forgotten) {
                for (_, h) in &m.in_flight {
                    h.abort();
                }
                match self
                    .client
                    .abort_multipart_upload(&self.key, &m.upload_id)
                    .await
                {
                    Ok(()) => journal.ended(&m.upload_id),
                    Err(e) => {
                        tracing::warn!(key = %self.key, "could not abort multipart upload: {e}")
                    }
                }
            }
        }
        self.update_charge();
        Ok(())
    }

    /// This upload's staged bytes, as `--cache-size` counts them.
    fn update_charge(&mut self) {
        let staged = self.sent_files + self.buffer.len() as u64;
        if let Some(c) = self.charge.as_mut() {
            c.set(staged);
        }
    }

    /// Before staging `more` bytes: within `--cache-size`, first by dropping the files of this
    /// upload's parts already sent (they are only needed to write or read them again before
    /// the upload completes), then by waiting for other uploads to finish. After
    /// [`STAGING_PATIENCE`] the write goes over the bound rather than wait forever.
    async fn make_room(&mut self, more: u64) {
        let Some((limit, used)) = self
            .charge
            .as_ref()
            .map(|c| (c.budget().limit(), c.budget().used()))
        else {
            return;
        };
        if used.saturating_add(more) <= limit {
            // above three quarters, drop what this upload sent anyway, so that writers
            // waiting for room find some
            if used > limit / 4 * 3 {
                let _ = self.check_failed();
                self.evict_sent_parts(limit / 4);
            }
            return;
        }
        let deadline = std::time::Instant::now() + STAGING_PATIENCE;
        loop {
            let _ = self.check_failed();
            self.evict_sent_parts(more);
            let fits = self.charge.as_ref().is_none_or(|c| c.budget().fits(more));
            if fits {
                return;
            }
            if std::time::Instant::now() >= deadline {
                if let Some(c) = self.charge.as_ref() {
                    c.budget().overrun();
                }
                return;
            }
            // wait for room freed elsewhere, or for a part of this upload to finish sending
            let in_flight = self.mpu.as_ref().is_some_and(|m| !m.in_flight.is_empty());
            let wait = if in_flight {
                deadline.min(std::time::Instant::now() + std::time::Duration::from_millis(50))
            } else {
                deadline
            };
            if let Some(c) = self.charge.as_ref() {
                if c.budget().wait_for_room(more, wait).await {
                    return;
                }
            }
        }
    }

    /// Drop part files of parts sent successfully, oldest first, until `more` bytes fit.
    fn evict_sent_parts(&mut self, more: u64) {
        if self.defer_sends || self.pending {
            return; // every part file is the only copy until the upload finishes
        }
        if self.part_files.wait().is_err() {
            return; // told at the finish
        }
        let (Some(journal), Some(m)) = (&self.journal, self.mpu.as_mut()) else {
            return;
        };
        let Some(budget) = self.charge.as_ref().map(|c| c.budget()) else {
            return;
        };
        let mut done: Vec<u32> = m
            .done
            .iter()
            .map(|p| p.part_number)
            .filter(|n| {
                // a zero part's file is a hole: dropping it frees nothing
                !m.rewritten.contains(n) && !m.evicted.contains(n) && !m.zeros.contains_key(n)
            })
            .collect();
        done.sort_unstable();
        let mut freed = 0u64;
        for n in done {
            if budget.used().saturating_sub(freed).saturating_add(more) <= budget.limit() {
                break;
            }
            if blocking(|| std::fs::remove_file(journal.part_path(&self.local_id, n))).is_ok() {
                let size = part_size_for(n, self.limits.base, self.limits.max);
                freed += size;
                self.sent_files = self.sent_files.saturating_sub(size);
                m.evicted.insert(n);
            }
        }
        if freed > 0 {
            tracing::debug!(key = %self.key, freed, "dropped sent parts from the staging area");
            self.update_charge();
        }
    }

    /// EINVAL (with the reason) when part `n`'s file was dropped to stay within --cache-size.
    fn check_not_evicted(&self, n: u32) -> FsResult<()> {
        if self.mpu.as_ref().is_some_and(|m| m.evicted.contains(&n)) {
            return Err(FsError::new(
                libc::EINVAL,
                format!(
                    "part {n} was sent and dropped from the staging area to stay within \
                     --cache-size; it can be changed or read again once the upload completes"
                ),
            ));
        }
        Ok(())
    }

    /// A write into parts already sent (zip going back to fill in a header, a database): with
    /// the parts staged on disk, the part files take the bytes and those parts are sent again
    /// (same part numbers) before the upload completes. In memory, sent bytes are gone: EINVAL.
    fn rewrite_sent(&mut self, offset: u64, data: &[u8]) -> FsResult<()> {
        // the part's file has its first bytes before these go over them
        self.part_files.wait().map_err(FsError::staging)?;
        let (Some(journal), Some(m)) = (&self.journal, self.mpu.as_mut()) else {
            return Err(FsError::new(
                libc::EINVAL,
                "write before the bytes already uploaded",
            ));
        };
        if self.buffer.in_memory() {
            return Err(FsError::new(
                libc::EINVAL,
                format!(
                    "write at offset {offset} goes back before bytes already uploaded ({}); \
                     without a cache dir (--cache-dir none) large files must be written in order",
                    m.next_offset
                ),
            ));
        }
        let end = offset + data.len() as u64;
        let (mut n, mut part_start) = (1u32, 0u64);
        let mut pos = offset;
        while pos < end {
            let part_len = part_size_for(n, self.limits.base, self.limits.max);
            if pos >= part_start + part_len {
                part_start += part_len;
                n += 1;
                continue;
            }
            let upto = end.min(part_start + part_len);
            if m.evicted.contains(&n) {
                return Err(FsError::new(
                    libc::EINVAL,
                    "a write into a part dropped from the staging area (--cache-size) before \
                     its upload completed",
                ));
            }
            let piece = &data[(pos - offset) as usize..(upto - offset) as usize];
            blocking(|| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(journal.part_path(&self.local_id, n))?;
                std::os::unix::fs::FileExt::write_all_at(&file, piece, pos - part_start)
            })
            .map_err(FsError::staging)?;
            m.rewritten.insert(n);
            m.crcs.forget(n);
            if let Some(len) = m.zeros.remove(&n) {
                // data now, staged like any part
                self.sent_files += len;
            }
            pos = upto;
        }
        Ok(())
    }

    /// Truncate or extend (with zeros) to `size`, while that is within the unsent bytes.
    pub async fn set_size(&mut self, size: u64) -> FsResult<()> {
        if !self.sealed {
            self.reopen().await?;
        }
        if size < self.buffer_start() && !self.sealed {
            self.rewind(size).await?;
        }
        let start = self.buffer_start();
        if size < start || self.sealed {
            return Err(FsError::new(
                libc::ENOTSUP,
                "cannot truncate into bytes of a large file that were already uploaded \
                 without a cache dir (--cache-dir none)",
            ));
        }
        let rel = (size - start) as usize;
        if self.buffer.in_memory() {
            self.reserve_up_to(rel as u64).await;
        }
        self.buffer.resize(rel).map_err(FsError::staging)?;
        self.cut_written(size);
        if !self.buffer.in_memory() {
            // a held tail went to the file
            self.reservation = Reservation::default();
        }
        self.update_charge();
        Ok(())
    }

    /// Write-back: whether the next part (`take` bytes) can be sent now at no wait for the
    /// writer — few parts in flight, and its bytes held in memory or room for reading it from
    /// its file — with what its send holds of the budget (`Some(None)`: the held tail's).
    /// `None`: it waits in its file for a free send (see [`Upload::pump`]) or the finish.
    fn send_without_waiting(&mut self, take: usize) -> Option<Option<Reservation>> {
        let in_flight = self.mpu.as_ref().map_or(0, |m| m.in_flight.len());
        if self.pending || self.forgotten || self.no_streaming || in_flight >= STREAMING_SENDS {
            return None;
        }
        if self.buffer.splits_from_memory(take) {
            return Some(None);
        }
        self.budget.try_reserve(FILE_BODY_MEMORY).map(Some)
    }

    /// Write-back: parts waiting in their files go out while sends are free, lowest first, so
    /// that a large file streams to the bucket while it is written without the writer ever
    /// waiting for the server (it lands as soon as with the durable mode).
    fn pump(&mut self) {
        if !self.defer_sends || self.pending || self.forgotten || self.no_streaming {
            return;
        }
        let _ = self.check_failed();
        loop {
            let Some(m) = self.mpu.as_ref().filter(|m| !m.upload_id.is_empty()) else {
                return;
            };
            if m.in_flight.len() >= STREAMING_SENDS {
                return;
            }
            // only parts never sent: one written again after its send goes once, at the
            // finish (zip rewrites its headers one by one)
            let Some(n) = m.unsent.first().copied() else {
                return;
            };
            if !m.rewritten.contains(&n) || m.in_flight.iter().any(|(k, _)| *k == n) {
                // dropped meanwhile (truncate, rename), or sent
                if let Some(m) = self.mpu.as_mut() {
                    m.unsent.remove(&n);
                }
                continue;
            }
            if self.part_files.busy(n) {
                return; // its file is being written: at the next write
            }
            let Some(reservation) = self.budget.try_reserve(FILE_BODY_MEMORY) else {
                return;
            };
            let Some(Ok(body)) = self.mpu.as_ref().map(|m| self.read_part_file(n, &m.crcs)) else {
                return;
            };
            let Some(m) = self.mpu.as_mut() else {
                return;
            };
            m.rewritten.remove(&n);
            m.unsent.remove(&n);
            m.done.retain(|p| p.part_number != n);
            let (client, key, upload_id) =
                (self.client.clone(), self.key.clone(), m.upload_id.clone());
            m.in_flight.push((
                n,
                tokio::spawn(async move {
                    let _held = reservation;
                    send_one_part(&client, &key, &upload_id, n, body).await
                }),
            ));
        }
    }

    async fn send_part(&mut self, opts: &PutOptions) -> FsResult<()> {
        self.queue_part(opts).await?;
        self.check_failed()
    }

    /// Starts the upload of the next part (and the multipart upload, for the first). With
    /// `defer_sends` the part only goes to its own file, to be sent when the upload finishes.
    async fn queue_part(&mut self, opts: &PutOptions) -> FsResult<()> {
        let part_size = self.current_part_size() as usize;
        let take = part_size.min(self.buffer.len());
        // write-back: a part goes now only when that makes the writer wait for nothing
        let mut now = match self.defer_sends {
            true => self.send_without_waiting(take),
            false => Some(None),
        };
        if now.is_some() {
            if let Err(e) = self.upload_id(opts).await {
                if !self.defer_sends {
                    return Err(e);
                }
                tracing::debug!(key = %self.key, "cannot start the upload yet, parts wait in their files: {}", e.reason);
                self.no_streaming = true;
                now = None;
            }
        }
        if now.is_none() {
            // sent from its file later (no upload id yet: created when one is needed)
            self.mpu
                .get_or_insert_with(|| Multipart::new(String::new(), opts));
        }
        let Some(m) = self.mpu.as_mut() else {
            return Err(FsError::new(libc::EIO, "multipart upload missing"));
        };
        if m.next_part > self.limits.max_parts {
            return Err(FsError::new(
                libc::EFBIG,
                "file exceeds the provider's part limit",
            ));
        }
        let part_number = m.next_part;
        let zero = self.written.is_zero_part(part_number);
        let next_path = self
            .journal
            .as_ref()
            .map(|j| j.part_path(&self.local_id, part_number + 1));
        let next_part_size = part_size_for(part_number + 1, self.limits.base, self.limits.max);
        let deferred = now.is_none();
        let reservation = if let Some(Some(r)) = now {
            r
        } else if self.buffer.splits_from_memory(take) {
            // a disk buffer's held tail goes with it; what follows is held anew
            std::mem::take(&mut self.reservation)
        } else if deferred || zero {
            // not read now: kept in its file, or its zeros are copied (or sent from no buffer)
            Reservation::default()
        } else {
            // the part is sent from its file a chunk at a time: what its request holds in
            // memory is counted, waiting for room if need be
            self.budget
                .reserve_within(FILE_BODY_MEMORY, WRITER_PATIENCE)
                .await
                .unwrap_or_default()
        };
        let (body, file_write) = self
            .buffer
            .split_to(take, next_path.as_ref(), next_part_size as usize)
            .map_err(FsError::staging)?;
        // (a rest held anew: its buffer's room stays with what follows)
        self.buffer.keep_rooms_in(&mut self.reservation);
        if !self.buffer.in_memory() {
            m.crcs.set(part_number, body.known_crc32c(), body.len());
        }
        // the budget holds the bytes until both their send and their file's write are done
        let reservation = Arc::new(reservation);
        if let Some(w) = file_write {
            self.part_files
                .start(part_number, w, reservation.clone())
                .await;
        }
        m.next_part += 1;
        m.next_offset += take as u64;
        if !self.buffer.in_memory() && !zero {
            // a zero part's file is a hole, which takes no room in the staging area
            self.sent_files += take as u64;
        }
        if zero {
            // its part file (a hole) stays for a resend or a resume; the upload's completion
            // copies it from a zeros object, or sends its zeros
            m.zeros.insert(part_number, take as u64);
            return Ok(());
        }
        if deferred || m.upload_id.is_empty() {
            // sent from its file when a send is free (write-back), or when the upload finishes
            m.rewritten.insert(part_number);
            m.unsent.insert(part_number);
            return Ok(());
        }
        let client = self.client.clone();
        let key = self.key.clone();
        let upload_id = m.upload_id.clone();
        m.in_flight.push((
            part_number,
            tokio::spawn(async move {
                let _held = reservation;
                send_one_part(&client, &key, &upload_id, part_number, body).await
            }),
        ));
        Ok(())
    }

    /// Make the object in the bucket hold everything written so far.
    /// Small files are one PutObject (kept in memory, so later writes can be sent again);
    /// large ones complete their multipart upload, which seals them. A failure keeps what is
    /// needed to try again (the bytes of a small file, the open multipart upload and any part
    /// that failed to go): a later `finish` sends only what is missing.
    pub async fn finish(&mut self, opts: &PutOptions) -> FsResult<Uploaded> {
        if self.sealed {
            return Err(FsError::new(libc::EIO, "upload already complete"));
        }
        // on disk before "closed" is journaled: a resume sends the part files as they are
        self.part_files.wait().map_err(FsError::staging)?;
        // a small file all held in memory goes from there: its part file is never made
        let small = self.mpu.is_none() && self.buffer.len() as u64 <= self.current_part_size();
        if !(small && self.buffer.splits_from_memory(self.buffer.len())) {
            self.buffer.flush_tail().map_err(FsError::staging)?;
            if !self.buffer.in_memory() {
                self.reservation = Reservation::default();
            }
        }
        if self.mpu.is_none() && self.buffer.len() as u64 > self.current_part_size() {
            // a file extended past a part by truncate alone: a multipart upload (whose zero
            // parts are copied), journaled before "closed" is
            self.upload_id(opts).await?;
        }
        if self.mpu.is_none() {
            let body = self.buffer.payload().map_err(FsError::staging)?;
            let size = body.len();
            let meta = self
                .client
                .put_object(&self.key, body, opts)
                .await
                .map_err(|e| FsError::from_s3(&e, &self.key))?;
            return Ok(Uploaded {
                etag: meta.etag,
                size,
                multipart: false,
            });
        }
        if let (Some(j), Some(m)) = (&self.journal, &self.mpu) {
            if !m.upload_id.is_empty() {
                let parts = m.next_part - u32::from(self.buffer.is_empty());
                j.closed(&m.upload_id, parts, &super::journal::Condition::of(opts));
            }
        }
        // cleared when the upload completes
        self.finish_failed = true;
        // parts kept back (write-back) go now
        self.defer_sends = false;
        // a file extended by truncate holds more than one part in its buffer
        while self.buffer.len() as u64 > self.current_part_size() {
            self.queue_part(opts).await?;
        }
        if !self.buffer.is_empty() {
            self.queue_part(opts).await?;
        }
        let size = self.size();
        // after a rename the upload starts over under the new name
        self.upload_id(opts).await?;
        let Some(mut m) = self.mpu.take() else {
            return Err(FsError::new(libc::EIO, "multipart upload missing"));
        };
        let mut result = self.complete(&mut m, opts).await;
        let refused = |r: &FsResult<String>| matches!(r, Err(e) if e.s3.as_ref().is_some_and(|s| s.code == "InvalidPart"));
        if refused(&result) && m.cut_sent {
            self.mpu = Some(m);
            if self.can_start_over() {
                // Ceph RGW completes an upload only when the completion names every part it
                // holds, and a truncate cut off parts already sent: a new upload, every part
                // sent again from its part file (only here, not on servers that allow it)
                tracing::info!(
                    key = %self.key,
                    "the server refused to complete an upload holding parts a truncate cut \
                     off: sending the file again as a new upload"
                );
                self.start_over().await;
                self.upload_id(opts).await?;
                if let (Some(j), Some(m)) = (&self.journal, &self.mpu) {
                    j.closed(
                        &m.upload_id,
                        m.next_part - u32::from(self.buffer.is_empty()),
                        &super::journal::Condition::of(opts),
                    );
                }
            }
            let Some(again) = self.mpu.take() else {
                return Err(FsError::new(libc::EIO, "multipart upload missing"));
            };
            m = again;
            // (when it could not start over, the first refusal stands)
            if !m.cut_sent {
                result = self.complete(&mut m, opts).await;
            }
        }
        match result {
            Ok(etag) => {
                self.sealed = true;
                self.failed = None;
                self.finish_failed = false;
                // write-back: the pending entry is over before its part files go (journaled in
                // that order: a crash in between must not leave a pending entry whose files
                // are gone, which the next mount could neither send nor show)
                self.landed();
                if let Some(j) = &self.journal {
                    j.finished(&m.upload_id, &self.local_id);
                }
                // the part files are gone
                self.sent_files = 0;
                self.update_charge();
                let etag = self
                    .replace_metadata_if_changed(&m.opts, opts, size, etag)
                    .await?;
                Ok(Uploaded {
                    etag: Some(etag),
                    size,
                    multipart: true,
                })
            }
            Err(e) => {
                // the upload stays open on the server with every part sent: a later finish
                // completes it
                self.mpu = Some(m);
                Err(e)
            }
        }
    }

    /// Waits for the parts in flight, sends again those that failed, and completes.
    async fn complete(&mut self, m: &mut Multipart, opts: &PutOptions) -> FsResult<String> {
        for (_, h) in m.in_flight.drain(..) {
            match h.await {
                Ok(Ok(part)) => m.done.push(part),
                Ok(Err(f)) => m.failed.push(f),
                Err(e) => return Err(FsError::new(libc::EIO, format!("upload task: {e}"))),
            }
        }
        // parts written again since they were queued go again, from their part files
        for f in std::mem::take(&mut m.failed) {
            if !m.rewritten.contains(&f.part_number) {
                m.failed.push(f);
            }
        }
        for n in std::mem::take(&mut m.rewritten) {
            let body = match self.read_part_file(n, &m.crcs) {
                Ok(b) => b,
                Err(e) => {
                    m.rewritten.insert(n);
                    return Err(e);
                }
            };
            m.failed.push(FailedPart {
                part_number: n,
                body,
                error: FsError::new(libc::EIO, "part written again"),
            });
        }
        // the zero parts not sent yet: copied from a zeros object that lives until the
        // upload is complete (or this attempt failed), or sent (see zero_parts.rs)
        let done: std::collections::HashSet<u32> = m.done.iter().map(|p| p.part_number).collect();
        let zeros: Vec<(u32, u64)> = m
            .zeros
            .iter()
            .filter(|(n, _)| !done.contains(n))
            .map(|(&n, &len)| (n, len))
            .collect();
        let lens: Vec<u64> = zeros.iter().map(|&(_, len)| len).collect();
        let copies =
            ZeroCopies::prepare(&self.client, self.journal.as_ref(), &self.prefix, &lens).await;
        let result = self.send_and_complete(m, opts, zeros, &copies).await;
        copies.finish().await;
        result
    }

    /// Sends the parts kept back or failed and the zero parts (`zeros`, by number and
    /// length, through `copies`), [`PARALLEL_PART_SENDS`] at a time, and completes.
    async fn send_and_complete(
        &self,
        m: &mut Multipart,
        opts: &PutOptions,
        zeros: Vec<(u32, u64)>,
        copies: &ZeroCopies,
    ) -> FsResult<String> {
        /// A send that failed: a part's body comes back to be sent again; a zero part stays
        /// in `zeros` (not done).
        enum Failed {
            Body(FailedPart),
            Zero(FsError),
        }
        let (client, key, id) = (&self.client, &self.key, &m.upload_id);
        let mut jobs: Vec<futures::future::BoxFuture<'_, Result<CompletedPart, Failed>>> =
            Vec::new();
        for f in std::mem::take(&mut m.failed) {
            jobs.push(
                async move {
                    send_one_part(client, key, id, f.part_number, f.body)
                        .await
                        .map_err(Failed::Body)
                }
                .boxed(),
            );
        }
        for (n, len) in zeros {
            jobs.push(
                async move {
                    copies
                        .send(key, id, n, len)
                        .await
                        .map_err(|e| Failed::Zero(FsError::from_s3(&e, key)))
                }
                .boxed(),
            );
        }
        // several at once (a write-back upload sends all its parts here)
        let results: Vec<_> = futures::stream::iter(jobs)
            .buffer_unordered(PARALLEL_PART_SENDS)
            .collect()
            .await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(part) => {
                    m.done.retain(|p| p.part_number != part.part_number);
                    m.done.push(part)
                }
                Err(Failed::Body(f)) => {
                    first_error.get_or_insert_with(|| f.error.clone());
                    m.crcs.forget(f.part_number);
                    m.failed.push(f);
                }
                Err(Failed::Zero(e)) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        m.done.sort_by_key(|p| p.part_number);
        let completion = PutOptions {
            if_match: opts.if_match.clone(),
            if_none_match_any: opts.if_none_match_any,
            ..PutOptions::default()
        };
        self.client
            .complete_multipart_upload(&self.key, &m.upload_id, &m.done, &completion)
            .await
            .map_err(|e| FsError::from_s3(&e, &self.key))
    }

    /// Attributes changed while the parts were streaming: replace the metadata in place.
    async fn replace_metadata_if_changed(
        &self,
        at_start: &PutOptions,
        now: &PutOptions,
        size: u64,
        etag: String,
    ) -> FsResult<String> {
        if !metadata_changed(at_start, now) {
            return Ok(etag);
        }
        let replace = PutOptions {
            if_match: None,
            if_none_match_any: false,
            ..now.clone()
        };
        self.client
            .copy_object_sized(
                &self.key,
                &self.key,
                size,
                self.limits.base,
                Some(&replace),
                Some(&etag),
            )
            .await
            .map_err(|e| FsError::from_s3(&e, &self.key))
    }

    async fn abort_upload(&self, upload_id: &str) {
        match self
            .client
            .abort_multipart_upload(&self.key, upload_id)
            .await
        {
            Ok(()) => {
                if let Some(j) = &self.journal {
                    j.finished(upload_id, &self.local_id);
                }
            }
            Err(e) => {
                tracing::warn!(key = %self.key, upload_id, "could not abort multipart upload: {e}")
            }
        }
    }

    /// The file was unlinked while open: nothing of it may reach the bucket, but its bytes stay
    /// readable and writable here until the last close. Aborts the multipart upload, if any
    /// (part files stay until the upload is dropped), and sends nothing from now on.
    pub async fn forget_remote(&mut self) {
        self.forgotten = true;
        self.failed = None;
        self.landed();
        if let Some(m) = &mut self.mpu {
            for (_, h) in m.in_flight.drain(..) {
                h.abort();
            }
            m.failed.clear();
            if m.upload_id.is_empty() {
                return;
            }
            if let Err(e) = self
                .client
                .abort_multipart_upload(&self.key, &m.upload_id)
                .await
            {
                tracing::warn!(key = %self.key, "could not abort multipart upload: {e}");
            } else if let Some(j) = &self.journal {
                j.ended(&m.upload_id);
            }
        }
    }

    /// Give up: abort the multipart upload, if any, and drop the bytes.
    pub async fn abort(&mut self) {
        self.landed();
        if let Some(m) = self.mpu.take() {
            for (_, h) in &m.in_flight {
                h.abort();
            }
            // (an unlinked file's upload was aborted at the unlink; its files go at the drop)
            if !m.upload_id.is_empty() && !self.forgotten {
                self.abort_upload(&m.upload_id).await;
            }
        }
        let _ = self.buffer.resize(0);
        self.written.clear();
        self.reservation = Reservation::default();
        self.sent_files = 0;
        self.update_charge();
    }
}

#[path = "upload_stage.rs"]
mod stage;

#[path = "upload_read.rs"]
mod read;

impl Drop for Upload {
    fn drop(&mut self) {
        // part files of an upload still open on the server, or journaled as pending
        // (write-back), stay for the next mount to resume or abort; everything else goes.
        // A completed upload's went at its completion, in the background (`finished`):
        // removing them here again held the close's reply (~0.2 s per GiB on ext4).
        if self.sealed {
            return;
        }
        let open_remote = self.mpu.as_ref().is_some_and(|m| !m.upload_id.is_empty());
        if self.forgotten || !(open_remote || self.pending) {
            if let Some(j) = &self.journal {
                j.discard_local(&self.local_id);
            }
        }
    }
}

/// Whether attributes changed while the parts were streaming, in a way worth rewriting the
/// object's metadata for. Times are left out: every write moves mtime, and the tools that care
/// (cp -p, rsync, tar) set times after close, which rewrites the metadata then.
fn metadata_changed(at_start: &PutOptions, now: &PutOptions) -> bool {
    use super::attr::{META_ATIME, META_CTIME, META_MTIME};
    let strip = |m: &std::collections::BTreeMap<String, String>| {
        let mut m = m.clone();
        for k in [META_ATIME, META_CTIME, META_MTIME] {
            m.remove(k);
        }
        m
    };
    at_start.content_type != now.content_type
        || strip(&at_start.user_metadata) != strip(&now.user_metadata)
}

/// One UploadPart; on failure the body comes back to be sent again.
async fn send_one_part(
    client: &S3Client,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: Payload,
) -> Result<CompletedPart, FailedPart> {
    match client
        .upload_part(key, upload_id, part_number, body.clone())
        .await
    {
        Ok(part) => Ok(part),
        Err(e) => Err(FailedPart {
            part_number,
            // the CRC32C it carried may be what the server refused: hashed from it next time
            body: body.without_crc32c(),
            error: FsError::from_s3(&e, key),
        }),
    }
}
