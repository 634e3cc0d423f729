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
    /// The other headers an object keeps ([`CONTENT_HEADERS`]), lower-case names, as sent.
    pub content_headers: BTreeMap<String, String>,
}

/// Headers an object stores besides its type and user metadata, which a copy that replaces
/// its metadata must send again (else they are dropped).
pub const CONTENT_HEADERS: [&str; 5] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// One `<Contents>` entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key, URL-decoded.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    /// The usual names are static: a page of 1,000 keys allocates none for them.
    pub storage_class: Option<std::borrow::Cow<'static, str>>,
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
    /// The CRC32C of each unit of the body, when asked for
    /// ([`S3Client::get_object_units`](super::S3Client::get_object_units)); else empty.
    pub unit_crcs: Vec<u32>,
}

/// Headers sent with a new object (PutObject, CreateMultipartUpload, CopyObject with REPLACE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    /// Sent as `x-amz-meta-NAME: VALUE`.
    pub user_metadata: BTreeMap<String, String>,
    /// [`CONTENT_HEADERS`] to send, as they are.
    pub content_headers: BTreeMap<String, String>,
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
    /// The part's CRC32C (base64), in an upload created with that checksum algorithm: the
    /// Complete names it for every part.
    pub crc32c: Option<String>,
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

/// Server-side encryption of new objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3: `x-amz-server-side-encryption: AES256`.
    S3,
    /// SSE-KMS: `x-amz-server-side-encryption: aws:kms` (the profile's spelling), with an
    /// optional `x-amz-server-side-encryption-aws-kms-key-id`.
    Kms { key_id: Option<String> },
    /// SSE-C: the customer's key on every request that writes, reads or copies object data.
    Customer(SseCustomerKey),
}

impl ServerSideEncryption {
    /// SSE-C key, if that is the mode.
    pub fn customer_key(&self) -> Option<&SseCustomerKey> {
        match self {
            ServerSideEncryption::Customer(k) => Some(k),
            _ => None,
        }
    }
}

/// A 256-bit SSE-C key, kept base64-encoded with its MD5. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SseCustomerKey {
    key_b64: String,
    key_md5_b64: String,
}

impl std::fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseCustomerKey")
            .field("key", &"<redacted>")
            .field("key_md5", &self.key_md5_b64)
            .finish()
    }
}

impl SseCustomerKey {
    /// From the raw 32 key bytes.
    pub fn from_bytes(key: &[u8]) -> Result<SseCustomerKey, String> {
        use base64::Engine as _;
        use md5::{Digest as _, Md5};
        if key.len() != 32 {
            return Err(format!(
                "an SSE-C key is 32 bytes (AES-256), this one is {}",
                key.len()
            ));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(SseCustomerKey {
            key_b64: b64.encode(key),
            key_md5_b64: b64.encode(Md5::digest(key)),
        })
    }

    /// From a key file's contents: 32 raw bytes, or (whitespace-trimmed) base64 or hex of them.
    pub fn from_file_contents(data: &[u8]) -> Result<SseCustomerKey, String> {
        use base64::Engine as _;
        if data.len() == 32 {
            return Self::from_bytes(data);
        }
        let text = std::str::from_utf8(data)
            .map_err(|_| "the key is neither 32 raw bytes nor base64/hex text".to_string())?
            .trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let raw = hex::decode(text).map_err(|_| "bad hex key".to_string())?;
            return Self::from_bytes(&raw);
        }
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(text) {
            return Self::from_bytes(&raw);
        }
        if text.len() == 32 {
            return Self::from_bytes(text.as_bytes());
        }
        Err("the key must be 32 raw bytes, or 32 bytes as base64 or 64 hex digits".into())
    }

    /// `x-amz-server-side-encryption-customer-key` value.
    pub fn key_b64(&self) -> &str {
        &self.key_b64
    }

    /// `x-amz-server-side-encryption-customer-key-MD5` value.
    pub fn key_md5_b64(&self) -> &str {
        &self.key_md5_b64
    }
}

/// WORM retention (`x-amz-object-lock-mode` / `x-amz-object-lock-retain-until-date`) put on
/// every new object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLock {
    /// `COMPLIANCE` or `GOVERNANCE`.
    pub mode: String,
    pub retain: RetainUntil,
}

/// Until when an object is retained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetainUntil {
    /// A fixed ISO 8601 UTC time, e.g. `2030-01-01T00:00:00Z`.
    Date(String),
    /// This long after each write.
    For(std::time::Duration),
}

/// Which checksum uploads carry, so that the server refuses a body damaged on the way
/// (`--upload-checksums`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadChecksums {
    /// CRC32C (objects and parts) where the server verifies it (the profile, or the probe,
    /// says so); else the body's SHA-256 in the signature where the server verifies that and
    /// this CPU hashes SHA-256 in hardware (about 3× cheaper than MD5); else `Content-MD5`.
    #[default]
    Auto,
    /// Every upload carries `x-amz-checksum-crc32c`.
    Crc32c,
    /// Every upload is signed with its body's SHA-256 (`x-amz-content-sha256`).
    Sha256,
    /// Every upload carries `Content-MD5`.
    Md5,
    /// None (for servers that refuse both); `Content-MD5` is still sent under object lock.
    Off,
}

impl UploadChecksums {
    pub fn parse(s: &str) -> Option<UploadChecksums> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Some(UploadChecksums::Auto),
            "crc32c" => Some(UploadChecksums::Crc32c),
            "sha256" => Some(UploadChecksums::Sha256),
            "md5" => Some(UploadChecksums::Md5),
            "off" | "none" => Some(UploadChecksums::Off),
            _ => None,
        }
    }
}
