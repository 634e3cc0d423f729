//! Filesystem core: inodes, listings, attributes, reads and writes on S3. Knows nothing of fuser.
//!
//! Every operation is an `async fn` on [`Filesystem`] that returns an [`FsResult`]; the FUSE
//! adapter turns results into replies. The core can be driven without a kernel mount.

pub mod attr;
mod blocking;
mod busy;
mod closer;
pub use closer::{CloseRoute, Closing};
pub mod control;
pub mod counters;
pub mod data_cache;
pub mod dir_listing;
mod direct_io;
mod dirty_parts;
pub mod error;
mod file_io;
mod handles;
pub mod inode;
pub mod journal;
pub mod memory;
mod metadata_write;
mod names;
mod namespace;
pub mod object_meta;
mod old_dirs;
pub mod part_buffer;
mod part_crc;
mod part_files;
mod part_sizes;
mod patch;
mod patch_stage;
pub mod pending;
pub mod prefetch;
mod recovered;
mod recovery;
mod relist;
mod rename;
mod small_bodies;
pub mod staging;
mod stat_ahead;
pub mod upload;
mod upload_schedule;
mod write_back;
pub mod xattr;
pub mod zero_parts;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::config::FsConfig;
use crate::figures::Figure;
use crate::s3::S3Client;
pub use attr::{Attr, FileKind};
pub use error::{FsError, FsResult};
pub use inode::ROOT_INO;
use inode::{Inode, InodeTable};
use memory::MemoryBudget;
use upload::{PartLimits, UploadStore};

/// What could not be finished at shutdown.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Files whose pending upload failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Files whose pending upload was completed at shutdown (by the key they went to).
    pub finished: Vec<String>,
}

/// Who is asking (from the FUSE request).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// One directory entry handed to readdir, with the offset of the entry after it.
#[derive(Debug, Clone)]
pub struct DirEntryOut {
    pub next_offset: u64,
    pub ino: u64,
    pub kind: FileKind,
    pub name: String,
}

/// Result of open/create.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep the page cache from an earlier open (the object did not change).
    pub keep_cache: bool,
    /// Bypass the page cache (generated files whose size is not known in advance).
    pub direct_io: bool,
}

/// Attribute changes asked by setattr. Times are resolved by the adapter ("now" included).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    pub fh: Option<u64>,
}

/// Filesystem usage numbers for statfs.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Makes the kernel forget a cached (parent, name) entry.
pub type EntryInvalidator = Box<dyn Fn(u64, &str) + Send + Sync>;

pub struct Filesystem {
    pub(crate) config: FsConfig,
    pub(crate) client: S3Client,
    pub(crate) limits: PartLimits,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) store: UploadStore,
    /// Inodes, names known missing, the kernel's name cache (see `names.rs`).
    pub(crate) inodes: names::Names,
    /// Open handles (see `handles.rs`).
    pub(crate) handles: handles::Handles,
    /// Keys left out of listings, warned about once.
    pub(crate) skipped: dir_listing::SkippedKeys,
    /// The kernel's id of the mount serving this filesystem (0: not known), to recognise its
    /// files among a process's descriptors.
    mount_id: AtomicU64,
    /// Cache hits and misses since mount start (shown in the stats file).
    pub(crate) counters: counters::CacheCounters,
    /// Attribute changes of files waiting to be written (see `metadata_write.rs`).
    pub(crate) writeback: Arc<metadata_write::MetadataWriteback>,
    /// Metadata fetched ahead of a walk through a listing (see `stat_ahead.rs`).
    pub(crate) stat_ahead: stat_ahead::StatAhead,
    /// Directories listed again once their lookups probe too often (see `relist.rs`).
    pub(crate) relist: relist::Relister,
    /// Bodies of small files that came with their attributes (see `small_bodies.rs`).
    pub(crate) small_bodies: Arc<small_bodies::SmallBodies>,
    /// This filesystem, for the background tasks it starts.
    pub(crate) me: Weak<Filesystem>,
    /// Uploads an earlier run left unfinished, and the keys a commit waits for until recovery
    /// is done with them (see `recovery.rs`).
    pub(crate) leftovers: recovery::Leftovers,
    /// Object data read through the mount, kept on disk (see `data_cache.rs`).
    pub(crate) data_cache: Option<Arc<data_cache::DataCache>>,
    /// Closed files waiting for their upload (`--write-back`, see `write_back.rs`).
    pub(crate) write_back_queue: Arc<write_back::WriteBackQueue>,
}

