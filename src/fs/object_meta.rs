//! What an object carries besides its bytes (as last seen), and the one place that decides the
//! headers each kind of write sends, so that other tools' metadata survives every change.
//!
//! S3 replaces all of an object's metadata at once. A rewrite of the data, a `chmod` (a copy
//! onto itself) or a rename that changes the content type therefore sends everything again:
//! other tools' `x-amz-meta-*` headers, the xattrs, `Content-Type`, `Content-Encoding` and the
//! like. A metadata change writes the attributes it changed and ctime, nothing else it was not
//! asked for (as s3fs does).

use std::collections::BTreeMap;

use super::attr::{content_type_for, Attr, FileKind, META_CTIME, META_MTIME};
use crate::s3::{ObjectMeta, PutOptions};

/// The content type a name gets when nothing better is known.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Directory markers bucketfs writes.
pub const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// The attributes a change asked for (`chmod`, `chown`, `utimens`), kept until written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed(u8);

impl Changed {
    pub const MODE: Changed = Changed(1);
    pub const OWNER: Changed = Changed(2);
    pub const ATIME: Changed = Changed(4);
    pub const MTIME: Changed = Changed(8);

    pub fn add(&mut self, other: Changed) {
        self.0 |= other.0;
    }
    pub fn has(self, other: Changed) -> bool {
        self.0 & other.0 != 0
    }
}

/// An object's metadata as last seen (HEAD, or what this mount wrote).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredMeta {
    /// Every `x-amz-meta-*` header (names without the prefix): s3fs's attributes, the xattrs,
    /// other tools' own.
    pub user: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires.
    pub content_headers: BTreeMap<String, String>,
    pub storage_class: Option<String>,
}

impl StoredMeta {
    pub fn from_object(meta: &ObjectMeta) -> StoredMeta {
        StoredMeta {
            user: meta.user_metadata.clone(),
            content_type: meta.content_type.clone(),
            content_headers: meta.content_headers.clone(),
            storage_class: meta.storage_class.clone(),
        }
    }

    /// What a write with `opts` leaves on the object (the storage class is the mount's).
    pub fn written(&mut self, opts: &PutOptions) {
        self.user = opts.user_metadata.clone();
        self.content_type = opts.content_type.clone();
        self.content_headers = opts.content_headers.clone();
    }

    /// Headers of new data for the object named `name` (a node created, a file rewritten):
    /// every attribute; the type it had, or for a new one the name's (a file), the directory
    /// type (a marker) or the generic one; the rest kept.
    pub fn for_rewrite(&self, attr: &Attr, name: &str) -> PutOptions {
        let mut user = self.user.clone();
        user.extend(attr.to_user_metadata());
        let new_type = match attr.kind {
            FileKind::File => content_type_for(name),
            FileKind::Directory => DIRECTORY_CONTENT_TYPE,
            _ => DEFAULT_CONTENT_TYPE,
        };
        PutOptions {
            content_type: Some(
                self.content_type
                    .clone()
                    .unwrap_or_else(|| new_type.to_string()),
            ),
            user_metadata: user,
            content_headers: self.content_headers.clone(),
            ..PutOptions::default()
        }
    }

    /// Headers of a metadata change (a copy onto itself, or a rename's copy to `renamed_to`):
    /// what the object had, plus the attributes `changed` asked for and ctime. A file's mtime
    /// is added where it has none (the copy's new Last-Modified would otherwise become it); a
    /// directory marker gets nothing more. A rename takes the content type of its new name
    /// when that name's extension has one.
    pub fn for_change(
        &self,
        attr: &Attr,
        changed: Changed,
        renamed_to: Option<&str>,
    ) -> PutOptions {
        let all = attr.to_user_metadata();
        let mut user = self.user.clone();
        let mut take = |name: &str| {
            if let Some(v) = all.get(name) {
                user.insert(name.to_string(), v.clone());
            }
        };
        take(META_CTIME);
        if changed.has(Changed::MODE) {
            take(super::attr::META_MODE);
        }
        if changed.has(Changed::OWNER) {
            take(super::attr::META_UID);
            take(super::attr::META_GID);
        }
        if changed.has(Changed::ATIME) {
            take(super::attr::META_ATIME);
        }
        if changed.has(Changed::MTIME)
            || (attr.kind != FileKind::Directory && !self.user.contains_key(META_MTIME))
        {
            take(META_MTIME);
        }
        // a type S3 needs to make an object a symlink or a special file goes with every change
        if attr.kind != FileKind::File && attr.kind != FileKind::Directory {
            take(super::attr::META_MODE);
        }
        let named = renamed_to
            .map(content_type_for)
            .filter(|t| *t != DEFAULT_CONTENT_TYPE);
        let content_type = match (named, &self.content_type) {
            (Some(t), _) if attr.kind != FileKind::Directory => Some(t.to_string()),
            (_, Some(t)) => Some(t.clone()),
            (_, None) if attr.kind == FileKind::Directory => {
                Some(DIRECTORY_CONTENT_TYPE.to_string())
            }
            (_, None) => Some(content_type_for(renamed_to.unwrap_or_default()).to_string()),
        };
        PutOptions {
            content_type,
            user_metadata: user,
            content_headers: self.content_headers.clone(),
            ..PutOptions::default()
        }
    }

