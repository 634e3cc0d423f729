//! In-memory object store with S3 semantics, independent of HTTP.
//!
//! Everything a request needs is done under one lock by the caller, so each
//! operation here is atomic. Keys are arbitrary strings: `a`, `a/` and `a/b`
//! are three distinct objects and a key that is only a prefix of others does
//! not exist.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};

pub use crate::list::{ListPage, ListQuery};

/// User metadata (`x-amz-meta-*` without the prefix, lower-case names).
pub type Metadata = BTreeMap<String, String>;

/// The default minimum size of every part but the last (5 MiB, as in S3).
pub const DEFAULT_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Largest part number S3 accepts.
pub const MAX_PART_NUMBER: i32 = 10_000;

/// Longest key S3 accepts, in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Errors of store operations; each maps to one S3 error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    InvalidBucketName,
    KeyTooLong,
    PreconditionFailed,
    NotModified,
    InvalidRange,
    InvalidPart(String),
    InvalidPartOrder,
    EntityTooSmall,
    MalformedXml(String),
    InvalidArgument(String),
    InvalidRequest(String),
    BadDigest,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Standard headers stored with an object, plus user metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectAttrs {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub metadata: Metadata,
}

/// An object as stored. Cloning is cheap (`Bytes`).
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub data: Bytes,
    /// ETag without quotes: md5 hex, or `md5-of-md5s-N` for multipart.
    pub etag: String,
    pub last_modified: SystemTime,
    pub attrs: ObjectAttrs,
    /// Number of parts when the object was made by a multipart upload.
    pub parts_count: Option<u32>,
}

/// Everything about an object except its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// ETag without quotes (see [`ObjectMeta::quoted_etag`]).
    pub etag: String,
    pub last_modified: SystemTime,
    pub content_type: Option<String>,
    pub metadata: Metadata,
    pub attrs: ObjectAttrs,
    pub parts_count: Option<u32>,
}

impl ObjectMeta {
    /// The ETag as it appears in the `ETag` header: `"..."`.
    pub fn quoted_etag(&self) -> String {
        format!("\"{}\"", self.etag)
    }
}

impl StoredObject {
    /// Builds an object from data, computing the md5 ETag.
    pub fn new(data: Bytes, attrs: ObjectAttrs) -> Self {
        let etag = md5_hex(&data);
        StoredObject {
            data,
            etag,
            last_modified: SystemTime::now(),
            attrs,
            parts_count: None,
        }
    }

    pub fn meta(&self, key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            size: self.data.len() as u64,
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            content_type: self.attrs.content_type.clone(),
            metadata: self.attrs.metadata.clone(),
            attrs: self.attrs.clone(),
            parts_count: self.parts_count,
        }
    }
}

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtagCond {
    /// `*`
    Any,
    /// One or more ETags (quotes and `W/` are ignored when comparing).
    Tags(Vec<String>),
}

impl EtagCond {
    /// Parses a header value such as `*`, `"abc"`, `"a", "b"` or `W/"x"`.
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s == "*" {
            return EtagCond::Any;
        }
        EtagCond::Tags(s.split(',').map(normalize_etag).collect())
    }

    fn matches(&self, etag: &str) -> bool {
        match self {
            EtagCond::Any => true,
            EtagCond::Tags(tags) => tags.iter().any(|t| normalize_etag(t) == etag),
        }
    }
}

/// Strips whitespace, a weak `W/` marker and surrounding quotes.
pub fn normalize_etag(s: &str) -> String {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').to_owned()
}

/// Preconditions of GetObject / HeadObject.
#[derive(Debug, Clone, Default)]
pub struct ReadConditions {
    pub if_match: Option<EtagCond>,
    pub if_none_match: Option<EtagCond>,
    pub if_modified_since: Option<SystemTime>,
    pub if_unmodified_since: Option<SystemTime>,
}

/// Preconditions of writes (PutObject, CompleteMultipartUpload).
#[derive(Debug, Clone, Default)]
pub struct WriteConditions {
    pub if_match: Option<EtagCond>,
    pub if_none_match: Option<EtagCond>,
}

