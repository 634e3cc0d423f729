//! Reads of one open file: sequential reads get a growing window of parallel ranged GETs,
//! random reads get small ranged GETs. Every GET carries If-Match with the ETag seen at open,
//! so an object replaced meanwhile gives an error, never mixed bytes. With a data cache, a
//! chunk whose blocks are on disk is read from there (no request), random reads fetch whole
//! blocks, and fetched bytes are kept for the next read.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};

use super::data_cache::{DataCache, ObjectId, BLOCK, UNIT};
use super::error::{FsError, FsResult};
use super::memory::{MemoryBudget, Reservation, WRITER_PATIENCE};
use crate::s3::S3Client;

/// Smallest GET for a random read: a request costs far more than its bytes.
const MIN_RANDOM_GET: u64 = 128 * 1024;
/// Read-ahead window of a stream that just started.
const INITIAL_WINDOW: u64 = 2 * 1024 * 1024;
/// Smallest chunk of a sequential stream.
const MIN_CHUNK: u64 = 256 * 1024;
/// Random reads of one open file that missed the data cache before each further miss also
/// fills the region around it (see [`Prefetcher::fill_region`]).
const FILL_AFTER_MISSES: u32 = 8;
/// The region a random miss fills in the background, aligned: 16 blocks.
const FILL_REGION: u64 = 16 * BLOCK;
/// Region fills under way at most per open file: the reads that miss keep the server's
/// attention and the memory budget (a fill never waits for either; it is skipped).
const FILLS_AT_ONCE: usize = 4;
/// Chunks are kept until the reader is this far past them, for reads that arrive late.
const BEHIND_SLACK: u64 = 2 * 1024 * 1024;

/// A chunk's bytes with the memory they hold against the budget: released when the last
/// holder (the chunk, or a read that took a piece of it) lets go. The hold goes first (fields
/// drop in order), so a pooled body handed back finds room to stay idle in its pool.
type Held = (Arc<Reservation>, Bytes);
type ChunkData = Shared<BoxFuture<'static, Result<Held, FsError>>>;

struct Chunk {
    start: u64,
    end: u64,
    data: ChunkData,
    /// Cancels the GET when the chunk is dropped unheard: no read awaits it any more.
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // `Some(1)`: only this chunk holds the future, and it has not completed
        if let (Some(task), Some(1)) = (&self.task, self.data.strong_count()) {
            task.abort();
        }
    }
}

/// Which pieces of which chunks make up one read; awaited without holding the handle lock.
#[derive(Default)]
pub struct ReadPlan {
    pieces: Vec<(ChunkData, usize, usize)>,
    /// Bytes served by GETs already under way (read-ahead hits) and by new ones.
    pub hit_bytes: u64,
    pub miss_bytes: u64,
}

/// Read state of one open file handle.
pub struct Prefetcher {
    client: S3Client,
    key: String,
    etag: Option<String>,
    size: u64,
    budget: Arc<MemoryBudget>,
    chunks: VecDeque<Chunk>,
    /// End of the last chunk requested: where the sequential stream continues.
    stream_end: u64,
    window: u64,
    max_window: u64,
    max_chunk: u64,
    /// The data cache and this version's name in it (only with an ETag).
    cache: Option<(Arc<DataCache>, ObjectId)>,
    /// Random reads that missed the cache so far.
    random_misses: u32,
    /// Regions a background fill was started for (see [`Prefetcher::fill_region`]).
    filling: std::collections::HashSet<u64>,
    /// Region fills under way.
    fills: Arc<std::sync::atomic::AtomicUsize>,
}

/// One object's GET of a range for a chunk or a region fill: the body checked for its length
/// and, with a data cache, handed to it with each unit's CRC32C computed as the body arrived
/// (hot in the CPU's caches, not in another pass by the cache's writer).
struct Fetch<'a> {
    client: &'a S3Client,
    key: &'a str,
    etag: Option<&'a str>,
    size: u64,
}

