//! Reads of open files: a plain read handle's open (with its prefetcher, or a small body
//! already at hand), reads through the prefetcher or the data cache, and the one revalidation
//! of a fresh open whose object another client replaced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::super::error::{FsError, FsResult};
use super::super::prefetch::Prefetcher;
use super::super::small_bodies::SMALL_BODY;
use super::super::{Filesystem, Opened};
use super::{Handle, ReadHandle};

impl Filesystem {
    pub(super) async fn open_read(&self, ino: u64) -> FsResult<Opened> {
        if let Some((_, w)) = self.kept_writer(ino) {
            // not in the bucket: read what this mount kept
            return Ok(self.peek(w));
        }
        // `cp a b && cat b`: the writer's release may still be on its way; a writer still at
        // work (`tail -f` of a growing log) is read from directly
        let writing = self.inodes.lock().get(ino).is_some_and(|n| n.writing);
        if writing && !self.wait_for_release(ino).await {
            let writer = self
                .kept_writer(ino)
                .map(|(_, w)| w)
                .or_else(|| self.write_handle_for(ino));
            if let Some(w) = writer {
                return Ok(self.peek(w));
            }
        }
        let (key, etag, size, keep_cache) = {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            if n.writing {
                return Err(FsError::new(
                    libc::EBUSY,
                    "file is being written; read it after it is closed",
                ));
            }
            let keep = n.etag.is_some() && n.page_cache_etag == n.etag;
            n.page_cache_etag = n.etag.clone();
            n.open_handles += 1;
            (n.key.clone(), n.etag.clone(), n.attr.size, keep)
        };
        // a small file whose body came with its attributes is read from memory
        let body = etag
            .as_deref()
            .filter(|_| size <= SMALL_BODY)
            .and_then(|e| self.small_bodies.get(&key, e));
        let mut prefetcher = self.prefetcher(key, etag.clone(), size);
        if let Some(body) = body {
            prefetcher = prefetcher.with_body(body);
        }
        let fh = self.handles.next_fh();
        self.handles.insert(
            fh,
            Handle::Read(Arc::new(ReadHandle {
                ino,
                prefetcher: parking_lot::Mutex::new(prefetcher),
                served: AtomicBool::new(false),
                opened_etag: etag,
            })),
        );
        Ok(Opened {
            fh,
            keep_cache,
            direct_io: false,
        })
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        match self.handle(fh)? {
            Handle::Read(r) => {
                let out = self.read_version(&r, offset, size).await;
                match out {
                    // replaced by another client since its attributes were cached: a fresh
                    // open reads the new object rather than fail (one HEAD); a descriptor
                    // that read the old version already keeps failing (never mixed bytes)
                    // (not when this mount itself wrote a newer version after the open: that
                    // open came before the change, and reads its version or fails)
                    Err(e)
                        if e.errno == libc::ESTALE
                            && !r.served.load(Ordering::Acquire)
                            && self.unchanged_here_since_open(&r) =>
                    {
                        let (key, etag, object_size) = self.revalidate(r.ino).await?;
                        tracing::debug!(
                            key = %key,
                            "object replaced since its attributes were cached; reading the new one"
                        );
                        *r.prefetcher.lock() = self.prefetcher(key, etag, object_size);
                        self.read_version(&r, offset, size).await
                    }
                    out => out,
                }
            }
            Handle::Write(w) | Handle::Peek(w) => {
                w.state.lock().await.upload.read(offset, size).await
            }
            Handle::Staged(s) => s.read(offset, size).await,
            Handle::Static(b) => {
                let start = (offset as usize).min(b.len());
                let end = (start + size as usize).min(b.len());
                Ok(b.slice(start..end))
            }
            Handle::Dir(_) => Err(FsError::new(libc::EISDIR, "is a directory")),
        }
    }

    /// A read the data cache can answer whole, answered on the calling thread: the adapter's
    /// FUSE thread (never a runtime worker), since the bytes are on local disk and the hops to
    /// the runtime and a blocking thread cost more than the read. `None`: not a plain read
    /// handle, or the cache does not hold (or holds damaged) bytes of the range; the read then
    /// goes the usual way.
    pub fn read_cached(&self, fh: u64, offset: u64, size: u32) -> Option<Bytes> {
        let Ok(Handle::Read(r)) = self.handle(fh) else {
            return None;
        };
        let (cache, id, end, object_size) = r.prefetcher.lock().cached(offset, size)?;
        let bytes = cache.read(id, offset, end, object_size)?;
        r.served.store(true, Ordering::Release);
        Some(bytes)
    }

    /// Read through `r`'s prefetcher (the version it was opened on).
    async fn read_version(&self, r: &ReadHandle, offset: u64, size: u32) -> FsResult<Bytes> {
        let plan = r.prefetcher.lock().plan(offset, size);
        self.counters.read_hit(plan.hit_bytes);
        self.counters.read_miss(plan.miss_bytes);
        let out = plan.bytes().await;
        match &out {
            Ok(_) => r.served.store(true, Ordering::Release),
            Err(_) => r.prefetcher.lock().reset(),
        }
        out
    }

    /// This mount knows of no version of `r`'s file newer than the one it was opened on.
    fn unchanged_here_since_open(&self, r: &ReadHandle) -> bool {
        let t = self.inodes.lock();
        t.get(r.ino).is_some_and(|n| n.etag == r.opened_etag)
    }

    /// The object behind `ino` as the bucket has it now (one HEAD): key, ETag and size.
    async fn revalidate(&self, ino: u64) -> FsResult<(String, Option<String>, u64)> {
        if let Some(n) = self.inodes.lock().get_mut(ino) {
            n.attr_expires = Instant::now();
        }
        let attr = self.getattr(ino).await?;
        let t = self.inodes.lock();
        let n = t.get(ino).ok_or_else(FsError::not_found)?;
        Ok((n.key.clone(), n.etag.clone(), attr.size))
    }

    fn prefetcher(&self, key: String, etag: Option<String>, size: u64) -> Prefetcher {
        Prefetcher::new(
            self.client.clone(),
            key,
            etag,
            size,
            self.budget.clone(),
            self.config.max_read_chunk,
        )
        .with_cache(self.data_cache.clone())
    }
}