/// A `Range: bytes=...` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (inclusive).
    FromTo(u64, u64),
    /// `bytes=first-`
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The byte range to send for an object of `size` bytes, or `InvalidRange`
    /// (HTTP 416) when nothing of it is satisfiable.
    pub fn resolve(self, size: u64) -> StoreResult<Range<u64>> {
        match self {
            ByteRange::FromTo(first, last) if first <= last && first < size => {
                Ok(first..last.min(size - 1) + 1)
            }
            ByteRange::From(first) if first < size => Ok(first..size),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size - n.min(size)..size),
            _ => Err(StoreError::InvalidRange),
        }
    }

    /// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range only).
    pub fn parse(s: &str) -> Option<Self> {
        let spec = s.trim().strip_prefix("bytes=")?;
        let (a, b) = spec.split_once('-')?;
        let num = |x: &str| x.trim().parse::<u64>().ok();
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => Some(ByteRange::Suffix(num(b)?)),
            (false, true) => Some(ByteRange::From(num(a)?)),
            (false, false) => Some(ByteRange::FromTo(num(a)?, num(b)?)),
            (true, true) => None,
        }
    }
}

/// What CopyObject does with metadata.
#[derive(Debug, Clone)]
pub enum MetadataDirective {
    /// Keep the source's attributes (the default).
    Copy,
    /// Use these attributes instead.
    Replace(ObjectAttrs),
}

/// A part of a multipart upload.
#[derive(Debug, Clone)]
pub struct PartData {
    pub data: Bytes,
    pub etag: String,
    pub last_modified: SystemTime,
    /// The part's CRC32C (base64), in an upload created with that algorithm.
    pub crc32c: Option<String>,
}

/// An upload in progress.
#[derive(Debug, Clone)]
pub struct Upload {
    pub upload_id: String,
    pub key: String,
    pub initiated: SystemTime,
    pub attrs: ObjectAttrs,
    pub parts: BTreeMap<i32, PartData>,
    /// Created with `x-amz-checksum-algorithm: CRC32C`: every part has a CRC32C, and the
    /// Complete must name each one.
    pub crc32c: bool,
}

#[derive(Debug, Clone)]
struct CompletedUpload {
    key: String,
    parts: Vec<(i32, String)>,
    etag: String,
}

/// One bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub created: SystemTime,
    pub objects: BTreeMap<String, StoredObject>,
    /// Uploads by upload id.
    pub uploads: BTreeMap<String, Upload>,
    completed: HashMap<String, CompletedUpload>,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            created: SystemTime::now(),
            objects: BTreeMap::new(),
            uploads: BTreeMap::new(),
            completed: HashMap::new(),
        }
    }
}

/// The whole store: buckets plus settings.
#[derive(Debug)]
pub struct Store {
    pub buckets: BTreeMap<String, Bucket>,
    /// Minimum size of every part but the last, checked at completion.
    pub min_part_size: u64,
    upload_seq: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// Hex md5 of some bytes.
pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

fn check_key(key: &str) -> StoreResult<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument("empty key".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::KeyTooLong);
    }
    Ok(())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Checks preconditions in the order RFC 9110 §13.2.2 gives.
fn check_read_conditions(obj: &StoredObject, c: &ReadConditions) -> StoreResult<()> {
    if let Some(m) = &c.if_match {
        if !m.matches(&obj.etag) {
            return Err(StoreError::PreconditionFailed);
        }
    } else if let Some(t) = c.if_unmodified_since {
        if secs(obj.last_modified) > secs(t) {
            return Err(StoreError::PreconditionFailed);
        }
    }
    if let Some(m) = &c.if_none_match {
        if m.matches(&obj.etag) {
            return Err(StoreError::NotModified);
        }
    } else if let Some(t) = c.if_modified_since {
        if secs(obj.last_modified) <= secs(t) {
            return Err(StoreError::NotModified);
        }
    }
    Ok(())
}

