//! In-place changes to an existing large object (random writes, append, truncate): the parts
//! that were written to are held in memory; at commit the new object is built with a multipart
//! upload in which untouched parts are copied server-side (UploadPartCopy) and only the changed
//! parts are uploaded. Where the server refuses UploadPartCopy, untouched parts are read and
//! uploaded instead. Parts past the original end that nothing wrote (the object was extended)
//! are zero parts: copied from a zeros object when there are several (see `zero_parts.rs`),
//! else sent as zeros, never built in memory. Under `--write-back` a close stages the change
//! and journals its part plan instead (`stage`); the upload follows (see `patch_stage.rs`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;

use super::data_cache::{DataCache, ObjectId, BLOCK};
use super::dirty_parts::DirtyParts;
use super::error::{FsError, FsResult};
use super::journal::UploadJournal;
use super::memory::{MemoryBudget, Reservation, WRITER_PATIENCE};
use super::pending::{PatchPlan, PendingRecord, PlannedPart};
use super::staging::StagingBudget;
use super::upload::Uploaded;
use super::zero_parts::ZeroCopies;
use crate::s3::{CompletedPart, Payload, PutOptions, S3Client, S3Error};

/// Parts uploaded or copied at once while committing.
const PARALLEL_PARTS: usize = 8;
/// Largest run of untouched bytes copied as one part (S3 allows 5 GiB; smaller runs copy in
/// parallel).
const MAX_COPY_PART: u64 = 512 * 1024 * 1024;

/// An open existing object being changed in place.
pub struct PatchUpload {
    client: S3Client,
    budget: Arc<MemoryBudget>,
    key: String,
    source_key: String,
    source_etag: Option<String>,
    /// Bytes of the source that still stand at the same offsets of the file (shrinks with
    /// truncation: bytes past it are zeros or new data).
    source_valid: u64,
    part_size: u64,
    /// Most parts of the rebuilt object (the provider's limit).
    max_parts: u32,
    size: u64,
    /// The parts written to (on disk in the staging dir, else in memory).
    parts: DirtyParts,
    changed: bool,
    /// Records the multipart upload a commit builds (see `journal.rs`).
    journal: Option<Arc<UploadJournal>>,
    /// The data cache, the source version's name in it and the source's size: reads of
    /// untouched ranges (a database opened read-write) come from there, or fetch whole blocks
    /// and keep them.
    cache: Option<(Arc<DataCache>, ObjectId, u64)>,
    /// The mount's prefix, where a zeros object goes (see `zero_parts.rs`).
    prefix: String,
    /// Write-back: journaled as pending under this local id (see `stage`), until it lands.
    pending: Option<String>,
}

/// Only the conditions of `opts` (CompleteMultipartUpload carries no metadata).
fn conditions(opts: &PutOptions) -> PutOptions {
    PutOptions {
        if_match: opts.if_match.clone(),
        if_none_match_any: opts.if_none_match_any,
        ..PutOptions::default()
    }
}

