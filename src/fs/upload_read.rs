//! Reading an upload's parts back from the staging area: what the file shows while it is
//! written (the unsent bytes, the part files of parts already queued), and a part's file as a
//! request body, with the CRC32C computed while it was written when the file still holds it.

use bytes::Bytes;

use super::super::blocking::blocking;
use super::super::error::{FsError, FsResult};
use super::super::part_crc::FileCrcs;
use super::{part_size_for, Upload};
use crate::s3::Payload;

impl Upload {
    /// Read back what was written: the bytes not yet sent, and (with `--cache-dir`, whose part
    /// files stay until the upload completes) the parts already sent. In memory, parts already
    /// sent are only on the server, inside the unfinished upload: EIO, with the reason.
    pub fn read_buffered(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        if self.sealed {
            return Err(FsError::new(
                libc::EINVAL,
                "the file's upload is complete; reopen it to read it",
            ));
        }
        let start = self.buffer_start();
        let end = (offset + u64::from(len)).min(self.size());
        if offset >= start || offset >= end {
            let rel = offset.saturating_sub(start) as usize;
            return self
                .buffer
                .read(rel, rel + len as usize)
                .map_err(FsError::staging);
        }
        let journal = match &self.journal {
            Some(j) if !self.buffer.in_memory() => j,
            _ => {
                return Err(FsError::new(
                    libc::EIO,
                    "the bytes asked for were sent in an upload that is not complete yet, and \
                     are not kept here (they are with --cache-dir); they can be read once it is",
                ))
            }
        };
        if offset < start {
            self.part_files.wait().map_err(FsError::staging)?;
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        let (mut n, mut part_start) = (1u32, 0u64);
        let mut pos = offset;
        while pos < end {
            if pos >= start {
                let rel = (pos - start) as usize;
                let rest = self
                    .buffer
                    .read(rel, rel + (end - pos) as usize)
                    .map_err(FsError::staging)?;
                out.extend_from_slice(&rest);
                break;
            }
            let part_len = part_size_for(n, self.limits.base, self.limits.max);
            if pos >= part_start + part_len {
                part_start += part_len;
                n += 1;
                continue;
            }
            let take = (end.min(part_start + part_len).min(start) - pos) as usize;
            self.check_not_evicted(n)
                .map_err(|e| FsError::new(libc::EIO, e.reason))?;
            let mut buf = vec![0u8; take];
            blocking(|| {
                let file = std::fs::File::open(journal.part_path(&self.local_id, n))?;
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, pos - part_start)
            })
            .map_err(FsError::staging)?;
            out.extend_from_slice(&buf);
            pos += take as u64;
        }
        Ok(Bytes::from(out))
    }

    /// Part `n` as staged on disk, to be sent from its file (with its CRC32C in `crcs`, if
    /// the file still holds what it was computed from).
    pub(super) fn read_part_file(&self, n: u32, crcs: &FileCrcs) -> FsResult<Payload> {
        let journal = self
            .journal
            .as_ref()
            .ok_or_else(|| FsError::new(libc::EIO, "no staging directory"))?;
        let path = journal.part_path(&self.local_id, n);
        let len = blocking(|| std::fs::metadata(&path))
            .map_err(FsError::staging)?
            .len();
        Ok(Payload::file(&path, len).with_crc32c(crcs.get(n, len)))
    }
}