impl Fetch<'_> {
    async fn get(
        &self,
        start: u64,
        end: u64,
        cache: Option<(Arc<DataCache>, ObjectId)>,
        memory: Arc<Reservation>,
    ) -> FsResult<Bytes> {
        let key = self.key;
        let units = cache
            .as_ref()
            .filter(|_| start % UNIT == 0)
            .map(|_| UNIT as usize);
        let out = self
            .client
            .get_object_units(key, Some(start..end), self.etag, units)
            .await
            .map_err(|e| FsError::from_s3(&e, key))?;
        if out.body.len() as u64 != end - start {
            return Err(FsError::new(
                libc::EIO,
                format!(
                    "short read of {key:?}: asked bytes {start}..{end}, got {} bytes",
                    out.body.len()
                ),
            ));
        }
        if let Some((cache, id)) = cache {
            cache
                .keep_fetched(
                    id,
                    start,
                    out.body.clone(),
                    out.unit_crcs,
                    self.size,
                    Some(memory),
                )
                .await;
        }
        Ok(out.body)
    }
}

impl Prefetcher {
    pub fn new(
        client: S3Client,
        key: String,
        etag: Option<String>,
        size: u64,
        budget: Arc<MemoryBudget>,
        max_chunk: u64,
    ) -> Prefetcher {
        let max_window = (budget.total() / 2).clamp(INITIAL_WINDOW, 64 * 1024 * 1024);
        Prefetcher {
            client,
            key,
            etag,
            size,
            budget,
            chunks: VecDeque::new(),
            stream_end: 0,
            window: INITIAL_WINDOW,
            max_window,
            max_chunk: max_chunk.max(MIN_CHUNK),
            cache: None,
            random_misses: 0,
            filling: std::collections::HashSet::new(),
            fills: Arc::default(),
        }
    }

    /// Reads go through `cache` (nothing is cached for an object without an ETag).
    pub fn with_cache(mut self, cache: Option<Arc<DataCache>>) -> Prefetcher {
        self.cache = match (cache, &self.etag) {
            (Some(c), Some(etag)) => Some((c, ObjectId::new(&self.key, etag))),
            _ => None,
        };
        self
    }

    /// The whole object is at hand already (`small_bodies.rs`): reads are served from it.
    pub fn with_body(mut self, body: Bytes) -> Prefetcher {
        if body.len() as u64 == self.size {
            // counted where it is kept (`small_bodies.rs`)
            let held = (Arc::new(Reservation::default()), body);
            let data = futures::future::ready(Ok(held)).boxed().shared();
            self.chunks.push_back(Chunk {
                start: 0,
                end: self.size,
                data,
                task: None,
            });
            self.stream_end = self.size;
        }
        self
    }

    /// Starts fetching `[start, end)`: from the data cache when it holds those bytes, else with
    /// a GET. `reservation` is the memory read-ahead got for it; a chunk a read needs now
    /// (`None`) waits for room in its task, and after a while goes over the budget.
    fn spawn_chunk(&self, start: u64, end: u64, reservation: Option<Reservation>) -> Chunk {
        let client = self.client.clone();
        let key = self.key.clone();
        let etag = self.etag.clone();
        let cache = self.cache.clone();
        let budget = self.budget.clone();
        let size = self.size;
        let task = tokio::spawn(async move {
            let reservation = Arc::new(match reservation {
                Some(r) => r,
                None => needed_now(&budget, end - start).await,
            });
            let held = |bytes| Ok((reservation.clone(), bytes));
            if let Some((cache, id)) = &cache {
                if let Some(bytes) = cache.read_held(*id, start, end, size).await {
                    return held(bytes);
                }
            }
            let fetch = Fetch {
                client: &client,
                key: &key,
                etag: etag.as_deref(),
                size,
            };
            held(fetch.get(start, end, cache, reservation.clone()).await?)
        });
        let abort = task.abort_handle();
        let data = task
            .map(|r| match r {
                Ok(res) => res,
                Err(e) => Err(FsError::new(libc::EIO, format!("read task ended: {e}"))),
            })
            .boxed()
            .shared();
        Chunk {
            start,
            end,
            data,
            task: Some(abort),
        }
    }

