//! Mount configuration: every knob of a mount, parsed from the command line by `cli`.

pub mod cli;
#[cfg(test)]
mod cred_test_support;
pub mod credentials;
mod dash_o;
mod role_profiles;
pub mod stats_view;
pub mod values;

use std::path::PathBuf;
use std::time::Duration;

/// Everything the filesystem core needs to know about a mount (no S3 connection details).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// Key prefix the mount is rooted at: empty, or ending in `/`.
    pub prefix: String,
    pub read_only: bool,
    /// How long attributes and directory listings are trusted.
    pub metadata_ttl: Duration,
    /// How long a "no such file" answer is trusted.
    pub negative_ttl: Duration,
    /// Upload part size in bytes (grows for very large files, see `fs::upload`).
    pub part_size: u64,
    /// One memory budget for the whole mount, shared by write parts and read prefetch.
    pub max_memory: u64,
    /// The staging area of files being written (their parts); `None`: parts in memory.
    pub cache_dir: Option<PathBuf>,
    /// Where the upload journal goes when there is no `cache_dir`; `None`:
    /// `$XDG_STATE_HOME/bucketfs`, else `~/.local/state/bucketfs`. Tests set their own.
    pub state_dir: Option<PathBuf>,
    /// Most bytes staged in `cache_dir` at once (writers wait for uploads beyond it).
    pub cache_size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits for objects/directories without `x-amz-meta-mode`.
    pub file_mode: u16,
    pub dir_mode: u16,
    /// Largest ranged GET the prefetcher issues for one chunk.
    pub max_read_chunk: u64,
    /// How long after the first attribute change of a closed file its metadata is written
    /// (changes made meanwhile go in the same copy; see `fs::metadata_write`). 1 s; tests set
    /// their own.
    pub metadata_write_delay: Duration,
    /// Longest wait of an open for the kernel's release of a writer already closed (`cp a b
    /// && cat b`, see `fs::file_io`). 5 s; tests set their own.
    pub release_wait: Duration,
    /// Longest wait of a commit for the recovery of an earlier run's upload of its key (it
    /// goes on after, with its own conditions; see `fs::recovery`). 60 s; tests set their own.
    pub recovery_wait: Duration,
    /// A directory's complete listing is kept (for lookups, within the TTL) when it has at
    /// most this many entries (100,000, ~100 bytes each); a larger one is listed in full all
    /// the same, page by page, and its lookups cost a HEAD each. Tests set their own.
    pub listing_cache_entries: usize,
    /// A listing longer than `listing_cache_entries` keeps that many entries behind its reader
    /// plus this many (32,768: the most one kernel reply of 1 MiB holds, asked again when the
    /// caller took only part of it); a seek back past them lists again. Tests set their own.
    pub readdir_keep_behind: usize,
    /// Entries of all cached listings together (500,000, ~50 MB): past it the oldest
    /// directories' listings are dropped (a walk of a million keys stays bounded).
    pub listing_cache_total: usize,
    /// `--stat-from-listing`: a listed file's lookup takes its size, time and ETag from the
    /// listing (no HEAD); its full metadata is fetched when it is opened or changed.
    pub stat_from_listing: bool,
    /// `--compat-dir`: a name missing from S3 is also looked for as `name_$folder$`.
    pub compat_dir: bool,
    /// Keep object data read through the mount in `cache_dir` (`--data-cache`).
    pub data_cache: bool,
    /// `--write-back`: close returns once the file is staged and journaled; the upload
    /// follows (see `fs::write_back`). Needs `cache_dir`.
    pub write_back: bool,
    /// Write-back: the first wait before an upload that failed is tried again (doubling up
    /// to a minute). 1 s; tests set their own.
    pub write_back_retry: Duration,
    /// Write-back: uploads start once closes have paused this long (or 5 s after a file's
    /// close), so that a copy of many files does not compete with its own uploads. 300 ms.
    pub write_back_idle: Duration,
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsConfig {
            prefix: String::new(),
            read_only: false,
            metadata_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            part_size: 8 * 1024 * 1024,
            max_memory: 96 * 1024 * 1024,
            cache_dir: None,
            state_dir: None,
            cache_size: 10 * 1024 * 1024 * 1024,
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            max_read_chunk: 8 * 1024 * 1024,
            metadata_write_delay: Duration::from_secs(1),
            release_wait: Duration::from_secs(5),
            recovery_wait: Duration::from_secs(60),
            listing_cache_entries: 100_000,
            readdir_keep_behind: crate::fs::dir_listing::KEEP_BEHIND,
            listing_cache_total: 500_000,
            stat_from_listing: false,
            compat_dir: false,
            data_cache: true,
            write_back: false,
            write_back_retry: Duration::from_secs(1),
            write_back_idle: Duration::from_millis(300),
        }
    }
}

impl FsConfig {
    /// Where the mount keeps what must outlive it (the upload journal, probe results):
    /// `--cache-dir`, else `state_dir`, else `$XDG_STATE_HOME/bucketfs`, else
    /// `~/.local/state/bucketfs`.
    pub fn state_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or(self.state_dir.clone())
            .or_else(|| {
                std::env::var_os("XDG_STATE_HOME")
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"))
                    })
                    .map(|d| d.join("bucketfs"))
            })
    }
}
