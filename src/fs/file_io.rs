//! Open files: read handles with prefetch, write handles with their upload, flush and release.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::attr::{Attr, FileKind};
use super::closer::{
    closes_for_the_opener, holds_another_descriptor, killed_by_signal, process_of, CloseRoute,
    Closing,
};
use super::error::{FsError, FsResult};
use super::inode::ListedChild;
use super::namespace::{check_name, DirState};
use super::patch::PatchUpload;
use super::prefetch::Prefetcher;
use super::upload::{Upload, Uploaded};
use futures::StreamExt as _;

use super::{Caller, Filesystem, Opened, ShutdownReport};
use crate::s3::profile::Holds;
use crate::s3::PutOptions;

/// Uploads finished at once at unmount.
const SHUTDOWN_PARALLEL: usize = 16;

/// An open file or directory.
#[derive(Clone)]
pub(crate) enum Handle {
    Dir(Arc<tokio::sync::Mutex<DirState>>),
    /// A generated read-only file (`.bucketfs/stats`).
    Static(Bytes),
    Read(Arc<ReadHandle>),
    Write(Arc<WriteHandle>),
    /// A read-only open of a file a writer holds (still writing, or its upload failed):
    /// reads come from the writer.
    Peek(Arc<WriteHandle>),
    /// A read-only open of a file an earlier run closed and did not upload yet: reads come
    /// from its part files (see `recovered.rs`).
    Staged(Arc<super::recovered::StagedFile>),
}

pub(crate) struct ReadHandle {
    ino: u64,
    prefetcher: parking_lot::Mutex<Prefetcher>,
    /// Some bytes were read through it: from then on it reads that version or fails (ESTALE).
    served: AtomicBool,
    /// The ETag the file had here when it was opened.
    opened_etag: Option<String>,
}

pub(crate) struct WriteHandle {
    ino: u64,
    /// The process that opened it (0: not known): its close uploads, see `flush`.
    opener: AtomicU32,
    /// Released by the kernel after its upload failed, or while it waits for its upload
    /// (write-back), and kept (under its old handle number) so that its data stays readable
    /// and is sent at the next close or fsync (or by the uploader). Changed only by `Handles`.
    pub(super) kept: AtomicBool,
    /// Open handles (kernel file handles) sharing this writer. Changed only by `Handles`.
    pub(super) fhs: AtomicU32,
    state: tokio::sync::Mutex<WriteState>,
    /// Bytes not yet uploaded, as of the last write (for stats while the state is busy).
    pending_bytes: std::sync::atomic::AtomicU64,
}

impl WriteHandle {
    /// The file it writes.
    pub(crate) fn ino(&self) -> u64 {
        self.ino
    }

    /// Some descriptor still has it open (it is not only kept, see `release`).
    pub(crate) fn is_open(&self) -> bool {
        !self.kept.load(Ordering::Relaxed)
    }

    /// It holds changes the bucket does not have (or is busy: taken as so).
    pub(crate) fn holds_news(&self) -> bool {
        match self.state.try_lock() {
            Ok(st) => !st.discarded && (st.dirty || !st.committed),
            Err(_) => true,
        }
    }

    /// The staging directory of its in-place change waiting for its upload (write-back), if
    /// it is one.
    pub(crate) async fn pending_patch_dir(&self) -> Option<std::path::PathBuf> {
        match &self.state.lock().await.upload {
            Writer::Patch(p) => p.pending_dir(),
            Writer::Stream(_) => None,
        }
    }

    /// It changes an existing large object in place (its unchanged bytes are that object's).
    pub(crate) async fn changes_in_place(&self) -> bool {
        matches!(self.state.lock().await.upload, Writer::Patch(_))
    }

    /// Its next commit creates the object (`If-None-Match: *`): a conflict's new name.
    pub(crate) async fn expect_absent(&self) {
        self.state.lock().await.expect = Expect::Absent;
    }
}

/// How a handle writes: a stream of new bytes, or changes to an existing large object.
enum Writer {
    Stream(Box<Upload>),
    Patch(Box<PatchUpload>),
}

impl Writer {
    fn key(&self) -> &str {
        match self {
            Writer::Stream(u) => u.key(),
            Writer::Patch(p) => p.key(),
        }
    }
    /// The file takes a new name (rename); call before the object under the old name goes.
    async fn set_key(&mut self, key: String) -> FsResult<()> {
        match self {
            Writer::Stream(u) => {
                // what it starts from is read from the old name
                u.load().await?;
                u.set_key(key).await
            }
            Writer::Patch(p) => {
                // its untouched parts were read from the old object
                p.take_in_source().await?;
                p.set_key(key);
                Ok(())
            }
        }
    }
    fn size(&self) -> u64 {
        match self {
            Writer::Stream(u) => u.size(),
            Writer::Patch(p) => p.size(),
        }
    }
    fn buffered(&self) -> u64 {
        match self {
            Writer::Stream(u) => u.buffered(),
            Writer::Patch(p) => p.buffered(),
        }
    }
    async fn write(&mut self, offset: u64, data: &[u8], opts: &PutOptions) -> FsResult<()> {
        match self {
            Writer::Stream(u) => {
                u.load().await?;
                u.write(offset, data, opts).await
            }
            Writer::Patch(p) => p.write(offset, data).await,
        }
    }
    async fn set_size(&mut self, size: u64) -> FsResult<()> {
        match self {
            Writer::Stream(u) => {
                if size == 0 {
                    // O_TRUNC, truncate -s 0: what it started from is not needed
                    u.empty_unloaded();
                } else {
                    u.load().await?;
                }
                u.set_size(size).await
            }
            Writer::Patch(p) => p.set_size(size).await,
        }
    }
    async fn read(&mut self, offset: u64, len: u32) -> FsResult<Bytes> {
        match self {
            Writer::Stream(u) => {
                u.load().await?;
                u.read_buffered(offset, len)
            }
            Writer::Patch(p) => p.read(offset, len).await,
        }
    }
    async fn finish(&mut self, opts: &PutOptions) -> FsResult<Uploaded> {
        match self {
            Writer::Stream(u) => {
                u.load().await?;
                u.finish(opts).await
            }
            Writer::Patch(p) => p.finish(opts).await,
        }
    }
    async fn abort(&mut self) {
        match self {
            Writer::Stream(u) => u.abort().await,
            Writer::Patch(_) => {}
        }
    }
    /// The object is about to go (unlink): keep what the writer needs of it. A stream never
    /// needs it; a patch (a file fsynced or opened over an object) reads its untouched parts
    /// from it, so it takes them in first (ranged GETs into the staging area).
    async fn keep_without_object(&mut self) -> FsResult<()> {
        match self {
            // one over a small object takes it in now
            Writer::Stream(u) => u.load().await,
            Writer::Patch(p) => p.take_in_source().await,
        }
    }
    /// Write-back: staged and journaled, its upload queued.
    fn is_pending(&self) -> bool {
        match self {
            Writer::Stream(u) => u.is_pending(),
            Writer::Patch(p) => p.is_pending(),
        }
    }
    /// Write-back: its pending entry is over (uploaded, replaced by a rewrite).
    fn landed(&mut self) {
        match self {
            Writer::Stream(u) => u.landed(),
            Writer::Patch(p) => p.landed(),
        }
    }
    async fn forget_remote(&mut self) {
        match self {
            Writer::Stream(u) => u.forget_remote().await,
            // sends nothing before it is finished; a staged change is given up
            Writer::Patch(p) => p.landed(),
        }
    }
}

