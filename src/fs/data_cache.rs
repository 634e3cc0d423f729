//! The local data cache: object bytes read through the mount, kept on disk in blocks keyed by
//! key and ETag, each with a CRC32C checked on read, bounded by `--cache-size` together with
//! the staging area (least recently used evicted first; staged writes are never evicted), and
//! found again by the next mount.
//!
//! Layout: `<cache dir>/data/<bucket id>/<id[..2]>/<id>.data` and `<id>.sums`, where `id`
//! names one version (key and ETag) of an object. `.data` is a sparse file of the object's size
//! holding the cached blocks at their offsets; `.sums` holds a big-endian CRC32C per 64 KiB
//! unit (0: not cached). One file per object, not per block: creating thousands of inodes costs ext4 more
//! CPU than the bytes. A block is indexed once both writes are done; one a crash cut short
//! fails its CRC32C check when read, and is fetched again. An evicted block's range is punched
//! out of the data file. Every method here touches files: call them on blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::memory::Reservation;
use super::staging::StagingBudget;
use crate::buffer_pool::BufferPool;
use crate::figures::Figure;

/// Bytes per block: a random read fetches whole blocks, so small enough for one GET of it to
/// cost little more than the read itself, large enough to keep the file count moderate.
pub const BLOCK: u64 = 256 * 1024;

/// Bytes per checksum: a read from the cache reads and checks only the units it needs (a
/// random 4 KiB read costs 64 KiB, not a block).
pub const UNIT: u64 = 64 * 1024;
const UNITS_PER_BLOCK: u64 = BLOCK / UNIT;

/// Bytes of blocks handed to background writes and not yet on disk: past it, the read whose
/// bytes they are waits for its own write (memory stays bounded, every block is kept).
const MAX_PENDING_STORE: u64 = 32 * 1024 * 1024;

/// A read of this many bytes of blocks or more (a sequential reader's chunk) goes past the
/// page cache; a smaller one (a random reader's) through it.
const DIRECT_READ: usize = 1024 * 1024;

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
    /// Blocks on disk per object: its files go with its last block.
    per_object: HashMap<ObjectId, u64>,
}

impl Index {
    fn insert(&mut self, key: BlockKey, len: u64) {
        if self.lru.put(key, len).is_none() {
            self.bytes += len;
            *self.per_object.entry(key.0).or_insert(0) += 1;
        }
    }

    /// Takes a block out; whether it was its object's last.
    fn remove(&mut self, key: &BlockKey, len: u64) -> bool {
        self.bytes -= len;
        match self.per_object.get_mut(&key.0) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                self.per_object.remove(&key.0);
                true
            }
        }
    }
}

/// The cache of one bucket in one cache directory.
pub struct DataCache {
    dir: PathBuf,
    limit: u64,
    staging: Option<Arc<StagingBudget>>,
    index: Mutex<Index>,
    pending: AtomicU64,
    /// Region fills under way (their GET, then their store): see [`DataCache::fill_started`].
    fills: AtomicU64,
    /// Told when a background write of blocks ends.
    stored: tokio::sync::Notify,
    /// The one thread that writes fetched blocks, in order (parallel creates in one directory
    /// spin on its lock and cost more CPU than the writes).
    writer: Mutex<Option<std::sync::mpsc::Sender<StoreJob>>>,
    counters: Counters,
    /// Where large reads of blocks go ([`DataCache::read_into`]).
    buffers: std::sync::OnceLock<Arc<BufferPool>>,
}

