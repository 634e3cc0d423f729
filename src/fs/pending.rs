//! What the journal keeps of a closed file waiting for its upload (write-back): a `pending`
//! line's record, for a file staged whole in part files or for an in-place change of an
//! existing object (its changed parts staged, the rest copied from the version it changed).

use crate::s3::PutOptions;

/// What the journal keeps of a closed file waiting for its upload (write-back), so that a
/// later mount can send it: where it goes, what it must replace, and its headers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingRecord {
    pub key: String,
    pub size: u64,
    /// Part files `1..=parts` under the upload's local id (for a patch: its parts in all).
    pub parts: u32,
    /// The object's ETag it replaces (`If-Match`), or `None`.
    pub if_match: Option<String>,
    /// A new file: `If-None-Match: *`.
    pub if_none_match: bool,
    pub content_type: Option<String>,
    pub user_metadata: std::collections::BTreeMap<String, String>,
    pub content_headers: std::collections::BTreeMap<String, String>,
    /// Seconds since the epoch when it was closed.
    pub closed_at: u64,
    /// An in-place change of an existing object (see `patch_stage.rs`): its part plan. None:
    /// a whole file in part files `1..=parts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchPlan>,
}

impl PendingRecord {
    /// The headers and conditions of its upload.
    pub fn options(&self) -> PutOptions {
        PutOptions {
            content_type: self.content_type.clone(),
            user_metadata: self.user_metadata.clone(),
            content_headers: self.content_headers.clone(),
            if_match: self.if_match.clone(),
            if_none_match_any: self.if_none_match,
        }
    }
}

/// How an in-place change of an existing object is rebuilt: its parts in order (part numbers
/// 1, 2, …), each from the staged file of changed parts, copied from a byte range of the
/// version changed (`x-amz-copy-source-if-match: <source_etag>`), or zeros.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PatchPlan {
    /// The object changed and its version (ETag) the untouched ranges are copied from.
    pub source_key: String,
    pub source_etag: String,
    /// The part size of the staged file (changed part `i` at offset `i × part_size`); also
    /// the size of the parts a copy range is cut into where the server refuses part copies.
    pub part_size: u64,
    /// The staged file's name in the entry's staging directory.
    pub file: String,
    pub pieces: Vec<PlannedPart>,
}

/// One part of a rebuilt object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum PlannedPart {
    /// Bytes `[offset, offset + len)` of the staged file.
    Staged { offset: u64, len: u64 },
    /// Bytes `[start, end)` of the source version, copied server-side.
    Copy { start: u64, end: u64 },
    /// `len` zeros (the object was extended and nothing wrote there).
    Zeros { len: u64 },
}
