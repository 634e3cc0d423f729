//! The `s3s::S3` trait over the in-memory store, plus the auth and access
//! hooks given to s3s (runtime credentials, optional anonymous access).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};

use crate::list::{decode_token, encode_token, url_encode};
use crate::state::Shared;
use crate::store::{
    check_content_md5, check_crc32c, md5_hex, ByteRange, EtagCond, ListQuery,
    MetadataDirective as Directive, ObjectAttrs, ReadConditions, StoreError, StoredObject,
    WriteConditions,
};

/// Size of the body chunks of GetObject responses.
const CHUNK: usize = 256 * 1024;

/// The S3 implementation handed to s3s.
pub(crate) struct Backend {
    pub shared: Arc<Shared>,
}

fn err(e: StoreError) -> S3Error {
    match e {
        StoreError::NoSuchBucket => s3_error!(NoSuchBucket, "The specified bucket does not exist"),
        StoreError::NoSuchKey => s3_error!(NoSuchKey, "The specified key does not exist."),
        StoreError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        StoreError::BucketAlreadyOwnedByYou => s3_error!(BucketAlreadyOwnedByYou),
        StoreError::BucketNotEmpty => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"),
        StoreError::InvalidBucketName => s3_error!(InvalidBucketName),
        StoreError::KeyTooLong => s3_error!(KeyTooLongError, "Your key is too long"),
        StoreError::PreconditionFailed => {
            s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        StoreError::NotModified => s3_error!(NotModified),
        StoreError::InvalidRange => s3_error!(InvalidRange, "The requested range is not satisfiable"),
        StoreError::InvalidPart(m) => s3_error!(InvalidPart, "{m}"),
        StoreError::InvalidPartOrder => {
            s3_error!(InvalidPartOrder, "The list of parts was not in ascending order.")
        }
        StoreError::EntityTooSmall => {
            s3_error!(EntityTooSmall, "Your proposed upload is smaller than the minimum allowed object size.")
        }
        StoreError::MalformedXml(m) => s3_error!(MalformedXML, "{m}"),
        StoreError::InvalidArgument(m) => s3_error!(InvalidArgument, "{m}"),
        StoreError::InvalidRequest(m) => s3_error!(InvalidRequest, "{m}"),
        StoreError::BadDigest => {
            s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received.")
        }
    }
}

fn cond(c: Option<ETagCondition>) -> Option<EtagCond> {
    c.map(|c| match c {
        ETagCondition::Any => EtagCond::Any,
        ETagCondition::ETag(e) => EtagCond::Tags(vec![e.into_value()]),
    })
}

fn systime(t: Option<Timestamp>) -> Option<SystemTime> {
    t.map(|t| SystemTime::from(time::OffsetDateTime::from(t)))
}

fn range(r: Option<Range>) -> Option<ByteRange> {
    r.map(|r| match r {
        Range::Int {
            first,
            last: Some(l),
        } => ByteRange::FromTo(first, l),
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    })
}

fn etag(e: &str) -> ETag {
    ETag::Strong(e.to_owned())
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn attrs(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: Option<Metadata>,
) -> ObjectAttrs {
    ObjectAttrs {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        metadata: metadata.unwrap_or_default().into_iter().collect(),
    }
}

fn copy_source(src: &CopySource) -> S3Result<(&str, &str)> {
    match src {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket, key)),
        _ => Err(s3_error!(
            NotImplemented,
            "only bucket/key copy sources are supported"
        )),
    }
}

async fn collect(body: Option<StreamingBlob>, size_hint: Option<i64>) -> S3Result<Bytes> {
    let Some(mut body) = body else {
        return Ok(Bytes::new());
    };
    let cap = size_hint.unwrap_or(0).clamp(0, 1 << 30) as usize;
    let mut buf = BytesMut::with_capacity(cap);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            // s3s checks the signed payload hash as the body streams in; S3 answers a
            // mismatch with this code
            if e.to_string().contains("Sha256Mismatch") {
                let mut err = s3s::S3Error::with_message(
                    s3s::S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                );
                err.set_status_code(hyper::StatusCode::BAD_REQUEST);
                err
            } else {
                s3_error!(IncompleteBody, "reading the body failed: {e}")
            }
        })?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn body_of(data: Bytes) -> StreamingBlob {
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..data.len())
        .step_by(CHUNK)
        .map(|i| Ok(data.slice(i..(i + CHUNK).min(data.len()))))
        .collect();
    StreamingBlob::wrap(futures::stream::iter(chunks))
}

fn max_count(n: Option<i32>, what: &str) -> S3Result<usize> {
    match n {
        None => Ok(1000),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "{what} must be a non-negative integer"
        )),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