/// Fetched bytes for the writer thread.
struct StoreJob {
    id: ObjectId,
    start: u64,
    data: Bytes,
    /// The CRC32C of each [`UNIT`] of `data` from its first byte, when known (else empty).
    crcs: Vec<u32>,
    size: u64,
    pending: PendingStore,
    /// The memory budget's hold on `data`, given back once it is written.
    memory: Option<Arc<Reservation>>,
    done: tokio::sync::oneshot::Sender<()>,
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
                let Some(id) = name.strip_suffix(".sums").and_then(ObjectId::parse) else {
                    continue;
                };
                let sums_path = object.path();
                let data_path = sums_path.with_extension("data");
                let (Ok(sums), Ok(meta)) = (fs::read(&sums_path), fs::metadata(&data_path)) else {
                    let _ = fs::remove_file(&sums_path);
                    let _ = fs::remove_file(&data_path);
                    continue;
                };
                let size = meta.len();
                let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                // a block is there when its first unit's checksum is (its units are written
                // together; one a crash cut short fails its check when read)
                for (b, crc) in sums.chunks(4 * UNITS_PER_BLOCK as usize).enumerate() {
                    let b = b as u64;
                    if crc.len() >= 4 && crc[..4] != [0u8; 4] && b * BLOCK < size {
                        found.push((when, id, b, BLOCK.min(size - b * BLOCK)));
                    }
                }
            }
        }
        found.sort_by_key(|f| f.0);
        let mut index = Index {
            lru: lru::LruCache::unbounded(),
            bytes: 0,
            per_object: HashMap::new(),
        };
        for (_, id, b, len) in found {
            index.insert((id, b), len);
        }
        let cache = Arc::new(DataCache {
            dir,
            limit,
            staging,
            index: Mutex::new(index),
            pending: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            stored: tokio::sync::Notify::new(),
            writer: Mutex::new(None),
            counters: Counters::default(),
            buffers: std::sync::OnceLock::new(),
        });
        cache.make_room(0);
        let (tx, rx) = std::sync::mpsc::channel::<StoreJob>();
        let weak = Arc::downgrade(&cache);
        std::thread::Builder::new()
            .name("bucketfs-cache".into())
            .spawn(move || {
                // ends when the cache (holding the sender) is dropped
                while let Ok(job) = rx.recv() {
                    if let Some(cache) = weak.upgrade() {
                        cache.store_with(job.id, job.start, &job.data, job.size, &job.crcs);
                    }
                    drop(job.pending);
                    drop(job.memory);
                    let _ = job.done.send(());
                }
            })?;
        *cache.writer.lock() = Some(tx);
        Ok(cache)
    }

    /// The data file and checksum file of an object version.
    fn paths(&self, id: &ObjectId) -> (PathBuf, PathBuf) {
        let hex = id.hex();
        let base = self.dir.join(&hex[..2]).join(hex);
        (base.with_extension("data"), base.with_extension("sums"))
    }

    /// The cache's bound, `--cache-size`.
    pub fn limit(&self) -> u64 {
        self.limit
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
        let (data_path, sums_path) = self.paths(&id);
        let files = File::open(&data_path).and_then(|d| Ok((d, File::open(&sums_path)?)));
        let Ok((data, sums)) = files else {
            self.forget_object(id);
            return None;
        };
        // the units holding the range, checked, then the range cut out of them
        let (first, last) = (start / UNIT, (end - 1) / UNIT);
        let mut want_sums = vec![0u8; ((last - first + 1) * 4) as usize];
        if sums.read_exact_at(&mut want_sums, first * 4).is_err() {
            self.forget_object(id);
            return None;
        }
        let from = first * UNIT;
        let to = (last * UNIT + UNIT).min(size);
        let buf = match self.read_units(&data_path, &data, from, (to - from) as usize) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("cannot read {}: {e}", data_path.display());
                self.forget_object(id);
                return None;
            }
        };
        for (i, u) in (first..=last).enumerate() {
            let lo = ((u - first) * UNIT) as usize;
            let hi = (lo + UNIT as usize).min(buf.len());
            let want = u32::from_be_bytes([
                want_sums[i * 4],
                want_sums[i * 4 + 1],
                want_sums[i * 4 + 2],
                want_sums[i * 4 + 3],
            ]);
            if want == 0 || crc32c::crc32c(&buf[lo..hi]) != want {
                let b = u * UNIT / BLOCK;
                if want != 0 {
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "block {b} of {} is damaged (CRC32C mismatch); fetching it again",
                        data_path.display()
                    );
                }
                self.evict(&[(id, b)]);
                return None;
            }
        }
        self.counters
            .hit_bytes
            .fetch_add(end - start, Ordering::Relaxed);
        Some(buf.slice((start - from) as usize..(end - from) as usize))
    }

    /// `len` bytes at `from` (a unit's start) of the data file `data` (at `path`): a
    /// sequential read's run ([`DIRECT_READ`] or more) past the page cache into a pooled buffer
    /// once [`read_into`](Self::read_into) gave one (a warm 1 GiB read: 1.15 s of the daemon's
    /// CPU went to fresh buffers' page faults, fresh page-cache pages and the copy out of
    /// them); a smaller one (a random read's) through the page cache, where the reads around
    /// it find it.
    fn read_units(&self, path: &Path, data: &File, from: u64, len: usize) -> io::Result<Bytes> {
        if let Some(pool) = self.buffers.get().filter(|_| len >= DIRECT_READ) {
            if let Some(bytes) = super::direct_io::read_at(path, from, len, pool)? {
                return Ok(bytes);
            }
        }
        let mut buf = BytesMut::zeroed(len);
        data.read_exact_at(&mut buf, from)?;
        Ok(buf.freeze())
    }

    /// Large reads of blocks go into buffers of `pool` (the S3 client's, for GET bodies:
    /// page-aligned, recycled, counted by the memory budget while idle), past the page cache.
    pub fn read_into(&self, pool: Arc<BufferPool>) {
        let _ = self.buffers.set(pool);
    }

    /// Drops every block of an object whose files are gone or unreadable.
    fn forget_object(&self, id: ObjectId) {
        let mut idx = self.index.lock();
        let keys: Vec<BlockKey> = idx
            .lru
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(len) = idx.lru.pop(&k) {
                idx.remove(&k, len);
            }
        }
        drop(idx);
        let (d, s) = self.paths(&id);
        let _ = fs::remove_file(d);
        let _ = fs::remove_file(s);
    }

    /// Bytes fetched from S3 for a read while the cache was on.
    fn missed(&self, bytes: u64) {
        self.counters.miss_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Hands fetched bytes (from `start` of an object of `size` bytes) to the writer thread.
    /// Returns when they are written, and whether the writes waiting were already past their
    /// bound (then the caller waits for this one, so that a disk falling behind slows reads
    /// down instead of piling up memory).
    fn store_later(
        self: &Arc<Self>,
        id: ObjectId,
        start: u64,
        data: Bytes,
        crcs: Vec<u32>,
        size: u64,
        memory: Option<Arc<Reservation>>,
    ) -> (tokio::sync::oneshot::Receiver<()>, bool) {
        let bytes = data.len() as u64;
        let before = self.pending.fetch_add(bytes, Ordering::Relaxed);
        let pending = PendingStore {
            cache: self.clone(),
            bytes,
        };
        let (done, written) = tokio::sync::oneshot::channel();
        let job = StoreJob {
            id,
            start,
            data,
            crcs,
            size,
            pending,
            memory,
            done,
        };
        if let Some(tx) = self.writer.lock().as_ref() {
            // a send fails only when the thread is gone: the job (and its count) is dropped
            let _ = tx.send(job);
        }
        (written, before + bytes > MAX_PENDING_STORE)
    }

    /// Keeps the whole blocks that `data` (bytes from `start` of an object of `size` bytes)
    /// covers; an object's last block may be short. Blocking.
    pub fn store(&self, id: ObjectId, start: u64, data: &[u8], size: u64) {
        self.store_with(id, start, data, size, &[]);
    }

    /// [`store`](Self::store), with the CRC32C of each [`UNIT`] of `data` from its first byte
    /// when known (`crcs`, computed as the bytes arrived): used where `start` is at a unit's
    /// start, so that the bytes are not read again for them. Blocking.
    pub fn store_with(&self, id: ObjectId, start: u64, data: &[u8], size: u64, crcs: &[u32]) {
        let end = start + data.len() as u64;
        let mut blocks = Vec::new();
        let mut b = start.div_ceil(BLOCK);
        while b * BLOCK < end {
            let block_end = (b * BLOCK + BLOCK).min(size);
            if block_end > end {
                break;
            }
            if !self.index.lock().lru.contains(&(id, b)) {
                blocks.push((b, block_end - b * BLOCK));
            }
            b += 1;
        }
        let bytes: u64 = blocks.iter().map(|(_, len)| len).sum();
        if blocks.is_empty() || !self.make_room(bytes) {
            return;
        }
        let crcs = if start % UNIT == 0 { crcs } else { &[] };
        if let Err(e) = self.write_blocks(id, start, data, crcs, size, &blocks) {
            tracing::debug!("cannot keep blocks in the data cache: {e}");
        }
    }

    fn write_blocks(
        &self,
        id: ObjectId,
        start: u64,
        data: &[u8],
        known: &[u32],
        size: u64,
        blocks: &[(u64, u64)],
    ) -> io::Result<()> {
        let (data_path, sums_path) = self.paths(&id);
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(p)
        };
        let (file, sums) = match open(&data_path).and_then(|d| Ok((d, open(&sums_path)?))) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = data_path.parent() {
                    fs::create_dir_all(parent)?;
                }
                (open(&data_path)?, open(&sums_path)?)
            }
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() != size {
            file.set_len(size)?;
        }
        // each run of neighbouring blocks in one write. A sequential read's runs go past the
        // page cache (read back through it when used: a stream of fresh page-cache pages
        // costs more CPU than the write). A lone block is what a random read fetched, and
        // the reads around it tend to come soon: it stays in the page cache for them (cold
        // random 4 KiB reads: 7,100 a second with every block direct, 9,800 with lone ones
        // buffered).
        let mut i = 0;
        while i < blocks.len() {
            let mut j = i + 1;
            while j < blocks.len() && blocks[j].0 == blocks[j - 1].0 + 1 {
                j += 1;
            }
            let run = &blocks[i..j];
            let from = (run[0].0 * BLOCK - start) as usize;
            let len: u64 = run.iter().map(|r| r.1).sum();
            let bytes = &data[from..from + len as usize];
            if run.len() == 1 {
                file.write_all_at(bytes, run[0].0 * BLOCK)?;
            } else {
                super::direct_io::write_all_at(&file, bytes, run[0].0 * BLOCK)?;
            }
            // the run's units, as computed when they arrived (`start` is a unit's start), or
            // now
            let first = from / UNIT as usize;
            let units = bytes.len().div_ceil(UNIT as usize);
            let crcs: Vec<u8> = match known.get(first..first + units) {
                Some(given) => given.iter().flat_map(|c| c.to_be_bytes()).collect(),
                None => bytes
                    .chunks(UNIT as usize)
                    .flat_map(|u| crc32c::crc32c(u).to_be_bytes())
                    .collect(),
            };
            sums.write_all_at(&crcs, run[0].0 * UNITS_PER_BLOCK * 4)?;
            let mut index = self.index.lock();
            for &(b, len) in run {
                index.insert((id, b), len);
            }
            drop(index);
            self.counters.stored_bytes.fetch_add(len, Ordering::Relaxed);
            i = j;
        }
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
            let idx = self.index.lock();
            let mut bytes = idx.bytes;
            for (key, len) in idx.lru.iter().rev() {
                if bytes + more <= room {
                    break;
                }
                bytes -= len;
                victims.push(*key);
            }
        }
        self.evict(&victims);
        self.counters
            .evictions
            .fetch_add(victims.len() as u64, Ordering::Relaxed);
        true
    }

    /// Takes blocks out of the index and their bytes off the disk: the range punched out of
    /// the data file and the checksum zeroed, or both files removed with an object's last.
    fn evict(&self, blocks: &[BlockKey]) {
        let mut by_object: BTreeMap<[u8; 16], (ObjectId, Vec<u64>, bool)> = BTreeMap::new();
        {
            let mut idx = self.index.lock();
            for key in blocks {
                let last = match idx.lru.pop(key) {
                    Some(len) => idx.remove(key, len),
                    None => !idx.per_object.contains_key(&key.0),
                };
                let e = by_object
                    .entry(key.0 .0)
                    .or_insert((key.0, Vec::new(), false));
                e.1.push(key.1);
                e.2 |= last;
            }
        }
        for (_, (id, blocks, last)) in by_object {
            let (data_path, sums_path) = self.paths(&id);
            if last {
                let _ = fs::remove_file(&data_path);
                let _ = fs::remove_file(&sums_path);
                continue;
            }
            let files = OpenOptions::new()
                .write(true)
                .open(&data_path)
                .and_then(|d| Ok((d, OpenOptions::new().write(true).open(&sums_path)?)));
            let Ok((data, sums)) = files else {
                continue;
            };
            for b in blocks {
                let _ = sums.write_all_at(
                    &[0u8; 4 * UNITS_PER_BLOCK as usize],
                    b * UNITS_PER_BLOCK * 4,
                );
                punch_hole(&data, b * BLOCK, BLOCK);
            }
        }
    }

    /// `[start, end)` of an object of `size` bytes when the cache holds all of it, read on a
    /// blocking thread (from async code); `None` when it does not, or a block is damaged.
    pub async fn read_held(
        self: &Arc<Self>,
        id: ObjectId,
        start: u64,
        end: u64,
        size: u64,
    ) -> Option<Bytes> {
        if !self.holds(id, start, end) {
            return None;
        }
        let c = self.clone();
        tokio::task::spawn_blocking(move || c.read(id, start, end, size))
            .await
            .ok()
            .flatten()
    }

    /// Bytes fetched from S3 (from `start` of an object of `size` bytes), counted as a miss
    /// and kept in the background; waits for the disk only when it falls behind. `memory` is
    /// the budget's hold on `body`, kept until it is written (the reader may drop its copy
    /// first); without one the caller waits for the write, so that no bytes outlive their
    /// count.
    pub async fn keep_fetched(
        self: &Arc<Self>,
        id: ObjectId,
        start: u64,
        body: Bytes,
        crcs: Vec<u32>,
        size: u64,
        memory: Option<Arc<Reservation>>,
    ) {
        self.missed(body.len() as u64);
        let counted = memory.is_some();
        let (written, behind) = self.store_later(id, start, body, crcs, size, memory);
        if behind || !counted {
            let _ = written.await;
        }
    }

    /// Waits until the background writes of blocks under way, and the region fills, have
    /// ended (at unmount, so that the next mount finds what this one read).
    pub async fn settle(&self) {
        loop {
            let ended = self.stored.notified();
            if self.pending.load(Ordering::Relaxed) == 0 && self.fills.load(Ordering::Relaxed) == 0
            {
                return;
            }
            ended.await;
        }
    }

    /// A region fill (a read-ahead for a random reader, `prefetch.rs`) starts: counted here
    /// and in `per_open` (its open file's fills) until the guard is dropped, after its bytes
    /// were handed to the writer, or on any way out of the fill's task. [`settle`] waits for
    /// it.
    ///
    /// [`settle`]: DataCache::settle
    pub fn fill_started(self: &Arc<Self>, per_open: Arc<AtomicUsize>) -> FillGuard {
        self.fills.fetch_add(1, Ordering::Relaxed);
        per_open.fetch_add(1, Ordering::Relaxed);
        FillGuard {
            cache: self.clone(),
            per_open,
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

/// Frees the disk space of `[offset, offset + len)` of `file`, its size unchanged.
fn punch_hole(file: &File, offset: u64, len: u64) {
    // SAFETY: fallocate on a descriptor this function borrows; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc != 0 {
        tracing::debug!(
            "cannot punch an evicted block out of the data cache: {}",
            io::Error::last_os_error()
        );
    }
}

/// A region fill under way (see [`DataCache::fill_started`]).
pub struct FillGuard {
    cache: Arc<DataCache>,
    per_open: Arc<AtomicUsize>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.per_open.fetch_sub(1, Ordering::Relaxed);
        self.cache.fills.fetch_sub(1, Ordering::Relaxed);
        self.cache.stored.notify_waiters();
    }
}

