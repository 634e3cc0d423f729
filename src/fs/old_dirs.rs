//! s3fs's older directory objects: an empty `dir` typed as a directory, and `dir_$folder$`
//! (also Hadoop s3n's). How they are recognized, what a directory knows of its own, and finding
//! it out before `rmdir` or a rename removes the directory (else it would come back).

use super::attr::META_MODE;
use super::error::{FsError, FsResult};
use super::Filesystem;
use crate::s3::ObjectMeta;

/// The suffix of the `dir_$folder$` form.
pub const FOLDER_SUFFIX: &str = "_$folder$";

/// What a directory knows of an older directory object standing for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OldDirObject {
    /// None: its listing or lookup showed there is none.
    #[default]
    Absent,
    /// Maybe a bare `dir` object: its lookup did not wait for the HEAD that would say, or its
    /// parent's listing showed an empty object of its name. Asked (one HEAD) before removal.
    Unknown,
    /// This key.
    At(String),
}

/// An empty object whose Content-Type or `x-amz-meta-mode` says "directory".
pub fn is_old_dir_object(meta: &ObjectMeta) -> bool {
    let typed = meta.content_type.as_deref().is_some_and(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        t.eq_ignore_ascii_case("application/x-directory")
            || t.eq_ignore_ascii_case("httpd/unix-directory")
    });
    let mode_dir = meta
        .user_metadata
        .get(META_MODE)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|m| m & libc::S_IFMT == libc::S_IFDIR);
    meta.size == 0 && (typed || mode_dir)
}

impl Filesystem {
    /// The older directory object of directory `ino` (prefix `key`), if any: what is known,
    /// or one HEAD of the bare name (and of `dir_$folder$` with `--compat-dir`).
    pub(crate) async fn old_dir_object(&self, ino: u64, key: &str) -> FsResult<Option<String>> {
        let known = self
            .inodes
            .lock()
            .get(ino)
            .map(|n| n.old_dir_object.clone())
            .unwrap_or_default();
        let bare = key.strip_suffix('/').unwrap_or(key);
        match known {
            OldDirObject::Absent => Ok(None),
            OldDirObject::At(k) => Ok(Some(k)),
            OldDirObject::Unknown if bare.is_empty() => Ok(None),
            OldDirObject::Unknown => {
                let found = match self.client.head_object(bare).await {
                    Ok(m) if is_old_dir_object(&m) => Some(bare.to_string()),
                    Ok(_) => None,
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(FsError::from_s3(&e, bare)),
                };
                let found = match found {
                    None if self.config.compat_dir => {
                        let folder = format!("{bare}{FOLDER_SUFFIX}");
                        match self.client.head_object(&folder).await {
                            Ok(_) => Some(folder),
                            Err(e) if e.is_not_found() => None,
                            Err(e) => return Err(FsError::from_s3(&e, &folder)),
                        }
                    }
                    f => f,
                };
                if let Some(n) = self.inodes.lock().get_mut(ino) {
                    n.old_dir_object = match &found {
                        Some(k) => OldDirObject::At(k.clone()),
                        None => OldDirObject::Absent,
                    };
                }
                Ok(found)
            }
        }
    }
}