    /// Decide which GETs serve `[offset, offset+len)` and start them (and the read-ahead).
    ///
    /// The kernel sends read-ahead requests concurrently, so reads of one sequential stream can
    /// arrive slightly out of order: anything from just behind the oldest chunk kept up to one
    /// window past the stream's end counts as sequential; gaps are filled, not restarted.
    pub fn plan(&mut self, offset: u64, len: u32) -> ReadPlan {
        let end = (offset + u64::from(len)).min(self.size);
        if offset >= end {
            return ReadPlan::default();
        }
        let stream_start = self
            .chunks
            .front()
            .map(|c| c.start)
            .unwrap_or(self.stream_end);
        let in_stream = offset >= stream_start && offset <= self.stream_end + self.window;
        let straggler = offset < stream_start && offset + BEHIND_SLACK >= stream_start;
        let hit_bytes = self.covered_bytes(offset, end);
        if !in_stream && !straggler {
            // random access: the stream goes, a small GET around this read starts a new one
            self.chunks.clear();
            self.window = INITIAL_WINDOW;
            // without a cache, at least MIN_RANDOM_GET: a request costs far more than bytes
            let want_end = match self.cache {
                Some(_) => end,
                None => end.max(offset + MIN_RANDOM_GET),
            };
            let (get_start, get_end) = self.get_range(offset, want_end);
            let chunk = self.spawn_chunk(get_start, get_end, None);
            self.chunks.push_back(chunk);
            self.stream_end = get_end;
            // (a miss of the data cache: a read it answers is none)
            let missed = self
                .cache
                .as_ref()
                .is_some_and(|(c, id)| hit_bytes < end - offset && !c.holds(*id, offset, end));
            if missed {
                self.random_misses = self.random_misses.saturating_add(1);
                if self.random_misses > FILL_AFTER_MISSES {
                    self.fill_region(offset);
                }
            }
        } else if straggler {
            // a late read just behind the kept chunks: fetch it alone, the stream stays
            let (get_start, get_end) = self.get_range(offset, end);
            let chunk = self.spawn_chunk(get_start, get_end, None);
            let from = (offset - get_start) as usize;
            return ReadPlan {
                pieces: vec![(chunk.data.clone(), from, from + (end - offset) as usize)],
                hit_bytes: 0,
                miss_bytes: end - offset,
            };
        } else {
            // drop what the reader has left well behind, growing the window as it goes
            while let Some(front) = self.chunks.front() {
                if front.end + BEHIND_SLACK <= offset {
                    self.chunks.pop_front();
                    self.window = (self.window * 2).min(self.max_window);
                } else {
                    break;
                }
            }
            let target = (offset + self.window).max(end).min(self.size);
            while self.stream_end < target {
                let start = self.stream_end;
                // about eight GETs in flight once the window is wide
                let chunk_len = (self.window / 8).clamp(MIN_CHUNK, self.max_chunk);
                let chunk_end = (start + chunk_len).min(self.size);
                let needed_now = start < end;
                let reservation = match self.budget.try_reserve(chunk_end - start) {
                    Some(r) => Some(r),
                    // the bytes this read needs wait for room in their task; read-ahead
                    // beyond them stops growing
                    None if needed_now => None,
                    None => break,
                };
                let chunk = self.spawn_chunk(start, chunk_end, reservation);
                self.chunks.push_back(chunk);
                self.stream_end = chunk_end;
            }
        }
        let mut pieces = Vec::new();
        for c in &self.chunks {
            if c.end <= offset || c.start >= end {
                continue;
            }
            let from = offset.max(c.start) - c.start;
            let to = end.min(c.end) - c.start;
            pieces.push((c.data.clone(), from as usize, to as usize));
        }
        ReadPlan {
            pieces,
            hit_bytes,
            miss_bytes: (end - offset) - hit_bytes,
        }
    }