impl Filesystem {
    pub fn new(config: FsConfig, client: S3Client) -> Arc<Filesystem> {
        let profile = client.config().profile;
        let limits = PartLimits::new(
            config.part_size.max(profile.min_part_size),
            profile.min_part_size,
            profile.max_part_size,
            profile.max_parts,
            profile.max_object_size,
        );
        let now = SystemTime::now();
        let root_attr = Attr::new(ROOT_INO, FileKind::Directory, 0, &config, now);
        let forever = Instant::now() + Duration::from_secs(3600 * 24 * 365);
        let mut root = Inode::new(
            ROOT_INO,
            ROOT_INO,
            "",
            config.prefix.clone(),
            root_attr,
            forever,
        );
        root.lookups = 1;
        let store = upload_store(&config, &client);
        let data_cache = open_data_cache(&config, &client, store.staging.clone());
        // what earlier runs left, read before this mount starts uploads of its own, so that
        // recovery never takes one of them for a leftover
        let (earlier, moves, pending, zeros) = store
            .journal
            .as_ref()
            .map(|j| {
                let left = j.unfinished();
                // staging a crashed daemon left, that no unfinished upload needs
                j.remove_orphans(&left);
                (
                    left,
                    j.unfinished_moves(),
                    j.unfinished_pending(),
                    j.unfinished_zeros(),
                )
            })
            .unwrap_or_default();
        let budget = Arc::new(MemoryBudget::new(config.max_memory));
        let gate = Arc::new(memory::BudgetGate(budget.clone()));
        client.set_memory_gate(gate.clone());
        store.pool.set_gate(gate);
        let fs = Arc::new_cyclic(|me| Filesystem {
            data_cache,
            write_back_queue: Default::default(),
            writeback: Arc::default(),
            stat_ahead: stat_ahead::StatAhead::default(),
            relist: relist::Relister::default(),
            small_bodies: Arc::new(small_bodies::SmallBodies::new(
                config.metadata_ttl,
                budget.clone(),
            )),
            me: me.clone(),
            budget,
            store,
            leftovers: recovery::Leftovers::new(earlier, moves, pending, zeros),
            limits,
            inodes: names::Names::new(InodeTable::new(root), config.negative_ttl),
            handles: handles::Handles::new(),
            skipped: dir_listing::SkippedKeys::default(),
            mount_id: AtomicU64::new(0),
            counters: counters::CacheCounters::new(),
            config,
            client,
        });
        // files an earlier run closed and did not upload show until they land
        fs.show_recovered();
        fs
    }

    /// Install the hook that makes the kernel forget a cached (parent, name) entry.
    pub fn set_invalidator(&self, f: EntryInvalidator) {
        self.inodes.set_invalidator(f);
    }

    /// Note the kernel's id of the mount that serves this filesystem (`mnt_id` in mountinfo).
    pub fn set_mount_id(&self, id: u64) {
        self.mount_id.store(id, Ordering::Relaxed);
    }

    pub(crate) fn mount_id(&self) -> u64 {
        self.mount_id.load(Ordering::Relaxed)
    }

