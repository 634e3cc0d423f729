//! Write-back's side of an upload: its parts made durable in the staging area and journaled
//! as pending at close (nothing sent), and the pending entry's end once it landed.

use super::super::error::{FsError, FsResult};
use super::{PendingRecord, Upload};
use crate::s3::PutOptions;

impl Upload {
    /// Write-back: make everything written so far durable here — full parts split into their
    /// files, the tail written out, every part file fsynced — and journal `record` (with the
    /// part count filled in) so that a later mount uploads it should this daemon stop. The
    /// close can then return. Nothing is sent. Fails (and journals nothing) when the parts
    /// are not all on disk (an upload begun before the file was last fsynced streams them).
    pub async fn stage(&mut self, opts: &PutOptions, mut record: PendingRecord) -> FsResult<()> {
        let Some(journal) = self.journal.clone().filter(|_| !self.buffer.in_memory()) else {
            return Err(FsError::new(
                libc::EIO,
                "no staging area to keep the file in",
            ));
        };
        if self.sealed || (!self.defer_sends && self.mpu.is_some()) {
            return Err(FsError::new(
                libc::EAGAIN,
                "its upload already streams parts: sent now instead",
            ));
        }
        self.check_failed()?;
        self.reopen().await?;
        let defer = std::mem::replace(&mut self.defer_sends, true);
        let split = async {
            while self.buffer.len() as u64 > self.current_part_size() {
                self.queue_part(opts).await?;
            }
            Ok::<_, FsError>(())
        }
        .await;
        self.defer_sends = defer;
        split?;
        self.part_files.wait().map_err(FsError::staging)?;
        self.buffer.flush_tail().map_err(FsError::staging)?;
        let last = self.mpu.as_ref().map_or(1, |m| m.next_part);
        if last == 1 {
            // an empty file's one part is on disk too
            self.buffer.create_file().map_err(FsError::staging)?;
        }
        let parts = if last > 1 && self.buffer.is_empty() {
            last - 1
        } else {
            last
        };
        let paths: Vec<_> = (1..=parts)
            .map(|n| journal.part_path(&self.local_id, n))
            .collect();
        record.parts = parts;
        record.size = self.size();
        journal
            .pending_after_sync(&self.local_id, &record, &paths)
            .map_err(FsError::staging)?;
        self.pending = true;
        Ok(())
    }

    /// Write-back: the journal's pending entry of this upload is over (uploaded, dropped with
    /// an unlink, replaced by a rewrite, or staged again with new content).
    pub fn landed(&mut self) {
        if std::mem::take(&mut self.pending) {
            if let Some(j) = &self.journal {
                j.landed(&self.local_id, false);
            }
        }
    }

    /// Write-back: journaled as pending.
    pub fn is_pending(&self) -> bool {
        self.pending
    }
}
