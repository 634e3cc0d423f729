//! End-to-end integrity: the checksum each upload carries (the server refuses a body damaged
//! on the way, and the client sends it again), and the check of GET bodies against the
//! server's CRC32C or an MD5 ETag (a damaged body is fetched again, never served).

use md5::{Digest as _, Md5};

use super::super::error::S3Error;
use super::super::payload::Payload;
use super::super::types::{ServerSideEncryption, UploadChecksums};
use super::super::wire::parse_content_range;
use super::{body_unreadable, Call, PayloadSha256, Response, S3Client};

/// Bodies up to this size are hashed where they are; larger ones on a blocking thread.
const INLINE_HASH: usize = 64 * 1024;

/// The header of a body's CRC32C.
pub(super) const CRC32C_HEADER: &str = "x-amz-checksum-crc32c";

impl S3Client {
    /// Whether bodies carry their CRC32C (hashed by the CPU at memory speed) rather than an
    /// MD5 (~600 MB/s of one core): where the server verifies it, or when asked. Multipart
    /// uploads then name the algorithm at Create (`x-amz-checksum-algorithm: CRC32C`), every
    /// part carries its CRC32C and the Complete names each one.
    pub fn sends_crc32c(&self) -> bool {
        match self.inner.cfg.upload_checksums {
            UploadChecksums::Crc32c => true,
            UploadChecksums::Auto => self.inner.caps.read().verifies_crc32c.yes(),
            UploadChecksums::Sha256 | UploadChecksums::Md5 | UploadChecksums::Off => false,
        }
    }

    /// How an upload of `body` is protected, so that the server refuses it if it arrives
    /// damaged: its CRC32C where `crc32c` says so (a part carries the checksum its upload was
    /// created for: a server refuses a part whose checksum type differs); else its SHA-256 in
    /// the signature where [`signs_bodies`](Self::signs_bodies); else `Content-MD5` (needed
    /// anyway under object lock); nothing with `--upload-checksums off`. Sets the header or
    /// the signing on `call`, and returns the CRC32C sent.
    pub(super) async fn protect(
        &self,
        call: &mut Call<'_>,
        body: &Payload,
        crc32c: bool,
    ) -> Result<Option<String>, S3Error> {
        let mode = self.inner.cfg.upload_checksums;
        if crc32c {
            if body.known_crc32c().is_none() {
                self.inner.stats.hashed(body.len());
            }
            let v = body.crc32c_base64().await.map_err(body_unreadable)?;
            call.headers.push((CRC32C_HEADER.to_owned(), v.clone()));
            return Ok(Some(v));
        }
        if mode == UploadChecksums::Off && self.inner.cfg.object_lock.is_none() {
            return Ok(None);
        }
        if self.signs_bodies() {
            // hashed once by `execute`, for the signature
            self.inner.stats.hashed(body.len());
            call.payload_sha256 = PayloadSha256::Signed;
            return Ok(None);
        }
        self.inner.stats.hashed(body.len());
        let md5 = body.md5_base64().await.map_err(body_unreadable)?;
        call.headers.push(("content-md5".to_owned(), md5));
        Ok(None)
    }

    /// Whether uploads without CRC32C are protected by their SHA-256 in the signature rather
    /// than by `Content-MD5`: when asked (`sha256`), or (`auto`) where the server verifies
    /// `x-amz-content-sha256` and this CPU hashes SHA-256 in hardware (~1.8 GB/s against
    /// MD5's ~0.6). Object lock wants `Content-MD5`, so it keeps it.
    fn signs_bodies(&self) -> bool {
        if self.inner.cfg.object_lock.is_some() {
            return false;
        }
        match self.inner.cfg.upload_checksums {
            UploadChecksums::Sha256 => true,
            UploadChecksums::Auto => {
                self.inner.caps.read().verifies_payload_sha256.yes() && sha256_in_hardware()
            }
            UploadChecksums::Crc32c | UploadChecksums::Md5 | UploadChecksums::Off => false,
        }
    }

    /// Whether GETs ask for the object's stored checksum (`x-amz-checksum-mode`): only where
    /// the server is known to keep checksums.
    pub(super) fn asks_checksums(&self) -> bool {
        self.inner.cfg.upload_checksums != UploadChecksums::Off
            && self.inner.caps.read().verifies_crc32c.yes()
    }

    /// Checks a GET answer that holds the whole object against what the server says of it:
    /// its full-object `x-amz-checksum-crc32c`, else an ETag that is the MD5 of the bytes (a
    /// single-part object, not encrypted with KMS or a customer key, on a server whose ETags
    /// are MD5s). A ranged answer, or an object nothing can be checked against, passes.
    pub(super) async fn check_get_body(&self, resp: &Response) -> Result<(), S3Error> {
        let len = resp.body.len() as u64;
        let whole = match resp.status {
            200 => true,
            206 => resp
                .header("content-range")
                .and_then(|v| parse_content_range(&v))
                .is_some_and(|(start, end, total)| {
                    start == Some(0) && total == Some(len) && end.map(|e| e + 1) == Some(len)
                }),
            _ => false,
        };
        if !whole {
            return Ok(());
        }
        if let Some(want) = resp
            .header("x-amz-checksum-crc32c")
            .filter(|v| !v.contains('-'))
        {
            let body = resp.body.clone();
            let got = hash(body, |b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(&b).to_be_bytes())
            })
            .await?;
            return verdict(&got, want.trim(), "CRC32C");
        }
        let Some(etag) = resp.header("etag") else {
            return Ok(());
        };
        let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
        let plain_md5 = etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit());
        let kms = resp
            .header("x-amz-server-side-encryption")
            .is_some_and(|v| !v.eq_ignore_ascii_case("AES256"));
        let customer_key = resp
            .header("x-amz-server-side-encryption-customer-algorithm")
            .is_some()
            || matches!(
                self.inner.cfg.sse,
                Some(ServerSideEncryption::Customer(_)) | Some(ServerSideEncryption::Kms { .. })
            );
        if !plain_md5 || kms || customer_key || !self.inner.caps.read().etag_md5.yes() {
            return Ok(());
        }
        let got = hash(resp.body.clone(), |b| hex::encode(Md5::digest(&b))).await?;
        verdict(&got.to_ascii_lowercase(), &etag.to_ascii_lowercase(), "MD5")
    }
}

/// Whether this CPU has SHA-256 instructions (the `sha2` crate uses them when it does).
fn sha256_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `f` over `body`, on a blocking thread when the body is large.
async fn hash(
    body: bytes::Bytes,
    f: impl FnOnce(bytes::Bytes) -> String + Send + 'static,
) -> Result<String, S3Error> {
    if body.len() <= INLINE_HASH {
        return Ok(f(body));
    }
    tokio::task::spawn_blocking(move || f(body))
        .await
        .map_err(|e| S3Error::Config(format!("hashing a response body failed: {e}")))
}

fn verdict(got: &str, want: &str, what: &str) -> Result<(), S3Error> {
    if got == want {
        Ok(())
    } else {
        Err(S3Error::Corrupt(format!(
            "{what} of the body is {got}, the server says {want}"
        )))
    }
}