fn check_write_conditions(existing: Option<&StoredObject>, c: &WriteConditions) -> StoreResult<()> {
    if let Some(m) = &c.if_none_match {
        match (m, existing) {
            (_, None) => {}
            (EtagCond::Any, Some(_)) => return Err(StoreError::PreconditionFailed),
            (m, Some(obj)) if m.matches(&obj.etag) => return Err(StoreError::PreconditionFailed),
            _ => {}
        }
    }
    if let Some(m) = &c.if_match {
        match existing {
            None => return Err(StoreError::NoSuchKey),
            Some(obj) if !m.matches(&obj.etag) => return Err(StoreError::PreconditionFailed),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks the md5 of a body against a base64 `Content-MD5` value.
pub fn check_content_md5(data: &[u8], content_md5_b64: &str) -> StoreResult<()> {
    let want = decode_base64(content_md5_b64.trim())
        .ok_or_else(|| StoreError::InvalidArgument("Content-MD5 is not valid base64".into()))?;
    if want.as_slice() != Md5::digest(data).as_slice() {
        return Err(StoreError::BadDigest);
    }
    Ok(())
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The CRC32C of `data`, base64 as in `x-amz-checksum-crc32c`.
pub fn crc32c_base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// Checks the CRC32C of a body against a base64 `x-amz-checksum-crc32c` value.
pub fn check_crc32c(data: &[u8], crc_b64: &str) -> StoreResult<()> {
    let want = decode_base64(crc_b64.trim()).ok_or_else(|| {
        StoreError::InvalidArgument("x-amz-checksum-crc32c is not valid base64".into())
    })?;
    if want.as_slice() != crc32c::crc32c(data).to_be_bytes() {
        return Err(StoreError::BadDigest);
    }
    Ok(())
}

/// Parses an `x-amz-copy-source-range` value: `bytes=first-last` only.
pub fn parse_copy_range(s: &str, size: u64) -> StoreResult<Range<u64>> {
    let bad = || {
        StoreError::InvalidArgument(format!(
            "Range specified is not valid for source object of size: {size}"
        ))
    };
    match ByteRange::parse(s) {
        Some(ByteRange::FromTo(first, last)) if first <= last && last < size => Ok(first..last + 1),
        Some(_) => Err(bad()),
        None => Err(StoreError::InvalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last".into(),
        )),
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            buckets: BTreeMap::new(),
            min_part_size: DEFAULT_MIN_PART_SIZE,
            upload_seq: 0,
        }
    }

    fn bucket(&self, name: &str) -> StoreResult<&Bucket> {
        self.buckets.get(name).ok_or(StoreError::NoSuchBucket)
    }

    fn bucket_mut(&mut self, name: &str) -> StoreResult<&mut Bucket> {
        self.buckets.get_mut(name).ok_or(StoreError::NoSuchBucket)
    }

    // ---- buckets ----

    pub fn create_bucket(&mut self, name: &str) -> StoreResult<()> {
        if !s3s::path::check_bucket_name(name) {
            return Err(StoreError::InvalidBucketName);
        }
        if self.buckets.contains_key(name) {
            return Err(StoreError::BucketAlreadyOwnedByYou);
        }
        self.buckets.insert(name.to_owned(), Bucket::new());
        Ok(())
    }

    pub fn delete_bucket(&mut self, name: &str) -> StoreResult<()> {
        let b = self.bucket(name)?;
        if !b.objects.is_empty() || !b.uploads.is_empty() {
            return Err(StoreError::BucketNotEmpty);
        }
        self.buckets.remove(name);
        Ok(())
    }

    pub fn head_bucket(&self, name: &str) -> StoreResult<()> {
        self.bucket(name).map(|_| ())
    }

    /// Bucket names with creation times, sorted by name.
    pub fn list_buckets(&self) -> Vec<(String, SystemTime)> {
        self.buckets
            .iter()
            .map(|(n, b)| (n.clone(), b.created))
            .collect()
    }

    // ---- objects ----

    /// Stores an object (replacing any), after checking preconditions.
    pub fn put_object(
        &mut self,
        bucket: &str,
        key: &str,
        data: Bytes,
        attrs: ObjectAttrs,
        cond: &WriteConditions,
    ) -> StoreResult<ObjectMeta> {
        self.insert_object(bucket, key, StoredObject::new(data, attrs), cond)
    }

    /// Like [`Store::put_object`] with an object built (and hashed) by the
    /// caller, so hashing can happen outside the store lock.
    pub fn insert_object(
        &mut self,
        bucket: &str,
        key: &str,
        obj: StoredObject,
        cond: &WriteConditions,
    ) -> StoreResult<ObjectMeta> {
        check_key(key)?;
        let b = self.bucket_mut(bucket)?;
        check_write_conditions(b.objects.get(key), cond)?;
        let meta = obj.meta(key);
        b.objects.insert(key.to_owned(), obj);
        Ok(meta)
    }

    /// The object and, when a range was asked for, the byte range to send.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
        cond: &ReadConditions,
        range: Option<ByteRange>,
    ) -> StoreResult<(StoredObject, Option<Range<u64>>)> {
        let b = self.bucket(bucket)?;
        let obj = b.objects.get(key).ok_or(StoreError::NoSuchKey)?;
        check_read_conditions(obj, cond)?;
        let range = match range {
            Some(r) => Some(r.resolve(obj.data.len() as u64)?),
            None => None,
        };
        Ok((obj.clone(), range))
    }

    /// Metadata of one object, if it exists.
    pub fn object_meta(&self, bucket: &str, key: &str) -> StoreResult<ObjectMeta> {
        let b = self.bucket(bucket)?;
        b.objects
            .get(key)
            .map(|o| o.meta(key))
            .ok_or(StoreError::NoSuchKey)
    }

    /// Deletes an object; deleting a missing key succeeds (as in S3).
    /// Returns whether something was deleted.
    pub fn delete_object(&mut self, bucket: &str, key: &str) -> StoreResult<bool> {
        let b = self.bucket_mut(bucket)?;
        Ok(b.objects.remove(key).is_some())
    }

    /// All keys of a bucket, sorted.
    pub fn keys(&self, bucket: &str) -> StoreResult<Vec<String>> {
        Ok(self.bucket(bucket)?.objects.keys().cloned().collect())
    }

    /// Server-side copy; `src_if_match` / `src_if_none_match` are the
    /// `x-amz-copy-source-if-*` preconditions (both fail with 412).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_object(
        &mut self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
        directive: MetadataDirective,
        src_if_match: Option<&EtagCond>,
        src_if_none_match: Option<&EtagCond>,
    ) -> StoreResult<ObjectMeta> {
        check_key(dst_key)?;
        self.bucket(dst_bucket)?;
        let src = self
            .bucket(src_bucket)?
            .objects
            .get(src_key)
            .ok_or(StoreError::NoSuchKey)?;
        if src_if_match.is_some_and(|m| !m.matches(&src.etag)) {
            return Err(StoreError::PreconditionFailed);
        }
        if src_if_none_match.is_some_and(|m| m.matches(&src.etag)) {
            return Err(StoreError::PreconditionFailed);
        }
        let same = src_bucket == dst_bucket && src_key == dst_key;
        let attrs = match directive {
            MetadataDirective::Copy if same => return Err(StoreError::InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself \
                     without changing the object's metadata, storage class, website redirect \
                     location or encryption attributes."
                    .into(),
            )),
            MetadataDirective::Copy => src.attrs.clone(),
            MetadataDirective::Replace(a) => a,
        };
        let obj = StoredObject {
            data: src.data.clone(),
            etag: src.etag.clone(),
            last_modified: SystemTime::now(),
            attrs,
            parts_count: src.parts_count,
        };
        let meta = obj.meta(dst_key);
        self.bucket_mut(dst_bucket)?
            .objects
            .insert(dst_key.to_owned(), obj);
        Ok(meta)
    }

    /// One page of a listing (see [`ListQuery`]).
    pub fn list(&self, bucket: &str, q: &ListQuery<'_>) -> StoreResult<ListPage> {
        Ok(crate::list::list_page(&self.bucket(bucket)?.objects, q))
    }

    // ---- multipart ----

    pub fn create_multipart_upload(
        &mut self,
        bucket: &str,
        key: &str,
        attrs: ObjectAttrs,
        crc32c: bool,
    ) -> StoreResult<String> {
        check_key(key)?;
        self.bucket(bucket)?;
        self.upload_seq += 1;
        let upload_id = format!(
            "{:08}.{:016x}_{:08x}",
            self.upload_seq,
            rand::random::<u64>(),
            rand::random::<u32>()
        );
        let upload = Upload {
            upload_id: upload_id.clone(),
            key: key.to_owned(),
            initiated: SystemTime::now(),
            attrs,
            parts: BTreeMap::new(),
            crc32c,
        };
        self.bucket_mut(bucket)?
            .uploads
            .insert(upload_id.clone(), upload);
        Ok(upload_id)
    }

    fn upload_mut(&mut self, bucket: &str, key: &str, upload_id: &str) -> StoreResult<&mut Upload> {
        self.bucket_mut(bucket)?
            .uploads
            .get_mut(upload_id)
            .filter(|u| u.key == key)
            .ok_or(StoreError::NoSuchUpload)
    }

    fn check_part_number(part_number: i32) -> StoreResult<()> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(StoreError::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            ));
        }
        Ok(())
    }

    /// Stores a part (replacing one with the same number); returns its ETag.
    pub fn upload_part(
        &mut self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        data: Bytes,
    ) -> StoreResult<String> {
        let etag = md5_hex(&data);
        self.insert_part(bucket, key, upload_id, part_number, data, etag, false)
    }

    /// Like [`Store::upload_part`] with the md5 hex computed by the caller.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_part(
        &mut self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        data: Bytes,
        etag: String,
        carries_crc32c: bool,
    ) -> StoreResult<String> {
        Self::check_part_number(part_number)?;
        let upload = self.upload_mut(bucket, key, upload_id)?;
        if carries_crc32c && !upload.crc32c {
            // what S3 answers a part whose checksum its upload was not created for
            return Err(StoreError::InvalidRequest(
                "Checksum Type mismatch occurred, expected checksum Type: null, actual checksum Type: crc32c"
                    .into(),
            ));
        }
        let crc32c = upload.crc32c.then(|| crc32c_base64(&data));
        let part = PartData {
            data,
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            crc32c,
        };
        upload.parts.insert(part_number, part);
        Ok(etag)
    }

    /// UploadPartCopy: a part made from (a range of) an existing object.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_part_copy(
        &mut self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        src_bucket: &str,
        src_key: &str,
        copy_range: Option<&str>,
        src_if_match: Option<&EtagCond>,
    ) -> StoreResult<(String, SystemTime, Option<String>)> {
        Self::check_part_number(part_number)?;
        self.upload_mut(bucket, key, upload_id)?;
        let src = self
            .bucket(src_bucket)?
            .objects
            .get(src_key)
            .ok_or(StoreError::NoSuchKey)?;
        if src_if_match.is_some_and(|m| !m.matches(&src.etag)) {
            return Err(StoreError::PreconditionFailed);
        }
        let data = match copy_range {
            Some(r) => {
                let rr = parse_copy_range(r, src.data.len() as u64)?;
                src.data.slice(rr.start as usize..rr.end as usize)
            }
            None => src.data.clone(),
        };
        let etag = self.upload_part(bucket, key, upload_id, part_number, data)?;
        let crc32c = self
            .upload_mut(bucket, key, upload_id)?
            .parts
            .get(&part_number)
            .and_then(|p| p.crc32c.clone());
        Ok((etag, SystemTime::now(), crc32c))
    }

    /// Completes an upload from the client's part list.
    ///
    /// Validates: at least one part, ascending part numbers, every part
    /// uploaded with the given ETag, and every part but the last at least
    /// `min_part_size` bytes. Completing an already completed upload again
    /// with the same part list returns the same result (S3 tolerates
    /// retried completions).
    pub fn complete_multipart_upload(
        &mut self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        crc32cs: &BTreeMap<i32, String>,
        cond: &WriteConditions,
    ) -> StoreResult<ObjectMeta> {
        let min_part_size = self.min_part_size;
        let b = self.bucket_mut(bucket)?;
        let parts: Vec<(i32, String)> =
            parts.iter().map(|(n, e)| (*n, normalize_etag(e))).collect();
        let Some(upload) = b.uploads.get(upload_id).filter(|u| u.key == key) else {
            if let Some(done) = b.completed.get(upload_id) {
                if done.key == key && done.parts == parts {
                    if let Some(obj) = b.objects.get(key).filter(|o| o.etag == done.etag) {
                        return Ok(obj.meta(key));
                    }
                }
            }
            return Err(StoreError::NoSuchUpload);
        };
        if parts.is_empty() {
            return Err(StoreError::MalformedXml(
                "The XML you provided was not well-formed or did not validate against our published schema"
                    .into(),
            ));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StoreError::InvalidPartOrder);
        }
        let mut chosen = Vec::with_capacity(parts.len());
        for (number, etag) in &parts {
            let part = upload
                .parts
                .get(number)
                .filter(|p| &p.etag == etag)
                .ok_or_else(|| {
                    StoreError::InvalidPart(format!(
                        "One or more of the specified parts could not be found: part {number}"
                    ))
                })?;
            if let Some(want) = &part.crc32c {
                match crc32cs.get(number) {
                    None => {
                        return Err(StoreError::InvalidRequest(format!(
                            "The upload was created using a crc32c checksum. The complete request part {number} did not include a checksum for the part."
                        )))
                    }
                    Some(got) if got.trim() != want => {
                        return Err(StoreError::InvalidPart(format!(
                            "The checksum of part {number} does not match"
                        )))
                    }
                    Some(_) => {}
                }
            }
            chosen.push(part);
        }
        let last = chosen.len() - 1;
        if chosen[..last]
            .iter()
            .any(|p| (p.data.len() as u64) < min_part_size)
        {
            return Err(StoreError::EntityTooSmall);
        }
        check_write_conditions(b.objects.get(key), cond)?;

        let total: usize = chosen.iter().map(|p| p.data.len()).sum();
        let mut data = BytesMut::with_capacity(total);
        let mut md5s = Vec::with_capacity(16 * chosen.len());
        for p in &chosen {
            data.extend_from_slice(&p.data);
            md5s.extend_from_slice(&hex::decode(&p.etag).unwrap_or_default());
        }
        let etag = format!("{}-{}", md5_hex(&md5s), chosen.len());
        let obj = StoredObject {
            data: data.freeze(),
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            attrs: upload.attrs.clone(),
            parts_count: Some(chosen.len() as u32),
        };
        let meta = obj.meta(key);
        b.uploads.remove(upload_id);
        b.objects.insert(key.to_owned(), obj);
        b.completed.insert(
            upload_id.to_owned(),
            CompletedUpload {
                key: key.to_owned(),
                parts,
                etag,
            },
        );
        Ok(meta)
    }

    pub fn abort_multipart_upload(
        &mut self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> StoreResult<()> {
        self.upload_mut(bucket, key, upload_id)?;
        self.bucket_mut(bucket)?.uploads.remove(upload_id);
        Ok(())
    }

    /// Uploads in progress whose key starts with `prefix`, ordered by key
    /// then initiation.
    pub fn list_uploads(&self, bucket: &str, prefix: &str) -> StoreResult<Vec<Upload>> {
        let mut v: Vec<Upload> = self
            .bucket(bucket)?
            .uploads
            .values()
            .filter(|u| u.key.starts_with(prefix))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id))
        });
        Ok(v)
    }

    /// The parts of an upload in progress.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> StoreResult<Vec<(i32, PartData)>> {
        let upload = self
            .bucket(bucket)?
            .uploads
            .get(upload_id)
            .filter(|u| u.key == key)
            .ok_or(StoreError::NoSuchUpload)?;
        Ok(upload.parts.iter().map(|(n, p)| (*n, p.clone())).collect())
    }
}
