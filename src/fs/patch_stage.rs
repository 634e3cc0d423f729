//! Write-back of in-place changes (a `Patch` writer under `--write-back`): the upload of a
//! change journaled with its part plan (`PatchPlan`), sent by the next mount after a crash, and
//! what happens when the version it changed is gone from the bucket (a conflict that cannot be
//! uploaded beside it: the change is kept, journaled and staged, and said so).
//!
//! Where each decision is made:
//! - staging at close: `PatchUpload::stage` (patch.rs) journals the plan; this mount's upload
//!   is the writer's own commit (`PatchUpload::finish`), queued as any write-back file;
//! - the upload from the journal (a later mount): [`Filesystem::send_staged_patch`] — changed
//!   parts from the staged file, untouched ranges copied with
//!   `x-amz-copy-source-if-match: <source ETag>` (read and sent, with `If-Match` on the GET,
//!   where the server refuses part copies), `CompleteMultipartUpload` with `If-Match`;
//! - a changed source (412): [`Filesystem::keep_patch_conflict`] — never uploaded beside it
//!   (its untouched bytes were the old version's, gone now), never dropped.

use futures::StreamExt as _;

use super::journal::UploadJournal;
use super::pending::{PatchPlan, PendingRecord, PlannedPart};
use super::Filesystem;
use crate::s3::{CompletedPart, Payload, PutOptions, S3Client, S3Error};

/// Parts sent or copied at once.
const PARALLEL_PARTS: usize = 8;

/// How one part of the rebuilt object goes.
enum Send {
    /// `[offset, offset + len)` of the staged file.
    File(u64, u64),
    /// Source bytes `[start, end)`, copied server-side.
    Copy(u64, u64),
    /// Source bytes `[start, end)`, read (GET with If-Match) and uploaded.
    Read(u64, u64),
    Zeros(u64),
}

/// The parts in order: with `copies`, the plan as journaled; else every copy range is read
/// and sent, cut into parts of the plan's part size.
fn sends(plan: &PatchPlan, copies: bool) -> Vec<Send> {
    let mut out = Vec::new();
    for piece in &plan.pieces {
        match *piece {
            PlannedPart::Staged { offset, len } => out.push(Send::File(offset, len)),
            PlannedPart::Zeros { len } => out.push(Send::Zeros(len)),
            PlannedPart::Copy { start, end } if copies => out.push(Send::Copy(start, end)),
            PlannedPart::Copy { start, end } => {
                let step = plan.part_size.max(1);
                let mut at = start;
                while at < end {
                    let to = (at + step).min(end);
                    out.push(Send::Read(at, to));
                    at = to;
                }
            }
        }
    }
    out
}

/// Send `parts` as parts 1, 2, … of `upload_id`, [`PARALLEL_PARTS`] at a time.
async fn send_parts(
    client: &S3Client,
    key: &str,
    upload_id: &str,
    plan: &PatchPlan,
    file: &std::path::Path,
    parts: Vec<Send>,
) -> Result<Vec<CompletedPart>, S3Error> {
    let file = std::sync::Arc::new(file.to_path_buf());
    let (src, etag) = (plan.source_key.as_str(), Some(plan.source_etag.as_str()));
    let jobs = parts.into_iter().enumerate().map(|(i, part)| {
        let n = i as u32 + 1;
        let file = file.clone();
        async move {
            match part {
                Send::File(offset, len) => {
                    let body = Payload::File {
                        path: file,
                        offset,
                        len,
                    };
                    client.upload_part(key, upload_id, n, body).await
                }
                Send::Zeros(len) => {
                    client
                        .upload_part(key, upload_id, n, Payload::zeros(len))
                        .await
                }
                Send::Copy(s, e) => {
                    client
                        .upload_part_copy(key, upload_id, n, src, s..e, etag)
                        .await
                }
                Send::Read(s, e) => {
                    client
                        .upload_part_from(key, upload_id, n, src, s..e, etag)
                        .await
                }
            }
        }
    });
    let mut done: Vec<CompletedPart> = futures::stream::iter(jobs)
        .buffer_unordered(PARALLEL_PARTS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    done.sort_by_key(|p| p.part_number);
    Ok(done)
}

impl Filesystem {
    /// Upload a change in place journaled by an earlier run (write-back, see the module
    /// docs): one multipart upload, journaled while it runs (a mount that stops meanwhile
    /// leaves it for the next to abort), aborted when it fails. A changed source fails with
    /// 412 (`is_precondition_failed`), from a copy, a read or the completion.
    pub(crate) async fn send_staged_patch(
        &self,
        journal: &UploadJournal,
        local: &str,
        record: &PendingRecord,
        plan: &PatchPlan,
    ) -> Result<(), S3Error> {
        let key = record.key.as_str();
        let file = journal.parts_dir(local).join(&plan.file);
        let opts = record.options();
        let create = PutOptions {
            if_match: None,
            if_none_match_any: false,
            ..opts.clone()
        };
        let upload_id = self.client.create_multipart_upload(key, &create).await?;
        let tag = format!("patch-{:016x}", rand::random::<u64>());
        journal.started(&upload_id, &tag, key, self.client.sends_crc32c());
        let copies = self.client.copies_parts_from(&plan.source_key);
        let mut sent = send_parts(
            &self.client,
            key,
            &upload_id,
            plan,
            &file,
            sends(plan, copies),
        )
        .await;
        if copies && matches!(&sent, Err(e) if self.client.copy_refused(key, e)) {
            // numbers 1.. again replace whatever went above
            sent = send_parts(
                &self.client,
                key,
                &upload_id,
                plan,
                &file,
                sends(plan, false),
            )
            .await;
        }
        let result = match sent {
            Ok(parts) => {
                let completion = PutOptions {
                    if_match: opts.if_match.clone(),
                    if_none_match_any: opts.if_none_match_any,
                    ..PutOptions::default()
                };
                self.client
                    .complete_multipart_upload(key, &upload_id, &parts, &completion)
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            if let Err(e) = self.client.abort_multipart_upload(key, &upload_id).await {
                tracing::warn!(key, "could not abort multipart upload: {e}");
                return result;
            }
        }
        journal.ended(&upload_id);
        result
    }

    /// The object changed in the bucket while an in-place change of it (`key`) waited for
    /// its upload. Unlike a whole file it cannot go beside it as `NAME.conflict-…`: its
    /// untouched bytes were the old version's, which is gone. So nothing is sent and nothing
    /// dropped: the changed parts stay in the staging area (`kept_in`) and the journal's
    /// pending entry stays (each later mount tries again, and says so), one log line says
    /// where, and `write_back_conflicts` counts it.
    pub(crate) fn keep_patch_conflict(&self, key: &str, kept_in: &std::path::Path) {
        tracing::error!(
            key,
            staged = %kept_in.display(),
            "the object changed in the bucket while this mount's change in place of it waited \
             for its upload: not uploaded (its unchanged bytes were those of the version it \
             changed, which is gone) and nothing overwritten; the changed parts stay in the \
             staging area and the journal (each mount tries again)"
        );
        self.write_back_queue.count_conflict();
    }
}
