//! What the server really does where S3 servers differ (conditional writes, the If-Match form,
//! conditions and ETags of CompleteMultipartUpload, UploadPartCopy, whether ETags are MD5s and
//! CRC32C checksums are verified), found out with a dozen requests on three throw-away keys
//! under `.bucketfs-probe/`, deleted right away.

use bytes::Bytes;
use hyper::Method;
use md5::Digest as _;

use super::super::error::S3Error;
use super::super::profile::{Capabilities, Holds};
use super::super::sigv4;
use super::super::stats::Op;
use super::super::types::PutOptions;
use super::{Call, PayloadSha256, S3Client};

/// Where probe objects go, under the mount's prefix.
pub const PROBE_DIR: &str = ".bucketfs-probe/";

const BODY: &[u8] = b"bucketfs probe: safe to delete\n";
/// An ETag no object has.
const WRONG_ETAG: &str = "00000000000000000000000000000000";

fn outcome(r: &Result<(), S3Error>) -> Holds {
    match r {
        Err(e) if e.is_precondition_failed() => Holds::Yes,
        Ok(()) => Holds::No,
        Err(_) => Holds::Unknown,
    }
}

impl S3Client {
    /// Probes the server with objects under `prefix` + [`PROBE_DIR`], and returns what it does
    /// (the profile's answer where a step cannot tell). Fails only when the first write fails
    /// (no write permission there, for instance): then nothing is known.
    pub async fn probe(&self, prefix: &str) -> Result<Capabilities, S3Error> {
        let dir = format!("{prefix}{PROBE_DIR}{:016x}/", rand::random::<u64>());
        let (a, b, c) = (format!("{dir}a"), format!("{dir}b"), format!("{dir}c"));
        let saved = self.capabilities();
        let result = self.probe_steps(&a, &b).await;
        let result = match result {
            Ok(mut caps) => {
                caps.verifies_crc32c = self.probe_crc32c(&c).await;
                caps.verifies_payload_sha256 = self.probe_payload_sha256(&c).await;
                Ok(caps)
            }
            Err(e) => Err(e),
        };
        self.set_capabilities(saved);
        for key in [&a, &b, &c] {
            if let Err(e) = self.delete_object(key).await {
                tracing::warn!(key, "cannot delete a probe object: {e}");
            }
        }
        result
    }

    async fn probe_steps(&self, a: &str, b: &str) -> Result<Capabilities, S3Error> {
        let mut caps = self.profile().caps;
        let body = Bytes::from_static(BODY);
        let create = PutOptions {
            if_none_match_any: true,
            ..PutOptions::default()
        };
        let etag = match self.put_object_once(a, body.clone().into(), &create).await {
            Ok(m) => m.etag.unwrap_or_default(),
            Err(e) if e.status() == Some(501) || e.code() == Some("NotImplemented") => {
                caps.conditional_create = Holds::No;
                self.put_object_once(a, body.clone().into(), &PutOptions::default())
                    .await?
                    .etag
                    .unwrap_or_default()
            }
            Err(e) => return Err(e),
        };
        caps.etag_md5 = if etag.is_empty() {
            Holds::Unknown
        } else if etag.eq_ignore_ascii_case(&hex::encode(md5::Md5::digest(BODY))) {
            Holds::Yes
        } else {
            Holds::No
        };
        if caps.conditional_create != Holds::No {
            let again = self.put_object_once(a, body.clone().into(), &create).await;
            caps.conditional_create = outcome(&again.map(|_| ()));
        }

        // If-Match with the right ETag: quoted (RFC 9110, AWS), else bare (Ceph RGW)
        let replace = |e: &str| PutOptions {
            if_match: Some(e.to_owned()),
            ..PutOptions::default()
        };
        let mut form_works = false;
        for bare in [false, true] {
            self.inner.caps.write().if_match_bare = bare;
            if self
                .put_object_once(a, body.clone().into(), &replace(&etag))
                .await
                .is_ok()
            {
                caps.if_match_bare = bare;
                form_works = true;
                break;
            }
        }
        self.inner.caps.write().if_match_bare = caps.if_match_bare;
        caps.conditional_replace = if form_works {
            let wrong = self
                .put_object_once(a, body.clone().into(), &replace(WRONG_ETAG))
                .await;
            outcome(&wrong.map(|_| ()))
        } else {
            Holds::No
        };

        // a multipart upload of a new key: UploadPartCopy, and the ETag in Complete's reply
        let first = self.probe_multipart(b, a, true).await;
        match first {
            Ok((copied, source_condition, reply_etag)) => {
                caps.upload_part_copy = copied;
                caps.copy_source_condition = source_condition;
                caps.complete_etag = if reply_etag { Holds::Yes } else { Holds::No };
                // the same again, now that the key exists: If-None-Match must refuse it
                let second = self.probe_multipart(b, a, false).await;
                caps.conditional_complete = outcome(&second.map(|_| ()));
            }
            Err(e) => {
                tracing::debug!("probe: multipart upload failed: {e}");
                caps.upload_part_copy = Holds::Unknown;
                caps.copy_source_condition = Holds::Unknown;
                caps.complete_etag = Holds::Unknown;
                caps.conditional_complete = Holds::Unknown;
            }
        }
        Ok(caps)
    }