    /// A file read at random again and again (more than [`FILL_AFTER_MISSES`] misses through
    /// this handle) has the [`FILL_REGION`] around each further miss fetched into the data
    /// cache in the background, once per region, as rclone's chunked reads and s3fs's cache
    /// do: a random reader then finds most of its reads on local disk after a few seconds
    /// instead of paying one GET per block. Only for an object of at most a quarter of the
    /// cache (the fills never crowd out the rest), only when the memory budget has room at
    /// once (never waited for), and never for bytes the cache holds; the read that missed is
    /// still answered by its own small GET, not by the fill.
    fn fill_region(&mut self, offset: u64) {
        let Some((cache, id)) = self.cache.clone() else {
            return;
        };
        if self.size > cache.limit() / 4 {
            return;
        }
        let start = offset - offset % FILL_REGION;
        let end = (start + FILL_REGION).min(self.size);
        if start >= end
            || self.fills.load(std::sync::atomic::Ordering::Relaxed) >= FILLS_AT_ONCE
            || self.filling.contains(&start)
            || cache.holds(id, start, end)
        {
            return;
        }
        let Some(reservation) = self.budget.try_reserve(end - start) else {
            return;
        };
        self.filling.insert(start);
        let guard = cache.fill_started(self.fills.clone());
        let (client, key, etag, size) = (
            self.client.clone(),
            self.key.clone(),
            self.etag.clone(),
            self.size,
        );
        tokio::spawn(async move {
            let _guard = guard;
            let fetch = Fetch {
                client: &client,
                key: &key,
                etag: etag.as_deref(),
                size,
            };
            let memory = Arc::new(reservation);
            if let Err(e) = fetch.get(start, end, Some((cache, id)), memory).await {
                tracing::debug!(%key, start, "region fill: {e}");
            }
        });
    }

    /// What a GET for `[offset, end)` asks for: whole blocks with a data cache (so that they
    /// can be kept), else just that. Bytes the cache already holds are read in checksum units,
    /// not whole blocks.
    fn get_range(&self, offset: u64, end: u64) -> (u64, u64) {
        let end = end.min(self.size);
        let align = match &self.cache {
            Some((cache, id)) if cache.holds(*id, offset, end) => UNIT,
            Some(_) => BLOCK,
            None => return (offset, end),
        };
        let start = offset - offset % align;
        (
            start,
            end.div_ceil(align).saturating_mul(align).min(self.size),
        )
    }

    /// Bytes of `[offset, end)` that chunks already requested cover.
    fn covered_bytes(&self, offset: u64, end: u64) -> u64 {
        self.chunks
            .iter()
            .map(|c| end.min(c.end).saturating_sub(offset.max(c.start)))
            .sum()
    }

    /// Where to read `[offset, offset + len)` from when the data cache holds all of it and no
    /// chunk in memory does: the cache, this version's name in it, the range's end and the
    /// object's size.
    pub fn cached(&self, offset: u64, len: u32) -> Option<(Arc<DataCache>, ObjectId, u64, u64)> {
        let (cache, id) = self.cache.as_ref()?;
        let end = (offset + u64::from(len)).min(self.size);
        // bytes a chunk in memory holds (a stream being read) are taken from there
        if offset >= end
            || self.covered_bytes(offset, end) == end - offset
            || !cache.holds(*id, offset, end)
        {
            return None;
        }
        Some((cache.clone(), *id, end, self.size))
    }

    /// Forget a failed stream so the next read starts afresh.
    pub fn reset(&mut self) {
        self.chunks.clear();
        self.stream_end = 0;
        self.window = INITIAL_WINDOW;
    }
}

/// Memory for bytes a read needs now: room when there is some; else waits for read-ahead to
/// be consumed or writers to finish, and after [`WRITER_PATIENCE`] goes over the budget (said
/// once in the log) rather than leave the read waiting forever.
async fn needed_now(budget: &MemoryBudget, bytes: u64) -> Reservation {
    if let Some(r) = budget.try_reserve(bytes) {
        return r;
    }
    match budget.reserve_within(bytes, WRITER_PATIENCE).await {
        Some(r) => r,
        None => {
            budget.overrun("a read");
            Reservation::default()
        }
    }
}

impl ReadPlan {
    /// Wait for the pieces and join them.
    pub async fn bytes(self) -> FsResult<Bytes> {
        if self.pieces.len() == 1 {
            let (data, from, to) = self
                .pieces
                .into_iter()
                .next()
                .ok_or_else(|| FsError::new(libc::EIO, "empty read plan"))?;
            let (_held, buf) = data.await?;
            return Ok(buf.slice(from..to));
        }
        let mut out = BytesMut::new();
        for (data, from, to) in self.pieces {
            let (_held, buf) = data.await?;
            out.extend_from_slice(&buf[from..to]);
        }
        Ok(out.freeze())
    }
}
