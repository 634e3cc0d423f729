//! Zeros nobody wrote (a hole, a file extended by truncate or by a write past its end) are not
//! sent: an upload with at least two such zero parts puts one hidden zeros object, copies each
//! zero part from it server-side (UploadPartCopy), and deletes it when the upload ends.
//!
//! Where each decision is made:
//! - whether a part of a new file is a zero part: [`WrittenParts::is_zero_part`] (every part
//!   no write ever touched, or touched only before a truncate cut it off); for an object
//!   changed in place, `PatchUpload::zero_part` (a part past the original bytes that nothing
//!   wrote to);
//! - whether an upload copies its zero parts: [`ZeroCopies::prepare`] (at least two zero
//!   parts, a server that copies parts, an upload journal to record the zeros object in, no
//!   object lock that would keep it);
//! - how one zero part goes: [`ZeroCopies::send`] (copied, or its zeros sent where the server
//!   refuses the copy).
//!
//! The zeros object is `<mount prefix>.bucketfs-zeros-<16 hex digits>`, as large as the
//! largest zero part, its body streamed from a static block of zeros ([`Payload::Zeros`]);
//! listings leave such names out ([`is_zeros_object`]). Its key is journaled before it is
//! created and again once it is deleted, so a mount that stops in between leaves it for the
//! next mount to delete ([`delete_leftovers`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::journal::UploadJournal;
use crate::s3::{CompletedPart, Payload, PutOptions, S3Client, S3Error};

/// What the name of a zeros object starts with (after the mount's prefix).
pub const ZEROS_NAME_PREFIX: &str = ".bucketfs-zeros-";

/// Fewest zero parts worth a zeros object: with one, the extra PutObject and DeleteObject
/// cost more than they save.
const MIN_ZERO_PARTS: usize = 2;

/// Whether a name in a listing is a zeros object (left out of listings).
pub fn is_zeros_object(name: &str) -> bool {
    name.starts_with(ZEROS_NAME_PREFIX)
}

/// The parts of a file being written that hold bytes the application wrote, as runs of part
/// numbers. Every other part is a zero part: a hole, or zeros the file was extended with.
#[derive(Debug, Default, Clone)]
pub struct WrittenParts {
    /// First part of each run → one past its last; runs neither overlap nor touch.
    runs: BTreeMap<u32, u32>,
}

impl WrittenParts {
    /// Parts `first..=last` hold written bytes.
    pub fn wrote(&mut self, first: u32, last: u32) {
        let (mut start, mut end) = (first, last.saturating_add(1));
        if let Some((&s, &e)) = self.runs.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let within: Vec<u32> = self.runs.range(start..=end).map(|(&s, _)| s).collect();
        for s in within {
            if let Some(e) = self.runs.remove(&s) {
                end = end.max(e);
            }
        }
        self.runs.insert(start, end);
    }

    /// The file was cut before part `n`: parts from `n` on hold nothing written any more
    /// (grown again, they are zeros).
    pub fn cut_from(&mut self, n: u32) {
        self.runs.retain(|&s, _| s < n);
        if let Some((_, e)) = self.runs.iter_mut().next_back() {
            *e = (*e).min(n);
        }
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Whether part `n` is a zero part: no byte of it was written.
    pub fn is_zero_part(&self, n: u32) -> bool {
        self.runs
            .range(..=n)
            .next_back()
            .is_none_or(|(_, &e)| e <= n)
    }
}

/// The zero parts of one upload: copied from a zeros object when that is worth it, else sent.
pub struct ZeroCopies {
    client: S3Client,
    journal: Option<Arc<UploadJournal>>,
    /// The zeros object's key, while it exists.
    object: Option<String>,
}

impl ZeroCopies {
    /// Zero parts sent as zeros (no zeros object).
    pub fn none(client: &S3Client) -> ZeroCopies {
        ZeroCopies {
            client: client.clone(),
            journal: None,
            object: None,
        }
    }

