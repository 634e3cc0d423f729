//! The local data cache: object bytes read through the mount, kept on disk in blocks keyed by
//! key and ETag, each with a CRC32C checked on read, bounded by `--cache-size` together with
//! the staging area (least recently used evicted first; staged writes are never evicted), and
//! found again by the next mount.
//!
//! Layout: `<cache dir>/data/<bucket id>/<id[..2]>/<id>/<block index>`, where `id` names one
//! version (key and ETag) of an object; a block file is a big-endian CRC32C of the bytes, then
//! the bytes (`BLOCK` of them, fewer for an object's last block). Files are written to a
//! temporary name and renamed, so a crash leaves whole blocks or none. Every method here
//! touches files: call them on blocking threads.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::staging::StagingBudget;
use crate::figures::Figure;

/// Bytes per block: a random read fetches whole blocks, so small enough for one GET of it to
/// cost little more than the read itself, large enough to keep the file count moderate.
pub const BLOCK: u64 = 256 * 1024;

/// Bytes of blocks handed to background writes and not yet on disk: past it, fetched bytes
/// are not kept (the read does not wait for the disk, and memory stays bounded).
const MAX_PENDING_STORE: u64 = 32 * 1024 * 1024;

/// One version of one object: a digest of its key and ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectId([u8; 16]);

