//! Server-side copies: CopyObject, UploadPartCopy, and the one place that chooses between a
//! single copy and a multipart one (falling back to GET + UploadPart where copies are refused).

use hyper::Method;
use tokio::sync::Semaphore;

use super::xml;
use super::{Call, S3Client, SseFor};
use crate::s3::error::S3Error;
use crate::s3::stats::Op;
use crate::s3::types::{ByteRange, CompletedPart, PutOptions};
use crate::s3::wire::{quote_etag, range_header};

/// How many parts of one server-side copy are in flight at once.
const COPY_PARALLEL: usize = 8;
/// Bytes of downloaded parts held at once when a copy falls back to GET + UploadPart.
const COPY_FALLBACK_MEMORY: u64 = 256 * 1024 * 1024;

impl S3Client {
    /// Copies `range` of `source_key` (same bucket) into a part; returns the part's ETag (and
    /// the CRC32C the server computed, in an upload created with that algorithm).
    pub async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        range: ByteRange,
        if_match: Option<&str>,
    ) -> Result<CompletedPart, S3Error> {
        let range_value = range_header(&range)
            .ok_or_else(|| S3Error::Config("empty range for UploadPartCopy".into()))?;
        let mut call = self
            .x_id(Call::new(Op::UploadPartCopy, Method::PUT, Some(key)))
            .query("partNumber", part_number.to_string())
            .query("uploadId", upload_id)
            .header("x-amz-copy-source", self.copy_source(source_key))
            .header("x-amz-copy-source-range", range_value);
        call.headers.extend(self.sse_headers(SseFor::Data));
        call.headers.extend(self.copy_source_sse_headers());
        if let Some(etag) = if_match {
            call = call.header("x-amz-copy-source-if-match", quote_etag(etag));
        }
        call.check_ok_body = true;
        let resp = match self.execute(&call).await {
            Ok(r) => r,
            // a source without the range asked for: on a server that ignores
            // x-amz-copy-source-if-match, this is how a change of the source shows
            Err(e) if matches!(e.code(), Some("InvalidRange" | "InvalidArgument")) => {
                if let Some(want) = if_match {
                    let source = PutOptions {
                        if_match: Some(want.to_owned()),
                        ..PutOptions::default()
                    };
                    self.check_conditions_by_head(source_key, &source).await?;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let copied = xml::parse_copy_result(&resp.body, resp.status, key)?;
        let etag = copied
            .etag
            .ok_or_else(|| S3Error::InvalidResponse("CopyPartResult without ETag".into()))?;
        Ok(CompletedPart {
            part_number,
            etag,
            crc32c: copied.crc32c,
        })
    }

    /// Server-side copy within the bucket. With `replace_metadata`, the new object gets
    /// those headers (REPLACE directive, and its conditions apply to the destination);
    /// otherwise the source's metadata is copied. Returns the new ETag.
    pub async fn copy_object(
        &self,
        source_key: &str,
        dest_key: &str,
        replace_metadata: Option<&PutOptions>,
        source_if_match: Option<&str>,
    ) -> Result<String, S3Error> {
        let mut call = self
            .x_id(Call::new(Op::Copy, Method::PUT, Some(dest_key)))
            .header("x-amz-copy-source", self.copy_source(source_key));
        if let Some(opts) = replace_metadata {
            call = call.header("x-amz-metadata-directive", "REPLACE");
            call.headers.extend(self.object_headers(opts));
            call.headers.extend(self.condition_headers(opts));
        }
        call.headers.extend(self.new_object_headers());
        call.headers.extend(self.copy_source_sse_headers());
        if let Some(etag) = source_if_match {
            call = call.header("x-amz-copy-source-if-match", quote_etag(etag));
        }
        call.check_ok_body = true;
        let resp = self.execute(&call).await?;
        let etag = xml::parse_copy_result(&resp.body, resp.status, dest_key)?.etag;
        etag.ok_or_else(|| S3Error::InvalidResponse("CopyObjectResult without ETag".into()))
    }

    /// Part size for a multipart copy of `size` bytes: at least `wanted`, within the
    /// profile's part limits, and large enough to stay under its part count.
    pub fn copy_part_size(&self, size: u64, wanted: u64) -> u64 {
        let p = self.inner.cfg.profile;
        let by_count = size.div_ceil(u64::from(p.max_parts.max(1)));
        wanted
            .max(p.min_part_size)
            .max(by_count)
            .min(p.max_part_size)
            .max(1)
    }

    /// Server-side copy of any size, the one place that chooses: one CopyObject up to the
    /// profile's copy limit (and for empty objects), [`S3Client::copy_object_multipart`] beyond
    /// it. `opts`: the new metadata (`None` keeps the source's).
    pub async fn copy_object_sized(
        &self,
        source_key: &str,
        dest_key: &str,
        size: u64,
        part_size: u64,
        opts: Option<&PutOptions>,
        source_if_match: Option<&str>,
    ) -> Result<String, S3Error> {
        if size == 0 || size <= self.inner.cfg.profile.max_copy_object_size {
            return self
                .copy_object(source_key, dest_key, opts, source_if_match)
                .await;
        }
        self.copy_object_multipart(source_key, dest_key, size, part_size, opts, source_if_match)
            .await
    }

    /// Copies `source_key` (`size` bytes) to `dest_key` as a multipart upload: Create, then
    /// UploadPartCopy of each range in parallel, then Complete. Where the server refuses
    /// UploadPartCopy (or the profile says it will), each part is fetched with a ranged GET
    /// and sent with UploadPart instead. Any failure aborts the upload.
    ///
    /// `opts`: the new object's content type and metadata, and conditions on the destination
    /// (applied to Complete). `None` copies the source's content type and metadata (one HEAD).
    /// `source_if_match`: every read of the source must see this ETag (else 412).
    /// Returns the new object's ETag.
    pub async fn copy_object_multipart(
        &self,
        source_key: &str,
        dest_key: &str,
        size: u64,
        part_size: u64,
        opts: Option<&PutOptions>,
        source_if_match: Option<&str>,
    ) -> Result<String, S3Error> {
        let owned_opts;
        let opts = match opts {
            Some(o) => o,
            None => {
                let meta = self.head_object(source_key).await?;
                if let (Some(want), Some(have)) = (source_if_match, meta.etag.as_deref()) {
                    if !self.inner.cfg.profile.etags_equal(want, have) {
                        return Err(S3Error::service(
                            412,
                            "PreconditionFailed",
                            format!("{source_key} changed during the copy"),
                            None,
                            Some(source_key),
                        ));
                    }
                }
                owned_opts = PutOptions {
                    content_type: meta.content_type,
                    user_metadata: meta.user_metadata,
                    content_headers: meta.content_headers,
                    ..PutOptions::default()
                };
                &owned_opts
            }
        };
        let part_size = self.copy_part_size(size, part_size);
        let count = size.div_ceil(part_size).max(1);
        let upload_id = self.create_multipart_upload(dest_key, opts).await?;
        let result = self
            .copy_parts(
                source_key,
                dest_key,
                &upload_id,
                size,
                part_size,
                count,
                source_if_match,
            )
            .await;
        let parts = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = self.abort_multipart_upload(dest_key, &upload_id).await;
                return Err(e);
            }
        };
        let completion = PutOptions {
            if_match: opts.if_match.clone(),
            if_none_match_any: opts.if_none_match_any,
            ..PutOptions::default()
        };
        match self
            .complete_multipart_upload(dest_key, &upload_id, &parts, &completion)
            .await
        {
            Ok(etag) => Ok(etag),
            Err(e) => {
                let _ = self.abort_multipart_upload(dest_key, &upload_id).await;
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy_parts(
        &self,
        source_key: &str,
        dest_key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        count: u64,
        source_if_match: Option<&str>,
    ) -> Result<Vec<CompletedPart>, S3Error> {
        use futures::{stream, StreamExt as _, TryStreamExt as _};
        use std::sync::atomic::{AtomicBool, Ordering};

        let refused = AtomicBool::new(!self.copies_parts_from(source_key));
        let fallback_slots = (COPY_FALLBACK_MEMORY / part_size).clamp(1, COPY_PARALLEL as u64);
        let fallback = Semaphore::new(fallback_slots as usize);
        let (refused, fallback) = (&refused, &fallback);
        let jobs = (0..count).map(|i| async move {
            let start = i * part_size;
            let range = start..(start + part_size).min(size);
            let part_number = i as u32 + 1;
            if !refused.load(Ordering::Relaxed) {
                match self
                    .upload_part_copy(
                        dest_key,
                        upload_id,
                        part_number,
                        source_key,
                        range.clone(),
                        source_if_match,
                    )
                    .await
                {
                    Ok(part) => return Ok(part),
                    Err(e) if self.copy_refused(dest_key, &e) => {
                        refused.store(true, Ordering::Relaxed)
                    }
                    Err(e) => return Err(e),
                }
            }
            let _slot = fallback
                .acquire()
                .await
                .map_err(|_| S3Error::Config("copy cancelled".into()))?;
            self.upload_part_from(
                dest_key,
                upload_id,
                part_number,
                source_key,
                range,
                source_if_match,
            )
            .await
        });
        let mut parts: Vec<CompletedPart> = stream::iter(jobs)
            .buffer_unordered(COPY_PARALLEL)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// What a part copy turns into where the server refuses UploadPartCopy (see
    /// [`S3Client::copy_refused`]): `range` of `source_key` read with a ranged GET (every
    /// byte of it, of version `source_if_match`) and sent as part `part_number`.
    pub async fn upload_part_from(
        &self,
        dest_key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        range: std::ops::Range<u64>,
        source_if_match: Option<&str>,
    ) -> Result<CompletedPart, S3Error> {
        let _memory = match self.inner.memory.get() {
            Some(gate) => Some(gate.acquire(range.end - range.start).await),
            None => None,
        };
        let got = self
            .get_object(source_key, Some(range.clone()), source_if_match)
            .await?;
        if got.body.len() as u64 != range.end - range.start {
            return Err(S3Error::InvalidResponse(format!(
                "GET of {source_key} bytes {}..{} returned {} bytes",
                range.start,
                range.end,
                got.body.len()
            )));
        }
        self.upload_part(dest_key, upload_id, part_number, got.body)
            .await
    }
}