/// Fetched bytes on their way to the cache: counted until written.
struct PendingStore {
    cache: Arc<DataCache>,
    bytes: u64,
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

    /// Pages of `len` bytes at `from` (page-aligned) of `path` that are in the page cache.
    fn resident(path: &Path, from: u64, len: u64) -> usize {
        let file = File::open(path).unwrap();
        let pages = len.div_ceil(4096) as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of an open file, only asked about, then unmapped.
        unsafe {
            let at = libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                from as libc::off_t,
            );
            assert_ne!(at, libc::MAP_FAILED);
            assert_eq!(libc::mincore(at, len as usize, vec.as_mut_ptr()), 0);
            libc::munmap(at, len as usize);
        }
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    #[test]
    fn a_random_read_s_lone_block_stays_in_the_page_cache_and_a_sequential_run_goes_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let size = 8 * BLOCK;
        let d = data(size as usize);
        let id = ObjectId::new("k", "\"e1\"");
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        c.store(id, 0, &d[..BLOCK as usize], size);
        c.store(id, 4 * BLOCK, &d[4 * BLOCK as usize..], size);
        let (data_path, _) = c.paths(&id);
        assert_eq!(
            resident(&data_path, 0, BLOCK),
            (BLOCK / 4096) as usize,
            "the lone block, for the reads around it"
        );
        if !super::super::direct_io::refused_anywhere() {
            assert_eq!(
                resident(&data_path, 4 * BLOCK, 4 * BLOCK),
                0,
                "the run went direct"
            );
        }
        assert_eq!(
            &c.read(id, 0, BLOCK, size).unwrap()[..],
            &d[..BLOCK as usize]
        );
        assert_eq!(
            &c.read(id, 4 * BLOCK, size, size).unwrap()[..],
            &d[4 * BLOCK as usize..]
        );
    }

    #[test]
    fn an_evicted_block_leaves_the_others_and_frees_its_space() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let size = 8 * BLOCK;
        let d = data(size as usize);
        let id = ObjectId::new("k", "e");
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        c.store(id, 0, &d, size);
        let (path, _) = c.paths(&id);
        let used = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
        let before = used(&path);
        c.evict(&[(id, 2), (id, 3)]);
        assert!(used(&path) <= before - 2 * BLOCK, "punched out");
        assert!(!c.holds(id, 2 * BLOCK, 3 * BLOCK));
        assert_eq!(
            &c.read(id, 4 * BLOCK, size, size).unwrap()[..],
            &d[4 * BLOCK as usize..]
        );
        drop(c);
        // the next mount finds the same blocks
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        assert_eq!(c.bytes(), 6 * BLOCK);
        assert!(c.holds(id, 0, 2 * BLOCK) && !c.holds(id, 2 * BLOCK, 2 * BLOCK + 1));
    }

    #[test]
    fn unit_checksums_given_with_the_bytes_are_the_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * BLOCK;
        let d = data(size as usize);
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        let right: Vec<u32> = d.chunks(UNIT as usize).map(crc32c::crc32c).collect();
        let ok = ObjectId::new("k", "e1");
        c.store_with(ok, 0, &d, size, &right);
        assert_eq!(&c.read(ok, 0, size, size).unwrap()[..], &d[..]);
        // given ones are kept as they are: a wrong one makes its block fail its check
        let mut wrong = right.clone();
        wrong[UNITS_PER_BLOCK as usize] ^= 1;
        let bad = ObjectId::new("k", "e2");
        c.store_with(bad, 0, &d, size, &wrong);
        assert!(c.read(bad, 0, size, size).is_none());
        assert!(c.holds(bad, 0, BLOCK) && !c.holds(bad, BLOCK, size));
        // bytes that do not start at a unit: the checksums given are not theirs, so unused
        let off = ObjectId::new("k", "e3");
        c.store_with(off, 100, &d[100..], size, &wrong);
        assert!(c.holds(off, BLOCK, size));
        assert_eq!(
            &c.read(off, BLOCK, size, size).unwrap()[..],
            &d[BLOCK as usize..]
        );
        // fewer given than the blocks need: the rest computed
        let short = ObjectId::new("k", "e4");
        c.store_with(short, 0, &d, size, &right[..2]);
        assert_eq!(&c.read(short, 0, size, size).unwrap()[..], &d[..]);
    }

    #[test]
    fn a_sequential_run_is_read_past_the_page_cache_into_a_pooled_buffer_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        // not a whole number of pages: the last piece of a direct read comes back short
        let size = 6 * BLOCK + 1000;
        let d = data(size as usize);
        let id = ObjectId::new("k", "e");
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        let pool = Arc::new(BufferPool::default());
        c.read_into(pool.clone());
        c.store(id, 0, &d, size);
        let direct = !super::super::direct_io::refused_anywhere();
        let got = c.read(id, 5, size, size).unwrap();
        assert!(
            got[..] == d[5..],
            "a run read from the middle of a unit to the end"
        );
        drop(got);
        if direct {
            assert_eq!(pool.idle(), 1, "the run's buffer was the pool's");
        }
        let got = c.read(id, 2 * BLOCK, 6 * BLOCK, size).unwrap();
        assert!(got[..] == d[2 * BLOCK as usize..6 * BLOCK as usize]);
        drop(got);
        // a random reader's few units: through the page cache, not the pool
        let taken = pool.idle();
        let got = c.read(id, BLOCK + 7, BLOCK + 100, size).unwrap();
        assert!(got[..] == d[BLOCK as usize + 7..BLOCK as usize + 100]);
        assert_eq!(pool.idle(), taken, "no pooled buffer for a small read");
        drop(got);
        // a damaged unit is found by the direct read too: never served, its block dropped
        let (path, _) = c.paths(&id);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let at = 4 * BLOCK + UNIT + 3;
        file.write_all_at(&[d[at as usize] ^ 0x20], at).unwrap();
        drop(file);
        assert!(c.read(id, 0, size, size).is_none());
        assert!(
            !c.holds(id, 4 * BLOCK, 5 * BLOCK),
            "the damaged block is forgotten"
        );
        assert!(c.holds(id, 0, 4 * BLOCK) && c.holds(id, 5 * BLOCK, size));
        assert_eq!(c.counters.corrupt.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_damaged_block_is_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let size = 2 * BLOCK;
        let d = data(size as usize);
        let id = ObjectId::new("k", "e");
        let c = DataCache::open(dir.path(), "b", 1 << 30, None).unwrap();
        c.store(id, 0, &d, size);
        let (path, _) = c.paths(&id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[BLOCK as usize + 100] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(c.read(id, 0, size, size).is_none());
        assert!(!c.holds(id, BLOCK, size), "the damaged block is forgotten");
        assert!(c.holds(id, 0, BLOCK));
        assert_eq!(c.counters.corrupt.load(Ordering::Relaxed), 1);
        assert_eq!(
            &c.read(id, 0, BLOCK, size).unwrap()[..],
            &d[..BLOCK as usize]
        );
        // fetched again, it is kept again
        c.store(id, BLOCK, &d[BLOCK as usize..], size);
        assert_eq!(&c.read(id, 0, size, size).unwrap()[..], &d[..]);
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
        assert_eq!(
            files, 4,
            "the files of objects whose blocks are all evicted are gone"
        );
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