    /// For an upload whose zero parts have the lengths `zero_lens`: creates the zeros object
    /// (under `prefix`, the mount's) when copying them is worth it — at least
    /// [`MIN_ZERO_PARTS`], a server that copies parts, a journal to record it in (a crash must
    /// not leave it for good), and no object lock (it could not be deleted). When it cannot
    /// be created, the zeros are sent.
    pub async fn prepare(
        client: &S3Client,
        journal: Option<&Arc<UploadJournal>>,
        prefix: &str,
        zero_lens: &[u64],
    ) -> ZeroCopies {
        let mut copies = ZeroCopies::none(client);
        let worth = zero_lens.len() >= MIN_ZERO_PARTS
            && client.copies_parts()
            && client.config().object_lock.is_none();
        let (Some(journal), true) = (journal, worth) else {
            return copies;
        };
        let len = zero_lens.iter().copied().max().unwrap_or(0);
        let key = format!("{prefix}{ZEROS_NAME_PREFIX}{:016x}", rand::random::<u64>());
        journal.zeros_created(&key);
        copies.journal = Some(journal.clone());
        match client
            .put_object(&key, Payload::zeros(len), &PutOptions::default())
            .await
        {
            Ok(_) => {
                tracing::debug!(
                    key = %key,
                    len,
                    parts = zero_lens.len(),
                    "zero parts are copied from a zeros object"
                );
                copies.object = Some(key);
            }
            Err(e) => {
                tracing::warn!(key = %key, "cannot create a zeros object, sending the zeros: {e}");
                // its answer may have been lost after it landed
                copies.delete(key).await;
            }
        }
        copies
    }

    /// Whether the zero parts are copied (a zeros object exists).
    pub fn copies(&self) -> bool {
        self.object.is_some()
    }

    /// Part `part_number` of upload `upload_id` of `key`: `len` zeros, copied from the zeros
    /// object, or sent where there is none or the server will not copy from it (UploadPartCopy
    /// refused, or another answer that a retry would not change, such as an archived
    /// storage class).
    pub async fn send(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<CompletedPart, S3Error> {
        if let Some(zeros) = &self.object {
            let copied = self
                .client
                .upload_part_copy(key, upload_id, part_number, zeros, 0..len, None)
                .await;
            match copied {
                Ok(part) => return Ok(part),
                Err(e) if self.client.copy_refused(key, &e) => {}
                Err(e) if !e.is_retryable() => {
                    tracing::debug!(key, part_number, "zero part not copied, sent: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        self.client
            .upload_part(key, upload_id, part_number, Payload::zeros(len))
            .await
    }

    /// The upload is over (completed, aborted or failed): the zeros object goes.
    pub async fn finish(mut self) {
        if let Some(key) = self.object.take() {
            self.delete(key).await;
        }
    }

    async fn delete(&self, key: String) {
        let Some(journal) = &self.journal else {
            return;
        };
        match self.client.delete_object(&key).await {
            Ok(()) => journal.zeros_deleted(&key),
            Err(e) => tracing::warn!(
                key = %key,
                "cannot delete the zeros object; the next mount deletes it: {e}"
            ),
        }
    }
}

/// At mount: delete the zeros objects an earlier mount created and did not delete (it
/// stopped during an upload). The keys deleted; the others stay journaled for the next mount.
pub async fn delete_leftovers(
    client: &S3Client,
    journal: &UploadJournal,
    keys: Vec<String>,
) -> Vec<String> {
    let mut deleted = Vec::new();
    for key in keys {
        match client.delete_object(&key).await {
            Ok(()) => {
                journal.zeros_deleted(&key);
                tracing::info!(key = %key, "deleted a zeros object an earlier bucketfs left");
                deleted.push(key);
            }
            Err(e) => tracing::warn!(
                key = %key,
                "cannot delete a zeros object an earlier bucketfs left; tried again at the \
                 next mount: {e}"
            ),
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_runs_merge_and_a_cut_makes_zero_parts_again() {
        let mut w = WrittenParts::default();
        assert!(w.is_zero_part(1));
        w.wrote(1, 1);
        w.wrote(2, 3);
        w.wrote(7, 7);
        assert_eq!(w.runs.len(), 2, "{:?}", w.runs);
        assert!(!w.is_zero_part(3));
        assert!((4..=6).all(|n| w.is_zero_part(n)));
        assert!(!w.is_zero_part(7) && w.is_zero_part(8));
        // a run that bridges others swallows them
        w.wrote(3, 8);
        assert_eq!(w.runs.len(), 1, "{:?}", w.runs);
        assert!((1..=8).all(|n| !w.is_zero_part(n)));
        // cut before part 5: 5 and on are zeros again
        w.cut_from(5);
        assert!(!w.is_zero_part(4) && w.is_zero_part(5) && w.is_zero_part(8));
        w.wrote(10, 12);
        w.cut_from(11);
        assert!(!w.is_zero_part(10) && w.is_zero_part(11));
        w.clear();
        assert!(w.is_zero_part(1));
    }

    #[test]
    fn zeros_objects_are_told_by_their_name() {
        assert!(is_zeros_object(".bucketfs-zeros-0123456789abcdef"));
        assert!(!is_zeros_object("bucketfs-zeros-1"));
        assert!(!is_zeros_object(".bucketfs"));
    }
}