struct WriteState {
    upload: Writer,
    /// Written since the last commit.
    dirty: bool,
    /// A child's close of its inherited copy was let go without an upload since the last
    /// write (see `flush`): the release, which uploads, may follow at once.
    closed_by_child: bool,
    /// Closed by its opener (FLUSH answered) since it last wrote: the release follows. An
    /// fsync does not set it: a file fsynced and kept open is still being written.
    flushed: bool,
    /// The bucket holds what this handle has (nothing to send if not dirty).
    committed: bool,
    /// The last commit (a close or fsync) failed and nothing was written since: the release
    /// that follows keeps the file (see `release`).
    commit_failed: bool,
    /// Unlinked while open, or its writer was killed: never upload.
    discarded: bool,
    /// This handle created the file (it did not exist before).
    created_here: bool,
    /// What the bucket should hold under the key when this handle commits; a commit is
    /// conditional on it so that a change by another client is never clobbered.
    expect: Expect,
}

/// The state of the key a commit may replace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Nothing: the file is new (`If-None-Match: *`).
    Absent,
    /// This version (`If-Match`).
    Etag(String),
    /// Not known (renamed onto an existing name, or no ETag): unconditional.
    Unknown,
}

impl Filesystem {
    /// close(2) returns once FLUSH is answered; the kernel sends RELEASE after that, on its
    /// own. A reopen right after a close (`echo a > f; echo b >> f`, `cp a b && cat b`) can
    /// arrive before that release: when every writer of `ino` has been flushed (or closed by a
    /// child, see `flush`) since it last wrote, wait up to `release_wait` (5 s) for it to go instead of failing with EBUSY (under load the
    /// kernel's release has been seen to take over a second). Whether it went and left no
    /// writer (false when the writer stays, kept: see `release`).
    async fn wait_for_release(&self, ino: u64) -> bool {
        let deadline = Instant::now() + self.config.release_wait;
        loop {
            // registered before looking, so a release or flush in between is not missed
            let changed = self.handles.writers_changed();
            if !self.inodes.lock().get(ino).is_some_and(|n| n.writing) {
                return true;
            }
            let flushed = match self.write_handle_for(ino) {
                // released and kept (waiting for its write-back upload, or its upload failed):
                // no release to wait for any more
                Some(w) if w.kept.load(Ordering::Relaxed) => return false,
                Some(w) => match w.state.try_lock() {
                    Ok(st) => {
                        Some(st.discarded || st.flushed || st.closed_by_child || st.commit_failed)
                    }
                    // a flush or the release itself holds it: look again
                    Err(_) => None,
                },
                // the release is under way (its handle is gone already)
                None => Some(true),
            };
            let now = Instant::now();
            if flushed == Some(false) || now >= deadline {
                return false;
            }
            // woken by the next release or flush
            let _waiting = self.handles.waiting();
            let _ = tokio::time::timeout(deadline - now, changed).await;
        }
    }

    /// A rename of a file whose opener has closed it (uploaded, nothing written since) before
    /// the kernel's release came (`rsync` renames its temporary file as soon as close
    /// returns): wait up to `release_wait` for that release, so that the rename copies the
    /// object, which stays in the bucket all along, instead of pointing the writer at the new
    /// name, deleting the object and uploading the bytes again at the release (a crash in
    /// between lost a file whose close had succeeded). Whether the file is settled now.
    pub(crate) async fn wait_for_closed_writer(&self, ino: u64) -> bool {
        let closed = match self.write_handle_for(ino) {
            Some(w) => {
                let st = self.lock_writer(&w).await;
                !w.kept.load(Ordering::Relaxed)
                    && st.flushed
                    && st.committed
                    && !st.dirty
                    && !st.discarded
                    && !st.upload.is_pending()
            }
            // its release is under way
            None => true,
        };
        closed && self.wait_for_release(ino).await
    }

    /// A release of `ino`'s writer is under way (its handle is gone, its upload may still be
    /// running): wait until it ends, so that a rename, unlink or truncate acts on what it
    /// leaves (the object it uploaded, or a writer kept after a failure) and not in between:
    /// a rename that found neither a writer nor a settled file moved no bytes and deleted
    /// the object the release had just uploaded (`rsync` renames its temporary file right
    /// after closing it, and the kernel sends the release on its own).
    pub(crate) async fn settle_release(&self, ino: u64) {
        self.settle_releases(|i| i == ino).await;
    }

    /// As [`settle_release`](Self::settle_release), for every file whose key starts with
    /// `prefix` (a directory rename).
    pub(crate) async fn settle_releases_under(&self, prefix: &str) {
        self.settle_releases(|ino| {
            self.inodes
                .lock()
                .get(ino)
                .is_some_and(|n| n.key.starts_with(prefix))
        })
        .await;
    }

    async fn settle_releases(&self, matches: impl Fn(u64) -> bool) {
        loop {
            // registered before looking, so a release ending in between is not missed
            let changed = self.handles.writers_changed();
            if !self.handles.releasing_inos().into_iter().any(&matches) {
                return;
            }
            let _waiting = self.handles.waiting();
            changed.await;
        }
    }

    /// Resolves once an operation waits for a file's release under way, or for a writer busy
    /// with its upload (tests that hold an upload and check what a rename or unlink does
    /// meanwhile).
    pub async fn an_operation_waits_for_a_release(&self) {
        self.handles.someone_waits().await;
    }

