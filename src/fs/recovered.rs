//! Write-back after a crash: the files an earlier bucketfs closed and did not upload are shown
//! by the next mount from their part files, as the daemon that staged them showed them, until
//! their uploads (`recovery.rs`) land. Where each decision is made:
//! - which pending entries are shown, and how: [`Filesystem::show_recovered`] (the latest entry
//!   of each file key, as a node that exists only here, attributes from its journaled headers);
//! - reads: [`StagedFile`] (part `n` of the entry, sizes from `part_size_for`);
//! - a change before it lands (a write, truncate, attribute change, rename, a new file over it):
//!   [`Filesystem::land_recovered`] sends it first (EIO while it cannot go); an unlink withdraws
//!   it instead ([`Filesystem::withdraw_recovered`]);
//! - what the mount shows once it landed (or went to a conflict name): the bucket's object
//!   ([`Filesystem::unshow_recovered`]).

use std::collections::HashMap;
use std::os::unix::fs::FileExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::attr::{Attr, FileKind};
use super::blocking::blocking;
use super::error::{FsError, FsResult};
use super::file_io::Handle;
use super::inode::ROOT_INO;
use super::journal::UploadJournal;
use super::namespace::check_name;
use super::object_meta::StoredMeta;
use super::part_sizes::{part_holding, part_size_for, PartLimits};
use super::upload::PendingRecord;
use super::{Filesystem, Opened};
use crate::s3::ObjectMeta;

/// Part files a read handle opens at once (the rest as reads reach them): a file whose upload
/// lands while it is open (its part files go) stays readable that far.
const PARTS_OPENED_AT_ONCE: u32 = 64;

/// One pending entry an earlier run left in the journal.
pub(crate) struct Recovered {
    pub(crate) local: String,
    pub(crate) record: PendingRecord,
    /// The inode showing it (0: not shown, see `show_recovered`).
    ino: AtomicU64,
    /// Held while it is sent or withdrawn.
    pub(crate) fate: tokio::sync::Mutex<Fate>,
}

/// What became of a recovered entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Waiting,
    /// In the bucket (under its key or a conflict name).
    Landed,
    /// Unlinked before it landed: never sent.
    Withdrawn,
    /// A change in place whose source changed in the bucket: kept in the journal and the
    /// staging area, not sent (see `patch_stage.rs`).
    Conflict,
}

impl Recovered {
    pub(crate) fn new(local: String, record: PendingRecord) -> Arc<Recovered> {
        Arc::new(Recovered {
            local,
            record,
            ino: AtomicU64::new(0),
            fate: tokio::sync::Mutex::new(Fate::Waiting),
        })
    }

    /// A file (not a directory marker a mkdir could not write).
    fn is_file(&self) -> bool {
        self.record.parts > 0 && !self.record.key.ends_with('/')
    }

    /// The entry as an object's metadata, for the attributes (the s3fs headers it carries).
    fn as_meta(&self) -> ObjectMeta {
        let r = &self.record;
        ObjectMeta {
            size: r.size,
            etag: None,
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(r.closed_at)),
            content_type: r.content_type.clone(),
            storage_class: None,
            user_metadata: r.user_metadata.clone(),
            content_headers: r.content_headers.clone(),
        }
    }

    /// Whether its part files are laid out as this mount's part sizes say (else the part size
    /// changed since: it is uploaded, not shown).
    fn fits(&self, limits: &PartLimits) -> bool {
        let r = &self.record;
        let size = |n: u32| part_size_for(n, limits.base, limits.max);
        let full: u64 = (1..r.parts).map(size).sum();
        r.parts >= 1 && r.size <= full + size(r.parts) && (r.parts == 1 || r.size > full)
    }
}

/// A read-only open of a recovered file: its bytes from its part files.
pub(crate) struct StagedFile {
    pub(crate) ino: u64,
    entry: Arc<Recovered>,
    journal: Arc<UploadJournal>,
    limits: PartLimits,
    parts: parking_lot::Mutex<HashMap<u32, Arc<std::fs::File>>>,
}

