//! Counters of S3 traffic since the client started: requests per operation, bytes, retries, errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::figures::Figure;

/// The kinds of request the client sends, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    List,
    Head,
    Get,
    Put,
    CreateMpu,
    UploadPart,
    UploadPartCopy,
    CompleteMpu,
    AbortMpu,
    Copy,
    Delete,
    DeleteObjects,
    ListMpu,
    HeadBucket,
}

impl Op {
    pub const ALL: [Op; 14] = [
        Op::List,
        Op::Head,
        Op::Get,
        Op::Put,
        Op::CreateMpu,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::CompleteMpu,
        Op::AbortMpu,
        Op::Copy,
        Op::Delete,
        Op::DeleteObjects,
        Op::ListMpu,
        Op::HeadBucket,
    ];

    /// Short label used in stats output and logs.
    pub fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Head => "head",
            Op::Get => "get",
            Op::Put => "put",
            Op::CreateMpu => "create_mpu",
            Op::UploadPart => "upload_part",
            Op::UploadPartCopy => "upload_part_copy",
            Op::CompleteMpu => "complete_mpu",
            Op::AbortMpu => "abort_mpu",
            Op::Copy => "copy",
            Op::Delete => "delete",
            Op::DeleteObjects => "delete_objects",
            Op::ListMpu => "list_mpu",
            Op::HeadBucket => "head_bucket",
        }
    }

    /// The AWS operation name (for the `x-id` query parameter).
    pub fn aws_name(self) -> &'static str {
        match self {
            Op::List => "ListObjectsV2",
            Op::Head => "HeadObject",
            Op::Get => "GetObject",
            Op::Put => "PutObject",
            Op::CreateMpu => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMpu => "CompleteMultipartUpload",
            Op::AbortMpu => "AbortMultipartUpload",
            Op::Copy => "CopyObject",
            Op::Delete => "DeleteObject",
            Op::DeleteObjects => "DeleteObjects",
            Op::ListMpu => "ListMultipartUploads",
            Op::HeadBucket => "HeadBucket",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Live counters, shared by all clones of a client.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    requests: [AtomicU64; 14],
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    retries: AtomicU64,
    checksum_failures: AtomicU64,
    upload_bytes_hashed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            requests: Default::default(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            checksum_failures: AtomicU64::new(0),
            upload_bytes_hashed: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// One HTTP request sent (each attempt counts).
    pub fn request(&self, op: Op) {
        self.requests[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn received(&self, bytes: u64) {
        self.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// A body arrived damaged: an upload the server refused (`BadDigest`), or a GET body that
    /// did not match its checksum.
    pub fn checksum_failure(&self) {
        self.checksum_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` of an upload's body were hashed for its checksum before it was sent (not known
    /// from when they were written).
    pub fn hashed(&self, bytes: u64) {
        self.upload_bytes_hashed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An operation failed for good with this error code (or a kind like `transport`).
    pub fn error(&self, code: &str) {
        let mut errors = self.errors.lock();
        // Bound the map: a misbehaving server could invent codes.
        if errors.len() >= 256 && !errors.contains_key(code) {
            *errors.entry("other".to_owned()).or_insert(0) += 1;
            return;
        }
        *errors.entry(code.to_owned()).or_insert(0) += 1;
    }

    /// A copy of the counters now. `inflight` is filled in by the client.
    pub fn snapshot(&self, inflight: u64) -> StatsSnapshot {
        StatsSnapshot {
            uptime: self.started.elapsed(),
            requests: Op::ALL
                .iter()
                .map(|op| (op.name(), self.requests[op.index()].load(Ordering::Relaxed)))
                .collect(),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            checksum_failures: self.checksum_failures.load(Ordering::Relaxed),
            upload_bytes_hashed: self.upload_bytes_hashed.load(Ordering::Relaxed),
            errors: self.errors.lock().clone(),
            inflight,
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub uptime: Duration,
    /// `(operation, HTTP requests sent)`, every operation listed, in a fixed order.
    pub requests: Vec<(&'static str, u64)>,
    /// Request body bytes sent.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    pub retries: u64,
    /// Bodies that arrived damaged (each attempt counts; each was sent or fetched again).
    pub checksum_failures: u64,
    /// Upload body bytes hashed for their checksum before being sent (read once more for it
    /// when they come from a file); a part sent as it was written carries the CRC32C computed
    /// then, and is not.
    pub upload_bytes_hashed: u64,
    /// Final failures by S3 error code (`transport`, `timeout`, … for non-S3 errors).
    pub errors: BTreeMap<String, u64>,
    /// Requests in flight now.
    pub inflight: u64,
}

impl StatsSnapshot {
    /// Total HTTP requests over all operations.
    pub fn total_requests(&self) -> u64 {
        self.requests.iter().map(|(_, n)| n).sum()
    }

    /// Requests sent for one operation (by its short name, e.g. `"get"`).
    pub fn requests_for(&self, op: &str) -> u64 {
        self.requests
            .iter()
            .find(|(name, _)| *name == op)
            .map_or(0, |(_, n)| *n)
    }

    /// The counters as typed figures, in the stats file's order.
    pub fn figures(&self) -> Vec<Figure> {
        let mut out = Vec::with_capacity(self.requests.len() + self.errors.len() + 5);
        out.push(Figure::gauge(
            "s3_uptime_seconds",
            "Seconds since the S3 client started (the mount's age).",
            self.uptime.as_secs(),
        ));
        for (op, n) in &self.requests {
            out.push(
                Figure::counter(
                    "s3_requests",
                    "HTTP requests sent to S3, by operation (each attempt counts).",
                    *n,
                )
                .with_label("op", *op),
            );
        }
        out.push(Figure::counter(
            "s3_bytes_sent",
            "Request body bytes sent to S3.",
            self.bytes_sent,
        ));
        out.push(Figure::counter(
            "s3_bytes_received",
            "Response body bytes received from S3.",
            self.bytes_received,
        ));
        out.push(Figure::counter(
            "s3_retries",
            "S3 requests sent again after a retryable failure or a credential refresh.",
            self.retries,
        ));
        out.push(Figure::counter(
            "s3_checksum_failures",
            "Bodies that arrived damaged: uploads refused with BadDigest, GET bodies that did \
             not match their checksum (each was sent or fetched again).",
            self.checksum_failures,
        ));
        out.push(Figure::counter(
            "s3_upload_bytes_hashed",
            "Upload body bytes hashed for their checksum before being sent (read again when \
             they come from a staged file); a part sent as written carries the CRC32C computed \
             while it was written.",
            self.upload_bytes_hashed,
        ));
        out.push(Figure::gauge(
            "s3_inflight",
            "S3 requests in flight now.",
            self.inflight,
        ));
        for (code, n) in &self.errors {
            let code: String = code
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            out.push(
                Figure::counter(
                    "s3_errors",
                    "S3 operations that failed for good (after retries), by error code.",
                    *n,
                )
                .with_label("code", code),
            );
        }
        out
    }

    /// `name value` lines, Prometheus text style.
    pub fn to_text(&self) -> String {
        crate::figures::to_text(&self.figures())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_text() {
        let s = Stats::new();
        s.request(Op::Get);
        s.request(Op::Get);
        s.request(Op::HeadBucket);
        s.sent(10);
        s.received(20);
        s.retry();
        s.checksum_failure();
        s.hashed(7);
        s.error("NoSuchKey");
        s.error("NoSuchKey");
        s.error("bad\"code\n");
        let snap = s.snapshot(3);
        assert_eq!(snap.requests_for("get"), 2);
        assert_eq!(snap.requests_for("head_bucket"), 1);
        assert_eq!(snap.total_requests(), 3);
        assert_eq!(snap.requests.len(), 14);
        let text = snap.to_text();
        assert!(text.contains("s3_requests{op=\"get\"} 2\n"));
        assert!(text.contains("s3_requests{op=\"list\"} 0\n"));
        assert!(text.contains("s3_bytes_sent 10\n"));
        assert!(text.contains("s3_bytes_received 20\n"));
        assert!(text.contains("s3_retries 1\n"));
        assert!(text.contains("s3_checksum_failures 1\n"));
        assert!(text.contains("s3_upload_bytes_hashed 7\n"));
        assert!(text.contains("s3_inflight 3\n"));
        assert!(text.contains("s3_errors{code=\"NoSuchKey\"} 2\n"));
        assert!(text.contains("s3_errors{code=\"bad_code_\"} 1\n"));
        for line in text.lines() {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }

    #[test]
    fn op_names_unique() {
        let mut names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }
}