    /// Whether a rename to `new_name` must replace the metadata (its content type changes).
    pub fn rename_changes_type(&self, kind: FileKind, new_name: &str) -> bool {
        if kind == FileKind::Directory {
            return false;
        }
        let named = content_type_for(new_name);
        named != DEFAULT_CONTENT_TYPE && self.content_type.as_deref() != Some(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsConfig;
    use std::time::{Duration, UNIX_EPOCH};

    fn foreign() -> StoredMeta {
        let mut m = StoredMeta {
            content_type: Some("image/webp".into()),
            ..StoredMeta::default()
        };
        m.user.insert("tool".into(), "x".into());
        m.content_headers
            .insert("content-encoding".into(), "gzip".into());
        m
    }

    fn attr(kind: FileKind) -> Attr {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Attr::new(1, kind, 0, &FsConfig::default(), t)
    }

    #[test]
    fn a_chmod_adds_only_the_mode_and_ctime_to_a_foreign_marker() {
        let opts = foreign().for_change(&attr(FileKind::Directory), Changed::MODE, None);
        let names: Vec<&str> = opts.user_metadata.keys().map(String::as_str).collect();
        assert_eq!(names, ["ctime", "mode", "tool"]);
        assert_eq!(opts.content_type.as_deref(), Some("image/webp"));
        assert_eq!(
            opts.content_headers
                .get("content-encoding")
                .map(String::as_str),
            Some("gzip")
        );
    }

    #[test]
    fn a_file_keeps_its_shown_mtime_through_a_change() {
        let opts = foreign().for_change(&attr(FileKind::File), Changed::OWNER, None);
        let names: Vec<&str> = opts.user_metadata.keys().map(String::as_str).collect();
        assert_eq!(names, ["ctime", "gid", "mtime", "tool", "uid"]);
    }

    #[test]
    fn a_rename_takes_the_new_names_type_when_it_has_one() {
        let m = foreign();
        let a = attr(FileKind::File);
        let to_jpg = m.for_change(&a, Changed::default(), Some("a.jpg"));
        assert_eq!(to_jpg.content_type.as_deref(), Some("image/jpeg"));
        let to_bak = m.for_change(&a, Changed::default(), Some("a.bak"));
        assert_eq!(to_bak.content_type.as_deref(), Some("image/webp"));
        assert!(m.rename_changes_type(FileKind::File, "a.jpg"));
        assert!(!m.rename_changes_type(FileKind::File, "a.bak"));
        assert!(!m.rename_changes_type(FileKind::Directory, "a.jpg"));
    }

    #[test]
    fn a_rewrite_keeps_the_type_and_headers_and_writes_every_attribute() {
        let opts = foreign().for_rewrite(&attr(FileKind::File), "a.txt");
        assert_eq!(opts.content_type.as_deref(), Some("image/webp"));
        for name in ["mode", "uid", "gid", "mtime", "atime", "ctime", "tool"] {
            assert!(opts.user_metadata.contains_key(name), "{name} missing");
        }
        let new = StoredMeta::default().for_rewrite(&attr(FileKind::File), "a.txt");
        assert_eq!(new.content_type.as_deref(), Some("text/plain"));
    }
}
