//! bucketfs: mount an S3-compatible bucket, or a prefix of one, as a directory.
//!
//! Layers, and the one direction their dependencies point:
//! `fuse` (thin adapter over fuser) → `fs` (filesystem core, no fuser types)
//! → `s3` (HTTP client and SigV4; knows nothing of files or inodes).
//! `config` holds the command line and credentials; `figures` is the typed list of the
//! mount's counters and gauges, which `metrics` serves over HTTP;
//! `buffer_pool` recycles large I/O buffers for all of them; `main.rs` wires them together.

pub mod buffer_pool;
pub mod config;
pub mod figures;
pub mod fs;
pub mod fuse;
pub mod metrics;
pub mod s3;
