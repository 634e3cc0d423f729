//! Plain data carried in and out of S3 requests.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

/// What HEAD (or GET) says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// Quotes stripped. `None` when the server sent none.
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    pub content_type: Option<String>,
    pub storage_class: Option<String>,
    /// `x-amz-meta-*` headers, lower-case names with the `x-amz-meta-` part removed.
    pub user_metadata: BTreeMap<String, String>,
}

/// One `<Contents>` entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key, URL-decoded.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    pub storage_class: Option<String>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Full prefixes, URL-decoded, each ending in the delimiter.
    pub common_prefixes: Vec<String>,
    /// Set when more pages follow.
    pub next_continuation_token: Option<String>,
    /// Keys whose URL-decoded bytes are not UTF-8: left out of `objects`/`common_prefixes`.
    pub skipped_keys: Vec<Vec<u8>>,
}

/// Arguments of one ListObjectsV2 call.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    pub max_keys: Option<u32>,
}

/// Body and metadata of a GET.
#[derive(Debug, Clone)]
pub struct GetObjectOutput {
    pub body: Bytes,
    pub meta: ObjectMeta,
}

/// Headers sent with a new object (PutObject, CreateMultipartUpload, CopyObject with REPLACE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// Sent as `x-amz-meta-NAME: VALUE`.
    pub user_metadata: BTreeMap<String, String>,
    /// `If-None-Match: *` (create only if absent).
    pub if_none_match_any: bool,
    /// `If-Match: ETAG` (replace only that version).
    pub if_match: Option<String>,
}

/// A completed part, for CompleteMultipartUpload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
}

/// One in-progress multipart upload (ListMultipartUploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// A byte range `[start, end)` of an object.
pub type ByteRange = Range<u64>;