    /// Whether a PutObject whose `x-amz-checksum-crc32c` does not match its body is refused
    /// (`BadDigest`). A server that stores it anyway ignores the header. Sent once, unretried.
    async fn probe_crc32c(&self, key: &str) -> Holds {
        let mut call = self.x_id(Call::new(Op::Put, Method::PUT, Some(key)));
        // the CRC32C of an empty body: not this one's
        call = call.header("x-amz-checksum-crc32c", "AAAAAA==");
        call.body = Bytes::from_static(BODY).into();
        call.probe = true;
        match self.execute(&call).await {
            Ok(_) => Holds::No,
            Err(e) if e.code() == Some("BadDigest") => Holds::Yes,
            // refused for another reason (the header unknown, for one): not to be sent
            Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => Holds::No,
            Err(e) => {
                tracing::debug!("probe: a PutObject with a wrong CRC32C failed: {e}");
                Holds::Unknown
            }
        }
    }

    /// Whether a PutObject signed with a SHA-256 that is not its body's is refused
    /// ([`S3Error::body_damaged`]). A server that stores it anyway does not
    /// verify signed payloads. Sent once, unretried.
    async fn probe_payload_sha256(&self, key: &str) -> Holds {
        let mut call = self.x_id(Call::new(Op::Put, Method::PUT, Some(key)));
        // the SHA-256 of an empty body: not this one's
        call.payload_sha256 = PayloadSha256::Given(sigv4::EMPTY_PAYLOAD_SHA256.to_owned());
        call.body = Bytes::from_static(BODY).into();
        call.probe = true;
        match self.execute(&call).await {
            Ok(_) => Holds::No,
            Err(e) if e.body_damaged() => Holds::Yes,
            Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => {
                tracing::debug!("probe: a PutObject with a wrong payload SHA-256 was refused: {e}");
                Holds::No
            }
            Err(e) => {
                tracing::debug!("probe: a PutObject with a wrong payload SHA-256 failed: {e}");
                Holds::Unknown
            }
        }
    }

    /// One multipart upload of `key` with `If-None-Match: *` on its Complete: one part, copied
    /// from `source` when `try_copy` (else, or where refused, uploaded). Returns whether the
    /// copy worked, whether a copy with a wrong source ETag was refused, and whether the
    /// reply named an ETag; aborts the upload when it fails.
    async fn probe_multipart(
        &self,
        key: &str,
        source: &str,
        try_copy: bool,
    ) -> Result<(Holds, Holds, bool), S3Error> {
        let upload_id = self
            .create_multipart_upload(key, &PutOptions::default())
            .await?;
        let result = async {
            let mut copied = Holds::Unknown;
            let mut source_condition = Holds::Unknown;
            let mut etag = None;
            let range = 0..BODY.len() as u64;
            if try_copy {
                let wrong = self
                    .upload_part_copy(key, &upload_id, 1, source, range.clone(), Some(WRONG_ETAG))
                    .await;
                match wrong {
                    Ok(e) => {
                        copied = Holds::Yes;
                        source_condition = Holds::No;
                        etag = Some(e);
                    }
                    Err(e) if e.is_precondition_failed() => {
                        source_condition = Holds::Yes;
                        match self
                            .upload_part_copy(key, &upload_id, 1, source, range, None)
                            .await
                        {
                            Ok(e) => {
                                copied = Holds::Yes;
                                etag = Some(e);
                            }
                            Err(e) if e.is_copy_refused() => copied = Holds::No,
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) if e.is_copy_refused() => copied = Holds::No,
                    Err(e) => return Err(e),
                }
            }
            let part = match etag {
                Some(p) => p,
                None => {
                    self.upload_part(key, &upload_id, 1, Bytes::from_static(BODY))
                        .await?
                }
            };
            let parts = [part];
            let cond = PutOptions {
                if_none_match_any: true,
                ..PutOptions::default()
            };
            let reply = self.complete_once(key, &upload_id, &parts, &cond).await?;
            Ok((copied, source_condition, reply.is_some()))
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart_upload(key, &upload_id).await;
        }
        result
    }
}