    /// `w`'s state, for a rename or unlink: waiting for it (the writer busy uploading) counts
    /// as waiting for a release (see `an_operation_waits_for_a_release`).
    async fn lock_writer<'a>(&self, w: &'a WriteHandle) -> tokio::sync::MutexGuard<'a, WriteState> {
        if let Ok(st) = w.state.try_lock() {
            return st;
        }
        let _waiting = self.handles.waiting();
        w.state.lock().await
    }

    /// Every open write handle.
    fn write_handles(&self) -> Vec<Arc<WriteHandle>> {
        self.handles.all_writers()
    }

    fn write_handle_for(&self, ino: u64) -> Option<Arc<WriteHandle>> {
        self.handles
            .writers_of(ino)
            .into_iter()
            .next()
            .map(|(_, w)| w)
    }

    fn new_upload(&self, key: String) -> Upload {
        Upload::new(
            self.client.clone(),
            key,
            self.budget.clone(),
            self.limits,
            &self.store,
        )
    }

    /// `opts` made conditional on what the bucket should hold (where the server honours it):
    /// a commit never clobbers a change made by someone else.
    fn conditional(&self, mut opts: PutOptions, expect: &Expect) -> PutOptions {
        let caps = self.client.capabilities();
        match expect {
            Expect::Absent if caps.conditional_create != Holds::No => opts.if_none_match_any = true,
            Expect::Etag(e) if caps.conditional_replace != Holds::No => {
                opts.if_match = Some(e.clone())
            }
            _ => {}
        }
        opts
    }

    /// A writer of changes to the existing object `key` (`size` bytes, version `etag`).
    fn patch_writer(&self, key: String, etag: Option<String>, size: u64) -> PatchUpload {
        PatchUpload::new(
            self.client.clone(),
            self.budget.clone(),
            key,
            etag,
            size,
            self.limits.base,
            self.limits.max_parts,
            self.store.journal.clone(),
            self.store.staging_file("patch"),
        )
        .with_cache(self.data_cache.clone())
        .with_prefix(&self.config.prefix)
    }

    /// The headers a commit of `ino` sends: content type and the s3fs attribute headers.
    fn put_options(&self, ino: u64) -> FsResult<PutOptions> {
        let t = self.inodes.lock();
        let n = t.get(ino).ok_or_else(FsError::not_found)?;
        // other tools' metadata headers and the xattrs are kept; the attributes are current
        Ok(n.meta.for_rewrite(&n.attr, &n.name))
    }

    /// create: a new, empty file that exists here until its first flush uploads it.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        flags: i32,
        caller: Caller,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        check_name(name)?;
        let parent_key = self.dir_key(parent)?;
        let key = format!("{parent_key}{name}");
        let existing = self
            .inodes
            .lock()
            .child(parent, name)
            .map(|n| (n.ino, n.writing));
        if let Some((ino, writing)) = existing {
            if writing {
                return Err(FsError::new(
                    libc::EBUSY,
                    "file is already open for writing",
                ));
            }
            self.land_recovered(ino).await?;
        }
        let _ = flags;
        let now = SystemTime::now();
        let mut attr = Attr::new(0, FileKind::File, 0, &self.config, now);
        attr.perm = (mode & 0o7777) as u16;
        attr.uid = caller.uid;
        attr.gid = caller.gid;
        let ino = {
            let mut t = self.inodes.lock();
            let ino = t.upsert_child(parent, name, key.clone(), attr, None, false, Instant::now());
            t.inc_lookup(ino);
            t.set_local_only(ino, true);
            t.set_writing(ino, true);
            if let Some(n) = t.get_mut(ino) {
                n.attr = Attr { ino, ..attr };
                n.open_handles += 1;
                n.page_cache_etag = None;
            }
            ino
        };
        self.forget_missing(parent, name);
        let fh = self.handles.next_fh();
        let handle = WriteHandle {
            ino,
            opener: AtomicU32::new(process_of(caller.pid)),
            kept: AtomicBool::new(false),
            fhs: AtomicU32::new(1),
            pending_bytes: Default::default(),
            state: tokio::sync::Mutex::new(WriteState {
                upload: Writer::Stream(Box::new(self.new_upload(key))),
                dirty: false,
                closed_by_child: false,
                flushed: false,
                committed: false,
                commit_failed: false,
                discarded: false,
                created_here: true,
                expect: Expect::Absent,
            }),
        };
        self.handles.insert(fh, Handle::Write(Arc::new(handle)));
        let attr = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.attr)
            .ok_or_else(FsError::not_found)?;
        Ok((
            attr,
            Opened {
                fh,
                keep_cache: false,
                direct_io: false,
            },
        ))
    }

    /// open: reads get a prefetcher bound to the object's current ETag; writes get an upload
    /// (empty for O_TRUNC, else the object's content when it is smaller than one part).
    pub async fn open(&self, ino: u64, flags: i32, caller: Caller) -> FsResult<Opened> {
        let acc = flags & libc::O_ACCMODE;
        if Self::is_control(ino) {
            if acc != libc::O_RDONLY {
                return Err(FsError::new(libc::EACCES, "read-only file"));
            }
            let fh = self.handles.next_fh();
            let text = self.stats_bytes().await?;
            self.handles.insert(fh, Handle::Static(text));
            return Ok(Opened {
                fh,
                keep_cache: false,
                direct_io: true,
            });
        }
        if acc == libc::O_RDONLY {
            if let Some(opened) = self.open_staged(ino) {
                return Ok(opened);
            }
        } else {
            // a file an earlier run closed goes up before it is changed
            self.land_recovered(ino).await?;
        }
        self.full_meta(ino).await?;
        let attr = self.getattr(ino).await?;
        if attr.kind == FileKind::Directory {
            return Err(FsError::new(libc::EISDIR, "is a directory"));
        }
        if acc == libc::O_RDONLY {
            return self.open_read(ino).await;
        }
        self.check_writable()?;
        let (key, etag, size, writing) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            (n.key.clone(), n.etag.clone(), n.attr.size, n.writing)
        };
        let truncate = flags & libc::O_TRUNC != 0;
        if writing {
            if let Some(opened) = self.open_shared(ino, truncate, caller).await? {
                return Ok(opened);
            }
        }
        let upload = if !truncate && size > self.limits.base {
            Writer::Patch(Box::new(self.patch_writer(key.clone(), etag.clone(), size)))
        } else if !truncate && size > 0 {
            // fetched at the first read or change (a touch sends no GET)
            Writer::Stream(Box::new(
                self.new_upload(key.clone()).over_object(etag.clone(), size),
            ))
        } else {
            Writer::Stream(Box::new(self.new_upload(key.clone())))
        };
        {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            if n.writing {
                return Err(FsError::new(
                    libc::EBUSY,
                    "file is already open for writing",
                ));
            }
            n.open_handles += 1;
            n.page_cache_etag = None;
            if truncate {
                n.attr.size = 0;
                // O_TRUNC arrives here (atomic O_TRUNC): it changes mtime and ctime
                let now = SystemTime::now();
                n.attr.mtime = now;
                n.attr.ctime = now;
            }
            t.set_writing(ino, true);
        }
        let fh = self.handles.next_fh();
        let handle = WriteHandle {
            ino,
            opener: AtomicU32::new(process_of(caller.pid)),
            kept: AtomicBool::new(false),
            fhs: AtomicU32::new(1),
            pending_bytes: Default::default(),
            state: tokio::sync::Mutex::new(WriteState {
                upload,
                dirty: false,
                closed_by_child: false,
                flushed: false,
                committed: !truncate,
                commit_failed: false,
                discarded: false,
                created_here: false,
                expect: etag.map(Expect::Etag).unwrap_or(Expect::Unknown),
            }),
        };
        self.handles.insert(fh, Handle::Write(Arc::new(handle)));
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        })
    }

    /// An open for writing of a file another handle writes, or whose writer is kept (its
    /// upload failed, or waits: see `release`): it shares that writer, so that what all of them
    /// wrote goes up together; the upload happens when the last writer closes, or at an fsync.
    /// `None`: the file has no writer any more (its upload landed, its release ended; a
    /// release under way is waited for, up to `release_wait`): the usual open follows.
    async fn open_shared(
        &self,
        ino: u64,
        truncate: bool,
        caller: Caller,
    ) -> FsResult<Option<Opened>> {
        let deadline = Instant::now() + self.config.release_wait;
        loop {
            // registered before looking, so a release in between is not missed
            let changed = self.handles.writers_changed();
            if !self.inodes.lock().get(ino).is_some_and(|n| n.writing) {
                return Ok(None);
            }
            let found = match self.kept_writer(ino) {
                Some((fh, w)) => Some((Some(fh), w)),
                None => self.write_handle_for(ino).map(|w| (None, w)),
            };
            if let Some((kept_fh, w)) = found {
                match self.attach_writer(kept_fh, w, truncate, caller).await? {
                    Some(opened) => return Ok(Some(opened)),
                    // let go or released meanwhile: look again
                    None => continue,
                }
            }
            // its last handle's release is under way
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _waiting = self.handles.waiting();
            let _ = tokio::time::timeout(deadline - now, changed).await;
        }
    }

    /// Another handle of `w`, the writer of a file being written, or kept under `kept_fh` (see
    /// `release`); O_TRUNC empties it for all. `None`: it went meanwhile.
    async fn attach_writer(
        &self,
        kept_fh: Option<u64>,
        w: Arc<WriteHandle>,
        truncate: bool,
        caller: Caller,
    ) -> FsResult<Option<Opened>> {
        // write-back: a rewrite replaces the version waiting for its upload (uploaded once,
        // at the rewrite's close); a change of it sends that version first, so that what a
        // close acknowledged never depends on writes not acknowledged yet
        if self.lock_writer(&w).await.upload.is_pending() {
            if truncate {
                w.state.lock().await.upload.landed();
                self.unqueue_pending(w.ino);
            } else {
                self.commit(&w).await?;
                self.unqueue_pending(w.ino);
            }
        }
        // taken now (after the upload above, which may have let it go): the uploader does not
        // let it go any more
        let taken = match kept_fh {
            Some(fh) => self.handles.take_back_kept(fh, &w),
            None => self.handles.join_writer(&w),
        };
        if !taken {
            return Ok(None);
        }
        // open again: not on its way out any more
        w.state.lock().await.flushed = false;
        if truncate {
            let mut st = w.state.lock().await;
            if st.upload.set_size(0).await.is_err() {
                // a large file's open upload cannot shrink: start a new one
                st.upload.abort().await;
                let key = st.upload.key().to_string();
                st.upload = Writer::Stream(Box::new(self.new_upload(key)));
            }
            st.dirty = true;
        }
        w.opener.store(process_of(caller.pid), Ordering::Relaxed);
        let fh = self.handles.next_fh();
        self.handles.replace(kept_fh, fh, Handle::Write(w.clone()));
        let mut t = self.inodes.lock();
        if let Some(n) = t.get_mut(w.ino) {
            n.open_handles += 1;
            if truncate {
                n.attr.size = 0;
                let now = SystemTime::now();
                n.attr.mtime = now;
                n.attr.ctime = now;
            }
        }
        Ok(Some(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        }))
    }

    /// A read-only open of a file a writer holds: reads see what was written so far.
    fn peek(&self, w: Arc<WriteHandle>) -> Opened {
        if let Some(n) = self.inodes.lock().get_mut(w.ino) {
            n.open_handles += 1;
        }
        let fh = self.handles.next_fh();
        self.handles.insert(fh, Handle::Peek(w));
        Opened {
            fh,
            keep_cache: false,
            direct_io: false,
        }
    }

    /// The kept writer of `ino`, if its upload failed, with the handle number it is kept under.
    fn kept_writer(&self, ino: u64) -> Option<(u64, Arc<WriteHandle>)> {
        self.handles
            .writers_of(ino)
            .into_iter()
            .find(|(_, w)| w.kept.load(Ordering::Relaxed))
    }

    fn handle(&self, fh: u64) -> FsResult<Handle> {
        self.handles
            .get(fh)
            .ok_or_else(|| FsError::new(libc::EBADF, "no such open file"))
    }

    /// Memory for the copy of a kernel write's data, taken on the FUSE thread before the copy:
    /// at once when the budget has room, else that thread waits (through `rt`, which it is not
    /// a worker of) up to the writers' patience, then goes over the budget.
    pub fn write_buffer_memory(
        &self,
        len: u64,
        rt: &tokio::runtime::Handle,
    ) -> super::memory::Reservation {
        if let Some(r) = self.budget.try_reserve(len) {
            return r;
        }
        let wait = self
            .budget
            .reserve_within(len, super::memory::WRITER_PATIENCE);
        match rt.block_on(wait) {
            Some(r) => r,
            None => {
                self.budget.overrun("a write's data");
                super::memory::Reservation::default()
            }
        }
    }

    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let w = match self.handle(fh)? {
            Handle::Write(w) => w,
            _ => return Err(FsError::new(libc::EBADF, "file not open for writing")),
        };
        self.limits.check_size(offset + data.len() as u64)?;
        let opts = self.put_options(w.ino)?;
        let mut st = w.state.lock().await;
        st.upload.write(offset, data, &opts).await?;
        self.wrote(&w, st);
        Ok(data.len() as u32)
    }

    /// [`write`](Self::write) done here and now, with no wait and no copy of `data` kept, when
    /// it only continues the file in the part being filled (see `Upload::try_append`): for
    /// the FUSE adapter, which then answers from the FUSE thread. `None`, with nothing done,
    /// when the write needs more: then [`write`](Self::write).
    pub fn try_write_now(&self, fh: u64, offset: u64, data: &[u8]) -> Option<FsResult<u32>> {
        let Ok(Handle::Write(w)) = self.handle(fh) else {
            return None;
        };
        self.limits
            .check_size(offset.checked_add(data.len() as u64)?)
            .ok()?;
        let mut st = w.state.try_lock().ok()?;
        let Writer::Stream(u) = &mut st.upload else {
            return None;
        };
        if let Err(e) = u.try_append(offset, data)? {
            return Some(Err(e));
        }
        self.wrote(&w, st);
        Some(Ok(data.len() as u32))
    }

    /// After a write into `w`: its state says so, and the inode has its new size and times.
    fn wrote(&self, w: &WriteHandle, mut st: tokio::sync::MutexGuard<'_, WriteState>) {
        st.dirty = true;
        st.closed_by_child = false;
        st.flushed = false;
        st.commit_failed = false;
        let size = st.upload.size();
        w.pending_bytes
            .store(st.upload.buffered(), std::sync::atomic::Ordering::Relaxed);
        drop(st);
        let mut t = self.inodes.lock();
        if let Some(n) = t.get_mut(w.ino) {
            n.attr.size = size;
            let now = SystemTime::now();
            n.attr.mtime = now;
            n.attr.ctime = now;
        }
    }

    /// Upload what this handle holds, if the bucket does not have it yet.
    pub(crate) async fn commit(&self, w: &WriteHandle) -> FsResult<()> {
        let st = w.state.lock().await;
        self.commit_locked(w, st).await
    }

    /// Write-back's uploader: [`commit`](Self::commit) a waiting file unless an open took its
    /// writer back (`Ok(false)`), which is looked at under the writer's lock, so that the
    /// uploader never sends a file while someone writes it.
    pub(crate) async fn commit_closed(&self, w: &WriteHandle) -> FsResult<bool> {
        // (first without the lock, which a writer at work may hold for a while)
        if w.is_open() {
            return Ok(false);
        }
        let st = w.state.lock().await;
        if w.is_open() {
            return Ok(false);
        }
        self.commit_locked(w, st).await.map(|()| true)
    }

    async fn commit_locked(
        &self,
        w: &WriteHandle,
        mut st: tokio::sync::MutexGuard<'_, WriteState>,
    ) -> FsResult<()> {
        if st.discarded || (st.committed && !st.dirty) {
            return Ok(());
        }
        let key = st.upload.key().to_string();
        // an earlier run's unfinished upload of this key is resumed or aborted first; a file
        // created here meanwhile is newer than what recovery put back, and replaces it
        if self.leftovers.wait(&key, self.config.recovery_wait).await && st.expect == Expect::Absent
        {
            st.expect = Expect::Unknown;
        }
        let opts = self.conditional(self.put_options(w.ino)?, &st.expect);
        // attribute changes made while the file was open (or waiting when it was opened)
        let changed_meta = self
            .inodes
            .lock()
            .get(w.ino)
            .is_some_and(|n| n.meta_pending);
        let done = match st.upload.finish(&opts).await {
            Ok(done) => done,
            Err(e) => {
                st.commit_failed = true;
                if e.s3.as_ref().and_then(|s| s.status) == Some(412) {
                    tracing::error!(
                        key = %key,
                        "the object was changed in the bucket by someone else while open here; \
                         not overwritten (close fails with ESTALE)"
                    );
                }
                return Err(e);
            }
        };
        st.commit_failed = false;
        // write-back: its pending entry is over
        st.upload.landed();
        if done.multipart && matches!(st.upload, Writer::Stream(_)) {
            // a completed multipart upload is final: later writes (after an fsync, or by
            // whoever keeps the file open) change the new object in place
            st.upload = Writer::Patch(Box::new(self.patch_writer(
                key.clone(),
                done.etag.clone(),
                done.size,
            )));
        }
        st.expect = done
            .etag
            .clone()
            .map(Expect::Etag)
            .unwrap_or(Expect::Unknown);
        st.dirty = false;
        st.committed = true;
        drop(st);
        let (parent, name) = {
            let mut t = self.inodes.lock();
            let n = t.get_mut(w.ino).ok_or_else(FsError::not_found)?;
            // the upload carried the node's attributes, changed ones included; but a
            // multipart upload's metadata was fixed when it was created, and only changed
            // modes and owners are copied onto it at the end (upload.rs), not times: times set
            // meanwhile (`cp -p`, `touch -d` of a large file being written) are written as any
            // attribute change is (metadata_write.rs)
            n.meta_pending = changed_meta && done.multipart;
            n.meta.written(&opts);
            if !n.meta_pending {
                n.meta_changed = Default::default();
            }
            n.new_version(done.etag.clone());
            n.attr.size = done.size;
            n.attr_expires = Instant::now() + self.config.metadata_ttl;
            (n.parent, n.name.clone())
        };
        // the parent's listing has the file before the file leaves the pending set that
        // readdir adds to a listing: a readdir in between saw neither (a walk in write-back
        // mode missed a file right as the uploader landed it)
        self.update_snapshot(parent, &name, Some(ListedChild::file(done.size)));
        self.inodes.lock().set_local_only(w.ino, false);
        if changed_meta && done.multipart {
            self.defer_metadata(w.ino)?;
        }
        tracing::debug!(key = %key, size = done.size, multipart = done.multipart, "uploaded");
        Ok(())
    }

    /// What a close sends: with `--write-back` the file is staged and queued (see
    /// `write_back.rs`) where it can be, else committed now.
    async fn close_commit(&self, w: &Arc<WriteHandle>) -> FsResult<()> {
        match self.stage_close(w).await {
            Ok(true) => Ok(()),
            Ok(false) => self.commit(w).await,
            Err(e) => Err(e),
        }
    }

    /// Write-back: stage and journal what `w` holds (`again`: even if staged already and
    /// not written since, as after a rename). Whether it was staged (false: nothing to send,
    /// or a writer that cannot wait).
    pub(crate) async fn stage_writer(&self, w: &WriteHandle, again: bool) -> FsResult<bool> {
        let mut st = w.state.lock().await;
        if st.discarded || (st.committed && !st.dirty) {
            return Ok(false);
        }
        if st.flushed && st.upload.is_pending() && !again {
            // staged by its close, nothing written since (the release that follows)
            return Ok(true);
        }
        let key = st.upload.key().to_string();
        if self.leftovers.wait(&key, self.config.recovery_wait).await && st.expect == Expect::Absent
        {
            st.expect = Expect::Unknown;
        }
        let opts = self.conditional(self.put_options(w.ino)?, &st.expect);
        let record = super::upload::PendingRecord {
            key,
            size: 0,
            parts: 0,
            if_match: opts.if_match.clone(),
            if_none_match: opts.if_none_match_any,
            content_type: opts.content_type.clone(),
            user_metadata: opts.user_metadata.clone(),
            content_headers: opts.content_headers.clone(),
            closed_at: super::attr::epoch_secs(SystemTime::now()),
            patch: None,
        };
        let staged = match &mut st.upload {
            Writer::Stream(u) => match u.load().await {
                Ok(()) => u.stage(&opts, record).await,
                Err(e) => Err(e),
            },
            // an in-place change: its changed parts, the rest copied later (patch_stage.rs)
            Writer::Patch(p) => p.stage(record).await,
        };
        match staged {
            Ok(()) => Ok(true),
            Err(e) if e.errno == libc::EAGAIN => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `w` holds something the bucket does not.
    pub(crate) async fn writer_has_news(&self, w: &WriteHandle) -> bool {
        let st = w.state.lock().await;
        !st.discarded && (st.dirty || !st.committed)
    }

    /// The writer of `ino` whose upload is pending (write-back), with the handle number it is
    /// kept under once released.
    pub(crate) fn pending_writer(&self, ino: u64) -> Option<(Option<u64>, Arc<WriteHandle>)> {
        let writers = self.handles.writers_of(ino);
        let (fh, w) = writers.into_iter().next()?;
        let kept = w.kept.load(Ordering::Relaxed);
        Some((kept.then_some(fh), w))
    }

    /// A kept writer whose upload landed goes: the file is the bucket's again.
    pub(crate) fn release_kept(&self, fh: u64, w: &Arc<WriteHandle>) {
        if !self.handles.let_go_kept(fh, w) {
            return; // opened again meanwhile
        }
        self.inodes.lock().set_writing(w.ino, false);
        self.handles.writer_changed();
    }

    /// flush (close): the object is in the bucket when this returns Ok.
    /// `pid` is the closing thread. A copy of the descriptor that another process inherited
    /// (fork) and closes (its execve or exit) while the opener still runs uploads nothing: the
    /// opener's own close does, or the last release (a shell or `make` starting programs while
    /// it writes a file would otherwise upload the whole file again at every program start).
    /// A process killed by a signal (kill -9, Ctrl-C) did not finish its file, so its upload is
    /// dropped and no partial object appears.
    pub async fn flush(&self, fh: u64, pid: u32) -> FsResult<()> {
        self.flush_by(fh, Closing::of(pid)).await
    }

    /// Whether a file of `size` bytes streams its parts: one that reached a part's size sent
    /// that part with UploadPart (its close completes a multipart upload); a smaller one is
    /// one `PutObject` at close. The one size rule of where the adapter runs writes and closes.
    fn streams_parts(&self, size: u64) -> bool {
        size >= self.limits.base
    }

    /// Whether a write reaching `end` goes to the runtime from its start: in the durable mode,
    /// once the file streams its parts: a 1 GiB `dd` on s3s-fs was ~7 % slower with its writes
    /// run on the FUSE thread (12 pairs of 14). With `--write-back` they stay there (its `dd`
    /// returned sooner so, docs/PERFORMANCE.md).
    pub fn write_goes_away(&self, end: u64) -> bool {
        !self.config.write_back && self.streams_parts(end)
    }

    /// Where the close of `fh` runs (one lookup of the handle): a reader's has nothing to send;
    /// a durable writer's of a file below one part is light work up to its one `PutObject`;
    /// a larger file's waits for its part files (blocking) and completes its upload, and one
    /// with `--write-back` fsyncs the staged file: both on the runtime.
    pub fn close_route(&self, fh: u64) -> CloseRoute {
        let Some(Handle::Write(w)) = self.handles.get(fh) else {
            return CloseRoute::Reader;
        };
        if self.config.write_back {
            return CloseRoute::Away;
        }
        let size = self.inodes.lock().get(w.ino).map(|n| n.attr.size);
        match size {
            Some(s) if !self.streams_parts(s) => CloseRoute::Here,
            _ => CloseRoute::Away,
        }
    }

    /// [`flush`](Self::flush), with the closing thread's /proc status already read (by the
    /// FUSE adapter, on its own thread).
    pub async fn flush_by(&self, fh: u64, closing: Closing) -> FsResult<()> {
        let result = self.flush_handle(fh, &closing).await;
        // a reopen or read waiting for this file's writer looks again (`wait_for_release`)
        self.handles.writer_changed();
        result
    }

    async fn flush_handle(&self, fh: u64, closing: &Closing) -> FsResult<()> {
        let pid = closing.pid;
        match self.handle(fh)? {
            Handle::Write(w) => {
                if !closes_for_the_opener(w.opener.load(Ordering::Relaxed), closing) {
                    w.state.lock().await.closed_by_child = true;
                    tracing::debug!(
                        pid,
                        opener = w.opener.load(Ordering::Relaxed),
                        "close of an inherited descriptor: uploaded at the opener's close"
                    );
                    return Ok(());
                }
                if w.fhs.load(Ordering::Relaxed) > 1 {
                    tracing::debug!(pid, "close of one of several writers: the last one uploads");
                    return Ok(());
                }
                let (pending, untouched) = {
                    let st = w.state.lock().await;
                    (st.dirty || !st.committed, !st.dirty && !st.committed)
                };
                // `> file` and dd: open, dup2 onto stdout, close the original, then write: an
                // empty upload at that first close would be replaced at once
                if untouched && holds_another_descriptor(pid, self.mount_id(), w.ino).await {
                    tracing::debug!(
                        pid,
                        "close of a duplicate before any write: nothing to send"
                    );
                    return Ok(());
                }
                let killed = if pending {
                    killed_by_signal(closing).await
                } else {
                    None
                };
                if let Some(sig) = killed {
                    let mut st = w.state.lock().await;
                    if st.dirty || !st.committed {
                        tracing::warn!(
                            key = %st.upload.key(),
                            pid,
                            signal = sig,
                            "writer was killed before it finished; its partial file is not uploaded"
                        );
                        st.discarded = true;
                        st.upload.abort().await;
                        if st.created_here && st.committed {
                            // an earlier close (a dup'd descriptor) put a first version: it is
                            // as partial as the rest
                            let key = st.upload.key().to_string();
                            if let Err(e) = self.client.delete_object(&key).await {
                                tracing::warn!(key = %key, "could not remove partial file: {e}");
                            }
                            self.inodes.lock().set_local_only(w.ino, true);
                        }
                    }
                    return Ok(());
                }
                let result = self.close_commit(&w).await;
                w.state.lock().await.flushed = true;
                result
            }
            _ => Ok(()),
        }
    }

    /// fsync: like flush, but never a dying process.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        match self.handle(fh)? {
            Handle::Write(w) => self.commit(&w).await,
            Handle::Read(r) => self.flush_metadata(r.ino).await,
            _ => Ok(()),
        }
    }

    /// release: the last close. Uploads anything still pending; a failure here cannot reach the
    /// application any more, so it is logged as an error with the key.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let result = self.release_handle(fh).await;
        self.handles.writer_changed();
        result
    }

    async fn release_handle(&self, fh: u64) -> FsResult<()> {
        if self.keep_staged(fh).await {
            return Ok(());
        }
        // until this release ends, a rename or unlink of the file waits for it (`settle_release`)
        let (handle, last, _releasing) = self.handles.remove_for_release(fh);
        match handle {
            Some(Handle::Write(w)) if !last => {
                // other writers still share this file: the last one's release uploads
                if let Some(n) = self.inodes.lock().get_mut(w.ino) {
                    n.open_handles = n.open_handles.saturating_sub(1);
                }
                Ok(())
            }
            Some(Handle::Write(w)) => {
                let result = self.close_commit(&w).await;
                let st = w.state.lock().await;
                let waits = result.is_ok() && !st.discarded && st.upload.is_pending();
                drop(st);
                if waits {
                    // write-back: kept (readable, listed) until its upload lands
                    self.handles.insert_kept(fh, &w);
                    if let Some(n) = self.inodes.lock().get_mut(w.ino) {
                        n.open_handles = n.open_handles.saturating_sub(1);
                    }
                    self.requeue_pending(w.ino);
                    return Ok(());
                }
                let st = w.state.lock().await;
                let keep = result.is_err() && !st.discarded;
                if let Err(e) = &result {
                    if keep {
                        tracing::error!(
                            key = %st.upload.key(),
                            size = st.upload.size(),
                            "upload failed: {}; the data stays in this mount (readable, listed \
                             under unsaved_files in the stats) and is sent again at the file's \
                             next close or fsync, or at unmount",
                            e.reason
                        );
                    }
                }
                drop(st);
                if keep {
                    self.handles.insert_kept(fh, &w);
                    if let Some(n) = self.inodes.lock().get_mut(w.ino) {
                        n.open_handles = n.open_handles.saturating_sub(1);
                    }
                    return result;
                }
                let mut t = self.inodes.lock();
                t.set_writing(w.ino, false);
                let detach = match t.get_mut(w.ino) {
                    Some(n) => {
                        n.open_handles = n.open_handles.saturating_sub(1);
                        // a new file dropped before its upload (unlinked, or its writer
                        // killed) does not exist
                        n.local_only.then(|| (n.parent, n.name.clone()))
                    }
                    None => None,
                };
                if let Some((parent, name)) = &detach {
                    t.detach(*parent, name);
                }
                drop(t);
                if let Some((parent, name)) = detach {
                    self.update_snapshot(parent, &name, None);
                    // off the request path: the kernel may still be finishing this release
                    self.invalidate_entry(parent, &name);
                }
                result
            }
            Some(Handle::Staged(s)) => {
                if let Some(n) = self.inodes.lock().get_mut(s.ino) {
                    n.open_handles = n.open_handles.saturating_sub(1);
                }
                Ok(())
            }
            Some(Handle::Read(r)) => {
                if let Some(n) = self.inodes.lock().get_mut(r.ino) {
                    n.open_handles = n.open_handles.saturating_sub(1);
                }
                Ok(())
            }
            Some(Handle::Peek(w)) => {
                if let Some(n) = self.inodes.lock().get_mut(w.ino) {
                    n.open_handles = n.open_handles.saturating_sub(1);
                }
                Ok(())
            }
            Some(Handle::Dir(_)) | Some(Handle::Static(_)) | None => Ok(()),
        }
    }

    /// Write-back: the last release of a file its close staged (nothing written since) keeps
    /// its writer where it is — never out of the handle table, so the uploader always finds
    /// it — until its upload lands. Whether that was the case.
    async fn keep_staged(&self, fh: u64) -> bool {
        if !self.config.write_back {
            return false;
        }
        let Ok(Handle::Write(w)) = self.handle(fh) else {
            return false;
        };
        if w.fhs.load(Ordering::Relaxed) != 1 {
            return false;
        }
        {
            let st = w.state.lock().await;
            if !(st.flushed && st.upload.is_pending() && !st.discarded) {
                return false;
            }
        }
        if !self.handles.keep_last(fh, &w) {
            return false;
        }
        if let Some(n) = self.inodes.lock().get_mut(w.ino) {
            n.open_handles = n.open_handles.saturating_sub(1);
        }
        self.requeue_pending(w.ino);
        true
    }

    /// truncate/ftruncate: through the open upload, or by rewriting a closed small object.
    pub(crate) async fn truncate(&self, ino: u64, size: u64, fh: Option<u64>) -> FsResult<()> {
        self.limits.check_size(size)?;
        let writer = match fh.map(|fh| self.handle(fh)) {
            Some(Ok(Handle::Write(w))) => Some(w),
            _ => {
                // a release uploading the file ends first (it would land after the rewrite)
                self.settle_release(ino).await;
                self.write_handle_for(ino)
            }
        };
        if let Some(w) = writer {
            let mut st = w.state.lock().await;
            st.upload.set_size(size).await?;
            st.dirty = true;
            st.closed_by_child = false;
            st.flushed = false;
            st.commit_failed = false;
            drop(st);
            if let Some(n) = self.inodes.lock().get_mut(ino) {
                n.attr.size = size;
                n.attr.mtime = SystemTime::now();
                n.attr.ctime = n.attr.mtime;
            }
            return Ok(());
        }
        let (key, etag, cur) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            (n.key.clone(), n.etag.clone(), n.attr.size)
        };
        if size == cur {
            return Ok(());
        }
        // never clobber a version this mount has not seen (truncate -s 0 included)
        let expect = etag.clone().map(Expect::Etag).unwrap_or(Expect::Unknown);
        if size > self.limits.base || cur > self.limits.base {
            let mut patch = self.patch_writer(key.clone(), etag, cur);
            patch.set_size(size).await?;
            {
                let mut t = self.inodes.lock();
                if let Some(n) = t.get_mut(ino) {
                    n.attr.size = size;
                    n.attr.mtime = SystemTime::now();
                    n.attr.ctime = n.attr.mtime;
                }
            }
            let opts = self.conditional(self.put_options(ino)?, &expect);
            let done = patch
                .finish(&opts)
                .await
                .inspect_err(|_| self.expire_attr(ino))?;
            let mut t = self.inodes.lock();
            if let Some(n) = t.get_mut(ino) {
                n.new_version(done.etag);
                n.page_cache_etag = None;
                n.attr_expires = Instant::now() + self.config.metadata_ttl;
            }
            return Ok(());
        }
        let mut content = if size == 0 {
            Vec::new()
        } else {
            self.client
                .get_object(&key, None, etag.as_deref())
                .await
                .map_err(|e| FsError::from_s3(&e, &key))?
                .body
                .to_vec()
        };
        content.resize(size as usize, 0);
        {
            let mut t = self.inodes.lock();
            if let Some(n) = t.get_mut(ino) {
                n.attr.size = size;
                n.attr.mtime = SystemTime::now();
                n.attr.ctime = n.attr.mtime;
            }
        }
        let opts = self.conditional(self.put_options(ino)?, &expect);
        let meta = self
            .client
            .put_object(&key, Bytes::from(content), &opts)
            .await
            .map_err(|e| {
                self.expire_attr(ino);
                FsError::from_s3(&e, &key)
            })?;
        let mut t = self.inodes.lock();
        if let Some(n) = t.get_mut(ino) {
            n.new_version(meta.etag);
            n.page_cache_etag = None;
            n.attr_expires = Instant::now() + self.config.metadata_ttl;
        }
        Ok(())
    }

    /// A change of `ino` failed in the bucket: its attributes are asked for again.
    fn expire_attr(&self, ino: u64) {
        if let Some(n) = self.inodes.lock().get_mut(ino) {
            n.attr_expires = Instant::now();
        }
    }

    /// Drop the pending uploads of `ino` (it is being unlinked while open). Writers that read
    /// parts of the object first take them in; if that fails, nothing is dropped and the
    /// unlink fails (the object is still needed).
    pub(crate) async fn discard_writers(&self, ino: u64) -> FsResult<()> {
        // this file's handles only (the index by inode), each shared writer once
        let mut writers: Vec<Arc<WriteHandle>> = Vec::new();
        for (_, w) in self.handles.writers_of(ino) {
            if !writers.iter().any(|o| Arc::ptr_eq(o, &w)) {
                writers.push(w);
            }
        }
        for w in &writers {
            // a kept writer (its upload failed, no descriptor left) only goes
            if w.kept.load(Ordering::Relaxed) {
                continue;
            }
            match w.state.lock().await.upload.keep_without_object().await {
                Ok(()) => {}
                // the object changed or went elsewhere: what it held is not this file's any
                // more, and nothing here can keep it
                Err(e) if e.errno == libc::ESTALE || e.errno == libc::ENOENT => {
                    tracing::warn!(ino, "unlinked while open: {}", e.reason)
                }
                Err(e) => return Err(e),
            }
        }
        for w in writers {
            // its bytes stay readable and writable through the open descriptors (POSIX), and
            // nothing is uploaded
            let mut st = w.state.lock().await;
            st.discarded = true;
            st.upload.forget_remote().await;
        }
        self.unqueue_pending(ino);
        // a kept writer (its upload had failed) has no release to come
        while let Some((fh, _)) = self.kept_writer(ino) {
            self.handles.remove(fh);
            self.inodes.lock().set_writing(ino, false);
        }
        Ok(())
    }

    /// Files whose upload failed and whose data this mount keeps (see `release`).
    pub fn unsaved_files(&self) -> Vec<String> {
        let kept: Vec<u64> = self
            .handles
            .all_writers()
            .iter()
            .filter(|w| w.kept.load(Ordering::Relaxed))
            .map(|w| w.ino)
            .collect();
        let t = self.inodes.lock();
        kept.iter()
            .filter_map(|i| t.get(*i).map(|n| n.key.clone()))
            .collect()
    }

    /// Commit every open write handle (at unmount), reporting what could not be uploaded.
    pub(crate) async fn finish_all_writes(&self) -> ShutdownReport {
        // a release under way takes its writer out of the table while it uploads, and puts it
        // back (kept) when that fails: an unmount right after a close must see it
        self.settle_releases(|_| true).await;
        let writers = self.write_handles();
        // several at once: with --write-back thousands of small files may wait
        let results: Vec<Option<(String, FsResult<String>)>> = futures::stream::iter(writers)
            .map(|w| async move {
                let (key, pending) = {
                    let st = w.state.lock().await;
                    let pending = !st.discarded && (st.dirty || !st.committed);
                    (st.upload.key().to_string(), pending)
                };
                if !pending {
                    return None;
                }
                let mut result = self.commit(&w).await.map(|()| key.clone());
                if matches!(&result, Err(e) if super::write_back::is_conflict(e))
                    && !w.changes_in_place().await
                {
                    // refused at its close (ESTALE) and again now: the last chance to keep it
                    // is beside the object another client wrote
                    result = self.upload_as_conflict(w.ino, &w).await;
                }
                if result.is_ok() {
                    self.unqueue_pending(w.ino);
                }
                Some((key, result))
            })
            .buffer_unordered(SHUTDOWN_PARALLEL)
            .collect()
            .await;
        let mut report = ShutdownReport::default();
        for (key, result) in results.into_iter().flatten() {
            match result {
                Ok(landed_as) => report.finished.push(landed_as),
                Err(e) => {
                    tracing::error!(key = %key, "pending upload could not be finished: {e}");
                    report.failed.push((key, e.reason));
                }
            }
        }
        report
    }

    /// Bytes held by open uploads, and how many files have pending data. Never waits: a
    /// handle busy uploading counts as pending with the bytes it held when last seen.
    pub async fn pending_uploads(&self) -> (usize, u64) {
        let writers = self.write_handles();
        let mut files = 0;
        let mut bytes = 0;
        for w in writers {
            match w.state.try_lock() {
                Ok(st) => {
                    if !st.discarded && (st.dirty || !st.committed) {
                        files += 1;
                        bytes += st.upload.buffered();
                    }
                }
                Err(_) => {
                    files += 1;
                    bytes += w.pending_bytes.load(std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        (files, bytes)
    }
}

impl Filesystem {
    /// Point the open upload of `ino` at a new key (rename of a file being written): whether
    /// it had a writer (false: none, or its release is under way, see `settle_release`).
    pub(crate) async fn retarget_writer(&self, ino: u64, key: String) -> FsResult<bool> {
        loop {
            // registered before looking, so the uploader letting the writer go is not missed
            let changed = self.handles.writers_changed();
            let Some(w) = self.write_handle_for(ino) else {
                return Ok(false);
            };
            let mut st = self.lock_writer(&w).await;
            if !w.is_open() && st.committed && !st.dirty && !st.upload.is_pending() {
                // closed, and its write-back upload landed under the old name while this
                // waited for it: nothing would send it again under the new one. The uploader
                // lets the writer go next; then it is a settled file, which the caller moves
                // as the bucket's object (a directory rename left it under the old name)
                drop(st);
                changed.await;
                continue;
            }
            st.upload.set_key(key).await?;
            st.expect = Expect::Unknown;
            if st.committed {
                // the object under the old name goes; the new name needs the bytes again
                st.dirty = true;
            }
            let pending = st.upload.is_pending();
            drop(st);
            if pending {
                // write-back: the journal names the new key
                self.stage_writer(&w, true).await?;
                self.requeue_pending(ino);
            }
            return Ok(true);
        }
    }

    /// The files under `prefix` open for writing (or kept after a failed upload).
    pub(crate) fn writers_under(&self, prefix: &str) -> Vec<u64> {
        let inos: Vec<u64> = self.write_handles().iter().map(|w| w.ino).collect();
        let t = self.inodes.lock();
        inos.into_iter()
            .filter(|i| t.get(*i).is_some_and(|n| n.key.starts_with(prefix)))
            .collect()
    }
}

#[path = "file_read.rs"]
mod read;
