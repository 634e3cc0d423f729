//! Filesystem core: inodes, listings, attributes, reads and writes on S3. Knows nothing of fuser.

use std::sync::Arc;

use crate::config::FsConfig;
use crate::s3::S3Client;

/// What could not be finished at shutdown.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Files whose pending upload failed, with the reason.
    pub failed: Vec<(String, String)>,
}

pub struct Filesystem {
    pub(crate) config: FsConfig,
    pub(crate) client: S3Client,
}

impl Filesystem {
    pub fn new(config: FsConfig, client: S3Client) -> Arc<Filesystem> {
        Arc::new(Filesystem { config, client })
    }

    /// Finish (or report) every pending upload. Called after unmount.
    pub async fn shutdown(&self) -> ShutdownReport {
        ShutdownReport::default()
    }

    /// The S3 client's counters, as text (`name value` lines).
    pub fn stats_text(&self) -> String {
        String::new()
    }
}