    /// Make the kernel forget `name` in `parent` (it disappeared without an unlink).
    pub(crate) fn invalidate_entry(&self, parent: u64, name: &str) {
        self.inodes.invalidate(parent, name);
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// How long the kernel may cache entries and attributes.
    pub fn ttl(&self) -> Duration {
        self.config.metadata_ttl
    }

    pub(crate) fn attr_deadline(&self) -> Instant {
        Instant::now() + self.config.metadata_ttl
    }

    /// Path of an inode relative to the mount, for log lines.
    pub fn path_of(&self, ino: u64) -> String {
        let table = self.inodes.lock();
        let mut parts = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if cur == ROOT_INO {
                break;
            }
            match table.get(cur) {
                Some(n) => {
                    parts.push(n.name.clone());
                    cur = n.parent;
                }
                None => {
                    parts.push(format!("<inode {cur}>"));
                    break;
                }
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    /// statfs: S3 has no capacity limit; report large numbers so `df` and free-space checks pass.
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u64 = 4096;
        let blocks = (1u64 << 50) / BSIZE; // 1 PiB
        StatFs {
            blocks,
            bfree: blocks,
            bavail: blocks,
            files: 1 << 40,
            ffree: 1 << 40,
            bsize: BSIZE as u32,
            namelen: dir_listing::NAME_MAX as u32,
            frsize: BSIZE as u32,
        }
    }

    /// The S3 client's counters and the cache's state, as typed figures.
    pub fn stats_values(&self) -> Vec<Figure> {
        let mut v = self.client.stats().figures();
        v.push(Figure::gauge(
            "memory_budget_bytes",
            "Memory the part cache may use (write parts and read-ahead).",
            self.budget.total(),
        ));
        v.push(Figure::gauge(
            "memory_in_use_bytes",
            "Memory the part cache uses now.",
            self.budget.in_use(),
        ));
        v.push(Figure::counter(
            "memory_overruns",
            "Times a reader or writer went over --max-memory after waiting for room in vain.",
            self.budget.overruns(),
        ));
        let (inodes, listed) = {
            let t = self.inodes.lock();
            (t.len() as u64, t.listed_entries() as u64)
        };
        v.push(Figure::gauge(
            "inodes",
            "Inodes known to the kernel or cached.",
            inodes,
        ));
        v.push(Figure::gauge(
            "listed_entries",
            "Entries of the directory listings cached for lookups and readdir.",
            listed,
        ));
        if self.config.write_back {
            let wb = self.write_back_stats();
            v.push(Figure::gauge(
                "write_back_pending_files",
                "Closed files not in the bucket yet (--write-back).",
                wb.files,
            ));
            v.push(Figure::gauge(
                "write_back_pending_bytes",
                "Bytes of closed files not in the bucket yet.",
                wb.bytes,
            ));
            v.push(Figure::gauge(
                "write_back_oldest_seconds",
                "Seconds the oldest of them has waited for its upload.",
                wb.oldest_secs,
            ));
            v.push(Figure::counter(
                "write_back_failures",
                "Uploads of closed files that failed and were tried again later.",
                wb.failures,
            ));
            v.push(Figure::counter(
                "write_back_conflicts",
                "Files changed elsewhere while waiting: uploaded as NAME.conflict-UTC beside.",
                wb.conflicts,
            ));
            v.push(Figure::gauge(
                "write_back_unreachable_seconds",
                "Seconds uploads have been failing for want of a server (0: they work).",
                wb.unreachable_secs,
            ));
        }
        if let Some(staging) = &self.store.staging {
            v.push(Figure::gauge(
                "staging_bytes",
                "Bytes of files being written, staged on disk now.",
                staging.used(),
            ));
            v.push(Figure::gauge(
                "staging_limit_bytes",
                "How many bytes the staging area may hold (--cache-size).",
                staging.limit(),
            ));
        }
        if let Some(c) = &self.data_cache {
            v.extend(c.figures());
        }
        v.extend(self.counters.snapshot().figures());
        v
    }

    /// Waits until fetched blocks on their way to the data cache are written (tests, unmount).
    pub async fn settle_data_cache(&self) {
        if let Some(c) = &self.data_cache {
            c.settle().await;
        }
    }

    /// The memory budget as a gate for buffers held outside the core (the FUSE adapter's).
    pub fn memory_gate(&self) -> Arc<dyn crate::s3::client::MemoryGate> {
        Arc::new(memory::BudgetGate(self.budget.clone()))
    }

    /// [`Filesystem::stats_values`] as `name value` lines.
    pub fn stats_text(&self) -> String {
        crate::figures::to_text(&self.stats_values())
    }

    /// Bytes staged now in the staging area (0 without one).
    pub fn staging_used(&self) -> u64 {
        self.store.staging.as_ref().map_or(0, |s| s.used())
    }

    /// Times a writer went over `--cache-size` after waiting in vain for room.
    pub fn staging_overruns(&self) -> u64 {
        self.store.staging.as_ref().map_or(0, |s| s.overruns())
    }

    /// Finish (or report) every pending upload. Called after unmount.
    pub async fn shutdown(&self) -> ShutdownReport {
        let report = self.finish_all_writes().await;
        self.flush_all_metadata().await;
        self.settle_data_cache().await;
        if let Some(j) = &self.store.journal {
            j.settle().await;
            j.remove_if_done();
        }
        report
    }
}

/// The data cache in `--cache-dir` (`--data-cache on`, the default, with a cache dir). Its
/// blocks are read back by any mount of the same endpoint and bucket.
fn open_data_cache(
    config: &FsConfig,
    client: &S3Client,
    staging: Option<Arc<staging::StagingBudget>>,
) -> Option<Arc<data_cache::DataCache>> {
    let dir = config.cache_dir.as_ref().filter(|_| config.data_cache)?;
    let id = format!("{}/{}", client.config().endpoint, client.bucket());
    match data_cache::DataCache::open(dir, &id, config.cache_size, staging) {
        Ok(c) => {
            c.read_into(client.body_pool());
            Some(c)
        }
        Err(e) => {
            tracing::warn!(
                "data cache in {} unusable, reads go to S3: {e}",
                dir.display()
            );
            None
        }
    }
}

/// The journal (in `--cache-dir`, else the user's state directory) and where parts are kept.
fn upload_store(config: &FsConfig, client: &S3Client) -> UploadStore {
    let dir = config.state_dir();
    let journal = dir.and_then(|dir| {
        let name = format!("{}/{}", client.config().endpoint, client.bucket());
        match journal::UploadJournal::open(&dir, &name, &config.prefix) {
            Ok(j) => Some(Arc::new(j)),
            Err(e) => {
                tracing::warn!("upload journal in {} unusable: {e}", dir.display());
                None
            }
        }
    });
    let spill = config.cache_dir.is_some() && journal.is_some();
    UploadStore {
        spill,
        journal,
        pool: Default::default(),
        staging: spill.then(|| staging::StagingBudget::new(config.cache_size)),
        defer_sends: config.write_back,
        prefix: config.prefix.clone(),
    }
}