impl PatchUpload {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: S3Client,
        budget: Arc<MemoryBudget>,
        key: String,
        etag: Option<String>,
        size: u64,
        part_size: u64,
        max_parts: u32,
        journal: Option<Arc<UploadJournal>>,
        staging: Option<(std::path::PathBuf, Arc<StagingBudget>)>,
    ) -> PatchUpload {
        // parts large enough that the object fits the provider's part count, twice over
        let part_size = part_size.max(size.div_ceil(u64::from(max_parts.max(2) / 2)));
        let parts = staging
            .and_then(
                |(path, budget)| match DirtyParts::disk(part_size, path, Some(budget)) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!("cache dir unusable, keeping changed parts in memory: {e}");
                        None
                    }
                },
            )
            .unwrap_or_else(|| DirtyParts::memory(part_size));
        PatchUpload {
            client,
            budget,
            source_key: key.clone(),
            key,
            source_etag: etag,
            source_valid: size,
            part_size,
            max_parts,
            size,
            parts,
            changed: false,
            journal,
            cache: None,
            prefix: String::new(),
            pending: None,
        }
    }

    /// The mount's prefix, under which a commit's zeros object goes.
    pub fn with_prefix(mut self, prefix: &str) -> PatchUpload {
        self.prefix = prefix.to_string();
        self
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn set_key(&mut self, key: String) {
        self.key = key;
        self.changed = true;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn buffered(&self) -> u64 {
        if self.parts.on_disk() {
            0
        } else {
            self.parts.total()
        }
    }

    fn part_range(&self, i: u64, size: u64) -> (u64, u64) {
        let start = i * self.part_size;
        (start, ((i + 1) * self.part_size).min(size))
    }

    /// Source bytes `[start, end)` (within what is still valid), zero-filled up to `len`.
    /// Reads go through `cache` (nothing is cached for a source without an ETag).
    pub fn with_cache(mut self, cache: Option<Arc<DataCache>>) -> PatchUpload {
        self.cache = self.cache_entry(cache);
        self
    }

    fn cache_entry(
        &self,
        cache: Option<Arc<DataCache>>,
    ) -> Option<(Arc<DataCache>, ObjectId, u64)> {
        match (cache, &self.source_etag) {
            (Some(c), Some(etag)) => {
                Some((c, ObjectId::new(&self.source_key, etag), self.source_valid))
            }
            _ => None,
        }
    }

    /// `[start, end)` of the source: from the data cache, or fetched (in whole blocks that are
    /// then kept, with a cache).
    async fn source_range(&self, start: u64, end: u64) -> FsResult<Bytes> {
        let Some((cache, id, size)) = self.cache.clone() else {
            return self.fetch_source(start, end).await;
        };
        if let Some(bytes) = cache.read_held(id, start, end, size).await {
            return Ok(bytes);
        }
        let from = start - start % BLOCK;
        let to = end.div_ceil(BLOCK).saturating_mul(BLOCK).min(size);
        let body = self.fetch_source(from, to).await?;
        let memory = self.budget.try_reserve(to - from).map(Arc::new);
        cache
            .keep_fetched(id, from, body.clone(), Vec::new(), size, memory)
            .await;
        Ok(body.slice((start - from) as usize..(end - from) as usize))
    }

    /// One ranged GET of the source, of the version this file was opened on.
    async fn fetch_source(&self, start: u64, end: u64) -> FsResult<Bytes> {
        let out = self
            .client
            .get_object(
                &self.source_key,
                Some(start..end),
                self.source_etag.as_deref(),
            )
            .await
            .map_err(|e| FsError::from_s3(&e, &self.source_key))?;
        if out.body.len() as u64 != end - start {
            return Err(FsError::new(libc::EIO, "short read of the original object"));
        }
        Ok(out.body)
    }

    async fn source_bytes(&self, start: u64, end: u64) -> FsResult<BytesMut> {
        let mut buf = BytesMut::with_capacity((end - start) as usize);
        let src_end = end.min(self.source_valid);
        if start < src_end {
            buf.extend_from_slice(&self.source_range(start, src_end).await?);
        }
        buf.resize((end - start) as usize, 0);
        Ok(buf)
    }

    /// Memory for a changed part: none when parts are staged on disk (room there instead).
    async fn part_memory(&self) -> Reservation {
        if self.parts.on_disk() {
            self.parts.room_for_a_part().await;
            return Reservation::default();
        }
        match self
            .budget
            .reserve_within(self.part_size, WRITER_PATIENCE)
            .await
        {
            Some(r) => r,
            None => {
                self.budget.overrun("an in-place change");
                Reservation::default()
            }
        }
    }

    /// Make part `i` a changed part holding its current content.
    async fn materialize(&mut self, i: u64) -> FsResult<()> {
        if self.parts.contains(i) {
            return Ok(());
        }
        let (start, end) = self.part_range(i, self.size);
        let reservation = self.part_memory().await;
        let data = self.source_bytes(start, end.max(start)).await?;
        self.parts
            .insert(i, &data, reservation)
            .map_err(FsError::staging)?;
        Ok(())
    }

    /// Take every part still read from the original object into the changed parts, so that
    /// the object may go (the file is unlinked while open): one ranged GET per part.
    pub async fn take_in_source(&mut self) -> FsResult<()> {
        let parts = self.source_valid.div_ceil(self.part_size);
        for i in 0..parts {
            self.materialize(i).await?;
        }
        self.source_valid = 0;
        Ok(())
    }

    pub async fn write(&mut self, offset: u64, data: &[u8]) -> FsResult<()> {
        let end = offset + data.len() as u64;
        if end > self.size {
            self.grow(end).await?;
        }
        let mut pos = offset;
        while pos < end {
            let i = pos / self.part_size;
            let (pstart, pend) = self.part_range(i, self.size);
            if !self.parts.contains(i) && pos == pstart && end >= pend {
                // the write covers the whole part: nothing of the old part is needed
                let reservation = self.part_memory().await;
                let zeros = vec![0u8; (pend - pstart) as usize];
                self.parts
                    .insert(i, &zeros, reservation)
                    .map_err(FsError::staging)?;
            }
            self.materialize(i).await?;
            let upto = end.min(pend);
            let need = (pend - pstart) as usize;
            if self.parts.len(i).unwrap_or(0) < need {
                self.parts.resize(i, need).map_err(FsError::staging)?;
            }
            let from = (pos - pstart) as usize;
            let src = &data[(pos - offset) as usize..(upto - offset) as usize];
            self.parts.write(i, from, src).map_err(FsError::staging)?;
            pos = upto;
        }
        self.changed = true;
        Ok(())
    }

    /// Grow the file: the last part may no longer be the last, so it is materialized and filled.
    async fn grow(&mut self, new_size: u64) -> FsResult<()> {
        let most = self.part_size * u64::from(self.max_parts);
        if new_size > most {
            return Err(FsError::new(
                libc::EFBIG,
                format!(
                    "an object changed in place can grow to {most} bytes ({} parts of {}); \
                     copy it to a new file to make it larger",
                    self.max_parts, self.part_size
                ),
            ));
        }
        if self.size % self.part_size != 0 {
            // a short last part cannot stay short once it is not the last
            let last = self.size / self.part_size;
            self.materialize(last).await?;
        }
        self.size = new_size;
        // pad materialized parts up to their new length
        for i in self.parts.indices() {
            let (s, e) = self.part_range(i, new_size);
            if (self.parts.len(i).unwrap_or(0) as u64) < e - s {
                self.parts
                    .resize(i, (e - s) as usize)
                    .map_err(FsError::staging)?;
            }
        }
        self.changed = true;
        Ok(())
    }

    pub async fn set_size(&mut self, new_size: u64) -> FsResult<()> {
        if new_size >= self.size {
            if new_size > self.size {
                self.grow(new_size).await?;
            }
            return Ok(());
        }
        if new_size % self.part_size != 0 {
            let i = new_size / self.part_size;
            self.materialize(i).await?;
        }
        self.size = new_size;
        self.source_valid = self.source_valid.min(new_size);
        let keep_parts = new_size.div_ceil(self.part_size);
        self.parts.retain(|i| i < keep_parts);
        if let Some(&i) = self.parts.indices().last() {
            let (s, e) = (i * self.part_size, ((i + 1) * self.part_size).min(new_size));
            self.parts
                .resize(i, (e - s) as usize)
                .map_err(FsError::staging)?;
        }
        self.changed = true;
        Ok(())
    }

    pub async fn read(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        let end = (offset + u64::from(len)).min(self.size);
        let mut out = BytesMut::new();
        let mut pos = offset;
        while pos < end {
            let i = pos / self.part_size;
            let (pstart, pend) = self.part_range(i, self.size);
            let upto = end.min(pend);
            if self.parts.contains(i) {
                let got = self
                    .parts
                    .read(i, (pos - pstart) as usize, (upto - pstart) as usize)
                    .map_err(FsError::staging)?;
                out.extend_from_slice(&got);
            } else {
                out.extend_from_slice(&self.source_bytes(pos, upto).await?);
            }
            pos = upto;
        }
        Ok(out.freeze())
    }

    /// Build the new object. Nothing changed: nothing sent (metadata-only changes excepted).
    pub async fn finish(&mut self, opts: &PutOptions) -> FsResult<Uploaded> {
        if !self.changed {
            return Ok(Uploaded {
                etag: self.source_etag.clone(),
                size: self.size,
                multipart: false,
            });
        }
        if self.size <= self.part_size {
            let body = self.read(0, self.size as u32).await?;
            let meta = self
                .client
                .put_object(&self.key, body, opts)
                .await
                .map_err(|e| FsError::from_s3(&e, &self.key))?;
            self.landed();
            self.after_commit(meta.etag.clone());
            return Ok(Uploaded {
                etag: meta.etag,
                size: self.size,
                multipart: false,
            });
        }
        let upload_id = self
            .client
            .create_multipart_upload(&self.key, opts)
            .await
            .map_err(|e| FsError::from_s3(&e, &self.key))?;
        // journaled, so that a crash before it ends leaves no upload the next mount misses
        let local_id = format!("patch-{:016x}", rand::random::<u64>());
        if let Some(j) = &self.journal {
            j.started(&upload_id, &local_id, &self.key, self.client.sends_crc32c());
        }
        let n = self.size.div_ceil(self.part_size);
        // the zero parts' zeros object lives until the upload is complete or aborted
        let zero_lens: Vec<u64> = (0..n)
            .filter(|&i| self.zero_part(i))
            .map(|i| {
                let (s, e) = self.part_range(i, self.size);
                e - s
            })
            .collect();
        let copies = ZeroCopies::prepare(
            &self.client,
            self.journal.as_ref(),
            &self.prefix,
            &zero_lens,
        )
        .await;
        let result = match self.send_parts(&upload_id, n, &copies).await {
            Ok(parts) => self
                .client
                .complete_multipart_upload(&self.key, &upload_id, &parts, &conditions(opts))
                .await
                .map_err(|e| FsError::from_s3(&e, &self.key)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload(&self.key, &upload_id)
                .await;
        }
        copies.finish().await;
        if let Some(j) = &self.journal {
            j.finished(&upload_id, &local_id);
        }
        let etag = result?;
        // journaled before the staged parts are cleared: a crash in between resends nothing
        self.landed();
        self.after_commit(Some(etag.clone()));
        Ok(Uploaded {
            etag: Some(etag),
            size: self.size,
            multipart: true,
        })
    }

    /// Write-back: make this change durable here and journal it, so that the close can
    /// return and its upload follow (this mount's, or after a crash the next mount's, see
    /// `patch_stage.rs`): the changed parts are in the staging file (fsynced with its
    /// directory), and one `pending` line (fsynced) names the source version and the part
    /// plan. Nothing is sent. EAGAIN when the change cannot wait (it is sent now): changed
    /// parts held in memory (no cache dir), no journal, a source without an ETag to make the
    /// copies conditional on, or an object of one part now (sent whole).
    pub async fn stage(&mut self, mut record: PendingRecord) -> FsResult<()> {
        let now = |why: &str| FsError::new(libc::EAGAIN, format!("{why}: sent now instead"));
        let (Some(journal), Some(path), Some(etag)) = (
            self.journal.clone(),
            self.parts.path().map(std::path::Path::to_path_buf),
            self.source_etag.clone(),
        ) else {
            return Err(now("an in-place change that cannot be staged"));
        };
        if !self.changed || self.size <= self.part_size {
            return Err(now("an object of one part"));
        }
        let n = self.size.div_ceil(self.part_size);
        let mut pieces = Vec::new();
        for piece in self.plan(n, false) {
            pieces.push(match piece {
                Piece::Copy(start, end) => PlannedPart::Copy { start, end },
                Piece::Upload(i) | Piece::Zeros(i) => match self.parts.len(i) {
                    Some(len) => PlannedPart::Staged {
                        offset: i * self.part_size,
                        len: len as u64,
                    },
                    None if self.zero_part(i) => {
                        let (s, e) = self.part_range(i, self.size);
                        PlannedPart::Zeros { len: e - s }
                    }
                    None => return Err(now("a part neither changed nor copied")),
                },
            });
        }
        let name = |p: Option<&std::ffi::OsStr>| p.map(|n| n.to_string_lossy().into_owned());
        let (Some(local), Some(file)) = (
            name(path.parent().and_then(|d| d.file_name())),
            name(path.file_name()),
        ) else {
            return Err(now("a staging file without a directory"));
        };
        record.size = self.size;
        record.parts = pieces.len() as u32;
        record.patch = Some(PatchPlan {
            source_key: self.source_key.clone(),
            source_etag: etag,
            part_size: self.part_size,
            file,
            pieces,
        });
        journal
            .pending_after_sync(&local, &record, &[path])
            .map_err(FsError::staging)?;
        self.pending = Some(local);
        self.parts.set_keep(true);
        Ok(())
    }

    /// Write-back: journaled as pending (see `stage`).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The staging directory of the change journaled as pending, if it is.
    pub fn pending_dir(&self) -> Option<std::path::PathBuf> {
        self.pending.as_ref()?;
        self.parts
            .path()?
            .parent()
            .map(std::path::Path::to_path_buf)
    }

    /// Write-back: the journal's pending entry of this change is over (uploaded, or given up
    /// with an unlink, or replaced by a rewrite); its staging file goes with it.
    pub fn landed(&mut self) {
        if let Some(local) = self.pending.take() {
            if let Some(j) = &self.journal {
                j.landed(&local, false);
            }
            self.parts.set_keep(false);
        }
    }

    /// The committed object is the new source: later changes build on it.
    fn after_commit(&mut self, etag: Option<String>) {
        self.source_key = self.key.clone();
        self.source_etag = etag;
        self.source_valid = self.size;
        self.parts.clear();
        self.changed = false;
        // the cache's name for the new version
        let cache = self.cache.take().map(|(c, _, _)| c);
        self.cache = self.cache_entry(cache);
    }

    /// The new object's parts in order: runs of untouched parts as one server-side copy each
    /// (up to [`MAX_COPY_PART`]), zero parts copied from a zeros object (with `zero_copies`),
    /// every other part uploaded. Appending to a 100 MiB object is then one copy and one
    /// upload, not a copy per part.
    fn plan(&self, n: u64, zero_copies: bool) -> Vec<Piece> {
        // a part is copied only when all its bytes are the source's, at the same offsets
        let copyable = |i: u64| self.untouched_source(i).is_some();
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < n {
            let (start, mut end) = self.part_range(i, self.size);
            i += 1;
            if zero_copies && self.zero_part(i - 1) {
                pieces.push(Piece::Zeros(i - 1));
                continue;
            }
            if !copyable(i - 1) {
                pieces.push(Piece::Upload(i - 1));
                continue;
            }
            while i < n && copyable(i) {
                let next_end = self.part_range(i, self.size).1;
                if next_end - start > MAX_COPY_PART {
                    break;
                }
                end = next_end;
                i += 1;
            }
            pieces.push(Piece::Copy(start, end));
        }
        pieces
    }

    /// Part `i`'s range of the source when the part is the source's bytes, untouched and all
    /// still valid (then it can be copied, or read from the source and sent).
    fn untouched_source(&self, i: u64) -> Option<std::ops::Range<u64>> {
        let (s, e) = self.part_range(i, self.size);
        (!self.parts.contains(i) && e <= self.source_valid).then_some(s..e)
    }

    /// Whether part `i` is a zero part: past the source's bytes and never written to (the
    /// zeros the object was extended with, by a truncate or a write past its end).
    fn zero_part(&self, i: u64) -> bool {
        !self.parts.contains(i) && self.part_range(i, self.size).0 >= self.source_valid
    }

    /// The body of part `i` to upload: its changed bytes, the source's, or (a zero part) zeros
    /// that are never held in memory.
    async fn part_body(&self, i: u64) -> FsResult<Payload> {
        let (s, e) = self.part_range(i, self.size);
        if let Some(len) = self.parts.len(i) {
            return self.parts.payload(i, len).map_err(FsError::staging);
        }
        if self.zero_part(i) {
            return Ok(Payload::zeros(e - s));
        }
        Ok(self.source_bytes(s, e).await?.freeze().into())
    }

    async fn send_parts(
        &mut self,
        upload_id: &str,
        n: u64,
        copies: &ZeroCopies,
    ) -> FsResult<Vec<CompletedPart>> {
        if self.client.copies_parts_from(&self.source_key) {
            let plan = self.plan(n, copies.copies());
            match self.send_pieces(upload_id, &plan, copies).await {
                Ok(parts) => return Ok(parts),
                Err(PieceError::S3(e)) if self.client.copy_refused(&self.key, &e) => {}
                Err(e) => return Err(e.into_fs(&self.key)),
            }
        }
        // Without copy every part is uploaded (numbers 1..n replace any sent above).
        let pieces: Vec<Piece> = (0..n).map(Piece::Upload).collect();
        self.send_pieces(upload_id, &pieces, copies)
            .await
            .map_err(|e| e.into_fs(&self.key))
    }

    /// Send `pieces` as parts 1, 2, …, [`PARALLEL_PARTS`] at a time.
    async fn send_pieces(
        &self,
        upload_id: &str,
        pieces: &[Piece],
        copies: &ZeroCopies,
    ) -> Result<Vec<CompletedPart>, PieceError> {
        let mut done = Vec::with_capacity(pieces.len());
        for batch in pieces.chunks(PARALLEL_PARTS).enumerate() {
            let (b, batch) = batch;
            let mut jobs = Vec::new();
            for (k, piece) in batch.iter().enumerate() {
                let part_number = (b * PARALLEL_PARTS + k + 1) as u32;
                let client = self.client.clone();
                let key = self.key.clone();
                let upload_id = upload_id.to_string();
                match *piece {
                    Piece::Zeros(i) => {
                        let (s, e) = self.part_range(i, self.size);
                        jobs.push(
                            async move { copies.send(&key, &upload_id, part_number, e - s).await }
                                .boxed(),
                        );
                    }
                    Piece::Copy(s, e) => {
                        let (src, etag) = (self.source_key.clone(), self.source_etag.clone());
                        jobs.push(
                            async move {
                                client
                                    .upload_part_copy(
                                        &key,
                                        &upload_id,
                                        part_number,
                                        &src,
                                        s..e,
                                        etag.as_deref(),
                                    )
                                    .await
                            }
                            .boxed(),
                        );
                    }
                    Piece::Upload(i) => {
                        let Some(range) = self.untouched_source(i) else {
                            let body = self.part_body(i).await.map_err(PieceError::Fs)?;
                            jobs.push(
                                async move {
                                    client
                                        .upload_part(&key, &upload_id, part_number, body)
                                        .await
                                }
                                .boxed(),
                            );
                            continue;
                        };
                        // a part the server would not copy: the client reads and sends it
                        let (src, etag) = (self.source_key.clone(), self.source_etag.clone());
                        jobs.push(
                            async move {
                                client
                                    .upload_part_from(
                                        &key,
                                        &upload_id,
                                        part_number,
                                        &src,
                                        range,
                                        etag.as_deref(),
                                    )
                                    .await
                            }
                            .boxed(),
                        );
                    }
                }
            }
            let parts = futures::future::try_join_all(jobs)
                .await
                .map_err(PieceError::S3)?;
            done.extend(parts);
        }
        Ok(done)
    }
}

/// One part of a rebuilt object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Source bytes `[start, end)` copied server-side.
    Copy(u64, u64),
    /// Part `i` (of `part_size` bytes) uploaded.
    Upload(u64),
    /// Part `i`, a zero part, copied from the zeros object.
    Zeros(u64),
}

/// Why sending parts failed: an S3 request, or reading a part's bytes.
enum PieceError {
    S3(S3Error),
    Fs(FsError),
}

impl PieceError {
    fn into_fs(self, key: &str) -> FsError {
        match self {
            PieceError::S3(e) => FsError::from_s3(&e, key),
            PieceError::Fs(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::{Credentials, S3Config, StaticCredentials};

    const MIB: u64 = 1024 * 1024;

    fn upload(size: u64) -> PatchUpload {
        let creds = Arc::new(StaticCredentials {
            credentials: Credentials {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: None,
            },
            origin: "test".into(),
        });
        let cfg = S3Config::new("http://127.0.0.1:9", "us-east-1", "b", creds);
        let client = S3Client::new(cfg).expect("client");
        let budget = Arc::new(MemoryBudget::new(64 * MIB));
        PatchUpload::new(
            client,
            budget,
            "k".into(),
            None,
            size,
            8 * MIB,
            10_000,
            None,
            None,
        )
    }

    fn dirty(u: &mut PatchUpload, i: u64) {
        u.parts
            .insert(i, b"x", Reservation::default())
            .expect("in memory");
    }

    #[tokio::test]
    async fn huge_objects_get_parts_that_fit_the_part_count_and_growth_past_it_is_efbig() {
        let mut u = upload(200 << 30);
        let n = u.size.div_ceil(u.part_size);
        assert!(n <= 5_000, "{n} parts for 200 GiB");
        // growing past the part count is refused before anything is fetched or sent
        let most = u.part_size * 10_000;
        assert!(most >= 2 * (200 << 30), "room to grow to twice the size");
        let err = u.set_size(most + 1).await.expect_err("past 10,000 parts");
        assert_eq!(err.errno, libc::EFBIG);
        assert!(
            upload(100 * MIB).part_size == 8 * MIB,
            "small objects keep the part size"
        );
    }

    #[test]
    fn untouched_runs_become_one_copy_each_up_to_the_copy_part_limit() {
        // append to 100 MiB: everything before the last part is one copy
        let mut u = upload(100 * MIB);
        dirty(&mut u, 12);
        assert_eq!(
            u.plan(13, false),
            vec![Piece::Copy(0, 96 * MIB), Piece::Upload(12)]
        );
        // a change in the middle: a copy on each side
        let mut u = upload(100 * MIB);
        dirty(&mut u, 6);
        assert_eq!(
            u.plan(13, false),
            vec![
                Piece::Copy(0, 48 * MIB),
                Piece::Upload(6),
                Piece::Copy(56 * MIB, 100 * MIB)
            ]
        );
        // long runs are cut at MAX_COPY_PART, on part boundaries
        let mut u = upload(1200 * MIB);
        dirty(&mut u, 0);
        let plan = u.plan(150, false);
        assert_eq!(plan[0], Piece::Upload(0));
        assert_eq!(plan[1], Piece::Copy(8 * MIB, 520 * MIB));
        assert_eq!(plan[2], Piece::Copy(520 * MIB, 1032 * MIB));
        assert_eq!(plan[3], Piece::Copy(1032 * MIB, 1200 * MIB));
        assert_eq!(plan.len(), 4);
        // an object extended past its end: the parts nothing wrote are zero parts
        let mut u = upload(16 * MIB);
        u.size = 48 * MIB;
        dirty(&mut u, 4);
        assert_eq!(
            u.plan(6, true),
            vec![
                Piece::Copy(0, 16 * MIB),
                Piece::Zeros(2),
                Piece::Zeros(3),
                Piece::Upload(4),
                Piece::Zeros(5)
            ]
        );
        let plan = u.plan(6, false);
        assert!(plan[1..].iter().all(|p| matches!(p, Piece::Upload(_))));
        // bytes past a truncation are not the source's: that part is uploaded
        let mut u = upload(100 * MIB);
        u.source_valid = 20 * MIB;
        let plan = u.plan(13, false);
        assert_eq!(plan[0], Piece::Copy(0, 16 * MIB));
        assert!(plan[1..].iter().all(|p| matches!(p, Piece::Upload(_))));
    }
}
