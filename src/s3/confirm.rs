//! Deciding from what is in the bucket: a write whose answer was lost, unclear or refused is
//! checked with a HEAD of its key, never taken for lost on the answer alone.

use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

use super::super::error::S3Error;
use super::super::payload::Payload;
use super::super::profile::EtagStyle;
use super::super::types::{CompletedPart, ObjectMeta, PutOptions};
use super::S3Client;

/// What a HEAD after an unclear write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Confirmed {
    /// The object holds exactly what the write sent: it landed; its ETag.
    Landed(String),
    /// Another version is there (its ETag): the write did not land.
    Holds(String),
    /// Nothing can be told (no object, the HEAD failed, or ETags say nothing about content).
    Unknown,
}

/// First pause between HEADs while a write may still be landing; doubles up to the cap.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The ETag S3 gives a multipart object: the MD5 of the parts' binary MD5s, then `-N`.
/// `None` when a part's ETag is not a plain MD5.
pub fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    let mut joined = Vec::with_capacity(parts.len() * 16);
    for p in parts {
        let raw = hex::decode(p.etag.trim_matches('"')).ok()?;
        if raw.len() != 16 {
            return None;
        }
        joined.extend_from_slice(&raw);
    }
    Some(format!(
        "{}-{}",
        hex::encode(Md5::digest(&joined)),
        parts.len()
    ))
}

/// Whether the error leaves open that the write was carried out (the answer was lost, the
/// server failed after the body was sent, or a retried Complete found its upload gone).
fn unclear(err: &S3Error) -> bool {
    err.may_have_been_applied()
}

impl S3Client {
    /// Whether a failed PutObject of `body` landed after all.
    pub(crate) async fn confirm_put(&self, key: &str, body: &Payload, err: &S3Error) -> Confirmed {
        let in_flight = unclear(err);
        if !in_flight && !err.is_precondition_failed() {
            return Confirmed::Unknown;
        }
        let encrypted = self
            .config()
            .sse
            .as_ref()
            .is_some_and(|s| !matches!(s, super::super::types::ServerSideEncryption::S3));
        // hashed on a blocking thread (a part-sized body, or a staged file)
        let Ok(md5) = body.md5_hex().await else {
            return Confirmed::Unknown;
        };
        let profile = self.profile();
        self.head_until(key, in_flight, |meta| {
            let etag = meta.etag.as_deref()?;
            profile.etag_matches_md5(etag, &md5, encrypted)
        })
        .await
    }

    /// Whether a failed (or ETag-less) CompleteMultipartUpload of `parts` landed after all.
    pub(crate) async fn confirm_multipart(
        &self,
        key: &str,
        parts: &[CompletedPart],
        err: &S3Error,
    ) -> Confirmed {
        let in_flight = unclear(err);
        if !in_flight && !err.is_precondition_failed() {
            return Confirmed::Unknown;
        }
        let profile = self.profile();
        let expected = multipart_etag(parts);
        let suffix = format!("-{}", parts.len());
        self.head_until(key, in_flight, |meta| {
            let etag = meta.etag.as_deref()?.trim_matches('"');
            match (&expected, profile.etag_style) {
                (Some(want), EtagStyle::Md5) => Some(profile.etags_equal(etag, want)),
                // an opaque multipart ETag: the part count is all it tells
                _ => etag.ends_with(&suffix).then_some(true),
            }
        })
        .await
    }

    /// HEAD `key` until `ours` says the object is the one written (`Some(true)`), or another
    /// one is there (`Some(false)`) and nothing may still be landing. While a write may still
    /// be in flight on the server (`in_flight`), keep looking for up to `confirm_grace`.
    async fn head_until(
        &self,
        key: &str,
        in_flight: bool,
        ours: impl Fn(&ObjectMeta) -> Option<bool>,
    ) -> Confirmed {
        let deadline = Instant::now() + self.config().confirm_grace;
        let mut pause = FIRST_PAUSE;
        loop {
            let last = match self.head_object(key).await {
                Ok(meta) => match ours(&meta) {
                    Some(true) => {
                        tracing::debug!(key, "an unclear write is in the bucket after all");
                        return Confirmed::Landed(meta.etag.unwrap_or_default());
                    }
                    Some(false) => Confirmed::Holds(meta.etag.unwrap_or_default()),
                    None => return Confirmed::Unknown,
                },
                Err(e) if e.is_not_found() => Confirmed::Unknown,
                Err(e) => {
                    tracing::debug!(key, "cannot check what the bucket holds: {e}");
                    return Confirmed::Unknown;
                }
            };
            if !in_flight || Instant::now() + pause > deadline {
                return last;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// For a server that ignores conditions on Complete: check them with a HEAD just before.
    /// A condition that does not hold is the 412 the server would have sent.
    pub(crate) async fn check_conditions_by_head(
        &self,
        key: &str,
        opts: &PutOptions,
    ) -> Result<(), S3Error> {
        let current = match self.head_object(key).await {
            Ok(meta) => Some(meta.etag.unwrap_or_default()),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let holds = match (&current, opts.if_none_match_any, opts.if_match.as_deref()) {
            (Some(_), true, _) => false,
            (None, _, Some(_)) => false,
            (Some(have), _, Some(want)) => self.profile().etags_equal(have, want),
            _ => true,
        };
        if holds {
            return Ok(());
        }
        Err(S3Error::service(
            412,
            "PreconditionFailed",
            "the object changed in the bucket (checked with a HEAD)",
            None,
            Some(key),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etags_follow_s3s_rule() {
        let parts = [
            CompletedPart {
                part_number: 1,
                etag: "\"5d41402abc4b2a76b9719d911017c592\"".into(),
                crc32c: None,
            },
            CompletedPart {
                part_number: 2,
                etag: "7d793037a0760186574b0282f2f435e7".into(),
                crc32c: None,
            },
        ];
        let mut joined = hex::decode("5d41402abc4b2a76b9719d911017c592").unwrap();
        joined.extend(hex::decode("7d793037a0760186574b0282f2f435e7").unwrap());
        let want = format!("{}-2", hex::encode(Md5::digest(&joined)));
        assert_eq!(multipart_etag(&parts), Some(want));
        let odd = [CompletedPart {
            part_number: 1,
            etag: "not-an-md5".into(),
            crc32c: None,
        }];
        assert_eq!(multipart_etag(&odd), None);
    }
}
