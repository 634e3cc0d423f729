//! State shared by the HTTP layer, the S3 implementation and the test API:
//! store, faults, counters, request log and credentials.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::faults::FaultSet;
use crate::store::Store;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Sequence number, from 1, in arrival order.
    pub id: u64,
    pub method: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Raw query string ("" when absent).
    pub query: String,
    /// Lower-case header names with values, without `authorization`.
    pub headers: Vec<(String, String)>,
    /// Operation name ("PutObject", ...).
    pub op: String,
    pub bucket: Option<String>,
    /// Decoded key.
    pub key: Option<String>,
    /// Response status; `None` while in flight or when the connection was
    /// dropped without a response.
    pub status: Option<u16>,
    /// Description of the injected fault, if one fired.
    pub fault: Option<String>,
}

impl RequestRecord {
    /// First value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        crate::classify::query_pairs(Some(&self.query))
    }

    /// Decoded value of a query parameter (`Some("")` for `?uploads`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub counts: BTreeMap<String, u64>,
    /// Requests of each operation being handled now, and the most there have been at once.
    pub in_flight: BTreeMap<String, (u64, u64)>,
    pub log: VecDeque<RequestRecord>,
    pub next_id: u64,
}

/// Everything the server tasks and the handle share.
pub(crate) struct Shared {
    pub bucket: String,
    pub store: Mutex<Store>,
    pub faults: Mutex<FaultSet>,
    pub stats: Mutex<Stats>,
    pub log_capacity: usize,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub credentials: RwLock<HashMap<String, String>>,
    pub allow_anonymous: AtomicBool,
    /// Serve the `/__control/` API.
    pub control_api: AtomicBool,
    /// (our op name, s3s op name) pairs that disagreed.
    pub op_mismatches: Mutex<Vec<(String, String)>>,
    /// Where this server departs from AWS on purpose, to play another server.
    pub dialect: RwLock<Dialect>,
}

/// Departures from AWS's behaviour that real servers show (see `Dialect::ceph_rgw`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dialect {
    /// CompleteMultipartUpload answers `<ETag></ETag>` (the HEAD after it has the ETag).
    pub complete_empty_etag: bool,
    /// `If-Match` on PutObject is compared with the bare ETag as a raw string: the quoted
    /// form (`"abc"`) never matches, so it always gets 412.
    pub if_match_raw_string: bool,
    /// `If-None-Match` / `If-Match` on CompleteMultipartUpload are ignored.
    pub complete_ignores_conditions: bool,
    /// `x-amz-copy-source-if-match` / `-if-none-match` on copies are ignored.
    pub copy_source_conditions_ignored: bool,
    /// `x-amz-checksum-*` headers on uploads are ignored (Ceph before 19): a wrong one is
    /// stored as if it were right.
    pub checksums_ignored: bool,
    /// CompleteMultipartUpload is refused (`InvalidPart`, RGW's log: "total parts mismatch")
    /// unless it names every part the upload holds: parts sent and then left out cannot be.
    pub complete_names_every_part: bool,
    /// UploadPartCopy decodes its `x-amz-copy-source` twice: from `a%41` it copies `aA`
    /// (or answers NoSuchKey), silently.
    pub part_copy_source_decoded_twice: bool,
}

impl Dialect {
    /// What Ceph RGW 16.2.15 does (measured; `../shared/S3-SERVERS.md`).
    pub fn ceph_rgw() -> Dialect {
        Dialect {
            complete_empty_etag: true,
            if_match_raw_string: true,
            complete_ignores_conditions: true,
            copy_source_conditions_ignored: true,
            checksums_ignored: true,
            complete_names_every_part: true,
            part_copy_source_decoded_twice: true,
        }
    }
}

impl Shared {
    pub fn new(bucket: &str, log_capacity: usize) -> Self {
        Shared {
            bucket: bucket.to_owned(),
            store: Mutex::new(Store::new()),
            faults: Mutex::new(FaultSet::default()),
            stats: Mutex::new(Stats::default()),
            log_capacity,
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            credentials: RwLock::new(HashMap::new()),
            allow_anonymous: AtomicBool::new(false),
            control_api: AtomicBool::new(false),
            op_mismatches: Mutex::new(Vec::new()),
            dialect: RwLock::new(Dialect::default()),
        }
    }

    /// Counts and logs an arriving request; returns its id.
    pub fn record(&self, mut rec: RequestRecord) -> u64 {
        let mut stats = self.stats.lock();
        stats.next_id += 1;
        rec.id = stats.next_id;
        *stats.counts.entry(rec.op.clone()).or_insert(0) += 1;
        if self.log_capacity > 0 {
            while stats.log.len() >= self.log_capacity {
                stats.log.pop_front();
            }
            stats.log.push_back(rec);
        }
        stats.next_id
    }

    /// Counts a request of `op` as being handled until the guard is dropped.
    pub fn busy(self: &Arc<Self>, op: &str) -> Busy {
        let mut stats = self.stats.lock();
        let e = stats.in_flight.entry(op.to_owned()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        Busy {
            shared: self.clone(),
            op: op.to_owned(),
        }
    }

    /// Fills in the outcome of a logged request.
    pub fn finish(&self, id: u64, status: Option<u16>, fault: Option<String>) {
        let mut stats = self.stats.lock();
        if let Some(rec) = stats.log.iter_mut().rev().find(|r| r.id == id) {
            rec.status = status;
            if fault.is_some() {
                rec.fault = fault;
            }
        }
    }

    pub fn add_sent(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A request being handled (see [`Shared::busy`]).
pub(crate) struct Busy {
    shared: Arc<Shared>,
    op: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(e) = self.shared.stats.lock().in_flight.get_mut(&self.op) {
            e.0 = e.0.saturating_sub(1);
        }
    }
}