fn content_type_or_default(ct: &Option<String>) -> Option<String> {
    Some(
        ct.clone()
            .unwrap_or_else(|| "binary/octet-stream".to_owned()),
    )
}

fn list_object(m: crate::list::Listed, url: bool) -> Object {
    Object {
        key: Some(if url { url_encode(&m.key) } else { m.key }),
        e_tag: Some(etag(&m.etag)),
        last_modified: Some(ts(m.last_modified)),
        size: Some(m.size as i64),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn is_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

impl Backend {
    fn store(&self) -> parking_lot::MutexGuard<'_, crate::store::Store> {
        self.shared.store.lock()
    }
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        self.store().create_bucket(&bucket).map_err(err)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.store().delete_bucket(&req.input.bucket).map_err(err)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store().head_bucket(&req.input.bucket).map_err(err)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some("us-east-1".into()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store().head_bucket(&req.input.bucket).map_err(err)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .store()
            .list_buckets()
            .into_iter()
            .map(|(name, created)| Bucket {
                name: Some(name),
                creation_date: Some(ts(created)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let data = collect(input.body, input.content_length).await?;
        if let Some(md5) = &input.content_md5 {
            check_content_md5(&data, md5).map_err(err)?;
        }
        if let Some(crc) = &input.checksum_crc32c {
            if !self.shared.dialect.read().checksums_ignored {
                check_crc32c(&data, crc).map_err(err)?;
            }
        }
        let a = attrs(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.metadata,
        );
        let c = WriteConditions {
            if_match: cond(input.if_match),
            if_none_match: cond(input.if_none_match),
        };
        let obj = StoredObject::new(data, a); // hashes outside the lock
        let meta = self
            .store()
            .insert_object(&input.bucket, &input.key, obj, &c)
            .map_err(err)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "partNumber is not supported by the test server"
            ));
        }
        let c = ReadConditions {
            if_match: cond(input.if_match),
            if_none_match: cond(input.if_none_match),
            if_modified_since: systime(input.if_modified_since),
            if_unmodified_since: systime(input.if_unmodified_since),
        };
        let (obj, r) = self
            .store()
            .get_object(&input.bucket, &input.key, &c, range(input.range))
            .map_err(err)?;
        let size = obj.data.len() as u64;
        let (data, content_range) = match r {
            Some(r) => (
                obj.data.slice(r.start as usize..r.end as usize),
                Some(format!("bytes {}-{}/{size}", r.start, r.end - 1)),
            ),
            None => (obj.data.clone(), None),
        };
        let a = obj.attrs;
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some(data.len() as i64),
            body: Some(body_of(data)),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&obj.etag)),
            last_modified: Some(ts(obj.last_modified)),
            content_type: content_type_or_default(&a.content_type),
            content_encoding: a.content_encoding,
            content_disposition: a.content_disposition,
            content_language: a.content_language,
            cache_control: a.cache_control,
            metadata: (!a.metadata.is_empty()).then(|| a.metadata.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "partNumber is not supported by the test server"
            ));
        }
        let c = ReadConditions {
            if_match: cond(input.if_match),
            if_none_match: cond(input.if_none_match),
            if_modified_since: systime(input.if_modified_since),
            if_unmodified_since: systime(input.if_unmodified_since),
        };
        let (obj, r) = self
            .store()
            .get_object(&input.bucket, &input.key, &c, range(input.range))
            .map_err(err)?;
        let size = obj.data.len() as u64;
        let (len, content_range) = match r {
            Some(r) => (
                r.end - r.start,
                Some(format!("bytes {}-{}/{size}", r.start, r.end - 1)),
            ),
            None => (size, None),
        };
        let a = obj.attrs;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&obj.etag)),
            last_modified: Some(ts(obj.last_modified)),
            content_type: content_type_or_default(&a.content_type),
            content_encoding: a.content_encoding,
            content_disposition: a.content_disposition,
            content_language: a.content_language,
            cache_control: a.cache_control,
            metadata: (!a.metadata.is_empty()).then(|| a.metadata.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.store()
            .delete_object(&input.bucket, &input.key)
            .map_err(err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let objects = input.delete.objects;
        if objects.is_empty() || objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut store = self.store();
        store.head_bucket(&input.bucket).map_err(err)?;
        let mut deleted = Vec::new();
        for o in objects {
            store.delete_object(&input.bucket, &o.key).map_err(err)?;
            if !quiet {
                deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (sb, sk) = copy_source(&input.copy_source)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let directive = if replace {
            Directive::Replace(attrs(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.metadata,
            ))
        } else {
            Directive::Copy
        };
        let ignore = self.shared.dialect.read().copy_source_conditions_ignored;
        let if_match = cond(input.copy_source_if_match).filter(|_| !ignore);
        let if_none_match = cond(input.copy_source_if_none_match).filter(|_| !ignore);
        let meta = self
            .store()
            .copy_object(
                sb,
                sk,
                &input.bucket,
                &input.key,
                directive,
                if_match.as_ref(),
                if_none_match.as_ref(),
            )
            .map_err(err)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&meta.etag)),
                last_modified: Some(ts(meta.last_modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max_keys = max_count(input.max_keys, "max-keys")?;
        let token = match &input.continuation_token {
            Some(t) => Some(decode_token(t).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?),
            None => None,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let q = ListQuery {
            prefix: &prefix,
            delimiter: delimiter.as_deref(),
            after: token.as_deref().or(input.start_after.as_deref()),
            max_keys,
        };
        let page = self.store().list(&input.bucket, &q).map_err(err)?;
        let url = is_url(&input.encoding_type);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let key_count = (page.objects.len() + page.common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            key_count: Some(key_count),
            is_truncated: Some(page.is_truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: page.next_marker.as_deref().map(encode_token),
            start_after: input.start_after.map(enc),
            encoding_type: input.encoding_type,
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|m| list_object(m, url))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max_keys = max_count(input.max_keys, "max-keys")?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let q = ListQuery {
            prefix: &prefix,
            delimiter: delimiter.as_deref(),
            after: input.marker.as_deref().filter(|m| !m.is_empty()),
            max_keys,
        };
        let page = self.store().list(&input.bucket, &q).map_err(err)?;
        let url = is_url(&input.encoding_type);
        let enc = |s: String| if url { url_encode(&s) } else { s };
        // S3 returns NextMarker only when a delimiter was given.
        let next_marker = if delimiter.is_some() {
            page.next_marker.clone()
        } else {
            None
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            marker: Some(enc(input.marker.unwrap_or_default())),
            next_marker: next_marker.map(enc),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            is_truncated: Some(page.is_truncated),
            encoding_type: input.encoding_type,
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|m| list_object(m, url))
                    .collect(),
            ),
            common_prefixes: Some(
                page.common_prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let a = attrs(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.metadata,
        );
        let crc32c = !self.shared.dialect.read().checksums_ignored
            && input
                .checksum_algorithm
                .as_ref()
                .is_some_and(|a| a.as_str().eq_ignore_ascii_case("CRC32C"));
        let upload_id = self
            .store()
            .create_multipart_upload(&input.bucket, &input.key, a, crc32c)
            .map_err(err)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let data = collect(input.body, input.content_length).await?;
        if let Some(md5) = &input.content_md5 {
            check_content_md5(&data, md5).map_err(err)?;
        }
        let checksums_ignored = self.shared.dialect.read().checksums_ignored;
        if let Some(crc) = &input.checksum_crc32c {
            if !checksums_ignored {
                check_crc32c(&data, crc).map_err(err)?;
            }
        }
        let carries_crc32c = input.checksum_crc32c.is_some() && !checksums_ignored;
        let md5 = md5_hex(&data); // outside the lock
        let e = self
            .store()
            .insert_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                input.part_number,
                data,
                md5,
                carries_crc32c,
            )
            .map_err(err)?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&e)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let (sb, sk) = copy_source(&input.copy_source)?;
        let twice = self.shared.dialect.read().part_copy_source_decoded_twice;
        let sk = if twice {
            percent_encoding::percent_decode_str(sk)
                .decode_utf8_lossy()
                .into_owned()
        } else {
            sk.to_owned()
        };
        let sk = sk.as_str();
        let ignore = self.shared.dialect.read().copy_source_conditions_ignored;
        let if_match = cond(input.copy_source_if_match).filter(|_| !ignore);
        let (e, when, crc32c) = self
            .store()
            .upload_part_copy(
                &input.bucket,
                &input.key,
                &input.upload_id,
                input.part_number,
                sb,
                sk,
                input.copy_source_range.as_deref(),
                if_match.as_ref(),
            )
            .map_err(err)?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&e)),
                last_modified: Some(ts(when)),
                checksum_crc32c: crc32c,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let mut parts = Vec::new();
        let mut crc32cs = std::collections::BTreeMap::new();
        for p in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(n), Some(e)) = (p.part_number, p.e_tag) else {
                return Err(s3_error!(
                    MalformedXML,
                    "each part needs a PartNumber and an ETag"
                ));
            };
            if let Some(c) = p.checksum_crc32c {
                crc32cs.insert(n, c);
            }
            parts.push((n, e.into_value()));
        }
        if self.shared.dialect.read().complete_names_every_part {
            let held = self
                .store()
                .list_parts(&input.bucket, &input.key, &input.upload_id)
                .map(|p| p.len());
            if let Some(held) = held.ok().filter(|h| *h != parts.len()) {
                return Err(s3_error!(
                    InvalidPart,
                    "total parts mismatch: have {held}, expected {}",
                    parts.len()
                ));
            }
        }
        let c = if self.shared.dialect.read().complete_ignores_conditions {
            WriteConditions::default()
        } else {
            WriteConditions {
                if_match: cond(input.if_match),
                if_none_match: cond(input.if_none_match),
            }
        };
        let meta = self
            .store()
            .complete_multipart_upload(
                &input.bucket,
                &input.key,
                &input.upload_id,
                &parts,
                &crc32cs,
                &c,
            )
            .map_err(err)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            location: Some(format!("/{}/{}", input.bucket, url_encode(&input.key))),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&meta.etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.store()
            .abort_multipart_upload(&input.bucket, &input.key, &input.upload_id)
            .map_err(err)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = max_count(input.max_uploads, "max-uploads")?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let all = self
            .store()
            .list_uploads(&input.bucket, &prefix)
            .map_err(err)?;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone();
        let url = is_url(&input.encoding_type);
        let enc = |s: String| if url { url_encode(&s) } else { s };

        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut next: Option<(String, Option<String>)> = None;
        for u in all {
            let after_marker = key_marker.is_empty()
                || u.key > key_marker
                || (u.key == key_marker && id_marker.as_ref().is_some_and(|m| u.upload_id > *m));
            if !after_marker {
                continue;
            }
            let cp = delimiter.as_deref().and_then(|d| {
                u.key[prefix.len()..]
                    .find(d)
                    .map(|i| u.key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(cp) = &cp {
                if prefixes.last() == Some(cp) || *cp == key_marker {
                    continue;
                }
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            match cp {
                Some(cp) => {
                    next = Some((cp.clone(), None));
                    prefixes.push(cp);
                }
                None => {
                    next = Some((u.key.clone(), Some(u.upload_id.clone())));
                    uploads.push(MultipartUpload {
                        key: Some(enc(u.key)),
                        upload_id: Some(u.upload_id),
                        initiated: Some(ts(u.initiated)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = if truncated {
            next.unwrap_or_default()
        } else {
            Default::default()
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(enc(prefix)),
            delimiter: delimiter.map(enc),
            key_marker: Some(enc(key_marker)),
            upload_id_marker: Some(id_marker.unwrap_or_default()),
            next_key_marker: truncated.then(|| enc(next_key)),
            next_upload_id_marker: truncated.then(|| next_id.unwrap_or_default()),
            max_uploads: Some(input.max_uploads.unwrap_or(1000)),
            is_truncated: Some(truncated),
            encoding_type: input.encoding_type,
            uploads: Some(uploads),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(enc(p)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = max_count(input.max_parts, "max-parts")?;
        let marker = input.part_number_marker.unwrap_or(0);
        let all = self
            .store()
            .list_parts(&input.bucket, &input.key, &input.upload_id)
            .map_err(err)?;
        let rest: Vec<_> = all.into_iter().filter(|(n, _)| *n > marker).collect();
        let truncated = rest.len() > max;
        let page: Vec<Part> = rest
            .into_iter()
            .take(max)
            .map(|(n, p)| Part {
                part_number: Some(n),
                e_tag: Some(etag(&p.etag)),
                size: Some(p.data.len() as i64),
                last_modified: Some(ts(p.last_modified)),
                ..Default::default()
            })
            .collect();
        let next = page.last().and_then(|p| p.part_number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            max_parts: Some(input.max_parts.unwrap_or(1000)),
            is_truncated: Some(truncated),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(page),
            ..Default::default()
        }))
    }
}

/// Credentials looked up at request time, so tests can change them.
pub(crate) struct Auth {
    pub shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.shared.credentials.read().get(access_key) {
            Some(secret) => Ok(SecretKey::from(secret.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// Our operation name, put into request extensions by the HTTP layer.
#[derive(Debug, Clone)]
pub(crate) struct OpTag(pub String);

/// Allows anonymous requests when configured and cross-checks our
/// operation names against the ones s3s resolved.
pub(crate) struct Access {
    pub shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let s3s_op = cx.s3_op().name().to_owned();
        if let Some(OpTag(ours)) = cx.extensions_mut().get::<OpTag>() {
            if *ours != s3s_op {
                tracing::warn!(ours = %ours, s3s = %s3s_op, "operation name mismatch");
                self.shared
                    .op_mismatches
                    .lock()
                    .push((ours.clone(), s3s_op));
            }
        }
        if cx.credentials().is_none() && !self.shared.allow_anonymous.load(Ordering::Relaxed) {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        Ok(())
    }
}
