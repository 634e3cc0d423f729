//! The read-only `.bucketfs/stats` file at the mount root: the mount's counters while mounted
//! (S3 requests by type, bytes, retries, errors, cache and memory use). Not shown in listings.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::attr::{Attr, FileKind};
use super::error::FsResult;
use super::inode::ROOT_INO;
use super::Filesystem;

pub const CONTROL_DIR_NAME: &str = ".bucketfs";
pub const STATS_NAME: &str = "stats";
/// Inode numbers far from the allocated ones.
pub const CONTROL_DIR_INO: u64 = u64::MAX - 1;
pub const STATS_INO: u64 = u64::MAX - 2;

impl Filesystem {
    fn control_attr(&self, ino: u64) -> Option<Attr> {
        let (kind, perm) = match ino {
            CONTROL_DIR_INO => (FileKind::Directory, 0o555),
            STATS_INO => (FileKind::File, 0o444),
            _ => return None,
        };
        let mut a = Attr::new(ino, kind, 0, &self.config, SystemTime::now());
        a.perm = perm;
        a.mtime = UNIX_EPOCH;
        Some(a)
    }

    /// Lookup of the control names; `None` for every other name.
    pub(crate) fn control_lookup(&self, parent: u64, name: &str) -> Option<Attr> {
        match (parent, name) {
            (ROOT_INO, CONTROL_DIR_NAME) => self.control_attr(CONTROL_DIR_INO),
            (CONTROL_DIR_INO, STATS_NAME) => self.control_attr(STATS_INO),
            _ => None,
        }
    }

    /// Attributes of a control inode; `None` for every other inode.
    pub(crate) fn control_getattr(&self, ino: u64) -> Option<Attr> {
        self.control_attr(ino)
    }

    pub(crate) fn is_control(ino: u64) -> bool {
        ino == CONTROL_DIR_INO || ino == STATS_INO
    }

    /// Contents of the stats file as of now.
    pub(crate) async fn stats_bytes(&self) -> FsResult<Bytes> {
        let (files, bytes) = self.pending_uploads().await;
        let mut text = self.stats_text();
        text.push_str(&format!(
            "pending_upload_files {files}\npending_upload_bytes {bytes}\n"
        ));
        let unsaved = self.unsaved_files();
        text.push_str(&format!("unsaved_files {}\n", unsaved.len()));
        for key in unsaved {
            let key = key
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            text.push_str(&format!("unsaved_file{{key=\"{key}\"}} 1\n"));
        }
        Ok(Bytes::from(text))
    }
}