impl StagedFile {
    fn part(&self, n: u32) -> FsResult<Arc<std::fs::File>> {
        if let Some(f) = self.parts.lock().get(&n) {
            return Ok(f.clone());
        }
        match std::fs::File::open(self.journal.part_path(&self.entry.local, n)) {
            Ok(f) => {
                let f = Arc::new(f);
                self.parts.lock().insert(n, f.clone());
                Ok(f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FsError::new(
                libc::ESTALE,
                "the file was uploaded while open here; open it again to read it",
            )),
            Err(e) => Err(FsError::staging(e)),
        }
    }

    /// Up to `len` bytes from `offset`.
    pub(crate) async fn read(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        blocking(|| self.read_now(offset, len))
    }

    fn read_now(&self, offset: u64, len: u32) -> FsResult<Bytes> {
        let end = offset
            .saturating_add(u64::from(len))
            .min(self.entry.record.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let (base, max) = (self.limits.base, self.limits.max);
        let mut out = vec![0u8; (end - offset) as usize];
        let (mut n, mut start) = part_holding(offset, base, max);
        let mut pos = offset;
        while pos < end {
            let upto = end.min(start + part_size_for(n, base, max));
            let buf = &mut out[(pos - offset) as usize..(upto - offset) as usize];
            self.part(n)?
                .read_exact_at(buf, pos - start)
                .map_err(FsError::staging)?;
            start += part_size_for(n, base, max);
            pos = upto;
            n += 1;
        }
        Ok(Bytes::from(out))
    }
}

impl Filesystem {
    /// At mount: the files an earlier run closed and did not upload are shown (the latest
    /// entry of each key) as nodes that exist only here — size, mode, owner and times from
    /// the journaled headers, their directories with them — until they land.
    pub(crate) fn show_recovered(&self) {
        let entries = self.leftovers.pending_entries();
        // the newest entry of each key is the file as it was closed last
        let mut latest: HashMap<&str, &Arc<Recovered>> = HashMap::new();
        for r in entries.iter().filter(|r| !r.record.key.ends_with('/')) {
            latest.insert(&r.record.key, r);
        }
        for r in latest.into_values() {
            // a change in place is not shown (its untouched bytes are the source version's),
            // nor an older entry of its key (a mount showed the file as closed before the
            // change): its lookups wait for recovery to try it instead (see `lookup`)
            if !r.is_file() || r.record.patch.is_some() {
                self.leftovers.hide(&r.record.key);
                continue;
            }
            if !r.fits(&self.limits) {
                tracing::warn!(
                    key = %r.record.key,
                    "a file closed before bucketfs stopped was staged with another part size: \
                     not shown until it is uploaded"
                );
                self.leftovers.hide(&r.record.key);
                continue;
            }
            if let Some(ino) = self.show_one(r) {
                r.ino.store(ino, Ordering::Release);
                self.leftovers.show(ino, r.clone());
            }
        }
    }

    fn show_one(&self, r: &Recovered) -> Option<u64> {
        let rel = r.record.key.strip_prefix(self.config.prefix.as_str())?;
        let names: Vec<&str> = rel.split('/').collect();
        if names.iter().any(|n| check_name(n).is_err()) {
            return None;
        }
        let (name, dirs) = names.split_last()?;
        let meta = r.as_meta();
        let attr = Attr::from_meta(0, FileKind::File, &meta, &self.config);
        let now = Instant::now();
        let mut t = self.inodes.lock();
        let (mut parent, mut key) = (ROOT_INO, self.config.prefix.clone());
        for d in dirs {
            key.push_str(d);
            key.push('/');
            parent = match t.child(parent, d) {
                Some(n) if n.kind() == FileKind::Directory => n.ino,
                // known through this file until the bucket is asked (see `lookup`)
                _ => {
                    let dir = Attr::new(0, FileKind::Directory, 0, &self.config, SystemTime::now());
                    t.upsert_child(parent, d, key.clone(), dir, None, false, now)
                }
            };
        }
        let ino = t.upsert_child(parent, name, r.record.key.clone(), attr, None, false, now);
        t.set_local_only(ino, true);
        if let Some(n) = t.get_mut(ino) {
            n.attr = Attr { ino, ..attr };
            n.meta = StoredMeta::from_object(&meta);
            n.etag = None;
        }
        Some(ino)
    }

    /// A read-only open of a recovered file still waiting: reads come from its part files.
    /// `None`: not one (or it landed meanwhile): the usual open.
    pub(crate) fn open_staged(&self, ino: u64) -> Option<Opened> {
        let entry = self.leftovers.shown(ino)?;
        let journal = self.store.journal.clone()?;
        let staged = StagedFile {
            ino,
            entry,
            journal,
            limits: self.limits,
            parts: Default::default(),
        };
        let first = staged.entry.record.parts.min(PARTS_OPENED_AT_ONCE);
        if blocking(|| (1..=first).try_for_each(|n| staged.part(n).map(drop))).is_err() {
            return None;
        }
        if let Some(n) = self.inodes.lock().get_mut(ino) {
            n.open_handles += 1;
            n.page_cache_etag = None;
        }
        let fh = self.handles.next_fh();
        self.handles.insert(fh, Handle::Staged(Arc::new(staged)));
        Some(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        })
    }

    /// A recovered file still waiting is sent before it is changed (written, truncated, its
    /// attributes or xattrs set, renamed, replaced): EIO, said once in the log, while it
    /// cannot go. Nothing to do for other files.
    pub(crate) async fn land_recovered(&self, ino: u64) -> FsResult<()> {
        let Some(r) = self.leftovers.shown(ino) else {
            return Ok(());
        };
        let Some(journal) = self.store.journal.clone() else {
            return Ok(());
        };
        match self.send_recovered(&journal, &r).await {
            Ok(landed) => {
                if landed.is_some() {
                    // the bucket's attributes and ETag, for the change to come (which asks
                    // again itself should this fail)
                    let _ = self.getattr(ino).await;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    key = %r.record.key,
                    "a file closed before bucketfs stopped is still waiting for its upload, \
                     which cannot go now ({e}): it cannot be changed until it has (EIO)"
                );
                Err(FsError::new(
                    libc::EIO,
                    format!("waiting for its upload from before a restart, which failed: {e}"),
                ))
            }
        }
    }

    /// [`land_recovered`](Self::land_recovered) for every recovered file under `prefix` (a
    /// directory renamed, or `sync DIR`).
    pub(crate) async fn land_recovered_under(&self, prefix: &str) -> FsResult<()> {
        for ino in self.leftovers.shown_under(prefix) {
            self.land_recovered(ino).await?;
        }
        Ok(())
    }

    /// unlink of a recovered file still waiting: it is never sent (its entry and part files
    /// go, as an unlink of a waiting file does in the daemon that staged it). An older version
    /// in the bucket goes now (EIO, still waiting, if it cannot); the node stays one that
    /// exists only here, so the unlink that follows sends nothing more.
    pub(crate) async fn withdraw_recovered(&self, ino: u64) -> FsResult<()> {
        let Some(r) = self.leftovers.shown(ino) else {
            return Ok(());
        };
        let Some(journal) = self.store.journal.clone() else {
            return Ok(());
        };
        let mut fate = r.fate.lock().await;
        if *fate != Fate::Waiting {
            // landed meanwhile: the unlink takes the bucket's object
            return Ok(());
        }
        let key = &r.record.key;
        if !r.record.if_none_match {
            self.client
                .delete_object(key)
                .await
                .map_err(|e| FsError::from_s3(&e, key))?;
        }
        journal.landed(&r.local, true);
        *fate = Fate::Withdrawn;
        drop(fate);
        self.leftovers.unshow(ino);
        tracing::info!(key = %key, "unlinked before its upload: a file closed before bucketfs stopped is not sent");
        Ok(())
    }

    /// A recovered entry landed (at `landed_at`, its key or a conflict name): its node shows
    /// the bucket's object again — cached attributes, listing and missing names dropped, the
    /// kernel told.
    pub(crate) fn unshow_recovered(&self, r: &Recovered, landed_at: &str) {
        // (told even when it was not shown: `wait_uploads_landed` looks again)
        let ino = r.ino.load(Ordering::Acquire);
        if self.leftovers.unshow(ino).is_none() {
            return;
        }
        let (parent, name) = {
            let mut t = self.inodes.lock();
            let Some(n) = t.get_mut(ino) else { return };
            n.attr_expires = Instant::now();
            n.etag = None;
            n.meta = StoredMeta::default();
            let at = (n.parent, n.name.clone());
            t.set_local_only(ino, false);
            t.drop_listing(at.0);
            t.settle(ino);
            at
        };
        self.forget_missing(parent, &name);
        if let Some(other) = landed_at.rsplit('/').next().filter(|n| *n != name) {
            self.forget_missing(parent, other);
        }
        self.invalidate_entry(parent, &name);
    }
}