impl ObjectId {
    pub fn new(key: &str, etag: &str) -> ObjectId {
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update([0u8]);
        h.update(etag.trim_matches('"').as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        ObjectId(id)
    }

    fn hex(&self) -> String {
        hex::encode(self.0)
    }

    fn parse(s: &str) -> Option<ObjectId> {
        let v = hex::decode(s).ok()?;
        Some(ObjectId(v.try_into().ok()?))
    }
}

type BlockKey = (ObjectId, u64);

#[derive(Default)]
struct Counters {
    hit_bytes: AtomicU64,
    miss_bytes: AtomicU64,
    stored_bytes: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
}

struct Index {
    /// Blocks on disk, least recently used first, with their length.
    lru: lru::LruCache<BlockKey, u64>,
    bytes: u64,
}

/// The cache of one bucket in one cache directory.
pub struct DataCache {
    dir: PathBuf,
    limit: u64,
    staging: Option<Arc<StagingBudget>>,
    index: Mutex<Index>,
    pending: AtomicU64,
    /// Told when a background write of blocks ends.
    stored: tokio::sync::Notify,
    counters: Counters,
}

impl DataCache {
    /// Opens (creating it) the cache of `bucket_id` under `cache_dir` and indexes the blocks an
    /// earlier mount left, oldest first. Blocking.
    pub fn open(
        cache_dir: &Path,
        bucket_id: &str,
        limit: u64,
        staging: Option<Arc<StagingBudget>>,
    ) -> io::Result<Arc<DataCache>> {
        let digest = Sha256::digest(bucket_id.as_bytes());
        let dir = cache_dir.join("data").join(hex::encode(&digest[..8]));
        fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        for top in fs::read_dir(&dir)?.flatten() {
            let Ok(objects) = fs::read_dir(top.path()) else {
                continue;
            };
            for object in objects.flatten() {
                let name = object.file_name().to_string_lossy().into_owned();
                let Some(id) = ObjectId::parse(&name) else {
                    continue;
                };
                let Ok(blocks) = fs::read_dir(object.path()) else {
                    continue;
                };
                for block in blocks.flatten() {
                    let bname = block.file_name().to_string_lossy().into_owned();
                    let Ok(index) = bname.parse::<u64>() else {
                        // a temporary file a crash left
                        let _ = fs::remove_file(block.path());
                        continue;
                    };
                    let Ok(meta) = block.metadata() else {
                        continue;
                    };
                    let len = meta.len().saturating_sub(4);
                    let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((when, id, index, len));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let mut lru = lru::LruCache::unbounded();
        let mut bytes = 0;
        for (_, id, index, len) in found {
            lru.put((id, index), len);
            bytes += len;
        }
        let cache = Arc::new(DataCache {
            dir,
            limit,
            staging,
            index: Mutex::new(Index { lru, bytes }),
            pending: AtomicU64::new(0),
            stored: tokio::sync::Notify::new(),
            counters: Counters::default(),
        });
        cache.make_room(0);
        Ok(cache)
    }

    fn object_dir(&self, id: &ObjectId) -> PathBuf {
        let hex = id.hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    fn block_path(&self, id: &ObjectId, index: u64) -> PathBuf {
        self.object_dir(id).join(index.to_string())
    }

    /// Whether every block of `[start, end)` is on disk (marks them used).
    pub fn holds(&self, id: ObjectId, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        let mut index = self.index.lock();
        (start / BLOCK..=(end - 1) / BLOCK).all(|b| index.lru.get(&(id, b)).is_some())
    }

    /// Bytes `[start, end)` of an object of `size` bytes, from its blocks; `None` when one is
    /// missing or damaged (a damaged block is removed: it will be fetched again). Blocking.
    pub fn read(&self, id: ObjectId, start: u64, end: u64, size: u64) -> Option<Bytes> {
        if start >= end || end > size {
            return None;
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for b in start / BLOCK..=(end - 1) / BLOCK {
            let want = BLOCK.min(size - b * BLOCK);
            let data = match self.read_block(&id, b, want) {
                Ok(d) => d,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "cache block {} is damaged ({e}); fetching it again",
                            self.block_path(&id, b).display()
                        );
                    }
                    self.forget(id, b);
                    return None;
                }
            };
            let from = start.max(b * BLOCK) - b * BLOCK;
            let to = end.min(b * BLOCK + want) - b * BLOCK;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        self.counters
            .hit_bytes
            .fetch_add(end - start, Ordering::Relaxed);
        Some(out.freeze())
    }

    fn read_block(&self, id: &ObjectId, index: u64, want: u64) -> io::Result<Vec<u8>> {
        let mut f = fs::File::open(self.block_path(id, index))?;
        let mut buf = Vec::with_capacity(want as usize + 4);
        f.read_to_end(&mut buf)?;
        if buf.len() as u64 != want + 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes, expected {}", buf.len(), want + 4),
            ));
        }
        let crc = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let data = buf.split_off(4);
        if crc32c::crc32c(&data) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "CRC32C mismatch",
            ));
        }
        Ok(data)
    }

    fn forget(&self, id: ObjectId, index: u64) {
        let mut idx = self.index.lock();
        if let Some(len) = idx.lru.pop(&(id, index)) {
            idx.bytes -= len;
        }
        drop(idx);
        let _ = fs::remove_file(self.block_path(&id, index));
    }

    /// Bytes fetched from S3 for a read while the cache was on.
    pub fn missed(&self, bytes: u64) {
        self.counters.miss_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Room for `bytes` more of fetched data waiting to be written; `None`: skip caching them.
    pub fn reserve_store(self: &Arc<Self>, bytes: u64) -> Option<PendingStore> {
        let before = self.pending.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > MAX_PENDING_STORE {
            self.pending.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(PendingStore {
            cache: self.clone(),
            bytes,
        })
    }

    /// Keeps the whole blocks that `data` (bytes from `start` of an object of `size` bytes)
    /// covers; an object's last block may be short. Blocking.
    pub fn store(&self, id: ObjectId, start: u64, data: &[u8], size: u64) {
        let end = start + data.len() as u64;
        let first = start.div_ceil(BLOCK);
        let mut b = first;
        while b * BLOCK < end {
            let block_end = (b * BLOCK + BLOCK).min(size);
            if block_end > end {
                break;
            }
            let from = (b * BLOCK - start) as usize;
            let to = (block_end - start) as usize;
            if !self.index.lock().lru.contains(&(id, b)) {
                if let Err(e) = self.write_block(id, b, &data[from..to]) {
                    tracing::debug!("cannot keep a block in the data cache: {e}");
                    return;
                }
            }
            b += 1;
        }
    }

    fn write_block(&self, id: ObjectId, index: u64, data: &[u8]) -> io::Result<()> {
        let len = data.len() as u64;
        if !self.make_room(len) {
            return Ok(());
        }
        let dir = self.object_dir(&id);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{index}.{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&crc32c::crc32c(data).to_be_bytes())?;
        f.write_all(data)?;
        drop(f);
        fs::rename(&tmp, dir.join(index.to_string()))?;
        let mut idx = self.index.lock();
        if idx.lru.put((id, index), len).is_none() {
            idx.bytes += len;
        }
        drop(idx);
        self.counters.stored_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Evicts least recently used blocks until `more` bytes fit beside what is cached and
    /// what the staging area holds; whether they do.
    fn make_room(&self, more: u64) -> bool {
        let staged = self.staging.as_ref().map_or(0, |s| s.used());
        let room = self.limit.saturating_sub(staged);
        if more > room {
            return false;
        }
        let mut victims = Vec::new();
        {
            let mut idx = self.index.lock();
            while idx.bytes + more > room {
                match idx.lru.pop_lru() {
                    Some((key, len)) => {
                        idx.bytes -= len;
                        victims.push(key);
                    }
                    None => break,
                }
            }
        }
        let mut dirs = HashSet::new();
        for (id, index) in &victims {
            let _ = fs::remove_file(self.block_path(id, *index));
            dirs.insert(*id);
        }
        for id in dirs {
            // gone once its last block is
            let _ = fs::remove_dir(self.object_dir(&id));
        }
        self.counters
            .evictions
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        true
    }

    /// Waits until the background writes of blocks under way have ended (at unmount, so that
    /// the next mount finds what this one read).
    pub async fn settle(&self) {
        loop {
            let ended = self.stored.notified();
            if self.pending.load(Ordering::Relaxed) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// Bytes of blocks on disk now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().bytes
    }

    pub fn figures(&self) -> Vec<Figure> {
        let c = &self.counters;
        vec![
            Figure::gauge(
                "data_cache_bytes",
                "Bytes of object data kept in the local data cache now.",
                self.bytes(),
            ),
            Figure::counter(
                "data_cache_hit_bytes",
                "Bytes of reads answered from the local data cache.",
                c.hit_bytes.load(Ordering::Relaxed),
            ),
            Figure::counter(
                "data_cache_miss_bytes",
                "Bytes of reads fetched from S3 while the data cache was on.",
                c.miss_bytes.load(Ordering::Relaxed),
            ),
            Figure::counter(
                "data_cache_stored_bytes",
                "Bytes written into the local data cache.",
                c.stored_bytes.load(Ordering::Relaxed),
            ),
            Figure::counter(
                "data_cache_evictions",
                "Blocks evicted from the data cache to stay within --cache-size.",
                c.evictions.load(Ordering::Relaxed),
            ),
            Figure::counter(
                "data_cache_corrupt_blocks",
                "Cache blocks found damaged on read (removed and fetched again).",
                c.corrupt.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Fetched bytes on their way to the cache: counted until written.
pub struct PendingStore {
    cache: Arc<DataCache>,
    bytes: u64,
}

impl PendingStore {
    /// Writes the blocks (blocking) and gives the room back.
    pub fn store(self, id: ObjectId, start: u64, data: &[u8], size: u64) {
        self.cache.store(id, start, data, size);
    }
}

impl Drop for PendingStore {
    fn drop(&mut self) {
        self.cache.pending.fetch_sub(self.bytes, Ordering::Relaxed);
        self.cache.stored.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 249) as u8).collect()
    }

    #[test]
    fn blocks_are_kept_read_back_and_found_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * BLOCK + 100;
        let d = data(size as usize);
        let id = ObjectId::new("k", "\"e1\"");
        {
            let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
            // a range that starts mid-block keeps only the whole blocks inside it
            c.store(id, 10, &d[10..], size);
            assert!(!c.holds(id, 0, 10));
            assert!(c.holds(id, BLOCK, size));
            c.store(id, 0, &d[..BLOCK as usize], size);
            assert!(c.holds(id, 0, size));
            assert_eq!(c.bytes(), size);
            let got = c.read(id, 5, size - 3, size).unwrap();
            assert_eq!(&got[..], &d[5..(size - 3) as usize]);
        }
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        assert_eq!(c.bytes(), size);
        assert_eq!(&c.read(id, 0, size, size).unwrap()[..], &d[..]);
        // another ETag is another object; another bucket another cache
        assert!(!c.holds(ObjectId::new("k", "e2"), 0, 1));
        let other = DataCache::open(dir.path(), "b2", 1 << 30, None).unwrap();
        assert_eq!(other.bytes(), 0);
    }

    #[test]
    fn a_damaged_block_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * BLOCK;
        let d = data(size as usize);
        let id = ObjectId::new("k", "e");
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        c.store(id, 0, &d, size);
        let path = c.block_path(&id, 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(c.read(id, 0, size, size).is_none());
        assert!(!c.holds(id, BLOCK, size), "the damaged block is forgotten");
        assert!(c.holds(id, 0, BLOCK));
        assert_eq!(c.counters.corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_least_recently_used_blocks_go_first_and_staging_counts() {
        let dir = tempfile::tempdir().unwrap();
        let staging = StagingBudget::new(4 * BLOCK);
        let c = DataCache::open(dir.path(), "b", 4 * BLOCK, Some(staging.clone())).unwrap();
        let d = data(BLOCK as usize);
        let ids: Vec<_> = (0..4)
            .map(|i| ObjectId::new(&format!("k{i}"), "e"))
            .collect();
        for id in &ids {
            c.store(*id, 0, &d, BLOCK);
        }
        assert_eq!(c.bytes(), 4 * BLOCK);
        assert!(c.holds(ids[0], 0, BLOCK)); // used: k1 is now the oldest
        c.store(ObjectId::new("k4", "e"), 0, &d, BLOCK);
        assert!(!c.holds(ids[1], 0, BLOCK));
        assert!(c.holds(ids[0], 0, BLOCK));
        assert_eq!(c.bytes(), 4 * BLOCK);
        // staged writes are never evicted: the cache makes room for them
        let mut charge = super::super::staging::Charge::new(staging);
        charge.set(2 * BLOCK);
        c.store(ObjectId::new("k5", "e"), 0, &d, BLOCK);
        assert_eq!(c.bytes(), 2 * BLOCK);
        let files = walk(dir.path());
        assert_eq!(files, 2, "evicted blocks' files are gone");
    }

    fn walk(p: &Path) -> usize {
        let mut n = 0;
        for e in fs::read_dir(p).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                n += walk(&e.path());
            } else {
                n += 1;
            }
        }
        n
    }
}
