//! Small pieces of the S3 wire format: range and ETag header values, object metadata from
//! response headers, payload hashes, and the retry backoff schedule.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::header::HeaderMap;
use rand::Rng as _;

use super::error::S3Error;
use super::payload::Payload;
use super::sigv4;
use super::time::parse_http_date;
use super::types::{ByteRange, ObjectMeta};

/// `bytes=start-(end-1)` for a half-open range; `None` for an empty one.
pub fn range_header(range: &ByteRange) -> Option<String> {
    if range.end <= range.start {
        return None;
    }
    Some(format!("bytes={}-{}", range.start, range.end - 1))
}

/// Upper bound of the backoff before retry number `retry` (1-based): 50 ms doubling, 5 s cap.
pub fn backoff_ceiling(retry: u32) -> Duration {
    const BASE_MS: u64 = 50;
    const CAP_MS: u64 = 5_000;
    let exp = retry.saturating_sub(1).min(16);
    Duration::from_millis((BASE_MS << exp).min(CAP_MS))
}

/// "Full jitter": a uniformly random delay in `[0, backoff_ceiling(retry)]`.
pub fn backoff_delay(retry: u32) -> Duration {
    let ceiling = backoff_ceiling(retry).as_millis() as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
}

pub(crate) fn strip_quotes(s: &str) -> String {
    let t = s.trim();
    t.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(t)
        .to_owned()
}

/// `(first, last, total)` of `Content-Range: bytes a-b/total` (`total` may be `*`);
/// `(None, None, total)` for `bytes */total`.
pub(crate) fn parse_content_range(v: &str) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if span.trim() == "*" {
        return Some((None, None, total));
    }
    let (a, b) = span.split_once('-')?;
    Some((
        Some(a.trim().parse().ok()?),
        Some(b.trim().parse().ok()?),
        total,
    ))
}

/// Object metadata from response headers. `size` is the whole object's size: from
/// `Content-Range` when present, else `Content-Length`.
pub(crate) fn meta_from_headers(headers: &HeaderMap) -> ObjectMeta {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let size = text("content-range")
        .and_then(|v| parse_content_range(&v))
        .and_then(|(_, _, total)| total)
        .or_else(|| text("content-length").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    let mut user_metadata = BTreeMap::new();
    for (name, value) in headers {
        if let Some(meta) = name.as_str().strip_prefix("x-amz-meta-") {
            user_metadata.insert(
                meta.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    ObjectMeta {
        size,
        etag: text("etag")
            .map(|e| strip_quotes(&e))
            .filter(|e| !e.is_empty()),
        last_modified: text("last-modified").and_then(|d| parse_http_date(&d)),
        content_type: text("content-type"),
        storage_class: text("x-amz-storage-class"),
        user_metadata,
        content_headers: super::types::CONTENT_HEADERS
            .iter()
            .filter_map(|name| Some((name.to_string(), text(name)?)))
            .collect(),
    }
}

/// A short, printable excerpt of a non-XML error body.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

pub(crate) fn quote_etag(etag: &str) -> String {
    let t = etag.trim();
    if t == "*" || (t.starts_with('"') && t.ends_with('"') && t.len() >= 2) || t.starts_with("W/") {
        t.to_owned()
    } else {
        format!("\"{t}\"")
    }
}

/// The `x-amz-content-sha256` value for a body. Large bodies are hashed off the async threads.
pub(crate) async fn payload_hash(body: &Payload, sign_payload: bool) -> Result<String, S3Error> {
    if body.is_empty() {
        return Ok(sigv4::EMPTY_PAYLOAD_SHA256.to_owned());
    }
    if !sign_payload {
        return Ok(sigv4::UNSIGNED_PAYLOAD.to_owned());
    }
    if let Payload::Bytes(b) = body.body() {
        if b.len() < 256 * 1024 {
            return Ok(sigv4::sha256_hex(b));
        }
    }
    body.sha256_hex()
        .await
        .map_err(|e| S3Error::Config(format!("cannot read the request body: {e}")))
}
