//! Cache hit and miss counters of the core, counted from mount start and shown in the stats
//! file (`.bucketfs/stats`) next to the S3 client's counters.
//!
//! Each counter is one relaxed atomic add: cheap enough for every lookup, readdir and read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::figures::Figure;

/// How often the core's caches answered without S3, and how often they did not.
#[derive(Debug, Default)]
pub struct CacheCounters {
    lookup_hits: AtomicU64,
    lookup_misses: AtomicU64,
    readdir_hits: AtomicU64,
    readdir_misses: AtomicU64,
    read_hit_bytes: AtomicU64,
    read_miss_bytes: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSnapshot {
    /// Lookups answered from cached attributes, a fresh listing or the negative cache.
    pub lookup_hits: u64,
    /// Lookups that sent HEAD and/or LIST.
    pub lookup_misses: u64,
    /// Directory opens served from a fresh listing snapshot.
    pub readdir_hits: u64,
    /// Directory opens that list from S3.
    pub readdir_misses: u64,
    /// Bytes read that were already fetched or in flight (read-ahead hit).
    pub read_hit_bytes: u64,
    /// Bytes read that needed a new ranged GET.
    pub read_miss_bytes: u64,
}

impl CacheCounters {
    pub fn new() -> CacheCounters {
        CacheCounters::default()
    }

    /// A lookup answered without any S3 request.
    pub fn lookup_hit(&self) {
        self.lookup_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A lookup that had to ask S3 (HEAD, LIST or both).
    pub fn lookup_miss(&self) {
        self.lookup_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A directory listing served from a fresh snapshot.
    pub fn readdir_hit(&self) {
        self.readdir_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A directory listing read from S3.
    pub fn readdir_miss(&self) {
        self.readdir_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` of a read served by data already fetched or being fetched.
    pub fn read_hit(&self, bytes: u64) {
        self.read_hit_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `bytes` of a read that needed a new GET.
    pub fn read_miss(&self, bytes: u64) {
        self.read_miss_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CacheSnapshot {
        CacheSnapshot {
            lookup_hits: self.lookup_hits.load(Ordering::Relaxed),
            lookup_misses: self.lookup_misses.load(Ordering::Relaxed),
            readdir_hits: self.readdir_hits.load(Ordering::Relaxed),
            readdir_misses: self.readdir_misses.load(Ordering::Relaxed),
            read_hit_bytes: self.read_hit_bytes.load(Ordering::Relaxed),
            read_miss_bytes: self.read_miss_bytes.load(Ordering::Relaxed),
        }
    }

    /// `name value` lines, in the style of the S3 client's counters.
    pub fn to_text(&self) -> String {
        self.snapshot().to_text()
    }
}

impl CacheSnapshot {
    /// The counters as typed figures, in the stats file's order.
    pub fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::counter(
                "cache_lookup_hits",
                "Lookups answered from the cache, without S3.",
                self.lookup_hits,
            ),
            Figure::counter(
                "cache_lookup_misses",
                "Lookups that sent HEAD and/or LIST to S3.",
                self.lookup_misses,
            ),
            Figure::counter(
                "cache_readdir_hits",
                "Directory listings served from a fresh cached listing.",
                self.readdir_hits,
            ),
            Figure::counter(
                "cache_readdir_misses",
                "Directory listings read from S3.",
                self.readdir_misses,
            ),
            Figure::counter(
                "cache_read_hit_bytes",
                "Bytes read that were already fetched or being fetched (read-ahead hits).",
                self.read_hit_bytes,
            ),
            Figure::counter(
                "cache_read_miss_bytes",
                "Bytes read that needed a new ranged GET.",
                self.read_miss_bytes,
            ),
        ]
    }

    pub fn to_text(&self) -> String {
        crate::figures::to_text(&self.figures())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_text() {
        let c = CacheCounters::new();
        c.lookup_hit();
        c.lookup_hit();
        c.lookup_miss();
        c.readdir_hit();
        c.readdir_miss();
        c.readdir_miss();
        c.read_hit(4096);
        c.read_miss(100);
        c.read_miss(28);
        let s = c.snapshot();
        assert_eq!(
            s,
            CacheSnapshot {
                lookup_hits: 2,
                lookup_misses: 1,
                readdir_hits: 1,
                readdir_misses: 2,
                read_hit_bytes: 4096,
                read_miss_bytes: 128,
            }
        );
        let text = c.to_text();
        assert!(text.contains("cache_lookup_hits 2\n"), "{text}");
        assert!(text.contains("cache_read_miss_bytes 128\n"), "{text}");
        assert_eq!(text.lines().count(), 6);
    }
}
