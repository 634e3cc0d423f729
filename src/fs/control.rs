//! The read-only `.bucketfs/stats` file at the mount root: the mount's counters while mounted
//! (S3 requests by type, bytes, retries, errors, cache and memory use). Not shown in listings.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::figures::Figure;

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
        let mut figures = self.stats_values();
        figures.push(Figure::gauge(
            "pending_upload_files",
            "Files written and closed whose upload has not finished.",
            files as u64,
        ));
        figures.push(Figure::gauge(
            "pending_upload_bytes",
            "Bytes of those files still to upload.",
            bytes,
        ));
        let unsaved = self.unsaved_files();
        figures.push(Figure::gauge(
            "unsaved_files",
            "Files whose upload failed; kept here and sent again at close or fsync.",
            unsaved.len() as u64,
        ));
        for key in unsaved {
            figures.push(
                Figure::gauge("unsaved_file", "One file whose upload failed.", 1)
                    .with_label("key", key),
            );
        }
        Ok(Bytes::from(crate::figures::to_text(&figures)))
    }
}
